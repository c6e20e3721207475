/*
 * The pool of registered reply buffers (server/obpool.c). A fake
 * registration stands in for the NIC's: each is a malloc'ed token that
 * the pool's unreg frees, so a registration dropped twice is a double
 * free and one never dropped a leak (the ASan build runs this too).
 *
 * - Classes: frames under 4 KiB or over 16 MiB are not pooled; a pooled
 *   buffer holds its frame (written whole) inside its registered range,
 *   at most 1.5 times the frame plus a page.
 * - Reuse: a buffer given back is the next one of its class, with its
 *   registration; another class gets another buffer.
 * - Bound: with room for two idle buffers, five given back keep two and
 *   unregister three, each once. A buffer of another class given back
 *   displaces idle ones (unregistered) to be kept; trim drops them all.
 * - keep 0: nothing is kept, every registration is dropped at once.
 * - Lifetime: destroying the pool drops the idle buffers; one still in
 *   use stays valid and is freed (and unregistered) when it comes back,
 *   also when two threads give back the last 200 at once.
 * - Threads: two threads get, register, write and give back 20,000
 *   buffers of random classes; every registration is dropped exactly once
 *   and none is in use at the end.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "server/obpool.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define STRESS_OPS 10000u
#define THREADS 2u

static uint64_t unregs;     /* atomic */

static void fake_unreg(void *reg)
{
	__atomic_fetch_add(&unregs, 1, __ATOMIC_RELAXED);
	free(reg);
}

/* A registration of ob, as the transport makes one on its first reply. */
static void fake_reg(struct embkvd_obpool *p, struct embkvd_obuf *ob)
{
	if (!ob->reg) {
		ob->reg = malloc(16);
		assert_non_null(ob->reg);
		embkvd_obpool_registered(p);
	}
}

static struct embkvd_obpool *make(uint64_t keep)
{
	struct embkvd_obpool *p = NULL;

	__atomic_store_n(&unregs, 0, __ATOMIC_RELAXED);
	assert_int_equal(embkvd_obpool_create(keep, fake_unreg, &p), 0);
	return p;
}

static void test_classes(void **state)
{
	struct embkvd_obpool *p = make(64 * MIB);
	struct embkvd_obuf *ob;

	(void)state;
	assert_null(embkvd_obpool_get(p, EMBKVD_OBPOOL_MIN - 1));
	assert_null(embkvd_obpool_get(p, 0));
	assert_null(embkvd_obpool_get(p, EMBKVD_OBPOOL_MAX + 1));
	assert_null(embkvd_obpool_get(NULL, 100 * KIB));
	for (size_t len = EMBKVD_OBPOOL_MIN; len <= EMBKVD_OBPOOL_MAX;
	     len = len * 9 / 8 + 4093) {
		ob = embkvd_obpool_get(p, len);
		assert_non_null(ob);
		assert_ptr_equal(ob->pool, p);
		assert_int_equal(ob->len, len);
		assert_int_equal(ob->off, 0);
		assert_int_equal(ob->land_len, 0);
		assert_int_equal((uintptr_t)ob->data % 8, 0);
		assert_true((uintptr_t)ob % 4096 == 0);
		assert_true(ob->data + len <= (uint8_t *)ob + ob->alloc);
		assert_true((double)ob->alloc <= 1.5 * (double)len + 4096);
		memset(ob->data, 0xa5, len);
		embkvd_obuf_free(ob);
	}
	ob = embkvd_obpool_get(p, EMBKVD_OBPOOL_MAX);
	assert_non_null(ob);
	memset(ob->data, 1, EMBKVD_OBPOOL_MAX);
	embkvd_obuf_free(ob);
	/* plain buffers: no pool, any size */
	ob = embkvd_obuf_plain(10);
	assert_non_null(ob);
	assert_null(ob->pool);
	assert_int_equal(ob->len, 10);
	embkvd_obuf_free(ob);
	embkvd_obuf_free(NULL);
	embkvd_obpool_destroy(p);
	embkvd_obpool_destroy(NULL);
	assert_int_equal(unregs, 0); /* nothing was registered */
}

static void test_reuse(void **state)
{
	struct embkvd_obpool *p = make(64 * MIB);
	struct embkvd_obpool_stats st;
	struct embkvd_obuf *a, *b, *c;
	void *reg;

	(void)state;
	a = embkvd_obpool_get(p, 300 * KIB);
	assert_non_null(a);
	fake_reg(p, a);
	reg = a->reg;
	a->land_len = 5;
	embkvd_obuf_free(a);
	embkvd_obpool_stats(p, &st);
	assert_int_equal(st.registrations, 1);
	assert_int_equal(st.out, 0);
	assert_int_equal(st.idle_bytes, a->alloc);
	/* the same class: the same buffer, registration kept, fields reset */
	b = embkvd_obpool_get(p, 290 * KIB);
	assert_ptr_equal(b, a);
	assert_ptr_equal(b->reg, reg);
	assert_int_equal(b->len, 290 * KIB);
	assert_int_equal(b->land_len, 0);
	/* another class, or the same one while b is out: another buffer */
	c = embkvd_obpool_get(p, 2 * MIB);
	assert_ptr_not_equal(c, b);
	assert_null(c->reg);
	embkvd_obpool_stats(p, &st);
	assert_int_equal(st.reuses, 1);
	assert_int_equal(st.out, 2);
	assert_int_equal(st.idle_bytes, 0);
	embkvd_obuf_free(c);
	embkvd_obuf_free(b);
	assert_int_equal(unregs, 0);
	embkvd_obpool_destroy(p);
	assert_int_equal(unregs, 1);
}

static void test_bound(void **state)
{
	struct embkvd_obuf *ob[5];
	struct embkvd_obpool_stats st;
	struct embkvd_obpool *p;
	size_t one;

	(void)state;
	p = make(0); /* for the size of the class's buffers */
	ob[0] = embkvd_obpool_get(p, 200 * KIB);
	one = ob[0]->alloc;
	embkvd_obuf_free(ob[0]);
	embkvd_obpool_destroy(p);

	p = make(2 * one + one / 2);
	for (int i = 0; i < 5; i++) {
		ob[i] = embkvd_obpool_get(p, 200 * KIB);
		assert_non_null(ob[i]);
		fake_reg(p, ob[i]);
	}
	for (int i = 0; i < 5; i++)
		embkvd_obuf_free(ob[i]);
	embkvd_obpool_stats(p, &st);
	assert_int_equal(st.registrations, 5);
	assert_int_equal(st.idle_bytes, 2 * one);
	assert_int_equal(unregs, 3);
	/* the two kept come back first, still registered */
	ob[0] = embkvd_obpool_get(p, 200 * KIB);
	ob[1] = embkvd_obpool_get(p, 200 * KIB);
	ob[2] = embkvd_obpool_get(p, 200 * KIB);
	assert_non_null(ob[0]->reg);
	assert_non_null(ob[1]->reg);
	assert_null(ob[2]->reg);
	for (int i = 0; i < 3; i++)
		embkvd_obuf_free(ob[i]);
	embkvd_obpool_destroy(p);
	assert_int_equal(unregs, 5);
}

static void test_displace_and_trim(void **state)
{
	struct embkvd_obpool_stats st;
	struct embkvd_obuf *a[2], *b, *again;
	struct embkvd_obpool *p;
	size_t one;

	(void)state;
	p = make(0);
	a[0] = embkvd_obpool_get(p, 200 * KIB);
	one = a[0]->alloc;
	embkvd_obuf_free(a[0]);
	embkvd_obpool_destroy(p);

	/* room for two of a[]'s class; b's class is larger */
	p = make(2 * one);
	for (int i = 0; i < 2; i++) {
		a[i] = embkvd_obpool_get(p, 200 * KIB);
		fake_reg(p, a[i]);
	}
	b = embkvd_obpool_get(p, 300 * KIB);
	fake_reg(p, b);
	assert_true(b->alloc > one && b->alloc <= 2 * one);
	embkvd_obuf_free(a[0]);
	embkvd_obuf_free(a[1]);
	assert_int_equal(unregs, 0);
	embkvd_obuf_free(b); /* kept: both a[] make room for it */
	embkvd_obpool_stats(p, &st);
	assert_int_equal(unregs, 2);
	assert_int_equal(st.idle_bytes, b->alloc);
	again = embkvd_obpool_get(p, 300 * KIB);
	assert_ptr_equal(again, b);
	assert_non_null(again->reg);
	embkvd_obuf_free(again);
	/* a buffer larger than the whole bound is never kept */
	again = embkvd_obpool_get(p, 3 * one);
	fake_reg(p, again);
	embkvd_obuf_free(again);
	assert_int_equal(unregs, 3);
	embkvd_obpool_stats(p, &st);
	assert_int_equal(st.idle_bytes, b->alloc);
	embkvd_obpool_trim(p);
	embkvd_obpool_stats(p, &st);
	assert_int_equal(st.idle_bytes, 0);
	assert_int_equal(unregs, 4);
	embkvd_obpool_trim(NULL);
	embkvd_obpool_destroy(p);
	assert_int_equal(unregs, 4);
}

static void test_keep_none(void **state)
{
	struct embkvd_obpool *p = make(0);
	struct embkvd_obpool_stats st;

	(void)state;
	for (int i = 0; i < 4; i++) {
		struct embkvd_obuf *ob = embkvd_obpool_get(p, 1 * MIB);

		assert_non_null(ob);
		assert_null(ob->reg);
		fake_reg(p, ob);
		embkvd_obuf_free(ob);
		assert_int_equal(unregs, (uint64_t)i + 1);
	}
	embkvd_obpool_stats(p, &st);
	assert_int_equal(st.registrations, 4);
	assert_int_equal(st.reuses, 0);
	assert_int_equal(st.idle_bytes, 0);
	embkvd_obpool_destroy(p);
	assert_int_equal(unregs, 4);
}

static void test_destroy_with_buffer_out(void **state)
{
	struct embkvd_obpool *p = make(64 * MIB);
	struct embkvd_obuf *kept, *out;

	(void)state;
	kept = embkvd_obpool_get(p, 100 * KIB);
	out = embkvd_obpool_get(p, 100 * KIB);
	fake_reg(p, kept);
	fake_reg(p, out);
	embkvd_obuf_free(kept);
	embkvd_obpool_destroy(p);
	assert_int_equal(unregs, 1);
	memset(out->data, 7, out->len); /* still valid */
	embkvd_obuf_free(out);          /* the last: frees the pool too */
	assert_int_equal(unregs, 2);
}

#define LAST_OUT 200u

struct give_back {
	struct embkvd_obuf **v;
	uint32_t n;
};

static void *give_back_run(void *arg)
{
	struct give_back *g = arg;

	for (uint32_t i = 0; i < g->n; i++)
		embkvd_obuf_free(g->v[i]);
	return NULL;
}

/* Destroyed with 200 buffers out, given back by two threads at once:
 * each registration dropped once, no read of the freed pool (ASan). */
static void test_destroy_then_threads_give_back(void **state)
{
	struct embkvd_obpool *p = make(64 * MIB);
	struct embkvd_obuf *v[LAST_OUT];
	struct give_back g[2] = {
		{ v, LAST_OUT / 2 }, { v + LAST_OUT / 2, LAST_OUT / 2 },
	};
	pthread_t th[2];

	(void)state;
	for (uint32_t i = 0; i < LAST_OUT; i++) {
		v[i] = embkvd_obpool_get(p, 8 * KIB + i * 100);
		assert_non_null(v[i]);
		fake_reg(p, v[i]);
	}
	embkvd_obpool_destroy(p);
	assert_int_equal(unregs, 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, give_back_run,
						&g[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(unregs, LAST_OUT);
}

struct stress {
	struct embkvd_obpool *p;
	unsigned seed;
	uint64_t got;
};

static void *stress_run(void *arg)
{
	struct stress *s = arg;
	struct embkvd_obuf *held[4] = { 0 };

	for (uint32_t i = 0; i < STRESS_OPS; i++) {
		uint32_t slot = (uint32_t)rand_r(&s->seed) % 4u;
		size_t len = EMBKVD_OBPOOL_MIN +
			     (size_t)rand_r(&s->seed) % (3u * MIB);

		embkvd_obuf_free(held[slot]);
		held[slot] = embkvd_obpool_get(s->p, len);
		if (!held[slot])
			return NULL;
		if (!held[slot]->reg) {
			held[slot]->reg = malloc(16);
			if (!held[slot]->reg)
				return NULL;
			embkvd_obpool_registered(s->p);
		}
		held[slot]->data[0] = (uint8_t)i;
		held[slot]->data[len - 1] = (uint8_t)i;
		s->got++;
	}
	for (uint32_t k = 0; k < 4; k++)
		embkvd_obuf_free(held[k]);
	return NULL;
}

static void test_threads(void **state)
{
	struct embkvd_obpool *p = make(8 * MIB);
	struct embkvd_obpool_stats st;
	struct stress s[THREADS];
	pthread_t th[THREADS];

	(void)state;
	for (uint32_t i = 0; i < THREADS; i++) {
		s[i] = (struct stress){ .p = p, .seed = 77u + i };
		assert_int_equal(pthread_create(&th[i], NULL, stress_run,
						&s[i]), 0);
	}
	for (uint32_t i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(s[i].got, STRESS_OPS);
	}
	embkvd_obpool_stats(p, &st);
	assert_int_equal(st.out, 0);
	assert_true(st.idle_bytes <= 8 * MIB);
	assert_true(st.reuses > 0);
	assert_true(st.registrations < (uint64_t)THREADS * STRESS_OPS);
	embkvd_obpool_destroy(p);
	assert_int_equal(unregs, st.registrations);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_displace_and_trim),
		cmocka_unit_test(test_keep_none),
		cmocka_unit_test(test_destroy_with_buffer_out),
		cmocka_unit_test(test_destroy_then_threads_give_back),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
