/*
 * eviction/: LFU counters and decay, the count-min admission sketch, and
 * the store's behaviour at capacity: Zipf-hot keys survive, cold keys go,
 * rows never exceed capacity, admission N=3 stores a key on its third
 * sighting and not before.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eviction/admit.h"
#include "eviction/lfu.h"
#include "server/init.h"
#include "server/store.h"

static void test_lfu_counts_saturate_and_decay_lazily(void **state)
{
	uint32_t w[3] = { 0, 0, 0 };
	unsigned counts[3];

	(void)state;
	for (int i = 0; i < 40000; i++)
		embkv_lfu_touch(&w[0], 0);
	assert_int_equal(embkv_lfu_count(w[0], 0), EMBKV_LFU_COUNT_MAX);
	assert_false(w[0] & EMBKV_LFU_DIRTY); /* an access is not a write */
	for (int i = 0; i < 10; i++)
		embkv_lfu_touch(&w[1], 0);
	embkv_lfu_mark_dirty(&w[1]);
	embkv_lfu_add(&w[2], 3, 0);
	assert_int_equal(embkv_lfu_count(w[2], 0), 3);
	for (int i = 0; i < 3; i++)
		counts[i] = embkv_lfu_count(w[i], 0);
	assert_int_equal(embkv_lfu_pick_victim(counts, 3), 2);
	/* one epoch later every count is worth half, without a pass */
	assert_int_equal(embkv_lfu_count(w[0], 1), EMBKV_LFU_COUNT_MAX / 2);
	assert_int_equal(embkv_lfu_count(w[1], 1), 5);
	assert_int_equal(embkv_lfu_count(w[2], 1), 1);
	assert_int_equal(embkv_lfu_count(w[0], 16), 0);
	/* touching at a later epoch folds the decay in, keeps the dirty bit */
	embkv_lfu_touch(&w[1], 2);
	assert_int_equal(embkv_lfu_count(w[1], 2), 3);
	assert_true(w[1] & EMBKV_LFU_DIRTY);
	/* the epoch wraps around without making old counts young */
	w[2] = embkv_lfu_make(100, 0, 0xfffe);
	assert_int_equal(embkv_lfu_count(w[2], 0x0001), 100 >> 3);
	embkv_lfu_add(&w[2], 100000, 1);
	assert_int_equal(embkv_lfu_count(w[2], 1), EMBKV_LFU_COUNT_MAX);
}

static void test_cms_never_underestimates(void **state)
{
	struct embkv_cms s;
	unsigned truth[5000] = { 0 };
	uint64_t seed = 1;
	unsigned over = 0;

	(void)state;
	assert_int_equal(embkv_cms_init(&s, 16384, 7, 1u << 30), 0);
	for (int i = 0; i < 20000; i++) {
		seed = seed * 6364136223846793005ull + 1;
		unsigned k = (unsigned)((seed >> 33) % 5000);

		truth[k]++;
		embkv_cms_add(&s, k);
	}
	for (unsigned k = 0; k < 5000; k++) {
		unsigned e = embkv_cms_estimate(&s, k);
		unsigned want = truth[k] > 255 ? 255 : truth[k];

		assert_true(e >= want);
		over += e > want;
	}
	print_message("over-estimates: %u of 5000\n", over);
	assert_true(over < 100); /* conservative update keeps errors rare */
	embkv_cms_fini(&s);
	assert_int_equal(embkv_cms_init(&s, 0, 0, 0), -EINVAL);
}

static void test_cms_decay_halves(void **state)
{
	struct embkv_cms s;

	(void)state;
	assert_int_equal(embkv_cms_init(&s, 1024, 1, 100), 0);
	for (int i = 0; i < 99; i++)
		embkv_cms_add(&s, 42);
	assert_int_equal(embkv_cms_estimate(&s, 42), 99);
	embkv_cms_add(&s, 42); /* the 100th addition halves everything */
	assert_int_equal(embkv_cms_estimate(&s, 42), 50);
	embkv_cms_fini(&s);
}

static struct embkv_table *table(uint64_t cap, uint32_t admit, uint32_t decay)
{
	struct embkv_table_attr a;
	struct embkv_table *t;

	embkv_table_attr_init(&a);
	a.dim = 8;
	a.capacity = cap;
	a.partitions = 4;
	a.admit_after = admit;
	a.lfu_decay_period = decay;
	assert_int_equal(embkv_table_create(&a, &t), 0);
	return t;
}

/* Zipf(s) rank sampler over n ranks by inverting a cumulative table. */
struct zipf {
	double *cdf;
	uint64_t n;
	uint64_t rng;
};

static void zipf_init(struct zipf *z, uint64_t n, double s)
{
	double sum = 0;

	z->cdf = malloc(n * sizeof(double));
	z->n = n;
	z->rng = 12345;
	for (uint64_t r = 0; r < n; r++) {
		sum += pow((double)(r + 1), -s);
		z->cdf[r] = sum;
	}
}

static uint64_t zipf_next(struct zipf *z)
{
	double u;
	uint64_t lo = 0, hi = z->n - 1;

	z->rng = z->rng * 6364136223846793005ull + 1442695040888963407ull;
	u = (double)(z->rng >> 11) / 9007199254740992.0 * z->cdf[z->n - 1];
	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;

		if (z->cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static uint64_t rank_key(uint64_t r)
{
	return r * 0x9e3779b97f4a7c15ull + 17;
}

static void test_zipf_hot_survive_cold_go(void **state)
{
	const uint64_t nranks = 1000000, cap = 4096, pulls = 400000;
	const uint32_t batch = 256;
	struct embkv_table *t = table(cap, 1, 8);
	struct zipf z;
	uint64_t keys[256], hot[100];
	uint8_t *seen = calloc(nranks, 1), found[256];
	float out[256 * 8];
	struct embkv_table_stats st;
	uint64_t cold_once = 0, cold_present = 0;

	(void)state;
	zipf_init(&z, nranks, 1.05);
	for (uint64_t i = 0; i < pulls; i += batch) {
		for (uint32_t j = 0; j < batch; j++) {
			uint64_t r = zipf_next(&z);

			keys[j] = rank_key(r);
			if (seen[r] < 255)
				seen[r] += (uint8_t)(1 + (i < pulls / 2 ? 0 : 100));
		}
		embkv_table_pull(t, batch, keys, out, NULL, EMBKV_PULL_TRAIN, NULL);
		embkv_table_get_stats(t, &st);
		assert_true(st.rows <= cap);
		for (uint32_t p = 0; p < t->nparts; p++)
			assert_true(t->parts[p].rows <= t->parts[p].capacity);
	}
	assert_true(st.sum.evictions > 0);
	/* the 100 hottest keys are all stored */
	for (int r = 0; r < 100; r++)
		hot[r] = rank_key((uint64_t)r);
	assert_int_equal(embkv_table_find(t, 100, hot, out, found, NULL, NULL),
			 100);
	/* cold keys seen exactly once, in the first half, are gone */
	for (uint64_t r = 100000; r < nranks; r++) {
		uint64_t k = rank_key(r);

		if (seen[r] != 1)
			continue;
		cold_once++;
		cold_present += embkv_table_find(t, 1, &k, out, found, NULL, NULL);
	}
	print_message("evictions %llu; cold keys seen once early: %llu, still "
		      "stored: %llu\n", (unsigned long long)st.sum.evictions,
		      (unsigned long long)cold_once,
		      (unsigned long long)cold_present);
	assert_true(cold_once > 10000);
	assert_true(cold_present * 100 < cold_once); /* under 1% */
	free(z.cdf);
	free(seen);
	embkv_table_destroy(t);
}

static void test_admission_third_sighting(void **state)
{
	struct embkv_table *t = table(100000, 3, 8);
	uint64_t keys[1000];
	float out[1000 * 8], want[8];
	uint8_t found[1000];
	struct embkv_table_stats st;

	(void)state;
	for (int i = 0; i < 1000; i++)
		keys[i] = (uint64_t)i * 31 + 5;
	for (int sighting = 1; sighting <= 3; sighting++) {
		embkv_table_pull(t, 1000, keys, out, found, EMBKV_PULL_TRAIN, NULL);
		for (int i = 0; i < 1000; i++) {
			/* rejected or new: the initializer's row either way */
			embkv_init_row(&t->attr.init, keys[i], 8, want);
			assert_memory_equal(out + i * 8, want, sizeof(want));
			assert_int_equal(found[i], 0);
		}
		embkv_table_get_stats(t, &st);
		if (sighting < 3) {
			assert_int_equal(st.rows, 0);
			assert_int_equal(embkv_table_find(t, 1000, keys, out,
							  found, NULL, NULL), 0);
		}
	}
	assert_int_equal(st.rows, 1000);
	assert_int_equal(st.sum.admit_rejects, 2000);
	assert_int_equal(embkv_table_find(t, 1000, keys, out, found, NULL, NULL),
			 1000);
	/* infer mode is not a sighting */
	{
		uint64_t k = 999999;

		for (int i = 0; i < 5; i++)
			embkv_table_pull(t, 1, &k, out, NULL, EMBKV_PULL_INFER, NULL);
		embkv_table_pull(t, 1, &k, out, found, EMBKV_PULL_TRAIN, NULL);
		assert_int_equal(embkv_table_find(t, 1, &k, out, found, NULL,
						  NULL), 0);
	}
	embkv_table_destroy(t);
}

static void test_store_decays_counters(void **state)
{
	struct embkv_table *t = table(64, 1, 1); /* decay every 16 touches */
	uint64_t k = 7;
	float out[8];
	struct embkv_table_stats st;
	struct embkv_part *p = &t->parts[embkv_table_partition_of(t, k)];
	uint32_t *meta;

	(void)state;
	for (int i = 0; i < 15; i++)
		embkv_table_pull(t, 1, &k, out, NULL, EMBKV_PULL_TRAIN, NULL);
	embkv_table_get_stats(t, &st);
	assert_int_equal(st.sum.decays, 0);
	meta = embkv_record_meta(embkv_part_record(p, 0), t->payload_bytes);
	assert_int_equal(embkv_lfu_count(*meta, p->clock.epoch), 15);
	embkv_table_pull(t, 1, &k, out, NULL, EMBKV_PULL_TRAIN, NULL);
	embkv_table_get_stats(t, &st);
	assert_int_equal(st.sum.decays, 1);
	assert_int_equal(embkv_lfu_count(*meta, p->clock.epoch), 8);
	assert_true(*meta & EMBKV_LFU_DIRTY); /* created: dirty */
	embkv_table_destroy(t);
}

/* Capacity is exact: the partitions' capacities add up to the table's, and
 * Zipf inserts (hot keys again and again, a long tail of cold ones) never
 * make the table hold one row more, for capacities that do not divide
 * evenly and for fewer rows than partitions would suggest. */
static void test_capacity_exact_under_zipf(void **state)
{
	static const struct { uint64_t cap; uint32_t parts; } cases[] = {
		{ 1000, 64 }, { 1000, 16 }, { 1001, 8 }, { 100, 64 }, { 7, 16 },
	};
	const uint32_t batch = 256;
	uint64_t keys[256];
	float *out = malloc(sizeof(float) * 8 * batch);
	struct zipf z;

	(void)state;
	zipf_init(&z, 200000, 1.05);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct embkv_table_attr a;
		struct embkv_table *t;
		struct embkv_table_stats st;
		uint64_t sum = 0;

		embkv_table_attr_init(&a);
		a.dim = 8;
		a.capacity = cases[c].cap;
		a.partitions = cases[c].parts;
		assert_int_equal(embkv_table_create(&a, &t), 0);
		for (uint32_t p = 0; p < t->nparts; p++)
			sum += t->parts[p].capacity;
		assert_int_equal(sum, cases[c].cap);
		embkv_table_get_stats(t, &st);
		assert_int_equal(st.capacity, cases[c].cap);
		for (int round = 0; round < 200; round++) {
			for (uint32_t i = 0; i < batch; i++)
				keys[i] = rank_key(zipf_next(&z));
			embkv_table_pull(t, batch, keys, out, NULL,
					 EMBKV_PULL_TRAIN, NULL);
			embkv_table_get_stats(t, &st);
			assert_true(st.rows <= cases[c].cap);
			for (uint32_t p = 0; p < t->nparts; p++)
				assert_true(t->parts[p].rows <=
					    t->parts[p].capacity);
		}
		/* Full: every partition that may hold rows holds all it may. */
		assert_int_equal(st.rows, cases[c].cap);
		embkv_table_destroy(t);
	}
	free(z.cdf);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lfu_counts_saturate_and_decay_lazily),
		cmocka_unit_test(test_cms_never_underestimates),
		cmocka_unit_test(test_cms_decay_halves),
		cmocka_unit_test(test_zipf_hot_survive_cold_go),
		cmocka_unit_test(test_capacity_exact_under_zipf),
		cmocka_unit_test(test_admission_third_sighting),
		cmocka_unit_test(test_store_decays_counters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
