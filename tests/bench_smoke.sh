#!/usr/bin/env bash
# embkv-bench, in-process mode, on a small table: it runs to the end,
# prints one JSON object with every figure the shard engine's bars and the
# README name (the checksum floors included), loses no row, and refuses a
# bad option with a message. Speed is the bench's business, not this test's.
# usage: tests/bench_smoke.sh PATH/TO/embkv-bench
set -euo pipefail
bench=$1
out=$("$bench" --keys 20000 --ops 20000 --reps 1 --partitions 16 --json)
status=0
[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "not one line: $out"; status=1; }
for f in pull_rows_per_s gather_bound_rows_per_s pull_vs_bound \
	sgd_rows_per_s sgd_bound_rows_per_s sgd_vs_bound adam_rows_per_s \
	bytes_per_row payload_bytes_per_row load_factor_at_first_eviction \
	owner_pull_vs_bound checked_gather_bound_rows_per_s \
	checked_gather_vs_bound pull_vs_checked_bound \
	sealed_sgd_bound_rows_per_s sealed_sgd_vs_bound sgd_vs_sealed_bound; do
	v=$(printf '%s' "$out" | grep -o "\"$f\": [0-9.]*" | cut -d' ' -f2 || true)
	if [ -z "$v" ] || ! awk -v v="$v" 'BEGIN { exit !(v > 0) }'; then
		echo "field $f missing or not positive in: $out"
		status=1
	fi
done
printf '%s' "$out" | grep -q '"pull_missing": 0,' ||
	{ echo "rows went missing: $out"; status=1; }
if err=$("$bench" --keys 5 2>&1); then
	echo "--keys 5 was accepted"; status=1
elif ! printf '%s' "$err" | grep -q "bad value '5' for --keys"; then
	echo "no clear error for --keys 5: $err"; status=1
fi
# Checkpoint mode (issue 12): a small table, one rep; every figure there
# and positive. The bars are for 10M rows (README, "Measured").
ck=$("$bench" --mode ckpt --ckpt-rows 200000 --push-s 0.3 --json 2>/dev/null) ||
	{ echo "checkpoint mode failed: $ck"; status=1; }
[ "$(printf '%s\n' "$ck" | wc -l)" -eq 1 ] || { echo "ckpt: not one line: $ck"; status=1; }
for f in ckpt_bytes ckpt_write_mb_per_s disk_write_mb_per_s \
	ckpt_restore_mb_per_s disk_read_mb_per_s restore_verify_s \
	restore_load_s push_idle_keys_per_s push_during_ckpt_keys_per_s \
	ckpt_write_vs_disk ckpt_restore_vs_disk push_during_ckpt_vs_idle; do
	v=$(printf '%s' "$ck" | grep -o "\"$f\": [0-9.]*" | cut -d' ' -f2 || true)
	if [ -z "$v" ] || ! awk -v v="$v" 'BEGIN { exit !(v > 0) }'; then
		echo "ckpt field $f missing or not positive in: $ck"
		status=1
	fi
done
# Move mode (issue 13): etcd and 2 members, a small table, one rep; every
# figure there and positive (skipped without etcd, as the cluster tests
# need it too).
etcd_bin=${EMBKV_ETCD_BIN:-/usr/bin/etcd}
if [ -x "$etcd_bin" ]; then
	mv=$("$bench" --mode move --move-rows 50000 --push-s 0.3 --json 2>/dev/null) ||
		{ echo "move mode failed: $mv"; status=1; }
	[ "$(printf '%s\n' "$mv" | wc -l)" -eq 1 ] || { echo "move: not one line: $mv"; status=1; }
	for f in part_rows move_rows_per_s inproc_copy_rows_per_s \
		memcpy_rows_per_s moves_in_window pushes_idle pushes_move \
		push_p99_idle_ms push_p99_move_ms freeze_to_flip_ms \
		move_vs_inproc move_vs_memcpy push_p99_move_vs_idle; do
		v=$(printf '%s' "$mv" | grep -o "\"$f\": [0-9.]*" | cut -d' ' -f2 || true)
		if [ -z "$v" ] || ! awk -v v="$v" 'BEGIN { exit !(v > 0) }'; then
			echo "move field $f missing or not positive in: $mv"
			status=1
		fi
	done
else
	echo "move mode: no etcd at $etcd_bin, skipped"
fi
# Latency mode (issue 16): a tiny run; every cell has embkv's quantiles,
# ordered; Redis and memcached are compared when installed, and said to be
# skipped when not.
lt=$("$bench" --mode latency --rows 20000 --requests 160 --runs 1 --json \
	2>"${TMPDIR:-/tmp}/bench_smoke_lt.$$") ||
	{ echo "latency mode failed: $lt $(cat "${TMPDIR:-/tmp}/bench_smoke_lt.$$")"; status=1; }
lt_err=$(cat "${TMPDIR:-/tmp}/bench_smoke_lt.$$"); rm -f "${TMPDIR:-/tmp}/bench_smoke_lt.$$"
have=()
for s in redis-server:redis memcached:memcached; do
	if PATH="$PATH:/usr/sbin:/usr/bin" command -v "${s%%:*}" >/dev/null; then
		have+=("${s#*:}")
	else
		echo "bench smoke: ${s%%:*} is not installed: its latency column is skipped"
		printf '%s' "$lt_err" | grep -q "${s%%:*} is not installed" ||
			{ echo "latency: no word that ${s%%:*} is skipped: $lt_err"; status=1; }
	fi
done
printf '%s' "$lt" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
have = sys.argv[1:]
assert d["mode"] == "latency" and len(d["cells"]) == 4, d
for c in d["cells"]:
    for s in ["embkv"] + have:
        q = c[s]
        for k in ("p50_us", "p99_us", "p999_us"):
            assert len(q[k]) == 3 and q[k][0] > 0, (s, k, q)
        assert q["p50_us"][1] <= q["p99_us"][1] <= q["p999_us"][1], (s, q)
    for s in have:
        assert c["p99_vs_" + s][1] > 0, c
    for s in ("redis", "memcached"):
        if s not in have:
            assert s not in c, c
if "redis" in have:
    assert d["bar_256_keys_16_clients_p99_le_redis"]["runs"] == 1, d
' "${have[@]}" || { echo "latency JSON: $lt"; status=1; }
# --own-clients: Redis and memcached through bench_kv.c's clients.
if [ ${#have[@]} -gt 0 ]; then
	own=$("$bench" --mode latency --rows 5000 --requests 32 --runs 1 \
		--own-clients --json 2>/dev/null) ||
		{ echo "latency --own-clients failed"; status=1; }
	for s in "${have[@]}"; do
		printf '%s' "$own" | grep -q "\"${s}_client\": \"bench_kv\"" ||
			{ echo "latency --own-clients: $s not through bench_kv: $own"; status=1; }
	done
fi
if err=$("$bench" --mode latency --requests 3 2>&1); then
	echo "--requests 3 was accepted"; status=1
elif ! printf '%s' "$err" | grep -q "bad value '3' for --requests"; then
	echo "no clear error for --requests 3: $err"; status=1
fi
# Replica mode (issue 13 item 3): a small table, short pushes; the
# figures are there, the replica drained and its rows equal the primary's.
rp=$("$bench" --mode replica --rows 20000 --push-s 0.3 --json 2>/dev/null) ||
	{ echo "replica mode failed: $rp"; status=1; }
[ "$(printf '%s\n' "$rp" | wc -l)" -eq 1 ] || { echo "replica: not one line: $rp"; status=1; }
for f in push_keys_per_s samples; do
	n=$(printf '%s' "$rp" | grep -o "\"$f\": [0-9.]*" | awk '$2 > 0' | wc -l)
	[ "$n" -eq 2 ] || { echo "replica field $f not positive twice in: $rp"; status=1; }
done
for f in lag_s_p50 lag_s_p99 lag_s_max lag_updates_p99 drain_s; do
	n=$(printf '%s' "$rp" | grep -o "\"$f\": [0-9.]*" | wc -l)
	[ "$n" -eq 2 ] || { echo "replica field $f missing in: $rp"; status=1; }
done
printf '%s' "$rp" | grep -q '"rows_equal": true' ||
	{ echo "replica rows differ: $rp"; status=1; }
if err=$("$bench" --mode replica --rows 5 2>&1); then
	echo "replica --rows 5 was accepted"; status=1
elif ! printf '%s' "$err" | grep -q "bad value '5' for --rows"; then
	echo "no clear error for replica --rows 5: $err"; status=1
fi
# Bytes-per-row mode (issue 17): every (dtype, optimizer, state) pair at
# dim 64 on small filled tables; a 16-bit row costs less than an fp32 one
# with the same optimizer, bf16 state less than fp32 state, and the figures
# are the engine's (the record stride and state bytes it reports).
bp=$("$bench" --mode bytes-per-row --rows 4096 --dims 64 --json) ||
	{ echo "bytes-per-row mode failed: $bp"; status=1; }
printf '%s' "$bp" | python3 -c '
import json, sys
d = json.load(sys.stdin)["results"]
r = {(x["dtype"], x["optimizer"], x["state_dtype"]): x for x in d}
assert len(r) == 21, len(r)
for (dt, o, st), x in r.items():
    assert x["rows"] == 4096 and x["bytes_per_row"] > x["record_stride"], x
    assert x["stored_row_bytes"] == 64 * (4 if dt == "fp32" else 2), x
    if dt != "fp32":
        assert x["bytes_per_row"] < r[("fp32", o, st)]["bytes_per_row"], x
    if st == "bf16":
        assert x["bytes_per_row"] < r[(dt, o, "fp32")]["bytes_per_row"], x
    assert x["onesided_read_bytes_per_row"] == 24 + x["stored_row_bytes"], x
bf = r[("bf16", "rowwise_adagrad", "fp32")]
assert bf["record_stride"] == 160 and bf["state_bytes_per_row"] == 4, bf
' || { echo "bytes-per-row figures wrong: $bp"; status=1; }
[ $status -eq 0 ] && echo "embkv-bench smoke: ok"
exit $status
