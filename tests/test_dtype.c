/*
 * 16-bit storage (fp16, bf16) in the shard engine: conversions, rounding
 * (to nearest and stochastic), rows as stored, the record checksum over
 * the stored bytes, optimizer write-backs, bf16 optimizer state, row-wise
 * Adagrad through the store, checkpoints of 16-bit tables, and the
 * engine's memory per row.
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
#include <unistd.h>

#include "hashing/f16.h"
#include "server/ckpt_file.h"
#include "server/store.h"

#define DIM 64u
#define N 512u

static struct embkv_table *make(enum embkv_dtype dt, enum embkv_optimizer o,
				uint32_t flags, float lr)
{
	struct embkv_table_attr a;
	struct embkv_table *t;

	embkv_table_attr_init(&a);
	a.dim = DIM;
	a.dtype = dt;
	a.partitions = 4;
	a.capacity = 4 * N;
	a.opt.type = o;
	a.opt.lr = lr;
	a.opt.eps = 1e-6f;
	a.init.seed = 7;
	a.flags = flags;
	assert_int_equal(embkv_table_create(&a, &t), 0);
	return t;
}

static float value_at(uint32_t i, uint32_t k)
{
	return (float)(sin(0.37 * i + 1.3 * k) * (1.0 + (double)(i % 7)));
}

/* ---- conversions ------------------------------------------------------ */

static void test_bf16_nearest(void **unused)
{
	(void)unused;
	assert_int_equal(embkv_f32_to_bf16(1.0f), 0x3f80);
	/* 1 + 2^-8 is half way between 1 and 1 + 2^-7: ties to even */
	assert_int_equal(embkv_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	assert_int_equal(embkv_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	assert_int_equal(embkv_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
	assert_int_equal(embkv_f32_to_bf16(-2.0f), 0xc000);
	assert_true(isnan(embkv_bf16_to_f32(embkv_f32_to_bf16(NAN))));
	assert_true(isinf(embkv_bf16_to_f32(embkv_f32_to_bf16(INFINITY))));
	for (uint32_t i = 0; i < 1000; i++) {
		float f = value_at(i, 3);
		float b = embkv_bf16_to_f32(embkv_f32_to_bf16(f));

		assert_true(fabsf(b - f) <= fabsf(f) * 0x1p-8f);
	}
}

/* Stochastic rounding: always one of the two neighbours, deterministic in
 * its random bits, unbiased on average. */
static void test_stochastic_unbiased(void **unused)
{
	const float x = 1.0f + 0.3f * 0x1p-7f; /* 30% of a bf16 ulp above 1 */
	const float xh = 1.0f + 0.3f * 0x1p-10f; /* 30% of an fp16 ulp */
	double sum_b = 0, sum_h = 0;
	const uint32_t draws = 20000;

	(void)unused;
	for (uint32_t i = 0; i < draws; i++) {
		uint32_t r = embkv_sr_bits(12345, i);
		float b = embkv_bf16_to_f32(embkv_f32_to_bf16_sr(x, r));
		float h = embkv_f16_to_f32(embkv_f32_to_f16_sr(xh, r));
		float hn = embkv_f16_to_f32(embkv_f32_to_f16_sr(-xh, r));

		assert_true(b == 1.0f || b == 1.0f + 0x1p-7f);
		assert_true(h == 1.0f || h == 1.0f + 0x1p-10f);
		assert_true(hn == -h);
		assert_int_equal(embkv_f32_to_bf16_sr(x, r),
				 embkv_f32_to_bf16_sr(x, embkv_sr_bits(12345, i)));
		sum_b += b;
		sum_h += h;
	}
	assert_true(fabs(sum_b / draws - x) < 0.02 * 0x1p-7);
	assert_true(fabs(sum_h / draws - xh) < 0.02 * 0x1p-10);
	/* exact values never move; fp16 subnormals round between theirs */
	for (uint32_t i = 0; i < 100; i++) {
		uint32_t r = embkv_sr_bits(1, i);
		float sub = 0x1.8p-24f; /* 1.5 x the smallest subnormal */
		float h = embkv_f16_to_f32(embkv_f32_to_f16_sr(sub, r));

		assert_int_equal(embkv_f32_to_bf16_sr(0.5f, r), 0x3f00);
		assert_int_equal(embkv_f32_to_f16_sr(0.5f, r), 0x3800);
		assert_true(h == 0x1p-24f || h == 0x1p-23f);
	}
	assert_int_equal(embkv_f32_to_f16_sr(1e6f, 0), 0x7c00);
}

/* ---- rows as stored --------------------------------------------------- */

/* Assign, then pull and find: the values rounded once to nearest, the same
 * bytes on both paths, and the record's checksum is over those bytes. */
static void round_trip(enum embkv_dtype dt)
{
	struct embkv_table *t = make(dt, EMBKV_OPT_SGD, 0, 0.01f);
	size_t es = embkv_dtype_size(dt), row = DIM * es;
	float *vals = malloc(N * DIM * sizeof(float));
	float *wide = malloc(N * DIM * sizeof(float));
	uint8_t *want = malloc(N * row), *got = malloc(N * row);
	uint8_t *again = malloc(N * row), found[N];
	uint64_t keys[N];

	assert_true(vals && wide && want && got && again);
	assert_int_equal(t->payload_bytes, row);
	for (uint32_t i = 0; i < N; i++) {
		keys[i] = 1000 + 17 * i;
		for (uint32_t k = 0; k < DIM; k++)
			vals[i * DIM + k] = value_at(i, k);
	}
	embkv_dtype_from_f32(dt, vals, want, (size_t)N * DIM);
	assert_int_equal(embkv_table_assign(t, N, keys, vals), N);
	assert_int_equal(embkv_table_pull(t, N, keys, got, found,
					  EMBKV_PULL_INFER, NULL), N);
	assert_memory_equal(got, want, N * row);
	assert_int_equal(embkv_table_find(t, N, keys, again, found, NULL,
					  NULL), N);
	assert_memory_equal(again, want, N * row);
	embkv_dtype_to_f32(dt, got, wide, (size_t)N * DIM);
	for (size_t i = 0; i < (size_t)N * DIM; i++)
		assert_true(fabsf(wide[i] - vals[i]) <=
			    fabsf(vals[i]) * (dt == EMBKV_DTYPE_BF16 ? 0x1p-8f
								     : 0x1p-11f));
	/* every live record validates over dim x 2 bytes, and one flipped
	 * payload byte fails it */
	for (uint32_t p = 0; p < t->nparts; p++) {
		struct embkv_part *pp = &t->parts[p];

		for (uint64_t r = 0; r < pp->next_fresh; r++) {
			struct embkv_record *rec = embkv_part_record(pp, r);

			assert_int_equal(embkv_record_check(rec, rec->key, row),
					 EMBKV_RECORD_OK);
		}
		if (pp->next_fresh) {
			struct embkv_record *rec = embkv_part_record(pp, 0);
			uint8_t *b = (uint8_t *)rec->payload + row - 1;

			*b ^= 1;
			assert_int_equal(embkv_record_check(rec, rec->key, row),
					 EMBKV_RECORD_TORN);
			*b ^= 1;
		}
	}
	free(vals);
	free(wide);
	free(want);
	free(got);
	free(again);
	embkv_table_destroy(t);
}

static void test_round_trip_f16(void **unused)
{
	(void)unused;
	round_trip(EMBKV_DTYPE_F16);
}

static void test_round_trip_bf16(void **unused)
{
	(void)unused;
	round_trip(EMBKV_DTYPE_BF16);
}

static void test_attr_checks(void **unused)
{
	struct embkv_table_attr a;

	(void)unused;
	embkv_table_attr_init(&a);
	a.dtype = EMBKV_DTYPE_COUNT;
	assert_int_equal(embkv_table_attr_check(&a), -EINVAL);
	a.dtype = EMBKV_DTYPE_F32;
	a.flags = EMBKV_TABLE_ROUND_NEAREST; /* fp32 rows are not rounded */
	assert_int_equal(embkv_table_attr_check(&a), -EINVAL);
	a.dtype = EMBKV_DTYPE_BF16;
	assert_int_equal(embkv_table_attr_check(&a), 0);
	a.flags = EMBKV_TABLE_STATE_BF16; /* SGD has no state */
	assert_int_equal(embkv_table_attr_check(&a), -EINVAL);
	a.opt.type = EMBKV_OPT_ADAM;
	assert_int_equal(embkv_table_attr_check(&a), 0);
	a.flags = 1u << 5;
	assert_int_equal(embkv_table_attr_check(&a), -EINVAL);
	assert_int_equal(embkv_dtype_parse("bf16"), EMBKV_DTYPE_BF16);
	assert_int_equal(embkv_dtype_parse("float16"), EMBKV_DTYPE_F16);
	assert_int_equal(embkv_dtype_parse("f32"), EMBKV_DTYPE_F32);
	assert_int_equal(embkv_dtype_parse("int8"), -EINVAL);
	assert_string_equal(embkv_dtype_name(EMBKV_DTYPE_BF16), "bf16");
	assert_int_equal(embkv_dtype_size(EMBKV_DTYPE_F16), 2);
}

/* ---- optimizer write-backs -------------------------------------------- */

/*
 * SGD steps far below half a bf16 ulp: round-to-nearest never moves the
 * rows, stochastic rounding moves them by the right amount on average;
 * the same pushes on another table with the same seed give the same bytes
 * (the random is a function of seed, key, version, element).
 */
static void test_stochastic_push(void **unused)
{
	struct embkv_table *sr = make(EMBKV_DTYPE_BF16, EMBKV_OPT_SGD, 0, 1.0f);
	struct embkv_table *sr2 = make(EMBKV_DTYPE_BF16, EMBKV_OPT_SGD, 0, 1.0f);
	struct embkv_table *rn = make(EMBKV_DTYPE_BF16, EMBKV_OPT_SGD,
				      EMBKV_TABLE_ROUND_NEAREST, 1.0f);
	const uint32_t steps = 200, n = 64;
	const float g = -0.1f * 0x1p-7f; /* + a tenth of an ulp at 1.0 */
	float *ones = malloc(n * DIM * sizeof(float));
	float *grads = malloc(n * DIM * sizeof(float));
	uint16_t *a = malloc(n * DIM * 2), *b = malloc(n * DIM * 2);
	float *w = malloc(n * DIM * sizeof(float));
	uint64_t keys[64];
	double mean = 0;

	(void)unused;
	assert_true(ones && grads && a && b && w);
	for (uint32_t i = 0; i < n * DIM; i++) {
		ones[i] = 1.0f;
		grads[i] = g;
	}
	for (uint32_t i = 0; i < n; i++)
		keys[i] = 5 + i;
	embkv_table_assign(sr, n, keys, ones);
	embkv_table_assign(sr2, n, keys, ones);
	embkv_table_assign(rn, n, keys, ones);
	for (uint32_t s = 0; s < steps; s++) {
		assert_int_equal(embkv_table_push(sr, n, keys, grads), n);
		embkv_table_push(sr2, n, keys, grads);
		embkv_table_push(rn, n, keys, grads);
	}
	embkv_table_find(rn, n, keys, a, NULL, NULL, NULL);
	for (uint32_t i = 0; i < n * DIM; i++)
		assert_int_equal(a[i], 0x3f80); /* nearest: stuck at 1.0 */
	embkv_table_find(sr, n, keys, a, NULL, NULL, NULL);
	embkv_table_find(sr2, n, keys, b, NULL, NULL, NULL);
	assert_memory_equal(a, b, n * DIM * 2);
	embkv_dtype_to_f32(EMBKV_DTYPE_BF16, a, w, (size_t)n * DIM);
	for (uint32_t i = 0; i < n * DIM; i++)
		mean += w[i];
	mean /= n * DIM;
	/* exact: 1 + 200 x 0.1 ulp = 1 + 20 ulp(1.0) = 1.15625 */
	assert_true(fabs(mean - (1.0 - steps * (double)g)) < 0.01);
	free(ones);
	free(grads);
	free(a);
	free(b);
	free(w);
	embkv_table_destroy(sr);
	embkv_table_destroy(sr2);
	embkv_table_destroy(rn);
}

/*
 * Adam with bf16 rows and bf16 state against Adam in fp32, and row-wise
 * Adagrad on bf16 rows against its double-precision formula: the 16-bit
 * table follows within a few bf16 ulps after several steps; accumulate
 * widens and narrows too.
 */
static void test_wide_optimizers(void **unused)
{
	struct embkv_table *f = make(EMBKV_DTYPE_F32, EMBKV_OPT_ADAM, 0, 0.01f);
	struct embkv_table *h = make(EMBKV_DTYPE_BF16, EMBKV_OPT_ADAM,
				     EMBKV_TABLE_STATE_BF16 |
					     EMBKV_TABLE_ROUND_NEAREST,
				     0.01f);
	struct embkv_table *rw = make(EMBKV_DTYPE_BF16,
				      EMBKV_OPT_ROWWISE_ADAGRAD,
				      EMBKV_TABLE_ROUND_NEAREST, 0.05f);
	float vals[8 * DIM], g[8 * DIM], wf[8 * DIM], wh[8 * DIM];
	uint16_t raw[8 * DIM];
	double ref[8 * DIM], acc[8];
	uint64_t keys[8];

	(void)unused;
	assert_int_equal(h->state_bytes, 2 * DIM * 2);
	assert_int_equal(rw->state_bytes, 4);
	for (uint32_t i = 0; i < 8; i++) {
		keys[i] = 77 + i;
		acc[i] = 0.1; /* the default initial_accum */
		for (uint32_t k = 0; k < DIM; k++) {
			vals[i * DIM + k] = 0.5f + 0.25f * value_at(i, k) / 8;
			/* what the bf16 table starts from */
			ref[i * DIM + k] = embkv_bf16_to_f32(
				embkv_f32_to_bf16(vals[i * DIM + k]));
		}
	}
	embkv_table_assign(f, 8, keys, vals);
	embkv_table_assign(h, 8, keys, vals);
	embkv_table_assign(rw, 8, keys, vals);
	for (uint32_t s = 0; s < 6; s++) {
		for (uint32_t i = 0; i < 8 * DIM; i++)
			g[i] = 0.2f * value_at(i + s, s) / 8;
		embkv_table_push(f, 8, keys, g);
		embkv_table_push(h, 8, keys, g);
		embkv_table_push(rw, 8, keys, g);
		for (uint32_t i = 0; i < 8; i++) {
			double sum = 0;

			for (uint32_t k = 0; k < DIM; k++)
				sum += (double)g[i * DIM + k] * g[i * DIM + k];
			acc[i] += sum / DIM;
			for (uint32_t k = 0; k < DIM; k++)
				ref[i * DIM + k] -= 0.05 * g[i * DIM + k] /
						    (sqrt(acc[i]) + 1e-6);
		}
	}
	embkv_table_find(f, 8, keys, wf, NULL, NULL, NULL);
	embkv_table_find(h, 8, keys, raw, NULL, NULL, NULL);
	embkv_dtype_to_f32(EMBKV_DTYPE_BF16, raw, wh, 8 * DIM);
	for (uint32_t i = 0; i < 8 * DIM; i++)
		assert_true(fabsf(wh[i] - wf[i]) <= 6 * 0x1p-8f);
	embkv_table_find(rw, 8, keys, raw, NULL, NULL, NULL);
	embkv_dtype_to_f32(EMBKV_DTYPE_BF16, raw, wh, 8 * DIM);
	for (uint32_t i = 0; i < 8 * DIM; i++)
		assert_true(fabs(wh[i] - ref[i]) <= 6 * 0x1p-9);
	/* accumulate: row += delta, rounded once */
	for (uint32_t i = 0; i < 8 * DIM; i++)
		g[i] = 0.25f;
	assert_int_equal(embkv_table_accumulate(rw, 8, keys, g), 8);
	embkv_table_find(rw, 8, keys, raw, NULL, NULL, NULL);
	embkv_dtype_to_f32(EMBKV_DTYPE_BF16, raw, wf, 8 * DIM);
	for (uint32_t i = 0; i < 8 * DIM; i++)
		assert_true(fabsf(wf[i] - (wh[i] + 0.25f)) <= 0x1p-8f);
	embkv_table_destroy(f);
	embkv_table_destroy(h);
	embkv_table_destroy(rw);
}

/* ---- checkpoints ------------------------------------------------------ */

/* A bf16 table with bf16 Adam state written to a file and read into a
 * fresh table: the same stored bytes; refused by an fp32 table and by one
 * whose state is fp32. */
static void test_checkpoint_bf16(void **unused)
{
	uint32_t fl = EMBKV_TABLE_STATE_BF16;
	struct embkv_table *a = make(EMBKV_DTYPE_BF16, EMBKV_OPT_ADAM, fl, 0.01f);
	struct embkv_table *b = make(EMBKV_DTYPE_BF16, EMBKV_OPT_ADAM, fl, 0.01f);
	struct embkv_table *f32 = make(EMBKV_DTYPE_F32, EMBKV_OPT_ADAM, 0, 0.01f);
	struct embkv_table *st32 = make(EMBKV_DTYPE_BF16, EMBKV_OPT_ADAM, 0,
					0.01f);
	float vals[N * DIM / 4];
	uint16_t ra[N / 4 * DIM], rb[N / 4 * DIM];
	uint64_t keys[N / 4];
	struct embkv_ckpt_file_info info;
	char path[] = "/tmp/test_dtype_ckptXXXXXX", why[256];
	int fd = mkstemp(path);

	(void)unused;
	assert_true(fd >= 0);
	unlink(path);
	for (uint32_t i = 0; i < N / 4; i++) {
		keys[i] = 3 + 11 * i;
		for (uint32_t k = 0; k < DIM; k++)
			vals[i * DIM + k] = value_at(i, k);
	}
	embkv_table_assign(a, N / 4, keys, vals);
	embkv_table_push(a, N / 4, keys, vals);
	for (uint32_t p = 0; p < 4; p++) {
		assert_int_equal(ftruncate(fd, 0), 0);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		assert_int_equal(embkv_ckpt_write_part(a, p, 9, fd, &info), 0);
		assert_int_equal(info.dtype, EMBKV_DTYPE_BF16);
		assert_int_equal(info.row_bytes, 24 + DIM * 2 + 2 * DIM * 2);
		assert_int_equal(embkv_ckpt_verify_part(f32, p, 9, fd, NULL,
							why, sizeof(why)),
				 -EINVAL);
		assert_int_equal(embkv_ckpt_verify_part(st32, p, 9, fd, NULL,
							why, sizeof(why)),
				 -EINVAL);
		assert_non_null(strstr(why, "bf16"));
		assert_int_equal(embkv_ckpt_read_part(b, p, 9, fd, NULL, why,
						      sizeof(why)), 0);
	}
	embkv_table_find(a, N / 4, keys, ra, NULL, NULL, NULL);
	embkv_table_find(b, N / 4, keys, rb, NULL, NULL, NULL);
	assert_memory_equal(ra, rb, sizeof(ra));
	/* state came along: the same push gives the same rows */
	embkv_table_push(a, N / 4, keys, vals);
	embkv_table_push(b, N / 4, keys, vals);
	embkv_table_find(a, N / 4, keys, ra, NULL, NULL, NULL);
	embkv_table_find(b, N / 4, keys, rb, NULL, NULL, NULL);
	assert_memory_equal(ra, rb, sizeof(ra));
	close(fd);
	embkv_table_destroy(a);
	embkv_table_destroy(b);
	embkv_table_destroy(f32);
	embkv_table_destroy(st32);
}

/* Rewrites fd's header as format version 1 with its checksum, and the
 * trailer's chained checksum (header, block sums, trailer) to match. */
static void make_v1(int fd)
{
	off_t len = lseek(fd, 0, SEEK_END);
	uint8_t *b = malloc((size_t)len), *cat;
	uint32_t one = 1, row_bytes, per_block;
	uint64_t rows, sum, nb = 0, at = 128;
	size_t clen = 0;

	assert_non_null(b);
	assert_int_equal(pread(fd, b, (size_t)len, 0), len);
	memcpy(b + 8, &one, 4);
	sum = XXH3_64bits(b, 120);
	memcpy(b + 120, &sum, 8);
	memcpy(&rows, b + 40, 8);
	memcpy(&row_bytes, b + 84, 4);
	memcpy(&per_block, b + 88, 4);
	cat = malloc((size_t)len);
	assert_non_null(cat);
	memcpy(cat, b, 128);
	clen = 128;
	for (uint64_t left = rows; left; nb++) {
		uint64_t in = left < per_block ? left : per_block;

		at += in * row_bytes;
		memcpy(cat + clen, b + at, 8);
		clen += 8;
		at += 8;
		left -= in;
	}
	memcpy(cat + clen, b + len - 32, 24);
	clen += 24;
	sum = XXH3_64bits(cat, clen);
	memcpy(b + len - 8, &sum, 8);
	assert_int_equal(pwrite(fd, b, (size_t)len, 0), len);
	free(cat);
	free(b);
}

/* A version 1 file (fp32, written before 16-bit storage: the same layout
 * with version 1 in its header) is still read; a "version 1" header that
 * names bf16 is refused. */
static void test_checkpoint_v1(void **unused)
{
	struct embkv_table *a = make(EMBKV_DTYPE_F32, EMBKV_OPT_ADAGRAD, 0,
				     0.01f);
	struct embkv_table *b = make(EMBKV_DTYPE_F32, EMBKV_OPT_ADAGRAD, 0,
				     0.01f);
	struct embkv_table *h = make(EMBKV_DTYPE_BF16, EMBKV_OPT_SGD, 0, 0.01f);
	char path[] = "/tmp/test_dtype_v1XXXXXX", why[256];
	int fd = mkstemp(path);
	uint8_t hdr[128];
	uint64_t keys[64];
	float vals[64 * DIM], ra[64 * DIM], rb[64 * DIM];

	(void)unused;
	assert_true(fd >= 0);
	unlink(path);
	for (uint32_t i = 0; i < 64; i++) {
		keys[i] = 100 + i;
		for (uint32_t k = 0; k < DIM; k++)
			vals[i * DIM + k] = value_at(i, k);
	}
	embkv_table_assign(a, 64, keys, vals);
	embkv_table_assign(h, 64, keys, vals);
	for (uint32_t p = 0; p < 4; p++) {
		assert_int_equal(ftruncate(fd, 0), 0);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		assert_int_equal(embkv_ckpt_write_part(a, p, 9, fd, NULL), 0);
		assert_int_equal(pread(fd, hdr, 128, 0), 128);
		/* fp32 rows and state: written as version 1 already */
		assert_int_equal(hdr[8], 1);
		make_v1(fd);
		assert_int_equal(embkv_ckpt_read_part(b, p, 9, fd, NULL, why,
						      sizeof(why)), 0);
	}
	embkv_table_find(a, 64, keys, ra, NULL, NULL, NULL);
	embkv_table_find(b, 64, keys, rb, NULL, NULL, NULL);
	assert_memory_equal(ra, rb, sizeof(ra));
	/* a bf16 file claiming version 1 */
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(embkv_ckpt_write_part(h, 0, 9, fd, NULL), 0);
	assert_int_equal(pread(fd, hdr, 128, 0), 128);
	assert_int_equal(hdr[8], EMBKV_CKPT_FORMAT_VERSION);   /* 2 */
	make_v1(fd);
	assert_int_equal(embkv_ckpt_check_file(fd, NULL, why, sizeof(why)),
			 EMBKV_EPROTO);
	assert_non_null(strstr(why, "version 1"));
	close(fd);
	embkv_table_destroy(a);
	embkv_table_destroy(b);
	embkv_table_destroy(h);
}

/* ---- memory ----------------------------------------------------------- */

/* A bf16 row takes half the payload bytes of an fp32 row in the arena
 * (stride: header 24 + payload + LFU word 4, 8-aligned), bf16 Adam state
 * half of fp32's, row-wise Adagrad one float. */
static void test_memory(void **unused)
{
	struct embkv_table *f = make(EMBKV_DTYPE_F32, EMBKV_OPT_ADAM, 0, 0.01f);
	struct embkv_table *h = make(EMBKV_DTYPE_BF16, EMBKV_OPT_ADAM,
				     EMBKV_TABLE_STATE_BF16, 0.01f);
	struct embkv_table *r = make(EMBKV_DTYPE_BF16,
				     EMBKV_OPT_ROWWISE_ADAGRAD, 0, 0.01f);

	(void)unused;
	assert_int_equal(f->stride, 24 + 256 + 8);
	assert_int_equal(h->stride, 24 + 128 + 8);
	assert_int_equal(f->state_bytes, 512);
	assert_int_equal(h->state_bytes, 256);
	assert_int_equal(r->state_bytes, 4);
	embkv_table_destroy(f);
	embkv_table_destroy(h);
	embkv_table_destroy(r);
}

/* Rows shorter than 8 bytes (fp32 dim 1, 16-bit dims 1 to 3): erased rows
 * are reused through the free list, whose link must survive the meta
 * word beside the payload: a full partition emptied in a mixed order and
 * filled again with new keys holds every one with its value, and so on
 * once more for half of it. */
static void fill_check(struct embkv_table *t, enum embkv_dtype dt,
		       uint32_t dim, uint32_t n, uint64_t key0)
{
	uint64_t keys[64];
	float vals[64 * 3], back[64 * 3];
	uint8_t out[64 * 3 * 4], found[64];

	for (uint32_t i = 0; i < n; i++) {
		keys[i] = key0 + i;
		for (uint32_t k = 0; k < dim; k++)
			vals[i * dim + k] = (float)((key0 + i) % 50) + (float)k;
	}
	assert_int_equal(embkv_table_assign(t, n, keys, vals), n);
	assert_int_equal(embkv_table_pull(t, n, keys, out, found,
					  EMBKV_PULL_INFER, NULL), n);
	embkv_dtype_to_f32(dt, out, back, (size_t)n * dim);
	assert_memory_equal(back, vals, (size_t)n * dim * sizeof(float));
}

static void test_free_list_small_rows(void **unused)
{
	static const struct { enum embkv_dtype dt; uint32_t dim; } c[] = {
		{ EMBKV_DTYPE_F32, 1 }, { EMBKV_DTYPE_F16, 1 },
		{ EMBKV_DTYPE_BF16, 1 }, { EMBKV_DTYPE_BF16, 2 },
		{ EMBKV_DTYPE_F16, 3 }, { EMBKV_DTYPE_F32, 2 },
	};

	(void)unused;
	for (size_t ci = 0; ci < sizeof(c) / sizeof(c[0]); ci++) {
		struct embkv_table_attr a;
		struct embkv_table *t;
		uint64_t k;

		embkv_table_attr_init(&a);
		a.dim = c[ci].dim;
		a.dtype = c[ci].dt;
		a.partitions = 1;
		a.capacity = 64;
		a.opt.type = EMBKV_OPT_SGD;
		a.opt.lr = 0.5f;
		assert_int_equal(embkv_table_create(&a, &t), 0);
		assert_int_equal(t->parts[0].capacity, 64);
		/* a list emptied while fresh rows remain: the next row
		 * must be a fresh one (the list's end marker intact) */
		fill_check(t, c[ci].dt, c[ci].dim, 8, 5001);
		k = 5001;
		assert_int_equal(embkv_table_erase(t, 1, &k), 1);
		fill_check(t, c[ci].dt, c[ci].dim, 3, 6001);
		for (uint32_t i = 0; i < 8; i++) {
			k = 5001 + i;
			embkv_table_erase(t, 1, &k);
			k = 6001 + i;
			embkv_table_erase(t, 1, &k);
		}
		fill_check(t, c[ci].dt, c[ci].dim, 64, 1);
		/* every other row first, then the rest */
		for (uint32_t i = 0; i < 64; i += 2) {
			k = 1 + i;
			assert_int_equal(embkv_table_erase(t, 1, &k), 1);
		}
		for (uint32_t i = 1; i < 64; i += 2) {
			k = 1 + i;
			assert_int_equal(embkv_table_erase(t, 1, &k), 1);
		}
		fill_check(t, c[ci].dt, c[ci].dim, 64, 1001);
		for (uint32_t i = 0; i < 64; i += 2) {
			k = 1001 + i;
			assert_int_equal(embkv_table_erase(t, 1, &k), 1);
		}
		fill_check(t, c[ci].dt, c[ci].dim, 32, 2001);
		embkv_table_destroy(t);
	}
}

/* fp16 optimizer write-backs and accumulates saturate at 65504 instead of
 * overflowing to Inf; bf16 keeps fp32's range. */
static void test_f16_saturates(void **unused)
{
	struct embkv_table *h = make(EMBKV_DTYPE_F16, EMBKV_OPT_SGD,
				     EMBKV_TABLE_ROUND_NEAREST, 1.0f);
	struct embkv_table *b = make(EMBKV_DTYPE_BF16, EMBKV_OPT_SGD,
				     EMBKV_TABLE_ROUND_NEAREST, 1.0f);
	uint64_t k[2] = { 5, 6 };
	float v[2 * DIM], g[DIM], d[DIM], back[2 * DIM];
	uint16_t out[2 * DIM];

	(void)unused;
	for (uint32_t i = 0; i < DIM; i++) {
		v[i] = 60000.0f;            /* key 5 */
		v[DIM + i] = -60000.0f;     /* key 6 */
		g[i] = -20000.0f;           /* SGD: 60000 + 20000 */
		d[i] = -20000.0f;           /* accumulate: -60000 - 20000 */
	}
	assert_int_equal(embkv_table_assign(h, 2, k, v), 2);
	assert_int_equal(embkv_table_push(h, 1, &k[0], g), 1);
	assert_int_equal(embkv_table_accumulate(h, 1, &k[1], d), 1);
	assert_int_equal(embkv_table_pull(h, 2, k, out, NULL,
					  EMBKV_PULL_INFER, NULL), 2);
	embkv_dtype_to_f32(EMBKV_DTYPE_F16, out, back, 2 * DIM);
	for (uint32_t i = 0; i < DIM; i++) {
		assert_true(back[i] == 65504.0f);
		assert_true(back[DIM + i] == -65504.0f);
	}
	/* bf16 has fp32's range: 80000 stays (to bf16's precision) */
	assert_int_equal(embkv_table_assign(b, 1, k, v), 1);
	assert_int_equal(embkv_table_push(b, 1, k, g), 1);
	assert_int_equal(embkv_table_pull(b, 1, k, out, NULL,
					  EMBKV_PULL_INFER, NULL), 1);
	embkv_dtype_to_f32(EMBKV_DTYPE_BF16, out, back, DIM);
	assert_true(back[0] > 79000.0f && back[0] < 81000.0f);
	embkv_table_destroy(h);
	embkv_table_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bf16_nearest),
		cmocka_unit_test(test_stochastic_unbiased),
		cmocka_unit_test(test_round_trip_f16),
		cmocka_unit_test(test_round_trip_bf16),
		cmocka_unit_test(test_attr_checks),
		cmocka_unit_test(test_stochastic_push),
		cmocka_unit_test(test_wide_optimizers),
		cmocka_unit_test(test_checkpoint_bf16),
		cmocka_unit_test(test_checkpoint_v1),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_free_list_small_rows),
		cmocka_unit_test(test_f16_saturates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
