/*
 * Deterministic row initializers: zeros, uniform [a, b), normal(a, b).
 *
 * What: embkv_init_row() fills a new row from (key, seed) alone, so a row
 * that was evicted and is created again -- on this server or on the one a
 * partition moved to -- gets exactly the same values.
 *
 * Why this shape: it runs on every insert, so the key is hashed once
 * (XXH3 over the key's 8 little-endian bytes, seeded with the table's init
 * seed) into a 64-bit stream seed, and each value then costs one
 * splitmix64 finalizer over (stream seed + counter * golden gamma): a
 * counter-based generator, no per-element hashing, no state between rows.
 * Uniform values take the top 24 bits of a draw (exactly representable in
 * a float); normal values come in Box-Muller pairs (both outputs used),
 * both uniforms of a pair taken from one 64-bit draw.
 *
 * Invariants: the output depends only on (type, a, b, seed, key, dim) and
 * element i does not depend on dim (a longer row extends a shorter one).
 * Changing the stream (hash input, constants, bit choice) changes every
 * re-created row: the golden-value test pins it. An attr that fails
 * embkv_init_check() yields zeros, never undefined values.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include <xxhash.h>

#include "server/init.h"

/* splitmix64 (Steele, Lea, Flood 2014): golden-ratio gamma and the
 * finalizer's shifts and multipliers. */
#define INIT_GAMMA UINT64_C(0x9e3779b97f4a7c15)
#define INIT_MIX_MUL1 UINT64_C(0xbf58476d1ce4e5b9)
#define INIT_MIX_MUL2 UINT64_C(0x94d049bb133111eb)
#define INIT_MIX_SHIFT1 30
#define INIT_MIX_SHIFT2 27
#define INIT_MIX_SHIFT3 31

/* Uniforms carry a float's 24-bit significand: u = bits * 2^-24. */
#define INIT_UNIFORM_BITS 24
#define INIT_UNIFORM_SCALE (1.0f / 16777216.0f) /* 2^-24 */
#define INIT_UNIFORM_MASK ((UINT64_C(1) << INIT_UNIFORM_BITS) - 1)
/* A draw's top 24 bits, and for Box-Muller the next 24 below them. */
#define INIT_HI_SHIFT (64 - INIT_UNIFORM_BITS)
#define INIT_LO_SHIFT (64 - 2 * INIT_UNIFORM_BITS)

#define INIT_KEY_BYTES 8
#define INIT_BYTE_BITS 8
#define INIT_TWO_PI 6.283185307179586f
#define INIT_BOX_MULLER_K (-2.0f) /* r = sqrt(-2 ln u1) */

static inline uint64_t init_mix(uint64_t z)
{
	z = (z ^ (z >> INIT_MIX_SHIFT1)) * INIT_MIX_MUL1;
	z = (z ^ (z >> INIT_MIX_SHIFT2)) * INIT_MIX_MUL2;
	return z ^ (z >> INIT_MIX_SHIFT3);
}

/* Draw number i (0-based) of the stream. */
static inline uint64_t init_draw(uint64_t stream, size_t i)
{
	return init_mix(stream + ((uint64_t)i + 1) * INIT_GAMMA);
}

/* The key's stream seed; the key is hashed as little-endian bytes so that
 * every host derives the same rows. */
static uint64_t init_stream(uint64_t key, uint64_t seed)
{
	unsigned char buf[INIT_KEY_BYTES];

	for (int i = 0; i < INIT_KEY_BYTES; i++)
		buf[i] = (unsigned char)(key >> (INIT_BYTE_BITS * i));
	return XXH3_64bits_withSeed(buf, sizeof(buf), seed);
}

static void init_zeros(uint32_t dim, float *out)
{
	memset(out, 0, (size_t)dim * sizeof(*out));
}

/*
 * a + (b - a) * u in double (b - a may overflow a float), rounded to float.
 * Rounding can land on b itself when the range is narrow; those values are
 * pulled down to the largest float below b, keeping [a, b) half-open.
 */
static void init_uniform(float a, float b, uint64_t stream, uint32_t dim,
			 float *out)
{
	const double lo = a;
	const double width = (double)b - (double)a;
	const float below_b = nextafterf(b, -INFINITY);

	for (size_t i = 0; i < dim; i++) {
		const uint64_t bits = init_draw(stream, i) >> INIT_HI_SHIFT;
		const float u = (float)bits * INIT_UNIFORM_SCALE;
		const float x = (float)(lo + width * u);

		out[i] = x < b ? x : below_b;
	}
}

/*
 * Box-Muller on one 64-bit draw: u1 in (0, 1] (never log(0)) from the top
 * 24 bits, u2 in [0, 1) from the next 24; the pair is r cos(2 pi u2),
 * r sin(2 pi u2) with r = sqrt(-2 ln u1). The 24-bit u1 bounds |x - a| by
 * sqrt(48 ln 2) b ~ 5.77 b: the normal tail beyond it has mass below 1e-8.
 */
static inline void init_gauss_pair(uint64_t d, float mean, float stddev,
				   float *x0, float *x1)
{
	const float u1 = (float)((d >> INIT_HI_SHIFT) + 1) *
			 INIT_UNIFORM_SCALE;
	const float u2 = (float)((d >> INIT_LO_SHIFT) & INIT_UNIFORM_MASK) *
			 INIT_UNIFORM_SCALE;
	const float r = stddev * sqrtf(INIT_BOX_MULLER_K * logf(u1));
	const float theta = INIT_TWO_PI * u2;

	*x0 = mean + r * cosf(theta);
	*x1 = mean + r * sinf(theta);
}

/* Pair k fills elements 2k and 2k + 1; an odd dim keeps the first half of
 * one more pair, so element i never depends on dim. */
static void init_normal(float mean, float stddev, uint64_t stream,
			uint32_t dim, float *out)
{
	size_t i;
	float spare;

	for (i = 0; i + 1 < dim; i += 2)
		init_gauss_pair(init_draw(stream, i / 2), mean, stddev,
				&out[i], &out[i + 1]);
	if (i < dim)
		init_gauss_pair(init_draw(stream, i / 2), mean, stddev,
				&out[i], &spare);
}

int embkv_init_check(const struct embkv_init_attr *ia)
{
	if (!ia)
		return -EINVAL;
	if (!isfinite(ia->a) || !isfinite(ia->b))
		return -EINVAL;

	switch (ia->type) {
	case EMBKV_INIT_ZEROS:
		return 0;
	case EMBKV_INIT_UNIFORM:
		return ia->a < ia->b ? 0 : -EINVAL;
	case EMBKV_INIT_NORMAL:
		return ia->b >= 0.0f ? 0 : -EINVAL;
	case EMBKV_INIT_COUNT:
	default:
		return -EINVAL;
	}
}

void embkv_init_row(const struct embkv_init_attr *ia, uint64_t key,
		    uint32_t dim, float *out)
{
	if (!out || dim == 0)
		return;
	if (embkv_init_check(ia) != 0) {
		init_zeros(dim, out);
		return;
	}

	switch (ia->type) {
	case EMBKV_INIT_UNIFORM:
		init_uniform(ia->a, ia->b, init_stream(key, ia->seed), dim,
			     out);
		break;
	case EMBKV_INIT_NORMAL:
		init_normal(ia->a, ia->b, init_stream(key, ia->seed), dim,
			    out);
		break;
	case EMBKV_INIT_ZEROS:
	case EMBKV_INIT_COUNT:
	default:
		init_zeros(dim, out);
		break;
	}
}
