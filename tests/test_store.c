/*
 * server/store: find-or-insert with deterministic initializers, infer mode,
 * push through the optimizer, assign and erase, capacity, and filling the
 * index until the first eviction with every stored key findable.
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
#include "server/init.h"
#include "server/store.h"

#define DIM 16u

static struct embkv_table *make_table(uint64_t capacity, uint32_t parts,
				      enum embkv_optimizer opt)
{
	struct embkv_table_attr a;
	struct embkv_table *t;

	embkv_table_attr_init(&a);
	a.dim = DIM;
	a.capacity = capacity;
	a.partitions = parts;
	a.opt.type = opt;
	a.opt.lr = 0.5f;
	a.init.seed = 99;
	assert_int_equal(embkv_table_create(&a, &t), 0);
	return t;
}

static void test_create_rejects_bad_attr(void **state)
{
	struct embkv_table_attr a;
	struct embkv_table *t = (void *)1;

	(void)state;
	embkv_table_attr_init(&a);
	a.partitions = 3;
	assert_int_equal(embkv_table_create(&a, &t), -EINVAL);
	assert_null(t);
	embkv_table_attr_init(&a);
	a.dim = 0;
	assert_int_equal(embkv_table_create(&a, &t), -EINVAL);
	embkv_table_attr_init(&a);
	a.dim = EMBKV_MAX_DIM + 1;
	assert_int_equal(embkv_table_create(&a, &t), EMBKV_ELIMIT);
	embkv_table_attr_init(&a);
	a.opt.lr = -1;
	assert_int_equal(embkv_table_create(&a, &t), -EINVAL);
	embkv_table_attr_init(&a);
	a.init.type = EMBKV_INIT_UNIFORM;
	a.init.a = 1;
	a.init.b = 0;
	assert_int_equal(embkv_table_create(&a, &t), -EINVAL);
	embkv_table_attr_init(&a);
	a.name[0] = 0;
	assert_int_equal(embkv_table_create(&a, &t), -EINVAL);
	embkv_table_attr_init(&a);
	a.index_load = 1.5f;
	assert_int_equal(embkv_table_create(&a, &t), -EINVAL);
	embkv_table_destroy(NULL);
}

/* embkv_table_size() predicts what a built table maps (all but the small
 * per-partition structures), validates like create, and sizes tables far
 * too big to build without mapping anything. */
static void test_table_size_predicts_create(void **state)
{
	static const enum embkv_optimizer opts[] = {
		EMBKV_OPT_SGD, EMBKV_OPT_ADAGRAD, EMBKV_OPT_ADAM, EMBKV_OPT_FTRL
	};
	struct embkv_table_stats st;
	struct embkv_table_attr a;
	uint64_t bytes, small;

	(void)state;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		struct embkv_table *t = make_table(100000, 8, opts[i]);

		a = t->attr;
		assert_int_equal(embkv_table_size(&a, &bytes), 0);
		embkv_table_get_stats(t, &st);
		assert_true(bytes <= st.bytes);
		assert_true(st.bytes - bytes < 64 * 1024);
		/* The arena alone is capacity * stride. */
		assert_true(bytes >= 100000 * t->stride);
		embkv_table_destroy(t);
	}
	embkv_table_attr_init(&a);
	a.dim = 64;
	a.partitions = 65536;
	a.capacity = 1ull << 44;
	assert_int_equal(embkv_table_size(&a, &bytes), 0);
	assert_true(bytes > (1ull << 44) * 256);
	embkv_table_attr_init(&a);
	a.dim = 8;
	a.capacity = 1024;
	assert_int_equal(embkv_table_size(&a, &small), 0);
	assert_true(small < bytes);
	a.dim = 0;
	assert_int_equal(embkv_table_size(&a, &bytes), -EINVAL);
	assert_int_equal(bytes, 0);
}

static void test_pull_train_inserts_initializer_rows(void **state)
{
	struct embkv_table *t = make_table(10000, 8, EMBKV_OPT_SGD);
	uint64_t keys[100];
	float out[100 * DIM], again[100 * DIM], want[DIM];
	uint8_t found[100];
	struct embkv_table_stats st;

	(void)state;
	for (int i = 0; i < 100; i++)
		keys[i] = (uint64_t)i * 7919 + 1;
	assert_int_equal(embkv_table_pull(t, 100, keys, out, found,
					  EMBKV_PULL_TRAIN, NULL), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(found[i], 0);
		embkv_init_row(&t->attr.init, keys[i], DIM, want);
		assert_memory_equal(out + i * DIM, want, sizeof(want));
	}
	assert_int_equal(embkv_table_pull(t, 100, keys, again, found,
					  EMBKV_PULL_TRAIN, NULL), 100);
	assert_memory_equal(out, again, sizeof(out));
	/* the lock-free reader sees the same rows */
	memset(again, 0, sizeof(again));
	assert_int_equal(embkv_table_find(t, 100, keys, again, found, NULL, NULL),
			 100);
	assert_memory_equal(out, again, sizeof(out));
	embkv_table_get_stats(t, &st);
	assert_int_equal(st.rows, 100);
	assert_int_equal(st.sum.inserts, 100);
	assert_int_equal(st.sum.hits, 100);
	assert_int_equal(st.sum.misses, 100);
	embkv_table_destroy(t);
}

/* PULL_LAND's pull: whole sealed records at their positions' slots, the
 * rest of each slot zeroed, a state per key: found, inserted, an infer
 * miss (slot zeroed), a refused insert (the initializer's row sealed with
 * version 0, nothing stored). */
static void test_pull_records(void **state)
{
	struct embkv_table *t = make_table(10000, 8, EMBKV_OPT_SGD);
	const size_t pb = t->payload_bytes, rec = 24 + pb, stride = rec + 40;
	uint64_t keys[6] = { 11, 22, 33, 44, 55, 66 }, k2[3] = { 11, 77, 88 };
	uint32_t pos[3] = { 2, 0, 1 };
	uint8_t st[6], st2[3], zero[64] = { 0 };
	uint8_t *out = malloc(6 * stride);
	float row[3 * DIM], want[DIM];
	uint8_t found[6];
	struct embkv_table *adm;
	struct embkv_table_attr a;

	(void)state;
	/* 11, 22 stored first */
	assert_int_equal(embkv_table_pull(t, 2, keys, row, found,
					  EMBKV_PULL_TRAIN, NULL), 0);
	memset(out, 0xee, 6 * stride);
	assert_int_equal(embkv_table_pull_records(t, 6, keys, NULL, out,
						  stride, st,
						  EMBKV_PULL_TRAIN), 2);
	for (int i = 0; i < 6; i++) {
		const struct embkv_record *r =
			(const void *)(out + (size_t)i * stride);

		assert_int_equal(st[i], i < 2 ? EMBKV_LAND_FOUND
					      : EMBKV_LAND_INSERTED);
		assert_int_equal(embkv_record_check(r, keys[i], pb),
				 EMBKV_RECORD_OK);
		embkv_init_row(&t->attr.init, keys[i], DIM, want);
		assert_memory_equal(r->payload, want, pb);
		assert_memory_equal((const uint8_t *)r + rec, zero,
				    stride - rec);
	}
	/* infer: a miss leaves a zeroed slot; positions map slots */
	memset(out, 0xee, 6 * stride);
	assert_int_equal(embkv_table_pull_records(t, 3, k2, pos, out, stride,
						  st2, EMBKV_PULL_INFER), 1);
	assert_int_equal(st2[2], EMBKV_LAND_FOUND);
	assert_int_equal(st2[0], EMBKV_LAND_NONE);
	assert_int_equal(st2[1], EMBKV_LAND_NONE);
	assert_int_equal(embkv_record_check((const void *)(out + 2 * stride),
					    11, pb), EMBKV_RECORD_OK);
	for (int i = 0; i < 2; i++)
		for (size_t b = 0; b < stride; b++)
			assert_int_equal(out[(size_t)i * stride + b], 0);
	assert_int_equal(embkv_table_pull(t, 3, k2, row, found,
					  EMBKV_PULL_INFER, NULL) , 1);
	embkv_table_destroy(t);

	/* admission: the first sight of a key is refused, its record is
	 * the initializer's row at version 0, and nothing is stored */
	embkv_table_attr_init(&a);
	a.dim = DIM;
	a.capacity = 1000;
	a.partitions = 2;
	a.admit_after = 2;
	a.init.seed = 5;
	assert_int_equal(embkv_table_create(&a, &adm), 0);
	assert_int_equal(embkv_table_pull_records(adm, 1, keys, NULL, out,
						  stride, st,
						  EMBKV_PULL_TRAIN), 0);
	assert_int_equal(st[0], EMBKV_LAND_INIT);
	assert_int_equal(embkv_record_check((const void *)out, keys[0], pb),
			 EMBKV_RECORD_OK);
	assert_true(((const struct embkv_record *)(const void *)out)->version ==
		    0);
	embkv_init_row(&adm->attr.init, keys[0], DIM, want);
	assert_memory_equal(out + 24, want, pb);
	assert_int_equal(embkv_table_find(adm, 1, keys, row, found, NULL,
					  NULL), 0);
	/* the second sight admits it */
	assert_int_equal(embkv_table_pull_records(adm, 1, keys, NULL, out,
						  stride, st,
						  EMBKV_PULL_TRAIN), 0);
	assert_int_equal(st[0], EMBKV_LAND_INSERTED);
	embkv_table_destroy(adm);
	free(out);
}

/* The lock-free reader validates rows in place in an aligned output and
 * through a buffer otherwise: both give the same rows, found masks and
 * defaults. */
static void test_find_any_output_alignment(void **state)
{
	enum { N = 300 };
	struct embkv_table *t = make_table(10000, 8, EMBKV_OPT_SGD);
	uint64_t keys[N];
	float *want = aligned_alloc(64, N * DIM * sizeof(float));
	float *mem = aligned_alloc(64, (N * DIM + 16) * sizeof(float));
	float dflt[DIM];
	uint8_t found[N];

	(void)state;
	for (unsigned d = 0; d < DIM; d++)
		dflt[d] = -1.0f - (float)d;
	for (int i = 0; i < N; i++)
		keys[i] = (uint64_t)i * 104729 + 3;
	/* every third key is never stored */
	for (int i = 0; i < N; i += 3)
		assert_int_equal(embkv_table_pull(t, 1, &keys[i + 1], want, NULL,
						  EMBKV_PULL_TRAIN, NULL), 0);
	for (int i = 0; i < N; i += 3)
		assert_int_equal(embkv_table_pull(t, 1, &keys[i + 2], want, NULL,
						  EMBKV_PULL_TRAIN, NULL), 0);
	assert_int_equal(embkv_table_pull(t, N, keys, want, found,
					  EMBKV_PULL_INFER, dflt), 2 * N / 3);
	for (unsigned off = 0; off < 16; off += 5) {
		float *out = mem + off; /* off 0: aligned, else not */

		memset(mem, 0x5a, (N * DIM + 16) * sizeof(float));
		memset(found, 7, sizeof(found));
		assert_int_equal(embkv_table_find(t, N, keys, out, found, dflt,
						  NULL), 2 * N / 3);
		assert_memory_equal(out, want, N * DIM * sizeof(float));
		for (int i = 0; i < N; i++)
			assert_int_equal(found[i], i % 3 != 0);
	}
	free(want);
	free(mem);
	embkv_table_destroy(t);
}

static void test_duplicate_keys_in_batch(void **state)
{
	struct embkv_table *t = make_table(1000, 2, EMBKV_OPT_SGD);
	uint64_t keys[4] = { 5, 5, 6, 5 };
	float out[4 * DIM];
	uint8_t found[4];
	struct embkv_table_stats st;

	(void)state;
	embkv_table_pull(t, 4, keys, out, found, EMBKV_PULL_TRAIN, NULL);
	assert_int_equal(found[0], 0);
	assert_int_equal(found[1], 1);
	assert_int_equal(found[3], 1);
	assert_memory_equal(out, out + DIM, DIM * sizeof(float));
	embkv_table_get_stats(t, &st);
	assert_int_equal(st.rows, 2);
	embkv_table_destroy(t);
}

static void test_pull_infer_does_not_insert(void **state)
{
	struct embkv_table *t = make_table(1000, 4, EMBKV_OPT_SGD);
	uint64_t keys[3] = { 1, 2, 3 };
	float out[3 * DIM], dflt[DIM];
	uint8_t found[3] = { 9, 9, 9 };
	struct embkv_table_stats st;

	(void)state;
	for (unsigned d = 0; d < DIM; d++)
		dflt[d] = 0.25f * (float)d;
	embkv_table_pull(t, 1, &keys[1], out, NULL, EMBKV_PULL_TRAIN, NULL);
	assert_int_equal(embkv_table_pull(t, 3, keys, out, found,
					  EMBKV_PULL_INFER, dflt), 1);
	assert_int_equal(found[0], 0);
	assert_int_equal(found[1], 1);
	assert_int_equal(found[2], 0);
	assert_memory_equal(out, dflt, sizeof(dflt));
	assert_memory_equal(out + 2 * DIM, dflt, sizeof(dflt));
	embkv_table_get_stats(t, &st);
	assert_int_equal(st.rows, 1);
	/* NULL default: zeros; find agrees */
	embkv_table_find(t, 3, keys, out, found, NULL, NULL);
	for (unsigned d = 0; d < DIM; d++)
		assert_true(out[d] == 0.0f);
	assert_int_equal(found[1], 1);
	embkv_table_destroy(t);
}

static void test_push_sgd_exact_and_drops_unknown(void **state)
{
	struct embkv_table *t = make_table(1000, 4, EMBKV_OPT_SGD);
	uint64_t keys[2] = { 10, 11 }, unknown = 12;
	float before[2 * DIM], after[2 * DIM], grads[2 * DIM];
	struct embkv_table_stats st;

	(void)state;
	embkv_table_pull(t, 2, keys, before, NULL, EMBKV_PULL_TRAIN, NULL);
	for (unsigned i = 0; i < 2 * DIM; i++)
		grads[i] = (float)i * 0.01f - 0.1f;
	assert_int_equal(embkv_table_push(t, 2, keys, grads), 2);
	assert_int_equal(embkv_table_push(t, 1, &unknown, grads), 0);
	embkv_table_find(t, 2, keys, after, NULL, NULL, NULL);
	for (unsigned i = 0; i < 2 * DIM; i++)
		assert_true(after[i] == before[i] - 0.5f * grads[i]);
	embkv_table_get_stats(t, &st);
	assert_int_equal(st.sum.pushes, 2);
	assert_int_equal(st.sum.push_dropped, 1);
	assert_int_equal(st.rows, 2); /* a push never inserts */
	embkv_table_destroy(t);
}

/* Reported one-sided hits raise stored rows' LFU counts only. */
static void test_hits_add_lfu_counts(void **state)
{
	struct embkv_table *t = make_table(1000, 4, EMBKV_OPT_SGD);
	uint64_t keys[3] = { 10, 11, 12 };
	uint32_t counts[3] = { 5, 200, 7 };
	float out[3 * DIM];
	struct embkv_table_stats st;
	struct embkv_part *p;
	uint64_t row;
	unsigned c[2];

	(void)state;
	embkv_table_pull(t, 2, keys, out, NULL, EMBKV_PULL_TRAIN, NULL);
	assert_int_equal(embkv_table_hits(t, 3, keys, counts), 2);
	embkv_table_get_stats(t, &st);
	assert_int_equal(st.rows, 2); /* hits never insert */
	for (int i = 0; i < 2; i++) {
		struct embkv_record *r = NULL;

		p = &t->parts[embkv_table_partition_of(t, keys[i])];
		for (row = 0; row < p->next_fresh; row++) {
			r = embkv_part_record(p, row);
			if (r->key == keys[i])
				break;
		}
		assert_true(row < p->next_fresh);
		c[i] = embkv_lfu_count(*embkv_record_meta(r, t->payload_bytes),
				       p->clock.epoch);
	}
	assert_int_equal(c[0], 1 + 5);                 /* the pull, the hits */
	assert_int_equal(c[1], 1 + 200);
	assert_int_equal(embkv_table_hits(t, 0, keys, counts), 0);
	embkv_table_destroy(t);
}

static void test_assign_erase_and_recreate(void **state)
{
	struct embkv_table *t = make_table(1000, 4, EMBKV_OPT_ADAM);
	uint64_t keys[3] = { 100, 200, 300 };
	float vals[3 * DIM], out[3 * DIM], first[DIM];
	uint8_t found[3];
	struct embkv_table_stats st;

	(void)state;
	for (unsigned i = 0; i < 3 * DIM; i++)
		vals[i] = (float)i;
	embkv_table_pull(t, 1, &keys[0], first, NULL, EMBKV_PULL_TRAIN, NULL);
	assert_int_equal(embkv_table_assign(t, 3, keys, vals), 3);
	embkv_table_find(t, 3, keys, out, found, NULL, NULL);
	assert_memory_equal(out, vals, sizeof(vals));
	assert_int_equal(embkv_table_erase(t, 2, keys), 2);
	assert_int_equal(embkv_table_erase(t, 1, keys), 0);
	assert_int_equal(embkv_table_find(t, 3, keys, out, found, NULL, NULL), 1);
	assert_int_equal(found[0], 0);
	assert_int_equal(found[1], 0);
	assert_int_equal(found[2], 1);
	embkv_table_get_stats(t, &st);
	assert_int_equal(st.rows, 1);
	assert_int_equal(st.sum.erases, 2);
	/* re-created from the initializer: identical to the first time */
	embkv_table_pull(t, 1, &keys[0], out, found, EMBKV_PULL_TRAIN, NULL);
	assert_int_equal(found[0], 0);
	assert_memory_equal(out, first, sizeof(first));
	/* freed rows are reused: no growth past what was ever live */
	for (int r = 0; r < 50; r++) {
		assert_int_equal(embkv_table_erase(t, 1, &keys[0]), 1);
		embkv_table_pull(t, 1, &keys[0], out, NULL, EMBKV_PULL_TRAIN, NULL);
	}
	{
		uint64_t fresh = 0;

		for (uint32_t p = 0; p < t->nparts; p++)
			fresh += t->parts[p].next_fresh;
		assert_true(fresh <= 3);
	}
	embkv_table_destroy(t);
}

static void test_fill_until_first_eviction(void **state)
{
	struct embkv_table_attr a;
	struct embkv_table *t;
	struct embkv_table_stats st;
	uint64_t *keys = malloc(200000 * sizeof(uint64_t));
	uint8_t *found = malloc(200000);
	float *out = malloc(200000 * sizeof(float) * 4);
	uint64_t n = 0;
	double load;

	(void)state;
	embkv_table_attr_init(&a);
	a.dim = 4;
	a.partitions = 4;
	a.capacity = 100000;
	a.index_load = 1.0f; /* arena as large as the index */
	assert_int_equal(embkv_table_create(&a, &t), 0);
	for (;; n++) {
		keys[n] = n * 0x2545f4914f6cdd1dull + 3;
		embkv_table_get_stats(t, &st);
		load = (double)st.index_used / (double)st.index_slots;
		embkv_table_pull(t, 1, &keys[n], out, NULL, EMBKV_PULL_TRAIN, NULL);
		embkv_table_get_stats(t, &st);
		if (st.sum.evictions)
			break;
		assert_true(n < 200000);
	}
	print_message("first eviction after %llu keys at index load %.4f\n",
		      (unsigned long long)n, load);
	assert_true(load > 0.90);
	/* n + 1 keys went in and the last one evicted one of them: every other
	 * key is findable, by the lock-free reader and by the owner alike */
	{
		uint8_t *owner = malloc(n + 1);

		assert_int_equal(embkv_table_find(t, (uint32_t)n + 1, keys, out,
						  found, NULL, NULL), n);
		assert_int_equal(embkv_table_pull(t, (uint32_t)n + 1, keys, out,
						  owner, EMBKV_PULL_INFER, NULL), n);
		assert_memory_equal(found, owner, n + 1);
		assert_int_equal(found[n], 1);
		free(owner);
	}
	/* erase half: absent; the rest still there */
	for (uint64_t i = 0; i <= n; i++)
		if (found[i] && i % 2 == 0)
			assert_int_equal(embkv_table_erase(t, 1, &keys[i]), 1);
	{
		uint8_t *was = malloc(n + 1);

		memcpy(was, found, n + 1);
		embkv_table_find(t, (uint32_t)n + 1, keys, out, found, NULL, NULL);
		for (uint64_t i = 0; i <= n; i++)
			assert_int_equal(found[i], i % 2 ? was[i] : 0);
		free(was);
	}
	embkv_table_destroy(t);
	free(keys);
	free(found);
	free(out);
}

static void test_capacity_never_exceeded(void **state)
{
	struct embkv_table *t = make_table(512, 4, EMBKV_OPT_ADAGRAD);
	uint64_t keys[64];
	float out[64 * DIM];
	struct embkv_table_stats st;

	(void)state;
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 64; i++)
			keys[i] = (uint64_t)round * 64 + (uint64_t)i;
		embkv_table_pull(t, 64, keys, out, NULL, EMBKV_PULL_TRAIN, NULL);
		embkv_table_get_stats(t, &st);
		assert_true(st.rows <= st.capacity);
		for (uint32_t p = 0; p < t->nparts; p++)
			assert_true(t->parts[p].rows <= t->parts[p].capacity);
	}
	assert_true(st.sum.evictions > 0);
	assert_int_equal(st.rows, st.index_used);
	embkv_table_destroy(t);
}

/* A table built with a share of its partitions maps, sizes and counts only
 * that share; an unloaded partition finds nothing, stores nothing and
 * never crashes; loading and unloading a partition is a unit. */
static void test_partitions_load_only_owned(void **state)
{
	struct embkv_table_attr a;
	struct embkv_table *all, *half;
	struct embkv_table_stats sa, sh;
	uint8_t owned[16];
	uint64_t bytes_all, bytes_half, keys[256];
	float out[256 * DIM];
	uint8_t found[256];
	uint32_t in_half = 0;

	(void)state;
	embkv_table_attr_init(&a);
	a.dim = DIM;
	a.capacity = 100000;
	a.partitions = 16;
	a.opt.type = EMBKV_OPT_ADAM;
	for (uint32_t p = 0; p < 16; p++)
		owned[p] = p % 2 == 1;
	assert_int_equal(embkv_table_size(&a, &bytes_all), 0);
	assert_int_equal(embkv_table_size_parts(&a, owned, &bytes_half), 0);
	assert_true(bytes_half * 2 >= bytes_all - 16 * 4096 &&
		    bytes_half * 2 <= bytes_all + 16 * 4096);
	assert_int_equal(embkv_table_create(&a, &all), 0);
	assert_int_equal(embkv_table_create_parts(&a, owned, &half), 0);
	assert_int_equal(half->nloaded, 8);
	embkv_table_get_stats(all, &sa);
	embkv_table_get_stats(half, &sh);
	assert_int_equal(sa.capacity, 100000);
	assert_int_equal(sh.capacity, 50000);
	assert_true(sh.bytes >= bytes_half && sh.bytes - bytes_half < 64 * 1024);
	assert_true(sh.bytes * 2 < sa.bytes + 64 * 1024);
	for (uint32_t p = 0; p < 16; p++) {
		assert_int_equal(half->parts[p].loaded, owned[p]);
		if (!owned[p])
			assert_null(half->parts[p].arena);
	}

	/* Owner ops on an unloaded partition store nothing; find misses. */
	for (uint32_t i = 0; i < 256; i++)
		keys[i] = 1000 + i;
	embkv_table_pull(half, 256, keys, out, found, EMBKV_PULL_TRAIN, NULL);
	memset(found, 0xff, sizeof(found));
	embkv_table_find(half, 256, keys, out, found, NULL, NULL);
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t p = embkv_table_partition_of(half, keys[i]);

		assert_int_equal(found[i], owned[p]);
		in_half += owned[p];
	}
	assert_true(in_half > 64 && in_half < 192);
	embkv_table_get_stats(half, &sh);
	assert_int_equal(sh.rows, in_half);

	/* Unload one, load it again: empty, at its exact capacity. */
	{
		uint32_t p = 1;
		uint64_t rows = half->parts[p].rows;

		embkv_part_unload(half, p);
		assert_false(half->parts[p].loaded);
		assert_int_equal(half->nloaded, 7);
		embkv_table_get_stats(half, &sh);
		assert_int_equal(sh.rows, in_half - rows);
		assert_int_equal(embkv_part_load(half, p), 0);
		assert_int_equal(half->parts[p].rows, 0);
		assert_int_equal(half->parts[p].capacity,
				 embkv_part_capacity(100000, 16, p));
		assert_int_equal(embkv_part_load(half, p), 0); /* no-op */
		assert_int_equal(half->nloaded, 8);
	}
	embkv_table_destroy(all);
	embkv_table_destroy(half);
}

/* Partition states: ABSENT holds nothing, UNLOADED holds (empty) memory
 * but is counted as not serving until it is set SERVING. */
static void test_partition_states(void **state)
{
	struct embkv_table_attr a;
	struct embkv_table *t;
	uint8_t owned[8] = { EMBKV_PART_ABSENT, EMBKV_PART_SERVING,
			     EMBKV_PART_UNLOADED, EMBKV_PART_UNLOADED,
			     EMBKV_PART_SERVING, EMBKV_PART_ABSENT,
			     EMBKV_PART_SERVING, EMBKV_PART_UNLOADED };

	(void)state;
	embkv_table_attr_init(&a);
	a.dim = DIM;
	a.capacity = 8000;
	a.partitions = 8;
	assert_int_equal(embkv_table_create_parts(&a, owned, &t), 0);
	assert_int_equal(t->nloaded, 6);
	assert_int_equal(t->nunloaded, 3);
	for (uint32_t p = 0; p < 8; p++) {
		assert_int_equal(embkv_part_state(&t->parts[p]), owned[p]);
		assert_int_equal(t->parts[p].loaded,
				 owned[p] != EMBKV_PART_ABSENT);
	}
	assert_int_equal(embkv_part_set_state(t, 0, EMBKV_PART_SERVING),
			 -EINVAL);
	assert_int_equal(embkv_part_set_state(t, 1, EMBKV_PART_ABSENT),
			 -EINVAL);
	assert_int_equal(embkv_part_set_state(t, 2, EMBKV_PART_SERVING), 0);
	assert_int_equal(embkv_part_set_state(t, 2, EMBKV_PART_SERVING), 0);
	assert_int_equal(t->nunloaded, 2);
	assert_int_equal(embkv_part_set_state(t, 1, EMBKV_PART_UNLOADED), 0);
	assert_int_equal(t->nunloaded, 3);
	embkv_part_unload(t, 3);
	assert_int_equal(t->nunloaded, 2);
	assert_int_equal(embkv_part_state(&t->parts[3]), EMBKV_PART_ABSENT);
	owned[0] = 7; /* not a state */
	embkv_table_destroy(t);
	assert_int_equal(embkv_table_create_parts(&a, owned, &t), -EINVAL);
	assert_null(t);
}

/* Collects what embkv_part_for_each_row hands out. */
struct seen_rows {
	const struct embkv_table *t;
	uint64_t n, dirty, stepped;
	int bad;
	uint64_t stop_after;        /* 0: never stop */
};

static int seen_row(void *ctx, const struct embkv_row_view *r)
{
	struct seen_rows *sr = ctx;
	float got[DIM];
	uint8_t found = 0;

	embkv_table_find(sr->t, 1, &r->key, got, &found, NULL, NULL);
	if (!found || memcmp(got, r->payload, sizeof(got)) || !r->state)
		sr->bad++;
	sr->n++;
	sr->dirty += (r->meta & EMBKV_LFU_DIRTY) != 0;
	sr->stepped += r->step > 0;
	return sr->stop_after && sr->n == sr->stop_after ? 7 : 0;
}

/* The live-row iterator sees every stored row once, with its payload,
 * optimizer state and step, and none that was erased or evicted; a
 * nonzero return stops it. */
static void test_for_each_row(void **state)
{
	struct embkv_table *t = make_table(1000, 4, EMBKV_OPT_ADAM);
	struct embkv_table_stats st;
	struct seen_rows sr = { .t = t };
	uint64_t keys[1500], erased = 0;
	float *out = calloc(1500 * DIM, sizeof(float));
	float *grads = calloc(1500 * DIM, sizeof(float));
	uint8_t found[64];

	(void)state;
	for (uint32_t i = 0; i < 1500; i++)
		keys[i] = 0x9e3779b97f4a7c15ull * (i + 1);
	for (uint32_t i = 0; i < 1500 * DIM; i++)
		grads[i] = 0.5f;
	/* 1500 keys into 1000 rows: evictions; then pushes and erases. */
	embkv_table_pull(t, 1500, keys, out, NULL, EMBKV_PULL_TRAIN, NULL);
	embkv_table_push(t, 100, keys + 1400, grads);
	erased = embkv_table_erase(t, 64, keys + 1436);
	assert_true(erased > 0);
	embkv_table_get_stats(t, &st);
	assert_true(st.sum.evictions > 0);
	for (uint32_t p = 0; p < t->nparts; p++)
		assert_int_equal(embkv_part_for_each_row(t, p, seen_row, &sr),
				 0);
	assert_int_equal(sr.bad, 0);
	assert_int_equal(sr.n, st.rows);
	/* The erased keys are gone from what it sees (find says so too). */
	embkv_table_find(t, 64, keys + 1436, out, found, NULL, NULL);
	for (uint32_t i = 0; i < 64; i++)
		assert_int_equal(found[i], 0);
	/* Pushed rows that survived are dirty and have stepped. */
	assert_true(sr.dirty > 0 && sr.stepped > 0);
	assert_true(sr.stepped <= 100);
	/* Early stop. */
	sr = (struct seen_rows){ .t = t, .stop_after = 5 };
	assert_int_equal(embkv_part_for_each_row(t, 0, seen_row, &sr), 7);
	assert_int_equal(sr.n, 5);
	embkv_table_destroy(t);
	free(out);
	free(grads);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_rejects_bad_attr),
		cmocka_unit_test(test_table_size_predicts_create),
		cmocka_unit_test(test_pull_train_inserts_initializer_rows),
		cmocka_unit_test(test_pull_records),
		cmocka_unit_test(test_find_any_output_alignment),
		cmocka_unit_test(test_duplicate_keys_in_batch),
		cmocka_unit_test(test_pull_infer_does_not_insert),
		cmocka_unit_test(test_push_sgd_exact_and_drops_unknown),
		cmocka_unit_test(test_hits_add_lfu_counts),
		cmocka_unit_test(test_assign_erase_and_recreate),
		cmocka_unit_test(test_fill_until_first_eviction),
		cmocka_unit_test(test_capacity_never_exceeded),
		cmocka_unit_test(test_partitions_load_only_owned),
		cmocka_unit_test(test_partition_states),
		cmocka_unit_test(test_for_each_row),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
