/*
 * Bucket-local victim choice (owner thread only): the least-counted of a
 * key's candidate rows. Counts already include lazy decay.
 */
#include "eviction/lfu.h"

unsigned embkv_lfu_pick_victim(const unsigned *counts, unsigned n)
{
	unsigned best = 0;

	for (unsigned i = 1; i < n; i++)
		if (counts[i] < counts[best])
			best = i;
	return best;
}
