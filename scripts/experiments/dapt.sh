#!/usr/bin/env bash
# Experiment 3 (paper, sec. 6.1 and Fig. 5): DEMix-DAPT against Dense-DAPT on each of two novel
# domains: test perplexity on the new domain, and on every old domain before and after the
# adaptation (forgetting). DEMix-DAPT adds an expert initialised from the closest one by cached
# prior and trains only it; Dense-DAPT trains every parameter of the DENSE model.
#   STEPS=600 DAPT_STEPS=200 DOMAINS="glossary git_docs" bash scripts/experiments/dapt.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DAPT_STEPS=${DAPT_STEPS:-200}
DOMAINS=${DOMAINS:-glossary git_docs}
out=$(results_dir dapt)
demix=$(train_model tiny configs/tiny.yaml)
dense=$(train_model tiny_dense configs/tiny_dense.yaml)
build/demix eval "$demix" --mixture --output "$out/demix_before" >/dev/null
build/demix eval "$dense" --set eval.splits=[test] --set eval.max_tokens="$MIX_TOKENS" \
  --output "$out/dense_before.eval.json" >/dev/null

for domain in $DOMAINS; do
  for kind in demix dense; do
    base=$([ $kind = demix ] && echo "$demix" || echo "$dense")
    run="results/models/dapt_${kind}_$domain-$STEPS-$DAPT_STEPS"
    if [ ! -f "$run/eval.md" ]; then  # an unfinished adaptation starts again
      rm -rf "$run"
      build/demix adapt --config "configs/dapt_$kind.yaml" --set adapt.base="$base" \
        --set adapt.domain="$domain" --set train.steps="$DAPT_STEPS" \
        --set optim.warmup_steps=$((DAPT_STEPS * 8 / 100)) --set train.eval_every=0 \
        --set eval.max_tokens="$MIX_TOKENS" --set train.out_dir="$run" >&2
    fi
    cp "$run/config.yaml" "$out/${kind}_$domain.config.yaml"
    if [ $kind = demix ]; then
      mkdir -p "$out/demix_$domain" && cp "$run/mixture.json" "$run/prior.json" "$out/demix_$domain/"
    else
      cp "$run/eval.json" "$out/dense_$domain.eval.json"
    fi
  done
done
.venv/bin/python scripts/experiments/tables.py dapt "$out" $DOMAINS
