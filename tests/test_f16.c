/*
 * hashing/f16.h: float -> IEEE half rounds to nearest, ties to even, and
 * half -> float is exact. Edge values by hand (zeros, subnormals, the
 * smallest normal, ties, the largest half and overflow, infinities, NaN),
 * every half back and forth, and, where the compiler has _Float16, a
 * sweep of float bit patterns against its conversion.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "hashing/f16.h"

static float from_bits(uint32_t x)
{
	float f;

	memcpy(&f, &x, sizeof(f));
	return f;
}

static void test_edges(void **state)
{
	(void)state;
	assert_int_equal(embkv_f32_to_f16(0.0f), 0x0000);
	assert_int_equal(embkv_f32_to_f16(-0.0f), 0x8000);
	assert_int_equal(embkv_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(embkv_f32_to_f16(-2.0f), 0xc000);
	assert_int_equal(embkv_f32_to_f16(65504.0f), 0x7bff);   /* max */
	assert_int_equal(embkv_f32_to_f16(65519.0f), 0x7bff);   /* rounds down */
	assert_int_equal(embkv_f32_to_f16(65520.0f), 0x7c00);   /* tie: up, inf */
	assert_int_equal(embkv_f32_to_f16(1e6f), 0x7c00);       /* overflow */
	assert_int_equal(embkv_f32_to_f16(-1e30f), 0xfc00);
	assert_int_equal(embkv_f32_to_f16(INFINITY), 0x7c00);
	assert_int_equal(embkv_f32_to_f16(-INFINITY), 0xfc00);
	assert_int_equal(embkv_f32_to_f16(NAN) & 0x7c00, 0x7c00);
	assert_int_not_equal(embkv_f32_to_f16(NAN) & 0x03ff, 0);
	/* a NaN whose payload is only in the low bits stays a NaN */
	assert_int_not_equal(embkv_f32_to_f16(from_bits(0x7f800001u)) & 0x3ff,
			     0);
	assert_int_equal(embkv_f32_to_f16(0x1p-14f), 0x0400);   /* min normal */
	assert_int_equal(embkv_f32_to_f16(0x1p-24f), 0x0001);   /* min subnormal */
	assert_int_equal(embkv_f32_to_f16(0x1p-25f), 0x0000);   /* tie: even, 0 */
	assert_int_equal(embkv_f32_to_f16(0x1.8p-25f), 0x0001); /* above: up */
	assert_int_equal(embkv_f32_to_f16(0x1.8p-24f), 0x0002); /* tie: even */
	assert_int_equal(embkv_f32_to_f16(0x1.4p-24f), 0x0001);
	assert_int_equal(embkv_f32_to_f16(0x3p-24f), 0x0003);
	assert_int_equal(embkv_f32_to_f16(-0x1p-30f), 0x8000);  /* underflow */
	assert_int_equal(embkv_f32_to_f16(from_bits(1)), 0x0000); /* f32 subn */
	assert_int_equal(embkv_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* max subn */
	assert_int_equal(embkv_f32_to_f16(0x1.ffcp-15f), 0x0400); /* carry */
	/* ties between normals: 1 + 2^-11 is halfway to 1 + 2^-10 */
	assert_int_equal(embkv_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
	assert_int_equal(embkv_f32_to_f16(1.0f + 0x3p-11f), 0x3c02);
	assert_int_equal(embkv_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f),
			 0x3c01);
	assert_true(embkv_f16_to_f32(0x0001) == 0x1p-24f);
	assert_true(embkv_f16_to_f32(0x03ff) == 0x3ffp-24f);
	assert_true(embkv_f16_to_f32(0x7bff) == 65504.0f);
	assert_true(isinf(embkv_f16_to_f32(0xfc00)) &&
		    embkv_f16_to_f32(0xfc00) < 0);
	assert_true(isnan(embkv_f16_to_f32(0x7e00)));
	assert_true(signbit(embkv_f16_to_f32(0x8000)));
}

/* Every half converts to a float and back to itself (NaNs stay NaN). */
static void test_every_half(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 0x10000u; h++) {
		float f = embkv_f16_to_f32((uint16_t)h);
		uint16_t back = embkv_f32_to_f16(f);

		if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) {
			assert_true(isnan(f));
			assert_int_equal(back & 0x7c00u, 0x7c00u);
			assert_int_not_equal(back & 0x3ffu, 0);
			continue;
		}
		if (back != h)
			fail_msg("half %#x -> %a -> %#x", h, (double)f, back);
	}
}

static void test_against_compiler(void **state)
{
	(void)state;
#ifdef __FLT16_MANT_DIG__
	/* Every 251st float bit pattern (all exponents, many mantissas),
	 * plus the patterns next to every half boundary. */
	for (uint64_t x = 0; x <= 0xffffffffull; x += 251) {
		float f = from_bits((uint32_t)x);
		_Float16 c = (_Float16)f;
		uint16_t want;

		if (isnan(f))
			continue;
		memcpy(&want, &c, sizeof(want));
		if (embkv_f32_to_f16(f) != want)
			fail_msg("%a: %#x, compiler %#x", (double)f,
				 embkv_f32_to_f16(f), want);
	}
	for (uint32_t h = 0; h < 0x7c00u; h++) {
		float lo = embkv_f16_to_f32((uint16_t)h);
		float hi = embkv_f16_to_f32((uint16_t)(h + 1));
		float mid = lo + (hi - lo) / 2; /* exact in float */
		float probes[3] = { nextafterf(mid, 0), mid,
				    nextafterf(mid, INFINITY) };

		for (int k = 0; k < 3; k++) {
			_Float16 c = (_Float16)probes[k];
			uint16_t want;

			memcpy(&want, &c, sizeof(want));
			if (embkv_f32_to_f16(probes[k]) != want)
				fail_msg("%a: %#x, compiler %#x",
					 (double)probes[k],
					 embkv_f32_to_f16(probes[k]), want);
		}
	}
#else
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_every_half),
		cmocka_unit_test(test_against_compiler),
	};

	return cmocka_run_group_tests_name("f16", tests, NULL, NULL);
}
