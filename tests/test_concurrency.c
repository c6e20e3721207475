/*
 * Owner thread versus lock-free readers: the owner applies gradients to a
 * few rows in a tight loop (and now and then erases a key and stores
 * another in its row) while two reader threads validate-read them. Every
 * row is built so that a torn or foreign copy is visible in its values:
 * element 0 is the key's tag and never changes (its gradient is 0), and
 * elements 1.. are equal to each other (equal gradients). The test asserts
 * that no reader ever accepted a bad row, and prints how often readers
 * had to retry. A third, unvalidated reader counts torn copies, to show
 * that the race was real. Run on an fp32 table and on a bf16 one (rows of
 * 2-byte values, rounded to nearest so that equal elements stay equal:
 * the checksum covers the 16-bit payload).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "server/store.h"

#define DIM 64u
#define NKEYS 8u      /* live at any time */
#define POOL 16u      /* keys that come and go */
#define RUN_SECONDS 3.0
#define SWAP_EVERY 512u

struct shared {
	struct embkv_table *t;
	enum embkv_dtype dt;
	volatile int stop;
	uint64_t pool[POOL];
	uint64_t accepted, bad, retries, reprobes, raw_torn;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float tag_of(uint64_t key)
{
	return (float)(key % 100000) + 0.5f;
}

/* The tag as a row of dtype dt holds it (rounded once to nearest). */
static float tag_stored(enum embkv_dtype dt, uint64_t key)
{
	float f = tag_of(key), back;
	uint8_t b[4];

	embkv_dtype_from_f32(dt, &f, b, 1);
	embkv_dtype_to_f32(dt, b, &back, 1);
	return back;
}

static void *owner(void *arg)
{
	struct shared *s = arg;
	float vals[DIM], grads[NKEYS * DIM];
	uint64_t live[NKEYS];
	double end = now_s() + RUN_SECONDS;
	unsigned next_pool = NKEYS;

	for (unsigned i = 0; i < NKEYS; i++) {
		live[i] = s->pool[i];
		vals[0] = tag_of(live[i]);
		for (unsigned d = 1; d < DIM; d++)
			vals[d] = 1.0f;
		embkv_table_assign(s->t, 1, &live[i], vals);
	}
	for (uint64_t step = 0; now_s() < end; step++) {
		float g = (step & 1) ? 0.25f : -0.25f;

		for (unsigned i = 0; i < NKEYS; i++) {
			grads[i * DIM] = 0.0f;
			for (unsigned d = 1; d < DIM; d++)
				grads[i * DIM + d] = g;
		}
		embkv_table_push(s->t, NKEYS, live, grads);
		if (step % SWAP_EVERY == 0) {
			/* retire one key; its row is reused for another */
			unsigned victim = (unsigned)(step / SWAP_EVERY) % NKEYS;

			embkv_table_erase(s->t, 1, &live[victim]);
			live[victim] = s->pool[next_pool++ % POOL];
			vals[0] = tag_of(live[victim]);
			for (unsigned d = 1; d < DIM; d++)
				vals[d] = (float)step;
			embkv_table_assign(s->t, 1, &live[victim], vals);
		}
	}
	s->stop = 1;
	return NULL;
}

static void *reader(void *arg)
{
	struct shared *s = arg;
	float out[POOL * DIM];
	uint8_t raw[POOL * DIM * sizeof(float)], found[POOL];
	struct embkv_read_stats rs = { 0 };
	uint64_t accepted = 0, bad = 0;

	while (!s->stop) {
		embkv_table_find(s->t, POOL, s->pool, raw, found, NULL, &rs);
		embkv_dtype_to_f32(s->dt, raw, out, POOL * DIM);
		for (unsigned i = 0; i < POOL; i++) {
			const float *r = out + i * DIM;
			int ok = r[0] == tag_stored(s->dt, s->pool[i]);

			if (!found[i])
				continue;
			for (unsigned d = 2; d < DIM; d++)
				ok &= r[d] == r[1];
			accepted++;
			bad += !ok;
		}
	}
	__atomic_fetch_add(&s->accepted, accepted, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->bad, bad, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->retries, rs.retries, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->reprobes, rs.reprobes, __ATOMIC_RELAXED);
	return NULL;
}

/* Copies live records without validation, to measure how often a copy is
 * torn (this is what the checksum protects against). */
static void *raw_reader(void *arg)
{
	struct shared *s = arg;
	const struct embkv_table *t = s->t;
	uint8_t buf[EMBKV_RECORD_HDR_BYTES + DIM * sizeof(float)];
	uint64_t torn = 0;

	while (!s->stop) {
		for (uint32_t p = 0; p < t->nparts; p++) {
			const struct embkv_part *part = &t->parts[p];

			for (uint64_t row = 0; row < part->next_fresh; row++) {
				const struct embkv_record *r =
					(const void *)buf;

				__atomic_thread_fence(__ATOMIC_ACQUIRE);
				memcpy(buf, embkv_part_record(part, row),
				       EMBKV_RECORD_HDR_BYTES +
					       t->payload_bytes);
				torn += embkv_record_check(r, r->key,
							   t->payload_bytes) ==
					EMBKV_RECORD_TORN;
			}
		}
	}
	__atomic_fetch_add(&s->raw_torn, torn, __ATOMIC_RELAXED);
	return NULL;
}

static void owner_vs_readers(enum embkv_dtype dt)
{
	struct embkv_table_attr a;
	struct shared s;
	pthread_t th[4];

	memset(&s, 0, sizeof(s));
	s.dt = dt;
	embkv_table_attr_init(&a);
	a.dim = DIM;
	a.dtype = dt;
	if (dt != EMBKV_DTYPE_F32)
		a.flags = EMBKV_TABLE_ROUND_NEAREST;
	a.capacity = 1024;
	a.partitions = 2;
	a.opt.lr = 1.0f;
	assert_int_equal(embkv_table_create(&a, &s.t), 0);
	for (unsigned i = 0; i < POOL; i++)
		s.pool[i] = 1000 + i * 7;
	assert_int_equal(pthread_create(&th[0], NULL, owner, &s), 0);
	assert_int_equal(pthread_create(&th[1], NULL, reader, &s), 0);
	assert_int_equal(pthread_create(&th[2], NULL, reader, &s), 0);
	assert_int_equal(pthread_create(&th[3], NULL, raw_reader, &s), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	print_message("rows accepted %llu, bad accepted %llu, validated-read "
		      "retries %llu, reprobes %llu, torn raw copies %llu\n",
		      (unsigned long long)s.accepted, (unsigned long long)s.bad,
		      (unsigned long long)s.retries,
		      (unsigned long long)s.reprobes,
		      (unsigned long long)s.raw_torn);
	assert_true(s.accepted > 1000);
	assert_int_equal(s.bad, 0);
	embkv_table_destroy(s.t);
}

static void test_owner_vs_readers(void **state)
{
	(void)state;
	owner_vs_readers(EMBKV_DTYPE_F32);
}

static void test_owner_vs_readers_bf16(void **state)
{
	(void)state;
	owner_vs_readers(EMBKV_DTYPE_BF16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owner_vs_readers),
		cmocka_unit_test(test_owner_vs_readers_bf16),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
