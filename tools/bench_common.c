/*
 * Shared pieces of embkv-bench (see bench_common.h). The Zipf stream
 * inverts the CDF by binary search in a table of cumulative weights: exact
 * and fast enough to pre-generate a stream before anything is timed. The
 * background pushers are the checkpoint, move and replica modes' push
 * load: one thread per pusher, each batch's times kept when asked, so
 * that the figures of a window can be taken after the join.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <embkv/embkv.h>
#include "tools/bench_common.h"

#define KEY_SEED 0x6b657973ull   /* "keys" */
#define RANK_SCATTER 0x5a5aull
#define UNIT_53 (1.0 / 9007199254740992.0)

double bench_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t bench_key_of(uint64_t i)
{
	return XXH3_64bits_withSeed(&i, sizeof(i), KEY_SEED);
}

/* splitmix64: a small, good generator for streams. */
uint64_t bench_rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int bench_stream(uint64_t *idx, uint64_t n, uint64_t keys, double zipf,
		 uint64_t seed)
{
	double *cdf, sum = 0;

	if (zipf == 0) {
		for (uint64_t i = 0; i < n; i++)
			idx[i] = bench_rng_next(&seed) % keys;
		return 0;
	}
	cdf = malloc(keys * sizeof(*cdf));
	if (!cdf)
		return -ENOMEM;
	for (uint64_t r = 0; r < keys; r++) {
		sum += pow((double)(r + 1), -zipf);
		cdf[r] = sum;
	}
	for (uint64_t i = 0; i < n; i++) {
		double u = (double)(bench_rng_next(&seed) >> 11) * UNIT_53 *
			   sum;
		uint64_t lo = 0, hi = keys - 1;

		while (lo < hi) {
			uint64_t mid = (lo + hi) / 2;

			if (cdf[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		idx[i] = bench_key_of(lo ^ RANK_SCATTER) % keys;
	}
	free(cdf);
	return 0;
}

int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void bench_rep_stats(const void *reps, size_t rep_size, uint32_t n,
		     size_t off, double out[3])
{
	double *v = malloc((n ? n : 1) * sizeof(*v));

	if (!v || !n) {
		out[0] = out[1] = out[2] = 0;
		free(v);
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		memcpy(&v[i], (const char *)reps + (size_t)i * rep_size + off,
		       sizeof(double));
	qsort(v, n, sizeof(double), bench_cmp_double);
	out[0] = v[0];
	out[1] = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	out[2] = v[n - 1];
	free(v);
}

void bench_figures_text(FILE *f, const void *reps, size_t rep_size,
			uint32_t n, const struct bench_figure *fig,
			size_t nfig, int name_w, int val_w)
{
	double s[3];

	for (size_t i = 0; i < nfig; i++) {
		bench_rep_stats(reps, rep_size, n, fig[i].off, s);
		fprintf(f, "  %-*s %*.2f %*.2f %*.2f\n", name_w, fig[i].name,
			val_w, s[0], val_w, s[1], val_w, s[2]);
	}
}

void bench_figures_json(const void *reps, size_t rep_size, uint32_t n,
			const struct bench_figure *fig, size_t nfig)
{
	double s[3];

	for (size_t i = 0; i < nfig; i++) {
		bench_rep_stats(reps, rep_size, n, fig[i].off, s);
		printf(", \"%s\": %.3f", fig[i].name, s[1]);
	}
}

const char *bench_default_embkvd(char *buf, size_t buflen)
{
	ssize_t n;
	char *end;

	if (buflen < 64)
		return NULL;
	n = readlink("/proc/self/exe", buf, buflen - 32);
	if (n <= 0)
		return NULL;
	buf[n] = 0;
	end = strrchr(buf, '/');
	if (!end)
		return NULL;
	strcpy(end, "/../server/embkvd");
	return buf;
}

int bench_opts_finish(int argc, char **argv, const char *embkvd)
{
	if (optind < argc) {
		fprintf(stderr, "embkv-bench: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!embkvd || access(embkvd, X_OK)) {
		fprintf(stderr, "embkv-bench: embkvd not found (--embkvd PATH)\n");
		return -EINVAL;
	}
	return 0;
}

/* An unsigned option's value, checked as every mode always has: 0 or -1. */
static int opt_uint(const struct bench_opt *b, const char *arg)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(arg, &end, b->flags & BENCH_OPT_DEC ? 10 : 0);
	if (errno || *end || end == arg || arg[0] == '-' || v == 0 ||
	    v < b->min || v > b->max)
		return -1;
	if ((b->flags & BENCH_OPT_POW2) && (v & (v - 1)))
		return -1;
	if (b->kind == BENCH_OPT_U32)
		*(uint32_t *)b->ptr = (uint32_t)v;
	else
		*(uint64_t *)b->ptr = v;
	return 0;
}

static int opt_double(const struct bench_opt *b, const char *arg)
{
	char *end;
	double d = strtod(arg, &end);

	if (*end || end == arg || !(d >= b->dmin && d <= b->dmax))
		return -1;
	*(double *)b->ptr = d;
	return 0;
}

int bench_opts_parse(int argc, char **argv, const struct bench_opt *opt,
		     size_t nopt, void (*usage)(FILE *f))
{
	struct option *lo = calloc(nopt + 2, sizeof(*lo));
	int c, li = 0, rc = 0;

	if (!lo) {
		fprintf(stderr, "embkv-bench: out of memory\n");
		return -ENOMEM;
	}
	for (size_t i = 0; i < nopt; i++) {
		lo[i].name = opt[i].name;
		lo[i].has_arg = opt[i].kind == BENCH_OPT_FLAG ? no_argument :
								required_argument;
		lo[i].val = (int)i + 1;
	}
	lo[nopt].name = "help";
	lo[nopt].has_arg = no_argument;
	lo[nopt].val = (int)nopt + 1;
	optind = 1;
	while (!rc && (c = getopt_long(argc, argv, "", lo, &li)) != -1) {
		const struct bench_opt *b;

		if (c == (int)nopt + 1) {
			usage(stdout);
			free(lo);
			exit(0);
		}
		if (c < 1 || c > (int)nopt) {
			usage(stderr);
			rc = -EINVAL;
			break;
		}
		b = &opt[c - 1];
		switch (b->kind) {
		case BENCH_OPT_IGNORE:
			break;
		case BENCH_OPT_U32:
		case BENCH_OPT_U64:
			rc = opt_uint(b, optarg);
			break;
		case BENCH_OPT_DOUBLE:
			rc = opt_double(b, optarg);
			break;
		case BENCH_OPT_STR:
			*(const char **)b->ptr = optarg;
			break;
		case BENCH_OPT_FLAG:
			*(int *)b->ptr = 1;
			break;
		case BENCH_OPT_CUSTOM:
			rc = b->parse(optarg, b->ptr);
			break;
		}
		if (rc < 0 && (b->flags & BENCH_OPT_NONAME))
			fprintf(stderr, "embkv-bench: bad value '%s'\n", optarg);
		else if (rc < 0)
			fprintf(stderr, "embkv-bench: bad value '%s' for --%s\n",
				optarg, lo[li].name);
		if (rc)
			rc = -EINVAL;
	}
	free(lo);
	return rc;
}

/* ---- background pushers ------------------------------------------------ */

int bench_pushers_init(struct bench_pushers *ps,
		       const struct bench_push_attr *a)
{
	memset(ps, 0, sizeof(*ps));
	ps->a = *a;
	atomic_store(&ps->stop, 0);
	ps->p = calloc(a->threads, sizeof(*ps->p));
	if (!ps->p)
		return -ENOMEM;
	for (uint32_t i = 0; i < a->threads; i++) {
		struct bench_pusher *p = &ps->p[i];

		p->t = a->t;
		p->seed = a->seed * 1000003u + i;
		if (a->stream)
			p->at = (uint64_t)i * a->nstream / a->threads;
		p->ps = ps;
	}
	return 0;
}

/* Appends one batch to p's log: 0 or -ENOMEM. */
static int push_log(struct bench_pusher *p, const struct bench_push_batch *b)
{
	if (p->nlog == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 8192;
		struct bench_push_batch *l = realloc(p->log, cap * sizeof(*l));

		if (!l)
			return -ENOMEM;
		p->log = l;
		p->cap = cap;
	}
	p->log[p->nlog++] = *b;
	return 0;
}

static void *push_main(void *arg)
{
	struct bench_pusher *p = arg;
	const struct bench_push_attr *a = &p->ps->a;
	uint64_t *keys = malloc(a->batch * sizeof(*keys));
	float *grads = malloc((size_t)a->batch * a->dim * sizeof(float));

	if (!keys || !grads) {
		p->err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < (size_t)a->batch * a->dim; i++)
		grads[i] = (float)((int)(i % 13) - 6) * 1e-3f;
	while (!atomic_load(&p->ps->stop)) {
		struct bench_push_batch b = { .keys = a->batch };

		for (uint32_t j = 0; j < a->batch; j++)
			keys[j] = a->stream ? a->stream[p->at++ % a->nstream] :
				  bench_key_of(bench_rng_next(&p->seed) %
					       a->rows);
		if (a->log) /* the clock only where the log wants it */
			b.t0 = bench_now_s();
		p->err = embkv_push(p->t, a->batch, keys, grads, NULL);
		if (a->log)
			b.t1 = bench_now_s();
		if (p->err)
			break;
		p->keys += a->batch;
		if (a->log && (p->err = push_log(p, &b)))
			break;
	}
out:
	free(keys);
	free(grads);
	return NULL;
}

int bench_pushers_start(struct bench_pushers *ps)
{
	for (uint32_t i = 0; i < ps->a.threads; i++) {
		if (pthread_create(&ps->p[i].th, NULL, push_main, &ps->p[i]))
			return -EAGAIN;
		ps->started++;
	}
	return 0;
}

int bench_pushers_join(struct bench_pushers *ps)
{
	int rc = 0;

	atomic_store(&ps->stop, 1);
	for (uint32_t i = 0; i < ps->started; i++)
		pthread_join(ps->p[i].th, NULL);
	for (uint32_t i = 0; i < ps->started; i++)
		if (ps->p[i].err && !rc)
			rc = ps->p[i].err;
	return rc;
}

void bench_pushers_free(struct bench_pushers *ps)
{
	for (uint32_t i = 0; ps->p && i < ps->a.threads; i++)
		free(ps->p[i].log);
	free(ps->p);
	ps->p = NULL;
}

double bench_pushers_window_keys(const struct bench_pushers *ps, double w0,
				 double w1)
{
	double keys = 0;

	for (uint32_t i = 0; i < ps->started; i++) {
		const struct bench_pusher *p = &ps->p[i];

		for (size_t k = 0; k < p->nlog; k++) {
			const struct bench_push_batch *b = &p->log[k];
			double a = b->t0 > w0 ? b->t0 : w0;
			double e = b->t1 < w1 ? b->t1 : w1;

			if (e > a && b->t1 > b->t0)
				keys += b->keys * (e - a) / (b->t1 - b->t0);
		}
	}
	return keys;
}

double bench_pushers_quantile(const struct bench_pushers *ps, double q,
			      double a0, double a1, double b0, double b1,
			      size_t *n)
{
	size_t total = 0, k = 0;
	double *v, r;

	for (uint32_t i = 0; i < ps->started; i++)
		total += ps->p[i].nlog;
	v = malloc((total ? total : 1) * sizeof(*v));
	if (!v)
		return -1;
	for (uint32_t i = 0; i < ps->started; i++)
		for (size_t j = 0; j < ps->p[i].nlog; j++) {
			double t = ps->p[i].log[j].t0;

			if ((t >= a0 && t < a1) || (t >= b0 && t < b1))
				v[k++] = ps->p[i].log[j].t1 - t;
		}
	*n = k;
	if (!k) {
		free(v);
		return 0;
	}
	qsort(v, k, sizeof(*v), bench_cmp_double);
	r = v[(size_t)(q * (double)(k - 1) + 0.5)];
	free(v);
	return r;
}
