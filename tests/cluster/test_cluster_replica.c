/*
 * A serving replica of a cluster's table (issue 13 item 3): etcd, two
 * embkvd members, a replica embkvd --replica-of given one member's
 * address, libembkv.
 *
 * What is asserted: while a client pushes continuously, partitions move
 * back and forth between the members (each move: the old owner answers
 * the replica EMBKV_ESTALE, or its feed is gone; the replica re-reads the
 * map and copies the partition from the new owner); after the pushes
 * stop and the replica reports lag 0, every row of the replica equals
 * the cluster's bitwise, and the replica started more partition copies
 * than the table has partitions (the moves were seen).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define DIM 8u
#define PARTS 8u
#define NKEYS 4000u
#define BATCH 500u
#define READY_MS 10000u
#define STOP_MS 5000u
#define CLUSTER "rpl"
#define TABLE "served"

static struct embkv_test_etcd etcd;
static struct embkv_test_proc mem[2], rep;
static char addr[2][EMBKV_TEST_ADDR_MAX];

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	nanosleep(&ts, NULL);
}

static int start(uint32_t id)
{
	return embkv_test_member_start(EMBKVD_PATH, &etcd, CLUSTER, id, NULL,
				       NULL, "2", NULL, READY_MS, &mem[id],
				       addr[id]);
}

static int group_setup(void **state)
{
	(void)state;
	if (embkv_test_etcd_start(&etcd))
		return -1;
	for (uint32_t i = 0; i < 2; i++)
		if (start(i))
			return -1;
	return 0;
}

static int group_teardown(void **state)
{
	int bad = 0;

	(void)state;
	if (rep.pid && embkv_test_proc_stop(&rep, STOP_MS))
		bad = -1;
	for (uint32_t i = 0; i < 2; i++)
		if (mem[i].pid && embkv_test_proc_stop(&mem[i], STOP_MS))
			bad = -1;
	embkv_test_etcd_stop(&etcd);
	return bad;
}

static struct embkv_client *client_of(const char *const *servers,
				      uint32_t n)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;

	embkv_client_attr_init(&ca);
	ca.servers = servers;
	ca.nservers = n;
	ca.request_timeout_ms = 20000;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

struct pusher {
	struct embkv_table_handle *t;
	volatile int stop;
	uint64_t batches;
	int rc;
};

static void *push_loop(void *arg)
{
	struct pusher *p = arg;
	static uint64_t keys[BATCH];
	static float g[BATCH * DIM];
	uint64_t s = 12345;

	while (!p->stop) {
		for (uint32_t i = 0; i < BATCH; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			keys[i] = (s >> 33) % (NKEYS / BATCH) * BATCH + i + 1;
			for (uint32_t d = 0; d < DIM; d++)
				g[i * DIM + d] = (float)((s >> (d * 4)) & 15) /
						 64.0f;
		}
		p->rc = embkv_push(p->t, BATCH, keys, g, NULL);
		if (p->rc)
			break;
		p->batches++;
	}
	return NULL;
}

struct lag {
	uint64_t ms, updates, snapshots;
	bool seen;
};

static void lag_cb(void *ctx, uint32_t server, const char *table,
		   const char *name, uint64_t value)
{
	struct lag *l = ctx;

	(void)server;
	if (!table || strcmp(table, TABLE))
		return;
	if (!strcmp(name, "repl_lag_ms")) {
		l->ms = value;
		l->seen = true;
	} else if (!strcmp(name, "repl_lag_updates")) {
		l->updates = value;
	} else if (!strcmp(name, "repl_snapshots")) {
		l->snapshots = value;
	}
}

static void replica_follows_moves(void **state)
{
	const char *all[2] = { addr[0], addr[1] };
	const char *argv[] = {
		EMBKVD_PATH, "--listen", "tcp://127.0.0.1:0", "--threads", "2",
		"--replica-of", TABLE, "--primary-servers", addr[1], NULL,
	};
	static uint64_t keys[NKEYS];
	static float a[NKEYS * DIM], b[NKEYS * DIM];
	static uint8_t fa[NKEYS], fb[NKEYS];
	struct embkv_client *c, *pc, *rc = NULL;
	struct embkv_table_handle *t, *pt, *rt = NULL;
	struct embkv_table_attr at;
	struct embkv_move_attr ma;
	struct embkv_ckpt_result r;
	struct pusher p = { 0 };
	struct lag l = { 0 };
	const char *raddr;
	pthread_t th;
	uint32_t moves = 0, rows = 0;
	int err = -1;

	(void)state;
	c = client_of(all, 2);
	pc = client_of(all, 2);
	embkv_table_attr_init(&at);
	strcpy(at.name, TABLE);
	at.dim = DIM;
	at.partitions = PARTS;
	at.capacity = 100000;
	at.opt.type = EMBKV_OPT_ADAGRAD;
	at.opt.lr = 0.1f;
	assert_int_equal(embkv_table_create_remote(c, &at), 0);
	assert_int_equal(embkv_table_open(c, TABLE, &t), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = i + 1;
	assert_int_equal(embkv_pull(t, NKEYS, keys, a, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	assert_int_equal(embkv_test_proc_start(argv, 1, READY_MS, &rep), 0);
	raddr = rep.addrs[0];
	rc = client_of(&raddr, 1);
	assert_int_equal(embkv_table_open(pc, TABLE, &pt), 0);
	p.t = pt;
	assert_int_equal(pthread_create(&th, NULL, push_loop, &p), 0);
	embkv_move_attr_init(&ma);
	for (uint32_t k = 0; k < 6; k++) {
		uint16_t ps[PARTS];
		uint32_t part = (k * 3) % PARTS, to;

		sleep_ms(150);
		assert_int_equal(embkv_table_map(t, NULL, ps, PARTS), 0);
		to = (ps[part] + 1) % 2;
		memset(&r, 0, sizeof(r));
		if (embkv_partition_move(c, TABLE, part, to, &ma, &r))
			fail_msg("move of partition %u: %s", part, r.error);
		moves += r.files;
	}
	sleep_ms(200);
	p.stop = 1;
	pthread_join(th, NULL);
	assert_int_equal(p.rc, 0);
	assert_true(p.batches > 5);
	assert_true(moves >= 6);
	/* the replica drains */
	for (int i = 0; i < 1500; i++) {
		memset(&l, 0, sizeof(l));
		if (!embkv_stats(rc, lag_cb, &l) && l.seen && !l.ms &&
		    !l.updates) {
			err = 0;
			break;
		}
		sleep_ms(20);
	}
	if (err)
		fprintf(stderr, "replica behind: %llu updates, %llu ms\n",
			(unsigned long long)l.updates,
			(unsigned long long)l.ms);
	assert_int_equal(err, 0);
	assert_true(l.snapshots > PARTS);
	/* bitwise equal */
	assert_int_equal(embkv_table_open(rc, TABLE, &rt), 0);
	assert_int_equal(embkv_pull(t, NKEYS, keys, a, fa, EMBKV_MODE_INFER,
				    NULL), 0);
	assert_int_equal(embkv_pull(rt, NKEYS, keys, b, fb, EMBKV_MODE_INFER,
				    NULL), 0);
	for (uint32_t i = 0; i < NKEYS; i++) {
		if (fa[i] != fb[i] ||
		    (fa[i] && memcmp(a + (size_t)i * DIM, b + (size_t)i * DIM,
				     DIM * sizeof(float))))
			fail_msg("key %u differs (found %u / %u)", i + 1,
				 fa[i], fb[i]);
		rows += fa[i];
	}
	assert_int_equal(rows, NKEYS);
	embkv_table_close(rt);
	embkv_table_close(pt);
	embkv_table_close(t);
	embkv_client_destroy(rc);
	embkv_client_destroy(pc);
	embkv_client_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(replica_follows_moves),
	};

	if (!embkv_test_etcd_available()) {
		fprintf(stderr, "no etcd at %s\n", EMBKV_TEST_ETCD_BIN);
		return 1;
	}
	return cmocka_run_group_tests_name("cluster replica", tests,
					   group_setup, group_teardown);
}
