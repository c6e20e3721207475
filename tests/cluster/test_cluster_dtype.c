/*
 * 16-bit tables (issue 17) through live partition moves: etcd, three
 * embkvd members, libembkv's embkv_partition_move.
 *
 * Under pushes: a bf16 SGD table with nearest rounding, lr 1, and
 * gradients -2^(d-4) for element d, starting from zeros: after c pushes
 * element d is exactly c * 2^(d-4), representable in bf16 for c <= 256,
 * so the result does not depend on rounding and any lost or doubly
 * applied push shows. Two pushers own disjoint keys and push all their
 * keys once per round (every push must be acknowledged) while partitions
 * move back and forth among the members; afterwards every row equals
 * its pusher's round count times the gradient, widened and raw. An fp16
 * table gets the same pushes (one pusher through embkv_push_multi, so
 * MULTI_PUSH sections answered EMBKV_ESTALE mid-move are retried) and
 * its partitions move too; a serving replica of the bf16 table follows
 * it through the moves and, at lag 0, serves the same raw rows; a reader
 * pulling both tables with embkv_pull_multi meanwhile only ever sees
 * rows that are a whole number of pushes.
 *
 * Without pushes: an fp16 Adagrad table with bf16 state and stochastic
 * rounding, trained first, keeps its raw rows bitwise through every
 * partition moving twice; then the same pushes applied to it and to a
 * twin table that never moved (same init seed: the rounding is a pure
 * function of seed, key, version and element) give bitwise equal rows,
 * so the moves carried the optimizer state and the row versions too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define NMEM 3u
#define DIM 8u
#define PARTS 8u
#define NPUSHER 2u
#define PKEYS 1200u         /* keys per pusher */
#define BATCH 300u
#define MAX_ROUNDS 200u     /* c * 2^(d-4) exact in bf16 up to 256 */
#define SKEYS 2000u
#define SDIM 6u
#define READY_MS 15000u
#define STOP_MS 10000u
#define CLUSTER "dty"

static struct embkv_test_etcd etcd;
static struct embkv_test_proc mem[NMEM];
static char addr[NMEM][EMBKV_TEST_ADDR_MAX];

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	nanosleep(&ts, NULL);
}

static int start(uint32_t id)
{
	return embkv_test_member_start(EMBKVD_PATH, &etcd, CLUSTER, id, NULL,
				       NULL, "4", NULL, READY_MS, &mem[id],
				       addr[id]);
}

static int group_setup(void **state)
{
	(void)state;
	if (embkv_test_etcd_start(&etcd))
		return -1;
	for (uint32_t i = 0; i < NMEM; i++)
		if (start(i))
			return -1;
	return 0;
}

static int group_teardown(void **state)
{
	int bad = 0;

	(void)state;
	for (uint32_t i = 0; i < NMEM; i++)
		if (mem[i].pid && embkv_test_proc_stop(&mem[i], STOP_MS))
			bad = -1;
	embkv_test_etcd_stop(&etcd);
	return bad;
}

static struct embkv_client *client(void)
{
	const char *all[NMEM];
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;

	for (uint32_t i = 0; i < NMEM; i++)
		all[i] = addr[i];
	embkv_client_attr_init(&ca);
	ca.servers = all;
	ca.nservers = NMEM;
	ca.request_timeout_ms = 30000;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

static void create(struct embkv_client *c, const char *name, uint32_t dim,
		   enum embkv_dtype dt, enum embkv_optimizer opt, float lr,
		   uint32_t flags, enum embkv_init_type init)
{
	struct embkv_table_attr a;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = dim;
	a.dtype = dt;
	a.partitions = PARTS;
	a.capacity = 100000;
	a.opt.type = opt;
	a.opt.lr = lr;
	a.opt.initial_accum = 0.1f;
	a.init.type = init;
	a.init.a = -0.5f;
	a.init.b = 0.5f;
	a.init.seed = 4242;
	a.flags = flags;
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
}

/*
 * Moves partition part of table to the next member; returns the files.
 * owner[] is the caller's record of the map (embkv_table_map gives the
 * map as the handle last fetched it, which a move by another handle does
 * not refresh): filled from the map when owner[0] is UINT16_MAX.
 */
static uint32_t move_next(struct embkv_client *c,
			  struct embkv_table_handle *t, const char *table,
			  uint32_t part, uint16_t *owner)
{
	struct embkv_move_attr ma;
	struct embkv_ckpt_result r;
	uint32_t to;

	if (owner[0] == UINT16_MAX)
		assert_int_equal(embkv_table_map(t, NULL, owner, PARTS), 0);
	embkv_move_attr_init(&ma);
	to = (owner[part] + 1u) % NMEM;
	memset(&r, 0, sizeof(r));
	if (embkv_partition_move(c, table, part, to, &ma, &r))
		fail_msg("move of %s partition %u: %s", table, part, r.error);
	owner[part] = (uint16_t)to;
	return (uint32_t)r.files;
}

struct pusher {
	struct embkv_table_handle *t, *th; /* bf16, fp16 */
	uint32_t id;
	volatile int stop;
	uint32_t rounds;
	int rc;
};

/* Pusher 0 pushes each table separately; pusher 1 both in one
 * embkv_push_multi (ESTALE sections finished per table). */
static void *push_main(void *arg)
{
	struct pusher *p = arg;
	static uint64_t keys[NPUSHER][BATCH];
	static float g[NPUSHER][BATCH * DIM];

	for (uint32_t i = 0; i < BATCH; i++)
		for (uint32_t d = 0; d < DIM; d++)
			g[p->id][i * DIM + d] = -ldexpf(1.0f, (int)d - 4);
	while (!p->stop && p->rounds < MAX_ROUNDS) {
		for (uint32_t b = 0; b < PKEYS / BATCH && !p->rc; b++) {
			for (uint32_t i = 0; i < BATCH; i++)
				keys[p->id][i] = (uint64_t)(b * BATCH + i) *
						 NPUSHER + p->id + 1;
			if (p->id) {
				struct embkv_multi_req r[2] = {
					{ p->t, BATCH, keys[p->id], g[p->id],
					  NULL, 1, 0 },
					{ p->th, BATCH, keys[p->id], g[p->id],
					  NULL, 1, 0 },
				};

				p->rc = embkv_push_multi(r, 2);
				if (!p->rc && (r[0].done != BATCH ||
					       r[1].done != BATCH))
					p->rc = -EIO;
			} else {
				p->rc = embkv_push(p->t, BATCH, keys[p->id],
						   g[p->id], NULL);
				if (!p->rc)
					p->rc = embkv_push(p->th, BATCH,
							   keys[p->id],
							   g[p->id], NULL);
			}
		}
		if (p->rc)
			break;
		p->rounds++; /* every key of this pusher pushed once more */
		sleep_ms(2);
	}
	return NULL;
}

struct lag {
	uint64_t ms, updates;
	bool seen;
};

static void lag_cb(void *ctx, uint32_t server, const char *table,
		   const char *name, uint64_t value)
{
	struct lag *l = ctx;

	(void)server;
	if (!table || strcmp(table, "mvb"))
		return;
	if (!strcmp(name, "repl_lag_ms")) {
		l->ms = value;
		l->seen = true;
	} else if (!strcmp(name, "repl_lag_updates")) {
		l->updates = value;
	}
}

/* Every row of t is its pusher's round count times the gradient. */
static void check_exact(struct embkv_table_handle *t, enum embkv_dtype dt,
			const struct pusher *p, uint16_t *raw_out)
{
	static uint64_t keys[NPUSHER * PKEYS];
	static float v[NPUSHER * PKEYS * DIM];
	static uint8_t fnd[NPUSHER * PKEYS];
	uint32_t n = NPUSHER * PKEYS;

	for (uint32_t i = 0; i < n; i++)
		keys[i] = i + 1;
	assert_int_equal(embkv_pull(t, n, keys, v, fnd, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_int_equal(embkv_pull_raw(t, n, keys, raw_out, NULL,
					EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t cnt = p[(keys[i] - 1) % NPUSHER].rounds;

		if (!fnd[i])
			fail_msg("%s key %llu lost", embkv_dtype_name(dt),
				 (unsigned long long)keys[i]);
		for (uint32_t d = 0; d < DIM; d++) {
			float want = (float)cnt * ldexpf(1.0f, (int)d - 4);
			uint16_t wraw, got = raw_out[i * DIM + d];

			embkv_dtype_from_f32(dt, &want, &wraw, 1);
			if (v[i * DIM + d] != want || got != wraw)
				fail_msg("%s key %llu element %u: %g (0x%04x), "
					 "want %g after %u pushes",
					 embkv_dtype_name(dt),
					 (unsigned long long)keys[i], d,
					 (double)v[i * DIM + d], got,
					 (double)want, cnt);
		}
	}
}

/* Reads both tables with embkv_pull_multi during the moves: every row
 * must be some whole number of pushes, c * 2^(d-4) for every element d
 * (a row sized or widened wrongly on the ESTALE fallback breaks this). */
struct reader {
	struct embkv_table_handle *t, *th;
	volatile int stop;
	uint32_t reads;
	int rc;
	char why[160];
};

static void *read_main(void *arg)
{
	struct reader *r = arg;
	static uint64_t keys[BATCH];
	static float v[2][BATCH * DIM];
	static uint8_t f[2][BATCH];
	uint64_t s = 99;

	while (!r->stop && !r->rc) {
		struct embkv_multi_req q[2] = {
			{ r->t, BATCH, keys, v[0], f[0], 1, 1 },
			{ r->th, BATCH, keys, v[1], f[1], 1, 1 },
		};

		for (uint32_t i = 0; i < BATCH; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			keys[i] = (s >> 33) % (NPUSHER * PKEYS) + 1;
		}
		r->rc = embkv_pull_multi(q, 2, EMBKV_MODE_INFER);
		for (uint32_t e = 0; e < 2 && !r->rc; e++)
			for (uint32_t i = 0; i < BATCH && !r->rc; i++) {
				const float *row = v[e] + (size_t)i * DIM;
				float c = row[0] * 16.0f;

				if (!f[e][i] || c != (float)(uint32_t)c ||
				    c > (float)MAX_ROUNDS)
					r->rc = -EIO;
				for (uint32_t d = 1; d < DIM && !r->rc; d++)
					if (row[d] != c * ldexpf(1.0f,
								 (int)d - 4))
						r->rc = -EIO;
				if (r->rc)
					snprintf(r->why, sizeof(r->why),
						 "entry %u key %llu: found %u, "
						 "%g %g %g", e,
						 (unsigned long long)keys[i],
						 f[e][i], (double)row[0],
						 (double)row[1],
						 (double)row[DIM - 1]);
			}
		r->reads++;
	}
	return NULL;
}

static void moves_under_pushes(void **state)
{
	const char *rargv[] = {
		EMBKVD_PATH, "--listen", "tcp://127.0.0.1:0", "--threads", "2",
		"--replica-of", "mvb", "--primary-servers", addr[1], NULL,
	};
	struct embkv_client *c = client(), *pc[NPUSHER], *rc;
	struct embkv_table_handle *t, *th, *rt, *pt[NPUSHER], *ph[NPUSHER];
	struct embkv_test_proc rep = { 0 };
	struct pusher p[NPUSHER];
	struct reader rd = { 0 };
	pthread_t thr[NPUSHER], rth;
	static uint64_t keys[NPUSHER * PKEYS];
	static float v[NPUSHER * PKEYS * DIM];
	static uint16_t raw[NPUSHER * PKEYS * DIM], rraw[NPUSHER * PKEYS * DIM];
	static uint8_t fnd[NPUSHER * PKEYS], rfnd[NPUSHER * PKEYS];
	uint32_t files = 0, n = NPUSHER * PKEYS;
	uint16_t owner[PARTS] = { UINT16_MAX }, howner[PARTS] = { UINT16_MAX };
	const char *raddr;
	struct lag l = { 0 };
	int err = -1;

	(void)state;
	create(c, "mvb", DIM, EMBKV_DTYPE_BF16, EMBKV_OPT_SGD, 1.0f,
	       EMBKV_TABLE_ROUND_NEAREST, EMBKV_INIT_ZEROS);
	create(c, "mvh", DIM, EMBKV_DTYPE_F16, EMBKV_OPT_SGD, 1.0f,
	       EMBKV_TABLE_ROUND_NEAREST, EMBKV_INIT_ZEROS);
	assert_int_equal(embkv_table_open(c, "mvb", &t), 0);
	assert_int_equal(embkv_table_open(c, "mvh", &th), 0);
	/* pushes update stored rows only: insert every key first (zeros) */
	for (uint32_t i = 0; i < n; i++)
		keys[i] = i + 1;
	assert_int_equal(embkv_pull(t, n, keys, v, fnd, EMBKV_MODE_TRAIN,
				    NULL), 0);
	assert_int_equal(embkv_pull(th, n, keys, v, fnd, EMBKV_MODE_TRAIN,
				    NULL), 0);
	/* a serving replica of the bf16 table follows it through the moves */
	assert_int_equal(embkv_test_proc_start(rargv, 1, READY_MS, &rep), 0);
	raddr = rep.addrs[0];
	{
		struct embkv_client_attr ca;

		embkv_client_attr_init(&ca);
		ca.servers = &raddr;
		ca.nservers = 1;
		ca.request_timeout_ms = 30000;
		assert_int_equal(embkv_client_create(&ca, &rc), 0);
	}
	for (uint32_t j = 0; j < NPUSHER; j++) {
		pc[j] = client();
		assert_int_equal(embkv_table_open(pc[j], "mvb", &pt[j]), 0);
		assert_int_equal(embkv_table_open(pc[j], "mvh", &ph[j]), 0);
		p[j] = (struct pusher){ .t = pt[j], .th = ph[j], .id = j };
		assert_int_equal(pthread_create(&thr[j], NULL, push_main,
						&p[j]), 0);
	}
	rd.t = t;
	rd.th = th;
	assert_int_equal(pthread_create(&rth, NULL, read_main, &rd), 0);
	/* every partition moves, some twice, back and forth */
	for (uint32_t k = 0; k < 12; k++) {
		for (int i = 0; i < 500 && p[0].rounds < 2 + k; i++)
			sleep_ms(5);
		files += move_next(c, t, "mvb", (k * 5) % PARTS, owner);
		if (k % 2)
			files += move_next(c, th, "mvh", (k * 3) % PARTS,
					   howner);
	}
	for (uint32_t j = 0; j < NPUSHER; j++) {
		p[j].stop = 1;
		pthread_join(thr[j], NULL);
		assert_int_equal(p[j].rc, 0);
		assert_true(p[j].rounds > 2);
		fprintf(stderr, "pusher %u: %u rounds\n", j, p[j].rounds);
	}
	rd.stop = 1;
	pthread_join(rth, NULL);
	if (rd.rc)
		fail_msg("multi pull during moves: %s (%s)",
			 embkv_strerror(rd.rc), rd.why);
	fprintf(stderr, "reader: %u multi pulls\n", rd.reads);
	assert_true(rd.reads > 0);
	assert_true(files >= 18);
	check_exact(t, EMBKV_DTYPE_BF16, p, raw);
	check_exact(th, EMBKV_DTYPE_F16, p, rraw);

	/* the replica drains and serves the same bf16 rows */
	for (int i = 0; i < 3000; i++) {
		memset(&l, 0, sizeof(l));
		if (!embkv_stats(rc, lag_cb, &l) && l.seen && !l.ms &&
		    !l.updates) {
			err = 0;
			break;
		}
		sleep_ms(20);
	}
	if (err)
		fail_msg("replica behind: %llu updates, %llu ms",
			 (unsigned long long)l.updates,
			 (unsigned long long)l.ms);
	assert_int_equal(embkv_table_open(rc, "mvb", &rt), 0);
	assert_int_equal(embkv_pull_raw(rt, n, keys, rraw, rfnd,
					EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < n; i++)
		if (!rfnd[i] || memcmp(raw + (size_t)i * DIM,
				       rraw + (size_t)i * DIM,
				       DIM * sizeof(uint16_t)))
			fail_msg("replica: key %u differs (found %u)", i + 1,
				 rfnd[i]);
	embkv_table_close(rt);
	embkv_client_destroy(rc);
	assert_int_equal(embkv_test_proc_stop(&rep, STOP_MS), 0);
	for (uint32_t j = 0; j < NPUSHER; j++) {
		embkv_table_close(pt[j]);
		embkv_table_close(ph[j]);
		embkv_client_destroy(pc[j]);
	}
	embkv_table_close(th);
	embkv_table_close(t);
	embkv_client_destroy(c);
}

static void push_same(struct embkv_table_handle *a,
		      struct embkv_table_handle *b, uint32_t round)
{
	static uint64_t keys[SKEYS];
	static float g[SKEYS * SDIM];

	for (uint32_t i = 0; i < SKEYS; i++) {
		keys[i] = i + 1;
		for (uint32_t d = 0; d < SDIM; d++)
			g[i * SDIM + d] =
				(float)((int)((i * 13 + d * 7 + round * 5) %
					      29) - 14) / 9.7f;
	}
	assert_int_equal(embkv_push(a, SKEYS, keys, g, NULL), 0);
	assert_int_equal(embkv_push(b, SKEYS, keys, g, NULL), 0);
}

static void raw_rows(struct embkv_table_handle *t, uint16_t *out)
{
	static uint64_t keys[SKEYS];
	static uint8_t fnd[SKEYS];

	for (uint32_t i = 0; i < SKEYS; i++)
		keys[i] = i + 1;
	assert_int_equal(embkv_pull_raw(t, SKEYS, keys, out, fnd,
					EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < SKEYS; i++)
		assert_int_equal(fnd[i], 1);
}

static void fp16_raw_survives_moves(void **state)
{
	struct embkv_client *c = client();
	struct embkv_table_handle *t, *ref;
	static uint16_t a[SKEYS * SDIM], b[SKEYS * SDIM];
	static float w[SKEYS * SDIM];
	static uint64_t keys[SKEYS];
	uint32_t files = 0;
	uint16_t owner[PARTS] = { UINT16_MAX };

	(void)state;
	create(c, "stf", SDIM, EMBKV_DTYPE_F16, EMBKV_OPT_ADAGRAD, 0.05f,
	       EMBKV_TABLE_STATE_BF16, EMBKV_INIT_UNIFORM);
	create(c, "str", SDIM, EMBKV_DTYPE_F16, EMBKV_OPT_ADAGRAD, 0.05f,
	       EMBKV_TABLE_STATE_BF16, EMBKV_INIT_UNIFORM);
	assert_int_equal(embkv_table_open(c, "stf", &t), 0);
	assert_int_equal(embkv_table_open(c, "str", &ref), 0);
	for (uint32_t i = 0; i < SKEYS; i++)
		keys[i] = i + 1;
	assert_int_equal(embkv_pull(t, SKEYS, keys, w, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	assert_int_equal(embkv_pull(ref, SKEYS, keys, w, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
	for (uint32_t r = 0; r < 5; r++)
		push_same(t, ref, r);
	raw_rows(t, a);
	raw_rows(ref, b);
	assert_memory_equal(a, b, sizeof(a)); /* same seed, same pushes */
	for (uint32_t k = 0; k < 2 * PARTS; k++)
		files += move_next(c, t, "stf", k % PARTS, owner);
	assert_true(files >= 2 * PARTS);
	raw_rows(t, b);
	assert_memory_equal(a, b, sizeof(a));
	/* state and versions moved too: the same pushes, the same rows */
	for (uint32_t r = 5; r < 10; r++)
		push_same(t, ref, r);
	raw_rows(t, a);
	raw_rows(ref, b);
	assert_memory_equal(a, b, sizeof(a));
	embkv_table_close(ref);
	embkv_table_close(t);
	embkv_client_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(moves_under_pushes),
		cmocka_unit_test(fp16_raw_survives_moves),
	};

	if (!embkv_test_etcd_available()) {
		fprintf(stderr, "no etcd at %s\n", EMBKV_TEST_ETCD_BIN);
		return 1;
	}
	return cmocka_run_group_tests_name("cluster dtype", tests, group_setup,
					   group_teardown);
}
