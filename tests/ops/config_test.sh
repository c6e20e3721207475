#!/usr/bin/env bash
# embkvctl config / CONFIG (net/PROTOCOL.md 5.24): two embkvd with --peers,
# a token and every limit flag set to a non-default value; the JSON and the
# text report each flag's value in force (bound ports, not port 0), the
# memory used and each table's charge, both peers, and never the token;
# a server that is down is reported DOWN with exit status 3, the other
# still printed; bad options exit 2; with etcd, its settings.
# Usage: config_test.sh EMBKVD EMBKVCTL
set -euo pipefail
embkvd=$1
ctl=$2
tmp=$(mktemp -d)
pids=()
cleanup() {
	# our children not reaped yet only (a reaped pid may be reused)
	for p in $(jobs -p); do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

free_port() { python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

token=tok-$RANDOM-$RANDOM-secret
printf '%s\n' "$token" >"$tmp/token"
p0=$(free_port)
p1=$(free_port)
peers="tcp://127.0.0.1:$p0,tcp://127.0.0.1:$p1"
for i in 0 1; do
	port=$p0; [ $i = 1 ] && port=$p1
	"$embkvd" --listen "tcp://127.0.0.1:$port" --peers "$peers" --self $i \
		--threads 2 --io-threads 1 --memory-limit 2G --max-conns 77 \
		--max-unauth-conns 9 --auth-timeout-ms 4321 \
		--frame-timeout-ms 12345 --inflight-bytes 96M \
		--rdma-reply-pool 24M --token-file "$tmp/token" --data-dir "$tmp/data" \
		--metrics-listen 127.0.0.1:0 --log-file "$tmp/log$i" \
		>"$tmp/out$i" 2>"$tmp/err$i" &
	pids+=($!)
done
for i in 0 1; do
	for _ in $(seq 100); do
		grep -q '^embkvd: metrics on ' "$tmp/out$i" && break
		kill -0 "${pids[$i]}" 2>/dev/null || fail "embkvd $i exited: $(cat "$tmp/log$i")"
		sleep 0.1
	done
done
srv="tcp://127.0.0.1:$p0"
T=(--token-file "$tmp/token")
"$ctl" --servers "$srv" "${T[@]}" create-table cfgt --dim 32 --partitions 8 \
	--capacity 5000 >/dev/null || fail "create-table"

"$ctl" --servers "$srv" "${T[@]}" config --json >"$tmp/json" || fail "config --json"
grep -q -- "$token" "$tmp/json" && fail "the token is in the JSON"
python3 - "$tmp/json" "$p0" "$p1" "$tmp" "$(sed -n 's/^embkvd: metrics on //p' "$tmp/out0")" <<'PY' || fail "JSON content"
import json, sys
doc = json.load(open(sys.argv[1]))
p0, p1, tmp, murl = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
s = doc["servers"]
assert len(s) == 2 and all(x["up"] for x in s), s
for i, x in enumerate(s):
    c = x["config"]
    port = (p0, p1)[i]
    assert c["listen"] == ["tcp://127.0.0.1:" + port], c["listen"]
    assert c["threads"] == 2 and c["io_threads"] == 1, c
    m = c["memory"]
    assert m["limit_bytes"] == 2 << 30, m
    assert 0 < m["used_bytes"] < m["limit_bytes"], m
    assert m["reserved_bytes"] == 0, m
    assert m["free_bytes"] == m["limit_bytes"] - m["used_bytes"], m
    t = [t for t in c["tables"] if t["name"] == "cfgt"]
    assert len(t) == 1, c["tables"]
    t = t[0]
    assert t["dim"] == 32 and t["partitions"] == 8 and t["capacity"] == 5000, t
    assert t["partitions_held"] == 4, t   # 8 partitions over 2 servers
    assert t["memory_bytes"] > 0 and len(t["uid"]) == 16, t
    assert sum(t["memory_bytes"] for t in c["tables"]) == m["used_bytes"], c
    l = c["limits"]
    assert l == {"max_conns": 77, "max_unauth_conns": 9,
                 "auth_timeout_ms": 4321, "frame_timeout_ms": 12345,
                 "inflight_bytes": 96 << 20, "failed_logins_max": 5,
                 "failed_logins_window_ms": 10000,
                 "failed_logins_block_ms": 5000,
                 "rdma_reply_pool_bytes": 24 << 20}, l
    assert c["auth"] == {"token_required": True,
                         "token_file": tmp + "/token"}, c["auth"]
    assert c["data_dir"] == tmp + "/data", c["data_dir"]
    assert c["log_file"] == tmp + "/log%d" % i, c["log_file"]
    assert c["metrics_listen"].startswith("http://127.0.0.1:"), c
    assert not c["metrics_listen"].endswith(":0/metrics"), c
    if i == 0:
        assert c["metrics_listen"] == murl, (c["metrics_listen"], murl)
    assert c["cluster"] is None and c["epoch"] == 1, c
    assert c["peers"] == [
        {"index": 0, "address": "tcp://127.0.0.1:" + p0, "self": i == 0},
        {"index": 1, "address": "tcp://127.0.0.1:" + p1, "self": i == 1}], c
    assert c["version"] and c["pid"] > 0, c
print("ok")
PY

"$ctl" --servers "$srv" "${T[@]}" config >"$tmp/text" || fail "config"
grep -q -- "$token" "$tmp/text" && fail "the token is in the text"
for want in "SERVER 0  tcp://127.0.0.1:$p0  up" "SERVER 1  tcp://127.0.0.1:$p1  up" \
	"limit 2.0 GiB" "77 (logging in at once: 9)" "auth 4321 ms, frame 12345 ms" \
	"cfgt: " "4 of 8 partitions" "required, file $tmp/token" \
	"1 tcp://127.0.0.1:$p1 (self)" "none (no --etcd)" "24.0 MiB"; do
	grep -qF -- "$want" "$tmp/text" || fail "config text lacks '$want'"
done

# Without the token: refused, no configuration printed.
set +e
"$ctl" --servers "$srv" config >"$tmp/notok" 2>&1; rc=$?
[ $rc != 0 ] || fail "config without the token succeeded"
grep -q '4321' "$tmp/notok" && fail "configuration shown without the token"
# Usage errors before connecting.
"$ctl" --servers "$srv" config --bogus >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || fail "config --bogus: exit $rc"
"$ctl" --servers "$srv" config extra >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || fail "config extra: exit $rc"
# Server 1 down: reported, server 0 still printed, exit 3.
kill "${pids[1]}"; wait "${pids[1]}" 2>/dev/null
"$ctl" --servers "$srv" "${T[@]}" config >"$tmp/down" 2>"$tmp/down.err"; rc=$?
set -e
[ $rc = 3 ] || fail "config with a server down: exit $rc"
grep -q "^SERVER 0  tcp://127.0.0.1:$p0  up" "$tmp/down" || fail "server 0 not printed"
grep -q "^tcp://127.0.0.1:$p1  DOWN" "$tmp/down" || fail "server 1 not DOWN"

# With etcd (skipped, saying so, without Debian's etcd-server): the
# cluster's settings as given, the advertise default reported as null.
etcd_bin=$(command -v etcd || true)
if [ -z "$etcd_bin" ]; then
	echo "config: etcd is not installed: the --etcd part is skipped"
	echo "config: ok"
	exit 0
fi
e=$(free_port)
ep=$(free_port)
"$etcd_bin" --data-dir "$tmp/etcd" --listen-client-urls "http://127.0.0.1:$e" \
	--advertise-client-urls "http://127.0.0.1:$e" \
	--listen-peer-urls "http://127.0.0.1:$ep" \
	--initial-advertise-peer-urls "http://127.0.0.1:$ep" \
	--initial-cluster "default=http://127.0.0.1:$ep" >"$tmp/etcd.log" 2>&1 &
pids+=($!)
"$embkvd" --listen tcp://127.0.0.1:0 --threads 1 --etcd "http://127.0.0.1:$e" \
	--cluster cfgtest --member-id 7 --member-ttl 5 --auto-recover 30 \
	>"$tmp/outc" 2>"$tmp/errc" &
pids+=($!)
for _ in $(seq 150); do
	grep -q '^embkvd: listening on ' "$tmp/outc" && break
	kill -0 "${pids[-1]}" 2>/dev/null || fail "embkvd --etcd exited: $(cat "$tmp/errc")"
	sleep 0.1
done
csrv=$(sed -n 's/^embkvd: listening on //p' "$tmp/outc")
[ -n "$csrv" ] || fail "embkvd --etcd did not start: $(cat "$tmp/errc")"
"$ctl" --servers "$csrv" config --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["servers"][0]["config"]
assert c["cluster"] == {"etcd": sys.argv[1], "name": "cfgtest",
                        "member_id": 7, "advertise": None,
                        "member_ttl_s": 5, "auto_recover_s": 30}, c["cluster"]
assert c["auth"] == {"token_required": False, "token_file": None}, c["auth"]
assert c["metrics_listen"] is None and c["data_dir"] is None, c
assert c["listen"] == [sys.argv[2]], c
' "http://127.0.0.1:$e" "$csrv" || fail "config --json with etcd"
"$ctl" --servers "$csrv" config | grep -qF "name cfgtest, member 7, advertise the first listener's, ttl 5 s, auto-recover 30 s" ||
	fail "config text with etcd: $("$ctl" --servers "$csrv" config)"
echo "config: ok"
