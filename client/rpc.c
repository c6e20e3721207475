/*
 * The RPC exchange engine: a set of requests to any servers is sent and
 * answered in one event loop on the calling thread.
 *
 * Why one loop: a batch goes to all its servers at once, and a batch split
 * into several frames for one server is pipelined on that connection. The
 * loop writes requests while the sockets take them and reads replies as
 * they come, so no request waits for an earlier reply, a slow server does
 * not hold up the others, and a server that stops reading while its own
 * replies are unread (backpressure) never deadlocks against us: we always
 * read what it sends.
 *
 * A caller may consume each reply as it arrives (on_reply), while the
 * others are still on their way: a pull scatters the rows of the first
 * server to answer while the slower ones are still sending.
 *
 * Invariants: every rpc ends with done = 1 and a status; replies are
 * matched by request id and opcode (any order); a connection that saw an
 * error, a malformed or unexpected reply, or the deadline is marked
 * broken and its unanswered requests get that error.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"

/* One connection's share of an exchange. */
struct xconn {
	struct embkv_cconn *cc;
	uint32_t *idx;       /* its rpcs (indexes into the caller's array) */
	uint32_t n;
	uint32_t next_send;  /* first rpc not fully sent */
	uint32_t next_done;  /* first rpc not answered (hint) */
	uint32_t answered;
	int dead;
	int why_closed;      /* an answer that closes the whole connection
			      * for every request (token, version): the
			      * status of the rest when the server hangs up */
};

void embkv_rpc_init(struct embkv_rpc *r, uint32_t server)
{
	memset(r, 0, sizeof(*r));
	r->server = server;
	embkv_buf_init(&r->req);
	embkv_buf_init(&r->rep);
}

void embkv_rpc_init_pooled(struct embkv_client *c, struct embkv_rpc *r,
			   uint32_t server)
{
	embkv_rpc_init(r, server);
	embkv_client_buf_take(c, &r->req);
	embkv_client_buf_take(c, &r->rep);
}

void embkv_rpc_release(struct embkv_client *c, struct embkv_rpc *r)
{
	embkv_client_buf_give(c, &r->req);
	embkv_client_buf_give(c, &r->rep);
}

void embkv_rpc_clear(struct embkv_rpc *r)
{
	if (!r)
		return;
	embkv_buf_destroy(&r->req);
	embkv_buf_destroy(&r->rep);
}

int embkv_rpc_frame(struct embkv_rpc *r, uint8_t op, uint64_t epoch,
		    size_t body_len, uint8_t **body)
{
	struct embkv_wire_hdr h = {
		.opcode = op,
		.epoch = epoch,
	};

	if (body_len > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	h.body_len = (uint32_t)body_len;
	embkv_buf_reset(&r->req);
	return embkv_wire_frame_start(&r->req, &h, body);
}

static void rpc_fail(struct embkv_rpc *r, int status)
{
	if (r->done)
		return;
	r->status = status;
	r->done = 1;
}

/* None of x's requests sent: each fails with status; the connection
 * stays good. */
static void xconn_refuse(struct xconn *x, struct embkv_rpc *rpcs, int status)
{
	for (uint32_t i = 0; i < x->n; i++) {
		rpc_fail(&rpcs[x->idx[i]], status);
		rpcs[x->idx[i]].unsent = 1;
	}
	x->answered = x->n;
	x->next_send = x->n;
	x->dead = 1;
}

static void xconn_fail(struct xconn *x, struct embkv_rpc *rpcs, int status)
{
	if (x->why_closed && status == EMBKV_EDISCONNECTED)
		status = x->why_closed;
	for (uint32_t i = 0; i < x->n; i++)
		rpc_fail(&rpcs[x->idx[i]], status);
	x->answered = x->n;
	x->next_send = x->n;
	x->dead = 1;
	if (x->cc)
		x->cc->broken = 1;
}

/* Errors after which the server closes the connection (PROTOCOL.md 6). */
static int status_closes(int status)
{
	return status == EMBKV_EPROTO || status == EMBKV_EVERSION ||
	       status == EMBKV_EAUTH || status == EMBKV_ELIMIT ||
	       status == EMBKV_ETOKENREQUIRED ||
	       status == EMBKV_ETOKENUNEXPECTED;
}

/* A whole reply frame is in x's rx: hand it to its rpc. */
static int dispatch(struct xconn *x, struct embkv_rpc *rpcs)
{
	struct embkv_rx *rx = &x->cc->rx;
	struct embkv_wire_error err;
	struct embkv_rpc *r = NULL;
	struct embkv_buf tmp;
	uint32_t i, k;
	uint8_t reqop;
	int rc;

	/* Replies mostly come in order: start at the oldest unanswered. A
	 * request being sent may be answered already (an ERROR on its
	 * header), hence <= next_send. */
	for (k = 0; k < x->n; k++) {
		i = (x->next_done + k) % x->n;
		if (i <= x->next_send && !rpcs[x->idx[i]].done &&
		    rpcs[x->idx[i]].req_id == rx->hdr.request_id) {
			r = &rpcs[x->idx[i]];
			break;
		}
	}
	if (!r)
		return EMBKV_EPROTO; /* a reply to nothing we asked */
	reqop = r->req.data[EMBKV_WIRE_HDR_OPCODE];
	r->rhdr = rx->hdr;
	tmp = r->rep;
	r->rep = rx->buf;
	rx->buf = tmp;
	embkv_rx_reset(rx);
	r->has_reply = 1;
	r->body = r->rep.data + EMBKV_WIRE_HDR_SIZE;
	r->body_len = r->rep.len - EMBKV_WIRE_HDR_SIZE;
	r->done = 1;
	x->answered++;
	if (r->sent < r->req.len)
		x->cc->broken = 1; /* answered early: the rest goes unsent */
	while (x->next_done < x->n && rpcs[x->idx[x->next_done]].done)
		x->next_done++;
	if (x->next_done >= x->n)
		x->next_done = 0;
	if (r->rhdr.opcode == EMBKV_WIRE_OP_ERROR) {
		rc = embkv_wire_error_decode(r->body, r->body_len, &err);
		r->status = rc ? rc : err.status;
		if (rc || status_closes(r->status))
			x->cc->broken = 1;
		if (r->status == EMBKV_ETOKENREQUIRED ||
		    r->status == EMBKV_ETOKENUNEXPECTED ||
		    r->status == EMBKV_EAUTH || r->status == EMBKV_EVERSION)
			x->why_closed = r->status;
		return 0;
	}
	if (r->rhdr.opcode != (reqop | EMBKV_WIRE_OP_REPLY)) {
		r->status = EMBKV_EPROTO;
		x->cc->broken = 1;
		return 0;
	}
	r->status = 0;
	if (r->on_reply)
		r->consume_rc = r->on_reply(r->on_reply_ctx, r);
	return 0;
}

/* Sends what the socket takes; 0 or a connection error. */
static int xconn_send(struct xconn *x, struct embkv_rpc *rpcs)
{
	struct embkv_conn *tc = x->cc->tc;

	while (x->next_send < x->n) {
		struct embkv_rpc *r = &rpcs[x->idx[x->next_send]];
		int rc = r->tail_len
			? tc->ops->send_gather(tc, r->req.data, r->req.len,
					       r->tail_region, r->tail,
					       r->tail_len, &r->sent)
			: tc->ops->send_some(tc, r->req.data, r->req.len,
					     &r->sent);

		if (rc == -EAGAIN)
			return 0;
		if (rc)
			return rc;
		x->next_send++;
	}
	return 0;
}

/* Receives every reply already available; 0 or a connection error. */
static int xconn_recv(struct xconn *x, struct embkv_rpc *rpcs)
{
	struct embkv_conn *tc = x->cc->tc;

	while (x->answered < x->n) {
		int rc = tc->ops->recv_some(tc, &x->cc->rx);

		if (rc == -EAGAIN)
			return 0;
		if (rc)
			return rc;
		rc = dispatch(x, rpcs);
		if (rc)
			return rc;
	}
	return 0;
}

static int xconn_busy(const struct xconn *x)
{
	return !x->dead && x->answered < x->n;
}

/* Sorts rpc indexes by server (insertion sort: exchanges are small, and
 * mostly come grouped already). */
static void sort_by_server(uint32_t *idx, uint32_t n,
			   const struct embkv_rpc *rpcs)
{
	for (uint32_t i = 1; i < n; i++) {
		uint32_t v = idx[i], j = i;

		while (j > 0 && rpcs[idx[j - 1]].server > rpcs[v].server) {
			idx[j] = idx[j - 1];
			j--;
		}
		idx[j] = v;
	}
}

static void run_loop(struct xconn *xs, uint32_t nx, struct embkv_rpc *rpcs,
		     struct pollfd *pfds, uint64_t deadline)
{
	for (;;) {
		uint32_t i, npoll = 0;
		uint64_t now;
		int rc, wait, again = 0;

		for (i = 0; i < nx; i++) {
			struct xconn *x = &xs[i];
			uint32_t answered = x->answered;

			if (!xconn_busy(x))
				continue;
			rc = xconn_send(x, rpcs);
			if (!rc)
				rc = xconn_recv(x, rpcs);
			if (rc) {
				xconn_fail(x, rpcs, rc);
				continue;
			}
			/* Replies that came in may have opened the request
			 * window (rdma credits) that stopped the sends: send
			 * again before waiting, or, with every request so far
			 * answered, nothing would ever wake the wait. */
			if (x->answered != answered && x->next_send < x->n &&
			    xconn_busy(x))
				again = 1;
		}
		if (again)
			continue;
		for (i = 0; i < nx; i++) {
			struct xconn *x = &xs[i];

			pfds[i].fd = -1;
			pfds[i].events = 0;
			pfds[i].revents = 0;
			if (!xconn_busy(x))
				continue;
			pfds[i].fd = x->cc->tc->ops->poll_fd(x->cc->tc);
			pfds[i].events = POLLIN;
			if (x->next_send < x->n)
				pfds[i].events |= POLLOUT;
			npoll++;
		}
		if (!npoll)
			return;
		for (;;) {
			now = embkv_now_ms();
			if (now >= deadline) {
				for (i = 0; i < nx; i++)
					if (xconn_busy(&xs[i]))
						xconn_fail(&xs[i], rpcs,
							   EMBKV_ETIMEDOUT);
				return;
			}
			wait = deadline - now > INT_MAX ? INT_MAX
							: (int)(deadline - now);
			rc = poll(pfds, nx, wait);
			if (rc >= 0 || errno != EINTR)
				break;
		}
		if (rc < 0) {
			rc = -errno;
			for (i = 0; i < nx; i++)
				if (xconn_busy(&xs[i]))
					xconn_fail(&xs[i], rpcs, rc);
			return;
		}
	}
}

int embkv_rpc_exchange(struct embkv_client *c, struct embkv_rpc *rpcs,
		       uint32_t n, uint64_t deadline)
{
	struct pollfd *pfds = NULL;
	struct xconn *xs = NULL;
	uint32_t *idx = NULL;
	uint32_t i, nx = 0;
	int rc = 0;

	for (i = 0; i < n; i++) {
		rpcs[i].done = 0;
		rpcs[i].status = 0;
		rpcs[i].has_reply = 0;
		rpcs[i].sent = 0;
		rpcs[i].body = NULL;
		rpcs[i].body_len = 0;
		rpcs[i].consume_rc = 0;
		rpcs[i].unsent = 0;
	}
	if (!n)
		return 0;
	idx = malloc((size_t)n * sizeof(*idx));
	xs = calloc(n, sizeof(*xs));
	pfds = calloc(n, sizeof(*pfds));
	if (!idx || !xs || !pfds) {
		rc = -ENOMEM;
		for (i = 0; i < n; i++)
			rpc_fail(&rpcs[i], -ENOMEM);
		goto free_all;
	}
	for (i = 0; i < n; i++)
		idx[i] = i;
	sort_by_server(idx, n, rpcs);
	for (i = 0; i < n; i++) {
		uint32_t s = rpcs[idx[i]].server;

		if (nx == 0 || s != rpcs[xs[nx - 1].idx[0]].server)
			xs[nx++].idx = &idx[i];
		xs[nx - 1].n++;
	}
	/* Connections in increasing server order (see client.c). */
	for (i = 0; i < nx; i++) {
		struct xconn *x = &xs[i];
		int grc = embkv_client_conn_get(c, rpcs[x->idx[0]].server,
						deadline, &x->cc);

		if (grc) {
			x->cc = NULL;
			xconn_fail(x, rpcs, grc);
			continue;
		}
		for (uint32_t k = 0; k < x->n; k++) {
			struct embkv_rpc *r = &rpcs[x->idx[k]];

			r->req_id = x->cc->next_req_id++;
			embkv_wire_hdr_set_request_id(r->req.data, r->req_id);
			if (r->on_conn &&
			    (grc = r->on_conn(r->on_reply_ctx, r, x->cc))) {
				xconn_refuse(x, rpcs, grc);
				break;
			}
		}
	}
	run_loop(xs, nx, rpcs, pfds, deadline);
	for (i = 0; i < nx; i++)
		embkv_client_conn_put(c, xs[i].cc);

free_all:
	free(pfds);
	free(xs);
	free(idx);
	return rc;
}
