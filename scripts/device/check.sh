#!/usr/bin/env bash
# Runs on the `device` tool's GPU machine, after scripts/device/pack.sh here: the CUDA tests, then
# `demix bench` on the GPT-3-small DEMix shape in bf16 at k = 8 sequences per domain with ATen's
# kernels and with the fused ones (train.fused_cuda_kernels), alternated, then (time allowing) a
# fused run with the PyTorch reference and a profile. Logs and bench results go to $OUT.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-results/device}
mkdir -p "$OUT"
start=$SECONDS
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$PWD/.devlibs/lib:$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export DEMIX_PYTHON=python3
bin=.devlibs/bin
# Built on Debian 12 here: if a library is missing there, say which and stop (then build there).
if ! $bin/demix --help > /dev/null 2> "$OUT/start.log"; then
  cat "$OUT/start.log"
  ldd $bin/demix | grep 'not found'
  exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
gpu_tests='*Cuda*:*Gpu*:ColumnSums*:LayerNorm*:ExpertMlps*:Bf16Linear*:TargetLogprobs*'
$bin/demix_tests --gtest_filter="$gpu_tests" 2>&1 | tail -40 | tee "$OUT/unit_tests.log"
$bin/demix_integration_tests --gtest_filter='CudaTest.*' 2>&1 | tail -40 |
  tee "$OUT/integration_tests.log"
small=(--config configs/gpt3_small.yaml --set train.device=cuda --set train.precision=bf16
  --set data.sequences_per_domain=8 --steps 20 --warmup 3)
for round in 1 2; do
  for fused in false true; do
    log="$OUT/k8_fused_${fused}_$round.log"
    $bin/demix bench "${small[@]}" --no-reference --set train.fused_cuda_kernels=$fused \
      --out "$OUT/k8_fused_${fused}_$round" > "$log" 2>&1
    echo "fused=$fused round $round: $(grep -m1 'demix (C++)' "$log" || tail -1 "$log")"
  done
done
if (( SECONDS - start < 380 )); then
  $bin/demix bench "${small[@]}" --set train.fused_cuda_kernels=true --profile 3 \
    --out "$OUT/k8_fused_reference" > "$OUT/k8_fused_reference.log" 2>&1
  tail -30 "$OUT/k8_fused_reference.log"
fi
rm -rf "$OUT"/*/run  # checkpoints: too large to bring back
echo "done in $((SECONDS - start)) s"
