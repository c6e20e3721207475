/*
 * Cluster membership end to end: real embkvd processes with --etcd
 * against a private etcd (etcd_harness.h), and the real embkvctl.
 *
 * - two members are up in `members` and `health` (exit 0); after a
 *   kill -9 and the lease TTL, the dead one is down in both and health
 *   exits 1; a clean shutdown revokes the lease at once;
 * - a second embkvd with a live member's id is refused (exit 1, a clear
 *   line); one restarted at its own address after a kill -9 replaces its
 *   previous registration without waiting for the lease;
 * - with etcd stopped, an embkvd keeps serving pulls and pushes (each
 *   round bounded in time), past its lease TTL, and once etcd is back its
 *   registration is there and kept alive.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "net/etcd.h"
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define TTL "2"
#define TTL_S 2
#define READY_MS 10000u
#define STOP_MS 5000u
#define RUN_MS 15000u
#define DOWN_WAIT_MS 8000u
#define BACK_WAIT_MS 8000u
#define OUT_MAX 16384
#define NKEYS 256u
#define OP_BOUND_MS 2000u         /* a loaded 2-core machine */

static struct embkv_test_etcd etcd;

static int group_setup(void **state)
{
	(void)state;
	return embkv_test_etcd_start(&etcd) ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	embkv_test_etcd_stop(&etcd);
	return 0;
}

/* Runs argv to completion (killed after RUN_MS) with stdout and stderr
 * in out: the exit status, or -1. */
static int run(const char *const *argv, char *out, size_t cap)
{
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
		n = read(pfd[0], out + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap - 1)
			break;
	}
	out[len] = '\0';
	close(pfd[0]);
	if (embkv_test_now_ms() >= deadline)
		kill(pid, SIGKILL);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	fprintf(stderr, "--- %s %s:\n%s", argv[0],
		argv[5] ? argv[5] : "", out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int ctl(const char *cmd, char *out)
{
	const char *argv[] = {
		EMBKVCTL_PATH, "--etcd", etcd.url, "--cluster", "c", cmd, NULL,
	};

	return run(argv, out, OUT_MAX);
}

/* The line of member id in `members` output, its STATE word in state. */
static bool member_state(const char *out, unsigned id, char *state)
{
	char addr[256], st[32];
	unsigned got;

	for (const char *l = out; l && *l; l = strchr(l, '\n') ?
					    strchr(l, '\n') + 1 : NULL) {
		if (sscanf(l, "%u %255s %31s", &got, addr, st) == 3 &&
		    got == id) {
			strcpy(state, st);
			return true;
		}
	}
	return false;
}

/* Member id's default table is "t<id>": created through etcd with the
 * members alive at the time (in test_serves_without_etcd, member 7 alone,
 * so that it holds every partition of t7). */
static int start(struct embkv_test_proc *p, const char *id, const char *listen)
{
	char table[16];
	const char *argv[] = {
		EMBKVD_PATH, "--listen", listen, "--threads", "1",
		"--etcd", etcd.url, "--cluster", "c", "--member-ttl", TTL,
		"--member-id", id, "--default-table", table, NULL,
	};

	snprintf(table, sizeof(table), "t%s", id);
	return embkv_test_proc_start(argv, 1, READY_MS, p);
}

static struct embkv_etcd *etcd_client(void)
{
	struct embkv_etcd_attr a;
	struct embkv_etcd *e = NULL;

	embkv_etcd_attr_init(&a);
	a.endpoints = etcd.url;
	assert_int_equal(embkv_etcd_create(&a, &e), 0);
	return e;
}

/* The pid in /c/members/<id>'s value, 0 when the key is absent. */
static long member_pid(struct embkv_etcd *e, const char *id)
{
	char key[64], *p;
	struct embkv_etcd_kvs r;
	long pid = 0;

	snprintf(key, sizeof(key), "/c/members/%s", id);
	assert_int_equal(embkv_etcd_get(e, key, false, &r), 0);
	if (r.n) {
		assert_true(r.kv[0].lease != 0);
		p = strstr(r.kv[0].value, "\"pid\":");
		assert_non_null(p);
		pid = strtol(p + 6, NULL, 10);
	}
	embkv_etcd_kvs_free(&r);
	return pid;
}

static void test_up_then_down(void **state)
{
	struct embkv_test_proc a, b;
	struct embkv_etcd *e = etcd_client();
	char *out = malloc(OUT_MAX), st[32];
	uint64_t deadline;
	int rc;

	(void)state;
	assert_non_null(out);
	assert_int_equal(start(&a, "0", "tcp://127.0.0.1:0"), 0);
	assert_int_equal(start(&b, "1", "tcp://127.0.0.1:0"), 0);
	assert_int_equal(member_pid(e, "0"), a.pid);
	assert_int_equal(member_pid(e, "1"), b.pid);

	assert_int_equal(ctl("members", out), 0);
	assert_true(member_state(out, 0, st));
	assert_string_equal(st, "up");
	assert_true(member_state(out, 1, st));
	assert_string_equal(st, "up");
	assert_non_null(strstr(out, a.addrs[0]));
	assert_non_null(strstr(out, b.addrs[0]));
	assert_int_equal(ctl("health", out), 0);
	assert_non_null(strstr(out, "2 of 2 members healthy"));

	/* kill -9: unhealthy at once (no answer), down once the lease ran
	 * out. */
	embkv_test_proc_kill(&b);
	deadline = embkv_test_now_ms() + DOWN_WAIT_MS;
	while ((rc = ctl("health", out)) != 1 || !strstr(out, "DOWN")) {
		assert_true(rc == 1 && embkv_test_now_ms() < deadline);
		usleep(250 * 1000);
	}
	assert_non_null(strstr(out, "member 1 "));
	assert_non_null(strstr(out, "DOWN"));
	assert_non_null(strstr(out, "1 of 2 members healthy"));
	assert_int_equal(ctl("members", out), 0);
	assert_true(member_state(out, 0, st));
	assert_string_equal(st, "up");
	assert_true(member_state(out, 1, st));
	assert_string_equal(st, "down");

	/* A clean stop revokes the lease: gone at once, no TTL wait. */
	assert_int_equal(embkv_test_proc_stop(&a, STOP_MS), 0);
	assert_int_equal(member_pid(e, "0"), 0);
	assert_int_equal(ctl("members", out), 0);
	assert_true(member_state(out, 0, st));
	assert_string_equal(st, "down");
	assert_int_equal(ctl("health", out), 1);
	free(out);
	embkv_etcd_destroy(e);
}

static void test_duplicate_id(void **state)
{
	char listen[EMBKV_TEST_ADDR_MAX], *out = malloc(OUT_MAX);
	struct embkv_etcd *e = etcd_client();
	struct embkv_test_proc a, a2;
	const char *argv[] = {
		EMBKVD_PATH, "--listen", "tcp://127.0.0.1:0", "--threads", "1",
		"--etcd", etcd.url, "--cluster", "c", "--member-ttl", TTL,
		"--member-id", "5", NULL,
	};
	int rc = -1;

	(void)state;
	assert_non_null(out);
	assert_int_equal(start(&a, "5", "tcp://127.0.0.1:0"), 0);
	assert_int_equal(run(argv, out, OUT_MAX), 1);
	assert_non_null(strstr(out, "member id 5 is in use"));
	assert_non_null(strstr(out, a.addrs[0])); /* who holds it */
	assert_int_equal(member_pid(e, "5"), a.pid);

	/* Restarted at its own address right after a kill -9 (its lease
	 * still alive): it takes its registration back. */
	snprintf(listen, sizeof(listen), "%s", a.addrs[0]);
	embkv_test_proc_kill(&a);
	for (int t = 0; t < 20 && (rc = start(&a2, "5", listen)); t++)
		usleep(100 * 1000); /* the port may linger a moment */
	assert_int_equal(rc, 0);
	assert_int_equal(member_pid(e, "5"), a2.pid);
	assert_int_equal(embkv_test_proc_stop(&a2, STOP_MS), 0);
	assert_int_equal(member_pid(e, "5"), 0);
	free(out);
	embkv_etcd_destroy(e);
}

/* Pull then push every key; a bounded round takes less than
 * OP_BOUND_MS (the first one faults the table's pages in). */
static void data_round(struct embkv_table_handle *t, const uint64_t *keys,
		       float *rows, const float *grads, bool bounded)
{
	uint64_t t0 = embkv_test_now_ms();

	assert_int_equal(embkv_pull(t, NKEYS, keys, rows, NULL,
				    EMBKV_MODE_TRAIN, NULL), 0);
	assert_int_equal(embkv_push(t, NKEYS, keys, grads, NULL), 0);
	assert_true(!bounded || embkv_test_now_ms() - t0 < OP_BOUND_MS);
}

/* Runs last: stops and restarts the group's etcd. */
static void test_serves_without_etcd(void **state)
{
	static uint64_t keys[NKEYS];
	float *rows, *before, *grads;
	struct embkv_etcd *e = etcd_client();
	struct embkv_test_proc a;
	struct embkv_client_attr ca;
	struct embkv_client *c;
	struct embkv_table_handle *t;
	const char *servers[1];
	uint64_t until;
	uint32_t dim;
	int rounds = 0;

	(void)state;
	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = i * 7919u + 1;
	assert_int_equal(start(&a, "7", "tcp://127.0.0.1:0"), 0);
	assert_int_equal(member_pid(e, "7"), a.pid);
	servers[0] = a.addrs[0];
	embkv_client_attr_init(&ca);
	ca.servers = servers;
	ca.nservers = 1;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	assert_int_equal(embkv_table_open(c, "t7", &t), 0);
	dim = embkv_table_attr_get(t)->dim;
	rows = calloc((size_t)NKEYS * dim, sizeof(float));
	before = calloc((size_t)NKEYS * dim, sizeof(float));
	grads = calloc((size_t)NKEYS * dim, sizeof(float));
	assert_true(rows && before && grads);
	for (size_t i = 0; i < (size_t)NKEYS * dim; i++)
		grads[i] = 1.0f;
	data_round(t, keys, before, grads, false);

	/* etcd gone for longer than the lease: the data path never waits. */
	embkv_test_etcd_halt(&etcd);
	until = embkv_test_now_ms() + (TTL_S + 1) * 1000u;
	while (embkv_test_now_ms() < until) {
		data_round(t, keys, rows, grads, true);
		rounds++;
		usleep(50 * 1000);
	}
	assert_true(rounds >= 3);
	/* The pushes were applied: rows moved away from the first pull. */
	assert_int_equal(embkv_pull(t, NKEYS, keys, rows, NULL,
				    EMBKV_MODE_INFER, NULL), 0);
	assert_true(memcmp(rows, before, (size_t)NKEYS * dim *
			   sizeof(float)) != 0);

	/* etcd back: registered again (or its lease kept), and healthy. */
	assert_int_equal(embkv_test_etcd_restart(&etcd), 0);
	until = embkv_test_now_ms() + BACK_WAIT_MS;
	while (member_pid(e, "7") != a.pid && embkv_test_now_ms() < until)
		usleep(200 * 1000);
	assert_int_equal(member_pid(e, "7"), a.pid);
	/* ... and kept alive by it: still there a TTL and more later. */
	usleep((TTL_S * 1000u + 1500u) * 1000u);
	assert_int_equal(member_pid(e, "7"), a.pid);
	data_round(t, keys, rows, grads, true);
	embkv_table_close(t);
	embkv_client_destroy(c);
	assert_int_equal(embkv_test_proc_stop(&a, STOP_MS), 0);
	assert_int_equal(member_pid(e, "7"), 0);
	free(rows);
	free(before);
	free(grads);
	embkv_etcd_destroy(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_up_then_down),
		cmocka_unit_test(test_duplicate_id),
		cmocka_unit_test(test_serves_without_etcd),
	};

	if (!embkv_test_etcd_available()) {
		fprintf(stderr, "no etcd at %s\n", EMBKV_TEST_ETCD_BIN);
		return 1;
	}
	return cmocka_run_group_tests_name("cluster members", tests,
					   group_setup, group_teardown);
}
