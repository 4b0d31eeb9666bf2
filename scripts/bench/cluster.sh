#!/usr/bin/env bash
# Time and peak memory of `demix cluster` on SIZE_MB of text (the goal: 1 GB in at most 2 GB on
# 2 cores):
#   bash scripts/bench/cluster.sh [SIZE_MB, default 1024]
# The input is scripts/bench/make_jsonl.py's JSON lines (the bundled domains, repeated and
# varied), cached under results/bench_data/inputs/ as data_encode.sh caches it; `demix data`
# encodes it (timed too), then `demix cluster` (cluster.k=8, the other cluster.* keys at their
# defaults; K overrides k) runs under /usr/bin/time -v. Everything, table.md included, goes to
# results/bench_cluster/<UTC time>/; the clustered corpus is deleted afterwards (KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ $# -le 1 ] || { echo "usage: $0 [SIZE_MB]" >&2; exit 2; }
[ -x build/demix ] || { echo "$0: build/demix is missing: build it first" >&2; exit 1; }
SIZE_MB=${1:-1024}
K=${K:-8}
MODEL=data/tokens/spm8k/spm.model
py=.venv/bin/python
[ -f "$MODEL" ] || { echo "$0: $MODEL is missing (run \`build/demix data\` once)" >&2; exit 1; }
root=$PWD
out="results/bench_cluster/$(date -u +%Y%m%dT%H%M%SZ)"
input="results/bench_data/inputs/${SIZE_MB}MB_seed0"
mkdir -p "$out"
if [ ! -f "$input/stats.json" ]; then
  rm -rf "$input.tmp" && mkdir -p "$input.tmp"
  "$py" scripts/bench/make_jsonl.py --bytes "$((SIZE_MB * 1000000))" --seed 0 \
    --out "$input.tmp/corpus.jsonl.zst" --stats "$input.tmp/stats.json" >&2
  rm -rf "$input" && mv "$input.tmp" "$input"
fi
cat >"$out/config.yaml" <<EOF2
base: $root/configs/tiny.yaml
data:
  sources:
    - format: jsonl
      paths: ["$root/$input/*.jsonl.zst"]
      text_field: text
      domain_field: meta.domain
  tokens_dir: $root/$out/tokens
tokenizer:
  model: $MODEL
EOF2
/usr/bin/time -v -o "$out/data.time" build/demix data --config "$out/config.yaml" 2>"$out/data.log"
/usr/bin/time -v -o "$out/cluster.time" build/demix cluster --config "$out/config.yaml" \
  --set cluster.k="$K" --output "$out/clusters" 2>"$out/cluster.log" ||
  { tail -n 20 "$out/cluster.log" >&2; exit 1; }
cp "$out/clusters/MANIFEST.json" "$out/clusters/purity.md" "$out/"
[ "${KEEP:-0}" = 1 ] || rm -rf "$out/clusters" "$out/tokens"
"$py" - "$out" "$input/stats.json" <<'EOF2'
import json, re, sys
out, stats = sys.argv[1], json.load(open(sys.argv[2]))
def measure(name):
    text = open(f"{out}/{name}.time").read()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", text).groups()
    seconds = int(wall[0] or 0) * 3600 + int(wall[1]) * 60 + float(wall[2])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    return seconds, rss
manifest = json.load(open(f"{out}/MANIFEST.json"))
mb = stats["text_bytes"] / 1e6
rows = []
for name in ("data", "cluster"):
    seconds, rss = measure(name)
    rows.append(f"| demix {name} | {seconds:.0f} | {mb / seconds:.1f} | {rss:.0f} |")
table = (f"{mb:.0f} MB of text, {stats['documents']} documents; k={manifest['k']}, "
         f"{manifest['train_documents']} training documents clustered, sample "
         f"{manifest['sample_documents']}, SVD {manifest['svd_dims']}; purity "
         f"{manifest['purity']:.3f}, NMI {manifest['normalized_mutual_information']:.3f}\n\n"
         "| step | wall s | MB/s | peak RSS MB |\n|---|---:|---:|---:|\n" + "\n".join(rows) + "\n")
open(f"{out}/table.md", "w").write(table)
print(f"{out}/table.md\n{table}")
EOF2
