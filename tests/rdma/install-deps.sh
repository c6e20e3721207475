#!/bin/bash
# Install what the RDMA VM harness needs (Debian 12, run as root).
#
# Host side: qemu (TCG), Debian's stock kernel (it ships rdma_rxe.ko; installing
# it does not touch the running kernel), busybox-static + cpio for the tiny
# initramfs, kmod to resolve module order. Guest side (the guest runs on the
# host's root filesystem): kmod, iproute2 (`ip`, `rdma`), rdma-core, the rxe
# userspace provider (ibverbs-providers). Build side: the verbs/rdma_cm headers.
#
# Does nothing when everything is installed; runs `apt-get update` only when a
# package is missing. Exit 0 when all packages are present afterwards.
set -euo pipefail

PKGS=(qemu-system-x86 linux-image-amd64 busybox-static kmod cpio iproute2
      rdma-core ibverbs-providers libibverbs-dev librdmacm-dev)

missing=()
for p in "${PKGS[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#PKGS[@]} packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${missing[*]}; run as root" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The stock kernel is only booted by qemu with our own initramfs: skip
# building a Debian initrd for it (saves ~20 s; honoured by initramfs-tools'
# kernel hook).
export INITRD=No
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

for p in "${missing[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	if [ "$st" != installed ]; then
		echo "install-deps: $p still not installed" >&2
		exit 1
	fi
done
echo "install-deps: done"
