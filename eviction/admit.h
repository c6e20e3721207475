/*
 * Admission filter: a count-min sketch of key sightings, so that a key
 * becomes a row only on its N-th sighting (DeepRec, Monolith). Conservative
 * update (only the minimal counters grow) keeps over-estimates low; 8-bit
 * counters saturate and are all halved every decay period so that a key
 * seen long ago starts over. One sketch per partition, owner thread only.
 */
#ifndef EMBKV_EVICTION_ADMIT_H
#define EMBKV_EVICTION_ADMIT_H

#include <stdint.h>

#define EMBKV_CMS_DEPTH 4u
#define EMBKV_CMS_MIN_WIDTH 1024u
#define EMBKV_CMS_MAX_WIDTH (1u << 24)

struct embkv_cms {
	uint8_t *cnt;        /* depth x width counters */
	uint64_t width_mask; /* width - 1, width a power of two */
	uint64_t seed;
	uint64_t adds;
	uint64_t decay_every;
};

/*
 * A sketch sized for about `keys` distinct keys (width = next power of two
 * of keys, clamped to [EMBKV_CMS_MIN_WIDTH, EMBKV_CMS_MAX_WIDTH]), halved
 * every decay_every sightings (0: 8 x width). 0, -EINVAL or -ENOMEM.
 */
int embkv_cms_init(struct embkv_cms *s, uint64_t keys, uint64_t seed,
		   uint64_t decay_every);
void embkv_cms_fini(struct embkv_cms *s);

/* Counts one sighting of key; returns the estimate after it (>= 1). */
unsigned embkv_cms_add(struct embkv_cms *s, uint64_t key);

/* Sightings of key so far (an over-estimate, never an under-estimate
 * between two decays). */
unsigned embkv_cms_estimate(const struct embkv_cms *s, uint64_t key);

/* Bytes of memory the sketch holds. */
static inline uint64_t embkv_cms_bytes(const struct embkv_cms *s)
{
	return s->cnt ? (s->width_mask + 1) * EMBKV_CMS_DEPTH : 0;
}

#endif
