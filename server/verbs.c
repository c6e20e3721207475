/*
 * embkvd's RDMA verbs transport: rdma_cm listener, RC queue pairs, frames
 * over SEND/RECV, large replies by RDMA WRITE WITH IMM, table regions and
 * TABLE_REGIONS (net/RDMA.md).
 *
 * What: one rdma_cm listener bound to an address of one RDMA device, whose
 * protection domain every connection and every table region shares. A
 * connection is a struct embkvd_conn with a struct embkvd_vconn attached: its
 * own CQ and completion channel (the channel's fd sits in the I/O thread's
 * epoll like a socket), an RC QP, EMBKV_VERBS_WINDOW pre-posted RECV
 * buffers for requests and a pool of send entries for replies. Frames go
 * through exactly the TCP pipeline (embkvd_conn_admit, embkvd_svc_frame,
 * owner threads, embkvd_conn_reply), only their transport differs.
 *
 * Why I/O thread 0 serves every verbs connection: all rdma_cm events of
 * the listener's children arrive on the listener's one event channel, so
 * handling them on the thread that owns the connections keeps a
 * connection single-threaded without migrating cm_ids. Verbs I/O is cheap
 * (a post per frame); the work runs on the owner threads.
 *
 * Invariants:
 * - Nothing is accepted before the private data passed every check
 *   (embkv_wire_verbs_connect_decode), the device is the listener's, the
 *   connection limits hold and every resource exists; otherwise
 *   rdma_reject. A connection not ESTABLISHED within SETUP_TIMEOUT_NS is
 *   closed. Every cm event is acked as soon as it was copied, so
 *   rdma_destroy_id never waits on us.
 * - Flow control: the client keeps at most `window` requests outstanding;
 *   a request that makes more is a protocol violation and closes the
 *   connection (its reply would find no RECV). A request's RECV is
 *   reposted as soon as its bytes were copied out.
 * - A reply up to the client's recv_size is a SEND, a larger one (up to
 *   slot_size) an RDMA WRITE WITH IMM into slot request_id % reply_slots
 *   with imm_data = htobe32(slot); anything larger is replaced by ERROR
 *   EMBKV_ELIMIT. Small replies are copied into a registered send slot,
 *   large ones registered in place until their completion.
 * - Table memory is registered with LOCAL_WRITE | REMOTE_READ only, never
 *   remote write or atomics, and deregistered before it is unmapped; its
 *   rkeys go out only in TABLE_REGIONS replies, which need an
 *   authenticated verbs connection (io.c's admission refuses everything
 *   but HELLO and AUTH before).
 * - Closing frees the QP, CQ, channel, buffers and cm_id at once; the
 *   connection count drops exactly once, in embkvd_conn_close().
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include "server/verbs.h"

#define NS_PER_MS 1000000ull
#define SETUP_TIMEOUT_NS (5000ull * NS_PER_MS) /* request -> ESTABLISHED */
#define SEND_SLOT_MAX (64u << 10)   /* bytes of a copied reply, at most */
#define SENDS_PER_CREDIT 2u         /* send entries per window slot */
#define CQ_BATCH 32
#define LISTEN_BACKLOG 128
#define RNR_RETRY 6                 /* bounded: 7 would retry forever */
#define PRIV_MAX 64u                /* bytes of private data kept */
#define SEND_TAG (1ull << 32)       /* wr_id: a send entry, else a RECV */
#define NO_SLOT UINT32_MAX
#define ADDR_STR 64
#define ERRMSG_BYTES (EMBKV_WIRE_ERRMSG_MAX + 1)

struct embkvd_verbs {
	struct embkvd *srv;
	struct rdma_event_channel *ch;
	struct rdma_cm_id *listen_id;
	struct ibv_context *ctx;        /* the listener's device */
	struct ibv_pd *pd;              /* shared by all QPs and regions */
	struct ibv_device_attr dev;
	struct embkvd_io *io;           /* I/O thread 0 */
};

/* A table's registrations: per partition, only those the server holds
 * (NULL where a partition is not loaded or has no rows to read). */
struct embkvd_regions {
	uint32_t nparts;
	struct ibv_mr **index_mr, **arena_mr; /* nparts each */
	uint64_t bytes;                       /* registered (pinned) bytes */
};

enum vconn_state {
	VC_SETUP,                       /* accepted, not yet ESTABLISHED */
	VC_READY,
};

struct vsend {
	uint8_t *slot;                  /* registered copy buffer */
	struct embkvd_obuf *ob;         /* large reply, registered in place */
	struct ibv_mr *mr;
	uint32_t next_free;
};

struct embkvd_vconn {
	struct embkvd_verbs *v;
	struct rdma_cm_id *id;
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	bool has_qp, epoll;
	enum vconn_state state;
	uint64_t deadline_ns;
	struct sockaddr_storage peer;
	struct embkv_verbs_connect cli; /* the client's private data */
	uint32_t window;                /* min(client, server credits) */
	uint32_t outstanding;           /* requests whose reply is not posted */
	uint8_t *rbuf;                  /* nrecv x EMBKV_VERBS_RECV_SIZE */
	struct ibv_mr *rmr;
	uint32_t nrecv;
	struct vsend *sends;
	uint8_t *sbuf;                  /* nsend x slot_bytes */
	struct ibv_mr *smr;
	uint32_t nsend, slot_bytes, free_head, sends_inflight;
};

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
	const void *a = sa->sa_family == AF_INET6 ?
		(const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr :
		(const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if (!inet_ntop(sa->sa_family, a, buf, (socklen_t)cap))
		snprintf(buf, cap, "?");
}

static bool same_host(const struct sockaddr_storage *a,
		      const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr,
			       sizeof(struct in6_addr));
	return false;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK))
		return -errno;
	return 0;
}

/* Listener ------------------------------------------------------------------- */

int embkvd_verbs_open(struct embkvd *s)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE,
	};
	struct addrinfo *res = NULL;
	char port[sizeof("65535")];
	struct embkvd_verbs *v;
	int err;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->srv = s;
	snprintf(port, sizeof(port), "%u", s->attr.rdma_port);
	err = getaddrinfo(s->attr.rdma_host, port, &hints, &res);
	if (err) {
		embkvd_log("cannot resolve %s: %s", s->attr.rdma_host,
			   gai_strerror(err));
		err = -EINVAL;
		goto free_v;
	}
	v->ch = rdma_create_event_channel();
	if (!v->ch) {
		err = -errno;
		goto free_res;
	}
	err = set_nonblock(v->ch->fd);
	if (err)
		goto destroy_ch;
	if (rdma_create_id(v->ch, &v->listen_id, NULL, RDMA_PS_TCP)) {
		err = -errno;
		goto destroy_ch;
	}
	if (rdma_bind_addr(v->listen_id, res->ai_addr)) {
		err = -errno;
		goto destroy_id;
	}
	if (!v->listen_id->verbs) {
		embkvd_log("%s is not the address of an RDMA device",
			   s->attr.rdma_host);
		err = -ENODEV;
		goto destroy_id;
	}
	v->ctx = v->listen_id->verbs;
	if (ibv_query_device(v->ctx, &v->dev)) {
		err = -EIO;
		goto destroy_id;
	}
	v->pd = ibv_alloc_pd(v->ctx);
	if (!v->pd) {
		err = -ENOMEM;
		goto destroy_id;
	}
	if (rdma_listen(v->listen_id, LISTEN_BACKLOG)) {
		err = -errno;
		goto dealloc_pd;
	}
	s->rdma_port = ntohs(rdma_get_src_port(v->listen_id));
	s->verbs = v;
	freeaddrinfo(res);
	return 0;

dealloc_pd:
	ibv_dealloc_pd(v->pd);
destroy_id:
	rdma_destroy_id(v->listen_id);
destroy_ch:
	rdma_destroy_event_channel(v->ch);
free_res:
	freeaddrinfo(res);
free_v:
	free(v);
	return err;
}

void embkvd_verbs_close(struct embkvd_verbs *v)
{
	if (!v)
		return;
	rdma_destroy_id(v->listen_id);
	rdma_destroy_event_channel(v->ch);
	ibv_dealloc_pd(v->pd);
	free(v);
}

int embkvd_verbs_attach(struct embkvd *s, struct embkvd_io *io, int epfd,
			struct epoll_event *ev)
{
	struct embkvd_verbs *v = s->verbs;

	v->io = io;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, v->ch->fd, ev))
		return -errno;
	return 0;
}

/* Regions ---------------------------------------------------------------------- */

static void regions_free(struct embkvd_regions *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < r->nparts; i++) {
		if (r->arena_mr[i])
			ibv_dereg_mr(r->arena_mr[i]);
		if (r->index_mr[i])
			ibv_dereg_mr(r->index_mr[i]);
	}
	free(r->index_mr);
	free(r->arena_mr);
	free(r);
}

static struct ibv_mr *reg_read_only(struct embkvd_verbs *v, void *addr,
				    size_t len, int *err)
{
	/* Remote READ only: never IBV_ACCESS_REMOTE_WRITE or _ATOMIC. */
	const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ;
	struct ibv_mr *mr = ibv_reg_mr(v->pd, addr, len, access);

	if (!mr)
		*err = errno ? -errno : -ENOMEM;
	return mr;
}

/* The built hook: registers e's table's loaded partitions with v. */
static int regions_built(void *v, struct embkv_catalog_entry *e)
{
	const struct embkv_table *t = e->table;
	struct embkvd_regions *r;
	int err = 0;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->nparts = t->nparts;
	r->index_mr = calloc(t->nparts, sizeof(*r->index_mr));
	r->arena_mr = calloc(t->nparts, sizeof(*r->arena_mr));
	if (!r->index_mr || !r->arena_mr) {
		err = -ENOMEM;
		goto free_r;
	}
	for (uint32_t i = 0; i < t->nparts; i++) {
		const struct embkv_part *p = &t->parts[i];

		if (!p->loaded || !p->arena)
			continue;
		r->index_mr[i] = reg_read_only(v, p->mem[EMBKV_MEM_INDEX],
					       p->mem_bytes[EMBKV_MEM_INDEX],
					       &err);
		if (!r->index_mr[i])
			goto free_r;
		r->arena_mr[i] = reg_read_only(v, p->arena,
					       p->mem_bytes[EMBKV_MEM_ARENA],
					       &err);
		if (!r->arena_mr[i])
			goto free_r;
		r->bytes += p->mem_bytes[EMBKV_MEM_INDEX] +
			    p->mem_bytes[EMBKV_MEM_ARENA];
	}
	e->hook_data = r;
	return 0;

free_r:
	embkvd_log("cannot register table %s for RDMA: %s", t->attr.name,
		   strerror(-err));
	regions_free(r);
	return err;
}

/* The freed hook: deregisters, before the table's memory goes. */
static void regions_freed(void *v, struct embkv_catalog_entry *e)
{
	(void)v;
	regions_free(e->hook_data);
	e->hook_data = NULL;
}

void embkvd_regions_hooks(struct embkvd_verbs *v,
			  struct embkv_catalog_hooks *hooks)
{
	memset(hooks, 0, sizeof(*hooks));
	if (!v)
		return;
	hooks->built = regions_built;
	hooks->freed = regions_freed;
	hooks->ctx = v;
}

uint64_t embkvd_regions_bytes(const struct embkv_catalog_entry *e)
{
	const struct embkvd_regions *r = e->hook_data;

	return r ? r->bytes : 0;
}

void embkvd_verbs_table_regions(struct embkvd_conn *c, uint64_t req_id,
				uint32_t table_id, uint64_t uid)
{
	struct embkv_wire_table_regions m = {
		.table_id = table_id,
		.uid = uid,
	};
	struct embkv_wire_region_part *parts = NULL;
	const struct embkvd_regions *rg;
	struct embkv_catalog_entry *ent;
	const struct embkv_table *t;
	uint8_t *body;
	size_t len;
	uint32_t n = 0;
	int rc;

	ent = embkvd_svc_table_get(c, req_id, table_id, uid);
	if (!ent)
		return;
	t = ent->table;
	rg = ent->hook_data; /* regions_built's */
	if (!rg) {
		embkvd_conn_error(c, req_id, EMBKV_ESERVER, false,
				  "table %u is not registered for RDMA",
				  table_id);
		goto put;
	}
	parts = calloc(t->nparts, sizeof(*parts));
	if (!parts) {
		embkvd_conn_error(c, req_id, -ENOMEM, false,
				  "no memory for %u regions", t->nparts);
		goto put;
	}
	for (uint32_t i = 0; i < t->nparts; i++) {
		const struct embkv_part *p = &t->parts[i];

		/* Only serving partitions: an unloaded one has no rows to
		 * read, and a reader must take the RPC path (EMBKV_EUNAVAIL). */
		if (!rg->arena_mr[i] ||
		    embkv_part_state(p) != EMBKV_PART_SERVING)
			continue;
		parts[n].part = i;
		parts[n].index_rkey = rg->index_mr[i]->rkey;
		parts[n].arena_rkey = rg->arena_mr[i]->rkey;
		parts[n].index_addr = (uint64_t)(uintptr_t)p->index.buckets;
		parts[n].nbuckets = p->index.nbuckets;
		parts[n].arena_addr = (uint64_t)(uintptr_t)p->arena;
		parts[n].capacity = p->capacity;
		n++;
	}
	m.count = n;
	m.stride = (uint32_t)t->stride;
	m.parts = parts;
	rc = embkv_wire_table_regions_size(&m, &len);
	if (rc) {
		embkvd_conn_error(c, req_id, EMBKV_ESERVER, false,
				  "cannot encode the regions of table %u",
				  table_id);
		goto free_parts;
	}
	rc = embkvd_conn_reply(c, req_id, EMBKV_WIRE_OP_TABLE_REGIONS |
				      EMBKV_WIRE_OP_REPLY, (uint32_t)len, &body);
	if (!rc)
		embkv_wire_table_regions_encode(&m, body, len);
	else if (rc == -ENOMEM)
		embkvd_conn_error(c, req_id, rc, false,
				  "no memory for a reply");
free_parts:
	free(parts);
put:
	embkv_catalog_entry_put(ent);
}

/* Connections: resources ---------------------------------------------------------- */

static int post_recv(struct embkvd_vconn *vc, uint32_t i)
{
	struct ibv_sge sge = {
		.addr = (uint64_t)(uintptr_t)(vc->rbuf +
					      (size_t)i * EMBKV_VERBS_RECV_SIZE),
		.length = EMBKV_VERBS_RECV_SIZE,
		.lkey = vc->rmr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *bad;

	return -ibv_post_recv(vc->id->qp, &wr, &bad);
}

static void vconn_free(struct embkvd_vconn *vc)
{
	for (uint32_t i = 0; vc->sends && i < vc->nsend; i++) {
		if (vc->sends[i].mr)
			ibv_dereg_mr(vc->sends[i].mr);
		embkvd_obuf_free(vc->sends[i].ob);
	}
	if (vc->has_qp)
		rdma_destroy_qp(vc->id);
	if (vc->cq)
		ibv_destroy_cq(vc->cq);
	if (vc->cch)
		ibv_destroy_comp_channel(vc->cch);
	if (vc->smr)
		ibv_dereg_mr(vc->smr);
	if (vc->rmr)
		ibv_dereg_mr(vc->rmr);
	free(vc->sbuf);
	free(vc->rbuf);
	free(vc->sends);
	rdma_destroy_id(vc->id);
	free(vc);
}

/* Everything a connection needs, before rdma_accept. */
static int vconn_setup(struct embkvd_vconn *vc)
{
	struct embkvd_verbs *v = vc->v;
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
	};
	size_t rbytes, sbytes;
	int err;

	vc->window = min_u32(vc->cli.credits, EMBKV_VERBS_WINDOW);
	vc->nrecv = EMBKV_VERBS_WINDOW;
	vc->nsend = vc->window * SENDS_PER_CREDIT;
	vc->slot_bytes = min_u32(vc->cli.recv_size, SEND_SLOT_MAX);
	vc->cch = ibv_create_comp_channel(v->ctx);
	if (!vc->cch)
		return -ENOMEM;
	err = set_nonblock(vc->cch->fd);
	if (err)
		return err;
	vc->cq = ibv_create_cq(v->ctx, (int)(vc->nrecv + vc->nsend), NULL,
			       vc->cch, 0);
	if (!vc->cq)
		return -ENOMEM;
	if (ibv_req_notify_cq(vc->cq, 0))
		return -EIO;
	qa.send_cq = qa.recv_cq = vc->cq;
	qa.cap.max_send_wr = vc->nsend;
	qa.cap.max_recv_wr = vc->nrecv;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	if (rdma_create_qp(vc->id, v->pd, &qa))
		return -errno;
	vc->has_qp = true;
	rbytes = (size_t)vc->nrecv * EMBKV_VERBS_RECV_SIZE;
	sbytes = (size_t)vc->nsend * vc->slot_bytes;
	vc->rbuf = aligned_alloc(4096, rbytes);
	vc->sbuf = aligned_alloc(4096, sbytes);
	vc->sends = calloc(vc->nsend, sizeof(*vc->sends));
	if (!vc->rbuf || !vc->sbuf || !vc->sends)
		return -ENOMEM;
	vc->rmr = ibv_reg_mr(v->pd, vc->rbuf, rbytes, IBV_ACCESS_LOCAL_WRITE);
	vc->smr = ibv_reg_mr(v->pd, vc->sbuf, sbytes, 0);
	if (!vc->rmr || !vc->smr)
		return -ENOMEM;
	for (uint32_t i = 0; i < vc->nsend; i++) {
		vc->sends[i].slot = vc->sbuf + (size_t)i * vc->slot_bytes;
		vc->sends[i].next_free = i + 1 < vc->nsend ? i + 1 : NO_SLOT;
	}
	vc->free_head = 0;
	for (uint32_t i = 0; i < vc->nrecv; i++) {
		err = post_recv(vc, i);
		if (err)
			return err;
	}
	return 0;
}

/* Connections open from this client address. */
static uint32_t conns_from(struct embkvd_io *io,
			   const struct sockaddr_storage *peer)
{
	struct embkvd_conn *c;
	uint32_t n = 0;

	cds_list_for_each_entry(c, &io->conns, link)
		if (c->vc && same_host(&c->vc->peer, peer))
			n++;
	return n;
}

/* A connection request: accepted, or rejected and its id destroyed. The
 * event was acked already; priv is a copy of its private data. */
static void on_connect_request(struct embkvd_verbs *v, struct rdma_cm_id *id,
			       const uint8_t *priv, size_t priv_len,
			       const struct rdma_conn_param *req)
{
	struct embkvd_io *io = v->io;
	struct embkvd *s = v->srv;
	struct embkv_verbs_accept acc = {
		.credits = EMBKV_VERBS_WINDOW,
		.recv_size = EMBKV_VERBS_RECV_SIZE,
	};
	uint8_t accpriv[EMBKV_VERBS_ACCEPT_SIZE];
	struct rdma_conn_param cp = {
		.private_data = accpriv,
		.private_data_len = sizeof(accpriv),
		.rnr_retry_count = RNR_RETRY,
	};
	struct epoll_event ev = { .events = EPOLLIN };
	struct embkvd_vconn *vc = NULL;
	struct embkvd_conn *c = NULL;
	char who[ADDR_STR];
	uint32_t n;
	int err;

	addr_str(rdma_get_peer_addr(id), who, sizeof(who));
	vc = calloc(1, sizeof(*vc));
	if (!vc) {
		err = -ENOMEM;
		goto reject;
	}
	vc->v = v;
	vc->id = id;
	memcpy(&vc->peer, rdma_get_peer_addr(id),
	       rdma_get_peer_addr(id)->sa_family == AF_INET6 ?
		       sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	err = embkv_wire_verbs_connect_decode(priv, priv_len, &vc->cli);
	if (err) {
		embkvd_log("rejecting an RDMA connection from %s: bad private "
			   "data: %s", who, embkv_strerror(err));
		goto reject;
	}
	if (id->verbs != v->ctx) {
		embkvd_log("rejecting an RDMA connection from %s: another "
			   "device", who);
		err = -ENODEV;
		goto reject;
	}
	if (conns_from(io, &vc->peer) >= EMBKV_VERBS_MAX_QPS_PER_CLIENT) {
		embkvd_log("rejecting an RDMA connection from %s: %u open "
			   "from that address", who,
			   EMBKV_VERBS_MAX_QPS_PER_CLIENT);
		err = EMBKV_ELIMIT;
		goto reject;
	}
	n = __atomic_add_fetch(&s->conns, 1, __ATOMIC_RELAXED);
	if (n > s->attr.max_conns) {
		__atomic_sub_fetch(&s->conns, 1, __ATOMIC_RELAXED);
		embkvd_log("rejecting an RDMA connection from %s (%u open, "
			   "--max-conns %u)", who, n - 1, s->attr.max_conns);
		err = EMBKV_ELIMIT;
		goto reject;
	}
	err = vconn_setup(vc);
	if (err)
		goto uncount;
	c = calloc(1, sizeof(*c));
	if (!c) {
		err = -ENOMEM;
		goto uncount;
	}
	c->io = io;
	c->vc = vc;
	c->fd = -1;
	c->open = true;
	c->rd = EMBKVD_CONN_RD_HDR;
	c->auth = s->auth ? EMBKVD_CONN_AUTH_WAIT_HELLO : EMBKVD_CONN_AUTH_OK;
	ev.data.ptr = c;
	if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, vc->cch->fd, &ev)) {
		err = -errno;
		goto uncount;
	}
	vc->epoll = true;
	embkv_wire_verbs_accept_encode(&acc, accpriv, sizeof(accpriv));
	/* The kernel already swapped the request's values to this side's
	 * point of view: its responder_resources is what the client wants
	 * to initiate. Pass them through, bounded by the device. */
	cp.responder_resources = (uint8_t)min_u32(req->responder_resources,
						  (uint32_t)v->dev.max_qp_rd_atom);
	cp.initiator_depth = (uint8_t)min_u32(req->initiator_depth,
					      (uint32_t)v->dev.max_qp_init_rd_atom);
	if (rdma_accept(id, &cp)) {
		err = -errno;
		embkvd_log("rdma_accept from %s: %s", who, strerror(-err));
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, vc->cch->fd, NULL);
		goto uncount;
	}
	id->context = c;
	vc->state = VC_SETUP;
	vc->deadline_ns = embkv_now_ns() + SETUP_TIMEOUT_NS;
	io->nwaiting++;
	cds_list_add_tail(&c->link, &io->conns);
	return;

uncount:
	__atomic_sub_fetch(&s->conns, 1, __ATOMIC_RELAXED);
	if (err != EMBKV_ELIMIT)
		embkvd_log("rejecting an RDMA connection from %s: %s", who,
			   embkv_strerror(err));
reject:
	free(c);
	rdma_reject(id, NULL, 0);
	if (vc) {
		vconn_free(vc); /* destroys id */
		return;
	}
	rdma_destroy_id(id);
}

void embkvd_verbs_cm_events(struct embkvd_io *io)
{
	struct embkvd_verbs *v = io->srv->verbs;
	struct rdma_cm_event *ev;

	while (!rdma_get_cm_event(v->ch, &ev)) {
		enum rdma_cm_event_type type = ev->event;
		struct rdma_cm_id *id = ev->id;
		struct rdma_conn_param req = ev->param.conn;
		uint8_t priv[PRIV_MAX];
		size_t plen = 0;
		struct embkvd_conn *c;

		if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			plen = req.private_data_len < PRIV_MAX ?
				       req.private_data_len : PRIV_MAX;
			if (plen && req.private_data)
				memcpy(priv, req.private_data, plen);
			else
				plen = 0;
			req.private_data = NULL;
		}
		/* Ack before acting: rdma_destroy_id waits for acks. */
		rdma_ack_cm_event(ev);
		if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			on_connect_request(v, id, priv, plen, &req);
			continue;
		}
		if (id == v->listen_id) {
			embkvd_log("RDMA listener: %s", rdma_event_str(type));
			continue;
		}
		c = id->context;
		if (!c || !c->open)
			continue;
		switch (type) {
		case RDMA_CM_EVENT_ESTABLISHED:
			if (c->vc->state == VC_SETUP) {
				c->vc->state = VC_READY;
				io->nwaiting--;
				embkvd_vconn_flush(c);
			}
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
		case RDMA_CM_EVENT_REJECTED:
		case RDMA_CM_EVENT_CONNECT_ERROR:
		case RDMA_CM_EVENT_UNREACHABLE:
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
		case RDMA_CM_EVENT_ADDR_CHANGE:
		case RDMA_CM_EVENT_TIMEWAIT_EXIT:
			embkvd_conn_close(c);
			break;
		default:
			break;
		}
	}
}

void embkvd_verbs_timers(struct embkvd_io *io, uint64_t now_ns)
{
	struct embkvd_conn *c, *tmp;

	cds_list_for_each_entry_safe(c, tmp, &io->conns, link)
		if (c->vc && c->vc->state == VC_SETUP &&
		    now_ns >= c->vc->deadline_ns) {
			embkvd_log("closing an RDMA connection: not "
				   "established in time");
			embkvd_conn_close(c);
		}
}

void embkvd_vconn_destroy(struct embkvd_conn *c)
{
	struct embkvd_vconn *vc = c->vc;

	if (vc->state == VC_SETUP)
		c->io->nwaiting--;
	if (vc->epoll)
		epoll_ctl(c->io->epfd, EPOLL_CTL_DEL, vc->cch->fd, NULL);
	vc->id->context = NULL;
	rdma_disconnect(vc->id); /* may fail when not connected: fine */
	vconn_free(vc);
	c->vc = NULL;
}

/* Connections: frames --------------------------------------------------------------- */

static uint64_t frame_req_id(const uint8_t *frame)
{
	uint64_t id;

	memcpy(&id, frame + EMBKV_WIRE_HDR_REQ_ID, sizeof(id));
	return le64toh(id);
}

/* An ERROR EMBKV_ELIMIT frame for req_id, in place of a reply too big for
 * the client's slots; its length, 0 if it does not encode. */
static size_t limit_error(struct embkvd_conn *c, uint8_t *buf, size_t cap,
			  uint64_t req_id, size_t len)
{
	char msg[ERRMSG_BYTES];
	struct embkv_wire_error e = { .status = EMBKV_ELIMIT };
	struct embkv_wire_hdr h = {
		.opcode = EMBKV_WIRE_OP_ERROR,
		.request_id = req_id,
		.epoch = embkvd_epoch(c->io->srv),
	};
	size_t blen;
	int n;

	n = snprintf(msg, sizeof(msg), "a %zu-byte reply is over the "
		     "%u-byte reply slot", len, c->vc->cli.slot_size);
	e.msg.ptr = msg;
	e.msg.len = n < 0 ? 0 : (uint32_t)strnlen(msg, EMBKV_WIRE_ERRMSG_MAX);
	if (embkv_wire_error_size(&e, &blen) ||
	    EMBKV_WIRE_HDR_SIZE + blen > cap)
		return 0;
	h.body_len = (uint32_t)blen;
	if (!embkv_wire_hdr_encode(&h, buf) ||
	    embkv_wire_error_encode(&e, buf + EMBKV_WIRE_HDR_SIZE, blen))
		return 0;
	embkv_stat_inc(&c->io->st.errors, 1);
	return EMBKV_WIRE_HDR_SIZE + blen;
}

/* Posts one reply frame (ownership of ob passes); 0 or a negative errno. */
static int post_reply(struct embkvd_conn *c, struct embkvd_obuf *ob)
{
	struct embkvd_vconn *vc = c->vc;
	uint32_t idx = vc->free_head;
	struct vsend *sd = &vc->sends[idx];
	uint64_t req_id = frame_req_id(ob->data);
	size_t len = ob->len;
	struct ibv_sge sge;
	struct ibv_send_wr wr = {
		.wr_id = SEND_TAG | idx,
		.sg_list = &sge,
		.num_sge = 1,
		.send_flags = IBV_SEND_SIGNALED,
	}, *bad;
	int err;

	if (len > vc->cli.recv_size && len > vc->cli.slot_size) {
		len = limit_error(c, sd->slot, vc->slot_bytes, req_id, len);
		embkvd_obuf_free(ob);
		ob = NULL;
		if (!len)
			return -EINVAL;
	}
	if (len <= vc->slot_bytes) {
		if (ob) {
			memcpy(sd->slot, ob->data, len);
			embkvd_obuf_free(ob);
		}
		sge.addr = (uint64_t)(uintptr_t)sd->slot;
		sge.lkey = vc->smr->lkey;
	} else {
		sd->mr = ibv_reg_mr(vc->v->pd, ob->data, len, 0);
		if (!sd->mr) {
			embkvd_obuf_free(ob);
			return -ENOMEM;
		}
		sd->ob = ob;
		sge.addr = (uint64_t)(uintptr_t)ob->data;
		sge.lkey = sd->mr->lkey;
	}
	sge.length = (uint32_t)len;
	if (len <= vc->cli.recv_size) {
		wr.opcode = IBV_WR_SEND;
	} else {
		uint32_t slot = (uint32_t)(req_id % vc->cli.reply_slots);

		wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
		wr.imm_data = htobe32(slot);
		wr.wr.rdma.remote_addr = vc->cli.reply_addr +
					 (uint64_t)slot * vc->cli.slot_size;
		wr.wr.rdma.rkey = vc->cli.reply_rkey;
	}
	err = ibv_post_send(vc->id->qp, &wr, &bad);
	if (err) {
		if (sd->mr) {
			ibv_dereg_mr(sd->mr);
			embkvd_obuf_free(sd->ob);
			sd->mr = NULL;
			sd->ob = NULL;
		}
		return -err;
	}
	vc->free_head = sd->next_free;
	vc->sends_inflight++;
	embkv_stat_inc(&c->io->st.bytes_out, len);
	return 0;
}

void embkvd_vconn_flush(struct embkvd_conn *c)
{
	struct embkvd_vconn *vc = c->vc;
	int err;

	if (!c->open || vc->state != VC_READY)
		return;
	while (c->out_head && vc->free_head != NO_SLOT) {
		struct embkvd_obuf *ob = c->out_head;

		c->out_head = ob->next;
		if (!c->out_head)
			c->out_tail = NULL;
		c->out_bytes -= ob->len;
		if (vc->outstanding)
			vc->outstanding--;
		err = post_reply(c, ob);
		if (err) {
			embkvd_log("closing an RDMA connection: cannot post a "
				   "reply: %s", strerror(-err));
			embkvd_conn_close(c);
			return;
		}
	}
	embkvd_vconn_settle(c);
}

void embkvd_vconn_settle(struct embkvd_conn *c)
{
	if (!c->open)
		return;
	/* A closing connection goes once its replies are out; the I/O
	 * thread's timers close it at its deadline otherwise. */
	if (c->closing && !c->out_head && !c->inflight &&
	    !c->vc->sends_inflight)
		embkvd_conn_close(c);
}

static void on_recv(struct embkvd_conn *c, uint32_t i, uint32_t len)
{
	struct embkvd_vconn *vc = c->vc;
	const uint8_t *buf = vc->rbuf + (size_t)i * EMBKV_VERBS_RECV_SIZE;
	struct embkv_wire_hdr h;
	uint8_t *body = NULL;
	int rc = 0;

	embkv_stat_inc(&c->io->st.bytes_in, len);
	if (c->closing)
		goto repost; /* discard */
	if (++vc->outstanding > vc->window) {
		embkvd_log("closing an RDMA connection: more than %u requests "
			   "outstanding", vc->window);
		embkvd_conn_close(c);
		return;
	}
	memset(&h, 0, sizeof(h));
	rc = embkv_wire_hdr_decode(buf, len, &h);
	rc = embkvd_conn_admit(c, &h, rc);
	if (!rc && len != EMBKV_WIRE_HDR_SIZE + (uint64_t)h.body_len) {
		embkvd_conn_error(c, h.request_id, EMBKV_EPROTO, true,
				  "a %u-byte message with a %u-byte body",
				  len, h.body_len);
		rc = -1;
	}
	if (!rc && h.body_len) {
		body = malloc(h.body_len);
		if (body) {
			memcpy(body, buf + EMBKV_WIRE_HDR_SIZE, h.body_len);
		} else {
			embkvd_conn_error(c, h.request_id, -ENOMEM, false,
					  "no memory for a %u-byte body",
					  h.body_len);
			rc = 1;
		}
	}
repost:
	/* The bytes were copied out: the buffer takes the next request. */
	if (post_recv(vc, i)) {
		free(body);
		embkvd_log("closing an RDMA connection: cannot post a RECV");
		embkvd_conn_close(c);
		return;
	}
	if (rc || c->closing)
		return;
	embkv_stat_inc(&c->io->st.requests, 1);
	embkvd_svc_frame(c, &h, body, embkv_now_ns());
}

static void on_send_done(struct embkvd_vconn *vc, uint32_t i)
{
	struct vsend *sd = &vc->sends[i];

	if (sd->mr) {
		ibv_dereg_mr(sd->mr);
		embkvd_obuf_free(sd->ob);
		sd->mr = NULL;
		sd->ob = NULL;
	}
	sd->next_free = vc->free_head;
	vc->free_head = i;
	vc->sends_inflight--;
}

void embkvd_vconn_event(struct embkvd_conn *c)
{
	struct embkvd_vconn *vc = c->vc;
	struct ibv_wc wc[CQ_BATCH];
	struct ibv_cq *cq;
	void *ctx;
	int n = 0;

	while (!ibv_get_cq_event(vc->cch, &cq, &ctx))
		ibv_ack_cq_events(cq, 1);
	if (ibv_req_notify_cq(vc->cq, 0)) {
		embkvd_conn_close(c);
		return;
	}
	while (c->open && (n = ibv_poll_cq(vc->cq, CQ_BATCH, wc)) > 0) {
		for (int k = 0; k < n && c->open; k++) {
			if (wc[k].status != IBV_WC_SUCCESS) {
				if (wc[k].status != IBV_WC_WR_FLUSH_ERR)
					embkvd_log("closing an RDMA connection: "
						   "%s",
						   ibv_wc_status_str(wc[k].status));
				embkvd_conn_close(c);
				break;
			}
			if (wc[k].wr_id & SEND_TAG)
				on_send_done(vc, (uint32_t)wc[k].wr_id);
			else
				on_recv(c, (uint32_t)wc[k].wr_id,
					wc[k].byte_len);
		}
	}
	if (c->open && n < 0)
		embkvd_conn_close(c);
	if (c->open)
		embkvd_vconn_flush(c);
}
