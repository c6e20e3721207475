/*
 * embkv-bench --mode gpu (issue 14): the device API against running
 * servers (--servers; tools/gpu-check.sh starts a local embkvd). One
 * table (--dim, SGD), batches of --batch keys drawn from --keys
 * (uniform, or --zipf S, so batches have duplicates). In the same run:
 *
 *   bounds      cudaMemcpyAsync pinned host <-> device, 256 MiB each way
 *   kernels     dedup, scatter, coalesce alone on a batch (device time)
 *   pull        embkv_pull (host rows) vs embkv_pull_device (rows in HBM),
 *               rows/s of the batch's keys, and the distinct fraction
 *   push        embkv_push vs embkv_push_device
 *
 * and the data path in use (staging today; the GPUDirect capability the
 * probe found is printed, its path is not wired). Device memory and the
 * kernels are reached through the plugin's own table (gpu/gpu.h), which
 * the bench finds already loaded by libembkv (by its soname).
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <embkv/embkv.h>
#include <embkv/embkv_gpu.h>

#include "gpu/gpu.h"
#include "tools/bench_common.h"
#include "tools/bench_gpu.h"

struct g_opts {
	char *servers[8];
	uint32_t nsrv, dim, batch, iters;
	uint64_t keys;
	double zipf;
	int json;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: embkv-bench --mode gpu --servers ADDR[,ADDR...] [--dim D (64)]\n"
		"         [--batch B (65536)] [--keys K (1000000)] [--iters N (20)]\n"
		"         [--zipf S (0: uniform)] [--json]\n");
}

static int parse(int argc, char **argv, struct g_opts *o)
{
	static const struct option lo[] = {
		{ "mode", required_argument, 0, 'M' },
		{ "servers", required_argument, 0, 's' },
		{ "dim", required_argument, 0, 'd' },
		{ "batch", required_argument, 0, 'b' },
		{ "keys", required_argument, 0, 'k' },
		{ "iters", required_argument, 0, 'i' },
		{ "zipf", required_argument, 0, 'z' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	char *save = NULL, *tok, *list = NULL;
	int c;

	memset(o, 0, sizeof(*o));
	o->dim = 64;
	o->batch = 65536;
	o->keys = 1000000;
	o->iters = 20;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'M': break;
		case 's': list = optarg; break;
		case 'd': o->dim = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'b': o->batch = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'k': o->keys = strtoull(optarg, NULL, 10); break;
		case 'i': o->iters = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'z': o->zipf = strtod(optarg, NULL); break;
		case 'j': o->json = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || !list || !o->dim || !o->batch || !o->keys ||
	    !o->iters) {
		usage(stderr);
		return 2;
	}
	for (tok = strtok_r(list, ",", &save); tok && o->nsrv < 8;
	     tok = strtok_r(NULL, ",", &save))
		o->servers[o->nsrv++] = tok;
	return 0;
}

/* The table libembkv loaded: $EMBKV_GPU_LIB's (the same object when
 * libembkv took it from there), else the one loaded by its soname. */
static const struct embkv_gpu_ops *plugin_ops(void)
{
	const char *env = getenv("EMBKV_GPU_LIB");
	void *h = env && *env ? dlopen(env, RTLD_NOW | RTLD_NOLOAD) : NULL;
	embkv_gpu_plugin_fn fn;

	if (!h)
		h = dlopen("libembkv_gpu.so", RTLD_NOW | RTLD_NOLOAD);
	if (!h)
		return NULL;
	fn = (embkv_gpu_plugin_fn)(uintptr_t)dlsym(h, "embkv_gpu_plugin_ops");
	return fn ? fn() : NULL;
}

#define CHECK(x) do { int rc_ = (x); if (rc_) { \
	fprintf(stderr, "embkv-bench: %s: %s (%s)\n", #x, \
		embkv_strerror(rc_), embkv_gpu_last_error()); goto out; } \
	} while (0)

int bench_gpu_main(int argc, char **argv)
{
	struct g_opts o;
	struct embkv_gpu_info info;
	struct embkv_gpu_stats st;
	const struct embkv_gpu_ops *ops;
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;
	struct embkv_table_attr ta;
	struct embkv_table_handle *t = NULL;
	struct embkv_gpu_dedup dd = { 0 };
	const size_t big = 256u << 20;
	uint64_t *idx = NULL, *keys = NULL, *d_keys = NULL;
	float *rows = NULL, *d_rows = NULL, *d_u = NULL;
	void *h_big = NULL, *d_big = NULL;
	double t0, h2d = 0, d2h = 0, k_dedup = 0, k_scatter = 0, k_coal = 0;
	double pull_h = 0, pull_d = 0, push_h = 0, push_d = 0, distinct;
	size_t rb;
	int rc, ret = 1;

	if (parse(argc, argv, &o))
		return 2;
	rc = embkv_gpu_probe(&info);
	if (rc) {
		fprintf(stderr, "embkv-bench: no GPU path: %s\n", info.why);
		return 1;
	}
	ops = plugin_ops();
	if (!ops) {
		fprintf(stderr, "embkv-bench: plugin table not found\n");
		return 1;
	}
	rb = (size_t)o.batch * o.dim * sizeof(float);
	embkv_client_attr_init(&ca);
	ca.servers = (const char **)o.servers;
	ca.nservers = o.nsrv;
	CHECK(embkv_client_create(&ca, &c));
	embkv_table_attr_init(&ta);
	snprintf(ta.name, sizeof(ta.name), "gpu_bench");
	ta.dim = o.dim;
	ta.capacity = o.keys + o.keys / 4;
	ta.opt.type = EMBKV_OPT_SGD;
	rc = embkv_table_create_remote(c, &ta);
	if (rc && rc != EMBKV_ETABLEEXISTS)
		CHECK(rc);
	CHECK(embkv_table_open(c, "gpu_bench", &t));
	idx = malloc((size_t)o.batch * o.iters * sizeof(*idx));
	keys = malloc((size_t)o.batch * o.iters * sizeof(*keys));
	rows = malloc(rb);
	if (!idx || !keys || !rows)
		CHECK(-ENOMEM);
	CHECK(bench_stream(idx, (uint64_t)o.batch * o.iters, o.keys, o.zipf, 7));
	for (size_t i = 0; i < (size_t)o.batch * o.iters; i++)
		keys[i] = bench_key_of(idx[i]);
	for (size_t i = 0; i < (size_t)o.batch * o.dim; i++)
		rows[i] = 1e-3f * (float)(i % 97);
	CHECK(ops->dev_alloc((void **)&d_keys,
			     (size_t)o.batch * o.iters * sizeof(*keys), NULL));
	CHECK(ops->h2d(d_keys, keys, (size_t)o.batch * o.iters * sizeof(*keys),
		       NULL));
	CHECK(ops->dev_alloc((void **)&d_rows, rb, NULL));
	CHECK(ops->dev_alloc((void **)&d_u, rb, NULL));
	CHECK(ops->h2d(d_rows, rows, rb, NULL));
	CHECK(ops->stream_wait(NULL));

	/* bounds: pinned <-> device */
	CHECK(ops->host_alloc(&h_big, big));
	CHECK(ops->dev_alloc(&d_big, big, NULL));
	memset(h_big, 1, big);
	CHECK(ops->h2d(d_big, h_big, big, NULL));
	CHECK(ops->stream_wait(NULL));
	t0 = bench_now_s();
	CHECK(ops->h2d(d_big, h_big, big, NULL));
	CHECK(ops->stream_wait(NULL));
	h2d = big / (bench_now_s() - t0);
	t0 = bench_now_s();
	CHECK(ops->d2h(h_big, d_big, big, NULL));
	CHECK(ops->stream_wait(NULL));
	d2h = big / (bench_now_s() - t0);

	/* kernels alone (one batch, after a warm-up) */
	for (int w = 0; w < 2; w++) {
		t0 = bench_now_s();
		CHECK(ops->dedup(d_keys, o.batch, &dd, NULL, NULL));
		k_dedup = bench_now_s() - t0;
		t0 = bench_now_s();
		CHECK(ops->scatter(&dd, d_rows, NULL, o.dim, d_u, NULL, NULL));
		CHECK(ops->stream_wait(NULL));
		k_scatter = bench_now_s() - t0;
		t0 = bench_now_s();
		CHECK(ops->coalesce(&dd, d_rows, o.dim, d_u, NULL));
		CHECK(ops->stream_wait(NULL));
		k_coal = bench_now_s() - t0;
		distinct = (double)dd.nu / o.batch;
		ops->dedup_free(&dd, NULL);
	}

	/* warm: every key inserted */
	for (uint32_t i = 0; i < o.iters; i++)
		CHECK(embkv_pull(t, o.batch, keys + (size_t)i * o.batch, rows,
				 NULL, EMBKV_MODE_TRAIN, NULL));
	t0 = bench_now_s();
	for (uint32_t i = 0; i < o.iters; i++)
		CHECK(embkv_pull(t, o.batch, keys + (size_t)i * o.batch, rows,
				 NULL, EMBKV_MODE_TRAIN, NULL));
	pull_h = (double)o.batch * o.iters / (bench_now_s() - t0);
	t0 = bench_now_s();
	for (uint32_t i = 0; i < o.iters; i++)
		CHECK(embkv_pull_device(t, o.batch, d_keys + (size_t)i * o.batch,
					d_u, NULL, EMBKV_MODE_TRAIN, NULL,
					NULL));
	CHECK(ops->stream_wait(NULL));
	pull_d = (double)o.batch * o.iters / (bench_now_s() - t0);
	t0 = bench_now_s();
	for (uint32_t i = 0; i < o.iters; i++)
		CHECK(embkv_push(t, o.batch, keys + (size_t)i * o.batch, rows,
				 NULL));
	push_h = (double)o.batch * o.iters / (bench_now_s() - t0);
	t0 = bench_now_s();
	for (uint32_t i = 0; i < o.iters; i++)
		CHECK(embkv_push_device(t, o.batch, d_keys + (size_t)i * o.batch,
					d_rows, NULL, NULL));
	push_d = (double)o.batch * o.iters / (bench_now_s() - t0);
	embkv_gpu_stats_get(&st);

	if (o.json)
		printf("{\"mode\": \"gpu\", \"device\": \"%s\", \"path\": \"%s\", "
		       "\"gpudirect_capable\": \"%s\", \"dim\": %u, "
		       "\"batch\": %u, \"keys\": %llu, \"zipf\": %g, "
		       "\"distinct_fraction\": %.4f, \"h2d_GBps\": %.2f, "
		       "\"d2h_GBps\": %.2f, \"dedup_us\": %.1f, "
		       "\"scatter_us\": %.1f, \"coalesce_us\": %.1f, "
		       "\"pull_host_rows_s\": %.0f, "
		       "\"pull_device_rows_s\": %.0f, "
		       "\"push_host_rows_s\": %.0f, "
		       "\"push_device_rows_s\": %.0f, \"chunks\": %llu}\n",
		       info.name, embkv_gpu_path_name(st.path),
		       embkv_gpu_path_name(info.capable), o.dim, o.batch,
		       (unsigned long long)o.keys, o.zipf, distinct, h2d / 1e9,
		       d2h / 1e9, k_dedup * 1e6, k_scatter * 1e6,
		       k_coal * 1e6, pull_h, pull_d, push_h, push_d,
		       (unsigned long long)st.chunks);
	else
		printf("gpu: %s (cc %d.%d), path %s; GPUDirect capable: %s (%s)\n"
		       "  bounds   H2D %.1f GB/s, D2H %.1f GB/s (pinned, 256 MiB)\n"
		       "  kernels  batch %u (%.1f%% distinct): dedup %.0f us, "
		       "scatter %.0f us, coalesce %.0f us\n"
		       "  pull     host %.2f M rows/s, device %.2f M rows/s\n"
		       "  push     host %.2f M rows/s, device %.2f M rows/s\n",
		       info.name, info.cc_major, info.cc_minor,
		       embkv_gpu_path_name(st.path),
		       embkv_gpu_path_name(info.capable), info.why, h2d / 1e9,
		       d2h / 1e9, o.batch, distinct * 100, k_dedup * 1e6,
		       k_scatter * 1e6, k_coal * 1e6, pull_h / 1e6,
		       pull_d / 1e6, push_h / 1e6, push_d / 1e6);
	ret = 0;
out:
	if (ops) {
		ops->dev_free(d_keys, NULL);
		ops->dev_free(d_rows, NULL);
		ops->dev_free(d_u, NULL);
		ops->dev_free(d_big, NULL);
		ops->host_free(h_big);
		ops->stream_wait(NULL);
	}
	free(idx);
	free(keys);
	free(rows);
	if (t)
		embkv_table_close(t);
	if (c)
		embkv_client_destroy(c);
	return ret;
}
