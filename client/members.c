/*
 * libembkv: learning the cluster's members from its servers, so that a
 * client (or embkvctl) needs one server address and learns the rest.
 *
 * Every embkvd knows every server of its cluster (--peers, or itself
 * alone) and answers SHARD_MAP for no table (EMBKV_WIRE_TABLE_ALL) with
 * that list and its own index in it (net/PROTOCOL.md 5.14). At creation
 * the client asks each server it was given, in one exchange:
 * - all answers must name the same members, in the same order: servers
 *   of two clusters given together are refused (EMBKV_ECLUSTER), since an
 *   admin call would otherwise act on a mix of both;
 * - each answering server is the member at its own index, whatever name
 *   the client reached it by: that member's address becomes its alias, so
 *   the member list and shard maps never add it a second time;
 * - the members the client does not know yet are added after the given
 *   servers, in the membership's order.
 * A server that answers with an error (one that reports no membership)
 * is left out: the client then knows only what it was given.
 * A membership of epoch 0 comes from members whose tables etcd
 * coordinates (embkvd --etcd): the client then sends a create or a drop
 * to one of them, which does it for all (server/cluster.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"

/* The first membership seen, which every other must equal. */
struct members {
	struct embkv_wire_shard_map ref;
	int have;
};

/* 1 when both list the same addresses in the same order. */
static int same_members(struct embkv_wire_shard_map a,
			struct embkv_wire_shard_map b)
{
	struct embkv_wire_str x, y;

	if (a.n_servers != b.n_servers)
		return 0;
	while (embkv_wire_shard_map_next_server(&a, &x)) {
		if (!embkv_wire_shard_map_next_server(&b, &y) ||
		    x.len != y.len || memcmp(x.ptr, y.ptr, x.len) != 0)
			return 0;
	}
	return 1;
}

/* The address of member k (k < m.n_servers; m is a copy, so the cursor
 * of the caller's map does not move). */
static void member_addr(struct embkv_wire_shard_map m, uint32_t k,
			struct embkv_wire_str *addr)
{
	for (uint32_t i = 0; i <= k; i++)
		embkv_wire_shard_map_next_server(&m, addr);
}

/* One server's answer: checked against the first, its own name noted. */
static int take_answer(struct embkv_client *c, const struct embkv_rpc *r,
		       struct members *mb)
{
	struct embkv_wire_shard_map m;
	struct embkv_wire_str self;
	int rc;

	rc = embkv_wire_shard_map_decode(r->body, r->body_len, &m);
	if (rc)
		return rc;
	if (m.table_id != EMBKV_WIRE_TABLE_ALL)
		return EMBKV_EPROTO;
	/* Members coordinated by etcd (epoch 0) may briefly disagree while
	 * one joins or its lease lapses (each always names itself): their
	 * lists are not compared. */
	if (mb->have && !(m.epoch == 0 && mb->ref.epoch == 0) &&
	    !same_members(mb->ref, m))
		return EMBKV_ECLUSTER;
	if (!mb->have) {
		mb->ref = m;
		mb->have = 1;
	}
	if (m.epoch == 0) /* a cluster whose tables etcd coordinates */
		__atomic_store_n(&c->coordinated, 1, __ATOMIC_RELAXED);
	member_addr(m, m.self, &self);
	return embkv_client_server_alias(c, r->server, self.ptr, self.len);
}

int embkv_members_learn(struct embkv_client *c, uint32_t ngiven,
			int allow_down)
{
	struct embkv_wire_shard_map all;
	struct members mb = { .have = 0 };
	struct embkv_wire_str addr;
	struct embkv_rpc *rpcs;
	uint32_t n = 0, i, idx;
	uint8_t *body;
	int rc = 0;

	rpcs = calloc(ngiven, sizeof(*rpcs));
	if (!rpcs)
		return -ENOMEM;
	for (i = 0; i < ngiven && !rc; i++) {
		if (embkv_client_server_status(c, i))
			continue; /* not reachable: create decides */
		embkv_rpc_init(&rpcs[n], i);
		rc = embkv_rpc_frame(&rpcs[n], EMBKV_WIRE_OP_SHARD_MAP, 0,
				     EMBKV_WIRE_TABLE_REF_SIZE, &body);
		if (!rc)
			rc = embkv_wire_table_ref_encode(
				&(struct embkv_wire_table_ref){
					.table_id = EMBKV_WIRE_TABLE_ALL },
				body, EMBKV_WIRE_TABLE_REF_SIZE);
		n++;
	}
	if (!rc)
		rc = embkv_rpc_exchange(c, rpcs, n, embkv_client_deadline(c));
	for (i = 0; i < n && !rc; i++) {
		const struct embkv_rpc *r = &rpcs[i];

		embkv_client_rpc_seen(c, r);
		if (r->status && !r->has_reply && !allow_down)
			rc = r->status;
		else if (!r->status)
			rc = take_answer(c, r, &mb);
	}
	if (rc || !mb.have)
		goto clear;
	all = mb.ref;
	while (!rc && embkv_wire_shard_map_next_server(&all, &addr))
		rc = embkv_client_server_find(c, addr.ptr, addr.len, &idx);
clear:
	for (i = 0; i < n; i++)
		embkv_rpc_clear(&rpcs[i]);
	free(rpcs);
	return rc;
}
