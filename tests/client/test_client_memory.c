/*
 * Memory per partition, against real embkvd processes: a server maps,
 * registers and charges only the partitions its shard map gives it, so
 * servers add capacity.
 *
 * - Two servers with --memory-limit 100M create and fill a 150,000-row
 *   dim-64 Adam table (117 MiB); each reports half of the partitions, its
 *   exact share of the capacity, about half of the bytes, and its
 *   resident memory grows by no more than 1.2x its share. One server with
 *   the same limit refuses that table (ENOMEM).
 * - Three servers with a limit of 2/5 of the table hold it; two such
 *   servers refuse it.
 * - The rows the table holds never exceed its capacity, which is exact.
 * - Over rdma:// (the RDMA VM runs this program with rdma://10.0.2.15)
 *   each server's registered bytes are exactly its partitions' indexes and
 *   arenas; over TCP nothing is registered.
 * - Large replies: 12 train pulls of 4096 new keys (a 500 KiB PULL reply
 *   per server each). Over rdma:// the servers register at most 4 reply
 *   buffers each and keep them (rdma_reply_pool_bytes), or, started with
 *   --rdma-reply-pool 0, register one per reply and keep none; the rows
 *   those reused buffers carried equal the stored rows (read again
 *   one-sided). Over TCP no server reports reply registrations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <embkv/embkv.h>
#include "server/store.h"
#include "tests/client/spawn.h"

#define ROWS 150000u
#define DIM 64u
#define BATCH 4096u
#define READY_MS 10000u
#define STOP_MS 15000u
#define TABLE "big"
/* Resident growth allowed per charged byte. Under AddressSanitizer the
 * server also touches shadow memory (one byte per eight it accesses) and
 * pads its heap, so there the bound is looser. */
#ifdef __SANITIZE_ADDRESS__
#define RSS_SLACK (1.6)
#else
#define RSS_SLACK (1.2)
#endif

struct per_server {
	uint64_t rows, capacity, mem_bytes, partitions, rdma_bytes;
};

struct seen {
	struct per_server s[EMBKV_TEST_MAX_SERVERS];
	/* server group */
	uint64_t reply_regs[EMBKV_TEST_MAX_SERVERS];
	uint64_t reply_pool[EMBKV_TEST_MAX_SERVERS];
	bool reply_stats[EMBKV_TEST_MAX_SERVERS];
};

static void on_stat(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct seen *sn = ctx;
	struct per_server *p;

	if (!table && server < EMBKV_TEST_MAX_SERVERS) {
		if (!strcmp(name, "rdma_reply_regs")) {
			sn->reply_regs[server] = value;
			sn->reply_stats[server] = true;
		} else if (!strcmp(name, "rdma_reply_pool_bytes")) {
			sn->reply_pool[server] = value;
		}
		return;
	}
	if (!table || strcmp(table, TABLE) || server >= EMBKV_TEST_MAX_SERVERS)
		return;
	p = &sn->s[server];
	if (!strcmp(name, "rows"))
		p->rows = value;
	else if (!strcmp(name, "capacity"))
		p->capacity = value;
	else if (!strcmp(name, "mem_bytes"))
		p->mem_bytes = value;
	else if (!strcmp(name, "partitions"))
		p->partitions = value;
	else if (!strcmp(name, "rdma_bytes"))
		p->rdma_bytes = value;
}

/* Resident bytes of a process (VmRSS), 0 when unreadable. */
static uint64_t rss_bytes(pid_t pid)
{
	char path[64], line[256];
	unsigned long long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

static void table_attr(struct embkv_table_attr *a)
{
	embkv_table_attr_init(a);
	strcpy(a->name, TABLE);
	a->dim = DIM;
	a->capacity = ROWS;
	a->opt.type = EMBKV_OPT_ADAM;
}

static bool over_rdma(void)
{
	return !strncmp(embkv_test_listen_prefix(), "rdma://", 7);
}

static struct embkv_client *connect_all(struct embkv_test_cluster *cl)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;

	embkv_client_attr_init(&ca);
	ca.servers = cl->addrs;
	ca.nservers = cl->n;
	assert_int_equal(embkv_client_create(&ca, &c), 0);
	return c;
}

/* Starts n servers with --memory-limit limit and tries to create the
 * table: the create's status. */
static int try_create(uint32_t n, const char *limit,
		      struct embkv_test_cluster *cl, struct embkv_client **c)
{
	const char *extra[] = { "--threads", "1", "--memory-limit", limit,
				NULL };
	struct embkv_table_attr a;

	table_attr(&a);
	assert_int_equal(embkv_test_cluster_start(EMBKVD_PATH, n, extra,
						  READY_MS, cl), 0);
	*c = connect_all(cl);
	return embkv_table_create_remote(*c, &a);
}

static void stop(struct embkv_test_cluster *cl, struct embkv_client *c)
{
	embkv_client_destroy(c);
	assert_int_equal(embkv_test_cluster_stop(cl, STOP_MS), 0);
}

/* Fills the table with ROWS distinct keys (train-mode pulls), then checks
 * each server's share. */
static void fill_and_check(struct embkv_test_cluster *cl,
			   struct embkv_client *c)
{
	struct embkv_table_attr a;
	struct embkv_table *ref;
	struct embkv_table_handle *t;
	uint64_t *keys = malloc(BATCH * sizeof(*keys));
	float *out = malloc((size_t)BATCH * DIM * sizeof(float));
	uint64_t rss0[EMBKV_TEST_MAX_SERVERS], rows = 0, cap = 0, bytes = 0;
	struct seen sn;

	assert_non_null(keys);
	assert_non_null(out);
	for (uint32_t i = 0; i < cl->n; i++)
		rss0[i] = rss_bytes(cl->procs[i].pid);
	assert_int_equal(embkv_table_open(c, TABLE, &t), 0);
	assert_int_equal(embkv_table_attr_get(t)->capacity, ROWS);
	for (uint32_t i0 = 0; i0 < ROWS; i0 += BATCH) {
		uint32_t m = ROWS - i0 < BATCH ? ROWS - i0 : BATCH;

		for (uint32_t j = 0; j < m; j++)
			keys[j] = 0x9e3779b97f4a7c15ull * (i0 + j + 1);
		assert_int_equal(embkv_pull(t, m, keys, out, NULL,
					    EMBKV_MODE_TRAIN, NULL), 0);
	}
	memset(&sn, 0, sizeof(sn));
	assert_int_equal(embkv_stats(c, on_stat, &sn), 0);

	/* The reference: the same table in-process, every partition. */
	table_attr(&a);
	assert_int_equal(embkv_table_create(&a, &ref), 0);
	for (uint32_t i = 0; i < cl->n; i++) {
		const struct per_server *p = &sn.s[i];
		uint64_t want_cap = 0, want_reg = 0, want_parts = 0, grew;

		for (uint32_t q = i; q < ref->nparts; q += cl->n) {
			want_parts++;
			want_cap += ref->parts[q].capacity;
			want_reg += ref->parts[q].mem_bytes[EMBKV_MEM_INDEX] +
				    ref->parts[q].mem_bytes[EMBKV_MEM_ARENA];
		}
		assert_int_equal(p->partitions, want_parts);
		assert_int_equal(p->capacity, want_cap);
		assert_true(p->rows <= p->capacity);
		assert_int_equal(p->rdma_bytes, over_rdma() ? want_reg : 0);
		rows += p->rows;
		cap += p->capacity;
		bytes += p->mem_bytes;
		/* Resident growth of the server within 1.2x of its share. */
		grew = rss_bytes(cl->procs[i].pid) - rss0[i];
		fprintf(stderr, "server %u: %llu partitions, %llu rows, "
			"%llu bytes charged, resident +%llu bytes\n", i,
			(unsigned long long)p->partitions,
			(unsigned long long)p->rows,
			(unsigned long long)p->mem_bytes,
			(unsigned long long)grew);
		assert_true((double)grew <= RSS_SLACK * (double)p->mem_bytes);
	}
	assert_int_equal(cap, ROWS);
	/* Distinct keys into an exact capacity: a few partitions overflow
	 * (and evict), none ever holds more than its share. */
	assert_true(rows <= ROWS && rows >= ROWS - ROWS / 20);
	for (uint32_t i = 0; i < cl->n; i++) {
		double share = (double)sn.s[i].mem_bytes / (double)bytes;
		double want = (double)sn.s[i].partitions / ref->nparts;

		assert_true(share > want - 0.01 && share < want + 0.01);
	}
	embkv_table_destroy(ref);
	embkv_table_close(t);
	free(out);
	free(keys);
}

static void test_two_servers_hold_what_one_cannot(void **state)
{
	struct embkv_test_cluster cl;
	struct embkv_client *c;

	(void)state;
	assert_int_equal(try_create(1, "100M", &cl, &c), -ENOMEM);
	stop(&cl, c);
	assert_int_equal(try_create(2, "100M", &cl, &c), 0);
	fill_and_check(&cl, c);
	stop(&cl, c);
}

static void test_three_servers_add_capacity(void **state)
{
	struct embkv_table_attr a;
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	uint64_t bytes;
	char limit[32];

	(void)state;
	/* A limit of 2/5 of the table: three servers hold it, two cannot. */
	table_attr(&a);
	assert_int_equal(embkv_table_size(&a, &bytes), 0);
	snprintf(limit, sizeof(limit), "%llu",
		 (unsigned long long)(bytes / 5 * 2));
	assert_int_equal(try_create(2, limit, &cl, &c), -ENOMEM);
	stop(&cl, c);
	assert_int_equal(try_create(3, limit, &cl, &c), 0);
	fill_and_check(&cl, c);
	stop(&cl, c);
}

#define REPLY_BATCHES 12u
#define REPLY_DIM 64u

/* Two servers started with extra; REPLY_BATCHES train pulls of BATCH new
 * keys, then the same keys pulled again (one-sided over rdma://) must
 * give the same rows. The servers' reply counters after it go to sn. */
static void large_replies(const char *const *extra, struct seen *sn)
{
	struct embkv_test_cluster cl;
	struct embkv_table_handle *t;
	struct embkv_table_attr a;
	struct embkv_client *c;
	size_t rows = (size_t)REPLY_BATCHES * BATCH * REPLY_DIM;
	uint64_t *keys = malloc((size_t)REPLY_BATCHES * BATCH * sizeof(*keys));
	float *first = malloc(rows * sizeof(float));
	float *again = malloc(rows * sizeof(float));
	uint8_t *found = malloc(BATCH);

	assert_non_null(keys);
	assert_non_null(first);
	assert_non_null(again);
	assert_non_null(found);
	assert_int_equal(embkv_test_cluster_start(EMBKVD_PATH, 2, extra,
						  READY_MS, &cl), 0);
	c = connect_all(&cl);
	embkv_table_attr_init(&a);
	strcpy(a.name, "replies");
	a.dim = REPLY_DIM;
	a.capacity = 2ull * REPLY_BATCHES * BATCH;
	a.init.type = EMBKV_INIT_NORMAL;
	assert_int_equal(embkv_table_create_remote(c, &a), 0);
	assert_int_equal(embkv_table_open(c, "replies", &t), 0);
	for (uint32_t i = 0; i < REPLY_BATCHES * BATCH; i++)
		keys[i] = 0x2545f4914f6cdd1dull * (i + 7);
	for (uint32_t b = 0; b < REPLY_BATCHES; b++)
		assert_int_equal(embkv_pull(t, BATCH, keys + (size_t)b * BATCH,
					    first + (size_t)b * BATCH *
						    REPLY_DIM,
					    NULL, EMBKV_MODE_TRAIN, NULL), 0);
	for (uint32_t b = 0; b < REPLY_BATCHES; b++) {
		assert_int_equal(embkv_pull(t, BATCH, keys + (size_t)b * BATCH,
					    again + (size_t)b * BATCH *
						    REPLY_DIM,
					    found, EMBKV_MODE_INFER, NULL), 0);
		for (uint32_t j = 0; j < BATCH; j++)
			assert_int_equal(found[j], 1);
	}
	/* initializer rows are random: a stale buffer would not match */
	assert_memory_equal(first, again, rows * sizeof(float));
	memset(sn, 0, sizeof(*sn));
	assert_int_equal(embkv_stats(c, on_stat, sn), 0);
	for (uint32_t i = 0; i < 2; i++)
		fprintf(stderr, "server %u: %llu reply registrations, %llu "
			"bytes kept\n", i,
			(unsigned long long)sn->reply_regs[i],
			(unsigned long long)sn->reply_pool[i]);
	embkv_table_close(t);
	stop(&cl, c);
	free(found);
	free(again);
	free(first);
	free(keys);
}

static void test_large_replies_reuse_registrations(void **state)
{
	const char *const pooled[] = { "--threads", "1", NULL };
	const char *const unpooled[] = { "--threads", "1",
					 "--rdma-reply-pool", "0", NULL };
	struct seen sn;

	(void)state;
	large_replies(pooled, &sn);
	for (uint32_t i = 0; i < 2; i++) {
		assert_int_equal(sn.reply_stats[i], over_rdma());
		if (!over_rdma())
			continue;
		/* the replies (about 2048 rows) fall in the 512K and 768K
		 * classes: one buffer each, plus one should a reply be built
		 * before the previous one's completion was seen */
		assert_true(sn.reply_regs[i] >= 1 && sn.reply_regs[i] <= 4);
		assert_true(sn.reply_pool[i] >= 500u * 1024 &&
			    sn.reply_pool[i] <= (64u << 20));
	}
	large_replies(unpooled, &sn);
	for (uint32_t i = 0; i < 2; i++) {
		assert_int_equal(sn.reply_stats[i], over_rdma());
		if (!over_rdma())
			continue;
		assert_true(sn.reply_regs[i] >= REPLY_BATCHES);
		assert_int_equal(sn.reply_pool[i], 0);
	}
}

/* usage: test_client_memory [SCHEME://HOST] (see test_client_cluster). */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_servers_hold_what_one_cannot),
		cmocka_unit_test(test_three_servers_add_capacity),
		cmocka_unit_test(test_large_replies_reuse_registrations),
	};

	if (argc > 1)
		setenv(EMBKV_TEST_LISTEN_ENV, argv[1], 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
