/*
 * Private to server/cluster*.c: the cluster catalog's state, its records
 * and the functions its three files share.
 *
 *   cluster.c         the thread: reading and following etcd, applying
 *                     changes to the local catalog, start and stop
 *   cluster_admin.c   TABLE_CREATE and TABLE_DROP as etcd transactions
 *   cluster_record.c  the etcd records: tables (JSON), members
 *
 * Threads: everything here runs on the cluster thread (or the main thread
 * before it starts), except what embkvd_cluster_submit() and on_watch()
 * touch under cl->lock.
 */
#ifndef EMBKV_SERVER_CLUSTER_PRIV_H
#define EMBKV_SERVER_CLUSTER_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "net/etcd.h"
#include "server/cluster.h"
#include "server/daemon.h"

#define KEY_MAX 256u
#define PFX_MAX 96u  /* "/<cluster>/<kind>/": a name is at most 63 */
#define MSG_MAX 256u
#define RETRY_MS 500u
#define POLL_MS 20u
#define NS_PER_MS 1000000L
#define ATTR_WIRE_MAX 256u
#define UID_HEX 17u
#define ACK_OK "ok"          /* share built and charged */
#define ACK_READY "ready"    /* share published */
/* A share still "creating" after this long is undone (its creator is
 * gone: it answers or undoes within 3 create timeouts). */
#define PENDING_EXPIRE_MS (4u * EMBKVD_CLUSTER_CREATE_TIMEOUT_MS)
#define DEFAULT_BACKOFF_MAX_MS 30000u /* --default-table retries */

/* A change from the watch, copied off its thread. */
struct cl_event {
	struct cl_event *next;
	bool del;
	char *key;
	char *value;
	size_t len;
	int64_t create_rev, mod_rev;
};

/* An admin request from an I/O thread. */
struct cl_job {
	struct embkvd_done fin;
	struct cl_job *next;
	struct embkvd_conn *conn;
	uint64_t req_id;
	uint8_t op;
	struct embkv_table_attr attr;      /* CREATE */
	char name[EMBKV_TABLE_NAME_MAX];   /* CREATE, DROP */
	int status;
	char msg[MSG_MAX];
	struct embkv_wire_table_ref ref;   /* CREATE's answer */
};

/* A table built and charged here but not yet ready in etcd. */
struct cl_pending {
	uint64_t uid;
	int64_t mod_rev;                   /* of the "creating" record */
	uint64_t since_ms;                 /* built then (cl_now_ms) */
	char name[EMBKV_TABLE_NAME_MAX];
	struct embkv_catalog_entry *e;
};

struct cl_node {
	uint32_t id;
	char addr[EMBKV_WIRE_ADDR_MAX + 1];
};

/* A table record as etcd holds it. */
struct ctable {
	uint64_t uid;
	bool ready;
	struct embkv_table_attr attr;
	uint64_t epoch;
	uint32_t nmembers;
	uint32_t *members;
	uint16_t *parts;       /* attr.partitions entries */
	uint32_t spread;       /* members at create: the owner rule's divisor
				  (server/shardmap.h), kept when the map
				  changes */
};

struct embkvd_cluster {
	struct embkvd *s;
	struct embkv_etcd *etcd;           /* this thread only */
	char prefix[PFX_MAX], tables[PFX_MAX], nodes_pfx[PFX_MAX],
	     acks[PFX_MAX], members[PFX_MAX];
	uint32_t self;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock. */
	bool stop, resync;
	struct cl_event *evs, **evs_tail;
	struct cl_job *jobs, **jobs_tail;
	/* This thread only. */
	struct embkv_etcd_watch *watch;
	bool synced;
	int64_t boot_rev;                  /* first full read; 0: none yet */
	struct cl_node *nodes;
	uint32_t nnodes;
	struct cl_node *live;              /* members with a live lease */
	uint32_t nlive;
	char self_addr[EMBKV_WIRE_ADDR_MAX + 1];
	bool want_default;                 /* --default-table, not made yet */
	uint64_t default_next_ms;          /* next try (cl_now_ms) */
	uint32_t default_wait_ms;          /* backoff between tries */
	bool default_logged;
	struct embkv_table_attr default_attr;
	struct cl_pending *pend;
	uint32_t npend;
	int logged;                        /* last etcd state logged */
};


void cl_uid_hex(uint64_t uid, char out[UID_HEX]);

void cl_table_free(struct ctable *t);

int cl_table_parse(const char *name, const char *value, size_t len,
			struct ctable *t);

char *cl_table_json(const struct ctable *t);

bool cl_node_parse(const char *value, size_t len, struct cl_node *out);

bool cl_node_upsert(struct cl_node **list, uint32_t *n,
			const struct cl_node *nn);

void cl_node_remove(struct cl_node *list, uint32_t *n, uint32_t id);

void cl_nodes_read(const char *pfx, const struct embkv_etcd_kvs *kvs,
		       struct cl_node **out, uint32_t *nout);

uint64_t cl_now_ms(void);

void cl_sleep_ms(uint32_t ms);

void cl_log_state(struct embkvd_cluster *cl, int status);

const char *cl_node_addr(struct embkvd_cluster *cl, uint32_t id);

/* cluster_admin.c: TABLE_SET_OPT's values into the table's record. */
void cl_run_set_opt(struct embkvd_cluster *cl, struct cl_job *j);

uint64_t cl_local_uid(struct embkvd_cluster *cl, const char *name,
			  struct embkv_catalog_entry **ref);

int cl_drain_events(struct embkvd_cluster *cl);

bool cl_stopping(struct embkvd_cluster *cl);

int cl_job_fail(struct cl_job *j, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

int cl_etcd_fail(struct embkvd_cluster *cl, struct cl_job *j, int rc,
		     const char *what);

void cl_job_post(struct cl_job *j);

struct cl_job *cl_job_take(struct embkvd_cluster *cl);

void cl_default_table(struct embkvd_cluster *cl);

void cl_run_create(struct embkvd_cluster *cl, struct cl_job *j);

void cl_run_drop(struct embkvd_cluster *cl, struct cl_job *j);

/* The key of member's ack to the create of table uid, or with
 * CL_ACKS_ALL the prefix of all of them. */
#define CL_ACKS_ALL UINT32_MAX
void cl_acks_key(const struct embkvd_cluster *cl, uint64_t uid,
		 uint32_t member, char *buf, size_t len);
/* One transaction: deletes the table record at key if its mod_revision
 * is still rev, with every ack of uid. *done: whether it was. 0 or the
 * etcd error. */
int cl_table_delete(struct embkvd_cluster *cl, const char *key, int64_t rev,
		    uint64_t uid, bool *done);

#endif
