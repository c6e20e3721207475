/*
 * embkvctl set-table / embkv_table_set_lr in cluster mode (issue 15, "set-
 * opt not persisted in etcd"): two real embkvd processes with --etcd
 * against a private etcd, sharing one --data-dir.
 *
 * - The new learning rate is in the table's etcd record (its attributes,
 *   decoded from the record) once the call returned.
 * - A checkpoint taken afterwards records it in its manifest.
 * - A member killed with -9 and restarted builds the table from the record
 *   and reloads its partitions from the checkpoint: its pushes apply the
 *   NEW learning rate (with the creation's, its rows would move 4 times
 *   as far), as the member that stayed up does.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "net/etcd.h"
#include "net/wire.h"
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define NMEM 2u
#define DIM 4u
#define NKEYS 512u
#define READY_MS 10000u
#define STOP_MS 5000u
#define RESTORE_MS 30000u
#define CLUSTER "sop"
#define LR0 0.5f
#define LR1 0.125f

static struct embkv_test_etcd etcd;
static struct embkv_test_proc mem[NMEM];
static char addr[NMEM][EMBKV_TEST_ADDR_MAX];
static char g_dir[256];

static int start(uint32_t id, const char *listen)
{
	const char *extra[] = { "--data-dir", g_dir, NULL };

	return embkv_test_member_start(EMBKVD_PATH, &etcd, CLUSTER, id, listen,
				       NULL, "2", extra, READY_MS, &mem[id],
				       addr[id]);
}

static int group_setup(void **state)
{
	(void)state;
	if (!embkv_test_etcd_available())
		return -1;
	snprintf(g_dir, sizeof(g_dir), "/tmp/embkv-cluster-setopt.%d",
		 getpid());
	if (mkdir(g_dir, 0755))
		return -1;
	if (embkv_test_etcd_start(&etcd))
		return -1;
	for (uint32_t i = 0; i < NMEM; i++)
		if (start(i, "tcp://127.0.0.1:0"))
			return -1;
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[600];
	int bad = 0;

	(void)state;
	for (uint32_t i = 0; i < NMEM; i++)
		if (mem[i].pid && embkv_test_proc_stop(&mem[i], STOP_MS))
			bad = -1;
	embkv_test_etcd_stop(&etcd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
	return system(cmd) || bad ? -1 : 0;
}

static struct embkv_client *client(void)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;
	const char *all[NMEM];

	for (uint32_t i = 0; i < NMEM; i++)
		all[i] = addr[i];
	embkv_client_attr_init(&ca);
	ca.servers = all;
	ca.nservers = NMEM;
	ca.request_timeout_ms = 15000;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

/* The table's attributes as its etcd record holds them. */
static void record_attr(const char *name, struct embkv_table_attr *a)
{
	struct embkv_etcd_attr ea;
	struct embkv_etcd *e;
	struct embkv_etcd_kvs kvs;
	char key[128], *p, *q;
	static uint64_t wire64[64];
	uint8_t *wire = (uint8_t *)wire64;
	int n;

	embkv_etcd_attr_init(&ea);
	ea.endpoints = etcd.url;
	assert_int_equal(embkv_etcd_create(&ea, &e), 0);
	snprintf(key, sizeof(key), "/%s/tables/%s", CLUSTER, name);
	assert_int_equal(embkv_etcd_get(e, key, false, &kvs), 0);
	assert_int_equal(kvs.n, 1);
	p = strstr(kvs.kv[0].value, "\"attr\":\"");
	assert_non_null(p);
	p += 8;
	q = strchr(p, '"');
	assert_non_null(q);
	*q = 0;
	n = embkv_hex_decode(p, wire, sizeof(wire64));
	assert_true(n > 0);
	assert_int_equal(embkv_wire_table_attr_decode(wire, (size_t)n, a), 0);
	embkv_etcd_kvs_free(&kvs);
	embkv_etcd_destroy(e);
}

/* Waits (bounded) while a restarted member's partitions load. */
static int pull_restored(struct embkv_table_handle *t, const uint64_t *k,
			 float *out)
{
	uint64_t deadline = embkv_test_now_ms() + RESTORE_MS;
	int rc;

	for (;;) {
		rc = embkv_pull(t, NKEYS, k, out, NULL, EMBKV_MODE_INFER, NULL);
		if ((rc != EMBKV_EUNAVAIL && rc != EMBKV_EDISCONNECTED &&
		     rc != EMBKV_ESTALE) || embkv_test_now_ms() > deadline)
			return rc;
		usleep(100 * 1000);
	}
}

static void test_set_lr_survives_restart(void **state)
{
	struct embkv_client *c = client();
	struct embkv_table_handle *t;
	struct embkv_table_attr a, rec;
	struct embkv_ckpt_attr ca;
	struct embkv_ckpt_result res;
	uint64_t keys[NKEYS];
	static float before[NKEYS * DIM], after[NKEYS * DIM], g[NKEYS * DIM];
	static uint64_t wire64[64];
	char hex[2 * sizeof(wire64) + 1], cmd[2 * sizeof(wire64) + 400];
	size_t len;
	uint32_t applied = 0;
	uint64_t deadline;
	int rc;

	(void)state;
	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "so");
	a.dim = DIM;
	a.partitions = 8;
	a.capacity = 100000;
	a.opt.type = EMBKV_OPT_SGD;
	a.opt.lr = LR0;
	a.init.type = EMBKV_INIT_UNIFORM;
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	assert_int_equal(embkv_table_open(c, "so", &t), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = 0x9e3779b97f4a7c15ull * (i + 1);
	for (uint32_t i = 0; i < NKEYS * DIM; i++)
		g[i] = 1.0f;
	assert_int_equal(embkv_pull(t, NKEYS, keys, before, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);

	/* set-table: recorded in etcd before the call returns */
	record_attr("so", &rec);
	assert_true(rec.opt.lr == LR0);
	assert_int_equal(embkv_table_set_lr(t, LR1), 0);
	record_attr("so", &rec);
	assert_true(rec.opt.lr == LR1);
	assert_int_equal(rec.dim, DIM);
	assert_int_equal(rec.partitions, 8);

	/* a checkpoint's manifest records the current values */
	embkv_ckpt_attr_init(&ca);
	ca.name = "after-set-table";
	rc = embkv_checkpoint_create(c, &ca, &res);
	if (rc)
		fail_msg("checkpoint: %s", res.error);
	a.opt.lr = LR1;
	assert_int_equal(embkv_wire_table_attr_size(&a, &len), 0);
	assert_int_equal(embkv_wire_table_attr_encode(&a, (uint8_t *)wire64,
						      sizeof(wire64)), 0);
	embkv_hex_encode((const uint8_t *)wire64, len, hex);
	snprintf(cmd, sizeof(cmd), "grep -rqs '%s' '%s'", hex, g_dir);
	assert_int_equal(system(cmd), 0);

	/* member 1 restarts: table from the record, rows from the
	 * checkpoint, and its pushes use LR1 */
	embkv_test_proc_kill(&mem[1]);
	{
		char listen[EMBKV_TEST_ADDR_MAX];

		snprintf(listen, sizeof(listen), "%s", addr[1]);
		deadline = embkv_test_now_ms() + READY_MS;
		while ((rc = start(1, listen)) && embkv_test_now_ms() < deadline)
			usleep(200 * 1000);
		assert_int_equal(rc, 0);
	}
	assert_int_equal(pull_restored(t, keys, after), 0);
	assert_memory_equal(before, after, sizeof(before));
	assert_int_equal(embkv_push(t, NKEYS, keys, g, &applied), 0);
	assert_int_equal(applied, NKEYS);
	assert_int_equal(pull_restored(t, keys, after), 0);
	for (uint32_t i = 0; i < NKEYS * DIM; i++)
		assert_true(after[i] == before[i] - LR1 * 1.0f);
	embkv_table_close(t);
	embkv_client_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_lr_survives_restart),
	};

	if (!embkv_test_etcd_available()) {
		fprintf(stderr, "etcd not installed: skipped\n");
		return 0;
	}
	return cmocka_run_group_tests_name("cluster set-opt", tests,
					   group_setup, group_teardown);
}
