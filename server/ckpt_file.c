/*
 * One partition's checkpoint file (layout: server/CHECKPOINT.md).
 *
 * A file is a 128-byte header, the rows in blocks of up to 64 KiB, each
 * followed by its XXH3-64 (seeded with the block's index, so blocks cannot
 * trade places), and a 32-byte trailer whose checksum chains the header
 * and every block checksum. The layout is fully determined by the header
 * (row size, rows per block, row count), so the exact file length is
 * known before a block is read: truncation and trailing bytes are caught
 * from fstat alone. A delta file has the same layout; its first rows are
 * tombstones (version EMBKV_CKPT_TOMBSTONE, all else zero but the key).
 *
 * Writing is split by thread. embkv_ckpt_snap runs on the owner, between
 * batches, and is one tight loop over the arena that copies each wanted
 * row straight into a buffer in the file's row format (no callback per
 * row) and clears its dirty bit; embkv_ckpt_snap_write, on any thread,
 * checksums the blocks in that buffer and writes header, blocks, sums
 * and trailer with large writev()s. The price is one copy of the
 * partition in memory while it is written.
 *
 * Reading never trusts what it has not checked. Verify (any thread)
 * reads the whole file in chunks of EMBKV_CKPT_READ_CHUNK and checks
 * header, table, capacity, every block, every row and the trailer; apply
 * (owner) reads it again, checks each block again (the file may have
 * changed in between) and puts the rows in through the store's batched
 * embkv_part_restore_rows. A failed apply of a full file clears what it
 * put in, so nothing is ever half-loaded; a failed delta is the caller's
 * to clear, since the chain's earlier files are in the partition too.
 *
 * Integers and floats are stored little-endian, as this (x86-64) host
 * holds them; the build refuses a big-endian host.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
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
	H_LFU_EPOCH = 92, H_CKPT_ID = 96, H_BASE_ID = 104, H_SEQ = 112,
	H_SUM = 120,
};

/* Trailer field offsets. */
enum { T_MAGIC = 0, T_ROWS = 8, T_BLOCKS = 16, T_SUM = 24 };

/* Row field offsets inside a block. */
enum { R_KEY = 0, R_VERSION = 8, R_STEP = 16, R_META = 20,
       R_PAYLOAD = EMBKV_CKPT_ROW_HDR_BYTES };

#define FLAGS_KNOWN (EMBKV_CKPT_FLAG_STEP | EMBKV_CKPT_FLAG_DELTA | \
		     EMBKV_CKPT_FLAG_STATE_BF16)
/* iovecs per writev: header or trailer, and (block, sum) pairs. */
#define WRITE_IOV 512

/* The decoded header, plus the lfu clock that info does not carry. */
struct hdr {
	struct embkv_ckpt_file_info f;
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

/* A row: header, dim elements of dtype, state values (fp32, or bf16
 * with EMBKV_CKPT_FLAG_STATE_BF16). 0 for an unknown dtype. */
static uint32_t row_bytes_of(uint32_t dim, uint32_t dtype,
			     uint32_t state_floats, uint32_t flags)
{
	uint32_t es = (uint32_t)embkv_dtype_size((enum embkv_dtype)dtype);
	uint32_t ss = flags & EMBKV_CKPT_FLAG_STATE_BF16 ? 2u : 4u;

	return es ? EMBKV_CKPT_ROW_HDR_BYTES + dim * es + state_floats * ss
		  : 0;
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

/* Writes all of iov[0..cnt) (changing iov as it goes). */
static int writev_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt) {
		ssize_t n = writev(fd, iov, cnt);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
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

/* ---- snapshot and writer ---------------------------------------------- */

struct embkv_ckpt_snap {
	struct hdr h;        /* all but table_uid, bytes and sum */
	uint8_t *rows;       /* h.f.rows rows of h.f.row_bytes */
};

static void hdr_encode(const struct hdr *h, uint8_t b[EMBKV_CKPT_HEADER_BYTES])
{
	const struct embkv_ckpt_file_info *f = &h->f;

	memset(b, 0, EMBKV_CKPT_HEADER_BYTES);
	put64(b, H_MAGIC, EMBKV_CKPT_MAGIC);
	/* version 1 where it says all (fp32 rows and state: the same bytes),
	 * so that a server of the version before reads it (a move during a
	 * rolling upgrade, a rolled-back binary); 2 only where it must */
	put32(b, H_VERSION, f->dtype == EMBKV_DTYPE_F32 &&
				    !(f->flags & EMBKV_CKPT_FLAG_STATE_BF16)
			    ? 1u : EMBKV_CKPT_FORMAT_VERSION);
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
	put32(b, H_FLAGS, f->flags);
	put32(b, H_ROW_BYTES, f->row_bytes);
	put32(b, H_PER_BLOCK, f->rows_per_block);
	put32(b, H_LFU_EPOCH, h->lfu_epoch);
	put64(b, H_CKPT_ID, f->ckpt_id);
	put64(b, H_BASE_ID, f->base_id);
	put64(b, H_SEQ, f->seq);
	put64(b, H_SUM, XXH3_64bits(b, H_SUM));
}

int embkv_ckpt_snap(struct embkv_table *t, uint32_t part, uint64_t ckpt_id,
		    uint64_t want_base, struct embkv_ckpt_snap **out)
{
	const size_t pb = t->payload_bytes, stride = t->stride;
	const size_t sb = t->state_bytes;
	struct embkv_ckpt_snap *s;
	struct embkv_part *p;
	struct embkv_ckpt_file_info *f;
	uint64_t most, n = 0;
	int delta;
	uint8_t *o;

	*out = NULL;
	if (part >= t->nparts || !t->parts[part].loaded)
		return -EINVAL;
	p = &t->parts[part];
	delta = want_base && embkv_part_delta_since(p) == want_base;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	f = &s->h.f;
	f->hash_seed = t->attr.hash_seed;
	f->capacity = t->attr.capacity;
	f->part = part;
	f->parts = t->nparts;
	f->dtype = (uint32_t)t->attr.dtype;
	f->dim = t->dim;
	f->optimizer = (uint32_t)t->attr.opt.type;
	f->state_floats = t->state_floats;
	f->flags = (t->opt->needs_step ? EMBKV_CKPT_FLAG_STEP : 0) |
		   (delta ? EMBKV_CKPT_FLAG_DELTA : 0) |
		   (t->state_bf16 ? EMBKV_CKPT_FLAG_STATE_BF16 : 0);
	f->row_bytes = row_bytes_of(t->dim, f->dtype, t->state_floats,
				    f->flags);
	f->rows_per_block = rows_per_block_of(f->row_bytes);
	f->ckpt_id = ckpt_id;
	f->base_id = delta ? want_base : 0;
	f->seq = p->seq;
	f->tombstones = delta ? p->ntomb : 0;
	s->h.lfu_epoch = p->clock.epoch;
	s->h.lfu_ticks = p->clock.ticks;
	most = f->tombstones + p->rows;
	/* At least one byte: malloc(0) may return NULL. */
	s->rows = malloc(most ? most * f->row_bytes : 1);
	if (!s->rows) {
		free(s);
		return -ENOMEM;
	}
	o = s->rows;
	if (delta) {
		for (uint64_t k = 0; k < p->ntomb; k++, o += f->row_bytes) {
			memset(o, 0, f->row_bytes);
			put64(o, R_KEY, p->tomb[k]);
			put64(o, R_VERSION, EMBKV_CKPT_TOMBSTONE);
		}
	}
	/* The copy loop: one pass over the arena, no call per row. */
	for (uint64_t row = 0; row < p->next_fresh; row++) {
		struct embkv_record *r = (struct embkv_record *)(p->arena +
								 row * stride);
		uint32_t *meta = embkv_record_meta(r, pb);

		if (r->version & EMBKV_VERSION_DEAD)
			continue;
		if (delta && !(*meta & EMBKV_LFU_DIRTY))
			continue;
		if (n == p->rows) /* more live rows than counted */
			goto inconsistent;
		*meta &= ~(uint32_t)EMBKV_LFU_DIRTY;
		put64(o, R_KEY, r->key);
		put64(o, R_VERSION, r->version);
		put32(o, R_STEP, p->steps ? p->steps[row] : 0);
		put32(o, R_META, *meta);
		memcpy(o + R_PAYLOAD, r->payload, pb);
		if (sb)
			memcpy(o + R_PAYLOAD + pb,
			       embkv_part_state_of(p, row), sb);
		o += f->row_bytes;
		n++;
	}
	if (!delta && n != p->rows)
		goto inconsistent;
	f->rows = f->tombstones + n;
	f->blocks = blocks_of(f->rows, f->rows_per_block);
	f->bytes = file_bytes_of(f);
	embkv_part_ckpt_snapped(t, part, ckpt_id);
	*out = s;
	return 0;

inconsistent:
	/* Dirty bits were cleared on the way: no delta may rely on them. */
	p->tomb_lost = true;
	free(s->rows);
	free(s);
	return EMBKV_EINCONSISTENT;
}

void embkv_ckpt_snap_info(const struct embkv_ckpt_snap *s, uint64_t table_uid,
			  struct embkv_ckpt_file_info *info)
{
	*info = s->h.f;
	info->table_uid = table_uid;
	info->sum = 0;
}

void embkv_ckpt_snap_free(struct embkv_ckpt_snap *s)
{
	if (!s)
		return;
	free(s->rows);
	free(s);
}

int embkv_ckpt_snap_write(const struct embkv_ckpt_snap *s, uint64_t table_uid,
			  int fd, struct embkv_ckpt_file_info *info)
{
	struct hdr h = s->h;
	const struct embkv_ckpt_file_info *f = &h.f;
	const size_t block = (size_t)f->rows_per_block * f->row_bytes;
	uint8_t hb[EMBKV_CKPT_HEADER_BYTES], tb[EMBKV_CKPT_TRAILER_BYTES];
	struct iovec iov[WRITE_IOV];
	uint64_t *sums;
	XXH3_state_t *chain;
	int cnt = 0, err = -ENOMEM;

	h.f.table_uid = table_uid;
	hdr_encode(&h, hb);
	sums = malloc((f->blocks ? f->blocks : 1) * sizeof(*sums));
	chain = XXH3_createState();
	if (!sums || !chain)
		goto out;
	XXH3_64bits_reset(chain);
	XXH3_64bits_update(chain, hb, sizeof(hb));
	iov[cnt].iov_base = hb;
	iov[cnt++].iov_len = sizeof(hb);
	for (uint64_t blk = 0; blk < f->blocks; blk++) {
		const uint8_t *data = s->rows + blk * block;
		size_t len = blk + 1 < f->blocks ? block :
			     (size_t)(f->rows - blk * f->rows_per_block) *
			     f->row_bytes;

		sums[blk] = block_sum(data, len, blk);
		iov[cnt].iov_base = (void *)(uintptr_t)data;
		iov[cnt++].iov_len = len;
		iov[cnt].iov_base = &sums[blk];
		iov[cnt++].iov_len = EMBKV_CKPT_SUM_BYTES;
		if (cnt + 2 > WRITE_IOV) {
			err = writev_all(fd, iov, cnt);
			if (err)
				goto out;
			cnt = 0;
		}
	}
	if (f->blocks)
		XXH3_64bits_update(chain, sums, f->blocks * sizeof(*sums));
	put64(tb, T_MAGIC, EMBKV_CKPT_END_MAGIC);
	put64(tb, T_ROWS, f->rows);
	put64(tb, T_BLOCKS, f->blocks);
	XXH3_64bits_update(chain, tb, T_SUM);
	h.f.sum = XXH3_64bits_digest(chain);
	put64(tb, T_SUM, h.f.sum);
	iov[cnt].iov_base = tb;
	iov[cnt++].iov_len = sizeof(tb);
	err = writev_all(fd, iov, cnt);
	if (!err && info)
		*info = h.f;
out:
	XXH3_freeState(chain);
	free(sums);
	return err;
}

int embkv_ckpt_write_part(struct embkv_table *t, uint32_t part,
			  uint64_t table_uid, int fd,
			  struct embkv_ckpt_file_info *info)
{
	struct embkv_ckpt_snap *s;
	int err = embkv_ckpt_snap(t, part, 0, 0, &s);

	if (err)
		return err;
	err = embkv_ckpt_snap_write(s, table_uid, fd, info);
	embkv_ckpt_snap_free(s);
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
	if (get32(b, H_VERSION) < EMBKV_CKPT_FORMAT_VERSION_MIN ||
	    get32(b, H_VERSION) > EMBKV_CKPT_FORMAT_VERSION)
		return fail(why, len, EMBKV_EPROTO,
			    "header: format version %u, this build reads %u "
			    "to %u", get32(b, H_VERSION),
			    EMBKV_CKPT_FORMAT_VERSION_MIN,
			    EMBKV_CKPT_FORMAT_VERSION);
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
	f->flags = get32(b, H_FLAGS);
	f->row_bytes = get32(b, H_ROW_BYTES);
	f->rows_per_block = get32(b, H_PER_BLOCK);
	f->ckpt_id = get64(b, H_CKPT_ID);
	f->base_id = get64(b, H_BASE_ID);
	f->seq = get64(b, H_SEQ);
	/* A sound checksum over unsound fields: a writer's bug or a forgery;
	 * refused all the same, field by field. */
	if (get32(b, H_HDR_BYTES) != EMBKV_CKPT_HEADER_BYTES ||
	    get32(b, H_LFU_EPOCH) > UINT16_MAX || f->flags & ~FLAGS_KNOWN)
		return fail(why, len, EMBKV_EPROTO, "header: bad size or flags");
	h->lfu_epoch = (uint16_t)get32(b, H_LFU_EPOCH);
	/* version 1 knew fp32 rows and fp32 state only */
	if (get32(b, H_VERSION) == 1 &&
	    (f->dtype != EMBKV_DTYPE_F32 ||
	     (f->flags & EMBKV_CKPT_FLAG_STATE_BF16)))
		return fail(why, len, EMBKV_EPROTO,
			    "header: a version 1 file with dtype %u or bf16 "
			    "state", f->dtype);
	if (f->flags & EMBKV_CKPT_FLAG_DELTA ?
	    !f->base_id || f->ckpt_id <= f->base_id : f->base_id != 0)
		return fail(why, len, EMBKV_EPROTO,
			    "header: %s file with checkpoint id %llu and base "
			    "%llu", f->flags & EMBKV_CKPT_FLAG_DELTA ? "a delta"
								   : "a full",
			    (unsigned long long)f->ckpt_id,
			    (unsigned long long)f->base_id);
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
	if (f->row_bytes != row_bytes_of(f->dim, f->dtype, f->state_floats,
					 f->flags) ||
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

	if (part >= t->nparts || !t->parts[part].loaded)
		return fail(why, len, -EINVAL,
			    "partition %u is not loaded here", part);
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
	    f->state_floats != t->state_floats ||
	    !(f->flags & EMBKV_CKPT_FLAG_STATE_BF16) != !t->state_bf16)
		return fail(why, len, -EINVAL,
			    "optimizer %u with %u state values (%s), table "
			    "has %u with %u (%s)", f->optimizer,
			    f->state_floats,
			    f->flags & EMBKV_CKPT_FLAG_STATE_BF16 ? "bf16"
								 : "fp32",
			    (uint32_t)t->attr.opt.type, t->state_floats,
			    t->state_bf16 ? "bf16" : "fp32");
	if (f->hash_seed != t->attr.hash_seed)
		return fail(why, len, -EINVAL,
			    "hash seed differs from the table's");
	return 0;
}

struct reader {
	int fd;
	struct hdr h;
	uint8_t hb[EMBKV_CKPT_HEADER_BYTES];
	uint8_t *buf;                /* up to chunk blocks with their sums */
	uint64_t chunk;              /* blocks per read */
	unsigned part_bits;
	struct embkv_table *t;       /* apply: load into t's partition */
	struct embkv_row_view *views;  /* apply: one block's rows */
	uint64_t tombstones;         /* counted by walk */
	uint64_t sum;                /* the trailer's checksum, by walk */
	int seen_live;               /* walk passed a live row */
};

static int all_zero(const uint8_t *b, size_t n)
{
	return !n || (b[0] == 0 && !memcmp(b, b + 1, n - 1));
}

static int key_check(const struct reader *r, uint64_t blk, uint32_t i,
		     uint64_t key, char *why, size_t len)
{
	const struct embkv_ckpt_file_info *f = &r->h.f;
	uint32_t p = embkv_hash_partition(embkv_hash_key(key, f->hash_seed),
					  r->part_bits);

	if (p != f->part)
		return fail(why, len, EMBKV_EPROTO,
			    "block %llu row %u: key %llu belongs to "
			    "partition %u", (unsigned long long)blk, i,
			    (unsigned long long)key, p);
	return 0;
}

/* Puts block blk's live rows [from, n) in (apply). */
static int rows_load(struct reader *r, uint64_t blk, const uint8_t *b,
		     uint32_t from, uint32_t n, char *why, size_t len)
{
	const struct embkv_ckpt_file_info *f = &r->h.f;
	const size_t payload = (size_t)f->dim *
			       embkv_dtype_size((enum embkv_dtype)f->dtype);
	int delta = !!(f->flags & EMBKV_CKPT_FLAG_DELTA);
	uint32_t m = 0, done;
	uint64_t key;
	int err;

	for (uint32_t i = from; i < n; i++, m++) {
		const uint8_t *o = b + (size_t)i * f->row_bytes;
		struct embkv_row_view *v = &r->views[m];

		v->row = 0;
		v->key = get64(o, R_KEY);
		v->version = get64(o, R_VERSION);
		v->step = get32(o, R_STEP);
		v->meta = get32(o, R_META) & ~(uint32_t)EMBKV_LFU_DIRTY;
		/* Copied with memcpy by the store: no alignment needed (a
		 * 16-bit row of odd dim leaves the state 2-byte aligned). */
		v->payload = o + R_PAYLOAD;
		v->state = o + R_PAYLOAD + payload;
	}
	err = embkv_part_restore_rows(r->t, f->part, m, r->views, delta, &done);
	if (!err)
		return 0;
	key = r->views[done].key;
	done += from;
	if (err == -EEXIST)
		return fail(why, len, EMBKV_EPROTO,
			    "block %llu row %u: key %llu twice in the file",
			    (unsigned long long)blk, done,
			    (unsigned long long)key);
	if (err == -EINVAL)
		return key_check(r, blk, done, key, why, len) ? EMBKV_EPROTO :
		       fail(why, len, -EINVAL, "block %llu row %u: refused",
			    (unsigned long long)blk, done);
	if (err == EMBKV_EFULL)
		return fail(why, len, EMBKV_EFULL,
			    "block %llu row %u: no room for key %llu (the "
			    "partition is full or its index has no slot)",
			    (unsigned long long)blk, done,
			    (unsigned long long)key);
	return fail(why, len, err, "block %llu row %u: restore failed: %s",
		    (unsigned long long)blk, done, embkv_strerror(err));
}

/* Checks one block's rows (and, applying, puts them in). */
static int rows_do(struct reader *r, uint64_t blk, const uint8_t *b,
		   uint32_t n, char *why, size_t len)
{
	const struct embkv_ckpt_file_info *f = &r->h.f;
	int delta = !!(f->flags & EMBKV_CKPT_FLAG_DELTA);
	uint32_t first_live = n;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *o = b + (size_t)i * f->row_bytes;
		uint64_t key = get64(o, R_KEY), version = get64(o, R_VERSION);

		if (!(version & EMBKV_VERSION_DEAD)) {
			if (version >= EMBKV_VERSION_MAX)
				return fail(why, len, EMBKV_EPROTO,
					    "block %llu row %u: version %llu "
					    "out of range",
					    (unsigned long long)blk, i,
					    (unsigned long long)version);
			if (first_live == n)
				first_live = i;
			r->seen_live = 1;
			if (!(f->flags & EMBKV_CKPT_FLAG_STEP) &&
			    get32(o, R_STEP))
				return fail(why, len, EMBKV_EPROTO,
					    "block %llu row %u: a step without "
					    "an optimizer that counts steps",
					    (unsigned long long)blk, i);
			/* Applying, the store checks the key's partition. */
			if (!r->t && key_check(r, blk, i, key, why, len))
				return EMBKV_EPROTO;
			continue;
		}
		if (!delta)
			return fail(why, len, EMBKV_EPROTO,
				    "block %llu row %u: a dead row",
				    (unsigned long long)blk, i);
		if (r->seen_live)
			return fail(why, len, EMBKV_EPROTO,
				    "block %llu row %u: a tombstone after a "
				    "live row", (unsigned long long)blk, i);
		if (version != EMBKV_CKPT_TOMBSTONE || get32(o, R_STEP) ||
		    get32(o, R_META) ||
		    !all_zero(o + R_PAYLOAD, f->row_bytes - R_PAYLOAD))
			return fail(why, len, EMBKV_EPROTO,
				    "block %llu row %u: a tombstone with more "
				    "than a key", (unsigned long long)blk, i);
		if (key_check(r, blk, i, key, why, len))
			return EMBKV_EPROTO;
		r->tombstones++;
		if (r->t)
			(void)embkv_part_restore_erase(r->t, f->part, key);
	}
	if (!r->t || first_live == n)
		return 0;
	return rows_load(r, blk, b, first_live, n, why, len);
}

/* One pass over blocks and trailer: checks, and loads when r->t is set. */
static int walk(struct reader *r, char *why, size_t len)
{
	const struct embkv_ckpt_file_info *f = &r->h.f;
	const size_t full = (size_t)f->rows_per_block * f->row_bytes;
	uint8_t tb[EMBKV_CKPT_TRAILER_BYTES];
	uint64_t off = EMBKV_CKPT_HEADER_BYTES, left = f->rows, blk = 0;
	XXH3_state_t *chain = XXH3_createState();
	int err = -ENOMEM;

	if (!chain)
		return fail(why, len, err, "out of memory");
	r->tombstones = 0;
	r->seen_live = 0;
	XXH3_64bits_reset(chain);
	XXH3_64bits_update(chain, r->hb, sizeof(r->hb));
	while (blk < f->blocks) {
		uint64_t k = f->blocks - blk < r->chunk ? f->blocks - blk
							: r->chunk;
		/* Every block but the file's last is full. */
		size_t bytes = (size_t)k * (full + EMBKV_CKPT_SUM_BYTES);
		const uint8_t *b = r->buf;

		if (blk + k == f->blocks)
			bytes -= (size_t)(k * f->rows_per_block - left) *
				 f->row_bytes;
		err = pread_all(r->fd, r->buf, bytes, off);
		if (err > 0)
			err = fail(why, len, EMBKV_EPROTO,
				   "block %llu: file ended (changed while "
				   "read?)", (unsigned long long)blk);
		else if (err)
			err = fail(why, len, err, "block %llu: %s",
				   (unsigned long long)blk, strerror(-err));
		if (err)
			goto out;
		off += bytes;
		for (uint64_t j = 0; j < k; j++, blk++) {
			uint32_t n = left < f->rows_per_block ? (uint32_t)left
							       : f->rows_per_block;
			size_t data = (size_t)n * f->row_bytes;

			if (get64(b, data) != block_sum(b, data, blk)) {
				err = fail(why, len, EMBKV_EPROTO,
					   "block %llu: checksum mismatch",
					   (unsigned long long)blk);
				goto out;
			}
			XXH3_64bits_update(chain, b + data,
					   EMBKV_CKPT_SUM_BYTES);
			err = rows_do(r, blk, b, n, why, len);
			if (err)
				goto out;
			b += data + EMBKV_CKPT_SUM_BYTES;
			left -= n;
		}
	}
	err = pread_all(r->fd, tb, sizeof(tb), off);
	if (err > 0)
		err = fail(why, len, EMBKV_EPROTO, "trailer: file ended");
	else if (err)
		err = fail(why, len, err, "trailer: %s", strerror(-err));
	if (err)
		goto out;
	XXH3_64bits_update(chain, tb, T_SUM);
	r->sum = get64(tb, T_SUM);
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
	else if (r->sum != XXH3_64bits_digest(chain))
		err = fail(why, len, EMBKV_EPROTO, "trailer: checksum mismatch");
out:
	XXH3_freeState(chain);
	return err;
}

static void reader_close(struct reader *r)
{
	free(r->buf);
	free(r->views);
	r->buf = NULL;
	r->views = NULL;
}

/* Opens a file for reading: its header, checked on its own, and a read
 * buffer (reader_close frees it). */
static int reader_open(struct reader *r, int fd, char *why, size_t len)
{
	struct stat st;
	size_t block;
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
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	r->part_bits = (unsigned)__builtin_ctz(r->h.f.parts);
	block = (size_t)r->h.f.rows_per_block * r->h.f.row_bytes +
		EMBKV_CKPT_SUM_BYTES;
	r->chunk = EMBKV_CKPT_READ_CHUNK / block;
	if (!r->chunk)
		r->chunk = 1;
	if (r->chunk > r->h.f.blocks)
		r->chunk = r->h.f.blocks ? r->h.f.blocks : 1;
	r->buf = malloc((size_t)r->chunk * block);
	if (!r->buf)
		return fail(why, len, -ENOMEM, "out of memory");
	return 0;
}

static void info_of(const struct reader *r, struct embkv_ckpt_file_info *info)
{
	if (!info)
		return;
	*info = r->h.f;
	info->tombstones = r->tombstones;
	info->sum = r->sum;
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
	if (!err)
		info_of(&r, info);
	reader_close(&r);
	return err;
}

/* Opens fd as a file for partition part of t (header and table). */
static int reader_open_for(struct reader *r, const struct embkv_table *t,
			   uint32_t part, uint64_t uid, int fd,
			   char *why, size_t len)
{
	int err;

	if (why && len)
		why[0] = 0;
	err = reader_open(r, fd, why, len);
	if (!err)
		err = hdr_match(&r->h, t, part, uid, why, len);
	if (err)
		reader_close(r);
	return err;
}

int embkv_ckpt_verify_part(const struct embkv_table *t, uint32_t part,
			   uint64_t table_uid, int fd,
			   struct embkv_ckpt_file_info *info,
			   char *why, size_t why_len)
{
	const struct embkv_ckpt_file_info *f;
	struct reader r;
	uint64_t cap;
	int err;

	err = reader_open_for(&r, t, part, table_uid, fd, why, why_len);
	if (err)
		return err;
	f = &r.h.f;
	cap = t->parts[part].capacity;
	/* A full file's rows must fit before it is read through. */
	if (!(f->flags & EMBKV_CKPT_FLAG_DELTA) && f->rows > cap) {
		err = fail(why, why_len, EMBKV_EFULL,
			   "%llu rows, the partition holds at most %llu",
			   (unsigned long long)f->rows,
			   (unsigned long long)cap);
		goto out;
	}
	err = walk(&r, why, why_len);
	if (!err && f->rows - r.tombstones > cap)
		err = fail(why, why_len, EMBKV_EFULL,
			   "%llu changed rows, the partition holds at most "
			   "%llu", (unsigned long long)(f->rows - r.tombstones),
			   (unsigned long long)cap);
	if (!err)
		info_of(&r, info);
out:
	reader_close(&r);
	return err;
}

int embkv_ckpt_apply_part(struct embkv_table *t, uint32_t part,
			  uint64_t table_uid, int fd,
			  struct embkv_ckpt_file_info *info,
			  char *why, size_t why_len)
{
	struct embkv_lfu_clock clock;
	const struct embkv_part *p;
	struct reader r;
	int delta, err;

	err = reader_open_for(&r, t, part, table_uid, fd, why, why_len);
	if (err)
		return err;
	p = &t->parts[part];
	delta = !!(r.h.f.flags & EMBKV_CKPT_FLAG_DELTA);
	if (!delta && p->rows) {
		err = fail(why, why_len, -ENOTEMPTY,
			   "a full file, and partition %u holds %llu rows",
			   part, (unsigned long long)p->rows);
		goto out;
	}
	if (!delta && r.h.f.rows > p->capacity) {
		err = fail(why, why_len, EMBKV_EFULL,
			   "%llu rows, the partition holds at most %llu",
			   (unsigned long long)r.h.f.rows,
			   (unsigned long long)p->capacity);
		goto out;
	}
	r.views = malloc((size_t)r.h.f.rows_per_block * sizeof(*r.views));
	if (!r.views) {
		err = fail(why, why_len, -ENOMEM, "out of memory");
		goto out;
	}
	r.t = t;
	clock = p->clock;
	err = embkv_part_restore_clock(t, part, r.h.lfu_epoch, r.h.lfu_ticks);
	if (!err)
		err = walk(&r, why, why_len);
	if (err && !delta) {
		embkv_part_clear(t, part);
		(void)embkv_part_restore_clock(t, part, clock.epoch,
					       clock.ticks);
	}
	if (!err)
		info_of(&r, info);
out:
	reader_close(&r);
	return err;
}

int embkv_ckpt_read_part(struct embkv_table *t, uint32_t part,
			 uint64_t table_uid, int fd,
			 struct embkv_ckpt_file_info *info,
			 char *why, size_t why_len)
{
	struct embkv_lfu_clock clock;
	int err;

	if (why && why_len)
		why[0] = 0;
	if (part >= t->nparts || !t->parts[part].loaded)
		return fail(why, why_len, -EINVAL,
			    "partition %u is not loaded here", part);
	if (t->parts[part].rows)
		return fail(why, why_len, -ENOTEMPTY,
			    "partition %u holds %llu rows", part,
			    (unsigned long long)t->parts[part].rows);
	err = embkv_ckpt_verify_part(t, part, table_uid, fd, NULL, why,
				     why_len);
	if (err)
		return err;
	clock = t->parts[part].clock;
	err = embkv_ckpt_apply_part(t, part, table_uid, fd, info, why,
				    why_len);
	if (err) { /* a delta's rows (apply cleared a full file's) */
		embkv_part_clear(t, part);
		(void)embkv_part_restore_clock(t, part, clock.epoch,
					       clock.ticks);
	}
	return err;
}
