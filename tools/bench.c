/*
 * embkv-bench, in-process mode: builds a table, then measures pull (the
 * lock-free validated find) and push (SGD, then Adam) in batches, with
 * uniform and Zipf key streams, beside bounds measured in the same run on
 * the same rows: a prefetched random gather from a plain array, and a
 * plain prefetched SGD loop over it. Ratios to those bounds are what to
 * compare across machines; absolute rates are noisy. Two more bounds, the
 * same loops plus the record checksum each row costs (hash the copy, or
 * reseal the update), say how much of the gap validation alone explains.
 *
 * Every measurement is repeated (best of --reps) and the bound and the
 * store alternate, so a noisy neighbour hurts both alike.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <xxhash.h>
#include "server/store.h"
#include "tools/bench_bpr.h"
#include "tools/bench_ckpt.h"
#include "tools/bench_move.h"
#include "tools/bench_latency.h"
#include "tools/bench_multi.h"
#include "tools/bench_replica.h"
#include "tools/bench_common.h"
#include "tools/bench_net.h"
#include "tools/bench_rdma.h"
#include "tools/version.h"

#define DEFAULT_KEYS 10000000ull
#define DEFAULT_DIM 64u
#define DEFAULT_BATCH 4096u
#define DEFAULT_PARTS 256u
#define DEFAULT_OPS 4000000ull
#define DEFAULT_REPS 3u
#define DEFAULT_ZIPF 1.05
#define CAPACITY_HEADROOM 1.05  /* partitions differ in size by a few % */
#define FILL_KEYS 2000000ull    /* load-factor probe table */
#define FILL_PARTS 16u
#define PREFETCH_DIST 16u
#define CACHE_LINE 64u
#define BENCH_LR 0.01f

struct opts {
	uint64_t keys, ops;
	uint32_t dim, batch, parts, reps;
	double zipf;
	int json;
};

static void *big_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		fprintf(stderr, "embkv-bench: cannot map %zu bytes\n", bytes);
		exit(1);
	}
	(void)madvise(p, bytes, MADV_HUGEPAGE);
	return p;
}

/* Bound 1: prefetched random gather of rows from a plain array. */
static double bound_gather(const float *plain, const uint64_t *idx, uint64_t n,
			   uint32_t dim, uint32_t batch, float *out)
{
	size_t row_bytes = (size_t)dim * sizeof(float);
	double t0 = bench_now_s();

	for (uint64_t b = 0; b < n; b += batch) {
		uint64_t m = n - b < batch ? n - b : batch;

		for (uint64_t j = 0; j < m; j++) {
			if (j + PREFETCH_DIST < m) {
				const char *p = (const char *)(plain +
					idx[b + j + PREFETCH_DIST] * dim);

				for (size_t o = 0; o < row_bytes; o += CACHE_LINE)
					__builtin_prefetch(p + o);
			}
			memcpy(out + j * dim, plain + idx[b + j] * dim,
			       row_bytes);
		}
	}
	return (double)n / (bench_now_s() - t0);
}

/* Bound 2: a plain prefetched SGD loop over the same rows. */
static double bound_sgd(float *plain, const uint64_t *idx, uint64_t n,
			uint32_t dim, uint32_t batch, const float *grads)
{
	size_t row_bytes = (size_t)dim * sizeof(float);
	double t0 = bench_now_s();

	for (uint64_t b = 0; b < n; b += batch) {
		uint64_t m = n - b < batch ? n - b : batch;

		for (uint64_t j = 0; j < m; j++) {
			float *restrict w = plain + idx[b + j] * dim;
			const float *restrict g = grads + j * dim;

			if (j + PREFETCH_DIST < m) {
				const char *p = (const char *)(plain +
					idx[b + j + PREFETCH_DIST] * dim);

				for (size_t o = 0; o < row_bytes; o += CACHE_LINE)
					__builtin_prefetch(p + o, 1);
			}
			for (uint32_t d = 0; d < dim; d++)
				w[d] -= BENCH_LR * g[d];
		}
	}
	return (double)n / (bench_now_s() - t0);
}

/*
 * The checksum floors: bounds 1 and 2 plus the checksum work that every
 * checksummed row costs, whatever the index: a validated read hashes the
 * payload it copied, then a 16-byte key and version seeded with that
 * (embkv_record_sum_of, the store's own function); an owner update reseals
 * the row it changed. The same rows, no index, no header lines fetched.
 * With hashing in the loop, prefetching a row ahead of each one measured
 * slower here than prefetching a chunk of rows and then working through
 * it (the store's way, server/probe.h), so the floors run in chunks of
 * FLOOR_CHUNK rows. How far they fall below the plain bounds is what the
 * checksum alone costs.
 */
#define FLOOR_CHUNK 128u
static volatile uint64_t checksum_sink;

static void prefetch_chunk(const float *plain, const uint64_t *idx,
			   uint64_t m, size_t row_bytes, int write)
{
	for (uint64_t j = 0; j < m; j++) {
		const char *p = (const char *)plain + idx[j] * row_bytes;

		for (size_t o = 0; o < row_bytes; o += CACHE_LINE)
			if (write)
				__builtin_prefetch(p + o, 1, 2);
			else
				__builtin_prefetch(p + o, 0, 2);
	}
}

/* The read floor (grads NULL: copy each row to out, hash the copy) or the
 * update floor (SGD each row in place with grads, hash it: the reseal). */
static double bound_floor(float *plain, const uint64_t *idx, uint64_t n,
			  uint32_t dim, uint32_t batch, float *out,
			  const float *grads)
{
	size_t row_bytes = (size_t)dim * sizeof(float);
	uint64_t sink = 0;
	double t0 = bench_now_s();

	for (uint64_t b = 0; b < n; b += batch) {
		uint64_t m = n - b < batch ? n - b : batch;

		for (uint64_t c = 0; c < m; c += FLOOR_CHUNK) {
			uint64_t e = m - c < FLOOR_CHUNK ? m : c + FLOOR_CHUNK;

			prefetch_chunk(plain, idx + b + c, e - c, row_bytes,
				       grads != NULL);
			for (uint64_t j = c; j < e; j++) {
				float *restrict w = plain + idx[b + j] * dim;
				const float *row = w;

				if (grads) {
					const float *restrict g = grads + j * dim;

					for (uint32_t d = 0; d < dim; d++)
						w[d] -= BENCH_LR * g[d];
				} else {
					memcpy(out + j * dim, w, row_bytes);
					row = out + j * dim;
				}
				sink ^= embkv_record_sum_of(idx[b + j],
							    grads != NULL, row,
							    row_bytes);
			}
		}
	}
	checksum_sink = sink;
	return (double)n / (bench_now_s() - t0);
}

static void keys_of(const uint64_t *idx, uint64_t *keys, uint64_t m)
{
	for (uint64_t j = 0; j < m; j++)
		keys[j] = bench_key_of(idx[j]);
}

/*
 * Pull through the lock-free validated reader (owner = 0: what local
 * readers and one-sided clients run, checksum and key checked) or through
 * the owner's find (owner = 1: what embkvd runs for an RPC pull; the owner
 * is the only writer, so it reads its rows without validating them).
 */
static double run_find(struct embkv_table *t, const uint64_t *idx,
		       uint64_t n, uint32_t batch, float *out, uint8_t *found,
		       uint64_t *kbuf, uint64_t *missing, int owner)
{
	double dt = 0;
	uint64_t miss = 0;

	for (uint64_t b = 0; b < n; b += batch) {
		uint32_t m = (uint32_t)(n - b < batch ? n - b : batch);

		keys_of(idx + b, kbuf, m); /* not timed: what a client sends */
		dt -= bench_now_s();
		miss += m - (owner ? embkv_table_pull(t, m, kbuf, out, found,
						      EMBKV_PULL_INFER, NULL)
				   : embkv_table_find(t, m, kbuf, out, found,
						      NULL, NULL));
		dt += bench_now_s();
	}
	*missing = miss;
	return (double)n / dt;
}

static double run_push(struct embkv_table *t, const uint64_t *idx, uint64_t n,
		       uint32_t batch, const float *grads, uint64_t *kbuf)
{
	double dt = 0;

	for (uint64_t b = 0; b < n; b += batch) {
		uint32_t m = (uint32_t)(n - b < batch ? n - b : batch);

		keys_of(idx + b, kbuf, m);
		dt -= bench_now_s();
		embkv_table_push(t, m, kbuf, grads);
		dt += bench_now_s();
	}
	return (double)n / dt;
}

static struct embkv_table *build_table(const struct opts *o,
				       enum embkv_optimizer opt, float *out,
				       uint64_t *kbuf, double *rate)
{
	struct embkv_table_attr a;
	struct embkv_table *t;
	double t0;
	int err;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "bench_%s", embkv_optimizer_name(opt));
	a.dim = o->dim;
	a.partitions = o->parts;
	a.capacity = (uint64_t)((double)o->keys * CAPACITY_HEADROOM);
	a.opt.type = opt;
	a.opt.lr = BENCH_LR;
	err = embkv_table_create(&a, &t);
	if (err) {
		fprintf(stderr, "embkv-bench: table: %s\n", embkv_strerror(err));
		exit(1);
	}
	t0 = bench_now_s();
	for (uint64_t b = 0; b < o->keys; b += o->batch) {
		uint32_t m = (uint32_t)(o->keys - b < o->batch ? o->keys - b
							       : o->batch);

		for (uint32_t j = 0; j < m; j++)
			kbuf[j] = bench_key_of(b + j);
		embkv_table_pull(t, m, kbuf, out, NULL, EMBKV_PULL_TRAIN, NULL);
		if (!o->json && (b / o->batch) % 512 == 0)
			fprintf(stderr, "\rbuild %s: %5.1f%%",
				embkv_optimizer_name(opt),
				100.0 * (double)b / (double)o->keys);
	}
	*rate = (double)o->keys / (bench_now_s() - t0);
	if (!o->json)
		fprintf(stderr, "\rbuild %s: done, %.2f M rows/s\n",
			embkv_optimizer_name(opt), *rate / 1e6);
	return t;
}

/* Inserts distinct keys one at a time into a table whose arena is as large
 * as its index, until the first eviction; returns the index load then. */
static double fill_until_eviction(uint32_t dim, int *index_driven)
{
	struct embkv_table_attr a;
	struct embkv_table_stats st;
	struct embkv_table *t;
	float *row = malloc(dim * sizeof(float));
	double load = 0;

	embkv_table_attr_init(&a);
	a.dim = dim;
	a.partitions = FILL_PARTS;
	a.capacity = FILL_KEYS;
	a.index_load = 1.0f;
	if (!row || embkv_table_create(&a, &t)) {
		fprintf(stderr, "embkv-bench: fill table failed\n");
		exit(1);
	}
	for (uint64_t i = 0;; i++) {
		uint64_t k = bench_key_of(i ^ 0xf111);

		embkv_table_get_stats(t, &st);
		load = (double)st.index_used / (double)st.index_slots;
		embkv_table_pull(t, 1, &k, row, NULL, EMBKV_PULL_TRAIN, NULL);
		if (t->parts[embkv_table_partition_of(t, k)].st.evictions)
			break;
	}
	embkv_table_get_stats(t, &st);
	*index_driven = st.sum.index_evictions > 0;
	embkv_table_destroy(t);
	free(row);
	return load;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: embkv-bench [--mode inproc] [options]\n"
		"       embkv-bench --mode net [options]   (see --mode net --help)\n"
		"       embkv-bench --mode rdma-count --servers rdma://H:P,... (counts; see --help)\n"
		"       embkv-bench --mode ckpt [options]  (checkpoints; see --mode ckpt --help)\n"
		"       embkv-bench --mode move [options]  (partition moves; see --mode move --help)\n"
		"       embkv-bench --mode latency [options]  (infer pulls vs Redis, memcached; see --mode latency --help)\n"
		"       embkv-bench --mode multi [options] (many tables per step; see --mode multi --help)\n"
		"       embkv-bench --mode replica [options]  (a replica's lag; see --mode replica --help)\n"
		"       embkv-bench --mode bytes-per-row [--dims 64,128] [--json]  (memory per row)\n"
		"In-process benchmark of the shard store against plain-array bounds.\n"
		"  --keys N        rows in the table (default %llu)\n"
		"  --dim D         floats per row (default %u)\n"
		"  --batch B       keys per batch (default %u)\n"
		"  --partitions P  partitions, a power of two (default %u)\n"
		"  --ops N         keys per measurement (default %llu)\n"
		"  --reps R        repetitions, best kept (default %u)\n"
		"  --zipf S        Zipf exponent (default %.2f)\n"
		"  --json          print one JSON object on stdout\n"
		"  --help          this text\n",
		(unsigned long long)DEFAULT_KEYS, DEFAULT_DIM, DEFAULT_BATCH,
		DEFAULT_PARTS, (unsigned long long)DEFAULT_OPS, DEFAULT_REPS,
		DEFAULT_ZIPF);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "keys", required_argument, 0, 'k' },
		{ "dim", required_argument, 0, 'd' },
		{ "batch", required_argument, 0, 'b' },
		{ "partitions", required_argument, 0, 'p' },
		{ "ops", required_argument, 0, 'o' },
		{ "reps", required_argument, 0, 'r' },
		{ "zipf", required_argument, 0, 'z' },
		{ "json", no_argument, 0, 'j' },
		{ "mode", required_argument, 0, 'M' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	uint64_t v;
	int c, li = 0;

	*o = (struct opts){ DEFAULT_KEYS, DEFAULT_OPS, DEFAULT_DIM,
			    DEFAULT_BATCH, DEFAULT_PARTS, DEFAULT_REPS,
			    DEFAULT_ZIPF, 0 };
	while ((c = getopt_long(argc, argv, "", lo, &li)) != -1) {
		const char *name = c == '?' ? NULL : optarg;

		switch (c) {
		case 'k':
			if (parse_u64(name, 1000, 1ull << 32, &o->keys))
				goto bad;
			break;
		case 'd':
			if (parse_u64(name, 1, EMBKV_MAX_DIM, &v))
				goto bad;
			o->dim = (uint32_t)v;
			break;
		case 'b':
			if (parse_u64(name, 1, 1u << 20, &v))
				goto bad;
			o->batch = (uint32_t)v;
			break;
		case 'p':
			if (parse_u64(name, 1, EMBKV_MAX_PARTITIONS, &v) ||
			    (v & (v - 1)))
				goto bad;
			o->parts = (uint32_t)v;
			break;
		case 'o':
			if (parse_u64(name, 1, 1ull << 34, &o->ops))
				goto bad;
			break;
		case 'r':
			if (parse_u64(name, 1, 100, &v))
				goto bad;
			o->reps = (uint32_t)v;
			break;
		case 'z': {
			char *end;

			o->zipf = strtod(name, &end);
			if (end == name || *end || !(o->zipf > 0 && o->zipf < 10))
				goto bad;
			break;
		}
		case 'j':
			o->json = 1;
			break;
		case 'M':
			if (strcmp(name, "inproc") != 0)
				goto bad;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "embkv-bench: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	return 0;
bad:
	fprintf(stderr, "embkv-bench: bad value '%s' for --%s\n", optarg,
		lo[li].name);
	return -EINVAL;
}

static double maxd(double a, double b)
{
	return a > b ? a : b;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct embkv_table *t;
	struct embkv_table_stats st;
	double build_rate, build_adam;
	/* [0]: uniform, [1]: Zipf; opull: the owner's pull (run_find) */
	double pull[2] = { 0 }, opull[2] = { 0 }, gat[2] = { 0 };
	double sgd[2] = { 0 }, sgdb[2] = { 0 }, adam[2] = { 0 };
	/* uniform only: the checksum floors (bound_floor) */
	double gatc = 0, sgdc = 0;
	uint64_t *idx[2], *kbuf, missing = 0;
	float *plain, *out, *grads;
	uint8_t *found;
	double bytes_per_row, load;
	int index_driven;
	const char *dist_name[2] = { "uniform", "zipf" };

	if (embkv_tool_version(argc, argv, "embkv-bench"))
		return 0;

	/* the other modes have their own main and options */
	static const struct {
		const char *name;
		int (*main)(int argc, char **argv);
	} modes[] = {
		{ "net", bench_net_main },         { "rdma-count", bench_rdma_main },
		{ "ckpt", bench_ckpt_main },       { "move", bench_move_main },
		{ "latency", bench_latency_main }, { "multi", bench_multi_main },
		{ "replica", bench_replica_main }, { "bytes-per-row", bench_bpr_main },
	};
	for (int i = 1; i < argc; i++)
		for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
			const char *v = NULL;

			if (strncmp(argv[i], "--mode=", 7) == 0)
				v = argv[i] + 7;
			else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
				v = argv[i + 1];
			if (v && strcmp(v, modes[k].name) == 0)
				return modes[k].main(argc, argv);
		}
	if (parse_opts(argc, argv, &o))
		return 2;
	kbuf = malloc(o.batch * sizeof(*kbuf));
	out = aligned_alloc(64, (size_t)o.batch * o.dim * sizeof(float));
	grads = aligned_alloc(64, (size_t)o.batch * o.dim * sizeof(float));
	found = malloc(o.batch);
	idx[0] = malloc(o.ops * sizeof(uint64_t));
	idx[1] = malloc(o.ops * sizeof(uint64_t));
	if (!kbuf || !out || !grads || !found || !idx[0] || !idx[1]) {
		fprintf(stderr, "embkv-bench: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < (size_t)o.batch * o.dim; i++)
		grads[i] = (float)((i % 13) - 6) * 1e-3f;
	if (bench_stream(idx[0], o.ops, o.keys, 0, 1) ||
	    bench_stream(idx[1], o.ops, o.keys, o.zipf, 2)) {
		fprintf(stderr, "embkv-bench: out of memory\n");
		return 1;
	}

	if (!o.json)
		fprintf(stderr, "embkv-bench: %llu keys, dim %u, batch %u, "
			"%u partitions, %llu keys per measurement\n",
			(unsigned long long)o.keys, o.dim, o.batch, o.parts,
			(unsigned long long)o.ops);
	load = fill_until_eviction(o.dim, &index_driven);
	if (!o.json)
		fprintf(stderr, "index load at first eviction: %.4f (%s)\n",
			load, index_driven ? "index full" : "arena full");

	plain = big_alloc(o.keys * o.dim * sizeof(float));
	for (uint64_t i = 0; i < o.keys * o.dim; i++)
		plain[i] = (float)(i & 1023) * 1e-4f;
	t = build_table(&o, EMBKV_OPT_SGD, out, kbuf, &build_rate);
	embkv_table_get_stats(t, &st);
	bytes_per_row = (double)st.bytes / (double)st.capacity;

	for (int d = 0; d < 2; d++)
		for (uint32_t r = 0; r < o.reps; r++) {
			uint64_t miss;

			gat[d] = maxd(gat[d], bound_gather(plain, idx[d], o.ops,
							   o.dim, o.batch, out));
			pull[d] = maxd(pull[d], run_find(t, idx[d], o.ops,
							 o.batch, out, found,
							 kbuf, &miss, 0));
			missing += miss;
			opull[d] = maxd(opull[d], run_find(t, idx[d], o.ops,
							   o.batch, out, found,
							   kbuf, &miss, 1));
			sgdb[d] = maxd(sgdb[d], bound_sgd(plain, idx[d], o.ops,
							  o.dim, o.batch, grads));
			sgd[d] = maxd(sgd[d], run_push(t, idx[d], o.ops,
						       o.batch, grads, kbuf));
			if (d == 0) {
				gatc = maxd(gatc, bound_floor(plain, idx[d],
							      o.ops, o.dim,
							      o.batch, out,
							      NULL));
				sgdc = maxd(sgdc, bound_floor(plain, idx[d],
							      o.ops, o.dim,
							      o.batch, NULL,
							      grads));
			}
			if (!o.json)
				fprintf(stderr, "%s rep %u: pull %.2f M/s (bound "
					"%.2f), sgd %.2f M/s (bound %.2f)\n",
					dist_name[d], r + 1, pull[d] / 1e6,
					gat[d] / 1e6, sgd[d] / 1e6,
					sgdb[d] / 1e6);
			if (!o.json && d == 0)
				fprintf(stderr, "  checksum floors: checked "
					"gather %.2f M/s, sealed sgd %.2f M/s\n",
					gatc / 1e6, sgdc / 1e6);
		}
	embkv_table_destroy(t);
	munmap(plain, o.keys * o.dim * sizeof(float));

	t = build_table(&o, EMBKV_OPT_ADAM, out, kbuf, &build_adam);
	for (int d = 0; d < 2; d++)
		for (uint32_t r = 0; r < o.reps; r++)
			adam[d] = maxd(adam[d], run_push(t, idx[d], o.ops,
							 o.batch, grads, kbuf));
	embkv_table_destroy(t);

	printf("{\"keys\": %llu, \"dim\": %u, \"batch\": %u, \"partitions\": %u,"
	       " \"build_rows_per_s\": %.0f,"
	       " \"pull_rows_per_s\": %.0f, \"gather_bound_rows_per_s\": %.0f,"
	       " \"pull_vs_bound\": %.3f,"
	       " \"pull_zipf_rows_per_s\": %.0f,"
	       " \"gather_bound_zipf_rows_per_s\": %.0f,"
	       " \"pull_vs_bound_zipf\": %.3f, \"pull_missing\": %llu,"
	       " \"owner_pull_rows_per_s\": %.0f, \"owner_pull_vs_bound\": %.3f,"
	       " \"owner_pull_zipf_rows_per_s\": %.0f,"
	       " \"owner_pull_vs_bound_zipf\": %.3f,"
	       " \"sgd_rows_per_s\": %.0f, \"sgd_bound_rows_per_s\": %.0f,"
	       " \"sgd_vs_bound\": %.3f,"
	       " \"checked_gather_bound_rows_per_s\": %.0f,"
	       " \"checked_gather_vs_bound\": %.3f,"
	       " \"pull_vs_checked_bound\": %.3f,"
	       " \"sealed_sgd_bound_rows_per_s\": %.0f,"
	       " \"sealed_sgd_vs_bound\": %.3f,"
	       " \"sgd_vs_sealed_bound\": %.3f,"
	       " \"sgd_zipf_rows_per_s\": %.0f,"
	       " \"sgd_bound_zipf_rows_per_s\": %.0f,"
	       " \"sgd_vs_bound_zipf\": %.3f,"
	       " \"adam_rows_per_s\": %.0f, \"adam_zipf_rows_per_s\": %.0f,"
	       " \"bytes_per_row\": %.1f, \"payload_bytes_per_row\": %zu,"
	       " \"load_factor_at_first_eviction\": %.4f}\n",
	       (unsigned long long)o.keys, o.dim, o.batch, o.parts, build_rate,
	       pull[0], gat[0], pull[0] / gat[0], pull[1], gat[1],
	       pull[1] / gat[1], (unsigned long long)missing, opull[0],
	       opull[0] / gat[0], opull[1], opull[1] / gat[1], sgd[0], sgdb[0],
	       sgd[0] / sgdb[0], gatc, gatc / gat[0], pull[0] / gatc, sgdc,
	       sgdc / sgdb[0], sgd[0] / sgdc, sgd[1], sgdb[1], sgd[1] / sgdb[1], adam[0],
	       adam[1], bytes_per_row, (size_t)o.dim * sizeof(float), load);
	free(kbuf);
	free(out);
	free(grads);
	free(found);
	free(idx[0]);
	free(idx[1]);
	return 0;
}
