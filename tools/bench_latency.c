/*
 * embkv-bench, latency mode (issue 16, "latency for inference pods"): the
 * tail latency of infer-mode pulls, embkv beside Redis and memcached in
 * the same run, on loopback TCP.
 *
 * What: starts one embkvd, and redis-server and memcached when they are
 * installed (each on 127.0.0.1 with a free port, persistence off; a
 * missing binary is said and its column skipped), loads the same --rows
 * rows (dim 64 fp32, 256 bytes; the same values) into all three, then for
 * every cell (64 and 256 keys a request) x (1 and 16 concurrent clients)
 * measures each system in turn (the order rotates per run): every client
 * is a thread with a connection of its own (an embkv_client, a Redis
 * connection doing one MGET per request, a memcached connection doing one
 * multi-get), issuing requests back to back for uniformly drawn keys; the
 * time of each request is recorded, and p50, p99 and p99.9 are taken over
 * every request of every client (nearest rank). --runs repeats the whole
 * set; every figure is reported as min / median / max over the runs, and
 * the ratios embkv p99 / Redis p99 and / memcached p99 per run likewise.
 * The bar: the p99 of a 256-key pull at 16 clients no higher than Redis's
 * in the same run; how many runs met it is reported.
 *
 * The Redis and memcached clients are hiredis and libmemcached when they
 * were found at configure time (EMBKV_HAVE_HIREDIS, _LIBMEMCACHED: the
 * stock clients a service would use), else (or with --own-clients)
 * embkv-bench's own pipelined ones (tools/bench_kv.c), which allocate
 * nothing per reply; which ones ran is printed. Loading always uses
 * bench_kv.c's pipelined MSET and sets (load time is not measured).
 *
 * Invariant: nothing is timed that was not checked. The first request of
 * every client in every cell is checked row by row against the values
 * loaded (every key found), and any miss or mismatch fails the run: a
 * fast wrong answer never counts.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <embkv/embkv.h>
#include "tools/bench_common.h"
#include "tools/bench_kv.h"
#include "tools/bench_latency.h"
#ifdef EMBKV_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif
#ifdef EMBKV_HAVE_LIBMEMCACHED
#include <libmemcached/memcached.h>
#endif

#define LT_DIM 64u
#define LT_PARTITIONS 64u
#define LT_DEFAULT_ROWS 1000000ull
#define LT_DEFAULT_REQUESTS 8000u
#define LT_DEFAULT_RUNS 3u
#define LT_MAX_RUNS 20u
#define LT_MAX_CLIENTS 16u
#define LT_LOAD_BATCH 4096u
#define LT_WARMUP 20u
#define LT_START_TIMEOUT_S 20
#define LT_HEADROOM 1.3   /* no partition may fill: nothing is evicted */
#define LT_NCELLS 4u

static const uint32_t cell_keys[LT_NCELLS] = { 64, 256, 64, 256 };
static const uint32_t cell_clients[LT_NCELLS] = { 1, 1, 16, 16 };

enum lt_sys { LT_EMBKV, LT_REDIS, LT_MEMC, LT_NSYS };
static const char *const sys_name[LT_NSYS] = { "embkv", "redis",
					       "memcached" };

struct lt_opts {
	uint64_t rows;
	uint32_t requests, runs, threads, io_threads;
	const char *embkvd;
	int json, no_redis, no_memc, own_clients;
};

struct proc {
	pid_t pid;
	unsigned port;
	char dir[64];
};

/* One client's connection to each system: the stock client library's
 * when built in and not --own-clients, else bench_kv.c's. */
struct lt_conn {
	struct embkv_client *client;
	struct embkv_table_handle *table;
	struct bench_kv redis_own, memc_own;
#ifdef EMBKV_HAVE_HIREDIS
	redisContext *redis;
#endif
#ifdef EMBKV_HAVE_LIBMEMCACHED
	memcached_st *memc;
#endif
};

struct lt_ctx {
	const struct lt_opts *o;
	char embkv_addr[64];
	unsigned redis_port, memc_port;
	int have[LT_NSYS];
	int redis_lib, memc_lib;   /* hiredis, libmemcached in use */
	struct lt_conn conn[LT_MAX_CLIENTS];
	pthread_barrier_t barrier;
};

/* One client thread of one cell. */
struct lt_worker {
	struct lt_ctx *ctx;
	struct lt_conn *conn;
	enum lt_sys sys;
	uint32_t keys, requests;
	uint64_t seed;
	double *lat_us;            /* requests entries */
	int err;
	char why[160];
};

/* ---- values ------------------------------------------------------------- */

static void row_values(uint64_t key, float *row)
{
	for (uint32_t d = 0; d < LT_DIM; d++)
		row[d] = (float)((key >> (d % 48)) & 255) * 1e-3f +
			 (float)d * 1e-5f;
}

/* ---- processes ---------------------------------------------------------- */

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

/* The path of an executable called name on $PATH or in /usr/sbin and
 * /usr/bin, into buf; 0 or -ENOENT. */
static int find_exe(const char *name, char *buf, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096];

	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/usr/bin:/sbin:/bin",
		 path ? path : "");
	for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		if (!*d)
			continue;
		snprintf(buf, len, "%s/%s", d, name);
		if (access(buf, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

/* Runs argv with stdout and stderr to /dev/null (or to a pipe, *out). */
static pid_t spawn(char *const argv[], FILE **out)
{
	int pipefd[2] = { -1, -1 };
	pid_t pid;

	if (out && pipe(pipefd))
		return -1;
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (out) {
			dup2(pipefd[1], STDOUT_FILENO);
			close(pipefd[0]);
			close(pipefd[1]);
		} else if (null >= 0) {
			dup2(null, STDOUT_FILENO);
		}
		if (null >= 0)
			dup2(null, STDERR_FILENO); /* the servers' logs */
		execv(argv[0], argv);
		_exit(127);
	}
	if (out) {
		close(pipefd[1]);
		*out = pid > 0 ? fdopen(pipefd[0], "r") : NULL;
		if (!*out)
			close(pipefd[0]);
	}
	return pid;
}

static void stop(struct proc *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGTERM);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
	if (p->dir[0]) {
		char path[128];

		snprintf(path, sizeof(path), "%s/dump.rdb", p->dir);
		unlink(path);
		rmdir(p->dir);
		p->dir[0] = 0;
	}
}

/* Connects to 127.0.0.1:port until it answers or the deadline passes. */
static int wait_port(unsigned port, pid_t pid)
{
	double deadline = bench_now_s() + LT_START_TIMEOUT_S;

	while (bench_now_s() < deadline) {
		struct bench_kv kv;

		if (bench_kv_connect(&kv, "127.0.0.1", port) == 0) {
			bench_kv_close(&kv);
			return 0;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -ECHILD;
		usleep(20000);
	}
	return -ETIMEDOUT;
}

static int start_embkvd(const struct lt_opts *o, struct proc *p, char *addr,
			size_t addrlen)
{
	const char *tag = "embkvd: listening on ";
	char threads[16], io[16], line[256];
	char *argv[] = { (char *)o->embkvd, "--listen", "tcp://127.0.0.1:0",
			 "--threads", threads, "--io-threads", io, NULL };
	double deadline = bench_now_s() + LT_START_TIMEOUT_S;
	FILE *f = NULL;

	snprintf(threads, sizeof(threads), "%u", o->threads);
	snprintf(io, sizeof(io), "%u", o->io_threads);
	p->pid = spawn(argv, &f);
	if (p->pid < 0 || !f)
		return -errno;
	while (bench_now_s() < deadline && fgets(line, sizeof(line), f)) {
		char *s = strstr(line, tag);

		if (s) {
			s += strlen(tag);
			s[strcspn(s, "\r\n")] = 0;
			snprintf(addr, addrlen, "%s", s);
			fclose(f); /* later output goes to a closed pipe */
			return 0;
		}
	}
	fclose(f);
	return -ETIMEDOUT;
}

static int start_redis(const char *exe, struct proc *p)
{
	char port[16], *argv[16];
	int i = 0;

	snprintf(p->dir, sizeof(p->dir), "/tmp/embkv-bench-redis-XXXXXX");
	if (!mkdtemp(p->dir)) {
		p->dir[0] = 0;
		return -errno;
	}
	p->port = free_port();
	snprintf(port, sizeof(port), "%u", p->port);
	argv[i++] = (char *)exe;
	argv[i++] = "--port";
	argv[i++] = port;
	argv[i++] = "--bind";
	argv[i++] = "127.0.0.1";
	argv[i++] = "--save";
	argv[i++] = "";
	argv[i++] = "--appendonly";
	argv[i++] = "no";
	argv[i++] = "--dir";
	argv[i++] = p->dir;
	argv[i] = NULL;
	p->pid = spawn(argv, NULL);
	return p->pid < 0 ? -errno : wait_port(p->port, p->pid);
}

static int start_memc(const char *exe, const struct lt_opts *o,
		      struct proc *p)
{
	char port[16], mb[24], *argv[16];
	int i = 0;
	/* 256-byte values in 304-byte slab chunks, plus headroom */
	uint64_t need = (o->rows * 400u >> 20) + 64u;

	p->port = free_port();
	snprintf(port, sizeof(port), "%u", p->port);
	snprintf(mb, sizeof(mb), "%" PRIu64, need);
	argv[i++] = (char *)exe;
	argv[i++] = "-l";
	argv[i++] = "127.0.0.1";
	argv[i++] = "-p";
	argv[i++] = port;
	argv[i++] = "-U";
	argv[i++] = "0";
	argv[i++] = "-m";
	argv[i++] = mb;
	argv[i++] = "-c";
	argv[i++] = "256";
	if (geteuid() == 0) {
		argv[i++] = "-u";
		argv[i++] = "root";
	}
	argv[i] = NULL;
	p->pid = spawn(argv, NULL);
	return p->pid < 0 ? -errno : wait_port(p->port, p->pid);
}

/* ---- connections and requests ------------------------------------------- */

static int conn_open(struct lt_ctx *x, struct lt_conn *c)
{
	struct embkv_client_attr ca;
	int err;

	const char *addr = x->embkv_addr;

	embkv_client_attr_init(&ca);
	ca.servers = &addr;
	ca.nservers = 1;
	err = embkv_client_create(&ca, &c->client);
	if (!err)
		err = embkv_table_open(c->client, "lat", &c->table);
	if (err)
		return err;
	c->redis_own.fd = c->memc_own.fd = -1;
	if (x->have[LT_REDIS] && x->redis_lib) {
#ifdef EMBKV_HAVE_HIREDIS
		c->redis = redisConnect("127.0.0.1", (int)x->redis_port);
		if (!c->redis || c->redis->err)
			return -ECONNREFUSED;
#endif
	} else if (x->have[LT_REDIS]) {
		err = bench_kv_connect(&c->redis_own, "127.0.0.1",
				       x->redis_port);
		if (err)
			return err;
	}
	if (x->have[LT_MEMC] && x->memc_lib) {
#ifdef EMBKV_HAVE_LIBMEMCACHED
		c->memc = memcached_create(NULL);
		if (!c->memc ||
		    memcached_server_add(c->memc, "127.0.0.1",
					 (in_port_t)x->memc_port) !=
			    MEMCACHED_SUCCESS ||
		    memcached_behavior_set(c->memc,
					   MEMCACHED_BEHAVIOR_TCP_NODELAY, 1) !=
			    MEMCACHED_SUCCESS)
			return -ECONNREFUSED;
#endif
	} else if (x->have[LT_MEMC]) {
		err = bench_kv_connect(&c->memc_own, "127.0.0.1", x->memc_port);
		if (err)
			return err;
	}
	return 0;
}

static void conn_close(struct lt_conn *c)
{
	if (c->table)
		embkv_table_close(c->table);
	embkv_client_destroy(c->client);
#ifdef EMBKV_HAVE_HIREDIS
	if (c->redis)
		redisFree(c->redis);
#endif
#ifdef EMBKV_HAVE_LIBMEMCACHED
	if (c->memc)
		memcached_free(c->memc);
#endif
	if (c->redis_own.rx)
		bench_kv_close(&c->redis_own);
	if (c->memc_own.rx)
		bench_kv_close(&c->memc_own);
	memset(c, 0, sizeof(*c));
}

#ifdef EMBKV_HAVE_HIREDIS
/* One MGET of n binary keys (hiredis); rows into out, found[i]. */
static int redis_mget(redisContext *rc, uint32_t n, const uint64_t *keys,
		      float *out, uint8_t *found, const char **argv,
		      size_t *argl)
{
	size_t row = LT_DIM * sizeof(float);
	redisReply *r;
	int err = 0;

	argv[0] = "MGET";
	argl[0] = 4;
	for (uint32_t i = 0; i < n; i++) {
		argv[i + 1] = (const char *)&keys[i];
		argl[i + 1] = sizeof(keys[i]);
	}
	r = redisCommandArgv(rc, (int)n + 1, argv, argl);
	if (!r)
		return -EIO;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
		freeReplyObject(r);
		return -EPROTO;
	}
	for (uint32_t i = 0; i < n && !err; i++) {
		const redisReply *e = r->element[i];

		found[i] = e->type == REDIS_REPLY_STRING;
		if (found[i] && e->len == row)
			memcpy(out + (size_t)i * LT_DIM, e->str, row);
		else if (found[i])
			err = -EPROTO;
	}
	freeReplyObject(r);
	return err;
}
#endif

#ifdef EMBKV_HAVE_LIBMEMCACHED
/* One multi-get of n hex keys (libmemcached); misses are absent. */
static int memc_mget(memcached_st *m, uint32_t n, const uint64_t *keys,
		     float *out, uint8_t *found, char (*hk)[17],
		     const char **kp, size_t *kl)
{
	size_t row = LT_DIM * sizeof(float);
	memcached_return_t rc;
	memcached_result_st *res;
	uint32_t next = 0;

	for (uint32_t i = 0; i < n; i++) {
		snprintf(hk[i], 17, "%016" PRIx64, keys[i]);
		kp[i] = hk[i];
		kl[i] = 16;
	}
	memset(found, 0, n);
	rc = memcached_mget(m, kp, kl, n);
	if (rc != MEMCACHED_SUCCESS)
		return -EIO;
	while ((res = memcached_fetch_result(m, NULL, &rc))) {
		const char *k = memcached_result_key_value(res);
		size_t klen = memcached_result_key_length(res);
		uint32_t j = next;

		/* hits come in request order; find the key from there */
		while (j < n && (klen != 16 || memcmp(hk[j], k, 16)))
			j++;
		if (j == n || memcached_result_length(res) != row) {
			memcached_result_free(res);
			return -EPROTO;
		}
		memcpy(out + (size_t)j * LT_DIM, memcached_result_value(res),
		       row);
		found[j] = 1;
		next = j + 1;
		memcached_result_free(res);
	}
	return rc == MEMCACHED_END || rc == MEMCACHED_SUCCESS ||
	       rc == MEMCACHED_NOTFOUND ? 0 : -EIO;
}
#endif

/* Scratch of one worker for the library clients' argument arrays. */
struct lt_scratch {
	const char **argv;
	size_t *argl;
	char (*hk)[17];
};

static int request(struct lt_worker *w, struct lt_scratch *s, uint32_t n,
		   const uint64_t *keys, float *out, uint8_t *found)
{
	struct lt_conn *c = w->conn;

	(void)s;
	switch (w->sys) {
	case LT_EMBKV:
		return embkv_pull(c->table, n, keys, out, found,
				  EMBKV_MODE_INFER, NULL);
	case LT_REDIS:
#ifdef EMBKV_HAVE_HIREDIS
		if (w->ctx->redis_lib)
			return redis_mget(c->redis, n, keys, out, found,
					  s->argv, s->argl);
#endif
		return bench_redis_mget(&c->redis_own, n, keys, out, LT_DIM,
					found);
	default:
#ifdef EMBKV_HAVE_LIBMEMCACHED
		if (w->ctx->memc_lib)
			return memc_mget(c->memc, n, keys, out, found, s->hk,
					 s->argv, s->argl);
#endif
		return bench_memc_get(&c->memc_own, n, keys, out, LT_DIM,
				      found);
	}
}

/* Every row of one reply against the values loaded. */
static int check_rows(struct lt_worker *w, uint32_t n, const uint64_t *keys,
		      const float *out, const uint8_t *found)
{
	float want[LT_DIM];

	for (uint32_t i = 0; i < n; i++) {
		if (!found[i]) {
			snprintf(w->why, sizeof(w->why), "%s: key %016" PRIx64
				 " not found", sys_name[w->sys], keys[i]);
			return -ENOENT;
		}
		row_values(keys[i], want);
		if (memcmp(want, out + (size_t)i * LT_DIM, sizeof(want))) {
			snprintf(w->why, sizeof(w->why), "%s: key %016" PRIx64
				 " has other values than were loaded",
				 sys_name[w->sys], keys[i]);
			return -EPROTO;
		}
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct lt_worker *w = arg;
	uint32_t n = w->keys;
	uint64_t *keys = malloc(n * sizeof(*keys)), seed = w->seed;
	float *out = aligned_alloc(64, (size_t)n * LT_DIM * sizeof(float));
	uint8_t *found = malloc(n);
	struct lt_scratch s = {
		.argv = malloc((n + 1) * sizeof(*s.argv)),
		.argl = malloc((n + 1) * sizeof(*s.argl)),
		.hk = malloc(n * sizeof(*s.hk)),
	};

	w->err = keys && out && found && s.argv && s.argl && s.hk ? 0
								 : -ENOMEM;
	pthread_barrier_wait(&w->ctx->barrier);
	for (uint32_t r = 0; !w->err && r < LT_WARMUP + w->requests; r++) {
		struct timespec t0, t1;

		for (uint32_t i = 0; i < n; i++)
			keys[i] = bench_key_of(bench_rng_next(&seed) %
					       w->ctx->o->rows);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		w->err = request(w, &s, n, keys, out, found);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (w->err) {
			snprintf(w->why, sizeof(w->why), "%s: request: %s",
				 sys_name[w->sys], embkv_strerror(w->err));
			break;
		}
		if (r == 0)
			w->err = check_rows(w, n, keys, out, found);
		if (r >= LT_WARMUP)
			w->lat_us[r - LT_WARMUP] =
				(double)(t1.tv_sec - t0.tv_sec) * 1e6 +
				(double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
	}
	free(keys);
	free(out);
	free(found);
	free(s.argv);
	free(s.argl);
	free(s.hk);
	return NULL;
}

/* ---- statistics --------------------------------------------------------- */

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least q of the samples at or
 * below it. v sorted. */
static double quantile(const double *v, size_t n, double q)
{
	size_t r = (size_t)ceil(q * (double)n);

	return v[r ? r - 1 : 0];
}

/* [0] min, [1] median, [2] max of n values. */
static void spread(const double *v, uint32_t n, double out[3])
{
	double t[LT_MAX_RUNS];

	memcpy(t, v, n * sizeof(*v));
	qsort(t, n, sizeof(*t), dbl_cmp);
	out[0] = t[0];
	out[1] = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
	out[2] = t[n - 1];
}

enum { Q50, Q99, Q999, NQ };
static const double qs[NQ] = { 0.50, 0.99, 0.999 };
static const char *const qname[NQ] = { "p50_us", "p99_us", "p999_us" };

/* Measures one system in one cell: q[NQ] over all clients' requests. */
static int measure(struct lt_ctx *x, enum lt_sys sys, uint32_t cell,
		   uint32_t run, double q[NQ])
{
	uint32_t nc = cell_clients[cell];
	uint32_t per = (x->o->requests + nc - 1) / nc;
	struct lt_worker w[LT_MAX_CLIENTS];
	pthread_t th[LT_MAX_CLIENTS];
	double *all = malloc((size_t)per * nc * sizeof(*all));
	int err = all ? 0 : -ENOMEM;
	uint32_t started = 0;

	memset(w, 0, sizeof(w));
	if (err || pthread_barrier_init(&x->barrier, NULL, nc)) {
		free(all);
		return -ENOMEM;
	}
	for (uint32_t i = 0; !err && i < nc; i++) {
		w[i] = (struct lt_worker){ .ctx = x, .conn = &x->conn[i],
			.sys = sys, .keys = cell_keys[cell], .requests = per,
			.seed = 0x1000u * (run + 1) + 16u * cell + i,
			.lat_us = all + (size_t)i * per };
		if (pthread_create(&th[i], NULL, worker_main, &w[i]))
			err = -EAGAIN;
		else
			started++;
	}
	if (err) {
		/* the barrier would never open for the threads started */
		fprintf(stderr, "embkv-bench: cannot start %u client threads\n",
			nc);
		exit(1);
	}
	for (uint32_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&x->barrier);
	for (uint32_t i = 0; !err && i < nc; i++)
		if (w[i].err) {
			err = w[i].err;
			fprintf(stderr, "embkv-bench: %s\n", w[i].why[0] ?
				w[i].why : embkv_strerror(err));
		}
	if (!err) {
		qsort(all, (size_t)per * nc, sizeof(*all), dbl_cmp);
		for (int k = 0; k < NQ; k++)
			q[k] = quantile(all, (size_t)per * nc, qs[k]);
	}
	free(all);
	return err;
}

/* ---- load --------------------------------------------------------------- */

static int load(struct lt_ctx *x)
{
	struct embkv_table_handle *t = x->conn[0].table;
	uint64_t *keys = malloc(LT_LOAD_BATCH * sizeof(*keys));
	float *rows = malloc((size_t)LT_LOAD_BATCH * LT_DIM * sizeof(float));
	struct bench_kv redis = { .fd = -1 }, memc = { .fd = -1 };
	int err = keys && rows ? 0 : -ENOMEM;
	double t0 = bench_now_s();

	if (!err && x->have[LT_REDIS])
		err = bench_kv_connect(&redis, "127.0.0.1", x->redis_port);
	if (!err && x->have[LT_MEMC])
		err = bench_kv_connect(&memc, "127.0.0.1", x->memc_port);
	for (uint64_t b = 0; !err && b < x->o->rows; b += LT_LOAD_BATCH) {
		uint32_t m = (uint32_t)(x->o->rows - b < LT_LOAD_BATCH
					? x->o->rows - b : LT_LOAD_BATCH);

		for (uint32_t j = 0; j < m; j++) {
			keys[j] = bench_key_of(b + j);
			row_values(keys[j], rows + (size_t)j * LT_DIM);
		}
		err = embkv_assign(t, m, keys, rows);
		if (!err && x->have[LT_REDIS])
			err = bench_redis_mset(&redis, m, keys, rows, LT_DIM);
		if (!err && x->have[LT_MEMC])
			err = bench_memc_set(&memc, m, keys, rows, LT_DIM);
	}
	if (!err && !x->o->json)
		fprintf(stderr, "load: %" PRIu64 " rows into each system in "
			"%.1f s\n", x->o->rows, bench_now_s() - t0);
	if (redis.fd >= 0)
		bench_kv_close(&redis);
	if (memc.fd >= 0)
		bench_kv_close(&memc);
	free(keys);
	free(rows);
	return err;
}

static int create_table(struct lt_ctx *x)
{
	struct embkv_client_attr ca;
	struct embkv_client *c;
	struct embkv_table_attr a;
	int err;

	const char *addr = x->embkv_addr;

	embkv_client_attr_init(&ca);
	ca.servers = &addr;
	ca.nservers = 1;
	err = embkv_client_create(&ca, &c);
	if (err)
		return err;
	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "lat");
	a.dim = LT_DIM;
	a.partitions = LT_PARTITIONS;
	a.capacity = (uint64_t)((double)x->o->rows * LT_HEADROOM) + 1024;
	err = embkv_table_create_remote(c, &a);
	embkv_client_destroy(c);
	return err;
}

/* ---- options ------------------------------------------------------------ */

static void lt_usage(FILE *f)
{
	fprintf(f,
"usage: embkv-bench --mode latency [options]\n"
"p50, p99 and p99.9 of infer-mode pulls of 64 and 256 keys from 1 and 16\n"
"concurrent clients, one embkvd beside Redis (MGET) and memcached\n"
"(multi-get) on loopback, all started here on free ports; a server binary\n"
"that is not installed is said and its column skipped.\n"
"  --rows N          rows loaded into each system, dim 64 fp32 (default %llu)\n"
"  --requests N      requests per cell and system, over all its clients\n"
"                    (default %u)\n"
"  --runs R          repetitions; figures are min/median/max (default %u)\n"
"  --threads N       embkvd owner threads (default 2)\n"
"  --io-threads N    embkvd I/O threads (default 2)\n"
"  --no-redis, --no-memcached  leave that column out\n"
"  --embkvd PATH     the embkvd binary (default: beside this one)\n"
"  --own-clients     Redis and memcached through embkv-bench's own\n"
"                    pipelined clients (tools/bench_kv.c) even where\n"
"                    hiredis and libmemcached are built in\n"
"  --json            one JSON object on stdout\n"
"Built-in clients: %s for Redis, %s for memcached.\n",
		(unsigned long long)LT_DEFAULT_ROWS, LT_DEFAULT_REQUESTS,
		LT_DEFAULT_RUNS,
#ifdef EMBKV_HAVE_HIREDIS
		"hiredis",
#else
		"embkv-bench's own (built without hiredis)",
#endif
#ifdef EMBKV_HAVE_LIBMEMCACHED
		"libmemcached"
#else
		"embkv-bench's own (built without libmemcached)"
#endif
		);
}

static int lt_parse(int argc, char **argv, struct lt_opts *o, char *buf,
		    size_t buflen)
{
	const struct bench_opt opt[] = {
		BENCH_IGNORE("mode"),
		BENCH_U64("rows", &o->rows, 1000, 1ull << 30, BENCH_OPT_DEC),
		BENCH_U32("requests", &o->requests, LT_MAX_CLIENTS, 10000000,
			  BENCH_OPT_DEC),
		BENCH_U32("runs", &o->runs, 1, LT_MAX_RUNS, BENCH_OPT_DEC),
		BENCH_U32("threads", &o->threads, 1, 64, BENCH_OPT_DEC),
		BENCH_U32("io-threads", &o->io_threads, 1, 64, BENCH_OPT_DEC),
		BENCH_FLAG("no-redis", &o->no_redis),
		BENCH_FLAG("no-memcached", &o->no_memc),
		BENCH_FLAG("own-clients", &o->own_clients),
		BENCH_STR("embkvd", &o->embkvd),
		BENCH_FLAG("json", &o->json),
	};

	memset(o, 0, sizeof(*o));
	o->rows = LT_DEFAULT_ROWS;
	o->requests = LT_DEFAULT_REQUESTS;
	o->runs = LT_DEFAULT_RUNS;
	o->threads = 2;
	o->io_threads = 2;
	if (bench_default_embkvd(buf, buflen))
		o->embkvd = buf;
	if (bench_opts_parse(argc, argv, opt, sizeof(opt) / sizeof(opt[0]),
			     lt_usage))
		return -EINVAL;
	return bench_opts_finish(argc, argv, o->embkvd);
}

/* ---- report ------------------------------------------------------------- */

/* per run: q[run][cell][sys][NQ] */
typedef double lt_q[LT_NCELLS][LT_NSYS][NQ];

static void print_json(const struct lt_ctx *x, const lt_q *q,
		       const char *skipped)
{
	const struct lt_opts *o = x->o;
	uint32_t met = 0, R = o->runs;
	double v[LT_MAX_RUNS], s[3];

	printf("{\"mode\": \"latency\", \"rows\": %" PRIu64 ", \"dim\": %u, "
	       "\"requests\": %u, \"runs\": %u, \"embkvd_threads\": %u, "
	       "\"embkvd_io_threads\": %u, \"redis_client\": \"%s\", "
	       "\"memcached_client\": \"%s\", \"skipped\": \"%s\", "
	       "\"cells\": [", o->rows, LT_DIM, o->requests, R, o->threads,
	       o->io_threads, x->redis_lib ? "hiredis" : "bench_kv",
	       x->memc_lib ? "libmemcached" : "bench_kv", skipped);
	for (uint32_t c = 0; c < LT_NCELLS; c++) {
		printf("%s{\"keys\": %u, \"clients\": %u", c ? ", " : "",
		       cell_keys[c], cell_clients[c]);
		for (int sy = 0; sy < LT_NSYS; sy++) {
			if (!x->have[sy])
				continue;
			printf(", \"%s\": {", sys_name[sy]);
			for (int k = 0; k < NQ; k++) {
				for (uint32_t r = 0; r < R; r++)
					v[r] = q[r][c][sy][k];
				spread(v, R, s);
				printf("%s\"%s\": [%.1f, %.1f, %.1f]",
				       k ? ", " : "", qname[k], s[0], s[1],
				       s[2]);
			}
			printf("}");
		}
		for (int sy = LT_REDIS; sy < LT_NSYS; sy++) {
			if (!x->have[sy])
				continue;
			for (uint32_t r = 0; r < R; r++)
				v[r] = q[r][c][LT_EMBKV][Q99] /
				       q[r][c][sy][Q99];
			spread(v, R, s);
			printf(", \"p99_vs_%s\": [%.3f, %.3f, %.3f]",
			       sys_name[sy], s[0], s[1], s[2]);
		}
		printf("}");
	}
	printf("]");
	if (x->have[LT_REDIS]) {
		for (uint32_t r = 0; r < R; r++)
			met += q[r][3][LT_EMBKV][Q99] <= q[r][3][LT_REDIS][Q99];
		printf(", \"bar_256_keys_16_clients_p99_le_redis\": "
		       "{\"met_runs\": %u, \"runs\": %u}", met, R);
	}
	printf("}\n");
}

static void print_text(const struct lt_ctx *x, const lt_q *q)
{
	const struct lt_opts *o = x->o;
	uint32_t R = o->runs, met = 0;
	double v[LT_MAX_RUNS], s[3];

	printf("infer-mode pulls over TCP on loopback: %" PRIu64 " rows, dim "
	       "%u fp32; %u requests per cell and system; %u runs; embkvd "
	       "with %u owner and %u I/O threads\n", o->rows, LT_DIM,
	       o->requests, R, o->threads, o->io_threads);
	printf("clients: Redis through %s, memcached through %s\n",
	       x->redis_lib ? "hiredis" : "embkv-bench's own (bench_kv.c)",
	       x->memc_lib ? "libmemcached" :
			     "embkv-bench's own (bench_kv.c)");
	printf("latency in us, min / median / max over the runs\n");
	printf("%-5s %-8s %-10s %-26s %-26s %-26s\n", "KEYS", "CLIENTS",
	       "SYSTEM", "P50", "P99", "P99.9");
	for (uint32_t c = 0; c < LT_NCELLS; c++) {
		for (int sy = 0; sy < LT_NSYS; sy++) {
			if (!x->have[sy])
				continue;
			printf("%-5u %-8u %-10s", cell_keys[c],
			       cell_clients[c], sys_name[sy]);
			for (int k = 0; k < NQ; k++) {
				char cell[64];

				for (uint32_t r = 0; r < R; r++)
					v[r] = q[r][c][sy][k];
				spread(v, R, s);
				snprintf(cell, sizeof(cell),
					 "%.0f / %.0f / %.0f", s[0], s[1],
					 s[2]);
				printf(" %-26s", cell);
			}
			printf("\n");
		}
		for (int sy = LT_REDIS; sy < LT_NSYS; sy++) {
			if (!x->have[sy])
				continue;
			for (uint32_t r = 0; r < R; r++)
				v[r] = q[r][c][LT_EMBKV][Q99] /
				       q[r][c][sy][Q99];
			spread(v, R, s);
			printf("%-5s %-8s p99 embkv / %s: %.2f / %.2f / "
			       "%.2f\n", "", "", sys_name[sy], s[0], s[1],
			       s[2]);
		}
	}
	if (x->have[LT_REDIS]) {
		for (uint32_t r = 0; r < R; r++)
			met += q[r][3][LT_EMBKV][Q99] <= q[r][3][LT_REDIS][Q99];
		printf("bar: p99 of a 256-key pull at 16 clients <= Redis's "
		       "p99 in the same run: met in %u of %u runs\n", met, R);
	}
}

/* ---- main --------------------------------------------------------------- */

int bench_latency_main(int argc, char **argv)
{
	static char embkvd_buf[4096];
	struct lt_opts o;
	struct lt_ctx *x;
	struct proc srv[LT_NSYS];
	char exe[LT_NSYS][512], skipped[256] = "";
	lt_q *q = NULL;
	int err;

	if (lt_parse(argc, argv, &o, embkvd_buf, sizeof(embkvd_buf)))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	x = calloc(1, sizeof(*x));
	q = calloc(o.runs, sizeof(*q));
	if (!x || !q) {
		fprintf(stderr, "embkv-bench: out of memory\n");
		return 1;
	}
	memset(srv, 0, sizeof(srv));
	x->o = &o;
	x->have[LT_EMBKV] = 1;
#ifdef EMBKV_HAVE_HIREDIS
	x->redis_lib = !o.own_clients;
#endif
#ifdef EMBKV_HAVE_LIBMEMCACHED
	x->memc_lib = !o.own_clients;
#endif
	err = start_embkvd(&o, &srv[LT_EMBKV], x->embkv_addr,
			   sizeof(x->embkv_addr));
	if (err) {
		fprintf(stderr, "embkv-bench: %s did not start: %s (run it "
			"by hand to see why)\n", o.embkvd,
			embkv_strerror(err));
		goto out;
	}
	for (int sy = LT_REDIS; sy < LT_NSYS; sy++) {
		const char *bin = sy == LT_REDIS ? "redis-server" : "memcached";

		if (sy == LT_REDIS ? o.no_redis : o.no_memc) {
			snprintf(skipped + strlen(skipped),
				 sizeof(skipped) - strlen(skipped),
				 "%s%s: --no-%s", skipped[0] ? "; " : "",
				 sys_name[sy], sy == LT_REDIS ? "redis" :
				 "memcached");
			continue;
		}
		if (find_exe(bin, exe[sy], sizeof(exe[sy]))) {
			fprintf(stderr, "embkv-bench: %s is not installed (not "
				"on PATH, /usr/sbin or /usr/bin): the %s "
				"column is skipped (tools/install-deps.sh "
				"installs it)\n", bin, sys_name[sy]);
			snprintf(skipped + strlen(skipped),
				 sizeof(skipped) - strlen(skipped),
				 "%s%s: not installed", skipped[0] ? "; " : "",
				 bin);
			continue;
		}
		err = sy == LT_REDIS ? start_redis(exe[sy], &srv[sy])
				     : start_memc(exe[sy], &o, &srv[sy]);
		if (err) {
			fprintf(stderr, "embkv-bench: %s did not start: %s\n",
				bin, embkv_strerror(err));
			goto out;
		}
		x->have[sy] = 1;
	}
	x->redis_port = srv[LT_REDIS].port;
	x->memc_port = srv[LT_MEMC].port;
	err = create_table(x);
	for (uint32_t i = 0; !err && i < LT_MAX_CLIENTS; i++)
		err = conn_open(x, &x->conn[i]);
	if (err) {
		fprintf(stderr, "embkv-bench: cannot set up the clients: %s\n",
			embkv_strerror(err));
		goto out;
	}
	err = load(x);
	if (err) {
		fprintf(stderr, "embkv-bench: load failed: %s\n",
			embkv_strerror(err));
		goto out;
	}
	for (uint32_t r = 0; !err && r < o.runs; r++)
		for (uint32_t c = 0; !err && c < LT_NCELLS; c++)
			for (int k = 0; !err && k < LT_NSYS; k++) {
				/* the order rotates: no system always first */
				int sy = (int)((k + r + c) % LT_NSYS);

				if (x->have[sy])
					err = measure(x, (enum lt_sys)sy, c, r,
						      q[r][c][sy]);
			}
	if (err)
		goto out;
	if (o.json)
		print_json(x, (const lt_q *)q, skipped);
	else
		print_text(x, (const lt_q *)q);
out:
	for (uint32_t i = 0; i < LT_MAX_CLIENTS; i++)
		conn_close(&x->conn[i]);
	for (int sy = 0; sy < LT_NSYS; sy++)
		stop(&srv[sy]);
	free(q);
	free(x);
	return err ? 1 : 0;
}
