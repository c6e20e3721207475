/*
 * Tables from the client's side: create, drop, list and locate on every
 * server, open (attributes, per-server table ids, shard map), and shard
 * map refresh.
 *
 * Table ids and uids are per server (each server numbers its own tables
 * and draws their uids), so a handle keeps the table's id and uid on every
 * server of its map; a map that names a server for the first time opens
 * the table there before it is published. A server already known is never
 * asked again: every frame carries the id and uid learned at open, and a
 * server that dropped or re-created the table answers EMBKV_ENOTABLE,
 * which the call returns (the user opens the table again, by name).
 *
 * Maps are immutable and reference-counted: an operation works on one map
 * for a whole round and a refresh swaps the handle's pointer under its
 * lock. Invariant: a published map has a valid table id and uid for every
 * one of its servers, and its partition count is the table's.
 *
 * Create is all or nothing across the cluster (static peers, no
 * coordinator): every server is asked whether it has the table first, so
 * a server that is down, or a table some servers have and others not,
 * stops it before anything is created; a create that then fails
 * somewhere is dropped again where it succeeded. A missing part is never
 * created afresh beside existing ones: its rows would silently come back
 * re-initialised.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/batch.h"
#include "client/client.h"
#include "hashing/record.h"

/* Shard maps --------------------------------------------------------------- */

static void map_free(struct embkv_shardmap *m)
{
	if (!m)
		return;
	free(m->part_srv);
	free(m->srv);
	free(m->tref);
	free(m);
}

struct embkv_shardmap *embkv_shardmap_get(struct embkv_table_handle *t)
{
	struct embkv_shardmap *m;

	pthread_mutex_lock(&t->lock);
	m = t->map;
	__atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&t->lock);
	return m;
}

void embkv_shardmap_put(struct embkv_shardmap *m)
{
	if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
		map_free(m);
}

/* The attributes that placement and framing depend on must agree. */
static int attr_same(const struct embkv_table_attr *a,
		     const struct embkv_table_attr *b)
{
	if (a->dim != b->dim)
		return EMBKV_EDIM;
	if (a->partitions != b->partitions || a->hash_seed != b->hash_seed ||
	    a->dtype != b->dtype)
		return EMBKV_EPROTO;
	return 0;
}

static int name_rpc(struct embkv_rpc *r, uint8_t op, const char *name)
{
	size_t len;
	uint8_t *body;
	int rc;

	rc = embkv_wire_name_size(name, &len);
	if (rc)
		return rc;
	rc = embkv_rpc_frame(r, op, 0, len, &body);
	if (rc)
		return rc;
	return embkv_wire_name_encode(name, body, len);
}

static int ref_rpc(struct embkv_rpc *r, uint8_t op,
		   const struct embkv_wire_table_ref *ref)
{
	uint8_t *body;
	int rc;

	rc = embkv_rpc_frame(r, op, 0, EMBKV_WIRE_TABLE_REF_SIZE, &body);
	if (rc)
		return rc;
	return embkv_wire_table_ref_encode(ref, body,
					   EMBKV_WIRE_TABLE_REF_SIZE);
}

static void rpcs_clear(struct embkv_rpc *rpcs, uint32_t n)
{
	for (uint32_t i = 0; rpcs && i < n; i++)
		embkv_rpc_clear(&rpcs[i]);
	free(rpcs);
}

/*
 * Opens name on each server of servers[0..n): refs[i] gets its id and uid,
 * or id EMBKV_NO_TABLE and st[i] the error. The first attributes seen go
 * to *attr when have_attr is 0 (then set); later ones must agree.
 */
static int open_on(struct embkv_client *c, const char *name,
		   const uint32_t *servers, uint32_t n,
		   struct embkv_wire_table_ref *refs, int *st,
		   struct embkv_table_attr *attr, int *have_attr)
{
	struct embkv_wire_table_info info;
	struct embkv_rpc *rpcs;
	uint32_t i;
	int rc;

	rpcs = calloc(n ? n : 1, sizeof(*rpcs));
	if (!rpcs)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		embkv_rpc_init(&rpcs[i], servers[i]);
		rc = name_rpc(&rpcs[i], EMBKV_WIRE_OP_TABLE_OPEN, name);
		if (rc)
			goto clear;
	}
	rc = embkv_rpc_exchange(c, rpcs, n, embkv_client_deadline(c));
	if (rc)
		goto clear;
	for (i = 0; i < n; i++) {
		refs[i].table_id = EMBKV_NO_TABLE;
		refs[i].uid = 0;
		st[i] = rpcs[i].status;
		if (st[i])
			continue;
		st[i] = embkv_wire_table_info_decode(rpcs[i].body,
						     rpcs[i].body_len, &info);
		if (!st[i] && *have_attr)
			st[i] = attr_same(attr, &info.attr);
		if (!st[i] && !*have_attr) {
			st[i] = embkv_table_attr_check(&info.attr) ? EMBKV_EPROTO
								   : 0;
			if (!st[i]) {
				*attr = info.attr;
				*have_attr = 1;
			}
		}
		if (!st[i] && info.table_id == EMBKV_NO_TABLE)
			st[i] = EMBKV_EPROTO; /* no table's id */
		if (!st[i]) {
			refs[i].table_id = info.table_id;
			refs[i].uid = info.uid;
		}
	}
clear:
	rpcs_clear(rpcs, n);
	return rc;
}

static int queued(const uint32_t *todo, uint32_t n, uint32_t s)
{
	for (uint32_t i = 0; i < n; i++)
		if (todo[i] == s)
			return 1;
	return 0;
}

/*
 * Builds a map from a SHARD_MAP reply body. known[s] is the table's id and
 * uid on client server s, or id EMBKV_NO_TABLE (an array of
 * EMBKV_WIRE_MAX_SERVERS); servers not known are opened first.
 */
static int map_build(struct embkv_table_handle *t, const uint8_t *body,
		     size_t len, struct embkv_wire_table_ref *known,
		     struct embkv_shardmap **out)
{
	struct embkv_client *c = t->c;
	struct embkv_wire_table_ref *refs = NULL;
	struct embkv_wire_shard_map wm;
	struct embkv_wire_str addr;
	struct embkv_shardmap *m;
	uint32_t *todo = NULL, ntodo = 0, i;
	int *st = NULL, have = 1, rc;

	rc = embkv_wire_shard_map_decode(body, len, &wm);
	if (rc)
		return rc;
	if (wm.n_partitions != t->attr.partitions)
		return EMBKV_EPROTO;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->epoch = wm.epoch;
	m->nparts = wm.n_partitions;
	m->part_bits = embkv_batch_part_bits(wm.n_partitions);
	m->nsrv = wm.n_servers;
	m->refs = 1;
	m->part_srv = malloc((size_t)m->nparts * sizeof(*m->part_srv));
	m->srv = malloc((size_t)m->nsrv * sizeof(*m->srv));
	m->tref = malloc((size_t)m->nsrv * sizeof(*m->tref));
	todo = malloc((size_t)m->nsrv * sizeof(*todo));
	refs = malloc((size_t)m->nsrv * sizeof(*refs));
	st = malloc((size_t)m->nsrv * sizeof(*st));
	if (!m->part_srv || !m->srv || !m->tref || !todo || !refs || !st) {
		rc = -ENOMEM;
		goto fail;
	}
	memcpy(m->part_srv, wm.part_server, (size_t)m->nparts * sizeof(uint16_t));
	for (i = 0; embkv_wire_shard_map_next_server(&wm, &addr); i++) {
		rc = embkv_client_server_find(c, addr.ptr, addr.len, &m->srv[i]);
		if (rc)
			goto fail;
		m->tref[i] = known[m->srv[i]];
		if (m->tref[i].table_id == EMBKV_NO_TABLE &&
		    !queued(todo, ntodo, m->srv[i]))
			todo[ntodo++] = m->srv[i];
	}
	if (ntodo) {
		rc = open_on(c, t->attr.name, todo, ntodo, refs, st, &t->attr,
			     &have);
		if (rc)
			goto fail;
		for (i = 0; i < ntodo; i++) {
			if (st[i]) {
				rc = st[i];
				goto fail;
			}
			known[todo[i]] = refs[i];
		}
		for (i = 0; i < m->nsrv; i++)
			m->tref[i] = known[m->srv[i]];
	}
	free(st);
	free(refs);
	free(todo);
	*out = m;
	return 0;

fail:
	free(st);
	free(refs);
	free(todo);
	map_free(m);
	return rc;
}

/* Asks server for the map (the table known[server] there) and builds it. */
static int map_fetch(struct embkv_table_handle *t, uint32_t server,
		     struct embkv_wire_table_ref *known,
		     struct embkv_shardmap **out)
{
	struct embkv_rpc r;
	int rc;

	embkv_rpc_init(&r, server);
	rc = ref_rpc(&r, EMBKV_WIRE_OP_SHARD_MAP, &known[server]);
	if (!rc)
		rc = embkv_rpc_exchange(t->c, &r, 1, embkv_client_deadline(t->c));
	if (!rc)
		rc = r.status;
	if (!rc)
		rc = map_build(t, r.body, r.body_len, known, out);
	embkv_rpc_clear(&r);
	return rc;
}

static struct embkv_wire_table_ref *known_alloc(void)
{
	struct embkv_wire_table_ref *known;

	known = malloc(EMBKV_WIRE_MAX_SERVERS * sizeof(*known));
	if (known)
		for (uint32_t i = 0; i < EMBKV_WIRE_MAX_SERVERS; i++) {
			known[i].table_id = EMBKV_NO_TABLE;
			known[i].uid = 0;
		}
	return known;
}

int embkv_shardmap_refresh(struct embkv_table_handle *t, uint32_t hint,
			   int *newer)
{
	struct embkv_shardmap *cur = embkv_shardmap_get(t), *m = NULL;
	struct embkv_wire_table_ref *known;
	uint32_t i, k;
	int rc = EMBKV_ETIMEDOUT;

	*newer = 0;
	known = known_alloc();
	if (!known) {
		rc = -ENOMEM;
		goto put_cur;
	}
	for (i = 0; i < cur->nsrv; i++)
		known[cur->srv[i]] = cur->tref[i];
	/* The hint (the server that said we are stale) first, then the
	 * others in map order, until one answers. */
	for (k = 0; k <= cur->nsrv; k++) {
		uint32_t s;

		if (k == 0) {
			if (hint == UINT32_MAX ||
			    known[hint].table_id == EMBKV_NO_TABLE)
				continue;
			s = hint;
		} else {
			s = cur->srv[k - 1];
			if (s == hint)
				continue;
		}
		rc = map_fetch(t, s, known, &m);
		if (!rc)
			break;
		if (rc == -ENOMEM)
			goto free_known;
	}
	if (rc)
		goto free_known;
	pthread_mutex_lock(&t->lock);
	if (m->epoch > t->map->epoch) {
		embkv_shardmap_put(t->map);
		t->map = m;
		m = NULL;
		*newer = 1;
	}
	pthread_mutex_unlock(&t->lock);
	embkv_shardmap_put(m);
free_known:
	free(known);
put_cur:
	embkv_shardmap_put(cur);
	return rc;
}

/* Open and close ------------------------------------------------------------- */

int embkv_table_open(struct embkv_client *c, const char *name,
		     struct embkv_table_handle **out)
{
	struct embkv_wire_table_ref *refs = NULL, *known = NULL;
	struct embkv_table_handle *t;
	uint32_t n, i, src = UINT32_MAX, *servers = NULL;
	int *st = NULL, have = 0, rc;
	size_t len;

	if (!c || !name || !out)
		return -EINVAL;
	rc = embkv_wire_name_size(name, &len);
	if (rc)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->c = c;
	if (pthread_mutex_init(&t->lock, NULL)) {
		free(t);
		return -ENOMEM;
	}
	n = embkv_client_server_count(c);
	servers = calloc(n, sizeof(*servers));
	refs = calloc(n, sizeof(*refs));
	st = calloc(n, sizeof(*st));
	known = known_alloc();
	if (!servers || !refs || !st || !known) {
		rc = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < n; i++)
		servers[i] = i;
	rc = open_on(c, name, servers, n, refs, st, &t->attr, &have);
	if (rc)
		goto fail;
	for (i = 0; i < n; i++) {
		if (!st[i] && src == UINT32_MAX)
			src = i;
		if (!st[i])
			known[i] = refs[i];
	}
	if (src == UINT32_MAX) {
		/* Nowhere: ENOTABLE unless something else went wrong. */
		rc = EMBKV_ENOTABLE;
		for (i = 0; i < n; i++)
			if (st[i] != EMBKV_ENOTABLE) {
				rc = st[i];
				break;
			}
		goto fail;
	}
	rc = map_fetch(t, src, known, &t->map);
	if (rc)
		goto fail;
	t->row_bytes = (size_t)t->attr.dim * sizeof(float);
	t->payload_bytes = (size_t)t->attr.dim *
			   embkv_dtype_size(t->attr.dtype);
	t->rec_len = (uint32_t)(EMBKV_RECORD_HDR_BYTES + t->payload_bytes);
	t->rows_cap = embkv_wire_max_rows(t->attr.dim);
	if (c->rows_cap && c->rows_cap < t->rows_cap)
		t->rows_cap = c->rows_cap;
	rc = embkv_onesided_open(t);
	if (rc) {
		embkv_shardmap_put(t->map);
		goto fail;
	}
	free(known);
	free(st);
	free(refs);
	free(servers);
	*out = t;
	return 0;

fail:
	free(known);
	free(st);
	free(refs);
	free(servers);
	pthread_mutex_destroy(&t->lock);
	free(t);
	return rc;
}

void embkv_table_close(struct embkv_table_handle *t)
{
	if (!t)
		return;
	embkv_onesided_close(t);
	embkv_shardmap_put(t->map);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

const struct embkv_table_attr *embkv_table_attr_get(
	const struct embkv_table_handle *t)
{
	return t ? &t->attr : NULL;
}

int embkv_table_uid(struct embkv_table_handle *t, uint32_t server,
		    uint32_t *id, uint64_t *uid)
{
	struct embkv_shardmap *m;
	int rc = -ENOENT;

	if (!t)
		return -EINVAL;
	m = embkv_shardmap_get(t);
	for (uint32_t i = 0; i < m->nsrv; i++) {
		if (m->srv[i] != server)
			continue;
		if (id)
			*id = m->tref[i].table_id;
		if (uid)
			*uid = m->tref[i].uid;
		rc = 0;
		break;
	}
	embkv_shardmap_put(m);
	return rc;
}

int embkv_table_map(struct embkv_table_handle *t, uint64_t *epoch,
		    uint16_t *part_server, uint32_t nparts)
{
	struct embkv_shardmap *m;

	if (!t)
		return -EINVAL;
	m = embkv_shardmap_get(t);
	if (nparts != m->nparts) {
		embkv_shardmap_put(m);
		return -EINVAL;
	}
	if (epoch)
		*epoch = m->epoch;
	for (uint32_t p = 0; part_server && p < nparts; p++)
		part_server[p] = (uint16_t)m->srv[m->part_srv[p]];
	embkv_shardmap_put(m);
	return 0;
}

/* Create, drop, list ------------------------------------------------------- */

/*
 * One rpc per server of servers[0..n) (NULL: servers 0..n-1), each built
 * by fill; exchanged, and each server's answer recorded
 * (embkv_client_server_status).
 */
static int exchange_on(struct embkv_client *c, const uint32_t *servers,
		       uint32_t n, struct embkv_rpc **out,
		       int (*fill)(struct embkv_rpc *r, const void *arg),
		       const void *arg)
{
	struct embkv_rpc *rpcs = calloc(n ? n : 1, sizeof(*rpcs));
	uint32_t i;
	int rc = 0;

	if (!rpcs)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		embkv_rpc_init(&rpcs[i], servers ? servers[i] : i);
	for (i = 0; i < n && !rc; i++)
		rc = fill(&rpcs[i], arg);
	if (!rc)
		rc = embkv_rpc_exchange(c, rpcs, n, embkv_client_deadline(c));
	if (rc) {
		rpcs_clear(rpcs, n);
		return rc;
	}
	for (i = 0; i < n; i++)
		embkv_client_rpc_seen(c, &rpcs[i]);
	*out = rpcs;
	return 0;
}

/* One rpc per known server, each built by fill; exchanged. */
static int all_servers(struct embkv_client *c, struct embkv_rpc **out,
		       uint32_t *nout,
		       int (*fill)(struct embkv_rpc *r, const void *arg),
		       const void *arg)
{
	uint32_t n = embkv_client_server_count(c);
	int rc = exchange_on(c, NULL, n, out, fill, arg);

	if (!rc)
		*nout = n;
	return rc;
}

static int fill_create(struct embkv_rpc *r, const void *arg)
{
	const struct embkv_table_attr *a = arg;
	uint8_t *body;
	size_t len;
	int rc;

	rc = embkv_wire_table_attr_size(a, &len);
	if (!rc)
		rc = embkv_rpc_frame(r, EMBKV_WIRE_OP_TABLE_CREATE, 0, len,
				     &body);
	if (!rc)
		rc = embkv_wire_table_attr_encode(a, body, len);
	return rc;
}

static int fill_drop(struct embkv_rpc *r, const void *arg)
{
	return name_rpc(r, EMBKV_WIRE_OP_TABLE_DROP, arg);
}

/* True for a status that means the request never reached the server. */
static bool not_sent(int status)
{
	return status == -ECONNREFUSED || status == -EHOSTUNREACH ||
	       status == -ENETUNREACH || status == -ENOTCONN;
}

/*
 * A cluster whose tables etcd coordinates: the first member that answers
 * runs the create or drop for the whole cluster (all or nothing there),
 * and its status is the call's. Only a member that could not be reached
 * is skipped: a request that was sent and not answered in time may still
 * take effect, so it is not sent again elsewhere (its error is returned;
 * embkv_table_locate() says what became of it).
 */
static int one_member(struct embkv_client *c,
		      int (*fill)(struct embkv_rpc *r, const void *arg),
		      const void *arg)
{
	uint32_t n = embkv_client_server_count(c);
	int rc = -ENOTCONN;

	for (uint32_t i = 0; i < n; i++) {
		struct embkv_rpc *rpcs;

		rc = exchange_on(c, &i, 1, &rpcs, fill, arg);
		if (rc) {
			if (not_sent(rc))
				continue;
			return rc;
		}
		rc = rpcs[0].status;
		rpcs_clear(rpcs, 1);
		if (!not_sent(rc))
			return rc;
	}
	return rc;
}

static int fill_open(struct embkv_rpc *r, const void *arg)
{
	return name_rpc(r, EMBKV_WIRE_OP_TABLE_OPEN, arg);
}

static int fill_list(struct embkv_rpc *r, const void *arg)
{
	uint8_t *body;

	(void)arg;
	return embkv_rpc_frame(r, EMBKV_WIRE_OP_TABLE_LIST, 0, 0, &body);
}

/*
 * Combines the per-server results of an operation sent everywhere: the
 * first error other than soft; else soft when every server said soft;
 * else 0.
 */
static int combine(const struct embkv_rpc *rpcs, uint32_t n, int soft)
{
	uint32_t i, nsoft = 0;

	for (i = 0; i < n; i++) {
		if (rpcs[i].status == soft)
			nsoft++;
		else if (rpcs[i].status)
			return rpcs[i].status;
	}
	return nsoft && nsoft == n ? soft : 0;
}

/* Every attribute the same (the name included). */
static int attr_equal(const struct embkv_table_attr *a,
		      const struct embkv_table_attr *b)
{
	const struct embkv_opt_attr *x = &a->opt, *y = &b->opt;

	return strcmp(a->name, b->name) == 0 && a->dim == b->dim &&
	       a->dtype == b->dtype && a->partitions == b->partitions &&
	       a->capacity == b->capacity && x->type == y->type &&
	       x->lr == y->lr && x->beta1 == y->beta1 &&
	       x->beta2 == y->beta2 && x->eps == y->eps &&
	       x->initial_accum == y->initial_accum && x->l1 == y->l1 &&
	       x->l2 == y->l2 && x->ftrl_beta == y->ftrl_beta &&
	       a->init.type == b->init.type && a->init.a == b->init.a &&
	       a->init.b == b->init.b && a->init.seed == b->init.seed &&
	       a->admit_after == b->admit_after &&
	       a->lfu_decay_period == b->lfu_decay_period &&
	       a->hash_seed == b->hash_seed &&
	       a->index_load == b->index_load && a->flags == b->flags;
}

/*
 * TABLE_OPEN name on every server: *st gets a malloc'ed array of *n
 * statuses and attr the first attributes found, as embkv_table_locate
 * says; returns what it returns (or -ENOMEM, a local error, with *st
 * NULL).
 */
static int locate(struct embkv_client *c, const char *name,
		  struct embkv_table_attr *attr, int **st, uint32_t *n)
{
	struct embkv_wire_table_info info;
	uint32_t i, have = 0, lack = 0, differ = 0;
	struct embkv_rpc *rpcs;
	int rc, unreached = 0;

	*st = NULL;
	rc = all_servers(c, &rpcs, n, fill_open, name);
	if (rc)
		return rc;
	*st = calloc(*n ? *n : 1, sizeof(**st));
	if (!*st) {
		rpcs_clear(rpcs, *n);
		return -ENOMEM;
	}
	for (i = 0; i < *n; i++) {
		int s = rpcs[i].status;

		if (!s)
			s = embkv_wire_table_info_decode(rpcs[i].body,
							 rpcs[i].body_len,
							 &info);
		if (!s && have && !attr_equal(attr, &info.attr))
			s = EMBKV_EINCONSISTENT;
		if (!s && !have)
			*attr = info.attr;
		(*st)[i] = s;
		if (!s)
			have++;
		else if (s == EMBKV_ENOTABLE)
			lack++;
		else if (s == EMBKV_EINCONSISTENT)
			differ++;
		else if (!unreached)
			unreached = s;
	}
	rpcs_clear(rpcs, *n);
	if (differ || (have && lack))
		return EMBKV_EINCONSISTENT;
	if (unreached)
		return unreached;
	return have ? 0 : EMBKV_ENOTABLE;
}

int embkv_table_locate(struct embkv_client *c, const char *name,
		       struct embkv_table_attr *attr, int *status,
		       uint32_t max)
{
	struct embkv_table_attr mine;
	uint32_t n = 0;
	size_t len;
	int *st, rc;

	if (!c || !name || (max && !status))
		return -EINVAL;
	rc = embkv_wire_name_size(name, &len);
	if (rc)
		return rc;
	rc = locate(c, name, &mine, &st, &n);
	if (!st)
		return rc;
	for (uint32_t i = 0; i < n && i < max; i++)
		status[i] = st[i];
	for (uint32_t i = 0; attr && i < n; i++)
		if (st[i] == 0) { /* mine was filled */
			*attr = mine;
			break;
		}
	free(st);
	return rc;
}

/*
 * Undoes a create that failed somewhere: drops the table from every
 * server that created it or may have (no reply came). 0 when none of
 * them still has it, else EMBKV_EINCONSISTENT.
 */
static int create_undo(struct embkv_client *c, const char *name,
		       const struct embkv_rpc *created, uint32_t n)
{
	struct embkv_rpc *rpcs;
	uint32_t *servers, k = 0, i;
	int rc;

	servers = calloc(n ? n : 1, sizeof(*servers));
	if (!servers)
		return EMBKV_EINCONSISTENT;
	for (i = 0; i < n; i++)
		if (!created[i].status || !created[i].has_reply)
			servers[k++] = created[i].server;
	rc = exchange_on(c, servers, k, &rpcs, fill_drop, name);
	free(servers);
	if (rc)
		return EMBKV_EINCONSISTENT;
	for (i = 0; i < k && !rc; i++)
		if (rpcs[i].status && rpcs[i].status != EMBKV_ENOTABLE)
			rc = EMBKV_EINCONSISTENT;
	rpcs_clear(rpcs, k);
	return rc;
}

int embkv_table_create_remote(struct embkv_client *c,
			      const struct embkv_table_attr *attr)
{
	struct embkv_table_attr found;
	struct embkv_rpc *rpcs;
	uint32_t n, i;
	int *st, rc;

	if (!c || !attr)
		return -EINVAL;
	rc = embkv_table_attr_check(attr);
	if (rc)
		return rc;
	if (__atomic_load_n(&c->coordinated, __ATOMIC_RELAXED))
		return one_member(c, fill_create, attr);
	/* Every server must answer, and none may have the table. */
	rc = locate(c, attr->name, &found, &st, &n);
	free(st);
	if (rc == 0)
		return EMBKV_ETABLEEXISTS;
	if (rc != EMBKV_ENOTABLE)
		return rc;
	rc = all_servers(c, &rpcs, &n, fill_create, attr);
	if (rc)
		return rc;
	for (i = 0; i < n && !rc; i++)
		rc = rpcs[i].status;
	if (rc && create_undo(c, attr->name, rpcs, n))
		rc = EMBKV_EINCONSISTENT;
	rpcs_clear(rpcs, n);
	return rc;
}

int embkv_table_drop_remote(struct embkv_client *c, const char *name)
{
	struct embkv_rpc *rpcs;
	uint32_t n;
	size_t len;
	int rc;

	if (!c || !name)
		return -EINVAL;
	rc = embkv_wire_name_size(name, &len);
	if (rc)
		return rc;
	if (__atomic_load_n(&c->coordinated, __ATOMIC_RELAXED))
		return one_member(c, fill_drop, name);
	rc = all_servers(c, &rpcs, &n, fill_drop, name);
	if (rc)
		return rc;
	rc = combine(rpcs, n, EMBKV_ENOTABLE);
	rpcs_clear(rpcs, n);
	return rc;
}

static int summary_cmp(const void *a, const void *b)
{
	return strcmp(((const struct embkv_table_summary *)a)->name,
		      ((const struct embkv_table_summary *)b)->name);
}

int embkv_table_list(struct embkv_client *c, struct embkv_table_summary *out,
		     uint32_t max, uint32_t *count)
{
	struct embkv_table_summary *all = NULL;
	struct embkv_wire_table_entry e;
	struct embkv_wire_table_list l;
	struct embkv_rpc *rpcs;
	uint32_t n, i, k, nall = 0, total = 0;
	int rc, err = 0;

	if (!c || !count || (max && !out))
		return -EINVAL;
	rc = all_servers(c, &rpcs, &n, fill_list, NULL);
	if (rc)
		return rc;
	/* A server that failed is left out, its error kept for the end. */
	for (i = 0; i < n; i++) {
		int s = rpcs[i].status;

		if (!s)
			s = embkv_wire_table_list_decode(rpcs[i].body,
							 rpcs[i].body_len, &l);
		if (s && !err)
			err = s;
		if (s) {
			rpcs[i].status = s;
			continue;
		}
		total += l.count; /* each <= EMBKV_WIRE_MAX_TABLES */
	}
	all = malloc((total ? total : 1) * sizeof(*all));
	if (!all) {
		rc = -ENOMEM;
		goto free_all;
	}
	for (i = 0; i < n; i++) {
		if (rpcs[i].status)
			continue;
		embkv_wire_table_list_decode(rpcs[i].body, rpcs[i].body_len, &l);
		while (embkv_wire_table_list_next(&l, &e)) {
			memcpy(all[nall].name, e.name, sizeof(e.name));
			all[nall].dim = e.dim;
			nall++;
		}
	}
	/* The servers list the same tables, or should: sort, keep one of
	 * each (embkv_table_locate tells where each one is). */
	if (nall)
		qsort(all, nall, sizeof(*all), summary_cmp);
	for (i = 0, k = 0; i < nall; i++)
		if (k == 0 || strcmp(all[k - 1].name, all[i].name) != 0)
			all[k++] = all[i];
	for (i = 0; i < k && i < max; i++)
		out[i] = all[i];
	*count = k;
	rc = err;
free_all:
	free(all);
	rpcs_clear(rpcs, n);
	return rc;
}
