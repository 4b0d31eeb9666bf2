#!/usr/bin/env bash
# Does DEMix mixing overtake DENSE on novel domains as the training budget grows? Each model of
# configs/tiny*.yaml is trained at every budget with its own cosine schedule to that length
# (validation loss logged along the way, to see overfitting), then scored on the same test tokens:
# the 8 training domains (known-domain) and the 4 novel domains (DEMix mixed by every prior).
# With REMOVE, the removal experiment (removal.sh) runs at the largest budget too. OUT continues
# an earlier sweep's results directory (reports already there are kept).
#   bash scripts/experiments/budget_sweep.sh [BUDGET ...]          (default: 300 1000 3000)
#   METHODS="tiny tiny_dense" REMOVE=python_docs bash scripts/experiments/budget_sweep.sh 600 6000
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BUDGETS=${*:-300 1000 3000}
METHODS=${METHODS:-tiny tiny_dense tiny_dense_balanced}
EVAL_TOKENS=${EVAL_TOKENS:-32768}  # test tokens per domain, the same for every model and method
REMOVE=${REMOVE:-}
out=${OUT:-$(results_dir budget_sweep)}
score=(--set eval.max_tokens="$EVAL_TOKENS" --set eval.mix_max_tokens="$EVAL_TOKENS")
for STEPS in $BUDGETS; do
  mkdir -p "$out/$STEPS"
  for name in $METHODS; do
    run=$(train_model "$name" "configs/$name.yaml" --set train.eval_every=$((STEPS / 10)))
    cp "$run/config.yaml" "$out/$STEPS/$name.config.yaml"
    cp "$run/metrics.jsonl" "$out/$STEPS/$name.metrics.jsonl"
    [ -f "$out/$STEPS/$name.eval.json" ] ||
      build/demix eval "$run" "${score[@]}" --output "$out/$STEPS/$name.eval.json" >/dev/null
    mixed="$out/$STEPS/${name}_mixture"
    if [ "$(build/demix config --config "$run/config.yaml" --get model.ff)" = demix ] &&
      [ ! -f "$mixed/mixture.json" ]; then
      build/demix eval "$run" "${score[@]}" --mixture --output "$mixed" >/dev/null
    fi
  done
done
if [ -n "$REMOVE" ]; then
  STEPS=${BUDGETS##* } REMOVE=$REMOVE bash scripts/experiments/removal.sh >"$out/removal.md"
fi
.venv/bin/python scripts/experiments/tables.py budget_sweep "$out" $METHODS
