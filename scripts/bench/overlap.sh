#!/usr/bin/env bash
# Communication per step on CPU, Gloo, 4 ranks (one thread each): `demix train` of the tiny config
# with and without overlapping the gradient all-reduces with backward (dist.overlap). Reports the
# median over the steps after the first 5 of the step time and of the communication left exposed
# after backward (GradSync::sync, perf/comm_exposed_s), and the bytes each rank all-reduces.
#   STEPS=30 bash scripts/bench/overlap.sh       (CONFIG=configs/tiny.yaml NPROC=4)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
STEPS=${STEPS:-30}
CONFIG=${CONFIG:-configs/tiny.yaml}
NPROC=${NPROC:-4}
bash scripts/setup.sh >/dev/null
bash scripts/prepare_data.sh >/dev/null
build/demix data --config configs/tiny.yaml >/dev/null
out="results/bench/overlap/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
for overlap in true false; do
  build/demix launch --nproc "$NPROC" -- train --config "$CONFIG" --set train.steps="$STEPS" \
    --set train.log_every=1 --set train.eval_every=0 --set train.eval_tokens=256 \
    --set train.threads=1 --set optim.warmup_steps=2 --set dist.overlap=$overlap \
    --set train.out_dir="$out/run_$overlap" 2>&1 | tee "$out/overlap_$overlap.log" | grep -a 'all-reduce per step' || true
  cp "$out/run_$overlap/metrics.jsonl" "$out/overlap_$overlap.metrics.jsonl"
  rm -rf "$out/run_$overlap"
done
.venv/bin/python - "$out" "$NPROC" <<'PY'
import json, os, statistics, sys
out, nproc = sys.argv[1], sys.argv[2]
rows = ["| overlap | median step ms | median exposed comm ms | buckets started in backward | steps |",
        "|---|---:|---:|---:|---:|"]
for overlap in ("true", "false"):
    recs = [json.loads(l) for l in open(os.path.join(out, f"overlap_{overlap}.metrics.jsonl"))]
    recs = [r for r in recs if "perf/step_s" in r and r["step"] > 5]
    med = lambda k: statistics.median(r[k] for r in recs)
    rows.append(f"| {overlap} | {1e3 * med('perf/step_s'):.1f} | "
                f"{1e3 * med('perf/comm_exposed_s'):.1f} | "
                f"{med('perf/overlapped_buckets'):.0f} | {len(recs)} |")
text = f"**Gloo, {nproc} ranks x 1 thread: communication per step**\n\n" + "\n".join(rows) + "\n"
open(os.path.join(out, "table.md"), "w").write(text)
print(text)
PY
echo "wrote $out"
