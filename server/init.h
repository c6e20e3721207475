/*
 * Deterministic row initializers: the same key, seed and parameters always
 * give the same row (zeros, uniform [a, b), normal(mean a, stddev b)).
 * Pure functions, any thread.
 */
#ifndef EMBKV_SERVER_INIT_H
#define EMBKV_SERVER_INIT_H

#include <stdint.h>
#include <embkv/embkv.h>

/* Writes dim floats of key's initial row to out. */
void embkv_init_row(const struct embkv_init_attr *ia, uint64_t key,
		    uint32_t dim, float *out);

/* 0 when the initializer is valid (known type, a < b for uniform,
 * b >= 0 for normal, finite values), else -EINVAL. */
int embkv_init_check(const struct embkv_init_attr *ia);

#endif
