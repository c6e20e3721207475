/*
 * Private to the wire codec (net/wire*.c): little-endian load/store at
 * named offsets, the bounded reader for variable-length sections, the
 * shared checks and the body-size arithmetic. See net/wire.c for the
 * codec's design.
 */
#ifndef EMBKV_NET_WIRE_PRIV_H
#define EMBKV_NET_WIRE_PRIV_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
#define TABLE_ENTRY_FIXED (2 * U32_SIZE + U64_SIZE) /* id, dim, uid */
#define LIST_COUNT_SIZE U32_SIZE
#define STATS_GROUP_FIXED (U32_SIZE + U16_SIZE)     /* table id, count */
#define STAT_PAIR_SIZE (U16_SIZE + U64_SIZE)        /* packed id, value */
#define PULL_REPLY_FIXED ((size_t)EMBKV_WIRE_PULL_REPLY_FOUND)
#define PULL_REQ_RESERVED_LEN \
	(EMBKV_WIRE_PULL_REQ_UID - EMBKV_WIRE_PULL_REQ_RESERVED)
#define ERROR_STATUS 0                             /* offset of i32 status */
#define ERROR_MSG (ERROR_STATUS + U32_SIZE)        /* offset of the message */

#define BUF_MIN_CAP 256u

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
static inline int rd_str(struct rd *r, uint32_t min, uint32_t max,
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

static inline int rd_name(struct rd *r, char name[EMBKV_TABLE_NAME_MAX])
{
	struct embkv_wire_str s;
	int rc = rd_str(r, 1, EMBKV_WIRE_NAME_LEN_MAX, &s);

	if (rc)
		return rc;
	memcpy(name, s.ptr, s.len);
	memset(name + s.len, 0, EMBKV_TABLE_NAME_MAX - s.len);
	return 0;
}

static inline uint8_t *put_str(uint8_t *p, const char *s, size_t len)
{
	put_u16(p, (uint16_t)len);
	memcpy(p + STR_LEN_SIZE, s, len);
	return p + STR_LEN_SIZE + len;
}

/* Length of a C-string table name to encode: 1..EMBKV_WIRE_NAME_LEN_MAX. */
static inline int name_len(const char *name, size_t *len)
{
	if (!name)
		return -EINVAL;
	*len = strnlen(name, EMBKV_TABLE_NAME_MAX);
	if (*len == EMBKV_TABLE_NAME_MAX)
		return EMBKV_ELIMIT;
	return *len ? 0 : -EINVAL;
}

/* Arguments every decoder checks first. */
static inline int dec_args(const uint8_t *body, size_t len, const void *out)
{
	if (!out || (!body && len))
		return -EINVAL;
	if ((uintptr_t)body % BODY_ALIGN)
		return -EINVAL;
	if (len > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	return 0;
}

static inline int enc_room(const uint8_t *body, size_t cap, size_t need)
{
	if (!body && need)
		return -EINVAL;
	return cap < need ? -ENOSPC : 0;
}

/* dim as received (0 is malformed) or as given (0 is invalid). */
static inline int dim_check(uint32_t dim, int zero_code)
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
static inline uint64_t pull_req_bytes(uint32_t n)
{
	return EMBKV_WIRE_PULL_REQ_KEYS + (uint64_t)n * U64_SIZE;
}

static inline uint64_t pull_reply_vals_off(uint32_t n)
{
	return align_up(PULL_REPLY_FIXED + (uint64_t)n, BODY_ALIGN);
}

/* es: bytes of one element (embkv_dtype_size of the reply's dtype) */
static inline uint64_t pull_reply_bytes(uint32_t n, uint32_t dim, size_t es)
{
	return pull_reply_vals_off(n) + (uint64_t)n * dim * es;
}

static inline uint64_t rows_vals_off(uint32_t n)
{
	return EMBKV_WIRE_ROWS_REQ_KEYS + (uint64_t)n * U64_SIZE;
}

static inline uint64_t rows_req_bytes(uint32_t n, uint32_t dim)
{
	return rows_vals_off(n) + (uint64_t)n * dim * F32_SIZE;
}

static inline uint64_t erase_req_bytes(uint32_t n)
{
	return EMBKV_WIRE_ERASE_REQ_KEYS + (uint64_t)n * U64_SIZE;
}

/* The most items of per_item bytes each that fit after fixed bytes in a
 * body of max_body bytes (and of EMBKV_WIRE_MAX_BODY), at most
 * EMBKV_WIRE_MAX_KEYS: the _max_rows functions of bodies without padding. */
static inline uint32_t keys_fit(size_t max_body, uint64_t fixed,
				uint64_t per_item)
{
	uint64_t room = max_body < EMBKV_WIRE_MAX_BODY ? max_body
						      : EMBKV_WIRE_MAX_BODY;
	uint64_t n;

	if (room < fixed)
		return 0;
	n = (room - fixed) / per_item;
	return n < EMBKV_WIRE_MAX_KEYS ? (uint32_t)n : EMBKV_WIRE_MAX_KEYS;
}

#endif
