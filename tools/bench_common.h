/*
 * What every embkv-bench mode shares: the clock, the benchmark's keys,
 * the uniform and Zipf key streams, and the background pushers, so that
 * every mode measures the same workload.
 */
#ifndef EMBKV_TOOLS_BENCH_COMMON_H
#define EMBKV_TOOLS_BENCH_COMMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct embkv_client;
struct embkv_table_handle;

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

/* splitmix64: the next number of the generator whose state is *s. */
uint64_t bench_rng_next(uint64_t *s);

/*
 * Row indices in [0, keys) of a stream of n accesses: uniform when zipf is
 * 0, else Zipf(zipf) over ranks, rank r mapped to a scattered row so that
 * hot keys are not neighbours. Deterministic for a seed. 0 or -ENOMEM.
 */
int bench_stream(uint64_t *idx, uint64_t n, uint64_t keys, double zipf,
		 uint64_t seed);

/*
 * Background pushers: threads that push batches of keys, with a fixed
 * gradient pattern, back to back with embkv_push until joined. The keys
 * are uniform, bench_key_of(bench_rng_next(&seed) % rows) with pusher i's
 * seed at seed * 1000003 + i, or, given a stream, the stream's keys
 * cycled from i * nstream / threads on. With log set, each batch's start,
 * end and keys are kept, for the window figures below.
 */
struct bench_push_attr {
	uint32_t threads, batch, dim;
	struct embkv_table_handle *t;	/* every pusher's; or set p[i].t */
	uint64_t rows, seed;		/* uniform keys */
	const uint64_t *stream;		/* or these keys, cycled */
	uint64_t nstream;
	int log;			/* keep the per-batch log */
};

struct bench_push_batch {
	double t0, t1;
	uint32_t keys;
};

struct bench_pusher {
	struct embkv_table_handle *t;
	struct embkv_client *c;		/* the caller's: each its own client */
	uint64_t seed, at;		/* the generator, or place in stream */
	uint64_t keys;			/* pushed */
	int err;			/* the push's error that stopped it */
	struct bench_push_batch *log;
	size_t nlog, cap;
	const struct bench_pushers *ps;
	pthread_t th;
};

struct bench_pushers {
	struct bench_push_attr a;
	struct bench_pusher *p;		/* a.threads of them */
	uint32_t started;
	atomic_int stop;
};

/* Sets the pushers up, not started (the caller may then set p[i].t and
 * p[i].c); *ps stays put until freed, each pusher points to it. 0 or
 * -ENOMEM; either way bench_pushers_free may follow (it frees the logs,
 * not the caller's tables and clients). */
int bench_pushers_init(struct bench_pushers *ps,
		       const struct bench_push_attr *a);
/* Starts every pusher: 0, or -EAGAIN when a thread could not be made
 * (those started run on; join them). */
int bench_pushers_start(struct bench_pushers *ps);
/* Stops and joins the started pushers: the first one's error, or 0. */
int bench_pushers_join(struct bench_pushers *ps);
void bench_pushers_free(struct bench_pushers *ps);
/* Keys the joined pushers pushed within [w0, w1], each batch weighted by
 * its overlap with the window (log). */
double bench_pushers_window_keys(const struct bench_pushers *ps, double w0,
				 double w1);
/* Quantile q of the latencies (s) of batches that started in [a0, a1) or
 * [b0, b1); *n gets their count. 0 when none, -1 out of memory (log). */
double bench_pushers_quantile(const struct bench_pushers *ps, double q,
			      double a0, double a1, double b0, double b1,
			      size_t *n);

#endif
