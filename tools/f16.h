/*
 * IEEE 754 binary16 ("half") conversions for embkvctl export/import
 * (tools/EXPORT.md). Pure, header-only, any thread.
 *
 * float -> half rounds to nearest, ties to even, in integer arithmetic
 * (no dependence on the compiler's _Float16 or the FPU's rounding mode):
 * values past the largest half (65504, with rounding) become infinity,
 * values below half the smallest subnormal (2^-25) become a signed zero,
 * NaN stays NaN (quiet, sign and top payload bits kept), infinity stays
 * infinity. half -> float is exact.
 */
#ifndef EMBKV_TOOLS_F16_H
#define EMBKV_TOOLS_F16_H

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

#endif
