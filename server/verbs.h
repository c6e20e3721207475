/*
 * embkvd's RDMA verbs transport (net/RDMA.md), as the rest of the server
 * sees it. verbs.c implements it with libibverbs and librdmacm;
 * verbs_none.c, built instead when EMBKV_RDMA is off, refuses rdma://
 * listeners and never creates a verbs connection.
 *
 * Threads. Every verbs connection, and the rdma_cm event channel, belongs
 * to I/O thread 0; embkv_vconn_* run there only. Table regions are
 * registered and freed by whichever thread creates or frees the table.
 */
#ifndef EMBKV_SERVER_VERBS_H
#define EMBKV_SERVER_VERBS_H

#include <stdint.h>
#include <sys/epoll.h>
#include "server/daemon.h"

struct embkv_regions;

/*
 * Binds and listens on attr.rdma_host:rdma_port (an address of an RDMA
 * device; rdma_cm must resolve it to one device), opens that device's
 * protection domain and sets s->verbs and s->rdma_port. 0, -EOPNOTSUPP
 * (built without RDMA) or a negative errno.
 */
int embkv_verbs_open(struct embkv_server *s);
/* After every connection is closed and every table freed. NULL-safe. */
void embkv_verbs_close(struct embkv_verbs *v);
/* I/O thread setup: adds the rdma_cm channel to epfd with ev's data. */
int embkv_verbs_attach(struct embkv_server *s, struct embkv_io *io, int epfd,
		       struct epoll_event *ev);
/* The rdma_cm channel is readable: handles every pending event. */
void embkv_verbs_cm_events(struct embkv_io *io);
/* Closes verbs connections whose setup took too long. */
void embkv_verbs_timers(struct embkv_io *io, uint64_t now_ns);

/* A verbs connection's completion channel is readable. */
void embkv_vconn_event(struct embkv_conn *c);
/* Posts queued replies while send slots and the window allow. */
void embkv_vconn_flush(struct embkv_conn *c);
/* After any change: closes a closing connection once its replies went. */
void embkv_vconn_settle(struct embkv_conn *c);
/* Frees the QP, CQ, buffers and cm_id (from embkv_conn_close). */
void embkv_vconn_destroy(struct embkv_conn *c);

/* TABLE_REGIONS on an authenticated verbs connection, for the table
 * that table_id and uid name (else ERROR EMBKV_ENOTABLE). */
void embkv_verbs_table_regions(struct embkv_conn *c, uint64_t req_id,
			       uint32_t table_id, uint64_t uid);

/*
 * Registers the index and the arena of every loaded partition of table t
 * with v's protection domain, each on its own, for remote READ only (a
 * partition the server does not hold is neither mapped nor pinned). v
 * NULL: nothing to do, *out = NULL. 0 or a negative errno.
 */
int embkv_regions_register(struct embkv_verbs *v, const struct embkv_table *t,
			   struct embkv_regions **out);
/* Deregisters; before the table's memory is freed. NULL is a no-op. */
void embkv_regions_free(struct embkv_regions *r);
/* Bytes registered (pinned) by r; 0 for NULL. */
uint64_t embkv_regions_bytes(const struct embkv_regions *r);

#endif
