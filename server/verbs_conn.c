/*
 * A verbs connection of embkvd (net/RDMA.md; server/verbs_priv.h has the
 * transport's overview): its QP, RECV window, SEND and WRITE_WITH_IMM
 * replies, flush, settle and destroy.
 *
 * What: a struct embkvd_vconn attached to a struct embkvd_conn: its own CQ
 * and completion channel (the channel's fd sits in I/O thread 0's epoll
 * like a socket), an RC QP, EMBKV_VERBS_WINDOW pre-posted RECV buffers
 * for requests and a pool of send entries for replies. A request is copied
 * out of its RECV buffer into the TCP pipeline (embkvd_conn_admit,
 * embkvd_svc_frame); replies queued by embkvd_conn_reply are posted from
 * the output queue while send entries last.
 *
 * Invariants:
 * - Flow control: the client keeps at most `window` requests outstanding;
 *   a request that makes more is a protocol violation and closes the
 *   connection (its reply would find no RECV). A request's RECV is
 *   reposted as soon as its bytes were copied out.
 * - A reply up to the client's recv_size is a SEND, a larger one (up to
 *   slot_size) an RDMA WRITE WITH IMM into slot request_id % reply_slots
 *   with imm_data = htobe32(slot); anything larger is replaced by ERROR
 *   EMBKV_ELIMIT. Small replies are copied into a registered send slot,
 *   large ones sent in place: from a pooled buffer, registered on its
 *   first reply and kept so (server/obpool.c), else registered for that
 *   reply alone until its completion. A buffer goes back to the pool only
 *   after its reply's completion or once the QP is destroyed.
 * - A PULL_LAND reply (obuf land_len) is two work requests on the QP: an
 *   RDMA WRITE of its records to the client's landing memory, then the
 *   reply frame; RC executes them in order, so the client sees the reply
 *   after the records were placed. Both come from the obuf, registered as
 *   a large reply is. The send queue has room for two
 *   work requests per send entry.
 * - Closing frees the QP, CQ, channel, buffers and cm_id at once; the
 *   connection count drops exactly once, in embkvd_conn_close().
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "server/verbs_priv.h"

#define SEND_SLOT_MAX (64u << 10)   /* bytes of a copied reply, at most */
#define SENDS_PER_CREDIT 2u         /* send entries per window slot */
#define CQ_BATCH 32
#define SEND_TAG (1ull << 32)       /* wr_id: a send entry, else a RECV */
#define LAND_TAG (1ull << 33)       /* wr_id: a PULL_LAND's WRITE (its
				       reply's completion frees the entry) */
#define NO_SLOT UINT32_MAX
#define ERRMSG_BYTES (EMBKV_WIRE_ERRMSG_MAX + 1)

struct vsend {
	uint8_t *slot;                  /* registered copy buffer */
	struct embkvd_obuf *ob;         /* large reply, sent in place */
	struct ibv_mr *mr;              /* ob's registration for this reply
					   alone; NULL when ob is pooled (its
					   registration stays with it) */
	uint32_t next_free;
};

/* After the reply's completion, or once the QP is gone: drops a reply
 * registration of its own and gives the buffer back (a pooled one keeps
 * its registration in the pool). */
static void send_release(struct vsend *sd)
{
	if (sd->mr)
		ibv_dereg_mr(sd->mr);
	embkvd_obuf_free(sd->ob);
	sd->mr = NULL;
	sd->ob = NULL;
}

/* A registration of ob for a reply of `bytes` at ob->data (through its
 * land_len): a pooled buffer's own, made on its first reply and kept with
 * it; else one for this reply alone (sd->mr). NULL when the NIC refused. */
static struct ibv_mr *reply_mr(struct embkvd_vconn *vc, struct vsend *sd,
			       struct embkvd_obuf *ob, size_t bytes)
{
	struct embkvd_obpool *pool = vc->v->srv->obpool;
	struct ibv_mr *mr = ob->reg;
	void *base = ob->pool ? (void *)ob : (void *)ob->data;
	size_t len = ob->pool ? ob->alloc : bytes;

	if (mr)
		return mr; /* one protection domain per server, so per pool */
	mr = ibv_reg_mr(vc->v->pd, base, len, 0);
	if (!mr) {
		/* locked memory may be what is missing: what the pool keeps
		 * idle goes, then one more try */
		embkvd_obpool_trim(pool);
		mr = ibv_reg_mr(vc->v->pd, base, len, 0);
		if (!mr)
			return NULL;
	}
	embkvd_obpool_registered(pool);
	if (ob->pool)
		ob->reg = mr;
	else
		sd->mr = mr;
	return mr;
}

void embkvd_verbs_unreg(void *reg)
{
	ibv_dereg_mr(reg);
}

/* Connections: resources ---------------------------------------------------------- */

static int post_recv(struct embkvd_vconn *vc, uint32_t i)
{
	struct ibv_sge sge = {
		.addr = (uint64_t)(uintptr_t)(vc->rbuf +
					      (size_t)i * EMBKV_VERBS_RECV_SIZE),
		.length = EMBKV_VERBS_RECV_SIZE,
		.lkey = vc->rmr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *bad;

	return -ibv_post_recv(vc->id->qp, &wr, &bad);
}

void embkvd_vconn_free(struct embkvd_vconn *vc)
{
	/* the QP first: no work request still reads a send buffer when
	 * its registration goes */
	if (vc->has_qp)
		rdma_destroy_qp(vc->id);
	for (uint32_t i = 0; vc->sends && i < vc->nsend; i++)
		send_release(&vc->sends[i]);
	if (vc->cq)
		ibv_destroy_cq(vc->cq);
	if (vc->cch)
		ibv_destroy_comp_channel(vc->cch);
	if (vc->smr)
		ibv_dereg_mr(vc->smr);
	if (vc->rmr)
		ibv_dereg_mr(vc->rmr);
	free(vc->sbuf);
	free(vc->rbuf);
	free(vc->sends);
	rdma_destroy_id(vc->id);
	free(vc);
}

/* Everything a connection needs, before rdma_accept. */
int embkvd_vconn_setup(struct embkvd_vconn *vc)
{
	struct embkvd_verbs *v = vc->v;
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
	};
	size_t rbytes, sbytes;
	int err;

	vc->window = min_u32(vc->cli.credits, EMBKV_VERBS_WINDOW);
	vc->nrecv = EMBKV_VERBS_WINDOW;
	vc->nsend = vc->window * SENDS_PER_CREDIT;
	vc->slot_bytes = min_u32(vc->cli.recv_size, SEND_SLOT_MAX);
	vc->cch = ibv_create_comp_channel(v->ctx);
	if (!vc->cch)
		return -ENOMEM;
	err = set_nonblock(vc->cch->fd);
	if (err)
		return err;
	vc->cq = ibv_create_cq(v->ctx, (int)(vc->nrecv + 2 * vc->nsend), NULL,
			       vc->cch, 0);
	if (!vc->cq)
		return -ENOMEM;
	if (ibv_req_notify_cq(vc->cq, 0))
		return -EIO;
	qa.send_cq = qa.recv_cq = vc->cq;
	qa.cap.max_send_wr = 2 * vc->nsend; /* a PULL_LAND posts two */
	qa.cap.max_recv_wr = vc->nrecv;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	if (rdma_create_qp(vc->id, v->pd, &qa))
		return -errno;
	vc->has_qp = true;
	rbytes = (size_t)vc->nrecv * EMBKV_VERBS_RECV_SIZE;
	sbytes = (size_t)vc->nsend * vc->slot_bytes;
	vc->rbuf = aligned_alloc(4096, rbytes);
	vc->sbuf = aligned_alloc(4096, sbytes);
	vc->sends = calloc(vc->nsend, sizeof(*vc->sends));
	if (!vc->rbuf || !vc->sbuf || !vc->sends)
		return -ENOMEM;
	vc->rmr = ibv_reg_mr(v->pd, vc->rbuf, rbytes, IBV_ACCESS_LOCAL_WRITE);
	vc->smr = ibv_reg_mr(v->pd, vc->sbuf, sbytes, 0);
	if (!vc->rmr || !vc->smr)
		return -ENOMEM;
	for (uint32_t i = 0; i < vc->nsend; i++) {
		vc->sends[i].slot = vc->sbuf + (size_t)i * vc->slot_bytes;
		vc->sends[i].next_free = i + 1 < vc->nsend ? i + 1 : NO_SLOT;
	}
	vc->free_head = 0;
	for (uint32_t i = 0; i < vc->nrecv; i++) {
		err = post_recv(vc, i);
		if (err)
			return err;
	}
	return 0;
}

void embkvd_vconn_destroy(struct embkvd_conn *c)
{
	struct embkvd_vconn *vc = c->vc;

	if (vc->state == VC_SETUP)
		c->io->nwaiting--;
	if (vc->epoll)
		epoll_ctl(c->io->epfd, EPOLL_CTL_DEL, vc->cch->fd, NULL);
	vc->id->context = NULL;
	rdma_disconnect(vc->id); /* may fail when not connected: fine */
	embkvd_vconn_free(vc);
	c->vc = NULL;
}

/* Connections: frames --------------------------------------------------------------- */

static uint64_t frame_req_id(const uint8_t *frame)
{
	uint64_t id;

	memcpy(&id, frame + EMBKV_WIRE_HDR_REQ_ID, sizeof(id));
	return le64toh(id);
}

/* An ERROR EMBKV_ELIMIT frame for req_id, in place of a reply too big for
 * the client's slots; its length, 0 if it does not encode. */
static size_t limit_error(struct embkvd_conn *c, uint8_t *buf, size_t cap,
			  uint64_t req_id, size_t len)
{
	char msg[ERRMSG_BYTES];
	struct embkv_wire_error e = { .status = EMBKV_ELIMIT };
	struct embkv_wire_hdr h = {
		.opcode = EMBKV_WIRE_OP_ERROR,
		.request_id = req_id,
		.epoch = embkvd_epoch(c->io->srv),
	};
	size_t blen;
	int n;

	n = snprintf(msg, sizeof(msg), "a %zu-byte reply is over the "
		     "%u-byte reply slot", len, c->vc->cli.slot_size);
	e.msg.ptr = msg;
	e.msg.len = n < 0 ? 0 : (uint32_t)strnlen(msg, EMBKV_WIRE_ERRMSG_MAX);
	if (embkv_wire_error_size(&e, &blen) ||
	    EMBKV_WIRE_HDR_SIZE + blen > cap)
		return 0;
	h.body_len = (uint32_t)blen;
	if (!embkv_wire_hdr_encode(&h, buf) ||
	    embkv_wire_error_encode(&e, buf + EMBKV_WIRE_HDR_SIZE, blen))
		return 0;
	embkv_stat_inc(&c->io->st.errors, 1);
	return EMBKV_WIRE_HDR_SIZE + blen;
}

/* Posts one reply frame (ownership of ob passes); 0 or a negative errno. */
static int post_reply(struct embkvd_conn *c, struct embkvd_obuf *ob)
{
	struct embkvd_vconn *vc = c->vc;
	uint32_t idx = vc->free_head;
	struct vsend *sd = &vc->sends[idx];
	uint64_t req_id = frame_req_id(ob->data);
	size_t len = ob->len;
	struct ibv_sge sge, lsge;
	struct ibv_mr *mr;
	struct ibv_send_wr wr = {
		.wr_id = SEND_TAG | idx,
		.sg_list = &sge,
		.num_sge = 1,
		.send_flags = IBV_SEND_SIGNALED,
	}, lwr = {
		.wr_id = LAND_TAG | idx,
		.sg_list = &lsge,
		.num_sge = 1,
		.opcode = IBV_WR_RDMA_WRITE,
		.send_flags = IBV_SEND_SIGNALED,
		.next = &wr,
	}, *first = &wr, *bad;
	int err;

	if (len > vc->cli.recv_size && len > vc->cli.slot_size) {
		len = limit_error(c, sd->slot, vc->slot_bytes, req_id, len);
		embkvd_obuf_free(ob);
		ob = NULL;
		if (!len)
			return -EINVAL;
	}
	if (ob && (ob->land_len || len > vc->slot_bytes)) {
		/* sent in place: frame (and a PULL_LAND's records, first) */
		mr = reply_mr(vc, sd, ob, len + ob->land_len);
		if (!mr) {
			embkvd_obuf_free(ob);
			return -ENOMEM;
		}
		sd->ob = ob;
		sge.addr = (uint64_t)(uintptr_t)ob->data;
		sge.lkey = mr->lkey;
		if (ob->land_len) {
			lsge.addr = (uint64_t)(uintptr_t)(ob->data + len);
			lsge.length = (uint32_t)ob->land_len;
			lsge.lkey = mr->lkey;
			lwr.wr.rdma.remote_addr = ob->land_addr;
			lwr.wr.rdma.rkey = (uint32_t)ob->land_rkey;
			first = &lwr;
		}
	} else {
		if (ob) {
			memcpy(sd->slot, ob->data, len);
			embkvd_obuf_free(ob);
		}
		sge.addr = (uint64_t)(uintptr_t)sd->slot;
		sge.lkey = vc->smr->lkey;
	}
	sge.length = (uint32_t)len;
	if (len <= vc->cli.recv_size) {
		wr.opcode = IBV_WR_SEND;
	} else {
		uint32_t slot = (uint32_t)(req_id % vc->cli.reply_slots);

		wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
		wr.imm_data = htobe32(slot);
		wr.wr.rdma.remote_addr = vc->cli.reply_addr +
					 (uint64_t)slot * vc->cli.slot_size;
		wr.wr.rdma.rkey = vc->cli.reply_rkey;
	}
	err = ibv_post_send(vc->id->qp, first, &bad);
	if (err && first == &lwr && bad == &wr) {
		/* the WRITE went out and reads the buffer: it stays
		 * registered until the connection (closing on this error)
		 * destroys its QP first (embkvd_vconn_free) */
		return -err;
	}
	if (err) {
		send_release(sd);
		return -err;
	}
	vc->free_head = sd->next_free;
	vc->sends_inflight++;
	embkv_stat_inc(&c->io->st.bytes_out, len);
	if (first == &lwr)
		embkv_stat_inc(&c->io->st.bytes_out, lwr.sg_list->length);
	return 0;
}

size_t embkvd_vconn_copy_max(const struct embkvd_conn *c)
{
	return c->vc ? c->vc->slot_bytes : 0;
}

size_t embkvd_vconn_land_max(const struct embkvd_conn *c)
{
	return c->vc && c->vc->state == VC_READY ? c->vc->cli.slot_size : 0;
}

void embkvd_vconn_flush(struct embkvd_conn *c)
{
	struct embkvd_vconn *vc = c->vc;
	int err;

	if (!c->open || vc->state != VC_READY)
		return;
	while (c->out_head && vc->free_head != NO_SLOT) {
		struct embkvd_obuf *ob = c->out_head;

		c->out_head = ob->next;
		if (!c->out_head)
			c->out_tail = NULL;
		c->out_bytes -= ob->len + ob->land_len;
		if (vc->outstanding)
			vc->outstanding--;
		err = post_reply(c, ob);
		if (err) {
			embkvd_log("closing an RDMA connection: cannot post a "
				   "reply: %s", strerror(-err));
			embkvd_conn_close(c);
			return;
		}
	}
	embkvd_vconn_settle(c);
}

void embkvd_vconn_settle(struct embkvd_conn *c)
{
	if (!c->open)
		return;
	/* A closing connection goes once its replies are out; the I/O
	 * thread's timers close it at its deadline otherwise. */
	if (c->closing && !c->out_head && !c->inflight &&
	    !c->vc->sends_inflight)
		embkvd_conn_close(c);
}

static void on_recv(struct embkvd_conn *c, uint32_t i, uint32_t len)
{
	struct embkvd_vconn *vc = c->vc;
	const uint8_t *buf = vc->rbuf + (size_t)i * EMBKV_VERBS_RECV_SIZE;
	struct embkv_wire_hdr h;
	uint8_t *body = NULL;
	int rc = 0;

	embkv_stat_inc(&c->io->st.bytes_in, len);
	if (c->closing)
		goto repost; /* discard */
	if (++vc->outstanding > vc->window) {
		embkvd_log("closing an RDMA connection: more than %u requests "
			   "outstanding", vc->window);
		embkvd_conn_close(c);
		return;
	}
	memset(&h, 0, sizeof(h));
	rc = embkv_wire_hdr_decode(buf, len, &h);
	rc = embkvd_conn_admit(c, &h, rc);
	if (!rc && len != EMBKV_WIRE_HDR_SIZE + (uint64_t)h.body_len) {
		embkvd_conn_error(c, h.request_id, EMBKV_EPROTO, true,
				  "a %u-byte message with a %u-byte body",
				  len, h.body_len);
		rc = -1;
	}
	if (!rc && h.body_len) {
		body = malloc(h.body_len);
		if (body) {
			memcpy(body, buf + EMBKV_WIRE_HDR_SIZE, h.body_len);
		} else {
			embkvd_conn_error(c, h.request_id, -ENOMEM, false,
					  "no memory for a %u-byte body",
					  h.body_len);
			rc = 1;
		}
	}
repost:
	/* The bytes were copied out: the buffer takes the next request. */
	if (post_recv(vc, i)) {
		free(body);
		embkvd_log("closing an RDMA connection: cannot post a RECV");
		embkvd_conn_close(c);
		return;
	}
	if (rc || c->closing)
		return;
	embkv_stat_inc(&c->io->st.requests, 1);
	embkvd_svc_frame(c, &h, body, embkv_now_ns());
}

static void on_send_done(struct embkvd_vconn *vc, uint32_t i)
{
	struct vsend *sd = &vc->sends[i];

	send_release(sd);
	sd->next_free = vc->free_head;
	vc->free_head = i;
	vc->sends_inflight--;
}

void embkvd_vconn_event(struct embkvd_conn *c)
{
	struct embkvd_vconn *vc = c->vc;
	struct ibv_wc wc[CQ_BATCH];
	struct ibv_cq *cq;
	void *ctx;
	int n = 0;

	while (!ibv_get_cq_event(vc->cch, &cq, &ctx))
		ibv_ack_cq_events(cq, 1);
	if (ibv_req_notify_cq(vc->cq, 0)) {
		embkvd_conn_close(c);
		return;
	}
	while (c->open && (n = ibv_poll_cq(vc->cq, CQ_BATCH, wc)) > 0) {
		for (int k = 0; k < n && c->open; k++) {
			if (wc[k].status != IBV_WC_SUCCESS) {
				if (wc[k].status != IBV_WC_WR_FLUSH_ERR)
					embkvd_log("closing an RDMA connection: "
						   "%s",
						   ibv_wc_status_str(wc[k].status));
				embkvd_conn_close(c);
				break;
			}
			if (wc[k].wr_id & LAND_TAG)
				continue; /* the reply's completion follows */
			if (wc[k].wr_id & SEND_TAG)
				on_send_done(vc, (uint32_t)wc[k].wr_id);
			else
				on_recv(c, (uint32_t)wc[k].wr_id,
					wc[k].byte_len);
		}
	}
	if (c->open && n < 0)
		embkvd_conn_close(c);
	if (c->open)
		embkvd_vconn_flush(c);
}
