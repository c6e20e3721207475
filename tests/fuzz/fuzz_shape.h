/*
 * The table shape the checkpoint-file fuzzer loads into, shared with its
 * seed generator: seeds of this shape get past the table checks, so the
 * fuzzer spends its time in the row and block code of the loader.
 */
#ifndef EMBKV_TESTS_FUZZ_SHAPE_H
#define EMBKV_TESTS_FUZZ_SHAPE_H

#include <embkv/embkv.h>

#define FUZZ_UID 0x1234abcdULL
#define FUZZ_DIM 4u
#define FUZZ_PARTS 2u
#define FUZZ_CAPACITY 64u
#define FUZZ_HASH_SEED 42u

static inline void fuzz_attr(struct embkv_table_attr *a,
			     enum embkv_optimizer opt)
{
	embkv_table_attr_init(a);
	a->dim = FUZZ_DIM;
	a->capacity = FUZZ_CAPACITY;
	a->partitions = FUZZ_PARTS;
	a->opt.type = opt;
	a->opt.lr = 0.05f;
	a->init.seed = 7;
	a->hash_seed = FUZZ_HASH_SEED;
}

#endif
