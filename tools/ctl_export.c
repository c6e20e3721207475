/*
 * embkvctl export | import: a table's keys and values as one file for
 * inference (issue 12, item 5). The format is tools/EXPORT.md's: a 64-byte
 * little-endian header, u64 keys[rows], values[rows][dim] (fp32 or IEEE
 * fp16), a 16-byte trailer; numpy reads it with np.fromfile.
 *
 * export walks every partition with embkv_scan() (SCAN pages, values only,
 * never optimizer state). The row count is known only at the end and keys
 * come first in the file, so keys are kept in memory (8 bytes a row) and
 * values go to an unlinked scratch file beside the target; then
 * "FILE.tmp.<pid>" gets header, keys, values (copied) and trailer, is
 * fsynced and renamed to FILE, and the directory is fsynced. A failure
 * leaves FILE as it was and removes the temp file.
 *
 * import verifies the whole file first (header checksum, magic, version,
 * dtype, dim, exact length, trailer magic and the XXH3-64 of keys and
 * values) and only then touches the table: a dim mismatch is refused
 * naming the file, and rows are stored with embkv_assign() in batches
 * (fp16 widened to the table's fp32).
 *
 * Progress (rows done/total, MB/s, time left) goes to stderr at most twice
 * a second, when stderr is a terminal or with --progress; a one-line
 * summary is always printed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <embkv/embkv.h>
#include "tools/ctl.h"
#include "hashing/f16.h"

#define EX_MAGIC "EMBKVEX1"
#define EX_TRAILER_MAGIC "EMBKVEND"
#define EX_VERSION 1u
#define EX_HDR_SIZE 64u
#define EX_TRAILER_SIZE 16u
#define EX_DTYPE_F32 0u
#define EX_DTYPE_F16 1u
#define EX_PAGE_ROWS 4096u       /* rows per SCAN page asked */
#define EX_IMPORT_ROWS 4096u     /* rows per embkv_assign batch */
#define EX_IO_BYTES (4u << 20)   /* verify / copy chunk */
#define EX_PROGRESS_NS 500000000ull
#define NS_PER_S 1000000000.0
#define BYTES_PER_MB 1e6

/* Header byte offsets (tools/EXPORT.md). */
enum ex_hdr_off {
	EX_OFF_MAGIC = 0,     /* 8 bytes "EMBKVEX1" */
	EX_OFF_VERSION = 8,   /* u32 */
	EX_OFF_DTYPE = 12,    /* u32: 0 fp32, 1 fp16 */
	EX_OFF_DIM = 16,      /* u32 */
	EX_OFF_HDRSIZE = 20,  /* u32, 64 */
	EX_OFF_ROWS = 24,     /* u64 */
	EX_OFF_NAMEHASH = 32, /* u64 XXH3-64 of the table name */
	EX_OFF_RESERVED = 40, /* 16 bytes of 0 */
	EX_OFF_HDRSUM = 56,   /* u64 XXH3-64 of bytes [0, 56) */
};

/* Little-endian helpers (the file's byte order on any host). */
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Progress ------------------------------------------------------------------ */

struct progress {
	const char *what;   /* "export", "import", "verify" */
	int on;
	uint64_t t0, last;
	uint64_t total;     /* rows expected (0: unknown) */
};

static void progress_init(struct progress *p, const char *what, int forced,
			  uint64_t total)
{
	p->what = what;
	p->on = forced || isatty(STDERR_FILENO);
	p->t0 = p->last = now_ns();
	p->total = total;
}

static void progress_tick(struct progress *p, uint64_t rows, uint64_t bytes,
			  int force)
{
	uint64_t t = now_ns();
	double s, mbs;

	if (!p->on || (!force && t - p->last < EX_PROGRESS_NS))
		return;
	p->last = t;
	s = (double)(t - p->t0) / NS_PER_S;
	mbs = s > 0 ? (double)bytes / BYTES_PER_MB / s : 0;
	if (p->total && rows <= p->total && rows) {
		double left = s * (double)(p->total - rows) / (double)rows;

		fprintf(stderr, "%s: %s: %" PRIu64 "/%" PRIu64 " rows "
			"(%.1f%%), %.1f MB/s, %.0f s left\n", embkv_ctl_prog,
			p->what, rows, p->total,
			100.0 * (double)rows / (double)p->total, mbs, left);
	} else {
		fprintf(stderr, "%s: %s: %" PRIu64 " rows, %.1f MB/s\n",
			embkv_ctl_prog, p->what, rows, mbs);
	}
}

static double progress_secs(const struct progress *p)
{
	return (double)(now_ns() - p->t0) / NS_PER_S;
}

/* Files --------------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Reads exactly len bytes at off: 0, -errno, or -ENODATA at end of file. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ENODATA;
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static size_t dtype_bytes(uint32_t dtype)
{
	return dtype == EX_DTYPE_F16 ? sizeof(uint16_t) : sizeof(float);
}

/* The directory of path, fsynced (after a rename into it). */
static void fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int fd;

	if (!copy)
		return;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

/* An unlinked scratch file in path's directory. */
static int scratch_open(const char *path)
{
	char *copy = strdup(path), *tmpl;
	size_t len;
	int fd;

	if (!copy)
		return -ENOMEM;
	len = strlen(copy) + 32;
	tmpl = malloc(len);
	if (!tmpl) {
		free(copy);
		return -ENOMEM;
	}
	snprintf(tmpl, len, "%s/.embkv-export-XXXXXX", dirname(copy));
	fd = mkstemp(tmpl);
	if (fd >= 0)
		unlink(tmpl);
	else
		fd = -errno;
	free(tmpl);
	free(copy);
	return fd;
}

/* The table's rows over all servers (embkv_stats' "rows"), for progress
 * only; 0 when unknown. */
struct rows_ctx {
	const char *table;
	uint64_t rows;
};

static void rows_cb(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct rows_ctx *r = ctx;

	(void)server;
	if (table && strcmp(table, r->table) == 0 && strcmp(name, "rows") == 0)
		r->rows += value;
}

/* Arguments ------------------------------------------------------------------ */

static int parse_common(int argc, char **argv, struct embkv_ctl_args *a,
			int is_export)
{
	const char *cmd = argv[0];
	int pos = 0;

	for (int i = 1; i < argc; i++) {
		if (embkv_ctl_is_help(argv[i]))
			return HELP_SHOWN;
		if (strcmp(argv[i], "--progress") == 0) {
			a->progress = 1;
		} else if (is_export && strcmp(argv[i], "--fp16") == 0) {
			a->fp16 = 1;
		} else if (is_export && strcmp(argv[i], "--fp32") == 0) {
			a->fp16 = 0;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "%s: %s: unknown option %s (see %s "
				"--help)\n", embkv_ctl_prog, cmd, argv[i],
				embkv_ctl_prog);
			return EXIT_USAGE;
		} else if (pos == 0) {
			a->name = argv[i];
			pos++;
		} else if (pos == 1) {
			a->file = argv[i];
			pos++;
		} else {
			pos++;
		}
	}
	if (pos != 2) {
		fprintf(stderr, "%s: %s: needs TABLE and FILE (see %s "
			"--help)\n", embkv_ctl_prog, cmd, embkv_ctl_prog);
		return EXIT_USAGE;
	}
	return 0;
}

int embkv_ctl_export_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	return parse_common(argc, argv, a, 1);
}

int embkv_ctl_import_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	return parse_common(argc, argv, a, 0);
}

/* export ----------------------------------------------------------------------- */

struct export_state {
	const struct embkv_ctl_args *a;
	struct embkv_table_handle *t;
	uint32_t dim, dtype;
	size_t row_out;          /* bytes of one row in the file */
	uint64_t *keys;          /* every key, in file order */
	uint64_t rows, cap;
	int vfd;                 /* scratch: the values */
	XXH3_state_t *sum;       /* keys then values; values summed after */
	char *tmp;               /* "FILE.tmp.<pid>" */
};

static int keys_grow(struct export_state *e, uint64_t more)
{
	uint64_t want = e->rows + more, cap = e->cap ? e->cap : 65536;
	uint64_t *k;

	if (want <= e->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	k = realloc(e->keys, (size_t)cap * sizeof(*k));
	if (!k)
		return -ENOMEM;
	e->keys = k;
	e->cap = cap;
	return 0;
}

/* Scans every partition: keys into e->keys, values (converted) to the
 * scratch file. Pages come as the table stores its rows; a 16-bit table's
 * are widened to fp32 (exact), then narrowed to the file's fp16 when
 * asked (exact again for an fp16 table: export never rounds twice). */
static int export_scan(struct export_state *e, struct progress *pr)
{
	const struct embkv_table_attr *ta = embkv_table_attr_get(e->t);
	uint32_t nparts = ta->partitions;
	size_t in_row = (size_t)e->dim * sizeof(float);
	size_t stored_row = (size_t)e->dim * embkv_dtype_size(ta->dtype);
	uint64_t *keys = malloc(EX_PAGE_ROWS * sizeof(uint64_t));
	float *vals = malloc(EX_PAGE_ROWS * in_row);
	void *stored = ta->dtype == EMBKV_DTYPE_F32
			       ? (void *)vals
			       : malloc(EX_PAGE_ROWS * stored_row);
	uint16_t *half = NULL;
	int rc = 0;

	if (e->dtype == EX_DTYPE_F16)
		half = malloc(EX_PAGE_ROWS * (size_t)e->dim * sizeof(uint16_t));
	if (!keys || !vals || !stored ||
	    (e->dtype == EX_DTYPE_F16 && !half)) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t p = 0; !rc && p < nparts; p++) {
		uint64_t cursor = 0;

		while (cursor != EMBKV_SCAN_END) {
			uint32_t n = 0;
			const void *out = vals;

			rc = embkv_scan(e->t, p, &cursor, EX_PAGE_ROWS, keys,
					stored, &n);
			if (rc) {
				fprintf(stderr, "%s: export: scan of partition "
					"%u: %s\n", embkv_ctl_prog, p,
					embkv_strerror(rc));
				goto out;
			}
			if (!n)
				continue;
			rc = keys_grow(e, n);
			if (rc)
				goto out;
			memcpy(e->keys + e->rows, keys, (size_t)n * 8);
			if (stored != (void *)vals)
				embkv_dtype_to_f32(ta->dtype, stored, vals,
						   (size_t)n * e->dim);
			if (half) {
				for (size_t i = 0; i < (size_t)n * e->dim; i++)
					half[i] = embkv_f32_to_f16(vals[i]);
				out = half;
			}
			rc = write_all(e->vfd, out, (size_t)n * e->row_out);
			if (rc) {
				fprintf(stderr, "%s: export: %s: %s\n",
					embkv_ctl_prog, e->tmp, strerror(-rc));
				goto out;
			}
			e->rows += n;
			progress_tick(pr, e->rows,
				      e->rows * (8 + e->row_out), 0);
		}
	}
out:
	free(half);
	if (stored != (void *)vals)
		free(stored);
	free(vals);
	free(keys);
	return rc;
}

/* Writes header, keys, values (from the scratch file) and trailer to fd. */
static int export_write(struct export_state *e, int fd)
{
	uint8_t hdr[EX_HDR_SIZE], tr[EX_TRAILER_SIZE];
	const char *name = embkv_table_attr_get(e->t)->name;
	uint64_t left = e->rows * e->row_out, off = 0;
	uint8_t *buf;
	int rc;

	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr + EX_OFF_MAGIC, EX_MAGIC, 8);
	put32(hdr + EX_OFF_VERSION, EX_VERSION);
	put32(hdr + EX_OFF_DTYPE, e->dtype);
	put32(hdr + EX_OFF_DIM, e->dim);
	put32(hdr + EX_OFF_HDRSIZE, EX_HDR_SIZE);
	put64(hdr + EX_OFF_ROWS, e->rows);
	put64(hdr + EX_OFF_NAMEHASH, XXH3_64bits(name, strlen(name)));
	put64(hdr + EX_OFF_HDRSUM, XXH3_64bits(hdr, EX_OFF_HDRSUM));
	rc = write_all(fd, hdr, sizeof(hdr));
	if (!rc && e->rows) {
		XXH3_64bits_update(e->sum, e->keys, (size_t)e->rows * 8);
		rc = write_all(fd, e->keys, (size_t)e->rows * 8);
	}
	buf = malloc(EX_IO_BYTES);
	if (!buf)
		return -ENOMEM;
	while (!rc && left) {
		size_t chunk = left < EX_IO_BYTES ? (size_t)left : EX_IO_BYTES;

		rc = pread_all(e->vfd, buf, chunk, off);
		if (!rc) {
			XXH3_64bits_update(e->sum, buf, chunk);
			rc = write_all(fd, buf, chunk);
		}
		off += chunk;
		left -= chunk;
	}
	free(buf);
	if (rc)
		return rc;
	memcpy(tr, EX_TRAILER_MAGIC, 8);
	put64(tr + 8, XXH3_64bits_digest(e->sum));
	rc = write_all(fd, tr, sizeof(tr));
	if (!rc && fsync(fd))
		rc = -errno;
	return rc;
}

int embkv_ctl_export_run(struct embkv_client *c,
			 const struct embkv_ctl_args *a, int json)
{
	struct export_state e = { .a = a, .vfd = -1 };
	struct rows_ctx rc_rows = { .table = a->name };
	struct progress pr;
	size_t tlen;
	double secs, mb;
	int rc, fd = -1, status = EXIT_FAILED;

	(void)json;
	rc = embkv_table_open(c, a->name, &e.t);
	if (rc)
		return embkv_ctl_failed(a->name, rc);
	e.dim = embkv_table_attr_get(e.t)->dim;
	e.dtype = a->fp16 ? EX_DTYPE_F16 : EX_DTYPE_F32;
	e.row_out = (size_t)e.dim * dtype_bytes(e.dtype);
	e.sum = XXH3_createState();
	tlen = strlen(a->file) + 32;
	e.tmp = malloc(tlen);
	if (!e.sum || !e.tmp) {
		fprintf(stderr, "%s: export: out of memory\n", embkv_ctl_prog);
		goto out;
	}
	XXH3_64bits_reset(e.sum);
	snprintf(e.tmp, tlen, "%s.tmp.%ld", a->file, (long)getpid());
	e.vfd = scratch_open(a->file);
	if (e.vfd < 0) {
		fprintf(stderr, "%s: export: scratch file beside %s: %s\n",
			embkv_ctl_prog, a->file, strerror(-e.vfd));
		goto out;
	}
	embkv_stats(c, rows_cb, &rc_rows); /* best effort: progress only */
	progress_init(&pr, "export", a->progress, rc_rows.rows);
	if (export_scan(&e, &pr))
		goto out;
	fd = open(e.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "%s: export: %s: %s\n", embkv_ctl_prog, e.tmp,
			strerror(errno));
		goto out;
	}
	rc = export_write(&e, fd);
	if (!rc && close(fd))
		rc = -errno;
	fd = -1;
	if (!rc && rename(e.tmp, a->file))
		rc = -errno;
	if (rc) {
		fprintf(stderr, "%s: export: %s: %s\n", embkv_ctl_prog, e.tmp,
			strerror(-rc));
		unlink(e.tmp);
		goto out;
	}
	fsync_dir_of(a->file);
	progress_tick(&pr, e.rows, e.rows * (8 + e.row_out), 1);
	secs = progress_secs(&pr);
	mb = (double)(EX_HDR_SIZE + e.rows * (8 + e.row_out) +
		      EX_TRAILER_SIZE) / BYTES_PER_MB;
	fprintf(stderr, "%s: exported %" PRIu64 " rows of dim %u (%s) of "
		"table %s to %s: %.1f MB in %.2f s (%.1f MB/s)\n",
		embkv_ctl_prog, e.rows, e.dim, a->fp16 ? "fp16" : "fp32",
		a->name, a->file, mb, secs, secs > 0 ? mb / secs : 0);
	status = 0;
out:
	if (fd >= 0) {
		close(fd);
		unlink(e.tmp);
	}
	if (e.vfd >= 0)
		close(e.vfd);
	XXH3_freeState(e.sum);
	free(e.tmp);
	free(e.keys);
	embkv_table_close(e.t);
	return status;
}

/* import ------------------------------------------------------------------------- */

struct import_file {
	int fd;
	uint32_t dtype, dim;
	uint64_t rows;
	uint64_t keys_off, vals_off;
	size_t row_in;           /* bytes of a row in the file */
};

/* Checks everything the file says about itself; prints why not (naming
 * the file) and returns -1, else 0. */
static int import_verify(const char *path, struct import_file *f,
			 struct progress *pr)
{
	uint8_t hdr[EX_HDR_SIZE], tr[EX_TRAILER_SIZE], *buf = NULL;
	XXH3_state_t *sum = NULL;
	struct stat st;
	uint64_t body, left, off, want;
	const char *why = NULL;
	int rc;

	if (fstat(f->fd, &st)) {
		fprintf(stderr, "%s: import: %s: %s\n", embkv_ctl_prog, path,
			strerror(errno));
		return -1;
	}
	rc = pread_all(f->fd, hdr, sizeof(hdr), 0);
	if (rc) {
		why = "too short for a header";
		goto bad;
	}
	if (memcmp(hdr + EX_OFF_MAGIC, EX_MAGIC, 8)) {
		why = "not an embkv export (bad magic)";
		goto bad;
	}
	if (get64(hdr + EX_OFF_HDRSUM) != XXH3_64bits(hdr, EX_OFF_HDRSUM)) {
		why = "header checksum mismatch";
		goto bad;
	}
	if (get32(hdr + EX_OFF_VERSION) != EX_VERSION) {
		why = "unknown format version";
		goto bad;
	}
	f->dtype = get32(hdr + EX_OFF_DTYPE);
	f->dim = get32(hdr + EX_OFF_DIM);
	f->rows = get64(hdr + EX_OFF_ROWS);
	if (f->dtype > EX_DTYPE_F16 || !f->dim || f->dim > EMBKV_MAX_DIM ||
	    get32(hdr + EX_OFF_HDRSIZE) != EX_HDR_SIZE) {
		why = "bad dtype, dim or header size";
		goto bad;
	}
	f->row_in = (size_t)f->dim * dtype_bytes(f->dtype);
	/* rows * (8 + row) must not overflow: rows <= (2^63) / (8 + row) */
	if (f->rows > (UINT64_C(1) << 62) / (8 + f->row_in)) {
		why = "row count out of range";
		goto bad;
	}
	f->keys_off = EX_HDR_SIZE;
	f->vals_off = EX_HDR_SIZE + f->rows * 8;
	body = f->rows * (8 + f->row_in);
	want = EX_HDR_SIZE + body + EX_TRAILER_SIZE;
	if ((uint64_t)st.st_size != want) {
		fprintf(stderr, "%s: import: %s: refused: %s (%" PRIu64
			" bytes, the header says %" PRIu64 "); nothing "
			"loaded\n",
			embkv_ctl_prog, path,
			(uint64_t)st.st_size < want ? "truncated"
						    : "trailing bytes",
			(uint64_t)st.st_size, want);
		return -1;
	}
	rc = pread_all(f->fd, tr, sizeof(tr), EX_HDR_SIZE + body);
	if (rc || memcmp(tr, EX_TRAILER_MAGIC, 8)) {
		why = "bad trailer";
		goto bad;
	}
	sum = XXH3_createState();
	buf = malloc(EX_IO_BYTES);
	if (!sum || !buf) {
		why = "out of memory";
		goto bad;
	}
	XXH3_64bits_reset(sum);
	for (left = body, off = EX_HDR_SIZE; left;) {
		size_t chunk = left < EX_IO_BYTES ? (size_t)left : EX_IO_BYTES;

		rc = pread_all(f->fd, buf, chunk, off);
		if (rc) {
			why = "read error";
			goto bad;
		}
		XXH3_64bits_update(sum, buf, chunk);
		off += chunk;
		left -= chunk;
		progress_tick(pr, 0, off, 0);
	}
	if (XXH3_64bits_digest(sum) != get64(tr + 8)) {
		why = "checksum mismatch over keys and values (corrupted)";
		goto bad;
	}
	XXH3_freeState(sum);
	free(buf);
	return 0;
bad:
	XXH3_freeState(sum);
	free(buf);
	fprintf(stderr, "%s: import: %s: refused: %s; nothing loaded\n",
		embkv_ctl_prog, path, why);
	return -1;
}

static int import_load(struct embkv_table_handle *t, const char *path,
		       const struct import_file *f, struct progress *pr)
{
	uint64_t *keys = malloc(EX_IMPORT_ROWS * sizeof(uint64_t));
	float *vals = malloc(EX_IMPORT_ROWS * (size_t)f->dim * sizeof(float));
	uint16_t *half = malloc(EX_IMPORT_ROWS * (size_t)f->dim *
				sizeof(uint16_t));
	int rc = 0;

	if (!keys || !vals || !half) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint64_t at = 0; at < f->rows; at += EX_IMPORT_ROWS) {
		uint32_t n = f->rows - at < EX_IMPORT_ROWS ?
				     (uint32_t)(f->rows - at) : EX_IMPORT_ROWS;
		void *dst = f->dtype == EX_DTYPE_F16 ? (void *)half
						     : (void *)vals;

		rc = pread_all(f->fd, keys, (size_t)n * 8,
			       f->keys_off + at * 8);
		if (!rc)
			rc = pread_all(f->fd, dst, (size_t)n * f->row_in,
				       f->vals_off + at * f->row_in);
		if (rc) {
			fprintf(stderr, "%s: import: %s: %s\n",
				embkv_ctl_prog, path, strerror(-rc));
			goto out;
		}
		if (f->dtype == EX_DTYPE_F16)
			for (size_t i = 0; i < (size_t)n * f->dim; i++)
				vals[i] = embkv_f16_to_f32(half[i]);
		rc = embkv_assign(t, n, keys, vals);
		if (rc) {
			fprintf(stderr, "%s: import: %s: storing rows %"
				PRIu64 "..%" PRIu64 ": %s (the rows before "
				"were stored)\n", embkv_ctl_prog, path, at,
				at + n - 1, embkv_strerror(rc));
			goto out;
		}
		progress_tick(pr, at + n, (at + n) * (8 + f->row_in), 0);
	}
out:
	free(half);
	free(vals);
	free(keys);
	return rc;
}

int embkv_ctl_import_run(struct embkv_client *c,
			 const struct embkv_ctl_args *a, int json)
{
	struct import_file f = { .fd = -1 };
	struct embkv_table_handle *t = NULL;
	struct progress pr;
	double secs, mb;
	int rc, status = EXIT_FAILED;

	(void)json;
	f.fd = open(a->file, O_RDONLY | O_CLOEXEC);
	if (f.fd < 0) {
		fprintf(stderr, "%s: import: %s: %s\n", embkv_ctl_prog,
			a->file, strerror(errno));
		return EXIT_FAILED;
	}
	progress_init(&pr, "import: verify", a->progress, 0);
	if (import_verify(a->file, &f, &pr))
		goto out;
	rc = embkv_table_open(c, a->name, &t);
	if (rc) {
		embkv_ctl_failed(a->name, rc);
		goto out;
	}
	if (embkv_table_attr_get(t)->dim != f.dim) {
		fprintf(stderr, "%s: import: %s: refused: the file's rows have "
			"dim %u, table %s has dim %u; nothing loaded\n",
			embkv_ctl_prog, a->file, f.dim, a->name,
			embkv_table_attr_get(t)->dim);
		goto out;
	}
	progress_init(&pr, "import", a->progress, f.rows);
	if (import_load(t, a->file, &f, &pr))
		goto out;
	progress_tick(&pr, f.rows, f.rows * (8 + f.row_in), 1);
	secs = progress_secs(&pr);
	mb = (double)(f.rows * (8 + f.row_in)) / BYTES_PER_MB;
	fprintf(stderr, "%s: imported %" PRIu64 " rows of dim %u (%s) from %s "
		"into table %s: %.1f MB in %.2f s (%.1f MB/s)\n",
		embkv_ctl_prog, f.rows, f.dim,
		f.dtype == EX_DTYPE_F16 ? "fp16" : "fp32", a->file, a->name, mb,
		secs, secs > 0 ? mb / secs : 0);
	status = 0;
out:
	embkv_table_close(t);
	close(f.fd);
	return status;
}
