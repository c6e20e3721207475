/*
 * Unit tests for net/wire.c: round trip of every message, every limit and
 * malformation rejected with its code, and a fuzz loop over random and
 * mutated frames (meant to run under ASan/UBSan as well).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "net/wire.h"

#define N_KEYS 5u
#define DIM 3u
#define FUZZ_ITERS 100000u
#define FUZZ_SEED_DEFAULT 0x5eed0f0e1b1e5ull
#define FUZZ_EXTEND_MAX 64u
#define FUZZ_RANDOM_LEN_MAX 512u
#define FUZZ_MUTATIONS_MAX 4u
#define FUZZ_RANDOM_PERCENT 10u
#define N_KNOWN_OPS 79u /* 39 requests, 39 replies, ERROR */
#define UID 0x8badf00d0123abcdull /* a table uid; all 8 bytes nonzero */

static const uint64_t sample_keys[N_KEYS] = {
	1, 2, 0xdeadbeefcafef00dull, UINT64_MAX, 0,
};
static const uint8_t sample_found[N_KEYS] = { 1, 0, 1, 1, 0 };

static float sample_vals[N_KEYS * DIM];

/* ------------------------------------------------------------------------ */
/* helpers */

static uint8_t *xmalloc(size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	return p;
}

/* An exact-size heap copy (8-aligned; ASan catches any over-read). */
static uint8_t *dup_bytes(const uint8_t *src, size_t len)
{
	uint8_t *p = xmalloc(len);

	if (len)
		memcpy(p, src, len);
	return p;
}

static void sample_attr(struct embkv_table_attr *a)
{
	memset(a, 0, sizeof(*a));
	strcpy(a->name, "user_emb");
	a->dim = 16;
	a->dtype = EMBKV_DTYPE_F32;
	a->partitions = 1024;
	a->capacity = 123456789012ull;
	a->opt.type = EMBKV_OPT_ADAM;
	a->opt.lr = 0.001f;
	a->opt.beta1 = 0.9f;
	a->opt.beta2 = 0.999f;
	a->opt.eps = 1e-8f;
	a->opt.initial_accum = 0.1f;
	a->opt.l1 = 0.01f;
	a->opt.l2 = 0.02f;
	a->opt.ftrl_beta = 1.0f;
	a->init.type = EMBKV_INIT_NORMAL;
	a->init.a = -0.5f;
	a->init.b = 0.05f;
	a->init.seed = 0x1122334455667788ull;
	a->admit_after = 3;
	a->lfu_decay_period = 7;
	a->hash_seed = 0xabcdef0123456789ull;
	a->index_load = 0.875f;
	a->flags = 0x40;
}

static void assert_f32_same(float x, float y)
{
	assert_memory_equal(&x, &y, sizeof(x));
}

static void assert_attr_equal(const struct embkv_table_attr *x,
			      const struct embkv_table_attr *y)
{
	assert_string_equal(x->name, y->name);
	assert_int_equal(x->dim, y->dim);
	assert_int_equal(x->dtype, y->dtype);
	assert_int_equal(x->partitions, y->partitions);
	assert_int_equal(x->capacity, y->capacity);
	assert_int_equal(x->opt.type, y->opt.type);
	assert_f32_same(x->opt.lr, y->opt.lr);
	assert_f32_same(x->opt.beta1, y->opt.beta1);
	assert_f32_same(x->opt.beta2, y->opt.beta2);
	assert_f32_same(x->opt.eps, y->opt.eps);
	assert_f32_same(x->opt.initial_accum, y->opt.initial_accum);
	assert_f32_same(x->opt.l1, y->opt.l1);
	assert_f32_same(x->opt.l2, y->opt.l2);
	assert_f32_same(x->opt.ftrl_beta, y->opt.ftrl_beta);
	assert_int_equal(x->init.type, y->init.type);
	assert_f32_same(x->init.a, y->init.a);
	assert_f32_same(x->init.b, y->init.b);
	assert_int_equal(x->init.seed, y->init.seed);
	assert_int_equal(x->admit_after, y->admit_after);
	assert_int_equal(x->lfu_decay_period, y->lfu_decay_period);
	assert_int_equal(x->hash_seed, y->hash_seed);
	assert_f32_same(x->index_load, y->index_load);
	assert_int_equal(x->flags, y->flags);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* ------------------------------------------------------------------------ */
/* samples: one valid body per known opcode, built with the encoders */

struct sample {
	unsigned int op;
	uint8_t *body;
	size_t len;
};

static struct sample samples[N_KNOWN_OPS];
static size_t n_samples;

static const struct embkv_wire_stat stats_server[] = {
	{ EMBKV_WIRE_STAT_CONNECTIONS, 12 },
	{ EMBKV_WIRE_STAT_BYTES_IN, 1ull << 40 },
};
static const struct embkv_wire_stat stats_table[] = {
	{ EMBKV_WIRE_STAT_ROWS, 1000 },
	{ 999, UINT64_MAX }, /* an id this build does not know */
	{ EMBKV_WIRE_STAT_EVICTIONS, 0 },
};
static const struct embkv_wire_stats_group stats_groups[] = {
	{ EMBKV_WIRE_TABLE_ALL, 2, stats_server },
	{ 7, 0, NULL },
	{ 3, 3, stats_table },
};
#define N_STATS_GROUPS 3u
#define N_STATS 5u

static const uint16_t map_parts[] = { 0, 1, 2, 1, 0, 2, 2, 1 };
static const char *const map_servers[] = {
	"tcp://10.0.0.1:7000", "rdma://10.0.0.2:7000", "tcp://[::1]:7001",
};
#define N_MAP_PARTS 8u
#define N_MAP_SERVERS 3u

static const struct embkv_wire_table_entry list_entries[] = {
	{ 1, 16, UID, "user_emb" },
	{ 2, 4096, 1, "item_emb" },
	{ 3, 1, UINT64_MAX, "x" },
};
#define N_LIST 3u

static const char err_msg[] = "shard map epoch 42 is newer";

static const uint32_t sample_counts[] = { 1, 0, 7, 0xffffffff, 3, 2, 9, 4,
					  5, 6, 8, 10, 11, 12, 13, 14 };

static const struct embkv_wire_region_part region_parts[] = {
	{ .part = 0, .index_rkey = 0x1234, .arena_rkey = 0xabcdef01,
	  .index_addr = 0x7f0000001000ull, .nbuckets = 1024,
	  .arena_addr = 0x7f0000100000ull, .capacity = 4096 },
	{ .part = 3, .index_rkey = 0x5678, .arena_rkey = 0x9abc,
	  .index_addr = 0x7f0000201000ull, .nbuckets = 2048,
	  .arena_addr = 0x7f0000300000ull, .capacity = 8192 },
	{ .part = 65535, .nbuckets = 1 },
};
#define N_REGION_PARTS 3u

static void sample_regions(struct embkv_wire_table_regions *m)
{
	memset(m, 0, sizeof(*m));
	m->table_id = 3;
	m->uid = UID;
	m->count = N_REGION_PARTS;
	m->stride = 280;
	m->parts = region_parts;
}

static void add_sample(unsigned int op, uint8_t *body, size_t len)
{
	assert_true(n_samples < N_KNOWN_OPS);
	samples[n_samples].op = op;
	samples[n_samples].body = body;
	samples[n_samples].len = len;
	n_samples++;
}

static const struct sample *find_sample(unsigned int op)
{
	size_t i;

	for (i = 0; i < n_samples; i++)
		if (samples[i].op == op)
			return &samples[i];
	fail_msg("no sample for op 0x%x", op);
	return NULL;
}

#define R(op) ((op) | EMBKV_WIRE_OP_REPLY)

/* MULTI_PULL / MULTI_PUSH bodies (5.25) from whole section bodies. */
struct msec {
	int32_t status;
	uint64_t epoch;
	const uint8_t *body;
	uint32_t len;
};

static uint8_t *multi_build(const struct msec *s, uint32_t n, size_t *len)
{
	size_t total = EMBKV_WIRE_MULTI_SECTIONS, at;
	uint8_t *b;

	for (uint32_t i = 0; i < n; i++)
		total += embkv_wire_multi_sec_bytes(s[i].len);
	b = xmalloc(total);
	assert_int_equal(embkv_wire_multi_encode_head(n, b, total), 0);
	at = EMBKV_WIRE_MULTI_SECTIONS;
	for (uint32_t i = 0; i < n; i++) {
		struct embkv_wire_multi_sec ws = { s[i].len, s[i].status,
						   s[i].epoch, NULL };
		uint8_t *sb;
		int64_t k = embkv_wire_multi_sec_prepare(&ws, b + at,
							 total - at, &sb);

		assert_true(k == (int64_t)embkv_wire_multi_sec_bytes(s[i].len));
		if (s[i].len)
			memcpy(sb, s[i].body, s[i].len);
		at += (size_t)k;
	}
	assert_int_equal(at, total);
	*len = total;
	return b;
}

/* A valid body of each multi op, from the single-table samples. */
static void add_multi_samples(void)
{
	const struct sample *pq = find_sample(EMBKV_WIRE_OP_PULL);
	const struct sample *pr = find_sample(R(EMBKV_WIRE_OP_PULL));
	const struct sample *uq = find_sample(EMBKV_WIRE_OP_PUSH);
	const struct sample *ur = find_sample(R(EMBKV_WIRE_OP_PUSH));
	struct msec s[3];
	uint8_t *b;
	size_t len;

	s[0] = (struct msec){ 0, 7, pq->body, (uint32_t)pq->len };
	s[1] = (struct msec){ 0, 9, pq->body, (uint32_t)pq->len };
	b = multi_build(s, 2, &len);
	add_sample(EMBKV_WIRE_OP_MULTI_PULL, b, len);
	s[0] = (struct msec){ 0, 7, pr->body, (uint32_t)pr->len };
	s[1] = (struct msec){ EMBKV_ENOTABLE, 7, (const uint8_t *)err_msg,
			      (uint32_t)sizeof(err_msg) - 1 };
	s[2] = (struct msec){ 0, 7, pr->body, (uint32_t)pr->len };
	b = multi_build(s, 3, &len);
	add_sample(R(EMBKV_WIRE_OP_MULTI_PULL), b, len);
	s[0] = (struct msec){ 0, 7, uq->body, (uint32_t)uq->len };
	s[1] = (struct msec){ 0, 7, uq->body, (uint32_t)uq->len };
	b = multi_build(s, 2, &len);
	add_sample(EMBKV_WIRE_OP_MULTI_PUSH, b, len);
	s[0] = (struct msec){ EMBKV_EDIM, 7, NULL, 0 };
	s[1] = (struct msec){ 0, 7, ur->body, (uint32_t)ur->len };
	b = multi_build(s, 2, &len);
	add_sample(R(EMBKV_WIRE_OP_MULTI_PUSH), b, len);
}

static void sample_shard_map(struct embkv_wire_shard_map *m)
{
	memset(m, 0, sizeof(*m));
	m->epoch = 42;
	m->table_id = 3;
	m->n_partitions = N_MAP_PARTS;
	m->n_servers = N_MAP_SERVERS;
	m->self = N_MAP_SERVERS - 1;
	m->part_server = map_parts;
	m->servers = map_servers;
}

static int build_samples(void **state)
{
	struct embkv_wire_hello hello;
	struct embkv_wire_auth auth;
	struct embkv_table_attr attr;
	struct embkv_wire_table_info info;
	struct embkv_wire_pull_req pr = { 3, UID, DIM, N_KEYS,
					  EMBKV_WIRE_PULL_INFER, sample_keys };
	struct embkv_wire_pull_reply prep = { N_KEYS, DIM, sample_found,
					      sample_vals, EMBKV_DTYPE_F32 };
	struct embkv_wire_rows_req rr = { 3, UID, DIM, N_KEYS, sample_keys,
					  sample_vals };
	struct embkv_wire_erase_req er = { 3, UID, N_KEYS, sample_keys };
	struct embkv_wire_count_reply cr = { 4, 1 };
	struct embkv_wire_hits hr = { 3, UID, N_KEYS, sample_keys,
				      sample_counts };
	struct embkv_wire_scan_req sq = { 3, 5, UID, 17, 100 };
	struct embkv_wire_scan_reply srep = { 40, N_KEYS, DIM, EMBKV_DTYPE_F32,
					      sample_keys, sample_vals };
	const struct embkv_wire_table_ref ref = { 3, UID };
	const struct embkv_wire_table_ref all = { EMBKV_WIRE_TABLE_ALL, 0 };
	const struct embkv_wire_set_opt so = {
		3, UID, { EMBKV_OPT_ADAGRAD, 0.05f, 0.9f, 0.999f, 1e-8f, 0.1f,
			  0.0f, 0.0f, 1.0f } };
	struct embkv_wire_table_regions rg;
	struct embkv_wire_shard_map sm;
	struct embkv_wire_error err = { EMBKV_ESTALE,
					{ err_msg, sizeof(err_msg) - 1 } };
	uint8_t *b;
	size_t len, i;

	(void)state;
	for (i = 0; i < N_KEYS * DIM; i++)
		sample_vals[i] = (float)i * 0.25f - 1.0f;
	for (i = 0; i < EMBKV_WIRE_NONCE_SIZE; i++)
		hello.nonce[i] = (uint8_t)(i * 7 + 1);
	for (i = 0; i < EMBKV_WIRE_MAC_SIZE; i++)
		auth.mac[i] = (uint8_t)(0xa0 + i);
	sample_attr(&attr);
	info.table_id = 3;
	info.uid = UID;
	info.attr = attr;
	sample_shard_map(&sm);
	sample_regions(&rg);

#define ADD_FIXED(op, LEN, call) do { \
		b = xmalloc(LEN); \
		if (call) \
			return -1; \
		add_sample(op, b, LEN); \
	} while (0)
#define ADD_SIZED(op, sizecall, call) do { \
		if (sizecall) \
			return -1; \
		b = xmalloc(len); \
		if (call) \
			return -1; \
		add_sample(op, b, len); \
	} while (0)

	ADD_FIXED(EMBKV_WIRE_OP_HELLO, EMBKV_WIRE_HELLO_SIZE,
		  embkv_wire_hello_encode(&hello, b, EMBKV_WIRE_HELLO_SIZE));
	ADD_FIXED(R(EMBKV_WIRE_OP_HELLO), EMBKV_WIRE_HELLO_SIZE,
		  embkv_wire_hello_encode(&hello, b, EMBKV_WIRE_HELLO_SIZE));
	ADD_FIXED(EMBKV_WIRE_OP_AUTH, EMBKV_WIRE_AUTH_SIZE,
		  embkv_wire_auth_encode(&auth, b, EMBKV_WIRE_AUTH_SIZE));
	ADD_FIXED(R(EMBKV_WIRE_OP_AUTH), EMBKV_WIRE_AUTH_SIZE,
		  embkv_wire_auth_encode(&auth, b, EMBKV_WIRE_AUTH_SIZE));
	ADD_SIZED(EMBKV_WIRE_OP_TABLE_CREATE,
		  embkv_wire_table_attr_size(&attr, &len),
		  embkv_wire_table_attr_encode(&attr, b, len));
	ADD_FIXED(R(EMBKV_WIRE_OP_TABLE_CREATE), EMBKV_WIRE_TABLE_REF_SIZE,
		  embkv_wire_table_ref_encode(&ref, b,
					      EMBKV_WIRE_TABLE_REF_SIZE));
	ADD_SIZED(EMBKV_WIRE_OP_TABLE_DROP,
		  embkv_wire_name_size("user_emb", &len),
		  embkv_wire_name_encode("user_emb", b, len));
	add_sample(R(EMBKV_WIRE_OP_TABLE_DROP), xmalloc(0), 0);
	add_sample(EMBKV_WIRE_OP_TABLE_LIST, xmalloc(0), 0);
	ADD_SIZED(R(EMBKV_WIRE_OP_TABLE_LIST),
		  embkv_wire_table_list_size(list_entries, N_LIST, &len),
		  embkv_wire_table_list_encode(list_entries, N_LIST, b, len));
	ADD_SIZED(EMBKV_WIRE_OP_TABLE_OPEN,
		  embkv_wire_name_size("item_emb", &len),
		  embkv_wire_name_encode("item_emb", b, len));
	ADD_SIZED(R(EMBKV_WIRE_OP_TABLE_OPEN),
		  embkv_wire_table_info_size(&info, &len),
		  embkv_wire_table_info_encode(&info, b, len));
	ADD_SIZED(EMBKV_WIRE_OP_PULL, embkv_wire_pull_req_size(&pr, &len),
		  embkv_wire_pull_req_encode(&pr, b, len));
	ADD_SIZED(R(EMBKV_WIRE_OP_PULL),
		  embkv_wire_pull_reply_size(N_KEYS, DIM, &len),
		  embkv_wire_pull_reply_encode(&prep, b, len));
	{
		struct embkv_wire_land_req lr = { 0x7f0000400000ull, 0x77, 64,
						  pr };
		uint64_t *lk;
		uint8_t *st;

		if (embkv_wire_land_req_size(&lr, &len))
			return -1;
		b = xmalloc(len);
		if (embkv_wire_land_req_prepare(&lr, b, len, &lk))
			return -1;
		memcpy(lk, sample_keys, sizeof(sample_keys));
		add_sample(EMBKV_WIRE_OP_PULL_LAND, b, len);
		if (embkv_wire_land_reply_size(N_KEYS, &len))
			return -1;
		b = xmalloc(len);
		if (embkv_wire_land_reply_prepare(N_KEYS, DIM, EMBKV_DTYPE_F32,
						  b, len, &st))
			return -1;
		memcpy(st, sample_found, N_KEYS);
		add_sample(R(EMBKV_WIRE_OP_PULL_LAND), b, len);
	}
	ADD_SIZED(EMBKV_WIRE_OP_PUSH, embkv_wire_rows_req_size(&rr, &len),
		  embkv_wire_rows_req_encode(&rr, b, len));
	ADD_FIXED(R(EMBKV_WIRE_OP_PUSH), EMBKV_WIRE_COUNT_REPLY_SIZE,
		  embkv_wire_count_reply_encode(&cr, b,
						EMBKV_WIRE_COUNT_REPLY_SIZE));
	ADD_SIZED(EMBKV_WIRE_OP_ASSIGN, embkv_wire_rows_req_size(&rr, &len),
		  embkv_wire_rows_req_encode(&rr, b, len));
	ADD_FIXED(R(EMBKV_WIRE_OP_ASSIGN), EMBKV_WIRE_COUNT_REPLY_SIZE,
		  embkv_wire_count_reply_encode(&cr, b,
						EMBKV_WIRE_COUNT_REPLY_SIZE));
	ADD_SIZED(EMBKV_WIRE_OP_ACCUMULATE,
		  embkv_wire_rows_req_size(&rr, &len),
		  embkv_wire_rows_req_encode(&rr, b, len));
	ADD_FIXED(R(EMBKV_WIRE_OP_ACCUMULATE), EMBKV_WIRE_COUNT_REPLY_SIZE,
		  embkv_wire_count_reply_encode(&cr, b,
						EMBKV_WIRE_COUNT_REPLY_SIZE));
	ADD_SIZED(EMBKV_WIRE_OP_ERASE, embkv_wire_erase_req_size(&er, &len),
		  embkv_wire_erase_req_encode(&er, b, len));
	ADD_FIXED(R(EMBKV_WIRE_OP_ERASE), EMBKV_WIRE_COUNT_REPLY_SIZE,
		  embkv_wire_count_reply_encode(&cr, b,
						EMBKV_WIRE_COUNT_REPLY_SIZE));
	ADD_SIZED(EMBKV_WIRE_OP_HITS, embkv_wire_hits_size(&hr, &len),
		  embkv_wire_hits_encode(&hr, b, len));
	ADD_FIXED(R(EMBKV_WIRE_OP_HITS), EMBKV_WIRE_COUNT_REPLY_SIZE,
		  embkv_wire_count_reply_encode(&cr, b,
						EMBKV_WIRE_COUNT_REPLY_SIZE));
	ADD_FIXED(EMBKV_WIRE_OP_SCAN, EMBKV_WIRE_SCAN_REQ_SIZE,
		  embkv_wire_scan_req_encode(&sq, b,
					     EMBKV_WIRE_SCAN_REQ_SIZE));
	ADD_SIZED(R(EMBKV_WIRE_OP_SCAN),
		  embkv_wire_scan_reply_size(N_KEYS, DIM, EMBKV_DTYPE_F32,
					     &len),
		  embkv_wire_scan_reply_encode(&srep, b, len));
	ADD_FIXED(EMBKV_WIRE_OP_TABLE_REGIONS, EMBKV_WIRE_TABLE_REF_SIZE,
		  embkv_wire_table_ref_encode(&ref, b,
					      EMBKV_WIRE_TABLE_REF_SIZE));
	ADD_SIZED(R(EMBKV_WIRE_OP_TABLE_REGIONS),
		  embkv_wire_table_regions_size(&rg, &len),
		  embkv_wire_table_regions_encode(&rg, b, len));
	ADD_FIXED(EMBKV_WIRE_OP_TABLE_SET_OPT, EMBKV_WIRE_SET_OPT_SIZE,
		  embkv_wire_set_opt_encode(&so, b, EMBKV_WIRE_SET_OPT_SIZE));
	add_sample(R(EMBKV_WIRE_OP_TABLE_SET_OPT), xmalloc(0), 0);
	ADD_FIXED(EMBKV_WIRE_OP_STATS, EMBKV_WIRE_TABLE_REF_SIZE,
		  embkv_wire_table_ref_encode(&all, b,
					      EMBKV_WIRE_TABLE_REF_SIZE));
	ADD_SIZED(R(EMBKV_WIRE_OP_STATS),
		  embkv_wire_stats_size(stats_groups, N_STATS_GROUPS, &len),
		  embkv_wire_stats_encode(stats_groups, N_STATS_GROUPS, b,
					  len));
	ADD_FIXED(EMBKV_WIRE_OP_SHARD_MAP, EMBKV_WIRE_TABLE_REF_SIZE,
		  embkv_wire_table_ref_encode(&ref, b,
					      EMBKV_WIRE_TABLE_REF_SIZE));
	ADD_SIZED(R(EMBKV_WIRE_OP_SHARD_MAP),
		  embkv_wire_shard_map_size(&sm, &len),
		  embkv_wire_shard_map_encode(&sm, b, len));
	/* CONFIG: an empty JSON object, answered by the configuration */
	len = 2;
	b = xmalloc(len);
	memcpy(b, "{}", len);
	add_sample(EMBKV_WIRE_OP_CONFIG, b, len);
	{
		static const char rep[] = "{\"version\": \"0.1.0\", "
					  "\"threads\": 2, \"peers\": []}";

		len = sizeof(rep) - 1;
		b = xmalloc(len);
		memcpy(b, rep, len);
		add_sample(R(EMBKV_WIRE_OP_CONFIG), b, len);
	}
	/* the checkpoint opcodes carry JSON objects both ways */
	for (unsigned int op = EMBKV_WIRE_OP_CKPT_PART;
	     op <= EMBKV_WIRE_OP_CKPT_DELETE; op++) {
		static const char req[] = "{\"id\": 1796410000000, \"uid\": "
					  "\"00000000000000ff\", \"part\": 3}";
		static const char rep[] = "{\"rows\": [1, 2, {\"a\": \"x\"}]}";

		len = sizeof(req) - 1;
		b = xmalloc(len);
		memcpy(b, req, len);
		add_sample(op, b, len);
		len = sizeof(rep) - 1;
		b = xmalloc(len);
		memcpy(b, rep, len);
		add_sample(R(op), b, len);
	}
	/* the move opcodes: JSON, or blobs (MOVE_READ's reply, MOVE_WRITE) */
	for (unsigned int op = EMBKV_WIRE_OP_MOVE_PREPARE;
	     op <= EMBKV_WIRE_OP_REPL_PULL; op++) {
		static const char js[] = "{\"uid\": \"00000000000000ff\", "
					 "\"part\": 3, \"n\": 5}";
		static const uint8_t rawb[5] = { 1, 2, 0, 4, 5 };

		for (int reply = 0; reply < 2; reply++) {
			bool blob = (op == EMBKV_WIRE_OP_MOVE_READ && reply) ||
				    (op == EMBKV_WIRE_OP_MOVE_WRITE && !reply) ||
				    (op >= EMBKV_WIRE_OP_REPL_SNAP && reply);
			size_t jl = sizeof(js) - 1;

			len = blob ? 4 + jl + sizeof(rawb) : jl;
			b = xmalloc(len);
			if (blob) {
				b[0] = (uint8_t)jl;
				b[1] = b[2] = b[3] = 0;
				memcpy(b + 4, js, jl);
				memcpy(b + 4 + jl, rawb, sizeof(rawb));
			} else {
				memcpy(b, js, jl);
			}
			add_sample(reply ? R(op) : op, b, len);
		}
	}
	add_multi_samples();
	ADD_SIZED(EMBKV_WIRE_OP_ERROR, embkv_wire_error_size(&err, &len),
		  embkv_wire_error_encode(&err, b, len));
#undef ADD_FIXED
#undef ADD_SIZED
	return n_samples == N_KNOWN_OPS ? 0 : -1;
}

static int free_samples(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < n_samples; i++)
		free(samples[i].body);
	n_samples = 0;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* header */

static void test_hdr_round_trip(void **state)
{
	struct embkv_wire_hdr h = {
		.opcode = EMBKV_WIRE_OP_PULL,
		.flags = 0,
		.body_len = 1234,
		.request_id = 0x0102030405060708ull,
		.epoch = 0x1112131415161718ull,
	};
	struct embkv_wire_hdr d;
	uint8_t buf[EMBKV_WIRE_HDR_SIZE];

	(void)state;
	assert_int_equal(embkv_wire_hdr_encode(&h, buf), EMBKV_WIRE_HDR_SIZE);
	/* explicit layout: magic bytes, LE version, LE ids */
	assert_memory_equal(buf + EMBKV_WIRE_HDR_MAGIC, "EMKV", 4);
	assert_int_equal(buf[EMBKV_WIRE_HDR_VERSION], EMBKV_WIRE_VERSION);
	assert_int_equal(buf[EMBKV_WIRE_HDR_VERSION + 1], 0);
	assert_int_equal(buf[EMBKV_WIRE_HDR_OPCODE], EMBKV_WIRE_OP_PULL);
	assert_int_equal(buf[EMBKV_WIRE_HDR_REQ_ID], 0x08);
	assert_int_equal(buf[EMBKV_WIRE_HDR_REQ_ID + 7], 0x01);
	assert_int_equal(buf[EMBKV_WIRE_HDR_EPOCH], 0x18);
	assert_int_equal(buf[EMBKV_WIRE_HDR_BODY_LEN], 1234 & 0xff);
	assert_int_equal(buf[EMBKV_WIRE_HDR_BODY_LEN + 1], 1234 >> 8);

	memset(&d, 0xee, sizeof(d));
	assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d), 0);
	assert_int_equal(d.version, EMBKV_WIRE_VERSION);
	assert_int_equal(d.opcode, h.opcode);
	assert_int_equal(d.flags, 0);
	assert_int_equal(d.body_len, h.body_len);
	assert_int_equal(d.request_id, h.request_id);
	assert_int_equal(d.epoch, h.epoch);

	/* every known opcode encodes and decodes, replies included */
	for (size_t i = 0; i < n_samples; i++) {
		h.opcode = (uint8_t)samples[i].op;
		assert_int_equal(embkv_wire_hdr_encode(&h, buf),
				 EMBKV_WIRE_HDR_SIZE);
		assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d), 0);
		assert_int_equal(d.opcode, samples[i].op);
	}
}

static void valid_hdr(uint8_t buf[EMBKV_WIRE_HDR_SIZE])
{
	struct embkv_wire_hdr h = {
		.opcode = EMBKV_WIRE_OP_PUSH, .body_len = 64,
		.request_id = 77, .epoch = 5,
	};

	assert_int_equal(embkv_wire_hdr_encode(&h, buf), EMBKV_WIRE_HDR_SIZE);
}

/* Setting the id changes those 8 bytes only; the header still decodes
 * to what was encoded, with the new id. */
static void test_hdr_set_request_id(void **state)
{
	uint8_t buf[EMBKV_WIRE_HDR_SIZE], before[EMBKV_WIRE_HDR_SIZE];
	struct embkv_wire_hdr d;

	(void)state;
	valid_hdr(buf);
	memcpy(before, buf, sizeof(buf));
	embkv_wire_hdr_set_request_id(buf, 0x0102030405060708ull);
	assert_memory_equal(buf, before, EMBKV_WIRE_HDR_REQ_ID);
	assert_memory_equal(buf + EMBKV_WIRE_HDR_REQ_ID + 8,
			    before + EMBKV_WIRE_HDR_REQ_ID + 8,
			    EMBKV_WIRE_HDR_SIZE - EMBKV_WIRE_HDR_REQ_ID - 8);
	assert_int_equal(buf[EMBKV_WIRE_HDR_REQ_ID], 0x08);
	assert_int_equal(buf[EMBKV_WIRE_HDR_REQ_ID + 7], 0x01);
	assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d), 0);
	assert_int_equal(d.request_id, 0x0102030405060708ull);
	assert_int_equal(d.opcode, EMBKV_WIRE_OP_PUSH);
	assert_int_equal(d.body_len, 64);
	assert_int_equal(d.epoch, 5);
}

static void test_hdr_truncated(void **state)
{
	uint8_t buf[EMBKV_WIRE_HDR_SIZE];
	struct embkv_wire_hdr d;
	size_t len;

	(void)state;
	valid_hdr(buf);
	for (len = 0; len < EMBKV_WIRE_HDR_SIZE; len++) {
		uint8_t *p = dup_bytes(buf, len);

		assert_int_equal(embkv_wire_hdr_decode(p, len, &d), EMBKV_EPROTO);
		free(p);
	}
	assert_int_equal(embkv_wire_hdr_decode(NULL, 0, &d), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), NULL), -EINVAL);
}

static void test_hdr_bad_magic(void **state)
{
	uint8_t buf[EMBKV_WIRE_HDR_SIZE];
	struct embkv_wire_hdr d;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(uint32_t); i++) {
		valid_hdr(buf);
		buf[EMBKV_WIRE_HDR_MAGIC + i] ^= 0x20;
		assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d),
				 EMBKV_EPROTO);
	}
	/* the raw fields are still filled for an error reply */
	assert_int_equal(d.request_id, 77);
}

static void test_hdr_bad_version(void **state)
{
	/* 1: a peer of the protocol before table uids */
	static const uint16_t bad[] = { 0, 1, EMBKV_WIRE_VERSION + 1, 0x0100,
					UINT16_MAX };
	uint8_t buf[EMBKV_WIRE_HDR_SIZE];
	struct embkv_wire_hdr d;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		valid_hdr(buf);
		put16(buf + EMBKV_WIRE_HDR_VERSION, bad[i]);
		assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d),
				 EMBKV_EVERSION);
		assert_int_equal(d.version, bad[i]);
		assert_int_equal(d.request_id, 77);
	}
}

static void test_hdr_unknown_opcode(void **state)
{
	uint8_t buf[EMBKV_WIRE_HDR_SIZE];
	struct embkv_wire_hdr d;
	unsigned int op, known = 0;
	int rc;

	(void)state;
	for (op = 0; op <= UINT8_MAX; op++) {
		valid_hdr(buf);
		buf[EMBKV_WIRE_HDR_OPCODE] = (uint8_t)op;
		rc = embkv_wire_hdr_decode(buf, sizeof(buf), &d);
		if (embkv_wire_op_known(op)) {
			assert_int_equal(rc, 0);
			known++;
		} else {
			assert_int_equal(rc, EMBKV_EOPCODE);
			assert_int_equal(d.request_id, 77);
		}
	}
	assert_int_equal(known, N_KNOWN_OPS);
	/* spot checks, independent of embkv_wire_op_known */
	assert_false(embkv_wire_op_known(0x00));
	assert_false(embkv_wire_op_known(0x03));
	assert_false(embkv_wire_op_known(0x7f));
	assert_false(embkv_wire_op_known(0x80));
	assert_false(embkv_wire_op_known(0xfe));
	assert_true(embkv_wire_op_known(0xa0));
	assert_true(embkv_wire_op_known(0xff));
	/* CONFIG (0x32) and its reply carry one JSON object */
	assert_true(embkv_wire_op_known(EMBKV_WIRE_OP_CONFIG));
	assert_true(embkv_wire_op_known(0xb2));
	assert_string_equal(embkv_wire_op_name(0xb2), "CONFIG_REPLY");
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_CONFIG,
		(const uint8_t *)"{}", 2), 0);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_CONFIG,
		(const uint8_t *)"[]", 2), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_body_validate(0xb2,
		(const uint8_t *)"{\"a\":1}{", 8), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_CONFIG,
		NULL, 0), EMBKV_EPROTO);
}

/* SCAN: round trip, the page padding, the limits and the refusals. */
static void test_scan(void **state)
{
	struct embkv_wire_scan_req q = { 7, 3, UID, 12345, 9 }, dq;
	struct embkv_wire_scan_reply r, dr;
	uint64_t keys[3] = { 1, 2, 3 };
	float vals[3 * 3] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	uint64_t body[64];
	uint8_t *b = (uint8_t *)body;
	uint64_t *pk;
	void *pv;
	size_t len;

	(void)state;
	assert_int_equal(embkv_wire_scan_req_encode(&q, b, sizeof(body)), 0);
	assert_int_equal(embkv_wire_scan_req_decode(b, EMBKV_WIRE_SCAN_REQ_SIZE,
						    &dq), 0);
	assert_int_equal(dq.table_id, 7);
	assert_int_equal(dq.part, 3);
	assert_int_equal(dq.uid, UID);
	assert_int_equal(dq.cursor, 12345);
	assert_int_equal(dq.max, 9);
	assert_int_equal(embkv_wire_scan_req_decode(b, 31, &dq), EMBKV_EPROTO);
	q.max = 0;
	assert_int_equal(embkv_wire_scan_req_encode(&q, b, sizeof(body)),
			 -EINVAL);
	q.max = EMBKV_WIRE_MAX_KEYS + 1;
	assert_int_equal(embkv_wire_scan_req_encode(&q, b, sizeof(body)),
			 EMBKV_ELIMIT);
	put32(b + EMBKV_WIRE_SCAN_REQ_MAX, EMBKV_WIRE_MAX_KEYS + 1);
	assert_int_equal(embkv_wire_scan_req_decode(b, EMBKV_WIRE_SCAN_REQ_SIZE,
						    &dq), EMBKV_ELIMIT);
	q.max = 9;
	q.uid = 0;
	assert_int_equal(embkv_wire_scan_req_encode(&q, b, sizeof(body)),
			 -EINVAL);

	/* 3 rows of dim 3: 24 + 24 + 36 = 84, padded to 88 */
	r = (struct embkv_wire_scan_reply){ EMBKV_SCAN_END, 3, 3,
					    EMBKV_DTYPE_F32, keys, vals };
	assert_int_equal(embkv_wire_scan_reply_size(3, 3, 0, &len), 0);
	assert_int_equal(len, 88);
	memset(body, 0xee, sizeof(body));
	assert_int_equal(embkv_wire_scan_reply_encode(&r, b, len), 0);
	assert_int_equal(embkv_wire_scan_reply_decode(b, len, &dr), 0);
	assert_int_equal(dr.next, EMBKV_SCAN_END);
	assert_int_equal(dr.n, 3);
	assert_memory_equal(dr.keys, keys, sizeof(keys));
	assert_memory_equal(dr.vals, vals, sizeof(vals));
	b[87] = 1; /* padding must be 0 */
	assert_int_equal(embkv_wire_scan_reply_decode(b, len, &dr),
			 EMBKV_EPROTO);
	b[87] = 0;
	put32(b + EMBKV_WIRE_SCAN_REPLY_DTYPE, 9); /* no such dtype */
	assert_int_equal(embkv_wire_scan_reply_decode(b, len, &dr),
			 EMBKV_EPROTO);
	assert_int_equal(embkv_wire_scan_reply_size(1, 3, 9, &len), -EINVAL);
	assert_int_equal(embkv_wire_scan_reply_size(1, EMBKV_MAX_DIM + 1, 0,
						    &len), EMBKV_ELIMIT);
	/* prepare: fixed fields written, arrays where decode finds them */
	assert_int_equal(embkv_wire_scan_reply_prepare(40, 2, 3, 0, b,
						       sizeof(body), &pk, &pv),
			 0);
	memcpy(pk, keys, 2 * sizeof(uint64_t));
	memcpy(pv, vals, 6 * sizeof(float));
	assert_int_equal(embkv_wire_scan_reply_size(2, 3, 0, &len), 0);
	assert_int_equal(embkv_wire_scan_reply_decode(b, len, &dr), 0);
	assert_int_equal(dr.next, 40);
	assert_memory_equal(dr.vals, vals, 6 * sizeof(float));
	/* max rows: what fits, and one more does not */
	for (uint32_t dim = 1; dim <= 9; dim += 4) {
		uint32_t n = embkv_wire_scan_reply_max_rows(1000, dim, 0);

		assert_int_equal(embkv_wire_scan_reply_size(n, dim, 0, &len),
				 0);
		assert_true(len <= 1000);
		assert_int_equal(embkv_wire_scan_reply_size(n + 1, dim, 0,
							    &len), 0);
		assert_true(len > 1000);
	}
	assert_true(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_SCAN));
	assert_string_equal(embkv_wire_op_name(EMBKV_WIRE_OP_SCAN), "SCAN");
}

static void test_hdr_body_len_limit(void **state)
{
	uint8_t buf[EMBKV_WIRE_HDR_SIZE];
	struct embkv_wire_hdr d;

	(void)state;
	valid_hdr(buf);
	put32(buf + EMBKV_WIRE_HDR_BODY_LEN, UINT32_MAX);
	assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d),
			 EMBKV_ELIMIT);
	assert_int_equal(d.body_len, UINT32_MAX);
	put32(buf + EMBKV_WIRE_HDR_BODY_LEN, EMBKV_WIRE_MAX_BODY + 1);
	assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d),
			 EMBKV_ELIMIT);
	put32(buf + EMBKV_WIRE_HDR_BODY_LEN, EMBKV_WIRE_MAX_BODY);
	assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d), 0);
}

static void test_hdr_flags_reserved(void **state)
{
	uint8_t buf[EMBKV_WIRE_HDR_SIZE];
	struct embkv_wire_hdr d;
	unsigned int bit;

	(void)state;
	for (bit = 0; bit < 8; bit++) {
		valid_hdr(buf);
		buf[EMBKV_WIRE_HDR_FLAGS] = (uint8_t)(1u << bit);
		assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d),
				 EMBKV_EPROTO);
	}
	valid_hdr(buf);
	buf[EMBKV_WIRE_HDR_RESERVED + 3] = 1;
	assert_int_equal(embkv_wire_hdr_decode(buf, sizeof(buf), &d),
			 EMBKV_EPROTO);
}

static void test_hdr_encode_invalid(void **state)
{
	struct embkv_wire_hdr h = { .opcode = EMBKV_WIRE_OP_PULL };
	uint8_t buf[EMBKV_WIRE_HDR_SIZE];

	(void)state;
	h.opcode = 0x7f;
	assert_int_equal(embkv_wire_hdr_encode(&h, buf), 0);
	h.opcode = EMBKV_WIRE_OP_PULL;
	h.body_len = EMBKV_WIRE_MAX_BODY + 1;
	assert_int_equal(embkv_wire_hdr_encode(&h, buf), 0);
	h.body_len = 0;
	h.flags = 1;
	assert_int_equal(embkv_wire_hdr_encode(&h, buf), 0);
	assert_int_equal(embkv_wire_hdr_encode(NULL, buf), 0);
	h.flags = 0;
	assert_int_equal(embkv_wire_hdr_encode(&h, buf), EMBKV_WIRE_HDR_SIZE);
}

static void test_frame_decode(void **state)
{
	const struct sample *s = find_sample(EMBKV_WIRE_OP_PULL);
	struct embkv_wire_hdr h = { .opcode = EMBKV_WIRE_OP_PULL,
				    .request_id = 9 };
	struct embkv_wire_hdr d;
	const uint8_t *body;
	struct embkv_buf b;
	uint8_t *p, *frame;

	(void)state;
	embkv_buf_init(&b);
	h.body_len = (uint32_t)s->len;
	assert_int_equal(embkv_wire_frame_start(&b, &h, &p), 0);
	memcpy(p, s->body, s->len);
	assert_int_equal(b.len, EMBKV_WIRE_HDR_SIZE + s->len);

	frame = dup_bytes(b.data, b.len);
	assert_int_equal(embkv_wire_frame_decode(frame, b.len, &d, &body), 0);
	assert_ptr_equal(body, frame + EMBKV_WIRE_HDR_SIZE);
	assert_int_equal(embkv_wire_body_validate(d.opcode, body, d.body_len),
			 0);
	assert_int_equal(embkv_wire_frame_decode(frame, b.len - 1, &d, &body),
			 EMBKV_EPROTO);
	free(frame);
	frame = xmalloc(b.len + 1);
	memcpy(frame, b.data, b.len);
	frame[b.len] = 0;
	assert_int_equal(embkv_wire_frame_decode(frame, b.len + 1, &d, &body),
			 EMBKV_EPROTO);
	free(frame);
	embkv_buf_destroy(&b);
}

static void test_buf(void **state)
{
	struct embkv_wire_hdr h = { .opcode = R(EMBKV_WIRE_OP_PULL) };
	struct embkv_buf b;
	uint8_t *p, *q;
	size_t i;

	(void)state;
	embkv_buf_init(&b);
	for (i = 0; i < 100; i++) {
		h.body_len = (uint32_t)(i * 8);
		assert_int_equal(embkv_wire_frame_start(&b, &h, &p), 0);
		assert_int_equal((uintptr_t)p % 8, 0);
		memset(p, (int)i, h.body_len);
	}
	q = b.data;
	for (i = 0; i < 100; i++) {
		struct embkv_wire_hdr d;

		assert_int_equal(embkv_wire_hdr_decode(q, EMBKV_WIRE_HDR_SIZE,
						       &d), 0);
		assert_int_equal(d.body_len, i * 8);
		if (d.body_len)
			assert_int_equal(q[EMBKV_WIRE_HDR_SIZE + d.body_len - 1],
					 i);
		q += EMBKV_WIRE_HDR_SIZE + d.body_len;
	}
	assert_ptr_equal(q, b.data + b.len);
	assert_true(b.cap >= b.len);
	assert_int_equal(embkv_buf_reserve(&b, SIZE_MAX), -EOVERFLOW);
	h.opcode = 0x55;
	assert_int_equal(embkv_wire_frame_start(&b, &h, &p), -EINVAL);
	embkv_buf_reset(&b);
	assert_int_equal(b.len, 0);
	embkv_buf_destroy(&b);
	assert_null(b.data);
	embkv_buf_destroy(NULL);
}

static void test_op_helpers(void **state)
{
	(void)state;
	assert_string_equal(embkv_wire_op_name(EMBKV_WIRE_OP_PULL), "PULL");
	assert_string_equal(embkv_wire_op_name(R(EMBKV_WIRE_OP_PULL)),
			    "PULL_REPLY");
	assert_string_equal(embkv_wire_op_name(EMBKV_WIRE_OP_ERROR), "ERROR");
	assert_string_equal(embkv_wire_op_name(0x5f), "UNKNOWN");
	assert_string_equal(embkv_wire_op_name(EMBKV_WIRE_OP_CKPT_LOAD),
			    "CKPT_LOAD");
	assert_true(embkv_wire_op_is_reply(R(EMBKV_WIRE_OP_HELLO)));
	assert_true(embkv_wire_op_is_reply(EMBKV_WIRE_OP_ERROR));
	assert_false(embkv_wire_op_is_reply(EMBKV_WIRE_OP_HELLO));
	assert_false(embkv_wire_op_is_reply(0x83));
	assert_true(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_PULL));
	assert_true(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_PUSH));
	assert_true(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_ASSIGN));
	assert_true(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_ERASE));
	assert_true(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_ACCUMULATE));
	assert_false(embkv_wire_op_checks_epoch(R(EMBKV_WIRE_OP_PULL)));
	assert_false(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_TABLE_CREATE));
	assert_false(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_SHARD_MAP));
	assert_int_equal(embkv_wire_body_validate(0x5f, NULL, 0),
			 EMBKV_EOPCODE);
	assert_string_equal(embkv_wire_stat_name(EMBKV_WIRE_STAT_ROWS), "rows");
	assert_null(embkv_wire_stat_name(0));
	assert_null(embkv_wire_stat_name(EMBKV_WIRE_STAT_ID_COUNT));
	for (unsigned int id = 1; id < EMBKV_WIRE_STAT_ID_COUNT; id++)
		assert_non_null(embkv_wire_stat_name(id));
}

static void test_epoch_rule(void **state)
{
	static const unsigned int checked[] = {
		EMBKV_WIRE_OP_PULL, EMBKV_WIRE_OP_PUSH, EMBKV_WIRE_OP_ASSIGN,
		EMBKV_WIRE_OP_ERASE, EMBKV_WIRE_OP_ACCUMULATE,
	};
	struct embkv_wire_hdr h = { .epoch = 7 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(checked) / sizeof(checked[0]); i++) {
		h.opcode = (uint8_t)checked[i];
		assert_int_equal(embkv_wire_epoch_check(&h, 7), 0);
		assert_int_equal(embkv_wire_epoch_check(&h, 8), EMBKV_ESTALE);
		assert_int_equal(embkv_wire_epoch_check(&h, 6), EMBKV_ESTALE);
	}
	/* admin requests and replies are never stale */
	for (i = 0; i < n_samples; i++) {
		h.opcode = (uint8_t)samples[i].op;
		if (embkv_wire_op_checks_epoch(h.opcode))
			continue;
		assert_int_equal(embkv_wire_epoch_check(&h, 8), 0);
	}
	assert_int_equal(embkv_wire_epoch_check(NULL, 0), -EINVAL);
}

/* ------------------------------------------------------------------------ */
/* round trips */

/* Every sample (one per known opcode, built by the encoders) validates
 * under its opcode through the generic dispatcher. */
static void test_all_samples_validate(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < n_samples; i++)
		assert_int_equal(embkv_wire_body_validate(samples[i].op,
							  samples[i].body,
							  samples[i].len), 0);
}

/* MULTI_PULL / MULTI_PUSH (5.25): sections walked in order; every count,
 * length, padding byte and inner body checked. */
static void test_multi(void **state)
{
	const struct sample *pq = find_sample(EMBKV_WIRE_OP_PULL);
	const struct sample *uq = find_sample(EMBKV_WIRE_OP_PUSH);
	const struct sample *mp = find_sample(EMBKV_WIRE_OP_MULTI_PULL);
	const struct sample *mr = find_sample(R(EMBKV_WIRE_OP_MULTI_PULL));
	struct embkv_wire_multi m;
	struct embkv_wire_multi_sec sec;
	struct embkv_wire_pull_req pr;
	struct msec s[2];
	uint8_t *b, *sb;
	size_t len;

	(void)state;
	/* round trip: bodies in place, epochs and statuses kept */
	assert_int_equal(embkv_wire_multi_decode(EMBKV_WIRE_OP_MULTI_PULL,
						 mp->body, mp->len, &m), 0);
	assert_int_equal(m.count, 2);
	assert_true(embkv_wire_multi_next(&m, &sec));
	assert_int_equal(sec.status, 0);
	assert_true(sec.epoch == 7);
	assert_int_equal(sec.len, pq->len);
	assert_ptr_equal(sec.body, mp->body + 8 + 16);
	assert_int_equal(embkv_wire_pull_req_decode(sec.body, sec.len, &pr), 0);
	assert_int_equal(pr.n, N_KEYS);
	assert_true(embkv_wire_multi_next(&m, &sec));
	assert_true(sec.epoch == 9);
	assert_false(embkv_wire_multi_next(&m, &sec));
	assert_int_equal(embkv_wire_multi_decode(R(EMBKV_WIRE_OP_MULTI_PULL),
						 mr->body, mr->len, &m), 0);
	assert_int_equal(m.count, 3);
	assert_true(embkv_wire_multi_next(&m, &sec));
	assert_true(embkv_wire_multi_next(&m, &sec));
	assert_int_equal(sec.status, EMBKV_ENOTABLE);
	assert_memory_equal(sec.body, err_msg, sec.len);
	/* a request body is not a reply body, nor a PULL section a PUSH's */
	assert_int_not_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL,
						      mr->body, mr->len), 0);
	assert_int_not_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PUSH,
						      mp->body, mp->len), 0);
	assert_int_equal(embkv_wire_multi_decode(EMBKV_WIRE_OP_PULL, mp->body,
						 mp->len, &m), -EINVAL);

	/* count: 0 malformed, over the limit ELIMIT, reserved must be 0 */
	b = dup_bytes(mp->body, mp->len);
	put32(b, 0);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_EPROTO);
	put32(b, EMBKV_WIRE_MAX_SECTIONS + 1);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_ELIMIT);
	put32(b, 3); /* one more section than the body holds */
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_EPROTO);
	put32(b, 1); /* one fewer: trailing bytes */
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_EPROTO);
	put32(b, 2);
	put32(b + 4, 1);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_EPROTO);
	put32(b + 4, 0);
	/* a section length past the body, or cutting the inner body */
	put32(b + 8, 0xffffffffu);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_EPROTO);
	put32(b + 8, (uint32_t)pq->len - 8);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_EPROTO);
	put32(b + 8, (uint32_t)pq->len);
	/* a request section with a status */
	put32(b + 12, (uint32_t)EMBKV_ESTALE);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_EPROTO);
	put32(b + 12, 0);
	/* an inner body that its own decoder refuses (dim 0, n over) */
	put32(b + 8 + 16 + EMBKV_WIRE_PULL_REQ_DIM, 0);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_EPROTO);
	put32(b + 8 + 16 + EMBKV_WIRE_PULL_REQ_DIM, DIM);
	put32(b + 8 + 16 + EMBKV_WIRE_PULL_REQ_N, EMBKV_WIRE_MAX_KEYS + 1);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), EMBKV_ELIMIT);
	put32(b + 8 + 16 + EMBKV_WIRE_PULL_REQ_N, N_KEYS);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_MULTI_PULL, b,
						  mp->len), 0);
	free(b);

	/* padding after an odd-sized PUSH body must be zero */
	s[0] = (struct msec){ 0, 1, uq->body, (uint32_t)uq->len };
	b = multi_build(s, 1, &len);
	if (uq->len % 8) {
		b[len - 1] = 1;
		assert_int_equal(embkv_wire_body_validate(
					 EMBKV_WIRE_OP_MULTI_PUSH, b, len),
				 EMBKV_EPROTO);
	}
	free(b);
	/* reply messages: at most 255 bytes, no NUL; status never > 0 */
	s[0] = (struct msec){ EMBKV_ENOTABLE, 1, (const uint8_t *)"a\0b", 3 };
	b = multi_build(s, 1, &len);
	assert_int_equal(embkv_wire_body_validate(R(EMBKV_WIRE_OP_MULTI_PULL),
						  b, len), EMBKV_EPROTO);
	put32(b + 12, 5);
	b[8 + 16 + 1] = 'x';
	assert_int_equal(embkv_wire_body_validate(R(EMBKV_WIRE_OP_MULTI_PULL),
						  b, len), EMBKV_EPROTO);
	put32(b + 12, (uint32_t)EMBKV_ENOTABLE);
	assert_int_equal(embkv_wire_body_validate(R(EMBKV_WIRE_OP_MULTI_PULL),
						  b, len), 0);
	free(b);
	{
		static uint8_t longmsg[EMBKV_WIRE_ERRMSG_MAX + 1];

		memset(longmsg, 'm', sizeof(longmsg));
		s[0] = (struct msec){ EMBKV_ESTALE, 1, longmsg,
				      (uint32_t)sizeof(longmsg) };
		b = multi_build(s, 1, &len);
		assert_int_equal(embkv_wire_body_validate(
					 R(EMBKV_WIRE_OP_MULTI_PUSH), b, len),
				 EMBKV_ELIMIT);
		free(b);
	}
	/* the encoders refuse what the decoder would */
	b = xmalloc(64);
	assert_int_equal(embkv_wire_multi_encode_head(0, b, 64), -EINVAL);
	assert_int_equal(embkv_wire_multi_encode_head(
				 EMBKV_WIRE_MAX_SECTIONS + 1, b, 64), -EINVAL);
	assert_int_equal(embkv_wire_multi_encode_head(1, b, 7), -ENOSPC);
	sec = (struct embkv_wire_multi_sec){ 40, 0, 0, NULL };
	assert_true(embkv_wire_multi_sec_prepare(&sec, b, 64, &sb) == 56);
	assert_ptr_equal(sb, b + 16);
	assert_true(embkv_wire_multi_sec_prepare(&sec, b, 55, &sb) == -ENOSPC);
	assert_true(embkv_wire_multi_sec_prepare(&sec, b + 4, 60, &sb) ==
		    -EINVAL);
	sec.status = 1;
	assert_true(embkv_wire_multi_sec_prepare(&sec, b, 64, &sb) == -EINVAL);
	free(b);
}

static void test_hello_auth_round_trip(void **state)
{
	struct embkv_wire_hello h, hd;
	struct embkv_wire_auth a, ad;
	uint8_t buf[EMBKV_WIRE_HELLO_SIZE + 8];

	(void)state;
	memset(h.nonce, 0x5a, sizeof(h.nonce));
	h.nonce[31] = 1;
	assert_int_equal(embkv_wire_hello_encode(&h, buf,
						 EMBKV_WIRE_HELLO_SIZE - 1),
			 -ENOSPC);
	assert_int_equal(embkv_wire_hello_encode(&h, buf, sizeof(buf)), 0);
	assert_int_equal(embkv_wire_hello_decode(buf, EMBKV_WIRE_HELLO_SIZE,
						 &hd), 0);
	assert_memory_equal(h.nonce, hd.nonce, sizeof(h.nonce));
	assert_int_equal(embkv_wire_hello_decode(buf, EMBKV_WIRE_HELLO_SIZE - 1,
						 &hd), EMBKV_EPROTO);

	memset(a.mac, 0xc3, sizeof(a.mac));
	assert_int_equal(embkv_wire_auth_encode(&a, buf, EMBKV_WIRE_AUTH_SIZE),
			 0);
	assert_int_equal(embkv_wire_auth_decode(buf, EMBKV_WIRE_AUTH_SIZE, &ad),
			 0);
	assert_memory_equal(a.mac, ad.mac, sizeof(a.mac));
	assert_int_equal(embkv_wire_auth_decode(buf, EMBKV_WIRE_AUTH_SIZE + 1,
						&ad), EMBKV_EPROTO);
}

static void test_table_attr_round_trip(void **state)
{
	struct embkv_table_attr a, d;
	struct embkv_wire_table_info info, infod;
	struct embkv_wire_table_ref ref = { 0x01020304, UID }, refd;
	uint8_t *b;
	size_t len;

	(void)state;
	sample_attr(&a);
	assert_int_equal(embkv_wire_table_attr_size(&a, &len), 0);
	assert_int_equal(len, EMBKV_WIRE_ATTR_NAME + 2 + strlen(a.name));
	b = xmalloc(len);
	assert_int_equal(embkv_wire_table_attr_encode(&a, b, len - 1), -ENOSPC);
	assert_int_equal(embkv_wire_table_attr_encode(&a, b, len), 0);
	memset(&d, 0x77, sizeof(d));
	assert_int_equal(embkv_wire_table_attr_decode(b, len, &d), 0);
	assert_attr_equal(&a, &d);
	/* field by field at its documented offset */
	assert_int_equal(b[EMBKV_WIRE_ATTR_DIM], 16);
	assert_int_equal(b[EMBKV_WIRE_ATTR_OPT_TYPE], EMBKV_OPT_ADAM);
	assert_int_equal(b[EMBKV_WIRE_ATTR_INIT_SEED], 0x88);
	assert_int_equal(b[EMBKV_WIRE_ATTR_NAME], strlen(a.name));
	free(b);

	info.table_id = 0xfeed;
	info.uid = UID;
	info.attr = a;
	assert_int_equal(embkv_wire_table_info_size(&info, &len), 0);
	assert_int_equal(len, 16 + EMBKV_WIRE_ATTR_NAME + 2 + strlen(a.name));
	b = xmalloc(len);
	assert_int_equal(embkv_wire_table_info_encode(&info, b, len), 0);
	assert_int_equal(embkv_wire_table_info_decode(b, len, &infod), 0);
	assert_int_equal(infod.table_id, 0xfeed);
	assert_true(infod.uid == UID);
	assert_attr_equal(&a, &infod.attr);
	/* the uid at its offset, little-endian; the attr 8-aligned after it */
	assert_int_equal(EMBKV_WIRE_TABLE_INFO_UID, 8);
	assert_int_equal(EMBKV_WIRE_TABLE_INFO_ATTR, 16);
	assert_int_equal(b[EMBKV_WIRE_TABLE_INFO_UID], 0xcd);
	assert_int_equal(b[EMBKV_WIRE_TABLE_INFO_UID + 7], 0x8b);
	assert_int_equal(b[EMBKV_WIRE_TABLE_INFO_ATTR + EMBKV_WIRE_ATTR_DIM],
			 16);
	put64(b + EMBKV_WIRE_TABLE_INFO_UID, 0); /* no table has uid 0 */
	assert_int_equal(embkv_wire_table_info_decode(b, len, &infod),
			 EMBKV_EPROTO);
	put64(b + EMBKV_WIRE_TABLE_INFO_UID, UID);
	b[EMBKV_WIRE_TABLE_INFO_RESERVED + 3] = 1;
	assert_int_equal(embkv_wire_table_info_decode(b, len, &infod),
			 EMBKV_EPROTO);
	b[EMBKV_WIRE_TABLE_INFO_RESERVED + 3] = 0;
	assert_int_equal(embkv_wire_table_info_decode(b, 15, &infod),
			 EMBKV_EPROTO);
	assert_int_equal(embkv_wire_table_info_decode(b, len, &infod), 0);
	info.uid = 0;
	assert_int_equal(embkv_wire_table_info_size(&info, &len), -EINVAL);
	assert_int_equal(embkv_wire_table_info_encode(&info, b, len), -EINVAL);
	free(b);

	/* table reference: u32 id, u32 reserved, u64 uid */
	b = xmalloc(EMBKV_WIRE_TABLE_REF_SIZE);
	assert_int_equal(EMBKV_WIRE_TABLE_REF_SIZE, 16);
	assert_int_equal(embkv_wire_table_ref_encode(&ref, b, 15), -ENOSPC);
	assert_int_equal(embkv_wire_table_ref_encode(&ref, b,
						     EMBKV_WIRE_TABLE_REF_SIZE),
			 0);
	assert_int_equal(b[0], 0x04);
	assert_int_equal(b[EMBKV_WIRE_TABLE_REF_RESERVED], 0);
	assert_int_equal(b[EMBKV_WIRE_TABLE_REF_UID], 0xcd);
	assert_int_equal(b[EMBKV_WIRE_TABLE_REF_UID + 7], 0x8b);
	assert_int_equal(embkv_wire_table_ref_decode(b,
						     EMBKV_WIRE_TABLE_REF_SIZE,
						     &refd), 0);
	assert_int_equal(refd.table_id, 0x01020304);
	assert_true(refd.uid == UID);
	assert_int_equal(embkv_wire_table_ref_decode(b, 4, &refd),
			 EMBKV_EPROTO);
	assert_int_equal(embkv_wire_table_ref_decode(b, 15, &refd),
			 EMBKV_EPROTO);
	b[EMBKV_WIRE_TABLE_REF_RESERVED + 1] = 1;
	assert_int_equal(embkv_wire_table_ref_decode(b, 16, &refd),
			 EMBKV_EPROTO);
	b[EMBKV_WIRE_TABLE_REF_RESERVED + 1] = 0;
	/* uid 0 goes with "every table" only, and "every table" with 0 */
	put64(b + EMBKV_WIRE_TABLE_REF_UID, 0);
	assert_int_equal(embkv_wire_table_ref_decode(b, 16, &refd),
			 EMBKV_EPROTO);
	put32(b, EMBKV_WIRE_TABLE_ALL);
	assert_int_equal(embkv_wire_table_ref_decode(b, 16, &refd), 0);
	assert_int_equal(refd.table_id, EMBKV_WIRE_TABLE_ALL);
	assert_true(refd.uid == 0);
	put64(b + EMBKV_WIRE_TABLE_REF_UID, 1);
	assert_int_equal(embkv_wire_table_ref_decode(b, 16, &refd),
			 EMBKV_EPROTO);
	ref.uid = 0;
	assert_int_equal(embkv_wire_table_ref_encode(&ref, b, 16), -EINVAL);
	ref.table_id = EMBKV_WIRE_TABLE_ALL;
	assert_int_equal(embkv_wire_table_ref_encode(&ref, b, 16), 0);
	ref.uid = UID;
	assert_int_equal(embkv_wire_table_ref_encode(&ref, b, 16), -EINVAL);
	assert_int_equal(embkv_wire_table_ref_encode(NULL, b, 16), -EINVAL);
	free(b);
}

static void test_name_round_trip_and_limits(void **state)
{
	char longest[EMBKV_TABLE_NAME_MAX];
	char unterminated[EMBKV_TABLE_NAME_MAX + 8];
	char name[EMBKV_TABLE_NAME_MAX];
	uint8_t buf[2 + EMBKV_TABLE_NAME_MAX + 8];
	struct embkv_table_attr a;
	size_t len;

	(void)state;
	memset(longest, 'n', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	assert_int_equal(embkv_wire_name_size(longest, &len), 0);
	assert_int_equal(len, 2 + EMBKV_WIRE_NAME_LEN_MAX);
	assert_int_equal(embkv_wire_name_encode(longest, buf, len), 0);
	assert_int_equal(embkv_wire_name_decode(buf, len, name), 0);
	assert_string_equal(name, longest);

	/* encode: no NUL within EMBKV_TABLE_NAME_MAX bytes, or empty */
	memset(unterminated, 'u', sizeof(unterminated) - 1);
	unterminated[sizeof(unterminated) - 1] = '\0';
	assert_int_equal(embkv_wire_name_size(unterminated, &len), EMBKV_ELIMIT);
	assert_int_equal(embkv_wire_name_encode("", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(embkv_wire_name_encode(NULL, buf, sizeof(buf)),
			 -EINVAL);
	sample_attr(&a);
	memset(a.name, 'x', sizeof(a.name)); /* no NUL at all */
	assert_int_equal(embkv_wire_table_attr_size(&a, &len), EMBKV_ELIMIT);

	/* decode: too long, NUL inside, empty, truncated, trailing */
	put16(buf, EMBKV_TABLE_NAME_MAX);
	memset(buf + 2, 'n', EMBKV_TABLE_NAME_MAX);
	assert_int_equal(embkv_wire_name_decode(buf, 2 + EMBKV_TABLE_NAME_MAX,
						name), EMBKV_ELIMIT);
	put16(buf, 5);
	memcpy(buf + 2, "ab\0cd", 5);
	assert_int_equal(embkv_wire_name_decode(buf, 7, name), EMBKV_EPROTO);
	put16(buf, 0);
	assert_int_equal(embkv_wire_name_decode(buf, 2, name), EMBKV_EPROTO);
	put16(buf, 5);
	memcpy(buf + 2, "abcde", 5);
	assert_int_equal(embkv_wire_name_decode(buf, 6, name), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_name_decode(buf, 8, name), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_name_decode(buf, 7, name), 0);
	assert_string_equal(name, "abcde");
	assert_int_equal(embkv_wire_name_decode(buf, 1, name), EMBKV_EPROTO);
}

static void test_table_list_round_trip(void **state)
{
	const struct sample *s = find_sample(R(EMBKV_WIRE_OP_TABLE_LIST));
	struct embkv_wire_table_entry e, bad;
	struct embkv_wire_table_list l;
	size_t len;
	uint32_t i = 0;

	(void)state;
	assert_int_equal(embkv_wire_table_list_decode(s->body, s->len, &l), 0);
	assert_int_equal(l.count, N_LIST);
	while (embkv_wire_table_list_next(&l, &e)) {
		assert_true(i < N_LIST);
		assert_int_equal(e.table_id, list_entries[i].table_id);
		assert_int_equal(e.dim, list_entries[i].dim);
		assert_true(e.uid == list_entries[i].uid);
		assert_string_equal(e.name, list_entries[i].name);
		i++;
	}
	assert_int_equal(i, N_LIST);
	assert_false(embkv_wire_table_list_next(&l, &e));

	/* empty list */
	{
		uint8_t b[4];

		assert_int_equal(embkv_wire_table_list_size(NULL, 0, &len), 0);
		assert_int_equal(len, 4);
		assert_int_equal(embkv_wire_table_list_encode(NULL, 0, b, 4), 0);
		assert_int_equal(embkv_wire_table_list_decode(b, 4, &l), 0);
		assert_false(embkv_wire_table_list_next(&l, &e));
	}
	assert_int_equal(embkv_wire_table_list_size(list_entries, 1, &len), 0);
	assert_int_equal(len, 4 + 16 + 2 + strlen(list_entries[0].name));
	bad = list_entries[0];
	bad.uid = 0;
	assert_int_equal(embkv_wire_table_list_size(&bad, 1, &len), -EINVAL);
	bad.uid = UID;
	bad.dim = 0;
	assert_int_equal(embkv_wire_table_list_size(&bad, 1, &len), -EINVAL);
	bad.dim = EMBKV_MAX_DIM + 1;
	assert_int_equal(embkv_wire_table_list_size(&bad, 1, &len),
			 EMBKV_ELIMIT);
	assert_int_equal(embkv_wire_table_list_size(list_entries,
						    EMBKV_WIRE_MAX_TABLES + 1,
						    &len), EMBKV_ELIMIT);
}

static void test_table_list_invalid(void **state)
{
	const struct sample *s = find_sample(R(EMBKV_WIRE_OP_TABLE_LIST));
	struct embkv_wire_table_list l;
	uint8_t *b = dup_bytes(s->body, s->len);

	(void)state;
	put32(b, N_LIST + 1); /* one entry more than the body holds */
	assert_int_equal(embkv_wire_table_list_decode(b, s->len, &l),
			 EMBKV_EPROTO);
	put32(b, EMBKV_WIRE_MAX_TABLES + 1);
	assert_int_equal(embkv_wire_table_list_decode(b, s->len, &l),
			 EMBKV_ELIMIT);
	put32(b, N_LIST);
	put32(b + 4 + 4, 0); /* first entry's dim */
	assert_int_equal(embkv_wire_table_list_decode(b, s->len, &l),
			 EMBKV_EPROTO);
	put32(b + 4 + 4, EMBKV_MAX_DIM + 1);
	assert_int_equal(embkv_wire_table_list_decode(b, s->len, &l),
			 EMBKV_ELIMIT);
	put32(b + 4 + 4, list_entries[0].dim);
	put64(b + 4 + 8, 0); /* first entry's uid */
	assert_int_equal(embkv_wire_table_list_decode(b, s->len, &l),
			 EMBKV_EPROTO);
	put64(b + 4 + 8, UID);
	assert_int_equal(embkv_wire_table_list_decode(b, s->len, &l), 0);
	free(b);
}

/* A PULL reply of a 16-bit table: dim 2 bytes a value, the dtype byte
 * after a u16 dim (an fp32 reply keeps its old bytes, dtype 0), what a
 * reader of the old u32 dim would see (over 4096: refused), an unknown
 * dtype and a set reserved byte refused, prepare == encode. */
static void test_pull_reply_16bit(void **state)
{
	enum { N = 5, D = 3 };
	static const uint8_t found[N] = { 1, 0, 1, 1, 0 };
	uint16_t vals[N * D];
	struct embkv_wire_pull_reply m = { N, D, found, vals,
					   EMBKV_DTYPE_BF16 }, d;
	uint8_t *b, *b2, *f;
	void *v;
	size_t len, len32;

	(void)state;
	for (int i = 0; i < N * D; i++)
		vals[i] = (uint16_t)(0x3f80 + i);
	assert_int_equal(embkv_wire_pull_reply_size_dt(N, D, EMBKV_DTYPE_BF16,
						       &len), 0);
	assert_int_equal(len, 8 + 8 + 2 * N * D);
	assert_int_equal(embkv_wire_pull_reply_size(N, D, &len32), 0);
	assert_int_equal(len32, 8 + 8 + 4 * N * D);
	assert_int_equal(embkv_wire_pull_reply_size_dt(N, D, 9, &len),
			 -EINVAL);
	assert_int_equal(embkv_wire_pull_reply_size_dt(N, D, EMBKV_DTYPE_F16,
						       &len), 0);
	b = xmalloc(len);
	assert_int_equal(embkv_wire_pull_reply_encode(&m, b, len), 0);
	assert_int_equal(b[4] | b[5] << 8, D);
	assert_int_equal(b[6], EMBKV_DTYPE_BF16);
	assert_int_equal(b[7], 0);
	/* an old reader's u32 dim: D | 2 << 16, over EMBKV_MAX_DIM */
	assert_true(((uint32_t)b[4] | (uint32_t)b[5] << 8 |
		     (uint32_t)b[6] << 16) > EMBKV_MAX_DIM);
	assert_int_equal(embkv_wire_pull_reply_decode(b, len, &d), 0);
	assert_int_equal(d.dtype, EMBKV_DTYPE_BF16);
	assert_int_equal(d.dim, D);
	assert_memory_equal(d.vals, vals, sizeof(vals));
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_PULL |
						  EMBKV_WIRE_OP_REPLY, b, len),
			 0);
	/* the same bytes claimed as fp32 do not add up */
	b[6] = EMBKV_DTYPE_F32;
	assert_int_equal(embkv_wire_pull_reply_decode(b, len, &d),
			 EMBKV_EPROTO);
	b[6] = 7;
	assert_int_equal(embkv_wire_pull_reply_decode(b, len, &d),
			 EMBKV_EPROTO);
	b[6] = EMBKV_DTYPE_BF16;
	b[7] = 1;
	assert_int_equal(embkv_wire_pull_reply_decode(b, len, &d),
			 EMBKV_EPROTO);
	b[7] = 0;
	b2 = xmalloc(len);
	memset(b2, 0xee, len);
	assert_int_equal(embkv_wire_pull_reply_prepare_dt(N, D,
							  EMBKV_DTYPE_BF16, b2,
							  len, &f, &v), 0);
	memcpy(f, found, N);
	memcpy(v, vals, sizeof(vals));
	assert_memory_equal(b, b2, len);
	/* more bf16 rows than fp32 rows fit a body */
	assert_true(embkv_wire_pull_reply_max_rows_dt(1u << 16, 64,
						      EMBKV_DTYPE_BF16) >
		    embkv_wire_pull_reply_max_rows(1u << 16, 64));
	free(b);
	free(b2);
}

/* PULL_LAND: the destination fields, then a PULL request body; a reply
 * of per-key states, no rows. */
static void test_pull_land(void **state)
{
	struct embkv_wire_land_req m = {
		.addr = 0x7f0012345600ull, .rkey = 0xabcd1234u, .stride = 88,
		.pull = { 11, UID, DIM, N_KEYS, EMBKV_WIRE_PULL_INFER, NULL },
	};
	struct embkv_wire_land_req d;
	struct embkv_wire_land_reply rd;
	uint64_t *keys;
	uint8_t *st, *b;
	size_t len;

	(void)state;
	assert_int_equal(embkv_wire_land_req_size(&m, &len), 0);
	assert_int_equal(len, 16 + 24 + 8 * N_KEYS);
	b = xmalloc(len);
	assert_int_equal(embkv_wire_land_req_prepare(&m, b, len - 1, &keys),
			 -ENOSPC);
	assert_int_equal(embkv_wire_land_req_prepare(&m, b, len, &keys), 0);
	memcpy(keys, sample_keys, sizeof(sample_keys));
	assert_int_equal(embkv_wire_land_req_decode(b, len, &d), 0);
	assert_true(d.addr == 0x7f0012345600ull);
	assert_int_equal(d.rkey, 0xabcd1234u);
	assert_int_equal(d.stride, 88);
	assert_int_equal(d.pull.table_id, 11);
	assert_true(d.pull.uid == UID);
	assert_int_equal(d.pull.n, N_KEYS);
	assert_int_equal(d.pull.mode, EMBKV_WIRE_PULL_INFER);
	assert_ptr_equal(d.pull.keys, b + 40);
	assert_memory_equal(d.pull.keys, sample_keys, sizeof(sample_keys));
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_PULL_LAND, b,
						  len), 0);
	assert_true(embkv_wire_op_checks_epoch(EMBKV_WIRE_OP_PULL_LAND));
	assert_string_equal(embkv_wire_op_name(EMBKV_WIRE_OP_PULL_LAND),
			    "PULL_LAND");
	/* strides: under 32, not a multiple of 8, over the limit */
	b[EMBKV_WIRE_LAND_REQ_STRIDE] = 24;
	assert_int_equal(embkv_wire_land_req_decode(b, len, &d), EMBKV_EPROTO);
	b[EMBKV_WIRE_LAND_REQ_STRIDE] = 90;
	assert_int_equal(embkv_wire_land_req_decode(b, len, &d), EMBKV_EPROTO);
	b[EMBKV_WIRE_LAND_REQ_STRIDE] = 88;
	b[EMBKV_WIRE_LAND_REQ_STRIDE + 2] = 0x20; /* 2 MiB + 88 */
	assert_int_equal(embkv_wire_land_req_decode(b, len, &d), EMBKV_EPROTO);
	b[EMBKV_WIRE_LAND_REQ_STRIDE + 2] = 0;
	/* the PULL part is checked as a PULL's: a cut body */
	assert_int_equal(embkv_wire_land_req_decode(b, len - 8, &d),
			 EMBKV_EPROTO);
	assert_int_equal(embkv_wire_land_req_decode(b, 15, &d), EMBKV_EPROTO);
	m.stride = 20;
	assert_int_equal(embkv_wire_land_req_size(&m, &len), -EINVAL);
	m.stride = 88;
	assert_int_equal(embkv_wire_land_req_max_rows(40 + 8 * 3), 3);
	assert_int_equal(embkv_wire_land_req_max_rows(40 + 8 * 3 - 1), 2);
	free(b);

	/* reply */
	assert_int_equal(embkv_wire_land_reply_size(N_KEYS, &len), 0);
	assert_int_equal(len, 8 + ((N_KEYS + 7) & ~7u));
	b = xmalloc(len);
	memset(b, 0xff, len);
	assert_int_equal(embkv_wire_land_reply_prepare(N_KEYS, DIM,
						       EMBKV_DTYPE_BF16, b,
						       len, &st), 0);
	for (uint32_t i = 0; i < N_KEYS; i++)
		st[i] = (uint8_t)(i % EMBKV_WIRE_LAND_STATE_COUNT);
	assert_int_equal(embkv_wire_land_reply_decode(b, len, &rd), 0);
	assert_int_equal(rd.n, N_KEYS);
	assert_int_equal(rd.dim, DIM);
	assert_int_equal(rd.dtype, EMBKV_DTYPE_BF16);
	assert_int_equal(rd.state[1], EMBKV_WIRE_LAND_FOUND);
	assert_int_equal(embkv_wire_body_validate(
		EMBKV_WIRE_OP_PULL_LAND | EMBKV_WIRE_OP_REPLY, b, len), 0);
	st[0] = EMBKV_WIRE_LAND_STATE_COUNT;
	assert_int_equal(embkv_wire_land_reply_decode(b, len, &rd),
			 EMBKV_EPROTO);
	st[0] = 0;
	if (len > 8 + N_KEYS) { /* padding must be zero */
		b[8 + N_KEYS] = 1;
		assert_int_equal(embkv_wire_land_reply_decode(b, len, &rd),
				 EMBKV_EPROTO);
		b[8 + N_KEYS] = 0;
	}
	assert_int_equal(embkv_wire_land_reply_decode(b, len + 8, &rd),
			 EMBKV_EPROTO);
	free(b);
	assert_int_equal(embkv_wire_land_min_stride(64, EMBKV_DTYPE_F32),
			 24 + 256);
	assert_int_equal(embkv_wire_land_min_stride(3, EMBKV_DTYPE_F16), 32);
	assert_int_equal(embkv_wire_land_min_stride(0, EMBKV_DTYPE_F32), 0);
}

static void test_pull_round_trip(void **state)
{
	struct embkv_wire_pull_req m = { 11, UID, DIM, N_KEYS,
					 EMBKV_WIRE_PULL_TRAIN, sample_keys };
	struct embkv_wire_pull_req d;
	struct embkv_wire_pull_reply rm = { N_KEYS, DIM, sample_found,
					    sample_vals, EMBKV_DTYPE_F32 };
	struct embkv_wire_pull_reply rd;
	uint64_t *keys;
	uint8_t *found;
	float *vals;
	uint8_t *b, *b2;
	size_t len;

	(void)state;
	assert_int_equal(embkv_wire_pull_req_size(&m, &len), 0);
	assert_int_equal(EMBKV_WIRE_PULL_REQ_UID, 16);
	assert_int_equal(EMBKV_WIRE_PULL_REQ_KEYS, 24);
	assert_int_equal(len, EMBKV_WIRE_PULL_REQ_KEYS + 8 * N_KEYS);
	b = xmalloc(len);
	assert_int_equal(embkv_wire_pull_req_encode(&m, b, len - 1), -ENOSPC);
	assert_int_equal(embkv_wire_pull_req_encode(&m, b, len), 0);
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &d), 0);
	assert_int_equal(d.table_id, 11);
	assert_true(d.uid == UID);
	assert_int_equal(d.dim, DIM);
	assert_int_equal(d.n, N_KEYS);
	assert_int_equal(d.mode, EMBKV_WIRE_PULL_TRAIN);
	assert_int_equal(b[EMBKV_WIRE_PULL_REQ_UID], 0xcd);
	assert_int_equal(b[EMBKV_WIRE_PULL_REQ_UID + 7], 0x8b);
	/* zero copy: keys point into the body, 8-aligned */
	assert_ptr_equal(d.keys, b + EMBKV_WIRE_PULL_REQ_KEYS);
	assert_int_equal((uintptr_t)d.keys % 8, 0);
	assert_memory_equal(d.keys, sample_keys, sizeof(sample_keys));
	/* prepare gives the same bytes */
	b2 = xmalloc(len);
	assert_int_equal(embkv_wire_pull_req_prepare(&m, b2, len, &keys), 0);
	memcpy(keys, sample_keys, sizeof(sample_keys));
	assert_memory_equal(b, b2, len);
	/* bad mode */
	b[EMBKV_WIRE_PULL_REQ_MODE] = EMBKV_WIRE_PULL_MODE_COUNT;
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &d), EMBKV_EPROTO);
	b[EMBKV_WIRE_PULL_REQ_MODE] = EMBKV_WIRE_PULL_TRAIN;
	b[EMBKV_WIRE_PULL_REQ_RESERVED + 2] = 1;
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &d), EMBKV_EPROTO);
	b[EMBKV_WIRE_PULL_REQ_RESERVED + 2] = 0;
	put64(b + EMBKV_WIRE_PULL_REQ_UID, 0); /* no table has uid 0 */
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &d), EMBKV_EPROTO);
	put64(b + EMBKV_WIRE_PULL_REQ_UID, 1);
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &d), 0);
	assert_true(d.uid == 1);
	m.uid = 0;
	assert_int_equal(embkv_wire_pull_req_size(&m, &len), -EINVAL);
	assert_int_equal(embkv_wire_pull_req_encode(&m, b, len), -EINVAL);
	m.uid = UID;
	m.mode = EMBKV_WIRE_PULL_MODE_COUNT;
	assert_int_equal(embkv_wire_pull_req_size(&m, &len), -EINVAL);
	free(b);
	free(b2);

	/* reply */
	assert_int_equal(embkv_wire_pull_reply_size(N_KEYS, DIM, &len), 0);
	assert_int_equal(len, 8 + 8 + 4 * N_KEYS * DIM); /* found padded to 8 */
	b = xmalloc(len);
	assert_int_equal(embkv_wire_pull_reply_encode(&rm, b, len), 0);
	assert_int_equal(embkv_wire_pull_reply_decode(b, len, &rd), 0);
	assert_int_equal(rd.n, N_KEYS);
	assert_int_equal(rd.dim, DIM);
	assert_memory_equal(rd.found, sample_found, N_KEYS);
	assert_memory_equal(rd.vals, sample_vals, sizeof(sample_vals));
	assert_int_equal((uintptr_t)rd.vals % 8, 0);
	b2 = xmalloc(len);
	memset(b2, 0xff, len);
	assert_int_equal(embkv_wire_pull_reply_prepare(N_KEYS, DIM, b2, len,
						       &found, &vals), 0);
	memcpy(found, sample_found, N_KEYS);
	memcpy(vals, sample_vals, sizeof(sample_vals));
	assert_memory_equal(b, b2, len);
	/* found byte other than 0/1, and non-zero padding */
	b[EMBKV_WIRE_PULL_REPLY_FOUND + 1] = 2;
	assert_int_equal(embkv_wire_pull_reply_decode(b, len, &rd),
			 EMBKV_EPROTO);
	b[EMBKV_WIRE_PULL_REPLY_FOUND + 1] = 0;
	b[EMBKV_WIRE_PULL_REPLY_FOUND + N_KEYS] = 1;
	assert_int_equal(embkv_wire_pull_reply_decode(b, len, &rd),
			 EMBKV_EPROTO);
	free(b);
	free(b2);

	/* empty batch */
	m.n = 0;
	m.mode = EMBKV_WIRE_PULL_INFER;
	m.keys = NULL;
	assert_int_equal(embkv_wire_pull_req_size(&m, &len), 0);
	b = xmalloc(len);
	assert_int_equal(embkv_wire_pull_req_encode(&m, b, len), 0);
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &d), 0);
	assert_int_equal(d.n, 0);
	free(b);
}

static void test_rows_round_trip(void **state)
{
	struct embkv_wire_rows_req m = { 5, UID, DIM, N_KEYS, sample_keys,
					 sample_vals };
	struct embkv_wire_rows_req d;
	uint64_t *keys;
	float *vals;
	uint8_t *b, *b2;
	size_t len;

	(void)state;
	assert_int_equal(embkv_wire_rows_req_size(&m, &len), 0);
	assert_int_equal(EMBKV_WIRE_ROWS_REQ_UID, 16);
	assert_int_equal(len, 24 + 8 * N_KEYS + 4 * N_KEYS * DIM);
	b = xmalloc(len);
	assert_int_equal(embkv_wire_rows_req_encode(&m, b, len - 1), -ENOSPC);
	assert_int_equal(embkv_wire_rows_req_encode(&m, b, len), 0);
	assert_int_equal(embkv_wire_rows_req_decode(b, len, &d), 0);
	assert_int_equal(d.table_id, 5);
	assert_true(d.uid == UID);
	assert_int_equal(b[EMBKV_WIRE_ROWS_REQ_UID], 0xcd);
	assert_int_equal(d.dim, DIM);
	assert_int_equal(d.n, N_KEYS);
	assert_ptr_equal(d.keys, b + EMBKV_WIRE_ROWS_REQ_KEYS);
	assert_memory_equal(d.keys, sample_keys, sizeof(sample_keys));
	assert_memory_equal(d.vals, sample_vals, sizeof(sample_vals));
	assert_int_equal((uintptr_t)d.vals % 8, 0);
	/* PUSH and ASSIGN share the body */
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_PUSH, b, len), 0);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_ASSIGN, b, len),
			 0);
	b2 = xmalloc(len);
	assert_int_equal(embkv_wire_rows_req_prepare(&m, b2, len, &keys, &vals),
			 0);
	memcpy(keys, sample_keys, sizeof(sample_keys));
	memcpy(vals, sample_vals, sizeof(sample_vals));
	assert_memory_equal(b, b2, len);
	b[EMBKV_WIRE_ROWS_REQ_RESERVED] = 1;
	assert_int_equal(embkv_wire_rows_req_decode(b, len, &d), EMBKV_EPROTO);
	b[EMBKV_WIRE_ROWS_REQ_RESERVED] = 0;
	put64(b + EMBKV_WIRE_ROWS_REQ_UID, 0);
	assert_int_equal(embkv_wire_rows_req_decode(b, len, &d), EMBKV_EPROTO);
	m.uid = 0;
	assert_int_equal(embkv_wire_rows_req_size(&m, &len), -EINVAL);
	assert_int_equal(embkv_wire_rows_req_prepare(&m, b, len, &keys, &vals),
			 -EINVAL);
	m.uid = UID;
	m.keys = NULL;
	assert_int_equal(embkv_wire_rows_req_encode(&m, b, len), -EINVAL);
	free(b);
	free(b2);
}

static void test_erase_count_round_trip(void **state)
{
	struct embkv_wire_erase_req m = { 9, UID, N_KEYS, sample_keys };
	struct embkv_wire_erase_req d;
	struct embkv_wire_count_reply c = { 0xfffffffe, 17 }, cd;
	uint64_t *keys;
	uint8_t *b, *b2;
	size_t len;

	(void)state;
	assert_int_equal(embkv_wire_erase_req_size(&m, &len), 0);
	assert_int_equal(len, 16 + 8 * N_KEYS);
	b = xmalloc(len);
	assert_int_equal(embkv_wire_erase_req_encode(&m, b, len), 0);
	assert_int_equal(embkv_wire_erase_req_decode(b, len, &d), 0);
	assert_int_equal(d.table_id, 9);
	assert_true(d.uid == UID);
	assert_int_equal(b[EMBKV_WIRE_ERASE_REQ_UID], 0xcd);
	assert_int_equal(d.n, N_KEYS);
	assert_ptr_equal(d.keys, b + EMBKV_WIRE_ERASE_REQ_KEYS);
	assert_memory_equal(d.keys, sample_keys, sizeof(sample_keys));
	b2 = xmalloc(len);
	assert_int_equal(embkv_wire_erase_req_prepare(&m, b2, len, &keys), 0);
	memcpy(keys, sample_keys, sizeof(sample_keys));
	assert_memory_equal(b, b2, len);
	put64(b + EMBKV_WIRE_ERASE_REQ_UID, 0);
	assert_int_equal(embkv_wire_erase_req_decode(b, len, &d), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_erase_req_decode(b, 15, &d), EMBKV_EPROTO);
	m.uid = 0;
	assert_int_equal(embkv_wire_erase_req_encode(&m, b, len), -EINVAL);
	assert_int_equal(embkv_wire_erase_req_prepare(&m, b2, len, &keys),
			 -EINVAL);
	free(b);
	free(b2);

	b = xmalloc(EMBKV_WIRE_COUNT_REPLY_SIZE);
	assert_int_equal(embkv_wire_count_reply_encode(&c, b,
						       EMBKV_WIRE_COUNT_REPLY_SIZE),
			 0);
	assert_int_equal(embkv_wire_count_reply_decode(b,
						       EMBKV_WIRE_COUNT_REPLY_SIZE,
						       &cd), 0);
	assert_int_equal(cd.done, c.done);
	assert_int_equal(cd.skipped, c.skipped);
	assert_int_equal(embkv_wire_count_reply_decode(b, 7, &cd), EMBKV_EPROTO);
	free(b);
}

static void test_hits_round_trip(void **state)
{
	struct embkv_wire_hits m = { 9, UID, N_KEYS, sample_keys,
				     sample_counts };
	struct embkv_wire_hits d, big = { 1, UID, EMBKV_WIRE_MAX_KEYS + 1, NULL,
					  NULL };
	uint64_t *keys;
	uint32_t *counts;
	uint8_t *b, *b2;
	size_t len;

	(void)state;
	assert_true(sizeof(sample_counts) / sizeof(sample_counts[0]) >= N_KEYS);
	assert_int_equal(embkv_wire_hits_size(&m, &len), 0);
	assert_int_equal(len, 16 + 12 * N_KEYS);
	b = xmalloc(len);
	assert_int_equal(embkv_wire_hits_encode(&m, b, len - 1), -ENOSPC);
	assert_int_equal(embkv_wire_hits_encode(&m, b, len), 0);
	assert_int_equal(embkv_wire_hits_decode(b, len, &d), 0);
	assert_int_equal(d.table_id, 9);
	assert_true(d.uid == UID);
	assert_int_equal(b[EMBKV_WIRE_HITS_UID + 7], 0x8b);
	assert_int_equal(d.n, N_KEYS);
	assert_ptr_equal(d.keys, b + EMBKV_WIRE_HITS_KEYS);
	assert_memory_equal(d.keys, sample_keys, 8 * N_KEYS);
	assert_memory_equal(d.counts, sample_counts, 4 * N_KEYS);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_HITS, b, len),
			 0);
	b2 = xmalloc(len);
	assert_int_equal(embkv_wire_hits_prepare(&m, b2, len, &keys, &counts),
			 0);
	memcpy(keys, sample_keys, 8 * N_KEYS);
	memcpy(counts, sample_counts, 4 * N_KEYS);
	assert_memory_equal(b, b2, len);
	/* truncated, trailing byte, count over the limit */
	assert_int_equal(embkv_wire_hits_decode(b, len - 4, &d), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_hits_decode(b, 4, &d), EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_HITS_N, N_KEYS - 1);
	assert_int_equal(embkv_wire_hits_decode(b, len, &d), EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_HITS_N, EMBKV_WIRE_MAX_KEYS + 1);
	assert_int_equal(embkv_wire_hits_decode(b, len, &d), EMBKV_ELIMIT);
	put32(b + EMBKV_WIRE_HITS_N, N_KEYS);
	put64(b + EMBKV_WIRE_HITS_UID, 0);
	assert_int_equal(embkv_wire_hits_decode(b, len, &d), EMBKV_EPROTO);
	put64(b + EMBKV_WIRE_HITS_UID, UID);
	assert_int_equal(embkv_wire_hits_decode(b, len, &d), 0);
	assert_int_equal(embkv_wire_hits_size(&big, &len), EMBKV_ELIMIT);
	m.uid = 0;
	assert_int_equal(embkv_wire_hits_size(&m, &len), -EINVAL);
	m.uid = UID;
	m.keys = NULL;
	assert_int_equal(embkv_wire_hits_encode(&m, b, len), -EINVAL);
	assert_int_equal(embkv_wire_hits_decode(b + 1, 8, &d), -EINVAL);
	assert_int_equal(embkv_wire_hits_decode(b, len, NULL), -EINVAL);
	/* empty */
	m.n = 0;
	assert_int_equal(embkv_wire_hits_size(&m, &len), 0);
	assert_int_equal(len, 16);
	assert_int_equal(embkv_wire_hits_encode(&m, b, len), 0);
	assert_int_equal(embkv_wire_hits_decode(b, len, &d), 0);
	assert_int_equal(d.n, 0);
	free(b);
	free(b2);
}

static void test_table_regions_round_trip(void **state)
{
	struct embkv_wire_table_regions m, d;
	struct embkv_wire_region_part p, bad[1];
	uint8_t *b, *p0; /* p0: the first partition entry */
	size_t len, len2;
	uint32_t i;

	(void)state;
	sample_regions(&m);
	assert_int_equal(embkv_wire_table_regions_size(&m, &len), 0);
	assert_int_equal(EMBKV_WIRE_REGIONS_UID, 8);
	assert_int_equal(EMBKV_WIRE_REGIONS_PARTS, 24);
	assert_int_equal(len, 24 + 48 * N_REGION_PARTS);
	b = xmalloc(len);
	p0 = b + EMBKV_WIRE_REGIONS_PARTS;
	assert_int_equal(embkv_wire_table_regions_encode(&m, b, len - 1),
			 -ENOSPC);
	assert_int_equal(embkv_wire_table_regions_encode(&m, b, len), 0);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d), 0);
	assert_int_equal(d.table_id, 3);
	assert_true(d.uid == UID);
	assert_int_equal(b[EMBKV_WIRE_REGIONS_UID], 0xcd);
	assert_int_equal(d.count, N_REGION_PARTS);
	assert_int_equal(d.stride, 280);
	for (i = 0; embkv_wire_table_regions_next(&d, &p); i++) {
		assert_true(i < N_REGION_PARTS);
		assert_int_equal(p.part, region_parts[i].part);
		assert_int_equal(p.index_rkey, region_parts[i].index_rkey);
		assert_int_equal(p.arena_rkey, region_parts[i].arena_rkey);
		assert_int_equal(p.index_addr, region_parts[i].index_addr);
		assert_int_equal(p.nbuckets, region_parts[i].nbuckets);
		assert_int_equal(p.arena_addr, region_parts[i].arena_addr);
		assert_int_equal(p.capacity, region_parts[i].capacity);
	}
	assert_int_equal(i, N_REGION_PARTS);
	assert_false(embkv_wire_table_regions_next(&d, &p));
	assert_int_equal(embkv_wire_body_validate(
		EMBKV_WIRE_OP_TABLE_REGIONS | EMBKV_WIRE_OP_REPLY, b, len), 0);

	/* malformed: length, reserved fields, stride, part, nbuckets, count */
	assert_int_equal(embkv_wire_table_regions_decode(b, len - 8, &d),
			 EMBKV_EPROTO);
	assert_int_equal(embkv_wire_table_regions_decode(b, 20, &d),
			 EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_REGIONS_RESERVED, 1);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_REGIONS_RESERVED, 0);
	put64(b + EMBKV_WIRE_REGIONS_UID, 0); /* no table has uid 0 */
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_EPROTO);
	put64(b + EMBKV_WIRE_REGIONS_UID, UID);
	put32(p0 + 48 + EMBKV_WIRE_REGION_RESERVED, 1);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_EPROTO);
	put32(p0 + 48 + EMBKV_WIRE_REGION_RESERVED, 0);
	put32(b + EMBKV_WIRE_REGIONS_STRIDE, 0);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_REGIONS_STRIDE, 281);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_REGIONS_STRIDE, 280);
	put32(p0 + EMBKV_WIRE_REGION_PART, EMBKV_MAX_PARTITIONS);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_EPROTO);
	put32(p0 + EMBKV_WIRE_REGION_PART, 0);
	put64(p0 + EMBKV_WIRE_REGION_NBUCKETS, 0);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_EPROTO);
	put64(p0 + EMBKV_WIRE_REGION_NBUCKETS, 1024);
	put64(p0 + EMBKV_WIRE_REGION_CAPACITY, UINT64_MAX / 8);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_EPROTO);
	put64(p0 + EMBKV_WIRE_REGION_CAPACITY, 4096);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d), 0);
	put32(b + EMBKV_WIRE_REGIONS_COUNT, EMBKV_WIRE_MAX_REGION_PARTS + 1);
	assert_int_equal(embkv_wire_table_regions_decode(b, len, &d),
			 EMBKV_ELIMIT);
	put32(b + EMBKV_WIRE_REGIONS_COUNT, N_REGION_PARTS);
	assert_int_equal(embkv_wire_table_regions_decode(b + 4, len - 8, &d),
			 -EINVAL);

	/* encoder refuses what would not decode */
	m.count = EMBKV_WIRE_MAX_REGION_PARTS + 1;
	assert_int_equal(embkv_wire_table_regions_size(&m, &len2),
			 EMBKV_ELIMIT);
	sample_regions(&m);
	m.stride = 12;
	assert_int_equal(embkv_wire_table_regions_size(&m, &len2), -EINVAL);
	sample_regions(&m);
	m.uid = 0;
	assert_int_equal(embkv_wire_table_regions_size(&m, &len2), -EINVAL);
	sample_regions(&m);
	bad[0] = region_parts[0];
	bad[0].nbuckets = 0;
	m.parts = bad;
	m.count = 1;
	assert_int_equal(embkv_wire_table_regions_encode(&m, b, len), -EINVAL);
	m.parts = NULL;
	assert_int_equal(embkv_wire_table_regions_size(&m, &len2), -EINVAL);
	m.count = 0;
	assert_int_equal(embkv_wire_table_regions_size(&m, &len2), 0);
	assert_int_equal(len2, 24);
	assert_int_equal(embkv_wire_table_regions_encode(&m, b, len2), 0);
	assert_int_equal(embkv_wire_table_regions_decode(b, len2, &d), 0);
	assert_false(embkv_wire_table_regions_next(&d, &p));
	free(b);
}

static void test_verbs_private_data(void **state)
{
	struct embkv_verbs_connect c = {
		.credits = EMBKV_VERBS_WINDOW, .recv_size = EMBKV_VERBS_RECV_SIZE,
		.reply_slots = EMBKV_VERBS_REPLY_SLOTS,
		.reply_addr = 0x7f1234567000ull, .reply_rkey = 0xdeadbeef,
		.slot_size = EMBKV_VERBS_SLOT_SIZE,
	}, cd, bad;
	struct embkv_verbs_accept a = { .credits = 16,
					.recv_size = EMBKV_VERBS_RECV_SIZE }, ad;
	uint8_t buf[56] = { 0 };

	(void)state;
	assert_int_equal(embkv_wire_verbs_connect_encode(&c, buf, 31), -ENOSPC);
	assert_int_equal(embkv_wire_verbs_connect_encode(&c, buf, 32), 0);
	/* padded, as rdma_cm delivers it */
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, sizeof(buf), &cd),
			 0);
	assert_int_equal(cd.version, EMBKV_WIRE_VERSION);
	assert_int_equal(cd.credits, c.credits);
	assert_int_equal(cd.recv_size, c.recv_size);
	assert_int_equal(cd.reply_slots, c.reply_slots);
	assert_true(cd.reply_addr == c.reply_addr);
	assert_int_equal(cd.reply_rkey, c.reply_rkey);
	assert_int_equal(cd.slot_size, c.slot_size);
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 31, &cd),
			 EMBKV_EPROTO);
	buf[0] ^= 1;
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 32, &cd),
			 EMBKV_EPROTO);
	buf[0] ^= 1;
	put16(buf + EMBKV_VERBS_CONNECT_VERSION, EMBKV_WIRE_VERSION + 1);
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 32, &cd),
			 EMBKV_EVERSION);
	put16(buf + EMBKV_VERBS_CONNECT_VERSION, EMBKV_WIRE_VERSION);
	put16(buf + EMBKV_VERBS_CONNECT_CREDITS, 0);
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 32, &cd),
			 EMBKV_EPROTO);
	put16(buf + EMBKV_VERBS_CONNECT_CREDITS, EMBKV_VERBS_MAX_CREDITS + 1);
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 32, &cd),
			 EMBKV_ELIMIT);
	put16(buf + EMBKV_VERBS_CONNECT_CREDITS, 16);
	put32(buf + EMBKV_VERBS_CONNECT_RECV_SIZE, 100);
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 32, &cd),
			 EMBKV_ELIMIT);
	put32(buf + EMBKV_VERBS_CONNECT_RECV_SIZE, EMBKV_VERBS_RECV_SIZE);
	put32(buf + EMBKV_VERBS_CONNECT_SLOTS, 0);
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 32, &cd),
			 EMBKV_EPROTO);
	put32(buf + EMBKV_VERBS_CONNECT_SLOTS, EMBKV_VERBS_MAX_REPLY_SLOTS);
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 32, &cd),
			 EMBKV_ELIMIT); /* 4096 slots of 4 MiB: arena too big */
	put32(buf + EMBKV_VERBS_CONNECT_SLOTS, 16);
	put32(buf + EMBKV_VERBS_CONNECT_SLOT_SIZE, EMBKV_VERBS_MAX_RECV_SIZE + 1);
	assert_int_equal(embkv_wire_verbs_connect_decode(buf, 32, &cd),
			 EMBKV_ELIMIT);
	bad = c;
	bad.credits = 0;
	assert_int_equal(embkv_wire_verbs_connect_encode(&bad, buf, 32),
			 -EINVAL);
	assert_int_equal(embkv_wire_verbs_connect_decode(NULL, 0, &cd),
			 EMBKV_EPROTO);

	assert_int_equal(embkv_wire_verbs_accept_encode(&a, buf, 12), 0);
	assert_int_equal(embkv_wire_verbs_accept_decode(buf, 56, &ad), 0);
	assert_int_equal(ad.credits, 16);
	assert_int_equal(ad.recv_size, EMBKV_VERBS_RECV_SIZE);
	assert_int_equal(embkv_wire_verbs_accept_decode(buf, 11, &ad),
			 EMBKV_EPROTO);
	put16(buf + EMBKV_VERBS_ACCEPT_CREDITS, 0);
	assert_int_equal(embkv_wire_verbs_accept_decode(buf, 12, &ad),
			 EMBKV_EPROTO);
	a.recv_size = 0;
	assert_int_equal(embkv_wire_verbs_accept_encode(&a, buf, 12), -EINVAL);
}

static void test_set_opt_round_trip(void **state)
{
	struct embkv_wire_set_opt m = {
		7, UID, { EMBKV_OPT_FTRL, 0.25f, 0.5f, 0.75f, 1e-6f, 0.125f,
			  0.01f, 0.02f, 1.5f } }, d;
	uint64_t words[(EMBKV_WIRE_SET_OPT_SIZE + 8) / 8]; /* 8-aligned */
	uint8_t *b = (uint8_t *)words;
	const size_t cap = EMBKV_WIRE_SET_OPT_SIZE + 1;

	(void)state;
	assert_int_equal(embkv_wire_set_opt_encode(&m, b, cap - 2), -ENOSPC);
	assert_int_equal(embkv_wire_set_opt_encode(&m, b, cap), 0);
	assert_int_equal(embkv_wire_set_opt_decode(b, EMBKV_WIRE_SET_OPT_SIZE,
						   &d), 0);
	assert_int_equal(d.table_id, 7);
	assert_true(d.uid == UID);
	assert_int_equal(d.opt.type, EMBKV_OPT_FTRL);
	assert_true(d.opt.lr == 0.25f && d.opt.beta1 == 0.5f &&
		    d.opt.beta2 == 0.75f && d.opt.eps == 1e-6f &&
		    d.opt.initial_accum == 0.125f && d.opt.l1 == 0.01f &&
		    d.opt.l2 == 0.02f && d.opt.ftrl_beta == 1.5f);
	/* wrong length, reserved bits, uid 0 */
	assert_int_equal(embkv_wire_set_opt_decode(b, cap, &d), EMBKV_EPROTO);
	b[EMBKV_WIRE_SET_OPT_RESERVED] = 1;
	assert_int_equal(embkv_wire_set_opt_decode(b, EMBKV_WIRE_SET_OPT_SIZE,
						   &d), EMBKV_EPROTO);
	m.uid = 0;
	assert_int_equal(embkv_wire_set_opt_encode(&m, b, cap), -EINVAL);
	m.uid = UID;
	m.table_id = EMBKV_WIRE_TABLE_ALL;
	assert_int_equal(embkv_wire_set_opt_encode(&m, b, cap), -EINVAL);
}

static void test_stats_round_trip(void **state)
{
	const struct sample *s = find_sample(R(EMBKV_WIRE_OP_STATS));
	struct embkv_wire_stats st;
	struct embkv_wire_stat v;
	uint32_t table, n = 0;
	uint8_t *b;

	(void)state;
	assert_int_equal(embkv_wire_stats_decode(s->body, s->len, &st), 0);
	assert_int_equal(st.n_groups, N_STATS_GROUPS);
	assert_int_equal(st.n_stats, N_STATS);
	while (embkv_wire_stats_next(&st, &table, &v)) {
		const struct embkv_wire_stat *want =
			n < 2 ? &stats_server[n] : &stats_table[n - 2];

		assert_int_equal(table, n < 2 ? EMBKV_WIRE_TABLE_ALL : 3);
		assert_int_equal(v.id, want->id);
		assert_int_equal(v.value, want->value);
		n++;
	}
	assert_int_equal(n, N_STATS);
	assert_null(embkv_wire_stat_name(999)); /* unknown id passed through */

	b = dup_bytes(s->body, s->len);
	put16(b + 4 + 6, 0); /* first counter id 0 */
	assert_int_equal(embkv_wire_stats_decode(b, s->len, &st), EMBKV_EPROTO);
	memcpy(b, s->body, s->len);
	put16(b + 4 + 4, 3); /* first group claims one counter more */
	assert_int_equal(embkv_wire_stats_decode(b, s->len, &st), EMBKV_EPROTO);
	memcpy(b, s->body, s->len);
	put32(b, EMBKV_WIRE_MAX_STAT_GROUPS + 1);
	assert_int_equal(embkv_wire_stats_decode(b, s->len, &st), EMBKV_ELIMIT);
	put32(b, N_STATS_GROUPS + 1);
	assert_int_equal(embkv_wire_stats_decode(b, s->len, &st), EMBKV_EPROTO);
	free(b);
}

static void test_shard_map_round_trip(void **state)
{
	const struct sample *s = find_sample(R(EMBKV_WIRE_OP_SHARD_MAP));
	struct embkv_wire_shard_map m, bad;
	struct embkv_wire_str addr;
	uint32_t i = 0;
	size_t len;
	char long_addr[EMBKV_WIRE_ADDR_MAX + 2];
	const char *servers[1];
	uint16_t parts[2] = { 0, 1 };

	(void)state;
	assert_int_equal(embkv_wire_shard_map_decode(s->body, s->len, &m), 0);
	assert_int_equal(m.epoch, 42);
	assert_int_equal(m.table_id, 3);
	assert_int_equal(m.n_partitions, N_MAP_PARTS);
	assert_int_equal(m.n_servers, N_MAP_SERVERS);
	assert_int_equal(m.self, N_MAP_SERVERS - 1);
	assert_ptr_equal(m.part_server,
			 s->body + EMBKV_WIRE_SHARD_MAP_PART_SERVER);
	assert_memory_equal(m.part_server, map_parts, sizeof(map_parts));
	while (embkv_wire_shard_map_next_server(&m, &addr)) {
		assert_true(i < N_MAP_SERVERS);
		assert_int_equal(addr.len, strlen(map_servers[i]));
		assert_memory_equal(addr.ptr, map_servers[i], addr.len);
		i++;
	}
	assert_int_equal(i, N_MAP_SERVERS);

	/* encoder refusals */
	sample_shard_map(&bad);
	bad.n_partitions = 6;
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), -EINVAL);
	bad.n_partitions = EMBKV_MAX_PARTITIONS * 2;
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), EMBKV_ELIMIT);
	sample_shard_map(&bad);
	bad.n_servers = 2; /* map names server 2 */
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), -EINVAL);
	bad.n_servers = EMBKV_WIRE_MAX_SERVERS + 1;
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), EMBKV_ELIMIT);
	memset(long_addr, 'a', sizeof(long_addr) - 1);
	long_addr[sizeof(long_addr) - 1] = '\0';
	servers[0] = long_addr;
	sample_shard_map(&bad);
	bad.n_partitions = 1;
	bad.n_servers = 1;
	bad.self = 0;
	bad.part_server = parts;
	bad.servers = servers;
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), EMBKV_ELIMIT);
	long_addr[EMBKV_WIRE_ADDR_MAX] = '\0';
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), 0);
	servers[0] = "";
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), -EINVAL);
	sample_shard_map(&bad);
	bad.self = N_MAP_SERVERS; /* not one of the servers */
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), -EINVAL);
	bad.self = 0;
	bad.n_partitions = 0; /* only the membership has no partitions */
	assert_int_equal(embkv_wire_shard_map_size(&bad, &len), -EINVAL);
}

/* The membership: SHARD_MAP for no table, no partitions. */
static void test_shard_map_members(void **state)
{
	struct embkv_wire_shard_map m, out;
	struct embkv_wire_str addr;
	uint8_t body[256];
	size_t len;

	(void)state;
	sample_shard_map(&m);
	m.table_id = EMBKV_WIRE_TABLE_ALL;
	m.n_partitions = 0;
	m.part_server = NULL;
	m.self = 1;
	assert_int_equal(embkv_wire_shard_map_size(&m, &len), 0);
	assert_true(len <= sizeof(body));
	assert_int_equal(embkv_wire_shard_map_encode(&m, body, len), 0);
	assert_int_equal(embkv_wire_shard_map_decode(body, len, &out), 0);
	assert_int_equal(out.table_id, EMBKV_WIRE_TABLE_ALL);
	assert_int_equal(out.n_partitions, 0);
	assert_null(out.part_server);
	assert_int_equal(out.n_servers, N_MAP_SERVERS);
	assert_int_equal(out.self, 1);
	assert_true(embkv_wire_shard_map_next_server(&out, &addr));
	assert_int_equal(addr.len, strlen(map_servers[0]));
	m.n_partitions = 1; /* the membership maps no partition */
	m.part_server = map_parts;
	assert_int_equal(embkv_wire_shard_map_size(&m, &len), -EINVAL);
}

/* A shard map body laid out by hand, bypassing the encoder's checks:
 * P partitions mapped round-robin on S servers named "s<i>". */
static uint8_t *hand_shard_map(uint32_t parts, uint32_t servers, size_t *len)
{
	uint8_t *b, *p;
	uint32_t i;

	*len = EMBKV_WIRE_SHARD_MAP_PART_SERVER + 2 * (size_t)parts +
	       (size_t)servers * (2 + 2);
	b = xmalloc(*len);
	memset(b, 0, EMBKV_WIRE_SHARD_MAP_PART_SERVER);
	put32(b + EMBKV_WIRE_SHARD_MAP_PARTS, parts);
	put32(b + EMBKV_WIRE_SHARD_MAP_SERVERS, servers);
	p = b + EMBKV_WIRE_SHARD_MAP_PART_SERVER;
	for (i = 0; i < parts; i++, p += 2)
		put16(p, (uint16_t)(servers ? i % servers : 0));
	for (i = 0; i < servers; i++, p += 4) {
		put16(p, 2);
		p[2] = 's';
		p[3] = (uint8_t)('a' + i % 26);
	}
	return b;
}

static void test_shard_map_partitions(void **state)
{
	static const struct {
		uint32_t parts, servers;
		int rc;
	} cases[] = {
		{ 1, 1, 0 },
		{ 2, 3, 0 },
		{ EMBKV_MAX_PARTITIONS, 5, 0 },
		{ 0, 1, EMBKV_EPROTO },
		{ 6, 3, EMBKV_EPROTO },   /* not a power of two */
		{ 1023, 2, EMBKV_EPROTO },
		{ EMBKV_MAX_PARTITIONS * 2, 1, EMBKV_ELIMIT },
		{ 4, 0, EMBKV_EPROTO },
		{ 1, EMBKV_WIRE_MAX_SERVERS, 0 },
		{ 1, EMBKV_WIRE_MAX_SERVERS + 1, EMBKV_ELIMIT },
	};
	struct embkv_wire_shard_map m;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *b = hand_shard_map(cases[i].parts, cases[i].servers,
					    &len);

		assert_int_equal(embkv_wire_shard_map_decode(b, len, &m),
				 cases[i].rc);
		if (!cases[i].rc) {
			assert_int_equal(m.n_partitions, cases[i].parts);
			assert_int_equal(m.n_servers, cases[i].servers);
		}
		free(b);
	}
}

static void test_shard_map_invalid(void **state)
{
	const struct sample *s = find_sample(R(EMBKV_WIRE_OP_SHARD_MAP));
	struct embkv_wire_shard_map m;
	uint8_t *b = dup_bytes(s->body, s->len);
	uint8_t *map = b + EMBKV_WIRE_SHARD_MAP_PART_SERVER;

	(void)state;
#define RESET() memcpy(b, s->body, s->len)
#define DEC() embkv_wire_shard_map_decode(b, s->len, &m)
	put16(map + 2, N_MAP_SERVERS); /* index out of range */
	assert_int_equal(DEC(), EMBKV_EPROTO);
	RESET();
	put32(b + EMBKV_WIRE_SHARD_MAP_PARTS, 0);
	assert_int_equal(DEC(), EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_SHARD_MAP_PARTS, 6);
	assert_int_equal(DEC(), EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_SHARD_MAP_PARTS, EMBKV_MAX_PARTITIONS * 2);
	assert_int_equal(DEC(), EMBKV_ELIMIT);
	put32(b + EMBKV_WIRE_SHARD_MAP_PARTS, 16); /* more than the body has */
	assert_int_equal(DEC(), EMBKV_EPROTO);
	RESET();
	put32(b + EMBKV_WIRE_SHARD_MAP_SERVERS, 0);
	assert_int_equal(DEC(), EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_SHARD_MAP_SERVERS, EMBKV_WIRE_MAX_SERVERS + 1);
	assert_int_equal(DEC(), EMBKV_ELIMIT);
	put32(b + EMBKV_WIRE_SHARD_MAP_SERVERS, N_MAP_SERVERS + 1);
	assert_int_equal(DEC(), EMBKV_EPROTO);
	RESET();
	put32(b + EMBKV_WIRE_SHARD_MAP_SELF, N_MAP_SERVERS); /* no such server */
	assert_int_equal(DEC(), EMBKV_EPROTO);
	RESET();
	put16(map + 2 * N_MAP_PARTS, 0); /* first address empty */
	assert_int_equal(DEC(), EMBKV_EPROTO);
	put16(map + 2 * N_MAP_PARTS, EMBKV_WIRE_ADDR_MAX + 1);
	assert_int_equal(DEC(), EMBKV_ELIMIT);
	RESET();
	map[2 * N_MAP_PARTS + 2 + 3] = '\0'; /* NUL inside the address */
	assert_int_equal(DEC(), EMBKV_EPROTO);
	RESET();
	assert_int_equal(DEC(), 0);
#undef RESET
#undef DEC
	free(b);
}

static void test_error_round_trip(void **state)
{
	const struct sample *s = find_sample(EMBKV_WIRE_OP_ERROR);
	struct embkv_wire_error e, bad;
	char msg[EMBKV_WIRE_ERRMSG_MAX + 1];
	size_t len;
	uint8_t *b;

	(void)state;
	assert_int_equal(embkv_wire_error_decode(s->body, s->len, &e), 0);
	assert_int_equal(e.status, EMBKV_ESTALE);
	assert_int_equal(e.msg.len, strlen(err_msg));
	assert_memory_equal(e.msg.ptr, err_msg, e.msg.len);
	assert_ptr_equal(e.msg.ptr, s->body + 6);

	b = dup_bytes(s->body, s->len);
	put32(b, 0);
	assert_int_equal(embkv_wire_error_decode(b, s->len, &e), EMBKV_EPROTO);
	put32(b, 5);
	assert_int_equal(embkv_wire_error_decode(b, s->len, &e), EMBKV_EPROTO);
	memcpy(b, s->body, s->len);
	put16(b + 4, EMBKV_WIRE_ERRMSG_MAX + 1);
	assert_int_equal(embkv_wire_error_decode(b, s->len, &e), EMBKV_ELIMIT);
	memcpy(b, s->body, s->len);
	b[6 + 2] = '\0';
	assert_int_equal(embkv_wire_error_decode(b, s->len, &e), EMBKV_EPROTO);
	free(b);

	/* empty message, errno status */
	bad.status = -ENOMEM;
	bad.msg.ptr = NULL;
	bad.msg.len = 0;
	assert_int_equal(embkv_wire_error_size(&bad, &len), 0);
	b = xmalloc(len);
	assert_int_equal(embkv_wire_error_encode(&bad, b, len), 0);
	assert_int_equal(embkv_wire_error_decode(b, len, &e), 0);
	assert_int_equal(e.status, -ENOMEM);
	assert_int_equal(e.msg.len, 0);
	free(b);
	bad.status = 0;
	assert_int_equal(embkv_wire_error_size(&bad, &len), -EINVAL);
	memset(msg, 'm', sizeof(msg));
	bad.status = EMBKV_ESERVER;
	bad.msg.ptr = msg;
	bad.msg.len = sizeof(msg);
	assert_int_equal(embkv_wire_error_size(&bad, &len), EMBKV_ELIMIT);
}

static void test_empty_bodies(void **state)
{
	uint8_t *b = xmalloc(1);

	(void)state;
	b[0] = 0;
	assert_int_equal(embkv_wire_empty_decode(b, 0), 0);
	assert_int_equal(embkv_wire_empty_decode(NULL, 0), 0);
	assert_int_equal(embkv_wire_empty_decode(b, 1), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_body_validate(EMBKV_WIRE_OP_TABLE_LIST, b, 1),
			 EMBKV_EPROTO);
	assert_int_equal(embkv_wire_body_validate(R(EMBKV_WIRE_OP_TABLE_DROP),
						  b, 0), 0);
	free(b);
}

/* ------------------------------------------------------------------------ */
/* limits */

static void test_limit_keys(void **state)
{
	struct embkv_wire_pull_req pm = { 1, UID, DIM, EMBKV_WIRE_MAX_KEYS + 1,
					  EMBKV_WIRE_PULL_TRAIN, sample_keys };
	struct embkv_wire_rows_req rm = { 1, UID, 1, EMBKV_WIRE_MAX_KEYS + 1,
					  sample_keys, sample_vals };
	struct embkv_wire_erase_req em = { 1, UID, EMBKV_WIRE_MAX_KEYS + 1,
					   sample_keys };
	struct embkv_wire_pull_req pd;
	struct embkv_wire_pull_reply prd;
	struct embkv_wire_rows_req rd;
	struct embkv_wire_erase_req ed;
	uint8_t *b;
	size_t len;

	(void)state;
	assert_int_equal(embkv_wire_pull_req_size(&pm, &len), EMBKV_ELIMIT);
	assert_int_equal(embkv_wire_rows_req_size(&rm, &len), EMBKV_ELIMIT);
	assert_int_equal(embkv_wire_erase_req_size(&em, &len), EMBKV_ELIMIT);
	assert_int_equal(embkv_wire_pull_reply_size(EMBKV_WIRE_MAX_KEYS + 1, 1,
						    &len), EMBKV_ELIMIT);

	b = dup_bytes(find_sample(EMBKV_WIRE_OP_PULL)->body,
		      find_sample(EMBKV_WIRE_OP_PULL)->len);
	len = find_sample(EMBKV_WIRE_OP_PULL)->len;
	put32(b + EMBKV_WIRE_PULL_REQ_N, EMBKV_WIRE_MAX_KEYS + 1);
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &pd), EMBKV_ELIMIT);
	put32(b + EMBKV_WIRE_PULL_REQ_N, UINT32_MAX);
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &pd), EMBKV_ELIMIT);
	put32(b + EMBKV_WIRE_PULL_REQ_N, N_KEYS + 1);
	assert_int_equal(embkv_wire_pull_req_decode(b, len, &pd), EMBKV_EPROTO);
	free(b);

	b = dup_bytes(find_sample(R(EMBKV_WIRE_OP_PULL))->body,
		      find_sample(R(EMBKV_WIRE_OP_PULL))->len);
	len = find_sample(R(EMBKV_WIRE_OP_PULL))->len;
	put32(b + EMBKV_WIRE_PULL_REPLY_N, EMBKV_WIRE_MAX_KEYS + 1);
	assert_int_equal(embkv_wire_pull_reply_decode(b, len, &prd),
			 EMBKV_ELIMIT);
	free(b);

	b = dup_bytes(find_sample(EMBKV_WIRE_OP_PUSH)->body,
		      find_sample(EMBKV_WIRE_OP_PUSH)->len);
	len = find_sample(EMBKV_WIRE_OP_PUSH)->len;
	put32(b + EMBKV_WIRE_ROWS_REQ_N, EMBKV_WIRE_MAX_KEYS + 1);
	assert_int_equal(embkv_wire_rows_req_decode(b, len, &rd), EMBKV_ELIMIT);
	free(b);

	b = dup_bytes(find_sample(EMBKV_WIRE_OP_ERASE)->body,
		      find_sample(EMBKV_WIRE_OP_ERASE)->len);
	len = find_sample(EMBKV_WIRE_OP_ERASE)->len;
	put32(b + EMBKV_WIRE_ERASE_REQ_N, EMBKV_WIRE_MAX_KEYS + 1);
	assert_int_equal(embkv_wire_erase_req_decode(b, len, &ed), EMBKV_ELIMIT);
	put32(b + EMBKV_WIRE_ERASE_REQ_N, N_KEYS - 1);
	assert_int_equal(embkv_wire_erase_req_decode(b, len, &ed), EMBKV_EPROTO);
	free(b);
}

/* n * dim must match the body length exactly. */
static void test_limit_count_dim_mismatch(void **state)
{
	const struct sample *s = find_sample(EMBKV_WIRE_OP_PUSH);
	const struct sample *r = find_sample(R(EMBKV_WIRE_OP_PULL));
	struct embkv_wire_rows_req d;
	struct embkv_wire_pull_reply pd;
	uint8_t *b = xmalloc(s->len + sizeof(float));

	(void)state;
	memcpy(b, s->body, s->len);
	memset(b + s->len, 0, sizeof(float));
	assert_int_equal(embkv_wire_rows_req_decode(b, s->len, &d), 0);
	/* one float short, one float extra */
	assert_int_equal(embkv_wire_rows_req_decode(b, s->len - sizeof(float),
						    &d), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_rows_req_decode(b, s->len + sizeof(float),
						    &d), EMBKV_EPROTO);
	/* dim or n off by one for the same body */
	put32(b + EMBKV_WIRE_ROWS_REQ_DIM, DIM + 1);
	assert_int_equal(embkv_wire_rows_req_decode(b, s->len, &d), EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_ROWS_REQ_DIM, DIM - 1);
	assert_int_equal(embkv_wire_rows_req_decode(b, s->len, &d), EMBKV_EPROTO);
	put32(b + EMBKV_WIRE_ROWS_REQ_DIM, DIM);
	put32(b + EMBKV_WIRE_ROWS_REQ_N, N_KEYS - 1);
	assert_int_equal(embkv_wire_rows_req_decode(b, s->len, &d), EMBKV_EPROTO);
	/* a product that would wrap 32 bits: n * dim * 4 = 2^32 */
	put32(b + EMBKV_WIRE_ROWS_REQ_N, EMBKV_WIRE_MAX_KEYS);
	put32(b + EMBKV_WIRE_ROWS_REQ_DIM, 1024);
	assert_int_equal(embkv_wire_rows_req_decode(b, s->len, &d), EMBKV_EPROTO);
	free(b);

	b = dup_bytes(r->body, r->len);
	put32(b + EMBKV_WIRE_PULL_REPLY_DIM, DIM + 1);
	assert_int_equal(embkv_wire_pull_reply_decode(b, r->len, &pd),
			 EMBKV_EPROTO);
	free(b);
}

static void test_limit_dim(void **state)
{
	static const struct {
		unsigned int op;
		size_t off;
	} where[] = {
		{ EMBKV_WIRE_OP_PULL, EMBKV_WIRE_PULL_REQ_DIM },
		{ R(EMBKV_WIRE_OP_PULL), EMBKV_WIRE_PULL_REPLY_DIM },
		{ EMBKV_WIRE_OP_PUSH, EMBKV_WIRE_ROWS_REQ_DIM },
		{ EMBKV_WIRE_OP_ASSIGN, EMBKV_WIRE_ROWS_REQ_DIM },
		{ EMBKV_WIRE_OP_TABLE_CREATE, EMBKV_WIRE_ATTR_DIM },
		{ R(EMBKV_WIRE_OP_TABLE_OPEN),
		  EMBKV_WIRE_TABLE_INFO_ATTR + EMBKV_WIRE_ATTR_DIM },
	};
	struct embkv_wire_pull_req pm = { 1, UID, 0, 1, EMBKV_WIRE_PULL_TRAIN,
					  sample_keys };
	struct embkv_wire_rows_req rm = { 1, UID, 0, 1, sample_keys,
					  sample_vals };
	struct embkv_table_attr a;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		const struct sample *s = find_sample(where[i].op);
		uint8_t *b = dup_bytes(s->body, s->len);

		put32(b + where[i].off, 0);
		assert_int_equal(embkv_wire_body_validate(s->op, b, s->len),
				 EMBKV_EPROTO);
		put32(b + where[i].off, EMBKV_MAX_DIM + 1);
		assert_int_equal(embkv_wire_body_validate(s->op, b, s->len),
				 EMBKV_ELIMIT);
		put32(b + where[i].off, UINT32_MAX);
		assert_int_equal(embkv_wire_body_validate(s->op, b, s->len),
				 EMBKV_ELIMIT);
		free(b);
	}
	/* encoders */
	assert_int_equal(embkv_wire_pull_req_size(&pm, &len), -EINVAL);
	pm.dim = EMBKV_MAX_DIM + 1;
	assert_int_equal(embkv_wire_pull_req_size(&pm, &len), EMBKV_ELIMIT);
	assert_int_equal(embkv_wire_rows_req_size(&rm, &len), -EINVAL);
	rm.dim = EMBKV_MAX_DIM + 1;
	assert_int_equal(embkv_wire_rows_req_size(&rm, &len), EMBKV_ELIMIT);
	assert_int_equal(embkv_wire_pull_reply_size(1, 0, &len), -EINVAL);
	assert_int_equal(embkv_wire_pull_reply_size(1, EMBKV_MAX_DIM + 1, &len),
			 EMBKV_ELIMIT);
	sample_attr(&a);
	a.dim = 0;
	assert_int_equal(embkv_wire_table_attr_size(&a, &len), -EINVAL);
	a.dim = EMBKV_MAX_DIM + 1;
	assert_int_equal(embkv_wire_table_attr_size(&a, &len), EMBKV_ELIMIT);
	a.dim = EMBKV_MAX_DIM;
	assert_int_equal(embkv_wire_table_attr_size(&a, &len), 0);
}

static void test_max_rows(void **state)
{
	static const uint32_t dims[] = { 1, 8, 64, 128, 1000, EMBKV_MAX_DIM };
	struct embkv_wire_rows_req rm = { .uid = UID };
	struct embkv_wire_pull_req pm = { .uid = UID };
	size_t i, len;

	(void)state;
	assert_int_equal(embkv_wire_max_rows(0), 0);
	assert_int_equal(embkv_wire_max_rows(EMBKV_MAX_DIM + 1), 0);
	for (i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) {
		uint32_t n = embkv_wire_max_rows(dims[i]);

		assert_true(n > 0 && n <= EMBKV_WIRE_MAX_KEYS);
		rm.dim = pm.dim = dims[i];
		rm.n = pm.n = n;
		assert_int_equal(embkv_wire_rows_req_size(&rm, &len), 0);
		assert_true(len <= EMBKV_WIRE_MAX_BODY);
		assert_int_equal(embkv_wire_pull_req_size(&pm, &len), 0);
		assert_int_equal(embkv_wire_pull_reply_size(n, dims[i], &len), 0);
		if (n < EMBKV_WIRE_MAX_KEYS) {
			rm.n = n + 1;
			assert_int_equal(embkv_wire_rows_req_size(&rm, &len),
					 EMBKV_ELIMIT);
		}
	}
	assert_int_equal(embkv_wire_max_rows(1), EMBKV_WIRE_MAX_KEYS);
	/* the figures net/PROTOCOL.md quotes */
	assert_int_equal(embkv_wire_max_rows(13), EMBKV_WIRE_MAX_KEYS);
	assert_int_equal(embkv_wire_max_rows(14), EMBKV_WIRE_MAX_KEYS - 1);
	assert_int_equal(embkv_wire_max_rows(128), 129055);
	assert_int_equal(embkv_wire_max_rows(EMBKV_MAX_DIM), 4093);
}

enum fit_kind { FIT_PULL_REQ, FIT_PULL_REPLY, FIT_ROWS_REQ, FIT_ERASE_REQ };

/* 1 when a body of kind with n rows is valid and at most max_body bytes. */
static int body_fits(enum fit_kind kind, uint64_t n, uint32_t dim,
		     size_t max_body)
{
	struct embkv_wire_pull_req pm = { .uid = UID, .dim = dim };
	struct embkv_wire_rows_req rm = { .uid = UID, .dim = dim };
	struct embkv_wire_erase_req em = { .uid = UID };
	size_t len = 0;
	int rc = -EINVAL;

	if (n > UINT32_MAX)
		return 0;
	pm.n = rm.n = em.n = (uint32_t)n;
	switch (kind) {
	case FIT_PULL_REQ:
		rc = embkv_wire_pull_req_size(&pm, &len);
		break;
	case FIT_PULL_REPLY:
		rc = embkv_wire_pull_reply_size((uint32_t)n, dim, &len);
		break;
	case FIT_ROWS_REQ:
		rc = embkv_wire_rows_req_size(&rm, &len);
		break;
	case FIT_ERASE_REQ:
		rc = embkv_wire_erase_req_size(&em, &len);
		break;
	}
	return rc == 0 && len <= max_body;
}

static uint32_t max_rows_of(enum fit_kind kind, size_t max_body, uint32_t dim)
{
	switch (kind) {
	case FIT_PULL_REQ:
		return embkv_wire_pull_req_max_rows(max_body);
	case FIT_PULL_REPLY:
		return embkv_wire_pull_reply_max_rows(max_body, dim);
	case FIT_ROWS_REQ:
		return embkv_wire_rows_req_max_rows(max_body, dim);
	case FIT_ERASE_REQ:
		return embkv_wire_erase_req_max_rows(max_body);
	}
	return 0;
}

/* n = _max_rows: n rows fit (when n > 0), n + 1 do not. */
static void check_max_rows(enum fit_kind kind, size_t max_body, uint32_t dim)
{
	uint32_t n = max_rows_of(kind, max_body, dim);

	if (n)
		assert_true(body_fits(kind, n, dim, max_body));
	assert_false(body_fits(kind, (uint64_t)n + 1, dim, max_body));
}

static void test_max_rows_per_body(void **state)
{
	static const uint32_t dims[] = { 1, 2, 3, 5, 8, 64, 100, 128, 1000,
					 EMBKV_MAX_DIM };
	static const size_t big[] = {
		1u << 12, (1u << 20) - EMBKV_WIRE_HDR_SIZE, 1u << 20,
		(1u << 20) + 7, 12345678, EMBKV_WIRE_MAX_BODY - 1,
		EMBKV_WIRE_MAX_BODY, EMBKV_WIRE_MAX_BODY + 1, SIZE_MAX,
	};
	static const enum fit_kind kinds[] = {
		FIT_PULL_REQ, FIT_PULL_REPLY, FIT_ROWS_REQ, FIT_ERASE_REQ,
	};
	size_t i, d, k, body;

	(void)state;
	for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		for (d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
			for (body = 0; body <= 700; body++)
				check_max_rows(kinds[k], body, dims[d]);
			for (i = 0; i < sizeof(big) / sizeof(big[0]); i++)
				check_max_rows(kinds[k], big[i], dims[d]);
		}
	}
	/* dims that _size rejects fit nothing */
	assert_int_equal(embkv_wire_pull_reply_max_rows(1u << 20, 0), 0);
	assert_int_equal(
		embkv_wire_pull_reply_max_rows(1u << 20, EMBKV_MAX_DIM + 1), 0);
	assert_int_equal(embkv_wire_rows_req_max_rows(1u << 20, 0), 0);
	assert_int_equal(
		embkv_wire_rows_req_max_rows(1u << 20, EMBKV_MAX_DIM + 1), 0);
	/* the fixed fields alone fit no row */
	body = EMBKV_WIRE_PULL_REPLY_FOUND;
	assert_int_equal(embkv_wire_pull_reply_max_rows(body, 1), 0);
	/* one found byte padded to 8, then one float */
	assert_int_equal(embkv_wire_pull_reply_max_rows(body + 11, 1), 0);
	assert_int_equal(embkv_wire_pull_reply_max_rows(body + 12, 1), 1);
	body = EMBKV_WIRE_PULL_REQ_KEYS;
	assert_int_equal(embkv_wire_pull_req_max_rows(body), 0);
	assert_int_equal(embkv_wire_pull_req_max_rows(body + 8), 1);
	/* the key count limit binds small rows */
	assert_int_equal(embkv_wire_erase_req_max_rows(SIZE_MAX),
			 EMBKV_WIRE_MAX_KEYS);
	assert_int_equal(embkv_wire_pull_reply_max_rows(SIZE_MAX, 1),
			 EMBKV_WIRE_MAX_KEYS);
	/* the batch size the client starts from is the tighter of the two */
	for (d = 0; d < sizeof(dims) / sizeof(dims[0]); d++)
		assert_int_equal(
			embkv_wire_max_rows(dims[d]),
			embkv_wire_rows_req_max_rows(EMBKV_WIRE_MAX_BODY,
						     dims[d]));
}

/* Every proper prefix of every valid body is EMBKV_EPROTO; so is any
 * trailing byte. */
static void test_truncated_and_trailing_bodies(void **state)
{
	size_t i, len;

	(void)state;
	for (i = 0; i < n_samples; i++) {
		const struct sample *s = &samples[i];
		uint8_t *b;

		for (len = 0; len < s->len; len++) {
			b = dup_bytes(s->body, len);
			assert_int_equal(embkv_wire_body_validate(s->op, b, len),
					 EMBKV_EPROTO);
			free(b);
		}
		b = xmalloc(s->len + 1);
		if (s->len)
			memcpy(b, s->body, s->len);
		b[s->len] = 0;
		assert_int_equal(embkv_wire_body_validate(s->op, b, s->len + 1),
				 EMBKV_EPROTO);
		free(b);
	}
}

/* JSON bodies: one object, whole, without duplicate keys or NULs. */
static void test_json_bodies(void **state)
{
	static const char *const bad[] = {
		"[1, 2]", "{\"a\": 1} {}", "{\"a\": 1, \"a\": 2}", "{\"a\": }",
		"{\"a\": 1}x", " {\"a\": 1}", "{", "}", "{}}",
	};
	static const char good[] = "{\"a\": {\"b\": [1, \"\\u00e9\"]}}";

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(embkv_wire_json_check((const uint8_t *)bad[i],
						       strlen(bad[i])),
				 EMBKV_EPROTO);
	assert_int_equal(embkv_wire_json_check((const uint8_t *)good,
					       strlen(good)), 0);
	assert_int_equal(embkv_wire_json_check((const uint8_t *)"{\"a\":\0}",
					       7), EMBKV_EPROTO);
	assert_int_equal(embkv_wire_json_check((const uint8_t *)"{}", 2), 0);
}

/* A body length over the frame limit is refused before anything is read. */
static void test_body_over_limit(void **state)
{
	size_t len = (size_t)EMBKV_WIRE_MAX_BODY + 1;
	uint8_t *b = calloc(1, len);
	size_t i;

	(void)state;
	assert_non_null(b);
	for (i = 0; i < n_samples; i++) {
		if (!samples[i].len)
			continue; /* empty bodies: any length is EPROTO */
		assert_int_equal(embkv_wire_body_validate(samples[i].op, b, len),
				 EMBKV_ELIMIT);
	}
	free(b);
}

static void test_misaligned_body(void **state)
{
	const struct sample *s = find_sample(EMBKV_WIRE_OP_PULL);
	struct embkv_wire_pull_req d;
	uint64_t *keys;
	uint8_t *b = xmalloc(s->len + 1);

	(void)state;
	memcpy(b + 1, s->body, s->len);
	assert_int_equal(embkv_wire_pull_req_decode(b + 1, s->len, &d), -EINVAL);
	assert_int_equal(embkv_wire_pull_req_decode(b + 1, s->len, NULL),
			 -EINVAL);
	d.table_id = 1;
	d.uid = UID;
	d.dim = DIM;
	d.n = N_KEYS;
	d.mode = 0;
	assert_int_equal(embkv_wire_pull_req_prepare(&d, b + 1, s->len, &keys),
			 -EINVAL);
	free(b);
}

/* ------------------------------------------------------------------------ */
/* authentication */

/* RFC 4231 test cases 1-4, 6 and 7 (5 truncates): HMAC-SHA-256 as the
 * library computes it must match the standard's known answers. */
static void unhex(const char *h, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static void test_hmac_sha256_rfc4231(void **state)
{
	static const struct {
		uint8_t kbyte;          /* key: kbyte repeated klen times, */
		size_t klen;            /* or 0x01..0x19 when kbyte is 0 */
		const char *data;       /* NULL: dbyte repeated 50 times */
		uint8_t dbyte;
		const char *want;
	} tc[] = {
		{ 0x0b, 20, "Hi There", 0,
		  "b0344c61d8db38535ca8afceaf0bf12b"
		  "881dc200c9833da726e9376c2e32cff7" },
		{ 'J', 4, "what do ya want for nothing?", 0,
		  "5bdcc146bf60754e6a042426089575c7"
		  "5a003f089d2739839dec58b964ec3843" },
		{ 0xaa, 20, NULL, 0xdd,
		  "773ea91e36800e46854db8ebd09181a7"
		  "2959098b3ef8c122d9635514ced565fe" },
		{ 0, 25, NULL, 0xcd,
		  "82558a389a443c0ea4cc819899f2083a"
		  "85f0faa3e578f8077a2e3ff46729665b" },
		{ 0xaa, 131, "Test Using Larger Than Block-Size Key - Hash "
		  "Key First", 0,
		  "60e431591ee0b67f0d8a26aacbf5b77f"
		  "8e0bc6213728c5140546040f0ee37f54" },
		{ 0xaa, 131, "This is a test using a larger than block-size "
		  "key and a larger than block-size data. The key needs to "
		  "be hashed before being used by the HMAC algorithm.", 0,
		  "9b09ffa71b942fcb27635fbcd5b0e944"
		  "bfdc63644f0713938a7f51535c3a35e2" },
	};
	uint8_t key[131], data[50], out[32], want[32];

	(void)state;
	for (size_t t = 0; t < sizeof(tc) / sizeof(tc[0]); t++) {
		const void *msg = tc[t].data ? (const void *)tc[t].data : data;
		size_t mlen = tc[t].data ? strlen(tc[t].data) : sizeof(data);

		if (tc[t].kbyte == 'J')
			memcpy(key, "Jefe", 4);
		else
			for (size_t i = 0; i < tc[t].klen; i++)
				key[i] = tc[t].kbyte ? tc[t].kbyte
						     : (uint8_t)(i + 1);
		memset(data, tc[t].dbyte, sizeof(data));
		unhex(tc[t].want, want, sizeof(want));
		assert_int_equal(embkv_wire_hmac_sha256(key, tc[t].klen, msg,
							mlen, out), 0);
		assert_memory_equal(out, want, sizeof(want));
		/* one flipped key bit changes the answer */
		key[0] ^= 1;
		assert_int_equal(embkv_wire_hmac_sha256(key, tc[t].klen, msg,
							mlen, out), 0);
		assert_memory_not_equal(out, want, sizeof(want));
	}
	assert_int_equal(embkv_wire_hmac_sha256(NULL, 1, "x", 1, out),
			 -EINVAL);
	assert_int_equal(embkv_wire_hmac_sha256(key, 1, "x", 1, NULL),
			 -EINVAL);
}

/* The MAC as net/PROTOCOL.md spells it, built on the HMAC checked above:
 * key = HMAC("EMKVKDF3", token); MAC = HMAC(key, label || u16 version ||
 * sn || cn). */
static void spec_mac(const char *token, const char label[8],
		     const uint8_t *sn, const uint8_t *cn, uint8_t *mac)
{
	uint8_t key[32], msg[8 + 2 + 32 + 32];

	assert_int_equal(embkv_wire_hmac_sha256("EMKVKDF3", 8, token,
						strlen(token), key), 0);
	memcpy(msg, label, 8);
	msg[8] = EMBKV_WIRE_VERSION & 0xff;
	msg[9] = EMBKV_WIRE_VERSION >> 8;
	memcpy(msg + 10, sn, 32);
	memcpy(msg + 42, cn, 32);
	assert_int_equal(embkv_wire_hmac_sha256(key, sizeof(key), msg,
						sizeof(msg), mac), 0);
}

static void test_auth(void **state)
{
	static const char token[] = "correct horse battery staple";
	/* Pinned (net/PROTOCOL.md test vector): the MAC is part of the
	 * protocol and must not drift. */
	static const uint8_t want_client[EMBKV_WIRE_MAC_SIZE] = {
		0x2c, 0x82, 0x39, 0xec, 0x12, 0x0f, 0x4a, 0x18,
		0xd7, 0xb1, 0x73, 0x55, 0x51, 0x2b, 0x7f, 0xd5,
		0x97, 0x24, 0xb3, 0xe5, 0x25, 0xdb, 0x9e, 0x70,
		0x72, 0x60, 0x57, 0xd8, 0xa0, 0x6c, 0x1a, 0xfb,
	};
	static const uint8_t want_server[EMBKV_WIRE_MAC_SIZE] = {
		0xcb, 0x45, 0x92, 0xa8, 0xc0, 0xc5, 0xa4, 0xf9,
		0xda, 0xcc, 0x8c, 0x58, 0x1c, 0x68, 0xee, 0xef,
		0x55, 0x20, 0xe6, 0x39, 0x2b, 0x0e, 0x18, 0xc3,
		0xa9, 0xdd, 0xff, 0x81, 0x35, 0x79, 0x5e, 0x94,
	};
	struct embkv_wire_auth_key key, other;
	uint8_t sn[EMBKV_WIRE_NONCE_SIZE], cn[EMBKV_WIRE_NONCE_SIZE];
	uint8_t mc[EMBKV_WIRE_MAC_SIZE], ms[EMBKV_WIRE_MAC_SIZE];
	uint8_t spec[EMBKV_WIRE_MAC_SIZE];
	size_t i;

	(void)state;
	for (i = 0; i < EMBKV_WIRE_NONCE_SIZE; i++) {
		sn[i] = (uint8_t)i;
		cn[i] = (uint8_t)(0xff - i);
	}
	assert_int_equal(embkv_wire_auth_key_derive(token, strlen(token), &key),
			 0);
	assert_int_equal(embkv_wire_auth_mac(&key, EMBKV_WIRE_AUTH_CLIENT, sn,
					     cn, mc), 0);
	assert_int_equal(embkv_wire_auth_mac(&key, EMBKV_WIRE_AUTH_SERVER, sn,
					     cn, ms), 0);
	assert_memory_not_equal(mc, ms, EMBKV_WIRE_MAC_SIZE);
	assert_memory_equal(mc, want_client, EMBKV_WIRE_MAC_SIZE);
	assert_memory_equal(ms, want_server, EMBKV_WIRE_MAC_SIZE);
	spec_mac(token, "EMKVAUTC", sn, cn, spec);
	assert_memory_equal(mc, spec, EMBKV_WIRE_MAC_SIZE);
	spec_mac(token, "EMKVAUTS", sn, cn, spec);
	assert_memory_equal(ms, spec, EMBKV_WIRE_MAC_SIZE);
	assert_int_equal(embkv_wire_auth_verify(&key, EMBKV_WIRE_AUTH_CLIENT,
						sn, cn, mc), 0);
	assert_int_equal(embkv_wire_auth_verify(&key, EMBKV_WIRE_AUTH_SERVER,
						sn, cn, ms), 0);
	/* reflection: the server's MAC is not a valid client MAC */
	assert_int_equal(embkv_wire_auth_verify(&key, EMBKV_WIRE_AUTH_CLIENT,
						sn, cn, ms), EMBKV_EAUTH);
	/* another token */
	assert_int_equal(embkv_wire_auth_key_derive("correct horse battery "
						    "stapler", strlen(token) + 1,
						    &other), 0);
	assert_int_equal(embkv_wire_auth_verify(&other, EMBKV_WIRE_AUTH_CLIENT,
						sn, cn, mc), EMBKV_EAUTH);
	/* any changed nonce byte or MAC bit */
	for (i = 0; i < EMBKV_WIRE_NONCE_SIZE; i++) {
		sn[i] ^= 1;
		assert_int_equal(embkv_wire_auth_verify(&key,
							EMBKV_WIRE_AUTH_CLIENT,
							sn, cn, mc),
				 EMBKV_EAUTH);
		sn[i] ^= 1;
		cn[i] ^= 0x80;
		assert_int_equal(embkv_wire_auth_verify(&key,
							EMBKV_WIRE_AUTH_CLIENT,
							sn, cn, mc),
				 EMBKV_EAUTH);
		cn[i] ^= 0x80;
	}
	for (i = 0; i < EMBKV_WIRE_MAC_SIZE * 8; i++) {
		mc[i / 8] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(embkv_wire_auth_verify(&key,
							EMBKV_WIRE_AUTH_CLIENT,
							sn, cn, mc),
				 EMBKV_EAUTH);
		mc[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	assert_int_equal(embkv_wire_auth_key_derive(token, 0, &other), -EINVAL);
	assert_int_equal(embkv_wire_auth_mac(&key, (enum embkv_wire_auth_role)2,
					     sn, cn, mc), -EINVAL);
	embkv_wire_auth_key_wipe(&key);
	for (i = 0; i < EMBKV_WIRE_AUTH_SECRET_SIZE; i++)
		assert_int_equal(key.secret[i], 0);
	embkv_wire_auth_key_wipe(&other);
}

/* ------------------------------------------------------------------------ */
/* fuzz */

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint32_t rng_below(uint32_t n)
{
	return n ? (uint32_t)(rng() % n) : 0;
}

enum { FZ_OK, FZ_FAIL, FZ_N };

struct fuzz_target {
	const char *name;
	int (*run)(const uint8_t *b, size_t len);
	unsigned long seen[FZ_N];
};

static void check_rc(int rc)
{
	if (rc != 0 && rc != EMBKV_EPROTO && rc != EMBKV_ELIMIT)
		fail_msg("decoder returned %d", rc);
}

static int fz_hello(const uint8_t *b, size_t len)
{
	struct embkv_wire_hello m;

	return embkv_wire_hello_decode(b, len, &m);
}

static int fz_auth(const uint8_t *b, size_t len)
{
	struct embkv_wire_auth m;

	return embkv_wire_auth_decode(b, len, &m);
}

static int fz_empty(const uint8_t *b, size_t len)
{
	return embkv_wire_empty_decode(b, len);
}

static int fz_table_ref(const uint8_t *b, size_t len)
{
	struct embkv_wire_table_ref m;
	int rc = embkv_wire_table_ref_decode(b, len, &m);

	if (!rc)
		assert_true((m.table_id == EMBKV_WIRE_TABLE_ALL) ==
			    (m.uid == 0));
	return rc;
}

static int fz_name(const uint8_t *b, size_t len)
{
	char name[EMBKV_TABLE_NAME_MAX];
	int rc = embkv_wire_name_decode(b, len, name);

	if (!rc)
		assert_true(strlen(name) >= 1 &&
			    strlen(name) <= EMBKV_WIRE_NAME_LEN_MAX);
	return rc;
}

static int fz_attr(const uint8_t *b, size_t len)
{
	struct embkv_table_attr a;
	int rc = embkv_wire_table_attr_decode(b, len, &a);

	if (!rc)
		assert_true(a.dim >= 1 && a.dim <= EMBKV_MAX_DIM &&
			    strlen(a.name) < EMBKV_TABLE_NAME_MAX);
	return rc;
}

static int fz_table_info(const uint8_t *b, size_t len)
{
	struct embkv_wire_table_info m;
	int rc = embkv_wire_table_info_decode(b, len, &m);

	if (!rc)
		assert_true(m.attr.dim >= 1 && m.attr.dim <= EMBKV_MAX_DIM &&
			    m.uid != 0);
	return rc;
}

static int fz_table_list(const uint8_t *b, size_t len)
{
	struct embkv_wire_table_list l;
	struct embkv_wire_table_entry e;
	uint32_t n = 0;
	int rc = embkv_wire_table_list_decode(b, len, &l);

	if (rc)
		return rc;
	while (embkv_wire_table_list_next(&l, &e)) {
		assert_true(e.dim >= 1 && e.dim <= EMBKV_MAX_DIM);
		assert_true(e.uid != 0);
		assert_true(strlen(e.name) >= 1);
		n++;
	}
	assert_int_equal(n, l.count);
	return 0;
}

static int fz_pull_req(const uint8_t *b, size_t len)
{
	struct embkv_wire_pull_req m;
	int rc = embkv_wire_pull_req_decode(b, len, &m);

	if (!rc) {
		assert_true(m.n <= EMBKV_WIRE_MAX_KEYS && m.uid != 0);
		assert_int_equal(EMBKV_WIRE_PULL_REQ_KEYS + 8ull * m.n, len);
		if (m.n)
			assert_true((const uint8_t *)(m.keys + m.n) == b + len);
	}
	return rc;
}

static int fz_pull_reply(const uint8_t *b, size_t len)
{
	struct embkv_wire_pull_reply m;
	uint32_t i;
	int rc = embkv_wire_pull_reply_decode(b, len, &m);

	if (rc)
		return rc;
	for (i = 0; i < m.n; i++)
		assert_true(m.found[i] <= 1);
	assert_true((const uint8_t *)m.vals +
			    (size_t)m.n * m.dim *
				    embkv_dtype_size((enum embkv_dtype)m.dtype) ==
		    b + len);
	return 0;
}

static int fz_land_req(const uint8_t *b, size_t len)
{
	struct embkv_wire_land_req m;
	int rc = embkv_wire_land_req_decode(b, len, &m);

	if (!rc) {
		assert_true(m.stride >= 32 && m.stride % 8 == 0 &&
			    m.stride <= EMBKV_WIRE_LAND_MAX_STRIDE);
		assert_int_equal(40 + 8ull * m.pull.n, len);
	}
	return rc;
}

static int fz_land_reply(const uint8_t *b, size_t len)
{
	struct embkv_wire_land_reply m;
	int rc = embkv_wire_land_reply_decode(b, len, &m);

	if (rc)
		return rc;
	for (uint32_t i = 0; i < m.n; i++)
		assert_true(m.state[i] < EMBKV_WIRE_LAND_STATE_COUNT);
	assert_true(8 + (uint64_t)m.n <= len && len < 8 + (uint64_t)m.n + 8);
	return 0;
}

static int fz_rows_req(const uint8_t *b, size_t len)
{
	struct embkv_wire_rows_req m;
	int rc = embkv_wire_rows_req_decode(b, len, &m);

	if (!rc)
		assert_true((const uint8_t *)(m.vals + (size_t)m.n * m.dim) ==
			    b + len && m.uid != 0);
	return rc;
}

static int fz_erase_req(const uint8_t *b, size_t len)
{
	struct embkv_wire_erase_req m;
	int rc = embkv_wire_erase_req_decode(b, len, &m);

	if (!rc)
		assert_true(EMBKV_WIRE_ERASE_REQ_KEYS + 8ull * m.n == len &&
			    m.uid != 0);
	return rc;
}

static int fz_hits(const uint8_t *b, size_t len)
{
	struct embkv_wire_hits m;
	int rc = embkv_wire_hits_decode(b, len, &m);

	if (!rc)
		assert_true((const uint8_t *)(m.counts + m.n) == b + len &&
			    m.uid != 0);
	return rc;
}

static int fz_regions(const uint8_t *b, size_t len)
{
	struct embkv_wire_table_regions m;
	struct embkv_wire_region_part p;
	uint32_t n = 0;
	int rc = embkv_wire_table_regions_decode(b, len, &m);

	if (rc)
		return rc;
	assert_int_equal(24ull + 48ull * m.count, len);
	assert_true(m.uid != 0);
	while (embkv_wire_table_regions_next(&m, &p)) {
		assert_true(p.part < EMBKV_MAX_PARTITIONS && p.nbuckets);
		n++;
	}
	assert_int_equal(n, m.count);
	return 0;
}

static int fz_count(const uint8_t *b, size_t len)
{
	struct embkv_wire_count_reply m;

	return embkv_wire_count_reply_decode(b, len, &m);
}

static int fz_stats(const uint8_t *b, size_t len)
{
	struct embkv_wire_stats s;
	struct embkv_wire_stat v;
	uint64_t n = 0;
	uint32_t table;
	int rc = embkv_wire_stats_decode(b, len, &s);

	if (rc)
		return rc;
	while (embkv_wire_stats_next(&s, &table, &v)) {
		assert_true(v.id != 0);
		n++;
	}
	assert_int_equal(n, s.n_stats);
	return 0;
}

static int fz_shard_map(const uint8_t *b, size_t len)
{
	struct embkv_wire_shard_map m;
	struct embkv_wire_str addr;
	uint32_t i, n = 0;
	int rc = embkv_wire_shard_map_decode(b, len, &m);

	if (rc)
		return rc;
	for (i = 0; i < m.n_partitions; i++)
		assert_true(m.part_server[i] < m.n_servers);
	while (embkv_wire_shard_map_next_server(&m, &addr)) {
		assert_true(addr.len >= 1 && addr.len <= EMBKV_WIRE_ADDR_MAX);
		assert_null(memchr(addr.ptr, '\0', addr.len));
		n++;
	}
	assert_int_equal(n, m.n_servers);
	return 0;
}

static int fz_error(const uint8_t *b, size_t len)
{
	struct embkv_wire_error e;
	int rc = embkv_wire_error_decode(b, len, &e);

	if (!rc)
		assert_true(e.status < 0 && e.msg.len <= EMBKV_WIRE_ERRMSG_MAX);
	return rc;
}

static struct fuzz_target targets[] = {
	{ "hello", fz_hello, { 0 } },
	{ "auth", fz_auth, { 0 } },
	{ "empty", fz_empty, { 0 } },
	{ "table_ref", fz_table_ref, { 0 } },
	{ "name", fz_name, { 0 } },
	{ "table_attr", fz_attr, { 0 } },
	{ "table_info", fz_table_info, { 0 } },
	{ "table_list", fz_table_list, { 0 } },
	{ "pull_req", fz_pull_req, { 0 } },
	{ "pull_reply", fz_pull_reply, { 0 } },
	{ "land_req", fz_land_req, { 0 } },
	{ "land_reply", fz_land_reply, { 0 } },
	{ "rows_req", fz_rows_req, { 0 } },
	{ "erase_req", fz_erase_req, { 0 } },
	{ "hits", fz_hits, { 0 } },
	{ "table_regions", fz_regions, { 0 } },
	{ "count_reply", fz_count, { 0 } },
	{ "stats", fz_stats, { 0 } },
	{ "shard_map", fz_shard_map, { 0 } },
	{ "error", fz_error, { 0 } },
};
#define N_TARGETS (sizeof(targets) / sizeof(targets[0]))

static const uint32_t interesting32[] = {
	0, 1, 2, 3, 7, 8, 0xff, 0x100, 0xffff, 0x10000, EMBKV_MAX_DIM,
	EMBKV_MAX_DIM + 1, EMBKV_WIRE_MAX_KEYS, EMBKV_WIRE_MAX_KEYS + 1,
	EMBKV_WIRE_MAX_BODY, EMBKV_WIRE_MAX_BODY + 1, 0x7fffffff, 0x80000000,
	0xfffffffe, 0xffffffff,
};
static const uint16_t interesting16[] = {
	0, 1, 2, 63, 64, 255, 256, 0x7fff, 0x8000, 0xffff,
};
#define N_INTERESTING32 (sizeof(interesting32) / sizeof(interesting32[0]))
#define N_INTERESTING16 (sizeof(interesting16) / sizeof(interesting16[0]))

/* Builds a whole valid frame for sample s into f; returns its length. */
static size_t sample_frame(const struct sample *s, uint8_t *f)
{
	struct embkv_wire_hdr h = { .opcode = (uint8_t)s->op,
				    .body_len = (uint32_t)s->len,
				    .request_id = rng(), .epoch = rng() };

	assert_int_equal(embkv_wire_hdr_encode(&h, f), EMBKV_WIRE_HDR_SIZE);
	if (s->len)
		memcpy(f + EMBKV_WIRE_HDR_SIZE, s->body, s->len);
	return EMBKV_WIRE_HDR_SIZE + s->len;
}

static size_t mutate(uint8_t *f, size_t len, size_t cap)
{
	unsigned int k, n = 1 + rng_below(FUZZ_MUTATIONS_MAX);
	size_t at, extra, i;

	for (k = 0; k < n; k++) {
		switch (rng_below(7)) {
		case 0: /* flip a bit */
			if (len)
				f[rng_below((uint32_t)len)] ^=
					(uint8_t)(1u << rng_below(8));
			break;
		case 1: /* random byte */
			if (len)
				f[rng_below((uint32_t)len)] = (uint8_t)rng();
			break;
		case 2: /* interesting u32, usually on a field boundary */
			if (len >= 4) {
				at = rng_below((uint32_t)len - 3);
				if (rng_below(2))
					at &= ~(size_t)3;
				put32(f + at,
				      interesting32[rng_below(N_INTERESTING32)]);
			}
			break;
		case 3: /* interesting u16 */
			if (len >= 2)
				put16(f + rng_below((uint32_t)len - 1),
				      interesting16[rng_below(N_INTERESTING16)]);
			break;
		case 4: /* truncate */
			len = rng_below((uint32_t)len + 1);
			break;
		case 5: /* extend */
			extra = 1 + rng_below(FUZZ_EXTEND_MAX);
			if (len + extra > cap)
				extra = cap - len;
			for (i = 0; i < extra; i++)
				f[len + i] = (uint8_t)rng();
			len += extra;
			break;
		default: /* make the header's body_len agree */
			if (len >= EMBKV_WIRE_HDR_SIZE)
				put32(f + EMBKV_WIRE_HDR_BODY_LEN,
				      (uint32_t)(len - EMBKV_WIRE_HDR_SIZE));
			break;
		}
	}
	return len;
}

static void fuzz_one(const uint8_t *f, size_t len)
{
	struct embkv_wire_hdr h;
	const uint8_t *body;
	const uint8_t *src = f;
	size_t blen = len, t;
	uint8_t *frame, *b;
	int rc;

	/* header and frame decoders on an exact-size copy */
	frame = dup_bytes(f, len);
	rc = embkv_wire_hdr_decode(frame, len, &h);
	if (rc != 0 && rc != EMBKV_EPROTO && rc != EMBKV_EVERSION &&
	    rc != EMBKV_EOPCODE && rc != EMBKV_ELIMIT)
		fail_msg("hdr_decode returned %d", rc);
	rc = embkv_wire_frame_decode(frame, len, &h, &body);
	if (!rc) {
		assert_int_equal(h.body_len + EMBKV_WIRE_HDR_SIZE, len);
		/* body right after a 32-byte header in a malloc'ed buffer
		 * is aligned: validate it in place */
		check_rc(embkv_wire_body_validate(h.opcode, body, h.body_len));
	}
	free(frame);

	/* every body decoder on the body (or on all bytes if no header) */
	if (len >= EMBKV_WIRE_HDR_SIZE) {
		src = f + EMBKV_WIRE_HDR_SIZE;
		blen = len - EMBKV_WIRE_HDR_SIZE;
	}
	b = dup_bytes(src, blen);
	for (t = 0; t < N_TARGETS; t++) {
		rc = targets[t].run(b, blen);
		check_rc(rc);
		targets[t].seen[rc ? FZ_FAIL : FZ_OK]++;
	}
	free(b);
}

static void test_fuzz(void **state)
{
	size_t max_len = 0, i, len;
	uint8_t *f;
	uint32_t it;
	const char *env = getenv("EMBKV_FUZZ_SEED");

	(void)state;
	rng_state = env ? strtoull(env, NULL, 0) : FUZZ_SEED_DEFAULT;
	if (!rng_state)
		rng_state = FUZZ_SEED_DEFAULT;
	print_message("fuzz seed 0x%llx (EMBKV_FUZZ_SEED to change)\n",
		      (unsigned long long)rng_state);
	for (i = 0; i < n_samples; i++)
		if (samples[i].len > max_len)
			max_len = samples[i].len;
	max_len += EMBKV_WIRE_HDR_SIZE + FUZZ_EXTEND_MAX * FUZZ_MUTATIONS_MAX +
		   FUZZ_RANDOM_LEN_MAX;
	f = xmalloc(max_len);
	for (i = 0; i < N_TARGETS; i++)
		memset(targets[i].seen, 0, sizeof(targets[i].seen));

	for (it = 0; it < FUZZ_ITERS; it++) {
		const struct sample *s = &samples[rng_below((uint32_t)n_samples)];

		if (rng_below(100) < FUZZ_RANDOM_PERCENT) {
			len = rng_below(FUZZ_RANDOM_LEN_MAX);
			for (i = 0; i < len; i++)
				f[i] = (uint8_t)rng();
			if (len >= EMBKV_WIRE_HDR_SIZE && rng_below(2)) {
				/* a valid header over random body bytes */
				struct embkv_wire_hdr h = {
					.opcode = (uint8_t)s->op,
					.body_len = (uint32_t)(len -
						EMBKV_WIRE_HDR_SIZE),
				};

				embkv_wire_hdr_encode(&h, f);
			}
		} else {
			len = sample_frame(s, f);
			/* unmutated 1 time in 16: success paths stay covered */
			if (rng_below(16))
				len = mutate(f, len, max_len);
		}
		fuzz_one(f, len);
	}
	free(f);
	for (i = 0; i < N_TARGETS; i++) {
		print_message("  %-12s %7lu ok %7lu rejected\n", targets[i].name,
			      targets[i].seen[FZ_OK], targets[i].seen[FZ_FAIL]);
		if (!targets[i].seen[FZ_OK] || !targets[i].seen[FZ_FAIL])
			fail_msg("decoder %s: %lu ok, %lu failed", targets[i].name,
				 targets[i].seen[FZ_OK],
				 targets[i].seen[FZ_FAIL]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_round_trip),
		cmocka_unit_test(test_hdr_set_request_id),
		cmocka_unit_test(test_hdr_truncated),
		cmocka_unit_test(test_hdr_bad_magic),
		cmocka_unit_test(test_hdr_bad_version),
		cmocka_unit_test(test_hdr_unknown_opcode),
		cmocka_unit_test(test_hdr_body_len_limit),
		cmocka_unit_test(test_scan),
		cmocka_unit_test(test_hdr_flags_reserved),
		cmocka_unit_test(test_hdr_encode_invalid),
		cmocka_unit_test(test_frame_decode),
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_op_helpers),
		cmocka_unit_test(test_epoch_rule),
		cmocka_unit_test(test_all_samples_validate),
		cmocka_unit_test(test_multi),
		cmocka_unit_test(test_hello_auth_round_trip),
		cmocka_unit_test(test_table_attr_round_trip),
		cmocka_unit_test(test_name_round_trip_and_limits),
		cmocka_unit_test(test_table_list_round_trip),
		cmocka_unit_test(test_table_list_invalid),
		cmocka_unit_test(test_pull_round_trip),
		cmocka_unit_test(test_pull_land),
		cmocka_unit_test(test_pull_reply_16bit),
		cmocka_unit_test(test_rows_round_trip),
		cmocka_unit_test(test_erase_count_round_trip),
		cmocka_unit_test(test_hits_round_trip),
		cmocka_unit_test(test_table_regions_round_trip),
		cmocka_unit_test(test_verbs_private_data),
		cmocka_unit_test(test_stats_round_trip),
		cmocka_unit_test(test_set_opt_round_trip),
		cmocka_unit_test(test_shard_map_round_trip),
		cmocka_unit_test(test_shard_map_invalid),
		cmocka_unit_test(test_shard_map_partitions),
		cmocka_unit_test(test_shard_map_members),
		cmocka_unit_test(test_error_round_trip),
		cmocka_unit_test(test_empty_bodies),
		cmocka_unit_test(test_limit_keys),
		cmocka_unit_test(test_limit_count_dim_mismatch),
		cmocka_unit_test(test_limit_dim),
		cmocka_unit_test(test_max_rows),
		cmocka_unit_test(test_max_rows_per_body),
		cmocka_unit_test(test_truncated_and_trailing_bodies),
		cmocka_unit_test(test_json_bodies),
		cmocka_unit_test(test_body_over_limit),
		cmocka_unit_test(test_misaligned_body),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_hmac_sha256_rfc4231),
		cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests(tests, build_samples, free_samples);
}
