/*
 * Location cache (client/loccache.h): a set-associative array of entries,
 * the set chosen by a 64-bit mixer of the key, one mutex per stripe of
 * sets. Fixed size, no allocation after init, so a cache full of cold
 * keys simply forgets the oldest of a set.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/loccache.h"

/* splitmix64's finalizer: every key bit reaches the set index. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

int embkv_loccache_init(struct embkv_loccache *lc, uint32_t entries)
{
	uint64_t sets = 1;
	uint32_t i;

	memset(lc, 0, sizeof(*lc));
	while (sets * EMBKV_LOCCACHE_WAYS < entries)
		sets <<= 1;
	lc->e = calloc(sets * EMBKV_LOCCACHE_WAYS, sizeof(*lc->e));
	lc->next_victim = calloc(sets, 1);
	if (!lc->e || !lc->next_victim)
		goto free_all;
	for (i = 0; i < EMBKV_LOCCACHE_LOCKS; i++)
		if (pthread_mutex_init(&lc->locks[i], NULL))
			goto destroy_locks;
	lc->set_mask = sets - 1;
	return 0;

destroy_locks:
	while (i--)
		pthread_mutex_destroy(&lc->locks[i]);
free_all:
	free(lc->e);
	free(lc->next_victim);
	memset(lc, 0, sizeof(*lc));
	return -ENOMEM;
}

void embkv_loccache_fini(struct embkv_loccache *lc)
{
	if (!lc || !lc->e)
		return;
	for (uint32_t i = 0; i < EMBKV_LOCCACHE_LOCKS; i++)
		pthread_mutex_destroy(&lc->locks[i]);
	free(lc->e);
	free(lc->next_victim);
	memset(lc, 0, sizeof(*lc));
}

static uint64_t set_of(const struct embkv_loccache *lc, uint64_t key)
{
	return mix(key) & lc->set_mask;
}

static pthread_mutex_t *lock_of(struct embkv_loccache *lc, uint64_t set)
{
	return &lc->locks[set % EMBKV_LOCCACHE_LOCKS];
}

int embkv_loccache_get(struct embkv_loccache *lc, uint64_t key,
		       struct embkv_loc *out)
{
	uint64_t set = set_of(lc, key);
	struct embkv_loc *e = &lc->e[set * EMBKV_LOCCACHE_WAYS];
	int hit = 0;

	pthread_mutex_lock(lock_of(lc, set));
	for (uint32_t w = 0; w < EMBKV_LOCCACHE_WAYS; w++)
		if (e[w].epoch && e[w].key == key) {
			*out = e[w];
			hit = 1;
			break;
		}
	pthread_mutex_unlock(lock_of(lc, set));
	return hit;
}

void embkv_loccache_put(struct embkv_loccache *lc, const struct embkv_loc *loc)
{
	uint64_t set = set_of(lc, loc->key);
	struct embkv_loc *e = &lc->e[set * EMBKV_LOCCACHE_WAYS];
	uint32_t w, way = EMBKV_LOCCACHE_WAYS;

	pthread_mutex_lock(lock_of(lc, set));
	for (w = 0; w < EMBKV_LOCCACHE_WAYS && way == EMBKV_LOCCACHE_WAYS; w++)
		if (e[w].epoch && e[w].key == loc->key)
			way = w;
	for (w = 0; w < EMBKV_LOCCACHE_WAYS && way == EMBKV_LOCCACHE_WAYS; w++)
		if (!e[w].epoch)
			way = w;
	if (way == EMBKV_LOCCACHE_WAYS) {
		way = lc->next_victim[set] % EMBKV_LOCCACHE_WAYS;
		lc->next_victim[set] = (uint8_t)(way + 1);
	}
	e[way] = *loc;
	pthread_mutex_unlock(lock_of(lc, set));
}

void embkv_loccache_drop(struct embkv_loccache *lc, uint64_t key,
			 uint64_t row)
{
	uint64_t set = set_of(lc, key);
	struct embkv_loc *e = &lc->e[set * EMBKV_LOCCACHE_WAYS];

	pthread_mutex_lock(lock_of(lc, set));
	for (uint32_t w = 0; w < EMBKV_LOCCACHE_WAYS; w++)
		if (e[w].epoch && e[w].key == key && e[w].row == row)
			memset(&e[w], 0, sizeof(e[w]));
	pthread_mutex_unlock(lock_of(lc, set));
}
