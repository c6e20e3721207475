/*
 * What a trainer asks of a table besides pull and push (issue 15):
 * contains, several tables in one call, optimizer hyper-parameters at run
 * time, the row count, and clear (scan + erase, client-side: no new
 * request, at the price of not being atomic).
 *
 * Why these are thin: each is built from machinery that exists already.
 * contains is an infer-mode pull (the server neither inserts nor counts
 * the key towards admission on that path) into scratch rows, in chunks so
 * its memory stays bounded whatever n is. The multi-table calls are
 * client/multi.c's (one MULTI_PULL/MULTI_PUSH frame per server); their
 * fallback here runs one batch per table at once, the first on the
 * calling thread and the others as async operations (client/async.c), so
 * tables cost the slowest one's round trips. set_opt is the one new request
 * (TABLE_SET_OPT, net/PROTOCOL.md), sent to every server of the table's
 * shard map at once with the id and uid the handle learned there.
 *
 * Invariants: every async operation started here is waited before the
 * call returns (the caller's buffers are only used during the call).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"

#define CONTAINS_CHUNK_BYTES (1u << 20) /* scratch rows per chunk */

int embkv_contains(struct embkv_table_handle *t, uint32_t n,
		   const uint64_t *keys, uint8_t *found, uint32_t *count)
{
	uint32_t chunk, total = 0;
	float *rows;
	int rc = 0;

	if (!t || (n && (!keys || !found)))
		return -EINVAL;
	if (count)
		*count = 0;
	if (!n)
		return 0;
	chunk = (uint32_t)(CONTAINS_CHUNK_BYTES / t->row_bytes);
	if (!chunk)
		chunk = 1;
	if (chunk > n)
		chunk = n;
	rows = malloc((size_t)chunk * t->row_bytes);
	if (!rows)
		return -ENOMEM;
	for (uint32_t i = 0; i < n && !rc; i += chunk) {
		uint32_t m = n - i < chunk ? n - i : chunk;

		rc = embkv_pull(t, m, keys + i, rows, found + i,
				EMBKV_MODE_INFER, NULL);
		for (uint32_t j = 0; !rc && j < m; j++)
			total += found[i + j] ? 1u : 0u;
	}
	free(rows);
	if (!rc && count)
		*count = total;
	return rc;
}

/* Several tables ------------------------------------------------------------ */

int embkv_multi_separate(struct embkv_multi_req *reqs, uint32_t nreq,
			 int push, enum embkv_mode mode)
{
	struct embkv_op **ops;
	int first = 0;

	if (!reqs && nreq)
		return -EINVAL;
	if (!nreq)
		return 0;
	ops = calloc(nreq, sizeof(*ops));
	if (!ops)
		return -ENOMEM;
	for (uint32_t i = 0; i < nreq; i++) {
		reqs[i].status = reqs[i].t ? 0 : -EINVAL;
		reqs[i].done = 0;
	}
	/* the others first, so they run while this thread does the first */
	for (uint32_t i = 1; i < nreq; i++) {
		struct embkv_multi_req *r = &reqs[i];

		if (r->status)
			continue;
		if (push)
			r->status = embkv_push_async(r->t, r->n, r->keys,
						     r->rows, &ops[i]);
		else
			r->status = embkv_pull_async(r->t, r->n, r->keys,
						     r->rows, r->found, mode,
						     NULL, &ops[i]);
	}
	if (!reqs[0].status)
		reqs[0].status = push ? embkv_push(reqs[0].t, reqs[0].n,
						   reqs[0].keys, reqs[0].rows,
						   &reqs[0].done)
				      : embkv_pull(reqs[0].t, reqs[0].n,
						   reqs[0].keys, reqs[0].rows,
						   reqs[0].found, mode, NULL);
	for (uint32_t i = 1; i < nreq; i++)
		if (ops[i])
			reqs[i].status = embkv_op_wait_applied(ops[i],
							       &reqs[i].done);
	free(ops);
	for (uint32_t i = 0; i < nreq && !first; i++)
		first = reqs[i].status;
	return first;
}

/* Hyper-parameters at run time ------------------------------------------------ */

int embkv_table_set_opt(struct embkv_table_handle *t,
			const struct embkv_opt_attr *opt)
{
	struct embkv_shardmap *m;
	struct embkv_rpc *rpcs;
	uint32_t i, n;
	int rc = 0;

	if (!t || !opt || opt->type != t->attr.opt.type)
		return -EINVAL;
	m = embkv_shardmap_get(t);
	n = m->nsrv;
	rpcs = calloc(n ? n : 1, sizeof(*rpcs));
	if (!rpcs) {
		embkv_shardmap_put(m);
		return -ENOMEM;
	}
	for (i = 0; i < n && !rc; i++) {
		struct embkv_wire_set_opt w = {
			.table_id = m->tref[i].table_id,
			.uid = m->tref[i].uid,
			.opt = *opt,
		};
		uint8_t *body;

		embkv_rpc_init(&rpcs[i], m->srv[i]);
		rc = embkv_rpc_frame(&rpcs[i], EMBKV_WIRE_OP_TABLE_SET_OPT, 0,
				     EMBKV_WIRE_SET_OPT_SIZE, &body);
		if (!rc)
			rc = embkv_wire_set_opt_encode(&w, body,
						       EMBKV_WIRE_SET_OPT_SIZE);
	}
	embkv_shardmap_put(m);
	if (!rc) {
		rc = embkv_rpc_exchange(t->c, rpcs, n,
					embkv_client_deadline(t->c));
		for (i = 0; i < n && !rc; i++)
			embkv_client_rpc_seen(t->c, &rpcs[i]);
		for (i = 0; i < n && !rc; i++)
			rc = rpcs[i].status;
	}
	for (i = 0; i < n; i++)
		embkv_rpc_clear(&rpcs[i]);
	free(rpcs);
	return rc;
}

int embkv_table_set_lr(struct embkv_table_handle *t, float lr)
{
	struct embkv_table_attr a;
	int rc;

	if (!t)
		return -EINVAL;
	rc = embkv_table_locate(t->c, t->attr.name, &a, NULL, 0);
	if (rc)
		return rc;
	a.opt.lr = lr;
	return embkv_table_set_opt(t, &a.opt);
}

/* Row count ----------------------------------------------------------------------- */

struct count_ctx {
	const char *name;
	uint64_t rows;
};

static void count_rows(void *ctx, uint32_t server, const char *table,
		       const char *name, uint64_t value)
{
	struct count_ctx *cc = ctx;

	(void)server;
	if (table && strcmp(table, cc->name) == 0 && strcmp(name, "rows") == 0)
		cc->rows += value;
}

int embkv_table_count(struct embkv_table_handle *t, uint64_t *rows)
{
	struct count_ctx cc;
	int rc;

	if (!t || !rows)
		return -EINVAL;
	cc.name = t->attr.name;
	cc.rows = 0;
	rc = embkv_stats(t->c, count_rows, &cc);
	if (!rc)
		*rows = cc.rows;
	return rc;
}

/* Clear ---------------------------------------------------------------------------- */

#define CLEAR_PAGE 4096u
#define CLEAR_PASSES 4u

int embkv_table_clear(struct embkv_table_handle *t, uint64_t *erased)
{
	uint64_t total = 0, *keys;
	uint32_t n, gone, found;
	void *vals;
	int rc = 0;

	if (!t)
		return -EINVAL;
	if (erased)
		*erased = 0;
	keys = malloc(CLEAR_PAGE * sizeof(*keys));
	vals = malloc((size_t)CLEAR_PAGE * t->row_bytes);
	if (!keys || !vals) {
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	for (uint32_t pass = 0; pass < CLEAR_PASSES && !rc; pass++) {
		found = 0;
		for (uint32_t p = 0; p < t->attr.partitions && !rc; p++) {
			uint64_t cursor = 0;

			while (!rc && cursor != EMBKV_SCAN_END) {
				rc = embkv_scan(t, p, &cursor, CLEAR_PAGE, keys,
						vals, &n);
				if (rc || !n)
					continue;
				found += n;
				gone = 0;
				rc = embkv_erase(t, n, keys, &gone);
				total += gone;
			}
		}
		if (!found)
			break;
	}
	free(keys);
	free(vals);
	if (erased)
		*erased = total;
	return rc;
}
