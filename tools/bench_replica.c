/*
 * embkv-bench, replica mode (issue 13 item 3, "Bench"): a primary embkvd
 * and a replica embkvd (--replica-of) on loopback, one table of --rows
 * rows (dim 64, SGD, 256 partitions: the network bench's table), filled
 * with embkv_assign; once the replica caught up, --push-threads threads
 * push 4096-key batches of uniform random rows back to back for --push-s
 * seconds (the network bench's push load: its batch, its dim, one client
 * connection per thread; uniform keys are the replica's worst case, every
 * push touching rows the last pull did not). Meanwhile the replica's
 * STATS are sampled every 10 ms: its lag in milliseconds (repl_lag_ms:
 * time since every partition was last caught up) and in updates
 * (repl_lag_updates). Reported: push keys/s, lag p50/p99/max in seconds
 * and in updates, the time the replica took to drain after the pushes
 * stopped, and whether a sample of rows then equals the primary's
 * bitwise. Why sampled STATS and not a probe key: the replica's own
 * figure is what an operator sees, and it bounds the staleness of every
 * row, not of one key.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <embkv/embkv.h>
#include "tools/bench_common.h"
#include "tools/bench_replica.h"

#define RB_DEFAULT_ROWS 1000000ull
#define RB_DIM 64u
#define RB_BATCH 4096u
#define RB_PARTITIONS 256u
#define RB_LR 0.01f
#define RB_HEADROOM 1.05
#define RB_SAMPLE_MS 10u
#define RB_CHECK_ROWS 100000u
#define RB_START_TIMEOUT_S 20
#define RB_CATCHUP_TIMEOUT_S 120
#define RB_TABLE "bench_replica"
#define RB_STREAM (1u << 22)       /* keys of a push stream, cycled */
#define RB_ZIPF 1.05               /* the network bench's */

struct rb_opts {
	uint64_t rows;
	uint32_t push_threads, threads;
	double push_s;
	const char *embkvd;
	int json;
};

/* Starts embkvd with extra flags (NULL-terminated); its address. */
static int start_server(const struct rb_opts *o, const char *const *extra,
			pid_t *pid, char *addr, size_t addrlen)
{
	const char *argv[24];
	char threads_arg[16], line[256];
	const char *tag = "embkvd: listening on ";
	double deadline = bench_now_s() + RB_START_TIMEOUT_S;
	int pipefd[2], n = 0;
	FILE *f;

	snprintf(threads_arg, sizeof(threads_arg), "%u", o->threads);
	argv[n++] = o->embkvd;
	argv[n++] = "--listen";
	argv[n++] = "tcp://127.0.0.1:0";
	if (o->threads) {
		argv[n++] = "--threads";
		argv[n++] = threads_arg;
	}
	for (int i = 0; extra && extra[i] && n < 23; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	if (pipe(pipefd))
		return -errno;
	*pid = fork();
	if (*pid < 0)
		return -errno;
	if (*pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		close(pipefd[0]);
		close(pipefd[1]);
		execv(o->embkvd, (char *const *)argv);
		fprintf(stderr, "embkv-bench: cannot run %s: %s\n", o->embkvd,
			strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	while (f && bench_now_s() < deadline && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, tag);

		if (p) {
			p += strlen(tag);
			p[strcspn(p, "\r\n")] = 0;
			snprintf(addr, addrlen, "%s", p);
			fclose(f);
			return 0;
		}
	}
	if (f)
		fclose(f);
	return -ETIMEDOUT;
}

/* ---- the replica's lag ---------------------------------------------------- */

struct lag {
	uint64_t ms, updates;
	bool seen;
};

static void lag_cb(void *ctx, uint32_t server, const char *table,
		   const char *name, uint64_t value)
{
	struct lag *l = ctx;

	(void)server;
	if (!table || strcmp(table, RB_TABLE))
		return;
	if (!strcmp(name, "repl_lag_ms")) {
		l->ms = value;
		l->seen = true;
	} else if (!strcmp(name, "repl_lag_updates")) {
		l->updates = value;
	}
}

static int lag_get(struct embkv_client *rc, struct lag *l)
{
	int err;

	memset(l, 0, sizeof(*l));
	err = embkv_stats(rc, lag_cb, l);
	return err ? err : l->seen ? 0 : -ENOENT;
}

/* Waits until the replica reports lag 0; seconds taken, or < 0. */
static double wait_caught_up(struct embkv_client *rc, double timeout_s)
{
	double t0 = bench_now_s();
	struct lag l;

	while (bench_now_s() - t0 < timeout_s) {
		if (!lag_get(rc, &l) && !l.ms && !l.updates)
			return bench_now_s() - t0;
		usleep(2000);
	}
	return -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static uint64_t pct(const uint64_t *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);

	return n ? v[i < n ? i : n - 1] : 0;
}

/* A sample of rows, infer pulls on both: 1 equal, 0 not, < 0 error. */
static int rows_equal(struct embkv_table_handle *pt,
		      struct embkv_table_handle *rt, uint64_t rows)
{
	uint32_t n = rows < RB_CHECK_ROWS ? (uint32_t)rows : RB_CHECK_ROWS;
	uint64_t *keys = malloc(RB_BATCH * sizeof(*keys));
	float *a = malloc((size_t)RB_BATCH * RB_DIM * sizeof(float));
	float *b = malloc((size_t)RB_BATCH * RB_DIM * sizeof(float));
	uint8_t *fa = malloc(RB_BATCH), *fb = malloc(RB_BATCH);
	int eq = keys && a && b && fa && fb ? 1 : -ENOMEM;

	for (uint32_t i0 = 0; eq == 1 && i0 < n; i0 += RB_BATCH) {
		uint32_t m = n - i0 < RB_BATCH ? n - i0 : RB_BATCH;

		for (uint32_t j = 0; j < m; j++)
			keys[j] = bench_key_of((uint64_t)(i0 + j) * rows / n);
		eq = embkv_pull(pt, m, keys, a, fa, EMBKV_MODE_INFER, NULL);
		if (!eq)
			eq = embkv_pull(rt, m, keys, b, fb, EMBKV_MODE_INFER,
					NULL);
		if (eq)
			break;
		eq = !memcmp(fa, fb, m) &&
		     !memcmp(a, b, (size_t)m * RB_DIM * sizeof(float));
	}
	free(keys);
	free(a);
	free(b);
	free(fa);
	free(fb);
	return eq;
}

/* ---- options ----------------------------------------------------------------- */

static void rb_usage(FILE *f)
{
	fprintf(f,
		"usage: embkv-bench --mode replica [options]\n"
		"A replica's lag under the network bench's push load (a primary\n"
		"and a replica embkvd on loopback).\n"
		"  --rows N           rows of the table (default %llu), dim %u, SGD,\n"
		"                     %u partitions\n"
		"  --push-s S         seconds of pushes (default 5)\n"
		"  --push-threads N   pushing threads, one connection each\n"
		"                     (default 1, as the network bench)\n"
		"  --threads N        owner threads of each embkvd (default: its own)\n"
		"  --embkvd PATH      the embkvd binary (default: beside this one)\n"
		"  --json             one JSON object on stdout\n",
		(unsigned long long)RB_DEFAULT_ROWS, RB_DIM, RB_PARTITIONS);
}

static int rb_parse(int argc, char **argv, struct rb_opts *o, char *buf,
		    size_t buflen)
{
	const struct bench_opt opt[] = {
		BENCH_IGNORE("mode"),
		BENCH_U64("rows", &o->rows, 1000, 1ull << 32, 0),
		BENCH_DOUBLE("push-s", &o->push_s, 0.05, 600),
		BENCH_U32("push-threads", &o->push_threads, 1, 64, 0),
		BENCH_U32("threads", &o->threads, 1, 1024, 0),
		BENCH_STR("embkvd", &o->embkvd),
		BENCH_FLAG("json", &o->json),
	};

	memset(o, 0, sizeof(*o));
	o->rows = RB_DEFAULT_ROWS;
	o->push_s = 5;
	o->push_threads = 1;
	if (bench_default_embkvd(buf, buflen))
		o->embkvd = buf;
	if (bench_opts_parse(argc, argv, opt, sizeof(opt) / sizeof(opt[0]),
			     rb_usage))
		return -EINVAL;
	return bench_opts_finish(argc, argv, o->embkvd);
}

static int load_rows(const struct rb_opts *o, struct embkv_table_handle *t)
{
	uint64_t *keys = malloc(RB_BATCH * sizeof(*keys));
	float *rows = malloc((size_t)RB_BATCH * RB_DIM * sizeof(float));
	int err = keys && rows ? 0 : -ENOMEM;

	for (uint64_t b = 0; !err && b < o->rows; b += RB_BATCH) {
		uint32_t m = (uint32_t)(o->rows - b < RB_BATCH ? o->rows - b
							     : RB_BATCH);

		for (uint32_t j = 0; j < m; j++) {
			keys[j] = bench_key_of(b + j);
			for (uint32_t d = 0; d < RB_DIM; d++)
				rows[(size_t)j * RB_DIM + d] =
					(float)((keys[j] >> (d % 48)) & 255) *
					1e-3f;
		}
		err = embkv_assign(t, m, keys, rows);
	}
	free(keys);
	free(rows);
	return err;
}

/* ---- main -------------------------------------------------------------------- */

static int client_of(const char *addr, struct embkv_client **c)
{
	const char *addrs[1] = { addr };
	struct embkv_client_attr ca;

	embkv_client_attr_init(&ca);
	ca.servers = addrs;
	ca.nservers = 1;
	return embkv_client_create(&ca, c);
}

/* One distribution's figures. */
struct phase {
	double push_s, keys_per_s, drain_s;
	uint64_t ms[3], ups[3];    /* p50, p99, max */
	size_t samples;
};

/* Pushes the stream for o->push_s seconds while sampling the replica's
 * lag, then waits for it to drain. 0 or an error (printed). */
static int run_phase(const struct rb_opts *o, struct embkv_table_handle **ts,
		     const uint64_t *stream, struct embkv_client *rc,
		     struct phase *ph)
{
	size_t cap = (size_t)(o->push_s * 1000.0 / RB_SAMPLE_MS) + 16, ns = 0;
	uint64_t *ms = malloc(cap * sizeof(*ms));
	uint64_t *ups = malloc(cap * sizeof(*ups));
	struct bench_push_attr pa = {
		.threads = o->push_threads, .batch = RB_BATCH, .dim = RB_DIM,
		.stream = stream, .nstream = RB_STREAM,
	};
	struct bench_pushers ps;
	uint64_t keys = 0;
	double t0;
	int err = bench_pushers_init(&ps, &pa), serr;

	if (!ms || !ups || err) {
		err = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < o->push_threads; i++)
		ps.p[i].t = ts[i];
	t0 = bench_now_s();
	serr = bench_pushers_start(&ps);
	while (bench_now_s() - t0 < o->push_s && ns < cap) {
		struct lag l;

		usleep(RB_SAMPLE_MS * 1000u);
		if (lag_get(rc, &l))
			continue;
		ms[ns] = l.ms;
		ups[ns++] = l.updates;
	}
	err = bench_pushers_join(&ps);
	for (uint32_t i = 0; i < ps.started; i++)
		keys += ps.p[i].keys;
	ph->push_s = bench_now_s() - t0;
	if (err || serr) {
		err = err ? err : serr;
		fprintf(stderr, "embkv-bench: push: %s\n", embkv_strerror(err));
		goto out;
	}
	ph->drain_s = wait_caught_up(rc, RB_CATCHUP_TIMEOUT_S);
	if (ph->drain_s < 0 || !ns) {
		fprintf(stderr, "embkv-bench: the replica did not drain\n");
		err = -ETIMEDOUT;
		goto out;
	}
	qsort(ms, ns, sizeof(*ms), cmp_u64);
	qsort(ups, ns, sizeof(*ups), cmp_u64);
	ph->samples = ns;
	ph->keys_per_s = (double)keys / ph->push_s;
	ph->ms[0] = pct(ms, ns, 0.5);
	ph->ms[1] = pct(ms, ns, 0.99);
	ph->ms[2] = ms[ns - 1];
	ph->ups[0] = pct(ups, ns, 0.5);
	ph->ups[1] = pct(ups, ns, 0.99);
	ph->ups[2] = ups[ns - 1];
out:
	free(ms);
	free(ups);
	bench_pushers_free(&ps);
	return err;
}

int bench_replica_main(int argc, char **argv)
{
	char exe[4096], paddr[128], raddr[128];
	const char *rextra[] = { "--replica-of", RB_TABLE,
				 "--primary-servers", paddr, NULL };
	struct embkv_table_attr ta;
	struct embkv_client *pc = NULL, *rc = NULL;
	struct embkv_client **cs = NULL;
	struct embkv_table_handle *pt = NULL, *rt = NULL;
	struct embkv_table_handle **ts = NULL;
	static const char *const dist[2] = { "uniform", "zipf" };
	struct phase ph[2];
	uint64_t *stream = NULL;
	pid_t ppid = -1, rpid = -1;
	double t0, load_s, sync_s;
	struct rb_opts o;
	int err, status = 1, eq;

	if (rb_parse(argc, argv, &o, exe, sizeof(exe)))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	err = start_server(&o, NULL, &ppid, paddr, sizeof(paddr));
	if (!err)
		err = client_of(paddr, &pc);
	if (err) {
		fprintf(stderr, "embkv-bench: primary: %s\n",
			embkv_strerror(err));
		goto out;
	}
	embkv_table_attr_init(&ta);
	strcpy(ta.name, RB_TABLE);
	ta.dim = RB_DIM;
	ta.partitions = RB_PARTITIONS;
	ta.capacity = (uint64_t)((double)o.rows * RB_HEADROOM);
	ta.opt.type = EMBKV_OPT_SGD;
	ta.opt.lr = RB_LR;
	if ((err = embkv_table_create_remote(pc, &ta)) ||
	    (err = embkv_table_open(pc, ta.name, &pt))) {
		fprintf(stderr, "embkv-bench: table: %s\n", embkv_strerror(err));
		goto out;
	}
	t0 = bench_now_s();
	err = load_rows(&o, pt);
	load_s = bench_now_s() - t0;
	if (err) {
		fprintf(stderr, "embkv-bench: load: %s\n", embkv_strerror(err));
		goto out;
	}
	t0 = bench_now_s();
	err = start_server(&o, rextra, &rpid, raddr, sizeof(raddr));
	if (!err)
		err = client_of(raddr, &rc);
	if (err) {
		fprintf(stderr, "embkv-bench: replica: %s\n",
			embkv_strerror(err));
		goto out;
	}
	sync_s = wait_caught_up(rc, RB_CATCHUP_TIMEOUT_S);
	if (sync_s < 0) {
		fprintf(stderr, "embkv-bench: the replica did not catch up in "
			"%d s\n", RB_CATCHUP_TIMEOUT_S);
		goto out;
	}
	sync_s = bench_now_s() - t0;
	if (!o.json)
		fprintf(stderr, "embkv-bench replica: %llu rows loaded in "
			"%.1f s, the replica in sync %.1f s after its start; "
			"pushing for %.1f s with %u thread%s\n",
			(unsigned long long)o.rows, load_s, sync_s, o.push_s,
			o.push_threads, o.push_threads == 1 ? "" : "s");
	cs = calloc(o.push_threads, sizeof(*cs));
	ts = calloc(o.push_threads, sizeof(*ts));
	stream = malloc(RB_STREAM * sizeof(*stream));
	if (!cs || !ts || !stream) {
		fprintf(stderr, "embkv-bench: out of memory\n");
		goto out;
	}
	for (uint32_t i = 0; i < o.push_threads; i++) {
		if ((err = client_of(paddr, &cs[i])) ||
		    (err = embkv_table_open(cs[i], RB_TABLE, &ts[i]))) {
			fprintf(stderr, "embkv-bench: pusher: %s\n",
				embkv_strerror(err));
			goto out;
		}
	}
	for (int d = 0; d < 2; d++) {
		if (bench_stream(stream, RB_STREAM, o.rows, d ? RB_ZIPF : 0,
				 11 + (uint64_t)d)) {
			fprintf(stderr, "embkv-bench: out of memory\n");
			goto out;
		}
		for (uint32_t i = 0; i < RB_STREAM; i++)
			stream[i] = bench_key_of(stream[i]);
		if (run_phase(&o, ts, stream, rc, &ph[d]))
			goto out;
		if (!o.json)
			fprintf(stderr, "%s: push %.2f M keys/s; replica lag "
				"p50 %.3f s, p99 %.3f s, max %.3f s; updates "
				"p50 %llu, p99 %llu, max %llu (%zu samples); "
				"drained %.3f s after the pushes stopped\n",
				dist[d], ph[d].keys_per_s / 1e6,
				(double)ph[d].ms[0] / 1e3,
				(double)ph[d].ms[1] / 1e3,
				(double)ph[d].ms[2] / 1e3,
				(unsigned long long)ph[d].ups[0],
				(unsigned long long)ph[d].ups[1],
				(unsigned long long)ph[d].ups[2],
				ph[d].samples, ph[d].drain_s);
	}
	if ((err = embkv_table_open(rc, RB_TABLE, &rt))) {
		fprintf(stderr, "embkv-bench: replica table: %s\n",
			embkv_strerror(err));
		goto out;
	}
	eq = rows_equal(pt, rt, o.rows);
	if (eq < 0) {
		fprintf(stderr, "embkv-bench: compare: %s\n",
			embkv_strerror(eq));
		goto out;
	}
	if (!o.json)
		fprintf(stderr, "rows equal after the drain: %s\n",
			eq ? "yes" : "NO");
	printf("{\"rows\": %llu, \"dim\": %u, \"partitions\": %u, "
	       "\"batch\": %u, \"push_threads\": %u, \"push_s\": %.2f, "
	       "\"initial_sync_s\": %.2f",
	       (unsigned long long)o.rows, RB_DIM, RB_PARTITIONS, RB_BATCH,
	       o.push_threads, o.push_s, sync_s);
	for (int d = 0; d < 2; d++)
		printf(", \"%s\": {\"push_keys_per_s\": %.0f, \"samples\": %zu, "
		       "\"lag_s_p50\": %.3f, \"lag_s_p99\": %.3f, "
		       "\"lag_s_max\": %.3f, \"lag_updates_p50\": %llu, "
		       "\"lag_updates_p99\": %llu, \"lag_updates_max\": %llu, "
		       "\"drain_s\": %.3f}", dist[d], ph[d].keys_per_s,
		       ph[d].samples, (double)ph[d].ms[0] / 1e3,
		       (double)ph[d].ms[1] / 1e3, (double)ph[d].ms[2] / 1e3,
		       (unsigned long long)ph[d].ups[0],
		       (unsigned long long)ph[d].ups[1],
		       (unsigned long long)ph[d].ups[2], ph[d].drain_s);
	printf(", \"rows_equal\": %s}\n", eq ? "true" : "false");
	status = eq ? 0 : 1;
out:
	embkv_table_close(rt);
	embkv_table_close(pt);
	for (uint32_t i = 0; ts && i < o.push_threads; i++)
		embkv_table_close(ts[i]);
	for (uint32_t i = 0; cs && i < o.push_threads; i++)
		embkv_client_destroy(cs[i]);
	embkv_client_destroy(rc);
	embkv_client_destroy(pc);
	free(cs);
	free(ts);
	free(stream);
	if (rpid > 0) {
		kill(rpid, SIGTERM);
		waitpid(rpid, NULL, 0);
	}
	if (ppid > 0) {
		kill(ppid, SIGTERM);
		waitpid(ppid, NULL, 0);
	}
	return status;
}
