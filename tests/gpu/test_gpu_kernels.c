/*
 * The CUDA kernels (gpu/kernels.cu) on a GPU, through the plugin's table
 * (gpu/gpu.h): dedup with a million-duplicate-style hot key against a
 * host reference (inverse, order, stability), gradient coalescing against
 * a double reference (and bit for bit against the CPU client's
 * sequential sum for keys with at most a chunk of duplicates), the
 * scatter, and the fused record check with records built by libxxhash,
 * one torn, one of another key and one dead, which must be listed for a
 * retry and left unwritten. ABI 2: check_scatter_range over ranges of a
 * dedup (middle, edges, whole, a hot key, bad records, fp16/bf16, the
 * argument checks) and scatter_list (shuffled subsets, NULL flags, a hot
 * key), every caller row compared with a reference computed here and
 * the rows they must not write filled with a sentinel first. ABI 3:
 * check_scatter_list (shuffled lists over a dedup with duplicates, each
 * kind of bad record, fp16/bf16, ufound zeros or NULL, a hot key, m 0,
 * the argument checks), compared the same way; coalescing
 * of keys of 2+ chunks against the chunked order bit for bit. Exits 77
 * ("no CUDA device: skipped") where the plugin finds no device;
 * tools/gpu-check.sh runs it on one. Built against the host stand-in
 * too (test_gpu_kernels_host, EMBKV_GPU_TEST_HOST_STANDIN: plus its
 * EMBKV_GPU_HOST_TEAR hook).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <xxhash.h>

#include "gpu/gpu.h"
#include "hashing/f16.h"

static const struct embkv_gpu_ops *ops;

static uint64_t rng = 88172645463325252ull;

static uint64_t next64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static float frand(void)
{
	return (float)((double)(next64() >> 11) / 9007199254740992.0 * 2 - 1);
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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* n keys: a hot key at a fifth of the positions, keys with a few
 * duplicates, and unique ones. */
static uint64_t *make_keys(uint32_t n)
{
	uint64_t *k = malloc(n * sizeof(*k));

	assert_non_null(k);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t r = next64();

		if (r % 5 == 0)
			k[i] = 0xfeedfacecafebeefull;   /* hot */
		else if (r % 5 == 1)
			k[i] = (r >> 8) % 997;          /* few duplicates each */
		else
			k[i] = r | (1ull << 62);        /* unique */
	}
	return k;
}

struct host_dd {
	uint32_t nu;
	uint64_t *ukeys;
	uint32_t *inverse, *perm, *offsets;
};

static void fetch_dd(const struct embkv_gpu_dedup *dd, struct host_dd *h)
{
	h->nu = dd->nu;
	h->ukeys = malloc((dd->nu + 1) * sizeof(uint64_t));
	h->inverse = malloc(dd->n * sizeof(uint32_t));
	h->perm = malloc(dd->n * sizeof(uint32_t));
	h->offsets = malloc((dd->nu + 1) * sizeof(uint32_t));
	host_copy(h->ukeys, dd->ukeys, dd->nu * sizeof(uint64_t));
	host_copy(h->inverse, dd->inverse, dd->n * sizeof(uint32_t));
	host_copy(h->perm, dd->perm, dd->n * sizeof(uint32_t));
	host_copy(h->offsets, dd->offsets, (dd->nu + 1) * sizeof(uint32_t));
}

static void free_hdd(struct host_dd *h)
{
	free(h->ukeys);
	free(h->inverse);
	free(h->perm);
	free(h->offsets);
}

static void check_dedup(const uint64_t *keys, uint32_t n)
{
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint64_t *sorted = malloc(n * sizeof(*sorted)), *hu;
	uint64_t *d_keys = dev_copy(keys, n * sizeof(*keys));
	uint32_t distinct = 0;

	memcpy(sorted, keys, n * sizeof(*keys));
	qsort(sorted, n, sizeof(*sorted), cmp_u64);
	for (uint32_t i = 0; i < n; i++)
		if (!i || sorted[i] != sorted[i - 1])
			sorted[distinct++] = sorted[i];
	hu = malloc(n * sizeof(*hu));
	assert_int_equal(ops->dedup(d_keys, n, &dd, hu, NULL), 0);
	assert_int_equal(dd.nu, distinct);
	fetch_dd(&dd, &h);
	assert_memory_equal(hu, sorted, distinct * sizeof(uint64_t));
	assert_memory_equal(h.ukeys, sorted, distinct * sizeof(uint64_t));
	assert_int_equal(h.offsets[0], 0);
	assert_int_equal(h.offsets[distinct], n);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(h.ukeys[h.inverse[i]], keys[i]);
	for (uint32_t r = 0; r < distinct; r++) {
		assert_true(h.offsets[r] < h.offsets[r + 1]);
		for (uint32_t j = h.offsets[r]; j < h.offsets[r + 1]; j++) {
			assert_int_equal(keys[h.perm[j]], h.ukeys[r]);
			if (j > h.offsets[r]) /* stable: input order */
				assert_true(h.perm[j] > h.perm[j - 1]);
		}
	}
	free_hdd(&h);
	ops->dedup_free(&dd, NULL);
	ops->dev_free(d_keys, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
	free(sorted);
	free(hu);
}

static void test_dedup(void **state)
{
	uint32_t sizes[] = { 1, 2, 31, 4096, 200000 };
	struct embkv_gpu_dedup dd;
	uint64_t one = 1, *d_one = dev_copy(&one, sizeof(one));

	(void)state;
	/* no keys, or more than cub counts: refused before any work */
	assert_int_equal(ops->dedup(d_one, 0, &dd, NULL, NULL), -EINVAL);
	assert_int_equal(ops->dedup(d_one, 1u << 31, &dd, NULL, NULL), -EINVAL);
	assert_int_equal(ops->dedup(NULL, 1, &dd, NULL, NULL), -EINVAL);
	ops->dev_free(d_one, NULL);
	for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint64_t *k = make_keys(sizes[s]);

		check_dedup(k, sizes[s]);
		free(k);
	}
	{	/* one key only, a million times */
		uint32_t n = 1u << 20;
		uint64_t *k = malloc(n * sizeof(*k));

		for (uint32_t i = 0; i < n; i++)
			k[i] = 7;
		check_dedup(k, n);
		free(k);
	}
}

static void test_coalesce(void **state)
{
	const uint32_t n = 150000, dim = 37;
	uint64_t *keys = make_keys(n);
	float *g = malloc((size_t)n * dim * sizeof(float));
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	float *d_g, *d_ug, *ug;
	uint64_t *d_keys;
	uint32_t hot = 0, exact = 0;

	(void)state;
	for (size_t i = 0; i < (size_t)n * dim; i++)
		g[i] = frand();
	d_keys = dev_copy(keys, n * sizeof(*keys));
	d_g = dev_copy(g, (size_t)n * dim * sizeof(float));
	assert_int_equal(ops->dedup(d_keys, n, &dd, NULL, NULL), 0);
	d_ug = dev_copy(NULL, (size_t)dd.nu * dim * sizeof(float));
	assert_int_equal(ops->coalesce(&dd, d_g, dim, d_ug, NULL), 0);
	ug = malloc((size_t)dd.nu * dim * sizeof(float));
	host_copy(ug, d_ug, (size_t)dd.nu * dim * sizeof(float));
	fetch_dd(&dd, &h);
	for (uint32_t r = 0; r < h.nu; r++) {
		uint32_t cnt = h.offsets[r + 1] - h.offsets[r];

		if (cnt > hot)
			hot = cnt;
		for (uint32_t c = 0; c < dim; c++) {
			double sum = 0, mag = 0;
			float seq = 0;

			for (uint32_t j = h.offsets[r]; j < h.offsets[r + 1];
			     j++) {
				float v = g[(size_t)h.perm[j] * dim + c];

				sum += v;
				mag += fabs(v);
				seq = j == h.offsets[r] ? v : seq + v;
			}
			assert_true(fabs(ug[(size_t)r * dim + c] - sum) <=
				    1e-5 * mag + 1e-6);
			if (cnt <= EMBKV_GPU_COALESCE_CHUNK) {
				assert_memory_equal(&ug[(size_t)r * dim + c],
						    &seq, sizeof(float));
				exact++;
			}
		}
	}
	assert_true(hot > 20000);       /* the hot key was there */
	assert_true(exact > 1000);
	free_hdd(&h);
	ops->dedup_free(&dd, NULL);
	ops->dev_free(d_keys, NULL);
	ops->dev_free(d_g, NULL);
	ops->dev_free(d_ug, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
	free(keys);
	free(g);
	free(ug);
}

static void test_scatter(void **state)
{
	const uint32_t n = 10000, dim = 5;
	uint64_t *keys = make_keys(n);
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint64_t *d_keys = dev_copy(keys, n * sizeof(*keys));
	float *ur, *out, *d_ur, *d_out;
	uint8_t *uf, *found, *d_uf, *d_found;

	(void)state;
	assert_int_equal(ops->dedup(d_keys, n, &dd, NULL, NULL), 0);
	fetch_dd(&dd, &h);
	ur = malloc((size_t)dd.nu * dim * sizeof(float));
	uf = malloc(dd.nu);
	for (uint32_t r = 0; r < dd.nu; r++) {
		uf[r] = r % 3 != 0;
		for (uint32_t c = 0; c < dim; c++)
			ur[(size_t)r * dim + c] = (float)r + (float)c / 8;
	}
	d_ur = dev_copy(ur, (size_t)dd.nu * dim * sizeof(float));
	d_uf = dev_copy(uf, dd.nu);
	d_out = dev_copy(NULL, (size_t)n * dim * sizeof(float));
	d_found = dev_copy(NULL, n);
	assert_int_equal(ops->scatter(&dd, d_ur, d_uf, dim, d_out, d_found,
				      NULL), 0);
	out = malloc((size_t)n * dim * sizeof(float));
	found = malloc(n);
	host_copy(out, d_out, (size_t)n * dim * sizeof(float));
	host_copy(found, d_found, n);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = h.inverse[i];

		assert_memory_equal(out + (size_t)i * dim,
				    ur + (size_t)r * dim, dim * sizeof(float));
		assert_int_equal(found[i], uf[r]);
	}
	/* no ufound: every found is 1 */
	assert_int_equal(ops->memset_dev(d_found, 0, n, NULL), 0);
	assert_int_equal(ops->scatter(&dd, d_ur, NULL, dim, d_out, d_found,
				      NULL), 0);
	host_copy(found, d_found, n);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(found[i], 1);
	free_hdd(&h);
	ops->dedup_free(&dd, NULL);
	ops->dev_free(d_keys, NULL);
	ops->dev_free(d_ur, NULL);
	ops->dev_free(d_uf, NULL);
	ops->dev_free(d_out, NULL);
	ops->dev_free(d_found, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
	free(keys);
	free(ur);
	free(uf);
	free(out);
	free(found);
}

/* Records as hashing/record.h lays them out, checked on the GPU. */
static void test_check_scatter(void **state)
{
	const uint32_t n = 3000, dim = 64;
	const size_t pb = dim * sizeof(float);
	const size_t stride = (24 + pb + 4 + 7) & ~(size_t)7;
	uint64_t *keys = make_keys(n);
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint64_t *d_keys = dev_copy(keys, n * sizeof(*keys));
	uint8_t *rec, *d_rec, *found, *d_found, *verd, *d_verd;
	uint32_t *d_failed, *d_nfailed, nfailed, *failed;
	float *out, *d_out;
	const uint32_t torn = 3, other = 5, dead = 7;

	(void)state;
	assert_int_equal(ops->dedup(d_keys, n, &dd, NULL, NULL), 0);
	assert_true(dd.nu > dead);
	fetch_dd(&dd, &h);
	rec = calloc(dd.nu, stride);
	for (uint32_t r = 0; r < dd.nu; r++) {
		uint8_t *p = rec + (size_t)r * stride;
		uint64_t kv[2] = { h.ukeys[r], next64() >> 1 };
		float *pay = (float *)(p + 24);
		uint64_t sum;

		if (r == other)
			kv[0] ^= 1;
		if (r == dead)
			kv[1] |= 1ull << 63;
		for (uint32_t c = 0; c < dim; c++)
			pay[c] = frand();
		sum = XXH3_64bits_withSeed(kv, sizeof(kv),
					   XXH3_64bits(pay, pb));
		memcpy(p, &sum, 8);
		memcpy(p + 8, kv, 16);
		if (r == torn)
			p[24 + 100] ^= 0x10;    /* after the checksum */
	}
	d_rec = dev_copy(rec, (size_t)dd.nu * stride);
	d_out = dev_copy(NULL, (size_t)n * dim * sizeof(float));
	d_found = dev_copy(NULL, n);
	d_verd = dev_copy(NULL, dd.nu);
	d_failed = dev_copy(NULL, dd.nu * sizeof(uint32_t));
	d_nfailed = dev_copy(NULL, sizeof(uint32_t));
	assert_int_equal(ops->memset_dev(d_found, 0, n, NULL), 0);
	assert_int_equal(ops->memset_dev(d_out, 0xff,
					 (size_t)n * dim * sizeof(float),
					 NULL), 0);
	/* refused before any work: no nfailed or failed, an unknown elem,
	 * a payload under dim elements, misaligned records */
	assert_int_equal(ops->check_scatter(&dd, d_rec, stride, pb,
					    EMBKV_GPU_ELEM_F32, dim, d_out,
					    d_found, d_failed, NULL, d_verd,
					    NULL), -EINVAL);
	assert_int_equal(ops->check_scatter(&dd, d_rec, stride, pb,
					    EMBKV_GPU_ELEM_F32, dim, d_out,
					    d_found, NULL, d_nfailed, d_verd,
					    NULL), -EINVAL);
	assert_int_equal(ops->check_scatter(&dd, d_rec, stride, pb,
					    (enum embkv_gpu_elem)7, dim,
					    d_out, d_found, d_failed,
					    d_nfailed, d_verd, NULL), -EINVAL);
	assert_int_equal(ops->check_scatter(&dd, d_rec, stride, pb - 4,
					    EMBKV_GPU_ELEM_F32, dim, d_out,
					    d_found, d_failed, d_nfailed,
					    d_verd, NULL), -EINVAL);
	assert_int_equal(ops->check_scatter(&dd, d_rec + 4, stride, pb,
					    EMBKV_GPU_ELEM_F32, dim, d_out,
					    d_found, d_failed, d_nfailed,
					    d_verd, NULL), -EINVAL);
	assert_int_equal(ops->check_scatter(&dd, d_rec, stride, pb,
					    EMBKV_GPU_ELEM_F32, dim, d_out,
					    d_found, d_failed, d_nfailed,
					    d_verd, NULL), 0);
	out = malloc((size_t)n * dim * sizeof(float));
	found = malloc(n);
	verd = malloc(dd.nu);
	failed = malloc(dd.nu * sizeof(uint32_t));
	host_copy(out, d_out, (size_t)n * dim * sizeof(float));
	host_copy(found, d_found, n);
	host_copy(verd, d_verd, dd.nu);
	host_copy(&nfailed, d_nfailed, sizeof(nfailed));
	assert_int_equal(nfailed, 3);
	host_copy(failed, d_failed, nfailed * sizeof(uint32_t));
	assert_int_equal(verd[torn], EMBKV_GPU_REC_TORN);
	assert_int_equal(verd[other], EMBKV_GPU_REC_OTHER_KEY);
	assert_int_equal(verd[dead], EMBKV_GPU_REC_DEAD);
	for (uint32_t k = 0; k < nfailed; k++)
		assert_true(failed[k] == torn || failed[k] == other ||
			    failed[k] == dead);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = h.inverse[i];
		int bad = r == torn || r == other || r == dead;
		uint32_t ones = 0xffffffffu;

		assert_int_equal(found[i], !bad);
		if (bad)
			assert_memory_equal(out + (size_t)i * dim, &ones, 4);
		else
			assert_memory_equal(out + (size_t)i * dim,
					    rec + (size_t)r * stride + 24, pb);
	}
	free_hdd(&h);
	ops->dedup_free(&dd, NULL);
	ops->dev_free(d_keys, NULL);
	ops->dev_free(d_rec, NULL);
	ops->dev_free(d_out, NULL);
	ops->dev_free(d_found, NULL);
	ops->dev_free(d_verd, NULL);
	ops->dev_free(d_failed, NULL);
	ops->dev_free(d_nfailed, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
	free(keys);
	free(rec);
	free(out);
	free(found);
	free(verd);
	free(failed);
}

/* 2-byte rows: fp16 and bf16 payloads (dim * 2 bytes, the checksum over
 * those bytes) converted to fp32 rows. */
static void test_check_scatter_2byte(void **state)
{
	const uint32_t n = 500, dim = 33;
	const size_t pb = dim * 2, stride = (24 + pb + 4 + 7) & ~(size_t)7;
	uint64_t *keys = make_keys(n);
	uint64_t *d_keys = dev_copy(keys, n * sizeof(*keys));
	struct embkv_gpu_dedup dd;
	struct host_dd h;

	(void)state;
	assert_int_equal(ops->dedup(d_keys, n, &dd, NULL, NULL), 0);
	fetch_dd(&dd, &h);
	for (int bf = 0; bf < 2; bf++) {
		uint8_t *rec = calloc(dd.nu, stride), *d_rec;
		float *out = malloc((size_t)n * dim * sizeof(float)), *d_out;
		uint32_t *d_failed, *d_nfailed, nfailed;

		for (uint32_t r = 0; r < dd.nu; r++) {
			uint8_t *p = rec + (size_t)r * stride;
			uint64_t kv[2] = { h.ukeys[r], r }, sum;

			for (uint32_t c = 0; c < dim; c++) {
				uint16_t v = (uint16_t)next64();

				if (!bf && ((v >> 10) & 31) == 31)
					v &= 0xbfff; /* no inf/NaN halves */
				if (bf && ((v >> 7) & 255) == 255)
					v &= 0xbfff;
				memcpy(p + 24 + 2 * c, &v, 2);
			}
			sum = XXH3_64bits_withSeed(kv, 16,
						   XXH3_64bits(p + 24, pb));
			memcpy(p, &sum, 8);
			memcpy(p + 8, kv, 16);
		}
		d_rec = dev_copy(rec, (size_t)dd.nu * stride);
		d_out = dev_copy(NULL, (size_t)n * dim * sizeof(float));
		d_failed = dev_copy(NULL, dd.nu * sizeof(uint32_t));
		d_nfailed = dev_copy(NULL, sizeof(uint32_t));
		assert_int_equal(ops->check_scatter(&dd, d_rec, stride, pb,
						    bf ? EMBKV_GPU_ELEM_BF16
						       : EMBKV_GPU_ELEM_F16,
						    dim, d_out, NULL, d_failed,
						    d_nfailed, NULL, NULL), 0);
		host_copy(&nfailed, d_nfailed, sizeof(nfailed));
		assert_int_equal(nfailed, 0);
		host_copy(out, d_out, (size_t)n * dim * sizeof(float));
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *p = rec + (size_t)h.inverse[i] * stride;

			for (uint32_t c = 0; c < dim; c++) {
				uint16_t v;
				uint32_t u;
				float want;

				memcpy(&v, p + 24 + 2 * c, 2);
				u = (uint32_t)v << 16;
				if (bf)
					memcpy(&want, &u, 4);
				else
					want = embkv_f16_to_f32(v);
				assert_memory_equal(&out[(size_t)i * dim + c],
						    &want, 4);
			}
		}
		ops->dev_free(d_rec, NULL);
		ops->dev_free(d_out, NULL);
		ops->dev_free(d_failed, NULL);
		ops->dev_free(d_nfailed, NULL);
		assert_int_equal(ops->stream_wait(NULL), 0);
		free(rec);
		free(out);
	}
	free_hdd(&h);
	ops->dedup_free(&dd, NULL);
	ops->dev_free(d_keys, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
	free(keys);
}

/* ---- ABI 2: check_scatter_range and scatter_list ---------------------- */

#define SENT_BYTE 0x7f  /* out's sentinel: every float 0x7f7f7f7f */
#define SENT_FOUND 2u   /* found's sentinel: neither 0 nor 1 */

/* A record of hashing/record.h's layout at p: checksum, key, version,
 * payload (pb bytes, already in place at p + 24). */
static void seal_record(uint8_t *p, uint64_t key, uint64_t ver, size_t pb)
{
	uint64_t kv[2] = { key, ver };
	uint64_t sum = XXH3_64bits_withSeed(kv, sizeof(kv),
					    XXH3_64bits(p + 24, pb));

	memcpy(p, &sum, 8);
	memcpy(p + 8, kv, 16);
}

/* A random stored element of elem (no Inf/NaN: compared bit for bit). */
static void rand_elem(uint8_t *dst, enum embkv_gpu_elem elem)
{
	if (elem == EMBKV_GPU_ELEM_F32) {
		float f = frand() * 100;

		memcpy(dst, &f, 4);
	} else {
		uint16_t v = (uint16_t)next64();

		if (elem == EMBKV_GPU_ELEM_F16 && ((v >> 10) & 31) == 31)
			v &= 0xbfff;
		if (elem == EMBKV_GPU_ELEM_BF16 && ((v >> 7) & 255) == 255)
			v &= 0xbfff;
		memcpy(dst, &v, 2);
	}
}

/* The test's own conversion (hashing/f16.h, not logic_hd.h). */
static float ref_elem(const uint8_t *pay, uint32_t c, enum embkv_gpu_elem elem)
{
	uint16_t v;
	uint32_t u;
	float f;

	if (elem == EMBKV_GPU_ELEM_F32) {
		memcpy(&f, pay + 4 * (size_t)c, 4);
		return f;
	}
	memcpy(&v, pay + 2 * (size_t)c, 2);
	if (elem == EMBKV_GPU_ELEM_F16)
		return embkv_f16_to_f32(v);
	u = (uint32_t)v << 16;
	memcpy(&f, &u, 4);
	return f;
}

static int is_sentinel_row(const float *row, uint32_t dim)
{
	const uint8_t *b = (const uint8_t *)row;

	for (size_t k = 0; k < (size_t)dim * sizeof(float); k++)
		if (b[k] != SENT_BYTE)
			return 0;
	return 1;
}

/* Device out (n x dim) and found (n) filled with the sentinels. */
static void sentinel_bufs(uint32_t n, uint32_t dim, float **d_out,
			  uint8_t **d_found)
{
	*d_out = dev_copy(NULL, (size_t)n * dim * sizeof(float));
	*d_found = dev_copy(NULL, n);
	assert_int_equal(ops->memset_dev(*d_out, SENT_BYTE,
					 (size_t)n * dim * sizeof(float),
					 NULL), 0);
	assert_int_equal(ops->memset_dev(*d_found, SENT_FOUND, n, NULL), 0);
	assert_int_equal(ops->stream_wait(NULL), 0);
}

enum { BAD_NONE = 0, BAD_SOME = 1 };

/* check_scatter_range over [first, first + count) of a dedup of keys
 * (n), records in elem with bad ones at the range's first, middle and
 * last record (torn, other key, dead) when bad; found passed or NULL.
 * Every row of the caller is compared with a reference: a key of the
 * range with a good record has its converted payload and found 1, every
 * other row keeps the sentinel; verdicts are exact and the entry past
 * count is not written. Returns the rows written (for the callers'
 * checks that the case was not vacuous). */
static uint32_t range_case(const struct embkv_gpu_dedup *dd,
			   const struct host_dd *h, uint32_t n,
			   uint32_t first, uint32_t count,
			   enum embkv_gpu_elem elem, uint32_t dim, int bad,
			   int with_found)
{
	const size_t es = elem == EMBKV_GPU_ELEM_F32 ? 4 : 2;
	const size_t pb = es * dim, stride = (24 + pb + 4 + 7) & ~(size_t)7;
	uint8_t *rec = calloc(count ? count : 1, stride), *d_rec;
	uint8_t *want_v = calloc(count + 1, 1), *verd = malloc(count + 1);
	uint8_t *d_verd, *found = malloc(n), *d_found;
	float *out = malloc((size_t)n * dim * sizeof(float)), *d_out;
	uint32_t written = 0;

	assert_true(first + count <= h->nu);
	for (uint32_t r = 0; r < count; r++) {
		uint8_t *p = rec + (size_t)r * stride;
		uint64_t key = h->ukeys[first + r], ver = next64() >> 1;

		for (uint32_t c = 0; c < dim; c++)
			rand_elem(p + 24 + es * c, elem);
		if (bad && count >= 3 && r == count / 2) {
			key ^= 0x100;
			want_v[r] = EMBKV_GPU_REC_OTHER_KEY;
		}
		if (bad && count >= 3 && r == count - 1) {
			ver |= 1ull << 63;
			want_v[r] = EMBKV_GPU_REC_DEAD;
		}
		seal_record(p, key, ver, pb);
		if (bad && r == 0) {
			p[24 + pb - 1] ^= 0x40; /* after the checksum */
			want_v[r] = EMBKV_GPU_REC_TORN;
		}
	}
	d_rec = dev_copy(rec, (size_t)(count ? count : 1) * stride);
	d_verd = dev_copy(NULL, count + 1);
	assert_int_equal(ops->memset_dev(d_verd, 0xee, count + 1, NULL), 0);
	sentinel_bufs(n, dim, &d_out, &d_found);
	assert_int_equal(ops->check_scatter_range(dd, first, count, d_rec,
						  stride, pb, elem, dim, d_out,
						  with_found ? d_found : NULL,
						  d_verd, NULL), 0);
	host_copy(out, d_out, (size_t)n * dim * sizeof(float));
	host_copy(found, d_found, n);
	host_copy(verd, d_verd, count + 1);
	assert_memory_equal(verd, want_v, count);
	assert_int_equal(verd[count], 0xee);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = h->inverse[i];
		const float *row = out + (size_t)i * dim;

		if (r >= first && r < first + count && !want_v[r - first]) {
			const uint8_t *pay = rec + (size_t)(r - first) * stride +
					     24;

			for (uint32_t c = 0; c < dim; c++) {
				float want = ref_elem(pay, c, elem);

				assert_memory_equal(&row[c], &want, 4);
			}
			assert_int_equal(found[i], with_found ? 1 : SENT_FOUND);
			written++;
		} else {
			assert_true(is_sentinel_row(row, dim));
			assert_int_equal(found[i], SENT_FOUND);
		}
	}
	ops->dev_free(d_rec, NULL);
	ops->dev_free(d_verd, NULL);
	ops->dev_free(d_out, NULL);
	ops->dev_free(d_found, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
	free(rec);
	free(want_v);
	free(verd);
	free(found);
	free(out);
	return written;
}

/* A dedup of keys on the device, with its host copy. */
static void dedup_of(const uint64_t *keys, uint32_t n,
		     struct embkv_gpu_dedup *dd, struct host_dd *h,
		     uint64_t **d_keys)
{
	*d_keys = dev_copy(keys, n * sizeof(*keys));
	assert_int_equal(ops->dedup(*d_keys, n, dd, NULL, NULL), 0);
	fetch_dd(dd, h);
}

static void dedup_done(struct embkv_gpu_dedup *dd, struct host_dd *h,
		       uint64_t *d_keys)
{
	free_hdd(h);
	ops->dedup_free(dd, NULL);
	ops->dev_free(d_keys, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
}

/* The runs' occurrences in [first, first + count): rows a range owns. */
static uint32_t occ_of(const struct host_dd *h, uint32_t first, uint32_t count)
{
	return h->offsets[first + count] - h->offsets[first];
}

static void test_check_scatter_range(void **state)
{
	const uint32_t n = 20000, dim = 24;
	uint64_t *keys = make_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint32_t first, count, w;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	assert_true(dd.nu > 100);
	/* a middle range with duplicates, bad records at its edges and
	 * middle; the rows of the other ranges keep the sentinel */
	first = 300; /* make_keys' keys of a few duplicates are 0..996 */
	count = dd.nu / 3;
	assert_true(first + count < dd.nu - 100);
	assert_true(occ_of(&h, first, count) > count + 500); /* duplicates */
	w = range_case(&dd, &h, n, first, count, EMBKV_GPU_ELEM_F32, dim,
		       BAD_SOME, 1);
	assert_true(w > 0 && w < occ_of(&h, first, count));
	/* all good: exactly the range's occurrences written, found NULL */
	w = range_case(&dd, &h, n, first, count, EMBKV_GPU_ELEM_F32, dim,
		       BAD_NONE, 0);
	assert_int_equal(w, occ_of(&h, first, count));
	/* ranges at the start and at the end, and single keys there */
	assert_int_equal(range_case(&dd, &h, n, 0, 5, EMBKV_GPU_ELEM_F32, dim,
				    BAD_NONE, 1), occ_of(&h, 0, 5));
	assert_int_equal(range_case(&dd, &h, n, dd.nu - 7, 7,
				    EMBKV_GPU_ELEM_F32, dim, BAD_NONE, 1),
			 occ_of(&h, dd.nu - 7, 7));
	assert_int_equal(range_case(&dd, &h, n, 0, 1, EMBKV_GPU_ELEM_F32, 3,
				    BAD_NONE, 1), occ_of(&h, 0, 1));
	assert_int_equal(range_case(&dd, &h, n, dd.nu - 1, 1,
				    EMBKV_GPU_ELEM_F32, 3, BAD_NONE, 1),
			 occ_of(&h, dd.nu - 1, 1));
	/* the whole dedup as one range, with bad records */
	w = range_case(&dd, &h, n, 0, dd.nu, EMBKV_GPU_ELEM_F32, 5, BAD_SOME,
		       1);
	assert_true(w > n / 2 && w < n);
	dedup_done(&dd, &h, d_keys);
	free(keys);
}

/* fp16 and bf16 payloads (dim * 2 bytes, an odd dim) over a range. */
static void test_check_scatter_range_2byte(void **state)
{
	const uint32_t n = 3000, dim = 33;
	uint64_t *keys = make_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint32_t first, count;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	first = dd.nu / 4;
	count = dd.nu / 2;
	assert_true(range_case(&dd, &h, n, first, count, EMBKV_GPU_ELEM_F16,
			       dim, BAD_SOME, 1) > 0);
	assert_true(range_case(&dd, &h, n, first, count, EMBKV_GPU_ELEM_BF16,
			       dim, BAD_SOME, 1) > 0);
	assert_int_equal(range_case(&dd, &h, n, 0, dd.nu, EMBKV_GPU_ELEM_F16,
				    dim, BAD_NONE, 0), n);
	dedup_done(&dd, &h, d_keys);
	free(keys);
}

/* count 0 is a no-op (even at first == nu, records NULL); a range past
 * nu (or overflowing uint32), a NULL verdict array or a stride not a
 * multiple of 8 is -EINVAL, and nothing is written. */
static void test_check_scatter_range_args(void **state)
{
	const uint32_t n = 500, dim = 8;
	const size_t pb = dim * 4, stride = (24 + pb + 4 + 7) & ~(size_t)7;
	uint64_t *keys = make_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint8_t *rec, *d_rec, *d_verd, *d_found, verd[2], *found = malloc(n);
	float *d_out, *out = malloc((size_t)n * dim * sizeof(float));
	const enum embkv_gpu_elem f32 = EMBKV_GPU_ELEM_F32;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	rec = calloc(dd.nu, stride);
	for (uint32_t r = 0; r < dd.nu; r++)
		seal_record(rec + (size_t)r * stride, h.ukeys[r], 1, pb);
	d_rec = dev_copy(rec, (size_t)dd.nu * stride);
	d_verd = dev_copy(NULL, 2);
	assert_int_equal(ops->memset_dev(d_verd, 0xee, 2, NULL), 0);
	sentinel_bufs(n, dim, &d_out, &d_found);
	assert_int_equal(ops->check_scatter_range(&dd, 0, 0, NULL, stride, pb,
						  f32, dim, d_out, d_found,
						  d_verd, NULL), 0);
	assert_int_equal(ops->check_scatter_range(&dd, dd.nu, 0, d_rec,
						  stride, pb, f32, dim, d_out,
						  d_found, d_verd, NULL), 0);
	assert_int_equal(ops->check_scatter_range(&dd, dd.nu, 1, d_rec,
						  stride, pb, f32, dim, d_out,
						  d_found, d_verd, NULL),
			 -EINVAL);
	assert_int_equal(ops->check_scatter_range(&dd, 0, dd.nu + 1, d_rec,
						  stride, pb, f32, dim, d_out,
						  d_found, d_verd, NULL),
			 -EINVAL);
	assert_int_equal(ops->check_scatter_range(&dd, dd.nu + 1, 0, d_rec,
						  stride, pb, f32, dim, d_out,
						  d_found, d_verd, NULL),
			 -EINVAL);
	assert_int_equal(ops->check_scatter_range(&dd, 2, UINT32_MAX, d_rec,
						  stride, pb, f32, dim, d_out,
						  d_found, d_verd, NULL),
			 -EINVAL);
	assert_int_equal(ops->check_scatter_range(&dd, 0, 1, d_rec, stride,
						  pb, f32, dim, d_out, d_found,
						  NULL, NULL), -EINVAL);
	assert_int_equal(ops->check_scatter_range(&dd, 0, 1, d_rec, stride - 4,
						  pb, f32, dim, d_out, d_found,
						  d_verd, NULL), -EINVAL);
	assert_int_equal(ops->check_scatter_range(&dd, 0, 1, d_rec, stride,
						  pb, f32, dim + 1, d_out,
						  d_found, d_verd, NULL),
			 -EINVAL);
	/* records not 8-byte aligned (a device load would fault) */
	assert_int_equal(ops->check_scatter_range(&dd, 0, 1, d_rec + 4,
						  stride, pb, f32, dim, d_out,
						  d_found, d_verd, NULL),
			 -EINVAL);
	host_copy(out, d_out, (size_t)n * dim * sizeof(float));
	host_copy(found, d_found, n);
	host_copy(verd, d_verd, 2);
	for (uint32_t i = 0; i < n; i++) {
		assert_true(is_sentinel_row(out + (size_t)i * dim, dim));
		assert_int_equal(found[i], SENT_FOUND);
	}
	assert_int_equal(verd[0], 0xee);
	assert_int_equal(verd[1], 0xee);
	/* and the same arguments, valid, do write (the refusals above
	 * were not a dead op) */
	assert_int_equal(ops->check_scatter_range(&dd, 0, 1, d_rec, stride,
						  pb, f32, dim, d_out, d_found,
						  d_verd, NULL), 0);
	host_copy(verd, d_verd, 2);
	assert_int_equal(verd[0], EMBKV_GPU_REC_OK);
	assert_int_equal(verd[1], 0xee);
	host_copy(found, d_found, n);
	assert_int_equal(found[h.perm[h.offsets[0]]], 1);
	ops->dev_free(d_rec, NULL);
	ops->dev_free(d_verd, NULL);
	ops->dev_free(d_out, NULL);
	ops->dev_free(d_found, NULL);
	dedup_done(&dd, &h, d_keys);
	free(rec);
	free(keys);
	free(out);
	free(found);
}

/* One key 100k times among 2000 distinct ones, keys 0..1999 (every
 * 51st position, in order) and the hot key 1000 everywhere else (so it
 * sorts in the middle): n = 102000, the hot key 100001 times. */
static uint64_t *hot_keys(uint32_t n)
{
	uint64_t *k = malloc(n * sizeof(*k));

	assert_non_null(k);
	for (uint32_t i = 0; i < n; i++)
		k[i] = i % 51 == 0 && i / 51 < 2000 ? i / 51 : 1000;
	return k;
}

static uint32_t run_of_key(const struct host_dd *h, uint64_t key)
{
	for (uint32_t r = 0; r < h->nu; r++)
		if (h->ukeys[r] == key)
			return r;
	fail_msg("key %llu not found", (unsigned long long)key);
	return 0;
}

static void test_check_scatter_range_hot(void **state)
{
	const uint32_t n = 102000, dim = 8;
	uint64_t *keys = hot_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint32_t hr, hot;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	assert_int_equal(dd.nu, 2000);
	hr = run_of_key(&h, 1000);
	hot = h.offsets[hr + 1] - h.offsets[hr];
	assert_true(hot >= 100000);
	assert_int_equal(range_case(&dd, &h, n, hr - 100, 300,
				    EMBKV_GPU_ELEM_F32, dim, BAD_NONE, 1),
			 occ_of(&h, hr - 100, 300));
	assert_int_equal(range_case(&dd, &h, n, hr, 1, EMBKV_GPU_ELEM_BF16,
				    dim, BAD_NONE, 1), hot);
	/* the hot key's record torn: none of its 100k rows written */
	assert_int_equal(range_case(&dd, &h, n, hr, 1, EMBKV_GPU_ELEM_F32,
				    dim, BAD_SOME, 1), 0);
	dedup_done(&dd, &h, d_keys);
	free(keys);
}

/* scatter_list of m listed runs (a shuffled subset of the dedup's, the
 * run force among them when < nu), rows and found flags random; every
 * caller row compared with the reference: a listed key's occurrences
 * have its row and flag (1 without ufound), every other row keeps the
 * sentinel, found untouched when NULL. Returns the rows written. */
/* A list of m of h's runs in shuffled order, force (when < nu) at m /
 * 2: *all holds every run (the list first), *slot[r] the list index of
 * run r (UINT32_MAX when not listed). The caller frees both. */
static void shuffled_list(const struct host_dd *h, uint32_t m, uint32_t force,
			  uint32_t **all_out, uint32_t **slot_out)
{
	uint32_t *all = malloc(h->nu * sizeof(*all));
	uint32_t *slot = malloc(h->nu * sizeof(*slot));

	assert_true(m <= h->nu);
	assert_non_null(all);
	assert_non_null(slot);
	for (uint32_t r = 0; r < h->nu; r++) {
		all[r] = r;
		slot[r] = UINT32_MAX;
	}
	for (uint32_t r = h->nu - 1; r > 0; r--) { /* Fisher-Yates */
		uint32_t j = (uint32_t)(next64() % (r + 1)), t = all[r];

		all[r] = all[j];
		all[j] = t;
	}
	if (force < h->nu && m) {
		for (uint32_t k = 0; k < h->nu; k++)
			if (all[k] == force) {
				all[k] = all[m / 2];
				all[m / 2] = force;
				break;
			}
	}
	for (uint32_t k = 0; k < m; k++)
		slot[all[k]] = k;
	*all_out = all;
	*slot_out = slot;
}

static uint32_t list_case(const struct embkv_gpu_dedup *dd,
			  const struct host_dd *h, uint32_t n, uint32_t m,
			  uint32_t dim, uint32_t force, int with_found,
			  int with_ufound)
{
	uint32_t *all, *slot, *d_list;
	float *rows = malloc(((size_t)m + 1) * dim * sizeof(float)), *d_rows;
	float *out = malloc((size_t)n * dim * sizeof(float)), *d_out;
	uint8_t *uf = malloc(m + 1), *d_uf, *found = malloc(n), *d_found;
	uint32_t written = 0;

	shuffled_list(h, m, force, &all, &slot);
	for (uint32_t k = 0; k < m; k++) {
		uf[k] = (uint8_t)(next64() % 2);
		for (uint32_t c = 0; c < dim; c++)
			rows[(size_t)k * dim + c] = frand();
	}
	d_list = dev_copy(all, (m ? m : 1) * sizeof(uint32_t));
	d_rows = dev_copy(rows, ((size_t)m + 1) * dim * sizeof(float));
	d_uf = dev_copy(uf, m + 1);
	sentinel_bufs(n, dim, &d_out, &d_found);
	assert_int_equal(ops->scatter_list(dd, m ? d_list : NULL, m,
					   m ? d_rows : NULL,
					   with_ufound ? d_uf : NULL, dim,
					   d_out, with_found ? d_found : NULL,
					   NULL), 0);
	host_copy(out, d_out, (size_t)n * dim * sizeof(float));
	host_copy(found, d_found, n);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = slot[h->inverse[i]];
		const float *row = out + (size_t)i * dim;

		if (k != UINT32_MAX) {
			assert_memory_equal(row, rows + (size_t)k * dim,
					    dim * sizeof(float));
			assert_int_equal(found[i],
					 !with_found ? SENT_FOUND
					 : with_ufound ? uf[k] : 1);
			written++;
		} else {
			assert_true(is_sentinel_row(row, dim));
			assert_int_equal(found[i], SENT_FOUND);
		}
	}
	ops->dev_free(d_list, NULL);
	ops->dev_free(d_rows, NULL);
	ops->dev_free(d_uf, NULL);
	ops->dev_free(d_out, NULL);
	ops->dev_free(d_found, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
	free(all);
	free(slot);
	free(rows);
	free(out);
	free(uf);
	free(found);
	return written;
}

static void test_scatter_list(void **state)
{
	const uint32_t n = 20000, dim = 12;
	uint64_t *keys = make_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint32_t hr = 0, w;
	uint32_t one = 0, *d_one;
	float *d_row;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	for (uint32_t r = 1; r < h.nu; r++) /* make_keys' hot key */
		if (h.offsets[r + 1] - h.offsets[r] >
		    h.offsets[hr + 1] - h.offsets[hr])
			hr = r;
	assert_true(h.offsets[hr + 1] - h.offsets[hr] > 3000);
	/* a shuffled third of the keys, the hot one among them */
	w = list_case(&dd, &h, n, dd.nu / 3, dim, hr, 1, 1);
	assert_true(w > 3000 && w < n);
	/* found NULL; ufound NULL (found 1); both; one key; every key */
	assert_true(list_case(&dd, &h, n, dd.nu / 5, dim, UINT32_MAX, 0, 1) >
		    0);
	assert_true(list_case(&dd, &h, n, dd.nu / 5, dim, UINT32_MAX, 1, 0) >
		    0);
	assert_true(list_case(&dd, &h, n, 7, 1, UINT32_MAX, 0, 0) >= 7);
	assert_int_equal(list_case(&dd, &h, n, 1, dim, hr, 1, 1),
			 h.offsets[hr + 1] - h.offsets[hr]);
	assert_int_equal(list_case(&dd, &h, n, dd.nu, 3, hr, 1, 1), n);
	/* m 0: a no-op (nothing written); m > nu: -EINVAL */
	assert_int_equal(list_case(&dd, &h, n, 0, dim, UINT32_MAX, 1, 1), 0);
	d_one = dev_copy(&one, sizeof(one));
	d_row = dev_copy(NULL, dim * sizeof(float));
	assert_int_equal(ops->scatter_list(&dd, d_one, dd.nu + 1, d_row, NULL,
					   dim, d_row, NULL, NULL), -EINVAL);
	ops->dev_free(d_one, NULL);
	ops->dev_free(d_row, NULL);
	dedup_done(&dd, &h, d_keys);
	free(keys);
}

/* One key 100k times: listed alone, and with a few others. */
static void test_scatter_list_hot(void **state)
{
	const uint32_t n = 102000, dim = 8;
	uint64_t *keys = hot_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint32_t hr, hot;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	hr = run_of_key(&h, 1000);
	hot = h.offsets[hr + 1] - h.offsets[hr];
	assert_true(hot >= 100000);
	assert_int_equal(list_case(&dd, &h, n, 1, dim, hr, 1, 1), hot);
	assert_int_equal(list_case(&dd, &h, n, 50, dim, hr, 1, 0),
			 hot + 49);
	dedup_done(&dd, &h, d_keys);
	free(keys);
}

/* ---- ABI 3: check_scatter_list ----------------------------------------- */

/* check_scatter_list of m listed runs (shuffled_list, force at m / 2):
 * record k, of run list[k], in elem at a stride over 24 + pb; with bad
 * and m >= 5, record 0 has a payload byte flipped and record 1 a stale
 * checksum (that of the payload before it was rewritten), both torn,
 * record m - 2 is a good record of another listed key (other key) and
 * record m - 1 is dead; with bad and m < 5, record 0 is torn. found and
 * ufound (random 0/1 per list entry) passed or NULL. Every caller row is
 * compared with a reference computed here, bit for bit: a listed key
 * with a good record has its record's converted payload and found =
 * ufound[k] (1 without ufound), every other row and flag keeps the
 * sentinel; the verdicts are exact and the entry past m not written.
 * Returns the rows written. */
static uint32_t klist_case(const struct embkv_gpu_dedup *dd,
			   const struct host_dd *h, uint32_t n, uint32_t m,
			   enum embkv_gpu_elem elem, uint32_t dim,
			   uint32_t force, int bad, int with_found,
			   int with_ufound)
{
	const size_t es = elem == EMBKV_GPU_ELEM_F32 ? 4 : 2;
	const size_t pb = es * dim, stride = (24 + pb + 4 + 7) & ~(size_t)7;
	uint32_t *all, *slot, *d_list, written = 0;
	uint8_t *rec = calloc(m ? m : 1, stride), *d_rec, *old = malloc(pb);
	uint8_t *want_v = calloc(m + 1, 1), *verd = malloc(m + 1), *d_verd;
	uint8_t *uf = malloc(m + 1), *d_uf, *found = malloc(n), *d_found;
	float *out = malloc((size_t)n * dim * sizeof(float)), *d_out;

	shuffled_list(h, m, force, &all, &slot);
	for (uint32_t k = 0; k < m; k++) {
		uint8_t *p = rec + (size_t)k * stride;
		uint64_t key = h->ukeys[all[k]], ver = next64() >> 1;
		int full = bad && m >= 5;

		uf[k] = (uint8_t)(next64() % 2);
		for (uint32_t c = 0; c < dim; c++)
			rand_elem(p + 24 + es * c, elem);
		if (full && k == m - 2) {
			key = h->ukeys[all[0]]; /* a listed key's, wrong slot */
			want_v[k] = EMBKV_GPU_REC_OTHER_KEY;
		}
		if (full && k == m - 1) {
			ver |= 1ull << 63;
			want_v[k] = EMBKV_GPU_REC_DEAD;
		}
		seal_record(p, key, ver, pb);
		if (full && k == 1) { /* a new payload under the old checksum */
			memcpy(old, p + 24, pb);
			for (uint32_t c = 0; c < dim; c++)
				rand_elem(p + 24 + es * c, elem);
			if (!memcmp(old, p + 24, pb))
				p[24] ^= 0x01;
			want_v[k] = EMBKV_GPU_REC_TORN;
		}
		if (bad && k == 0) {
			p[24 + pb / 2] ^= 0x08; /* after the checksum */
			want_v[k] = EMBKV_GPU_REC_TORN;
		}
	}
	d_list = dev_copy(all, (m ? m : 1) * sizeof(uint32_t));
	d_rec = dev_copy(rec, (size_t)(m ? m : 1) * stride);
	d_uf = dev_copy(uf, m + 1);
	d_verd = dev_copy(NULL, m + 1);
	assert_int_equal(ops->memset_dev(d_verd, 0xee, m + 1, NULL), 0);
	sentinel_bufs(n, dim, &d_out, &d_found);
	assert_int_equal(ops->check_scatter_list(dd, m ? d_list : NULL, m,
						 m ? d_rec : NULL, stride, pb,
						 elem, dim,
						 with_ufound ? d_uf : NULL,
						 d_out,
						 with_found ? d_found : NULL,
						 d_verd, NULL), 0);
	host_copy(out, d_out, (size_t)n * dim * sizeof(float));
	host_copy(found, d_found, n);
	host_copy(verd, d_verd, m + 1);
	for (uint32_t k = 0; k < m; k++)
		assert_int_equal(verd[k], want_v[k]);
	assert_int_equal(verd[m], 0xee);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = slot[h->inverse[i]];
		const float *row = out + (size_t)i * dim;

		if (k != UINT32_MAX && !want_v[k]) {
			const uint8_t *pay = rec + (size_t)k * stride + 24;

			for (uint32_t c = 0; c < dim; c++) {
				float want = ref_elem(pay, c, elem);

				assert_memory_equal(&row[c], &want, 4);
			}
			assert_int_equal(found[i],
					 !with_found ? SENT_FOUND
					 : with_ufound ? uf[k] : 1);
			written++;
		} else {
			assert_true(is_sentinel_row(row, dim));
			assert_int_equal(found[i], SENT_FOUND);
		}
	}
	ops->dev_free(d_list, NULL);
	ops->dev_free(d_rec, NULL);
	ops->dev_free(d_uf, NULL);
	ops->dev_free(d_verd, NULL);
	ops->dev_free(d_out, NULL);
	ops->dev_free(d_found, NULL);
	assert_int_equal(ops->stream_wait(NULL), 0);
	free(all);
	free(slot);
	free(rec);
	free(old);
	free(want_v);
	free(verd);
	free(uf);
	free(found);
	free(out);
	return written;
}

/* The run with the most occurrences. */
static uint32_t hot_run(const struct host_dd *h)
{
	uint32_t hr = 0;

	for (uint32_t r = 1; r < h->nu; r++)
		if (h->offsets[r + 1] - h->offsets[r] >
		    h->offsets[hr + 1] - h->offsets[hr])
			hr = r;
	return hr;
}

static void test_check_scatter_list(void **state)
{
	const uint32_t n = 20000, dim = 24;
	uint64_t *keys = make_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint32_t hr, hot, w;
	const enum embkv_gpu_elem f32 = EMBKV_GPU_ELEM_F32;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	hr = hot_run(&h); /* make_keys' hot key */
	hot = h.offsets[hr + 1] - h.offsets[hr];
	assert_true(hot > 3000);
	assert_true(dd.nu > 1000 && dd.nu < n); /* duplicates */
	/* a shuffled third of the keys, the hot one among them, with every
	 * kind of bad record; found from ufound (zeros among them) */
	w = klist_case(&dd, &h, n, dd.nu / 3, f32, dim, hr, BAD_SOME, 1, 1);
	assert_true(w > hot && w < n);
	/* all good: found NULL; ufound NULL (found 1); neither */
	assert_true(klist_case(&dd, &h, n, dd.nu / 5, f32, dim, UINT32_MAX,
			       BAD_NONE, 0, 1) > 0);
	assert_true(klist_case(&dd, &h, n, dd.nu / 5, f32, dim, UINT32_MAX,
			       BAD_NONE, 1, 0) > 0);
	assert_true(klist_case(&dd, &h, n, 7, f32, 1, UINT32_MAX, BAD_NONE, 0,
			       0) >= 7);
	/* one key; every key (all rows), with and without bad records */
	assert_int_equal(klist_case(&dd, &h, n, 1, f32, dim, hr, BAD_NONE, 1,
				    0), hot);
	assert_int_equal(klist_case(&dd, &h, n, dd.nu, f32, 3, hr, BAD_NONE, 1,
				    1), n);
	w = klist_case(&dd, &h, n, dd.nu, f32, 5, hr, BAD_SOME, 1, 1);
	assert_true(w > hot && w < n);
	/* m 0: a no-op, NULL list and records (nothing written) */
	assert_int_equal(klist_case(&dd, &h, n, 0, f32, dim, UINT32_MAX,
				    BAD_NONE, 1, 1), 0);
	dedup_done(&dd, &h, d_keys);
	free(keys);
}

/* fp16 and bf16 records (an odd dim), bad ones among them. */
static void test_check_scatter_list_2byte(void **state)
{
	const uint32_t n = 3000, dim = 33;
	uint64_t *keys = make_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	assert_true(klist_case(&dd, &h, n, dd.nu / 2, EMBKV_GPU_ELEM_F16, dim,
			       hot_run(&h), BAD_SOME, 1, 1) > 0);
	assert_true(klist_case(&dd, &h, n, dd.nu / 2, EMBKV_GPU_ELEM_BF16,
			       dim, hot_run(&h), BAD_SOME, 1, 0) > 0);
	assert_int_equal(klist_case(&dd, &h, n, dd.nu, EMBKV_GPU_ELEM_BF16,
				    dim, UINT32_MAX, BAD_NONE, 0, 1), n);
	assert_int_equal(klist_case(&dd, &h, n, dd.nu, EMBKV_GPU_ELEM_F16, 4,
				    UINT32_MAX, BAD_NONE, 1, 0), n);
	dedup_done(&dd, &h, d_keys);
	free(keys);
}

/* One key 100k times (hot_keys: the 1999 others once each): listed
 * alone, with 49 others (4 of them bad: exactly 45 of their rows), and
 * its record torn (none of its rows written). */
static void test_check_scatter_list_hot(void **state)
{
	const uint32_t n = 102000, dim = 8;
	uint64_t *keys = hot_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint32_t hr, hot;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	hr = run_of_key(&h, 1000);
	hot = h.offsets[hr + 1] - h.offsets[hr];
	assert_true(hot >= 100000);
	assert_int_equal(klist_case(&dd, &h, n, 1, EMBKV_GPU_ELEM_F32, dim, hr,
				    BAD_NONE, 1, 1), hot);
	assert_int_equal(klist_case(&dd, &h, n, 50, EMBKV_GPU_ELEM_BF16, dim,
				    hr, BAD_NONE, 1, 0), hot + 49);
	assert_int_equal(klist_case(&dd, &h, n, 50, EMBKV_GPU_ELEM_F32, dim,
				    hr, BAD_SOME, 1, 1), hot + 45);
	assert_int_equal(klist_case(&dd, &h, n, 1, EMBKV_GPU_ELEM_F32, dim, hr,
				    BAD_SOME, 1, 1), 0);
	dedup_done(&dd, &h, d_keys);
	free(keys);
}

/* Every refusal of gpu.h's list is -EINVAL and writes nothing (rows,
 * found flags, verdicts); m 0 is a no-op with NULL list, records and
 * out; the same arguments made valid do write. */
static void test_check_scatter_list_args(void **state)
{
	const uint32_t n = 500, dim = 8;
	const size_t pb = dim * 4, stride = (24 + pb + 4 + 7) & ~(size_t)7;
	uint64_t *keys = make_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint32_t list[2] = { 1, 0 }, *d_list;
	uint8_t *rec, *d_rec, *d_verd, *d_found, verd[3], *found = malloc(n);
	float *d_out, *out = malloc((size_t)n * dim * sizeof(float));
	const enum embkv_gpu_elem f32 = EMBKV_GPU_ELEM_F32;

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	rec = calloc(2, stride);
	for (uint32_t k = 0; k < 2; k++) {
		for (uint32_t c = 0; c < dim; c++)
			rand_elem(rec + (size_t)k * stride + 24 + 4 * c, f32);
		seal_record(rec + (size_t)k * stride, h.ukeys[list[k]], 1, pb);
	}
	d_rec = dev_copy(rec, 2 * stride);
	d_list = dev_copy(list, sizeof(list));
	d_verd = dev_copy(NULL, 3);
	assert_int_equal(ops->memset_dev(d_verd, 0xee, 3, NULL), 0);
	sentinel_bufs(n, dim, &d_out, &d_found);
#define KL(dd_, l, m, r, st, p, el, dm, o, v) \
	ops->check_scatter_list(dd_, l, m, r, st, p, el, dm, NULL, o, d_found, \
				v, NULL)
	assert_int_equal(KL(NULL, d_list, 2, d_rec, stride, pb, f32, dim,
			    d_out, d_verd), -EINVAL);
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride, pb, f32, dim,
			    d_out, NULL), -EINVAL);
	assert_int_equal(KL(&dd, NULL, 0, NULL, stride, pb, f32, dim, d_out,
			    NULL), -EINVAL);
	assert_int_equal(KL(&dd, d_list, dd.nu + 1, d_rec, stride, pb, f32,
			    dim, d_out, d_verd), -EINVAL);
	assert_int_equal(KL(&dd, d_list, UINT32_MAX, d_rec, stride, pb, f32,
			    dim, d_out, d_verd), -EINVAL);
	assert_int_equal(KL(&dd, NULL, 2, d_rec, stride, pb, f32, dim, d_out,
			    d_verd), -EINVAL);
	assert_int_equal(KL(&dd, d_list, 2, NULL, stride, pb, f32, dim, d_out,
			    d_verd), -EINVAL);
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride, pb, f32, dim, NULL,
			    d_verd), -EINVAL);
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride, pb, f32, 0, d_out,
			    d_verd), -EINVAL);
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride, pb,
			    (enum embkv_gpu_elem)3, dim, d_out, d_verd),
			 -EINVAL);
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride - 4, pb, f32, dim,
			    d_out, d_verd), -EINVAL);  /* not a multiple of 8 */
	assert_int_equal(KL(&dd, d_list, 2, d_rec, 24 + pb - 8, pb, f32, dim,
			    d_out, d_verd), -EINVAL);  /* under 24 + pb */
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride, pb - 4, f32, dim,
			    d_out, d_verd), -EINVAL);  /* under dim elements */
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride, pb, f32, dim + 1,
			    d_out, d_verd), -EINVAL);
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride, 2 * dim - 1,
			    EMBKV_GPU_ELEM_F16, dim, d_out, d_verd), -EINVAL);
	/* m 0: no-ops, whatever list, records and out are */
	assert_int_equal(KL(&dd, NULL, 0, NULL, stride, pb, f32, dim, NULL,
			    d_verd), 0);
	assert_int_equal(KL(&dd, d_list, 0, d_rec, stride, pb, f32, dim, d_out,
			    d_verd), 0);
	host_copy(out, d_out, (size_t)n * dim * sizeof(float));
	host_copy(found, d_found, n);
	host_copy(verd, d_verd, 3);
	for (uint32_t i = 0; i < n; i++) {
		assert_true(is_sentinel_row(out + (size_t)i * dim, dim));
		assert_int_equal(found[i], SENT_FOUND);
	}
	for (uint32_t k = 0; k < 3; k++)
		assert_int_equal(verd[k], 0xee);
	/* the same arguments, valid, do write (the refusals above were not
	 * a dead op): runs 1 and 0 from slots 0 and 1 */
	assert_int_equal(KL(&dd, d_list, 2, d_rec, stride, pb, f32, dim, d_out,
			    d_verd), 0);
#undef KL
	host_copy(verd, d_verd, 3);
	assert_int_equal(verd[0], EMBKV_GPU_REC_OK);
	assert_int_equal(verd[1], EMBKV_GPU_REC_OK);
	assert_int_equal(verd[2], 0xee);
	host_copy(out, d_out, (size_t)n * dim * sizeof(float));
	host_copy(found, d_found, n);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = h.inverse[i];

		if (r < 2) {
			assert_memory_equal(out + (size_t)i * dim,
					    rec + (size_t)(1 - r) * stride + 24,
					    pb);
			assert_int_equal(found[i], 1);
		} else {
			assert_true(is_sentinel_row(out + (size_t)i * dim,
						    dim));
			assert_int_equal(found[i], SENT_FOUND);
		}
	}
	ops->dev_free(d_rec, NULL);
	ops->dev_free(d_list, NULL);
	ops->dev_free(d_verd, NULL);
	ops->dev_free(d_out, NULL);
	ops->dev_free(d_found, NULL);
	dedup_done(&dd, &h, d_keys);
	free(rec);
	free(keys);
	free(out);
	free(found);
}

/* Coalescing with keys of exactly 2 chunks (65 rows: the most partial
 * rows per row of input, what bounds the partial buffer at n / 32),
 * and of 1, 64, 129, 200 and 1000 rows, against the chunked order
 * computed here: each chunk of 64 summed in input order, then the
 * chunks' sums in order, bit for bit (a partial row of one key read for
 * another would show). */
static void test_coalesce_multichunk(void **state)
{
	const uint32_t counts[] = { 65, 1, 65, 64, 129, 65, 200, 2, 1000, 65 };
	const uint32_t nk = sizeof(counts) / sizeof(counts[0]), dim = 19;
	uint32_t n = 0, twos = 0;
	uint64_t *keys, *d_keys;
	float *g, *d_g, *d_ug, *ug;
	struct embkv_gpu_dedup dd;
	struct host_dd h;

	(void)state;
	for (uint32_t k = 0; k < nk; k++)
		n += counts[k] * 40; /* 40 keys of each count */
	keys = malloc(n * sizeof(*keys));
	g = malloc((size_t)n * dim * sizeof(float));
	{	/* keys interleaved: key (k, j) at random positions */
		uint32_t *left = malloc(nk * 40 * sizeof(*left)), alive = nk * 40;
		uint32_t *ids = malloc(nk * 40 * sizeof(*ids));

		for (uint32_t q = 0; q < nk * 40; q++) {
			left[q] = counts[q / 40];
			ids[q] = q;
		}
		for (uint32_t i = 0; i < n; i++) {
			uint32_t a = (uint32_t)(next64() % alive), q = ids[a];

			keys[i] = 0x5000 + (uint64_t)q * 7919;
			if (!--left[q])
				ids[a] = ids[--alive];
		}
		free(left);
		free(ids);
	}
	for (size_t i = 0; i < (size_t)n * dim; i++)
		g[i] = frand();
	dedup_of(keys, n, &dd, &h, &d_keys);
	assert_int_equal(dd.nu, nk * 40);
	d_g = dev_copy(g, (size_t)n * dim * sizeof(float));
	d_ug = dev_copy(NULL, (size_t)dd.nu * dim * sizeof(float));
	assert_int_equal(ops->coalesce(&dd, d_g, dim, d_ug, NULL), 0);
	ug = malloc((size_t)dd.nu * dim * sizeof(float));
	host_copy(ug, d_ug, (size_t)dd.nu * dim * sizeof(float));
	for (uint32_t r = 0; r < h.nu; r++) {
		uint32_t o0 = h.offsets[r], o1 = h.offsets[r + 1];

		twos += o1 - o0 == 65;
		for (uint32_t c = 0; c < dim; c++) {
			float total = 0;

			for (uint32_t j0 = o0; j0 < o1;
			     j0 += EMBKV_GPU_COALESCE_CHUNK) {
				float acc = g[(size_t)h.perm[j0] * dim + c];

				for (uint32_t j = j0 + 1;
				     j < o1 && j < j0 + EMBKV_GPU_COALESCE_CHUNK;
				     j++)
					acc += g[(size_t)h.perm[j] * dim + c];
				total = j0 == o0 ? acc : total + acc;
			}
			assert_memory_equal(&ug[(size_t)r * dim + c], &total,
					    sizeof(float));
		}
	}
	assert_int_equal(twos, 4 * 40);
	ops->dev_free(d_g, NULL);
	ops->dev_free(d_ug, NULL);
	dedup_done(&dd, &h, d_keys);
	free(keys);
	free(g);
	free(ug);
}

#ifdef EMBKV_GPU_TEST_HOST_STANDIN
/* host_plugin.c's EMBKV_GPU_HOST_TEAR hook (host variant only): the
 * first N records checked in the process come back torn, rows unwritten,
 * the caller's records unchanged; later checks of the same records pass
 * (the re-read); check_scatter_list tears from the same count. The count
 * starts here: calls without the variable set count nothing. */
static void test_host_tear_hook(void **state)
{
	const uint32_t n = 600, dim = 4;
	const size_t pb = dim * 4, stride = (24 + pb + 4 + 7) & ~(size_t)7;
	uint64_t *keys = make_keys(n), *d_keys;
	struct embkv_gpu_dedup dd;
	struct host_dd h;
	uint8_t *rec, *rec0, verd[8];
	float *out = malloc((size_t)n * dim * sizeof(float));
	uint8_t *found = malloc(n);

	(void)state;
	dedup_of(keys, n, &dd, &h, &d_keys);
	rec = calloc(8, stride);
	rec0 = malloc(8 * stride);
	for (uint32_t r = 0; r < 8; r++) {
		for (uint32_t c = 0; c < dim; c++)
			rand_elem(rec + (size_t)r * stride + 24 + 4 * c,
				  EMBKV_GPU_ELEM_F32);
		seal_record(rec + (size_t)r * stride, h.ukeys[10 + r], 1, pb);
	}
	memcpy(rec0, rec, 8 * stride);
	assert_int_equal(setenv("EMBKV_GPU_HOST_TEAR", "5", 1), 0);
	memset(out, SENT_BYTE, (size_t)n * dim * sizeof(float));
	memset(found, SENT_FOUND, n);
	/* 3 records, then 4: the first 5 of them torn (across calls) */
	assert_int_equal(ops->check_scatter_range(&dd, 10, 3, rec, stride, pb,
						  EMBKV_GPU_ELEM_F32, dim, out,
						  found, verd, NULL), 0);
	assert_int_equal(ops->check_scatter_range(&dd, 13, 4, rec + 3 * stride,
						  stride, pb,
						  EMBKV_GPU_ELEM_F32, dim, out,
						  found, verd + 3, NULL), 0);
	for (uint32_t r = 0; r < 7; r++)
		assert_int_equal(verd[r], r < 5 ? EMBKV_GPU_REC_TORN
						: EMBKV_GPU_REC_OK);
	assert_memory_equal(rec, rec0, 8 * stride);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = h.inverse[i];

		assert_int_equal(found[i], r >= 15 && r < 17 ? 1 : SENT_FOUND);
	}
	/* the re-read: the same records now pass */
	assert_int_equal(ops->check_scatter_range(&dd, 10, 8, rec, stride, pb,
						  EMBKV_GPU_ELEM_F32, dim, out,
						  found, verd, NULL), 0);
	for (uint32_t r = 0; r < 8; r++)
		assert_int_equal(verd[r], EMBKV_GPU_REC_OK);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = h.inverse[i];

		assert_int_equal(found[i], r >= 10 && r < 18 ? 1 : SENT_FOUND);
	}
	/* check_scatter_list shares the count (5 so far): at 8, its first 3
	 * records are torn, in list order, and then a range's are not */
	for (uint32_t k = 0; k < 4; k++)
		seal_record(rec + (size_t)k * stride, h.ukeys[23 - k], 1, pb);
	memcpy(rec0, rec, 4 * stride);
	assert_int_equal(setenv("EMBKV_GPU_HOST_TEAR", "8", 1), 0);
	memset(out, SENT_BYTE, (size_t)n * dim * sizeof(float));
	memset(found, SENT_FOUND, n);
	{
		const uint32_t list[4] = { 23, 22, 21, 20 };

		assert_int_equal(ops->check_scatter_list(
					 &dd, list, 4, rec, stride, pb,
					 EMBKV_GPU_ELEM_F32, dim, NULL, out,
					 found, verd, NULL), 0);
		for (uint32_t k = 0; k < 4; k++)
			assert_int_equal(verd[k], k < 3 ? EMBKV_GPU_REC_TORN
							: EMBKV_GPU_REC_OK);
		assert_memory_equal(rec, rec0, 4 * stride);
		assert_int_equal(ops->check_scatter_range(
					 &dd, 23, 1, rec, stride, pb,
					 EMBKV_GPU_ELEM_F32, dim, out, found,
					 verd + 4, NULL), 0);
		assert_int_equal(verd[4], EMBKV_GPU_REC_OK);
		for (uint32_t i = 0; i < n; i++) {
			uint32_t r = h.inverse[i];

			assert_int_equal(found[i], r == 20 || r == 23
						   ? 1 : SENT_FOUND);
			if (r == 20)
				assert_memory_equal(out + (size_t)i * dim,
						    rec + 3 * stride + 24, pb);
		}
		/* the re-read of the list: all pass */
		assert_int_equal(ops->check_scatter_list(
					 &dd, list, 4, rec, stride, pb,
					 EMBKV_GPU_ELEM_F32, dim, NULL, out,
					 found, verd, NULL), 0);
		for (uint32_t k = 0; k < 4; k++)
			assert_int_equal(verd[k], EMBKV_GPU_REC_OK);
	}
	assert_int_equal(unsetenv("EMBKV_GPU_HOST_TEAR"), 0);
	dedup_done(&dd, &h, d_keys);
	free(keys);
	free(rec);
	free(rec0);
	free(out);
	free(found);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dedup),
		cmocka_unit_test(test_coalesce),
		cmocka_unit_test(test_scatter),
		cmocka_unit_test(test_check_scatter),
		cmocka_unit_test(test_check_scatter_2byte),
		cmocka_unit_test(test_coalesce_multichunk),
		cmocka_unit_test(test_check_scatter_range),
		cmocka_unit_test(test_check_scatter_range_2byte),
		cmocka_unit_test(test_check_scatter_range_args),
		cmocka_unit_test(test_check_scatter_range_hot),
		cmocka_unit_test(test_scatter_list),
		cmocka_unit_test(test_scatter_list_hot),
		cmocka_unit_test(test_check_scatter_list),
		cmocka_unit_test(test_check_scatter_list_2byte),
		cmocka_unit_test(test_check_scatter_list_hot),
		cmocka_unit_test(test_check_scatter_list_args),
#ifdef EMBKV_GPU_TEST_HOST_STANDIN
		cmocka_unit_test(test_host_tear_hook),
#endif
	};
	struct embkv_gpu_dev_info di;

	ops = embkv_gpu_plugin_ops();
	if (!ops || ops->abi != EMBKV_GPU_ABI)
		return 1;
	if (ops->probe(&di)) {
		printf("no CUDA device: skipped (%s)\n", ops->last_error());
		return 77;
	}
	printf("device %d: %s, cc %d.%d\n", di.device, di.name, di.cc_major,
	       di.cc_minor);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
