#!/usr/bin/env bash
# embkv-bench --mode gpu end to end against a local embkvd, with the host
# stand-in of the CUDA plugin (libembkv_gpu_host.so, via EMBKV_GPU_LIB):
# the bench's own code (options, staging through libembkv, bounds and
# kernel timings, JSON) runs where there is no GPU. Its figures are not
# GPU figures. Usage: bench_gpu_host.sh EMBKVD EMBKV_BENCH HOST_PLUGIN
set -euo pipefail
embkvd=$1 bench=$2 plugin=$3
log=$(mktemp)
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
"$embkvd" --listen tcp://127.0.0.1:0 --threads 2 --memory-limit 1G >"$log" 2>&1 &
pid=$!
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's/^embkvd: listening on \(tcp:[^ ]*\).*/\1/p' "$log" | head -n 1)
	[ -n "$addr" ] && break
	sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; exit 1; }
out=$(EMBKV_GPU_LIB=$plugin "$bench" --mode gpu --servers "$addr" --dim 16 \
	--batch 4096 --keys 20000 --iters 3 --zipf 1.05 --json)
echo "$out"
for f in path h2d_GBps dedup_us pull_device_rows_s push_device_rows_s \
	gather_us check_scatter_us gpu_scatter_vs_gather dedup_1m_us \
	device_pull_vs_host device_push_vs_host device_cold_pull_vs_host \
	direct_landed; do
	grep -q "\"$f\"" <<<"$out" || { echo "missing $f"; exit 1; }
done
grep -q '"path": "staging"' <<<"$out"
grep -q '"device": "host reference (no GPU)"' <<<"$out"
