#!/usr/bin/env bash
# The GPU path's checks on a machine with an NVIDIA GPU (issue 14).
#
#   tools/gpu-check.sh prepare   here, on a build machine with nvcc: builds
#       the CUDA flavour (build-cuda, -DEMBKV_CUDA=ON) and gathers what the
#       GPU machine needs into build-gpu-carry/ (git-ignored, about 25 MB):
#       bin/ (embkvd, embkv-bench, the GPU tests) and lib/ (libembkv,
#       libembkv_gpu.so with the CUDA runtime linked in, and every shared
#       library they load except glibc's and the C++ runtime's), since the
#       GPU machine has no package registry.
#   tools/gpu-check.sh [run]     there, from the repository root, with
#       build-gpu-carry carried: every GPU test plainly and under
#       compute-sanitizer (memcheck, leak check), then a local embkvd and
#       embkv-bench --mode gpu (bounds, kernels, host vs device pull and
#       push). Logs go to $OUT (the device tool's folder), else
#       build-gpu-carry/out. Exit 0 only if every step passed; a test
#       that finds no device counts as a failure here.
#
# The device tool's call: run(command="tools/gpu-check.sh run",
#   carry=["build-gpu-carry"], timeout_s=540); the whole run takes a few
# minutes on an H200.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
C=build-gpu-carry
cmd=${1:-run}

if [ "$cmd" = prepare ]; then
	set -e
	tools/build.sh build-cuda -DEMBKV_CUDA=ON
	rm -rf "$C"
	mkdir -p "$C/bin" "$C/lib"
	bins=(build-cuda/server/embkvd build-cuda/tools/embkv-bench
	      build-cuda/tests/gpu/test_gpu_kernels
	      build-cuda/tests/gpu/test_gpu_pullpush
	      build-cuda/tests/gpu/test_gpu_api
	      build-cuda/tests/gpu/test_gpu_xxh3_nvcc)
	cp "${bins[@]}" "$C/bin/"
	cp -L build-cuda/client/libembkv.so.0 build-cuda/gpu/libembkv_gpu.so \
		"$C/lib/"
	for f in "${bins[@]}" "$C/lib/libembkv.so.0" "$C/lib/libembkv_gpu.so"; do
		LD_LIBRARY_PATH=build-cuda/client:build-cuda/gpu ldd "$f"
	done | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
		case $(basename "$lib") in
		libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|\
		libgcc_s.so*|libstdc++.so*|libresolv.so*|libembkv*) ;;
		*) cp -L "$lib" "$C/lib/" ;;
		esac
	done
	du -sh "$C"
	echo "gpu-check: carry $C (run: tools/gpu-check.sh run)"
	exit 0
fi
[ "$cmd" = run ] || { echo "usage: tools/gpu-check.sh [prepare|run]" >&2; exit 2; }

if [ ! -x "$C/bin/test_gpu_kernels" ]; then
	echo "gpu-check: $C/ missing: run 'tools/gpu-check.sh prepare' on the build machine and carry it" >&2
	exit 2
fi
out=${OUT:-$C/out}
mkdir -p "$out"
# Only what the machine lacks goes on the loader's path (ours, and the
# carried libraries whose soname ldconfig does not know): an older copy
# of a library the system has would shadow it for every program started
# here, python3 and torch included.
libdir=$(mktemp -d /tmp/embkv-gpu-lib.XXXXXX)
trap 'rm -rf "$libdir"' EXIT
for f in "$C"/lib/*; do
	n=$(basename "$f")
	case $n in
	libembkv*) ln -s "$here/$f" "$libdir/$n" ;;
	*) ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$n " ||
		ln -s "$here/$f" "$libdir/$n" ;;
	esac
done
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export EMBKV_GPU_LIB="$here/$C/lib/libembkv_gpu.so"
# Few files (the device tool brings back at most 8): one log of every
# step, the summary, the benchmark's JSON, embkvd's log.
summary=$out/summary.txt
log=$out/gpu-check.log
: >"$summary"
: >"$log"
status=0
step() { # NAME TIMEOUT COMMAND...: runs, appends to the log, records
	local name=$1 t=$2 rc
	shift 2
	echo "== $name: $*" | tee -a "$log"
	timeout "$t" "$@" >"$out/step.tmp" 2>&1
	rc=$?
	cat "$out/step.tmp" >>"$log"
	tail -n 25 "$out/step.tmp"
	rm -f "$out/step.tmp"
	case $rc in
	0) echo "PASS $name" | tee -a "$summary" ;;
	77) echo "FAIL $name (no CUDA device: skipped)" | tee -a "$summary"; status=1 ;;
	124) echo "FAIL $name (timed out after ${t}s)" | tee -a "$summary"; status=1 ;;
	*) echo "FAIL $name (exit $rc)" | tee -a "$summary"; status=1 ;;
	esac
}

{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } \
	2>&1 | tee -a "$log" || true
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1 || true)

step xxh3_nvcc 60 "$C/bin/test_gpu_xxh3_nvcc"
step api 60 "$C/bin/test_gpu_api"
step kernels 180 "$C/bin/test_gpu_kernels"
step pullpush 180 "$C/bin/test_gpu_pullpush"
if [ -n "$san" ]; then
	step kernels_memcheck 300 "$san" --tool memcheck --leak-check full \
		--error-exitcode 3 "$C/bin/test_gpu_kernels"
	step pullpush_memcheck 300 "$san" --tool memcheck --leak-check full \
		--error-exitcode 3 "$C/bin/test_gpu_pullpush"
else
	echo "FAIL memcheck (compute-sanitizer not found)" | tee -a "$summary"
	status=1
fi

# Python (embkv.gpu with torch CUDA tensors), where python3 has torch,
# numpy and pytest; the test starts its own embkvd.
py=${EMBKV_PYTHON:-python3}
if "$py" -c 'import torch, numpy, pytest' 2>/dev/null; then
	step python_gpu 180 env EMBKV_LIB="$here/$C/lib/libembkv.so.0" \
		EMBKVD="$here/$C/bin/embkvd" "$py" -m pytest -q -p no:cacheprovider \
		-rs python/tests/test_gpu.py
else
	echo "NOTE python_gpu not run (python3 lacks torch, numpy or pytest)" | tee -a "$summary"
fi

# A local embkvd and the GPU benchmark against it.
"$C/bin/embkvd" --listen tcp://127.0.0.1:0 --threads 8 --io-threads 4 \
	--memory-limit 16G >"$out/embkvd.log" 2>&1 &
pid=$!
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's/^embkvd: listening on \(tcp:[^ ]*\).*/\1/p' "$out/embkvd.log" | head -n 1)
	[ -n "$addr" ] && break
	sleep 0.1
done
if [ -z "$addr" ]; then
	echo "FAIL embkvd (did not start)" | tee -a "$summary"
	cat "$out/embkvd.log"
	status=1
else
	step bench_uniform 200 "$C/bin/embkv-bench" --mode gpu --servers "$addr" \
		--dim 64 --batch 65536 --keys 1000000 --iters 20
	step bench_zipf_json 200 "$C/bin/embkv-bench" --mode gpu --servers "$addr" \
		--dim 64 --batch 65536 --keys 1000000 --iters 20 --zipf 1.05 --json
	step bench_dim256_json 200 "$C/bin/embkv-bench" --mode gpu --servers "$addr" \
		--dim 256 --batch 16384 --keys 1000000 --iters 20 --zipf 1.05 --json
	grep -h '^{"mode": "gpu"' "$log" >"$out/bench.json" || true
fi
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
echo "== summary"
cat "$summary"
exit $status
