#!/usr/bin/env bash
# MoDE experiment (Schafhalter et al., 2024, as issue 11 sets it): a DENSE backbone trained on the
# general domains; two target domains it never saw (python_docs, manpages); scripture, which it
# was trained on, for retention. Each method adapts the backbone on the targets with the same
# schedule and 8 sequences per target domain per step:
#   full fine-tune (every parameter), LoRA (rank 8 on qkv, proj, fc1, fc2, backbone frozen),
#   MoDE 1 expert (stage 1: one single-expert model per target, trained on it alone),
#   MoDE 2 experts, gates only / gates + experts (stage 2: the two composed, fine-tuned on both).
# Then the step time of stage 2's two placements on the same global batch.
#   STEPS=600 ADAPT_STEPS=200 bash scripts/experiments/mode.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ADAPT_STEPS=${ADAPT_STEPS:-200}
out=$(results_dir mode)
models="results/models/mode-$STEPS-$ADAPT_STEPS"
backbone=$(train_model mode_backbone configs/mode_backbone.yaml)
adapt=(--set train.steps="$ADAPT_STEPS" --set optim.warmup_steps=$((ADAPT_STEPS * 8 / 100))
       --set train.eval_every=0 --set mode.backbone="$backbone"
       --set mode.experts_from="$models/stage1")

train() {  # train NAME [--set ...]: $models/NAME, trained once (an unfinished run continues)
  local name=$1
  shift
  build/demix train --config configs/mode.yaml "${adapt[@]}" --resume auto \
    --set train.out_dir="$models/$name" "$@" >&2
}
dense=(--set mode.blocks=0 --set train.init_from="$backbone")
train full_finetune "${dense[@]}"
train lora "${dense[@]}" --set model.lora_rank=8
# Stage 1: the two single-expert runs at once, one per rank (each on one core).
build/demix launch --nproc 2 -- train --config configs/mode.yaml "${adapt[@]}" --resume auto \
  --set train.out_dir="$models/stage1" --set train.threads=1 >&2
train gates --set mode.stage=2 --set mode.train=gates
train gates_experts --set mode.stage=2 --set mode.train=gates_experts

evaluate() {  # evaluate LABEL RUN [--set ...]: test perplexity and accuracy, every domain
  local label=$1 run=$2
  shift 2
  build/demix eval "$run" --set eval.splits=[test] --set eval.max_tokens="$MIX_TOKENS" "$@" \
    --output "$out/$label.eval.json" >/dev/null
  cp "$run/config.yaml" "$out/$label.config.yaml"
  echo "$run/checkpoints/$(cat "$run/checkpoints/latest")" >"$out/$label.checkpoint"
}
evaluate backbone "$backbone"
evaluate full_finetune "$models/full_finetune"
evaluate lora "$models/lora"
evaluate mode1_python_docs "$models/stage1/python_docs" --set data.eval_domains=[manpages,scripture]
evaluate mode1_manpages "$models/stage1/manpages" --set data.eval_domains=[python_docs,scripture]
evaluate mode2_gates "$models/gates"
evaluate mode2_gates_experts "$models/gates_experts"

# Placements of stage 2 on one global batch of 8 + 8 sequences, 3 processes sharing the 2 cores:
# (a) data parallel on 2 ranks (4 + 4 each), (b) branches on 3 ranks (rank 0 the backbone, ranks
# 1-2 one expert each; every rank sees all 16), and one process for reference.
time_placement() {  # time_placement NAME NPROC [--set ...]
  local name=$1 nproc=$2 run="$out/placement_$1"
  shift 2
  local cmd=(train --config configs/mode.yaml "${adapt[@]}" --set mode.stage=2
             --set train.steps=25 --set train.log_every=1 --set train.out_dir="$run"
             --set optim.warmup_steps=2 --set train.threads=1 "$@")
  if [ "$nproc" = 1 ]; then build/demix "${cmd[@]}" --set train.threads=2 >&2
  else build/demix launch --nproc "$nproc" -- "${cmd[@]}" >&2; fi
  cp "$run/metrics.jsonl" "$out/placement_$name.metrics.jsonl"
  rm -rf "$run"
}
time_placement one_process 1
time_placement data_parallel 2 --set data.sequences_per_domain=4
time_placement branches 3 --set mode.placement=branches
.venv/bin/python scripts/experiments/tables.py mode "$out" backbone full_finetune lora \
  mode1_python_docs mode1_manpages mode2_gates mode2_gates_experts
