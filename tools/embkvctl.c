/*
 * embkvctl: the embkv admin tool.
 *
 *   embkvctl [--servers tcp://a,tcp://b] [--token-file F] [--json]
 *            [--timeout MS] COMMAND [ARGS]
 *
 * Commands: stats, tables, create-table, drop-table, map (see usage());
 * members, health and forget read etcd instead (tools/ctl_members.c).
 * Everything goes through libembkv's public API, so the tool also shows
 * what a client sees. Output is aligned human-readable tables, or one JSON
 * document with --json. Exit status: 0 success, 1 an operation failed, 2
 * usage error, 3 some server did not answer (stats and tables still
 * report the others).
 *
 * One server address is enough: the client learns the cluster's other
 * members from it. The client is made with EMBKV_CLIENT_ALLOW_DOWN, so a
 * dead member never blinds the operator: stats and tables mark it DOWN
 * with its own error and report the rest; create-table refuses (nothing
 * created) and drop-table names it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <embkv/embkv.h>
#include "tools/clientopts.h"
#include "tools/ctl_members.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_DOWN 3      /* a server did not answer; the others reported */
#define CELL_MAX 96u
#define STAT_NAME_BYTES 32u
#define LIST_MAX 65536u

static const char *prog = "embkvctl";

static void usage(FILE *f)
{
	fprintf(f,
"Usage: embkvctl [OPTIONS] COMMAND [ARGS]\n"
"The embkv admin tool.\n"
"\n"
"Options:\n"
"  --servers LIST       servers, comma-separated tcp://host:port (default\n"
"                       $" EMBKV_TOOL_SERVERS_ENV " or " EMBKV_TOOL_DEFAULT_SERVER "); one\n"
"                       is enough: the others are learned from it\n"
"  --token-file FILE    shared secret for authentication (the file's\n"
"                       content, trailing newlines removed)\n"
"  --json               print one JSON document instead of tables\n"
"  --timeout MS         connect and request timeout (default 5000/30000)\n"
"%s"
"  -h, --help           this help\n"
"\n"
"Commands:\n"
"  stats [--all] [--json]\n"
"                       counters per server and per table: rows, capacity,\n"
"                       memory, hits, misses, inserts, evictions, admission\n"
"                       rejects, pulls and pushes per second, p50/p99\n"
"                       handling latency, connections, and TOTAL rows that\n"
"                       sum them over the servers that answered; a server\n"
"                       that did not is marked DOWN with its error; --all\n"
"                       lists every counter the servers report\n"
"  tables [--json]      the tables, their attributes and whether every\n"
"                       server has them alike (else INCONSISTENT, with\n"
"                       where each is missing); DOWN servers as in stats\n"
"  create-table NAME [ATTRS]\n"
"                       creates a table on every server of the cluster or\n"
"                       on none: refused when a server does not answer or\n"
"                       some servers have the table already (INCONSISTENT:\n"
"                       drop it first), undone when a server fails. ATTRS\n"
"                       (defaults in brackets):\n"
"      --dim D                 row width, 1-4096 [64]\n"
"      --partitions P          a power of two, <= 65536 [64]\n"
"      --capacity N            rows, whole table [1048576]\n"
"      --optimizer NAME        sgd|adagrad|adam|ftrl [sgd]\n"
"      --lr X                  learning rate (FTRL: alpha) [0.01]\n"
"      --beta1 X --beta2 X     Adam [0.9, 0.999]\n"
"      --eps X                 Adagrad, Adam [1e-8]\n"
"      --initial-accum X       Adagrad accumulator start [0.1]\n"
"      --l1 X --l2 X           FTRL regularization [0, 0]\n"
"      --ftrl-beta X           FTRL beta [1]\n"
"      --init NAME             uniform|normal|zeros [uniform]\n"
"      --init-a X --init-b X   uniform: [a, b); normal: mean a, stddev b\n"
"                              [-0.01, 0.01]\n"
"      --init-seed N           initializer seed [0]\n"
"      --admit-after N         store a key on its N-th sighting [1]\n"
"      --lfu-decay-period N    LFU halving period [8]\n"
"      --hash-seed N           key hash seed [0x656d626b76]\n"
"      --index-load X          index load at capacity, 0.5-1 (0: the\n"
"                              server's default) [0]\n"
"      --dtype f32             storage type [f32]\n"
"  drop-table NAME      drops a table from every server that has it (names\n"
"                       the servers that did not answer)\n"
"  map NAME [--partitions]\n"
"                       shard map: epoch, partitions per server;\n"
"                       --partitions lists each partition's server\n"
"%s"
"\n"
"Exit status: 0 success, 1 the operation failed (or tables found an\n"
"INCONSISTENT table), 2 usage error, 3 a server did not answer (stats and\n"
"tables report the others).\n",
		embkv_ctl_members_usage_opts, embkv_ctl_members_usage_cmds);
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see %s --help)\n", prog);
	return EXIT_USAGE;
}

static int is_help(const char *s)
{
	return strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0;
}

static int failed(const char *what, int status)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, embkv_strerror(status));
	return EXIT_FAILED;
}

/* Numbers ---------------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *out)
{
	return embkv_tool_parse_u64(s, 0, UINT64_MAX, out);
}

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (embkv_tool_parse_u64(s, 0, UINT32_MAX, &v))
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_float(const char *s, float *out)
{
	char *end;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	*out = strtof(s, &end);
	return errno || *end || !isfinite(*out) ? -EINVAL : 0;
}

/* JSON string (names and addresses are plain, but escape anyway). */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* Aligned text tables ------------------------------------------------------ */

struct text_table {
	uint32_t ncols, nrows, cap;
	uint32_t left;              /* columns [0, left) are left-aligned */
	char (*cells)[CELL_MAX];    /* nrows x ncols */
};

static int tt_init(struct text_table *t, uint32_t ncols, uint32_t left,
		   const char *const *header)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->left = left;
	t->cap = 16;
	t->cells = calloc((size_t)t->cap * ncols, CELL_MAX);
	if (!t->cells)
		return -ENOMEM;
	for (uint32_t c = 0; c < ncols; c++)
		snprintf(t->cells[c], CELL_MAX, "%s", header[c]);
	t->nrows = 1;
	return 0;
}

/* The next row's cells, for the caller to fill (NULL: out of memory). */
static char (*tt_row(struct text_table *t))[CELL_MAX]
{
	char (*row)[CELL_MAX];

	if (t->nrows == t->cap) {
		void *p = realloc(t->cells, (size_t)t->cap * 2 * t->ncols *
					   CELL_MAX);

		if (!p)
			return NULL;
		t->cells = p;
		t->cap *= 2;
	}
	row = t->cells + (size_t)t->nrows * t->ncols;
	for (uint32_t c = 0; c < t->ncols; c++)
		strcpy(row[c], "-");
	t->nrows++;
	return row;
}

static void tt_print(struct text_table *t)
{
	size_t width[64] = { 0 };

	for (uint32_t r = 0; r < t->nrows; r++)
		for (uint32_t c = 0; c < t->ncols && c < 64; c++) {
			size_t w = strlen(t->cells[(size_t)r * t->ncols + c]);

			if (w > width[c])
				width[c] = w;
		}
	for (uint32_t r = 0; r < t->nrows; r++) {
		for (uint32_t c = 0; c < t->ncols && c < 64; c++) {
			const char *s = t->cells[(size_t)r * t->ncols + c];
			int w = (int)width[c];

			if (c + 1 == t->ncols && c < t->left)
				printf("%s", s);
			else if (c < t->left)
				printf("%-*s  ", w, s);
			else
				printf("%*s%s", w, s, c + 1 < t->ncols ? "  " : "");
		}
		putchar('\n');
	}
}

static void tt_free(struct text_table *t)
{
	free(t->cells);
	t->cells = NULL;
}

/* Parsed command arguments (parsed before connecting, so that a usage
 * error never needs a server). */
struct cmd_args {
	int all;                      /* stats --all */
	int json;                     /* stats --json, tables --json */
	int list;                     /* map --partitions */
	const char *name;             /* drop-table, map */
	struct embkv_table_attr attr; /* create-table */
};

#define HELP_SHOWN (-1)

/* Servers that did not answer ---------------------------------------------- */

/*
 * Why server srv counts as down after a cluster-wide call: the error that
 * reaching it ended with, else call_rc when it reported nothing (answered
 * is 0) although it was reached; 0 when it is up.
 */
static int server_error(struct embkv_client *c, uint32_t srv, int answered,
			int call_rc)
{
	int st = embkv_client_server_status(c, srv);

	if (st)
		return st;
	if (!answered)
		return call_rc ? call_rc : EMBKV_EPROTO;
	return 0;
}

/* One "ADDRESS  DOWN  error" line (the operator's view of a dead member). */
static void print_down(FILE *f, struct embkv_client *c, uint32_t srv, int err)
{
	fprintf(f, "%s  DOWN  %s\n", embkv_client_server_addr(c, srv),
		embkv_strerror(err));
}

/* Servers that did not answer this client's last try to reach them. */
static uint32_t down_count(struct embkv_client *c)
{
	uint32_t n = 0;

	for (uint32_t srv = 0; srv < embkv_client_server_count(c); srv++)
		n += embkv_client_server_status(c, srv) != 0;
	return n;
}

/* The "servers" JSON array: every server, up or down with its error. */
static void servers_json(struct embkv_client *c, const int *err)
{
	uint32_t nsrv = embkv_client_server_count(c);

	printf("\"servers\":[");
	for (uint32_t srv = 0; srv < nsrv; srv++) {
		printf("%s{\"index\":%u,\"address\":", srv ? "," : "", srv);
		json_str(embkv_client_server_addr(c, srv));
		printf(",\"up\":%s", err[srv] ? "false" : "true");
		if (err[srv]) {
			printf(",\"error\":");
			json_str(embkv_strerror(err[srv]));
		}
		printf("}");
	}
	printf("]");
}

/* stats ---------------------------------------------------------------------- */

struct stat_rec {
	uint32_t server;
	int has_table;
	char table[EMBKV_TABLE_NAME_MAX];
	char name[STAT_NAME_BYTES];
	uint64_t value;
};

struct stat_set {
	struct stat_rec *v;
	size_t n, cap;
	int oom;
};

static void on_stat(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct stat_set *s = ctx;
	struct stat_rec *r;

	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		void *p = realloc(s->v, cap * sizeof(*s->v));

		if (!p) {
			s->oom = 1;
			return;
		}
		s->v = p;
		s->cap = cap;
	}
	r = &s->v[s->n++];
	r->server = server;
	r->has_table = table != NULL;
	snprintf(r->table, sizeof(r->table), "%s", table ? table : "");
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->value = value;
}

/* The value of counter name in (server, table) (table NULL: server-wide). */
static int stat_get(const struct stat_set *s, uint32_t server,
		    const char *table, const char *name, uint64_t *v)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct stat_rec *r = &s->v[i];

		if (r->server == server && r->has_table == (table != NULL) &&
		    (!table || strcmp(r->table, table) == 0) &&
		    strcmp(r->name, name) == 0) {
			*v = r->value;
			return 1;
		}
	}
	return 0;
}

/* Whether a counter adds up across servers: not times, quantiles, the
 * epoch or the per-server table count. */
static int summable(const char *name)
{
	size_t len = strlen(name);

	return strcmp(name, "uptime_s") != 0 && strcmp(name, "epoch") != 0 &&
	       strcmp(name, "tables") != 0 &&
	       !(len > 3 && strcmp(name + len - 3, "_us") == 0);
}

/* Sum of counter name in table (NULL: server-wide) over the servers that
 * answered; 0 when none reported it. */
static int stat_sum(const struct stat_set *s, const char *table,
		    const char *name, uint64_t *sum)
{
	int any = 0;

	*sum = 0;
	for (size_t i = 0; i < s->n; i++) {
		const struct stat_rec *r = &s->v[i];

		if (r->has_table == (table != NULL) &&
		    (!table || strcmp(r->table, table) == 0) &&
		    strcmp(r->name, name) == 0) {
			*sum += r->value;
			any = 1;
		}
	}
	return any;
}

/* 1 when an earlier record (before i) matches r's (server, table) group,
 * or r's table when server is UINT32_MAX (any server). */
static int seen_before(const struct stat_set *s, size_t i, uint32_t server)
{
	const struct stat_rec *r = &s->v[i];

	for (size_t k = 0; k < i; k++)
		if (s->v[k].has_table &&
		    (server == UINT32_MAX || s->v[k].server == server) &&
		    strcmp(s->v[k].table, r->table) == 0)
			return 1;
	return 0;
}

enum col_fmt { FMT_NUM, FMT_BYTES, FMT_SECONDS };

struct col {
	const char *header;
	const char *counter;
	enum col_fmt fmt;
};

static const struct col server_cols[] = {
	{ "UPTIME", "uptime_s", FMT_SECONDS },
	{ "CONNS", "connections", FMT_NUM },
	{ "TABLES", "tables", FMT_NUM },
	{ "MEMORY", "mem_bytes", FMT_BYTES },
	{ "PULLS/S", "pulls_per_s", FMT_NUM },
	{ "PUSHES/S", "pushes_per_s", FMT_NUM },
	{ "PULL_P50_US", "pull_p50_us", FMT_NUM },
	{ "PULL_P99_US", "pull_p99_us", FMT_NUM },
	{ "PUSH_P50_US", "push_p50_us", FMT_NUM },
	{ "PUSH_P99_US", "push_p99_us", FMT_NUM },
	{ "ERRORS", "errors", FMT_NUM },
};

static const struct col table_cols[] = {
	{ "ROWS", "rows", FMT_NUM },
	{ "CAPACITY", "capacity", FMT_NUM },
	{ "MEMORY", "mem_bytes", FMT_BYTES },
	{ "HITS", "hits", FMT_NUM },
	{ "MISSES", "pull_misses", FMT_NUM },
	{ "INSERTS", "inserts", FMT_NUM },
	{ "EVICTIONS", "evictions", FMT_NUM },
	{ "ADMIT_REJECTS", "admit_rejects", FMT_NUM },
	{ "PULLS", "pulls", FMT_NUM },
	{ "PUSHES", "pushes", FMT_NUM },
	{ "GRADS_DROPPED", "grads_dropped", FMT_NUM },
};

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_COLS 16u

static void cell_fmt(char *cell, enum col_fmt fmt, uint64_t v)
{
	switch (fmt) {
	case FMT_BYTES:
		embkv_tool_human_bytes(cell, CELL_MAX, v);
		break;
	case FMT_SECONDS:
		snprintf(cell, CELL_MAX, "%" PRIu64 "s", v);
		break;
	default:
		snprintf(cell, CELL_MAX, "%" PRIu64, v);
	}
}

/* Fills cols of row from (server, table) counters, or from their sums
 * over the servers that answered when server is UINT32_MAX; "-" where
 * missing (or not summable). */
static void fill_cols(char (*row)[CELL_MAX], const struct col *cols,
		      size_t ncols, const struct stat_set *s, uint32_t server,
		      const char *table)
{
	for (size_t c = 0; c < ncols; c++) {
		uint64_t v;

		if (server == UINT32_MAX) {
			if (summable(cols[c].counter) &&
			    stat_sum(s, table, cols[c].counter, &v))
				cell_fmt(row[c], cols[c].fmt, v);
		} else if (stat_get(s, server, table, cols[c].counter, &v)) {
			cell_fmt(row[c], cols[c].fmt, v);
		}
	}
}

static int print_stats_all(struct embkv_client *c, const struct stat_set *s,
			   const int *err)
{
	static const char *const hdr[] = { "SERVER", "TABLE", "COUNTER",
					   "VALUE" };
	uint32_t nsrv = embkv_client_server_count(c);
	char (*row)[CELL_MAX];
	struct text_table t;

	if (tt_init(&t, 4, 3, hdr))
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		if (!(row = tt_row(&t))) {
			tt_free(&t);
			return -ENOMEM;
		}
		snprintf(row[0], CELL_MAX, "%u", s->v[i].server);
		snprintf(row[1], CELL_MAX, "%s",
			 s->v[i].has_table ? s->v[i].table : "(server)");
		snprintf(row[2], CELL_MAX, "%s", s->v[i].name);
		snprintf(row[3], CELL_MAX, "%" PRIu64, s->v[i].value);
	}
	tt_print(&t);
	tt_free(&t);
	for (uint32_t srv = 0; srv < nsrv; srv++)
		if (err[srv])
			print_down(stdout, c, srv, err[srv]);
	return 0;
}

/* The server table: one row per server (down ones marked), then the
 * cluster's sums over the servers that answered. */
static int print_server_table(struct embkv_client *c, const struct stat_set *s,
			      const int *err, uint32_t nup)
{
	uint32_t nsrv = embkv_client_server_count(c);
	const char *hdr[MAX_COLS];
	char (*row)[CELL_MAX];
	struct text_table t;
	size_t k;

	hdr[0] = "SERVER";
	hdr[1] = "ADDRESS";
	hdr[2] = "STATE";
	for (k = 0; k < NCOLS(server_cols); k++)
		hdr[3 + k] = server_cols[k].header;
	if (tt_init(&t, 3 + NCOLS(server_cols), 3, hdr))
		return -ENOMEM;
	for (uint32_t srv = 0; srv <= nsrv; srv++) {
		if (!(row = tt_row(&t))) {
			tt_free(&t);
			return -ENOMEM;
		}
		if (srv == nsrv) { /* the totals */
			snprintf(row[0], CELL_MAX, "TOTAL");
			snprintf(row[1], CELL_MAX, "%u of %u servers", nup,
				 nsrv);
			fill_cols(row + 3, server_cols, NCOLS(server_cols), s,
				  UINT32_MAX, NULL);
			continue;
		}
		snprintf(row[0], CELL_MAX, "%u", srv);
		snprintf(row[1], CELL_MAX, "%s", embkv_client_server_addr(c, srv));
		snprintf(row[2], CELL_MAX, "%s", err[srv] ? "DOWN" : "up");
		if (!err[srv])
			fill_cols(row + 3, server_cols, NCOLS(server_cols), s,
				  srv, NULL);
	}
	tt_print(&t);
	tt_free(&t);
	if (nup < nsrv) {
		putchar('\n');
		for (uint32_t srv = 0; srv < nsrv; srv++)
			if (err[srv])
				print_down(stdout, c, srv, err[srv]);
	}
	return 0;
}

/* The table table: per table, one row per server that has it, then its
 * sums over them. */
static int print_table_table(const struct stat_set *s)
{
	const char *hdr[MAX_COLS];
	char (*row)[CELL_MAX];
	struct text_table t;
	size_t i, k;

	hdr[0] = "SERVER";
	hdr[1] = "TABLE";
	for (k = 0; k < NCOLS(table_cols); k++)
		hdr[2 + k] = table_cols[k].header;
	if (tt_init(&t, 2 + NCOLS(table_cols), 2, hdr))
		return -ENOMEM;
	for (i = 0; i < s->n; i++) {
		const struct stat_rec *r = &s->v[i];

		if (!r->has_table || seen_before(s, i, UINT32_MAX))
			continue;
		for (k = i; k < s->n; k++) {
			const struct stat_rec *q = &s->v[k];

			if (!q->has_table || strcmp(q->table, r->table) != 0 ||
			    seen_before(s, k, q->server))
				continue;
			if (!(row = tt_row(&t)))
				goto oom;
			snprintf(row[0], CELL_MAX, "%u", q->server);
			snprintf(row[1], CELL_MAX, "%s", q->table);
			fill_cols(row + 2, table_cols, NCOLS(table_cols), s,
				  q->server, q->table);
		}
		if (!(row = tt_row(&t)))
			goto oom;
		snprintf(row[0], CELL_MAX, "TOTAL");
		snprintf(row[1], CELL_MAX, "%s", r->table);
		fill_cols(row + 2, table_cols, NCOLS(table_cols), s, UINT32_MAX,
			  r->table);
	}
	if (t.nrows == 1)
		printf("(no tables)\n");
	else
		tt_print(&t);
	tt_free(&t);
	return 0;
oom:
	tt_free(&t);
	return -ENOMEM;
}

static int print_stats_human(struct embkv_client *c, const struct stat_set *s,
			     const int *err, uint32_t nup, int all)
{
	int rc;

	if (all)
		return print_stats_all(c, s, err);
	rc = print_server_table(c, s, err, nup);
	if (rc)
		return rc;
	printf("\nTOTAL rows: sums over the %u of %u servers that answered\n\n",
	       nup, embkv_client_server_count(c));
	return print_table_table(s);
}

/* {"name":value,...} of server srv's counters in table (NULL: its own),
 * or their sums over the servers that answered when srv is UINT32_MAX. */
static void counters_json(const struct stat_set *s, uint32_t srv,
			  const char *table)
{
	int first = 1;

	printf("{");
	for (size_t i = 0; i < s->n; i++) {
		const struct stat_rec *r = &s->v[i];
		uint64_t v = r->value;
		int dup = 0;

		if (r->has_table != (table != NULL) ||
		    (table && strcmp(r->table, table) != 0))
			continue;
		if (srv == UINT32_MAX) {
			for (size_t k = 0; k < i && !dup; k++)
				dup = s->v[k].has_table == r->has_table &&
				      strcmp(s->v[k].table, r->table) == 0 &&
				      strcmp(s->v[k].name, r->name) == 0;
			if (dup || !summable(r->name))
				continue;
			stat_sum(s, table, r->name, &v);
		} else if (r->server != srv) {
			continue;
		}
		printf("%s", first ? "" : ",");
		json_str(r->name);
		printf(":%" PRIu64, v);
		first = 0;
	}
	printf("}");
}

/* {"table":{counters},...} for server srv, or the sums (UINT32_MAX). */
static void tables_json(const struct stat_set *s, uint32_t srv)
{
	int first = 1;

	printf("{");
	for (size_t i = 0; i < s->n; i++) {
		const struct stat_rec *r = &s->v[i];

		if (!r->has_table || (srv != UINT32_MAX && r->server != srv) ||
		    seen_before(s, i, srv))
			continue;
		printf("%s", first ? "" : ",");
		json_str(r->table);
		printf(":");
		counters_json(s, srv, r->table);
		first = 0;
	}
	printf("}");
}

static void print_stats_json(struct embkv_client *c, const struct stat_set *s,
			     const int *err, uint32_t nup)
{
	uint32_t nsrv = embkv_client_server_count(c);

	printf("{\"servers\":[");
	for (uint32_t srv = 0; srv < nsrv; srv++) {
		printf("%s{\"index\":%u,\"address\":", srv ? "," : "", srv);
		json_str(embkv_client_server_addr(c, srv));
		if (err[srv]) {
			printf(",\"up\":false,\"error\":");
			json_str(embkv_strerror(err[srv]));
			printf("}");
			continue;
		}
		printf(",\"up\":true,\"counters\":");
		counters_json(s, srv, NULL);
		printf(",\"tables\":");
		tables_json(s, srv);
		printf("}");
	}
	/* sums of the summable counters over the servers that answered */
	printf("],\"totals\":{\"servers\":%u,\"servers_up\":%u,\"counters\":",
	       nsrv, nup);
	counters_json(s, UINT32_MAX, NULL);
	printf(",\"tables\":");
	tables_json(s, UINT32_MAX);
	printf("}}\n");
}

static int parse_stats(int argc, char **argv, struct cmd_args *a)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	opterr = 0;
	optind = 0;
	while ((o = getopt_long(argc, argv, "+:ah", opts, NULL)) != -1) {
		if (o == 'a')
			a->all = 1;
		else if (o == 'j')
			a->json = 1;
		else if (o == 'h')
			return HELP_SHOWN;
		else
			return usage_error("stats: bad option %s", argv[optind - 1]);
	}
	if (optind < argc)
		return usage_error("stats: unexpected argument %s", argv[optind]);
	return 0;
}

/* 1 when server srv reported its own counters. */
static int stats_answered(const struct stat_set *s, uint32_t srv)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].server == srv && !s->v[i].has_table)
			return 1;
	return 0;
}

static int cmd_stats(struct embkv_client *c, const struct cmd_args *a,
		     int json)
{
	uint32_t nsrv = embkv_client_server_count(c), nup = 0;
	struct stat_set s = { 0 };
	int call_rc, rc = 0, *err;

	err = calloc(nsrv ? nsrv : 1, sizeof(*err));
	if (!err)
		return failed("stats", -ENOMEM);
	/* Fails when some server did; the others are in s. */
	call_rc = embkv_stats(c, on_stat, &s);
	if (s.oom)
		rc = -ENOMEM;
	for (uint32_t srv = 0; srv < nsrv && !rc; srv++) {
		err[srv] = server_error(c, srv, stats_answered(&s, srv),
					call_rc);
		nup += !err[srv];
	}
	if (!rc && !nup)
		rc = call_rc ? call_rc : EMBKV_EPROTO;
	if (!rc && json)
		print_stats_json(c, &s, err, nup);
	else if (!rc)
		rc = print_stats_human(c, &s, err, nup, a->all);
	free(s.v);
	free(err);
	if (rc)
		return failed("stats", rc);
	if (nup < nsrv) {
		fprintf(stderr, "%s: stats: %u of %u servers did not answer\n",
			prog, nsrv - nup, nsrv);
		return EXIT_DOWN;
	}
	return 0;
}

/* tables ---------------------------------------------------------------------- */

static void attr_json_fields(const struct embkv_table_attr *a)
{
	printf("\"name\":");
	json_str(a->name);
	printf(",\"dim\":%u,\"dtype\":\"f32\",\"partitions\":%u,"
	       "\"capacity\":%" PRIu64 ",\"optimizer\":\"%s\",\"lr\":%g,"
	       "\"beta1\":%g,\"beta2\":%g,\"eps\":%g,\"initial_accum\":%g,"
	       "\"l1\":%g,\"l2\":%g,\"ftrl_beta\":%g,\"init\":\"%s\","
	       "\"init_a\":%g,\"init_b\":%g,\"init_seed\":%" PRIu64 ","
	       "\"admit_after\":%u,\"lfu_decay_period\":%u,"
	       "\"hash_seed\":%" PRIu64 ",\"index_load\":%g",
	       a->dim, a->partitions, a->capacity,
	       embkv_optimizer_name(a->opt.type), (double)a->opt.lr,
	       (double)a->opt.beta1, (double)a->opt.beta2, (double)a->opt.eps,
	       (double)a->opt.initial_accum, (double)a->opt.l1,
	       (double)a->opt.l2, (double)a->opt.ftrl_beta,
	       embkv_init_name(a->init.type), (double)a->init.a,
	       (double)a->init.b, a->init.seed, a->admit_after,
	       a->lfu_decay_period, a->hash_seed, (double)a->index_load);
}

static void attr_json(const struct embkv_table_attr *a)
{
	printf("{");
	attr_json_fields(a);
	printf("}");
}

/* What server srv's locate status says about the table there. */
static const char *where_word(int st)
{
	if (st == 0)
		return "has it";
	if (st == EMBKV_ENOTABLE)
		return "missing";
	if (st == EMBKV_EINCONSISTENT)
		return "different attributes";
	return "down";
}

/* 1 when some server has the table (a locate status of 0). */
static int any_has(const int *st, uint32_t nsrv)
{
	for (uint32_t srv = 0; srv < nsrv; srv++)
		if (st[srv] == 0)
			return 1;
	return 0;
}

/* "missing_on":[...],"differs_on":[...] of a locate's statuses. */
static void where_json(struct embkv_client *c, const int *st, uint32_t nsrv)
{
	static const char *const keys[] = { "missing_on", "differs_on" };
	static const int codes[] = { EMBKV_ENOTABLE, EMBKV_EINCONSISTENT };

	for (size_t k = 0; k < 2; k++) {
		int first = 1;

		printf(",\"%s\":[", keys[k]);
		for (uint32_t srv = 0; srv < nsrv; srv++) {
			if (st[srv] != codes[k])
				continue;
			printf("%s", first ? "" : ",");
			json_str(embkv_client_server_addr(c, srv));
			first = 0;
		}
		printf("]");
	}
}

static int parse_tables(int argc, char **argv, struct cmd_args *a)
{
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i]))
			return HELP_SHOWN;
		if (strcmp(argv[i], "--json") == 0)
			a->json = 1;
		else
			return usage_error("tables: unexpected argument %s",
					   argv[i]);
	}
	return 0;
}

/*
 * One table's row (or JSON object): its attributes as the first server
 * that has it says, and its state across the servers that answered: "ok",
 * or "INCONSISTENT" with, after the table, where it is missing or differs.
 * 1 when inconsistent, 0 when not, -1 when no server has it any more.
 */
static int table_entry(struct embkv_client *c, const char *name, int json,
		       int first, struct text_table *t, int *st, uint32_t nsrv)
{
	struct embkv_table_attr a;
	char (*row)[CELL_MAX];
	int rc, bad;

	for (uint32_t srv = 0; srv < nsrv; srv++)
		st[srv] = EMBKV_ENOTABLE;
	rc = embkv_table_locate(c, name, &a, st, nsrv);
	if (rc && rc != EMBKV_EINCONSISTENT && !any_has(st, nsrv))
		return -1; /* dropped meanwhile, or only on servers now down */
	bad = rc == EMBKV_EINCONSISTENT;
	if (json) {
		printf("%s{", first ? "" : ",");
		attr_json_fields(&a);
		printf(",\"state\":\"%s\"", bad ? "inconsistent" : "ok");
		where_json(c, st, nsrv);
		printf("}");
		return bad;
	}
	if (!(row = tt_row(t)))
		return -ENOMEM;
	snprintf(row[0], CELL_MAX, "%s", a.name);
	snprintf(row[1], CELL_MAX, "%u", a.dim);
	snprintf(row[2], CELL_MAX, "%u", a.partitions);
	snprintf(row[3], CELL_MAX, "%" PRIu64, a.capacity);
	snprintf(row[4], CELL_MAX, "%s", embkv_optimizer_name(a.opt.type));
	snprintf(row[5], CELL_MAX, "%g", (double)a.opt.lr);
	snprintf(row[6], CELL_MAX, "%s", embkv_init_name(a.init.type));
	snprintf(row[7], CELL_MAX, "%u", a.admit_after);
	snprintf(row[8], CELL_MAX, "%s", bad ? "INCONSISTENT" : "ok");
	return bad;
}

/* After the table: where each inconsistent table is and is not. */
static void print_where(struct embkv_client *c, const char *name, int *st,
			uint32_t nsrv)
{
	for (uint32_t srv = 0; srv < nsrv; srv++)
		st[srv] = EMBKV_ENOTABLE;
	if (embkv_table_locate(c, name, NULL, st, nsrv) != EMBKV_EINCONSISTENT)
		return;
	printf("%s: INCONSISTENT:", name);
	for (uint32_t srv = 0; srv < nsrv; srv++)
		printf("%s %s %s", srv ? "," : "",
		       embkv_client_server_addr(c, srv), where_word(st[srv]));
	printf("\n");
}

static int cmd_tables(struct embkv_client *c, const struct cmd_args *args,
		      int json)
{
	static const char *const hdr[] = {
		"NAME", "DIM", "PARTITIONS", "CAPACITY", "OPTIMIZER", "LR",
		"INIT", "ADMIT_AFTER", "STATE",
	};
	uint32_t nsrv = embkv_client_server_count(c), count = 0, nup = 0;
	struct embkv_table_summary *list;
	int list_rc, rc = 0, nbad = 0, shown = 0, *st = NULL, *err = NULL;
	struct text_table t = { 0 };

	(void)args;
	list = calloc(LIST_MAX, sizeof(*list));
	st = calloc(nsrv ? nsrv : 1, sizeof(*st));
	err = calloc(nsrv ? nsrv : 1, sizeof(*err));
	if (!list || !st || !err ||
	    (!json && tt_init(&t, sizeof(hdr) / sizeof(hdr[0]), 1, hdr))) {
		rc = -ENOMEM;
		goto out;
	}
	/* Fails when some server did; the others' tables are in list. */
	list_rc = embkv_table_list(c, list, LIST_MAX, &count);
	if (count > LIST_MAX)
		count = LIST_MAX;
	if (json)
		printf("{\"tables\":[");
	for (uint32_t i = 0; i < count; i++) {
		int e = table_entry(c, list[i].name, json, !shown, &t, st,
				    nsrv);

		if (e == -ENOMEM) {
			rc = e;
			break;
		}
		shown += e >= 0;
		nbad += e > 0;
	}
	for (uint32_t srv = 0; srv < nsrv; srv++) {
		err[srv] = server_error(c, srv, 1, list_rc);
		nup += !err[srv];
	}
	if (json) {
		printf("],");
		servers_json(c, err);
		printf("}\n");
	} else if (!rc) {
		if (shown)
			tt_print(&t);
		else
			printf("(no tables)\n");
		for (uint32_t i = 0; nbad && i < count; i++)
			print_where(c, list[i].name, st, nsrv);
		for (uint32_t srv = 0; srv < nsrv; srv++)
			if (err[srv])
				print_down(stdout, c, srv, err[srv]);
	}
	if (!rc && !nup)
		rc = list_rc ? list_rc : EMBKV_EPROTO;
out:
	tt_free(&t);
	free(err);
	free(st);
	free(list);
	if (rc)
		return failed("tables", rc);
	if (nup < nsrv) {
		fprintf(stderr, "%s: tables: %u of %u servers did not answer\n",
			prog, nsrv - nup, nsrv);
		return EXIT_DOWN;
	}
	if (nbad) {
		fprintf(stderr, "%s: tables: not on every server alike: %d\n",
			prog, nbad);
		return EXIT_FAILED;
	}
	return 0;
}

/* create-table ---------------------------------------------------------- */

enum create_opt {
	C_DIM = 1000, C_PARTS, C_CAP, C_OPT, C_LR, C_BETA1, C_BETA2, C_EPS,
	C_ACCUM, C_L1, C_L2, C_FTRL_BETA, C_INIT, C_INIT_A, C_INIT_B,
	C_INIT_SEED, C_ADMIT, C_DECAY, C_HASH_SEED, C_INDEX_LOAD, C_DTYPE,
};

static int create_set(struct embkv_table_attr *a, int o, const char *v)
{
	int e;

	switch (o) {
	case C_DIM: return parse_u32(v, &a->dim);
	case C_PARTS: return parse_u32(v, &a->partitions);
	case C_CAP: return parse_u64(v, &a->capacity);
	case C_OPT:
		e = embkv_optimizer_parse(v);
		if (e < 0)
			return e;
		a->opt.type = (enum embkv_optimizer)e;
		return 0;
	case C_LR: return parse_float(v, &a->opt.lr);
	case C_BETA1: return parse_float(v, &a->opt.beta1);
	case C_BETA2: return parse_float(v, &a->opt.beta2);
	case C_EPS: return parse_float(v, &a->opt.eps);
	case C_ACCUM: return parse_float(v, &a->opt.initial_accum);
	case C_L1: return parse_float(v, &a->opt.l1);
	case C_L2: return parse_float(v, &a->opt.l2);
	case C_FTRL_BETA: return parse_float(v, &a->opt.ftrl_beta);
	case C_INIT:
		e = embkv_init_parse(v);
		if (e < 0)
			return e;
		a->init.type = (enum embkv_init_type)e;
		return 0;
	case C_INIT_A: return parse_float(v, &a->init.a);
	case C_INIT_B: return parse_float(v, &a->init.b);
	case C_INIT_SEED: return parse_u64(v, &a->init.seed);
	case C_ADMIT: return parse_u32(v, &a->admit_after);
	case C_DECAY: return parse_u32(v, &a->lfu_decay_period);
	case C_HASH_SEED: return parse_u64(v, &a->hash_seed);
	case C_INDEX_LOAD: return parse_float(v, &a->index_load);
	case C_DTYPE:
		return strcmp(v, "f32") == 0 ? 0 : -EINVAL;
	}
	return -EINVAL;
}

static int parse_create(int argc, char **argv, struct cmd_args *args)
{
	static const struct option opts[] = {
		{ "dim", required_argument, NULL, C_DIM },
		{ "partitions", required_argument, NULL, C_PARTS },
		{ "capacity", required_argument, NULL, C_CAP },
		{ "optimizer", required_argument, NULL, C_OPT },
		{ "lr", required_argument, NULL, C_LR },
		{ "beta1", required_argument, NULL, C_BETA1 },
		{ "beta2", required_argument, NULL, C_BETA2 },
		{ "eps", required_argument, NULL, C_EPS },
		{ "initial-accum", required_argument, NULL, C_ACCUM },
		{ "l1", required_argument, NULL, C_L1 },
		{ "l2", required_argument, NULL, C_L2 },
		{ "ftrl-beta", required_argument, NULL, C_FTRL_BETA },
		{ "init", required_argument, NULL, C_INIT },
		{ "init-a", required_argument, NULL, C_INIT_A },
		{ "init-b", required_argument, NULL, C_INIT_B },
		{ "init-seed", required_argument, NULL, C_INIT_SEED },
		{ "admit-after", required_argument, NULL, C_ADMIT },
		{ "lfu-decay-period", required_argument, NULL, C_DECAY },
		{ "hash-seed", required_argument, NULL, C_HASH_SEED },
		{ "index-load", required_argument, NULL, C_INDEX_LOAD },
		{ "dtype", required_argument, NULL, C_DTYPE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct embkv_table_attr *a = &args->attr;
	int o, rc;

	embkv_table_attr_init(a);
	opterr = 0;
	optind = 0;
	while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (o == 'h')
			return HELP_SHOWN;
		if (o == '?' || o == ':')
			return usage_error("create-table: bad or incomplete "
					   "option %s", argv[optind - 1]);
		if (create_set(a, o, optarg))
			return usage_error("create-table: bad value in %s",
					   argv[optind - 1]);
	}
	if (optind + 1 != argc)
		return usage_error("create-table: %s", "needs exactly one NAME");
	if (strlen(argv[optind]) >= sizeof(a->name))
		return usage_error("create-table: name too long: %s",
				   argv[optind]);
	strcpy(a->name, argv[optind]);
	rc = embkv_table_attr_check(a);
	if (rc) {
		fprintf(stderr, "%s: create-table %s: invalid attributes: %s\n",
			prog, a->name, embkv_strerror(rc));
		return EXIT_USAGE;
	}
	return 0;
}

/*
 * Why a create failed, server by server: the ones that did not answer
 * (then nothing was created), or where the table is and is not when the
 * cluster disagrees about it.
 */
static int create_failed(struct embkv_client *c, const char *name, int rc)
{
	uint32_t nsrv = embkv_client_server_count(c);
	int *st = calloc(nsrv ? nsrv : 1, sizeof(*st));

	if (rc == EMBKV_EINCONSISTENT || rc == EMBKV_ETABLEEXISTS ||
	    !down_count(c))
		fprintf(stderr, "%s: create-table %s: %s\n", prog, name,
			embkv_strerror(rc));
	else
		fprintf(stderr, "%s: create-table %s: not created: a server "
			"of the cluster did not answer\n", prog, name);
	if (rc == EMBKV_EINCONSISTENT && st &&
	    embkv_table_locate(c, name, NULL, st, nsrv) ==
		    EMBKV_EINCONSISTENT) {
		for (uint32_t srv = 0; srv < nsrv; srv++)
			fprintf(stderr, "%s:   %s: %s\n", prog,
				embkv_client_server_addr(c, srv),
				where_word(st[srv]));
		fprintf(stderr, "%s: nothing was created; the table's rows on "
			"the servers that have it are kept. To start it afresh: "
			"drop-table %s, then create-table again\n", prog, name);
	} else {
		for (uint32_t srv = 0; srv < nsrv; srv++) {
			int e = embkv_client_server_status(c, srv);

			if (e) {
				fprintf(stderr, "%s: ", prog);
				print_down(stderr, c, srv, e);
			}
		}
		if (rc != EMBKV_ETABLEEXISTS && !down_count(c))
			fprintf(stderr, "%s: nothing was created\n", prog);
	}
	free(st);
	return EXIT_FAILED;
}

static int cmd_create(struct embkv_client *c, const struct cmd_args *args,
		      int json)
{
	const struct embkv_table_attr *a = &args->attr;
	int rc;

	rc = embkv_table_create_remote(c, a);
	if (rc)
		return create_failed(c, a->name, rc);
	if (json) {
		printf("{\"created\":");
		attr_json(a);
		printf("}\n");
	} else {
		printf("created table %s (dim %u, %u partitions, capacity %"
		       PRIu64 ", %s)\n", a->name, a->dim, a->partitions,
		       a->capacity, embkv_optimizer_name(a->opt.type));
	}
	return 0;
}

/* drop-table, map -------------------------------------------------------- */

static int parse_drop(int argc, char **argv, struct cmd_args *a)
{
	if (argc == 2 && is_help(argv[1]))
		return HELP_SHOWN;
	if (argc != 2 || argv[1][0] == '-')
		return usage_error("drop-table: %s", "needs exactly one NAME");
	a->name = argv[1];
	return 0;
}

static int cmd_drop(struct embkv_client *c, const struct cmd_args *a,
		    int json)
{
	int rc;

	rc = embkv_table_drop_remote(c, a->name);
	if (rc && down_count(c)) {
		/* the others did drop it: name the ones that failed */
		fprintf(stderr, "%s: drop-table %s: dropped from the servers "
			"that answered, not from:\n", prog, a->name);
		for (uint32_t srv = 0; srv < embkv_client_server_count(c); srv++) {
			int e = embkv_client_server_status(c, srv);

			if (e) {
				fprintf(stderr, "%s: ", prog);
				print_down(stderr, c, srv, e);
			}
		}
		return EXIT_FAILED;
	}
	if (rc)
		return failed("drop-table", rc);
	if (json) {
		printf("{\"dropped\":");
		json_str(a->name);
		printf("}\n");
	} else {
		printf("dropped table %s\n", a->name);
	}
	return 0;
}

static int parse_map(int argc, char **argv, struct cmd_args *a)
{
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i]))
			return HELP_SHOWN;
		if (strcmp(argv[i], "--partitions") == 0)
			a->list = 1;
		else if (argv[i][0] == '-' || a->name)
			return usage_error("map: unexpected argument %s", argv[i]);
		else
			a->name = argv[i];
	}
	if (!a->name)
		return usage_error("map: %s", "needs a table NAME");
	return 0;
}

static int cmd_map(struct embkv_client *c, const struct cmd_args *a,
		   int json)
{
	static const char *const hdr[] = { "SERVER", "ADDRESS", "PARTITIONS" };
	const char *name = a->name;
	struct embkv_table_handle *t;
	uint32_t nparts, nsrv, *per = NULL;
	uint16_t *ps = NULL;
	struct text_table tt;
	uint64_t epoch;
	int rc;

	rc = embkv_table_open(c, name, &t);
	if (rc)
		return failed("map", rc);
	nparts = embkv_table_attr_get(t)->partitions;
	ps = calloc(nparts, sizeof(*ps));
	if (!ps) {
		rc = -ENOMEM;
		goto close;
	}
	rc = embkv_table_map(t, &epoch, ps, nparts);
	if (rc)
		goto close;
	nsrv = embkv_client_server_count(c);
	per = calloc(nsrv, sizeof(*per));
	if (!per) {
		rc = -ENOMEM;
		goto close;
	}
	for (uint32_t p = 0; p < nparts; p++)
		if (ps[p] < nsrv)
			per[ps[p]]++;
	if (json) {
		printf("{\"table\":");
		json_str(name);
		printf(",\"epoch\":%" PRIu64 ",\"partitions\":%u,\"servers\":[",
		       epoch, nparts);
		for (uint32_t s = 0; s < nsrv; s++) {
			printf("%s{\"index\":%u,\"address\":", s ? "," : "", s);
			json_str(embkv_client_server_addr(c, s));
			printf(",\"partitions\":%u}", per[s]);
		}
		printf("],\"part_server\":[");
		for (uint32_t p = 0; p < nparts; p++)
			printf("%s%u", p ? "," : "", ps[p]);
		printf("]}\n");
		goto close;
	}
	printf("table %s: epoch %" PRIu64 ", %u partitions\n", name, epoch,
	       nparts);
	if (tt_init(&tt, 3, 2, hdr)) {
		rc = -ENOMEM;
		goto close;
	}
	for (uint32_t s = 0; s < nsrv; s++) {
		char (*row)[CELL_MAX] = tt_row(&tt);

		if (!row) {
			rc = -ENOMEM;
			break;
		}
		snprintf(row[0], CELL_MAX, "%u", s);
		snprintf(row[1], CELL_MAX, "%s", embkv_client_server_addr(c, s));
		snprintf(row[2], CELL_MAX, "%u", per[s]);
	}
	tt_print(&tt);
	tt_free(&tt);
	if (a->list) {
		printf("\nPARTITION  SERVER\n");
		for (uint32_t p = 0; p < nparts; p++)
			printf("%9u  %6u\n", p, ps[p]);
	}
close:
	free(per);
	free(ps);
	embkv_table_close(t);
	return rc ? failed("map", rc) : 0;
}

/* main -------------------------------------------------------------------- */

struct command {
	const char *name;
	/* 0, EXIT_USAGE (message printed) or HELP_SHOWN */
	int (*parse)(int argc, char **argv, struct cmd_args *a);
	int (*run)(struct embkv_client *c, const struct cmd_args *a, int json);
};

static const struct command commands[] = {
	{ "stats", parse_stats, cmd_stats },
	{ "tables", parse_tables, cmd_tables },
	{ "create-table", parse_create, cmd_create },
	{ "drop-table", parse_drop, cmd_drop },
	{ "map", parse_map, cmd_map },
};

enum global_opt { G_SERVERS = 1000, G_TOKEN, G_JSON, G_TIMEOUT, G_ETCD,
		  G_CLUSTER };

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "servers", required_argument, NULL, G_SERVERS },
		{ "token-file", required_argument, NULL, G_TOKEN },
		{ "json", no_argument, NULL, G_JSON },
		{ "timeout", required_argument, NULL, G_TIMEOUT },
		{ "etcd", required_argument, NULL, G_ETCD },
		{ "cluster", required_argument, NULL, G_CLUSTER },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct embkv_tool_conn conn = { 0 };
	struct embkv_ctl_etcd etcd = { 0 };
	const struct command *cmd = NULL;
	struct embkv_client *c;
	struct cmd_args args;
	int json = 0, o, rc;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (o) {
		case G_SERVERS:
			conn.servers_arg = optarg;
			break;
		case G_TOKEN:
			conn.token_file = optarg;
			break;
		case G_JSON:
			json = 1;
			break;
		case G_TIMEOUT:
			if (parse_u32(optarg, &conn.timeout_ms) ||
			    conn.timeout_ms == 0)
				return usage_error("bad --timeout %s", optarg);
			break;
		case G_ETCD:
			etcd.etcd = optarg;
			break;
		case G_CLUSTER:
			etcd.cluster = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usage_error("bad or incomplete option %s",
					   argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("%s", "no command");
	rc = embkv_ctl_members_run(prog, &etcd, &conn, json, argc - optind,
				   argv + optind);
	if (rc != EMBKV_CTL_NOT_MINE)
		return rc;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd)
		return usage_error("unknown command %s", argv[optind]);
	memset(&args, 0, sizeof(args));
	rc = cmd->parse(argc - optind, argv + optind, &args);
	if (rc == HELP_SHOWN) {
		usage(stdout);
		return 0;
	}
	if (rc)
		return rc;
	/* One dead server must not blind the operator: every command
	 * starts with the servers that answer, and says who did not. */
	conn.flags = EMBKV_CLIENT_ALLOW_DOWN;
	if (embkv_tool_connect(prog, &conn, &c))
		return EXIT_FAILED;
	rc = cmd->run(c, &args, json || args.json);
	embkv_client_destroy(c);
	return rc;
}
