/*
 * XXH3-64 (xxHash 0.8, the scalar algorithm) as __host__ __device__ code,
 * so that a CUDA kernel can compute the record checksum of
 * hashing/record.h, XXH3_64(key || version, seed = XXH3_64(payload)),
 * exactly as the servers and the CPU readers do.
 *
 * Why a copy of XXH3 and not libxxhash: xxhash.h has no __device__
 * functions. The invariant: for every input and seed, embkv_xxh3_64 and
 * embkv_xxh3_64_seed return what XXH3_64bits and XXH3_64bits_withSeed
 * return. The same text compiles as plain C11 (gcc) and as CUDA (nvcc),
 * so tests/gpu/test_gpu_xxh3.c checks it against libxxhash on the CPU in
 * every build, over every length to 4 KiB and many seeds, without a GPU.
 */
#ifndef EMBKV_GPU_XXH3_HD_H
#define EMBKV_GPU_XXH3_HD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define EMBKV_HD __host__ __device__ __forceinline__
#else
#define EMBKV_HD static inline
#endif

#define EMBKV_XXH3_SECRET_SIZE 192u

#define EMBKV_XXH3_SECRET_BYTES { \
	0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c, \
	0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f, \
	0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21, \
	0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c, \
	0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3, \
	0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8, \
	0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d, \
	0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64, \
	0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb, \
	0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e, \
	0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce, \
	0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e, }

#ifdef __CUDACC__
static __constant__ uint8_t embkv_xxh3_secret_dev[EMBKV_XXH3_SECRET_SIZE] =
	EMBKV_XXH3_SECRET_BYTES;
#endif
static const uint8_t embkv_xxh3_secret_host[EMBKV_XXH3_SECRET_SIZE] =
	EMBKV_XXH3_SECRET_BYTES;

EMBKV_HD const uint8_t *embkv_xxh3_secret(void)
{
#ifdef __CUDA_ARCH__
	return embkv_xxh3_secret_dev;
#else
	return embkv_xxh3_secret_host;
#endif
}

#define EMBKV_P32_1 UINT64_C(0x9E3779B1)
#define EMBKV_P32_2 UINT64_C(0x85EBCA77)
#define EMBKV_P32_3 UINT64_C(0xC2B2AE3D)
#define EMBKV_P64_1 UINT64_C(0x9E3779B185EBCA87)
#define EMBKV_P64_2 UINT64_C(0xC2B2AE3D27D4EB4F)
#define EMBKV_P64_3 UINT64_C(0x165667B19E3779F9)
#define EMBKV_P64_4 UINT64_C(0x85EBCA77C2B2AE63)
#define EMBKV_P64_5 UINT64_C(0x27D4EB2F165667C5)
#define EMBKV_PMX_1 UINT64_C(0x165667919E3779F9)
#define EMBKV_PMX_2 UINT64_C(0x9FB21C651E98DF25)

/* Little-endian loads (both targets are little-endian); an aligned
 * address takes one load, any other goes through memcpy (bytes). */
EMBKV_HD uint64_t embkv_xxh3_r64(const uint8_t *p)
{
	uint64_t v;

	if (((uintptr_t)p & 7u) == 0)
		return *(const uint64_t *)p;
	memcpy(&v, p, sizeof(v));
	return v;
}

EMBKV_HD uint32_t embkv_xxh3_r32(const uint8_t *p)
{
	uint32_t v;

	if (((uintptr_t)p & 3u) == 0)
		return *(const uint32_t *)p;
	memcpy(&v, p, sizeof(v));
	return v;
}

EMBKV_HD uint64_t embkv_xxh3_rotl64(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

EMBKV_HD uint32_t embkv_xxh3_swap32(uint32_t x)
{
	return ((x << 24) & 0xff000000u) | ((x << 8) & 0x00ff0000u) |
	       ((x >> 8) & 0x0000ff00u) | ((x >> 24) & 0x000000ffu);
}

EMBKV_HD uint64_t embkv_xxh3_swap64(uint64_t x)
{
	return ((uint64_t)embkv_xxh3_swap32((uint32_t)x) << 32) |
	       embkv_xxh3_swap32((uint32_t)(x >> 32));
}

EMBKV_HD uint64_t embkv_xxh3_fold64(uint64_t a, uint64_t b)
{
#ifdef __CUDA_ARCH__
	return (a * b) ^ __umul64hi(a, b);
#else
	unsigned __int128 p = (unsigned __int128)a * b;

	return (uint64_t)p ^ (uint64_t)(p >> 64);
#endif
}

EMBKV_HD uint64_t embkv_xxh64_avalanche(uint64_t h)
{
	h ^= h >> 33;
	h *= EMBKV_P64_2;
	h ^= h >> 29;
	h *= EMBKV_P64_3;
	h ^= h >> 32;
	return h;
}

EMBKV_HD uint64_t embkv_xxh3_avalanche(uint64_t h)
{
	h ^= h >> 37;
	h *= EMBKV_PMX_1;
	h ^= h >> 32;
	return h;
}

EMBKV_HD uint64_t embkv_xxh3_rrmxmx(uint64_t h, uint64_t len)
{
	h ^= embkv_xxh3_rotl64(h, 49) ^ embkv_xxh3_rotl64(h, 24);
	h *= EMBKV_PMX_2;
	h ^= (h >> 35) + len;
	h *= EMBKV_PMX_2;
	h ^= h >> 28;
	return h;
}

EMBKV_HD uint64_t embkv_xxh3_mix16(const uint8_t *in, const uint8_t *sec,
				   uint64_t seed)
{
	uint64_t lo = embkv_xxh3_r64(in), hi = embkv_xxh3_r64(in + 8);

	return embkv_xxh3_fold64(lo ^ (embkv_xxh3_r64(sec) + seed),
				 hi ^ (embkv_xxh3_r64(sec + 8) - seed));
}

/* len <= 16 */
EMBKV_HD uint64_t embkv_xxh3_0to16(const uint8_t *in, size_t len,
				   const uint8_t *sec, uint64_t seed)
{
	if (len > 8) {
		uint64_t bf1 = (embkv_xxh3_r64(sec + 24) ^
				embkv_xxh3_r64(sec + 32)) + seed;
		uint64_t bf2 = (embkv_xxh3_r64(sec + 40) ^
				embkv_xxh3_r64(sec + 48)) - seed;
		uint64_t lo = embkv_xxh3_r64(in) ^ bf1;
		uint64_t hi = embkv_xxh3_r64(in + len - 8) ^ bf2;
		uint64_t acc = len + embkv_xxh3_swap64(lo) + hi +
			       embkv_xxh3_fold64(lo, hi);

		return embkv_xxh3_avalanche(acc);
	}
	if (len >= 4) {
		uint64_t s = seed ^ ((uint64_t)embkv_xxh3_swap32((uint32_t)seed)
				     << 32);
		uint32_t i1 = embkv_xxh3_r32(in), i2 = embkv_xxh3_r32(in + len - 4);
		uint64_t bf = (embkv_xxh3_r64(sec + 8) ^
			       embkv_xxh3_r64(sec + 16)) - s;
		uint64_t i64 = i2 + ((uint64_t)i1 << 32);

		return embkv_xxh3_rrmxmx(i64 ^ bf, len);
	}
	if (len) {
		uint32_t c1 = in[0], c2 = in[len >> 1], c3 = in[len - 1];
		uint32_t comb = (c1 << 16) | (c2 << 24) | c3 |
				((uint32_t)len << 8);
		uint64_t bf = (uint64_t)(embkv_xxh3_r32(sec) ^
					 embkv_xxh3_r32(sec + 4)) + seed;

		return embkv_xxh64_avalanche((uint64_t)comb ^ bf);
	}
	return embkv_xxh64_avalanche(seed ^ (embkv_xxh3_r64(sec + 56) ^
					     embkv_xxh3_r64(sec + 64)));
}

/* 17 <= len <= 128 */
EMBKV_HD uint64_t embkv_xxh3_17to128(const uint8_t *in, size_t len,
				     const uint8_t *sec, uint64_t seed)
{
	uint64_t acc = len * EMBKV_P64_1;

	if (len > 32) {
		if (len > 64) {
			if (len > 96) {
				acc += embkv_xxh3_mix16(in + 48, sec + 96, seed);
				acc += embkv_xxh3_mix16(in + len - 64, sec + 112,
							seed);
			}
			acc += embkv_xxh3_mix16(in + 32, sec + 64, seed);
			acc += embkv_xxh3_mix16(in + len - 48, sec + 80, seed);
		}
		acc += embkv_xxh3_mix16(in + 16, sec + 32, seed);
		acc += embkv_xxh3_mix16(in + len - 32, sec + 48, seed);
	}
	acc += embkv_xxh3_mix16(in, sec, seed);
	acc += embkv_xxh3_mix16(in + len - 16, sec + 16, seed);
	return embkv_xxh3_avalanche(acc);
}

/* 129 <= len <= 240 */
EMBKV_HD uint64_t embkv_xxh3_129to240(const uint8_t *in, size_t len,
				      const uint8_t *sec, uint64_t seed)
{
	uint64_t acc = len * EMBKV_P64_1, end;
	unsigned rounds = (unsigned)(len / 16), i;

	for (i = 0; i < 8; i++)
		acc += embkv_xxh3_mix16(in + 16 * i, sec + 16 * i, seed);
	acc = embkv_xxh3_avalanche(acc);
	/* the last 16 bytes with the secret at 136 - 17 */
	end = embkv_xxh3_mix16(in + len - 16, sec + 136 - 17, seed);
	for (i = 8; i < rounds; i++)
		end += embkv_xxh3_mix16(in + 16 * i, sec + 16 * (i - 8) + 3,
					seed);
	return embkv_xxh3_avalanche(acc + end);
}

EMBKV_HD void embkv_xxh3_accum512(uint64_t *acc, const uint8_t *in,
				  const uint8_t *sec)
{
	for (unsigned i = 0; i < 8; i++) {
		uint64_t v = embkv_xxh3_r64(in + 8 * i);
		uint64_t k = v ^ embkv_xxh3_r64(sec + 8 * i);

		acc[i ^ 1] += v;
		acc[i] += (k & 0xffffffffu) * (k >> 32);
	}
}

EMBKV_HD void embkv_xxh3_scramble(uint64_t *acc, const uint8_t *sec)
{
	for (unsigned i = 0; i < 8; i++) {
		uint64_t a = acc[i];

		a ^= a >> 47;
		a ^= embkv_xxh3_r64(sec + 8 * i);
		a *= EMBKV_P32_1;
		acc[i] = a;
	}
}

/* len > 240, with a secret of EMBKV_XXH3_SECRET_SIZE bytes */
EMBKV_HD uint64_t embkv_xxh3_long(const uint8_t *in, size_t len,
				  const uint8_t *sec)
{
	uint64_t acc[8] = { EMBKV_P32_3, EMBKV_P64_1, EMBKV_P64_2, EMBKV_P64_3,
			    EMBKV_P64_4, EMBKV_P32_2, EMBKV_P64_5, EMBKV_P32_1 };
	const size_t stripes_per_block = (EMBKV_XXH3_SECRET_SIZE - 64) / 8;
	const size_t block = 64 * stripes_per_block;
	size_t blocks = (len - 1) / block, b, s, last;
	uint64_t r = len * EMBKV_P64_1;

	for (b = 0; b < blocks; b++) {
		for (s = 0; s < stripes_per_block; s++)
			embkv_xxh3_accum512(acc, in + b * block + s * 64,
					    sec + s * 8);
		embkv_xxh3_scramble(acc, sec + EMBKV_XXH3_SECRET_SIZE - 64);
	}
	last = ((len - 1) - block * blocks) / 64;
	for (s = 0; s < last; s++)
		embkv_xxh3_accum512(acc, in + blocks * block + s * 64,
				    sec + s * 8);
	embkv_xxh3_accum512(acc, in + len - 64,
			    sec + EMBKV_XXH3_SECRET_SIZE - 64 - 7);
	for (unsigned i = 0; i < 4; i++)
		r += embkv_xxh3_fold64(acc[2 * i] ^
				       embkv_xxh3_r64(sec + 11 + 16 * i),
				       acc[2 * i + 1] ^
				       embkv_xxh3_r64(sec + 11 + 16 * i + 8));
	return embkv_xxh3_avalanche(r);
}

/* XXH3_64bits_withSeed(p, len, seed) */
EMBKV_HD uint64_t embkv_xxh3_64_seed(const void *p, size_t len, uint64_t seed)
{
	const uint8_t *in = (const uint8_t *)p;
	const uint8_t *sec = embkv_xxh3_secret();

	if (len <= 16)
		return embkv_xxh3_0to16(in, len, sec, seed);
	if (len <= 128)
		return embkv_xxh3_17to128(in, len, sec, seed);
	if (len <= 240)
		return embkv_xxh3_129to240(in, len, sec, seed);
	if (seed == 0)
		return embkv_xxh3_long(in, len, sec);
	{
		/* a seeded long input hashes with a secret derived from the
		 * seed (XXH3_initCustomSecret) */
		uint8_t custom[EMBKV_XXH3_SECRET_SIZE];

		for (unsigned i = 0; i < EMBKV_XXH3_SECRET_SIZE / 16; i++) {
			uint64_t lo = embkv_xxh3_r64(sec + 16 * i) + seed;
			uint64_t hi = embkv_xxh3_r64(sec + 16 * i + 8) - seed;

			memcpy(custom + 16 * i, &lo, 8);
			memcpy(custom + 16 * i + 8, &hi, 8);
		}
		return embkv_xxh3_long(in, len, custom);
	}
}

/* XXH3_64bits(p, len) */
EMBKV_HD uint64_t embkv_xxh3_64(const void *p, size_t len)
{
	return embkv_xxh3_64_seed(p, len, 0);
}

/* The record checksum of hashing/record.h (embkv_record_sum_of):
 * XXH3_64(key || version, seed = XXH3_64(payload)). */
EMBKV_HD uint64_t embkv_xxh3_record_sum(uint64_t key, uint64_t version,
					const void *payload,
					size_t payload_bytes)
{
	uint64_t kv[2];

	kv[0] = key;
	kv[1] = version;
	return embkv_xxh3_64_seed(kv, sizeof(kv),
				  embkv_xxh3_64(payload, payload_bytes));
}

#endif
