#!/usr/bin/env bash
# Refresh constraints.txt: the exact versions of maintkit's runtime dependencies (with the notify
# extra) that the GitHub Action installs. Resolves them afresh in a throw-away virtual environment,
# so the file holds what `pip install '.[notify]'` picks today; review the diff, run the tests, commit.
# Usage: bash scripts/refresh-constraints.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check '.[notify]'
{
  echo "# Exact versions of maintkit's runtime dependencies, installed by action.yml (pip install -c)."
  echo "# Refresh: bash scripts/refresh-constraints.sh (then run the tests and commit the diff)."
  "$tmp/venv/bin/pip" freeze --disable-pip-version-check --exclude maintkit | LC_ALL=C sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pinned packages"
