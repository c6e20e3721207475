/*
 * embkv_rdma_verbs_transport: the client's verbs transport (net/verbs.c)
 * against a tiny in-test verbs server, in the soft-RoCE VM.
 *
 * The server thread speaks RDMA.md's handshake and framing and nothing
 * else: it answers each request frame with a reply of the size the
 * request's epoch field asks for (opcode | REPLY, body bytes i * 7 + id),
 * by SEND when it fits the client's RECVs and by RDMA_WRITE_WITH_IMM into
 * slot request_id % slots otherwise, out of order in pairs so that slot
 * and window accounting is exercised; and it exposes a 1 MiB region
 * registered REMOTE_READ only whose address and rkey it sends in the body
 * of the reply to a request with epoch 0. The client checks:
 *   1. connect, limits (max_request = the server's recv_size);
 *   2. 200 pipelined requests (window 16) with replies of 100 B .. 600 KiB;
 *   3. a request frame over max_request fails with EMBKV_ELIMIT;
 *   4. a chain of 500 READs (one post) lands exactly; READs into memory
 *      the caller registered (read_region: bounds, foreign handles, 16
 *      kept, least recently asked evicted, moved memory registered again,
 *      a failed registration remembered);
 *      chains posted without polling are refused once the transport's
 *      room is used, and every cookie comes back once, in order;
 *   5. the server goes away: the client's recv gets an error within 5 s.
 * Every wait has a deadline; a 60 s alarm bounds the run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "net/transport.h"
#include "net/verbs.h"

#define NREQ 200u
#define SRV_CREDITS 32u
#define SRV_RECV (16u << 10)
#define REGION (1u << 20)
#define NREADS 500u
#define WAIT_MS 10000u

static const char *ip;
static volatile uint16_t srv_port;
static volatile int srv_stop;
static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", \
	__FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); \
	failures++; goto out; } } while (0)

/* Server ---------------------------------------------------------------- */

struct srv {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *lid, *id;
	struct ibv_pd *pd;
	struct ibv_cq *cq, *scq; /* recv, send */
	uint8_t *recv, *send, *region;
	struct ibv_mr *recv_mr, *send_mr, *region_mr;
	struct embkv_verbs_connect peer;
	uint32_t nsend;
};

static int srv_cm(struct srv *s, enum rdma_cm_event_type want,
		  struct rdma_cm_id **id, void *pd, size_t plen)
{
	struct rdma_cm_event *ev;
	struct pollfd p = { .fd = s->ec->fd, .events = POLLIN };

	if (poll(&p, 1, WAIT_MS) != 1 || rdma_get_cm_event(s->ec, &ev))
		return -1;
	if (ev->event != want) {
		rdma_ack_cm_event(ev);
		return -1;
	}
	if (id)
		*id = ev->id;
	if (pd) {
		memset(pd, 0, plen);
		memcpy(pd, ev->param.conn.private_data,
		       ev->param.conn.private_data_len < plen
			       ? ev->param.conn.private_data_len : plen);
	}
	rdma_ack_cm_event(ev);
	return 0;
}

static int srv_post_recv(struct srv *s, uint32_t i)
{
	struct ibv_sge sge = { (uintptr_t)(s->recv + (size_t)i * SRV_RECV),
			       SRV_RECV, s->recv_mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 },
			   *bad;

	return ibv_post_recv(s->id->qp, &wr, &bad);
}

static int srv_wc(struct ibv_cq *cq, struct ibv_wc *wc)
{
	uint64_t deadline = embkv_now_ms() + WAIT_MS;

	while (embkv_now_ms() < deadline && !srv_stop) {
		int n = ibv_poll_cq(cq, 1, wc);

		if (n)
			return n == 1 && wc->status == IBV_WC_SUCCESS ? 0 : -1;
	}
	return -1;
}

/* Answers the request in recv buffer i (len bytes). */
static int srv_reply(struct srv *s, const uint8_t *req, uint32_t len)
{
	struct embkv_wire_hdr h;
	uint64_t want;
	uint8_t *out = s->send;
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad;
	struct ibv_wc wc;
	uint32_t slot;

	if (embkv_wire_hdr_decode(req, len, &h))
		return -1;
	want = h.epoch;
	h.opcode |= EMBKV_WIRE_OP_REPLY;
	h.epoch = 0;
	if (want == 0) { /* the region */
		uint64_t d[2] = { (uintptr_t)s->region, s->region_mr->rkey };

		h.body_len = sizeof(d);
		embkv_wire_hdr_encode(&h, out);
		memcpy(out + EMBKV_WIRE_HDR_SIZE, d, sizeof(d));
	} else {
		h.body_len = (uint32_t)want;
		embkv_wire_hdr_encode(&h, out);
		for (uint32_t i = 0; i < want; i++)
			out[EMBKV_WIRE_HDR_SIZE + i] =
				(uint8_t)(i * 7 + h.request_id);
	}
	memset(&wr, 0, sizeof(wr));
	sge.addr = (uintptr_t)out;
	sge.length = EMBKV_WIRE_HDR_SIZE + h.body_len;
	sge.lkey = s->send_mr->lkey;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = IBV_SEND_SIGNALED;
	if (sge.length <= s->peer.recv_size) {
		wr.opcode = IBV_WR_SEND;
	} else {
		slot = (uint32_t)(h.request_id % s->peer.reply_slots);
		wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
		wr.imm_data = htonl(slot);
		wr.wr.rdma.remote_addr = s->peer.reply_addr +
					 (uint64_t)slot * s->peer.slot_size;
		wr.wr.rdma.rkey = s->peer.reply_rkey;
	}
	if (ibv_post_send(s->id->qp, &wr, &bad) || srv_wc(s->scq, &wc))
		return -1;
	s->nsend++;
	return 0;
}

static void *srv_main(void *arg)
{
	struct srv s;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct embkv_verbs_accept acc = { .credits = SRV_CREDITS,
					  .recv_size = SRV_RECV };
	uint8_t cpd[64], apd[EMBKV_VERBS_ACCEPT_SIZE];
	struct ibv_qp_init_attr qa;
	struct rdma_conn_param cp;
	struct ibv_wc wc, held;
	int have_held = 0;

	(void)arg;
	memset(&s, 0, sizeof(s));
	inet_pton(AF_INET, ip, &sa.sin_addr);
	s.ec = rdma_create_event_channel();
	if (!s.ec || rdma_create_id(s.ec, &s.lid, NULL, RDMA_PS_TCP) ||
	    rdma_bind_addr(s.lid, (struct sockaddr *)&sa) ||
	    rdma_listen(s.lid, 4))
		goto out;
	fcntl(s.ec->fd, F_SETFL, O_NONBLOCK);
	srv_port = ntohs(rdma_get_src_port(s.lid));
	if (srv_cm(&s, RDMA_CM_EVENT_CONNECT_REQUEST, &s.id, cpd, sizeof(cpd)) ||
	    embkv_wire_verbs_connect_decode(cpd, sizeof(cpd), &s.peer))
		goto out;
	s.pd = ibv_alloc_pd(s.id->verbs);
	s.cq = ibv_create_cq(s.id->verbs, 256, NULL, NULL, 0);
	s.scq = ibv_create_cq(s.id->verbs, 256, NULL, NULL, 0);
	memset(&qa, 0, sizeof(qa));
	qa.qp_type = IBV_QPT_RC;
	qa.send_cq = s.scq;
	qa.recv_cq = s.cq;
	qa.cap.max_send_wr = 64;
	qa.cap.max_recv_wr = SRV_CREDITS;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	qa.sq_sig_all = 1;
	if (!s.pd || !s.cq || !s.scq || rdma_create_qp(s.id, s.pd, &qa))
		goto out;
	s.recv = calloc(SRV_CREDITS, SRV_RECV);
	s.send = calloc(1, 1u << 20);
	s.region = malloc(REGION);
	for (uint32_t i = 0; i < REGION; i++)
		s.region[i] = (uint8_t)(i * 13 + (i >> 12));
	s.recv_mr = ibv_reg_mr(s.pd, s.recv, (size_t)SRV_CREDITS * SRV_RECV,
			       IBV_ACCESS_LOCAL_WRITE);
	s.send_mr = ibv_reg_mr(s.pd, s.send, 1u << 20, 0);
	s.region_mr = ibv_reg_mr(s.pd, s.region, REGION,
				 IBV_ACCESS_REMOTE_READ);
	if (!s.recv_mr || !s.send_mr || !s.region_mr)
		goto out;
	for (uint32_t i = 0; i < SRV_CREDITS; i++)
		if (srv_post_recv(&s, i))
			goto out;
	embkv_wire_verbs_accept_encode(&acc, apd, sizeof(apd));
	memset(&cp, 0, sizeof(cp));
	cp.private_data = apd;
	cp.private_data_len = sizeof(apd);
	cp.responder_resources = 16;
	if (rdma_accept(s.id, &cp) ||
	    srv_cm(&s, RDMA_CM_EVENT_ESTABLISHED, NULL, NULL, 0))
		goto out;
	/* Requests: answered in pairs, the second first. */
	while (!srv_stop) {
		if (srv_wc(s.cq, &wc))
			break;
		if (wc.opcode != IBV_WC_RECV)
			continue;
		if (!have_held) {
			held = wc;
			have_held = 1;
			/* a lone request (handshake-like) must not starve */
			struct ibv_wc nx;
			uint64_t until = embkv_now_ms() + 20;
			int n = 0;

			while (embkv_now_ms() < until &&
			       (n = ibv_poll_cq(s.cq, 1, &nx)) == 0)
				;
			if (n != 1 || nx.status != IBV_WC_SUCCESS ||
			    nx.opcode != IBV_WC_RECV) {
				if (srv_reply(&s, s.recv + held.wr_id * SRV_RECV,
					      held.byte_len) ||
				    srv_post_recv(&s, (uint32_t)held.wr_id))
					break;
				have_held = 0;
				continue;
			}
			wc = nx;
		}
		if (srv_reply(&s, s.recv + wc.wr_id * SRV_RECV, wc.byte_len) ||
		    srv_post_recv(&s, (uint32_t)wc.wr_id) ||
		    srv_reply(&s, s.recv + held.wr_id * SRV_RECV,
			      held.byte_len) ||
		    srv_post_recv(&s, (uint32_t)held.wr_id))
			break;
		have_held = 0;
	}
out:
	/* Going away like a dead server: everything destroyed. */
	if (s.id && s.id->qp)
		rdma_destroy_qp(s.id);
	if (s.region_mr)
		ibv_dereg_mr(s.region_mr);
	if (s.send_mr)
		ibv_dereg_mr(s.send_mr);
	if (s.recv_mr)
		ibv_dereg_mr(s.recv_mr);
	free(s.region);
	free(s.send);
	free(s.recv);
	if (s.scq)
		ibv_destroy_cq(s.scq);
	if (s.cq)
		ibv_destroy_cq(s.cq);
	if (s.pd)
		ibv_dealloc_pd(s.pd);
	if (s.id)
		rdma_destroy_id(s.id);
	if (s.lid)
		rdma_destroy_id(s.lid);
	if (s.ec)
		rdma_destroy_event_channel(s.ec);
	return NULL;
}

/* Client ---------------------------------------------------------------- */

static int frame(uint8_t *buf, uint64_t id, uint64_t want, uint32_t body)
{
	struct embkv_wire_hdr h = { .opcode = EMBKV_WIRE_OP_PULL,
				    .request_id = id, .epoch = want,
				    .body_len = body };

	memset(buf + EMBKV_WIRE_HDR_SIZE, 0, body);
	return embkv_wire_hdr_encode(&h, buf) ? 0 : -1;
}

/* read_region's registration callback: ibv_reg_mr, counted. */
static void *reg_count(void *pd, void *p, size_t len, int access, void *arg)
{
	(*(int *)arg)++;
	return ibv_reg_mr(pd, p, len, access);
}

/* A registration that cannot be done (as dma-buf without support). */
static void *reg_fail(void *pd, void *p, size_t len, int access, void *arg)
{
	(void)pd;
	(void)p;
	(void)len;
	(void)access;
	(*(int *)arg)++;
	errno = ENOTSUP;
	return NULL;
}

static int wait_in(struct embkv_conn *c)
{
	return embkv_fd_wait(c->ops->poll_fd(c), POLLIN, embkv_now_ms() +
			     WAIT_MS);
}

static uint32_t want_of(uint64_t id)
{
	static const uint32_t sizes[] = { 100, 5000, 64000, 70000, 300000,
					  600000 };

	return sizes[id % 6];
}

int main(int argc, char **argv)
{
	struct embkv_endpoint ep;
	struct embkv_conn *c = NULL;
	struct embkv_conn_limits lim;
	struct embkv_rx rx;
	pthread_t th;
	char addr[128];
	uint8_t *buf = malloc(1u << 20);
	uint32_t sent = 0, got = 0, bad = 0;
	uint64_t region_addr = 0, t0;
	uint32_t rkey = 0;
	int rc;

	alarm(60);
	ip = argc > 1 ? argv[1] : getenv("EMBKV_VM_IP");
	if (!ip)
		ip = "10.0.2.15";
	embkv_rx_init(&rx, EMBKV_WIRE_MAX_BODY);
	pthread_create(&th, NULL, srv_main, NULL);
	for (t0 = embkv_now_ms(); !srv_port && embkv_now_ms() - t0 < WAIT_MS;)
		usleep(1000);
	CHECK(srv_port, "server did not listen");
	snprintf(addr, sizeof(addr), "rdma://%s:%u", ip, srv_port);
	CHECK(embkv_endpoint_parse(addr, &ep) == 0, "parse %s", addr);
	rc = ep.ops->connect(&ep, 5000, &c);
	CHECK(rc == 0, "connect: %d (%s)", rc, embkv_strerror(rc));
	ep.ops->limits(c, &lim);
	CHECK(lim.max_request == SRV_RECV, "max_request %u", lim.max_request);
	printf("PASS connect (max_request %u, max_reply %u, max_reads %u)\n",
	       lim.max_request, lim.max_reply, lim.max_reads);

	/* 2: pipelined requests, replies by SEND and by WRITE_WITH_IMM */
	while (got < NREQ) {
		size_t off = 0;

		if (sent < NREQ) {
			frame(buf, sent + 1, want_of(sent + 1), 8);
			rc = c->ops->send_some(c, buf, EMBKV_WIRE_HDR_SIZE + 8,
					       &off);
			if (rc == 0) {
				sent++;
				continue;
			}
			CHECK(rc == -EAGAIN, "send: %d", rc);
		}
		rc = c->ops->recv_some(c, &rx);
		if (rc == -EAGAIN) {
			rc = wait_in(c);
			CHECK(rc == 0, "wait: %d after %u replies", rc, got);
			continue;
		}
		CHECK(rc == 0, "recv: %d (%s)", rc, embkv_strerror(rc));
		if (rx.hdr.body_len != want_of(rx.hdr.request_id))
			bad++;
		for (uint32_t i = 0; i < rx.hdr.body_len; i++)
			if (rx.buf.data[EMBKV_WIRE_HDR_SIZE + i] !=
			    (uint8_t)(i * 7 + rx.hdr.request_id)) {
				bad++;
				break;
			}
		embkv_rx_reset(&rx);
		got++;
	}
	CHECK(bad == 0, "%u bad replies", bad);
	printf("PASS %u pipelined requests, replies by SEND and WRITE_WITH_IMM\n",
	       got);

	/* 3: too big a request */
	{
		size_t off = 0;

		frame(buf, 1000, 100, SRV_RECV);
		rc = c->ops->send_some(c, buf, EMBKV_WIRE_HDR_SIZE + SRV_RECV,
				       &off);
		CHECK(rc == EMBKV_ELIMIT, "oversized send: %d", rc);
		printf("PASS oversized request refused\n");
	}

	/* 4: one chain of READs */
	{
		size_t off = 0;
		struct embkv_remote_read *r = calloc(NREADS, sizeof(*r));
		uint8_t *local = c->ops->read_buf(c, (size_t)NREADS * 2048);
		uint64_t cookie = 0;

		frame(buf, 2000, 0, 8);
		CHECK(embkv_conn_send(c, buf, EMBKV_WIRE_HDR_SIZE + 8,
				      embkv_now_ms() + WAIT_MS) == 0, "send");
		CHECK(embkv_conn_recv(c, &rx, embkv_now_ms() + WAIT_MS) == 0,
		      "recv");
		memcpy(&region_addr, rx.buf.data + EMBKV_WIRE_HDR_SIZE, 8);
		memcpy(&rkey, rx.buf.data + EMBKV_WIRE_HDR_SIZE + 8, 4);
		embkv_rx_reset(&rx);
		CHECK(r && local, "read_buf");
		for (uint32_t k = 0; k < NREADS; k++) {
			r[k].remote_addr = region_addr + (uint64_t)k * 2000;
			r[k].rkey = rkey;
			r[k].len = 64 + k * 3;
			r[k].local = local + (size_t)k * 2048;
			r[k].cookie = k;
		}
		memset(local, 0, (size_t)NREADS * 2048);
		rc = c->ops->post_reads(c, r, NREADS);
		CHECK(rc == 0, "post_reads: %d", rc);
		while ((rc = c->ops->poll_reads(c, &cookie, 1)) == 0)
			CHECK(wait_in(c) == 0, "read wait");
		CHECK(rc == 1 && cookie == NREADS - 1, "poll_reads %d", rc);
		for (uint32_t k = 0; k < NREADS; k++)
			for (uint32_t i = 0; i < r[k].len; i++) {
				uint32_t o = k * 2000 + i;

				CHECK(local[(size_t)k * 2048 + i] ==
				      (uint8_t)(o * 13 + (o >> 12)),
				      "read %u byte %u", k, i);
			}
		free(r);
		(void)off;
		printf("PASS %u READs in one chain\n", NREADS);
	}

	/* 4b: READs into regions the caller registered (read_region, the
	 * GPUDirect slab's path), and chains posted without polling */
	{
		enum { RLEN = 64 * 1024, NR = 17 };
		uint8_t *mem[NR];
		const void *h[NR], *h1;
		struct embkv_remote_read rr[8];
		uint64_t cookies[32];
		int nreg = 0, posted = 0, polled = 0;

		for (int i = 0; i < NR; i++) {
			mem[i] = aligned_alloc(4096, RLEN);
			CHECK(mem[i], "memory");
			memset(mem[i], 0, RLEN);
		}
		CHECK(c->ops->read_region, "no read_region");
		h1 = c->ops->read_region(c, 101, mem[0], RLEN, reg_count, &nreg);
		CHECK(h1 && nreg == 1, "register: %p %d", h1, nreg);
		CHECK(c->ops->read_region(c, 101, mem[0], RLEN, reg_count,
					  &nreg) == h1 && nreg == 1,
		      "the same id registered again");
		for (uint32_t k = 0; k < 8; k++)
			rr[k] = (struct embkv_remote_read){
				.remote_addr = region_addr + (uint64_t)k * 2000,
				.rkey = rkey, .len = 100 + k,
				.local = mem[0] + (size_t)k * 4096,
				.cookie = 77, .region = h1 };
		CHECK(c->ops->post_reads(c, rr, 8) == 0, "post into region");
		while ((rc = c->ops->poll_reads(c, cookies, 1)) == 0)
			CHECK(wait_in(c) == 0, "read wait");
		CHECK(rc == 1 && cookies[0] == 77, "poll %d", rc);
		for (uint32_t k = 0; k < 8; k++)
			for (uint32_t i = 0; i < rr[k].len; i++) {
				uint32_t o = k * 2000 + i;

				CHECK(mem[0][(size_t)k * 4096 + i] ==
				      (uint8_t)(o * 13 + (o >> 12)),
				      "region read %u byte %u", k, i);
			}
		/* outside the region, or a handle that is not one */
		rr[0].local = mem[0] + RLEN - 50;
		CHECK(c->ops->post_reads(c, rr, 1) == -EINVAL,
		      "a read past the region's end was posted");
		rr[0].local = mem[0];
		rr[0].region = &rr[1];
		CHECK(c->ops->post_reads(c, rr, 1) == -EINVAL,
		      "a foreign region handle was accepted");
		rr[0].region = h1;
		/* more ids than kept: the least recently asked one goes */
		for (int i = 1; i < NR; i++) {
			h[i] = c->ops->read_region(c, 200 + i, mem[i], RLEN,
						   reg_count, &nreg);
			CHECK(h[i], "region %d", i);
		}
		CHECK(nreg == NR, "%d registrations", nreg);
		/* 16 kept: the 17th evicted the least recently asked (101) */
		h[0] = c->ops->read_region(c, 101, mem[0], RLEN, reg_count,
					   &nreg);
		CHECK(h[0] && nreg == NR + 1, "evicted id: %d registrations",
		      nreg);
		/* the same id with other memory is registered again */
		CHECK(c->ops->read_region(c, 101, mem[1], RLEN, reg_count,
					  &nreg) && nreg == NR + 2,
		      "moved region not registered again");
		h1 = c->ops->read_region(c, 101, mem[1], RLEN, reg_count, &nreg);
		/* chains of 256 READs posted back to back, cookies not
		 * polled: a post that finds the send queue full polls the
		 * completions itself, so finished chains pile up unpolled;
		 * they must be refused (-EAGAIN) once the transport's room
		 * for cookies (16) is used, never lost or overrun */
		for (int i = 0; i < 40; i++) {
			struct embkv_remote_read big[256];

			for (int k = 0; k < 256; k++)
				big[k] = (struct embkv_remote_read){
					.remote_addr = region_addr +
						       (uint64_t)k * 64,
					.rkey = rkey, .len = 64,
					.local = mem[1] + (size_t)k * 64,
					.cookie = 1000 + (uint64_t)i,
					.region = h1 };
			for (int tries = 0; tries < 100; tries++) {
				rc = c->ops->post_reads(c, big, 256);
				if (rc != -EAGAIN)
					break;
				usleep(1000); /* let the chains finish */
			}
			if (rc == -EAGAIN)
				break;
			CHECK(rc == 0, "chain %d: %d", i, rc);
			posted++;
		}
		CHECK(rc == -EAGAIN && posted == 16,
		      "%d chains posted without polling, then %d", posted, rc);
		while (polled < posted) {
			rc = c->ops->poll_reads(c, cookies, 32);
			CHECK(rc >= 0, "poll: %d", rc);
			for (int i = 0; i < rc; i++)
				CHECK(cookies[i] == 1000 + (uint64_t)polled + (uint64_t)i,
				      "cookie %llu", (unsigned long long)cookies[i]);
			polled += rc;
			if (!rc)
				CHECK(wait_in(c) == 0, "wait");
		}
		for (int i = 0; i < NR; i++)
			free(mem[i]);
		/* a registration that fails is remembered, not retried */
		{
			int fails = 0;

			CHECK(!c->ops->read_region(c, 900, mem[2], RLEN,
						   reg_fail, &fails) &&
			      errno == ENOTSUP && fails == 1,
			      "failing registration: %d calls", fails);
			CHECK(!c->ops->read_region(c, 900, mem[2], RLEN,
						   reg_fail, &fails) &&
			      errno == ENOTSUP && fails == 1,
			      "a failed registration was tried again (%d)",
			      fails);
		}
		printf("PASS READs into caller regions (%d registrations, LRU "
		       "of 16, a failure remembered), %d unpolled chains then "
		       "-EAGAIN, every cookie once\n", nreg, posted);
	}

	/* 5: the server goes away */
	{
		size_t off = 0;

		srv_stop = 1;
		pthread_join(th, NULL);
		t0 = embkv_now_ms();
		frame(buf, 3000, 100, 8);
		rc = c->ops->send_some(c, buf, EMBKV_WIRE_HDR_SIZE + 8, &off);
		if (rc == 0)
			rc = embkv_conn_recv(c, &rx, t0 + 5000);
		CHECK(rc == EMBKV_EDISCONNECTED || rc == EMBKV_ETIMEDOUT ||
		      rc < 0, "after the server left: %d", rc);
		CHECK(embkv_now_ms() - t0 <= 5500, "took %llu ms",
		      (unsigned long long)(embkv_now_ms() - t0));
		printf("PASS server gone: %s after %llu ms\n", embkv_strerror(rc),
		       (unsigned long long)(embkv_now_ms() - t0));
	}
out:
	if (c)
		c->ops->close(c);
	embkv_rx_destroy(&rx);
	free(buf);
	if (!srv_stop) {
		srv_stop = 1;
		pthread_join(th, NULL);
	}
	printf("%s\n", failures ? "FAILED" : "ALL PASSED");
	return failures ? 1 : 0;
}
