/*
 * libembkv internals: the client, its servers and their connection pools,
 * the RPC exchange engine, shard maps of open tables and the async pool.
 * Not installed; tests include it to reach the pieces below.
 *
 * Ownership and threads, in one place:
 * - struct embkv_client owns its servers (never removed, so a server
 *   index and its address stay valid until destroy) and their idle
 *   connections. servers[] is allocated at its largest size at create;
 *   new entries are published with a release store of nservers.
 * - A connection (struct embkv_cconn) is used by one thread at a time: it
 *   is taken from its server's pool for one exchange and given back after.
 *   A connection that saw any error or timeout is closed on return, never
 *   reused (its framing or pending replies cannot be trusted).
 * - A table handle's shard map is immutable once published and
 *   reference-counted; a refresh publishes a new one under the handle's
 *   lock.
 */
#ifndef EMBKV_CLIENT_CLIENT_H
#define EMBKV_CLIENT_CLIENT_H

#include <pthread.h>
#include <stdint.h>
#include <embkv/embkv.h>
#include "net/transport.h"
#include "net/wire.h"

#define EMBKV_CLIENT_CONNECT_MS_DEFAULT 5000u
#define EMBKV_CLIENT_REQUEST_MS_DEFAULT 30000u
#define EMBKV_CLIENT_RETRIES_DEFAULT 3u
#define EMBKV_CLIENT_CONNS_DEFAULT 8u
#define EMBKV_CLIENT_CONNS_MAX 256u
#define EMBKV_CLIENT_ASYNC_DEFAULT 2u
#define EMBKV_CLIENT_ASYNC_MAX 64u
#define EMBKV_CLIENT_TOKEN_MAX 4096u  /* bytes of a token */
#define EMBKV_NO_TABLE UINT32_MAX     /* table id not known on a server */

struct embkv_async;
struct embkv_rpc;

/* A pooled connection: authenticated, framing intact while !broken. */
struct embkv_cconn {
	struct embkv_conn *tc;
	struct embkv_cconn *next;   /* idle list link */
	struct embkv_rx rx;         /* reply being received */
	uint64_t next_req_id;
	uint32_t server;
	int broken;
};

struct embkv_server {
	char addr[EMBKV_WIRE_ADDR_MAX + 1]; /* as given, or as a map named it */
	/* The transport's limits, from the first connection (under lock;
	 * 0 until then). onesided: the transport reads one-sided. */
	struct embkv_conn_limits limits;
	int onesided;
	char alias[EMBKV_WIRE_ADDR_MAX + 1]; /* another name a map gave it */
	struct embkv_endpoint ep;
	pthread_mutex_t lock;               /* idle, nconns */
	pthread_cond_t freed;               /* a connection came back */
	struct embkv_cconn *idle;
	uint32_t nconns;                    /* open: idle plus in use */
	/* atomic: how the last try to reach it ended
	 * (embkv_client_server_status) */
	int status;
	/* atomic: it answered MULTI_PULL/MULTI_PUSH with EMBKV_EOPCODE (an
	 * older server): multi-table calls send it per-table frames */
	int no_multi;
};

/*
 * Frame buffers kept for the next call: a batch's request frames and
 * replies are up to megabytes each, and freeing them after every call
 * gives the memory back to the kernel, so each call faulted fresh zeroed
 * pages in again (measured: push throughput nearly doubled with buffers
 * kept). At most EMBKV_BUFPOOL_MAX buffers and EMBKV_BUFPOOL_BYTES bytes.
 */
#define EMBKV_BUFPOOL_MAX 32u
#define EMBKV_BUFPOOL_BYTES (64u << 20)

struct embkv_bufpool {
	pthread_mutex_t lock;
	struct embkv_buf bufs[EMBKV_BUFPOOL_MAX];
	uint32_t n;
	size_t bytes;
};

struct embkv_client {
	uint32_t connect_timeout_ms, request_timeout_ms, max_retries;
	uint32_t max_conns, async_threads;
	/* Largest rows per request; 0: the wire limit. Tests lower it to
	 * exercise batch splitting without huge batches. */
	uint32_t rows_cap;
	int has_key;
	struct embkv_wire_auth_key key;     /* derived from the token */
	pthread_mutex_t lock;               /* adding servers */
	struct embkv_server **servers;      /* EMBKV_WIRE_MAX_SERVERS slots */
	uint32_t nservers;                  /* atomic: published entries */
	struct embkv_async *async;
	struct embkv_client_counters cnt;   /* atomic adds */
	int no_onesided;                    /* tests: pulls by RPC only */
	/* The servers said (membership epoch 0) that etcd coordinates
	 * their tables: one of them creates or drops for all. Atomic. */
	int coordinated;
	uint32_t loccache_entries;          /* per table; 0: default */
	struct embkv_bufpool pool;
};

/* Gives b's memory a kept buffer when b has none and one is kept. */
void embkv_client_buf_take(struct embkv_client *c, struct embkv_buf *b);
/* Keeps b's memory for a later call (within the pool's limits, else frees
 * it); b is left empty. */
void embkv_client_buf_give(struct embkv_client *c, struct embkv_buf *b);

/* Adds v to one of c->cnt's fields. */
#define EMBKV_COUNT(c, field, v) \
	__atomic_add_fetch(&(c)->cnt.field, (uint64_t)(v), __ATOMIC_RELAXED)

/* Servers and connections (client.c) --------------------------------------- */

/* pthread_cond_init with CLOCK_MONOTONIC (embkv_now_ms deadlines). */
int embkv_cond_init_monotonic(pthread_cond_t *cond);

/*
 * Index of the server with this address (any thread): the one known by
 * that name, else one with the same scheme and port whose host resolves to
 * the same address (remembered as its alias), else a new entry. -EINVAL
 * for a bad address, EMBKV_ELIMIT when the server table is full.
 */
int embkv_client_server_find(struct embkv_client *c, const char *addr,
			     size_t len, uint32_t *index);
struct embkv_server *embkv_client_server(const struct embkv_client *c,
					 uint32_t index);
/*
 * Records that server index also goes by addr (what the server called
 * itself in its membership). 0; -EINVAL when addr already names another
 * server (the same server given twice under two names). Any thread.
 */
int embkv_client_server_alias(struct embkv_client *c, uint32_t index,
			      const char *addr, size_t len);
/* Records how a try to reach server ended (embkv_client_server_status). */
void embkv_client_server_seen(struct embkv_client *c, uint32_t server,
			      int status);
/* The same from an exchanged rpc: reached when it got any reply. */
void embkv_client_rpc_seen(struct embkv_client *c, const struct embkv_rpc *r);
/*
 * Takes a connection to server (an idle one, or a new one when fewer than
 * max_conns are open, connected and authenticated), waiting for one until
 * deadline (EMBKV_ETIMEDOUT). The caller owns *out until conn_put().
 */
int embkv_client_conn_get(struct embkv_client *c, uint32_t server,
			  uint64_t deadline, struct embkv_cconn **out);
/* Gives cc back: to the idle list, or closed when cc->broken. */
void embkv_client_conn_put(struct embkv_client *c, struct embkv_cconn *cc);
/* server's limits (zeros: only the wire's) and whether it reads
 * one-sided. Any thread. */
void embkv_client_server_limits(struct embkv_client *c, uint32_t server,
				struct embkv_conn_limits *out, int *onesided);

/* RPC exchange (rpc.c) ------------------------------------------------------ */

/*
 * One request and its reply. The caller fills server and req (a whole
 * frame: embkv_rpc_frame()) and may use user_off/user_n for its own
 * bookkeeping. After embkv_rpc_exchange(): status 0 and the reply in rep
 * (body, body_len; rhdr its header), or status < 0: the status of an ERROR
 * reply (rhdr valid, has_reply 1: e.g. EMBKV_ESTALE with the server's
 * epoch) or a local error (connection, timeout, malformed reply).
 */
struct embkv_rpc {
	uint32_t server;
	struct embkv_buf req;
	uint32_t user_off, user_n;
	int status;
	int has_reply;
	struct embkv_wire_hdr rhdr;
	struct embkv_buf rep;
	const uint8_t *body;
	size_t body_len;
	/* Set by the caller (NULL: none): called once by the exchange as soon
	 * as this rpc's reply has come and is not an error, while the other
	 * rpcs may still be in flight, so the caller consumes replies as they
	 * arrive. What it returns is kept in consume_rc: with on_reply set,
	 * an rpc that ends with status 0 was consumed, and consume_rc says
	 * how that went. */
	int (*on_reply)(void *ctx, const struct embkv_rpc *r);
	void *on_reply_ctx;
	int consume_rc;
	/* Set by the caller (NULL: none): called by the exchange with the
	 * connection the request will go on, before anything of that
	 * server's requests is sent, to complete what depends on the
	 * connection (a landing pull's rkey, valid only on the connection
	 * that registered it). Not 0: none of that server's requests of the
	 * exchange are sent (on_conn is not called for the rest), each fails
	 * with that status and unsent set, and the connection stays
	 * usable. */
	int (*on_conn)(void *ctx, struct embkv_rpc *r, struct embkv_cconn *cc);
	/* Set by the caller or on_conn: the request's last tail_len bytes
	 * are at tail, in tail_region of the connection (send_gather), not
	 * in req (whose len leaves them out; its header counts them). */
	const void *tail, *tail_region;
	size_t tail_len;
	int unsent;             /* failed by on_conn: never sent */
	/* exchange private */
	uint64_t req_id;
	size_t sent;
	int done;
};

void embkv_rpc_init(struct embkv_rpc *r, uint32_t server);
/* embkv_rpc_init with kept buffers for the request and the reply; end it
 * with embkv_rpc_release. */
void embkv_rpc_init_pooled(struct embkv_client *c, struct embkv_rpc *r,
			   uint32_t server);
/* Gives r's buffers back to c's pool; r may be initialized again. */
void embkv_rpc_release(struct embkv_client *c, struct embkv_rpc *r);
/* Frees req and rep; r may be initialized again. */
void embkv_rpc_clear(struct embkv_rpc *r);
/* Starts r->req as a frame of opcode op with this epoch and body_len bytes
 * of body at *body (8-byte aligned) for the caller to fill. */
int embkv_rpc_frame(struct embkv_rpc *r, uint8_t op, uint64_t epoch,
		    size_t body_len, uint8_t **body);
/*
 * Sends every request, pipelined on one connection per server and to all
 * servers at once from this thread, and collects every reply (matched by
 * request id, in any order) until deadline. Always fills every rpc's
 * status; returns 0, or -ENOMEM when it could not start.
 */
int embkv_rpc_exchange(struct embkv_client *c, struct embkv_rpc *rpcs,
		       uint32_t n, uint64_t deadline);
/* The request deadline of a call starting now. */
uint64_t embkv_client_deadline(const struct embkv_client *c);

/* Membership (members.c) ------------------------------------------------------ */

/*
 * Asks each of the first ngiven servers that is reachable
 * (embkv_client_server_status 0) for the cluster's members, checks that
 * they all report the same ones (else EMBKV_ECLUSTER), records the name
 * each one calls itself, and adds the members the client does not know
 * (not connected yet). A server that answers with an error (one that
 * reports no membership) is left out; one that cannot be reached fails the
 * call unless allow_down. 0 or a negative status. Client creation only.
 */
int embkv_members_learn(struct embkv_client *c, uint32_t ngiven,
			int allow_down);

/* Shard maps (table.c) ------------------------------------------------------- */

struct embkv_shardmap {
	uint64_t epoch;
	uint32_t nparts, part_bits;
	uint32_t nsrv;           /* servers of the map */
	uint16_t *part_srv;      /* nparts: map server index */
	uint32_t *srv;           /* nsrv: client server index */
	/* nsrv: the table's id and uid on that server, learned when the
	 * handle opened the table there and sent in every frame. Never
	 * learned again for a server already known: a server that lost the
	 * table answers EMBKV_ENOTABLE until the user opens it again. */
	struct embkv_wire_table_ref *tref;
	int refs;                /* atomic */
};

struct embkv_onesided;

struct embkv_table_handle {
	struct embkv_client *c;
	struct embkv_table_attr attr;
	/* Row sizes, set once at open from attr (TABLE_OPEN): the one place
	 * the client computes them. row_bytes: a row as the API and the
	 * wire carry it (dim floats). payload_bytes: a row as the servers
	 * store it (dim elements of attr.dtype); rec_len: a stored record's
	 * header and payload, what a one-sided READ fetches. (Where records
	 * sit, their stride, each server says in TABLE_REGIONS.) */
	size_t row_bytes;
	size_t payload_bytes;
	uint32_t rec_len;
	uint32_t rows_cap;       /* rows per request */
	pthread_mutex_t lock;    /* map */
	struct embkv_shardmap *map;
	struct embkv_onesided *os; /* one-sided pull state, or NULL */
};

/* The current map with a reference; give it back with _put. */
struct embkv_shardmap *embkv_shardmap_get(struct embkv_table_handle *t);
void embkv_shardmap_put(struct embkv_shardmap *m);
/*
 * Fetches SHARD_MAP (from server hint first, a client server index, or
 * any server of the current map), opens the table on servers the new map
 * names for the first time, and publishes it when its epoch is newer than
 * the current one. *newer gets 1 when it was.
 */
int embkv_shardmap_refresh(struct embkv_table_handle *t, uint32_t hint,
			   int *newer);

/* One-sided pull (onesided.c) -------------------------------------------------- */

/*
 * After t's map is in: when a server of the map reads one-sided, sets up
 * t->os (location cache, hit counts) and fetches the table's regions
 * (TABLE_REGIONS) from those servers. Failing to get regions is not an
 * error: those servers are pulled by RPC. 0 or -ENOMEM.
 */
int embkv_onesided_open(struct embkv_table_handle *t);
/* Sends the hits still counted, waits for background sends, frees. */
void embkv_onesided_close(struct embkv_table_handle *t);
/*
 * Serves what it can of the distinct keys pend[0..*npend) (indexes into
 * ukeys and upart) by one-sided READs on map m, calling deliver(ctx, u,
 * row) for each key u served (row: as stored, t->payload_bytes bytes,
 * valid during the call).
 * *npend shrinks to the keys left for the RPC path (order kept). Never
 * fails: whatever goes wrong sends keys to the RPC path.
 */
void embkv_onesided_pull(struct embkv_table_handle *t, struct embkv_shardmap *m,
			 const uint64_t *ukeys, const uint32_t *upart,
			 uint32_t *pend, uint32_t *npend,
			 void (*deliver)(void *ctx, uint32_t u, const void *row),
			 void *ctx);

/*
 * The one-sided pull into landing memory (the GPUDirect path of
 * client/gpu.c): the records of the distinct keys ukeys[first ..
 * first + count) are READ into base + (u - first) * stride, memory the
 * caller registers on each connection through reg (read_region, id
 * naming that allocation), and check(arg, first, count, verdict) judges
 * them where they landed after each round of READs, writing every
 * record's verdict (enum embkv_record_verdict) to verdict[0..count).
 * The caller zeroes the landing range before. Keys (u) not served: in
 * rest[] (*nrest) those READs were tried for (missing keys, records torn
 * too often: for the RPC path), in untried[] (*nuntried) those no READ
 * was posted for (no regions, the slab not registrable on that
 * connection, no connection: the host path may still READ them). Both
 * have room for count. Never fails: what goes wrong leaves keys.
 */
struct embkv_os_landing {
	void *base;
	size_t bytes, stride;     /* stride >= t->rec_len, a multiple of 8 */
	uint64_t id;
	embkv_region_reg_fn reg;
	void *reg_arg;
	int (*check)(void *arg, uint32_t first, uint32_t count,
		     uint8_t *verdict);
	void *arg;
	uint8_t *verdict;         /* host, count bytes */
};
void embkv_onesided_land(struct embkv_table_handle *t, const uint64_t *ukeys,
			 uint32_t first, uint32_t count,
			 const struct embkv_os_landing *land, uint32_t *rest,
			 uint32_t *nrest, uint32_t *untried, uint32_t *nuntried);

/* Async pool (async.c) ------------------------------------------------------ */

/* Runs fn(arg) on a worker, detached (nobody waits for it). 0, or an
 * error and fn was not queued. */
int embkv_async_job(struct embkv_client *c, void (*fn)(void *arg), void *arg);

/* embkv_op_wait, and a push's applied count into *applied (may be
 * NULL; 0 for a pull). */
int embkv_op_wait_applied(struct embkv_op *op, uint32_t *applied);

int embkv_async_create(struct embkv_client *c);
/* Runs every queued operation, then stops the workers. */
void embkv_async_destroy(struct embkv_client *c);

/* Synchronous batch operations, shared by the API and async workers
 * (ops.c). */
enum embkv_batch_op {
	EMBKV_BATCH_PULL,
	EMBKV_BATCH_PUSH,
	EMBKV_BATCH_ASSIGN,
	EMBKV_BATCH_ERASE,
	EMBKV_BATCH_ACCUMULATE,
	EMBKV_BATCH_PULL_LAND,    /* PULL_LAND into args.land (GPUDirect) */
	EMBKV_BATCH_PUSH_DEV,     /* PUSH, rows gathered from args.dev */
	EMBKV_BATCH_OP_COUNT,
};

/*
 * A landing pull's destination (EMBKV_BATCH_PULL_LAND, net/PROTOCOL.md
 * 5.26): servers RDMA-WRITE the keys' records into slots of stride bytes
 * from base (bytes of room; memory registered per connection through reg
 * as read_region does, id naming it), a frame's keys in consecutive slots
 * in the order the call assigns. The keys of the call must be distinct.
 * Out: slot_pos[k] (room for n) = the position in keys whose record slot
 * k holds, for k < *nslots; state[p] (n, set to LAND_UNANSWERED by the
 * caller) = the enum embkv_wire_land_state of key p, or LAND_UNANSWERED
 * when its frame got no good answer (an error, or no room in the slots:
 * the call's status says which; keys answered stay answered).
 */
#define EMBKV_LAND_UNANSWERED 0xffu

/*
 * A push whose rows leave registered memory (EMBKV_BATCH_PUSH_DEV, the
 * GPUDirect push): each round, gather(arg, pos, m) lays the rows of the
 * call's keys pos[0..m) (positions in keys, which must be distinct) at
 * base + k * dim floats, and each PUSH frame's SEND gathers its keys from
 * host memory and its rows from there (send_gather; base registered per
 * connection through reg as read_region does, id naming it). Out:
 * unsent[p] (n, zeroed by the caller) = 1 for keys whose frame was never
 * sent (a server whose connection cannot take the memory): not applied,
 * for the caller to push another way; the call's status leaves them out.
 */
struct embkv_push_dev {
	void *base;
	size_t bytes;
	uint64_t id;
	embkv_region_reg_fn reg;
	void *reg_arg;
	int (*gather)(void *arg, const uint32_t *pos, uint32_t m);
	void *arg;
	uint8_t *unsent;
};
struct embkv_land_rpc {
	void *base;
	size_t bytes;
	uint32_t stride;
	uint64_t id;
	embkv_region_reg_fn reg;
	void *reg_arg;
	uint32_t *slot_pos;
	uint8_t *state;
	uint32_t nslots;
};

struct embkv_batch_args {
	struct embkv_table_handle *t;
	enum embkv_batch_op op;
	uint32_t n;
	const uint64_t *keys;
	const float *vals;        /* push: grads; assign: values */
	void *out;                /* pull: floats, or stored rows (raw) */
	uint8_t *found;           /* pull, may be NULL */
	enum embkv_mode mode;     /* pull */
	const void *dflt;         /* pull, may be NULL; a row like out's */
	bool raw;                 /* pull: rows as stored (embkv_pull_raw) */
	bool rpc_only;            /* pull: no one-sided READs (the GPUDirect
				   * pull's leftovers: already tried) */
	struct embkv_land_rpc *land; /* PULL_LAND */
	struct embkv_push_dev *dev;  /* PUSH_DEV */
	uint32_t *done;           /* push: applied; erase: erased; may be NULL */
};

/* Checks args without side effects: 0 or -EINVAL. */
int embkv_batch_check(const struct embkv_batch_args *a);
int embkv_batch_run(const struct embkv_batch_args *a);

/*
 * One table's share of a multi-table call (client/multi.c drives it; the
 * state and rounds are ops.c's): begin dedups the keys, computes their
 * partitions and serves a pull's one-sided keys (a is copied); route
 * groups the pending keys by server of m (off: m->nsrv + 1 entries, into
 * the op's order) and starts an empty retry list; the section calls size,
 * fill and consume the bodies of keys order[at, at + n) as a PULL/PUSH
 * would; retry puts such keys back for the per-table rounds (stale: the
 * server answered EMBKV_ESTALE with its epoch), fail records the op's
 * first error; end runs the per-table rounds for the keys put back
 * (unless it failed), writes *done, frees the op and returns its status.
 */
struct embkv_share;
int embkv_share_begin(const struct embkv_batch_args *a, struct embkv_share **out);
int embkv_share_route(struct embkv_share *o, const struct embkv_shardmap *m,
		   uint32_t *off);
/* Rows per section whose request and reply bodies fit these sizes. */
uint32_t embkv_share_rows_fit(const struct embkv_share *o, size_t max_req,
			   size_t max_rep);
int embkv_share_section_size(const struct embkv_share *o, uint32_t n,
			  size_t *req_len, size_t *rep_len);
int embkv_share_section_fill(struct embkv_share *o, uint32_t at, uint32_t n,
			  const struct embkv_wire_table_ref *tref,
			  uint8_t *body, size_t len);
int embkv_share_section_consume(struct embkv_share *o, uint32_t at, uint32_t n,
			     const uint8_t *body, size_t len);
void embkv_share_retry(struct embkv_share *o, uint32_t at, uint32_t n, int stale,
		    uint64_t epoch, uint32_t server);
void embkv_share_fail(struct embkv_share *o, int rc);
int embkv_share_end(struct embkv_share *o, uint64_t deadline);

/* The multi-table calls as separate per-table batches run at once
 * (extra.c; the path for servers without MULTI_PULL/MULTI_PUSH). */
int embkv_multi_separate(struct embkv_multi_req *reqs, uint32_t nreq,
			 int push, enum embkv_mode mode);

/* JSON requests (ckpt.c; checkpoints and moves) -------------------------------- */

/* Milliseconds since the epoch (ids of checkpoints and copies). */
uint64_t embkv_wall_ms(void);
/* Puts the message into res->error unless one is there; returns status. */
int embkv_res_fail(struct embkv_ckpt_result *res, int status,
		   const char *fmt, ...) __attribute__((format(printf, 3, 4)));

struct json_t;

/* One request with a JSON body (or a blob: JSON, then raw bytes) to one
 * server, and its parsed reply. */
struct embkv_jreq {
	struct embkv_rpc rpc;
	struct json_t *reply;           /* the reply's JSON (a blob's part) */
	const uint8_t *raw;             /* a blob reply's raw bytes (in rpc) */
	size_t raw_len;
	char msg[EMBKV_WIRE_ERRMSG_MAX + 1]; /* why it failed */
	void *user;
};

/* Builds q (opcode op, body as JSON; raw_len bytes of raw after it make
 * a blob, with "n" set to raw_len in the body sent). 0 or -ENOMEM /
 * EMBKV_ELIMIT; embkv_jreq_clear() is safe either way. */
int embkv_jreq_init(struct embkv_jreq *q, uint32_t server, uint8_t op,
		    const struct json_t *body, void *user);
int embkv_jreq_init_blob(struct embkv_jreq *q, uint32_t server, uint8_t op,
			 struct json_t *body, const void *raw,
			 size_t raw_len);
/* Exchanges n requests at once and parses their replies; each q's
 * rpc.status says how it went, msg why not. */
void embkv_jreq_run(struct embkv_client *c, struct embkv_jreq *q, uint32_t n,
		    uint32_t timeout_ms);
void embkv_jreq_clear(struct embkv_jreq *q);
/* The same request to every server: replies in (*out)[0..*n). */
int embkv_jreq_ask_all(struct embkv_client *c, uint8_t op,
		       const struct json_t *body, struct embkv_jreq **out,
		       uint32_t *n);
void embkv_jreq_ask_free(struct embkv_jreq *q, uint32_t n);

#endif /* EMBKV_CLIENT_CLIENT_H */
