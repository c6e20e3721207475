/*
 * The lock-free validated lookup (embkv_table_find): what a local reader
 * thread runs concurrently with the owners, and the same steps an RDMA
 * client runs on its READ buffers: read the key's two buckets, match
 * fingerprints, copy the record, and accept it only through
 * embkv_record_read (checksum, then key).
 *
 * A miss is trusted only when the partition's cuckoo-move sequence did not
 * change during the lookup (and was even); otherwise the lookup is redone,
 * because a key being moved between its buckets can be missed by a reader
 * that scans them one after the other.
 */
#include <string.h>
#include "server/store.h"

#define PIPE_DIST 16u
#define PIPE_RING 64u /* > 2 * PIPE_DIST */
#define MAX_REPROBES 64u

struct find_ctx {
	struct embkv_khash h;
	const struct embkv_part *p;
	uint64_t b1, b2;
	uint64_t seq;
	unsigned match; /* fingerprint matches: bits 0-7 in b1, 8-15 in b2 */
};

static unsigned ctx_match(const struct find_ctx *c)
{
	uint16_t fp = embkv_hash_fp(c->h);

	return embkv_index_match(&c->p->index, c->b1, fp) |
	       embkv_index_match(&c->p->index, c->b2, fp) << EMBKV_BUCKET_SLOTS;
}

static uint64_t match_row(const struct find_ctx *c, unsigned bit)
{
	uint64_t b = bit < EMBKV_BUCKET_SLOTS ? c->b1 : c->b2;

	return embkv_slot_row(embkv_index_slot_load(&c->p->index, b,
						    bit % EMBKV_BUCKET_SLOTS));
}

/* Full lookup of one key: every fingerprint match, validated; redone while
 * a concurrent cuckoo move may have hidden the key. */
static int find_one(const struct embkv_table *t, struct find_ctx *c,
		    uint64_t key, struct embkv_record *buf,
		    struct embkv_read_stats *rs)
{
	for (unsigned probe = 0; probe < MAX_REPROBES; probe++) {
		for (unsigned m = c->match; m; m &= m - 1) {
			int err = embkv_record_read(
				embkv_part_record(c->p, match_row(c, (unsigned)__builtin_ctz(m))),
				buf, key, t->payload_bytes, EMBKV_READ_MAX_TRIES,
				&rs->retries);

			if (err == 0)
				return 0;
			if (err == EMBKV_ETORN) {
				rs->giveups++;
				return err;
			}
		}
		if (!(c->seq & 1) && embkv_index_moves(&c->p->index) == c->seq)
			return EMBKV_ENOTFOUND;
		rs->reprobes++;
		c->seq = embkv_index_moves(&c->p->index);
		c->match = ctx_match(c);
	}
	return EMBKV_ENOTFOUND;
}

/* Stages of the rolling pipeline (see store.c): hash and prefetch the
 * buckets of key i + 2 * PIPE_DIST, find the first candidate of key
 * i + PIPE_DIST and prefetch its record, validate and copy key i. */
static void stage_hash(const struct embkv_table *t, struct find_ctx *c,
		       uint64_t key)
{
	c->h = embkv_hash_key(key, t->attr.hash_seed);
	c->p = &t->parts[embkv_hash_partition(c->h, t->part_bits)];
	embkv_hash_buckets(c->h, c->p->index.nbuckets, &c->b1, &c->b2);
	__builtin_prefetch(&c->p->index.buckets[c->b1]);
	__builtin_prefetch(&c->p->index.buckets[c->b2]);
}

static void stage_hint(const struct embkv_table *t, struct find_ctx *c)
{
	c->seq = embkv_index_moves(&c->p->index);
	c->match = ctx_match(c);
	if (c->match) {
		embkv_record_prefetch(
			embkv_part_record(c->p, match_row(c, (unsigned)__builtin_ctz(c->match))),
			EMBKV_RECORD_HDR_BYTES + t->payload_bytes);
	}
}

uint32_t embkv_table_find(const struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, float *out, uint8_t *found,
			  const float *dflt, struct embkv_read_stats *rs)
{
	struct embkv_read_stats local = { 0 };
	struct find_ctx ring[PIPE_RING];
	union {
		struct embkv_record r;
		uint8_t bytes[EMBKV_RECORD_HDR_BYTES +
			      EMBKV_MAX_DIM * sizeof(float)];
	} buf;
	uint32_t nfound = 0;

	if (!rs)
		rs = &local;
	for (uint32_t j = 0; j < n && j < 2 * PIPE_DIST; j++)
		stage_hash(t, &ring[j % PIPE_RING], keys[j]);
	for (uint32_t j = 0; j < n && j < PIPE_DIST; j++)
		stage_hint(t, &ring[j % PIPE_RING]);
	for (uint32_t i = 0; i < n; i++) {
		float *dst = out + (size_t)i * t->dim;
		int ok;

		if (i + 2 * PIPE_DIST < n)
			stage_hash(t, &ring[(i + 2 * PIPE_DIST) % PIPE_RING],
				   keys[i + 2 * PIPE_DIST]);
		if (i + PIPE_DIST < n)
			stage_hint(t, &ring[(i + PIPE_DIST) % PIPE_RING]);
		ok = find_one(t, &ring[i % PIPE_RING], keys[i], &buf.r, rs) == 0;
		if (ok)
			memcpy(dst, buf.r.payload, t->payload_bytes);
		else if (dflt)
			memcpy(dst, dflt, t->payload_bytes);
		else
			memset(dst, 0, t->payload_bytes);
		if (found)
			found[i] = (uint8_t)ok;
		nfound += (uint32_t)ok;
	}
	rs->hits += nfound;
	rs->misses += n - nfound;
	return nfound;
}
