/*
 * embkv-bench, multi-table mode: a DLRM-like training step over many
 * tables (default 26 tables x 512 keys, dim 16, SGD), against N embkvd
 * servers on loopback started here, three ways:
 *
 *   multi   embkv_pull_multi + embkv_push_multi: one MULTI_PULL and one
 *           MULTI_PUSH frame per server and step
 *   async   every table's embkv_pull_async / embkv_push_async at once,
 *           then waited (the client-side parallel path: one frame per
 *           table and server, on the client's async workers)
 *   serial  embkv_pull then embkv_push, table after table
 *
 * Why: the multi requests exist to make a step cost one round trip per
 * server whatever the number of tables; this measures what that buys
 * against the per-table paths on the same servers, tables and keys.
 * Each repetition runs every variant (in turn, each repetition starting
 * with the next, so drifting load hurts all alike) for --steps steps
 * after a warm-up that inserted every row the steps touch; a step is one
 * pull of every table and one push of every table. Reported per variant: microseconds
 * per step, min / median / max over --reps repetitions.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <embkv/embkv.h>
#include "tools/bench_common.h"
#include "tools/bench_multi.h"

#define MB_MAX_SERVERS 16u
#define MB_MAX_TABLES 256u
#define MB_MAX_REPS 50u
#define MB_KEYSPACE 65536u      /* distinct keys per table */
#define MB_PARTITIONS 64u
#define MB_WARMUP 20u
#define MB_START_S 20.0
#define MB_VARIANTS 3

static const char *const variant_name[MB_VARIANTS] = { "multi", "async",
							"serial" };

struct mb_opts {
	uint32_t servers[MB_MAX_SERVERS], nserver_counts;
	uint32_t tables, keys, dim, steps, reps, threads;
	const char *embkvd;
	int only;           /* -1: every variant, else the one measured */
};

struct mb_server {
	pid_t pid;
	unsigned port;
	char addr[64];
};

static unsigned free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int start_server(const struct mb_opts *o, struct mb_server *s,
			const char *peers, uint32_t self)
{
	char listen_arg[80], self_arg[16], threads_arg[16], line[256];
	double deadline = bench_now_s() + MB_START_S;
	int pipefd[2];
	FILE *f;

	snprintf(listen_arg, sizeof(listen_arg), "tcp://127.0.0.1:%u",
		 s->port);
	snprintf(self_arg, sizeof(self_arg), "%u", self);
	snprintf(threads_arg, sizeof(threads_arg), "%u", o->threads);
	if (pipe(pipefd))
		return -errno;
	s->pid = fork();
	if (s->pid < 0)
		return -errno;
	if (s->pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		close(pipefd[0]);
		close(pipefd[1]);
		execl(o->embkvd, o->embkvd, "--listen", listen_arg, "--peers",
		      peers, "--self", self_arg, "--threads", threads_arg,
		      "--log-file", "/dev/null", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	while (f && bench_now_s() < deadline && fgets(line, sizeof(line), f))
		if (strstr(line, "embkvd: listening on ")) {
			fclose(f);
			return 0;
		}
	if (f)
		fclose(f);
	return -ETIMEDOUT;
}

static void stop_servers(struct mb_server *s, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (s[i].pid > 0)
			kill(s[i].pid, SIGTERM);
	for (uint32_t i = 0; i < n; i++)
		if (s[i].pid > 0)
			waitpid(s[i].pid, NULL, 0);
}

struct mb_run {
	const struct mb_opts *o;
	struct embkv_table_handle **t;
	uint64_t **keys;              /* per table: keys of every step */
	float **rows, *grads;
	uint8_t **found;
	struct embkv_multi_req *req;
	struct embkv_op **ops;
};

static const uint64_t *step_keys(const struct mb_run *r, uint32_t tb,
				 uint32_t step)
{
	return r->keys[tb] + (size_t)(step % (MB_WARMUP + r->o->steps)) *
				     r->o->keys;
}

static int one_step(struct mb_run *r, int variant, uint32_t step)
{
	const struct mb_opts *o = r->o;
	int rc = 0;

	if (variant == 0) {
		for (uint32_t i = 0; i < o->tables; i++)
			r->req[i] = (struct embkv_multi_req){
				r->t[i], o->keys, step_keys(r, i, step),
				r->rows[i], r->found[i], 0, 0 };
		rc = embkv_pull_multi(r->req, o->tables, EMBKV_MODE_TRAIN);
		for (uint32_t i = 0; !rc && i < o->tables; i++)
			r->req[i].rows = r->grads;
		if (!rc)
			rc = embkv_push_multi(r->req, o->tables);
		return rc;
	}
	if (variant == 1) {
		for (int push = 0; push < 2 && !rc; push++) {
			for (uint32_t i = 0; i < o->tables; i++) {
				int e = push ? embkv_push_async(
						       r->t[i], o->keys,
						       step_keys(r, i, step),
						       r->grads, &r->ops[i])
					     : embkv_pull_async(
						       r->t[i], o->keys,
						       step_keys(r, i, step),
						       r->rows[i], r->found[i],
						       EMBKV_MODE_TRAIN, NULL,
						       &r->ops[i]);
				if (e) {
					r->ops[i] = NULL;
					rc = rc ? rc : e;
				}
			}
			for (uint32_t i = 0; i < o->tables; i++)
				if (r->ops[i]) {
					int e = embkv_op_wait(r->ops[i]);

					rc = rc ? rc : e;
				}
		}
		return rc;
	}
	for (uint32_t i = 0; !rc && i < o->tables; i++)
		rc = embkv_pull(r->t[i], o->keys, step_keys(r, i, step),
				r->rows[i], r->found[i], EMBKV_MODE_TRAIN,
				NULL);
	for (uint32_t i = 0; !rc && i < o->tables; i++)
		rc = embkv_push(r->t[i], o->keys, step_keys(r, i, step),
				r->grads, NULL);
	return rc;
}

/* One server count: servers, tables, every variant --reps times. */
static int run_servers(const struct mb_opts *o, uint32_t nsrv)
{
	struct mb_server srv[MB_MAX_SERVERS];
	char peers[MB_MAX_SERVERS * 64] = "";
	const char *addrs[MB_MAX_SERVERS];
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;
	struct mb_run r = { .o = o };
	double us[MB_VARIANTS][MB_MAX_REPS];
	uint64_t seed = 0x5eed;
	int rc = 0;

	memset(srv, 0, sizeof(srv));
	for (uint32_t i = 0; i < nsrv; i++) {
		srv[i].port = free_port();
		snprintf(srv[i].addr, sizeof(srv[i].addr),
			 "tcp://127.0.0.1:%u", srv[i].port);
		addrs[i] = srv[i].addr;
		strcat(peers, i ? "," : "");
		strcat(peers, srv[i].addr);
	}
	for (uint32_t i = 0; !rc && i < nsrv; i++)
		rc = start_server(o, &srv[i], peers, i);
	if (rc) {
		fprintf(stderr, "embkv-bench: cannot start embkvd: %s\n",
			strerror(-rc));
		goto out;
	}
	embkv_client_attr_init(&ca);
	ca.servers = addrs;
	ca.nservers = nsrv;
	ca.async_threads = o->tables < 16 ? o->tables : 16;
	rc = embkv_client_create(&ca, &c);
	r.t = calloc(o->tables, sizeof(*r.t));
	r.keys = calloc(o->tables, sizeof(*r.keys));
	r.rows = calloc(o->tables, sizeof(*r.rows));
	r.found = calloc(o->tables, sizeof(*r.found));
	r.req = calloc(o->tables, sizeof(*r.req));
	r.ops = calloc(o->tables, sizeof(*r.ops));
	r.grads = calloc((size_t)o->keys * o->dim, sizeof(float));
	if (!rc && (!r.t || !r.keys || !r.rows || !r.found || !r.req ||
		    !r.ops || !r.grads))
		rc = -ENOMEM;
	for (size_t i = 0; r.grads && i < (size_t)o->keys * o->dim; i++)
		r.grads[i] = 1e-3f * (float)(i % 7);
	for (uint32_t i = 0; !rc && i < o->tables; i++) {
		struct embkv_table_attr a;
		size_t nk = (size_t)(MB_WARMUP + o->steps) * o->keys;

		embkv_table_attr_init(&a);
		snprintf(a.name, sizeof(a.name), "mb%u", i);
		a.dim = o->dim;
		a.partitions = MB_PARTITIONS;
		a.capacity = 2 * MB_KEYSPACE;
		a.opt.type = EMBKV_OPT_SGD;
		a.opt.lr = 0.01f;
		rc = embkv_table_create_remote(c, &a);
		if (rc == EMBKV_ETABLEEXISTS)
			rc = 0;
		if (!rc)
			rc = embkv_table_open(c, a.name, &r.t[i]);
		r.keys[i] = malloc(nk * sizeof(uint64_t));
		r.rows[i] = malloc((size_t)o->keys * o->dim * sizeof(float));
		r.found[i] = malloc(o->keys);
		if (!rc && (!r.keys[i] || !r.rows[i] || !r.found[i]))
			rc = -ENOMEM;
		for (size_t k = 0; !rc && k < nk; k++) {
			seed = seed * 6364136223846793005ull +
			       1442695040888963407ull;
			r.keys[i][k] = bench_key_of((seed >> 33) % MB_KEYSPACE +
						    (uint64_t)i * MB_KEYSPACE);
		}
	}
	/* warm-up: every row of every step exists (no variant pays for
	 * inserting and faulting in fresh rows), connections open, workers
	 * started */
	for (uint32_t s = 0; !rc && s < MB_WARMUP + o->steps; s++)
		rc = one_step(&r, 2, s);
	for (int v = 0; !rc && v < MB_VARIANTS; v++)
		for (uint32_t s = 0; !rc && s < MB_WARMUP; s++)
			rc = one_step(&r, v, s);
	/* each repetition starts with another variant */
	for (uint32_t rep = 0; !rc && rep < o->reps; rep++)
		for (int k = 0; !rc && k < MB_VARIANTS; k++) {
			int v = (int)((rep + (uint32_t)k) % MB_VARIANTS);
			double t0 = bench_now_s();

			if (o->only >= 0 && v != o->only) {
				us[v][rep] = 0;
				continue;
			}

			for (uint32_t s = 0; !rc && s < o->steps; s++)
				rc = one_step(&r, v, MB_WARMUP + s);
			us[v][rep] = (bench_now_s() - t0) * 1e6 / o->steps;
		}
	if (rc) {
		fprintf(stderr, "embkv-bench: multi: %s\n", embkv_strerror(rc));
		goto out;
	}
	for (int v = 0; v < MB_VARIANTS; v++) {
		qsort(us[v], o->reps, sizeof(double), bench_cmp_double);
		printf("servers %u  tables %u  keys %u  dim %u  %-6s  us/step "
		       "min %9.1f  median %9.1f  max %9.1f\n", nsrv, o->tables,
		       o->keys, o->dim, variant_name[v], us[v][0],
		       us[v][o->reps / 2], us[v][o->reps - 1]);
	}
	printf("servers %u  multi vs async: %.2fx, vs serial: %.2fx (medians)"
	       "\n", nsrv, us[1][o->reps / 2] / us[0][o->reps / 2],
	       us[2][o->reps / 2] / us[0][o->reps / 2]);
	fflush(stdout);
out:
	for (uint32_t i = 0; r.t && i < o->tables; i++) {
		embkv_table_close(r.t[i]);
		free(r.keys ? r.keys[i] : NULL);
		free(r.rows ? r.rows[i] : NULL);
		free(r.found ? r.found[i] : NULL);
	}
	free(r.t);
	free(r.keys);
	free(r.rows);
	free(r.found);
	free(r.req);
	free(r.ops);
	free(r.grads);
	embkv_client_destroy(c);
	stop_servers(srv, nsrv);
	return rc ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: embkv-bench --mode multi [--servers N[,N...]] "
		"[--tables T] [--keys K]\n"
		"       [--dim D] [--steps S] [--reps R] [--threads T] "
		"[--embkvd PATH]\n"
		"  a training step (pull then push of every table) three "
		"ways: multi (one\n"
		"  MULTI_PULL/MULTI_PUSH frame per server), async (per-table "
		"frames at once),\n"
		"  serial (table after table); us per step, min/median/max "
		"over R reps.\n"
		"  Defaults: --servers 1,4 --tables 26 --keys 512 --dim 16 "
		"--steps 200 --reps 3\n"
		"  --threads 1 (owner threads per embkvd) --embkvd "
		"build/server/embkvd\n");
}

/* usage() says it on stderr, for --help too, as it always has. */
static void mb_usage(FILE *f)
{
	(void)f;
	usage();
}

/* --mode again, other than multi: the usage. */
static int parse_mode(const char *arg, void *ptr)
{
	(void)ptr;
	if (strcmp(arg, "multi")) {
		usage();
		return 1;
	}
	return 0;
}

/* --servers N[,N...]: server counts, each run in turn. */
static int parse_servers(const char *arg, void *ptr)
{
	struct mb_opts *o = ptr;
	char *copy = strdup(arg), *tok, *save = NULL, *end;
	int rc = 0;

	o->nserver_counts = 0;
	for (tok = strtok_r(copy, ",", &save); tok && !rc;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned long x = strtoul(tok, &end, 10);

		if (o->nserver_counts == MB_MAX_SERVERS || !*tok || *end ||
		    x < 1 || x > MB_MAX_SERVERS)
			rc = -1;
		else
			o->servers[o->nserver_counts++] = (uint32_t)x;
	}
	free(copy);
	if (rc || !o->nserver_counts) {
		fprintf(stderr, "embkv-bench: --servers %s: counts from 1 to %u, "
			"comma-separated\n", arg, MB_MAX_SERVERS);
		return 1;
	}
	return 0;
}

/* --only VARIANT: one of variant_name. */
static int parse_only(const char *arg, void *ptr)
{
	struct mb_opts *o = ptr;

	for (o->only = 0; o->only < MB_VARIANTS &&
	     strcmp(arg, variant_name[o->only]); o->only++)
		;
	return o->only == MB_VARIANTS ? -1 : 0;
}

int bench_multi_main(int argc, char **argv)
{
	struct mb_opts o = {
		.servers = { 1, 4 }, .nserver_counts = 2, .tables = 26,
		.keys = 512, .dim = 16, .steps = 200, .reps = 3, .threads = 1,
		.embkvd = "build/server/embkvd", .only = -1,
	};
	const unsigned nn = BENCH_OPT_DEC | BENCH_OPT_NONAME;
	const struct bench_opt opt[] = {
		BENCH_CUSTOM("mode", parse_mode, NULL, 0),
		BENCH_CUSTOM("servers", parse_servers, &o, 0),
		BENCH_U32("tables", &o.tables, 1, MB_MAX_TABLES, nn),
		BENCH_U32("keys", &o.keys, 1, 1u << 16, nn),
		BENCH_U32("dim", &o.dim, 1, EMBKV_MAX_DIM, nn),
		BENCH_U32("steps", &o.steps, 1, 1u << 20, nn),
		BENCH_U32("reps", &o.reps, 1, MB_MAX_REPS, nn),
		BENCH_U32("threads", &o.threads, 1, 64, nn),
		BENCH_STR("embkvd", &o.embkvd),
		BENCH_CUSTOM("only", parse_only, &o, BENCH_OPT_NONAME),
	};
	int rc = 0;

	if (bench_opts_parse(argc, argv, opt, sizeof(opt) / sizeof(opt[0]),
			     mb_usage))
		return 2;
	if (bench_opts_finish(argc, argv, o.embkvd))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	for (uint32_t i = 0; i < o.nserver_counts && !rc; i++)
		rc = run_servers(&o, o.servers[i]);
	return rc;
}
