/*
 * LFU counters: one 16-bit word of private state per row, its low 15 bits
 * a saturating access count and its top bit the row's dirty flag. The
 * owner thread touches a row on every server-visible access (RPC pull,
 * push, assign) and halves all counters every decay period so that old
 * popularity fades. Victim choice is bucket-local: the lowest count among a
 * key's candidate slots (O(1), as in HierarchicalKV).
 */
#ifndef EMBKV_EVICTION_LFU_H
#define EMBKV_EVICTION_LFU_H

#include <stddef.h>
#include <stdint.h>

#define EMBKV_LFU_DIRTY 0x8000u
#define EMBKV_LFU_COUNT_MAX 0x7fffu

static inline unsigned embkv_lfu_count(uint16_t w)
{
	return w & EMBKV_LFU_COUNT_MAX;
}

/* Counts one access and marks the row dirty; saturates, never wraps. */
static inline void embkv_lfu_touch(uint16_t *w)
{
	uint16_t c = *w & EMBKV_LFU_COUNT_MAX;

	*w = (uint16_t)(EMBKV_LFU_DIRTY | (c + (c < EMBKV_LFU_COUNT_MAX)));
}

/* Counts hits seen elsewhere (one-sided reads reported by clients). */
static inline void embkv_lfu_add(uint16_t *w, unsigned n)
{
	unsigned c = (*w & EMBKV_LFU_COUNT_MAX) + n;

	if (c > EMBKV_LFU_COUNT_MAX)
		c = EMBKV_LFU_COUNT_MAX;
	*w = (uint16_t)((*w & EMBKV_LFU_DIRTY) | c);
}

/* Halves the counts of n rows, keeping their dirty flags. */
void embkv_lfu_decay(uint16_t *w, size_t n);

/*
 * Decay clock of one partition: after `period` touches, the owner halves
 * every counter. embkv_lfu_clock_tick returns 1 when that time has come.
 */
struct embkv_lfu_clock {
	uint64_t ticks;
	uint64_t period;
	uint64_t decays;
};

static inline int embkv_lfu_clock_tick(struct embkv_lfu_clock *c, uint64_t n)
{
	c->ticks += n;
	if (c->ticks < c->period)
		return 0;
	c->ticks = 0;
	c->decays++;
	return 1;
}

/*
 * Index of the entry with the lowest count among n candidate rows
 * (rows[i] indexes w); ties go to the earliest. n >= 1.
 */
unsigned embkv_lfu_pick_victim(const uint16_t *w, const uint64_t *rows,
			       unsigned n);

#endif
