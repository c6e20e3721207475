/*
 * libembkv: client lifetime, the server list and per-server connection
 * pools with the authentication handshake.
 *
 * Why a pool per server rather than one connection: a connection carries
 * one exchange at a time (its replies are matched by request id inside
 * that exchange), so concurrent calls (user threads, async workers) each
 * take their own connection and really overlap. Connections are opened on
 * demand up to max_conns per server and kept idle afterwards; a call that
 * finds every one busy waits (with its deadline) for one to come back. An
 * exchange takes its connections in increasing server order, so calls that
 * wait for each other cannot deadlock.
 *
 * Invariants: a pooled idle connection is authenticated and has no reply
 * pending; one found readable (peer closed, stray bytes) when taken is
 * dropped and replaced. nconns counts open connections, idle or taken.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "client/client.h"

#define MS_PER_S 1000u
#define NS_PER_MS 1000000L

static void server_destroy(struct embkv_server *s)
{
	struct embkv_cconn *cc, *next;

	if (!s)
		return;
	for (cc = s->idle; cc; cc = next) {
		next = cc->next;
		cc->tc->ops->close(cc->tc);
		embkv_rx_destroy(&cc->rx);
		free(cc);
	}
	pthread_cond_destroy(&s->freed);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int server_create(const char *addr, size_t len,
			 struct embkv_server **out)
{
	struct embkv_server *s;
	int rc;

	if (len == 0 || len > EMBKV_WIRE_ADDR_MAX)
		return len ? EMBKV_ELIMIT : -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	memcpy(s->addr, addr, len);
	rc = embkv_endpoint_parse(s->addr, &s->ep);
	if (rc)
		goto free_server;
	if (pthread_mutex_init(&s->lock, NULL)) {
		rc = -ENOMEM;
		goto free_server;
	}
	rc = embkv_cond_init_monotonic(&s->freed);
	if (rc)
		goto destroy_lock;
	*out = s;
	return 0;

destroy_lock:
	pthread_mutex_destroy(&s->lock);
free_server:
	free(s);
	return rc;
}

int embkv_cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t ca;
	int rc;

	if (pthread_condattr_init(&ca))
		return -ENOMEM;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
	return rc ? -rc : 0;
}

struct embkv_server *embkv_client_server(const struct embkv_client *c,
					 uint32_t index)
{
	uint32_t n = __atomic_load_n(&c->nservers, __ATOMIC_ACQUIRE);

	return index < n ? c->servers[index] : NULL;
}

uint32_t embkv_client_server_count(const struct embkv_client *c)
{
	return c ? __atomic_load_n(&c->nservers, __ATOMIC_ACQUIRE) : 0;
}

const char *embkv_client_server_addr(const struct embkv_client *c,
				     uint32_t index)
{
	struct embkv_server *s = c ? embkv_client_server(c, index) : NULL;

	return s ? s->addr : NULL;
}

int embkv_client_server_status(const struct embkv_client *c, uint32_t index)
{
	struct embkv_server *s = c ? embkv_client_server(c, index) : NULL;

	return s ? __atomic_load_n(&s->status, __ATOMIC_RELAXED) : -EINVAL;
}

void embkv_client_server_seen(struct embkv_client *c, uint32_t server,
			      int status)
{
	struct embkv_server *s = embkv_client_server(c, server);

	if (s)
		__atomic_store_n(&s->status, status, __ATOMIC_RELAXED);
}

void embkv_client_rpc_seen(struct embkv_client *c, const struct embkv_rpc *r)
{
	embkv_client_server_seen(c, r->server,
				 r->status && !r->has_reply ? r->status : 0);
}

static int name_is(const char *a, const char *name, size_t len)
{
	return strlen(a) == len && memcmp(a, name, len) == 0;
}

/* Called with c->lock held. */
static int server_lookup(struct embkv_client *c, const char *addr, size_t len,
			 uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (name_is(c->servers[i]->addr, addr, len) ||
		    (c->servers[i]->alias[0] &&
		     name_is(c->servers[i]->alias, addr, len)))
			return (int)i;
	return -1;
}

static int sockaddr_same(const struct addrinfo *a, const struct addrinfo *b)
{
	if (a->ai_family != b->ai_family)
		return 0;
	if (a->ai_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a->ai_addr;
		const struct sockaddr_in *y = (const void *)b->ai_addr;

		return x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ai_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a->ai_addr;
		const struct sockaddr_in6 *y = (const void *)b->ai_addr;

		return memcmp(&x->sin6_addr, &y->sin6_addr,
			      sizeof(x->sin6_addr)) == 0;
	}
	return 0;
}

/* 1 when the two host names resolve to a common address. */
static int hosts_same(const char *h1, const char *h2)
{
	struct addrinfo hints, *r1 = NULL, *r2 = NULL, *a, *b;
	int same = 0;

	if (strcasecmp(h1, h2) == 0)
		return 1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(h1, NULL, &hints, &r1))
		return 0;
	if (getaddrinfo(h2, NULL, &hints, &r2))
		goto free_r1;
	for (a = r1; a && !same; a = a->ai_next)
		for (b = r2; b && !same; b = b->ai_next)
			same = sockaddr_same(a, b);
	freeaddrinfo(r2);
free_r1:
	freeaddrinfo(r1);
	return same;
}

/* Called with c->lock held: a server that ep names under another name. */
static int server_resolve(struct embkv_client *c,
			  const struct embkv_endpoint *ep, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct embkv_endpoint *o = &c->servers[i]->ep;

		if (o->port == ep->port && strcmp(o->scheme, ep->scheme) == 0 &&
		    hosts_same(o->host, ep->host))
			return (int)i;
	}
	return -1;
}

int embkv_client_server_alias(struct embkv_client *c, uint32_t index,
			      const char *addr, size_t len)
{
	struct embkv_server *s;
	int i, rc = 0;

	if (len == 0 || len > EMBKV_WIRE_ADDR_MAX)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	s = index < c->nservers ? c->servers[index] : NULL;
	i = server_lookup(c, addr, len, c->nservers);
	if (!s || (i >= 0 && (uint32_t)i != index))
		rc = -EINVAL;
	else if (i < 0 && !s->alias[0])
		memcpy(s->alias, addr, len); /* alias is zeroed: NUL-ended */
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int embkv_client_server_find(struct embkv_client *c, const char *addr,
			     size_t len, uint32_t *index)
{
	char name[EMBKV_WIRE_ADDR_MAX + 1];
	struct embkv_endpoint ep;
	struct embkv_server *s;
	uint32_t n;
	int i, rc;

	if (len == 0 || len > EMBKV_WIRE_ADDR_MAX)
		return len ? EMBKV_ELIMIT : -EINVAL;
	memcpy(name, addr, len);
	name[len] = '\0';
	pthread_mutex_lock(&c->lock);
	n = c->nservers;
	i = server_lookup(c, name, len, n);
	if (i >= 0)
		goto found;
	rc = embkv_endpoint_parse(name, &ep);
	if (rc)
		goto unlock;
	i = server_resolve(c, &ep, n);
	if (i >= 0) {
		if (!c->servers[i]->alias[0])
			memcpy(c->servers[i]->alias, name, len + 1);
		goto found;
	}
	if (n >= EMBKV_WIRE_MAX_SERVERS) {
		rc = EMBKV_ELIMIT;
		goto unlock;
	}
	rc = server_create(name, len, &s);
	if (rc)
		goto unlock;
	c->servers[n] = s;
	__atomic_store_n(&c->nservers, n + 1, __ATOMIC_RELEASE);
	*index = n;
	goto unlock;
found:
	*index = (uint32_t)i;
	rc = 0;
unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Handshake ----------------------------------------------------------------- */

/* Sends one small pre-auth request and receives its reply into rx. */
static int hs_call(struct embkv_cconn *cc, uint8_t op, const uint8_t *body,
		   size_t len, uint64_t deadline)
{
	struct embkv_wire_hdr h = {
		.opcode = op,
		.body_len = (uint32_t)len,
		.request_id = cc->next_req_id++,
	};
	uint8_t frame[EMBKV_WIRE_HDR_SIZE + EMBKV_WIRE_NONCE_SIZE];
	struct embkv_wire_error err;
	int rc;

	if (len > sizeof(frame) - EMBKV_WIRE_HDR_SIZE ||
	    !embkv_wire_hdr_encode(&h, frame))
		return -EINVAL;
	memcpy(frame + EMBKV_WIRE_HDR_SIZE, body, len);
	rc = embkv_conn_send(cc->tc, frame, EMBKV_WIRE_HDR_SIZE + len, deadline);
	if (rc)
		return rc;
	embkv_rx_reset(&cc->rx);
	rc = embkv_conn_recv(cc->tc, &cc->rx, deadline);
	if (rc)
		return rc;
	if (cc->rx.hdr.request_id != h.request_id)
		return EMBKV_EPROTO;
	if (cc->rx.hdr.opcode == EMBKV_WIRE_OP_ERROR) {
		rc = embkv_wire_error_decode(cc->rx.buf.data +
					     EMBKV_WIRE_HDR_SIZE,
					     cc->rx.hdr.body_len, &err);
		return rc ? rc : err.status;
	}
	if (cc->rx.hdr.opcode != (op | EMBKV_WIRE_OP_REPLY))
		return EMBKV_EPROTO;
	return 0;
}

/* HELLO, AUTH, and the server's proof checked (net/PROTOCOL.md 8). */
static int handshake(struct embkv_client *c, struct embkv_cconn *cc,
		     uint64_t deadline)
{
	struct embkv_wire_hello mine, theirs;
	struct embkv_wire_auth auth, proof;
	uint8_t body[EMBKV_WIRE_NONCE_SIZE];
	const uint8_t *rbody;
	int rc;

	if (getrandom(mine.nonce, sizeof(mine.nonce), 0) !=
	    (ssize_t)sizeof(mine.nonce))
		return -EIO;
	rc = embkv_wire_hello_encode(&mine, body, sizeof(body));
	if (rc)
		return rc;
	rc = hs_call(cc, EMBKV_WIRE_OP_HELLO, body, EMBKV_WIRE_HELLO_SIZE,
		     deadline);
	if (rc)
		return rc;
	rbody = cc->rx.buf.data + EMBKV_WIRE_HDR_SIZE;
	rc = embkv_wire_hello_decode(rbody, cc->rx.hdr.body_len, &theirs);
	if (rc)
		return rc;
	rc = embkv_wire_auth_mac(&c->key, EMBKV_WIRE_AUTH_CLIENT, theirs.nonce,
				 mine.nonce, auth.mac);
	if (rc)
		return rc;
	rc = embkv_wire_auth_encode(&auth, body, sizeof(body));
	if (rc)
		return rc;
	rc = hs_call(cc, EMBKV_WIRE_OP_AUTH, body, EMBKV_WIRE_AUTH_SIZE,
		     deadline);
	if (rc)
		return rc;
	rbody = cc->rx.buf.data + EMBKV_WIRE_HDR_SIZE;
	rc = embkv_wire_auth_decode(rbody, cc->rx.hdr.body_len, &proof);
	if (rc)
		return rc;
	return embkv_wire_auth_verify(&c->key, EMBKV_WIRE_AUTH_SERVER,
				      theirs.nonce, mine.nonce, proof.mac);
}

static int conn_open(struct embkv_client *c, uint32_t server,
		     uint64_t deadline, struct embkv_cconn **out)
{
	struct embkv_server *s = embkv_client_server(c, server);
	uint64_t now = embkv_now_ms();
	uint32_t wait = c->connect_timeout_ms;
	struct embkv_cconn *cc;
	int rc;

	if (now >= deadline)
		return EMBKV_ETIMEDOUT;
	if (deadline - now < wait)
		wait = (uint32_t)(deadline - now);
	cc = calloc(1, sizeof(*cc));
	if (!cc)
		return -ENOMEM;
	cc->server = server;
	cc->next_req_id = 1;
	embkv_rx_init(&cc->rx, EMBKV_WIRE_MAX_PREAUTH_BODY);
	rc = s->ep.ops->connect(&s->ep, wait, &cc->tc);
	embkv_client_server_seen(c, server, rc);
	if (rc)
		goto free_conn;
	if (cc->tc->ops->limits) {
		pthread_mutex_lock(&s->lock);
		cc->tc->ops->limits(cc->tc, &s->limits);
		s->onesided = cc->tc->ops->post_reads != NULL;
		pthread_mutex_unlock(&s->lock);
	}
	if (c->has_key) {
		rc = handshake(c, cc, now + wait);
		embkv_client_server_seen(c, server, rc);
		if (rc)
			goto close_conn;
	}
	embkv_rx_destroy(&cc->rx);
	embkv_rx_init(&cc->rx, EMBKV_WIRE_MAX_BODY);
	*out = cc;
	return 0;

close_conn:
	cc->tc->ops->close(cc->tc);
free_conn:
	embkv_rx_destroy(&cc->rx);
	free(cc);
	return rc;
}

static void conn_free(struct embkv_cconn *cc)
{
	cc->tc->ops->close(cc->tc);
	embkv_rx_destroy(&cc->rx);
	free(cc);
}

/* An idle connection must have nothing to read: data or EOF means the
 * server closed it (restart, idle limit) or broke framing. */
static int conn_idle_ok(struct embkv_cconn *cc)
{
	struct pollfd pfd = {
		.fd = cc->tc->ops->poll_fd(cc->tc),
		.events = POLLIN,
	};

	if (cc->tc->ops->idle_check)
		return cc->tc->ops->idle_check(cc->tc) == 0;
	return poll(&pfd, 1, 0) == 0;
}

/* Waits on cond (a CLOCK_MONOTONIC one) until signalled or deadline:
 * 0 or EMBKV_ETIMEDOUT. Spurious wakeups are the caller's loop's. */
static int cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock,
			   uint64_t deadline)
{
	uint64_t now = embkv_now_ms();
	struct timespec ts;

	if (now >= deadline)
		return EMBKV_ETIMEDOUT;
	ts.tv_sec = (time_t)(deadline / MS_PER_S);
	ts.tv_nsec = (long)(deadline % MS_PER_S) * NS_PER_MS;
	pthread_cond_timedwait(cond, lock, &ts);
	return 0;
}

int embkv_client_conn_get(struct embkv_client *c, uint32_t server,
			  uint64_t deadline, struct embkv_cconn **out)
{
	struct embkv_server *s = embkv_client_server(c, server);
	struct embkv_cconn *cc;
	int rc;

	if (!s)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (s->idle) {
			cc = s->idle;
			s->idle = cc->next;
			if (conn_idle_ok(cc)) {
				pthread_mutex_unlock(&s->lock);
				cc->next = NULL;
				*out = cc;
				return 0;
			}
			s->nconns--;
			conn_free(cc);
		}
		if (s->nconns < c->max_conns)
			break;
		rc = cond_wait_until(&s->freed, &s->lock, deadline);
		if (rc) {
			pthread_mutex_unlock(&s->lock);
			return rc;
		}
	}
	s->nconns++;
	pthread_mutex_unlock(&s->lock);

	rc = conn_open(c, server, deadline, &cc);
	if (rc) {
		pthread_mutex_lock(&s->lock);
		s->nconns--;
		pthread_cond_signal(&s->freed);
		pthread_mutex_unlock(&s->lock);
		return rc;
	}
	*out = cc;
	return 0;
}

void embkv_client_conn_put(struct embkv_client *c, struct embkv_cconn *cc)
{
	struct embkv_server *s;

	if (!cc)
		return;
	s = embkv_client_server(c, cc->server);
	pthread_mutex_lock(&s->lock);
	if (cc->broken) {
		s->nconns--;
		conn_free(cc);
	} else {
		embkv_rx_reset(&cc->rx);
		cc->next = s->idle;
		s->idle = cc;
	}
	pthread_cond_signal(&s->freed);
	pthread_mutex_unlock(&s->lock);
}

void embkv_client_server_limits(struct embkv_client *c, uint32_t server,
				struct embkv_conn_limits *out, int *onesided)
{
	struct embkv_server *s = embkv_client_server(c, server);

	memset(out, 0, sizeof(*out));
	*onesided = 0;
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	*out = s->limits;
	*onesided = s->onesided && !c->no_onesided;
	pthread_mutex_unlock(&s->lock);
}

int embkv_client_counters(const struct embkv_client *c,
			  struct embkv_client_counters *out)
{
	const uint64_t *src;
	uint64_t *dst;

	if (!c || !out)
		return -EINVAL;
	src = (const uint64_t *)&c->cnt;
	dst = (uint64_t *)out;
	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	return 0;
}

uint64_t embkv_client_deadline(const struct embkv_client *c)
{
	return embkv_now_ms() + c->request_timeout_ms;
}

/* Lifetime ------------------------------------------------------------------ */

void embkv_client_attr_init(struct embkv_client_attr *attr)
{
	if (!attr)
		return;
	memset(attr, 0, sizeof(*attr));
	attr->connect_timeout_ms = EMBKV_CLIENT_CONNECT_MS_DEFAULT;
	attr->request_timeout_ms = EMBKV_CLIENT_REQUEST_MS_DEFAULT;
	attr->max_retries = EMBKV_CLIENT_RETRIES_DEFAULT;
	attr->max_conns_per_server = EMBKV_CLIENT_CONNS_DEFAULT;
	attr->async_threads = EMBKV_CLIENT_ASYNC_DEFAULT;
}

static int attr_check(const struct embkv_client_attr *a)
{
	if (!a->servers || a->nservers == 0 ||
	    (a->flags & ~EMBKV_CLIENT_ALLOW_DOWN))
		return -EINVAL;
	if (a->nservers > EMBKV_WIRE_MAX_SERVERS)
		return EMBKV_ELIMIT;
	if (a->max_conns_per_server > EMBKV_CLIENT_CONNS_MAX ||
	    a->async_threads > EMBKV_CLIENT_ASYNC_MAX)
		return -EINVAL;
	if (a->token && strnlen(a->token, EMBKV_CLIENT_TOKEN_MAX + 1) >
				EMBKV_CLIENT_TOKEN_MAX)
		return EMBKV_ELIMIT;
	for (uint32_t i = 0; i < a->nservers; i++)
		if (!a->servers[i])
			return -EINVAL;
	return 0;
}

/*
 * Connects (and authenticates) to servers [from, to) now, so that a wrong
 * address or token is reported at creation. Without allow_down the first
 * failure is returned; with it failures are only counted: *nup gets the
 * servers reached, *first the first error.
 */
static int connect_range(struct embkv_client *c, uint32_t from, uint32_t to,
			 int allow_down, uint32_t *nup, int *first)
{
	for (uint32_t i = from; i < to; i++) {
		struct embkv_cconn *cc;
		int rc = embkv_client_conn_get(c, i, embkv_now_ms() +
					       c->connect_timeout_ms, &cc);

		if (rc && !allow_down)
			return rc;
		if (rc) {
			if (!*first)
				*first = rc;
			continue;
		}
		embkv_client_conn_put(c, cc);
		(*nup)++;
	}
	return 0;
}

static uint32_t or_default(uint32_t v, uint32_t dflt)
{
	return v ? v : dflt;
}

int embkv_client_create(const struct embkv_client_attr *attr,
			struct embkv_client **out)
{
	int allow_down, first = 0;
	struct embkv_client *c;
	uint32_t i, nup = 0;
	int rc;

	if (!attr || !out)
		return -EINVAL;
	allow_down = !!(attr->flags & EMBKV_CLIENT_ALLOW_DOWN);
	rc = attr_check(attr);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->connect_timeout_ms = or_default(attr->connect_timeout_ms,
					   EMBKV_CLIENT_CONNECT_MS_DEFAULT);
	c->request_timeout_ms = or_default(attr->request_timeout_ms,
					   EMBKV_CLIENT_REQUEST_MS_DEFAULT);
	c->max_retries = attr->max_retries;
	c->max_conns = or_default(attr->max_conns_per_server,
				  EMBKV_CLIENT_CONNS_DEFAULT);
	c->async_threads = or_default(attr->async_threads,
				      EMBKV_CLIENT_ASYNC_DEFAULT);
	if (attr->token && attr->token[0]) {
		rc = embkv_wire_auth_key_derive(attr->token, strlen(attr->token),
						&c->key);
		if (rc)
			goto free_client;
		c->has_key = 1;
	}
	if (pthread_mutex_init(&c->lock, NULL)) {
		rc = -ENOMEM;
		goto wipe_key;
	}
	if (pthread_mutex_init(&c->pool.lock, NULL)) {
		pthread_mutex_destroy(&c->lock);
		rc = -ENOMEM;
		goto wipe_key;
	}
	c->servers = calloc(EMBKV_WIRE_MAX_SERVERS, sizeof(*c->servers));
	if (!c->servers) {
		rc = -ENOMEM;
		goto destroy_lock;
	}
	for (i = 0; i < attr->nservers; i++) {
		const char *a = attr->servers[i];
		size_t len = strnlen(a, EMBKV_WIRE_ADDR_MAX + 1);

		if (len > EMBKV_WIRE_ADDR_MAX) {
			rc = EMBKV_ELIMIT;
			goto free_servers;
		}
		if (server_lookup(c, a, len, c->nservers) >= 0) {
			rc = -EINVAL; /* the same server twice */
			goto free_servers;
		}
		/* Not server_find: attr's server i must get index i. */
		rc = server_create(a, len, &c->servers[i]);
		if (rc)
			goto free_servers;
		c->nservers = i + 1;
	}
	rc = embkv_async_create(c);
	if (rc)
		goto free_servers;
	/* The servers given, then the members they name, then those. */
	rc = connect_range(c, 0, attr->nservers, allow_down, &nup, &first);
	if (!rc)
		rc = embkv_members_learn(c, attr->nservers, allow_down);
	if (!rc)
		rc = connect_range(c, attr->nservers, c->nservers, allow_down,
				   &nup, &first);
	if (!rc && !nup)
		rc = first;
	if (rc)
		goto destroy_async;
	*out = c;
	return 0;

destroy_async:
	embkv_async_destroy(c);
free_servers:
	for (i = 0; i < c->nservers; i++)
		server_destroy(c->servers[i]);
	free(c->servers);
destroy_lock:
	pthread_mutex_destroy(&c->pool.lock);
	pthread_mutex_destroy(&c->lock);
wipe_key:
	embkv_wire_auth_key_wipe(&c->key);
free_client:
	free(c);
	return rc;
}

void embkv_client_destroy(struct embkv_client *c)
{
	uint32_t i;

	if (!c)
		return;
	embkv_async_destroy(c);
	for (i = 0; i < c->nservers; i++)
		server_destroy(c->servers[i]);
	free(c->servers);
	for (i = 0; i < c->pool.n; i++)
		embkv_buf_destroy(&c->pool.bufs[i]);
	pthread_mutex_destroy(&c->pool.lock);
	pthread_mutex_destroy(&c->lock);
	embkv_wire_auth_key_wipe(&c->key);
	free(c);
}

void embkv_client_buf_take(struct embkv_client *c, struct embkv_buf *b)
{
	if (b->cap)
		return;
	pthread_mutex_lock(&c->pool.lock);
	if (c->pool.n) {
		*b = c->pool.bufs[--c->pool.n];
		c->pool.bytes -= b->cap;
		b->len = 0;
	}
	pthread_mutex_unlock(&c->pool.lock);
}

void embkv_client_buf_give(struct embkv_client *c, struct embkv_buf *b)
{
	if (!b->cap) {
		embkv_buf_destroy(b);
		return;
	}
	pthread_mutex_lock(&c->pool.lock);
	if (c->pool.n < EMBKV_BUFPOOL_MAX &&
	    b->cap <= EMBKV_BUFPOOL_BYTES - c->pool.bytes) {
		c->pool.bufs[c->pool.n++] = *b;
		c->pool.bytes += b->cap;
		embkv_buf_init(b);
	}
	pthread_mutex_unlock(&c->pool.lock);
	embkv_buf_destroy(b); /* a no-op when it was kept */
}
