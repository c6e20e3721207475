/*
 * Client-side batch preparation, pure functions (no I/O, no locks; any
 * thread on its own struct):
 * - dedup: the distinct keys of a batch in order of first appearance, with
 *   the chain of every position of each (so that pulled rows are scattered
 *   back to all of them and pushed gradients summed over all of them);
 * - routing: the partition of each distinct key (the server's function,
 *   hashing/hash.h) and a grouping of keys by the server that owns their
 *   partition in a shard map.
 */
#ifndef EMBKV_CLIENT_BATCH_H
#define EMBKV_CLIENT_BATCH_H

#include <stddef.h>
#include <stdint.h>

#define EMBKV_BATCH_END UINT32_MAX /* end of a position chain */

struct embkv_batch {
	uint32_t n;        /* positions */
	uint32_t nuniq;    /* distinct keys */
	uint64_t *ukeys;   /* nuniq distinct keys, in order of first sight */
	uint32_t *first;   /* nuniq: first position of each distinct key */
	uint32_t *last;    /* nuniq: last position */
	uint32_t *next;    /* n: next position of the same key, or
			      EMBKV_BATCH_END */
	void *mem;         /* one allocation behind all of the above (NULL:
			      the caller's, embkv_batch_dedup_into) */
};

/*
 * Deduplicates keys[0..n). 0 or -ENOMEM (-EINVAL for a NULL argument).
 * keys is only read during the call. The caller owns b's memory until
 * embkv_batch_destroy().
 */
int embkv_batch_dedup(struct embkv_batch *b, uint32_t n, const uint64_t *keys);
/* The same in caller memory: mem (8-byte aligned) holds at least
 * embkv_batch_dedup_bytes(n) bytes and outlives b, which does not own it
 * (embkv_batch_destroy leaves it alone). 0 or -EINVAL. Callers that
 * dedup every call keep that memory: freeing ~100 KiB a call let glibc
 * trim the heap, and every next call faulted fresh zeroed pages in. */
size_t embkv_batch_dedup_bytes(uint32_t n);
int embkv_batch_dedup_into(struct embkv_batch *b, uint32_t n,
			   const uint64_t *keys, void *mem);
/* The same, and from the same hash of each key the partition of every
 * distinct key (upart[u] for u < nuniq: the server's partition function,
 * hashing/hash.h) for a table with this hash seed and nparts partitions
 * (a power of two). upart has room for n entries: the call uses all of
 * them. */
int embkv_batch_dedup_parts_into(struct embkv_batch *b, uint32_t n,
				 const uint64_t *keys, void *mem, uint64_t seed,
				 uint32_t nparts, uint32_t *upart);
/* Frees; b zeroed. NULL or a zeroed b is a no-op. */
void embkv_batch_destroy(struct embkv_batch *b);

/*
 * out[0..dim) = the sum of the rows vals[p * dim ...] over every position
 * p of distinct key u, added in order of position (so the result is
 * deterministic and exactly what a sequential loop gives).
 */
void embkv_batch_sum_row(const struct embkv_batch *b, uint32_t u,
			 const float *vals, uint32_t dim, float *out);

/* log2 of a power of two. */
uint32_t embkv_batch_part_bits(uint32_t nparts);

/*
 * Groups items (distinct key indexes) by the shard-map server owning their
 * partition: part_srv[upart[item]] < nsrv. order gets the items grouped
 * (server 0's first, each group in input order), off[s]..off[s+1] the
 * range of server s (off has nsrv + 1 entries). -EINVAL when a partition's
 * server index is out of range.
 */
int embkv_batch_route(const uint32_t *items, uint32_t nitems,
		      const uint32_t *upart, const uint16_t *part_srv,
		      uint32_t nsrv, uint32_t *order, uint32_t *off);

#endif /* EMBKV_CLIENT_BATCH_H */
