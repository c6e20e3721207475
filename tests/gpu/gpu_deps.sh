#!/usr/bin/env bash
# Issue 14's build rule, checked on the binaries: libembkv (and embkvd)
# need neither libcuda nor libcudart, and libembkv_gpu.so carries the CUDA
# runtime statically (it needs no libcudart; libcuda it loads at run time).
# Usage: gpu_deps.sh LIBEMBKV EMBKVD LIBEMBKV_GPU
set -euo pipefail
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
for f in "$1" "$2"; do
	if needed "$f" | grep -Ei 'libcuda|libcudart|libnv'; then
		echo "FAIL: $f needs a CUDA library"; exit 1
	fi
done
if needed "$3" | grep -Ei 'libcuda|libcudart'; then
	echo "FAIL: $3 needs the CUDA runtime or driver at load time"; exit 1
fi
readelf -d "$3" | grep -q 'SONAME.*libembkv_gpu.so' || { echo "FAIL: no soname"; exit 1; }
nm -D --defined-only "$3" | grep -q ' T embkv_gpu_plugin_ops$' || { echo "FAIL: no plugin table"; exit 1; }
[ "$(nm -D --defined-only "$3" | grep -c ' T ')" = 1 ] || { echo "FAIL: exports more than the table"; exit 1; }
echo "ok: no CUDA library needed at load time; the plugin exports its table only"
