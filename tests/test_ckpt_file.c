/*
 * server/ckpt_file: a partition written and read back is bitwise the same
 * (payload, optimizer state, step, LFU word, version) for every optimizer,
 * and training on goes on identically; an empty partition round-trips;
 * a corrupt, truncated, padded or mismatched file, or one too big for the
 * partition, is refused with the right status and a reason, and the
 * target partition stays empty (then the good file still loads); an
 * UNLOADED partition takes a file, an ABSENT one is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include "server/ckpt_file.h"
#include "server/store.h"

#define DIM 16u
#define MAX_STATE (4u * DIM)
#define UID 0x1234abcdULL

struct row_copy {
	uint64_t key, version;
	uint32_t step, meta;
	float payload[DIM];
	float state[MAX_STATE];
};

struct rows {
	struct row_copy *r;
	size_t n, cap;
	uint32_t state_floats;
};

static struct embkv_table *make_table(enum embkv_optimizer opt,
				      uint64_t capacity, uint32_t parts,
				      uint32_t dim)
{
	struct embkv_table_attr a;
	struct embkv_table *t;

	embkv_table_attr_init(&a);
	a.dim = dim;
	a.capacity = capacity;
	a.partitions = parts;
	a.opt.type = opt;
	a.opt.lr = 0.05f;
	a.opt.l1 = 0.001f;
	a.opt.l2 = 0.001f;
	a.init.seed = 7;
	a.hash_seed = 42;
	assert_int_equal(embkv_table_create(&a, &t), 0);
	return t;
}

static int collect(void *ctx, const struct embkv_row_view *v)
{
	struct rows *rs = ctx;
	struct row_copy *c;

	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? 2 * rs->cap : 256;
		rs->r = realloc(rs->r, rs->cap * sizeof(*rs->r));
		assert_non_null(rs->r);
	}
	c = &rs->r[rs->n++];
	memset(c, 0, sizeof(*c));
	c->key = v->key;
	c->version = v->version;
	c->step = v->step;
	c->meta = v->meta;
	memcpy(c->payload, v->payload, sizeof(c->payload));
	if (rs->state_floats)
		memcpy(c->state, v->state, rs->state_floats * sizeof(float));
	return 0;
}

static int by_key(const void *a, const void *b)
{
	const struct row_copy *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

/* Partition i's rows, sorted by key (row ids may differ after restore). */
static struct rows rows_of(const struct embkv_table *t, uint32_t i)
{
	struct rows rs = { .state_floats = t->state_floats };

	assert_true(t->state_floats <= MAX_STATE);
	assert_int_equal(embkv_part_for_each_row(t, i, collect, &rs), 0);
	if (rs.n)
		qsort(rs.r, rs.n, sizeof(*rs.r), by_key);
	return rs;
}

/* Every row the same; versions equal too when same_version, else b's
 * no lower (rows restored onto used rows take a higher version). */
static void assert_rows_like(const struct embkv_table *a,
			     const struct embkv_table *b, int same_version)
{
	for (uint32_t i = 0; i < a->nparts; i++) {
		struct rows x = rows_of(a, i), y = rows_of(b, i);

		assert_int_equal(x.n, y.n);
		assert_int_equal(a->parts[i].rows, b->parts[i].rows);
		for (size_t k = 0; !same_version && k < x.n; k++) {
			assert_true(y.r[k].version >= x.r[k].version);
			x.r[k].version = y.r[k].version = 0;
		}
		if (x.n)
			assert_memory_equal(x.r, y.r, x.n * sizeof(*x.r));
		free(x.r);
		free(y.r);
	}
}

static void assert_same_rows(const struct embkv_table *a,
			     const struct embkv_table *b)
{
	assert_rows_like(a, b, 1);
}

static size_t live_rows(const struct embkv_table *t, uint32_t i)
{
	struct rows rs = rows_of(t, i);

	free(rs.r);
	return rs.n;
}

static int temp_fd(void)
{
	char path[] = "/tmp/embkv_ckpt_test_XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void grads_for(uint64_t key, unsigned round, float *g, uint32_t dim)
{
	for (uint32_t d = 0; d < dim; d++)
		g[d] = (float)((int)((key * 31 + d * 7 + round * 13) % 17) - 8) /
		       16.0f;
}

/* Pushes round `round`'s gradients for keys [1, n] to t. */
static void push_round(struct embkv_table *t, uint64_t n, unsigned round)
{
	uint64_t *keys = malloc(n * sizeof(*keys));
	float *g = malloc(n * t->dim * sizeof(*g));

	for (uint64_t k = 0; k < n; k++) {
		keys[k] = k + 1;
		grads_for(keys[k], round, g + k * t->dim, t->dim);
	}
	embkv_table_push(t, (uint32_t)n, keys, g);
	free(keys);
	free(g);
}

/* Pulls keys [from, to] (find-or-insert). */
static void pull_range(struct embkv_table *t, uint64_t from, uint64_t to)
{
	uint32_t n = (uint32_t)(to - from + 1);
	uint64_t *keys = malloc(n * sizeof(*keys));
	float *out = malloc((size_t)n * t->dim * sizeof(*out));

	for (uint32_t k = 0; k < n; k++)
		keys[k] = from + k;
	embkv_table_pull(t, n, keys, out, NULL, EMBKV_PULL_TRAIN, NULL);
	free(keys);
	free(out);
}

/* A trained table: inserts past capacity (evictions), pushes, erases. */
static struct embkv_table *trained(enum embkv_optimizer opt, uint64_t nkeys)
{
	struct embkv_table *t = make_table(opt, 1024, 4, DIM);
	uint64_t erase[64];

	pull_range(t, 1, nkeys);
	push_round(t, nkeys, 0);
	pull_range(t, 1, nkeys / 2); /* counts, and re-inserts evicted keys */
	push_round(t, nkeys, 1);
	for (unsigned i = 0; i < 64; i++)
		erase[i] = 1 + i * 5;
	embkv_table_erase(t, 64, erase);
	return t;
}

static int write_part(struct embkv_table *t, uint32_t part,
		      struct embkv_ckpt_file_info *info)
{
	int fd = temp_fd();

	assert_int_equal(embkv_ckpt_write_part(t, part, UID, fd, info), 0);
	return fd;
}

static void round_trip(enum embkv_optimizer opt)
{
	struct embkv_table *a = trained(opt, 1300), *b;
	struct embkv_table_stats st;
	uint64_t total = 0;

	embkv_table_get_stats(a, &st);
	assert_true(st.sum.evictions > 0);
	assert_true(st.sum.erases > 0);
	b = make_table(opt, 1024, 4, DIM);
	for (uint32_t i = 0; i < a->nparts; i++) {
		struct embkv_ckpt_file_info wi, ri, ci;
		char why[128];
		int fd = write_part(a, i, &wi);

		assert_int_equal(wi.rows, a->parts[i].rows);
		assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)wi.bytes);
		assert_int_equal(embkv_ckpt_check_file(fd, &ci, why, sizeof(why)),
				 0);
		assert_int_equal(ci.rows, wi.rows);
		assert_int_equal(embkv_ckpt_read_part(b, i, UID, fd, &ri, why,
						      sizeof(why)), 0);
		assert_int_equal(ri.rows, wi.rows);
		assert_int_equal(ri.bytes, wi.bytes);
		total += ri.rows;
		close(fd);
	}
	assert_int_equal(total, st.rows);
	assert_same_rows(a, b);
	/* Training goes on identically (pushes only: no inserts, so no
	 * eviction choice, which may differ with index placement). */
	for (unsigned r = 2; r < 5; r++) {
		push_round(a, 1300, r);
		push_round(b, 1300, r);
	}
	assert_same_rows(a, b);
	embkv_table_destroy(a);
	embkv_table_destroy(b);
}

static void test_round_trip_sgd(void **state)
{
	(void)state;
	round_trip(EMBKV_OPT_SGD);
}

static void test_round_trip_adagrad(void **state)
{
	(void)state;
	round_trip(EMBKV_OPT_ADAGRAD);
}

static void test_round_trip_adam(void **state)
{
	(void)state;
	round_trip(EMBKV_OPT_ADAM);
}

static void test_round_trip_ftrl(void **state)
{
	(void)state;
	round_trip(EMBKV_OPT_FTRL);
}

static void test_empty_partition(void **state)
{
	struct embkv_table *a = make_table(EMBKV_OPT_ADAM, 1024, 4, DIM);
	struct embkv_table *b = make_table(EMBKV_OPT_ADAM, 1024, 4, DIM);
	struct embkv_ckpt_file_info wi, ri;
	char why[128];
	int fd;

	(void)state;
	fd = write_part(a, 2, &wi);
	assert_int_equal(wi.rows, 0);
	assert_int_equal(wi.blocks, 0);
	assert_int_equal(wi.bytes, EMBKV_CKPT_HEADER_BYTES +
				   EMBKV_CKPT_TRAILER_BYTES);
	assert_int_equal(embkv_ckpt_read_part(b, 2, UID, fd, &ri, why,
					      sizeof(why)), 0);
	assert_int_equal(ri.rows, 0);
	assert_int_equal(b->parts[2].rows, 0);
	close(fd);
	embkv_table_destroy(a);
	embkv_table_destroy(b);
}

/* A copy of fd's first `len` bytes (and `extra` bytes more) in a new file,
 * with byte `flip` (if < len) inverted. */
static int copy_file(int fd, size_t len, size_t extra, size_t flip)
{
	uint8_t *buf = calloc(1, len + extra + 1);
	int out = temp_fd();

	assert_int_equal(pread(fd, buf, len, 0), (ssize_t)len);
	if (flip < len)
		buf[flip] ^= 0x40;
	assert_int_equal(pwrite(out, buf, len + extra, 0),
			 (ssize_t)(len + extra));
	free(buf);
	return out;
}

/* fd is refused by part `part` of t with err and a reason that contains
 * `what`; the partition stays empty. */
static void refused(struct embkv_table *t, uint32_t part, uint64_t uid,
		    int fd, int err, const char *what)
{
	char why[160] = "";

	assert_int_equal(embkv_ckpt_read_part(t, part, uid, fd, NULL, why,
					      sizeof(why)), err);
	if (!strstr(why, what))
		fail_msg("reason '%s' does not say '%s'", why, what);
	assert_int_equal(t->parts[part].rows, 0);
	assert_int_equal(live_rows(t, part), 0);
}

static void test_corruption_refused(void **state)
{
	/* 2 partitions of ~1500 Adam rows: 216-byte rows, 303 per block,
	 * so each file has 5 blocks. */
	struct embkv_table *a = make_table(EMBKV_OPT_ADAM, 4096, 2, DIM);
	struct embkv_table *b = make_table(EMBKV_OPT_ADAM, 4096, 2, DIM);
	struct embkv_table *other_dim = make_table(EMBKV_OPT_ADAM, 4096, 2, 8);
	struct embkv_table *small = make_table(EMBKV_OPT_ADAM, 64, 2, DIM);
	struct embkv_table *sgd = make_table(EMBKV_OPT_SGD, 4096, 2, DIM);
	struct embkv_ckpt_file_info wi;
	size_t block;
	char why[160];
	int fd, bad;

	(void)state;
	pull_range(a, 1, 3000);
	push_round(a, 3000, 0);
	fd = write_part(a, 0, &wi);
	assert_true(wi.blocks >= 4);
	block = (size_t)wi.rows_per_block * wi.row_bytes + EMBKV_CKPT_SUM_BYTES;

	bad = copy_file(fd, wi.bytes, 0, 20);          /* header: uid */
	refused(b, 0, UID, bad, EMBKV_EPROTO, "header: checksum mismatch");
	close(bad);
	bad = copy_file(fd, wi.bytes, 0, 0);           /* header: magic */
	refused(b, 0, UID, bad, EMBKV_EPROTO, "bad magic");
	close(bad);
	bad = copy_file(fd, wi.bytes, 0,
			EMBKV_CKPT_HEADER_BYTES + 3 * block + 100);
	refused(b, 0, UID, bad, EMBKV_EPROTO, "block 3: checksum mismatch");
	close(bad);
	bad = copy_file(fd, wi.bytes, 0,                /* a block's sum */
			EMBKV_CKPT_HEADER_BYTES + block - 2);
	refused(b, 0, UID, bad, EMBKV_EPROTO, "block 0: checksum mismatch");
	close(bad);
	bad = copy_file(fd, wi.bytes, 0, wi.bytes - 3); /* trailer sum */
	refused(b, 0, UID, bad, EMBKV_EPROTO, "trailer: checksum mismatch");
	close(bad);
	bad = copy_file(fd, wi.bytes, 0, wi.bytes - 30); /* trailer magic */
	refused(b, 0, UID, bad, EMBKV_EPROTO, "trailer: bad magic");
	close(bad);
	bad = copy_file(fd, wi.bytes - 1, 0, SIZE_MAX);
	refused(b, 0, UID, bad, EMBKV_EPROTO, "truncated");
	close(bad);
	bad = copy_file(fd, 100, 0, SIZE_MAX);
	refused(b, 0, UID, bad, EMBKV_EPROTO, "truncated");
	close(bad);
	bad = copy_file(fd, wi.bytes, 1, SIZE_MAX);
	refused(b, 0, UID, bad, EMBKV_EPROTO, "1 trailing bytes");
	assert_int_equal(embkv_ckpt_check_file(bad, NULL, why, sizeof(why)),
			 EMBKV_EPROTO);
	close(bad);

	refused(b, 0, UID + 1, fd, -EINVAL, "table uid");
	refused(b, 1, UID, fd, -EINVAL, "partition 0 of 2, expected 1 of 2");
	refused(other_dim, 0, UID, fd, -EINVAL, "dim 16");
	refused(sgd, 0, UID, fd, -EINVAL, "optimizer");
	refused(small, 0, UID, fd, EMBKV_EFULL, "at most 32");

	/* Not empty: refused before the file is read. */
	pull_range(small, 1, 200);
	assert_true(small->parts[1].rows > 0);
	assert_int_equal(embkv_ckpt_read_part(small, 1, UID, fd, NULL, why,
					      sizeof(why)), -ENOTEMPTY);

	/* After all that, the good file loads, and it is the same. */
	assert_int_equal(embkv_ckpt_read_part(b, 0, UID, fd, NULL, why,
					      sizeof(why)), 0);
	{
		struct rows x = rows_of(a, 0), y = rows_of(b, 0);

		assert_int_equal(x.n, y.n);
		assert_memory_equal(x.r, y.r, x.n * sizeof(*x.r));
		free(x.r);
		free(y.r);
	}
	close(fd);
	embkv_table_destroy(a);
	embkv_table_destroy(b);
	embkv_table_destroy(other_dim);
	embkv_table_destroy(small);
	embkv_table_destroy(sgd);
}

/*
 * A file whose checksums are all sound but which holds one key twice: it
 * passes pass 1 and fails in pass 2 after rows went in, which must all be
 * taken out again. Forged here: row 1 of the only block overwritten with
 * row 0, the block checksum and the trailer's chain recomputed.
 */
static void test_duplicate_key_rolled_back(void **state)
{
	struct embkv_table *a = make_table(EMBKV_OPT_ADAGRAD, 1024, 1, DIM);
	struct embkv_table *b = make_table(EMBKV_OPT_ADAGRAD, 1024, 1, DIM);
	struct embkv_ckpt_file_info wi;
	uint8_t *buf;
	uint64_t sum, data;
	XXH3_state_t *chain;
	int fd;

	(void)state;
	pull_range(a, 1, 100);
	fd = write_part(a, 0, &wi);
	assert_int_equal(wi.blocks, 1);
	buf = malloc(wi.bytes);
	assert_int_equal(pread(fd, buf, wi.bytes, 0), (ssize_t)wi.bytes);
	data = wi.rows * wi.row_bytes;
	/* row 50 := row 0 */
	memcpy(buf + EMBKV_CKPT_HEADER_BYTES + 50 * wi.row_bytes,
	       buf + EMBKV_CKPT_HEADER_BYTES, wi.row_bytes);
	sum = XXH3_64bits_withSeed(buf + EMBKV_CKPT_HEADER_BYTES, data, 0);
	memcpy(buf + EMBKV_CKPT_HEADER_BYTES + data, &sum, sizeof(sum));
	chain = XXH3_createState();
	XXH3_64bits_reset(chain);
	XXH3_64bits_update(chain, buf, EMBKV_CKPT_HEADER_BYTES);
	XXH3_64bits_update(chain, &sum, sizeof(sum));
	XXH3_64bits_update(chain, buf + wi.bytes - EMBKV_CKPT_TRAILER_BYTES,
			   24);
	sum = XXH3_64bits_digest(chain);
	XXH3_freeState(chain);
	memcpy(buf + wi.bytes - 8, &sum, sizeof(sum));
	close(fd);
	fd = temp_fd();
	assert_int_equal(pwrite(fd, buf, wi.bytes, 0), (ssize_t)wi.bytes);
	assert_int_equal(embkv_ckpt_check_file(fd, NULL, NULL, 0), 0);
	refused(b, 0, UID, fd, EMBKV_EPROTO, "twice in the file");
	/* What pass 2 put in is out again, and the partition still loads. */
	close(fd);
	fd = write_part(a, 0, &wi);
	assert_int_equal(embkv_ckpt_read_part(b, 0, UID, fd, NULL, NULL, 0), 0);
	assert_rows_like(a, b, 0);
	close(fd);
	free(buf);
	embkv_table_destroy(a);
	embkv_table_destroy(b);
}

/* A restarted member's partitions: UNLOADED ones take a file, ABSENT
 * ones are refused (no memory), as is a write that fails. */
static void test_unloaded_and_absent(void **state)
{
	static const uint8_t owned[4] = {
		EMBKV_PART_SERVING, EMBKV_PART_ABSENT, EMBKV_PART_UNLOADED,
		EMBKV_PART_UNLOADED,
	};
	struct embkv_table *a = trained(EMBKV_OPT_FTRL, 800);
	struct embkv_table *b;
	char why[128] = "";
	int fd, ro;

	(void)state;
	assert_int_equal(embkv_table_create_parts(&a->attr, owned, &b), 0);
	fd = write_part(a, 2, NULL);
	assert_int_equal(embkv_ckpt_read_part(b, 2, UID, fd, NULL, why,
					      sizeof(why)), 0);
	assert_int_equal(embkv_part_state(&b->parts[2]), EMBKV_PART_UNLOADED);
	assert_int_equal(embkv_part_set_state(b, 2, EMBKV_PART_SERVING), 0);
	assert_int_equal(b->parts[2].rows, a->parts[2].rows);
	close(fd);
	fd = write_part(a, 1, NULL);
	refused(b, 1, UID, fd, -EINVAL, "not loaded");
	assert_int_equal(embkv_ckpt_write_part(b, 1, UID, fd, NULL), -EINVAL);
	close(fd);
	ro = open("/dev/null", O_RDONLY);
	assert_true(ro >= 0);
	assert_int_equal(embkv_ckpt_write_part(a, 0, UID, ro, NULL), -EBADF);
	close(ro);
	embkv_table_destroy(a);
	embkv_table_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_sgd),
		cmocka_unit_test(test_round_trip_adagrad),
		cmocka_unit_test(test_round_trip_adam),
		cmocka_unit_test(test_round_trip_ftrl),
		cmocka_unit_test(test_empty_partition),
		cmocka_unit_test(test_corruption_refused),
		cmocka_unit_test(test_duplicate_key_rolled_back),
		cmocka_unit_test(test_unloaded_and_absent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
