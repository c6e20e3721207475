/*
 * Partition moves end to end (issue 13): etcd, embkvd members, libembkv.
 *
 * What is asserted:
 * - moves under load: 4 clients push continuously (SGD on disjoint keys,
 *   with values chosen so that every sum is exact in fp32) while
 *   partitions move back and forth among 3 members (one of them there and
 *   straight back four times), a 4th member joins and
 *   rebalance runs, then one member is drained: every push returns 0, and
 *   the final table equals the reference (each key: -lr * g times the
 *   pushes acknowledged for it): no push lost, none applied twice; the
 *   drained member holds no partition, the new one holds some; two of
 *   the clients push with embkv_push_multi (MULTI_PUSH), whose stale
 *   sections finish on the per-table path: the same exactness holds;
 * - recovery: after a checkpoint, a member is killed; once its lease
 *   expired, recover gives its partitions to the live members, which load
 *   them from the checkpoint: every row comes back; a second member
 *   killed is recovered by --auto-recover without anyone asking.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define NMEM 4u                 /* member 3 joins later */
#define DIM 8u
#define PARTS 16u
#define NPUSH 4u                /* pushing clients */
#define KEYS_PER 512u           /* keys of each pusher */
#define NKEYS (NPUSH * KEYS_PER)
#define LR 0.5f
#define GRAD 0.125f             /* LR * GRAD = 1/16: every sum exact */
#define READY_MS 10000u
#define STOP_MS 5000u
#define WAIT_MS 30000u
#define CLUSTER "mvc"

static struct embkv_test_etcd etcd;
static struct embkv_test_proc mem[NMEM];
static char addr[NMEM][EMBKV_TEST_ADDR_MAX];
static char g_dir[256];
static uint32_t nstarted;

static int start(uint32_t id)
{
	const char *extra[] = { "--data-dir", g_dir, "--auto-recover", "4",
				NULL };
	int rc = embkv_test_member_start(EMBKVD_PATH, &etcd, CLUSTER, id, NULL,
					 NULL, "2", extra, READY_MS, &mem[id],
					 addr[id]);

	if (!rc) {
		if (id + 1 > nstarted)
			nstarted = id + 1;
	}
	return rc;
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/embkv-cluster-move.%d", getpid());
	if (mkdir(g_dir, 0755))
		return -1;
	if (embkv_test_etcd_start(&etcd))
		return -1;
	for (uint32_t i = 0; i < 3; i++)
		if (start(i))
			return -1;
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[600];
	int bad = 0;

	(void)state;
	for (uint32_t i = 0; i < nstarted; i++)
		if (mem[i].pid && embkv_test_proc_stop(&mem[i], STOP_MS)) {
			fprintf(stderr, "member %u did not exit with 0\n", i);
			bad = -1;
		}
	embkv_test_etcd_stop(&etcd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
	return system(cmd) || bad ? -1 : 0;
}

/* A client given the members started so far (one may be down). */
static struct embkv_client *client(void)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;
	const char *all[NMEM];
	uint32_t n = 0;

	for (uint32_t i = 0; i < nstarted; i++)
		if (mem[i].pid)
			all[n++] = addr[i];
	embkv_client_attr_init(&ca);
	ca.servers = all;
	ca.nservers = n;
	ca.request_timeout_ms = 20000;
	ca.flags = EMBKV_CLIENT_ALLOW_DOWN;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

/* The client's index of member id's address. */
static uint32_t index_of(struct embkv_client *c, uint32_t id)
{
	for (uint32_t i = 0; i < embkv_client_server_count(c); i++)
		if (!strcmp(embkv_client_server_addr(c, i), addr[id]))
			return i;
	fail_msg("member %u (%s) unknown to the client", id, addr[id]);
	return 0;
}

/* ---- moves under load -------------------------------------------------- */

struct pusher {
	struct embkv_table_handle *t;
	uint32_t first;               /* its keys: first .. first+KEYS_PER */
	volatile int *stop;
	uint64_t acked;               /* pushes acknowledged (all keys) */
	int rc;
};

static void *push_loop(void *arg)
{
	struct pusher *p = arg;
	uint64_t keys[KEYS_PER];
	static float g[KEYS_PER * DIM];

	for (uint32_t i = 0; i < KEYS_PER * DIM; i++)
		g[i] = GRAD;
	for (uint32_t i = 0; i < KEYS_PER; i++)
		keys[i] = p->first + i + 1;
	while (!*p->stop) {
		uint32_t applied = 0;

		if ((p->first / KEYS_PER) % 2) {
			/* every other pusher: embkv_push_multi, its keys as
			 * two entries of the table (MULTI_PUSH sections; a
			 * section answered EMBKV_ESTALE while a partition
			 * moves finishes on the per-table path) */
			struct embkv_multi_req r[2] = {
				{ p->t, KEYS_PER / 2, keys, g, NULL, 0, 0 },
				{ p->t, KEYS_PER / 2, keys + KEYS_PER / 2,
				  g, NULL, 0, 0 },
			};

			p->rc = embkv_push_multi(r, 2);
			applied = r[0].done + r[1].done;
		} else {
			p->rc = embkv_push(p->t, KEYS_PER, keys, g, &applied);
		}
		if (p->rc) {
			fprintf(stderr, "pusher %u: %s\n", p->first,
				embkv_strerror(p->rc));
			break;
		}
		if (applied != KEYS_PER) {
			p->rc = -EIO;
			fprintf(stderr, "pusher %u: %u of %u applied\n",
				p->first, applied, KEYS_PER);
			break;
		}
		p->acked++;
	}
	return NULL;
}

/* Partitions per member id in t's map. */
static void held(struct embkv_client *c, struct embkv_table_handle *t,
		 uint32_t *per)
{
	uint16_t ps[PARTS];

	memset(per, 0, NMEM * sizeof(*per));
	assert_int_equal(embkv_table_map(t, NULL, ps, PARTS), 0);
	for (uint32_t p = 0; p < PARTS; p++)
		for (uint32_t m = 0; m < nstarted; m++)
			if (!strcmp(embkv_client_server_addr(c, ps[p]),
				    addr[m]))
				per[m]++;
}

static void check_rows(struct embkv_table_handle *t, const float *want)
{
	uint64_t *keys = malloc(NKEYS * sizeof(*keys));
	float *out = malloc((size_t)NKEYS * DIM * sizeof(float));
	uint8_t *found = malloc(NKEYS);
	uint64_t deadline = embkv_test_now_ms() + WAIT_MS;
	int rc;

	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = i + 1;
	do {
		rc = embkv_pull(t, NKEYS, keys, out, found, EMBKV_MODE_INFER,
				NULL);
		if (rc == EMBKV_EUNAVAIL || rc == EMBKV_ESTALE)
			usleep(100 * 1000);
	} while ((rc == EMBKV_EUNAVAIL || rc == EMBKV_ESTALE) &&
		 embkv_test_now_ms() < deadline);
	assert_int_equal(rc, 0);
	for (uint32_t i = 0; i < NKEYS; i++) {
		assert_true(found[i]);
		for (uint32_t d = 0; d < DIM; d++)
			if (out[(size_t)i * DIM + d] != want[i]) {
				fail_msg("key %u: %g, expected %g", i + 1,
					 (double)out[(size_t)i * DIM + d],
					 (double)want[i]);
			}
	}
	free(keys);
	free(out);
	free(found);
}

static float final_ref[NKEYS];

static void moves_under_load(void **state)
{
	struct embkv_client *c = client(), *pc = client(), *mc;
	struct embkv_table_attr at;
	struct embkv_table_handle *t, *pt[NPUSH];
	struct pusher p[NPUSH];
	pthread_t th[NPUSH];
	volatile int stop = 0;
	struct embkv_ckpt_result r;
	struct embkv_move_attr ma;
	uint32_t per[NMEM];
	uint64_t *keys = malloc(NKEYS * sizeof(*keys));
	float *rows = malloc((size_t)NKEYS * DIM * sizeof(float));
	uint64_t moves = 0;
	uint16_t owner[PARTS], prev_owner = 0;

	(void)state;
	embkv_table_attr_init(&at);
	snprintf(at.name, sizeof(at.name), "mv");
	at.dim = DIM;
	at.partitions = PARTS;
	at.capacity = 4 * NKEYS;
	at.opt.type = EMBKV_OPT_SGD;
	at.opt.lr = LR;
	at.init.type = EMBKV_INIT_ZEROS;
	assert_int_equal(embkv_table_create_remote(c, &at), 0);
	assert_int_equal(embkv_table_open(c, "mv", &t), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = i + 1;
	/* rows exist (a push to a missing key is dropped): zeros */
	assert_int_equal(embkv_pull(t, NKEYS, keys, rows, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
	for (uint32_t i = 0; i < NPUSH; i++) {
		assert_int_equal(embkv_table_open(pc, "mv", &pt[i]), 0);
		p[i] = (struct pusher){ .t = pt[i], .first = i * KEYS_PER,
					.stop = &stop };
		assert_int_equal(pthread_create(&th[i], NULL, push_loop, &p[i]),
				 0);
	}
	embkv_move_attr_init(&ma);
	/* back and forth among the three (the owners are tracked here: t's
	 * map is refreshed only by a stale answer, and t makes no request;
	 * a move to the partition's own server would be no move at all) */
	srand((unsigned)time(NULL));
	assert_int_equal(embkv_table_map(t, NULL, owner, PARTS), 0);
	for (uint32_t k = 0; k < 6; k++) {
		uint32_t part = (uint32_t)rand() % PARTS, to;

		to = (owner[part] + 1) % embkv_client_server_count(c);
		if (embkv_partition_move(c, "mv", part, to, &ma, &r))
			fail_msg("move of partition %u: %s", part, r.error);
		assert_int_equal(r.files, 1);
		owner[part] = (uint16_t)to;
		moves += r.files;
		usleep(50 * 1000);
	}
	/* one partition there and straight back, four times: the member it
	 * just left may not have applied that flip yet when the next move
	 * prepares there (the coordinator asks again) */
	for (uint32_t k = 0; k < 8; k++) {
		uint32_t to = (owner[0] + 1 + (k & 1)) %
			      embkv_client_server_count(c);

		if (k & 1)
			to = prev_owner;
		prev_owner = owner[0];
		if (embkv_partition_move(c, "mv", 0, to, &ma, &r))
			fail_msg("move %u of partition 0 to %u: %s", k, to,
				 r.error);
		assert_int_equal(r.files, 1);
		owner[0] = (uint16_t)to;
		moves += r.files;
	}
	/* a fourth member joins; rebalance gives it its share */
	assert_int_equal(start(3), 0);
	mc = client();
	if (embkv_rebalance(mc, &ma, &r))
		fail_msg("rebalance: %s", r.error);
	moves += r.files;
	{
		struct embkv_table_handle *mt;

		assert_int_equal(embkv_table_open(mc, "mv", &mt), 0);
		held(mc, mt, per);
		embkv_table_close(mt);
		print_message("after rebalance: %u %u %u %u\n", per[0], per[1],
			      per[2], per[3]);
		assert_true(per[3] >= PARTS / 4 - 1);
		/* drain member 1 */
		if (embkv_drain(mc, index_of(mc, 1), &ma, &r))
			fail_msg("drain: %s", r.error);
		moves += r.files;
		assert_int_equal(embkv_table_open(mc, "mv", &mt), 0);
		held(mc, mt, per);
		embkv_table_close(mt);
		print_message("after drain: %u %u %u %u\n", per[0], per[1],
			      per[2], per[3]);
		assert_int_equal(per[1], 0);
	}
	usleep(100 * 1000);
	stop = 1;
	for (uint32_t i = 0; i < NPUSH; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(p[i].rc, 0);
		print_message("pusher %u: %llu pushes\n", i,
			      (unsigned long long)p[i].acked);
		assert_true(p[i].acked > 0);
		for (uint32_t k = 0; k < KEYS_PER; k++)
			final_ref[i * KEYS_PER + k] =
				-LR * GRAD * (float)p[i].acked;
		embkv_table_close(pt[i]);
	}
	print_message("%llu partitions moved under load\n",
		      (unsigned long long)moves);
	assert_true(moves >= 6);
	{
		struct embkv_table_handle *ft;

		assert_int_equal(embkv_table_open(mc, "mv", &ft), 0);
		check_rows(ft, final_ref);
		embkv_table_close(ft);
	}
	embkv_table_close(t);
	embkv_client_destroy(mc);
	embkv_client_destroy(pc);
	embkv_client_destroy(c);
	free(keys);
	free(rows);
}

/* ---- recovery from a checkpoint ---------------------------------------- */

static void recover_lost_member(void **state)
{
	struct embkv_client *c = client();
	struct embkv_table_handle *t;
	struct embkv_ckpt_result r;
	uint32_t per[NMEM], victim = 0;
	uint64_t deadline;

	(void)state;
	assert_int_equal(embkv_checkpoint_create(c, NULL, &r), 0);
	assert_int_equal(embkv_table_open(c, "mv", &t), 0);
	held(c, t, per);
	for (uint32_t m = 0; m < nstarted; m++)
		if (per[m] && (!per[victim] || m == 2))
			victim = m;
	print_message("killing member %u (%u partitions)\n", victim,
		      per[victim]);
	embkv_table_close(t);
	embkv_client_destroy(c);
	embkv_test_proc_kill(&mem[victim]);
	memset(&mem[victim], 0, sizeof(mem[victim]));
	sleep(3);          /* its 2 s lease expires */
	c = client();
	deadline = embkv_test_now_ms() + WAIT_MS;
	for (;;) {
		uint32_t now_per[NMEM];
		int rc = embkv_recover(c, &r);

		if (!rc && r.files) {
			print_message("recover: %llu partitions given to live "
				      "members\n", (unsigned long long)r.files);
			assert_int_equal(r.files, per[victim]);
			break;
		}
		/* (--auto-recover may have been first) */
		assert_int_equal(embkv_table_open(c, "mv", &t), 0);
		held(c, t, now_per);
		embkv_table_close(t);
		if (!now_per[victim])
			break;
		assert_true(embkv_test_now_ms() < deadline);
		usleep(500 * 1000);
	}
	embkv_client_destroy(c);
	/* (a member may apply the new map a moment after the others: an
	 * open that reaches the dead member's old address fails) */
	deadline = embkv_test_now_ms() + WAIT_MS;
	for (;;) {
		c = client();
		if (!embkv_table_open(c, "mv", &t))
			break;
		embkv_client_destroy(c);
		assert_true(embkv_test_now_ms() < deadline);
		usleep(200 * 1000);
	}
	check_rows(t, final_ref);
	held(c, t, per);
	assert_int_equal(per[victim], 0);
	/* a second member lost: this time --auto-recover does it */
	held(c, t, per);
	victim = 0;
	for (uint32_t m = 1; m < nstarted; m++)
		if (mem[m].pid && per[m] > per[victim])
			victim = m;
	embkv_table_close(t);
	embkv_client_destroy(c);
	print_message("killing member %u (%u partitions); auto-recover\n",
		      victim, per[victim]);
	embkv_test_proc_kill(&mem[victim]);
	memset(&mem[victim], 0, sizeof(mem[victim]));
	deadline = embkv_test_now_ms() + WAIT_MS;
	for (;;) {
		/* (the open fails while the map still names the dead one) */
		c = client();
		if (!embkv_table_open(c, "mv", &t)) {
			held(c, t, per);
			if (!per[victim])
				break;
			embkv_table_close(t);
		}
		embkv_client_destroy(c);
		assert_true(embkv_test_now_ms() < deadline);
		usleep(500 * 1000);
	}
	check_rows(t, final_ref);
	embkv_table_close(t);
	embkv_client_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(moves_under_load),
		cmocka_unit_test(recover_lost_member),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
