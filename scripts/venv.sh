#!/usr/bin/env bash
# Create (once) the project's virtual environment in .venv and install maintkit into it.
# Works where the system Python refuses `pip install` (PEP 668): nothing is installed system-wide.
# Usage: bash scripts/venv.sh [EXTRA_PIP_ARGS...]   (prints nothing on success)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MAINT_VENV:-.venv}"
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  # Debian's system Python ships venv/ensurepip in a separate package
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"
# bytecode for the editable source tree (pip compiles only what it copies): every run starts
# from it, even where PYTHONDONTWRITEBYTECODE keeps Python from writing it on first import
"$VENV/bin/python" -m compileall -q maintkit >/dev/null
