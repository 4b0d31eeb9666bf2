#!/usr/bin/env bash
# Throughput of `demix data` on a JSON-lines (.jsonl.zst) corpus, against sentencepiece's own
# single-thread `spm_encode` measured in the same run on the same text:
#   bash scripts/bench/data_encode.sh [SIZE_MB, default 1024]
# Environment: WORKERS (data.workers, default nproc), DETERMINISM_MB (default 64), SPM_MB (the
# spm_encode sample, default 64), SEED (default 0). MB is 10^6 bytes of document text.
# 1. The input, SIZE_MB of text from scripts/bench/make_jsonl.py, is cached under
#    results/bench_data/inputs/ by size and seed; the spm_encode sample is the input's first SPM_MB
#    (the generator's order does not depend on the size), one document after another.
# 2. `build/demix data` encodes it with data.workers=WORKERS under /usr/bin/time -v (wall time and
#    peak RSS); the goal is 0.9 x cores x the spm_encode rate, cores = min(WORKERS, nproc).
# 3. Determinism: a DETERMINISM_MB input encoded with 1, WORKERS and again WORKERS workers; the
#    sha256 of every shard file (*.bin) must agree across the three.
# Everything, table.md included, goes to results/bench_data/<UTC time>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ $# -le 1 ] || { echo "usage: $0 [SIZE_MB]" >&2; exit 2; }
[ -x build/demix ] || { echo "$0: build/demix is missing: build it first" >&2; exit 1; }
SIZE_MB=${1:-1024}
WORKERS=${WORKERS:-$(nproc)}
DETERMINISM_MB=${DETERMINISM_MB:-64}
SPM_MB=${SPM_MB:-64}
SEED=${SEED:-0}
MODEL=data/tokens/spm8k/spm.model
py=.venv/bin/python
[ -x "$py" ] || py=python3
for tool in zstd spm_encode /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not installed" >&2; exit 1; }
done
[ -f "$MODEL" ] || { echo "$0: $MODEL is missing (run \`build/demix data\` once)" >&2; exit 1; }
root=$PWD
out="results/bench_data/$(date -u +%Y%m%dT%H%M%SZ)"
inputs=results/bench_data/inputs
mkdir -p "$out" "$inputs"

# make_input MB: the directory holding corpus.jsonl.zst (the only file its config's glob matches)
# and stats.json, generated unless cached.
make_input() {
  local dir="$inputs/${1}MB_seed$SEED"
  if [ ! -f "$dir/stats.json" ]; then
    echo "generating $dir" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    "$py" scripts/bench/make_jsonl.py --bytes "$(($1 * 1000000))" --seed "$SEED" \
      --out "$dir.tmp/corpus.jsonl.zst" --stats "$dir.tmp/stats.json" >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# encode NAME INPUT_DIR WORKERS: config, tokens, log and /usr/bin/time output under $out/NAME.
encode() {
  local run="$out/$1"
  mkdir -p "$run"
  cat >"$run/config.yaml" <<EOF
base: $root/configs/tiny.yaml
data:
  sources:
    - format: jsonl
      paths: ["$root/$2/*.jsonl.zst"]
      text_field: text
      domain_field: meta.domain
  valid_fraction: 0.01
  test_fraction: 0.01
  workers: 0
  tokens_dir: $root/$run/tokens
tokenizer:
  model: $MODEL
EOF
  echo "demix data: $1 ($3 workers)" >&2
  /usr/bin/time -v -o "$run/time.txt" build/demix data --config "$run/config.yaml" \
    --set "data.workers=$3" 2>"$run/demix.log" ||
    { tail -n 20 "$run/demix.log" >&2; echo "$0: demix data failed, see $run/demix.log" >&2; exit 1; }
  cp "$2/stats.json" "$run/input.json"
  echo "$3" >"$run/workers"
}

# shard_sums NAME: sha256 of every shard file of run NAME, by sorted relative path.
shard_sums() {
  (cd "$out/$1/tokens" && find . -name '*.bin' -type f -print0 | LC_ALL=C sort -z |
    xargs -0 -r sha256sum) >"$out/$1/shards.sha256"
  [ -s "$out/$1/shards.sha256" ] || { echo "$0: no shard files in $out/$1/tokens" >&2; exit 1; }
}

# spm_encode, one thread, on the input's first SPM_MB (at most SIZE_MB).
spm_mb=$((SPM_MB < SIZE_MB ? SPM_MB : SIZE_MB))
sample="$inputs/spm_sample_${spm_mb}MB_seed$SEED.txt"
if [ ! -f "$sample" ]; then
  "$py" scripts/bench/make_jsonl.py --bytes "$((spm_mb * 1000000))" --seed "$SEED" \
    --out /dev/null --text-out "$sample.tmp" >&2
  mv "$sample.tmp" "$sample"
fi
echo "spm_encode: $sample" >&2
/usr/bin/time -f '%e' -o "$out/spm_encode.time" \
  spm_encode --model="$MODEL" --output_format=id <"$sample" >/dev/null ||
  { echo "$0: spm_encode failed on $sample" >&2; exit 1; }
stat -c %s "$sample" >"$out/spm_encode.bytes"

# (Assignments, so that set -e sees make_input fail.)
main_input=$(make_input "$SIZE_MB")
det_input=$(make_input "$DETERMINISM_MB")
encode main "$main_input" "$WORKERS"
encode det_w1 "$det_input" 1
encode det_a "$det_input" "$WORKERS"
encode det_b "$det_input" "$WORKERS"
for name in det_w1 det_a det_b; do shard_sums "$name"; done
if cmp -s "$out/det_w1/shards.sha256" "$out/det_a/shards.sha256" &&
   cmp -s "$out/det_a/shards.sha256" "$out/det_b/shards.sha256"; then
  determinism=identical
else
  determinism=different
fi
echo "$determinism" >"$out/determinism"

"$py" - "$out" "$(nproc)" <<'PY' | tee "$out/table.md"
import json, pathlib, re, sys
out, nproc = pathlib.Path(sys.argv[1]), int(sys.argv[2])
spm_rate = int((out / "spm_encode.bytes").read_text()) / 1e6 / float((out / "spm_encode.time").read_text())

def wall_and_rss(path):
    text = path.read_text()
    clock = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", text).group(1)
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return seconds, rss_kb * 1024 / 1e6

print("| run | input MB | workers | seconds | MB/s | peak RSS MB | spm_encode MB/s (1 thread) "
      "| goal 0.9×cores×spm | met? |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
notes = []
for name in ("main", "det_w1", "det_a", "det_b"):
    run = out / name
    text_bytes = json.loads((run / "input.json").read_text())["text_bytes"]
    workers = int((run / "workers").read_text())
    seconds, rss = wall_and_rss(run / "time.txt")
    rate = text_bytes / 1e6 / seconds
    cores = min(workers or nproc, nproc)
    goal = 0.9 * cores * spm_rate
    print(f"| {name} | {text_bytes / 1e6:.0f} | {workers} | {seconds:.2f} | {rate:.1f} | {rss:.0f} "
          f"| {spm_rate:.2f} | {goal:.1f} | {'yes' if rate >= goal else 'no'} |")
    report = run / "tokens" / "report.json"
    if report.exists():
        reported = json.loads(report.read_text())
        # The report counts each document with its 3-byte separator (bits per byte's convention).
        kept = reported["text_bytes"] - 3 * reported["documents"]
        if kept != text_bytes:
            notes.append(f"{name}: report.json has {kept} bytes of document text, "
                         f"the generator wrote {text_bytes}")
print()
print(f"determinism (sha256 of every shard, workers 1 vs {int((out / 'det_a' / 'workers').read_text())}"
      f" vs again): {(out / 'determinism').read_text().strip()}")
for note in notes:
    print(f"note: {note}")
PY
echo "wrote $out" >&2
