#!/usr/bin/env bash
# Python access to a small trained DEMix model (experts in one of its two layers):
#   hf_export_test.sh export   `demix export hf` of one expert path: transformers' GPT2LMHeadModel
#                              and the exported tokenizer reproduce the C++ token ids and per-token
#                              log-probs on real text, as for a dense model's export; the
#                              prior-weighted expert average equals an independent average of the
#                              expert files
#   hf_export_test.sh readme   the Python snippet of docs/checkpoints.md runs on the checkpoint
set -euo pipefail
mode=${1:-export}
DEMIX=${DEMIX_BIN:-build/demix}
PYTHON=${PYTHON:-.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/demix_hf_export.XXXXXX")
trap 'rm -rf "$work"' EXIT

run="$work/run"
"$DEMIX" train --config configs/tiny.yaml --set model.n_layer=2 --set model.demix_layers=[1] \
  --set train.steps=20 --set optim.warmup_steps=2 --set train.eval_every=0 --set train.out_dir="$run" >/dev/null
if [ "$mode" = readme ]; then
  checkpoint="$run/checkpoints/$(cat "$run/checkpoints/latest")"
  awk '/run by `ctest -R interop.readme_python`/ {found=1} found && /^```python/ {on=1; next}
       on && /^```/ {exit} on' docs/checkpoints.md |
    sed "s|runs/tiny/checkpoints/step_00000600|$checkpoint|" >"$work/snippet.py"
  [ -s "$work/snippet.py" ] || { echo "no Python snippet found in docs/checkpoints.md"; exit 1; }
  cat "$work/snippet.py"
  "$PYTHON" "$work/snippet.py"
  exit 0
fi

# real text the model never trained on: the start of a novel domain's test split
"$PYTHON" -c "import sys; open(sys.argv[2], 'w', encoding='utf-8').write(open(sys.argv[1], encoding='utf-8').read()[:12000])" \
  data/demix12/glossary/test.txt "$work/text.txt"

"$DEMIX" export hf "$run" --domain python_docs --out "$work/hf_python_docs"
"$DEMIX" eval "$run" --text "$work/text.txt" --domain python_docs \
  --token-logprobs "$work/logprobs.json" --set eval.max_tokens=1024
"$PYTHON" tests/interop/hf_export_check.py "$work/hf_python_docs" "$work/logprobs.json"

# a dense model exports the same way, without --domain
"$DEMIX" train --config configs/tiny.yaml --set model.n_layer=2 --set model.ff=dense \
  --set train.steps=20 --set optim.warmup_steps=2 --set train.eval_every=0 --set train.out_dir="$work/dense" >/dev/null
"$DEMIX" export hf "$work/dense" --out "$work/hf_dense"
"$DEMIX" eval "$work/dense" --text "$work/text.txt" --token-logprobs "$work/dense_logprobs.json" \
  --set eval.max_tokens=1024
"$PYTHON" tests/interop/hf_export_check.py "$work/hf_dense" "$work/dense_logprobs.json"

"$DEMIX" prior estimate "$run" --text "$work/text.txt" --output "$work/prior.json" >/dev/null
"$DEMIX" export hf "$run" --merge "$work/prior.json" --out "$work/hf_merged"
"$PYTHON" tests/interop/hf_export_check.py --merged "$work/hf_merged" \
  "$run/checkpoints/$(cat "$run/checkpoints/latest")" "$work/prior.json"
