#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the normal and the
# ASan/UBSan flavours, and runs every test of both with ctest.
# Usage: tools/test.sh        (exit status 0 only if everything passed)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

tools/install-deps.sh
tools/build.sh build
tools/build.sh build-asan -DEMBKV_SANITIZE=ON
# The CUDA flavour (libembkv_gpu.so by nvcc, issue 14), so that it cannot
# rot: built whole, its GPU tests run below (those that need a device
# skip here; tools/gpu-check.sh runs them on a GPU machine).
cuda=0
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
	tools/build.sh build-cuda -DEMBKV_CUDA=ON
	cuda=1
else
	echo "== no nvcc (PATH, /usr/local/cuda/bin): the CUDA flavour is not built"
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
echo "== tests (normal build)"
ctest --test-dir build --output-on-failure -j 2 || status=1
echo "== tests (ASan/UBSan build)"
ctest --test-dir build-asan --output-on-failure -j 2 || status=1
if [ $cuda = 1 ]; then
	echo "== tests (CUDA build: the GPU path's)"
	ctest --test-dir build-cuda --output-on-failure -j 2 -R 'gpu' || status=1
fi
exit $status
