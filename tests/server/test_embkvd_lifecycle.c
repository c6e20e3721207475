/*
 * embkvd as a process: the command line (bad flags exit 2, --help 0,
 * --port-file), authentication with --token-file, the epoch rule,
 * --max-conns, the connection count returning to its baseline, a clean
 * SIGTERM shutdown (exit 0; under ASan also: no leak) with clients still
 * connected, and table identity across a restart (a new table that gets
 * an old table's id refuses the old table's uid).
 *
 * Runs over TCP, or over rdma:// with the argument rdma://HOST (harness.h).
 * TCP-only: the command line and --port-file/--data-dir tests (no
 * connection at all: nothing transport-specific).
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
#include <unistd.h>
#include "tests/server/harness.h"

#define TOKEN "correct horse battery staple"

static char tmpdir[64];

static int group_setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/embkvd-test-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_in_tmp(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void test_bad_flags_exit_2(void **state)
{
	static const char *const bad[][8] = {
		{ "--bogus", NULL },
		{ "--threads", "0", NULL },
		{ "--threads", "4x", NULL },
		{ "--io-threads", "-1", NULL },
		{ "--listen", "127.0.0.1:7000", NULL },
		{ "--listen", "tcp://127.0.0.1:70000", NULL },
		{ "--listen", "tcp://:7000", NULL },
		{ "--memory-limit", "12Q", NULL },
		{ "--memory-limit", "", NULL },
		{ "--epoch", "0", NULL },
		{ "--max-conns", "0", NULL },
		{ "--peers", "tcp://a:1,tcp://b:2", NULL },
		{ "--self", "0", NULL },
		{ "--peers", "tcp://a:1,tcp://b:2", "--self", "2", NULL },
		{ "--peers", "tcp://a:1,b:2", "--self", "0", NULL },
		{ "--token-file", "/nonexistent/token", NULL },
		{ "--default-table", "no spaces", NULL },
		{ "--listen", NULL },
		{ "positional", NULL },
	};
	static const char *const help[] = { "--help", NULL };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = th_run_status(bad[i]);

		if (st != 2)
			fprintf(stderr, "flags #%zu (%s): exit %d\n", i,
				bad[i][0], st);
		assert_int_equal(st, 2);
	}
	assert_int_equal(th_run_status(help), 0);
}

static void test_port_file_and_data_dir(void **state)
{
	char port_file[128], data_dir[128], buf[16] = { 0 };
	const char *args[] = { "--port-file", port_file, "--data-dir",
			       data_dir, NULL };
	struct th_server srv;
	FILE *f;

	(void)state;
	path_in_tmp(port_file, sizeof(port_file), "port");
	path_in_tmp(data_dir, sizeof(data_dir), "data/nested");
	assert_int_equal(th_start(&srv, args), 0);
	f = fopen(port_file, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_int_equal(atoi(buf), srv.port);
	assert_int_equal(access(data_dir, W_OK), 0);
	assert_int_equal(th_stop(&srv), 0);
}

static void start_with_token(struct th_server *srv)
{
	char token_file[128];
	const char *args[] = { "--token-file", token_file, NULL };
	FILE *f;

	path_in_tmp(token_file, sizeof(token_file), "token");
	f = fopen(token_file, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", TOKEN);
	fclose(f);
	assert_int_equal(th_start(srv, args), 0);
}

static void expect_refused(int fd, int status)
{
	struct th_frame f;

	assert_int_equal(th_recv(fd, &f), 0);
	assert_int_equal(th_error_status(&f), status);
	th_frame_free(&f);
	assert_true(th_closed_within(fd, TH_TIMEOUT_MS));
}

static void test_auth(void **state)
{
	struct embkv_table_attr a;
	struct th_server srv;
	struct th_frame f;
	uint8_t big[1024] = { 0 };
	uint64_t fails = 0;
	struct embkv_wire_table_ref id;
	int fd;

	(void)state;
	start_with_token(&srv);

	/* Unauthenticated: refused before any table operation. */
	fd = th_connect(&srv);
	assert_int_equal(th_send(fd, EMBKV_WIRE_OP_TABLE_LIST, 1, 0, NULL, 0),
			 0);
	expect_refused(fd, EMBKV_ETOKENREQUIRED);
	th_close(fd);
	fd = th_connect(&srv);
	th_attr(&a, "t", 4, 4);
	assert_int_equal(th_create(fd, &a, &id), EMBKV_ETOKENREQUIRED);
	th_close(fd);

	/* Wrong token. */
	fd = th_connect(&srv);
	assert_int_equal(th_auth(fd, "wrong horse"), EMBKV_EAUTH);
	assert_true(th_closed_within(fd, TH_TIMEOUT_MS));
	th_close(fd);

	/* AUTH before HELLO. */
	fd = th_connect(&srv);
	assert_int_equal(th_send(fd, EMBKV_WIRE_OP_AUTH, 1, 0, big,
				 EMBKV_WIRE_AUTH_SIZE), 0);
	expect_refused(fd, EMBKV_EAUTH);
	th_close(fd);

	/* A big body before authentication is not even read. */
	fd = th_connect(&srv);
	assert_int_equal(th_send(fd, EMBKV_WIRE_OP_HELLO, 1, 0, big,
				 sizeof(big)), 0);
	expect_refused(fd, EMBKV_ELIMIT);
	th_close(fd);

	/* Right token: everything works. */
	fd = th_connect(&srv);
	assert_int_equal(th_auth(fd, TOKEN), 0);
	assert_int_equal(th_call(fd, EMBKV_WIRE_OP_TABLE_LIST, 0, NULL, 0, &f),
			 0);
	th_frame_free(&f);
	assert_int_equal(th_create(fd, &a, &id), 0);
	assert_int_equal(th_stat(fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_AUTH_FAILURES, &fails), 0);
	assert_true(fails >= 2);
	assert_int_equal(th_wait_conns(fd, 1, TH_TIMEOUT_MS), 0);
	th_close(fd);
	assert_int_equal(th_stop(&srv), 0);
}

static void test_no_token_server_refuses_auth(void **state)
{
	struct th_server srv;
	int fd;

	(void)state;
	assert_int_equal(th_start(&srv, NULL), 0);
	fd = th_connect(&srv);
	assert_int_equal(th_auth(fd, TOKEN), EMBKV_ETOKENUNEXPECTED);
	th_close(fd);
	assert_int_equal(th_stop(&srv), 0);
}

static void test_stale_epoch(void **state)
{
	static const char *const args[] = { "--epoch", "5", "--threads", "2",
					    NULL };
	struct embkv_wire_pull_req m = { .dim = 4, .n = 3,
					 .mode = EMBKV_WIRE_PULL_TRAIN };
	struct embkv_table_attr a;
	struct th_server srv;
	struct th_frame f;
	uint64_t keys[3] = { 1, 2, 3 }, rows = 1, stale = 0;
	uint8_t body[EMBKV_WIRE_PULL_REQ_KEYS + 3 * 8];
	float out[12];
	struct embkv_wire_table_ref id;
	int fd;

	(void)state;
	memset(out, 0, sizeof(out));
	assert_int_equal(th_start(&srv, args), 0);
	fd = th_connect(&srv);
	th_attr(&a, "epochs", 4, 8);
	assert_int_equal(th_create(fd, &a, &id), 0);
	m.table_id = id.table_id;
	m.uid = id.uid;
	m.keys = keys;
	assert_int_equal(embkv_wire_pull_req_encode(&m, body, sizeof(body)),
			 0);
	for (uint64_t epoch = 0; epoch < 8; epoch++) {
		if (epoch == 5)
			continue;
		assert_int_equal(th_send(fd, EMBKV_WIRE_OP_PULL, 10 + epoch,
					 epoch, body, sizeof(body)), 0);
		assert_int_equal(th_recv(fd, &f), 0);
		assert_int_equal(f.h.request_id, 10 + epoch);
		assert_int_equal(th_error_status(&f), EMBKV_ESTALE);
		assert_int_equal(f.h.epoch, 5); /* the server's, to refresh */
		th_frame_free(&f);
	}
	assert_int_equal(th_rows(fd, EMBKV_WIRE_OP_ASSIGN, id, 4, 3, keys, out,
				 NULL), EMBKV_ESTALE); /* th_rows sends epoch 1 */
	assert_int_equal(th_stat(fd, id.table_id, EMBKV_WIRE_STAT_ROWS,
				 &rows), 0);
	assert_int_equal(rows, 0); /* nothing applied */
	assert_int_equal(th_stat(fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_STALE_EPOCH, &stale), 0);
	assert_int_equal(stale, 8);
	assert_int_equal(th_pull(fd, 5, id, 4, 3, keys, EMBKV_WIRE_PULL_TRAIN,
				 out, NULL), 0);
	assert_int_equal(th_stat(fd, id.table_id, EMBKV_WIRE_STAT_ROWS,
				 &rows), 0);
	assert_int_equal(rows, 3);
	th_close(fd);
	assert_int_equal(th_stop(&srv), 0);
}

/*
 * Restart: embkvd numbers tables from 1 again, so a table created after a
 * restart gets the id a table of the previous run had. Requests with the
 * old table's id and uid (a client that kept its handle) are refused with
 * EMBKV_ENOTABLE, and the new table keeps exactly the rows its own client
 * stored.
 */
static void test_restart_same_id(void **state)
{
	enum { RN = 48, RDIM = 8 };
	static const char *const args[] = { "--threads", "2", NULL };
	struct embkv_wire_table_ref old, cur;
	struct embkv_table_attr a;
	struct th_server srv;
	uint64_t keys[RN], rows = 0;
	float vals[RN * RDIM], out[RN * RDIM];
	uint8_t found[RN];
	uint16_t port, rdma_port;
	int fd, rc;

	(void)state;
	for (uint32_t i = 0; i < RN; i++)
		keys[i] = 77 + 13 * i;
	for (uint32_t i = 0; i < RN * RDIM; i++)
		vals[i] = (float)i * 0.125f;
	assert_int_equal(th_start(&srv, args), 0);
	port = srv.port;
	rdma_port = srv.rdma_port;
	fd = th_connect(&srv);
	assert_true(fd >= 0);
	th_attr(&a, "before", RDIM, 8);
	assert_int_equal(th_create(fd, &a, &old), 0);
	assert_int_equal(th_rows(fd, EMBKV_WIRE_OP_ASSIGN, old, RDIM, RN, keys,
				 vals, NULL), 0);
	th_close(fd);
	assert_int_equal(th_stop(&srv), 0);

	/* Same port; the listener may take a moment to be free again. */
	for (int tries = 0; tries < 50; tries++) {
		rc = th_start_on(&srv, port, rdma_port, args);
		if (!rc)
			break;
		usleep(100 * 1000);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(srv.port, port);
	fd = th_connect(&srv);
	assert_true(fd >= 0);
	th_attr(&a, "after", RDIM, 8); /* another table, same dim */
	assert_int_equal(th_create(fd, &a, &cur), 0);
	assert_int_equal(cur.table_id, old.table_id);
	assert_true(cur.uid != old.uid);
	for (uint32_t i = 0; i < RN * RDIM; i++)
		vals[i] = 1000.0f - (float)i;
	assert_int_equal(th_rows(fd, EMBKV_WIRE_OP_ASSIGN, cur, RDIM, RN, keys,
				 vals, NULL), 0);

	assert_int_equal(th_all_refused(fd, old, RDIM, RN, keys), 0);

	assert_int_equal(th_pull(fd, 1, cur, RDIM, RN, keys,
				 EMBKV_WIRE_PULL_INFER, out, found), 0);
	assert_memory_equal(out, vals, sizeof(out));
	for (uint32_t i = 0; i < RN; i++)
		assert_int_equal(found[i], 1);
	assert_int_equal(th_stat(fd, cur.table_id, EMBKV_WIRE_STAT_ROWS, &rows),
			 0);
	assert_int_equal(rows, RN);
	th_close(fd);
	assert_int_equal(th_stop(&srv), 0);
}

static void test_conns_baseline_and_max(void **state)
{
	static const char *const args[] = { "--max-conns", "8",
					    "--io-threads", "3", NULL };
	struct th_server srv;
	int fds[12], extra, probe;

	(void)state;
	assert_int_equal(th_start(&srv, args), 0);
	probe = th_connect(&srv);
	assert_int_equal(th_wait_conns(probe, 1, TH_TIMEOUT_MS), 0);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 7; i++) {
			fds[i] = th_connect(&srv);
			assert_true(fds[i] >= 0);
		}
		assert_int_equal(th_wait_conns(probe, 8, TH_TIMEOUT_MS), 0);
		/* Over --max-conns: over TCP accepted by the kernel, closed
		 * by us; over rdma rejected (or closed) by us. */
		extra = th_connect(&srv);
		if (extra >= 0 || !th_rdma()) {
			assert_true(extra >= 0);
			assert_true(th_closed_within(extra, TH_TIMEOUT_MS));
			th_close(extra);
		}
		for (int i = 0; i < 7; i++)
			th_close(fds[i]);
		assert_int_equal(th_wait_conns(probe, 1, TH_TIMEOUT_MS), 0);
	}
	th_close(probe);
	assert_int_equal(th_stop(&srv), 0);
}

static void test_sigterm_with_clients(void **state)
{
	static const char *const args[] = { "--default-table", "emb",
					    "--threads", "2", NULL };
	/* rdma: a small "emb" instead of the 300 MB default table */
	static const char *const rdma_args[] = { "--threads", "2", NULL };
	struct embkv_wire_table_info info;
	struct embkv_table_attr a;
	struct embkv_wire_table_ref id;
	struct th_server srv;
	uint8_t half[EMBKV_WIRE_HDR_SIZE / 2] = { 'E', 'M' };
	uint64_t keys[512];
	float *out = malloc(sizeof(float) * 512 * 64);
	int idle, busy, partial;

	(void)state;
	assert_non_null(out);
	assert_int_equal(th_start(&srv, th_rdma() ? rdma_args : args), 0);
	idle = th_connect(&srv);
	busy = th_connect(&srv);
	partial = th_connect(&srv);
	if (th_rdma()) {
		th_attr(&a, "emb", 64, 16);
		assert_int_equal(th_create(busy, &a, &id), 0);
	}
	assert_int_equal(th_open(busy, "emb", &info), 0);
	for (int i = 0; i < 512; i++)
		keys[i] = (uint64_t)i * 7919;
	assert_int_equal(th_pull(busy, 1, th_ref(&info), 64, 512, keys,
				 EMBKV_WIRE_PULL_TRAIN, out, NULL), 0);
	/* half a frame: a stream only (a SEND is whole) */
	if (!th_rdma())
		assert_int_equal(th_send_raw(partial, half, sizeof(half)), 0);
	assert_int_equal(th_wait_conns(busy, 3, TH_TIMEOUT_MS), 0);
	assert_int_equal(th_stop(&srv), 0);
	assert_true(th_closed_within(idle, TH_TIMEOUT_MS));
	th_close(idle);
	th_close(busy);
	th_close(partial);
	free(out);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_no_token_server_refuses_auth),
		cmocka_unit_test(test_stale_epoch),
		cmocka_unit_test(test_restart_same_id),
		cmocka_unit_test(test_conns_baseline_and_max),
		cmocka_unit_test(test_sigterm_with_clients),
	};
	const struct CMUnitTest tcp_only[] = {
		cmocka_unit_test(test_bad_flags_exit_2),
		cmocka_unit_test(test_port_file_and_data_dir),
	};
	int failed;

	if (th_transport_init(argc, argv))
		return 2;
	failed = cmocka_run_group_tests_name("lifecycle", tests, group_setup,
					     group_teardown);
	if (!th_rdma())
		failed += cmocka_run_group_tests_name("lifecycle, tcp only",
						      tcp_only, group_setup,
						      group_teardown);
	return failed;
}
