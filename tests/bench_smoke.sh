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
