#!/usr/bin/env bash
# The main job on the embedded demo shop: sets up .venv on a fresh machine, then runs `maint demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh -e .
exec .venv/bin/maint demo "$@"
