#!/usr/bin/env bash
# The test command: sets up everything on a fresh Debian machine, then runs the whole suite
# against real servers (sshd, nginx + php-fpm, MariaDB, Redis, pebble + certbot) on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/lab-packages.sh
python3 -m pip install -q --disable-pip-version-check -e '.[test]' -e tests/plugin
python3 -m pytest -q -p no:cacheprovider "$@"
