/*
 * embkvd metrics: latency histograms, per-I/O-thread counters and
 * per-second rates over a sliding window.
 *
 * Threads. A histogram and a struct embkv_io_stats have ONE writer (their
 * I/O thread), which updates with relaxed atomic stores; any thread may
 * read them (relaxed loads) and gets recent values, not a snapshot.
 * struct embkv_rates is locked inside and may be used from any thread.
 */
#ifndef EMBKV_SERVER_METRICS_H
#define EMBKV_SERVER_METRICS_H

#include <pthread.h>
#include <stdint.h>

/* Log-bucketed: 4 buckets per power of two, so a quantile is exact to
 * within 25%. Values are microseconds. */
#define EMBKV_HIST_SUB_BITS 2u
#define EMBKV_HIST_BUCKETS 256u

struct embkv_hist {
	uint64_t count[EMBKV_HIST_BUCKETS];
	uint64_t sum;                   /* of every value added */
};

/* Single writer. */
void embkv_hist_add(struct embkv_hist *h, uint64_t v);
/* dst += src (dst private to the caller, src read relaxed). */
void embkv_hist_merge(struct embkv_hist *dst, const struct embkv_hist *src);
/* Largest value that bucket b holds (b < EMBKV_HIST_BUCKETS). */
uint64_t embkv_hist_bucket_upper(unsigned b);
/* Upper bound of the bucket holding quantile q (0 < q <= 1); 0 when empty. */
uint64_t embkv_hist_quantile(const struct embkv_hist *h, double q);

/* Single-writer counter add. */
static inline void embkv_stat_inc(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v,
			 __ATOMIC_RELAXED);
}

/* Any-writer counter add. */
static inline void embkv_stat_add(uint64_t *c, uint64_t v)
{
	__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

static inline uint64_t embkv_stat_read(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Counters of one I/O thread. */
struct embkv_io_stats {
	uint64_t requests;       /* frames handled */
	uint64_t errors;         /* ERROR replies sent, misses not counted */
	uint64_t misses;         /* expected "not found" answers (a table
				  * name looked up that does not exist) */
	uint64_t stale;          /* EMBKV_ESTALE replies */
	uint64_t auth_failures;
	uint64_t bytes_in, bytes_out;
	uint64_t pulls, pull_keys;
	uint64_t pushes, push_keys;
	struct embkv_hist pull_us, push_us;  /* handling latency */
};

/* Sliding-window rates of a few monotonic counters. */
enum embkv_rate_id {
	EMBKV_RATE_PULLS,
	EMBKV_RATE_PUSHES,
	EMBKV_RATE_PULL_KEYS,
	EMBKV_RATE_PUSH_KEYS,
	EMBKV_RATE_COUNT,
};

#define EMBKV_RATE_SAMPLES 8u          /* ring of one-second samples */
#define EMBKV_RATE_WINDOW_NS (5ull * 1000000000ull)

struct embkv_rate_sample {
	uint64_t t_ns;
	uint64_t v[EMBKV_RATE_COUNT];
};

struct embkv_rates {
	pthread_mutex_t lock;
	uint32_t head, count;
	struct embkv_rate_sample s[EMBKV_RATE_SAMPLES];
};

int embkv_rates_init(struct embkv_rates *r);
void embkv_rates_fini(struct embkv_rates *r);
/* Records the counters' values v at time now (call about once a second). */
void embkv_rates_record(struct embkv_rates *r, uint64_t now_ns,
			const uint64_t v[EMBKV_RATE_COUNT]);
/* Per-second rates from the oldest sample within the window to the
 * current values cur at now; zeros before the first sample. */
void embkv_rates_get(struct embkv_rates *r, uint64_t now_ns,
		     const uint64_t cur[EMBKV_RATE_COUNT],
		     uint64_t per_s[EMBKV_RATE_COUNT]);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t embkv_now_ns(void);

#endif
