/*
 * Row initializer tests: determinism per (key, seed), the half-open range
 * and moments of uniform, the moments of normal over 1M draws, zeros, the
 * edges (narrow and huge ranges, odd dims, writes that stay inside the
 * row), a pinned stream, and embkv_init_check's rejections.
 *
 * Statistical bounds are Z_BOUND standard errors of the estimate: the
 * generator is deterministic, so a pass is a pass every time, and a
 * biased or correlated generator misses by far more than that.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/init.h"

#define N_KEYS 16384u
#define DIM_STAT 64u            /* N_KEYS * DIM_STAT = 1M draws */
#define DIM_ODD 37u
#define Z_BOUND 5.0
#define CANARY 12345.0f
#define KEY_BASE UINT64_C(0x5eed0000f00d)
#define SEED_A UINT64_C(7)
#define SEED_B UINT64_C(8)

#define UNI_A (-0.75f)
#define UNI_B 1.25f
#define UNI_BINS 16u
#define NORM_MEAN 0.5f
#define NORM_STD 2.0f
/* P(|X - mu| < k sigma) for a normal X, k = 1 and 2. */
#define P_WITHIN_1SD 0.6826894921370859
#define P_WITHIN_2SD 0.9544997361036416

static struct embkv_init_attr attr(enum embkv_init_type type, float a,
				   float b, uint64_t seed)
{
	struct embkv_init_attr ia;

	memset(&ia, 0, sizeof(ia));
	ia.type = type;
	ia.a = a;
	ia.b = b;
	ia.seed = seed;
	return ia;
}

/* |x - want| <= Z_BOUND * se, with a message that names the quantity. */
static void assert_within(double x, double want, double se, const char *what)
{
	if (!(fabs(x - want) <= Z_BOUND * se))
		fail_msg("%s: %.9g, want %.9g +- %.3g", what, x, want,
			 Z_BOUND * se);
}

/* N_KEYS rows of DIM_STAT, keys KEY_BASE + k. Caller frees. */
static float *fill_rows(const struct embkv_init_attr *ia)
{
	float *v = malloc((size_t)N_KEYS * DIM_STAT * sizeof(float));

	assert_non_null(v);
	for (uint32_t k = 0; k < N_KEYS; k++)
		embkv_init_row(ia, KEY_BASE + k, DIM_STAT,
			       v + (size_t)k * DIM_STAT);
	return v;
}

/* Pearson correlation of x[i] and x[i + lag] over n - lag pairs. */
static double lag_correlation(const float *x, size_t n, size_t lag)
{
	double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
	const size_t m = n - lag;

	for (size_t i = 0; i < m; i++) {
		const double a = x[i], b = x[i + lag];

		sx += a;
		sy += b;
		sxx += a * a;
		syy += b * b;
		sxy += a * b;
	}
	const double cov = sxy / m - (sx / m) * (sy / m);
	const double vx = sxx / m - (sx / m) * (sx / m);
	const double vy = syy / m - (sy / m) * (sy / m);

	return cov / sqrt(vx * vy);
}

static void test_deterministic(void **unused)
{
	static const enum embkv_init_type types[] = {
		EMBKV_INIT_UNIFORM, EMBKV_INIT_NORMAL,
	};
	float r1[DIM_STAT], r2[DIM_STAT], r3[DIM_STAT], r4[DIM_ODD];

	(void)unused;
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		const struct embkv_init_attr ia = attr(types[t], UNI_A, UNI_B,
						       SEED_A);
		const struct embkv_init_attr ib = attr(types[t], UNI_A, UNI_B,
						       SEED_B);

		embkv_init_row(&ia, KEY_BASE, DIM_STAT, r1);
		memset(r2, 0xa5, sizeof(r2));
		embkv_init_row(&ia, KEY_BASE, DIM_STAT, r2);
		assert_memory_equal(r1, r2, sizeof(r1));

		embkv_init_row(&ia, KEY_BASE + 1, DIM_STAT, r3);
		assert_memory_not_equal(r1, r3, sizeof(r1));
		embkv_init_row(&ib, KEY_BASE, DIM_STAT, r3);
		assert_memory_not_equal(r1, r3, sizeof(r1));
		/* Keys differing only in the top bit still differ. */
		embkv_init_row(&ia, KEY_BASE ^ (UINT64_C(1) << 63), DIM_STAT,
			       r3);
		assert_memory_not_equal(r1, r3, sizeof(r1));

		/* Element i does not depend on dim (odd dim included). */
		embkv_init_row(&ia, KEY_BASE, DIM_ODD, r4);
		assert_memory_equal(r1, r4, sizeof(r4));
	}
}

static void test_uniform_range_and_moments(void **unused)
{
	const struct embkv_init_attr ia = attr(EMBKV_INIT_UNIFORM, UNI_A,
					       UNI_B, SEED_A);
	const size_t n = (size_t)N_KEYS * DIM_STAT;
	const double width = (double)UNI_B - UNI_A;
	const double mean = ((double)UNI_A + UNI_B) / 2;
	const double var = width * width / 12;
	/* Var((X - mu)^2) = E(X - mu)^4 - var^2 = w^4/80 - w^4/144. */
	const double var_of_sq = width * width * width * width *
				 (1.0 / 80 - 1.0 / 144);
	const double p_bin = 1.0 / UNI_BINS;
	size_t bins[UNI_BINS] = { 0 };
	double sum = 0, sum_sq = 0, lo = INFINITY, hi = -INFINITY;
	float *v;

	(void)unused;
	v = fill_rows(&ia);
	for (size_t i = 0; i < n; i++) {
		const double x = v[i];

		if (!(v[i] >= UNI_A && v[i] < UNI_B))
			fail_msg("value %zu = %.9g outside [a, b)", i, x);
		sum += x;
		sum_sq += (x - mean) * (x - mean);
		lo = fmin(lo, x);
		hi = fmax(hi, x);
		bins[(size_t)((x - UNI_A) / width * UNI_BINS)]++;
	}
	assert_within(sum / n, mean, sqrt(var / n), "uniform mean");
	assert_within(sum_sq / n, var, sqrt(var_of_sq / n), "uniform var");
	/* The extremes come within a few expected gaps of the ends. */
	assert_within(lo, UNI_A, width / n, "uniform min");
	assert_within(hi, UNI_B, width / n, "uniform max");
	for (size_t b = 0; b < UNI_BINS; b++)
		assert_within((double)bins[b] / n, p_bin,
			      sqrt(p_bin * (1 - p_bin) / n), "uniform bin");

	/* Independence: across elements of a row, and across rows of
	 * consecutive keys (same element). */
	assert_within(lag_correlation(v, n, 1), 0, 1 / sqrt(n),
		      "correlation of adjacent elements");
	assert_within(lag_correlation(v, n, DIM_STAT), 0, 1 / sqrt(n),
		      "correlation of adjacent keys");
	free(v);
}

static void test_uniform_edges(void **unused)
{
	float row[DIM_STAT + 1];
	struct embkv_init_attr ia;

	(void)unused;
	/* One float wide: rounding would land on b half the time. */
	ia = attr(EMBKV_INIT_UNIFORM, 1.0f, nextafterf(1.0f, 2.0f), SEED_A);
	for (uint32_t k = 0; k < N_KEYS / DIM_STAT; k++) {
		embkv_init_row(&ia, KEY_BASE + k, DIM_STAT, row);
		for (uint32_t i = 0; i < DIM_STAT; i++)
			assert_true(row[i] == 1.0f);
	}

	/* b - a overflows a float; values stay finite and in range. */
	ia = attr(EMBKV_INIT_UNIFORM, -FLT_MAX, FLT_MAX, SEED_A);
	for (uint32_t k = 0; k < N_KEYS / DIM_STAT; k++) {
		embkv_init_row(&ia, KEY_BASE + k, DIM_STAT, row);
		for (uint32_t i = 0; i < DIM_STAT; i++)
			assert_true(isfinite(row[i]) && row[i] < FLT_MAX);
	}

	/* Writes stop at dim. */
	ia = attr(EMBKV_INIT_UNIFORM, UNI_A, UNI_B, SEED_A);
	row[DIM_ODD] = CANARY;
	embkv_init_row(&ia, KEY_BASE, DIM_ODD, row);
	assert_true(row[DIM_ODD] == CANARY);
}

/*
 * The stream is part of the storage format: a row re-created after an
 * upgrade must equal the one created before it. With a = 0, b = 1 a value
 * is its 24 random bits times 2^-24, exactly; the bits below were checked
 * against an independent model of the stream (XXH3 of the key's 8
 * little-endian bytes with the seed, then splitmix64 at counters 1..4, top
 * 24 bits). A change to them is a compatibility break. Uniform only: it
 * needs no libm function, so it cannot move with the libm version.
 */
#define GOLDEN_KEY UINT64_C(42)
#define GOLDEN_N 4u
#define TWO_POW_24 16777216.0
static void test_uniform_golden(void **unused)
{
	static const uint32_t want_bits[GOLDEN_N] = {
		10351873, 7440561, 8942750, 16121033,
	};
	const struct embkv_init_attr ia = attr(EMBKV_INIT_UNIFORM, 0.0f, 1.0f,
					       SEED_A);
	float row[GOLDEN_N];

	(void)unused;
	embkv_init_row(&ia, GOLDEN_KEY, GOLDEN_N, row);
	for (uint32_t i = 0; i < GOLDEN_N; i++) {
		const double got = (double)row[i] * TWO_POW_24;

		if (got != (double)want_bits[i])
			fail_msg("element %u: %.9g * 2^-24, want %u * 2^-24",
				 i, got, want_bits[i]);
	}
}

/*
 * The normal stream, pinned the same way. Values come from the same model
 * evaluated in double precision (u1 = (top 24 bits + 1) * 2^-24, u2 = next
 * 24 bits * 2^-24, r = sqrt(-2 ln u1), r cos(2 pi u2), r sin(2 pi u2)); the
 * odd dim takes the cosine half of pair 2. The tolerance absorbs float
 * libm rounding, not a different stream.
 */
#define GOLDEN_NORMAL_N 5u
#define GOLDEN_NORMAL_TOL 1e-5
static void test_normal_golden(void **unused)
{
	static const double want[GOLDEN_NORMAL_N] = {
		0.38285244408, -0.90505934875, 0.83610599177, -0.96284866632,
		0.24915695318,
	};
	const struct embkv_init_attr ia = attr(EMBKV_INIT_NORMAL, 0.0f, 1.0f,
					       SEED_A);
	float row[GOLDEN_NORMAL_N];

	(void)unused;
	embkv_init_row(&ia, GOLDEN_KEY, GOLDEN_NORMAL_N, row);
	for (uint32_t i = 0; i < GOLDEN_NORMAL_N; i++)
		if (!(fabs(row[i] - want[i]) <= GOLDEN_NORMAL_TOL))
			fail_msg("element %u: %.9g, want %.9g", i,
				 (double)row[i], want[i]);
}

/*
 * The smallest u1: GOLDEN_TAIL_KEY's second pair has its top 24 bits all
 * zero (found by search). u1 must be 2^-24, not 0, so the pair is finite
 * with radius sqrt(-2 ln 2^-24) = sqrt(48 ln 2), the largest |x| the
 * generator can give.
 */
#define GOLDEN_TAIL_KEY UINT64_C(10671675)
#define GOLDEN_TAIL_DIM 4u
#define GOLDEN_TAIL_PAIR 2u /* index of the pair's first element */
#define LN_2 0.6931471805599453
static void test_normal_extreme_draw(void **unused)
{
	const struct embkv_init_attr ia = attr(EMBKV_INIT_NORMAL, 0.0f, 1.0f,
					       SEED_A);
	const double want_r = sqrt(48 * LN_2);
	float row[GOLDEN_TAIL_DIM];

	(void)unused;
	embkv_init_row(&ia, GOLDEN_TAIL_KEY, GOLDEN_TAIL_DIM, row);
	for (uint32_t i = 0; i < GOLDEN_TAIL_DIM; i++)
		assert_true(isfinite(row[i]));
	const double r = hypot(row[GOLDEN_TAIL_PAIR],
			       row[GOLDEN_TAIL_PAIR + 1]);

	if (!(fabs(r - want_r) <= GOLDEN_NORMAL_TOL * want_r))
		fail_msg("radius %.9g, want %.9g", r, want_r);
}

static void test_normal_moments(void **unused)
{
	const struct embkv_init_attr ia = attr(EMBKV_INIT_NORMAL, NORM_MEAN,
					       NORM_STD, SEED_A);
	const size_t n = (size_t)N_KEYS * DIM_STAT;
	double sum = 0, sum_sq = 0;
	size_t within1 = 0, within2 = 0;
	float *v;

	(void)unused;
	v = fill_rows(&ia);
	for (size_t i = 0; i < n; i++) {
		const double d = (double)v[i] - NORM_MEAN;

		if (!isfinite(v[i]))
			fail_msg("value %zu not finite", i);
		sum += d;
		sum_sq += d * d;
		within1 += fabs(d) < NORM_STD;
		within2 += fabs(d) < 2 * NORM_STD;
	}
	const double std = sqrt(sum_sq / n);

	assert_within(sum / n, 0, NORM_STD / sqrt(n), "normal mean");
	/* se of the sample stddev of a normal: sigma / sqrt(2n). */
	assert_within(std, NORM_STD, NORM_STD / sqrt(2.0 * n), "normal std");
	assert_within((double)within1 / n, P_WITHIN_1SD,
		      sqrt(P_WITHIN_1SD * (1 - P_WITHIN_1SD) / n),
		      "fraction within 1 sd");
	assert_within((double)within2 / n, P_WITHIN_2SD,
		      sqrt(P_WITHIN_2SD * (1 - P_WITHIN_2SD) / n),
		      "fraction within 2 sd");
	/* Both Box-Muller outputs are used, and they are uncorrelated. */
	assert_within(lag_correlation(v, n, 1), 0, 1 / sqrt(n),
		      "correlation of adjacent elements");
	assert_within(lag_correlation(v, n, DIM_STAT), 0, 1 / sqrt(n),
		      "correlation of adjacent keys");
	free(v);
}

static void test_normal_edges(void **unused)
{
	float row[DIM_ODD + 1];
	struct embkv_init_attr ia;

	(void)unused;
	/* Odd dim: the last element is written, and nothing past it. */
	ia = attr(EMBKV_INIT_NORMAL, NORM_MEAN, NORM_STD, SEED_A);
	for (uint32_t i = 0; i <= DIM_ODD; i++)
		row[i] = CANARY;
	embkv_init_row(&ia, KEY_BASE, DIM_ODD, row);
	for (uint32_t i = 0; i < DIM_ODD; i++)
		assert_true(isfinite(row[i]) && row[i] != CANARY);
	assert_true(row[DIM_ODD] == CANARY);

	/* stddev 0: every value is the mean. */
	ia = attr(EMBKV_INIT_NORMAL, NORM_MEAN, 0.0f, SEED_A);
	embkv_init_row(&ia, KEY_BASE, DIM_ODD, row);
	for (uint32_t i = 0; i < DIM_ODD; i++)
		assert_true(row[i] == NORM_MEAN);
}

static void test_zeros(void **unused)
{
	const struct embkv_init_attr ia = attr(EMBKV_INIT_ZEROS, UNI_A, UNI_B,
					       SEED_A);
	float row[DIM_ODD + 1];

	(void)unused;
	for (uint32_t i = 0; i <= DIM_ODD; i++)
		row[i] = CANARY;
	embkv_init_row(&ia, KEY_BASE, DIM_ODD, row);
	for (uint32_t i = 0; i < DIM_ODD; i++) {
		assert_true(row[i] == 0.0f);
		assert_false(signbit(row[i]));
	}
	assert_true(row[DIM_ODD] == CANARY);
}

static void test_check(void **unused)
{
	struct embkv_init_attr ia;

	(void)unused;
	assert_int_equal(embkv_init_check(NULL), -EINVAL);

	ia = attr(EMBKV_INIT_ZEROS, 0.0f, 0.0f, SEED_A);
	assert_int_equal(embkv_init_check(&ia), 0);
	ia = attr(EMBKV_INIT_UNIFORM, UNI_A, UNI_B, SEED_A);
	assert_int_equal(embkv_init_check(&ia), 0);
	ia = attr(EMBKV_INIT_NORMAL, NORM_MEAN, NORM_STD, SEED_A);
	assert_int_equal(embkv_init_check(&ia), 0);
	ia = attr(EMBKV_INIT_NORMAL, NORM_MEAN, 0.0f, SEED_A);
	assert_int_equal(embkv_init_check(&ia), 0);

	ia = attr(EMBKV_INIT_UNIFORM, UNI_B, UNI_B, SEED_A);
	assert_int_equal(embkv_init_check(&ia), -EINVAL);
	ia = attr(EMBKV_INIT_UNIFORM, UNI_B, UNI_A, SEED_A);
	assert_int_equal(embkv_init_check(&ia), -EINVAL);
	ia = attr(EMBKV_INIT_NORMAL, NORM_MEAN, -NORM_STD, SEED_A);
	assert_int_equal(embkv_init_check(&ia), -EINVAL);

	for (int type = 0; type < EMBKV_INIT_COUNT; type++) {
		ia = attr(type, NAN, UNI_B, SEED_A);
		assert_int_equal(embkv_init_check(&ia), -EINVAL);
		ia = attr(type, UNI_A, NAN, SEED_A);
		assert_int_equal(embkv_init_check(&ia), -EINVAL);
		ia = attr(type, UNI_A, INFINITY, SEED_A);
		assert_int_equal(embkv_init_check(&ia), -EINVAL);
		ia = attr(type, -INFINITY, UNI_B, SEED_A);
		assert_int_equal(embkv_init_check(&ia), -EINVAL);
	}

	ia = attr(EMBKV_INIT_COUNT, UNI_A, UNI_B, SEED_A);
	assert_int_equal(embkv_init_check(&ia), -EINVAL);
	ia = attr((enum embkv_init_type)-1, UNI_A, UNI_B, SEED_A);
	assert_int_equal(embkv_init_check(&ia), -EINVAL);
}

/* A rejected attr still gives a defined row: zeros. */
static void test_invalid_attr_gives_zeros(void **unused)
{
	const struct embkv_init_attr bad[] = {
		attr(EMBKV_INIT_UNIFORM, UNI_B, UNI_A, SEED_A),
		attr(EMBKV_INIT_NORMAL, NAN, NORM_STD, SEED_A),
		attr(EMBKV_INIT_COUNT, UNI_A, UNI_B, SEED_A),
	};
	float row[DIM_ODD];

	(void)unused;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		for (uint32_t i = 0; i < DIM_ODD; i++)
			row[i] = CANARY;
		embkv_init_row(&bad[k], KEY_BASE, DIM_ODD, row);
		for (uint32_t i = 0; i < DIM_ODD; i++)
			assert_true(row[i] == 0.0f);
	}
	for (uint32_t i = 0; i < DIM_ODD; i++)
		row[i] = CANARY;
	embkv_init_row(NULL, KEY_BASE, DIM_ODD, row);
	for (uint32_t i = 0; i < DIM_ODD; i++)
		assert_true(row[i] == 0.0f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_uniform_range_and_moments),
		cmocka_unit_test(test_uniform_edges),
		cmocka_unit_test(test_uniform_golden),
		cmocka_unit_test(test_normal_golden),
		cmocka_unit_test(test_normal_extreme_draw),
		cmocka_unit_test(test_normal_moments),
		cmocka_unit_test(test_normal_edges),
		cmocka_unit_test(test_zeros),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_invalid_attr_gives_zeros),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
