#!/bin/bash
# Stage 2 of the RDMA test VM: PID 1 after switch_root into the host's root
# filesystem (read-only over 9p). The initramfs (vm-init.sh) has loaded the
# modules and configured eth0 already. This stage creates the soft-RoCE
# device rxe0 on eth0, runs the job vm.sh wrote to the output share
# ($EMBKV_VM_OUT/job.sh), stores the job's exit status in $EMBKV_VM_OUT/exit
# and powers the VM off. Setup failures exit 125; if no exit file appears
# at all, the host reports 124.
#
# Kernel command line: embkv.out=DIR, embkv.ip=ADDR/LEN,
# embkv.trace=1 (set -x with timestamps).
#
# Every fork+exec costs ~14 ms under TCG, and a binary's first exec ~0.5 s
# (read over 9p): prefer bash builtins here.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LC_ALL=C
umask 022

out=
ip_cidr=
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
	case "$arg" in
	embkv.out=*) out=${arg#*=} ;;
	embkv.ip=*) ip_cidr=${arg#*=} ;;
	embkv.trace=1) PS4='+ ${EPOCHREALTIME} ' && set -x ;;
	esac
done

uptime_s() {
	local up rest
	read -r up rest < /proc/uptime
	echo "$up"
}

poweroff_now() {
	sync
	echo o > /proc/sysrq-trigger
	# The power-off is asynchronous, and PID 1 must not exit meanwhile (that
	# panics). The 9p root may already be gone: wait with builtins only.
	while :; do read -r -t 1 _ < /dev/console; done
}

# setup_fail MESSAGE: report and power off with exit status 125.
setup_fail() {
	echo "vm: setup failed: $1"
	[ -d "$out" ] && echo 125 > "$out/exit"
	poweroff_now
}

echo "vm: guest up at $(uptime_s)s (kernel $(uname -r))"
[ -n "$out" ] && [ -d "$out" ] || setup_fail "no output share (embkv.out)"

rdma link add rxe0 type rxe netdev eth0 || setup_fail "rdma link add rxe0"
port=/sys/class/infiniband/rxe0/ports/1
state=
for ((i = 0; i < 100; i++)); do
	if [ -c /dev/infiniband/uverbs0 ] && [ -c /dev/infiniband/rdma_cm ]; then
		read -r state < "$port/state"
		[[ $state == *ACTIVE* ]] && break
	fi
	sleep 0.05
done
[[ $state == *ACTIVE* ]] || setup_fail "rxe0 not active (port state: ${state:-none})"
read -r mtu < /sys/class/net/eth0/mtu
echo "vm: rxe0 up on eth0 ($ip_cidr, mtu $mtu) at $(uptime_s)s"

export EMBKV_VM_OUT=$out EMBKV_VM_IP=${ip_cidr%/*} EMBKV_VM_DEV=rxe0
bash "$out/job.sh" < /dev/null
rc=$?
echo "vm: job exited $rc at $(uptime_s)s"
echo "$rc" > "$out/exit"
poweroff_now
