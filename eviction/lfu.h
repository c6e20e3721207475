/*
 * LFU counters: one 32-bit word per row, kept in the record's tail (see
 * hashing/record.h), so the owner's access to a row touches no other
 * memory. The word is count:15 | dirty:1 | epoch:16.
 *
 * Decay is lazy: a partition's clock advances its epoch every decay
 * period, and a count is worth count >> (epoch now - epoch of the word).
 * Old popularity fades without any pass over the rows. The owner thread
 * counts every server-visible access (RPC pull, push, assign); victim
 * choice is bucket-local: the lowest count among a key's candidate slots
 * (O(1), as in HierarchicalKV). The dirty bit marks rows written since the
 * last checkpoint.
 */
#ifndef EMBKV_EVICTION_LFU_H
#define EMBKV_EVICTION_LFU_H

#include <stddef.h>
#include <stdint.h>

#define EMBKV_LFU_COUNT_MAX 0x7fffu
#define EMBKV_LFU_DIRTY 0x8000u
#define EMBKV_LFU_EPOCH_SHIFT 16u
/* A count halves per epoch, so after this many it is 0 whatever it was. */
#define EMBKV_LFU_MAX_AGE 15u

/* The count of word w as of epoch `now` (decay applied). */
static inline unsigned embkv_lfu_count(uint32_t w, uint16_t now)
{
	unsigned age = (uint16_t)(now - (uint16_t)(w >> EMBKV_LFU_EPOCH_SHIFT));

	return age > EMBKV_LFU_MAX_AGE ? 0 : (w & EMBKV_LFU_COUNT_MAX) >> age;
}

static inline uint32_t embkv_lfu_make(unsigned count, uint32_t dirty,
				      uint16_t now)
{
	if (count > EMBKV_LFU_COUNT_MAX)
		count = EMBKV_LFU_COUNT_MAX;
	return ((uint32_t)now << EMBKV_LFU_EPOCH_SHIFT) |
	       (dirty ? EMBKV_LFU_DIRTY : 0u) | count;
}

/* Counts n accesses (saturating), keeping the dirty flag. */
static inline void embkv_lfu_add(uint32_t *w, unsigned n, uint16_t now)
{
	*w = embkv_lfu_make(embkv_lfu_count(*w, now) + n,
			    *w & EMBKV_LFU_DIRTY, now);
}

static inline void embkv_lfu_touch(uint32_t *w, uint16_t now)
{
	embkv_lfu_add(w, 1, now);
}

static inline void embkv_lfu_mark_dirty(uint32_t *w)
{
	*w |= EMBKV_LFU_DIRTY;
}

/*
 * Decay clock of one partition: every `period` accesses the epoch moves
 * on, which halves every count. embkv_lfu_clock_tick returns 1 when it
 * did.
 */
struct embkv_lfu_clock {
	uint64_t ticks;
	uint64_t period;
	uint64_t decays;
	uint16_t epoch;
};

static inline int embkv_lfu_clock_tick(struct embkv_lfu_clock *c, uint64_t n)
{
	c->ticks += n;
	if (c->ticks < c->period)
		return 0;
	c->ticks = 0;
	c->decays++;
	c->epoch++;
	return 1;
}

/* Index of the lowest of n counts (n >= 1); ties go to the earliest. */
unsigned embkv_lfu_pick_victim(const unsigned *counts, unsigned n);

#endif
