/*
 * MULTI_PULL and MULTI_PUSH (net/PROTOCOL.md 5.25) against the real
 * embkvd: one frame carrying several tables' sections equals the
 * separate PULL/PUSH frames (rows, found flags, counts), section by
 * section; a dropped table, a wrong dim or a stale epoch in the middle
 * fail their own section only; duplicate tables and empty sections;
 * the server counts one request for the frame; malformed frames get
 * ERROR EMBKV_EPROTO / EMBKV_ELIMIT and the connection stays usable.
 *
 * Runs over TCP, or over rdma:// with the argument rdma://HOST
 * (harness.h): the frames are small enough for the default RECVs.
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
#include "tests/server/harness.h"

#define EPOCH 1u
#define NK 40u

struct fixture {
	struct th_server srv;
	int fd;
};

static int setup(void **state)
{
	static const char *const args[] = { "--threads", "3", "--io-threads",
					    "2", NULL };
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx || th_start(&fx->srv, args))
		return -1;
	fx->fd = th_connect(&fx->srv);
	*state = fx;
	return fx->fd < 0 ? -1 : 0;
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

/* One section of a frame under construction. */
struct sec {
	uint64_t epoch;
	uint8_t *body;
	uint32_t len;
};

static struct sec pull_sec(struct embkv_wire_table_ref t, uint32_t dim,
			   uint32_t n, const uint64_t *keys, uint8_t mode,
			   uint64_t epoch)
{
	struct embkv_wire_pull_req m = { t.table_id, t.uid, dim, n, mode,
					 keys };
	struct sec s = { .epoch = epoch };
	size_t len;

	assert_int_equal(embkv_wire_pull_req_size(&m, &len), 0);
	s.body = malloc(len);
	assert_non_null(s.body);
	assert_int_equal(embkv_wire_pull_req_encode(&m, s.body, len), 0);
	s.len = (uint32_t)len;
	return s;
}

static struct sec push_sec(struct embkv_wire_table_ref t, uint32_t dim,
			   uint32_t n, const uint64_t *keys, const float *g,
			   uint64_t epoch)
{
	struct embkv_wire_rows_req m = { t.table_id, t.uid, dim, n, keys, g };
	struct sec s = { .epoch = epoch };
	size_t len;

	assert_int_equal(embkv_wire_rows_req_size(&m, &len), 0);
	s.body = malloc(len);
	assert_non_null(s.body);
	assert_int_equal(embkv_wire_rows_req_encode(&m, s.body, len), 0);
	s.len = (uint32_t)len;
	return s;
}

/* The frame body of n sections (freed by the caller); frees theirs. */
static uint8_t *frame_of(struct sec *s, uint32_t n, uint32_t *len)
{
	size_t total = EMBKV_WIRE_MULTI_SECTIONS, at;
	uint8_t *b;

	for (uint32_t i = 0; i < n; i++)
		total += embkv_wire_multi_sec_bytes(s[i].len);
	b = malloc(total);
	assert_non_null(b);
	assert_int_equal(embkv_wire_multi_encode_head(n, b, total), 0);
	at = EMBKV_WIRE_MULTI_SECTIONS;
	for (uint32_t i = 0; i < n; i++) {
		struct embkv_wire_multi_sec ws = { s[i].len, 0, s[i].epoch,
						   NULL };
		uint8_t *sb;
		int64_t k = embkv_wire_multi_sec_prepare(&ws, b + at,
							 total - at, &sb);

		assert_true(k > 0);
		memcpy(sb, s[i].body, s[i].len);
		free(s[i].body);
		at += (size_t)k;
	}
	*len = (uint32_t)total;
	return b;
}

static void fill(uint64_t *keys, float *g, uint32_t n, uint32_t dim,
		 uint64_t seed)
{
	for (uint32_t i = 0; i < n; i++)
		keys[i] = seed * 1000003u + i * 7919u;
	keys[n - 1] = keys[0]; /* a duplicate key */
	for (uint32_t i = 0; g && i < n * dim; i++)
		g[i] = (float)((i * 37u + (uint32_t)seed) % 19u) / 10.0f - 0.9f;
}

static uint64_t requests(int fd)
{
	uint64_t v = 0;

	assert_int_equal(th_stat(fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_REQUESTS, &v), 0);
	return v;
}

/*
 * Tables a (dim 4, sgd), b (dim 8, adagrad), c (dropped). MULTI_PULL of
 * [a, c (dropped), b wrong dim, a stale epoch, b infer, a empty, b]
 * equals the PULLs; then MULTI_PUSH of [a, b, c, a] equals PUSHes on
 * twin tables.
 */
static void test_multi_equals_separate(void **state)
{
	struct fixture *fx = *state;
	struct embkv_table_attr at;
	struct embkv_wire_table_ref a, b, c, a2, b2;
	uint64_t ka[NK], kb[NK], kc[4] = { 1, 2, 3, 4 };
	float ga[NK * 4], gb[NK * 8];
	struct sec s[7];
	struct th_frame f;
	struct embkv_wire_multi m;
	struct embkv_wire_multi_sec rs;
	uint8_t *body;
	uint32_t len, i;
	uint64_t r0, r1, r2;
	static const int want[7] = { 0, EMBKV_ENOTABLE, EMBKV_EDIM,
				     EMBKV_ESTALE, 0, 0, 0 };

	th_attr(&at, "ma", 4, 8);
	assert_int_equal(th_create(fx->fd, &at, &a), 0);
	th_attr(&at, "ma2", 4, 8);
	assert_int_equal(th_create(fx->fd, &at, &a2), 0);
	th_attr(&at, "mb", 8, 4);
	at.opt.type = EMBKV_OPT_ADAGRAD;
	at.opt.initial_accum = 0.1f;
	assert_int_equal(th_create(fx->fd, &at, &b), 0);
	th_attr(&at, "mb2", 8, 4);
	at.opt.type = EMBKV_OPT_ADAGRAD;
	at.opt.initial_accum = 0.1f;
	assert_int_equal(th_create(fx->fd, &at, &b2), 0);
	th_attr(&at, "mc", 4, 2);
	assert_int_equal(th_create(fx->fd, &at, &c), 0);
	assert_int_equal(th_drop(fx->fd, "mc"), 0);
	fill(ka, ga, NK, 4, 1);
	fill(kb, gb, NK, 8, 2);

	/* pulls */
	s[0] = pull_sec(a, 4, NK, ka, EMBKV_WIRE_PULL_TRAIN, EPOCH);
	s[1] = pull_sec(c, 4, 4, kc, EMBKV_WIRE_PULL_TRAIN, EPOCH);
	s[2] = pull_sec(b, 4, NK, kb, EMBKV_WIRE_PULL_TRAIN, EPOCH);
	s[3] = pull_sec(a, 4, NK, ka, EMBKV_WIRE_PULL_TRAIN, EPOCH + 7);
	s[4] = pull_sec(b, 8, NK, kb, EMBKV_WIRE_PULL_INFER, EPOCH);
	s[5] = pull_sec(a, 4, 0, ka, EMBKV_WIRE_PULL_TRAIN, EPOCH);
	s[6] = pull_sec(b, 8, NK, kb, EMBKV_WIRE_PULL_TRAIN, EPOCH);
	body = frame_of(s, 7, &len);
	r0 = requests(fx->fd);
	r1 = requests(fx->fd);
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_MULTI_PULL, EPOCH,
				 body, len, &f), 0);
	r2 = requests(fx->fd);
	/* the stats frame counts itself; the multi frame is one request */
	assert_true(r2 - r1 == (r1 - r0) + 1);
	free(body);
	assert_int_equal(f.h.opcode, EMBKV_WIRE_OP_MULTI_PULL |
					     EMBKV_WIRE_OP_REPLY);
	assert_int_equal(embkv_wire_multi_decode(f.h.opcode, f.body,
						 f.h.body_len, &m), 0);
	assert_int_equal(m.count, 7);
	for (i = 0; embkv_wire_multi_next(&m, &rs); i++) {
		struct embkv_wire_pull_reply pr;

		assert_int_equal(rs.status, want[i]);
		if (rs.status) {
			assert_true(rs.len > 0); /* a message */
			printf("  section %u: %s: %.*s\n", i,
			       embkv_strerror(rs.status), (int)rs.len,
			       (const char *)rs.body);
			continue;
		}
		assert_int_equal(embkv_wire_pull_reply_decode(rs.body, rs.len,
							      &pr), 0);
		if (i == 5) {
			assert_int_equal(pr.n, 0);
			continue;
		}
		/* the same pull, alone, gives the same rows and flags (the
		 * train pulls inserted, so found is 1 now) */
		{
			uint32_t dim = i == 0 ? 4 : 8;
			const uint64_t *k = i == 0 ? ka : kb;
			float *out = malloc((size_t)NK * dim * sizeof(float));
			uint8_t fnd[NK];

			assert_int_equal(pr.n, NK);
			assert_int_equal(pr.dim, dim);
			assert_int_equal(th_pull(fx->fd, EPOCH,
						 i == 0 ? a : b, dim, NK, k,
						 EMBKV_WIRE_PULL_INFER, out,
						 fnd), 0);
			assert_memory_equal(out, pr.vals,
					    (size_t)NK * dim * sizeof(float));
			/* infer before b's train pull: none found; a train
			 * pull's flags say what was stored before it */
			for (uint32_t j = 0; i == 4 && j < NK; j++)
				assert_int_equal(pr.found[j], 0);
			for (uint32_t j = 0; j < NK; j++)
				assert_int_equal(fnd[j], 1);
			free(out);
		}
	}
	assert_int_equal(i, 7);
	th_frame_free(&f);

	/* pushes: multi on a and b, separate on the twins a2 and b2 */
	{
		struct embkv_wire_count_reply cr;
		float *x = malloc((size_t)NK * 8 * sizeof(float));
		float *y = malloc((size_t)NK * 8 * sizeof(float));
		uint8_t fnd[NK];

		/* the twins' rows exist as a's and b's do */
		assert_int_equal(th_pull(fx->fd, EPOCH, a2, 4, NK, ka,
					 EMBKV_WIRE_PULL_TRAIN, x, fnd), 0);
		assert_int_equal(th_pull(fx->fd, EPOCH, b2, 8, NK, kb,
					 EMBKV_WIRE_PULL_TRAIN, x, fnd), 0);
		s[0] = push_sec(a, 4, NK - 1, ka, ga, EPOCH);
		s[1] = push_sec(b, 8, NK - 1, kb, gb, EPOCH);
		s[2] = push_sec(c, 4, 4, kc, ga, EPOCH);
		s[3] = push_sec(a, 4, NK - 1, ka, ga + 4, EPOCH);
		body = frame_of(s, 4, &len);
		assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_MULTI_PUSH,
					 EPOCH, body, len, &f), 0);
		free(body);
		assert_int_equal(embkv_wire_multi_decode(f.h.opcode, f.body,
							 f.h.body_len, &m), 0);
		for (i = 0; embkv_wire_multi_next(&m, &rs); i++) {
			if (i == 2) {
				assert_int_equal(rs.status, EMBKV_ENOTABLE);
				continue;
			}
			assert_int_equal(rs.status, 0);
			assert_int_equal(embkv_wire_count_reply_decode(
						 rs.body, rs.len, &cr), 0);
			assert_int_equal(cr.done, NK - 1);
			assert_int_equal(cr.skipped, 0);
		}
		th_frame_free(&f);
		assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_PUSH, a2, 4,
					 NK - 1, ka, ga, &cr), 0);
		assert_int_equal(cr.done, NK - 1);
		assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_PUSH, b2, 8,
					 NK - 1, kb, gb, &cr), 0);
		assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_PUSH, a2, 4,
					 NK - 1, ka, ga + 4, &cr), 0);
		assert_int_equal(th_pull(fx->fd, EPOCH, a, 4, NK, ka,
					 EMBKV_WIRE_PULL_INFER, x, fnd), 0);
		assert_int_equal(th_pull(fx->fd, EPOCH, a2, 4, NK, ka,
					 EMBKV_WIRE_PULL_INFER, y, fnd), 0);
		assert_memory_equal(x, y, (size_t)NK * 4 * sizeof(float));
		assert_int_equal(th_pull(fx->fd, EPOCH, b, 8, NK, kb,
					 EMBKV_WIRE_PULL_INFER, x, fnd), 0);
		assert_int_equal(th_pull(fx->fd, EPOCH, b2, 8, NK, kb,
					 EMBKV_WIRE_PULL_INFER, y, fnd), 0);
		assert_memory_equal(x, y, (size_t)NK * 8 * sizeof(float));
		free(x);
		free(y);
	}
}

/* Malformed frames: ERROR with the codec's status, connection kept. */
static void test_multi_malformed(void **state)
{
	struct fixture *fx = *state;
	struct embkv_table_attr at;
	struct embkv_wire_table_ref a;
	uint64_t keys[4] = { 1, 2, 3, 4 };
	uint8_t fnd[4];
	float out[16];
	struct sec s[1];
	struct th_frame f;
	uint8_t *body;
	uint32_t len;

	th_attr(&at, "bad", 4, 4);
	assert_int_equal(th_create(fx->fd, &at, &a), 0);
	s[0] = pull_sec(a, 4, 4, keys, EMBKV_WIRE_PULL_TRAIN, EPOCH);
	body = frame_of(s, 1, &len);
	/* count 0 */
	body[0] = 0;
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_MULTI_PULL, EPOCH,
				 body, len, &f), EMBKV_EPROTO);
	/* count over the limit */
	body[0] = 0x01;
	body[1] = 0x10;
	body[2] = 0x01; /* 0x11001 */
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_MULTI_PULL, EPOCH,
				 body, len, &f), EMBKV_ELIMIT);
	body[1] = body[2] = 0;
	/* a section length past the body */
	body[8] = 0xff;
	body[9] = 0xff;
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_MULTI_PULL, EPOCH,
				 body, len, &f), EMBKV_EPROTO);
	body[8] = (uint8_t)(len - 24);
	body[9] = 0;
	/* a PULL section in a MULTI_PUSH frame */
	assert_int_not_equal(th_call(fx->fd, EMBKV_WIRE_OP_MULTI_PUSH, EPOCH,
				     body, len, &f), 0);
	/* trailing bytes */
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_MULTI_PULL, EPOCH,
				 body, len - 8, &f), EMBKV_EPROTO);
	/* still the same connection, and the valid frame works */
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_MULTI_PULL, EPOCH,
				 body, len, &f), 0);
	th_frame_free(&f);
	free(body);
	assert_int_equal(th_pull(fx->fd, EPOCH, a, 4, 4, keys,
				 EMBKV_WIRE_PULL_INFER, out, fnd), 0);
	assert_int_equal(fnd[0], 1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_multi_equals_separate,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_multi_malformed, setup,
						teardown),
	};

	if (th_transport_init(argc, argv))
		return 2;
	return cmocka_run_group_tests_name("multi", tests, NULL, NULL);
}
