/*
 * embkvd metrics: log-bucketed latency histograms and sliding-window rates.
 *
 * What: the numbers behind STATS' p50/p99 latencies and per-second rates.
 *
 * Why: an HDR-style histogram (4 sub-buckets per power of two) costs one
 * increment per request and answers any quantile within 25%, which is what
 * an operator needs; the rates come from one-second samples of monotonic
 * counters so that no request path ever takes a lock.
 *
 * Invariants: bucket(v) is monotonic in v and buckets 0..3 hold exactly
 * 0..3; a histogram has one writer; a rate sample ring is only touched
 * under its mutex.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include "server/metrics.h"

#define HIST_SUB (1u << EMBKV_HIST_SUB_BITS)
#define NS_PER_S 1000000000ull

_Static_assert((64u - 1u) * HIST_SUB <= EMBKV_HIST_BUCKETS,
	       "histogram must cover every uint64_t value");

uint64_t embkv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static unsigned hist_bucket(uint64_t v)
{
	unsigned msb, sub;

	if (v < HIST_SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	sub = (unsigned)(v >> (msb - EMBKV_HIST_SUB_BITS)) & (HIST_SUB - 1);
	return (msb - EMBKV_HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

/* Largest value of bucket b. */
static uint64_t hist_upper(unsigned b)
{
	unsigned msb, sub;
	uint64_t lo;

	if (b < HIST_SUB)
		return b;
	msb = b / HIST_SUB + EMBKV_HIST_SUB_BITS - 1;
	sub = b % HIST_SUB;
	lo = (uint64_t)(HIST_SUB | sub) << (msb - EMBKV_HIST_SUB_BITS);
	return lo + ((uint64_t)1 << (msb - EMBKV_HIST_SUB_BITS)) - 1;
}

uint64_t embkv_hist_bucket_upper(unsigned b)
{
	return hist_upper(b);
}

void embkv_hist_add(struct embkv_hist *h, uint64_t v)
{
	embkv_stat_inc(&h->count[hist_bucket(v)], 1);
	embkv_stat_inc(&h->sum, v);
}

void embkv_hist_merge(struct embkv_hist *dst, const struct embkv_hist *src)
{
	for (unsigned b = 0; b < EMBKV_HIST_BUCKETS; b++)
		dst->count[b] += embkv_stat_read(&src->count[b]);
	dst->sum += embkv_stat_read(&src->sum);
}

uint64_t embkv_hist_quantile(const struct embkv_hist *h, double q)
{
	uint64_t total = 0, rank, seen = 0;

	for (unsigned b = 0; b < EMBKV_HIST_BUCKETS; b++)
		total += h->count[b];
	if (!total)
		return 0;
	rank = (uint64_t)(q * (double)total + 0.5);
	if (rank < 1)
		rank = 1;
	for (unsigned b = 0; b < EMBKV_HIST_BUCKETS; b++) {
		seen += h->count[b];
		if (seen >= rank)
			return hist_upper(b);
	}
	return UINT64_MAX; /* unreachable: the buckets sum to total */
}

int embkv_rates_init(struct embkv_rates *r)
{
	memset(r, 0, sizeof(*r));
	return -pthread_mutex_init(&r->lock, NULL);
}

void embkv_rates_fini(struct embkv_rates *r)
{
	pthread_mutex_destroy(&r->lock);
}

void embkv_rates_record(struct embkv_rates *r, uint64_t now_ns,
			const uint64_t v[EMBKV_RATE_COUNT])
{
	struct embkv_rate_sample *s;

	pthread_mutex_lock(&r->lock);
	s = &r->s[r->head];
	s->t_ns = now_ns;
	memcpy(s->v, v, sizeof(s->v));
	r->head = (r->head + 1) % EMBKV_RATE_SAMPLES;
	if (r->count < EMBKV_RATE_SAMPLES)
		r->count++;
	pthread_mutex_unlock(&r->lock);
}

void embkv_rates_get(struct embkv_rates *r, uint64_t now_ns,
		     const uint64_t cur[EMBKV_RATE_COUNT],
		     uint64_t per_s[EMBKV_RATE_COUNT])
{
	const struct embkv_rate_sample *base = NULL;
	uint64_t dt;

	memset(per_s, 0, sizeof(uint64_t) * EMBKV_RATE_COUNT);
	pthread_mutex_lock(&r->lock);
	/* Oldest sample still inside the window (the ring is in time order
	 * from head - count to head - 1). */
	for (uint32_t k = r->count; k > 0; k--) {
		uint32_t i = (r->head + EMBKV_RATE_SAMPLES - k) %
			     EMBKV_RATE_SAMPLES;

		if (now_ns - r->s[i].t_ns <= EMBKV_RATE_WINDOW_NS ||
		    k == 1) {
			base = &r->s[i];
			break;
		}
	}
	if (base && now_ns > base->t_ns) {
		dt = now_ns - base->t_ns;
		for (int i = 0; i < EMBKV_RATE_COUNT; i++) {
			uint64_t d = cur[i] >= base->v[i] ? cur[i] - base->v[i]
							  : 0;

			per_s[i] = (uint64_t)((double)d * NS_PER_S / (double)dt);
		}
	}
	pthread_mutex_unlock(&r->lock);
}
