# Shared by the experiment drivers: a timestamped results directory, and models trained once
# under results/models/<name> (re-used by later experiments; an unfinished run is continued).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
STEPS=${STEPS:-600}  # CPU-sized default: ~3 minutes per model on 2 cores
DEMIX=${DEMIX:-build/demix}  # a copy keeps a long run's binary fixed while the tree is rebuilt
bash scripts/setup.sh >/dev/null
bash scripts/prepare_data.sh >/dev/null
$DEMIX data --config configs/tiny.yaml >/dev/null

results_dir() {  # results/<experiment>/<timestamp>/
  local dir="results/$1/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$dir"
  echo "$dir"
}

train_model() {  # train_model NAME CONFIG [--set ...]: results/models/NAME-STEPS, trained once
  local out="results/models/$1-$STEPS" config=$2
  shift 2
  $DEMIX train --config "$config" --resume auto --set train.steps="$STEPS" \
    --set train.out_dir="$out" --set train.eval_every=0 "$@" >&2
  echo "$out"
}

# The novel-domain tables score every model on the same test tokens: this many per domain.
MIX_TOKENS=$($DEMIX config --config configs/tiny.yaml --get eval.mix_max_tokens)
