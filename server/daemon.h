/*
 * embkvd internals shared by its modules: the server context, I/O threads,
 * connections, and the entry points between them.
 *
 *   server.c   lifecycle: listen socket, threads, signals, rate sampling
 *   io.c       I/O threads: epoll, framing, output queues, backpressure
 *   service.c  per-frame handling: auth, table admin, routing (a
 *              handler table indexed by opcode)
 *   batch.c    PULL/PUSH/ASSIGN/ERASE/HITS: one descriptor per opcode;
 *              split by owner, run, reply
 *   report.c   STATS and SHARD_MAP replies
 *   verbs_listen.c, verbs_conn.c, regions.c: the RDMA verbs transport
 *              (rdma://; server/verbs.h, private verbs_priv.h): the
 *              rdma_cm listener; one RC QP per connection served by I/O
 *              thread 0; table regions (registered through the catalog's
 *              hooks) and TABLE_REGIONS (verbs_none.c for all three when
 *              built without RDMA)
 *   shardmap.c the shard map: placement and epoch, RCU-published
 *   cluster.c, cluster_admin.c, cluster_record.c: the table catalog and
 *              shard maps in etcd (--etcd; server/cluster_priv.h)
 *   ckpt.c     checkpoints: CKPT_* requests, restore at start (--data-dir)
 *   catalog.c, owner.c, metrics.c, member.c: see their headers
 *
 * Threads. A connection belongs to one I/O thread for its whole life:
 * only that thread reads its socket, its buffers and its fields. Owner
 * threads touch a batch request only between embkv_owner_submit() and the
 * completion they post back with embkvd_io_post().
 */
#ifndef EMBKV_SERVER_DAEMON_H
#define EMBKV_SERVER_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/socket.h>
#include <urcu.h>
#include <urcu/list.h>
#include <urcu/wfcqueue.h>
#include "net/wire.h"
#include "server/obpool.h"
#include "server/catalog.h"
#include "server/metrics.h"
#include "server/owner.h"
#include "server/shardmap.h"

#define EMBKVD_MAX_IO_THREADS 64u
#define EMBKVD_HOST_MAX 200u        /* bytes of a listen host name */
#define EMBKVD_REPL_LOG_ROWS_DEFAULT (1u << 16) /* --repl-log-rows */

/* Settings, from the command line. */
struct embkvd_attr {
	bool tcp;                       /* listen on host:port over TCP */
	char host[EMBKVD_HOST_MAX + 1]; /* listen host (name or address) */
	uint16_t port;                  /* 0: the kernel picks one */
	bool rdma;                      /* listen on rdma_host:rdma_port */
	char rdma_host[EMBKVD_HOST_MAX + 1]; /* an address of an RDMA device */
	uint16_t rdma_port;             /* 0: rdma_cm picks one */
	uint64_t rdma_reply_pool;       /* bytes of idle registered reply
					 * buffers kept (server/obpool.c) */
	uint32_t threads;               /* owner threads */
	uint32_t io_threads;
	uint64_t memory_limit;          /* bytes of all tables; 0: none */
	uint32_t max_conns;
	uint64_t epoch;                 /* shard-map epoch, >= 1 */
	const char *const *peers;       /* NULL: alone; else npeers addresses */
	uint32_t npeers;
	uint32_t self;                  /* index of this server in peers */
	const uint8_t *token;           /* shared secret; NULL: no auth */
	size_t token_len;
	const char *default_table;      /* created at start; NULL: none */
	/* Cluster membership (server/member.h); etcd NULL: none. */
	const char *etcd;               /* etcd endpoints, http://h:p,... */
	const char *cluster;            /* key prefix /<cluster>/ */
	const char *advertise;          /* NULL: the first listener's */
	uint32_t member_id;
	uint32_t member_ttl_s;          /* lease TTL */
	/* Checkpoints (server/ckpt.h); NULL: off. */
	const char *data_dir;
	bool no_restore;                /* do not load the newest at start */
	uint32_t auto_recover_s;        /* --auto-recover; 0: off */
	/* Hardening (net/PROTOCOL.md section 9, server/guard.c). */
	uint32_t auth_timeout_ms;       /* HELLO+AUTH done by then; >= 1 */
	uint32_t frame_timeout_ms;      /* a started frame whole by then */
	uint64_t inflight_bytes;        /* request bodies being received */
	uint32_t max_unauth_conns;      /* TCP connections not authed yet */
	uint32_t flags;                 /* reserved, must be 0 */
	/* Operations (logs, SIGHUP, metrics). */
	const char *token_file;         /* re-read on SIGHUP; NULL: none */
	const char *log_file;           /* stderr goes there; NULL: none */
	bool metrics;                   /* serve /metrics over HTTP */
	char metrics_host[EMBKVD_HOST_MAX + 1];
	uint16_t metrics_port;          /* 0: the kernel picks one */
	/* Serving replicas (server/repl.c, server/replica.c). */
	uint64_t repl_log_rows;         /* feed ring entries per partition;
					 * 0: the default */
	const char *const *replica_of;  /* tables followed (nreplica_of) */
	uint32_t nreplica_of;
	const char *primary_servers;    /* the primary: URL,URL,... */
};

/* Defaults: TCP on 127.0.0.1:7070, no RDMA, 1 owner and 1 I/O thread, no limit, 1024
 * connections, epoch 1, alone, no token, no default table. */
void embkvd_attr_init(struct embkvd_attr *attr);

/* Work handed back to an I/O thread (embkvd_io_post): finish runs there,
 * with the node out of the inbox. */
struct embkvd_done {
	struct cds_wfcq_node node;
	void (*finish)(struct embkvd_done *d);
};

struct embkvd_io;
struct embkvd_member;
struct embkvd_cluster;
struct embkvd_ckpt;
struct embkvd_verbs;
struct embkvd_vconn;
struct embkvd_metrics_http;
struct embkvd_guard;
struct embkvd_conf;
struct embkvd_replica;

struct embkvd {
	struct embkvd_attr attr;        /* strings below are copies */
	struct embkvd_map *map;         /* RCU: embkvd_map_cur(&s->map) */
	struct embkv_catalog *cat;
	struct embkv_owner_pool *owners;
	struct embkvd_io *io;
	uint32_t nio;
	int listen_fd, sig_fd, timer_fd, ep_fd;
	uint16_t port;                  /* bound port (TCP) */
	uint16_t rdma_port;             /* bound port (RDMA) */
	struct embkvd_verbs *verbs;     /* NULL: no rdma:// listener */
	struct embkvd_obpool *obpool;   /* large RDMA replies; NULL: none */
	struct embkvd_member *member;   /* NULL: no --etcd */
	struct embkvd_cluster *cluster; /* table catalog in etcd; NULL: none */
	struct embkvd_ckpt *ckpt;       /* --data-dir; NULL: none */
	bool auth;
	struct embkv_wire_auth_key key;
	uint64_t start_ns;
	uint32_t conns;                 /* open connections (atomic), but
					 * not TCP ones still authenticating */
	uint64_t rx_bytes;              /* bodies being received (atomic),
					 * <= attr.inflight_bytes */
	struct embkvd_guard *guard;     /* failed-auth throttle (guard.c) */
	struct embkvd_conf *conf;       /* what CONFIG reports (config.c) */
	struct embkv_rates rates;
	/* Operations: key_lock guards key against embkvd_token_reload()
	 * (SIGHUP, main thread). Readers on other threads copy it under
	 * key_lock (service.c's AUTH: one copy for the check and the
	 * reply) and wipe the copy. */
	pthread_mutex_t key_lock;
	char *token_file;               /* copies of attr's; NULL: none */
	char *log_file;
	struct embkvd_metrics_http *mhttp; /* NULL: no --metrics-listen */
	uint16_t metrics_port;          /* bound port of /metrics */
	struct embkvd_replica *replica; /* NULL: no --replica-of */
};

/* Binds, creates the default table and starts every thread; SIGINT and
 * SIGTERM are blocked in the calling thread (and so in all threads) and
 * read by embkvd_run(). Call from the main thread, once. */
int embkvd_create(const struct embkvd_attr *attr,
		  struct embkvd **out);
/* Serves until SIGINT or SIGTERM: 0, or a negative errno. */
int embkvd_run(struct embkvd *s);
/* Stops accepting, closes connections, joins threads, frees tables. */
void embkvd_destroy(struct embkvd *s);

/* Inside rcu_read_lock(): the shard map that places table e (its own in
 * cluster mode, else the server's). */
static inline const struct embkvd_map *
embkvd_table_map(struct embkvd *s, struct embkv_catalog_entry *e)
{
	const struct embkvd_map *m = rcu_dereference(e->map);

	return m ? m : embkvd_map_cur(&s->map);
}

/* The current shard-map epoch (any registered thread). */
uint64_t embkvd_epoch(struct embkvd *s);
/*
 * Creates a table with this server's share of its partitions loaded (the
 * shard map decides which); uid 0 draws a fresh one: embkv_catalog_add's
 * results.
 */
int embkvd_table_add(struct embkvd *s,
		     const struct embkv_table_attr *attr, uint64_t uid,
		     uint32_t *id, uint64_t *uid_out);

/* A listening TCP socket (non-blocking, close-on-exec, SO_REUSEADDR) on
 * host:port (0: the kernel picks); *bound gets the port. 0 or -errno
 * (-EADDRNOTAVAIL when the host does not resolve). */
int embkvd_listen_tcp(const char *host, uint16_t port, int backlog,
		      int *fd_out, uint16_t *bound);
/* The I/O threads' counters summed, and their latency histograms merged
 * (any thread; relaxed reads). */
void embkvd_io_stats_sum(struct embkvd *s, struct embkv_io_stats *sum,
			 struct embkv_hist *pull, struct embkv_hist *push);

/* Log levels of embkvd_log_at(). */
enum embkvd_log_level {
	EMBKVD_INFO,
	EMBKVD_WARN,
	EMBKVD_ERROR,
};

/* One log line to stderr: "2026-01-02T03:04:05.678Z LEVEL embkvd: msg"
 * (UTC, milliseconds), written with one call so lines never interleave.
 * embkvd_log() is embkvd_log_at(EMBKVD_INFO, ...). */
void embkvd_log_at(enum embkvd_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void embkvd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Points stderr (fd 2) at path, opened for appending (created 0644): the
 * log, and anything else written to stderr. 0 or -errno (stderr as it
 * was). */
int embkvd_log_open(const char *path);
/* SIGHUP: re-reads the token file (if the server was given one) into
 * s->key, under s->key_lock. 0 or -errno (the old key stays). */
int embkvd_token_reload(struct embkvd *s);

/* ---- I/O threads (io.c) ------------------------------------------------ */

struct embkvd_io {
	struct embkvd *srv;
	uint32_t idx;
	pthread_t thread;
	bool started;
	int epfd, efd;                  /* epoll; eventfd for the inbox */
	struct __cds_wfcq_head inbox_head; /* completions from owners */
	struct cds_wfcq_tail inbox_tail;
	bool stop;                      /* atomic */
	struct cds_list_head conns;     /* open connections */
	struct cds_list_head flush;     /* connections with output to send */
	struct cds_list_head dead;      /* closed, to free after this round */
	uint32_t nclosing;              /* connections lingering */
	uint32_t nwaiting;              /* verbs connections being set up */
	uint64_t inflight;              /* batch requests at owners */
	bool inline_ok;                 /* this round: may run a job itself */
	bool inlined;                   /* this round: ran one (drain inbox) */
	uint8_t *stage;                 /* read staging buffer */
	bool listening;
	uint64_t accept_retry_ns;       /* after EMFILE: when to listen again */
	uint64_t reject_log_ns;         /* last "too many connections" log */
	/* Deadlines (io.c): connections not authenticated yet, oldest
	 * first; those with a partial frame; those waiting for body budget. */
	struct cds_list_head unauth;
	uint32_t nunauth, npartial, nbudget_wait;
	uint32_t max_unauth;            /* this thread's share */
	uint64_t scan_ns;               /* next deadline scan */
	struct embkv_io_stats st;
} __attribute__((aligned(64)));

int embkvd_io_start(struct embkvd_io *io, struct embkvd *srv,
		    uint32_t idx);
/* Closes every connection, waits for its requests at the owners, joins
 * the thread. The owners may still be inside embkvd_io_post() for it: call
 * embkvd_io_fini() only after they were joined. */
void embkvd_io_stop(struct embkvd_io *io);
/* Frees what embkvd_io_start() set up. */
void embkvd_io_fini(struct embkvd_io *io);
/* Any thread: hands a finished request (a struct embkvd_done's node) back
 * to its I/O thread, which runs its finish. */
void embkvd_io_post(struct embkvd_io *io, struct cds_wfcq_node *node);

/* ---- connections (io.c) ------------------------------------------------ */

/* struct embkvd_obuf, embkvd_obuf_free: server/obpool.h */

enum embkvd_conn_auth {
	EMBKVD_CONN_AUTH_WAIT_HELLO,    /* token set: nothing seen yet */
	EMBKVD_CONN_AUTH_WAIT_AUTH,     /* HELLO answered with our nonce */
	EMBKVD_CONN_AUTH_OK,            /* authenticated, or no token */
};

enum embkvd_conn_rd {
	EMBKVD_CONN_RD_HDR,
	EMBKVD_CONN_RD_BODY,
	EMBKVD_CONN_RD_SKIP,            /* discarding a body (unknown opcode) */
};

struct embkvd_conn {
	struct cds_list_head link;      /* io->conns */
	struct cds_list_head flush_link;
	struct embkvd_io *io;
	struct embkvd_vconn *vc;        /* RDMA (verbs_conn.c); NULL: TCP */
	int fd;                         /* TCP socket; -1 for RDMA */
	bool open;                      /* socket still open */
	bool on_flush;
	bool closing;                   /* error sent: flush, then close */
	bool lingering;                 /* closing and write side shut */
	bool rd_eof;
	bool want_out;                  /* EPOLLOUT armed */
	uint32_t events;                /* epoll interest now */
	uint32_t inflight;              /* batch requests at owners */
	size_t inflight_bytes;          /* their memory */
	uint64_t deadline_ns;           /* closing: close by then anyway */
	/* Frame being read. */
	enum embkvd_conn_rd rd;
	uint8_t hdr[EMBKV_WIRE_HDR_SIZE];
	uint32_t hdr_got;
	struct embkv_wire_hdr h;
	uint8_t *body;
	uint32_t body_got;
	uint64_t skip_left;
	uint32_t body_cap;              /* bytes allocated at body */
	uint32_t body_charged;          /* of them, charged to srv->rx_bytes */
	uint64_t frame_deadline_ns;     /* partial frame: close by then; 0 */
	bool budget_wait;               /* body needs budget: not reading */
	bool uncounted;                 /* not in srv->conns (authenticating) */
	bool spoke;                     /* a whole frame came in */
	struct cds_list_head unauth_link; /* io->unauth while uncounted */
	uint64_t auth_deadline_ns;      /* uncounted: close by then; no
					 * token: evictable after it unless
					 * it spoke */
	char peer[64];                  /* "host:port" of the peer */
	struct sockaddr_storage peer_sa;
	/* Output. */
	struct embkvd_obuf *out_head, *out_tail;
	size_t out_bytes;
	/* Authentication. */
	enum embkvd_conn_auth auth;
	uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE];
	uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE];
};

/*
 * Queues a reply frame of body_len bytes with opcode op (a reply opcode or
 * ERROR), req_id and the server's epoch; *body gets where to write the
 * body, valid until the I/O thread returns to its loop. 0, -ENOMEM, or
 * -ENOTCONN when c is closed already.
 */
int embkvd_conn_reply(struct embkvd_conn *c, uint64_t req_id, uint8_t op,
		      uint32_t body_len, uint8_t **body);
/* An output buffer for a frame of len bytes at ob->data (8-byte aligned,
 * so a body right after the header is too) to be sent on c (NULL: any
 * connection); NULL when out of memory. A large frame for an RDMA
 * connection comes from the server's pool of registered reply buffers
 * (server/obpool.c), any other is malloc'ed. */
struct embkvd_obuf *embkvd_obuf_alloc(const struct embkvd_conn *c,
				      size_t len);
/* Queues ob (a whole frame); ownership passes, even if c is closed. */
void embkvd_conn_send(struct embkvd_conn *c, struct embkvd_obuf *ob);
/* Queues ERROR status with a message; close: then closes the connection
 * (after sending what is queued, best effort). */
void embkvd_conn_error(struct embkvd_conn *c, uint64_t req_id, int status,
		       bool close, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The same ERROR for an expected outcome (a table name looked up that
 * does not exist: the open-or-create of every trainer): counted in the
 * misses counter, not in errors; the connection stays open. */
void embkvd_conn_miss(struct embkvd_conn *c, uint64_t req_id, int status,
		      const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * Admission of a frame header that embkv_wire_hdr_decode() returned rc
 * for, in net/PROTOCOL.md's order (limits, authentication, pre-auth body
 * size, reply opcodes): 0 to go on with the body; 1 when an ERROR was
 * queued and the body is to be skipped; -1 when an ERROR was queued and
 * the connection is closing.
 */
int embkvd_conn_admit(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		      int rc);
/* Closes now (frees the socket or the verbs resources, drops queued
 * output); the memory lives while batch requests hold it. */
void embkvd_conn_close(struct embkvd_conn *c);
/* Sends what is queued, then closes. */
void embkvd_conn_set_closing(struct embkvd_conn *c);
/* A batch request in flight (holding bytes of memory) keeps the
 * connection's memory alive and counts toward its backpressure. */
void embkvd_conn_hold(struct embkvd_conn *c, size_t bytes);
void embkvd_conn_release(struct embkvd_conn *c, size_t bytes);

/* ---- hardening (guard.c) ---------------------------------------------- */

/* GUARD_MAX_FAILS failed authentications from one address within
 * GUARD_WINDOW_MS block it for GUARD_BLOCK_MS (CONFIG reports them). */
#define EMBKVD_GUARD_MAX_FAILS 5u
#define EMBKVD_GUARD_WINDOW_MS 10000u
#define EMBKVD_GUARD_BLOCK_MS 5000u
int embkvd_guard_create(struct embkvd_guard **out);
void embkvd_guard_destroy(struct embkvd_guard *g);
/* Milliseconds that sa must still wait before its next authentication
 * attempt is served (0: go on). Any thread. */
uint64_t embkvd_guard_blocked_ms(struct embkvd_guard *g,
				 const struct sockaddr_storage *sa);
/* Records a failed (ok false) or good authentication from sa. */
void embkvd_guard_note(struct embkvd_guard *g,
		       const struct sockaddr_storage *sa, bool ok);
/* "host:port" of sa into buf (cap >= 64). */
void embkvd_peer_format(const struct sockaddr_storage *sa, char *buf,
			size_t cap);
/* A connection finished authentication: it now counts in srv->conns,
 * unless --max-conns is reached (then 0 is returned as -EMFILE, and an
 * ERROR was queued and the connection is closing). I/O thread. */
int embkvd_conn_authed(struct embkvd_conn *c);
/* With a token: c (just accepted, on io->conns) must authenticate within
 * --auth-timeout-ms; it joins io->unauth, oldest first. I/O thread. */
void embkvd_conn_auth_deadline(struct embkvd_conn *c);

/* ---- request handling -------------------------------------------------- */

/* service.c: one whole, header-checked frame; takes ownership of body
 * (malloc'ed, h->body_len bytes; NULL when empty). I/O thread. */
void embkvd_svc_frame(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
		      uint8_t *body, uint64_t t0_ns);

/*
 * service.c: the catalog entry that a request's table id and uid name,
 * with a reference for the caller to put; NULL when they name none (an
 * unknown id, or a uid that is not the id's table's: it was dropped or
 * re-created), after answering req_id with ERROR EMBKV_ENOTABLE. c's I/O
 * thread, outside rcu_read_lock().
 */
struct embkv_catalog_entry *embkvd_svc_table_get(struct embkvd_conn *c,
						 uint64_t req_id, uint32_t id,
						 uint64_t uid);

/* The same lookup without an answer: NULL with the reason in why (the
 * status is EMBKV_ENOTABLE). Any thread of c's I/O, inside or outside
 * rcu_read_lock(). */
struct embkv_catalog_entry *embkvd_svc_table_find(struct embkvd_conn *c,
						  uint32_t id, uint64_t uid,
						  char *why, size_t why_len);

/* batch.c: PULL, PUSH, ASSIGN, ERASE and HITS; same contract. */
void embkvd_batch_start(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
			uint8_t *body, uint64_t t0_ns);
/* batch.c: MULTI_PULL and MULTI_PUSH (PROTOCOL.md 5.25): each section run
 * as the PULL or PUSH it holds, one reply when all are done; same
 * contract. */
void embkvd_multi_start(struct embkvd_conn *c, const struct embkv_wire_hdr *h,
			uint8_t *body, uint64_t t0_ns);
/* I/O thread: a request posted back with embkvd_io_post(). */
void embkvd_batch_finish(struct embkvd_done *d);

/* report.c: STATS and SHARD_MAP requests (body already decoded; uid 0
 * with EMBKV_WIRE_TABLE_ALL). */
void embkvd_report_stats(struct embkvd_conn *c, uint64_t req_id,
			 uint32_t table_id, uint64_t uid);
void embkvd_report_shard_map(struct embkvd_conn *c, uint64_t req_id,
			     uint32_t table_id, uint64_t uid);
/* CONFIG (config.c): the effective configuration as JSON, never the
 * token. _keep copies the string flags embkvd_create() drops; _free
 * frees them (safe when _keep failed or never ran). */
int embkvd_config_keep(struct embkvd *s, const struct embkvd_attr *attr);
void embkvd_config_free(struct embkvd *s);
void embkvd_report_config(struct embkvd_conn *c,
			  const struct embkv_wire_hdr *h, const uint8_t *body);

#endif
