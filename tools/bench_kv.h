/*
 * Pipelined Redis and memcached clients for embkv-bench's comparisons.
 * One connection per struct; not thread-safe; 0 or a negative errno.
 */
#ifndef EMBKV_TOOLS_BENCH_KV_H
#define EMBKV_TOOLS_BENCH_KV_H

#include <stddef.h>
#include <stdint.h>

struct bench_kv {
	int fd;
	uint8_t *rx, *tx;
	size_t rx_len, rx_pos, rx_cap, tx_len, tx_cap;
};

int bench_kv_connect(struct bench_kv *kv, const char *host, unsigned port);
void bench_kv_close(struct bench_kv *kv);

/* One MGET of n binary keys; rows of dim floats into out, found[i]. */
int bench_redis_mget(struct bench_kv *kv, uint32_t n, const uint64_t *keys,
		     float *out, uint32_t dim, uint8_t *found);
/* One MSET of n rows. */
int bench_redis_mset(struct bench_kv *kv, uint32_t n, const uint64_t *keys,
		     const float *rows, uint32_t dim);
/* One multi-get of n keys (hex text keys). */
int bench_memc_get(struct bench_kv *kv, uint32_t n, const uint64_t *keys,
		   float *out, uint32_t dim, uint8_t *found);
/* n pipelined sets, then a meta no-op that confirms them. */
int bench_memc_set(struct bench_kv *kv, uint32_t n, const uint64_t *keys,
		   const float *rows, uint32_t dim);

#endif
