#!/usr/bin/env bash
# Multi-process launches of `demix train` on the bundled corpus (ctest, Gloo on CPU).
#   launch_test.sh launch     demix launch -n 2 completes, and its checkpoint equals (1e-5) that
#                             of one process trained on the same global batch
#   launch_test.sh torchrun   torchrun --nproc_per_node=2 --no-python completes likewise
#   launch_test.sh dead_rank  rank 1 aborts at step 2: the launch exits non-zero within the
#                             time limit, naming rank 1
#   launch_test.sh hung_rank  rank 1 hangs at step 2: rank 0's collective times out
#                             (dist.timeout_s=5), it exits naming rank 1, the launch stops
#   launch_test.sh signals    SIGTERM to the launcher stops both ranks (none survives it), and
#                             a launcher killed with SIGKILL takes its ranks with it
#   launch_test.sh kill_resume  a 2-rank run killed with SIGKILL once inside a checkpoint write
#                             and then (launcher and ranks) at random moments, resumed with
#                             --resume auto each time, ends with exactly the parameters and
#                             optimizer state of an uninterrupted run
set -uo pipefail
mode=$1
demix=${DEMIX_BIN:-build/demix}
out=build/test_runs/launch_$mode
rm -rf "$out"
train=(train --config configs/tiny.yaml --set model.n_layer=2 --set train.steps=4
  --set optim.warmup_steps=1 --set train.log_every=1 --set train.threads=1
  --set train.eval_tokens=1024 --set dist.timeout_s=20 --set optim.eps=1e-4)
fail() { echo "FAILED: $*" >&2; exit 1; }

# expect_failure KIND PATTERN [ARGS...]: rank 1 gets DEMIX_FAULT=KIND at step 2; the launch must
# exit non-zero within the time limit and its stderr must match PATTERN (naming rank 1).
expect_failure() {
  local kind=$1 pattern=$2 start=$SECONDS
  shift 2
  mkdir -p "$(dirname "$out")"
  DEMIX_FAULT=$kind:1:2 timeout 120 "$demix" launch -n 2 -- "${train[@]}" "$@" \
    --set train.out_dir="$out" 2>"$out.stderr"
  local code=$?
  cat "$out.stderr" >&2
  [ $code -ne 0 ] || fail "the launch exited 0 although rank 1 had to $kind"
  [ $code -ne 124 ] || fail "the launch hung (killed by timeout after 120 s)"
  grep -q "$pattern" "$out.stderr" || fail "no '$pattern' on stderr"
  echo "launch exited $code after $((SECONDS - start)) s, naming rank 1"
  exit 0
}

case $mode in
  launch)
    timeout 300 "$demix" launch -n 2 -- "${train[@]}" --set train.out_dir="$out" ||
      fail "demix launch exited $?"
    # 2 ranks x 4 experts each (W < E): the global batch is one process's with the same k.
    rm -rf "$out.single"
    timeout 300 "$demix" "${train[@]}" --set train.out_dir="$out.single" >/dev/null 2>&1 ||
      fail "the single-process run failed"
    .venv/bin/python - "$out" "$out.single" <<'PY' || fail "ranks and one process differ"
import glob, os, sys
from safetensors.torch import load_file
a, b = (os.path.join(d, "checkpoints", "step_00000004") for d in sys.argv[1:])
worst = 0.0
for path in sorted(glob.glob(os.path.join(a, "**", "*.safetensors"), recursive=True)):
    other = load_file(os.path.join(b, os.path.relpath(path, a)))
    for name, t in load_file(path).items():
        ref = other[name]
        worst = max(worst, ((t - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item())
print(f"max relative difference, 2 ranks vs 1 process: {worst:.2e}")
sys.exit(0 if worst <= 1e-5 else 1)
PY
    ;;
  torchrun)
    timeout 300 .venv/bin/torchrun --standalone --nproc_per_node=2 --no-python \
      "$demix" "${train[@]}" --set train.out_dir="$out" || fail "torchrun exited $?"
    ;;
  dead_rank) expect_failure abort "demix launch: rank 1 (pid [0-9]*) was killed by signal" ;;
  hung_rank)
    expect_failure hang "ranks that never reached the gradient sync of step 2: rank 1" \
      --set dist.timeout_s=5
    ;;
  signals)
    # ranks_of LAUNCHER: the pids of its children, once both ranks have started
    ranks_of() {
      local ranks=""
      for _ in $(seq 100); do
        ranks=$(pgrep -P "$1" | tr '\n' ' ')
        [ "$(echo $ranks | wc -w)" -eq 2 ] && break
        sleep 0.1
      done
      echo $ranks
    }
    # expect_gone SECONDS PID...: every PID has exited within SECONDS
    expect_gone() {
      local limit=$1 pid
      shift
      for _ in $(seq $((limit * 10))); do
        local alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && return 0
        sleep 0.1
      done
      fail "ranks still running after ${limit} s: $(ps -o pid=,args= -p "$*" | tr '\n' ';')"
    }
    long=("${train[@]}" --set train.steps=100000 --set train.out_dir="$out")
    mkdir -p "$(dirname "$out")"
    ranks=""
    trap 'kill -KILL $ranks 2>/dev/null' EXIT  # no orphan outlives a failed check
    "$demix" launch -n 2 -- "${long[@]}" >"$out.log" 2>&1 &
    launcher=$!
    ranks=$(ranks_of $launcher)
    [ "$(echo $ranks | wc -w)" -eq 2 ] || fail "the launcher did not start 2 ranks: '$ranks'"
    for _ in $(seq 1200); do grep -q "model on rank 0" "$out.log" && break; sleep 0.1; done
    grep -q "model on rank 0" "$out.log" || fail "rank 0 did not start training within 120 s"
    kill -TERM $launcher
    for _ in $(seq 600); do kill -0 $launcher 2>/dev/null || break; sleep 0.1; done
    kill -0 $launcher 2>/dev/null && fail "the launcher still runs 60 s after SIGTERM"
    wait $launcher
    echo "SIGTERM: the launcher exited $?"
    expect_gone 5 $ranks
    grep -q "passed it on to the 2 ranks" "$out.log" || fail "no word of the forwarded signal"

    rm -rf "$out"
    "$demix" launch -n 2 -- "${long[@]}" >>"$out.log" 2>&1 &
    launcher=$!
    ranks=$(ranks_of $launcher)
    [ "$(echo $ranks | wc -w)" -eq 2 ] || fail "the launcher did not start 2 ranks: '$ranks'"
    kill -KILL $launcher
    wait $launcher 2>/dev/null
    expect_gone 5 $ranks
    echo "signals: no rank outlived its launcher (SIGTERM forwarded; SIGKILL: PR_SET_PDEATHSIG)"
    exit 0
    ;;
  kill_resume)
    steps=40
    run=("${train[@]}" --set train.steps=$steps --set train.checkpoint_every=1
      --set train.keep_checkpoints=2 --set train.log_every=4 --set model.d_model=64
      --set model.n_head=2)
    rm -rf "$out.reference" "$out.log"
    timeout 300 "$demix" launch -n 2 -- "${run[@]}" --set train.out_dir="$out.reference" \
      >/dev/null 2>&1 || fail "the uninterrupted run failed"
    # First a SIGKILL inside a checkpoint write (rank 1, between its parameter and optimizer
    # files of step 5): a half-written step_00000005.tmp stays behind, `latest` says step 4.
    DEMIX_FAULT=kill:1:5 "$demix" launch -n 2 -- "${run[@]}" --set train.out_dir="$out" \
      >>"$out.log" 2>&1 && fail "the run survived its SIGKILL"
    [ -d "$out/checkpoints/step_00000005.tmp" ] || fail "no half-written checkpoint of step 5"
    grep -q step_00000004 "$out/checkpoints/latest" || fail "latest is not step 4"
    RANDOM=7  # reproducible kill times
    kills=0 during_write=0
    for attempt in $(seq 10); do
      setsid "$demix" launch -n 2 -- "${run[@]}" --resume auto --set train.out_dir="$out" \
        >>"$out.log" 2>&1 &
      pid=$!
      sleep "$((RANDOM % 3)).$((RANDOM % 10))"  # 0.0 to 2.9 s: start-up, steps, writes
      if ! kill -0 $pid 2>/dev/null; then wait $pid; break; fi
      kill -KILL -- -$pid  # the launcher's whole process group: launcher and both ranks
      wait $pid 2>/dev/null
      kills=$((kills + 1))
      ls -d "$out"/checkpoints/*.tmp >/dev/null 2>&1 && during_write=$((during_write + 1))
      echo "kill $kills: checkpoint $(cat "$out/checkpoints/latest" 2>/dev/null || echo none)"
    done
    timeout 300 "$demix" launch -n 2 -- "${run[@]}" --resume auto --set train.out_dir="$out" \
      >>"$out.log" 2>&1 || { tail -20 "$out.log" >&2; fail "the final resumed run failed"; }
    [ $kills -ge 5 ] || fail "only $kills kills landed before the run finished"
    final=$(printf 'step_%08d' $steps)
    a="$out/checkpoints/$final" b="$out.reference/checkpoints/$final"
    for f in $(cd "$b" && find . -name '*.safetensors' | sort) meta.json; do
      cmp -s "$a/$f" "$b/$f" || fail "$f differs from the uninterrupted run"
    done
    echo "1 SIGKILL inside a checkpoint write, then $kills SIGKILLs at random moments" \
      "($during_write during a write), resumed each time:" \
      "step $steps parameters and optimizer state bit-identical to the uninterrupted run"
    exit 0
    ;;
  *) fail "unknown mode $mode" ;;
esac
grep -q step_00000004 "$out/checkpoints/latest" || fail "no checkpoint at step 4 in $out"
ls "$out/checkpoints/step_00000004/experts" | grep -q scripture.safetensors || fail "expert missing"
echo "$mode: 2 ranks completed 4 steps"
