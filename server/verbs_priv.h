/*
 * Private to embkvd's RDMA verbs transport (server/verbs_*.c and
 * server/regions.c, net/RDMA.md): the listener's state, a verbs
 * connection's state and the functions the files share.
 *
 *   verbs_listen.c  the rdma_cm listener and its event channel, the
 *                   protection domain, accept or reject, setup timers
 *   verbs_conn.c    a connection's CQ, QP, RECV window and send entries:
 *                   requests in, SEND and WRITE_WITH_IMM replies out,
 *                   flush, settle, destroy
 *   regions.c       table regions (per-partition MRs through the
 *                   catalog's hooks) and TABLE_REGIONS
 *
 * What: one rdma_cm listener bound to an address of one RDMA device, whose
 * protection domain every connection and every table region shares. A
 * connection is a struct embkvd_conn with a struct embkvd_vconn attached: its
 * own CQ and completion channel (the channel's fd sits in the I/O thread's
 * epoll like a socket), an RC QP, EMBKV_VERBS_WINDOW pre-posted RECV
 * buffers for requests and a pool of send entries for replies. Frames go
 * through exactly the TCP pipeline (embkvd_conn_admit, embkvd_svc_frame,
 * owner threads, embkvd_conn_reply), only their transport differs.
 *
 * Threads: as server/verbs.h says; everything on a connection and on the
 * listener's event channel runs on I/O thread 0.
 */
#ifndef EMBKV_SERVER_VERBS_PRIV_H
#define EMBKV_SERVER_VERBS_PRIV_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include "server/verbs.h"

struct embkvd_verbs {
	struct embkvd *srv;
	struct rdma_event_channel *ch;
	struct rdma_cm_id *listen_id;
	struct ibv_context *ctx;        /* the listener's device */
	struct ibv_pd *pd;              /* shared by all QPs and regions */
	struct ibv_device_attr dev;
	struct embkvd_io *io;           /* I/O thread 0 */
};

enum vconn_state {
	VC_SETUP,                       /* accepted, not yet ESTABLISHED */
	VC_READY,
};

struct vsend;                   /* verbs_conn.c's send entry */

struct embkvd_vconn {
	struct embkvd_verbs *v;
	struct rdma_cm_id *id;
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	bool has_qp, epoll;
	enum vconn_state state;
	uint64_t deadline_ns;
	struct sockaddr_storage peer;
	struct embkv_verbs_connect cli; /* the client's private data */
	uint32_t window;                /* min(client, server credits) */
	uint32_t outstanding;           /* requests whose reply is not posted */
	uint8_t *rbuf;                  /* nrecv x EMBKV_VERBS_RECV_SIZE */
	struct ibv_mr *rmr;
	uint32_t nrecv;
	struct vsend *sends;
	uint8_t *sbuf;                  /* nsend x slot_bytes */
	struct ibv_mr *smr;
	uint32_t nsend, slot_bytes, free_head, sends_inflight;
};

static inline uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static inline int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK))
		return -errno;
	return 0;
}

/* verbs_conn.c. Everything a connection needs, before rdma_accept; on
 * failure a negative errno, and embkvd_vconn_free() frees what was made. */
int embkvd_vconn_setup(struct embkvd_vconn *vc);
/* verbs_conn.c. Frees vc's QP, CQ, channel, buffers, cm_id and vc. */
void embkvd_vconn_free(struct embkvd_vconn *vc);

#endif
