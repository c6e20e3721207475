/*
 * embkv-bench, checkpoint mode (issue 12, "Bench"): one embkvd on loopback
 * with --data-dir in a fresh temp directory, one table of --ckpt-rows rows
 * (dim 64, SGD), filled with embkv_assign. Each repetition measures, on
 * the same disk and in the same run:
 *
 *   ckpt write    embkv_checkpoint_create, checkpoint bytes / wall time
 *   disk write    the same number of bytes written sequentially in 8 MiB
 *                 blocks into the same directory, then fsync
 *   disk read     that file read back in 8 MiB blocks after its pages were
 *                 dropped (fsync, then posix_fadvise DONTNEED)
 *   ckpt restore  embkv_checkpoint_restore of the checkpoint, its files'
 *                 pages dropped the same way first. A restore verifies
 *                 every chain (reads every file) and then loads (reads it
 *                 again, mostly from the page cache by then); the rate is
 *                 bytes / the whole call, and the two phases are reported.
 *   push idle     --push-threads threads pushing batches of existing keys,
 *                 keys/s over --push-s seconds before and --push-s
 *                 seconds after a second checkpoint_create
 *   push in ckpt  the same pushes, counted only while that checkpoint
 *                 is written (adjacent windows of one run of pushers, so
 *                 that a drifting machine load hurts both alike)
 *
 * Pushes are logged per batch (start, end, keys) and a window's rate is
 * the keys of every batch weighted by how much of it fell in the window,
 * so a short checkpoint (the smoke run) still gives a fair, positive rate.
 * Ratios: ckpt_write_vs_disk, ckpt_restore_vs_disk,
 * push_during_ckpt_vs_idle; with --reps R the JSON gives the median of each
 * figure and the min and max of each ratio.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <embkv/embkv.h>
#include "tools/bench_common.h"
#include "tools/bench_ckpt.h"

#define CK_DEFAULT_ROWS 10000000ull
#define CK_DIM 64u
#define CK_BATCH 4096u
#define CK_PARTITIONS 256u
#define CK_LR 0.01f
#define CK_HEADROOM 1.05
#define CK_IO_BLOCK (8u << 20)
#define CK_MAX_REPS 20u
#define CK_WARMUP_S 0.3
#define START_TIMEOUT_S 20

struct ck_opts {
	uint64_t rows;
	uint32_t reps, push_threads, threads;
	double push_s;
	const char *embkvd, *base_dir;
	int json;
};

/* ---- embkvd ---------------------------------------------------------------- */

/* Starts embkvd on a free loopback port with --data-dir dir; its address
 * into addr. */
static int start_server(const struct ck_opts *o, const char *dir,
			pid_t *pid, char *addr, size_t addrlen)
{
	char threads_arg[16], line[256];
	const char *tag = "embkvd: listening on ";
	double deadline = bench_now_s() + START_TIMEOUT_S;
	int pipefd[2];
	FILE *f;

	snprintf(threads_arg, sizeof(threads_arg), "%u", o->threads);
	if (pipe(pipefd))
		return -errno;
	*pid = fork();
	if (*pid < 0)
		return -errno;
	if (*pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		close(pipefd[0]);
		close(pipefd[1]);
		if (o->threads)
			execl(o->embkvd, o->embkvd, "--listen",
			      "tcp://127.0.0.1:0", "--data-dir", dir,
			      "--no-restore", "--threads", threads_arg,
			      (char *)NULL);
		else
			execl(o->embkvd, o->embkvd, "--listen",
			      "tcp://127.0.0.1:0", "--data-dir", dir,
			      "--no-restore", (char *)NULL);
		fprintf(stderr, "embkv-bench: cannot run %s: %s\n", o->embkvd,
			strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	while (f && bench_now_s() < deadline && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, tag);

		if (p) {
			p += strlen(tag);
			p[strcspn(p, "\r\n")] = 0;
			snprintf(addr, addrlen, "%s", p);
			fclose(f); /* later output goes to a closed pipe */
			return 0;
		}
	}
	if (f)
		fclose(f);
	return -ETIMEDOUT;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* ---- the disk baseline ------------------------------------------------------- */

/* Drops a file's pages from the page cache (fsync first: only clean pages
 * can be dropped). */
static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	(void)fdatasync(fd);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

/* Drops every file of dir from the page cache. */
static void drop_dir(const char *dir)
{
	char path[8192];
	struct dirent *de;
	DIR *d = opendir(dir);

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		drop_cache(path);
	}
	if (d)
		closedir(d);
}

/* Writes bytes sequentially into path in CK_IO_BLOCK blocks and fsyncs
 * (*wr: MB/s), drops it from the page cache, reads it back (*rd: MB/s)
 * and unlinks it. */
static int disk_baseline(const char *path, uint64_t bytes, double *wr,
			 double *rd)
{
	char *buf = aligned_alloc(4096, CK_IO_BLOCK);
	uint64_t done = 0, s = 0x9e3779b97f4a7c15ull;
	double t0;
	int fd, rc = 0;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < CK_IO_BLOCK / 8; i++) { /* not compressible */
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		memcpy(buf + i * 8, &s, 8);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	t0 = bench_now_s();
	while (!rc && done < bytes) {
		size_t n = bytes - done < CK_IO_BLOCK ? bytes - done : CK_IO_BLOCK;
		ssize_t w = write(fd, buf, n);

		if (w <= 0)
			rc = w < 0 ? -errno : -EIO;
		else
			done += (uint64_t)w;
	}
	if (!rc && fsync(fd))
		rc = -errno;
	*wr = (double)bytes / 1e6 / (bench_now_s() - t0);
	close(fd);
	drop_cache(path);
	fd = rc ? -1 : open(path, O_RDONLY | O_CLOEXEC);
	if (!rc && fd < 0)
		rc = -errno;
	if (!rc) {
		done = 0;
		t0 = bench_now_s();
		for (;;) {
			ssize_t r = read(fd, buf, CK_IO_BLOCK);

			if (r < 0) {
				rc = -errno;
				break;
			}
			if (r == 0)
				break;
			done += (uint64_t)r;
		}
		*rd = (double)done / 1e6 / (bench_now_s() - t0);
		close(fd);
	}
	unlink(path);
	free(buf);
	return rc;
}

/* Sleeps until bench_now_s() >= t. */
static void sleep_until(double t)
{
	double now;

	while ((now = bench_now_s()) < t)
		usleep(now + 0.01 < t ? 10000 : (useconds_t)((t - now) * 1e6) + 1);
}

/* ---- one repetition ----------------------------------------------------------- */

struct ck_rep {
	double ckpt_write_mbs, disk_write_mbs, disk_read_mbs;
	double ckpt_restore_mbs, restore_verify_s, restore_load_s;
	double ckpt_write_s, ckpt_during_push_s, ckpt_restore_s;
	double push_idle, push_ckpt;
	uint64_t bytes, files;
};

struct restore_watch {
	double t0, verify_end;
};

static void restore_progress(void *ctx, const struct embkv_ckpt_progress *p)
{
	struct restore_watch *w = ctx;

	if (!strcmp(p->phase, "verify"))
		w->verify_end = bench_now_s() - w->t0;
}

static int ckpt_delete(struct embkv_client *c, uint64_t id)
{
	struct embkv_ckpt_result res;
	char which[32];

	snprintf(which, sizeof(which), "%" PRIu64, id);
	return embkv_checkpoint_delete(c, which, 1, &res);
}

static int run_rep(const struct ck_opts *o, uint32_t rep, const char *dir,
		   struct embkv_client *c, struct embkv_table_handle *pt,
		   struct ck_rep *r)
{
	struct embkv_ckpt_attr a;
	struct embkv_ckpt_result res;
	struct restore_watch w = { 0 };
	struct bench_push_attr pa = {
		.threads = o->push_threads, .batch = CK_BATCH, .dim = CK_DIM,
		.t = pt, .rows = o->rows, .seed = rep + 1, .log = 1,
	};
	struct bench_pushers ps;
	char path[4096 + 64], which[32];
	uint64_t id;
	double t0, w0, w1;
	int rc, prc;

	memset(r, 0, sizeof(*r));
	/* 2. a checkpoint alone */
	embkv_ckpt_attr_init(&a);
	t0 = bench_now_s();
	rc = embkv_checkpoint_create(c, &a, &res);
	r->ckpt_write_s = bench_now_s() - t0;
	if (rc) {
		fprintf(stderr, "embkv-bench: checkpoint create: %s (%s)\n",
			embkv_strerror(rc), res.error);
		return rc;
	}
	id = res.id;
	r->bytes = res.bytes;
	r->files = res.files;
	r->ckpt_write_mbs = (double)res.bytes / 1e6 / r->ckpt_write_s;

	/* 3. the disk, same bytes, same directory */
	snprintf(path, sizeof(path), "%s/disk-baseline.bin", dir);
	rc = disk_baseline(path, res.bytes, &r->disk_write_mbs,
			   &r->disk_read_mbs);
	if (rc) {
		fprintf(stderr, "embkv-bench: disk baseline: %s\n",
			strerror(-rc));
		return rc;
	}

	/* 4. restore it, from the disk */
	snprintf(path, sizeof(path), "%s/ckpt/%" PRIu64, dir, id);
	drop_dir(path);
	snprintf(which, sizeof(which), "%" PRIu64, id);
	embkv_ckpt_attr_init(&a);
	a.progress = restore_progress;
	a.progress_ctx = &w;
	w.t0 = t0 = bench_now_s();
	rc = embkv_checkpoint_restore(c, which, &a, &res);
	r->ckpt_restore_s = bench_now_s() - t0;
	if (rc) {
		fprintf(stderr, "embkv-bench: checkpoint restore: %s (%s)\n",
			embkv_strerror(rc), res.error);
		return rc;
	}
	r->ckpt_restore_mbs = (double)r->bytes / 1e6 / r->ckpt_restore_s;
	if (!o->json) /* monotonic: lines up with perf record -k mono */
		fprintf(stderr, "restore: from %.3f, verified %.3f, to %.3f\n",
			t0, t0 + w.verify_end, t0 + r->ckpt_restore_s);
	r->restore_verify_s = w.verify_end;
	r->restore_load_s = r->ckpt_restore_s - w.verify_end;
	rc = ckpt_delete(c, id);
	if (rc) {
		fprintf(stderr, "embkv-bench: checkpoint delete: %s\n",
			embkv_strerror(rc));
		return rc;
	}

	/* 5. pushes: push_s seconds alone, then while a checkpoint is
	 * written, then push_s seconds alone again; the idle rate is that of
	 * the two windows around the checkpoint, so that a machine whose
	 * load drifts (shared cores) hurts both figures alike */
	rc = bench_pushers_init(&ps, &pa);
	if (!rc)
		rc = bench_pushers_start(&ps);
	t0 = bench_now_s();
	if (!rc)
		sleep_until(t0 + CK_WARMUP_S + o->push_s);
	embkv_ckpt_attr_init(&a);
	w0 = bench_now_s();
	if (!rc)
		rc = embkv_checkpoint_create(c, &a, &res);
	w1 = bench_now_s();
	if (!rc)
		sleep_until(w1 + o->push_s);
	prc = bench_pushers_join(&ps);
	r->ckpt_during_push_s = w1 - w0;
	if (!rc && !prc) {
		double idle =
			bench_pushers_window_keys(&ps, t0 + CK_WARMUP_S, w0) +
			bench_pushers_window_keys(&ps, w1, w1 + o->push_s);

		r->push_idle = idle / (w0 - t0 - CK_WARMUP_S + o->push_s);
		r->push_ckpt = bench_pushers_window_keys(&ps, w0, w1) /
				(w1 - w0);
	}
	bench_pushers_free(&ps);
	if (!o->json)
		fprintf(stderr, "checkpoint under pushes: from %.3f to %.3f\n",
			w0, w1);
	if (rc || prc) {
		fprintf(stderr, "embkv-bench: checkpoint under pushes: %s (%s)\n",
			embkv_strerror(rc ? rc : prc), rc ? res.error : "push");
		return rc ? rc : prc;
	}
	return ckpt_delete(c, res.id);
}

/* ---- options, report ------------------------------------------------------------ */

static void ck_usage(FILE *f)
{
	fprintf(f,
		"usage: embkv-bench --mode ckpt [options]\n"
		"Checkpoint write and restore against the disk, and pushes during\n"
		"a checkpoint against pushes alone (one embkvd on loopback).\n"
		"  --ckpt-rows N      rows of the table (default %llu), dim %u, SGD\n"
		"  --reps R           repetitions (default 1): medians, and the\n"
		"                     min and max of each ratio\n"
		"  --push-s S         seconds of idle pushes before and after\n"
		"                     the checkpoint under pushes (default 3)\n"
		"  --push-threads N   pushing threads (default 2)\n"
		"  --threads N        embkvd owner threads (default: its own)\n"
		"  --data-dir DIR     where the temp directory goes (default\n"
		"                     $TMPDIR or /tmp); it is removed at the end\n"
		"  --embkvd PATH      the embkvd binary (default: beside this one)\n"
		"  --json             one JSON object on stdout\n",
		(unsigned long long)CK_DEFAULT_ROWS, CK_DIM);
}

static int ck_parse(int argc, char **argv, struct ck_opts *o, char *buf,
		    size_t buflen)
{
	const struct bench_opt opt[] = {
		BENCH_IGNORE("mode"),
		BENCH_U64("ckpt-rows", &o->rows, 1000, 1ull << 32, 0),
		BENCH_U32("reps", &o->reps, 1, CK_MAX_REPS, 0),
		BENCH_DOUBLE("push-s", &o->push_s, 0.05, 600),
		BENCH_U32("push-threads", &o->push_threads, 1, 64, 0),
		BENCH_U32("threads", &o->threads, 1, 1024, 0),
		BENCH_STR("data-dir", &o->base_dir),
		BENCH_STR("embkvd", &o->embkvd),
		BENCH_FLAG("json", &o->json),
	};

	memset(o, 0, sizeof(*o));
	o->rows = CK_DEFAULT_ROWS;
	o->reps = 1;
	o->push_s = 3;
	o->push_threads = 2;
	o->base_dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (bench_default_embkvd(buf, buflen))
		o->embkvd = buf;
	if (bench_opts_parse(argc, argv, opt, sizeof(opt) / sizeof(opt[0]),
			     ck_usage))
		return -EINVAL;
	return bench_opts_finish(argc, argv, o->embkvd);
}

/* min, median, max of the field at offset off of every rep */
static void stats_of(const struct ck_rep *r, uint32_t n, size_t off,
		     double out[3])
{
	bench_rep_stats(r, sizeof(*r), n, off, out);
}

#define FIG(n, f) { n, offsetof(struct ck_rep, f) }
static const struct bench_figure figures[] = {
	FIG("ckpt_write_mb_per_s", ckpt_write_mbs),
	FIG("disk_write_mb_per_s", disk_write_mbs),
	FIG("ckpt_restore_mb_per_s", ckpt_restore_mbs),
	FIG("disk_read_mb_per_s", disk_read_mbs),
	FIG("ckpt_write_s", ckpt_write_s),
	FIG("ckpt_restore_s", ckpt_restore_s),
	FIG("restore_verify_s", restore_verify_s),
	FIG("restore_load_s", restore_load_s),
	FIG("ckpt_during_push_s", ckpt_during_push_s),
	FIG("push_idle_keys_per_s", push_idle),
	FIG("push_during_ckpt_keys_per_s", push_ckpt),
};

/* Ratios are computed per rep, then summarized. */
static void ratios(const struct ck_rep *r, uint32_t n, double out[3][3])
{
	struct ck_rep q[CK_MAX_REPS];

	for (uint32_t i = 0; i < n; i++) {
		q[i].ckpt_write_mbs = r[i].ckpt_write_mbs / r[i].disk_write_mbs;
		q[i].ckpt_restore_mbs = r[i].ckpt_restore_mbs /
					r[i].disk_read_mbs;
		q[i].push_idle = r[i].push_ckpt / r[i].push_idle;
	}
	stats_of(q, n, offsetof(struct ck_rep, ckpt_write_mbs), out[0]);
	stats_of(q, n, offsetof(struct ck_rep, ckpt_restore_mbs), out[1]);
	stats_of(q, n, offsetof(struct ck_rep, push_idle), out[2]);
}

static void report(const struct ck_opts *o, const struct ck_rep *r,
		   uint32_t n, double load_s)
{
	static const char *const rname[3] = { "ckpt_write_vs_disk",
					      "ckpt_restore_vs_disk",
					      "push_during_ckpt_vs_idle" };
	double rs[3][3];

	ratios(r, n, rs);
	if (!o->json) {
		fprintf(stderr, "over %u rep%s (min / median / max):\n", n,
			n == 1 ? "" : "s");
		bench_figures_text(stderr, r, sizeof(*r), n, figures,
				   sizeof(figures) / sizeof(figures[0]), 28,
				   12);
		for (int i = 0; i < 3; i++)
			fprintf(stderr, "  %-28s %12.3f %12.3f %12.3f\n",
				rname[i], rs[i][0], rs[i][1], rs[i][2]);
	}
	printf("{\"ckpt_rows\": %llu, \"dim\": %u, \"partitions\": %u, "
	       "\"reps\": %u, \"push_threads\": %u, \"ckpt_bytes\": %llu, "
	       "\"ckpt_files\": %llu, \"load_s\": %.2f",
	       (unsigned long long)o->rows, CK_DIM, CK_PARTITIONS, n,
	       o->push_threads, (unsigned long long)r[0].bytes,
	       (unsigned long long)r[0].files, load_s);
	bench_figures_json(r, sizeof(*r), n, figures,
			   sizeof(figures) / sizeof(figures[0]));
	for (int i = 0; i < 3; i++)
		printf(", \"%s\": %.3f, \"%s_min\": %.3f, \"%s_max\": %.3f",
		       rname[i], rs[i][1], rname[i], rs[i][0], rname[i],
		       rs[i][2]);
	printf("}\n");
}

/* ---- main ---------------------------------------------------------------------- */

static int load_rows(const struct ck_opts *o, struct embkv_table_handle *t)
{
	uint64_t *keys = malloc(CK_BATCH * sizeof(*keys));
	float *rows = malloc((size_t)CK_BATCH * CK_DIM * sizeof(float));
	int err = keys && rows ? 0 : -ENOMEM;

	for (uint64_t b = 0; !err && b < o->rows; b += CK_BATCH) {
		uint32_t m = (uint32_t)(o->rows - b < CK_BATCH ? o->rows - b
							     : CK_BATCH);

		for (uint32_t j = 0; j < m; j++) {
			keys[j] = bench_key_of(b + j);
			for (uint32_t d = 0; d < CK_DIM; d++)
				rows[(size_t)j * CK_DIM + d] =
					(float)((keys[j] >> (d % 48)) & 255) *
					1e-3f;
		}
		err = embkv_assign(t, m, keys, rows);
		if (!o->json && (b / CK_BATCH) % 256 == 0)
			fprintf(stderr, "\rload: %5.1f%%",
				100.0 * (double)b / (double)o->rows);
	}
	free(keys);
	free(rows);
	return err;
}

int bench_ckpt_main(int argc, char **argv)
{
	char exe[4096], dir[4096], addr[128];
	const char *addrs[1] = { addr };
	struct embkv_client_attr ca;
	struct embkv_table_attr ta;
	struct embkv_client *c = NULL, *pc = NULL;
	struct embkv_table_handle *t = NULL, *pt = NULL;
	struct ck_rep reps[CK_MAX_REPS];
	struct ck_opts o;
	pid_t pid = -1;
	double t0, load_s;
	int err, status = 1;

	if (ck_parse(argc, argv, &o, exe, sizeof(exe)))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "%s/embkv-bench-ckpt-XXXXXX", o.base_dir);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "embkv-bench: cannot create %s: %s\n", dir,
			strerror(errno));
		return 1;
	}
	err = start_server(&o, dir, &pid, addr, sizeof(addr));
	if (err) {
		fprintf(stderr, "embkv-bench: embkvd did not start: %s\n",
			strerror(-err));
		goto out;
	}
	embkv_client_attr_init(&ca);
	ca.servers = addrs;
	ca.nservers = 1;
	ca.request_timeout_ms = 600000; /* a 10M-row restore is one request */
	err = embkv_client_create(&ca, &c);
	if (!err)
		err = embkv_client_create(&ca, &pc);
	if (err) {
		fprintf(stderr, "embkv-bench: client: %s\n", embkv_strerror(err));
		goto out;
	}
	embkv_table_attr_init(&ta);
	strcpy(ta.name, "bench_ckpt");
	ta.dim = CK_DIM;
	ta.partitions = CK_PARTITIONS;
	ta.capacity = (uint64_t)((double)o.rows * CK_HEADROOM);
	ta.opt.type = EMBKV_OPT_SGD;
	ta.opt.lr = CK_LR;
	if ((err = embkv_table_create_remote(c, &ta)) ||
	    (err = embkv_table_open(c, ta.name, &t)) ||
	    (err = embkv_table_open(pc, ta.name, &pt))) {
		fprintf(stderr, "embkv-bench: table: %s\n", embkv_strerror(err));
		goto out;
	}
	if (!o.json)
		fprintf(stderr, "embkv-bench ckpt: %llu rows, dim %u, %u "
			"partitions, %u push threads, in %s\n",
			(unsigned long long)o.rows, CK_DIM, CK_PARTITIONS,
			o.push_threads, dir);
	t0 = bench_now_s();
	err = load_rows(&o, t);
	load_s = bench_now_s() - t0;
	if (err) {
		fprintf(stderr, "embkv-bench: load failed: %s\n",
			embkv_strerror(err));
		goto out;
	}
	if (!o.json)
		fprintf(stderr, "\rload: done in %.1f s\n", load_s);
	for (uint32_t i = 0; i < o.reps; i++) {
		struct ck_rep *r = &reps[i];

		if (run_rep(&o, i, dir, c, pt, r))
			goto out;
		if (!o.json)
			fprintf(stderr, "rep %u: %.0f MB in %llu files; ckpt "
				"write %.0f MB/s (disk %.0f), restore %.0f MB/s "
				"(disk read %.0f; verify %.2f s, load %.2f s), "
				"push %.2f M keys/s idle, %.2f during ckpt "
				"(%.2f s)\n",
				i + 1, (double)r->bytes / 1e6,
				(unsigned long long)r->files, r->ckpt_write_mbs,
				r->disk_write_mbs, r->ckpt_restore_mbs,
				r->disk_read_mbs, r->restore_verify_s,
				r->restore_load_s, r->push_idle / 1e6,
				r->push_ckpt / 1e6, r->ckpt_during_push_s);
	}
	report(&o, reps, o.reps, load_s);
	status = 0;
out:
	embkv_table_close(t);
	embkv_table_close(pt);
	embkv_client_destroy(c);
	embkv_client_destroy(pc);
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return status;
}
