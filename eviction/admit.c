/*
 * Count-min sketch with conservative update for the admission filter.
 * The sketch hashes keys with its own seed (independent of the placement
 * hash) and derives the DEPTH row positions by double hashing from one
 * XXH3-128. Counters are 8-bit and saturate; a periodic halving keeps
 * them meaningful and lets stale sightings fade.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "eviction/admit.h"

#define CMS_COUNTER_MAX 255u
#define CMS_DEFAULT_DECAY_WIDTHS 8u

static uint64_t next_pow2(uint64_t x)
{
	uint64_t p = 1;

	while (p < x)
		p <<= 1;
	return p;
}

int embkv_cms_init(struct embkv_cms *s, uint64_t keys, uint64_t seed,
		   uint64_t decay_every)
{
	uint64_t width = next_pow2(keys);

	memset(s, 0, sizeof(*s));
	if (keys == 0)
		return -EINVAL;
	if (width < EMBKV_CMS_MIN_WIDTH)
		width = EMBKV_CMS_MIN_WIDTH;
	if (width > EMBKV_CMS_MAX_WIDTH)
		width = EMBKV_CMS_MAX_WIDTH;
	s->cnt = calloc(width, EMBKV_CMS_DEPTH);
	if (!s->cnt)
		return -ENOMEM;
	s->width_mask = width - 1;
	s->seed = seed;
	s->decay_every = decay_every ? decay_every
				     : width * CMS_DEFAULT_DECAY_WIDTHS;
	return 0;
}

void embkv_cms_fini(struct embkv_cms *s)
{
	if (!s)
		return;
	free(s->cnt);
	memset(s, 0, sizeof(*s));
}

static void cms_positions(const struct embkv_cms *s, uint64_t key,
			  uint64_t pos[EMBKV_CMS_DEPTH])
{
	XXH128_hash_t h = XXH3_128bits_withSeed(&key, sizeof(key), s->seed);
	uint64_t step = h.high64 | 1u;
	uint64_t width = s->width_mask + 1;

	for (unsigned d = 0; d < EMBKV_CMS_DEPTH; d++)
		pos[d] = d * width + ((h.low64 + d * step) & s->width_mask);
}

static unsigned cms_min(const struct embkv_cms *s,
			const uint64_t pos[EMBKV_CMS_DEPTH])
{
	unsigned m = CMS_COUNTER_MAX;

	for (unsigned d = 0; d < EMBKV_CMS_DEPTH; d++)
		if (s->cnt[pos[d]] < m)
			m = s->cnt[pos[d]];
	return m;
}

unsigned embkv_cms_estimate(const struct embkv_cms *s, uint64_t key)
{
	uint64_t pos[EMBKV_CMS_DEPTH];

	cms_positions(s, key, pos);
	return cms_min(s, pos);
}

unsigned embkv_cms_add(struct embkv_cms *s, uint64_t key)
{
	uint64_t pos[EMBKV_CMS_DEPTH];
	unsigned m, want;

	cms_positions(s, key, pos);
	m = cms_min(s, pos);
	want = m < CMS_COUNTER_MAX ? m + 1 : m;
	for (unsigned d = 0; d < EMBKV_CMS_DEPTH; d++)
		if (s->cnt[pos[d]] < want)
			s->cnt[pos[d]] = (uint8_t)want;
	if (++s->adds >= s->decay_every) {
		uint64_t n = (s->width_mask + 1) * EMBKV_CMS_DEPTH;

		for (uint64_t i = 0; i < n; i++)
			s->cnt[i] >>= 1;
		s->adds = 0;
	}
	return want;
}
