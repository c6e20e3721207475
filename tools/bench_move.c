/*
 * embkv-bench, move mode (issue 13, "Bench"): a private etcd and two
 * embkvd members on loopback (TCP, --etcd, one fresh temp directory), one
 * table of --move-rows rows (dim 32, SGD, --partitions partitions) filled
 * with embkv_assign. Each repetition measures, in the same run:
 *
 *   move          embkv_partition_move of one partition to the other
 *                 member and back (no other load): the partition's rows
 *                 times two / the two calls' wall time. A move is copy,
 *                 deltas, freeze, last delta, flip (client/move.c), every
 *                 byte relayed through this process.
 *   in-process    the same partition's work without the network or the
 *                 protocol, here in one process: an in-process table
 *                 (server/store.h) with the same rows, its partition
 *                 snapshotted (embkv_ckpt_snap), written into a memfd
 *                 (embkv_ckpt_snap_write), verified (embkv_ckpt_verify_part)
 *                 and applied into a second table's empty partition
 *                 (embkv_ckpt_apply_part): what a move's source and target
 *                 do with a full copy (server/move.c), rows / wall time.
 *   memcpy        the partition's live records (rows x stride bytes)
 *                 copied with memcpy: the bound of any copy.
 *   push p99      --push-threads threads (a client each) push batches of
 *                 --push-batch random existing keys continuously; the p99
 *                 of push latency over --push-s seconds without moves
 *                 (before and after) against --push-s seconds in which
 *                 partitions move back and forth back to back (or
 *                 --move-gap-ms apart). Adjacent
 *                 windows of one run of pushers, so that a drifting machine
 *                 load hurts both alike. A push that meets a frozen
 *                 partition is answered EMBKV_ESTALE and retried by the
 *                 client on the new map: that is the pause measured.
 *                 freeze_to_flip_ms: per move, from the end of the last
 *                 copy before the freeze to the flip (the progress
 *                 callbacks), and frozen_share, their sum over the window.
 *
 * Ratios: move_vs_inproc, move_vs_memcpy, push_p99_move_vs_idle (the bar:
 * <= 3.0); with --reps R the JSON gives the median of each figure and
 * the min and max of each ratio.
 *
 * etcd: $EMBKV_ETCD_BIN or --etcd PATH, else /usr/bin/etcd (Debian's
 * etcd-server), as a one-member cluster on two free loopback ports, killed
 * when this process dies (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <embkv/embkv.h>
#include "net/etcd.h"
#include "server/ckpt_file.h"
#include "server/store.h"
#include "tools/bench_common.h"
#include "tools/bench_move.h"

#define MV_DEFAULT_ROWS 1000000ull
#define MV_DIM 32u
#define MV_PARTITIONS 16u
#define MV_LOAD_BATCH 4096u
#define MV_LR 0.01f
#define MV_HEADROOM 1.25
#define MV_MAX_REPS 20u
#define MV_WARMUP_S 0.3
#define MV_UID 0x6d6f7665ull       /* the in-process copy's table uid */
#define START_TIMEOUT_S 20
#define ETCD_START_MS 15000u
#define NMEMBERS 2u

struct mv_opts {
	uint64_t rows;
	uint32_t reps, push_threads, threads, batch, parts;
	double push_s, gap_s;
	const char *embkvd, *etcd, *base_dir;
	int json;
};

/* ---- processes ------------------------------------------------------------- */

static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint16_t port = 0;

	if (fd < 0)
		return 0;
	if (!bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &len))
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Forks argv with stdout to *outfd (a pipe, when outfd) and stderr to
 * log; dies with this process. */
static pid_t spawn(const char *const argv[], const char *log, int *outfd)
{
	pid_t parent = getpid(), pid;
	int pfd[2] = { -1, -1 };

	if (outfd && pipe(pfd))
		return -1;
	pid = fork();
	if (pid != 0) {
		if (outfd) {
			close(pfd[1]);
			*outfd = pfd[0];
			if (pid < 0)
				close(pfd[0]);
		}
		return pid;
	}
	{
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			if (!outfd)
				dup2(fd, STDOUT_FILENO);
			close(fd);
		}
		if (outfd) {
			dup2(pfd[1], STDOUT_FILENO);
			close(pfd[0]);
			close(pfd[1]);
		}
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "embkv-bench: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
}

/* Starts etcd in dir/etcd; its client URL into url. */
static int start_etcd(const struct mv_opts *o, const char *dir, pid_t *pid,
		      char *url, size_t urllen)
{
	char data[4200], log[4200], peer[64], cluster[80];
	uint16_t cp = free_port(), pp = free_port();
	double deadline = bench_now_s() + ETCD_START_MS / 1000.0;
	struct embkv_etcd_attr a;
	struct embkv_etcd *c;
	int rc, st;

	if (!cp || !pp || cp == pp)
		return -EADDRNOTAVAIL;
	snprintf(url, urllen, "http://127.0.0.1:%u", cp);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%u", pp);
	snprintf(cluster, sizeof(cluster), "default=%s", peer);
	snprintf(data, sizeof(data), "%s/etcd", dir);
	snprintf(log, sizeof(log), "%s/etcd.log", dir);
	{
		const char *argv[] = {
			o->etcd, "--name", "default", "--data-dir", data,
			"--listen-client-urls", url,
			"--advertise-client-urls", url,
			"--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer,
			"--initial-cluster", cluster, "--log-level", "warn",
			NULL,
		};

		*pid = spawn(argv, log, NULL);
	}
	if (*pid < 0)
		return -errno;
	embkv_etcd_attr_init(&a);
	a.endpoints = url;
	a.timeout_ms = 500;
	rc = embkv_etcd_create(&a, &c);
	if (rc)
		return rc;
	for (;;) {
		struct embkv_etcd_kvs r;

		rc = embkv_etcd_get(c, "/embkv-bench-probe", false, &r);
		if (!rc) {
			embkv_etcd_kvs_free(&r);
			break;
		}
		if (waitpid(*pid, &st, WNOHANG) == *pid) {
			*pid = -1;
			rc = -ECHILD;
			break;
		}
		if (bench_now_s() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		usleep(50 * 1000);
	}
	embkv_etcd_destroy(c);
	return rc;
}

/* Starts member id; its address into addr. */
static int start_member(const struct mv_opts *o, const char *dir,
			const char *url, uint32_t id, pid_t *pid, char *addr,
			size_t addrlen)
{
	char ids[16], threads[16], log[4200], line[256];
	const char *tag = "embkvd: listening on ";
	double deadline = bench_now_s() + START_TIMEOUT_S;
	const char *argv[20];
	int n = 0, fd;
	FILE *f;

	snprintf(ids, sizeof(ids), "%u", id);
	snprintf(threads, sizeof(threads), "%u", o->threads);
	snprintf(log, sizeof(log), "%s/embkvd-%u.log", dir, id);
	argv[n++] = o->embkvd;
	argv[n++] = "--listen";
	argv[n++] = "tcp://127.0.0.1:0";
	argv[n++] = "--etcd";
	argv[n++] = url;
	argv[n++] = "--cluster";
	argv[n++] = "bench";
	argv[n++] = "--member-id";
	argv[n++] = ids;
	argv[n++] = "--member-ttl";
	argv[n++] = "10";
	argv[n++] = "--data-dir";
	argv[n++] = dir;
	argv[n++] = "--no-restore";
	if (o->threads) {
		argv[n++] = "--threads";
		argv[n++] = threads;
	}
	argv[n] = NULL;
	*pid = spawn(argv, log, &fd);
	if (*pid < 0)
		return -errno;
	f = fdopen(fd, "r");
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
	else
		close(fd);
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

/* ---- the in-process copy ---------------------------------------------------------- */

/* Copies partition part of src into dst's (emptied first) the way a move
 * does, in one process: rows copied, *s the wall time. */
static int inproc_copy(struct embkv_table *src, struct embkv_table *dst,
		       uint32_t part, uint64_t id, uint64_t *rows, double *s)
{
	struct embkv_ckpt_file_info info;
	struct embkv_ckpt_snap *snap = NULL;
	char why[256] = "";
	double t0;
	int fd, rc;

	embkv_part_clear(dst, part);
	fd = memfd_create("embkv-bench-move", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	t0 = bench_now_s();
	rc = embkv_ckpt_snap(src, part, id, 0, &snap);
	if (!rc)
		rc = embkv_ckpt_snap_write(snap, MV_UID, fd, &info);
	if (!rc)
		rc = embkv_ckpt_verify_part(dst, part, MV_UID, fd, &info, why,
					    sizeof(why));
	if (!rc)
		rc = embkv_ckpt_apply_part(dst, part, MV_UID, fd, &info, why,
					   sizeof(why));
	*s = bench_now_s() - t0;
	embkv_ckpt_snap_free(snap);
	close(fd);
	if (rc)
		fprintf(stderr, "embkv-bench: in-process copy: %s %s\n",
			embkv_strerror(rc), why);
	*rows = dst->parts[part].rows;
	return rc;
}

/* memcpy of the partition's live records' bytes: rows/s. */
static double memcpy_rate(const struct embkv_table *t, uint32_t part)
{
	const struct embkv_part *p = &t->parts[part];
	size_t bytes = (size_t)p->rows * t->stride;
	char *buf = malloc(bytes ? bytes : 1);
	double t0, best = 0;

	if (!buf)
		return 0;
	memset(buf, 1, bytes);          /* fault it in: not timed */
	for (int i = 0; i < 3; i++) {
		double s;

		t0 = bench_now_s();
		memcpy(buf, p->arena, bytes);
		__asm__ volatile("" : : "r"(buf) : "memory");
		s = bench_now_s() - t0;
		if (s > 0 && (double)p->rows / s > best)
			best = (double)p->rows / s;
	}
	free(buf);
	return best;
}

/* ---- the pause --------------------------------------------------------------------- */

/* Per move, from the progress callbacks (this thread): the last copy
 * before the freeze ended at t_last ("copy"/"delta"); "done" comes after
 * the flip. done - t_last: the freeze (MOVE_FREEZE, the last delta
 * copied, relayed and applied) and the flip in etcd, the time a push to
 * that partition is refused. The target's and the clients' catching up
 * with the new map come on top. */
struct pause_log {
	double t_last;
	double sum_ms, max_ms;
	uint32_t n;
};

static void on_progress(void *ctx, const struct embkv_move_progress *p)
{
	struct pause_log *l = ctx;
	double now = bench_now_s();

	if (!strcmp(p->phase, "copy") || !strcmp(p->phase, "delta")) {
		l->t_last = now;
	} else if (!strcmp(p->phase, "done") && l->t_last > 0) {
		double ms = (now - l->t_last) * 1e3;

		l->sum_ms += ms;
		l->max_ms = ms > l->max_ms ? ms : l->max_ms;
		l->n++;
		l->t_last = 0;
	}
}

/* ---- one repetition --------------------------------------------------------------- */

struct mv_rep {
	double move_rows_s, inproc_rows_s, memcpy_rows_s;
	double move_s, inproc_s;
	double part_rows, moves_in_window;
	double p50_idle_ms, p99_idle_ms, p50_move_ms, p99_move_ms;
	double max_idle_ms, max_move_ms;
	double pushes_idle, pushes_move;
	double pause_ms, pause_max_ms, frozen_share;
};

struct bench {
	struct mv_opts o;
	struct embkv_client *c;
	struct embkv_table_handle *t;
	struct embkv_table *src, *dst;
	uint16_t *owner;           /* per partition: its member's index */
};

/* Moves part to the member that does not hold it (b->owner: this
 * process makes every move, so it knows; the handle's map is refreshed
 * only by a stale answer): *s the call's time. A move that did not
 * happen (res->files != 1) is an error. */
static int move_other(struct bench *b, uint32_t part, struct embkv_move_attr *ma,
		      struct embkv_ckpt_result *res, double *s)
{
	uint32_t to = 1u - b->owner[part];
	double t0;
	int rc;

	t0 = bench_now_s();
	rc = embkv_partition_move(b->c, "bench_move", part, to, ma, res);
	*s = bench_now_s() - t0;
	if (!rc && res->files != 1) {
		snprintf(res->error, sizeof(res->error), "no move made");
		rc = -EIO;
	}
	if (rc) {
		fprintf(stderr, "embkv-bench: move of partition %u to %u: %s "
			"(%s)\n", part, to, embkv_strerror(rc), res->error);
		return rc;
	}
	b->owner[part] = to;
	return 0;
}

static void sleep_until(double t)
{
	double now;

	while ((now = bench_now_s()) < t)
		usleep(now + 0.01 < t ? 10000 : (useconds_t)((t - now) * 1e6) + 1);
}

static int run_rep(struct bench *b, uint32_t rep, struct mv_rep *r)
{
	const struct mv_opts *o = &b->o;
	uint32_t part = (rep * 5u + 3u) % o->parts;
	struct embkv_move_attr ma;
	struct embkv_ckpt_result res;
	struct bench_push_attr pa = {
		.threads = o->push_threads, .batch = o->batch, .dim = MV_DIM,
		.rows = o->rows, .log = 1,
	};
	struct bench_pushers ps;
	struct pause_log pl = { 0 };
	uint64_t rows = 0, moved = 0, seed = rep * 7919u + 1;
	double s1, s2, t0, w0, m0, m1, a0, a1;
	size_t n;
	int rc, prc;

	memset(r, 0, sizeof(*r));
	embkv_move_attr_init(&ma);
	/* 1. one partition there and back, nothing else running */
	rc = move_other(b, part, &ma, &res, &s1);
	moved = res.rows;
	if (!rc)
		rc = move_other(b, part, &ma, &res, &s2);
	if (rc)
		return rc;
	moved += res.rows;
	r->move_s = (s1 + s2) / 2;
	r->move_rows_s = (double)moved / (s1 + s2);
	r->part_rows = (double)moved / 2;
	/* 2. the same work in one process, and memcpy */
	/* best of 3: the first one also faults the target's pages in */
	for (uint32_t k = 0; k < 3; k++) {
		double s = 0;

		rc = inproc_copy(b->src, b->dst, part, rep * 3u + k + 1, &rows,
				 &s);
		if (rc)
			return rc;
		if (!k || s < r->inproc_s)
			r->inproc_s = s;
	}
	r->inproc_rows_s = (double)rows / r->inproc_s;
	r->memcpy_rows_s = memcpy_rate(b->src, part);

	/* 3. pushes: idle, moving back to back, idle; a client each */
	pa.seed = seed;
	rc = bench_pushers_init(&ps, &pa);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < o->push_threads && !rc; i++) {
		struct embkv_client_attr ca;
		const char *addrs[NMEMBERS];
		struct bench_pusher *p = &ps.p[i];

		for (uint32_t k = 0; k < NMEMBERS; k++)
			addrs[k] = embkv_client_server_addr(b->c, k);
		embkv_client_attr_init(&ca);
		ca.servers = addrs;
		ca.nservers = NMEMBERS;
		ca.request_timeout_ms = 60000;
		rc = embkv_client_create(&ca, &p->c);
		if (!rc)
			rc = embkv_table_open(p->c, "bench_move", &p->t);
		if (rc)
			fprintf(stderr, "embkv-bench: pusher client: %s\n",
				embkv_strerror(rc));
	}
	if (!rc)
		rc = bench_pushers_start(&ps);
	t0 = bench_now_s();
	w0 = t0 + MV_WARMUP_S;
	m0 = w0 + o->push_s;
	if (!rc)
		sleep_until(m0);
	m0 = bench_now_s();
	ma.progress = on_progress;
	ma.progress_ctx = &pl;
	for (uint64_t k = 0; !rc && (k == 0 || bench_now_s() < m0 + o->push_s);
	     k++) {
		uint32_t q = (uint32_t)(bench_rng_next(&seed) % o->parts);

		rc = move_other(b, q, &ma, &res, &s1);
		r->moves_in_window++;
		if (!rc && o->gap_s > 0 && bench_now_s() + o->gap_s <
					       m0 + o->push_s)
			sleep_until(bench_now_s() + o->gap_s);
	}
	m1 = bench_now_s();
	a0 = m1;
	a1 = a0 + o->push_s;
	if (pl.n) {
		r->pause_ms = pl.sum_ms / pl.n;
		r->pause_max_ms = pl.max_ms;
		r->frozen_share = pl.sum_ms / 1e3 / (m1 - m0);
	}
	if (!rc)
		sleep_until(a1);
	prc = bench_pushers_join(&ps);
	if (!rc && prc) {
		rc = prc;
		fprintf(stderr, "embkv-bench: push: %s\n", embkv_strerror(rc));
	}
	if (!rc) {
		/* idle: both windows around the moves */
		r->p50_idle_ms = 1e3 * bench_pushers_quantile(&ps, 0.5, w0, m0,
							      a0, a1, &n);
		r->p99_idle_ms = 1e3 * bench_pushers_quantile(&ps, 0.99, w0, m0,
							      a0, a1, &n);
		r->max_idle_ms = 1e3 * bench_pushers_quantile(&ps, 1.0, w0, m0,
							      a0, a1, &n);
		r->pushes_idle = (double)n;
		r->p50_move_ms = 1e3 * bench_pushers_quantile(&ps, 0.5, m0, m1,
							      0, 0, &n);
		r->p99_move_ms = 1e3 * bench_pushers_quantile(&ps, 0.99, m0, m1,
							      0, 0, &n);
		r->max_move_ms = 1e3 * bench_pushers_quantile(&ps, 1.0, m0, m1,
							      0, 0, &n);
		r->pushes_move = (double)n;
		if (!r->pushes_idle || !r->pushes_move) {
			fprintf(stderr, "embkv-bench: no push in a window\n");
			rc = -EIO;
		}
	}
	if (!o->json)
		fprintf(stderr, "pushes: idle from %.3f to %.3f and %.3f to "
			"%.3f, moving from %.3f to %.3f\n", w0, m0, a0, a1,
			m0, m1);
	for (uint32_t i = 0; i < o->push_threads; i++) {
		embkv_table_close(ps.p[i].t);
		embkv_client_destroy(ps.p[i].c);
	}
	bench_pushers_free(&ps);
	return rc;
}

/* ---- options, report ------------------------------------------------------------------ */

static void mv_usage(FILE *f)
{
	fprintf(f,
		"usage: embkv-bench --mode move [options]\n"
		"Partition moves (etcd and 2 embkvd members on loopback): a move's\n"
		"rate against the same copy in one process and memcpy, and push\n"
		"latency p99 while partitions move against without.\n"
		"  --move-rows N      rows of the table (default %llu), dim %u, SGD\n"
		"  --partitions P     partitions, a power of two (default %u)\n"
		"  --reps R           repetitions (default 1): medians, and the\n"
		"                     min and max of each ratio\n"
		"  --push-s S         seconds of each push window (default 3)\n"
		"  --push-threads N   pushing threads, a client each (default 2)\n"
		"  --push-batch B     keys per push (default 256)\n"
		"  --move-gap-ms MS   pause between the window's moves (default\n"
		"                     0: back to back)\n"
		"  --threads N        embkvd owner threads (default: its own)\n"
		"  --data-dir DIR     where the temp directory goes (default\n"
		"                     $TMPDIR or /tmp); it is removed at the end\n"
		"  --embkvd PATH      the embkvd binary (default: beside this one)\n"
		"  --etcd PATH        etcd (default $EMBKV_ETCD_BIN or /usr/bin/etcd)\n"
		"  --json             one JSON object on stdout\n",
		(unsigned long long)MV_DEFAULT_ROWS, MV_DIM, MV_PARTITIONS);
}

static int mv_parse(int argc, char **argv, struct mv_opts *o, char *buf,
		    size_t buflen)
{
	double gap_ms = 0;
	const struct bench_opt opt[] = {
		BENCH_IGNORE("mode"),
		BENCH_U64("move-rows", &o->rows, 1000, 1ull << 32, 0),
		BENCH_U32("partitions", &o->parts, 2, 4096, BENCH_OPT_POW2),
		BENCH_U32("reps", &o->reps, 1, MV_MAX_REPS, 0),
		BENCH_DOUBLE("push-s", &o->push_s, 0.05, 600),
		BENCH_U32("push-threads", &o->push_threads, 1, 64, 0),
		BENCH_U32("push-batch", &o->batch, 1, 65536, 0),
		BENCH_DOUBLE("move-gap-ms", &gap_ms, 0, 60000),
		BENCH_U32("threads", &o->threads, 1, 1024, 0),
		BENCH_STR("data-dir", &o->base_dir),
		BENCH_STR("embkvd", &o->embkvd),
		BENCH_STR("etcd", &o->etcd),
		BENCH_FLAG("json", &o->json),
	};
	const char *env = getenv("EMBKV_ETCD_BIN");

	memset(o, 0, sizeof(*o));
	o->rows = MV_DEFAULT_ROWS;
	o->parts = MV_PARTITIONS;
	o->reps = 1;
	o->push_s = 3;
	o->push_threads = 2;
	o->batch = 256;
	o->etcd = env && *env ? env : "/usr/bin/etcd";
	o->base_dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (bench_default_embkvd(buf, buflen))
		o->embkvd = buf;
	if (bench_opts_parse(argc, argv, opt, sizeof(opt) / sizeof(opt[0]),
			     mv_usage))
		return -EINVAL;
	o->gap_s = gap_ms / 1e3;
	if (access(o->etcd, X_OK)) {
		fprintf(stderr, "embkv-bench: etcd not found at %s (--etcd PATH; "
			"Debian: etcd-server)\n", o->etcd);
		return -EINVAL;
	}
	return bench_opts_finish(argc, argv, o->embkvd);
}

/* min, median, max of the field at offset off of every rep */
static void stats_of(const struct mv_rep *r, uint32_t n, size_t off,
		     double out[3])
{
	bench_rep_stats(r, sizeof(*r), n, off, out);
}

#define FIG(n, f) { n, offsetof(struct mv_rep, f) }
static const struct bench_figure figures[] = {
	FIG("part_rows", part_rows),
	FIG("move_rows_per_s", move_rows_s),
	FIG("inproc_copy_rows_per_s", inproc_rows_s),
	FIG("memcpy_rows_per_s", memcpy_rows_s),
	FIG("move_s", move_s),
	FIG("inproc_copy_s", inproc_s),
	FIG("moves_in_window", moves_in_window),
	FIG("pushes_idle", pushes_idle),
	FIG("pushes_move", pushes_move),
	FIG("push_p50_idle_ms", p50_idle_ms),
	FIG("push_p99_idle_ms", p99_idle_ms),
	FIG("push_max_idle_ms", max_idle_ms),
	FIG("push_p50_move_ms", p50_move_ms),
	FIG("push_p99_move_ms", p99_move_ms),
	FIG("push_max_move_ms", max_move_ms),
	FIG("freeze_to_flip_ms", pause_ms),
	FIG("freeze_to_flip_max_ms", pause_max_ms),
	FIG("frozen_share", frozen_share),
};

#define NRATIOS 3
static void ratios(const struct mv_rep *r, uint32_t n, double out[][3])
{
	struct mv_rep q[MV_MAX_REPS];

	for (uint32_t i = 0; i < n; i++) {
		q[i].move_rows_s = r[i].move_rows_s / r[i].inproc_rows_s;
		q[i].inproc_rows_s = r[i].move_rows_s / r[i].memcpy_rows_s;
		q[i].p99_move_ms = r[i].p99_move_ms / r[i].p99_idle_ms;
	}
	stats_of(q, n, offsetof(struct mv_rep, move_rows_s), out[0]);
	stats_of(q, n, offsetof(struct mv_rep, inproc_rows_s), out[1]);
	stats_of(q, n, offsetof(struct mv_rep, p99_move_ms), out[2]);
}

static void report(const struct mv_opts *o, const struct mv_rep *r,
		   uint32_t n, double load_s)
{
	static const char *const rname[NRATIOS] = { "move_vs_inproc",
						    "move_vs_memcpy",
						    "push_p99_move_vs_idle" };
	double rs[NRATIOS][3];

	ratios(r, n, rs);
	if (!o->json) {
		fprintf(stderr, "over %u rep%s (min / median / max):\n", n,
			n == 1 ? "" : "s");
		bench_figures_text(stderr, r, sizeof(*r), n, figures,
				   sizeof(figures) / sizeof(figures[0]), 24,
				   14);
		for (int i = 0; i < NRATIOS; i++)
			fprintf(stderr, "  %-24s %14.4f %14.4f %14.4f\n",
				rname[i], rs[i][0], rs[i][1], rs[i][2]);
		fprintf(stderr, "  push_p99_move_vs_idle bar: <= 3.0 (median "
			"%s)\n", rs[2][1] <= 3.0 ? "met" : "MISSED");
	}
	printf("{\"move_rows\": %llu, \"dim\": %u, \"partitions\": %u, "
	       "\"reps\": %u, \"push_threads\": %u, \"push_batch\": %u, "
	       "\"move_gap_ms\": %.0f, \"load_s\": %.2f",
	       (unsigned long long)o->rows, MV_DIM, o->parts, n,
	       o->push_threads, o->batch, o->gap_s * 1e3, load_s);
	bench_figures_json(r, sizeof(*r), n, figures,
			   sizeof(figures) / sizeof(figures[0]));
	for (int i = 0; i < NRATIOS; i++)
		printf(", \"%s\": %.4f, \"%s_min\": %.4f, \"%s_max\": %.4f",
		       rname[i], rs[i][1], rname[i], rs[i][0], rname[i],
		       rs[i][2]);
	printf("}\n");
	fflush(stdout);
}

/* ---- main ------------------------------------------------------------------------------ */

static void row_of(uint64_t key, float *row)
{
	for (uint32_t d = 0; d < MV_DIM; d++)
		row[d] = (float)((key >> (d % 48)) & 255) * 1e-3f;
}

/* The same rows through the client and into the in-process table. */
static int load_rows(struct bench *b)
{
	uint64_t *keys = malloc(MV_LOAD_BATCH * sizeof(*keys));
	float *rows = malloc((size_t)MV_LOAD_BATCH * MV_DIM * sizeof(float));
	int err = keys && rows ? 0 : -ENOMEM;

	for (uint64_t i = 0; !err && i < b->o.rows; i += MV_LOAD_BATCH) {
		uint32_t m = (uint32_t)(b->o.rows - i < MV_LOAD_BATCH ?
					b->o.rows - i : MV_LOAD_BATCH);

		for (uint32_t j = 0; j < m; j++) {
			keys[j] = bench_key_of(i + j);
			row_of(keys[j], &rows[(size_t)j * MV_DIM]);
		}
		err = embkv_assign(b->t, m, keys, rows);
		if (!err && embkv_table_assign(b->src, m, keys, rows) != m)
			err = EMBKV_EFULL;
		if (!b->o.json && (i / MV_LOAD_BATCH) % 64 == 0)
			fprintf(stderr, "\rload: %5.1f%%",
				100.0 * (double)i / (double)b->o.rows);
	}
	free(keys);
	free(rows);
	return err;
}

int bench_move_main(int argc, char **argv)
{
	char exe[4096], dir[4096], url[64], addr[NMEMBERS][128];
	const char *addrs[NMEMBERS];
	struct embkv_client_attr ca;
	struct embkv_table_attr ta;
	struct mv_rep reps[MV_MAX_REPS];
	struct bench b = { 0 };
	pid_t etcd = -1, mem[NMEMBERS] = { -1, -1 };
	double t0, load_s;
	int err, status = 1;

	if (mv_parse(argc, argv, &b.o, exe, sizeof(exe)))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "%s/embkv-bench-move-XXXXXX", b.o.base_dir);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "embkv-bench: cannot create %s: %s\n", dir,
			strerror(errno));
		return 1;
	}
	err = start_etcd(&b.o, dir, &etcd, url, sizeof(url));
	if (err) {
		fprintf(stderr, "embkv-bench: etcd did not start: %s (log in "
			"%s/etcd.log, removed)\n", embkv_strerror(err), dir);
		goto out;
	}
	for (uint32_t i = 0; i < NMEMBERS; i++) {
		err = start_member(&b.o, dir, url, i, &mem[i], addr[i],
				   sizeof(addr[i]));
		if (err) {
			fprintf(stderr, "embkv-bench: embkvd %u did not start: "
				"%s\n", i, strerror(-err));
			goto out;
		}
		addrs[i] = addr[i];
	}
	embkv_client_attr_init(&ca);
	ca.servers = addrs;
	ca.nservers = NMEMBERS;
	ca.request_timeout_ms = 600000;
	err = embkv_client_create(&ca, &b.c);
	if (err) {
		fprintf(stderr, "embkv-bench: client: %s\n", embkv_strerror(err));
		goto out;
	}
	embkv_table_attr_init(&ta);
	strcpy(ta.name, "bench_move");
	ta.dim = MV_DIM;
	ta.partitions = b.o.parts;
	ta.capacity = (uint64_t)((double)b.o.rows * MV_HEADROOM);
	ta.opt.type = EMBKV_OPT_SGD;
	ta.opt.lr = MV_LR;
	if ((err = embkv_table_create_remote(b.c, &ta)) ||
	    (err = embkv_table_open(b.c, ta.name, &b.t)) ||
	    (err = embkv_table_create(&ta, &b.src)) ||
	    (err = embkv_table_create(&ta, &b.dst))) {
		fprintf(stderr, "embkv-bench: table: %s\n", embkv_strerror(err));
		goto out;
	}
	b.owner = calloc(b.o.parts, sizeof(*b.owner));
	if (!b.owner ||
	    (err = embkv_table_map(b.t, NULL, b.owner, b.o.parts))) {
		fprintf(stderr, "embkv-bench: map: %s\n", embkv_strerror(err));
		goto out;
	}
	if (!b.o.json)
		fprintf(stderr, "embkv-bench move: %llu rows, dim %u, %u "
			"partitions, 2 members, %u push threads of %u keys, "
			"in %s\n", (unsigned long long)b.o.rows, MV_DIM,
			b.o.parts, b.o.push_threads, b.o.batch, dir);
	t0 = bench_now_s();
	err = load_rows(&b);
	load_s = bench_now_s() - t0;
	if (err) {
		fprintf(stderr, "embkv-bench: load failed: %s\n",
			embkv_strerror(err));
		goto out;
	}
	if (!b.o.json)
		fprintf(stderr, "\rload: done in %.1f s\n", load_s);
	for (uint32_t i = 0; i < b.o.reps; i++) {
		struct mv_rep *r = &reps[i];

		if (run_rep(&b, i, r))
			goto out;
		if (!b.o.json)
			fprintf(stderr, "rep %u: move %.0f rows in %.3f s = "
				"%.2f M rows/s, in-process %.2f M rows/s, "
				"memcpy %.1f M rows/s; push p99 %.2f ms idle, "
				"%.2f ms moving (%g moves; p50 %.2f / %.2f, "
				"max %.1f / %.1f); freeze to flip %.2f ms "
				"(max %.1f), %.1f%% of the window\n", i + 1,
				r->part_rows,
				r->move_s, r->move_rows_s / 1e6,
				r->inproc_rows_s / 1e6, r->memcpy_rows_s / 1e6,
				r->p99_idle_ms, r->p99_move_ms,
				r->moves_in_window, r->p50_idle_ms,
				r->p50_move_ms, r->max_idle_ms, r->max_move_ms,
				r->pause_ms, r->pause_max_ms,
				100 * r->frozen_share);
	}
	report(&b.o, reps, b.o.reps, load_s);
	status = 0;
out:
	embkv_table_close(b.t);
	embkv_client_destroy(b.c);
	free(b.owner);
	if (b.src)
		embkv_table_destroy(b.src);
	if (b.dst)
		embkv_table_destroy(b.dst);
	for (uint32_t i = 0; i < NMEMBERS; i++)
		if (mem[i] > 0) {
			kill(mem[i], SIGTERM);
			waitpid(mem[i], NULL, 0);
		}
	if (etcd > 0) {
		kill(etcd, SIGTERM);
		waitpid(etcd, NULL, 0);
	}
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return status;
}
