/*
 * libFuzzer target for the checkpoint-file loader (server/ckpt_file.c).
 *
 * What: each input is written to a memfd and given to
 * embkv_ckpt_check_file, then to embkv_ckpt_read_part into a small table
 * of the fuzz shape (tests/fuzz/fuzz_shape.h; one table per optimizer,
 * picked by the optimizer field of the input's header), and, when that
 * loaded, applied once more onto the loaded rows (a delta onto a
 * non-empty partition, or a full file refused as -ENOTEMPTY). Each input
 * runs twice: as it is, and with its checksums recomputed (header, every
 * block and the trailer's chain, where the header's layout fits the
 * input), since a mutation almost never keeps an XXH3 sound: without
 * the second run, the row checks, tombstones, duplicate keys and the
 * apply paths would only ever see the seeds.
 * Why: the loader reads files from disk that a crash, a bad disk or a
 * forger may have written; it must refuse them, never crash or leak.
 * Invariant checked: a refused read leaves the partition with no row
 * (rows == 0 and no live record), as CHECKPOINT.md promises; a file
 * read_part loads passes check_file too. Crashes, leaks and undefined behaviour are the
 * sanitizers' (built with -fsanitize=fuzzer,address,undefined).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>
#include "server/ckpt_file.h"
#include "server/store.h"
#include "tests/fuzz/fuzz_shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct embkv_table *tables[EMBKV_OPT_COUNT];

static int count_row(void *ctx, const struct embkv_row_view *v)
{
	(void)v;
	(*(uint64_t *)ctx)++;
	return 0;
}

static void must_be_empty(struct embkv_table *t, uint32_t part, int err,
			  const char *why)
{
	uint64_t live = 0;

	embkv_part_for_each_row(t, part, count_row, &live);
	if (t->parts[part].rows || live) {
		fprintf(stderr, "read_part returned %d (%s) and left %llu "
			"rows (%llu live)\n", err, why,
			(unsigned long long)t->parts[part].rows,
			(unsigned long long)live);
		abort();
	}
}

static uint64_t rd64(const uint8_t *b)
{
	uint64_t v;

	memcpy(&v, b, sizeof(v));
	return v;
}

static uint32_t rd32(const uint8_t *b)
{
	uint32_t v;

	memcpy(&v, b, sizeof(v));
	return v;
}

/* Recomputes the checksums of b (a forger's view of the format, from
 * CHECKPOINT.md): the header's, and, where the layout the header gives
 * is exactly the input's length, every block's and the trailer's. */
static void reseal(uint8_t *b, size_t size)
{
	uint64_t rows, blocks, off = EMBKV_CKPT_HEADER_BYTES, sum;
	uint32_t rb, per;
	XXH3_state_t *chain;

	if (size < EMBKV_CKPT_HEADER_BYTES)
		return;
	sum = XXH3_64bits(b, 120);
	memcpy(b + 120, &sum, sizeof(sum));
	rows = rd64(b + 40);
	rb = rd32(b + 84);
	per = rd32(b + 88);
	if (!rb || !per || rows > size || rb > size)
		return;
	blocks = (rows + per - 1) / per;
	if (EMBKV_CKPT_HEADER_BYTES + rows * rb + blocks * 8 +
	    EMBKV_CKPT_TRAILER_BYTES != size)
		return;
	chain = XXH3_createState();
	if (!chain)
		abort();
	XXH3_64bits_reset(chain);
	XXH3_64bits_update(chain, b, EMBKV_CKPT_HEADER_BYTES);
	for (uint64_t k = 0; k < blocks; k++) {
		uint64_t n = rows - k * per < per ? rows - k * per : per;

		sum = XXH3_64bits_withSeed(b + off, n * rb, k);
		memcpy(b + off + n * rb, &sum, sizeof(sum));
		XXH3_64bits_update(chain, &sum, sizeof(sum));
		off += n * rb + 8;
	}
	XXH3_64bits_update(chain, b + off, 24);
	sum = XXH3_64bits_digest(chain);
	memcpy(b + off + 24, &sum, sizeof(sum));
	XXH3_freeState(chain);
}

static void one(const uint8_t *data, size_t size)
{
	struct embkv_ckpt_file_info ci;
	struct embkv_table *t;
	char why[256];
	uint32_t opt = 0, part = 0;
	int fd, cerr, err;

	fd = memfd_create("fuzz_ckpt", 0);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	cerr = embkv_ckpt_check_file(fd, &ci, why, sizeof(why));
	if (size >= 80) {
		memcpy(&opt, data + 72, sizeof(opt));
		memcpy(&part, data + 56, sizeof(part));
	}
	t = tables[opt % EMBKV_OPT_COUNT];
	part %= FUZZ_PARTS;
	err = embkv_ckpt_read_part(t, part, FUZZ_UID, fd, NULL, why,
				   sizeof(why));
	if (err) {
		must_be_empty(t, part, err, why);
	} else {
		if (cerr)      /* loaded a file check_file refused */
			abort();
		/* Once more onto what is there: a delta replaces and erases,
		 * a full file is refused; either way, then emptied. */
		err = embkv_ckpt_apply_part(t, part, FUZZ_UID, fd, NULL, why,
					    sizeof(why));
		if (!(ci.flags & EMBKV_CKPT_FLAG_DELTA) && ci.rows &&
		    err != -ENOTEMPTY)
			abort();
		embkv_part_clear(t, part);
		must_be_empty(t, part, 0, "cleared");
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	if (!tables[0]) {
		for (int o = 0; o < EMBKV_OPT_COUNT; o++) {
			struct embkv_table_attr a;

			fuzz_attr(&a, (enum embkv_optimizer)o);
			if (embkv_table_create(&a, &tables[o]))
				abort();
		}
	}
	one(data, size);
	copy = malloc(size ? size : 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	reseal(copy, size);
	if (size && memcmp(copy, data, size))
		one(copy, size);
	free(copy);
	return 0;
}
