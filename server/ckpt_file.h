/*
 * One partition's checkpoint file: the snapshot and the writer, the
 * verifier and the all-or-nothing loader. The byte layout and what is
 * checked are in server/CHECKPOINT.md.
 *
 * Files and threads. Every function works on an fd the caller opened and
 * still owns (never closed here). The writer appends at the fd's current
 * offset; the caller gives it a fresh file (a temp name it renames once
 * the writer returned 0 and it fsync'ed the file). The checker, verifier
 * and loader read the whole file with pread() from offset 0, so the fd's
 * offset does not matter and is not moved.
 *
 * A checkpoint of a partition is taken in two steps: embkv_ckpt_snap, on
 * the partition's owner thread (between batches: it copies the rows into
 * one buffer, in the file's row format, and blocks the owner only for
 * that copy), then embkv_ckpt_snap_write on any thread (checksums and
 * I/O). A restore is embkv_ckpt_verify_part on any thread (the whole
 * file, before anything is touched), then embkv_ckpt_apply_part on the
 * owner thread, once per file of the chain (a full file, then its deltas
 * in order), then embkv_part_ckpt_restored (store.h).
 *
 * Errors: 0 or a negative status. EMBKV_EPROTO: the file is malformed,
 * corrupt, truncated or has trailing bytes; -EINVAL: a sound file of
 * another table, partition or shape; EMBKV_EFULL: its rows do not fit the
 * partition; -ENOTEMPTY: the partition holds rows (a full file is only
 * applied to an empty one); -errno of a failed read/write; -ENOMEM. Where
 * a function takes why/why_len (why may be NULL), a failure also leaves a
 * one-line reason there ("block 3: checksum mismatch"); the caller adds
 * the file's name.
 */
#ifndef EMBKV_SERVER_CKPT_FILE_H
#define EMBKV_SERVER_CKPT_FILE_H

#include <stddef.h>
#include <stdint.h>
#include "server/store.h"

#define EMBKV_CKPT_MAGIC UINT64_C(0x314b43564b424d45)     /* "EMBKVCK1" */
#define EMBKV_CKPT_END_MAGIC UINT64_C(0x444e45564b424d45) /* "EMBKVEND" */
/* Version 2: rows of dim x size(dtype) (fp16, bf16), state fp32 or bf16
 * (EMBKV_CKPT_FLAG_STATE_BF16); version 1 files (fp32 only, the same
 * layout otherwise) are still read. */
#define EMBKV_CKPT_FORMAT_VERSION 2u
#define EMBKV_CKPT_FORMAT_VERSION_MIN 1u
#define EMBKV_CKPT_HEADER_BYTES 128u
#define EMBKV_CKPT_TRAILER_BYTES 32u
#define EMBKV_CKPT_ROW_HDR_BYTES 24u   /* key, version, step, LFU word */
#define EMBKV_CKPT_BLOCK_BYTES 65536u  /* rows per block: as many as fit */
#define EMBKV_CKPT_SUM_BYTES 8u        /* the XXH3-64 after every block */
#define EMBKV_CKPT_FLAG_STEP 1u        /* rows carry a meaningful step */
#define EMBKV_CKPT_FLAG_DELTA 2u       /* a delta file: tombstones, then
					  the rows changed since base_id */
#define EMBKV_CKPT_FLAG_STATE_BF16 4u  /* optimizer state stored as bf16 */
/* The version of a tombstone row (nothing else of it is set). */
#define EMBKV_CKPT_TOMBSTONE EMBKV_VERSION_DEAD
/* Readers read this much of a file at once (whole blocks). */
#define EMBKV_CKPT_READ_CHUNK (8u << 20)

/* What a file holds (filled by the writer, the checker and the reader). */
struct embkv_ckpt_file_info {
	uint64_t bytes;          /* file length */
	uint64_t rows;           /* all rows, tombstones included */
	uint64_t blocks;
	uint64_t table_uid;
	uint64_t hash_seed;
	uint64_t capacity;       /* the writing table's capacity (informative) */
	uint64_t ckpt_id;        /* checkpoint the file belongs to */
	uint64_t base_id;        /* a delta's base checkpoint; 0: full file */
	uint64_t seq;            /* the partition's mutation count */
	uint64_t tombstones;     /* of rows (a delta's first ones) */
	uint64_t sum;            /* the trailer's chained checksum (0 from
				    embkv_ckpt_snap_info: not known yet) */
	uint32_t flags;          /* EMBKV_CKPT_FLAG_* */
	uint32_t part, parts;
	uint32_t dim, dtype;     /* enum embkv_dtype */
	uint32_t optimizer;      /* enum embkv_optimizer */
	uint32_t state_floats;
	uint32_t row_bytes, rows_per_block;
};

/* A partition copied for writing (ckpt_file.c). */
struct embkv_ckpt_snap;

/*
 * Owner thread (or while nothing else writes partition part of t):
 * copies the partition into a fresh snapshot, *out. A delta (its
 * tombstones, then the rows whose dirty bit is set) when want_base != 0
 * and embkv_part_delta_since() == want_base (its last snapshot was
 * want_base, committed, and no tombstone was lost), else a full copy of
 * every live row. Either way the dirty bits are cleared, the tombstones
 * emptied and the partition's last snapshot becomes ckpt_id (deltas on
 * it wait for embkv_part_ckpt_committed). The copy holds the rows, the
 * LFU clock and seq; LFU words are copied without the dirty bit. 0,
 * -EINVAL (partition holds no memory), -ENOMEM (nothing changed),
 * EMBKV_EINCONSISTENT (the row count did not match: a store bug; the
 * partition's next snapshot is full).
 */
int embkv_ckpt_snap(struct embkv_table *t, uint32_t part, uint64_t ckpt_id,
		    uint64_t want_base, struct embkv_ckpt_snap **out);

/* Any thread: what s would write (sum and bytes of the file excepted:
 * bytes is exact, sum is 0). */
void embkv_ckpt_snap_info(const struct embkv_ckpt_snap *s, uint64_t table_uid,
			  struct embkv_ckpt_file_info *info);

/*
 * Any thread: writes snapshot s as a file to fd, tagged with table_uid
 * (header, checksummed blocks, trailer; large writev()s). info (may be
 * NULL) gets what was written, the trailer's checksum included. The
 * write's -errno: the file is then incomplete and must not be renamed.
 * s is not changed (it may be written again).
 */
int embkv_ckpt_snap_write(const struct embkv_ckpt_snap *s, uint64_t table_uid,
			  int fd, struct embkv_ckpt_file_info *info);

void embkv_ckpt_snap_free(struct embkv_ckpt_snap *s);

/*
 * A full file of partition `part` of t in one call: embkv_ckpt_snap with
 * ckpt_id 0 and no base (so the partition's last snapshot becomes 0: no
 * deltas until a numbered snapshot), _write, _free. Owner thread.
 */
int embkv_ckpt_write_part(struct embkv_table *t, uint32_t part,
			  uint64_t table_uid, int fd,
			  struct embkv_ckpt_file_info *info);

/*
 * Verifies a file on its own, without a table: header, every block's
 * checksum, every row (key in the partition the header names; tombstones
 * only at the start of a delta, and all zero but their key), the trailer,
 * the exact length. info (may be NULL) gets the header's fields, the
 * tombstone count and the trailer's checksum.
 */
int embkv_ckpt_check_file(int fd, struct embkv_ckpt_file_info *info,
			  char *why, size_t why_len);

/*
 * Any thread, before touching t: everything embkv_ckpt_check_file checks,
 * and the file against partition part of t: table_uid, part, partition
 * count, dtype, dim, optimizer and its state size, hash seed, and its
 * live rows against the partition's capacity (EMBKV_EFULL). Not whether
 * the partition is empty, nor the chain: the caller checks info->base_id
 * and info->ckpt_id against the manifests. t is only read (its geometry).
 */
int embkv_ckpt_verify_part(const struct embkv_table *t, uint32_t part,
			   uint64_t table_uid, int fd,
			   struct embkv_ckpt_file_info *info,
			   char *why, size_t why_len);

/*
 * Owner thread: puts a (verified) file into partition part of t. A full
 * file goes into an empty partition (-ENOTEMPTY otherwise) and its LFU
 * clock is restored; a delta goes onto what is there: its tombstones erase
 * their keys where stored, its rows replace or insert theirs, the clock
 * becomes the delta's. Header and table are checked again, and every
 * block and row while reading, in case the file changed since it was
 * verified. On a failure the partition of a full file is cleared
 * (embkv_part_clear) and its clock put back: it is empty again. On the
 * failure of a delta the partition is left as the failure found it and
 * the caller clears it (the chain's earlier files are in it). Rows are
 * stored without the dirty bit; embkv_part_ckpt_restored ends a chain.
 */
int embkv_ckpt_apply_part(struct embkv_table *t, uint32_t part,
			  uint64_t table_uid, int fd,
			  struct embkv_ckpt_file_info *info,
			  char *why, size_t why_len);

/*
 * embkv_ckpt_verify_part, then embkv_ckpt_apply_part, into a partition
 * that must be loaded and empty (-ENOTEMPTY before anything is read): a
 * full file, or a delta on nothing. On any error the partition keeps no
 * row of the file and its LFU clock is as before. The partition's state
 * (SERVING/UNLOADED) and embkv_part_ckpt_restored are the caller's.
 */
int embkv_ckpt_read_part(struct embkv_table *t, uint32_t part,
			 uint64_t table_uid, int fd,
			 struct embkv_ckpt_file_info *info,
			 char *why, size_t why_len);

#endif
