/*
 * embkv_stats: asks every server for TABLE_LIST and STATS (all tables),
 * pipelined on one connection per server, all servers at once, and walks
 * the replies calling the user's function per counter.
 *
 * Table ids are per server, so each server's STATS groups are named with
 * that server's own TABLE_LIST. A server that fails is skipped (its error
 * returned at the end, and recorded for embkv_client_server_status), so
 * one dead server never hides the others. The callback runs after the
 * exchange, on the calling thread, with no lock and no connection held,
 * so it may call back into the library.
 *
 * embkv_server_config: CONFIG to one server, its JSON reply returned.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "client/client.h"

#define STAT_NAME_MAX 24u  /* "stat_65535" and table ids fit */

struct id_name {
	uint32_t id;
	char name[EMBKV_TABLE_NAME_MAX];
};

static int id_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct id_name *)a)->id;
	uint32_t y = ((const struct id_name *)b)->id;

	return x < y ? -1 : x > y;
}

/* The server's table names by id, sorted by id. */
static int names_of(const struct embkv_rpc *r, struct id_name **out,
		    uint32_t *n)
{
	struct embkv_wire_table_entry e;
	struct embkv_wire_table_list l;
	struct id_name *v;
	uint32_t i = 0;
	int rc;

	rc = r->status;
	if (!rc)
		rc = embkv_wire_table_list_decode(r->body, r->body_len, &l);
	if (rc)
		return rc;
	v = malloc((l.count ? l.count : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	while (embkv_wire_table_list_next(&l, &e)) {
		v[i].id = e.table_id;
		memcpy(v[i].name, e.name, sizeof(v[i].name));
		i++;
	}
	qsort(v, i, sizeof(*v), id_cmp);
	*out = v;
	*n = i;
	return 0;
}

static int report(const struct embkv_rpc *lr, const struct embkv_rpc *sr,
		  uint32_t server,
		  void (*fn)(void *ctx, uint32_t server, const char *table,
			     const char *name, uint64_t value),
		  void *ctx)
{
	struct id_name *names = NULL, key, *hit;
	char unknown_table[STAT_NAME_MAX], unknown_stat[STAT_NAME_MAX];
	struct embkv_wire_stats st;
	struct embkv_wire_stat s;
	uint32_t nnames = 0, tid;
	int rc;

	rc = sr->status;
	if (!rc)
		rc = embkv_wire_stats_decode(sr->body, sr->body_len, &st);
	if (!rc)
		rc = names_of(lr, &names, &nnames);
	if (rc)
		return rc;
	while (embkv_wire_stats_next(&st, &tid, &s)) {
		const char *table = NULL, *name = embkv_wire_stat_name(s.id);

		if (tid != EMBKV_WIRE_TABLE_ALL) {
			key.id = tid;
			hit = nnames ? bsearch(&key, names, nnames,
					       sizeof(*names), id_cmp)
				     : NULL;
			if (hit) {
				table = hit->name;
			} else { /* created after the list was taken */
				snprintf(unknown_table, sizeof(unknown_table),
					 "#%u", tid);
				table = unknown_table;
			}
		}
		if (!name) {
			snprintf(unknown_stat, sizeof(unknown_stat), "stat_%u",
				 (unsigned)s.id);
			name = unknown_stat;
		}
		fn(ctx, server, table, name, s.value);
	}
	free(names);
	return 0;
}

int embkv_stats(struct embkv_client *c,
		void (*fn)(void *ctx, uint32_t server, const char *table,
			   const char *name, uint64_t value),
		void *ctx)
{
	struct embkv_rpc *rpcs;
	uint32_t n, i;
	const struct embkv_wire_table_ref all = {
		.table_id = EMBKV_WIRE_TABLE_ALL,
	};
	uint8_t *body;
	int rc, err = 0;

	if (!c || !fn)
		return -EINVAL;
	n = embkv_client_server_count(c);
	rpcs = calloc(2 * (size_t)n, sizeof(*rpcs));
	if (!rpcs)
		return -ENOMEM;
	for (i = 0; i < 2 * n; i++)
		embkv_rpc_init(&rpcs[i], i / 2);
	for (i = 0; i < n; i++) {
		struct embkv_rpc *list = &rpcs[2 * i], *st = &rpcs[2 * i + 1];

		rc = embkv_rpc_frame(list, EMBKV_WIRE_OP_TABLE_LIST, 0, 0, &body);
		if (!rc)
			rc = embkv_rpc_frame(st, EMBKV_WIRE_OP_STATS, 0,
					     EMBKV_WIRE_TABLE_REF_SIZE, &body);
		if (!rc)
			rc = embkv_wire_table_ref_encode(
				&all, body, EMBKV_WIRE_TABLE_REF_SIZE);
		if (rc)
			goto clear;
	}
	rc = embkv_rpc_exchange(c, rpcs, 2 * n, embkv_client_deadline(c));
	if (rc)
		goto clear;
	for (i = 0; i < n; i++) {
		embkv_client_rpc_seen(c, &rpcs[2 * i + 1]);
		rc = report(&rpcs[2 * i], &rpcs[2 * i + 1], i, fn, ctx);
		if (rc && !err)
			err = rc;
	}
	rc = err;
clear:
	for (i = 0; i < 2 * n; i++)
		embkv_rpc_clear(&rpcs[i]);
	free(rpcs);
	return rc;
}

/* CONFIG: one server's configuration, the JSON text as the server sent it
 * (checked whole by the codec and parsed again here). */
int embkv_server_config(struct embkv_client *c, uint32_t index, char **json)
{
	struct embkv_jreq q;
	json_t *body;
	int rc;

	if (!c || !json || index >= embkv_client_server_count(c))
		return -EINVAL;
	*json = NULL;
	body = json_object();
	if (!body)
		return -ENOMEM;
	rc = embkv_jreq_init(&q, index, EMBKV_WIRE_OP_CONFIG, body, NULL);
	json_decref(body);
	if (!rc) {
		embkv_jreq_run(c, &q, 1, c->request_timeout_ms);
		rc = q.rpc.status;
	}
	if (!rc) {
		*json = json_dumps(q.reply, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (!*json)
			rc = -ENOMEM;
	}
	embkv_jreq_clear(&q);
	return rc;
}
