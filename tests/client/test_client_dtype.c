/*
 * 16-bit tables (fp16, bf16) end to end against two real embkvd processes
 * (TCP): assign, then pull through every path a row can take out of a
 * table, and each gives the values rounded once, the same way:
 * - embkv_pull (RPC): the assigned floats rounded to nearest, widened;
 * - embkv_pull_raw: the stored 16-bit rows, the same bits;
 * - embkv_scan (export's path): the same stored rows;
 * - embkvctl export: the same floats (fp32 file), and with --fp16 from an
 *   fp16 table the stored bits themselves.
 * Also: push with stochastic rounding gives the same rows on two tables
 * of the same seed; infer-mode defaults come as the caller's type; a
 * table's attributes (dtype, rounding, bf16 state) survive the wire.
 * Wire bytes: a pull of a dim-64 bf16 table moves at most 1.25 x the
 * stored row (128 bytes) per row over TCP, counted by the servers'
 * bytes_in/bytes_out. (One-sided pulls of 16-bit rows: tests/rdma/.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"

#define NSRV 2u
#define DIM 24u
#define PARTS 8u
#define NKEYS 1500u
#define READY_MS 10000u
#define STOP_MS 10000u

static const char *const extra[] = { "--threads", "2", NULL };

struct state {
	struct embkv_test_cluster cl;
	struct embkv_client *c;
};

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
	return embkv_client_create(&ca, &s->c) ? -1 : 0;
}

static int teardown(void **state)
{
	struct state *s = *state;

	embkv_client_destroy(s->c);
	embkv_test_cluster_stop(&s->cl, STOP_MS);
	free(s);
	return 0;
}

static float val(uint32_t i, uint32_t k)
{
	/* wide range, and values between 16-bit neighbours */
	return (float)(sin(0.7 * i + 0.3 * k) * pow(2.0, (double)(i % 9) - 4));
}

static struct embkv_table_handle *make(struct state *s, const char *name,
				       enum embkv_dtype dt, uint32_t flags,
				       enum embkv_optimizer o)
{
	struct embkv_table_attr a;
	struct embkv_table_handle *t;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = DIM;
	a.dtype = dt;
	a.partitions = PARTS;
	a.capacity = 100000;
	a.flags = flags;
	a.opt.type = o;
	a.opt.lr = 0.5f;
	a.init.seed = 3;
	assert_int_equal(embkv_table_create_remote(s->c, &a), 0);
	assert_int_equal(embkv_table_open(s->c, name, &t), 0);
	assert_int_equal(embkv_table_attr_get(t)->dtype, dt);
	assert_int_equal(embkv_table_attr_get(t)->flags, flags);
	return t;
}

/* Runs embkvctl export NAME FILE [--fp16]; returns the values it wrote
 * (rows x DIM of dtype), keys into *keys, the row count into *rows. */
static void *export_file(struct state *s, const char *name, int fp16,
			 uint64_t **keys, uint64_t *rows)
{
	char path[] = "/tmp/test_client_dtypeXXXXXX";
	int fd = mkstemp(path), status;
	uint8_t hdr[64];
	size_t es = fp16 ? 2 : 4, vbytes;
	void *vals;
	pid_t pid;
	FILE *f;

	assert_true(fd >= 0);
	close(fd);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(EMBKVCTL_PATH, EMBKVCTL_PATH, "--servers", s->cl.addrs[0],
		      "export", name, path, fp16 ? "--fp16" : NULL,
		      (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fread(hdr, 1, sizeof(hdr), f), sizeof(hdr));
	assert_memory_equal(hdr, "EMBKVEX1", 8);
	assert_int_equal(hdr[12], fp16 ? 1 : 0);
	assert_int_equal(hdr[16], DIM);
	memcpy(rows, hdr + 24, 8);
	*keys = malloc(*rows * 8);
	vbytes = *rows * DIM * es;
	vals = malloc(vbytes);
	assert_true(*keys && vals);
	assert_int_equal(fread(*keys, 8, *rows, f), *rows);
	assert_int_equal(fread(vals, 1, vbytes, f), vbytes);
	fclose(f);
	unlink(path);
	return vals;
}

static uint32_t index_of(const uint64_t *keys, uint32_t n, uint64_t key)
{
	for (uint32_t i = 0; i < n; i++)
		if (keys[i] == key)
			return i;
	fail_msg("key %llu not found", (unsigned long long)key);
	return 0;
}

static void round_trips(struct state *s, enum embkv_dtype dt, const char *name)
{
	struct embkv_table_handle *t = make(s, name, dt, 0, EMBKV_OPT_SGD);
	uint64_t keys[NKEYS], *ekeys, erows, total = 0;
	size_t row16 = DIM * 2;
	float *vals = malloc(NKEYS * DIM * sizeof(float));
	float *want = malloc(NKEYS * DIM * sizeof(float));
	float *got = malloc(NKEYS * DIM * sizeof(float));
	uint16_t *raw = malloc(NKEYS * row16), *stored = malloc(NKEYS * row16);
	uint16_t *page = malloc(NKEYS * row16);
	uint64_t *pkeys = malloc(NKEYS * 8);
	uint8_t found[NKEYS];
	float *ev;
	uint16_t *eh;

	assert_true(vals && want && got && raw && stored && page && pkeys);
	for (uint32_t i = 0; i < NKEYS; i++) {
		keys[i] = 0x9e3779b97f4a7c15ull * (i + 1);
		for (uint32_t k = 0; k < DIM; k++)
			vals[i * DIM + k] = val(i, k);
	}
	/* rounded once, to nearest: what every path must give */
	embkv_dtype_from_f32(dt, vals, stored, (size_t)NKEYS * DIM);
	embkv_dtype_to_f32(dt, stored, want, (size_t)NKEYS * DIM);
	assert_int_equal(embkv_assign(t, NKEYS, keys, vals), 0);

	memset(got, 0xff, NKEYS * DIM * sizeof(float));
	assert_int_equal(embkv_pull(t, NKEYS, keys, got, found,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_int_equal(found[i], 1);
	assert_memory_equal(got, want, NKEYS * DIM * sizeof(float));

	memset(raw, 0xff, NKEYS * row16);
	assert_int_equal(embkv_pull_raw(t, NKEYS, keys, raw, found,
					EMBKV_MODE_INFER, NULL), 0);
	assert_memory_equal(raw, stored, NKEYS * row16);

	for (uint32_t p = 0; p < PARTS; p++) {
		uint64_t cur = 0;

		while (cur != EMBKV_SCAN_END) {
			uint32_t n = 0;

			assert_int_equal(embkv_scan(t, p, &cur, NKEYS, pkeys,
						    page, &n), 0);
			for (uint32_t j = 0; j < n; j++) {
				uint32_t i = index_of(keys, NKEYS, pkeys[j]);

				assert_memory_equal(page + j * DIM,
						    stored + i * DIM, row16);
			}
			total += n;
		}
	}
	assert_int_equal(total, NKEYS);

	ev = export_file(s, name, 0, &ekeys, &erows);
	assert_int_equal(erows, NKEYS);
	for (uint32_t j = 0; j < NKEYS; j++) {
		uint32_t i = index_of(keys, NKEYS, ekeys[j]);

		assert_memory_equal(ev + j * DIM, want + i * DIM,
				    DIM * sizeof(float));
	}
	free(ev);
	free(ekeys);
	if (dt == EMBKV_DTYPE_F16) { /* fp16 file of an fp16 table: exact */
		eh = export_file(s, name, 1, &ekeys, &erows);
		for (uint32_t j = 0; j < NKEYS; j++) {
			uint32_t i = index_of(keys, NKEYS, ekeys[j]);

			assert_memory_equal(eh + j * DIM, stored + i * DIM,
					    row16);
		}
		free(eh);
		free(ekeys);
	}

	/* infer-mode defaults are the caller's: floats for pull, stored
	 * rows for pull_raw */
	{
		uint64_t miss = 42;
		float dflt[DIM], out[DIM];
		uint16_t dflt16[DIM], out16[DIM];

		for (uint32_t k = 0; k < DIM; k++) {
			dflt[k] = 0.1f * (float)k + 0.01f;
			dflt16[k] = (uint16_t)(0x3c00 + k);
		}
		assert_int_equal(embkv_pull(t, 1, &miss, out, found,
					    EMBKV_MODE_INFER, dflt), 0);
		assert_int_equal(found[0], 0);
		assert_memory_equal(out, dflt, sizeof(dflt));
		assert_int_equal(embkv_pull_raw(t, 1, &miss, out16, found,
						EMBKV_MODE_INFER, dflt16), 0);
		assert_memory_equal(out16, dflt16, sizeof(dflt16));
	}
	embkv_table_close(t);
	assert_int_equal(embkv_table_drop_remote(s->c, name), 0);
	free(vals);
	free(want);
	free(got);
	free(raw);
	free(stored);
	free(page);
	free(pkeys);
}

static void test_round_trips_f16(void **state)
{
	round_trips(*state, EMBKV_DTYPE_F16, "rt16");
}

static void test_round_trips_bf16(void **state)
{
	round_trips(*state, EMBKV_DTYPE_BF16, "rtbf16");
}

/* Two bf16 tables of the same seed, the same pushes: the same bits
 * (stochastic rounding is deterministic); a third rounding to nearest
 * differs; Adam with bf16 state trains over the wire. */
static void test_push_stochastic(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *a = make(s, "sra", EMBKV_DTYPE_BF16, 0,
					    EMBKV_OPT_SGD);
	struct embkv_table_handle *b = make(s, "srb", EMBKV_DTYPE_BF16, 0,
					    EMBKV_OPT_SGD);
	struct embkv_table_handle *n = make(s, "srn", EMBKV_DTYPE_BF16,
					    EMBKV_TABLE_ROUND_NEAREST,
					    EMBKV_OPT_SGD);
	struct embkv_table_handle *m = make(s, "adam16", EMBKV_DTYPE_BF16,
					    EMBKV_TABLE_STATE_BF16,
					    EMBKV_OPT_ADAM);
	enum { K = 200 };
	uint64_t keys[K];
	float g[K * DIM], before[K * DIM], after[K * DIM];
	uint16_t ra[K * DIM], rb[K * DIM], rn[K * DIM];
	uint32_t applied;

	for (uint32_t i = 0; i < K; i++) {
		keys[i] = 1000 + i;
		for (uint32_t k = 0; k < DIM; k++)
			g[i * DIM + k] = 0.003f * val(i, k);
	}
	assert_int_equal(embkv_pull(a, K, keys, before, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
	embkv_pull(b, K, keys, after, NULL, EMBKV_MODE_TRAIN, NULL);
	embkv_pull(n, K, keys, after, NULL, EMBKV_MODE_TRAIN, NULL);
	embkv_pull(m, K, keys, after, NULL, EMBKV_MODE_TRAIN, NULL);
	for (int r = 0; r < 5; r++) {
		assert_int_equal(embkv_push(a, K, keys, g, &applied), 0);
		assert_int_equal(applied, K);
		embkv_push(b, K, keys, g, NULL);
		embkv_push(n, K, keys, g, NULL);
		assert_int_equal(embkv_push(m, K, keys, g, &applied), 0);
		assert_int_equal(applied, K);
	}
	embkv_pull_raw(a, K, keys, ra, NULL, EMBKV_MODE_INFER, NULL);
	embkv_pull_raw(b, K, keys, rb, NULL, EMBKV_MODE_INFER, NULL);
	embkv_pull_raw(n, K, keys, rn, NULL, EMBKV_MODE_INFER, NULL);
	assert_memory_equal(ra, rb, sizeof(ra));
	assert_memory_not_equal(ra, rn, sizeof(ra));
	embkv_pull(m, K, keys, after, NULL, EMBKV_MODE_INFER, NULL);
	assert_memory_not_equal(before, after, sizeof(after));
	embkv_table_close(a);
	embkv_table_close(b);
	embkv_table_close(n);
	embkv_table_close(m);
}

static void sum_bytes(void *ctx, uint32_t server, const char *table,
		      const char *name, uint64_t value)
{
	uint64_t *sum = ctx;

	(void)server;
	if (!table && (!strcmp(name, "bytes_in") || !strcmp(name, "bytes_out")))
		*sum += value;
}

/* TCP bytes per pulled row of a dim-64 bf16 table (the servers' byte
 * counters around one 8192-key pull, less what the STATS request itself
 * moved, measured the same way with no pull between). */
static void test_wire_bytes(void **state)
{
	struct state *s = *state;
	struct embkv_table_attr a;
	struct embkv_table_handle *t;
	enum { K = 8192, D = 64 };
	uint64_t *keys = malloc(K * 8), b0 = 0, b1 = 0, b2 = 0;
	float *out = malloc((size_t)K * D * sizeof(float));
	double per_row, stats_cost;

	assert_true(keys && out);
	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "wire16");
	a.dim = D;
	a.dtype = EMBKV_DTYPE_BF16;
	a.partitions = PARTS;
	a.capacity = 100000;
	assert_int_equal(embkv_table_create_remote(s->c, &a), 0);
	assert_int_equal(embkv_table_open(s->c, "wire16", &t), 0);
	for (uint32_t i = 0; i < K; i++)
		keys[i] = 7 + 13 * (uint64_t)i;
	assert_int_equal(embkv_pull(t, K, keys, out, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	assert_int_equal(embkv_stats(s->c, sum_bytes, &b0), 0);
	assert_int_equal(embkv_stats(s->c, sum_bytes, &b1), 0);
	stats_cost = (double)(b1 - b0);
	assert_int_equal(embkv_pull(t, K, keys, out, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_int_equal(embkv_stats(s->c, sum_bytes, &b2), 0);
	per_row = ((double)(b2 - b1) - stats_cost) / K;
	print_message("tcp bytes per pulled bf16 dim-64 row: %.2f (stored "
		      "row 128, %.3fx)\n", per_row, per_row / 128);
	assert_true(per_row > 128);
	assert_true(per_row <= 1.25 * 128);
	embkv_table_close(t);
	free(keys);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips_f16),
		cmocka_unit_test(test_round_trips_bf16),
		cmocka_unit_test(test_push_stochastic),
		cmocka_unit_test(test_wire_bytes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
