/*
 * embkvd's table regions for one-sided RDMA reads (net/RDMA.md):
 * per-partition memory registrations made through the catalog's hooks,
 * and the TABLE_REGIONS reply that hands out their rkeys.
 *
 * What: when the catalog builds a table, regions_built registers the index
 * and the arena of every loaded partition, each on its own, with the
 * listener's protection domain (verbs_listen.c) and keeps the MRs in the
 * entry's hook_data; regions_freed deregisters them. The catalog knows
 * only its hooks, never verbs. TABLE_REGIONS describes the serving
 * partitions' regions to a client.
 *
 * Why TABLE_REGIONS lives here rather than in service.c or report.c: it
 * reads the MRs' rkeys, verbs state that only the RDMA build has, and the
 * service layer is built without RDMA too (verbs_none.c answers it there).
 *
 * Invariants:
 * - Table memory is registered with LOCAL_WRITE | REMOTE_READ only, never
 *   remote write or atomics, and deregistered before it is unmapped; its
 *   rkeys go out only in TABLE_REGIONS replies, which need an
 *   authenticated verbs connection (io.c's admission refuses everything
 *   but HELLO and AUTH before).
 * - Only serving partitions are described; a partition the server does
 *   not hold is neither mapped nor pinned.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "server/verbs_priv.h"

/* A table's registrations: per partition, only those the server holds
 * (NULL where a partition is not loaded or has no rows to read). */
struct embkvd_regions {
	uint32_t nparts;
	struct ibv_mr **index_mr, **arena_mr; /* nparts each */
	uint64_t bytes;                       /* registered (pinned) bytes */
};

static void regions_free(struct embkvd_regions *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < r->nparts; i++) {
		if (r->arena_mr[i])
			ibv_dereg_mr(r->arena_mr[i]);
		if (r->index_mr[i])
			ibv_dereg_mr(r->index_mr[i]);
	}
	free(r->index_mr);
	free(r->arena_mr);
	free(r);
}

static struct ibv_mr *reg_read_only(struct embkvd_verbs *v, void *addr,
				    size_t len, int *err)
{
	/* Remote READ only: never IBV_ACCESS_REMOTE_WRITE or _ATOMIC. */
	const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ;
	struct ibv_mr *mr = ibv_reg_mr(v->pd, addr, len, access);

	if (!mr)
		*err = errno ? -errno : -ENOMEM;
	return mr;
}

/* The built hook: registers e's table's loaded partitions with v. */
static int regions_built(void *v, struct embkv_catalog_entry *e)
{
	const struct embkv_table *t = e->table;
	struct embkvd_regions *r;
	int err = 0;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->nparts = t->nparts;
	r->index_mr = calloc(t->nparts, sizeof(*r->index_mr));
	r->arena_mr = calloc(t->nparts, sizeof(*r->arena_mr));
	if (!r->index_mr || !r->arena_mr) {
		err = -ENOMEM;
		goto free_r;
	}
	for (uint32_t i = 0; i < t->nparts; i++) {
		const struct embkv_part *p = &t->parts[i];

		if (!p->loaded || !p->arena)
			continue;
		r->index_mr[i] = reg_read_only(v, p->mem[EMBKV_MEM_INDEX],
					       p->mem_bytes[EMBKV_MEM_INDEX],
					       &err);
		if (!r->index_mr[i])
			goto free_r;
		r->arena_mr[i] = reg_read_only(v, p->arena,
					       p->mem_bytes[EMBKV_MEM_ARENA],
					       &err);
		if (!r->arena_mr[i])
			goto free_r;
		r->bytes += p->mem_bytes[EMBKV_MEM_INDEX] +
			    p->mem_bytes[EMBKV_MEM_ARENA];
	}
	e->hook_data = r;
	return 0;

free_r:
	embkvd_log("cannot register table %s for RDMA: %s", t->attr.name,
		   strerror(-err));
	regions_free(r);
	return err;
}

/* The freed hook: deregisters, before the table's memory goes. */
static void regions_freed(void *v, struct embkv_catalog_entry *e)
{
	(void)v;
	regions_free(e->hook_data);
	e->hook_data = NULL;
}

/* The part_added hook: registers a partition loaded into a published
 * table. The pointers are published last (TABLE_REGIONS reads them under
 * rcu_read_lock). */
static int regions_part_added(void *v, struct embkv_catalog_entry *e,
			      uint32_t i)
{
	struct embkvd_regions *r = e->hook_data;
	const struct embkv_part *p = &e->table->parts[i];
	struct ibv_mr *imr, *amr;
	int err = 0;

	if (!r || i >= r->nparts || !p->arena ||
	    __atomic_load_n(&r->arena_mr[i], __ATOMIC_ACQUIRE))
		return 0;    /* (registered already) */
	imr = reg_read_only(v, p->mem[EMBKV_MEM_INDEX],
			    p->mem_bytes[EMBKV_MEM_INDEX], &err);
	if (!imr)
		return err;
	amr = reg_read_only(v, p->arena, p->mem_bytes[EMBKV_MEM_ARENA], &err);
	if (!amr) {
		ibv_dereg_mr(imr);
		return err;
	}
	__atomic_add_fetch(&r->bytes, p->mem_bytes[EMBKV_MEM_INDEX] +
			   p->mem_bytes[EMBKV_MEM_ARENA], __ATOMIC_RELAXED);
	rcu_assign_pointer(r->index_mr[i], imr);
	rcu_assign_pointer(r->arena_mr[i], amr);
	return 0;
}

/* The part_removed hook: unpublishes the partition's registrations, waits
 * for TABLE_REGIONS readers, deregisters (remote READs of it fail from
 * then on: a reader never gets a row of a partition that left). */
static void regions_part_removed(void *v, struct embkv_catalog_entry *e,
				 uint32_t i)
{
	struct embkvd_regions *r = e->hook_data;
	const struct embkv_part *p = &e->table->parts[i];
	struct ibv_mr *imr, *amr;

	(void)v;
	if (!r || i >= r->nparts)
		return;
	/* exchanged: of two removals at once, one deregisters */
	amr = __atomic_exchange_n(&r->arena_mr[i], NULL, __ATOMIC_ACQ_REL);
	imr = __atomic_exchange_n(&r->index_mr[i], NULL, __ATOMIC_ACQ_REL);
	if (!imr && !amr)
		return;
	synchronize_rcu();
	if (amr)
		ibv_dereg_mr(amr);
	if (imr)
		ibv_dereg_mr(imr);
	__atomic_sub_fetch(&r->bytes, p->mem_bytes[EMBKV_MEM_INDEX] +
			   p->mem_bytes[EMBKV_MEM_ARENA], __ATOMIC_RELAXED);
}

void embkvd_regions_hooks(struct embkvd_verbs *v,
			  struct embkv_catalog_hooks *hooks)
{
	memset(hooks, 0, sizeof(*hooks));
	if (!v)
		return;
	hooks->built = regions_built;
	hooks->freed = regions_freed;
	hooks->part_added = regions_part_added;
	hooks->part_removed = regions_part_removed;
	hooks->ctx = v;
}

uint64_t embkvd_regions_bytes(const struct embkv_catalog_entry *e)
{
	const struct embkvd_regions *r = e->hook_data;

	return r ? __atomic_load_n(&r->bytes, __ATOMIC_RELAXED) : 0;
}

void embkvd_verbs_table_regions(struct embkvd_conn *c, uint64_t req_id,
				uint32_t table_id, uint64_t uid)
{
	struct embkv_wire_table_regions m = {
		.table_id = table_id,
		.uid = uid,
	};
	struct embkv_wire_region_part *parts = NULL;
	const struct embkvd_regions *rg;
	struct embkv_catalog_entry *ent;
	const struct embkv_table *t;
	uint8_t *body;
	size_t len;
	uint32_t n = 0;
	int rc;

	ent = embkvd_svc_table_get(c, req_id, table_id, uid);
	if (!ent)
		return;
	t = ent->table;
	rg = ent->hook_data; /* regions_built's */
	if (!rg) {
		embkvd_conn_error(c, req_id, EMBKV_ESERVER, false,
				  "table %u is not registered for RDMA",
				  table_id);
		goto put;
	}
	parts = calloc(t->nparts, sizeof(*parts));
	if (!parts) {
		embkvd_conn_error(c, req_id, -ENOMEM, false,
				  "no memory for %u regions", t->nparts);
		goto put;
	}
	/* Partitions come and go (regions_part_added/_removed): their
	 * registrations are read under the read lock. */
	rcu_read_lock();
	for (uint32_t i = 0; i < t->nparts; i++) {
		const struct embkv_part *p = &t->parts[i];
		struct ibv_mr *imr = rcu_dereference(rg->index_mr[i]);
		struct ibv_mr *amr = rcu_dereference(rg->arena_mr[i]);

		/* Only serving partitions: an unloaded one has no rows to
		 * read, and a reader must take the RPC path (EMBKV_EUNAVAIL). */
		if (!imr || !amr ||
		    embkv_part_state(p) != EMBKV_PART_SERVING)
			continue;
		parts[n].part = i;
		parts[n].index_rkey = imr->rkey;
		parts[n].arena_rkey = amr->rkey;
		parts[n].index_addr = (uint64_t)(uintptr_t)p->index.buckets;
		parts[n].nbuckets = p->index.nbuckets;
		parts[n].arena_addr = (uint64_t)(uintptr_t)p->arena;
		parts[n].capacity = p->capacity;
		n++;
	}
	rcu_read_unlock();
	m.count = n;
	m.stride = (uint32_t)t->stride;
	m.parts = parts;
	rc = embkv_wire_table_regions_size(&m, &len);
	if (rc) {
		embkvd_conn_error(c, req_id, EMBKV_ESERVER, false,
				  "cannot encode the regions of table %u",
				  table_id);
		goto free_parts;
	}
	rc = embkvd_conn_reply(c, req_id, EMBKV_WIRE_OP_TABLE_REGIONS |
				      EMBKV_WIRE_OP_REPLY, (uint32_t)len, &body);
	if (!rc)
		embkv_wire_table_regions_encode(&m, body, len);
	else if (rc == -ENOMEM)
		embkvd_conn_error(c, req_id, rc, false,
				  "no memory for a reply");
free_parts:
	free(parts);
put:
	embkv_catalog_entry_put(ent);
}
