#!/usr/bin/env bash
# The test command: sets up everything on a fresh Debian machine (the lab's system packages and a
# virtual environment in .venv, so it works where the system Python refuses `pip install`), then
# runs the whole suite against real servers (sshd, nginx + php-fpm, MariaDB, Redis, pebble + certbot)
# on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/lab-packages.sh
bash scripts/venv.sh -e '.[test,dev,notify,browser]' -e tests/plugin
export PATH="$PWD/${MAINT_VENV:-.venv}/bin:$PATH"
exec python -m pytest -q -p no:cacheprovider "$@"
