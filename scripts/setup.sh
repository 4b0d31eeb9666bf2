#!/usr/bin/env bash
# Idempotent set-up on Debian 12: system packages, the project venv with torch==2.11.0 (LibTorch
# for the C++ build, and the Python reference checks), then a Release build in build/.
# Quick when everything is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(build-essential cmake ninja-build pkg-config ccache git
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libsentencepiece-dev sentencepiece
  libcli11-dev googletest libgtest-dev libgloo-dev libopenblas0-openmp
  zlib1g-dev libzstd-dev libxxhash-dev zstd)
PIP_PACKAGES=(torch==2.11.0 numpy pyyaml safetensors matplotlib transformers==5.24.0 sentencepiece protobuf)
SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! .venv/bin/python -c 'import torch, yaml, safetensors, numpy, matplotlib, transformers, sentencepiece; assert torch.__version__.startswith("2.11.0")' 2>/dev/null; then
  echo "setup: creating .venv with ${PIP_PACKAGES[*]} (torch is ~4.7 GB)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --no-cache-dir "${PIP_PACKAGES[@]}"
fi

if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${DEMIX_BUILD_TYPE:-Release}" >build-configure.log 2>&1 \
    || { cat build-configure.log; exit 1; }
  rm -f build-configure.log
fi
cmake --build build
