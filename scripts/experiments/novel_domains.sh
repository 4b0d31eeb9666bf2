#!/usr/bin/env bash
# Experiment 2 (paper, Table 5): test perplexity on the 4 novel domains: DEMix mixed with the
# uniform, updating and cached priors and cached top-k, against the dense baselines.
#   STEPS=600 bash scripts/experiments/novel_domains.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out=$(results_dir novel_domains)
for name in tiny_dense tiny_dense_balanced; do
  run=$(train_model "$name" "configs/$name.yaml")
  cp "$run/config.yaml" "$out/$name.config.yaml"
  # the same test tokens as the mixing table: eval.mix_max_tokens from the start of each split
  build/demix eval "$run" --set eval.splits=[test] --set eval.max_tokens="$MIX_TOKENS" \
    --output "$out/$name.eval.json" >/dev/null
done
run=$(train_model tiny configs/tiny.yaml)
cp "$run/config.yaml" "$out/tiny.config.yaml"
build/demix eval "$run" --mixture --output "$out/tiny_mixture" >/dev/null
.venv/bin/python scripts/experiments/tables.py novel_domains "$out" \
  "DENSE=tiny_dense" "DENSE (balanced)=tiny_dense_balanced" "DEMix=tiny_mixture"
