/*
 * embkvd metrics over HTTP: Prometheus' text exposition format at
 * /metrics (--metrics-listen HOST:PORT).
 *
 * What: the counters STATS reports (server/report.c), named as Prometheus
 * wants them: an embkv_ prefix, base units (_seconds, _bytes), _total on
 * counters, latency as histograms (cumulative buckets in seconds, _sum and
 * _count), and per-table series labelled table="NAME" (never per key: the
 * series count is bounded by the tables).
 *
 * Why libmicrohttpd, and this thread: HTTP parsing is left to a maintained,
 * fuzzed library instead of a home-made parser. Its daemon runs in
 * external-select mode (MHD_USE_EPOLL) driven by a thread created here,
 * so that this thread can register with RCU before it reads the catalog
 * and unregister before it exits (libmicrohttpd's internal threads give
 * no hook for that). The data path never sees it: it reads the I/O
 * threads' counters and histograms with relaxed loads (single-writer
 * values: recent, not a snapshot), the catalog inside rcu_read_lock(),
 * and takes no lock a request takes (only the checkpoint module's
 * mutex, held for a struct copy).
 *
 * Invariants: the endpoint starts after, and stops before, everything it
 * reads (server.c's order); a histogram's buckets are cumulative and end
 * with le="+Inf" equal to _count; bucket bounds are fixed (powers of two
 * of microseconds) so that rate() over buckets works across scrapes.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <microhttpd.h>
#include "server/replica.h"
#include "server/daemon.h"
#include "server/ckpt.h"
#include "server/metrics_http.h"
#include "server/verbs.h"

#define POLL_MS 100                /* how soon stop is noticed */
#define US_PER_S 1e6
#define MS_PER_S 1e3
#define NS_PER_S 1e9
/* Histogram bounds: 2^LE_MIN_LOG2 .. 2^LE_MAX_LOG2 microseconds (2 us to
 * about 67 s); every bound is a bucket edge of server/metrics.c's. */
#define LE_MIN_LOG2 1u
#define LE_MAX_LOG2 26u
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct embkvd_metrics_http {
	struct embkvd *srv;
	struct MHD_Daemon *d;
	int listen_fd;
	pthread_t thread;
	bool stop;                 /* atomic */
};

/* ---- the exposition --------------------------------------------------- */

static void head(FILE *f, const char *name, const char *type,
		 const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(FILE *f, const char *name, const char *type,
		const char *help, uint64_t v)
{
	head(f, name, type, help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void one_f(FILE *f, const char *name, const char *type,
		  const char *help, double v)
{
	head(f, name, type, help);
	fprintf(f, "%s %.9g\n", name, v);
}

/* A histogram of microsecond values, exposed in seconds. */
static void hist(FILE *f, const char *name, const char *help,
		 const struct embkv_hist *h)
{
	uint64_t total = 0;

	head(f, name, "histogram", help);
	for (unsigned b = 0; b < EMBKV_HIST_BUCKETS; b++)
		total += h->count[b];
	for (unsigned k = LE_MIN_LOG2; k <= LE_MAX_LOG2; k++) {
		uint64_t le_us = (uint64_t)1 << k, cum = 0;

		/* Values are whole microseconds (truncated): a bucket whose
		 * largest value is below 2^k us holds only latencies below
		 * 2^k us. */
		for (unsigned b = 0; b < EMBKV_HIST_BUCKETS; b++) {
			if (embkv_hist_bucket_upper(b) >= le_us)
				break;
			cum += h->count[b];
		}
		fprintf(f, "%s_bucket{le=\"%.6g\"} %llu\n", name,
			(double)le_us / US_PER_S, (unsigned long long)cum);
	}
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name,
		(unsigned long long)total);
	fprintf(f, "%s_sum %.9g\n", name, (double)h->sum / US_PER_S);
	fprintf(f, "%s_count %llu\n", name, (unsigned long long)total);
}

static void server_metrics(struct embkvd *s, FILE *f)
{
	struct embkv_io_stats sum;
	struct embkv_hist pull, push;
	struct embkvd_ckpt_last last;

	embkvd_io_stats_sum(s, &sum, &pull, &push);
	head(f, "embkv_build_info", "gauge",
	     "Always 1; the version label says which embkvd this is.");
	fprintf(f, "embkv_build_info{version=\"%s\"} 1\n", EMBKV_VERSION);
	one_f(f, "embkv_uptime_seconds", "gauge",
	      "Seconds since the server started.",
	      (double)(embkv_now_ns() - s->start_ns) / NS_PER_S);
	one(f, "embkv_connections", "gauge", "Open client connections.",
	    __atomic_load_n(&s->conns, __ATOMIC_RELAXED));
	one(f, "embkv_requests_total", "counter", "Request frames handled.",
	    sum.requests);
	one(f, "embkv_errors_total", "counter",
	    "ERROR replies sent (expected misses not counted).", sum.errors);
	one(f, "embkv_misses_total", "counter",
	    "Expected not-found answers: a table name looked up that does "
	    "not exist.", sum.misses);
	one(f, "embkv_stale_epoch_total", "counter",
	    "Requests refused for a stale shard-map epoch.", sum.stale);
	one(f, "embkv_auth_failures_total", "counter",
	    "Failed authentications.", sum.auth_failures);
	one(f, "embkv_received_bytes_total", "counter",
	    "Bytes received from clients.", sum.bytes_in);
	one(f, "embkv_sent_bytes_total", "counter", "Bytes sent to clients.",
	    sum.bytes_out);
	one(f, "embkv_pulls_total", "counter", "PULL requests served.",
	    sum.pulls);
	one(f, "embkv_pull_keys_total", "counter", "Keys pulled.",
	    sum.pull_keys);
	one(f, "embkv_pushes_total", "counter", "PUSH requests served.",
	    sum.pushes);
	one(f, "embkv_push_keys_total", "counter", "Keys pushed.",
	    sum.push_keys);
	hist(f, "embkv_pull_duration_seconds",
	     "PULL handling time in the server, from the whole request read "
	     "to the reply queued.", &pull);
	hist(f, "embkv_push_duration_seconds",
	     "PUSH handling time in the server, from the whole request read "
	     "to the reply queued.", &push);
	one(f, "embkv_memory_bytes", "gauge", "Memory of all tables.",
	    embkv_catalog_bytes(s->cat));
	one(f, "embkv_memory_limit_bytes", "gauge",
	    "Memory limit of all tables (0: none).",
	    embkv_catalog_memory_limit(s->cat));
	one(f, "embkv_shard_map_epoch", "gauge", "Current shard-map epoch.",
	    embkvd_epoch(s));
	one(f, "embkv_owner_threads", "gauge", "Partition owner threads.",
	    embkv_owner_count(s->owners));
	one(f, "embkv_io_threads", "gauge", "Network I/O threads.", s->nio);
	if (s->obpool) {
		struct embkvd_obpool_stats ps;

		embkvd_obpool_stats(s->obpool, &ps);
		one(f, "embkv_rdma_reply_registrations_total", "counter",
		    "Reply buffers registered with the RDMA NIC (pooled "
		    "buffers once, then reused).", ps.registrations);
		one(f, "embkv_rdma_reply_pool_bytes", "gauge",
		    "Pooled reply buffers kept idle for reuse (registered once "
		    "a reply was sent from them).",
		    ps.idle_bytes);
	}
	embkvd_ckpt_last(s->ckpt, &last);
	if (last.id) {
		one_f(f, "embkv_checkpoint_last_timestamp_seconds", "gauge",
		      "When the newest checkpoint committed or restored was "
		      "taken (Unix time; it is also its id in ms).",
		      (double)last.id / MS_PER_S);
		one_f(f, "embkv_checkpoint_last_duration_seconds", "gauge",
		      "Time the newest checkpoint took to write.",
		      (double)last.duration_ms / MS_PER_S);
		one(f, "embkv_checkpoint_last_bytes", "gauge",
		    "Bytes of the newest checkpoint (every server's files).",
		    last.bytes);
	}
}

/* Label value escaping of the exposition format: \\, \" and \n. */
static void label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n') {
			fputs("\\n", f);
			continue;
		}
		fputc(*v, f);
	}
}

enum tcol_src { T_ROWS, T_CAPACITY, T_BYTES, T_PARTS, T_RDMA, T_HITS,
		T_MISSES, T_INSERTS, T_EVICTIONS, T_REJECTS, T_PULLS,
		T_PULL_KEYS, T_PUSHES, T_PUSH_KEYS, T_DROPPED, T_ASSIGNS,
		T_ERASES, T_COUNT };

static const struct {
	const char *name, *type, *help;
} tcols[T_COUNT] = {
	[T_ROWS] = { "embkv_table_rows", "gauge", "Rows stored here." },
	[T_CAPACITY] = { "embkv_table_capacity_rows", "gauge",
			 "Rows this server's partitions can hold." },
	[T_BYTES] = { "embkv_table_memory_bytes", "gauge",
		      "Memory of the table's partitions here." },
	[T_PARTS] = { "embkv_table_partitions", "gauge",
		      "Partitions loaded here." },
	[T_RDMA] = { "embkv_table_rdma_registered_bytes", "gauge",
		     "Bytes registered for RDMA reads." },
	[T_HITS] = { "embkv_table_hits_total", "counter",
		     "Pulled keys found." },
	[T_MISSES] = { "embkv_table_pull_misses_total", "counter",
		       "Pulled keys not found (initialized or zeros)." },
	[T_INSERTS] = { "embkv_table_inserts_total", "counter",
			"Rows inserted." },
	[T_EVICTIONS] = { "embkv_table_evictions_total", "counter",
			  "Rows evicted." },
	[T_REJECTS] = { "embkv_table_admit_rejects_total", "counter",
			"Keys refused by the admission filter." },
	[T_PULLS] = { "embkv_table_pulls_total", "counter",
		      "PULL requests served." },
	[T_PULL_KEYS] = { "embkv_table_pull_keys_total", "counter",
			  "Keys pulled." },
	[T_PUSHES] = { "embkv_table_pushes_total", "counter",
		       "PUSH requests served." },
	[T_PUSH_KEYS] = { "embkv_table_push_keys_total", "counter",
			  "Keys pushed." },
	[T_DROPPED] = { "embkv_table_grads_dropped_total", "counter",
			"Gradients dropped (key not stored)." },
	[T_ASSIGNS] = { "embkv_table_assign_keys_total", "counter",
			"Keys assigned." },
	[T_ERASES] = { "embkv_table_erase_keys_total", "counter",
		       "Keys erased." },
};

static void table_values(const struct embkv_catalog_entry *e,
			 uint64_t v[T_COUNT])
{
	const struct embkv_table_counters *ctr = &e->ctr;
	struct embkv_table_stats st;

	embkv_table_get_stats(e->table, &st);
	v[T_ROWS] = st.rows;
	v[T_CAPACITY] = st.capacity;
	v[T_BYTES] = st.bytes;
	v[T_PARTS] = e->table->nloaded;
	v[T_RDMA] = embkvd_regions_bytes(e);
	v[T_HITS] = st.sum.hits;
	v[T_MISSES] = st.sum.misses;
	v[T_INSERTS] = st.sum.inserts;
	v[T_EVICTIONS] = st.sum.evictions;
	v[T_REJECTS] = st.sum.admit_rejects;
	v[T_PULLS] = embkv_stat_read(&ctr->pulls);
	v[T_PULL_KEYS] = embkv_stat_read(&ctr->pull_keys);
	v[T_PUSHES] = embkv_stat_read(&ctr->pushes);
	v[T_PUSH_KEYS] = embkv_stat_read(&ctr->push_keys);
	v[T_DROPPED] = st.sum.push_dropped;
	v[T_ASSIGNS] = st.sum.assigns;
	v[T_ERASES] = st.sum.erases;
}

static void table_metrics(struct embkvd *s, FILE *f)
{
	struct embkv_catalog_entry *const *e;
	uint64_t (*v)[T_COUNT] = NULL;
	uint32_t n;

	rcu_read_lock();
	n = embkv_catalog_snapshot(s->cat, &e);
	one(f, "embkv_tables", "gauge", "Tables on this server.", n);
	if (n)
		v = calloc(n, sizeof(*v));
	if (!v) {
		rcu_read_unlock();
		return;
	}
	/* One pass over the tables, then one family at a time: the format
	 * wants every sample of a family together. */
	for (uint32_t i = 0; i < n; i++)
		table_values(e[i], v[i]);
	for (unsigned c = 0; c < T_COUNT; c++) {
		head(f, tcols[c].name, tcols[c].type, tcols[c].help);
		for (uint32_t i = 0; i < n; i++) {
			fprintf(f, "%s{table=\"", tcols[c].name);
			label(f, e[i]->table->attr.name);
			fprintf(f, "\"} %llu\n", (unsigned long long)v[i][c]);
		}
	}
	rcu_read_unlock();
	free(v);
}

/* Tables followed as replicas (--replica-of): their lag. */
static void replica_metrics(struct embkvd *s, FILE *f)
{
	static const struct {
		const char *name, *type, *help;
	} rcols[3] = {
		{ "embkv_replica_lag_updates", "gauge",
		  "Updates of the primary not applied here yet." },
		{ "embkv_replica_lag_seconds", "gauge",
		  "Seconds since the replica was last caught up (0 while it "
		  "is)." },
		{ "embkv_replica_snapshots_total", "counter",
		  "Partition copies the follower started." },
	};
	struct embkv_catalog_entry *const *e;
	uint32_t n;

	if (!s->replica)
		return;
	rcu_read_lock();
	n = embkv_catalog_snapshot(s->cat, &e);
	for (unsigned c = 0; c < 3; c++) {
		head(f, rcols[c].name, rcols[c].type, rcols[c].help);
		for (uint32_t i = 0; i < n; i++) {
			uint64_t v[3];

			if (!e[i]->replica ||
			    !embkvd_replica_lag(s->replica, e[i], &v[0],
						&v[1], &v[2]))
				continue;
			fprintf(f, "%s{table=\"", rcols[c].name);
			label(f, e[i]->table->attr.name);
			if (c == 1)
				fprintf(f, "\"} %.3f\n", (double)v[1] / 1e3);
			else
				fprintf(f, "\"} %llu\n",
					(unsigned long long)v[c ? 2 : 0]);
		}
	}
	rcu_read_unlock();
}

void embkvd_metrics_write(struct embkvd *s, FILE *f)
{
	server_metrics(s, f);
	table_metrics(s, f);
	replica_metrics(s, f);
}

/* ---- HTTP ---------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     char *body, size_t len, const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result text_reply(struct MHD_Connection *conn,
				  unsigned status, const char *msg)
{
	char *body = strdup(msg);

	return body ? reply(conn, status, body, strlen(body),
			    "text/plain; charset=utf-8") : MHD_NO;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct embkvd_metrics_http *m = cls;
	char *body = NULL;
	size_t len = 0;
	FILE *f;

	(void)version;
	(void)upload;
	(void)con_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD))
		return text_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "only GET /metrics\n");
	if (*upload_size)
		return MHD_NO; /* a GET with a body: drop the connection */
	if (strcmp(url, "/metrics"))
		return text_reply(conn, MHD_HTTP_NOT_FOUND,
				  "not found: the metrics are at /metrics\n");
	f = open_memstream(&body, &len);
	if (!f)
		return text_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				  "out of memory\n");
	embkvd_metrics_write(m->srv, f);
	if (fclose(f)) {
		free(body);
		return text_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				  "out of memory\n");
	}
	return reply(conn, MHD_HTTP_OK, body, len, CONTENT_TYPE);
}

/* Drives the daemon: waits on its epoll fd (at most POLL_MS, so that
 * stop is seen), then lets it run. */
static void *serve(void *arg)
{
	struct embkvd_metrics_http *m = arg;
	const union MHD_DaemonInfo *di;
	struct pollfd pfd = { .events = POLLIN };

	rcu_register_thread();
	di = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD);
	pfd.fd = di ? di->epoll_fd : -1;
	while (!__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE)) {
		MHD_UNSIGNED_LONG_LONG to;
		int ms = POLL_MS;

		if (MHD_get_timeout(m->d, &to) == MHD_YES && to < (unsigned)ms)
			ms = (int)to;
		if (pfd.fd >= 0)
			(void)poll(&pfd, 1, ms);
		else
			usleep((useconds_t)ms * 1000u);
		MHD_run(m->d);
	}
	rcu_unregister_thread();
	return NULL;
}

/* MHD_stop_daemon() closes the listening socket it holds; quiesced first,
 * the socket is handed back and closed here, exactly once. */
static void daemon_stop(struct MHD_Daemon *d)
{
	MHD_socket fd = MHD_quiesce_daemon(d);

	MHD_stop_daemon(d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

int embkvd_metrics_http_start(struct embkvd *s, const char *host,
			      uint16_t port)
{
	struct embkvd_metrics_http *m = calloc(1, sizeof(*m));
	int err;

	if (!m)
		return -ENOMEM;
	m->srv = s;
	err = embkvd_listen_tcp(host, port, 64, &m->listen_fd,
				&s->metrics_port);
	if (err) {
		free(m);
		return err;
	}
	/* No internal thread: serve() drives it (see the top). Small
	 * limits: a scraper or two, never a crowd. */
	m->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL,
				NULL, handle, m,
				MHD_OPTION_LISTEN_SOCKET, m->listen_fd,
				MHD_OPTION_CONNECTION_LIMIT, 16u,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				(size_t)64 * 1024,
				MHD_OPTION_END);
	if (!m->d) {
		/* Whether a failed start closed the socket is not said:
		 * leaked rather than closed twice (the server exits). */
		free(m);
		return -EIO;
	}
	err = -pthread_create(&m->thread, NULL, serve, m);
	if (err) {
		daemon_stop(m->d);
		free(m);
		return err;
	}
	s->mhttp = m;
	return 0;
}

void embkvd_metrics_http_stop(struct embkvd_metrics_http *m)
{
	if (!m)
		return;
	__atomic_store_n(&m->stop, true, __ATOMIC_RELEASE);
	pthread_join(m->thread, NULL);
	daemon_stop(m->d);
	free(m);
}
