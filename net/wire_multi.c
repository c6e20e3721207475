/*
 * MULTI_PULL and MULTI_PUSH bodies (net/PROTOCOL.md 5.25): several
 * tables' PULL or PUSH bodies for one server in one frame.
 *
 * What: a count, then sections framed by (len, status, epoch) and padded
 * to 8 bytes, each carrying a whole single-table body (a PULL or PUSH
 * request; a PULL reply, counts or an error message in a reply).
 *
 * Why sections hold the single-table bodies unchanged: the layouts of
 * rows, keys and counts stay defined (and validated) in one place
 * (net/wire_rows.c), so whatever changes them (row element types, new
 * limits) changes both paths alike, and the server and the client reuse
 * their PULL/PUSH code per section.
 *
 * Invariants: decoding never trusts a length: the count is checked
 * against EMBKV_WIRE_MAX_SECTIONS before anything is read, each section's
 * len against the bytes left before its body is looked at, padding and
 * reserved bytes must be zero, every section body goes through its own
 * decoder (which checks its own counts, dims and exact length), and the
 * sections must end exactly at the body's end. Section bodies sit at
 * offsets that are multiples of 8, as the inner decoders require.
 */
#include "net/wire_priv.h"

#define MULTI_FIXED ((size_t)EMBKV_WIRE_MULTI_SECTIONS)
#define SEC_FIXED ((uint64_t)EMBKV_WIRE_MULTI_SEC_BODY)

uint64_t embkv_wire_multi_sec_bytes(uint32_t len)
{
	return SEC_FIXED + align_up(len, BODY_ALIGN);
}

int embkv_wire_multi_encode_head(uint32_t count, uint8_t *body, size_t cap)
{
	int rc;

	if (!count || count > EMBKV_WIRE_MAX_SECTIONS)
		return -EINVAL;
	rc = enc_room(body, cap, MULTI_FIXED);
	if (rc)
		return rc;
	if ((uintptr_t)body % BODY_ALIGN)
		return -EINVAL;
	put_u32(body + EMBKV_WIRE_MULTI_COUNT, count);
	put_u32(body + EMBKV_WIRE_MULTI_RESERVED, 0);
	return 0;
}

int64_t embkv_wire_multi_sec_prepare(const struct embkv_wire_multi_sec *s,
				     uint8_t *at, size_t cap,
				     uint8_t **sec_body)
{
	uint64_t bytes;
	int rc;

	if (!s || !sec_body || (uintptr_t)at % BODY_ALIGN ||
	    s->len > EMBKV_WIRE_MAX_BODY || s->status > 0)
		return -EINVAL;
	bytes = embkv_wire_multi_sec_bytes(s->len);
	rc = enc_room(at, cap, bytes);
	if (rc)
		return rc;
	put_u32(at + EMBKV_WIRE_MULTI_SEC_LEN, s->len);
	put_u32(at + EMBKV_WIRE_MULTI_SEC_STATUS, (uint32_t)s->status);
	put_u64(at + EMBKV_WIRE_MULTI_SEC_EPOCH, s->epoch);
	memset(at + SEC_FIXED + s->len, 0, bytes - SEC_FIXED - s->len);
	*sec_body = at + SEC_FIXED;
	return (int64_t)bytes;
}

/* A section body as op (request or reply) carries it. */
static int sec_body_check(unsigned int op, int32_t status,
			  const uint8_t *b, uint32_t len)
{
	unsigned int req = op & ~(unsigned int)EMBKV_WIRE_OP_REPLY;
	struct embkv_wire_pull_req pr;
	struct embkv_wire_rows_req rr;
	struct embkv_wire_pull_reply pl;
	struct embkv_wire_count_reply cr;

	if (!(op & EMBKV_WIRE_OP_REPLY)) {
		if (status)
			return EMBKV_EPROTO;
		return req == EMBKV_WIRE_OP_MULTI_PULL
			       ? embkv_wire_pull_req_decode(b, len, &pr)
			       : embkv_wire_rows_req_decode(b, len, &rr);
	}
	if (status > 0)
		return EMBKV_EPROTO;
	if (status < 0) { /* an error message */
		if (len > EMBKV_WIRE_ERRMSG_MAX)
			return EMBKV_ELIMIT;
		return memchr(b, 0, len) ? EMBKV_EPROTO : 0;
	}
	return req == EMBKV_WIRE_OP_MULTI_PULL
		       ? embkv_wire_pull_reply_decode(b, len, &pl)
		       : embkv_wire_count_reply_decode(b, len, &cr);
}

int embkv_wire_multi_decode(unsigned int op, const uint8_t *body, size_t len,
			    struct embkv_wire_multi *out)
{
	unsigned int req = op & ~(unsigned int)EMBKV_WIRE_OP_REPLY;
	const uint8_t *p, *end;
	uint32_t count;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (req != EMBKV_WIRE_OP_MULTI_PULL && req != EMBKV_WIRE_OP_MULTI_PUSH)
		return -EINVAL;
	if (len < MULTI_FIXED)
		return EMBKV_EPROTO;
	count = get_u32(body + EMBKV_WIRE_MULTI_COUNT);
	if (!count || get_u32(body + EMBKV_WIRE_MULTI_RESERVED))
		return EMBKV_EPROTO;
	if (count > EMBKV_WIRE_MAX_SECTIONS)
		return EMBKV_ELIMIT;
	p = body + MULTI_FIXED;
	end = body + len;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t bytes;
		uint32_t slen;
		int32_t status;

		if ((size_t)(end - p) < SEC_FIXED)
			return EMBKV_EPROTO;
		slen = get_u32(p + EMBKV_WIRE_MULTI_SEC_LEN);
		status = (int32_t)get_u32(p + EMBKV_WIRE_MULTI_SEC_STATUS);
		bytes = embkv_wire_multi_sec_bytes(slen);
		if (bytes > (uint64_t)(end - p))
			return EMBKV_EPROTO;
		for (uint64_t k = SEC_FIXED + slen; k < bytes; k++)
			if (p[k])
				return EMBKV_EPROTO;
		rc = sec_body_check(op, status, p + SEC_FIXED, slen);
		if (rc)
			return rc;
		p += bytes;
	}
	if (p != end)
		return EMBKV_EPROTO;
	out->count = count;
	out->cur.p = body + MULTI_FIXED;
	out->cur.end = end;
	out->cur.left = count;
	return 0;
}

bool embkv_wire_multi_next(struct embkv_wire_multi *m,
			   struct embkv_wire_multi_sec *out)
{
	const uint8_t *p;

	if (!m || !out || !m->cur.left)
		return false;
	p = m->cur.p;
	out->len = get_u32(p + EMBKV_WIRE_MULTI_SEC_LEN);
	out->status = (int32_t)get_u32(p + EMBKV_WIRE_MULTI_SEC_STATUS);
	out->epoch = get_u64(p + EMBKV_WIRE_MULTI_SEC_EPOCH);
	out->body = p + SEC_FIXED;
	m->cur.p = p + embkv_wire_multi_sec_bytes(out->len);
	m->cur.left--;
	return true;
}
