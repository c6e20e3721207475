/*
 * The issue-15 calls through libembkv against two real embkvd processes
 * (static peers, 127.0.0.1, random ports):
 * - embkv_op_test / embkv_op_timedwait: with one server stopped (SIGSTOP)
 *   an async pull of its keys cannot finish; a timed wait returns
 *   -ETIMEDOUT in about its timeout and leaves the op valid; after
 *   SIGCONT the op completes and a wait gets status 0;
 * - embkv_contains finds exactly the stored keys and inserts nothing (the
 *   table's row count stays, and the keys stay absent);
 * - embkv_pull_multi / embkv_push_multi equal the separate calls, and a
 *   bad entry fails alone; over MULTI_PULL / MULTI_PUSH (one frame per
 *   server, counted by the servers' "requests"), with mixed dims and
 *   optimizers, duplicate keys, an empty entry, a dropped table in the
 *   middle and one table twice: rows, found flags, applied counts and
 *   statuses equal the separate calls on twin tables;
 * - embkv_table_set_lr / embkv_table_set_opt: the next push uses the new
 *   learning rate on every server; a wrong optimizer type or a bad value
 *   is -EINVAL and changes nothing; embkv_table_locate reports the new
 *   values (the servers agree);
 * - embkv_table_count counts the stored rows;
 * - embkv_accumulate adds deltas without the optimizer (an Adagrad table
 *   would scale a push), sums duplicates, creates missing keys;
 * - embkv_table_clear erases every row (and its optimizer state).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"

#define NSRV 2u
#define DIM 4u
#define PARTS 8u
#define NKEYS 64u
#define READY_MS 10000u
#define STOP_MS 10000u

static const char *const extra[] = { "--threads", "2", NULL };

struct state {
	struct embkv_test_cluster cl;
	struct embkv_client *c;
};

/* The state letter of /proc/PID/stat ('T': stopped), or 0. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* SIGSTOP, and wait until the kernel shows the process stopped. */
static void stop_proc(pid_t pid)
{
	uint64_t t0 = embkv_test_now_ms();

	assert_int_equal(kill(pid, SIGSTOP), 0);
	while (proc_state(pid) != 'T' && embkv_test_now_ms() - t0 < 5000)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	assert_int_equal(proc_state(pid), 'T');
}

/* SIGCONT until the process runs again (a stop signal still pending
 * behind an uninterruptible sleep would otherwise win). */
static void cont_proc(pid_t pid)
{
	uint64_t t0 = embkv_test_now_ms();

	do {
		assert_int_equal(kill(pid, SIGCONT), 0);
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	} while (proc_state(pid) == 'T' && embkv_test_now_ms() - t0 < 5000);
	assert_int_not_equal(proc_state(pid), 'T');
}

static struct embkv_table_handle *make_table(struct state *s, const char *name,
					     enum embkv_optimizer opt, float lr)
{
	struct embkv_table_handle *t;
	struct embkv_table_attr a;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = DIM;
	a.partitions = PARTS;
	a.capacity = 100000;
	a.opt.type = opt;
	a.opt.lr = lr;
	a.init.type = EMBKV_INIT_ZEROS;
	assert_int_equal(embkv_table_create_remote(s->c, &a), 0);
	assert_int_equal(embkv_table_open(s->c, name, &t), 0);
	return t;
}

static int setup(void **state)
{
	struct state *s = calloc(1, sizeof(*s));
	struct embkv_client_attr ca;

	if (!s)
		return -1;
	*state = s;
	if (embkv_test_cluster_start(EMBKVD_PATH, NSRV, extra, READY_MS,
				     &s->cl))
		return -1;
	embkv_client_attr_init(&ca);
	ca.servers = s->cl.addrs;
	ca.nservers = s->cl.n;
	ca.request_timeout_ms = 20000;
	if (embkv_client_create(&ca, &s->c))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	struct state *s = *state;

	embkv_client_destroy(s->c);
	embkv_test_cluster_stop(&s->cl, STOP_MS);
	free(s);
	return 0;
}

static void test_timed_wait(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *t = make_table(s, "tw", EMBKV_OPT_SGD, 0.1f);
	uint64_t keys[NKEYS];
	float rows[NKEYS * DIM];
	struct embkv_op *op;
	uint64_t t0, dt;
	int st = 1, rc;

	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = i; /* spread over both servers' partitions */
	assert_int_equal(embkv_op_test(NULL), -EINVAL);
	assert_int_equal(embkv_op_timedwait(NULL, 1, &st), -EINVAL);
	/* a stopped server cannot answer: the op stays pending */
	stop_proc(s->cl.procs[1].pid);
	assert_int_equal(embkv_pull_async(t, NKEYS, keys, rows, NULL,
					  EMBKV_MODE_TRAIN, NULL, &op), 0);
	assert_int_equal(embkv_op_timedwait(op, 10, NULL), -EINVAL);
	t0 = embkv_test_now_ms();
	rc = embkv_op_timedwait(op, 200, &st);
	dt = embkv_test_now_ms() - t0;
	assert_int_equal(rc, -ETIMEDOUT);
	assert_true(dt >= 190 && dt < 2000);
	assert_int_equal(embkv_op_test(op), 0);
	assert_int_equal(embkv_op_timedwait(op, 0, &st), -ETIMEDOUT);
	cont_proc(s->cl.procs[1].pid);
	st = 1;
	assert_int_equal(embkv_op_timedwait(op, 15000, &st), 0); /* freed */
	assert_int_equal(st, 0);
	/* poll with op_test, then wait */
	assert_int_equal(embkv_pull_async(t, NKEYS, keys, rows, NULL,
					  EMBKV_MODE_TRAIN, NULL, &op), 0);
	t0 = embkv_test_now_ms();
	while (embkv_op_test(op) == 0 && embkv_test_now_ms() - t0 < 15000)
		;
	assert_int_equal(embkv_op_test(op), 1);
	assert_int_equal(embkv_op_wait(op), 0);
	embkv_table_close(t);
}

static void test_contains_and_count(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *t = make_table(s, "ct", EMBKV_OPT_SGD, 0.1f);
	uint64_t keys[NKEYS], rows_before, rows_after;
	float rows[NKEYS * DIM];
	uint8_t found[NKEYS];
	uint32_t count = 99;

	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = 1000 + i;
	/* store the even keys */
	for (uint32_t i = 0; i < NKEYS; i += 2)
		assert_int_equal(embkv_pull(t, 1, &keys[i], rows, NULL,
					    EMBKV_MODE_TRAIN, NULL), 0);
	assert_int_equal(embkv_table_count(t, &rows_before), 0);
	assert_int_equal(rows_before, NKEYS / 2);
	memset(found, 7, sizeof(found));
	assert_int_equal(embkv_contains(t, NKEYS, keys, found, &count), 0);
	assert_int_equal(count, NKEYS / 2);
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_int_equal(found[i], i % 2 == 0);
	/* nothing was inserted */
	assert_int_equal(embkv_table_count(t, &rows_after), 0);
	assert_int_equal(rows_after, rows_before);
	assert_int_equal(embkv_contains(t, NKEYS, keys, found, NULL), 0);
	assert_int_equal(found[1], 0);
	assert_int_equal(embkv_contains(t, 0, NULL, NULL, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(embkv_contains(t, 1, keys, NULL, NULL), -EINVAL);
	assert_int_equal(embkv_contains(NULL, 1, keys, found, NULL), -EINVAL);
	assert_int_equal(embkv_table_count(t, NULL), -EINVAL);
	embkv_table_close(t);
}

static void test_multi(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *a = make_table(s, "ma", EMBKV_OPT_SGD, 1.0f);
	struct embkv_table_handle *b = make_table(s, "mb", EMBKV_OPT_SGD, 1.0f);
	uint64_t ka[NKEYS], kb[NKEYS / 2];
	float va[NKEYS * DIM], vb[NKEYS / 2 * DIM];
	float ra[NKEYS * DIM], rb[NKEYS / 2 * DIM];
	float sa[NKEYS * DIM], sb[NKEYS / 2 * DIM];
	uint8_t fa[NKEYS];
	struct embkv_multi_req r[3];

	for (uint32_t i = 0; i < NKEYS; i++) {
		ka[i] = i * 7;
		for (uint32_t j = 0; j < DIM; j++)
			va[i * DIM + j] = (float)i + (float)j * 0.5f;
	}
	for (uint32_t i = 0; i < NKEYS / 2; i++) {
		kb[i] = i * 7; /* the same keys, another table */
		for (uint32_t j = 0; j < DIM; j++)
			vb[i * DIM + j] = -(float)i - (float)j;
	}
	assert_int_equal(embkv_assign(a, NKEYS, ka, va), 0);
	assert_int_equal(embkv_assign(b, NKEYS / 2, kb, vb), 0);
	memset(r, 0, sizeof(r));
	r[0] = (struct embkv_multi_req){ a, NKEYS, ka, ra, fa, 1, 0 };
	r[1] = (struct embkv_multi_req){ b, NKEYS / 2, kb, rb, NULL, 1, 0 };
	assert_int_equal(embkv_pull_multi(r, 2, EMBKV_MODE_INFER), 0);
	assert_int_equal(r[0].status, 0);
	assert_int_equal(r[1].status, 0);
	assert_int_equal(embkv_pull(a, NKEYS, ka, sa, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_int_equal(embkv_pull(b, NKEYS / 2, kb, sb, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	assert_memory_equal(ra, sa, sizeof(sa));
	assert_memory_equal(rb, sb, sizeof(sb));
	assert_memory_equal(ra, va, sizeof(va));
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_int_equal(fa[i], 1);
	/* push both (grads = the values: lr 1 zeroes every row) */
	r[0].rows = va;
	r[1].rows = vb;
	assert_int_equal(embkv_push_multi(r, 2), 0);
	assert_int_equal(embkv_pull(a, NKEYS, ka, sa, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_int_equal(embkv_pull(b, NKEYS / 2, kb, sb, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NKEYS * DIM; i++)
		assert_true(sa[i] == 0.0f);
	for (uint32_t i = 0; i < NKEYS / 2 * DIM; i++)
		assert_true(sb[i] == 0.0f);
	/* a bad entry fails alone; the others run */
	r[0].rows = ra;
	r[1].rows = rb;
	r[2] = (struct embkv_multi_req){ NULL, 1, ka, ra, NULL, 0, 0 };
	memset(rb, 0x55, sizeof(rb));
	assert_int_equal(embkv_pull_multi(r, 3, EMBKV_MODE_TRAIN), -EINVAL);
	assert_int_equal(r[0].status, 0);
	assert_int_equal(r[1].status, 0);
	assert_int_equal(r[2].status, -EINVAL);
	assert_memory_equal(rb, sb, sizeof(sb));
	assert_int_equal(embkv_pull_multi(r, 2, (enum embkv_mode)7), -EINVAL);
	assert_int_equal(embkv_pull_multi(NULL, 0, EMBKV_MODE_TRAIN), 0);
	embkv_table_close(a);
	embkv_table_close(b);
}

/* A table of any dim and optimizer, seeded uniform init (so twins hold
 * equal rows for equal keys). */
static struct embkv_table_handle *make_dim(struct state *s, const char *name,
					   uint32_t dim,
					   enum embkv_optimizer opt)
{
	struct embkv_table_handle *t;
	struct embkv_table_attr a;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = dim;
	a.partitions = PARTS;
	a.capacity = 100000;
	a.opt.type = opt;
	a.opt.lr = 0.25f;
	a.opt.initial_accum = 0.1f;
	a.init.type = EMBKV_INIT_UNIFORM;
	a.init.a = -0.5f;
	a.init.b = 0.5f;
	a.init.seed = 77;
	assert_int_equal(embkv_table_create_remote(s->c, &a), 0);
	assert_int_equal(embkv_table_open(s->c, name, &t), 0);
	return t;
}

static void sum_requests(void *ctx, uint32_t server, const char *table,
			 const char *name, uint64_t value)
{
	uint64_t *r = ctx;

	if (!table && server < NSRV && !strcmp(name, "requests"))
		r[server] = value;
}

#define MN 5u     /* entries */
#define MK 300u   /* keys of the largest */

/*
 * The single-round-trip path (MULTI_PULL / MULTI_PUSH): entries of mixed
 * dims and optimizers, duplicate keys, an empty entry, a dropped table in
 * the middle and a table named twice equal the separate calls on twin
 * tables (rows, found flags, applied counts, statuses), and each server
 * saw exactly one request for each multi call.
 */
static void test_multi_one_frame(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *t[MN], *tw[MN];
	static const uint32_t dims[MN] = { 4, 4, 8, 16, 4 };
	static const uint32_t ns[MN] = { MK, 20, 0, MK / 2, 50 };
	uint64_t *keys[MN];
	float *rows[MN], *rows2[MN], *grads[MN];
	uint8_t *fnd[MN], *fnd2[MN];
	struct embkv_multi_req r[MN];
	uint64_t q0[NSRV] = { 0 }, q1[NSRV] = { 0 }, q2[NSRV] = { 0 };
	uint64_t base[NSRV];
	int want[MN];

	t[0] = make_dim(s, "m1a", 4, EMBKV_OPT_SGD);
	t[1] = make_dim(s, "m1d", 4, EMBKV_OPT_SGD);
	t[2] = make_dim(s, "m1b", 8, EMBKV_OPT_ADAGRAD);
	t[3] = make_dim(s, "m1c", 16, EMBKV_OPT_ADAGRAD);
	t[4] = t[0]; /* the same table again */
	tw[0] = make_dim(s, "m2a", 4, EMBKV_OPT_SGD);
	tw[1] = t[1];
	tw[2] = make_dim(s, "m2b", 8, EMBKV_OPT_ADAGRAD);
	tw[3] = make_dim(s, "m2c", 16, EMBKV_OPT_ADAGRAD);
	tw[4] = tw[0];
	assert_int_equal(embkv_table_drop_remote(s->c, "m1d"), 0);
	for (uint32_t e = 0; e < MN; e++) {
		size_t nv = (size_t)(ns[e] ? ns[e] : 1) * dims[e];

		keys[e] = calloc(ns[e] ? ns[e] : 1, sizeof(uint64_t));
		rows[e] = calloc(nv, sizeof(float));
		rows2[e] = calloc(nv, sizeof(float));
		grads[e] = calloc(nv, sizeof(float));
		fnd[e] = calloc(ns[e] ? ns[e] : 1, 1);
		fnd2[e] = calloc(ns[e] ? ns[e] : 1, 1);
		for (uint32_t i = 0; i < ns[e]; i++)
			keys[e][i] = (uint64_t)(i % (ns[e] / 2 + 1)) * 13u +
				     e; /* about half are duplicates */
		for (size_t i = 0; i < (size_t)ns[e] * dims[e]; i++)
			grads[e][i] = (float)((i * 7 + e) % 11) / 10.0f - 0.5f;
	}
	/* entry 4 overlaps entry 0's keys: applied after it, in order */
	for (uint32_t i = 0; i < ns[4]; i++)
		keys[4][i] = keys[0][i * 3];

	/* pulls: the multi call against the separate ones on the twins */
	for (uint32_t e = 0; e < MN; e++)
		r[e] = (struct embkv_multi_req){ t[e], ns[e], keys[e], rows[e],
						 fnd[e], 1, 7 };
	assert_int_equal(embkv_stats(s->c, sum_requests, q0), 0);
	assert_int_equal(embkv_stats(s->c, sum_requests, q1), 0);
	assert_int_equal(embkv_pull_multi(r, MN, EMBKV_MODE_TRAIN),
			 EMBKV_ENOTABLE);
	assert_int_equal(embkv_stats(s->c, sum_requests, q2), 0);
	for (uint32_t v = 0; v < NSRV; v++) { /* one frame each, stats aside */
		base[v] = q1[v] - q0[v];
		assert_true(q2[v] - q1[v] == base[v] + 1);
	}
	for (uint32_t e = 0; e < MN; e++) {
		want[e] = embkv_pull(tw[e], ns[e], keys[e], rows2[e], fnd2[e],
				     EMBKV_MODE_TRAIN, NULL);
		assert_int_equal(r[e].status, want[e]);
		assert_int_equal(r[e].done, 0);
		if (want[e])
			continue;
		assert_memory_equal(rows[e], rows2[e],
				    (size_t)ns[e] * dims[e] * sizeof(float));
		assert_memory_equal(fnd[e], fnd2[e], ns[e]);
	}
	assert_int_equal(want[1], EMBKV_ENOTABLE);
	assert_int_equal(want[2], 0);

	/* pushes: statuses and applied counts, then the rows */
	for (uint32_t e = 0; e < MN; e++)
		r[e] = (struct embkv_multi_req){ t[e], ns[e], keys[e], grads[e],
						 NULL, 1, 7 };
	assert_int_equal(embkv_stats(s->c, sum_requests, q0), 0);
	assert_int_equal(embkv_push_multi(r, MN), EMBKV_ENOTABLE);
	assert_int_equal(embkv_stats(s->c, sum_requests, q2), 0);
	for (uint32_t v = 0; v < NSRV; v++)
		assert_true(q2[v] - q0[v] == base[v] + 1);
	for (uint32_t e = 0; e < MN; e++) {
		uint32_t applied = 99;

		want[e] = embkv_push(tw[e], ns[e], keys[e], grads[e], &applied);
		assert_int_equal(r[e].status, want[e]);
		if (want[e])
			continue;
		assert_int_equal(r[e].done, applied);
		assert_true(ns[e] == 0 || applied > 0);
	}
	for (uint32_t e = 0; e < MN; e++) {
		if (want[e] || !ns[e])
			continue;
		assert_int_equal(embkv_pull(t[e], ns[e], keys[e], rows[e], NULL,
					    EMBKV_MODE_INFER, NULL), 0);
		assert_int_equal(embkv_pull(tw[e], ns[e], keys[e], rows2[e],
					    NULL, EMBKV_MODE_INFER, NULL), 0);
		assert_memory_equal(rows[e], rows2[e],
				    (size_t)ns[e] * dims[e] * sizeof(float));
	}
	for (uint32_t e = 0; e < MN; e++) {
		free(keys[e]);
		free(rows[e]);
		free(rows2[e]);
		free(grads[e]);
		free(fnd[e]);
		free(fnd2[e]);
		if (e != 4 && e != 1)
			embkv_table_close(tw[e]);
		if (e != 4)
			embkv_table_close(t[e]);
	}
}

static void test_set_lr(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *t = make_table(s, "lr", EMBKV_OPT_SGD, 0.5f);
	struct embkv_table_attr got;
	struct embkv_opt_attr o;
	uint64_t keys[NKEYS];
	float g[NKEYS * DIM], rows[NKEYS * DIM];
	int st[NSRV];

	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = 5000 + i; /* both servers */
	for (uint32_t i = 0; i < NKEYS * DIM; i++)
		g[i] = 1.0f;
	assert_int_equal(embkv_pull(t, NKEYS, keys, rows, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
	assert_int_equal(embkv_push(t, NKEYS, keys, g, NULL), 0);
	assert_int_equal(embkv_table_set_lr(t, 0.125f), 0);
	assert_int_equal(embkv_push(t, NKEYS, keys, g, NULL), 0);
	assert_int_equal(embkv_pull(t, NKEYS, keys, rows, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NKEYS * DIM; i++)
		assert_true(fabsf(rows[i] - (-0.5f - 0.125f)) < 1e-6f);
	/* every server reports the new value: they agree */
	assert_int_equal(embkv_table_locate(s->c, "lr", &got, st, NSRV), 0);
	assert_true(got.opt.lr == 0.125f);
	/* refused: another optimizer type, a bad value; nothing changes */
	o = got.opt;
	o.type = EMBKV_OPT_ADAGRAD;
	assert_int_equal(embkv_table_set_opt(t, &o), -EINVAL);
	o = got.opt;
	o.lr = -1.0f;
	assert_int_equal(embkv_table_set_opt(t, &o), -EINVAL);
	o.lr = NAN;
	assert_int_equal(embkv_table_set_opt(t, &o), -EINVAL);
	assert_int_equal(embkv_table_set_opt(t, NULL), -EINVAL);
	assert_int_equal(embkv_table_set_lr(NULL, 1.0f), -EINVAL);
	assert_int_equal(embkv_push(t, NKEYS, keys, g, NULL), 0);
	assert_int_equal(embkv_pull(t, NKEYS, keys, rows, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NKEYS * DIM; i++)
		assert_true(fabsf(rows[i] - (-0.5f - 0.25f)) < 1e-6f);
	/* the whole opt: back to 0.5 */
	o = got.opt;
	o.lr = 0.5f;
	assert_int_equal(embkv_table_set_opt(t, &o), 0);
	assert_int_equal(embkv_push(t, 1, keys, g, NULL), 0);
	assert_int_equal(embkv_pull(t, 1, keys, rows, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_true(fabsf(rows[0] - (-1.25f)) < 1e-6f);
	/* a dropped table: the handle's set is refused */
	assert_int_equal(embkv_table_drop_remote(s->c, "lr"), 0);
	assert_int_equal(embkv_table_set_opt(t, &o), EMBKV_ENOTABLE);
	embkv_table_close(t);
}

static void test_accumulate(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *t = make_table(s, "acc", EMBKV_OPT_ADAGRAD,
						  0.5f);
	uint64_t keys[3] = { 11, 12, 11 };
	float d[3 * DIM], rows[3 * DIM];
	uint32_t applied = 0;
	uint8_t found[3];

	for (uint32_t i = 0; i < 3 * DIM; i++)
		d[i] = (float)(i / DIM + 1); /* key 11: 1 and 3, key 12: 2 */
	assert_int_equal(embkv_pull(t, 1, keys, rows, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0); /* 11 stored (zeros), 12 not */
	assert_int_equal(embkv_accumulate(t, 3, keys, d, &applied), 0);
	assert_int_equal(applied, 2);
	assert_int_equal(embkv_accumulate(t, 3, keys, d, NULL), 0);
	assert_int_equal(embkv_pull(t, 3, keys, rows, found, EMBKV_MODE_INFER,
				    NULL), 0);
	for (uint32_t j = 0; j < DIM; j++) {
		assert_true(rows[j] == 8.0f);        /* 2 x (1 + 3) */
		assert_true(rows[DIM + j] == 4.0f);  /* created, 2 x 2 */
	}
	assert_int_equal(found[1], 1);
	assert_int_equal(embkv_accumulate(t, 1, keys, NULL, NULL), -EINVAL);
	assert_int_equal(embkv_accumulate(t, 0, keys, NULL, NULL), 0);
	embkv_table_close(t);
}

static void test_clear(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *t = make_table(s, "clr", EMBKV_OPT_ADAGRAD,
						  0.5f);
	enum { N = 5000 };
	uint64_t *keys = malloc(N * sizeof(*keys)), rows = 1, erased = 0;
	float *vals = calloc((size_t)N * DIM, sizeof(float));
	float g[DIM] = { 1, 1, 1, 1 }, r[DIM];
	uint8_t *found = malloc(N);

	assert_non_null(keys);
	assert_non_null(vals);
	assert_non_null(found);
	for (uint32_t i = 0; i < N; i++)
		keys[i] = 0x1234567ull * (i + 1);
	assert_int_equal(embkv_assign(t, N, keys, vals), 0);
	assert_int_equal(embkv_push(t, 1, keys, g, NULL), 0);
	assert_int_equal(embkv_table_clear(t, &erased), 0);
	assert_int_equal(erased, N);
	assert_int_equal(embkv_table_count(t, &rows), 0);
	assert_int_equal(rows, 0);
	assert_int_equal(embkv_contains(t, N, keys, found, NULL), 0);
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(found[i], 0);
	/* the table still works; a key comes back fresh (state cleared) */
	assert_int_equal(embkv_assign(t, 1, keys, vals), 0);
	assert_int_equal(embkv_push(t, 1, keys, g, NULL), 0);
	assert_int_equal(embkv_pull(t, 1, keys, r, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	/* adagrad from initial_accum 0.1: the first step is lr*g/(sqrt(1.1)+eps) */
	assert_true(fabsf(r[0] + 0.5f / sqrtf(1.1f)) < 1e-5f);
	assert_int_equal(embkv_table_clear(t, NULL), 0);
	assert_int_equal(embkv_table_clear(NULL, NULL), -EINVAL);
	free(keys);
	free(vals);
	free(found);
	embkv_table_close(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timed_wait),
		cmocka_unit_test(test_contains_and_count),
		cmocka_unit_test(test_multi),
		cmocka_unit_test(test_multi_one_frame),
		cmocka_unit_test(test_set_lr),
		cmocka_unit_test(test_accumulate),
		cmocka_unit_test(test_clear),
	};

	return cmocka_run_group_tests_name("client extra", tests, setup,
					   teardown);
}
