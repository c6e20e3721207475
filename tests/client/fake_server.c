/*
 * The embkvd test double of fake_server.h.
 *
 * Deliberately simple: blocking sockets, a thread per connection, one
 * mutex around all state, the real store for rows (so optimizer results
 * are the server's own). Frames are read whole (header checked first)
 * and answered with the codec of net/wire.h. What it checks that a real
 * server would not: that every key of a batch belongs to a partition the
 * map gives this server (counted as misrouted otherwise).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/store.h"
#include "tests/client/fake_server.h"

#define MAX_TABLES 16u
#define MAX_CONNS 256u
#define TABLE_ID_STRIDE 100u
#define FAKE_UNKNOWN_STAT 999u /* a counter id no client knows */
#define LISTEN_BACKLOG 64

struct fake_table {
	int used;
	uint32_t id;
	uint64_t uid;  /* random, nonzero, as embkvd's */
	struct embkv_table_attr attr;
	struct embkv_table *store;
	uint64_t pulls;
};

struct fake_conn {
	struct fake_server *srv;
	int fd;
	pthread_t thread;
	int used;
};

struct fake_server {
	struct fake_cluster *fc;
	uint32_t index;
	int lfd;
	int dead;
	char addr[64];
	pthread_t accept_thread;
	uint64_t epoch_override;
	int reorder, silent;
	uint32_t next_id;
	struct fake_table tables[MAX_TABLES];
	struct fake_conn conns[MAX_CONNS];
	struct fake_counts counts;
};

struct fake_cluster {
	pthread_mutex_t lock;
	uint32_t n;
	uint64_t epoch;
	uint32_t shift;
	int has_key;
	struct embkv_wire_auth_key key;
	struct fake_server srv[FAKE_MAX_SERVERS];
};

static void die(const char *what)
{
	fprintf(stderr, "fake_server: %s: %s\n", what, strerror(errno));
	abort();
}

/* I/O ------------------------------------------------------------------------ */

static int read_full(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_full(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Replies ------------------------------------------------------------------ */

static uint8_t *frame_new(struct embkv_buf *b, uint8_t op, uint64_t req_id,
			  uint64_t epoch, size_t len)
{
	struct embkv_wire_hdr h = {
		.opcode = op, .request_id = req_id, .epoch = epoch,
		.body_len = (uint32_t)len,
	};
	uint8_t *body;

	embkv_buf_reset(b);
	if (embkv_wire_frame_start(b, &h, &body))
		die("frame_start");
	return body;
}

static void error_frame(struct embkv_buf *b, uint64_t req_id, uint64_t epoch,
			int status)
{
	struct embkv_wire_error e = {
		.status = status,
		.msg = { .ptr = "fake", .len = 4 },
	};
	size_t len;
	uint8_t *body;

	if (embkv_wire_error_size(&e, &len))
		die("error_size");
	body = frame_new(b, EMBKV_WIRE_OP_ERROR, req_id, epoch, len);
	if (embkv_wire_error_encode(&e, body, len))
		die("error_encode");
}

/* Called with the lock held. */
static uint64_t server_epoch(const struct fake_server *s)
{
	return s->epoch_override ? s->epoch_override : s->fc->epoch;
}

/* The table that id and uid name, as embkvd checks both. */
static struct fake_table *table_by_id(struct fake_server *s, uint32_t id,
				      uint64_t uid)
{
	for (uint32_t i = 0; i < MAX_TABLES; i++)
		if (s->tables[i].used && s->tables[i].id == id &&
		    s->tables[i].uid == uid)
			return &s->tables[i];
	return NULL;
}

static struct fake_table *table_by_name(struct fake_server *s,
					const char *name)
{
	for (uint32_t i = 0; i < MAX_TABLES; i++)
		if (s->tables[i].used && strcmp(s->tables[i].attr.name, name) == 0)
			return &s->tables[i];
	return NULL;
}

static uint32_t owner_of(const struct fake_cluster *fc, uint32_t part)
{
	return (part + fc->shift) % fc->n;
}

static void count_keys(struct fake_server *s, struct fake_table *t, uint8_t op,
		       uint32_t n, const uint64_t *keys)
{
	s->counts.keys[op] += n;
	for (uint32_t i = 0; i < n; i++)
		if (owner_of(s->fc, embkv_table_partition_of(t->store, keys[i])) !=
		    s->index)
			s->counts.misrouted++;
}

static void do_create(struct fake_server *s, const struct embkv_wire_hdr *h,
		      const uint8_t *body, struct embkv_buf *out)
{
	struct embkv_wire_table_ref ref;
	struct embkv_table_attr a;
	struct fake_table *t = NULL;
	uint64_t ep = server_epoch(s);
	int rc;

	rc = embkv_wire_table_attr_decode(body, h->body_len, &a);
	if (!rc && table_by_name(s, a.name))
		rc = EMBKV_ETABLEEXISTS;
	for (uint32_t i = 0; !rc && i < MAX_TABLES && !t; i++)
		if (!s->tables[i].used)
			t = &s->tables[i];
	if (!rc && !t)
		rc = -ENOSPC;
	if (!rc)
		rc = embkv_table_create(&a, &t->store);
	if (rc) {
		error_frame(out, h->request_id, ep, rc);
		return;
	}
	t->used = 1;
	t->attr = a;
	t->id = ++s->next_id;
	t->uid = 0;
	while (!t->uid)
		if (getrandom(&t->uid, sizeof(t->uid), 0) != sizeof(t->uid))
			die("getrandom");
	t->pulls = 0;
	ref.table_id = t->id;
	ref.uid = t->uid;
	embkv_wire_table_ref_encode(&ref,
				    frame_new(out, h->opcode | 0x80,
					      h->request_id, ep,
					      EMBKV_WIRE_TABLE_REF_SIZE),
				    EMBKV_WIRE_TABLE_REF_SIZE);
}

static void do_named(struct fake_server *s, const struct embkv_wire_hdr *h,
		     const uint8_t *body, struct embkv_buf *out)
{
	struct embkv_wire_table_info info;
	char name[EMBKV_TABLE_NAME_MAX];
	struct fake_table *t;
	uint64_t ep = server_epoch(s);
	size_t len;
	int rc;

	rc = embkv_wire_name_decode(body, h->body_len, name);
	t = rc ? NULL : table_by_name(s, name);
	if (!rc && !t)
		rc = EMBKV_ENOTABLE;
	if (rc) {
		error_frame(out, h->request_id, ep, rc);
		return;
	}
	if (h->opcode == EMBKV_WIRE_OP_TABLE_DROP) {
		embkv_table_destroy(t->store);
		memset(t, 0, sizeof(*t));
		frame_new(out, h->opcode | 0x80, h->request_id, ep, 0);
		return;
	}
	info.table_id = t->id;
	info.uid = t->uid;
	info.attr = t->attr;
	embkv_wire_table_info_size(&info, &len);
	embkv_wire_table_info_encode(&info, frame_new(out, h->opcode | 0x80,
						      h->request_id, ep, len),
				     len);
}

static void do_list(struct fake_server *s, const struct embkv_wire_hdr *h,
		    struct embkv_buf *out)
{
	struct embkv_wire_table_entry e[MAX_TABLES];
	uint32_t n = 0;
	size_t len;

	for (uint32_t i = 0; i < MAX_TABLES; i++) {
		if (!s->tables[i].used)
			continue;
		e[n].table_id = s->tables[i].id;
		e[n].uid = s->tables[i].uid;
		e[n].dim = s->tables[i].attr.dim;
		memcpy(e[n].name, s->tables[i].attr.name, sizeof(e[n].name));
		n++;
	}
	embkv_wire_table_list_size(e, n, &len);
	embkv_wire_table_list_encode(e, n, frame_new(out, h->opcode | 0x80,
						     h->request_id,
						     server_epoch(s), len),
				     len);
}

static void do_map(struct fake_server *s, const struct embkv_wire_hdr *h,
		   const uint8_t *body, struct embkv_buf *out)
{
	struct fake_cluster *fc = s->fc;
	const char *addrs[FAKE_MAX_SERVERS];
	struct embkv_wire_shard_map m;
	struct fake_table *t;
	struct embkv_wire_table_ref ref;
	uint16_t *ps;
	size_t len;
	int rc;

	rc = embkv_wire_table_ref_decode(body, h->body_len, &ref);
	t = rc ? NULL : table_by_id(s, ref.table_id, ref.uid);
	if (!t) {
		error_frame(out, h->request_id, server_epoch(s),
			    rc ? rc : EMBKV_ENOTABLE);
		return;
	}
	ps = malloc(t->attr.partitions * sizeof(*ps));
	if (!ps)
		die("malloc");
	for (uint32_t p = 0; p < t->attr.partitions; p++)
		ps[p] = (uint16_t)owner_of(fc, p);
	for (uint32_t i = 0; i < fc->n; i++)
		addrs[i] = fc->srv[i].addr;
	memset(&m, 0, sizeof(m));
	m.epoch = fc->epoch;
	m.table_id = ref.table_id;
	m.n_partitions = t->attr.partitions;
	m.n_servers = fc->n;
	m.part_server = ps;
	m.servers = addrs;
	embkv_wire_shard_map_size(&m, &len);
	embkv_wire_shard_map_encode(&m, frame_new(out, h->opcode | 0x80,
						  h->request_id,
						  server_epoch(s), len),
				    len);
	free(ps);
}

static void do_stats(struct fake_server *s, const struct embkv_wire_hdr *h,
		     struct embkv_buf *out)
{
	struct embkv_wire_stat st[MAX_TABLES + 1][4];
	struct embkv_wire_stats_group g[MAX_TABLES + 1];
	uint32_t n = 0;
	size_t len;

	st[0][0] = (struct embkv_wire_stat){ EMBKV_WIRE_STAT_CONNECTIONS,
					     s->counts.connections };
	st[0][1] = (struct embkv_wire_stat){ FAKE_UNKNOWN_STAT, 7 };
	g[n++] = (struct embkv_wire_stats_group){ EMBKV_WIRE_TABLE_ALL, 2,
						  st[0] };
	for (uint32_t i = 0; i < MAX_TABLES; i++) {
		struct embkv_table_stats ts;

		if (!s->tables[i].used)
			continue;
		embkv_table_get_stats(s->tables[i].store, &ts);
		st[n][0] = (struct embkv_wire_stat){ EMBKV_WIRE_STAT_ROWS,
						     ts.rows };
		st[n][1] = (struct embkv_wire_stat){ EMBKV_WIRE_STAT_CAPACITY,
						     ts.capacity };
		st[n][2] = (struct embkv_wire_stat){ EMBKV_WIRE_STAT_PULLS,
						     s->tables[i].pulls };
		st[n][3] = (struct embkv_wire_stat){ EMBKV_WIRE_STAT_INSERTS,
						     ts.sum.inserts };
		g[n] = (struct embkv_wire_stats_group){ s->tables[i].id, 4,
							st[n] };
		n++;
	}
	embkv_wire_stats_size(g, n, &len);
	embkv_wire_stats_encode(g, n, frame_new(out, h->opcode | 0x80,
						h->request_id, server_epoch(s),
						len),
				len);
}

static void do_batch(struct fake_server *s, const struct embkv_wire_hdr *h,
		     const uint8_t *body, struct embkv_buf *out)
{
	struct embkv_wire_count_reply cnt = { 0, 0 };
	struct embkv_wire_pull_req pr;
	struct embkv_wire_rows_req rr;
	struct embkv_wire_erase_req er;
	uint64_t ep = server_epoch(s);
	struct fake_table *t;
	uint8_t *found;
	float *vals;
	size_t len;
	int rc;

	if (embkv_wire_epoch_check(h, ep)) {
		s->counts.stale++;
		error_frame(out, h->request_id, ep, EMBKV_ESTALE);
		return;
	}
	switch (h->opcode) {
	case EMBKV_WIRE_OP_PULL:
		rc = embkv_wire_pull_req_decode(body, h->body_len, &pr);
		t = rc ? NULL : table_by_id(s, pr.table_id, pr.uid);
		if (!rc && !t)
			rc = EMBKV_ENOTABLE;
		if (!rc && pr.dim != t->attr.dim)
			rc = EMBKV_EDIM;
		if (rc)
			break;
		count_keys(s, t, h->opcode, pr.n, pr.keys);
		t->pulls++;
		embkv_wire_pull_reply_size(pr.n, pr.dim, &len);
		embkv_wire_pull_reply_prepare(pr.n, pr.dim,
					      frame_new(out, h->opcode | 0x80,
							h->request_id, ep, len),
					      len, &found, &vals);
		/* out was rewritten: pr.keys points into the request body,
		 * which is a different buffer. */
		embkv_table_pull(t->store, pr.n, pr.keys, vals, found,
				 pr.mode == EMBKV_WIRE_PULL_INFER ? EMBKV_PULL_INFER
								  : EMBKV_PULL_TRAIN,
				 NULL);
		return;
	case EMBKV_WIRE_OP_PUSH:
	case EMBKV_WIRE_OP_ASSIGN:
		rc = embkv_wire_rows_req_decode(body, h->body_len, &rr);
		t = rc ? NULL : table_by_id(s, rr.table_id, rr.uid);
		if (!rc && !t)
			rc = EMBKV_ENOTABLE;
		if (!rc && rr.dim != t->attr.dim)
			rc = EMBKV_EDIM;
		if (rc)
			break;
		count_keys(s, t, h->opcode, rr.n, rr.keys);
		cnt.done = h->opcode == EMBKV_WIRE_OP_PUSH
				   ? embkv_table_push(t->store, rr.n, rr.keys, rr.vals)
				   : embkv_table_assign(t->store, rr.n, rr.keys,
							rr.vals);
		cnt.skipped = rr.n - cnt.done;
		break;
	case EMBKV_WIRE_OP_ERASE:
		rc = embkv_wire_erase_req_decode(body, h->body_len, &er);
		t = rc ? NULL : table_by_id(s, er.table_id, er.uid);
		if (!rc && !t)
			rc = EMBKV_ENOTABLE;
		if (rc)
			break;
		count_keys(s, t, h->opcode, er.n, er.keys);
		cnt.done = embkv_table_erase(t->store, er.n, er.keys);
		cnt.skipped = er.n - cnt.done;
		break;
	default:
		rc = EMBKV_EOPCODE;
	}
	if (rc) {
		error_frame(out, h->request_id, ep, rc);
		return;
	}
	embkv_wire_count_reply_encode(&cnt, frame_new(out, h->opcode | 0x80,
						      h->request_id, ep, 8),
				      8);
}

/* Connections ------------------------------------------------------------- */

struct auth_state {
	int ok;
	uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE];
	uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE];
};

/* Returns 0 to go on, -1 to close after sending out. */
static int do_auth(struct fake_server *s, struct auth_state *as,
		   const struct embkv_wire_hdr *h, const uint8_t *body,
		   struct embkv_buf *out)
{
	struct fake_cluster *fc = s->fc;
	struct embkv_wire_hello hello;
	struct embkv_wire_auth auth;

	if (h->opcode == EMBKV_WIRE_OP_HELLO &&
	    !embkv_wire_hello_decode(body, h->body_len, &hello)) {
		memcpy(as->client_nonce, hello.nonce, sizeof(hello.nonce));
		if (getrandom(as->server_nonce, sizeof(as->server_nonce), 0) < 0)
			die("getrandom");
		memcpy(hello.nonce, as->server_nonce, sizeof(hello.nonce));
		embkv_wire_hello_encode(&hello, frame_new(out, h->opcode | 0x80,
							  h->request_id, 0, 32),
					32);
		return 0;
	}
	if (h->opcode == EMBKV_WIRE_OP_AUTH &&
	    !embkv_wire_auth_decode(body, h->body_len, &auth) &&
	    !embkv_wire_auth_verify(&fc->key, EMBKV_WIRE_AUTH_CLIENT,
				    as->server_nonce, as->client_nonce,
				    auth.mac)) {
		embkv_wire_auth_mac(&fc->key, EMBKV_WIRE_AUTH_SERVER,
				    as->server_nonce, as->client_nonce,
				    auth.mac);
		embkv_wire_auth_encode(&auth, frame_new(out, h->opcode | 0x80,
							h->request_id, 0,
							EMBKV_WIRE_AUTH_SIZE),
				       EMBKV_WIRE_AUTH_SIZE);
		as->ok = 1;
		return 0;
	}
	s->counts.auth_failures++;
	error_frame(out, h->request_id, 0, EMBKV_EAUTH);
	return -1;
}

static int handle(struct fake_server *s, struct auth_state *as,
		  const struct embkv_wire_hdr *h, const uint8_t *body,
		  struct embkv_buf *out)
{
	s->counts.frames[h->opcode]++;
	if (s->fc->has_key && !as->ok)
		return do_auth(s, as, h, body, out);
	switch (h->opcode) {
	case EMBKV_WIRE_OP_TABLE_CREATE:
		do_create(s, h, body, out);
		break;
	case EMBKV_WIRE_OP_TABLE_DROP:
	case EMBKV_WIRE_OP_TABLE_OPEN:
		do_named(s, h, body, out);
		break;
	case EMBKV_WIRE_OP_TABLE_LIST:
		do_list(s, h, out);
		break;
	case EMBKV_WIRE_OP_SHARD_MAP:
		do_map(s, h, body, out);
		break;
	case EMBKV_WIRE_OP_STATS:
		do_stats(s, h, out);
		break;
	default:
		do_batch(s, h, body, out);
	}
	return 0;
}

/* Whether another request comes within 50 ms (reordering: a reply is
 * held only while a later one can overtake it). Not just what is queued
 * already: a client descheduled between two pipelined frames would
 * otherwise never see a reply reordered, and a test that counts them
 * would fail by timing alone. */
static int more_input(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 50) > 0;
}

static void *conn_main(void *arg)
{
	struct fake_conn *fcn = arg;
	struct fake_server *s = fcn->srv;
	struct fake_cluster *fc = s->fc;
	struct embkv_buf held[FAKE_OPS];
	struct auth_state as = { 0 };
	uint8_t hdrb[EMBKV_WIRE_HDR_SIZE];
	struct embkv_buf in, out;
	struct embkv_wire_hdr h;
	uint32_t nheld = 0;

	embkv_buf_init(&in);
	embkv_buf_init(&out);
	for (;;) {
		int close_after, reorder, silent;
		uint8_t *body;

		if (read_full(fcn->fd, hdrb, sizeof(hdrb)))
			break;
		if (embkv_wire_hdr_decode(hdrb, sizeof(hdrb), &h))
			break;
		embkv_buf_reset(&in);
		if (embkv_buf_extend(&in, h.body_len ? h.body_len : 1, &body))
			die("buf");
		if (read_full(fcn->fd, body, h.body_len))
			break;
		pthread_mutex_lock(&fc->lock);
		close_after = handle(s, &as, &h, body, &out);
		reorder = s->reorder;
		silent = s->silent;
		pthread_mutex_unlock(&fc->lock);
		if (silent)
			continue;
		if (reorder && nheld < FAKE_OPS && more_input(fcn->fd)) {
			held[nheld++] = out; /* answered later, reversed */
			embkv_buf_init(&out);
			continue;
		}
		if (write_full(fcn->fd, out.data, out.len))
			break;
		if (nheld) {
			pthread_mutex_lock(&fc->lock);
			s->counts.reordered += nheld;
			pthread_mutex_unlock(&fc->lock);
		}
		while (nheld) {
			struct embkv_buf *b = &held[--nheld];

			if (write_full(fcn->fd, b->data, b->len))
				break;
			embkv_buf_destroy(b);
		}
		if (close_after)
			break;
	}
	while (nheld)
		embkv_buf_destroy(&held[--nheld]);
	embkv_buf_destroy(&in);
	embkv_buf_destroy(&out);
	shutdown(fcn->fd, SHUT_RDWR);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct fake_server *s = arg;
	struct fake_cluster *fc = s->fc;

	for (;;) {
		int fd = accept(s->lfd, NULL, NULL), one = 1;
		struct fake_conn *c = NULL;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pthread_mutex_lock(&fc->lock);
		for (uint32_t i = 0; i < MAX_CONNS && !c; i++)
			if (!s->conns[i].used)
				c = &s->conns[i];
		if (c && !s->dead) {
			c->used = 1;
			c->fd = fd;
			c->srv = s;
			s->counts.connections++;
			if (pthread_create(&c->thread, NULL, conn_main, c))
				die("pthread_create");
		} else {
			close(fd);
		}
		pthread_mutex_unlock(&fc->lock);
	}
	return NULL;
}

/* Cluster ------------------------------------------------------------------- */

static void server_start(struct fake_cluster *fc, uint32_t i)
{
	struct fake_server *s = &fc->srv[i];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);

	s->fc = fc;
	s->index = i;
	s->next_id = (i + 1) * TABLE_ID_STRIDE;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		die("socket");
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(s->lfd, LISTEN_BACKLOG) ||
	    getsockname(s->lfd, (struct sockaddr *)&sa, &slen))
		die("listen");
	snprintf(s->addr, sizeof(s->addr), "tcp://127.0.0.1:%u",
		 (unsigned)ntohs(sa.sin_port));
	if (pthread_create(&s->accept_thread, NULL, accept_main, s))
		die("pthread_create");
}

struct fake_cluster *fake_cluster_start(uint32_t n, const char *token)
{
	struct fake_cluster *fc = calloc(1, sizeof(*fc));

	if (!fc || n == 0 || n > FAKE_MAX_SERVERS)
		die("cluster");
	pthread_mutex_init(&fc->lock, NULL);
	fc->n = n;
	fc->epoch = 1;
	if (token && token[0]) {
		if (embkv_wire_auth_key_derive(token, strlen(token), &fc->key))
			die("key");
		fc->has_key = 1;
	}
	for (uint32_t i = 0; i < n; i++)
		server_start(fc, i);
	return fc;
}

/* Stops server i's threads; with the lock NOT held. */
static void server_stop(struct fake_cluster *fc, uint32_t i)
{
	struct fake_server *s = &fc->srv[i];

	pthread_mutex_lock(&fc->lock);
	if (s->dead) {
		pthread_mutex_unlock(&fc->lock);
		return;
	}
	s->dead = 1;
	shutdown(s->lfd, SHUT_RDWR);
	pthread_mutex_unlock(&fc->lock);
	pthread_join(s->accept_thread, NULL);
	close(s->lfd);
	for (uint32_t k = 0; k < MAX_CONNS; k++) {
		if (!s->conns[k].used)
			continue;
		shutdown(s->conns[k].fd, SHUT_RDWR);
		pthread_join(s->conns[k].thread, NULL);
		close(s->conns[k].fd);
		s->conns[k].used = 0;
	}
}

void fake_cluster_kill(struct fake_cluster *fc, uint32_t i)
{
	server_stop(fc, i);
}

void fake_cluster_stop(struct fake_cluster *fc)
{
	if (!fc)
		return;
	for (uint32_t i = 0; i < fc->n; i++) {
		server_stop(fc, i);
		for (uint32_t k = 0; k < MAX_TABLES; k++)
			if (fc->srv[i].tables[k].used)
				embkv_table_destroy(fc->srv[i].tables[k].store);
	}
	embkv_wire_auth_key_wipe(&fc->key);
	pthread_mutex_destroy(&fc->lock);
	free(fc);
}

const char *fake_cluster_addr(struct fake_cluster *fc, uint32_t i)
{
	return fc->srv[i].addr;
}

void fake_cluster_set_map(struct fake_cluster *fc, uint64_t epoch,
			  uint32_t shift)
{
	pthread_mutex_lock(&fc->lock);
	fc->epoch = epoch;
	fc->shift = shift;
	pthread_mutex_unlock(&fc->lock);
}

void fake_cluster_set_server_epoch(struct fake_cluster *fc, uint32_t i,
				   uint64_t epoch)
{
	pthread_mutex_lock(&fc->lock);
	fc->srv[i].epoch_override = epoch;
	pthread_mutex_unlock(&fc->lock);
}

void fake_cluster_set_reorder(struct fake_cluster *fc, uint32_t i, int on)
{
	pthread_mutex_lock(&fc->lock);
	fc->srv[i].reorder = on;
	pthread_mutex_unlock(&fc->lock);
}

void fake_cluster_set_silent(struct fake_cluster *fc, uint32_t i, int on)
{
	pthread_mutex_lock(&fc->lock);
	fc->srv[i].silent = on;
	pthread_mutex_unlock(&fc->lock);
}

void fake_cluster_counts(struct fake_cluster *fc, uint32_t i,
			 struct fake_counts *out)
{
	pthread_mutex_lock(&fc->lock);
	*out = fc->srv[i].counts;
	pthread_mutex_unlock(&fc->lock);
}

int fake_cluster_row(struct fake_cluster *fc, uint32_t i, const char *table,
		     uint64_t key, float *out)
{
	struct fake_table *t;
	uint8_t found = 0;

	pthread_mutex_lock(&fc->lock);
	t = table_by_name(&fc->srv[i], table);
	if (t)
		embkv_table_find(t->store, 1, &key, out, &found, NULL, NULL);
	pthread_mutex_unlock(&fc->lock);
	return found;
}

uint64_t fake_cluster_rows(struct fake_cluster *fc, const char *table)
{
	uint64_t rows = 0;

	pthread_mutex_lock(&fc->lock);
	for (uint32_t i = 0; i < fc->n; i++) {
		struct fake_table *t = table_by_name(&fc->srv[i], table);
		struct embkv_table_stats ts;

		if (!t)
			continue;
		embkv_table_get_stats(t->store, &ts);
		rows += ts.rows;
	}
	pthread_mutex_unlock(&fc->lock);
	return rows;
}
