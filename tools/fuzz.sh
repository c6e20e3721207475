#!/usr/bin/env bash
# Fuzzes embkv's decoders with libFuzzer, each target in turn, for SECONDS
# (default 30) in all, split evenly between the targets:
#   ckpt  the checkpoint-file loader (tests/fuzz/fuzz_ckpt_file.c); seeds:
#         valid files (full, delta, empty, Adam) from fuzz_ckpt_seeds
#   wire  the wire codec (tests/fuzz/fuzz_wire.c): every opcode's body
#         decoder and whole frames; seeds: a valid body and frame per
#         opcode from fuzz_wire_seeds (built from the encoders)
# It configures a clang build of its own with EMBKV_FUZZ=ON (instrumented,
# ASan+UBSan), builds only the fuzz targets, writes the seed corpora and
# runs the fuzzers from them. New inputs found are kept in
# $EMBKV_FUZZ_DIR/corpus-TARGET across runs; a crash leaves crash-* in
# $EMBKV_FUZZ_DIR and fails the script (after the other targets ran).
# Exits 77 (skipped, for ctest) when no clang with libFuzzer is found.
# Usage: tools/fuzz.sh [SECONDS [TARGET...]]
#        e.g. tools/fuzz.sh 3600; tools/fuzz.sh 600 wire
# Env:   EMBKV_FUZZ_DIR (default build-fuzz), EMBKV_FUZZ_JOBS (default 2)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ckpt wire)
for t in "${targets[@]}"; do
	case $t in ckpt|wire) ;; *) echo "fuzz.sh: unknown target $t" \
		"(ckpt, wire)" >&2; exit 2 ;; esac
done
per=$(( secs / ${#targets[@]} ))
[ "$per" -ge 1 ] || per=1
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
      fuzz_wire fuzz_wire_seeds \
      >"$dir/fuzz-build.log" 2>&1 || { cat "$dir/fuzz-build.log"; exit 1; }
cd "$dir"
fail=0
for t in "${targets[@]}"; do
	seeds=$dir/seeds-$t
	rm -rf "$seeds"
	mkdir -p "$seeds" "$dir/corpus-$t"
	case $t in
	ckpt)	"$dir/tests/fuzz/fuzz_ckpt_seeds" "$seeds"
		bin=$dir/tests/fuzz/fuzz_ckpt_file; what="checkpoint loader"
		maxlen=16384 ;;
	wire)	"$dir/tests/fuzz/fuzz_wire_seeds" "$seeds"
		bin=$dir/tests/fuzz/fuzz_wire; what="wire codec"
		maxlen=8192 ;;
	esac
	echo "fuzz.sh: fuzzing the $what for ${per}s ($dir/corpus-$t)"
	"$bin" -max_total_time="$per" -max_len="$maxlen" -timeout=10 \
	       -rss_limit_mb=2048 -print_final_stats=1 \
	       "$dir/corpus-$t" "$seeds" || { echo "fuzz.sh: $t FAILED"; fail=1; }
done
exit $fail
