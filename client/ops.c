/*
 * Batch operations: pull, push, assign, erase, accumulate.
 *
 * A call deduplicates its keys (client/batch.c), computes each distinct
 * key's partition once, then runs rounds: route the pending keys over the
 * current shard map, cut each server's share into frames of at most
 * rows_cap rows, exchange all frames at once (client/rpc.c), and consume
 * the replies as each arrives: pulled rows are scattered to every
 * position of their key, counts are summed. Frames answered EMBKV_ESTALE
 * were not applied by their server (PROTOCOL.md 7), so only their keys go
 * to the next round, after the map was refreshed, or, when no newer map
 * exists yet (a partition being moved, a server behind the client), after
 * a backoff; until the request timeout, and at most max_retries times
 * when a server claims an epoch that no map the client can fetch has.
 * No frame
 * that a server accepted is ever sent again, so a push is applied at most
 * once.
 *
 * Rows of a 16-bit table (fp16, bf16) arrive as stored, in replies and
 * one-sided READs alike, and are widened to the caller's floats once, at
 * the scatter (embkv_dtype_to_f32: exact); embkv_pull_raw copies them as
 * they are. Pushed gradients and assigned values go as fp32: the server
 * rounds once, where it writes.
 *
 * Frames are cut per server to fit its transport (frame_cap: an rdma
 * server's RECV size and reply slots, in rows the codec computes). A pull
 * first lets the one-sided path (client/onesided.c) serve the keys of
 * rdma servers; only the keys it leaves go to the rounds.
 *
 * A landing pull (EMBKV_BATCH_PULL_LAND, the GPUDirect pull's leftovers)
 * is a PULL whose servers RDMA-WRITE records into the caller's registered
 * memory (PROTOCOL.md 5.26): a round gives its frames consecutive slots
 * after the previous rounds' (frame at order[at..] -> slots from
 * land_base + at), and consuming a reply records which key each slot
 * holds; the caller checks the records where they landed.
 *
 * What differs between the operations (argument check, frame building,
 * reply consuming, rows per frame) is one row of batch_ops[] per
 * operation; everything else is the same code for all of them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/batch.h"
#include "client/client.h"

#define BACKOFF_MS_BASE 5u
#define BACKOFF_MS_MAX 200u
#define BACKOFF_POLLS 40u          /* short polls first: 20 ms */
#define BACKOFF_POLL_US 500u
#define NS_PER_MS 1000000L
#define SCATTER_AHEAD_BYTES 2048u /* how far ahead consume_pull() prefetches */
#define SCATTER_LINE 64u

struct batch_op_desc;

struct op_state {
	const struct embkv_batch_args *a;
	const struct batch_op_desc *d; /* batch_ops[a->op] */
	struct embkv_table_handle *t;
	uint32_t dim;
	size_t row_bytes;   /* t->row_bytes: a caller's fp32 row */
	size_t out_bytes;   /* a row of a->out: row_bytes, or stored (raw) */
	size_t wire_bytes;  /* a pulled row as it travels: t->payload_bytes */
	enum embkv_dtype dtype;
	bool widen;         /* pulled rows convert to fp32 at the scatter */
	struct embkv_batch b;
	struct embkv_buf scratch; /* pooled: b's memory, then upart, pend,
				     retry, order */
	uint32_t *upart;    /* partition of each distinct key */
	uint32_t *pend;     /* distinct keys of this round */
	uint32_t npend;
	uint32_t *retry;    /* those answered EMBKV_ESTALE */
	uint32_t nretry;
	uint32_t *order;    /* pend grouped by server */
	uint64_t done;      /* counts replies' "done" */
	uint64_t stale_epoch;
	uint32_t stale_server;
	/* multi-table calls (client/multi.c): the map epoch of the round
	 * they ran, whether a section came back EMBKV_ESTALE, the first
	 * error of a section, and the caller's args (o->a points here) */
	uint64_t used_epoch;
	int any_stale;
	int err;
	struct embkv_batch_args args;
	/* a landing pull: the slot of this round's order[0] */
	uint32_t land_base;
};

/* Frames ------------------------------------------------------------------- */

/* Body sizes and bodies of n keys at o->order[at, at + n), for a frame
 * (build_frame) or a MULTI section (client/multi.c). */
static int size_pull(const struct op_state *o, uint32_t n, size_t *len)
{
	struct embkv_wire_pull_req m = { .table_id = 0, .uid = 1,
					 .dim = o->dim, .n = n };

	return embkv_wire_pull_req_size(&m, len);
}

static int fill_pull(struct op_state *o, uint32_t at, uint32_t n,
		     const struct embkv_wire_table_ref *tref, uint8_t *body,
		     size_t len)
{
	struct embkv_wire_pull_req m = {
		.table_id = tref->table_id,
		.uid = tref->uid,
		.dim = o->dim,
		.n = n,
		.mode = o->a->mode == EMBKV_MODE_INFER ? EMBKV_WIRE_PULL_INFER
						       : EMBKV_WIRE_PULL_TRAIN,
	};
	const uint32_t *ord = o->order + at;
	uint64_t *keys;
	int rc;

	rc = embkv_wire_pull_req_prepare(&m, body, len, &keys);
	if (rc)
		return rc;
	for (uint32_t j = 0; j < m.n; j++)
		keys[j] = o->b.ukeys[ord[j]];
	return 0;
}

static int size_land(const struct op_state *o, uint32_t n, size_t *len)
{
	struct embkv_wire_land_req m = {
		.stride = o->a->land->stride,
		.pull = { .table_id = 0, .uid = 1, .dim = o->dim, .n = n },
	};

	return embkv_wire_land_req_size(&m, len);
}

/* The frame's slots: from land_base + at; the rkey is the connection's
 * (land_conn, once the exchange picked it). */
static int fill_land(struct op_state *o, uint32_t at, uint32_t n,
		     const struct embkv_wire_table_ref *tref, uint8_t *body,
		     size_t len)
{
	struct embkv_land_rpc *land = o->a->land;
	struct embkv_wire_land_req m = {
		.addr = (uint64_t)(uintptr_t)land->base +
			(uint64_t)(o->land_base + at) * land->stride,
		.stride = land->stride,
		.pull = {
			.table_id = tref->table_id, .uid = tref->uid,
			.dim = o->dim, .n = n,
			.mode = o->a->mode == EMBKV_MODE_INFER
					? EMBKV_WIRE_PULL_INFER
					: EMBKV_WIRE_PULL_TRAIN,
		},
	};
	const uint32_t *ord = o->order + at;
	uint64_t *keys;
	int rc;

	rc = embkv_wire_land_req_prepare(&m, body, len, &keys);
	if (rc)
		return rc;
	for (uint32_t j = 0; j < n; j++)
		keys[j] = o->b.ukeys[ord[j]];
	return 0;
}

/* The caller's memory [base, base + bytes), named id, registered on
 * connection cc through reg (read_region: once per connection); NULL
 * when cc's transport lacks regions or the op the caller needs (need),
 * or cannot register it (not an rdma server, or not registrable). */
static const void *conn_region(struct embkv_cconn *cc, bool need,
			       uint64_t id, void *base, size_t bytes,
			       embkv_region_reg_fn reg, void *reg_arg)
{
	if (!cc->tc->ops->read_region || !need)
		return NULL;
	return cc->tc->ops->read_region(cc->tc, id, base, bytes, reg, reg_arg);
}

/* The landing memory registered on the connection the frame goes on,
 * its rkey into the frame. A server whose connection cannot take it:
 * -EOPNOTSUPP, its frames unsent. */
static int land_conn(void *ctx, struct embkv_rpc *r, struct embkv_cconn *cc)
{
	struct op_state *o = ctx;
	struct embkv_land_rpc *land = o->a->land;
	const void *region = conn_region(cc,
					 cc->tc->ops->region_rkey != NULL,
					 land->id, land->base, land->bytes,
					 land->reg, land->reg_arg);
	uint8_t *rk = r->req.data + EMBKV_WIRE_HDR_SIZE +
		      EMBKV_WIRE_LAND_REQ_RKEY;
	uint32_t rkey;

	if (!region)
		return -EOPNOTSUPP;
	rkey = cc->tc->ops->region_rkey(cc->tc, region);
	rk[0] = (uint8_t)rkey;
	rk[1] = (uint8_t)(rkey >> 8);
	rk[2] = (uint8_t)(rkey >> 16);
	rk[3] = (uint8_t)(rkey >> 24);
	return 0;
}

static int size_rows(const struct op_state *o, uint32_t n, size_t *len)
{
	struct embkv_wire_rows_req m = { .table_id = 0, .uid = 1,
					 .dim = o->dim, .n = n };

	return embkv_wire_rows_req_size(&m, len);
}

static int fill_rows(struct op_state *o, uint32_t at, uint32_t n,
		     const struct embkv_wire_table_ref *tref, uint8_t *body,
		     size_t len)
{
	struct embkv_wire_rows_req m = {
		.table_id = tref->table_id,
		.uid = tref->uid,
		.dim = o->dim,
		.n = n,
	};
	const uint32_t *ord = o->order + at;
	/* duplicates' rows summed (gradients, deltas), or the last wins */
	int push = o->a->op == EMBKV_BATCH_PUSH ||
		   o->a->op == EMBKV_BATCH_ACCUMULATE;
	uint64_t *keys;
	float *vals;
	int rc;

	rc = embkv_wire_rows_req_prepare(&m, body, len, &keys, &vals);
	if (rc)
		return rc;
	for (uint32_t j = 0; j < m.n; j++) {
		uint32_t u = ord[j];
		float *dst = vals + (size_t)j * o->dim;

		keys[j] = o->b.ukeys[u];
		if (!o->a->vals) /* a device push: the rows are the tail */
			continue;
		if (push) /* duplicates' gradients summed */
			embkv_batch_sum_row(&o->b, u, o->a->vals, o->dim, dst);
		else      /* the last value of a duplicate wins */
			memcpy(dst, o->a->vals + (size_t)o->b.last[u] * o->dim,
			       o->row_bytes);
	}
	return 0;
}

/* The device memory registered on the connection the frame goes on, as
 * the SEND's second gather entry. */
static int push_conn(void *ctx, struct embkv_rpc *r, struct embkv_cconn *cc)
{
	struct op_state *o = ctx;
	struct embkv_push_dev *dev = o->a->dev;
	const void *region = conn_region(cc,
					 cc->tc->ops->send_gather != NULL,
					 dev->id, dev->base, dev->bytes,
					 dev->reg, dev->reg_arg);

	if (!region)
		return -EOPNOTSUPP;
	r->tail_region = region;
	return 0;
}

static int size_erase(const struct op_state *o, uint32_t n, size_t *len)
{
	struct embkv_wire_erase_req m = { .table_id = 0, .uid = 1, .n = n };

	(void)o;
	return embkv_wire_erase_req_size(&m, len);
}

static int fill_erase(struct op_state *o, uint32_t at, uint32_t n,
		      const struct embkv_wire_table_ref *tref, uint8_t *body,
		      size_t len)
{
	struct embkv_wire_erase_req m = {
		.table_id = tref->table_id,
		.uid = tref->uid,
		.n = n,
	};
	const uint32_t *ord = o->order + at;
	uint64_t *keys;
	int rc;

	rc = embkv_wire_erase_req_prepare(&m, body, len, &keys);
	if (rc)
		return rc;
	for (uint32_t j = 0; j < m.n; j++)
		keys[j] = o->b.ukeys[ord[j]];
	return 0;
}

/* Replies ------------------------------------------------------------------ */

/* Writes one pulled row (as it travelled: wire_bytes), or the default,
 * to every position of key u, widened to fp32 unless the pull is raw. */
static void scatter(struct op_state *o, uint32_t u, const void *row,
		    uint8_t found)
{
	const struct embkv_batch_args *a = o->a;
	size_t bytes = o->out_bytes;
	int widen = o->widen;

	if (!found && a->mode == EMBKV_MODE_INFER) {
		row = a->dflt; /* NULL: zeros; already the caller's type */
		widen = 0;
	}
	for (uint32_t p = o->b.first[u]; p != EMBKV_BATCH_END;
	     p = o->b.next[p]) {
		uint8_t *dst = (uint8_t *)a->out + (size_t)p * bytes;

		if (!row)
			memset(dst, 0, bytes);
		else if (widen)
			embkv_dtype_to_f32(o->dtype, row, (float *)(void *)dst,
					   o->dim);
		else
			memcpy(dst, row, bytes);
		if (a->found)
			a->found[p] = found;
	}
}

/*
 * Asks for the destination of key u's first position ahead of its copy.
 * The caller's rows are usually out of cache by the time a reply comes in
 * (a server ran on this CPU meanwhile), and a copy that waits for each
 * line to be fetched for ownership took about 90 us for the 4096 rows of
 * 256 bytes of a batch, against about 72 us with the lines requested
 * 2 KiB ahead (uniform 4096-key pulls from two servers, timed inside the
 * client).
 */
static void prefetch_row(const struct op_state *o, uint32_t u, size_t row)
{
	const char *dst = (const char *)o->a->out +
			  (size_t)o->b.first[u] * o->out_bytes;

	if (row > SCATTER_AHEAD_BYTES) /* wide rows: their start only */
		row = SCATTER_AHEAD_BYTES;
	for (size_t at = 0; at < row; at += SCATTER_LINE)
		__builtin_prefetch(dst + at, 1);
}

/* A PUSH, ASSIGN or ERASE reply: how many keys it applied. */
static int consume_count(struct op_state *o, const struct embkv_rpc *r)
{
	struct embkv_wire_count_reply cnt;
	int rc;

	rc = embkv_wire_count_reply_decode(r->body, r->body_len, &cnt);
	if (rc)
		return rc;
	if ((uint64_t)cnt.done + cnt.skipped > r->user_n)
		return EMBKV_EPROTO;
	o->done += cnt.done;
	return 0;
}

/* A PULL reply: its rows scattered to every position of their keys. */
static int consume_pull(struct op_state *o, const struct embkv_rpc *r)
{
	const uint32_t *ord = o->order + r->user_off;
	size_t row = o->out_bytes, ahead;
	struct embkv_wire_pull_reply pr;
	int rc;

	rc = embkv_wire_pull_reply_decode(r->body, r->body_len, &pr);
	if (rc)
		return rc;
	/* the table's dtype, fixed by its uid: another is a broken server */
	if (pr.n != r->user_n || pr.dim != o->dim || pr.dtype != o->dtype)
		return EMBKV_EPROTO;
	ahead = SCATTER_AHEAD_BYTES / row > 1 ? SCATTER_AHEAD_BYTES / row : 1;
	for (uint32_t j = 0; j < pr.n; j++) {
		if (j + ahead < pr.n)
			prefetch_row(o, ord[j + ahead], row);
		scatter(o, ord[j],
			(const uint8_t *)pr.vals + (size_t)j * o->wire_bytes,
			pr.found[j]);
	}
	return 0;
}

/* A PULL_LAND reply: which key each of its slots holds, and their states
 * (the records were written before the reply). */
static int consume_land(struct op_state *o, const struct embkv_rpc *r)
{
	struct embkv_land_rpc *land = o->a->land;
	const uint32_t *ord = o->order + r->user_off;
	uint32_t slot = o->land_base + r->user_off;
	struct embkv_wire_land_reply lr;
	int rc;

	rc = embkv_wire_land_reply_decode(r->body, r->body_len, &lr);
	if (rc)
		return rc;
	if (lr.n != r->user_n || lr.dim != o->dim || lr.dtype != o->dtype)
		return EMBKV_EPROTO;
	for (uint32_t j = 0; j < lr.n; j++) {
		uint32_t p = o->b.first[ord[j]];

		land->slot_pos[slot + j] = p;
		land->state[p] = lr.state[j];
	}
	if (slot + lr.n > land->nslots)
		land->nslots = slot + lr.n;
	return 0;
}

/* Operations ---------------------------------------------------------------- */

static int check_pull(const struct embkv_batch_args *a)
{
	if (!a->out || (a->mode != EMBKV_MODE_TRAIN &&
			a->mode != EMBKV_MODE_INFER))
		return -EINVAL;
	return 0;
}

static int check_land(const struct embkv_batch_args *a)
{
	const struct embkv_land_rpc *l = a->land;

	if (!l || !l->base || !l->reg || !l->slot_pos || !l->state ||
	    l->stride < a->t->rec_len || l->stride % 8 ||
	    (a->mode != EMBKV_MODE_TRAIN && a->mode != EMBKV_MODE_INFER))
		return -EINVAL;
	return 0;
}

static int check_push_dev(const struct embkv_batch_args *a)
{
	const struct embkv_push_dev *d = a->dev;

	return d && d->base && d->reg && d->gather && d->unsent &&
	       (uint64_t)a->n * a->t->row_bytes <= d->bytes ? 0 : -EINVAL;
}

static int check_rows(const struct embkv_batch_args *a)
{
	return a->vals ? 0 : -EINVAL;
}

static int check_keys(const struct embkv_batch_args *a)
{
	(void)a;
	return 0;
}

static uint32_t pull_req_max_rows(size_t max_body, uint32_t dim)
{
	(void)dim;
	return embkv_wire_pull_req_max_rows(max_body);
}

static uint32_t land_req_max_rows(size_t max_body, uint32_t dim)
{
	(void)dim;
	return embkv_wire_land_req_max_rows(max_body);
}

static uint32_t erase_req_max_rows(size_t max_body, uint32_t dim)
{
	(void)dim;
	return embkv_wire_erase_req_max_rows(max_body);
}

/*
 * What differs between the batch operations, one row each, indexed by
 * enum embkv_batch_op: everything else (dedup, routing, rounds, retries)
 * is the same code for all of them.
 */
struct batch_op_desc {
	/* The op's own arguments (a->n > 0, a->keys set): 0 or -EINVAL. */
	int (*check)(const struct embkv_batch_args *a);
	/* The request body of n keys: its size, and the body of the keys
	 * o->order[at, at + n) for the table tref (body_len bytes). */
	int (*size)(const struct op_state *o, uint32_t n, size_t *len);
	int (*fill)(struct op_state *o, uint32_t at, uint32_t n,
		    const struct embkv_wire_table_ref *tref, uint8_t *body,
		    size_t len);
	uint8_t opcode;
	/* One reply, on arrival (status 0). */
	int (*consume)(struct op_state *o, const struct embkv_rpc *r);
	/* Rows that fit a request body, and a reply body (NULL: the reply
	 * is a count, of fixed size), of max_body bytes at this dim (and
	 * the table's dtype, for replies). */
	uint32_t (*req_max_rows)(size_t max_body, uint32_t dim);
	uint32_t (*reply_max_rows)(size_t max_body, uint32_t dim,
				   uint32_t dtype);
};

static const struct batch_op_desc batch_ops[] = {
	[EMBKV_BATCH_PULL] = {
		.check = check_pull, .size = size_pull, .fill = fill_pull,
		.opcode = EMBKV_WIRE_OP_PULL,
		.consume = consume_pull,
		.req_max_rows = pull_req_max_rows,
		.reply_max_rows = embkv_wire_pull_reply_max_rows_dt,
	},
	[EMBKV_BATCH_PUSH] = {
		.check = check_rows, .size = size_rows, .fill = fill_rows,
		.opcode = EMBKV_WIRE_OP_PUSH,
		.consume = consume_count,
		.req_max_rows = embkv_wire_rows_req_max_rows,
	},
	[EMBKV_BATCH_ASSIGN] = {
		.check = check_rows, .size = size_rows, .fill = fill_rows,
		.opcode = EMBKV_WIRE_OP_ASSIGN,
		.consume = consume_count,
		.req_max_rows = embkv_wire_rows_req_max_rows,
	},
	[EMBKV_BATCH_ACCUMULATE] = {
		.check = check_rows, .size = size_rows, .fill = fill_rows,
		.opcode = EMBKV_WIRE_OP_ACCUMULATE,
		.consume = consume_count,
		.req_max_rows = embkv_wire_rows_req_max_rows,
	},
	[EMBKV_BATCH_ERASE] = {
		.check = check_keys, .size = size_erase, .fill = fill_erase,
		.opcode = EMBKV_WIRE_OP_ERASE,
		.consume = consume_count,
		.req_max_rows = erase_req_max_rows,
	},
	[EMBKV_BATCH_PUSH_DEV] = {
		.check = check_push_dev, .size = size_rows,
		.fill = fill_rows, .opcode = EMBKV_WIRE_OP_PUSH,
		.consume = consume_count,
		.req_max_rows = embkv_wire_rows_req_max_rows,
	},
	/* rows per frame: also what the slots' bytes allow (frame_cap) */
	[EMBKV_BATCH_PULL_LAND] = {
		.check = check_land, .size = size_land, .fill = fill_land,
		.opcode = EMBKV_WIRE_OP_PULL_LAND,
		.consume = consume_land,
		.req_max_rows = land_req_max_rows,
	},
};

#define BATCH_OPS (sizeof(batch_ops) / sizeof(batch_ops[0]))
_Static_assert(BATCH_OPS == EMBKV_BATCH_OP_COUNT,
	       "one batch_ops[] row per enum embkv_batch_op");

int embkv_batch_check(const struct embkv_batch_args *a)
{
	if (!a || !a->t)
		return -EINVAL;
	if (a->n == 0)
		return 0;
	if (!a->keys || (unsigned int)a->op >= BATCH_OPS)
		return -EINVAL;
	return batch_ops[a->op].check(a);
}

/* r's request frame for its keys, o->order[user_off, + user_n). */
static int build_frame(struct op_state *o, struct embkv_rpc *r,
		       const struct embkv_wire_table_ref *tref, uint64_t epoch)
{
	uint8_t *body;
	size_t len;
	int rc;

	rc = o->d->size(o, r->user_n, &len);
	if (!rc)
		rc = embkv_rpc_frame(r, o->d->opcode, epoch, len, &body);
	if (!rc)
		rc = o->d->fill(o, r->user_off, r->user_n, tref, body, len);
	if (!rc && o->a->op == EMBKV_BATCH_PUSH_DEV) {
		/* the rows: where this round's gather put them */
		r->tail_len = (size_t)r->user_n * o->row_bytes;
		r->tail = (const uint8_t *)o->a->dev->base +
			  (size_t)r->user_off * o->row_bytes;
		r->req.len -= r->tail_len;
		r->on_conn = push_conn;
	}
	return rc;
}

/* on_reply of every frame of a round: consumed on arrival (client/rpc.c). */
static int consume_on_arrival(void *ctx, const struct embkv_rpc *r)
{
	struct op_state *o = ctx;

	return o->d->consume(o, r);
}

/* Rounds -------------------------------------------------------------------- */

static uint32_t frames_of(uint32_t n, uint32_t cap)
{
	return n / cap + (n % cap != 0);
}

static uint32_t min_rows(uint32_t cap, uint64_t rows)
{
	return rows < cap ? (uint32_t)rows : cap;
}

/*
 * Rows per frame to server: the table's cap, lowered so that the request
 * fits the transport's largest request frame and a pull's reply its
 * largest reply (the rdma transport's RECVs and reply slots). The codec
 * owns the bodies' layouts (embkv_wire_*_max_rows).
 */
static uint32_t frame_cap(const struct op_state *o, uint32_t server)
{
	const size_t hdr = EMBKV_WIRE_HDR_SIZE;
	const struct batch_op_desc *d = o->d;
	struct embkv_conn_limits lim;
	uint32_t cap = o->t->rows_cap;
	int one;

	embkv_client_server_limits(o->t->c, server, &lim, &one);
	if (lim.max_request > hdr)
		cap = min_rows(cap, d->req_max_rows(lim.max_request - hdr,
						    o->dim));
	if (d->reply_max_rows && lim.max_reply > hdr)
		cap = min_rows(cap, d->reply_max_rows(lim.max_reply - hdr,
						      o->dim, o->dtype));
	/* a landing pull's records: at most a reply slot per frame (the
	 * server's limit) */
	if (o->a->op == EMBKV_BATCH_PULL_LAND && lim.max_reply)
		cap = min_rows(cap, lim.max_reply / o->a->land->stride);
	return cap ? cap : 1;
}

/* The one-sided path's rows land here (client/onesided.c). */
static void onesided_deliver(void *ctx, uint32_t u, const void *row)
{
	scatter(ctx, u, row, 1);
}

static int round_run(struct op_state *o, struct embkv_shardmap *m)
{
	struct embkv_client *c = o->t->c;
	uint32_t nrpc = 0, s, k = 0, i, *caps;
	struct embkv_rpc *rpcs = NULL;
	uint32_t *off;
	int rc, err = 0;

	off = malloc(((size_t)m->nsrv + 1) * sizeof(*off));
	caps = malloc((size_t)m->nsrv * sizeof(*caps));
	if (!off || !caps) {
		rc = -ENOMEM;
		goto free_off;
	}
	rc = embkv_batch_route(o->pend, o->npend, o->upart, m->part_srv,
			       m->nsrv, o->order, off);
	if (rc)
		goto free_off;
	if (o->a->op == EMBKV_BATCH_PUSH_DEV) {
		/* this round's rows in its order, frame after frame */
		for (i = 0; i < o->npend; i++)
			o->retry[i] = o->b.first[o->order[i]];
		rc = o->a->dev->gather(o->a->dev->arg, o->retry, o->npend);
		if (rc)
			goto free_off;
	}
	if (o->a->op == EMBKV_BATCH_PULL_LAND &&
	    ((uint64_t)o->land_base + o->npend >
		     o->a->land->bytes / o->a->land->stride ||
	     (uint64_t)o->land_base + o->npend > o->a->n)) {
		rc = -ENOSPC; /* retries used up the slots: the caller's way */
		goto free_off;
	}
	for (s = 0; s < m->nsrv; s++) {
		caps[s] = off[s + 1] > off[s] ? frame_cap(o, m->srv[s]) : 1;
		nrpc += frames_of(off[s + 1] - off[s], caps[s]);
	}
	rpcs = calloc(nrpc ? nrpc : 1, sizeof(*rpcs));
	if (!rpcs) {
		rc = -ENOMEM;
		goto free_off;
	}
	for (s = 0; s < m->nsrv; s++) {
		uint32_t cap = caps[s];

		for (uint32_t at = off[s]; at < off[s + 1]; at += cap) {
			struct embkv_rpc *r = &rpcs[k++];

			embkv_rpc_init_pooled(c, r, m->srv[s]);
			r->user_off = at;
			r->user_n = off[s + 1] - at < cap ? off[s + 1] - at : cap;
			r->on_reply = consume_on_arrival;
			r->on_reply_ctx = o;
			if (o->a->op == EMBKV_BATCH_PULL_LAND)
				r->on_conn = land_conn;
			rc = build_frame(o, r, &m->tref[s], m->epoch);
			if (rc)
				goto clear;
		}
	}
	rc = embkv_rpc_exchange(c, rpcs, nrpc, embkv_client_deadline(c));
	o->land_base += o->npend; /* this round's slots are spent */
	if (rc)
		goto clear;
	o->nretry = 0;
	for (i = 0; i < nrpc; i++) {
		struct embkv_rpc *r = &rpcs[i];

		if (r->unsent && o->a->op == EMBKV_BATCH_PUSH_DEV) {
			/* never sent, not applied: the caller's to push */
			for (uint32_t j = 0; j < r->user_n; j++)
				o->a->dev->unsent[o->b.first[
					o->order[r->user_off + j]]] = 1;
			continue;
		}
		if (r->status == EMBKV_ESTALE && r->has_reply) {
			memcpy(o->retry + o->nretry, o->order + r->user_off,
			       (size_t)r->user_n * sizeof(uint32_t));
			o->nretry += r->user_n;
			if (r->rhdr.epoch >= o->stale_epoch) {
				o->stale_epoch = r->rhdr.epoch;
				o->stale_server = r->server;
			}
			continue;
		}
		/* status 0: consumed on arrival, with this outcome */
		rc = r->status ? r->status : r->consume_rc;
		if (rc && !err)
			err = rc;
	}
	rc = err;
clear:
	for (i = 0; i < k; i++)
		embkv_rpc_release(c, &rpcs[i]);
	free(rpcs);
free_off:
	free(caps);
	free(off);
	return rc;
}

/*
 * The wait before asking for the map again while a partition answers
 * EMBKV_ESTALE under the map we hold: a move's freeze, which lasts a few
 * ms (last delta, apply, the flip in etcd; tools/bench_move.c measures
 * it). Short polls first (BACKOFF_POLLS of BACKOFF_POLL_US: a map
 * refresh is one small RPC), so that a push is held about as long as the
 * pause and not up to twice that; then exponential, for a server that
 * stays behind. attempt >= BACKOFF_POLLS: exponential from the start.
 */
static void backoff(uint32_t attempt)
{
	uint64_t ns;
	struct timespec ts;

	if (attempt < BACKOFF_POLLS) {
		ns = (uint64_t)BACKOFF_POLL_US * 1000u;
	} else {
		uint32_t e = attempt - BACKOFF_POLLS;
		uint32_t ms = BACKOFF_MS_BASE << (e < 8 ? e : 8);

		ns = (uint64_t)(ms > BACKOFF_MS_MAX ? BACKOFF_MS_MAX : ms) *
		     NS_PER_MS;
	}
	ts.tv_sec = (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int state_init(struct op_state *o, const struct embkv_batch_args *a)
{
	struct embkv_table_handle *t = a->t;
	uint32_t u, nu;
	size_t dbytes;
	int rc;

	memset(o, 0, sizeof(*o));
	o->a = a;
	o->d = &batch_ops[a->op];
	o->t = t;
	o->dim = t->attr.dim;
	o->row_bytes = t->row_bytes;
	o->dtype = t->attr.dtype;
	o->wire_bytes = t->payload_bytes;
	o->widen = !a->raw && t->payload_bytes != t->row_bytes;
	o->out_bytes = a->raw ? t->payload_bytes : t->row_bytes;
	/* From the client's pool (client.c): a fresh allocation every call
	 * was trimmed back to the kernel and faulted in again each time. */
	embkv_buf_init(&o->scratch);
	embkv_client_buf_take(t->c, &o->scratch);
	dbytes = embkv_batch_dedup_bytes(a->n); /* a multiple of 4 */
	rc = embkv_buf_reserve(&o->scratch,
			       dbytes + 4 * (size_t)a->n * sizeof(uint32_t));
	/* upart has room for n (the distinct count is known only after),
	 * then pend, retry and order take nuniq each. */
	if (!rc) {
		o->upart = (uint32_t *)(o->scratch.data + dbytes);
		rc = embkv_batch_dedup_parts_into(&o->b, a->n, a->keys,
						  o->scratch.data,
						  t->attr.hash_seed,
						  t->attr.partitions, o->upart);
	}
	if (rc) {
		embkv_client_buf_give(t->c, &o->scratch);
		return rc;
	}
	nu = o->b.nuniq;
	o->pend = o->upart + a->n;
	o->retry = o->pend + nu;
	o->order = o->retry + nu;
	for (u = 0; u < nu; u++)
		o->pend[u] = u;
	o->npend = nu;
	return 0;
}

/*
 * Rounds until every pending key is done or an error: o->pend after a
 * round, or, with stale_first, o->retry (keys a round answered
 * EMBKV_ESTALE under the map of epoch o->used_epoch) after a refresh.
 */
static int rounds(struct op_state *o, uint64_t deadline, int stale_first)
{
	struct embkv_client *c = o->t->c;
	uint32_t *tmp, waits = 0, retries = 0;
	uint64_t used = o->used_epoch;
	struct embkv_shardmap *m;
	int rc = 0, newer;

	if (stale_first)
		goto stale;
	for (;;) {
		m = embkv_shardmap_get(o->t);
		used = m->epoch;
		o->stale_epoch = 0;
		o->stale_server = UINT32_MAX;
		rc = round_run(o, m);
		embkv_shardmap_put(m);
		if (rc || o->nretry == 0)
			break;
stale:
		/* A partition being moved answers ESTALE under the same map
		 * until the flip (and a server may be behind the client):
		 * waiting for a newer map is bounded by the request timeout,
		 * stale answers under newer maps by max_retries. */
		if (retries >= c->max_retries || embkv_now_ms() >= deadline) {
			rc = EMBKV_ESTALE;
			break;
		}
		rc = embkv_shardmap_refresh(o->t, o->stale_server, &newer);
		if (rc)
			break;
		m = embkv_shardmap_get(o->t);
		/* Only a server claiming an epoch that no map we can fetch
		 * has counts against max_retries; a newer map is progress
		 * (partitions moving one after another flip it many times),
		 * and waiting out a move under the same map is too: both are
		 * bounded by the request timeout. */
		if (m->epoch == used) {
			/* (short polls only while a partition is frozen; a
			 * server ahead of every map keeps the old backoff) */
			if (o->stale_epoch > used) {
				retries++;
				backoff(BACKOFF_POLLS + waits++);
			} else {
				backoff(waits++);
			}
		}
		embkv_shardmap_put(m);
		tmp = o->pend;
		o->pend = o->retry;
		o->retry = tmp;
		o->npend = o->nretry;
	}
	return rc;
}

/* Deduplicated, partitioned, and (a pull) the one-sided keys served. */
static int batch_begin(struct op_state *o, const struct embkv_batch_args *a)
{
	int rc = state_init(o, a);

	if (rc)
		return rc;
	if (a->op == EMBKV_BATCH_PULL && a->t->os && !a->rpc_only) {
		struct embkv_shardmap *m = embkv_shardmap_get(a->t);

		embkv_onesided_pull(a->t, m, o->b.ukeys, o->upart, o->pend,
				    &o->npend, onesided_deliver, o);
		embkv_shardmap_put(m);
	}
	return 0;
}

static void batch_end(struct op_state *o)
{
	if (o->a->done)
		*o->a->done = (uint32_t)o->done;
	embkv_batch_destroy(&o->b);
	embkv_client_buf_give(o->t->c, &o->scratch);
}

int embkv_batch_run(const struct embkv_batch_args *a)
{
	struct op_state o;
	int rc;

	rc = embkv_batch_check(a);
	if (rc)
		return rc;
	if (a->done)
		*a->done = 0;
	if (a->n == 0)
		return 0;
	rc = batch_begin(&o, a);
	if (rc)
		return rc;
	rc = rounds(&o, embkv_client_deadline(a->t->c), 0);
	batch_end(&o);
	return rc;
}

/* One table's share of a multi-table call (client/multi.c) ------------------ */

int embkv_share_begin(const struct embkv_batch_args *a, struct embkv_share **out)
{
	struct op_state *o;
	int rc = embkv_batch_check(a);

	*out = NULL;
	if (rc)
		return rc;
	if (a->done)
		*a->done = 0;
	o = malloc(sizeof(*o));
	if (!o)
		return -ENOMEM;
	rc = batch_begin(o, a);
	if (rc) {
		free(o);
		return rc;
	}
	o->args = *a;
	o->a = &o->args;
	*out = (struct embkv_share *)o;
	return 0;
}

int embkv_share_route(struct embkv_share *op, const struct embkv_shardmap *m,
		   uint32_t *off)
{
	struct op_state *o = (struct op_state *)op;

	o->used_epoch = m->epoch;
	o->nretry = 0;
	return embkv_batch_route(o->pend, o->npend, o->upart, m->part_srv,
				 m->nsrv, o->order, off);
}

uint32_t embkv_share_rows_fit(const struct embkv_share *op, size_t max_req,
			   size_t max_rep)
{
	const struct op_state *o = (const struct op_state *)op;
	uint32_t cap = min_rows(o->t->rows_cap,
				o->d->req_max_rows(max_req, o->dim));

	if (o->d->reply_max_rows)
		cap = min_rows(cap, o->d->reply_max_rows(max_rep, o->dim,
							 o->dtype));
	return cap;
}

int embkv_share_section_size(const struct embkv_share *op, uint32_t n,
			  size_t *req_len, size_t *rep_len)
{
	const struct op_state *o = (const struct op_state *)op;
	int rc = o->d->size(o, n, req_len);

	if (rc)
		return rc;
	if (o->a->op == EMBKV_BATCH_PULL)
		return embkv_wire_pull_reply_size_dt(n, o->dim, o->dtype,
						     rep_len);
	*rep_len = EMBKV_WIRE_COUNT_REPLY_SIZE;
	return 0;
}

int embkv_share_section_fill(struct embkv_share *op, uint32_t at, uint32_t n,
			  const struct embkv_wire_table_ref *tref,
			  uint8_t *body, size_t len)
{
	struct op_state *o = (struct op_state *)op;

	return o->d->fill(o, at, n, tref, body, len);
}

int embkv_share_section_consume(struct embkv_share *op, uint32_t at, uint32_t n,
			     const uint8_t *body, size_t len)
{
	struct op_state *o = (struct op_state *)op;
	struct embkv_rpc r;

	memset(&r, 0, sizeof(r));
	r.user_off = at;
	r.user_n = n;
	r.body = body;
	r.body_len = len;
	return o->d->consume(o, &r);
}

void embkv_share_retry(struct embkv_share *op, uint32_t at, uint32_t n,
		    int stale, uint64_t epoch, uint32_t server)
{
	struct op_state *o = (struct op_state *)op;

	memcpy(o->retry + o->nretry, o->order + at, (size_t)n * sizeof(uint32_t));
	o->nretry += n;
	if (!stale)
		return;
	o->any_stale = 1;
	if (epoch >= o->stale_epoch) {
		o->stale_epoch = epoch;
		o->stale_server = server;
	}
}

void embkv_share_fail(struct embkv_share *op, int rc)
{
	struct op_state *o = (struct op_state *)op;

	if (!o->err)
		o->err = rc;
}

int embkv_share_end(struct embkv_share *op, uint64_t deadline)
{
	struct op_state *o = (struct op_state *)op;
	uint32_t *tmp;
	int rc = o->err;

	if (!rc && o->nretry && o->any_stale) {
		rc = rounds(o, deadline, 1);
	} else if (!rc && o->nretry) {
		tmp = o->pend;
		o->pend = o->retry;
		o->retry = tmp;
		o->npend = o->nretry;
		rc = rounds(o, deadline, 0);
	}
	batch_end(o);
	free(o);
	return rc;
}

/* Public entry points ------------------------------------------------------- */

int embkv_pull(struct embkv_table_handle *t, uint32_t n, const uint64_t *keys,
	       float *out, uint8_t *found, enum embkv_mode mode,
	       const float *dflt)
{
	struct embkv_batch_args a = {
		.t = t, .op = EMBKV_BATCH_PULL, .n = n, .keys = keys,
		.out = out, .found = found, .mode = mode, .dflt = dflt,
	};

	return embkv_batch_run(&a);
}

int embkv_pull_raw(struct embkv_table_handle *t, uint32_t n,
		   const uint64_t *keys, void *out, uint8_t *found,
		   enum embkv_mode mode, const void *dflt)
{
	struct embkv_batch_args a = {
		.t = t, .op = EMBKV_BATCH_PULL, .n = n, .keys = keys,
		.out = out, .found = found, .mode = mode, .dflt = dflt,
		.raw = true,
	};

	return embkv_batch_run(&a);
}

int embkv_push(struct embkv_table_handle *t, uint32_t n, const uint64_t *keys,
	       const float *grads, uint32_t *applied)
{
	struct embkv_batch_args a = {
		.t = t, .op = EMBKV_BATCH_PUSH, .n = n, .keys = keys,
		.vals = grads, .done = applied,
	};

	return embkv_batch_run(&a);
}

int embkv_assign(struct embkv_table_handle *t, uint32_t n,
		 const uint64_t *keys, const float *values)
{
	struct embkv_batch_args a = {
		.t = t, .op = EMBKV_BATCH_ASSIGN, .n = n, .keys = keys,
		.vals = values,
	};

	return embkv_batch_run(&a);
}

int embkv_erase(struct embkv_table_handle *t, uint32_t n, const uint64_t *keys,
		uint32_t *erased)
{
	struct embkv_batch_args a = {
		.t = t, .op = EMBKV_BATCH_ERASE, .n = n, .keys = keys,
		.done = erased,
	};

	return embkv_batch_run(&a);
}

int embkv_accumulate(struct embkv_table_handle *t, uint32_t n,
		     const uint64_t *keys, const float *deltas,
		     uint32_t *applied)
{
	struct embkv_batch_args a = {
		.t = t, .op = EMBKV_BATCH_ACCUMULATE, .n = n, .keys = keys,
		.vals = deltas, .done = applied,
	};

	return embkv_batch_run(&a);
}
