/*
 * embkv public API: status codes, table attributes and the client
 * library (libembkv: link with -lembkv, pkg-config embkv, or CMake's
 * find_package(embkv) and embkv::embkv).
 *
 * This header is the only one a trainer, an inference pod or an operator
 * tool includes. It carries no verbs or CUDA types. The functions before
 * the client part are pure (no I/O) and may be called from any thread;
 * the client part says what each call does.
 */
#ifndef EMBKV_EMBKV_H
#define EMBKV_EMBKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Status codes. Int-returning functions return 0 or a negative value: a
 * negative errno (-EINVAL, -ENOMEM, ...) or one of the project codes below,
 * which live in the reserved range [EMBKV_ERR_BASE - 99, EMBKV_ERR_BASE].
 */
#define EMBKV_ERR_BASE (-4000)
enum embkv_status {
	EMBKV_OK = 0,
	EMBKV_ENOTFOUND = EMBKV_ERR_BASE - 0,  /* key not in the table */
	EMBKV_ETORN = EMBKV_ERR_BASE - 1,      /* validated read kept failing */
	EMBKV_EREJECTED = EMBKV_ERR_BASE - 2,  /* admission filter said not yet */
	EMBKV_EFULL = EMBKV_ERR_BASE - 3,      /* no room and nothing to evict */
	EMBKV_ENOTABLE = EMBKV_ERR_BASE - 4,   /* table does not exist (any
	                                          more: dropped, re-created) */
	EMBKV_ETABLEEXISTS = EMBKV_ERR_BASE - 5, /* table name already used */
	EMBKV_ESTALE = EMBKV_ERR_BASE - 6,     /* shard map epoch is stale */
	EMBKV_EPROTO = EMBKV_ERR_BASE - 7,     /* malformed frame */
	EMBKV_EVERSION = EMBKV_ERR_BASE - 8,   /* protocol version mismatch */
	EMBKV_EAUTH = EMBKV_ERR_BASE - 9,      /* authentication failed */
	EMBKV_EDIM = EMBKV_ERR_BASE - 10,      /* dimension does not match */
	EMBKV_ELIMIT = EMBKV_ERR_BASE - 11,    /* a length or count over its limit */
	EMBKV_EOPCODE = EMBKV_ERR_BASE - 12,   /* unknown opcode */
	EMBKV_EDISCONNECTED = EMBKV_ERR_BASE - 13, /* peer went away */
	EMBKV_ETIMEDOUT = EMBKV_ERR_BASE - 14, /* no answer in time */
	EMBKV_ESERVER = EMBKV_ERR_BASE - 15,   /* server-side internal error */
	/* The servers of a cluster disagree: a table exists on some of them
	 * only, or with other attributes, or a create could not be undone. */
	EMBKV_EINCONSISTENT = EMBKV_ERR_BASE - 16,
	/* The servers a client was given are not one cluster: they report
	 * different members. */
	EMBKV_ECLUSTER = EMBKV_ERR_BASE - 17,
	/* A partition the server holds but has not loaded yet (it restarted
	 * and waits for a checkpoint or a stream to fill it): its rows are
	 * not served, never replaced by freshly initialised ones. */
	EMBKV_EUNAVAIL = EMBKV_ERR_BASE - 18,
	/* The server requires a token and the client has none (or sent a
	 * request before authenticating). */
	EMBKV_ETOKENREQUIRED = EMBKV_ERR_BASE - 19,
	/* The client sent a token (HELLO/AUTH) to a server without one. */
	EMBKV_ETOKENUNEXPECTED = EMBKV_ERR_BASE - 20,
	/* The table here is a read-only replica (embkvd --replica-of):
	 * pushes, assigns and erases go to its primary. */
	EMBKV_EREADONLY = EMBKV_ERR_BASE - 21,
	EMBKV_ERR_LAST = EMBKV_EREADONLY,
};

/*
 * A human-readable name for any status this library returns: project codes
 * and negative errno values. The string is static; never NULL.
 */
const char *embkv_strerror(int status);

/* Limits that apply everywhere (API, wire, storage). */
#define EMBKV_MAX_DIM 4096u
#define EMBKV_TABLE_NAME_MAX 64u          /* bytes, including the NUL */
#define EMBKV_MAX_PARTITIONS 65536u
#define EMBKV_MAX_ROWS_PER_PARTITION ((uint64_t)1 << 32)

/*
 * Storage type of a table's rows. Optimizer arithmetic is always fp32: a
 * 16-bit row is widened, updated and written back rounded (stochastically
 * or to nearest, EMBKV_TABLE_ROUND_NEAREST). Rows travel on the wire and
 * through one-sided READs as stored; the client converts to and from the
 * caller's floats (embkv_pull_raw hands the stored rows out).
 */
enum embkv_dtype {
	EMBKV_DTYPE_F32 = 0,
	EMBKV_DTYPE_F16 = 1,  /* IEEE 754 binary16 */
	EMBKV_DTYPE_BF16 = 2, /* bfloat16: the upper 16 bits of an fp32 */
	EMBKV_DTYPE_COUNT,
};

/*
 * Bytes of one stored element of dtype (4 for EMBKV_DTYPE_F32, 2 for the
 * 16-bit types): a row stored as dtype takes dim times this. 0 for a value
 * that names no dtype. Pure; any thread.
 */
size_t embkv_dtype_size(enum embkv_dtype dtype);
/* "fp32", "fp16", "bf16" ("unknown" otherwise); parse also takes "f32",
 * "f16", "float32", "float16", "bfloat16" and returns the dtype or -EINVAL. */
const char *embkv_dtype_name(enum embkv_dtype dtype);
int embkv_dtype_parse(const char *name);

/*
 * Converts n elements between fp32 and a stored dtype (round to nearest,
 * ties to even; NaN stays NaN, out-of-range fp16 becomes infinity). src
 * and dst must not overlap. Pure; any thread.
 */
void embkv_dtype_from_f32(enum embkv_dtype dtype, const float *src,
			  void *dst, size_t n);
void embkv_dtype_to_f32(enum embkv_dtype dtype, const void *src, float *dst,
			size_t n);

enum embkv_optimizer {
	EMBKV_OPT_SGD = 0,
	EMBKV_OPT_ADAGRAD = 1,
	EMBKV_OPT_ADAM = 2,     /* sparse/lazy Adam: per-row step counts */
	EMBKV_OPT_FTRL = 3,     /* FTRL-Proximal, learning-rate power -1/2 */
	/* Row-wise Adagrad (FBGEMM's): one fp32 accumulator per row,
	 * acc += mean(g^2); w -= lr * g / (sqrt(acc) + eps). */
	EMBKV_OPT_ROWWISE_ADAGRAD = 4,
	EMBKV_OPT_COUNT,
};

/* Optimizer hyper-parameters; which fields matter depends on type. */
struct embkv_opt_attr {
	enum embkv_optimizer type;
	float lr;              /* all: learning rate (FTRL: alpha) */
	float beta1, beta2;    /* Adam */
	float eps;             /* Adagrad, Adam */
	float initial_accum;   /* Adagrad accumulator start value */
	float l1, l2;          /* FTRL regularization */
	float ftrl_beta;       /* FTRL beta */
};

enum embkv_init_type {
	EMBKV_INIT_ZEROS = 0,
	EMBKV_INIT_UNIFORM = 1, /* uniform in [a, b) */
	EMBKV_INIT_NORMAL = 2,  /* normal with mean a, standard deviation b */
	EMBKV_INIT_COUNT,
};

/*
 * Row initializer. Deterministic: the same key, seed and parameters always
 * give the same row, so a row evicted and created again is identical.
 */
struct embkv_init_attr {
	enum embkv_init_type type;
	float a, b;
	uint64_t seed;
};

/*
 * A table. Fill with embkv_table_attr_init(), then set what differs.
 *
 * capacity is the most rows the table ever holds; the store evicts the
 * least-frequently-used row of a key's candidate buckets to stay within it.
 * admit_after = N stores a key only on its N-th sighting (1: always).
 */
struct embkv_table_attr {
	char name[EMBKV_TABLE_NAME_MAX];
	uint32_t dim;
	enum embkv_dtype dtype;
	uint32_t partitions;        /* a power of two */
	uint64_t capacity;          /* rows, whole table */
	struct embkv_opt_attr opt;
	struct embkv_init_attr init;
	uint32_t admit_after;       /* admission threshold N, >= 1 */
	uint32_t lfu_decay_period;  /* halve LFU counters every this many
	                               accesses per row of capacity (>= 1) */
	uint64_t hash_seed;         /* key hash seed */
	float index_load;           /* index slots in use at full capacity,
	                               in [0.5, 1]; 0: the default (0.92) */
	uint32_t flags;             /* EMBKV_TABLE_* below, others 0 */
};

/*
 * embkv_table_attr.flags.
 *
 * ROUND_NEAREST: a 16-bit table (fp16, bf16) writes optimizer updates
 * back rounded to nearest (ties to even) instead of stochastically. The
 * default, stochastic rounding, rounds up with probability equal to the
 * distance from the value below, with a random number that is a pure
 * function of the table's init seed, the key, the row's new version and
 * the element (as FBGEMM's low-precision SGD does): the same pushes give
 * the same rows. Assigned values, initial rows and restored rows are
 * always rounded to nearest. Only for 16-bit dtypes (else -EINVAL).
 *
 * STATE_BF16: optimizer state (Adagrad's accumulators, Adam's moments)
 * stored as bf16, rounded like the row; the arithmetic stays fp32. Only
 * for Adagrad and Adam (else -EINVAL).
 */
#define EMBKV_TABLE_ROUND_NEAREST (1u << 0)
#define EMBKV_TABLE_STATE_BF16 (1u << 1)
#define EMBKV_TABLE_FLAGS_KNOWN (EMBKV_TABLE_ROUND_NEAREST | EMBKV_TABLE_STATE_BF16)

/* Fills defaults: dim 64, fp32, 64 partitions, capacity 1M rows, SGD lr
 * 0.01, uniform(-0.01, 0.01) init, admission off. */
void embkv_table_attr_init(struct embkv_table_attr *attr);

/* 0 when attr describes a valid table, else -EINVAL (or EMBKV_ELIMIT for a
 * value over its limit). Never modifies attr. */
int embkv_table_attr_check(const struct embkv_table_attr *attr);

/* Names for the enums ("sgd", "adam", "uniform", ...), and parsing back.
 * parse functions return the value or -EINVAL. */
const char *embkv_optimizer_name(enum embkv_optimizer o);
int embkv_optimizer_parse(const char *name);
const char *embkv_init_name(enum embkv_init_type t);
int embkv_init_parse(const char *name);

/* ======================================================================
 * Client library (libembkv)
 *
 * A client holds connections to every server of one cluster and a cached
 * shard map per open table. It is thread-safe: any number of threads may
 * call any function on one client concurrently (each call is independent;
 * calls on the same keys from different threads are ordered by the
 * servers, per key). Every call returns 0 or a negative status
 * (embkv_strerror() names it) and never prints, exits or aborts.
 * ====================================================================== */

struct embkv_client;
struct embkv_table_handle;
struct embkv_op;

struct embkv_client_attr {
	/* Servers, "tcp://host:port" (later "rdma://host:port"). Copied. */
	const char *const *servers;
	uint32_t nservers;
	/* Shared secret; NULL or "" for no authentication. Copied. */
	const char *token;
	uint32_t connect_timeout_ms;   /* per server; default 5000 (0: default) */
	uint32_t request_timeout_ms;   /* per request; default 30000 (0: default) */
	uint32_t max_retries;          /* on a stale epoch; default 3 */
	/* Connections the client may open to one server, so that that many
	 * calls (threads, async operations) reach it at once; further calls
	 * wait for a free one. Default 8 (0: default), at most 256. */
	uint32_t max_conns_per_server;
	/* Worker threads that run async operations, started on the first
	 * one. Default 2 (0: default), at most 64. */
	uint32_t async_threads;
	uint32_t flags;                /* EMBKV_CLIENT_* below, others 0 */
};

/* embkv_client_attr.flags: embkv_client_create succeeds when at least one
 * server of the cluster answers; the others are retried by each call that
 * needs them (for operator tools: report who is down). */
#define EMBKV_CLIENT_ALLOW_DOWN (1u << 0)

/* Defaults: no servers, no token, the values above. */
void embkv_client_attr_init(struct embkv_client_attr *attr);

/*
 * Creates a client of the cluster that attr's servers belong to. Each of
 * them that answers is asked for the cluster's members (an embkvd's
 * --peers, or itself alone), and the members the client was not given are
 * added after attr's servers: one address of a cluster is enough. Then it
 * connects (and authenticates) to every server, given and learned.
 *
 * 0, -EINVAL (bad attr or server address, the same server twice),
 * -EPROTONOSUPPORT (scheme not built in), -ENOMEM, EMBKV_ECLUSTER (the
 * servers report different members), or a server's connection error
 * (EMBKV_EAUTH, EMBKV_ETIMEDOUT, EMBKV_EDISCONNECTED, -ECONNREFUSED, ...):
 * without EMBKV_CLIENT_ALLOW_DOWN that of the first server that could not
 * be reached, with it only when none could. On success the caller owns
 * *out until embkv_client_destroy().
 */
int embkv_client_create(const struct embkv_client_attr *attr,
			struct embkv_client **out);
/* Closes every connection; waits for outstanding async operations first.
 * Table handles of this client must be closed before. NULL is a no-op. */
void embkv_client_destroy(struct embkv_client *c);

/* Servers the client knows: those of attr, in order, then any that a shard
 * map named besides them. Indexes never change; embkv_table_map() and
 * embkv_stats() use them. The address string is the client's, valid until
 * embkv_client_destroy(); NULL when index >= the count. Any thread. */
uint32_t embkv_client_server_count(const struct embkv_client *c);
const char *embkv_client_server_addr(const struct embkv_client *c,
				     uint32_t index);
/*
 * Whether server index answered the last time this client tried to reach
 * it (a connection, or a cluster-wide call: the membership, stats, table
 * list, locate, create, drop): 0, or the error that try ended with
 * (-ECONNREFUSED, EMBKV_ETIMEDOUT, EMBKV_EDISCONNECTED, EMBKV_EAUTH, ...).
 * An error reply counts as an answer. -EINVAL for a bad index. Any thread;
 * with such calls running on several threads, whichever ended last.
 */
int embkv_client_server_status(const struct embkv_client *c, uint32_t index);

/*
 * Creates the table on every server of the cluster, or on none (attr
 * checked with embkv_table_attr_check first). Every server is asked first
 * whether it has the table:
 * - one could not be reached: its error, nothing created
 *   (embkv_client_server_status() names it);
 * - every server has it, with the same attributes: EMBKV_ETABLEEXISTS;
 * - some have it and others not, or with other attributes:
 *   EMBKV_EINCONSISTENT, nothing created (a missing part is never made
 *   afresh: its rows would come back re-initialised; drop the table and
 *   create it again). embkv_table_locate() says where it is.
 * Then it is created everywhere; when some server fails, it is dropped
 * again from those that created it and the first failure is returned
 * (EMBKV_EINCONSISTENT when that drop failed too).
 */
int embkv_table_create_remote(struct embkv_client *c,
			      const struct embkv_table_attr *attr);
/* Drops the table from every server of the cluster that has it. 0 when
 * none that answered still has it and every server answered;
 * EMBKV_ENOTABLE when no server had it; else the first server's error
 * (the others did drop it: embkv_client_server_status() and
 * embkv_table_locate() say which failed). */
int embkv_table_drop_remote(struct embkv_client *c, const char *name);

/*
 * Where a table exists. Asks every server of the cluster; attr (may be
 * NULL) gets the attributes of the first server that has it; status (may
 * be NULL, an array of max entries the caller owns) gets, by client
 * server index, 0 (has it, with attr's attributes), EMBKV_ENOTABLE (has
 * not), EMBKV_EINCONSISTENT (has it with other attributes) or the error
 * reaching that server; entries past the server count are untouched.
 * Returns EMBKV_EINCONSISTENT when the servers that answered disagree,
 * else the error of the first server that could not be reached, else
 * EMBKV_ENOTABLE when none has the table, else 0.
 */
int embkv_table_locate(struct embkv_client *c, const char *name,
		       struct embkv_table_attr *attr, int *status,
		       uint32_t max);

/* Names of the tables, up to max; *count gets how many exist: those of
 * every server that answered. When a server could not be asked, the list
 * is still filled from the others and its error is returned. */
struct embkv_table_summary {
	char name[EMBKV_TABLE_NAME_MAX];
	uint32_t dim;
};
int embkv_table_list(struct embkv_client *c, struct embkv_table_summary *out,
		     uint32_t max, uint32_t *count);

/*
 * Opens a table: its attributes, shard map and identity. The handle stays
 * valid until embkv_table_close(); it may be used from any thread.
 *
 * A handle names the table it opened, not the name: each server gives a
 * table at creation an id and a 64-bit uid that no other table ever gets
 * (not after a drop, not after the server restarts), and the handle
 * sends both with every request. Once the table was dropped or re-created
 * on a server (e.g. that server restarted and the table was created
 * again, maybe getting the same id), every call of this handle that
 * reaches that server fails with EMBKV_ENOTABLE: the handle never reads
 * or updates the other table, and it never re-opens the name by itself.
 * Close it and call embkv_table_open() again to use the new table.
 */
int embkv_table_open(struct embkv_client *c, const char *name,
		     struct embkv_table_handle **out);
void embkv_table_close(struct embkv_table_handle *t);
/* The table's attributes (valid while the handle is open). */
const struct embkv_table_attr *embkv_table_attr_get(
	const struct embkv_table_handle *t);
/* The table's id and uid on server (the client's index, see
 * embkv_client_server_addr), as this handle learned them when it opened
 * the table there; id or uid may be NULL. -ENOENT when the handle's shard
 * map does not name that server, -EINVAL for NULL t. Any thread. */
int embkv_table_uid(struct embkv_table_handle *t, uint32_t server,
		    uint32_t *id, uint64_t *uid);

enum embkv_mode {
	EMBKV_MODE_TRAIN = 0, /* find or insert (admission permitting) */
	EMBKV_MODE_INFER = 1, /* find; missing keys read as default, found 0 */
};

/*
 * Pulls n rows into out (n x dim floats, row i for keys[i]). Duplicate
 * keys are fetched once. Rows of an fp16 or bf16 table travel as stored
 * and are widened to float here (exactly; embkv_pull_raw skips that). found (may be NULL) gets 1 for a stored key, 0
 * otherwise. In infer mode a missing key reads as dflt (dim floats; NULL:
 * zeros). Keys go to their servers in parallel.
 *
 * For all the batch calls below: n = 0 is a no-op; the arrays are the
 * caller's and are only used during the call; a batch larger than one
 * frame may carry is split. A call that fails may have been applied on
 * some servers and not on others (a push is never applied twice).
 */
int embkv_pull(struct embkv_table_handle *t, uint32_t n, const uint64_t *keys,
	       float *out, uint8_t *found, enum embkv_mode mode,
	       const float *dflt);

/*
 * embkv_pull, but rows are handed out as the table stores them: n x dim
 * elements of embkv_dtype_size(dtype) bytes each (for a bf16 table, the
 * 16-bit rows a GPU kernel or numpy reads as they are; for fp32 the same
 * as embkv_pull). In infer mode a missing key reads as dflt (one stored
 * row; NULL: zeros). No conversion: the bytes are the ones the record
 * checksum covered.
 */
int embkv_pull_raw(struct embkv_table_handle *t, uint32_t n,
		   const uint64_t *keys, void *out, uint8_t *found,
		   enum embkv_mode mode, const void *dflt);

/* Pushes gradients (n x dim): duplicates are summed client-side, the
 * server applies the table's optimizer. *applied (may be NULL) gets how
 * many distinct keys were applied (the rest were not stored). */
int embkv_push(struct embkv_table_handle *t, uint32_t n, const uint64_t *keys,
	       const float *grads, uint32_t *applied);

/* Stores values (n x dim) as the rows of keys (last one wins for a
 * duplicate key), bypassing admission. An fp16 or bf16 table stores each
 * value rounded to nearest (ties to even), so a pull gives it back rounded
 * once. */
int embkv_assign(struct embkv_table_handle *t, uint32_t n,
		 const uint64_t *keys, const float *values);

/* Adds deltas (n x dim) to the rows of keys, without the optimizer (a
 * HierarchicalKV-style accumulate): duplicates are summed client-side; a
 * stored row gets row += delta, a missing key is created first (its
 * initializer row, admission bypassed, like embkv_assign) when the table
 * has room. *applied (may be NULL) gets how many distinct keys were
 * updated. */
int embkv_accumulate(struct embkv_table_handle *t, uint32_t n,
		     const uint64_t *keys, const float *deltas,
		     uint32_t *applied);

/* Removes keys; *erased (may be NULL) gets how many were stored. */
int embkv_erase(struct embkv_table_handle *t, uint32_t n, const uint64_t *keys,
		uint32_t *erased);

/*
 * Scan: reads one partition's live rows page by page, for export (values
 * only, never optimizer state). Start with *cursor = 0; each call sends
 * one SCAN to the partition's server (routed by the table's shard map, a
 * stale map refreshed and the page asked again, as the batch calls do),
 * copies up to max rows into keys (max keys) and values (max rows of dim
 * elements of the table's dtype, as stored: embkv_dtype_to_f32 widens
 * them), sets *n and advances *cursor. The partition
 * is done when *cursor is EMBKV_SCAN_END; a call at EMBKV_SCAN_END returns
 * 0 with *n = 0 and sends nothing. *n may be 0 before the end (the server
 * bounds the rows it visits per page): keep calling until the end.
 *
 * Consistency: each page is a consistent read of its rows (taken on the
 * partition's owner thread between batches), nothing more. Rows written
 * between pages may be seen old or new; a row inserted or erased meanwhile
 * may be missed, and one erased and inserted again may come twice. Export
 * a table while nothing writes it for an exact copy.
 *
 * The server caps a page by its frame limits, so *n may be below max even
 * mid-partition. 0; -EINVAL (NULL argument, max 0, part >= the table's
 * partitions, or a cursor the partition never had: the server's message
 * says so); EMBKV_ENOTABLE (the table was dropped or re-created);
 * EMBKV_ESTALE (the map kept moving); EMBKV_EUNAVAIL (not loaded yet); a
 * connection error.
 */
#define EMBKV_SCAN_END UINT64_MAX
int embkv_scan(struct embkv_table_handle *t, uint32_t part, uint64_t *cursor,
	       uint32_t max, uint64_t *keys, void *values, uint32_t *n);
/*
 * Asynchronous pull and push: start the operation and return at once; the
 * buffers must stay untouched until embkv_op_wait() returns, which gives
 * the operation's status and frees *op. Every started op must be waited.
 */
int embkv_pull_async(struct embkv_table_handle *t, uint32_t n,
		     const uint64_t *keys, float *out, uint8_t *found,
		     enum embkv_mode mode, const float *dflt,
		     struct embkv_op **op);
int embkv_push_async(struct embkv_table_handle *t, uint32_t n,
		     const uint64_t *keys, const float *grads,
		     struct embkv_op **op);
int embkv_op_wait(struct embkv_op *op);

/*
 * Polling and bounded waits on an async operation (issue 15).
 *
 * embkv_op_test: 1 when op has completed (embkv_op_wait or
 * embkv_op_timedwait then return at once), 0 while it runs, -EINVAL for
 * NULL. Never frees op.
 *
 * embkv_op_timedwait: waits at most timeout_ms (0: a poll). When op
 * completed: frees it, stores its status in *status and returns 0 (like
 * embkv_op_wait). When it is still running: returns -ETIMEDOUT (the
 * errno, never the op's own EMBKV_ETIMEDOUT, which comes in *status) and
 * op stays valid: wait for it again later. -EINVAL for NULL op or status.
 */
int embkv_op_test(struct embkv_op *op);
int embkv_op_timedwait(struct embkv_op *op, uint32_t timeout_ms, int *status);

/*
 * Which keys are stored, inserting nothing: found[i] (n bytes, required)
 * gets 1 for a stored key, else 0; *count (may be NULL) how many of the n
 * are (a duplicate counts each time). An infer-mode pull underneath (the
 * rows are read into scratch memory and dropped): it never inserts, never
 * counts towards admission; it does count as an access of the found rows
 * for eviction (LFU).
 */
int embkv_contains(struct embkv_table_handle *t, uint32_t n,
		   const uint64_t *keys, uint8_t *found, uint32_t *count);

/*
 * Several tables in one call: the pull or push of each entry (a table,
 * its keys and its rows: out rows for a pull, gradients for a push; found
 * and mode for a pull only). Every table's keys are grouped by server and
 * each server gets ONE request frame (MULTI_PULL / MULTI_PUSH,
 * net/PROTOCOL.md 5.25) carrying all the tables' shares, all servers at
 * once, so a batch of tables costs one round trip per server; a server's
 * share larger than its transport's frames goes as several frames. Keys
 * a server answers EMBKV_ESTALE for (a partition moving), and the keys
 * for a server older than these requests (answered EMBKV_EOPCODE: the
 * client then uses separate per-table frames for it), are finished by
 * the per-table path, as embkv_pull/embkv_push would. Each entry gets its
 * own status (one table's error does not hide the others' results; an
 * entry with n 0 is 0) and done: a push's applied count, a pull's 0. The
 * call returns 0 when all are 0, else the first failing entry's status.
 * An entry may name any open table of one client (several entries may
 * name the same table: they apply in entry order); entries of tables of
 * different clients run as separate per-table calls. nreq 0 is a no-op.
 */
struct embkv_multi_req {
	struct embkv_table_handle *t;
	uint32_t n;
	const uint64_t *keys;
	float *rows;             /* pull: n x dim out; push: n x dim grads */
	uint8_t *found;          /* pull: may be NULL */
	int status;              /* out */
	uint32_t done;           /* out: push: distinct keys applied */
};
int embkv_pull_multi(struct embkv_multi_req *reqs, uint32_t nreq,
		     enum embkv_mode mode);
int embkv_push_multi(struct embkv_multi_req *reqs, uint32_t nreq);

/*
 * Changes a table's optimizer hyper-parameters at run time (warm-up and
 * decay schedules): opt replaces them on every server of the table's
 * shard map. opt->type must be the table's optimizer (-EINVAL otherwise,
 * as for values the optimizer does not accept); every field is taken, so
 * start from the table's current values (embkv_table_locate's attr has
 * them; embkv_table_attr_get()'s are those of the open and do not
 * change). Pushes a server applies after it answered use the new values;
 * a push running meanwhile uses each field old or new. On failure some
 * servers may have the new values and others not (embkv_table_locate
 * then says EMBKV_EINCONSISTENT): call it again. In an etcd cluster each
 * server records the values in the table's etcd record before it answers
 * (an error when etcd cannot be written: the server uses them already;
 * call it again), so a member that restarts or joins builds the table
 * with them and the other members follow; a checkpoint taken afterwards
 * records them in its manifest.
 *
 * embkv_table_set_lr: the same for the learning rate alone (reads the
 * other fields with embkv_table_locate first).
 */
int embkv_table_set_opt(struct embkv_table_handle *t,
			const struct embkv_opt_attr *opt);
int embkv_table_set_lr(struct embkv_table_handle *t, float lr);

/*
 * Removes every row of the table (values and optimizer state; the table,
 * its attributes and its handles stay): each partition is scanned page by
 * page (embkv_scan) and the keys found are erased, and passes repeat
 * until one finds nothing (at most a few). Not atomic: rows written
 * while it runs may survive; stop the writers for an empty table.
 * *erased (may be NULL) gets how many rows were erased. 0 or the first
 * scan or erase error (the rows erased until then stay erased).
 */
int embkv_table_clear(struct embkv_table_handle *t, uint64_t *erased);

/*
 * Rows stored in the table, over every server (each server's "rows"
 * counter of the table, from embkv_stats: a recent value, not a
 * transaction). 0 or embkv_stats' error.
 */
int embkv_table_count(struct embkv_table_handle *t, uint64_t *rows);

/* Shard map of an open table, as last fetched: epoch and, for each
 * partition, the client's index of the server that owns it (see
 * embkv_client_server_addr). nparts must be the table's partition count
 * (else -EINVAL); epoch or part_server may be NULL. */
int embkv_table_map(struct embkv_table_handle *t, uint64_t *epoch,
		    uint16_t *part_server, uint32_t nparts);

/* Statistics: one callback per (server, table, counter), from the calling
 * thread, with no lock held. server is the client's server index; table
 * is NULL for server-wide counters. Counter names are stable identifiers
 * ("rows", "pull_p99_us", ...); a counter id this library has no name for
 * is reported as "stat_<id>". Every server is asked; the first error is
 * returned after the servers that answered were reported (a server that
 * reported nothing failed: embkv_client_server_status() says why when it
 * could not be reached). */
int embkv_stats(struct embkv_client *c,
		void (*fn)(void *ctx, uint32_t server, const char *table,
			   const char *name, uint64_t value),
		void *ctx);

/*
 * The effective configuration of server `index` (< embkv_client_server_count)
 * as one JSON object (CONFIG, net/PROTOCOL.md 5.24: version, listeners,
 * threads, memory limit, used and reserved, each table's charge, limits
 * and deadlines, metrics address, data directory, etcd settings, peers;
 * never the token). *json is the caller's to free(). 0, -EINVAL, or the
 * request's error (the server's status, EMBKV_EDISCONNECTED...; then
 * embkv_client_server_status() says why a server could not be reached).
 */
int embkv_server_config(struct embkv_client *c, uint32_t index, char **json);

/*
 * What this client's pulls cost on rdma:// servers (one-sided READs of the
 * servers' memory), counted since the client was created, over all its
 * tables and threads. For benchmarks and monitoring; counts, not times.
 */
struct embkv_client_counters {
	uint64_t round_trips;     /* chains of READs posted and waited for */
	uint64_t key_round_trips; /* sum over keys of the chains each was in */
	uint64_t read_wrs;        /* READ work requests */
	uint64_t read_bytes;      /* bytes they moved */
	uint64_t keys_onesided;   /* distinct keys of pulls served by READs */
	uint64_t fallbacks;       /* keys of rdma servers pulled by RPC */
	uint64_t torn_retries;    /* records read again (checksum mismatch) */
	uint64_t cache_hits;      /* location cache entries used */
	uint64_t cache_drops;     /* entries whose record failed */
	uint64_t hits_sent;       /* keys whose hits went to the servers */
};
/* Copies the counters (a consistent-enough snapshot: each is atomic).
 * -EINVAL for NULL. Any thread. */
int embkv_client_counters(const struct embkv_client *c,
			  struct embkv_client_counters *out);

/*
 * Checkpoints (server/CHECKPOINT.md has the files, the manifest and the
 * crash model). Every server needs --data-dir; the files of one
 * checkpoint are named by (table uid, partition), never by server, so a
 * checkpoint restores onto any number of servers that can read them (one
 * shared directory, or the files copied).
 *
 * What a checkpoint holds: each partition is a consistent cut, copied by
 * its owner between batches. Every push acknowledged before
 * embkv_checkpoint_create() started is in it; no push sent after it
 * returned is; a push in flight meanwhile is in it for some partitions
 * and not others (never half of one key).
 *
 * Ids are milliseconds since the epoch (when create started), increasing.
 * Where a call takes `which`: "newest" (or NULL) is the newest checkpoint
 * complete on every server, else a decimal id or a checkpoint's name.
 * Every call fills res (may be NULL): on failure res->error says what and
 * where (server, file).
 */
struct embkv_ckpt_progress {
	const char *phase;        /* "write", "verify" or "load" */
	uint32_t parts_done, parts_total;
	uint64_t rows, bytes;     /* so far */
	uint64_t elapsed_ms;
};

struct embkv_ckpt_attr {
	const char *name;          /* a label for restore by name; NULL: none */
	int incremental;           /* only rows changed since the newest
				      complete checkpoint, and erased keys */
	const char *const *tables; /* ntables names; 0: every table */
	uint32_t ntables;
	/* Called after every round of partitions (NULL: none). */
	void (*progress)(void *ctx, const struct embkv_ckpt_progress *p);
	void *progress_ctx;
	uint32_t flags;            /* reserved, must be 0 */
};
void embkv_ckpt_attr_init(struct embkv_ckpt_attr *attr);

struct embkv_ckpt_result {
	uint64_t id;
	uint64_t base;             /* an increment's base; 0: full */
	uint64_t rows, bytes, files;
	uint64_t ms;
	char error[512];
};

/* Writes every partition of the chosen tables, then the manifest. */
int embkv_checkpoint_create(struct embkv_client *c,
			    const struct embkv_ckpt_attr *attr,
			    struct embkv_ckpt_result *res);
/*
 * Loads checkpoint `which` into the cluster as it is now: a table it holds
 * that does not exist is created with its attributes; one that exists must
 * have the same dim, dtype, partition count, optimizer and hash seed.
 * First every partition's chain (its full file, then increments) is
 * verified by the server that holds the partition now; only when all
 * passed does each load its partitions, replacing what they held. A
 * refused file (named in res->error) leaves every table as it was.
 * attr: only its tables and progress.
 */
int embkv_checkpoint_restore(struct embkv_client *c, const char *which,
			     const struct embkv_ckpt_attr *attr,
			     struct embkv_ckpt_result *res);
/* *json (malloc'ed; free it): {"checkpoints": [{id, name, kind, base,
 * created_ms, duration_ms, rows, bytes, tables, servers}], "incomplete":
 * [ids], "servers": n}. */
int embkv_checkpoint_list(struct embkv_client *c, char **json,
			  struct embkv_ckpt_result *res);
/* Reads every file of a checkpoint on every server that has it and checks
 * every checksum and its manifest entry; *json lists each file's status.
 * EMBKV_EPROTO when a file is corrupt or missing everywhere. */
int embkv_checkpoint_verify(struct embkv_client *c, const char *which,
			    char **json, struct embkv_ckpt_result *res);
/* Deletes a checkpoint everywhere (its manifest first). -EBUSY when a
 * newer increment is based on it, unless force. */
int embkv_checkpoint_delete(struct embkv_client *c, const char *which,
			    int force, struct embkv_ckpt_result *res);

/*
 * Moving partitions (cluster mode: embkvd --etcd). A move copies one
 * partition from its server to another while training goes on: a full
 * copy, then copies of what changed meanwhile, then a short pause of that
 * partition's pushes (answered EMBKV_ESTALE and retried by every client
 * until the map flips), the last changes, and the flip of the table's map
 * in etcd. No acknowledged push is lost or applied twice. The caller
 * relays the copies (servers do not connect to each other), in chunks,
 * within attr->rate_bytes_per_s. Servers are the client's indexes
 * (embkv_client_server_addr). Results in res: files = partitions moved,
 * bytes relayed, rows of the full copies.
 */
struct embkv_move_progress {
	const char *table;
	uint32_t part;
	const char *phase;        /* "copy", "delta", "final", "done" */
	uint64_t bytes, rows;     /* relayed so far by this move */
	uint32_t moves_done, moves_total; /* of this table's plan */
	uint64_t elapsed_ms;
};

struct embkv_move_attr {
	uint64_t rate_bytes_per_s;   /* 0: no limit */
	const char *const *tables;   /* rebalance, drain: only these; 0: all */
	uint32_t ntables;
	void (*progress)(void *ctx, const struct embkv_move_progress *p);
	void *progress_ctx;
	uint32_t flags;              /* reserved, must be 0 */
};
void embkv_move_attr_init(struct embkv_move_attr *attr);

int embkv_partition_move(struct embkv_client *c, const char *table,
			 uint32_t part, uint32_t server,
			 const struct embkv_move_attr *attr,
			 struct embkv_ckpt_result *res);
/* Evens each table's partitions over the servers that answer (a server
 * that joined the cluster takes its share). */
int embkv_rebalance(struct embkv_client *c,
		    const struct embkv_move_attr *attr,
		    struct embkv_ckpt_result *res);
/* Moves every partition off server (before maintenance). */
int embkv_drain(struct embkv_client *c, uint32_t server,
		const struct embkv_move_attr *attr,
		struct embkv_ckpt_result *res);
/* Gives the partitions of members whose lease expired to the live ones,
 * which load them from the newest checkpoint (EMBKV_EUNAVAIL meanwhile).
 * res->files: partitions given, res->rows: tables changed. */
int embkv_recover(struct embkv_client *c, struct embkv_ckpt_result *res);

#ifdef __cplusplus
}
#endif
#endif /* EMBKV_EMBKV_H */
