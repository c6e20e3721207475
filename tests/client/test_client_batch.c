/*
 * Unit tests for client/batch.c, no server: dedup (order, chains, every
 * position covered), gradient coalescing (sums bit-identical to a plain
 * sequential loop), partitions (computed with the dedup) equal to the
 * server store's own embkv_table_partition_of for many keys, seeds and
 * partition counts, and grouping by server.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/batch.h"
#include "server/store.h"

#define DIM 5u
#define BIG_N 100000u
#define BIG_RANGE 7000u
#define ROUTE_KEYS 200000u
#define ROUTE_SERVERS 7u
#define TEST_SEED 0x1234567ull

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void test_dedup_small(void **state)
{
	const uint64_t keys[] = { 5, 9, 5, 0, UINT64_MAX, 9, 5, 0 };
	const uint32_t n = sizeof(keys) / sizeof(keys[0]);
	struct embkv_batch b;

	(void)state;
	assert_int_equal(embkv_batch_dedup(&b, n, keys), 0);
	assert_int_equal(b.n, n);
	assert_int_equal(b.nuniq, 4);
	assert_true(b.ukeys[0] == 5 && b.ukeys[1] == 9 && b.ukeys[2] == 0 &&
		    b.ukeys[3] == UINT64_MAX);
	/* key 5: positions 0, 2, 6 */
	assert_int_equal(b.first[0], 0);
	assert_int_equal(b.next[0], 2);
	assert_int_equal(b.next[2], 6);
	assert_int_equal(b.next[6], EMBKV_BATCH_END);
	assert_int_equal(b.last[0], 6);
	assert_int_equal(b.first[3], 4);
	assert_int_equal(b.next[4], EMBKV_BATCH_END);
	embkv_batch_destroy(&b);
	embkv_batch_destroy(&b); /* zeroed: no-op */

	assert_int_equal(embkv_batch_dedup(&b, 0, NULL), 0);
	assert_int_equal(b.nuniq, 0);
	embkv_batch_destroy(&b);
	assert_int_equal(embkv_batch_dedup(&b, 3, NULL), -EINVAL);
}

/* In caller memory: the same result as dedup, reusable across calls,
 * never freed by destroy (ASan would report the double free), and a
 * misaligned or missing buffer is refused. */
static void test_dedup_into(void **state)
{
	const uint64_t keys[] = { 7, 3, 7, 7, 42, 3 };
	const uint32_t n = sizeof(keys) / sizeof(keys[0]);
	size_t bytes = embkv_batch_dedup_bytes(n);
	uint8_t *mem = malloc(bytes + 8);
	struct embkv_batch a, b;

	(void)state;
	assert_non_null(mem);
	assert_int_equal(embkv_batch_dedup(&a, n, keys), 0);
	for (int round = 0; round < 2; round++) {
		memset(mem, 0xa5, bytes + 8); /* stale contents must not matter */
		assert_int_equal(embkv_batch_dedup_into(&b, n, keys, mem), 0);
		assert_null(b.mem);
		assert_int_equal(b.nuniq, a.nuniq);
		assert_int_equal(b.nuniq, 3);
		for (uint32_t u = 0; u < b.nuniq; u++) {
			assert_true(b.ukeys[u] == a.ukeys[u]);
			assert_int_equal(b.first[u], a.first[u]);
			assert_int_equal(b.last[u], a.last[u]);
		}
		for (uint32_t p = 0; p < n; p++)
			assert_int_equal(b.next[p], a.next[p]);
		embkv_batch_destroy(&b);
	}
	assert_int_equal(embkv_batch_dedup_into(&b, n, keys, mem + 4), -EINVAL);
	assert_int_equal(embkv_batch_dedup_into(&b, n, keys, NULL), -EINVAL);
	embkv_batch_destroy(&a);
	free(mem);
}

/* Every position is on its key's chain exactly once, chains ascend. */
static void test_dedup_big(void **state)
{
	uint64_t *keys = malloc(BIG_N * sizeof(*keys)), s = TEST_SEED;
	uint32_t *seen = calloc(BIG_N, sizeof(*seen)), u, p, prev, count = 0;
	uint8_t *distinct = calloc(BIG_RANGE, 1);
	uint32_t ndistinct = 0;
	struct embkv_batch b;

	(void)state;
	assert_non_null(keys);
	assert_non_null(seen);
	assert_non_null(distinct);
	for (uint32_t i = 0; i < BIG_N; i++) {
		/* sequential-looking ids: the mixer must spread them */
		keys[i] = (rng(&s) % BIG_RANGE) << 20;
		if (!distinct[keys[i] >> 20]) {
			distinct[keys[i] >> 20] = 1;
			ndistinct++;
		}
	}
	assert_int_equal(embkv_batch_dedup(&b, BIG_N, keys), 0);
	assert_int_equal(b.nuniq, ndistinct);
	for (u = 0; u < b.nuniq; u++) {
		prev = 0;
		for (p = b.first[u]; p != EMBKV_BATCH_END; p = b.next[p]) {
			assert_true(p < BIG_N);
			assert_true(keys[p] == b.ukeys[u]);
			assert_true(p == b.first[u] || p > prev);
			assert_int_equal(seen[p], 0);
			seen[p] = 1;
			prev = p;
			count++;
		}
		assert_int_equal(prev, b.last[u]);
		if (u > 0) /* order of first appearance */
			assert_true(b.first[u] > b.first[u - 1]);
	}
	assert_int_equal(count, BIG_N);
	embkv_batch_destroy(&b);
	free(distinct);
	free(seen);
	free(keys);
}

/* Coalesced gradients equal a plain loop over the batch, bit for bit. */
static void test_sum_exact(void **state)
{
	const uint32_t n = 5000;
	uint64_t *keys = malloc(n * sizeof(*keys)), s = TEST_SEED;
	float *grads = malloc((size_t)n * DIM * sizeof(float));
	float got[DIM], want[DIM];
	struct embkv_batch b;

	(void)state;
	assert_non_null(keys);
	assert_non_null(grads);
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = rng(&s) % 300; /* ~17 duplicates per key */
		for (uint32_t j = 0; j < DIM; j++)
			grads[i * DIM + j] =
				(float)((int64_t)(rng(&s) % 2000001) - 1000000) *
				1e-7f;
	}
	assert_int_equal(embkv_batch_dedup(&b, n, keys), 0);
	for (uint32_t u = 0; u < b.nuniq; u++) {
		int first = 1;

		for (uint32_t i = 0; i < n; i++) {
			if (keys[i] != b.ukeys[u])
				continue;
			for (uint32_t j = 0; j < DIM; j++)
				want[j] = first ? grads[i * DIM + j]
						: want[j] + grads[i * DIM + j];
			first = 0;
		}
		embkv_batch_sum_row(&b, u, grads, DIM, got);
		assert_memory_equal(got, want, sizeof(got));
	}
	embkv_batch_destroy(&b);
	free(grads);
	free(keys);
}

/* A store table with this partition count and seed: its
 * embkv_table_partition_of is the reference for the client's. */
static struct embkv_table *reference_table(uint32_t partitions, uint64_t seed)
{
	struct embkv_table_attr a;
	struct embkv_table *t;

	embkv_table_attr_init(&a);
	a.dim = 1;
	a.partitions = partitions;
	a.capacity = partitions * 4u;
	a.hash_seed = seed;
	assert_int_equal(embkv_table_create(&a, &t), 0);
	return t;
}

static void assert_partitions(struct embkv_table *t,
			      const struct embkv_batch *b,
			      const uint32_t *upart)
{
	for (uint32_t u = 0; u < b->nuniq; u++)
		assert_int_equal(upart[u],
				 embkv_table_partition_of(t, b->ukeys[u]));
}

/* The client's partitions are the server store's, for every count. */
static void test_partitions_match_server(void **state)
{
	const uint32_t counts[] = { 1, 2, 64, 1024, 65536 };
	const uint64_t seeds[] = { 0, 0x656d626b76ull, UINT64_MAX };
	uint64_t *keys = malloc(ROUTE_KEYS * sizeof(*keys)), s = TEST_SEED;
	uint32_t *upart = malloc(ROUTE_KEYS * sizeof(*upart));
	uint8_t *mem = malloc(embkv_batch_dedup_bytes(ROUTE_KEYS));
	struct embkv_batch b;

	(void)state;
	assert_non_null(keys);
	assert_non_null(upart);
	assert_non_null(mem);
	for (uint32_t i = 0; i < ROUTE_KEYS; i++)
		keys[i] = i < 1000 ? i : rng(&s); /* small ids and random */
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
			struct embkv_table *t = reference_table(counts[c],
								seeds[k]);

			assert_int_equal(embkv_batch_dedup_parts_into(
						 &b, ROUTE_KEYS, keys, mem,
						 seeds[k], counts[c], upart),
					 0);
			assert_partitions(t, &b, upart);
			embkv_table_destroy(t);
		}
	}
	free(mem);
	free(upart);
	free(keys);
}

/* Dedup with partitions from the same hashes: the same dedup as without, and
 * the store's partition for every distinct key, under several seeds. */
static void test_dedup_parts(void **state)
{
	const uint32_t counts[] = { 1, 256, 65536 };
	const uint64_t seeds[] = { 0, 0x656d626b76ull, UINT64_MAX };
	uint64_t *keys = malloc(ROUTE_KEYS * sizeof(*keys)), s = TEST_SEED;
	uint32_t *upart = malloc(ROUTE_KEYS * sizeof(*upart));
	uint8_t *mem = malloc(embkv_batch_dedup_bytes(ROUTE_KEYS));
	struct embkv_batch plain, b;

	(void)state;
	assert_non_null(keys);
	assert_non_null(upart);
	assert_non_null(mem);
	for (uint32_t i = 0; i < ROUTE_KEYS; i++) /* about 4 positions a key */
		keys[i] = i < 1000 ? i % 7 : rng(&s) % (ROUTE_KEYS / 4);
	assert_int_equal(embkv_batch_dedup(&plain, ROUTE_KEYS, keys), 0);
	assert_true(plain.nuniq < ROUTE_KEYS / 3);
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
			struct embkv_table *t = reference_table(counts[c],
								seeds[k]);

			memset(upart, 0xff, ROUTE_KEYS * sizeof(*upart));
			assert_int_equal(embkv_batch_dedup_parts_into(
						 &b, ROUTE_KEYS, keys, mem,
						 seeds[k], counts[c], upart),
					 0);
			assert_int_equal(b.nuniq, plain.nuniq);
			assert_memory_equal(b.ukeys, plain.ukeys,
					    b.nuniq * sizeof(*b.ukeys));
			assert_memory_equal(b.first, plain.first,
					    b.nuniq * sizeof(*b.first));
			assert_memory_equal(b.last, plain.last,
					    b.nuniq * sizeof(*b.last));
			assert_memory_equal(b.next, plain.next,
					    ROUTE_KEYS * sizeof(*b.next));
			assert_partitions(t, &b, upart);
			embkv_table_destroy(t);
		}
	}
	embkv_batch_destroy(&plain);
	free(mem);
	free(upart);
	free(keys);
}

static void test_route(void **state)
{
	const uint32_t nparts = 256, nitems = 10000;
	uint16_t part_srv[256];
	uint32_t *upart = malloc(nitems * sizeof(*upart));
	uint32_t *items = malloc(nitems * sizeof(*items));
	uint32_t *order = malloc(nitems * sizeof(*order));
	uint32_t off[ROUTE_SERVERS + 1], i, k;
	uint64_t s = TEST_SEED;

	(void)state;
	assert_non_null(upart);
	assert_non_null(items);
	assert_non_null(order);
	for (i = 0; i < nparts; i++)
		part_srv[i] = (uint16_t)(rng(&s) % ROUTE_SERVERS);
	for (i = 0; i < nitems; i++) {
		upart[i] = (uint32_t)(rng(&s) % nparts);
		items[i] = nitems - 1 - i; /* any order of distinct indexes */
	}
	assert_int_equal(embkv_batch_route(items, nitems, upart, part_srv,
					   ROUTE_SERVERS, order, off), 0);
	assert_int_equal(off[0], 0);
	assert_int_equal(off[ROUTE_SERVERS], nitems);
	for (uint32_t srv = 0; srv < ROUTE_SERVERS; srv++) {
		uint32_t expect = 0, at = off[srv];

		/* exactly the items of srv, in input order */
		for (k = 0; k < nitems; k++) {
			if (part_srv[upart[items[k]]] != srv)
				continue;
			assert_true(at < off[srv + 1]);
			assert_int_equal(order[at++], items[k]);
			expect++;
		}
		assert_int_equal(off[srv + 1] - off[srv], expect);
	}
	part_srv[upart[items[0]]] = ROUTE_SERVERS; /* out of range */
	assert_int_equal(embkv_batch_route(items, nitems, upart, part_srv,
					   ROUTE_SERVERS, order, off), -EINVAL);
	free(order);
	free(items);
	free(upart);
}

static void test_part_bits(void **state)
{
	(void)state;
	assert_int_equal(embkv_batch_part_bits(1), 0);
	assert_int_equal(embkv_batch_part_bits(2), 1);
	assert_int_equal(embkv_batch_part_bits(1024), 10);
	assert_int_equal(embkv_batch_part_bits(65536), 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dedup_small),
		cmocka_unit_test(test_dedup_into),
		cmocka_unit_test(test_dedup_big),
		cmocka_unit_test(test_sum_exact),
		cmocka_unit_test(test_partitions_match_server),
		cmocka_unit_test(test_dedup_parts),
		cmocka_unit_test(test_route),
		cmocka_unit_test(test_part_bits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
