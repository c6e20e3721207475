#!/usr/bin/env bash
# embkvd --metrics-listen: /metrics over HTTP in Prometheus' text format.
# Starts embkvd with --metrics-listen 127.0.0.1:0, reads the bound URL
# from its stdout, scrapes with curl, checks the format with promtool
# (skipped, saying so, when promtool is absent), runs embkv-demo traffic
# and checks that the counters and histograms moved with it; after a
# checkpoint (embkvctl checkpoint create), the checkpoint gauges appear.
# Usage: metrics_test.sh EMBKVD EMBKV_DEMO EMBKVCTL
set -euo pipefail
embkvd=$1
demo=$2
ctl=$3
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v curl >/dev/null || fail "curl is not installed (tools/install-deps.sh)"

"$embkvd" --listen tcp://127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
	--threads 1 --data-dir "$tmp/data" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do
	grep -q '^embkvd: metrics on ' "$tmp/out" && break
	kill -0 "$pid" 2>/dev/null || fail "embkvd exited: $(cat "$tmp/err")"
	sleep 0.1
done
url=$(sed -n 's/^embkvd: metrics on //p' "$tmp/out")
srv=$(sed -n 's/^embkvd: listening on //p' "$tmp/out")
[[ $url =~ ^http://127\.0\.0\.1:[0-9]+/metrics$ ]] || fail "metrics line: '$url'"
[[ $srv =~ ^tcp://127\.0\.0\.1:[0-9]+$ ]] || fail "listening line: '$srv'"
echo "metrics at $url, server $srv"

scrape() { # FILE: the body; fails unless 200 with the exposition type
	local hdr
	hdr=$(curl -sS -D - -o "$1" --max-time 5 "$url") || fail "curl $url"
	grep -q '^HTTP/1.1 200' <<<"$hdr" || fail "status: $hdr"
	grep -qi '^content-type: text/plain; version=0.0.4' <<<"$hdr" ||
		fail "content type: $hdr"
}
value() { # FILE SERIES: the sample's value
	awk -v s="$2" '$1 == s { print $2; found = 1 } END { exit !found }' "$1" ||
		fail "no series $2 in $1"
}
promcheck() {
	if command -v promtool >/dev/null; then
		promtool check metrics <"$1" || fail "promtool check metrics on $1"
		echo "promtool check metrics: ok ($1)"
	else
		echo "SKIP promtool: not installed (Debian package prometheus)"
	fi
}

scrape "$tmp/m0"
promcheck "$tmp/m0"
[ "$(value "$tmp/m0" embkv_pushes_total)" = 0 ] || fail "pushes before traffic"
grep '^embkv_checkpoint_' "$tmp/m0" && fail "checkpoint gauges before any"
grep -q '^embkv_build_info{version="[0-9.]*"} 1$' "$tmp/m0" || fail build_info

# Anything but /metrics is a 404; a POST a 405.
code=$(curl -s -o /dev/null -w '%{http_code}' "${url%/metrics}/other")
[ "$code" = 404 ] || fail "GET /other: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url")
[ "$code" = 405 ] || fail "POST /metrics: $code"

"$demo" --servers "$srv" --batches 12 --batch 256 --quiet --table mt
scrape "$tmp/m1"
promcheck "$tmp/m1"
pushes=$(value "$tmp/m1" embkv_pushes_total)
pulls=$(value "$tmp/m1" embkv_pulls_total)
[ "$pushes" -ge 12 ] || fail "pushes_total $pushes after 12 batches"
[ "$pulls" -ge 12 ] || fail "pulls_total $pulls after 12 batches"
[ "$(value "$tmp/m1" 'embkv_table_pushes_total{table="mt"}')" = "$pushes" ] ||
	fail "table mt's pushes differ from the server's"
[ "$(value "$tmp/m1" 'embkv_table_rows{table="mt"}')" -gt 0 ] || fail "no rows"
# A clean demo run (open-or-create of a new table, train, infer-free) is
# no error: the table-name lookups that found nothing are misses.
[ "$(value "$tmp/m1" embkv_errors_total)" = 0 ] || fail "errors after a clean demo"
[ "$(value "$tmp/m1" embkv_misses_total)" -ge 1 ] || fail "no misses counted"
# The histogram: cumulative, +Inf equal to _count, _count the pulls.
h=embkv_pull_duration_seconds
[ "$(value "$tmp/m1" "${h}_count")" = "$pulls" ] || fail "${h}_count != pulls"
[ "$(value "$tmp/m1" "${h}_bucket{le=\"+Inf\"}")" = "$pulls" ] || fail "+Inf"
awk -v h="${h}_bucket" 'index($1, h) == 1 { if ($2 < prev) bad = 1; prev = $2 }
	END { exit bad }' "$tmp/m1" || fail "$h buckets not cumulative"
awk -v s="${h}_sum" '$1 == s { exit !($2 > 0) }' "$tmp/m1" || fail "${h}_sum 0"
# No per-key labels: every label is table= or le= or version=.
if grep -v '^#' "$tmp/m1" | grep '{' | grep -vE '\{(table|le|version)="[^"]*"\}' ; then
	fail "unexpected labels"
fi

# More traffic moves the counters again.
"$demo" --servers "$srv" --batches 3 --batch 64 --quiet --table mt
scrape "$tmp/m2"
[ "$(value "$tmp/m2" embkv_pushes_total)" -gt "$pushes" ] || fail "pushes did not move"
# The table existed: no new miss. A real error still counts as one.
[ "$(value "$tmp/m2" embkv_misses_total)" = "$(value "$tmp/m1" embkv_misses_total)" ] ||
	fail "misses moved on an existing table"
"$ctl" --servers "$srv" drop-table nosuch 2>/dev/null && fail "drop-table nosuch"
scrape "$tmp/m2b"
[ "$(value "$tmp/m2b" embkv_errors_total)" = 1 ] || fail "drop of a missing table not an error"
"$ctl" --servers "$srv" stats --json | python3 -c 'import json, sys
c = json.load(sys.stdin)["servers"][0]["counters"]
assert c["errors"] == 1 and c["misses"] >= 1, c' || fail "stats errors/misses"
"$ctl" --servers "$srv" stats | grep -q ' MISSES ' || fail "no MISSES column"
# A checkpoint: its gauges appear, and still pass promtool.
"$ctl" --servers "$srv" checkpoint create >/dev/null || fail "checkpoint create"
scrape "$tmp/m3"
promcheck "$tmp/m3"
[ "$(value "$tmp/m3" embkv_checkpoint_last_bytes)" -gt 0 ] || fail "checkpoint bytes"
now=$(date +%s)
ts=$(value "$tmp/m3" embkv_checkpoint_last_timestamp_seconds)
awk -v t="$ts" -v n="$now" 'BEGIN { exit !(t > n - 60 && t < n + 60) }' ||
	fail "checkpoint timestamp $ts, now $now"
# A clean stop with the endpoint up (under ASan: no leak, no error).
kill -TERM "$pid"
st=0
wait "$pid" || st=$?
pid=
[ $st = 0 ] || fail "embkvd exit status $st: $(tail -n 20 "$tmp/err")"
echo "metrics: ok (pushes $pushes -> $(value "$tmp/m2" embkv_pushes_total))"
