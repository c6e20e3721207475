/*
 * The table catalog and shard maps in etcd, end to end: real embkvd
 * processes with --etcd against a private etcd (etcd_harness.h), driven
 * through libembkv given one server address.
 *
 * - A create through one member makes the table on every live member,
 *   its partitions spread over them (each holds and charges only its
 *   share), with one uid; a second create is EMBKV_ETABLEEXISTS; rows
 *   pulled and pushed through any member are the same rows.
 * - A member killed with -9 and restarted (same id, same address) knows
 *   the table again from etcd, but its partitions answer EMBKV_EUNAVAIL,
 *   never freshly initialised rows; the other members' rows are intact,
 *   and handles keep working for them.
 * - A create that one member cannot hold (its memory limit) fails whole:
 *   nothing is left in etcd or on any member.
 * - With etcd stopped, pulls and pushes go on and a create fails with a
 *   clear error; with etcd back, creating works again.
 * - A drop removes the table from every member.
 * - A table whose map has one member: a request sent by hand to another
 *   member (which knows the table but holds none of it) is refused with
 *   EMBKV_ESTALE, never served from partitions it does not hold.
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
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "net/etcd.h"
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"
#include "tests/server/harness.h"

#define NMEM 3u
#define DIM 8u
#define NKEYS 2048u
#define READY_MS 10000u
#define STOP_MS 5000u
#define WAIT_MS 8000u
#define CLUSTER "cat"

static struct embkv_test_etcd etcd;
static const char *threads = "2"; /* owner threads of members started */
static struct embkv_test_proc mem[NMEM + 1];
static char addr[NMEM + 1][EMBKV_TEST_ADDR_MAX];

/* Starts member id on listen (tcp://127.0.0.1:PORT), with an optional
 * memory limit. */
static int start(uint32_t id, const char *listen, const char *limit)
{
	char ids[16];
	const char *argv[] = {
		EMBKVD_PATH, "--listen", listen, "--threads", threads,
		"--etcd", etcd.url, "--cluster", CLUSTER, "--member-ttl", "2",
		"--member-id", ids, limit ? "--memory-limit" : NULL, limit,
		NULL,
	};
	int rc;

	snprintf(ids, sizeof(ids), "%u", id);
	rc = embkv_test_proc_start(argv, 1, READY_MS, &mem[id]);
	if (!rc)
		snprintf(addr[id], sizeof(addr[id]), "%s", mem[id].addrs[0]);
	return rc;
}

static int group_setup(void **state)
{
	(void)state;
	if (embkv_test_etcd_start(&etcd))
		return -1;
	for (uint32_t i = 0; i < NMEM; i++)
		if (start(i, "tcp://127.0.0.1:0", NULL))
			return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (uint32_t i = 0; i <= NMEM; i++)
		if (mem[i].pid)
			embkv_test_proc_stop(&mem[i], STOP_MS);
	embkv_test_etcd_stop(&etcd);
	return 0;
}

/* A client given member i's address alone. */
static struct embkv_client *client_of(uint32_t i)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;
	const char *one[1] = { addr[i] };

	embkv_client_attr_init(&ca);
	ca.servers = one;
	ca.nservers = 1;
	ca.request_timeout_ms = 15000;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

static void table_attr(struct embkv_table_attr *a, const char *name,
		       uint64_t capacity)
{
	embkv_table_attr_init(a);
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->dim = DIM;
	a->capacity = capacity;
	a->partitions = 16;
	a->opt.type = EMBKV_OPT_SGD;
	a->opt.lr = 0.5f;
}

struct per {
	uint64_t partitions[NMEM + 1];
	bool seen[NMEM + 1];
	const char *table;
};

static void on_stat(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct per *p = ctx;

	if (!table || strcmp(table, p->table) || server > NMEM)
		return;
	p->seen[server] = true;
	if (!strcmp(name, "partitions"))
		p->partitions[server] = value;
}

static void keys_fill(uint64_t *keys)
{
	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = 0x9e3779b97f4a7c15ull * (i + 1);
}

/* The table exists on member i (opened through i alone). */
static int open_on(uint32_t i, const char *name)
{
	struct embkv_client *c = client_of(i);
	struct embkv_table_handle *t = NULL;
	int rc = embkv_table_open(c, name, &t);

	embkv_table_close(t);
	embkv_client_destroy(c);
	return rc;
}

static void test_create_spreads(void **state)
{
	struct embkv_client *c = client_of(0), *c2;
	struct embkv_table_handle *t, *t2;
	struct embkv_table_attr a;
	uint64_t keys[NKEYS];
	float *rows = calloc((size_t)NKEYS * DIM, sizeof(float));
	float *again = calloc((size_t)NKEYS * DIM, sizeof(float));
	float *grads = calloc((size_t)NKEYS * DIM, sizeof(float));
	struct per p = { .table = "spread" };
	uint64_t held = 0;

	(void)state;
	table_attr(&a, "spread", 100000);
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	assert_int_equal(embkv_table_create_remote(c, &a), EMBKV_ETABLEEXISTS);
	for (uint32_t i = 0; i < NMEM; i++)
		assert_int_equal(open_on(i, "spread"), 0);
	assert_int_equal(embkv_table_open(c, "spread", &t), 0);
	/* The client learned every member from the table's map. */
	assert_int_equal(embkv_client_server_count(c), NMEM);
	assert_int_equal(embkv_stats(c, on_stat, &p), 0);
	for (uint32_t i = 0; i < NMEM; i++) {
		assert_true(p.seen[i]);
		assert_true(p.partitions[i] >= 16 / NMEM);
		held += p.partitions[i];
	}
	assert_int_equal(held, 16);

	/* Rows pushed through one member's client are the rows another
	 * member's client pulls. */
	keys_fill(keys);
	for (size_t k = 0; k < (size_t)NKEYS * DIM; k++)
		grads[k] = 0.25f;
	assert_int_equal(embkv_pull(t, NKEYS, keys, rows, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
	assert_int_equal(embkv_push(t, NKEYS, keys, grads, NULL), 0);
	c2 = client_of(2);
	assert_int_equal(embkv_table_open(c2, "spread", &t2), 0);
	assert_int_equal(embkv_pull(t2, NKEYS, keys, again, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	for (size_t k = 0; k < (size_t)NKEYS * DIM; k++)
		assert_true(again[k] == rows[k] - 0.5f * 0.25f);
	embkv_table_close(t2);
	embkv_client_destroy(c2);
	embkv_table_close(t);
	embkv_client_destroy(c);
	free(rows);
	free(again);
	free(grads);
}

/* A bf16 table with row-wise Adagrad and round-to-nearest write-backs:
 * every member's catalog (filled from the etcd record) has its dtype,
 * flags and optimizer, and rows assigned through one member read back,
 * rounded once, through another. */
static void test_bf16_table(void **state)
{
	struct embkv_client *c = client_of(0), *c2;
	struct embkv_table_handle *t;
	struct embkv_table_attr a;
	uint64_t keys[NKEYS];
	float *vals = calloc((size_t)NKEYS * DIM, sizeof(float));
	float *got = calloc((size_t)NKEYS * DIM, sizeof(float));
	float *want = calloc((size_t)NKEYS * DIM, sizeof(float));
	uint16_t *stored = calloc((size_t)NKEYS * DIM, sizeof(uint16_t));

	(void)state;
	assert_true(vals && got && want && stored);
	table_attr(&a, "half", 100000);
	a.dtype = EMBKV_DTYPE_BF16;
	a.opt.type = EMBKV_OPT_ROWWISE_ADAGRAD;
	a.flags = EMBKV_TABLE_ROUND_NEAREST;
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	for (uint32_t i = 0; i < NMEM; i++) {
		struct embkv_client *ci = client_of(i);

		assert_int_equal(embkv_table_open(ci, "half", &t), 0);
		assert_int_equal(embkv_table_attr_get(t)->dtype,
				 EMBKV_DTYPE_BF16);
		assert_int_equal(embkv_table_attr_get(t)->flags,
				 EMBKV_TABLE_ROUND_NEAREST);
		assert_int_equal(embkv_table_attr_get(t)->opt.type,
				 EMBKV_OPT_ROWWISE_ADAGRAD);
		embkv_table_close(t);
		embkv_client_destroy(ci);
	}
	keys_fill(keys);
	for (size_t k = 0; k < (size_t)NKEYS * DIM; k++)
		vals[k] = 0.001f * (float)(k % 997) - 0.3f;
	embkv_dtype_from_f32(EMBKV_DTYPE_BF16, vals, stored,
			     (size_t)NKEYS * DIM);
	embkv_dtype_to_f32(EMBKV_DTYPE_BF16, stored, want, (size_t)NKEYS * DIM);
	assert_int_equal(embkv_table_open(c, "half", &t), 0);
	assert_int_equal(embkv_assign(t, NKEYS, keys, vals), 0);
	embkv_table_close(t);
	c2 = client_of(2);
	assert_int_equal(embkv_table_open(c2, "half", &t), 0);
	assert_int_equal(embkv_pull(t, NKEYS, keys, got, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	assert_memory_equal(got, want, (size_t)NKEYS * DIM * sizeof(float));
	embkv_table_close(t);
	embkv_client_destroy(c2);
	/* the later tests count on the tables the earlier ones left */
	assert_int_equal(embkv_table_drop_remote(c, "half"), 0);
	embkv_client_destroy(c);
	free(vals);
	free(got);
	free(want);
	free(stored);
}

/* Retries while the client reports the connection a restart broke. */
static int pull_settled(struct embkv_table_handle *t, uint32_t n,
			const uint64_t *keys, float *out)
{
	int rc;

	for (int i = 0; i < 5; i++) {
		rc = embkv_pull(t, n, keys, out, NULL, EMBKV_MODE_INFER, NULL);
		if (rc != EMBKV_EDISCONNECTED)
			break;
	}
	return rc;
}

static void test_restart_is_unloaded(void **state)
{
	struct embkv_client *c = client_of(0);
	struct embkv_table_handle *t;
	uint64_t keys[NKEYS], mine[NKEYS], other[NKEYS];
	uint16_t part_server[16];
	float *before = calloc((size_t)NKEYS * DIM, sizeof(float));
	float *after = calloc((size_t)NKEYS * DIM, sizeof(float));
	char listen[EMBKV_TEST_ADDR_MAX];
	uint32_t nmine = 0, nother = 0, victim = UINT32_MAX;
	uint64_t deadline;
	int rc;

	(void)state;
	assert_int_equal(embkv_table_open(c, "spread", &t), 0);
	assert_int_equal(embkv_table_map(t, NULL, part_server, 16), 0);
	for (uint32_t i = 0; i < embkv_client_server_count(c); i++)
		if (!strcmp(embkv_client_server_addr(c, i), addr[1]))
			victim = i;
	assert_true(victim != UINT32_MAX);
	keys_fill(keys);
	assert_int_equal(embkv_pull(t, NKEYS, keys, before, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	/* Split the keys: those of member 1's partitions, and the rest
	 * (the partition of a key: the first client's own computation is
	 * not public, so ask the table's map through a one-key pull). */
	embkv_test_proc_kill(&mem[1]);
	for (uint32_t i = 0; i < NKEYS; i++) {
		rc = pull_settled(t, 1, &keys[i], after);
		if (rc)
			mine[nmine++] = keys[i];
		else
			other[nother++] = keys[i];
	}
	assert_true(nmine > 0 && nother > 0);
	/* Same id, same address: it learns the table from etcd. */
	snprintf(listen, sizeof(listen), "%s", addr[1]);
	deadline = embkv_test_now_ms() + WAIT_MS;
	while ((rc = start(1, listen, NULL)) && embkv_test_now_ms() < deadline)
		usleep(200 * 1000);
	assert_int_equal(rc, 0);
	assert_int_equal(open_on(1, "spread"), 0);
	/* Its partitions are not loaded: refused, never re-initialised. */
	rc = pull_settled(t, nmine, mine, after);
	assert_int_equal(rc, EMBKV_EUNAVAIL);
	rc = embkv_pull(t, nmine, mine, after, NULL, EMBKV_MODE_TRAIN, NULL);
	assert_int_equal(rc, EMBKV_EUNAVAIL);
	/* The others kept their rows, through the same handle. */
	assert_int_equal(pull_settled(t, nother, other, after), 0);
	for (uint32_t i = 0, k = 0; i < NKEYS; i++) {
		if (k < nother && keys[i] == other[k]) {
			assert_memory_equal(&after[(size_t)k * DIM],
					    &before[(size_t)i * DIM],
					    DIM * sizeof(float));
			k++;
		}
	}
	embkv_table_close(t);
	embkv_client_destroy(c);
	free(before);
	free(after);
}

static void test_create_all_or_nothing(void **state)
{
	struct embkv_client *c;
	struct embkv_table_attr a;
	struct embkv_etcd_attr ea;
	struct embkv_etcd *e;
	struct embkv_etcd_kvs kvs;
	(void)state;
	/* A fourth member with room for almost nothing. */
	assert_int_equal(start(NMEM, "tcp://127.0.0.1:0", "1M"), 0);
	/* It holds no partition of "spread" but knows it, and a client
	 * given its address alone reads the table through the others. */
	{
		struct embkv_table_handle *t;
		uint64_t k[4] = { 1, 2, 3, 4 };
		float out[4 * DIM];

		c = client_of(NMEM);
		assert_int_equal(embkv_table_open(c, "spread", &t), 0);
		assert_int_equal(embkv_pull(t, 4, k, out, NULL,
					    EMBKV_MODE_INFER, NULL), 0);
		embkv_table_close(t);
		embkv_client_destroy(c);
	}
	c = client_of(0);
	table_attr(&a, "toobig", 400000);
	a.opt.type = EMBKV_OPT_ADAM;
	/* 400k rows of dim 8 with Adam: ~50 MiB, a quarter far over the
	 * fourth member's 1 MiB. */
	assert_int_equal(embkv_table_create_remote(c, &a), -ENOMEM);
	for (uint32_t i = 0; i <= NMEM; i++)
		assert_int_equal(open_on(i, "toobig"), EMBKV_ENOTABLE);
	embkv_etcd_attr_init(&ea);
	ea.endpoints = etcd.url;
	assert_int_equal(embkv_etcd_create(&ea, &e), 0);
	assert_int_equal(embkv_etcd_get(e, "/" CLUSTER "/tables/toobig", false,
					&kvs), 0);
	assert_int_equal(kvs.n, 0);
	embkv_etcd_kvs_free(&kvs);
	/* A member that acked after the undo removes its ack once it sees
	 * the delete. */
	{
		uint64_t deadline = embkv_test_now_ms() + WAIT_MS;

		for (;;) {
			assert_int_equal(embkv_etcd_get(e, "/" CLUSTER "/acks/",
							true, &kvs), 0);
			if (!kvs.n || embkv_test_now_ms() > deadline)
				break;
			embkv_etcd_kvs_free(&kvs);
			usleep(50 * 1000);
		}
		assert_int_equal(kvs.n, 0);
		embkv_etcd_kvs_free(&kvs);
	}
	embkv_etcd_destroy(e);
	embkv_client_destroy(c);
	assert_int_equal(embkv_test_proc_stop(&mem[NMEM], STOP_MS), 0);
	/* Its clean stop revoked its lease: the others stop naming it. */
	{
		uint64_t deadline = embkv_test_now_ms() + WAIT_MS;
		struct embkv_client_attr ca;
		const char *one[1] = { addr[0] };

		embkv_client_attr_init(&ca);
		ca.servers = one;
		ca.nservers = 1;
		for (;;) {
			int rc = embkv_client_create(&ca, &c);

			if (!rc && embkv_client_server_count(c) == NMEM) {
				embkv_client_destroy(c);
				break;
			}
			if (!rc)
				embkv_client_destroy(c);
			assert_true(embkv_test_now_ms() < deadline);
			usleep(100 * 1000);
		}
	}
}

static void test_etcd_down(void **state)
{
	struct embkv_client *c = client_of(0);
	struct embkv_table_handle *t;
	struct embkv_table_attr a;
	uint64_t keys[64], deadline;
	float rows[64 * DIM], grads[64 * DIM];
	int rc;

	(void)state;
	for (uint32_t i = 0; i < 64; i++)
		keys[i] = 77 + i;
	for (uint32_t i = 0; i < 64 * DIM; i++)
		grads[i] = 1.0f;
	table_attr(&a, "later", 10000);
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	assert_int_equal(embkv_table_open(c, "later", &t), 0);
	embkv_test_etcd_halt(&etcd);
	assert_int_equal(embkv_pull(t, 64, keys, rows, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	assert_int_equal(embkv_push(t, 64, keys, grads, NULL), 0);
	table_attr(&a, "nope", 10000);
	rc = embkv_table_create_remote(c, &a);
	assert_true(rc == -ECONNREFUSED || rc == -ETIMEDOUT ||
		    rc == -EHOSTUNREACH || rc == -ECONNRESET);
	assert_int_equal(open_on(0, "nope"), EMBKV_ENOTABLE);
	assert_int_equal(embkv_test_etcd_restart(&etcd), 0);
	/* Back: the members follow etcd again, and admin works. */
	deadline = embkv_test_now_ms() + WAIT_MS;
	while ((rc = embkv_table_create_remote(c, &a)) && embkv_test_now_ms() < deadline)
		usleep(200 * 1000);
	assert_int_equal(rc, 0);
	for (uint32_t i = 0; i < NMEM; i++)
		assert_int_equal(open_on(i, "nope"), 0);
	assert_int_equal(embkv_pull(t, 64, keys, rows, NULL, EMBKV_MODE_INFER,
				    NULL), 0);
	embkv_table_close(t);
	embkv_client_destroy(c);
}

static void test_drop_everywhere(void **state)
{
	struct embkv_client *c = client_of(2);

	(void)state;
	assert_int_equal(embkv_table_drop_remote(c, "nope"), 0);
	for (uint32_t i = 0; i < NMEM; i++)
		assert_int_equal(open_on(i, "nope"), EMBKV_ENOTABLE);
	assert_int_equal(embkv_table_drop_remote(c, "nope"), EMBKV_ENOTABLE);
	embkv_client_destroy(c);
}


/* A raw connection to member i (its TCP port from its address). */
static int raw_connect(uint32_t i)
{
	struct th_server srv = { 0 };
	const char *colon = strrchr(addr[i], ':');

	snprintf(srv.host, sizeof(srv.host), "127.0.0.1");
	srv.port = (uint16_t)atoi(colon + 1);
	return th_connect(&srv);
}

static void test_misrouted_is_stale(void **state)
{
	struct embkv_client *c;
	struct embkv_table_attr a;
	struct embkv_wire_table_info info;
	uint64_t keys[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, deadline;
	float out[8 * DIM];
	uint8_t found[8];
	char listen[EMBKV_TEST_ADDR_MAX];
	int fd, rc;

	(void)state;
	/* Members 1 and 2 leave (their leases go at once): a table made now
	 * has member 0 alone in its map. */
	assert_int_equal(embkv_test_proc_stop(&mem[1], STOP_MS), 0);
	assert_int_equal(embkv_test_proc_stop(&mem[2], STOP_MS), 0);
	deadline = embkv_test_now_ms() + WAIT_MS;
	for (;;) {
		struct embkv_client_attr ca;
		const char *one[1] = { addr[0] };

		embkv_client_attr_init(&ca);
		ca.servers = one;
		ca.nservers = 1;
		rc = embkv_client_create(&ca, &c);
		if (!rc && embkv_client_server_count(c) == 1)
			break;
		if (!rc)
			embkv_client_destroy(c);
		assert_true(embkv_test_now_ms() < deadline);
		usleep(100 * 1000);
	}
	table_attr(&a, "solo", 1000);
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	embkv_client_destroy(c);
	/* Member 1 comes back, with one owner thread (the batch planner's
	 * shortest path): it knows "solo" and holds none of it. */
	snprintf(listen, sizeof(listen), "%s", addr[1]);
	threads = "1";
	assert_int_equal(start(1, listen, NULL), 0);
	threads = "2";
	deadline = embkv_test_now_ms() + WAIT_MS;
	while (open_on(1, "solo"))
		assert_true(embkv_test_now_ms() < deadline);
	fd = raw_connect(1);
	assert_true(fd >= 0);
	assert_int_equal(th_open(fd, "solo", &info), 0);
	rc = th_pull(fd, 1, th_ref(&info), DIM, 8, keys,
		     EMBKV_WIRE_PULL_TRAIN, out, found);
	assert_int_equal(rc, EMBKV_ESTALE);
	th_close(fd);
	/* Through the library the same keys go to member 0 and work. */
	assert_int_equal(open_on(1, "solo"), 0);
	assert_int_equal(start(2, addr[2], NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_spreads),
		cmocka_unit_test(test_bf16_table),
		cmocka_unit_test(test_restart_is_unloaded),
		cmocka_unit_test(test_create_all_or_nothing),
		cmocka_unit_test(test_etcd_down),
		cmocka_unit_test(test_drop_everywhere),
		cmocka_unit_test(test_misrouted_is_stale),
	};

	if (!embkv_test_etcd_available()) {
		fprintf(stderr, "no etcd at %s\n", EMBKV_TEST_ETCD_BIN);
		return 1;
	}
	return cmocka_run_group_tests_name("cluster catalog", tests,
					   group_setup, group_teardown);
}
