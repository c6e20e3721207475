/*
 * Wire codec: the frame header and every message body of net/PROTOCOL.md.
 *
 * Design:
 * - No I/O and no allocation (except struct embkv_buf): transports read a
 *   header, decode it, read body_len bytes and hand the body to the decoder
 *   of its opcode.
 * - Scalars go through explicit little-endian load/store helpers at named
 *   offsets; no network buffer is ever cast to a struct. Arrays (keys,
 *   floats, partition map) are laid out at 8-byte aligned offsets so a
 *   decoder returns pointers into the body instead of copying; that is only
 *   correct on a little-endian host, which a static assertion enforces.
 * - Decoders validate everything before returning 0: each count against
 *   its limit first, then the body length against exactly what the counts
 *   imply (computed in 64 bits, where nothing can overflow once counts are
 *   bounded), then the contents (string bytes, found flags, map indexes).
 *   The results are written to *out only on success.
 * - Variable-length sections (table list, stats, server addresses) are
 *   validated in full by the decoder and then walked with a cursor, so
 *   _next() never meets a malformed item.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "net/wire.h"
#include "net/wire_priv.h"

/*
 * This file: the frame header, the byte buffer, the fixed-size bodies,
 * ERROR, the opcode table and body validation. Tables and maps are in
 * wire_tables.c, row batches in wire_rows.c, connection setup and
 * authentication in wire_conn.c.
 */

uint32_t embkv_wire_max_rows(uint32_t dim)
{
	const size_t max = EMBKV_WIRE_MAX_BODY;
	uint32_t push = embkv_wire_rows_req_max_rows(max, dim);
	uint32_t pull = embkv_wire_pull_reply_max_rows(max, dim);

	/* a PUSH row (key + dim floats) is at least as big as a PULL reply
	 * row (found byte + padding share + dim floats): push, in effect */
	return push < pull ? push : pull;
}

/* Header -------------------------------------------------------------------- */

size_t embkv_wire_hdr_encode(const struct embkv_wire_hdr *h, uint8_t *buf)
{
	if (!h || !buf || !embkv_wire_op_known(h->opcode) ||
	    (h->flags & ~EMBKV_WIRE_FLAGS_KNOWN) ||
	    h->body_len > EMBKV_WIRE_MAX_BODY)
		return 0;
	put_u32(buf + EMBKV_WIRE_HDR_MAGIC, EMBKV_WIRE_MAGIC);
	put_u16(buf + EMBKV_WIRE_HDR_VERSION, EMBKV_WIRE_VERSION);
	buf[EMBKV_WIRE_HDR_OPCODE] = h->opcode;
	buf[EMBKV_WIRE_HDR_FLAGS] = h->flags;
	put_u64(buf + EMBKV_WIRE_HDR_REQ_ID, h->request_id);
	put_u64(buf + EMBKV_WIRE_HDR_EPOCH, h->epoch);
	put_u32(buf + EMBKV_WIRE_HDR_BODY_LEN, h->body_len);
	put_u32(buf + EMBKV_WIRE_HDR_RESERVED, 0);
	return EMBKV_WIRE_HDR_SIZE;
}

void embkv_wire_hdr_set_request_id(uint8_t *frame, uint64_t id)
{
	put_u64(frame + EMBKV_WIRE_HDR_REQ_ID, id);
}

int embkv_wire_hdr_decode(const uint8_t *buf, size_t len,
			  struct embkv_wire_hdr *out)
{
	if (!out || (!buf && len))
		return -EINVAL;
	if (len < EMBKV_WIRE_HDR_SIZE)
		return EMBKV_EPROTO;
	out->version = get_u16(buf + EMBKV_WIRE_HDR_VERSION);
	out->opcode = buf[EMBKV_WIRE_HDR_OPCODE];
	out->flags = buf[EMBKV_WIRE_HDR_FLAGS];
	out->request_id = get_u64(buf + EMBKV_WIRE_HDR_REQ_ID);
	out->epoch = get_u64(buf + EMBKV_WIRE_HDR_EPOCH);
	out->body_len = get_u32(buf + EMBKV_WIRE_HDR_BODY_LEN);

	if (get_u32(buf + EMBKV_WIRE_HDR_MAGIC) != EMBKV_WIRE_MAGIC)
		return EMBKV_EPROTO;
	if (out->version != EMBKV_WIRE_VERSION)
		return EMBKV_EVERSION;
	if (!embkv_wire_op_known(out->opcode))
		return EMBKV_EOPCODE;
	if ((out->flags & ~EMBKV_WIRE_FLAGS_KNOWN) ||
	    get_u32(buf + EMBKV_WIRE_HDR_RESERVED))
		return EMBKV_EPROTO;
	if (out->body_len > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	return 0;
}

int embkv_wire_frame_decode(const uint8_t *buf, size_t len,
			    struct embkv_wire_hdr *out, const uint8_t **body)
{
	int rc;

	if (!body)
		return -EINVAL;
	rc = embkv_wire_hdr_decode(buf, len, out);
	if (rc)
		return rc;
	if (len - EMBKV_WIRE_HDR_SIZE != out->body_len)
		return EMBKV_EPROTO;
	*body = buf + EMBKV_WIRE_HDR_SIZE;
	return 0;
}

/* Byte buffer ---------------------------------------------------------------- */

void embkv_buf_init(struct embkv_buf *b)
{
	if (b)
		memset(b, 0, sizeof(*b));
}

int embkv_buf_reserve(struct embkv_buf *b, size_t extra)
{
	size_t need, cap;
	uint8_t *data;

	if (!b)
		return -EINVAL;
	if (extra > SIZE_MAX - b->len)
		return -EOVERFLOW;
	need = b->len + extra;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	data = realloc(b->data, cap);
	if (!data)
		return -ENOMEM;
	b->data = data;
	b->cap = cap;
	return 0;
}

int embkv_buf_extend(struct embkv_buf *b, size_t n, uint8_t **out)
{
	int rc;

	if (!out)
		return -EINVAL;
	rc = embkv_buf_reserve(b, n);
	if (rc)
		return rc;
	*out = b->data + b->len;
	b->len += n;
	return 0;
}

void embkv_buf_reset(struct embkv_buf *b)
{
	if (b)
		b->len = 0;
}

void embkv_buf_destroy(struct embkv_buf *b)
{
	if (!b)
		return;
	free(b->data);
	embkv_buf_init(b);
}

int embkv_wire_frame_start(struct embkv_buf *b, const struct embkv_wire_hdr *h,
			   uint8_t **body)
{
	uint8_t hdr[EMBKV_WIRE_HDR_SIZE];
	uint8_t *p;
	int rc;

	if (!b || !body || !embkv_wire_hdr_encode(h, hdr))
		return -EINVAL;
	rc = embkv_buf_extend(b, EMBKV_WIRE_HDR_SIZE + (size_t)h->body_len, &p);
	if (rc)
		return rc;
	memcpy(p, hdr, sizeof(hdr));
	*body = p + EMBKV_WIRE_HDR_SIZE;
	return 0;
}

/* Fixed-size bodies ------------------------------------------------------------ */

int embkv_wire_hello_encode(const struct embkv_wire_hello *m, uint8_t *body,
			    size_t cap)
{
	int rc = m ? enc_room(body, cap, EMBKV_WIRE_HELLO_SIZE) : -EINVAL;

	if (rc)
		return rc;
	memcpy(body, m->nonce, EMBKV_WIRE_HELLO_SIZE);
	return 0;
}

int embkv_wire_hello_decode(const uint8_t *body, size_t len,
			    struct embkv_wire_hello *out)
{
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len != EMBKV_WIRE_HELLO_SIZE)
		return EMBKV_EPROTO;
	memcpy(out->nonce, body, EMBKV_WIRE_HELLO_SIZE);
	return 0;
}

int embkv_wire_auth_encode(const struct embkv_wire_auth *m, uint8_t *body,
			   size_t cap)
{
	int rc = m ? enc_room(body, cap, EMBKV_WIRE_AUTH_SIZE) : -EINVAL;

	if (rc)
		return rc;
	memcpy(body, m->mac, EMBKV_WIRE_AUTH_SIZE);
	return 0;
}

int embkv_wire_auth_decode(const uint8_t *body, size_t len,
			   struct embkv_wire_auth *out)
{
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len != EMBKV_WIRE_AUTH_SIZE)
		return EMBKV_EPROTO;
	memcpy(out->mac, body, EMBKV_WIRE_AUTH_SIZE);
	return 0;
}

int embkv_wire_empty_decode(const uint8_t *body, size_t len)
{
	if ((uintptr_t)body % BODY_ALIGN)
		return -EINVAL;
	return len ? EMBKV_EPROTO : 0;
}

/* A uid names one table exactly when the id does: 0 goes with
 * EMBKV_WIRE_TABLE_ALL only. */
static bool table_ref_ok(uint32_t table_id, uint64_t uid)
{
	return (table_id == EMBKV_WIRE_TABLE_ALL) == (uid == 0);
}

int embkv_wire_table_ref_encode(const struct embkv_wire_table_ref *m,
				uint8_t *body, size_t cap)
{
	int rc;

	if (!m || !table_ref_ok(m->table_id, m->uid))
		return -EINVAL;
	rc = enc_room(body, cap, EMBKV_WIRE_TABLE_REF_SIZE);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_TABLE_REF_ID, m->table_id);
	put_u32(body + EMBKV_WIRE_TABLE_REF_RESERVED, 0);
	put_u64(body + EMBKV_WIRE_TABLE_REF_UID, m->uid);
	return 0;
}

int embkv_wire_table_ref_decode(const uint8_t *body, size_t len,
				struct embkv_wire_table_ref *out)
{
	uint32_t id;
	uint64_t uid;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len != EMBKV_WIRE_TABLE_REF_SIZE ||
	    get_u32(body + EMBKV_WIRE_TABLE_REF_RESERVED))
		return EMBKV_EPROTO;
	id = get_u32(body + EMBKV_WIRE_TABLE_REF_ID);
	uid = get_u64(body + EMBKV_WIRE_TABLE_REF_UID);
	if (!table_ref_ok(id, uid))
		return EMBKV_EPROTO;
	out->table_id = id;
	out->uid = uid;
	return 0;
}

int embkv_wire_count_reply_encode(const struct embkv_wire_count_reply *m,
				  uint8_t *body, size_t cap)
{
	int rc = m ? enc_room(body, cap, EMBKV_WIRE_COUNT_REPLY_SIZE) : -EINVAL;

	if (rc)
		return rc;
	put_u32(body, m->done);
	put_u32(body + U32_SIZE, m->skipped);
	return 0;
}

int embkv_wire_count_reply_decode(const uint8_t *body, size_t len,
				  struct embkv_wire_count_reply *out)
{
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len != EMBKV_WIRE_COUNT_REPLY_SIZE)
		return EMBKV_EPROTO;
	out->done = get_u32(body);
	out->skipped = get_u32(body + U32_SIZE);
	return 0;
}

/* ERROR -------------------------------------------------------------------------- */

int embkv_wire_error_size(const struct embkv_wire_error *m, size_t *len)
{
	if (!m || !len || m->status >= 0 || (m->msg.len && !m->msg.ptr))
		return -EINVAL;
	if (m->msg.len > EMBKV_WIRE_ERRMSG_MAX)
		return EMBKV_ELIMIT;
	if (m->msg.len && memchr(m->msg.ptr, '\0', m->msg.len))
		return -EINVAL;
	*len = ERROR_MSG + STR_LEN_SIZE + m->msg.len;
	return 0;
}

int embkv_wire_error_encode(const struct embkv_wire_error *m, uint8_t *body,
			    size_t cap)
{
	size_t len;
	int rc = embkv_wire_error_size(m, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body + ERROR_STATUS, (uint32_t)m->status);
	put_u16(body + ERROR_MSG, (uint16_t)m->msg.len);
	if (m->msg.len)
		memcpy(body + ERROR_MSG + STR_LEN_SIZE, m->msg.ptr, m->msg.len);
	return 0;
}

int embkv_wire_error_decode(const uint8_t *body, size_t len,
			    struct embkv_wire_error *out)
{
	struct embkv_wire_str msg;
	int32_t status;
	struct rd r;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < ERROR_MSG)
		return EMBKV_EPROTO;
	r.p = body + ERROR_MSG;
	r.end = body + len;
	status = (int32_t)get_u32(body + ERROR_STATUS);
	if (status >= 0)
		return EMBKV_EPROTO;
	rc = rd_str(&r, 0, EMBKV_WIRE_ERRMSG_MAX, &msg);
	if (rc)
		return rc;
	if (r.p != r.end)
		return EMBKV_EPROTO;
	out->status = status;
	out->msg = msg;
	return 0;
}

/* Opcodes ------------------------------------------------------------------------ */

static int v_hello(const uint8_t *b, size_t l)
{
	struct embkv_wire_hello m;

	return embkv_wire_hello_decode(b, l, &m);
}

static int v_auth(const uint8_t *b, size_t l)
{
	struct embkv_wire_auth m;

	return embkv_wire_auth_decode(b, l, &m);
}

static int v_attr(const uint8_t *b, size_t l)
{
	struct embkv_table_attr m;

	return embkv_wire_table_attr_decode(b, l, &m);
}

static int v_table_ref(const uint8_t *b, size_t l)
{
	struct embkv_wire_table_ref m;

	return embkv_wire_table_ref_decode(b, l, &m);
}

static int v_set_opt(const uint8_t *b, size_t l)
{
	struct embkv_wire_set_opt m;

	return embkv_wire_set_opt_decode(b, l, &m);
}

static int v_name(const uint8_t *b, size_t l)
{
	char name[EMBKV_TABLE_NAME_MAX];

	return embkv_wire_name_decode(b, l, name);
}

static int v_table_info(const uint8_t *b, size_t l)
{
	struct embkv_wire_table_info m;

	return embkv_wire_table_info_decode(b, l, &m);
}

static int v_table_list(const uint8_t *b, size_t l)
{
	struct embkv_wire_table_list m;

	return embkv_wire_table_list_decode(b, l, &m);
}

static int v_pull_req(const uint8_t *b, size_t l)
{
	struct embkv_wire_pull_req m;

	return embkv_wire_pull_req_decode(b, l, &m);
}

static int v_pull_reply(const uint8_t *b, size_t l)
{
	struct embkv_wire_pull_reply m;

	return embkv_wire_pull_reply_decode(b, l, &m);
}

static int v_rows_req(const uint8_t *b, size_t l)
{
	struct embkv_wire_rows_req m;

	return embkv_wire_rows_req_decode(b, l, &m);
}

static int v_erase_req(const uint8_t *b, size_t l)
{
	struct embkv_wire_erase_req m;

	return embkv_wire_erase_req_decode(b, l, &m);
}

static int v_hits(const uint8_t *b, size_t l)
{
	struct embkv_wire_hits m;

	return embkv_wire_hits_decode(b, l, &m);
}

static int v_scan_req(const uint8_t *b, size_t l)
{
	struct embkv_wire_scan_req m;

	return embkv_wire_scan_req_decode(b, l, &m);
}

static int v_scan_reply(const uint8_t *b, size_t l)
{
	struct embkv_wire_scan_reply m;

	return embkv_wire_scan_reply_decode(b, l, &m);
}

static int v_table_regions(const uint8_t *b, size_t l)
{
	struct embkv_wire_table_regions m;

	return embkv_wire_table_regions_decode(b, l, &m);
}

static int v_count(const uint8_t *b, size_t l)
{
	struct embkv_wire_count_reply m;

	return embkv_wire_count_reply_decode(b, l, &m);
}

void embkv_hex_encode(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int embkv_hex_decode(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s);

	if (n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (int)(n / 2);
}

int embkv_wire_json_check(const uint8_t *b, size_t l)
{
	json_t *j;
	bool ok;

	if (l > EMBKV_WIRE_MAX_JSON)
		return EMBKV_ELIMIT;
	if (l < 2 || b[0] != '{' || memchr(b, 0, l))
		return EMBKV_EPROTO;
	/* one whole object, nothing after it (a prefix never parses) */
	j = json_loadb((const char *)b, l, JSON_REJECT_DUPLICATES, NULL);
	ok = json_is_object(j);
	json_decref(j);
	return ok ? 0 : EMBKV_EPROTO;
}

int embkv_wire_blob_check(const uint8_t *b, size_t l)
{
	json_t *j, *n;
	uint32_t jl;
	bool ok;
	int rc;

	if (l > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	if (l < 4)
		return EMBKV_EPROTO;
	jl = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	     (uint32_t)b[3] << 24;
	if (jl > l - 4)
		return EMBKV_EPROTO;
	rc = embkv_wire_json_check(b + 4, jl);
	if (rc)
		return rc;
	/* "n" says how many raw bytes follow: a cut or padded blob fails */
	j = json_loadb((const char *)b + 4, jl, 0, NULL);
	n = json_object_get(j, "n");
	ok = json_is_integer(n) && json_integer_value(n) >= 0 &&
	     (uint64_t)json_integer_value(n) == l - 4 - jl;
	json_decref(j);
	return ok ? 0 : EMBKV_EPROTO;
}

void embkv_wire_blob_split(const uint8_t *b, size_t l, const uint8_t **json,
			   size_t *json_len, const uint8_t **raw,
			   size_t *raw_len)
{
	uint32_t n = (uint32_t)b[0] | (uint32_t)b[1] << 8 |
		     (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;

	*json = b + 4;
	*json_len = n;
	*raw = b + 4 + n;
	*raw_len = l - 4 - n;
}

static int v_stats(const uint8_t *b, size_t l)
{
	struct embkv_wire_stats m;

	return embkv_wire_stats_decode(b, l, &m);
}

static int v_shard_map(const uint8_t *b, size_t l)
{
	struct embkv_wire_shard_map m;

	return embkv_wire_shard_map_decode(b, l, &m);
}

static int v_multi_pull(const uint8_t *b, size_t l)
{
	struct embkv_wire_multi m;

	return embkv_wire_multi_decode(EMBKV_WIRE_OP_MULTI_PULL, b, l, &m);
}

static int v_multi_pull_reply(const uint8_t *b, size_t l)
{
	struct embkv_wire_multi m;

	return embkv_wire_multi_decode(EMBKV_WIRE_OP_MULTI_PULL |
				       EMBKV_WIRE_OP_REPLY, b, l, &m);
}

static int v_multi_push(const uint8_t *b, size_t l)
{
	struct embkv_wire_multi m;

	return embkv_wire_multi_decode(EMBKV_WIRE_OP_MULTI_PUSH, b, l, &m);
}

static int v_multi_push_reply(const uint8_t *b, size_t l)
{
	struct embkv_wire_multi m;

	return embkv_wire_multi_decode(EMBKV_WIRE_OP_MULTI_PUSH |
				       EMBKV_WIRE_OP_REPLY, b, l, &m);
}

static int v_land_req(const uint8_t *b, size_t l)
{
	struct embkv_wire_land_req m;

	return embkv_wire_land_req_decode(b, l, &m);
}

static int v_land_reply(const uint8_t *b, size_t l)
{
	struct embkv_wire_land_reply m;

	return embkv_wire_land_reply_decode(b, l, &m);
}

static int v_error(const uint8_t *b, size_t l)
{
	struct embkv_wire_error m;

	return embkv_wire_error_decode(b, l, &m);
}

struct op_info {
	unsigned int op;
	const char *name;
	const char *reply_name;
	bool checks_epoch;
	int (*req)(const uint8_t *body, size_t len);
	int (*reply)(const uint8_t *body, size_t len);
};

static const struct op_info ops[] = {
	{ EMBKV_WIRE_OP_HELLO, "HELLO", "HELLO_REPLY", false,
	  v_hello, v_hello },
	{ EMBKV_WIRE_OP_AUTH, "AUTH", "AUTH_REPLY", false, v_auth, v_auth },
	{ EMBKV_WIRE_OP_TABLE_CREATE, "TABLE_CREATE", "TABLE_CREATE_REPLY",
	  false, v_attr, v_table_ref },
	{ EMBKV_WIRE_OP_TABLE_DROP, "TABLE_DROP", "TABLE_DROP_REPLY", false,
	  v_name, embkv_wire_empty_decode },
	{ EMBKV_WIRE_OP_TABLE_LIST, "TABLE_LIST", "TABLE_LIST_REPLY", false,
	  embkv_wire_empty_decode, v_table_list },
	{ EMBKV_WIRE_OP_TABLE_OPEN, "TABLE_OPEN", "TABLE_OPEN_REPLY", false,
	  v_name, v_table_info },
	{ EMBKV_WIRE_OP_TABLE_REGIONS, "TABLE_REGIONS", "TABLE_REGIONS_REPLY",
	  false, v_table_ref, v_table_regions },
	{ EMBKV_WIRE_OP_TABLE_SET_OPT, "TABLE_SET_OPT", "TABLE_SET_OPT_REPLY",
	  false, v_set_opt, embkv_wire_empty_decode },
	{ EMBKV_WIRE_OP_PULL, "PULL", "PULL_REPLY", true,
	  v_pull_req, v_pull_reply },
	{ EMBKV_WIRE_OP_PUSH, "PUSH", "PUSH_REPLY", true, v_rows_req, v_count },
	{ EMBKV_WIRE_OP_ASSIGN, "ASSIGN", "ASSIGN_REPLY", true,
	  v_rows_req, v_count },
	{ EMBKV_WIRE_OP_ACCUMULATE, "ACCUMULATE", "ACCUMULATE_REPLY", true,
	  v_rows_req, v_count },
	{ EMBKV_WIRE_OP_ERASE, "ERASE", "ERASE_REPLY", true,
	  v_erase_req, v_count },
	{ EMBKV_WIRE_OP_HITS, "HITS", "HITS_REPLY", false, v_hits, v_count },
	{ EMBKV_WIRE_OP_SCAN, "SCAN", "SCAN_REPLY", true,
	  v_scan_req, v_scan_reply },
	/* sections carry their own epochs, checked per section (5.25) */
	{ EMBKV_WIRE_OP_MULTI_PULL, "MULTI_PULL", "MULTI_PULL_REPLY", false,
	  v_multi_pull, v_multi_pull_reply },
	{ EMBKV_WIRE_OP_MULTI_PUSH, "MULTI_PUSH", "MULTI_PUSH_REPLY", false,
	  v_multi_push, v_multi_push_reply },
	{ EMBKV_WIRE_OP_PULL_LAND, "PULL_LAND", "PULL_LAND_REPLY", true,
	  v_land_req, v_land_reply },
	{ EMBKV_WIRE_OP_STATS, "STATS", "STATS_REPLY", false,
	  v_table_ref, v_stats },
	{ EMBKV_WIRE_OP_SHARD_MAP, "SHARD_MAP", "SHARD_MAP_REPLY", false,
	  v_table_ref, v_shard_map },
	{ EMBKV_WIRE_OP_CONFIG, "CONFIG", "CONFIG_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_CKPT_PART, "CKPT_PART", "CKPT_PART_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_CKPT_COMMIT, "CKPT_COMMIT", "CKPT_COMMIT_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_CKPT_LOAD, "CKPT_LOAD", "CKPT_LOAD_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_CKPT_LIST, "CKPT_LIST", "CKPT_LIST_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_CKPT_GET, "CKPT_GET", "CKPT_GET_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_CKPT_VERIFY, "CKPT_VERIFY", "CKPT_VERIFY_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_CKPT_DELETE, "CKPT_DELETE", "CKPT_DELETE_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_MOVE_PREPARE, "MOVE_PREPARE", "MOVE_PREPARE_REPLY",
	  false, embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_MOVE_SNAP, "MOVE_SNAP", "MOVE_SNAP_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_MOVE_READ, "MOVE_READ", "MOVE_READ_REPLY", false,
	  embkv_wire_json_check, embkv_wire_blob_check },
	{ EMBKV_WIRE_OP_MOVE_WRITE, "MOVE_WRITE", "MOVE_WRITE_REPLY", false,
	  embkv_wire_blob_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_MOVE_APPLY, "MOVE_APPLY", "MOVE_APPLY_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_MOVE_FREEZE, "MOVE_FREEZE", "MOVE_FREEZE_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_MOVE_COMMIT, "MOVE_COMMIT", "MOVE_COMMIT_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_MOVE_ABORT, "MOVE_ABORT", "MOVE_ABORT_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_RECOVER, "RECOVER", "RECOVER_REPLY", false,
	  embkv_wire_json_check, embkv_wire_json_check },
	{ EMBKV_WIRE_OP_REPL_SNAP, "REPL_SNAP", "REPL_SNAP_REPLY", false,
	  embkv_wire_json_check, embkv_wire_blob_check },
	{ EMBKV_WIRE_OP_REPL_PULL, "REPL_PULL", "REPL_PULL_REPLY", false,
	  embkv_wire_json_check, embkv_wire_blob_check },
};

#define N_OPS (sizeof(ops) / sizeof(ops[0]))

/* The request entry for op or for its reply; NULL when there is none. */
static const struct op_info *op_find(unsigned int op)
{
	unsigned int req = op & ~(unsigned int)EMBKV_WIRE_OP_REPLY;
	size_t i;

	if (op == EMBKV_WIRE_OP_ERROR)
		return NULL;
	for (i = 0; i < N_OPS; i++)
		if (ops[i].op == req)
			return &ops[i];
	return NULL;
}

bool embkv_wire_op_known(unsigned int op)
{
	return op == EMBKV_WIRE_OP_ERROR || op_find(op) != NULL;
}

bool embkv_wire_op_is_reply(unsigned int op)
{
	return embkv_wire_op_known(op) && (op & EMBKV_WIRE_OP_REPLY);
}

bool embkv_wire_op_checks_epoch(unsigned int op)
{
	const struct op_info *oi = op_find(op);

	return oi && !(op & EMBKV_WIRE_OP_REPLY) && oi->checks_epoch;
}

int embkv_wire_epoch_check(const struct embkv_wire_hdr *h,
			   uint64_t server_epoch)
{
	if (!h)
		return -EINVAL;
	if (embkv_wire_op_checks_epoch(h->opcode) && h->epoch != server_epoch)
		return EMBKV_ESTALE;
	return 0;
}

const char *embkv_wire_op_name(unsigned int op)
{
	const struct op_info *oi = op_find(op);

	if (op == EMBKV_WIRE_OP_ERROR)
		return "ERROR";
	if (!oi)
		return "UNKNOWN";
	return op & EMBKV_WIRE_OP_REPLY ? oi->reply_name : oi->name;
}

int embkv_wire_body_validate(unsigned int op, const uint8_t *body, size_t len)
{
	const struct op_info *oi = op_find(op);

	if (op == EMBKV_WIRE_OP_ERROR)
		return v_error(body, len);
	if (!oi)
		return EMBKV_EOPCODE;
	return op & EMBKV_WIRE_OP_REPLY ? oi->reply(body, len)
					: oi->req(body, len);
}
