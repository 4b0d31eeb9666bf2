#!/usr/bin/env bash
# Interrupted training runs, through the real binary:
#   1. SIGINT finishes the step, writes a checkpoint there and ends the process by SIGINT (so a
#      calling script stops too); --resume auto continues from that step.
#   2. A run killed (SIGKILL) after its last checkpoint leaves metrics of later steps: the resumed
#      run drops them, so metrics.jsonl holds every step once.
#   3. Starting again from step 0 in a directory with metrics moves them to metrics.jsonl.prev.
#   4. A second SIGINT ends the process at once, without a checkpoint.
set -euo pipefail
set -m  # job control: background runs get their own process group and do not ignore SIGINT
DEMIX=${DEMIX_BIN:-build/demix}
PYTHON=${PYTHON:-.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/demix_interrupt.XXXXXX")
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; cat "$work"/*.log 2>/dev/null | tail -20; exit 1; }

small=(--config configs/tiny.yaml --set model.n_layer=1 --set model.d_model=32 --set model.n_head=2
       --set model.seq_len=32 --set optim.warmup_steps=1 --set train.eval_every=0
       --set train.log_every=1 --set train.eval_tokens=256 --set data.domains=[scripture,humour])

# Starts a long run in the background and waits until it has logged step $2.
start_until_step() {
  local out=$1 step=$2 log=$3
  shift 3
  "$DEMIX" train "${small[@]}" --set train.steps=100000 --set train.out_dir="$out" "$@" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    grep -q "step \+$step/" "$log" && return 0
    kill -0 $pid 2>/dev/null || fail "the run ended early"
    sleep 0.1
  done
  fail "step $step never came"
}

# No step is logged or checkpointed twice: (step, kind) pairs are unique.
check_metrics_unique() {
  "$PYTHON" - "$1" <<'PY' || fail "metrics.jsonl repeats steps"
import json, sys, collections
seen = collections.Counter()
for line in open(sys.argv[1]):
    r = json.loads(line)
    seen[(r["step"], "train" if "train/loss" in r else "val")] += 1
dup = [k for k, n in seen.items() if n > 1]
assert not dup, f"repeated: {dup[:5]}"
print(f"{sum(seen.values())} records, no step repeated")
PY
}

# 1. SIGINT: checkpoint after the step, exit by the signal, resume there.
run="$work/run"
start_until_step "$run" 5 "$work/first.log"
kill -INT $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 130 ] || fail "exit status $rc after SIGINT, expected 130 (killed by SIGINT)"
latest=$(cat "$run/checkpoints/latest")
stopped=$((10#${latest#step_}))
[ "$stopped" -ge 5 ] || fail "checkpoint $latest is before the step the signal came after"
grep -q "stopped at step $stopped/" "$work/first.log" || fail "no 'stopped at step' line"
"$DEMIX" train "${small[@]}" --set train.steps=$((stopped + 3)) --set train.out_dir="$run" \
  --resume auto >"$work/resume.log" 2>&1 || fail "resume failed"
grep -q "resumed from .*$latest at step $stopped" "$work/resume.log" || fail "did not resume at $stopped"
check_metrics_unique "$run/metrics.jsonl"

# 2. SIGKILL after a checkpoint: the resumed run drops the records after it. The run hangs
#    before its 14th step (fault injection), so the kill comes after step 13 exactly.
killed="$work/killed"
DEMIX_FAULT=hang:0:13 start_until_step "$killed" 13 "$work/killed.log" --set train.checkpoint_every=10
kill -9 $pid
wait $pid 2>/dev/null || true
[ "$(cat "$killed/checkpoints/latest")" = step_00000010 ] || fail "no checkpoint at step 10"
"$DEMIX" train "${small[@]}" --set train.steps=12 --set train.out_dir="$killed" --resume auto \
  >"$work/killed_resume.log" 2>&1 || fail "resume after SIGKILL failed"
grep -q "dropped .* records after step 10" "$work/killed_resume.log" || fail "no 'dropped' line"
check_metrics_unique "$killed/metrics.jsonl"

# 3. A fresh start over an old run's metrics (no checkpoint): moved aside and said.
fresh="$work/fresh"
mkdir -p "$fresh" && echo '{"step": 7, "train/loss": 1.0}' >"$fresh/metrics.jsonl"
"$DEMIX" train "${small[@]}" --set train.steps=2 --set train.out_dir="$fresh" >"$work/fresh.log" 2>&1 \
  || fail "fresh run failed"
grep -q "moved to .*metrics.jsonl.prev" "$work/fresh.log" || fail "no 'moved' line"
grep -q '"step": 7' "$fresh/metrics.jsonl.prev" || fail "the old metrics are not in .prev"
check_metrics_unique "$fresh/metrics.jsonl"

# 4. Two SIGINTs: the process ends at once, without writing a checkpoint. The run hangs before
#    its 4th step (fault injection), so the first signal cannot end it.
twice="$work/twice"
DEMIX_FAULT=hang:0:3 start_until_step "$twice" 3 "$work/twice.log"
kill -INT $pid
for _ in $(seq 1 100); do grep -q "stopping after this step" "$work/twice.log" && break; sleep 0.1; done
kill -INT $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 130 ] || fail "exit status $rc after two SIGINTs, expected 130"
grep -q "second signal" "$work/twice.log" || fail "no 'second signal' line"
[ ! -e "$twice/checkpoints" ] || fail "a checkpoint was written after the second signal"
echo "interrupt tests passed"
