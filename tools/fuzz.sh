#!/usr/bin/env bash
# Fuzzes the checkpoint-file loader (tests/fuzz/fuzz_ckpt_file.c) with
# libFuzzer for SECONDS (default 30): configures a clang build of its own
# with EMBKV_FUZZ=ON (instrumented, ASan+UBSan), builds only the fuzz
# targets, writes a seed corpus of valid files (full, delta, empty, Adam)
# and runs the fuzzer from it. New inputs it finds are kept in
# $EMBKV_FUZZ_DIR/corpus across runs; a crash leaves crash-* there.
# Exits 77 (skipped, for ctest) when no clang with libFuzzer is found.
# Usage: tools/fuzz.sh [SECONDS]        e.g. tools/fuzz.sh 3600
# Env:   EMBKV_FUZZ_DIR (default build-fuzz), EMBKV_FUZZ_JOBS (default 2)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-30}
dir=${EMBKV_FUZZ_DIR:-$here/build-fuzz}
jobs=${EMBKV_FUZZ_JOBS:-2}

cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$cc" ]; then
	echo "fuzz.sh: skipped: no clang (tools/install-deps.sh installs it)"
	exit 77
fi
rt=$("$cc" -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
if [ ! -f "$rt" ]; then
	echo "fuzz.sh: skipped: $cc has no libFuzzer runtime" \
	     "(package libclang-rt-14-dev)"
	exit 77
fi
mkdir -p "$dir"
cmake -S "$here" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DEMBKV_FUZZ=ON \
      -DEMBKV_RDMA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" -j "$jobs" --target fuzz_ckpt_file fuzz_ckpt_seeds \
      >"$dir/fuzz-build.log" 2>&1 || { cat "$dir/fuzz-build.log"; exit 1; }
seeds=$dir/seeds
rm -rf "$seeds"
"$dir/tests/fuzz/fuzz_ckpt_seeds" "$seeds"
mkdir -p "$dir/corpus"
echo "fuzz.sh: fuzzing the checkpoint loader for ${secs}s ($dir/corpus)"
cd "$dir"
exec "$dir/tests/fuzz/fuzz_ckpt_file" -max_total_time="$secs" \
     -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
     "$dir/corpus" "$seeds"
