/*
 * Table catalog (server/catalog.c), table identity: every table gets a
 * nonzero uid, drawn ones differ, a caller-given one is kept and may not
 * be a published table's (-EEXIST, nothing published), and a lookup by
 * id and uid finds a table only when both are its own. A table created
 * again after a drop gets a new id and a new uid. The catalog's hooks
 * (embkvd registers table memory for RDMA through them) run once per
 * built table and once when its last reference goes, and a failing built
 * hook fails the create with its error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "server/catalog.h"

#define GIVEN_UID 0x0123456789abcdefull
#define N_DRAWN 16u

static void small_attr(struct embkv_table_attr *a, const char *name)
{
	embkv_table_attr_init(a);
	strcpy(a->name, name);
	a->dim = 4;
	a->partitions = 4;
	a->capacity = 256;
}

static int setup(void **state)
{
	struct embkv_catalog_attr attr;
	struct embkv_catalog *cat;

	rcu_register_thread();
	embkv_catalog_attr_init(&attr);
	if (embkv_catalog_create(&attr, &cat))
		return -1;
	*state = cat;
	return 0;
}

static int teardown(void **state)
{
	embkv_catalog_destroy(*state);
	rcu_unregister_thread();
	return 0;
}

/* The entry that (id, uid) names, as a request would find it. */
static struct embkv_catalog_entry *lookup(struct embkv_catalog *cat,
					  uint32_t id, uint64_t uid)
{
	struct embkv_catalog_entry *e;

	rcu_read_lock();
	e = embkv_catalog_find_ref(cat, id, uid);
	rcu_read_unlock();
	return e;
}

static void test_drawn_uids(void **state)
{
	struct embkv_catalog *cat = *state;
	struct embkv_table_attr a;
	uint64_t uids[N_DRAWN];
	uint32_t ids[N_DRAWN];
	char name[16];

	for (uint32_t i = 0; i < N_DRAWN; i++) {
		snprintf(name, sizeof(name), "t%u", i);
		small_attr(&a, name);
		assert_int_equal(embkv_catalog_add(cat, &a, NULL, 0, &ids[i],
						   &uids[i]), 0);
		assert_true(uids[i] != 0);
		for (uint32_t j = 0; j < i; j++)
			assert_true(uids[j] != uids[i]);
	}
	for (uint32_t i = 0; i < N_DRAWN; i++) {
		struct embkv_catalog_entry *e = lookup(cat, ids[i], uids[i]);

		assert_non_null(e);
		assert_int_equal(e->id, ids[i]);
		assert_true(e->uid == uids[i]);
		/* the id with any other table's uid, or none, is no table */
		assert_null(lookup(cat, ids[i], uids[(i + 1) % N_DRAWN]));
		assert_null(lookup(cat, ids[i], 0));
		assert_null(lookup(cat, ids[i], uids[i] ^ 1));
	}
	/* uid_out may be NULL */
	small_attr(&a, "no_out");
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, 0, &ids[0], NULL), 0);
}

static void test_given_uid(void **state)
{
	struct embkv_catalog *cat = *state;
	struct embkv_catalog_entry *e;
	struct embkv_table_attr a;
	uint64_t uid = 0;
	uint32_t id = 0, id2 = 0;

	small_attr(&a, "given");
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, GIVEN_UID, &id, &uid), 0);
	assert_true(uid == GIVEN_UID);
	assert_non_null(lookup(cat, id, GIVEN_UID));
	/* another table may not take a published table's uid */
	small_attr(&a, "twin");
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, GIVEN_UID, &id2, &uid),
			 -EEXIST);
	rcu_read_lock();
	e = embkv_catalog_find_name(cat, "twin");
	rcu_read_unlock();
	assert_null(e);
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, 0, &id2, &uid), 0);
	assert_true(uid != GIVEN_UID);
}

static void test_recreated_is_another_table(void **state)
{
	struct embkv_catalog *cat = *state;
	struct embkv_table_attr a;
	uint64_t uid1 = 0, uid2 = 0;
	uint32_t id1 = 0, id2 = 0;

	small_attr(&a, "again");
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, 0, &id1, &uid1), 0);
	assert_int_equal(embkv_catalog_drop(cat, "again"), 0);
	assert_null(lookup(cat, id1, uid1));
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, 0, &id2, &uid2), 0);
	assert_int_not_equal(id1, id2);
	assert_true(uid1 != uid2);
	assert_null(lookup(cat, id1, uid1));
	assert_null(lookup(cat, id2, uid1));
	assert_non_null(lookup(cat, id2, uid2));
}

struct hook_log {
	uint32_t built, freed;
	int fail;                  /* what built returns */
	void *data;                /* what built leaves in hook_data */
};

static int hook_built(void *ctx, struct embkv_catalog_entry *e)
{
	struct hook_log *log = ctx;

	assert_non_null(e->table);
	log->built++;
	if (!log->fail)
		e->hook_data = log->data;
	return log->fail;
}

static void hook_freed(void *ctx, struct embkv_catalog_entry *e)
{
	struct hook_log *log = ctx;

	assert_ptr_equal(e->hook_data, log->data);
	assert_non_null(e->table); /* before the table goes */
	log->freed++;
}

static void test_hooks(void **state)
{
	struct hook_log log = { .data = &log };
	struct embkv_catalog_attr attr;
	struct embkv_catalog_entry *e;
	struct embkv_catalog *cat;
	struct embkv_table_attr a;
	uint64_t uid = 0;
	uint32_t id = 0;

	(void)state;
	rcu_register_thread();
	embkv_catalog_attr_init(&attr);
	attr.hooks.built = hook_built;
	attr.hooks.freed = hook_freed;
	attr.hooks.ctx = &log;
	assert_int_equal(embkv_catalog_create(&attr, &cat), 0);
	small_attr(&a, "hooked");
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, 0, &id, &uid), 0);
	assert_int_equal(log.built, 1);
	rcu_read_lock();
	e = embkv_catalog_find_ref(cat, id, uid);
	assert_non_null(e);
	assert_ptr_equal(e->hook_data, &log);
	embkv_catalog_entry_get(e);
	rcu_read_unlock();
	/* dropped, but a reference holds it: not freed yet */
	assert_int_equal(embkv_catalog_drop(cat, "hooked"), 0);
	rcu_barrier();
	assert_int_equal(log.freed, 0);
	embkv_catalog_entry_put(e);
	assert_int_equal(log.freed, 1);
	/* a failing built hook fails the create; freed is not called */
	log.fail = -EIO;
	small_attr(&a, "refused");
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, 0, &id, &uid), -EIO);
	assert_int_equal(log.built, 2);
	rcu_read_lock();
	assert_null(embkv_catalog_find_name(cat, "refused"));
	rcu_read_unlock();
	log.fail = 0;
	small_attr(&a, "kept");
	assert_int_equal(embkv_catalog_add(cat, &a, NULL, 0, &id, &uid), 0);
	embkv_catalog_destroy(cat);
	assert_int_equal(log.built, 3);
	assert_int_equal(log.freed, 2);
	rcu_unregister_thread();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_drawn_uids, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_given_uid, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_recreated_is_another_table,
						setup, teardown),
		cmocka_unit_test(test_hooks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
