/*
 * The shard store: tables of P partitions, each with a bucket index and a
 * row arena that clients may read one-sided, and private state they never
 * see (optimizer state, LFU counters, admission sketch).
 *
 * Threads. Every partition has one owner thread: embkv_table_pull, _push,
 * _assign and _erase must only be called by the owner of the partitions of
 * all the keys they are given (in-process tools own every partition and
 * call them from one thread; embkvd groups keys by partition first).
 * embkv_table_find is the lock-free validated reader: any thread, at any
 * time, concurrently with the owners.
 */
#ifndef EMBKV_SERVER_STORE_H
#define EMBKV_SERVER_STORE_H

#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <embkv/embkv.h>
#include "eviction/admit.h"
#include "eviction/lfu.h"
#include "hashing/hash.h"
#include "hashing/index.h"
#include "hashing/record.h"

#define EMBKV_INDEX_LOAD_DEFAULT 0.92

enum embkv_pull_mode {
	EMBKV_PULL_TRAIN = 0, /* find-or-insert */
	EMBKV_PULL_INFER = 1, /* find; missing keys get the default value */
};

/* Counters of one partition, written by its owner only. Readers on other
 * threads (stats) get a recent value, not a snapshot. */
struct embkv_part_stats {
	uint64_t hits;            /* owner lookups that found the key */
	uint64_t misses;
	uint64_t inserts;
	uint64_t evictions;       /* rows evicted to make room */
	uint64_t index_evictions; /* of which the index, not capacity, was full */
	uint64_t admit_rejects;
	uint64_t pushes;          /* gradients applied */
	uint64_t push_dropped;    /* gradients for keys not (or no longer) stored */
	uint64_t assigns;
	uint64_t erases;
	uint64_t decays;          /* LFU decay epochs passed */
};

/* Counters of a lock-free reader (caller-owned, so no sharing). */
struct embkv_read_stats {
	uint64_t hits, misses;
	uint64_t retries;     /* torn copies read again */
	uint64_t giveups;     /* keys reported missing after EMBKV_READ_MAX_TRIES */
	uint64_t reprobes;    /* lookups redone after a concurrent cuckoo move */
};

struct embkv_table;

/*
 * A partition's replication feed (server/feed.c): while one exists, every
 * mutation s of the partition (the seq it bumps to) writes its key to
 * keys[s & mask], so a follower at seq S can learn which keys changed in
 * (S, seq] as long as seq - S <= mask + 1 and S >= lo. id names this run
 * of the feed: a discontinuity (a restore, a clear) gives a new id, and a
 * follower's position is only valid with the id it was given. Owner-only.
 */
struct embkv_feed {
	uint64_t id;
	uint64_t lo;               /* every mutation after lo is in keys */
	uint64_t mask;             /* ring entries - 1 (a power of two - 1) */
	uint64_t keys[];
};

/* The memory regions of one partition, each its own mapping. */
enum embkv_mem_kind {
	EMBKV_MEM_INDEX,           /* remote-readable: the bucket index */
	EMBKV_MEM_ARENA,           /* remote-readable: the records */
	EMBKV_MEM_STATE,           /* private: optimizer state */
	EMBKV_MEM_STEPS,           /* private: step counts (Adam) */
	EMBKV_MEM_COUNT,
};

/* What a partition is on this server. */
enum embkv_part_state {
	EMBKV_PART_ABSENT = 0,   /* not held here: no memory */
	EMBKV_PART_SERVING = 1,  /* loaded: its rows are served */
	EMBKV_PART_UNLOADED = 2, /* held here (memory mapped, empty) but its
				    rows are not loaded yet: requests for it
				    are refused with EMBKV_EUNAVAIL */
	EMBKV_PART_MOVING = 3,   /* held here but moving in or out (or
				    leaving): requests for it are refused
				    with EMBKV_ESTALE, not applied, and
				    retried on the map that follows */
};

/*
 * One partition: the unit of memory. A table has all P of them, but a
 * partition holds memory only while it is loaded (embkv_part_load): a
 * server loads the partitions its shard map gives it and no others. An
 * unloaded partition has capacity 0 and an index of one empty static
 * bucket, so that a lookup in it misses without a branch on the hot path
 * and an insert finds nothing to evict (NO_ROW).
 */
struct embkv_part {
	/* Remote-readable regions; their addresses never change while the
	 * partition is loaded. */
	struct embkv_index index;
	uint8_t *arena;            /* capacity records of table->stride bytes */
	/* Owner-private. */
	uint64_t capacity;         /* rows this partition may hold (exact) */
	uint64_t rows;             /* live rows */
	uint64_t next_fresh;       /* rows [0, next_fresh) were used before */
	uint64_t free_head;        /* erased rows, linked through their payload */
	uint8_t *state;            /* per row: optimizer state,
				      table->state_bytes each */
	uint32_t *steps;           /* per row: step count (Adam) */
	/* LFU counts live in each record's meta word (hashing/record.h). */
	struct embkv_cms cms;      /* admission sketch (admit_after > 1) */
	struct embkv_lfu_clock clock;
	struct embkv_part_stats st;
	/* Checkpoints (server/CHECKPOINT.md, "Incremental files"). */
	uint64_t seq;              /* row mutations since the table was
				      created, carried across restores;
				      owner-written, others read __atomic */
	uint64_t last_snap;        /* id of the last snapshot (0: none);
				      owner-written, others read __atomic */
	uint64_t committed;        /* id of the last committed snapshot,
				      stored only while it is last_snap
				      (atomic, any thread) */
	uint64_t *tomb;            /* keys erased or evicted since last_snap */
	uint64_t ntomb, tomb_cap;
	uint64_t tomb_max;         /* bound on ntomb (from the capacity) */
	bool tomb_lost;            /* ntomb would exceed tomb_max, or memory
				      failed: the next snapshot is full */
	struct embkv_feed *feed;   /* replication (NULL: no follower yet) */
	const struct embkv_table *table;
	uint8_t *mem[EMBKV_MEM_COUNT];   /* mappings (index: see index) */
	size_t mem_bytes[EMBKV_MEM_COUNT];
	uint64_t bytes;            /* all memory the partition holds */
	uint32_t id;
	bool loaded;               /* holds memory (SERVING or UNLOADED) */
	bool in_slab;              /* mem[] are slices of the table's slabs */
	uint8_t pstate;            /* enum embkv_part_state; atomic: readers
				      on other threads check it */
} __attribute__((aligned(64)));

struct embkv_table {
	struct embkv_table_attr attr;
	const struct embkv_optim_ops *opt;
	unsigned part_bits;
	uint32_t nparts;
	uint32_t nloaded;          /* partitions holding memory */
	uint32_t nunloaded;        /* of which not SERVING (atomic) */
	pthread_mutex_t state_lock;/* state changes and their count (threads
				      of moves, the cluster, restores) */
	uint32_t dim;
	size_t payload_bytes;
	size_t stride;
	uint32_t state_floats;     /* optimizer state values per row */
	size_t state_bytes;        /* their bytes: 4 each, 2 with
				      EMBKV_TABLE_STATE_BF16 */
	/* 16-bit storage (attr.dtype, attr.flags) */
	enum embkv_dtype dtype;
	bool narrow;               /* rows are 16-bit: updates convert */
	bool state_bf16;           /* state stored as bf16 */
	bool round_nearest;        /* write-backs round to nearest, not
				      stochastically */
	uint64_t sr_seed;          /* stochastic rounding's seed (from
				      attr.init.seed) */
	struct embkv_part *parts;  /* all nparts, loaded or not */
	/* The partitions held from creation, one mapping per region kind
	 * (store.c: slabs_load); NULL where none. */
	uint8_t *slab[EMBKV_MEM_COUNT];
	size_t slab_bytes[EMBKV_MEM_COUNT];
};

/* Table totals: sums over partitions (recent values, see part_stats). */
struct embkv_table_stats {
	uint64_t rows, capacity;
	uint64_t bytes;            /* all memory the table holds */
	uint64_t index_slots, index_used;
	uint64_t cuckoo_moves;
	struct embkv_part_stats sum;
};

/*
 * Validates attr (embkv_table_attr_check plus optimizer and initializer
 * checks) and builds an empty table with every partition loaded (what an
 * in-process user wants). 0, -EINVAL, EMBKV_ELIMIT or -ENOMEM. The caller
 * owns *out until embkv_table_destroy().
 */
int embkv_table_create(const struct embkv_table_attr *attr,
		       struct embkv_table **out);
/*
 * The same, with partition i in state owned[i] (enum embkv_part_state;
 * owned has attr->partitions entries; NULL: all SERVING): a server's share
 * of a table. Partitions SERVING or UNLOADED get memory, ABSENT ones none.
 */
int embkv_table_create_parts(const struct embkv_table_attr *attr,
			     const uint8_t *owned, struct embkv_table **out);
void embkv_table_destroy(struct embkv_table *t);

/*
 * Adds deltas (n x dim) to the rows of keys, no optimizer: a stored row
 * gets row += delta; a missing key is created first (its initializer
 * row, admission bypassed, as ASSIGN) when there is room. Keys must be
 * distinct (the client sums duplicates). Returns the rows updated.
 */
uint32_t embkv_table_accumulate(struct embkv_table *t, uint32_t n,
				const uint64_t *keys, const float *deltas);

/*
 * Run-time optimizer hyper-parameters. set: replaces t's (its
 * attr.opt) with hp, whose type must be the table's (else -EINVAL) and
 * which embkv_optim_check must accept (else -EINVAL); any thread, at any
 * time: each field is stored atomically, and every push batch and row
 * initialisation reads them once with opt_get, so one batch applies
 * each field either old or new (a batch racing a change of two fields
 * may see one new and one old). get: a snapshot, any thread.
 */
int embkv_table_opt_set(struct embkv_table *t, const struct embkv_opt_attr *hp);
void embkv_table_opt_get(const struct embkv_table *t, struct embkv_opt_attr *hp);

/*
 * The bytes embkv_table_create_parts() would map for attr and owned (NULL:
 * all partitions; else those not ABSENT): index, arena and optimizer state of each loaded
 * partition, computed without mapping anything, so a server can refuse a
 * table over its memory limit before touching memory. The admission sketch
 * and small structures are left out; embkv_table_get_stats() reports the
 * exact total of a built table. 0 or the attr's validation error.
 */
int embkv_table_size(const struct embkv_table_attr *attr, uint64_t *bytes);
int embkv_table_size_parts(const struct embkv_table_attr *attr,
			   const uint8_t *owned, uint64_t *bytes);

/*
 * The exact capacity of partition `part` of a table of `capacity` rows in
 * nparts partitions: capacity / nparts, plus one for the first
 * capacity % nparts partitions, so the partitions add up to capacity.
 */
static inline uint64_t embkv_part_capacity(uint64_t capacity, uint32_t nparts,
					   uint32_t part)
{
	return capacity / nparts + (part < capacity % nparts ? 1 : 0);
}

/*
 * Gives partition i its memory: an empty partition of its exact capacity.
 * 0 (also when it was loaded already) or -ENOMEM. Unload frees it again.
 * Both change what readers see, so a live server calls them only on a
 * partition no reader can reach (before the table is published, or after
 * it left the shard map and an RCU grace period passed).
 */
int embkv_part_load(struct embkv_table *t, uint32_t i);
void embkv_part_unload(struct embkv_table *t, uint32_t i);

/* A loaded partition's state: SERVING or UNLOADED (a restored partition
 * turns SERVING once its rows are in). Owner thread, or before the table
 * is published; readers see it with embkv_part_state(). -EINVAL when the
 * partition holds no memory or state is ABSENT. */
int embkv_part_set_state(struct embkv_table *t, uint32_t i,
			 enum embkv_part_state state);

static inline enum embkv_part_state embkv_part_state(const struct embkv_part *p)
{
	return (enum embkv_part_state)__atomic_load_n(&p->pstate,
						      __ATOMIC_ACQUIRE);
}

static inline uint32_t embkv_table_partition_of(const struct embkv_table *t,
						uint64_t key)
{
	return embkv_hash_partition(embkv_hash_key(key, t->attr.hash_seed),
				    t->part_bits);
}

/* Record `row` of partition p (owner, or a reader that validates). */
static inline struct embkv_record *embkv_part_record(const struct embkv_part *p,
						     uint64_t row)
{
	return (struct embkv_record *)(p->arena + row * p->table->stride);
}

/* Partition p's optimizer state of row (NULL when it keeps none). */
static inline void *embkv_part_state_of(const struct embkv_part *p,
					uint64_t row)
{
	return p->state ? p->state + row * p->table->state_bytes : NULL;
}

/*
 * Rows in and out of the engine: pull, find and scan hand rows out as
 * stored (t->payload_bytes each: dim elements of t->dtype), the bytes the
 * record checksum covers; push, assign and accumulate take fp32 (grads,
 * values, deltas: dim floats per key), and a 16-bit table rounds what it
 * writes back (assign: to nearest; push, accumulate: the table's rounding).
 * embkv_table_init_row writes key's initial row as stored (rounded to
 * nearest from the initializer's floats).
 */
void embkv_table_init_row(const struct embkv_table *t, uint64_t key,
			  void *dst);

/*
 * Lock-free validated lookup, any thread. For each key, row i of out (at
 * i * t->payload_bytes, the stored type) gets its row and found[i] = 1, or
 * dflt (one stored row; NULL: zeros) and found[i] = 0. Never returns
 * another key's row. Counts into *rs (may be NULL). Returns the number of
 * keys found.
 */
uint32_t embkv_table_find(const struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, void *out, uint8_t *found,
			  const void *dflt, struct embkv_read_stats *rs);

/*
 * Owner: pull rows, as stored (t->payload_bytes each). TRAIN: a missing
 * key is created with the initializer, unless the admission filter rejects
 * it (then out gets the initializer value and nothing is stored); INFER: a
 * missing key gets dflt (one stored row; NULL: zeros). found[i] = 1 when the key was stored before this call (found may
 * be NULL). Counts an access to every stored key. Returns the number found.
 */
uint32_t embkv_table_pull(struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, void *out, uint8_t *found,
			  enum embkv_pull_mode mode, const void *dflt);

/*
 * Owner: PULL_LAND's pull (net/PROTOCOL.md 5.26): key i's whole record
 * (header and payload as stored, 24 + payload_bytes) into out + at *
 * stride (at = pos ? pos[i] : i; stride >= 24 + payload_bytes), the rest
 * of the slot zeroed, and state[at] an enum embkv_wire_land_state: FOUND,
 * INSERTED (TRAIN: created as embkv_table_pull creates it), INIT (TRAIN,
 * the admission filter or a full table refused it: a record of the
 * initializer's row, version 0, sealed here, nothing stored) or NONE
 * (INFER miss: the slot zeroed). Counts as embkv_table_pull. Returns the
 * number found.
 */
enum embkv_land_state { /* the wire's embkv_wire_land_state */
	EMBKV_LAND_NONE = 0,
	EMBKV_LAND_FOUND = 1,
	EMBKV_LAND_INSERTED = 2,
	EMBKV_LAND_INIT = 3,
};
uint32_t embkv_table_pull_records(struct embkv_table *t, uint32_t n,
				  const uint64_t *keys, const uint32_t *pos,
				  uint8_t *out, size_t stride, uint8_t *state,
				  enum embkv_pull_mode mode);

/* Owner: the stored rows of keys into out (n rows of payload_bytes: dim
 * elements of the table's dtype, as stored), found[i] = 1 when
 * stored (else out untouched, 0); counts nothing and touches no LFU
 * count, so that replication reads (server/repl.c) leave eviction and
 * the table's statistics as they were. Returns the number found. */
uint32_t embkv_table_peek(struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, void *out, uint8_t *found);

/*
 * Owner: applies grads (n x dim) with the table's optimizer. A gradient for
 * a key that is not stored is dropped and counted, never applied to another
 * row; repeated keys are applied in order. Returns the number applied.
 */
uint32_t embkv_table_push(struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, const float *grads);

/* Owner: inserts or overwrites rows with values (n x dim), bypassing
 * admission; optimizer state of an overwritten row is reset. Returns the
 * number stored (less than n only when nothing could be evicted). */
uint32_t embkv_table_assign(struct embkv_table *t, uint32_t n,
			    const uint64_t *keys, const float *values);

/* Owner: removes keys; returns the number that were stored. */
uint32_t embkv_table_erase(struct embkv_table *t, uint32_t n,
			   const uint64_t *keys);

/*
 * Owner: adds counts[i] accesses to the LFU count of keys[i] when it is
 * stored (one-sided hits a client reports, net/RDMA.md section 4); keys not
 * stored are dropped, nothing is inserted (a count over the LFU maximum
 * saturates). Returns the number of keys found.
 */
uint32_t embkv_table_hits(struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, const uint32_t *counts);

/* Any thread: recent totals. */
void embkv_table_get_stats(const struct embkv_table *t,
			   struct embkv_table_stats *out);

/* One live row of a partition, as its owner holds it. The pointers are
 * valid during the callback only. */
struct embkv_row_view {
	uint64_t row;             /* row id in the partition */
	uint64_t key;
	uint64_t version;         /* grows with every change of the row */
	const void *payload;      /* payload_bytes: dim elements of dtype */
	const void *state;        /* state_bytes; NULL: none */
	uint32_t step;            /* Adam's per-row step; 0: none */
	uint32_t meta;            /* LFU word: count, dirty bit, epoch */
};

/*
 * Owner (or while nothing writes the partition): calls fn for every live
 * row of partition i in row order, the seam for checkpoints, export and
 * partition streams. Stops at the first nonzero return of fn and returns
 * it; 0 after every row (and for a partition that holds no memory).
 */
int embkv_part_for_each_row(const struct embkv_table *t, uint32_t i,
			    int (*fn)(void *ctx,
				      const struct embkv_row_view *r),
			    void *ctx);

/*
 * Restoring a partition from a checkpoint (server/ckpt_file.c), owner only
 * (or before the table is published). New code beside the hot paths.
 *
 * embkv_part_restore_row puts one row into partition i with its exact key,
 * payload, optimizer state (r->state: state_bytes; ignored when the
 * optimizer keeps none), step and LFU word. Its version is r->version,
 * unless the row it lands on already carried a version at least that high
 * (a partition used before), then that one plus 1: a row's version only
 * grows. Payload and private state are written first, the record sealed
 * last, the index slot published after. r->row is ignored. 0; -EINVAL
 * (partition not loaded, key of another partition, a version not below
 * EMBKV_VERSION_MAX (dead ones included), state missing); -EEXIST (key stored already); EMBKV_EFULL (at capacity, or the
 * index found no slot). On error the partition is as it was.
 */
int embkv_part_restore_row(struct embkv_table *t, uint32_t i,
			   const struct embkv_row_view *r);

/* Sets partition i's LFU decay clock (epoch, accesses into the period),
 * so that restored LFU words decay as they did. -EINVAL unless loaded. */
int embkv_part_restore_clock(struct embkv_table *t, uint32_t i,
			     uint16_t epoch, uint64_t ticks);

/*
 * Owner: the batched form of embkv_part_restore_row for n rows, the
 * restore path of a checkpoint file: keys are hashed and their buckets
 * prefetched a chunk ahead. Rows must belong to partition i (not checked
 * again: the caller checked every key). replace 0: a stored key is
 * -EEXIST; replace 1: a stored key's row is overwritten in place (payload,
 * state, step, LFU word as given; its version grows past the stored one).
 * A version at or past EMBKV_VERSION_MAX is -EINVAL. Returns 0, or the
 * error of row
 * *done (rows before it are in, the rest are not).
 */
int embkv_part_restore_rows(struct embkv_table *t, uint32_t i, uint32_t n,
			    const struct embkv_row_view *r, int replace,
			    uint32_t *done);

/* Owner: erases key from partition i without a tombstone (a delta file's
 * tombstone being applied). 1 when it was stored, else 0. */
int embkv_part_restore_erase(struct embkv_table *t, uint32_t i, uint64_t key);

/* Owner: erases every live row of partition i (undoes a failed restore;
 * versions keep growing), and forgets its checkpoint state (tombstones,
 * last snapshot): its next snapshot is full. Returns the number erased. */
uint64_t embkv_part_clear(struct embkv_table *t, uint32_t i);

/*
 * Checkpoint bookkeeping of a partition (the snapshot itself is
 * embkv_ckpt_snap in server/ckpt_file.h).
 *
 * A partition can give a delta on base B iff its last snapshot was B, B
 * was committed, and no tombstone was lost since:
 * embkv_part_delta_since() returns B, or 0 (the next snapshot is full).
 * Rows changed since the last snapshot carry the dirty bit (new rows
 * too); keys erased or evicted since are in tomb[] (only recorded once
 * a snapshot exists: before it there is nothing a delta could base on).
 */
static inline uint64_t embkv_part_delta_since(const struct embkv_part *p)
{
	uint64_t last = __atomic_load_n(&p->last_snap, __ATOMIC_ACQUIRE);

	return last && !p->tomb_lost &&
	       __atomic_load_n(&p->committed, __ATOMIC_ACQUIRE) == last ? last
									: 0;
}

/* Owner: a snapshot ckpt_id of partition i was taken (its copy loop
 * cleared the dirty bits): tombstones emptied, last snapshot = ckpt_id.
 * Called by embkv_ckpt_snap. */
void embkv_part_ckpt_snapped(struct embkv_table *t, uint32_t i,
			     uint64_t ckpt_id);

/* Any thread: checkpoint ckpt_id was committed (its manifest written):
 * a partition whose last snapshot is ckpt_id may now give deltas on it.
 * A late or unknown id changes nothing. */
void embkv_part_ckpt_committed(struct embkv_table *t, uint32_t i,
			       uint64_t ckpt_id);

/* Owner: a restore of a chain ending at ckpt_id is in: dirty bits
 * cleared, tombstones emptied, last snapshot = committed = ckpt_id (the
 * next snapshot may be a delta on it), seq = the last file's seq. */
void embkv_part_ckpt_restored(struct embkv_table *t, uint32_t i,
			      uint64_t ckpt_id, uint64_t seq);
/* ---- replication feed (server/feed.c) -------------------------------- */

/* Owner: partition i's feed, created with at least `entries` ring
 * entries if it has none; *id and *seq get the feed's id and the
 * partition's seq now (a follower snapshotting from here continues at
 * *seq). 0, -EINVAL (partition not loaded) or -ENOMEM. */
int embkv_part_feed_open(struct embkv_table *t, uint32_t i, uint64_t entries,
			 uint64_t *id, uint64_t *seq);
/* Owner: the changes since here cannot be told (rows restored or
 * cleared without seq bumps): a follower must snapshot again. */
void embkv_part_feed_break(struct embkv_part *p);
/*
 * Owner: the keys of mutations (since, *upto] of partition i, *upto =
 * min(seq, since + max), into keys (max entries; a key may repeat), *n
 * their count. 0, or -ESPIPE when feed id cannot tell (no feed, another
 * id, since before the feed's start or after seq, or overwritten: the
 * follower fell behind by more than the ring).
 */
int embkv_part_feed_read(const struct embkv_table *t, uint32_t i, uint64_t id,
			 uint64_t since, uint32_t max, uint64_t *keys,
			 uint32_t *n, uint64_t *upto);

/* ---- scan (export) ---------------------------------------------------- */

/* Rows a scan page visits beyond the ones it returns (dead rows skipped),
 * so that one page costs its owner a bounded time. */
#define EMBKV_PART_SCAN_VISIT 65536u

/*
 * Owner (or while nothing writes the partition): copies up to max live
 * rows of partition part, in row order from row id cursor, into keys (max
 * keys) and vals (max payloads of t->payload_bytes: values only, never
 * optimizer state); *n gets the count, *next the row id to continue from,
 * or UINT64_MAX (EMBKV_SCAN_END) when the partition's used rows are done.
 * Visits at most max + EMBKV_PART_SCAN_VISIT rows, so *n may be 0 before
 * the end. 0, or -EINVAL (partition out of range or not loaded, max 0, or
 * a cursor past the partition's capacity).
 */
int embkv_part_scan(const struct embkv_table *t, uint32_t part,
		    uint64_t cursor, uint32_t max, uint64_t *keys, void *vals,
		    uint32_t *n, uint64_t *next);

#endif
