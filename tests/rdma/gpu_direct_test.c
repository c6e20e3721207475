/*
 * embkv_rdma_gpu_direct_{probe,equiv,torn,half,extra,noreg,kill,land,
 * landtorn,push}: the GPUDirect pull and push
 * (client/gpu.c pull_direct, client/onesided.c embkv_onesided_land)
 * against real embkvd processes on rdma://, in the soft-RoCE VM.
 *
 * No machine here has a GPU next to an RDMA NIC, so the device is the
 * host stand-in plugin (tests/gpu/host_plugin.c: "device" memory is host
 * memory, the kernels are their host references) and EMBKV_GPU_PATH=
 * peermem makes client/gpu.c register the stand-in's device slab the way
 * nvidia-peermem memory is registered (ibv_reg_mr on the device pointer).
 * Everything else is the real flow: the slab registered once per
 * connection through the transport's read_region, one-sided READs of the
 * records landing in it, the record check and scatter run over the slab
 * (check_scatter_range), re-reads of what failed, the keys left over
 * through staging and scatter_list.
 *
 *   probe: the GPUDirect ladder on soft-RoCE: a device that claims
 *          dma-buf and GPUDirect support still gets staging (rxe has no
 *          dma-buf registration, no nvidia-peermem here), and says why;
 *          with the stand-in and no override the path in use is staging.
 *   equiv: 2 servers, 40k distinct keys as 100k with duplicates: the
 *          device pull equals embkv_pull by RPC bit for bit (rows and
 *          found flags), cold and warm (warm: the location cache serves
 *          every key, one READ each), every key served one-sided into the
 *          slab; missing keys (infer: the device default row, found 0;
 *          train: inserted) go through staging and scatter_list; keys
 *          erased and inserted again after their locations were cached
 *          come back with their new rows.
 *   torn:  EMBKV_GPU_HOST_TEAR=64: the stand-in check flips a byte of the
 *          first 64 records it judges; they must be read again (torn
 *          re-reads counted) and the result still equal the RPC pull.
 *   half:  bf16 and fp16 tables (dim 64): the device pull's floats equal
 *          embkv_pull's; a cached key's READ is 24 + 2 x 64 bytes.
 *
 *   extra: odd 16-bit dims (fp16 3, bf16 5) and fp32 dim 4096, whose 150
 *          keys need three ranges of a 1 MiB slab (EMBKV_GPU_SLAB_MB=1,
 *          as land and push ask too): equal to RPC pulls, all READ.
 *   noreg: EMBKV_GPU_PATH=dmabuf, which the stand-in's memory cannot
 *          take: no connection registers the slab (the failure is kept,
 *          not retried); every key goes through staging, still READ
 *          one-sided into host memory by the host path, rows equal.
 *
 *   push:  the device push (client/gpu.c push_direct): coalesced rows
 *          gathered into the slab and sent from there (one SEND a frame
 *          gathering keys from host memory and rows from the slab): the
 *          rows equal a host push's into a twin table bit for bit (dim 16
 *          with duplicates and a hot key; dim 1024); noreg also pushes:
 *          nothing leaves the unregistrable slab, every key is pushed
 *          from host memory exactly once.
 *   land:  missing keys and inserts pulled by PULL_LAND: their servers
 *          write the records into the slab (fp32 dims 32 and 4096 over
 *          many frames, bf16 dim 5, admission's initializer rows),
 *          found flags as the host pull's; landtorn: landed records torn
 *          by the stand-in go through staging, found 0 kept.
 *   kill:  a server killed after its keys' locations were cached: a pull
 *          that needs it fails in bounded time (connections broken
 *          mid-landing), the other server's keys still land in the slab.
 *
 * usage: embkv_rdma_gpu_direct MODE. Prints PASS/FAIL lines; exit 0 when
 * all pass.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include <embkv/embkv_gpu.h>
#include "client/batch.h"
#include "client/client.h"
#include "client/gpu_direct.h"
#include "hashing/hash.h"
#include "tests/rdma/rdma_test.h"

/* A table on the test servers: lr 0.1, normal init. */
static int table(struct embkv_client *c, const char *name, uint32_t dim,
		 enum embkv_dtype dtype, uint64_t cap)
{
	return table_create(c, name, dim, cap, dtype, EMBKV_INIT_NORMAL);
}

/* Creates a table, opens it on both clients, inserts keys[0..n) by RPC
 * (train). 0 or an error (said why). */
static int setup(struct embkv_client *rpc, struct embkv_client *one,
		 const char *name, uint32_t dim, enum embkv_dtype dtype,
		 uint64_t cap, const uint64_t *keys, uint32_t n,
		 struct embkv_table_handle **tr, struct embkv_table_handle **td)
{
	float *g = malloc((size_t)n * dim * sizeof(float));
	int rc = g ? 0 : -ENOMEM;

	if (!rc)
		rc = table(rpc, name, dim, dtype, cap);
	if (!rc)
		rc = embkv_table_open(rpc, name, tr);
	if (!rc)
		rc = embkv_table_open(one, name, td);
	if (!rc)
		rc = embkv_pull(*tr, n, keys, g, NULL, EMBKV_MODE_TRAIN, NULL);
	if (rc)
		printf("setup %s: %s\n", name, embkv_strerror(rc));
	free(g);
	return rc;
}

static void stats_print(const char *who, struct embkv_client *c)
{
	struct embkv_client_counters k;
	struct embkv_gpu_stats g;

	embkv_client_counters(c, &k);
	embkv_gpu_stats_get(&g);
	printf("%s: path %s direct_keys %llu direct_landed %llu "
	       "direct_pushed %llu direct_rest %llu read_wrs %llu read_bytes "
	       "%llu torn %llu cache_hits %llu cache_drops %llu\n",
	       who, embkv_gpu_path_name(g.path),
	       (unsigned long long)g.direct_keys,
	       (unsigned long long)g.direct_landed,
	       (unsigned long long)g.direct_pushed,
	       (unsigned long long)g.direct_rest,
	       (unsigned long long)k.read_wrs,
	       (unsigned long long)k.read_bytes,
	       (unsigned long long)k.torn_retries,
	       (unsigned long long)k.cache_hits,
	       (unsigned long long)k.cache_drops);
	fflush(stdout);
}

static int push_twins(struct embkv_client *rpc, struct embkv_client *one,
		      const char *name, uint32_t dim, const uint64_t *u,
		      uint32_t nu, const uint64_t *keys, uint32_t n,
		      uint64_t *pushed, uint64_t *rest);
static void push_keys(uint64_t *u, uint32_t nu, uint64_t *keys, uint32_t n,
		      uint64_t mul);

/* probe ------------------------------------------------------------------ */

static int test_probe(void)
{
	struct embkv_gpu_info info;
	char why[160];
	enum embkv_gpu_path p;
	int rc;

	p = embkv_gpu_direct_probe(1, 1, why, sizeof(why));
	printf("ladder (device claims dma-buf and GPUDirect): %s: %s\n",
	       embkv_gpu_path_name(p), why);
	CHECK(p == EMBKV_GPU_PATH_STAGING,
	      "soft-RoCE chose %s", embkv_gpu_path_name(p));
	CHECK(strstr(why, "dma-buf") && strstr(why, "staging"),
	      "the reason does not say why: %s", why);
	rc = embkv_gpu_probe(&info);
	CHECK(rc == 0, "probe: %d (%s)", rc, info.why);
	CHECK(info.path == EMBKV_GPU_PATH_STAGING &&
	      info.capable == EMBKV_GPU_PATH_STAGING,
	      "stand-in path %s capable %s", embkv_gpu_path_name(info.path),
	      embkv_gpu_path_name(info.capable));
	printf("PASS soft-RoCE: staging, and why (%s)\n", info.why);
out:
	return failures;
}

/* equiv ------------------------------------------------------------------ */

#define EQ_DISTINCT 40000u
#define EQ_N 100000u
#define EQ_DIM 32u

/* A device pull of keys[0..n) equals an RPC pull, rows and found flags. */
static int same_as_rpc(struct embkv_table_handle *td,
		       struct embkv_table_handle *tr, const uint64_t *keys,
		       uint32_t n, uint32_t dim, enum embkv_mode mode,
		       const float *dflt, const char *what)
{
	size_t bytes = (size_t)n * dim * sizeof(float);
	float *ref = malloc(bytes), *got = malloc(bytes);
	uint8_t *fr = malloc(n), *fg = malloc(n);
	int rc, ok = 0;

	CHECK(ref && got && fr && fg, "memory");
	memset(got, 0x7f, bytes);
	memset(fg, 7, n);
	rc = embkv_pull_device(td, n, keys, got, fg, mode, dflt, NULL);
	CHECK(rc == 0, "%s: device pull: %s", what, embkv_strerror(rc));
	rc = embkv_pull(tr, n, keys, ref, fr, EMBKV_MODE_INFER, dflt);
	CHECK(rc == 0, "%s: rpc pull: %s", what, embkv_strerror(rc));
	CHECK(memcmp(fr, fg, n) == 0, "%s: found flags differ", what);
	for (uint32_t i = 0; i < n; i++)
		CHECK(memcmp(ref + (size_t)i * dim, got + (size_t)i * dim,
			     dim * sizeof(float)) == 0,
		      "%s: row %u (key %llx) differs: %g vs %g", what, i,
		      (unsigned long long)keys[i], got[(size_t)i * dim],
		      ref[(size_t)i * dim]);
	ok = 1;
out:
	free(ref);
	free(got);
	free(fr);
	free(fg);
	return ok;
}

static int test_equiv(void)
{
	struct embkv_client *rpc = NULL, *one = NULL;
	struct embkv_table_handle *tr = NULL, *td = NULL;
	struct embkv_client_counters k0, k1;
	struct embkv_gpu_stats g0, g1;
	uint64_t *keys = malloc(EQ_N * sizeof(*keys)), *u = NULL;
	float *g = NULL, dflt[EQ_DIM];
	uint32_t i;
	int rc;

	CHECK(keys, "memory");
	rpc = client(2, 1);
	one = client(2, 0);
	CHECK(rpc && one, "clients");
	rc = table(rpc, "gd", EQ_DIM, EMBKV_DTYPE_F32, 1u << 18);
	CHECK(rc == 0, "create: %s", embkv_strerror(rc));
	CHECK(embkv_table_open(rpc, "gd", &tr) == 0, "open rpc");
	CHECK(embkv_table_open(one, "gd", &td) == 0, "open one-sided");
	CHECK(td->os, "no one-sided state on an rdma table");
	u = malloc(EQ_DISTINCT * sizeof(*u));
	g = malloc((size_t)EQ_DISTINCT * EQ_DIM * sizeof(float));
	CHECK(u && g, "memory");
	for (i = 0; i < EQ_DISTINCT; i++)
		u[i] = 0x9e3779b97f4a7c15ull * (i + 1);
	CHECK(embkv_pull(tr, EQ_DISTINCT, u, g, NULL, EMBKV_MODE_TRAIN,
			 NULL) == 0, "insert");
	for (size_t j = 0; j < (size_t)EQ_DISTINCT * EQ_DIM; j++)
		g[j] = (float)((j * 2654435761u) % 1000) * 1e-3f - 0.5f;
	CHECK(embkv_push(tr, EQ_DISTINCT, u, g, NULL) == 0, "push");
	/* every distinct key, then duplicates, some hot */
	for (i = 0; i < EQ_N; i++)
		keys[i] = i < EQ_DISTINCT ? u[(i * 7919u) % EQ_DISTINCT]
			  : i % 5 == 0 ? u[3] : u[(i * 104729u) % EQ_DISTINCT];

	embkv_client_counters(one, &k0);
	embkv_gpu_stats_get(&g0);
	CHECK(g0.path == EMBKV_GPU_PATH_PEERMEM, "path %s, not peermem",
	      embkv_gpu_path_name(g0.path));
	CHECK(same_as_rpc(td, tr, keys, EQ_N, EQ_DIM, EMBKV_MODE_INFER, NULL,
			  "cold"), "cold");
	embkv_gpu_stats_get(&g1);
	CHECK(g1.direct_keys - g0.direct_keys == EQ_DISTINCT &&
	      g1.direct_rest == g0.direct_rest,
	      "cold: %llu keys READ into the slab, %llu left",
	      (unsigned long long)(g1.direct_keys - g0.direct_keys),
	      (unsigned long long)(g1.direct_rest - g0.direct_rest));
	printf("PASS cold device pull of %u keys (%u distinct) == RPC pull, "
	       "every key READ into device memory\n", EQ_N, EQ_DISTINCT);

	embkv_client_counters(one, &k0);
	CHECK(same_as_rpc(td, tr, keys, EQ_N, EQ_DIM, EMBKV_MODE_TRAIN, NULL,
			  "warm"), "warm");
	embkv_client_counters(one, &k1);
	CHECK(k1.cache_hits - k0.cache_hits >= EQ_DISTINCT - EQ_DISTINCT / 100 &&
	      k1.read_wrs - k0.read_wrs <=
	      EQ_DISTINCT + 3 * (EQ_DISTINCT - (k1.cache_hits - k0.cache_hits)),
	      "warm: %llu cache hits, %llu READs",
	      (unsigned long long)(k1.cache_hits - k0.cache_hits),
	      (unsigned long long)(k1.read_wrs - k0.read_wrs));
	printf("PASS warm device pull == RPC pull (train mode), %llu of %u "
	       "keys from cached locations, %llu READs\n",
	       (unsigned long long)(k1.cache_hits - k0.cache_hits),
	       EQ_DISTINCT, (unsigned long long)(k1.read_wrs - k0.read_wrs));

	/* missing keys among stored ones: infer -> the default row, found 0 */
	for (i = 0; i < EQ_DIM; i++)
		dflt[i] = 0.25f * (float)i - 1.0f;
	for (i = 0; i < 3000; i++)
		keys[i] = i % 3 ? 0xdead0000ull + i : u[i];
	embkv_gpu_stats_get(&g0);
	CHECK(same_as_rpc(td, tr, keys, 3000, EQ_DIM, EMBKV_MODE_INFER, dflt,
			  "missing infer"), "missing infer");
	embkv_gpu_stats_get(&g1);
	CHECK(g1.direct_rest == g0.direct_rest &&
	      g1.direct_landed - g0.direct_landed == 2000 &&
	      g1.direct_keys - g0.direct_keys == 1000,
	      "missing: %llu direct, %llu landed, %llu left",
	      (unsigned long long)(g1.direct_keys - g0.direct_keys),
	      (unsigned long long)(g1.direct_landed - g0.direct_landed),
	      (unsigned long long)(g1.direct_rest - g0.direct_rest));
	/* train inserts them (PULL_LAND: their records written into the
	 * slab); then they are READ like the rest */
	{
		float *tmp = malloc((size_t)3000 * EQ_DIM * sizeof(float));
		uint8_t *f = malloc(3000);

		CHECK(tmp && f, "memory");
		embkv_gpu_stats_get(&g0);
		rc = embkv_pull_device(td, 3000, keys, tmp, f,
				       EMBKV_MODE_TRAIN, NULL, NULL);
		embkv_gpu_stats_get(&g1);
		for (i = 0; i < 3000 && !rc; i++)
			if (f[i] != !(i % 3)) /* stored before: found */
				rc = -1;
		free(tmp);
		free(f);
		CHECK(rc == 0, "train pull of missing keys: %d", rc);
		CHECK(g1.direct_landed - g0.direct_landed == 2000 &&
		      g1.direct_rest == g0.direct_rest,
		      "train: %llu landed, %llu left",
		      (unsigned long long)(g1.direct_landed - g0.direct_landed),
		      (unsigned long long)(g1.direct_rest - g0.direct_rest));
	}
	CHECK(same_as_rpc(td, tr, keys, 3000, EQ_DIM, EMBKV_MODE_INFER, NULL,
			  "inserted"), "inserted");
	printf("PASS missing keys landed by PULL_LAND, none through staging "
	       "(infer: the default row; train: inserted, found 0), then READ "
	       "one-sided\n");

	/* cached locations made stale: erase, other keys take the rows,
	 * the erased keys come back in other rows */
	for (i = 0; i < 2000; i++)
		keys[i] = 0xbeef00000ull + i;
	CHECK(embkv_erase(tr, 2000, u, NULL) == 0, "erase");
	CHECK(embkv_pull(tr, 2000, keys, g, NULL, EMBKV_MODE_TRAIN, NULL) == 0,
	      "reuse rows");
	CHECK(embkv_pull(tr, 2000, u, g, NULL, EMBKV_MODE_TRAIN, NULL) == 0,
	      "insert again");
	embkv_client_counters(one, &k0);
	CHECK(same_as_rpc(td, tr, u, 2000, EQ_DIM, EMBKV_MODE_INFER, NULL,
			  "stale locations"), "stale locations");
	embkv_client_counters(one, &k1);
	CHECK(k1.cache_drops - k0.cache_drops > 0,
	      "no cached location was found stale");
	printf("PASS stale cached locations: %llu dropped, rows equal\n",
	       (unsigned long long)(k1.cache_drops - k0.cache_drops));
	stats_print("equiv", one);
out:
	embkv_table_close(td);
	embkv_table_close(tr);
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	free(keys);
	free(u);
	free(g);
	return failures;
}

/* torn ------------------------------------------------------------------- */

static int test_torn(void)
{
	struct embkv_client *rpc = NULL, *one = NULL;
	struct embkv_table_handle *tr = NULL, *td = NULL;
	struct embkv_client_counters k0, k1;
	struct embkv_gpu_stats g0, g1;
	uint64_t keys[5000];
	uint32_t i;

	rpc = client(2, 1);
	one = client(2, 0);
	CHECK(rpc && one, "clients");
	for (i = 0; i < 5000; i++)
		keys[i] = 0x51ed270b27ull * (i + 3);
	CHECK(setup(rpc, one, "gt", 16, EMBKV_DTYPE_F32, 1u << 18, keys, 5000,
		    &tr, &td) == 0, "setup");
	embkv_client_counters(one, &k0);
	embkv_gpu_stats_get(&g0);
	CHECK(same_as_rpc(td, tr, keys, 5000, 16, EMBKV_MODE_INFER, NULL,
			  "torn"), "torn");
	embkv_client_counters(one, &k1);
	embkv_gpu_stats_get(&g1);
	CHECK(k1.torn_retries - k0.torn_retries >= 64,
	      "%llu torn re-reads for 64 torn records",
	      (unsigned long long)(k1.torn_retries - k0.torn_retries));
	CHECK(g1.direct_keys - g0.direct_keys == 5000,
	      "%llu keys one-sided after re-reads",
	      (unsigned long long)(g1.direct_keys - g0.direct_keys));
	printf("PASS 64 records torn in the landing slab: read again (%llu "
	       "re-reads), rows equal the RPC pull\n",
	       (unsigned long long)(k1.torn_retries - k0.torn_retries));
	stats_print("torn", one);
out:
	embkv_table_close(td);
	embkv_table_close(tr);
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	return failures;
}

/* half ------------------------------------------------------------------- */

static int half_one(struct embkv_client *rpc, struct embkv_client *one,
		    enum embkv_dtype dtype, const char *name)
{
	struct embkv_table_handle *tr = NULL, *td = NULL;
	struct embkv_client_counters k0, k1;
	uint64_t keys[4000];
	uint32_t i, hits;

	for (i = 0; i < 4000; i++)
		keys[i] = 0xc2b2ae3d27d4eb4full * (i + 11);
	CHECK(setup(rpc, one, name, 64, dtype, 1u << 18, keys, 4000, &tr,
		    &td) == 0, "setup");
	CHECK(same_as_rpc(td, tr, keys, 4000, 64, EMBKV_MODE_INFER, NULL,
			  name), "cold");
	embkv_client_counters(one, &k0);
	CHECK(same_as_rpc(td, tr, keys, 4000, 64, EMBKV_MODE_INFER, NULL,
			  name), "warm");
	embkv_client_counters(one, &k1);
	hits = (uint32_t)(k1.cache_hits - k0.cache_hits);
	CHECK(k1.read_bytes - k0.read_bytes ==
	      (uint64_t)hits * (24 + 2 * 64) +
	      (uint64_t)(4000 - hits) * (128 + 24 + 2 * 64),
	      "%s: %llu bytes READ for %u cached keys", name,
	      (unsigned long long)(k1.read_bytes - k0.read_bytes), hits);
	printf("PASS %s: device pull == RPC pull, cold and warm, %u-byte "
	       "READs into device memory\n", name, 24 + 2 * 64);
out:
	embkv_table_close(td);
	embkv_table_close(tr);
	return failures;
}

static int test_half(void)
{
	struct embkv_client *rpc = client(2, 1), *one = client(2, 0);

	if (!rpc || !one) {
		printf("FAIL clients\n");
		failures++;
	} else {
		half_one(rpc, one, EMBKV_DTYPE_BF16, "gh_bf16");
		half_one(rpc, one, EMBKV_DTYPE_F16, "gh_fp16");
		stats_print("half", one);
	}
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	return failures;
}

/* extra ------------------------------------------------------------------ */

/* A table of dtype and dim, nkeys keys with duplicates: the device pull
 * equals the RPC pull cold and warm, every key READ into the slab. */
static int extra_one(struct embkv_client *rpc, struct embkv_client *one,
		     enum embkv_dtype dtype, uint32_t dim, uint32_t nkeys,
		     const char *name)
{
	struct embkv_table_handle *tr = NULL, *td = NULL;
	struct embkv_gpu_stats g0, g1;
	uint32_t n = nkeys + nkeys / 2, i;
	uint64_t *keys = malloc((size_t)n * sizeof(*keys));

	CHECK(keys, "memory");
	for (i = 0; i < n; i++)
		keys[i] = 0xa0761d6478bd642full * ((i % nkeys) * 31 % nkeys + 1);
	/* keys[0..nkeys) are the distinct ones */
	CHECK(setup(rpc, one, name, dim, dtype, 4u * nkeys, keys, nkeys, &tr,
		    &td) == 0, "setup");
	embkv_gpu_stats_get(&g0);
	CHECK(same_as_rpc(td, tr, keys, n, dim, EMBKV_MODE_INFER, NULL, name),
	      "cold");
	CHECK(same_as_rpc(td, tr, keys, n, dim, EMBKV_MODE_INFER, NULL, name),
	      "warm");
	embkv_gpu_stats_get(&g1);
	CHECK(g1.direct_keys - g0.direct_keys == 2ull * nkeys &&
	      g1.direct_rest == g0.direct_rest,
	      "%s: %llu keys READ into the slab, %llu left", name,
	      (unsigned long long)(g1.direct_keys - g0.direct_keys),
	      (unsigned long long)(g1.direct_rest - g0.direct_rest));
	printf("PASS %s: %u keys, device pull == RPC pull cold and warm, all "
	       "READ into the slab\n", name, n);
out:
	embkv_table_close(td);
	embkv_table_close(tr);
	free(keys);
	return failures;
}

/* Odd 16-bit dims (records not a multiple of 8 bytes), and a pull of
 * more keys than one slab holds (fp32 dim 4096: 16 KiB records, 63 in
 * the 1 MiB slab this mode asks for, so 150 keys take three ranges). */
static int test_extra(void)
{
	struct embkv_client *rpc = client(2, 1), *one = client(2, 0);

	if (!rpc || !one) {
		printf("FAIL clients\n");
		failures++;
	} else {
		extra_one(rpc, one, EMBKV_DTYPE_F16, 3, 3000, "gx_fp16_3");
		extra_one(rpc, one, EMBKV_DTYPE_BF16, 5, 3000, "gx_bf16_5");
		extra_one(rpc, one, EMBKV_DTYPE_F32, 4096, 150, "gx_f32_4096");
		stats_print("extra", one);
	}
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	return failures;
}

/* noreg ------------------------------------------------------------------ */

/* EMBKV_GPU_PATH=dmabuf with the stand-in, whose memory has no dma-buf:
 * no connection can register the slab. The pull must still equal the
 * RPC pull, every key through staging, and those keys still READ
 * one-sided into host memory by the host path (nothing was tried). */
static int test_noreg(void)
{
	struct embkv_client *rpc = client(2, 1), *one = client(2, 0);
	struct embkv_table_handle *tr = NULL, *td = NULL;
	struct embkv_client_counters k0, k1;
	struct embkv_gpu_stats g0, g1;
	uint64_t keys[4000];
	uint32_t i;

	CHECK(rpc && one, "clients");
	for (i = 0; i < 4000; i++)
		keys[i] = 0x2d358dccaa6c78a5ull * (i + 5);
	CHECK(setup(rpc, one, "gn", 16, EMBKV_DTYPE_F32, 1u << 18, keys, 4000,
		    &tr, &td) == 0, "setup");
	for (int round = 0; round < 2; round++) {
		embkv_client_counters(one, &k0);
		embkv_gpu_stats_get(&g0);
		CHECK(g0.path == EMBKV_GPU_PATH_DMABUF, "path %s",
		      embkv_gpu_path_name(g0.path));
		CHECK(same_as_rpc(td, tr, keys, 4000, 16, EMBKV_MODE_INFER,
				  NULL, "noreg"), "noreg");
		embkv_client_counters(one, &k1);
		embkv_gpu_stats_get(&g1);
		CHECK(g1.direct_keys == g0.direct_keys &&
		      g1.direct_rest - g0.direct_rest == 4000,
		      "%llu direct, %llu left",
		      (unsigned long long)(g1.direct_keys - g0.direct_keys),
		      (unsigned long long)(g1.direct_rest - g0.direct_rest));
		CHECK(k1.keys_onesided - k0.keys_onesided == 4000,
		      "round %d: the host path READ %llu of 4000 keys", round,
		      (unsigned long long)(k1.keys_onesided - k0.keys_onesided));
	}
	printf("PASS slab not registrable: device pull == RPC pull, every key "
	       "READ one-sided by the host path, twice\n");
	{
		uint64_t u2[3000], k2[6000], pushed = 0, rest = 0;

		push_keys(u2, 3000, k2, 6000, 0x85ebca6bull);
		CHECK(push_twins(rpc, one, "gn_push", 16, u2, 3000, k2, 6000,
				 &pushed, &rest), "noreg push");
		CHECK(pushed == 0 && rest == 3000, "noreg push: %llu from the "
		      "slab, %llu from host memory",
		      (unsigned long long)pushed, (unsigned long long)rest);
	}
	printf("PASS slab not registrable: device push sends nothing from it, "
	       "pushes every key from host memory once, rows equal a host "
	       "push's\n");
	stats_print("noreg", one);
out:
	embkv_table_close(td);
	embkv_table_close(tr);
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	return failures;
}

/* kill ------------------------------------------------------------------- */

/* A server killed after the device pull cached its keys' locations: a
 * pull that needs it fails (an error, in bounded time: its connections
 * break mid-landing, their slab registrations go with them), and the
 * keys of the server left still come straight into the slab, equal to
 * the RPC pull. */
static int test_kill(void)
{
	struct embkv_client *rpc = client(2, 1), *one = client(2, 0);
	struct embkv_table_handle *tr = NULL, *td = NULL;
	struct embkv_gpu_stats g0, g1;
	struct embkv_shardmap *m;
	uint64_t keys[6000], live[6000];
	float *out = malloc(6000 * 16 * sizeof(float));
	uint32_t i, nlive = 0;
	uint64_t t0;
	int rc;

	CHECK(rpc && one && out, "clients");
	for (i = 0; i < 6000; i++)
		keys[i] = 0x9fb21c651e98df25ull * (i + 7);
	CHECK(setup(rpc, one, "gk", 16, EMBKV_DTYPE_F32, 1u << 18, keys, 6000,
		    &tr, &td) == 0, "setup");
	CHECK(same_as_rpc(td, tr, keys, 6000, 16, EMBKV_MODE_INFER, NULL,
			  "before"), "before");
	/* the keys of server 0 (client server index = cluster index) */
	m = embkv_shardmap_get(td);
	for (i = 0; i < 6000; i++) {
		struct embkv_khash h = embkv_hash_key(keys[i],
						      td->attr.hash_seed);
		uint32_t part = embkv_hash_partition(
			h, embkv_batch_part_bits(m->nparts));

		if (m->srv[m->part_srv[part]] == 0)
			live[nlive++] = keys[i];
	}
	embkv_shardmap_put(m);
	CHECK(nlive > 1000 && nlive < 5000, "%u keys on server 0", nlive);
	embkv_test_proc_kill(&cl.procs[1]);
	cl.n = 1;
	t0 = embkv_test_now_ms();
	rc = embkv_pull_device(td, 6000, keys, out, NULL, EMBKV_MODE_INFER,
			       NULL, NULL);
	CHECK(rc != 0, "a pull that needs the killed server succeeded");
	CHECK(embkv_test_now_ms() - t0 < 30000, "failing took %llu ms",
	      (unsigned long long)(embkv_test_now_ms() - t0));
	printf("PASS a pull that needs a killed server fails (%s) in %llu "
	       "ms\n", embkv_strerror(rc),
	       (unsigned long long)(embkv_test_now_ms() - t0));
	embkv_gpu_stats_get(&g0);
	CHECK(same_as_rpc(td, tr, live, nlive, 16, EMBKV_MODE_INFER, NULL,
			  "live"), "live");
	embkv_gpu_stats_get(&g1);
	CHECK(g1.direct_keys - g0.direct_keys == nlive,
	      "%llu of %u live keys READ into the slab",
	      (unsigned long long)(g1.direct_keys - g0.direct_keys), nlive);
	printf("PASS the %u keys of the server left: device pull == RPC pull, "
	       "all READ into the slab\n", nlive);
	stats_print("kill", one);
out:
	embkv_table_close(td);
	embkv_table_close(tr);
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	free(out);
	return failures;
}

/* land ------------------------------------------------------------------- */

/* A train device pull of nkeys keys no server stores (with duplicates),
 * then of as many again half stored: the READs find nothing for the new
 * ones, PULL_LAND inserts them and their servers write the records into
 * the slab. Found 0 for new keys and 1 for stored ones, rows equal what
 * an RPC pull reads after; tear (the stand-in's torn records among the
 * landed ones) of them go through staging, still found 0; the others
 * none. */
static int land_one(struct embkv_client *rpc, struct embkv_client *one,
		    enum embkv_dtype dtype, uint32_t dim, uint32_t nkeys,
		    uint32_t tear, const char *name)
{
	struct embkv_table_handle *tr = NULL, *td = NULL;
	struct embkv_gpu_stats g0, g1;
	uint32_t n = nkeys + nkeys / 2, i, pass;
	uint64_t *keys = malloc((size_t)n * sizeof(*keys));
	size_t bytes = (size_t)n * dim * sizeof(float);
	float *got = malloc(bytes), *ref = malloc(bytes);
	uint8_t *fg = malloc(n), *fr = malloc(n);

	CHECK(keys && got && ref && fg && fr, "memory");
	CHECK(table(rpc, name, dim, dtype, 4u * nkeys) == 0, "create");
	CHECK(embkv_table_open(rpc, name, &tr) == 0, "open rpc");
	CHECK(embkv_table_open(one, name, &td) == 0, "open one-sided");
	for (pass = 0; pass < 2; pass++) {
		uint64_t landed, rest;

		/* pass 1: the even distinct keys stored by pass 0 */
		for (i = 0; i < n; i++) {
			uint32_t d = (i % nkeys) * 31 % nkeys;

			keys[i] = 0x94d049bb133111ebull * (d + 1) +
				  (pass && d % 2 ? 0x5555ull << 40 : 0);
		}
		memset(fg, 7, n);
		embkv_gpu_stats_get(&g0);
		CHECK(embkv_pull_device(td, n, keys, got, fg, EMBKV_MODE_TRAIN,
					NULL, NULL) == 0, "device pull");
		embkv_gpu_stats_get(&g1);
		CHECK(embkv_pull(tr, n, keys, ref, fr, EMBKV_MODE_INFER,
				 NULL) == 0, "rpc pull");
		for (i = 0; i < n; i++) {
			uint32_t d = (i % nkeys) * 31 % nkeys;
			uint8_t want = pass && d % 2 == 0;

			CHECK(fr[i] == 1, "%s: key %u not stored", name, i);
			CHECK(fg[i] == want, "%s pass %u: key %u found %u", name,
			      pass, i, fg[i]);
			CHECK(memcmp(got + (size_t)i * dim, ref + (size_t)i * dim,
				     dim * sizeof(float)) == 0,
			      "%s pass %u: row %u differs", name, pass, i);
		}
		landed = g1.direct_landed - g0.direct_landed;
		rest = g1.direct_rest - g0.direct_rest;
		CHECK(rest == (pass ? 0 : tear) &&
		      landed + (g1.direct_keys - g0.direct_keys) + rest == nkeys,
		      "%s pass %u: %llu landed, %llu READ, %llu left", name,
		      pass, (unsigned long long)landed,
		      (unsigned long long)(g1.direct_keys - g0.direct_keys),
		      (unsigned long long)rest);
		printf("PASS %s pass %u: %u keys (%u distinct), %llu landed by "
		       "PULL_LAND, %llu READ, %llu through staging; == RPC "
		       "pull, found flags right\n", name, pass, n, nkeys,
		       (unsigned long long)landed,
		       (unsigned long long)(g1.direct_keys - g0.direct_keys),
		       (unsigned long long)rest);
	}
out:
	embkv_table_close(td);
	embkv_table_close(tr);
	free(keys);
	free(got);
	free(ref);
	free(fg);
	free(fr);
	return failures;
}

/* A table that admits a key at its second sight: a device train pull of
 * new keys lands records of the initializer's rows (not stored), found
 * 0; the RPC train pull after admits them with those same rows. */
static int land_admit(struct embkv_client *rpc, struct embkv_client *one)
{
	struct embkv_table_handle *tr = NULL, *td = NULL;
	struct embkv_table_attr ta;
	struct embkv_gpu_stats g0, g1;
	enum { AN = 600, AD = 8 };
	uint64_t keys[AN];
	float got[AN * AD], ref[AN * AD];
	uint8_t fg[AN], fr[AN];
	uint32_t i;

	embkv_table_attr_init(&ta);
	snprintf(ta.name, sizeof(ta.name), "gl_admit");
	ta.dim = AD;
	ta.capacity = 1u << 14;
	ta.partitions = 64;
	ta.admit_after = 2;
	ta.init.type = EMBKV_INIT_NORMAL;
	CHECK(embkv_table_create_remote(rpc, &ta) == 0, "create");
	CHECK(embkv_table_open(rpc, "gl_admit", &tr) == 0, "open rpc");
	CHECK(embkv_table_open(one, "gl_admit", &td) == 0, "open one-sided");
	for (i = 0; i < AN; i++)
		keys[i] = 0xbf58476d1ce4e5b9ull * (i + 1);
	embkv_gpu_stats_get(&g0);
	CHECK(embkv_pull_device(td, AN, keys, got, fg, EMBKV_MODE_TRAIN, NULL,
				NULL) == 0, "device pull");
	embkv_gpu_stats_get(&g1);
	CHECK(g1.direct_landed - g0.direct_landed == AN &&
	      g1.direct_rest == g0.direct_rest, "%llu landed, %llu left",
	      (unsigned long long)(g1.direct_landed - g0.direct_landed),
	      (unsigned long long)(g1.direct_rest - g0.direct_rest));
	CHECK(embkv_pull(tr, AN, keys, ref, fr, EMBKV_MODE_INFER, NULL) == 0,
	      "infer");
	for (i = 0; i < AN; i++)
		CHECK(!fg[i] && !fr[i], "key %u stored at its first sight", i);
	CHECK(embkv_pull(tr, AN, keys, ref, fr, EMBKV_MODE_TRAIN, NULL) == 0,
	      "admit");
	CHECK(memcmp(got, ref, sizeof(got)) == 0,
	      "landed rows are not the initializer's");
	printf("PASS admission: %u new keys landed with their initializer's "
	       "rows, found 0, nothing stored; admitted at the second sight "
	       "with the same rows\n", AN);
out:
	embkv_table_close(td);
	embkv_table_close(tr);
	return failures;
}

static int test_land(int tear)
{
	struct embkv_client *rpc = client(2, 1), *one = client(2, 0);

	if (!rpc || !one) {
		printf("FAIL clients\n");
		failures++;
	} else if (tear) {
		land_one(rpc, one, EMBKV_DTYPE_F32, 16, 3000, 50, "gl_torn");
		stats_print("landtorn", one);
	} else {
		land_one(rpc, one, EMBKV_DTYPE_F32, 32, 20000, 0, "gl_f32");
		land_one(rpc, one, EMBKV_DTYPE_BF16, 5, 3000, 0, "gl_bf16_5");
		land_one(rpc, one, EMBKV_DTYPE_F32, 4096, 150, 0,
			 "gl_f32_4096");
		land_admit(rpc, one);
		stats_print("land", one);
	}
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	return failures;
}

/* push ------------------------------------------------------------------- */

/* Twin tables a (device push) and b (host push) of dim dim, their keys
 * u[0..nu) inserted; grads for keys[0..n) (duplicates) in steps of 1/8,
 * so that every sum is exact in any order. After a device push into a
 * and embkv_push of the same into b, both tables' rows are equal bit for
 * bit, and differ from before. *pushed / *rest: the GPU counters' moves
 * over the device push. */
static int push_twins(struct embkv_client *rpc, struct embkv_client *one,
		      const char *name, uint32_t dim, const uint64_t *u,
		      uint32_t nu, const uint64_t *keys, uint32_t n,
		      uint64_t *pushed, uint64_t *rest)
{
	struct embkv_table_handle *ta = NULL, *tb = NULL, *td = NULL;
	struct embkv_gpu_stats g0, g1;
	char nb[64];
	size_t bytes = (size_t)nu * dim * sizeof(float);
	float *g = malloc((size_t)n * dim * sizeof(float));
	float *before = malloc(bytes), *ra = malloc(bytes), *rb = malloc(bytes);
	uint32_t applied = 0, happ = 0, i, changed = 0;
	int ok = 0;

	CHECK(g && before && ra && rb, "memory");
	snprintf(nb, sizeof(nb), "%s_host", name);
	CHECK(setup(rpc, one, name, dim, EMBKV_DTYPE_F32, 4u * nu, u, nu, &ta,
		    &td) == 0, "setup");
	CHECK(table(rpc, nb, dim, EMBKV_DTYPE_F32, 4u * nu) == 0 &&
	      embkv_table_open(rpc, nb, &tb) == 0, "twin");
	CHECK(embkv_pull(tb, nu, u, before, NULL, EMBKV_MODE_TRAIN, NULL) == 0,
	      "twin insert");
	CHECK(embkv_pull(ta, nu, u, ra, NULL, EMBKV_MODE_INFER, NULL) == 0 &&
	      memcmp(ra, before, bytes) == 0,
	      "the twin tables' rows differ before the push");
	for (size_t j = 0; j < (size_t)n * dim; j++)
		g[j] = (float)((int)((j * 7 + j / dim) % 17) - 8) / 8.0f;
	embkv_gpu_stats_get(&g0);
	CHECK(embkv_push_device(td, n, keys, g, &applied, NULL) == 0,
	      "device push");
	embkv_gpu_stats_get(&g1);
	CHECK(embkv_push(tb, n, keys, g, &happ) == 0, "host push");
	CHECK(applied == nu && happ == nu, "applied %u (device), %u (host) of "
	      "%u", applied, happ, nu);
	CHECK(embkv_pull(ta, nu, u, ra, NULL, EMBKV_MODE_INFER, NULL) == 0 &&
	      embkv_pull(tb, nu, u, rb, NULL, EMBKV_MODE_INFER, NULL) == 0,
	      "pull after");
	for (i = 0; i < nu; i++) {
		CHECK(memcmp(ra + (size_t)i * dim, rb + (size_t)i * dim,
			     dim * sizeof(float)) == 0,
		      "%s: key %u: device push %g, host push %g", name, i,
		      ra[(size_t)i * dim], rb[(size_t)i * dim]);
		changed += memcmp(ra + (size_t)i * dim, before + (size_t)i * dim,
				  dim * sizeof(float)) != 0;
	}
	CHECK(changed > nu / 2, "%u of %u rows changed", changed, nu);
	*pushed = g1.direct_pushed - g0.direct_pushed;
	*rest = g1.direct_rest - g0.direct_rest;
	ok = 1;
out:
	embkv_table_close(td);
	embkv_table_close(ta);
	embkv_table_close(tb);
	free(g);
	free(before);
	free(ra);
	free(rb);
	return ok;
}

/* Keys u[0..nu) and n positions over them: every key, then duplicates
 * with a hot one. */
static void push_keys(uint64_t *u, uint32_t nu, uint64_t *keys, uint32_t n,
		      uint64_t mul)
{
	for (uint32_t i = 0; i < nu; i++)
		u[i] = mul * (i + 1);
	for (uint32_t i = 0; i < n; i++)
		keys[i] = i < nu ? u[(i * 7919u) % nu]
			  : i % 4 == 0 ? u[5] : u[(i * 104729u) % nu];
}

static int test_push(void)
{
	struct embkv_client *rpc = client(2, 1), *one = client(2, 0);
	enum { PU = 10000, PN = 30000 };
	uint64_t *u = malloc(PU * sizeof(*u)), *keys = malloc(PN * sizeof(*keys));
	uint64_t pushed = 0, rest = 0;

	CHECK(rpc && one && u && keys, "clients");
	push_keys(u, PU, keys, PN, 0x7a6b5c4d3e2f1a0bull);
	CHECK(push_twins(rpc, one, "gp", 16, u, PU, keys, PN, &pushed, &rest),
	      "push");
	CHECK(pushed == PU && rest == 0, "%llu keys pushed from device memory, "
	      "%llu from host memory", (unsigned long long)pushed,
	      (unsigned long long)rest);
	printf("PASS device push of %u keys (%u distinct): every row sent "
	       "from the device slab (gather SENDs), rows equal a host push's "
	       "bit for bit\n", PN, PU);
	/* the 1 MiB slab this mode asks for holds 256 rows of dim 1024 and
	 * 64 of dim 4096: several chunks each */
	push_keys(u, 600, keys, 900, 0x1b873593ull);
	CHECK(push_twins(rpc, one, "gp_wide", 1024, u, 600, keys, 900,
			 &pushed, &rest), "wide");
	CHECK(pushed == 600 && rest == 0, "wide: %llu pushed, %llu left",
	      (unsigned long long)pushed, (unsigned long long)rest);
	printf("PASS dim 1024 (15 rows a frame, 3 slab chunks): rows equal a "
	       "host push's\n");
	push_keys(u, 150, keys, 150, 0xcc9e2d51ull);
	CHECK(push_twins(rpc, one, "gp_4096", 4096, u, 150, keys, 150,
			 &pushed, &rest), "three slabs");
	CHECK(pushed == 150 && rest == 0, "4096: %llu pushed, %llu left",
	      (unsigned long long)pushed, (unsigned long long)rest);
	printf("PASS dim 4096, 150 keys over three slab chunks: rows equal a "
	       "host push's\n");
	stats_print("push", one);
out:
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	free(u);
	free(keys);
	return failures;
}

static void run_mode(int argc, char **argv)
{
	const char *mode = argv[1];

	(void)argc;
	if (!strcmp(mode, "probe"))
		test_probe();
	else if (!strcmp(mode, "equiv"))
		test_equiv();
	else if (!strcmp(mode, "torn"))
		test_torn();
	else if (!strcmp(mode, "half"))
		test_half();
	else if (!strcmp(mode, "extra"))
		test_extra();
	else if (!strcmp(mode, "kill"))
		test_kill();
	else if (!strcmp(mode, "land"))
		test_land(0);
	else if (!strcmp(mode, "landtorn"))
		test_land(1);
	else if (!strcmp(mode, "push"))
		test_push();
	else
		test_noreg();
}

int main(int argc, char **argv)
{
	static const struct rdma_mode modes[] = {
		{ "probe", run_mode }, { "equiv", run_mode },
		{ "torn", run_mode }, { "half", run_mode },
		{ "extra", run_mode }, { "noreg", run_mode },
		{ "kill", run_mode }, { "land", run_mode },
		{ "landtorn", run_mode }, { "push", run_mode },
		{ NULL, NULL },
	};
	const char *mode = argc > 1 ? argv[1] : "equiv";

	/* before the plugin loads (the first device call) */
	if (!strcmp(mode, "probe"))
		unsetenv("EMBKV_GPU_PATH");
	else
		setenv("EMBKV_GPU_PATH", strcmp(mode, "noreg") ? "peermem"
							       : "dmabuf", 1);
	if (!strcmp(mode, "torn"))
		setenv("EMBKV_GPU_HOST_TEAR", "64", 1);
	/* a fresh table: no bucket READ matches, so the first records
	 * checked are landed ones */
	if (!strcmp(mode, "landtorn"))
		setenv("EMBKV_GPU_HOST_TEAR", "50", 1);
	/* a small slab: several slab ranges and chunks with few keys */
	if (!strcmp(mode, "extra") || !strcmp(mode, "land") ||
	    !strcmp(mode, "push"))
		setenv("EMBKV_GPU_SLAB_MB", "1", 1);
	return rdma_test_main(argc, argv, 2, 150, modes);
}
