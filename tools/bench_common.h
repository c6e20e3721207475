/*
 * What every embkv-bench mode shares: the clock, the benchmark's keys,
 * and the uniform and Zipf key streams, so that every mode measures the
 * same workload.
 */
#ifndef EMBKV_TOOLS_BENCH_COMMON_H
#define EMBKV_TOOLS_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Monotonic seconds. */
double bench_now_s(void);
/* After a mode's getopt loop: no argument left over (optind), and an
 * embkvd binary that can run. 0, or -EINVAL with the reason printed. */
int bench_opts_finish(int argc, char **argv, const char *embkvd);
/* The embkvd beside this embkv-bench in the build tree
 * (tools/../server/embkvd) into buf; buf, or NULL when unknown. */
const char *bench_default_embkvd(char *buf, size_t buflen);

/* qsort order of doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

/*
 * Figures of repeated runs: each rep is a struct of rep_size bytes whose
 * figures are doubles at the offsets named here. bench_rep_stats gives
 * min, median and max of one figure over n reps (n >= 1);
 * bench_figures_text prints every figure's three on f (name, then the
 * values, in the widths given); bench_figures_json appends ', "name":
 * median' for each to stdout.
 */
struct bench_figure {
	const char *name;
	size_t off;
};
void bench_rep_stats(const void *reps, size_t rep_size, uint32_t n,
		     size_t off, double out[3]);
void bench_figures_text(FILE *f, const void *reps, size_t rep_size,
			uint32_t n, const struct bench_figure *fig,
			size_t nfig, int name_w, int val_w);
void bench_figures_json(const void *reps, size_t rep_size, uint32_t n,
			const struct bench_figure *fig, size_t nfig);

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
