/*
 * Checkpoints in cluster mode (issue 12), end to end: three real embkvd
 * processes with --etcd against a private etcd (etcd_harness.h), sharing
 * ONE --data-dir, driven through libembkv and the real embkvctl.
 *
 * Why cluster mode needs its own test: there a restarted member learns
 * its tables from etcd with its partitions UNLOADED, and its checkpoint
 * thread loads them by itself from the checkpoint etcd names at
 * /<cluster>/checkpoints/newest (written by CKPT_COMMIT with record), not
 * from the newest manifest in its directory as a static server does.
 *
 * What is asserted, in order (the tests share the cluster and build on
 * each other's state):
 * 1. one_member_restart: after a full checkpoint etcd's newest holds its
 *    id; pushes go on; member 1 is killed with -9 and restarted with the
 *    same --member-id and --data-dir: its partitions come back by
 *    themselves (EMBKV_EUNAVAIL until then, bounded) with bitwise the
 *    checkpoint's rows, while the other members' partitions keep their
 *    newer rows. Which member owns a key is computed from the table's map
 *    and the key hash (hashing/hash.h), and every key is checked against
 *    the value its owner must have. `embkvctl checkpoint list` and
 *    `verify newest` exit 0.
 * 2. all_restart: kill -9 of every member, restart of every member: every
 *    row equals the checkpoint bitwise (the rows member 0 and 2 had pushed
 *    since are rolled back).
 * 3. incremental_restart: pushes, new keys (train pulls) and erases after
 *    the full checkpoint; an incremental checkpoint on it (base = the full
 *    one) becomes etcd's newest; more pushes; kill -9 of every member and
 *    restart: every row equals the increment's cut bitwise, the new keys
 *    are found and the erased ones are not.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "hashing/hash.h"
#include "net/etcd.h"
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define NMEM 3u
#define DIM 8u
#define PARTS 16u
#define PART_BITS 4u
#define NKEYS 2048u
#define NNEW 256u               /* keys created after the full checkpoint */
#define NERASE 128u             /* keys erased before the increment */
#define READY_MS 10000u
#define STOP_MS 5000u
#define RESTORE_MS 30000u       /* bound on a restart's self-restore */
#define RUN_MS 30000u
#define OUT_MAX 65536
#define CLUSTER "ckc"

static struct embkv_test_etcd etcd;
static struct embkv_test_proc mem[NMEM];
static char addr[NMEM][EMBKV_TEST_ADDR_MAX];
static char g_dir[256];

/* State the tests hand on. */
static uint64_t keys[NKEYS], newkeys[NNEW];
static float ref[NKEYS * DIM];   /* rows at the full checkpoint */
static uint64_t full_id;

/* Starts member id on listen, sharing g_dir. */
static int start(uint32_t id, const char *listen)
{
	const char *extra[] = { "--data-dir", g_dir, NULL };

	return embkv_test_member_start(EMBKVD_PATH, &etcd, CLUSTER, id, listen,
				       NULL, "2", extra, READY_MS, &mem[id],
				       addr[id]);
}

/* Restarts member id at its old address (its port may take a moment to
 * be free again). */
static void restart(uint32_t id)
{
	char listen[EMBKV_TEST_ADDR_MAX];
	uint64_t deadline = embkv_test_now_ms() + READY_MS;
	int rc;

	snprintf(listen, sizeof(listen), "%s", addr[id]);
	while ((rc = start(id, listen)) && embkv_test_now_ms() < deadline)
		usleep(200 * 1000);
	assert_int_equal(rc, 0);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/embkv-cluster-ckpt.%d",
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
	/* a clean exit, 0 (under ASan: no leak at exit either) */
	for (uint32_t i = 0; i < NMEM; i++)
		if (mem[i].pid && embkv_test_proc_stop(&mem[i], STOP_MS)) {
			fprintf(stderr, "member %u did not exit with 0\n", i);
			bad = -1;
		}
	embkv_test_etcd_stop(&etcd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
	return system(cmd) || bad ? -1 : 0;
}

/* A client given every member's address. */
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

/* Opens name, retrying while a restarted member settles. */
static struct embkv_table_handle *open_t(struct embkv_client *c,
					 const char *name)
{
	struct embkv_table_handle *t = NULL;
	uint64_t deadline = embkv_test_now_ms() + RESTORE_MS;
	int rc;

	while ((rc = embkv_table_open(c, name, &t)) && embkv_test_now_ms() < deadline)
		usleep(100 * 1000);
	if (rc)
		fail_msg("cannot open %s: %s", name, embkv_strerror(rc));
	return t;
}

/* Infer pull that waits (bounded) while partitions are not loaded yet or
 * a connection a restart broke is re-made. */
static int pull_restored(struct embkv_table_handle *t, uint32_t n,
			 const uint64_t *k, float *out, uint8_t *found)
{
	uint64_t deadline = embkv_test_now_ms() + RESTORE_MS;
	int rc;

	for (;;) {
		rc = embkv_pull(t, n, k, out, found, EMBKV_MODE_INFER, NULL);
		if ((rc != EMBKV_EUNAVAIL && rc != EMBKV_EDISCONNECTED &&
		     rc != EMBKV_ESTALE) || embkv_test_now_ms() > deadline)
			return rc;
		usleep(100 * 1000);
	}
}

/* A train-mode pull (creates missing rows) then a push of grads that
 * depend on the round, so every round changes every row. */
static void train_round(struct embkv_table_handle *t, uint32_t n,
			const uint64_t *k, uint32_t round)
{
	float *rows = malloc((size_t)n * DIM * sizeof(float));
	float *g = malloc((size_t)n * DIM * sizeof(float));
	uint32_t applied = 0;

	assert_non_null(rows);
	assert_non_null(g);
	for (size_t i = 0; i < (size_t)n * DIM; i++)
		g[i] = 0.01f * (float)((i + round * 7u) % 13u) - 0.05f +
		       0.001f * (float)round + 0.0005f;
	assert_int_equal(embkv_pull(t, n, k, rows, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	assert_int_equal(embkv_push(t, n, k, g, &applied), 0);
	assert_int_equal(applied, n);
	free(rows);
	free(g);
}

/* etcd's /<cluster>/checkpoints/newest, 0 when absent. */
static uint64_t etcd_newest(void)
{
	struct embkv_etcd_attr ea;
	struct embkv_etcd *e;
	struct embkv_etcd_kvs kvs;
	uint64_t id = 0;

	embkv_etcd_attr_init(&ea);
	ea.endpoints = etcd.url;
	assert_int_equal(embkv_etcd_create(&ea, &e), 0);
	assert_int_equal(embkv_etcd_get(e, "/" CLUSTER "/checkpoints/newest",
					false, &kvs), 0);
	if (kvs.n)
		id = strtoull(kvs.kv[0].value, NULL, 10);
	embkv_etcd_kvs_free(&kvs);
	embkv_etcd_destroy(e);
	return id;
}

/* Runs argv to completion (killed after RUN_MS): its exit status, or -1.
 * Its output is copied to stderr. */
static int run(const char *const *argv)
{
	static char out[OUT_MAX];
	uint64_t deadline = embkv_test_now_ms() + RUN_MS;
	size_t len = 0;
	int pfd[2], st;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		ssize_t n;

		if (embkv_test_now_ms() >= deadline || poll(&p, 1, 100) < 0)
			break;
		if (!p.revents)
			continue;
		n = read(pfd[0], out + len, sizeof(out) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(out) - 1)
			break;
	}
	out[len] = '\0';
	close(pfd[0]);
	if (embkv_test_now_ms() >= deadline)
		kill(pid, SIGKILL);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	fprintf(stderr, "--- embkvctl checkpoint %s:\n%s", argv[4], out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* embkvctl --servers <all> checkpoint sub [arg]: its exit status. */
static int ctl_ckpt(const char *sub, const char *arg)
{
	char servers[NMEM * EMBKV_TEST_ADDR_MAX];
	const char *argv[] = { EMBKVCTL_PATH, "--servers", servers,
			       "checkpoint", sub, arg, NULL };

	snprintf(servers, sizeof(servers), "%s,%s,%s", addr[0], addr[1],
		 addr[2]);
	return run(argv);
}

static void kill_all_restart_all(void)
{
	for (uint32_t i = 0; i < NMEM; i++)
		embkv_test_proc_kill(&mem[i]);
	for (uint32_t i = 0; i < NMEM; i++)
		restart(i);
}

static void test_one_member_restart(void **state)
{
	struct embkv_client *c = client();
	struct embkv_table_handle *t;
	struct embkv_table_attr a;
	struct embkv_ckpt_attr ca;
	struct embkv_ckpt_result res;
	float *newer = malloc(sizeof(float) * NKEYS * DIM);
	float *x = malloc(sizeof(float) * NKEYS * DIM);
	uint8_t found[NKEYS];
	uint16_t part_server[PARTS];
	uint32_t victim = UINT32_MAX, nvictim = 0;
	uint64_t seed;

	(void)state;
	assert_non_null(newer);
	assert_non_null(x);
	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "ck");
	a.dim = DIM;
	a.capacity = 100000;
	a.partitions = PARTS;
	a.opt.type = EMBKV_OPT_ADAM;
	a.init.type = EMBKV_INIT_UNIFORM;
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	t = open_t(c, "ck");
	assert_int_equal(embkv_client_server_count(c), NMEM);
	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = 0x9e3779b97f4a7c15ull * (i + 1);
	for (uint32_t r = 0; r < 3; r++)
		train_round(t, NKEYS, keys, r);

	embkv_ckpt_attr_init(&ca);
	ca.name = "first";
	assert_int_equal(embkv_checkpoint_create(c, &ca, &res), 0);
	assert_true(res.id != 0);
	assert_int_equal(res.base, 0);
	assert_int_equal(res.rows, NKEYS);
	assert_int_equal(res.files, PARTS);
	full_id = res.id;
	assert_int_equal(etcd_newest(), full_id);
	assert_int_equal(embkv_pull(t, NKEYS, keys, ref, found,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_int_equal(found[i], 1);

	/* Newer rows everywhere. */
	for (uint32_t r = 3; r < 5; r++)
		train_round(t, NKEYS, keys, r);
	assert_int_equal(embkv_pull(t, NKEYS, keys, newer, found,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_true(memcmp(&newer[(size_t)i * DIM],
				   &ref[(size_t)i * DIM],
				   DIM * sizeof(float)) != 0);

	/* Whose partition each key is in: the map and the key hash. */
	assert_int_equal(embkv_table_map(t, NULL, part_server, PARTS), 0);
	seed = embkv_table_attr_get(t)->hash_seed;
	for (uint32_t i = 0; i < embkv_client_server_count(c); i++)
		if (!strcmp(embkv_client_server_addr(c, i), addr[1]))
			victim = i;
	assert_true(victim != UINT32_MAX);
	embkv_table_close(t);
	embkv_client_destroy(c);

	embkv_test_proc_kill(&mem[1]);
	restart(1);

	c = client();
	t = open_t(c, "ck");
	assert_int_equal(embkv_table_attr_get(t)->hash_seed, seed);
	{
		/* the map did not move: same members, same client indexes */
		uint16_t ps[PARTS];

		assert_int_equal(embkv_table_map(t, NULL, ps, PARTS), 0);
		assert_memory_equal(ps, part_server, sizeof(ps));
		assert_string_equal(embkv_client_server_addr(c, victim),
				    addr[1]);
	}
	assert_int_equal(pull_restored(t, NKEYS, keys, x, found), 0);
	for (uint32_t i = 0; i < NKEYS; i++) {
		uint32_t p = embkv_hash_partition(embkv_hash_key(keys[i], seed),
						  PART_BITS);
		const float *want = part_server[p] == victim ? ref : newer;

		assert_int_equal(found[i], 1);
		if (memcmp(&x[(size_t)i * DIM], &want[(size_t)i * DIM],
			   DIM * sizeof(float)))
			fail_msg("key %u (partition %u on server %u, victim "
				 "%u): not the expected row", i, p,
				 part_server[p], victim);
		nvictim += part_server[p] == victim;
	}
	/* both kinds were checked */
	assert_true(nvictim > 0 && nvictim < NKEYS);
	/* etcd still names the same checkpoint: a restore records nothing */
	assert_int_equal(etcd_newest(), full_id);
	embkv_table_close(t);
	embkv_client_destroy(c);

	assert_int_equal(ctl_ckpt("list", NULL), 0);
	assert_int_equal(ctl_ckpt("verify", "newest"), 0);
	free(newer);
	free(x);
}

static void test_all_restart(void **state)
{
	struct embkv_client *c;
	struct embkv_table_handle *t;
	float *x = malloc(sizeof(float) * NKEYS * DIM);
	uint8_t found[NKEYS];

	(void)state;
	assert_non_null(x);
	kill_all_restart_all();
	c = client();
	t = open_t(c, "ck");
	assert_int_equal(pull_restored(t, NKEYS, keys, x, found), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_int_equal(found[i], 1);
	assert_memory_equal(x, ref, sizeof(float) * NKEYS * DIM);
	assert_int_equal(etcd_newest(), full_id);
	embkv_table_close(t);
	embkv_client_destroy(c);
	free(x);
}

static void test_incremental_restart(void **state)
{
	struct embkv_client *c = client();
	struct embkv_table_handle *t = open_t(c, "ck");
	struct embkv_ckpt_attr ca;
	struct embkv_ckpt_result res;
	float *ref2 = malloc(sizeof(float) * NKEYS * DIM);
	float *x = malloc(sizeof(float) * NKEYS * DIM);
	float nref[NNEW * DIM], nx[NNEW * DIM];
	uint8_t found[NKEYS], nfound[NNEW];
	uint32_t erased = 0;
	uint64_t inc_id;

	(void)state;
	assert_non_null(ref2);
	assert_non_null(x);
	/* changes after the full checkpoint: pushes to half the keys, new
	 * keys, erases */
	train_round(t, NKEYS / 2, keys, 10);
	for (uint32_t i = 0; i < NNEW; i++)
		newkeys[i] = 0xc2b2ae3d27d4eb4full * (i + 1) + 12345;
	train_round(t, NNEW, newkeys, 11);
	assert_int_equal(embkv_erase(t, NERASE, &keys[NKEYS - NERASE],
				     &erased), 0);
	assert_int_equal(erased, NERASE);

	embkv_ckpt_attr_init(&ca);
	ca.incremental = 1;
	assert_int_equal(embkv_checkpoint_create(c, &ca, &res), 0);
	inc_id = res.id;
	assert_true(inc_id > full_id);
	assert_int_equal(res.base, full_id);
	assert_int_equal(etcd_newest(), inc_id);
	assert_int_equal(embkv_pull(t, NKEYS, keys, ref2, found,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_int_equal(found[i], i < NKEYS - NERASE);
	assert_int_equal(embkv_pull(t, NNEW, newkeys, nref, nfound,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NNEW; i++)
		assert_int_equal(nfound[i], 1);
	/* the pushed half moved since the full checkpoint, the rest not */
	for (uint32_t i = 0; i < NKEYS - NERASE; i++)
		assert_int_equal(memcmp(&ref2[(size_t)i * DIM],
					&ref[(size_t)i * DIM],
					DIM * sizeof(float)) != 0,
				 i < NKEYS / 2);

	/* newer rows, and a key re-created after the increment */
	train_round(t, NKEYS - NERASE, keys, 12);
	train_round(t, NNEW, newkeys, 13);
	train_round(t, 1, &keys[NKEYS - 1], 14);
	embkv_table_close(t);
	embkv_client_destroy(c);

	kill_all_restart_all();
	c = client();
	t = open_t(c, "ck");
	assert_int_equal(pull_restored(t, NKEYS, keys, x, found), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_int_equal(found[i], i < NKEYS - NERASE);
	assert_memory_equal(x, ref2,
			    sizeof(float) * (NKEYS - NERASE) * DIM);
	assert_int_equal(pull_restored(t, NNEW, newkeys, nx, nfound), 0);
	for (uint32_t i = 0; i < NNEW; i++)
		assert_int_equal(nfound[i], 1);
	assert_memory_equal(nx, nref, sizeof(nx));
	assert_int_equal(etcd_newest(), inc_id);
	embkv_table_close(t);
	embkv_client_destroy(c);
	assert_int_equal(ctl_ckpt("verify", "newest"), 0);
	free(ref2);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_member_restart),
		cmocka_unit_test(test_all_restart),
		cmocka_unit_test(test_incremental_restart),
	};

	if (!embkv_test_etcd_available()) {
		fprintf(stderr, "no etcd at %s\n", EMBKV_TEST_ETCD_BIN);
		return 1;
	}
	return cmocka_run_group_tests_name("cluster checkpoints", tests,
					   group_setup, group_teardown);
}
