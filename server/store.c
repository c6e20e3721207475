/*
 * Shard store: table and partition memory, and the owner-thread operations
 * (pull with find-or-insert, push through the optimizer, assign, erase,
 * LFU eviction and admission), and putting checkpointed rows back
 * (embkv_part_restore_row/_rows, beside the hot paths) with the
 * bookkeeping incremental checkpoints need (server/CHECKPOINT.md).
 *
 * Invariants kept here:
 * - Only the owner writes a partition. Every row change writes the payload
 *   first and seals key, version and checksum last (embkv_record_seal), and
 *   an index slot is published only after its record is sealed, so a
 *   lock-free reader that validates never accepts a half-written row.
 * - A row's version only grows, across erase and reuse too, so a record
 *   copy can never be mistaken for a later state of the same row.
 * - rows <= capacity at all times; an insert at capacity (or into two full
 *   buckets the cuckoo search cannot clear) evicts the least-frequently
 *   used row among the key's candidate buckets, reusing its row in place.
 * - Checkpoints: every row mutation (insert, push, assign, erase,
 *   eviction) bumps the partition's seq; every row written since the
 *   last snapshot carries the LFU dirty bit (row_fill sets it on new
 *   rows); once a snapshot exists, every key that leaves the partition
 *   (erase, eviction) is appended to its tombstones, or, past tomb_max,
 *   tomb_lost makes the next snapshot full.
 * - Batches run as a three-stage software pipeline (hash and prefetch the
 *   buckets; find a candidate slot and prefetch record and state; verify
 *   and act), so the memory latency of one key hides behind the others.
 *   The last stage always verifies the key on the row, so a hint that went
 *   stale in between (an insert, an eviction) only costs a rescan.
 * - 16-bit tables (fp16, bf16; EMBKV_TABLE_STATE_BF16 for the state): the
 *   arena holds rows as stored and the checksum covers those bytes; every
 *   update widens the row (and state) to fp32 on the stack, runs the same
 *   fp32 code as an fp32 table, and narrows once before the seal: to
 *   nearest for values given (assign, init, restore copies bytes as
 *   they are), with the table's rounding for optimizer and accumulate
 *   write-backs. Stochastic rounding draws from (sr_seed, key, the
 *   row's new version, element), so a replay gives the same rows. fp32
 *   tables keep their in-place paths (one predictable branch per row).
 */
#include <errno.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "hashing/f16.h"
#include "server/init.h"
#include "server/optim.h"
#include "server/probe.h"
#include "server/store.h"

#define NO_ROW EMBKV_ROW_MASK
#define HUGE_PAGE_BYTES (2u << 20)
#define PAGE_BYTES 4096u
#define CACHE_LINE 64u
/* Buckets scanned past a key's own for a victim when its two buckets are
 * empty but the partition is at capacity. */
#define VICTIM_SCAN_LIMIT 4096u
/* Tombstones a partition keeps between snapshots: past half its capacity
 * a delta is hardly smaller than a full file (a tombstone takes a row). */
#define TOMB_MAX(cap) ((cap) / 2 + 64)

/* ---- memory ------------------------------------------------------------ */

static size_t page_round(size_t bytes)
{
	return (bytes + PAGE_BYTES - 1) & ~(size_t)(PAGE_BYTES - 1);
}

static void locate_buckets(void *ctx, uint64_t row, uint64_t *b1, uint64_t *b2)
{
	const struct embkv_part *p = ctx;
	const struct embkv_record *r = embkv_part_record(p, row);
	struct embkv_khash h = embkv_hash_key(r->key, p->table->attr.hash_seed);

	embkv_hash_buckets(h, p->index.nbuckets, b1, b2);
}

/* The index of every unloaded partition: one empty bucket that nothing
 * ever writes (an unloaded partition has capacity 0, so no insert reaches
 * its index). */
static struct embkv_bucket empty_bucket;

/* Sizes of the mappings of a partition of cap rows. */
static void part_layout(const struct embkv_table *t, uint64_t cap,
			uint64_t *nbuckets, size_t bytes[EMBKV_MEM_COUNT])
{
	double load = t->attr.index_load > 0 ? t->attr.index_load
					     : EMBKV_INDEX_LOAD_DEFAULT;

	*nbuckets = embkv_index_buckets_for(cap, load);
	bytes[EMBKV_MEM_INDEX] = embkv_index_bytes(*nbuckets);
	bytes[EMBKV_MEM_ARENA] = page_round(cap * t->stride);
	bytes[EMBKV_MEM_STATE] = page_round(cap * t->state_bytes);
	bytes[EMBKV_MEM_STEPS] =
		t->opt->needs_step ? page_round(cap * sizeof(uint32_t)) : 0;
}

/*
 * A zeroed private mapping; pages are committed on first touch. One of
 * 2 MiB or more starts on a 2 MiB boundary (mapped 2 MiB larger, the
 * ends trimmed), so that huge pages cover all of it: random row and
 * bucket access then spares a TLB miss (a page walk) on nearly every key.
 */
static void *mem_map(size_t bytes)
{
	size_t len = bytes >= HUGE_PAGE_BYTES ? bytes + HUGE_PAGE_BYTES : bytes;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *a;

	if (m == MAP_FAILED)
		return NULL;
	if (len == bytes)
		return m;
	a = (uint8_t *)(((uintptr_t)m + HUGE_PAGE_BYTES - 1) &
			~(uintptr_t)(HUGE_PAGE_BYTES - 1));
	if (a > m)
		munmap(m, (size_t)(a - m));
	if (m + len > a + bytes)
		munmap(a + bytes, (size_t)(m + len - (a + bytes)));
	(void)madvise(a, bytes, MADV_HUGEPAGE);
	return a;
}

/* Whether partition i gets memory (owned NULL: every one does). */
static bool held(const uint8_t *owned, uint32_t i)
{
	return !owned || owned[i] != EMBKV_PART_ABSENT;
}

/* The region sizes of partition i (always true, for loop conditions). */
static bool part_sizes(const struct embkv_table *t, uint32_t i,
		       size_t b[EMBKV_MEM_COUNT])
{
	uint64_t nbuckets;

	part_layout(t, embkv_part_capacity(t->attr.capacity, t->nparts, i),
		    &nbuckets, b);
	return true;
}

/* An unloaded partition: no memory, capacity 0, the static empty index. */
static void part_clear(struct embkv_table *t, struct embkv_part *p,
		       uint32_t id)
{
	memset(p, 0, sizeof(*p));
	p->table = t;
	p->id = id;
	p->free_head = NO_ROW;
	p->index.buckets = &empty_bucket;
	p->index.nbuckets = 1;
}

int embkv_part_set_state(struct embkv_table *t, uint32_t i,
			 enum embkv_part_state state)
{
	struct embkv_part *p = &t->parts[i];
	int rc = 0;

	if (state != EMBKV_PART_SERVING && state != EMBKV_PART_UNLOADED &&
	    state != EMBKV_PART_MOVING)
		return -EINVAL;
	pthread_mutex_lock(&t->state_lock);
	if (!p->loaded) {
		rc = -EINVAL;
	} else if (p->pstate != state) {
		/* nunloaded counts the loaded partitions that do not serve */
		if (p->pstate == EMBKV_PART_SERVING)
			__atomic_add_fetch(&t->nunloaded, 1, __ATOMIC_RELEASE);
		__atomic_store_n(&p->pstate, (uint8_t)state, __ATOMIC_RELEASE);
		if (state == EMBKV_PART_SERVING)
			__atomic_sub_fetch(&t->nunloaded, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&t->state_lock);
	return rc;
}

/* Frees a partition's regions: its own mappings, or (a slice of the
 * table's slab) the pages behind them, the addresses staying reserved. */
static void part_mem_free(struct embkv_part *p)
{
	for (int k = 0; k < EMBKV_MEM_COUNT; k++) {
		if (!p->mem[k])
			continue;
		if (p->in_slab)
			(void)madvise(p->mem[k], p->mem_bytes[k], MADV_DONTNEED);
		else
			munmap(p->mem[k], p->mem_bytes[k]);
	}
}

void embkv_part_unload(struct embkv_table *t, uint32_t i)
{
	struct embkv_part *p = &t->parts[i];

	pthread_mutex_lock(&t->state_lock);
	if (!p->loaded) {
		pthread_mutex_unlock(&t->state_lock);
		return;
	}
	if (p->pstate != EMBKV_PART_SERVING)
		__atomic_sub_fetch(&t->nunloaded, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&p->pstate, EMBKV_PART_ABSENT, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&t->state_lock);
	embkv_index_fini(&p->index); /* its memory is p->mem[INDEX] */
	embkv_cms_fini(&p->cms);
	part_mem_free(p);
	free(p->tomb);
	free(p->feed);
	part_clear(t, p, i);
	t->nloaded--;
}

/* Loads partition i into the regions mem[] (each of the size part_layout
 * gives), or into mappings of its own when mem is NULL. */
static int part_load_into(struct embkv_table *t, uint32_t i,
			  uint8_t *const *mem)
{
	struct embkv_part *p = &t->parts[i];
	uint64_t cap = embkv_part_capacity(t->attr.capacity, t->nparts, i);
	uint64_t nbuckets;
	int err = -ENOMEM;

	if (p->loaded)
		return 0;
	part_layout(t, cap, &nbuckets, p->mem_bytes);
	p->in_slab = mem != NULL;
	for (int k = 0; k < EMBKV_MEM_COUNT; k++)
		if (p->mem_bytes[k] &&
		    !(p->mem[k] = mem ? mem[k] : mem_map(p->mem_bytes[k])))
			goto unmap;
	err = embkv_index_init(&p->index, nbuckets, p->mem[EMBKV_MEM_INDEX]);
	if (err)
		goto unmap;
	p->arena = p->mem[EMBKV_MEM_ARENA];
	p->state = p->mem[EMBKV_MEM_STATE];
	p->steps = (uint32_t *)p->mem[EMBKV_MEM_STEPS];
	p->capacity = cap;
	p->tomb_max = TOMB_MAX(cap);
	p->clock.period = (uint64_t)t->attr.lfu_decay_period * cap;
	if (t->attr.admit_after > 1) {
		/* Most sighted keys are cold, so the sketch is sized for
		 * twice the rows the partition can hold. */
		err = embkv_cms_init(&p->cms, cap ? 2 * cap : 1,
				     t->attr.hash_seed ^ ((uint64_t)i << 32), 0);
		if (err)
			goto unmap;
	}
	p->bytes = embkv_cms_bytes(&p->cms);
	for (int k = 0; k < EMBKV_MEM_COUNT; k++)
		p->bytes += p->mem_bytes[k];
	p->loaded = true;
	__atomic_store_n(&p->pstate, EMBKV_PART_SERVING, __ATOMIC_RELEASE);
	t->nloaded++;
	return 0;

unmap:
	embkv_index_fini(&p->index);
	part_mem_free(p);
	part_clear(t, p, i);
	return err;
}

int embkv_part_load(struct embkv_table *t, uint32_t i)
{
	return part_load_into(t, i, NULL);
}

/*
 * The partitions a table holds from its creation share one mapping per
 * region kind (a slab, 2 MiB aligned), each partition a page-aligned
 * slice of it: huge pages then cover regions far smaller than 2 MiB (a
 * partition's index often is), which separate mappings would leave on
 * 4 KiB pages (measured: in-process pulls about 15% slower). A partition
 * loaded later gets mappings of its own; one unloaded gives its slice's
 * pages back (MADV_DONTNEED).
 */
static int slabs_load(struct embkv_table *t, const uint8_t *owned)
{
	size_t total[EMBKV_MEM_COUNT] = { 0 }, off[EMBKV_MEM_COUNT] = { 0 };
	size_t b[EMBKV_MEM_COUNT];
	int err;

	for (uint32_t i = 0; i < t->nparts; i++)
		for (int k = 0; held(owned, i) && part_sizes(t, i, b) &&
				k < EMBKV_MEM_COUNT; k++)
			total[k] += b[k];
	for (int k = 0; k < EMBKV_MEM_COUNT; k++) {
		if (!total[k])
			continue;
		t->slab[k] = mem_map(total[k]);
		if (!t->slab[k])
			return -ENOMEM;
		t->slab_bytes[k] = total[k];
	}
	for (uint32_t i = 0; i < t->nparts; i++) {
		uint8_t *mem[EMBKV_MEM_COUNT];

		if (!held(owned, i))
			continue;
		part_sizes(t, i, b);
		for (int k = 0; k < EMBKV_MEM_COUNT; k++) {
			mem[k] = b[k] ? t->slab[k] + off[k] : NULL;
			off[k] += b[k];
		}
		err = part_load_into(t, i, mem);
		if (!err && owned)
			err = embkv_part_set_state(t, i, owned[i]);
		if (err)
			return err;
	}
	return 0;
}

/* Fills the geometry fields of t (which holds a copy of a checked attr). */
static void table_layout(struct embkv_table *t)
{
	const struct embkv_table_attr *attr = &t->attr;

	t->opt = embkv_optim_get(attr->opt.type);
	t->nparts = attr->partitions;
	t->part_bits = (unsigned)__builtin_ctz(attr->partitions);
	t->dim = attr->dim;
	t->dtype = attr->dtype;
	t->payload_bytes = (size_t)attr->dim * embkv_dtype_size(attr->dtype);
	t->stride = embkv_record_stride(t->payload_bytes);
	t->state_floats = t->opt->state_floats(attr->dim);
	t->state_bf16 = (attr->flags & EMBKV_TABLE_STATE_BF16) != 0;
	t->state_bytes = (size_t)t->state_floats *
			 (t->state_bf16 ? sizeof(uint16_t) : sizeof(float));
	t->narrow = attr->dtype != EMBKV_DTYPE_F32;
	t->round_nearest = (attr->flags & EMBKV_TABLE_ROUND_NEAREST) != 0;
	t->sr_seed = attr->init.seed ^ UINT64_C(0x7372726f756e6421);
}

static int attr_usable(const struct embkv_table_attr *attr)
{
	int err = embkv_table_attr_check(attr);

	if (err)
		return err;
	if (embkv_optim_check(&attr->opt) || embkv_init_check(&attr->init))
		return -EINVAL;
	return 0;
}

int embkv_table_size_parts(const struct embkv_table_attr *attr,
			   const uint8_t *owned, uint64_t *bytes)
{
	struct embkv_table t;
	uint64_t sum = 0;
	int err;

	*bytes = 0;
	err = attr_usable(attr);
	if (err)
		return err;
	memset(&t, 0, sizeof(t));
	t.attr = *attr;
	table_layout(&t);
	for (uint32_t i = 0; i < t.nparts; i++) {
		size_t b[EMBKV_MEM_COUNT];

		if (!held(owned, i))
			continue;
		part_sizes(&t, i, b);
		for (int k = 0; k < EMBKV_MEM_COUNT; k++)
			if (__builtin_add_overflow(sum, (uint64_t)b[k], &sum))
				return -ENOMEM;
	}
	*bytes = sum;
	return 0;
}

int embkv_table_size(const struct embkv_table_attr *attr, uint64_t *bytes)
{
	return embkv_table_size_parts(attr, NULL, bytes);
}

int embkv_table_create_parts(const struct embkv_table_attr *attr,
			     const uint8_t *owned, struct embkv_table **out)
{
	struct embkv_table *t;
	int err;

	*out = NULL;
	err = attr_usable(attr);
	if (err)
		return err;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->attr = *attr;
	pthread_mutex_init(&t->state_lock, NULL);
	table_layout(t);
	t->parts = aligned_alloc(CACHE_LINE, sizeof(*t->parts) * t->nparts);
	if (!t->parts) {
		pthread_mutex_destroy(&t->state_lock);
		free(t);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < t->nparts; i++)
		part_clear(t, &t->parts[i], i);
	err = slabs_load(t, owned);
	if (err) {
		embkv_table_destroy(t);
		return err;
	}
	*out = t;
	return 0;
}

int embkv_table_create(const struct embkv_table_attr *attr,
		       struct embkv_table **out)
{
	return embkv_table_create_parts(attr, NULL, out);
}

void embkv_table_destroy(struct embkv_table *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->nparts; i++)
		embkv_part_unload(t, i);
	for (int k = 0; k < EMBKV_MEM_COUNT; k++)
		if (t->slab[k])
			munmap(t->slab[k], t->slab_bytes[k]);
	free(t->parts);
	pthread_mutex_destroy(&t->state_lock);
	free(t);
}

/* ---- rows -------------------------------------------------------------- */

static void *row_state(const struct embkv_part *p, uint64_t row)
{
	return embkv_part_state_of(p, row);
}

/* ---- 16-bit rows and state ---------------------------------------------- */

/* Stochastic rounding's draw base for the write of (key, version); salt
 * tells the row's draws from its state's. */
static uint64_t sr_base(const struct embkv_table *t, uint64_t key,
			uint64_t version, uint64_t salt)
{
	uint64_t kv[2] = { key, version };

	return XXH3_64bits_withSeed(kv, sizeof(kv), t->sr_seed ^ salt);
}

#define SR_SALT_STATE UINT64_C(0x5354415445)

/* n floats to n 16-bit values of dtype: to nearest when base is 0 or the
 * table rounds to nearest, else stochastically from base. */
static void narrow_n(const struct embkv_table *t, enum embkv_dtype dtype,
		     const float *src, uint16_t *dst, size_t n, uint64_t base,
		     bool nearest)
{
	if (nearest || t->round_nearest) {
		embkv_dtype_from_f32(dtype, src, dst, n);
	} else if (dtype == EMBKV_DTYPE_BF16) {
		for (size_t i = 0; i < n; i++)
			dst[i] = embkv_f32_to_bf16_sr(src[i],
						      embkv_sr_bits(base,
								    (uint32_t)i));
	} else {
		for (size_t i = 0; i < n; i++)
			dst[i] = embkv_f32_to_f16_sr(src[i],
						     embkv_sr_bits(base,
								   (uint32_t)i));
	}
}

/* fp16 write-backs of an optimizer step or an accumulate saturate at the
 * largest finite half (65504) instead of overflowing to Inf, which would
 * stay Inf (or become NaN) in every later step; bf16 has fp32's range.
 * NaN and the infinities of the fp32 result pass as they are. */
static void f16_saturate(const struct embkv_table *t, float *w)
{
	if (t->dtype != EMBKV_DTYPE_F16)
		return;
	for (uint32_t k = 0; k < t->dim; k++) {
		if (w[k] > 65504.0f && w[k] <= FLT_MAX)
			w[k] = 65504.0f;
		else if (w[k] < -65504.0f && w[k] >= -FLT_MAX)
			w[k] = -65504.0f;
	}
}

/* A row's values as stored, from floats: to nearest when nearest, else
 * with the table's rounding for the write of (key, version). */
static void row_store(const struct embkv_table *t, const float *src,
		      void *dst, uint64_t key, uint64_t version, bool nearest)
{
	if (!t->narrow)
		memcpy(dst, src, t->payload_bytes);
	else
		narrow_n(t, t->dtype, src, dst, t->dim,
			 nearest ? 0 : sr_base(t, key, version, 0), nearest);
}

/* The 16-bit halves of state_init and embkv_table_init_row, out of line
 * so that the fp32 paths carry none of their stack. */
static __attribute__((noinline)) void
state_init_bf16(const struct embkv_table *t, const struct embkv_opt_attr *hp,
		void *state)
{
	float wide[2 * EMBKV_MAX_DIM];

	t->opt->init_state(hp, t->dim, wide);
	narrow_n(t, EMBKV_DTYPE_BF16, wide, state, t->state_floats, 0, true);
}

static __attribute__((noinline)) void
init_row_narrow(const struct embkv_table *t, uint64_t key, void *dst)
{
	float wide[EMBKV_MAX_DIM];

	embkv_init_row(&t->attr.init, key, t->dim, wide);
	row_store(t, wide, dst, key, 0, true);
}

/* Writes a fresh row's optimizer state (as stored). */
static void state_init(const struct embkv_table *t,
		       const struct embkv_opt_attr *hp, void *state)
{
	if (t->state_bf16)
		state_init_bf16(t, hp, state);
	else
		t->opt->init_state(hp, t->dim, state);
}

void embkv_table_init_row(const struct embkv_table *t, uint64_t key,
			  void *dst)
{
	if (t->narrow)
		init_row_narrow(t, key, dst);
	else
		embkv_init_row(&t->attr.init, key, t->dim, dst);
}

/*
 * An optimizer step on a row that is not all fp32 (16-bit row or bf16
 * state): widen, the fp32 kernel, narrow with the table's rounding for
 * the row's next version, which the caller then seals. Kept out of line
 * so that the fp32 loop carries none of its stack.
 */
static __attribute__((noinline)) void
push_wide(const struct embkv_table *t, const struct embkv_opt_attr *hp,
	  struct embkv_part *p, uint64_t row, struct embkv_record *r,
	  uint64_t key, const float *g)
{
	float w[EMBKV_MAX_DIM] __attribute__((aligned(64)));
	float st[2 * EMBKV_MAX_DIM] __attribute__((aligned(64)));
	uint64_t version = r->version + 1;
	void *state = row_state(p, row);
	float *wp = t->narrow ? w : (float *)r->payload;
	float *sp = t->state_bf16 ? st : state;

	if (t->narrow)
		embkv_dtype_to_f32(t->dtype, r->payload, w, t->dim);
	if (t->state_bf16)
		embkv_dtype_to_f32(EMBKV_DTYPE_BF16, state, st,
				   t->state_floats);
	t->opt->apply(hp, t->dim, wp, sp, p->steps ? p->steps + row : NULL,
		      g);
	if (t->state_bf16)
		narrow_n(t, EMBKV_DTYPE_BF16, st, state, t->state_floats,
			 sr_base(t, key, version, SR_SALT_STATE), false);
	if (t->narrow) {
		f16_saturate(t, w);
		row_store(t, w, r->payload, key, version, false);
	}
}

/* accumulate on a 16-bit row: widen, add, narrow (table's rounding). */
static __attribute__((noinline)) void
accumulate_wide(const struct embkv_table *t, struct embkv_record *r,
		uint64_t key, const float *d)
{
	float w[EMBKV_MAX_DIM] __attribute__((aligned(64)));

	embkv_dtype_to_f32(t->dtype, r->payload, w, t->dim);
	for (uint32_t k = 0; k < t->dim; k++)
		w[k] += d[k];
	f16_saturate(t, w);
	row_store(t, w, r->payload, key, r->version + 1, false);
}

static uint32_t *row_step(const struct embkv_part *p, uint64_t row)
{
	return p->steps ? p->steps + row : NULL;
}

static uint32_t *row_meta(const struct embkv_part *p, uint64_t row)
{
	return embkv_record_meta(embkv_part_record(p, row),
				 p->table->payload_bytes);
}

/* One row mutation of key (owner; others read seq with __atomic); a
 * replication feed, while one exists, notes the key (server/feed.c). */
static void seq_bump(struct embkv_part *p, uint64_t key)
{
	uint64_t s = p->seq + 1;

	if (__builtin_expect(p->feed != NULL, 0))
		p->feed->keys[s & p->feed->mask] = key;
	__atomic_store_n(&p->seq, s, __ATOMIC_RELAXED);
}

/* Key left the partition (erase, eviction): a tombstone for the next
 * delta, once a snapshot exists to base one on. */
static void tomb_add(struct embkv_part *p, uint64_t key)
{
	if (!__atomic_load_n(&p->last_snap, __ATOMIC_RELAXED) || p->tomb_lost)
		return;
	if (p->ntomb == p->tomb_cap) {
		uint64_t cap = p->tomb_cap ? 2 * p->tomb_cap : 256;
		uint64_t *n;

		if (cap > p->tomb_max)
			cap = p->tomb_max;
		n = p->ntomb < cap ? realloc(p->tomb, cap * sizeof(*n)) : NULL;
		if (!n) {
			p->tomb_lost = true;
			return;
		}
		p->tomb = n;
		p->tomb_cap = cap;
	}
	p->tomb[p->ntomb++] = key;
}

/* Counts one server-visible access to a row. */
static void touch(struct embkv_part *p, uint64_t row)
{
	embkv_lfu_touch(row_meta(p, row), p->clock.epoch);
	if (embkv_lfu_clock_tick(&p->clock, 1))
		p->st.decays++;
}

/* Writes key's new row (values, or the initializer when NULL) into `row`,
 * resets its private state and seals it. The row is not yet in the index. */
static void row_fill(struct embkv_part *p, uint64_t row, uint64_t key,
		     const float *values)
{
	const struct embkv_table *t = p->table;
	struct embkv_record *r = embkv_part_record(p, row);
	uint64_t version = (r->version & ~EMBKV_VERSION_DEAD) + 1;

	if (values)
		row_store(t, values, r->payload, key, version, true);
	else
		embkv_table_init_row(t, key, r->payload);
	embkv_record_seal(r, key, version, t->payload_bytes);
	if (p->state) {
		struct embkv_opt_attr hp;

		embkv_table_opt_get(t, &hp);
		state_init(t, &hp, row_state(p, row));
	}
	if (p->steps)
		p->steps[row] = 0;
	*row_meta(p, row) = embkv_lfu_make(0, 1, p->clock.epoch);
}

/*
 * The free list is linked through the dead rows' payloads. A payload of
 * 8 bytes or more holds the next row as a u64; a shorter one (fp32 dim
 * 1, 16-bit dims 1 to 3) as a u32 (UINT32_MAX: none), which always fits
 * before the meta word (it sits at the payload's bytes rounded up to 4,
 * hashing/record.h): a u64 there ran into the meta word, which row_free
 * zeroes, and cut the link.
 */
#define FREE_LINK_NONE32 UINT32_MAX

static void free_link_put(const struct embkv_table *t,
			  struct embkv_record *r, uint64_t next)
{
	if (t->payload_bytes >= sizeof(uint64_t)) {
		memcpy(r->payload, &next, sizeof(next));
	} else {
		uint32_t v = next == NO_ROW ? FREE_LINK_NONE32
					    : (uint32_t)next;

		memcpy(r->payload, &v, sizeof(v));
	}
}

static uint64_t free_link_get(const struct embkv_table *t,
			      const struct embkv_record *r)
{
	uint64_t next;
	uint32_t v;

	if (t->payload_bytes >= sizeof(uint64_t)) {
		memcpy(&next, r->payload, sizeof(next));
		return next;
	}
	memcpy(&v, r->payload, sizeof(v));
	return v == FREE_LINK_NONE32 ? NO_ROW : v;
}

/* Marks a row dead (readers then report it missing) and frees it. */
static void row_free(struct embkv_part *p, uint64_t row)
{
	const struct embkv_table *t = p->table;
	struct embkv_record *r = embkv_part_record(p, row);
	uint64_t version = (r->version + 1) | EMBKV_VERSION_DEAD;
	bool link = t->payload_bytes >= sizeof(uint64_t) ||
		    row < FREE_LINK_NONE32;

	/* (a u32 link cannot name row 2^32 - 1, the last of a partition
	 * of exactly 2^32 rows: that row stays dead, not reused) */
	if (link)
		free_link_put(t, r, p->free_head);
	embkv_record_seal(r, r->key, version, t->payload_bytes);
	*row_meta(p, row) = 0;
	if (link)
		p->free_head = row;
	p->rows--;
}

static uint64_t row_alloc(struct embkv_part *p)
{
	uint64_t row;

	if (p->free_head != NO_ROW) {
		row = p->free_head;
		p->free_head = free_link_get(p->table,
					     embkv_part_record(p, row));
	} else {
		row = p->next_fresh++;
	}
	p->rows++;
	return row;
}

/* ---- lookup ------------------------------------------------------------ */

/* Owner: exact lookup. Returns the row of key or NO_ROW; *bucket and *slot
 * locate its index slot. */
static uint64_t locate(const struct embkv_probe *c, uint64_t key, uint64_t *bucket,
		       unsigned *slot)
{
	const struct embkv_part *p = c->p;
	uint16_t fp = embkv_hash_fp(c->h);
	uint64_t bs[2] = { c->b1, c->b2 };

	for (unsigned k = 0; k < 2; k++)
		for (unsigned m = embkv_index_match(&p->index, bs[k], fp); m;
		     m &= m - 1) {
			unsigned i = (unsigned)__builtin_ctz(m);
			uint64_t row = embkv_slot_row(p->index.buckets[bs[k]].slot[i]);

			if (embkv_part_record(p, row)->key == key) {
				*bucket = bs[k];
				*slot = i;
				return row;
			}
		}
	return NO_ROW;
}

/* ---- insert and eviction ----------------------------------------------- */

/* Lowest-count occupied slot among the key's buckets, or, when both are
 * empty, in the buckets that follow b1. Returns 0 and its place, or -1. */
static int pick_victim(const struct embkv_probe *c, uint64_t *vb, unsigned *vs)
{
	const struct embkv_part *p = c->p;
	const struct embkv_index *ix = &p->index;
	uint64_t rows[2 * EMBKV_BUCKET_SLOTS], bk[2 * EMBKV_BUCKET_SLOTS];
	unsigned sl[2 * EMBKV_BUCKET_SLOTS], n = 0;
	uint64_t bs[2] = { c->b1, c->b2 };

	for (unsigned k = 0; k < 2; k++)
		for (unsigned i = 0; i < EMBKV_BUCKET_SLOTS; i++) {
			uint64_t s = ix->buckets[bs[k]].slot[i];

			if (s) {
				rows[n] = embkv_slot_row(s);
				bk[n] = bs[k];
				sl[n++] = i;
			}
		}
	for (uint64_t d = 1; n == 0 && d <= VICTIM_SCAN_LIMIT &&
			     d < ix->nbuckets; d++) {
		uint64_t b = (c->b1 + d) % ix->nbuckets;

		for (unsigned i = 0; i < EMBKV_BUCKET_SLOTS; i++) {
			uint64_t s = ix->buckets[b].slot[i];

			if (s) {
				rows[n] = embkv_slot_row(s);
				bk[n] = b;
				sl[n++] = i;
			}
		}
	}
	if (n == 0)
		return -1;
	{
		unsigned counts[2 * EMBKV_BUCKET_SLOTS];

		for (unsigned i = 0; i < n; i++)
			counts[i] = embkv_lfu_count(*row_meta(p, rows[i]),
						    p->clock.epoch);
		n = embkv_lfu_pick_victim(counts, n);
	}
	*vb = bk[n];
	*vs = sl[n];
	return 0;
}

static int in_own_buckets(const struct embkv_probe *c, uint64_t b)
{
	return b == c->b1 || b == c->b2;
}

/*
 * Owner: stores key (values or the initializer) as a new row. Returns the
 * row, or NO_ROW when nothing could be evicted.
 */
static uint64_t insert(struct embkv_probe *c, uint64_t key, const float *values)
{
	struct embkv_part *p = c->p;
	uint64_t slot_fp = embkv_hash_fp(c->h);
	struct embkv_index_locator loc = { locate_buckets, p };
	uint64_t row, vb;
	unsigned vs;
	int index_full = 0;

	if (p->rows < p->capacity) {
		row = row_alloc(p);
		row_fill(p, row, key, values);
		if (embkv_index_insert(&p->index, embkv_slot_make(slot_fp, row),
				       c->b1, c->b2, &loc) == 0)
			goto inserted;
		row_free(p, row);
		index_full = 1;
	}
	if (pick_victim(c, &vb, &vs))
		return NO_ROW;
	row = embkv_slot_row(p->index.buckets[vb].slot[vs]);
	tomb_add(p, embkv_part_record(p, row)->key);
	seq_bump(p, embkv_part_record(p, row)->key);
	if (in_own_buckets(c, vb)) {
		/* Reuse the victim's row and slot in place: the slot never
		 * points at a half-written record, and a reader of the old key
		 * sees the new key in the record and reports a miss. */
		row_fill(p, row, key, values);
		embkv_index_slot_store(&p->index, vb, vs,
				       embkv_slot_make(slot_fp, row));
	} else {
		/* Victim elsewhere (the key's buckets are empty): unlink it,
		 * then reuse its row under the key's own buckets. */
		embkv_index_clear(&p->index, vb, vs);
		row_fill(p, row, key, values);
		if (embkv_index_insert(&p->index, embkv_slot_make(slot_fp, row),
				       c->b1, c->b2, &loc) != 0) {
			/* Cannot happen (both buckets were empty); if it did,
			 * the victim is gone and its row goes back free. */
			row_free(p, row);
			p->st.evictions++;
			return NO_ROW;
		}
	}
	p->st.evictions++;
	p->st.index_evictions += (uint64_t)index_full;
inserted:
	seq_bump(p, key);
	p->st.inserts++;
	return row;
}

/* ---- batch operations -------------------------------------------------- */

/* The row of key: a fingerprint match of the probe when its record holds
 * the key (an insert or an eviction since the probe only costs a
 * rescan), else a rescan of both buckets. */
static uint64_t probe_locate(const struct embkv_probe *c, uint64_t key)
{
	uint64_t b;
	unsigned s;

	for (unsigned m = c->match; m; m &= m - 1) {
		uint64_t row = embkv_probe_row(c, (unsigned)__builtin_ctz(m));
		const struct embkv_record *r = embkv_part_record(c->p, row);

		if (r->key == key && !(r->version & EMBKV_VERSION_DEAD))
			return row;
	}
	return locate(c, key, &b, &s);
}

static void fill_default(void *dst, const void *dflt, size_t bytes)
{
	if (dflt)
		memcpy(dst, dflt, bytes);
	else
		memset(dst, 0, bytes);
}

/* Pull of a key that is not stored: create it, or say what it reads as. */
static uint64_t pull_miss(struct embkv_probe *c, uint64_t key, void *dst,
			  enum embkv_pull_mode mode, const void *dflt)
{
	const struct embkv_table *t = c->p->table;
	uint64_t row = NO_ROW;

	if (mode == EMBKV_PULL_INFER) {
		fill_default(dst, dflt, t->payload_bytes);
	} else if (t->attr.admit_after > 1 &&
		   embkv_cms_add(&c->p->cms, key) < t->attr.admit_after) {
		c->p->st.admit_rejects++;
		embkv_table_init_row(t, key, dst);
	} else {
		row = insert(c, key, NULL);
		if (row == NO_ROW)
			embkv_table_init_row(t, key, dst);
	}
	return row;
}

uint32_t embkv_table_pull(struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, void *out, uint8_t *found,
			  enum embkv_pull_mode mode, const void *dflt)
{
	struct embkv_probe pr[EMBKV_PROBE_CHUNK];
	uint32_t nfound = 0;

	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = embkv_probe_chunk(t, pr, keys, n, i0, 1);
		for (uint32_t j = 0; j < m; j++) {
			uint32_t i = i0 + j;
			struct embkv_probe *c = &pr[j];
			uint8_t *dst = (uint8_t *)out +
				       (size_t)i * t->payload_bytes;
			uint64_t row = probe_locate(c, keys[i]);
			int hit = row != NO_ROW;

			if (hit)
				c->p->st.hits++;
			else {
				c->p->st.misses++;
				row = pull_miss(c, keys[i], dst, mode, dflt);
			}
			if (row != NO_ROW) {
				memcpy(dst, embkv_part_record(c->p, row)->payload,
				       t->payload_bytes);
				touch(c->p, row);
			}
			if (found)
				found[i] = (uint8_t)hit;
			nfound += (uint32_t)hit;
		}
	}
	return nfound;
}

uint32_t embkv_table_pull_records(struct embkv_table *t, uint32_t n,
				  const uint64_t *keys, const uint32_t *pos,
				  uint8_t *out, size_t stride, uint8_t *state,
				  enum embkv_pull_mode mode)
{
	struct embkv_probe pr[EMBKV_PROBE_CHUNK];
	size_t rec = EMBKV_RECORD_HDR_BYTES + t->payload_bytes;
	uint32_t nfound = 0;

	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = embkv_probe_chunk(t, pr, keys, n, i0, 1);
		for (uint32_t j = 0; j < m; j++) {
			uint32_t i = i0 + j, at = pos ? pos[i] : i;
			struct embkv_probe *c = &pr[j];
			struct embkv_record *dst =
				(struct embkv_record *)(void *)(out +
								(size_t)at *
									stride);
			uint64_t row = probe_locate(c, keys[i]);
			int hit = row != NO_ROW;

			if (hit) {
				c->p->st.hits++;
			} else {
				c->p->st.misses++;
				row = mode == EMBKV_PULL_INFER
					      ? NO_ROW
					      : pull_miss(c, keys[i],
							  dst->payload, mode,
							  NULL);
			}
			/* the owner is the partition's only writer: the
			 * record is copied whole and consistent */
			if (row != NO_ROW) {
				memcpy(dst, embkv_part_record(c->p, row), rec);
				touch(c->p, row);
				state[at] = hit ? EMBKV_LAND_FOUND
						: EMBKV_LAND_INSERTED;
			} else if (mode == EMBKV_PULL_INFER) {
				memset(dst, 0, rec);
				state[at] = EMBKV_LAND_NONE;
			} else { /* refused insert: the initializer's row */
				embkv_record_seal(dst, keys[i], 0,
						  t->payload_bytes);
				state[at] = EMBKV_LAND_INIT;
			}
			memset((uint8_t *)dst + rec, 0, stride - rec);
			nfound += (uint32_t)hit;
		}
	}
	return nfound;
}

uint32_t embkv_table_peek(struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, void *out, uint8_t *found)
{
	struct embkv_probe pr[EMBKV_PROBE_CHUNK];
	uint32_t nfound = 0;

	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = embkv_probe_chunk(t, pr, keys, n, i0, 0);
		for (uint32_t j = 0; j < m; j++) {
			uint32_t i = i0 + j;
			uint64_t row = probe_locate(&pr[j], keys[i]);

			found[i] = row != NO_ROW;
			if (row == NO_ROW)
				continue;
			memcpy((uint8_t *)out + (size_t)i * t->payload_bytes,
			       embkv_part_record(pr[j].p, row)->payload,
			       t->payload_bytes);
			nfound++;
		}
	}
	return nfound;
}

uint32_t embkv_table_push(struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, const float *grads)
{
	struct embkv_probe pr[EMBKV_PROBE_CHUNK];
	struct embkv_opt_attr hp;
	uint32_t applied = 0;

	embkv_table_opt_get(t, &hp); /* once per batch: may change at run time */
	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = embkv_probe_chunk(t, pr, keys, n, i0, 1);
		for (uint32_t j = 0; j < m; j++) {
			uint32_t i = i0 + j;
			struct embkv_probe *c = &pr[j];
			struct embkv_part *p = c->p;
			uint64_t row = probe_locate(c, keys[i]);
			struct embkv_record *r;

			if (row == NO_ROW) {
				p->st.push_dropped++;
				continue;
			}
			r = embkv_part_record(p, row);
			if (t->narrow || t->state_bf16)
				push_wide(t, &hp, p, row, r, keys[i],
					  grads + (size_t)i * t->dim);
			else
				t->opt->apply(&hp, t->dim, r->payload,
					      row_state(p, row),
					      row_step(p, row),
					      grads + (size_t)i * t->dim);
			embkv_record_seal(r, keys[i], r->version + 1, t->payload_bytes);
			embkv_lfu_mark_dirty(row_meta(p, row));
			touch(p, row);
			seq_bump(p, keys[i]);
			p->st.pushes++;
			applied++;
		}
	}
	return applied;
}

uint32_t embkv_table_assign(struct embkv_table *t, uint32_t n,
			    const uint64_t *keys, const float *values)
{
	struct embkv_probe pr[EMBKV_PROBE_CHUNK];
	uint32_t stored = 0;

	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = embkv_probe_chunk(t, pr, keys, n, i0, 1);
		for (uint32_t j = 0; j < m; j++) {
			uint32_t i = i0 + j;
			struct embkv_probe *c = &pr[j];
			const float *v = values + (size_t)i * t->dim;
			uint64_t row = probe_locate(c, keys[i]);

			if (row != NO_ROW) {
				/* Overwrite in place: the slot keeps pointing at the
				 * row, the version grows, the count is kept. */
				uint32_t meta = *row_meta(c->p, row);

				row_fill(c->p, row, keys[i], v);
				*row_meta(c->p, row) = meta | EMBKV_LFU_DIRTY;
				seq_bump(c->p, keys[i]);
			} else {
				row = insert(c, keys[i], v);
				if (row == NO_ROW)
					continue;
			}
			touch(c->p, row);
			c->p->st.assigns++;
			stored++;
		}
	}
	return stored;
}

uint32_t embkv_table_accumulate(struct embkv_table *t, uint32_t n,
				const uint64_t *keys, const float *deltas)
{
	struct embkv_probe pr[EMBKV_PROBE_CHUNK];
	uint32_t done = 0;

	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = embkv_probe_chunk(t, pr, keys, n, i0, 1);
		for (uint32_t j = 0; j < m; j++) {
			uint32_t i = i0 + j;
			struct embkv_probe *c = &pr[j];
			const float *d = deltas + (size_t)i * t->dim;
			uint64_t row = probe_locate(c, keys[i]);
			struct embkv_record *r;
			float *w;

			if (row == NO_ROW) {
				row = insert(c, keys[i], NULL);
				if (row == NO_ROW)
					continue;
			}
			r = embkv_part_record(c->p, row);
			if (t->narrow) {
				accumulate_wide(t, r, keys[i], d);
			} else {
				w = (float *)r->payload;
				for (uint32_t k = 0; k < t->dim; k++)
					w[k] += d[k];
			}
			embkv_record_seal(r, keys[i], r->version + 1,
					  t->payload_bytes);
			embkv_lfu_mark_dirty(row_meta(c->p, row));
			touch(c->p, row);
			seq_bump(c->p, keys[i]);
			c->p->st.assigns++;
			done++;
		}
	}
	return done;
}

uint32_t embkv_table_erase(struct embkv_table *t, uint32_t n,
			   const uint64_t *keys)
{
	uint32_t erased = 0;

	for (uint32_t i = 0; i < n; i++) {
		struct embkv_probe c;
		uint64_t row, b;
		unsigned s;

		embkv_probe_hash(t, &c, keys[i]);
		row = locate(&c, keys[i], &b, &s);
		if (row == NO_ROW)
			continue;
		/* Unlink first, then kill the record: a reader that still
		 * holds the old slot sees a dead record. */
		embkv_index_clear(&c.p->index, b, s);
		row_free(c.p, row);
		tomb_add(c.p, keys[i]);
		seq_bump(c.p, keys[i]);
		c.p->st.erases++;
		erased++;
	}
	return erased;
}

uint32_t embkv_table_hits(struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, const uint32_t *counts)
{
	struct embkv_probe pr[EMBKV_PROBE_CHUNK];
	uint32_t found = 0;

	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = embkv_probe_chunk(t, pr, keys, n, i0, 1);
		for (uint32_t j = 0; j < m; j++) {
			uint32_t i = i0 + j;
			struct embkv_part *p = pr[j].p;
			uint64_t row = probe_locate(&pr[j], keys[i]);
			unsigned add = counts[i] < EMBKV_LFU_COUNT_MAX ?
				       counts[i] : EMBKV_LFU_COUNT_MAX;

			if (row == NO_ROW)
				continue;
			found++;
			if (!add)
				continue;
			embkv_lfu_add(row_meta(p, row), add, p->clock.epoch);
			if (embkv_lfu_clock_tick(&p->clock, add))
				p->st.decays++;
		}
	}
	return found;
}

int embkv_part_for_each_row(const struct embkv_table *t, uint32_t i,
			    int (*fn)(void *ctx,
				      const struct embkv_row_view *r),
			    void *ctx)
{
	const struct embkv_part *p = &t->parts[i];

	/* Rows [0, next_fresh) were used; an erased or never-indexed one
	 * is sealed dead, every other one is live (eviction rewrites a row
	 * in place under its new key). */
	for (uint64_t row = 0; p->loaded && row < p->next_fresh; row++) {
		struct embkv_record *r = embkv_part_record(p, row);
		struct embkv_row_view v;
		int rc;

		if (r->version & EMBKV_VERSION_DEAD)
			continue;
		v.row = row;
		v.key = r->key;
		v.version = r->version;
		v.payload = r->payload;
		v.state = row_state(p, row);
		v.step = p->steps ? p->steps[row] : 0;
		v.meta = *row_meta(p, row);
		rc = fn(ctx, &v);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- restore (checkpoints) ----------------------------------------- */

/* Puts one row in (c: its probe, hashed), or overwrites key's row in
 * place when replace is set. embkv_part_restore_rows has the contract. */
static int restore_one(struct embkv_part *p, const struct embkv_probe *c,
		       const struct embkv_row_view *r, int replace)
{
	const struct embkv_table *t = p->table;
	struct embkv_index_locator loc = { locate_buckets, p };
	struct embkv_record *rec;
	uint64_t row, b, version;
	unsigned s;
	int fresh;

	row = locate(c, r->key, &b, &s);
	fresh = row == NO_ROW;
	if (!fresh && !replace)
		return -EEXIST;
	if (fresh) {
		if (p->rows >= p->capacity)
			return EMBKV_EFULL;
		row = row_alloc(p);
	}
	rec = embkv_part_record(p, row);
	version = (rec->version & ~EMBKV_VERSION_DEAD) + 1;
	if (r->version > version)
		version = r->version;
	memcpy(rec->payload, r->payload, t->payload_bytes);
	if (p->state)
		memcpy(row_state(p, row), r->state, t->state_bytes);
	if (p->steps)
		p->steps[row] = r->step;
	*row_meta(p, row) = r->meta;
	embkv_record_seal(rec, r->key, version, t->payload_bytes);
	if (fresh && embkv_index_insert(&p->index,
					embkv_slot_make(embkv_hash_fp(c->h), row),
					c->b1, c->b2, &loc) != 0) {
		row_free(p, row);
		return EMBKV_EFULL;
	}
	return 0;
}

int embkv_part_restore_rows(struct embkv_table *t, uint32_t i, uint32_t n,
			    const struct embkv_row_view *r, int replace,
			    uint32_t *done)
{
	struct embkv_probe pr[EMBKV_PROBE_CHUNK];
	struct embkv_part *p;

	*done = 0;
	if (i >= t->nparts || !t->parts[i].loaded)
		return -EINVAL;
	p = &t->parts[i];
	if (n)
		embkv_part_feed_break(p);
	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = n - i0 < EMBKV_PROBE_CHUNK ? n - i0 : EMBKV_PROBE_CHUNK;
		/* Hash the chunk and prefetch both buckets of every key: the
		 * inserts below then find them in cache. */
		for (uint32_t j = 0; j < m; j++) {
			embkv_probe_hash(t, &pr[j], r[i0 + j].key);
			__builtin_prefetch(&pr[j].p->index.buckets[pr[j].b2]);
		}
		for (uint32_t j = 0; j < m; j++) {
			/* a version from outside at or past the bound would
			 * reach the dead bit when the row is next updated */
			int err = pr[j].p != p ||
					  r[i0 + j].version >= EMBKV_VERSION_MAX
				  ? -EINVAL
				  : restore_one(p, &pr[j], &r[i0 + j], replace);

			if (err) {
				*done = i0 + j;
				return err;
			}
		}
	}
	*done = n;
	return 0;
}

int embkv_part_restore_row(struct embkv_table *t, uint32_t i,
			   const struct embkv_row_view *r)
{
	uint32_t done;

	if (i >= t->nparts || !t->parts[i].loaded ||
	    (r->version & EMBKV_VERSION_DEAD) || !r->payload)
		return -EINVAL;
	if (t->parts[i].state && !r->state)
		return -EINVAL;
	return embkv_part_restore_rows(t, i, 1, r, 0, &done);
}

int embkv_part_restore_erase(struct embkv_table *t, uint32_t i, uint64_t key)
{
	struct embkv_probe c;
	uint64_t row, b;
	unsigned s;

	if (i >= t->nparts || !t->parts[i].loaded)
		return 0;
	embkv_probe_hash(t, &c, key);
	if (c.p != &t->parts[i])
		return 0;
	row = locate(&c, key, &b, &s);
	if (row == NO_ROW)
		return 0;
	embkv_index_clear(&c.p->index, b, s);
	row_free(c.p, row);
	embkv_part_feed_break(c.p);
	return 1;
}

int embkv_part_restore_clock(struct embkv_table *t, uint32_t i,
			     uint16_t epoch, uint64_t ticks)
{
	if (i >= t->nparts || !t->parts[i].loaded)
		return -EINVAL;
	t->parts[i].clock.epoch = epoch;
	t->parts[i].clock.ticks = ticks;
	return 0;
}

/* Forgets tombstones and snapshots: the next snapshot is full. */
static void ckpt_forget(struct embkv_part *p)
{
	p->ntomb = 0;
	p->tomb_lost = false;
	__atomic_store_n(&p->last_snap, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&p->committed, 0, __ATOMIC_RELEASE);
}

uint64_t embkv_part_clear(struct embkv_table *t, uint32_t i)
{
	struct embkv_part *p = &t->parts[i];
	uint64_t erased = 0;

	for (uint64_t row = 0; p->loaded && row < p->next_fresh; row++) {
		struct embkv_record *r = embkv_part_record(p, row);
		struct embkv_probe c;
		uint64_t b;
		unsigned s;

		if (r->version & EMBKV_VERSION_DEAD)
			continue;
		embkv_probe_hash(t, &c, r->key);
		if (locate(&c, r->key, &b, &s) == row)
			embkv_index_clear(&p->index, b, s);
		row_free(p, row);
		erased++;
	}
	ckpt_forget(p);
	embkv_part_feed_break(p);
	return erased;
}

void embkv_part_ckpt_committed(struct embkv_table *t, uint32_t i,
			       uint64_t ckpt_id)
{
	struct embkv_part *p;

	if (i >= t->nparts || !ckpt_id)
		return;
	p = &t->parts[i];
	if (__atomic_load_n(&p->last_snap, __ATOMIC_ACQUIRE) == ckpt_id)
		__atomic_store_n(&p->committed, ckpt_id, __ATOMIC_RELEASE);
}

void embkv_part_ckpt_snapped(struct embkv_table *t, uint32_t i,
			     uint64_t ckpt_id)
{
	struct embkv_part *p = &t->parts[i];

	p->ntomb = 0;
	p->tomb_lost = false;
	__atomic_store_n(&p->last_snap, ckpt_id, __ATOMIC_RELEASE);
}

void embkv_part_ckpt_restored(struct embkv_table *t, uint32_t i,
			      uint64_t ckpt_id, uint64_t seq)
{
	struct embkv_part *p;

	if (i >= t->nparts || !t->parts[i].loaded)
		return;
	p = &t->parts[i];
	for (uint64_t row = 0; row < p->next_fresh; row++)
		if (!(embkv_part_record(p, row)->version & EMBKV_VERSION_DEAD))
			*row_meta(p, row) &= ~(uint32_t)EMBKV_LFU_DIRTY;
	ckpt_forget(p);
	__atomic_store_n(&p->seq, seq, __ATOMIC_RELAXED);
	embkv_part_feed_break(p);
	__atomic_store_n(&p->last_snap, ckpt_id, __ATOMIC_RELEASE);
	__atomic_store_n(&p->committed, ckpt_id, __ATOMIC_RELEASE);
}

void embkv_table_get_stats(const struct embkv_table *t,
			   struct embkv_table_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < t->nparts; i++) {
		const struct embkv_part *p = &t->parts[i];
		const uint64_t *src = (const uint64_t *)&p->st;
		uint64_t *dst = (uint64_t *)&out->sum;

		if (!p->loaded)
			continue;
		for (size_t k = 0; k < sizeof(p->st) / sizeof(uint64_t); k++)
			dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
		out->rows += __atomic_load_n(&p->rows, __ATOMIC_RELAXED);
		out->capacity += p->capacity;
		out->index_slots += p->index.nbuckets * EMBKV_BUCKET_SLOTS;
		out->index_used += __atomic_load_n(&p->index.used,
						   __ATOMIC_RELAXED);
		out->cuckoo_moves += __atomic_load_n(&p->index.cuckoo_moves,
						     __ATOMIC_RELAXED);
		out->bytes += p->bytes;
	}
	out->bytes += sizeof(*t) + sizeof(*t->parts) * t->nparts;
}

/* ---- scan (export) ------------------------------------------------------ */

/*
 * Export's walk (SCAN, server/batch.c): rows [0, next_fresh) in row-id
 * order, dead ones skipped, as embkv_part_for_each_row does, but resumable
 * from a cursor and bounded per call. Read only: no LFU touch, no stats.
 */
int embkv_part_scan(const struct embkv_table *t, uint32_t part,
		    uint64_t cursor, uint32_t max, uint64_t *keys, void *vals,
		    uint32_t *n, uint64_t *next)
{
	const struct embkv_part *p;
	uint64_t row, stop;
	uint32_t got = 0;

	if (!t || part >= t->nparts || !max || !keys || !vals || !n || !next)
		return -EINVAL;
	p = &t->parts[part];
	if (!p->loaded || cursor > p->capacity)
		return -EINVAL;
	stop = p->next_fresh;
	if (stop - cursor > (uint64_t)max + EMBKV_PART_SCAN_VISIT &&
	    cursor < stop)
		stop = cursor + max + EMBKV_PART_SCAN_VISIT;
	for (row = cursor; row < stop && got < max; row++) {
		const struct embkv_record *r = embkv_part_record(p, row);

		if (r->version & EMBKV_VERSION_DEAD)
			continue;
		keys[got] = r->key;
		memcpy((uint8_t *)vals + (size_t)got * t->payload_bytes,
		       r->payload, t->payload_bytes);
		got++;
	}
	*n = got;
	*next = row >= p->next_fresh ? UINT64_MAX : row;
	return 0;
}

/* Run-time hyper-parameters ------------------------------------------------ */

#define OPT_NFLOATS 8u

static float *opt_field(struct embkv_opt_attr *o, unsigned i)
{
	float *f[OPT_NFLOATS] = { &o->lr, &o->beta1, &o->beta2, &o->eps,
				  &o->initial_accum, &o->l1, &o->l2,
				  &o->ftrl_beta };

	return f[i];
}

void embkv_table_opt_get(const struct embkv_table *t, struct embkv_opt_attr *hp)
{
	struct embkv_opt_attr *src = (struct embkv_opt_attr *)&t->attr.opt;

	hp->type = t->attr.opt.type; /* never changes */
	for (unsigned i = 0; i < OPT_NFLOATS; i++)
		__atomic_load(opt_field(src, i), opt_field(hp, i),
			      __ATOMIC_RELAXED);
}

int embkv_table_opt_set(struct embkv_table *t, const struct embkv_opt_attr *hp)
{
	struct embkv_opt_attr v;

	if (!t || !hp || hp->type != t->attr.opt.type ||
	    embkv_optim_check(hp))
		return -EINVAL;
	v = *hp;
	for (unsigned i = 0; i < OPT_NFLOATS; i++)
		__atomic_store(opt_field(&t->attr.opt, i), opt_field(&v, i),
			       __ATOMIC_RELAXED);
	return 0;
}
