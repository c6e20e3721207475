/*
 * The location cache of one table (DESIGN.md section 3): key -> server,
 * partition, row id, map epoch, so that a hot key's one-sided pull costs
 * one READ of its record instead of two bucket READs and then the record.
 *
 * Only a hint: whoever uses an entry validates the record it names (key
 * and checksum) and drops the entry when it fails. Any thread; striped
 * locks (sets are 8-way, the victim is round-robin within the set).
 */
#ifndef EMBKV_CLIENT_LOCCACHE_H
#define EMBKV_CLIENT_LOCCACHE_H

#include <pthread.h>
#include <stdint.h>

#define EMBKV_LOCCACHE_WAYS 8u
#define EMBKV_LOCCACHE_LOCKS 64u
#define EMBKV_LOCCACHE_ENTRIES_DEFAULT (1u << 19) /* 12 MiB */

struct embkv_loc {
	uint64_t key;
	uint64_t row;
	uint64_t epoch;
	uint32_t server;  /* client server index */
	uint32_t part;
};

struct embkv_loccache {
	struct embkv_loc *e;      /* nsets * WAYS; epoch 0 = empty */
	uint8_t *next_victim;     /* nsets */
	uint64_t set_mask;
	pthread_mutex_t locks[EMBKV_LOCCACHE_LOCKS];
};

/* entries: rounded up to a power of two (at least WAYS). 0 or -ENOMEM. */
int embkv_loccache_init(struct embkv_loccache *lc, uint32_t entries);
void embkv_loccache_fini(struct embkv_loccache *lc);
/* 1 and *out when key is cached (any epoch), else 0. */
int embkv_loccache_get(struct embkv_loccache *lc, uint64_t key,
		       struct embkv_loc *out);
/* Inserts or replaces key's entry (loc->epoch must not be 0). */
void embkv_loccache_put(struct embkv_loccache *lc, const struct embkv_loc *loc);
/* Drops key's entry if it still names this row. */
void embkv_loccache_drop(struct embkv_loccache *lc, uint64_t key,
			 uint64_t row);

#endif /* EMBKV_CLIENT_LOCCACHE_H */
