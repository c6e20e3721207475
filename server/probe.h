/*
 * Probing a batch of keys, shared by the owner operations (store.c) and the
 * lock-free reader (find.c).
 *
 * Keys are probed a chunk at a time, in passes over the whole chunk:
 *   1. hash, partition, buckets; prefetch every key's first bucket;
 *   2. match fingerprints in the first bucket; prefetch the record, or,
 *      when nothing matched, the second bucket (keys go to their first
 *      bucket while it has room, so few keys need the second);
 *   3. match the second bucket where needed and prefetch the record;
 * then the caller validates and acts on each key. Each pass issues a
 * chunk's worth of independent misses back to back, so they overlap, and
 * their data has arrived by the next pass. (A rolling pipeline, one key
 * per stage, measured 1.6x slower here: its demand loads and prefetches
 * interleave and the misses no longer overlap as well.)
 * A probe's matches are hints: whoever acts validates the record (owner:
 * its key; reader: checksum and key) and rescans when the hint is stale.
 */
#ifndef EMBKV_SERVER_PROBE_H
#define EMBKV_SERVER_PROBE_H

#include "server/store.h"

#define EMBKV_PROBE_CHUNK 128u

struct embkv_probe {
	struct embkv_khash h;
	struct embkv_part *p;
	uint64_t b1, b2;
	uint64_t seq;   /* the partition's cuckoo-move sequence at pass 2 */
	unsigned match; /* fingerprint matches: bits 0-7 in b1, 8-15 in b2 */
};

/* All fingerprint matches in both buckets (bits 0-7: b1, 8-15: b2). */
static inline unsigned embkv_probe_match_all(const struct embkv_probe *pr)
{
	uint16_t fp = embkv_hash_fp(pr->h);

	return embkv_index_match(&pr->p->index, pr->b1, fp) |
	       embkv_index_match(&pr->p->index, pr->b2, fp)
		       << EMBKV_BUCKET_SLOTS;
}

/* Row that match bit `bit` points at (read now: it may have changed). */
static inline uint64_t embkv_probe_row(const struct embkv_probe *pr,
				       unsigned bit)
{
	uint64_t b = bit < EMBKV_BUCKET_SLOTS ? pr->b1 : pr->b2;

	return embkv_slot_row(embkv_index_slot_load(&pr->p->index, b,
						    bit % EMBKV_BUCKET_SLOTS));
}

static inline void embkv_probe_prefetch(const struct embkv_table *t,
					const struct embkv_probe *pr,
					int owner)
{
	uint64_t row;

	if (!pr->match)
		return;
	row = embkv_probe_row(pr, (unsigned)__builtin_ctz(pr->match));
	if (owner) {
		embkv_record_prefetch(embkv_part_record(pr->p, row), t->stride);
		if (pr->p->state)
			__builtin_prefetch(pr->p->state + row * t->state_bytes, 1);
	} else {
		embkv_record_prefetch(embkv_part_record(pr->p, row),
				      EMBKV_RECORD_HDR_BYTES + t->payload_bytes);
	}
}

static inline void embkv_probe_hash(const struct embkv_table *t,
				    struct embkv_probe *pr, uint64_t key)
{
	pr->h = embkv_hash_key(key, t->attr.hash_seed);
	pr->p = &t->parts[embkv_hash_partition(pr->h, t->part_bits)];
	embkv_hash_buckets(pr->h, pr->p->index.nbuckets, &pr->b1, &pr->b2);
	__builtin_prefetch(&pr->p->index.buckets[pr->b1]);
}

/*
 * Probes the next chunk of a batch, keys[i0, i0 + m) with m the return
 * value (at most EMBKV_PROBE_CHUNK, 0 when i0 >= n), into pr[0, m); owner
 * says whether the caller will write the rows (prefetch the whole stride
 * and the optimizer state) or only read them.
 */
static inline uint32_t embkv_probe_chunk(const struct embkv_table *t,
					 struct embkv_probe *pr,
					 const uint64_t *all_keys, uint32_t n,
					 uint32_t i0, int owner)
{
	const uint64_t *keys = all_keys + i0;
	uint32_t m = i0 >= n ? 0
		     : n - i0 < EMBKV_PROBE_CHUNK ? n - i0 : EMBKV_PROBE_CHUNK;

	for (uint32_t j = 0; j < m; j++)
		embkv_probe_hash(t, &pr[j], keys[j]);
	for (uint32_t j = 0; j < m; j++) {
		pr[j].seq = embkv_index_moves(&pr[j].p->index);
		pr[j].match = embkv_index_match(&pr[j].p->index, pr[j].b1,
						embkv_hash_fp(pr[j].h));
		if (pr[j].match)
			embkv_probe_prefetch(t, &pr[j], owner);
		else
			__builtin_prefetch(&pr[j].p->index.buckets[pr[j].b2]);
	}
	for (uint32_t j = 0; j < m; j++) {
		if (pr[j].match)
			continue;
		pr[j].match = embkv_index_match(&pr[j].p->index, pr[j].b2,
						embkv_hash_fp(pr[j].h))
			      << EMBKV_BUCKET_SLOTS;
		embkv_probe_prefetch(t, &pr[j], owner);
	}
	return m;
}

#endif
