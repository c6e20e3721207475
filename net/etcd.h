/*
 * A small synchronous etcd v3 client over etcd's JSON gateway (HTTP POST
 * of JSON to /v3/kv/..., /v3/lease/..., /v3/watch), for cluster metadata:
 * member registration under leases, and the compare-and-swap transactions
 * that change the table catalog and the shard maps.
 *
 * Errors. Every int-returning call returns 0 or a negative status:
 *   -ECONNREFUSED  no endpoint accepted a connection (etcd down);
 *   -ETIMEDOUT     an endpoint took the request but no answer came within
 *                  the request timeout;
 *   -EHOSTUNREACH  no endpoint could be resolved or routed to;
 *   -ECONNRESET    the connection broke during the request;
 *   (embkv_etcd_unreachable() is true for those four);
 *   -ENOENT        etcd answered "not found" (a lease that expired or was
 *                  revoked);
 *   -EINVAL        bad arguments, or etcd refused the request as invalid;
 *   -ERANGE        a revision that was compacted away;
 *   -EAGAIN        etcd answered "unavailable" (no leader yet);
 *   -EIO           any other error etcd answered with;
 *   EMBKV_EPROTO   the answer was not the JSON the gateway sends;
 *   EMBKV_ELIMIT   an answer over EMBKV_ETCD_REPLY_MAX bytes;
 *   -ENOMEM.
 * A request fails over to the next endpoint only when the connection
 * could not be made (nothing was sent), never after a timeout: a
 * transaction that was applied is never applied twice. The text etcd gave
 * with its last error is kept (embkv_etcd_errmsg()).
 *
 * Threads: a handle is used by one thread at a time (it keeps one HTTP
 * connection alive between requests); different handles are independent.
 * A watch runs on its own thread with its own connection. Nothing here
 * prints, exits or aborts.
 */
#ifndef EMBKV_NET_ETCD_H
#define EMBKV_NET_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EMBKV_ETCD_MAX_ENDPOINTS 16u
#define EMBKV_ETCD_ENDPOINT_MAX 256u          /* bytes of one URL */
#define EMBKV_ETCD_TIMEOUT_MS 2000u           /* default request timeout */
#define EMBKV_ETCD_REPLY_MAX (64u << 20)      /* bytes of one answer */
#define EMBKV_ETCD_ERRMSG_MAX 256u

struct embkv_etcd;

struct embkv_etcd_attr {
	/* "http://host:port[,http://host:port...]": the members' client URLs,
	 * tried in order. Copied. */
	const char *endpoints;
	uint32_t timeout_ms;          /* whole request, connect included */
	uint32_t connect_timeout_ms;  /* 0: the request timeout */
	uint32_t flags;               /* reserved, must be 0 */
};

/* Defaults: no endpoints, 2 s timeouts. */
void embkv_etcd_attr_init(struct embkv_etcd_attr *attr);

/* Parses the endpoints (http:// only) and sets up a handle; talks to
 * nobody yet. 0, -EINVAL (bad attr or URL), -ENOMEM. The caller owns *out
 * until embkv_etcd_destroy(). */
int embkv_etcd_create(const struct embkv_etcd_attr *attr,
		      struct embkv_etcd **out);
/* Closes the connection and frees the handle. NULL: no-op. */
void embkv_etcd_destroy(struct embkv_etcd *e);

/* True for the statuses that mean "etcd could not be reached". */
bool embkv_etcd_unreachable(int status);
/* etcd's text for the last error it answered with, or ""; valid until the
 * next call on e. */
const char *embkv_etcd_errmsg(const struct embkv_etcd *e);

/* A key-value pair as stored. key and value are NUL-terminated copies
 * (values may hold NULs; value_len counts the bytes). */
struct embkv_etcd_kv {
	char *key;
	char *value;
	size_t value_len;
	int64_t create_revision;   /* revision that created it */
	int64_t mod_revision;      /* revision of its last change */
	int64_t version;           /* changes since it was created */
	int64_t lease;             /* attached lease, 0: none */
};

struct embkv_etcd_kvs {
	struct embkv_etcd_kv *kv;  /* n entries, in key order */
	size_t n;
	int64_t revision;          /* the store's revision at the read */
};

/* Frees what a get filled in (not r itself). NULL: no-op. */
void embkv_etcd_kvs_free(struct embkv_etcd_kvs *r);

/* One key, or with prefix every key that starts with key. *out is filled
 * (n = 0 when nothing matched) and owned by the caller; untouched on
 * error. */
int embkv_etcd_get(struct embkv_etcd *e, const char *key, bool prefix,
		   struct embkv_etcd_kvs *out);
/* Stores len bytes at key, attached to lease (0: none). revision: the
 * store's revision after the put (may be NULL). */
int embkv_etcd_put(struct embkv_etcd *e, const char *key, const void *value,
		   size_t len, int64_t lease, int64_t *revision);
/* Deletes key (with prefix: every key under it). deleted: how many (may
 * be NULL). */
int embkv_etcd_delete(struct embkv_etcd *e, const char *key, bool prefix,
		      int64_t *deleted);

/* Compacts the history up to revision (watches from before it end with
 * -ERANGE). -ERANGE when it was compacted already. */
int embkv_etcd_compact(struct embkv_etcd *e, int64_t revision);

/* Transactions: if every compare holds, the success ops run, else the
 * failure ops; atomically. */
enum embkv_etcd_target {
	EMBKV_ETCD_VERSION,        /* compare kv.version */
	EMBKV_ETCD_CREATE,         /* compare kv.create_revision (0: absent) */
	EMBKV_ETCD_MOD,            /* compare kv.mod_revision (0: absent) */
	EMBKV_ETCD_VALUE,          /* compare the value's bytes */
};

enum embkv_etcd_result {
	EMBKV_ETCD_EQUAL,
	EMBKV_ETCD_NOT_EQUAL,
	EMBKV_ETCD_GREATER,        /* the stored one is greater */
	EMBKV_ETCD_LESS,
};

struct embkv_etcd_cmp {
	const char *key;
	enum embkv_etcd_target target;
	enum embkv_etcd_result result;
	int64_t number;            /* VERSION, CREATE, MOD */
	const void *value;         /* VALUE */
	size_t value_len;
};

enum embkv_etcd_op_type {
	EMBKV_ETCD_OP_PUT,
	EMBKV_ETCD_OP_DELETE,
};

struct embkv_etcd_op {
	enum embkv_etcd_op_type type;
	const char *key;
	const void *value;         /* PUT */
	size_t value_len;
	int64_t lease;             /* PUT; 0: none */
	bool prefix;               /* DELETE: every key under key */
};

struct embkv_etcd_txn {
	const struct embkv_etcd_cmp *cmp;
	size_t ncmp;
	const struct embkv_etcd_op *success;
	size_t nsuccess;
	const struct embkv_etcd_op *failure;
	size_t nfailure;
};

/* Runs t. *succeeded says whether the compares held (the success ops ran)
 * or not (the failure ops ran); revision (may be NULL) the store's
 * revision after it. A failed compare is not an error: 0 is returned. */
int embkv_etcd_txn(struct embkv_etcd *e, const struct embkv_etcd_txn *t,
		   bool *succeeded, int64_t *revision);

/* Leases. Grant: a new lease of ttl_s seconds (etcd may grant more);
 * granted_ttl_s may be NULL. */
int embkv_etcd_lease_grant(struct embkv_etcd *e, int64_t ttl_s, int64_t *id,
			   int64_t *granted_ttl_s);
/* One keepalive round: renews the lease to its full TTL. ttl_s (may be
 * NULL): the TTL it was renewed to. -ENOENT when the lease expired or was
 * revoked (its keys are gone). */
int embkv_etcd_lease_keepalive(struct embkv_etcd *e, int64_t id,
			       int64_t *ttl_s);
/* Revokes the lease and deletes its keys. -ENOENT when unknown. */
int embkv_etcd_lease_revoke(struct embkv_etcd *e, int64_t id);
/* Seconds the lease has left; -ENOENT when it expired or is unknown. */
int embkv_etcd_lease_ttl(struct embkv_etcd *e, int64_t id, int64_t *ttl_s);

/*
 * Watches: a thread holds a streaming POST to /v3/watch and hands every
 * change under a prefix to fn, in revision order, from start_revision on
 * (0: from now). When the stream breaks (etcd down, the connection reset)
 * fn hears the status once per outage, and the thread reconnects every
 * retry_ms,
 * resuming after the last revision it delivered, so no change is missed
 * or repeated. When the revisions it needs were compacted, fn hears
 * -ERANGE and the watch ends: re-read with get and start a new watch from
 * the get's revision + 1.
 */
enum embkv_etcd_event_type {
	EMBKV_ETCD_EV_PUT,
	EMBKV_ETCD_EV_DELETE,      /* kv has key and mod_revision only */
};

struct embkv_etcd_event {
	enum embkv_etcd_event_type type;
	struct embkv_etcd_kv kv;
};

/* Runs on the watch thread. status 0: n changes (the pointers valid
 * during the call only; n may be 0 when the watch was just created or
 * resumed); status < 0: the stream broke (see above). fn must not call
 * embkv_etcd_watch_stop() on its own watch. */
typedef void (*embkv_etcd_watch_fn)(void *ctx, int status,
				    const struct embkv_etcd_event *ev,
				    size_t n);

#define EMBKV_ETCD_WATCH_RETRY_MS 500u

struct embkv_etcd_watch;

/* Starts watching every key under prefix on e's endpoints (copied: e may
 * be destroyed meanwhile). retry_ms 0: EMBKV_ETCD_WATCH_RETRY_MS. 0,
 * -EINVAL, -ENOMEM, or the error of starting the thread; the caller owns
 * *out until embkv_etcd_watch_stop(). */
int embkv_etcd_watch_start(struct embkv_etcd *e, const char *prefix,
			   int64_t start_revision, uint32_t retry_ms,
			   embkv_etcd_watch_fn fn, void *ctx,
			   struct embkv_etcd_watch **out);
/* Stops the watch within a few milliseconds (fn is not called after it
 * returns), joins its thread and frees it. NULL: no-op. Any thread but
 * the watch's. */
void embkv_etcd_watch_stop(struct embkv_etcd_watch *w);

#endif
