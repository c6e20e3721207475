#!/usr/bin/env bash
# Logs, --version and SIGHUP: every binary answers --version with the
# project version (exit 0); embkvd's log lines carry an ISO-8601 UTC
# timestamp with milliseconds and a level, the first one the version;
# SIGHUP reopens --log-file (after a logrotate-style rename the log goes
# to a new file at the path), re-reads the token file (the new token
# works, the old one no longer does), and the server keeps serving.
# Usage: signals_test.sh VERSION EMBKVD EMBKVCTL EMBKV_BENCH EMBKV_DEMO
set -euo pipefail
version=$1
embkvd=$2
ctl=$3
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for b in "$2" "$3" "$4" "$5"; do
	out=$("$b" --version) || fail "$b --version exited $?"
	[ "$out" = "$(basename "$b") $version" ] || fail "$b --version: '$out'"
done
out=$("$ctl" stats --version) || fail "embkvctl stats --version"
echo "--version: ok ($version)"

printf 'first-secret\n' >"$tmp/token"
"$embkvd" --listen tcp://127.0.0.1:0 --threads 1 --token-file "$tmp/token" \
	--log-file "$tmp/log" --default-table t >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do
	grep -q '^embkvd: listening on ' "$tmp/out" && break
	kill -0 "$pid" 2>/dev/null || fail "embkvd exited: $(cat "$tmp/err")"
	sleep 0.1
done
srv=$(sed -n 's/^embkvd: listening on //p' "$tmp/out")
[ -s "$tmp/err" ] && fail "stderr not empty with --log-file: $(cat "$tmp/err")"
re='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z (INFO|WARN|ERROR) embkvd: '
head -n1 "$tmp/log" | grep -E "${re}embkvd $version starting" >/dev/null ||
	fail "first log line: $(head -n1 "$tmp/log")"
grep -vqE "$re" "$tmp/log" && fail "a log line without time and level: $(grep -vE "$re" "$tmp/log")"

"$ctl" --servers "$srv" --token-file "$tmp/token" tables >/dev/null ||
	fail "tables with the token"

# logrotate: rename, SIGHUP, the log goes on at the path.
mv "$tmp/log" "$tmp/log.1"
printf 'second-secret\n' >"$tmp/token2"
cp "$tmp/token" "$tmp/token.old"
mv "$tmp/token2" "$tmp/token"
kill -HUP "$pid"
for _ in $(seq 50); do
	[ -s "$tmp/log" ] && grep -q 'SIGHUP: reopened' "$tmp/log" && break
	sleep 0.1
done
grep -qE "${re}SIGHUP: reopened" "$tmp/log" || fail "no 'SIGHUP: reopened' in the new log"
grep -q 'token file .* re-read' "$tmp/log" || fail "token not re-read"
kill -0 "$pid" || fail "SIGHUP killed embkvd"
"$ctl" --servers "$srv" --token-file "$tmp/token" tables >/dev/null ||
	fail "the new token after SIGHUP"
if "$ctl" --servers "$srv" --token-file "$tmp/token.old" --timeout 2000 \
	tables >/dev/null 2>&1; then
	fail "the old token still works after SIGHUP"
fi

# A token file that went bad: SIGHUP logs an ERROR, the key stays.
: >"$tmp/token"
kill -HUP "$pid"
for _ in $(seq 50); do
	grep -q 'cannot re-read the token' "$tmp/log" && break
	sleep 0.1
done
grep -q 'ERROR embkvd: SIGHUP: cannot re-read the token' "$tmp/log" ||
	fail "no error for an empty token file"
printf 'second-secret\n' >"$tmp/token2"
"$ctl" --servers "$srv" --token-file "$tmp/token2" tables >/dev/null ||
	fail "the key changed on a bad token file"

kill -TERM "$pid"
wait "$pid" || fail "embkvd exit status $?"
pid=
grep -q 'SIGTERM: shutting down' "$tmp/log" || fail "no shutdown line"
echo "logs and SIGHUP: ok"
