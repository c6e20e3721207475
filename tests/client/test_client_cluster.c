/*
 * libembkv against real embkvd processes: three servers started with the
 * cluster helper (spawn.h), four clients (each its own struct
 * embkv_client, on its own thread) pulling and pushing at once. The final
 * table equals a reference that applied the same SGD steps: exactly for
 * each client's own keys, within 1e-5 relative for the keys all clients
 * share (only the order of the float additions differs). A second
 * table with Adam gets the same clients' pushes of their own keys only
 * (disjoint): it equals, exactly, an in-process embkv_table
 * (server/store.h) of the same attributes fed the same gradients (Adam's
 * step count is per row, so the clients' interleaving does not matter).
 * Also checks
 * async pulls, the shard map, stats and a clean shutdown (exit 0).
 * And table identity through the library: a handle kept across a server
 * restart, after which another table got its table's id, fails every
 * call with EMBKV_ENOTABLE and never touches the other table.
 * And the multi-table calls, shares over a frame's size included, equal
 * to the separate calls.
 * The same source runs over TCP (ctest) and over rdma:// in the VM (see
 * main); over rdma the pulls go one-sided.
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
#include <unistd.h>

#include <embkv/embkv.h>
#include "server/store.h"
#include "tests/client/spawn.h"

#define NSRV 3u
#define NCLIENTS 4u
#define ROUNDS 5u
#define OWN 3000u       /* keys only one client pushes */
#define SHARED 500u     /* keys every client pushes */
#define DIM 16u
#define LR 0.05f
#define READY_MS 10000u
#define STOP_MS 15000u
#define REL_TOL 1e-5f
#define ADAM_TABLE "adam"

static const char *const extra[] = { "--threads", "1", NULL };

static uint64_t own_key(uint32_t client, uint32_t i)
{
	return 1000000ull * (client + 1) + i;
}

static float grad(uint64_t key, uint32_t round, uint32_t client, uint32_t j)
{
	return (float)((int)((key * 31 + round * 7 + client) % 17) - 8) * 0.01f +
	       (float)j * 0.001f;
}

struct client_arg {
	struct embkv_test_cluster *cl;
	uint32_t id;
	int rc;
};

static void *client_main(void *p)
{
	struct client_arg *a = p;
	const uint32_t n = OWN + SHARED;
	struct embkv_client_attr ca;
	struct embkv_table_handle *t = NULL, *ta = NULL;
	struct embkv_client *c = NULL;
	uint64_t *keys = malloc(n * sizeof(*keys));
	float *buf = malloc((size_t)n * DIM * sizeof(float));
	float *grads = malloc((size_t)n * DIM * sizeof(float));
	struct embkv_op *op;

	a->rc = -1;
	if (!keys || !buf || !grads)
		goto out;
	for (uint32_t i = 0; i < OWN; i++)
		keys[i] = own_key(a->id, i);
	for (uint32_t i = 0; i < SHARED; i++)
		keys[OWN + i] = i + 1;
	embkv_client_attr_init(&ca);
	ca.servers = a->cl->addrs;
	ca.nservers = NSRV;
	a->rc = embkv_client_create(&ca, &c);
	if (!a->rc)
		a->rc = embkv_table_open(c, "shared", &t);
	if (!a->rc)
		a->rc = embkv_table_open(c, ADAM_TABLE, &ta);
	for (uint32_t r = 0; r < ROUNDS && !a->rc; r++) {
		/* the pull overlaps the gradient computation */
		a->rc = embkv_pull_async(t, n, keys, buf, NULL,
					 EMBKV_MODE_TRAIN, NULL, &op);
		if (a->rc)
			break;
		for (uint32_t i = 0; i < n; i++)
			for (uint32_t j = 0; j < DIM; j++)
				grads[(size_t)i * DIM + j] =
					grad(keys[i], r, a->id, j);
		a->rc = embkv_op_wait(op);
		if (!a->rc)
			a->rc = embkv_push(t, n, keys, grads, NULL);
		/* Adam: this client's own keys only, the same gradients */
		if (!a->rc)
			a->rc = embkv_pull(ta, OWN, keys, buf, NULL,
					   EMBKV_MODE_TRAIN, NULL);
		if (!a->rc)
			a->rc = embkv_push(ta, OWN, keys, grads, NULL);
	}
out:
	embkv_table_close(ta);
	embkv_table_close(t);
	embkv_client_destroy(c);
	free(grads);
	free(buf);
	free(keys);
	return NULL;
}

struct rows_seen {
	uint64_t rows;
	uint32_t servers;
};

static void on_stat(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct rows_seen *s = ctx;

	(void)server;
	if (table && strcmp(table, "shared") == 0 &&
	    strcmp(name, "rows") == 0) {
		s->rows += value;
		s->servers++;
	}
}

static void check_table(struct embkv_test_cluster *cl)
{
	const uint32_t n = NCLIENTS * OWN + SHARED;
	uint64_t *keys = malloc(n * sizeof(*keys)), epoch = 0;
	float *out = malloc((size_t)n * DIM * sizeof(float));
	uint8_t *found = malloc(n);
	struct embkv_client_attr ca;
	struct embkv_table_handle *t;
	struct embkv_client *c;
	struct rows_seen seen = { 0 };
	uint16_t ps[64];

	assert_non_null(keys);
	assert_non_null(out);
	assert_non_null(found);
	for (uint32_t k = 0; k < NCLIENTS; k++)
		for (uint32_t i = 0; i < OWN; i++)
			keys[k * OWN + i] = own_key(k, i);
	for (uint32_t i = 0; i < SHARED; i++)
		keys[NCLIENTS * OWN + i] = i + 1;
	embkv_client_attr_init(&ca);
	ca.servers = cl->addrs;
	ca.nservers = NSRV;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	assert_int_equal(embkv_table_open(c, "shared", &t), 0);
	assert_int_equal(embkv_pull(t, n, keys, out, found, EMBKV_MODE_INFER,
				    NULL), 0);
	for (uint32_t i = 0; i < n; i++) {
		int own = i < NCLIENTS * OWN;

		assert_int_equal(found[i], 1);
		for (uint32_t j = 0; j < DIM; j++) {
			float ref = 0.0f, got = out[(size_t)i * DIM + j];

			if (own) {
				for (uint32_t r = 0; r < ROUNDS; r++)
					ref -= LR * grad(keys[i], r, i / OWN, j);
				if (got != ref)
					fail_msg("own key %llu [%u]: %g != %g",
						 (unsigned long long)keys[i], j,
						 (double)got, (double)ref);
			} else {
				for (uint32_t r = 0; r < ROUNDS; r++)
					for (uint32_t k = 0; k < NCLIENTS; k++)
						ref -= LR * grad(keys[i], r, k, j);
				if (fabsf(got - ref) >
				    REL_TOL * fmaxf(fabsf(ref), 1e-3f))
					fail_msg("shared key %llu [%u]: %g vs %g",
						 (unsigned long long)keys[i], j,
						 (double)got, (double)ref);
			}
		}
	}
	assert_int_equal(embkv_table_map(t, &epoch, ps, 64), 0);
	assert_int_equal(epoch, 1);
	for (uint32_t p = 0; p < 64; p++)
		assert_int_equal(ps[p], p % NSRV);
	assert_int_equal(embkv_stats(c, on_stat, &seen), 0);
	assert_int_equal(seen.servers, NSRV);
	assert_int_equal(seen.rows, n);
	embkv_table_close(t);
	embkv_client_destroy(c);
	free(found);
	free(out);
	free(keys);
}

/* The Adam table against an in-process table of the same attributes that
 * applied each client's rounds: bit-exact. */
static void check_adam(struct embkv_test_cluster *cl,
		       const struct embkv_table_attr *attr)
{
	const uint32_t n = NCLIENTS * OWN;
	uint64_t *keys = malloc(n * sizeof(*keys));
	float *out = malloc((size_t)n * DIM * sizeof(float));
	float *want = malloc((size_t)n * DIM * sizeof(float));
	float *grads = malloc((size_t)OWN * DIM * sizeof(float));
	uint8_t *found = malloc(n);
	struct embkv_client_attr ca;
	struct embkv_table_handle *t;
	struct embkv_client *c;
	struct embkv_table *ref;

	assert_non_null(keys);
	assert_non_null(out);
	assert_non_null(want);
	assert_non_null(grads);
	assert_non_null(found);
	assert_int_equal(embkv_table_create(attr, &ref), 0);
	for (uint32_t k = 0; k < NCLIENTS; k++) {
		uint64_t *own = keys + (size_t)k * OWN;

		for (uint32_t i = 0; i < OWN; i++)
			own[i] = own_key(k, i);
		for (uint32_t r = 0; r < ROUNDS; r++) {
			embkv_table_pull(ref, OWN, own, want, NULL,
					 EMBKV_PULL_TRAIN, NULL);
			for (uint32_t i = 0; i < OWN; i++)
				for (uint32_t j = 0; j < DIM; j++)
					grads[(size_t)i * DIM + j] =
						grad(own[i], r, k, j);
			assert_int_equal(embkv_table_push(ref, OWN, own, grads),
					 OWN);
		}
	}
	embkv_table_pull(ref, n, keys, want, NULL, EMBKV_PULL_INFER, NULL);
	embkv_table_destroy(ref);

	embkv_client_attr_init(&ca);
	ca.servers = cl->addrs;
	ca.nservers = NSRV;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	assert_int_equal(embkv_table_open(c, ADAM_TABLE, &t), 0);
	assert_int_equal(embkv_pull(t, n, keys, out, found, EMBKV_MODE_INFER,
				    NULL), 0);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(found[i], 1);
		for (uint32_t j = 0; j < DIM; j++) {
			size_t x = (size_t)i * DIM + j;

			if (memcmp(&out[x], &want[x], sizeof(float)))
				fail_msg("adam key %llu [%u]: %.9g != %.9g",
					 (unsigned long long)keys[i], j,
					 (double)out[x], (double)want[x]);
		}
	}
	/* and the Adam steps did move the rows */
	assert_true(want[0] != 0.0f);
	embkv_table_close(t);
	embkv_client_destroy(c);
	free(found);
	free(grads);
	free(want);
	free(out);
	free(keys);
}

/* The cluster lives in the test's state, so that the teardown stops its
 * servers even when an assertion ended the test early (a running server
 * would keep the test's output pipe open). */
static int cluster_setup(void **state)
{
	struct embkv_test_cluster *cl = calloc(1, sizeof(*cl));

	if (!cl || embkv_test_cluster_start(EMBKVD_PATH, NSRV, extra, READY_MS,
					    cl)) {
		free(cl);
		return -1;
	}
	*state = cl;
	return 0;
}

static int cluster_teardown(void **state)
{
	struct embkv_test_cluster *cl = *state;
	int status = embkv_test_cluster_stop(cl, STOP_MS);

	free(cl);
	return status == 0 ? 0 : -1; /* every server must exit with 0 */
}

static void test_cluster(void **state)
{
	struct embkv_test_cluster *clp = *state;
	struct client_arg args[NCLIENTS];
	pthread_t th[NCLIENTS];
	struct embkv_client_attr ca;
	struct embkv_table_attr ta, tadam;
	struct embkv_client *c;

	embkv_client_attr_init(&ca);
	ca.servers = clp->addrs;
	ca.nservers = NSRV;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	embkv_table_attr_init(&ta);
	strcpy(ta.name, "shared");
	ta.dim = DIM;
	ta.capacity = 1u << 16;
	ta.init.type = EMBKV_INIT_ZEROS;
	ta.opt.lr = LR;
	assert_int_equal(embkv_table_create_remote(c, &ta), 0);
	tadam = ta;
	strcpy(tadam.name, ADAM_TABLE);
	tadam.opt.type = EMBKV_OPT_ADAM;
	tadam.opt.lr = 0.01f;
	assert_int_equal(embkv_table_create_remote(c, &tadam), 0);
	embkv_client_destroy(c);

	for (uint32_t i = 0; i < NCLIENTS; i++) {
		args[i] = (struct client_arg){ .cl = clp, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, client_main,
						&args[i]), 0);
	}
	for (uint32_t i = 0; i < NCLIENTS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].rc, 0);
	}
	check_table(clp);
	check_adam(clp, &tadam);
}

/* Table identity through libembkv ---------------------------------------- */

#define RS_N 64u
#define RS_DIM 8u
#define RS_TRIES 20
#define RS_PAUSE_US 100000

/* One embkvd, on a port that stays the same across restarts. */
struct restart_fx {
	struct embkv_test_proc proc;
	int running;
	char addr[EMBKV_TEST_ADDR_MAX];
	const char *addrs[1];
};

static int restart_start(struct restart_fx *fx)
{
	const char *const argv[] = { EMBKVD_PATH, "--listen", fx->addr,
				     "--threads", "1", NULL };
	int rc = -EADDRINUSE;

	/* the port may be held for a moment after the last server left */
	for (int t = 0; t < RS_TRIES && rc; t++) {
		rc = embkv_test_proc_start(argv, 1, READY_MS, &fx->proc);
		if (rc)
			usleep(RS_PAUSE_US);
	}
	fx->running = !rc;
	return rc;
}

static int restart_setup(void **state)
{
	struct restart_fx *fx = calloc(1, sizeof(*fx));
	int rc = -1;

	for (int t = 0; fx && t < RS_TRIES && rc; t++) {
		uint16_t port = embkv_test_free_port();

		if (!port)
			continue;
		snprintf(fx->addr, sizeof(fx->addr), "%s:%u",
			 embkv_test_listen_prefix(), (unsigned)port);
		rc = restart_start(fx);
	}
	if (rc) {
		free(fx);
		return -1;
	}
	fx->addrs[0] = fx->addr;
	*state = fx;
	return 0;
}

static int restart_teardown(void **state)
{
	struct restart_fx *fx = *state;
	int status = fx->running ? embkv_test_proc_stop(&fx->proc, STOP_MS)
				 : 0;

	free(fx);
	return status == 0 ? 0 : -1;
}

static struct embkv_client *rs_client(struct restart_fx *fx,
				      uint32_t max_conns)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;

	embkv_client_attr_init(&ca);
	ca.servers = fx->addrs;
	ca.nservers = 1;
	ca.max_conns_per_server = max_conns;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

static void rs_table(struct embkv_client *c, const char *name)
{
	struct embkv_table_attr a;

	embkv_table_attr_init(&a);
	strcpy(a.name, name);
	a.dim = RS_DIM;
	a.partitions = 8;
	a.capacity = 4096;
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
}

static void on_rows(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	uint64_t *rows = ctx;

	(void)server;
	if (table && strcmp(table, "after") == 0 && strcmp(name, "rows") == 0)
		*rows = value;
}

static void test_restart_old_handle(void **state)
{
	struct restart_fx *fx = *state;
	struct embkv_table_handle *old, *cur, *again;
	struct embkv_client *c, *admin;
	uint64_t keys[RS_N], more[RS_N], uid_old = 0, uid_cur = 0, uid = 0;
	uint64_t rows = 0;
	float vals[RS_N * RS_DIM], out[RS_N * RS_DIM];
	uint8_t found[RS_N];
	uint32_t id_old = 0, id_cur = 0, id = 0, applied = 7;
	struct embkv_op *op;
	int rc;

	for (uint32_t i = 0; i < RS_N; i++) {
		keys[i] = 5 + 3 * i;
		more[i] = 100000 + i;
	}
	for (uint32_t i = 0; i < RS_N * RS_DIM; i++)
		vals[i] = (float)i * 0.25f;
	/* one connection per server: after the restart, at most one stale
	 * pooled connection to fail on */
	c = rs_client(fx, 1);
	rs_table(c, "before");
	assert_int_equal(embkv_table_open(c, "before", &old), 0);
	assert_int_equal(embkv_table_uid(old, 0, &id_old, &uid_old), 0);
	assert_true(uid_old != 0);
	assert_int_equal(embkv_table_uid(old, 1, &id, &uid), -ENOENT);
	assert_int_equal(embkv_assign(old, RS_N, keys, vals), 0);
	assert_int_equal(embkv_pull(old, RS_N, keys, out, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	assert_memory_equal(out, vals, sizeof(out));

	assert_int_equal(embkv_test_proc_stop(&fx->proc, STOP_MS), 0);
	fx->running = 0;
	assert_int_equal(restart_start(fx), 0);

	/* Another table of the same dim gets the old one's id. */
	admin = rs_client(fx, 0);
	rs_table(admin, "after");
	assert_int_equal(embkv_table_open(admin, "after", &cur), 0);
	assert_int_equal(embkv_table_uid(cur, 0, &id_cur, &uid_cur), 0);
	assert_int_equal(id_cur, id_old);
	assert_true(uid_cur != uid_old);
	for (uint32_t i = 0; i < RS_N * RS_DIM; i++)
		vals[i] = -1.0f - (float)i;
	assert_int_equal(embkv_assign(cur, RS_N, keys, vals), 0);

	/* The old handle: its first call may meet the connection the
	 * restart broke (never resent); from then on EMBKV_ENOTABLE. */
	rc = embkv_pull(old, RS_N, keys, out, found, EMBKV_MODE_TRAIN, NULL);
	if (rc == EMBKV_EDISCONNECTED)
		rc = embkv_pull(old, RS_N, keys, out, found, EMBKV_MODE_TRAIN,
				NULL);
	assert_int_equal(rc, EMBKV_ENOTABLE);
	assert_int_equal(embkv_pull(old, RS_N, more, out, found,
				    EMBKV_MODE_TRAIN, NULL), EMBKV_ENOTABLE);
	assert_int_equal(embkv_pull(old, RS_N, keys, out, found,
				    EMBKV_MODE_INFER, NULL), EMBKV_ENOTABLE);
	assert_int_equal(embkv_push(old, RS_N, keys, vals, &applied),
			 EMBKV_ENOTABLE);
	assert_int_equal(applied, 0);
	assert_int_equal(embkv_assign(old, RS_N, more, vals), EMBKV_ENOTABLE);
	assert_int_equal(embkv_erase(old, RS_N, keys, NULL), EMBKV_ENOTABLE);
	assert_int_equal(embkv_pull_async(old, RS_N, keys, out, NULL,
					  EMBKV_MODE_TRAIN, NULL, &op), 0);
	assert_int_equal(embkv_op_wait(op), EMBKV_ENOTABLE);
	assert_int_equal(embkv_push_async(old, RS_N, keys, vals, &op), 0);
	assert_int_equal(embkv_op_wait(op), EMBKV_ENOTABLE);
	/* nothing re-opened the name behind the caller's back */
	assert_int_equal(embkv_table_uid(old, 0, &id, &uid), 0);
	assert_int_equal(id, id_old);
	assert_true(uid == uid_old);

	/* The new table holds exactly what its own client stored. */
	assert_int_equal(embkv_pull(cur, RS_N, keys, out, found,
				    EMBKV_MODE_INFER, NULL), 0);
	assert_memory_equal(out, vals, sizeof(out));
	for (uint32_t i = 0; i < RS_N; i++)
		assert_int_equal(found[i], 1);
	assert_int_equal(embkv_stats(admin, on_rows, &rows), 0);
	assert_int_equal(rows, RS_N);

	/* Opening again by name is the user's call, and then works. */
	assert_int_equal(embkv_table_open(c, "before", &again), EMBKV_ENOTABLE);
	assert_int_equal(embkv_table_open(c, "after", &again), 0);
	assert_int_equal(embkv_table_uid(again, 0, &id, &uid), 0);
	assert_true(uid == uid_cur);
	assert_int_equal(embkv_pull(again, RS_N, keys, out, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	assert_memory_equal(out, vals, sizeof(out));
	embkv_table_close(again);
	embkv_table_close(old);
	embkv_table_close(cur);
	embkv_client_destroy(admin);
	embkv_client_destroy(c);
}

#define MT_N 4000u

/* A table of this dim and optimizer, seeded init (twins equal). */
static struct embkv_table_handle *mt_table(struct embkv_client *c,
					   const char *name, uint32_t dim,
					   enum embkv_optimizer opt)
{
	struct embkv_table_handle *t;
	struct embkv_table_attr a;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = dim;
	a.capacity = 1u << 16;
	a.opt.type = opt;
	a.opt.lr = 0.05f;
	a.init.type = EMBKV_INIT_UNIFORM;
	a.init.seed = 99;
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	assert_int_equal(embkv_table_open(c, name, &t), 0);
	return t;
}

/*
 * embkv_pull_multi / embkv_push_multi over this run's transport: shares
 * too big for one frame of the transport (over rdma the 64 KiB RECVs:
 * several MULTI_PUSH frames per server; a pull's rdma keys go one-sided)
 * still equal the separate calls on twin tables, rows and counts.
 */
static void test_multi_frames(void **state)
{
	struct embkv_test_cluster *clp = *state;
	struct embkv_client_attr ca;
	struct embkv_client *c;
	struct embkv_table_handle *t[2], *w[2];
	static const uint32_t dims[2] = { 16, 64 };
	uint64_t *keys = malloc(MT_N * sizeof(uint64_t));
	float *g = malloc((size_t)MT_N * 64 * sizeof(float));
	float *x[2], *y[2];
	struct embkv_multi_req r[2];
	uint32_t applied;

	embkv_client_attr_init(&ca);
	ca.servers = clp->addrs;
	ca.nservers = NSRV;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	t[0] = mt_table(c, "mt16", 16, EMBKV_OPT_SGD);
	t[1] = mt_table(c, "mt64", 64, EMBKV_OPT_ADAGRAD);
	w[0] = mt_table(c, "mw16", 16, EMBKV_OPT_SGD);
	w[1] = mt_table(c, "mw64", 64, EMBKV_OPT_ADAGRAD);
	for (uint32_t i = 0; i < MT_N; i++)
		keys[i] = 0x9e3779b97f4a7c15ull * (i % (MT_N - 100) + 1);
	for (size_t i = 0; i < (size_t)MT_N * 64; i++)
		g[i] = (float)(i % 9) * 0.01f - 0.04f;
	for (int k = 0; k < 2; k++) {
		x[k] = malloc((size_t)MT_N * dims[k] * sizeof(float));
		y[k] = malloc((size_t)MT_N * dims[k] * sizeof(float));
		r[k] = (struct embkv_multi_req){ t[k], MT_N, keys, x[k], NULL,
						 1, 0 };
	}
	assert_int_equal(embkv_pull_multi(r, 2, EMBKV_MODE_TRAIN), 0);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(embkv_pull(w[k], MT_N, keys, y[k], NULL,
					    EMBKV_MODE_TRAIN, NULL), 0);
		assert_memory_equal(x[k], y[k],
				    (size_t)MT_N * dims[k] * sizeof(float));
		r[k].rows = g;
	}
	assert_int_equal(embkv_push_multi(r, 2), 0);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(embkv_push(w[k], MT_N, keys, g, &applied), 0);
		assert_int_equal(r[k].done, applied);
		assert_int_equal(applied, MT_N - 100);
		assert_int_equal(embkv_pull(t[k], MT_N, keys, x[k], NULL,
					    EMBKV_MODE_INFER, NULL), 0);
		assert_int_equal(embkv_pull(w[k], MT_N, keys, y[k], NULL,
					    EMBKV_MODE_INFER, NULL), 0);
		assert_memory_equal(x[k], y[k],
				    (size_t)MT_N * dims[k] * sizeof(float));
		free(x[k]);
		free(y[k]);
		embkv_table_close(t[k]);
		embkv_table_close(w[k]);
	}
	free(keys);
	free(g);
	embkv_client_destroy(c);
}

/*
 * usage: test_client_cluster [SCHEME://HOST]: where the servers listen,
 * tcp://127.0.0.1 by default; the RDMA VM runs the same test with
 * rdma://10.0.2.15 (tests/rdma/CMakeLists.txt), so that both transports
 * pass the same checks.
 */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cluster, cluster_setup,
						cluster_teardown),
		cmocka_unit_test_setup_teardown(test_multi_frames,
						cluster_setup,
						cluster_teardown),
		cmocka_unit_test_setup_teardown(test_restart_old_handle,
						restart_setup,
						restart_teardown),
	};

	if (argc > 1)
		setenv(EMBKV_TEST_LISTEN_ENV, argv[1], 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
