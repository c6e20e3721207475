#!/usr/bin/env bash
# embkv-bench network mode against Redis and memcached: installs them
# (Debian packages) if missing, starts one of each on loopback with
# persistence off and enough memory, runs the benchmark, stops them.
# Usage: tools/bench-net.sh [embkv-bench options...]   (as root)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

tools/install-deps.sh redis-server memcached >&2
tools/build.sh build >&2
systemctl stop redis-server memcached 2>/dev/null || true

redis_port=${REDIS_PORT:-16379}
memc_port=${MEMCACHED_PORT:-11311}
work=$(mktemp -d)
cleanup() {
	[ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
	[ -f "$work/memcached.pid" ] && kill "$(cat "$work/memcached.pid")" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
	--appendonly no --daemonize yes --pidfile "$work/redis.pid" \
	--dir "$work" --logfile "$work/redis.log"
memcached -d -u root -l 127.0.0.1 -p "$memc_port" -U 0 -m 8192 -c 64 \
	-P "$work/memcached.pid"
for _ in $(seq 50); do
	if redis-cli -p "$redis_port" ping >/dev/null 2>&1 &&
	   (exec 3<>"/dev/tcp/127.0.0.1/$memc_port") 2>/dev/null; then
		break
	fi
	sleep 0.1
done
build/tools/embkv-bench --mode net --redis "127.0.0.1:$redis_port" \
	--memcached "127.0.0.1:$memc_port" "$@"
