/*
 * embkv_scan: one page of one partition's live rows (SCAN, 0x25), for
 * export.
 *
 * What: the partition's server comes from the table's current shard map
 * (part_srv), the frame carries that server's table id and uid and the
 * map's epoch, exactly as the batch calls do (client/ops.c). A reply
 * ERROR EMBKV_ESTALE means the server did not serve the page: the map is
 * refreshed (hinted at that server), with a short backoff when no newer
 * map exists yet, and the same cursor is asked again, at most
 * max_retries times. A page is read-only, so asking it again is harmless.
 *
 * Why a separate file: SCAN names a partition and a cursor, not keys, so
 * none of ops.c's deduplication, routing by key or splitting applies.
 *
 * Invariants: the reply is checked before anything is copied: dim and
 * dtype are the table's, n is at most what was asked, and the next cursor
 * moves forward (or is EMBKV_SCAN_END), so a caller's loop always ends.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "client/client.h"

#define SCAN_BACKOFF_MS 10L
#define NS_PER_MS 1000000L

static void scan_backoff(uint32_t attempt)
{
	struct timespec ts = { 0, SCAN_BACKOFF_MS * NS_PER_MS *
				       (long)(attempt < 8 ? attempt + 1 : 8) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Rows per page to server: max, lowered to what its largest reply frame
 * carries. */
static uint32_t scan_cap(struct embkv_table_handle *t, uint32_t server,
			 uint32_t max)
{
	struct embkv_conn_limits lim;
	uint32_t cap = max, fit;
	int one;

	if (cap > EMBKV_WIRE_MAX_KEYS)
		cap = EMBKV_WIRE_MAX_KEYS;
	embkv_client_server_limits(t->c, server, &lim, &one);
	fit = embkv_wire_scan_reply_max_rows(
		lim.max_reply > EMBKV_WIRE_HDR_SIZE ?
			lim.max_reply - EMBKV_WIRE_HDR_SIZE :
			EMBKV_WIRE_MAX_BODY,
		t->attr.dim, t->attr.dtype);
	if (fit < cap)
		cap = fit;
	return cap ? cap : 1;
}

/* One SCAN to the server map m gives part. 0 (page consumed), or the
 * rpc's status (EMBKV_ESTALE with *stale_server set when the server said
 * so), or EMBKV_EPROTO for a reply that does not fit the request. */
static int scan_once(struct embkv_table_handle *t, struct embkv_shardmap *m,
		     uint32_t part, uint64_t *cursor, uint32_t max,
		     uint64_t *keys, void *values, uint32_t *n,
		     uint32_t *stale_server)
{
	struct embkv_client *c = t->c;
	uint32_t s = m->part_srv[part];
	struct embkv_wire_scan_req q = {
		.table_id = m->tref[s].table_id,
		.uid = m->tref[s].uid,
		.part = part,
		.cursor = *cursor,
	};
	struct embkv_wire_scan_reply rep;
	struct embkv_rpc r;
	uint8_t *body;
	size_t row;
	int rc;

	q.max = scan_cap(t, m->srv[s], max);
	embkv_rpc_init_pooled(c, &r, m->srv[s]);
	rc = embkv_rpc_frame(&r, EMBKV_WIRE_OP_SCAN, m->epoch,
			     EMBKV_WIRE_SCAN_REQ_SIZE, &body);
	if (!rc)
		rc = embkv_wire_scan_req_encode(&q, body,
						EMBKV_WIRE_SCAN_REQ_SIZE);
	if (!rc)
		rc = embkv_rpc_exchange(c, &r, 1, embkv_client_deadline(c));
	if (!rc)
		rc = r.status;
	if (rc == EMBKV_ESTALE && r.has_reply)
		*stale_server = r.server;
	if (rc)
		goto out;
	rc = embkv_wire_scan_reply_decode(r.body, r.body_len, &rep);
	if (rc)
		goto out;
	if (rep.dim != t->attr.dim || rep.dtype != (uint32_t)t->attr.dtype ||
	    rep.n > q.max ||
	    (rep.next != EMBKV_SCAN_END && rep.next <= q.cursor)) {
		rc = EMBKV_EPROTO;
		goto out;
	}
	row = t->payload_bytes;
	if (rep.n) {
		memcpy(keys, rep.keys, (size_t)rep.n * sizeof(uint64_t));
		memcpy(values, rep.vals, (size_t)rep.n * row);
	}
	*n = rep.n;
	*cursor = rep.next;
out:
	embkv_rpc_release(c, &r);
	return rc;
}

int embkv_scan(struct embkv_table_handle *t, uint32_t part, uint64_t *cursor,
	       uint32_t max, uint64_t *keys, void *values, uint32_t *n)
{
	uint32_t attempt;
	int rc, newer;

	if (!t || !cursor || !n || !max || !keys || !values)
		return -EINVAL;
	*n = 0;
	if (part >= t->attr.partitions)
		return -EINVAL;
	if (*cursor == EMBKV_SCAN_END)
		return 0;
	for (attempt = 0;; attempt++) {
		struct embkv_shardmap *m = embkv_shardmap_get(t);
		uint32_t stale = UINT32_MAX;
		uint64_t used = m->epoch;

		rc = scan_once(t, m, part, cursor, max, keys, values, n,
			       &stale);
		embkv_shardmap_put(m);
		if (rc != EMBKV_ESTALE || stale == UINT32_MAX)
			return rc;
		if (attempt >= t->c->max_retries)
			return EMBKV_ESTALE;
		rc = embkv_shardmap_refresh(t, stale, &newer);
		if (rc)
			return rc;
		m = embkv_shardmap_get(t);
		if (m->epoch == used)
			scan_backoff(attempt);
		embkv_shardmap_put(m);
	}
}
