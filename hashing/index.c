/*
 * Bucket index with two-choice placement and breadth-first cuckoo
 * displacement (the owner thread is the only writer).
 *
 * Why cuckoo: greedy two-choice with 8-slot buckets first overflows near
 * 70% full; moving residents to their alternate bucket lets the index fill
 * past 90% before anything has to be evicted.
 *
 * Reader invariant: a key is always in one of its two buckets. A move
 * writes the slot into the destination bucket first, then clears the
 * source, so there is no instant in which the key is in neither bucket.
 * A reader that scans the two buckets one after the other can still miss
 * a key that moved between its two scans; moves_seq (odd while a path is
 * being moved) lets local readers detect that and retry, and remote
 * readers fall back to the owner, who never misses.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "hashing/index.h"

#define HUGE_PAGE_BYTES (2u << 20)
#define PAGE_BYTES 4096u

struct embkv_cuckoo_node {
	uint64_t bucket;
	int32_t parent;   /* node index, -1 for a root */
	uint32_t via;     /* slot of the parent bucket whose key moves here */
};

uint64_t embkv_index_buckets_for(uint64_t rows, double load)
{
	double slots = (double)rows / load;
	uint64_t n = (uint64_t)(slots / EMBKV_BUCKET_SLOTS) + 1u;

	return n < 2 ? 2 : n;
}

size_t embkv_index_bytes(uint64_t nbuckets)
{
	size_t bytes = nbuckets * EMBKV_BUCKET_BYTES;

	return (bytes + PAGE_BYTES - 1) & ~(size_t)(PAGE_BYTES - 1);
}

int embkv_index_init(struct embkv_index *ix, uint64_t nbuckets, void *mem)
{
	size_t bytes;

	memset(ix, 0, sizeof(*ix));
	if (nbuckets == 0 || nbuckets > (SIZE_MAX / EMBKV_BUCKET_BYTES) / 2 ||
	    ((uintptr_t)mem & (PAGE_BYTES - 1)))
		return -EINVAL;
	bytes = embkv_index_bytes(nbuckets);
	ix->scratch = calloc(EMBKV_CUCKOO_MAX_NODES, sizeof(*ix->scratch));
	if (!ix->scratch)
		return -ENOMEM;
	if (!mem) {
		mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (mem == MAP_FAILED) {
			free(ix->scratch);
			ix->scratch = NULL;
			return -ENOMEM;
		}
		if (bytes >= HUGE_PAGE_BYTES)
			(void)madvise(mem, bytes, MADV_HUGEPAGE);
		ix->owns_memory = 1;
	}
	ix->buckets = mem;
	ix->nbuckets = nbuckets;
	ix->bytes = bytes;
	return 0;
}

void embkv_index_fini(struct embkv_index *ix)
{
	if (!ix)
		return;
	if (ix->buckets && ix->owns_memory)
		munmap(ix->buckets, ix->bytes);
	free(ix->scratch);
	memset(ix, 0, sizeof(*ix));
}

static int bucket_free_slot(const struct embkv_index *ix, uint64_t b)
{
	for (unsigned i = 0; i < EMBKV_BUCKET_SLOTS; i++)
		if (ix->buckets[b].slot[i] == 0)
			return (int)i;
	return -1;
}

/* The bucket that is not `cur` among the two of the key in `slot`. */
static uint64_t alt_bucket(const struct embkv_index_locator *loc,
			   uint64_t slot, uint64_t cur)
{
	uint64_t b1, b2;

	loc->buckets(loc->ctx, embkv_slot_row(slot), &b1, &b2);
	return cur == b1 ? b2 : b1;
}

/* True when bucket b already lies on the path from node n to its root. */
static int on_path(const struct embkv_cuckoo_node *q, int32_t n, uint64_t b)
{
	for (; n >= 0; n = q[n].parent)
		if (q[n].bucket == b)
			return 1;
	return 0;
}

/* Moves keys along the path ending at node `last`, whose bucket has the
 * free slot `free_slot`; returns the freed slot of the root bucket. */
static unsigned move_path(struct embkv_index *ix, struct embkv_cuckoo_node *q,
			  int32_t last, unsigned free_slot)
{
	unsigned dst_slot = free_slot;

	__atomic_fetch_add(&ix->moves_seq, 1, __ATOMIC_ACQ_REL);
	for (int32_t n = last; q[n].parent >= 0; n = q[n].parent) {
		struct embkv_cuckoo_node *src = &q[q[n].parent];
		uint64_t v = ix->buckets[src->bucket].slot[q[n].via];

		embkv_index_slot_store(ix, q[n].bucket, dst_slot, v);
		embkv_index_slot_store(ix, src->bucket, q[n].via, 0);
		dst_slot = q[n].via;
		ix->cuckoo_moves++;
	}
	__atomic_fetch_add(&ix->moves_seq, 1, __ATOMIC_ACQ_REL);
	return dst_slot;
}

int embkv_index_insert(struct embkv_index *ix, uint64_t slot, uint64_t b1,
		       uint64_t b2, const struct embkv_index_locator *loc)
{
	struct embkv_cuckoo_node *q = ix->scratch;
	uint32_t head = 0, tail = 0;
	uint64_t first = b1;
	int s;

	/* First choice first: readers look in b1 before b2, so the more
	 * keys live in b1, the fewer buckets a lookup touches. */
	s = bucket_free_slot(ix, first);
	if (s < 0 && b2 != b1) {
		first = b2;
		s = bucket_free_slot(ix, first);
	}
	if (s >= 0) {
		embkv_index_slot_store(ix, first, (unsigned)s, slot);
		ix->used++;
		return 0;
	}
	q[tail++] = (struct embkv_cuckoo_node){ b1, -1, 0 };
	if (b2 != b1)
		q[tail++] = (struct embkv_cuckoo_node){ b2, -1, 0 };
	while (head < tail) {
		int32_t n = (int32_t)head++;
		uint64_t b = q[n].bucket;

		for (unsigned i = 0; i < EMBKV_BUCKET_SLOTS; i++) {
			uint64_t alt = alt_bucket(loc, ix->buckets[b].slot[i], b);
			int free_slot;

			if (alt == b || on_path(q, n, alt))
				continue;
			if (tail == EMBKV_CUCKOO_MAX_NODES)
				return -ENOSPC;
			q[tail] = (struct embkv_cuckoo_node){ alt, n, i };
			free_slot = bucket_free_slot(ix, alt);
			if (free_slot >= 0) {
				unsigned root_slot =
					move_path(ix, q, (int32_t)tail,
						  (unsigned)free_slot);
				int32_t r = (int32_t)tail;

				while (q[r].parent >= 0)
					r = q[r].parent;
				embkv_index_slot_store(ix, q[r].bucket,
						       root_slot, slot);
				ix->used++;
				return 0;
			}
			tail++;
		}
	}
	return -ENOSPC;
}

void embkv_index_clear(struct embkv_index *ix, uint64_t b, unsigned i)
{
	if (ix->buckets[b].slot[i] != 0) {
		embkv_index_slot_store(ix, b, i, 0);
		ix->used--;
	}
}
