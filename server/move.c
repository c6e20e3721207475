/*
 * Partition moves and recovery, the server side (issue 13; the
 * coordinator is client/move.c). Requests run on the checkpoint thread
 * (server/ckpt_priv.h), like the checkpoints they share the file format
 * with.
 *
 * What: a partition moves from a source to a target member as a stream of
 * checkpoint files that the coordinator relays: MOVE_PREPARE maps the
 * partition on the target (MOVING: refused with EMBKV_ESTALE); MOVE_SNAP
 * has the source's owner copy the partition (full, then deltas of the
 * rows changed since the previous copy) into an in-memory file that
 * MOVE_READ hands out in chunks and MOVE_WRITE appends on the target;
 * MOVE_APPLY verifies and applies it there on the partition's owner.
 * MOVE_FREEZE makes the source refuse the partition (MOVING), so the last
 * delta holds every push it acknowledged; MOVE_COMMIT flips the table's
 * map in etcd by compare-and-swap (epoch + 1); every member's cluster
 * thread then applies it (server/cluster.c: the target serves, the source
 * frees the partition). MOVE_ABORT undoes either side. RECOVER gives the
 * partitions of members whose lease expired to the live ones, which load
 * them from the newest checkpoint (server/ckpt.c's restore pass).
 *
 * Why through files: the snapshot, the deltas (dirty rows and tombstones)
 * and their verification are the checkpoint code (server/ckpt_file.c), so
 * a move is checked exactly as a restore is, and no second format exists.
 *
 * Invariants:
 * - No acknowledged push is lost or applied twice: a push is applied by
 *   the source before the freeze (and so is in the last delta, copied by
 *   an owner job queued after every batch that found the partition
 *   serving: the batch submission happens inside the RCU read section,
 *   and the freeze waits a grace period), or refused with EMBKV_ESTALE
 *   (not applied) and retried by the client on the new map.
 * - A one-sided reader never reads a partition that left: the source
 *   deregisters the partition's memory at the freeze (before the flip),
 *   and re-registers it only on abort.
 * - The map changes only by a compare-and-swap on the table's record
 *   that checks the epoch and the source the coordinator saw.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "server/ckpt_priv.h"
#include "server/cluster_priv.h"

#define MV_CHUNK_MAX (16u << 20)   /* bytes of one MOVE_READ reply */
/* A move whose coordinator sent nothing for this long may be taken over
 * by another (the same partition) and is undone by the poll. */
#define MV_IDLE_MS 60000u

/* ---- the registry (ck->lock) ------------------------------------------- */

static struct mv_part *mv_find(struct embkvd_ckpt *ck, uint64_t uid,
			       uint32_t part, bool incoming)
{
	for (uint32_t i = 0; i < ck->nmv; i++)
		if (ck->mv[i].uid == uid && ck->mv[i].part == part &&
		    ck->mv[i].incoming == incoming)
			return &ck->mv[i];
	return NULL;
}

static void mv_drop_locked(struct embkvd_ckpt *ck, struct mv_part *m)
{
	if (m->fd >= 0)
		close(m->fd);
	*m = ck->mv[--ck->nmv];
}

static void mv_drop(struct embkvd_ckpt *ck, uint64_t uid, uint32_t part,
		    bool incoming)
{
	struct mv_part *m;

	pthread_mutex_lock(&ck->lock);
	m = mv_find(ck, uid, part, incoming);
	if (m)
		mv_drop_locked(ck, m);
	pthread_mutex_unlock(&ck->lock);
}

/* A fresh entry (an old one of the same key is replaced); NULL: -ENOMEM
 * or memfd_create's error in *err. */
static struct mv_part *mv_add(struct embkvd_ckpt *ck, uint64_t uid,
			      uint32_t part, bool incoming, int *err)
{
	struct mv_part *m, *v;
	int fd = memfd_create("embkv-move", MFD_CLOEXEC);

	if (fd < 0) {
		*err = -errno;
		return NULL;
	}
	pthread_mutex_lock(&ck->lock);
	m = mv_find(ck, uid, part, incoming);
	if (m) {
		close(m->fd);
	} else {
		v = realloc(ck->mv, (ck->nmv + 1) * sizeof(*v));
		if (!v) {
			pthread_mutex_unlock(&ck->lock);
			close(fd);
			*err = -ENOMEM;
			return NULL;
		}
		ck->mv = v;
		m = &ck->mv[ck->nmv++];
	}
	*m = (struct mv_part){ .uid = uid, .part = part, .incoming = incoming,
			       .fd = fd };
	pthread_mutex_unlock(&ck->lock);
	return m;
}

int embkvd_ckpt_incoming(struct embkvd_ckpt *ck, uint64_t uid, uint32_t part)
{
	struct mv_part *m;
	int in = EMBKVD_MOVE_NONE;

	if (!ck)
		return in;
	pthread_mutex_lock(&ck->lock);
	m = mv_find(ck, uid, part, true);
	if (m)
		in = m->final ? EMBKVD_MOVE_FINAL : EMBKVD_MOVE_PARTIAL;
	pthread_mutex_unlock(&ck->lock);
	return in;
}

void embkvd_ckpt_incoming_done(struct embkvd_ckpt *ck, uint64_t uid,
			       uint32_t part)
{
	if (ck)
		mv_drop(ck, uid, part, true);
}

void ck_moves_free(struct embkvd_ckpt *ck)
{
	for (uint32_t i = 0; i < ck->nmv; i++)
		if (ck->mv[i].fd >= 0)
			close(ck->mv[i].fd);
	free(ck->mv);
	ck->mv = NULL;
	ck->nmv = 0;
	free(ck->pre_val);
	ck->pre_val = NULL;
}

/* ---- requests ------------------------------------------------------------ */

/* uid and part of a request, and the table; NULL with r failed. */
static struct embkv_catalog_entry *req_table(struct embkvd_ckpt *ck,
					    struct ck_req *r, uint64_t *uid,
					    uint32_t *part)
{
	struct embkv_catalog_entry *e;
	uint64_t p;

	if (!ck_parse_uid(json_string_value(json_object_get(r->in, "uid")),
			  uid) ||
	    !ck_get_u64(r->in, "part", &p) || p > UINT32_MAX) {
		ck_fail(r, -EINVAL, "%s needs uid and part",
			embkv_wire_op_name(r->op));
		return NULL;
	}
	e = ck_find_uid(ck->s, *uid);
	if (!e) {
		ck_fail(r, EMBKV_ENOTABLE, "no table with uid %016" PRIx64
			" here", *uid);
		return NULL;
	}
	if (p >= e->table->nparts) {
		ck_fail(r, -EINVAL, "table %s has %u partitions",
			e->table->attr.name, e->table->nparts);
		embkv_catalog_entry_put(e);
		return NULL;
	}
	*part = (uint32_t)p;
	return e;
}

static bool mine(struct embkvd *s, struct embkv_catalog_entry *e,
		 uint32_t part)
{
	bool m;

	rcu_read_lock();
	m = embkvd_map_mine(embkvd_table_map(s, e), part);
	rcu_read_unlock();
	return m;
}

/*
 * The move's entry of (uid, part) on this side, claimed for the request's
 * move id: 0 with *m set (ck->lock held: release with mv_release), or r
 * failed. create: a new entry may be made, taking over one whose move is
 * silent for MV_IDLE_MS; else the entry must exist and be this move's.
 */
static int mv_claim(struct embkvd_ckpt *ck, struct ck_req *r, uint64_t uid,
		    uint32_t part, bool incoming, bool create,
		    struct mv_part **out)
{
	uint64_t id, now = ck_now_ms();
	struct mv_part *m;
	int err = 0;

	if (!ck_get_u64(r->in, "move", &id) || !id)
		return ck_fail(r, -EINVAL, "%s needs the move's id",
			       embkv_wire_op_name(r->op));
	pthread_mutex_lock(&ck->lock);
	m = mv_find(ck, uid, part, incoming);
	if (m && m->move_id != id && now - m->touched_ms < MV_IDLE_MS) {
		pthread_mutex_unlock(&ck->lock);
		return ck_fail(r, -EBUSY, "partition %u is being moved by "
			       "another move (idle for %" PRIu64 " ms)", part,
			       now - m->touched_ms);
	}
	if (!m || m->move_id != id) {
		if (!create) {
			pthread_mutex_unlock(&ck->lock);
			return ck_fail(r, -ENOENT, "no move %" PRIu64 " of "
				       "partition %u here", id, part);
		}
		pthread_mutex_unlock(&ck->lock);
		m = mv_add(ck, uid, part, incoming, &err);
		if (!m)
			return ck_fail(r, err, "no memory for a move");
		pthread_mutex_lock(&ck->lock);
		m = mv_find(ck, uid, part, incoming);
		if (!m) {
			pthread_mutex_unlock(&ck->lock);
			return ck_fail(r, -ENOENT, "the move was dropped");
		}
		m->move_id = id;
	}
	m->touched_ms = now;
	*out = m;
	return 0;
}

static void mv_release(struct embkvd_ckpt *ck)
{
	pthread_mutex_unlock(&ck->lock);
}

/* Target: map the partition, MOVING, ready for files. */
static void do_prepare(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkv_catalog_entry *e;
	struct embkv_table *t;
	struct mv_part *m;
	uint64_t uid, id = 0;
	uint32_t part;
	bool retry = false;
	int rc = 0;

	e = req_table(ck, r, &uid, &part);
	if (!e)
		return;
	t = e->table;
	if (mine(ck->s, e, part)) {
		ck_fail(r, -EEXIST, "table %s partition %u is on this server "
			"already", t->attr.name, part);
		goto out;
	}
	ck_get_u64(r->in, "move", &id);
	pthread_mutex_lock(&ck->lock);
	m = mv_find(ck, uid, part, true);
	retry = m != NULL;
	pthread_mutex_unlock(&ck->lock);
	/* registered first: the cluster thread leaves it alone from here */
	if (mv_claim(ck, r, uid, part, true, true, &m))
		goto out;
	m->final = false;
	m->mid = 0;
	snprintf(m->name, sizeof(m->name), "%s", t->attr.name);
	mv_release(ck);
	if (retry && embkv_part_state(&t->parts[part]) != EMBKV_PART_ABSENT)
		/* a move taken over or retried: start over */
		embkv_catalog_part_remove(ck->s->cat, e, part);
	if (embkv_part_state(&t->parts[part]) != EMBKV_PART_ABSENT) {
		ck_fail(r, -EBUSY, "table %s partition %u is still held here "
			"(leaving)", t->attr.name, part);
		mv_drop(ck, uid, part, true);
		goto out;
	}
	rc = embkv_catalog_part_add(ck->s->cat, e, part, EMBKV_PART_MOVING);
	if (rc) {
		ck_fail(r, rc, "table %s partition %u: cannot hold it here: %s",
			t->attr.name, part, rc == -ENOMEM ?
			"over --memory-limit or out of memory" :
			embkv_strerror(rc));
		mv_drop(ck, uid, part, true);
		goto out;
	}
	r->out = json_pack("{s:I}", "member", (json_int_t)ck->member_id);
out:
	embkv_catalog_entry_put(e);
}

static int oj_move_snap(struct ck_ojob *o)
{
	int rc;

	if (!o->t->parts[o->part].loaded)   /* left meanwhile */
		return EMBKV_ESTALE;
	rc = embkv_ckpt_snap(o->t, o->part, o->id, o->base, &o->snap);

	/* the next copy may be a delta on this one */
	if (!rc)
		embkv_part_ckpt_committed(o->t, o->part, o->id);
	return rc;
}

/* Source: copy the partition (full, or changes since base) into memory. */
static void do_snap(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkv_catalog_entry *e;
	struct embkv_ckpt_file_info info;
	struct ck_ojob o = { 0 };
	struct mv_part *m;
	uint64_t uid, mid, base;
	uint32_t part;
	int rc, st, fd;

	if (!ck_get_u64(r->in, "mid", &mid) || !mid ||
	    !ck_get_u64(r->in, "base", &base)) {
		ck_fail(r, -EINVAL, "MOVE_SNAP needs mid and base");
		return;
	}
	e = req_table(ck, r, &uid, &part);
	if (!e)
		return;
	st = embkv_part_state(&e->table->parts[part]);
	if (!mine(ck->s, e, part) ||
	    (st != EMBKV_PART_SERVING && st != EMBKV_PART_MOVING)) {
		ck_fail(r, EMBKV_ESTALE, "table %s partition %u is not served "
			"here", e->table->attr.name, part);
		goto out;
	}
	/* this move's entry (a silent one of another move is taken over) */
	if (mv_claim(ck, r, uid, part, false, true, &m))
		goto out;
	if (st == EMBKV_PART_MOVING && !m->frozen) {
		mv_release(ck);
		ck_fail(r, -EBUSY, "table %s partition %u is frozen by another "
			"move", e->table->attr.name, part);
		goto out;
	}
	snprintf(m->name, sizeof(m->name), "%s", e->table->attr.name);
	mv_release(ck);
	o.fn = oj_move_snap;
	o.t = e->table;
	o.part = part;
	o.id = mid;
	o.base = base;
	rc = ck_owner_run(ck, e, &o);
	if (rc) {
		ck_fail(r, rc, "table %s partition %u: cannot copy: %s",
			e->table->attr.name, part, embkv_strerror(rc));
		goto out;
	}
	pthread_mutex_lock(&ck->lock);
	m = mv_find(ck, uid, part, false);
	fd = m ? dup(m->fd) : -1;
	pthread_mutex_unlock(&ck->lock);
	/* the file is reused from copy to copy (the writer appends at the
	 * offset, shared with the entry's fd) */
	if (fd < 0 || ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET)) {
		if (fd >= 0)
			close(fd);
		ck_fail(r, -ENOENT, "the move was dropped meanwhile");
		goto free;
	}
	rc = embkv_ckpt_snap_write(o.snap, uid, fd, &info);
	close(fd);
	if (rc) {
		ck_fail(r, rc, "table %s partition %u: cannot write the copy: "
			"%s", e->table->attr.name, part, embkv_strerror(rc));
		goto free;
	}
	pthread_mutex_lock(&ck->lock);
	m = mv_find(ck, uid, part, false);
	if (m) {
		m->size = info.bytes;
		m->mid = mid;
	}
	pthread_mutex_unlock(&ck->lock);
	r->out = json_pack("{s:I, s:I, s:I, s:I, s:s, s:I}",
			   "bytes", (json_int_t)info.bytes,
			   "rows", (json_int_t)info.rows,
			   "tombstones", (json_int_t)info.tombstones,
			   "base", (json_int_t)info.base_id,
			   "kind", info.base_id ? "delta" : "full",
			   "member", (json_int_t)ck->member_id);
free:
	embkv_ckpt_snap_free(o.snap);
out:
	embkv_catalog_entry_put(e);
}

/* Source: a chunk of the last copy. */
static void do_read(struct embkvd_ckpt *ck, struct ck_req *r)
{
	uint64_t uid, off, max, mid, part, size = 0;
	struct mv_part *m;
	int fd = -1;
	ssize_t got;

	if (!ck_parse_uid(json_string_value(json_object_get(r->in, "uid")),
			  &uid) ||
	    !ck_get_u64(r->in, "part", &part) || part > UINT32_MAX ||
	    !ck_get_u64(r->in, "mid", &mid) ||
	    !ck_get_u64(r->in, "offset", &off) ||
	    !ck_get_u64(r->in, "max", &max) || !max) {
		ck_fail(r, -EINVAL, "MOVE_READ needs uid, part, mid, offset "
			"and max");
		return;
	}
	if (max > MV_CHUNK_MAX)
		max = MV_CHUNK_MAX;
	if (mv_claim(ck, r, uid, (uint32_t)part, false, false, &m))
		return;
	if (m->mid == mid) {
		fd = dup(m->fd);
		size = m->size;
	}
	mv_release(ck);
	if (fd < 0) {
		ck_fail(r, -ENOENT, "no copy %" PRIu64 " of partition %" PRIu64
			" here", mid, part);
		return;
	}
	if (off > size) {
		ck_fail(r, -EINVAL, "offset %" PRIu64 " past the %" PRIu64
			"-byte copy", off, size);
		goto out;
	}
	if (max > size - off)
		max = size - off;
	r->raw = malloc(max ? max : 1);
	if (!r->raw) {
		ck_fail(r, -ENOMEM, "no memory for a chunk");
		goto out;
	}
	for (r->raw_len = 0; r->raw_len < max; r->raw_len += (size_t)got) {
		got = pread(fd, r->raw + r->raw_len, max - r->raw_len,
			    (off_t)(off + r->raw_len));
		if (got <= 0) {
			ck_fail(r, got < 0 ? -errno : -EIO, "cannot read the "
				"copy");
			goto out;
		}
	}
	r->out = json_pack("{s:I, s:I}", "size", (json_int_t)size, "n",
			   (json_int_t)r->raw_len);
out:
	close(fd);
}

/* Target: append a chunk. */
static void do_write(struct embkvd_ckpt *ck, struct ck_req *r)
{
	uint64_t uid, part, off;
	struct mv_part *m;
	int rc = 0;

	if (!ck_parse_uid(json_string_value(json_object_get(r->in, "uid")),
			  &uid) ||
	    !ck_get_u64(r->in, "part", &part) || part > UINT32_MAX ||
	    !ck_get_u64(r->in, "offset", &off)) {
		ck_fail(r, -EINVAL, "MOVE_WRITE needs uid, part and offset");
		return;
	}
	if (mv_claim(ck, r, uid, (uint32_t)part, true, false, &m))
		return;
	if (off != m->size)
		rc = ck_fail(r, -EINVAL, "offset %" PRIu64 ", expected %"
			     PRIu64, off, m->size);
	for (size_t done = 0; !rc && done < r->raw_len;) {
		ssize_t w = pwrite(m->fd, r->raw + done, r->raw_len - done,
				   (off_t)(m->size + done));

		if (w < 0)
			rc = ck_fail(r, -errno, "cannot store a chunk: %s",
				     strerror(errno));
		else if (w == 0)
			rc = ck_fail(r, -EIO, "cannot store a chunk");
		else
			done += (size_t)w;
	}
	if (!rc) {
		m->size += r->raw_len;
		r->out = json_pack("{s:I}", "size", (json_int_t)m->size);
	}
	mv_release(ck);
}

static int oj_move_apply(struct ck_ojob *o)
{
	struct embkv_ckpt_file_info info;
	int rc;

	if (!o->t->parts[o->part].loaded)   /* aborted meanwhile */
		return EMBKV_ESTALE;
	if (!o->base)    /* a full file replaces what came before */
		embkv_part_clear(o->t, o->part);
	rc = embkv_ckpt_apply_part(o->t, o->part, o->uids[0], o->fds[0],
				   &info, o->why, sizeof(o->why));
	if (rc)
		embkv_part_clear(o->t, o->part);
	o->rows = o->t->parts[o->part].rows;
	return rc;
}

/* Target: verify and apply what was received, then start a new file.
 * "final": the copy made after the source's freeze (the partition may
 * serve once the map gives it here). */
static void do_apply(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkv_catalog_entry *e;
	struct embkv_ckpt_file_info info;
	struct ck_ojob o = { 0 };
	struct mv_part *m;
	char why[256] = "";
	uint64_t uid, size = 0, applied = 0;
	uint32_t part;
	bool final = json_is_true(json_object_get(r->in, "final"));
	int fd = -1, rc;

	e = req_table(ck, r, &uid, &part);
	if (!e)
		return;
	if (mv_claim(ck, r, uid, part, true, false, &m))
		goto out;
	fd = dup(m->fd);
	size = m->size;
	applied = m->mid;
	mv_release(ck);
	if (fd < 0) {
		ck_fail(r, -errno, "no memory for a move");
		goto out;
	}
	rc = embkv_ckpt_verify_part(e->table, part, uid, fd, &info, why,
				    sizeof(why));
	if (!rc && info.bytes != size)
		rc = EMBKV_EPROTO;
	if (!rc && info.base_id && info.base_id != applied) {
		rc = EMBKV_EPROTO;
		snprintf(why, sizeof(why), "a delta on copy %" PRIu64 ", but "
			 "the last copy applied is %" PRIu64, info.base_id,
			 applied);
	}
	if (rc) {
		ck_fail(r, rc, "table %s partition %u: the copy received is "
			"refused: %s", e->table->attr.name, part,
			why[0] ? why : embkv_strerror(rc));
		goto close;
	}
	o.fn = oj_move_apply;
	o.t = e->table;
	o.part = part;
	o.base = info.base_id;
	o.fds = &fd;
	o.uids = &uid;
	o.nfiles = 1;
	rc = ck_owner_run(ck, e, &o);
	pthread_mutex_lock(&ck->lock);
	m = mv_find(ck, uid, part, true);
	if (m && !ftruncate(m->fd, 0)) {
		/* the next file starts empty; after a failure the next
		 * copy must be a full one */
		m->size = 0;
		m->mid = rc ? 0 : info.ckpt_id;
		m->final = !rc && final;
	}
	pthread_mutex_unlock(&ck->lock);
	if (rc) {
		ck_fail(r, rc, "table %s partition %u: cannot apply the copy: "
			"%s (the partition is empty; move it again)",
			e->table->attr.name, part,
			o.why[0] ? o.why : embkv_strerror(rc));
		goto close;
	}
	r->out = json_pack("{s:I, s:I}", "rows", (json_int_t)o.rows,
			   "applied", (json_int_t)info.rows);
close:
	close(fd);
out:
	embkv_catalog_entry_put(e);
}

/* Reads table name's record into ck->pre_* (cluster mode; on any error
 * there is none, and the commit reads it itself). */
static void record_prefetch(struct embkvd_ckpt *ck, const char *name)
{
	struct embkv_etcd_kvs kvs;
	char key[512];

	free(ck->pre_val);
	ck->pre_val = NULL;
	if (!ck->etcd)
		return;
	snprintf(key, sizeof(key), "%stables/%s", ck->prefix, name);
	if (embkv_etcd_get(ck->etcd, key, false, &kvs))
		return;
	if (kvs.n == 1) {
		ck->pre_val = malloc(kvs.kv[0].value_len + 1);
		if (ck->pre_val) {
			memcpy(ck->pre_val, kvs.kv[0].value,
			       kvs.kv[0].value_len + 1);
			ck->pre_len = kvs.kv[0].value_len;
			ck->pre_rev = kvs.kv[0].mod_revision;
			snprintf(ck->pre_name, sizeof(ck->pre_name), "%s",
				 name);
		}
	}
	embkv_etcd_kvs_free(&kvs);
}

/* Source: stop serving the partition; from here its last copy is final. */
static void do_freeze(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkv_catalog_entry *e;
	struct mv_part *m;
	uint64_t uid;
	uint32_t part;
	int rc;

	e = req_table(ck, r, &uid, &part);
	if (!e)
		return;
	if (!mine(ck->s, e, part) ||
	    embkv_part_state(&e->table->parts[part]) != EMBKV_PART_SERVING) {
		ck_fail(r, EMBKV_ESTALE, "table %s partition %u is not served "
			"here", e->table->attr.name, part);
		goto out;
	}
	if (mv_claim(ck, r, uid, part, false, false, &m))
		goto out;
	m->frozen = true;
	mv_release(ck);
	/* the commit's read of the map, done before pushes wait */
	record_prefetch(ck, e->table->attr.name);
	rc = embkv_part_set_state(e->table, part, EMBKV_PART_MOVING);
	if (rc) {
		ck_fail(r, rc, "cannot freeze table %s partition %u",
			e->table->attr.name, part);
		goto out;
	}
	/* one-sided readers lose it now (the flip follows) */
	if (e->hooks.part_removed)
		e->hooks.part_removed(e->hooks.ctx, e, part);
	/* every batch that found it serving is in its owner's queue now */
	synchronize_rcu();
out:
	embkv_catalog_entry_put(e);
}

static int record_get(struct embkvd_ckpt *ck, const char *name,
		      struct ctable *t, int64_t *rev, struct ck_req *r);

/* Whether etcd's map gives (name, part) to member id: 1 or 0, -1 when
 * etcd cannot tell (then nothing is undone); without etcd (no move can
 * commit) dflt. */
static int placed_on(struct embkvd_ckpt *ck, const char *name, uint32_t part,
		     uint32_t id, int dflt)
{
	struct ck_req tmp = { 0 };
	struct ctable t;
	int64_t rev;
	int yes;

	if (!ck->etcd)
		return dflt;
	if (record_get(ck, name, &t, &rev, &tmp))
		return tmp.status == EMBKV_ENOTABLE ? 0 : -1;
	yes = part < t.attr.partitions && t.members[t.parts[part]] == id;
	cl_table_free(&t);
	return yes;
}

/* Source: serve the partition again after a move that did not happen. */
static void unfreeze(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		     uint32_t part)
{
	if (!mine(ck->s, e, part) ||
	    embkv_part_state(&e->table->parts[part]) != EMBKV_PART_MOVING)
		return;
	if (e->hooks.part_added &&
	    e->hooks.part_added(e->hooks.ctx, e, part))
		embkvd_log("table %s partition %u: cannot register it for RDMA "
			   "again; pulls take the RPC path",
			   e->table->attr.name, part);
	embkv_part_set_state(e->table, part, EMBKV_PART_SERVING);
	embkvd_log("table %s partition %u: move undone, served here again",
		   e->table->attr.name, part);
}

/* Source or target: undo, unless the move committed (then it refuses:
 * the coordinator lost the commit's answer, the move is done). */
static void do_abort(struct embkvd_ckpt *ck, struct ck_req *r)
{
	const char *name = json_string_value(json_object_get(r->in, "name"));
	struct embkv_catalog_entry *e;
	struct mv_part *m;
	uint64_t uid, to = UINT64_MAX;
	uint32_t part;

	e = req_table(ck, r, &uid, &part);
	if (!e)
		return;
	ck_get_u64(r->in, "to", &to);
	if (name && to <= UINT32_MAX) {
		int c = placed_on(ck, name, part, (uint32_t)to, 0);

		if (c) {
			ck_fail(r, EMBKV_ECLUSTER, c > 0 ?
				"table %s partition %u: the move committed "
				"already" : "table %s partition %u: etcd "
				"cannot tell whether the move committed; "
				"nothing undone", name, part);
			goto out;
		}
	}
	if (!mv_claim(ck, r, uid, part, true, false, &m)) {
		mv_release(ck);
		if (!mine(ck->s, e, part))
			embkv_catalog_part_remove(ck->s->cat, e, part);
		mv_drop(ck, uid, part, true);
	}
	r->status = 0;
	r->msg[0] = '\0';
	if (!mv_claim(ck, r, uid, part, false, false, &m)) {
		mv_release(ck);
		mv_drop(ck, uid, part, false);
		unfreeze(ck, e, part);
	}
	r->status = 0;
	r->msg[0] = '\0';
out:
	embkv_catalog_entry_put(e);
}

/* The poll: a move whose coordinator is silent for MV_IDLE_MS is undone
 * on this side (the source serves again unless etcd says it committed;
 * the target frees its copy unless the map gave it here). */
void ck_moves_expire(struct embkvd_ckpt *ck)
{
	uint64_t now = ck_now_ms();

	for (;;) {
		struct mv_part old = { .fd = -1 };
		struct embkv_catalog_entry *e;
		bool found = false;

		pthread_mutex_lock(&ck->lock);
		for (uint32_t i = 0; i < ck->nmv && !found; i++)
			if (now - ck->mv[i].touched_ms >= MV_IDLE_MS) {
				old = ck->mv[i];
				ck->mv[i].fd = -1;
				mv_drop_locked(ck, &ck->mv[i]);
				found = true;
			}
		pthread_mutex_unlock(&ck->lock);
		if (!found)
			return;
		if (old.fd >= 0)
			close(old.fd);
		e = ck_find_uid(ck->s, old.uid);
		if (!e)
			continue;
		if (old.incoming) {
			if (!mine(ck->s, e, old.part) &&
			    embkv_part_state(&e->table->parts[old.part]) ==
				    EMBKV_PART_MOVING) {
				embkv_catalog_part_remove(ck->s->cat, e,
							  old.part);
				embkvd_log("table %s partition %u: a move here "
					   "went silent; its copy freed",
					   e->table->attr.name, old.part);
			}
		} else if (old.frozen &&
			   placed_on(ck, old.name, old.part, ck->member_id,
				     1) > 0) {
			/* the flip never came: serve again */
			unfreeze(ck, e, old.part);
		}
		embkv_catalog_entry_put(e);
	}
}

/* ---- the map in etcd ------------------------------------------------------ */

/* Reads table name's record (and its mod revision). */
static int record_get(struct embkvd_ckpt *ck, const char *name,
		      struct ctable *t, int64_t *rev, struct ck_req *r)
{
	struct embkv_etcd_kvs kvs;
	char key[512];
	int rc;

	snprintf(key, sizeof(key), "%stables/%s", ck->prefix, name);
	rc = embkv_etcd_get(ck->etcd, key, false, &kvs);
	if (rc)
		return ck_fail(r, rc, "etcd: %s", embkv_strerror(rc));
	if (!kvs.n) {
		embkv_etcd_kvs_free(&kvs);
		return ck_fail(r, EMBKV_ENOTABLE, "no table %s in the cluster",
			       name);
	}
	rc = cl_table_parse(name, kvs.kv[0].value, kvs.kv[0].value_len, t);
	*rev = kvs.kv[0].mod_revision;
	embkv_etcd_kvs_free(&kvs);
	if (rc)
		return ck_fail(r, rc, "table %s: unreadable record", name);
	return 0;
}

/* Puts t if its record is still at rev: 0, or EMBKV_ECLUSTER when it
 * changed meanwhile. */
static int record_cas(struct embkvd_ckpt *ck, const struct ctable *t,
		      int64_t rev, struct ck_req *r)
{
	char key[512], *val = cl_table_json(t);
	struct embkv_etcd_cmp cmp = { .target = EMBKV_ETCD_MOD,
				      .result = EMBKV_ETCD_EQUAL,
				      .number = rev };
	struct embkv_etcd_op put = { .type = EMBKV_ETCD_OP_PUT };
	struct embkv_etcd_txn txn = { .cmp = &cmp, .ncmp = 1,
				      .success = &put, .nsuccess = 1 };
	bool ok = false;
	int rc;

	if (!val)
		return ck_fail(r, -ENOMEM, "no memory");
	snprintf(key, sizeof(key), "%stables/%s", ck->prefix, t->attr.name);
	cmp.key = key;
	put.key = key;
	put.value = val;
	put.value_len = strlen(val);
	rc = embkv_etcd_txn(ck->etcd, &txn, &ok, NULL);
	free(val);
	if (rc)
		return ck_fail(r, rc, "etcd: %s", embkv_strerror(rc));
	if (!ok)
		return ck_fail(r, EMBKV_ECLUSTER, "table %s: its map changed "
			       "meanwhile", t->attr.name);
	return 0;
}

/* The index of member id in t's members, appended when absent (-1:
 * -ENOMEM). */
static int member_index(struct ctable *t, uint32_t id)
{
	uint32_t *v;

	for (uint32_t i = 0; i < t->nmembers; i++)
		if (t->members[i] == id)
			return (int)i;
	if (t->nmembers >= EMBKV_WIRE_MAX_SERVERS)
		return -1;
	v = realloc(t->members, (t->nmembers + 1) * sizeof(*v));
	if (!v)
		return -1;
	t->members = v;
	v[t->nmembers] = id;
	return (int)t->nmembers++;
}

/* Drops the members that hold no partition of t any more (a drained or
 * lost member), so that the map names only members that serve it. */
static int compact(struct ctable *t)
{
	uint32_t *idx = calloc(t->nmembers, sizeof(*idx)), n = 0;
	uint8_t *used = calloc(t->nmembers, 1);

	if (!idx || !used) {
		free(idx);
		free(used);
		return -ENOMEM;
	}
	for (uint32_t p = 0; p < t->attr.partitions; p++)
		used[t->parts[p]] = 1;
	for (uint32_t i = 0; i < t->nmembers; i++)
		if (used[i]) {
			idx[i] = n;
			t->members[n++] = t->members[i];
		}
	for (uint32_t p = 0; p < t->attr.partitions; p++)
		t->parts[p] = (uint16_t)idx[t->parts[p]];
	t->nmembers = n;
	free(idx);
	free(used);
	return 0;
}

/* Any member with etcd: the flip. */
static void do_commit(struct embkvd_ckpt *ck, struct ck_req *r)
{
	const char *name = json_string_value(json_object_get(r->in, "name"));
	uint64_t uid, part, from, to, epoch;
	struct ctable t;
	int64_t rev = 0;
	bool prefetched = false;
	int idx, rc;

	if (!ck->etcd) {
		ck_fail(r, -EOPNOTSUPP, "moving partitions needs a cluster "
			"(embkvd --etcd)");
		return;
	}
	if (!name || !ck_parse_uid(json_string_value(json_object_get(r->in,
			"uid")), &uid) ||
	    !ck_get_u64(r->in, "part", &part) ||
	    !ck_get_u64(r->in, "from", &from) ||
	    !ck_get_u64(r->in, "to", &to) ||
	    !ck_get_u64(r->in, "epoch", &epoch) ||
	    from > UINT32_MAX || to > UINT32_MAX) {
		ck_fail(r, -EINVAL, "MOVE_COMMIT needs name, uid, part, from, "
			"to and epoch");
		return;
	}
	/* The record read at the freeze when there is one (the CAS below
	 * checks that it is still current; if not, once more from etcd). */
	if (ck->pre_val && !strcmp(ck->pre_name, name) &&
	    !cl_table_parse(name, ck->pre_val, ck->pre_len, &t)) {
		rev = ck->pre_rev;
		prefetched = true;
	}
	free(ck->pre_val);
	ck->pre_val = NULL;
again:
	if (!prefetched && record_get(ck, name, &t, &rev, r))
		return;
	if (prefetched && (t.uid != uid || part >= t.attr.partitions ||
			   t.epoch != epoch ||
			   t.members[t.parts[part]] != from)) {
		cl_table_free(&t);
		prefetched = false;
		goto again;
	}
	if (t.uid != uid || part >= t.attr.partitions || t.epoch != epoch ||
	    t.members[t.parts[part]] != from) {
		ck_fail(r, EMBKV_ECLUSTER, "table %s partition %" PRIu64 ": the "
			"map changed meanwhile (epoch %" PRIu64 ", the move "
			"saw %" PRIu64 ")", name, part, t.epoch, epoch);
		goto out;
	}
	idx = member_index(&t, (uint32_t)to);
	if (idx < 0) {
		ck_fail(r, -ENOMEM, "no memory");
		goto out;
	}
	t.parts[part] = (uint16_t)idx;
	t.epoch++;
	if (compact(&t)) {
		ck_fail(r, -ENOMEM, "no memory");
		goto out;
	}
	rc = record_cas(ck, &t, rev, r);
	if (rc == EMBKV_ECLUSTER && prefetched) {
		/* the record changed since the freeze: read it again */
		r->status = 0;
		r->msg[0] = '\0';
		cl_table_free(&t);
		prefetched = false;
		goto again;
	}
	if (!rc) {
		mv_drop(ck, uid, (uint32_t)part, false);
		r->out = json_pack("{s:I}", "epoch", (json_int_t)t.epoch);
		embkvd_log("table %s partition %" PRIu64 ": moved from member "
			   "%" PRIu64 " to %" PRIu64 " (epoch %" PRIu64 ")",
			   name, part, from, to, t.epoch);
	}
out:
	cl_table_free(&t);
}

/* The live members (leased records), sorted; NULL with r failed. */
static uint32_t *live_members(struct embkvd_ckpt *ck, uint32_t *n,
			      struct ck_req *r)
{
	struct embkv_etcd_kvs kvs;
	char key[256];
	struct cl_node *nodes = NULL;
	uint32_t nn = 0, *ids;
	int rc;

	snprintf(key, sizeof(key), "%smembers/", ck->prefix);
	rc = embkv_etcd_get(ck->etcd, key, true, &kvs);
	if (rc) {
		ck_fail(r, rc, "etcd: %s", embkv_strerror(rc));
		return NULL;
	}
	cl_nodes_read(key, &kvs, &nodes, &nn);
	embkv_etcd_kvs_free(&kvs);
	ids = calloc(nn ? nn : 1, sizeof(*ids));
	for (uint32_t i = 0; ids && i < nn; i++)
		ids[i] = nodes[i].id;
	free(nodes);
	if (!ids)
		ck_fail(r, -ENOMEM, "no memory");
	*n = nn;
	return ids;
}

/* Gives every partition held by a member that is not live to the live
 * member holding the fewest of that table's partitions. */
static void do_recover(struct embkvd_ckpt *ck, struct ck_req *r)
{
	struct embkv_etcd_kvs kvs;
	char key[256];
	uint32_t nlive = 0, *live, tables = 0, moved = 0;
	int rc;

	if (!ck->etcd) {
		ck_fail(r, -EOPNOTSUPP, "recovery needs a cluster (embkvd "
			"--etcd)");
		return;
	}
	live = live_members(ck, &nlive, r);
	if (!live)
		return;
	if (!nlive) {
		ck_fail(r, EMBKV_ECLUSTER, "no live member");
		free(live);
		return;
	}
	snprintf(key, sizeof(key), "%stables/", ck->prefix);
	rc = embkv_etcd_get(ck->etcd, key, true, &kvs);
	if (rc) {
		ck_fail(r, rc, "etcd: %s", embkv_strerror(rc));
		free(live);
		return;
	}
	for (size_t i = 0; i < kvs.n && !r->status; i++) {
		const char *name = kvs.kv[i].key + strlen(key);
		uint32_t *count = calloc(nlive, sizeof(*count)), n = 0;
		struct ctable t;

		if (!count || cl_table_parse(name, kvs.kv[i].value,
					     kvs.kv[i].value_len, &t)) {
			free(count);
			continue;
		}
		for (uint32_t p = 0; p < t.attr.partitions; p++)
			for (uint32_t l = 0; l < nlive; l++)
				if (t.members[t.parts[p]] == live[l])
					count[l]++;
		for (uint32_t p = 0; t.ready && p < t.attr.partitions; p++) {
			uint32_t best = 0;
			bool alive = false;
			int idx;

			for (uint32_t l = 0; l < nlive; l++) {
				alive |= t.members[t.parts[p]] == live[l];
				if (count[l] < count[best])
					best = l;
			}
			if (alive)
				continue;
			idx = member_index(&t, live[best]);
			if (idx < 0)
				break;
			t.parts[p] = (uint16_t)idx;
			count[best]++;
			n++;
		}
		if (n && !compact(&t)) {
			t.epoch++;
			if (!record_cas(ck, &t, kvs.kv[i].mod_revision, r)) {
				tables++;
				moved += n;
				embkvd_log("table %s: %u partitions of members "
					   "that are down given to live ones "
					   "(epoch %" PRIu64 ")", name, n,
					   t.epoch);
			}
		}
		cl_table_free(&t);
		free(count);
	}
	embkv_etcd_kvs_free(&kvs);
	free(live);
	if (!r->status)
		r->out = json_pack("{s:I, s:I}", "tables", (json_int_t)tables,
				   "partitions", (json_int_t)moved);
}

/*
 * --auto-recover: every poll, the live member with the smallest id looks
 * for members that hold partitions but have had no lease for
 * auto_recover_ms, and runs RECOVER for them (the compare-and-swap makes
 * a race with another member or an operator harmless).
 */
void ck_auto_recover(struct embkvd_ckpt *ck)
{
	struct ck_req r = { 0 };
	struct embkv_etcd_kvs kvs;
	uint32_t nlive = 0, *live;
	char key[256];
	uint64_t now = ck_now_ms();
	bool due = false;

	if (!ck->etcd || !ck->auto_recover_ms)
		return;
	live = live_members(ck, &nlive, &r);
	if (!live)
		return;
	if (!nlive || live[0] != ck->member_id) {
		free(live);
		ck->ndown = 0;        /* another member's job */
		return;
	}
	snprintf(key, sizeof(key), "%stables/", ck->prefix);
	if (embkv_etcd_get(ck->etcd, key, true, &kvs)) {
		free(live);
		return;
	}
	/* members that hold partitions and are not live: since when (only
	 * those down at every poll keep their time) */
	struct ck_down prev[CK_DOWN_MAX];
	uint32_t nprev = ck->ndown;

	memcpy(prev, ck->down, sizeof(prev[0]) * nprev);
	ck->ndown = 0;
	for (size_t i = 0; i < kvs.n; i++) {
		struct ctable t;

		if (cl_table_parse(kvs.kv[i].key + strlen(key), kvs.kv[i].value,
				   kvs.kv[i].value_len, &t))
			continue;
		for (uint32_t m = 0; m < t.nmembers; m++) {
			bool up = false, known = false;

			for (uint32_t l = 0; l < nlive; l++)
				up |= live[l] == t.members[m];
			if (up)
				continue;
			for (uint32_t d = 0; d < ck->ndown; d++)
				known |= ck->down[d].id == t.members[m];
			if (known || ck->ndown == CK_DOWN_MAX)
				continue;
			ck->down[ck->ndown] = (struct ck_down){
				t.members[m], now };
			for (uint32_t d = 0; d < nprev; d++)
				if (prev[d].id == t.members[m])
					ck->down[ck->ndown].since =
						prev[d].since;
			due |= now - ck->down[ck->ndown].since >=
			       ck->auto_recover_ms;
			ck->ndown++;
		}
		cl_table_free(&t);
	}
	embkv_etcd_kvs_free(&kvs);
	free(live);
	if (!due)
		return;
	embkvd_log("auto-recover: members without a lease for %" PRIu64
		   " s hold partitions; giving them to live members",
		   ck->auto_recover_ms / 1000u);
	do_recover(ck, &r);
	if (r.status)
		embkvd_log("auto-recover: %s", r.msg);
	json_decref(r.out);
	ck->ndown = 0;
}

bool ck_do_move(struct embkvd_ckpt *ck, struct ck_req *r)
{
	switch (r->op) {
	case EMBKV_WIRE_OP_MOVE_PREPARE:
		do_prepare(ck, r);
		return true;
	case EMBKV_WIRE_OP_MOVE_SNAP:
		do_snap(ck, r);
		return true;
	case EMBKV_WIRE_OP_MOVE_READ:
		do_read(ck, r);
		return true;
	case EMBKV_WIRE_OP_MOVE_WRITE:
		do_write(ck, r);
		return true;
	case EMBKV_WIRE_OP_MOVE_APPLY:
		do_apply(ck, r);
		return true;
	case EMBKV_WIRE_OP_MOVE_FREEZE:
		do_freeze(ck, r);
		return true;
	case EMBKV_WIRE_OP_MOVE_COMMIT:
		do_commit(ck, r);
		return true;
	case EMBKV_WIRE_OP_MOVE_ABORT:
		do_abort(ck, r);
		return true;
	case EMBKV_WIRE_OP_RECOVER:
		do_recover(ck, r);
		return true;
	default:
		return false;
	}
}
