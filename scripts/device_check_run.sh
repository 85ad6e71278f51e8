#!/usr/bin/env bash
# The GPU device check, in one run on a machine with a GPU (prepared for the H200 lent through
# the device tool; not yet run): the GPU tests on the hardware adapter, then the end-to-end
# remap of multi-GB tables on the GPU engine and on the CPU engine, as GB/s and next to the
# copy baselines, then the same tables into GPU memory (the crate's `to_device`). Expects
# target/device from scripts/device_check_build.sh; writes a log to $OUT (or /tmp) and
# prints the tables. With the device tool: command
# `bash scripts/device_check_run.sh`, carrying `target/device` and `.gl` (the Vulkan loader's
# packages, fetched as the tool's README says), timeout 600 s. Each step has a time limit of
# its own (an estimated 5-6 minutes in all on an H200 host; the limits add up to 12), so that
# one that hangs does not cost the others.
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
for t in gpu backend golden; do
    echo "== tests: $t"
    timeout 90 "$bin/test-$t" --test-threads 4 || echo "!! $t failed"
done
echo "== end to end, CPU engine and GPU engine (its default VRAM budget), interleaved"
dir=/tmp/warmstart-device-bench
timeout 300 "$bin/bench-end_to_end" --workloads 2m,lm,8g --reps 3 --backend cpu,gpu \
    --warmstart "$bin/warmstart" --dir "$dir" --keep || echo "!! bench failed"
echo "== into GPU memory, in process: the CPU engine into mapped buffers against the GPU engine"
timeout 75 "$bin/bench-end_to_end" --to-device --workloads 2m,lm --reps 3 --dir "$dir" ||
    echo "!! to-device bench failed"
echo "== the GPU engine's default VRAM budget and passes on the 8 GB table"
(cd "$dir/8g" && timeout 60 "$OLDPWD/$bin/warmstart" run plan.toml --quiet --backend gpu \
    --output /tmp/warmstart-device-out.safetensors --report /tmp/warmstart-device-report.json &&
    grep -oE '"(vram_budget|passes|backend)": ("[^"]*"|[0-9]+)' /tmp/warmstart-device-report.json)
rm -f /tmp/warmstart-device-out.safetensors
