/*
 * The one-sided pull (net/RDMA.md section 4, DESIGN.md section 3): the
 * distinct keys of a pull whose server reads one-sided are served with
 * RDMA READs of the server's index and row arena, without the server's
 * CPU; the rest go by RPC.
 *
 * Per server, keys are taken in chunks and driven through waves. A wave
 * posts every READ its keys need as ONE chain (one doorbell, only the last
 * WR signaled) and waits for it once: a round trip. A key is in one of
 * three states:
 *   BUCKETS: READ both candidate buckets (64 bytes each); then match the
 *            fingerprint (embkv_index_match) and take the first slot whose
 *            row id is below the partition's capacity -> RECORD; none ->
 *            RPC;
 *   RECORD:  READ the record's header and payload (t->rec_len: 24 bytes
 *            and dim elements of the table's dtype, 4 dim for f32) and
 *            validate the copy (embkv_record_check): OK -> served and the
 *            location cached; TORN -> read again (bounded); OTHER_KEY or
 *            DEAD -> the next matching slot of the buckets already read
 *            (a 16-bit fingerprint collides now and then), none -> RPC;
 *            for a location that came from the cache: drop it and go to
 *            BUCKETS (the full path);
 *   cache hit: starts in RECORD.
 * So a cold key costs 2 round trips and 3 READs, a warm one 1 and 1.
 *
 * Safety: no row is returned unless its copy's checksum matches and its
 * key is the one asked for; a row id from a slot (torn, stale, or
 * malicious) is used only below the partition's capacity, so no READ
 * leaves the arena. Any error (connection, timeout) sends the keys left
 * to the RPC path, which is always correct.
 *
 * LFU: the server never sees one-sided reads, so each served key counts
 * one hit here; when enough distinct keys were counted they go to the
 * servers with HITS as a detached async job (best effort: errors are
 * ignored); close sends the rest and waits for jobs in flight.
 *
 * Regions (TABLE_REGIONS) are fetched per server at open and again when
 * a pull sees a newer map epoch; a published set is immutable and
 * reference-counted, like shard maps.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "client/batch.h"
#include "client/client.h"
#include "client/loccache.h"
#include "hashing/hash.h"
#include "hashing/index.h"
#include "hashing/record.h"

#define CHUNK_KEYS 256u        /* keys per chunk: <= 2 READs each a wave */
#define MAX_WAVES 12u          /* per chunk */
#define MAX_TORN 8u            /* re-reads of one record */
#define HITS_FLUSH_KEYS 4096u  /* distinct keys counted before a send */
#define HITS_SLOTS (2u * HITS_FLUSH_KEYS)
#define BUCKETS_BYTES (2u * EMBKV_BUCKET_BYTES)
#define LINE 64u

/* One partition as a server described it; capacity 0: not described. */
struct os_part {
	uint64_t index_addr, nbuckets, arena_addr, capacity;
	uint32_t index_rkey, arena_rkey; /* each partition registered alone */
};

struct os_srv {
	uint32_t server;           /* client server index */
	uint32_t stride;
	struct os_part *part;      /* nparts */
};

struct os_regions {
	uint64_t epoch;
	uint32_t nparts, nsrv;
	struct os_srv *srv;
	int refs;                  /* atomic */
};

struct os_hits {
	uint64_t *keys;            /* HITS_SLOTS, 0 count = empty */
	uint32_t *counts;
	uint32_t n;
};

struct embkv_onesided {
	struct embkv_table_handle *t;
	pthread_mutex_t lock;      /* regions, hits, jobs */
	pthread_cond_t idle;       /* jobs dropped to 0 */
	struct os_regions *regions;
	struct embkv_loccache lc;
	struct os_hits hits;
	uint32_t jobs;
};

enum key_state { K_BUCKETS, K_RECORD, K_DONE, K_RPC };

struct os_key {
	uint32_t u;                /* distinct key index */
	uint8_t state, cached, torn;
	uint8_t tried;             /* landing: a READ was posted for it */
	uint8_t cand;              /* next bucket slot to try: b * 8 + i */
	uint64_t row;
	const struct os_part *p;
	struct embkv_khash h;
};

/* Regions ---------------------------------------------------------------------- */

static void regions_put(struct os_regions *r)
{
	if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (uint32_t i = 0; i < r->nsrv; i++)
		free(r->srv[i].part);
	free(r->srv);
	free(r);
}

static struct os_regions *regions_get(struct embkv_onesided *os)
{
	struct os_regions *r;

	pthread_mutex_lock(&os->lock);
	r = os->regions;
	if (r)
		__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&os->lock);
	return r;
}

/* Fills s from a TABLE_REGIONS reply body. */
static int regions_decode(struct embkv_table_handle *t,
			  const struct embkv_wire_table_ref *tref,
			  const uint8_t *body, size_t len, struct os_srv *s)
{
	struct embkv_wire_table_regions m;
	struct embkv_wire_region_part p;
	int rc;

	rc = embkv_wire_table_regions_decode(body, len, &m);
	if (rc)
		return rc;
	if (m.table_id != tref->table_id || m.uid != tref->uid ||
	    m.stride < t->rec_len)
		return EMBKV_EPROTO;
	s->stride = m.stride;
	s->part = calloc(t->attr.partitions, sizeof(*s->part));
	if (!s->part)
		return -ENOMEM;
	while (embkv_wire_table_regions_next(&m, &p)) {
		if (p.part >= t->attr.partitions)
			continue;
		s->part[p.part].index_addr = p.index_addr;
		s->part[p.part].nbuckets = p.nbuckets;
		s->part[p.part].arena_addr = p.arena_addr;
		s->part[p.part].capacity = p.capacity;
		s->part[p.part].index_rkey = p.index_rkey;
		s->part[p.part].arena_rkey = p.arena_rkey;
	}
	return 0;
}

/* Asks every one-sided server of m for its regions; publishes the set. */
static int regions_fetch(struct embkv_onesided *os, struct embkv_shardmap *m)
{
	struct embkv_table_handle *t = os->t;
	struct embkv_client *c = t->c;
	struct embkv_conn_limits lim;
	struct os_regions *r, *old;
	struct embkv_rpc *rpcs;
	uint32_t *idx, i, n = 0;
	int rc = -ENOMEM, one;

	r = calloc(1, sizeof(*r));
	rpcs = calloc(m->nsrv, sizeof(*rpcs));
	idx = calloc(m->nsrv, sizeof(*idx));
	if (!r || !rpcs || !idx)
		goto free_all;
	r->refs = 1;
	r->epoch = m->epoch;
	r->nparts = t->attr.partitions;
	r->srv = calloc(m->nsrv, sizeof(*r->srv));
	if (!r->srv)
		goto free_all;
	for (i = 0; i < m->nsrv; i++) {
		uint8_t *body;

		embkv_client_server_limits(c, m->srv[i], &lim, &one);
		if (!one)
			continue;
		embkv_rpc_init(&rpcs[n], m->srv[i]);
		idx[n] = i;
		rc = embkv_rpc_frame(&rpcs[n], EMBKV_WIRE_OP_TABLE_REGIONS, 0,
				     EMBKV_WIRE_TABLE_REF_SIZE, &body);
		n++;
		if (!rc)
			rc = embkv_wire_table_ref_encode(
				&m->tref[i], body, EMBKV_WIRE_TABLE_REF_SIZE);
		if (rc)
			goto clear;
	}
	rc = embkv_rpc_exchange(c, rpcs, n, embkv_client_deadline(c));
	if (rc)
		goto clear;
	for (i = 0; i < n; i++) {
		struct os_srv *s = &r->srv[r->nsrv];

		if (rpcs[i].status)
			continue; /* not served one-sided: RPC */
		s->server = rpcs[i].server;
		if (regions_decode(t, &m->tref[idx[i]], rpcs[i].body,
				   rpcs[i].body_len, s) == 0)
			r->nsrv++;
		else
			free(s->part);
	}
	pthread_mutex_lock(&os->lock);
	old = os->regions;
	if (old && old->epoch > r->epoch) {
		old = r; /* someone fetched for a newer map meanwhile */
	} else {
		os->regions = r;
	}
	pthread_mutex_unlock(&os->lock);
	regions_put(old);
	r = NULL;
	rc = 0;
clear:
	for (i = 0; i < n; i++)
		embkv_rpc_clear(&rpcs[i]);
free_all:
	if (r) {
		r->refs = 1;
		regions_put(r);
	}
	free(idx);
	free(rpcs);
	return rc;
}

static const struct os_srv *regions_srv(const struct os_regions *r,
					uint32_t server)
{
	for (uint32_t i = 0; i < r->nsrv; i++)
		if (r->srv[i].server == server)
			return &r->srv[i];
	return NULL;
}

/* Hits ----------------------------------------------------------------------------- */

static uint64_t hmix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static int hits_init(struct os_hits *h)
{
	h->keys = calloc(HITS_SLOTS, sizeof(*h->keys));
	h->counts = calloc(HITS_SLOTS, sizeof(*h->counts));
	h->n = 0;
	return h->keys && h->counts ? 0 : -ENOMEM;
}

static void hits_fini(struct os_hits *h)
{
	free(h->keys);
	free(h->counts);
	memset(h, 0, sizeof(*h));
}

/* Called with os->lock held; h has room (n < HITS_FLUSH_KEYS). */
static void hits_add(struct os_hits *h, uint64_t key)
{
	uint32_t s = (uint32_t)hmix(key) & (HITS_SLOTS - 1);

	while (h->counts[s] && h->keys[s] != key)
		s = (s + 1) & (HITS_SLOTS - 1);
	if (!h->counts[s]) {
		h->keys[s] = key;
		h->n++;
	}
	if (h->counts[s] < UINT32_MAX)
		h->counts[s]++;
}

struct hits_job {
	struct embkv_onesided *os;
	struct os_hits h;
};

/* Sends the counted hits: one HITS frame per server of the current map
 * (keys routed like a pull). Best effort. */
static void hits_send(struct embkv_onesided *os, struct os_hits *h)
{
	struct embkv_table_handle *t = os->t;
	struct embkv_shardmap *m = embkv_shardmap_get(t);
	struct embkv_rpc *rpcs = calloc(m->nsrv, sizeof(*rpcs));
	uint32_t *cnt = calloc(m->nsrv, sizeof(*cnt)), *fill = NULL;
	uint64_t **keys = calloc(m->nsrv, sizeof(*keys));
	uint32_t **counts = calloc(m->nsrv, sizeof(*counts));
	uint32_t i, s, n = 0, *srv_of = NULL;
	uint64_t sent = 0;

	if (!rpcs || !cnt || !keys || !counts || !h->n)
		goto free_all;
	srv_of = malloc(HITS_SLOTS * sizeof(*srv_of));
	fill = calloc(m->nsrv, sizeof(*fill));
	if (!srv_of || !fill)
		goto free_all;
	for (i = 0; i < HITS_SLOTS; i++) {
		if (!h->counts[i])
			continue;
		srv_of[i] = m->part_srv[embkv_hash_partition(
			embkv_hash_key(h->keys[i], t->attr.hash_seed),
			m->part_bits)];
		cnt[srv_of[i]]++;
	}
	for (s = 0; s < m->nsrv; s++) {
		struct embkv_wire_hits hm = {
			.table_id = m->tref[s].table_id,
			.uid = m->tref[s].uid,
			.n = cnt[s],
		};
		uint8_t *body;
		size_t len;

		if (!cnt[s])
			continue;
		embkv_rpc_init(&rpcs[n], m->srv[s]);
		rpcs[n].user_off = s;
		if (embkv_wire_hits_size(&hm, &len) ||
		    embkv_rpc_frame(&rpcs[n], EMBKV_WIRE_OP_HITS, 0, len,
				    &body) ||
		    embkv_wire_hits_prepare(&hm, body, len, &keys[s],
					    &counts[s])) {
			embkv_rpc_clear(&rpcs[n]);
			cnt[s] = 0;
			continue;
		}
		n++;
	}
	for (i = 0; i < HITS_SLOTS; i++) {
		if (!h->counts[i] || !cnt[srv_of[i]])
			continue;
		s = srv_of[i];
		keys[s][fill[s]] = h->keys[i];
		counts[s][fill[s]] = h->counts[i];
		fill[s]++;
	}
	embkv_rpc_exchange(t->c, rpcs, n, embkv_client_deadline(t->c));
	for (i = 0; i < n; i++) {
		if (!rpcs[i].status)
			sent += cnt[rpcs[i].user_off];
		embkv_rpc_clear(&rpcs[i]);
	}
	EMBKV_COUNT(t->c, hits_sent, sent);
free_all:
	free(fill);
	free(srv_of);
	free(counts);
	free(keys);
	free(cnt);
	free(rpcs);
	embkv_shardmap_put(m);
}

static void hits_job_run(void *arg)
{
	struct hits_job *j = arg;
	struct embkv_onesided *os = j->os;

	hits_send(os, &j->h);
	hits_fini(&j->h);
	free(j);
	pthread_mutex_lock(&os->lock);
	if (--os->jobs == 0)
		pthread_cond_broadcast(&os->idle);
	pthread_mutex_unlock(&os->lock);
}

/* Counts one hit for each served key; hands a full table to a job. */
static void hits_count(struct embkv_onesided *os, const uint64_t *keys,
		       uint32_t n)
{
	struct hits_job *j = NULL;

	pthread_mutex_lock(&os->lock);
	for (uint32_t i = 0; i < n; i++) {
		if (os->hits.n >= HITS_FLUSH_KEYS) {
			j = calloc(1, sizeof(*j));
			if (j && hits_init(&j->h) == 0) {
				struct os_hits full = os->hits;

				os->hits = j->h;
				j->h = full;
				j->os = os;
				os->jobs++;
				pthread_mutex_unlock(&os->lock);
				if (embkv_async_job(os->t->c, hits_job_run, j))
					hits_job_run(j); /* no pool: here */
				pthread_mutex_lock(&os->lock);
			} else {
				if (j)
					hits_fini(&j->h);
				free(j);
				break; /* no memory: these hits are lost */
			}
		}
		hits_add(&os->hits, keys[i]);
	}
	pthread_mutex_unlock(&os->lock);
}

/* Open and close ------------------------------------------------------------------ */

int embkv_onesided_open(struct embkv_table_handle *t)
{
	struct embkv_shardmap *m = embkv_shardmap_get(t);
	struct embkv_conn_limits lim;
	struct embkv_onesided *os;
	uint32_t i;
	int any = 0, one, rc;

	/* Rows are READ and validated as stored (payload_bytes: a 16-bit
	 * table's are half an fp32's) and handed on as such; the caller's
	 * deliver widens them (client/ops.c). */
	for (i = 0; i < m->nsrv; i++) {
		embkv_client_server_limits(t->c, m->srv[i], &lim, &one);
		any |= one;
	}
	if (!any) {
		embkv_shardmap_put(m);
		return 0;
	}
	os = calloc(1, sizeof(*os));
	if (!os)
		goto nomem;
	os->t = t;
	if (pthread_mutex_init(&os->lock, NULL))
		goto free_os;
	if (embkv_cond_init_monotonic(&os->idle))
		goto destroy_lock;
	if (embkv_loccache_init(&os->lc, t->c->loccache_entries
						 ? t->c->loccache_entries
						 : EMBKV_LOCCACHE_ENTRIES_DEFAULT))
		goto destroy_cond;
	if (hits_init(&os->hits))
		goto fini_cache;
	rc = regions_fetch(os, m);
	if (rc == -ENOMEM)
		goto fini_hits;
	t->os = os;
	embkv_shardmap_put(m);
	return 0;

fini_hits:
	hits_fini(&os->hits);
fini_cache:
	embkv_loccache_fini(&os->lc);
destroy_cond:
	pthread_cond_destroy(&os->idle);
destroy_lock:
	pthread_mutex_destroy(&os->lock);
free_os:
	free(os);
nomem:
	embkv_shardmap_put(m);
	return -ENOMEM;
}

void embkv_onesided_close(struct embkv_table_handle *t)
{
	struct embkv_onesided *os = t ? t->os : NULL;

	if (!os)
		return;
	hits_send(os, &os->hits);
	pthread_mutex_lock(&os->lock);
	while (os->jobs)
		pthread_cond_wait(&os->idle, &os->lock);
	pthread_mutex_unlock(&os->lock);
	hits_fini(&os->hits);
	regions_put(os->regions);
	embkv_loccache_fini(&os->lc);
	pthread_cond_destroy(&os->idle);
	pthread_mutex_destroy(&os->lock);
	free(os);
	t->os = NULL;
}

/* The pull ------------------------------------------------------------------------- */

struct os_run {
	struct embkv_table_handle *t;
	struct embkv_client *c;
	struct embkv_onesided *os;
	const struct os_srv *srv;
	uint64_t epoch;
	const uint64_t *ukeys;
	size_t payload_bytes;      /* t->payload_bytes */
	uint32_t rec_len, slot_bytes;
	struct os_key *k;
	uint8_t *buf;              /* registered: slot_bytes per key */
	struct embkv_remote_read *reads;
	uint64_t *served;          /* keys served, for hits */
	uint32_t nserved;
	void (*deliver)(void *ctx, uint32_t u, const void *row);
	void *ctx;
};

static uint8_t *slot_of(const struct os_run *r, uint32_t j)
{
	return r->buf + (size_t)j * r->slot_bytes;
}

/* Posts one wave's reads for keys k[0..n) and waits for them. */
static int wave(struct os_run *r, struct embkv_cconn *cc, uint32_t n,
		uint64_t deadline)
{
	struct embkv_conn *tc = cc->tc;
	uint32_t nr = 0, nk = 0, j;
	uint64_t bytes = 0, cookie;
	int rc;

	for (j = 0; j < n; j++) {
		struct os_key *k = &r->k[j];
		uint8_t *s = slot_of(r, j);

		if (k->state == K_BUCKETS) {
			uint64_t b1, b2;

			embkv_hash_buckets(k->h, k->p->nbuckets, &b1, &b2);
			r->reads[nr++] = (struct embkv_remote_read){
				.remote_addr = k->p->index_addr +
					       b1 * EMBKV_BUCKET_BYTES,
				.rkey = k->p->index_rkey,
				.len = EMBKV_BUCKET_BYTES, .local = s };
			r->reads[nr++] = (struct embkv_remote_read){
				.remote_addr = k->p->index_addr +
					       b2 * EMBKV_BUCKET_BYTES,
				.rkey = k->p->index_rkey,
				.len = EMBKV_BUCKET_BYTES,
				.local = s + EMBKV_BUCKET_BYTES };
			bytes += BUCKETS_BYTES;
			nk++;
		} else if (k->state == K_RECORD) {
			r->reads[nr++] = (struct embkv_remote_read){
				.remote_addr = k->p->arena_addr +
					       k->row * r->srv->stride,
				.rkey = k->p->arena_rkey,
				.len = r->rec_len, .local = s + BUCKETS_BYTES };
			bytes += r->rec_len;
			nk++;
		}
	}
	if (!nr)
		return 0;
	r->reads[nr - 1].cookie = 1;
	rc = tc->ops->post_reads(tc, r->reads, nr);
	if (rc)
		return rc;
	EMBKV_COUNT(r->c, round_trips, 1);
	EMBKV_COUNT(r->c, key_round_trips, nk);
	EMBKV_COUNT(r->c, read_wrs, nr);
	EMBKV_COUNT(r->c, read_bytes, bytes);
	for (;;) {
		rc = tc->ops->poll_reads(tc, &cookie, 1);
		if (rc)
			return rc < 0 ? rc : 0;
		rc = embkv_fd_wait(tc->ops->poll_fd(tc), POLLIN, deadline);
		if (rc)
			return rc;
	}
}

/*
 * The bucket copies in slot s: the next slot from k->cand on whose
 * fingerprint matches and whose row id is inside the partition ->
 * K_RECORD; none left -> K_RPC.
 */
static void next_candidate(struct os_key *k, const uint8_t *s)
{
	struct embkv_index ix = {
		.buckets = (struct embkv_bucket *)s,
		.nbuckets = 2,
	};
	uint16_t fp = embkv_hash_fp(k->h);

	k->state = K_RPC;
	for (; k->cand < 2 * EMBKV_BUCKET_SLOTS; k->cand++) {
		uint32_t b = k->cand / EMBKV_BUCKET_SLOTS;
		uint32_t i = k->cand % EMBKV_BUCKET_SLOTS;
		uint64_t row;

		if (!(embkv_index_match(&ix, b, fp) & (1u << i)))
			continue;
		row = embkv_slot_row(ix.buckets[b].slot[i]);
		if (row < k->p->capacity) {
			k->row = row;
			k->state = K_RECORD;
			k->cand++;
			return;
		}
	}
}

/*
 * A record copy's verdict for key k (server, part: where its location
 * points): OK -> served, its location cached; TORN -> read again (at most
 * MAX_TORN times, then RPC); a cached location that was wrong is dropped
 * and the key starts over from its buckets' first slot. 1 for OTHER_KEY
 * or DEAD from a bucket candidate: the caller moves to the next one.
 */
static int verdict_apply(struct os_run *r, struct os_key *k, uint64_t key,
			 unsigned v, uint32_t server, uint32_t part)
{
	if (v == EMBKV_RECORD_OK) {
		if (!k->cached) {
			struct embkv_loc loc = {
				.key = key, .row = k->row, .epoch = r->epoch,
				.server = server, .part = part,
			};

			embkv_loccache_put(&r->os->lc, &loc);
		}
		r->served[r->nserved++] = key;
		k->state = K_DONE;
		return 0;
	}
	if (v == EMBKV_RECORD_TORN) {
		EMBKV_COUNT(r->c, torn_retries, 1);
		if (++k->torn > MAX_TORN)
			k->state = K_RPC;
		return 0;
	}
	if (k->cached) {
		embkv_loccache_drop(&r->os->lc, key, k->row);
		EMBKV_COUNT(r->c, cache_drops, 1);
		k->cached = 0;
		k->cand = 0;
		k->state = K_BUCKETS;
		return 0;
	}
	return 1;
}

/* After a wave: the next state of every key. 1 when some key has READs
 * left to do. */
static int advance(struct os_run *r, uint32_t n)
{
	int more = 0;

	for (uint32_t j = 0; j < n; j++) {
		struct os_key *k = &r->k[j];
		uint8_t *s = slot_of(r, j);
		uint64_t key = r->ukeys[k->u];

		if (k->state == K_BUCKETS) {
			k->cand = 0;
			next_candidate(k, s);
		} else if (k->state == K_RECORD) {
			const struct embkv_record *rec =
				(const void *)(s + BUCKETS_BYTES);
			enum embkv_record_verdict v =
				embkv_record_check(rec, key,
						   r->payload_bytes);

			if (v == EMBKV_RECORD_OK)
				r->deliver(r->ctx, k->u, rec->payload);
			/* another key with the same fingerprint, or a stale
			 * slot: the next candidate, if any */
			if (verdict_apply(r, k, key, v, r->srv->server,
					  (uint32_t)(k->p - r->srv->part)))
				next_candidate(k, s);
		}
		more |= k->state == K_BUCKETS || k->state == K_RECORD;
	}
	return more;
}

/* Starts the keys of one chunk: cache lookup, partition bounds. */
/*
 * A key's starting state on server srv, partition part (k->u and k->h
 * set): RPC when the partition was not described, else its record when
 * the location cache has it for this map, else its buckets.
 */
static void key_start(struct os_run *r, struct os_key *k,
		      const struct os_srv *srv, uint32_t part)
{
	uint64_t key = r->ukeys[k->u];
	struct embkv_loc loc;

	k->p = &srv->part[part];
	k->state = k->p->capacity && k->p->nbuckets ? K_BUCKETS : K_RPC;
	if (k->state == K_RPC)
		return;
	if (embkv_loccache_get(&r->os->lc, key, &loc) &&
	    loc.epoch == r->epoch && loc.server == srv->server &&
	    loc.part == part && loc.row < k->p->capacity) {
		k->row = loc.row;
		k->cached = 1;
		k->state = K_RECORD;
		EMBKV_COUNT(r->c, cache_hits, 1);
	}
}

static void chunk_start(struct os_run *r, const uint32_t *items,
			const uint32_t *upart, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++) {
		struct os_key *k = &r->k[j];

		memset(k, 0, sizeof(*k));
		k->u = items[j];
		k->h = embkv_hash_key(r->ukeys[items[j]], r->t->attr.hash_seed);
		key_start(r, k, r->srv, upart[items[j]]);
	}
}

/*
 * Serves items[0..n) (all owned by server r->srv->server); the keys left
 * for RPC are written to rest[], *nrest counts them.
 */
static void serve_server(struct os_run *r, const uint32_t *items, uint32_t n,
			 const uint32_t *upart, uint32_t *rest,
			 uint32_t *nrest)
{
	struct embkv_cconn *cc = NULL;
	struct embkv_conn_limits lim;
	uint64_t deadline = embkv_client_deadline(r->c);
	uint32_t chunk, at = 0, j, w;
	int rc;

	rc = embkv_client_conn_get(r->c, r->srv->server, deadline, &cc);
	if (rc || !cc->tc->ops->post_reads)
		goto rest;
	cc->tc->ops->limits(cc->tc, &lim);
	chunk = lim.max_reads / 2 < CHUNK_KEYS ? lim.max_reads / 2 : CHUNK_KEYS;
	if (!chunk)
		goto rest;
	r->buf = cc->tc->ops->read_buf(cc->tc, (size_t)chunk * r->slot_bytes);
	if (!r->buf)
		goto rest;
	for (; at < n; at += chunk) {
		uint32_t m = n - at < chunk ? n - at : chunk;

		chunk_start(r, items + at, upart, m);
		for (w = 0; w < MAX_WAVES; w++) {
			rc = wave(r, cc, m, deadline);
			if (rc) {
				cc->broken = 1;
				break;
			}
			if (!advance(r, m))
				break;
		}
		for (j = 0; j < m; j++)
			if (r->k[j].state != K_DONE)
				rest[(*nrest)++] = r->k[j].u;
		if (rc)
			break;
	}
	if (at < n && rc)
		at += chunk; /* this chunk's leftovers are in rest already */
rest:
	for (; at < n; at++)
		rest[(*nrest)++] = items[at];
	embkv_client_conn_put(r->c, cc);
}

void embkv_onesided_pull(struct embkv_table_handle *t, struct embkv_shardmap *m,
			 const uint64_t *ukeys, const uint32_t *upart,
			 uint32_t *pend, uint32_t *npend,
			 void (*deliver)(void *ctx, uint32_t u, const void *row),
			 void *ctx)
{
	struct embkv_onesided *os = t->os;
	struct embkv_client *c = t->c;
	struct os_regions *reg;
	struct os_run r;
	uint32_t *order = NULL, *off = NULL, *rest = NULL, nrest = 0, s;
	uint32_t n = *npend, before;

	if (!os || c->no_onesided || !n)
		return;
	reg = regions_get(os);
	if (reg && reg->epoch != m->epoch) {
		regions_put(reg);
		if (regions_fetch(os, m))
			return;
		reg = regions_get(os);
	}
	if (!reg || !reg->nsrv || reg->epoch != m->epoch)
		goto put_regions;
	memset(&r, 0, sizeof(r));
	r.t = t;
	r.c = c;
	r.os = os;
	r.epoch = m->epoch;
	r.ukeys = ukeys;
	r.payload_bytes = t->payload_bytes;
	r.rec_len = t->rec_len;
	r.slot_bytes = BUCKETS_BYTES + ((r.rec_len + LINE - 1) & ~(LINE - 1));
	r.deliver = deliver;
	r.ctx = ctx;
	order = malloc((size_t)n * sizeof(*order));
	rest = malloc((size_t)n * sizeof(*rest));
	off = malloc(((size_t)m->nsrv + 1) * sizeof(*off));
	r.k = malloc(CHUNK_KEYS * sizeof(*r.k));
	r.reads = malloc(2 * CHUNK_KEYS * sizeof(*r.reads));
	r.served = malloc((size_t)n * sizeof(*r.served));
	if (!order || !rest || !off || !r.k || !r.reads || !r.served ||
	    embkv_batch_route(pend, n, upart, m->part_srv, m->nsrv, order,
			      off))
		goto free_all;
	for (s = 0; s < m->nsrv; s++) {
		uint32_t cnt = off[s + 1] - off[s];

		if (!cnt)
			continue;
		r.srv = regions_srv(reg, m->srv[s]);
		if (!r.srv) {
			memcpy(rest + nrest, order + off[s],
			       (size_t)cnt * sizeof(*rest));
			nrest += cnt;
			continue;
		}
		before = nrest;
		serve_server(&r, order + off[s], cnt, upart, rest, &nrest);
		EMBKV_COUNT(c, fallbacks, nrest - before);
	}
	EMBKV_COUNT(c, keys_onesided, r.nserved);
	if (r.nserved)
		hits_count(os, r.served, r.nserved);
	memcpy(pend, rest, (size_t)nrest * sizeof(*pend));
	*npend = nrest;
free_all:
	free(r.served);
	free(r.reads);
	free(r.k);
	free(off);
	free(rest);
	free(order);
put_regions:
	regions_put(reg);
}

/* The pull into landing memory (GPUDirect) ------------------------------------------
 *
 * The same one-sided protocol, but the records land in the caller's
 * memory (GPU memory registered with each connection's NIC) instead of
 * read_buf, and are verified where they landed, all of a range at once
 * (land->check: the GPU's record check, which also scatters the good
 * rows). The host never sees a row. Bucket copies are small and still
 * land in read_buf: the host matches fingerprints as before.
 *
 * Rounds: every server's keys that need READs get them (bucket waves for
 * keys without a location, then all the record READs as chains, several
 * in flight), then one check of the range gives every record's verdict:
 * OK -> served (location cached); TORN -> read again (bounded);
 * OTHER_KEY or DEAD -> a cached location is dropped and the buckets read
 * again from the first slot, else the next candidate slot after the one
 * tried (the buckets read again: a fingerprint collision or a row that
 * moved is rare). A record landing in GPU memory may also read as TORN
 * until the NIC's writes are visible to the GPU (no flush is issued): the
 * check turns that into a re-read, never into a wrong row.
 *
 * Invariant: a landing slot is only ever judged for a key that READ into
 * it this round; the caller zeroes the range before the first round, so a
 * slot never read fails the check (and the key was left for RPC anyway).
 */

#define LAND_ROUNDS 8u
#define MAX_CHAINS_POLL 16u

struct land_run {
	struct os_run r;           /* t, c, os, srv, epoch, ukeys, sizes */
	const struct embkv_os_landing *land;
	uint32_t first;
	uint8_t *read_now;         /* count: READ into its slot this round */
	uint32_t *upart;           /* count: each key's partition */
	const struct os_srv **srv; /* count: its server's regions */
};

/* Bucket waves for the keys of idx[0..n) in K_BUCKETS (host read_buf):
 * each gets its next candidate (K_RECORD) or K_RPC. */
static int land_buckets(struct land_run *lr, struct embkv_cconn *cc,
			struct os_key *all, const uint32_t *idx, uint32_t n,
			uint32_t chunk, uint64_t deadline)
{
	struct os_run *r = &lr->r;
	uint32_t at = 0;
	int rc = 0;

	while (at < n && !rc) {
		uint32_t m = 0, j;

		/* gather up to chunk keys that want buckets into r->k */
		for (; at < n && m < chunk; at++)
			if (all[idx[at]].state == K_BUCKETS)
				r->k[m++] = all[idx[at]];
		if (!m)
			break;
		rc = wave(r, cc, m, deadline);
		for (j = 0; j < m; j++) {
			struct os_key *k = &r->k[j];

			k->tried = 1;
			if (rc)
				k->state = K_RPC;
			else
				next_candidate(k, slot_of(r, j));
			all[k->u - lr->first] = *k;
		}
	}
	return rc;
}

/* Every record READ of idx[0..n)'s keys in K_RECORD, into the landing
 * slots, as chains of at most max_reads, up to MAX_CHAINS in flight. */
static int land_records(struct land_run *lr, struct embkv_cconn *cc,
			const void *region, struct os_key *all,
			const uint32_t *idx, uint32_t n, uint32_t max_reads,
			uint64_t deadline)
{
	struct os_run *r = &lr->r;
	struct embkv_conn *tc = cc->tc;
	uint32_t at = 0, posted = 0, done = 0, nr;
	uint64_t cookies[MAX_CHAINS_POLL];
	int rc;

	if (max_reads > 2 * CHUNK_KEYS)
		max_reads = 2 * CHUNK_KEYS; /* r->reads' room */
	for (;;) {
		while (at < n) {
			/* the next chain */
			uint32_t from = at;

			nr = 0;
			for (; at < n && nr < max_reads; at++) {
				struct os_key *k = &all[idx[at]];
				uint32_t s = k->u - lr->first;

				if (k->state != K_RECORD)
					continue;
				r->reads[nr++] = (struct embkv_remote_read){
					.remote_addr = k->p->arena_addr +
						       k->row * r->srv->stride,
					.rkey = k->p->arena_rkey,
					.len = r->rec_len,
					.local = (uint8_t *)lr->land->base +
						 (size_t)s * lr->land->stride,
					.region = region };
				lr->read_now[s] = 1;
				k->tried = 1;
			}
			if (!nr)
				break;
			r->reads[nr - 1].cookie = ++posted;
			rc = tc->ops->post_reads(tc, r->reads, nr);
			if (rc == -EAGAIN) {
				/* too many in flight: these go in the next post */
				for (uint32_t j = from; j < at; j++)
					lr->read_now[all[idx[j]].u -
						     lr->first] = 0;
				posted--;
				at = from;
				break;
			}
			if (rc)
				return rc;
			EMBKV_COUNT(r->c, round_trips, 1);
			EMBKV_COUNT(r->c, key_round_trips, nr);
			EMBKV_COUNT(r->c, read_wrs, nr);
			EMBKV_COUNT(r->c, read_bytes, (uint64_t)nr * r->rec_len);
		}
		/* the inner loop stops at the end, or on -EAGAIN, which with
		 * nothing in flight would never clear */
		if (done == posted)
			return at < n ? -EAGAIN : 0;
		rc = tc->ops->poll_reads(tc, cookies, MAX_CHAINS_POLL);
		if (rc < 0)
			return rc;
		if (rc > 0) {
			done += (uint32_t)rc;
			continue;
		}
		rc = embkv_fd_wait(tc->ops->poll_fd(tc), POLLIN, deadline);
		if (rc)
			return rc;
	}
}

/* One server's READs of a round. Keys of a server that fails go to RPC. */
static void land_server(struct land_run *lr, struct os_key *all,
			const uint32_t *idx, uint32_t n)
{
	struct os_run *r = &lr->r;
	struct embkv_cconn *cc = NULL;
	struct embkv_conn_limits lim;
	const void *region = NULL;
	uint64_t deadline = embkv_client_deadline(r->c);
	uint32_t chunk = 0, j;
	int rc;

	rc = embkv_client_conn_get(r->c, r->srv->server, deadline, &cc);
	if (rc || !cc->tc->ops->post_reads || !cc->tc->ops->read_region)
		goto fail;
	cc->tc->ops->limits(cc->tc, &lim);
	chunk = lim.max_reads / 2 < CHUNK_KEYS ? lim.max_reads / 2 : CHUNK_KEYS;
	if (!chunk)
		goto fail;
	region = cc->tc->ops->read_region(cc->tc, lr->land->id,
					  lr->land->base, lr->land->bytes,
					  lr->land->reg, lr->land->reg_arg);
	if (!region)
		goto fail; /* not registrable here: those keys by RPC */
	r->buf = cc->tc->ops->read_buf(cc->tc, (size_t)chunk * r->slot_bytes);
	if (!r->buf)
		goto fail;
	rc = land_buckets(lr, cc, all, idx, n, chunk, deadline);
	if (!rc)
		rc = land_records(lr, cc, region, all, idx, n, lim.max_reads,
				  deadline);
	if (!rc) {
		embkv_client_conn_put(r->c, cc);
		return;
	}
	cc->broken = 1;
fail:
	for (j = 0; j < n; j++) {
		struct os_key *k = &all[idx[j]];

		if (k->state == K_BUCKETS || k->state == K_RECORD) {
			k->state = K_RPC;
			lr->read_now[k->u - lr->first] = 0;
		}
	}
	embkv_client_conn_put(r->c, cc);
}

/* A round's verdicts: the next state of every key that read a record. */
static void land_judge(struct land_run *lr, struct os_key *all,
		       uint32_t count, const uint8_t *verdict)
{
	struct os_run *r = &lr->r;

	for (uint32_t s = 0; s < count; s++) {
		struct os_key *k = &all[s];
		uint64_t key = r->ukeys[k->u];

		if (!lr->read_now[s])
			continue;
		lr->read_now[s] = 0;
		/* other key or dead: the buckets again, from the slot after */
		if (verdict_apply(r, k, key, verdict[s], lr->srv[s]->server,
				  lr->upart[s]))
			k->state = k->cand < 2 * EMBKV_BUCKET_SLOTS ? K_BUCKETS
								   : K_RPC;
	}
}

void embkv_onesided_land(struct embkv_table_handle *t, const uint64_t *ukeys,
			 uint32_t first, uint32_t count,
			 const struct embkv_os_landing *land, uint32_t *rest,
			 uint32_t *nrest, uint32_t *untried, uint32_t *nuntried)
{
	struct embkv_onesided *os = t->os;
	struct embkv_client *c = t->c;
	struct embkv_shardmap *m = NULL;
	struct os_regions *reg = NULL;
	struct land_run lr;
	struct os_run *r = &lr.r;
	struct os_key *all = NULL;
	uint32_t *order = NULL, *off = NULL, *items = NULL, s, j, round;
	unsigned bits;

	*nrest = 0;
	*nuntried = 0;
	memset(&lr, 0, sizeof(lr));
	if (!os || c->no_onesided || !count || !land || !land->check ||
	    land->stride < t->rec_len || land->bytes < (size_t)count *
	    land->stride)
		goto all_rest;
	m = embkv_shardmap_get(t);
	reg = regions_get(os);
	if (reg && reg->epoch != m->epoch) {
		regions_put(reg);
		reg = NULL;
		if (!regions_fetch(os, m))
			reg = regions_get(os);
	}
	if (!reg || !reg->nsrv || reg->epoch != m->epoch)
		goto all_rest;
	lr.land = land;
	lr.first = first;
	r->t = t;
	r->c = c;
	r->os = os;
	r->epoch = m->epoch;
	r->ukeys = ukeys;
	r->payload_bytes = t->payload_bytes;
	r->rec_len = t->rec_len;
	r->slot_bytes = BUCKETS_BYTES + ((r->rec_len + LINE - 1) & ~(LINE - 1));
	all = calloc(count, sizeof(*all));
	lr.read_now = calloc(count, 1);
	lr.upart = malloc((size_t)count * sizeof(*lr.upart));
	lr.srv = calloc(count, sizeof(*lr.srv));
	items = malloc((size_t)count * sizeof(*items));
	order = malloc((size_t)count * sizeof(*order));
	off = malloc(((size_t)m->nsrv + 1) * sizeof(*off));
	r->k = malloc(CHUNK_KEYS * sizeof(*r->k));
	r->reads = malloc(2 * CHUNK_KEYS * sizeof(*r->reads));
	r->served = malloc((size_t)count * sizeof(*r->served));
	if (!all || !lr.read_now || !lr.upart || !lr.srv || !items ||
	    !order || !off || !r->k || !r->reads || !r->served)
		goto all_rest;
	/* each key's partition, server and starting state (cache first) */
	bits = embkv_batch_part_bits(m->nparts);
	for (j = 0; j < count; j++) {
		struct os_key *k = &all[j];

		k->u = first + j;
		k->h = embkv_hash_key(ukeys[first + j], t->attr.hash_seed);
		lr.upart[j] = embkv_hash_partition(k->h, bits);
		items[j] = j;
		lr.srv[j] = regions_srv(reg, m->srv[m->part_srv[lr.upart[j]]]);
		k->state = K_RPC;
		if (lr.srv[j])
			key_start(r, k, lr.srv[j], lr.upart[j]);
	}
	if (embkv_batch_route(items, count, lr.upart, m->part_srv, m->nsrv,
			      order, off))
		goto all_rest;
	for (round = 0; round < LAND_ROUNDS; round++) {
		int any = 0;

		for (s = 0; s < m->nsrv; s++) {
			uint32_t cnt = off[s + 1] - off[s], busy = 0;

			for (j = 0; j < cnt; j++) {
				uint8_t st = all[order[off[s] + j]].state;

				busy += st == K_BUCKETS || st == K_RECORD;
			}
			if (!busy)
				continue;
			r->srv = lr.srv[order[off[s]]];
			land_server(&lr, all, order + off[s], cnt);
		}
		for (j = 0; j < count; j++)
			any |= lr.read_now[j];
		if (!any)
			break;
		if (land->check(land->arg, first, count, land->verdict)) {
			/* no verdicts: nothing read this round is trusted */
			for (j = 0; j < count; j++)
				if (all[j].state != K_DONE)
					all[j].state = K_RPC;
			break;
		}
		land_judge(&lr, all, count, land->verdict);
	}
	for (j = 0; j < count; j++) {
		if (all[j].state == K_DONE)
			continue;
		if (all[j].tried)
			rest[(*nrest)++] = first + j;
		else
			untried[(*nuntried)++] = first + j;
	}
	EMBKV_COUNT(c, keys_onesided, r->nserved);
	EMBKV_COUNT(c, fallbacks, *nrest);
	if (r->nserved)
		hits_count(os, r->served, r->nserved);
	goto free_all;
all_rest:
	for (j = 0; j < count; j++)
		untried[j] = first + j;
	*nrest = 0;
	*nuntried = count;
free_all:
	free(r->served);
	free(r->reads);
	free(r->k);
	free(off);
	free(order);
	free(items);
	free(lr.srv);
	free(lr.upart);
	free(lr.read_now);
	free(all);
	regions_put(reg);
	if (m)
		embkv_shardmap_put(m);
}
