#!/usr/bin/env bash
# Experiment 1 (paper, Table 3): in-domain test perplexity of DENSE, DENSE (balanced),
# +DOMAIN-TOKEN and DEMix (top-1) on the training domains, at matched training tokens (the same
# steps x 2048 tokens) and matched compute per token (one FF per token in every model).
#   STEPS=600 bash scripts/experiments/in_domain.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out=$(results_dir in_domain)
for name in tiny_dense tiny_dense_balanced tiny_domain_token tiny; do
  run=$(train_model "$name" "configs/$name.yaml")
  cp "$run/config.yaml" "$out/$name.config.yaml"
  build/demix eval "$run" --set eval.splits=[test] --output "$out/$name.eval.json" >/dev/null
done
.venv/bin/python scripts/experiments/tables.py in_domain "$out" \
  "DENSE=tiny_dense" "DENSE (balanced)=tiny_dense_balanced" "+DOMAIN-TOKEN=tiny_domain_token" \
  "DEMix (top-1)=tiny"
