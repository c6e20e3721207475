#!/usr/bin/env bash
# The README's "Using it" commands, run as written: the ```sh blocks
# between <!-- readme-test:begin --> and <!-- readme-test:end --> are
# extracted and run by bash -e (errexit, pipefail) in a fresh directory
# whose build/ is this build tree, with PORT set to a free port (the block
# uses PORT and PORT+1). Every command must succeed; then the outputs the
# block promises are checked: both servers' logs, the table created with
# its rows, the export file, the imported table, a clean stop (exit 0).
# The script runs in its own process group; what is left of it in our
# directory is killed at the end, so a failing block leaves no server
# behind.
# Usage: readme_test.sh README.md BUILD_DIR
set -euo pipefail
readme=$1
build=$(cd "$2" && pwd)
tmp=$(mktemp -d)
pgid=
# Ends what the block left running: the processes of its group whose
# working directory is ours (a group whose processes are all gone may
# have its number reused by someone else's: pids wrap quickly here).
cleanup() {
	local p
	if [ -n "$pgid" ]; then
		for p in $(pgrep -g "$pgid" 2>/dev/null); do
			[ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$tmp/run" ] &&
				kill "$p" 2>/dev/null
		done
	fi
	rm -rf "$tmp"
	return 0
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

awk '/<!-- readme-test:begin -->/ { on = 1; next }
     /<!-- readme-test:end -->/ { on = 0; next }
     on && /^```sh$/ { code = 1; next }
     on && /^```$/ { code = 0; next }
     on && code { print }' "$readme" >"$tmp/block.sh"
[ -s "$tmp/block.sh" ] || fail "no marked sh block in $readme"
grep -q 'build/server/embkvd' "$tmp/block.sh" || fail "the block starts no embkvd"
grep -q -- '--token-file' "$tmp/block.sh" || fail "the block has no token flow"

# Two free neighbouring ports (bound and released; a small race).
port=$(python3 -c 'import socket
for _ in range(200):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()')
[ -n "$port" ] || fail "no free port pair"

mkdir "$tmp/run"
ln -s "$build" "$tmp/run/build"
cd "$tmp/run"
set +e
PORT=$port setsid bash -e -o pipefail "$tmp/block.sh" >"$tmp/out" 2>"$tmp/err" &
pid=$!
pgid=$pid
timeout_s=90
for _ in $(seq $((timeout_s * 10))); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
	fail "the block ran over ${timeout_s} s: $(tail -n 20 "$tmp/out" "$tmp/err")"
fi
wait "$pid"
rc=$?
set -e
[ $rc = 0 ] || fail "the block failed (exit $rc): stdout: $(tail -n 30 "$tmp/out")
stderr: $(tail -n 30 "$tmp/err")"

# What the block promises.
grep -q "^SERVER 0  tcp://127.0.0.1:$port  up" "$tmp/out" || fail "no config of server 0"
grep -q "^SERVER 1  tcp://127.0.0.1:$((port + 1))  up" "$tmp/out" || fail "no config of server 1"
grep -q '"servers_up":2' "$tmp/out" || fail "stats --json: not both servers up"
grep -Eq '^TOTAL +users +[1-9]' "$tmp/out" || fail "stats: table users has no rows"
[ -s users.embkv ] || fail "no export file"
for i in 0 1; do
	grep -q 'INFO embkvd: embkvd .* starting' "embkvd-$i.log" || fail "log $i"
	grep -q 'SIGTERM: shutting down' "embkvd-$i.log" || fail "server $i: no clean stop"
	grep -q 'ERROR' "embkvd-$i.log" && fail "server $i logged an error: $(grep ERROR "embkvd-$i.log")"
done
# The import loaded every row the export wrote.
exported=$(sed -n 's/.*exported \([0-9]*\) rows.*/\1/p' "$tmp/err")
imported=$(sed -n 's/.*imported \([0-9]*\) rows.*/\1/p' "$tmp/err")
[ -n "$exported" ] && [ "$exported" -gt 0 ] || fail "no export line: $(cat "$tmp/err")"
[ "$imported" = "$exported" ] || fail "imported '$imported' of $exported rows: $(cat "$tmp/err")"
grep -q -- "$(cat embkv.token)" "$tmp/out" "$tmp/err" embkvd-*.log && fail "the token was printed"
echo "readme: ok (the 'Using it' block, $(grep -c . "$tmp/block.sh") lines, on ports $port and $((port + 1)))"
