#!/usr/bin/env bash
# The GPU benchmarks: `demix bench` in bf16 on one CUDA device for the GPT-3-small DEMix shape
# (8 experts, seq 1024) at 2 and 8 sequences per domain, and the medium shape, each with the
# PyTorch reference (eager and torch.compile; medium eager only) in the same run.
#   bash scripts/bench/gpu.sh                 (after scripts/setup.sh and a CUDA build)
#   DEMIX_PYTHON=python3 bash scripts/bench/gpu.sh   (a Python with torch other than .venv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
STEPS=${STEPS:-20}
[ -f data/tokens/spm32k/spm.model ] || build/demix data --config configs/gpt3_small.yaml
out="results/bench/gpu-$(date -u +%Y%m%dT%H%M%SZ)"
small=(--config configs/gpt3_small.yaml --set train.device=cuda --set train.precision=bf16)
build/demix bench "${small[@]}" --steps "$STEPS" --profile 3 --out "$out/gpt3_small"
build/demix bench "${small[@]}" --set data.sequences_per_domain=8 --steps "$STEPS" --profile 3 \
  --out "$out/gpt3_small_k8"
build/demix bench --config configs/gpt3_medium.yaml --set train.device=cuda \
  --set train.precision=bf16 --steps "$STEPS" --no-compile --out "$out/gpt3_medium"
echo "wrote $out"
