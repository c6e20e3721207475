/*
 * Record checksums: XXH3-64, computed by the widest vector unit the CPU
 * has (SSE2, AVX2 or AVX-512), picked once on first use. A checksum costs
 * about as much as copying the record, so it is worth the dispatch.
 */
#ifndef EMBKV_HASHING_SUM_H
#define EMBKV_HASHING_SUM_H

#include <stddef.h>
#include <stdint.h>

/* XXH3_64bits(p, n), any thread. */
uint64_t embkv_sum(const void *p, size_t n);

/* The variants, for tests; call only those the CPU supports. */
uint64_t embkv_sum_sse2(const void *p, size_t n);
uint64_t embkv_sum_avx2(const void *p, size_t n);
uint64_t embkv_sum_avx512(const void *p, size_t n);
/* Name of the variant embkv_sum uses ("sse2", "avx2", "avx512"). */
const char *embkv_sum_impl(void);

#endif
