#!/usr/bin/env bash
# Install the benchmark's peers into their own virtual environments:
#   benchmarks/.venvs/pyinfra   pyinfra (pinned below)
#   benchmarks/.venvs/ansible   ansible-core (pinned below)
# Idempotent: a venv that already holds the pinned version is left alone (nothing is installed
# on a second call). Prints the versions at the end. Needs python3 with venv and PyPI access.
set -euo pipefail

PYINFRA_VERSION="3.10.0"
ANSIBLE_CORE_VERSION="2.19.14"   # the newest ansible-core that runs on Python 3.11

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="$here/.venvs"
python="${PYTHON:-python3}"
mkdir -p -- "$venvs"

# installed NAME VENV: the version pip reports for NAME in VENV (empty when missing)
installed() {
    "$2/bin/python" -m pip show -- "$1" 2>/dev/null | sed -n 's/^Version: //p'
}

# ensure VENV NAME VERSION: create VENV if needed and install NAME==VERSION unless present
ensure() {
    local venv="$1" name="$2" version="$3"
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv -- "$venv"
    fi
    if [ "$(installed "$name" "$venv")" = "$version" ]; then
        echo "$name $version already installed in $venv"
        return 0
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -- "$name==$version"
}

ensure "$venvs/pyinfra" pyinfra "$PYINFRA_VERSION"
ensure "$venvs/ansible" ansible-core "$ANSIBLE_CORE_VERSION"

echo "pyinfra      $("$venvs/pyinfra/bin/pyinfra" --version 2>&1 | head -n 1)"
echo "ansible-core $("$venvs/ansible/bin/ansible-playbook" --version 2>&1 | head -n 1)"
