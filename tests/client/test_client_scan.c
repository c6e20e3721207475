/*
 * embkv_scan (SCAN, 0x25) through libembkv against two real embkvd
 * processes (static peers, 127.0.0.1, random ports):
 * - every live row of a 16-partition table comes back exactly once over
 *   all partitions, with its value, for small pages (max 7, and 1 on a
 *   few partitions), with erased rows (dead rows in the arena) skipped;
 * - a call at EMBKV_SCAN_END is a no-op, max 0 and a partition the table
 *   does not have are -EINVAL;
 * - a handle to a table dropped and created again is refused with
 *   EMBKV_ENOTABLE (stale uid), never reading the new table.
 * The servers' own refusals (a partition not served, a bad cursor, stale
 * epoch) are tested on raw frames in tests/server/test_embkvd_scan.c.
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

#include <embkv/embkv.h>
#include "tests/client/spawn.h"

#define NSRV 2u
#define DIM 8u
#define PARTS 16u
#define NKEYS 3000u
#define ERASE_EVERY 5u
#define READY_MS 10000u
#define STOP_MS 10000u
#define TABLE "scan"

static const char *const extra[] = { "--threads", "2", NULL };

struct state {
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	struct embkv_table_handle *t;
};

static float val(uint64_t key, uint32_t j)
{
	return (float)(key % 1000) * 0.5f + (float)j;
}

static uint64_t key_of(uint32_t i)
{
	return 0x9e3779b97f4a7c15ull * (i + 1);
}

static void make_table(struct state *s)
{
	struct embkv_table_attr a;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", TABLE);
	a.dim = DIM;
	a.partitions = PARTS;
	a.capacity = 100000;
	assert_int_equal(embkv_table_create_remote(s->c, &a), 0);
	assert_int_equal(embkv_table_open(s->c, TABLE, &s->t), 0);
}

static int setup(void **state)
{
	struct state *s = calloc(1, sizeof(*s));
	struct embkv_client_attr ca;

	if (!s)
		return -1;
	*state = s;
	if (embkv_test_cluster_start(EMBKVD_PATH, NSRV, extra, READY_MS,
				     &s->cl))
		return -1;
	embkv_client_attr_init(&ca);
	ca.servers = s->cl.addrs;
	ca.nservers = s->cl.n;
	if (embkv_client_create(&ca, &s->c))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	struct state *s = *state;

	embkv_table_close(s->t);
	embkv_client_destroy(s->c);
	embkv_test_cluster_stop(&s->cl, STOP_MS);
	free(s);
	return 0;
}

/* Stores NKEYS rows, then erases every ERASE_EVERY-th. */
static void fill(struct state *s)
{
	uint64_t *keys = malloc(NKEYS * sizeof(*keys));
	float *vals = malloc((size_t)NKEYS * DIM * sizeof(float));
	uint32_t ne = 0, erased = 0;

	assert_non_null(keys);
	assert_non_null(vals);
	for (uint32_t i = 0; i < NKEYS; i++) {
		keys[i] = key_of(i);
		for (uint32_t j = 0; j < DIM; j++)
			vals[(size_t)i * DIM + j] = val(keys[i], j);
	}
	assert_int_equal(embkv_assign(s->t, NKEYS, keys, vals), 0);
	for (uint32_t i = 0; i < NKEYS; i += ERASE_EVERY)
		keys[ne++] = key_of(i);
	assert_int_equal(embkv_erase(s->t, ne, keys, &erased), 0);
	assert_int_equal(erased, ne);
	free(vals);
	free(keys);
}

static int erased_index(uint32_t i)
{
	return i % ERASE_EVERY == 0;
}

/* Index of key k among key_of(0..NKEYS), or -1. */
static int64_t index_of(uint64_t k)
{
	for (uint32_t i = 0; i < NKEYS; i++)
		if (key_of(i) == k)
			return i;
	return -1;
}

/* Scans partition p with pages of max rows, counting each key in seen. */
static void scan_part(struct state *s, uint32_t p, uint32_t max,
		      uint32_t *seen, uint32_t *pages)
{
	uint64_t *keys = malloc(max * sizeof(*keys)), cursor = 0;
	float *vals = malloc((size_t)max * DIM * sizeof(float));
	uint32_t n, guard = 0;

	assert_non_null(keys);
	assert_non_null(vals);
	while (cursor != EMBKV_SCAN_END) {
		assert_int_equal(embkv_scan(s->t, p, &cursor, max, keys, vals,
					    &n), 0);
		assert_true(n <= max);
		(*pages)++;
		for (uint32_t r = 0; r < n; r++) {
			int64_t i = index_of(keys[r]);

			assert_true(i >= 0);
			assert_false(erased_index((uint32_t)i));
			seen[i]++;
			for (uint32_t j = 0; j < DIM; j++)
				assert_true(vals[(size_t)r * DIM + j] ==
					    val(keys[r], j));
		}
		assert_true(++guard < 100000);
	}
	/* at the end: a no-op */
	assert_int_equal(embkv_scan(s->t, p, &cursor, max, keys, vals, &n), 0);
	assert_int_equal(n, 0);
	free(vals);
	free(keys);
}

static void test_every_row_once(void **state)
{
	struct state *s = *state;
	uint32_t *seen = calloc(NKEYS, sizeof(*seen)), pages = 0;

	assert_non_null(seen);
	make_table(s);
	fill(s);
	for (uint32_t p = 0; p < PARTS; p++)
		scan_part(s, p, 7, seen, &pages);
	for (uint32_t i = 0; i < NKEYS; i++)
		if (seen[i] != (erased_index(i) ? 0u : 1u))
			fail_msg("key %u seen %u times", i, seen[i]);
	assert_true(pages >= (NKEYS - NKEYS / ERASE_EVERY) / 7);
	/* pages of one row, on two partitions (one per server) */
	memset(seen, 0, NKEYS * sizeof(*seen));
	pages = 0;
	scan_part(s, 0, 1, seen, &pages);
	scan_part(s, 1, 1, seen, &pages);
	for (uint32_t i = 0, sum = 0; i < NKEYS; i++) {
		assert_true(seen[i] <= 1);
		sum += seen[i];
		if (i == NKEYS - 1)
			assert_true(pages >= sum);
	}
	/* one big page per partition */
	memset(seen, 0, NKEYS * sizeof(*seen));
	for (uint32_t p = 0; p < PARTS; p++)
		scan_part(s, p, 1u << 20, seen, &pages);
	for (uint32_t i = 0; i < NKEYS; i++)
		assert_int_equal(seen[i], erased_index(i) ? 0u : 1u);
	free(seen);
}

static void test_refusals(void **state)
{
	struct state *s = *state;
	struct embkv_table_handle *old;
	uint64_t keys[4], cursor = 0;
	float vals[4 * DIM];
	uint32_t n = 99;

	make_table(s);
	fill(s);
	assert_int_equal(embkv_scan(s->t, PARTS, &cursor, 4, keys, vals, &n),
			 -EINVAL);
	assert_int_equal(embkv_scan(s->t, 0, &cursor, 0, keys, vals, &n),
			 -EINVAL);
	assert_int_equal(embkv_scan(s->t, 0, NULL, 4, keys, vals, &n),
			 -EINVAL);
	assert_int_equal(embkv_scan(NULL, 0, &cursor, 4, keys, vals, &n),
			 -EINVAL);
	/* a cursor past the partition's capacity: the server refuses */
	cursor = 1ull << 40;
	assert_int_equal(embkv_scan(s->t, 0, &cursor, 4, keys, vals, &n),
			 -EINVAL);
	assert_int_equal(cursor, 1ull << 40);
	/* the table dropped and created again: the old handle's uid is
	 * stale on every server */
	old = s->t;
	s->t = NULL;
	assert_int_equal(embkv_table_drop_remote(s->c, TABLE), 0);
	make_table(s);
	fill(s);
	for (uint32_t p = 0; p < NSRV; p++) {
		cursor = 0;
		assert_int_equal(embkv_scan(old, p, &cursor, 4, keys, vals,
					    &n), EMBKV_ENOTABLE);
	}
	embkv_table_close(old);
	cursor = 0;
	assert_int_equal(embkv_scan(s->t, 0, &cursor, 4, keys, vals, &n), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_row_once, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup,
						teardown),
	};

	return cmocka_run_group_tests_name("client scan", tests, NULL, NULL);
}
