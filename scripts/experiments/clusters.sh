#!/usr/bin/env bash
# Unsupervised domains and cheap routing (c-BTM in small) on the bundled corpus. Every model gets
# the same budget: STEPS steps of 16 sequences of 128 tokens (a model with k experts trains
# 16 / k sequences per expert per step).
# 1. DEMix on the 8 labelled domains, DEMix on k = 8 clusters of the same training text (balanced
#    in tokens, and in documents as c-BTM balances), DENSE: test perplexity on the 8 training
#    domains and the 4 novel ones; DEMix mixed by the posterior (uniform, updating, cached prior;
#    cached top-2) and by the cluster router (top-1, top-2; for the labelled model a router whose
#    centres are the domains' mean features).
# 2. k in KS clusters (balanced in BALANCE) at that budget: router top-1 and top-2 perplexity.
# 3. Evaluation cost: tokens/s of each mixing method of the labelled model, from its timed
#    mixture report (run first, before anything else loads the machine).
#   STEPS=1000 KS="2 4 8 16" BALANCE=tokens bash scripts/experiments/clusters.sh
STEPS=${STEPS:-1000}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
KS=${KS:-2 4 8 16}
BALANCE=${BALANCE:-tokens}
out=${OUT:-$(results_dir clusters)}
tokens=(--set eval.max_tokens="$MIX_TOKENS")  # the same test tokens as the mixture tables

run=$(train_model tiny configs/tiny.yaml)
[ -f "$out/labelled_router.safetensors" ] ||
  $DEMIX router --config configs/tiny.yaml --output "$out/labelled_router.safetensors" >&2
[ -f "$out/labelled_mixture/mixture.json" ] ||
  $DEMIX eval "$run" --mixture --router "$out/labelled_router.safetensors" \
    --output "$out/labelled_mixture" >/dev/null
run=$(train_model tiny_dense configs/tiny_dense.yaml)
[ -f "$out/dense.eval.json" ] ||
  $DEMIX eval "$run" --set eval.splits=[test] "${tokens[@]}" --output "$out/dense.eval.json" \
    >/dev/null

# cluster_model K BALANCE: the clustered corpus, its model, and the router-mixed reports
cluster_model() {
  local name="clusters$1_$2" corpus="data/clusters/k$1_$2"
  [ -f "$corpus/config.yaml" ] ||
    $DEMIX cluster --config configs/tiny.yaml --set cluster.k="$1" --set cluster.balance="$2" \
      --output "$corpus" >&2
  cp "$corpus/MANIFEST.json" "$out/$name.manifest.json"
  cp "$corpus/purity.md" "$out/$name.purity.md"
  $DEMIX data --config "$corpus/config.yaml" >&2
  run=$(train_model "$name" "$corpus/config.yaml" --set data.sequences_per_domain=$((16 / $1)))
  for top_k in 1 2; do
    [ -f "$out/${name}_top$top_k.json" ] ||
      $DEMIX eval "$run" --router --top-k "$top_k" "${tokens[@]}" \
        --output "$out/${name}_top$top_k.json" >/dev/null
  done
}
for balance in "$BALANCE" documents; do  # experiment 1: k = 8, both balances, fully mixed
  cluster_model 8 "$balance"
  [ -f "$out/clusters8_${balance}_mixture/mixture.json" ] ||
    $DEMIX eval "$run" --mixture --output "$out/clusters8_${balance}_mixture" >/dev/null
done
for k in $KS; do
  [ "$k" = 8 ] || cluster_model "$k" "$BALANCE"
done
.venv/bin/python scripts/experiments/tables.py clusters "$out" "$BALANCE" $KS
