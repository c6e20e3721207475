/*
 * embkvd table operations against the real binary, checked against an
 * in-process embkv_table fed the same inputs: pull in train and infer
 * mode, push through every optimizer (bit-exact, with keys spread over
 * several owner threads), assign and erase, pipelined requests, a large
 * batch, per-key order of pipelined pushes, HITS (one-sided hits counted
 * into LFU) and TABLE_REGIONS refused over TCP (answered over rdma), as
 * is PULL_LAND.
 *
 * Runs over TCP, or over rdma:// with the argument rdma://HOST (harness.h),
 * where th_pull/th_rows split batches to fit the transport's frames.
 * TCP-only by nature: the large batch (one 6.4 MB frame; over rdma a frame
 * is bounded by the RECV and reply-slot sizes, and libembkv splits) and
 * backpressure (a stream the client overfills; over rdma the credit
 * window stops the client itself before the server sees more).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "server/init.h"
#include "server/store.h"
#include "tests/server/harness.h"

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

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_keys(uint64_t *keys, uint32_t n, uint64_t seed)
{
	for (uint32_t i = 0; i < n; i++)
		keys[i] = splitmix(&seed);
}

static void fill_floats(float *v, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(splitmix(&seed) % 2001) / 1000.0f - 1.0f;
}

static void test_pull_train_infer(void **state)
{
	struct fixture *fx = *state;
	enum { N = 500, DIM = 8 };
	struct embkv_table_attr a;
	uint64_t keys[N], rows = 0;
	float out[N * DIM], again[N * DIM], want[DIM];
	uint8_t found[N];
	struct embkv_wire_table_ref id;

	th_attr(&a, "pulled", DIM, 16);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	fill_keys(keys, N, 1);

	/* Infer on unknown keys: initializer values, found 0, no insert. */
	memset(found, 7, sizeof(found));
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_INFER, out, found), 0);
	for (uint32_t i = 0; i < N; i++) {
		assert_int_equal(found[i], 0);
		embkv_init_row(&a.init, keys[i], DIM, want);
		assert_memory_equal(out + i * DIM, want, sizeof(want));
	}
	assert_int_equal(th_stat(fx->fd, id.table_id, EMBKV_WIRE_STAT_ROWS,
				 &rows), 0);
	assert_int_equal(rows, 0);

	/* Train: inserted with the same values, found 0 the first time. */
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_TRAIN, again, found), 0);
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(found[i], 0);
	assert_memory_equal(out, again, sizeof(out));
	assert_int_equal(th_stat(fx->fd, id.table_id, EMBKV_WIRE_STAT_ROWS,
				 &rows), 0);
	assert_int_equal(rows, N);

	/* Then found, in both modes. */
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_INFER, again, found), 0);
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(found[i], 1);
	assert_memory_equal(out, again, sizeof(out));

	/* An empty batch is fine. */
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, 0, keys,
				 EMBKV_WIRE_PULL_TRAIN, again, found), 0);
}

/* The same pull, push, push (with repeated keys), pull on the server and
 * on an in-process table: bit-identical rows. */
static void push_matches(int fd, enum embkv_optimizer opt)
{
	enum { N = 3000, DIM = 16 };
	struct embkv_table_attr a;
	struct embkv_table *ref;
	struct embkv_wire_count_reply cr;
	char name[32];
	uint64_t *keys = malloc(N * sizeof(*keys));
	float *grads = malloc(N * DIM * sizeof(float));
	float *out = malloc(N * DIM * sizeof(float));
	float *ref_out = malloc(N * DIM * sizeof(float));
	uint8_t *found = malloc(N);
	struct embkv_wire_table_ref id;
	uint32_t applied;

	assert_non_null(keys);
	assert_non_null(grads);
	assert_non_null(out);
	assert_non_null(ref_out);
	assert_non_null(found);
	snprintf(name, sizeof(name), "opt_%s", embkv_optimizer_name(opt));
	th_attr(&a, name, DIM, 64);
	a.opt.type = opt;
	assert_int_equal(th_create(fd, &a, &id), 0);
	assert_int_equal(embkv_table_create(&a, &ref), 0);
	fill_keys(keys, N, 42 + opt);

	assert_int_equal(th_pull(fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_TRAIN, out, found), 0);
	embkv_table_pull(ref, N, keys, ref_out, NULL, EMBKV_PULL_TRAIN, NULL);
	assert_memory_equal(out, ref_out, (size_t)N * DIM * sizeof(float));

	fill_floats(grads, (size_t)N * DIM, 7);
	assert_int_equal(th_rows(fd, EMBKV_WIRE_OP_PUSH, id, DIM, N, keys,
				 grads, &cr), 0);
	applied = embkv_table_push(ref, N, keys, grads);
	assert_int_equal(cr.done, applied);
	assert_int_equal(cr.done, N);
	assert_int_equal(cr.skipped, 0);

	/* Repeated keys in one push apply in order; plus unknown keys,
	 * which are dropped and counted. */
	for (uint32_t i = 0; i < N; i += 3)
		keys[i] = keys[(i * 7) % N];
	keys[N - 1] = 0xdeadbeefull;
	fill_floats(grads, (size_t)N * DIM, 8);
	assert_int_equal(th_rows(fd, EMBKV_WIRE_OP_PUSH, id, DIM, N, keys,
				 grads, &cr), 0);
	applied = embkv_table_push(ref, N, keys, grads);
	assert_int_equal(cr.done, applied);
	assert_int_equal(cr.skipped, N - applied);
	assert_true(cr.skipped >= 1);

	fill_keys(keys, N, 42 + opt);
	assert_int_equal(th_pull(fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_INFER, out, found), 0);
	embkv_table_pull(ref, N, keys, ref_out, NULL, EMBKV_PULL_INFER, NULL);
	assert_memory_equal(out, ref_out, (size_t)N * DIM * sizeof(float));

	embkv_table_destroy(ref);
	free(found);
	free(ref_out);
	free(out);
	free(grads);
	free(keys);
}

static void test_push_matches_local(void **state)
{
	struct fixture *fx = *state;

	push_matches(fx->fd, EMBKV_OPT_SGD);
	push_matches(fx->fd, EMBKV_OPT_ADAGRAD);
	push_matches(fx->fd, EMBKV_OPT_ADAM);
	push_matches(fx->fd, EMBKV_OPT_FTRL);
}

static void test_assign_erase(void **state)
{
	struct fixture *fx = *state;
	enum { N = 400, DIM = 4 };
	struct embkv_wire_count_reply cr;
	struct embkv_table_attr a;
	uint64_t keys[N];
	float vals[N * DIM], out[N * DIM];
	uint8_t found[N];
	struct embkv_wire_table_ref id;

	th_attr(&a, "assigned", DIM, 8);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	fill_keys(keys, N, 3);
	fill_floats(vals, N * DIM, 4);
	assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_ASSIGN, id, DIM, N, keys,
				 vals, &cr), 0);
	assert_int_equal(cr.done, N);
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_INFER, out, found), 0);
	assert_memory_equal(out, vals, sizeof(vals));

	assert_int_equal(th_erase(fx->fd, id, N / 2, keys, &cr), 0);
	assert_int_equal(cr.done, N / 2);
	assert_int_equal(cr.skipped, 0);
	assert_int_equal(th_erase(fx->fd, id, N / 2, keys, &cr), 0);
	assert_int_equal(cr.done, 0);
	assert_int_equal(cr.skipped, N / 2);
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_INFER, out, found), 0);
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(found[i], i >= N / 2);
	assert_memory_equal(out + (N / 2) * DIM, vals + (N / 2) * DIM,
			    sizeof(float) * (N / 2) * DIM);
}

/* HITS runs on the owners: found keys are counted, unknown ones skipped;
 * TABLE_REGIONS is for RDMA connections only. */
static void test_hits_and_regions(void **state)
{
	struct fixture *fx = *state;
	enum { N = 300, UNKNOWN = 50, DIM = 4 };
	struct embkv_wire_count_reply cr;
	struct embkv_table_attr a;
	struct embkv_wire_hits hm;
	struct th_frame f;
	uint64_t keys[N + UNKNOWN];
	uint32_t counts[N + UNKNOWN];
	float vals[N * DIM];
	uint8_t *body, idb[EMBKV_WIRE_TABLE_REF_SIZE];
	size_t len;
	struct embkv_wire_table_ref id;

	th_attr(&a, "hits", DIM, 8);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	fill_keys(keys, N + UNKNOWN, 11);
	fill_floats(vals, N * DIM, 12);
	assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_ASSIGN, id, DIM, N, keys,
				 vals, &cr), 0);
	for (uint32_t i = 0; i < N + UNKNOWN; i++)
		counts[i] = i % 5 + 1;
	hm.table_id = id.table_id;
	hm.uid = id.uid;
	hm.n = N + UNKNOWN;
	hm.keys = keys;
	hm.counts = counts;
	assert_int_equal(embkv_wire_hits_size(&hm, &len), 0);
	body = malloc(len);
	assert_non_null(body);
	assert_int_equal(embkv_wire_hits_encode(&hm, body, len), 0);
	/* any epoch: HITS is not epoch-checked */
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_HITS, 99, body,
				 (uint32_t)len, &f), 0);
	assert_int_equal(f.h.opcode, EMBKV_WIRE_OP_HITS | EMBKV_WIRE_OP_REPLY);
	assert_int_equal(embkv_wire_count_reply_decode(f.body, f.h.body_len,
						       &cr), 0);
	assert_int_equal(cr.done, N);
	assert_int_equal(cr.skipped, UNKNOWN);
	th_frame_free(&f);
	/* no table, and another uid for the id */
	hm.table_id = id.table_id + 100;
	assert_int_equal(embkv_wire_hits_encode(&hm, body, len), 0);
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_HITS, 1, body,
				 (uint32_t)len, &f), EMBKV_ENOTABLE);
	hm.table_id = id.table_id;
	hm.uid = id.uid ^ 1;
	assert_int_equal(embkv_wire_hits_encode(&hm, body, len), 0);
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_HITS, 1, body,
				 (uint32_t)len, &f), EMBKV_ENOTABLE);
	free(body);

	assert_int_equal(embkv_wire_table_ref_encode(&id, idb, sizeof(idb)), 0);
	if (th_rdma()) {
		struct embkv_wire_table_regions rg;

		assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_TABLE_REGIONS, 1,
					 idb, sizeof(idb), &f), 0);
		assert_int_equal(embkv_wire_table_regions_decode(f.body,
						f.h.body_len, &rg), 0);
		assert_int_equal(rg.table_id, id.table_id);
		assert_true(rg.uid == id.uid);
		assert_int_equal(rg.count, 8); /* alone: every partition */
		th_frame_free(&f);
	} else {
		assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_TABLE_REGIONS, 1,
					 idb, sizeof(idb), &f), -EOPNOTSUPP);
		/* PULL_LAND's records are RDMA-written: not over TCP */
		{
			struct embkv_wire_land_req lr = {
				.addr = 4096, .rkey = 1, .stride = 4096,
				.pull = { id.table_id, id.uid, DIM, 1,
					  EMBKV_WIRE_PULL_TRAIN, NULL },
			};
			uint64_t *lk;
			uint8_t lb[48];

			assert_int_equal(embkv_wire_land_req_prepare(&lr, lb,
								     sizeof(lb),
								     &lk), 0);
			lk[0] = keys[0];
			assert_int_equal(th_call(fx->fd,
						 EMBKV_WIRE_OP_PULL_LAND, 1,
						 lb, sizeof(lb), &f),
					 -EOPNOTSUPP);
		}
	}
	/* the connection is still usable */
	assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_ASSIGN, id, DIM, 1, keys,
				 vals, &cr), 0);
	assert_int_equal(cr.done, 1);
}

static void test_pipelined(void **state)
{
	struct fixture *fx = *state;
	enum { REQS = 64, N = 100, DIM = 8 };
	struct embkv_wire_pull_req m = { .dim = DIM, .n = N,
					 .mode = EMBKV_WIRE_PULL_TRAIN };
	struct embkv_table_attr a;
	uint64_t keys[N];
	uint8_t body[EMBKV_WIRE_PULL_REQ_KEYS + N * 8];
	float want[N * DIM];
	bool seen[REQS] = { false };
	struct embkv_wire_table_ref id;

	th_attr(&a, "piped", DIM, 16);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	m.table_id = id.table_id;
	m.uid = id.uid;
	m.keys = keys;
	for (uint32_t r = 0; r < REQS; r++) {
		fill_keys(keys, N, 1000 + r);
		assert_int_equal(embkv_wire_pull_req_encode(&m, body,
							    sizeof(body)), 0);
		assert_int_equal(th_send(fx->fd, EMBKV_WIRE_OP_PULL, 5000 + r, 1,
					 body, sizeof(body)), 0);
	}
	for (uint32_t k = 0; k < REQS; k++) {
		struct embkv_wire_pull_reply rep;
		struct th_frame f;
		uint32_t r;

		assert_int_equal(th_recv(fx->fd, &f), 0);
		assert_int_equal(f.h.opcode,
				 EMBKV_WIRE_OP_PULL | EMBKV_WIRE_OP_REPLY);
		r = (uint32_t)(f.h.request_id - 5000);
		assert_true(r < REQS && !seen[r]);
		seen[r] = true;
		assert_int_equal(embkv_wire_pull_reply_decode(f.body,
							      f.h.body_len,
							      &rep), 0);
		fill_keys(keys, N, 1000 + r);
		for (uint32_t i = 0; i < N; i++)
			embkv_init_row(&a.init, keys[i], DIM, want + i * DIM);
		assert_memory_equal(rep.vals, want, sizeof(want));
		th_frame_free(&f);
	}
}

static void test_large_batch(void **state)
{
	struct fixture *fx = *state;
	enum { N = 200000, DIM = 8 };
	struct embkv_table_attr a;
	struct embkv_table *ref;
	uint64_t *keys = malloc(N * sizeof(*keys));
	float *out = malloc((size_t)N * DIM * sizeof(float));
	float *ref_out = malloc((size_t)N * DIM * sizeof(float));
	struct embkv_wire_table_ref id;

	assert_non_null(keys);
	assert_non_null(out);
	assert_non_null(ref_out);
	th_attr(&a, "large", DIM, 64);
	a.capacity = 1u << 20;
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	assert_int_equal(embkv_table_create(&a, &ref), 0);
	fill_keys(keys, N, 99);
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_TRAIN, out, NULL), 0);
	embkv_table_pull(ref, N, keys, ref_out, NULL, EMBKV_PULL_TRAIN, NULL);
	assert_memory_equal(out, ref_out, (size_t)N * DIM * sizeof(float));
	embkv_table_destroy(ref);
	free(ref_out);
	free(out);
	free(keys);
}

/* Pipelined Adam pushes of the same keys: the result depends on their
 * order, so matching the in-process reference proves it was kept. */
static void test_per_key_order(void **state)
{
	struct fixture *fx = *state;
	enum { PUSHES = 200, N = 12, DIM = 4 };
	struct embkv_wire_rows_req m = { .dim = DIM, .n = N };
	struct embkv_table_attr a;
	struct embkv_table *ref;
	uint64_t keys[N];
	float grads[N * DIM], out[N * DIM], ref_out[N * DIM];
	uint8_t body[EMBKV_WIRE_ROWS_REQ_KEYS + N * 8 + N * DIM * 4];
	struct embkv_wire_table_ref id;

	th_attr(&a, "ordered", DIM, 64);
	a.opt.type = EMBKV_OPT_ADAM;
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	assert_int_equal(embkv_table_create(&a, &ref), 0);
	fill_keys(keys, N, 5);
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_TRAIN, out, NULL), 0);
	embkv_table_pull(ref, N, keys, ref_out, NULL, EMBKV_PULL_TRAIN, NULL);
	m.table_id = id.table_id;
	m.uid = id.uid;
	m.keys = keys;
	m.vals = grads;
	for (uint32_t r = 0; r < PUSHES; r++) {
		fill_floats(grads, N * DIM, 100 + r);
		assert_int_equal(embkv_wire_rows_req_encode(&m, body,
							    sizeof(body)), 0);
		assert_int_equal(th_send(fx->fd, EMBKV_WIRE_OP_PUSH, r + 1, 1,
					 body, sizeof(body)), 0);
		embkv_table_push(ref, N, keys, grads);
	}
	for (uint32_t r = 0; r < PUSHES; r++) {
		struct th_frame f;

		assert_int_equal(th_recv(fx->fd, &f), 0);
		assert_int_equal(f.h.opcode,
				 EMBKV_WIRE_OP_PUSH | EMBKV_WIRE_OP_REPLY);
		th_frame_free(&f);
	}
	assert_int_equal(th_pull(fx->fd, 1, id, DIM, N, keys,
				 EMBKV_WIRE_PULL_INFER, out, NULL), 0);
	embkv_table_pull(ref, N, keys, ref_out, NULL, EMBKV_PULL_INFER, NULL);
	assert_memory_equal(out, ref_out, sizeof(out));
	embkv_table_destroy(ref);
}

struct worker {
	const struct th_server *srv;
	struct embkv_wire_table_ref table;
	uint32_t idx;
	int rc;
};

enum { WORKERS = 4, W_ROUNDS = 40, W_KEYS = 256, W_DIM = 8 };

static void worker_keys(uint32_t idx, uint64_t *keys)
{
	for (uint32_t i = 0; i < W_KEYS; i++)
		keys[i] = (uint64_t)idx << 32 | i; /* disjoint per worker */
}

/* One client: pull its keys, then push a gradient per round. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t keys[W_KEYS];
	float out[W_KEYS * W_DIM], grads[W_KEYS * W_DIM];
	int fd = th_connect(w->srv);

	w->rc = fd < 0 ? fd : 0;
	worker_keys(w->idx, keys);
	if (!w->rc)
		w->rc = th_pull(fd, 1, w->table, W_DIM, W_KEYS, keys,
				EMBKV_WIRE_PULL_TRAIN, out, NULL);
	for (uint32_t r = 0; r < W_ROUNDS && !w->rc; r++) {
		fill_floats(grads, W_KEYS * W_DIM, w->idx * 1000 + r);
		w->rc = th_rows(fd, EMBKV_WIRE_OP_PUSH, w->table, W_DIM,
				W_KEYS, keys, grads, NULL);
	}
	if (fd >= 0)
		th_close(fd);
	return NULL;
}

/* Concurrent clients on disjoint keys end where one in-process table
 * fed the same gradients ends. */
static void test_concurrent_clients(void **state)
{
	struct fixture *fx = *state;
	struct worker w[WORKERS];
	pthread_t th[WORKERS];
	struct embkv_table_attr a;
	struct embkv_table *ref;
	uint64_t keys[W_KEYS];
	float out[W_KEYS * W_DIM], ref_out[W_KEYS * W_DIM];
	float grads[W_KEYS * W_DIM];
	struct embkv_wire_table_ref id;

	th_attr(&a, "shared", W_DIM, 32);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	assert_int_equal(embkv_table_create(&a, &ref), 0);
	for (uint32_t i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){ .srv = &fx->srv, .table = id,
					.idx = i + 1 };
		assert_int_equal(pthread_create(&th[i], NULL, worker_main,
						&w[i]), 0);
	}
	for (uint32_t i = 0; i < WORKERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].rc, 0);
	}
	for (uint32_t i = 1; i <= WORKERS; i++) {
		worker_keys(i, keys);
		embkv_table_pull(ref, W_KEYS, keys, ref_out, NULL,
				 EMBKV_PULL_TRAIN, NULL);
		for (uint32_t r = 0; r < W_ROUNDS; r++) {
			fill_floats(grads, W_KEYS * W_DIM, i * 1000 + r);
			embkv_table_push(ref, W_KEYS, keys, grads);
		}
		embkv_table_pull(ref, W_KEYS, keys, ref_out, NULL,
				 EMBKV_PULL_INFER, NULL);
		assert_int_equal(th_pull(fx->fd, 1, id, W_DIM, W_KEYS, keys,
					 EMBKV_WIRE_PULL_INFER, out, NULL), 0);
		assert_memory_equal(out, ref_out, sizeof(out));
	}
	embkv_table_destroy(ref);
	assert_int_equal(th_wait_conns(fx->fd, 1, TH_TIMEOUT_MS), 0);
}

enum { BP_REQS = 400, BP_N = 20000, BP_DIM = 16 };

struct bp_writer {
	int fd;
	struct embkv_wire_table_ref table;
	int rc;
};

static void *bp_write_main(void *arg)
{
	struct bp_writer *w = arg;
	uint64_t *keys = malloc(BP_N * sizeof(*keys));
	struct embkv_wire_pull_req m = {
		.table_id = w->table.table_id, .uid = w->table.uid,
		.dim = BP_DIM, .n = BP_N, .keys = keys,
	};
	size_t len = 0;
	uint8_t *body;

	embkv_wire_pull_req_size(&m, &len);
	body = malloc(len);
	w->rc = keys && body ? 0 : -ENOMEM;
	for (uint32_t i = 0; i < BP_N && keys; i++)
		keys[i] = i;
	if (!w->rc)
		w->rc = embkv_wire_pull_req_encode(&m, body, len);
	for (uint32_t r = 0; r < BP_REQS && !w->rc; r++)
		w->rc = th_send(w->fd, EMBKV_WIRE_OP_PULL, r + 1, 1, body,
				(uint32_t)len);
	free(body);
	free(keys);
	return NULL;
}

/* A client that sends a lot and does not read its replies: the server
 * stops reading it (its handled count stalls far below what was sent),
 * then serves everything once the client reads again. */
static void test_backpressure(void **state)
{
	struct fixture *fx = *state;
	struct bp_writer w = { 0 };
	struct embkv_table_attr a;
	pthread_t th;
	uint64_t pulls = 0;
	int probe = th_connect(&fx->srv);

	th_attr(&a, "pressed", BP_DIM, 16);
	assert_int_equal(th_create(fx->fd, &a, &w.table), 0);
	w.fd = fx->fd;
	assert_int_equal(pthread_create(&th, NULL, bp_write_main, &w), 0);
	usleep(1500 * 1000);
	assert_int_equal(th_stat(probe, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_PULLS, &pulls), 0);
	assert_true(pulls < BP_REQS / 2);
	for (uint32_t r = 0; r < BP_REQS; r++) {
		struct th_frame f;

		assert_int_equal(th_recv(fx->fd, &f), 0);
		assert_int_equal(f.h.opcode,
				 EMBKV_WIRE_OP_PULL | EMBKV_WIRE_OP_REPLY);
		assert_int_equal(f.h.request_id, r + 1);
		th_frame_free(&f);
	}
	pthread_join(th, NULL);
	assert_int_equal(w.rc, 0);
	assert_int_equal(th_stat(probe, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_PULLS, &pulls), 0);
	assert_int_equal(pulls, BP_REQS);
	th_close(probe);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pull_train_infer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_push_matches_local, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_assign_erase, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hits_and_regions, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pipelined, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_per_key_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_clients, setup,
						teardown),
	};
	const struct CMUnitTest tcp_only[] = {
		cmocka_unit_test_setup_teardown(test_large_batch, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup,
						teardown),
	};
	int failed;

	if (th_transport_init(argc, argv))
		return 2;
	failed = cmocka_run_group_tests_name("ops", tests, NULL, NULL);
	if (!th_rdma())
		failed += cmocka_run_group_tests_name("ops, tcp only", tcp_only,
						      NULL, NULL);
	return failed;
}
