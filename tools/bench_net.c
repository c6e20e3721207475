/*
 * embkv-bench, network mode: N embkvd servers on loopback against Redis
 * and memcached on loopback, the same rows and the same key streams.
 *
 *   pull: embkv_pull (train mode) | Redis MGET | memcached multi-get
 *   push: embkv_push (SGD applied by the server)
 *         | Redis MGET + client-side SGD + MSET (as TFRA's Redis backend)
 *         | memcached get + client-side SGD + set
 * Every store gets batches of the same size, one client connection each,
 * and every system alternates in each repetition, so a noisy neighbour
 * hurts all alike; the best of --reps is kept. Measuring starts once the
 * machine is quiet after the load (settle()). The servers are started by
 * this program (embkvd) or by tools/bench-net.sh (Redis, memcached).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <xxhash.h>
#include <embkv/embkv.h>
#include "tools/bench_common.h"
#include "tools/bench_kv.h"
#include "tools/bench_net.h"

#define NET_DEFAULT_KEYS 10000000ull
#define NET_DEFAULT_OPS 2000000ull
#define NET_DEFAULT_SERVERS 2u
#define NET_DEFAULT_REPS 3u
#define NET_DIM 64u
#define NET_BATCH 4096u
#define NET_PARTITIONS 256u
#define NET_LR 0.01f
#define NET_ZIPF 1.05
#define NET_MAX_SERVERS 16u
#define SERVER_START_TIMEOUT_S 20
#define HEADROOM 1.05

struct net_opts {
	uint64_t keys, ops;
	uint32_t servers, reps, threads;
	const char *embkvd;
	char redis_host[64], memc_host[64];
	unsigned redis_port, memc_port;
	int json;
};

struct server_proc {
	pid_t pid;
	unsigned port;
	char addr[64];
};

/* A free loopback TCP port (bound and released: a tiny race, fine here). */
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

/* Starts embkvd #self of n; waits for its "listening" line. */
static int start_server(const struct net_opts *o, struct server_proc *s,
			const char *peers, uint32_t self)
{
	char listen_arg[80], self_arg[16], threads_arg[16], line[256];
	int pipefd[2];
	FILE *f;
	double deadline = bench_now_s() + SERVER_START_TIMEOUT_S;

	snprintf(listen_arg, sizeof(listen_arg), "tcp://127.0.0.1:%u", s->port);
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
		      (char *)NULL);
		fprintf(stderr, "embkv-bench: cannot run %s: %s\n", o->embkvd,
			strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	while (f && bench_now_s() < deadline && fgets(line, sizeof(line), f))
		if (strstr(line, "embkvd: listening on ")) {
			fclose(f); /* later output goes to a closed pipe: fine */
			return 0;
		}
	if (f)
		fclose(f);
	return -ETIMEDOUT;
}

static void stop_servers(struct server_proc *s, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (s[i].pid > 0)
			kill(s[i].pid, SIGTERM);
	for (uint32_t i = 0; i < n; i++)
		if (s[i].pid > 0)
			waitpid(s[i].pid, NULL, 0);
}

struct systems {
	struct embkv_client *client;
	struct embkv_table_handle *table;
	struct bench_kv redis, memc;
	int have_redis, have_memc;
};

static void row_values(uint64_t key, float *row)
{
	for (uint32_t d = 0; d < NET_DIM; d++)
		row[d] = (float)((key >> (d % 48)) & 255) * 1e-3f;
}

static int load_all(const struct net_opts *o, struct systems *sy)
{
	uint64_t *keys = malloc(NET_BATCH * sizeof(*keys));
	float *rows = malloc((size_t)NET_BATCH * NET_DIM * sizeof(float));
	double t0 = bench_now_s();
	int err = keys && rows ? 0 : -ENOMEM;

	for (uint64_t b = 0; !err && b < o->keys; b += NET_BATCH) {
		uint32_t m = (uint32_t)(o->keys - b < NET_BATCH ? o->keys - b
							      : NET_BATCH);

		for (uint32_t j = 0; j < m; j++) {
			keys[j] = bench_key_of(b + j);
			row_values(keys[j], rows + (size_t)j * NET_DIM);
		}
		err = embkv_assign(sy->table, m, keys, rows);
		if (!err && sy->have_redis)
			err = bench_redis_mset(&sy->redis, m, keys, rows, NET_DIM);
		if (!err && sy->have_memc)
			err = bench_memc_set(&sy->memc, m, keys, rows, NET_DIM);
		if (!o->json && (b / NET_BATCH) % 256 == 0)
			fprintf(stderr, "\rload: %5.1f%%",
				100.0 * (double)b / (double)o->keys);
	}
	if (!o->json && !err)
		fprintf(stderr, "\rload: done in %.1f s\n", bench_now_s() - t0);
	free(keys);
	free(rows);
	return err;
}

/* Busy and total jiffies of all CPUs (/proc/stat); 0 when unreadable. */
static int cpu_jiffies(unsigned long long *busy, unsigned long long *total)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 5)
		return -1;
	*total = 0;
	for (int i = 0; i < 8; i++)
		*total += v[i];
	*busy = *total - v[3] - v[4]; /* less idle and iowait */
	return 0;
}

/*
 * After the load the stores still work in the background for a while
 * (memcached's LRU maintainer sorting 10M fresh items, Redis rehashing
 * its dict), which would slow whichever system is measured first. Waits
 * until the machine is quiet (under SETTLE_BUSY busy over a second) or
 * SETTLE_MAX_S passed, and says how long it took.
 */
#define SETTLE_BUSY 0.10
#define SETTLE_MAX_S 60

static void settle(const struct net_opts *o)
{
	unsigned long long b0, t0, b1, t1;
	double start = bench_now_s(), busy = 1;

	for (int s = 0; s < SETTLE_MAX_S; s++) {
		if (cpu_jiffies(&b0, &t0))
			return;
		sleep(1);
		if (cpu_jiffies(&b1, &t1) || t1 <= t0)
			return;
		busy = (double)(b1 - b0) / (double)(t1 - t0);
		if (busy < SETTLE_BUSY)
			break;
	}
	if (!o->json)
		fprintf(stderr, "settled: %.0f s after the load, machine %.0f%% "
			"busy\n", bench_now_s() - start, 100 * busy);
}

enum sys_id { SYS_EMBKV, SYS_REDIS, SYS_MEMC, SYS_COUNT };
static const char *const sys_name[SYS_COUNT] = { "embkv", "redis", "memcached" };

static void sgd(float *rows, const float *grads, uint32_t n)
{
	for (size_t i = 0; i < (size_t)n * NET_DIM; i++)
		rows[i] -= NET_LR * grads[i];
}

/* Runs one measurement: keys stream[0, ops) through one system. */
static int run(struct systems *sy, enum sys_id s, int push,
	       const uint64_t *stream, uint64_t ops, float *rows,
	       const float *grads, uint8_t *found, double *rate)
{
	double t0 = bench_now_s();
	int err = 0;

	for (uint64_t b = 0; !err && b < ops; b += NET_BATCH) {
		uint32_t m = (uint32_t)(ops - b < NET_BATCH ? ops - b : NET_BATCH);
		const uint64_t *k = stream + b;

		if (s == SYS_EMBKV) {
			err = push ? embkv_push(sy->table, m, k, grads, NULL)
				   : embkv_pull(sy->table, m, k, rows, found,
						EMBKV_MODE_TRAIN, NULL);
		} else if (s == SYS_REDIS) {
			err = bench_redis_mget(&sy->redis, m, k, rows, NET_DIM, found);
			if (!err && push) {
				sgd(rows, grads, m);
				err = bench_redis_mset(&sy->redis, m, k, rows, NET_DIM);
			}
		} else {
			err = bench_memc_get(&sy->memc, m, k, rows, NET_DIM, found);
			if (!err && push) {
				sgd(rows, grads, m);
				err = bench_memc_set(&sy->memc, m, k, rows, NET_DIM);
			}
		}
	}
	*rate = (double)ops / (bench_now_s() - t0);
	return err;
}

static int parse_hostport(const char *s, char *host, size_t hostlen,
			  unsigned *port)
{
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long p;

	if (!colon || (size_t)(colon - s) >= hostlen || colon == s)
		return -EINVAL;
	p = strtoul(colon + 1, &end, 10);
	if (*end || p == 0 || p > 65535)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	*port = (unsigned)p;
	return 0;
}

static void net_usage(FILE *f)
{
	fprintf(f,
		"usage: embkv-bench --mode net [options]\n"
		"embkvd servers on loopback against Redis and memcached.\n"
		"  --servers N        embkvd processes (default %u)\n"
		"  --embkvd PATH      the embkvd binary (default: beside this one)\n"
		"  --threads N        owner threads per embkvd (default 1)\n"
		"  --redis HOST:PORT  a running redis-server to compare with\n"
		"  --memcached HOST:PORT  a running memcached to compare with\n"
		"  --keys N           rows (default %llu)\n"
		"  --ops N            keys per measurement (default %llu)\n"
		"  --reps R           repetitions, best kept (default %u)\n"
		"  --json             one JSON object on stdout\n"
		"tools/bench-net.sh installs and starts Redis and memcached and\n"
		"runs this mode with them.\n",
		NET_DEFAULT_SERVERS, (unsigned long long)NET_DEFAULT_KEYS,
		(unsigned long long)NET_DEFAULT_OPS, NET_DEFAULT_REPS);
}

/* --redis and --memcached: HOST:PORT into the options. */
static int parse_redis(const char *arg, void *ptr)
{
	struct net_opts *o = ptr;

	return parse_hostport(arg, o->redis_host, sizeof(o->redis_host),
			      &o->redis_port);
}

static int parse_memc(const char *arg, void *ptr)
{
	struct net_opts *o = ptr;

	return parse_hostport(arg, o->memc_host, sizeof(o->memc_host),
			      &o->memc_port);
}

static int net_parse(int argc, char **argv, struct net_opts *o,
		     char *embkvd_buf, size_t buflen)
{
	const struct bench_opt opt[] = {
		BENCH_IGNORE("mode"),
		BENCH_U32("servers", &o->servers, 1, NET_MAX_SERVERS, 0),
		BENCH_STR("embkvd", &o->embkvd),
		BENCH_U32("threads", &o->threads, 1, 64, 0),
		BENCH_CUSTOM("redis", parse_redis, o, 0),
		BENCH_CUSTOM("memcached", parse_memc, o, 0),
		BENCH_U64("keys", &o->keys, 1000, 1ull << 32, 0),
		BENCH_U64("ops", &o->ops, 1, UINT64_MAX, 0),
		BENCH_U32("reps", &o->reps, 1, 100, 0),
		BENCH_FLAG("json", &o->json),
	};

	memset(o, 0, sizeof(*o));
	o->keys = NET_DEFAULT_KEYS;
	o->ops = NET_DEFAULT_OPS;
	o->servers = NET_DEFAULT_SERVERS;
	o->reps = NET_DEFAULT_REPS;
	o->threads = 1;
	if (bench_default_embkvd(embkvd_buf, buflen))
		o->embkvd = embkvd_buf;
	if (bench_opts_parse(argc, argv, opt, sizeof(opt) / sizeof(opt[0]),
			     net_usage))
		return -EINVAL;
	return bench_opts_finish(argc, argv, o->embkvd);
}

/* The servers' counters of the bench table, summed: inserts and
 * evictions after the load say whether the measured pulls found every
 * row (they must: the table has room for every key). */
struct churn {
	uint64_t inserts, evictions, pull_misses;
};

static void churn_add(void *ctx, uint32_t server, const char *table,
		      const char *name, uint64_t value)
{
	struct churn *c = ctx;

	(void)server;
	if (!table || strcmp(table, "bench_net"))
		return;
	if (!strcmp(name, "inserts"))
		c->inserts += value;
	else if (!strcmp(name, "evictions"))
		c->evictions += value;
	else if (!strcmp(name, "pull_misses"))
		c->pull_misses += value;
}

static void print_json(const struct net_opts *o, double pull[SYS_COUNT][2],
		       double push[SYS_COUNT][2], const struct systems *sy,
		       const struct churn *ch)
{
	const int have[SYS_COUNT] = { 1, sy->have_redis, sy->have_memc };

	printf("{\"keys\": %llu, \"dim\": %u, \"batch\": %u, \"servers\": %u",
	       (unsigned long long)o->keys, NET_DIM, NET_BATCH, o->servers);
	printf(", \"embkv_inserts\": %llu, \"embkv_evictions\": %llu, "
	       "\"embkv_pull_misses\": %llu",
	       (unsigned long long)ch->inserts,
	       (unsigned long long)ch->evictions,
	       (unsigned long long)ch->pull_misses);
	for (int s = 0; s < SYS_COUNT; s++) {
		if (!have[s]) {
			printf(", \"%s_pull_rows_per_s\": null, "
			       "\"%s_push_rows_per_s\": null",
			       sys_name[s], sys_name[s]);
			continue;
		}
		printf(", \"%s_pull_rows_per_s\": %.0f, "
		       "\"%s_pull_zipf_rows_per_s\": %.0f, "
		       "\"%s_push_rows_per_s\": %.0f, "
		       "\"%s_push_zipf_rows_per_s\": %.0f",
		       sys_name[s], pull[s][0], sys_name[s], pull[s][1],
		       sys_name[s], push[s][0], sys_name[s], push[s][1]);
	}
	for (int s = SYS_REDIS; s < SYS_COUNT; s++) {
		if (!have[s])
			continue;
		printf(", \"pull_vs_%s\": %.2f, \"pull_zipf_vs_%s\": %.2f, "
		       "\"push_vs_%s\": %.2f, \"push_zipf_vs_%s\": %.2f",
		       sys_name[s], pull[0][0] / pull[s][0], sys_name[s],
		       pull[0][1] / pull[s][1], sys_name[s],
		       push[0][0] / push[s][0], sys_name[s],
		       push[0][1] / push[s][1]);
	}
	printf("}\n");
}

int bench_net_main(int argc, char **argv)
{
	char embkvd_buf[4096], peers[NET_MAX_SERVERS * 40] = "";
	const char *addrs[NET_MAX_SERVERS];
	struct server_proc procs[NET_MAX_SERVERS];
	struct embkv_client_attr ca;
	struct embkv_table_attr ta;
	struct churn churn = { 0 };
	struct systems sy;
	struct net_opts o;
	double pull[SYS_COUNT][2] = { { 0 } }, push[SYS_COUNT][2] = { { 0 } };
	uint64_t *stream[2] = { NULL, NULL };
	float *rows = NULL, *grads = NULL;
	uint8_t *found = NULL;
	int err, status = 1;

	if (net_parse(argc, argv, &o, embkvd_buf, sizeof(embkvd_buf)))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	memset(&sy, 0, sizeof(sy));
	memset(procs, 0, sizeof(procs));
	for (uint32_t i = 0; i < o.servers; i++) {
		procs[i].port = free_port();
		snprintf(procs[i].addr, sizeof(procs[i].addr),
			 "tcp://127.0.0.1:%u", procs[i].port);
		addrs[i] = procs[i].addr;
		if (i)
			strcat(peers, ",");
		strcat(peers, procs[i].addr);
	}
	for (uint32_t i = 0; i < o.servers; i++) {
		err = start_server(&o, &procs[i], peers, i);
		if (err) {
			fprintf(stderr, "embkv-bench: embkvd %u did not start: %s\n",
				i, strerror(-err));
			goto out;
		}
	}
	embkv_client_attr_init(&ca);
	ca.servers = addrs;
	ca.nservers = o.servers;
	err = embkv_client_create(&ca, &sy.client);
	if (err) {
		fprintf(stderr, "embkv-bench: client: %s\n", embkv_strerror(err));
		goto out;
	}
	embkv_table_attr_init(&ta);
	strcpy(ta.name, "bench_net");
	ta.dim = NET_DIM;
	ta.partitions = NET_PARTITIONS;
	ta.capacity = (uint64_t)((double)o.keys * HEADROOM);
	ta.opt.lr = NET_LR;
	if ((err = embkv_table_create_remote(sy.client, &ta)) ||
	    (err = embkv_table_open(sy.client, ta.name, &sy.table))) {
		fprintf(stderr, "embkv-bench: table: %s\n", embkv_strerror(err));
		goto out;
	}
	if (o.redis_port) {
		err = bench_kv_connect(&sy.redis, o.redis_host, o.redis_port);
		if (err) {
			fprintf(stderr, "embkv-bench: redis %s:%u: %s\n",
				o.redis_host, o.redis_port, strerror(-err));
			goto out;
		}
		sy.have_redis = 1;
	}
	if (o.memc_port) {
		err = bench_kv_connect(&sy.memc, o.memc_host, o.memc_port);
		if (err) {
			fprintf(stderr, "embkv-bench: memcached %s:%u: %s\n",
				o.memc_host, o.memc_port, strerror(-err));
			goto out;
		}
		sy.have_memc = 1;
	}
	rows = malloc((size_t)NET_BATCH * NET_DIM * sizeof(float));
	grads = malloc((size_t)NET_BATCH * NET_DIM * sizeof(float));
	found = malloc(NET_BATCH);
	stream[0] = malloc(o.ops * sizeof(uint64_t));
	stream[1] = malloc(o.ops * sizeof(uint64_t));
	if (!rows || !grads || !found || !stream[0] || !stream[1] ||
	    bench_stream(stream[0], o.ops, o.keys, 0, 1) ||
	    bench_stream(stream[1], o.ops, o.keys, NET_ZIPF, 2)) {
		fprintf(stderr, "embkv-bench: out of memory\n");
		goto out;
	}
	for (uint64_t i = 0; i < o.ops; i++) { /* row indices -> keys */
		stream[0][i] = bench_key_of(stream[0][i]);
		stream[1][i] = bench_key_of(stream[1][i]);
	}
	for (size_t i = 0; i < (size_t)NET_BATCH * NET_DIM; i++)
		grads[i] = (float)((int)(i % 13) - 6) * 1e-3f;
	if (!o.json)
		fprintf(stderr, "embkv-bench net: %u embkvd, %llu keys, dim %u, "
			"batch %u%s%s\n", o.servers,
			(unsigned long long)o.keys, NET_DIM, NET_BATCH,
			sy.have_redis ? ", redis" : "",
			sy.have_memc ? ", memcached" : "");
	err = load_all(&o, &sy);
	if (err) {
		fprintf(stderr, "embkv-bench: load failed: %s\n",
			embkv_strerror(err));
		goto out;
	}
	settle(&o);
	for (uint32_t r = 0; r < o.reps; r++)
		for (int d = 0; d < 2; d++)
			for (int s = 0; s < SYS_COUNT; s++) {
				double rate;

				if ((s == SYS_REDIS && !sy.have_redis) ||
				    (s == SYS_MEMC && !sy.have_memc))
					continue;
				for (int p = 0; p < 2; p++) {
					err = run(&sy, (enum sys_id)s, p,
						  stream[d], o.ops, rows, grads,
						  found, &rate);
					if (err) {
						fprintf(stderr, "embkv-bench: %s "
							"%s failed: %s\n",
							sys_name[s],
							p ? "push" : "pull",
							embkv_strerror(err));
						goto out;
					}
					if (p)
						push[s][d] = rate > push[s][d]
								     ? rate
								     : push[s][d];
					else
						pull[s][d] = rate > pull[s][d]
								     ? rate
								     : pull[s][d];
					if (!o.json)
						fprintf(stderr, "rep %u %-9s %-7s "
							"%s: %.2f M rows/s\n",
							r + 1, sys_name[s],
							d ? "zipf" : "uniform",
							p ? "push" : "pull",
							rate / 1e6);
				}
			}
	err = embkv_stats(sy.client, churn_add, &churn);
	if (err) {
		fprintf(stderr, "embkv-bench: stats: %s\n", embkv_strerror(err));
		goto out;
	}
	print_json(&o, pull, push, &sy, &churn);
	status = 0;
out:
	if (sy.have_redis)
		bench_kv_close(&sy.redis);
	if (sy.have_memc)
		bench_kv_close(&sy.memc);
	embkv_table_close(sy.table);
	embkv_client_destroy(sy.client);
	stop_servers(procs, o.servers);
	free(rows);
	free(grads);
	free(found);
	free(stream[0]);
	free(stream[1]);
	return status;
}
