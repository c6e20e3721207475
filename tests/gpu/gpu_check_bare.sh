#!/usr/bin/env bash
# tools/gpu-check.sh selftest on a machine that lacks the libraries the
# GPU machine may lack: in a private mount namespace (root, unshare -m),
# the system's library folder without every carried library that
# python3 (with torch) does not load itself (liburcu, libxxhash,
# libjansson, librdmacm, ... here), and a loader cache made without them;
# then the selftest against the carry as it will travel. Proves that the
# carried programs, libembkv in python3 and the embkvd the Python tests
# start find everything in the carry. Not in ctest (needs root and
# unshare). Usage: tests/gpu/gpu_check_bare.sh [CARRY (build-gpu-carry)]
#   [BUILD_DIR (build-cuda)]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
carry=$(cd "${1:-$here/build-gpu-carry}" && pwd)
build=$(cd "${2:-$here/build-cuda}" && pwd)
py=${EMBKV_PYTHON:-/usr/bin/python3}
sys=/usr/lib/x86_64-linux-gnu
if [ "${GPU_CHECK_BARE_INSIDE:-}" != 1 ]; then
	# the work folder is removed out here, where nothing is mounted on it
	w=$(mktemp -d /tmp/gpu-check-bare.XXXXXX)
	rc=0
	env GPU_CHECK_BARE_INSIDE=1 GPU_CHECK_BARE_DIR="$w" \
		unshare -m --propagation private "$0" "$carry" "$build" || rc=$?
	mountpoint -q "$w/orig" || rm -rf "$w"
	exit $rc
fi
w=$GPU_CHECK_BARE_DIR
# what python3 with torch loads stays
"$py" -c 'import torch, numpy, ctypes, ssl, hashlib, json, select, subprocess, pytest
print("\n".join(sorted({l.split()[-1].rsplit("/", 1)[-1] for l in open("/proc/self/maps") if ".so" in l})))' >"$w/py"
hide=()
for f in "$carry"/lib/*; do
	n=$(basename "$f")
	case $n in libembkv*) continue ;; esac
	r=$(basename "$(readlink -f "$sys/$n" 2>/dev/null || echo none)")
	grep -qxF -e "$n" -e "$r" "$w/py" || hide+=("$n")
done
echo "hidden from $sys: ${hide[*]}"
mkdir "$w/orig" "$w/lib"
mount --bind "$sys" "$w/orig"
cp -as "$w/orig/." "$w/lib/"
for n in "${hide[@]}"; do
	rm -f "$w/lib/$n" "$w/lib/${n%%.so*}".so* "$w/lib/${n%%.so*}"-*.so*
done
rm -f "$w/lib/libcmockery.so"
mount --bind "$w/lib" "$sys"
ldconfig -X -C "$w/ld.so.cache"
mount --bind "$w/ld.so.cache" /etc/ld.so.cache
# the emulation holds: the build tree's embkvd no longer finds them
n=$(ldd "$build/server/embkvd" | grep -c 'not found' || true)
echo "the build tree's embkvd now misses $n libraries"
[ "$n" -gt 0 ] || { echo "gpu_check_bare: the libraries are not hidden"; exit 1; }
cd "$here"
GPU_CHECK_CARRY=$carry tools/gpu-check.sh selftest "$build"
