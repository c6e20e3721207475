#!/bin/bash
# vm.sh: run a command inside a qemu VM that has a soft-RoCE device (rxe0).
#
# usage: vm.sh [options] [--] COMMAND [ARG...]
#   -t SECS   hard wall-clock limit for the whole VM run (default 180)
#   -c N      vCPUs (default 2)
#   -m MIB    guest memory (default 1536)
#   -o DIR    output directory, shared read-write with the guest; the guest
#             sees it as $EMBKV_VM_OUT. Gets console.log, job.sh, exit.
#             Default: a fresh directory under the work dir, removed after a
#             successful run and kept after a failed one.
#   -r DIR    also share DIR read-only at the same path (repeatable)
#   -s DIR    also share DIR read-write at the same path (repeatable)
#   -e V=X    set environment variable V to X for COMMAND (repeatable)
#   -n NET    eth0 is a virtio NIC ("virtio", default) or a dummy ("dummy")
#   -v        show the whole guest console (kernel messages too)
# Exit status: COMMAND's; 124 on timeout or when the guest dies without
# reporting one (crash, panic); 125 when the VM setup itself failed.
#
# How: boots Debian's own kernel (linux-image-amd64, which ships rdma_rxe)
# in qemu TCG. The guest's root is the host's / over virtio-9p, read-only,
# so host-built binaries run unchanged; tmpfs covers /tmp /run /var/tmp
# /dev/shm there, so a path under those must be shared with -r/-s. COMMAND
# runs in the current directory (if the guest can see it) after rxe0 is up
# on eth0 = 10.0.2.15/24. Paths must not contain blanks, ',' or ':'.
#
# Environment: EMBKV_VM_WORK (cache and run dirs; default
# ${TMPDIR:-/tmp}/embkv-rdma-vm-UID), EMBKV_VM_KERNEL (kernel version to boot;
# default: the newest in /lib/modules with rdma_rxe and a /boot/vmlinuz),
# EMBKV_VM_CMDLINE (extra kernel arguments, e.g. loglevel=7 with -v).
set -uo pipefail

export PATH=$PATH:/usr/sbin:/sbin LC_ALL=C    # C: "." in $EPOCHREALTIME, byte order
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONSOLE_TAIL=40
GUEST_IP=10.0.2.15/24	# what qemu's user-mode network would hand out
# 4200: rxe then runs a 4096-byte path MTU (1024 at 1500), a quarter of the
# packets for bulk transfers.
GUEST_MTU=4200
# Modules the initramfs loads, dependencies first: the host's kmod resolves
# the order once (there is no modprobe or modules.dep in the initramfs).
INITRAMFS_MODULES="virtio_pci 9pnet_virtio 9p virtio_net rdma_rxe rdma_ucm"

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
		"${BASH_SOURCE[0]}" >&2
	exit 2
}

say() { echo "vm: $*"; }
die() { echo "vm: error: $*" >&2; exit 125; }

timeout_s=180
cpus=2
mem=1536
out=
net=virtio
verbose=0
ro_dirs=()
rw_dirs=()
envs=()
while getopts "t:c:m:o:r:s:e:n:vh" opt; do
	case $opt in
	t) timeout_s=$OPTARG ;;
	c) cpus=$OPTARG ;;
	m) mem=$OPTARG ;;
	o) out=$OPTARG ;;
	r) ro_dirs+=("$OPTARG") ;;
	s) rw_dirs+=("$OPTARG") ;;
	e) envs+=("$OPTARG") ;;
	n) net=$OPTARG ;;
	v) verbose=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "bad -t $timeout_s"
case $net in virtio | dummy) ;; *) die "bad -n $net" ;; esac
for e in "${envs[@]}"; do
	[[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "bad -e $e (want NAME=VALUE)"
done

for tool in qemu-system-x86_64 busybox modprobe cpio gzip; do
	command -v "$tool" > /dev/null || [ -x "/sbin/$tool" ] ||
		die "$tool not found (run $HERE/install-deps.sh)"
done

work=${EMBKV_VM_WORK:-${TMPDIR:-/tmp}/embkv-rdma-vm-$(id -u)}
mkdir -p "$work" || die "cannot create work dir $work"
work=$(realpath "$work")
# Output dirs of failed runs are kept for a look; not forever.
find "$work" -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2> /dev/null

# --- kernel ----------------------------------------------------------------
pick_kernel() {
	local ko kv
	for ko in /lib/modules/*/kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko*; do
		kv=${ko#/lib/modules/}
		kv=${kv%%/*}
		[ -r "/boot/vmlinuz-$kv" ] && echo "$kv"
	done | sort -V | tail -n 1
}
kv=${EMBKV_VM_KERNEL:-$(pick_kernel)}
[ -n "$kv" ] && [ -r "/boot/vmlinuz-$kv" ] ||
	die "no kernel with rdma_rxe in /lib/modules + /boot (run $HERE/install-deps.sh)"
# A package update may keep the version string: key the caches on the
# image's size and mtime as well.
kstamp=$(stat -c '%s-%Y' "/boot/vmlinuz-$kv")

# --- kernel image ------------------------------------------------------------
# Decompressing the bzImage under TCG takes ~3 s of every boot. Debian's
# kernel has a PVH entry point (CONFIG_PVH), so qemu can load the
# uncompressed ELF vmlinux directly: extract it once per kernel version
# (~65 MB in the work dir). Fall back to the bzImage if that fails.
has_pvh_note() {    # ELF note: namesz 4, descsz 4|8, type 18 (PHYS32_ENTRY), "Xen"
	[ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] &&
		LC_ALL=C grep -qaP '\x04\x00\x00\x00[\x04\x08]\x00\x00\x00\x12\x00\x00\x00Xen\x00' "$1"
}

extract_vmlinux() {    # extract_vmlinux BZIMAGE OUT
	local spec tool magic off
	for spec in 'xz \xfd7zXZ\x00' 'zstd \x28\xb5\x2f\xfd' 'gzip \x1f\x8b\x08'; do
		tool=${spec%% *}
		magic=${spec#* }
		command -v "$tool" > /dev/null || continue
		for off in $(LC_ALL=C grep -obUaP "$magic" "$1" | head -n 4 | cut -d: -f1); do
			tail -c "+$((off + 1))" "$1" | "$tool" -dc > "$2.tmp.$$" 2> /dev/null
			if has_pvh_note "$2.tmp.$$"; then
				mv -f "$2.tmp.$$" "$2"
				return 0
			fi
		done
	done
	rm -f "$2.tmp.$$"
	return 1
}

kernel=/boot/vmlinuz-$kv
vmlinux=$work/vmlinux-$kv-$kstamp
if [ ! -s "$vmlinux" ] && [ ! -e "$vmlinux.none" ]; then
	rm -f "$work/vmlinux-$kv"-*
	say "extracting vmlinux from $kernel (once per kernel)"
	if ! extract_vmlinux "$kernel" "$vmlinux"; then
		say "no PVH-bootable vmlinux in $kernel; booting the bzImage (slower)"
		touch "$vmlinux.none"
	fi
fi
boot_how=bzImage
if [ -s "$vmlinux" ]; then
	kernel=$vmlinux
	boot_how="PVH vmlinux"
fi

# --- initramfs, cached per kernel version and stage-script contents ---------
busybox=$(command -v busybox)
key=$( (cat "$HERE/vm-init.sh" "$HERE/vm-guest.sh" "$busybox"
	echo "$INITRAMFS_MODULES $kstamp") | sha256sum | cut -c1-12)
initrd=$work/initramfs-$kv-$key.cpio.gz

# copy_module FILE DEST: a module, decompressed (busybox insmod wants .ko).
copy_module() {
	case $1 in
	*.ko) cp "$1" "$2" ;;
	*.ko.xz) xz -dc "$1" > "$2" ;;
	*.ko.zst) zstd -dqc "$1" > "$2" ;;
	*.ko.gz) gzip -dc "$1" > "$2" ;;
	*) false ;;
	esac
}

build_initramfs() {    # in $stage, made by the caller
	local mods f m order=
	mkdir -p "$stage"/{bin,dev,proc,sys,mods,newroot}
	cp "$busybox" "$stage/bin/busybox" || return 1
	ln -s busybox "$stage/bin/sh"    # the interpreter of /init
	mods=$(for top in $INITRAMFS_MODULES; do
		modprobe -S "$kv" --show-depends "$top" || exit 1
	done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }') || return 1
	[ -n "$mods" ] || return 1
	for f in $mods; do
		m=$(basename "$f")
		m=${m%%.ko*}
		copy_module "$f" "$stage/mods/$m.ko" || return 1
		order+="$m "
	done
	echo "$order" > "$stage/mods/order"
	# Only for -n dummy; it has no dependencies.
	f=$(modprobe -S "$kv" --show-depends dummy | awk '$1 == "insmod" { print $2 }')
	copy_module "$f" "$stage/mods/dummy.ko" || return 1
	install -m 755 "$HERE/vm-init.sh" "$stage/init"
	install -m 755 "$HERE/vm-guest.sh" "$stage/stage2.sh"
	(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) |
		gzip -1 > "$initrd.tmp.$$" || return 1
	mv -f "$initrd.tmp.$$" "$initrd"    # atomic: concurrent runs are safe
}

if [ ! -s "$initrd" ]; then
	say "building initramfs for $kv"
	stage=$(mktemp -d "$work/initramfs.XXXXXX") || die "cannot create a stage dir"
	build_initramfs
	build_rc=$?
	rm -rf "$stage" "$initrd.tmp.$$"
	[ "$build_rc" -eq 0 ] || die "initramfs build failed"
	for f in "$work"/initramfs-"$kv"-*.cpio.gz; do
		[ "$f" = "$initrd" ] || rm -f "$f"
	done
fi

# --- output directory and shares -------------------------------------------
keep_out=1
if [ -z "$out" ]; then
	out=$(mktemp -d "$work/run.XXXXXX") || die "cannot create run dir"
	keep_out=0
fi
mkdir -p "$out" || die "cannot create $out"
out=$(realpath "$out")
rm -f "$out/exit" "$out/job.sh" "$out/console.log"

shares=()   # "PATH MODE", mounted parents first (sorted by path)
add_share() {
	local p
	p=$(realpath "$1" 2> /dev/null) && [ -d "$p" ] || die "no directory $1"
	[[ $p == /* && $p != *[[:space:],:]* ]] ||
		die "share path $p must not contain blanks, ',' or ':'"
	[ "$p" != / ] || die "/ is always shared (read-only)"
	shares+=("$p $2")
}
add_share "$out" rw
for d in "${ro_dirs[@]}"; do add_share "$d" ro; done
for d in "${rw_dirs[@]}"; do add_share "$d" rw; done

virtfs=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
share_arg=
i=0
while read -r path mode; do
	ro_opt=
	[ "$mode" = ro ] && ro_opt=,readonly=on
	virtfs+=(-virtfs "local,path=$path,mount_tag=s$i,security_model=none,multidevs=remap$ro_opt")
	share_arg+="${share_arg:+,}s$i:$mode:$path"
	i=$((i + 1))
done < <(printf '%s\n' "${shares[@]}" | LC_ALL=C sort -u)    # C: "/a ro" < "/a/b rw"

# The job: the command, its environment and working directory.
{
	echo "# written by vm.sh; run by the guest's stage 2"
	printf 'cd -- %q 2>/dev/null || cd /\n' "$PWD"
	for e in "${envs[@]}"; do printf 'export %q\n' "$e"; done
	printf 'echo %q\n' "vm: running: $*"
	printf 'exec'
	printf ' %q' "$@"
	echo
} > "$out/job.sh"

# --- boot --------------------------------------------------------------------
append="console=ttyS0 printk.time=1 quiet loglevel=4 panic=-1 mitigations=off tsc=reliable"
append+=" random.trust_cpu=on embkv.shares=$share_arg embkv.out=$out"
append+=" embkv.net=$net embkv.ip=$GUEST_IP embkv.mtu=$GUEST_MTU"
append+=" ${EMBKV_VM_CMDLINE:-}"
[ ${#append} -lt 2000 ] || die "kernel command line too long (shorter share paths?)"

nic=(-nic none)
if [ "$net" = virtio ]; then
	# restrict=on: the guest reaches nothing outside; romfile=: no iPXE.
	# shellcheck disable=SC2054 # the commas are inside qemu options
	nic=(-netdev user,id=net0,restrict=on -device virtio-net-pci,netdev=net0,romfile=)
fi
bios=()
[ -r /usr/share/qemu/qboot.rom ] && bios=(-bios /usr/share/qemu/qboot.rom)

# KVM is not used: /dev/kvm on these hosts cannot run a stock kernel.
# shellcheck disable=SC2054
qemu=(qemu-system-x86_64 -accel tcg,thread=multi,tb-size=256 -cpu max
	-M q35 -smp "$cpus" -m "$mem" "${bios[@]}"
	-nodefaults -no-user-config -display none -monitor none -no-reboot
	-serial stdio -kernel "$kernel" -initrd "$initrd"
	-append "$append" -device virtio-rng-pci "${nic[@]}" "${virtfs[@]}")

say "booting kernel $kv ($boot_how, tcg, $cpus vCPUs, $mem MiB, timeout ${timeout_s}s)"
t0=$EPOCHREALTIME
# The whole console goes to console.log; the terminal gets it live, without
# the kernel's own lines (they start with a "[ seconds]" stamp) unless -v.
# (A bash loop, not awk: mawk buffers its input, which delays progress.)
console_filter() {
	local line stamp='^\[ *[0-9]+\.[0-9]+\] '
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		printf '%s\n' "$line" >&3
		if [ "$verbose" -eq 1 ] || ! [[ $line =~ $stamp ]]; then
			printf '%s\n' "$line"
		fi
	done 3> "$out/console.log"
}
timeout --foreground -k 5 "$timeout_s" "${qemu[@]}" < /dev/null 2>&1 | console_filter
qemu_rc=${PIPESTATUS[0]}
wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')

rc=124
if [ -s "$out/exit" ]; then
	read -r rc < "$out/exit"
	[[ $rc =~ ^[0-9]+$ ]] || rc=124
elif [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
	say "timed out after ${timeout_s}s"
else
	say "guest stopped without an exit status (crash or panic; qemu exit $qemu_rc)"
fi
say "exit $rc (wall ${wall}s)"

if [ "$rc" -ne 0 ]; then
	say "--- last $CONSOLE_TAIL lines of the guest console ($out/console.log) ---"
	tail -n "$CONSOLE_TAIL" "$out/console.log" | sed 's/^/  | /'
	say "--- end of console ---"
elif [ "$keep_out" -eq 0 ]; then
	rm -rf "$out"
fi
exit "$rc"
