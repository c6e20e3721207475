/*
 * The RPC exchange loop (client/rpc.c) against a fake transport with a
 * request window, the way the rdma transport sends: send_some says -EAGAIN
 * while `window` requests are unanswered, and replies are all there at
 * once (as when the client was descheduled while the server answered).
 * The fake's poll descriptor never becomes readable, so the loop must send
 * again after receiving, before it waits: a loop that waits instead hangs
 * until the deadline with every request so far answered. Found as a rare
 * "push: timed out" of a 100k-row push over soft-RoCE on a loaded host.
 *
 * Also: replies in any order are matched by request id, a transport error
 * fails every unanswered request of that connection, and the client's
 * frame buffer pool keeps within its limits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client.h"
#include "net/transport.h"

#define NREQ 64u
#define DEADLINE_MS 3000u

struct fake_conn {
	struct embkv_conn base;
	uint32_t window;       /* unanswered requests allowed */
	uint32_t outstanding;  /* sent, reply not yet taken */
	int reverse;           /* hand replies out newest first */
	uint32_t fail_after;   /* sends before EMBKV_EDISCONNECTED; 0: never */
	uint32_t sends;
	uint64_t ids[NREQ];    /* replies waiting: request ids */
	uint8_t ops[NREQ];     /* and their request opcodes */
	uint32_t nq;
	int pipefd[2];         /* [0] is never readable */
};

static int fake_send_some(struct embkv_conn *c, const uint8_t *frame,
			  size_t len, size_t *off)
{
	struct fake_conn *f = (struct fake_conn *)c;
	struct embkv_wire_hdr h;

	if (*off >= len)
		return 0;
	if (f->outstanding >= f->window)
		return -EAGAIN;
	if (f->fail_after && f->sends == f->fail_after)
		return EMBKV_EDISCONNECTED;
	assert_int_equal(embkv_wire_hdr_decode(frame, len, &h), 0);
	assert_true(f->nq < NREQ);
	f->ids[f->nq] = h.request_id;
	f->ops[f->nq] = h.opcode;
	f->nq++;
	f->outstanding++;
	f->sends++;
	*off = len;
	return 0;
}

static int fake_recv_some(struct embkv_conn *c, struct embkv_rx *rx)
{
	struct fake_conn *f = (struct fake_conn *)c;
	struct embkv_wire_hdr h = { 0 };
	uint32_t k;
	int rc;

	if (!f->nq)
		return -EAGAIN;
	k = f->reverse ? f->nq - 1 : 0;
	h.opcode = f->ops[k] | EMBKV_WIRE_OP_REPLY;
	h.request_id = f->ids[k];
	memmove(&f->ids[k], &f->ids[k + 1], (f->nq - k - 1) * sizeof(f->ids[0]));
	memmove(&f->ops[k], &f->ops[k + 1], (f->nq - k - 1) * sizeof(f->ops[0]));
	f->nq--;
	f->outstanding--;
	rc = embkv_buf_reserve(&rx->buf, EMBKV_WIRE_HDR_SIZE);
	if (rc)
		return rc;
	assert_int_equal(embkv_wire_hdr_encode(&h, rx->buf.data),
			 EMBKV_WIRE_HDR_SIZE);
	rx->buf.len = EMBKV_WIRE_HDR_SIZE;
	return embkv_rx_header_done(rx);
}

static int fake_poll_fd(const struct embkv_conn *c)
{
	return ((const struct fake_conn *)c)->pipefd[0];
}

static int fake_idle_check(struct embkv_conn *c)
{
	return ((struct fake_conn *)c)->nq ? EMBKV_EPROTO : 0;
}

static void fake_close(struct embkv_conn *c)
{
	struct fake_conn *f = (struct fake_conn *)c;

	close(f->pipefd[0]);
	close(f->pipefd[1]);
	free(f);
}

static const struct embkv_transport_ops fake_ops = {
	.scheme = "fake",
	.close = fake_close,
	.send_some = fake_send_some,
	.recv_some = fake_recv_some,
	.poll_fd = fake_poll_fd,
	.idle_check = fake_idle_check,
};

/* A client of one server whose one pooled connection is the fake. */
struct rig {
	struct embkv_client c;
	struct embkv_server s;
	struct embkv_server *servers[1];
	struct embkv_cconn *cc;
	struct fake_conn *f;
};

static void rig_init(struct rig *r, uint32_t window)
{
	memset(r, 0, sizeof(*r));
	r->f = calloc(1, sizeof(*r->f));
	r->cc = calloc(1, sizeof(*r->cc));
	assert_non_null(r->f);
	assert_non_null(r->cc);
	r->f->base.ops = &fake_ops;
	r->f->window = window;
	assert_int_equal(pipe(r->f->pipefd), 0);
	r->cc->tc = &r->f->base;
	r->cc->next_req_id = 1;
	embkv_rx_init(&r->cc->rx, EMBKV_WIRE_MAX_BODY);
	assert_int_equal(pthread_mutex_init(&r->s.lock, NULL), 0);
	assert_int_equal(embkv_cond_init_monotonic(&r->s.freed), 0);
	r->s.idle = r->cc;
	r->s.nconns = 1;
	r->servers[0] = &r->s;
	r->c.servers = r->servers;
	r->c.nservers = 1;
	r->c.max_conns = 1;
}

static void rig_fini(struct rig *r)
{
	struct embkv_cconn *cc = r->s.idle;

	while (cc) {
		struct embkv_cconn *next = cc->next;

		cc->tc->ops->close(cc->tc);
		embkv_rx_destroy(&cc->rx);
		free(cc);
		cc = next;
	}
	pthread_cond_destroy(&r->s.freed);
	pthread_mutex_destroy(&r->s.lock);
}

/* n STATS requests (any opcode the fake answers does), exchanged; returns
 * the milliseconds it took. */
static uint64_t exchange(struct rig *r, struct embkv_rpc *rpcs, uint32_t n)
{
	uint64_t t0 = embkv_now_ms();

	for (uint32_t i = 0; i < n; i++) {
		uint8_t *body;

		embkv_rpc_init(&rpcs[i], 0);
		assert_int_equal(embkv_rpc_frame(&rpcs[i], EMBKV_WIRE_OP_STATS,
						 1, 0, &body), 0);
	}
	assert_int_equal(embkv_rpc_exchange(&r->c, rpcs, n,
					    t0 + DEADLINE_MS), 0);
	return embkv_now_ms() - t0;
}

static void windowed(uint32_t window, int reverse)
{
	struct embkv_rpc rpcs[NREQ];
	struct rig r;
	uint64_t ms;

	rig_init(&r, window);
	r.f->reverse = reverse;
	ms = exchange(&r, rpcs, NREQ);
	for (uint32_t i = 0; i < NREQ; i++) {
		assert_int_equal(rpcs[i].status, 0);
		assert_int_equal(rpcs[i].rhdr.request_id, rpcs[i].req_id);
		embkv_rpc_clear(&rpcs[i]);
	}
	/* Nothing ever waited on the descriptor, which never wakes. */
	assert_true(ms < DEADLINE_MS / 2);
	assert_int_equal(r.f->sends, NREQ);
	assert_ptr_equal(r.s.idle, r.cc); /* back in the pool, not broken */
	assert_false(r.cc->broken);
	rig_fini(&r);
}

static void test_window_of_one(void **state)
{
	(void)state;
	windowed(1, 0);
}

static void test_window_of_eight_replies_reversed(void **state)
{
	(void)state;
	windowed(8, 1);
}

static void test_no_window(void **state)
{
	(void)state;
	windowed(NREQ, 1);
}

static void test_transport_error_fails_the_rest(void **state)
{
	struct embkv_rpc rpcs[NREQ];
	struct rig r;
	uint32_t ok = 0, failed = 0;

	(void)state;
	rig_init(&r, 4);
	r.f->fail_after = 10;
	exchange(&r, rpcs, NREQ);
	for (uint32_t i = 0; i < NREQ; i++) {
		if (rpcs[i].status == 0)
			ok++;
		else if (rpcs[i].status == EMBKV_EDISCONNECTED)
			failed++;
		embkv_rpc_clear(&rpcs[i]);
	}
	/* The replies to the sends that went out may still be taken. */
	assert_true(ok <= 10);
	assert_int_equal(ok + failed, NREQ);
	assert_true(failed >= NREQ - 10);
	/* A broken connection is closed, not pooled. */
	assert_null(r.s.idle);
	assert_int_equal(r.s.nconns, 0);
	rig_fini(&r);
}

/* The frame buffer pool keeps at most EMBKV_BUFPOOL_MAX buffers and
 * EMBKV_BUFPOOL_BYTES bytes, hands kept memory out again, and leaves a
 * buffer that has memory alone. */
static void test_buffer_pool_limits(void **state)
{
	struct embkv_client c;
	struct embkv_buf b;
	size_t mb = 1u << 20;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(pthread_mutex_init(&c.pool.lock, NULL), 0);
	for (uint32_t i = 0; i < EMBKV_BUFPOOL_MAX + 8; i++) {
		embkv_buf_init(&b);
		assert_int_equal(embkv_buf_reserve(&b, mb), 0);
		embkv_client_buf_give(&c, &b);
		assert_null(b.data);
		assert_int_equal(b.cap, 0);
	}
	assert_int_equal(c.pool.n, EMBKV_BUFPOOL_MAX);
	assert_true(c.pool.bytes >= EMBKV_BUFPOOL_MAX * mb);
	assert_true(c.pool.bytes <= EMBKV_BUFPOOL_BYTES);
	/* Taken back, the buffers are empty but keep their memory. */
	embkv_buf_init(&b);
	embkv_client_buf_take(&c, &b);
	assert_non_null(b.data);
	assert_true(b.cap >= mb);
	assert_int_equal(b.len, 0);
	assert_int_equal(c.pool.n, EMBKV_BUFPOOL_MAX - 1);
	/* A buffer with memory is not replaced. */
	{
		uint8_t *keep = b.data;

		embkv_client_buf_take(&c, &b);
		assert_ptr_equal(b.data, keep);
		assert_int_equal(c.pool.n, EMBKV_BUFPOOL_MAX - 1);
	}
	embkv_buf_destroy(&b);
	/* Over the byte limit: freed, not kept. */
	while (c.pool.n) {
		embkv_buf_init(&b);
		embkv_client_buf_take(&c, &b);
		embkv_buf_destroy(&b);
	}
	assert_int_equal(c.pool.bytes, 0);
	embkv_buf_init(&b);
	assert_int_equal(embkv_buf_reserve(&b, EMBKV_BUFPOOL_BYTES + 1), 0);
	embkv_client_buf_give(&c, &b);
	assert_int_equal(c.pool.n, 0);
	assert_null(b.data);
	/* An empty buffer is not kept either. */
	embkv_buf_init(&b);
	embkv_client_buf_give(&c, &b);
	assert_int_equal(c.pool.n, 0);
	pthread_mutex_destroy(&c.pool.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_of_one),
		cmocka_unit_test(test_window_of_eight_replies_reversed),
		cmocka_unit_test(test_no_window),
		cmocka_unit_test(test_transport_error_fails_the_rest),
		cmocka_unit_test(test_buffer_pool_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
