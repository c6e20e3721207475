/*
 * Seed corpus for fuzz_ckpt_file: writes a few valid checkpoint files of
 * the fuzz shape (tests/fuzz/fuzz_shape.h) into a directory: full files
 * for SGD and Adam (with steps), an empty partition, and an Adam delta
 * with tombstones, changed and new rows. Why: a fuzzer that starts from
 * valid files reaches the block and row checks at once instead of
 * guessing a header checksum. Invariant: every seed passes
 * embkv_ckpt_check_file (checked here; exit 1 otherwise).
 * Usage: fuzz_ckpt_seeds DIR
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "server/ckpt_file.h"
#include "server/store.h"
#include "tests/fuzz/fuzz_shape.h"

static const char *dir;

static int fill(struct embkv_table *t, uint64_t from, uint64_t to)
{
	uint64_t keys[256];
	float vals[256 * FUZZ_DIM], g[256 * FUZZ_DIM];
	uint32_t n = 0;

	for (uint64_t k = from; k <= to && n < 256; k++, n++) {
		keys[n] = k;
		for (uint32_t d = 0; d < FUZZ_DIM; d++)
			g[n * FUZZ_DIM + d] = (float)((k + d) % 7) / 8.0f - 0.4f;
	}
	embkv_table_pull(t, n, keys, vals, NULL, EMBKV_PULL_TRAIN, NULL);
	embkv_table_push(t, n, keys, g);
	return 0;
}

static int seed(struct embkv_table *t, uint32_t part, uint64_t id,
		uint64_t base, const char *name)
{
	struct embkv_ckpt_snap *s;
	struct embkv_ckpt_file_info info;
	char path[4096], why[256];
	int fd, err;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	err = embkv_ckpt_snap(t, part, id, base, &s);
	if (!err) {
		err = embkv_ckpt_snap_write(s, FUZZ_UID, fd, &info);
		embkv_ckpt_snap_free(s);
	}
	if (!err)
		err = embkv_ckpt_check_file(fd, &info, why, sizeof(why));
	close(fd);
	if (err) {
		fprintf(stderr, "%s: %s (%d)\n", path, why, err);
		return 1;
	}
	embkv_part_ckpt_committed(t, part, id);
	return 0;
}

int main(int argc, char **argv)
{
	struct embkv_table_attr a;
	struct embkv_table *sgd, *adam;
	uint64_t erase[3] = { 2, 5, 9 };
	int bad = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	if (mkdir(dir, 0755) && errno != EEXIST) {
		perror(dir);
		return 1;
	}
	fuzz_attr(&a, EMBKV_OPT_SGD);
	if (embkv_table_create(&a, &sgd))
		return 1;
	fuzz_attr(&a, EMBKV_OPT_ADAM);
	if (embkv_table_create(&a, &adam))
		return 1;
	fill(sgd, 1, 40);
	fill(adam, 1, 40);
	bad |= seed(sgd, 0, 0, 0, "full-sgd-0");
	bad |= seed(sgd, 1, 0, 0, "full-sgd-1");
	bad |= seed(adam, 0, 100, 0, "full-adam-0");
	bad |= seed(adam, 1, 100, 0, "full-adam-1");
	embkv_table_erase(adam, 3, erase);
	fill(adam, 30, 90);   /* changed, new and (past capacity) evicted */
	bad |= seed(adam, 0, 200, 100, "delta-adam-0");
	bad |= seed(adam, 1, 200, 100, "delta-adam-1");
	embkv_part_clear(sgd, 0);
	bad |= seed(sgd, 0, 0, 0, "empty-sgd-0");
	embkv_table_destroy(sgd);
	embkv_table_destroy(adam);
	return bad;
}
