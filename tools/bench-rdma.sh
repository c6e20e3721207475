#!/usr/bin/env bash
# embkv-bench rdma-count in the soft-RoCE VM: boots the VM (tests/rdma/vm.sh),
# starts two embkvd on rdma://10.0.2.15 inside it, runs
# `embkv-bench --mode rdma-count` against them and prints its report.
# Counts READs, round trips and bytes per pulled key; emulated RDMA says
# nothing about time, so no time is reported.
#
# usage: tools/bench-rdma.sh BUILD_DIR [embkv-bench options, e.g. --json]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" = --in-vm ]; then
	# Inside the VM: BUILD_DIR and options follow.
	build=$2
	shift 2
	ip=${EMBKV_VM_IP:-10.0.2.15}
	out=$(mktemp -d)
	pids=()
	trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
	peers="rdma://$ip:7101,rdma://$ip:7102"
	for i in 0 1; do
		"$build/server/embkvd" --listen "rdma://$ip:710$((i + 1))" \
			--peers "$peers" --self "$i" --threads 1 \
			> "$out/s$i.log" 2>&1 &
		pids+=($!)
	done
	for i in 0 1; do
		for _ in $(seq 200); do
			grep -q "listening on" "$out/s$i.log" && break
			sleep 0.1
		done
		grep -q "listening on" "$out/s$i.log" ||
			{ cat "$out/s$i.log" >&2; exit 1; }
	done
	"$build/tools/embkv-bench" --mode rdma-count --servers "$peers" "$@"
	exit $?
fi

[ $# -ge 1 ] && [ -d "$1" ] || {
	echo "usage: tools/bench-rdma.sh BUILD_DIR [embkv-bench options]" >&2
	exit 2
}
build=$(realpath "$1")
shift
"$here/tests/rdma/install-deps.sh" >&2
cd "$here"
exec "$here/tests/rdma/vm.sh" -t 300 -r "$build" -- \
	bash "$here/tools/bench-rdma.sh" --in-vm "$build" "$@"
