#!/usr/bin/env bash
# cmake --install into a fresh prefix, moved elsewhere afterwards (the
# RPATH must work from any prefix), then: every binary runs from there
# without LD_LIBRARY_PATH, embkvd serves from there, and a consumer built
# with find_package(embkv) against the prefix (tests/install/) connects
# and works. About 10 s.
# Usage: run.sh BUILD_DIR SOURCE_DIR VERSION [C_FLAGS]
set -euo pipefail # (no grep -q after a pipe: the writer's SIGPIPE fails it)
build=$1
src=$2
version=$3
cflags=${4:-}
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
unset LD_LIBRARY_PATH

cmake --install "$build" --prefix "$tmp/staged" >"$tmp/install.log" ||
	fail "cmake --install: $(cat "$tmp/install.log")"
mv "$tmp/staged" "$tmp/prefix" # installed in one place, used in another
p=$tmp/prefix
libdir=$(cd "$p" && ls -d lib*/libembkv.so 2>/dev/null | head -n1)
[ -n "$libdir" ] || fail "no libembkv.so under $p/lib*"
libdir=$(dirname "$libdir")
for f in bin/embkvd bin/embkvctl bin/embkv-bench bin/embkv-demo \
	include/embkv/embkv.h "$libdir/cmake/embkv/embkvConfig.cmake" \
	"$libdir/pkgconfig/embkv.pc" share/embkv/embkvd.service \
	share/embkv/embkvd.conf; do
	[ -e "$p/$f" ] || fail "not installed: $f"
done
for b in embkvd embkvctl embkv-bench embkv-demo; do
	if ldd "$p/bin/$b" | grep 'not found' >/dev/null; then
		fail "$b: $(ldd "$p/bin/$b" | grep 'not found')"
	fi
	[ "$("$p/bin/$b" --version)" = "$b $version" ] || fail "$b --version"
done
grep -q "ExecStart=.*/embkvd " "$p/share/embkv/embkvd.service" ||
	fail "embkvd.service has no ExecStart"
echo "installed: ok"

"$p/bin/embkvd" --listen tcp://127.0.0.1:0 --threads 1 --default-table it \
	>"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do
	grep -q '^embkvd: listening on ' "$tmp/out" && break
	kill -0 "$pid" 2>/dev/null || fail "embkvd exited: $(cat "$tmp/err")"
	sleep 0.1
done
srv=$(sed -n 's/^embkvd: listening on //p' "$tmp/out")
"$p/bin/embkvctl" --servers "$srv" tables | grep '^it ' >/dev/null ||
	fail "installed embkvctl does not list table it"

cmake -S "$src/tests/install" -B "$tmp/consumer" \
	-DCMAKE_PREFIX_PATH="$p" -DCMAKE_C_FLAGS="$cflags" \
	-DCMAKE_BUILD_TYPE=Release >"$tmp/cfg.log" ||
	fail "configure the consumer: $(cat "$tmp/cfg.log")"
cmake --build "$tmp/consumer" >"$tmp/build.log" ||
	fail "build the consumer: $(cat "$tmp/build.log")"
ldd "$tmp/consumer/consumer" | grep "$p/$libdir/libembkv.so" >/dev/null ||
	fail "consumer does not use the installed libembkv: $(ldd "$tmp/consumer/consumer")"
"$tmp/consumer/consumer" "$srv" it || fail "consumer against embkvd"
echo "install: ok"
