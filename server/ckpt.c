/*
 * The checkpoint engine of embkvd (server/ckpt.h, server/CHECKPOINT.md).
 *
 * What: one thread that serves the CKPT_* requests (write one partition's
 * file, commit a manifest, load a partition from a checkpoint chain,
 * list, get, verify, delete) and, at start, restores this server's
 * partitions from the newest complete checkpoint.
 *
 * Why this shape: a checkpoint must not stop training. The only work done
 * on a partition's owner thread is the copy of its rows into memory
 * (embkv_ckpt_snap, a job queued behind the batches already submitted);
 * checksums, writes and fsyncs happen here, off the owner and I/O threads.
 * A restore applies verified files in one owner job, so no batch ever sees
 * a half-restored partition from the owner's side.
 *
 * Invariants:
 * - A file is written under a temp name, fsync'ed and renamed; the
 *   manifest is written last (temp, fsync, rename, fsync of the
 *   directory) after the directory itself was fsync'ed, so a checkpoint
 *   with a manifest has every file it lists on disk. A checkpoint without
 *   a manifest is never loaded.
 * - Nothing is loaded before every file of the partition's chain (full
 *   file, then its increments in order) passed verification against the
 *   manifests: size, checksum, table, partition, checkpoint ids.
 * - Every submitted request gets exactly one answer, also at shutdown.
 * - A partition is touched only by its owner (snap and apply run as owner
 *   jobs); this thread waits for those jobs and never touches rows itself.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "net/etcd.h"
#include "server/ckpt.h"
#include "server/ckpt_file.h"
#include "server/daemon.h"

#define CK_MSG_MAX 512u
#define CK_PATH_MAX 4096u
#define CK_MANIFEST "MANIFEST.json"
#define CK_POLL_MS 1000u
#define CK_MANIFEST_MAX (64u << 20)   /* bytes of a manifest file */

struct ck_req {
	struct embkvd_done fin;
	struct ck_req *next;
	struct embkvd_conn *conn;
	uint64_t req_id;
	uint8_t op;
	json_t *in;
	json_t *out;            /* the reply (NULL: {}) */
	int status;
	char msg[CK_MSG_MAX];
};

struct embkvd_ckpt {
	struct embkvd *s;
	char *root;             /* <data-dir>/ckpt */
	bool restore;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ck_req *head, **tail;
	bool stop;
	struct embkvd_ckpt_last last;     /* under lock */
	struct embkv_etcd *etcd;          /* cluster mode; this thread only */
	char newest_key[256];
	/* Cluster-mode restore: tables tried against which checkpoint. */
	uint64_t *tried_uid;
	uint64_t *tried_ckpt;
	uint32_t ntried;
	uint64_t next_poll_ms;
};

/* ---- small helpers ------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fail(struct ck_req *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ck_req *r, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->status = status;
	return status;
}

static void uid_hex(uint64_t uid, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, uid);
}

static bool parse_uid(const char *s, uint64_t *out)
{
	uint8_t b[8];

	if (!s || strlen(s) != 16 || embkv_hex_decode(s, b, 8) != 8)
		return false;
	*out = 0;
	for (int i = 0; i < 8; i++)
		*out = *out << 8 | b[i];
	return true;
}

/* A non-negative integer field of o; false when absent or not one. */
static bool get_u64(const json_t *o, const char *k, uint64_t *out)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static int ck_path(const struct embkvd_ckpt *ck, char *buf, uint64_t id,
		   const char *name)
{
	int n = name ? snprintf(buf, CK_PATH_MAX, "%s/%" PRIu64 "/%s",
				ck->root, id, name)
		     : snprintf(buf, CK_PATH_MAX, "%s/%" PRIu64, ck->root, id);

	return n > 0 && (size_t)n < CK_PATH_MAX ? 0 : -ENAMETOOLONG;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

/* A file name of a checkpoint directory: "<uid hex>-<part>.full|.delta". */
static bool file_name_ok(const char *f)
{
	size_t n = strlen(f);

	if (n < 20 || n > 40 || f[16] != '-' || strchr(f, '/'))
		return false;
	return (n > 5 && !strcmp(f + n - 5, ".full")) ||
	       (n > 6 && !strcmp(f + n - 6, ".delta"));
}

/* Reads and parses the manifest of checkpoint id; NULL with r failed. */
static json_t *manifest_read(struct embkvd_ckpt *ck, uint64_t id,
			     struct ck_req *r)
{
	char path[CK_PATH_MAX];
	json_error_t je;
	json_t *m;
	uint64_t mid;
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd;

	if (ck_path(ck, path, id, CK_MANIFEST)) {
		fail(r, -ENAMETOOLONG, "checkpoint %" PRIu64 ": path too long",
		     id);
		return NULL;
	}
	/* read at once and parsed from memory: json_load_file reads a
	 * character at a time, and a restore reads the manifest once per
	 * partition and pass (a tenth of a restore's verify pass) */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			fail(r, -ENOENT, "checkpoint %" PRIu64 " is not "
			     "complete here (no %s)", id, path);
		else
			fail(r, -errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) || st.st_size > CK_MANIFEST_MAX ||
	    !(buf = malloc((size_t)st.st_size + 1))) {
		fail(r, EMBKV_EPROTO, "%s: cannot read it (%lld bytes)", path,
		     (long long)st.st_size);
		close(fd);
		return NULL;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	m = json_loadb(buf, got, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!m) {
		fail(r, EMBKV_EPROTO, "%s: not a manifest: %s (line %d)", path,
		     je.text, je.line);
		return NULL;
	}
	if (!json_is_object(m) || !get_u64(m, "id", &mid) || mid != id ||
	    !json_is_array(json_object_get(m, "tables"))) {
		fail(r, EMBKV_EPROTO, "%s: not the manifest of checkpoint %"
		     PRIu64, path, id);
		json_decref(m);
		return NULL;
	}
	return m;
}

/* The manifest entry of (table name, part): its table object and part
 * object, or false. */
static bool manifest_find(const json_t *m, const char *name, uint32_t part,
			  json_t **table, json_t **entry)
{
	size_t i, j;
	json_t *t, *p;

	json_array_foreach(json_object_get(m, "tables"), i, t) {
		const char *n = json_string_value(json_object_get(t, "name"));

		if (!n || strcmp(n, name))
			continue;
		json_array_foreach(json_object_get(t, "parts"), j, p) {
			uint64_t pp;

			if (get_u64(p, "part", &pp) && pp == part) {
				*table = t;
				*entry = p;
				return true;
			}
		}
		*table = t;
		*entry = NULL;
		return false;
	}
	*table = NULL;
	*entry = NULL;
	return false;
}

/* Ids of the checkpoint directories, ascending; complete[i] says whether
 * one has its manifest. */
static int list_ids(struct embkvd_ckpt *ck, uint64_t **ids, bool **complete,
		    uint32_t *n)
{
	DIR *d = opendir(ck->root);
	struct dirent *de;
	uint64_t *v = NULL;
	bool *c = NULL;
	uint32_t k = 0, cap = 0;

	*ids = NULL;
	*complete = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		char *end, path[CK_PATH_MAX];
		unsigned long long id;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		errno = 0;
		id = strtoull(de->d_name, &end, 10);
		if (*end || errno)
			continue;
		if (k == cap) {
			uint32_t nc = cap ? 2 * cap : 16;
			uint64_t *nv = realloc(v, nc * sizeof(*v));
			bool *ncb;

			if (!nv)
				goto nomem;
			v = nv;
			ncb = realloc(c, nc * sizeof(*c));
			if (!ncb)
				goto nomem;
			c = ncb;
			cap = nc;
		}
		v[k] = id;
		c[k] = !ck_path(ck, path, id, CK_MANIFEST) &&
		       !access(path, F_OK);
		k++;
	}
	closedir(d);
	/* insertion sort: a handful of checkpoints */
	for (uint32_t i = 1; i < k; i++)
		for (uint32_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
			uint64_t t = v[j];
			bool tc = c[j];

			v[j] = v[j - 1];
			c[j] = c[j - 1];
			v[j - 1] = t;
			c[j - 1] = tc;
		}
	*ids = v;
	*complete = c;
	*n = k;
	return 0;
nomem:
	closedir(d);
	free(v);
	free(c);
	return -ENOMEM;
}

/* The catalog entry of uid, with a reference; NULL when none. */
static struct embkv_catalog_entry *find_uid(struct embkvd *s, uint64_t uid)
{
	struct embkv_catalog_entry *const *e, *found = NULL;
	uint32_t n;

	rcu_read_lock();
	n = embkv_catalog_snapshot(s->cat, &e);
	for (uint32_t i = 0; i < n; i++)
		if (e[i]->uid == uid) {
			found = e[i];
			embkv_catalog_entry_get(found);
			break;
		}
	rcu_read_unlock();
	return found;
}

/* ---- owner jobs -------------------------------------------------------------- */

struct ck_ojob {
	struct embkv_job job;
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool done;
	int (*fn)(struct ck_ojob *o);
	int rc;
	struct embkv_table *t;
	uint32_t part;
	/* snap */
	uint64_t id, base;
	struct embkv_ckpt_snap *snap;
	/* load */
	const int *fds;
	const uint64_t *uids;
	uint32_t nfiles;
	uint64_t last_id, seq, rows;
	bool serve;             /* set SERVING once loaded */
	uint32_t bad_file;      /* the file that failed */
	char why[256];
};

static void ojob_run(struct embkv_job *j)
{
	struct ck_ojob *o = caa_container_of(j, struct ck_ojob, job);

	o->rc = o->fn(o);
	pthread_mutex_lock(&o->m);
	o->done = true;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->m);
}

/* Runs o->fn as partition o->part's owner and waits for it. */
static int owner_run(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		     struct ck_ojob *o)
{
	struct embkvd *s = ck->s;
	uint32_t owner;

	rcu_read_lock();
	owner = embkvd_map_owner(embkvd_table_map(s, e), o->part,
				 embkv_owner_count(s->owners));
	rcu_read_unlock();
	pthread_mutex_init(&o->m, NULL);
	pthread_cond_init(&o->cv, NULL);
	o->done = false;
	o->job.run = ojob_run;
	embkv_owner_submit(s->owners, owner, &o->job);
	pthread_mutex_lock(&o->m);
	while (!o->done)
		pthread_cond_wait(&o->cv, &o->m);
	pthread_mutex_unlock(&o->m);
	pthread_mutex_destroy(&o->m);
	pthread_cond_destroy(&o->cv);
	return o->rc;
}

static int oj_snap(struct ck_ojob *o)
{
	return embkv_ckpt_snap(o->t, o->part, o->id, o->base, &o->snap);
}

/* Owner: clear the partition, apply the chain, or leave it empty. */
static int oj_load(struct ck_ojob *o)
{
	int rc = 0;

	embkv_part_clear(o->t, o->part);
	for (uint32_t i = 0; i < o->nfiles; i++) {
		struct embkv_ckpt_file_info info;

		rc = embkv_ckpt_apply_part(o->t, o->part, o->uids[i], o->fds[i],
					   &info, o->why, sizeof(o->why));
		if (rc) {
			o->bad_file = i;
			embkv_part_clear(o->t, o->part);
			return rc;
		}
		o->seq = info.seq;
	}
	o->rows = o->t->parts[o->part].rows;
	embkv_part_ckpt_restored(o->t, o->part, o->last_id, o->seq);
	if (o->serve)
		rc = embkv_part_set_state(o->t, o->part, EMBKV_PART_SERVING);
	return rc;
}

/* ---- CKPT_PART: one partition's file ------------------------------------------ */

/* The partition p of e that this server serves now; else r failed. */
static int part_check(struct embkvd *s, struct embkv_catalog_entry *e,
		      uint32_t part, bool serving, struct ck_req *r)
{
	const struct embkvd_map *m;
	bool mine;
	int state;

	if (part >= e->table->nparts)
		return fail(r, -EINVAL, "table %s has %u partitions, not %u",
			    e->table->attr.name, e->table->nparts, part + 1);
	rcu_read_lock();
	m = embkvd_table_map(s, e);
	mine = embkvd_map_mine(m, part);
	rcu_read_unlock();
	state = embkv_part_state(&e->table->parts[part]);
	if (!mine || state == EMBKV_PART_ABSENT)
		return fail(r, EMBKV_ESTALE, "table %s partition %u is not on "
			    "this server", e->table->attr.name, part);
	if (serving && state != EMBKV_PART_SERVING)
		return fail(r, EMBKV_EUNAVAIL, "table %s partition %u is not "
			    "loaded", e->table->attr.name, part);
	return 0;
}

/* Writes snapshot sn of (uid, part) into checkpoint id's directory: a temp
 * file, fsync'ed, renamed to "<uid>-<part>.full" or ".delta" (its name
 * into name). */
static int write_file(struct embkvd_ckpt *ck, const struct embkv_ckpt_snap *sn,
		      uint64_t uid, uint32_t part, uint64_t id, char name[64],
		      struct embkv_ckpt_file_info *info, struct ck_req *r)
{
	char dir[CK_PATH_MAX], path[CK_PATH_MAX], tmp[CK_PATH_MAX + 32];
	char uh[17];
	uint32_t rnd = 0;
	int fd, rc;

	uid_hex(uid, uh);
	if (ck_path(ck, dir, id, NULL))
		return fail(r, -ENAMETOOLONG, "checkpoint path too long");
	if (mkdir(ck->root, 0755) && errno != EEXIST)
		return fail(r, -errno, "cannot create %s: %s", ck->root,
			    strerror(errno));
	if (mkdir(dir, 0755) && errno != EEXIST)
		return fail(r, -errno, "cannot create %s: %s", dir,
			    strerror(errno));
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	snprintf(tmp, sizeof(tmp), "%s/%s-%u.tmp.%08x", dir, uh, part, rnd);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return fail(r, -errno, "cannot create %s: %s", tmp,
			    strerror(errno));
	rc = embkv_ckpt_snap_write(sn, uid, fd, info);
	if (rc) {
		fail(r, rc, "cannot write %s: %s", tmp, embkv_strerror(rc));
		goto undo;
	}
	if (fsync(fd)) {
		rc = fail(r, -errno, "cannot fsync %s: %s", tmp,
			  strerror(errno));
		goto undo;
	}
	close(fd);
	snprintf(name, 64, "%s-%u.%s", uh, part,
		 info->base_id ? "delta" : "full");
	if (ck_path(ck, path, id, name) || rename(tmp, path)) {
		rc = fail(r, -errno, "cannot rename %s: %s", tmp,
			  strerror(errno));
		unlink(tmp);
		return rc;
	}
	return 0;
undo:
	close(fd);
	unlink(tmp);
	return rc;
}

static void do_part(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkvd *s = ck->s;
	struct embkv_catalog_entry *e;
	struct embkv_ckpt_file_info info;
	struct ck_ojob o;
	uint64_t id, base, part, uid, t0 = now_ms();
	char name[64], sum[17];

	if (!get_u64(r->in, "id", &id) || !id ||
	    !get_u64(r->in, "base", &base) || !get_u64(r->in, "part", &part) ||
	    part > UINT32_MAX ||
	    !parse_uid(json_string_value(json_object_get(r->in, "uid")),
		       &uid)) {
		fail(r, -EINVAL, "CKPT_PART needs id, base, uid and part");
		return;
	}
	e = find_uid(s, uid);
	if (!e) {
		fail(r, EMBKV_ENOTABLE, "no table with uid %016" PRIx64
		     " here", uid);
		return;
	}
	if (part_check(s, e, (uint32_t)part, true, r))
		goto out;
	memset(&o, 0, sizeof(o));
	o.fn = oj_snap;
	o.t = e->table;
	o.part = (uint32_t)part;
	o.id = id;
	o.base = base;
	if (owner_run(ck, e, &o)) {
		fail(r, o.rc, "table %s partition %" PRIu64 ": cannot copy: %s",
		     e->table->attr.name, part, embkv_strerror(o.rc));
		goto out;
	}
	if (!write_file(ck, o.snap, uid, (uint32_t)part, id, name, &info,
			r)) {
		snprintf(sum, sizeof(sum), "%016" PRIx64, info.sum);
		r->out = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:I, "
				   "s:I}",
				   "file", name,
				   "kind", info.base_id ? "delta" : "full",
				   "base", (json_int_t)info.base_id,
				   "rows", (json_int_t)info.rows,
				   "tombstones", (json_int_t)info.tombstones,
				   "bytes", (json_int_t)info.bytes,
				   "sum", sum,
				   "seq", (json_int_t)info.seq,
				   "ms", (json_int_t)(now_ms() - t0));
		if (!r->out)
			fail(r, -ENOMEM, "no memory for the reply");
	}
	embkv_ckpt_snap_free(o.snap);
out:
	embkv_catalog_entry_put(e);
}

/* ---- CKPT_COMMIT: the manifest --------------------------------------------------- */

static int write_manifest(struct embkvd_ckpt *ck, uint64_t id, const json_t *m,
			  struct ck_req *r)
{
	char dir[CK_PATH_MAX], path[CK_PATH_MAX], tmp[CK_PATH_MAX + 32];
	char *text;
	size_t len;
	uint32_t rnd = 0;
	int fd, rc = 0;

	if (ck_path(ck, dir, id, NULL) || ck_path(ck, path, id, CK_MANIFEST))
		return fail(r, -ENAMETOOLONG, "checkpoint path too long");
	if (mkdir(ck->root, 0755) && errno != EEXIST)
		return fail(r, -errno, "cannot create %s: %s", ck->root,
			    strerror(errno));
	if (mkdir(dir, 0755) && errno != EEXIST)
		return fail(r, -errno, "cannot create %s: %s", dir,
			    strerror(errno));
	/* the partition files' renames first, then the manifest */
	rc = fsync_path(dir);
	if (!rc)
		rc = fsync_path(ck->root);
	if (rc)
		return fail(r, rc, "cannot fsync %s: %s", dir, strerror(-rc));
	text = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!text)
		return fail(r, -ENOMEM, "no memory for the manifest");
	len = strlen(text);
	/* servers sharing the directory write the same manifest at once:
	 * each under its own temp name; the renames are atomic */
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%08x", path, rnd);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = fail(r, -errno, "cannot create %s: %s", tmp,
			  strerror(errno));
		goto out;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = fail(r, w < 0 ? -errno : -EIO, "cannot write %s: %s",
				  tmp, w < 0 ? strerror(errno) : "short write");
			break;
		}
		off += (size_t)w;
	}
	if (!rc && fsync(fd))
		rc = fail(r, -errno, "cannot fsync %s: %s", tmp,
			  strerror(errno));
	close(fd);
	if (!rc && rename(tmp, path))
		rc = fail(r, -errno, "cannot rename %s: %s", tmp,
			  strerror(errno));
	if (rc)
		unlink(tmp);
	else if ((rc = fsync_path(dir)))
		fail(r, rc, "cannot fsync %s: %s", dir, strerror(-rc));
out:
	free(text);
	return rc;
}

/* Cluster mode: etcd's newest complete checkpoint becomes id, unless a
 * newer one is recorded. */
static int record_newest(struct embkvd_ckpt *ck, uint64_t id, struct ck_req *r)
{
	for (int tries = 0; tries < 8; tries++) {
		struct embkv_etcd_kvs kvs;
		struct embkv_etcd_cmp cmp = { .key = ck->newest_key,
					      .target = EMBKV_ETCD_MOD,
					      .result = EMBKV_ETCD_EQUAL };
		struct embkv_etcd_op put = { .type = EMBKV_ETCD_OP_PUT,
					     .key = ck->newest_key };
		struct embkv_etcd_txn t = { .cmp = &cmp, .ncmp = 1,
					    .success = &put, .nsuccess = 1 };
		char val[24];
		bool ok;
		int rc = embkv_etcd_get(ck->etcd, ck->newest_key, false, &kvs);

		if (rc)
			return fail(r, rc, "checkpoint %" PRIu64 " is complete "
				    "but etcd could not record it: %s", id,
				    embkv_strerror(rc));
		if (kvs.n) {
			uint64_t cur = strtoull(kvs.kv[0].value, NULL, 10);

			cmp.number = kvs.kv[0].mod_revision;
			embkv_etcd_kvs_free(&kvs);
			if (cur >= id)
				return 0;
		} else {
			embkv_etcd_kvs_free(&kvs);
		}
		snprintf(val, sizeof(val), "%" PRIu64, id);
		put.value = val;
		put.value_len = strlen(val);
		rc = embkv_etcd_txn(ck->etcd, &t, &ok, NULL);
		if (rc)
			return fail(r, rc, "checkpoint %" PRIu64 " is complete "
				    "but etcd could not record it: %s", id,
				    embkv_strerror(rc));
		if (ok)
			return 0;
	}
	return fail(r, EMBKV_ECLUSTER, "checkpoint %" PRIu64 ": etcd's "
		    "newest checkpoint kept changing", id);
}

static void set_last(struct embkvd_ckpt *ck, const json_t *m)
{
	struct embkvd_ckpt_last l = { 0 };

	get_u64(m, "id", &l.id);
	get_u64(m, "duration_ms", &l.duration_ms);
	get_u64(m, "bytes", &l.bytes);
	get_u64(m, "rows", &l.rows);
	pthread_mutex_lock(&ck->lock);
	if (l.id >= ck->last.id)
		ck->last = l;
	pthread_mutex_unlock(&ck->lock);
}

/* Tells this server's partitions in m that checkpoint id has them. */
static void mark_committed(struct embkvd_ckpt *ck, uint64_t id, const json_t *m)
{
	size_t i, j;
	json_t *t, *p;

	json_array_foreach(json_object_get(m, "tables"), i, t) {
		json_array_foreach(json_object_get(t, "parts"), j, p) {
			uint64_t uid, part;
			struct embkv_catalog_entry *e;

			if (!parse_uid(json_string_value(json_object_get(p,
					"uid")), &uid) ||
			    !get_u64(p, "part", &part))
				continue;
			e = find_uid(ck->s, uid);
			if (!e)
				continue;
			if (part < e->table->nparts &&
			    e->table->parts[part].loaded)
				embkv_part_ckpt_committed(e->table,
							  (uint32_t)part, id);
			embkv_catalog_entry_put(e);
		}
	}
}

static void do_commit(struct embkvd_ckpt *ck, struct ck_req *r)
{
	json_t *m = json_object_get(r->in, "manifest");
	uint64_t id, mid;

	if (!get_u64(r->in, "id", &id) || !id || !json_is_object(m) ||
	    !get_u64(m, "id", &mid) || mid != id ||
	    !json_is_array(json_object_get(m, "tables"))) {
		fail(r, -EINVAL, "CKPT_COMMIT needs id and a manifest of that "
		     "id with tables");
		return;
	}
	if (write_manifest(ck, id, m, r))
		return;
	mark_committed(ck, id, m);
	set_last(ck, m);
	if (json_is_true(json_object_get(r->in, "record")) && ck->etcd)
		record_newest(ck, id, r);
	if (!r->status)
		embkvd_log("checkpoint %" PRIu64 " committed", id);
}

/* ---- CKPT_LOAD: a partition from a checkpoint chain ------------------------------ */

struct chain {
	uint32_t n;
	int fds[64];
	uint64_t uids[64];
	uint64_t ids[64];
	char paths[64][CK_PATH_MAX];
	uint64_t bytes;
	uint64_t rows;          /* of the newest file */
};

/* Closes the files (n and the paths stay, for messages). */
static void chain_close(struct chain *c)
{
	for (uint32_t i = 0; i < c->n; i++)
		if (c->fds[i] >= 0) {
			close(c->fds[i]);
			c->fds[i] = -1;
		}
}

static int chain_walk(struct embkvd_ckpt *ck, const struct embkv_table *t,
		      const char *name, uint32_t part, uint64_t id,
		      bool verify, struct chain *rv, struct chain *c,
		      struct ck_req *r);

/*
 * Builds and verifies the chain of table `name` partition part ending at
 * checkpoint id, against table t: the full file first, then each
 * increment. Every file is opened and checked (size, checksum, ids,
 * table) before anything is loaded.
 */
static int chain_build(struct embkvd_ckpt *ck, const struct embkv_table *t,
		       const char *name, uint32_t part, uint64_t id,
		       bool verify, struct chain *c, struct ck_req *r)
{
	struct chain *revp = calloc(1, sizeof(*revp));
	int ret;

	if (!revp)
		return fail(r, -ENOMEM, "no memory");
	ret = chain_walk(ck, t, name, part, id, verify, revp, c, r);
	free(revp);
	return ret;
}

static int chain_walk(struct embkvd_ckpt *ck, const struct embkv_table *t,
		      const char *name, uint32_t part, uint64_t id,
		      bool verify, struct chain *rv, struct chain *c,
		      struct ck_req *r)
{
	/* Links are checkpoint ids: a file's base is the checkpoint of the
	 * previous file of the same table name and partition. The table uid
	 * may change along the chain (a static server restored it into a
	 * re-created table); each file is checked against its own entry. */
	uint64_t cur = id;


	c->n = 0;
	for (;;) {
		json_t *m, *tab, *ent;
		const char *file;
		uint64_t uid, base, bytes, rows;
		uint8_t sumb[8];
		uint64_t sum = 0;
		struct embkv_ckpt_file_info info;
		char why[256] = "";
		int fd, rc;
		struct stat st;

		if (rv->n == 64) {
			chain_close(rv);
			return fail(r, EMBKV_ELIMIT, "table %s partition %u: "
				    "more than 64 checkpoints in its chain; "
				    "take a full checkpoint", name, part);
		}
		m = manifest_read(ck, cur, r);
		if (!m) {
			if (cur != id)
				fail(r, r->status, "broken chain: checkpoint %"
				     PRIu64 ", the base of table %s partition "
				     "%u, is missing or incomplete", cur, name,
				     part);
			chain_close(rv);
			return r->status;
		}
		if (!manifest_find(m, name, part, &tab, &ent)) {
			fail(r, -ENOENT, "checkpoint %" PRIu64 " has no %s %s "
			     "partition %u", cur, tab ? "" : "table", name,
			     part);
			json_decref(m);
			chain_close(rv);
			return r->status;
		}
		file = json_string_value(json_object_get(ent, "file"));
		if (!file || !file_name_ok(file) ||
		    !parse_uid(json_string_value(json_object_get(ent, "uid")),
			       &uid) ||
		    !get_u64(ent, "base", &base) ||
		    !get_u64(ent, "bytes", &bytes) ||
		    !get_u64(ent, "rows", &rows) ||
		    embkv_hex_decode(json_string_value(json_object_get(ent,
			"sum")) ? json_string_value(json_object_get(ent,
			"sum")) : "", sumb, 8) != 8 ||
		    base >= cur) {
			fail(r, EMBKV_EPROTO, "checkpoint %" PRIu64 ": bad "
			     "manifest entry for table %s partition %u", cur,
			     name, part);
			json_decref(m);
			chain_close(rv);
			return r->status;
		}
		for (int i = 0; i < 8; i++)
			sum = sum << 8 | sumb[i];
		if (ck_path(ck, rv->paths[rv->n], cur, file)) {
			json_decref(m);
			chain_close(rv);
			return fail(r, -ENAMETOOLONG, "path too long");
		}
		json_decref(m);
		fd = open(rv->paths[rv->n], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			chain_close(rv);
			return fail(r, rc, "%s: %s", rv->paths[rv->n],
				    strerror(-rc));
		}
		rv->fds[rv->n] = fd;
		rv->uids[rv->n] = uid;
		rv->ids[rv->n] = cur;
		rv->n++;
		if (fstat(fd, &st) || (uint64_t)st.st_size != bytes) {
			chain_close(rv);
			return fail(r, EMBKV_EPROTO, "%s: %lld bytes, the "
				    "manifest says %" PRIu64,
				    rv->paths[rv->n - 1],
				    (long long)st.st_size, bytes);
		}
		/* without verify (checked a moment ago): the apply re-checks
		 * the header and every block as it reads */
		rc = verify ? embkv_ckpt_verify_part(t, part, uid, fd, &info,
						     why, sizeof(why)) : 0;
		if (verify && !rc && (info.sum != sum || info.ckpt_id != cur ||
			    info.base_id != base || info.rows != rows)) {
			rc = EMBKV_EPROTO;
			snprintf(why, sizeof(why), "does not match its manifest "
				 "entry (checkpoint %" PRIu64 " base %" PRIu64
				 " rows %" PRIu64 ")", info.ckpt_id,
				 info.base_id, info.rows);
		}
		if (rc) {
			chain_close(rv);
			return fail(r, rc, "%s: %s", rv->paths[rv->n - 1],
				    why[0] ? why : embkv_strerror(rc));
		}
		c->bytes += bytes;
		c->rows = rows;
		if (!base)
			break;
		cur = base;
	}
	/* apply order: the full file first */
	for (uint32_t i = 0; i < rv->n; i++) {
		uint32_t k = rv->n - 1 - i;

		c->fds[i] = rv->fds[k];
		c->uids[i] = rv->uids[k];
		c->ids[i] = rv->ids[k];
		memcpy(c->paths[i], rv->paths[k], CK_PATH_MAX);
	}
	c->n = rv->n;
	return 0;
}

/* Loads partition part of e from checkpoint id (e's name in the
 * manifest). */
/* mode: LOAD_FULL verifies the chain, then loads; LOAD_CHECK only
 * verifies; LOAD_CHECKED loads a chain verified by an earlier LOAD_CHECK
 * (the apply still checks every block it reads). */
enum load_mode { LOAD_FULL, LOAD_CHECK, LOAD_CHECKED };

static int load_part(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		     uint32_t part, uint64_t id, enum load_mode mode,
		     struct ck_req *r, uint64_t *rows, uint64_t *bytes,
		     uint32_t *files)
{
	struct chain *c = calloc(1, sizeof(*c));
	struct ck_ojob o;
	int rc;

	if (!c)
		return fail(r, -ENOMEM, "no memory");
	rc = chain_build(ck, e->table, e->table->attr.name, part, id,
			 mode != LOAD_CHECKED, c, r);
	if (rc || mode == LOAD_CHECK) {
		*rows = c->rows;
		*bytes = c->bytes;
		*files = c->n;
		chain_close(c);
		free(c);
		return rc;
	}
	memset(&o, 0, sizeof(o));
	o.fn = oj_load;
	o.t = e->table;
	o.part = part;
	o.fds = c->fds;
	o.uids = c->uids;
	o.nfiles = c->n;
	o.last_id = id;
	o.serve = embkv_part_state(&e->table->parts[part]) ==
		  EMBKV_PART_UNLOADED;
	rc = owner_run(ck, e, &o);
	if (rc)
		fail(r, rc, "%s: %s (the partition is left empty)",
		     c->paths[o.bad_file < c->n ? o.bad_file : 0],
		     o.why[0] ? o.why : embkv_strerror(rc));
	*rows = o.rows;
	*bytes = c->bytes;
	*files = c->n;
	chain_close(c);
	free(c);
	return rc;
}

static void do_load(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkv_catalog_entry *e;
	uint64_t id, part, uid, rows = 0, bytes = 0, t0 = now_ms();
	uint32_t files = 0;
	enum load_mode mode;

	if (!get_u64(r->in, "id", &id) || !id ||
	    !get_u64(r->in, "part", &part) || part > UINT32_MAX ||
	    !parse_uid(json_string_value(json_object_get(r->in, "uid")),
		       &uid)) {
		fail(r, -EINVAL, "CKPT_LOAD needs id, uid and part");
		return;
	}
	e = find_uid(ck->s, uid);
	if (!e) {
		fail(r, EMBKV_ENOTABLE, "no table with uid %016" PRIx64
		     " here", uid);
		return;
	}
	mode = json_is_true(json_object_get(r->in, "check")) ? LOAD_CHECK
	       : json_is_true(json_object_get(r->in, "checked")) ? LOAD_CHECKED
								: LOAD_FULL;
	if (!part_check(ck->s, e, (uint32_t)part, false, r) &&
	    !load_part(ck, e, (uint32_t)part, id, mode, r, &rows, &bytes,
		       &files)) {
		r->out = json_pack("{s:I, s:I, s:I, s:I}",
				   "rows", (json_int_t)rows,
				   "bytes", (json_int_t)bytes,
				   "files", (json_int_t)files,
				   "ms", (json_int_t)(now_ms() - t0));
		if (!r->out)
			fail(r, -ENOMEM, "no memory for the reply");
	}
	embkv_catalog_entry_put(e);
}

/* ---- CKPT_LIST, CKPT_GET, CKPT_VERIFY, CKPT_DELETE -------------------------------- */

static void do_list(struct embkvd_ckpt *ck, struct ck_req *r)
{
	uint64_t *ids;
	bool *complete;
	uint32_t n;
	json_t *list = json_array(), *inc = json_array();
	int rc = list_ids(ck, &ids, &complete, &n);

	if (rc || !list || !inc) {
		fail(r, rc ? rc : -ENOMEM, "cannot list %s: %s", ck->root,
		     embkv_strerror(rc ? rc : -ENOMEM));
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct ck_req tmp = { 0 };
		json_t *m, *sum;

		if (!complete[i]) {
			json_array_append_new(inc, json_integer((json_int_t)
								ids[i]));
			continue;
		}
		m = manifest_read(ck, ids[i], &tmp);
		if (!m) {
			json_array_append_new(inc, json_integer((json_int_t)
								ids[i]));
			continue;
		}
		sum = json_deep_copy(m);
		if (sum) {
			size_t j;
			json_t *t;

			/* the summary: everything but the partitions */
			json_array_foreach(json_object_get(sum, "tables"), j, t)
				json_object_del(t, "parts");
			json_array_append_new(list, sum);
		}
		json_decref(m);
	}
	r->out = json_pack("{s:O, s:O}", "checkpoints", list, "incomplete",
			   inc);
	if (!r->out)
		fail(r, -ENOMEM, "no memory for the reply");
out:
	json_decref(list);
	json_decref(inc);
	free(ids);
	free(complete);
}

static void do_get(struct embkvd_ckpt *ck, struct ck_req *r)
{
	uint64_t id;

	if (!get_u64(r->in, "id", &id) || !id) {
		fail(r, -EINVAL, "CKPT_GET needs an id");
		return;
	}
	r->out = manifest_read(ck, id, r);
}

/* Checks one listed file on its own and against its manifest entry. */
static json_t *verify_file(struct embkvd_ckpt *ck, uint64_t id, const json_t *p)
{
	const char *file = json_string_value(json_object_get(p, "file"));
	const char *sums = json_string_value(json_object_get(p, "sum"));
	char path[CK_PATH_MAX], why[256] = "";
	struct embkv_ckpt_file_info info;
	uint64_t bytes = 0, rows = 0, uid = 0, sum = 0, part = 0;
	uint8_t sb[8];
	int fd, rc;

	if (!file || !file_name_ok(file) || !sums ||
	    embkv_hex_decode(sums, sb, 8) != 8 ||
	    !get_u64(p, "bytes", &bytes) || !get_u64(p, "rows", &rows) ||
	    !get_u64(p, "part", &part) ||
	    !parse_uid(json_string_value(json_object_get(p, "uid")), &uid))
		return json_pack("{s:s, s:b, s:s}", "file", file ? file : "?",
				 "ok", 0, "why", "bad manifest entry");
	for (int i = 0; i < 8; i++)
		sum = sum << 8 | sb[i];
	if (ck_path(ck, path, id, file))
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return json_pack("{s:s, s:b, s:b}", "file", file, "ok", 0,
				 "missing", 1);
	rc = embkv_ckpt_check_file(fd, &info, why, sizeof(why));
	close(fd);
	if (!rc && (info.bytes != bytes || info.sum != sum ||
		    info.rows != rows || info.table_uid != uid ||
		    info.part != part || info.ckpt_id != id)) {
		rc = EMBKV_EPROTO;
		snprintf(why, sizeof(why), "sound, but not the file the "
			 "manifest lists (table, partition, checkpoint, size "
			 "or checksum differ)");
	}
	if (rc)
		return json_pack("{s:s, s:b, s:s}", "file", file, "ok", 0,
				 "why", why[0] ? why : embkv_strerror(rc));
	return json_pack("{s:s, s:b, s:I, s:I}", "file", file, "ok", 1,
			 "rows", (json_int_t)info.rows,
			 "bytes", (json_int_t)info.bytes);
}

static void do_verify(struct embkvd_ckpt *ck, struct ck_req *r)
{
	uint64_t id;
	json_t *m, *out, *t, *p;
	size_t i, j;

	if (!get_u64(r->in, "id", &id) || !id) {
		fail(r, -EINVAL, "CKPT_VERIFY needs an id");
		return;
	}
	m = manifest_read(ck, id, r);
	if (!m)
		return;
	out = json_array();
	json_array_foreach(json_object_get(m, "tables"), i, t)
		json_array_foreach(json_object_get(t, "parts"), j, p) {
			json_t *v = verify_file(ck, id, p);

			if (v && out)
				json_array_append_new(out, v);
		}
	json_decref(m);
	r->out = out ? json_pack("{s:o}", "checked", out) : NULL;
	if (!r->out)
		fail(r, -ENOMEM, "no memory for the reply");
}

/* True when a complete checkpoint other than id has an increment based on
 * id (then deleting id breaks its chain). */
static bool is_base(struct embkvd_ckpt *ck, uint64_t id, uint64_t *user)
{
	uint64_t *ids;
	bool *complete, found = false;
	uint32_t n;

	if (list_ids(ck, &ids, &complete, &n))
		return false;
	for (uint32_t i = 0; i < n && !found; i++) {
		struct ck_req tmp = { 0 };
		json_t *m, *t, *p;
		size_t a, b;

		if (!complete[i] || ids[i] <= id)
			continue;
		m = manifest_read(ck, ids[i], &tmp);
		if (!m)
			continue;
		json_array_foreach(json_object_get(m, "tables"), a, t)
			json_array_foreach(json_object_get(t, "parts"), b, p) {
				uint64_t base;

				if (get_u64(p, "base", &base) && base == id) {
					found = true;
					*user = ids[i];
				}
			}
		json_decref(m);
	}
	free(ids);
	free(complete);
	return found;
}

static void do_delete(struct embkvd_ckpt *ck, struct ck_req *r)
{
	char dir[CK_PATH_MAX], path[CK_PATH_MAX];
	uint64_t id, user = 0;
	bool force = json_is_true(json_object_get(r->in, "force"));
	DIR *d;
	struct dirent *de;
	uint32_t removed = 0;

	if (!get_u64(r->in, "id", &id) || !id) {
		fail(r, -EINVAL, "CKPT_DELETE needs an id");
		return;
	}
	if (ck_path(ck, dir, id, NULL) || ck_path(ck, path, id, CK_MANIFEST)) {
		fail(r, -ENAMETOOLONG, "path too long");
		return;
	}
	if (!force && is_base(ck, id, &user)) {
		fail(r, -EBUSY, "checkpoint %" PRIu64 " is the base of "
		     "checkpoint %" PRIu64 "'s increments; delete that one "
		     "first (or force)", id, user);
		return;
	}
	d = opendir(dir);
	if (!d) {
		r->out = json_pack("{s:b}", "found", 0);
		return;
	}
	/* the manifest first: from then on the checkpoint is incomplete */
	if (!unlink(path)) {
		removed++;
		(void)fsync_path(dir);
	}
	while ((de = readdir(d))) {
		char p[CK_PATH_MAX + 256];

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (!unlink(p))
			removed++;
	}
	closedir(d);
	/* servers sharing the directory delete it at once: what another
	 * one removed first is not an error */
	if (rmdir(dir) && errno != ENOENT) {
		fail(r, -errno, "cannot remove %s: %s", dir, strerror(errno));
		return;
	}
	(void)fsync_path(ck->root);
	embkvd_log("checkpoint %" PRIu64 " deleted (%u files)", id, removed);
	r->out = json_pack("{s:b, s:I}", "found", 1, "files",
			   (json_int_t)removed);
}

/* ---- restore at start --------------------------------------------------------- */

static uint64_t newest_complete(struct embkvd_ckpt *ck)
{
	uint64_t *ids, best = 0;
	bool *complete;
	uint32_t n;

	if (list_ids(ck, &ids, &complete, &n))
		return 0;
	for (uint32_t i = n; i-- > 0;)
		if (complete[i]) {
			best = ids[i];
			break;
		}
	free(ids);
	free(complete);
	return best;
}

static bool attr_from(const json_t *t, struct embkv_table_attr *a)
{
	const char *hex = json_string_value(json_object_get(t, "attr"));
	uint8_t wire[512];
	int n;

	if (!hex)
		return false;
	n = embkv_hex_decode(hex, wire, sizeof(wire));
	return n > 0 && !embkv_wire_table_attr_decode(wire, (size_t)n, a) &&
	       !embkv_table_attr_check(a);
}

static void log_rollback(uint64_t id, const char *name, uint32_t loaded,
			 uint64_t rows, uint32_t failed)
{
	uint64_t age = wall_ms() > id ? (wall_ms() - id) / 1000u : 0;

	embkvd_log("table %s: %u partitions restored from checkpoint %" PRIu64
		   " (%" PRIu64 " rows), rolled back %" PRIu64 " s to when it "
		   "was taken%s", name, loaded, id, rows, age,
		   failed ? "; some partitions failed and stay unavailable"
			  : "");
}

/* Loads every UNLOADED partition of e that this server holds. */
static void restore_table(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
			  uint64_t id)
{
	struct embkv_table *t = e->table;
	uint32_t loaded = 0, failed = 0;
	uint64_t total = 0;

	for (uint32_t p = 0; p < t->nparts; p++) {
		struct ck_req r = { 0 };
		uint64_t rows = 0, bytes = 0;
		uint32_t files = 0;

		if (embkv_part_state(&t->parts[p]) != EMBKV_PART_UNLOADED)
			continue;
		if (load_part(ck, e, p, id, LOAD_FULL, &r, &rows, &bytes,
			      &files)) {
			embkvd_log("table %s partition %u: not restored: %s",
				   t->attr.name, p, r.msg);
			failed++;
			continue;
		}
		loaded++;
		total += rows;
	}
	if (loaded || failed)
		log_rollback(id, t->attr.name, loaded, total, failed);
}

/* Static mode: re-creates the tables of the newest complete checkpoint
 * (their partitions UNLOADED until loaded), before the server serves. */
static void static_tables(struct embkvd_ckpt *ck, uint64_t id)
{
	struct ck_req r = { 0 };
	json_t *m = manifest_read(ck, id, &r), *t;
	size_t i;

	if (!m) {
		embkvd_log("checkpoint %" PRIu64 ": %s", id, r.msg);
		return;
	}
	json_array_foreach(json_object_get(m, "tables"), i, t) {
		struct embkv_table_attr a;
		uint8_t *owned;
		uint32_t tid;
		uint64_t uid;
		int rc;

		if (!attr_from(t, &a)) {
			embkvd_log("checkpoint %" PRIu64 ": table %zu has bad "
				   "attributes; skipped", id, i);
			continue;
		}
		owned = malloc(a.partitions);
		if (!owned)
			continue;
		rcu_read_lock();
		embkvd_map_owned(embkvd_map_cur(&ck->s->map), a.partitions,
				 owned);
		rcu_read_unlock();
		for (uint32_t p = 0; p < a.partitions; p++)
			if (owned[p])
				owned[p] = EMBKV_PART_UNLOADED;
		rc = embkv_catalog_add(ck->s->cat, &a, owned, 0, &tid, &uid);
		free(owned);
		if (rc)
			embkvd_log("checkpoint %" PRIu64 ": cannot re-create "
				   "table %s: %s", id, a.name,
				   embkv_strerror(rc));
	}
	json_decref(m);
}

/* Cluster mode: etcd's newest complete checkpoint; 0: none or away. */
static uint64_t cluster_newest(struct embkvd_ckpt *ck)
{
	struct embkv_etcd_kvs kvs;
	uint64_t id = 0;

	if (embkv_etcd_get(ck->etcd, ck->newest_key, false, &kvs))
		return 0;
	if (kvs.n)
		id = strtoull(kvs.kv[0].value, NULL, 10);
	embkv_etcd_kvs_free(&kvs);
	return id;
}

/* Every table with UNLOADED partitions here, once per checkpoint id. */
static void restore_pass(struct embkvd_ckpt *ck)
{
	struct embkv_catalog_entry *const *snap, **es = NULL;
	uint32_t n, k = 0;
	uint64_t id = 0;

	rcu_read_lock();
	n = embkv_catalog_snapshot(ck->s->cat, &snap);
	if (n)
		es = malloc(n * sizeof(*es));
	for (uint32_t i = 0; es && i < n; i++)
		if (__atomic_load_n(&snap[i]->table->nunloaded,
				    __ATOMIC_ACQUIRE)) {
			embkv_catalog_entry_get(snap[i]);
			es[k++] = snap[i];
		}
	rcu_read_unlock();
	if (k)
		id = ck->etcd ? cluster_newest(ck) : newest_complete(ck);
	for (uint32_t i = 0; i < k; i++) {
		bool tried = false;
		uint64_t *nu, *nc;

		for (uint32_t j = 0; j < ck->ntried; j++)
			if (ck->tried_uid[j] == es[i]->uid &&
			    ck->tried_ckpt[j] == id)
				tried = true;
		if (!tried) {
			if (!id)
				embkvd_log("table %s: partitions not loaded and "
					   "no complete checkpoint to load "
					   "them from; they stay unavailable",
					   es[i]->table->attr.name);
			else
				restore_table(ck, es[i], id);
			nu = realloc(ck->tried_uid, (ck->ntried + 1) *
				     sizeof(*nu));
			if (nu) {
				ck->tried_uid = nu;
				nc = realloc(ck->tried_ckpt, (ck->ntried + 1) *
					     sizeof(*nc));
				if (nc) {
					ck->tried_ckpt = nc;
					nu[ck->ntried] = es[i]->uid;
					nc[ck->ntried] = id;
					ck->ntried++;
				}
			}
		}
		embkv_catalog_entry_put(es[i]);
	}
	free(es);
}

/* ---- the thread and the requests ------------------------------------------------- */

static void run_req(struct embkvd_ckpt *ck, struct ck_req *r)
{
	switch (r->op) {
	case EMBKV_WIRE_OP_CKPT_PART:
		do_part(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_COMMIT:
		do_commit(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_LOAD:
		do_load(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_LIST:
		do_list(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_GET:
		do_get(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_VERIFY:
		do_verify(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_DELETE:
		do_delete(ck, r);
		break;
	default:
		fail(r, EMBKV_EOPCODE, "not a checkpoint request");
	}
}

/* I/O thread: the answer. */
static void req_finish(struct embkvd_done *d)
{
	struct ck_req *r = caa_container_of(d, struct ck_req, fin);
	struct embkvd_conn *c = r->conn;
	char *text = NULL;
	uint8_t *body;

	if (!r->status) {
		text = r->out ? json_dumps(r->out, JSON_COMPACT)
			      : strdup("{}");
		if (!text)
			fail(r, -ENOMEM, "no memory for the reply");
		else if (strlen(text) > EMBKV_WIRE_MAX_JSON)
			fail(r, EMBKV_ELIMIT, "the reply is over %u bytes",
			     EMBKV_WIRE_MAX_JSON);
	}
	if (r->status)
		embkvd_conn_error(c, r->req_id, r->status, false, "%s", r->msg);
	else if (!embkvd_conn_reply(c, r->req_id, r->op | EMBKV_WIRE_OP_REPLY,
				    (uint32_t)strlen(text), &body))
		memcpy(body, text, strlen(text));
	free(text);
	embkvd_conn_release(c, 0);
	json_decref(r->in);
	json_decref(r->out);
	free(r);
}

static void *ck_main(void *arg)
{
	struct embkvd_ckpt *ck = arg;

	rcu_register_thread();
	if (ck->restore)
		restore_pass(ck);
	ck->next_poll_ms = now_ms() + CK_POLL_MS;
	for (;;) {
		struct ck_req *r;

		pthread_mutex_lock(&ck->lock);
		while (!ck->head && !ck->stop) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += CK_POLL_MS / 1000u;
			if (pthread_cond_timedwait(&ck->cond, &ck->lock, &ts) ==
			    ETIMEDOUT)
				break;
		}
		r = ck->head;
		if (r) {
			ck->head = r->next;
			if (!ck->head)
				ck->tail = &ck->head;
		}
		pthread_mutex_unlock(&ck->lock);
		if (r) {
			run_req(ck, r);
			embkvd_io_post(r->conn->io, &r->fin.node);
			continue;
		}
		if (__atomic_load_n(&ck->stop, __ATOMIC_ACQUIRE))
			break;
		if (ck->restore && now_ms() >= ck->next_poll_ms) {
			restore_pass(ck);
			ck->next_poll_ms = now_ms() + CK_POLL_MS;
		}
	}
	rcu_unregister_thread();
	return NULL;
}

void embkvd_ckpt_submit(struct embkvd_ckpt *ck, struct embkvd_conn *c,
			const struct embkv_wire_hdr *h, const uint8_t *body)
{
	struct ck_req *r;
	json_error_t je;
	json_t *in;

	if (!ck) {
		embkvd_conn_error(c, h->request_id, -EOPNOTSUPP, false,
				  "checkpoints are off: this server runs "
				  "without --data-dir");
		return;
	}
	in = json_loadb((const char *)body, h->body_len,
			JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(in)) {
		embkvd_conn_error(c, h->request_id, EMBKV_EPROTO, false,
				  "bad %s body: %s", embkv_wire_op_name(
				  h->opcode), in ? "not an object" : je.text);
		json_decref(in);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		json_decref(in);
		embkvd_conn_error(c, h->request_id, -ENOMEM, false,
				  "no memory for a checkpoint request");
		return;
	}
	r->fin.finish = req_finish;
	r->conn = c;
	r->req_id = h->request_id;
	r->op = h->opcode;
	r->in = in;
	pthread_mutex_lock(&ck->lock);
	if (ck->stop) {
		pthread_mutex_unlock(&ck->lock);
		embkvd_conn_error(c, h->request_id, EMBKV_EDISCONNECTED, false,
				  "the server is shutting down");
		json_decref(in);
		free(r);
		return;
	}
	embkvd_conn_hold(c, 0);
	*ck->tail = r;
	ck->tail = &r->next;
	pthread_cond_signal(&ck->cond);
	pthread_mutex_unlock(&ck->lock);
}

void embkvd_ckpt_last(struct embkvd_ckpt *ck, struct embkvd_ckpt_last *out)
{
	memset(out, 0, sizeof(*out));
	if (!ck)
		return;
	pthread_mutex_lock(&ck->lock);
	*out = ck->last;
	pthread_mutex_unlock(&ck->lock);
}

int embkvd_ckpt_start(struct embkvd *s, const char *data_dir, bool restore,
		      struct embkvd_ckpt **out)
{
	struct embkvd_ckpt *ck = calloc(1, sizeof(*ck));
	size_t n;
	int rc;

	if (!ck)
		return -ENOMEM;
	ck->s = s;
	ck->restore = restore;
	ck->tail = &ck->head;
	pthread_mutex_init(&ck->lock, NULL);
	pthread_cond_init(&ck->cond, NULL);
	n = strlen(data_dir) + sizeof("/ckpt");
	ck->root = malloc(n);
	if (!ck->root) {
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(ck->root, n, "%s/ckpt", data_dir);
	if (mkdir(ck->root, 0755) && errno != EEXIST) {
		rc = -errno;
		embkvd_log("cannot create %s: %s", ck->root, strerror(errno));
		goto fail;
	}
	if (s->attr.etcd) {
		struct embkv_etcd_attr ea;

		embkv_etcd_attr_init(&ea);
		ea.endpoints = s->attr.etcd;
		rc = embkv_etcd_create(&ea, &ck->etcd);
		if (rc)
			goto fail;
		snprintf(ck->newest_key, sizeof(ck->newest_key),
			 "/%s/checkpoints/newest", s->attr.cluster);
	} else {
		uint64_t id = restore ? newest_complete(ck) : 0;

		if (id)
			static_tables(ck, id);
		else if (restore)
			embkvd_log("no complete checkpoint in %s: starting "
				   "empty", ck->root);
	}
	{
		/* the last checkpoint, for STATS */
		uint64_t id = ck->etcd ? 0 : newest_complete(ck);
		struct ck_req r = { 0 };
		json_t *m = id ? manifest_read(ck, id, &r) : NULL;

		if (m) {
			set_last(ck, m);
			json_decref(m);
		}
	}
	rc = -pthread_create(&ck->thread, NULL, ck_main, ck);
	if (rc)
		goto fail;
	ck->started = true;
	*out = ck;
	return 0;
fail:
	embkvd_ckpt_stop(ck);
	return rc;
}

void embkvd_ckpt_stop(struct embkvd_ckpt *ck)
{
	struct ck_req *r;

	if (!ck)
		return;
	pthread_mutex_lock(&ck->lock);
	__atomic_store_n(&ck->stop, true, __ATOMIC_RELEASE);
	pthread_cond_signal(&ck->cond);
	pthread_mutex_unlock(&ck->lock);
	if (ck->started)
		pthread_join(ck->thread, NULL);
	/* requests still queued: answered with an error */
	while ((r = ck->head)) {
		ck->head = r->next;
		fail(r, EMBKV_EDISCONNECTED, "the server is shutting down");
		embkvd_io_post(r->conn->io, &r->fin.node);
	}
	embkv_etcd_destroy(ck->etcd);
	free(ck->tried_uid);
	free(ck->tried_ckpt);
	free(ck->root);
	pthread_mutex_destroy(&ck->lock);
	pthread_cond_destroy(&ck->cond);
	free(ck);
}
