/*
 * Key hashing and the partition function.
 *
 * One XXH3-128 of the key (per-table seed) gives every placement decision:
 *   lo: partition (top bits) and the 16-bit fingerprint (low bits);
 *   hi: the two candidate buckets inside the partition (its two halves).
 * The partition bits and the bucket bits come from different words, so a
 * partition's keys still spread over all of its buckets. Pure functions,
 * any thread; the client computes exactly what the server computes.
 */
#ifndef EMBKV_HASHING_HASH_H
#define EMBKV_HASHING_HASH_H

#include <stdint.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

struct embkv_khash {
	uint64_t lo, hi;
};

#define EMBKV_FP_BITS 16u
#define EMBKV_FP_MASK ((1u << EMBKV_FP_BITS) - 1u)

static inline struct embkv_khash embkv_hash_key(uint64_t key, uint64_t seed)
{
	XXH128_hash_t h = XXH3_128bits_withSeed(&key, sizeof(key), seed);
	struct embkv_khash r = { h.low64, h.high64 };

	return r;
}

/* Partition of a key: the top part_bits bits of lo (0 when part_bits is 0). */
static inline uint32_t embkv_hash_partition(struct embkv_khash h,
					    unsigned part_bits)
{
	return part_bits ? (uint32_t)(h.lo >> (64u - part_bits)) : 0u;
}

/* Fingerprint: 16 low bits of lo, never 0 (0 marks an empty slot). */
static inline uint16_t embkv_hash_fp(struct embkv_khash h)
{
	uint16_t fp = (uint16_t)(h.lo & EMBKV_FP_MASK);

	return fp ? fp : 1u;
}

/* Maps a 32-bit hash onto [0, n) without a division (Lemire's reduction). */
static inline uint64_t embkv_hash_range(uint32_t x, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)x * n) >> 32);
}

/* The two candidate buckets of a key among nbuckets; distinct when
 * nbuckets > 1. */
static inline void embkv_hash_buckets(struct embkv_khash h, uint64_t nbuckets,
				      uint64_t *b1, uint64_t *b2)
{
	uint64_t x = embkv_hash_range((uint32_t)h.hi, nbuckets);
	uint64_t y = embkv_hash_range((uint32_t)(h.hi >> 32), nbuckets);

	if (y == x && nbuckets > 1)
		y = (x + 1 == nbuckets) ? 0 : x + 1;
	*b1 = x;
	*b2 = y;
}

#endif
