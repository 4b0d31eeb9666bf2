#!/usr/bin/env bash
# Runs the whole test suite: set-up and build, the bundled corpus (needed by the integration and
# parity tests), then every test under ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/prepare_data.sh
ctest --test-dir build --output-on-failure -j2 "$@"
