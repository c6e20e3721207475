/*
 * embkv-demo: a small click-model trainer on embkv, the README's demo.
 *
 * Synthetic click log: each example has --features categorical fields
 * whose ids follow a Zipf law (a few ids are very hot, most are rare);
 * field f, id r becomes the feature key hash(f, r). A hidden "true" weight
 * per key (a normal draw determined by the key alone) plus a bias decides
 * the click probability, and the label is drawn from it.
 *
 * Model: logistic regression on embeddings. Each key's row is an
 * embedding; logit = sum over the example's keys (its fields and a bias
 * key) of dot(row, v) with a fixed v of unit norm. Per batch: pull the
 * rows (train mode: unseen keys are created), predict, log loss, the
 * gradient (p - y) * v for every key occurrence, push (the client sums
 * duplicate keys; the server applies the table's optimizer; on an SGD
 * table the demo pushes per-key means instead, see sgd_mean()). The next
 * batch's pull runs asynchronously while this one computes and pushes,
 * as a real trainer overlaps them (--sync turns that off).
 *
 * A created table stores its rows as --dtype (fp32, fp16 or bf16, with
 * --rounding stochastic or nearest for the optimizer's write-backs) and
 * trains with --optimizer (adagrad by default); the demo itself works in
 * fp32 either way (the client widens pulled rows), so comparing the final
 * loss of an fp32 and a bf16 table with the same --seed and --sync shows
 * what 16-bit storage costs (tests/ops/demo_dtype_test.sh).
 *
 * Prints a progress line every --report batches (batches, rows/s,
 * moving-average loss); the loss falls as hot keys learn their weights.
 * Exit status: 0 done, 1 an operation failed (or, with --check, the loss
 * did not fall), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <embkv/embkv.h>
#include "tools/clientopts.h"
#include "tools/version.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

#define DEFAULT_TABLE "demo_ctr"
#define DEFAULT_BATCHES 300u
#define DEFAULT_BATCH 1024u
#define DEFAULT_FEATURES 8u
#define DEFAULT_VOCAB 100000u
#define DEFAULT_DIM 16u
#define DEFAULT_REPORT 50u
#define DEFAULT_SEED 1ull
#define ZIPF_S 1.1
#define TRUE_SIGMA 1.0      /* spread of the hidden weights */
#define TRUE_BIAS (-1.0)    /* hidden bias: about 30% clicks */
#define LOSS_EMA 0.05       /* weight of the newest batch in the average */
#define LOSS_FALL 0.95      /* --check: final average below 95% of first */
#define TABLE_PARTS 64u
#define TABLE_CAPACITY (1u << 20)
#define TABLE_LR 0.05f
#define BIAS_FIELD 0xb1a5u
#define EPS_PROB 1e-7
#define SGD_STEP 0.2         /* per-key step the demo aims at on SGD tables */

struct opts {
	struct embkv_tool_conn conn;
	const char *table;
	uint32_t batches, batch, features, vocab, dim, report;
	uint64_t seed;
	int quiet, sync, check;
	enum embkv_dtype dtype;   /* a created table's storage type */
	enum embkv_optimizer opt; /* and optimizer */
	uint32_t table_flags;     /* EMBKV_TABLE_ROUND_NEAREST */
	/* SGD tables only: each key's pushed gradient is the mean of its
	 * occurrences times sgd_scale (SGD_STEP / the table's lr). */
	double sgd_scale;
};

/* One batch: keys (batch x (features + 1)), labels, pulled rows. */
struct batch {
	uint64_t *keys;
	float *labels;
	float *rows;
	float *grads;
	uint32_t *order;  /* positions sorted by key (SGD tables) */
	struct embkv_op *pull;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rng_next(uint64_t *s)
{
	return mix64(*s += 0x9e3779b97f4a7c15ull);
}

static double unit(uint64_t x) /* (0, 1) */
{
	return ((double)(x >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t feature_key(uint32_t field, uint64_t id)
{
	return mix64(((uint64_t)field << 40) ^ id ^ 0x656d626b76ull);
}

/* The hidden weight of a key: a normal draw fixed by the key. */
static double true_weight(uint64_t key)
{
	double u1 = unit(mix64(key ^ 0x7472756531ull));
	double u2 = unit(mix64(key ^ 0x7472756532ull));

	return TRUE_SIGMA * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double sigmoid(double x)
{
	return 1.0 / (1.0 + exp(-x));
}

/* Zipf(ZIPF_S) ranks by inverting the CDF (binary search). */
static double *zipf_cdf(uint32_t n)
{
	double *cdf = malloc((size_t)n * sizeof(*cdf)), sum = 0;

	if (!cdf)
		return NULL;
	for (uint32_t r = 0; r < n; r++) {
		sum += pow((double)r + 1.0, -ZIPF_S);
		cdf[r] = sum;
	}
	for (uint32_t r = 0; r < n; r++)
		cdf[r] /= sum;
	return cdf;
}

static uint32_t zipf_draw(const double *cdf, uint32_t n, uint64_t *s)
{
	double u = unit(rng_next(s));
	uint32_t lo = 0, hi = n - 1;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void gen_batch(const struct opts *o, const double *cdf, uint64_t *rng,
		      struct batch *b)
{
	uint32_t per = o->features + 1;

	for (uint32_t e = 0; e < o->batch; e++) {
		uint64_t *k = b->keys + (size_t)e * per;
		double logit = TRUE_BIAS;

		for (uint32_t f = 0; f < o->features; f++) {
			k[f] = feature_key(f, zipf_draw(cdf, o->vocab, rng));
			logit += true_weight(k[f]);
		}
		k[o->features] = feature_key(BIAS_FIELD, 0);
		b->labels[e] = unit(rng_next(rng)) < sigmoid(logit) ? 1.0f : 0.0f;
	}
}

/* Predictions, mean log loss and gradients of one pulled batch. */
static double compute(const struct opts *o, const float *v, struct batch *b)
{
	uint32_t per = o->features + 1, dim = o->dim;
	double loss = 0;

	for (uint32_t e = 0; e < o->batch; e++) {
		const float *rows = b->rows + (size_t)e * per * dim;
		float *grads = b->grads + (size_t)e * per * dim;
		double logit = 0, p, y = b->labels[e];

		for (uint32_t k = 0; k < per; k++)
			for (uint32_t j = 0; j < dim; j++)
				logit += (double)rows[k * dim + j] * v[j];
		p = sigmoid(logit);
		p = p < EPS_PROB ? EPS_PROB : p > 1 - EPS_PROB ? 1 - EPS_PROB : p;
		loss -= y * log(p) + (1 - y) * log(1 - p);
		for (uint32_t k = 0; k < per; k++)
			for (uint32_t j = 0; j < dim; j++)
				grads[k * dim + j] = (float)((p - y) * v[j]);
	}
	return loss / o->batch;
}

static int pos_cmp(const void *a, const void *b, void *keys)
{
	uint64_t x = ((const uint64_t *)keys)[*(const uint32_t *)a];
	uint64_t y = ((const uint64_t *)keys)[*(const uint32_t *)b];

	return x < y ? -1 : x > y;
}

/*
 * SGD has no per-coordinate step control: the gradients the client sums
 * for a hot key (the bias key is in every example) would make its step
 * batch-size times too large. On SGD tables the demo therefore pushes the
 * mean gradient of each key's occurrences, scaled to a fixed step.
 * Adaptive optimizers (Adagrad, Adam, FTRL) take the plain sums.
 */
static void sgd_mean(const struct opts *o, struct batch *b)
{
	uint32_t n = o->batch * (o->features + 1), i = 0;

	for (uint32_t p = 0; p < n; p++)
		b->order[p] = p;
	qsort_r(b->order, n, sizeof(*b->order), pos_cmp, b->keys);
	while (i < n) {
		uint32_t end = i + 1;
		float f;

		while (end < n && b->keys[b->order[end]] == b->keys[b->order[i]])
			end++;
		f = (float)(o->sgd_scale / (end - i));
		for (; i < end; i++)
			for (uint32_t j = 0; j < o->dim; j++)
				b->grads[(size_t)b->order[i] * o->dim + j] *= f;
	}
}

static int open_table(const struct opts *o, struct embkv_client *c,
		      struct embkv_table_handle **t)
{
	struct embkv_table_attr a;
	int rc = embkv_table_open(c, o->table, t);

	if (rc != EMBKV_ENOTABLE)
		return rc;
	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", o->table);
	a.dim = o->dim;
	a.partitions = TABLE_PARTS;
	a.capacity = TABLE_CAPACITY;
	a.dtype = o->dtype;
	a.flags = o->table_flags;
	a.opt.type = o->opt;
	a.opt.lr = TABLE_LR;
	rc = embkv_table_create_remote(c, &a);
	if (rc && rc != EMBKV_ETABLEEXISTS) /* another trainer was first */
		return rc;
	if (!o->quiet && !rc)
		printf("embkv-demo: created table %s (dim %u, %s, %s lr %g)\n",
		       a.name, a.dim, embkv_dtype_name(a.dtype),
		       embkv_optimizer_name(a.opt.type), (double)a.opt.lr);
	return embkv_table_open(c, o->table, t);
}

static void batch_free(struct batch *b)
{
	free(b->order);
	free(b->keys);
	free(b->labels);
	free(b->rows);
	free(b->grads);
}

static int batch_alloc(const struct opts *o, struct batch *b)
{
	size_t n = (size_t)o->batch * (o->features + 1);

	memset(b, 0, sizeof(*b));
	b->keys = malloc(n * sizeof(*b->keys));
	b->labels = malloc((size_t)o->batch * sizeof(*b->labels));
	b->rows = malloc(n * o->dim * sizeof(*b->rows));
	b->grads = malloc(n * o->dim * sizeof(*b->grads));
	b->order = malloc(n * sizeof(*b->order));
	if (b->keys && b->labels && b->rows && b->grads && b->order)
		return 0;
	batch_free(b);
	return -ENOMEM;
}

static int pull_start(const struct opts *o, struct embkv_table_handle *t,
		      struct batch *b)
{
	uint32_t n = o->batch * (o->features + 1);

	if (o->sync) {
		b->pull = NULL;
		return embkv_pull(t, n, b->keys, b->rows, NULL, EMBKV_MODE_TRAIN,
				  NULL);
	}
	return embkv_pull_async(t, n, b->keys, b->rows, NULL, EMBKV_MODE_TRAIN,
				NULL, &b->pull);
}

static int pull_finish(struct batch *b)
{
	struct embkv_op *op = b->pull;

	b->pull = NULL;
	return op ? embkv_op_wait(op) : 0;
}

static int train(const struct opts *o, struct embkv_table_handle *t)
{
	uint32_t n = o->batch * (o->features + 1), cur = 0;
	struct batch b[2];
	double *cdf, avg = -1, first = -1, t0, loss;
	uint64_t rng = o->seed, rows = 0;
	float *v;
	int rc;

	cdf = zipf_cdf(o->vocab);
	v = malloc(o->dim * sizeof(*v));
	if (!cdf || !v || batch_alloc(o, &b[0])) {
		free(cdf);
		free(v);
		return -ENOMEM;
	}
	if (batch_alloc(o, &b[1])) {
		batch_free(&b[0]);
		free(cdf);
		free(v);
		return -ENOMEM;
	}
	for (uint32_t j = 0; j < o->dim; j++)
		v[j] = (float)(1.0 / sqrt((double)o->dim));
	t0 = now_s();
	gen_batch(o, cdf, &rng, &b[0]);
	rc = pull_start(o, t, &b[0]);
	for (uint32_t k = 0; k < o->batches && !rc; k++, cur ^= 1) {
		rc = pull_finish(&b[cur]);
		if (rc)
			break;
		if (k + 1 < o->batches) {
			/* the next pull overlaps this batch's work */
			gen_batch(o, cdf, &rng, &b[cur ^ 1]);
			rc = pull_start(o, t, &b[cur ^ 1]);
			if (rc)
				break;
		}
		loss = compute(o, v, &b[cur]);
		if (o->sgd_scale > 0)
			sgd_mean(o, &b[cur]);
		rc = embkv_push(t, n, b[cur].keys, b[cur].grads, NULL);
		if (rc)
			break;
		rows += n;
		avg = avg < 0 ? loss : (1 - LOSS_EMA) * avg + LOSS_EMA * loss;
		if (first < 0)
			first = loss;
		if (!o->quiet && ((k + 1) % o->report == 0 ||
				  k + 1 == o->batches)) {
			double dt = now_s() - t0;

			printf("batch %5u/%u  rows/s %9.0f  loss %.4f\n", k + 1,
			       o->batches, dt > 0 ? (double)rows / dt : 0.0,
			       avg);
			fflush(stdout);
		}
	}
	/* after an error an async pull may still run: wait, ignore */
	pull_finish(&b[0]);
	pull_finish(&b[1]);
	if (!rc)
		printf("embkv-demo: %u batches of %u examples in %.2f s, loss "
		       "%.6f -> %.6f\n", o->batches, o->batch, now_s() - t0,
		       first, avg);
	if (!rc && o->check && !(avg < LOSS_FALL * first)) {
		fprintf(stderr, "embkv-demo: the loss did not fall\n");
		rc = 1;
	}
	batch_free(&b[1]);
	batch_free(&b[0]);
	free(v);
	free(cdf);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
"Usage: embkv-demo [OPTIONS]\n"
"Trains a logistic-regression click model on synthetic Zipf click logs,\n"
"with its embeddings in embkv: pull rows, predict, log loss, push\n"
"gradients; prints batches, rows/s and the moving-average loss.\n"
"\n"
"  --servers LIST       comma-separated tcp://host:port (default\n"
"                       $" EMBKV_TOOL_SERVERS_ENV " or " EMBKV_TOOL_DEFAULT_SERVER ")\n"
"  --token-file FILE    shared secret for authentication\n"
"  --table NAME         table to train (created when missing: adagrad,\n"
"                       --dim wide) [" DEFAULT_TABLE "]\n"
"  --batches N          batches to train [%u]\n"
"  --batch N            examples per batch [%u]\n"
"  --features N         categorical fields per example [%u]\n"
"  --vocab N            ids per field (Zipf %.1f) [%u]\n"
"  --dim N              row width of a created table [%u]\n"
"  --dtype T            storage of a created table: fp32, fp16, bf16 [fp32]\n"
"  --rounding R         its 16-bit write-backs: stochastic, nearest\n"
"                       [stochastic]\n"
"  --optimizer NAME     its optimizer: adagrad, rowwise_adagrad, adam,\n"
"                       sgd, ftrl [adagrad]\n"
"  --report N           a progress line every N batches [%u]\n"
"  --seed N             data seed [%llu]\n"
"  --sync               pull synchronously (no overlap)\n"
"  --check              exit 1 unless the loss fell by 5%% or more\n"
"  --quiet              only the summary line\n"
"  -h, --help           this help\n",
		DEFAULT_BATCHES, DEFAULT_BATCH, DEFAULT_FEATURES, ZIPF_S,
		DEFAULT_VOCAB, DEFAULT_DIM, DEFAULT_REPORT,
		(unsigned long long)DEFAULT_SEED);
}

enum demo_opt {
	O_SERVERS = 1000, O_TOKEN, O_TABLE, O_BATCHES, O_BATCH, O_FEATURES,
	O_VOCAB, O_DIM, O_REPORT, O_SEED, O_SYNC, O_CHECK, O_QUIET, O_DTYPE,
	O_ROUNDING, O_OPTIMIZER,
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "servers", required_argument, NULL, O_SERVERS },
		{ "token-file", required_argument, NULL, O_TOKEN },
		{ "table", required_argument, NULL, O_TABLE },
		{ "batches", required_argument, NULL, O_BATCHES },
		{ "batch", required_argument, NULL, O_BATCH },
		{ "features", required_argument, NULL, O_FEATURES },
		{ "vocab", required_argument, NULL, O_VOCAB },
		{ "dim", required_argument, NULL, O_DIM },
		{ "report", required_argument, NULL, O_REPORT },
		{ "seed", required_argument, NULL, O_SEED },
		{ "sync", no_argument, NULL, O_SYNC },
		{ "check", no_argument, NULL, O_CHECK },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "dtype", required_argument, NULL, O_DTYPE },
		{ "rounding", required_argument, NULL, O_ROUNDING },
		{ "optimizer", required_argument, NULL, O_OPTIMIZER },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c, e, bad = 0, li = -1;

	memset(o, 0, sizeof(*o));
	o->table = DEFAULT_TABLE;
	o->batches = DEFAULT_BATCHES;
	o->batch = DEFAULT_BATCH;
	o->features = DEFAULT_FEATURES;
	o->vocab = DEFAULT_VOCAB;
	o->dim = DEFAULT_DIM;
	o->report = DEFAULT_REPORT;
	o->seed = DEFAULT_SEED;
	o->dtype = EMBKV_DTYPE_F32;
	o->opt = EMBKV_OPT_ADAGRAD;
	opterr = 0;
	while (!bad && (c = getopt_long(argc, argv, ":h", lopts, &li)) != -1) {
		switch (c) {
		case O_SERVERS: o->conn.servers_arg = optarg; break;
		case O_TOKEN: o->conn.token_file = optarg; break;
		case O_TABLE: o->table = optarg; break;
		case O_BATCHES:
			bad = embkv_tool_parse_u64(optarg, 1, UINT32_MAX, &v);
			o->batches = (uint32_t)v;
			break;
		case O_BATCH:
			bad = embkv_tool_parse_u64(optarg, 1, 1u << 20, &v);
			o->batch = (uint32_t)v;
			break;
		case O_FEATURES:
			bad = embkv_tool_parse_u64(optarg, 1, 1024, &v);
			o->features = (uint32_t)v;
			break;
		case O_VOCAB:
			bad = embkv_tool_parse_u64(optarg, 1, 1u << 26, &v);
			o->vocab = (uint32_t)v;
			break;
		case O_DIM:
			bad = embkv_tool_parse_u64(optarg, 1, EMBKV_MAX_DIM, &v);
			o->dim = (uint32_t)v;
			break;
		case O_REPORT:
			bad = embkv_tool_parse_u64(optarg, 1, UINT32_MAX, &v);
			o->report = (uint32_t)v;
			break;
		case O_SEED:
			bad = embkv_tool_parse_u64(optarg, 0, UINT64_MAX, &o->seed);
			break;
		case O_DTYPE:
			e = embkv_dtype_parse(optarg);
			bad = e < 0;
			o->dtype = bad ? EMBKV_DTYPE_F32 : (enum embkv_dtype)e;
			break;
		case O_ROUNDING:
			bad = strcmp(optarg, "nearest") &&
			      strcmp(optarg, "stochastic");
			o->table_flags = strcmp(optarg, "nearest") ? 0
						: EMBKV_TABLE_ROUND_NEAREST;
			break;
		case O_OPTIMIZER:
			e = embkv_optimizer_parse(optarg);
			bad = e < 0;
			o->opt = bad ? EMBKV_OPT_ADAGRAD : (enum embkv_optimizer)e;
			break;
		case O_SYNC: o->sync = 1; break;
		case O_CHECK: o->check = 1; break;
		case O_QUIET: o->quiet = 1; break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			li = -1; /* an unknown option or a missing value */
			bad = 1;
		}
	}
	if (bad && optarg && li >= 0) {
		fprintf(stderr, "embkv-demo: bad value '%s' for --%s (see "
			"--help)\n", optarg, lopts[li].name);
		return EXIT_USAGE;
	}
	if (bad || optind < argc) {
		fprintf(stderr, "embkv-demo: bad argument %s (see --help)\n",
			argv[optind < argc ? optind : optind - 1]);
		return EXIT_USAGE;
	}
	if ((o->table_flags & EMBKV_TABLE_ROUND_NEAREST) &&
	    o->dtype == EMBKV_DTYPE_F32) {
		fprintf(stderr, "embkv-demo: --rounding is for --dtype fp16 "
			"or bf16\n");
		return EXIT_USAGE;
	}
	if ((uint64_t)o->batch * (o->features + 1) > UINT32_MAX) {
		fprintf(stderr, "embkv-demo: --batch x --features too large\n");
		return EXIT_USAGE;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct embkv_table_handle *t;
	struct embkv_client *c;
	struct opts o;
	int rc;

	if (embkv_tool_version(argc, argv, "embkv-demo"))
		return 0;
	rc = parse_args(argc, argv, &o);
	if (rc)
		return rc;
	if (embkv_tool_connect("embkv-demo", &o.conn, &c))
		return EXIT_FAILED;
	rc = open_table(&o, c, &t);
	if (rc) {
		fprintf(stderr, "embkv-demo: table %s: %s\n", o.table,
			embkv_strerror(rc));
		embkv_client_destroy(c);
		return EXIT_FAILED;
	}
	/* An existing table decides the row width. */
	o.dim = embkv_table_attr_get(t)->dim;
	if (embkv_table_attr_get(t)->opt.type == EMBKV_OPT_SGD &&
	    embkv_table_attr_get(t)->opt.lr > 0)
		o.sgd_scale = SGD_STEP / embkv_table_attr_get(t)->opt.lr;
	rc = train(&o, t);
	if (rc < 0)
		fprintf(stderr, "embkv-demo: training failed: %s\n",
			embkv_strerror(rc));
	embkv_table_close(t);
	embkv_client_destroy(c);
	return rc ? EXIT_FAILED : 0;
}
