#!/usr/bin/env bash
# Fuzzes the config loader and the checkpoint readers with libFuzzer (clang, ASan + UBSan):
# builds build-fuzz/ and runs each target for SECONDS (default 60). Prints each target's final
# stats; a finding is written to build-fuzz/crashes/ and fails the script.
#   bash scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
bash scripts/setup.sh >/dev/null
command -v clang++ >/dev/null || sudo apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
cmake -S . -B build-fuzz -G Ninja -DDEMIX_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz
corpus=build-fuzz/corpus
mkdir -p "$corpus/config" "$corpus/checkpoint" build-fuzz/crashes
cp configs/*.yaml "$corpus/config/"
.venv/bin/python - "$corpus/checkpoint" <<'PY'
import json, sys, torch
from safetensors.torch import save
out = sys.argv[1]
tensors = save({"wte.weight": torch.randn(4, 3), "blocks.0.ln_1.bias": torch.zeros(3)})
open(f"{out}/safetensors", "wb").write(b"\0" + tensors)
manifest = {"files": [{"path": "shared.safetensors", "bytes": 10, "checksum": "00ff"}]}
open(f"{out}/manifest", "wb").write(b"\1" + json.dumps(manifest).encode())
PY
for target in config checkpoint; do
  echo "== ${target}_fuzz, ${seconds} s"
  build-fuzz/${target}_fuzz -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix=build-fuzz/crashes/ "$corpus/$target" 2>&1 |
    grep -E "stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY|crash-" || true
done
if [ -n "$(ls build-fuzz/crashes)" ]; then
  echo "findings in build-fuzz/crashes/:"; ls build-fuzz/crashes; exit 1
fi
echo "no findings"
