#!/usr/bin/env bash
# embkvctl's usage errors name what is wrong and exit 2: create-table's
# attributes with their valid ranges, bad option values, and server lists
# (a missing scheme gets a tcp:// hint, a server given twice is named).
# All are refused before any connection: the server list points at a port
# nothing listens on, so a check that let a bad value through would print
# a connection error and exit 1 instead. Valid input still gets that far
# (exit 1, "no server ... answered"), so the checks refuse nothing good.
# Usage: ctl_errors_test.sh EMBKVCTL
set -uo pipefail
ctl=$1
dead=tcp://127.0.0.1:1
n=0
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect RC MESSAGE ARGS...: exit status RC and MESSAGE (a fixed string)
# in stderr.
expect() {
	local want=$1 msg=$2 out rc
	shift 2
	out=$(EMBKV_SERVERS= "$ctl" "$@" 2>&1 >/dev/null)
	rc=$?
	[ "$rc" = "$want" ] || fail "embkvctl $*: exit $rc, not $want: $out"
	grep -qF -- "$msg" <<<"$out" ||
		fail "embkvctl $*: no '$msg' in: $out"
	n=$((n + 1))
}

ct() { expect 2 "$1" --servers "$dead" create-table "${@:2}"; }
ct "--dim 0: must be from 1 to 4096" --dim 0 t
ct "--dim 4097: must be from 1 to 4096" --dim 4097 t
ct "--partitions 3: must be a power of two from 1 to 65536" --partitions 3 t
ct "--partitions 0: must be a power of two from 1 to 65536" --partitions 0 t
ct "--partitions 131072: must be a power of two from 1 to 65536" \
	--partitions 131072 t
ct "--capacity 0: must be from 1 to 274877906943" --capacity 0 t
ct "--capacity 8589934592: must be from 1 to 8589934591" \
	--partitions 2 --capacity 8589934592 t
ct "--admit-after 0: must be at least 1" --admit-after 0 t
ct "--lfu-decay-period 0: must be at least 1" --lfu-decay-period 0 t
ct "--index-load 0.3: must be 0 (the default) or from 0.5 to 1" \
	--index-load 0.3 t
ct "table name 'a/b': must be 1 to 63 of the characters" a/b
ct "--optimizer foo: must be one of sgd, adagrad, adam, ftrl, rowwise_adagrad" \
	--optimizer foo t
ct "--init bar: must be one of zeros, uniform, normal" --init bar t
ct "--dtype f8: must be one of fp32, fp16, bf16" --dtype f8 t
ct "--rounding up: must be stochastic or nearest" --rounding up t
ct "--rounding nearest: only for --dtype fp16 or bf16" --rounding nearest t
ct "--state-dtype bf16: only for --optimizer adagrad or adam" \
	--state-dtype bf16 --optimizer sgd t
ct "--dim x: must be a whole number" --dim x t
ct "--capacity -1: must be a whole number" --capacity -1 t
ct "--lr nan: must be a finite number" --lr nan t

# Server lists, from --servers (before or after the command) and from
# $EMBKV_SERVERS.
expect 2 "server 127.0.0.1:7070 has no scheme: use tcp://127.0.0.1:7070" \
	--servers 127.0.0.1:7070 tables
expect 2 "server 127.0.0.1:7070 has no scheme: use tcp://127.0.0.1:7070" \
	tables --servers 127.0.0.1:7070
expect 2 "server b:2 has no scheme: use tcp://b:2" \
	--servers tcp://a:1,,b:2 stats
expect 2 "server tcp://a:1 is given twice" \
	--servers tcp://a:1,tcp://b:2,tcp://a:1 tables
out=$(EMBKV_SERVERS=10.0.0.1:7070 "$ctl" tables 2>&1); rc=$?
[ $rc = 2 ] && grep -qF "use tcp://10.0.0.1:7070" <<<"$out" ||
	fail "EMBKV_SERVERS without a scheme: exit $rc: $out"

# Good input reaches the connection (exit 1), prefixes are not duplicates.
expect 1 "no server of $dead answered" --servers "$dead" create-table \
	--dim 8 --partitions 4 --capacity 1000 --index-load 0.75 ok
expect 1 "answered" --servers "$dead,${dead}0" tables
echo "embkvctl errors: $n cases ok"
