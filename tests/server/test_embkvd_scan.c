/*
 * SCAN (0x25) on raw frames against the real embkvd: pages walk a
 * partition's live rows (keys and values, nothing else) up to
 * EMBKV_SCAN_END; a page is capped at 4 MiB of body whatever max asks;
 * refused, each with ERROR and a message, and nothing read: a partition
 * the table does not have and a cursor past the partition's capacity
 * (-EINVAL), a stale uid (EMBKV_ENOTABLE), a stale epoch (EMBKV_ESTALE),
 * a malformed body (EMBKV_EPROTO), and (TCP only: static peers) a
 * partition another server serves (EMBKV_ESTALE).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/client/spawn.h"
#include "tests/server/harness.h"

#define EPOCH 1u
#define SLOT_BODY ((4u << 20) - EMBKV_WIRE_HDR_SIZE)

struct fixture {
	struct th_server srv;
	int fd;
};

static int start(void **state, const char *const *args, uint16_t port)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	*state = fx;
	if (!fx || th_start_on(&fx->srv, port, 0, args))
		return -1;
	fx->fd = th_connect(&fx->srv);
	return fx->fd < 0 ? -1 : 0;
}

static int setup(void **state)
{
	static const char *const args[] = { "--threads", "2", NULL };

	return start(state, args, 0);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	if (!fx)
		return 0;
	if (fx->fd >= 0)
		th_close(fx->fd);
	assert_int_equal(th_stop(&fx->srv), 0);
	free(fx);
	return 0;
}

static struct embkv_wire_table_ref table(int fd, const char *name,
					 uint32_t dim, uint32_t parts)
{
	struct embkv_table_attr a;
	struct embkv_wire_table_ref ref;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = dim;
	a.partitions = parts;
	a.capacity = 1u << 16;
	assert_int_equal(th_create(fd, &a, &ref), 0);
	return ref;
}

/* Assigns keys 1..n with row i = key + j. */
static void fill(int fd, struct embkv_wire_table_ref ref, uint32_t dim,
		 uint32_t n)
{
	uint64_t *keys = malloc(n * sizeof(*keys));
	float *vals = malloc((size_t)n * dim * sizeof(float));
	struct embkv_wire_count_reply cr;

	assert_non_null(keys);
	assert_non_null(vals);
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = i + 1;
		for (uint32_t j = 0; j < dim; j++)
			vals[(size_t)i * dim + j] = (float)(i + 1 + j);
	}
	assert_int_equal(th_rows(fd, EMBKV_WIRE_OP_ASSIGN, ref, dim, n, keys,
				 vals, &cr), 0);
	assert_int_equal(cr.done, n);
	free(vals);
	free(keys);
}

static int scan(int fd, uint64_t epoch, const struct embkv_wire_scan_req *q,
		struct th_frame *f, struct embkv_wire_scan_reply *rep)
{
	uint8_t body[EMBKV_WIRE_SCAN_REQ_SIZE];
	int rc;

	assert_int_equal(embkv_wire_scan_req_encode(q, body, sizeof(body)), 0);
	rc = th_call(fd, EMBKV_WIRE_OP_SCAN, epoch, body, sizeof(body), f);
	if (rc)
		return rc;
	assert_int_equal(embkv_wire_scan_reply_decode(f->body, f->h.body_len,
						      rep), 0);
	return 0;
}

static void test_pages(void **state)
{
	struct fixture *fx = *state;
	struct embkv_wire_table_ref ref = table(fx->fd, "t", 4, 4);
	uint32_t seen[301] = { 0 }, total = 0;

	fill(fx->fd, ref, 4, 300);
	for (uint32_t p = 0; p < 4; p++) {
		struct embkv_wire_scan_req q = {
			.table_id = ref.table_id, .uid = ref.uid, .part = p,
			.cursor = 0, .max = 5,
		};

		while (q.cursor != EMBKV_SCAN_END) {
			struct embkv_wire_scan_reply rep;
			struct th_frame f;
			const float *v;

			assert_int_equal(scan(fx->fd, EPOCH, &q, &f, &rep), 0);
			assert_true(rep.n <= 5);
			assert_int_equal(rep.dim, 4);
			assert_int_equal(rep.dtype, EMBKV_DTYPE_F32);
			v = rep.vals;
			for (uint32_t r = 0; r < rep.n; r++) {
				assert_true(rep.keys[r] >= 1 &&
					    rep.keys[r] <= 300);
				seen[rep.keys[r]]++;
				total++;
				for (uint32_t j = 0; j < 4; j++)
					assert_true(v[r * 4 + j] ==
						    (float)(rep.keys[r] + j));
			}
			assert_true(rep.next == EMBKV_SCAN_END ||
				    rep.next > q.cursor);
			q.cursor = rep.next;
			th_frame_free(&f);
		}
	}
	assert_int_equal(total, 300);
	for (uint32_t k = 1; k <= 300; k++)
		assert_int_equal(seen[k], 1);
}

static void test_page_capped(void **state)
{
	struct fixture *fx = *state;
	struct embkv_wire_table_ref ref = table(fx->fd, "wide", 1024, 1);
	struct embkv_wire_scan_req q = {
		.table_id = ref.table_id, .uid = ref.uid, .part = 0,
		.cursor = 0, .max = EMBKV_WIRE_MAX_KEYS,
	};
	struct embkv_wire_scan_reply rep;
	struct th_frame f;
	uint32_t total = 0;

	if (th_rdma())
		skip(); /* a raw page must fit the harness's reply slots */
	fill(fx->fd, ref, 1024, 2000); /* 8 MiB of values */
	while (q.cursor != EMBKV_SCAN_END) {
		assert_int_equal(scan(fx->fd, EPOCH, &q, &f, &rep), 0);
		assert_true(f.h.body_len <= SLOT_BODY);
		assert_true(rep.n > 0);
		total += rep.n;
		q.cursor = rep.next;
		th_frame_free(&f);
	}
	assert_int_equal(total, 2000);
}

static void test_refused(void **state)
{
	struct fixture *fx = *state;
	struct embkv_wire_table_ref ref = table(fx->fd, "t", 4, 4);
	struct embkv_wire_scan_req q = {
		.table_id = ref.table_id, .uid = ref.uid, .part = 4,
		.cursor = 0, .max = 5,
	};
	struct embkv_wire_scan_reply rep;
	uint8_t body[EMBKV_WIRE_SCAN_REQ_SIZE];
	struct th_frame f;

	fill(fx->fd, ref, 4, 50);
	assert_int_equal(scan(fx->fd, EPOCH, &q, &f, &rep), -EINVAL);
	q.part = 0;
	q.cursor = (1u << 16) + 1; /* past the partition's capacity */
	assert_int_equal(scan(fx->fd, EPOCH, &q, &f, &rep), -EINVAL);
	q.cursor = 0;
	q.uid = ref.uid + 1;
	assert_int_equal(scan(fx->fd, EPOCH, &q, &f, &rep), EMBKV_ENOTABLE);
	q.uid = ref.uid;
	assert_int_equal(scan(fx->fd, EPOCH + 7, &q, &f, &rep), EMBKV_ESTALE);
	/* malformed: reserved bytes, max 0, a short body */
	assert_int_equal(embkv_wire_scan_req_encode(&q, body, sizeof(body)), 0);
	body[EMBKV_WIRE_SCAN_REQ_RESERVED] = 1;
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_SCAN, EPOCH, body,
				 sizeof(body), &f), EMBKV_EPROTO);
	memset(body + EMBKV_WIRE_SCAN_REQ_MAX, 0, 8);
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_SCAN, EPOCH, body,
				 sizeof(body), &f), EMBKV_EPROTO);
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_SCAN, EPOCH, body, 24,
				 &f), EMBKV_EPROTO);
	/* the connection still works */
	assert_int_equal(scan(fx->fd, EPOCH, &q, &f, &rep), 0);
	th_frame_free(&f);
}

/* A server of two (static peers) refuses a partition of the other. */
static void test_not_served(void **state)
{
	char peers[2 * EMBKV_TEST_ADDR_MAX];
	const char *args[] = { "--threads", "1", "--peers", peers, "--self",
			       "0", NULL };
	uint16_t port = embkv_test_free_port(), other = embkv_test_free_port();
	struct embkv_wire_table_ref ref;
	struct embkv_wire_scan_req q = { .cursor = 0, .max = 5 };
	struct embkv_wire_scan_reply rep;
	struct th_frame f;
	struct fixture *fx;

	snprintf(peers, sizeof(peers), "tcp://127.0.0.1:%u,tcp://127.0.0.1:%u",
		 port, other);
	assert_int_equal(start(state, args, port), 0);
	fx = *state;
	ref = table(fx->fd, "t", 4, 4);
	q.table_id = ref.table_id;
	q.uid = ref.uid;
	q.part = 0;
	assert_int_equal(scan(fx->fd, EPOCH, &q, &f, &rep), 0);
	th_frame_free(&f);
	q.part = 1; /* partition 1 lives on server 1 */
	assert_int_equal(scan(fx->fd, EPOCH, &q, &f, &rep), EMBKV_ESTALE);
}

static int no_setup(void **state)
{
	*state = NULL;
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_capped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	};
	const struct CMUnitTest tcp_only[] = {
		cmocka_unit_test_setup_teardown(test_not_served, no_setup,
						teardown),
	};
	int failed;

	if (th_transport_init(argc, argv))
		return 2;
	failed = cmocka_run_group_tests_name("scan", tests, NULL, NULL);
	if (!th_rdma())
		failed += cmocka_run_group_tests_name("scan, tcp only",
						      tcp_only, NULL, NULL);
	return failed;
}
