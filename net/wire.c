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
#include <xxhash.h>

#include "net/wire.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "wire arrays are used in place: little-endian hosts only");
_Static_assert(sizeof(float) == sizeof(uint32_t), "f32 must be 4 bytes");

#define U16_SIZE sizeof(uint16_t)
#define U32_SIZE sizeof(uint32_t)
#define U64_SIZE sizeof(uint64_t)
#define F32_SIZE sizeof(float)
#define BODY_ALIGN _Alignof(uint64_t)

/* Fixed parts of the bodies, in bytes. */
#define STR_LEN_SIZE U16_SIZE                       /* u16 string length */
#define ATTR_FIXED_SIZE ((size_t)EMBKV_WIRE_ATTR_NAME)
#define TABLE_ENTRY_FIXED (2 * U32_SIZE)            /* id, dim */
#define LIST_COUNT_SIZE U32_SIZE
#define STATS_GROUP_FIXED (U32_SIZE + U16_SIZE)     /* table id, count */
#define STAT_PAIR_SIZE (U16_SIZE + U64_SIZE)        /* packed id, value */
#define PULL_REPLY_FIXED ((size_t)EMBKV_WIRE_PULL_REPLY_FOUND)
#define PULL_REQ_RESERVED_LEN \
	(EMBKV_WIRE_PULL_REQ_KEYS - EMBKV_WIRE_PULL_REQ_RESERVED)
#define ERROR_STATUS 0                             /* offset of i32 status */
#define ERROR_MSG (ERROR_STATUS + U32_SIZE)        /* offset of the message */

#define BUF_MIN_CAP 256u

/* Authentication constants. */
#define AUTH_LABEL_SIZE 8u
#define AUTH_MSG_SIZE \
	(AUTH_LABEL_SIZE + U16_SIZE + 2 * EMBKV_WIRE_NONCE_SIZE)
#define AUTH_KDF_SEED 0x656d626b762d6b64ull /* "embkv-kd" */
#define AUTH_BLOCK_SIZE sizeof(XXH128_canonical_t)

_Static_assert(EMBKV_WIRE_AUTH_SECRET_SIZE >= XXH3_SECRET_SIZE_MIN,
	       "XXH3 secret too short");
_Static_assert(EMBKV_WIRE_AUTH_SECRET_SIZE % sizeof(XXH128_canonical_t) == 0,
	       "secret must be whole XXH128 blocks");
_Static_assert(EMBKV_WIRE_MAC_SIZE == sizeof(XXH128_canonical_t),
	       "MAC is one XXH128");

static const uint8_t auth_label[][AUTH_LABEL_SIZE] = {
	[EMBKV_WIRE_AUTH_CLIENT] = { 'E', 'M', 'K', 'V', 'A', 'U', 'T', 'C' },
	[EMBKV_WIRE_AUTH_SERVER] = { 'E', 'M', 'K', 'V', 'A', 'U', 'T', 'S' },
};

/* Little-endian load/store ------------------------------------------------ */

static inline void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put_u32(uint8_t *p, uint32_t v)
{
	put_u16(p, (uint16_t)v);
	put_u16(p + U16_SIZE, (uint16_t)(v >> 16));
}

static inline void put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)v);
	put_u32(p + U32_SIZE, (uint32_t)(v >> 32));
}

static inline void put_f32(uint8_t *p, float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	put_u32(p, u);
}

static inline uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t get_u32(const uint8_t *p)
{
	return get_u16(p) | (uint32_t)get_u16(p + U16_SIZE) << 16;
}

static inline uint64_t get_u64(const uint8_t *p)
{
	return get_u32(p) | (uint64_t)get_u32(p + U32_SIZE) << 32;
}

static inline float get_f32(const uint8_t *p)
{
	uint32_t u = get_u32(p);
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Shared checks ------------------------------------------------------------ */

/* Bounded reader over a variable-length section. */
struct rd {
	const uint8_t *p;
	const uint8_t *end;
};

static inline bool rd_has(const struct rd *r, size_t n)
{
	return (size_t)(r->end - r->p) >= n;
}

/* A u16-prefixed string of min..max bytes without NUL. */
static int rd_str(struct rd *r, uint32_t min, uint32_t max,
		  struct embkv_wire_str *s)
{
	uint32_t len;

	if (!rd_has(r, STR_LEN_SIZE))
		return EMBKV_EPROTO;
	len = get_u16(r->p);
	if (len > max)
		return EMBKV_ELIMIT;
	if (len < min)
		return EMBKV_EPROTO;
	r->p += STR_LEN_SIZE;
	if (!rd_has(r, len) || memchr(r->p, '\0', len))
		return EMBKV_EPROTO;
	s->ptr = (const char *)r->p;
	s->len = len;
	r->p += len;
	return 0;
}

static int rd_name(struct rd *r, char name[EMBKV_TABLE_NAME_MAX])
{
	struct embkv_wire_str s;
	int rc = rd_str(r, 1, EMBKV_WIRE_NAME_LEN_MAX, &s);

	if (rc)
		return rc;
	memcpy(name, s.ptr, s.len);
	memset(name + s.len, 0, EMBKV_TABLE_NAME_MAX - s.len);
	return 0;
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t len)
{
	put_u16(p, (uint16_t)len);
	memcpy(p + STR_LEN_SIZE, s, len);
	return p + STR_LEN_SIZE + len;
}

/* Length of a C-string table name to encode: 1..EMBKV_WIRE_NAME_LEN_MAX. */
static int name_len(const char *name, size_t *len)
{
	if (!name)
		return -EINVAL;
	*len = strnlen(name, EMBKV_TABLE_NAME_MAX);
	if (*len == EMBKV_TABLE_NAME_MAX)
		return EMBKV_ELIMIT;
	return *len ? 0 : -EINVAL;
}

/* Arguments every decoder checks first. */
static int dec_args(const uint8_t *body, size_t len, const void *out)
{
	if (!out || (!body && len))
		return -EINVAL;
	if ((uintptr_t)body % BODY_ALIGN)
		return -EINVAL;
	if (len > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	return 0;
}

static int enc_room(const uint8_t *body, size_t cap, size_t need)
{
	if (!body && need)
		return -EINVAL;
	return cap < need ? -ENOSPC : 0;
}

/* dim as received (0 is malformed) or as given (0 is invalid). */
static int dim_check(uint32_t dim, int zero_code)
{
	if (!dim)
		return zero_code;
	return dim > EMBKV_MAX_DIM ? EMBKV_ELIMIT : 0;
}

static inline bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Body sizes, valid for counts within their limits (no overflow). */
static uint64_t pull_req_bytes(uint32_t n)
{
	return EMBKV_WIRE_PULL_REQ_KEYS + (uint64_t)n * U64_SIZE;
}

static uint64_t pull_reply_vals_off(uint32_t n)
{
	return align_up(PULL_REPLY_FIXED + (uint64_t)n, BODY_ALIGN);
}

static uint64_t pull_reply_bytes(uint32_t n, uint32_t dim)
{
	return pull_reply_vals_off(n) + (uint64_t)n * dim * F32_SIZE;
}

static uint64_t rows_vals_off(uint32_t n)
{
	return EMBKV_WIRE_ROWS_REQ_KEYS + (uint64_t)n * U64_SIZE;
}

static uint64_t rows_req_bytes(uint32_t n, uint32_t dim)
{
	return rows_vals_off(n) + (uint64_t)n * dim * F32_SIZE;
}

static uint64_t erase_req_bytes(uint32_t n)
{
	return EMBKV_WIRE_ERASE_REQ_KEYS + (uint64_t)n * U64_SIZE;
}

uint32_t embkv_wire_max_rows(uint32_t dim)
{
	uint64_t per_row, rows;

	if (dim_check(dim, -EINVAL))
		return 0;
	/* A PUSH row (key + dim floats) is at least as big as a PULL reply
	 * row (found byte + padding share + dim floats). */
	per_row = U64_SIZE + (uint64_t)dim * F32_SIZE;
	rows = (EMBKV_WIRE_MAX_BODY - EMBKV_WIRE_ROWS_REQ_KEYS) / per_row;
	return rows < EMBKV_WIRE_MAX_KEYS ? (uint32_t)rows : EMBKV_WIRE_MAX_KEYS;
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

int embkv_wire_table_id_encode(uint32_t table_id, uint8_t *body, size_t cap)
{
	int rc = enc_room(body, cap, EMBKV_WIRE_TABLE_ID_SIZE);

	if (rc)
		return rc;
	put_u32(body, table_id);
	return 0;
}

int embkv_wire_table_id_decode(const uint8_t *body, size_t len,
			       uint32_t *table_id)
{
	int rc = dec_args(body, len, table_id);

	if (rc)
		return rc;
	if (len != EMBKV_WIRE_TABLE_ID_SIZE)
		return EMBKV_EPROTO;
	*table_id = get_u32(body);
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

/* Table names and attributes ------------------------------------------------ */

int embkv_wire_name_size(const char *name, size_t *len)
{
	size_t nl;
	int rc;

	if (!len)
		return -EINVAL;
	rc = name_len(name, &nl);
	if (rc)
		return rc;
	*len = STR_LEN_SIZE + nl;
	return 0;
}

int embkv_wire_name_encode(const char *name, uint8_t *body, size_t cap)
{
	size_t len;
	int rc = embkv_wire_name_size(name, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_str(body, name, len - STR_LEN_SIZE);
	return 0;
}

int embkv_wire_name_decode(const uint8_t *body, size_t len,
			   char name[EMBKV_TABLE_NAME_MAX])
{
	char tmp[EMBKV_TABLE_NAME_MAX];
	struct rd r;
	int rc = dec_args(body, len, name);

	if (rc)
		return rc;
	if (len < STR_LEN_SIZE)
		return EMBKV_EPROTO;
	r.p = body;
	r.end = body + len;
	rc = rd_name(&r, tmp);
	if (rc)
		return rc;
	if (r.p != r.end)
		return EMBKV_EPROTO;
	memcpy(name, tmp, sizeof(tmp));
	return 0;
}

static int attr_size(const struct embkv_table_attr *a, size_t *len)
{
	size_t nl;
	int rc;

	if (!a || !len)
		return -EINVAL;
	rc = dim_check(a->dim, -EINVAL);
	if (!rc)
		rc = name_len(a->name, &nl);
	if (rc)
		return rc;
	*len = ATTR_FIXED_SIZE + STR_LEN_SIZE + nl;
	return 0;
}

/* Writes a (already checked by attr_size) at p; len is its encoded size. */
static void attr_write(uint8_t *p, const struct embkv_table_attr *a, size_t len)
{
	put_u32(p + EMBKV_WIRE_ATTR_DIM, a->dim);
	put_u32(p + EMBKV_WIRE_ATTR_DTYPE, (uint32_t)a->dtype);
	put_u32(p + EMBKV_WIRE_ATTR_PARTITIONS, a->partitions);
	put_u32(p + EMBKV_WIRE_ATTR_ADMIT_AFTER, a->admit_after);
	put_u64(p + EMBKV_WIRE_ATTR_CAPACITY, a->capacity);
	put_u32(p + EMBKV_WIRE_ATTR_OPT_TYPE, (uint32_t)a->opt.type);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_LR, a->opt.lr);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_BETA1, a->opt.beta1);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_BETA2, a->opt.beta2);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_EPS, a->opt.eps);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_INIT_ACCUM, a->opt.initial_accum);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_L1, a->opt.l1);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_L2, a->opt.l2);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_FTRL_BETA, a->opt.ftrl_beta);
	put_u32(p + EMBKV_WIRE_ATTR_INIT_TYPE, (uint32_t)a->init.type);
	put_f32(p + EMBKV_WIRE_ATTR_INIT_A, a->init.a);
	put_f32(p + EMBKV_WIRE_ATTR_INIT_B, a->init.b);
	put_u64(p + EMBKV_WIRE_ATTR_INIT_SEED, a->init.seed);
	put_u32(p + EMBKV_WIRE_ATTR_LFU_DECAY, a->lfu_decay_period);
	put_u32(p + EMBKV_WIRE_ATTR_FLAGS, a->flags);
	put_u64(p + EMBKV_WIRE_ATTR_HASH_SEED, a->hash_seed);
	put_f32(p + EMBKV_WIRE_ATTR_INDEX_LOAD, a->index_load);
	put_u32(p + EMBKV_WIRE_ATTR_RESERVED, 0);
	put_str(p + EMBKV_WIRE_ATTR_NAME, a->name,
		len - ATTR_FIXED_SIZE - STR_LEN_SIZE);
}

/* Reads an attr that must fill [p, p + len) exactly. */
static int attr_read(const uint8_t *p, size_t len, struct embkv_table_attr *out)
{
	struct embkv_table_attr a;
	struct rd r;
	int rc;

	if (len < ATTR_FIXED_SIZE)
		return EMBKV_EPROTO;
	r.p = p + ATTR_FIXED_SIZE;
	r.end = p + len;
	memset(&a, 0, sizeof(a));
	a.dim = get_u32(p + EMBKV_WIRE_ATTR_DIM);
	rc = dim_check(a.dim, EMBKV_EPROTO);
	if (!rc)
		rc = rd_name(&r, a.name);
	if (rc)
		return rc;
	if (r.p != r.end)
		return EMBKV_EPROTO;
	a.dtype = (enum embkv_dtype)get_u32(p + EMBKV_WIRE_ATTR_DTYPE);
	a.partitions = get_u32(p + EMBKV_WIRE_ATTR_PARTITIONS);
	a.admit_after = get_u32(p + EMBKV_WIRE_ATTR_ADMIT_AFTER);
	a.capacity = get_u64(p + EMBKV_WIRE_ATTR_CAPACITY);
	a.opt.type = (enum embkv_optimizer)get_u32(p + EMBKV_WIRE_ATTR_OPT_TYPE);
	a.opt.lr = get_f32(p + EMBKV_WIRE_ATTR_OPT_LR);
	a.opt.beta1 = get_f32(p + EMBKV_WIRE_ATTR_OPT_BETA1);
	a.opt.beta2 = get_f32(p + EMBKV_WIRE_ATTR_OPT_BETA2);
	a.opt.eps = get_f32(p + EMBKV_WIRE_ATTR_OPT_EPS);
	a.opt.initial_accum = get_f32(p + EMBKV_WIRE_ATTR_OPT_INIT_ACCUM);
	a.opt.l1 = get_f32(p + EMBKV_WIRE_ATTR_OPT_L1);
	a.opt.l2 = get_f32(p + EMBKV_WIRE_ATTR_OPT_L2);
	a.opt.ftrl_beta = get_f32(p + EMBKV_WIRE_ATTR_OPT_FTRL_BETA);
	a.init.type = (enum embkv_init_type)get_u32(p + EMBKV_WIRE_ATTR_INIT_TYPE);
	a.init.a = get_f32(p + EMBKV_WIRE_ATTR_INIT_A);
	a.init.b = get_f32(p + EMBKV_WIRE_ATTR_INIT_B);
	a.init.seed = get_u64(p + EMBKV_WIRE_ATTR_INIT_SEED);
	a.lfu_decay_period = get_u32(p + EMBKV_WIRE_ATTR_LFU_DECAY);
	a.flags = get_u32(p + EMBKV_WIRE_ATTR_FLAGS);
	a.hash_seed = get_u64(p + EMBKV_WIRE_ATTR_HASH_SEED);
	a.index_load = get_f32(p + EMBKV_WIRE_ATTR_INDEX_LOAD);
	if (get_u32(p + EMBKV_WIRE_ATTR_RESERVED) != 0)
		return EMBKV_EPROTO;
	*out = a;
	return 0;
}

int embkv_wire_table_attr_size(const struct embkv_table_attr *a, size_t *len)
{
	return attr_size(a, len);
}

int embkv_wire_table_attr_encode(const struct embkv_table_attr *a,
				 uint8_t *body, size_t cap)
{
	size_t len;
	int rc = attr_size(a, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	attr_write(body, a, len);
	return 0;
}

int embkv_wire_table_attr_decode(const uint8_t *body, size_t len,
				 struct embkv_table_attr *out)
{
	int rc = dec_args(body, len, out);

	return rc ? rc : attr_read(body, len, out);
}

int embkv_wire_table_info_size(const struct embkv_wire_table_info *m,
			       size_t *len)
{
	int rc;

	if (!m || !len)
		return -EINVAL;
	rc = attr_size(&m->attr, len);
	if (rc)
		return rc;
	*len += EMBKV_WIRE_TABLE_INFO_ATTR;
	return 0;
}

int embkv_wire_table_info_encode(const struct embkv_wire_table_info *m,
				 uint8_t *body, size_t cap)
{
	size_t len;
	int rc = embkv_wire_table_info_size(m, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body, m->table_id);
	put_u32(body + U32_SIZE, 0);
	attr_write(body + EMBKV_WIRE_TABLE_INFO_ATTR, &m->attr,
		   len - EMBKV_WIRE_TABLE_INFO_ATTR);
	return 0;
}

int embkv_wire_table_info_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_table_info *out)
{
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_TABLE_INFO_ATTR || get_u32(body + U32_SIZE))
		return EMBKV_EPROTO;
	rc = attr_read(body + EMBKV_WIRE_TABLE_INFO_ATTR,
		       len - EMBKV_WIRE_TABLE_INFO_ATTR, &out->attr);
	if (rc)
		return rc;
	out->table_id = get_u32(body);
	return 0;
}

/* Table list ------------------------------------------------------------------ */

int embkv_wire_table_list_size(const struct embkv_wire_table_entry *e,
			       uint32_t n, size_t *len)
{
	uint64_t total = LIST_COUNT_SIZE;
	size_t nl;
	uint32_t i;
	int rc;

	if (!len || (n && !e))
		return -EINVAL;
	if (n > EMBKV_WIRE_MAX_TABLES)
		return EMBKV_ELIMIT;
	for (i = 0; i < n; i++) {
		rc = dim_check(e[i].dim, -EINVAL);
		if (!rc)
			rc = name_len(e[i].name, &nl);
		if (rc)
			return rc;
		total += TABLE_ENTRY_FIXED + STR_LEN_SIZE + nl;
	}
	if (total > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	*len = (size_t)total;
	return 0;
}

int embkv_wire_table_list_encode(const struct embkv_wire_table_entry *e,
				 uint32_t n, uint8_t *body, size_t cap)
{
	size_t len;
	uint32_t i;
	uint8_t *p;
	int rc = embkv_wire_table_list_size(e, n, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body, n);
	p = body + LIST_COUNT_SIZE;
	for (i = 0; i < n; i++) {
		put_u32(p, e[i].table_id);
		put_u32(p + U32_SIZE, e[i].dim);
		p = put_str(p + TABLE_ENTRY_FIXED, e[i].name,
			    strnlen(e[i].name, EMBKV_TABLE_NAME_MAX));
	}
	return 0;
}

static int table_entry_read(struct rd *r, struct embkv_wire_table_entry *e)
{
	int rc;

	if (!rd_has(r, TABLE_ENTRY_FIXED))
		return EMBKV_EPROTO;
	e->table_id = get_u32(r->p);
	e->dim = get_u32(r->p + U32_SIZE);
	rc = dim_check(e->dim, EMBKV_EPROTO);
	if (rc)
		return rc;
	r->p += TABLE_ENTRY_FIXED;
	return rd_name(r, e->name);
}

int embkv_wire_table_list_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_table_list *out)
{
	struct embkv_wire_table_entry e;
	uint32_t count, i;
	struct rd r;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < LIST_COUNT_SIZE)
		return EMBKV_EPROTO;
	r.p = body + LIST_COUNT_SIZE;
	r.end = body + len;
	count = get_u32(body);
	if (count > EMBKV_WIRE_MAX_TABLES)
		return EMBKV_ELIMIT;
	for (i = 0; i < count; i++) {
		rc = table_entry_read(&r, &e);
		if (rc)
			return rc;
	}
	if (r.p != r.end)
		return EMBKV_EPROTO;
	out->count = count;
	out->cur.p = body + LIST_COUNT_SIZE;
	out->cur.end = body + len;
	out->cur.left = count;
	out->cur.inner_left = 0;
	out->cur.group = 0;
	return 0;
}

bool embkv_wire_table_list_next(struct embkv_wire_table_list *l,
				struct embkv_wire_table_entry *out)
{
	struct rd r;

	if (!l || !out || !l->cur.left)
		return false;
	r.p = l->cur.p;
	r.end = l->cur.end;
	if (table_entry_read(&r, out))
		return false;
	l->cur.p = r.p;
	l->cur.left--;
	return true;
}

/* PULL ------------------------------------------------------------------------ */

static int pull_req_check(const struct embkv_wire_pull_req *m, size_t *len)
{
	int rc;

	if (!m)
		return -EINVAL;
	rc = dim_check(m->dim, -EINVAL);
	if (rc)
		return rc;
	if (m->mode >= EMBKV_WIRE_PULL_MODE_COUNT)
		return -EINVAL;
	if (m->n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	*len = (size_t)pull_req_bytes(m->n);
	return 0;
}

int embkv_wire_pull_req_size(const struct embkv_wire_pull_req *m, size_t *len)
{
	return len ? pull_req_check(m, len) : -EINVAL;
}

static void pull_req_write(uint8_t *body, const struct embkv_wire_pull_req *m)
{
	put_u32(body + EMBKV_WIRE_PULL_REQ_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_PULL_REQ_DIM, m->dim);
	put_u32(body + EMBKV_WIRE_PULL_REQ_N, m->n);
	body[EMBKV_WIRE_PULL_REQ_MODE] = m->mode;
	memset(body + EMBKV_WIRE_PULL_REQ_RESERVED, 0, PULL_REQ_RESERVED_LEN);
}

int embkv_wire_pull_req_encode(const struct embkv_wire_pull_req *m,
			       uint8_t *body, size_t cap)
{
	size_t len;
	int rc = pull_req_check(m, &len);

	if (!rc && m->n && !m->keys)
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	pull_req_write(body, m);
	if (m->n)
		memcpy(body + EMBKV_WIRE_PULL_REQ_KEYS, m->keys,
		       (size_t)m->n * U64_SIZE);
	return 0;
}

int embkv_wire_pull_req_prepare(const struct embkv_wire_pull_req *m,
				uint8_t *body, size_t cap, uint64_t **keys)
{
	size_t len;
	int rc = pull_req_check(m, &len);

	if (!rc && (!keys || (uintptr_t)body % BODY_ALIGN))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	pull_req_write(body, m);
	*keys = (uint64_t *)(void *)(body + EMBKV_WIRE_PULL_REQ_KEYS);
	return 0;
}

int embkv_wire_pull_req_decode(const uint8_t *body, size_t len,
			       struct embkv_wire_pull_req *out)
{
	const uint8_t *res;
	uint32_t dim, n;
	uint8_t mode;
	size_t i;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_PULL_REQ_KEYS)
		return EMBKV_EPROTO;
	dim = get_u32(body + EMBKV_WIRE_PULL_REQ_DIM);
	n = get_u32(body + EMBKV_WIRE_PULL_REQ_N);
	mode = body[EMBKV_WIRE_PULL_REQ_MODE];
	rc = dim_check(dim, EMBKV_EPROTO);
	if (rc)
		return rc;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	if (mode >= EMBKV_WIRE_PULL_MODE_COUNT)
		return EMBKV_EPROTO;
	res = body + EMBKV_WIRE_PULL_REQ_RESERVED;
	for (i = 0; i < PULL_REQ_RESERVED_LEN; i++)
		if (res[i])
			return EMBKV_EPROTO;
	if (len != pull_req_bytes(n))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_PULL_REQ_TABLE);
	out->dim = dim;
	out->n = n;
	out->mode = mode;
	out->keys = (const uint64_t *)(const void *)
		(body + EMBKV_WIRE_PULL_REQ_KEYS);
	return 0;
}

static int pull_reply_check(uint32_t n, uint32_t dim, size_t *len)
{
	int rc = dim_check(dim, -EINVAL);
	uint64_t bytes;

	if (rc)
		return rc;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	bytes = pull_reply_bytes(n, dim);
	if (bytes > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	*len = (size_t)bytes;
	return 0;
}

int embkv_wire_pull_reply_size(uint32_t n, uint32_t dim, size_t *len)
{
	return len ? pull_reply_check(n, dim, len) : -EINVAL;
}

/* Writes the fixed fields and the zero padding after found[]. */
static void pull_reply_write(uint8_t *body, uint32_t n, uint32_t dim)
{
	size_t pad_at = PULL_REPLY_FIXED + (size_t)n;

	put_u32(body + EMBKV_WIRE_PULL_REPLY_N, n);
	put_u32(body + EMBKV_WIRE_PULL_REPLY_DIM, dim);
	memset(body + pad_at, 0, (size_t)pull_reply_vals_off(n) - pad_at);
}

int embkv_wire_pull_reply_encode(const struct embkv_wire_pull_reply *m,
				 uint8_t *body, size_t cap)
{
	size_t len, i;
	int rc = m ? pull_reply_check(m->n, m->dim, &len) : -EINVAL;

	if (!rc && m->n && (!m->found || !m->vals))
		rc = -EINVAL;
	for (i = 0; !rc && i < m->n; i++)
		if (m->found[i] > 1)
			rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	pull_reply_write(body, m->n, m->dim);
	if (!m->n)
		return 0;
	memcpy(body + PULL_REPLY_FIXED, m->found, m->n);
	memcpy(body + pull_reply_vals_off(m->n), m->vals,
	       (size_t)m->n * m->dim * F32_SIZE);
	return 0;
}

int embkv_wire_pull_reply_prepare(uint32_t n, uint32_t dim, uint8_t *body,
				  size_t cap, uint8_t **found, float **vals)
{
	size_t len;
	int rc = pull_reply_check(n, dim, &len);

	if (!rc && (!found || !vals || (uintptr_t)body % BODY_ALIGN))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	pull_reply_write(body, n, dim);
	*found = body + PULL_REPLY_FIXED;
	*vals = (float *)(void *)(body + pull_reply_vals_off(n));
	return 0;
}

int embkv_wire_pull_reply_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_pull_reply *out)
{
	uint32_t n, dim;
	uint64_t i, vals_off;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < PULL_REPLY_FIXED)
		return EMBKV_EPROTO;
	n = get_u32(body + EMBKV_WIRE_PULL_REPLY_N);
	dim = get_u32(body + EMBKV_WIRE_PULL_REPLY_DIM);
	rc = dim_check(dim, EMBKV_EPROTO);
	if (rc)
		return rc;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	if (len != pull_reply_bytes(n, dim))
		return EMBKV_EPROTO;
	vals_off = pull_reply_vals_off(n);
	for (i = PULL_REPLY_FIXED; i < PULL_REPLY_FIXED + (uint64_t)n; i++)
		if (body[i] > 1)
			return EMBKV_EPROTO;
	for (; i < vals_off; i++)
		if (body[i])
			return EMBKV_EPROTO;
	out->n = n;
	out->dim = dim;
	out->found = body + PULL_REPLY_FIXED;
	out->vals = (const float *)(const void *)(body + vals_off);
	return 0;
}

/* PUSH / ASSIGN ------------------------------------------------------------------ */

static int rows_req_check(const struct embkv_wire_rows_req *m, size_t *len)
{
	uint64_t bytes;
	int rc;

	if (!m)
		return -EINVAL;
	rc = dim_check(m->dim, -EINVAL);
	if (rc)
		return rc;
	if (m->n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	bytes = rows_req_bytes(m->n, m->dim);
	if (bytes > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	*len = (size_t)bytes;
	return 0;
}

int embkv_wire_rows_req_size(const struct embkv_wire_rows_req *m, size_t *len)
{
	return len ? rows_req_check(m, len) : -EINVAL;
}

static void rows_req_write(uint8_t *body, const struct embkv_wire_rows_req *m)
{
	put_u32(body + EMBKV_WIRE_ROWS_REQ_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_ROWS_REQ_DIM, m->dim);
	put_u32(body + EMBKV_WIRE_ROWS_REQ_N, m->n);
	put_u32(body + EMBKV_WIRE_ROWS_REQ_RESERVED, 0);
}

int embkv_wire_rows_req_encode(const struct embkv_wire_rows_req *m,
			       uint8_t *body, size_t cap)
{
	size_t len;
	int rc = rows_req_check(m, &len);

	if (!rc && m->n && (!m->keys || !m->vals))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	rows_req_write(body, m);
	if (!m->n)
		return 0;
	memcpy(body + EMBKV_WIRE_ROWS_REQ_KEYS, m->keys,
	       (size_t)m->n * U64_SIZE);
	memcpy(body + rows_vals_off(m->n), m->vals,
	       (size_t)m->n * m->dim * F32_SIZE);
	return 0;
}

int embkv_wire_rows_req_prepare(const struct embkv_wire_rows_req *m,
				uint8_t *body, size_t cap, uint64_t **keys,
				float **vals)
{
	size_t len;
	int rc = rows_req_check(m, &len);

	if (!rc && (!keys || !vals || (uintptr_t)body % BODY_ALIGN))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	rows_req_write(body, m);
	*keys = (uint64_t *)(void *)(body + EMBKV_WIRE_ROWS_REQ_KEYS);
	*vals = (float *)(void *)(body + rows_vals_off(m->n));
	return 0;
}

int embkv_wire_rows_req_decode(const uint8_t *body, size_t len,
			       struct embkv_wire_rows_req *out)
{
	uint32_t dim, n;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_ROWS_REQ_KEYS)
		return EMBKV_EPROTO;
	dim = get_u32(body + EMBKV_WIRE_ROWS_REQ_DIM);
	n = get_u32(body + EMBKV_WIRE_ROWS_REQ_N);
	rc = dim_check(dim, EMBKV_EPROTO);
	if (rc)
		return rc;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	if (get_u32(body + EMBKV_WIRE_ROWS_REQ_RESERVED) ||
	    len != rows_req_bytes(n, dim))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_ROWS_REQ_TABLE);
	out->dim = dim;
	out->n = n;
	out->keys = (const uint64_t *)(const void *)
		(body + EMBKV_WIRE_ROWS_REQ_KEYS);
	out->vals = (const float *)(const void *)(body + rows_vals_off(n));
	return 0;
}

/* ERASE ------------------------------------------------------------------------ */

static int erase_req_check(const struct embkv_wire_erase_req *m, size_t *len)
{
	if (!m)
		return -EINVAL;
	if (m->n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	*len = (size_t)erase_req_bytes(m->n);
	return 0;
}

int embkv_wire_erase_req_size(const struct embkv_wire_erase_req *m,
			      size_t *len)
{
	return len ? erase_req_check(m, len) : -EINVAL;
}

int embkv_wire_erase_req_encode(const struct embkv_wire_erase_req *m,
				uint8_t *body, size_t cap)
{
	size_t len;
	int rc = erase_req_check(m, &len);

	if (!rc && m->n && !m->keys)
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_ERASE_REQ_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_ERASE_REQ_N, m->n);
	if (m->n)
		memcpy(body + EMBKV_WIRE_ERASE_REQ_KEYS, m->keys,
		       (size_t)m->n * U64_SIZE);
	return 0;
}

int embkv_wire_erase_req_prepare(const struct embkv_wire_erase_req *m,
				 uint8_t *body, size_t cap, uint64_t **keys)
{
	size_t len;
	int rc = erase_req_check(m, &len);

	if (!rc && (!keys || (uintptr_t)body % BODY_ALIGN))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_ERASE_REQ_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_ERASE_REQ_N, m->n);
	*keys = (uint64_t *)(void *)(body + EMBKV_WIRE_ERASE_REQ_KEYS);
	return 0;
}

int embkv_wire_erase_req_decode(const uint8_t *body, size_t len,
				struct embkv_wire_erase_req *out)
{
	uint32_t n;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_ERASE_REQ_KEYS)
		return EMBKV_EPROTO;
	n = get_u32(body + EMBKV_WIRE_ERASE_REQ_N);
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	if (len != erase_req_bytes(n))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_ERASE_REQ_TABLE);
	out->n = n;
	out->keys = (const uint64_t *)(const void *)
		(body + EMBKV_WIRE_ERASE_REQ_KEYS);
	return 0;
}

/* HITS ------------------------------------------------------------------------- */

static uint64_t hits_counts_off(uint32_t n)
{
	return EMBKV_WIRE_HITS_KEYS + (uint64_t)n * U64_SIZE;
}

static uint64_t hits_bytes(uint32_t n)
{
	return hits_counts_off(n) + (uint64_t)n * U32_SIZE;
}

static int hits_check(const struct embkv_wire_hits *m, size_t *len)
{
	if (!m)
		return -EINVAL;
	if (m->n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	*len = (size_t)hits_bytes(m->n);
	return 0;
}

int embkv_wire_hits_size(const struct embkv_wire_hits *m, size_t *len)
{
	return len ? hits_check(m, len) : -EINVAL;
}

int embkv_wire_hits_encode(const struct embkv_wire_hits *m, uint8_t *body,
			   size_t cap)
{
	size_t len;
	int rc = hits_check(m, &len);

	if (!rc && m->n && (!m->keys || !m->counts))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_HITS_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_HITS_N, m->n);
	if (m->n) {
		memcpy(body + EMBKV_WIRE_HITS_KEYS, m->keys,
		       (size_t)m->n * U64_SIZE);
		memcpy(body + hits_counts_off(m->n), m->counts,
		       (size_t)m->n * U32_SIZE);
	}
	return 0;
}

int embkv_wire_hits_prepare(const struct embkv_wire_hits *m, uint8_t *body,
			    size_t cap, uint64_t **keys, uint32_t **counts)
{
	size_t len;
	int rc = hits_check(m, &len);

	if (!rc && (!keys || !counts || (uintptr_t)body % BODY_ALIGN))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_HITS_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_HITS_N, m->n);
	*keys = (uint64_t *)(void *)(body + EMBKV_WIRE_HITS_KEYS);
	*counts = (uint32_t *)(void *)(body + hits_counts_off(m->n));
	return 0;
}

int embkv_wire_hits_decode(const uint8_t *body, size_t len,
			   struct embkv_wire_hits *out)
{
	uint32_t n;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_HITS_KEYS)
		return EMBKV_EPROTO;
	n = get_u32(body + EMBKV_WIRE_HITS_N);
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	if (len != hits_bytes(n))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_HITS_TABLE);
	out->n = n;
	out->keys = (const uint64_t *)(const void *)
		(body + EMBKV_WIRE_HITS_KEYS);
	out->counts = (const uint32_t *)(const void *)
		(body + hits_counts_off(n));
	return 0;
}

/* TABLE_REGIONS ------------------------------------------------------------------ */

#define REGION_BUCKET_SIZE 64u /* bytes of one index bucket */

static uint64_t regions_bytes(uint32_t count)
{
	return EMBKV_WIRE_REGIONS_PARTS +
	       (uint64_t)count * EMBKV_WIRE_REGION_SIZE;
}

/* The checks a decoder makes on one partition, shared with the encoder so
 * that nothing encodes that would not decode. */
static int region_part_check(const struct embkv_wire_region_part *p,
			     uint32_t stride)
{
	if (p->part >= EMBKV_MAX_PARTITIONS || !p->nbuckets)
		return EMBKV_EPROTO;
	if (p->nbuckets > (UINT64_MAX - p->index_addr) / REGION_BUCKET_SIZE)
		return EMBKV_EPROTO;
	if (p->capacity > (UINT64_MAX - p->arena_addr) / stride)
		return EMBKV_EPROTO;
	return 0;
}

static int regions_check(const struct embkv_wire_table_regions *m,
			 size_t *len)
{
	uint32_t i;
	int rc;

	if (!m)
		return -EINVAL;
	if (m->count > EMBKV_WIRE_MAX_REGION_PARTS)
		return EMBKV_ELIMIT;
	if (!m->stride || m->stride % BODY_ALIGN || (m->count && !m->parts))
		return -EINVAL;
	for (i = 0; i < m->count; i++) {
		rc = region_part_check(&m->parts[i], m->stride);
		if (rc)
			return -EINVAL;
	}
	*len = (size_t)regions_bytes(m->count);
	return 0;
}

int embkv_wire_table_regions_size(const struct embkv_wire_table_regions *m,
				  size_t *len)
{
	return len ? regions_check(m, len) : -EINVAL;
}

int embkv_wire_table_regions_encode(const struct embkv_wire_table_regions *m,
				    uint8_t *body, size_t cap)
{
	size_t len;
	uint8_t *p;
	uint32_t i;
	int rc = regions_check(m, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_REGIONS_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_REGIONS_COUNT, m->count);
	put_u32(body + EMBKV_WIRE_REGIONS_INDEX_RKEY, m->index_rkey);
	put_u32(body + EMBKV_WIRE_REGIONS_ARENA_RKEY, m->arena_rkey);
	put_u32(body + EMBKV_WIRE_REGIONS_STRIDE, m->stride);
	put_u32(body + EMBKV_WIRE_REGIONS_RESERVED, 0);
	for (i = 0; i < m->count; i++) {
		p = body + regions_bytes(i);
		put_u32(p + EMBKV_WIRE_REGION_PART, m->parts[i].part);
		put_u32(p + EMBKV_WIRE_REGION_RESERVED, 0);
		put_u64(p + EMBKV_WIRE_REGION_INDEX_ADDR,
			m->parts[i].index_addr);
		put_u64(p + EMBKV_WIRE_REGION_NBUCKETS, m->parts[i].nbuckets);
		put_u64(p + EMBKV_WIRE_REGION_ARENA_ADDR,
			m->parts[i].arena_addr);
		put_u64(p + EMBKV_WIRE_REGION_CAPACITY, m->parts[i].capacity);
	}
	return 0;
}

static void region_part_read(const uint8_t *p,
			     struct embkv_wire_region_part *out)
{
	out->part = get_u32(p + EMBKV_WIRE_REGION_PART);
	out->index_addr = get_u64(p + EMBKV_WIRE_REGION_INDEX_ADDR);
	out->nbuckets = get_u64(p + EMBKV_WIRE_REGION_NBUCKETS);
	out->arena_addr = get_u64(p + EMBKV_WIRE_REGION_ARENA_ADDR);
	out->capacity = get_u64(p + EMBKV_WIRE_REGION_CAPACITY);
}

int embkv_wire_table_regions_decode(const uint8_t *body, size_t len,
				    struct embkv_wire_table_regions *out)
{
	struct embkv_wire_region_part part;
	uint32_t count, stride, i;
	const uint8_t *p;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_REGIONS_PARTS)
		return EMBKV_EPROTO;
	count = get_u32(body + EMBKV_WIRE_REGIONS_COUNT);
	if (count > EMBKV_WIRE_MAX_REGION_PARTS)
		return EMBKV_ELIMIT;
	if (len != regions_bytes(count))
		return EMBKV_EPROTO;
	stride = get_u32(body + EMBKV_WIRE_REGIONS_STRIDE);
	if (!stride || stride % BODY_ALIGN ||
	    get_u32(body + EMBKV_WIRE_REGIONS_RESERVED))
		return EMBKV_EPROTO;
	for (i = 0; i < count; i++) {
		p = body + regions_bytes(i);
		if (get_u32(p + EMBKV_WIRE_REGION_RESERVED))
			return EMBKV_EPROTO;
		region_part_read(p, &part);
		rc = region_part_check(&part, stride);
		if (rc)
			return rc;
	}
	out->table_id = get_u32(body + EMBKV_WIRE_REGIONS_TABLE);
	out->count = count;
	out->index_rkey = get_u32(body + EMBKV_WIRE_REGIONS_INDEX_RKEY);
	out->arena_rkey = get_u32(body + EMBKV_WIRE_REGIONS_ARENA_RKEY);
	out->stride = stride;
	out->parts = NULL;
	memset(&out->cur, 0, sizeof(out->cur));
	out->cur.p = body + EMBKV_WIRE_REGIONS_PARTS;
	out->cur.end = body + len;
	out->cur.left = count;
	return 0;
}

bool embkv_wire_table_regions_next(struct embkv_wire_table_regions *m,
				   struct embkv_wire_region_part *out)
{
	if (!m || !out || !m->cur.left)
		return false;
	region_part_read(m->cur.p, out);
	m->cur.p += EMBKV_WIRE_REGION_SIZE;
	m->cur.left--;
	return true;
}

/* STATS ------------------------------------------------------------------------ */

static const char *const stat_names[EMBKV_WIRE_STAT_ID_COUNT] = {
	[EMBKV_WIRE_STAT_ROWS] = "rows",
	[EMBKV_WIRE_STAT_CAPACITY] = "capacity",
	[EMBKV_WIRE_STAT_MEM_BYTES] = "mem_bytes",
	[EMBKV_WIRE_STAT_PULLS] = "pulls",
	[EMBKV_WIRE_STAT_PULL_KEYS] = "pull_keys",
	[EMBKV_WIRE_STAT_PULL_MISSES] = "pull_misses",
	[EMBKV_WIRE_STAT_PUSHES] = "pushes",
	[EMBKV_WIRE_STAT_PUSH_KEYS] = "push_keys",
	[EMBKV_WIRE_STAT_GRADS_DROPPED] = "grads_dropped",
	[EMBKV_WIRE_STAT_INSERTS] = "inserts",
	[EMBKV_WIRE_STAT_EVICTIONS] = "evictions",
	[EMBKV_WIRE_STAT_ADMIT_REJECTS] = "admit_rejects",
	[EMBKV_WIRE_STAT_ASSIGN_KEYS] = "assign_keys",
	[EMBKV_WIRE_STAT_ERASE_KEYS] = "erase_keys",
	[EMBKV_WIRE_STAT_BYTES_IN] = "bytes_in",
	[EMBKV_WIRE_STAT_BYTES_OUT] = "bytes_out",
	[EMBKV_WIRE_STAT_CONNECTIONS] = "connections",
	[EMBKV_WIRE_STAT_ERRORS] = "errors",
	[EMBKV_WIRE_STAT_STALE_EPOCH] = "stale_epoch",
	[EMBKV_WIRE_STAT_AUTH_FAILURES] = "auth_failures",
	[EMBKV_WIRE_STAT_UPTIME_S] = "uptime_s",
	[EMBKV_WIRE_STAT_REQUESTS] = "requests",
	[EMBKV_WIRE_STAT_PULLS_PER_S] = "pulls_per_s",
	[EMBKV_WIRE_STAT_PUSHES_PER_S] = "pushes_per_s",
	[EMBKV_WIRE_STAT_PULL_KEYS_PER_S] = "pull_keys_per_s",
	[EMBKV_WIRE_STAT_PUSH_KEYS_PER_S] = "push_keys_per_s",
	[EMBKV_WIRE_STAT_PULL_P50_US] = "pull_p50_us",
	[EMBKV_WIRE_STAT_PULL_P99_US] = "pull_p99_us",
	[EMBKV_WIRE_STAT_PUSH_P50_US] = "push_p50_us",
	[EMBKV_WIRE_STAT_PUSH_P99_US] = "push_p99_us",
	[EMBKV_WIRE_STAT_HITS] = "hits",
	[EMBKV_WIRE_STAT_TABLES] = "tables",
	[EMBKV_WIRE_STAT_MEM_LIMIT] = "mem_limit",
	[EMBKV_WIRE_STAT_EPOCH] = "epoch",
	[EMBKV_WIRE_STAT_OWNER_THREADS] = "owner_threads",
	[EMBKV_WIRE_STAT_IO_THREADS] = "io_threads",
};

const char *embkv_wire_stat_name(unsigned int id)
{
	return id < EMBKV_WIRE_STAT_ID_COUNT ? stat_names[id] : NULL;
}

int embkv_wire_stats_size(const struct embkv_wire_stats_group *g,
			  uint32_t n_groups, size_t *len)
{
	uint64_t total = LIST_COUNT_SIZE;
	uint32_t i, j;

	if (!len || (n_groups && !g))
		return -EINVAL;
	if (n_groups > EMBKV_WIRE_MAX_STAT_GROUPS)
		return EMBKV_ELIMIT;
	for (i = 0; i < n_groups; i++) {
		if (g[i].n && !g[i].stats)
			return -EINVAL;
		for (j = 0; j < g[i].n; j++)
			if (!g[i].stats[j].id)
				return -EINVAL;
		total += STATS_GROUP_FIXED + (uint64_t)g[i].n * STAT_PAIR_SIZE;
	}
	if (total > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	*len = (size_t)total;
	return 0;
}

int embkv_wire_stats_encode(const struct embkv_wire_stats_group *g,
			    uint32_t n_groups, uint8_t *body, size_t cap)
{
	size_t len;
	uint32_t i, j;
	uint8_t *p;
	int rc = embkv_wire_stats_size(g, n_groups, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body, n_groups);
	p = body + LIST_COUNT_SIZE;
	for (i = 0; i < n_groups; i++) {
		put_u32(p, g[i].table_id);
		put_u16(p + U32_SIZE, g[i].n);
		p += STATS_GROUP_FIXED;
		for (j = 0; j < g[i].n; j++, p += STAT_PAIR_SIZE) {
			put_u16(p, g[i].stats[j].id);
			put_u64(p + U16_SIZE, g[i].stats[j].value);
		}
	}
	return 0;
}

int embkv_wire_stats_decode(const uint8_t *body, size_t len,
			    struct embkv_wire_stats *out)
{
	uint64_t n_stats = 0;
	uint32_t n_groups, i, j, count;
	struct rd r;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < LIST_COUNT_SIZE)
		return EMBKV_EPROTO;
	r.p = body + LIST_COUNT_SIZE;
	r.end = body + len;
	n_groups = get_u32(body);
	if (n_groups > EMBKV_WIRE_MAX_STAT_GROUPS)
		return EMBKV_ELIMIT;
	for (i = 0; i < n_groups; i++) {
		if (!rd_has(&r, STATS_GROUP_FIXED))
			return EMBKV_EPROTO;
		count = get_u16(r.p + U32_SIZE);
		r.p += STATS_GROUP_FIXED;
		if (!rd_has(&r, (size_t)count * STAT_PAIR_SIZE))
			return EMBKV_EPROTO;
		for (j = 0; j < count; j++, r.p += STAT_PAIR_SIZE)
			if (!get_u16(r.p))
				return EMBKV_EPROTO;
		n_stats += count;
	}
	if (r.p != r.end)
		return EMBKV_EPROTO;
	out->n_groups = n_groups;
	out->n_stats = n_stats;
	out->cur.p = body + LIST_COUNT_SIZE;
	out->cur.end = body + len;
	out->cur.left = n_groups;
	out->cur.inner_left = 0;
	out->cur.group = 0;
	return 0;
}

bool embkv_wire_stats_next(struct embkv_wire_stats *s, uint32_t *table_id,
			   struct embkv_wire_stat *out)
{
	struct embkv_wire_cursor *c;

	if (!s || !table_id || !out)
		return false;
	c = &s->cur;
	while (!c->inner_left && c->left) {
		if ((size_t)(c->end - c->p) < STATS_GROUP_FIXED)
			return false;
		c->group = get_u32(c->p);
		c->inner_left = get_u16(c->p + U32_SIZE);
		c->p += STATS_GROUP_FIXED;
		c->left--;
	}
	if (!c->inner_left || (size_t)(c->end - c->p) < STAT_PAIR_SIZE)
		return false;
	*table_id = c->group;
	out->id = get_u16(c->p);
	out->value = get_u64(c->p + U16_SIZE);
	c->p += STAT_PAIR_SIZE;
	c->inner_left--;
	return true;
}

/* SHARD_MAP ---------------------------------------------------------------------- */

static int addr_len(const char *addr, size_t *len)
{
	if (!addr)
		return -EINVAL;
	*len = strnlen(addr, EMBKV_WIRE_ADDR_MAX + 1);
	if (*len > EMBKV_WIRE_ADDR_MAX)
		return EMBKV_ELIMIT;
	return *len ? 0 : -EINVAL;
}

int embkv_wire_shard_map_size(const struct embkv_wire_shard_map *m,
			      size_t *len)
{
	uint64_t total;
	size_t al;
	uint32_t i;
	int rc;

	if (!m || !len || !m->part_server || !m->servers)
		return -EINVAL;
	if (m->n_partitions > EMBKV_MAX_PARTITIONS ||
	    m->n_servers > EMBKV_WIRE_MAX_SERVERS)
		return EMBKV_ELIMIT;
	if (!is_pow2(m->n_partitions) || !m->n_servers)
		return -EINVAL;
	for (i = 0; i < m->n_partitions; i++)
		if (m->part_server[i] >= m->n_servers)
			return -EINVAL;
	total = EMBKV_WIRE_SHARD_MAP_PART_SERVER +
		(uint64_t)m->n_partitions * U16_SIZE;
	for (i = 0; i < m->n_servers; i++) {
		rc = addr_len(m->servers[i], &al);
		if (rc)
			return rc;
		total += STR_LEN_SIZE + al;
	}
	*len = (size_t)total; /* bounded far below EMBKV_WIRE_MAX_BODY */
	return 0;
}

int embkv_wire_shard_map_encode(const struct embkv_wire_shard_map *m,
				uint8_t *body, size_t cap)
{
	size_t len;
	uint32_t i;
	uint8_t *p;
	int rc = embkv_wire_shard_map_size(m, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u64(body + EMBKV_WIRE_SHARD_MAP_EPOCH, m->epoch);
	put_u32(body + EMBKV_WIRE_SHARD_MAP_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_SHARD_MAP_PARTS, m->n_partitions);
	put_u32(body + EMBKV_WIRE_SHARD_MAP_SERVERS, m->n_servers);
	put_u32(body + EMBKV_WIRE_SHARD_MAP_RESERVED, 0);
	p = body + EMBKV_WIRE_SHARD_MAP_PART_SERVER;
	for (i = 0; i < m->n_partitions; i++, p += U16_SIZE)
		put_u16(p, m->part_server[i]);
	for (i = 0; i < m->n_servers; i++)
		p = put_str(p, m->servers[i],
			    strnlen(m->servers[i], EMBKV_WIRE_ADDR_MAX));
	return 0;
}

int embkv_wire_shard_map_decode(const uint8_t *body, size_t len,
				struct embkv_wire_shard_map *out)
{
	struct embkv_wire_str addr;
	const uint8_t *map;
	uint32_t parts, servers, i;
	struct rd r;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_SHARD_MAP_PART_SERVER)
		return EMBKV_EPROTO;
	parts = get_u32(body + EMBKV_WIRE_SHARD_MAP_PARTS);
	servers = get_u32(body + EMBKV_WIRE_SHARD_MAP_SERVERS);
	if (parts > EMBKV_MAX_PARTITIONS || servers > EMBKV_WIRE_MAX_SERVERS)
		return EMBKV_ELIMIT;
	if (!is_pow2(parts) || !servers ||
	    get_u32(body + EMBKV_WIRE_SHARD_MAP_RESERVED))
		return EMBKV_EPROTO;
	map = body + EMBKV_WIRE_SHARD_MAP_PART_SERVER;
	r.p = map;
	r.end = body + len;
	if (!rd_has(&r, (size_t)parts * U16_SIZE))
		return EMBKV_EPROTO;
	for (i = 0; i < parts; i++, r.p += U16_SIZE)
		if (get_u16(r.p) >= servers)
			return EMBKV_EPROTO;
	out->cur.p = r.p;
	for (i = 0; i < servers; i++) {
		rc = rd_str(&r, 1, EMBKV_WIRE_ADDR_MAX, &addr);
		if (rc)
			return rc;
	}
	if (r.p != r.end)
		return EMBKV_EPROTO;
	out->epoch = get_u64(body + EMBKV_WIRE_SHARD_MAP_EPOCH);
	out->table_id = get_u32(body + EMBKV_WIRE_SHARD_MAP_TABLE);
	out->n_partitions = parts;
	out->n_servers = servers;
	out->part_server = (const uint16_t *)(const void *)map;
	out->servers = NULL;
	out->cur.end = r.end;
	out->cur.left = servers;
	out->cur.inner_left = 0;
	out->cur.group = 0;
	return 0;
}

bool embkv_wire_shard_map_next_server(struct embkv_wire_shard_map *m,
				      struct embkv_wire_str *addr)
{
	struct rd r;

	if (!m || !addr || !m->cur.left)
		return false;
	r.p = m->cur.p;
	r.end = m->cur.end;
	if (rd_str(&r, 1, EMBKV_WIRE_ADDR_MAX, addr))
		return false;
	m->cur.p = r.p;
	m->cur.left--;
	return true;
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

static int v_table_id(const uint8_t *b, size_t l)
{
	uint32_t id;

	return embkv_wire_table_id_decode(b, l, &id);
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
	  false, v_attr, v_table_id },
	{ EMBKV_WIRE_OP_TABLE_DROP, "TABLE_DROP", "TABLE_DROP_REPLY", false,
	  v_name, embkv_wire_empty_decode },
	{ EMBKV_WIRE_OP_TABLE_LIST, "TABLE_LIST", "TABLE_LIST_REPLY", false,
	  embkv_wire_empty_decode, v_table_list },
	{ EMBKV_WIRE_OP_TABLE_OPEN, "TABLE_OPEN", "TABLE_OPEN_REPLY", false,
	  v_name, v_table_info },
	{ EMBKV_WIRE_OP_TABLE_REGIONS, "TABLE_REGIONS", "TABLE_REGIONS_REPLY",
	  false, v_table_id, v_table_regions },
	{ EMBKV_WIRE_OP_PULL, "PULL", "PULL_REPLY", true,
	  v_pull_req, v_pull_reply },
	{ EMBKV_WIRE_OP_PUSH, "PUSH", "PUSH_REPLY", true, v_rows_req, v_count },
	{ EMBKV_WIRE_OP_ASSIGN, "ASSIGN", "ASSIGN_REPLY", true,
	  v_rows_req, v_count },
	{ EMBKV_WIRE_OP_ERASE, "ERASE", "ERASE_REPLY", true,
	  v_erase_req, v_count },
	{ EMBKV_WIRE_OP_HITS, "HITS", "HITS_REPLY", false, v_hits, v_count },
	{ EMBKV_WIRE_OP_STATS, "STATS", "STATS_REPLY", false,
	  v_table_id, v_stats },
	{ EMBKV_WIRE_OP_SHARD_MAP, "SHARD_MAP", "SHARD_MAP_REPLY", false,
	  v_table_id, v_shard_map },
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

/* Verbs private data ---------------------------------------------------------------- */

static int verbs_recv_size_check(uint32_t v)
{
	if (!v)
		return EMBKV_EPROTO;
	if (v < EMBKV_VERBS_MIN_RECV_SIZE || v > EMBKV_VERBS_MAX_RECV_SIZE)
		return EMBKV_ELIMIT;
	return 0;
}

static int verbs_connect_check(const struct embkv_verbs_connect *m)
{
	int rc;

	if (!m->credits || !m->reply_slots)
		return EMBKV_EPROTO;
	if (m->credits > EMBKV_VERBS_MAX_CREDITS ||
	    m->reply_slots > EMBKV_VERBS_MAX_REPLY_SLOTS)
		return EMBKV_ELIMIT;
	rc = verbs_recv_size_check(m->recv_size);
	if (!rc)
		rc = verbs_recv_size_check(m->slot_size);
	if (rc)
		return rc;
	if ((uint64_t)m->reply_slots * m->slot_size >
	    EMBKV_VERBS_MAX_REPLY_ARENA)
		return EMBKV_ELIMIT;
	return 0;
}

int embkv_wire_verbs_connect_encode(const struct embkv_verbs_connect *m,
				    uint8_t *buf, size_t cap)
{
	int rc;

	if (!m || verbs_connect_check(m))
		return -EINVAL;
	rc = enc_room(buf, cap, EMBKV_VERBS_CONNECT_SIZE);
	if (rc)
		return rc;
	put_u32(buf + EMBKV_VERBS_CONNECT_MAGIC, EMBKV_WIRE_MAGIC);
	put_u16(buf + EMBKV_VERBS_CONNECT_VERSION, EMBKV_WIRE_VERSION);
	put_u16(buf + EMBKV_VERBS_CONNECT_CREDITS, m->credits);
	put_u32(buf + EMBKV_VERBS_CONNECT_RECV_SIZE, m->recv_size);
	put_u32(buf + EMBKV_VERBS_CONNECT_SLOTS, m->reply_slots);
	put_u64(buf + EMBKV_VERBS_CONNECT_REPLY_ADDR, m->reply_addr);
	put_u32(buf + EMBKV_VERBS_CONNECT_REPLY_RKEY, m->reply_rkey);
	put_u32(buf + EMBKV_VERBS_CONNECT_SLOT_SIZE, m->slot_size);
	return 0;
}

int embkv_wire_verbs_connect_decode(const uint8_t *buf, size_t len,
				    struct embkv_verbs_connect *out)
{
	struct embkv_verbs_connect m;
	int rc;

	if (!out || (!buf && len))
		return -EINVAL;
	if (len < EMBKV_VERBS_CONNECT_SIZE ||
	    get_u32(buf + EMBKV_VERBS_CONNECT_MAGIC) != EMBKV_WIRE_MAGIC)
		return EMBKV_EPROTO;
	m.version = get_u16(buf + EMBKV_VERBS_CONNECT_VERSION);
	if (m.version != EMBKV_WIRE_VERSION)
		return EMBKV_EVERSION;
	m.credits = get_u16(buf + EMBKV_VERBS_CONNECT_CREDITS);
	m.recv_size = get_u32(buf + EMBKV_VERBS_CONNECT_RECV_SIZE);
	m.reply_slots = get_u32(buf + EMBKV_VERBS_CONNECT_SLOTS);
	m.reply_addr = get_u64(buf + EMBKV_VERBS_CONNECT_REPLY_ADDR);
	m.reply_rkey = get_u32(buf + EMBKV_VERBS_CONNECT_REPLY_RKEY);
	m.slot_size = get_u32(buf + EMBKV_VERBS_CONNECT_SLOT_SIZE);
	rc = verbs_connect_check(&m);
	if (rc)
		return rc;
	*out = m;
	return 0;
}

static int verbs_accept_check(const struct embkv_verbs_accept *m)
{
	if (!m->credits)
		return EMBKV_EPROTO;
	if (m->credits > EMBKV_VERBS_MAX_CREDITS)
		return EMBKV_ELIMIT;
	return verbs_recv_size_check(m->recv_size);
}

int embkv_wire_verbs_accept_encode(const struct embkv_verbs_accept *m,
				   uint8_t *buf, size_t cap)
{
	int rc;

	if (!m || verbs_accept_check(m))
		return -EINVAL;
	rc = enc_room(buf, cap, EMBKV_VERBS_ACCEPT_SIZE);
	if (rc)
		return rc;
	put_u32(buf + EMBKV_VERBS_ACCEPT_MAGIC, EMBKV_WIRE_MAGIC);
	put_u16(buf + EMBKV_VERBS_ACCEPT_VERSION, EMBKV_WIRE_VERSION);
	put_u16(buf + EMBKV_VERBS_ACCEPT_CREDITS, m->credits);
	put_u32(buf + EMBKV_VERBS_ACCEPT_RECV_SIZE, m->recv_size);
	return 0;
}

int embkv_wire_verbs_accept_decode(const uint8_t *buf, size_t len,
				   struct embkv_verbs_accept *out)
{
	struct embkv_verbs_accept m;
	int rc;

	if (!out || (!buf && len))
		return -EINVAL;
	if (len < EMBKV_VERBS_ACCEPT_SIZE ||
	    get_u32(buf + EMBKV_VERBS_ACCEPT_MAGIC) != EMBKV_WIRE_MAGIC)
		return EMBKV_EPROTO;
	m.version = get_u16(buf + EMBKV_VERBS_ACCEPT_VERSION);
	if (m.version != EMBKV_WIRE_VERSION)
		return EMBKV_EVERSION;
	m.credits = get_u16(buf + EMBKV_VERBS_ACCEPT_CREDITS);
	m.recv_size = get_u32(buf + EMBKV_VERBS_ACCEPT_RECV_SIZE);
	rc = verbs_accept_check(&m);
	if (rc)
		return rc;
	*out = m;
	return 0;
}

/* Authentication -------------------------------------------------------------------- */

int embkv_wire_auth_key_derive(const void *token, size_t token_len,
			       struct embkv_wire_auth_key *key)
{
	XXH128_canonical_t block;
	size_t i;

	if (!token || !token_len || !key)
		return -EINVAL;
	for (i = 0; i < EMBKV_WIRE_AUTH_SECRET_SIZE / AUTH_BLOCK_SIZE; i++) {
		XXH128_canonicalFromHash(&block,
			XXH3_128bits_withSeed(token, token_len,
					      AUTH_KDF_SEED + i));
		memcpy(key->secret + i * AUTH_BLOCK_SIZE, &block,
		       AUTH_BLOCK_SIZE);
	}
	explicit_bzero(&block, sizeof(block));
	return 0;
}

void embkv_wire_auth_key_wipe(struct embkv_wire_auth_key *key)
{
	if (key)
		explicit_bzero(key, sizeof(*key));
}

int embkv_wire_auth_mac(const struct embkv_wire_auth_key *key,
			enum embkv_wire_auth_role role,
			const uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE],
			const uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE],
			uint8_t mac[EMBKV_WIRE_MAC_SIZE])
{
	uint8_t msg[AUTH_MSG_SIZE];
	uint8_t *p = msg;
	XXH128_canonical_t out;

	if (!key || !server_nonce || !client_nonce || !mac ||
	    (role != EMBKV_WIRE_AUTH_CLIENT && role != EMBKV_WIRE_AUTH_SERVER))
		return -EINVAL;
	memcpy(p, auth_label[role], AUTH_LABEL_SIZE);
	p += AUTH_LABEL_SIZE;
	put_u16(p, EMBKV_WIRE_VERSION);
	p += U16_SIZE;
	memcpy(p, server_nonce, EMBKV_WIRE_NONCE_SIZE);
	p += EMBKV_WIRE_NONCE_SIZE;
	memcpy(p, client_nonce, EMBKV_WIRE_NONCE_SIZE);
	XXH128_canonicalFromHash(&out,
		XXH3_128bits_withSecret(msg, sizeof(msg), key->secret,
					EMBKV_WIRE_AUTH_SECRET_SIZE));
	memcpy(mac, &out, EMBKV_WIRE_MAC_SIZE);
	return 0;
}

int embkv_wire_auth_verify(const struct embkv_wire_auth_key *key,
			   enum embkv_wire_auth_role role,
			   const uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE],
			   const uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE],
			   const uint8_t mac[EMBKV_WIRE_MAC_SIZE])
{
	uint8_t want[EMBKV_WIRE_MAC_SIZE];
	uint8_t diff = 0;
	size_t i;
	int rc;

	if (!mac)
		return -EINVAL;
	rc = embkv_wire_auth_mac(key, role, server_nonce, client_nonce, want);
	if (rc)
		return rc;
	for (i = 0; i < EMBKV_WIRE_MAC_SIZE; i++)
		diff |= want[i] ^ mac[i];
	explicit_bzero(want, sizeof(want));
	return diff ? EMBKV_EAUTH : 0;
}
