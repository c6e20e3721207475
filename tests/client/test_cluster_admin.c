/*
 * Cluster administration against real embkvd processes (static peers,
 * 127.0.0.1, random ports), through libembkv and through the embkvctl
 * binary:
 * - a dead member: stats, stats --json and tables report the servers
 *   that answered, mark the dead one DOWN with its own error and exit 3;
 *   a client given one live address still learns the dead one;
 *   create-table refuses and leaves no table on the live servers;
 * - membership: embkvctl given one server of two creates the table on
 *   both; a client never adds a server twice under two names; servers of
 *   two clusters given together are refused (EMBKV_ECLUSTER);
 * - a table on some servers only (a member restarted empty) is reported
 *   INCONSISTENT by create, locate and tables, and never re-created on the
 *   empty member; dropping it everywhere makes create work again;
 * - a create that fails on one server (its memory limit) is undone on
 *   the others.
 * Every test's servers live in its state, so the teardown stops (or
 * kills) them even when an assertion ended the test early.
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
#include <sys/wait.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"

#define READY_MS 10000u
#define STOP_MS 10000u
#define OUT_MAX 65536u
#define CMD_MAX 4096u
#define PEERS_MAX 1024u
#define EXIT_DOWN 3
#define SHORT_MS "2000"

static const char *const extra[] = { "--threads", "1", NULL };

/* Two clusters at most per test (the membership test needs two). */
struct state {
	struct embkv_test_cluster cl[2];
};

static int setup(void **state)
{
	struct state *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	*state = s;
	return 0;
}

static int teardown(void **state)
{
	struct state *s = *state;

	for (int i = 0; i < 2; i++)
		for (uint32_t k = 0; k < s->cl[i].n; k++)
			if (s->cl[i].procs[k].pid > 0)
				embkv_test_proc_kill(&s->cl[i].procs[k]);
	free(s);
	return 0;
}

static void start(struct embkv_test_cluster *cl, uint32_t n)
{
	assert_int_equal(embkv_test_cluster_start(EMBKVD_PATH, n, extra,
						  READY_MS, cl), 0);
}

/* Kills member i and starts it again, empty, with the same address and
 * peers (a restart without a checkpoint), plus more (NULL-terminated, may
 * be NULL). */
static void restart(struct embkv_test_cluster *cl, uint32_t i,
		    const char *const *more)
{
	const char *argv[16];
	char peers[PEERS_MAX], self[16];
	size_t off = 0;
	uint32_t k = 0;

	for (uint32_t m = 0; m < cl->n; m++)
		off += (size_t)snprintf(peers + off, sizeof(peers) - off,
					"%s%s", m ? "," : "", cl->addrs[m]);
	snprintf(self, sizeof(self), "%u", i);
	embkv_test_proc_kill(&cl->procs[i]);
	argv[k++] = EMBKVD_PATH;
	argv[k++] = "--listen";
	argv[k++] = cl->addrs[i];
	argv[k++] = "--peers";
	argv[k++] = peers;
	argv[k++] = "--self";
	argv[k++] = self;
	argv[k++] = "--threads";
	argv[k++] = "1";
	for (uint32_t m = 0; more && more[m]; m++)
		argv[k++] = more[m];
	argv[k] = NULL;
	assert_int_equal(embkv_test_proc_start(argv, 1, READY_MS,
					       &cl->procs[i]), 0);
}

/* Runs embkvctl --timeout SHORT_MS --servers SERVERS ARGS, stdout and
 * stderr together in out: its exit status. */
static int ctl(char *out, const char *servers, const char *args)
{
	char cmd[CMD_MAX];
	size_t n = 0, got;
	FILE *f;
	int st;

	snprintf(cmd, sizeof(cmd), "%s --timeout %s --servers %s %s 2>&1",
		 EMBKVCTL_PATH, SHORT_MS, servers, args);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (n + 1 < OUT_MAX &&
	       (got = fread(out + n, 1, OUT_MAX - 1 - n, f)) > 0)
		n += got;
	out[n] = '\0';
	st = pclose(f);
	print_message("$ %s\n%s", cmd, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void assert_has(const char *out, const char *what)
{
	if (!strstr(out, what))
		fail_msg("output lacks \"%s\"", what);
}

/* "A,B,C" of a cluster's addresses. */
static const char *joined(const struct embkv_test_cluster *cl, char *buf,
			  size_t len)
{
	size_t off = 0;

	for (uint32_t i = 0; i < cl->n; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s",
					i ? "," : "", cl->addrs[i]);
	return buf;
}

static int client(const char *const *servers, uint32_t n, uint32_t flags,
		  struct embkv_client **c)
{
	struct embkv_client_attr a;

	embkv_client_attr_init(&a);
	a.servers = servers;
	a.nservers = n;
	a.flags = flags;
	a.connect_timeout_ms = 2000;
	return embkv_client_create(&a, c);
}

static void table(struct embkv_table_attr *ta, const char *name)
{
	embkv_table_attr_init(ta);
	strcpy(ta->name, name);
	ta->dim = 8;
	ta->capacity = 4096;
}

/* The client index of address addr (NULL-safe for the test). */
static uint32_t index_of(struct embkv_client *c, const char *addr)
{
	for (uint32_t i = 0; i < embkv_client_server_count(c); i++)
		if (strcmp(embkv_client_server_addr(c, i), addr) == 0)
			return i;
	fail_msg("no server %s", addr);
	return UINT32_MAX;
}

struct seen {
	uint32_t servers;   /* server-wide groups seen ("uptime_s") */
	uint32_t server_mask;
};

static void on_stat(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct seen *s = ctx;

	(void)value;
	if (!table && strcmp(name, "uptime_s") == 0) {
		s->servers++;
		s->server_mask |= 1u << server;
	}
}

/* 3 servers, one killed. */
static void test_member_down(void **state)
{
	struct state *s = *state;
	struct embkv_test_cluster *cl = &s->cl[0];
	char *out = malloc(OUT_MAX), all[PEERS_MAX], down[CMD_MAX];
	struct embkv_client *c = NULL;
	struct embkv_table_attr ta;
	struct seen seen = { 0 };
	int st[3], rc;
	uint32_t d;

	assert_non_null(out);
	start(cl, 3);
	joined(cl, all, sizeof(all));
	/* one address is enough: the table goes to all three */
	assert_int_equal(ctl(out, cl->addrs[1], "create-table emb --dim 8 "
			     "--capacity 4096"), 0);
	embkv_test_proc_kill(&cl->procs[2]);
	snprintf(down, sizeof(down), "%s  DOWN  %s", cl->addrs[2],
		 embkv_strerror(-ECONNREFUSED));

	assert_int_equal(ctl(out, all, "stats"), EXIT_DOWN);
	assert_has(out, down);
	assert_has(out, "2 of 3 servers");
	assert_has(out, cl->addrs[0]);
	assert_has(out, cl->addrs[1]);
	assert_has(out, "emb");
	assert_has(out, "1 of 3 servers did not answer");

	assert_int_equal(ctl(out, all, "stats --json"), EXIT_DOWN);
	snprintf(down, sizeof(down), "\"address\":\"%s\",\"up\":false,"
		 "\"error\":\"%s\"", cl->addrs[2],
		 embkv_strerror(-ECONNREFUSED));
	assert_has(out, down);
	snprintf(down, sizeof(down), "\"address\":\"%s\",\"up\":true,"
		 "\"counters\":{", cl->addrs[0]);
	assert_has(out, down);
	assert_has(out, "\"servers\":3,\"servers_up\":2");

	assert_int_equal(ctl(out, all, "tables"), EXIT_DOWN);
	snprintf(down, sizeof(down), "%s  DOWN  ", cl->addrs[2]);
	assert_has(out, down);
	assert_has(out, "emb");
	assert_has(out, " ok\n");
	assert_int_equal(ctl(out, all, "--json tables"), EXIT_DOWN);
	assert_has(out, "{\"name\":\"emb\",");
	assert_has(out, "\"state\":\"ok\"");
	assert_has(out, "\"up\":false");

	/* given only a live member, the dead one is learned and shown */
	assert_int_equal(ctl(out, cl->addrs[0], "stats"), EXIT_DOWN);
	snprintf(down, sizeof(down), "%s  DOWN  ", cl->addrs[2]);
	assert_has(out, down);

	/* create with a member down: refused, nothing on the live ones */
	assert_int_equal(ctl(out, cl->addrs[0], "create-table t2 --dim 8"), 1);
	assert_has(out, cl->addrs[2]);
	assert_has(out, "not created");

	/* the library: refused without EMBKV_CLIENT_ALLOW_DOWN */
	assert_int_equal(client(cl->addrs, 3, 0, &c), -ECONNREFUSED);
	assert_int_equal(client(cl->addrs, 1, 0, &c), -ECONNREFUSED);
	assert_int_equal(client(cl->addrs, 1, EMBKV_CLIENT_ALLOW_DOWN, &c), 0);
	assert_int_equal(embkv_client_server_count(c), 3);
	d = index_of(c, cl->addrs[2]);
	assert_int_equal(embkv_client_server_status(c, d), -ECONNREFUSED);
	assert_int_equal(embkv_client_server_status(c, index_of(c,
						    cl->addrs[0])), 0);
	assert_int_equal(embkv_client_server_status(c, 3), -EINVAL);
	rc = embkv_stats(c, on_stat, &seen);
	assert_int_equal(rc, -ECONNREFUSED);
	assert_int_equal(seen.servers, 2);
	assert_int_equal(seen.server_mask & (1u << d), 0);
	table(&ta, "t3");
	assert_int_equal(embkv_table_create_remote(c, &ta), -ECONNREFUSED);
	for (uint32_t i = 0; i < 3; i++)
		st[i] = 1;
	assert_int_equal(embkv_table_locate(c, "t2", NULL, st, 3),
			 -ECONNREFUSED);
	assert_int_equal(embkv_table_locate(c, "t3", NULL, st, 3),
			 -ECONNREFUSED);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(st[i], i == d ? -ECONNREFUSED
						       : EMBKV_ENOTABLE);
	/* emb is still on the live two */
	assert_int_equal(embkv_table_locate(c, "emb", NULL, st, 3),
			 -ECONNREFUSED);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(st[i], i == d ? -ECONNREFUSED : 0);
	embkv_client_destroy(c);
	free(out);
}

/* embkvctl given one server of two acts on both; names do not double. */
static void test_learned(void **state)
{
	struct state *s = *state;
	struct embkv_test_cluster *cl = &s->cl[0];
	char *out = malloc(OUT_MAX), local[EMBKV_TEST_ADDR_MAX];
	const char *one[1];
	struct embkv_table_attr got;
	struct embkv_client *c;
	int st[2];

	assert_non_null(out);
	start(cl, 2);
	assert_int_equal(ctl(out, cl->addrs[0], "create-table half --dim 8"),
			 0);
	assert_int_equal(client(cl->addrs, 2, 0, &c), 0);
	assert_int_equal(embkv_table_locate(c, "half", &got, st, 2), 0);
	assert_int_equal(st[0], 0);
	assert_int_equal(st[1], 0);
	assert_int_equal(got.dim, 8);
	embkv_client_destroy(c);
	assert_int_equal(ctl(out, cl->addrs[1], "tables"), 0);
	assert_has(out, "half");
	assert_int_equal(ctl(out, cl->addrs[1], "map half"), 0);
	assert_int_equal(ctl(out, cl->addrs[1], "create-table half --dim 8"),
			 1);
	assert_has(out, embkv_strerror(EMBKV_ETABLEEXISTS));

	/* the second server by another name: known by its own report */
	snprintf(local, sizeof(local), "tcp://localhost:%s",
		 strrchr(cl->addrs[1], ':') + 1);
	one[0] = local;
	assert_int_equal(client(one, 1, 0, &c), 0);
	assert_int_equal(embkv_client_server_count(c), 2);
	assert_string_equal(embkv_client_server_addr(c, 1), cl->addrs[0]);
	assert_int_equal(embkv_table_locate(c, "half", NULL, NULL, 0), 0);
	embkv_client_destroy(c);

	assert_int_equal(ctl(out, cl->addrs[0], "drop-table half"), 0);
	assert_int_equal(client(cl->addrs, 2, 0, &c), 0);
	assert_int_equal(embkv_table_locate(c, "half", NULL, st, 2),
			 EMBKV_ENOTABLE);
	embkv_client_destroy(c);
	free(out);
}

/* Servers of two clusters given together. */
static void test_two_clusters(void **state)
{
	struct state *s = *state;
	const char *mixed[2];
	struct embkv_client *c = NULL;
	char *out = malloc(OUT_MAX), both[CMD_MAX];

	assert_non_null(out);
	start(&s->cl[0], 2);
	start(&s->cl[1], 1);
	mixed[0] = s->cl[0].addrs[0];
	mixed[1] = s->cl[1].addrs[0];
	assert_int_equal(client(mixed, 2, 0, &c), EMBKV_ECLUSTER);
	assert_int_equal(client(mixed, 2, EMBKV_CLIENT_ALLOW_DOWN, &c),
			 EMBKV_ECLUSTER);
	assert_null(c);
	snprintf(both, sizeof(both), "%s,%s", mixed[0], mixed[1]);
	assert_int_equal(ctl(out, both, "create-table x"), 1);
	assert_has(out, embkv_strerror(EMBKV_ECLUSTER));
	free(out);
}

/* A table on one member of two: the other restarted empty. */
static void test_inconsistent(void **state)
{
	struct state *s = *state;
	struct embkv_test_cluster *cl = &s->cl[0];
	char *out = malloc(OUT_MAX), all[PEERS_MAX], line[CMD_MAX];
	struct embkv_table_attr ta, got;
	struct embkv_client *c;
	int st[2];

	assert_non_null(out);
	start(cl, 2);
	joined(cl, all, sizeof(all));
	assert_int_equal(client(cl->addrs, 2, 0, &c), 0);
	table(&ta, "part");
	assert_int_equal(embkv_table_create_remote(c, &ta), 0);
	assert_int_equal(embkv_table_create_remote(c, &ta),
			 EMBKV_ETABLEEXISTS);
	embkv_client_destroy(c);
	restart(cl, 1, NULL);

	assert_int_equal(client(cl->addrs, 2, 0, &c), 0);
	assert_int_equal(embkv_table_create_remote(c, &ta),
			 EMBKV_EINCONSISTENT);
	assert_int_equal(embkv_table_locate(c, "part", &got, st, 2),
			 EMBKV_EINCONSISTENT);
	assert_int_equal(st[0], 0);
	assert_int_equal(st[1], EMBKV_ENOTABLE);
	assert_int_equal(got.capacity, ta.capacity);
	/* create did not make the missing part afresh */
	assert_int_equal(embkv_table_locate(c, "part", NULL, st, 2),
			 EMBKV_EINCONSISTENT);
	assert_int_equal(st[1], EMBKV_ENOTABLE);

	assert_int_equal(ctl(out, all, "create-table part --dim 8 "
			     "--capacity 4096"), 1);
	assert_has(out, embkv_strerror(EMBKV_EINCONSISTENT));
	snprintf(line, sizeof(line), "%s: missing", cl->addrs[1]);
	assert_has(out, line);
	assert_int_equal(ctl(out, cl->addrs[1], "tables"), 1);
	assert_has(out, "INCONSISTENT");
	assert_int_equal(ctl(out, all, "--json tables"), 1);
	snprintf(line, sizeof(line), "\"state\":\"inconsistent\","
		 "\"missing_on\":[\"%s\"]", cl->addrs[1]);
	assert_has(out, line);

	/* drop where it is, then create works */
	assert_int_equal(embkv_table_drop_remote(c, "part"), 0);
	assert_int_equal(embkv_table_drop_remote(c, "part"), EMBKV_ENOTABLE);
	assert_int_equal(embkv_table_create_remote(c, &ta), 0);
	assert_int_equal(embkv_table_locate(c, "part", NULL, st, 2), 0);
	embkv_client_destroy(c);
	free(out);
}

/* A create that one member refuses (its memory limit) is undone. */
static void test_create_undone(void **state)
{
	static const char *const small[] = { "--memory-limit", "4M", NULL };
	struct state *s = *state;
	struct embkv_test_cluster *cl = &s->cl[0];
	struct embkv_table_attr ta;
	struct embkv_client *c;
	int st[2], rc;

	start(cl, 2);
	restart(cl, 1, small);
	assert_int_equal(client(cl->addrs, 2, 0, &c), 0);
	table(&ta, "big");
	ta.dim = 64;
	ta.capacity = 1u << 18; /* 36 MiB a server: over server 1's limit */
	rc = embkv_table_create_remote(c, &ta);
	assert_int_equal(rc, -ENOMEM);
	assert_int_equal(embkv_table_locate(c, "big", NULL, st, 2),
			 EMBKV_ENOTABLE);
	assert_int_equal(st[0], EMBKV_ENOTABLE);
	assert_int_equal(st[1], EMBKV_ENOTABLE);
	ta.capacity = 256; /* fits everywhere */
	assert_int_equal(embkv_table_create_remote(c, &ta), 0);
	embkv_client_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_member_down, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_learned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_clusters, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_inconsistent, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_create_undone, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
