/*
 * embkvd I/O threads: accept, read frames, write replies.
 *
 * What: each I/O thread runs one level-triggered epoll loop over its
 * nonblocking connections, the shared listening socket (EPOLLEXCLUSIVE,
 * so one thread takes each new connection) and an eventfd that owner
 * threads ring when they hand a finished batch back (a wfcqueue inbox).
 *
 * Why: a connection stays on one thread for its life, so its buffers and
 * state need no lock; a frame is decoded by the codec header first and
 * its body is allocated only after every header limit passed, and then
 * only as its bytes arrive, so a bad peer cannot make the server allocate
 * what it claims.
 *
 * Invariants:
 * - Reading: the header is checked (magic, version, opcode, flags,
 *   body_len against the limit, and before authentication the opcode and
 *   the pre-auth size) before a body buffer is allocated. A frame is
 *   handed to the service only when whole.
 * - Output: replies are queued per connection and written at the end of
 *   each loop round (batched sendmsg); a connection whose backlog or
 *   number of requests in flight is over its mark is not read until it
 *   drains (backpressure).
 * - Lifetime: a closed connection leaves epoll and its fd at once, but
 *   its memory lives while batch requests hold it (inflight) and at least
 *   until the end of the current loop round (the dead list), so a stale
 *   event or a late completion never touches freed memory.
 * - The open-connection count (srv->conns) drops exactly once per
 *   counted connection, in conn_close(). With a token, a TCP connection
 *   is counted only once it authenticated (embkvd_conn_authed); until
 *   then it sits on io->unauth, at most io->max_unauth of them (the
 *   oldest is closed to make room for a new one) and each closed at its
 *   authentication deadline (--auth-timeout-ms), so peers that never
 *   authenticate can neither fill --max-conns nor keep a real client out.
 *   RDMA connections are counted at accept (verbs_listen.c) but join
 *   io->unauth too, for the same deadline. Without a token every TCP
 *   connection counts from its accept; when --max-conns is reached, the
 *   thread's oldest connection that has not sent a whole frame within
 *   --auth-timeout-ms is closed to make room (evict_silent); when the
 *   accepting thread has none, the new socket goes to the other I/O
 *   threads in turn (room_req), and the first with one closes it and
 *   adopts the socket; else the new one is refused.
 * - Bodies (net/PROTOCOL.md section 9): a body that is wholly in the
 *   staging buffer already, or of at most BODY_FREE bytes, is allocated at
 *   once (the hot path: no clock, no shared counter). Any other body grows
 *   as its bytes arrive (doubling, from BODY_CHUNK) and every byte it
 *   holds is charged to srv->rx_bytes, under --inflight-bytes, until the
 *   frame is whole (then the service owns it) or dropped. A body that
 *   cannot grow within the budget stops its connection's reading
 *   (budget_wait) and is retried on the timer tick; bytes already read
 *   are always kept (at most STAGE_BYTES over the budget per connection).
 * - Deadlines: a frame whose first bytes arrived must be whole within
 *   --frame-timeout-ms, or the connection is closed (the clock starts at
 *   the read that left it partial). Time during which the server itself
 *   does not read (backpressure, or waiting for budget while holding no
 *   more than one staging buffer's worth) does not count; a connection
 *   that waits while holding more keeps its deadline, so bodies that hold
 *   the whole budget and wait for more are closed in time and cannot
 *   block each other forever. Deadlines are checked by a scan of the
 *   thread's connections every TICK_MS, only while some are pending.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include "server/daemon.h"
#include "server/verbs.h"

#define STAGE_BYTES (64u << 10)         /* read staging buffer */
#define READ_BUDGET (1u << 20)          /* bytes per connection per round */
#define MAX_EVENTS 64
#define OUT_HIGH_WATER (8u << 20)       /* stop reading above this backlog */
#define MAX_INFLIGHT 64u                /* batch requests per connection */
#define INFLIGHT_HIGH_WATER (96u << 20) /* their memory, bytes */
#define IOV_BATCH 64
#define ACCEPT_BATCH 64
#define NS_PER_MS 1000000ull
#define LINGER_NS (2000ull * NS_PER_MS) /* closing: deadline to close */
#define ACCEPT_RETRY_NS (100ull * NS_PER_MS)
#define REJECT_LOG_NS (1000ull * NS_PER_MS)
#define TICK_MS 100                     /* loop wake-up while timers run */
#define ERRMSG_BYTES (EMBKV_WIRE_ERRMSG_MAX + 1)
#define BODY_FREE 4096u                 /* bodies never charged */
#define BODY_CHUNK (64u << 10)          /* first allocation of a body */
#define SCAN_NS (TICK_MS * NS_PER_MS)   /* deadline scan period */
#define EVICT_LOG_NS (1000ull * NS_PER_MS)

/* epoll data tags for the fds that are not connections. */
static char tag_listen, tag_inbox, tag_rdma_cm;

/* Output buffers ----------------------------------------------------------- */

struct embkvd_obuf *embkvd_obuf_alloc(const struct embkvd_conn *c,
				      size_t len)
{
	struct embkvd_obuf *ob = NULL;

	/* sent in place (not copied into a send slot): a pooled buffer */
	if (c && c->vc && len > embkvd_vconn_copy_max(c))
		ob = embkvd_obpool_get(c->io->srv->obpool, len);
	return ob ? ob : embkvd_obuf_plain(len);
}

/* Connection state ---------------------------------------------------------- */

static bool conn_backlogged(const struct embkvd_conn *c)
{
	return c->out_bytes > OUT_HIGH_WATER || c->inflight >= MAX_INFLIGHT ||
	       c->inflight_bytes > INFLIGHT_HIGH_WATER;
}

static bool conn_throttled(const struct embkvd_conn *c)
{
	return c->budget_wait || conn_backlogged(c);
}

/* Bodies and their budget ----------------------------------------------------- */

static void body_uncharge(struct embkvd_conn *c)
{
	if (c->body_charged) {
		__atomic_sub_fetch(&c->io->srv->rx_bytes, c->body_charged,
				   __ATOMIC_RELAXED);
		c->body_charged = 0;
	}
}

static void budget_wait_set(struct embkvd_conn *c, bool on)
{
	if (c->budget_wait == on)
		return;
	c->budget_wait = on;
	if (on)
		c->io->nbudget_wait++;
	else
		c->io->nbudget_wait--;
}

/* Frees the body being read and its charge. */
static void body_drop(struct embkvd_conn *c)
{
	free(c->body);
	c->body = NULL;
	c->body_cap = 0;
	body_uncharge(c);
	budget_wait_set(c, false);
}

/* No partial frame any more: its deadline goes. */
static void frame_clear(struct embkvd_conn *c)
{
	if (c->frame_deadline_ns) {
		c->frame_deadline_ns = 0;
		c->io->npartial--;
	}
}

/*
 * Grows the body buffer; at_hand bytes of it were read already and must
 * fit. Within the budget it doubles (at least BODY_CHUNK, at most the
 * body); beyond it, it takes only what at_hand needs and sets
 * budget_wait. 0, or -ENOMEM.
 */
static int body_grow(struct embkvd_conn *c, size_t at_hand)
{
	struct embkvd *s = c->io->srv;
	uint64_t want = (uint64_t)c->body_cap * 2, need, add;
	uint8_t *p;

	need = (uint64_t)c->body_got + at_hand;
	if (want < BODY_CHUNK)
		want = BODY_CHUNK;
	if (want < need)
		want = need;
	if (want > c->h.body_len)
		want = c->h.body_len;
	add = want - c->body_cap;
	if (__atomic_add_fetch(&s->rx_bytes, add, __ATOMIC_RELAXED) >
	    s->attr.inflight_bytes) {
		__atomic_sub_fetch(&s->rx_bytes, add, __ATOMIC_RELAXED);
		budget_wait_set(c, true);
		if (need <= c->body_cap)
			return 0;
		/* Bytes read already are kept, over the budget. */
		want = need;
		add = want - c->body_cap;
		__atomic_add_fetch(&s->rx_bytes, add, __ATOMIC_RELAXED);
	} else {
		budget_wait_set(c, false);
	}
	p = realloc(c->body, want);
	if (!p) {
		__atomic_sub_fetch(&s->rx_bytes, add, __ATOMIC_RELAXED);
		return -ENOMEM;
	}
	c->body = p;
	c->body_cap = (uint32_t)want;
	c->body_charged += (uint32_t)add;
	return 0;
}

/* Sets the epoll interest from the connection's state. */
static void conn_events(struct embkvd_conn *c)
{
	struct epoll_event ev = { .data.ptr = c };
	uint32_t want = 0;

	if (!c->open)
		return;
	if (!c->rd_eof && (c->closing || !conn_throttled(c)))
		want |= EPOLLIN;
	if (c->want_out)
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	ev.events = want;
	if (!epoll_ctl(c->io->epfd, EPOLL_CTL_MOD, c->fd, &ev))
		c->events = want;
}

static void conn_free_later(struct embkvd_conn *c)
{
	cds_list_add(&c->link, &c->io->dead);
}

void embkvd_conn_close(struct embkvd_conn *c)
{
	struct embkvd_io *io = c->io;
	struct embkvd_obuf *ob, *next;

	if (!c->open)
		return;
	if (c->vc) {
		embkvd_vconn_destroy(c);
	} else {
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->open = false;
	for (ob = c->out_head; ob; ob = next) {
		next = ob->next;
		embkvd_obuf_free(ob);
	}
	c->out_head = c->out_tail = NULL;
	c->out_bytes = 0;
	body_drop(c);
	frame_clear(c);
	if (!cds_list_empty(&c->unauth_link)) {
		cds_list_del_init(&c->unauth_link);
		io->nunauth--;
	}
	if (c->on_flush) {
		cds_list_del(&c->flush_link);
		c->on_flush = false;
	}
	if (c->closing)
		io->nclosing--;
	cds_list_del(&c->link);
	if (!c->uncounted)
		__atomic_sub_fetch(&io->srv->conns, 1, __ATOMIC_RELAXED);
	if (!c->inflight)
		conn_free_later(c);
}

/* After any change: close a finished connection, shut the write side of
 * a closing one, update the epoll interest. */
static void conn_settle(struct embkvd_conn *c)
{
	bool idle;

	if (!c->open)
		return;
	if (c->vc) {
		embkvd_vconn_settle(c);
		return;
	}
	idle = !c->out_head && !c->inflight;
	if (idle && c->rd_eof) {
		embkvd_conn_close(c);
		return;
	}
	if (idle && c->closing && !c->lingering) {
		/* The peer sees our replies, then EOF; we read and discard
		 * until it closes too (or the deadline), so that our close
		 * does not reset the connection before it read them. */
		shutdown(c->fd, SHUT_WR);
		c->lingering = true;
	}
	conn_events(c);
}

void embkvd_conn_set_closing(struct embkvd_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	c->deadline_ns = embkv_now_ns() + LINGER_NS;
	c->io->nclosing++;
	body_drop(c);
	frame_clear(c);
}

void embkvd_conn_hold(struct embkvd_conn *c, size_t bytes)
{
	c->inflight++;
	c->inflight_bytes += bytes;
	c->io->inflight++;
}

void embkvd_conn_release(struct embkvd_conn *c, size_t bytes)
{
	c->inflight--;
	c->inflight_bytes -= bytes;
	c->io->inflight--;
	if (!c->open) {
		if (!c->inflight)
			conn_free_later(c);
		return;
	}
	conn_settle(c);
}

/* Output -------------------------------------------------------------------- */

void embkvd_conn_send(struct embkvd_conn *c, struct embkvd_obuf *ob)
{
	if (!c->open) {
		embkvd_obuf_free(ob);
		return;
	}
	ob->next = NULL;
	if (c->out_tail)
		c->out_tail->next = ob;
	else
		c->out_head = ob;
	c->out_tail = ob;
	c->out_bytes += ob->len + ob->land_len; /* land_len: RDMA only */
	if (!c->on_flush) {
		cds_list_add_tail(&c->flush_link, &c->io->flush);
		c->on_flush = true;
	}
}

int embkvd_conn_reply(struct embkvd_conn *c, uint64_t req_id, uint8_t op,
		      uint32_t body_len, uint8_t **body)
{
	struct embkv_wire_hdr h = {
		.opcode = op,
		.request_id = req_id,
		.epoch = embkvd_epoch(c->io->srv),
		.body_len = body_len,
	};
	struct embkvd_obuf *ob;

	if (!c->open)
		return -ENOTCONN; /* the body would have nowhere to go */
	ob = embkvd_obuf_alloc(c, EMBKV_WIRE_HDR_SIZE + (size_t)body_len);
	if (!ob)
		return -ENOMEM;
	if (!embkv_wire_hdr_encode(&h, ob->data)) {
		embkvd_obuf_free(ob);
		return -EINVAL;
	}
	*body = ob->data + EMBKV_WIRE_HDR_SIZE;
	embkvd_conn_send(c, ob);
	return 0;
}

/* ERROR status with a message; counted in counter (errors or misses). */
static void conn_error_v(struct embkvd_conn *c, uint64_t req_id, int status,
			 bool close, uint64_t *counter, const char *fmt,
			 va_list ap)
{
	char msg[ERRMSG_BYTES];
	struct embkv_wire_error e = { .status = status };
	uint8_t *body;
	size_t len;
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	e.msg.ptr = msg;
	e.msg.len = n < 0 ? 0 : (uint32_t)strnlen(msg, EMBKV_WIRE_ERRMSG_MAX);
	embkv_stat_inc(counter, 1);
	if (status == EMBKV_ESTALE)
		embkv_stat_inc(&c->io->st.stale, 1);
	if (!embkv_wire_error_size(&e, &len) &&
	    !embkvd_conn_reply(c, req_id, EMBKV_WIRE_OP_ERROR, (uint32_t)len,
			       &body))
		embkv_wire_error_encode(&e, body, len);
	if (close)
		embkvd_conn_set_closing(c);
}

void embkvd_conn_error(struct embkvd_conn *c, uint64_t req_id, int status,
		       bool close, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_error_v(c, req_id, status, close, &c->io->st.errors, fmt, ap);
	va_end(ap);
}

void embkvd_conn_miss(struct embkvd_conn *c, uint64_t req_id, int status,
		      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_error_v(c, req_id, status, false, &c->io->st.misses, fmt, ap);
	va_end(ap);
}

/* Writes as much queued output as the socket takes. */
static void conn_flush(struct embkvd_conn *c)
{
	struct iovec iov[IOV_BATCH];
	struct msghdr mh = { .msg_iov = iov };

	if (c->vc) {
		embkvd_vconn_flush(c);
		return;
	}
	while (c->open && c->out_head) {
		struct embkvd_obuf *ob = c->out_head;
		size_t n;
		ssize_t r;
		int k = 0;

		for (; ob && k < IOV_BATCH; ob = ob->next, k++) {
			iov[k].iov_base = ob->data + ob->off;
			iov[k].iov_len = ob->len - ob->off;
		}
		mh.msg_iovlen = (size_t)k;
		r = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->want_out = true;
				break;
			}
			/* peer gone: nothing more to say */
			embkvd_conn_close(c);
			return;
		}
		embkv_stat_inc(&c->io->st.bytes_out, (uint64_t)r);
		c->out_bytes -= (size_t)r;
		for (n = (size_t)r; n;) {
			ob = c->out_head;
			if (n < ob->len - ob->off) {
				ob->off += n;
				break;
			}
			n -= ob->len - ob->off;
			c->out_head = ob->next;
			if (!c->out_head)
				c->out_tail = NULL;
			embkvd_obuf_free(ob);
		}
	}
	if (!c->out_head)
		c->want_out = false;
	conn_settle(c);
}

/* Input --------------------------------------------------------------------- */

static void frame_done(struct embkvd_conn *c)
{
	struct embkv_wire_hdr h = c->h;
	uint8_t *body = c->body;

	c->body = NULL;
	c->body_cap = 0;
	body_uncharge(c);
	budget_wait_set(c, false);
	frame_clear(c);
	c->rd = EMBKVD_CONN_RD_HDR;
	c->spoke = true;
	embkv_stat_inc(&c->io->st.requests, 1);
	embkvd_svc_frame(c, &h, body, embkv_now_ns());
}

static void skip_body(struct embkvd_conn *c)
{
	c->skip_left = c->h.body_len;
	c->rd = c->skip_left ? EMBKVD_CONN_RD_SKIP : EMBKVD_CONN_RD_HDR;
}

int embkvd_conn_admit(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		      int rc)
{
	bool authed = c->auth == EMBKVD_CONN_AUTH_OK;

	if (rc == EMBKV_EOPCODE && h->body_len > EMBKV_WIRE_MAX_BODY)
		rc = EMBKV_ELIMIT;
	if (rc == EMBKV_EOPCODE && authed) {
		embkvd_conn_error(c, h->request_id, rc, false,
				  "unknown opcode 0x%02x", h->opcode);
		return 1;
	}
	if (rc == EMBKV_EVERSION) {
		embkvd_log("closing %s: it speaks protocol version %u, this "
			   "server %u", c->peer, h->version,
			   EMBKV_WIRE_VERSION);
		embkvd_conn_error(c, h->request_id, rc, true,
				  "protocol version %u, but this server speaks "
				  "version %u: upgrade the older side",
				  h->version, EMBKV_WIRE_VERSION);
		return -1;
	}
	if (rc && rc != EMBKV_EOPCODE) {
		embkvd_log("closing %s: bad frame header: %s", c->peer,
			   embkv_strerror(rc));
		embkvd_conn_error(c, h->request_id, rc, true,
				  "bad frame header: %s", embkv_strerror(rc));
		return -1;
	}
	if (!authed && h->opcode != EMBKV_WIRE_OP_HELLO &&
	    h->opcode != EMBKV_WIRE_OP_AUTH) {
		embkv_stat_inc(&c->io->st.auth_failures, 1);
		embkvd_log("closing %s: %s before authenticating (no token "
			   "on the client?)", c->peer,
			   embkv_wire_op_name(h->opcode));
		embkvd_conn_error(c, h->request_id, EMBKV_ETOKENREQUIRED, true,
				  "this server requires a token: "
				  "authenticate first (HELLO, AUTH)");
		return -1;
	}
	if (!authed && h->body_len > EMBKV_WIRE_MAX_PREAUTH_BODY) {
		embkvd_conn_error(c, h->request_id, EMBKV_ELIMIT, true,
				  "body of %u bytes before authentication",
				  h->body_len);
		return -1;
	}
	if (embkv_wire_op_is_reply(h->opcode)) {
		embkvd_conn_error(c, h->request_id, EMBKV_EOPCODE, false,
				  "%s is not a request",
				  embkv_wire_op_name(h->opcode));
		return 1;
	}
	return 0;
}

/* A whole header arrived: check it before reading (or allocating) the
 * body, in net/PROTOCOL.md's order; avail bytes after it are at hand. */
static void on_header(struct embkvd_conn *c, size_t avail)
{
	struct embkv_wire_hdr *h = &c->h;
	int rc;

	c->hdr_got = 0;
	rc = embkv_wire_hdr_decode(c->hdr, EMBKV_WIRE_HDR_SIZE, h);
	rc = embkvd_conn_admit(c, h, rc);
	if (rc < 0)
		return;
	if (rc > 0) {
		skip_body(c);
		return;
	}
	if (!h->body_len) {
		frame_done(c);
		return;
	}
	c->body_got = 0;
	c->body_charged = 0;
	if (h->body_len <= avail || h->body_len <= BODY_FREE) {
		c->body = malloc(h->body_len);
		c->body_cap = c->body ? h->body_len : 0;
	} else {
		c->body = NULL;
		c->body_cap = 0;
		if (body_grow(c, avail > h->body_len ? h->body_len : avail))
			body_drop(c);
	}
	if (!c->body && !c->budget_wait) {
		embkvd_conn_error(c, h->request_id, -ENOMEM, false,
				  "no memory for a %u-byte body", h->body_len);
		skip_body(c);
		return;
	}
	c->rd = EMBKVD_CONN_RD_BODY;
}

/* Consumes n bytes read into the staging buffer. */
static void consume(struct embkvd_conn *c, const uint8_t *p, size_t n)
{
	while (n && c->open && !c->closing) {
		size_t k;

		switch (c->rd) {
		case EMBKVD_CONN_RD_HDR:
			k = EMBKV_WIRE_HDR_SIZE - c->hdr_got;
			k = k < n ? k : n;
			memcpy(c->hdr + c->hdr_got, p, k);
			c->hdr_got += (uint32_t)k;
			if (c->hdr_got == EMBKV_WIRE_HDR_SIZE)
				on_header(c, n - k);
			break;
		case EMBKVD_CONN_RD_BODY:
			k = c->h.body_len - c->body_got;
			k = k < n ? k : n;
			if (c->body_got + k > c->body_cap &&
			    body_grow(c, k)) {
				/* Out of memory mid-body: framing is lost. */
				embkvd_conn_error(c, c->h.request_id, -ENOMEM,
						  true, "no memory for a %u-byte "
						  "body", c->h.body_len);
				return;
			}
			memcpy(c->body + c->body_got, p, k);
			c->body_got += (uint32_t)k;
			if (c->body_got == c->h.body_len)
				frame_done(c);
			break;
		default:
			k = c->skip_left < n ? (size_t)c->skip_left : n;
			c->skip_left -= k;
			if (!c->skip_left) {
				c->rd = EMBKVD_CONN_RD_HDR;
				frame_clear(c);
			}
			break;
		}
		p += k;
		n -= k;
	}
}

static void conn_readable(struct embkvd_conn *c)
{
	struct embkvd_io *io = c->io;
	size_t budget = READ_BUDGET;

	while (c->open && !c->rd_eof && budget &&
	       (c->closing || !conn_throttled(c))) {
		bool direct = false;
		ssize_t r;

		if (!c->closing && c->rd == EMBKVD_CONN_RD_BODY &&
		    c->h.body_len - c->body_got >= STAGE_BYTES) {
			if (c->body_cap - c->body_got < STAGE_BYTES) {
				if (body_grow(c, 0)) {
					embkvd_conn_error(c, c->h.request_id,
							  -ENOMEM, true,
							  "no memory for a %u-byte body",
							  c->h.body_len);
					break;
				}
				if (c->budget_wait)
					break;
			}
			direct = c->body_cap - c->body_got >= STAGE_BYTES;
		}
		if (direct)
			r = read(c->fd, c->body + c->body_got,
				 c->body_cap - c->body_got);
		else
			r = read(c->fd, io->stage, STAGE_BYTES);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				embkvd_conn_close(c);
			break;
		}
		if (!r) {
			/* EOF: a partial frame is dropped; whole frames
			 * already handed on still get their replies. */
			c->rd_eof = true;
			body_drop(c);
			frame_clear(c);
			break;
		}
		embkv_stat_inc(&io->st.bytes_in, (uint64_t)r);
		budget -= (size_t)r < budget ? (size_t)r : budget;
		if (c->closing)
			continue; /* lingering: discard */
		if (direct) {
			c->body_got += (uint32_t)r;
			if (c->body_got == c->h.body_len)
				frame_done(c);
		} else {
			consume(c, io->stage, (size_t)r);
		}
	}
	if (c->open && !c->closing && !c->rd_eof && !c->frame_deadline_ns &&
	    (c->rd != EMBKVD_CONN_RD_HDR || c->hdr_got)) {
		c->frame_deadline_ns = embkv_now_ns() +
			(uint64_t)io->srv->attr.frame_timeout_ms * NS_PER_MS;
		io->npartial++;
	}
	conn_settle(c);
}

/* Accepting ------------------------------------------------------------------ */

static int conn_new(struct embkvd_io *io, int fd,
		    const struct sockaddr_storage *sa, bool uncounted)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct embkvd_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (!c)
		return -ENOMEM;
	CDS_INIT_LIST_HEAD(&c->unauth_link);
	c->peer_sa = *sa;
	embkvd_peer_format(sa, c->peer, sizeof(c->peer));
	c->io = io;
	c->fd = fd;
	c->open = true;
	c->rd = EMBKVD_CONN_RD_HDR;
	c->auth = io->srv->auth ? EMBKVD_CONN_AUTH_WAIT_HELLO
				: EMBKVD_CONN_AUTH_OK;
	c->events = EPOLLIN;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.data.ptr = c;
	if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		free(c);
		return -errno;
	}
	cds_list_add_tail(&c->link, &io->conns);
	if (uncounted) {
		c->uncounted = true;
		embkvd_conn_auth_deadline(c);
	} else {
		/* No token: only when --max-conns is reached (evict_silent) */
		c->auth_deadline_ns = embkv_now_ns() +
			(uint64_t)io->srv->attr.auth_timeout_ms * NS_PER_MS;
	}
	return 0;
}

/*
 * No token, --max-conns reached: closes this thread's oldest connection
 * that has not sent one whole frame within --auth-timeout-ms, so that
 * connections that only sit there cannot keep real clients out. true
 * when one was closed (the count has room again).
 */
static bool evict_silent(struct embkvd_io *io)
{
	struct embkvd_conn *c;
	uint64_t now = embkv_now_ns();

	cds_list_for_each_entry(c, &io->conns, link) {
		if (c->spoke || c->vc || !c->open || c->uncounted ||
		    now < c->auth_deadline_ns)
			continue;
		if (now - io->reject_log_ns >= EVICT_LOG_NS) {
			embkvd_log("closing %s: no request within %u ms "
				   "(--auth-timeout-ms) and --max-conns %u "
				   "reached: making room for a new one",
				   c->peer, io->srv->attr.auth_timeout_ms,
				   io->srv->attr.max_conns);
			io->reject_log_ns = now;
		}
		embkvd_conn_close(c);
		return true;
	}
	return false;
}

void embkvd_conn_auth_deadline(struct embkvd_conn *c)
{
	struct embkvd_io *io = c->io;

	c->auth_deadline_ns = embkv_now_ns() +
		(uint64_t)io->srv->attr.auth_timeout_ms * NS_PER_MS;
	cds_list_add_tail(&c->unauth_link, &io->unauth);
	io->nunauth++;
}

int embkvd_conn_authed(struct embkvd_conn *c)
{
	struct embkvd_io *io = c->io;
	struct embkvd *s = io->srv;
	uint32_t n;

	if (!cds_list_empty(&c->unauth_link)) {
		cds_list_del_init(&c->unauth_link);
		io->nunauth--;
	}
	if (!c->uncounted)
		return 0; /* counted at accept (RDMA) */
	n = __atomic_add_fetch(&s->conns, 1, __ATOMIC_RELAXED);
	if (n > s->attr.max_conns) {
		__atomic_sub_fetch(&s->conns, 1, __ATOMIC_RELAXED);
		embkvd_log("closing %s: authenticated, but %u connections are "
			   "open (--max-conns %u)", c->peer, n - 1,
			   s->attr.max_conns);
		embkvd_conn_error(c, c->h.request_id, EMBKV_ELIMIT, true,
				  "too many connections (--max-conns %u)",
				  s->attr.max_conns);
		return -EMFILE;
	}
	c->uncounted = false;
	return 0;
}

/* Closes the oldest connection still authenticating, to make room. */
static void evict_unauth(struct embkvd_io *io)
{
	struct embkvd_conn *c;
	uint64_t now;

	if (cds_list_empty(&io->unauth))
		return;
	c = cds_list_first_entry(&io->unauth, struct embkvd_conn,
				 unauth_link);
	now = embkv_now_ns();
	if (now - io->reject_log_ns >= EVICT_LOG_NS) {
		embkvd_log("closing %s: not authenticated, and %u connections "
			   "are authenticating (--max-unauth-conns share %u): "
			   "making room for a new one", c->peer, io->nunauth,
			   io->max_unauth);
		io->reject_log_ns = now;
	}
	embkvd_conn_close(c);
}

static void listen_set(struct embkvd_io *io, bool on)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLEXCLUSIVE,
		.data.ptr = &tag_listen,
	};
	int fd = io->srv->listen_fd;

	if (on == io->listening)
		return;
	if (fd < 0) { /* no TCP listener (rdma:// only) */
		io->listening = on;
		return;
	}
	if (on ? !epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev)
	       : !epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL))
		io->listening = on;
}

/*
 * No token, --max-conns reached and no connection of the accepting thread
 * to close: the accepted socket travels to the other I/O threads in turn
 * (their inboxes), and the first one that closes one of its own silent
 * connections (evict_silent) adopts it; after the last, it is refused.
 * Each thread touches only its own connections; the count
 * (srv->conns) keeps the new connection's unit while it travels, so the
 * limit holds throughout.
 */
struct room_req {
	struct embkvd_done done;
	struct embkvd_io *io;           /* the thread it is posted to */
	int fd;
	uint32_t hops_left;             /* threads still to ask after io */
	struct sockaddr_storage sa;
};

static void room_refuse(struct embkvd_io *io, struct room_req *r)
{
	struct embkvd *s = io->srv;
	uint64_t now = embkv_now_ns();
	uint32_t n = __atomic_sub_fetch(&s->conns, 1, __ATOMIC_RELAXED);

	close(r->fd);
	if (now - io->reject_log_ns >= REJECT_LOG_NS) {
		embkvd_log("refusing a connection (%u open, --max-conns %u)",
			   n, s->attr.max_conns);
		io->reject_log_ns = now;
	}
	free(r);
}

static void room_finish(struct embkvd_done *d)
{
	struct room_req *r = caa_container_of(d, struct room_req, done);
	struct embkvd_io *io = r->io, *next;
	struct embkvd *s = io->srv;

	if (__atomic_load_n(&io->stop, __ATOMIC_RELAXED)) {
		room_refuse(io, r);
		return;
	}
	if (evict_silent(io)) {
		if (conn_new(io, r->fd, &r->sa, false)) {
			room_refuse(io, r);
			return;
		}
		free(r);
		return;
	}
	if (!r->hops_left) {
		room_refuse(io, r);
		return;
	}
	r->hops_left--;
	next = &s->io[(io->idx + 1) % s->nio];
	r->io = next;
	embkvd_io_post(next, &r->done.node);
}

/* Hands fd to the next I/O thread to make room (see struct room_req);
 * false when there is no other thread or no memory (then the caller
 * refuses it). */
static bool room_ask_others(struct embkvd_io *io, int fd,
			    const struct sockaddr_storage *sa)
{
	struct embkvd *s = io->srv;
	struct room_req *r;

	if (s->nio < 2 || !(r = calloc(1, sizeof(*r))))
		return false;
	r->done.finish = room_finish;
	r->io = &s->io[(io->idx + 1) % s->nio];
	r->fd = fd;
	r->sa = *sa;
	r->hops_left = s->nio - 2;
	cds_wfcq_node_init(&r->done.node);
	embkvd_io_post(r->io, &r->done.node);
	return true;
}

static void accept_some(struct embkvd_io *io)
{
	struct embkvd *s = io->srv;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &salen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		uint32_t n;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of fds or memory: stop listening a moment
			 * rather than spin on a listener we cannot serve. */
			embkvd_log("accept: %s", strerror(errno));
			listen_set(io, false);
			io->accept_retry_ns = embkv_now_ns() + ACCEPT_RETRY_NS;
			return;
		}
		if (s->auth) {
			/* Counted once authenticated (embkvd_conn_authed). */
			if (io->nunauth >= io->max_unauth)
				evict_unauth(io);
			if (conn_new(io, fd, &sa, true))
				close(fd);
			continue;
		}
		n = __atomic_add_fetch(&s->conns, 1, __ATOMIC_RELAXED);
		if (n > s->attr.max_conns && evict_silent(io))
			n = s->attr.max_conns; /* one closed: room for fd */
		if (n > s->attr.max_conns && room_ask_others(io, fd, &sa))
			continue; /* another thread adopts or refuses it */
		if (n > s->attr.max_conns || conn_new(io, fd, &sa, false)) {
			uint64_t now = embkv_now_ns();

			__atomic_sub_fetch(&s->conns, 1, __ATOMIC_RELAXED);
			close(fd);
			if (now - io->reject_log_ns >= REJECT_LOG_NS) {
				embkvd_log("refusing a connection (%u open, "
					   "--max-conns %u)", n - 1,
					   s->attr.max_conns);
				io->reject_log_ns = now;
			}
		}
	}
}

/* The loop ---------------------------------------------------------------------- */

void embkvd_io_post(struct embkvd_io *io, struct cds_wfcq_node *node)
{
	uint64_t one = 1;

	if (!cds_wfcq_enqueue(&io->inbox_head, &io->inbox_tail, node))
		while (write(io->efd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
}

static void inbox_drain(struct embkvd_io *io)
{
	struct cds_wfcq_node *node;
	uint64_t v;

	/* Reset the eventfd before looking: a post after this read rings
	 * it again (see embkvd_io_post), so none is missed. */
	while (read(io->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	while ((node = __cds_wfcq_dequeue_blocking(&io->inbox_head,
						   &io->inbox_tail)))
	{
		struct embkvd_done *d = caa_container_of(node,
							 struct embkvd_done,
							 node);

		d->finish(d);
	}
}

static void on_event(struct embkvd_io *io, const struct epoll_event *ev)
{
	struct embkvd_conn *c = ev->data.ptr;

	if (ev->data.ptr == &tag_listen) {
		accept_some(io);
		return;
	}
	if (ev->data.ptr == &tag_inbox) {
		inbox_drain(io);
		return;
	}
	if (ev->data.ptr == &tag_rdma_cm) {
		embkvd_verbs_cm_events(io);
		return;
	}
	if (!c->open)
		return;
	if (c->vc) {
		embkvd_vconn_event(c);
		return;
	}
	if (ev->events & EPOLLOUT)
		conn_flush(c);
	if (c->open && (ev->events & EPOLLIN))
		conn_readable(c);
	if (c->open && (ev->events & (EPOLLERR | EPOLLHUP)))
		embkvd_conn_close(c);
}

static void flush_all(struct embkvd_io *io)
{
	struct embkvd_conn *c, *tmp;

	cds_list_for_each_entry_safe(c, tmp, &io->flush, flush_link) {
		cds_list_del(&c->flush_link);
		c->on_flush = false;
		conn_flush(c);
	}
}

/* Authentication and frame deadlines, budget retries. */
static void deadlines(struct embkvd_io *io, uint64_t now)
{
	uint64_t frame_ns = (uint64_t)io->srv->attr.frame_timeout_ms *
			    NS_PER_MS;
	struct embkvd_conn *c, *tmp;

	cds_list_for_each_entry_safe(c, tmp, &io->unauth, unauth_link) {
		if (now < c->auth_deadline_ns)
			break; /* oldest first */
		embkvd_log("closing %s: not authenticated within %u ms "
			   "(--auth-timeout-ms)", c->peer,
			   io->srv->attr.auth_timeout_ms);
		embkv_stat_inc(&io->st.auth_failures, 1);
		embkvd_conn_close(c);
	}
	if (!io->npartial && !io->nbudget_wait)
		return;
	cds_list_for_each_entry_safe(c, tmp, &io->conns, link) {
		if (!c->open || c->closing || c->vc)
			continue;
		if (c->budget_wait && c->rd == EMBKVD_CONN_RD_BODY &&
		    !body_grow(c, 0) && !c->budget_wait)
			conn_events(c); /* budget again: read on */
		if (!c->frame_deadline_ns)
			continue;
		if (conn_backlogged(c) ||
		    (c->budget_wait && c->body_charged <= STAGE_BYTES)) {
			/* Waiting on us, not on the peer. */
			c->frame_deadline_ns = now + frame_ns;
			continue;
		}
		if (now < c->frame_deadline_ns)
			continue;
		if (c->rd == EMBKVD_CONN_RD_HDR)
			embkvd_log("closing %s: a frame not whole within %u "
				   "ms (--frame-timeout-ms; %u of %u header "
				   "bytes)", c->peer,
				   io->srv->attr.frame_timeout_ms, c->hdr_got,
				   EMBKV_WIRE_HDR_SIZE);
		else
			embkvd_log("closing %s: a frame not whole within %u "
				   "ms (--frame-timeout-ms; %u of %u body "
				   "bytes)", c->peer,
				   io->srv->attr.frame_timeout_ms,
				   c->rd == EMBKVD_CONN_RD_BODY ? c->body_got
								: 0,
				   c->h.body_len);
		embkvd_conn_close(c);
	}
}

static void timers(struct embkvd_io *io)
{
	struct embkvd_conn *c, *tmp;
	uint64_t now = embkv_now_ns();

	if ((io->nunauth || io->npartial || io->nbudget_wait) &&
	    now >= io->scan_ns) {
		deadlines(io, now);
		io->scan_ns = now + SCAN_NS;
	}

	if (io->nclosing)
		cds_list_for_each_entry_safe(c, tmp, &io->conns, link)
			if (c->closing && now >= c->deadline_ns)
				embkvd_conn_close(c);
	if (!io->listening && now >= io->accept_retry_ns &&
	    !__atomic_load_n(&io->stop, __ATOMIC_RELAXED))
		listen_set(io, true);
	if (io->nwaiting)
		embkvd_verbs_timers(io, now);
}

static void free_dead(struct embkvd_io *io)
{
	struct embkvd_conn *c, *tmp;

	cds_list_for_each_entry_safe(c, tmp, &io->dead, link) {
		cds_list_del(&c->link);
		free(c);
	}
}

static void close_all(struct embkvd_io *io)
{
	struct embkvd_conn *c, *tmp;

	listen_set(io, false);
	cds_list_for_each_entry_safe(c, tmp, &io->conns, link)
		embkvd_conn_close(c);
}

static void *io_main(void *arg)
{
	struct embkvd_io *io = arg;
	struct epoll_event ev[MAX_EVENTS];
	bool stopping = false;

	rcu_register_thread();
	for (;;) {
		int timeout = io->nclosing || io->nwaiting || !io->listening ||
			      io->nunauth || io->npartial || io->nbudget_wait ?
			      TICK_MS : -1;
		int n = epoll_wait(io->epfd, ev, MAX_EVENTS,
				   stopping ? TICK_MS : timeout);

		/* Only one thing to serve: a batch may run here (batch.c). */
		io->inline_ok = n == 1;
		for (int i = 0; i < n; i++)
			on_event(io, &ev[i]);
		io->inline_ok = false;
		if (io->inlined) {
			io->inlined = false;
			inbox_drain(io); /* their replies go out in this round */
		}
		flush_all(io);
		timers(io);
		if (!stopping && __atomic_load_n(&io->stop, __ATOMIC_ACQUIRE)) {
			stopping = true;
			close_all(io);
		}
		free_dead(io);
		if (stopping && !io->inflight)
			break;
	}
	rcu_unregister_thread();
	return NULL;
}

int embkvd_io_start(struct embkvd_io *io, struct embkvd *srv,
		    uint32_t idx)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_inbox };
	int err;

	io->srv = srv;
	io->idx = idx;
	io->epfd = io->efd = -1;
	__cds_wfcq_init(&io->inbox_head, &io->inbox_tail);
	CDS_INIT_LIST_HEAD(&io->conns);
	CDS_INIT_LIST_HEAD(&io->flush);
	CDS_INIT_LIST_HEAD(&io->dead);
	CDS_INIT_LIST_HEAD(&io->unauth);
	io->max_unauth = srv->attr.max_unauth_conns / srv->nio;
	if (!io->max_unauth)
		io->max_unauth = 1;
	io->stage = malloc(STAGE_BYTES);
	if (!io->stage)
		return -ENOMEM;
	io->epfd = epoll_create1(EPOLL_CLOEXEC);
	io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (io->epfd < 0 || io->efd < 0 ||
	    epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->efd, &ev)) {
		err = -errno;
		goto close_fds;
	}
	listen_set(io, true);
	if (!io->listening) {
		err = -errno;
		goto close_fds;
	}
	if (srv->verbs && !idx) {
		/* Every verbs connection lives on I/O thread 0
		 * (verbs_listen.c). */
		ev.data.ptr = &tag_rdma_cm;
		err = embkvd_verbs_attach(srv, io, io->epfd, &ev);
		if (err)
			goto close_fds;
	}
	err = -pthread_create(&io->thread, NULL, io_main, io);
	if (err)
		goto close_fds;
	io->started = true;
	return 0;

close_fds:
	listen_set(io, false);
	embkvd_io_fini(io);
	return err;
}

void embkvd_io_stop(struct embkvd_io *io)
{
	uint64_t one = 1;

	if (!io->started)
		return;
	__atomic_store_n(&io->stop, true, __ATOMIC_RELEASE);
	while (write(io->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(io->thread, NULL);
	io->started = false;
}

void embkvd_io_fini(struct embkvd_io *io)
{
	struct cds_wfcq_node *node;

	/* Sockets still travelling to make room (the thread stopped before
	 * its inbox got them) are closed and uncounted; anything else left
	 * there was never going to run, as before. */
	if (io->srv && io->efd >= 0)
		while ((node = __cds_wfcq_dequeue_blocking(&io->inbox_head,
							   &io->inbox_tail))) {
			struct embkvd_done *d = caa_container_of(
				node, struct embkvd_done, node);

			if (d->finish == room_finish)
				room_refuse(io, caa_container_of(
					d, struct room_req, done));
		}
	if (io->efd >= 0)
		close(io->efd);
	if (io->epfd >= 0)
		close(io->epfd);
	io->epfd = io->efd = -1;
	free(io->stage);
	io->stage = NULL;
}
