#!/usr/bin/env bash
# The whole test suite, set-up included, on a fresh Debian or Ubuntu machine with Rust:
# installs the software Vulkan driver (Mesa's lavapipe) so that the GPU engine's tests run on
# the CPU, and a C toolchain (for linking) where there is none; then runs every test. GPU
# tests fail, not skip, when no adapter is found here.
set -euo pipefail
cd "$(dirname "$0")/.."

icd() { ls /usr/share/vulkan/icd.d/lvp_icd.*.json 2>/dev/null | head -n 1; }
packages=()
[ -z "$(icd)" ] && packages+=(mesa-vulkan-drivers libvulkan1)
command -v cc >/dev/null || packages+=(build-essential)   # the linker rustc calls
if [ ${#packages[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}"
fi

export WGPU_BACKEND=vulkan                  # lavapipe's Vulkan adapter, not llvmpipe's GL one
export VK_DRIVER_FILES="$(icd)"             # only lavapipe, whatever else Mesa installed
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export WARMSTART_REQUIRE_GPU=1              # a GPU test without an adapter is a failure

cargo test --locked "$@"

# The crate documentation builds without warnings (broken or redundant intra-doc links).
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet
