/*
 * What every embkv-bench mode shares: the clock, the benchmark's keys,
 * and the uniform and Zipf key streams, so that every mode measures the
 * same workload.
 */
#ifndef EMBKV_TOOLS_BENCH_COMMON_H
#define EMBKV_TOOLS_BENCH_COMMON_H

#include <stdint.h>

/* Monotonic seconds. */
double bench_now_s(void);
/* After a mode's getopt loop: no argument left over (optind), and an
 * embkvd binary that can run. 0, or -EINVAL with the reason printed. */
int bench_opts_finish(int argc, char **argv, const char *embkvd);
/* The embkvd beside this embkv-bench in the build tree
 * (tools/../server/embkvd) into buf; buf, or NULL when unknown. */
const char *bench_default_embkvd(char *buf, size_t buflen);

/* The i-th benchmark key: arbitrary-looking 64-bit feature ids. */
uint64_t bench_key_of(uint64_t i);

/*
 * Row indices in [0, keys) of a stream of n accesses: uniform when zipf is
 * 0, else Zipf(zipf) over ranks, rank r mapped to a scattered row so that
 * hot keys are not neighbours. Deterministic for a seed. 0 or -ENOMEM.
 */
int bench_stream(uint64_t *idx, uint64_t n, uint64_t keys, double zipf,
		 uint64_t seed);

#endif
