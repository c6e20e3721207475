/*
 * embkv_rdma_server: embkvd's verbs transport, driven by a raw rdma_cm and
 * verbs client (no libembkv), inside the soft-RoCE VM.
 *
 * Starts the real embkvd with --listen rdma://IP:0 and a token, then checks:
 *   private_data   bad magic, version, credits, sizes or none: REJECTED
 *   preauth        TABLE_REGIONS before authentication: ERROR ETOKENREQUIRED,
 *                  then the connection is closed; no rkey or address ever came
 *   bad_auth       AUTH with a wrong MAC: ERROR EAUTH, closed, no regions
 *   auth_deadline  a connection that never authenticates is closed at
 *                  --auth-timeout-ms (AUTH_TIMEOUT_MS), not much before
 *   rpc            HELLO/AUTH, TABLE_CREATE, ASSIGN, PULL by SEND and by
 *                  RDMA WRITE WITH IMM (a reply over recv_size), HITS,
 *                  TABLE_REGIONS, a one-sided READ of a stored record
 *   write_refused  an RDMA WRITE to the arena region: remote access error
 *   atomic_refused a FETCH_ADD to it: remote access error
 *   unchanged      the region's bytes and every row are what they were
 *   baseline       the server's connection count returns to 1 (this probe)
 *   killed         SIGKILL with two clients connected: both see
 *                  DISCONNECTED (or an error completion) within 10 s
 * Every rdma_cm and completion wait polls its fd with a timeout; an alarm
 * bounds the whole run. One PASS/FAIL line per check; exit 0 if all pass.
 *
 * usage: embkv_rdma_server [IPV4]   default $EMBKV_VM_IP, else 10.0.2.15
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include "net/wire.h"

#define DEFAULT_IP "10.0.2.15"
#define TOKEN "embkv rdma test token"
#define CM_MS 5000
#define AUTH_TIMEOUT_MS 3000
#define AUTH_TIMEOUT_ARG "3000"
#define WC_MS 5000
#define START_MS 30000
#define KILL_BOUND_MS 10000
#define WATCHDOG_S 100
#define CREDITS 4u
#define RECV_SIZE 1024u          /* EMBKV_VERBS_MIN_RECV_SIZE */
#define SLOTS 4u
#define SLOT_SIZE (64u << 10)
#define SEND_SIZE (64u << 10)
#define DIM 8u
#define NKEYS 64u                /* PULL reply of 2.1 KB: over RECV_SIZE */
#define WR_RECV 0x100u
#define WR_SEND 1u
#define WR_ONE 2u                /* READ, WRITE or atomic */

static const char *ip;
static pid_t srv_pid = -1;
static int failures;

static void check(bool ok, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void check(bool ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("%s %s: ", ok ? "PASS" : "FAIL", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	failures += !ok;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_alarm(int sig)
{
	(void)sig;
	if (srv_pid > 0)
		kill(srv_pid, SIGKILL);
	_exit(3);
}

/* The server ------------------------------------------------------------------ */

/* Starts embkvd; returns the RDMA port from its "listening on" line. */
static int server_start(uint16_t *port)
{
	static char tokpath[] = "/tmp/embkv-rdma-token-XXXXXX";
	char listen[96], line[256];
	size_t got = 0;
	uint64_t end = now_ms() + START_MS;
	int out[2], tfd;
	char *p;

	tfd = mkstemp(tokpath);
	if (tfd < 0 || write(tfd, TOKEN, strlen(TOKEN)) < 0 || close(tfd))
		return -errno;
	snprintf(listen, sizeof(listen), "rdma://%s:0", ip);
	if (pipe(out))
		return -errno;
	srv_pid = fork();
	if (srv_pid < 0)
		return -errno;
	if (!srv_pid) {
		dup2(out[1], 1);
		close(out[0]);
		close(out[1]);
		execl(EMBKVD_PATH, "embkvd", "--listen", listen, "--threads",
		      "2", "--token-file", tokpath, "--auth-timeout-ms",
		      AUTH_TIMEOUT_ARG, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	for (;;) {
		struct pollfd pf = { .fd = out[0], .events = POLLIN };
		int64_t left = (int64_t)(end - now_ms());
		ssize_t r;

		if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
			return -ETIMEDOUT;
		r = read(out[0], line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			return -EIO;
		got += (size_t)r;
		line[got] = '\0';
		p = strstr(line, "listening on rdma://");
		if (p && strchr(p, '\n')) {
			p = strrchr(p, ':');
			*port = (uint16_t)atoi(p + 1);
			return 0;
		}
		if (got == sizeof(line) - 1)
			return -EIO;
	}
}

/* The raw client -------------------------------------------------------------- */

struct rc {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	uint8_t *rbuf, *sbuf, *arena, *one;
	struct ibv_mr *rmr, *smr, *amr, *omr;
	bool up;
	bool disconnected;       /* DISCONNECTED seen */
	uint64_t req_id;
};

static int cm_wait(struct rc *c, enum rdma_cm_event_type want, int ms,
		   enum rdma_cm_event_type *got)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	struct rdma_cm_event *ev;

	for (;;) {
		struct pollfd pf = { .fd = c->ch->fd, .events = POLLIN };
		int64_t left = (int64_t)(end - now_ms());

		if (!rdma_get_cm_event(c->ch, &ev)) {
			enum rdma_cm_event_type t = ev->event;

			rdma_ack_cm_event(ev);
			if (t == RDMA_CM_EVENT_DISCONNECTED)
				c->disconnected = true;
			if (got)
				*got = t;
			return t == want ? 0 : -ECONNREFUSED;
		}
		if (left <= 0 || poll(&pf, 1, (int)left) < 0)
			return -ETIMEDOUT;
	}
}

static void rc_free(struct rc *c)
{
	if (c->up)
		rdma_disconnect(c->id);
	if (c->id && c->id->qp)
		rdma_destroy_qp(c->id);
	if (c->cq)
		ibv_destroy_cq(c->cq);
	if (c->cch)
		ibv_destroy_comp_channel(c->cch);
	if (c->rmr)
		ibv_dereg_mr(c->rmr);
	if (c->smr)
		ibv_dereg_mr(c->smr);
	if (c->amr)
		ibv_dereg_mr(c->amr);
	if (c->omr)
		ibv_dereg_mr(c->omr);
	if (c->pd)
		ibv_dealloc_pd(c->pd);
	if (c->id)
		rdma_destroy_id(c->id);
	if (c->ch)
		rdma_destroy_event_channel(c->ch);
	free(c->rbuf);
	free(c->sbuf);
	free(c->arena);
	free(c->one);
	memset(c, 0, sizeof(*c));
}

static int post_recv(struct rc *c, uint32_t i)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)(c->rbuf + (size_t)i * RECV_SIZE),
		.length = RECV_SIZE, .lkey = c->rmr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = WR_RECV + i, .sg_list = &sge,
				  .num_sge = 1 }, *bad;

	return ibv_post_recv(c->id->qp, &wr, &bad) ? -EIO : 0;
}

/* Connects with private data priv (NULL: a valid one). 0 when
 * ESTABLISHED, -ECONNREFUSED when rejected, else an error. */
static int rc_connect(struct rc *c, uint16_t port, const uint8_t *priv,
		      uint8_t plen)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons(port) };
	struct ibv_qp_init_attr qa = { .qp_type = IBV_QPT_RC };
	struct embkv_verbs_connect cd = {
		.credits = CREDITS, .recv_size = RECV_SIZE,
		.reply_slots = SLOTS, .slot_size = SLOT_SIZE,
	};
	uint8_t mine[EMBKV_VERBS_CONNECT_SIZE];
	struct rdma_conn_param cp = { .initiator_depth = 1,
				      .responder_resources = 1,
				      .retry_count = 3, .rnr_retry_count = 3 };
	int rc;

	memset(c, 0, sizeof(*c));
	inet_pton(AF_INET, ip, &sin.sin_addr);
	c->ch = rdma_create_event_channel();
	if (!c->ch || fcntl(c->ch->fd, F_SETFL, O_NONBLOCK) ||
	    rdma_create_id(c->ch, &c->id, NULL, RDMA_PS_TCP))
		return -EIO;
	if (rdma_resolve_addr(c->id, NULL, (struct sockaddr *)&sin, 2000) ||
	    cm_wait(c, RDMA_CM_EVENT_ADDR_RESOLVED, CM_MS, NULL) ||
	    rdma_resolve_route(c->id, 2000) ||
	    cm_wait(c, RDMA_CM_EVENT_ROUTE_RESOLVED, CM_MS, NULL))
		return -EHOSTUNREACH;
	c->pd = ibv_alloc_pd(c->id->verbs);
	c->cch = ibv_create_comp_channel(c->id->verbs);
	if (!c->pd || !c->cch || fcntl(c->cch->fd, F_SETFL, O_NONBLOCK))
		return -EIO;
	c->cq = ibv_create_cq(c->id->verbs, 32, NULL, c->cch, 0);
	if (!c->cq)
		return -EIO;
	qa.send_cq = qa.recv_cq = c->cq;
	qa.cap.max_send_wr = 8;
	qa.cap.max_recv_wr = CREDITS;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	qa.sq_sig_all = 1;
	if (rdma_create_qp(c->id, c->pd, &qa))
		return -EIO;
	c->rbuf = calloc(CREDITS, RECV_SIZE);
	c->sbuf = calloc(1, SEND_SIZE);
	c->arena = calloc(SLOTS, SLOT_SIZE);
	c->one = calloc(1, 4096);
	if (!c->rbuf || !c->sbuf || !c->arena || !c->one)
		return -ENOMEM;
	c->rmr = ibv_reg_mr(c->pd, c->rbuf, CREDITS * RECV_SIZE,
			    IBV_ACCESS_LOCAL_WRITE);
	c->smr = ibv_reg_mr(c->pd, c->sbuf, SEND_SIZE, 0);
	c->amr = ibv_reg_mr(c->pd, c->arena, SLOTS * SLOT_SIZE,
			    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	c->omr = ibv_reg_mr(c->pd, c->one, 4096, IBV_ACCESS_LOCAL_WRITE);
	if (!c->rmr || !c->smr || !c->amr || !c->omr)
		return -EIO;
	for (uint32_t i = 0; i < CREDITS; i++)
		if (post_recv(c, i))
			return -EIO;
	if (!priv) {
		cd.reply_addr = (uintptr_t)c->arena;
		cd.reply_rkey = c->amr->rkey;
		embkv_wire_verbs_connect_encode(&cd, mine, sizeof(mine));
		priv = mine;
		plen = sizeof(mine);
	}
	cp.private_data = plen ? priv : NULL;
	cp.private_data_len = plen;
	if (rdma_connect(c->id, &cp))
		return -EIO;
	rc = cm_wait(c, RDMA_CM_EVENT_ESTABLISHED, CM_MS, NULL);
	c->up = !rc;
	return rc;
}

/* One completion, within ms; -ETIMEDOUT. */
static int wc_wait(struct rc *c, struct ibv_wc *wc, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	for (;;) {
		struct pollfd pf = { .fd = c->cch->fd, .events = POLLIN };
		struct ibv_cq *cq;
		void *ctx;
		int64_t left;

		if (ibv_poll_cq(c->cq, 1, wc) == 1)
			return 0;
		if (ibv_req_notify_cq(c->cq, 0))
			return -EIO;
		if (ibv_poll_cq(c->cq, 1, wc) == 1)
			return 0;
		left = (int64_t)(end - now_ms());
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pf, 1, (int)left) > 0 &&
		    !ibv_get_cq_event(c->cch, &cq, &ctx))
			ibv_ack_cq_events(cq, 1);
	}
}

struct reply {
	struct embkv_wire_hdr h;
	uint8_t *frame;          /* malloc'ed copy */
	const uint8_t *body;
	bool by_write;           /* came by RDMA WRITE WITH IMM */
};

/* Sends a request, waits for its reply: 0 (reply in *r, caller frees
 * r->frame), the status of an ERROR, or a negative errno (-ECONNRESET:
 * an error completion). */
static int rc_call(struct rc *c, uint8_t op, const void *body, uint32_t len,
		   struct reply *r)
{
	struct embkv_wire_hdr h = { .opcode = op, .request_id = ++c->req_id,
				    .epoch = 1, .body_len = len };
	struct ibv_sge sge = { .addr = (uintptr_t)c->sbuf,
			       .length = EMBKV_WIRE_HDR_SIZE + len,
			       .lkey = c->smr->lkey };
	struct ibv_send_wr wr = { .wr_id = WR_SEND, .sg_list = &sge,
				  .num_sge = 1, .opcode = IBV_WR_SEND }, *bad;
	struct ibv_wc wc;
	bool sent = false, got = false;
	const uint8_t *src = NULL;
	uint32_t rlen = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	embkv_wire_hdr_encode(&h, c->sbuf);
	if (len)
		memcpy(c->sbuf + EMBKV_WIRE_HDR_SIZE, body, len);
	if (ibv_post_send(c->id->qp, &wr, &bad))
		return -EIO;
	while (!sent || !got) {
		rc = wc_wait(c, &wc, WC_MS);
		if (rc)
			return rc;
		if (wc.status != IBV_WC_SUCCESS)
			return -ECONNRESET;
		if (wc.wr_id == WR_SEND) {
			sent = true;
			continue;
		}
		rlen = wc.byte_len;
		if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
			uint32_t slot = be32toh(wc.imm_data);

			if (slot >= SLOTS)
				return -EPROTO;
			src = c->arena + (size_t)slot * SLOT_SIZE;
			r->by_write = true;
		} else {
			src = c->rbuf + (wc.wr_id - WR_RECV) * RECV_SIZE;
		}
		r->frame = malloc(rlen + 8);
		if (!r->frame)
			return -ENOMEM;
		memcpy(r->frame, src, rlen);
		if (post_recv(c, (uint32_t)(wc.wr_id - WR_RECV)))
			return -EIO;
		got = true;
	}
	rc = embkv_wire_frame_decode(r->frame, rlen, &r->h, &r->body);
	if (!rc && r->h.request_id != h.request_id)
		rc = -EPROTO;
	if (!rc && r->h.opcode == EMBKV_WIRE_OP_ERROR) {
		struct embkv_wire_error e;

		rc = embkv_wire_error_decode(r->body, r->h.body_len, &e);
		if (!rc)
			rc = e.status;
	}
	if (rc) {
		free(r->frame);
		r->frame = NULL;
	}
	return rc;
}

/* One READ, WRITE or FETCH_ADD of len bytes at addr/rkey through c->one:
 * the completion status, or -ETIMEDOUT. */
static int rc_one(struct rc *c, enum ibv_wr_opcode op, uint64_t addr,
		  uint32_t rkey, uint32_t len)
{
	struct ibv_sge sge = { .addr = (uintptr_t)c->one, .length = len,
			       .lkey = c->omr->lkey };
	struct ibv_send_wr wr = { .wr_id = WR_ONE, .sg_list = &sge,
				  .num_sge = 1, .opcode = op }, *bad;
	struct ibv_wc wc;
	int rc;

	if (op == IBV_WR_ATOMIC_FETCH_AND_ADD) {
		wr.wr.atomic.remote_addr = addr;
		wr.wr.atomic.rkey = rkey;
		wr.wr.atomic.compare_add = 1;
	} else {
		wr.wr.rdma.remote_addr = addr;
		wr.wr.rdma.rkey = rkey;
	}
	if (ibv_post_send(c->id->qp, &wr, &bad))
		return -EIO;
	do {
		rc = wc_wait(c, &wc, WC_MS);
		if (rc)
			return rc;
	} while (wc.wr_id != WR_ONE && wc.status == IBV_WC_SUCCESS);
	return (int)wc.status;
}

static int rc_auth(struct rc *c, const char *token)
{
	struct embkv_wire_hello hello;
	struct embkv_wire_auth auth;
	struct embkv_wire_auth_key key;
	struct reply r;
	int rc;

	if (getrandom(hello.nonce, sizeof(hello.nonce), 0) < 0)
		return -EIO;
	rc = rc_call(c, EMBKV_WIRE_OP_HELLO, hello.nonce, sizeof(hello.nonce),
		     &r);
	if (rc)
		return rc;
	embkv_wire_auth_key_derive(token, strlen(token), &key);
	embkv_wire_auth_mac(&key, EMBKV_WIRE_AUTH_CLIENT, r.body, hello.nonce,
			    auth.mac);
	free(r.frame);
	rc = rc_call(c, EMBKV_WIRE_OP_AUTH, auth.mac, sizeof(auth.mac), &r);
	free(r.frame);
	return rc;
}

static bool closed_within(struct rc *c, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	enum rdma_cm_event_type t;

	while (!c->disconnected && now_ms() < end)
		cm_wait(c, RDMA_CM_EVENT_DISCONNECTED,
			(int)(end - now_ms()), &t);
	return c->disconnected;
}

static const struct embkv_wire_table_ref all_tables = {
	EMBKV_WIRE_TABLE_ALL, 0
};

static int stat_conns(struct rc *c, uint64_t *v)
{
	uint8_t b[EMBKV_WIRE_TABLE_REF_SIZE];
	struct embkv_wire_stats st;
	struct embkv_wire_stat s;
	struct reply r;
	uint32_t table;
	int rc;

	embkv_wire_table_ref_encode(&all_tables, b, sizeof(b));
	rc = rc_call(c, EMBKV_WIRE_OP_STATS, b, sizeof(b), &r);
	if (rc)
		return rc;
	rc = embkv_wire_stats_decode(r.body, r.h.body_len, &st);
	while (!rc && embkv_wire_stats_next(&st, &table, &s))
		if (s.id == EMBKV_WIRE_STAT_CONNECTIONS)
			*v = s.value;
	free(r.frame);
	return rc;
}

/* Checks ---------------------------------------------------------------------- */

static void test_private_data(uint16_t port)
{
	struct embkv_verbs_connect good = {
		.credits = CREDITS, .recv_size = RECV_SIZE, .reply_slots = SLOTS,
		.slot_size = SLOT_SIZE, .reply_addr = 4096, .reply_rkey = 1,
	};
	static const struct { int off, width; uint32_t val; const char *what; }
	bad[] = {
		{ EMBKV_VERBS_CONNECT_MAGIC, 4, 0x12345678, "magic" },
		{ EMBKV_VERBS_CONNECT_VERSION, 2, EMBKV_WIRE_VERSION + 1,
		  "version" },
		{ EMBKV_VERBS_CONNECT_CREDITS, 2, 0, "zero credits" },
		{ EMBKV_VERBS_CONNECT_RECV_SIZE, 4, 0x7fffffff, "recv_size" },
		{ EMBKV_VERBS_CONNECT_SLOT_SIZE, 4, 16, "slot_size" },
		{ -1, 0, 0, "no private data" },
	};
	uint8_t pd[EMBKV_VERBS_CONNECT_SIZE];
	struct rc c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc;

		embkv_wire_verbs_connect_encode(&good, pd, sizeof(pd));
		if (bad[i].off >= 0 && bad[i].width == 4)
			memcpy(pd + bad[i].off, &bad[i].val, 4);
		else if (bad[i].off >= 0) {
			uint16_t v = (uint16_t)bad[i].val;

			memcpy(pd + bad[i].off, &v, 2);
		}
		rc = rc_connect(&c, port, pd, bad[i].off < 0 ? 0 : sizeof(pd));
		check(rc == -ECONNREFUSED, "private_data", "%s: %s",
		      bad[i].what, rc == -ECONNREFUSED ? "rejected" :
		      rc ? strerror(-rc) : "ACCEPTED");
		rc_free(&c);
	}
}

/* Any table: the requests below are refused before a table is looked up. */
static const struct embkv_wire_table_ref some_table = { 1, 1 };

static void test_preauth(uint16_t port)
{
	uint8_t b[EMBKV_WIRE_TABLE_REF_SIZE];
	struct reply r;
	struct rc c;
	int rc;

	rc = rc_connect(&c, port, NULL, 0);
	check(!rc, "preauth", "connect: %d", rc);
	if (rc)
		goto out;
	embkv_wire_table_ref_encode(&some_table, b, sizeof(b));
	rc = rc_call(&c, EMBKV_WIRE_OP_TABLE_REGIONS, b, sizeof(b), &r);
	check(rc == EMBKV_ETOKENREQUIRED, "preauth",
	      "TABLE_REGIONS before AUTH: %s", embkv_strerror(rc));
	if (!rc)
		free(r.frame);
	check(closed_within(&c, CM_MS), "preauth",
	      "connection closed after the refusal");
out:
	rc_free(&c);
}

static void test_auth_deadline(uint16_t port)
{
	uint64_t t0;
	struct rc c;
	int rc;

	rc = rc_connect(&c, port, NULL, 0);
	check(!rc, "auth_deadline", "connect: %d", rc);
	if (rc)
		goto out;
	t0 = now_ms();
	check(closed_within(&c, AUTH_TIMEOUT_MS + CM_MS), "auth_deadline",
	      "closed within %d ms", AUTH_TIMEOUT_MS + CM_MS);
	check(now_ms() - t0 >= AUTH_TIMEOUT_MS / 2, "auth_deadline",
	      "not closed before the deadline (%llu ms)",
	      (unsigned long long)(now_ms() - t0));
out:
	rc_free(&c);
}

static void test_bad_auth(uint16_t port)
{
	uint8_t b[EMBKV_WIRE_TABLE_REF_SIZE];
	struct reply r;
	struct rc c;
	int rc;

	rc = rc_connect(&c, port, NULL, 0);
	check(!rc, "bad_auth", "connect: %d", rc);
	if (rc)
		goto out;
	rc = rc_auth(&c, "not the token");
	check(rc == EMBKV_EAUTH, "bad_auth", "wrong MAC: %s",
	      embkv_strerror(rc));
	embkv_wire_table_ref_encode(&some_table, b, sizeof(b));
	rc = rc_call(&c, EMBKV_WIRE_OP_TABLE_REGIONS, b, sizeof(b), &r);
	check(rc != 0, "bad_auth", "no TABLE_REGIONS reply after it (%d)", rc);
	if (!rc)
		free(r.frame);
	check(closed_within(&c, CM_MS), "bad_auth", "connection closed");
out:
	rc_free(&c);
}

struct regions {
	struct embkv_wire_table_ref table;
	uint32_t arena_rkey, index_rkey, stride;
	uint64_t arena_addr, index_addr;
};

static void test_rpc(uint16_t port, struct regions *g, uint64_t *keys,
		     float *vals)
{
	struct embkv_table_attr a;
	struct embkv_wire_rows_req rr;
	struct embkv_wire_pull_req pr;
	struct embkv_wire_pull_reply prep;
	struct embkv_wire_table_regions reg;
	struct embkv_wire_region_part part;
	struct embkv_wire_hits hm;
	struct embkv_wire_count_reply cr;
	struct embkv_wire_table_ref stale;
	uint32_t counts[NKEYS];
	uint8_t buf[8192];
	size_t len;
	struct reply r;
	struct rc c;
	int rc;

	rc = rc_connect(&c, port, NULL, 0);
	check(!rc, "rpc", "connect: %d", rc);
	if (rc)
		goto out;
	rc = rc_auth(&c, TOKEN);
	check(!rc, "rpc", "HELLO/AUTH: %s", embkv_strerror(rc));
	if (rc)
		goto out;
	embkv_table_attr_init(&a);
	strcpy(a.name, "rdma_t");
	a.dim = DIM;
	a.partitions = 4;
	a.capacity = 4096;
	embkv_wire_table_attr_size(&a, &len);
	embkv_wire_table_attr_encode(&a, buf, sizeof(buf));
	rc = rc_call(&c, EMBKV_WIRE_OP_TABLE_CREATE, buf, (uint32_t)len, &r);
	check(!rc, "rpc", "TABLE_CREATE: %s", embkv_strerror(rc));
	if (rc)
		goto out;
	embkv_wire_table_ref_decode(r.body, r.h.body_len, &g->table);
	free(r.frame);
	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = 1000 + 7 * i;
	for (uint32_t i = 0; i < NKEYS * DIM; i++)
		vals[i] = (float)i * 0.5f;
	rr = (struct embkv_wire_rows_req){ g->table.table_id, g->table.uid,
					   DIM, NKEYS, keys, vals };
	embkv_wire_rows_req_size(&rr, &len);
	embkv_wire_rows_req_encode(&rr, buf, sizeof(buf));
	rc = rc_call(&c, EMBKV_WIRE_OP_ASSIGN, buf, (uint32_t)len, &r);
	check(!rc && !embkv_wire_count_reply_decode(r.body, r.h.body_len, &cr)
	      && cr.done == NKEYS, "rpc", "ASSIGN of %u rows over SEND: %s",
	      NKEYS, embkv_strerror(rc));
	free(r.frame);

	pr = (struct embkv_wire_pull_req){ g->table.table_id, g->table.uid,
					   DIM, NKEYS, EMBKV_WIRE_PULL_INFER,
					   keys };
	embkv_wire_pull_req_size(&pr, &len);
	embkv_wire_pull_req_encode(&pr, buf, sizeof(buf));
	rc = rc_call(&c, EMBKV_WIRE_OP_PULL, buf, (uint32_t)len, &r);
	check(!rc && r.by_write &&
	      !embkv_wire_pull_reply_decode(r.body, r.h.body_len, &prep) &&
	      !memcmp(prep.vals, vals, sizeof(float) * NKEYS * DIM), "rpc",
	      "PULL reply of %u bytes by RDMA WRITE WITH IMM, values right: "
	      "%s", r.h.body_len + EMBKV_WIRE_HDR_SIZE, embkv_strerror(rc));
	free(r.frame);
	pr.n = 2;
	embkv_wire_pull_req_size(&pr, &len);
	embkv_wire_pull_req_encode(&pr, buf, sizeof(buf));
	rc = rc_call(&c, EMBKV_WIRE_OP_PULL, buf, (uint32_t)len, &r);
	check(!rc && !r.by_write, "rpc", "small PULL reply by SEND: %s",
	      embkv_strerror(rc));
	free(r.frame);

	for (uint32_t i = 0; i < NKEYS; i++)
		counts[i] = 3;
	hm = (struct embkv_wire_hits){ g->table.table_id, g->table.uid, NKEYS,
				       keys, counts };
	embkv_wire_hits_size(&hm, &len);
	embkv_wire_hits_encode(&hm, buf, sizeof(buf));
	rc = rc_call(&c, EMBKV_WIRE_OP_HITS, buf, (uint32_t)len, &r);
	check(!rc && !embkv_wire_count_reply_decode(r.body, r.h.body_len, &cr)
	      && cr.done == NKEYS, "rpc", "HITS: %s", embkv_strerror(rc));
	free(r.frame);

	/* another uid for the table's id: no regions */
	stale = g->table;
	stale.uid ^= 1;
	embkv_wire_table_ref_encode(&stale, buf, EMBKV_WIRE_TABLE_REF_SIZE);
	rc = rc_call(&c, EMBKV_WIRE_OP_TABLE_REGIONS, buf,
		     EMBKV_WIRE_TABLE_REF_SIZE, &r);
	check(rc == EMBKV_ENOTABLE, "rpc",
	      "TABLE_REGIONS with a stale uid: %s", embkv_strerror(rc));
	if (!rc)
		free(r.frame);
	embkv_wire_table_ref_encode(&g->table, buf, EMBKV_WIRE_TABLE_REF_SIZE);
	rc = rc_call(&c, EMBKV_WIRE_OP_TABLE_REGIONS, buf,
		     EMBKV_WIRE_TABLE_REF_SIZE, &r);
	if (!rc)
		rc = embkv_wire_table_regions_decode(r.body, r.h.body_len, &reg);
	check(!rc && reg.count == 4 && reg.uid == g->table.uid, "rpc",
	      "TABLE_REGIONS after AUTH: %s, %u partitions, the table's uid",
	      embkv_strerror(rc), rc ? 0 : reg.count);
	if (rc)
		goto out;
	embkv_wire_table_regions_next(&reg, &part);
	g->arena_rkey = part.arena_rkey;
	g->index_rkey = part.index_rkey;
	g->stride = reg.stride;
	g->arena_addr = part.arena_addr;
	g->index_addr = part.index_addr;
	free(r.frame);
	rc = rc_one(&c, IBV_WR_RDMA_READ, g->arena_addr, g->arena_rkey,
		    g->stride);
	check(rc == IBV_WC_SUCCESS, "rpc", "one-sided READ of a record: %s",
	      ibv_wc_status_str((enum ibv_wc_status)rc));
	rc = rc_one(&c, IBV_WR_RDMA_READ, g->index_addr, g->index_rkey, 64);
	check(rc == IBV_WC_SUCCESS, "rpc", "one-sided READ of a bucket: %s",
	      ibv_wc_status_str((enum ibv_wc_status)rc));
out:
	rc_free(&c);
}

/* A fresh authenticated connection. */
static int rc_open(struct rc *c, uint16_t port)
{
	int rc = rc_connect(c, port, NULL, 0);

	if (!rc)
		rc = rc_auth(c, TOKEN);
	return rc;
}

static void test_refused(uint16_t port, const struct regions *g,
			 const uint64_t *keys, const float *vals)
{
	uint8_t before[256], after[256], buf[4096];
	struct embkv_wire_pull_req pr = { g->table.table_id, g->table.uid, DIM,
					  NKEYS, EMBKV_WIRE_PULL_INFER, keys };
	struct embkv_wire_pull_reply prep;
	struct reply r;
	struct rc c;
	size_t len;
	int rc;

	if (!g->arena_rkey) {
		check(false, "write_refused", "no regions");
		return;
	}
	rc = rc_open(&c, port);
	rc = rc ? rc : rc_one(&c, IBV_WR_RDMA_READ, g->arena_addr,
			      g->arena_rkey, sizeof(before));
	memcpy(before, c.one, sizeof(before));
	memset(c.one, 0xa5, sizeof(before));
	rc = rc ? rc : rc_one(&c, IBV_WR_RDMA_WRITE, g->arena_addr,
			      g->arena_rkey, sizeof(before));
	check(rc == IBV_WC_REM_ACCESS_ERR, "write_refused", "RDMA WRITE: %s",
	      rc > 0 ? ibv_wc_status_str((enum ibv_wc_status)rc) :
		       embkv_strerror(rc));
	rc_free(&c);

	rc = rc_open(&c, port);
	rc = rc ? rc : rc_one(&c, IBV_WR_ATOMIC_FETCH_AND_ADD, g->arena_addr,
			      g->arena_rkey, 8);
	check(rc == IBV_WC_REM_ACCESS_ERR, "atomic_refused", "FETCH_ADD: %s",
	      rc > 0 ? ibv_wc_status_str((enum ibv_wc_status)rc) :
		       embkv_strerror(rc));
	rc_free(&c);

	rc = rc_open(&c, port);
	rc = rc ? rc : rc_one(&c, IBV_WR_RDMA_READ, g->arena_addr,
			      g->arena_rkey, sizeof(after));
	memcpy(after, c.one, sizeof(after));
	check(!rc && !memcmp(before, after, sizeof(after)), "unchanged",
	      "the attacked bytes read back the same");
	embkv_wire_pull_req_size(&pr, &len);
	embkv_wire_pull_req_encode(&pr, buf, sizeof(buf));
	rc = rc_call(&c, EMBKV_WIRE_OP_PULL, buf, (uint32_t)len, &r);
	check(!rc && !embkv_wire_pull_reply_decode(r.body, r.h.body_len,
						   &prep) &&
	      !memcmp(prep.vals, vals, sizeof(float) * NKEYS * DIM),
	      "unchanged", "every row pulls back as assigned");
	free(r.frame);
	rc_free(&c);
}

static void test_baseline(uint16_t port)
{
	uint64_t n = 0, end = now_ms() + CM_MS;
	struct rc c;
	int rc = rc_open(&c, port);

	while (!rc && !stat_conns(&c, &n) && n != 1 && now_ms() < end)
		usleep(50000);
	check(!rc && n == 1, "baseline", "connections %llu (want 1: this "
	      "probe)", (unsigned long long)n);
	rc_free(&c);
}

static void test_killed(uint16_t port)
{
	struct rc c[2];
	struct reply r;
	uint64_t t0;
	uint8_t b[EMBKV_WIRE_TABLE_REF_SIZE];
	int rc, st;

	for (int i = 0; i < 2; i++) {
		rc = rc_open(&c[i], port);
		check(!rc, "killed", "client %d connected", i);
	}
	kill(srv_pid, SIGKILL);
	waitpid(srv_pid, &st, 0);
	srv_pid = -1;
	t0 = now_ms();
	/* client 0 waits for the cm event, client 1 sends a request */
	check(closed_within(&c[0], KILL_BOUND_MS), "killed",
	      "client 0: DISCONNECTED after %llu ms",
	      (unsigned long long)(now_ms() - t0));
	t0 = now_ms();
	embkv_wire_table_ref_encode(&all_tables, b, sizeof(b));
	rc = rc_call(&c[1], EMBKV_WIRE_OP_STATS, b, sizeof(b), &r);
	if (!rc)
		free(r.frame);
	check(rc != 0 && now_ms() - t0 <= KILL_BOUND_MS, "killed",
	      "client 1: request failed (%s) after %llu ms",
	      embkv_strerror(rc), (unsigned long long)(now_ms() - t0));
	for (int i = 0; i < 2; i++)
		rc_free(&c[i]);
}

int main(int argc, char **argv)
{
	struct regions g = { 0 };
	uint64_t keys[NKEYS];
	float vals[NKEYS * DIM];
	uint16_t port = 0;
	int rc;

	ip = argc > 1 ? argv[1] : getenv("EMBKV_VM_IP");
	if (!ip)
		ip = DEFAULT_IP;
	signal(SIGALRM, on_alarm);
	alarm(WATCHDOG_S);
	rc = server_start(&port);
	check(!rc, "start", "embkvd on rdma://%s:%u: %s", ip, port,
	      strerror(-rc));
	if (rc)
		goto out;
	test_private_data(port);
	test_preauth(port);
	test_bad_auth(port);
	test_auth_deadline(port);
	test_rpc(port, &g, keys, vals);
	test_refused(port, &g, keys, vals);
	test_baseline(port);
	test_killed(port);
out:
	if (srv_pid > 0) {
		kill(srv_pid, SIGKILL);
		waitpid(srv_pid, NULL, 0);
	}
	printf("%d failed\n", failures);
	return failures ? 1 : 0;
}
