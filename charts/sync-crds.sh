#!/usr/bin/env bash
# Copy the CRDs from the repository's crds/ (the single source of truth, also shipped inside the
# Python package) into the chart's crds/ folder, which Helm installs before the templates.
# tests/test_chart.py fails while the two folders differ, so run this after editing a CRD.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/../crds"
dst="$here/propylon/crds"
mkdir -p "$dst"
find "$dst" -maxdepth 1 -name '*.yaml' -delete
shopt -s nullglob
for file in "$src"/*.yaml; do
    cp "$file" "$dst/"
done
echo "synced $(find "$dst" -maxdepth 1 -name '*.yaml' | wc -l) CRD file(s) into charts/propylon/crds"
