#!/usr/bin/env bash
# Installs the Debian 12 packages embkv needs to build, test and run,
# and only those that are missing (apt-get update runs only then).
# Usage: tools/install-deps.sh [extra-package ...]   (as root)
set -euo pipefail

pkgs=(build-essential cmake pkg-config libibverbs-dev librdmacm-dev
      libxxhash-dev liburcu-dev libcmocka-dev etcd-server libcurl4-openssl-dev
      libjansson-dev libmicrohttpd-dev libssl-dev clang libclang-rt-14-dev
      curl prometheus redis-server memcached libhiredis-dev libmemcached-dev
      python3-numpy python3-torch python3-pytest "$@")
missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#pkgs[@]} packages present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${missing[*]}; run as root to install" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
