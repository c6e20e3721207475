/*
 * Probing a batch of keys: the rolling software pipeline shared by the
 * owner operations (store.c) and the lock-free reader (find.c).
 *
 * A probe goes through four stages, each a fixed distance ahead of the
 * key being acted on, so that a bounded, steady number of cache misses is
 * in flight instead of one key's chain of dependent misses at a time:
 *   key i + 3d: hash, partition, buckets; prefetch the first bucket;
 *   key i + 2d: match fingerprints in the first bucket; if none, prefetch
 *               the second bucket (keys go to their first bucket while it
 *               has room, so most keys never need it), else the record;
 *   key i + d:  match the second bucket if needed, prefetch the record;
 *   key i:      validate and act (the caller).
 * A probe's matches are hints: whoever acts validates the record (owner:
 * its key; reader: checksum and key) and rescans when the hint is stale.
 */
#ifndef EMBKV_SERVER_PROBE_H
#define EMBKV_SERVER_PROBE_H

#include "server/store.h"

#define EMBKV_PIPE_DIST 8u
#define EMBKV_PIPE_RING 32u /* >= 3 * EMBKV_PIPE_DIST + 1, a power of two */

struct embkv_probe {
	struct embkv_khash h;
	struct embkv_part *p;
	uint64_t b1, b2;
	uint64_t seq;   /* the partition's cuckoo-move sequence at stage 2 */
	unsigned match; /* fingerprint matches: bits 0-7 in b1, 8-15 in b2 */
};

struct embkv_pipe {
	const struct embkv_table *t;
	const uint64_t *keys;
	uint32_t n;
	size_t prefetch_bytes; /* of a record: what the actor will touch */
	int with_state;        /* prefetch optimizer state too (owner) */
	struct embkv_probe ring[EMBKV_PIPE_RING];
};

static inline void embkv_probe_hash(const struct embkv_table *t,
				    struct embkv_probe *pr, uint64_t key)
{
	pr->h = embkv_hash_key(key, t->attr.hash_seed);
	pr->p = &t->parts[embkv_hash_partition(pr->h, t->part_bits)];
	embkv_hash_buckets(pr->h, pr->p->index.nbuckets, &pr->b1, &pr->b2);
	__builtin_prefetch(&pr->p->index.buckets[pr->b1]);
}

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

static inline void embkv_pipe_prefetch(const struct embkv_pipe *pp,
				       const struct embkv_probe *pr)
{
	uint64_t row;

	if (!pr->match)
		return;
	row = embkv_probe_row(pr, (unsigned)__builtin_ctz(pr->match));
	embkv_record_prefetch(embkv_part_record(pr->p, row), pp->prefetch_bytes);
	if (pp->with_state && pr->p->state)
		__builtin_prefetch(pr->p->state + row * pp->t->state_floats, 1);
}

static inline void embkv_pipe_stage1(struct embkv_pipe *pp, uint32_t i)
{
	embkv_probe_hash(pp->t, &pp->ring[i % EMBKV_PIPE_RING], pp->keys[i]);
}

static inline void embkv_pipe_stage2(struct embkv_pipe *pp, uint32_t i)
{
	struct embkv_probe *pr = &pp->ring[i % EMBKV_PIPE_RING];

	pr->seq = embkv_index_moves(&pr->p->index);
	pr->match = embkv_index_match(&pr->p->index, pr->b1,
				      embkv_hash_fp(pr->h));
	if (pr->match)
		embkv_pipe_prefetch(pp, pr);
	else
		__builtin_prefetch(&pr->p->index.buckets[pr->b2]);
}

static inline void embkv_pipe_stage3(struct embkv_pipe *pp, uint32_t i)
{
	struct embkv_probe *pr = &pp->ring[i % EMBKV_PIPE_RING];

	if (pr->match)
		return;
	pr->match = embkv_index_match(&pr->p->index, pr->b2,
				      embkv_hash_fp(pr->h))
		    << EMBKV_BUCKET_SLOTS;
	embkv_pipe_prefetch(pp, pr);
}

static inline void embkv_pipe_init(struct embkv_pipe *pp,
				   const struct embkv_table *t,
				   const uint64_t *keys, uint32_t n, int owner)
{
	const uint32_t d = EMBKV_PIPE_DIST;

	pp->t = t;
	pp->keys = keys;
	pp->n = n;
	pp->prefetch_bytes = owner ? t->stride
				   : EMBKV_RECORD_HDR_BYTES + t->payload_bytes;
	pp->with_state = owner;
	for (uint32_t j = 0; j < n && j < 3 * d; j++)
		embkv_pipe_stage1(pp, j);
	for (uint32_t j = 0; j < n && j < 2 * d; j++)
		embkv_pipe_stage2(pp, j);
	for (uint32_t j = 0; j < n && j < d; j++)
		embkv_pipe_stage3(pp, j);
}

/* The probe of key i (i = 0, 1, ... in order), advancing the stages. */
static inline struct embkv_probe *embkv_pipe_step(struct embkv_pipe *pp,
						  uint32_t i)
{
	const uint32_t d = EMBKV_PIPE_DIST;

	if (i + 3 * d < pp->n)
		embkv_pipe_stage1(pp, i + 3 * d);
	if (i + 2 * d < pp->n)
		embkv_pipe_stage2(pp, i + 2 * d);
	if (i + d < pp->n)
		embkv_pipe_stage3(pp, i + d);
	return &pp->ring[i % EMBKV_PIPE_RING];
}

#endif
