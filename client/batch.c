/*
 * Batch dedup and routing (client/batch.h).
 *
 * Dedup is an open-addressing table of distinct-key indexes (linear
 * probing, at most a quarter full), in two passes over the batch. The
 * first only hashes, with the table's own key hash (hashing/hash.h), which
 * gives each key's slot and, for routing, its partition, so no key is
 * hashed twice. The second inserts. Hashing inside the insert loop cost a
 * quarter more than the separate pass (its mispredicted "slot taken?"
 * branches throw the hashing's overlap away), and a table half full
 * mispredicted more: 4096 random keys took 44-52 us with a mixer of their
 * own, a half-full table and the distinct keys hashed again for their
 * partitions, and take 31-36 us like this. Each new position of a known
 * key is linked after the previous one, so every distinct key has the
 * chain of all its positions in increasing order: a pull scatters its row
 * along the chain and a push sums the chain's gradients in order.
 * Invariant: ukeys[u] == keys[p] for every p on u's chain, and every
 * position is on exactly one chain.
 *
 * Routing is a counting sort of the distinct keys by owning server: two
 * passes, no allocation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/batch.h"
#include "hashing/hash.h"

#define SLOTS_MIN 16u
#define SLOT_EMPTY 0u /* slots hold distinct index + 1 */

static size_t slots_for(uint32_t n)
{
	size_t cap = SLOTS_MIN;

	while (cap < 4 * (size_t)n) /* at most a quarter full */
		cap <<= 1;
	return cap;
}

size_t embkv_batch_dedup_bytes(uint32_t n)
{
	/* ukeys (8-aligned) first, then the u32 arrays, then the slots. */
	return (size_t)n * sizeof(uint64_t) + 3 * (size_t)n * sizeof(uint32_t) +
	       slots_for(n) * sizeof(uint32_t);
}

int embkv_batch_dedup(struct embkv_batch *b, uint32_t n, const uint64_t *keys)
{
	size_t bytes = embkv_batch_dedup_bytes(n);
	void *mem;
	int rc;

	if (!b || (n && !keys))
		return -EINVAL;
	mem = malloc(bytes ? bytes : 1);
	if (!mem)
		return -ENOMEM;
	rc = embkv_batch_dedup_into(b, n, keys, mem);
	if (rc) {
		free(mem);
		return rc;
	}
	b->mem = mem;
	return 0;
}

int embkv_batch_dedup_into(struct embkv_batch *b, uint32_t n,
			   const uint64_t *keys, void *mem)
{
	return embkv_batch_dedup_parts_into(b, n, keys, mem, 0, 1, NULL);
}

int embkv_batch_dedup_parts_into(struct embkv_batch *b, uint32_t n,
				 const uint64_t *keys, void *mem, uint64_t seed,
				 uint32_t nparts, uint32_t *upart)
{
	unsigned bits = embkv_batch_part_bits(nparts);
	uint32_t *slots, nuniq = 0;
	size_t cap, mask;
	uint8_t *p = mem;

	if (!b || (n && !keys) || !mem || (uintptr_t)mem % sizeof(uint64_t))
		return -EINVAL;
	memset(b, 0, sizeof(*b));
	cap = slots_for(n);
	mask = cap - 1;
	b->ukeys = (uint64_t *)p;
	b->first = (uint32_t *)(p + (size_t)n * sizeof(uint64_t));
	b->last = b->first + n;
	b->next = b->last + n;
	slots = b->next + n;
	memset(slots, 0, cap * sizeof(uint32_t));

	/* Pass 1, hashing only (independent iterations that overlap): the
	 * slot hash of position i parks in next[i] and its partition in
	 * upart[i]. Pass 2 reads both at i before it writes next[i], and
	 * writes upart[u] only for u <= i, so nothing is read after it was
	 * overwritten. */
	for (uint32_t i = 0; i < n; i++) {
		struct embkv_khash h = embkv_hash_key(keys[i], seed);

		b->next[i] = (uint32_t)h.hi;
		if (upart)
			upart[i] = embkv_hash_partition(h, bits);
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t key = keys[i];
		size_t s = b->next[i] & mask;

		for (;;) {
			uint32_t v = slots[s];

			if (v == SLOT_EMPTY) {
				slots[s] = nuniq + 1;
				b->ukeys[nuniq] = key;
				b->first[nuniq] = i;
				b->last[nuniq] = i;
				if (upart)
					upart[nuniq] = upart[i];
				nuniq++;
				break;
			}
			if (b->ukeys[v - 1] == key) {
				b->next[b->last[v - 1]] = i;
				b->last[v - 1] = i;
				break;
			}
			s = (s + 1) & mask;
		}
		b->next[i] = EMBKV_BATCH_END;
	}
	b->n = n;
	b->nuniq = nuniq;
	return 0;
}

void embkv_batch_destroy(struct embkv_batch *b)
{
	if (!b)
		return;
	free(b->mem);
	memset(b, 0, sizeof(*b));
}

void embkv_batch_sum_row(const struct embkv_batch *b, uint32_t u,
			 const float *vals, uint32_t dim, float *out)
{
	uint32_t p = b->first[u];

	/* dim elements of out: the API's float rows, whatever the stored
	 * dtype (the table handle owns row sizes; this is an array copy) */
	memcpy(out, vals + (size_t)p * dim, (size_t)dim * sizeof(*out));
	for (p = b->next[p]; p != EMBKV_BATCH_END; p = b->next[p]) {
		const float *row = vals + (size_t)p * dim;

		for (uint32_t j = 0; j < dim; j++)
			out[j] += row[j];
	}
}

uint32_t embkv_batch_part_bits(uint32_t nparts)
{
	uint32_t bits = 0;

	while (bits < 31 && (1u << bits) < nparts)
		bits++;
	return bits;
}

int embkv_batch_route(const uint32_t *items, uint32_t nitems,
		      const uint32_t *upart, const uint16_t *part_srv,
		      uint32_t nsrv, uint32_t *order, uint32_t *off)
{
	uint32_t i, s;

	memset(off, 0, ((size_t)nsrv + 1) * sizeof(*off));
	for (i = 0; i < nitems; i++) {
		s = part_srv[upart[items[i]]];
		if (s >= nsrv)
			return -EINVAL;
		off[s + 1]++;
	}
	for (s = 0; s < nsrv; s++)
		off[s + 1] += off[s];
	/* Fill with off[s] as the cursor, then shift the cursors back. */
	for (i = 0; i < nitems; i++) {
		s = part_srv[upart[items[i]]];
		order[off[s]++] = items[i];
	}
	for (s = nsrv; s > 0; s--)
		off[s] = off[s - 1];
	off[0] = 0;
	return 0;
}
