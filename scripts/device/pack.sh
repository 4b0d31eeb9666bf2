#!/usr/bin/env bash
# Packs what a GPU check needs into .devlibs/ (ignored), for the `device` tool's machine, which has
# torch 2.11.0+cu130 in its python3 but none of the Debian libraries demix links: the binaries
# built here (their CUDA kernels are compiled here by nvcc), those libraries, and the tokenised
# corpus of the GPU configs. Then, from the repository root:
#   run(command="bash scripts/device/check.sh", carry=[".devlibs", "data/tokens/spm32k",
#       "data/tokens/spm8k"])
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
binaries=(build/demix build/demix_tests build/demix_integration_tests)
for b in "${binaries[@]}"; do [ -x "$b" ] || { echo "pack: $b missing: build first" >&2; exit 1; }; done
grep -q 'DEMIX_CUDA_KERNELS' build/CMakeFiles/demix_core.dir/flags.make 2>/dev/null ||
  grep -rq 'DEMIX_CUDA_KERNELS' build/build.ninja ||
  { echo "pack: build/ has no CUDA kernels (nvcc not found at configure time)" >&2; exit 1; }
[ -f data/tokens/spm32k/spm.model ] || build/demix data --config configs/gpt3_small.yaml
[ -f data/tokens/spm8k/spm.model ] || build/demix data --config configs/tiny.yaml
rm -rf .devlibs && mkdir -p .devlibs/bin .devlibs/lib
cp "${binaries[@]}" .devlibs/bin/
# The shared libraries from Debian's packages (not torch's, not glibc's): the device lacks them.
ldd "${binaries[@]}" | awk '$3 ~ /^\/(usr\/)?lib\/x86_64-linux-gnu\// {print $3}' | sort -u |
  grep -E 'yaml-cpp|spdlog|fmt|sentencepiece|gtest|gmock|gloo|protobuf|absl' |
  xargs -r cp -L -t .devlibs/lib/
# The CUDA runtime our kernels link (the toolkit's here; where the device's toolkit keeps its copy
# is not known, and the binaries' run path names this machine's).
ldd "${binaries[@]}" | awk '$1 ~ /^libcudart\.so/ {print $3}' | sort -u | xargs -r cp -L -t .devlibs/lib/
du -sh .devlibs data/tokens/spm32k data/tokens/spm8k
