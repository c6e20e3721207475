/*
 * Shared pieces of embkv-bench (see bench_common.h). The Zipf stream
 * inverts the CDF by binary search in a table of cumulative weights: exact
 * and fast enough to pre-generate a stream before anything is timed.
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
static uint64_t rng_next(uint64_t *s)
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
			idx[i] = rng_next(&seed) % keys;
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
		double u = (double)(rng_next(&seed) >> 11) * UNIT_53 * sum;
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
