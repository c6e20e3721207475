#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts a local embkvd on
# loopback with a default table, trains the demo click model against it
# (the loss must fall), prints the server's stats, and stops the server.
# Usage: tools/run.sh [embkv-demo options...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

tools/install-deps.sh
tools/build.sh build

work=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid"
		wait "$server_pid" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

build/server/embkvd --listen tcp://127.0.0.1:0 --port-file "$work/port" \
	--default-table default --data-dir "$work/data" >"$work/embkvd.out" &
server_pid=$!
for _ in $(seq 100); do
	[ -s "$work/port" ] && break
	kill -0 "$server_pid" 2>/dev/null || { cat "$work/embkvd.out"; exit 1; }
	sleep 0.1
done
[ -s "$work/port" ] || { echo "run: embkvd did not start" >&2; exit 1; }
export EMBKV_SERVERS="tcp://127.0.0.1:$(cat "$work/port")"
echo "run: embkvd listening on $EMBKV_SERVERS"

build/tools/embkv-demo --check "$@"
echo
build/tools/embkvctl stats
