#!/usr/bin/env bash
# The story on the embedded demo shop (a broken update caught on staging, a good one promoted to
# production): sets up .venv on a fresh machine, then runs `maint demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh -e .
exec .venv/bin/maint demo "$@"
