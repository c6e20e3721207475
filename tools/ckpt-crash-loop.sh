#!/usr/bin/env bash
# Long crash runs of checkpoints (issue 12, server/CHECKPOINT.md "Crash
# runs"): kill -9 of embkvd at random moments of `checkpoint create`, many
# times, each time checking that the newest complete checkpoint restores
# and an interrupted one is never used.
#
# Usage: tools/ckpt-crash-loop.sh [KILLS [SEED]]   (KILLS default 500)
#   BUILD_DIR=build (default) names the build to use. Builds nothing: run
#   tools/build.sh first.
# It runs only the kill loop of build/tests/client/test_ckpt
# (EMBKV_TEST_ONLY=kill_loop, a cmocka filter), with EMBKV_TEST_CKPT_KILLS
# and EMBKV_TEST_CKPT_SEED; the seed is printed first and again on failure
# so a failing run can be repeated with the same kill timings. Exit status:
# the test's (non-zero on any failure).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$here/build}
kills=${1:-500}
seed=${2:-$(( $(date +%s) ^ $$ ))}
bin=$build/tests/client/test_ckpt
if [[ ! -x $bin ]]; then
	echo "ckpt-crash-loop: $bin not found: build first (tools/build.sh)" >&2
	exit 2
fi
echo "ckpt-crash-loop: $kills kills, seed $seed"
EMBKV_TEST_ONLY=kill_loop EMBKV_TEST_CKPT_KILLS=$kills \
	EMBKV_TEST_CKPT_SEED=$seed "$bin"
rc=$?
if [[ $rc -ne 0 ]]; then
	echo "ckpt-crash-loop: FAILED (exit $rc); repeat with:" \
	     "tools/ckpt-crash-loop.sh $kills $seed" >&2
else
	echo "ckpt-crash-loop: passed, $kills kills, seed $seed"
fi
exit $rc
