/*
 * embkvd table operations: PULL, PUSH, ASSIGN, ERASE, HITS, SCAN, and
 * MULTI_PULL / MULTI_PUSH on owner threads.
 *
 * What: the I/O thread checks a batch completely, groups its keys by owner
 * thread (a counting sort on the owner of each key's partition), queues
 * one job per owner involved and returns to its loop. Each owner runs the
 * store operation on its keys only and writes its results straight into
 * the reply frame at the keys' positions; the last owner to finish posts
 * the request back to the connection's I/O thread, which sends the reply.
 * Each operation is one descriptor in batch_ops (decoder, owner run, reply
 * and scratch shapes), indexed by opcode; an opcode without one is ERROR
 * EMBKV_EOPCODE, never run.
 *
 * Why: the store is lock-free on the write path because one thread owns a
 * partition; splitting by owner keeps that true while a batch runs on all
 * owners at once.
 *
 * Invariants:
 * - All or nothing: decode, epoch, table (id and uid), dim and "every
 *   key's partition is served here" are checked, and every byte the
 *   owners will use (the reply and the by-owner scratch) is allocated,
 *   before any job is queued. Owners never allocate and never fail.
 * - Placement: partition p lives on the server the table's map names (p %
 *   S at first); there (p / S) % T picks the owner of T, S being the
 *   server count of the first placement (embkvd_map_owner), so that owners
 *   share a server's partitions evenly and a partition keeps its owner
 *   when the map changes.
 * - Per-key order: one connection is served by one I/O thread, which
 *   queues its jobs in arrival order on FIFO owner queues.
 * - The request holds a table reference and a connection hold until the
 *   I/O thread finished it, so neither is freed under an owner.
 *
 * PULL_LAND (net/PROTOCOL.md 5.26, RDMA connections only) is a PULL whose
 * owners copy whole records into a landing area allocated right after the
 * reply frame (embkvd_obuf's land_*), which the connection RDMA-WRITEs to
 * the client's memory ahead of the reply (server/verbs_conn.c).
 *
 * MULTI_PULL / MULTI_PUSH (several tables' PULLs or PUSHes in one frame)
 * run each section as the request it holds, through the same checks
 * (batch_setup) and the same owner jobs, into one shared reply (the
 * section at the end of this file).
 *
 * SCAN (export) names a partition and a cursor instead of keys: its plan
 * is that one partition's owner (checked like a key's partition: served
 * here, loaded, and the cursor within its capacity), its reply is sized
 * for the rows asked (capped to SCAN_REPLY_MAX_BODY) and the owner, the
 * only job, shrinks the frame to the rows it found.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "server/daemon.h"
#include "server/init.h"
#include "server/verbs.h"

_Static_assert((int)EMBKV_LAND_NONE == (int)EMBKV_WIRE_LAND_NONE &&
	       (int)EMBKV_LAND_FOUND == (int)EMBKV_WIRE_LAND_FOUND &&
	       (int)EMBKV_LAND_INSERTED == (int)EMBKV_WIRE_LAND_INSERTED &&
	       (int)EMBKV_LAND_INIT == (int)EMBKV_WIRE_LAND_INIT,
	       "the store's landing states are the wire's");

/* Largest SCAN reply body: a page stays within one default RDMA reply
 * slot, and its owner's copy within a few milliseconds. */
#define SCAN_REPLY_MAX_BODY (EMBKV_VERBS_SLOT_SIZE - EMBKV_WIRE_HDR_SIZE)

struct batch_op;

struct batch_job {
	struct embkv_job job;
	struct batch_req *req;
	uint32_t owner;
};

struct batch_req {
	struct embkvd_done fin;          /* in the I/O inbox when finished */
	struct embkvd_conn *conn;
	struct embkvd_io *io;
	struct embkv_catalog_entry *ent; /* reference */
	struct embkv_table *t;
	const struct batch_op *bop;      /* what op does */
	uint8_t op, mode;
	uint32_t n, dim;
	uint64_t req_id, t0_ns;
	uint8_t *body;                   /* the request body (owned) */
	const uint64_t *keys;
	const float *vals;               /* PUSH: grads; ASSIGN: values */
	const uint32_t *hcounts;         /* HITS: counts */
	struct embkvd_obuf *reply;
	uint8_t *found;                  /* PULL reply, in reply */
	uint8_t *out;                    /* PULL rows as stored, in reply */
	uint8_t *counts;                 /* count reply body, in reply */
	uint8_t *state;                  /* PULL_LAND reply, in reply */
	uint8_t *land;                   /* PULL_LAND records, after it */
	uint64_t land_addr, land_rkey;
	uint32_t land_stride;
	/* By-owner grouping; order == NULL when one owner takes all keys. */
	uint32_t *off;                   /* owner o: order[off[o], off[o+1]) */
	uint32_t *order;                 /* key positions grouped by owner */
	uint64_t *skeys;                 /* scratch, same grouping */
	uint8_t *svals;                  /* rows: PULL's as stored, PUSH's
					    and ASSIGN's fp32 */
	uint32_t *scounts;               /* HITS counts */
	uint8_t *sfound;                 /* PULL */
	uint32_t part;                   /* SCAN: partition, start row */
	uint64_t cursor;
	int status;                      /* SCAN: owner's failure, or 0 */
	uint8_t *plan, *scratch;         /* the allocations behind them */
	size_t mem;                      /* bytes of body, reply, scratch */
	uint32_t pending, done, skipped; /* atomics */
	uint32_t njobs;
	uint32_t owners, single;         /* the plan's (req_submit) */
	struct multi_req *parent;        /* a MULTI section's request */
	struct batch_job jobs[];
};

/* A MULTI_PULL or MULTI_PUSH frame: one batch_req per section that
 * passed its checks, each writing into its section of the one reply. */
struct multi_req {
	struct embkvd_conn *conn;
	uint8_t *body;                   /* the request body (owned) */
	struct embkvd_obuf *reply;
	size_t mem;                      /* body and reply bytes */
	uint32_t pending;                /* I/O thread only */
};

/* Why a batch was refused: its status and message (an ERROR frame, or
 * a MULTI reply section). */
struct batch_fail {
	int status;
	char msg[EMBKV_WIRE_ERRMSG_MAX + 1];
};

/* A decoded batch request. */
struct batch_msg {
	uint32_t table_id, n, dim;
	uint64_t uid;
	uint8_t mode;
	const uint64_t *keys;
	const float *vals;
	const uint32_t *hcounts;
	uint32_t part;      /* SCAN */
	uint64_t cursor;
	uint64_t land_addr; /* PULL_LAND */
	uint32_t land_rkey, land_stride;
};

/* What a batch reply carries. */
enum batch_reply {
	BATCH_REPLY_ROWS,   /* PULL: found[n] and n rows */
	BATCH_REPLY_COUNT,  /* done and skipped */
	BATCH_REPLY_SCAN,   /* next cursor, n keys and n rows */
	BATCH_REPLY_LAND,   /* PULL_LAND: state[n]; n records after it */
};

/* What each key carries into the by-owner scratch. */
enum batch_vals {
	BATCH_VALS_NONE,
	BATCH_VALS_ROWS,    /* dim floats: values in, or PULL's rows out */
	BATCH_VALS_COUNTS,  /* a uint32_t hit count */
};

/* One table operation: its body's decoder, what an owner runs on its
 * keys, and the shapes of its reply and scratch. */
struct batch_op {
	int (*decode)(const uint8_t *body, uint32_t len, struct batch_msg *m);
	uint32_t (*run)(struct batch_req *r, uint32_t lo, uint32_t cnt);
	enum batch_reply reply;
	enum batch_vals vals;
	bool dim;           /* the request names a dim, the table's */
};

/* Grouping ---------------------------------------------------------------- */

struct plan {
	uint8_t *mem;
	uint32_t *off, *order;
	uint32_t owners;     /* owners with keys */
	uint32_t single;     /* the only owner, when owners == 1 */
};

/* Groups keys by owner, checking that this server serves each under map
 * (the caller holds rcu_read_lock) and has its partition loaded. 0,
 * EMBKV_ESTALE or EMBKV_EUNAVAIL (*bad_key set), or -ENOMEM. */
static int plan_build(struct embkvd *s, const struct embkvd_map *map,
		      const struct embkv_table *t, uint32_t n,
		      const uint64_t *keys, struct plan *pl, uint64_t *bad_key)
{
	uint32_t nown = embkv_owner_count(s->owners);
	uint32_t cur[EMBKV_OWNER_MAX];
	uint16_t *owner_of;
	size_t off_bytes = sizeof(uint32_t) * ((size_t)nown + 1);

	memset(pl, 0, sizeof(*pl));
	pl->owners = n ? 1 : 0;
	/* One owner, and every partition is this server's and loaded: no
	 * key needs a look (a table's own map of one member may name
	 * another server, hence self == 0). */
	if (nown == 1 && map->nservers == 1 && map->self == 0 &&
	    !__atomic_load_n(&t->nunloaded, __ATOMIC_ACQUIRE))
		return 0;
	pl->mem = malloc(off_bytes + (size_t)n * (sizeof(uint32_t) +
						  sizeof(uint16_t)));
	if (!pl->mem)
		return -ENOMEM;
	pl->off = (uint32_t *)pl->mem;
	pl->order = (uint32_t *)(pl->mem + off_bytes);
	owner_of = (uint16_t *)(pl->order + n);
	memset(pl->off, 0, off_bytes);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t p = embkv_table_partition_of(t, keys[i]);
		uint32_t o;

		if (!embkvd_map_mine(map, p) ||
		    embkv_part_state(&t->parts[p]) != EMBKV_PART_SERVING) {
			*bad_key = keys[i];
			free(pl->mem);
			pl->mem = NULL;
			/* a moving partition is stale: the map is changing */
			return embkvd_map_mine(map, p) &&
			       embkv_part_state(&t->parts[p]) !=
				       EMBKV_PART_MOVING ? EMBKV_EUNAVAIL
							 : EMBKV_ESTALE;
		}
		o = embkvd_map_owner(map, p, nown);
		owner_of[i] = (uint16_t)o;
		pl->off[o + 1]++;
	}
	pl->owners = 0;
	for (uint32_t o = 0; o < nown; o++) {
		if (pl->off[o + 1]) {
			pl->owners++;
			pl->single = o;
		}
		pl->off[o + 1] += pl->off[o];
		cur[o] = pl->off[o];
	}
	if (pl->owners <= 1) {
		free(pl->mem);
		pl->mem = NULL;
		pl->off = pl->order = NULL;
		return 0;
	}
	for (uint32_t i = 0; i < n; i++)
		pl->order[cur[owner_of[i]]++] = i;
	return 0;
}

/* Owner side ------------------------------------------------------------------ */

/* Infer mode: a missing row reads as its initializer's value (as
 * stored). */
static void infer_fill(const struct embkv_table *t, uint32_t n,
		       const uint64_t *keys, const uint8_t *found, uint8_t *out)
{
	for (uint32_t i = 0; i < n; i++)
		if (!found[i])
			embkv_table_init_row(t, keys[i],
					     out + (size_t)i * t->payload_bytes);
}

/* Rows leave as stored (t->payload_bytes each: PULL replies carry the
 * table's dtype). */
static uint32_t run_pull(struct batch_req *r, uint32_t lo, uint32_t cnt)
{
	size_t row = r->t->payload_bytes;
	const uint64_t *keys = r->keys;
	uint8_t *out = r->out;
	uint8_t *found = r->found;
	uint32_t hits;

	if (r->order) {
		keys = r->skeys + lo;
		out = r->svals + (size_t)lo * row;
		found = r->sfound + lo;
		for (uint32_t j = 0; j < cnt; j++)
			r->skeys[lo + j] = r->keys[r->order[lo + j]];
	}
	hits = embkv_table_pull(r->t, cnt, keys, out, found, r->mode, NULL);
	if (r->mode == EMBKV_PULL_INFER && hits < cnt)
		infer_fill(r->t, cnt, keys, found, out);
	if (r->order) {
		for (uint32_t j = 0; j < cnt; j++) {
			uint32_t i = r->order[lo + j];

			memcpy(r->out + (size_t)i * row, out + (size_t)j * row,
			       row);
			r->found[i] = found[j];
		}
	}
	return hits;
}

/* PULL_LAND: whole records into the landing area, each at its key's
 * position (so no copy back from a scratch). */
static uint32_t run_land(struct batch_req *r, uint32_t lo, uint32_t cnt)
{
	const uint64_t *keys = r->keys;
	const uint32_t *pos = NULL;

	if (r->order) {
		for (uint32_t j = 0; j < cnt; j++)
			r->skeys[lo + j] = r->keys[r->order[lo + j]];
		keys = r->skeys + lo;
		pos = r->order + lo;
	}
	return embkv_table_pull_records(r->t, cnt, keys, pos, r->land,
					r->land_stride, r->state, r->mode);
}

/* An owner's keys [lo, lo + cnt) with their values, gathered into the
 * scratch when keys are grouped by owner. */
struct batch_keys {
	const uint64_t *keys;
	const float *vals;
	const uint32_t *counts;
};

static void gather(struct batch_req *r, uint32_t lo, uint32_t cnt,
		   struct batch_keys *k)
{
	size_t row = (size_t)r->dim * sizeof(float);

	k->keys = r->keys;
	k->vals = r->vals;
	k->counts = r->hcounts;
	if (!r->order)
		return;
	for (uint32_t j = 0; j < cnt; j++) {
		uint32_t i = r->order[lo + j];

		r->skeys[lo + j] = r->keys[i];
		if (r->vals)
			memcpy(r->svals + (size_t)(lo + j) * row,
			       r->vals + (size_t)i * r->dim, row);
		if (r->hcounts)
			r->scounts[lo + j] = r->hcounts[i];
	}
	k->keys = r->skeys + lo;
	if (r->vals)
		k->vals = (const float *)(const void *)(r->svals +
							(size_t)lo * row);
	if (r->hcounts)
		k->counts = r->scounts + lo;
}

static uint32_t run_push(struct batch_req *r, uint32_t lo, uint32_t cnt)
{
	struct batch_keys k;

	gather(r, lo, cnt, &k);
	return embkv_table_push(r->t, cnt, k.keys, k.vals);
}

static uint32_t run_assign(struct batch_req *r, uint32_t lo, uint32_t cnt)
{
	struct batch_keys k;

	gather(r, lo, cnt, &k);
	return embkv_table_assign(r->t, cnt, k.keys, k.vals);
}

static uint32_t run_accumulate(struct batch_req *r, uint32_t lo, uint32_t cnt)
{
	struct batch_keys k;

	gather(r, lo, cnt, &k);
	return embkv_table_accumulate(r->t, cnt, k.keys, k.vals);
}

static uint32_t run_erase(struct batch_req *r, uint32_t lo, uint32_t cnt)
{
	struct batch_keys k;

	gather(r, lo, cnt, &k);
	return embkv_table_erase(r->t, cnt, k.keys);
}

static uint32_t run_hits(struct batch_req *r, uint32_t lo, uint32_t cnt)
{
	struct batch_keys k;

	gather(r, lo, cnt, &k);
	return embkv_table_hits(r->t, cnt, k.keys, k.counts);
}

/* The only job of a SCAN: the page straight into the reply frame, sized
 * for r->n rows; then the rows move down behind the keys found and the
 * frame shrinks to its real length. The rows move BEFORE the frame is
 * prepared for got rows: that prepare zeroes the tail padding after the
 * got rows' end, which (got < r->n) lies inside the rows still waiting
 * at tmp whenever the rows' bytes are not a multiple of 8 (a 16-bit row
 * of odd or 2 mod 4 dim, an odd-dim fp32 row), and zeroed up to 6 bytes
 * of one row of the page. */
static uint32_t run_scan(struct batch_req *r, uint32_t lo, uint32_t cnt)
{
	uint8_t *frame = r->reply->data, *body = frame + EMBKV_WIRE_HDR_SIZE;
	size_t cap = r->reply->len - EMBKV_WIRE_HDR_SIZE, len;
	struct embkv_wire_hdr h;
	uint64_t *keys, next = EMBKV_SCAN_END;
	void *vals, *tmp;
	uint32_t got = 0;
	int rc;

	(void)lo;
	(void)cnt;
	rc = embkv_wire_scan_reply_prepare(next, r->n, r->dim,
					   r->t->attr.dtype, body, cap, &keys,
					   &tmp);
	if (!rc)
		rc = embkv_part_scan(r->t, r->part, r->cursor, r->n, keys, tmp,
				     &got, &next);
	if (!rc) /* keys then rows, back to back (net/wire_scan.c) */
		memmove(keys + got, tmp, (size_t)got * r->t->payload_bytes);
	if (!rc)
		rc = embkv_wire_scan_reply_prepare(next, got, r->dim,
						   r->t->attr.dtype, body,
						   cap, &keys, &vals);
	if (!rc && vals != (void *)(keys + got))
		rc = -EFAULT;
	if (!rc)
		rc = embkv_wire_scan_reply_size(got, r->dim, r->t->attr.dtype,
						&len);
	if (!rc)
		rc = embkv_wire_hdr_decode(frame, r->reply->len, &h);
	if (rc) {
		r->status = rc;
		return 0;
	}
	h.body_len = (uint32_t)len;
	embkv_wire_hdr_encode(&h, frame);
	r->reply->len = EMBKV_WIRE_HDR_SIZE + len;
	return got;
}

static void job_run(struct embkv_job *job)
{
	struct batch_job *bj = caa_container_of(job, struct batch_job, job);
	struct batch_req *r = bj->req;
	uint32_t lo = 0, cnt = r->n, done;

	if (r->order) {
		lo = r->off[bj->owner];
		cnt = r->off[bj->owner + 1] - lo;
	}
	done = r->bop->run(r, lo, cnt);
	__atomic_add_fetch(&r->done, done, __ATOMIC_RELAXED);
	__atomic_add_fetch(&r->skipped, cnt - done, __ATOMIC_RELAXED);
	/* bj and r may be freed as soon as the count reaches zero. */
	if (!__atomic_sub_fetch(&r->pending, 1, __ATOMIC_ACQ_REL))
		embkvd_io_post(r->io, &r->fin.node);
}

/* I/O side ---------------------------------------------------------------------- */

static void req_free(struct batch_req *r)
{
	embkvd_obuf_free(r->reply);
	embkv_catalog_entry_put(r->ent);
	free(r->scratch);
	free(r->plan);
	free(r->body);
	free(r);
}

static int decode_pull(const uint8_t *body, uint32_t len,
		       struct batch_msg *m)
{
	struct embkv_wire_pull_req pull;
	int rc = embkv_wire_pull_req_decode(body, len, &pull);

	if (rc)
		return rc;
	m->table_id = pull.table_id;
	m->uid = pull.uid;
	m->n = pull.n;
	m->dim = pull.dim;
	m->keys = pull.keys;
	m->mode = pull.mode == EMBKV_WIRE_PULL_INFER ? EMBKV_PULL_INFER
						     : EMBKV_PULL_TRAIN;
	return 0;
}

static int decode_land(const uint8_t *body, uint32_t len,
		       struct batch_msg *m)
{
	struct embkv_wire_land_req land;
	int rc = embkv_wire_land_req_decode(body, len, &land);

	if (rc)
		return rc;
	m->table_id = land.pull.table_id;
	m->uid = land.pull.uid;
	m->n = land.pull.n;
	m->dim = land.pull.dim;
	m->keys = land.pull.keys;
	m->mode = land.pull.mode == EMBKV_WIRE_PULL_INFER ? EMBKV_PULL_INFER
							  : EMBKV_PULL_TRAIN;
	m->land_addr = land.addr;
	m->land_rkey = land.rkey;
	m->land_stride = land.stride;
	return 0;
}

/* PUSH, ASSIGN and ACCUMULATE */
static int decode_rows(const uint8_t *body, uint32_t len,
		       struct batch_msg *m)
{
	struct embkv_wire_rows_req rows;
	int rc = embkv_wire_rows_req_decode(body, len, &rows);

	if (rc)
		return rc;
	m->table_id = rows.table_id;
	m->uid = rows.uid;
	m->n = rows.n;
	m->dim = rows.dim;
	m->keys = rows.keys;
	m->vals = rows.vals;
	return 0;
}

static int decode_erase(const uint8_t *body, uint32_t len,
			struct batch_msg *m)
{
	struct embkv_wire_erase_req erase;
	int rc = embkv_wire_erase_req_decode(body, len, &erase);

	if (rc)
		return rc;
	m->table_id = erase.table_id;
	m->uid = erase.uid;
	m->n = erase.n;
	m->keys = erase.keys;
	return 0;
}

static int decode_hits(const uint8_t *body, uint32_t len,
		       struct batch_msg *m)
{
	struct embkv_wire_hits hits;
	int rc = embkv_wire_hits_decode(body, len, &hits);

	if (rc)
		return rc;
	m->table_id = hits.table_id;
	m->uid = hits.uid;
	m->n = hits.n;
	m->keys = hits.keys;
	m->hcounts = hits.counts;
	return 0;
}

static int decode_scan(const uint8_t *body, uint32_t len,
		       struct batch_msg *m)
{
	struct embkv_wire_scan_req scan;
	int rc = embkv_wire_scan_req_decode(body, len, &scan);

	if (rc)
		return rc;
	m->table_id = scan.table_id;
	m->uid = scan.uid;
	m->n = scan.max;
	m->part = scan.part;
	m->cursor = scan.cursor;
	return 0;
}

/* Indexed by opcode; an opcode without an entry is no table operation. */
static const struct batch_op batch_ops[EMBKV_WIRE_OP_REPLY] = {
	[EMBKV_WIRE_OP_PULL] = { decode_pull, run_pull, BATCH_REPLY_ROWS,
				 BATCH_VALS_ROWS, true },
	[EMBKV_WIRE_OP_PUSH] = { decode_rows, run_push, BATCH_REPLY_COUNT,
				 BATCH_VALS_ROWS, true },
	[EMBKV_WIRE_OP_ASSIGN] = { decode_rows, run_assign,
				   BATCH_REPLY_COUNT, BATCH_VALS_ROWS, true },
	[EMBKV_WIRE_OP_ACCUMULATE] = { decode_rows, run_accumulate,
				       BATCH_REPLY_COUNT, BATCH_VALS_ROWS,
				       true },
	[EMBKV_WIRE_OP_ERASE] = { decode_erase, run_erase, BATCH_REPLY_COUNT,
				  BATCH_VALS_NONE, false },
	[EMBKV_WIRE_OP_HITS] = { decode_hits, run_hits, BATCH_REPLY_COUNT,
				 BATCH_VALS_COUNTS, false },
	[EMBKV_WIRE_OP_SCAN] = { decode_scan, run_scan, BATCH_REPLY_SCAN,
				 BATCH_VALS_NONE, false },
	[EMBKV_WIRE_OP_PULL_LAND] = { decode_land, run_land,
				      BATCH_REPLY_LAND, BATCH_VALS_NONE, true },
};

/* op's descriptor; NULL when op is no table operation. */
static const struct batch_op *batch_op_of(uint8_t op)
{
	if (op >= EMBKV_WIRE_OP_REPLY || !batch_ops[op].decode)
		return NULL;
	return &batch_ops[op];
}

static int req_scratch(struct batch_req *r);

/* The reply frame, and the by-owner scratch when keys are grouped. */
static int req_buffers(struct batch_req *r)
{
	struct embkv_wire_hdr h = {
		.opcode = r->op | EMBKV_WIRE_OP_REPLY,
		.request_id = r->req_id,
		.epoch = embkvd_epoch(r->io->srv),
	};
	size_t len = EMBKV_WIRE_COUNT_REPLY_SIZE, land = 0;
	uint8_t *body;
	void *vals;
	int rc;

	if (r->bop->reply == BATCH_REPLY_ROWS) {
		rc = embkv_wire_pull_reply_size_dt(r->n, r->dim,
						   r->t->attr.dtype, &len);
		if (rc)
			return rc;
	} else if (r->bop->reply == BATCH_REPLY_SCAN) {
		rc = embkv_wire_scan_reply_size(r->n, r->dim, r->t->attr.dtype,
						&len);
		if (rc)
			return rc;
	} else if (r->bop->reply == BATCH_REPLY_LAND) {
		rc = embkv_wire_land_reply_size(r->n, &len);
		if (rc)
			return rc;
		land = (size_t)r->n * r->land_stride; /* checked in setup */
	}
	h.body_len = (uint32_t)len;
	r->reply = embkvd_obuf_alloc(r->conn,
				     EMBKV_WIRE_HDR_SIZE + len + land);
	if (!r->reply)
		return -ENOMEM;
	r->mem += r->reply->alloc; /* its footprint, a pooled one's class */
	if (land) {
		r->reply->len = EMBKV_WIRE_HDR_SIZE + len;
		r->reply->land_len = land;
		r->reply->land_addr = r->land_addr;
		r->reply->land_rkey = r->land_rkey;
		r->land = r->reply->data + r->reply->len;
	}
	embkv_wire_hdr_encode(&h, r->reply->data);
	body = r->reply->data + EMBKV_WIRE_HDR_SIZE;
	if (r->bop->reply == BATCH_REPLY_ROWS) {
		rc = embkv_wire_pull_reply_prepare_dt(r->n, r->dim,
						      r->t->attr.dtype, body,
						      len, &r->found, &vals);
		if (rc)
			return rc;
		r->out = vals;
	} else if (r->bop->reply == BATCH_REPLY_COUNT) {
		r->counts = body;
	} else if (r->bop->reply == BATCH_REPLY_LAND) {
		rc = embkv_wire_land_reply_prepare(r->n, r->dim,
						   r->t->attr.dtype, body, len,
						   &r->state);
		if (rc)
			return rc;
	}
	return req_scratch(r);
}

/* The by-owner scratch when keys are grouped (none otherwise). */
static int req_scratch(struct batch_req *r)
{
	size_t len, vals_bytes = 0;

	if (!r->order)
		return 0;
	if (r->bop->vals == BATCH_VALS_COUNTS)
		vals_bytes = (size_t)r->n * sizeof(uint32_t);
	else if (r->bop->vals == BATCH_VALS_ROWS) /* fp32: the widest */
		vals_bytes = (size_t)r->n * r->dim * sizeof(float);
	len = (size_t)r->n * sizeof(uint64_t) + vals_bytes +
	      (r->bop->reply == BATCH_REPLY_ROWS ? r->n : 0);
	r->scratch = malloc(len);
	if (!r->scratch)
		return -ENOMEM;
	r->mem += len;
	r->skeys = (uint64_t *)r->scratch;
	if (r->bop->vals == BATCH_VALS_COUNTS)
		r->scounts = (uint32_t *)(r->skeys + r->n);
	else if (r->bop->vals == BATCH_VALS_ROWS)
		r->svals = (uint8_t *)(r->skeys + r->n);
	r->sfound = (uint8_t *)(r->skeys + r->n) + vals_bytes;
	return 0;
}

/* Queues one job per owner with keys; none when the batch is empty. The
 * last job may run on this thread when inline (and the I/O thread may). */
static void req_submit(struct batch_req *r, uint32_t owners, uint32_t single,
		       bool inline_ok)
{
	struct embkv_owner_pool *pool = r->io->srv->owners;
	uint32_t nown = embkv_owner_count(pool), njobs = 0;

	if (!r->order) {
		if (owners) {
			r->jobs[0].owner = single;
			njobs = 1;
		}
	} else {
		for (uint32_t o = 0; o < nown; o++)
			if (r->off[o + 1] > r->off[o])
				r->jobs[njobs++].owner = o;
	}
	r->njobs = njobs;
	r->pending = njobs;
	embkvd_conn_hold(r->conn, r->mem);
	if (!njobs) {
		r->fin.finish(&r->fin);
		return;
	}
	/* r stays valid through this loop: only this thread frees it, after
	 * it returns to its loop and finds r in its inbox. The last job runs
	 * here when this thread has nothing else to serve right now and its
	 * owner is idle (server/owner.c: two wake-ups saved); its finish
	 * then reaches this thread's own inbox. */
	for (uint32_t j = 0; j < njobs; j++) {
		struct embkv_job *job = &r->jobs[j].job;

		r->jobs[j].req = r;
		job->run = job_run;
		if (j == njobs - 1 && inline_ok && r->io->inline_ok &&
		    embkv_owner_try_run(pool, r->jobs[j].owner, job)) {
			r->io->inlined = true;
			break;
		}
		embkv_owner_submit(pool, r->jobs[j].owner, job);
	}
}

/*
 * SCAN's plan: partition m->part's owner, after the checks a key's
 * partition gets (served here under map, loaded) and the cursor's (within
 * the partition's capacity). Caps m->n to what one reply carries. 0 or an
 * error status with its message in why.
 */
static int scan_plan(struct embkvd *s, const struct embkvd_map *map,
		     const struct embkv_table *t, struct batch_msg *m,
		     struct plan *pl, char *why, size_t why_len)
{
	uint32_t fit;

	memset(pl, 0, sizeof(*pl));
	if (m->part >= t->nparts) {
		snprintf(why, why_len, "table %s has %u partitions, no "
			 "partition %u", t->attr.name, t->nparts, m->part);
		return -EINVAL;
	}
	if (!embkvd_map_mine(map, m->part)) {
		snprintf(why, why_len, "partition %u is on server %u, this is "
			 "server %u", m->part,
			 embkvd_map_server(map, m->part), map->self);
		return EMBKV_ESTALE;
	}
	if (embkv_part_state(&t->parts[m->part]) != EMBKV_PART_SERVING) {
		snprintf(why, why_len, "partition %u of table %s is not "
			 "loaded on this server yet", m->part, t->attr.name);
		return EMBKV_EUNAVAIL;
	}
	if (m->cursor > t->parts[m->part].capacity) {
		snprintf(why, why_len, "scan cursor %llu is past partition "
			 "%u's %llu rows", (unsigned long long)m->cursor,
			 m->part,
			 (unsigned long long)t->parts[m->part].capacity);
		return -EINVAL;
	}
	fit = embkv_wire_scan_reply_max_rows(SCAN_REPLY_MAX_BODY, t->dim,
					     t->attr.dtype);
	if (m->n > fit)
		m->n = fit ? fit : 1;
	pl->owners = 1;
	pl->single = embkvd_map_owner(map, m->part,
				      embkv_owner_count(s->owners));
	return 0;
}

static struct batch_req *fail(struct batch_fail *f, int status,
			       const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static struct batch_req *fail(struct batch_fail *f, int status,
			      const char *fmt, ...)
{
	va_list ap;

	f->status = status;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
	va_end(ap);
	return NULL;
}

/*
 * Everything a batch is checked against before it may run: the body (op's
 * decoder), the table (id and uid), dim, the reply size, the epoch (for
 * the ops that check it: PULL, PUSH, ...) against the table's map, and
 * every key's partition (served here and loaded); then the request with
 * its plan. Nothing is queued and no reply is built. The caller holds
 * rcu_read_lock() from before this call until the request is queued (or
 * freed), so that what was checked against the map stays true (see
 * "planned" below). NULL with *f filled when refused; body is not taken.
 */
static struct batch_req *batch_setup(struct embkvd_conn *c, uint8_t op,
				     uint64_t req_id, uint64_t epoch,
				     const uint8_t *body, uint32_t body_len,
				     uint64_t t0_ns, struct batch_fail *f)
{
	struct embkvd *s = c->io->srv;
	const struct embkvd_map *map;
	const struct batch_op *bop;
	struct embkv_catalog_entry *ent;
	struct batch_req *r;
	uint32_t bad_server = 0, self = 0;
	struct batch_msg m;
	struct plan pl;
	uint64_t bad_key = 0;
	size_t reply_len;
	int rc;

	bop = batch_op_of(op);
	if (!bop)
		return fail(f, EMBKV_EOPCODE, "%s is not a table operation",
			    embkv_wire_op_name(op));
	memset(&m, 0, sizeof(m));
	rc = bop->decode(body, body_len, &m);
	if (rc)
		return fail(f, rc, "bad %s body: %s", embkv_wire_op_name(op),
			    embkv_strerror(rc));
	ent = embkvd_svc_table_find(c, m.table_id, m.uid, f->msg,
				    sizeof(f->msg));
	if (!ent) {
		f->status = EMBKV_ENOTABLE;
		return NULL;
	}
	if (bop->dim && m.dim != ent->table->dim) {
		fail(f, EMBKV_EDIM, "table %s has dim %u, not %u",
		     ent->table->attr.name, ent->table->dim, m.dim);
		goto put;
	}
	if (ent->replica) {
		/* a replica's rows change only through its follower */
		if (op == EMBKV_WIRE_OP_PUSH || op == EMBKV_WIRE_OP_ASSIGN ||
		    op == EMBKV_WIRE_OP_ACCUMULATE ||
		    op == EMBKV_WIRE_OP_ERASE) {
			fail(f, EMBKV_EREADONLY, "table %s is a read-only "
			     "replica on this server: %s goes to its primary",
			     ent->table->attr.name, embkv_wire_op_name(op));
			goto put;
		}
		if (op == EMBKV_WIRE_OP_PULL || op == EMBKV_WIRE_OP_PULL_LAND)
			m.mode = EMBKV_PULL_INFER;   /* never inserts */
	}
	if (bop->reply == BATCH_REPLY_LAND) {
		size_t rec = EMBKV_RECORD_HDR_BYTES +
			     ent->table->payload_bytes;
		size_t max = embkvd_vconn_land_max(c);

		if (!max) {
			fail(f, -EOPNOTSUPP, "PULL_LAND needs an RDMA "
			     "connection: its records are RDMA-written");
			goto put;
		}
		if (m.land_stride < rec) {
			fail(f, -EINVAL, "a landing stride of %u bytes is under "
			     "table %s's %zu-byte records", m.land_stride,
			     ent->table->attr.name, rec);
			goto put;
		}
		if ((uint64_t)m.n * m.land_stride > max) {
			fail(f, EMBKV_ELIMIT, "%u records of %u bytes are over "
			     "the %zu bytes a landing pull may write", m.n,
			     m.land_stride, max);
			goto put;
		}
	}
	if (bop->reply == BATCH_REPLY_ROWS &&
	    embkv_wire_pull_reply_size_dt(m.n, m.dim, ent->table->attr.dtype,
					  &reply_len)) {
		fail(f, EMBKV_ELIMIT, "the reply to %u keys of dim %u would be "
		     "over the frame limit", m.n, m.dim);
		goto put;
	}
	map = embkvd_table_map(s, ent);
	if (embkv_wire_op_checks_epoch(op) && epoch != map->epoch) {
		fail(f, EMBKV_ESTALE, "epoch %llu is stale: table %s's is %llu",
		     (unsigned long long)epoch, ent->table->attr.name,
		     (unsigned long long)map->epoch);
		goto put;
	}
	if (bop->reply == BATCH_REPLY_SCAN) {
		rc = scan_plan(s, map, ent->table, &m, &pl, f->msg,
			       sizeof(f->msg));
		if (rc) {
			f->status = rc;
			goto put;
		}
		goto planned;
	}
	rc = plan_build(s, map, ent->table, m.n, m.keys, &pl, &bad_key);
	if (rc == EMBKV_ESTALE) {
		bad_server = embkvd_map_server(
			map, embkv_table_partition_of(ent->table, bad_key));
		self = map->self;
	}
	if (rc == EMBKV_EUNAVAIL) {
		fail(f, rc, "key %llu: partition %u of table %s is not loaded "
		     "on this server yet", (unsigned long long)bad_key,
		     embkv_table_partition_of(ent->table, bad_key),
		     ent->table->attr.name);
		goto put;
	}
	if (rc == EMBKV_ESTALE) {
		fail(f, rc, "key %llu: partition %u is on server %u, this is "
		     "server %u", (unsigned long long)bad_key,
		     embkv_table_partition_of(ent->table, bad_key), bad_server,
		     self);
		goto put;
	}
	if (rc)
		goto nomem;
planned:
	/* Still inside the read-side section that checked the partitions
	 * against the map and their states: the batch reaches its owners'
	 * queues before a grace period that follows a map or state change
	 * ends (a partition leaving this server is emptied by an owner job
	 * queued after that grace period, so after every such batch). */
	r = calloc(1, sizeof(*r) + (size_t)pl.owners * sizeof(r->jobs[0]));
	if (!r) {
		free(pl.mem);
		goto nomem;
	}
	r->fin.finish = embkvd_batch_finish;
	r->conn = c;
	r->io = c->io;
	r->ent = ent;
	r->t = ent->table;
	r->bop = bop;
	r->op = op;
	r->mode = m.mode;
	r->n = m.n;
	r->dim = ent->table->dim;
	r->req_id = req_id;
	r->t0_ns = t0_ns;
	r->keys = m.keys;
	r->vals = m.vals;
	r->hcounts = m.hcounts;
	r->part = m.part;
	r->cursor = m.cursor;
	r->land_addr = m.land_addr;
	r->land_rkey = m.land_rkey;
	r->land_stride = m.land_stride;
	r->plan = pl.mem;
	r->off = pl.off;
	r->order = pl.order;
	r->owners = pl.owners;
	r->single = pl.single;
	return r;

nomem:
	fail(f, -ENOMEM, "no memory for a %u-key batch", m.n);
put:
	embkv_catalog_entry_put(ent);
	return NULL;
}

void embkvd_batch_start(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
			uint8_t *body, uint64_t t0_ns)
{
	struct batch_fail f;
	struct batch_req *r;
	int rc;

	rcu_read_lock();
	r = batch_setup(c, h->opcode, h->request_id, h->epoch, body,
			h->body_len, t0_ns, &f);
	if (!r) {
		rcu_read_unlock();
		embkvd_conn_error(c, h->request_id, f.status, false, "%s",
				  f.msg);
		free(body);
		return;
	}
	r->body = body;
	r->mem = h->body_len;
	rc = req_buffers(r);
	if (rc) {
		rcu_read_unlock();
		embkvd_conn_error(c, h->request_id, rc, false,
				  "cannot serve a %u-key batch: %s", r->n,
				  embkv_strerror(rc));
		req_free(r);
		return;
	}
	req_submit(r, r->owners, r->single, true);
	rcu_read_unlock();
}

/* A finished batch in the server's and its table's counters. */
static void batch_count(struct batch_req *r)
{
	struct embkv_io_stats *st = &r->io->st;
	struct embkv_table_counters *ctr = &r->ent->ctr;
	uint64_t us = (embkv_now_ns() - r->t0_ns) / 1000u;

	if (r->op == EMBKV_WIRE_OP_PULL || r->op == EMBKV_WIRE_OP_PULL_LAND) {
		embkv_stat_inc(&st->pulls, 1);
		embkv_stat_inc(&st->pull_keys, r->n);
		embkv_hist_add(&st->pull_us, us);
		embkv_stat_add(&ctr->pulls, 1);
		embkv_stat_add(&ctr->pull_keys, r->n);
	} else if (r->op == EMBKV_WIRE_OP_PUSH) {
		embkv_stat_inc(&st->pushes, 1);
		embkv_stat_inc(&st->push_keys, r->n);
		embkv_hist_add(&st->push_us, us);
		embkv_stat_add(&ctr->pushes, 1);
		embkv_stat_add(&ctr->push_keys, r->n);
	}
}

void embkvd_batch_finish(struct embkvd_done *d)
{
	struct batch_req *r = caa_container_of(d, struct batch_req, fin);
	struct embkvd_conn *c = r->conn;
	size_t mem = r->mem;

	batch_count(r);
	if (r->status) { /* a SCAN whose owner failed: no page */
		embkvd_conn_error(c, r->req_id, r->status, false,
				  "scan of partition %u failed: %s", r->part,
				  embkv_strerror(r->status));
		embkvd_obuf_free(r->reply);
		r->reply = NULL;
		req_free(r);
		embkvd_conn_release(c, mem);
		return;
	}
	if (r->counts) {
		struct embkv_wire_count_reply cr = {
			.done = __atomic_load_n(&r->done, __ATOMIC_RELAXED),
			.skipped = __atomic_load_n(&r->skipped,
						   __ATOMIC_RELAXED),
		};

		embkv_wire_count_reply_encode(&cr, r->counts,
					      EMBKV_WIRE_COUNT_REPLY_SIZE);
	}
	embkvd_conn_send(c, r->reply);
	r->reply = NULL;
	req_free(r);
	embkvd_conn_release(c, mem);
}

/* MULTI_PULL and MULTI_PUSH (net/PROTOCOL.md 5.25) -------------------------------
 *
 * Each section is set up as the PULL or PUSH it holds (batch_setup: the
 * same checks, its own epoch), under one read-side section for the whole
 * frame; a section that fails gets its status and message in the reply
 * and the others run. The reply is laid out once every section's size is
 * known, each section's request writes its rows or counts into its part
 * of it, and the last one to finish sends it. Sections run in frame order
 * on the FIFO owner queues, so two sections of one table apply in order.
 */

static void multi_put(struct multi_req *p)
{
	struct embkvd_conn *c = p->conn;
	size_t mem = p->mem;

	if (--p->pending)
		return;
	embkvd_conn_send(c, p->reply);
	free(p->body);
	free(p);
	embkvd_conn_release(c, mem);
}

/* A section's request finished (I/O thread): its counts into its section,
 * then the frame's count of sections left. */
static void multi_child_finish(struct embkvd_done *d)
{
	struct batch_req *r = caa_container_of(d, struct batch_req, fin);
	struct multi_req *p = r->parent;
	struct embkvd_conn *c = r->conn;
	size_t mem = r->mem;

	batch_count(r);
	if (r->counts) {
		struct embkv_wire_count_reply cr = {
			.done = __atomic_load_n(&r->done, __ATOMIC_RELAXED),
			.skipped = __atomic_load_n(&r->skipped,
						   __ATOMIC_RELAXED),
		};

		embkv_wire_count_reply_encode(&cr, r->counts,
					      EMBKV_WIRE_COUNT_REPLY_SIZE);
	}
	req_free(r);
	embkvd_conn_release(c, mem);
	multi_put(p);
}

struct multi_sec {
	struct batch_req *r;   /* NULL: refused, f says why */
	struct batch_fail f;
	uint32_t len;          /* reply section body bytes */
};

void embkvd_multi_start(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
			uint8_t *body, uint64_t t0_ns)
{
	uint8_t inner = h->opcode == EMBKV_WIRE_OP_MULTI_PULL ?
				EMBKV_WIRE_OP_PULL : EMBKV_WIRE_OP_PUSH;
	uint64_t epoch = embkvd_epoch(c->io->srv);
	struct embkv_wire_hdr rh = {
		.opcode = h->opcode | EMBKV_WIRE_OP_REPLY,
		.request_id = h->request_id,
		.epoch = epoch,
	};
	struct embkv_wire_multi m;
	struct embkv_wire_multi_sec sec;
	struct multi_sec *ss;
	struct multi_req *p = NULL;
	uint64_t reply_len = EMBKV_WIRE_MULTI_SECTIONS;
	uint8_t *rb;
	size_t at;
	uint32_t i, last = UINT32_MAX;
	bool one_owner;
	int rc;

	rc = embkv_wire_multi_decode(h->opcode, body, h->body_len, &m);
	if (rc) {
		embkvd_conn_error(c, h->request_id, rc, false,
				  "bad %s body: %s",
				  embkv_wire_op_name(h->opcode),
				  embkv_strerror(rc));
		free(body);
		return;
	}
	ss = calloc(m.count, sizeof(*ss));
	if (!ss) {
		embkvd_conn_error(c, h->request_id, -ENOMEM, false,
				  "no memory for a %u-table request", m.count);
		free(body);
		return;
	}
	rcu_read_lock();
	for (i = 0; embkv_wire_multi_next(&m, &sec); i++) {
		struct multi_sec *x = &ss[i];
		size_t len = EMBKV_WIRE_COUNT_REPLY_SIZE;

		x->r = batch_setup(c, inner, h->request_id, sec.epoch,
				   sec.body, sec.len, t0_ns, &x->f);
		if (x->r && inner == EMBKV_WIRE_OP_PULL &&
		    embkv_wire_pull_reply_size_dt(x->r->n, x->r->dim,
						  x->r->t->attr.dtype, &len)) {
			/* batch_setup checked it; refuse the section rather
			 * than lay out a reply it would not fit */
			fail(&x->f, EMBKV_ELIMIT, "the reply to %u keys of "
			     "dim %u would be over the frame limit", x->r->n,
			     x->r->dim);
			req_free(x->r);
			x->r = NULL;
		}
		if (!x->r) {
			len = strnlen(x->f.msg, EMBKV_WIRE_ERRMSG_MAX);
			embkv_stat_inc(&c->io->st.errors, 1);
			if (x->f.status == EMBKV_ESTALE)
				embkv_stat_inc(&c->io->st.stale, 1);
		} else {
			last = i;
		}
		x->len = (uint32_t)len;
		reply_len += embkv_wire_multi_sec_bytes(x->len);
	}
	if (reply_len > EMBKV_WIRE_MAX_BODY) {
		rc = EMBKV_ELIMIT;
		embkvd_conn_error(c, h->request_id, rc, false,
				  "the reply to these %u tables would be over "
				  "the frame limit", m.count);
		goto refuse;
	}
	/* the by-owner scratch only once the whole reply is known to fit
	 * (each is about its section's body, never more) */
	for (i = 0; i < m.count; i++)
		if (ss[i].r && req_scratch(ss[i].r)) {
			embkvd_conn_error(c, h->request_id, -ENOMEM, false,
					  "no memory for a %u-key batch",
					  ss[i].r->n);
			goto refuse;
		}
	rh.body_len = (uint32_t)reply_len;
	p = calloc(1, sizeof(*p));
	if (p)
		p->reply = embkvd_obuf_alloc(c, EMBKV_WIRE_HDR_SIZE +
						   reply_len);
	if (!p || !p->reply) {
		embkvd_conn_error(c, h->request_id, -ENOMEM, false,
				  "no memory for a %llu-byte reply",
				  (unsigned long long)reply_len);
		goto refuse;
	}
	p->conn = c;
	p->body = body;
	p->mem = h->body_len + p->reply->alloc;
	embkv_wire_hdr_encode(&rh, p->reply->data);
	rb = p->reply->data + EMBKV_WIRE_HDR_SIZE;
	embkv_wire_multi_encode_head(m.count, rb, reply_len);
	at = EMBKV_WIRE_MULTI_SECTIONS;
	for (i = 0; i < m.count; i++) {
		struct multi_sec *x = &ss[i];
		struct embkv_wire_multi_sec rs = {
			.len = x->len,
			.status = x->r ? 0 : x->f.status,
			.epoch = epoch,
		};
		uint8_t *sb;
		void *vals;
		int64_t k = embkv_wire_multi_sec_prepare(&rs, rb + at,
							 reply_len - at, &sb);

		if (k < 0 ||
		    (x->r && inner == EMBKV_WIRE_OP_PULL &&
		     embkv_wire_pull_reply_prepare_dt(x->r->n, x->r->dim,
						      x->r->t->attr.dtype, sb,
						      x->len, &x->r->found,
						      &vals))) {
			/* sized above: cannot happen; never run a section
			 * into a reply laid out for something else */
			embkvd_conn_error(c, h->request_id, EMBKV_EPROTO,
					  false, "internal error: the reply "
					  "to section %u does not fit its "
					  "layout", i);
			goto refuse;
		}
		if (!x->r)
			memcpy(sb, x->f.msg, x->len);
		else if (inner == EMBKV_WIRE_OP_PULL)
			x->r->out = vals;
		else
			x->r->counts = sb;
		at += (size_t)k;
	}
	/* one count per section running, and one held until all are queued
	 * (a section without keys finishes inside req_submit). The I/O
	 * thread runs a job itself (when its owner is idle) for the last
	 * section only, as inline runs would serialize sections that owners
	 * could run side by side; with one owner thread nothing runs side by
	 * side, and every section may run here (no hand-off to the owner). */
	one_owner = embkv_owner_count(c->io->srv->owners) == 1;
	p->pending = 1;
	embkvd_conn_hold(c, p->mem);
	for (i = 0; i < m.count; i++) {
		struct batch_req *r = ss[i].r;

		if (!r)
			continue;
		p->pending++;
		r->parent = p;
		r->fin.finish = multi_child_finish;
		req_submit(r, r->owners, r->single, one_owner || i == last);
	}
	rcu_read_unlock();
	free(ss);
	multi_put(p);
	return;

refuse:
	for (i = 0; i < m.count; i++)
		if (ss[i].r)
			req_free(ss[i].r);
	rcu_read_unlock();
	if (p)
		embkvd_obuf_free(p->reply);
	free(p);
	free(ss);
	free(body);
}
