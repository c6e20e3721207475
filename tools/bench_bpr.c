/*
 * embkv-bench --mode bytes-per-row: what a row costs in memory, measured
 * on filled tables, for every (storage type, optimizer, state type) pair
 * at the dims asked (64 and 128 by default), plus what a pulled row costs
 * on the wire.
 *
 * What: for each pair, an in-process table of --rows capacity is created
 * and filled to capacity (ASSIGN, then one PUSH per row so that optimizer
 * state is written too), and two numbers are read: the engine's own
 * accounting of the memory it holds (embkv_table_get_stats: index, arena,
 * optimizer state, step counts, admission sketch and the table's
 * structures) and the process's resident memory growth while the table
 * was built and filled (/proc/self/statm), each divided by the rows
 * stored. Nothing is computed from a formula: a layout change shows up
 * here. Wire bytes per pulled row are the frame sizes the codec gives a
 * 4096-key PULL (request and reply, headers included: what TCP carries,
 * TLS-free) and the READ a one-sided pull posts for a row whose location
 * is cached (record header + stored payload), divided by the rows; the
 * RDMA VM test counts the latter for real (tests/rdma/onesided_test.c).
 *
 * Why: sizing a cluster (README, "Sizing a 100-trillion-parameter table")
 * takes bytes per row from here, so the numbers must be the engine's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "net/wire.h"
#include "server/store.h"
#include "tools/bench_bpr.h"
#include "tools/bench_common.h"

#define BPR_DEFAULT_ROWS 262144u
#define BPR_PARTS 16u
#define BPR_BATCH 4096u
#define BPR_PULL_KEYS 4096u

struct bpr_case {
	enum embkv_dtype dtype;
	enum embkv_optimizer opt;
	bool state_bf16;
};

static const struct bpr_case bpr_cases[] = {
	{ EMBKV_DTYPE_F32, EMBKV_OPT_SGD, false },
	{ EMBKV_DTYPE_F32, EMBKV_OPT_ADAGRAD, false },
	{ EMBKV_DTYPE_F32, EMBKV_OPT_ROWWISE_ADAGRAD, false },
	{ EMBKV_DTYPE_F32, EMBKV_OPT_ADAM, false },
	{ EMBKV_DTYPE_F32, EMBKV_OPT_FTRL, false },
	{ EMBKV_DTYPE_F32, EMBKV_OPT_ADAGRAD, true },
	{ EMBKV_DTYPE_F32, EMBKV_OPT_ADAM, true },
	{ EMBKV_DTYPE_F16, EMBKV_OPT_SGD, false },
	{ EMBKV_DTYPE_F16, EMBKV_OPT_ADAGRAD, false },
	{ EMBKV_DTYPE_F16, EMBKV_OPT_ROWWISE_ADAGRAD, false },
	{ EMBKV_DTYPE_F16, EMBKV_OPT_ADAM, false },
	{ EMBKV_DTYPE_F16, EMBKV_OPT_FTRL, false },
	{ EMBKV_DTYPE_F16, EMBKV_OPT_ADAGRAD, true },
	{ EMBKV_DTYPE_F16, EMBKV_OPT_ADAM, true },
	{ EMBKV_DTYPE_BF16, EMBKV_OPT_SGD, false },
	{ EMBKV_DTYPE_BF16, EMBKV_OPT_ADAGRAD, false },
	{ EMBKV_DTYPE_BF16, EMBKV_OPT_ROWWISE_ADAGRAD, false },
	{ EMBKV_DTYPE_BF16, EMBKV_OPT_ADAM, false },
	{ EMBKV_DTYPE_BF16, EMBKV_OPT_FTRL, false },
	{ EMBKV_DTYPE_BF16, EMBKV_OPT_ADAGRAD, true },
	{ EMBKV_DTYPE_BF16, EMBKV_OPT_ADAM, true },
};

#define BPR_NCASES (sizeof(bpr_cases) / sizeof(bpr_cases[0]))

/* Resident bytes of this process. */
static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

struct bpr_result {
	double bytes_per_row, rss_bytes_per_row;
	uint64_t rows;
	size_t stride, state_bytes;
};

static int bpr_measure(const struct bpr_case *c, uint32_t dim, uint64_t rows,
		       struct bpr_result *out)
{
	struct embkv_table_attr a;
	struct embkv_table_stats st;
	struct embkv_table *t;
	uint64_t keys[BPR_BATCH], rss0;
	float *vals = malloc((size_t)BPR_BATCH * dim * sizeof(float));
	int rc;

	if (!vals)
		return -ENOMEM;
	for (size_t i = 0; i < (size_t)BPR_BATCH * dim; i++)
		vals[i] = (float)((i % 17) - 8) * 1e-3f;
	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "bpr");
	a.dim = dim;
	a.dtype = c->dtype;
	a.partitions = BPR_PARTS;
	a.capacity = rows;
	a.opt.type = c->opt;
	a.flags = c->state_bf16 ? EMBKV_TABLE_STATE_BF16 : 0;
	rss0 = rss_bytes();
	rc = embkv_table_create(&a, &t);
	if (rc) {
		free(vals);
		return rc;
	}
	/* Fill to capacity: keys the table has room for all of (the
	 * partitions' shares are exact, and a key past its partition's share
	 * evicts, so keep inserting until the table holds rows rows or a
	 * bounded number of extra keys was tried). */
	for (uint64_t i = 0; ; ) {
		uint32_t m = 0;

		embkv_table_get_stats(t, &st);
		if (st.rows >= rows || i >= 4 * rows)
			break;
		while (m < BPR_BATCH)
			keys[m++] = bench_key_of(i++);
		embkv_table_assign(t, m, keys, vals);
		embkv_table_push(t, m, keys, vals);
	}
	embkv_table_get_stats(t, &st);
	out->rows = st.rows;
	out->bytes_per_row = (double)st.bytes / (double)st.rows;
	out->rss_bytes_per_row = (double)(rss_bytes() - rss0) /
				 (double)st.rows;
	out->stride = t->stride;
	out->state_bytes = t->state_bytes;
	embkv_table_destroy(t);
	free(vals);
	return 0;
}

/* Bytes of one 4096-key PULL exchange per row (both frames with their
 * headers), of one 4096-key PUSH (fp32 gradients, its count reply), and
 * of one cached one-sided READ per row. */
static void wire_per_row(uint32_t dim, enum embkv_dtype dt, double *tcp,
			 double *push, double *onesided)
{
	struct embkv_wire_pull_req m = { .table_id = 1, .uid = 1, .dim = dim,
					 .n = BPR_PULL_KEYS };
	struct embkv_wire_rows_req r = { .table_id = 1, .uid = 1, .dim = dim,
					 .n = BPR_PULL_KEYS };
	size_t req = 0, rep = 0, preq = 0;

	embkv_wire_pull_req_size(&m, &req);
	embkv_wire_pull_reply_size_dt(BPR_PULL_KEYS, dim, dt, &rep);
	embkv_wire_rows_req_size(&r, &preq);
	*tcp = (double)(2 * EMBKV_WIRE_HDR_SIZE + req + rep) / BPR_PULL_KEYS;
	*push = (double)(2 * EMBKV_WIRE_HDR_SIZE + preq +
			 EMBKV_WIRE_COUNT_REPLY_SIZE) / BPR_PULL_KEYS;
	*onesided = (double)(EMBKV_RECORD_HDR_BYTES +
			     (size_t)dim * embkv_dtype_size(dt));
}

static void bpr_usage(FILE *f)
{
	fprintf(f,
		"usage: embkv-bench --mode bytes-per-row [--dims 64,128] "
		"[--rows N] [--json]\n"
		"Memory per stored row for every (storage type, optimizer, "
		"state type),\nmeasured on tables filled to capacity (the "
		"engine's accounting and the\nresident memory growth), and wire "
		"bytes per pulled row.\n"
		"  --dims LIST   comma-separated dims (default 64,128)\n"
		"  --rows N      rows per table (default %u)\n"
		"  --json        one JSON object on stdout\n",
		BPR_DEFAULT_ROWS);
}

/* --dims LIST: comma-separated dims, at most 8. */
struct bpr_dims {
	uint32_t v[8], n;
};

static int parse_dims(const char *arg, void *ptr)
{
	struct bpr_dims *d = ptr;
	char *copy = strdup(arg), *end, *tok, *save = NULL;

	if (!copy) {
		fprintf(stderr, "embkv-bench: out of memory\n");
		return 1;
	}
	d->n = 0;
	for (tok = strtok_r(copy, ",", &save); tok && d->n < 8;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned long v = strtoul(tok, &end, 10);

		if (*end || !v || v > EMBKV_MAX_DIM) {
			fprintf(stderr, "embkv-bench: --dims %s: each must be 1 "
				"to %u\n", tok, EMBKV_MAX_DIM);
			free(copy);
			return 1;
		}
		d->v[d->n++] = (uint32_t)v;
	}
	free(copy);
	if (!d->n) {
		fprintf(stderr, "embkv-bench: --dims: empty\n");
		return 1;
	}
	return 0;
}

/* --rows N: at least one row per partition. */
static int parse_rows(const char *arg, void *ptr)
{
	uint64_t *rows = ptr;
	char *end;

	*rows = strtoull(arg, &end, 10);
	if (*end || *rows < BPR_PARTS) {
		fprintf(stderr, "embkv-bench: --rows %s: must be a whole number "
			"of at least %u\n", arg, BPR_PARTS);
		return 1;
	}
	return 0;
}

int bench_bpr_main(int argc, char **argv)
{
	struct bpr_dims dm = { { 64, 128 }, 2 };
	uint64_t rows = BPR_DEFAULT_ROWS;
	int json = 0, first = 1;
	const struct bench_opt opt[] = {
		BENCH_IGNORE("mode"),
		BENCH_CUSTOM("dims", parse_dims, &dm, 0),
		BENCH_CUSTOM("rows", parse_rows, &rows, 0),
		BENCH_FLAG("json", &json),
	};
	const uint32_t *dims = dm.v;
	uint32_t ndims;

	if (bench_opts_parse(argc, argv, opt, sizeof(opt) / sizeof(opt[0]),
			     bpr_usage))
		return 2;
	ndims = dm.n;
	if (optind < argc) {
		fprintf(stderr, "embkv-bench: unexpected argument %s\n",
			argv[optind]);
		return 2;
	}
	if (json)
		printf("{\"rows\": %llu, \"partitions\": %u, \"results\": [",
		       (unsigned long long)rows, BPR_PARTS);
	else
		printf("%-5s %-16s %-5s %4s %9s %9s %7s %6s %8s %9s\n",
		       "dtype", "optimizer", "state", "dim", "bytes/row",
		       "rss/row", "x payf32", "stride", "tcp/row",
		       "1sided/row");
	for (uint32_t d = 0; d < ndims; d++)
		for (size_t i = 0; i < BPR_NCASES; i++) {
			const struct bpr_case *c = &bpr_cases[i];
			struct bpr_result r;
			double tcp, push, os;
			size_t stored = (size_t)dims[d] *
					embkv_dtype_size(c->dtype);
			int rc = bpr_measure(c, dims[d], rows, &r);

			if (rc) {
				fprintf(stderr, "embkv-bench: %s/%s dim %u: "
					"%s\n", embkv_dtype_name(c->dtype),
					embkv_optimizer_name(c->opt), dims[d],
					embkv_strerror(rc));
				return 1;
			}
			wire_per_row(dims[d], c->dtype, &tcp, &push, &os);
			if (json) {
				printf("%s\n  {\"dtype\": \"%s\", \"optimizer\": "
				       "\"%s\", \"state_dtype\": \"%s\", "
				       "\"dim\": %u, \"rows\": %llu, "
				       "\"bytes_per_row\": %.2f, "
				       "\"rss_bytes_per_row\": %.2f, "
				       "\"stored_row_bytes\": %zu, "
				       "\"record_stride\": %zu, "
				       "\"state_bytes_per_row\": %zu, "
				       "\"bytes_per_param\": %.3f, "
				       "\"tcp_pull_bytes_per_row\": %.2f, "
				       "\"tcp_push_bytes_per_row\": %.2f, "
				       "\"onesided_read_bytes_per_row\": %.0f}",
				       first ? "" : ",",
				       embkv_dtype_name(c->dtype),
				       embkv_optimizer_name(c->opt),
				       c->state_bf16 ? "bf16" : "fp32",
				       dims[d], (unsigned long long)r.rows,
				       r.bytes_per_row, r.rss_bytes_per_row,
				       stored, r.stride, r.state_bytes,
				       r.bytes_per_row / dims[d], tcp, push,
				       os);
				first = 0;
			} else {
				printf("%-5s %-16s %-5s %4u %9.1f %9.1f %7.3f "
				       "%6zu %8.1f %9.0f\n",
				       embkv_dtype_name(c->dtype),
				       embkv_optimizer_name(c->opt),
				       c->state_bf16 ? "bf16" : "fp32",
				       dims[d], r.bytes_per_row,
				       r.rss_bytes_per_row,
				       r.bytes_per_row / (4.0 * dims[d]),
				       r.stride, tcp, os);
			}
			fflush(stdout);
		}
	if (json)
		printf("\n]}\n");
	return 0;
}
