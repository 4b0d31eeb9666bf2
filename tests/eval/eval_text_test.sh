#!/usr/bin/env bash
# `demix eval --text` on the text file of a corpus split scores exactly as `demix eval` scores the
# split's token file, for a dense and a DEMix model: the same documents and end-of-text tokens,
# so the same perplexity, and the same bits per byte (the bytes of the scored text). Then
# --token-logprobs writes the same file whatever eval.batch_size is, its log-probs sum to that
# score, and the eval report of a run directory lands in the run directory.
set -euo pipefail
DEMIX=${DEMIX_BIN:-build/demix}
PYTHON=${PYTHON:-.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/demix_eval_text.XXXXXX")
trap 'rm -rf "$work"' EXIT

small=(--set model.n_layer=1 --set model.d_model=32 --set model.n_head=2 --set model.seq_len=64
       --set train.steps=2 --set optim.warmup_steps=1 --set train.eval_every=0
       --set "data.domains=[scripture,humour]" --set "data.eval_domains=[glossary]")
limit=(--set eval.max_tokens=4096 --set "eval.splits=[test]")
for kind in dense demix; do
  run="$work/$kind"
  extra=()
  domain=()
  if [ "$kind" = dense ]; then extra=(--set model.ff=dense); else domain=(--domain humour); fi
  "$DEMIX" train --config configs/tiny.yaml "${small[@]}" "${extra[@]}" --set train.out_dir="$run" \
    >/dev/null 2>"$work/train.log" || { cat "$work/train.log"; exit 1; }
  checkpoint="$run/checkpoints/$(cat "$run/checkpoints/latest")"

  "$DEMIX" eval "$run" "${limit[@]}" >/dev/null
  [ -f "$run/eval.json" ] || { echo "no $run/eval.json"; exit 1; }
  [ ! -e "$checkpoint/eval.json" ] || { echo "eval of a run wrote into its checkpoint"; exit 1; }

  "$DEMIX" eval "$run" --text data/demix12/humour/test.txt "${domain[@]}" "${limit[@]}" \
    >"$work/text.out"
  for batch in 1 16; do
    "$DEMIX" eval "$run" --text data/demix12/humour/test.txt "${domain[@]}" "${limit[@]}" \
      --set eval.batch_size=$batch --token-logprobs "$work/logprobs_$batch.json" 2>/dev/null
  done
  cmp "$work/logprobs_1.json" "$work/logprobs_16.json"

  "$PYTHON" - "$run/eval.json" "$work/text.out" "$work/logprobs_1.json" <<'PY'
import json, math, re, sys
report, text_out, logprobs = sys.argv[1:]
row = next(r for r in json.load(open(report))["scores"] if r["domain"] == "humour")
line = open(text_out).read()
m = re.search(r": (\d+) tokens, perplexity ([\d.]+), ([\d.]+) bits/byte", line)
assert m, line
tokens, ppl, bpb = int(m[1]), m[2], m[3]
assert tokens == row["tokens"], (tokens, row)
assert ppl == f"{row['perplexity']:.2f}", (ppl, row)
assert bpb == f"{row['bits_per_byte']:.4f}", (bpb, row)
bits = row["loss"] / math.log(2)  # per token; a token is 1 to 16 bytes of text
assert bits / 16 < row["bits_per_byte"] < bits, row
windows = json.load(open(logprobs))["windows"]
total = sum(sum(w["logprobs"]) for w in windows)
assert abs(-total / tokens - row["loss"]) < 1e-5 * row["loss"], (total, row)
print(f"{tokens} tokens: perplexity {ppl}, {bpb} bits/byte from the text file and the token file")
PY
done
echo "ok"
