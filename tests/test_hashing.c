/*
 * hashing/: known-answer values (the client and every server must place a
 * key identically, forever), partition balance, bucket choice, and the
 * bucket index on its own: cuckoo fill, lookups, erase.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "hashing/hash.h"
#include "hashing/index.h"
#include "hashing/sum.h"

struct kat {
	uint64_t key, seed, lo, hi;
	uint32_t part10;
	uint16_t fp;
	uint64_t b1, b2; /* of 1000 buckets */
};

/* Pinned when the placement functions were defined; a change here breaks
 * every existing client/server pair and every checkpoint. */
static const struct kat kats[] = {
	{0x0ull, 0x0ull, 0x45c3b49d035665b2ull, 0x2c0a8a99dc147d54ull, 279, 0x65b2, 859, 172},
	{0x1ull, 0x0ull, 0xbc08dc21994df8a2ull, 0xbdc94bce2eda264dull, 752, 0xf8a2, 183, 741},
	{0x2aull, 0x0ull, 0x61c2164e8b895a45ull, 0x9bab3e2f55e1fe86ull, 391, 0x5a45, 335, 608},
	{0xdeadbeefcafebabeull, 0x0ull, 0xfa0223fa68055fbdull, 0x2461df61ea289ef7ull, 1000, 0x5fbd, 914, 142},
	{0x0ull, 0x656d626b76ull, 0x18841017e1129724ull, 0x8d8ded8f09d45311ull, 98, 0x9724, 38, 552},
	{0x1ull, 0x656d626b76ull, 0xcc75f1f31d998c2full, 0xb59f3b0115cca910ull, 817, 0x8c2f, 85, 709},
	{0x2aull, 0x656d626b76ull, 0x8809477792692abeull, 0xfb0ac22ca6e466d6ull, 544, 0x2abe, 651, 980},
	{0xdeadbeefcafebabeull, 0x656d626b76ull, 0xac3adb96a0500225ull, 0x2798adaaeacd5be3ull, 688, 0x0225, 917, 154},
};

static void test_known_answers(void **state)
{
	(void)state;
	/* Published XXH3 values for the empty input. */
	XXH128_hash_t e = XXH3_128bits_withSeed("", 0, 0);

	assert_int_equal(XXH3_64bits("", 0), 0x2d06800538d394c2ull);
	assert_int_equal(e.high64, 0x99aa06d3014798d8ull);
	assert_int_equal(e.low64, 0x6001c324468d497full);
	for (size_t i = 0; i < sizeof(kats) / sizeof(kats[0]); i++) {
		const struct kat *k = &kats[i];
		struct embkv_khash h = embkv_hash_key(k->key, k->seed);
		uint64_t b1, b2;

		assert_int_equal(h.lo, k->lo);
		assert_int_equal(h.hi, k->hi);
		assert_int_equal(embkv_hash_partition(h, 10), k->part10);
		assert_int_equal(embkv_hash_fp(h), k->fp);
		embkv_hash_buckets(h, 1000, &b1, &b2);
		assert_int_equal(b1, k->b1);
		assert_int_equal(b2, k->b2);
	}
}

static void test_sum_variants_agree(void **state)
{
	uint8_t buf[1024];

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (size_t n = 0; n <= sizeof(buf); n += 17) {
		uint64_t want = XXH3_64bits(buf, n);

		assert_int_equal(embkv_sum(buf, n), want);
		assert_int_equal(embkv_sum_sse2(buf, n), want);
		__builtin_cpu_init();
		if (__builtin_cpu_supports("avx2"))
			assert_int_equal(embkv_sum_avx2(buf, n), want);
		if (__builtin_cpu_supports("avx512f"))
			assert_int_equal(embkv_sum_avx512(buf, n), want);
	}
	print_message("checksum variant in use: %s\n", embkv_sum_impl());
}

static void test_partition_balance(void **state)
{
	const unsigned bits = 10;
	const uint32_t nparts = 1u << bits;
	const uint64_t nkeys = 10000000;
	uint64_t *count = calloc(nparts, sizeof(*count));
	double mean = (double)nkeys / nparts;

	(void)state;
	assert_non_null(count);
	for (uint64_t k = 0; k < nkeys; k++)
		count[embkv_hash_partition(embkv_hash_key(k, 0x656d626b76ull),
					   bits)]++;
	for (uint32_t p = 0; p < nparts; p++) {
		assert_true((double)count[p] > mean * 0.95);
		assert_true((double)count[p] < mean * 1.05);
	}
	free(count);
}

static void test_partition_edges(void **state)
{
	struct embkv_khash h = { UINT64_MAX, 0 };

	(void)state;
	assert_int_equal(embkv_hash_partition(h, 0), 0);
	assert_int_equal(embkv_hash_partition(h, 16), 0xffff);
	h.lo = 0;
	assert_int_equal(embkv_hash_partition(h, 16), 0);
	assert_int_equal(embkv_hash_fp(h), 1); /* never 0: 0 means empty */
}

static void test_buckets_distinct_and_spread(void **state)
{
	const uint64_t nb = 977;
	uint32_t *hits = calloc(nb, sizeof(*hits));

	(void)state;
	assert_non_null(hits);
	for (uint64_t k = 0; k < 200000; k++) {
		uint64_t b1, b2;

		embkv_hash_buckets(embkv_hash_key(k, 3), nb, &b1, &b2);
		assert_true(b1 < nb && b2 < nb);
		assert_true(b1 != b2);
		hits[b1]++;
	}
	for (uint64_t b = 0; b < nb; b++)
		assert_true(hits[b] > 100 && hits[b] < 320); /* mean 205 */
	free(hits);
}

/* ---- the index on its own ---------------------------------------------- */

struct keyset {
	uint64_t *keys; /* row id -> key */
	uint64_t nbuckets;
};

static void keyset_buckets(void *ctx, uint64_t row, uint64_t *b1, uint64_t *b2)
{
	struct keyset *ks = ctx;

	embkv_hash_buckets(embkv_hash_key(ks->keys[row], 0), ks->nbuckets, b1, b2);
}

/* Row of key in the index, or UINT64_MAX. */
static uint64_t index_find(const struct embkv_index *ix, const struct keyset *ks,
			   uint64_t key)
{
	struct embkv_khash h = embkv_hash_key(key, 0);
	uint64_t bs[2];

	embkv_hash_buckets(h, ix->nbuckets, &bs[0], &bs[1]);
	for (int k = 0; k < 2; k++)
		for (unsigned m = embkv_index_match(ix, bs[k], embkv_hash_fp(h));
		     m; m &= m - 1) {
			uint64_t row = embkv_slot_row(embkv_index_slot_load(
				ix, bs[k], (unsigned)__builtin_ctz(m)));

			if (ks->keys[row] == key)
				return row;
		}
	return UINT64_MAX;
}

static void test_index_fill_find_erase(void **state)
{
	const uint64_t nb = 1u << 14;
	const uint64_t slots = nb * EMBKV_BUCKET_SLOTS;
	struct embkv_index ix;
	struct keyset ks = { calloc(slots, sizeof(uint64_t)), nb };
	struct embkv_index_locator loc = { keyset_buckets, &ks };
	uint64_t n = 0;

	(void)state;
	assert_non_null(ks.keys);
	assert_int_equal(embkv_index_init(&ix, nb, NULL), 0);
	for (;; n++) {
		uint64_t key = n * 0x9e3779b97f4a7c15ull + 11;
		struct embkv_khash h = embkv_hash_key(key, 0);
		uint64_t b1, b2;

		if (n == slots)
			break;
		ks.keys[n] = key;
		embkv_hash_buckets(h, nb, &b1, &b2);
		if (embkv_index_insert(&ix, embkv_slot_make(embkv_hash_fp(h), n),
				       b1, b2, &loc) != 0)
			break;
	}
	print_message("index full at load %.4f after %llu cuckoo moves\n",
		      embkv_index_load(&ix), (unsigned long long)ix.cuckoo_moves);
	assert_true(embkv_index_load(&ix) > 0.90);
	assert_int_equal(ix.used, n);
	assert_true(ix.cuckoo_moves > 0);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(index_find(&ix, &ks, ks.keys[i]), i);
	assert_int_equal(ix.moves_seq % 2, 0);
	/* erase every third key: gone, the others stay */
	for (uint64_t i = 0; i < n; i += 3) {
		struct embkv_khash h = embkv_hash_key(ks.keys[i], 0);
		uint64_t bs[2];
		int done = 0;

		embkv_hash_buckets(h, nb, &bs[0], &bs[1]);
		for (int k = 0; k < 2 && !done; k++)
			for (unsigned s = 0; s < EMBKV_BUCKET_SLOTS; s++)
				if (embkv_slot_row(ix.buckets[bs[k]].slot[s]) == i &&
				    ix.buckets[bs[k]].slot[s]) {
					embkv_index_clear(&ix, bs[k], s);
					done = 1;
					break;
				}
		assert_true(done);
	}
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(index_find(&ix, &ks, ks.keys[i]),
				 i % 3 == 0 ? UINT64_MAX : i);
	embkv_index_fini(&ix);
	free(ks.keys);
}

static void test_index_match_against_scalar(void **state)
{
	struct embkv_index ix;
	uint64_t rng = 7;

	(void)state;
	assert_int_equal(embkv_index_init(&ix, 4, NULL), 0);
	for (int round = 0; round < 100000; round++) {
		uint16_t fp = (uint16_t)(1 + round % 7);
		unsigned want = 0;

		for (unsigned i = 0; i < EMBKV_BUCKET_SLOTS; i++) {
			uint64_t row, f;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			/* row bits that look like fp must not count */
			row = (rng >> 16) & EMBKV_ROW_MASK;
			if (rng & 1)
				row = (row & ~0xffffull) | fp;
			f = (rng >> 8) % 9; /* 0: empty; 1..8 */
			ix.buckets[1].slot[i] = f ? embkv_slot_make((uint16_t)f, row) : 0;
			want |= (unsigned)(f == fp) << i;
		}
		assert_int_equal(embkv_index_match(&ix, 1, fp), want);
	}
	embkv_index_fini(&ix);
}

static void test_index_rejects_bad_memory(void **state)
{
	struct embkv_index ix;
	static uint8_t misaligned[8192] __attribute__((aligned(4096)));

	(void)state;
	assert_int_equal(embkv_index_init(&ix, 0, NULL), -EINVAL);
	assert_int_equal(embkv_index_init(&ix, 4, misaligned + 8), -EINVAL);
	assert_int_equal(embkv_index_init(&ix, 4, misaligned), 0);
	assert_ptr_equal(ix.buckets, (void *)misaligned);
	embkv_index_fini(&ix);
	embkv_index_fini(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_sum_variants_agree),
		cmocka_unit_test(test_partition_balance),
		cmocka_unit_test(test_partition_edges),
		cmocka_unit_test(test_buckets_distinct_and_spread),
		cmocka_unit_test(test_index_fill_find_erase),
		cmocka_unit_test(test_index_match_against_scalar),
		cmocka_unit_test(test_index_rejects_bad_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
