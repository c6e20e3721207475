#!/bin/bash
# run-tests.sh: run embkv's RDMA tests for real, on soft-RoCE in a VM.
#
# usage: run-tests.sh BUILD_DIR
#
# Installs missing packages (install-deps.sh; EMBKV_RDMA_SKIP_DEPS=1 skips
# it), boots the VM once (vm.sh) and runs inside it every test listed in
# BUILD_DIR/tests/rdma/rdma-tests.txt (written by tests/rdma/CMakeLists.txt:
# "NAME TIMEOUT_S PATH [ARG...]" a line). Without that file it runs every
# executable named embkv_rdma_* found in BUILD_DIR (3 levels deep), with a
# 60 s timeout each.
#
# EMBKV_RDMA_LIST names another list file (ctest passes the one CMake
# wrote). Results, logs and the guest console go to vm-results beside the
# list (else BUILD_DIR/rdma-vm-results); EMBKV_RDMA_RESULTS overrides.
# The last line printed is "N passed, N failed"; the exit status is 0 only
# if every test passed and the VM ran to its end.
set -uo pipefail

export LC_ALL=C    # "." in $EPOCHREALTIME
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEFAULT_TIMEOUT=60
BOOT_ALLOWANCE=90	# seconds for boot, setup and power-off, however slow
LOG_TAIL=60

say() { echo "rdma-tests: $*"; }

[ $# -eq 1 ] && [ -d "$1" ] || {
	echo "usage: run-tests.sh BUILD_DIR" >&2
	exit 2
}
build=$(realpath "$1")

if [ "${EMBKV_RDMA_SKIP_DEPS:-0}" != 1 ]; then
	"$HERE/install-deps.sh" || { say "cannot install dependencies"; exit 1; }
fi

list=${EMBKV_RDMA_LIST:-$build/tests/rdma/rdma-tests.txt}
if [ -f "$list" ]; then
	results=$(dirname "$list")/vm-results
elif [ -d "$build/tests/rdma" ]; then
	results=$build/tests/rdma/vm-results
else
	results=$build/rdma-vm-results
fi
results=${EMBKV_RDMA_RESULTS:-$results}
case $(realpath -m "$results") in
/ | "$build" | "$HERE") say "refusing to use $results for results"; exit 2 ;;
esac
rm -rf "$results"
mkdir -p "$results" || exit 1
results=$(realpath "$results")

# The guest reads its own copy of the list and of the runner: they must not
# depend on what else is visible in the guest.
if [ -f "$list" ]; then
	say "tests from $list"
	grep -v '^[[:space:]]*\(#\|$\)' "$list" > "$results/tests.txt"
else
	say "no $list: running the embkv_rdma_* executables in $build"
	find "$build" -maxdepth 3 -type f -perm -u+x -name 'embkv_rdma_*' |
		sort | while read -r path; do
			echo "${path##*/} $DEFAULT_TIMEOUT $path"
		done > "$results/tests.txt"
fi
cp "$HERE/vm-run-tests.sh" "$results/"

names=()
vm_timeout=$BOOT_ALLOWANCE
while read -r name secs path _; do
	if ! [[ $name =~ ^[A-Za-z0-9_.+-]+$ && $secs =~ ^[1-9][0-9]*$ ]]; then
		say "bad line in the test list: $name $secs $path"
		exit 1
	fi
	[ -x "$path" ] || say "warning: $name: $path is not an executable"
	names+=("$name")
	vm_timeout=$((vm_timeout + secs + 5))
done < "$results/tests.txt"
if [ ${#names[@]} -eq 0 ]; then
	say "no RDMA tests found"
	echo "0 passed, 0 failed"
	exit 1
fi
say "${#names[@]} test(s): ${names[*]}"

t0=$EPOCHREALTIME
# BUILD_DIR is shared read-only (it may lie under /tmp, which the guest
# covers with a tmpfs); the results directory read-write, as the output dir.
"$HERE/vm.sh" -t "$vm_timeout" -o "$results" -r "$build" -- \
	bash "$results/vm-run-tests.sh" "$results/tests.txt" "$results"
vm_rc=$?
wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')

declare -A rc_of secs_of
if [ -f "$results/results" ]; then
	while read -r name rc secs; do
		rc_of[$name]=$rc
		secs_of[$name]=$secs
	done < "$results/results"
fi

passed=0
failed=0
for name in "${names[@]}"; do
	rc=${rc_of[$name]:-}
	if [ "$rc" = 0 ]; then
		passed=$((passed + 1))
		continue
	fi
	failed=$((failed + 1))
	if [ -z "$rc" ]; then
		say "FAIL $name: no result (the VM stopped before it ended)"
	else
		say "FAIL $name: exit $rc after ${secs_of[$name]}s$([ "$rc" = 124 ] && echo ' (timeout)')"
	fi
	if [ -s "$results/$name.log" ]; then
		say "--- last $LOG_TAIL lines of $results/$name.log ---"
		tail -n "$LOG_TAIL" "$results/$name.log" | sed 's/^/  | /'
	fi
done

say "logs in $results (wall ${wall}s)"
if [ "$vm_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	say "the VM failed (exit $vm_rc) although every test passed"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$vm_rc" -eq 0 ]
