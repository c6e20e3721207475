/*
 * LFU decay and bucket-local victim choice (owner thread only).
 * Decay is a linear pass over 2 bytes per row, amortized over a whole
 * decay period of accesses, so it costs well under one memory access per
 * touch; the loop is branch-free so the compiler vectorizes it.
 */
#include "eviction/lfu.h"

void embkv_lfu_decay(uint16_t *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		w[i] = (uint16_t)((w[i] & EMBKV_LFU_DIRTY) |
				  ((w[i] & EMBKV_LFU_COUNT_MAX) >> 1));
}

unsigned embkv_lfu_pick_victim(const uint16_t *w, const uint64_t *rows,
			       unsigned n)
{
	unsigned best = 0, best_count = embkv_lfu_count(w[rows[0]]);

	for (unsigned i = 1; i < n; i++) {
		unsigned c = embkv_lfu_count(w[rows[i]]);

		if (c < best_count) {
			best = i;
			best_count = c;
		}
	}
	return best;
}
