#!/usr/bin/env bash
# The main job on the bundled default: build the corpus, train the tokenizer, encode, train a
# small DEMix model (8 experts, one per training domain) and evaluate it per domain, with known
# domains and with the domain-posterior mixture.
# Re-running continues the run if it is unfinished and evaluates it again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CONFIG=${1:-configs/tiny.yaml}
bash scripts/setup.sh
bash scripts/prepare_data.sh
build/demix data --config "$CONFIG"
build/demix train --config "$CONFIG" --resume auto
OUT_DIR=$(build/demix config --config "$CONFIG" --get train.out_dir)
build/demix eval "$OUT_DIR" --output "$OUT_DIR/eval.json" | tee "$OUT_DIR/eval.md"
# Unknown-domain evaluation: every domain, novel ones included, mixed by the domain posterior.
build/demix eval "$OUT_DIR" --mixture --output "$OUT_DIR/mixture"
# training.png (loss per domain, lr, tokens/s) and perplexity.png
.venv/bin/python scripts/plot.py "$OUT_DIR"
