/*
 * libFuzzer target for the wire codec (net/wire*.c).
 *
 * What: the input's first byte picks an opcode among the known ones
 * (embkv_wire_op_known: requests, replies and ERROR, in numeric order,
 * byte modulo their count); the rest is a body, copied to an exact-size
 * heap buffer (8-byte aligned, so ASan sees any over-read) and given to
 * embkv_wire_body_validate. The bodies that have decoders of their own
 * (TABLE_CREATE's attr, TABLE_OPEN's info, TABLE_LIST, TABLE_REGIONS,
 * STATS and SHARD_MAP replies) are decoded with them too, and what they
 * return is checked: the same verdict as body_validate; cursors that
 * yield exactly the counts the decoder announced, and nothing outside
 * the body; an attr that re-encodes to bytes that decode and re-encode
 * to themselves. The whole input also goes through
 * embkv_wire_frame_decode, and a frame that decodes has its body
 * validated for its header's opcode.
 * Why: every byte a server or client decodes comes from a peer, before
 * or after authentication; the decoders must refuse anything malformed,
 * never read outside the body, crash or leak.
 * Invariants: those above (a violation aborts). Crashes, leaks and
 * undefined behaviour are the sanitizers' (-fsanitize=fuzzer,address,
 * undefined). Seeds: fuzz_wire_seeds (valid bodies and frames).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned int known[256];
static unsigned int n_known;

#define CHECK(c) do { \
		if (!(c)) { \
			fprintf(stderr, "fuzz_wire: %s:%d: %s\n", __FILE__, \
				__LINE__, #c); \
			abort(); \
		} \
	} while (0)

static void init_ops(void)
{
	for (unsigned int op = 0; op < 256; op++)
		if (embkv_wire_op_known(op))
			known[n_known++] = op;
	CHECK(n_known > 0);
}

static bool inside(const void *p, size_t n, const uint8_t *b, size_t len)
{
	const uint8_t *q = p;

	return q >= b && n <= len && (size_t)(q - b) <= len - n;
}

static void check_attr(const uint8_t *b, size_t len, int verdict)
{
	struct embkv_table_attr a, a2;
	uint8_t *y, *z;
	size_t ylen, zlen;
	int rc = embkv_wire_table_attr_decode(b, len, &a);

	CHECK(rc == verdict);
	if (rc || embkv_wire_table_attr_size(&a, &ylen))
		return;
	y = malloc(ylen ? ylen : 1);
	CHECK(y);
	if (!embkv_wire_table_attr_encode(&a, y, ylen)) {
		CHECK(!embkv_wire_table_attr_decode(y, ylen, &a2));
		CHECK(!embkv_wire_table_attr_size(&a2, &zlen));
		CHECK(zlen == ylen);
		z = malloc(zlen);
		CHECK(z);
		CHECK(!embkv_wire_table_attr_encode(&a2, z, zlen));
		CHECK(!memcmp(y, z, zlen));
		free(z);
	}
	free(y);
}

static void check_info(const uint8_t *b, size_t len, int verdict)
{
	struct embkv_wire_table_info m;

	CHECK(embkv_wire_table_info_decode(b, len, &m) == verdict);
	if (!verdict)
		CHECK(m.uid != 0);
}

static void check_list(const uint8_t *b, size_t len, int verdict)
{
	struct embkv_wire_table_list l;
	struct embkv_wire_table_entry e;
	uint32_t n = 0;

	CHECK(embkv_wire_table_list_decode(b, len, &l) == verdict);
	if (verdict)
		return;
	while (embkv_wire_table_list_next(&l, &e)) {
		CHECK(memchr(e.name, 0, sizeof(e.name)));
		n++;
	}
	CHECK(n == l.count);
}

static void check_regions(const uint8_t *b, size_t len, int verdict)
{
	struct embkv_wire_table_regions m;
	struct embkv_wire_region_part p;
	uint32_t n = 0;

	CHECK(embkv_wire_table_regions_decode(b, len, &m) == verdict);
	if (verdict)
		return;
	while (embkv_wire_table_regions_next(&m, &p))
		n++;
	CHECK(n == m.count);
}

static void check_stats(const uint8_t *b, size_t len, int verdict)
{
	struct embkv_wire_stats s;
	struct embkv_wire_stat st;
	uint32_t table_id;
	uint64_t n = 0;

	CHECK(embkv_wire_stats_decode(b, len, &s) == verdict);
	if (verdict)
		return;
	while (embkv_wire_stats_next(&s, &table_id, &st)) {
		CHECK(st.id != 0);
		(void)embkv_wire_stat_name(st.id);
		n++;
	}
	CHECK(n == s.n_stats);
}

static void check_map(const uint8_t *b, size_t len, int verdict)
{
	struct embkv_wire_shard_map m;
	struct embkv_wire_str addr;
	uint32_t i, n = 0;

	CHECK(embkv_wire_shard_map_decode(b, len, &m) == verdict);
	if (verdict)
		return;
	CHECK(m.n_servers && m.self < m.n_servers);
	CHECK(!m.n_partitions ||
	      inside(m.part_server, (size_t)m.n_partitions * 2, b, len));
	for (i = 0; i < m.n_partitions; i++)
		CHECK(m.part_server[i] < m.n_servers);
	while (embkv_wire_shard_map_next_server(&m, &addr)) {
		CHECK(addr.len >= 1 && addr.len <= EMBKV_WIRE_ADDR_MAX);
		CHECK(inside(addr.ptr, addr.len, b, len));
		n++;
	}
	CHECK(n == m.n_servers);
}

/* MULTI_PULL / MULTI_PUSH: count sections, each inside the body, its
 * body 8-byte aligned and passing its own decoder again. */
static void check_multi(unsigned int op, const uint8_t *b, size_t len,
			int verdict)
{
	struct embkv_wire_multi m;
	struct embkv_wire_multi_sec s;
	uint32_t n = 0;

	CHECK(embkv_wire_multi_decode(op, b, len, &m) == verdict);
	if (verdict)
		return;
	while (embkv_wire_multi_next(&m, &s)) {
		CHECK(!s.len || inside(s.body, s.len, b, len));
		CHECK((size_t)(s.body - b) % 8 == 0);
		CHECK(s.status <= 0);
		n++;
	}
	CHECK(n == m.count && n >= 1 && n <= EMBKV_WIRE_MAX_SECTIONS);
}

static void check_own(unsigned int op, const uint8_t *b, size_t len, int v)
{
	switch (op) {
	case EMBKV_WIRE_OP_MULTI_PULL:
	case EMBKV_WIRE_OP_MULTI_PULL | EMBKV_WIRE_OP_REPLY:
	case EMBKV_WIRE_OP_MULTI_PUSH:
	case EMBKV_WIRE_OP_MULTI_PUSH | EMBKV_WIRE_OP_REPLY:
		check_multi(op, b, len, v);
		break;
	case EMBKV_WIRE_OP_TABLE_CREATE:
		check_attr(b, len, v);
		break;
	case EMBKV_WIRE_OP_TABLE_OPEN | EMBKV_WIRE_OP_REPLY:
		check_info(b, len, v);
		break;
	case EMBKV_WIRE_OP_TABLE_LIST | EMBKV_WIRE_OP_REPLY:
		check_list(b, len, v);
		break;
	case EMBKV_WIRE_OP_TABLE_REGIONS | EMBKV_WIRE_OP_REPLY:
		check_regions(b, len, v);
		break;
	case EMBKV_WIRE_OP_STATS | EMBKV_WIRE_OP_REPLY:
		check_stats(b, len, v);
		break;
	case EMBKV_WIRE_OP_SHARD_MAP | EMBKV_WIRE_OP_REPLY:
		check_map(b, len, v);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct embkv_wire_hdr h;
	const uint8_t *body;
	uint8_t *buf;
	unsigned int op;
	size_t len;
	int v;

	if (!n_known)
		init_ops();
	if (!size)
		return 0;
	/* the body path: byte 0 picks the opcode */
	op = known[data[0] % n_known];
	len = size - 1;
	buf = malloc(len ? len : 1);
	CHECK(buf);
	memcpy(buf, data + 1, len);
	v = embkv_wire_body_validate(op, buf, len);
	CHECK(v <= 0);
	check_own(op, buf, len, v);
	(void)embkv_wire_op_name(op);
	free(buf);

	/* the frame path: the whole input */
	buf = malloc(size);
	CHECK(buf);
	memcpy(buf, data, size);
	if (!embkv_wire_frame_decode(buf, size, &h, &body)) {
		CHECK(embkv_wire_op_known(h.opcode));
		CHECK(body == buf + EMBKV_WIRE_HDR_SIZE);
		CHECK(h.body_len == size - EMBKV_WIRE_HDR_SIZE);
		v = embkv_wire_body_validate(h.opcode, body, h.body_len);
		check_own(h.opcode, body, h.body_len, v);
		(void)embkv_wire_epoch_check(&h, 1);
	}
	free(buf);
	return 0;
}
