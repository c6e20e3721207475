/*
 * embkvd's RDMA verbs transport (net/RDMA.md), as the rest of the server
 * sees it. verbs_listen.c, verbs_conn.c and regions.c (sharing
 * verbs_priv.h) implement it with libibverbs and librdmacm;
 * verbs_none.c, built instead when EMBKV_RDMA is off, refuses rdma://
 * listeners and never creates a verbs connection.
 *
 * Threads. Every verbs connection, and the rdma_cm event channel, belongs
 * to I/O thread 0; embkvd_vconn_* run there only. Table regions are
 * registered and freed by whichever thread creates or frees the table.
 */
#ifndef EMBKV_SERVER_VERBS_H
#define EMBKV_SERVER_VERBS_H

#include <stdint.h>
#include <sys/epoll.h>
#include "server/daemon.h"

/*
 * Binds and listens on attr.rdma_host:rdma_port (an address of an RDMA
 * device; rdma_cm must resolve it to one device), opens that device's
 * protection domain and sets s->verbs and s->rdma_port. 0, -EOPNOTSUPP
 * (built without RDMA) or a negative errno.
 */
int embkvd_verbs_open(struct embkvd *s);
/* After every connection is closed and every table freed. NULL-safe. */
void embkvd_verbs_close(struct embkvd_verbs *v);
/* I/O thread setup: adds the rdma_cm channel to epfd with ev's data. */
int embkvd_verbs_attach(struct embkvd *s, struct embkvd_io *io, int epfd,
			struct epoll_event *ev);
/* The rdma_cm channel is readable: handles every pending event. */
void embkvd_verbs_cm_events(struct embkvd_io *io);
/* Closes verbs connections whose setup took too long. */
void embkvd_verbs_timers(struct embkvd_io *io, uint64_t now_ns);

/* Drops a registration that server/obpool.c keeps with a reply buffer
 * (the pool's unreg). */
void embkvd_verbs_unreg(void *reg);

/* A verbs connection's completion channel is readable. */
void embkvd_vconn_event(struct embkvd_conn *c);
/* Posts queued replies while send slots and the window allow. */
void embkvd_vconn_flush(struct embkvd_conn *c);
/* The largest reply c copies into a registered send slot (larger ones
 * are sent in place, from a registered buffer); 0 when c is no RDMA
 * connection. */
size_t embkvd_vconn_copy_max(const struct embkvd_conn *c);
/* The most bytes a PULL_LAND reply may RDMA-WRITE on c (the client's
 * reply slot); 0 when c is no RDMA connection. */
size_t embkvd_vconn_land_max(const struct embkvd_conn *c);
/* After any change: closes a closing connection once its replies went. */
void embkvd_vconn_settle(struct embkvd_conn *c);
/* Frees the QP, CQ, buffers and cm_id (from embkvd_conn_close). */
void embkvd_vconn_destroy(struct embkvd_conn *c);

/* TABLE_REGIONS on an authenticated verbs connection, for the table
 * that table_id and uid name (else ERROR EMBKV_ENOTABLE). */
void embkvd_verbs_table_regions(struct embkvd_conn *c, uint64_t req_id,
				uint32_t table_id, uint64_t uid);

/*
 * The catalog hooks (server/catalog.h) that make a table's regions: built
 * registers the index and the arena of every loaded partition of the
 * table with v's protection domain, each on its own, for remote READ only
 * (a partition the server does not hold is neither mapped nor pinned), and
 * keeps them in the entry's hook_data; freed deregisters them before the
 * table's memory is freed. v NULL: no hooks, nothing registered.
 */
void embkvd_regions_hooks(struct embkvd_verbs *v,
			  struct embkv_catalog_hooks *hooks);
/* Bytes registered (pinned) for the table of e; 0 when none. */
uint64_t embkvd_regions_bytes(const struct embkv_catalog_entry *e);

#endif
