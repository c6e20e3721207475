/*
 * Checkpoints end to end (issue 12): real embkvd processes sharing one
 * --data-dir, driven through libembkv's checkpoint calls.
 *
 * What is asserted:
 * - round trip for all four optimizers: after a restore, the rows are
 *   bitwise those of the checkpoint, and the same pushes give bitwise the
 *   rows a cluster that never restored got (optimizer state came back);
 * - kill -9 of every server, restart: the rows come back by themselves;
 * - a checkpoint taken on 3 servers restores onto 1, 2 and 3;
 * - an incremental chain (base + 3, with pushes, erases and evictions in
 *   between) restores to exactly the table's state; a broken chain is
 *   refused and the table is unchanged;
 * - corruption (a flipped byte, a truncated file, two files swapped, a
 *   file of another table) is refused naming the file, table unchanged;
 * - the cut: every push acknowledged before create started is in it;
 * - kill -9 at random moments of create, in a loop: the newest complete
 *   checkpoint always restores, an interrupted one is never used
 *   (EMBKV_TEST_CKPT_KILLS iterations, default 50; EMBKV_TEST_CKPT_SEED
 *   repeats a run's kill timings; EMBKV_TEST_ONLY, a
 *   cmocka test-name glob, runs only the matching tests:
 *   tools/ckpt-crash-loop.sh runs the loop alone for long runs).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"

#define DIM 8u
#define PARTS 8u
#define READY_MS 10000u
#define STOP_MS 10000u

static char g_dir[256];

/* ---- helpers ---------------------------------------------------------- */

static void rm_rf(const char *path)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static void fresh_dir(void)
{
	rm_rf(g_dir);
	assert_int_equal(mkdir(g_dir, 0755), 0);
}

static void start(struct embkv_test_cluster *cl, uint32_t n, bool restore)
{
	const char *extra[] = { "--data-dir", g_dir, "--threads", "2",
				restore ? NULL : "--no-restore", NULL };

	assert_int_equal(embkv_test_cluster_start(EMBKVD_PATH, n, extra,
						  READY_MS, cl), 0);
}

static void stop(struct embkv_test_cluster *cl)
{
	for (uint32_t i = 0; i < cl->n; i++)
		assert_int_equal(embkv_test_proc_stop(&cl->procs[i], STOP_MS),
				 0);
}

static void kill9(struct embkv_test_cluster *cl)
{
	for (uint32_t i = 0; i < cl->n; i++)
		embkv_test_proc_kill(&cl->procs[i]);
}

static struct embkv_client *client(struct embkv_test_cluster *cl)
{
	struct embkv_client_attr ca;
	struct embkv_client *c;

	embkv_client_attr_init(&ca);
	ca.servers = cl->addrs;
	ca.nservers = cl->n;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

static void table_attr(struct embkv_table_attr *a, const char *name,
		       enum embkv_optimizer opt, uint64_t capacity)
{
	embkv_table_attr_init(a);
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->dim = DIM;
	a->partitions = PARTS;
	a->capacity = capacity;
	a->opt.type = opt;
	a->init.type = EMBKV_INIT_UNIFORM;
}

/* Opens name, retrying while its partitions are being restored. */
static struct embkv_table_handle *open_t(struct embkv_client *c,
					 const char *name)
{
	struct embkv_table_handle *t = NULL;
	int rc;

	for (int i = 0; i < 200; i++) {
		rc = embkv_table_open(c, name, &t);
		if (!rc)
			return t;
		usleep(50000);
	}
	fail_msg("cannot open %s: %s", name, embkv_strerror(rc));
	return NULL;
}

/* Infer-mode pull of keys [1, n], retrying while partitions load. */
static void pull_all(struct embkv_table_handle *t, uint32_t n, float *out,
		     uint8_t *found)
{
	uint64_t *keys = malloc(n * sizeof(*keys));
	int rc = 0;

	assert_non_null(keys);
	for (uint32_t i = 0; i < n; i++)
		keys[i] = i + 1;
	for (int i = 0; i < 200; i++) {
		rc = embkv_pull(t, n, keys, out, found, EMBKV_MODE_INFER, NULL);
		if (rc != EMBKV_EUNAVAIL)
			break;
		usleep(50000);
	}
	assert_int_equal(rc, 0);
	free(keys);
}

/* A training step on keys [1, n], round r: a train-mode pull (which
 * creates missing rows, as a trainer's would), then deterministic
 * gradients. */
static void push_round(struct embkv_table_handle *t, uint32_t n, uint32_t r)
{
	uint64_t *keys = malloc(n * sizeof(*keys));
	float *g = malloc((size_t)n * DIM * sizeof(*g));

	assert_non_null(keys);
	assert_non_null(g);
	for (uint32_t i = 0; i < n; i++)
		keys[i] = i + 1;
	assert_int_equal(embkv_pull(t, n, keys, g, NULL, EMBKV_MODE_TRAIN,
				    NULL), 0);
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = i + 1;
		for (uint32_t d = 0; d < DIM; d++)
			g[(size_t)i * DIM + d] = (float)((i * 7 + d * 3 + r * 11)
							 % 17) / 16.0f - 0.5f;
	}
	assert_int_equal(embkv_push(t, n, keys, g, NULL), 0);
	free(keys);
	free(g);
}

static int ckpt_create(struct embkv_client *c, int incremental, uint64_t *id)
{
	struct embkv_ckpt_attr a;
	struct embkv_ckpt_result r;
	int rc;

	embkv_ckpt_attr_init(&a);
	a.incremental = incremental;
	rc = embkv_checkpoint_create(c, &a, &r);
	if (rc)
		print_message("create: %s\n", r.error);
	if (id)
		*id = r.id;
	return rc;
}

static int ckpt_restore(struct embkv_client *c, const char *which,
			char *err, size_t len)
{
	struct embkv_ckpt_result r;
	int rc = embkv_checkpoint_restore(c, which, NULL, &r);

	if (err)
		snprintf(err, len, "%s", r.error);
	return rc;
}

/* The file names of checkpoint id, sorted; returns the count. */
static uint32_t ckpt_files(uint64_t id, char names[][64], uint32_t max)
{
	char path[512];
	DIR *d;
	struct dirent *de;
	uint32_t n = 0;

	snprintf(path, sizeof(path), "%s/ckpt/%llu", g_dir,
		 (unsigned long long)id);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".full") || strstr(de->d_name, ".delta"))
			if (n < max)
				snprintf(names[n++], 64, "%.63s", de->d_name);
	closedir(d);
	qsort(names, n, 64, (int (*)(const void *, const void *))strcmp);
	return n;
}

static void file_path(uint64_t id, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/ckpt/%llu/%s", g_dir, (unsigned long long)id,
		 name);
}

/* ---- round trip, all four optimizers --------------------------------------- */

static void roundtrip(void **state)
{
	static const enum embkv_optimizer opts[] = {
		EMBKV_OPT_SGD, EMBKV_OPT_ADAGRAD, EMBKV_OPT_ADAM, EMBKV_OPT_FTRL
	};
	const uint32_t n = 600;
	float *a = malloc((size_t)n * DIM * 4), *b = malloc((size_t)n * DIM * 4);
	float *x = malloc((size_t)n * DIM * 4);
	uint8_t *fa = malloc(n), *fx = malloc(n);

	(void)state;
	for (size_t o = 0; o < sizeof(opts) / sizeof(opts[0]); o++) {
		struct embkv_test_cluster cl;
		struct embkv_client *c;
		struct embkv_table_handle *t;
		struct embkv_table_attr at;

		fresh_dir();
		start(&cl, 3, true);
		c = client(&cl);
		table_attr(&at, "rt", opts[o], 4096);
		assert_int_equal(embkv_table_create_remote(c, &at), 0);
		t = open_t(c, "rt");
		for (uint32_t r = 0; r < 3; r++)
			push_round(t, n, r);
		assert_int_equal(ckpt_create(c, 0, NULL), 0);
		pull_all(t, n, a, fa);
		for (uint32_t i = 0; i < n; i++)
			assert_true(fa[i]);
		/* the reference: the cluster that never stopped */
		push_round(t, n, 3);
		push_round(t, n, 4);
		pull_all(t, n, b, fx);
		/* restore, then the same pushes */
		assert_int_equal(ckpt_restore(c, "newest", NULL, 0), 0);
		pull_all(t, n, x, fx);
		assert_memory_equal(x, a, (size_t)n * DIM * 4);
		assert_memory_equal(fx, fa, n);
		push_round(t, n, 3);
		push_round(t, n, 4);
		pull_all(t, n, x, fx);
		assert_memory_equal(x, b, (size_t)n * DIM * 4);
		embkv_table_close(t);
		embkv_client_destroy(c);
		/* kill -9 of every server, restart: back by themselves */
		kill9(&cl);
		start(&cl, 3, true);
		c = client(&cl);
		t = open_t(c, "rt");
		pull_all(t, n, x, fx);
		assert_memory_equal(x, a, (size_t)n * DIM * 4);
		assert_memory_equal(fx, fa, n);
		push_round(t, n, 3);
		push_round(t, n, 4);
		pull_all(t, n, x, fx);
		assert_memory_equal(x, b, (size_t)n * DIM * 4);
		embkv_table_close(t);
		embkv_client_destroy(c);
		stop(&cl);
	}
	free(a);
	free(b);
	free(x);
	free(fa);
	free(fx);
}

/* ---- 3 servers onto 1, 2 and 3 ---------------------------------------------- */

static void onto_other_counts(void **state)
{
	const uint32_t n = 1000;
	float *a = malloc((size_t)n * DIM * 4), *x = malloc((size_t)n * DIM * 4);
	uint8_t *fa = malloc(n), *fx = malloc(n);
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	struct embkv_table_handle *t;
	struct embkv_table_attr at;

	(void)state;
	fresh_dir();
	start(&cl, 3, true);
	c = client(&cl);
	table_attr(&at, "wide", EMBKV_OPT_ADAGRAD, 8192);
	assert_int_equal(embkv_table_create_remote(c, &at), 0);
	t = open_t(c, "wide");
	push_round(t, n, 1);
	push_round(t, n, 2);
	assert_int_equal(ckpt_create(c, 0, NULL), 0);
	pull_all(t, n, a, fa);
	for (uint32_t i = 0; i < n; i++)
		assert_true(fa[i]);
	embkv_table_close(t);
	embkv_client_destroy(c);
	stop(&cl);
	for (uint32_t s = 1; s <= 3; s++) {
		/* 1 and 2: each server loads its share by itself; 3: an
		 * explicit restore into servers that started empty */
		start(&cl, s, s != 3);
		c = client(&cl);
		if (s == 3)
			assert_int_equal(ckpt_restore(c, NULL, NULL, 0), 0);
		t = open_t(c, "wide");
		pull_all(t, n, x, fx);
		assert_memory_equal(x, a, (size_t)n * DIM * 4);
		assert_memory_equal(fx, fa, n);
		embkv_table_close(t);
		embkv_client_destroy(c);
		stop(&cl);
	}
	free(a);
	free(x);
	free(fa);
	free(fx);
}

/* ---- incremental chain --------------------------------------------------------- */

static void incremental_chain(void **state)
{
	/* capacity below the keys used: inserts evict */
	const uint32_t n = 900, cap = 640;
	float *a = malloc((size_t)n * DIM * 4), *x = malloc((size_t)n * DIM * 4);
	uint8_t *fa = malloc(n), *fx = malloc(n);
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	struct embkv_table_handle *t;
	struct embkv_table_attr at;
	uint64_t ids[4], erase[50];
	char err[512];

	(void)state;
	fresh_dir();
	start(&cl, 2, true);
	c = client(&cl);
	table_attr(&at, "inc", EMBKV_OPT_ADAM, cap);
	assert_int_equal(embkv_table_create_remote(c, &at), 0);
	t = open_t(c, "inc");
	push_round(t, 400, 0);
	assert_int_equal(ckpt_create(c, 0, &ids[0]), 0);
	for (uint32_t k = 1; k <= 3; k++) {
		push_round(t, 200 + 230 * k > n ? n : 200 + 230 * k, k);
		for (uint32_t i = 0; i < 50; i++)
			erase[i] = 1 + i * 7 + k;
		assert_int_equal(embkv_erase(t, 50, erase, NULL), 0);
		assert_int_equal(ckpt_create(c, 1, &ids[k]), 0);
	}
	pull_all(t, n, a, fa);
	{
		/* erased and evicted keys are gone, the others there */
		uint32_t live = 0;

		for (uint32_t i = 0; i < n; i++)
			live += fa[i];
		print_message("incremental: %u of %u keys live\n", live, n);
		assert_true(live > 300 && live <= cap);
		for (uint32_t i = 0; i < 50; i++)
			assert_false(fa[i * 7 + 3]);     /* erased last */
	}
	/* the chain really has increments */
	{
		char names[64][64];
		uint32_t m = ckpt_files(ids[3], names, 64);

		assert_true(m > 0);
		assert_non_null(strstr(names[0], ".delta"));
	}
	/* mess the table up, then restore the chain */
	push_round(t, n, 9);
	assert_int_equal(ckpt_restore(c, "newest", err, sizeof(err)), 0);
	pull_all(t, n, x, fx);
	assert_memory_equal(fx, fa, n);
	assert_memory_equal(x, a, (size_t)n * DIM * 4);
	/* onto a fresh cluster too */
	embkv_table_close(t);
	embkv_client_destroy(c);
	stop(&cl);
	start(&cl, 3, true);
	c = client(&cl);
	t = open_t(c, "inc");
	pull_all(t, n, x, fx);
	assert_memory_equal(fx, fa, n);
	assert_memory_equal(x, a, (size_t)n * DIM * 4);
	/* a broken chain: increment 2 deleted (forced); the table stays */
	{
		struct embkv_ckpt_result r;

		assert_int_equal(embkv_checkpoint_delete(c, "x", 0, &r),
				 -ENOENT);
		snprintf(err, sizeof(err), "%llu", (unsigned long long)ids[2]);
		assert_int_equal(embkv_checkpoint_delete(c, err, 0, &r),
				 -EBUSY);
		assert_int_equal(embkv_checkpoint_delete(c, err, 1, &r), 0);
	}
	snprintf(err, sizeof(err), "%llu", (unsigned long long)ids[3]);
	assert_int_not_equal(ckpt_restore(c, err, err, sizeof(err)), 0);
	print_message("broken chain: %s\n", err);
	assert_non_null(strstr(err, "chain"));
	pull_all(t, n, x, fx);
	assert_memory_equal(fx, fa, n);
	assert_memory_equal(x, a, (size_t)n * DIM * 4);
	embkv_table_close(t);
	embkv_client_destroy(c);
	stop(&cl);
	free(a);
	free(x);
	free(fa);
	free(fx);
}

/* ---- corruption ------------------------------------------------------------------ */

static void expect_refused(struct embkv_client *c, struct embkv_table_handle *t,
			   const float *a, const uint8_t *fa, uint32_t n,
			   const char *needle)
{
	float *x = malloc((size_t)n * DIM * 4);
	uint8_t *fx = malloc(n);
	char err[512], *json = NULL;
	struct embkv_ckpt_result r;

	assert_int_not_equal(ckpt_restore(c, NULL, err, sizeof(err)), 0);
	print_message("refused: %s\n", err);
	assert_non_null(strstr(err, needle));
	assert_int_equal(embkv_checkpoint_verify(c, NULL, &json, &r),
			 EMBKV_EPROTO);
	free(json);
	pull_all(t, n, x, fx);
	assert_memory_equal(fx, fa, n);
	assert_memory_equal(x, a, (size_t)n * DIM * 4);
	free(x);
	free(fx);
}

static void copy_file(const char *from, const char *to)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
}

static void corruption(void **state)
{
	const uint32_t n = 500;
	float *a = malloc((size_t)n * DIM * 4);
	uint8_t *fa = malloc(n);
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	struct embkv_table_handle *t;
	struct embkv_table_attr at;
	char names[64][64], p0[600], p1[600], save[700], other[600];
	uint64_t id, id2;
	uint32_t m;
	char *json = NULL;
	struct embkv_ckpt_result r;

	(void)state;
	fresh_dir();
	start(&cl, 2, true);
	c = client(&cl);
	table_attr(&at, "cor", EMBKV_OPT_SGD, 4096);
	assert_int_equal(embkv_table_create_remote(c, &at), 0);
	table_attr(&at, "oth", EMBKV_OPT_SGD, 4096);
	assert_int_equal(embkv_table_create_remote(c, &at), 0);
	t = open_t(c, "oth");
	push_round(t, n, 5);
	embkv_table_close(t);
	t = open_t(c, "cor");
	push_round(t, n, 1);
	assert_int_equal(ckpt_create(c, 0, &id), 0);
	assert_int_equal(embkv_checkpoint_verify(c, NULL, &json, &r), 0);
	free(json);
	push_round(t, n, 2);     /* the table now differs from the file */
	pull_all(t, n, a, fa);
	m = ckpt_files(id, names, 64);
	assert_int_equal(m, 2 * PARTS);
	/* names sort by uid: find two files of table "cor" (the same uid
	 * prefix) and one of the other table */
	{
		uint32_t i = 0, j;

		while (i + 1 < m && strncmp(names[i], names[i + 1], 16))
			i++;
		file_path(id, names[i], p0, sizeof(p0));
		file_path(id, names[i + 1], p1, sizeof(p1));
		for (j = 0; j < m && !strncmp(names[j], names[i], 16); j++)
			;
		if (j == m)
			for (j = 0; !strncmp(names[j], names[i], 16); j++)
				;
		file_path(id, names[j], other, sizeof(other));
	}
	snprintf(save, sizeof(save), "%s.save", p0);
	copy_file(p0, save);
	/* a flipped byte in the middle */
	{
		int fd = open(p0, O_RDWR);
		struct stat st;
		uint8_t b;

		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(pread(fd, &b, 1, st.st_size / 2), 1);
		b ^= 0x10;
		assert_int_equal(pwrite(fd, &b, 1, st.st_size / 2), 1);
		close(fd);
	}
	expect_refused(c, t, a, fa, n, p0);
	/* truncated */
	copy_file(save, p0);
	{
		struct stat st;

		assert_int_equal(stat(p0, &st), 0);
		assert_int_equal(truncate(p0, st.st_size - 100), 0);
	}
	expect_refused(c, t, a, fa, n, p0);
	/* two partition files swapped */
	copy_file(save, p0);
	copy_file(p1, save);
	copy_file(p0, p1);
	copy_file(save, p0);
	expect_refused(c, t, a, fa, n, "ckpt");
	copy_file(p1, p0);
	copy_file(save, p1);
	/* both back: restores */
	snprintf(save, sizeof(save), "%s.save", p0);
	assert_int_equal(ckpt_restore(c, NULL, NULL, 0), 0);
	/* a file of another table in its place */
	push_round(t, n, 2);
	pull_all(t, n, a, fa);
	assert_int_equal(ckpt_create(c, 0, &id2), 0);
	assert_true(id2 > id);
	push_round(t, n, 3);
	pull_all(t, n, a, fa);
	m = ckpt_files(id2, names, 64);
	{
		char q0[600], q1[600];
		uint32_t i = 0;

		while (i + 1 < m && strncmp(names[i], names[i + 1], 16))
			i++;
		/* a "cor" file replaced by an "oth" file of the same part */
		file_path(id2, names[0], q0, sizeof(q0));
		file_path(id2, names[m - 1], q1, sizeof(q1));
		(void)i;
		copy_file(strncmp(names[0], names[m - 1], 16) ? q1 : q0, q0);
	}
	(void)other;
	expect_refused(c, t, a, fa, n, "ckpt");
	embkv_table_close(t);
	embkv_client_destroy(c);
	stop(&cl);
	free(a);
	free(fa);
}

/* ---- the cut ------------------------------------------------------------------------ */

struct pusher {
	struct embkv_table_handle *t;
	volatile int stop;
	volatile uint64_t acked;    /* batches acknowledged */
	uint64_t sent;
};

#define CUT_BATCH 64u

/* Batch b assigns keys [b * CUT_BATCH + 1, (b + 1) * CUT_BATCH] the value
 * b + 1 in every dimension. */
static void *push_loop(void *arg)
{
	struct pusher *p = arg;
	uint64_t keys[CUT_BATCH];
	float v[CUT_BATCH * DIM];

	while (!p->stop) {
		uint64_t b = p->sent++;

		for (uint32_t i = 0; i < CUT_BATCH; i++) {
			keys[i] = b * CUT_BATCH + i + 1;
			for (uint32_t d = 0; d < DIM; d++)
				v[i * DIM + d] = (float)(b + 1);
		}
		if (embkv_assign(p->t, CUT_BATCH, keys, v))
			break;
		__atomic_store_n(&p->acked, b + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void cut(void **state)
{
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	struct embkv_table_attr at;
	struct pusher p = { 0 };
	pthread_t th;
	uint64_t before, after, n;
	float *x;
	uint8_t *fx;

	(void)state;
	fresh_dir();
	start(&cl, 3, true);
	c = client(&cl);
	table_attr(&at, "cut", EMBKV_OPT_SGD, 1u << 20);
	assert_int_equal(embkv_table_create_remote(c, &at), 0);
	p.t = open_t(c, "cut");
	assert_int_equal(pthread_create(&th, NULL, push_loop, &p), 0);
	while (__atomic_load_n(&p.acked, __ATOMIC_ACQUIRE) < 20)
		usleep(1000);
	before = __atomic_load_n(&p.acked, __ATOMIC_ACQUIRE);
	assert_int_equal(ckpt_create(c, 0, NULL), 0);
	after = p.sent;          /* batches started so far (upper bound) */
	usleep(20000);
	p.stop = 1;
	pthread_join(th, NULL);
	/* push on, then restore */
	n = (after + 20) * CUT_BATCH;
	assert_int_equal(ckpt_restore(c, NULL, NULL, 0), 0);
	x = malloc(n * DIM * 4);
	fx = malloc(n);
	pull_all(p.t, (uint32_t)n, x, fx);
	for (uint64_t b = 0; b < before; b++)
		for (uint32_t i = 0; i < CUT_BATCH; i++) {
			uint64_t k = b * CUT_BATCH + i;

			assert_true(fx[k]);
			assert_true(x[k * DIM] == (float)(b + 1));
		}
	/* nothing sent after create returned */
	for (uint64_t k = (after + 1) * CUT_BATCH; k < n; k++)
		assert_false(fx[k]);
	print_message("cut: %llu batches acked before, %llu sent by the "
		      "end\n", (unsigned long long)before,
		      (unsigned long long)after);
	free(x);
	free(fx);
	embkv_table_close(p.t);
	embkv_client_destroy(c);
	stop(&cl);
}

/* ---- kill -9 during create ----------------------------------------------------------- */

struct creator {
	struct embkv_client *c;
	int incremental;
	int rc;
	uint64_t id;
};

static void *create_thread(void *arg)
{
	struct creator *k = arg;

	k->rc = ckpt_create(k->c, k->incremental, &k->id);
	return NULL;
}

static uint64_t newest_id(struct embkv_client *c)
{
	char *json = NULL;
	struct embkv_ckpt_result r;
	const char *p, *q;
	uint64_t best = 0;

	assert_int_equal(embkv_checkpoint_list(c, &json, &r), 0);
	/* "id": N entries of complete checkpoints come before "incomplete" */
	q = strstr(json, "\"incomplete\"");
	for (p = json; (p = strstr(p, "\"id\": ")); p++) {
		uint64_t v = strtoull(p + 6, NULL, 10);

		if (q && p > q)
			break;
		if (v > best)
			best = v;
	}
	free(json);
	return best;
}

static void kill_loop(void **state)
{
	const char *env = getenv("EMBKV_TEST_CKPT_KILLS");
	uint32_t kills = env ? (uint32_t)atoi(env) : 50, n = 2000;
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	struct embkv_table_handle *t;
	struct embkv_table_attr at;
	float *vals[2], *x = malloc((size_t)n * DIM * 4);
	uint8_t *fx = malloc(n);
	uint64_t known_id = 0;
	int cur = 0;             /* vals[cur]: the newest complete's rows */
	uint32_t completed = 0, interrupted = 0;
	const char *seed_env = getenv("EMBKV_TEST_CKPT_SEED");
	unsigned seed = seed_env ? (unsigned)strtoul(seed_env, NULL, 10)
				 : (unsigned)time(NULL);

	(void)state;
	print_message("kill loop: %u kills, seed %u\n", kills, seed);
	srand(seed);
	vals[0] = malloc((size_t)n * DIM * 4);
	vals[1] = malloc((size_t)n * DIM * 4);
	fresh_dir();
	start(&cl, 2, true);
	c = client(&cl);
	table_attr(&at, "kl", EMBKV_OPT_ADAGRAD, 4096);
	assert_int_equal(embkv_table_create_remote(c, &at), 0);
	t = open_t(c, "kl");
	push_round(t, n, 0);
	assert_int_equal(ckpt_create(c, 0, &known_id), 0);
	pull_all(t, n, vals[0], fx);
	for (uint32_t i = 0; i < kills; i++) {
		struct creator k = { .c = c, .incremental = (int)(i % 3 != 0) };
		pthread_t th;
		uint64_t nid;

		/* new rows for this attempt */
		push_round(t, n, i + 1);
		pull_all(t, n, vals[!cur], fx);
		assert_int_equal(pthread_create(&th, NULL, create_thread, &k),
				 0);
		usleep((useconds_t)(rand() % 20000));
		kill9(&cl);
		pthread_join(th, NULL);
		embkv_table_close(t);
		embkv_client_destroy(c);
		/* restart: each server loads the newest complete */
		start(&cl, 2, true);
		c = client(&cl);
		t = open_t(c, "kl");
		nid = newest_id(c);
		pull_all(t, n, x, fx);
		if (nid == known_id) {
			interrupted++;
			assert_memory_equal(x, vals[cur], (size_t)n * DIM * 4);
		} else {
			/* this attempt's checkpoint completed */
			assert_true(nid > known_id);
			completed++;
			assert_memory_equal(x, vals[!cur], (size_t)n * DIM * 4);
			known_id = nid;
			cur = !cur;
		}
		/* the table now holds vals[cur]: the next attempt builds on
		 * it */
	}
	print_message("kill loop: %u completed before the kill, %u "
		      "interrupted\n", completed, interrupted);
	embkv_table_close(t);
	embkv_client_destroy(c);
	stop(&cl);
	free(vals[0]);
	free(vals[1]);
	free(x);
	free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(roundtrip),
		cmocka_unit_test(onto_other_counts),
		cmocka_unit_test(incremental_chain),
		cmocka_unit_test(corruption),
		cmocka_unit_test(cut),
		cmocka_unit_test(kill_loop),
	};
	int rc;

	snprintf(g_dir, sizeof(g_dir), "/tmp/embkv-ckpt-test.%d", getpid());
	/* EMBKV_TEST_ONLY=kill_loop (a cmocka glob) runs only matching
	 * tests: tools/ckpt-crash-loop.sh */
	if (getenv("EMBKV_TEST_ONLY"))
		cmocka_set_test_filter(getenv("EMBKV_TEST_ONLY"));
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	if (!rc)
		rm_rf(g_dir);
	return rc;
}
