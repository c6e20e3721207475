/*
 * embkvd's cluster membership in etcd (--etcd): registration under a
 * lease, a keepalive thread, deregistration at shutdown.
 *
 * Keys, under the cluster's prefix P = "/<cluster>/":
 *   P members/<id>  leased: present while the member is alive;
 *   P nodes/<id>    permanent: every member ever registered, so that one
 *                   whose lease expired shows as down, not as nothing.
 * Both hold the same JSON value: {"id", "address" (the one clients use),
 * "addresses" (every listener), "pid", "host", "start_time" (Unix
 * seconds), "memory_limit" (bytes, 0: none), "version", "ttl"}.
 * P tables/<name> (the table catalog with each table's shard map) and
 * P acks/ belong to server/cluster.h; they change only by CAS
 * transactions.
 *
 * Threads: embkvd_member_join() and embkvd_member_leave() run on the main
 * thread (server.c); in between, the member's own thread is the only one
 * that talks to etcd. Nothing on the data path ever waits for it.
 */
#ifndef EMBKV_SERVER_MEMBER_H
#define EMBKV_SERVER_MEMBER_H

#include <stdint.h>

#define EMBKVD_MEMBER_TTL_S 10u          /* default lease TTL */
#define EMBKVD_MEMBER_TTL_MAX_S 3600u
#define EMBKVD_MEMBER_CLUSTER_DEFAULT "embkv"
#define EMBKVD_MEMBER_CLUSTER_MAX 63u    /* bytes of a cluster name */

struct embkvd;
struct embkvd_attr;

/* true when name is a valid cluster name: 1-63 of [A-Za-z0-9_.-]. */
int embkvd_member_cluster_ok(const char *name);

/*
 * Registers s as member attr->member_id of cluster attr->cluster in the
 * etcd at attr->etcd, then keeps its lease alive from a thread (every
 * TTL/3). 0 when registered, and also when etcd could not be reached
 * (logged; the thread registers once it answers): a server serves with
 * etcd down. -EEXIST when another live member holds the id (logged with
 * who): the server must not start. -EINVAL, -ENOMEM.
 */
int embkvd_member_join(struct embkvd *s,
		       const struct embkvd_attr *attr);
/* Stops the thread and revokes the lease (the member key goes at once;
 * the node record stays). No-op when not joined. */
void embkvd_member_leave(struct embkvd *s);

#endif
