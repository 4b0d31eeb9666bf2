#!/usr/bin/env bash
# Regenerates docs/config.md from the code's config schema (ctest -R docs.config_reference checks
# that it is current).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=docs/config.md
tmp=$(mktemp "$out.XXXXXX")
sed '/^<!-- generated/q' "$out" >"$tmp"
build/demix config --reference >>"$tmp"
mv "$tmp" "$out"
echo "wrote $out"
