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

/*
 * One option parser for every mode. A mode declares a table of its long
 * options (in the order --help and getopt's ambiguity messages list them;
 * --help is added at the end) and calls bench_opts_parse, which runs
 * getopt_long over argv (optind reset to 1, no short options), stores each
 * value through its entry's pointer and checks it:
 *   U32, U64  unsigned integer (strtoull, base 0: 0x and 0 prefixes, or
 *             base 10 with BENCH_OPT_DEC), not empty, not negative, not 0,
 *             in [min, max], a power of two with BENCH_OPT_POW2;
 *   DOUBLE    strtod, the whole argument, in [dmin, dmax];
 *   STR       the argument itself (const char *);
 *   FLAG      no argument, the int set to 1;
 *   CUSTOM    parse(argument, ptr): 0, or -1 for a bad value, or 1 when
 *             the hook has said what is wrong itself;
 *   IGNORE    an argument taken and dropped (--mode, read by main).
 * A bad value prints "embkv-bench: bad value 'ARG' for --NAME"; an unknown
 * option or a missing argument prints getopt's message and usage(stderr);
 * both return -EINVAL. --help prints usage(stdout) and exits 0. What a mode
 * checks after its options (bench_opts_finish, ...) stays in the mode.
 */
enum bench_opt_kind {
	BENCH_OPT_IGNORE,
	BENCH_OPT_U32,
	BENCH_OPT_U64,
	BENCH_OPT_DOUBLE,
	BENCH_OPT_STR,
	BENCH_OPT_FLAG,
	BENCH_OPT_CUSTOM,
};
#define BENCH_OPT_POW2 1u	/* U32/U64: a power of two */
#define BENCH_OPT_DEC 2u	/* U32/U64: base 10 only */
#define BENCH_OPT_NONAME 4u	/* "bad value 'ARG'" alone (the multi mode's) */

struct bench_opt {
	const char *name;
	enum bench_opt_kind kind;
	void *ptr;
	uint64_t min, max;	/* U32, U64 */
	double dmin, dmax;	/* DOUBLE */
	unsigned flags;
	int (*parse)(const char *arg, void *ptr);	/* CUSTOM */
};

/* Table entries; the pointer's type is checked against the kind. */
#define BENCH_OPT_PTR_(p, type) ((void *)(1 ? (p) : (type *)0))
#define BENCH_IGNORE(n) { .name = (n), .kind = BENCH_OPT_IGNORE }
#define BENCH_U32(n, p, lo, hi, fl)                                      \
	{ .name = (n), .kind = BENCH_OPT_U32,                            \
	  .ptr = BENCH_OPT_PTR_(p, uint32_t), .min = (lo), .max = (hi),  \
	  .flags = (fl) }
#define BENCH_U64(n, p, lo, hi, fl)                                      \
	{ .name = (n), .kind = BENCH_OPT_U64,                            \
	  .ptr = BENCH_OPT_PTR_(p, uint64_t), .min = (lo), .max = (hi),  \
	  .flags = (fl) }
#define BENCH_DOUBLE(n, p, lo, hi)                                       \
	{ .name = (n), .kind = BENCH_OPT_DOUBLE,                         \
	  .ptr = BENCH_OPT_PTR_(p, double), .dmin = (lo), .dmax = (hi) }
#define BENCH_STR(n, p)                                                  \
	{ .name = (n), .kind = BENCH_OPT_STR,                            \
	  .ptr = BENCH_OPT_PTR_(p, const char *) }
#define BENCH_FLAG(n, p)                                                 \
	{ .name = (n), .kind = BENCH_OPT_FLAG, .ptr = BENCH_OPT_PTR_(p, int) }
#define BENCH_CUSTOM(n, fn, p, fl)                                       \
	{ .name = (n), .kind = BENCH_OPT_CUSTOM, .ptr = (p), .parse = (fn),  \
	  .flags = (fl) }

int bench_opts_parse(int argc, char **argv, const struct bench_opt *opt,
		     size_t nopt, void (*usage)(FILE *f));

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
