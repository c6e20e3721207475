/*
 * embkvd's RDMA verbs listener (net/RDMA.md; server/verbs_priv.h has the
 * transport's overview): the rdma_cm event channel, accept or reject,
 * setup timers.
 *
 * What: binds and listens on one address of one RDMA device and opens its
 * protection domain, shared by every connection and every table region.
 * The listener's one event channel sits in I/O thread 0's epoll; each
 * connection request is checked, its connection built (verbs_conn.c) and
 * accepted, or rejected; ESTABLISHED lets its replies go, and a
 * disconnect or error closes it.
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
 * - A connection is counted in s->conns before it is built; the count
 *   drops exactly once: here when the request is rejected after it was
 *   counted, else in embkvd_conn_close().
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "server/verbs_priv.h"

#define NS_PER_MS 1000000ull
#define SETUP_TIMEOUT_NS (5000ull * NS_PER_MS) /* request -> ESTABLISHED */
#define LISTEN_BACKLOG 128
#define RNR_RETRY 6                 /* bounded: 7 would retry forever */
#define PRIV_MAX 64u                /* bytes of private data kept */
#define ADDR_STR 64

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

/* Connection requests ------------------------------------------------------ */

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
	err = embkvd_vconn_setup(vc);
	if (err)
		goto uncount;
	c = calloc(1, sizeof(*c));
	if (!c) {
		err = -ENOMEM;
		goto uncount;
	}
	c->io = io;
	c->vc = vc;
	CDS_INIT_LIST_HEAD(&c->unauth_link);
	c->peer_sa = vc->peer;
	snprintf(c->peer, sizeof(c->peer), "%s", who);
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
	if (s->auth)
		embkvd_conn_auth_deadline(c); /* counted already, though */
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
		embkvd_vconn_free(vc); /* destroys id */
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
