/*
 * embkvd request service: what each whole frame does.
 *
 * What: authentication (HELLO, AUTH), table administration (TABLE_CREATE,
 * TABLE_DROP, TABLE_LIST, TABLE_OPEN, TABLE_SET_OPT) and routing: table operations go to
 * batch.c, STATS and SHARD_MAP to report.c, CKPT_* to ckpt.c's thread,
 * TABLE_REGIONS to regions.c (RDMA
 * connections only; over TCP it is ERROR -EOPNOTSUPP). One table indexed
 * by opcode (svc_ops) names each request's handler, so a new opcode is one
 * entry; an opcode without one is ERROR EMBKV_EOPCODE.
 *
 * Why here, on the I/O thread: these are small, rare requests that read
 * the RCU catalog or change it under its mutex; none touches a partition,
 * so none needs an owner thread.
 *
 * Invariants:
 * - Every body is decoded (so validated whole) by its codec decoder
 *   before anything acts on it; a malformed body gets ERROR and the
 *   connection stays usable (the body was read whole).
 * - With a token, nothing but HELLO then AUTH is served until AUTH
 *   verified the client's MAC (io.c refuses other opcodes before reading
 *   their body); any authentication failure closes the connection.
 * - Every request gets exactly one reply or ERROR with its request id.
 * - A request reaches a table only through embkvd_svc_table_get(): the id
 *   and the uid it carries must both be the table's, else the answer is
 *   EMBKV_ENOTABLE (a handle to a dropped or re-created table).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "server/daemon.h"
#include "server/ckpt.h"
#include "server/cluster.h"
#include "server/verbs.h"

/* Starts the reply to h, or answers -ENOMEM. */
static int reply_start(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		       size_t len, uint8_t **body)
{
	int rc = embkvd_conn_reply(c, h->request_id,
				   h->opcode | EMBKV_WIRE_OP_REPLY,
				   (uint32_t)len, body);

	if (rc)
		embkvd_conn_error(c, h->request_id, rc, false,
				  "cannot send a %zu-byte reply: %s", len,
				  embkv_strerror(rc));
	return rc;
}

static void bad_body(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		     int rc)
{
	embkvd_conn_error(c, h->request_id, rc, false, "bad %s body: %s",
			  embkv_wire_op_name(h->opcode), embkv_strerror(rc));
}

struct embkv_catalog_entry *embkvd_svc_table_find(struct embkvd_conn *c,
						  uint32_t id, uint64_t uid,
						  char *why, size_t why_len)
{
	struct embkv_catalog *cat = c->io->srv->cat;
	struct embkv_catalog_entry *e;
	bool known;

	rcu_read_lock();
	e = embkv_catalog_find_ref(cat, id, uid);
	if (e)
		embkv_catalog_entry_get(e);
	known = e || embkv_catalog_find_id(cat, id);
	rcu_read_unlock();
	if (e)
		return e;
	if (known)
		snprintf(why, why_len, "table %u was dropped or re-created "
			 "(uid mismatch): open it again", id);
	else
		snprintf(why, why_len, "no table with id %u (dropped, or never "
			 "created)", id);
	return NULL;
}

struct embkv_catalog_entry *embkvd_svc_table_get(struct embkvd_conn *c,
						 uint64_t req_id, uint32_t id,
						 uint64_t uid)
{
	char why[EMBKV_WIRE_ERRMSG_MAX + 1];
	struct embkv_catalog_entry *e;

	e = embkvd_svc_table_find(c, id, uid, why, sizeof(why));
	if (!e)
		embkvd_conn_error(c, req_id, EMBKV_ENOTABLE, false, "%s", why);
	return e;
}

/* Authentication (net/PROTOCOL.md section 8) ------------------------------ */

static void svc_hello(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		      const uint8_t *body)
{
	struct embkvd *s = c->io->srv;
	struct embkv_wire_hello m;
	uint8_t *out;
	int rc;

	rc = embkv_wire_hello_decode(body, h->body_len, &m);
	if (rc) {
		embkvd_conn_error(c, h->request_id, rc, s->auth,
				  "bad HELLO body");
		return;
	}
	if (s->auth && c->auth == EMBKVD_CONN_AUTH_WAIT_HELLO) {
		uint64_t ms = embkvd_guard_blocked_ms(s->guard, &c->peer_sa);

		if (ms) {
			embkv_stat_inc(&c->io->st.auth_failures, 1);
			embkvd_log("refusing HELLO from %s: too many failed "
				   "authentications, blocked %llu ms more",
				   c->peer, (unsigned long long)ms);
			embkvd_conn_error(c, h->request_id, EMBKV_EAUTH, true,
					  "too many failed authentications "
					  "from this address: retry in %llu ms",
					  (unsigned long long)ms);
			return;
		}
	}
	if (s->auth && c->auth != EMBKVD_CONN_AUTH_WAIT_HELLO) {
		bool fatal = c->auth != EMBKVD_CONN_AUTH_OK;

		embkvd_conn_error(c, h->request_id,
				  fatal ? EMBKV_EAUTH : EMBKV_EPROTO, fatal,
				  "HELLO out of order");
		return;
	}
	if (getrandom(c->server_nonce, sizeof(c->server_nonce), 0) !=
	    (ssize_t)sizeof(c->server_nonce)) {
		embkvd_conn_error(c, h->request_id, EMBKV_ESERVER, true,
				  "no random bytes for a nonce");
		return;
	}
	memcpy(c->client_nonce, m.nonce, sizeof(c->client_nonce));
	if (reply_start(c, h, EMBKV_WIRE_HELLO_SIZE, &out))
		return;
	memcpy(m.nonce, c->server_nonce, sizeof(m.nonce));
	embkv_wire_hello_encode(&m, out, EMBKV_WIRE_HELLO_SIZE);
	if (s->auth)
		c->auth = EMBKVD_CONN_AUTH_WAIT_AUTH;
}

static void auth_fail(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		      const char *why)
{
	embkv_stat_inc(&c->io->st.auth_failures, 1);
	embkvd_guard_note(c->io->srv->guard, &c->peer_sa, false);
	embkvd_log("authentication failed from %s: %s", c->peer, why);
	embkvd_conn_error(c, h->request_id, EMBKV_EAUTH, true,
			  "authentication failed: %s", why);
}

static void svc_auth(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		     const uint8_t *body)
{
	struct embkvd *s = c->io->srv;
	struct embkv_wire_auth_key key;
	struct embkv_wire_auth m;
	uint8_t *out;
	int bad;

	if (!s->auth) {
		/* Not a failed guess: no throttle, and a distinct status
		 * the client reports as such. */
		embkvd_log("refusing AUTH from %s: this server has no token "
			   "(the client has one)", c->peer);
		embkvd_conn_error(c, h->request_id, EMBKV_ETOKENUNEXPECTED, true,
				  "this server has no token, but the client "
				  "sent one");
		return;
	}
	if (c->auth == EMBKVD_CONN_AUTH_OK) {
		embkvd_conn_error(c, h->request_id, EMBKV_EPROTO, false,
				  "already authenticated");
		return;
	}
	if (c->auth != EMBKVD_CONN_AUTH_WAIT_AUTH) {
		auth_fail(c, h, "AUTH before HELLO");
		return;
	}
	if (embkv_wire_auth_decode(body, h->body_len, &m)) {
		auth_fail(c, h, "bad AUTH body");
		return;
	}
	/* One copy of the key, taken under key_lock (a SIGHUP may replace
	 * it meanwhile): the client's MAC and ours use the same token. */
	pthread_mutex_lock(&s->key_lock);
	key = s->key;
	pthread_mutex_unlock(&s->key_lock);
	bad = embkv_wire_auth_verify(&key, EMBKV_WIRE_AUTH_CLIENT,
				     c->server_nonce, c->client_nonce, m.mac);
	if (!bad)
		embkv_wire_auth_mac(&key, EMBKV_WIRE_AUTH_SERVER,
				    c->server_nonce, c->client_nonce, m.mac);
	embkv_wire_auth_key_wipe(&key);
	if (bad) {
		auth_fail(c, h, "wrong token");
		return;
	}
	embkvd_guard_note(s->guard, &c->peer_sa, true);
	if (embkvd_conn_authed(c))
		return; /* --max-conns reached: closing */
	if (reply_start(c, h, EMBKV_WIRE_AUTH_SIZE, &out))
		return;
	embkv_wire_auth_encode(&m, out, EMBKV_WIRE_AUTH_SIZE);
	c->auth = EMBKVD_CONN_AUTH_OK;
}

/* Tables ---------------------------------------------------------------------- */

static void svc_create(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		       const uint8_t *body)
{
	struct embkv_catalog *cat = c->io->srv->cat;
	struct embkv_wire_table_ref ref;
	struct embkv_table_attr a;
	uint8_t *out;
	int rc;

	if (c->io->srv->cluster) { /* created through etcd */
		embkvd_cluster_submit(c->io->srv->cluster, c, h, body);
		return;
	}
	rc = embkv_wire_table_attr_decode(body, h->body_len, &a);
	if (rc) {
		bad_body(c, h, rc);
		return;
	}
	rc = embkvd_table_add(c->io->srv, &a, 0, &ref.table_id,
			      &ref.uid);
	if (rc == -ENOMEM && embkv_catalog_memory_limit(cat)) {
		embkvd_conn_error(c, h->request_id, rc, false,
				  "table %s: over --memory-limit or out of "
				  "memory (%llu of %llu bytes in use)", a.name,
				  (unsigned long long)embkv_catalog_bytes(cat),
				  (unsigned long long)
					 embkv_catalog_memory_limit(cat));
		return;
	}
	if (rc) {
		embkvd_conn_error(c, h->request_id, rc, false, "table %s: %s",
				  a.name, embkv_strerror(rc));
		return;
	}
	embkvd_log("table %s created: id %u, uid %016llx, dim %u, "
		   "%u partitions, capacity %llu, %s", a.name, ref.table_id,
		   (unsigned long long)ref.uid, a.dim, a.partitions,
		   (unsigned long long)a.capacity,
		   embkv_optimizer_name(a.opt.type));
	if (reply_start(c, h, EMBKV_WIRE_TABLE_REF_SIZE, &out))
		return;
	embkv_wire_table_ref_encode(&ref, out, EMBKV_WIRE_TABLE_REF_SIZE);
}

static void svc_drop(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		     const uint8_t *body)
{
	char name[EMBKV_TABLE_NAME_MAX];
	uint8_t *out;
	int rc;

	if (c->io->srv->cluster) { /* dropped through etcd */
		embkvd_cluster_submit(c->io->srv->cluster, c, h, body);
		return;
	}
	rc = embkv_wire_name_decode(body, h->body_len, name);
	if (rc) {
		bad_body(c, h, rc);
		return;
	}
	rc = embkv_catalog_drop(c->io->srv->cat, name);
	if (rc) {
		embkvd_conn_error(c, h->request_id, rc, false, "table %s: %s",
				  name, embkv_strerror(rc));
		return;
	}
	embkvd_log("table %s dropped", name);
	reply_start(c, h, 0, &out);
}

static void svc_list(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		     const uint8_t *body)
{
	struct embkv_catalog_entry *const *e;
	struct embkv_wire_table_entry *list = NULL;
	uint8_t *out;
	size_t len;
	uint32_t n;
	int rc;

	rc = embkv_wire_empty_decode(body, h->body_len);
	if (rc) {
		bad_body(c, h, rc);
		return;
	}
	rcu_read_lock();
	n = embkv_catalog_snapshot(c->io->srv->cat, &e);
	if (n)
		list = calloc(n, sizeof(*list));
	for (uint32_t i = 0; list && i < n; i++) {
		list[i].table_id = e[i]->id;
		list[i].uid = e[i]->uid;
		list[i].dim = e[i]->table->attr.dim;
		memcpy(list[i].name, e[i]->table->attr.name,
		       EMBKV_TABLE_NAME_MAX);
	}
	rcu_read_unlock();
	rc = n && !list ? -ENOMEM : embkv_wire_table_list_size(list, n, &len);
	if (rc)
		embkvd_conn_error(c, h->request_id, rc, false,
				  "cannot list %u tables: %s", n,
				  embkv_strerror(rc));
	else if (!reply_start(c, h, len, &out))
		embkv_wire_table_list_encode(list, n, out, len);
	free(list);
}

static void svc_open(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		     const uint8_t *body)
{
	struct embkv_catalog_entry *e;
	struct embkv_wire_table_info info;
	char name[EMBKV_TABLE_NAME_MAX];
	uint8_t *out;
	size_t len;
	int rc;

	rc = embkv_wire_name_decode(body, h->body_len, name);
	if (rc) {
		bad_body(c, h, rc);
		return;
	}
	rcu_read_lock();
	e = embkv_catalog_find_name(c->io->srv->cat, name);
	if (e) {
		info.table_id = e->id;
		info.uid = e->uid;
		info.attr = e->table->attr;
		embkv_table_opt_get(e->table, &info.attr.opt); /* run-time */
	}
	rcu_read_unlock();
	if (!e) {
		embkvd_conn_miss(c, h->request_id, EMBKV_ENOTABLE,
				 "no table called %s", name);
		return;
	}
	rc = embkv_wire_table_info_size(&info, &len);
	if (rc)
		embkvd_conn_error(c, h->request_id, EMBKV_ESERVER, false,
				  "cannot encode table %s", name);
	else if (!reply_start(c, h, len, &out))
		embkv_wire_table_info_encode(&info, out, len);
}

/*
 * TABLE_SET_OPT: the table's optimizer hyper-parameters, changed in
 * place (embkv_table_opt_set: atomic per field, so owner threads pushing
 * meanwhile need no lock and no job). In a cluster coordinated by etcd
 * the values are then recorded in the table's record before the reply
 * (embkvd_cluster_set_opt), so a member that restarts or joins builds
 * the table with them.
 */
static void svc_set_opt(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
			const uint8_t *body)
{
	struct embkv_catalog_entry *e;
	struct embkv_wire_set_opt m;
	struct embkv_opt_attr old;
	uint8_t *out;
	int rc;

	rc = embkv_wire_set_opt_decode(body, h->body_len, &m);
	if (rc) {
		bad_body(c, h, rc);
		return;
	}
	e = embkvd_svc_table_get(c, h->request_id, m.table_id, m.uid);
	if (!e)
		return;
	embkv_table_opt_get(e->table, &old);
	rc = embkv_table_opt_set(e->table, &m.opt);
	if (rc) {
		embkvd_conn_error(c, h->request_id, rc, false,
				  "table %s: optimizer %s (type %u) with lr %g "
				  "refused: the type must be the table's and "
				  "the values valid for it", e->table->attr.name,
				  embkv_optimizer_name(m.opt.type),
				  (unsigned)m.opt.type, (double)m.opt.lr);
	} else {
		embkvd_log("table %s: %s lr %g -> %g", e->table->attr.name,
			   embkv_optimizer_name(old.type), (double)old.lr,
			   (double)m.opt.lr);
		if (c->io->srv->cluster) /* the reply once recorded */
			embkvd_cluster_set_opt(c->io->srv->cluster, c,
					       h->request_id,
					       e->table->attr.name, e->uid,
					       &m.opt);
		else
			reply_start(c, h, 0, &out);
	}
	embkv_catalog_entry_put(e);
}

/* TABLE_REGIONS: only verbs connections have regions to READ. */
static void svc_regions(struct embkvd_conn *c, uint64_t req_id,
			uint32_t table_id, uint64_t uid)
{
	if (!c->vc)
		embkvd_conn_error(c, req_id, -EOPNOTSUPP, false,
				  "TABLE_REGIONS is for RDMA connections only");
	else
		embkvd_verbs_table_regions(c, req_id, table_id, uid);
}

/* The handler of one request opcode; exactly one member is set. */
struct svc_op {
	/* Borrows body; svc_frame frees it. */
	void (*handle)(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		       const uint8_t *body);
	/* The body is a table reference, decoded here. */
	void (*table_ref)(struct embkvd_conn *c, uint64_t req_id,
			  uint32_t table_id, uint64_t uid);
	/* Takes ownership of body (table operations, batch.c). */
	void (*take)(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		     uint8_t *body, uint64_t t0_ns);
};

/* Indexed by opcode; request opcodes are below the reply bit, and an
 * opcode without an entry is not served (ERROR EMBKV_EOPCODE). */
static void svc_ckpt(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		     const uint8_t *body)
{
	embkvd_ckpt_submit(c->io->srv->ckpt, c, h, body);
}

static const struct svc_op svc_ops[EMBKV_WIRE_OP_REPLY] = {
	[EMBKV_WIRE_OP_HELLO] = { .handle = svc_hello },
	[EMBKV_WIRE_OP_AUTH] = { .handle = svc_auth },
	[EMBKV_WIRE_OP_TABLE_CREATE] = { .handle = svc_create },
	[EMBKV_WIRE_OP_TABLE_DROP] = { .handle = svc_drop },
	[EMBKV_WIRE_OP_TABLE_LIST] = { .handle = svc_list },
	[EMBKV_WIRE_OP_TABLE_OPEN] = { .handle = svc_open },
	[EMBKV_WIRE_OP_TABLE_REGIONS] = { .table_ref = svc_regions },
	[EMBKV_WIRE_OP_TABLE_SET_OPT] = { .handle = svc_set_opt },
	[EMBKV_WIRE_OP_PULL] = { .take = embkvd_batch_start },
	[EMBKV_WIRE_OP_PULL_LAND] = { .take = embkvd_batch_start },
	[EMBKV_WIRE_OP_PUSH] = { .take = embkvd_batch_start },
	[EMBKV_WIRE_OP_ASSIGN] = { .take = embkvd_batch_start },
	[EMBKV_WIRE_OP_ERASE] = { .take = embkvd_batch_start },
	[EMBKV_WIRE_OP_ACCUMULATE] = { .take = embkvd_batch_start },
	[EMBKV_WIRE_OP_MULTI_PULL] = { .take = embkvd_multi_start },
	[EMBKV_WIRE_OP_MULTI_PUSH] = { .take = embkvd_multi_start },
	[EMBKV_WIRE_OP_HITS] = { .take = embkvd_batch_start },
	[EMBKV_WIRE_OP_SCAN] = { .take = embkvd_batch_start },
	[EMBKV_WIRE_OP_STATS] = { .table_ref = embkvd_report_stats },
	[EMBKV_WIRE_OP_SHARD_MAP] = { .table_ref = embkvd_report_shard_map },
	[EMBKV_WIRE_OP_CONFIG] = { .handle = embkvd_report_config },
	[EMBKV_WIRE_OP_CKPT_PART] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_CKPT_COMMIT] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_CKPT_LOAD] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_CKPT_LIST] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_CKPT_GET] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_CKPT_VERIFY] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_CKPT_DELETE] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_MOVE_PREPARE] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_MOVE_SNAP] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_MOVE_READ] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_MOVE_WRITE] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_MOVE_APPLY] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_MOVE_FREEZE] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_MOVE_COMMIT] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_MOVE_ABORT] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_RECOVER] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_REPL_SNAP] = { .handle = svc_ckpt },
	[EMBKV_WIRE_OP_REPL_PULL] = { .handle = svc_ckpt },
};

void embkvd_svc_frame(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		      uint8_t *body, uint64_t t0_ns)
{
	const struct svc_op *op = h->opcode < EMBKV_WIRE_OP_REPLY ?
					  &svc_ops[h->opcode] : NULL;
	struct embkv_wire_table_ref ref;
	int rc;

	if (op && op->take) {
		op->take(c, h, body, t0_ns);
		return; /* body passed on */
	}
	if (op && op->handle) {
		op->handle(c, h, body);
	} else if (op && op->table_ref) {
		rc = embkv_wire_table_ref_decode(body, h->body_len, &ref);
		if (rc)
			bad_body(c, h, rc);
		else
			op->table_ref(c, h->request_id, ref.table_id, ref.uid);
	} else {
		embkvd_conn_error(c, h->request_id, EMBKV_EOPCODE, false,
				  "%s is not served",
				  embkv_wire_op_name(h->opcode));
	}
	free(body);
}
