/*
 * embkv-bench --mode gpu (issue 14): the device API against running
 * servers (--servers; tools/gpu-check.sh starts a local embkvd). One
 * table (--dim, SGD), batches of --batch keys drawn from --keys
 * (uniform, or --zipf S, so batches have duplicates). In the same run:
 *
 *   bounds      cudaMemcpyAsync pinned host <-> device, 256 MiB each way
 *   kernels     dedup, scatter, coalesce alone on a batch (median of 5,
 *               host clock around a stream wait); dedup plus inverse of
 *               1M keys of the same distribution (dedup_1m_us)
 *   check       the fused record check and scatter (check_scatter_range,
 *               what a GPUDirect pull runs over its landed records)
 *               against a plain gather of the same rows through the
 *               inverse (scatter): gpu_scatter_vs_gather = gather time /
 *               check time (1 = the check is free)
 *   pull        embkv_pull (host rows) vs embkv_pull_device (rows in HBM),
 *               rows/s of the batch's keys, and the distinct fraction
 *               (device_pull_vs_host)
 *   push        embkv_push vs embkv_push_device (device_push_vs_host)
 *   cold        train pulls of keys no server stores yet (every key
 *               inserted: a cold step; GPUDirect lands them by
 *               PULL_LAND), host vs device (device_cold_pull_vs_host),
 *               each on a key set of its own
 *
 * and the data path in use and the GPUDirect capability the probe found.
 * Each run uses a table of its own dim (gpu_bench_d<dim>). Device memory and the
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
#include "hashing/record.h"
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
	double pull_h = 0, pull_d = 0, push_h = 0, push_d = 0, distinct = 0;
	double cold_h = 0, cold_d = 0;
	double k_gather = 0, k_check = 0, k_dedup1m = 0;
	uint64_t *h_ukeys = NULL, *d_1m = NULL;
	uint8_t *h_rec = NULL, *d_verdict = NULL;
	void *d_rec = NULL;
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
	snprintf(ta.name, sizeof(ta.name), "gpu_bench_d%u", o.dim);
	ta.dim = o.dim;
	ta.capacity = o.keys + o.keys / 4;
	ta.opt.type = EMBKV_OPT_SGD;
	rc = embkv_table_create_remote(c, &ta);
	if (rc && rc != EMBKV_ETABLEEXISTS)
		CHECK(rc);
	CHECK(embkv_table_open(c, ta.name, &t));
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

	/* kernels alone: the median of 5 after a warm-up */
	{
		double td[6], ts[6], tc[6], tg[6], tk[6], t1[6];
		size_t stride = (24 + (size_t)o.dim * sizeof(float) + 63) & ~(size_t)63;
		uint32_t nbad = 0, nu;

		CHECK(ops->dedup(d_keys, o.batch, &dd, NULL, NULL));
		nu = dd.nu;
		distinct = (double)nu / o.batch;
		/* records of the batch's distinct keys, as a GPUDirect pull
		 * lands them: sealed host-side, copied to the device */
		h_ukeys = malloc((size_t)dd.nu * sizeof(*h_ukeys));
		h_rec = calloc(dd.nu, stride);
		if (!h_ukeys || !h_rec)
			CHECK(-ENOMEM);
		CHECK(ops->d2h(h_ukeys, dd.ukeys, (size_t)dd.nu * 8, NULL));
		CHECK(ops->stream_wait(NULL));
		for (uint32_t r = 0; r < dd.nu; r++) {
			struct embkv_record *rec = (void *)(h_rec + (size_t)r * stride);

			memcpy(rec->payload, rows + (size_t)(r % o.batch) * o.dim,
			       (size_t)o.dim * sizeof(float));
			embkv_record_seal(rec, h_ukeys[r], 1 + r,
					  (size_t)o.dim * sizeof(float));
		}
		CHECK(ops->dev_alloc(&d_rec, (size_t)dd.nu * stride, NULL));
		CHECK(ops->dev_alloc((void **)&d_verdict, dd.nu, NULL));
		CHECK(ops->h2d(d_rec, h_rec, (size_t)dd.nu * stride, NULL));
		ops->dedup_free(&dd, NULL);
		for (int w = 0; w < 6; w++) {
			t0 = bench_now_s();
			CHECK(ops->dedup(d_keys, o.batch, &dd, NULL, NULL));
			td[w] = bench_now_s() - t0;
			t0 = bench_now_s();
			CHECK(ops->scatter(&dd, d_rows, NULL, o.dim, d_u, NULL,
					   NULL));
			CHECK(ops->stream_wait(NULL));
			ts[w] = tg[w] = bench_now_s() - t0;
			t0 = bench_now_s();
			CHECK(ops->check_scatter_range(&dd, 0, dd.nu, d_rec, stride,
						       (size_t)o.dim * 4,
						       EMBKV_GPU_ELEM_F32, o.dim,
						       d_u, NULL, d_verdict,
						       NULL));
			CHECK(ops->stream_wait(NULL));
			tk[w] = bench_now_s() - t0;
			t0 = bench_now_s();
			CHECK(ops->coalesce(&dd, d_rows, o.dim, d_u, NULL));
			CHECK(ops->stream_wait(NULL));
			tc[w] = bench_now_s() - t0;
			ops->dedup_free(&dd, NULL);
		}
		/* every record must have passed the check */
		CHECK(ops->d2h(h_rec, d_verdict, nu, NULL));
		CHECK(ops->stream_wait(NULL));
		for (uint32_t r = 0; r < nu; r++)
			nbad += h_rec[r] != 0;
		if (nbad) {
			fprintf(stderr, "embkv-bench: %u records failed the "
				"check\n", nbad);
			goto out;
		}
		/* dedup plus inverse of 1M keys of the same distribution */
		CHECK(ops->dev_alloc((void **)&d_1m, (size_t)(1u << 20) * 8, NULL));
		{
			uint64_t *k1 = malloc((size_t)(1u << 20) * 8);

			if (!k1 || bench_stream((uint64_t *)k1, 1u << 20, o.keys,
						o.zipf, 11)) {
				free(k1);
				CHECK(-ENOMEM);
			}
			for (size_t i = 0; i < (1u << 20); i++)
				k1[i] = bench_key_of(k1[i]);
			rc = ops->h2d(d_1m, k1, (size_t)(1u << 20) * 8, NULL);
			if (!rc)
				rc = ops->stream_wait(NULL);
			free(k1);
			CHECK(rc);
		}
		for (int w = 0; w < 6; w++) {
			t0 = bench_now_s();
			CHECK(ops->dedup(d_1m, 1u << 20, &dd, NULL, NULL));
			t1[w] = bench_now_s() - t0;
			ops->dedup_free(&dd, NULL);
		}
		/* medians of the 5 after the warm-up */
		qsort(td + 1, 5, sizeof(double), bench_cmp_double);
		qsort(ts + 1, 5, sizeof(double), bench_cmp_double);
		qsort(tc + 1, 5, sizeof(double), bench_cmp_double);
		qsort(tg + 1, 5, sizeof(double), bench_cmp_double);
		qsort(tk + 1, 5, sizeof(double), bench_cmp_double);
		qsort(t1 + 1, 5, sizeof(double), bench_cmp_double);
		k_dedup = td[3];
		k_scatter = ts[3];
		k_coal = tc[3];
		k_gather = tg[3];
		k_check = tk[3];
		k_dedup1m = t1[3];
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
	/* cold: fresh keys, a set for each side (the same distribution) */
	{
		size_t nk = (size_t)o.batch * o.iters;

		for (size_t i = 0; i < nk; i++)
			keys[i] ^= 0x5bd1e9955bd1e995ull;
		t0 = bench_now_s();
		for (uint32_t i = 0; i < o.iters; i++)
			CHECK(embkv_pull(t, o.batch,
					 keys + (size_t)i * o.batch, rows,
					 NULL, EMBKV_MODE_TRAIN, NULL));
		cold_h = (double)nk / (bench_now_s() - t0);
		for (size_t i = 0; i < nk; i++)
			keys[i] ^= 0x5bd1e9955bd1e995ull ^
				   0x27d4eb2f165667c5ull;
		CHECK(ops->h2d(d_keys, keys, nk * sizeof(*keys), NULL));
		CHECK(ops->stream_wait(NULL));
		t0 = bench_now_s();
		for (uint32_t i = 0; i < o.iters; i++)
			CHECK(embkv_pull_device(t, o.batch,
						d_keys + (size_t)i * o.batch,
						d_u, NULL, EMBKV_MODE_TRAIN,
						NULL, NULL));
		CHECK(ops->stream_wait(NULL));
		cold_d = (double)nk / (bench_now_s() - t0);
	}
	embkv_gpu_stats_get(&st);

	if (o.json)
		printf("{\"mode\": \"gpu\", \"device\": \"%s\", \"path\": \"%s\", "
		       "\"gpudirect_capable\": \"%s\", \"dim\": %u, "
		       "\"batch\": %u, \"keys\": %llu, \"zipf\": %g, "
		       "\"distinct_fraction\": %.4f, \"h2d_GBps\": %.2f, "
		       "\"d2h_GBps\": %.2f, \"dedup_us\": %.1f, "
		       "\"scatter_us\": %.1f, \"coalesce_us\": %.1f, "
		       "\"gather_us\": %.1f, \"check_scatter_us\": %.1f, "
		       "\"gpu_scatter_vs_gather\": %.3f, "
		       "\"dedup_1m_us\": %.1f, "
		       "\"pull_host_rows_s\": %.0f, "
		       "\"pull_device_rows_s\": %.0f, "
		       "\"device_pull_vs_host\": %.3f, "
		       "\"push_host_rows_s\": %.0f, "
		       "\"push_device_rows_s\": %.0f, "
		       "\"device_push_vs_host\": %.3f, "
		       "\"cold_pull_host_rows_s\": %.0f, "
		       "\"cold_pull_device_rows_s\": %.0f, "
		       "\"device_cold_pull_vs_host\": %.3f, \"chunks\": %llu, "
		       "\"direct_keys\": %llu, \"direct_landed\": %llu, "
		       "\"direct_pushed\": %llu, \"direct_rest\": %llu}\n",
		       info.name, embkv_gpu_path_name(st.path),
		       embkv_gpu_path_name(info.capable), o.dim, o.batch,
		       (unsigned long long)o.keys, o.zipf, distinct, h2d / 1e9,
		       d2h / 1e9, k_dedup * 1e6, k_scatter * 1e6,
		       k_coal * 1e6, k_gather * 1e6, k_check * 1e6,
		       k_check > 0 ? k_gather / k_check : 0, k_dedup1m * 1e6,
		       pull_h, pull_d, pull_h > 0 ? pull_d / pull_h : 0,
		       push_h, push_d, push_h > 0 ? push_d / push_h : 0,
		       cold_h, cold_d, cold_h > 0 ? cold_d / cold_h : 0,
		       (unsigned long long)st.chunks,
		       (unsigned long long)st.direct_keys,
		       (unsigned long long)st.direct_landed,
		       (unsigned long long)st.direct_pushed,
		       (unsigned long long)st.direct_rest);
	else
		printf("gpu: %s (cc %d.%d), path %s; GPUDirect capable: %s (%s)\n"
		       "  bounds   H2D %.1f GB/s, D2H %.1f GB/s (pinned, 256 MiB)\n"
		       "  kernels  batch %u (%.1f%% distinct): dedup %.0f us, "
		       "scatter %.0f us, coalesce %.0f us; dedup of 1M keys "
		       "%.0f us\n"
		       "  check    fused record check + scatter %.0f us vs "
		       "plain gather %.0f us: gpu_scatter_vs_gather %.2f\n"
		       "  pull     host %.2f M rows/s, device %.2f M rows/s "
		       "(device_pull_vs_host %.2f)\n"
		       "  push     host %.2f M rows/s, device %.2f M rows/s "
		       "(device_push_vs_host %.2f)\n"
		       "  cold     host %.2f M rows/s, device %.2f M rows/s "
		       "(device_cold_pull_vs_host %.2f); GPUDirect keys: "
		       "%llu READ, %llu landed, %llu pushed, %llu staged\n",
		       info.name, info.cc_major, info.cc_minor,
		       embkv_gpu_path_name(st.path),
		       embkv_gpu_path_name(info.capable), info.why, h2d / 1e9,
		       d2h / 1e9, o.batch, distinct * 100, k_dedup * 1e6,
		       k_scatter * 1e6, k_coal * 1e6, k_dedup1m * 1e6,
		       k_check * 1e6, k_gather * 1e6,
		       k_check > 0 ? k_gather / k_check : 0, pull_h / 1e6,
		       pull_d / 1e6, pull_h > 0 ? pull_d / pull_h : 0,
		       push_h / 1e6, push_d / 1e6,
		       push_h > 0 ? push_d / push_h : 0, cold_h / 1e6,
		       cold_d / 1e6, cold_h > 0 ? cold_d / cold_h : 0,
		       (unsigned long long)st.direct_keys,
		       (unsigned long long)st.direct_landed,
		       (unsigned long long)st.direct_pushed,
		       (unsigned long long)st.direct_rest);
	ret = 0;
out:
	if (ops) {
		ops->dev_free(d_keys, NULL);
		ops->dev_free(d_rows, NULL);
		ops->dev_free(d_u, NULL);
		ops->dev_free(d_big, NULL);
		ops->dev_free(d_rec, NULL);
		ops->dev_free(d_verdict, NULL);
		ops->dev_free(d_1m, NULL);
		ops->host_free(h_big);
		ops->stream_wait(NULL);
	}
	free(idx);
	free(keys);
	free(rows);
	free(h_ukeys);
	free(h_rec);
	if (t)
		embkv_table_close(t);
	if (c)
		embkv_client_destroy(c);
	return ret;
}
