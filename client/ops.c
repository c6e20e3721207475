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
};

/* Frames ------------------------------------------------------------------- */

static int build_pull(struct op_state *o, struct embkv_rpc *r,
		      const struct embkv_wire_table_ref *tref, uint64_t epoch)
{
	struct embkv_wire_pull_req m = {
		.table_id = tref->table_id,
		.uid = tref->uid,
		.dim = o->dim,
		.n = r->user_n,
		.mode = o->a->mode == EMBKV_MODE_INFER ? EMBKV_WIRE_PULL_INFER
						       : EMBKV_WIRE_PULL_TRAIN,
	};
	const uint32_t *ord = o->order + r->user_off;
	uint64_t *keys;
	uint8_t *body;
	size_t len;
	int rc;

	rc = embkv_wire_pull_req_size(&m, &len);
	if (!rc)
		rc = embkv_rpc_frame(r, EMBKV_WIRE_OP_PULL, epoch, len, &body);
	if (!rc)
		rc = embkv_wire_pull_req_prepare(&m, body, len, &keys);
	if (rc)
		return rc;
	for (uint32_t j = 0; j < m.n; j++)
		keys[j] = o->b.ukeys[ord[j]];
	return 0;
}

static int build_rows(struct op_state *o, struct embkv_rpc *r,
		      const struct embkv_wire_table_ref *tref, uint64_t epoch)
{
	struct embkv_wire_rows_req m = {
		.table_id = tref->table_id,
		.uid = tref->uid,
		.dim = o->dim,
		.n = r->user_n,
	};
	const uint32_t *ord = o->order + r->user_off;
	/* duplicates' rows summed (gradients, deltas), or the last wins */
	int push = o->a->op == EMBKV_BATCH_PUSH ||
		   o->a->op == EMBKV_BATCH_ACCUMULATE;
	uint8_t opcode = o->a->op == EMBKV_BATCH_PUSH ? EMBKV_WIRE_OP_PUSH :
			 o->a->op == EMBKV_BATCH_ACCUMULATE ?
				 EMBKV_WIRE_OP_ACCUMULATE :
				 EMBKV_WIRE_OP_ASSIGN;
	uint64_t *keys;
	uint8_t *body;
	float *vals;
	size_t len;
	int rc;

	rc = embkv_wire_rows_req_size(&m, &len);
	if (!rc)
		rc = embkv_rpc_frame(r, opcode, epoch, len, &body);
	if (!rc)
		rc = embkv_wire_rows_req_prepare(&m, body, len, &keys, &vals);
	if (rc)
		return rc;
	for (uint32_t j = 0; j < m.n; j++) {
		uint32_t u = ord[j];
		float *dst = vals + (size_t)j * o->dim;

		keys[j] = o->b.ukeys[u];
		if (push) /* duplicates' gradients summed */
			embkv_batch_sum_row(&o->b, u, o->a->vals, o->dim, dst);
		else      /* the last value of a duplicate wins */
			memcpy(dst, o->a->vals + (size_t)o->b.last[u] * o->dim,
			       o->row_bytes);
	}
	return 0;
}

static int build_erase(struct op_state *o, struct embkv_rpc *r,
		       const struct embkv_wire_table_ref *tref, uint64_t epoch)
{
	struct embkv_wire_erase_req m = {
		.table_id = tref->table_id,
		.uid = tref->uid,
		.n = r->user_n,
	};
	const uint32_t *ord = o->order + r->user_off;
	uint64_t *keys;
	uint8_t *body;
	size_t len;
	int rc;

	rc = embkv_wire_erase_req_size(&m, &len);
	if (!rc)
		rc = embkv_rpc_frame(r, EMBKV_WIRE_OP_ERASE, epoch, len, &body);
	if (!rc)
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

/* Operations ---------------------------------------------------------------- */

static int check_pull(const struct embkv_batch_args *a)
{
	if (!a->out || (a->mode != EMBKV_MODE_TRAIN &&
			a->mode != EMBKV_MODE_INFER))
		return -EINVAL;
	return 0;
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
	/* r's request frame for its keys, o->order[user_off, + user_n). */
	int (*build)(struct op_state *o, struct embkv_rpc *r,
		     const struct embkv_wire_table_ref *tref, uint64_t epoch);
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
		.check = check_pull, .build = build_pull,
		.consume = consume_pull,
		.req_max_rows = pull_req_max_rows,
		.reply_max_rows = embkv_wire_pull_reply_max_rows_dt,
	},
	[EMBKV_BATCH_PUSH] = {
		.check = check_rows, .build = build_rows,
		.consume = consume_count,
		.req_max_rows = embkv_wire_rows_req_max_rows,
	},
	[EMBKV_BATCH_ASSIGN] = {
		.check = check_rows, .build = build_rows,
		.consume = consume_count,
		.req_max_rows = embkv_wire_rows_req_max_rows,
	},
	[EMBKV_BATCH_ACCUMULATE] = {
		.check = check_rows, .build = build_rows,
		.consume = consume_count,
		.req_max_rows = embkv_wire_rows_req_max_rows,
	},
	[EMBKV_BATCH_ERASE] = {
		.check = check_keys, .build = build_erase,
		.consume = consume_count,
		.req_max_rows = erase_req_max_rows,
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
			rc = o->d->build(o, r, &m->tref[s], m->epoch);
			if (rc)
				goto clear;
		}
	}
	rc = embkv_rpc_exchange(c, rpcs, nrpc, embkv_client_deadline(c));
	if (rc)
		goto clear;
	o->nretry = 0;
	for (i = 0; i < nrpc; i++) {
		struct embkv_rpc *r = &rpcs[i];

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

static void backoff(uint32_t attempt)
{
	uint32_t ms = BACKOFF_MS_BASE << (attempt < 8 ? attempt : 8);
	struct timespec ts;

	if (ms > BACKOFF_MS_MAX)
		ms = BACKOFF_MS_MAX;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)ms * NS_PER_MS;
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

int embkv_batch_run(const struct embkv_batch_args *a)
{
	struct embkv_client *c;
	struct op_state o;
	uint32_t *tmp, waits = 0, retries = 0;
	uint64_t deadline;
	int rc, newer;

	rc = embkv_batch_check(a);
	if (rc)
		return rc;
	if (a->done)
		*a->done = 0;
	if (a->n == 0)
		return 0;
	c = a->t->c;
	deadline = embkv_client_deadline(c);
	rc = state_init(&o, a);
	if (rc)
		return rc;
	if (a->op == EMBKV_BATCH_PULL && a->t->os) {
		struct embkv_shardmap *m = embkv_shardmap_get(a->t);

		embkv_onesided_pull(a->t, m, o.b.ukeys, o.upart, o.pend,
				    &o.npend, onesided_deliver, &o);
		embkv_shardmap_put(m);
	}
	for (;;) {
		struct embkv_shardmap *m = embkv_shardmap_get(a->t);
		uint64_t used = m->epoch;

		o.stale_epoch = 0;
		o.stale_server = UINT32_MAX;
		rc = round_run(&o, m);
		embkv_shardmap_put(m);
		if (rc || o.nretry == 0)
			break;
		/* A partition being moved answers ESTALE under the same map
		 * until the flip (and a server may be behind the client):
		 * waiting for a newer map is bounded by the request timeout,
		 * stale answers under newer maps by max_retries. */
		if (retries >= c->max_retries || embkv_now_ms() >= deadline) {
			rc = EMBKV_ESTALE;
			break;
		}
		rc = embkv_shardmap_refresh(a->t, o.stale_server, &newer);
		if (rc)
			break;
		m = embkv_shardmap_get(a->t);
		/* Only a server claiming an epoch that no map we can fetch
		 * has counts against max_retries; a newer map is progress
		 * (partitions moving one after another flip it many times),
		 * and waiting out a move under the same map is too: both are
		 * bounded by the request timeout. */
		if (m->epoch == used) {
			if (o.stale_epoch > used)
				retries++;
			backoff(waits++);
		}
		embkv_shardmap_put(m);
		tmp = o.pend;
		o.pend = o.retry;
		o.retry = tmp;
		o.npend = o.nretry;
	}
	if (a->done)
		*a->done = (uint32_t)o.done;
	embkv_batch_destroy(&o.b);
	embkv_client_buf_give(c, &o.scratch);
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
