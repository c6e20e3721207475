/*
 * Several tables in one call, one frame per server: embkv_pull_multi and
 * embkv_push_multi over MULTI_PULL / MULTI_PUSH (net/PROTOCOL.md 5.25).
 *
 * What: every entry's keys are deduplicated and routed over its table's
 * shard map as a single-table batch would be (client/ops.c's share API);
 * the (entry, server) shares become sections, cut to fit the server's
 * frames; the sections of each server are packed into as few frames as
 * its limits allow (one, unless the transport's frames are small), and
 * all frames go out in one exchange (client/rpc.c). Replies are consumed
 * as they arrive, section by section, into each entry's rows and counts.
 *
 * Why: a DLRM step touches tens of tables; one frame per table and server
 * cost one round trip each (client-side parallel at best). One frame per
 * server makes the step one round trip per server.
 *
 * What is left to the per-table path (ops.c's rounds, run per entry
 * after the exchange): keys a section got EMBKV_ESTALE for (a partition
 * moving: the map is refreshed first, exactly as a single-table batch
 * does), and keys for a server that answered EMBKV_EOPCODE (older than
 * these requests; remembered, so later calls send it per-table frames
 * straight away).
 *
 * Invariants: a section whose server accepted it is never sent again (a
 * push is applied at most once); an entry's status is the first error of
 * its sections or of its per-table rounds; every share is ended (its
 * memory freed and *done written) before the call returns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"

/* Reply bytes budgeted for one section: the larger of its success body
 * and an error message, so a reply always fits what was planned. */
#define SEC_ERR_BYTES EMBKV_WIRE_ERRMSG_MAX

struct chunk {
	uint32_t entry;
	uint32_t server;          /* client server index */
	uint32_t at, n;           /* the entry's order[at, at + n) */
	uint64_t epoch;           /* the entry's map epoch */
	struct embkv_wire_table_ref tref;
	size_t req_len, rep_len;  /* section body bytes */
	int status;               /* the section's answer */
	uint64_t reply_epoch;
};

struct mframe {
	struct mstate *st;
	uint32_t first, count;    /* chunks[first, first + count) */
};

struct mstate {
	struct embkv_share **ops;
	struct chunk *ch;
	uint32_t nch, cap;
};

static uint64_t sec_rep_bytes(const struct chunk *k)
{
	size_t rep = k->rep_len > SEC_ERR_BYTES ? k->rep_len : SEC_ERR_BYTES;

	return embkv_wire_multi_sec_bytes((uint32_t)rep);
}

/* The body budget of a frame to server, request and reply. */
static void frame_budget(struct embkv_client *c, uint32_t server,
			 size_t *req, size_t *rep)
{
	const size_t hdr = EMBKV_WIRE_HDR_SIZE;
	struct embkv_conn_limits lim;
	int one;

	*req = *rep = EMBKV_WIRE_MAX_BODY;
	embkv_client_server_limits(c, server, &lim, &one);
	if (lim.max_request > hdr && lim.max_request - hdr < *req)
		*req = lim.max_request - hdr;
	if (lim.max_reply > hdr && lim.max_reply - hdr < *rep)
		*rep = lim.max_reply - hdr;
}

static int chunk_add(struct mstate *st, const struct chunk *k)
{
	if (st->nch == st->cap) {
		uint32_t cap = st->cap ? 2 * st->cap : 64;
		struct chunk *n = realloc(st->ch, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		st->ch = n;
		st->cap = cap;
	}
	st->ch[st->nch++] = *k;
	return 0;
}

/* Entry i's shares as sections (or put back for the per-table path when
 * their server has no MULTI requests). */
static int plan_entry(struct embkv_client *c, struct mstate *st, uint32_t i,
		      struct embkv_table_handle *t)
{
	struct embkv_share *op = st->ops[i];
	const size_t fixed = EMBKV_WIRE_MULTI_SECTIONS +
			     EMBKV_WIRE_MULTI_SEC_BODY + 8; /* + padding */
	struct embkv_shardmap *m = embkv_shardmap_get(t);
	uint32_t *off = malloc(((size_t)m->nsrv + 1) * sizeof(*off));
	int rc = off ? 0 : -ENOMEM;

	if (!rc)
		rc = embkv_share_route(op, m, off);
	for (uint32_t s = 0; !rc && s < m->nsrv; s++) {
		uint32_t server = m->srv[s], cap;
		size_t req, rep;

		if (off[s + 1] == off[s])
			continue;
		if (__atomic_load_n(&embkv_client_server(c, server)->no_multi,
				    __ATOMIC_RELAXED)) {
			embkv_share_retry(op, off[s], off[s + 1] - off[s], 0, 0,
					  server);
			continue;
		}
		frame_budget(c, server, &req, &rep);
		cap = embkv_share_rows_fit(op, req > fixed ? req - fixed : 0,
					   rep > fixed + SEC_ERR_BYTES
						   ? rep - fixed : 0);
		if (!cap)
			cap = 1;
		for (uint32_t at = off[s]; !rc && at < off[s + 1]; at += cap) {
			struct chunk k = {
				.entry = i, .server = server, .at = at,
				.n = off[s + 1] - at < cap ? off[s + 1] - at
							   : cap,
				.epoch = m->epoch, .tref = m->tref[s],
			};

			rc = embkv_share_section_size(op, k.n, &k.req_len,
						      &k.rep_len);
			if (!rc)
				rc = chunk_add(st, &k);
		}
	}
	free(off);
	embkv_shardmap_put(m);
	return rc;
}

static int chunk_cmp(const void *a, const void *b)
{
	const struct chunk *x = a, *y = b;

	if (x->server != y->server)
		return x->server < y->server ? -1 : 1;
	if (x->entry != y->entry)
		return x->entry < y->entry ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

/* A reply, on arrival: each section into its entry. */
static int consume_multi(void *ctx, const struct embkv_rpc *r)
{
	struct mframe *f = ctx;
	struct embkv_wire_multi m;
	struct embkv_wire_multi_sec sec;
	uint32_t j = 0;
	int rc;

	rc = embkv_wire_multi_decode(r->rhdr.opcode, r->body, r->body_len,
				     &m);
	if (rc)
		return rc;
	if (m.count != f->count)
		return EMBKV_EPROTO;
	while (embkv_wire_multi_next(&m, &sec)) {
		struct chunk *k = &f->st->ch[f->first + j++];

		k->status = sec.status;
		k->reply_epoch = sec.epoch;
		if (!sec.status)
			k->status = embkv_share_section_consume(
				f->st->ops[k->entry], k->at, k->n, sec.body,
				sec.len);
	}
	return 0;
}

/* Packs the sorted chunks into frames: returns how many, frames[] set. */
static uint32_t pack(struct embkv_client *c, struct mstate *st,
		     struct mframe *fr)
{
	uint32_t nfr = 0;

	for (uint32_t i = 0; i < st->nch;) {
		uint32_t server = st->ch[i].server;
		uint64_t req = EMBKV_WIRE_MULTI_SECTIONS, rep = req;
		size_t max_req, max_rep;
		struct mframe *f = &fr[nfr++];

		frame_budget(c, server, &max_req, &max_rep);
		f->st = st;
		f->first = i;
		f->count = 0;
		/* at least one section; more while they fit */
		while (i < st->nch && st->ch[i].server == server &&
		       f->count < EMBKV_WIRE_MAX_SECTIONS) {
			uint64_t q = embkv_wire_multi_sec_bytes(
				(uint32_t)st->ch[i].req_len);
			uint64_t p = sec_rep_bytes(&st->ch[i]);

			if (f->count && (req + q > max_req || rep + p > max_rep))
				break;
			req += q;
			rep += p;
			f->count++;
			i++;
		}
	}
	return nfr;
}

static int build(struct embkv_client *c, struct mstate *st,
		 struct mframe *f, struct embkv_rpc *r, uint8_t opcode)
{
	size_t len = EMBKV_WIRE_MULTI_SECTIONS, at;
	uint8_t *body;
	int rc;

	for (uint32_t j = 0; j < f->count; j++)
		len += embkv_wire_multi_sec_bytes(
			(uint32_t)st->ch[f->first + j].req_len);
	embkv_rpc_init_pooled(c, r, st->ch[f->first].server);
	r->on_reply = consume_multi;
	r->on_reply_ctx = f;
	rc = embkv_rpc_frame(r, opcode, 0, len, &body);
	if (!rc)
		rc = embkv_wire_multi_encode_head(f->count, body, len);
	at = EMBKV_WIRE_MULTI_SECTIONS;
	for (uint32_t j = 0; !rc && j < f->count; j++) {
		struct chunk *k = &st->ch[f->first + j];
		struct embkv_wire_multi_sec s = {
			.len = (uint32_t)k->req_len, .epoch = k->epoch,
		};
		uint8_t *sb;
		int64_t n = embkv_wire_multi_sec_prepare(&s, body + at,
							 len - at, &sb);

		if (n < 0) {
			rc = (int)n;
			break;
		}
		rc = embkv_share_section_fill(st->ops[k->entry], k->at, k->n,
					      &k->tref, sb, k->req_len);
		at += (size_t)n;
	}
	return rc;
}

/* What the exchange left for each section: done, failed, or put back. */
static void settle(struct embkv_client *c, struct mstate *st,
		   const struct mframe *f, const struct embkv_rpc *r)
{
	int whole = r->status ? r->status : r->consume_rc;

	if (r->status == EMBKV_EOPCODE && r->has_reply) {
		/* an older server: per-table frames, now and from now on */
		__atomic_store_n(&embkv_client_server(c, r->server)->no_multi,
				 1, __ATOMIC_RELAXED);
		for (uint32_t j = 0; j < f->count; j++) {
			struct chunk *k = &st->ch[f->first + j];

			embkv_share_retry(st->ops[k->entry], k->at, k->n, 0, 0,
					  k->server);
		}
		return;
	}
	for (uint32_t j = 0; j < f->count; j++) {
		struct chunk *k = &st->ch[f->first + j];
		struct embkv_share *op = st->ops[k->entry];

		if (whole)
			embkv_share_fail(op, whole);
		else if (k->status == EMBKV_ESTALE)
			embkv_share_retry(op, k->at, k->n, 1, k->reply_epoch,
					  k->server);
		else if (k->status)
			embkv_share_fail(op, k->status);
	}
}

static int multi_exec(struct embkv_client *c, struct embkv_multi_req *reqs,
		      uint32_t nreq, int push, enum embkv_mode mode)
{
	uint8_t opcode = push ? EMBKV_WIRE_OP_MULTI_PUSH
			      : EMBKV_WIRE_OP_MULTI_PULL;
	uint64_t deadline = embkv_client_deadline(c);
	struct mstate st = { 0 };
	struct embkv_rpc *rpcs = NULL;
	struct mframe *fr = NULL;
	uint32_t nfr = 0, built = 0, i;
	int rc = 0, first = 0;

	st.ops = calloc(nreq, sizeof(*st.ops));
	if (!st.ops)
		return -ENOMEM;
	for (i = 0; i < nreq; i++) {
		struct embkv_multi_req *q = &reqs[i];
		struct embkv_batch_args a = {
			.t = q->t,
			.op = push ? EMBKV_BATCH_PUSH : EMBKV_BATCH_PULL,
			.n = q->n, .keys = q->keys,
			.vals = push ? q->rows : NULL,
			.out = push ? NULL : q->rows,
			.found = push ? NULL : q->found,
			.mode = mode, .done = &q->done,
		};

		q->done = 0;
		q->status = embkv_batch_check(&a);
		if (!q->status && q->n)
			q->status = embkv_share_begin(&a, &st.ops[i]);
	}
	for (i = 0; !rc && i < nreq; i++)
		if (st.ops[i])
			rc = plan_entry(c, &st, i, reqs[i].t);
	if (!rc && st.nch) {
		qsort(st.ch, st.nch, sizeof(*st.ch), chunk_cmp);
		fr = calloc(st.nch, sizeof(*fr));
		rc = fr ? 0 : -ENOMEM;
	}
	if (!rc && st.nch) {
		nfr = pack(c, &st, fr);
		rpcs = calloc(nfr, sizeof(*rpcs));
		rc = rpcs ? 0 : -ENOMEM;
	}
	for (; !rc && built < nfr; built++)
		rc = build(c, &st, &fr[built], &rpcs[built], opcode);
	if (!rc && nfr)
		rc = embkv_rpc_exchange(c, rpcs, nfr, deadline);
	for (uint32_t k = 0; !rc && k < nfr; k++)
		settle(c, &st, &fr[k], &rpcs[k]);
	/* built counts a frame whose build failed too: all were started */
	for (uint32_t k = 0; k < built; k++)
		embkv_rpc_release(c, &rpcs[k]);
	free(rpcs);
	free(fr);
	free(st.ch);
	/* a failure of the call itself fails every entry still running;
	 * the rest finish their keys left over on the per-table path */
	for (i = 0; i < nreq; i++) {
		if (!st.ops[i])
			continue;
		if (rc)
			embkv_share_fail(st.ops[i], rc);
		reqs[i].status = embkv_share_end(st.ops[i], deadline);
	}
	free(st.ops);
	for (i = 0; i < nreq && !first; i++)
		first = reqs[i].status;
	return first;
}

static int multi_run(struct embkv_multi_req *reqs, uint32_t nreq, int push,
		     enum embkv_mode mode)
{
	struct embkv_client *c = NULL;

	if (!reqs && nreq)
		return -EINVAL;
	if (!nreq)
		return 0;
	for (uint32_t i = 0; i < nreq; i++) {
		if (!reqs[i].t)
			continue;
		if (c && reqs[i].t->c != c) /* tables of several clients */
			return embkv_multi_separate(reqs, nreq, push, mode);
		c = reqs[i].t->c;
	}
	if (!c) /* no table at all: every entry -EINVAL */
		return embkv_multi_separate(reqs, nreq, push, mode);
	return multi_exec(c, reqs, nreq, push, mode);
}

int embkv_pull_multi(struct embkv_multi_req *reqs, uint32_t nreq,
		     enum embkv_mode mode)
{
	if (mode != EMBKV_MODE_TRAIN && mode != EMBKV_MODE_INFER)
		return -EINVAL;
	return multi_run(reqs, nreq, 0, mode);
}

int embkv_push_multi(struct embkv_multi_req *reqs, uint32_t nreq)
{
	return multi_run(reqs, nreq, 1, EMBKV_MODE_TRAIN);
}
