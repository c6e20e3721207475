/*
 * 16-bit tables (issue 17) through the paths that landed beside them:
 * serving replicas and the multi-table calls. Real embkvd processes,
 * libembkv.
 *
 * Replica: a primary holds a bf16 table (Adagrad, bf16 state,
 * stochastic rounding) and an fp16 table (row-wise Adagrad, nearest);
 * one replica follows both while a trainer pushes. Once the replica
 * reports lag 0 for both, its stored rows (embkv_pull_raw, infer) equal
 * the primary's bitwise and the pushes changed them. Then the replica is
 * SIGSTOPped while the primary goes far past its 1024-key feed ring and
 * erases keys: it copies the partitions again (repl_snapshots grows for
 * both tables) and is bitwise equal again with the erased keys gone.
 * This is what a feed that sized or copied rows as fp32 would break.
 *
 * Multi: embkv_pull_multi / embkv_push_multi over fp32, fp16 and bf16
 * tables of different dims (stochastic and nearest rounding, bf16 state,
 * row-wise Adagrad) equal the separate calls on twin tables (same init
 * seed, so the same stochastic rounding): values, found flags, applied
 * counts, and the stored rows bitwise; each server counted one request
 * per multi call (a bf16 entry with duplicate keys among them). On the
 * replica, a multi pull of both tables equals the separate pulls, and
 * SCAN pages of the replica carry the primary's stored rows (and SCAN
 * pages of rows that are not a multiple of 8 bytes are whole).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"

#define NSRV 2u
#define PARTS 8u
#define READY_MS 15000u
#define STOP_MS 10000u
#define RKEYS 3000u
#define RBATCH 250u
#define NRT 2u

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	nanosleep(&ts, NULL);
}

static struct embkv_client *client_of(const char *const *servers, uint32_t n)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;

	embkv_client_attr_init(&ca);
	ca.servers = servers;
	ca.nservers = n;
	ca.request_timeout_ms = 30000;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

static struct embkv_table_handle *
make_table(struct embkv_client *c, const char *name, uint32_t dim,
	   enum embkv_dtype dt, enum embkv_optimizer opt, uint32_t flags,
	   uint64_t seed)
{
	struct embkv_table_handle *t;
	struct embkv_table_attr a;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = dim;
	a.dtype = dt;
	a.partitions = PARTS;
	a.capacity = 100000;
	a.opt.type = opt;
	a.opt.lr = 0.05f;
	a.opt.initial_accum = 0.1f;
	a.init.type = EMBKV_INIT_UNIFORM;
	a.init.a = -0.5f;
	a.init.b = 0.5f;
	a.init.seed = seed;
	a.flags = flags;
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	assert_int_equal(embkv_table_open(c, name, &t), 0);
	return t;
}

/* ---- replica ---------------------------------------------------------- */

static const char *const rnames[NRT] = { "rbf", "rhf" };
static const uint32_t rdims[NRT] = { 8, 5 };

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Per table: a train pull (inserts) and a push of RBATCH distinct random
 * keys, random gradients. */
static int push_step(struct embkv_table_handle *const *t, uint64_t *seed)
{
	static uint64_t keys[RBATCH];
	static float g[RBATCH * 8];

	for (uint32_t k = 0; k < NRT; k++) {
		int rc;

		for (uint32_t i = 0; i < RBATCH; i++) {
			keys[i] = (rnd(seed) % (RKEYS / RBATCH)) * RBATCH + i + 1;
		}
		rc = embkv_pull(t[k], RBATCH, keys, g, NULL,
				EMBKV_MODE_TRAIN, NULL);
		for (uint32_t i = 0; !rc && i < RBATCH * rdims[k]; i++)
			g[i] = (float)((int64_t)(rnd(seed) % 2001) - 1000) /
			       997.0f;
		if (!rc)
			rc = embkv_push(t[k], RBATCH, keys, g, NULL);
		if (rc)
			return rc;
	}
	return 0;
}

struct trainer {
	struct embkv_table_handle *t[NRT];
	volatile int stop;
	uint64_t steps;
	int rc;
};

static void *trainer_main(void *arg)
{
	struct trainer *tr = arg;
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	while (!tr->stop && !tr->rc && tr->steps < 400) {
		tr->rc = push_step(tr->t, &seed);
		tr->steps++;
	}
	return NULL;
}

struct rlag {
	uint64_t ms[NRT], updates[NRT], snaps[NRT];
	bool seen[NRT];
};

static void rlag_cb(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct rlag *l = ctx;

	(void)server;
	if (!table)
		return;
	for (uint32_t k = 0; k < NRT; k++) {
		if (strcmp(table, rnames[k]))
			continue;
		if (!strcmp(name, "repl_lag_ms")) {
			l->ms[k] = value;
			l->seen[k] = true;
		} else if (!strcmp(name, "repl_lag_updates")) {
			l->updates[k] = value;
		} else if (!strcmp(name, "repl_snapshots")) {
			l->snaps[k] = value;
		}
	}
}

static void wait_lag0(struct embkv_client *rc, struct rlag *out)
{
	struct rlag l;

	for (int i = 0; i < 3000; i++) {
		bool ok = true;

		memset(&l, 0, sizeof(l));
		if (!embkv_stats(rc, rlag_cb, &l)) {
			for (uint32_t k = 0; k < NRT; k++)
				ok = ok && l.seen[k] && !l.ms[k] &&
				     !l.updates[k];
		} else {
			ok = false;
		}
		if (ok) {
			*out = l;
			return;
		}
		sleep_ms(20);
	}
	fail_msg("replica behind after 60 s: %llu/%llu updates, %llu/%llu ms",
		 (unsigned long long)l.updates[0],
		 (unsigned long long)l.updates[1], (unsigned long long)l.ms[0],
		 (unsigned long long)l.ms[1]);
}

/* Raw rows of every key on both sides, bitwise; returns the rows found. */
static uint32_t compare_raw(struct embkv_table_handle *p,
			    struct embkv_table_handle *r, uint32_t dim,
			    const uint64_t *gone, uint32_t ngone)
{
	static uint64_t keys[RKEYS + 1];
	static uint16_t a[(RKEYS + 1) * 8], b[(RKEYS + 1) * 8];
	static uint8_t fa[RKEYS + 1], fb[RKEYS + 1];
	uint32_t n = RKEYS + 1, rows = 0;

	for (uint32_t i = 0; i < n; i++)
		keys[i] = i; /* key 0 never pushed: missing on both */
	memset(a, 0xa5, sizeof(a));
	memset(b, 0x5a, sizeof(b));
	assert_int_equal(embkv_pull_raw(p, n, keys, a, fa, EMBKV_MODE_INFER,
					NULL), 0);
	assert_int_equal(embkv_pull_raw(r, n, keys, b, fb, EMBKV_MODE_INFER,
					NULL), 0);
	for (uint32_t i = 0; i < n; i++) {
		if (fa[i] != fb[i] ||
		    memcmp(a + (size_t)i * dim, b + (size_t)i * dim,
			   dim * sizeof(uint16_t)))
			fail_msg("dim-%u table: key %u differs (found %u / %u)",
				 dim, i, fa[i], fb[i]);
		rows += fa[i];
	}
	for (uint32_t i = 0; i < ngone; i++)
		assert_int_equal(fb[gone[i]], 0);
	return rows;
}

/* Scans every partition of the replica's table: each row it holds must
 * be the primary's, byte for byte, and it holds as many as it finds. */
static void compare_scan(struct embkv_table_handle *p,
			 struct embkv_table_handle *r, uint32_t dim,
			 uint32_t found, uint32_t max)
{
	static uint64_t k[512];
	static uint8_t v[512 * 16 * 4], pv[512 * 16 * 4];
	static uint8_t f[512];
	size_t row = dim * embkv_dtype_size(embkv_table_attr_get(r)->dtype);
	uint32_t total = 0;

	for (uint32_t part = 0; part < PARTS; part++) {
		uint64_t cur = 0;

		while (cur != EMBKV_SCAN_END) {
			uint32_t n = 0;

			assert_int_equal(embkv_scan(r, part, &cur, max, k, v,
						    &n), 0);
			if (!n)
				continue;
			assert_int_equal(embkv_pull_raw(p, n, k, pv, f,
							EMBKV_MODE_INFER,
							NULL), 0);
			for (uint32_t i = 0; i < n; i++)
				if (!f[i] || memcmp(v + i * row, pv + i * row,
						    row))
					fail_msg("scan: key %llu differs "
						 "(dim %u, found %u, row %u of "
						 "%u)", (unsigned long long)k[i],
						 dim, f[i], i, n);
			total += n;
		}
	}
	assert_int_equal(total, found);
}

/* embkv_pull_multi on the replica (one MULTI_PULL there, infer) equals
 * the separate pulls, widened. */
static void compare_multi(struct embkv_table_handle *const *rt)
{
	static uint64_t keys[RKEYS];
	static float a[NRT][RKEYS * 8], b[RKEYS * 8];
	static uint8_t fa[NRT][RKEYS], fb[RKEYS];
	struct embkv_multi_req q[NRT];

	for (uint32_t i = 0; i < RKEYS; i++)
		keys[i] = i * 2 + 1;
	for (uint32_t k = 0; k < NRT; k++)
		q[k] = (struct embkv_multi_req){ rt[k], RKEYS, keys, a[k],
						 fa[k], 1, 1 };
	assert_int_equal(embkv_pull_multi(q, NRT, EMBKV_MODE_INFER), 0);
	for (uint32_t k = 0; k < NRT; k++) {
		assert_int_equal(q[k].status, 0);
		assert_int_equal(embkv_pull(rt[k], RKEYS, keys, b, fb,
					    EMBKV_MODE_INFER, NULL), 0);
		assert_memory_equal(a[k], b, RKEYS * rdims[k] * sizeof(float));
		assert_memory_equal(fa[k], fb, RKEYS);
	}
}

static void test_replica_16bit(void **state)
{
	const char *pargv[] = {
		EMBKVD_PATH, "--listen", "tcp://127.0.0.1:0", "--threads", "2",
		"--repl-log-rows", "1024", NULL,
	};
	struct embkv_test_proc prim = { 0 }, rep = { 0 };
	struct embkv_client *pc, *pc2, *rc;
	struct embkv_table_handle *pt[NRT], *tt[NRT], *rt[NRT];
	const struct embkv_table_attr *ra;
	struct trainer tr = { 0 };
	struct rlag l0, l1;
	static uint64_t keys[RKEYS];
	static float before[RKEYS * 8], after[RKEYS * 8];
	uint64_t seed = 77, gone[40];
	const char *paddr, *raddr;
	pthread_t th;
	bool moved = false;

	(void)state;
	assert_int_equal(embkv_test_proc_start(pargv, 1, READY_MS, &prim), 0);
	paddr = prim.addrs[0];
	pc = client_of(&paddr, 1);
	pc2 = client_of(&paddr, 1);
	pt[0] = make_table(pc, rnames[0], rdims[0], EMBKV_DTYPE_BF16,
			   EMBKV_OPT_ADAGRAD, EMBKV_TABLE_STATE_BF16, 11);
	pt[1] = make_table(pc, rnames[1], rdims[1], EMBKV_DTYPE_F16,
			   EMBKV_OPT_ROWWISE_ADAGRAD,
			   EMBKV_TABLE_ROUND_NEAREST, 12);
	for (uint32_t i = 0; i < RKEYS; i++)
		keys[i] = i + 1;
	/* rows that exist before the replica come in its first copy */
	for (uint32_t k = 0; k < NRT; k++)
		assert_int_equal(embkv_pull(pt[k], RKEYS / 2, keys, before,
					    NULL, EMBKV_MODE_TRAIN, NULL), 0);
	{
		char *rargv[] = {
			EMBKVD_PATH, "--listen", "tcp://127.0.0.1:0",
			"--threads", "2", "--replica-of", (char *)rnames[0],
			"--replica-of", (char *)rnames[1], "--primary-servers",
			(char *)paddr, NULL,
		};
		assert_int_equal(embkv_test_proc_start((const char *const *)
						       rargv, 1, READY_MS,
						       &rep), 0);
	}
	raddr = rep.addrs[0];
	rc = client_of(&raddr, 1);
	for (uint32_t k = 0; k < NRT; k++) {
		int r = EMBKV_ENOTABLE;

		for (int i = 0; i < 1500 && r; i++) {
			r = embkv_table_open(rc, rnames[k], &rt[k]);
			if (r)
				sleep_ms(20);
		}
		assert_int_equal(r, 0);
		assert_int_equal(embkv_table_open(pc2, rnames[k], &tt[k]), 0);
		tr.t[k] = tt[k];
	}
	/* the replica made the tables with the primary's dtype and flags */
	ra = embkv_table_attr_get(rt[0]);
	assert_int_equal(ra->dtype, EMBKV_DTYPE_BF16);
	assert_int_equal(ra->opt.type, EMBKV_OPT_ADAGRAD);
	assert_true(ra->flags & EMBKV_TABLE_STATE_BF16);
	ra = embkv_table_attr_get(rt[1]);
	assert_int_equal(ra->dtype, EMBKV_DTYPE_F16);
	assert_int_equal(ra->opt.type, EMBKV_OPT_ROWWISE_ADAGRAD);
	assert_true(ra->flags & EMBKV_TABLE_ROUND_NEAREST);

	assert_int_equal(embkv_pull(pt[0], RKEYS, keys, before, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, trainer_main, &tr), 0);
	for (int i = 0; i < 3000 && tr.steps < 150 && !tr.rc; i++)
		sleep_ms(10);
	tr.stop = 1;
	pthread_join(th, NULL);
	assert_int_equal(tr.rc, 0);
	assert_true(tr.steps > 10);
	wait_lag0(rc, &l0);
	for (uint32_t k = 0; k < NRT; k++) {
		uint32_t found = compare_raw(pt[k], rt[k], rdims[k], NULL, 0);

		assert_true(found > RKEYS / 2);
		compare_scan(pt[k], rt[k], rdims[k], found, 512);
	}
	compare_multi(rt);
	/* the pushes did change the rows the replica now serves */
	assert_int_equal(embkv_pull(rt[0], RKEYS, keys, after, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < RKEYS * rdims[0] && !moved; i++)
		moved = before[i] != after[i];
	assert_true(moved);

	/* overrun: far past the 1024-key ring while stopped, and erases */
	assert_int_equal(kill(rep.pid, SIGSTOP), 0);
	for (int i = 0; i < 120; i++)
		assert_int_equal(push_step(pt, &seed), 0);
	for (uint32_t i = 0; i < 40; i++)
		gone[i] = i * 61 + 3;
	for (uint32_t k = 0; k < NRT; k++)
		assert_int_equal(embkv_erase(pt[k], 40, gone, NULL), 0);
	assert_int_equal(kill(rep.pid, SIGCONT), 0);
	for (int i = 0; i < 3000; i++) {
		memset(&l1, 0, sizeof(l1));
		if (!embkv_stats(rc, rlag_cb, &l1) &&
		    l1.snaps[0] > l0.snaps[0] && l1.snaps[1] > l0.snaps[1])
			break;
		sleep_ms(10);
	}
	if (!(l1.snaps[0] > l0.snaps[0] && l1.snaps[1] > l0.snaps[1]))
		fail_msg("no new copy: snapshots %llu->%llu, %llu->%llu",
			 (unsigned long long)l0.snaps[0],
			 (unsigned long long)l1.snaps[0],
			 (unsigned long long)l0.snaps[1],
			 (unsigned long long)l1.snaps[1]);
	wait_lag0(rc, &l1);
	for (uint32_t k = 0; k < NRT; k++) {
		uint32_t found = compare_raw(pt[k], rt[k], rdims[k], gone, 40);

		assert_true(found > RKEYS / 2);
		compare_scan(pt[k], rt[k], rdims[k], found, 512);
	}
	compare_multi(rt);

	for (uint32_t k = 0; k < NRT; k++) {
		embkv_table_close(rt[k]);
		embkv_table_close(tt[k]);
		embkv_table_close(pt[k]);
	}
	embkv_client_destroy(rc);
	embkv_client_destroy(pc2);
	embkv_client_destroy(pc);
	assert_int_equal(embkv_test_proc_stop(&rep, STOP_MS), 0);
	assert_int_equal(embkv_test_proc_stop(&prim, STOP_MS), 0);
}

/*
 * SCAN pages whose rows are not a multiple of 8 bytes (fp16 dim 5, bf16
 * dim 6, fp32 dim 3) and that end before the requested count: every row
 * equals the pulled one. The server once zeroed up to 6 bytes of one row
 * of such a page (the reply's tail padding written over rows not yet
 * moved into place).
 */
static void test_scan_odd_rows(void **state)
{
	const char *argv[] = {
		EMBKVD_PATH, "--listen", "tcp://127.0.0.1:0", "--threads", "2",
		NULL,
	};
	static const uint32_t dims[3] = { 5, 6, 3 };
	static const enum embkv_dtype dts[3] = {
		EMBKV_DTYPE_F16, EMBKV_DTYPE_BF16, EMBKV_DTYPE_F32,
	};
	struct embkv_test_proc sp = { 0 };
	struct embkv_client *c;
	static uint64_t keys[1001];
	static float w[1001 * 16];
	const char *a0;

	(void)state;
	assert_int_equal(embkv_test_proc_start(argv, 1, READY_MS, &sp), 0);
	a0 = sp.addrs[0];
	c = client_of(&a0, 1);
	for (uint32_t i = 0; i < 1001; i++)
		keys[i] = i * 3 + 1;
	for (uint32_t e = 0; e < 3; e++) {
		struct embkv_table_handle *t;
		char name[16];

		snprintf(name, sizeof(name), "odd%u", e);
		t = make_table(c, name, dims[e], dts[e], EMBKV_OPT_SGD, 0, e);
		assert_int_equal(embkv_pull(t, 1001, keys, w, NULL,
					    EMBKV_MODE_TRAIN, NULL), 0);
		/* about 125 rows a partition: pages that end a few rows
		 * short of max */
		for (uint32_t m = 118; m < 140; m += 3)
			compare_scan(t, t, dims[e], 1001, m);
		embkv_table_close(t);
	}
	embkv_client_destroy(c);
	assert_int_equal(embkv_test_proc_stop(&sp, STOP_MS), 0);
}

/* ---- multi ------------------------------------------------------------ */

#define MN 5u
#define MK 400u

static void sum_requests(void *ctx, uint32_t server, const char *table,
			 const char *name, uint64_t value)
{
	uint64_t *r = ctx;

	if (!table && server < NSRV && !strcmp(name, "requests"))
		r[server] = value;
}

static void check_one_request(struct embkv_client *c, const uint64_t *q0,
			      const uint64_t *q1, const uint64_t *base)
{
	(void)c;
	for (uint32_t v = 0; v < NSRV; v++)
		if (q1[v] - q0[v] != base[v] + 1)
			fail_msg("server %u counted %llu requests, want %llu", v,
				 (unsigned long long)(q1[v] - q0[v]),
				 (unsigned long long)(base[v] + 1));
}

static void test_multi_mixed(void **state)
{
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	struct embkv_table_handle *t[MN], *tw[MN];
	static const uint32_t dims[MN] = { 8, 5, 12, 3, 16 };
	static const enum embkv_dtype dts[MN] = {
		EMBKV_DTYPE_F32, EMBKV_DTYPE_F16, EMBKV_DTYPE_BF16,
		EMBKV_DTYPE_BF16, EMBKV_DTYPE_F16,
	};
	static const enum embkv_optimizer opts[MN] = {
		EMBKV_OPT_SGD, EMBKV_OPT_ADAGRAD, EMBKV_OPT_ADAGRAD,
		EMBKV_OPT_ROWWISE_ADAGRAD, EMBKV_OPT_SGD,
	};
	static const uint32_t flags[MN] = {
		0, 0, EMBKV_TABLE_STATE_BF16, EMBKV_TABLE_ROUND_NEAREST,
		EMBKV_TABLE_ROUND_NEAREST,
	};
	static const uint32_t ns[MN] = { MK, MK / 2, MK, 37, MK };
	uint64_t *keys[MN];
	float *rows[MN], *rows2[MN], *grads[MN];
	uint8_t *fnd[MN], *fnd2[MN];
	void *raw[MN], *raw2[MN];
	struct embkv_multi_req r[MN];
	uint64_t q0[NSRV] = { 0 }, q1[NSRV] = { 0 }, q2[NSRV] = { 0 };
	uint64_t base[NSRV];

	(void)state;
	assert_int_equal(embkv_test_cluster_start(EMBKVD_PATH, NSRV, NULL,
						  READY_MS, &cl), 0);
	c = client_of(cl.addrs, cl.n);
	for (uint32_t e = 0; e < MN; e++) {
		char name[32];
		size_t nv = (size_t)ns[e] * dims[e];

		snprintf(name, sizeof(name), "mx%u", e);
		t[e] = make_table(c, name, dims[e], dts[e], opts[e], flags[e],
				  100 + e);
		snprintf(name, sizeof(name), "tw%u", e);
		tw[e] = make_table(c, name, dims[e], dts[e], opts[e], flags[e],
				   100 + e);
		keys[e] = calloc(ns[e], sizeof(uint64_t));
		rows[e] = calloc(nv, sizeof(float));
		rows2[e] = calloc(nv, sizeof(float));
		grads[e] = calloc(nv, sizeof(float));
		raw[e] = calloc(nv, sizeof(float));
		raw2[e] = calloc(nv, sizeof(float));
		fnd[e] = calloc(ns[e], 1);
		fnd2[e] = calloc(ns[e], 1);
		assert_non_null(keys[e]);
		assert_non_null(fnd2[e]);
		for (uint32_t i = 0; i < ns[e]; i++)
			keys[e][i] = (uint64_t)i * 7u + e * 3u + 1u;
		if (e == 2) /* duplicates: the client sums their gradients */
			for (uint32_t i = ns[e] / 2; i < ns[e]; i++)
				keys[e][i] = keys[e][i - ns[e] / 2];
	}
	/* the stats call's own requests */
	assert_int_equal(embkv_stats(c, sum_requests, q0), 0);
	assert_int_equal(embkv_stats(c, sum_requests, q1), 0);
	for (uint32_t v = 0; v < NSRV; v++)
		base[v] = q1[v] - q0[v];

	/* infer before anything exists: all missing, zeros */
	for (uint32_t e = 0; e < MN; e++)
		r[e] = (struct embkv_multi_req){ t[e], ns[e], keys[e], rows[e],
						 fnd[e], 1, 7 };
	assert_int_equal(embkv_pull_multi(r, MN, EMBKV_MODE_INFER), 0);
	for (uint32_t e = 0; e < MN; e++) {
		assert_int_equal(r[e].status, 0);
		for (uint32_t i = 0; i < ns[e]; i++)
			assert_int_equal(fnd[e][i], 0);
	}

	for (int round = 0; round < 4; round++) {
		/* train pulls (round 0 inserts) */
		for (uint32_t e = 0; e < MN; e++)
			r[e] = (struct embkv_multi_req){ t[e], ns[e], keys[e],
							 rows[e], fnd[e], 1, 7 };
		assert_int_equal(embkv_stats(c, sum_requests, q0), 0);
		assert_int_equal(embkv_pull_multi(r, MN, EMBKV_MODE_TRAIN), 0);
		assert_int_equal(embkv_stats(c, sum_requests, q2), 0);
		check_one_request(c, q0, q2, base);
		for (uint32_t e = 0; e < MN; e++) {
			size_t nb = (size_t)ns[e] * dims[e] * sizeof(float);

			assert_int_equal(r[e].status, 0);
			assert_int_equal(r[e].done, 0);
			assert_int_equal(embkv_pull(tw[e], ns[e], keys[e],
						    rows2[e], fnd2[e],
						    EMBKV_MODE_TRAIN, NULL), 0);
			if (memcmp(rows[e], rows2[e], nb))
				fail_msg("round %d: multi pull of entry %u "
					 "differs", round, e);
			assert_memory_equal(fnd[e], fnd2[e], ns[e]);
		}
		/* pushes: gradients differ per round and element */
		for (uint32_t e = 0; e < MN; e++) {
			for (size_t i = 0; i < (size_t)ns[e] * dims[e]; i++)
				grads[e][i] = (float)((int)((i * 7 + e * 5 +
							     (size_t)round * 3) %
							    23) - 11) / 7.3f;
			r[e] = (struct embkv_multi_req){ t[e], ns[e], keys[e],
							 grads[e], NULL, 1, 7 };
		}
		assert_int_equal(embkv_stats(c, sum_requests, q0), 0);
		assert_int_equal(embkv_push_multi(r, MN), 0);
		assert_int_equal(embkv_stats(c, sum_requests, q2), 0);
		check_one_request(c, q0, q2, base);
		for (uint32_t e = 0; e < MN; e++) {
			uint32_t applied = 99;

			assert_int_equal(embkv_push(tw[e], ns[e], keys[e],
						    grads[e], &applied), 0);
			assert_int_equal(r[e].status, 0);
			assert_int_equal(r[e].done, applied);
			assert_int_equal(applied, e == 2 ? ns[e] / 2 : ns[e]);
		}
	}
	/* stored rows bitwise, and an infer multi pull with missing keys */
	for (uint32_t e = 0; e < MN; e++) {
		size_t nb = (size_t)ns[e] * dims[e] * embkv_dtype_size(dts[e]);

		assert_int_equal(embkv_pull_raw(t[e], ns[e], keys[e], raw[e],
						NULL, EMBKV_MODE_INFER, NULL), 0);
		assert_int_equal(embkv_pull_raw(tw[e], ns[e], keys[e], raw2[e],
						NULL, EMBKV_MODE_INFER, NULL), 0);
		if (memcmp(raw[e], raw2[e], nb))
			fail_msg("entry %u: stored rows differ", e);
		for (uint32_t i = 0; i < ns[e]; i += 3)
			keys[e][i] += 1000000; /* never pushed */
		r[e] = (struct embkv_multi_req){ t[e], ns[e], keys[e], rows[e],
						 fnd[e], 1, 7 };
	}
	assert_int_equal(embkv_stats(c, sum_requests, q0), 0);
	assert_int_equal(embkv_pull_multi(r, MN, EMBKV_MODE_INFER), 0);
	assert_int_equal(embkv_stats(c, sum_requests, q2), 0);
	check_one_request(c, q0, q2, base);
	for (uint32_t e = 0; e < MN; e++) {
		uint32_t nf = 0;

		assert_int_equal(r[e].status, 0);
		assert_int_equal(embkv_pull(tw[e], ns[e], keys[e], rows2[e],
					    fnd2[e], EMBKV_MODE_INFER, NULL), 0);
		assert_memory_equal(rows[e], rows2[e],
				    (size_t)ns[e] * dims[e] * sizeof(float));
		assert_memory_equal(fnd[e], fnd2[e], ns[e]);
		for (uint32_t i = 0; i < ns[e]; i++)
			nf += fnd[e][i];
		if (e != 2)
			assert_int_equal(nf, ns[e] - (ns[e] + 2) / 3);
	}
	for (uint32_t e = 0; e < MN; e++) {
		free(keys[e]);
		free(rows[e]);
		free(rows2[e]);
		free(grads[e]);
		free(raw[e]);
		free(raw2[e]);
		free(fnd[e]);
		free(fnd2[e]);
		embkv_table_close(t[e]);
		embkv_table_close(tw[e]);
	}
	embkv_client_destroy(c);
	assert_int_equal(embkv_test_cluster_stop(&cl, STOP_MS), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replica_16bit),
		cmocka_unit_test(test_multi_mixed),
		cmocka_unit_test(test_scan_odd_rows),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("dtype paths", tests, NULL, NULL);
}
