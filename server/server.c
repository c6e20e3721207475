/*
 * embkvd server lifecycle.
 *
 * What: builds everything a running server needs (the RDMA listener and
 * device when asked for, catalog, default table, listening socket, owner
 * threads, I/O threads, then the etcd membership with --etcd), waits for
 * SIGINT or SIGTERM while sampling counters once a second for the rates,
 * and takes it all down again in the reverse order. SIGHUP reopens the
 * log file (--log-file) and re-reads the token file, and serving goes on.
 * The log: one line per event, UTC timestamp with milliseconds and a
 * level, so that an operator can line events up across servers.
 *
 * Why: signals are blocked before the first thread starts, so every
 * thread inherits the mask and the only place a signal is seen is the
 * signalfd read here: no handler ever runs in the middle of a request.
 *
 * Invariants (shutdown order): I/O threads stop first (they stop
 * accepting, close their connections and wait until the owners have
 * handed back every request they had queued), then the owners stop (their
 * queues are empty by then), then the catalog frees the tables after an
 * RCU barrier (deregistering their RDMA regions), and last the RDMA
 * listener and protection domain go.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>
#include "server/daemon.h"
#include "server/ckpt.h"
#include "server/replica.h"
#include "server/cluster.h"
#include "server/member.h"
#include "server/metrics_http.h"
#include "server/verbs.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT 7070u
#define DEFAULT_MAX_CONNS 1024u
#define DEFAULT_AUTH_TIMEOUT_MS 5000u
#define DEFAULT_FRAME_TIMEOUT_MS 30000u
#define DEFAULT_INFLIGHT_BYTES (1ull << 30)
#define DEFAULT_MAX_UNAUTH_CONNS 64u
#define DEFAULT_RDMA_REPLY_POOL (64ull << 20)
#define PORT_STR_MAX sizeof("65535")
#define SAMPLE_PERIOD_S 1
#define MAX_EVENTS 4
#define TOKEN_MAX 4096u
#define NS_PER_MS 1000000L

static void log_v(enum embkvd_log_level level, const char *fmt, va_list ap)
{
	static const char *const names[] = { "INFO", "WARN", "ERROR" };
	char line[512], when[32];
	struct timespec ts;
	struct tm tm;

	vsnprintf(line, sizeof(line), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One call: stderr is unbuffered and locked per call. */
	fprintf(stderr, "%s.%03ldZ %s embkvd: %s\n", when,
		ts.tv_nsec / NS_PER_MS,
		names[level <= EMBKVD_ERROR ? level : EMBKVD_ERROR], line);
}

void embkvd_log_at(enum embkvd_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(level, fmt, ap);
	va_end(ap);
}

void embkvd_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(EMBKVD_INFO, fmt, ap);
	va_end(ap);
}

int embkvd_log_open(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	/* dup2 swaps fd 2 atomically: a concurrent write goes to one file
	 * or the other, never nowhere. */
	if (fd != STDERR_FILENO) {
		if (dup2(fd, STDERR_FILENO) < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		close(fd);
	}
	return 0;
}

int embkvd_token_reload(struct embkvd *s)
{
	struct embkv_wire_auth_key key;
	uint8_t *buf;
	size_t n;
	FILE *f;
	int err;

	if (!s->token_file)
		return 0;
	f = fopen(s->token_file, "rb");
	if (!f)
		return -errno;
	buf = malloc(TOKEN_MAX + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, TOKEN_MAX + 1, f);
	fclose(f);
	while (n && n <= TOKEN_MAX &&
	       (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	err = n > TOKEN_MAX || !n ? -EINVAL :
	      embkv_wire_auth_key_derive(buf, n, &key);
	explicit_bzero(buf, TOKEN_MAX + 1);
	free(buf);
	if (err)
		return err;
	pthread_mutex_lock(&s->key_lock);
	s->key = key;
	pthread_mutex_unlock(&s->key_lock);
	embkv_wire_auth_key_wipe(&key);
	return 0;
}

void embkvd_attr_init(struct embkvd_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	attr->tcp = true;
	strcpy(attr->host, DEFAULT_HOST);
	attr->port = DEFAULT_PORT;
	attr->threads = 1;
	attr->io_threads = 1;
	attr->max_conns = DEFAULT_MAX_CONNS;
	attr->auth_timeout_ms = DEFAULT_AUTH_TIMEOUT_MS;
	attr->frame_timeout_ms = DEFAULT_FRAME_TIMEOUT_MS;
	attr->inflight_bytes = DEFAULT_INFLIGHT_BYTES;
	attr->max_unauth_conns = DEFAULT_MAX_UNAUTH_CONNS;
	attr->rdma_reply_pool = DEFAULT_RDMA_REPLY_POOL;
	attr->epoch = 1;
	attr->repl_log_rows = EMBKVD_REPL_LOG_ROWS_DEFAULT;
}

static int attr_check(const struct embkvd_attr *a)
{
	if ((!a->tcp && !a->rdma) || (a->tcp && !a->host[0]) ||
	    (a->rdma && !a->rdma_host[0]) || !a->threads || a->threads > EMBKV_OWNER_MAX ||
	    !a->io_threads || a->io_threads > EMBKVD_MAX_IO_THREADS ||
	    !a->max_conns || !a->epoch || a->flags)
		return -EINVAL;
	/* A body of the largest size must fit the budget. */
	if (!a->auth_timeout_ms || !a->frame_timeout_ms ||
	    a->inflight_bytes < EMBKV_WIRE_MAX_BODY || !a->max_unauth_conns)
		return -EINVAL;
	if (a->peers && (!a->npeers || a->npeers > EMBKV_WIRE_MAX_SERVERS ||
			 a->self >= a->npeers))
		return -EINVAL;
	if (a->token && !a->token_len)
		return -EINVAL;
	return 0;
}

int embkvd_listen_tcp(const char *host, uint16_t port, int backlog,
		      int *fd_out, uint16_t *bound)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE,
	};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addrinfo *res, *ai;
	char ps[PORT_STR_MAX];
	int one = 1, rc, fd = -1;

	snprintf(ps, sizeof(ps), "%u", port);
	rc = getaddrinfo(host, ps, &hints, &res);
	if (rc)
		return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	rc = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
					  SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
				 sizeof(one));
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, backlog))
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return rc;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	*bound = ntohs(ss.ss_family == AF_INET6 ?
			       ((struct sockaddr_in6 *)&ss)->sin6_port :
			       ((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
	return 0;
}

static int listen_open(struct embkvd *s)
{
	return embkvd_listen_tcp(s->attr.host, s->attr.port, SOMAXCONN,
				 &s->listen_fd, &s->port);
}

/* The first shard map: --peers, or this server alone. */
static int map_init(struct embkvd *s, const char *const *peers)
{
	const struct embkvd_attr *a = &s->attr;
	char self[EMBKV_WIRE_ADDR_MAX + 1];
	const char *one = self;
	struct embkvd_map *m;
	int err;

	if (peers)
		err = embkvd_map_create(a->epoch, peers, a->npeers, a->self,
					&m);
	else {
		if (a->tcp)
			snprintf(self, sizeof(self),
				 strchr(a->host, ':') ? "tcp://[%s]:%u"
						      : "tcp://%s:%u",
				 a->host, s->port);
		else /* rdma:// only */
			snprintf(self, sizeof(self),
				 strchr(a->rdma_host, ':') ? "rdma://[%s]:%u"
							   : "rdma://%s:%u",
				 a->rdma_host, s->rdma_port);
		err = embkvd_map_create(a->epoch, &one, 1, 0, &m);
	}
	if (!err)
		embkvd_map_publish(&s->map, m);
	return err;
}

uint64_t embkvd_epoch(struct embkvd *s)
{
	uint64_t epoch;

	rcu_read_lock();
	epoch = embkvd_map_cur(&s->map)->epoch;
	rcu_read_unlock();
	return epoch;
}

int embkvd_table_add(struct embkvd *s,
		     const struct embkv_table_attr *attr, uint64_t uid,
		     uint32_t *id, uint64_t *uid_out)
{
	uint8_t *owned;
	int rc;

	if (embkv_table_attr_check(attr))
		return embkv_table_attr_check(attr);
	owned = malloc(attr->partitions);
	if (!owned)
		return -ENOMEM;
	rcu_read_lock();
	embkvd_map_owned(embkvd_map_cur(&s->map), attr->partitions, owned);
	rcu_read_unlock();
	rc = embkv_catalog_add(s->cat, attr, owned, uid, id, uid_out);
	free(owned);
	return rc;
}

static int default_table(struct embkvd *s, const char *name)
{
	struct embkv_table_attr a;
	uint64_t uid;
	uint32_t id;
	int rc;

	embkv_table_attr_init(&a);
	if (strlen(name) >= sizeof(a.name))
		return EMBKV_ELIMIT;
	strcpy(a.name, name);
	rcu_read_lock();
	if (embkv_catalog_find_name(s->cat, name)) {
		rcu_read_unlock();
		embkvd_log("table %s comes from the checkpoint; the default "
			   "table is that one", name);
		return 0;
	}
	rcu_read_unlock();
	rc = embkvd_table_add(s, &a, 0, &id, &uid);
	if (rc)
		embkvd_log_at(EMBKVD_ERROR, "cannot create table %s: %s", name,
			   embkv_strerror(rc));
	else
		embkvd_log("table %s created: id %u, uid %016llx, dim %u, "
			   "%u partitions, capacity %llu", name, id,
			   (unsigned long long)uid, a.dim, a.partitions,
			   (unsigned long long)a.capacity);
	return rc;
}

/* signalfd for SIGINT/SIGTERM and a one-second timer, on one epoll. */
static int control_open(struct embkvd *s)
{
	struct itimerspec its = {
		.it_interval.tv_sec = SAMPLE_PERIOD_S,
		.it_value.tv_sec = SAMPLE_PERIOD_S,
	};
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		return -EINVAL;
	signal(SIGPIPE, SIG_IGN);
	s->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC,
				     TFD_NONBLOCK | TFD_CLOEXEC);
	s->ep_fd = epoll_create1(EPOLL_CLOEXEC);
	if (s->sig_fd < 0 || s->timer_fd < 0 || s->ep_fd < 0 ||
	    timerfd_settime(s->timer_fd, 0, &its, NULL))
		return -errno;
	ev.data.fd = s->sig_fd;
	if (epoll_ctl(s->ep_fd, EPOLL_CTL_ADD, s->sig_fd, &ev))
		return -errno;
	ev.data.fd = s->timer_fd;
	if (epoll_ctl(s->ep_fd, EPOLL_CTL_ADD, s->timer_fd, &ev))
		return -errno;
	return 0;
}

int embkvd_create(const struct embkvd_attr *attr,
		  struct embkvd **out)
{
	struct embkv_catalog_attr ca;
	struct embkvd *s;
	int err;

	if (!attr || !out || attr_check(attr))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->attr = *attr;
	s->attr.peers = NULL; /* copied into servers; not kept */
	s->attr.token = NULL;
	s->attr.default_table = NULL;
	s->attr.etcd = s->attr.cluster = s->attr.advertise = NULL;
	s->attr.data_dir = NULL;
	s->attr.token_file = s->attr.log_file = NULL;
	s->listen_fd = s->sig_fd = s->timer_fd = s->ep_fd = -1;
	s->start_ns = embkv_now_ns();
	rcu_register_thread();
	pthread_mutex_init(&s->key_lock, NULL);
	err = embkv_rates_init(&s->rates);
	if (err) {
		pthread_mutex_destroy(&s->key_lock);
		rcu_unregister_thread();
		free(s);
		return err;
	}
	if (embkvd_config_keep(s, attr) ||
	    (attr->token_file && !(s->token_file = strdup(attr->token_file))) ||
	    (attr->log_file && !(s->log_file = strdup(attr->log_file)))) {
		err = -ENOMEM;
		goto destroy;
	}
	if (attr->token) {
		err = embkv_wire_auth_key_derive(attr->token, attr->token_len,
						 &s->key);
		if (err)
			goto destroy;
		s->auth = true;
	}
	err = embkvd_guard_create(&s->guard);
	if (err)
		goto destroy;
	err = control_open(s);
	if (err)
		goto destroy;
	if (attr->rdma) {
		err = embkvd_verbs_open(s);
		if (err) {
			embkvd_log_at(EMBKVD_ERROR, "cannot listen on rdma://%s:%u: %s",
				   attr->rdma_host, attr->rdma_port,
				   embkv_strerror(err));
			goto destroy;
		}
		err = embkvd_obpool_create(attr->rdma_reply_pool,
					   embkvd_verbs_unreg, &s->obpool);
		if (err)
			goto destroy;
	}
	embkv_catalog_attr_init(&ca);
	ca.memory_limit = attr->memory_limit;
	embkvd_regions_hooks(s->verbs, &ca.hooks);
	err = embkv_catalog_create(&ca, &s->cat);
	if (err)
		goto destroy;
	err = attr->tcp ? listen_open(s) : 0;
	if (err) {
		embkvd_log_at(EMBKVD_ERROR, "cannot listen on %s:%u: %s", attr->host, attr->port,
			   embkv_strerror(err));
		goto destroy;
	}
	err = map_init(s, attr->peers);
	if (err)
		goto destroy;
	/* The cluster's tables, before anyone can ask for them. */
	err = attr->etcd ? embkvd_cluster_start(s, attr, &s->cluster) : 0;
	if (err)
		goto destroy;
	err = embkv_owner_pool_create(attr->threads, &s->owners);
	if (err)
		goto destroy;
	/* Static mode: the newest checkpoint's tables, before the default
	 * table (which then is one of them, or is created empty). */
	err = embkvd_ckpt_start(s, attr, &s->ckpt);
	if (err)
		goto destroy;
	if (attr->default_table && !attr->etcd) { /* else: cluster.c */
		err = default_table(s, attr->default_table);
		if (err)
			goto destroy;
	}
	s->io = aligned_alloc(64, sizeof(*s->io) * attr->io_threads);
	if (!s->io) {
		err = -ENOMEM;
		goto destroy;
	}
	memset(s->io, 0, sizeof(*s->io) * attr->io_threads);
	for (uint32_t i = 0; i < attr->io_threads; i++)
		s->io[i].epfd = s->io[i].efd = -1;
	/* nio is final before any I/O thread runs (STATS reads it). */
	s->nio = attr->io_threads;
	for (uint32_t i = 0; i < s->nio; i++) {
		err = embkvd_io_start(&s->io[i], s, i);
		if (err)
			goto destroy;
	}
	/* The follower of --replica-of: catalog, owners, checkpoint thread
	 * and the I/O threads that answer STATS are up. */
	err = embkvd_replica_start(s, &s->replica);
	if (err)
		goto destroy;
	/* Metrics last: everything it reads exists by now. */
	if (attr->metrics) {
		err = embkvd_metrics_http_start(s, attr->metrics_host,
						attr->metrics_port);
		if (err) {
			embkvd_log_at(EMBKVD_ERROR,
				      "cannot serve metrics on %s:%u: %s",
				      attr->metrics_host, attr->metrics_port,
				      embkv_strerror(err));
			goto destroy;
		}
	}
	/* Registered only once it serves; etcd down does not stop it. */
	err = attr->etcd ? embkvd_member_join(s, attr) : 0;
	if (err)
		goto destroy;
	if (attr->etcd && attr->default_table &&
	    !embkvd_cluster_wait_default(s->cluster,
					 EMBKVD_CLUSTER_CREATE_TIMEOUT_MS))
		embkvd_log_at(EMBKVD_WARN, "table %s: not in the cluster yet (etcd away?); it "
			   "is created once etcd answers", attr->default_table);
	*out = s;
	return 0;

destroy:
	embkvd_destroy(s);
	return err;
}

static void sample_rates(struct embkvd *s)
{
	uint64_t v[EMBKV_RATE_COUNT] = { 0 };

	for (uint32_t i = 0; i < s->nio; i++) {
		const struct embkv_io_stats *st = &s->io[i].st;

		v[EMBKV_RATE_PULLS] += embkv_stat_read(&st->pulls);
		v[EMBKV_RATE_PUSHES] += embkv_stat_read(&st->pushes);
		v[EMBKV_RATE_PULL_KEYS] += embkv_stat_read(&st->pull_keys);
		v[EMBKV_RATE_PUSH_KEYS] += embkv_stat_read(&st->push_keys);
	}
	embkv_rates_record(&s->rates, embkv_now_ns(), v);
}

/* SIGHUP: reopen the log file, re-read the token file; serve on. */
static void sighup(struct embkvd *s)
{
	int err = s->log_file ? embkvd_log_open(s->log_file) : 0;

	if (err)
		embkvd_log_at(EMBKVD_ERROR, "SIGHUP: cannot reopen %s: %s "
			      "(logging on to the old file)", s->log_file,
			      embkv_strerror(err));
	err = embkvd_token_reload(s);
	if (err)
		embkvd_log_at(EMBKVD_ERROR, "SIGHUP: cannot re-read the token "
			      "file %s: %s (the old token stays)",
			      s->token_file, embkv_strerror(err));
	else if (s->token_file)
		embkvd_log("SIGHUP: token file %s re-read", s->token_file);
	embkvd_log("SIGHUP: reopened%s%s", s->log_file ? " " : "",
		   s->log_file ? s->log_file : " (logging to stderr)");
}

int embkvd_run(struct embkvd *s)
{
	struct epoll_event ev[MAX_EVENTS];

	for (;;) {
		int n = epoll_wait(s->ep_fd, ev, MAX_EVENTS, -1);

		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++) {
			if (ev[i].data.fd == s->timer_fd) {
				uint64_t ticks;

				if (read(s->timer_fd, &ticks, sizeof(ticks)) ==
				    (ssize_t)sizeof(ticks))
					sample_rates(s);
			} else {
				struct signalfd_siginfo si;

				if (read(s->sig_fd, &si, sizeof(si)) !=
				    (ssize_t)sizeof(si))
					continue;
				if (si.ssi_signo == SIGHUP) {
					sighup(s);
					continue;
				}
				embkvd_log("%s: shutting down",
					   si.ssi_signo == SIGINT ? "SIGINT"
								 : "SIGTERM");
				return 0;
			}
		}
	}
}

void embkvd_destroy(struct embkvd *s)
{
	if (!s)
		return;
	/* It runs owner jobs and makes tables. */
	embkvd_replica_stop(s->replica);
	/* First: it reads the catalog and the I/O threads' counters. */
	embkvd_metrics_http_stop(s->mhttp);
	s->mhttp = NULL;
	embkvd_member_leave(s);
	/* Its queued requests are answered through the I/O threads. */
	embkvd_cluster_stop(s->cluster);
	embkvd_ckpt_stop(s->ckpt);
	for (uint32_t i = 0; i < s->nio; i++)
		embkvd_io_stop(&s->io[i]);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	/* Owners next: one may still be ringing an I/O thread's eventfd
	 * for the last request it handed back. */
	embkv_owner_pool_destroy(s->owners);
	for (uint32_t i = 0; i < s->nio; i++)
		embkvd_io_fini(&s->io[i]);
	free(s->io);
	embkvd_replica_free(s->replica);    /* STATS read it: after I/O */
	embkvd_cluster_destroy(s->cluster); /* before the catalog */
	embkvd_ckpt_free(s->ckpt);          /* no thread can reach it now */
	embkv_catalog_destroy(s->cat);
	/* Its idle buffers' registrations go before the protection domain;
	 * every connection was closed, so none is in use. */
	embkvd_obpool_destroy(s->obpool);
	embkvd_verbs_close(s->verbs);
	embkvd_map_destroy(s->map); /* no reader is left */
	if (s->ep_fd >= 0)
		close(s->ep_fd);
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	if (s->sig_fd >= 0)
		close(s->sig_fd);
	embkv_wire_auth_key_wipe(&s->key);
	embkvd_guard_destroy(s->guard);
	embkv_rates_fini(&s->rates);
	pthread_mutex_destroy(&s->key_lock);
	free(s->token_file);
	free(s->log_file);
	embkvd_config_free(s);
	rcu_unregister_thread();
	free(s);
}
