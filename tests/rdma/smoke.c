/*
 * embkv_rdma_smoke: the smallest end-to-end check of the verbs features the
 * RDMA transport relies on. Runs inside the soft-RoCE VM (tests/rdma/vm.sh).
 *
 * A server thread and a client thread in one process set up one RC
 * connection with rdma_cm over the rxe device's IPv4 address (127.0.0.1
 * does not work with rxe: route resolution finds no RDMA device). The
 * server exposes a region registered with IBV_ACCESS_REMOTE_READ only, as
 * embkv's shard memory is, and hands out its address and rkey in the
 * accept's private data. The client then
 *   1. RDMA READs the region and compares it with the expected pattern;
 *   2. SENDs a request that the server checks and answers with a SEND;
 *   3. RDMA WRITEs to the region: that must complete with
 *      IBV_WC_REM_ACCESS_ERR and leave the region unchanged.
 * The write comes last because the access error moves both QPs to the
 * error state.
 *
 * Every rdma_cm event (asynchronous event channels, fd polled with a
 * timeout) and every completion (completion channel, likewise) has a
 * deadline; a thread that fails makes the other stop waiting; a watchdog
 * alarm bounds the whole run.
 *
 * usage: embkv_rdma_smoke [IPV4]   default: $EMBKV_VM_IP, else 10.0.2.15
 * Prints one PASS or FAIL line per check; exits 0 only if all pass.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define SMOKE_DEFAULT_IP	"10.0.2.15"
#define SMOKE_REGION_LEN	4096
#define SMOKE_MSG_LEN		64
#define SMOKE_CQ_DEPTH		16
#define SMOKE_MAX_WR		8
#define SMOKE_STASH_MAX		8
#define SMOKE_RESOLVE_MS	2000	/* rdma_resolve_addr/route timeout */
#define SMOKE_CM_TIMEOUT_MS	10000	/* any rdma_cm event */
#define SMOKE_WC_TIMEOUT_MS	5000	/* any completion */
#define SMOKE_PHASE_TIMEOUT_MS	15000	/* the other thread reaching a phase */
#define SMOKE_POLL_SLICE_MS	100	/* how often waits look at .aborted */
#define SMOKE_WATCHDOG_S	60
#define SMOKE_RETRY_COUNT	7
#define SMOKE_CHECKS		7	/* checks a full run performs */

static const char SMOKE_PING[] = "embkv smoke: ping";
static const char SMOKE_PONG[] = "embkv smoke: pong";

enum smoke_wr_id {
	SMOKE_WR_RECV = 1,
	SMOKE_WR_SEND,
	SMOKE_WR_READ,
	SMOKE_WR_WRITE,
};

/* Progress of the server, as seen by the client. */
enum smoke_phase {
	SMOKE_PHASE_START,
	SMOKE_PHASE_LISTENING,	/* port is set */
	SMOKE_PHASE_REPLIED,	/* the server's reply SEND completed */
	SMOKE_PHASE_FAILED,	/* the server gave up */
};

/* The server's region, as sent in the accept's private data (LE). */
struct smoke_desc {
	uint64_t addr;
	uint32_t rkey;
	uint32_t len;
};

/* One side of the connection: its cm id, event channel and queues. */
struct smoke_ep {
	const char *who;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *listen_id;	/* server only */
	struct rdma_cm_id *id;		/* the connected id */
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	bool qp_created;
	struct ibv_wc stash[SMOKE_STASH_MAX];	/* completions seen early */
	int nstash;
};

struct smoke {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* phase changes */
	enum smoke_phase phase;
	const char *ip;			/* the rxe device's address */
	struct sockaddr_in addr;	/* the same; port set once listening */
	int aborted;			/* a thread failed: stop waiting */
	unsigned int passed;
	unsigned int failed;
};

static struct smoke smoke = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

static void report(bool ok, const char *check, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prints "PASS check: detail" or "FAIL check: detail" and counts it. */
static void report(bool ok, const char *check, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&smoke.lock);
	if (ok)
		smoke.passed++;
	else
		smoke.failed++;
	printf("%s %s: ", ok ? "PASS" : "FAIL", check);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&smoke.lock);
}

/* A failed step outside the named checks (setup, teardown). */
static void fail_errno(const struct smoke_ep *ep, const char *what, int err)
{
	report(false, ep->who, "%s: %s", what, strerror(err));
}

static void phase_set(enum smoke_phase phase)
{
	pthread_mutex_lock(&smoke.lock);
	smoke.phase = phase;
	pthread_cond_broadcast(&smoke.cond);
	pthread_mutex_unlock(&smoke.lock);
}

/*
 * Called by a thread that failed, once it has cleaned up: the other
 * thread's waits end now instead of at their timeouts.
 */
static void give_up(void)
{
	__atomic_store_n(&smoke.aborted, 1, __ATOMIC_RELEASE);
	phase_set(SMOKE_PHASE_FAILED);
}

/* Waits until the server reaches phase; -ECANCELED if it failed first. */
static int phase_wait(enum smoke_phase phase)
{
	struct timespec deadline;
	int err = 0;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += SMOKE_PHASE_TIMEOUT_MS / 1000;
	pthread_mutex_lock(&smoke.lock);
	while (smoke.phase < phase && err == 0)
		err = pthread_cond_timedwait(&smoke.cond, &smoke.lock, &deadline);
	if (smoke.phase == SMOKE_PHASE_FAILED)
		err = ECANCELED;
	else if (smoke.phase >= phase)
		err = 0;
	pthread_mutex_unlock(&smoke.lock);
	return -err;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Polls fd for input until deadline_ms: 0, -ETIMEDOUT, -ECANCELED (the
 * other thread gave up) or -errno.
 */
static int fd_wait(int fd, int64_t deadline_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int64_t left;
	int n;

	for (;;) {
		if (__atomic_load_n(&smoke.aborted, __ATOMIC_ACQUIRE))
			return -ECANCELED;
		left = deadline_ms - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (left > SMOKE_POLL_SLICE_MS)
			left = SMOKE_POLL_SLICE_MS;
		n = poll(&pfd, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int set_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/*
 * Waits for the next rdma_cm event on ep's channel and checks that it is
 * want. On success stores the event's id in *id (when id is not NULL) and
 * copies up to pdata_len bytes of its private data to pdata (zero-filled
 * when shorter). Returns 0, -ETIMEDOUT, -EPROTO (another event) or -errno.
 */
static int cm_wait(struct smoke_ep *ep, enum rdma_cm_event_type want,
		   struct rdma_cm_id **id, void *pdata, size_t pdata_len)
{
	int64_t deadline = now_ms() + SMOKE_CM_TIMEOUT_MS;
	struct rdma_cm_event *ev;
	const void *src;
	size_t n;
	int err;

	for (;;) {
		if (rdma_get_cm_event(ep->ec, &ev) == 0)
			break;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		err = fd_wait(ep->ec->fd, deadline);
		if (err) {
			report(false, ep->who, "no %s: %s", rdma_event_str(want),
			       err == -ETIMEDOUT ? "timed out" :
			       err == -ECANCELED ? "the other side failed" :
			       strerror(-err));
			return err;
		}
	}
	if (ev->event != want) {
		report(false, ep->who, "got %s (status %d), wanted %s",
		       rdma_event_str(ev->event), ev->status,
		       rdma_event_str(want));
		rdma_ack_cm_event(ev);
		return -EPROTO;
	}
	if (id)
		*id = ev->id;
	if (pdata) {
		memset(pdata, 0, pdata_len);
		src = ev->param.conn.private_data;
		n = ev->param.conn.private_data_len;
		if (src)
			memcpy(pdata, src, n < pdata_len ? n : pdata_len);
	}
	rdma_ack_cm_event(ev);
	return 0;
}

/*
 * Waits for the completion of work request wr_id (others that arrive first
 * are kept for later calls). Returns 0 with *wc filled, -ETIMEDOUT,
 * -ENOSPC (too many early completions) or -errno.
 */
static int wc_wait(struct smoke_ep *ep, uint64_t wr_id, struct ibv_wc *wc)
{
	int64_t deadline = now_ms() + SMOKE_WC_TIMEOUT_MS;
	struct ibv_cq *ev_cq;
	void *ev_ctx;
	bool armed = false;
	int i, n, err;

	for (i = 0; i < ep->nstash; i++) {
		if (ep->stash[i].wr_id == wr_id) {
			*wc = ep->stash[i];
			ep->stash[i] = ep->stash[--ep->nstash];
			return 0;
		}
	}
	for (;;) {
		n = ibv_poll_cq(ep->cq, 1, wc);
		if (n < 0)
			return -EIO;
		if (n == 1) {
			if (wc->wr_id == wr_id)
				return 0;
			if (ep->nstash == SMOKE_STASH_MAX)
				return -ENOSPC;
			ep->stash[ep->nstash++] = *wc;
			continue;
		}
		/* Empty: arm, then poll once more to close the race. */
		if (!armed) {
			if (ibv_req_notify_cq(ep->cq, 0))
				return -EIO;
			armed = true;
			continue;
		}
		err = fd_wait(ep->cc->fd, deadline);
		if (err) {
			report(false, ep->who, "no completion for wr %llu: %s",
			       (unsigned long long)wr_id,
			       err == -ETIMEDOUT ? "timed out" :
			       err == -ECANCELED ? "the other side failed" :
			       strerror(-err));
			return err;
		}
		if (ibv_get_cq_event(ep->cc, &ev_cq, &ev_ctx) == 0)
			ibv_ack_cq_events(ev_cq, 1);
		else if (errno != EAGAIN)
			return -errno;
		armed = false;
	}
}

static int ep_open(struct smoke_ep *ep, const char *who)
{
	memset(ep, 0, sizeof(*ep));
	ep->who = who;
	ep->ec = rdma_create_event_channel();
	if (!ep->ec)
		return -errno;
	return set_nonblock(ep->ec->fd);
}

/* PD, completion channel, CQ and an RC QP on ep->id. */
static int ep_create_qp(struct smoke_ep *ep)
{
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
		.cap = {
			.max_send_wr = SMOKE_MAX_WR,
			.max_recv_wr = SMOKE_MAX_WR,
			.max_send_sge = 1,
			.max_recv_sge = 1,
		},
	};
	int err;

	ep->pd = ibv_alloc_pd(ep->id->verbs);
	if (!ep->pd)
		return -errno;
	ep->cc = ibv_create_comp_channel(ep->id->verbs);
	if (!ep->cc)
		return -errno;
	err = set_nonblock(ep->cc->fd);
	if (err)
		return err;
	ep->cq = ibv_create_cq(ep->id->verbs, SMOKE_CQ_DEPTH, NULL, ep->cc, 0);
	if (!ep->cq)
		return -errno;
	qa.send_cq = ep->cq;
	qa.recv_cq = ep->cq;
	if (rdma_create_qp(ep->id, ep->pd, &qa))
		return -errno;
	ep->qp_created = true;
	return 0;
}

/* Undoes ep_open and ep_create_qp, whatever part of them succeeded. */
static void ep_close(struct smoke_ep *ep)
{
	if (ep->qp_created)
		rdma_destroy_qp(ep->id);
	if (ep->cq)
		ibv_destroy_cq(ep->cq);
	if (ep->cc)
		ibv_destroy_comp_channel(ep->cc);
	if (ep->pd)
		ibv_dealloc_pd(ep->pd);
	if (ep->id)
		rdma_destroy_id(ep->id);
	if (ep->listen_id)
		rdma_destroy_id(ep->listen_id);
	if (ep->ec)
		rdma_destroy_event_channel(ep->ec);
}

static void pattern_fill(uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + 7);
}

static bool pattern_ok(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i * 31 + 7))
			return false;
	return true;
}

static int post_recv(struct smoke_ep *ep, void *buf, uint32_t len,
		     struct ibv_mr *mr)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)buf, .length = len, .lkey = mr->lkey,
	};
	struct ibv_recv_wr wr = {
		.wr_id = SMOKE_WR_RECV, .sg_list = &sge, .num_sge = 1,
	}, *bad;

	return -ibv_post_recv(ep->id->qp, &wr, &bad);
}

/* Posts one SEND, READ or WRITE (remote_* unused for SEND). */
static int post_send(struct smoke_ep *ep, enum smoke_wr_id wr_id,
		     enum ibv_wr_opcode op, void *buf, uint32_t len,
		     struct ibv_mr *mr, uint64_t remote_addr, uint32_t rkey)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)buf, .length = len, .lkey = mr->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = wr_id,
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = op,
		.send_flags = IBV_SEND_SIGNALED,
		.wr.rdma = { .remote_addr = remote_addr, .rkey = rkey },
	}, *bad;

	return -ibv_post_send(ep->id->qp, &wr, &bad);
}

/* ------------------------------------------------------------------ server */

static int server_serve(struct smoke_ep *ep, uint8_t *region)
{
	char req[SMOKE_MSG_LEN] = { 0 }, reply[SMOKE_MSG_LEN] = { 0 };
	struct ibv_mr *region_mr, *req_mr, *reply_mr;
	struct rdma_conn_param cp = { .responder_resources = 1 };
	struct smoke_desc desc;
	struct ibv_wc wc;
	bool ok;
	int err;

	err = ep_create_qp(ep);
	if (err) {
		fail_errno(ep, "QP setup", -err);
		goto reject;
	}
	/* A region clients may read but never write, like embkv's shards. */
	region_mr = ibv_reg_mr(ep->pd, region, SMOKE_REGION_LEN,
			       IBV_ACCESS_REMOTE_READ);
	if (!region_mr) {
		err = -errno;
		fail_errno(ep, "ibv_reg_mr(REMOTE_READ)", -err);
		goto reject;
	}
	req_mr = ibv_reg_mr(ep->pd, req, sizeof(req), IBV_ACCESS_LOCAL_WRITE);
	if (!req_mr) {
		err = -errno;
		fail_errno(ep, "ibv_reg_mr(request)", -err);
		goto dereg_region_reject;
	}
	reply_mr = ibv_reg_mr(ep->pd, reply, sizeof(reply), 0);
	if (!reply_mr) {
		err = -errno;
		fail_errno(ep, "ibv_reg_mr(reply)", -err);
		goto dereg_req_reject;
	}
	err = post_recv(ep, req, sizeof(req), req_mr);
	if (err) {
		fail_errno(ep, "post_recv", -err);
		goto dereg_reply_reject;
	}

	desc.addr = htole64((uintptr_t)region);
	desc.rkey = htole32(region_mr->rkey);
	desc.len = htole32(SMOKE_REGION_LEN);
	cp.private_data = &desc;
	cp.private_data_len = sizeof(desc);
	if (rdma_accept(ep->id, &cp)) {
		err = -errno;
		fail_errno(ep, "rdma_accept", -err);
		goto dereg_reply_reject;
	}
	err = cm_wait(ep, RDMA_CM_EVENT_ESTABLISHED, NULL, NULL, 0);
	if (err)
		goto dereg_reply;

	err = wc_wait(ep, SMOKE_WR_RECV, &wc);
	if (err)
		goto dereg_reply;
	if (wc.status != IBV_WC_SUCCESS || wc.byte_len != sizeof(SMOKE_PING) ||
	    memcmp(req, SMOKE_PING, sizeof(SMOKE_PING))) {
		report(false, "server_recv", "status %s, %u bytes",
		       ibv_wc_status_str(wc.status), wc.byte_len);
		err = -EPROTO;
		goto dereg_reply;
	}
	memcpy(reply, SMOKE_PONG, sizeof(SMOKE_PONG));
	err = post_send(ep, SMOKE_WR_SEND, IBV_WR_SEND, reply,
			sizeof(SMOKE_PONG), reply_mr, 0, 0);
	if (!err)
		err = wc_wait(ep, SMOKE_WR_SEND, &wc);
	if (err || wc.status != IBV_WC_SUCCESS) {
		report(false, "server_send", "%s",
		       err ? strerror(-err) : ibv_wc_status_str(wc.status));
		err = err ? err : -EIO;
		goto dereg_reply;
	}
	phase_set(SMOKE_PHASE_REPLIED);

	/* The client's WRITE fails and it disconnects. */
	err = cm_wait(ep, RDMA_CM_EVENT_DISCONNECTED, NULL, NULL, 0);
	ok = pattern_ok(region, SMOKE_REGION_LEN);
	report(ok, "read_only_region_unchanged", "%d bytes %s", SMOKE_REGION_LEN,
	       ok ? "as registered" : "CHANGED by the remote write");

dereg_reply:
	ibv_dereg_mr(reply_mr);
	ibv_dereg_mr(req_mr);
	ibv_dereg_mr(region_mr);
	return err;

	/* Failures before rdma_accept: also refuse the pending request. */
dereg_reply_reject:
	ibv_dereg_mr(reply_mr);
dereg_req_reject:
	ibv_dereg_mr(req_mr);
dereg_region_reject:
	ibv_dereg_mr(region_mr);
reject:
	rdma_reject(ep->id, NULL, 0);
	return err;
}

static void *server_main(void *arg)
{
	struct sockaddr_in addr = smoke.addr;
	struct smoke_ep ep;
	uint8_t *region;
	int err;

	(void)arg;
	region = aligned_alloc(SMOKE_REGION_LEN, SMOKE_REGION_LEN);
	if (!region) {
		report(false, "server", "out of memory");
		give_up();
		return NULL;
	}
	pattern_fill(region, SMOKE_REGION_LEN);

	err = ep_open(&ep, "server");
	if (err) {
		fail_errno(&ep, "rdma_create_event_channel", -err);
		goto close;
	}
	addr.sin_port = 0;	/* any free port */
	if (rdma_create_id(ep.ec, &ep.listen_id, NULL, RDMA_PS_TCP)) {
		ep.listen_id = NULL;
		err = -errno;
	} else if (rdma_bind_addr(ep.listen_id, (struct sockaddr *)&addr) ||
		   rdma_listen(ep.listen_id, 1)) {
		err = -errno;
	}
	if (err) {
		report(false, "listen", "on %s: %s", smoke.ip, strerror(-err));
		goto close;
	}
	pthread_mutex_lock(&smoke.lock);
	smoke.addr.sin_port = rdma_get_src_port(ep.listen_id);
	pthread_mutex_unlock(&smoke.lock);
	/* verbs stays NULL when the address is not an RDMA device's. */
	report(true, "listen", "%s port %u on %s", smoke.ip,
	       ntohs(rdma_get_src_port(ep.listen_id)),
	       ep.listen_id->verbs ?
	       ibv_get_device_name(ep.listen_id->verbs->device) : "no device");
	phase_set(SMOKE_PHASE_LISTENING);

	err = cm_wait(&ep, RDMA_CM_EVENT_CONNECT_REQUEST, &ep.id, NULL, 0);
	if (!err)
		err = server_serve(&ep, region);

close:
	ep_close(&ep);
	free(region);
	if (err)
		give_up();
	return NULL;
}

/* ------------------------------------------------------------------ client */

/* Resolves the server's address and route, then creates the QP. */
static int client_resolve(struct smoke_ep *ep)
{
	struct sockaddr_in dst;
	int err;

	pthread_mutex_lock(&smoke.lock);
	dst = smoke.addr;
	pthread_mutex_unlock(&smoke.lock);
	if (rdma_create_id(ep->ec, &ep->id, NULL, RDMA_PS_TCP)) {
		ep->id = NULL;
		return -errno;
	}
	if (rdma_resolve_addr(ep->id, NULL, (struct sockaddr *)&dst,
			      SMOKE_RESOLVE_MS)) {
		err = -errno;
		report(false, "connect", "rdma_resolve_addr: %s", strerror(-err));
		return err;
	}
	err = cm_wait(ep, RDMA_CM_EVENT_ADDR_RESOLVED, NULL, NULL, 0);
	if (err)
		return err;
	if (rdma_resolve_route(ep->id, SMOKE_RESOLVE_MS)) {
		err = -errno;
		report(false, "connect", "rdma_resolve_route: %s", strerror(-err));
		return err;
	}
	err = cm_wait(ep, RDMA_CM_EVENT_ROUTE_RESOLVED, NULL, NULL, 0);
	if (err)
		return err;
	err = ep_create_qp(ep);
	if (err) {
		fail_errno(ep, "QP setup", -err);
		return err;
	}
	return 0;
}

/* Connects; the accept's private data describes the server's region. */
static int client_establish(struct smoke_ep *ep, struct smoke_desc *desc)
{
	struct rdma_conn_param cp = {
		.initiator_depth = 1,
		.responder_resources = 1,
		.retry_count = SMOKE_RETRY_COUNT,
		.rnr_retry_count = SMOKE_RETRY_COUNT,
	};
	int err;

	if (rdma_connect(ep->id, &cp)) {
		err = -errno;
		report(false, "connect", "rdma_connect: %s", strerror(-err));
		return err;
	}
	err = cm_wait(ep, RDMA_CM_EVENT_ESTABLISHED, NULL, desc, sizeof(*desc));
	if (err)
		return err;
	desc->addr = le64toh(desc->addr);
	desc->rkey = le32toh(desc->rkey);
	desc->len = le32toh(desc->len);
	if (!desc->addr || desc->len != SMOKE_REGION_LEN) {
		report(false, "connect", "bad region in private data (len %u)",
		       desc->len);
		return -EPROTO;
	}
	report(true, "connect", "RC QP %u to %s, region rkey %#x",
	       ep->id->qp->qp_num, smoke.ip, desc->rkey);
	return 0;
}

static int client_run(struct smoke_ep *ep)
{
	char msg[SMOKE_MSG_LEN] = { 0 }, reply[SMOKE_MSG_LEN] = { 0 };
	struct ibv_mr *buf_mr, *msg_mr, *reply_mr;
	struct smoke_desc desc;
	struct ibv_wc wc;
	uint8_t *buf;
	int err;

	err = client_resolve(ep);
	if (err)
		return err;
	buf = aligned_alloc(SMOKE_REGION_LEN, SMOKE_REGION_LEN);
	if (!buf) {
		fail_errno(ep, "aligned_alloc", ENOMEM);
		return -ENOMEM;
	}
	buf_mr = ibv_reg_mr(ep->pd, buf, SMOKE_REGION_LEN, IBV_ACCESS_LOCAL_WRITE);
	if (!buf_mr) {
		err = -errno;
		fail_errno(ep, "ibv_reg_mr(buffer)", -err);
		goto free_buf;
	}
	msg_mr = ibv_reg_mr(ep->pd, msg, sizeof(msg), 0);
	if (!msg_mr) {
		err = -errno;
		fail_errno(ep, "ibv_reg_mr(request)", -err);
		goto dereg_buf;
	}
	reply_mr = ibv_reg_mr(ep->pd, reply, sizeof(reply), IBV_ACCESS_LOCAL_WRITE);
	if (!reply_mr) {
		err = -errno;
		fail_errno(ep, "ibv_reg_mr(reply)", -err);
		goto dereg_msg;
	}
	err = post_recv(ep, reply, sizeof(reply), reply_mr);
	if (err) {
		fail_errno(ep, "post_recv", -err);
		goto dereg_reply;
	}
	err = client_establish(ep, &desc);
	if (err)
		goto dereg_reply;

	/* 1. one-sided READ of the whole region */
	memset(buf, 0, SMOKE_REGION_LEN);
	err = post_send(ep, SMOKE_WR_READ, IBV_WR_RDMA_READ, buf, desc.len,
			buf_mr, desc.addr, desc.rkey);
	if (!err)
		err = wc_wait(ep, SMOKE_WR_READ, &wc);
	if (err || wc.status != IBV_WC_SUCCESS ||
	    !pattern_ok(buf, SMOKE_REGION_LEN)) {
		report(false, "rdma_read", "%s",
		       err ? strerror(-err) : wc.status != IBV_WC_SUCCESS ?
		       ibv_wc_status_str(wc.status) : "data differs");
		err = err ? err : -EIO;
		goto disconnect;
	}
	report(true, "rdma_read", "%u bytes match the server's region", desc.len);

	/* 2. SEND a request, RECV the server's reply */
	memcpy(msg, SMOKE_PING, sizeof(SMOKE_PING));
	err = post_send(ep, SMOKE_WR_SEND, IBV_WR_SEND, msg, sizeof(SMOKE_PING),
			msg_mr, 0, 0);
	if (!err)
		err = wc_wait(ep, SMOKE_WR_SEND, &wc);
	if (!err && wc.status == IBV_WC_SUCCESS)
		err = wc_wait(ep, SMOKE_WR_RECV, &wc);
	if (err || wc.status != IBV_WC_SUCCESS ||
	    wc.byte_len != sizeof(SMOKE_PONG) ||
	    memcmp(reply, SMOKE_PONG, sizeof(SMOKE_PONG))) {
		report(false, "send_recv", "%s",
		       err ? strerror(-err) : wc.status != IBV_WC_SUCCESS ?
		       ibv_wc_status_str(wc.status) : "wrong reply");
		err = err ? err : -EIO;
		goto disconnect;
	}
	report(true, "send_recv", "request and reply of %zu bytes",
	       sizeof(SMOKE_PING));

	/* 3. WRITE into the read-only region: a remote access error */
	err = phase_wait(SMOKE_PHASE_REPLIED);
	if (err) {
		report(false, "write_to_read_only_region", "server not ready: %s",
		       strerror(-err));
		goto disconnect;
	}
	memset(buf, 0xee, SMOKE_REGION_LEN);
	err = post_send(ep, SMOKE_WR_WRITE, IBV_WR_RDMA_WRITE, buf, desc.len,
			buf_mr, desc.addr, desc.rkey);
	if (!err)
		err = wc_wait(ep, SMOKE_WR_WRITE, &wc);
	if (err || wc.status != IBV_WC_REM_ACCESS_ERR) {
		report(false, "write_to_read_only_region", "%s, wanted %s",
		       err ? strerror(-err) : ibv_wc_status_str(wc.status),
		       ibv_wc_status_str(IBV_WC_REM_ACCESS_ERR));
		err = err ? err : -EIO;
	} else {
		report(true, "write_to_read_only_region", "completed with %s",
		       ibv_wc_status_str(wc.status));
	}

disconnect:
	if (rdma_disconnect(ep->id) == 0) {
		int derr = cm_wait(ep, RDMA_CM_EVENT_DISCONNECTED, NULL, NULL, 0);

		report(derr == 0, "disconnect", "%s",
		       derr ? strerror(-derr) : "DISCONNECTED");
		err = err ? err : derr;
	} else {
		fail_errno(ep, "rdma_disconnect", errno);
		err = err ? err : -EIO;
	}
dereg_reply:
	ibv_dereg_mr(reply_mr);
dereg_msg:
	ibv_dereg_mr(msg_mr);
dereg_buf:
	ibv_dereg_mr(buf_mr);
free_buf:
	free(buf);
	return err;
}

static void *client_main(void *arg)
{
	struct smoke_ep ep;
	int err;

	(void)arg;
	err = phase_wait(SMOKE_PHASE_LISTENING);
	if (err) {
		report(false, "client", "server not listening: %s", strerror(-err));
		return NULL;
	}
	err = ep_open(&ep, "client");
	if (err)
		fail_errno(&ep, "rdma_create_event_channel", -err);
	else
		err = client_run(&ep);
	ep_close(&ep);
	if (err)
		give_up();
	return NULL;
}

/* ------------------------------------------------------------------ main */

static void watchdog(int sig)
{
	static const char msg[] = "FAIL watchdog: still running after the deadline\n";

	(void)sig;
	(void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	_exit(2);
}

int main(int argc, char **argv)
{
	const char *ip = argc > 1 ? argv[1] : getenv("EMBKV_VM_IP");
	pthread_condattr_t ca;
	pthread_t server, client;
	bool ok;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!ip || !*ip)
		ip = SMOKE_DEFAULT_IP;
	smoke.ip = ip;
	smoke.addr.sin_family = AF_INET;
	if (inet_pton(AF_INET, ip, &smoke.addr.sin_addr) != 1) {
		fprintf(stderr, "usage: %s [IPV4]\n", argv[0]);
		return 2;
	}
	signal(SIGALRM, watchdog);
	alarm(SMOKE_WATCHDOG_S);

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&smoke.cond, &ca);
	pthread_condattr_destroy(&ca);

	if (pthread_create(&server, NULL, server_main, NULL)) {
		report(false, "server", "pthread_create failed");
		return 1;
	}
	if (pthread_create(&client, NULL, client_main, NULL)) {
		report(false, "client", "pthread_create failed");
		give_up();
		pthread_join(server, NULL);
		return 1;
	}
	pthread_join(client, NULL);
	pthread_join(server, NULL);

	if (smoke.failed == 0 && smoke.passed != SMOKE_CHECKS)
		report(false, "smoke", "only %u of %d checks ran", smoke.passed,
		       SMOKE_CHECKS);
	ok = smoke.failed == 0;
	printf("%s embkv_rdma_smoke: %u passed, %u failed (%s)\n",
	       ok ? "PASS" : "FAIL", smoke.passed, smoke.failed, ip);
	return ok ? 0 : 1;
}
