#!/usr/bin/env bash
# The GPU device check, in one run on a machine with a GPU (prepared for the H200 lent through
# the device tool; not yet run): the GPU tests on the hardware adapter; the device's limits;
# the GPU engine's output compared byte for byte with the CPU engine's on the 1 GB table (a
# uniform backup initializer, bit-exact on both); the end-to-end remap on the GPU and CPU
# engines next to the copy baselines (the 1 GB and LM tables, then once the 8.6 GB table), and
# the 1 GB table on half its size of VRAM budget (passes over the old table, compared too);
# the same tables into GPU memory (the crate's `to_device`). Expects target/device from
# scripts/device_check_build.sh; writes a log to $OUT (or /tmp) and prints the tables.
# With the device tool: command `bash scripts/device_check_run.sh`, carrying `target/device`
# and `.gl` (the Vulkan loader's packages, fetched as the tool's README says), timeout_s 540.
# Every step has a time limit of its own, 475 s in all (an estimated 3-4 minutes on an H200
# host), so that one that hangs does not cost the others and the worst case leaves device
# time for a second try.
set -uo pipefail
cd "$(dirname "$0")/.."
log="${OUT:-/tmp}/device_check.log"
exec > >(tee "$log") 2>&1
# The Vulkan loader carried in .gl (see the device tool's README), and the NVIDIA ICD.
if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export WGPU_BACKEND=vulkan WARMSTART_REQUIRE_GPU=1 RUST_BACKTRACE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
df -h /tmp || true
bin=target/device
# The test binaries find the fixtures, the CLI (target/release/warmstart) and a scratch
# directory (target/tmp) under the crate root they were built in: make that path lead here.
built=$(cat "$bin/built-at")
if [ ! -e "$built" ]; then
    mkdir -p "$(dirname "$built")" && ln -s "$PWD" "$built"
elif [ "$(cd "$built" && pwd -P)" != "$(pwd -P)" ]; then
    echo "!! $built is another directory: tests needing fixtures will fail"
fi
mkdir -p target/release target/tmp
cp "$bin/warmstart" target/release/warmstart
ws="$PWD/$bin/warmstart"
for t in gpu backend golden; do
    echo "== tests: $t"
    timeout 40 "$bin/test-$t" --test-threads 4 || echo "!! $t failed"
done
dir=/tmp/warmstart-device-bench
echo "== end to end (prints the device's limits first): 1 GB f32 and 1 GB bf16 LM tables"
timeout 110 "$bin/bench-end_to_end" --workloads 2m,lm --reps 3 --backend cpu,gpu \
    --warmstart "$ws" --dir "$dir" --keep || echo "!! bench failed"
echo "== the GPU engine's bytes against the CPU engine's (2m, uniform backup initializer)"
if [ -f "$dir/2m/plan.toml" ]; then
    (
        cd "$dir/2m" &&
            sed 's/^backup_initializer = .*/backup_initializer = { type = "random_uniform", minval = -0.05, maxval = 0.05, seed = 42 }/' \
                plan.toml >uniform.toml &&
            timeout 20 "$ws" run uniform.toml --quiet --backend cpu --output cpu.safetensors &&
            timeout 20 "$ws" run uniform.toml --quiet --backend gpu --output gpu.safetensors \
                --report gpu.json &&
            cmp cpu.safetensors gpu.safetensors && echo "identical" &&
            grep -oE '"(vram_budget|passes|backend)": ("[^"]*"|[0-9]+)' gpu.json
    ) || echo "!! the GPU engine's output differs, or a run failed"
    echo "== the same on a VRAM budget of half the table: the old table streamed in passes"
    (
        cd "$dir/2m" &&
            timeout 40 "$ws" run uniform.toml --quiet --backend gpu --vram-budget 512MiB \
                --output gpu.safetensors --report budget.json &&
            cmp cpu.safetensors gpu.safetensors && echo "identical" &&
            grep -oE '"(passes|writing_seconds)": [0-9.]+' budget.json
    ) || echo "!! the GPU engine's output in passes differs, or the run failed"
    rm -f "$dir/2m/cpu.safetensors" "$dir/2m/gpu.safetensors"
fi
echo "== into GPU memory, in process: the CPU engine into mapped buffers against the GPU engine"
timeout 55 "$bin/bench-end_to_end" --to-device --workloads 2m,lm --reps 3 --dir "$dir" ||
    echo "!! to-device bench failed"
echo "== end to end, once: the 8.6 GB f32 table"
timeout 110 "$bin/bench-end_to_end" --workloads 8g --reps 1 --backend cpu,gpu \
    --warmstart "$ws" --dir "$dir" || echo "!! 8g bench failed"
rm -rf "$dir"
# (the log's tee ends with this shell; give it a moment to flush)
sleep 1
