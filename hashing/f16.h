/*
 * 16-bit float conversions: IEEE 754 binary16 ("half", fp16) and bfloat16
 * (bf16, the upper half of an fp32), for 16-bit table storage (the store's
 * write-back after fp32 optimizer arithmetic, the client's widening of
 * pulled rows) and for embkvctl export/import (tools/EXPORT.md). Pure,
 * header-only, any thread.
 *
 * Two roundings to 16 bits: to nearest, ties to even (every assign,
 * initial row, import; the client's conversions), and stochastic (the
 * optimizer's write-back, EMBKV_TABLE_ROUND_NEAREST unset): round away
 * from the value toward zero with probability equal to the fraction of
 * the gap, using a caller-given uniform random number, so that the
 * expected stored value is the exact one (small updates are not lost, as
 * they are under round-to-nearest when |update| < half a ulp). The random
 * number is a pure function of (seed, key, version, element)
 * (embkv_sr_bits), so a row's updates are reproducible.
 *
 * float -> half rounds to nearest, ties to even, in integer arithmetic
 * (no dependence on the compiler's _Float16 or the FPU's rounding mode):
 * values past the largest half (65504, with rounding) become infinity,
 * values below half the smallest subnormal (2^-25) become a signed zero,
 * NaN stays NaN (quiet, sign and top payload bits kept), infinity stays
 * infinity. half -> float is exact.
 */
#ifndef EMBKV_HASHING_F16_H
#define EMBKV_HASHING_F16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t embkv_f32_to_f16(float f)
{
	uint32_t x, sign, exp, man, h, rem, half, shift;
	int32_t e;

	memcpy(&x, &f, sizeof(x));
	sign = (x >> 16) & 0x8000u;
	exp = (x >> 23) & 0xffu;
	man = x & 0x7fffffu;
	if (exp == 0xffu) /* NaN (quieted) or infinity */
		return (uint16_t)(sign | 0x7c00u |
				  (man ? 0x200u | (man >> 13) : 0));
	e = (int32_t)exp - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00u);
	if (e <= 0) { /* a half subnormal, or zero */
		if (e < -10)
			return (uint16_t)sign;
		man |= 0x800000u; /* the implicit bit (float subnormals
				     are far below e = -10) */
		shift = (uint32_t)(14 - e);
		h = man >> shift;
		rem = man & ((1u << shift) - 1u);
		half = 1u << (shift - 1u);
		if (rem > half || (rem == half && (h & 1u)))
			h++; /* may carry into the smallest normal: right */
		return (uint16_t)(sign | h);
	}
	h = ((uint32_t)e << 10) | (man >> 13);
	rem = man & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
		h++; /* a carry rolls into the exponent, up to infinity */
	return (uint16_t)(sign | h);
}

static inline float embkv_f16_to_f32(uint16_t v)
{
	uint32_t sign = (uint32_t)(v & 0x8000u) << 16;
	uint32_t exp = (v >> 10) & 0x1fu, man = v & 0x3ffu, x;
	float f;

	if (exp == 0 && man == 0) {
		x = sign;
	} else if (exp == 0) { /* subnormal: normalize */
		uint32_t e = 0;

		while (!(man & 0x400u)) {
			man <<= 1;
			e++;
		}
		man &= 0x3ffu;
		x = sign | ((127u - 15u + 1u - e) << 23) | (man << 13);
	} else if (exp == 31) {
		x = sign | 0x7f800000u | (man << 13);
	} else {
		x = sign | ((exp + 127u - 15u) << 23) | (man << 13);
	}
	memcpy(&f, &x, sizeof(f));
	return f;
}

/* bf16: round to nearest, ties to even; NaN stays a quiet NaN. */
static inline uint16_t embkv_f32_to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, sizeof(x));
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40u);
	x += 0x7fffu + ((x >> 16) & 1u);
	return (uint16_t)(x >> 16);
}

static inline float embkv_bf16_to_f32(uint16_t v)
{
	uint32_t x = (uint32_t)v << 16;
	float f;

	memcpy(&f, &x, sizeof(f));
	return f;
}

/*
 * bf16, stochastic: adds 16 random bits below the kept ones, then
 * truncates (the carry rounds away from zero with probability equal to
 * the dropped fraction). Infinity and NaN are left as they are; a value
 * within a ulp of the largest bf16 may round to infinity, as FBGEMM's.
 */
static inline uint16_t embkv_f32_to_bf16_sr(float f, uint32_t rnd)
{
	uint32_t x;

	memcpy(&x, &f, sizeof(x));
	if ((x & 0x7f800000u) == 0x7f800000u)
		return embkv_f32_to_bf16(f);
	x += rnd >> 16;
	return (uint16_t)(x >> 16);
}

/*
 * fp16, stochastic: the two fp16 neighbours of f (toward and away from
 * zero) and a 24-bit uniform draw against the fraction of the gap. Out of
 * the finite range, or NaN: as round-to-nearest.
 */
static inline uint16_t embkv_f32_to_f16_sr(float f, uint32_t rnd)
{
	uint16_t n = embkv_f32_to_f16(f), lo;
	float a = f < 0 ? -f : f, na, lo_f, hi_f;

	if (!(a <= 65504.0f))
		return n;
	na = embkv_f16_to_f32(n);
	na = na < 0 ? -na : na;
	/* lo: the neighbour toward zero (magnitude bits, sign added back) */
	lo = (uint16_t)(n & 0x7fffu);
	if (na > a)
		lo = (uint16_t)(lo - 1u);
	lo_f = embkv_f16_to_f32(lo);
	hi_f = embkv_f16_to_f32((uint16_t)(lo + 1u));
	if (a > lo_f && (double)(rnd >> 8) * (1.0 / 16777216.0) <
			    ((double)a - lo_f) / ((double)hi_f - lo_f))
		lo = (uint16_t)(lo + 1u);
	return (uint16_t)(lo | (n & 0x8000u) | (f < 0 ? 0x8000u : 0));
}

/* splitmix64's finaliser: a counter-based generator, so element i's draw
 * needs no state from element i - 1. */
static inline uint64_t embkv_sr_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The 32 random bits of element i of a row whose draw base is base
 * (embkv_store's XXH3 of seed, key and the row's new version). */
static inline uint32_t embkv_sr_bits(uint64_t base, uint32_t i)
{
	return (uint32_t)(embkv_sr_mix(base + 0x9e3779b97f4a7c15ull *
					      ((uint64_t)i + 1u)) >> 32);
}

#endif
