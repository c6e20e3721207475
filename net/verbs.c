/*
 * RDMA verbs transport, client side: "rdma://host:port" (net/RDMA.md).
 *
 * One RC queue pair per connection, set up with rdma_cm on a private
 * event channel; one CQ with a completion channel. Every rdma_cm wait
 * polls the channel fd with the caller's deadline, so a server that never
 * answers costs a timeout, never a hang.
 *
 * RPC: a request frame is copied into one of `window` registered send
 * buffers and SENT (signaled: the completion frees the buffer); a frame
 * with a tail in a caller's region (send_gather: a GPUDirect push's rows)
 * is SENT with that as a second gather entry. Replies
 * arrive in the RECVs posted at connect (our credits), either as the
 * frame itself (IBV_WC_RECV) or as the notice that the server wrote the
 * frame into slot request_id % reply_slots of our reply arena
 * (IBV_WC_RECV_RDMA_WITH_IMM). recv_some copies the frame into the
 * caller's rx (header checked first, as for TCP), reposts the RECV and
 * frees the slot. Flow control is the window: at most window requests
 * are outstanding, and a request whose reply slot is still taken by an
 * older one (replies may come out of order) waits too.
 *
 * One-sided reads: post_reads chains n RDMA READ work requests with one
 * ibv_post_send (one doorbell), only the last one signaled; RC completes
 * a send queue in order, so that completion means the whole chain is in
 * local memory. poll_reads hands back the cookie of each finished chain.
 * A read lands in read_buf or in a region the caller registered with
 * read_region (GPU memory: client/gpu.c; registered for local and remote
 * write, so that a PULL_LAND server may write into it, and its rkey given
 * by region_rkey); up to MAX_REGIONS stay registered per connection, all
 * deregistered before the pd is freed, none while a work request or a
 * request may still use one.
 *
 * Waiting: poll_fd is an epoll set of the completion channel and the
 * rdma_cm channel, so a thread that waits for a reply also wakes up when
 * the server disconnects (its QP may have nothing in flight to fail).
 * Before saying -EAGAIN every op drains the channel's events, arms the CQ
 * and polls it once more (a completion between the poll and the arming
 * would otherwise be missed).
 *
 * Invariants: err is sticky (the first failure; a failed completion puts
 * the QP in the error state, so nothing after it can be trusted);
 * sq_used counts work requests posted whose completion was not yet
 * polled, and never exceeds sq_depth; slot_busy[s] is set exactly while
 * the request that owns reply slot s is outstanding.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "net/transport.h"
#include "net/verbs.h"

#define PAGE_ALIGN 4096u
#define PORT_STR_MAX 8u
#define CQ_BATCH 32
#define SQ_SLACK 8u
#define MAX_CHAINS 16u        /* post_reads chains in flight */
#define MAX_REGIONS 16u       /* read_region registrations kept */
#define RD_ATOM_MAX 16u       /* READs in flight per QP we ask for */
#define CM_RETRY_COUNT 7      /* transport retries before the QP fails */
#define CM_RNR_RETRY 6        /* 7 would be "forever" */
#define SEND_CAP (1u << 20)   /* largest server recv_size we fill */
#define PDATA_MAX 256u       /* private data we look at */
#define TAG_SHIFT 32
#define TAG_SEND 1ull
#define TAG_RECV 2ull
#define TAG_READ 3ull

struct vreply {
	uint32_t idx;      /* RECV buffer */
	uint32_t len;      /* byte_len */
	uint32_t imm;      /* raw imm_data, for writes */
	uint32_t by_write;
};

struct vchain {
	uint64_t cookie;   /* of its last read */
	uint32_t n;        /* 0: free */
};

/* Caller memory registered for reads into, a server's PULL_LAND writes
 * into and gather SENDs from (read_region). */
struct vregion {
	uint64_t id, used; /* used: last asked, by a per-connection clock */
	void *p;
	size_t len;
	struct ibv_mr *mr;
	int err;           /* its registration failed (errno): not retried */
};

struct verbs_conn {
	struct embkv_conn base;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	int qp_made, connected, efd, err;

	uint32_t window, max_request, max_reads, sq_depth, sq_used;
	uint32_t outstanding;
	uint32_t send_free;            /* bit i: send buffer i free */
	uint8_t slot_busy[EMBKV_VERBS_CLIENT_SLOTS];

	uint8_t *recv_mem, *arena, *send_mem;
	struct ibv_mr *recv_mr, *arena_mr, *send_mr;

	struct vreply fifo[EMBKV_VERBS_CLIENT_CREDITS];
	uint32_t fifo_head, fifo_n;

	uint8_t *rbuf;
	size_t rbuf_len;
	struct ibv_mr *rbuf_mr;
	struct ibv_send_wr *rwr;       /* max_reads work requests */
	struct ibv_sge *rsge;
	struct vchain chains[MAX_CHAINS];
	uint64_t done[MAX_CHAINS];
	uint32_t ndone;
	struct vregion regions[MAX_REGIONS];
	uint64_t region_clock;
};

static struct verbs_conn *vc_of(struct embkv_conn *c)
{
	return (struct verbs_conn *)c;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v)); /* little-endian hosts only (wire.c) */
	return v;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int vc_fail(struct verbs_conn *vc, int err)
{
	if (!vc->err)
		vc->err = err;
	return vc->err;
}

static int ms_left(uint64_t deadline)
{
	uint64_t now = embkv_now_ms();

	if (now >= deadline)
		return 0;
	return deadline - now > 60000u ? 60000 : (int)(deadline - now);
}

/* rdma_cm ------------------------------------------------------------------- */

static int cm_event_status(enum rdma_cm_event_type ev)
{
	switch (ev) {
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_CONNECT_ERROR:
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return EMBKV_EDISCONNECTED;
	default:
		return EMBKV_EPROTO;
	}
}

/*
 * Waits (deadline) for the next rdma_cm event, which must be want; copies
 * up to pcap bytes of its private data to pdata (zero-filled).
 */
static int cm_wait(struct verbs_conn *vc, enum rdma_cm_event_type want,
		   uint64_t deadline, uint8_t *pdata, size_t pcap,
		   size_t *plen)
{
	struct rdma_cm_event *ev;
	int rc;

	for (;;) {
		if (rdma_get_cm_event(vc->ec, &ev) == 0)
			break;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		rc = embkv_fd_wait(vc->ec->fd, POLLIN, deadline);
		if (rc)
			return rc;
	}
	rc = ev->event == want ? 0 : cm_event_status(ev->event);
	if (!rc && pdata) {
		size_t n = ev->param.conn.private_data_len;

		memset(pdata, 0, pcap);
		n = ev->param.conn.private_data ? (n < pcap ? n : pcap) : 0;
		memcpy(pdata, ev->param.conn.private_data, n);
		*plen = n;
	}
	rdma_ack_cm_event(ev);
	return rc;
}

/* Nonblocking: takes every pending rdma_cm event of an established
 * connection; a disconnect makes the connection fail. */
static int cm_check(struct verbs_conn *vc)
{
	struct rdma_cm_event *ev;

	while (rdma_get_cm_event(vc->ec, &ev) == 0) {
		enum rdma_cm_event_type t = ev->event;

		rdma_ack_cm_event(ev);
		if (t == RDMA_CM_EVENT_DISCONNECTED ||
		    t == RDMA_CM_EVENT_DEVICE_REMOVAL)
			return vc_fail(vc, EMBKV_EDISCONNECTED);
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		return vc_fail(vc, -errno);
	return 0;
}

/* Completions --------------------------------------------------------------- */

static int post_recv(struct verbs_conn *vc, uint32_t i)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)(vc->recv_mem +
				    (size_t)i * EMBKV_VERBS_CLIENT_RECV_SIZE),
		.length = EMBKV_VERBS_CLIENT_RECV_SIZE,
		.lkey = vc->recv_mr->lkey,
	};
	struct ibv_recv_wr wr = {
		.wr_id = TAG_RECV << TAG_SHIFT | i,
		.sg_list = &sge,
		.num_sge = 1,
	}, *bad;
	int rc = ibv_post_recv(vc->id->qp, &wr, &bad);

	return rc ? -rc : 0;
}

static int wc_status(const struct ibv_wc *wc)
{
	switch (wc->status) {
	case IBV_WC_WR_FLUSH_ERR:
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return EMBKV_EDISCONNECTED;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_PROT_ERR:
		return -EACCES;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_LOC_LEN_ERR:
		return -EINVAL;
	default:
		return -EIO;
	}
}

static int complete(struct verbs_conn *vc, const struct ibv_wc *wc)
{
	uint64_t tag = wc->wr_id >> TAG_SHIFT;
	uint32_t i = (uint32_t)wc->wr_id;
	struct vreply *r;

	if (wc->status != IBV_WC_SUCCESS)
		return wc_status(wc);
	switch (tag) {
	case TAG_SEND:
		if (i >= vc->window || (vc->send_free & (1u << i)))
			return EMBKV_EPROTO;
		vc->send_free |= 1u << i;
		vc->sq_used--;
		return 0;
	case TAG_READ:
		if (i >= MAX_CHAINS || !vc->chains[i].n)
			return EMBKV_EPROTO;
		vc->sq_used -= vc->chains[i].n;
		vc->chains[i].n = 0;
		vc->done[vc->ndone++] = vc->chains[i].cookie;
		return 0;
	case TAG_RECV:
		if (i >= EMBKV_VERBS_CLIENT_CREDITS || vc->fifo_n >= EMBKV_VERBS_CLIENT_CREDITS)
			return EMBKV_EPROTO;
		r = &vc->fifo[(vc->fifo_head + vc->fifo_n) % EMBKV_VERBS_CLIENT_CREDITS];
		r->idx = i;
		r->len = wc->byte_len;
		r->by_write = wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM;
		r->imm = r->by_write ? wc->imm_data : 0;
		if (!r->by_write && wc->opcode != IBV_WC_RECV)
			return EMBKV_EPROTO;
		vc->fifo_n++;
		return 0;
	default:
		return EMBKV_EPROTO;
	}
}

/* Polls the CQ dry: the number of completions, or the (sticky) error. */
static int poll_cq(struct verbs_conn *vc)
{
	struct ibv_wc wc[CQ_BATCH];
	int n, i, got = 0, rc;

	if (vc->err)
		return vc->err;
	for (;;) {
		n = ibv_poll_cq(vc->cq, CQ_BATCH, wc);
		if (n < 0)
			return vc_fail(vc, -EIO);
		for (i = 0; i < n; i++) {
			rc = complete(vc, &wc[i]);
			if (rc)
				return vc_fail(vc, rc);
		}
		got += n;
		if (n < CQ_BATCH)
			return got;
	}
}

/*
 * Called with nothing to do: quiets the channel, looks at rdma_cm events,
 * arms the CQ and polls it again. > 0: completions came in after all (go
 * on); 0: wait on poll_fd; < 0: the error.
 */
static int wait_prepare(struct verbs_conn *vc)
{
	struct ibv_cq *cq;
	void *ctx;
	int rc;

	while (ibv_get_cq_event(vc->cch, &cq, &ctx) == 0)
		ibv_ack_cq_events(cq, 1);
	rc = cm_check(vc);
	if (rc)
		return rc;
	if (ibv_req_notify_cq(vc->cq, 0))
		return vc_fail(vc, -EIO);
	return poll_cq(vc);
}

/* Setup and teardown --------------------------------------------------------- */

static void vc_destroy(struct verbs_conn *vc)
{
	if (vc->connected)
		rdma_disconnect(vc->id);
	if (vc->qp_made)
		rdma_destroy_qp(vc->id);
	if (vc->rbuf_mr)
		ibv_dereg_mr(vc->rbuf_mr);
	for (uint32_t i = 0; i < MAX_REGIONS; i++)
		if (vc->regions[i].mr) /* before the pd goes */
			ibv_dereg_mr(vc->regions[i].mr);
	if (vc->send_mr)
		ibv_dereg_mr(vc->send_mr);
	if (vc->arena_mr)
		ibv_dereg_mr(vc->arena_mr);
	if (vc->recv_mr)
		ibv_dereg_mr(vc->recv_mr);
	free(vc->rbuf);
	free(vc->send_mem);
	free(vc->arena);
	free(vc->recv_mem);
	free(vc->rwr);
	free(vc->rsge);
	if (vc->cq)
		ibv_destroy_cq(vc->cq);
	if (vc->cch)
		ibv_destroy_comp_channel(vc->cch);
	if (vc->pd)
		ibv_dealloc_pd(vc->pd);
	if (vc->id)
		rdma_destroy_id(vc->id);
	if (vc->ec)
		rdma_destroy_event_channel(vc->ec);
	if (vc->efd >= 0)
		close(vc->efd);
	free(vc);
}

static void *page_alloc(size_t len)
{
	void *p = NULL;

	return posix_memalign(&p, PAGE_ALIGN, len) ? NULL : p;
}

static struct ibv_mr *reg(struct verbs_conn *vc, void *p, size_t len,
			  int access)
{
	return p ? ibv_reg_mr(vc->pd, p, len, access) : NULL;
}

/* Resolves ep's host to its first address and runs rdma_cm's address and
 * route resolution on vc->id. */
static int resolve(struct verbs_conn *vc, const struct embkv_endpoint *ep,
		   uint64_t deadline)
{
	struct addrinfo hints, *res = NULL;
	char port[PORT_STR_MAX];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", (unsigned)ep->port);
	rc = getaddrinfo(ep->host, port, &hints, &res);
	if (rc)
		return rc == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
	rc = rdma_resolve_addr(vc->id, NULL, res->ai_addr, ms_left(deadline));
	freeaddrinfo(res);
	if (rc)
		return errno ? -errno : -EHOSTUNREACH;
	rc = cm_wait(vc, RDMA_CM_EVENT_ADDR_RESOLVED, deadline, NULL, 0, NULL);
	if (rc)
		return rc;
	if (rdma_resolve_route(vc->id, ms_left(deadline)))
		return -errno;
	return cm_wait(vc, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline, NULL, 0, NULL);
}

/* PD, CQ, QP, the RECV buffers (posted) and the reply arena. */
static int resources(struct verbs_conn *vc, uint32_t *rd_atom)
{
	struct ibv_device_attr da;
	struct ibv_qp_init_attr qa;
	uint32_t i;
	int rc;

	if (ibv_query_device(vc->id->verbs, &da))
		return -EIO;
	vc->sq_depth = EMBKV_VERBS_CLIENT_CREDITS + EMBKV_VERBS_MAX_READS + SQ_SLACK;
	if ((uint32_t)da.max_qp_wr < vc->sq_depth)
		vc->sq_depth = (uint32_t)da.max_qp_wr;
	if (vc->sq_depth < EMBKV_VERBS_CLIENT_CREDITS + SQ_SLACK + 1)
		return -ENODEV;
	vc->max_reads = vc->sq_depth - EMBKV_VERBS_CLIENT_CREDITS - SQ_SLACK;
	*rd_atom = (uint32_t)da.max_qp_init_rd_atom < RD_ATOM_MAX
			   ? (uint32_t)da.max_qp_init_rd_atom : RD_ATOM_MAX;
	vc->pd = ibv_alloc_pd(vc->id->verbs);
	if (!vc->pd)
		return -ENOMEM;
	vc->cch = ibv_create_comp_channel(vc->id->verbs);
	if (!vc->cch)
		return -ENOMEM;
	rc = set_nonblock(vc->cch->fd);
	if (rc)
		return rc;
	vc->cq = ibv_create_cq(vc->id->verbs,
			       (int)(vc->sq_depth + EMBKV_VERBS_CLIENT_CREDITS), NULL,
			       vc->cch, 0);
	if (!vc->cq)
		return -ENOMEM;
	memset(&qa, 0, sizeof(qa));
	qa.qp_type = IBV_QPT_RC;
	qa.send_cq = vc->cq;
	qa.recv_cq = vc->cq;
	qa.sq_sig_all = 0;
	qa.cap.max_send_wr = vc->sq_depth;
	qa.cap.max_recv_wr = EMBKV_VERBS_CLIENT_CREDITS;
	qa.cap.max_send_sge = 2; /* send_gather: frame and a region's tail */
	qa.cap.max_recv_sge = 1;
	if (rdma_create_qp(vc->id, vc->pd, &qa))
		return errno ? -errno : -ENOMEM;
	vc->qp_made = 1;

	vc->recv_mem = page_alloc((size_t)EMBKV_VERBS_CLIENT_CREDITS *
				  EMBKV_VERBS_CLIENT_RECV_SIZE);
	vc->recv_mr = reg(vc, vc->recv_mem, (size_t)EMBKV_VERBS_CLIENT_CREDITS *
			  EMBKV_VERBS_CLIENT_RECV_SIZE, IBV_ACCESS_LOCAL_WRITE);
	vc->arena = page_alloc((size_t)EMBKV_VERBS_CLIENT_SLOTS *
			       EMBKV_VERBS_CLIENT_SLOT_SIZE);
	vc->arena_mr = reg(vc, vc->arena, (size_t)EMBKV_VERBS_CLIENT_SLOTS *
			   EMBKV_VERBS_CLIENT_SLOT_SIZE,
			   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	vc->rwr = calloc(vc->max_reads, sizeof(*vc->rwr));
	vc->rsge = calloc(vc->max_reads, sizeof(*vc->rsge));
	if (!vc->recv_mr || !vc->arena_mr || !vc->rwr || !vc->rsge)
		return -ENOMEM;
	for (i = 0; i < EMBKV_VERBS_CLIENT_CREDITS; i++) {
		rc = post_recv(vc, i);
		if (rc)
			return rc;
	}
	return 0;
}

static int events_setup(struct verbs_conn *vc)
{
	struct epoll_event e = { .events = EPOLLIN };

	vc->efd = epoll_create1(EPOLL_CLOEXEC);
	if (vc->efd < 0)
		return -errno;
	e.data.fd = vc->cch->fd;
	if (epoll_ctl(vc->efd, EPOLL_CTL_ADD, vc->cch->fd, &e) < 0)
		return -errno;
	e.data.fd = vc->ec->fd;
	if (epoll_ctl(vc->efd, EPOLL_CTL_ADD, vc->ec->fd, &e) < 0)
		return -errno;
	return 0;
}

/* The accept's private data: the server's credits and RECV size. */
static int accept_check(struct verbs_conn *vc, const uint8_t *p, size_t len)
{
	struct embkv_verbs_accept a;
	int rc;

	rc = embkv_wire_verbs_accept_decode(p, len, &a);
	if (rc)
		return rc;
	if (a.recv_size < EMBKV_WIRE_HDR_SIZE + EMBKV_WIRE_MAX_PREAUTH_BODY)
		return EMBKV_EPROTO;
	vc->window = a.credits < EMBKV_VERBS_CLIENT_CREDITS
			     ? a.credits : EMBKV_VERBS_CLIENT_CREDITS;
	vc->max_request = a.recv_size < SEND_CAP ? a.recv_size : SEND_CAP;
	vc->max_request &= ~7u; /* keeps each send buffer 8-byte aligned */
	vc->send_free = vc->window >= 32 ? UINT32_MAX
					 : (1u << vc->window) - 1u;
	vc->send_mem = page_alloc((size_t)vc->window * vc->max_request);
	vc->send_mr = reg(vc, vc->send_mem,
			  (size_t)vc->window * vc->max_request, 0);
	return vc->send_mr ? 0 : -ENOMEM;
}

/* READs need an initiator depth: without one (the server granted no
 * responder resources) they would never be sent, so none are offered. */
static void reads_check(struct verbs_conn *vc)
{
	struct ibv_qp_init_attr ia;
	struct ibv_qp_attr qa;

	if (ibv_query_qp(vc->id->qp, &qa, IBV_QP_MAX_QP_RD_ATOMIC, &ia) ||
	    qa.max_rd_atomic == 0)
		vc->max_reads = 0;
}

static int vc_connect(const struct embkv_endpoint *ep, uint32_t timeout_ms,
		      struct embkv_conn **out)
{
	uint64_t deadline = embkv_now_ms() + timeout_ms;
	uint8_t req[EMBKV_VERBS_CONNECT_SIZE], rep[PDATA_MAX];
	struct embkv_verbs_connect mine;
	struct rdma_conn_param cp;
	size_t replen = 0;
	struct verbs_conn *vc;
	uint32_t rd_atom;
	int rc;

	if (!ep || !out)
		return -EINVAL;
	vc = calloc(1, sizeof(*vc));
	if (!vc)
		return -ENOMEM;
	vc->base.ops = &embkv_verbs_ops;
	vc->efd = -1;
	vc->ec = rdma_create_event_channel();
	if (!vc->ec) {
		rc = errno == ENODEV || errno == ENOENT ? -EPROTONOSUPPORT
							: -errno;
		goto destroy;
	}
	rc = set_nonblock(vc->ec->fd);
	if (rc)
		goto destroy;
	if (rdma_create_id(vc->ec, &vc->id, vc, RDMA_PS_TCP)) {
		rc = -errno;
		vc->id = NULL;
		goto destroy;
	}
	rc = resolve(vc, ep, deadline);
	if (!rc)
		rc = resources(vc, &rd_atom);
	if (rc)
		goto destroy;
	mine.credits = EMBKV_VERBS_CLIENT_CREDITS;
	mine.recv_size = EMBKV_VERBS_CLIENT_RECV_SIZE;
	mine.reply_slots = EMBKV_VERBS_CLIENT_SLOTS;
	mine.reply_addr = (uintptr_t)vc->arena;
	mine.reply_rkey = vc->arena_mr->rkey;
	mine.slot_size = EMBKV_VERBS_CLIENT_SLOT_SIZE;

	rc = embkv_wire_verbs_connect_encode(&mine, req, sizeof(req));
	if (rc)
		goto destroy;
	memset(&cp, 0, sizeof(cp));
	cp.private_data = req;
	cp.private_data_len = sizeof(req);
	/* The server never reads us, but a listener that passes the
	 * request's two values to its accept crossed over would leave our
	 * initiator depth at 0: offer the same on both sides. */
	cp.initiator_depth = (uint8_t)rd_atom;
	cp.responder_resources = (uint8_t)rd_atom;
	cp.retry_count = CM_RETRY_COUNT;
	cp.rnr_retry_count = CM_RNR_RETRY;
	if (rdma_connect(vc->id, &cp)) {
		rc = -errno;
		goto destroy;
	}
	rc = cm_wait(vc, RDMA_CM_EVENT_ESTABLISHED, deadline, rep, sizeof(rep),
		     &replen);
	if (rc)
		goto destroy;
	vc->connected = 1;
	rc = accept_check(vc, rep, replen);
	if (!rc)
		reads_check(vc);
	if (!rc)
		rc = events_setup(vc);
	if (rc)
		goto destroy;
	*out = &vc->base;
	return 0;

destroy:
	vc_destroy(vc);
	return rc;
}

static void vc_close(struct embkv_conn *c)
{
	if (c)
		vc_destroy(vc_of(c));
}

/* RPC ------------------------------------------------------------------------ */

/* One request SEND: frame (copied into a send buffer) and, when
 * tail_len, a second gather entry from a caller's region. */
static int vc_send(struct verbs_conn *vc, const uint8_t *frame, size_t len,
		   const struct vregion *g, const void *tail, size_t tail_len,
		   size_t *off)
{
	struct ibv_send_wr wr, *bad;
	struct ibv_sge sge[2];
	uint32_t slot, i;
	uint8_t *buf;
	int rc;

	if (vc->err)
		return vc->err;
	if (*off >= len)
		return 0;
	if (len < EMBKV_WIRE_HDR_SIZE || *off)
		return -EINVAL;
	if (len + tail_len > vc->max_request)
		return EMBKV_ELIMIT;
	slot = (uint32_t)(get64(frame + EMBKV_WIRE_HDR_REQ_ID) %
			  EMBKV_VERBS_CLIENT_SLOTS);
	while (vc->outstanding >= vc->window || vc->slot_busy[slot] ||
	       !vc->send_free || vc->sq_used >= vc->sq_depth) {
		rc = poll_cq(vc);
		if (rc > 0)
			continue;
		if (rc < 0)
			return rc;
		rc = wait_prepare(vc);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -EAGAIN;
	}
	i = (uint32_t)__builtin_ctz(vc->send_free);
	buf = vc->send_mem + (size_t)i * vc->max_request;
	memcpy(buf, frame, len);
	sge[0].addr = (uintptr_t)buf;
	sge[0].length = (uint32_t)len;
	sge[0].lkey = vc->send_mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = TAG_SEND << TAG_SHIFT | i;
	wr.sg_list = sge;
	wr.num_sge = 1;
	if (tail_len) {
		sge[1].addr = (uintptr_t)tail;
		sge[1].length = (uint32_t)tail_len;
		sge[1].lkey = g->mr->lkey;
		wr.num_sge = 2;
	}
	wr.opcode = IBV_WR_SEND;
	wr.send_flags = IBV_SEND_SIGNALED;
	rc = ibv_post_send(vc->id->qp, &wr, &bad);
	if (rc)
		return vc_fail(vc, -rc);
	vc->send_free &= ~(1u << i);
	vc->sq_used++;
	vc->outstanding++;
	vc->slot_busy[slot] = 1;
	*off = len;
	return 0;
}

static int vc_send_some(struct embkv_conn *c, const uint8_t *frame,
			size_t len, size_t *off)
{
	return vc_send(vc_of(c), frame, len, NULL, NULL, 0, off);
}

static int vc_send_gather(struct embkv_conn *c, const uint8_t *head,
			  size_t head_len, const void *region,
			  const void *tail, size_t tail_len, size_t *off)
{
	struct verbs_conn *vc = vc_of(c);
	const struct vregion *g = region;

	/* this connection's region, and the tail inside it */
	if (g < vc->regions || g >= vc->regions + MAX_REGIONS ||
	    (uintptr_t)((const char *)g - (const char *)vc->regions) %
		    sizeof(*g) ||
	    !g->mr || !tail_len || (uintptr_t)tail < (uintptr_t)g->p ||
	    (uintptr_t)tail + tail_len > (uintptr_t)g->p + g->len)
		return -EINVAL;
	return vc_send(vc, head, head_len, g, tail, tail_len, off);
}

/* The reply slot of a write: imm_data as the server put it (network
 * order, or raw); UINT32_MAX when neither names a slot. */
static uint32_t imm_slot(uint32_t imm)
{
	if (ntohl(imm) < EMBKV_VERBS_CLIENT_SLOTS)
		return ntohl(imm);
	return imm < EMBKV_VERBS_CLIENT_SLOTS ? imm : UINT32_MAX;
}

/* Copies reply r into rx (header checked first) and gives back its RECV
 * and reply slot. */
static int deliver(struct verbs_conn *vc, const struct vreply *r,
		   struct embkv_rx *rx)
{
	const uint8_t *src;
	uint32_t slot, rslot;
	int rc;

	if (r->by_write) {
		slot = imm_slot(r->imm);
		if (slot == UINT32_MAX || r->len > EMBKV_VERBS_CLIENT_SLOT_SIZE)
			return EMBKV_EPROTO;
		src = vc->arena + (size_t)slot * EMBKV_VERBS_CLIENT_SLOT_SIZE;
	} else {
		slot = UINT32_MAX;
		if (r->len > EMBKV_VERBS_CLIENT_RECV_SIZE)
			return EMBKV_EPROTO;
		src = vc->recv_mem + (size_t)r->idx * EMBKV_VERBS_CLIENT_RECV_SIZE;
	}
	if (r->len < EMBKV_WIRE_HDR_SIZE)
		return EMBKV_EPROTO;
	if (rx->buf.len || rx->have_hdr)
		return -EINVAL;
	rc = embkv_buf_reserve(&rx->buf, EMBKV_WIRE_HDR_SIZE);
	if (rc)
		return rc;
	memcpy(rx->buf.data, src, EMBKV_WIRE_HDR_SIZE);
	rx->buf.len = EMBKV_WIRE_HDR_SIZE;
	rc = embkv_rx_header_done(rx);
	if (rc)
		return rc;
	if (EMBKV_WIRE_HDR_SIZE + (size_t)rx->hdr.body_len != r->len)
		return EMBKV_EPROTO;
	rslot = (uint32_t)(rx->hdr.request_id % EMBKV_VERBS_CLIENT_SLOTS);
	if (!vc->slot_busy[rslot] || (r->by_write && rslot != slot))
		return EMBKV_EPROTO; /* a reply to nothing outstanding */
	memcpy(rx->buf.data + EMBKV_WIRE_HDR_SIZE, src + EMBKV_WIRE_HDR_SIZE,
	       rx->hdr.body_len);
	rx->buf.len = r->len;
	vc->slot_busy[rslot] = 0;
	vc->outstanding--;
	return post_recv(vc, r->idx);
}

static int vc_recv_some(struct embkv_conn *c, struct embkv_rx *rx)
{
	struct verbs_conn *vc = vc_of(c);
	int rc;

	for (;;) {
		if (vc->err)
			return vc->err;
		if (vc->fifo_n) {
			struct vreply r = vc->fifo[vc->fifo_head];

			vc->fifo_head = (vc->fifo_head + 1) % EMBKV_VERBS_CLIENT_CREDITS;
			vc->fifo_n--;
			rc = deliver(vc, &r, rx);
			return rc ? vc_fail(vc, rc) : 0;
		}
		rc = poll_cq(vc);
		if (rc < 0)
			return rc;
		if (rc > 0)
			continue;
		rc = wait_prepare(vc);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -EAGAIN;
	}
}

static int vc_poll_fd(const struct embkv_conn *c)
{
	return ((const struct verbs_conn *)c)->efd;
}

static void vc_limits(const struct embkv_conn *c, struct embkv_conn_limits *out)
{
	const struct verbs_conn *vc = (const struct verbs_conn *)c;

	out->max_request = vc->max_request;
	out->max_reply = EMBKV_VERBS_CLIENT_SLOT_SIZE;
	out->max_reads = vc->max_reads;
}

static int vc_idle_check(struct embkv_conn *c)
{
	struct verbs_conn *vc = vc_of(c);
	struct ibv_cq *cq;
	void *ctx;
	int rc;

	while (ibv_get_cq_event(vc->cch, &cq, &ctx) == 0)
		ibv_ack_cq_events(cq, 1);
	rc = cm_check(vc);
	if (!rc)
		rc = poll_cq(vc) < 0 ? vc->err : 0;
	if (!rc && (vc->fifo_n || vc->outstanding || vc->ndone))
		rc = vc_fail(vc, EMBKV_EPROTO); /* something unasked for */
	return rc;
}

/* One-sided reads ------------------------------------------------------------ */

static void *vc_read_buf(struct embkv_conn *c, size_t len)
{
	struct verbs_conn *vc = vc_of(c);
	uint8_t *p;
	struct ibv_mr *mr;

	if (len <= vc->rbuf_len)
		return vc->rbuf;
	for (uint32_t i = 0; i < MAX_CHAINS; i++)
		if (vc->chains[i].n)
			return NULL; /* reads in flight into the old one */
	len = (len + PAGE_ALIGN - 1) & ~(size_t)(PAGE_ALIGN - 1);
	p = page_alloc(len);
	mr = reg(vc, p, len, IBV_ACCESS_LOCAL_WRITE);
	if (!mr) {
		free(p);
		return NULL;
	}
	if (vc->rbuf_mr)
		ibv_dereg_mr(vc->rbuf_mr);
	free(vc->rbuf);
	vc->rbuf = p;
	vc->rbuf_mr = mr;
	vc->rbuf_len = len;
	return p;
}

static int vc_post_reads(struct embkv_conn *c,
			 const struct embkv_remote_read *reads, uint32_t n)
{
	struct verbs_conn *vc = vc_of(c);
	struct ibv_send_wr *bad;
	uint32_t k, slot = MAX_CHAINS, busy;
	int rc;

	if (vc->err)
		return vc->err;
	if (n == 0)
		return 0;
	if (!vc->max_reads)
		return -EOPNOTSUPP;
	if (n > vc->max_reads)
		return EMBKV_ELIMIT;
	for (k = 0; k < n; k++) {
		uintptr_t p = (uintptr_t)reads[k].local, base;
		size_t blen;

		if (reads[k].region) {
			const struct vregion *g = reads[k].region;

			if (g < vc->regions || g >= vc->regions + MAX_REGIONS ||
			    (uintptr_t)((const char *)g -
					(const char *)vc->regions) %
				    sizeof(*g) ||
			    !g->mr)
				return -EINVAL;
			base = (uintptr_t)g->p;
			blen = g->len;
		} else {
			if (!vc->rbuf)
				return -EINVAL;
			base = (uintptr_t)vc->rbuf;
			blen = vc->rbuf_len;
		}
		if (p < base || !reads[k].len || reads[k].len > blen ||
		    p - base > blen - reads[k].len)
			return -EINVAL;
	}
	if (vc->sq_used + n > vc->sq_depth) {
		rc = poll_cq(vc);
		if (rc < 0)
			return rc;
		if (vc->sq_used + n > vc->sq_depth)
			return -EAGAIN;
	}
	/* a chain holds its place until its cookie is polled: done[] has
	 * room for MAX_CHAINS cookies, in flight and unpolled together */
	for (k = 0, busy = vc->ndone; k < MAX_CHAINS; k++) {
		busy += vc->chains[k].n != 0;
		if (!vc->chains[k].n && slot == MAX_CHAINS)
			slot = k;
	}
	if (slot == MAX_CHAINS || busy >= MAX_CHAINS)
		return -EAGAIN;
	for (k = 0; k < n; k++) {
		struct ibv_send_wr *wr = &vc->rwr[k];
		struct ibv_sge *sge = &vc->rsge[k];

		sge->addr = (uintptr_t)reads[k].local;
		sge->length = reads[k].len;
		sge->lkey = reads[k].region
			? ((const struct vregion *)reads[k].region)->mr->lkey
			: vc->rbuf_mr->lkey;
		memset(wr, 0, sizeof(*wr));
		wr->wr_id = TAG_READ << TAG_SHIFT | slot;
		wr->sg_list = sge;
		wr->num_sge = 1;
		wr->opcode = IBV_WR_RDMA_READ;
		wr->send_flags = k + 1 == n ? IBV_SEND_SIGNALED : 0;
		wr->wr.rdma.remote_addr = reads[k].remote_addr;
		wr->wr.rdma.rkey = reads[k].rkey;
		wr->next = k + 1 == n ? NULL : &vc->rwr[k + 1];
	}
	rc = ibv_post_send(vc->id->qp, vc->rwr, &bad);
	if (rc) {
		if (bad != vc->rwr) /* part of the chain went: untrackable */
			return vc_fail(vc, -rc);
		return -rc == -ENOMEM ? -EAGAIN : -rc;
	}
	vc->chains[slot].cookie = reads[n - 1].cookie;
	vc->chains[slot].n = n;
	vc->sq_used += n;
	return 0;
}

static int vc_poll_reads(struct embkv_conn *c, uint64_t *cookies,
			 uint32_t max)
{
	struct verbs_conn *vc = vc_of(c);
	uint32_t k;
	int rc;

	rc = poll_cq(vc);
	if (rc < 0)
		return rc;
	if (!vc->ndone) {
		rc = wait_prepare(vc);
		if (rc < 0)
			return rc;
	}
	k = vc->ndone < max ? vc->ndone : max;
	memcpy(cookies, vc->done, (size_t)k * sizeof(*cookies));
	memmove(vc->done, vc->done + k, (size_t)(vc->ndone - k) *
		sizeof(*vc->done));
	vc->ndone -= k;
	return (int)k;
}

static const void *vc_read_region(struct embkv_conn *c, uint64_t id, void *p,
				  size_t len, embkv_region_reg_fn regfn,
				  void *arg)
{
	struct verbs_conn *vc = vc_of(c);
	struct vregion *g = NULL, *lru = NULL;
	struct ibv_mr *mr;
	uint32_t i;

	if (!p || !len || !regfn) {
		errno = EINVAL;
		return NULL;
	}
	for (i = 0; i < MAX_REGIONS; i++) {
		struct vregion *e = &vc->regions[i];
		int taken = e->mr || e->err;

		if (taken && e->id == id) {
			g = e;
			break;
		}
		if (!lru || !taken ||
		    ((lru->mr || lru->err) && e->used < lru->used))
			lru = e;
	}
	if (g && g->p == p && g->len == len) {
		g->used = ++vc->region_clock;
		if (g->err) { /* failed before: the memory cannot be registered */
			errno = g->err;
			return NULL;
		}
		return g;
	}
	if (!g)
		g = lru;
	if (g->mr) {
		/* not while reads may still land in it, a SEND gather from
		 * it (completions not yet polled: a lost ACK makes the NIC
		 * send again) or a PULL_LAND's server write into it */
		if (vc->sq_used)
			(void)poll_cq(vc);
		if (vc->sq_used || vc->outstanding) {
			errno = EBUSY;
			return NULL;
		}
		for (i = 0; i < MAX_CHAINS; i++)
			if (vc->chains[i].n) {
				errno = EBUSY;
				return NULL;
			}
		ibv_dereg_mr(g->mr);
		g->mr = NULL;
	}
	g->id = id;
	g->p = p;
	g->len = len;
	g->used = ++vc->region_clock;
	g->err = 0;
	errno = 0;
	mr = regfn(vc->pd, p, len,
		   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, arg);
	if (!mr) {
		g->err = errno ? errno : EIO;
		errno = g->err;
		return NULL;
	}
	g->mr = mr;
	return g;
}

static uint32_t vc_region_rkey(struct embkv_conn *c, const void *region)
{
	(void)c;
	return ((const struct vregion *)region)->mr->rkey;
}

const struct embkv_transport_ops embkv_verbs_ops = {
	.scheme = "rdma",
	.connect = vc_connect,
	.close = vc_close,
	.send_some = vc_send_some,
	.recv_some = vc_recv_some,
	.poll_fd = vc_poll_fd,
	.idle_check = vc_idle_check,
	.limits = vc_limits,
	.read_buf = vc_read_buf,
	.post_reads = vc_post_reads,
	.poll_reads = vc_poll_reads,
	.read_region = vc_read_region,
	.region_rkey = vc_region_rkey,
	.send_gather = vc_send_gather,
};
