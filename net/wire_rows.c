/*
 * Wire codec, row batches: PULL requests and replies, PUSH / ASSIGN rows,
 * ERASE and HITS (net/wire.c has the codec's design). Arrays sit at 8-byte
 * aligned body offsets and are returned as pointers into the body.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/wire.h"
#include "net/wire_priv.h"

/* PULL ------------------------------------------------------------------------ */

static int pull_req_check(const struct embkv_wire_pull_req *m, size_t *len)
{
	int rc;

	if (!m)
		return -EINVAL;
	rc = dim_check(m->dim, -EINVAL);
	if (rc)
		return rc;
	if (m->mode >= EMBKV_WIRE_PULL_MODE_COUNT || !m->uid)
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

uint32_t embkv_wire_pull_req_max_rows(size_t max_body)
{
	return keys_fit(max_body, EMBKV_WIRE_PULL_REQ_KEYS, U64_SIZE);
}

static void pull_req_write(uint8_t *body, const struct embkv_wire_pull_req *m)
{
	put_u32(body + EMBKV_WIRE_PULL_REQ_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_PULL_REQ_DIM, m->dim);
	put_u32(body + EMBKV_WIRE_PULL_REQ_N, m->n);
	body[EMBKV_WIRE_PULL_REQ_MODE] = m->mode;
	memset(body + EMBKV_WIRE_PULL_REQ_RESERVED, 0, PULL_REQ_RESERVED_LEN);
	put_u64(body + EMBKV_WIRE_PULL_REQ_UID, m->uid);
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
	uint64_t uid;
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
	uid = get_u64(body + EMBKV_WIRE_PULL_REQ_UID);
	if (!uid || len != pull_req_bytes(n))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_PULL_REQ_TABLE);
	out->uid = uid;
	out->dim = dim;
	out->n = n;
	out->mode = mode;
	out->keys = (const uint64_t *)(const void *)
		(body + EMBKV_WIRE_PULL_REQ_KEYS);
	return 0;
}

static int pull_reply_check(uint32_t n, uint32_t dim, uint32_t dtype,
			    size_t *len)
{
	int rc = dim_check(dim, -EINVAL);
	size_t es = embkv_dtype_size((enum embkv_dtype)dtype);
	uint64_t bytes;

	if (rc)
		return rc;
	if (!es)
		return -EINVAL;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	bytes = pull_reply_bytes(n, dim, es);
	if (bytes > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	*len = (size_t)bytes;
	return 0;
}

int embkv_wire_pull_reply_size_dt(uint32_t n, uint32_t dim, uint32_t dtype,
				  size_t *len)
{
	return len ? pull_reply_check(n, dim, dtype, len) : -EINVAL;
}

int embkv_wire_pull_reply_size(uint32_t n, uint32_t dim, size_t *len)
{
	return embkv_wire_pull_reply_size_dt(n, dim, EMBKV_DTYPE_F32, len);
}

uint32_t embkv_wire_pull_reply_max_rows_dt(size_t max_body, uint32_t dim,
					   uint32_t dtype)
{
	uint64_t room = max_body < EMBKV_WIRE_MAX_BODY ? max_body
						      : EMBKV_WIRE_MAX_BODY;
	size_t es = embkv_dtype_size((enum embkv_dtype)dtype);
	uint32_t n;

	if (dim_check(dim, -EINVAL) || !es)
		return 0;
	/* found[n] padded to 8 costs n to n + 7 bytes: start from the
	 * unpadded count, then step down past the padding (a step or two:
	 * each row is at least 3 bytes). */
	n = keys_fit(max_body, PULL_REPLY_FIXED, 1 + (uint64_t)dim * es);
	while (n && pull_reply_bytes(n, dim, es) > room)
		n--;
	return n;
}

uint32_t embkv_wire_pull_reply_max_rows(size_t max_body, uint32_t dim)
{
	return embkv_wire_pull_reply_max_rows_dt(max_body, dim,
						 EMBKV_DTYPE_F32);
}

/* Writes the fixed fields and the zero padding after found[]. */
static void pull_reply_write(uint8_t *body, uint32_t n, uint32_t dim,
			     uint32_t dtype)
{
	size_t pad_at = PULL_REPLY_FIXED + (size_t)n;

	put_u32(body + EMBKV_WIRE_PULL_REPLY_N, n);
	put_u16(body + EMBKV_WIRE_PULL_REPLY_DIM, (uint16_t)dim);
	body[EMBKV_WIRE_PULL_REPLY_DTYPE] = (uint8_t)dtype;
	body[EMBKV_WIRE_PULL_REPLY_RESERVED] = 0;
	memset(body + pad_at, 0, (size_t)pull_reply_vals_off(n) - pad_at);
}

int embkv_wire_pull_reply_encode(const struct embkv_wire_pull_reply *m,
				 uint8_t *body, size_t cap)
{
	size_t len, i;
	int rc = m ? pull_reply_check(m->n, m->dim, m->dtype, &len) : -EINVAL;

	if (!rc && m->n && (!m->found || !m->vals))
		rc = -EINVAL;
	for (i = 0; !rc && i < m->n; i++)
		if (m->found[i] > 1)
			rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	pull_reply_write(body, m->n, m->dim, m->dtype);
	if (!m->n)
		return 0;
	memcpy(body + PULL_REPLY_FIXED, m->found, m->n);
	memcpy(body + pull_reply_vals_off(m->n), m->vals,
	       (size_t)m->n * m->dim *
		       embkv_dtype_size((enum embkv_dtype)m->dtype));
	return 0;
}

int embkv_wire_pull_reply_prepare_dt(uint32_t n, uint32_t dim, uint32_t dtype,
				     uint8_t *body, size_t cap,
				     uint8_t **found, void **vals)
{
	size_t len;
	int rc = pull_reply_check(n, dim, dtype, &len);

	if (!rc && (!found || !vals || (uintptr_t)body % BODY_ALIGN))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	pull_reply_write(body, n, dim, dtype);
	*found = body + PULL_REPLY_FIXED;
	*vals = body + pull_reply_vals_off(n);
	return 0;
}

int embkv_wire_pull_reply_prepare(uint32_t n, uint32_t dim, uint8_t *body,
				  size_t cap, uint8_t **found, float **vals)
{
	void *v = NULL;
	int rc = embkv_wire_pull_reply_prepare_dt(n, dim, EMBKV_DTYPE_F32,
						  body, cap, found,
						  vals ? &v : NULL);

	if (!rc)
		*vals = v;
	return rc;
}

int embkv_wire_pull_reply_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_pull_reply *out)
{
	uint32_t n, dim, dtype;
	uint64_t i, vals_off;
	size_t es;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < PULL_REPLY_FIXED)
		return EMBKV_EPROTO;
	n = get_u32(body + EMBKV_WIRE_PULL_REPLY_N);
	dim = get_u16(body + EMBKV_WIRE_PULL_REPLY_DIM);
	dtype = body[EMBKV_WIRE_PULL_REPLY_DTYPE];
	rc = dim_check(dim, EMBKV_EPROTO);
	if (rc)
		return rc;
	if (body[EMBKV_WIRE_PULL_REPLY_RESERVED])
		return EMBKV_EPROTO;
	es = embkv_dtype_size((enum embkv_dtype)dtype);
	if (!es)
		return EMBKV_EPROTO;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	if (len != pull_reply_bytes(n, dim, es))
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
	out->dtype = dtype;
	out->found = body + PULL_REPLY_FIXED;
	out->vals = body + vals_off;
	return 0;
}

/* PULL_LAND ------------------------------------------------------------------- */

static int land_req_check(const struct embkv_wire_land_req *m, size_t *len)
{
	int rc;

	if (!m)
		return -EINVAL;
	if (m->stride < 32 || m->stride % 8 ||
	    m->stride > EMBKV_WIRE_LAND_MAX_STRIDE)
		return -EINVAL;
	rc = pull_req_check(&m->pull, len);
	if (!rc)
		*len += EMBKV_WIRE_LAND_REQ_PULL;
	return rc;
}

int embkv_wire_land_req_size(const struct embkv_wire_land_req *m, size_t *len)
{
	return len ? land_req_check(m, len) : -EINVAL;
}

uint32_t embkv_wire_land_req_max_rows(size_t max_body)
{
	return keys_fit(max_body,
			EMBKV_WIRE_LAND_REQ_PULL + EMBKV_WIRE_PULL_REQ_KEYS,
			U64_SIZE);
}

int embkv_wire_land_req_prepare(const struct embkv_wire_land_req *m,
				uint8_t *body, size_t cap, uint64_t **keys)
{
	size_t len;
	int rc = land_req_check(m, &len);

	if (!rc && (!keys || (uintptr_t)body % BODY_ALIGN))
		rc = -EINVAL;
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u64(body + EMBKV_WIRE_LAND_REQ_ADDR, m->addr);
	put_u32(body + EMBKV_WIRE_LAND_REQ_RKEY, m->rkey);
	put_u32(body + EMBKV_WIRE_LAND_REQ_STRIDE, m->stride);
	return embkv_wire_pull_req_prepare(&m->pull,
					   body + EMBKV_WIRE_LAND_REQ_PULL,
					   cap - EMBKV_WIRE_LAND_REQ_PULL, keys);
}

int embkv_wire_land_req_decode(const uint8_t *body, size_t len,
			       struct embkv_wire_land_req *out)
{
	uint32_t stride;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_LAND_REQ_PULL)
		return EMBKV_EPROTO;
	stride = get_u32(body + EMBKV_WIRE_LAND_REQ_STRIDE);
	if (stride < 32 || stride % 8 || stride > EMBKV_WIRE_LAND_MAX_STRIDE)
		return EMBKV_EPROTO;
	rc = embkv_wire_pull_req_decode(body + EMBKV_WIRE_LAND_REQ_PULL,
					len - EMBKV_WIRE_LAND_REQ_PULL,
					&out->pull);
	if (rc)
		return rc;
	out->addr = get_u64(body + EMBKV_WIRE_LAND_REQ_ADDR);
	out->rkey = get_u32(body + EMBKV_WIRE_LAND_REQ_RKEY);
	out->stride = stride;
	return 0;
}

int embkv_wire_land_reply_size(uint32_t n, size_t *len)
{
	if (!len)
		return -EINVAL;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	*len = (size_t)pull_reply_vals_off(n);
	return 0;
}

int embkv_wire_land_reply_prepare(uint32_t n, uint32_t dim, uint32_t dtype,
				  uint8_t *body, size_t cap, uint8_t **state)
{
	size_t len;
	int rc = dim_check(dim, -EINVAL);

	if (!rc && (!embkv_dtype_size((enum embkv_dtype)dtype) || !state))
		rc = -EINVAL;
	if (!rc)
		rc = embkv_wire_land_reply_size(n, &len);
	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	pull_reply_write(body, n, dim, dtype);
	*state = body + PULL_REPLY_FIXED;
	memset(*state, 0, n);
	return 0;
}

int embkv_wire_land_reply_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_land_reply *out)
{
	uint32_t n, dim, dtype;
	uint64_t i;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < PULL_REPLY_FIXED)
		return EMBKV_EPROTO;
	n = get_u32(body + EMBKV_WIRE_PULL_REPLY_N);
	dim = get_u16(body + EMBKV_WIRE_PULL_REPLY_DIM);
	dtype = body[EMBKV_WIRE_PULL_REPLY_DTYPE];
	rc = dim_check(dim, EMBKV_EPROTO);
	if (rc)
		return rc;
	if (body[EMBKV_WIRE_PULL_REPLY_RESERVED] ||
	    !embkv_dtype_size((enum embkv_dtype)dtype))
		return EMBKV_EPROTO;
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	if (len != pull_reply_vals_off(n))
		return EMBKV_EPROTO;
	for (i = PULL_REPLY_FIXED; i < PULL_REPLY_FIXED + (uint64_t)n; i++)
		if (body[i] >= EMBKV_WIRE_LAND_STATE_COUNT)
			return EMBKV_EPROTO;
	for (; i < len; i++)
		if (body[i])
			return EMBKV_EPROTO;
	out->n = n;
	out->dim = dim;
	out->dtype = dtype;
	out->state = body + PULL_REPLY_FIXED;
	return 0;
}

uint32_t embkv_wire_land_min_stride(uint32_t dim, uint32_t dtype)
{
	size_t es = embkv_dtype_size((enum embkv_dtype)dtype);

	if (dim_check(dim, -EINVAL) || !es)
		return 0;
	return (uint32_t)align_up(24 + (uint64_t)dim * es, 8);
}

/* PUSH / ASSIGN ------------------------------------------------------------------ */

static int rows_req_check(const struct embkv_wire_rows_req *m, size_t *len)
{
	uint64_t bytes;
	int rc;

	if (!m || !m->uid)
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

uint32_t embkv_wire_rows_req_max_rows(size_t max_body, uint32_t dim)
{
	if (dim_check(dim, -EINVAL))
		return 0;
	return keys_fit(max_body, EMBKV_WIRE_ROWS_REQ_KEYS,
			U64_SIZE + (uint64_t)dim * F32_SIZE);
}

static void rows_req_write(uint8_t *body, const struct embkv_wire_rows_req *m)
{
	put_u32(body + EMBKV_WIRE_ROWS_REQ_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_ROWS_REQ_DIM, m->dim);
	put_u32(body + EMBKV_WIRE_ROWS_REQ_N, m->n);
	put_u32(body + EMBKV_WIRE_ROWS_REQ_RESERVED, 0);
	put_u64(body + EMBKV_WIRE_ROWS_REQ_UID, m->uid);
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
	uint64_t uid;
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
	uid = get_u64(body + EMBKV_WIRE_ROWS_REQ_UID);
	if (get_u32(body + EMBKV_WIRE_ROWS_REQ_RESERVED) || !uid ||
	    len != rows_req_bytes(n, dim))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_ROWS_REQ_TABLE);
	out->uid = uid;
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
	if (!m || !m->uid)
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

uint32_t embkv_wire_erase_req_max_rows(size_t max_body)
{
	return keys_fit(max_body, EMBKV_WIRE_ERASE_REQ_KEYS, U64_SIZE);
}

static void erase_req_write(uint8_t *body,
			    const struct embkv_wire_erase_req *m)
{
	put_u32(body + EMBKV_WIRE_ERASE_REQ_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_ERASE_REQ_N, m->n);
	put_u64(body + EMBKV_WIRE_ERASE_REQ_UID, m->uid);
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
	erase_req_write(body, m);
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
	erase_req_write(body, m);
	*keys = (uint64_t *)(void *)(body + EMBKV_WIRE_ERASE_REQ_KEYS);
	return 0;
}

int embkv_wire_erase_req_decode(const uint8_t *body, size_t len,
				struct embkv_wire_erase_req *out)
{
	uint32_t n;
	uint64_t uid;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_ERASE_REQ_KEYS)
		return EMBKV_EPROTO;
	n = get_u32(body + EMBKV_WIRE_ERASE_REQ_N);
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	uid = get_u64(body + EMBKV_WIRE_ERASE_REQ_UID);
	if (!uid || len != erase_req_bytes(n))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_ERASE_REQ_TABLE);
	out->uid = uid;
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
	if (!m || !m->uid)
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

static void hits_write(uint8_t *body, const struct embkv_wire_hits *m)
{
	put_u32(body + EMBKV_WIRE_HITS_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_HITS_N, m->n);
	put_u64(body + EMBKV_WIRE_HITS_UID, m->uid);
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
	hits_write(body, m);
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
	hits_write(body, m);
	*keys = (uint64_t *)(void *)(body + EMBKV_WIRE_HITS_KEYS);
	*counts = (uint32_t *)(void *)(body + hits_counts_off(m->n));
	return 0;
}

int embkv_wire_hits_decode(const uint8_t *body, size_t len,
			   struct embkv_wire_hits *out)
{
	uint32_t n;
	uint64_t uid;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_HITS_KEYS)
		return EMBKV_EPROTO;
	n = get_u32(body + EMBKV_WIRE_HITS_N);
	if (n > EMBKV_WIRE_MAX_KEYS)
		return EMBKV_ELIMIT;
	uid = get_u64(body + EMBKV_WIRE_HITS_UID);
	if (!uid || len != hits_bytes(n))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_HITS_TABLE);
	out->uid = uid;
	out->n = n;
	out->keys = (const uint64_t *)(const void *)
		(body + EMBKV_WIRE_HITS_KEYS);
	out->counts = (const uint32_t *)(const void *)
		(body + hits_counts_off(n));
	return 0;
}
