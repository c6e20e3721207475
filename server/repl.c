/*
 * Serving replicas, the primary's side (issue 13 item 3; the follower is
 * server/replica.c, the feed server/feed.c, the wire net/PROTOCOL.md
 * section 5.23). Requests run on the checkpoint thread, each as one job
 * of the partition's owner, like moves.
 *
 * What: REPL_SNAP hands out a partition one page of rows at a time (the
 * first page also opens the partition's feed and says where it stands:
 * feed id and seq S0); REPL_PULL answers "what changed since S" with the
 * current rows of the keys the feed names (present: key + row; gone: a
 * tombstone), or with "snapshot" when the feed cannot tell (no feed, a
 * break, or the follower fell more than the ring behind).
 *
 * Why pages and not one atomic copy: a page is one owner job of bounded
 * time, so a large partition never stalls pushes for long, and no copy
 * of the whole partition is ever held in memory. A page scan is not a
 * point-in-time copy, but it need not be: every row changed after S0 is
 * in the feed, so snapshot + changes since S0 converge (the follower
 * then erases the keys neither brought, server/replica.c). Why not the
 * checkpoint file format: its deltas come from the dirty bits and
 * tombstones, which have one consumer (the checkpoints), and a follower
 * wants rows by key with no optimizer state; the payload here is plain
 * (keys, then rows, then tombstone keys, little-endian), and the
 * follower checks every key's partition before applying it.
 *
 * Invariant: a REPL_PULL reply for (feed, since) holds the current row
 * (or tombstone) of every key mutated in (since, seq]; the follower's
 * position only moves to seq after it applied the reply.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include "server/ckpt_priv.h"

#define RP_PAGE_BYTES (8u << 20)  /* bytes of rows in one reply at most */
#define RP_PAGE_ROWS (1u << 16)   /* rows of one reply at most */
#define RP_PULL_BYTES (30u << 20) /* rows of one REPL_PULL reply, all parts
				   (under glibc's 32 MiB mmap threshold: the
				   buffers are reused, not faulted in anew) */
#define RP_PULL_PARTS 4096u       /* partitions of one REPL_PULL */

struct rp_job {
	struct ck_ojob o;         /* first: the owner job */
	uint64_t cursor, feed, since, seq, head, next;
	uint32_t max;
	bool snap_needed;
	uint32_t rows, tombs;
	uint8_t *raw;
	size_t raw_len;
	uint64_t log_rows;
};

static uint32_t page_rows(const struct embkv_table *t, uint64_t want)
{
	uint64_t n = RP_PAGE_BYTES / (8u + t->payload_bytes);

	if (n > RP_PAGE_ROWS)
		n = RP_PAGE_ROWS;
	if (want && want < n)
		n = want;
	return n ? (uint32_t)n : 1u;
}

static bool part_serving(const struct embkv_table *t, uint32_t part)
{
	return t->parts[part].loaded &&
	       embkv_part_state(&t->parts[part]) == EMBKV_PART_SERVING;
}

/* Owner: one page of rows; the first one opens the feed. */
static int oj_snap(struct ck_ojob *o)
{
	struct rp_job *j = (struct rp_job *)o;
	struct embkv_table *t = o->t;
	uint64_t *keys;
	uint32_t n = 0;
	int rc;

	if (!part_serving(t, o->part))
		return EMBKV_ESTALE;
	if (!j->cursor) {
		rc = embkv_part_feed_open(t, o->part, j->log_rows, &j->feed,
					  &j->seq);
		if (rc)
			return rc;
	}
	j->head = t->parts[o->part].seq;
	j->raw = malloc((size_t)j->max * (8u + t->payload_bytes));
	if (!j->raw)
		return -ENOMEM;
	keys = (uint64_t *)j->raw;
	rc = embkv_part_scan(t, o->part, j->cursor, j->max, keys,
			     j->raw + (size_t)j->max * 8u, &n, &j->next);
	if (rc)
		return rc;
	/* keys then rows, back to back */
	memmove(j->raw + (size_t)n * 8u, j->raw + (size_t)j->max * 8u,
		(size_t)n * t->payload_bytes);
	j->rows = n;
	j->raw_len = (size_t)n * (8u + t->payload_bytes);
	return 0;
}

/* keys[n] without repeats, in first-seen order, in place: the count, or
 * UINT32_MAX without memory. A hash set, not a sort: the feed hands out
 * millions of keys a second under a full push load. */
static uint32_t dedup(uint64_t *keys, uint32_t n)
{
	uint64_t mask = 15, *set;
	uint8_t *used;
	uint32_t m = 0;

	while (mask + 1 < 2ull * n)
		mask = mask * 2 + 1;
	set = malloc((mask + 1) * sizeof(*set));
	used = calloc(mask + 1, 1);
	if (!set || !used) {
		free(set);
		free(used);
		return UINT32_MAX;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t k = keys[i];
		uint64_t h = (k * 0x9e3779b97f4a7c15ull) >> 17;

		for (;; h++) {
			h &= mask;
			if (!used[h]) {
				used[h] = 1;
				set[h] = k;
				keys[m++] = k;
				break;
			}
			if (set[h] == k)
				break;
		}
	}
	free(set);
	free(used);
	return m;
}

/* Owner: the current rows of the keys changed since j->since. */
static int oj_pull(struct ck_ojob *o)
{
	struct rp_job *j = (struct rp_job *)o;
	struct embkv_table *t = o->t;
	uint64_t *keys;
	uint8_t *found = NULL, *rows;
	uint32_t n = 0, m = 0, r = 0;
	size_t pb = t->payload_bytes;
	int rc = -ENOMEM;

	if (!part_serving(t, o->part))
		return EMBKV_ESTALE;
	j->head = t->parts[o->part].seq;
	/* room for m keys and m rows: the reply is built in place */
	j->raw = malloc((size_t)j->max * (8u + pb));
	found = malloc(j->max);
	if (!j->raw || !found)
		goto out;
	keys = (uint64_t *)j->raw;
	if (embkv_part_feed_read(t, o->part, j->feed, j->since, j->max, keys,
				 &n, &j->seq)) {
		j->snap_needed = true;
		rc = 0;
		goto out;
	}
	m = dedup(keys, n);
	if (m == UINT32_MAX)
		goto out;
	rows = j->raw + (size_t)m * 8u;
	if (m)
		embkv_table_peek(t, m, keys, rows, found);
	for (uint32_t i = 0; i < m; i++)
		r += found[i];
	j->rows = r;
	j->tombs = m - r;
	if (r < m) {
		/* keys of rows, rows, keys of tombstones: compact (keys and
		 * rows only move towards the front) */
		uint64_t *tk = malloc((size_t)(m - r) * sizeof(*tk));
		uint32_t a = 0, b = 0;

		if (!tk)
			goto out;
		for (uint32_t i = 0; i < m; i++) {
			if (found[i])
				keys[a++] = keys[i];
			else
				tk[b++] = keys[i];
		}
		for (uint32_t i = 0, w = 0; i < m; i++)
			if (found[i])
				memmove(j->raw + (size_t)r * 8u +
						(size_t)w++ * pb,
					rows + (size_t)i * pb, pb);
		memcpy(j->raw + (size_t)r * (8u + pb), tk,
		       (size_t)(m - r) * sizeof(*tk));
		free(tk);
	}
	j->raw_len = (size_t)r * (8u + pb) + (size_t)(m - r) * 8u;
	rc = 0;
out:
	free(found);
	return rc;
}

/* ---- jobs on several owners at once ---------------------------------- */

struct pjob {
	struct embkv_job job;   /* first */
	struct ck_ojob *o;
	struct ck_many *m;
	int *rc;
};

static void pjob_run(struct embkv_job *job)
{
	struct pjob *pj = (struct pjob *)job;
	struct ck_many *m = pj->m;

	*pj->rc = pj->o->fn(pj->o);
	pthread_mutex_lock(&m->lock);
	if (!--m->left)
		pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->lock);
}

void ck_owner_submit_many(struct ck_many *m, struct embkvd_ckpt *ck,
			  struct embkv_catalog_entry *e,
			  struct ck_ojob *const *o, int *rc, uint32_t n)
{
	struct embkvd *s = ck->s;
	uint32_t nown = embkv_owner_count(s->owners);

	memset(m, 0, sizeof(*m));
	m->ck = ck;
	m->e = e;
	if (!n)
		return;
	m->pj = calloc(n, sizeof(struct pjob));
	if (!m->pj) {   /* one at a time, then */
		for (uint32_t i = 0; i < n; i++)
			rc[i] = ck_owner_run(ck, e, o[i]);
		return;
	}
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cv, NULL);
	m->left = n;
	m->init = true;
	rcu_read_lock();
	for (uint32_t i = 0; i < n; i++) {
		struct pjob *pj = &((struct pjob *)m->pj)[i];

		*pj = (struct pjob){ .job.run = pjob_run, .o = o[i], .m = m,
				     .rc = &rc[i] };
		embkv_owner_submit(s->owners,
				   embkvd_map_owner(embkvd_table_map(s, e),
						    o[i]->part, nown),
				   &pj->job);
	}
	rcu_read_unlock();
}

void ck_owner_wait_many(struct ck_many *m)
{
	if (!m->init) {
		free(m->pj);
		m->pj = NULL;
		return;
	}
	pthread_mutex_lock(&m->lock);
	while (m->left)
		pthread_cond_wait(&m->cv, &m->lock);
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cv);
	free(m->pj);
	m->pj = NULL;
	m->init = false;
}

int ck_owner_run_many(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		      struct ck_ojob *const *o, int *rc, uint32_t n)
{
	struct ck_many m;

	ck_owner_submit_many(&m, ck, e, o, rc, n);
	ck_owner_wait_many(&m);
	return 0;
}

/* ---- requests ------------------------------------------------------------ */

static struct embkv_catalog_entry *req_entry(struct embkvd_ckpt *ck,
					    struct ck_req *r)
{
	struct embkv_catalog_entry *e;
	uint64_t uid;

	if (!ck_parse_uid(json_string_value(json_object_get(r->in, "uid")),
			  &uid)) {
		ck_fail(r, -EINVAL, "%s needs the table's uid",
			embkv_wire_op_name(r->op));
		return NULL;
	}
	e = ck_find_uid(ck->s, uid);
	if (!e)
		ck_fail(r, EMBKV_ENOTABLE, "no table with uid %016" PRIx64
			" here", uid);
	return e;
}

static bool part_mine(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		      uint32_t part)
{
	bool mine;

	rcu_read_lock();
	mine = embkvd_map_mine(embkvd_table_map(ck->s, e), part);
	rcu_read_unlock();
	return mine;
}

/* REPL_SNAP: one page of one partition. */
static void do_snap(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkv_catalog_entry *e;
	struct rp_job j = { 0 };
	uint64_t part, max = 0;
	int rc;

	if (!ck_get_u64(r->in, "part", &part) || part > UINT32_MAX ||
	    !ck_get_u64(r->in, "cursor", &j.cursor)) {
		ck_fail(r, -EINVAL, "REPL_SNAP needs uid, part and cursor");
		return;
	}
	ck_get_u64(r->in, "max", &max);
	e = req_entry(ck, r);
	if (!e)
		return;
	if (part >= e->table->nparts) {
		ck_fail(r, -EINVAL, "table %s has %u partitions",
			e->table->attr.name, e->table->nparts);
		goto out;
	}
	if (!part_mine(ck, e, (uint32_t)part)) {
		ck_fail(r, EMBKV_ESTALE, "table %s partition %" PRIu64 " is "
			"not served here", e->table->attr.name, part);
		goto out;
	}
	j.o.fn = oj_snap;
	j.o.t = e->table;
	j.o.part = (uint32_t)part;
	j.max = page_rows(e->table, max);
	j.log_rows = ck->s->attr.repl_log_rows;
	rc = ck_owner_run(ck, e, &j.o);
	if (rc) {
		ck_fail(r, rc, "table %s partition %" PRIu64 ": %s",
			e->table->attr.name, part, rc == EMBKV_ESTALE ?
			"not served here (moving, or not loaded)" :
			embkv_strerror(rc));
		free(j.raw);
		goto out;
	}
	r->out = json_pack("{s:I, s:I, s:I, s:I, s:b, s:I, s:I}",
			   "feed", (json_int_t)j.feed,
			   "seq", (json_int_t)j.seq,
			   "head", (json_int_t)j.head,
			   "rows", (json_int_t)j.rows,
			   "end", j.next == EMBKV_SCAN_END,
			   "next", (json_int_t)(j.next == EMBKV_SCAN_END ? 0
								 : j.next),
			   "n", (json_int_t)j.raw_len);
	r->raw = j.raw;
	r->raw_len = j.raw_len;
	if (!r->out)
		ck_fail(r, -ENOMEM, "no memory for the reply");
out:
	embkv_catalog_entry_put(e);
}

/* The i-th integer of array a; false when there is none. */
static bool arr_u64(const json_t *a, size_t i, uint64_t *out)
{
	json_t *v = json_array_get(a, i);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* REPL_PULL: the changes of several partitions, each since its position;
 * their owners work in parallel. */
static void do_pull(struct embkvd_ckpt *ck, struct ck_req *r)
{
	const json_t *parts = json_object_get(r->in, "parts");
	const json_t *feeds = json_object_get(r->in, "feeds");
	const json_t *since = json_object_get(r->in, "since");
	struct embkv_catalog_entry *e;
	struct rp_job *j = NULL;
	struct ck_ojob **o = NULL;
	int *rc = NULL;
	size_t n = json_array_size(parts), total = 0;
	uint64_t cap, need = 0, seq;
	json_t *out = NULL;
	uint8_t *w;

	if (!json_is_array(parts) || !json_is_array(feeds) ||
	    !json_is_array(since) || !n || n > RP_PULL_PARTS ||
	    json_array_size(feeds) != n || json_array_size(since) != n) {
		ck_fail(r, -EINVAL, "REPL_PULL needs uid and arrays parts, "
			"feeds and since of one length, 1 to %u",
			RP_PULL_PARTS);
		return;
	}
	e = req_entry(ck, r);
	if (!e)
		return;
	/* the reply's rows: at most RP_PULL_BYTES in all */
	cap = RP_PULL_BYTES / (8u + e->table->payload_bytes);
	if (cap < n)
		cap = n;
	j = calloc(n, sizeof(*j));
	o = calloc(n, sizeof(*o));
	rc = calloc(n, sizeof(*rc));
	out = json_array();
	if (!j || !o || !rc || !out) {
		ck_fail(r, -ENOMEM, "no memory for %zu partitions", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t p;

		if (!arr_u64(parts, i, &p) || p >= e->table->nparts ||
		    !arr_u64(feeds, i, &j[i].feed) ||
		    !arr_u64(since, i, &j[i].since)) {
			ck_fail(r, -EINVAL, "REPL_PULL: entry %zu: a partition "
				"of table %s (0 to %u), a feed and a position",
				i, e->table->attr.name, e->table->nparts - 1);
			goto out;
		}
		j[i].o.fn = oj_pull;
		j[i].o.t = e->table;
		j[i].o.part = (uint32_t)p;
		o[i] = &j[i].o;
		rc[i] = part_mine(ck, e, (uint32_t)p) ? 0 : EMBKV_ESTALE;
		/* what each is behind now (it grows meanwhile: the next
		 * request takes the rest) */
		seq = __atomic_load_n(&e->table->parts[p].seq,
				      __ATOMIC_RELAXED);
		j[i].head = seq > j[i].since ? seq - j[i].since : 0;
		need += j[i].head;
	}
	/* the budget shared by need, each partition at least one */
	for (size_t i = 0; i < n; i++) {
		uint64_t m = need <= cap ? j[i].head :
			     (uint64_t)((double)j[i].head * (double)cap /
					(double)need);

		j[i].max = m < 1 ? 1u : m > RP_PAGE_ROWS ? RP_PAGE_ROWS
							  : (uint32_t)m;
		j[i].head = 0;
	}
	/* those not served here are answered without a job */
	{
		size_t m = 0;
		struct ck_ojob **run = calloc(n, sizeof(*run));
		int *rrc = calloc(n, sizeof(*rrc));
		size_t *at = calloc(n, sizeof(*at));

		if (!run || !rrc || !at) {
			free(run);
			free(rrc);
			free(at);
			ck_fail(r, -ENOMEM, "no memory for %zu partitions", n);
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			if (!rc[i]) {
				at[m] = i;
				run[m++] = o[i];
			}
		ck_owner_run_many(ck, e, run, rrc, (uint32_t)m);
		for (size_t k = 0; k < m; k++)
			rc[at[k]] = rrc[k];
		free(run);
		free(rrc);
		free(at);
	}
	for (size_t i = 0; i < n; i++) {
		json_t *one;

		if (rc[i])
			one = json_pack("{s:I, s:i, s:s}", "part",
					(json_int_t)j[i].o.part, "status",
					rc[i], "msg", rc[i] == EMBKV_ESTALE ?
					"not served here" :
					embkv_strerror(rc[i]));
		else if (j[i].snap_needed)
			one = json_pack("{s:I, s:b, s:I}", "part",
					(json_int_t)j[i].o.part, "snapshot", 1,
					"head", (json_int_t)j[i].head);
		else
			one = json_pack("{s:I, s:I, s:I, s:I, s:I}", "part",
					(json_int_t)j[i].o.part,
					"seq", (json_int_t)j[i].seq,
					"head", (json_int_t)j[i].head,
					"rows", (json_int_t)j[i].rows,
					"tombs", (json_int_t)j[i].tombs);
		if (!one || json_array_append_new(out, one)) {
			ck_fail(r, -ENOMEM, "no memory for the reply");
			goto out;
		}
		if (!rc[i])
			total += j[i].raw_len;
	}
	r->raw = malloc(total ? total : 1);
	if (!r->raw) {
		ck_fail(r, -ENOMEM, "no memory for the reply");
		goto out;
	}
	w = r->raw;
	for (size_t i = 0; i < n; i++)
		if (!rc[i] && j[i].raw_len) {
			memcpy(w, j[i].raw, j[i].raw_len);
			w += j[i].raw_len;
		}
	r->raw_len = total;
	r->out = json_pack("{s:o, s:I}", "parts", out, "n",
			   (json_int_t)total);
	out = NULL;
	if (!r->out)
		ck_fail(r, -ENOMEM, "no memory for the reply");
out:
	json_decref(out);
	for (size_t i = 0; j && i < n; i++)
		free(j[i].raw);
	free(j);
	free(o);
	free(rc);
	embkv_catalog_entry_put(e);
}

bool ck_do_repl(struct embkvd_ckpt *ck, struct ck_req *r)
{
	if (r->op == EMBKV_WIRE_OP_REPL_SNAP)
		do_snap(ck, r);
	else if (r->op == EMBKV_WIRE_OP_REPL_PULL)
		do_pull(ck, r);
	else
		return false;
	return true;
}
