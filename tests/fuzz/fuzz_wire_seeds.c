/*
 * Seed corpus for fuzz_wire: for every known opcode, one valid body built
 * with the encoders (as tests/test_wire.c's samples are), written twice
 * into DIR: as the fuzzer's body input (a first byte that picks that
 * opcode, then the body) and as a whole frame (header, then the body).
 * Why: generated at fuzz time from the codec itself, so the seeds follow
 * the protocol as it changes and no binary file is kept in git; a fuzzer
 * that starts from valid bodies reaches the deep checks (counts, cursors,
 * names, limits) at once. Invariant: every seed body passes
 * embkv_wire_body_validate for its opcode (checked here; exit 1
 * otherwise). Usage: fuzz_wire_seeds DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net/wire.h"

#define R(op) ((op) | EMBKV_WIRE_OP_REPLY)
#define UID 0x8badf00d0123abcdull
#define NK 5u
#define DIM 3u

static const uint64_t keys[NK] = { 1, 2, 0xdeadbeefcafef00dull, UINT64_MAX,
				   0 };
static const uint8_t found[NK] = { 1, 0, 1, 1, 0 };
static const uint32_t counts[NK] = { 1, 0, 7, 0xffffffff, 3 };
static float vals[NK * DIM];

static void attr(struct embkv_table_attr *a)
{
	embkv_table_attr_init(a);
	strcpy(a->name, "user_emb");
	a->dim = 16;
	a->partitions = 8;
	a->capacity = 1000;
	a->opt.type = EMBKV_OPT_ADAM;
	a->opt.lr = 0.001f;
}

static long body_for(unsigned int op, uint8_t *b, size_t cap);

/* A MULTI_PULL / MULTI_PUSH body (5.25): two sections holding inner's
 * body, the second of a reply an error message instead. */
static long multi_for(unsigned int op, unsigned int inner, uint8_t *b,
		      size_t cap)
{
	static uint64_t tmp64[2048 / 8];
	static const char msg[] = "no table with id 9";
	uint8_t *tmp = (uint8_t *)tmp64, *sb;
	long ilen = body_for(inner, tmp, sizeof(tmp64));
	size_t at = EMBKV_WIRE_MULTI_SECTIONS;

	if (ilen < 0 || embkv_wire_multi_encode_head(2, b, cap))
		return -1;
	for (int i = 0; i < 2; i++) {
		int err = i == 1 && (op & EMBKV_WIRE_OP_REPLY);
		struct embkv_wire_multi_sec s = {
			.len = err ? (uint32_t)sizeof(msg) - 1
				   : (uint32_t)ilen,
			.status = err ? EMBKV_ENOTABLE : 0,
			.epoch = 1,
		};
		int64_t k = embkv_wire_multi_sec_prepare(&s, b + at, cap - at,
							 &sb);

		if (k < 0)
			return -1;
		memcpy(sb, err ? (const uint8_t *)msg : tmp, s.len);
		at += (size_t)k;
	}
	return (long)at;
}

/* A valid body for op into b (cap bytes); its length, or -1. */
static long body_for(unsigned int op, uint8_t *b, size_t cap)
{
	static const char json[] = "{\"uid\": \"00000000000000ff\", "
				   "\"part\": 3, \"n\": 5}";
	static const struct embkv_wire_stat st[] = {
		{ EMBKV_WIRE_STAT_ROWS, 1000 }, { 999, UINT64_MAX } };
	static const struct embkv_wire_stats_group g[] = {
		{ EMBKV_WIRE_TABLE_ALL, 1, st }, { 7, 0, NULL },
		{ 3, 2, st } };
	static const uint16_t ps[] = { 0, 1, 1, 0 };
	static const char *const srv[] = { "tcp://10.0.0.1:7000",
					   "rdma://10.0.0.2:7000" };
	static const struct embkv_wire_table_entry ents[] = {
		{ 1, 16, UID, "user_emb" }, { 2, 4096, 1, "x" } };
	static const struct embkv_wire_region_part rp[] = {
		{ .part = 0, .index_rkey = 1, .arena_rkey = 2,
		  .index_addr = 4096, .nbuckets = 16, .arena_addr = 8192,
		  .capacity = 64 },
		{ .part = 3, .nbuckets = 1 } };
	struct embkv_wire_hello hello;
	struct embkv_wire_auth auth;
	struct embkv_table_attr a;
	struct embkv_wire_table_info info = { .table_id = 3, .uid = UID };
	struct embkv_wire_pull_req pr = { 3, UID, DIM, NK,
					  EMBKV_WIRE_PULL_INFER, keys };
	struct embkv_wire_pull_reply prep = { NK, DIM, found, vals, EMBKV_DTYPE_F32 };
	struct embkv_wire_rows_req rr = { 3, UID, DIM, NK, keys, vals };
	struct embkv_wire_erase_req er = { 3, UID, NK, keys };
	struct embkv_wire_count_reply cr = { 4, 1 };
	struct embkv_wire_hits hr = { 3, UID, NK, keys, counts };
	struct embkv_wire_scan_req sq = { 3, 5, UID, 17, 100 };
	struct embkv_wire_scan_reply srep = { 40, NK, DIM, EMBKV_DTYPE_F32,
					      keys, vals };
	const struct embkv_wire_table_ref ref = { 3, UID };
	const struct embkv_wire_table_ref all = { EMBKV_WIRE_TABLE_ALL, 0 };
	struct embkv_wire_set_opt so = { .table_id = 3, .uid = UID };
	struct embkv_wire_table_regions rg = { .table_id = 3, .uid = UID,
		.count = 2, .stride = 8, .parts = rp };
	struct embkv_wire_shard_map sm = { .epoch = 42, .table_id = 3,
		.n_partitions = 4, .n_servers = 2, .self = 1,
		.part_server = ps, .servers = srv };
	struct embkv_wire_error err = { EMBKV_ESTALE, { "stale", 5 } };
	unsigned int req = op & ~(unsigned int)EMBKV_WIRE_OP_REPLY;
	bool reply = op != EMBKV_WIRE_OP_ERROR && (op & EMBKV_WIRE_OP_REPLY);
	size_t len = 0;
	int rc;

	memset(hello.nonce, 0x5a, sizeof(hello.nonce));
	memset(auth.mac, 0xa5, sizeof(auth.mac));
	attr(&a);
	info.attr = a;
	so.opt.type = EMBKV_OPT_ADAGRAD;
	so.opt.lr = 0.05f;
	if (op == EMBKV_WIRE_OP_ERROR) {
		rc = embkv_wire_error_size(&err, &len);
		return rc || embkv_wire_error_encode(&err, b, cap) ? -1
								   : (long)len;
	}
	if (req >= EMBKV_WIRE_OP_CKPT_PART || req == EMBKV_WIRE_OP_CONFIG) {
		/* JSON, or a blob */
		bool blob = (req == EMBKV_WIRE_OP_MOVE_READ && reply) ||
			    (req == EMBKV_WIRE_OP_MOVE_WRITE && !reply) ||
			    (req == EMBKV_WIRE_OP_REPL_SNAP && reply) ||
			    (req == EMBKV_WIRE_OP_REPL_PULL && reply);
		size_t jl = sizeof(json) - 1;

		if (!blob) {
			memcpy(b, json, jl);
			return (long)jl;
		}
		b[0] = (uint8_t)jl;
		b[1] = b[2] = b[3] = 0;
		memcpy(b + 4, json, jl);
		memcpy(b + 4 + jl, "\1\2\0\4\5", 5);
		return (long)(4 + jl + 5);
	}
#define SIZED(sizecall, call) \
	((sizecall) || len > cap || (call) ? -1 : (long)len)
#define FIXED(LEN, call) ((call) ? -1 : (long)(LEN))
	switch (op) {
	case EMBKV_WIRE_OP_HELLO:
	case R(EMBKV_WIRE_OP_HELLO):
		return FIXED(EMBKV_WIRE_HELLO_SIZE,
			     embkv_wire_hello_encode(&hello, b, cap));
	case EMBKV_WIRE_OP_AUTH:
	case R(EMBKV_WIRE_OP_AUTH):
		return FIXED(EMBKV_WIRE_AUTH_SIZE,
			     embkv_wire_auth_encode(&auth, b, cap));
	case EMBKV_WIRE_OP_TABLE_CREATE:
		return SIZED(embkv_wire_table_attr_size(&a, &len),
			     embkv_wire_table_attr_encode(&a, b, len));
	case R(EMBKV_WIRE_OP_TABLE_CREATE):
	case EMBKV_WIRE_OP_TABLE_REGIONS:
	case EMBKV_WIRE_OP_SHARD_MAP:
		return FIXED(EMBKV_WIRE_TABLE_REF_SIZE,
			     embkv_wire_table_ref_encode(&ref, b, cap));
	case EMBKV_WIRE_OP_STATS:
		return FIXED(EMBKV_WIRE_TABLE_REF_SIZE,
			     embkv_wire_table_ref_encode(&all, b, cap));
	case EMBKV_WIRE_OP_TABLE_DROP:
	case EMBKV_WIRE_OP_TABLE_OPEN:
		return SIZED(embkv_wire_name_size("user_emb", &len),
			     embkv_wire_name_encode("user_emb", b, len));
	case R(EMBKV_WIRE_OP_TABLE_DROP):
	case EMBKV_WIRE_OP_TABLE_LIST:
	case R(EMBKV_WIRE_OP_TABLE_SET_OPT):
		return 0;
	case R(EMBKV_WIRE_OP_TABLE_LIST):
		return SIZED(embkv_wire_table_list_size(ents, 2, &len),
			     embkv_wire_table_list_encode(ents, 2, b, len));
	case R(EMBKV_WIRE_OP_TABLE_OPEN):
		return SIZED(embkv_wire_table_info_size(&info, &len),
			     embkv_wire_table_info_encode(&info, b, len));
	case R(EMBKV_WIRE_OP_TABLE_REGIONS):
		return SIZED(embkv_wire_table_regions_size(&rg, &len),
			     embkv_wire_table_regions_encode(&rg, b, len));
	case EMBKV_WIRE_OP_TABLE_SET_OPT:
		return FIXED(EMBKV_WIRE_SET_OPT_SIZE,
			     embkv_wire_set_opt_encode(&so, b, cap));
	case EMBKV_WIRE_OP_PULL:
		return SIZED(embkv_wire_pull_req_size(&pr, &len),
			     embkv_wire_pull_req_encode(&pr, b, len));
	case R(EMBKV_WIRE_OP_PULL):
		return SIZED(embkv_wire_pull_reply_size(NK, DIM, &len),
			     embkv_wire_pull_reply_encode(&prep, b, len));
	case EMBKV_WIRE_OP_PULL_LAND: {
		struct embkv_wire_land_req lr = { 0x7f0000400000ull, 0x77, 64,
						  pr };
		uint64_t *lk;

		if (embkv_wire_land_req_size(&lr, &len) || len > cap ||
		    embkv_wire_land_req_prepare(&lr, b, len, &lk))
			return -1;
		memcpy(lk, pr.keys, (size_t)pr.n * sizeof(*lk));
		return (long)len;
	}
	case R(EMBKV_WIRE_OP_PULL_LAND): {
		uint8_t *lst;

		if (embkv_wire_land_reply_size(NK, &len) || len > cap ||
		    embkv_wire_land_reply_prepare(NK, DIM, EMBKV_DTYPE_F32, b,
						  len, &lst))
			return -1;
		for (uint32_t i = 0; i < NK; i++)
			lst[i] = (uint8_t)(i % EMBKV_WIRE_LAND_STATE_COUNT);
		return (long)len;
	}
	case EMBKV_WIRE_OP_PUSH:
	case EMBKV_WIRE_OP_ASSIGN:
	case EMBKV_WIRE_OP_ACCUMULATE:
		return SIZED(embkv_wire_rows_req_size(&rr, &len),
			     embkv_wire_rows_req_encode(&rr, b, len));
	case R(EMBKV_WIRE_OP_PUSH):
	case R(EMBKV_WIRE_OP_ASSIGN):
	case R(EMBKV_WIRE_OP_ACCUMULATE):
	case R(EMBKV_WIRE_OP_ERASE):
	case R(EMBKV_WIRE_OP_HITS):
		return FIXED(EMBKV_WIRE_COUNT_REPLY_SIZE,
			     embkv_wire_count_reply_encode(&cr, b, cap));
	case EMBKV_WIRE_OP_ERASE:
		return SIZED(embkv_wire_erase_req_size(&er, &len),
			     embkv_wire_erase_req_encode(&er, b, len));
	case EMBKV_WIRE_OP_HITS:
		return SIZED(embkv_wire_hits_size(&hr, &len),
			     embkv_wire_hits_encode(&hr, b, len));
	case EMBKV_WIRE_OP_SCAN:
		return FIXED(EMBKV_WIRE_SCAN_REQ_SIZE,
			     embkv_wire_scan_req_encode(&sq, b, cap));
	case R(EMBKV_WIRE_OP_SCAN):
		return SIZED(embkv_wire_scan_reply_size(NK, DIM,
							EMBKV_DTYPE_F32, &len),
			     embkv_wire_scan_reply_encode(&srep, b, len));
	case R(EMBKV_WIRE_OP_STATS):
		return SIZED(embkv_wire_stats_size(g, 3, &len),
			     embkv_wire_stats_encode(g, 3, b, len));
	case R(EMBKV_WIRE_OP_SHARD_MAP):
		return SIZED(embkv_wire_shard_map_size(&sm, &len),
			     embkv_wire_shard_map_encode(&sm, b, len));
	case EMBKV_WIRE_OP_MULTI_PULL:
		return multi_for(op, EMBKV_WIRE_OP_PULL, b, cap);
	case R(EMBKV_WIRE_OP_MULTI_PULL):
		return multi_for(op, R(EMBKV_WIRE_OP_PULL), b, cap);
	case EMBKV_WIRE_OP_MULTI_PUSH:
		return multi_for(op, EMBKV_WIRE_OP_PUSH, b, cap);
	case R(EMBKV_WIRE_OP_MULTI_PUSH):
		return multi_for(op, R(EMBKV_WIRE_OP_PUSH), b, cap);
	default:
		return -1;
	}
#undef SIZED
#undef FIXED
}

static int put(const char *dir, const char *kind, unsigned int op,
	       const uint8_t *pre, size_t pre_len, const uint8_t *b,
	       size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s-%02x", dir, kind, op);
	f = fopen(path, "wb");
	if (!f || fwrite(pre, 1, pre_len, f) != pre_len ||
	    (len && fwrite(b, 1, len, f) != len) || fclose(f)) {
		perror(path);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static uint64_t body64[4096 / 8];
	uint8_t *b = (uint8_t *)body64, hdr[EMBKV_WIRE_HDR_SIZE];
	unsigned int op, idx = 0, n = 0;
	long len;

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz_wire_seeds DIR\n");
		return 2;
	}
	for (unsigned int i = 0; i < NK * DIM; i++)
		vals[i] = (float)i * 0.25f - 1.0f;
	for (op = 0; op < 256; op++) {
		struct embkv_wire_hdr h = { 0 };
		uint8_t pick;

		if (!embkv_wire_op_known(op))
			continue;
		pick = (uint8_t)idx++;
		len = body_for(op, b, sizeof(body64));
		if (len < 0 || embkv_wire_body_validate(op, b, (size_t)len)) {
			fprintf(stderr, "fuzz_wire_seeds: no valid body for "
				"%s (0x%02x)\n", embkv_wire_op_name(op), op);
			return 1;
		}
		h.opcode = (uint8_t)op;
		h.request_id = op;
		h.epoch = 1;
		h.body_len = (uint32_t)len;
		if (embkv_wire_hdr_encode(&h, hdr) != EMBKV_WIRE_HDR_SIZE)
			return 1;
		if (put(argv[1], "body", op, &pick, 1, b, (size_t)len) ||
		    put(argv[1], "frame", op, hdr, sizeof(hdr), b,
			(size_t)len))
			return 1;
		n++;
	}
	printf("fuzz_wire_seeds: %u opcodes, %u seeds in %s\n", n, 2 * n,
	       argv[1]);
	return 0;
}
