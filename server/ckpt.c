/*
 * The checkpoint engine of embkvd (server/ckpt.h, server/CHECKPOINT.md).
 *
 * What: one thread that serves the CKPT_* requests (write one partition's
 * file, commit a manifest, load a partition from a checkpoint chain,
 * list, get, verify, delete: server/ckpt_ops.c) and, at start, restores
 * this server's partitions from the newest complete checkpoint. This file
 * has the thread, its queue, the helpers the others share
 * (server/ckpt_priv.h) and the restore at start.
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
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "server/ckpt_priv.h"

/* ---- small helpers ------------------------------------------------------- */

uint64_t ck_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t ck_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int ck_fail(struct ck_req *r, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->status = status;
	return status;
}

void ck_uid_hex(uint64_t uid, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, uid);
}

bool ck_parse_uid(const char *s, uint64_t *out)
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
bool ck_get_u64(const json_t *o, const char *k, uint64_t *out)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

int ck_path(const struct embkvd_ckpt *ck, char *buf, uint64_t id,
		   const char *name)
{
	int n = name ? snprintf(buf, CK_PATH_MAX, "%s/%" PRIu64 "/%s",
				ck->root, id, name)
		     : snprintf(buf, CK_PATH_MAX, "%s/%" PRIu64, ck->root, id);

	return n > 0 && (size_t)n < CK_PATH_MAX ? 0 : -ENAMETOOLONG;
}

int ck_fsync_path(const char *path)
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
bool ck_file_name_ok(const char *f)
{
	size_t n = strlen(f);

	if (n < 20 || n > 40 || f[16] != '-' || strchr(f, '/'))
		return false;
	return (n > 5 && !strcmp(f + n - 5, ".full")) ||
	       (n > 6 && !strcmp(f + n - 6, ".delta"));
}

/* Reads and parses the manifest of checkpoint id; NULL with r failed. */
json_t *ck_manifest_read(struct embkvd_ckpt *ck, uint64_t id,
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
		ck_fail(r, -ENAMETOOLONG, "checkpoint %" PRIu64 ": path too long",
		     id);
		return NULL;
	}
	/* read at once and parsed from memory: json_load_file reads a
	 * character at a time, and a restore reads the manifest once per
	 * partition and pass (a tenth of a restore's verify pass) */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			ck_fail(r, -ENOENT, "checkpoint %" PRIu64 " is not "
			     "complete here (no %s)", id, path);
		else
			ck_fail(r, -errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) || st.st_size > CK_MANIFEST_MAX ||
	    !(buf = malloc((size_t)st.st_size + 1))) {
		ck_fail(r, EMBKV_EPROTO, "%s: cannot read it (%lld bytes; a "
			"manifest has at most %u)", path, (long long)st.st_size,
			CK_MANIFEST_MAX);
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
		ck_fail(r, EMBKV_EPROTO, "%s: not a manifest: %s (line %d)", path,
		     je.text, je.line);
		return NULL;
	}
	if (!json_is_object(m) || !ck_get_u64(m, "id", &mid) || mid != id ||
	    !json_is_array(json_object_get(m, "tables"))) {
		ck_fail(r, EMBKV_EPROTO, "%s: not the manifest of checkpoint %"
		     PRIu64, path, id);
		json_decref(m);
		return NULL;
	}
	return m;
}

/* The manifest entry of (table name, part): its table object and part
 * object, or false. */
bool ck_manifest_find(const json_t *m, const char *name, uint32_t part,
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

			if (ck_get_u64(p, "part", &pp) && pp == part) {
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
int ck_list_ids(struct embkvd_ckpt *ck, uint64_t **ids, bool **complete,
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
struct embkv_catalog_entry *ck_find_uid(struct embkvd *s, uint64_t uid)
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

int ck_ojob_run(void *arg)
{
	struct ck_ojob *o = arg;

	return o->fn(o);
}

/* Runs o->fn as partition o->part's owner and waits for it. */
int ck_owner_run(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		     struct ck_ojob *o)
{
	struct embkvd *s = ck->s;
	uint32_t owner;

	rcu_read_lock();
	owner = embkvd_map_owner(embkvd_table_map(s, e), o->part,
				 embkv_owner_count(s->owners));
	rcu_read_unlock();
	return embkv_owner_call(s->owners, owner, ck_ojob_run, o);
}

/* Owner: clear the partition, apply the chain, or leave it empty. */
int ck_oj_load(struct ck_ojob *o)
{
	int st = embkv_part_state(&o->t->parts[o->part]);
	int rc = 0;

	/* the partition may have left (a new map) since the load was
	 * planned: only a loaded one that is not moving is touched */
	if (!o->t->parts[o->part].loaded ||
	    (st != EMBKV_PART_SERVING && st != EMBKV_PART_UNLOADED))
		return EMBKV_ESTALE;

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

/* ---- restore at start --------------------------------------------------------- */

uint64_t ck_newest_complete(struct embkvd_ckpt *ck)
{
	uint64_t *ids, best = 0;
	bool *complete;
	uint32_t n;

	if (ck_list_ids(ck, &ids, &complete, &n))
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
	uint64_t age = ck_wall_ms() > id ? (ck_wall_ms() - id) / 1000u : 0;

	embkvd_log("table %s: %u partitions restored from checkpoint %" PRIu64
		   " (%" PRIu64 " rows), rolled back %" PRIu64 " s to when it "
		   "was taken%s", name, loaded, id, rows, age,
		   failed ? "; some partitions failed and stay unavailable"
			  : "");
}

/* Loads every UNLOADED partition of e that this server holds. */
/* Whether (uid, part) was tried against checkpoint id already; records
 * it when not. */
static bool tried(struct embkvd_ckpt *ck, uint64_t uid, uint32_t part,
		  uint64_t id)
{
	struct ck_tried *v;

	for (uint32_t j = 0; j < ck->ntried; j++)
		if (ck->tried[j].uid == uid && ck->tried[j].part == part &&
		    ck->tried[j].id == id)
			return true;
	v = realloc(ck->tried, (ck->ntried + 1) * sizeof(*v));
	if (v) {
		ck->tried = v;
		v[ck->ntried++] = (struct ck_tried){ uid, id, part };
	}
	return false;
}

/* Forgets a (uid, part) tried: it loaded, and may be given here again. */
static void untry(struct embkvd_ckpt *ck, uint64_t uid, uint32_t part)
{
	for (uint32_t j = 0; j < ck->ntried; j++)
		if (ck->tried[j].uid == uid && ck->tried[j].part == part) {
			ck->tried[j] = ck->tried[--ck->ntried];
			j--;
		}
}

/* Loads every UNLOADED partition of e that this server holds and that was
 * not tried against checkpoint id (0: none complete) yet. */
static void restore_table(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
			  uint64_t id)
{
	struct embkv_table *t = e->table;
	uint32_t loaded = 0, failed = 0, none = 0;
	uint64_t total = 0;

	for (uint32_t p = 0; p < t->nparts; p++) {
		struct ck_req r = { 0 };
		uint64_t rows = 0, bytes = 0;
		uint32_t files = 0;

		if (embkv_part_state(&t->parts[p]) != EMBKV_PART_UNLOADED ||
		    tried(ck, e->uid, p, id))
			continue;
		if (!id) {
			none++;
			continue;
		}
		if (ck_load_part(ck, e, p, id, LOAD_FULL, &r, &rows, &bytes,
			      &files)) {
			embkvd_log("table %s partition %u: not restored: %s",
				   t->attr.name, p, r.msg);
			failed++;
			continue;
		}
		untry(ck, e->uid, p);
		loaded++;
		total += rows;
	}
	if (none)
		embkvd_log("table %s: %u partitions not loaded and no complete "
			   "checkpoint to load them from; they stay "
			   "unavailable", t->attr.name, none);
	if (loaded || failed)
		log_rollback(id, t->attr.name, loaded, total, failed);
}

/* Static mode: re-creates the tables of the newest complete checkpoint
 * (their partitions UNLOADED until loaded), before the server serves. */
static void static_tables(struct embkvd_ckpt *ck, uint64_t id)
{
	struct ck_req r = { 0 };
	json_t *m = ck_manifest_read(ck, id, &r), *t;
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
		id = ck->etcd ? cluster_newest(ck) : ck_newest_complete(ck);
	for (uint32_t i = 0; i < k; i++) {
		restore_table(ck, es[i], id);
		embkv_catalog_entry_put(es[i]);
	}
	free(es);
}

/* ---- the thread and the requests ------------------------------------------------- */

static void run_req(struct embkvd_ckpt *ck, struct ck_req *r)
{
	if (!ck->root && r->op >= EMBKV_WIRE_OP_CKPT_PART &&
	    r->op <= EMBKV_WIRE_OP_CKPT_DELETE) {
		ck_fail(r, -EOPNOTSUPP, "checkpoints are off: this server "
			"runs without --data-dir");
		return;
	}
	if (ck_do_repl(ck, r))
		return;
	if (ck_do_move(ck, r))
		return;
	switch (r->op) {
	case EMBKV_WIRE_OP_CKPT_PART:
		ck_do_part(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_COMMIT:
		ck_do_commit(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_LOAD:
		ck_do_load(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_LIST:
		ck_do_list(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_GET:
		ck_do_get(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_VERIFY:
		ck_do_verify(ck, r);
		break;
	case EMBKV_WIRE_OP_CKPT_DELETE:
		ck_do_delete(ck, r);
		break;
	default:
		ck_fail(r, EMBKV_EOPCODE, "not a checkpoint request");
	}
}

/* I/O thread: the answer. */
static void req_finish(struct embkvd_done *d)
{
	struct ck_req *r = caa_container_of(d, struct ck_req, fin);
	struct embkvd_conn *c = r->conn;
	bool blob = r->op == EMBKV_WIRE_OP_MOVE_READ ||
		    r->op == EMBKV_WIRE_OP_REPL_SNAP ||
		    r->op == EMBKV_WIRE_OP_REPL_PULL;
	char *text = NULL;
	size_t tl = 0, len;
	uint8_t *body;
	int rc;

	if (!r->status) {
		text = r->out ? json_dumps(r->out, JSON_COMPACT)
			      : strdup("{}");
		tl = text ? strlen(text) : 0;
		if (!text)
			ck_fail(r, -ENOMEM, "no memory for the reply");
		else if (tl > EMBKV_WIRE_MAX_JSON)
			ck_fail(r, EMBKV_ELIMIT, "the reply is over %u bytes",
				EMBKV_WIRE_MAX_JSON);
	}
	len = blob ? 4 + tl + r->raw_len : tl;
	if (!r->status && len > EMBKV_WIRE_MAX_BODY)
		ck_fail(r, EMBKV_ELIMIT, "the reply would be %zu bytes, over "
			"the frame limit", len);
	if (r->status)
		embkvd_conn_error(c, r->req_id, r->status, false, "%s", r->msg);
	else if ((rc = embkvd_conn_reply(c, r->req_id,
					 r->op | EMBKV_WIRE_OP_REPLY,
					 (uint32_t)len, &body)) != 0)
		/* never leave a request unanswered */
		embkvd_conn_error(c, r->req_id, rc, false, "no room for the "
				  "%zu-byte reply: %s", len,
				  embkv_strerror(rc));
	else {
		if (blob) {
			/* u32 JSON length, the JSON, the raw bytes */
			body[0] = (uint8_t)tl;
			body[1] = (uint8_t)(tl >> 8);
			body[2] = (uint8_t)(tl >> 16);
			body[3] = (uint8_t)(tl >> 24);
			memcpy(body + 4, text, tl);
			if (r->raw_len)
				memcpy(body + 4 + tl, r->raw, r->raw_len);
		} else {
			memcpy(body, text, tl);
		}
	}
	free(text);
	embkvd_conn_release(c, 0);
	json_decref(r->in);
	json_decref(r->out);
	free(r->raw);
	free(r);
}

static void *ck_main(void *arg)
{
	struct embkvd_ckpt *ck = arg;

	rcu_register_thread();
	if (ck->restore)
		restore_pass(ck);
	ck->next_poll_ms = ck_now_ms() + CK_POLL_MS;
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
		} else if (__atomic_load_n(&ck->stop, __ATOMIC_ACQUIRE)) {
			break;
		}
		/* also between requests: a long move must not starve it */
		if (ck_now_ms() >= ck->next_poll_ms) {
			ck_moves_expire(ck);
			ck_auto_recover(ck);
			if (ck->restore)
				restore_pass(ck);
			ck->next_poll_ms = ck_now_ms() + CK_POLL_MS;
		}
	}
	rcu_unregister_thread();
	return NULL;
}

void embkvd_ckpt_submit(struct embkvd_ckpt *ck, struct embkvd_conn *c,
			const struct embkv_wire_hdr *h, const uint8_t *body)
{
	const uint8_t *jb, *raw = NULL;
	size_t jl, raw_len = 0;
	struct ck_req *r;
	json_error_t je;
	json_t *in;

	if (!ck) {
		embkvd_conn_error(c, h->request_id, -EOPNOTSUPP, false,
				  "checkpoints are off: this server runs "
				  "without --data-dir");
		return;
	}
	if (h->opcode == EMBKV_WIRE_OP_MOVE_WRITE) {
		/* a blob (checked by the codec): JSON, then the raw bytes */
		embkv_wire_blob_split(body, h->body_len, &jb, &jl, &raw,
				      &raw_len);
	} else {
		jb = body;
		jl = h->body_len;
	}
	in = json_loadb((const char *)jb, jl, JSON_REJECT_DUPLICATES, &je);
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
	if (raw_len) {
		r->raw = malloc(raw_len);
		if (!r->raw) {
			json_decref(in);
			free(r);
			embkvd_conn_error(c, h->request_id, -ENOMEM, false,
					  "no memory for a %zu-byte chunk",
					  raw_len);
			return;
		}
		memcpy(r->raw, raw, raw_len);
		r->raw_len = raw_len;
	}
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

int embkvd_ckpt_start(struct embkvd *s, const struct embkvd_attr *a,
		      struct embkvd_ckpt **out)
{
	struct embkvd_ckpt *ck = calloc(1, sizeof(*ck));
	size_t n;
	int rc;

	if (!ck)
		return -ENOMEM;
	ck->s = s;
	ck->restore = a->data_dir && !a->no_restore;
	ck->member_id = a->member_id;
	ck->auto_recover_ms = (uint64_t)a->auto_recover_s * 1000u;
	ck->tail = &ck->head;
	pthread_mutex_init(&ck->lock, NULL);
	pthread_cond_init(&ck->cond, NULL);
	if (a->data_dir) {
		n = strlen(a->data_dir) + sizeof("/ckpt");
		ck->root = malloc(n);
		if (!ck->root) {
			rc = -ENOMEM;
			goto fail;
		}
		snprintf(ck->root, n, "%s/ckpt", a->data_dir);
		if (mkdir(ck->root, 0755) && errno != EEXIST) {
			rc = -errno;
			embkvd_log("cannot create %s: %s", ck->root,
				   strerror(errno));
			goto fail;
		}
	}
	if (a->etcd) {
		struct embkv_etcd_attr ea;

		embkv_etcd_attr_init(&ea);
		ea.endpoints = a->etcd;
		rc = embkv_etcd_create(&ea, &ck->etcd);
		if (rc)
			goto fail;
		snprintf(ck->prefix, sizeof(ck->prefix), "/%s/", a->cluster);
		snprintf(ck->newest_key, sizeof(ck->newest_key),
			 "/%s/checkpoints/newest", a->cluster);
	} else if (ck->root) {
		uint64_t id = ck->restore ? ck_newest_complete(ck) : 0;

		if (id)
			static_tables(ck, id);
		else if (ck->restore)
			embkvd_log("no complete checkpoint in %s: starting "
				   "empty", ck->root);
	}
	if (ck->root && !ck->etcd) {
		/* the last checkpoint, for STATS */
		uint64_t id = ck_newest_complete(ck);
		struct ck_req r = { 0 };
		json_t *m = id ? ck_manifest_read(ck, id, &r) : NULL;

		if (m) {
			ck_set_last(ck, m);
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
	embkvd_ckpt_free(ck);
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
	ck->started = false;
	/* requests still queued: answered with an error */
	while ((r = ck->head)) {
		ck->head = r->next;
		ck_fail(r, EMBKV_EDISCONNECTED, "the server is shutting down");
		embkvd_io_post(r->conn->io, &r->fin.node);
	}
	ck->head = NULL;
	ck->tail = &ck->head;
}

void embkvd_ckpt_free(struct embkvd_ckpt *ck)
{
	if (!ck)
		return;
	embkvd_ckpt_stop(ck);
	embkv_etcd_destroy(ck->etcd);
	free(ck->tried);
	ck_moves_free(ck);
	free(ck->root);
	pthread_mutex_destroy(&ck->lock);
	pthread_cond_destroy(&ck->cond);
	free(ck);
}
