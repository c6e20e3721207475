#!/usr/bin/env bash
# embkvctl's global options after the command, stats --watch, and the
# latency columns' unit note.
# Usage: ctl_test.sh EMBKVD EMBKVCTL
set -euo pipefail
embkvd=$1
ctl=$2
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$embkvd" --listen tcp://127.0.0.1:0 --threads 1 --default-table t \
	>"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do
	grep -q '^embkvd: listening on ' "$tmp/out" && break
	kill -0 "$pid" 2>/dev/null || fail "embkvd exited: $(cat "$tmp/err")"
	sleep 0.1
done
srv=$(sed -n 's/^embkvd: listening on //p' "$tmp/out")

json_ok() { python3 -c 'import json, sys
for line in sys.stdin:
    d = json.loads(line)
    assert d["totals"]["servers_up"] == 1, d
print("ok")'; }
# Global options before, after, and on both sides of the command.
[ "$("$ctl" --servers "$srv" stats --json | json_ok)" = ok ] || fail "before"
[ "$("$ctl" stats --servers "$srv" --json | json_ok)" = ok ] || fail "after"
[ "$("$ctl" --json stats --servers="$srv" | json_ok)" = ok ] || fail "mixed"
"$ctl" tables --servers "$srv" | grep '^t ' >/dev/null || fail "tables --servers after"
# A missing value is a usage error (2), not a crash.
set +e
"$ctl" stats --servers >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || fail "stats --servers (no value): exit $rc"
"$ctl" stats --watch 0 --servers "$srv" >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || fail "stats --watch 0: exit $rc"
# --watch: a document a second until stopped.
timeout 2.6 "$ctl" stats --watch 1 --servers "$srv" --json >"$tmp/watch"
rc=$?
set -e
[ $rc = 124 ] || fail "stats --watch ended by itself: $rc"
n=$(wc -l <"$tmp/watch")
[ "$n" -ge 2 ] && [ "$n" -le 4 ] || fail "--watch 1 for 2.6 s: $n documents"
[ "$(json_ok <"$tmp/watch")" = ok ] || fail "--watch documents"
# 16-bit tables: create-table's --dtype, --rounding, --state-dtype reach
# the server and come back in tables --json.
"$ctl" --servers "$srv" create-table h16 --dim 8 --dtype bf16 \
	--optimizer adam --state-dtype bf16 --rounding nearest >/dev/null ||
	fail "create-table --dtype bf16"
"$ctl" --servers "$srv" tables --json | python3 -c 'import json, sys
d = json.load(sys.stdin)
t = [x for x in d["tables"] if x["name"] == "h16"][0]
assert (t["dtype"], t["rounding"], t["state_dtype"], t["optimizer"]) == \
    ("bf16", "nearest", "bf16", "adam"), t
t = [x for x in d["tables"] if x["name"] == "t"][0]
assert (t["dtype"], t["rounding"], t["state_dtype"]) == \
    ("fp32", "none", "fp32"), t' || fail "tables --json: dtype of h16 or t"
# The latency columns say their unit and meaning.
"$ctl" stats --servers "$srv" >"$tmp/human"
grep -q 'PULL_P99_US\*' "$tmp/human" || fail "no PULL_P99_US* column"
grep -q '\* latency: .* in microseconds; the upper bound of the histogram' \
	<(tr '\n' ' ' <"$tmp/human"; echo) || fail "no latency note"
echo "embkvctl: ok"
