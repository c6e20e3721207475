/*
 * The bucket index of one partition: a flat, page-aligned array of 64-byte
 * buckets with 8 slots each, a slot being fingerprint:16 | row_id:48
 * (0 = empty). It holds no pointers, so it can be registered for one-sided
 * RDMA READ as it is.
 *
 * Writes come from the partition's owner thread only. Readers (local
 * threads, or a remote NIC) read slots without locks; every slot store is a
 * single aligned 8-byte atomic store, so a reader sees a slot either before
 * or after a change, never half of it.
 */
#ifndef EMBKV_HASHING_INDEX_H
#define EMBKV_HASHING_INDEX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <emmintrin.h>

#define EMBKV_BUCKET_SLOTS 8u
#define EMBKV_BUCKET_BYTES 64u
#define EMBKV_ROW_BITS 48u
#define EMBKV_ROW_MASK ((UINT64_C(1) << EMBKV_ROW_BITS) - 1u)
/* Breadth-first cuckoo search visits at most this many buckets. */
#define EMBKV_CUCKOO_MAX_NODES 1024u

struct embkv_bucket {
	uint64_t slot[EMBKV_BUCKET_SLOTS];
} __attribute__((aligned(EMBKV_BUCKET_BYTES)));

/* Tells the index where the key that a slot points at may live. */
struct embkv_index_locator {
	void (*buckets)(void *ctx, uint64_t row, uint64_t *b1, uint64_t *b2);
	void *ctx;
};

struct embkv_cuckoo_node;

struct embkv_index {
	struct embkv_bucket *buckets; /* nbuckets, page aligned, zeroed */
	uint64_t nbuckets;
	size_t bytes;                 /* embkv_index_bytes(nbuckets) */
	int owns_memory;              /* mapped by init, unmapped by fini */
	uint64_t used;                /* occupied slots (owner only) */
	/* Even while no cuckoo path is being moved; odd during a move.
	 * Local readers that miss recheck it (see embkv_index_moves). */
	uint64_t moves_seq;
	uint64_t cuckoo_moves;        /* slots relocated, for stats */
	struct embkv_cuckoo_node *scratch; /* BFS queue (owner only) */
};

static inline uint64_t embkv_slot_make(uint16_t fp, uint64_t row)
{
	return ((uint64_t)fp << EMBKV_ROW_BITS) | (row & EMBKV_ROW_MASK);
}

static inline uint16_t embkv_slot_fp(uint64_t slot)
{
	return (uint16_t)(slot >> EMBKV_ROW_BITS);
}

static inline uint64_t embkv_slot_row(uint64_t slot)
{
	return slot & EMBKV_ROW_MASK;
}

/* Lock-free read of one slot; any thread. */
static inline uint64_t embkv_index_slot_load(const struct embkv_index *ix,
					     uint64_t bucket, unsigned i)
{
	return __atomic_load_n(&ix->buckets[bucket].slot[i], __ATOMIC_ACQUIRE);
}

/* Owner only: store one slot (release, so a record written before is seen
 * by a reader that sees the slot). */
static inline void embkv_index_slot_store(struct embkv_index *ix,
					  uint64_t bucket, unsigned i,
					  uint64_t v)
{
	__atomic_store_n(&ix->buckets[bucket].slot[i], v, __ATOMIC_RELEASE);
}

/*
 * Bit i set when slot i of bucket b holds fingerprint fp (never 0, so an
 * empty slot never matches). A plain read of the bucket is enough, any
 * thread: a slot is only a hint, and whoever follows it validates the
 * record it points at. SSE2 (x86-64 baseline): compare the bucket as 32
 * 16-bit lanes, where slot i's fingerprint is lane 4i + 3, then gather
 * the byte-mask bits of those lanes (bits 8i + 6) into bits 0-7 with one
 * multiply (the partial products land on distinct bits: no carries).
 */
static inline unsigned embkv_index_match(const struct embkv_index *ix,
					 uint64_t b, uint16_t fp)
{
	const __m128i *p = (const __m128i *)&ix->buckets[b];
	__m128i f = _mm_set1_epi16((short)fp);
	uint64_t m = (uint64_t)(uint16_t)_mm_movemask_epi8(
			     _mm_cmpeq_epi16(_mm_load_si128(p), f)) |
		     (uint64_t)(uint16_t)_mm_movemask_epi8(
			     _mm_cmpeq_epi16(_mm_load_si128(p + 1), f)) << 16 |
		     (uint64_t)(uint16_t)_mm_movemask_epi8(
			     _mm_cmpeq_epi16(_mm_load_si128(p + 2), f)) << 32 |
		     (uint64_t)(uint16_t)_mm_movemask_epi8(
			     _mm_cmpeq_epi16(_mm_load_si128(p + 3), f)) << 48;

	m = (m >> 6) & UINT64_C(0x0101010101010101);
	return (unsigned)((m * UINT64_C(0x0102040810204080)) >> 56);
}

/* Sequence of cuckoo moves, for local readers: read before a lookup; a
 * lookup that missed while the value changed (or was odd) must retry. */
static inline uint64_t embkv_index_moves(const struct embkv_index *ix)
{
	return __atomic_load_n(&ix->moves_seq, __ATOMIC_ACQUIRE);
}

/* Buckets needed so that `rows` keys fill the index to `load` (0 < load <= 1). */
uint64_t embkv_index_buckets_for(uint64_t rows, double load);

/* Bytes an index of nbuckets occupies: a whole number of pages. */
size_t embkv_index_bytes(uint64_t nbuckets);

/*
 * Sets up an empty index of nbuckets (>= 1) in mem, which must be zeroed,
 * page aligned and embkv_index_bytes(nbuckets) long, and stays the
 * caller's; mem NULL maps private memory instead. 0, -EINVAL or -ENOMEM.
 * The buckets stay at one address until embkv_index_fini().
 */
int embkv_index_init(struct embkv_index *ix, uint64_t nbuckets, void *mem);
void embkv_index_fini(struct embkv_index *ix);

/*
 * Owner only. Stores slot in b1 if it has room, else in b2; when both are
 * full, moves other keys to their alternate buckets along the shortest
 * cuckoo path found breadth-first. Each move copies a slot into its new
 * bucket before clearing the old one, so a concurrent reader finds the key
 * in one of its buckets or sees moves_seq change. Returns 0, or -ENOSPC
 * when no path exists within EMBKV_CUCKOO_MAX_NODES (nothing changed).
 */
int embkv_index_insert(struct embkv_index *ix, uint64_t slot, uint64_t b1,
		       uint64_t b2, const struct embkv_index_locator *loc);

/* Owner only: clear slot i of bucket b. */
void embkv_index_clear(struct embkv_index *ix, uint64_t b, unsigned i);

/* Fraction of slots in use. */
static inline double embkv_index_load(const struct embkv_index *ix)
{
	return (double)ix->used / (double)(ix->nbuckets * EMBKV_BUCKET_SLOTS);
}

#endif
