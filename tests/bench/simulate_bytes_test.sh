#!/usr/bin/env bash
# The scaling simulator's byte model (scripts/bench/simulate.py --bytes, from the config's shapes)
# against what GradSync all-reduces on 4 Gloo ranks (from the model's tensors), for a dense model
# and for DEMix with 2 experts on groups of 2 ranks: one step of `demix launch -n 4`.
set -euo pipefail
demix=${DEMIX_BIN:-build/demix}
python=${PYTHON:-.venv/bin/python}
out=build/test_runs/simulate_bytes
rm -rf "$out"
for ff in demix dense; do
  config="$out/$ff.yaml"
  mkdir -p "$out"
  printf 'base: %s\nmodel: {ff: %s, n_layer: 2}\ndata: {domains: [scripture, humour], sampling: balanced}\n' \
    "$PWD/configs/tiny.yaml" "$ff" >"$config"
  log=$("$demix" launch --nproc 4 -- train --config "$config" --set train.steps=1 \
    --set train.threads=1 --set train.eval_tokens=64 --set optim.warmup_steps=0 \
    --set train.out_dir="$out/run_$ff" 2>&1)
  measured=$(grep -o 'all-reduce per step on rank 0: [0-9]* B shared, [0-9]* B expert' <<<"$log" |
    grep -o '[0-9]* B' | tr -d ' B' | paste -sd' ')
  predicted=$("$python" scripts/bench/simulate.py --bytes "$config" --world 4 |
    "$python" -c 'import json,sys; d=json.load(sys.stdin); print(d["shared_bytes"], d["expert_bytes"])')
  echo "$ff: measured (shared expert) $measured, predicted $predicted"
  [ -n "$measured" ] && [ "$measured" = "$predicted" ]
done
