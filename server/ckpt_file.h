/*
 * One partition's checkpoint file: the writer, the verifier and the
 * all-or-nothing loader. The byte layout and what is checked are in
 * server/CHECKPOINT.md.
 *
 * Files and threads. Every function works on an fd the caller opened and
 * still owns (never closed here). The writer appends at the fd's current
 * offset with write(); the caller gives it a fresh file (a temp name it
 * renames once the writer returned 0 and it fsync'ed the file). The checker
 * and the reader read the whole file with pread() from offset 0, so the
 * fd's offset does not matter and is not moved. Writer and reader run on
 * the partition's owner thread (or while nothing else writes the
 * partition); the checker needs no table and runs on any thread.
 *
 * Errors: 0 or a negative status. EMBKV_EPROTO: the file is malformed,
 * corrupt, truncated or has trailing bytes; -EINVAL: a sound file of
 * another table, partition or shape; EMBKV_EFULL: its rows do not fit the
 * partition; -ENOTEMPTY: the partition holds rows; -errno of a failed
 * read/write; -ENOMEM. Where a function takes why/why_len (why may be
 * NULL), a failure also leaves a one-line reason there ("block 3:
 * checksum mismatch"); the caller adds the file's name.
 */
#ifndef EMBKV_SERVER_CKPT_FILE_H
#define EMBKV_SERVER_CKPT_FILE_H

#include <stddef.h>
#include <stdint.h>
#include "server/store.h"

#define EMBKV_CKPT_MAGIC UINT64_C(0x314b43564b424d45)     /* "EMBKVCK1" */
#define EMBKV_CKPT_END_MAGIC UINT64_C(0x444e45564b424d45) /* "EMBKVEND" */
#define EMBKV_CKPT_FORMAT_VERSION 1u
#define EMBKV_CKPT_HEADER_BYTES 128u
#define EMBKV_CKPT_TRAILER_BYTES 32u
#define EMBKV_CKPT_ROW_HDR_BYTES 24u   /* key, version, step, LFU word */
#define EMBKV_CKPT_BLOCK_BYTES 65536u  /* rows per block: as many as fit */
#define EMBKV_CKPT_SUM_BYTES 8u        /* the XXH3-64 after every block */
#define EMBKV_CKPT_FLAG_STEP 1u        /* rows carry a meaningful step */

/* What a file holds (filled by the writer, the checker and the reader). */
struct embkv_ckpt_file_info {
	uint64_t bytes;          /* file length */
	uint64_t rows;
	uint64_t blocks;
	uint64_t table_uid;
	uint64_t hash_seed;
	uint64_t capacity;       /* the writing table's capacity (informative) */
	uint32_t part, parts;
	uint32_t dim, dtype;     /* enum embkv_dtype */
	uint32_t optimizer;      /* enum embkv_optimizer */
	uint32_t state_floats;
	uint32_t row_bytes, rows_per_block;
};

/*
 * Writes partition `part` of t (every live row, with payload, optimizer
 * state, step and LFU word) to fd, tagged with table_uid. info (may be
 * NULL) gets what was written. -EINVAL for a partition that holds no
 * memory; EMBKV_EINCONSISTENT if the rows changed under the writer; the
 * write's -errno (the file is then incomplete and must not be renamed).
 */
int embkv_ckpt_write_part(const struct embkv_table *t, uint32_t part,
			  uint64_t table_uid, int fd,
			  struct embkv_ckpt_file_info *info);

/*
 * Verifies a file on its own, without a table: header, every block's
 * checksum, every row's key in the partition the header names, the
 * trailer, the exact length. info (may be NULL) gets the header's fields.
 */
int embkv_ckpt_check_file(int fd, struct embkv_ckpt_file_info *info,
			  char *why, size_t why_len);

/*
 * Loads a file into partition `part` of t, which must be loaded and empty
 * (rows == 0, e.g. UNLOADED after a restart). The whole file is verified
 * first (as the checker does, and against t: table_uid, part, partition
 * count, dtype, dim, optimizer and its state size, hash seed; and its row
 * count against the partition's capacity); only then are the rows put in.
 * On any error the partition keeps no row of the file and its LFU clock is
 * as before. The partition's state (SERVING/UNLOADED) is the caller's.
 */
int embkv_ckpt_read_part(struct embkv_table *t, uint32_t part,
			 uint64_t table_uid, int fd,
			 struct embkv_ckpt_file_info *info,
			 char *why, size_t why_len);

#endif
