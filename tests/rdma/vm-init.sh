#!/bin/sh
# /init of the RDMA test VM's initramfs; runs under busybox-static.
#
# The initramfs holds busybox, the modules this stage loads (/mods/order
# lists them in load order, as the host's `modprobe --show-depends`
# resolved it; /mods/dummy.ko on the side) and stage 2 (/stage2.sh, from
# vm-guest.sh). Loading modules and configuring eth0 here, from memory with
# busybox, is much cheaper under TCG than doing it with kmod and iproute2
# read over 9p. This stage:
#   1. loads virtio-pci, 9p, virtio-net and the RDMA modules (rdma_rxe,
#      rdma_ucm and their dependencies);
#   2. sets up eth0 (embkv.net=virtio: the virtio NIC; dummy: a dummy
#      netdev) with embkv.ip and embkv.mtu;
#   3. mounts the host's / (9p tag "hostroot") read-only on /newroot, tmpfs
#      on /tmp /run /var/tmp /dev/shm, and the kernel filesystems;
#   4. mounts the shares named by embkv.shares=TAG:MODE:PATH,... at PATH
#      (the same path as on the host), MODE ro or rw, in the order given;
#   5. copies stage 2 to /run (never hidden by a share) and switch_roots to
#      it with bash as PID 1.
# Any failure powers the VM off at once; the host then sees no exit status.

/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

die() {
	echo "vm: initramfs: $*"
	echo o > /proc/sysrq-trigger 2>/dev/null
	poweroff -f
	sleep 30
}

shares=
net=virtio
ip_cidr=
mtu=1500
msize=512000	# the most virtio-9p takes
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	embkv.shares=*) shares=${arg#*=} ;;
	embkv.net=*) net=${arg#*=} ;;
	embkv.ip=*) ip_cidr=${arg#*=} ;;
	embkv.mtu=*) mtu=${arg#*=} ;;
	embkv.msize=*) msize=${arg#*=} ;;
	esac
done
[ -n "$ip_cidr" ] || die "no embkv.ip"

for m in $(cat /mods/order); do
	insmod "/mods/$m.ko" || die "insmod $m failed"
done

case "$net" in
virtio)
	i=0
	while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
		usleep 50000
		i=$((i + 1))
	done
	;;
dummy)
	insmod /mods/dummy.ko && ip link add eth0 type dummy ||
		die "cannot create a dummy eth0"
	;;
*)
	die "unknown embkv.net=$net"
	;;
esac
ip link set lo up
ip link set eth0 mtu "$mtu" || die "mtu $mtu on eth0"
ip addr add "$ip_cidr" dev eth0 || die "address $ip_cidr on eth0"
ip link set eth0 up || die "eth0 up"

opts=trans=virtio,version=9p2000.L,msize=$msize
# The root is read-only for the guest, so caching it is safe and makes
# loading binaries and libraries over 9p much cheaper.
mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot ||
	die "cannot mount the host root"

for d in /tmp /run /var/tmp; do
	mount -t tmpfs -o mode=1777 tmpfs "/newroot$d" || die "tmpfs on $d"
done
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm

old_ifs=$IFS
IFS=,
for s in $shares; do
	tag=${s%%:*}
	rest=${s#*:}
	mode=${rest%%:*}
	path=${rest#*:}
	# The mount point may lie on a tmpfs made above (e.g. under /tmp).
	mkdir -p "/newroot$path" 2>/dev/null
	mount -t 9p -o "$opts,$mode" "$tag" "/newroot$path" ||
		die "cannot mount share $tag on $path"
done
IFS=$old_ifs

cp /stage2.sh /newroot/run/embkv-vm-stage2.sh || die "cannot copy stage 2"
umount /proc /sys /dev 2>/dev/null
# shellcheck disable=SC2093 # the die below runs only if exec fails
exec switch_root /newroot /bin/bash /run/embkv-vm-stage2.sh
die "switch_root failed"
