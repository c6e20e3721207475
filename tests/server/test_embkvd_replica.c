/*
 * Serving replicas (issue 13 item 3): a primary embkvd trained by a
 * thread, a replica embkvd --replica-of following it. What must hold:
 * after the trainer stops and the replica reports lag 0, every row of the
 * replica equals the primary's bitwise (keys erased on the primary are
 * gone on the replica too); a replica that fell further behind than the
 * feed's ring (SIGSTOP) copies the partitions again and still converges;
 * a replica killed with SIGKILL and restarted catches up; updates sent to
 * the replica are refused with EMBKV_EREADONLY and a train pull there
 * inserts nothing. TCP only: it stops and kills processes.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "tests/server/harness.h"

#define TABLE "emb"
#define DIM 8u
#define PARTS 8u
#define KEYS 6000u          /* key space of the trainer */
#define BATCH 256u
#define LOG_ROWS "1024"     /* the primary's feed ring, per partition */

struct fixture {
	struct th_server prim, rep;
	bool rep_up;
	int pfd, rfd;
	struct embkv_wire_table_ref pref, rref;
	char primary_url[64];
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	nanosleep(&ts, NULL);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* One training step on the primary: a train pull (inserts) and a push of
 * random gradients to BATCH random keys, sometimes an erase. */
static int train_step(int fd, struct embkv_wire_table_ref ref, uint64_t *seed)
{
	uint64_t keys[BATCH];
	float vals[BATCH * DIM];
	struct embkv_wire_count_reply cr;
	int rc;

	for (uint32_t i = 0; i < BATCH; i++) {
		/* distinct keys: the client sums duplicates, the wire wants
		 * distinct ones for ASSIGN */
		keys[i] = (rnd(seed) % (KEYS / BATCH)) * BATCH + i;
		for (uint32_t d = 0; d < DIM; d++)
			vals[i * DIM + d] =
				(float)((int64_t)(rnd(seed) % 2001) - 1000) /
				1000.0f;
	}
	rc = th_pull(fd, 1, ref, DIM, BATCH, keys, EMBKV_WIRE_PULL_TRAIN,
		     vals, NULL);
	if (!rc)
		rc = th_rows(fd, EMBKV_WIRE_OP_PUSH, ref, DIM, BATCH, keys,
			     vals, &cr);
	if (!rc && rnd(seed) % 8 == 0)
		rc = th_erase(fd, ref, 16, keys, &cr);
	return rc;
}

struct trainer {
	struct fixture *f;
	volatile bool stop;
	int rc;
	uint64_t steps;
};

static void *trainer_main(void *arg)
{
	struct trainer *t = arg;
	int fd = th_connect(&t->f->prim);
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	if (fd < 0) {
		t->rc = fd;
		return NULL;
	}
	while (!t->stop && !t->rc) {
		t->rc = train_step(fd, t->f->pref, &seed);
		t->steps++;
	}
	th_close(fd);
	return NULL;
}

static int rep_start(struct fixture *f)
{
	const char *args[] = { "--replica-of", TABLE, "--primary-servers",
			       f->primary_url, "--threads", "2", NULL };
	struct embkv_wire_table_info info;
	int rc;

	rc = th_start(&f->rep, args);
	if (rc)
		return rc;
	f->rep_up = true;
	f->rfd = th_connect(&f->rep);
	if (f->rfd < 0)
		return f->rfd;
	/* the follower creates the table once it reached the primary */
	for (int i = 0; i < 500; i++) {
		rc = th_open(f->rfd, TABLE, &info);
		if (rc != EMBKV_ENOTABLE)
			break;
		sleep_ms(20);
	}
	if (!rc)
		f->rref = th_ref(&info);
	return rc;
}

/* Polls the replica until it reports lag 0 (updates and ms). */
static int wait_caught_up(struct fixture *f, unsigned ms)
{
	uint64_t n = 1, lag_ms = 1;

	for (unsigned waited = 0; waited < ms; waited += 20) {
		if (!th_stat(f->rfd, f->rref.table_id,
			     EMBKV_WIRE_STAT_REPL_LAG_UPDATES, &n) &&
		    !th_stat(f->rfd, f->rref.table_id,
			     EMBKV_WIRE_STAT_REPL_LAG_MS, &lag_ms) &&
		    !n && !lag_ms)
			return 0;
		sleep_ms(20);
	}
	fprintf(stderr, "replica still behind: %llu updates, %llu ms\n",
		(unsigned long long)n, (unsigned long long)lag_ms);
	return -ETIMEDOUT;
}

/* Every key of the trainer's space (and some more): same presence, same
 * row bits on both. Returns the rows compared. */
static uint32_t compare_all(struct fixture *f)
{
	static uint64_t keys[KEYS + 100];
	static float a[(KEYS + 100) * DIM], b[(KEYS + 100) * DIM];
	static uint8_t fa[KEYS + 100], fb[KEYS + 100];
	uint32_t n = KEYS + 100, rows = 0;

	for (uint32_t i = 0; i < n; i++)
		keys[i] = i;
	assert_int_equal(th_pull(f->pfd, 1, f->pref, DIM, n, keys,
				 EMBKV_WIRE_PULL_INFER, a, fa), 0);
	assert_int_equal(th_pull(f->rfd, 1, f->rref, DIM, n, keys,
				 EMBKV_WIRE_PULL_INFER, b, fb), 0);
	for (uint32_t i = 0; i < n; i++) {
		if (fa[i] != fb[i] ||
		    (fa[i] && memcmp(a + (size_t)i * DIM, b + (size_t)i * DIM,
				     DIM * sizeof(float)))) {
			fprintf(stderr, "key %u: primary %s, replica %s, rows "
				"%s\n", i, fa[i] ? "has it" : "has not",
				fb[i] ? "has it" : "has not",
				fa[i] && fb[i] ? "differ" : "-");
			fail();
		}
		rows += fa[i];
	}
	return rows;
}

static int setup(void **state)
{
	static const char *const args[] = { "--threads", "2",
					    "--repl-log-rows", LOG_ROWS, NULL };
	struct fixture *f = calloc(1, sizeof(*f));
	struct embkv_table_attr a;

	assert_non_null(f);
	f->rfd = -1;
	assert_int_equal(th_start(&f->prim, args), 0);
	snprintf(f->primary_url, sizeof(f->primary_url),
		 "tcp://127.0.0.1:%u", f->prim.port);
	f->pfd = th_connect(&f->prim);
	assert_true(f->pfd >= 0);
	th_attr(&a, TABLE, DIM, PARTS);
	a.capacity = 100000;
	a.opt.type = EMBKV_OPT_ADAGRAD;   /* optimizer state stays home */
	a.opt.lr = 0.05f;
	assert_int_equal(th_create(f->pfd, &a, &f->pref), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	th_close(f->pfd);
	th_close(f->rfd);
	if (f->rep_up)
		th_stop(&f->rep);
	th_stop(&f->prim);
	free(f);
	return 0;
}

static void run_trainer(struct fixture *f, unsigned ms, bool check_refusal)
{
	struct trainer t = { .f = f };
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, trainer_main, &t), 0);
	if (check_refusal) {
		uint64_t keys[4] = { 1, 2, 3, 900000001 };
		float v[4 * DIM] = { 0 }, out[4 * DIM];
		uint8_t found[4] = { 1, 1, 1, 1 }, found2[1] = { 1 };
		struct embkv_wire_count_reply cr;
		struct th_frame fr;
		char body[160];
		int rc[8], len;
		bool snap_asked = false;

		sleep_ms(ms / 2);
		/* updates to the replica: refused, nothing applied */
		rc[0] = th_rows(f->rfd, EMBKV_WIRE_OP_PUSH, f->rref, DIM, 4,
				keys, v, &cr);
		rc[1] = th_rows(f->rfd, EMBKV_WIRE_OP_ASSIGN, f->rref, DIM, 4,
				keys, v, &cr);
		rc[2] = th_rows(f->rfd, EMBKV_WIRE_OP_ACCUMULATE, f->rref, DIM,
				4, keys, v, &cr);
		rc[3] = th_erase(f->rfd, f->rref, 4, keys, &cr);
		/* a train pull of a key the primary never had inserts
		 * nothing on the replica */
		rc[4] = th_pull(f->rfd, 1, f->rref, DIM, 4, keys,
				EMBKV_WIRE_PULL_TRAIN, out, found);
		rc[5] = th_pull(f->rfd, 1, f->rref, DIM, 1, &keys[3],
				EMBKV_WIRE_PULL_INFER, out, found2);
		/* a pull of changes with a made-up feed asks for a
		 * snapshot; a malformed one is refused */
		len = snprintf(body, sizeof(body),
			       "{\"uid\":\"%016llx\",\"parts\":[0],"
			       "\"feeds\":[7],\"since\":[1]}",
			       (unsigned long long)f->pref.uid);
		rc[6] = th_call(f->pfd, EMBKV_WIRE_OP_REPL_PULL, 1, body,
				(uint32_t)len, &fr);
		if (!rc[6]) {
			snap_asked = memmem(fr.body, fr.h.body_len,
					    "\"snapshot\":true", 15) != NULL;
			th_frame_free(&fr);
		}
		len = snprintf(body, sizeof(body),
			       "{\"uid\":\"%016llx\",\"parts\":[0, 99],"
			       "\"feeds\":[7, 7],\"since\":[1, 1]}",
			       (unsigned long long)f->pref.uid);
		rc[7] = th_call(f->pfd, EMBKV_WIRE_OP_REPL_PULL, 1, body,
				(uint32_t)len, &fr);
		if (!rc[7])
			th_frame_free(&fr);
		sleep_ms(ms / 2);
		t.stop = true;
		pthread_join(th, NULL);
		for (int i = 0; i < 4; i++)
			assert_int_equal(rc[i], EMBKV_EREADONLY);
		assert_int_equal(rc[4], 0);
		assert_int_equal(found[3], 0);
		assert_int_equal(rc[5], 0);
		assert_int_equal(found2[0], 0);
		assert_int_equal(rc[6], 0);
		assert_true(snap_asked);
		assert_int_equal(rc[7], -EINVAL);
	} else {
		sleep_ms(ms);
		t.stop = true;
		pthread_join(th, NULL);
	}
	assert_int_equal(t.rc, 0);
	assert_true(t.steps > 0);
}

/* The replica follows a trainer; once it drained, rows equal bitwise. */
static void test_follow(void **state)
{
	struct fixture *f = *state;
	uint64_t seed = 42;

	/* rows before the replica exists come in its first copy */
	for (int i = 0; i < 20; i++)
		assert_int_equal(train_step(f->pfd, f->pref, &seed), 0);
	assert_int_equal(rep_start(f), 0);
	run_trainer(f, 1500, true);
	assert_int_equal(wait_caught_up(f, 20000), 0);
	assert_true(compare_all(f) > 1000);
}

/* Further behind than the ring: the partitions are copied again (and the
 * keys erased meanwhile are swept); still bitwise equal. */
static void test_overrun(void **state)
{
	struct fixture *f = *state;
	uint64_t snaps0 = 0, snaps1 = 0, seed = 7;
	struct embkv_wire_count_reply cr;
	uint64_t gone[64];

	assert_int_equal(rep_start(f), 0);
	run_trainer(f, 300, false);
	assert_int_equal(wait_caught_up(f, 20000), 0);
	compare_all(f);
	assert_int_equal(th_stat(f->rfd, f->rref.table_id,
				 EMBKV_WIRE_STAT_REPL_SNAPSHOTS, &snaps0), 0);
	assert_int_equal(kill(f->rep.pid, SIGSTOP), 0);
	/* well over 1024 updates per partition, and erases */
	for (int i = 0; i < 200; i++)
		assert_int_equal(train_step(f->pfd, f->pref, &seed), 0);
	for (uint32_t i = 0; i < 64; i++)
		gone[i] = i * 7;
	assert_int_equal(th_erase(f->pfd, f->pref, 64, gone, &cr), 0);
	assert_int_equal(kill(f->rep.pid, SIGCONT), 0);
	for (int i = 0; i < 3000 && snaps1 <= snaps0; i++) {
		assert_int_equal(th_stat(f->rfd, f->rref.table_id,
					 EMBKV_WIRE_STAT_REPL_SNAPSHOTS,
					 &snaps1), 0);
		sleep_ms(10);
	}
	if (snaps1 <= snaps0) {
		uint64_t u = 0, m = 0;

		th_stat(f->rfd, f->rref.table_id,
			EMBKV_WIRE_STAT_REPL_LAG_UPDATES, &u);
		th_stat(f->rfd, f->rref.table_id, EMBKV_WIRE_STAT_REPL_LAG_MS,
			&m);
		fprintf(stderr, "no new copy after 30 s: snapshots %llu, lag "
			"%llu updates, %llu ms\n", (unsigned long long)snaps1,
			(unsigned long long)u, (unsigned long long)m);
	}
	assert_true(snaps1 > snaps0);
	assert_int_equal(wait_caught_up(f, 20000), 0);
	compare_all(f);
}

/* Killed and restarted, the replica catches up. */
static void test_restart(void **state)
{
	struct fixture *f = *state;
	int st;

	assert_int_equal(rep_start(f), 0);
	run_trainer(f, 500, false);
	assert_int_equal(wait_caught_up(f, 20000), 0);
	th_close(f->rfd);
	f->rfd = -1;
	assert_int_equal(kill(f->rep.pid, SIGKILL), 0);
	assert_int_equal(waitpid(f->rep.pid, &st, 0), f->rep.pid);
	f->rep_up = false;
	close(f->rep.out_fd);
	run_trainer(f, 500, false);
	assert_int_equal(rep_start(f), 0);
	run_trainer(f, 500, false);
	assert_int_equal(wait_caught_up(f, 20000), 0);
	assert_true(compare_all(f) > 1000);
}

/* Dropped on the replica by an operator: the follower creates it again
 * and copies it whole. */
static void test_dropped_here(void **state)
{
	struct fixture *f = *state;
	struct embkv_wire_table_info info;
	uint64_t seed = 3;
	int rc = EMBKV_ENOTABLE;

	for (int i = 0; i < 20; i++)
		assert_int_equal(train_step(f->pfd, f->pref, &seed), 0);
	assert_int_equal(rep_start(f), 0);
	assert_int_equal(wait_caught_up(f, 20000), 0);
	assert_int_equal(th_drop(f->rfd, TABLE), 0);
	for (int i = 0; i < 500; i++) {
		rc = th_open(f->rfd, TABLE, &info);
		if (!rc && th_ref(&info).uid != f->rref.uid)
			break;
		sleep_ms(20);
	}
	assert_int_equal(rc, 0);
	assert_int_not_equal(th_ref(&info).uid, f->rref.uid);
	f->rref = th_ref(&info);
	assert_int_equal(wait_caught_up(f, 20000), 0);
	assert_true(compare_all(f) > 1000);
}

/* With --token-file on both, the replica authenticates to the primary
 * with its own token. */
static void test_token(void **state)
{
	char tok[] = "/tmp/embkv-replica-token.XXXXXX", url[64];
	const char *pargs[] = { "--token-file", tok, NULL };
	const char *rargs[] = { "--token-file", tok, "--replica-of", TABLE,
				"--primary-servers", url, NULL };
	struct th_server prim, rep;
	struct embkv_wire_table_ref pref, rref = { 0 };
	struct embkv_wire_table_info info;
	struct embkv_wire_count_reply cr;
	struct embkv_table_attr a;
	uint64_t key = 42, lag = 1, lag2 = 0;
	float v[DIM] = { 1.5f, -2, 3, 4, 5, 6, 7, 8 }, out[DIM];
	uint8_t found = 0;
	int fd, rfd, rc = -1, tfd = mkstemp(tok);

	(void)state;
	assert_true(tfd >= 0);
	assert_int_equal(write(tfd, "replica-secret\n", 15), 15);
	close(tfd);
	assert_int_equal(th_start(&prim, pargs), 0);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", prim.port);
	fd = th_connect(&prim);
	assert_int_equal(th_auth(fd, "replica-secret"), 0);
	th_attr(&a, TABLE, DIM, PARTS);
	assert_int_equal(th_create(fd, &a, &pref), 0);
	assert_int_equal(th_rows(fd, EMBKV_WIRE_OP_ASSIGN, pref, DIM, 1, &key,
				 v, &cr), 0);
	assert_int_equal(th_start(&rep, rargs), 0);
	rfd = th_connect(&rep);
	assert_int_equal(th_auth(rfd, "replica-secret"), 0);
	for (int i = 0; i < 500 && (rc || lag); i++) {
		sleep_ms(20);
		rc = th_open(rfd, TABLE, &info);
		if (rc)
			continue;
		rref = th_ref(&info);
		if (th_stat(rfd, rref.table_id,
			    EMBKV_WIRE_STAT_REPL_LAG_UPDATES, &lag) ||
		    th_stat(rfd, rref.table_id, EMBKV_WIRE_STAT_REPL_LAG_MS,
			    &lag2))
			lag = 1;
		lag += lag2;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(lag, 0);
	assert_int_equal(th_pull(rfd, 1, rref, DIM, 1, &key,
				 EMBKV_WIRE_PULL_INFER, out, &found), 0);
	assert_int_equal(found, 1);
	assert_memory_equal(out, v, sizeof(v));
	th_close(rfd);
	th_close(fd);
	assert_int_equal(th_stop(&rep), 0);
	assert_int_equal(th_stop(&prim), 0);
	unlink(tok);
}

/* Flags that cannot work are refused at start. */
static void test_flags(void **state)
{
	static const char *const no_primary[] = { "--replica-of", TABLE,
						  NULL };
	static const char *const no_table[] = {
		"--primary-servers", "tcp://127.0.0.1:1", NULL };
	static const char *const bad_url[] = {
		"--replica-of", TABLE, "--primary-servers", "127.0.0.1:1",
		NULL };
	static const char *const bad_rows[] = { "--repl-log-rows", "5",
						NULL };
	static const char *const twice[] = {
		"--replica-of", TABLE, "--replica-of", TABLE,
		"--primary-servers", "tcp://127.0.0.1:1", NULL };

	(void)state;
	assert_non_null(strstr(embkv_strerror(EMBKV_EREADONLY), "read-only"));
	assert_int_equal(th_run_status(no_primary), 2);
	assert_int_equal(th_run_status(no_table), 2);
	assert_int_equal(th_run_status(bad_url), 2);
	assert_int_equal(th_run_status(bad_rows), 2);
	assert_int_equal(th_run_status(twice), 2);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_follow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overrun, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dropped_here, setup,
						teardown),
		cmocka_unit_test(test_token),
		cmocka_unit_test(test_flags),
	};

	if (th_transport_init(argc, argv))
		return 2;
	if (th_rdma())
		return 0;
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
