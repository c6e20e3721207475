/*
 * libembkv end to end against fake_server (three in-process servers over
 * real TCP, rows in the real store): table create/list/open/map/drop,
 * pull in both modes, push coalescing, assign, erase, routing (no key
 * reaches a server that does not own its partition), batch splitting and
 * pipelining with replies out of order, stale-epoch refresh and retry
 * (a push applied exactly once), retries exhausted, async operations,
 * concurrent threads, a silent server (timeout), a dead one, auth, stats,
 * the handle's row sizes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "hashing/record.h"
#include "tests/client/fake_server.h"

#define NSRV 3u
#define DIM 8u
#define PARTS 64u
#define LR 0.5f
#define TOKEN "correct horse battery staple"
#define SHORT_MS 400u
#define SLACK_MS 3000u
#define NTHREADS 4u
#define PER_THREAD 2000u
#define NASYNC 16u

struct env {
	struct fake_cluster *fc;
	struct embkv_client *c;
	struct embkv_table_handle *t;
};

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int client_for(struct fake_cluster *fc, uint32_t n, const char *token,
		      uint32_t timeout_ms, struct embkv_client **c)
{
	const char *servers[FAKE_MAX_SERVERS];
	struct embkv_client_attr a;

	for (uint32_t i = 0; i < n; i++)
		servers[i] = fake_cluster_addr(fc, i);
	embkv_client_attr_init(&a);
	a.servers = servers;
	a.nservers = n;
	a.token = token;
	if (timeout_ms) {
		a.connect_timeout_ms = timeout_ms;
		a.request_timeout_ms = timeout_ms;
	}
	return embkv_client_create(&a, c);
}

static void table_attr(struct embkv_table_attr *a, const char *name)
{
	embkv_table_attr_init(a);
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->dim = DIM;
	a->partitions = PARTS;
	a->capacity = 1u << 16;
	a->opt.type = EMBKV_OPT_SGD;
	a->opt.lr = LR;
	a->init.type = EMBKV_INIT_ZEROS;
}

static int env_setup(void **state)
{
	struct embkv_table_attr a;
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->fc = fake_cluster_start(NSRV, NULL);
	assert_int_equal(client_for(e->fc, NSRV, NULL, 0, &e->c), 0);
	table_attr(&a, "emb");
	assert_int_equal(embkv_table_create_remote(e->c, &a), 0);
	assert_int_equal(embkv_table_open(e->c, "emb", &e->t), 0);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	embkv_table_close(e->t);
	embkv_client_destroy(e->c);
	fake_cluster_stop(e->fc);
	free(e);
	return 0;
}

static uint64_t misrouted(struct fake_cluster *fc)
{
	struct fake_counts k;
	uint64_t sum = 0;

	for (uint32_t i = 0; i < NSRV; i++) {
		fake_cluster_counts(fc, i, &k);
		sum += k.misrouted;
	}
	return sum;
}

static uint64_t frames(struct fake_cluster *fc, uint8_t op, uint64_t *keys)
{
	struct fake_counts k;
	uint64_t sum = 0;

	if (keys)
		*keys = 0;
	for (uint32_t i = 0; i < NSRV; i++) {
		fake_cluster_counts(fc, i, &k);
		sum += k.frames[op];
		if (keys)
			*keys += k.keys[op];
	}
	return sum;
}

/* The stored row of key, from whichever server holds it. */
static int stored_row(struct fake_cluster *fc, uint64_t key, float *row)
{
	float tmp[DIM];
	int found = 0;

	for (uint32_t i = 0; i < NSRV; i++) {
		if (fake_cluster_row(fc, i, "emb", key, tmp)) {
			memcpy(row, tmp, sizeof(tmp));
			found++;
		}
	}
	return found;
}

/* Tables ------------------------------------------------------------------ */

static void test_tables(void **state)
{
	struct env *e = *state;
	struct embkv_table_summary list[4];
	struct embkv_table_handle *t2;
	struct embkv_table_attr a;
	uint16_t ps[PARTS];
	uint32_t count = 0;
	uint64_t epoch = 0;

	table_attr(&a, "emb");
	assert_int_equal(embkv_table_create_remote(e->c, &a),
			 EMBKV_ETABLEEXISTS);
	table_attr(&a, "other");
	a.dim = 3;
	a.opt.type = EMBKV_OPT_ADAM;
	a.admit_after = 2;
	assert_int_equal(embkv_table_create_remote(e->c, &a), 0);
	assert_int_equal(embkv_table_list(e->c, list, 4, &count), 0);
	assert_int_equal(count, 2);
	assert_string_equal(list[0].name, "emb");
	assert_int_equal(list[0].dim, DIM);
	assert_string_equal(list[1].name, "other");
	assert_int_equal(list[1].dim, 3);
	assert_int_equal(embkv_table_list(e->c, NULL, 0, &count), 0);
	assert_int_equal(count, 2);

	assert_int_equal(embkv_table_open(e->c, "other", &t2), 0);
	assert_int_equal(embkv_table_attr_get(t2)->dim, 3);
	assert_int_equal(embkv_table_attr_get(t2)->opt.type, EMBKV_OPT_ADAM);
	assert_int_equal(embkv_table_attr_get(t2)->admit_after, 2);
	embkv_table_close(t2);

	assert_int_equal(embkv_table_map(e->t, &epoch, ps, PARTS), 0);
	assert_int_equal(epoch, 1);
	for (uint32_t p = 0; p < PARTS; p++)
		assert_int_equal(ps[p], p % NSRV);
	assert_int_equal(embkv_table_map(e->t, &epoch, ps, PARTS - 1), -EINVAL);
	assert_int_equal(embkv_client_server_count(e->c), NSRV);
	assert_string_equal(embkv_client_server_addr(e->c, 1),
			    fake_cluster_addr(e->fc, 1));
	assert_null(embkv_client_server_addr(e->c, NSRV));

	assert_int_equal(embkv_table_drop_remote(e->c, "other"), 0);
	assert_int_equal(embkv_table_drop_remote(e->c, "other"), EMBKV_ENOTABLE);
	assert_int_equal(embkv_table_open(e->c, "other", &t2), EMBKV_ENOTABLE);
	assert_int_equal(embkv_table_open(e->c, "no such", &t2), EMBKV_ENOTABLE);
	assert_int_equal(embkv_table_open(e->c, "0123456789012345678901234567890"
				      "123456789012345678901234567890123",
				      &t2), EMBKV_ELIMIT);
	a.partitions = 3; /* rejected locally */
	assert_int_equal(embkv_table_create_remote(e->c, &a), -EINVAL);
}

/* Pull, push, assign, erase -------------------------------------------- */

static void test_pull_modes(void **state)
{
	struct env *e = *state;
	const uint32_t n = 500;
	uint64_t keys[500], nkeys;
	float *out = malloc((size_t)n * DIM * sizeof(float));
	float dflt[DIM];
	uint8_t found[500];

	assert_non_null(out);
	for (uint32_t i = 0; i < n; i++)
		keys[i] = 1000000 + i % 250; /* every key twice */
	for (uint32_t j = 0; j < DIM; j++)
		dflt[j] = 3.5f;
	/* infer: unknown keys read as dflt, found 0, nothing stored */
	memset(found, 7, sizeof(found));
	assert_int_equal(embkv_pull(e->t, n, keys, out, found,
				    EMBKV_MODE_INFER, dflt), 0);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(found[i], 0);
		assert_true(out[i * DIM + DIM - 1] == 3.5f);
	}
	assert_int_equal(fake_cluster_rows(e->fc, "emb"), 0);
	/* NULL dflt: zeros */
	assert_int_equal(embkv_pull(e->t, n, keys, out, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	assert_true(out[0] == 0.0f);
	/* only distinct keys crossed the wire */
	frames(e->fc, EMBKV_WIRE_OP_PULL, &nkeys);
	assert_int_equal(nkeys, 2 * 250);
	/* train: inserted (zeros init), found 0 the first time, 1 after */
	assert_int_equal(embkv_pull(e->t, n, keys, out, found,
				    EMBKV_MODE_TRAIN, NULL), 0);
	assert_int_equal(fake_cluster_rows(e->fc, "emb"), 250);
	assert_int_equal(found[0], 0);
	assert_int_equal(embkv_pull(e->t, n, keys, out, found,
				    EMBKV_MODE_INFER, dflt), 0);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(found[i], 1);
		assert_true(out[i * DIM] == 0.0f);
	}
	assert_int_equal(misrouted(e->fc), 0);
	/* n = 0 and bad arguments */
	assert_int_equal(embkv_pull(e->t, 0, NULL, NULL, NULL, 0, NULL), 0);
	assert_int_equal(embkv_pull(e->t, n, keys, NULL, NULL,
				    EMBKV_MODE_TRAIN, NULL), -EINVAL);
	assert_int_equal(embkv_pull(e->t, n, keys, out, NULL, 7, NULL),
			 -EINVAL);
	assert_int_equal(embkv_pull(NULL, n, keys, out, NULL, 0, NULL),
			 -EINVAL);
	free(out);
}

/* A server older than MULTI_PULL/MULTI_PUSH (the double answers them
 * EMBKV_EOPCODE): each multi call still succeeds through per-table
 * frames, the first one after a single refused frame per server, later
 * ones without trying again. */
static void test_multi_old_server(void **state)
{
	struct env *e = *state;
	struct embkv_table_attr a;
	struct embkv_table_handle *t2;
	uint64_t keys[64];
	float r1[64 * DIM], r2[64 * DIM], g[64 * DIM];
	uint8_t f1[64];
	struct embkv_multi_req q[2];

	table_attr(&a, "emb2");
	assert_int_equal(embkv_table_create_remote(e->c, &a), 0);
	assert_int_equal(embkv_table_open(e->c, "emb2", &t2), 0);
	for (uint32_t i = 0; i < 64; i++)
		keys[i] = 5000 + i;
	for (uint32_t i = 0; i < 64 * DIM; i++)
		g[i] = (float)(i % 5);
	/* train pulls store the rows (zeros), then pushes apply */
	q[0] = (struct embkv_multi_req){ e->t, 64, keys, r1, f1, 1, 0 };
	q[1] = (struct embkv_multi_req){ t2, 32, keys, r2, NULL, 1, 0 };
	assert_int_equal(embkv_pull_multi(q, 2, EMBKV_MODE_TRAIN), 0);
	assert_int_equal(q[0].status, 0);
	assert_int_equal(frames(e->fc, EMBKV_WIRE_OP_PULL, NULL), 2 * NSRV);
	q[0] = (struct embkv_multi_req){ e->t, 64, keys, g, NULL, 1, 0 };
	q[1] = (struct embkv_multi_req){ t2, 32, keys, g, NULL, 1, 0 };
	assert_int_equal(embkv_push_multi(q, 2), 0);
	assert_int_equal(q[0].done, 64);
	assert_int_equal(q[1].done, 32);
	assert_int_equal(frames(e->fc, EMBKV_WIRE_OP_PUSH, NULL), 2 * NSRV);
	q[0] = (struct embkv_multi_req){ e->t, 64, keys, r1, f1, 1, 0 };
	q[1] = (struct embkv_multi_req){ t2, 32, keys, r2, NULL, 1, 0 };
	assert_int_equal(embkv_pull_multi(q, 2, EMBKV_MODE_INFER), 0);
	for (uint32_t i = 0; i < 64; i++) {
		assert_int_equal(f1[i], 1);
		assert_true(r1[i * DIM + 1] == -LR * g[i * DIM + 1]);
	}
	assert_memory_equal(r1, r2, 32 * DIM * sizeof(float));
	assert_int_equal(frames(e->fc, EMBKV_WIRE_OP_PULL, NULL), 4 * NSRV);
	/* refused once per server (the first call), never sent again */
	assert_int_equal(frames(e->fc, EMBKV_WIRE_OP_MULTI_PULL, NULL) +
				 frames(e->fc, EMBKV_WIRE_OP_MULTI_PUSH, NULL),
			 NSRV);
	embkv_table_close(t2);
}

/* Duplicate gradients are summed client-side: each key's row becomes
 * -lr * (sum of its gradients), one push per distinct key. */
static void test_push_coalesced(void **state)
{
	struct env *e = *state;
	const uint32_t n = 3000, range = 400;
	uint64_t *keys = malloc(n * sizeof(*keys)), s = 42, nkeys, pkeys;
	float *grads = malloc((size_t)n * DIM * sizeof(float));
	float *sum = calloc((size_t)range * DIM, sizeof(float));
	float *out = malloc((size_t)n * DIM * sizeof(float));
	float row[DIM];
	uint32_t applied = 0;

	assert_non_null(keys);
	assert_non_null(grads);
	assert_non_null(sum);
	assert_non_null(out);
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = 5000 + rng(&s) % range;
		for (uint32_t j = 0; j < DIM; j++) {
			float g = (float)(rng(&s) % 1000) / 1000.0f - 0.5f;

			grads[i * DIM + j] = g;
			sum[(keys[i] - 5000) * DIM + j] += g;
		}
	}
	frames(e->fc, EMBKV_WIRE_OP_PULL, &pkeys);
	assert_int_equal(embkv_pull(e->t, n, keys, out, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
	assert_int_equal(embkv_push(e->t, n, keys, grads, &applied), 0);
	assert_int_equal(applied, range);
	frames(e->fc, EMBKV_WIRE_OP_PUSH, &nkeys);
	assert_int_equal(nkeys, range);
	for (uint32_t k = 0; k < range; k++) {
		assert_int_equal(stored_row(e->fc, 5000 + k, row), 1);
		for (uint32_t j = 0; j < DIM; j++)
			if (!(fabsf(row[j] + LR * sum[k * DIM + j]) <= 1e-5f)) fail_msg("k %u j %u row %g want %g", k, j, row[j], -LR * sum[k * DIM + j]);
	}
	/* pulled values come back at every position of a key */
	assert_int_equal(embkv_pull(e->t, n, keys, out, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(stored_row(e->fc, keys[i], row), 1);
		assert_memory_equal(out + (size_t)i * DIM, row, sizeof(row));
	}
	/* a push for keys never stored is dropped by the server, counted */
	keys[0] = 99999999;
	assert_int_equal(embkv_push(e->t, 1, keys, grads, &applied), 0);
	assert_int_equal(applied, 0);
	assert_int_equal(misrouted(e->fc), 0);
	free(out);
	free(sum);
	free(grads);
	free(keys);
}

static void test_assign_erase(void **state)
{
	struct env *e = *state;
	uint64_t keys[4] = { 77, 78, 77, 79 };
	float vals[4 * DIM], row[DIM];
	uint32_t erased = 0;

	for (uint32_t i = 0; i < 4 * DIM; i++)
		vals[i] = (float)(i / DIM) + 1.0f;
	assert_int_equal(embkv_assign(e->t, 4, keys, vals), 0);
	assert_int_equal(stored_row(e->fc, 77, row), 1);
	assert_true(row[0] == 3.0f); /* the last of the duplicates */
	assert_int_equal(stored_row(e->fc, 79, row), 1);
	assert_true(row[DIM - 1] == 4.0f);
	keys[3] = 12345; /* not stored */
	assert_int_equal(embkv_erase(e->t, 4, keys, &erased), 0);
	assert_int_equal(erased, 2);
	assert_int_equal(stored_row(e->fc, 77, row), 0);
	assert_int_equal(stored_row(e->fc, 79, row), 1);
}

/* The handle's row sizes come from its attributes, once, at open. */
static void test_row_sizes(void **state)
{
	struct env *e = *state;

	assert_int_equal(embkv_dtype_size(EMBKV_DTYPE_F32), sizeof(float));
	assert_int_equal(embkv_dtype_size((enum embkv_dtype)-1), 0);
	assert_int_equal(embkv_dtype_size((enum embkv_dtype)1000), 0);
	assert_int_equal(e->t->attr.dtype, EMBKV_DTYPE_F32);
	assert_int_equal(e->t->row_bytes, DIM * sizeof(float));
	assert_int_equal(e->t->payload_bytes, DIM * sizeof(float));
	assert_int_equal(e->t->rec_len,
			 EMBKV_RECORD_HDR_BYTES + DIM * sizeof(float));
}

/* Arguments are checked per operation, before anything is sent. */
static void test_batch_check(void **state)
{
	struct env *e = *state;
	uint64_t key = 1;
	float row[DIM] = { 0 };
	struct embkv_batch_args a = {
		.t = e->t, .n = 1, .keys = &key,
	};

	a.op = EMBKV_BATCH_OP_COUNT;
	assert_int_equal(embkv_batch_check(&a), -EINVAL);
	assert_int_equal(embkv_batch_run(&a), -EINVAL);
	a.n = 0; /* nothing to do is never wrong */
	assert_int_equal(embkv_batch_check(&a), 0);
	a.n = 1;
	a.op = EMBKV_BATCH_ERASE;
	assert_int_equal(embkv_batch_check(&a), 0);
	a.op = EMBKV_BATCH_PULL;
	assert_int_equal(embkv_batch_check(&a), -EINVAL); /* no out */
	a.out = row;
	a.mode = EMBKV_MODE_INFER;
	assert_int_equal(embkv_batch_check(&a), 0);
	a.mode = (enum embkv_mode)99;
	assert_int_equal(embkv_batch_check(&a), -EINVAL);
	a.op = EMBKV_BATCH_PUSH;
	assert_int_equal(embkv_batch_check(&a), -EINVAL); /* no vals */
	a.op = EMBKV_BATCH_ASSIGN;
	assert_int_equal(embkv_batch_check(&a), -EINVAL);
	a.vals = row;
	assert_int_equal(embkv_batch_check(&a), 0);
	a.keys = NULL;
	assert_int_equal(embkv_batch_check(&a), -EINVAL);
}

/* Frames of 7 rows, replies reversed: many pipelined frames per server,
 * answered out of order, still land at the right positions. */
static void test_split_reordered(void **state)
{
	struct env *e = *state;
	const uint32_t n = 1000;
	uint64_t keys[1000], before, after;
	float *vals = malloc((size_t)n * DIM * sizeof(float));
	float *out = malloc((size_t)n * DIM * sizeof(float));
	struct embkv_table_handle *t;

	assert_non_null(vals);
	assert_non_null(out);
	e->c->rows_cap = 7;
	assert_int_equal(embkv_table_open(e->c, "emb", &t), 0);
	e->c->rows_cap = 0;
	assert_int_equal(t->rows_cap, 7);
	for (uint32_t i = 0; i < NSRV; i++)
		fake_cluster_set_reorder(e->fc, i, 1);
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = 200000 + i;
		for (uint32_t j = 0; j < DIM; j++)
			vals[i * DIM + j] = (float)i + (float)j / 16.0f;
	}
	before = frames(e->fc, EMBKV_WIRE_OP_ASSIGN, NULL);
	assert_int_equal(embkv_assign(t, n, keys, vals), 0);
	after = frames(e->fc, EMBKV_WIRE_OP_ASSIGN, NULL);
	assert_true(after - before >= n / 7);
	assert_int_equal(embkv_pull(t, n, keys, out, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_memory_equal(out, vals, (size_t)n * DIM * sizeof(float));
	for (uint32_t i = 0; i < NSRV; i++) {
		struct fake_counts k;

		fake_cluster_counts(e->fc, i, &k);
		assert_true(k.reordered > 0); /* replies did come out of order */
		fake_cluster_set_reorder(e->fc, i, 0);
	}
	embkv_table_close(t);
	free(out);
	free(vals);
}

/* Stale epochs ------------------------------------------------------------- */

/* The cluster moves every partition and bumps the epoch: the client is
 * told, refreshes, re-routes; the push is applied exactly once. */
static void test_stale_refresh(void **state)
{
	struct env *e = *state;
	const uint32_t n = 600;
	uint64_t keys[600], epoch = 0, stale = 0;
	float grads[600 * DIM], out[600 * DIM], row[DIM];
	uint16_t ps[PARTS];
	struct fake_counts k;
	uint32_t applied = 0;

	for (uint32_t i = 0; i < n; i++) {
		keys[i] = 300000 + i;
		for (uint32_t j = 0; j < DIM; j++)
			grads[i * DIM + j] = 1.0f;
	}
	assert_int_equal(embkv_pull(e->t, n, keys, out, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
	/* rebalance: partition p now on (p + 1) % NSRV, epoch 2 */
	fake_cluster_set_map(e->fc, 2, 1);
	assert_int_equal(embkv_push(e->t, n, keys, grads, &applied), 0);
	for (uint32_t i = 0; i < NSRV; i++) {
		fake_cluster_counts(e->fc, i, &k);
		stale += k.stale;
	}
	assert_true(stale >= 1);
	assert_int_equal(embkv_table_map(e->t, &epoch, ps, PARTS), 0);
	assert_int_equal(epoch, 2);
	assert_int_equal(ps[0], 1 % NSRV);
	/* The double does not migrate rows, so the new owners have none
	 * and drop the gradients (applied 0); the old owners answered
	 * ESTALE and applied nothing: their rows are untouched. */
	assert_int_equal(applied, 0);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(stored_row(e->fc, keys[i], row), 1);
		assert_true(row[0] == 0.0f);
	}
	assert_int_equal(misrouted(e->fc), 0);
	/* back home at epoch 3: applied once on the owners */
	fake_cluster_set_map(e->fc, 3, 0);
	assert_int_equal(embkv_push(e->t, n, keys, grads, &applied), 0);
	assert_int_equal(applied, n);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(stored_row(e->fc, keys[i], row), 1);
		assert_true(row[0] == -LR); /* exactly once */
	}
}

/* One server keeps answering with an epoch the map never reaches: the
 * call gives EMBKV_ESTALE after max_retries, in bounded time. */
static void test_stale_exhausted(void **state)
{
	struct env *e = *state;
	uint64_t keys[64], t0;
	float out[64 * DIM];

	for (uint32_t i = 0; i < 64; i++)
		keys[i] = 400000 + i;
	fake_cluster_set_server_epoch(e->fc, 1, 99);
	t0 = embkv_now_ms();
	assert_int_equal(embkv_pull(e->t, 64, keys, out, NULL,
				    EMBKV_MODE_TRAIN, NULL), EMBKV_ESTALE);
	assert_true(embkv_now_ms() - t0 < SLACK_MS);
	fake_cluster_set_server_epoch(e->fc, 1, 0);
	assert_int_equal(embkv_pull(e->t, 64, keys, out, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
}

/* Async and threads ---------------------------------------------------------- */

static void test_async(void **state)
{
	struct env *e = *state;
	const uint32_t n = 256;
	uint64_t keys[NASYNC][256];
	float *out = malloc((size_t)NASYNC * n * DIM * sizeof(float));
	float *grads = malloc((size_t)n * DIM * sizeof(float));
	struct embkv_op *ops[NASYNC], *push;
	float row[DIM];

	assert_non_null(out);
	assert_non_null(grads);
	for (uint32_t i = 0; i < n * DIM; i++)
		grads[i] = 0.25f;
	for (uint32_t k = 0; k < NASYNC; k++)
		for (uint32_t i = 0; i < n; i++)
			keys[k][i] = 500000 + k * n + i;
	for (uint32_t k = 0; k < NASYNC; k++)
		assert_int_equal(embkv_pull_async(e->t, n, keys[k],
						  out + (size_t)k * n * DIM,
						  NULL, EMBKV_MODE_TRAIN, NULL,
						  &ops[k]), 0);
	for (uint32_t k = 0; k < NASYNC; k++)
		assert_int_equal(embkv_op_wait(ops[k]), 0);
	/* push of batch 0 overlapping the pull of batch 1 */
	assert_int_equal(embkv_push_async(e->t, n, keys[0], grads, &push), 0);
	assert_int_equal(embkv_pull_async(e->t, n, keys[1], out, NULL,
					  EMBKV_MODE_TRAIN, NULL, &ops[0]), 0);
	assert_int_equal(embkv_op_wait(ops[0]), 0);
	assert_int_equal(embkv_op_wait(push), 0);
	assert_int_equal(stored_row(e->fc, keys[0][3], row), 1);
	assert_true(row[0] == -LR * 0.25f);
	/* bad arguments fail at once, no op */
	ops[0] = (void *)1;
	assert_int_equal(embkv_pull_async(e->t, n, keys[0], NULL, NULL,
					  EMBKV_MODE_TRAIN, NULL, &ops[0]),
			 -EINVAL);
	assert_null(ops[0]);
	assert_int_equal(embkv_op_wait(NULL), -EINVAL);
	free(grads);
	free(out);
}

struct worker_arg {
	struct embkv_table_handle *t;
	uint32_t id;
	int rc;
};

static void *worker(void *p)
{
	struct worker_arg *w = p;
	uint64_t *keys = malloc(PER_THREAD * sizeof(*keys));
	float *buf = malloc((size_t)PER_THREAD * DIM * sizeof(float));

	w->rc = -ENOMEM;
	if (!keys || !buf)
		goto out;
	for (uint32_t i = 0; i < PER_THREAD; i++)
		keys[i] = 600000 + (uint64_t)w->id * PER_THREAD + i;
	for (uint32_t i = 0; i < PER_THREAD * DIM; i++)
		buf[i] = 1.0f;
	w->rc = embkv_pull(w->t, PER_THREAD, keys, buf, NULL,
			   EMBKV_MODE_TRAIN, NULL);
	for (uint32_t i = 0; i < PER_THREAD * DIM; i++)
		buf[i] = 1.0f;
	for (int round = 0; round < 4 && !w->rc; round++)
		w->rc = embkv_push(w->t, PER_THREAD, keys, buf, NULL);
out:
	free(buf);
	free(keys);
	return NULL;
}

static void test_threads(void **state)
{
	struct env *e = *state;
	struct worker_arg w[NTHREADS];
	pthread_t th[NTHREADS];
	float row[DIM];

	for (uint32_t i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker_arg){ .t = e->t, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
	}
	for (uint32_t i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].rc, 0);
	}
	for (uint32_t i = 0; i < NTHREADS * PER_THREAD; i += 97) {
		assert_int_equal(stored_row(e->fc, 600000 + i, row), 1);
		assert_true(row[DIM - 1] == -4.0f * LR);
	}
	assert_int_equal(misrouted(e->fc), 0);
}

/* Failures ------------------------------------------------------------------ */

static void test_silent_and_dead(void **state)
{
	struct fake_cluster *fc = fake_cluster_start(NSRV, NULL);
	struct embkv_table_handle *t;
	struct embkv_table_attr a;
	struct embkv_client *c;
	uint64_t keys[32], t0;
	float out[32 * DIM];
	int rc;

	(void)state;
	for (uint32_t i = 0; i < 32; i++)
		keys[i] = i;
	assert_int_equal(client_for(fc, NSRV, NULL, SHORT_MS, &c), 0);
	table_attr(&a, "emb");
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	assert_int_equal(embkv_table_open(c, "emb", &t), 0);
	/* silent: a timeout after request_timeout_ms, then it recovers */
	fake_cluster_set_silent(fc, 2, 1);
	t0 = embkv_now_ms();
	assert_int_equal(embkv_pull(t, 32, keys, out, NULL, EMBKV_MODE_TRAIN,
				    NULL), EMBKV_ETIMEDOUT);
	assert_true(embkv_now_ms() - t0 >= SHORT_MS - 10);
	assert_true(embkv_now_ms() - t0 < SHORT_MS + SLACK_MS);
	fake_cluster_set_silent(fc, 2, 0);
	assert_int_equal(embkv_pull(t, 32, keys, out, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	/* dead: an error, not a hang */
	fake_cluster_kill(fc, 1);
	t0 = embkv_now_ms();
	rc = embkv_pull(t, 32, keys, out, NULL, EMBKV_MODE_TRAIN, NULL);
	assert_true(rc == EMBKV_EDISCONNECTED || rc == -ECONNREFUSED ||
		    rc == EMBKV_ETIMEDOUT);
	assert_true(embkv_now_ms() - t0 < SHORT_MS + SLACK_MS);
	rc = embkv_pull(t, 32, keys, out, NULL, EMBKV_MODE_TRAIN, NULL);
	assert_true(rc == EMBKV_EDISCONNECTED || rc == -ECONNREFUSED);
	embkv_table_close(t);
	embkv_client_destroy(c);
	fake_cluster_stop(fc);
}

static void test_auth(void **state)
{
	struct fake_cluster *fc = fake_cluster_start(2, TOKEN);
	struct embkv_table_attr a;
	struct embkv_client *c = NULL;
	struct fake_counts k;

	(void)state;
	assert_int_equal(client_for(fc, 2, TOKEN, SHORT_MS, &c), 0);
	table_attr(&a, "secure");
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	embkv_client_destroy(c);
	c = NULL;
	assert_int_equal(client_for(fc, 2, "wrong token", SHORT_MS, &c),
			 EMBKV_EAUTH);
	assert_null(c);
	fake_cluster_counts(fc, 0, &k);
	assert_true(k.auth_failures >= 1);
	/* no token: connects, but nothing is served */
	assert_int_equal(client_for(fc, 2, NULL, SHORT_MS, &c), 0);
	assert_int_equal(embkv_table_drop_remote(c, "secure"), EMBKV_EAUTH);
	embkv_client_destroy(c);
	fake_cluster_stop(fc);
}

/* Server names --------------------------------------------------------------- */

/* The map names servers "tcp://127.0.0.1:P"; a client that knows them as
 * localhost matches them by address, and one that knows only the first
 * learns the second from the map. */
static void test_map_names(void **state)
{
	struct fake_cluster *fc = fake_cluster_start(2, NULL);
	char local[2][64];
	const char *servers[2] = { local[0], local[1] };
	struct embkv_client_attr a;
	struct embkv_table_handle *t;
	struct embkv_table_attr ta;
	struct embkv_client *c;
	uint64_t keys[200];
	float out[200 * DIM];

	(void)state;
	for (uint32_t i = 0; i < 2; i++)
		snprintf(local[i], sizeof(local[i]), "tcp://localhost:%s",
			 strrchr(fake_cluster_addr(fc, i), ':') + 1);
	for (uint32_t i = 0; i < 200; i++)
		keys[i] = i * 977;
	embkv_client_attr_init(&a);
	a.servers = servers;
	a.nservers = 2;
	assert_int_equal(embkv_client_create(&a, &c), 0);
	table_attr(&ta, "emb");
	assert_int_equal(embkv_table_create_remote(c, &ta), 0);
	assert_int_equal(embkv_table_open(c, "emb", &t), 0);
	assert_int_equal(embkv_client_server_count(c), 2); /* no new entry */
	assert_int_equal(embkv_pull(t, 200, keys, out, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	embkv_table_close(t);
	embkv_client_destroy(c);

	a.nservers = 1; /* only the first: the map tells about the second */
	assert_int_equal(embkv_client_create(&a, &c), 0);
	assert_int_equal(embkv_table_open(c, "emb", &t), 0);
	assert_int_equal(embkv_client_server_count(c), 2);
	assert_string_equal(embkv_client_server_addr(c, 1),
			    fake_cluster_addr(fc, 1));
	assert_int_equal(embkv_pull(t, 200, keys, out, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_int_equal(fake_cluster_rows(fc, "emb"), 200);
	embkv_table_close(t);
	embkv_client_destroy(c);
	for (uint32_t i = 0; i < 2; i++) {
		struct fake_counts k;

		fake_cluster_counts(fc, i, &k);
		assert_int_equal(k.misrouted, 0);
		assert_true(k.keys[EMBKV_WIRE_OP_PULL] > 0);
	}
	fake_cluster_stop(fc);
}

/* Stats --------------------------------------------------------------------- */

struct stat_seen {
	uint32_t servers_conn;  /* server-wide "connections" seen */
	uint32_t emb_rows;      /* "rows" of table emb */
	uint32_t unknown;       /* "stat_999" */
};

static void on_stat(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct stat_seen *s = ctx;

	assert_true(server < NSRV);
	if (!table && strcmp(name, "connections") == 0 && value >= 1)
		s->servers_conn++;
	if (table && strcmp(table, "emb") == 0 && strcmp(name, "rows") == 0)
		s->emb_rows++;
	if (!table && strcmp(name, "stat_999") == 0 && value == 7)
		s->unknown++;
}

static void test_stats(void **state)
{
	struct env *e = *state;
	struct stat_seen s = { 0 };

	assert_int_equal(embkv_stats(e->c, on_stat, &s), 0);
	assert_int_equal(s.servers_conn, NSRV);
	assert_int_equal(s.emb_rows, NSRV);
	assert_int_equal(s.unknown, NSRV);
	assert_int_equal(embkv_stats(e->c, NULL, &s), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tables, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_multi_old_server,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_pull_modes, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_push_coalesced, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_assign_erase, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_row_sizes, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_batch_check, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_split_reordered, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_stale_refresh, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_stale_exhausted, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_async, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_threads, env_setup,
						env_teardown),
		cmocka_unit_test(test_silent_and_dead),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_map_names),
		cmocka_unit_test_setup_teardown(test_stats, env_setup,
						env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
