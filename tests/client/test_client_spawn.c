/*
 * The process helper (spawn.h) with fake_embkvd: start three servers in a
 * child process, read their addresses from its "embkvd: listening on"
 * lines, run a client against them, stop with SIGTERM (exit 0); a program
 * that never gets ready is killed at the deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"

#define READY_MS 10000u
#define STOP_MS 5000u

static void test_spawn_fake(void **state)
{
	const char *argv[] = { FAKE_EMBKVD_PATH, "--servers", "3", NULL };
	struct embkv_test_proc p;
	const char *servers[3];
	struct embkv_client_attr a;
	struct embkv_table_attr ta;
	struct embkv_table_handle *t;
	struct embkv_client *c;
	uint64_t keys[3] = { 1, 2, 3 };
	float out[3 * 4];

	(void)state;
	assert_int_equal(embkv_test_proc_start(argv, 3, READY_MS, &p), 0);
	assert_int_equal(p.naddrs, 3);
	for (int i = 0; i < 3; i++) {
		assert_true(strncmp(p.addrs[i], "tcp://127.0.0.1:", 16) == 0);
		servers[i] = p.addrs[i];
	}
	embkv_client_attr_init(&a);
	a.servers = servers;
	a.nservers = 3;
	assert_int_equal(embkv_client_create(&a, &c), 0);
	embkv_table_attr_init(&ta);
	ta.dim = 4;
	assert_int_equal(embkv_table_create_remote(c, &ta), 0);
	assert_int_equal(embkv_table_open(c, ta.name, &t), 0);
	assert_int_equal(embkv_pull(t, 3, keys, out, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	embkv_table_close(t);
	embkv_client_destroy(c);
	assert_int_equal(embkv_test_proc_stop(&p, STOP_MS), 0);
}

static void test_spawn_never_ready(void **state)
{
	const char *argv[] = { "/bin/sleep", "30", NULL };
	const char *gone[] = { "/bin/true", NULL };
	struct embkv_test_proc p;

	(void)state;
	assert_int_equal(embkv_test_proc_start(argv, 1, 200, &p), -ETIMEDOUT);
	assert_int_equal(embkv_test_proc_start(gone, 1, READY_MS, &p),
			 -ECHILD);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spawn_fake),
		cmocka_unit_test(test_spawn_never_ready),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
