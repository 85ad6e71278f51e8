#!/usr/bin/env bash
# Builds, here, everything the GPU device check runs there (the device machine has no Rust):
# the CLI, the GPU, golden and backend test binaries and the end-to-end benchmark, stripped,
# into target/device/.
# Then, with the device tool: carry `target/device` and `.gl` (the Vulkan loader, see the
# tool's README) and run `bash scripts/device_check_run.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/device
rm -rf "$out" && mkdir -p "$out"
cargo build --release --locked
cp target/release/warmstart "$out/"
for t in gpu golden backend; do
    path=$(cargo test --release --locked --test "$t" --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4)
    cp "$path" "$out/test-$t"
done
path=$(cargo bench --locked --bench end_to_end --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4)
cp "$path" "$out/bench-end_to_end"
# The release profile keeps line tables (for profiles here); stripped, the five binaries are
# about 32 MiB instead of 316, within what the device tool carries (64 MiB with the tree).
strip "$out"/*
# The test binaries name the crate root and the CLI by the paths they were built at.
pwd >"$out/built-at"
ls -la "$out"
du -sh "$out"
