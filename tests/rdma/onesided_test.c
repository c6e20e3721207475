/*
 * embkv_rdma_onesided_{equiv,torn,evict}: the client's one-sided pull
 * against real embkvd processes listening on rdma://, in the soft-RoCE VM.
 *
 *   equiv: 100k keys over 2 servers: the one-sided pull returns exactly
 *          (bit for bit, found flags too) what the RPC path returns, cold
 *          and warm (warm: one READ per key); missing keys fall back
 *          (train inserts, infer gives the default).
 *   torn:  a writer client assigns rows continuously (row = key tag, then
 *          dim - 1 copies of a version), a reader client pulls them
 *          one-sided for SECONDS s: every row accepted carries its key's
 *          tag and one version throughout (a torn copy would mix two);
 *          torn re-reads are counted and printed.
 *   half:  fp16 and bf16 tables (dim 64): one-sided pulls, cold and warm,
 *          give the RPC path's floats and, raw, its stored 16-bit rows
 *          bit for bit; a cached key's READ is 24 + 2 x 64 = 152 bytes
 *          (an fp32 row's is 280): read_bytes counts exactly that.
 *   evict: a small table; a reader caches the locations of set A, then a
 *          writer inserts set B (evicting A's rows and reusing their ids)
 *          while the reader keeps pulling A: a row is returned only with
 *          A's own values, else found = 0; the cache drops are counted.
 *
 * usage: embkv_rdma_onesided MODE [SECONDS]. Servers listen on
 * rdma://$EMBKV_VM_IP (10.0.2.15). Prints PASS/FAIL lines; exit 0 when
 * all pass.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "client/client.h"
#include "tests/rdma/rdma_test.h"

static void counters_print(const char *who, struct embkv_client *c)
{
	struct embkv_client_counters k;

	embkv_client_counters(c, &k);
	printf("%s: round_trips %llu key_round_trips %llu read_wrs %llu "
	       "read_bytes %llu onesided %llu fallbacks %llu torn %llu "
	       "cache_hits %llu cache_drops %llu hits_sent %llu\n", who,
	       (unsigned long long)k.round_trips,
	       (unsigned long long)k.key_round_trips,
	       (unsigned long long)k.read_wrs,
	       (unsigned long long)k.read_bytes,
	       (unsigned long long)k.keys_onesided,
	       (unsigned long long)k.fallbacks,
	       (unsigned long long)k.torn_retries,
	       (unsigned long long)k.cache_hits,
	       (unsigned long long)k.cache_drops,
	       (unsigned long long)k.hits_sent);
	fflush(stdout);
}

/* equiv ------------------------------------------------------------------ */

#define EQ_KEYS 100000u
#define EQ_DIM 32u

static int test_equiv(void)
{
	struct embkv_client *rpc = NULL, *one = NULL;
	struct embkv_table_handle *tr = NULL, *to = NULL;
	struct embkv_client_counters k0, k1, k2;
	uint64_t hits;
	size_t bytes = (size_t)EQ_KEYS * EQ_DIM * sizeof(float);
	uint64_t *keys = malloc(EQ_KEYS * sizeof(*keys));
	float *ref = malloc(bytes), *got = malloc(bytes), *g = malloc(bytes);
	uint8_t *fr = malloc(EQ_KEYS), *fg = malloc(EQ_KEYS);
	uint32_t i;
	int rc;

	CHECK(keys && ref && got && g && fr && fg, "memory");
	rpc = client(2, 1);
	one = client(2, 0);
	CHECK(rpc && one, "clients");
	rc = table_create(rpc, "eq", EQ_DIM, 1u << 18, EMBKV_DTYPE_F32,
			  EMBKV_INIT_NORMAL);
	CHECK(rc == 0, "create: %s", embkv_strerror(rc));
	CHECK(embkv_table_open(rpc, "eq", &tr) == 0, "open rpc");
	CHECK(embkv_table_open(one, "eq", &to) == 0, "open one-sided");
	CHECK(to->os, "no one-sided state on an rdma table");
	for (i = 0; i < EQ_KEYS; i++)
		keys[i] = 0x9e3779b97f4a7c15ull * (i + 1);
	/* rows in by RPC (train), then moved off their initial values */
	CHECK(embkv_pull(tr, EQ_KEYS, keys, ref, NULL, EMBKV_MODE_TRAIN,
			 NULL) == 0, "insert");
	for (size_t j = 0; j < (size_t)EQ_KEYS * EQ_DIM; j++)
		g[j] = (float)((j * 2654435761u) % 1000) * 1e-3f - 0.5f;
	rc = embkv_push(tr, EQ_KEYS, keys, g, NULL);
	CHECK(rc == 0, "push: %s", embkv_strerror(rc));
	CHECK(embkv_pull(tr, EQ_KEYS, keys, ref, fr, EMBKV_MODE_INFER,
			 NULL) == 0, "rpc pull");
	embkv_client_counters(one, &k0);
	CHECK(embkv_pull(to, EQ_KEYS, keys, got, fg, EMBKV_MODE_INFER,
			 NULL) == 0, "one-sided pull (cold)");
	embkv_client_counters(one, &k1);
	CHECK(memcmp(ref, got, bytes) == 0 && memcmp(fr, fg, EQ_KEYS) == 0,
	      "cold one-sided rows differ from the RPC path's");
	CHECK(k1.keys_onesided - k0.keys_onesided == EQ_KEYS,
	      "cold: %llu keys one-sided",
	      (unsigned long long)(k1.keys_onesided - k0.keys_onesided));
	printf("PASS cold one-sided pull of %u keys == RPC pull (%llu READs, "
	       "%llu round trips)\n", EQ_KEYS,
	       (unsigned long long)(k1.read_wrs - k0.read_wrs),
	       (unsigned long long)(k1.round_trips - k0.round_trips));
	memset(got, 0, bytes);
	CHECK(embkv_pull(to, EQ_KEYS, keys, got, fg, EMBKV_MODE_INFER,
			 NULL) == 0, "one-sided pull (warm)");
	embkv_client_counters(one, &k2);
	CHECK(memcmp(ref, got, bytes) == 0 && memcmp(fr, fg, EQ_KEYS) == 0,
	      "warm one-sided rows differ from the RPC path's");
	/* A cached key costs one READ, another three; the cache is
	 * set-associative and bounded, so a few keys of a set that
	 * overflowed may have been forgotten. */
	hits = k2.cache_hits - k1.cache_hits;
	CHECK(k2.read_wrs - k1.read_wrs == hits + 3 * (EQ_KEYS - hits) &&
	      hits >= EQ_KEYS - EQ_KEYS / 1000,
	      "warm: %llu READs, %llu cache hits for %u keys",
	      (unsigned long long)(k2.read_wrs - k1.read_wrs),
	      (unsigned long long)hits, EQ_KEYS);
	printf("PASS warm one-sided pull == RPC pull, one READ per cached key "
	       "(%llu of %u cached)\n", (unsigned long long)hits, EQ_KEYS);

	/* keys not stored: infer -> default, found 0; train -> inserted */
	for (i = 0; i < 1000; i++)
		keys[i] = 0xdead0000ull + i;
	CHECK(embkv_pull(to, 1000, keys, got, fg, EMBKV_MODE_INFER, NULL) == 0,
	      "infer missing");
	for (i = 0; i < 1000; i++)
		CHECK(fg[i] == 0 && got[i * EQ_DIM] == 0.0f, "missing key %u", i);
	CHECK(embkv_pull(to, 1000, keys, got, fg, EMBKV_MODE_TRAIN, NULL) == 0,
	      "train missing");
	CHECK(embkv_pull(tr, 1000, keys, ref, fr, EMBKV_MODE_INFER, NULL) == 0,
	      "rpc after train");
	CHECK(memcmp(ref, got, (size_t)1000 * EQ_DIM * sizeof(float)) == 0,
	      "train-mode fallback rows differ");
	CHECK(embkv_pull(to, 1000, keys, got, fg, EMBKV_MODE_INFER, NULL) == 0,
	      "one-sided after train");
	CHECK(memcmp(ref, got, (size_t)1000 * EQ_DIM * sizeof(float)) == 0,
	      "inserted rows read one-sided differ");
	printf("PASS missing keys fall back to RPC (infer default, train insert)\n");
	counters_print("equiv", one);
out:
	embkv_table_close(to);
	embkv_table_close(tr);
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	free(keys);
	free(ref);
	free(got);
	free(g);
	free(fr);
	free(fg);
	return failures;
}

/* half ------------------------------------------------------------------- */

#define HALF_KEYS 20000u
#define HALF_DIM 64u

static int half_one(struct embkv_client *rpc, struct embkv_client *one,
		    enum embkv_dtype dt, const char *name)
{
	struct embkv_table_handle *tr = NULL, *to = NULL;
	struct embkv_client_counters k0, k1, k2;
	struct embkv_table_attr ta;
	size_t n = (size_t)HALF_KEYS * HALF_DIM;
	uint64_t *keys = malloc(HALF_KEYS * sizeof(*keys)), hits, rec, bytes;
	float *v = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
	float *got = malloc(n * sizeof(float));
	uint16_t *rref = malloc(n * 2), *rgot = malloc(n * 2);
	uint8_t *fg = malloc(HALF_KEYS);
	int rc;

	CHECK(keys && v && ref && got && rref && rgot && fg, "memory");
	embkv_table_attr_init(&ta);
	snprintf(ta.name, sizeof(ta.name), "%s", name);
	ta.dim = HALF_DIM;
	ta.dtype = dt;
	ta.capacity = 1u << 16;
	ta.partitions = 64;
	ta.opt.lr = 0.1f;
	rc = embkv_table_create_remote(rpc, &ta);
	CHECK(rc == 0, "create %s: %s", name, embkv_strerror(rc));
	CHECK(embkv_table_open(rpc, name, &tr) == 0, "open rpc");
	CHECK(embkv_table_open(one, name, &to) == 0, "open one-sided");
	CHECK(to->os, "no one-sided state on a 16-bit rdma table");
	rec = to->rec_len;
	CHECK(rec == 24 + 2 * HALF_DIM, "record READ of %llu bytes",
	      (unsigned long long)rec);
	for (uint32_t i = 0; i < HALF_KEYS; i++)
		keys[i] = 0x9e3779b97f4a7c15ull * (i + 7);
	for (size_t j = 0; j < n; j++)
		v[j] = (float)((j * 2654435761u) % 2000) * 1e-3f - 1.0f;
	CHECK(embkv_assign(tr, HALF_KEYS, keys, v) == 0, "assign");
	/* and a push, so rows carry optimizer write-backs (stochastic) */
	CHECK(embkv_push(tr, HALF_KEYS, keys, v, NULL) == 0, "push");
	CHECK(embkv_pull(tr, HALF_KEYS, keys, ref, NULL, EMBKV_MODE_INFER,
			 NULL) == 0, "rpc pull");
	CHECK(embkv_pull_raw(tr, HALF_KEYS, keys, rref, NULL,
			     EMBKV_MODE_INFER, NULL) == 0, "rpc raw pull");
	embkv_client_counters(one, &k0);
	CHECK(embkv_pull(to, HALF_KEYS, keys, got, fg, EMBKV_MODE_INFER,
			 NULL) == 0, "one-sided pull (cold)");
	embkv_client_counters(one, &k1);
	CHECK(memcmp(ref, got, n * sizeof(float)) == 0,
	      "%s: cold one-sided rows differ from the RPC path's", name);
	for (uint32_t i = 0; i < HALF_KEYS; i++)
		CHECK(fg[i] == 1, "key %u not found", i);
	CHECK(k1.keys_onesided - k0.keys_onesided == HALF_KEYS,
	      "%s cold: %llu keys one-sided", name,
	      (unsigned long long)(k1.keys_onesided - k0.keys_onesided));
	CHECK(embkv_pull_raw(to, HALF_KEYS, keys, rgot, fg, EMBKV_MODE_INFER,
			     NULL) == 0, "one-sided raw pull (warm)");
	embkv_client_counters(one, &k2);
	CHECK(memcmp(rref, rgot, n * 2) == 0,
	      "%s: warm one-sided raw rows differ from the RPC path's", name);
	hits = k2.cache_hits - k1.cache_hits;
	bytes = k2.read_bytes - k1.read_bytes;
	/* cached: one READ of the record; not: both buckets, the record */
	CHECK(k2.keys_onesided - k1.keys_onesided == HALF_KEYS &&
	      bytes == hits * rec + (HALF_KEYS - hits) * (128 + rec) &&
	      hits >= HALF_KEYS - HALF_KEYS / 100,
	      "%s warm: %llu bytes, %llu cache hits", name,
	      (unsigned long long)bytes, (unsigned long long)hits);
	printf("PASS %s one-sided pulls == RPC (floats and raw bits), cold "
	       "and warm; warm: %.2f READ bytes per key (%llu of %u cached; "
	       "the record %llu bytes, %.3f x the stored row of %u)\n", name,
	       (double)bytes / HALF_KEYS, (unsigned long long)hits, HALF_KEYS,
	       (unsigned long long)rec, (double)rec / (2 * HALF_DIM),
	       2 * HALF_DIM);
out:
	embkv_table_close(to);
	embkv_table_close(tr);
	free(keys);
	free(v);
	free(ref);
	free(got);
	free(rref);
	free(rgot);
	free(fg);
	return failures;
}

static int test_half(void)
{
	struct embkv_client *rpc = client(2, 1), *one = client(2, 0);

	if (!rpc || !one) {
		printf("FAIL clients\n");
		failures++;
	} else {
		half_one(rpc, one, EMBKV_DTYPE_BF16, "half_bf16");
		half_one(rpc, one, EMBKV_DTYPE_F16, "half_fp16");
		counters_print("half", one);
	}
	embkv_client_destroy(one);
	embkv_client_destroy(rpc);
	return failures;
}

/* torn ------------------------------------------------------------------- */

#define TORN_KEYS 512u
#define TORN_DIM 64u

struct writer {
	struct embkv_table_handle *t;
	const uint64_t *keys;
	uint32_t n, dim;
	volatile int stop;
	uint64_t rounds;
	int rc;
	float tag0;             /* evict: values are f(key) */
};

static float key_tag(uint64_t key)
{
	return (float)(key % 65521u) + 1.0f;
}

static void *writer_main(void *p)
{
	struct writer *w = p;
	float *v = malloc((size_t)w->n * w->dim * sizeof(float));

	if (!v) {
		w->rc = -ENOMEM;
		return NULL;
	}
	while (!w->stop && !w->rc) {
		for (uint32_t i = 0; i < w->n; i++) {
			float *row = v + (size_t)i * w->dim;

			row[0] = key_tag(w->keys[i]);
			for (uint32_t j = 1; j < w->dim; j++)
				row[j] = (float)w->rounds;
		}
		w->rc = embkv_assign(w->t, w->n, w->keys, v);
		w->rounds++;
	}
	free(v);
	return NULL;
}

static int test_torn(unsigned seconds)
{
	struct embkv_client *wc = NULL, *rc_ = NULL;
	struct embkv_table_handle *tw = NULL, *tr = NULL;
	struct embkv_client_counters k;
	struct writer w = { 0 };
	uint64_t keys[TORN_KEYS], pulls = 0, rows = 0, t0;
	float *out = malloc((size_t)TORN_KEYS * TORN_DIM * sizeof(float));
	uint8_t found[TORN_KEYS];
	pthread_t th;
	int started = 0, rc;

	wc = client(2, 1);
	rc_ = client(2, 0);
	CHECK(out && wc && rc_, "clients");
	rc = table_create(wc, "torn", TORN_DIM, 1u << 14, EMBKV_DTYPE_F32,
			  EMBKV_INIT_ZEROS);
	CHECK(rc == 0, "create: %s", embkv_strerror(rc));
	CHECK(embkv_table_open(wc, "torn", &tw) == 0, "open w");
	CHECK(embkv_table_open(rc_, "torn", &tr) == 0, "open r");
	for (uint32_t i = 0; i < TORN_KEYS; i++)
		keys[i] = 7000000ull + i * 977;
	w = (struct writer){ .t = tw, .keys = keys, .n = TORN_KEYS,
			     .dim = TORN_DIM };
	w.stop = 1; /* one round first, so every key exists */
	w.stop = 0;
	CHECK(pthread_create(&th, NULL, writer_main, &w) == 0, "thread");
	started = 1;
	while (__atomic_load_n(&w.rounds, __ATOMIC_RELAXED) < 1 && !w.rc)
		usleep(1000);
	t0 = embkv_now_ms();
	while (embkv_now_ms() - t0 < seconds * 1000ull) {
		rc = embkv_pull(tr, TORN_KEYS, keys, out, found,
				EMBKV_MODE_INFER, NULL);
		CHECK(rc == 0, "pull: %s", embkv_strerror(rc));
		for (uint32_t i = 0; i < TORN_KEYS; i++) {
			const float *row = out + (size_t)i * TORN_DIM;

			CHECK(found[i], "key %u not found", i);
			CHECK(row[0] == key_tag(keys[i]),
			      "key %u: a row of another key accepted", i);
			for (uint32_t j = 2; j < TORN_DIM; j++)
				CHECK(row[j] == row[1],
				      "key %u: torn row accepted (%g vs %g)",
				      i, (double)row[j], (double)row[1]);
		}
		pulls++;
		rows += TORN_KEYS;
	}
	w.stop = 1;
	pthread_join(th, NULL);
	started = 0;
	CHECK(w.rc == 0, "writer: %s", embkv_strerror(w.rc));
	embkv_client_counters(rc_, &k);
	CHECK(k.keys_onesided > 0, "nothing was read one-sided");
	printf("PASS torn reads: %llu pulls, %llu rows checked, 0 bad accepted; "
	       "writer rounds %llu; torn re-reads %llu, served one-sided "
	       "%llu, fallbacks %llu\n", (unsigned long long)pulls,
	       (unsigned long long)rows, (unsigned long long)w.rounds,
	       (unsigned long long)k.torn_retries,
	       (unsigned long long)k.keys_onesided,
	       (unsigned long long)k.fallbacks);
	counters_print("torn", rc_);
out:
	if (started) {
		w.stop = 1;
		pthread_join(th, NULL);
	}
	embkv_table_close(tr);
	embkv_table_close(tw);
	embkv_client_destroy(rc_);
	embkv_client_destroy(wc);
	free(out);
	return failures;
}

/* evict ------------------------------------------------------------------ */

#define EV_A 200u
#define EV_B 4000u
#define EV_DIM 16u
#define EV_CAP 512u

static void ev_row(uint64_t key, float *row)
{
	for (uint32_t j = 0; j < EV_DIM; j++)
		row[j] = key_tag(key) + (float)j * 0.25f;
}

static int ev_check(const uint64_t *keys, const float *out,
		    const uint8_t *found, uint32_t n, uint32_t *nfound)
{
	float want[EV_DIM];

	*nfound = 0;
	for (uint32_t i = 0; i < n; i++) {
		const float *row = out + (size_t)i * EV_DIM;

		if (!found[i]) {
			for (uint32_t j = 0; j < EV_DIM; j++)
				if (row[j] != 0.0f)
					return -1;
			continue;
		}
		ev_row(keys[i], want);
		if (memcmp(row, want, sizeof(want)))
			return -1;
		(*nfound)++;
	}
	return 0;
}

static int test_evict(void)
{
	struct embkv_client *wc = NULL, *rc_ = NULL;
	struct embkv_table_handle *tw = NULL, *tr = NULL;
	struct embkv_client_counters k0, k1;
	uint64_t *a = malloc(EV_A * sizeof(*a)), *b = malloc(EV_B * sizeof(*b));
	float *va = malloc((size_t)EV_B * EV_DIM * sizeof(float));
	float *out = malloc((size_t)EV_A * EV_DIM * sizeof(float));
	uint8_t found[EV_A];
	uint32_t i, nf = 0, rounds = 0, minf = EV_A;
	int rc;

	wc = client(2, 1);
	rc_ = client(2, 0);
	CHECK(a && b && va && out && wc && rc_, "clients");
	rc = table_create(wc, "evict", EV_DIM, EV_CAP, EMBKV_DTYPE_F32,
			  EMBKV_INIT_ZEROS);
	CHECK(rc == 0, "create: %s", embkv_strerror(rc));
	CHECK(embkv_table_open(wc, "evict", &tw) == 0, "open w");
	CHECK(embkv_table_open(rc_, "evict", &tr) == 0, "open r");
	for (i = 0; i < EV_A; i++) {
		a[i] = 100 + i;
		ev_row(a[i], va + (size_t)i * EV_DIM);
	}
	CHECK(embkv_assign(tw, EV_A, a, va) == 0, "assign A");
	/* cold then warm: the reader caches A's locations */
	for (int r = 0; r < 2; r++) {
		CHECK(embkv_pull(tr, EV_A, a, out, found, EMBKV_MODE_INFER,
				 NULL) == 0, "pull A");
		CHECK(ev_check(a, out, found, EV_A, &nf) == 0, "bad A row");
	}
	embkv_client_counters(rc_, &k0);
	CHECK(k0.cache_hits >= EV_A / 2, "A not cached (%llu hits)",
	      (unsigned long long)k0.cache_hits);
	/* B evicts A and reuses its rows, between the reader's pulls */
	for (i = 0; i < EV_B; i++) {
		b[i] = 5000000 + i;
		ev_row(b[i], va + (size_t)i * EV_DIM);
	}
	for (uint32_t at = 0; at < EV_B; at += 250) {
		CHECK(embkv_assign(tw, 250, b + at, va + (size_t)at * EV_DIM) ==
		      0, "assign B");
		CHECK(embkv_pull(tr, EV_A, a, out, found, EMBKV_MODE_INFER,
				 NULL) == 0, "pull A");
		CHECK(ev_check(a, out, found, EV_A, &nf) == 0,
		      "another key's row (or a wrong value) returned for A");
		if (nf < minf)
			minf = nf;
		rounds++;
	}
	embkv_client_counters(rc_, &k1);
	CHECK(minf < EV_A, "nothing of A was evicted (table too big?)");
	CHECK(k1.cache_drops > k0.cache_drops, "no cache entry was dropped");
	printf("PASS eviction under a caching reader: %u pulls, A down to "
	       "%u/%u rows, never another key's row; cache drops %llu, "
	       "fallbacks %llu\n", rounds, minf, EV_A,
	       (unsigned long long)(k1.cache_drops - k0.cache_drops),
	       (unsigned long long)(k1.fallbacks - k0.fallbacks));
	counters_print("evict", rc_);
out:
	embkv_table_close(tr);
	embkv_table_close(tw);
	embkv_client_destroy(rc_);
	embkv_client_destroy(wc);
	free(a);
	free(b);
	free(va);
	free(out);
	return failures;
}

static void run_equiv(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	test_equiv();
}

static void run_torn(int argc, char **argv)
{
	test_torn(argc > 2 ? (unsigned)atoi(argv[2]) : 10);
}

static void run_evict(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	test_evict();
}

static void run_half(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	test_half();
}

int main(int argc, char **argv)
{
	static const struct rdma_mode modes[] = {
		{ "equiv", run_equiv }, { "torn", run_torn },
		{ "evict", run_evict }, { "half", run_half }, { NULL, NULL },
	};

	return rdma_test_main(argc, argv, 2, 120, modes);
}
