#!/usr/bin/env bash
# The CPU benchmarks: `demix bench` (with the PyTorch eager and torch.compile reference in the same
# run) on the tiny demo config and the ~10M-parameter config, a table per config, and the PNG of
# training tokens/s against model size.
#   STEPS=10 bash scripts/bench/run.sh      (CONFIGS="tiny bench_10m" by default)
#   ROUNDS=3 ...   alternate ours and the reference 3 times, medians across rounds (noisy machines)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
STEPS=${STEPS:-10}
ROUNDS=${ROUNDS:-1}
CONFIGS=${CONFIGS:-tiny bench_10m}
bash scripts/setup.sh >/dev/null
bash scripts/prepare_data.sh >/dev/null
build/demix data --config configs/tiny.yaml >/dev/null
out="results/bench/$(date -u +%Y%m%dT%H%M%SZ)"
for name in $CONFIGS; do
  build/demix bench --config "configs/$name.yaml" --steps "$STEPS" --rounds "$ROUNDS" --out "$out/$name"
done
# shellcheck disable=SC2086
.venv/bin/python scripts/bench/plot.py "$out" $CONFIGS
echo "wrote $out"
