/*
 * The device API end to end on a GPU, against two in-process servers
 * (tests/client/fake_server: real TCP, the real store): embkv_pull_device
 * must equal embkv_pull of the same keys bit for bit (train and infer
 * mode, found flags, a device default row, several staging chunks), and
 * embkv_push_device must leave a table exactly as embkv_push of the same
 * keys and gradients leaves a twin table (duplicates up to a chunk per
 * key); the async forms give the same. Device memory comes from the
 * plugin's table, so this test needs no CUDA runtime of its own. Exits 77
 * ("no CUDA device: skipped") where the plugin finds no device.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <embkv/embkv_gpu.h>

#include "gpu/gpu.h"
#include "tests/client/fake_server.h"

static const struct embkv_gpu_ops *ops;

struct env {
	struct fake_cluster *fc;
	struct embkv_client *c;
};

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint64_t next64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void *dev_copy(const void *h, size_t bytes)
{
	void *d = NULL;

	assert_int_equal(ops->dev_alloc(&d, bytes, NULL), 0);
	if (h)
		assert_int_equal(ops->h2d(d, h, bytes, NULL), 0);
	assert_int_equal(ops->stream_wait(NULL), 0);
	return d;
}

static void host_copy(void *h, const void *d, size_t bytes)
{
	assert_int_equal(ops->d2h(h, d, bytes, NULL), 0);
	assert_int_equal(ops->stream_wait(NULL), 0);
}

static void dev_free(void *d)
{
	ops->dev_free(d, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
}

static struct embkv_table_handle *table(struct env *e, const char *name,
					uint32_t dim)
{
	struct embkv_table_attr a;
	struct embkv_table_handle *t;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = dim;
	a.partitions = 8;
	a.capacity = 1u << 17;
	a.opt.type = EMBKV_OPT_ADAGRAD;
	a.opt.lr = 0.25f;
	a.init.type = EMBKV_INIT_UNIFORM;
	a.init.a = -1;
	a.init.b = 1;
	a.init.seed = 11;
	a.admit_after = 1;
	assert_int_equal(embkv_table_create_remote(e->c, &a), 0);
	assert_int_equal(embkv_table_open(e->c, name, &t), 0);
	return t;
}

/* keys with duplicates: each of `distinct` keys 1 to 40 times */
static uint64_t *make_keys(uint32_t n, uint32_t distinct)
{
	uint64_t *k = malloc(n * sizeof(*k));

	for (uint32_t i = 0; i < n; i++)
		k[i] = (next64() % distinct) * 0x9E3779B97F4A7C15ull + 1;
	return k;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct embkv_client_attr a;
	const char *servers[2];

	e->fc = fake_cluster_start(2, NULL);
	servers[0] = fake_cluster_addr(e->fc, 0);
	servers[1] = fake_cluster_addr(e->fc, 1);
	embkv_client_attr_init(&a);
	a.servers = servers;
	a.nservers = 2;
	assert_int_equal(embkv_client_create(&a, &e->c), 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	embkv_client_destroy(e->c);
	fake_cluster_stop(e->fc);
	free(e);
	return 0;
}

static void pull_equal(struct embkv_table_handle *t, uint32_t n,
		       const uint64_t *keys, uint32_t dim,
		       enum embkv_mode mode, const float *dflt, int async)
{
	size_t rb = (size_t)n * dim * sizeof(float);
	float *want = malloc(rb), *got = malloc(rb), *d_out, *d_dflt = NULL;
	uint8_t *wf = malloc(n), *gf = malloc(n), *d_found;
	uint64_t *d_keys = dev_copy(keys, n * sizeof(*keys));

	d_out = dev_copy(NULL, rb);
	d_found = dev_copy(NULL, n);
	if (dflt)
		d_dflt = dev_copy(dflt, dim * sizeof(float));
	/* train mode inserts: insert first, so that both pulls below see
	 * the same stored rows (and found flags) */
	if (mode == EMBKV_MODE_TRAIN)
		assert_int_equal(embkv_pull(t, n, keys, want, wf, mode, dflt),
				 0);
	if (async) {
		struct embkv_gpu_op *op = (struct embkv_gpu_op *)1;

		/* cudaStreamPerThread would be the worker's stream: refused */
		assert_int_equal(embkv_pull_device_async(t, n, d_keys, d_out,
							 d_found, mode, d_dflt,
							 (void *)0x2, &op),
				 -EINVAL);
		assert_null(op);
		assert_int_equal(embkv_pull_device_async(t, n, d_keys, d_out,
							 d_found, mode, d_dflt,
							 NULL, &op), 0);
		assert_int_equal(embkv_gpu_op_wait(op, NULL), 0);
	} else {
		assert_int_equal(embkv_pull_device(t, n, d_keys, d_out, d_found,
						   mode, d_dflt, NULL), 0);
	}
	host_copy(got, d_out, rb);
	host_copy(gf, d_found, n);
	assert_int_equal(embkv_pull(t, n, keys, want, wf, mode, dflt), 0);
	assert_memory_equal(got, want, rb);
	assert_memory_equal(gf, wf, n);
	dev_free(d_keys);
	dev_free(d_out);
	dev_free(d_found);
	if (d_dflt)
		dev_free(d_dflt);
	free(want);
	free(got);
	free(wf);
	free(gf);
}

static void test_pull(void **state)
{
	struct env *e = *state;
	struct embkv_table_handle *t = table(e, "pull", 24);
	struct embkv_table_handle *wide = table(e, "wide", 512);
	uint64_t *k = make_keys(20000, 3000);
	float dflt[24];
	struct embkv_gpu_stats st;

	for (int c = 0; c < 24; c++)
		dflt[c] = (float)c - 0.5f;
	pull_equal(t, 1, k, 24, EMBKV_MODE_TRAIN, NULL, 0);
	pull_equal(t, 20000, k, 24, EMBKV_MODE_TRAIN, NULL, 0);
	pull_equal(t, 20000, k, 24, EMBKV_MODE_TRAIN, NULL, 1);
	/* infer: some stored (above), most not: the default row */
	free(k);
	k = make_keys(20000, 9000);
	pull_equal(t, 20000, k, 24, EMBKV_MODE_INFER, dflt, 0);
	pull_equal(t, 20000, k, 24, EMBKV_MODE_INFER, NULL, 0);
	/* 512 floats a row: 4096 rows a chunk, so several chunks */
	free(k);
	k = make_keys(30000, 15000);
	pull_equal(wide, 30000, k, 512, EMBKV_MODE_TRAIN, NULL, 0);
	/* the narrow table again: the staging buffers made for the wide
	 * one hold 4096 rows of found flags, fewer than its chunk */
	free(k);
	k = make_keys(20000, 9000);
	pull_equal(t, 20000, k, 24, EMBKV_MODE_INFER, dflt, 0);
	embkv_gpu_stats_get(&st);
	/* the probe's path (staging without an RDMA device that can
	 * register device memory); over tcp:// every pull stages anyway */
	assert_true(st.path >= EMBKV_GPU_PATH_STAGING &&
		    st.path <= EMBKV_GPU_PATH_PEERMEM);
	assert_int_equal(st.direct_keys, 0);
	assert_true(st.pulls >= 7);
	assert_true(st.distinct_keys < st.keys);
	assert_true(st.chunks >= 9);
	free(k);
	embkv_table_close(t);
	embkv_table_close(wide);
}

static void push_equal(struct env *e, uint32_t dim, uint32_t n,
		       uint32_t distinct)
{
	char na[32], nb[32];
	struct embkv_table_handle *a, *b;
	uint64_t *k = make_keys(n, distinct);
	size_t gb = (size_t)n * dim * sizeof(float);
	float *g = malloc(gb), *ra = malloc(gb), *rb = malloc(gb);
	float *d_g = NULL;
	uint64_t *d_k = dev_copy(k, n * sizeof(*k));
	uint32_t app_a = 0, app_b = 0;

	snprintf(na, sizeof(na), "push_dev_%u", dim);
	snprintf(nb, sizeof(nb), "push_host_%u", dim);
	a = table(e, na, dim);
	b = table(e, nb, dim);
	for (size_t i = 0; i < (size_t)n * dim; i++)
		g[i] = (float)((int64_t)(next64() % 2001) - 1000) / 997.0f;
	d_g = dev_copy(g, gb);
	/* both tables hold the same rows of every key first */
	assert_int_equal(embkv_pull(a, n, k, ra, NULL, EMBKV_MODE_TRAIN, NULL),
			 0);
	assert_int_equal(embkv_assign(b, n, k, ra), 0);
	for (int round = 0; round < 3; round++) {
		if (round == 2) {
			struct embkv_gpu_op *op;

			assert_int_equal(embkv_push_device_async(a, n, d_k, d_g,
								 NULL, &op), 0);
			assert_int_equal(embkv_gpu_op_wait(op, &app_a), 0);
		} else {
			assert_int_equal(embkv_push_device(a, n, d_k, d_g,
							   &app_a, NULL), 0);
		}
		assert_int_equal(embkv_push(b, n, k, g, &app_b), 0);
		assert_int_equal(app_a, app_b);
		assert_true(app_a > distinct / 2);
	}
	assert_int_equal(embkv_pull(a, n, k, ra, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_int_equal(embkv_pull(b, n, k, rb, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_memory_equal(ra, rb, gb);
	dev_free(d_k);
	dev_free(d_g);
	free(k);
	free(g);
	free(ra);
	free(rb);
	embkv_table_close(a);
	embkv_table_close(b);
}

/* n = 0 is a no-op; missing arrays are refused; found may be NULL. */
static void test_edges(void **state)
{
	struct env *e = *state;
	struct embkv_table_handle *t = table(e, "edges", 8);
	uint64_t keys[3] = { 5, 5, 9 };
	uint64_t *d_keys = dev_copy(keys, sizeof(keys));
	float *d_out = dev_copy(NULL, 3 * 8 * sizeof(float));
	float want[24], got[24];
	uint32_t applied = 99;

	assert_int_equal(embkv_pull_device(t, 0, NULL, NULL, NULL,
					   EMBKV_MODE_TRAIN, NULL, NULL), 0);
	assert_int_equal(embkv_push_device(t, 0, NULL, NULL, &applied, NULL),
			 0);
	assert_int_equal(applied, 0);
	assert_int_equal(embkv_pull_device(t, 3, NULL, d_out, NULL,
					   EMBKV_MODE_TRAIN, NULL, NULL),
			 -EINVAL);
	assert_int_equal(embkv_pull_device(NULL, 3, d_keys, d_out, NULL,
					   EMBKV_MODE_TRAIN, NULL, NULL),
			 -EINVAL);
	assert_int_equal(embkv_push_device(t, 3, d_keys, NULL, NULL, NULL),
			 -EINVAL);
	assert_int_equal(embkv_pull(t, 3, keys, want, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	assert_int_equal(embkv_pull_device(t, 3, d_keys, d_out, NULL,
					   EMBKV_MODE_TRAIN, NULL, NULL), 0);
	host_copy(got, d_out, sizeof(got));
	assert_memory_equal(got, want, sizeof(got));
	assert_memory_equal(got, got + 8, 8 * sizeof(float)); /* key 5 twice */
	dev_free(d_keys);
	dev_free(d_out);
	embkv_table_close(t);
}

static void test_push(void **state)
{
	struct env *e = *state;
	struct embkv_gpu_stats before, after;

	push_equal(e, 40, 30000, 2000);   /* ~15 duplicates a key */
	embkv_gpu_stats_get(&before);
	/* 512 floats a row: 4096 rows a chunk, ~11000 distinct: 3 chunks */
	push_equal(e, 512, 30000, 15000);
	embkv_gpu_stats_get(&after);
	assert_true(after.chunks - before.chunks >= 9);
	assert_int_equal(after.pushes - before.pushes, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pull, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edges, setup, teardown),
	};
	struct embkv_gpu_info info;
	int rc = embkv_gpu_probe(&info);

	ops = embkv_gpu_plugin_ops();
	if (rc == -ENODEV) {
		printf("no CUDA device: skipped (%s)\n", info.why);
		return 77;
	}
	if (rc) {
		printf("the GPU plugin did not load: %s\n", info.why);
		return 1;
	}
	printf("device %d: %s (cc %d.%d), path %s, capable of %s (%s)\n",
	       info.device, info.name, info.cc_major, info.cc_minor,
	       embkv_gpu_path_name(info.path),
	       embkv_gpu_path_name(info.capable), info.why);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
