/*
 * Row records: the layout of a partition's row arena, and the validated
 * reader that local threads and RDMA clients both run.
 *
 *   offset 0   u64 checksum  = XXH3_64(key || version, seed = XXH3_64(payload))
 *   offset 8   u64 key
 *   offset 16  u64 version   (bit 63 set: the record is dead, i.e. erased)
 *   offset 24  payload       dim x fp32
 *   then       u32 meta      owner-private: LFU count, dirty, decay epoch
 *
 * The checksum hashes the payload on its own, then key and version seeded
 * with that hash: a reader can copy the payload straight to where the
 * caller wants it and hash it there, and the owner rehashes the payload
 * it just wrote, with loads that line up with the stores that wrote it.
 * (Hashing one span from the key on, over a copy made by memcpy, made
 * every vector load straddle two earlier stores: a failed store forward
 * each, which doubled the cost of a validated read.) Records are
 * self-verifying (Pilaf): a copy is accepted only when its checksum matches
 * and its key is the one asked for, so no reader ever depends on the order
 * in which the bytes of a record were written or DMA'd.
 *
 * The meta word sits outside the checksum and outside what readers copy
 * (header and payload): the owner updates it on every access without
 * resealing the record, and an owner's access to a row touches one region.
 */
#ifndef EMBKV_HASHING_RECORD_H
#define EMBKV_HASHING_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <embkv/embkv.h>
#include "hashing/hash.h"
#include "hashing/sum.h"

#define EMBKV_RECORD_HDR_BYTES 24u
#define EMBKV_RECORD_ALIGN 8u
#define EMBKV_VERSION_DEAD (UINT64_C(1) << 63)
/* Versions a store takes from outside (checkpoint files, partition
 * moves, replicas) are below this: the store's own increments from
 * there (one per update) cannot reach EMBKV_VERSION_DEAD in 2^62 updates,
 * so a live row never reads as dead. */
#define EMBKV_VERSION_MAX (UINT64_C(1) << 62)
/* How often a local reader re-copies a record that keeps failing its
 * checksum before it gives up with EMBKV_ETORN. */
#define EMBKV_READ_MAX_TRIES 64u

struct embkv_record {
	uint64_t checksum;
	uint64_t key;
	uint64_t version;
	float payload[];
};

/* Where the meta word sits after the payload: the payload's bytes rounded
 * up to 4. A 16-bit row of odd dim ends 2 bytes short of that; the word
 * right after it was a misaligned uint32_t (undefined behaviour, trapped
 * by UBSan). The stride is the same either way (8-byte aligned). */
static inline size_t embkv_record_meta_off(size_t payload_bytes)
{
	return (payload_bytes + sizeof(uint32_t) - 1) &
	       ~(sizeof(uint32_t) - 1);
}

/* Bytes between consecutive records of a table with this payload. */
static inline size_t embkv_record_stride(size_t payload_bytes)
{
	size_t n = EMBKV_RECORD_HDR_BYTES +
		   embkv_record_meta_off(payload_bytes) + sizeof(uint32_t);

	return (n + EMBKV_RECORD_ALIGN - 1) & ~(size_t)(EMBKV_RECORD_ALIGN - 1);
}

/* The owner-private meta word after the payload (4-byte aligned). */
static inline uint32_t *embkv_record_meta(struct embkv_record *r,
					  size_t payload_bytes)
{
	return (uint32_t *)(void *)((uint8_t *)r->payload +
				    embkv_record_meta_off(payload_bytes));
}

/*
 * The checksum of a record with this key, version and payload. The payload
 * hash is unseeded on purpose: XXH3 with a seed derives a fresh secret for
 * every input over 240 bytes, which would triple its cost; the 16 bytes of
 * key and version are short enough for a seeded hash to cost nothing extra.
 */
static inline uint64_t embkv_record_sum_of(uint64_t key, uint64_t version,
					   const void *payload,
					   size_t payload_bytes)
{
	uint64_t kv[2] = { key, version };

	return XXH3_64bits_withSeed(kv, sizeof(kv),
				    embkv_sum(payload, payload_bytes));
}

static inline uint64_t embkv_record_sum(const struct embkv_record *r,
					size_t payload_bytes)
{
	return embkv_record_sum_of(r->key, r->version, r->payload,
				   payload_bytes);
}

/*
 * Prefetches every cache line of the first `bytes` of a record (its start
 * is only 8-byte aligned, so it may straddle one line more than
 * bytes / 64) into L2 (prefetcht1). Batches prefetch hundreds of lines at
 * once, and with requests for L2 more of them seem to be in flight:
 * lookups measured 8-10% faster than with prefetcht0 (and writers gain
 * nothing from prefetching for write).
 */
static inline void embkv_record_prefetch(const void *r, size_t bytes)
{
	const uint8_t *p = (const uint8_t *)((uintptr_t)r & ~(uintptr_t)63);
	const uint8_t *end = (const uint8_t *)r + bytes;

	for (; p < end; p += 64)
		__builtin_prefetch(p, 0, 2);
}

enum embkv_record_verdict {
	EMBKV_RECORD_OK = 0,
	EMBKV_RECORD_TORN,      /* checksum mismatch: copy again */
	EMBKV_RECORD_OTHER_KEY, /* row now holds another key */
	EMBKV_RECORD_DEAD,      /* row was erased */
};

/* The verdict on a record read as these header fields and this payload
 * (a private copy, never live memory), for the key asked for. */
static inline enum embkv_record_verdict
embkv_record_judge(uint64_t sum, uint64_t key_read, uint64_t version,
		   const void *payload, uint64_t key, size_t payload_bytes)
{
	if (embkv_record_sum_of(key_read, version, payload, payload_bytes) != sum)
		return EMBKV_RECORD_TORN;
	if (version & EMBKV_VERSION_DEAD)
		return EMBKV_RECORD_DEAD;
	if (key_read != key)
		return EMBKV_RECORD_OTHER_KEY;
	return EMBKV_RECORD_OK;
}

/* Checks a private copy of a record (never live memory). */
static inline enum embkv_record_verdict
embkv_record_check(const struct embkv_record *copy, uint64_t key,
		   size_t payload_bytes)
{
	return embkv_record_judge(copy->checksum, copy->key, copy->version,
				  copy->payload, key, payload_bytes);
}

/*
 * Validated lock-free read of a live record: copies its payload from src
 * to dst (payload_bytes, the caller's memory) and its header to locals,
 * checks the copy, and copies again while the checksum does not match, up
 * to max_tries times. It never trusts what it copied until the checksum
 * over key, version and payload matches; a record that holds another key
 * or is dead is reported as not found, so a reader never returns another
 * key's row, whatever happened to the row in between. Returns 0 (dst holds
 * key's row), EMBKV_ENOTFOUND or EMBKV_ETORN (dst then holds garbage);
 * *retries (if not NULL) grows by the number of extra copies. Any thread.
 */
static inline int embkv_record_read(const struct embkv_record *src, void *dst,
				    uint64_t key, size_t payload_bytes,
				    unsigned max_tries, uint64_t *retries)
{
	for (unsigned t = 0; t < max_tries; t++) {
		enum embkv_record_verdict v;
		uint64_t sum, k, version;

		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		sum = __atomic_load_n(&src->checksum, __ATOMIC_RELAXED);
		k = __atomic_load_n(&src->key, __ATOMIC_RELAXED);
		version = __atomic_load_n(&src->version, __ATOMIC_RELAXED);
		memcpy(dst, src->payload, payload_bytes);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		v = embkv_record_judge(sum, k, version, dst, key, payload_bytes);
		if (v == EMBKV_RECORD_OK)
			return 0;
		if (v != EMBKV_RECORD_TORN)
			return EMBKV_ENOTFOUND;
		if (retries)
			(*retries)++;
	}
	return EMBKV_ETORN;
}

/*
 * Owner only: publish a record's new contents. The payload has already
 * been written in place; this sets key and version, then the checksum
 * last (release ordering), so a reader that sees the new checksum sees
 * everything it covers.
 */
static inline void embkv_record_seal(struct embkv_record *r, uint64_t key,
				     uint64_t version, size_t payload_bytes)
{
	__atomic_store_n(&r->key, key, __ATOMIC_RELAXED);
	__atomic_store_n(&r->version, version, __ATOMIC_RELAXED);
	__atomic_store_n(&r->checksum, embkv_record_sum(r, payload_bytes),
			 __ATOMIC_RELEASE);
}

#endif
