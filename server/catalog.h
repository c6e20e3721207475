/*
 * embkvd's table catalog: table id -> table, name lookup, create and drop,
 * under a memory limit.
 *
 * Identity. A table has a u32 id, numbered by this server and never reused
 * within a run (a restarted server numbers from 1 again), and a nonzero
 * u64 uid that is never reused at all: drawn with getrandom() at creation,
 * or given by the caller (cluster metadata assigns uids). Requests name a
 * table by both, so a client still holding a dropped or re-created
 * table's id cannot reach the table that has that id now.
 *
 * Threads. Lookups (embkv_catalog_find_*, embkv_catalog_snapshot) run on
 * any thread registered with liburcu, inside rcu_read_lock(); what they
 * return stays valid until rcu_read_unlock() unless the caller takes a
 * reference with embkv_catalog_entry_get() first. Create and drop may be
 * called from any registered thread (a mutex orders them).
 *
 * Lifetime. An entry lives while the catalog or a reference holds it. A
 * dropped entry leaves the catalog at once; the catalog's own reference is
 * released only after an RCU grace period, so a reader that found it may
 * still take a reference; the table is destroyed by whoever releases the
 * last reference (the owner work holding one has finished by then).
 */
#ifndef EMBKV_SERVER_CATALOG_H
#define EMBKV_SERVER_CATALOG_H

#include <stdint.h>
#include <urcu.h>
#include <embkv/embkv.h>
#include "server/shardmap.h"
#include "server/store.h"

/* Request counters of one table, kept by the service layer (relaxed
 * atomics: any thread adds, STATS reads a recent value). */
struct embkv_table_counters {
	uint64_t pulls, pull_keys;
	uint64_t pushes, push_keys;
};

struct embkv_catalog_entry;

/*
 * What the catalog's user does with a table's memory (embkvd registers
 * it for RDMA; the catalog knows nothing of transports). built runs once
 * the table is mapped, before its entry can be published, and may set
 * e->hook_data; an error from it fails the create (the table is freed,
 * freed is not called). freed runs when the last reference goes, before
 * the table's memory is unmapped. Either may be NULL. They run on the
 * thread that creates the table or puts the last reference.
 */
struct embkv_catalog_hooks {
	int (*built)(void *ctx, struct embkv_catalog_entry *e);
	void (*freed)(void *ctx, struct embkv_catalog_entry *e);
	/* A partition was loaded into a published table (part_add), or is
	 * about to be freed (part_remove: after it, no remote reader may
	 * reach its memory). */
	int (*part_added)(void *ctx, struct embkv_catalog_entry *e,
			  uint32_t part);
	void (*part_removed)(void *ctx, struct embkv_catalog_entry *e,
			     uint32_t part);
	void *ctx;
};

struct embkv_catalog_entry {
	uint32_t id;                 /* never reused within a server run */
	uint64_t uid;                /* nonzero, never reused */
	struct embkv_table *table;   /* fixed for the entry's life */
	uint64_t bytes;              /* embkv_table_get_stats().bytes at create:
					the loaded partitions only */
	uint32_t refs;               /* atomic */
	void *hook_data;             /* the hooks' (embkvd: RDMA regions) */
	struct embkv_table_counters ctr;
	/* The table's own shard map (cluster mode), RCU-published; NULL: the
	 * server's map places it. Freed with the entry. */
	struct embkvd_map *map;
	struct embkv_catalog_hooks hooks; /* the catalog's, at build */
	/* A read-only replica (server/replica.c): set before publish. */
	bool replica;
	struct rcu_head rcu;
};

struct embkv_catalog_attr {
	uint64_t memory_limit;  /* bytes of all tables; 0: no limit */
	struct embkv_catalog_hooks hooks; /* zeroed: none */
	uint32_t flags;         /* reserved, must be 0 */
};

void embkv_catalog_attr_init(struct embkv_catalog_attr *attr);

struct embkv_catalog;

/* 0, -EINVAL or -ENOMEM. The caller owns *out until _destroy(). */
int embkv_catalog_create(const struct embkv_catalog_attr *attr,
			 struct embkv_catalog **out);
/* Drops every table and waits for pending RCU callbacks (rcu_barrier).
 * No other thread may use the catalog any more. NULL is a no-op. */
void embkv_catalog_destroy(struct embkv_catalog *cat);

/*
 * Creates a table holding the partitions p in state owned[p] (enum
 * embkv_part_state; owned has attr->partitions entries; NULL: all
 * serving), and publishes it; only the partitions not ABSENT are mapped,
 * registered and charged against the limit. uid is the table's uid, or 0
 * to draw a fresh one. 0 with *id and *uid_out (may be NULL) set; -EINVAL
 * or EMBKV_ELIMIT (bad attr, see embkv_table_create; or
 * EMBKV_WIRE_MAX_TABLES tables exist), EMBKV_ETABLEEXISTS, -EEXIST (a
 * published table has the given uid), -ENOMEM (out of memory, or the
 * table would take the catalog over its memory limit), or getrandom()'s
 * error.
 */
int embkv_catalog_add(struct embkv_catalog *cat,
		      const struct embkv_table_attr *attr,
		      const uint8_t *owned, uint64_t uid, uint32_t *id,
		      uint64_t *uid_out);
/*
 * The same in two steps, for a create that several servers must agree on:
 * _reserve builds the table and charges its memory (as unpublished) so
 * that nothing else can take that memory, _publish makes it visible (or
 * fails like _add, cancelling), _cancel frees it. _reserve: 0 and
 * *pending, or _add's errors about attr and memory. _publish: _add's
 * results; pending is consumed either way.
 */
int embkv_catalog_reserve(struct embkv_catalog *cat,
			  const struct embkv_table_attr *attr,
			  const uint8_t *owned,
			  struct embkv_catalog_entry **pending);
int embkv_catalog_publish(struct embkv_catalog *cat,
			  struct embkv_catalog_entry *pending, uint64_t uid,
			  uint32_t *id, uint64_t *uid_out);
void embkv_catalog_cancel(struct embkv_catalog *cat,
			  struct embkv_catalog_entry *pending);
/*
 * Partitions that come and go in a published table (the shard map gave
 * this server a partition, or took one away). part_add maps partition
 * part (ABSENT) in state (UNLOADED or MOVING), charges it against the
 * limit (-ENOMEM beyond it, nothing changed) and registers it (the
 * part_added hook). part_remove deregisters it (part_removed hook) and
 * frees it, uncharged. The caller makes sure that no owner works on the
 * partition meanwhile: it is not this server's in the table's map, or
 * not SERVING, and (remove) the batches that found it serving are done.
 */
int embkv_catalog_part_add(struct embkv_catalog *cat,
			   struct embkv_catalog_entry *e, uint32_t part,
			   enum embkv_part_state state);
void embkv_catalog_part_remove(struct embkv_catalog *cat,
			       struct embkv_catalog_entry *e, uint32_t part);

/* Unpublishes the table called name: 0 or EMBKV_ENOTABLE. */
int embkv_catalog_drop(struct embkv_catalog *cat, const char *name);

/* Inside rcu_read_lock(): the entry, or NULL. find_id matches the id
 * alone; requests must use find_ref, which also wants the entry's uid. */
struct embkv_catalog_entry *embkv_catalog_find_id(struct embkv_catalog *cat,
						  uint32_t id);
struct embkv_catalog_entry *embkv_catalog_find_ref(struct embkv_catalog *cat,
						   uint32_t id, uint64_t uid);
struct embkv_catalog_entry *embkv_catalog_find_name(struct embkv_catalog *cat,
						    const char *name);
/* Inside rcu_read_lock(): every entry, in id order; returns the count. */
uint32_t embkv_catalog_snapshot(struct embkv_catalog *cat,
				struct embkv_catalog_entry *const **entries);
/* Bytes of the published tables, and the limit (0: none). */
uint64_t embkv_catalog_bytes(struct embkv_catalog *cat);
uint64_t embkv_catalog_memory_limit(const struct embkv_catalog *cat);
/* Bytes of tables built and charged but not published yet (a create in
 * progress, a cluster create waiting for its acks). */
uint64_t embkv_catalog_reserved(struct embkv_catalog *cat);

/* References: _get inside rcu_read_lock() (or while holding one), _put
 * anywhere; the last _put destroys the table. */
void embkv_catalog_entry_get(struct embkv_catalog_entry *e);
void embkv_catalog_entry_put(struct embkv_catalog_entry *e);

#endif
