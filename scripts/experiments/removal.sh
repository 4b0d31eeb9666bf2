#!/usr/bin/env bash
# Experiment 4 (paper, sec. 6.2 and Fig. 6): remove the expert of a training domain X and score X
# by mixing the remaining experts; compare with a DEMix model trained without X (leave-one-out,
# same steps, so 7/8 of the tokens) and with the full model.
#   STEPS=600 REMOVE="python_docs" bash scripts/experiments/removal.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
REMOVE=${REMOVE:-python_docs}
out=$(results_dir removal)
full=$(train_model tiny configs/tiny.yaml)
cp "$full/config.yaml" "$out/full.config.yaml"
build/demix eval "$full" --mixture --output "$out/full" >/dev/null
domains=$(build/demix config --config configs/tiny.yaml --get data.domains | tr -d '[] ')
novel=$(build/demix config --config configs/tiny.yaml --get data.eval_domains | tr -d '[] ')

for x in $REMOVE; do
  removed="results/models/tiny-$STEPS-without-$x"
  [ -d "$removed" ] || build/demix expert remove "$full" --domain "$x" --out "$removed" >&2
  build/demix eval "$removed" --mixture --output "$out/removed_$x" >/dev/null

  kept=$(tr ',' '\n' <<<"$domains" | grep -vx "$x" | paste -sd,)
  loo=$(train_model "tiny_without_$x" configs/tiny.yaml --set "data.domains=[$kept]" \
    --set "data.eval_domains=[$x,$novel]")
  cp "$loo/config.yaml" "$out/leave_one_out_$x.config.yaml"
  build/demix eval "$loo" --mixture --output "$out/leave_one_out_$x" >/dev/null
done
.venv/bin/python scripts/experiments/tables.py removal "$out" $REMOVE
