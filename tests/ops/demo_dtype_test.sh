#!/usr/bin/env bash
# embkv-demo trained on 16-bit tables ends within 2% of its fp32 loss:
# the same data (--seed), synchronous pulls (--sync: no overlap, so every
# run sees the same rows), 300 batches, one table per storage type, each
# 16-bit table with stochastic rounding (the default) and bf16 with
# row-wise Adagrad too. The final loss is the demo's moving average. (The
# demo's gradients are a scalar times a fixed v whose coordinates are all
# 1/sqrt(dim), so row-wise Adagrad's mean of g^2 equals each coordinate's
# g^2 and it trains exactly as Adagrad does: the same losses, a check of
# the row-wise kernel end to end.)
# Usage: demo_dtype_test.sh EMBKVD EMBKV_DEMO
set -euo pipefail
embkvd=$1
demo=$2
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$embkvd" --listen tcp://127.0.0.1:0 --threads 2 >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do
	grep -q '^embkvd: listening on ' "$tmp/out" && break
	kill -0 "$pid" 2>/dev/null || fail "embkvd exited: $(cat "$tmp/err")"
	sleep 0.1
done
srv=$(sed -n 's/^embkvd: listening on //p' "$tmp/out")

# final_loss TABLE ARGS...: trains a new table, prints its final loss.
final_loss() {
	local table=$1 line
	shift
	line=$("$demo" --servers "$srv" --table "$table" --batches 300 \
		--seed 7 --sync --quiet "$@") || fail "demo $table: $line"
	echo "$line" >&2
	sed -n 's/.*loss \([0-9.]*\) -> \([0-9.]*\)$/\2/p' <<<"$line"
}
f32=$(final_loss d32 --dtype fp32)
bf16=$(final_loss dbf16 --dtype bf16)
f16=$(final_loss d16 --dtype fp16)
rbf16=$(final_loss rbf16 --dtype bf16 --optimizer rowwise_adagrad)
r32=$(final_loss r32 --dtype fp32 --optimizer rowwise_adagrad)
[ -n "$f32" ] && [ -n "$bf16" ] && [ -n "$f16" ] || fail "no loss parsed"
within() { # within A B: |A - B| <= 2% of B
	python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); \
sys.exit(0 if abs(a - b) <= 0.02 * b else 1)" "$1" "$2"
}
within "$bf16" "$f32" || fail "bf16 loss $bf16 vs fp32 $f32: over 2%"
within "$f16" "$f32" || fail "fp16 loss $f16 vs fp32 $f32: over 2%"
within "$rbf16" "$r32" || fail "rowwise bf16 loss $rbf16 vs fp32 $r32"
# and training did happen (0.69 at the start)
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 0.6 else 1)" \
	"$bf16" || fail "bf16 loss $bf16 did not fall"
echo "demo losses: fp32 $f32, bf16 $bf16, fp16 $f16; rowwise fp32 $r32, bf16 $rbf16: ok"
