/*
 * One partition's checkpoint file (layout: server/CHECKPOINT.md).
 *
 * A file is a 128-byte header, the rows in blocks of up to 64 KiB, each
 * followed by its XXH3-64 (seeded with the block's index, so blocks cannot
 * trade places), and a 32-byte trailer whose checksum chains the header
 * and every block checksum. The layout is fully determined by the header
 * (row size, rows per block, row count), so the exact file length is
 * known before a block is read: truncation and trailing bytes are caught
 * from fstat alone.
 *
 * The writer streams rows from embkv_part_for_each_row into one block
 * buffer and writes each block when full: memory is one block, whatever
 * the partition's size. The reader never trusts what it has not checked:
 * pass 1 reads the whole file and checks header, table, capacity, every
 * block, every row's key and the trailer; only then pass 2 reads it again
 * (checking each block again, in case the file changed in between) and
 * puts the rows in with embkv_part_restore_row. A failure in pass 2 (a
 * duplicate key, the index out of slots, a changed file) clears what pass
 * 2 put in, so nothing is ever half-loaded. Two reads of the file cost a
 * second pass over the page cache, against holding a whole partition in
 * memory.
 *
 * Integers and floats are stored little-endian, as this (x86-64) host
 * holds them; the build refuses a big-endian host.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "server/ckpt_file.h"
#include "server/optim.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "checkpoint files are little-endian, as this host");

/* Header field offsets (CHECKPOINT.md). */
enum {
	H_MAGIC = 0, H_VERSION = 8, H_HDR_BYTES = 12, H_UID = 16,
	H_SEED = 24, H_CAPACITY = 32, H_ROWS = 40, H_LFU_TICKS = 48,
	H_PART = 56, H_PARTS = 60, H_DTYPE = 64, H_DIM = 68, H_OPT = 72,
	H_STATE = 76, H_FLAGS = 80, H_ROW_BYTES = 84, H_PER_BLOCK = 88,
	H_LFU_EPOCH = 92, H_RESERVED = 96, H_SUM = 120,
};

/* Trailer field offsets. */
enum { T_MAGIC = 0, T_ROWS = 8, T_BLOCKS = 16, T_SUM = 24 };

/* Row field offsets inside a block. */
enum { R_KEY = 0, R_VERSION = 8, R_STEP = 16, R_META = 20,
       R_PAYLOAD = EMBKV_CKPT_ROW_HDR_BYTES };

/* The decoded header, plus the lfu clock that info does not carry. */
struct hdr {
	struct embkv_ckpt_file_info f;
	uint32_t flags;
	uint16_t lfu_epoch;
	uint64_t lfu_ticks;
};

static void put64(uint8_t *b, size_t off, uint64_t v)
{
	memcpy(b + off, &v, sizeof(v));
}

static void put32(uint8_t *b, size_t off, uint32_t v)
{
	memcpy(b + off, &v, sizeof(v));
}

static uint64_t get64(const uint8_t *b, size_t off)
{
	uint64_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static uint32_t get32(const uint8_t *b, size_t off)
{
	uint32_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static int fail(char *why, size_t len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *why, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	if (why && len) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return err;
}

static uint32_t row_bytes_of(uint32_t dim, uint32_t state_floats)
{
	return EMBKV_CKPT_ROW_HDR_BYTES +
	       (dim + state_floats) * (uint32_t)sizeof(float);
}

static uint32_t rows_per_block_of(uint32_t row_bytes)
{
	uint32_t n = EMBKV_CKPT_BLOCK_BYTES / row_bytes;

	return n ? n : 1;
}

static uint64_t blocks_of(uint64_t rows, uint32_t per_block)
{
	return (rows + per_block - 1) / per_block;
}

/* The exact length of a file with this header. */
static uint64_t file_bytes_of(const struct embkv_ckpt_file_info *f)
{
	return EMBKV_CKPT_HEADER_BYTES + f->rows * f->row_bytes +
	       f->blocks * EMBKV_CKPT_SUM_BYTES + EMBKV_CKPT_TRAILER_BYTES;
}

static uint64_t block_sum(const uint8_t *data, size_t len, uint64_t index)
{
	return XXH3_64bits_withSeed(data, len, index);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 0, -errno, or 1 when the file ended first. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* ---- writer ------------------------------------------------------------ */

static void hdr_encode(const struct hdr *h, uint8_t b[EMBKV_CKPT_HEADER_BYTES])
{
	const struct embkv_ckpt_file_info *f = &h->f;

	memset(b, 0, EMBKV_CKPT_HEADER_BYTES);
	put64(b, H_MAGIC, EMBKV_CKPT_MAGIC);
	put32(b, H_VERSION, EMBKV_CKPT_FORMAT_VERSION);
	put32(b, H_HDR_BYTES, EMBKV_CKPT_HEADER_BYTES);
	put64(b, H_UID, f->table_uid);
	put64(b, H_SEED, f->hash_seed);
	put64(b, H_CAPACITY, f->capacity);
	put64(b, H_ROWS, f->rows);
	put64(b, H_LFU_TICKS, h->lfu_ticks);
	put32(b, H_PART, f->part);
	put32(b, H_PARTS, f->parts);
	put32(b, H_DTYPE, f->dtype);
	put32(b, H_DIM, f->dim);
	put32(b, H_OPT, f->optimizer);
	put32(b, H_STATE, f->state_floats);
	put32(b, H_FLAGS, h->flags);
	put32(b, H_ROW_BYTES, f->row_bytes);
	put32(b, H_PER_BLOCK, f->rows_per_block);
	put32(b, H_LFU_EPOCH, h->lfu_epoch);
	put64(b, H_SUM, XXH3_64bits(b, H_SUM));
}

struct writer {
	const struct embkv_table *t;
	int fd;
	uint8_t *buf;            /* one block and its checksum */
	uint32_t in_block;       /* rows in buf */
	uint32_t per_block, row_bytes;
	uint64_t rows, expect;   /* rows written; rows the header promised */
	uint64_t blocks, bytes;
	XXH3_state_t *chain;     /* header, block sums, trailer */
};

static int flush_block(struct writer *w)
{
	size_t len = (size_t)w->in_block * w->row_bytes;
	uint64_t sum;
	int err;

	if (!w->in_block)
		return 0;
	sum = block_sum(w->buf, len, w->blocks);
	put64(w->buf, len, sum);
	err = write_all(w->fd, w->buf, len + EMBKV_CKPT_SUM_BYTES);
	if (err)
		return err;
	XXH3_64bits_update(w->chain, w->buf + len, EMBKV_CKPT_SUM_BYTES);
	w->bytes += len + EMBKV_CKPT_SUM_BYTES;
	w->blocks++;
	w->in_block = 0;
	return 0;
}

static int write_row(void *ctx, const struct embkv_row_view *r)
{
	struct writer *w = ctx;
	const struct embkv_table *t = w->t;
	uint8_t *o = w->buf + (size_t)w->in_block * w->row_bytes;

	if (w->rows == w->expect)
		return EMBKV_EINCONSISTENT;
	put64(o, R_KEY, r->key);
	put64(o, R_VERSION, r->version);
	put32(o, R_STEP, r->step);
	put32(o, R_META, r->meta);
	memcpy(o + R_PAYLOAD, r->payload, t->payload_bytes);
	if (t->state_floats)
		memcpy(o + R_PAYLOAD + t->payload_bytes, r->state,
		       (size_t)t->state_floats * sizeof(float));
	w->rows++;
	if (++w->in_block == w->per_block)
		return flush_block(w);
	return 0;
}

int embkv_ckpt_write_part(const struct embkv_table *t, uint32_t part,
			  uint64_t table_uid, int fd,
			  struct embkv_ckpt_file_info *info)
{
	struct writer w = { .t = t, .fd = fd };
	const struct embkv_part *p;
	uint8_t hb[EMBKV_CKPT_HEADER_BYTES], tb[EMBKV_CKPT_TRAILER_BYTES];
	struct hdr h;
	int err;

	if (part >= t->nparts || !t->parts[part].loaded)
		return -EINVAL;
	p = &t->parts[part];
	memset(&h, 0, sizeof(h));
	h.f.table_uid = table_uid;
	h.f.hash_seed = t->attr.hash_seed;
	h.f.capacity = t->attr.capacity;
	h.f.rows = p->rows;
	h.f.part = part;
	h.f.parts = t->nparts;
	h.f.dtype = (uint32_t)t->attr.dtype;
	h.f.dim = t->dim;
	h.f.optimizer = (uint32_t)t->attr.opt.type;
	h.f.state_floats = t->state_floats;
	h.f.row_bytes = row_bytes_of(t->dim, t->state_floats);
	h.f.rows_per_block = rows_per_block_of(h.f.row_bytes);
	h.f.blocks = blocks_of(h.f.rows, h.f.rows_per_block);
	h.flags = t->opt->needs_step ? EMBKV_CKPT_FLAG_STEP : 0;
	h.lfu_epoch = p->clock.epoch;
	h.lfu_ticks = p->clock.ticks;
	hdr_encode(&h, hb);

	w.row_bytes = h.f.row_bytes;
	w.per_block = h.f.rows_per_block;
	w.expect = h.f.rows;
	err = -ENOMEM;
	w.buf = malloc((size_t)w.per_block * w.row_bytes + EMBKV_CKPT_SUM_BYTES);
	if (!w.buf)
		goto out;
	w.chain = XXH3_createState();
	if (!w.chain)
		goto free_buf;
	XXH3_64bits_reset(w.chain);
	XXH3_64bits_update(w.chain, hb, sizeof(hb));
	err = write_all(fd, hb, sizeof(hb));
	if (err)
		goto free_state;
	w.bytes = sizeof(hb);
	err = embkv_part_for_each_row(t, part, write_row, &w);
	if (!err)
		err = flush_block(&w);
	if (!err && (w.rows != w.expect || w.blocks != h.f.blocks))
		err = EMBKV_EINCONSISTENT;
	if (err)
		goto free_state;
	put64(tb, T_MAGIC, EMBKV_CKPT_END_MAGIC);
	put64(tb, T_ROWS, w.rows);
	put64(tb, T_BLOCKS, w.blocks);
	XXH3_64bits_update(w.chain, tb, T_SUM);
	put64(tb, T_SUM, XXH3_64bits_digest(w.chain));
	err = write_all(fd, tb, sizeof(tb));
	if (err)
		goto free_state;
	w.bytes += sizeof(tb);
	h.f.bytes = w.bytes;
	if (info)
		*info = h.f;
free_state:
	XXH3_freeState(w.chain);
free_buf:
	free(w.buf);
out:
	return err;
}

/* ---- reader ------------------------------------------------------------ */

/* Decodes and checks a header on its own (not against any table). */
static int hdr_decode(const uint8_t *b, uint64_t file_bytes, struct hdr *h,
		      char *why, size_t len)
{
	struct embkv_ckpt_file_info *f = &h->f;
	uint64_t want;

	if (get64(b, H_MAGIC) != EMBKV_CKPT_MAGIC)
		return fail(why, len, EMBKV_EPROTO,
			    "header: bad magic, not an embkv checkpoint file");
	if (get32(b, H_VERSION) != EMBKV_CKPT_FORMAT_VERSION)
		return fail(why, len, EMBKV_EPROTO,
			    "header: format version %u, this build reads %u",
			    get32(b, H_VERSION), EMBKV_CKPT_FORMAT_VERSION);
	if (get64(b, H_SUM) != XXH3_64bits(b, H_SUM))
		return fail(why, len, EMBKV_EPROTO, "header: checksum mismatch");
	memset(h, 0, sizeof(*h));
	f->table_uid = get64(b, H_UID);
	f->hash_seed = get64(b, H_SEED);
	f->capacity = get64(b, H_CAPACITY);
	f->rows = get64(b, H_ROWS);
	h->lfu_ticks = get64(b, H_LFU_TICKS);
	f->part = get32(b, H_PART);
	f->parts = get32(b, H_PARTS);
	f->dtype = get32(b, H_DTYPE);
	f->dim = get32(b, H_DIM);
	f->optimizer = get32(b, H_OPT);
	f->state_floats = get32(b, H_STATE);
	h->flags = get32(b, H_FLAGS);
	f->row_bytes = get32(b, H_ROW_BYTES);
	f->rows_per_block = get32(b, H_PER_BLOCK);
	/* A sound checksum over unsound fields: a writer's bug or a forgery;
	 * refused all the same, field by field. */
	if (get32(b, H_HDR_BYTES) != EMBKV_CKPT_HEADER_BYTES ||
	    get32(b, H_LFU_EPOCH) > UINT16_MAX ||
	    h->flags & ~EMBKV_CKPT_FLAG_STEP)
		return fail(why, len, EMBKV_EPROTO, "header: bad size or flags");
	h->lfu_epoch = (uint16_t)get32(b, H_LFU_EPOCH);
	for (unsigned i = H_RESERVED; i < H_SUM; i++)
		if (b[i])
			return fail(why, len, EMBKV_EPROTO,
				    "header: reserved byte %u is not 0", i);
	if (f->parts == 0 || f->parts > EMBKV_MAX_PARTITIONS ||
	    (f->parts & (f->parts - 1)) || f->part >= f->parts)
		return fail(why, len, EMBKV_EPROTO,
			    "header: partition %u of %u", f->part, f->parts);
	if (embkv_dtype_size((enum embkv_dtype)f->dtype) == 0 ||
	    f->dim == 0 || f->dim > EMBKV_MAX_DIM ||
	    f->optimizer >= EMBKV_OPT_COUNT ||
	    f->state_floats > 4 * f->dim)
		return fail(why, len, EMBKV_EPROTO,
			    "header: bad dtype %u, dim %u, optimizer %u or "
			    "state size %u", f->dtype, f->dim, f->optimizer,
			    f->state_floats);
	if (f->row_bytes != row_bytes_of(f->dim, f->state_floats) ||
	    f->rows_per_block != rows_per_block_of(f->row_bytes))
		return fail(why, len, EMBKV_EPROTO,
			    "header: row size %u or rows per block %u do not "
			    "follow from dim and state size",
			    f->row_bytes, f->rows_per_block);
	if (f->rows > EMBKV_MAX_ROWS_PER_PARTITION)
		return fail(why, len, EMBKV_EPROTO, "header: %llu rows",
			    (unsigned long long)f->rows);
	f->blocks = blocks_of(f->rows, f->rows_per_block);
	want = file_bytes_of(f);
	f->bytes = want;
	if (file_bytes < want)
		return fail(why, len, EMBKV_EPROTO,
			    "truncated: %llu bytes, %llu rows need %llu",
			    (unsigned long long)file_bytes,
			    (unsigned long long)f->rows,
			    (unsigned long long)want);
	if (file_bytes > want)
		return fail(why, len, EMBKV_EPROTO,
			    "%llu trailing bytes after the trailer",
			    (unsigned long long)(file_bytes - want));
	return 0;
}

/* The header against the table and partition it is to be loaded into. */
static int hdr_match(const struct hdr *h, const struct embkv_table *t,
		     uint32_t part, uint64_t uid, char *why, size_t len)
{
	const struct embkv_ckpt_file_info *f = &h->f;

	if (f->table_uid != uid)
		return fail(why, len, -EINVAL,
			    "table uid %llu, expected %llu",
			    (unsigned long long)f->table_uid,
			    (unsigned long long)uid);
	if (f->part != part || f->parts != t->nparts)
		return fail(why, len, -EINVAL,
			    "partition %u of %u, expected %u of %u",
			    f->part, f->parts, part, t->nparts);
	if (f->dim != t->dim || f->dtype != (uint32_t)t->attr.dtype)
		return fail(why, len, -EINVAL,
			    "dim %u dtype %u, table has dim %u dtype %u",
			    f->dim, f->dtype, t->dim, (uint32_t)t->attr.dtype);
	if (f->optimizer != (uint32_t)t->attr.opt.type ||
	    f->state_floats != t->state_floats)
		return fail(why, len, -EINVAL,
			    "optimizer %u with %u state floats, table has %u "
			    "with %u", f->optimizer, f->state_floats,
			    (uint32_t)t->attr.opt.type, t->state_floats);
	if (f->hash_seed != t->attr.hash_seed)
		return fail(why, len, -EINVAL,
			    "hash seed differs from the table's");
	return 0;
}

struct reader {
	int fd;
	struct hdr h;
	uint8_t hb[EMBKV_CKPT_HEADER_BYTES];
	uint8_t *buf;                /* one block and its checksum */
	unsigned part_bits;
	struct embkv_table *t;       /* pass 2: load into t's partition */
};

/* Checks one block's rows as rows of the header's partition. */
static int rows_check(const struct reader *r, uint64_t blk, uint32_t n,
		      char *why, size_t len)
{
	const struct embkv_ckpt_file_info *f = &r->h.f;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *o = r->buf + (size_t)i * f->row_bytes;
		uint64_t key = get64(o, R_KEY);
		uint32_t p = embkv_hash_partition(
			embkv_hash_key(key, f->hash_seed), r->part_bits);

		if (p != f->part)
			return fail(why, len, EMBKV_EPROTO,
				    "block %llu row %u: key %llu belongs to "
				    "partition %u", (unsigned long long)blk, i,
				    (unsigned long long)key, p);
		if (get64(o, R_VERSION) & EMBKV_VERSION_DEAD)
			return fail(why, len, EMBKV_EPROTO,
				    "block %llu row %u: a dead row",
				    (unsigned long long)blk, i);
		if (!(r->h.flags & EMBKV_CKPT_FLAG_STEP) && get32(o, R_STEP))
			return fail(why, len, EMBKV_EPROTO,
				    "block %llu row %u: a step without an "
				    "optimizer that counts steps",
				    (unsigned long long)blk, i);
	}
	return 0;
}

/* Puts one block's rows into the partition (pass 2). */
static int rows_load(struct reader *r, uint64_t blk, uint32_t n,
		     char *why, size_t len)
{
	const struct embkv_ckpt_file_info *f = &r->h.f;
	size_t payload = (size_t)f->dim * sizeof(float);

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *o = r->buf + (size_t)i * f->row_bytes;
		struct embkv_row_view v;
		int err;

		memset(&v, 0, sizeof(v));
		v.key = get64(o, R_KEY);
		v.version = get64(o, R_VERSION);
		v.step = get32(o, R_STEP);
		v.meta = get32(o, R_META);
		/* Rows are a multiple of 4 bytes long in a malloc'ed buffer:
		 * the floats are aligned. */
		v.payload = (const float *)(const void *)(o + R_PAYLOAD);
		v.state = f->state_floats ?
			  (const float *)(const void *)(o + R_PAYLOAD + payload)
			  : NULL;
		err = embkv_part_restore_row(r->t, f->part, &v);
		if (err == -EEXIST)
			return fail(why, len, EMBKV_EPROTO,
				    "block %llu row %u: key %llu twice in the "
				    "file", (unsigned long long)blk, i,
				    (unsigned long long)v.key);
		if (err == EMBKV_EFULL)
			return fail(why, len, EMBKV_EFULL,
				    "block %llu row %u: the partition's index "
				    "has no slot for key %llu",
				    (unsigned long long)blk, i,
				    (unsigned long long)v.key);
		if (err)
			return fail(why, len, err,
				    "block %llu row %u: restore failed: %s",
				    (unsigned long long)blk, i,
				    embkv_strerror(err));
	}
	return 0;
}

/* One pass over blocks and trailer: checks, and loads when r->t is set. */
static int walk(struct reader *r, char *why, size_t len)
{
	const struct embkv_ckpt_file_info *f = &r->h.f;
	uint8_t tb[EMBKV_CKPT_TRAILER_BYTES];
	uint64_t off = EMBKV_CKPT_HEADER_BYTES, left = f->rows;
	XXH3_state_t *chain = XXH3_createState();
	int err = -ENOMEM;

	if (!chain)
		return err;
	XXH3_64bits_reset(chain);
	XXH3_64bits_update(chain, r->hb, sizeof(r->hb));
	for (uint64_t blk = 0; blk < f->blocks; blk++) {
		uint32_t n = left < f->rows_per_block ? (uint32_t)left
						       : f->rows_per_block;
		size_t data = (size_t)n * f->row_bytes;

		err = pread_all(r->fd, r->buf, data + EMBKV_CKPT_SUM_BYTES, off);
		if (err > 0)
			err = fail(why, len, EMBKV_EPROTO,
				   "block %llu: file ended (changed while "
				   "read?)", (unsigned long long)blk);
		else if (err)
			err = fail(why, len, err, "block %llu: %s",
				   (unsigned long long)blk, strerror(-err));
		if (err)
			goto out;
		if (get64(r->buf, data) != block_sum(r->buf, data, blk)) {
			err = fail(why, len, EMBKV_EPROTO,
				   "block %llu: checksum mismatch",
				   (unsigned long long)blk);
			goto out;
		}
		XXH3_64bits_update(chain, r->buf + data, EMBKV_CKPT_SUM_BYTES);
		err = r->t ? rows_load(r, blk, n, why, len)
			   : rows_check(r, blk, n, why, len);
		if (err)
			goto out;
		off += data + EMBKV_CKPT_SUM_BYTES;
		left -= n;
	}
	err = pread_all(r->fd, tb, sizeof(tb), off);
	if (err > 0)
		err = fail(why, len, EMBKV_EPROTO, "trailer: file ended");
	else if (err)
		err = fail(why, len, err, "trailer: %s", strerror(-err));
	if (err)
		goto out;
	XXH3_64bits_update(chain, tb, T_SUM);
	if (get64(tb, T_MAGIC) != EMBKV_CKPT_END_MAGIC)
		err = fail(why, len, EMBKV_EPROTO, "trailer: bad magic");
	else if (get64(tb, T_ROWS) != f->rows ||
		 get64(tb, T_BLOCKS) != f->blocks)
		err = fail(why, len, EMBKV_EPROTO,
			   "trailer: %llu rows in %llu blocks, header says "
			   "%llu in %llu",
			   (unsigned long long)get64(tb, T_ROWS),
			   (unsigned long long)get64(tb, T_BLOCKS),
			   (unsigned long long)f->rows,
			   (unsigned long long)f->blocks);
	else if (get64(tb, T_SUM) != XXH3_64bits_digest(chain))
		err = fail(why, len, EMBKV_EPROTO, "trailer: checksum mismatch");
out:
	XXH3_freeState(chain);
	return err;
}

/* Opens a file for reading: its header, checked on its own, and a block
 * buffer (r->buf, the caller frees it). */
static int reader_open(struct reader *r, int fd, char *why, size_t len)
{
	struct stat st;
	int err;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	if (fstat(fd, &st))
		return fail(why, len, -errno, "fstat: %s", strerror(errno));
	if ((uint64_t)st.st_size < EMBKV_CKPT_HEADER_BYTES)
		return fail(why, len, EMBKV_EPROTO,
			    "truncated: %llu bytes, shorter than the header",
			    (unsigned long long)st.st_size);
	err = pread_all(fd, r->hb, sizeof(r->hb), 0);
	if (err > 0)
		return fail(why, len, EMBKV_EPROTO, "header: file ended");
	if (err)
		return fail(why, len, err, "header: %s", strerror(-err));
	err = hdr_decode(r->hb, (uint64_t)st.st_size, &r->h, why, len);
	if (err)
		return err;
	r->part_bits = (unsigned)__builtin_ctz(r->h.f.parts);
	r->buf = malloc((size_t)r->h.f.rows_per_block * r->h.f.row_bytes +
			EMBKV_CKPT_SUM_BYTES);
	if (!r->buf)
		return fail(why, len, -ENOMEM, "out of memory");
	return 0;
}

int embkv_ckpt_check_file(int fd, struct embkv_ckpt_file_info *info,
			  char *why, size_t why_len)
{
	struct reader r;
	int err;

	if (why && why_len)
		why[0] = 0;
	err = reader_open(&r, fd, why, why_len);
	if (!err)
		err = walk(&r, why, why_len);
	if (!err && info)
		*info = r.h.f;
	free(r.buf);
	return err;
}

int embkv_ckpt_read_part(struct embkv_table *t, uint32_t part,
			 uint64_t table_uid, int fd,
			 struct embkv_ckpt_file_info *info,
			 char *why, size_t why_len)
{
	const struct embkv_part *p;
	struct embkv_lfu_clock clock;
	struct reader r;
	int err;

	if (why && why_len)
		why[0] = 0;
	if (part >= t->nparts || !t->parts[part].loaded)
		return fail(why, why_len, -EINVAL,
			    "partition %u is not loaded here", part);
	p = &t->parts[part];
	if (p->rows)
		return fail(why, why_len, -ENOTEMPTY,
			    "partition %u holds %llu rows", part,
			    (unsigned long long)p->rows);
	err = reader_open(&r, fd, why, why_len);
	if (err)
		goto free_buf;
	err = hdr_match(&r.h, t, part, table_uid, why, why_len);
	if (err)
		goto free_buf;
	if (r.h.f.rows > p->capacity) {
		err = fail(why, why_len, EMBKV_EFULL,
			   "%llu rows, the partition holds at most %llu",
			   (unsigned long long)r.h.f.rows,
			   (unsigned long long)p->capacity);
		goto free_buf;
	}
	err = walk(&r, why, why_len);          /* pass 1: check it all */
	if (err)
		goto free_buf;
	clock = p->clock;
	r.t = t;
	err = embkv_part_restore_clock(t, part, r.h.lfu_epoch, r.h.lfu_ticks);
	if (!err)
		err = walk(&r, why, why_len);  /* pass 2: load */
	if (err)
		goto unload;
	if (info)
		*info = r.h.f;
	free(r.buf);
	return 0;

unload:
	embkv_part_clear(t, part);
	(void)embkv_part_restore_clock(t, part, clock.epoch, clock.ticks);
free_buf:
	free(r.buf);
	return err;
}
