/*
 * embkvd's table catalog in etcd (cluster mode, --etcd): every member
 * mirrors the cluster's tables and their shard maps from etcd into its
 * local catalog, and table creation and drop are etcd transactions.
 *
 * Keys, under the cluster's prefix P = "/<cluster>/" (server/member.h has
 * members/ and nodes/):
 *   P tables/<name>          the table: {"uid", "state" ("creating" or
 *                            "ready"), "attr" (its TABLE_CREATE encoding,
 *                            hex), "epoch", "members" (member ids),
 *                            "parts" (per partition, an index into
 *                            members)}, plus readable copies of the main
 *                            attributes; changed only by transactions
 *                            that compare its revision.
 *   P acks/<uid>/<member>    "ok" or why a member could not hold its
 *                            share of a table being created.
 *
 * Threads. One cluster thread talks to etcd, applies every change to the
 * local catalog in revision order, and runs the admin requests that I/O
 * threads hand it (embkvd_cluster_submit); the reply goes back to the I/O
 * thread through its inbox. Nothing on the data path waits for it: with
 * etcd down a server serves the tables it knows, and admin requests fail
 * with a clear error.
 */
#ifndef EMBKV_SERVER_CLUSTER_H
#define EMBKV_SERVER_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include "net/wire.h"

struct embkvd;
struct embkvd_conn;
struct embkvd_cluster;

/* Seconds a create waits for every member's answer before undoing. */
#define EMBKVD_CLUSTER_CREATE_TIMEOUT_MS 10000u

/*
 * Starts mirroring s's cluster (a->etcd, ->cluster, ->member_id; copied):
 * reads
 * the tables once (a table that existed before this start has the
 * partitions this member holds UNLOADED: its rows died with the previous
 * process), then follows etcd from a thread. etcd unreachable is not an
 * error: the thread keeps trying. 0, -EINVAL or -ENOMEM.
 */
struct embkvd_attr;
int embkvd_cluster_start(struct embkvd *s,
			 const struct embkvd_attr *a,
			 struct embkvd_cluster **out);
/* Waits up to ms for the --default-table to be visible here (it is made
 * through etcd once this member is registered): true when it is. */
bool embkvd_cluster_wait_default(struct embkvd_cluster *cl, uint32_t ms);
/* Stops the thread; admin requests still queued, and any submitted
 * after, are answered with an error. Before the I/O threads stop. NULL is
 * a no-op. */
void embkvd_cluster_stop(struct embkvd_cluster *cl);
/* Frees it (stopping it first if needed): after the I/O threads stopped.
 * NULL is a no-op. */
void embkvd_cluster_destroy(struct embkvd_cluster *cl);

/*
 * I/O thread: hands TABLE_CREATE or TABLE_DROP (h, body: the decoded
 * request's raw body, copied) to the cluster thread; the reply or ERROR
 * reaches c later. Holds c until then.
 */
void embkvd_cluster_submit(struct embkvd_cluster *cl, struct embkvd_conn *c,
			   const struct embkv_wire_hdr *h,
			   const uint8_t *body);
/*
 * I/O thread, after TABLE_SET_OPT changed table name (uid) here: records
 * opt in the table's etcd record (members that restart or join use it,
 * the others follow it); the reply to req_id (empty, or the error) goes
 * out when that is done.
 */
void embkvd_cluster_set_opt(struct embkvd_cluster *cl, struct embkvd_conn *c,
			    uint64_t req_id, const char *name, uint64_t uid,
			    const struct embkv_opt_attr *opt);

#endif
