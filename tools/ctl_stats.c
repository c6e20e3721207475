/*
 * embkvctl stats [--all] [--json] [--watch SECONDS]: every server's
 * counters and every table's, as embkv_stats() reports them, with TOTAL
 * rows that sum them over the servers that answered; a server that did
 * not is a DOWN row with its own error, and the exit status is then
 * EXIT_DOWN. --watch repeats it every SECONDS until interrupted (one JSON
 * document per line with --json). Latency columns say their unit and
 * that they are histogram bucket bounds (a footnote under the table).
 *
 * Why a file of its own: one file per object, as iproute2's rdma tool
 * does; this one holds the stats records, the column tables and their
 * text and JSON renderings.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "tools/clientopts.h"
#include "tools/ctl.h"

#define STAT_NAME_BYTES 32u
#define WATCH_MAX_S 86400u

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
 * epoch, the per-server table count or the last checkpoint. */
static int summable(const char *name)
{
	size_t len = strlen(name);

	return strcmp(name, "uptime_s") != 0 && strcmp(name, "epoch") != 0 &&
	       strcmp(name, "tables") != 0 && strncmp(name, "ckpt_", 5) != 0 &&
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

enum col_fmt { FMT_NUM, FMT_BYTES, FMT_SECONDS, FMT_MS };

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
	/* LATENCY_NOTE explains the star */
	{ "PULL_P50_US*", "pull_p50_us", FMT_NUM },
	{ "PULL_P99_US*", "pull_p99_us", FMT_NUM },
	{ "PUSH_P50_US*", "push_p50_us", FMT_NUM },
	{ "PUSH_P99_US*", "push_p99_us", FMT_NUM },
	{ "ERRORS", "errors", FMT_NUM },
	/* expected not-found answers (open-or-create), not errors */
	{ "MISSES", "misses", FMT_NUM },
	/* the newest checkpoint committed or restored (--data-dir) */
	{ "CKPT_ID", "ckpt_id", FMT_NUM },
	{ "CKPT_AGE", "ckpt_age_s", FMT_SECONDS },
	{ "CKPT_TIME", "ckpt_duration_ms", FMT_MS },
	{ "CKPT_SIZE", "ckpt_bytes", FMT_BYTES },
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
	/* replicas (embkvd --replica-of) */
	{ "REPL_LAG", "repl_lag_updates", FMT_NUM },
	{ "REPL_LAG_S", "repl_lag_ms", FMT_MS },
};

#define LATENCY_NOTE \
	"* latency: time the server took to handle a request (request read to " \
	"reply queued),\n  in microseconds; the upper bound of the histogram " \
	"bucket holding the quantile\n  (up to 25% above the true value); no " \
	"TOTAL (quantiles do not add up)\n"

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_COLS 24u

static void cell_fmt(char *cell, enum col_fmt fmt, uint64_t v)
{
	switch (fmt) {
	case FMT_BYTES:
		embkv_tool_human_bytes(cell, CELL_MAX, v);
		break;
	case FMT_SECONDS:
		snprintf(cell, CELL_MAX, "%" PRIu64 "s", v);
		break;
	case FMT_MS:
		snprintf(cell, CELL_MAX, "%.1fs", (double)v / 1000.0);
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
	struct embkv_ctl_tt t;

	if (embkv_ctl_tt_init(&t, 4, 3, hdr))
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		if (!(row = embkv_ctl_tt_row(&t))) {
			embkv_ctl_tt_free(&t);
			return -ENOMEM;
		}
		snprintf(row[0], CELL_MAX, "%u", s->v[i].server);
		snprintf(row[1], CELL_MAX, "%s",
			 s->v[i].has_table ? s->v[i].table : "(server)");
		snprintf(row[2], CELL_MAX, "%s", s->v[i].name);
		snprintf(row[3], CELL_MAX, "%" PRIu64, s->v[i].value);
	}
	embkv_ctl_tt_print(&t);
	embkv_ctl_tt_free(&t);
	for (uint32_t srv = 0; srv < nsrv; srv++)
		if (err[srv])
			embkv_ctl_print_down(stdout, c, srv, err[srv]);
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
	struct embkv_ctl_tt t;
	size_t k;

	hdr[0] = "SERVER";
	hdr[1] = "ADDRESS";
	hdr[2] = "STATE";
	for (k = 0; k < NCOLS(server_cols); k++)
		hdr[3 + k] = server_cols[k].header;
	if (embkv_ctl_tt_init(&t, 3 + NCOLS(server_cols), 3, hdr))
		return -ENOMEM;
	for (uint32_t srv = 0; srv <= nsrv; srv++) {
		if (!(row = embkv_ctl_tt_row(&t))) {
			embkv_ctl_tt_free(&t);
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
	embkv_ctl_tt_print(&t);
	embkv_ctl_tt_free(&t);
	printf("%s", LATENCY_NOTE);
	if (nup < nsrv) {
		putchar('\n');
		for (uint32_t srv = 0; srv < nsrv; srv++)
			if (err[srv])
				embkv_ctl_print_down(stdout, c, srv, err[srv]);
	}
	return 0;
}

/* The table table: per table, one row per server that has it, then its
 * sums over them. */
static int print_table_table(const struct stat_set *s)
{
	const char *hdr[MAX_COLS];
	char (*row)[CELL_MAX];
	struct embkv_ctl_tt t;
	size_t i, k;

	hdr[0] = "SERVER";
	hdr[1] = "TABLE";
	for (k = 0; k < NCOLS(table_cols); k++)
		hdr[2 + k] = table_cols[k].header;
	if (embkv_ctl_tt_init(&t, 2 + NCOLS(table_cols), 2, hdr))
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
			if (!(row = embkv_ctl_tt_row(&t)))
				goto oom;
			snprintf(row[0], CELL_MAX, "%u", q->server);
			snprintf(row[1], CELL_MAX, "%s", q->table);
			fill_cols(row + 2, table_cols, NCOLS(table_cols), s,
				  q->server, q->table);
		}
		if (!(row = embkv_ctl_tt_row(&t)))
			goto oom;
		snprintf(row[0], CELL_MAX, "TOTAL");
		snprintf(row[1], CELL_MAX, "%s", r->table);
		fill_cols(row + 2, table_cols, NCOLS(table_cols), s, UINT32_MAX,
			  r->table);
	}
	if (t.nrows == 1)
		printf("(no tables)\n");
	else
		embkv_ctl_tt_print(&t);
	embkv_ctl_tt_free(&t);
	return 0;
oom:
	embkv_ctl_tt_free(&t);
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
		embkv_ctl_json_str(r->name);
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
		embkv_ctl_json_str(r->table);
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
		embkv_ctl_json_str(embkv_client_server_addr(c, srv));
		if (err[srv]) {
			printf(",\"up\":false,\"error\":");
			embkv_ctl_json_str(embkv_strerror(err[srv]));
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

int embkv_ctl_stats_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "watch", required_argument, NULL, 'w' },
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
		else if (o == 'w') {
			if (embkv_ctl_parse_u32(optarg, &a->watch_s) ||
			    !a->watch_s || a->watch_s > WATCH_MAX_S)
				return embkv_ctl_usage_error(
					"stats: bad --watch %s (seconds, 1 to "
					"86400)", optarg);
		} else if (o == ':')
			return embkv_ctl_usage_error("stats: %s needs a value",
						     argv[optind - 1]);
		else if (o == 'h')
			return HELP_SHOWN;
		else
			return embkv_ctl_usage_error("stats: bad option %s",
						     argv[optind - 1]);
	}
	if (optind < argc)
		return embkv_ctl_usage_error("stats: unexpected argument %s",
					     argv[optind]);
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

static int stats_once(struct embkv_client *c,
		      const struct embkv_ctl_args *a, int json)
{
	uint32_t nsrv = embkv_client_server_count(c), nup = 0;
	struct stat_set s = { 0 };
	int call_rc, rc = 0, *err;

	err = calloc(nsrv ? nsrv : 1, sizeof(*err));
	if (!err)
		return embkv_ctl_failed("stats", -ENOMEM);
	/* Fails when some server did; the others are in s. */
	call_rc = embkv_stats(c, on_stat, &s);
	if (s.oom)
		rc = -ENOMEM;
	for (uint32_t srv = 0; srv < nsrv && !rc; srv++) {
		err[srv] = embkv_ctl_server_error(c, srv,
						  stats_answered(&s, srv),
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
		return embkv_ctl_failed("stats", rc);
	if (nup < nsrv) {
		fprintf(stderr, "%s: stats: %u of %u servers did not answer\n",
			embkv_ctl_prog, nsrv - nup, nsrv);
		return EXIT_DOWN;
	}
	return 0;
}

int embkv_ctl_stats_run(struct embkv_client *c,
			const struct embkv_ctl_args *a, int json)
{
	int rc;

	if (!a->watch_s)
		return stats_once(c, a, json);
	/* Until interrupted (SIGINT's default action ends it); a server
	 * that does not answer is reported each round, and watched on. */
	for (;;) {
		if (!json) {
			char when[32];
			time_t now = time(NULL);
			struct tm tm;

			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S",
				 localtime_r(&now, &tm));
			printf("== %s (every %u s; Ctrl-C stops)\n", when,
			       a->watch_s);
		}
		rc = stats_once(c, a, json);
		if (rc != 0 && rc != EXIT_DOWN)
			return rc;
		if (!json)
			putchar('\n');
		fflush(stdout);
		sleep(a->watch_s);
	}
}
