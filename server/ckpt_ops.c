/*
 * The CKPT_* requests of the checkpoint thread (server/ckpt_priv.h,
 * server/CHECKPOINT.md): a partition's file (CKPT_PART), the manifest
 * (CKPT_COMMIT), a partition loaded from its chain (CKPT_LOAD), and
 * list, get, verify and delete.
 *
 * Why apart from ckpt.c: these are the file and manifest work; ckpt.c is
 * the thread, its queue and the restore at start.
 *
 * Invariants: those of server/ckpt.c's comment (temp, fsync, rename;
 * manifest last; nothing loaded before the whole chain verified; rows
 * touched only by owner jobs).
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

static int oj_snap(struct ck_ojob *o)
{
	/* the partition may have started moving (or left) since the
	 * request was checked: a copy of it would not be this server's */
	if (!o->t->parts[o->part].loaded ||
	    embkv_part_state(&o->t->parts[o->part]) != EMBKV_PART_SERVING)
		return EMBKV_ESTALE;
	return embkv_ckpt_snap(o->t, o->part, o->id, o->base, &o->snap);
}

/* ---- CKPT_PART: one partition's file ------------------------------------------ */

/* The partition p of e that this server serves now; else r failed. */
int ck_part_check(struct embkvd *s, struct embkv_catalog_entry *e,
		      uint32_t part, bool serving, struct ck_req *r)
{
	const struct embkvd_map *m;
	bool mine;
	int state;

	if (part >= e->table->nparts)
		return ck_fail(r, -EINVAL, "table %s has %u partitions, not %u",
			    e->table->attr.name, e->table->nparts, part + 1);
	rcu_read_lock();
	m = embkvd_table_map(s, e);
	mine = embkvd_map_mine(m, part);
	rcu_read_unlock();
	state = embkv_part_state(&e->table->parts[part]);
	if (!mine || state == EMBKV_PART_ABSENT)
		return ck_fail(r, EMBKV_ESTALE, "table %s partition %u is not on "
			    "this server", e->table->attr.name, part);
	if (serving && state != EMBKV_PART_SERVING)
		return ck_fail(r, EMBKV_EUNAVAIL, "table %s partition %u is not "
			    "loaded", e->table->attr.name, part);
	return 0;
}

/* Creates <root> and <root>/<id> if missing; the latter's path in dir
 * (CK_PATH_MAX). 0, or r failed. */
static int ck_mkdirs(struct embkvd_ckpt *ck, uint64_t id, char *dir,
		     struct ck_req *r)
{
	if (ck_path(ck, dir, id, NULL))
		return ck_fail(r, -ENAMETOOLONG, "checkpoint path too long");
	if (mkdir(ck->root, 0755) && errno != EEXIST)
		return ck_fail(r, -errno, "cannot create %s: %s", ck->root,
			       strerror(errno));
	if (mkdir(dir, 0755) && errno != EEXIST)
		return ck_fail(r, -errno, "cannot create %s: %s", dir,
			       strerror(errno));
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

	ck_uid_hex(uid, uh);
	if (ck_mkdirs(ck, id, dir, r))
		return r->status;
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	snprintf(tmp, sizeof(tmp), "%s/%s-%u.tmp.%08x", dir, uh, part, rnd);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return ck_fail(r, -errno, "cannot create %s: %s", tmp,
			    strerror(errno));
	rc = embkv_ckpt_snap_write(sn, uid, fd, info);
	if (rc) {
		ck_fail(r, rc, "cannot write %s: %s", tmp, embkv_strerror(rc));
		goto undo;
	}
	if (fsync(fd)) {
		rc = ck_fail(r, -errno, "cannot fsync %s: %s", tmp,
			  strerror(errno));
		goto undo;
	}
	close(fd);
	snprintf(name, 64, "%s-%u.%s", uh, part,
		 info->base_id ? "delta" : "full");
	if (ck_path(ck, path, id, name) || rename(tmp, path)) {
		rc = ck_fail(r, -errno, "cannot rename %s: %s", tmp,
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

void ck_do_part(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkvd *s = ck->s;
	struct embkv_catalog_entry *e;
	struct embkv_ckpt_file_info info;
	struct ck_ojob o;
	uint64_t id, base, part, uid, t0 = ck_now_ms();
	char name[64], sum[17];
	int rc;

	if (!ck_get_u64(r->in, "id", &id) || !id ||
	    !ck_get_u64(r->in, "base", &base) || !ck_get_u64(r->in, "part", &part) ||
	    part > UINT32_MAX ||
	    !ck_parse_uid(json_string_value(json_object_get(r->in, "uid")),
		       &uid)) {
		ck_fail(r, -EINVAL, "CKPT_PART needs id, base, uid and part");
		return;
	}
	e = ck_find_uid(s, uid);
	if (!e) {
		ck_fail(r, EMBKV_ENOTABLE, "no table with uid %016" PRIx64
		     " here", uid);
		return;
	}
	if (ck_part_check(s, e, (uint32_t)part, true, r))
		goto out;
	memset(&o, 0, sizeof(o));
	o.fn = oj_snap;
	o.t = e->table;
	o.part = (uint32_t)part;
	o.id = id;
	o.base = base;
	rc = ck_owner_run(ck, e, &o);
	if (rc) {
		ck_fail(r, rc, "table %s partition %" PRIu64 ": cannot copy: %s",
		     e->table->attr.name, part, embkv_strerror(rc));
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
				   "ms", (json_int_t)(ck_now_ms() - t0));
		if (!r->out)
			ck_fail(r, -ENOMEM, "no memory for the reply");
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

	if (ck_path(ck, path, id, CK_MANIFEST))
		return ck_fail(r, -ENAMETOOLONG, "checkpoint path too long");
	if (ck_mkdirs(ck, id, dir, r))
		return r->status;
	/* the partition files' renames first, then the manifest */
	rc = ck_fsync_path(dir);
	if (!rc)
		rc = ck_fsync_path(ck->root);
	if (rc)
		return ck_fail(r, rc, "cannot fsync %s: %s", dir, strerror(-rc));
	text = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!text)
		return ck_fail(r, -ENOMEM, "no memory for the manifest");
	len = strlen(text);
	/* servers sharing the directory write the same manifest at once:
	 * each under its own temp name; the renames are atomic */
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%08x", path, rnd);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = ck_fail(r, -errno, "cannot create %s: %s", tmp,
			  strerror(errno));
		goto out;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = ck_fail(r, w < 0 ? -errno : -EIO, "cannot write %s: %s",
				  tmp, w < 0 ? strerror(errno) : "short write");
			break;
		}
		off += (size_t)w;
	}
	if (!rc && fsync(fd))
		rc = ck_fail(r, -errno, "cannot fsync %s: %s", tmp,
			  strerror(errno));
	close(fd);
	if (!rc && rename(tmp, path))
		rc = ck_fail(r, -errno, "cannot rename %s: %s", tmp,
			  strerror(errno));
	if (rc)
		unlink(tmp);
	else if ((rc = ck_fsync_path(dir)))
		ck_fail(r, rc, "cannot fsync %s: %s", dir, strerror(-rc));
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
			return ck_fail(r, rc, "checkpoint %" PRIu64 " is complete "
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
			return ck_fail(r, rc, "checkpoint %" PRIu64 " is complete "
				    "but etcd could not record it: %s", id,
				    embkv_strerror(rc));
		if (ok)
			return 0;
	}
	return ck_fail(r, EMBKV_ECLUSTER, "checkpoint %" PRIu64 ": etcd's "
		    "newest checkpoint kept changing", id);
}

void ck_set_last(struct embkvd_ckpt *ck, const json_t *m)
{
	struct embkvd_ckpt_last l = { 0 };

	ck_get_u64(m, "id", &l.id);
	ck_get_u64(m, "duration_ms", &l.duration_ms);
	ck_get_u64(m, "bytes", &l.bytes);
	ck_get_u64(m, "rows", &l.rows);
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

			if (!ck_parse_uid(json_string_value(json_object_get(p,
					"uid")), &uid) ||
			    !ck_get_u64(p, "part", &part))
				continue;
			e = ck_find_uid(ck->s, uid);
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

void ck_do_commit(struct embkvd_ckpt *ck, struct ck_req *r)
{
	json_t *m = json_object_get(r->in, "manifest");
	uint64_t id, mid;

	if (!ck_get_u64(r->in, "id", &id) || !id || !json_is_object(m) ||
	    !ck_get_u64(m, "id", &mid) || mid != id ||
	    !json_is_array(json_object_get(m, "tables"))) {
		ck_fail(r, -EINVAL, "CKPT_COMMIT needs id and a manifest of that "
		     "id with tables");
		return;
	}
	if (write_manifest(ck, id, m, r))
		return;
	mark_committed(ck, id, m);
	ck_set_last(ck, m);
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
		return ck_fail(r, -ENOMEM, "no memory");
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
			return ck_fail(r, EMBKV_ELIMIT, "table %s partition %u: "
				    "more than 64 checkpoints in its chain; "
				    "take a full checkpoint", name, part);
		}
		m = ck_manifest_read(ck, cur, r);
		if (!m) {
			if (cur != id)
				ck_fail(r, r->status, "broken chain: checkpoint %"
				     PRIu64 ", the base of table %s partition "
				     "%u, is missing or incomplete", cur, name,
				     part);
			chain_close(rv);
			return r->status;
		}
		if (!ck_manifest_find(m, name, part, &tab, &ent)) {
			ck_fail(r, -ENOENT, "checkpoint %" PRIu64 " has no %s %s "
			     "partition %u", cur, tab ? "" : "table", name,
			     part);
			json_decref(m);
			chain_close(rv);
			return r->status;
		}
		file = json_string_value(json_object_get(ent, "file"));
		if (!file || !ck_file_name_ok(file) ||
		    !ck_parse_uid(json_string_value(json_object_get(ent, "uid")),
			       &uid) ||
		    !ck_get_u64(ent, "base", &base) ||
		    !ck_get_u64(ent, "bytes", &bytes) ||
		    !ck_get_u64(ent, "rows", &rows) ||
		    embkv_hex_decode(json_string_value(json_object_get(ent,
			"sum")) ? json_string_value(json_object_get(ent,
			"sum")) : "", sumb, 8) != 8 ||
		    base >= cur) {
			ck_fail(r, EMBKV_EPROTO, "checkpoint %" PRIu64 ": bad "
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
			return ck_fail(r, -ENAMETOOLONG, "path too long");
		}
		json_decref(m);
		fd = open(rv->paths[rv->n], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			chain_close(rv);
			return ck_fail(r, rc, "%s: %s", rv->paths[rv->n],
				    strerror(-rc));
		}
		rv->fds[rv->n] = fd;
		rv->uids[rv->n] = uid;
		rv->ids[rv->n] = cur;
		rv->n++;
		if (fstat(fd, &st) || (uint64_t)st.st_size != bytes) {
			chain_close(rv);
			return ck_fail(r, EMBKV_EPROTO, "%s: %lld bytes, the "
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
			return ck_fail(r, rc, "%s: %s", rv->paths[rv->n - 1],
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

int ck_load_part(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		     uint32_t part, uint64_t id, enum load_mode mode,
		     struct ck_req *r, uint64_t *rows, uint64_t *bytes,
		     uint32_t *files)
{
	struct chain *c = calloc(1, sizeof(*c));
	struct ck_ojob o;
	int rc;

	if (!c)
		return ck_fail(r, -ENOMEM, "no memory");
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
	o.fn = ck_oj_load;
	o.t = e->table;
	o.part = part;
	o.fds = c->fds;
	o.uids = c->uids;
	o.nfiles = c->n;
	o.last_id = id;
	o.serve = embkv_part_state(&e->table->parts[part]) ==
		  EMBKV_PART_UNLOADED;
	rc = ck_owner_run(ck, e, &o);
	if (rc)
		ck_fail(r, rc, "%s: %s (the partition is left empty)",
		     c->paths[o.bad_file < c->n ? o.bad_file : 0],
		     o.why[0] ? o.why : embkv_strerror(rc));
	*rows = o.rows;
	*bytes = c->bytes;
	*files = c->n;
	chain_close(c);
	free(c);
	return rc;
}

void ck_do_load(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkv_catalog_entry *e;
	uint64_t id, part, uid, rows = 0, bytes = 0, t0 = ck_now_ms();
	uint32_t files = 0;
	enum load_mode mode;

	if (!ck_get_u64(r->in, "id", &id) || !id ||
	    !ck_get_u64(r->in, "part", &part) || part > UINT32_MAX ||
	    !ck_parse_uid(json_string_value(json_object_get(r->in, "uid")),
		       &uid)) {
		ck_fail(r, -EINVAL, "CKPT_LOAD needs id, uid and part");
		return;
	}
	e = ck_find_uid(ck->s, uid);
	if (!e) {
		ck_fail(r, EMBKV_ENOTABLE, "no table with uid %016" PRIx64
		     " here", uid);
		return;
	}
	if (e->replica) {
		/* its rows change only through its follower, which would
		 * not know of the load and keep serving the file's rows */
		ck_fail(r, EMBKV_EREADONLY, "table %s is a read-only replica "
			"on this server: restore its primary instead",
			e->table->attr.name);
		embkv_catalog_entry_put(e);
		return;
	}
	mode = json_is_true(json_object_get(r->in, "check")) ? LOAD_CHECK
	       : json_is_true(json_object_get(r->in, "checked")) ? LOAD_CHECKED
								: LOAD_FULL;
	if (!ck_part_check(ck->s, e, (uint32_t)part, false, r) &&
	    !ck_load_part(ck, e, (uint32_t)part, id, mode, r, &rows, &bytes,
		       &files)) {
		r->out = json_pack("{s:I, s:I, s:I, s:I}",
				   "rows", (json_int_t)rows,
				   "bytes", (json_int_t)bytes,
				   "files", (json_int_t)files,
				   "ms", (json_int_t)(ck_now_ms() - t0));
		if (!r->out)
			ck_fail(r, -ENOMEM, "no memory for the reply");
	}
	embkv_catalog_entry_put(e);
}

/* ---- CKPT_LIST, CKPT_GET, CKPT_VERIFY, CKPT_DELETE -------------------------------- */

void ck_do_list(struct embkvd_ckpt *ck, struct ck_req *r)
{
	uint64_t *ids;
	bool *complete;
	uint32_t n;
	json_t *list = json_array(), *inc = json_array();
	int rc = ck_list_ids(ck, &ids, &complete, &n);

	if (rc || !list || !inc) {
		ck_fail(r, rc ? rc : -ENOMEM, "cannot list %s: %s", ck->root,
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
		m = ck_manifest_read(ck, ids[i], &tmp);
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
		ck_fail(r, -ENOMEM, "no memory for the reply");
out:
	json_decref(list);
	json_decref(inc);
	free(ids);
	free(complete);
}

void ck_do_get(struct embkvd_ckpt *ck, struct ck_req *r)
{
	uint64_t id;

	if (!ck_get_u64(r->in, "id", &id) || !id) {
		ck_fail(r, -EINVAL, "CKPT_GET needs an id");
		return;
	}
	r->out = ck_manifest_read(ck, id, r);
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

	if (!file || !ck_file_name_ok(file) || !sums ||
	    embkv_hex_decode(sums, sb, 8) != 8 ||
	    !ck_get_u64(p, "bytes", &bytes) || !ck_get_u64(p, "rows", &rows) ||
	    !ck_get_u64(p, "part", &part) ||
	    !ck_parse_uid(json_string_value(json_object_get(p, "uid")), &uid))
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

void ck_do_verify(struct embkvd_ckpt *ck, struct ck_req *r)
{
	uint64_t id;
	json_t *m, *out, *t, *p;
	size_t i, j;

	if (!ck_get_u64(r->in, "id", &id) || !id) {
		ck_fail(r, -EINVAL, "CKPT_VERIFY needs an id");
		return;
	}
	m = ck_manifest_read(ck, id, r);
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
		ck_fail(r, -ENOMEM, "no memory for the reply");
}

/* True when a complete checkpoint other than id has an increment based on
 * id (then deleting id breaks its chain). */
static bool is_base(struct embkvd_ckpt *ck, uint64_t id, uint64_t *user)
{
	uint64_t *ids;
	bool *complete, found = false;
	uint32_t n;

	if (ck_list_ids(ck, &ids, &complete, &n))
		return false;
	for (uint32_t i = 0; i < n && !found; i++) {
		struct ck_req tmp = { 0 };
		json_t *m, *t, *p;
		size_t a, b;

		if (!complete[i] || ids[i] <= id)
			continue;
		m = ck_manifest_read(ck, ids[i], &tmp);
		if (!m)
			continue;
		json_array_foreach(json_object_get(m, "tables"), a, t)
			json_array_foreach(json_object_get(t, "parts"), b, p) {
				uint64_t base;

				if (ck_get_u64(p, "base", &base) && base == id) {
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

void ck_do_delete(struct embkvd_ckpt *ck, struct ck_req *r)
{
	char dir[CK_PATH_MAX], path[CK_PATH_MAX];
	uint64_t id, user = 0;
	bool force = json_is_true(json_object_get(r->in, "force"));
	DIR *d;
	struct dirent *de;
	uint32_t removed = 0;

	if (!ck_get_u64(r->in, "id", &id) || !id) {
		ck_fail(r, -EINVAL, "CKPT_DELETE needs an id");
		return;
	}
	if (ck_path(ck, dir, id, NULL) || ck_path(ck, path, id, CK_MANIFEST)) {
		ck_fail(r, -ENAMETOOLONG, "path too long");
		return;
	}
	if (!force && is_base(ck, id, &user)) {
		ck_fail(r, -EBUSY, "checkpoint %" PRIu64 " is the base of "
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
		(void)ck_fsync_path(dir);
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
		ck_fail(r, -errno, "cannot remove %s: %s", dir, strerror(errno));
		return;
	}
	(void)ck_fsync_path(ck->root);
	embkvd_log("checkpoint %" PRIu64 " deleted (%u files)", id, removed);
	r->out = json_pack("{s:b, s:I}", "found", 1, "files",
			   (json_int_t)removed);
}

