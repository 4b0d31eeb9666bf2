#!/usr/bin/env bash
# Two builds of demix on the same machine, in one run: `demix bench` (no PyTorch reference)
# alternating the two binaries ROUNDS times per config, then the median training step time and
# tokens/s of each. For checking that a change leaves speed alone:
#   cp build/demix /tmp/demix-before   (before the change; after it, rebuild)
#   ROUNDS=3 bash scripts/bench/compare_binaries.sh /tmp/demix-before [AFTER, default build/demix]
# CONFIGS="tiny bench_10m" by default; STEPS=10 timed steps per round.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ $# -eq 1 ] || [ $# -eq 2 ] || { echo "usage: $0 BEFORE_BINARY [AFTER_BINARY]" >&2; exit 2; }
before=$1
after=${2:-build/demix}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-10}
CONFIGS=${CONFIGS:-tiny bench_10m}
out="results/bench_compare/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
for name in $CONFIGS; do
  for round in $(seq 1 "$ROUNDS"); do
    for side in before after; do
      binary=$before
      [ "$side" = after ] && binary=$after
      "$binary" bench --config "configs/$name.yaml" --steps "$STEPS" --no-reference \
        --eval-tokens 4096 --out "$out/$name/$side/$round" >"$out.log" 2>&1 ||
        { cat "$out.log"; exit 1; }
    done
  done
done
.venv/bin/python - "$out" $CONFIGS <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
print("| config | binary | median step (s) | median tokens/s | rounds (step s) |")
print("|---|---|---:|---:|---|")
for name in sys.argv[2:]:
    for side in ("before", "after"):
        reports = [json.loads((d / "bench.json").read_text())["demix"]
                   for d in sorted((out / name / side).iterdir())]
        steps = [r["step_s"] for r in reports]
        rates = [r["tokens_per_s"] for r in reports]
        print(f"| {name} | {side} | {statistics.median(steps):.4f} | "
              f"{statistics.median(rates):.0f} | {', '.join(f'{s:.4f}' for s in steps)} |")
PY
echo "wrote $out"
