/*
 * Serving replicas, the follower (issue 13 item 3): `embkvd --replica-of
 * TABLE --primary-servers URL,...` keeps a read-only copy of a table that
 * other servers (the primary) train, for inference clients. The primary's
 * side is server/repl.c, the wire net/PROTOCOL.md section 5.23.
 *
 * What: one thread, a libembkv client of the primary's servers. For each
 * followed table it creates the table here with the primary's attributes
 * (every partition held, UNLOADED until its first copy is in, marked
 * replica: PUSH/ASSIGN/ACCUMULATE/ERASE answer EMBKV_EREADONLY, a train
 * pull reads as infer), then loops: one request per partition, all sent
 * at once to the partitions' owners (the client's shard map), each reply
 * applied here as one job of the partition's owner, in order.
 *
 * A partition's life: no position -> REPL_SNAP pages (the first gives
 * the feed id and seq S0 it continues from) -> REPL_PULL since S0, S1,
 * ... forever. "snapshot" (the primary's feed cannot tell: the follower
 * fell more than --repl-log-rows updates behind, the primary restored or
 * moved the partition, or restarted), ESTALE (the partition moved),
 * ENOTABLE (the primary's table was re-created) or a reply that does not
 * check out all mean: snapshot again, never skip updates. A snapshot over
 * rows held already does not empty the partition (readers keep seeing
 * rows): the keys the copy and the changes brought are remembered, and
 * once the follower is caught up the keys neither brought are erased.
 *
 * Invariants: the applied position of a partition moves only after its
 * reply was applied; a reply is applied whole or the partition starts a
 * snapshot; every key applied is checked to be of its partition. Lag:
 * updates = primary seq - applied seq summed over partitions; seconds =
 * 0 when the last round brought nothing and every partition was at the
 * primary's seq, else the time since the oldest of the partitions' last
 * caught-up requests was sent.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "client/client.h"
#include "server/ckpt_priv.h"
#include "server/replica.h"

#define RP_TIMEOUT_MS 30000u
#define RP_IDLE_SLEEP_US 1000u     /* a round that brought nothing */
#define RP_RETRY_MS 500u           /* primary unreachable, table missing */
#define RP_LOG_EVERY_MS 10000u
#define RP_STUCK_MS 100u
#define RP_PULL_PARTS_MAX 4096u    /* partitions of one REPL_PULL */
/* The rows a primary puts in one REPL_PULL reply (server/repl.c's
 * RP_PULL_BYTES), but at least one per partition asked: so that a reply
 * of wide rows stays under the frame limit, a request asks at most this
 * many bytes' worth of one-row partitions. */
#define RP_PULL_REPLY_BYTES (30u << 20)
#define RP_SNAP_INFLIGHT 16u       /* REPL_SNAP pages of one round */
#define RP_TOKEN_MAX 4096u         /* bytes of a token file (embkvd's) */           /* an idle round is older: lagging */

struct rpart {
	bool pos;                  /* feed and applied are a position */
	bool synced;               /* served here (first copy in) */
	bool snapping;
	uint64_t cursor;           /* next REPL_SNAP page */
	uint64_t feed, applied, head;
	uint64_t fresh_ms;         /* the last caught-up request's send time */
	bool idle;                 /* the last reply was caught up, empty */
	/* a snapshot until its first caught-up reply: the keys brought */
	bool sweep;
	uint64_t *seen;
	size_t nseen, capseen;
	uint64_t gen;              /* bumped by every new snapshot */
};

struct pend;

/* A round whose replies are being applied (the next round's requests
 * travel meanwhile): what must live until its jobs ran. */
struct flight {
	bool active;
	uint64_t sent;
	struct embkv_jreq *q;
	uint32_t nq;
	struct pend *pe;
	struct pend **jp;          /* the pend of each job */
	struct ck_ojob **jobs;
	int *rc;
	uint32_t nj;
	struct ck_many many;
};

struct rtable {
	char name[EMBKV_TABLE_NAME_MAX];
	struct embkv_catalog_entry *e;     /* here; NULL: not created */
	struct embkv_table_handle *h;      /* the primary's */
	uint16_t *map;
	struct rpart *p;
	uint32_t nparts;
	float *zstate;                     /* zero optimizer state per row */
	uint64_t last_log_ms;
	bool synced_all;                   /* logged once */
	struct flight fl;
	/* for STATS (relaxed atomics) */
	uint64_t lag_updates, lag_fresh_ms, snapshots, round_ms;
	bool lag_idle;
};

struct embkvd_replica {
	struct embkvd *s;
	pthread_t thread;
	bool started, stop;
	char **servers;
	uint32_t nservers;
	char *token;
	struct embkv_client *c;
	struct rtable *t;
	uint32_t nt;
	uint64_t last_log_ms;
	uint64_t start_ms;
};

/* An owner job on the replica. */
struct rjob {
	struct ck_ojob o;                  /* first */
	const uint8_t *keys, *rows, *tombs;
	uint32_t nrows, ntombs;
	const float *zstate;
	bool serve;                        /* set SERVING after */
	const uint64_t *seen;              /* sweep: keep these */
	size_t nseen;
	bool clear;
};

static uint64_t now_ms(void)
{
	return ck_now_ms();
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t table_rows(const struct embkv_table *t)
{
	struct embkv_table_stats st;

	embkv_table_get_stats(t, &st);
	return st.rows;
}

/* ---- owner jobs ------------------------------------------------------- */

static int oj_apply(struct ck_ojob *o)
{
	struct rjob *j = (struct rjob *)o;
	struct embkv_table *t = o->t;
	size_t pb = t->payload_bytes;
	struct embkv_row_view *v;
	uint32_t done;
	int rc = 0;

	if (j->clear) {
		embkv_part_clear(t, o->part);
		return 0;
	}
	/* tombstones first: a partition at capacity on the primary evicted
	 * them to make room for the rows that come with them */
	for (uint32_t i = 0; i < j->ntombs; i++) {
		uint64_t k;

		memcpy(&k, j->tombs + (size_t)i * 8u, 8);
		embkv_part_restore_erase(t, o->part, k);
	}
	v = calloc(j->nrows ? j->nrows : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < j->nrows; i++) {
		memcpy(&v[i].key, j->keys + (size_t)i * 8u, 8);
		v[i].version = 1;
		v[i].payload = (const float *)(j->rows + (size_t)i * pb);
		v[i].state = j->zstate;
	}
	if (j->nrows)
		rc = embkv_part_restore_rows(t, o->part, j->nrows, v, 1, &done);
	free(v);
	return rc;
}

struct sweep_ctx {
	const struct rjob *j;
	uint64_t *gone;
	size_t n, cap;
	bool nomem;
};

static int sweep_row(void *ctx, const struct embkv_row_view *r)
{
	struct sweep_ctx *c = ctx;

	if (c->j->nseen && bsearch(&r->key, c->j->seen, c->j->nseen,
				   sizeof(uint64_t), cmp_u64))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 1024;
		uint64_t *g = realloc(c->gone, cap * sizeof(*g));

		if (!g) {
			c->nomem = true;
			return 1;
		}
		c->gone = g;
		c->cap = cap;
	}
	c->gone[c->n++] = r->key;
	return 0;
}

/* Erases the rows the last snapshot did not bring; then serves. */
static int oj_sweep(struct ck_ojob *o)
{
	struct rjob *j = (struct rjob *)o;
	struct sweep_ctx c = { .j = j };

	embkv_part_for_each_row(o->t, o->part, sweep_row, &c);
	for (size_t i = 0; !c.nomem && i < c.n; i++)
		embkv_part_restore_erase(o->t, o->part, c.gone[i]);
	free(c.gone);
	if (c.nomem)
		return -ENOMEM;
	if (j->serve &&
	    embkv_part_state(&o->t->parts[o->part]) == EMBKV_PART_UNLOADED)
		return embkv_part_set_state(o->t, o->part, EMBKV_PART_SERVING);
	return 0;
}

static int run_job(struct embkvd_replica *r, struct rtable *t, uint32_t part,
		   struct rjob *j)
{
	j->o.t = t->e->table;
	j->o.part = part;
	return ck_owner_run(r->s->ckpt, t->e, &j->o);
}

/* ---- partitions --------------------------------------------------------- */

static void part_resnap(struct rtable *t, uint32_t part)
{
	struct rpart *p = &t->p[part];

	if (!p->snapping)
		__atomic_add_fetch(&t->snapshots, 1, __ATOMIC_RELAXED);
	p->gen++;
	p->pos = false;
	p->snapping = true;
	p->cursor = 0;
	p->sweep = false;
	p->nseen = 0;
	p->idle = false;
}

/* Adds keys to the snapshot's key set; a set past twice the partition's
 * capacity (a follower that takes long to catch up sees keys again and
 * again) is sorted and rid of repeats first. */
static int seen_add(struct rpart *p, uint64_t capacity, const uint8_t *keys,
		    uint32_t n)
{
	if (!n)
		return 0;
	if (p->nseen + n > p->capseen && p->nseen > 2 * capacity + 4096) {
		size_t m = 0;

		qsort(p->seen, p->nseen, sizeof(uint64_t), cmp_u64);
		for (size_t i = 0; i < p->nseen; i++)
			if (!m || p->seen[m - 1] != p->seen[i])
				p->seen[m++] = p->seen[i];
		p->nseen = m;
	}
	if (p->nseen + n > p->capseen) {
		size_t cap = p->capseen ? p->capseen : 4096;
		uint64_t *v;

		while (cap < p->nseen + n)
			cap *= 2;
		v = realloc(p->seen, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->seen = v;
		p->capseen = cap;
	}
	memcpy(p->seen + p->nseen, keys, (size_t)n * 8u);
	p->nseen += n;
	return 0;
}

/* Every key of keys[n] of partition part? */
static bool keys_ok(const struct embkv_table *t, uint32_t part,
		    const uint8_t *keys, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t k;

		memcpy(&k, keys + (size_t)i * 8u, 8);
		if (embkv_table_partition_of(t, k) != part)
			return false;
	}
	return true;
}

/* A warning about table t, at most one per RP_LOG_EVERY_MS. */
static void rlog(struct rtable *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void rlog(struct rtable *t, const char *fmt, ...)
{
	uint64_t now = now_ms();
	char msg[512];
	va_list ap;

	if (now - t->last_log_ms < RP_LOG_EVERY_MS && t->last_log_ms)
		return;
	t->last_log_ms = now;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	embkvd_log_at(EMBKVD_WARN, "replica of table %s: %s", t->name, msg);
}

/* One partition's reply, parsed and checked, then applied. */
struct pend {
	struct rjob j;                     /* first: the apply job */
	uint32_t part;
	bool snap, ok;
	bool keep;                         /* not ok, but the position holds */
	uint64_t gen;                      /* the partition's at the request */
	uint64_t seq, head, feed, next;
	bool end, empty;
};

/*
 * Parses one partition's answer: js its JSON (a REPL_SNAP reply, or an
 * entry of a REPL_PULL reply), raw/len the bytes left; *used gets the
 * bytes that are this partition's. false: snapshot again (logged);
 * *keep: the position still holds (a transient failure).
 */
static bool pend_parse(struct rtable *t, struct pend *pe, const json_t *js,
		       const uint8_t *raw, size_t len, size_t *used)
{
	const struct embkv_table *tb = t->e->table;
	struct rpart *p = &t->p[pe->part];
	size_t pb = tb->payload_bytes;
	uint64_t rows = 0, tombs = 0, st = 0;
	json_t *stj = json_object_get(js, "status");

	*used = 0;
	if (json_is_integer(stj)) {
		st = (uint64_t)json_integer_value(stj);
		rlog(t, "partition %u: %s (copying it again)", pe->part,
		     embkv_strerror((int)json_integer_value(stj)));
		return false;
	}
	ck_get_u64(js, "head", &pe->head);
	if (!pe->snap && json_is_true(json_object_get(js, "snapshot"))) {
		rlog(t, "partition %u: the primary cannot tell what changed "
		     "since update %" PRIu64 " (it is at %" PRIu64 "): "
		     "copying it again", pe->part, p->applied, pe->head);
		return false;
	}
	ck_get_u64(js, "rows", &rows);
	ck_get_u64(js, "tombs", &tombs);
	if (!ck_get_u64(js, "seq", &pe->seq) ||
	    (pe->snap && !p->cursor && !ck_get_u64(js, "feed", &pe->feed)) ||
	    rows > UINT32_MAX || tombs > UINT32_MAX || (pe->snap && tombs) ||
	    rows * (8u + pb) + tombs * 8u > len) {
		rlog(t, "partition %u: a malformed reply (copying it again)",
		     pe->part);
		return false;
	}
	*used = rows * (8u + pb) + tombs * 8u;
	pe->j.nrows = (uint32_t)rows;
	pe->j.ntombs = (uint32_t)tombs;
	pe->j.keys = raw;
	pe->j.rows = raw + rows * 8u;
	pe->j.tombs = pe->j.rows + rows * pb;
	pe->empty = !rows && !tombs;
	if (!keys_ok(tb, pe->part, pe->j.keys, pe->j.nrows) ||
	    !keys_ok(tb, pe->part, pe->j.tombs, pe->j.ntombs)) {
		rlog(t, "partition %u: the primary sent keys of another "
		     "partition (copying it again)", pe->part);
		return false;
	}
	if (pe->snap) {
		pe->end = json_is_true(json_object_get(js, "end"));
		if (!pe->end && (!ck_get_u64(js, "next", &pe->next) ||
				 pe->next <= p->cursor)) {
			rlog(t, "partition %u: a page that goes nowhere",
			     pe->part);
			return false;
		}
	}
	(void)st;
	pe->j.o.fn = oj_apply;
	pe->j.o.t = t->e->table;
	pe->j.o.part = pe->part;
	pe->j.zstate = t->zstate;
	pe->ok = true;
	return true;
}

/* A checked reply, before its apply job runs: the partition's new
 * position (the job runs before any later one of the partition); false:
 * snapshot again. *sweep: its sweep is due once the job ran. */
static bool pend_commit(struct rtable *t, struct pend *pe, bool *sweep)
{
	struct rpart *p = &t->p[pe->part];

	*sweep = false;
	if ((pe->snap || p->sweep) &&
	    seen_add(p, t->e->table->parts[pe->part].capacity, pe->j.keys,
		     pe->j.nrows))
		return false;
	p->head = pe->head;
	if (pe->snap) {
		if (!p->cursor) {
			p->feed = pe->feed;
			p->applied = pe->seq;
		}
		if (pe->end) {
			p->snapping = false;
			p->pos = true;
			p->sweep = true;
		} else {
			p->cursor = pe->next;
		}
		p->idle = false;
		return true;
	}
	p->applied = pe->seq;
	/* idle (caught up, nothing to apply) only once an empty reply's
	 * round landed: rows still being applied are not caught up */
	if (!pe->empty || pe->seq != pe->head)
		p->idle = false;
	if (pe->seq == pe->head)
		*sweep = p->sweep;
	return true;
}

/* ---- tables ------------------------------------------------------------ */

static void table_close(struct rtable *t)
{
	embkv_table_close(t->h);
	t->h = NULL;
}

static void flight_land(struct embkvd_replica *r, struct rtable *t);

/* STATS before the table's first round: behind, by an unknown amount. */
static void lag_unknown(struct rtable *t)
{
	__atomic_store_n(&t->lag_idle, false, __ATOMIC_RELAXED);
	__atomic_store_n(&t->lag_fresh_ms, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&t->lag_updates, 1, __ATOMIC_RELAXED);
}

/* The table here, created from the primary's attributes if missing. */
static int table_here(struct embkvd_replica *r, struct rtable *t)
{
	const struct embkv_table_attr *pa = embkv_table_attr_get(t->h);
	struct embkvd *s = r->s;
	struct embkv_catalog_entry *pending, *e;
	uint8_t *owned;
	uint32_t id;
	uint64_t uid;
	int rc;

	if (t->e) {
		const struct embkv_table_attr *a = &t->e->table->attr;

		if (a->partitions != pa->partitions || a->dim != pa->dim ||
		    a->hash_seed != pa->hash_seed ||
		    a->capacity != pa->capacity || a->dtype != pa->dtype ||
		    a->flags != pa->flags) {
			rlog(t, "the primary's table changed its shape "
			     "(partitions, dim, seed, capacity, dtype or "
			     "flags); not followed (restart this server)");
			return -EINVAL;
		}
		return 0;
	}
	rcu_read_lock();
	e = embkv_catalog_find_name(s->cat, t->name);
	if (e)
		embkv_catalog_entry_get(e);
	rcu_read_unlock();
	if (e) {
		if (!e->replica) {
			embkv_catalog_entry_put(e);
			rlog(t, "a table of that name exists here and is no "
			     "replica; not followed");
			return -EEXIST;
		}
		__atomic_store_n(&t->e, e, __ATOMIC_RELEASE);
		return table_here(r, t);
	}
	owned = malloc(pa->partitions);
	if (!owned)
		return -ENOMEM;
	memset(owned, EMBKV_PART_UNLOADED, pa->partitions);
	rc = embkv_catalog_reserve(s->cat, pa, owned, &pending);
	free(owned);
	if (!rc) {
		pending->replica = true;
		rc = embkv_catalog_publish(s->cat, pending, 0, &id, &uid);
	}
	if (rc) {
		rlog(t, "cannot create it here: %s", embkv_strerror(rc));
		return rc;
	}
	rcu_read_lock();
	e = embkv_catalog_find_id(s->cat, id);
	if (e)
		embkv_catalog_entry_get(e);
	rcu_read_unlock();
	if (!e)
		return -ENOENT;
	__atomic_store_n(&t->e, e, __ATOMIC_RELEASE);
	embkvd_log("replica of table %s: created here (%u partitions, dim "
		   "%u); following its primary", t->name, pa->partitions,
		   pa->dim);
	return 0;
}

static int table_prepare(struct embkvd_replica *r, struct rtable *t)
{
	const struct embkv_table_attr *a;
	int rc;

	if (t->e) {
		bool gone;

		rcu_read_lock();
		gone = embkv_catalog_find_name(r->s->cat, t->name) != t->e;
		rcu_read_unlock();
		if (gone) {
			/* dropped here (TABLE_DROP): start over */
			flight_land(r, t);
			table_close(t);
			embkv_catalog_entry_put(t->e);
			__atomic_store_n(&t->e, NULL, __ATOMIC_RELEASE);
			for (uint32_t i = 0; t->p && i < t->nparts; i++) {
				part_resnap(t, i);
				t->p[i].synced = false;
			}
			t->synced_all = false;
			lag_unknown(t);
		}
	}
	if (t->h)
		return 0;
	rc = embkv_table_open(r->c, t->name, &t->h);
	if (rc) {
		t->h = NULL;
		rlog(t, "the primary: %s", embkv_strerror(rc));
		return rc;
	}
	rc = table_here(r, t);
	if (rc) {
		table_close(t);
		return rc;
	}
	a = &t->e->table->attr;
	if (t->p && t->nparts != a->partitions) {
		rlog(t, "the table changed its partition count (%u, was %u); "
		     "not followed (restart this server)", a->partitions,
		     t->nparts);
		table_close(t);
		return -EINVAL;
	}
	if (!t->p) {
		t->nparts = a->partitions;
		t->p = calloc(t->nparts, sizeof(*t->p));
		t->map = calloc(t->nparts, sizeof(*t->map));
		t->zstate = calloc(t->e->table->state_floats + 1u,
				   sizeof(float));
		if (!t->p || !t->map || !t->zstate) {
			table_close(t);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < t->nparts; i++)
			part_resnap(t, i);
	}
	rc = embkv_table_map(t->h, NULL, t->map, t->nparts);
	if (rc)
		table_close(t);
	return rc;
}

/* A request of a round: one REPL_SNAP page, or the REPL_PULL of the
 * partitions one server owns. */
struct rq {
	bool snap;
	uint32_t server;
	uint32_t *parts;
	uint32_t nparts;
};

static bool transient(int st)
{
	return st == EMBKV_EDISCONNECTED || st == EMBKV_ETIMEDOUT;
}

static int rq_build(struct rtable *t, struct rq *g, struct embkv_jreq *q)
{
	uint64_t uid = 0;
	char uh[17];
	json_t *b;
	int rc;

	embkv_table_uid(t->h, g->server, NULL, &uid);
	ck_uid_hex(uid, uh);
	if (g->snap) {
		b = json_pack("{s:s, s:I, s:I}", "uid", uh, "part",
			      (json_int_t)g->parts[0], "cursor",
			      (json_int_t)t->p[g->parts[0]].cursor);
	} else {
		json_t *ps = json_array(), *fs = json_array(),
		       *ss = json_array();

		for (uint32_t k = 0; ps && fs && ss && k < g->nparts; k++) {
			const struct rpart *p = &t->p[g->parts[k]];

			if (json_array_append_new(ps, json_integer(
							      g->parts[k])) ||
			    json_array_append_new(fs, json_integer(
							      (json_int_t)p->feed)) ||
			    json_array_append_new(ss, json_integer(
							      (json_int_t)p->applied)))
				break;
		}
		b = ps && fs && ss ? json_pack("{s:s, s:o, s:o, s:o}", "uid",
					       uh, "parts", ps, "feeds", fs,
					       "since", ss) : NULL;
		if (!b) {
			json_decref(ps);
			json_decref(fs);
			json_decref(ss);
		}
	}
	if (!b)
		return -ENOMEM;
	rc = embkv_jreq_init(q, g->server, g->snap ? EMBKV_WIRE_OP_REPL_SNAP :
			     EMBKV_WIRE_OP_REPL_PULL, b, NULL);
	json_decref(b);
	return rc;
}

/* Parses request g's reply into pe[] (one per partition of g, in order);
 * sets *reopen when the map or the table changed. */
static void rq_parse(struct rtable *t, const struct rq *g,
		     struct embkv_jreq *q, struct pend *pe, bool *reopen)
{
	static const uint8_t none[8];
	int st = q->rpc.status;
	const uint8_t *raw = q->raw ? q->raw : none;
	const json_t *arr;
	size_t off = 0;

	for (uint32_t k = 0; k < g->nparts; k++)
		pe[k] = (struct pend){ .part = g->parts[k], .snap = g->snap,
				       .gen = t->p[g->parts[k]].gen };
	if (st) {
		if (!transient(st))
			*reopen = true;
		rlog(t, "%s: %s: %s", embkv_wire_op_name(g->snap ?
			EMBKV_WIRE_OP_REPL_SNAP : EMBKV_WIRE_OP_REPL_PULL),
		     embkv_strerror(st), q->msg);
		for (uint32_t k = 0; k < g->nparts; k++)
			pe[k].keep = transient(st);
		return;
	}
	if (g->snap) {
		size_t used;

		if (pend_parse(t, &pe[0], q->reply, raw, q->raw_len, &used) &&
		    used != q->raw_len) {
			pe[0].ok = false;
			rlog(t, "partition %u: a padded reply", pe[0].part);
		}
		return;
	}
	arr = json_object_get(q->reply, "parts");
	if (!json_is_array(arr) || json_array_size(arr) != g->nparts) {
		rlog(t, "REPL_PULL: a reply without its %u partitions",
		     g->nparts);
		return;
	}
	for (uint32_t k = 0; k < g->nparts; k++) {
		const json_t *one = json_array_get(arr, k);
		uint64_t part;
		size_t used = 0;

		if (!ck_get_u64(one, "part", &part) || part != g->parts[k]) {
			rlog(t, "REPL_PULL: entry %u names another partition",
			     k);
			for (uint32_t m = 0; m < g->nparts; m++)
				pe[m].ok = false;
			return;
		}
		if (json_integer_value(json_object_get(one, "status")) ==
		    EMBKV_ESTALE)
			*reopen = true;
		pend_parse(t, &pe[k], one, raw + off, q->raw_len - off,
			   &used);
		off += used;
	}
	if (off != q->raw_len) {
		rlog(t, "REPL_PULL: %zu bytes too many", q->raw_len - off);
		for (uint32_t k = 0; k < g->nparts; k++)
			pe[k].ok = false;
	}
}

/* Waits for the applies of the round in flight; a failed one means a
 * new snapshot of its partition (emptied first: what was applied of a
 * reply is unknown), a caught-up one marks its partition fresh. */
static void flight_land(struct embkvd_replica *r, struct rtable *t)
{
	struct flight *fl = &t->fl;

	if (!fl->active)
		return;
	ck_owner_wait_many(&fl->many);
	for (uint32_t k = 0; k < fl->nj; k++) {
		struct pend *x = fl->jp[k];
		struct rpart *p = &t->p[x->part];

		if (p->gen != x->gen)
			continue;    /* copied again meanwhile */
		if (fl->rc[k]) {
			rlog(t, "partition %u: cannot apply: %s (copying it "
			     "again)", x->part, embkv_strerror(fl->rc[k]));
			if (fl->rc[k] != EMBKV_ESTALE) {
				struct rjob c = { .o.fn = oj_apply,
						  .clear = true };

				run_job(r, t, x->part, &c);
			}
			part_resnap(t, x->part);
		} else if (!x->snap && x->seq == x->head) {
			if (fl->sent > p->fresh_ms)
				p->fresh_ms = fl->sent;
			p->idle = x->empty;
		}
	}
	for (uint32_t k = 0; k < fl->nq; k++)
		embkv_jreq_clear(&fl->q[k]);
	free(fl->q);
	free(fl->pe);
	free(fl->jp);
	free(fl->jobs);
	free(fl->rc);
	memset(fl, 0, sizeof(*fl));
}

/* One round: every partition asked at once (snapshot pages one by one,
 * changes one request per server), the replies checked and handed to
 * the owners, which apply them while the next round's requests travel;
 * false when nothing came. */
static bool table_round(struct embkvd_replica *r, struct rtable *t)
{
	uint32_t n = t->nparts, nq = 0, np = 0, nservers, nj = 0, nsw = 0;
	struct rq *g = calloc(n, sizeof(*g));
	uint32_t *order = calloc(n, sizeof(*order));
	uint32_t *sweeps = calloc(n, sizeof(*sweeps));
	struct embkv_jreq *q = NULL;
	struct pend *pe = NULL, **jp = NULL;
	struct ck_ojob **jobs = NULL;
	int *rc = NULL;
	uint64_t sent = now_ms(), lag = 0, fresh = UINT64_MAX;
	bool reopen = false, busy = false, idle = true;

	nservers = embkv_client_server_count(r->c);
	if (!g || !order || !sweeps)
		goto out;
	/* snapshot pages: one request each, a few partitions at a time (a
	 * page is up to 8 MiB on both sides) */
	for (uint32_t i = 0; i < n && nq < RP_SNAP_INFLIGHT; i++)
		if (t->p[i].snapping) {
			order[np] = i;
			g[nq++] = (struct rq){ .snap = true,
					       .server = t->map[i],
					       .parts = &order[np++],
					       .nparts = 1 };
		}
	/* changes: grouped by server, at most per_req partitions a request */
	uint32_t per_req = RP_PULL_PARTS_MAX;
	size_t row_bytes = 8u + (t->e ? t->e->table->payload_bytes : 0);

	if (RP_PULL_REPLY_BYTES / row_bytes < per_req)
		per_req = (uint32_t)(RP_PULL_REPLY_BYTES / row_bytes);
	if (per_req == 0)
		per_req = 1;
	for (uint32_t s = 0; s < nservers; s++) {
		uint32_t first = np;

		for (uint32_t i = 0; i < n; i++) {
			if (t->p[i].snapping || t->map[i] != s)
				continue;
			if (np - first == per_req) {
				g[nq++] = (struct rq){ .server = s,
						       .parts = &order[first],
						       .nparts = np - first };
				first = np;
			}
			order[np++] = i;
		}
		if (np > first)
			g[nq++] = (struct rq){ .server = s,
					       .parts = &order[first],
					       .nparts = np - first };
	}
	q = calloc(nq ? nq : 1, sizeof(*q));
	pe = calloc(n, sizeof(*pe));
	jp = calloc(n, sizeof(*jp));
	jobs = calloc(n, sizeof(*jobs));
	rc = calloc(n, sizeof(*rc));
	if (!q || !pe || !jp || !jobs || !rc)
		goto out;
	for (uint32_t k = 0; k < nq; k++)
		if (rq_build(t, &g[k], &q[k]))
			goto out;
	embkv_jreq_run(r->c, q, nq, RP_TIMEOUT_MS);
	/* the previous round's applies ran meanwhile */
	flight_land(r, t);
	{
		struct pend *at = pe;

		for (uint32_t k = 0; k < nq; k++) {
			rq_parse(t, &g[k], &q[k], at, &reopen);
			at += g[k].nparts;
		}
	}
	for (uint32_t k = 0; k < np; k++) {
		struct pend *x = &pe[k];
		struct rpart *p = &t->p[x->part];
		bool sweep = false;

		if (p->gen != x->gen)
			continue;    /* an apply failed: copied again */
		if (!x->ok) {
			if (!x->keep)    /* else transient: ask again */
				part_resnap(t, x->part);
			continue;
		}
		if (!pend_commit(t, x, &sweep)) {
			part_resnap(t, x->part);
			continue;
		}
		if (x->j.nrows || x->j.ntombs || p->snapping)
			busy = true;
		jp[nj] = x;
		jobs[nj++] = &x->j.o;
		if (sweep)
			sweeps[nsw++] = x->part;
	}
	t->fl = (struct flight){ .active = true, .sent = sent, .q = q,
				 .nq = nq, .pe = pe, .jp = jp, .jobs = jobs,
				 .rc = rc, .nj = nj };
	q = NULL;
	pe = NULL;
	jp = NULL;
	jobs = NULL;
	rc = NULL;
	ck_owner_submit_many(&t->fl.many, r->s->ckpt, t->e, t->fl.jobs,
			     t->fl.rc, nj);
	if (nsw) {
		/* a snapshot caught up: sweep once its rows are in */
		flight_land(r, t);
		for (uint32_t k = 0; k < nsw; k++) {
			struct rpart *p = &t->p[sweeps[k]];
			struct rjob sj = { .o.fn = oj_sweep, .serve = true };

			if (!p->sweep || !p->pos)
				continue;    /* failed meanwhile */
			if (p->nseen)
				qsort(p->seen, p->nseen, sizeof(uint64_t),
				      cmp_u64);
			sj.seen = p->seen;
			sj.nseen = p->nseen;
			if (run_job(r, t, sweeps[k], &sj)) {
				part_resnap(t, sweeps[k]);
				continue;
			}
			p->sweep = false;
			free(p->seen);   /* as big as the partition: not kept */
			p->seen = NULL;
			p->nseen = p->capseen = 0;
			p->synced = true;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		struct rpart *p = &t->p[i];
		uint64_t d = p->pos ? p->head - p->applied :
			     p->head ? p->head : 1;

		if (!p->idle)
			idle = false;

		/* a copy not in (swept, served) yet is behind */
		if (!d && (!p->synced || p->snapping || p->sweep))
			d = 1;
		lag += d;
		if (!p->synced || p->snapping || p->sweep)
			fresh = 0;
		else if (p->fresh_ms < fresh)
			fresh = p->fresh_ms;
	}
	if (!t->synced_all) {
		uint32_t k = 0;

		while (k < n && t->p[k].synced)
			k++;
		if (k == n) {
			t->synced_all = true;
			embkvd_log("replica of table %s: every partition in "
				   "sync (%" PRIu64 " rows)", t->name,
				   table_rows(t->e->table));
		}
	}
	__atomic_store_n(&t->lag_updates, lag, __ATOMIC_RELAXED);
	__atomic_store_n(&t->lag_fresh_ms, fresh == UINT64_MAX ? 0 : fresh,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&t->lag_idle, idle && !lag, __ATOMIC_RELAXED);
	__atomic_store_n(&t->round_ms, sent, __ATOMIC_RELAXED);
	if (reopen) {
		flight_land(r, t);
		table_close(t);  /* a new map (and uids) next round */
	}
out:
	for (uint32_t k = 0; q && k < nq; k++)
		embkv_jreq_clear(&q[k]);
	free(g);
	free(order);
	free(sweeps);
	free(q);
	free(pe);
	free(jp);
	free(jobs);
	free(rc);
	return busy;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000u),
			       (long)(us % 1000000u) * 1000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static bool stopping(struct embkvd_replica *r)
{
	return __atomic_load_n(&r->stop, __ATOMIC_ACQUIRE);
}

static void *rp_main(void *arg)
{
	struct embkvd_replica *r = arg;

	rcu_register_thread();
	while (!stopping(r)) {
		bool busy = false, ok = false;

		if (!r->c) {
			struct embkv_client_attr ca;
			int rc;

			embkv_client_attr_init(&ca);
			ca.servers = (const char *const *)r->servers;
			ca.nservers = r->nservers;
			ca.token = r->token;
			ca.request_timeout_ms = RP_TIMEOUT_MS;
			ca.flags = EMBKV_CLIENT_ALLOW_DOWN;
			rc = embkv_client_create(&ca, &r->c);
			if (rc) {
				r->c = NULL;
				if (now_ms() - r->last_log_ms >=
				    RP_LOG_EVERY_MS) {
					r->last_log_ms = now_ms();
					embkvd_log_at(EMBKVD_WARN, "replica: "
						      "cannot reach the "
						      "primary: %s",
						      embkv_strerror(rc));
				}
				sleep_us(RP_RETRY_MS * 1000u);
				continue;
			}
		}
		for (uint32_t i = 0; i < r->nt && !stopping(r); i++) {
			struct rtable *t = &r->t[i];

			if (table_prepare(r, t))
				continue;
			ok = true;
			if (table_round(r, t))
				busy = true;
		}
		if (!ok)
			sleep_us(RP_RETRY_MS * 1000u);
		else if (!busy)
			sleep_us(RP_IDLE_SLEEP_US);
	}
	for (uint32_t i = 0; i < r->nt; i++)
		flight_land(r, &r->t[i]);
	rcu_unregister_thread();
	return NULL;
}

/* The token file's content without trailing newlines (as embkvd reads
 * it): 0 or -errno. */
static int token_read(const char *path, char **out)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return -errno;
	buf = calloc(1, RP_TOKEN_MAX + 2);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, RP_TOKEN_MAX + 1, f);
	fclose(f);
	if (n > RP_TOKEN_MAX) {
		free(buf);
		return EMBKV_ELIMIT;
	}
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	*out = buf;
	return 0;
}

/* ---- the daemon's side ---------------------------------------------------- */

int embkvd_replica_start(struct embkvd *s, struct embkvd_replica **out)
{
	const struct embkvd_attr *a = &s->attr;
	struct embkvd_replica *r;
	char *list, *save = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	if (!a->nreplica_of)
		return 0;
	if (!a->primary_servers || !a->primary_servers[0]) {
		embkvd_log_at(EMBKVD_ERROR, "--replica-of needs "
			      "--primary-servers");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->s = s;
	r->start_ms = now_ms();
	r->t = calloc(a->nreplica_of, sizeof(*r->t));
	list = strdup(a->primary_servers);
	if (!r->t || !list)
		goto fail;
	r->nt = a->nreplica_of;
	for (uint32_t i = 0; i < r->nt; i++) {
		if (strlen(a->replica_of[i]) >= sizeof(r->t[i].name)) {
			rc = EMBKV_ELIMIT;
			goto fail;
		}
		strcpy(r->t[i].name, a->replica_of[i]);
		lag_unknown(&r->t[i]);
	}
	for (char *tok = strtok_r(list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char **v = realloc(r->servers, (r->nservers + 1) * sizeof(*v));

		if (!v)
			goto fail;
		r->servers = v;
		r->servers[r->nservers] = strdup(tok);
		if (!r->servers[r->nservers])
			goto fail;
		r->nservers++;
	}
	if (s->token_file) {
		/* the server's token is what it presents to the primary */
		rc = token_read(s->token_file, &r->token);
		if (rc) {
			embkvd_log_at(EMBKVD_ERROR, "replica: cannot read the "
				      "token file %s: %s", s->token_file,
				      embkv_strerror(rc));
			goto fail;
		}
	}
	rc = -pthread_create(&r->thread, NULL, rp_main, r);
	if (rc)
		goto fail;
	r->started = true;
	free(list);
	*out = r;
	return 0;
fail:
	free(list);
	embkvd_replica_free(r);
	return rc;
}

void embkvd_replica_stop(struct embkvd_replica *r)
{
	if (!r || !r->started)
		return;
	__atomic_store_n(&r->stop, true, __ATOMIC_RELEASE);
	pthread_join(r->thread, NULL);
	r->started = false;
}

void embkvd_replica_free(struct embkvd_replica *r)
{
	if (!r)
		return;
	embkvd_replica_stop(r);
	for (uint32_t i = 0; i < r->nt; i++) {
		struct rtable *t = &r->t[i];

		table_close(t);
		if (t->e)
			embkv_catalog_entry_put(t->e);
		for (uint32_t k = 0; t->p && k < t->nparts; k++)
			free(t->p[k].seen);
		free(t->p);
		free(t->map);
		free(t->zstate);
	}
	free(r->t);
	embkv_client_destroy(r->c);
	for (uint32_t i = 0; i < r->nservers; i++)
		free(r->servers[i]);
	free(r->servers);
	if (r->token) {
		explicit_bzero(r->token, strlen(r->token));
		free(r->token);
	}
	free(r);
}

bool embkvd_replica_lag(struct embkvd_replica *r,
			const struct embkv_catalog_entry *e,
			uint64_t *updates, uint64_t *ms, uint64_t *snapshots)
{
	for (uint32_t i = 0; r && i < r->nt; i++) {
		struct rtable *t = &r->t[i];
		uint64_t fresh, now = now_ms();

		if (__atomic_load_n(&t->e, __ATOMIC_ACQUIRE) != e)
			continue;
		*updates = __atomic_load_n(&t->lag_updates, __ATOMIC_RELAXED);
		fresh = __atomic_load_n(&t->lag_fresh_ms, __ATOMIC_RELAXED);
		if (__atomic_load_n(&t->lag_idle, __ATOMIC_RELAXED)) {
			/* caught up as of the last round: 0, unless that
			 * round is old (the follower is stuck) */
			fresh = __atomic_load_n(&t->round_ms,
						__ATOMIC_RELAXED);
			*ms = now > fresh + RP_STUCK_MS ? now - fresh : 0;
		} else {
			/* behind: never 0, even within the millisecond */
			*ms = !fresh ? now - r->start_ms :
			      now > fresh ? now - fresh : 0;
			if (!*ms)
				*ms = 1;
		}
		*snapshots = __atomic_load_n(&t->snapshots, __ATOMIC_RELAXED);
		return true;
	}
	return false;
}
