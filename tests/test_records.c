/*
 * hashing/record: the validated reader accepts exactly a sealed record of
 * the key asked for, and rejects a flipped payload byte, a stale checksum,
 * a foreign key and an erased (dead) record.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <embkv/embkv.h>
#include "hashing/record.h"

#define DIM 37u
#define PAYLOAD (DIM * sizeof(float))

struct fixture {
	struct embkv_record *live; /* as in an arena */
	struct embkv_record *copy; /* a reader's buffer */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->live = calloc(1, embkv_record_stride(PAYLOAD));
	f->copy = calloc(1, embkv_record_stride(PAYLOAD));
	for (unsigned i = 0; i < DIM; i++)
		f->live->payload[i] = (float)i * 0.5f - 3.0f;
	embkv_record_seal(f->live, 1234, 7, PAYLOAD);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->live);
	free(f->copy);
	free(f);
	return 0;
}

static void test_stride(void **state)
{
	(void)state;
	/* header 24 + payload + meta 4, rounded up to 8 */
	assert_int_equal(embkv_record_stride(256), 288);
	assert_int_equal(embkv_record_stride(4), 32);
	assert_int_equal(embkv_record_stride(8), 40);
	assert_int_equal(embkv_record_stride(PAYLOAD) % EMBKV_RECORD_ALIGN, 0);
}

static void test_good_record_accepted(void **state)
{
	struct fixture *f = *state;
	uint64_t retries = 0;

	assert_int_equal(embkv_record_check(f->live, 1234, PAYLOAD),
			 EMBKV_RECORD_OK);
	assert_int_equal(embkv_record_read(f->live, f->copy->payload, 1234,
					   PAYLOAD, 4,
					   &retries), 0);
	assert_int_equal(retries, 0);
	assert_memory_equal(f->copy->payload, f->live->payload, PAYLOAD);
}

/* The checksum is the documented composition (net/RDMA.md): every reader,
 * local or remote, recomputes exactly this. */
static void test_checksum_definition(void **state)
{
	struct fixture *f = *state;
	uint64_t kv[2] = { 1234, 7 };

	assert_int_equal(f->live->checksum,
			 XXH3_64bits_withSeed(kv, sizeof(kv),
					      XXH3_64bits(f->live->payload,
							  PAYLOAD)));
	/* key and version are both covered: swapping them is torn */
	f->live->key = 7;
	f->live->version = 1234;
	assert_int_equal(embkv_record_check(f->live, 7, PAYLOAD),
			 EMBKV_RECORD_TORN);
}

static void test_flipped_payload_byte_rejected(void **state)
{
	struct fixture *f = *state;
	uint64_t retries = 0;

	for (size_t byte = 0; byte < PAYLOAD; byte += 13) {
		((uint8_t *)f->live->payload)[byte] ^= 0x10;
		assert_int_equal(embkv_record_check(f->live, 1234, PAYLOAD),
				 EMBKV_RECORD_TORN);
		assert_int_equal(embkv_record_read(f->live, f->copy->payload, 1234,
						   PAYLOAD, 3, &retries),
				 EMBKV_ETORN);
		((uint8_t *)f->live->payload)[byte] ^= 0x10;
	}
	assert_true(retries > 0);
	assert_int_equal(embkv_record_check(f->live, 1234, PAYLOAD),
			 EMBKV_RECORD_OK);
}

static void test_stale_checksum_rejected(void **state)
{
	struct fixture *f = *state;
	uint64_t old = f->live->checksum;

	/* the owner wrote a new payload and version but not yet the sum */
	f->live->payload[3] += 1.0f;
	f->live->version++;
	assert_int_equal(f->live->checksum, old);
	assert_int_equal(embkv_record_check(f->live, 1234, PAYLOAD),
			 EMBKV_RECORD_TORN);
	/* a version alone changing is caught too */
	embkv_record_seal(f->live, 1234, 8, PAYLOAD);
	f->live->version = 9;
	assert_int_equal(embkv_record_check(f->live, 1234, PAYLOAD),
			 EMBKV_RECORD_TORN);
	embkv_record_seal(f->live, 1234, 9, PAYLOAD);
	assert_int_equal(embkv_record_check(f->live, 1234, PAYLOAD),
			 EMBKV_RECORD_OK);
}

static void test_foreign_key_rejected(void **state)
{
	struct fixture *f = *state;
	uint64_t retries = 0;

	/* a valid record, but of another key: the row was reused */
	assert_int_equal(embkv_record_check(f->live, 1235, PAYLOAD),
			 EMBKV_RECORD_OTHER_KEY);
	assert_int_equal(embkv_record_read(f->live, f->copy->payload, 1235,
					   PAYLOAD, 4,
					   &retries), EMBKV_ENOTFOUND);
	assert_int_equal(retries, 0);
	/* the key field rewritten without a new checksum is torn, not ok */
	f->live->key = 1235;
	assert_int_equal(embkv_record_check(f->live, 1235, PAYLOAD),
			 EMBKV_RECORD_TORN);
	f->live->key = 1234;
}

static void test_dead_record_rejected(void **state)
{
	struct fixture *f = *state;

	embkv_record_seal(f->live, 1234, 8 | EMBKV_VERSION_DEAD, PAYLOAD);
	assert_int_equal(embkv_record_check(f->live, 1234, PAYLOAD),
			 EMBKV_RECORD_DEAD);
	assert_int_equal(embkv_record_read(f->live, f->copy->payload, 1234,
					   PAYLOAD, 4,
					   NULL), EMBKV_ENOTFOUND);
}

static void test_zeroed_memory_rejected(void **state)
{
	struct fixture *f = *state;

	/* a never-written row: all zeros is not a valid record of key 0 */
	memset(f->copy, 0, embkv_record_stride(PAYLOAD));
	assert_int_equal(embkv_record_check(f->copy, 0, PAYLOAD),
			 EMBKV_RECORD_TORN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stride),
		cmocka_unit_test_setup_teardown(test_good_record_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checksum_definition, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flipped_payload_byte_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_checksum_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_key_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_record_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zeroed_memory_rejected, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
