/*
 * server/feed.c, the replication feed of a partition: every mutation
 * (train-pull insert, push, assign, accumulate, erase, eviction) lands in
 * the ring under its seq; a read since S returns exactly the keys mutated
 * after S; an overrun, a foreign id, a position before the feed or past
 * seq, and a break (restore, clear) answer -ESPIPE; embkv_table_peek
 * reads rows and counts nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "server/store.h"

#define DIM 4u

/* One partition, 16 rows: evictions come quickly. */
static struct embkv_table *make_table(void)
{
	struct embkv_table_attr a;
	struct embkv_table *t;

	embkv_table_attr_init(&a);
	a.dim = DIM;
	a.capacity = 16;
	a.partitions = 1;
	a.opt.type = EMBKV_OPT_SGD;
	a.opt.lr = 0.5f;
	a.init.seed = 7;
	assert_int_equal(embkv_table_create(&a, &t), 0);
	return t;
}

static bool has(const uint64_t *k, uint32_t n, uint64_t key)
{
	for (uint32_t i = 0; i < n; i++)
		if (k[i] == key)
			return true;
	return false;
}

static void test_every_mutation(void **state)
{
	struct embkv_table *t = make_table();
	uint64_t id, seq, s0, upto, keys[4096], k[3] = { 1, 2, 3 };
	float v[3 * DIM] = { 0 }, out[3 * DIM];
	uint32_t n;

	(void)state;
	/* before a feed exists nothing can be told */
	assert_int_equal(embkv_part_feed_read(t, 0, 1, 0, 10, keys, &n,
					      &upto), -ESPIPE);
	embkv_table_pull(t, 3, k, out, NULL, EMBKV_PULL_TRAIN, NULL);
	assert_int_equal(embkv_part_feed_open(t, 0, 1024, &id, &s0), 0);
	assert_true(id != 0);
	assert_int_equal(s0, 3);   /* three inserts so far */
	/* a second open keeps the feed: another follower's position holds */
	assert_int_equal(embkv_part_feed_open(t, 0, 1024, &seq, &upto), 0);
	assert_true(seq == id);
	embkv_table_push(t, 1, &k[0], v);            /* 1 */
	embkv_table_assign(t, 1, &k[1], v);          /* 2 */
	k[2] = 77;
	embkv_table_accumulate(t, 1, &k[2], v);      /* 77 (insert + add) */
	embkv_table_erase(t, 1, &k[1]);              /* 2 */
	assert_int_equal(embkv_part_feed_read(t, 0, id, s0, 4096, keys, &n,
					      &upto), 0);
	assert_int_equal(upto, t->parts[0].seq);
	assert_int_equal(n, upto - s0);
	assert_true(has(keys, n, 1) && has(keys, n, 2) && has(keys, n, 77));
	assert_false(has(keys, n, 3));
	/* max bounds one read; the rest comes from there */
	assert_int_equal(embkv_part_feed_read(t, 0, id, s0, 1, keys, &n,
					      &upto), 0);
	assert_int_equal(n, 1);
	assert_int_equal(upto, s0 + 1);
	assert_int_equal(keys[0], 1);
	/* nothing new: empty */
	seq = t->parts[0].seq;
	assert_int_equal(embkv_part_feed_read(t, 0, id, seq, 10, keys, &n,
					      &upto), 0);
	assert_int_equal(n, 0);
	assert_int_equal(upto, seq);
	/* wrong id, before the feed, past seq */
	assert_int_equal(embkv_part_feed_read(t, 0, id + 1, seq, 10, keys,
					      &n, &upto), -ESPIPE);
	assert_int_equal(embkv_part_feed_read(t, 0, id, s0 - 1, 10, keys, &n,
					      &upto), -ESPIPE);
	assert_int_equal(embkv_part_feed_read(t, 0, id, seq + 1, 10, keys, &n,
					      &upto), -ESPIPE);
	embkv_table_destroy(t);
}

static void test_evictions_and_overrun(void **state)
{
	struct embkv_table *t = make_table();
	uint64_t id, s0, upto, keys[4096];
	float v[DIM] = { 0 };
	uint32_t n;

	(void)state;
	assert_int_equal(embkv_part_feed_open(t, 0, 1024, &id, &s0), 0);
	/* 40 assigns into 16 rows: evictions, each a mutation of the
	 * victim's key, in the feed */
	for (uint64_t k = 100; k < 140; k++)
		assert_int_equal(embkv_table_assign(t, 1, &k, v), 1);
	assert_int_equal(embkv_part_feed_read(t, 0, id, s0, 4096, keys, &n,
					      &upto), 0);
	assert_true(n > 40);
	for (uint64_t k = 100; k < 140; k++)
		assert_true(has(keys, n, k));
	/* 1024 more: the ring (1024) no longer holds s0's successors */
	for (uint64_t k = 0; k < 1024; k++) {
		uint64_t key = 200 + k % 8;

		embkv_table_push(t, 1, &key, v);
		embkv_table_assign(t, 1, &key, v);
	}
	assert_int_equal(embkv_part_feed_read(t, 0, id, s0, 4096, keys, &n,
					      &upto), -ESPIPE);
	/* a recent position still works */
	assert_int_equal(embkv_part_feed_read(t, 0, id,
					      t->parts[0].seq - 100, 4096,
					      keys, &n, &upto), 0);
	assert_int_equal(n, 100);
	embkv_table_destroy(t);
}

static void test_breaks(void **state)
{
	struct embkv_table *t = make_table();
	uint64_t id, id2, s0, seq, upto, keys[64], k = 5;
	float v[DIM] = { 0 }, out[DIM] = { 9, 9, 9, 9 };
	struct embkv_table_stats st0, st1;
	uint8_t found = 9;
	uint32_t n;

	(void)state;
	embkv_table_assign(t, 1, &k, v);
	assert_int_equal(embkv_part_feed_open(t, 0, 1024, &id, &s0), 0);
	/* peek: the row, nothing counted */
	embkv_table_get_stats(t, &st0);
	assert_int_equal(embkv_table_peek(t, 1, &k, out, &found), 1);
	assert_int_equal(found, 1);
	assert_true(out[0] == 0.0f);
	k = 6;
	assert_int_equal(embkv_table_peek(t, 1, &k, out, &found), 0);
	assert_int_equal(found, 0);
	embkv_table_get_stats(t, &st1);
	assert_int_equal(st0.sum.hits, st1.sum.hits);
	assert_int_equal(st0.sum.misses, st1.sum.misses);
	/* a clear changes rows without seq bumps: the feed breaks */
	embkv_part_clear(t, 0);
	assert_int_equal(embkv_part_feed_read(t, 0, id, s0, 64, keys, &n,
					      &upto), -ESPIPE);
	assert_int_equal(embkv_part_feed_open(t, 0, 1024, &id2, &seq), 0);
	assert_true(id2 != id);
	/* so does a restore, even to an older seq */
	embkv_part_ckpt_restored(t, 0, 1, 0);
	assert_int_equal(embkv_part_feed_read(t, 0, id2, seq, 64, keys, &n,
					      &upto), -ESPIPE);
	embkv_table_destroy(t);
}

/* The ring never has more entries than the partition holds rows (at
 * least 1024), whatever a follower asks for: 65536 asked on a 4096-row
 * partition remembers 4096 mutations, not 65536. */
static void test_ring_bounded_by_capacity(void **state)
{
	struct embkv_table_attr a;
	struct embkv_table *t;
	uint64_t id, s0, upto, k, *keys = malloc(8192 * sizeof(*keys));
	float v[DIM] = { 0 };
	uint32_t n;

	(void)state;
	assert_non_null(keys);
	embkv_table_attr_init(&a);
	a.dim = DIM;
	a.capacity = 4096;
	a.partitions = 1;
	a.opt.type = EMBKV_OPT_SGD;
	a.opt.lr = 0.5f;
	assert_int_equal(embkv_table_create(&a, &t), 0);
	assert_true(t->parts[0].capacity <= 8192);
	assert_int_equal(embkv_part_feed_open(t, 0, 65536, &id, &s0), 0);
	for (uint32_t i = 0; i < 3u * 8192u; i++) {
		k = i % 64;
		embkv_table_assign(t, 1, &k, v);
	}
	/* too far back for a ring of at most 8192 entries */
	assert_int_equal(embkv_part_feed_read(t, 0, id, s0, 8192, keys, &n,
					      &upto), -ESPIPE);
	/* the recent past is there */
	assert_int_equal(embkv_part_feed_read(t, 0, id, t->parts[0].seq - 100,
					      8192, keys, &n, &upto), 0);
	assert_int_equal(n, 100);
	free(keys);
	embkv_table_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_mutation),
		cmocka_unit_test(test_evictions_and_overrun),
		cmocka_unit_test(test_breaks),
		cmocka_unit_test(test_ring_bounded_by_capacity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
