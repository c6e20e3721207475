/*
 * The CUDA kernels (gpu/kernels.cu) on a GPU, through the plugin's table
 * (gpu/gpu.h): dedup with a million-duplicate-style hot key against a
 * host reference (inverse, order, stability), gradient coalescing against
 * a double reference (and bit for bit against the CPU client's
 * sequential sum for keys with at most a chunk of duplicates), the
 * scatter, and the fused record check with records built by libxxhash,
 * one torn, one of another key and one dead, which must be listed for a
 * retry and left unwritten. Exits 77 ("no CUDA device: skipped") where
 * the plugin finds no device; tools/gpu-check.sh runs it on one.
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dedup),
		cmocka_unit_test(test_coalesce),
		cmocka_unit_test(test_scatter),
		cmocka_unit_test(test_check_scatter),
		cmocka_unit_test(test_check_scatter_2byte),
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
