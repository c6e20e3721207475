/*
 * embkvd table catalog.
 *
 * What: the set of tables a server serves, looked up by id on every
 * request and by name on admin requests.
 *
 * Why this shape: lookups happen on the I/O threads for every frame, and
 * changes (create, drop) are rare admin actions. So the catalog is an
 * immutable snapshot (an id-sorted array of entry pointers) published with
 * rcu_assign_pointer(): readers binary-search it without a lock, writers
 * copy it under a mutex, publish the copy and free the old one after a
 * grace period (call_rcu).
 *
 * Invariants:
 * - Ids come from a counter that only grows: never reused in a run, and
 *   appending keeps every snapshot sorted by id.
 * - Uids are nonzero and unique among published entries (checked under
 *   the mutex). Drawn ones are 64 random bits, so across restarts and
 *   servers they repeat with negligible probability (2^-64 per pair).
 * - Names are unique among published entries (checked under the mutex).
 * - bytes is the sum of the published entries' sizes; an add that would
 *   take it over the limit fails with -ENOMEM and publishes nothing.
 * - A dropped entry's catalog reference is put only after a grace period,
 *   so no reader can take a reference to an entry whose count reached 0.
 */
#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "net/wire.h"
#include "server/catalog.h"

struct catalog_snap {
	struct rcu_head rcu;
	uint32_t n;
	struct embkv_catalog_entry *e[];
};

struct embkv_catalog {
	struct catalog_snap *snap;   /* RCU-published, never NULL */
	pthread_mutex_t lock;        /* writers */
	uint32_t next_id;            /* under lock */
	uint64_t bytes;              /* under lock; read relaxed */
	uint64_t reserved;           /* under lock: built, not published */
	uint64_t memory_limit;
	struct embkv_catalog_hooks hooks;
};

void embkv_catalog_attr_init(struct embkv_catalog_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
}

static struct catalog_snap *snap_alloc(uint32_t n)
{
	struct catalog_snap *s;

	s = calloc(1, sizeof(*s) + (size_t)n * sizeof(s->e[0]));
	if (s)
		s->n = n;
	return s;
}

static void snap_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, struct catalog_snap, rcu));
}

static void entry_put_rcu(struct rcu_head *head)
{
	embkv_catalog_entry_put(caa_container_of(head,
						 struct embkv_catalog_entry,
						 rcu));
}

int embkv_catalog_create(const struct embkv_catalog_attr *attr,
			 struct embkv_catalog **out)
{
	struct embkv_catalog *cat;
	int err;

	if (!attr || !out || attr->flags)
		return -EINVAL;
	cat = calloc(1, sizeof(*cat));
	if (!cat)
		return -ENOMEM;
	cat->snap = snap_alloc(0);
	if (!cat->snap) {
		err = -ENOMEM;
		goto free_cat;
	}
	err = -pthread_mutex_init(&cat->lock, NULL);
	if (err)
		goto free_snap;
	cat->next_id = 1;
	cat->memory_limit = attr->memory_limit;
	cat->hooks = attr->hooks;
	*out = cat;
	return 0;

free_snap:
	free(cat->snap);
free_cat:
	free(cat);
	return err;
}

void embkv_catalog_destroy(struct embkv_catalog *cat)
{
	struct catalog_snap *old;

	if (!cat)
		return;
	pthread_mutex_lock(&cat->lock);
	old = cat->snap;
	cat->snap = NULL;
	for (uint32_t i = 0; i < old->n; i++)
		call_rcu(&old->e[i]->rcu, entry_put_rcu);
	call_rcu(&old->rcu, snap_free_rcu);
	pthread_mutex_unlock(&cat->lock);
	rcu_barrier();
	pthread_mutex_destroy(&cat->lock);
	free(cat);
}

void embkv_catalog_entry_get(struct embkv_catalog_entry *e)
{
	__atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
}

void embkv_catalog_entry_put(struct embkv_catalog_entry *e)
{
	if (!e || __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL))
		return;
	if (e->hooks.freed) /* before the memory goes */
		e->hooks.freed(e->hooks.ctx, e);
	embkv_table_destroy(e->table);
	embkvd_map_destroy(e->map);
	free(e);
}

/* The entry of snapshot s called name, or NULL. */
static struct embkv_catalog_entry *snap_find_name(struct catalog_snap *s,
						    const char *name)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (!strncmp(s->e[i]->table->attr.name, name,
			     EMBKV_TABLE_NAME_MAX))
			return s->e[i];
	return NULL;
}

/* The entry of snapshot s with this uid, or NULL. */
static struct embkv_catalog_entry *snap_find_uid(struct catalog_snap *s,
						   uint64_t uid)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (s->e[i]->uid == uid)
			return s->e[i];
	return NULL;
}

/* A fresh nonzero uid from the kernel's random pool. */
static int uid_draw(uint64_t *uid)
{
	ssize_t got;

	do {
		got = getrandom(uid, sizeof(*uid), 0);
		if (got < 0 && errno != EINTR)
			return -errno;
	} while (got != (ssize_t)sizeof(*uid) || !*uid);
	return 0;
}

/* Whether a table of `bytes` fits beside `used` bytes under the limit. */
static bool fits(const struct embkv_catalog *cat, uint64_t used,
		 uint64_t bytes)
{
	return !cat->memory_limit || (bytes <= cat->memory_limit &&
				      used <= cat->memory_limit - bytes);
}

static int entry_build(struct embkv_catalog *cat,
		       const struct embkv_table_attr *attr,
		       const uint8_t *owned, struct embkv_catalog_entry **out)
{
	struct embkv_table_stats st;
	struct embkv_catalog_entry *e;
	int err;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	err = embkv_table_create_parts(attr, owned, &e->table);
	if (err) {
		free(e);
		return err;
	}
	e->hooks = cat->hooks;
	err = e->hooks.built ? e->hooks.built(e->hooks.ctx, e) : 0;
	if (err) {
		embkv_table_destroy(e->table);
		free(e);
		return err;
	}
	embkv_table_get_stats(e->table, &st);
	e->bytes = st.bytes;
	e->refs = 1;
	*out = e;
	return 0;
}

/* Under cat->lock: bytes published and reserved. */
static uint64_t used_locked(const struct embkv_catalog *cat)
{
	return cat->bytes + cat->reserved;
}

int embkv_catalog_reserve(struct embkv_catalog *cat,
			  const struct embkv_table_attr *attr,
			  const uint8_t *owned,
			  struct embkv_catalog_entry **pending)
{
	struct embkv_catalog_entry *e;
	uint64_t need;
	int err;

	if (!cat || !attr || !pending)
		return -EINVAL;
	*pending = NULL;
	/* Refuse a table over the limit before mapping (and, with RDMA,
	 * registering, which pins every page) any of it; the exact check
	 * under the lock below still decides. */
	err = embkv_table_size_parts(attr, owned, &need);
	if (err)
		return err;
	pthread_mutex_lock(&cat->lock);
	err = fits(cat, used_locked(cat), need) ? 0 : -ENOMEM;
	pthread_mutex_unlock(&cat->lock);
	if (err)
		return err;
	/* Build outside the lock: mapping a big table takes a while. */
	err = entry_build(cat, attr, owned, &e);
	if (err)
		return err;
	pthread_mutex_lock(&cat->lock);
	if (!fits(cat, used_locked(cat), e->bytes)) {
		pthread_mutex_unlock(&cat->lock);
		embkv_catalog_entry_put(e);
		return -ENOMEM;
	}
	cat->reserved += e->bytes;
	pthread_mutex_unlock(&cat->lock);
	*pending = e;
	return 0;
}

void embkv_catalog_cancel(struct embkv_catalog *cat,
			  struct embkv_catalog_entry *pending)
{
	if (!pending)
		return;
	pthread_mutex_lock(&cat->lock);
	cat->reserved -= pending->bytes;
	pthread_mutex_unlock(&cat->lock);
	embkv_catalog_entry_put(pending);
}

int embkv_catalog_publish(struct embkv_catalog *cat,
			  struct embkv_catalog_entry *e, uint64_t uid,
			  uint32_t *id, uint64_t *uid_out)
{
	struct catalog_snap *old, *s;
	int err;

	if (!cat || !e || !id)
		return -EINVAL;
	pthread_mutex_lock(&cat->lock);
	old = cat->snap;
	if (snap_find_name(old, e->table->attr.name)) {
		err = EMBKV_ETABLEEXISTS;
		goto unlock;
	}
	if (cat->next_id == EMBKV_WIRE_TABLE_ALL ||
	    old->n >= EMBKV_WIRE_MAX_TABLES) {
		err = EMBKV_ELIMIT;
		goto unlock;
	}
	if (uid && snap_find_uid(old, uid)) {
		err = -EEXIST;
		goto unlock;
	}
	e->uid = uid;
	while (!e->uid || snap_find_uid(old, e->uid)) {
		err = uid_draw(&e->uid);
		if (err)
			goto unlock;
	}
	s = snap_alloc(old->n + 1);
	if (!s) {
		err = -ENOMEM;
		goto unlock;
	}
	memcpy(s->e, old->e, (size_t)old->n * sizeof(old->e[0]));
	e->id = cat->next_id++;
	s->e[old->n] = e;
	cat->reserved -= e->bytes;
	__atomic_store_n(&cat->bytes, cat->bytes + e->bytes, __ATOMIC_RELAXED);
	rcu_assign_pointer(cat->snap, s);
	call_rcu(&old->rcu, snap_free_rcu);
	*id = e->id;
	if (uid_out)
		*uid_out = e->uid;
	pthread_mutex_unlock(&cat->lock);
	return 0;

unlock:
	pthread_mutex_unlock(&cat->lock);
	embkv_catalog_cancel(cat, e);
	return err;
}

int embkv_catalog_add(struct embkv_catalog *cat,
		      const struct embkv_table_attr *attr,
		      const uint8_t *owned, uint64_t uid, uint32_t *id,
		      uint64_t *uid_out)
{
	struct embkv_catalog_entry *e;
	int err;

	if (!cat || !attr || !id)
		return -EINVAL;
	err = embkv_catalog_reserve(cat, attr, owned, &e);
	if (err)
		return err;
	return embkv_catalog_publish(cat, e, uid, id, uid_out);
}

int embkv_catalog_drop(struct embkv_catalog *cat, const char *name)
{
	struct embkv_catalog_entry *e;
	struct catalog_snap *old, *s;
	uint32_t j = 0;

	if (!cat || !name)
		return -EINVAL;
	pthread_mutex_lock(&cat->lock);
	old = cat->snap;
	e = snap_find_name(old, name);
	if (!e) {
		pthread_mutex_unlock(&cat->lock);
		return EMBKV_ENOTABLE;
	}
	s = snap_alloc(old->n - 1);
	if (!s) {
		pthread_mutex_unlock(&cat->lock);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < old->n; i++)
		if (old->e[i] != e)
			s->e[j++] = old->e[i];
	__atomic_store_n(&cat->bytes, cat->bytes - e->bytes, __ATOMIC_RELAXED);
	rcu_assign_pointer(cat->snap, s);
	call_rcu(&old->rcu, snap_free_rcu);
	call_rcu(&e->rcu, entry_put_rcu);
	pthread_mutex_unlock(&cat->lock);
	return 0;
}

struct embkv_catalog_entry *embkv_catalog_find_id(struct embkv_catalog *cat,
						  uint32_t id)
{
	struct catalog_snap *s = rcu_dereference(cat->snap);
	uint32_t lo = 0, hi = s->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (s->e[mid]->id == id)
			return s->e[mid];
		if (s->e[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct embkv_catalog_entry *embkv_catalog_find_ref(struct embkv_catalog *cat,
						   uint32_t id, uint64_t uid)
{
	struct embkv_catalog_entry *e = embkv_catalog_find_id(cat, id);

	return e && e->uid == uid ? e : NULL;
}

struct embkv_catalog_entry *embkv_catalog_find_name(struct embkv_catalog *cat,
						    const char *name)
{
	return snap_find_name(rcu_dereference(cat->snap), name);
}

uint32_t embkv_catalog_snapshot(struct embkv_catalog *cat,
				struct embkv_catalog_entry *const **entries)
{
	struct catalog_snap *s = rcu_dereference(cat->snap);

	*entries = s->e;
	return s->n;
}

uint64_t embkv_catalog_bytes(struct embkv_catalog *cat)
{
	return __atomic_load_n(&cat->bytes, __ATOMIC_RELAXED);
}

uint64_t embkv_catalog_memory_limit(const struct embkv_catalog *cat)
{
	return cat->memory_limit;
}

uint64_t embkv_catalog_reserved(struct embkv_catalog *cat)
{
	uint64_t r;

	pthread_mutex_lock(&cat->lock);
	r = cat->reserved;
	pthread_mutex_unlock(&cat->lock);
	return r;
}

int embkv_catalog_part_add(struct embkv_catalog *cat,
			   struct embkv_catalog_entry *e, uint32_t part,
			   enum embkv_part_state state)
{
	struct embkv_table *t = e->table;
	uint64_t bytes;
	int err;

	if (part >= t->nparts || t->parts[part].loaded ||
	    (state != EMBKV_PART_UNLOADED && state != EMBKV_PART_MOVING))
		return -EINVAL;
	pthread_mutex_lock(&cat->lock);
	err = embkv_part_load(t, part);
	if (!err)
		err = embkv_part_set_state(t, part, state);
	bytes = t->parts[part].bytes;
	if (!err && !fits(cat, used_locked(cat), bytes))
		err = -ENOMEM;
	if (!err && e->hooks.part_added)
		err = e->hooks.part_added(e->hooks.ctx, e, part);
	if (err) {
		embkv_part_unload(t, part);
	} else {
		e->bytes += bytes;
		__atomic_store_n(&cat->bytes, cat->bytes + bytes,
				 __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&cat->lock);
	return err;
}

void embkv_catalog_part_remove(struct embkv_catalog *cat,
			       struct embkv_catalog_entry *e, uint32_t part)
{
	struct embkv_table *t = e->table;
	uint64_t bytes;

	if (part >= t->nparts || !t->parts[part].loaded)
		return;
	if (e->hooks.part_removed)
		e->hooks.part_removed(e->hooks.ctx, e, part);
	pthread_mutex_lock(&cat->lock);
	bytes = t->parts[part].bytes;
	embkv_part_unload(t, part);
	e->bytes -= bytes < e->bytes ? bytes : e->bytes;
	__atomic_store_n(&cat->bytes, cat->bytes > bytes ? cat->bytes - bytes
							 : 0,
			 __ATOMIC_RELAXED);
	pthread_mutex_unlock(&cat->lock);
}
