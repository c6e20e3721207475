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
#include <string.h>
#include "server/ckpt_priv.h"

#define RP_PAGE_BYTES (8u << 20)  /* bytes of rows in one reply at most */
#define RP_PAGE_ROWS (1u << 16)   /* rows of one reply at most */

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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Owner: the current rows of the keys changed since j->since. */
static int oj_pull(struct ck_ojob *o)
{
	struct rp_job *j = (struct rp_job *)o;
	struct embkv_table *t = o->t;
	uint64_t *keys = NULL;
	uint8_t *found = NULL;
	float *vals = NULL;
	uint32_t n = 0, m = 0;
	size_t pb = t->payload_bytes;
	uint8_t *w;
	int rc = -ENOMEM;

	if (!part_serving(t, o->part))
		return EMBKV_ESTALE;
	j->head = t->parts[o->part].seq;
	keys = malloc((size_t)j->max * sizeof(*keys));
	if (!keys)
		goto out;
	if (embkv_part_feed_read(t, o->part, j->feed, j->since, j->max, keys,
				 &n, &j->seq)) {
		j->snap_needed = true;
		rc = 0;
		goto out;
	}
	qsort(keys, n, sizeof(*keys), cmp_u64);
	for (uint32_t i = 0; i < n; i++)
		if (!m || keys[m - 1] != keys[i])
			keys[m++] = keys[i];
	vals = malloc((size_t)(m ? m : 1) * pb);
	found = malloc(m ? m : 1);
	j->raw = malloc((size_t)(m ? m : 1) * (8u + pb));
	if (!vals || !found || !j->raw)
		goto out;
	if (m)
		embkv_table_find(t, m, keys, vals, found, NULL, NULL);
	for (uint32_t i = 0; i < m; i++)
		j->rows += found[i];
	j->tombs = m - j->rows;
	/* keys of rows, rows, keys of tombstones */
	w = j->raw;
	for (uint32_t i = 0; i < m; i++)
		if (found[i]) {
			memcpy(w, &keys[i], 8);
			w += 8;
		}
	for (uint32_t i = 0; i < m; i++)
		if (found[i]) {
			memcpy(w, (uint8_t *)vals + (size_t)i * pb, pb);
			w += pb;
		}
	for (uint32_t i = 0; i < m; i++)
		if (!found[i]) {
			memcpy(w, &keys[i], 8);
			w += 8;
		}
	j->raw_len = (size_t)(w - j->raw);
	rc = 0;
out:
	free(keys);
	free(vals);
	free(found);
	return rc;
}

static void do_repl(struct embkvd_ckpt *ck, struct ck_req *r)
{
	const char *what = embkv_wire_op_name(r->op);
	struct embkv_catalog_entry *e;
	struct rp_job j = { 0 };
	uint64_t uid, part, max = 0;
	bool snap = r->op == EMBKV_WIRE_OP_REPL_SNAP;
	bool mine;
	int rc;

	if (!ck_parse_uid(json_string_value(json_object_get(r->in, "uid")),
			  &uid) ||
	    !ck_get_u64(r->in, "part", &part) || part > UINT32_MAX ||
	    (snap && !ck_get_u64(r->in, "cursor", &j.cursor)) ||
	    (!snap && (!ck_get_u64(r->in, "feed", &j.feed) ||
		       !ck_get_u64(r->in, "since", &j.since)))) {
		ck_fail(r, -EINVAL, "%s needs uid, part and %s", what,
			snap ? "cursor" : "feed and since");
		return;
	}
	ck_get_u64(r->in, "max", &max);
	e = ck_find_uid(ck->s, uid);
	if (!e) {
		ck_fail(r, EMBKV_ENOTABLE, "no table with uid %016" PRIx64
			" here", uid);
		return;
	}
	if (part >= e->table->nparts) {
		ck_fail(r, -EINVAL, "table %s has %u partitions",
			e->table->attr.name, e->table->nparts);
		goto out;
	}
	rcu_read_lock();
	mine = embkvd_map_mine(embkvd_table_map(ck->s, e), (uint32_t)part);
	rcu_read_unlock();
	if (!mine) {
		ck_fail(r, EMBKV_ESTALE, "table %s partition %" PRIu64 " is "
			"not served here", e->table->attr.name, part);
		goto out;
	}
	j.o.fn = snap ? oj_snap : oj_pull;
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
	if (snap)
		r->out = json_pack("{s:I, s:I, s:I, s:I, s:b, s:I}",
				   "feed", (json_int_t)j.feed,
				   "seq", (json_int_t)j.seq,
				   "head", (json_int_t)j.head,
				   "rows", (json_int_t)j.rows,
				   "end", j.next == EMBKV_SCAN_END,
				   "next", (json_int_t)(j.next ==
				   EMBKV_SCAN_END ? 0 : j.next));
	else if (j.snap_needed)
		r->out = json_pack("{s:b, s:I}", "snapshot", 1, "head",
				   (json_int_t)j.head);
	else
		r->out = json_pack("{s:I, s:I, s:I, s:I}",
				   "seq", (json_int_t)j.seq,
				   "head", (json_int_t)j.head,
				   "rows", (json_int_t)j.rows,
				   "tombs", (json_int_t)j.tombs);
	r->raw = j.raw;
	r->raw_len = j.raw_len;
	/* a blob says how many raw bytes follow */
	if (!r->out || json_object_set_new(r->out, "n",
					   json_integer((json_int_t)j.raw_len)))
		ck_fail(r, -ENOMEM, "no memory for the reply");
out:
	embkv_catalog_entry_put(e);
}

bool ck_do_repl(struct embkvd_ckpt *ck, struct ck_req *r)
{
	if (r->op != EMBKV_WIRE_OP_REPL_SNAP &&
	    r->op != EMBKV_WIRE_OP_REPL_PULL)
		return false;
	do_repl(ck, r);
	return true;
}
