/*
 * The device XXH3 (gpu/xxh3_hd.h) against libxxhash, on the CPU: every
 * length from 0 to 4 KiB (each of XXH3's length classes and block
 * boundaries), misaligned inputs, and seeds 0, 1, 2^64-1 and random ones;
 * then the record checksum against hashing/record.h's. Built by gcc in
 * every build, and by nvcc as CUDA host code in the CUDA flavour
 * (test_gpu_xxh3_nvcc), so the text the kernels compile is the one checked.
 * Also the kernels' other per-element logic (gpu/logic_hd.h): every half
 * against hashing/f16.h, bf16, and the record verdicts. It needs no GPU.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __cplusplus
extern "C" { /* cmocka.h has no C++ guard (nvcc compiles as C++) */
#endif
#include <cmocka.h>
#ifdef __cplusplus
}
#endif
#include <xxhash.h>

#include "gpu/logic_hd.h"
#include "gpu/xxh3_hd.h"
#include "hashing/f16.h"

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint64_t next64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_lengths_and_seeds(void **state)
{
	enum { MAX = 4096 + 64 };
	uint8_t *buf = (uint8_t *)malloc(MAX + 8);
	uint64_t seeds[6] = { 0, 1, UINT64_MAX, 0, 0, 0 };
	unsigned checked = 0;

	(void)state;
	assert_non_null(buf);
	for (size_t i = 0; i < MAX + 8; i++)
		buf[i] = (uint8_t)next64();
	for (int s = 3; s < 6; s++)
		seeds[s] = next64();
	for (size_t len = 0; len <= MAX; len++) {
		for (unsigned off = 0; off < 8; off += (len < 300 ? 1 : 7)) {
			const uint8_t *p = buf + off;

			assert_int_equal(embkv_xxh3_64(p, len),
					 XXH3_64bits(p, len));
			for (int s = 0; s < 6; s++) {
				if (len > 300 && s > 1 && (len % 7))
					continue; /* a sample of the long ones */
				assert_int_equal(embkv_xxh3_64_seed(p, len,
								    seeds[s]),
						 XXH3_64bits_withSeed(p, len,
								      seeds[s]));
				checked++;
			}
		}
	}
	assert_true(checked > 20000);
	free(buf);
}

/* A hash that differs from XXH3 in one case must be caught: flipping one
 * input byte of every class changes the value (the test above is not
 * vacuous for a constant function). */
static void test_sensitive(void **state)
{
	uint8_t b[1024] = { 0 };
	size_t lens[] = { 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1024 };

	(void)state;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint64_t h = embkv_xxh3_64(b, lens[i]);
		size_t last = (lens[i] - 1) % sizeof(b);

		b[last] ^= 1;
		assert_int_not_equal(h, embkv_xxh3_64(b, lens[i]));
		assert_int_equal(embkv_xxh3_64(b, lens[i]),
				 XXH3_64bits(b, lens[i]));
		b[last] ^= 1;
	}
}

/* The record checksum as hashing/record.h defines it:
 * XXH3_64bits_withSeed(key || version, XXH3_64bits(payload)). Payloads of
 * fp32 rows (dim * 4) and of 2-byte rows (dim * 2). */
static void test_record_sum(void **state)
{
	uint8_t payload[4 * 512];

	(void)state;
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)next64();
	for (unsigned dim = 1; dim <= 512; dim += (dim < 70 ? 1 : 37)) {
		for (unsigned esz = 2; esz <= 4; esz += 2) {
			uint64_t key = next64(), ver = next64() >> 1;
			uint64_t kv[2] = { key, ver };
			size_t pb = (size_t)dim * esz;
			uint64_t want = XXH3_64bits_withSeed(
				kv, sizeof(kv), XXH3_64bits(payload, pb));

			assert_int_equal(embkv_xxh3_record_sum(key, ver,
							       payload, pb),
					 want);
		}
	}
}

/* Every one of the 65536 halves, and bf16 as the top of a float. */
static void test_elements(void **state)
{
	uint8_t p[8];

	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float want = embkv_f16_to_f32((uint16_t)h), got;
		uint16_t v = (uint16_t)h;

		memcpy(p + 2, &v, 2);
		got = embkv_gpu_elem_f32(p, 1, EMBKV_GPU_ELEM_F16);
		if (want != want) {
			assert_true(got != got);
			continue;
		}
		assert_memory_equal(&got, &want, sizeof(float));
		got = embkv_gpu_elem_f32(p, 1, EMBKV_GPU_ELEM_BF16);
		{
			uint32_t u = h << 16;
			float f;

			memcpy(&f, &u, 4);
			if (f == f)
				assert_memory_equal(&got, &f, 4);
		}
	}
	{
		float f = -3.25f;

		memcpy(p + 4, &f, 4);
		assert_true(embkv_gpu_elem_f32(p, 1, EMBKV_GPU_ELEM_F32) == f);
	}
}

/* The verdicts of hashing/record.h's judge, on records built here. */
static void test_verdicts(void **state)
{
	uint64_t rec[3 + 8];
	float *pay = (float *)&rec[3];

	(void)state;
	for (int i = 0; i < 16; i++)
		pay[i] = (float)i * 0.5f;
	rec[1] = 77;
	rec[2] = 5;
	rec[0] = XXH3_64bits_withSeed(&rec[1], 16, XXH3_64bits(pay, 64));
	assert_int_equal(embkv_gpu_rec_verdict((uint8_t *)rec, 77, 64),
			 EMBKV_GPU_REC_OK);
	assert_int_equal(embkv_gpu_rec_verdict((uint8_t *)rec, 78, 64),
			 EMBKV_GPU_REC_OTHER_KEY);
	pay[3] = 9;
	assert_int_equal(embkv_gpu_rec_verdict((uint8_t *)rec, 77, 64),
			 EMBKV_GPU_REC_TORN);
	rec[2] |= 1ull << 63;
	rec[0] = XXH3_64bits_withSeed(&rec[1], 16, XXH3_64bits(pay, 64));
	assert_int_equal(embkv_gpu_rec_verdict((uint8_t *)rec, 77, 64),
			 EMBKV_GPU_REC_DEAD);
	/* the payload size counts: a checksum over 64 bytes fails for 60 */
	assert_int_equal(embkv_gpu_rec_verdict((uint8_t *)rec, 77, 60),
			 EMBKV_GPU_REC_TORN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lengths_and_seeds),
		cmocka_unit_test(test_sensitive),
		cmocka_unit_test(test_record_sum),
		cmocka_unit_test(test_elements),
		cmocka_unit_test(test_verdicts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
