/*
 * Wire codec, SCAN (export): the request names one partition of a table
 * and a cursor; the reply carries the next cursor and a page of (key,
 * payload row) pairs, keys first, rows after, both 8-byte aligned in the
 * body (net/wire.c has the codec's design; net/PROTOCOL.md the layout).
 *
 * Why its own file: SCAN is partition-shaped, not key-shaped like the
 * batches of wire_rows.c, and carries the table's dtype so that a row is
 * dim x embkv_dtype_size(dtype) bytes (only fp32 exists today).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/wire.h"
#include "net/wire_priv.h"

/* Request -------------------------------------------------------------------- */

int embkv_wire_scan_req_encode(const struct embkv_wire_scan_req *m,
			       uint8_t *body, size_t cap)
{
	int rc;

	if (!m || !m->uid || !m->max)
		return -EINVAL;
	if (m->max > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	rc = enc_room(body, cap, EMBKV_WIRE_SCAN_REQ_SIZE);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_SCAN_REQ_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_SCAN_REQ_PART, m->part);
	put_u64(body + EMBKV_WIRE_SCAN_REQ_UID, m->uid);
	put_u64(body + EMBKV_WIRE_SCAN_REQ_CURSOR, m->cursor);
	put_u32(body + EMBKV_WIRE_SCAN_REQ_MAX, m->max);
	put_u32(body + EMBKV_WIRE_SCAN_REQ_RESERVED, 0);
	return 0;
}

int embkv_wire_scan_req_decode(const uint8_t *body, size_t len,
			       struct embkv_wire_scan_req *out)
{
	uint32_t max;
	uint64_t uid;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len != EMBKV_WIRE_SCAN_REQ_SIZE)
		return EMBKV_EPROTO;
	uid = get_u64(body + EMBKV_WIRE_SCAN_REQ_UID);
	max = get_u32(body + EMBKV_WIRE_SCAN_REQ_MAX);
	if (!uid || !max || get_u32(body + EMBKV_WIRE_SCAN_REQ_RESERVED))
		return EMBKV_EPROTO;
	if (max > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	out->table_id = get_u32(body + EMBKV_WIRE_SCAN_REQ_TABLE);
	out->part = get_u32(body + EMBKV_WIRE_SCAN_REQ_PART);
	out->uid = uid;
	out->cursor = get_u64(body + EMBKV_WIRE_SCAN_REQ_CURSOR);
	out->max = max;
	return 0;
}

/* Reply ---------------------------------------------------------------------- */

static uint64_t scan_vals_off(uint32_t n)
{
	return EMBKV_WIRE_SCAN_REPLY_KEYS + (uint64_t)n * U64_SIZE;
}

/* Bytes of one row; 0 for a bad dim or dtype. */
static uint64_t scan_row_bytes(uint32_t dim, uint32_t dtype)
{
	if (dim_check(dim, -EINVAL))
		return 0;
	return (uint64_t)dim * embkv_dtype_size((enum embkv_dtype)dtype);
}

static uint64_t scan_reply_bytes(uint32_t n, uint64_t row)
{
	return align_up(scan_vals_off(n) + (uint64_t)n * row, BODY_ALIGN);
}

static int scan_reply_check(uint32_t n, uint32_t dim, uint32_t dtype,
			    size_t *len)
{
	uint64_t row = scan_row_bytes(dim, dtype), bytes;

	if (!row)
		return dim > EMBKV_MAX_DIM ? EMBKV_ELIMIT : -EINVAL;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	bytes = scan_reply_bytes(n, row);
	if (bytes > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	*len = (size_t)bytes;
	return 0;
}

int embkv_wire_scan_reply_size(uint32_t n, uint32_t dim, uint32_t dtype,
			       size_t *len)
{
	return len ? scan_reply_check(n, dim, dtype, len) : -EINVAL;
}

uint32_t embkv_wire_scan_reply_max_rows(size_t max_body, uint32_t dim,
					uint32_t dtype)
{
	uint64_t row = scan_row_bytes(dim, dtype);
	uint64_t room = max_body < EMBKV_WIRE_MAX_BODY ? max_body
						      : EMBKV_WIRE_MAX_BODY;
	uint32_t n;

	if (!row)
		return 0;
	n = keys_fit(max_body, EMBKV_WIRE_SCAN_REPLY_KEYS, U64_SIZE + row);
	while (n && scan_reply_bytes(n, row) > room) /* the tail padding */
		n--;
	return n;
}

static void scan_reply_write(uint8_t *body, uint64_t next, uint32_t n,
			     uint32_t dim, uint32_t dtype, size_t len)
{
	uint64_t end = scan_vals_off(n) + (uint64_t)n * scan_row_bytes(dim,
								       dtype);

	put_u64(body + EMBKV_WIRE_SCAN_REPLY_NEXT, next);
	put_u32(body + EMBKV_WIRE_SCAN_REPLY_N, n);
	put_u32(body + EMBKV_WIRE_SCAN_REPLY_DIM, dim);
	put_u32(body + EMBKV_WIRE_SCAN_REPLY_DTYPE, dtype);
	put_u32(body + EMBKV_WIRE_SCAN_REPLY_RESERVED, 0);
	memset(body + end, 0, len - (size_t)end);
}

int embkv_wire_scan_reply_prepare(uint64_t next, uint32_t n, uint32_t dim,
				  uint32_t dtype, uint8_t *body, size_t cap,
				  uint64_t **keys, void **vals)
{
	size_t len;
	int rc = scan_reply_check(n, dim, dtype, &len);

	if (!rc && (!keys || !vals || (uintptr_t)body % BODY_ALIGN))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	scan_reply_write(body, next, n, dim, dtype, len);
	*keys = (uint64_t *)(void *)(body + EMBKV_WIRE_SCAN_REPLY_KEYS);
	*vals = body + scan_vals_off(n);
	return 0;
}

int embkv_wire_scan_reply_encode(const struct embkv_wire_scan_reply *m,
				 uint8_t *body, size_t cap)
{
	size_t len;
	int rc = m ? scan_reply_check(m->n, m->dim, m->dtype, &len) : -EINVAL;

	if (!rc && m->n && (!m->keys || !m->vals))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	scan_reply_write(body, m->next, m->n, m->dim, m->dtype, len);
	if (m->n) {
		memcpy(body + EMBKV_WIRE_SCAN_REPLY_KEYS, m->keys,
		       (size_t)m->n * U64_SIZE);
		memcpy(body + scan_vals_off(m->n), m->vals,
		       (size_t)(m->n * scan_row_bytes(m->dim, m->dtype)));
	}
	return 0;
}

int embkv_wire_scan_reply_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_scan_reply *out)
{
	uint32_t n, dim, dtype;
	uint64_t row, end;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_SCAN_REPLY_KEYS)
		return EMBKV_EPROTO;
	n = get_u32(body + EMBKV_WIRE_SCAN_REPLY_N);
	dim = get_u32(body + EMBKV_WIRE_SCAN_REPLY_DIM);
	dtype = get_u32(body + EMBKV_WIRE_SCAN_REPLY_DTYPE);
	rc = dim_check(dim, EMBKV_EPROTO);
	if (rc)
		return rc;
	row = scan_row_bytes(dim, dtype);
	if (!row || get_u32(body + EMBKV_WIRE_SCAN_REPLY_RESERVED))
		return EMBKV_EPROTO;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	if (len != scan_reply_bytes(n, row))
		return EMBKV_EPROTO;
	end = scan_vals_off(n) + (uint64_t)n * row;
	for (uint64_t i = end; i < len; i++)
		if (body[i])
			return EMBKV_EPROTO;
	out->next = get_u64(body + EMBKV_WIRE_SCAN_REPLY_NEXT);
	out->n = n;
	out->dim = dim;
	out->dtype = dtype;
	out->keys = (const uint64_t *)(const void *)
		(body + EMBKV_WIRE_SCAN_REPLY_KEYS);
	out->vals = body + scan_vals_off(n);
	return 0;
}
