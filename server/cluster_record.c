/*
 * The cluster catalog's etcd records (server/cluster_priv.h).
 *
 * What: a table record (P tables/<name>: uid, state, attributes as their
 * TABLE_CREATE encoding in hex, epoch, member ids, partition placement)
 * parsed and written with jansson, and member records (P nodes/<id>,
 * P members/<id>: id and address) read into sorted lists.
 * Why apart: pure functions over strings, checked in full, that the
 * thread and the admin requests both use.
 * Invariant: a parsed table record is whole and valid (attributes pass
 * embkv_table_attr_check, every placement names one of its members), or
 * it is refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "server/cluster_priv.h"
#include <jansson.h>

void cl_uid_hex(uint64_t uid, char out[UID_HEX])
{
	snprintf(out, UID_HEX, "%016" PRIx64, uid);
}

/* Logs etcd's state when it changes (0: reachable). */
/* ---- table records ------------------------------------------------------ */

void cl_table_free(struct ctable *t)
{
	free(t->members);
	free(t->parts);
	memset(t, 0, sizeof(*t));
}

/* Parses and checks a P tables/<name> value; name must match. 0 or
 * EMBKV_EPROTO (or -ENOMEM). */
int cl_table_parse(const char *name, const char *value, size_t len,
			struct ctable *t)
{
	uint8_t wire[ATTR_WIRE_MAX];
	json_t *root, *members, *parts, *v;
	const char *uid_s, *state, *attr_s;
	json_error_t jerr;
	int n, rc = EMBKV_EPROTO;

	memset(t, 0, sizeof(*t));
	root = json_loadb(value, len, 0, &jerr);
	if (!root)
		return EMBKV_EPROTO;
	if (json_unpack(root, "{s:s, s:s, s:s, s:o, s:o, s:o}", "uid", &uid_s,
			"state", &state, "attr", &attr_s, "epoch", &v,
			"members", &members, "parts", &parts))
		goto out;
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		goto out;
	t->epoch = (uint64_t)json_integer_value(v);
	if (strlen(uid_s) != 16 || embkv_hex_decode(uid_s, wire, 8) != 8)
		goto out;
	for (int i = 0; i < 8; i++)
		t->uid = t->uid << 8 | wire[i];
	if (!t->uid)
		goto out;
	t->ready = !strcmp(state, "ready");
	if (!t->ready && strcmp(state, "creating"))
		goto out;
	n = embkv_hex_decode(attr_s, wire, sizeof(wire));
	if (n < 0 || embkv_wire_table_attr_decode(wire, (size_t)n, &t->attr) ||
	    embkv_table_attr_check(&t->attr) ||
	    strncmp(t->attr.name, name, EMBKV_TABLE_NAME_MAX))
		goto out;
	if (!json_is_array(members) || !json_is_array(parts) ||
	    !json_array_size(members) ||
	    json_array_size(members) > EMBKV_WIRE_MAX_SERVERS ||
	    json_array_size(parts) != t->attr.partitions)
		goto out;
	t->nmembers = (uint32_t)json_array_size(members);
	t->members = calloc(t->nmembers, sizeof(*t->members));
	t->parts = calloc(t->attr.partitions, sizeof(*t->parts));
	if (!t->members || !t->parts) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < t->nmembers; i++) {
		v = json_array_get(members, i);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > UINT32_MAX)
			goto out;
		t->members[i] = (uint32_t)json_integer_value(v);
		for (uint32_t k = 0; k < i; k++)   /* each member once */
			if (t->members[k] == t->members[i])
				goto out;
	}
	v = json_object_get(root, "spread");
	t->spread = t->nmembers;
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > EMBKV_WIRE_MAX_SERVERS)
			goto out;
		t->spread = (uint32_t)json_integer_value(v);
	}
	for (uint32_t p = 0; p < t->attr.partitions; p++) {
		v = json_array_get(parts, p);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= t->nmembers)
			goto out;
		t->parts[p] = (uint16_t)json_integer_value(v);
	}
	rc = 0;
out:
	json_decref(root);
	if (rc)
		cl_table_free(t);
	return rc;
}

/* The JSON value of t (malloc'ed), or NULL. */
char *cl_table_json(const struct ctable *t)
{
	uint8_t wire[ATTR_WIRE_MAX];
	char hex[2 * ATTR_WIRE_MAX + 1], uid[UID_HEX];
	json_t *root, *members = json_array(), *parts = json_array();
	size_t len;
	char *out = NULL;

	if (!members || !parts ||
	    embkv_wire_table_attr_size(&t->attr, &len) || len > sizeof(wire) ||
	    embkv_wire_table_attr_encode(&t->attr, wire, sizeof(wire)))
		goto fail;
	embkv_hex_encode(wire, len, hex);
	cl_uid_hex(t->uid, uid);
	for (uint32_t i = 0; i < t->nmembers; i++)
		if (json_array_append_new(members, json_integer(t->members[i])))
			goto fail;
	for (uint32_t p = 0; p < t->attr.partitions; p++)
		if (json_array_append_new(parts, json_integer(t->parts[p])))
			goto fail;
	root = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:i, s:s, s:i, s:s, "
			 "s:i, s:I, s:s}",
			 "uid", uid, "state", t->ready ? "ready" : "creating",
			 "attr", hex, "epoch", (json_int_t)t->epoch,
			 "members", members, "parts", parts,
			 "spread", (int)(t->spread ? t->spread : t->nmembers),
			 "name", t->attr.name, "dim", (int)t->attr.dim,
			 "dtype", embkv_dtype_name(t->attr.dtype),
			 "partitions", (int)t->attr.partitions,
			 "capacity", (json_int_t)t->attr.capacity,
			 "optimizer", embkv_optimizer_name(t->attr.opt.type));
	if (!root)
		return NULL; /* json_pack took members and parts */
	out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return out;
fail:
	json_decref(members);
	json_decref(parts);
	return NULL;
}

/* ---- member records ----------------------------------------------------- */

static int node_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct cl_node *)a)->id,
		 y = ((const struct cl_node *)b)->id;

	return x < y ? -1 : x > y;
}

/* A member record (P nodes/ or P members/ value): true and *out. */
bool cl_node_parse(const char *value, size_t len, struct cl_node *out)
{
	json_t *root = json_loadb(value, len, 0, NULL);
	const char *addr;
	json_int_t id;
	bool ok;

	ok = root && !json_unpack(root, "{s:I, s:s}", "id", &id, "address",
				  &addr) &&
	     id >= 0 && id <= UINT32_MAX &&
	     addr[0] && strlen(addr) <= EMBKV_WIRE_ADDR_MAX;
	if (ok) {
		out->id = (uint32_t)id;
		strcpy(out->addr, addr);
	}
	json_decref(root);
	return ok;
}

/* Puts n into the sorted list (replacing one of its id); false on
 * -ENOMEM. */
bool cl_node_upsert(struct cl_node **list, uint32_t *n,
			const struct cl_node *nn)
{
	struct cl_node *v;

	for (uint32_t i = 0; i < *n; i++)
		if ((*list)[i].id == nn->id) {
			(*list)[i] = *nn;
			return true;
		}
	v = realloc(*list, sizeof(*v) * (*n + 1));
	if (!v)
		return false;
	v[(*n)++] = *nn;
	qsort(v, *n, sizeof(*v), node_cmp);
	*list = v;
	return true;
}

void cl_node_remove(struct cl_node *list, uint32_t *n, uint32_t id)
{
	for (uint32_t i = 0; i < *n; i++)
		if (list[i].id == id) {
			memmove(&list[i], &list[i + 1],
				sizeof(*list) * (*n - i - 1));
			(*n)--;
			return;
		}
}

/* The records of kvs under pfx (P nodes/ or P members/), by id. */
void cl_nodes_read(const char *pfx, const struct embkv_etcd_kvs *kvs,
		       struct cl_node **out, uint32_t *nout)
{
	size_t plen = strlen(pfx);
	struct cl_node *nodes = calloc(kvs->n ? kvs->n : 1, sizeof(*nodes));
	uint32_t n = 0;

	if (!nodes)
		return;
	for (size_t i = 0; i < kvs->n; i++) {
		const struct embkv_etcd_kv *kv = &kvs->kv[i];

		if (!strncmp(kv->key, pfx, plen) &&
		    cl_node_parse(kv->value, kv->value_len, &nodes[n]))
			n++;
	}
	qsort(nodes, n, sizeof(*nodes), node_cmp);
	free(*out);
	*out = nodes;
	*nout = n;
}

/*
 * Publishes the cluster's membership as the server's map: the live
 * members by id (this one among them even before it registered), epoch
 * 0, which tells a client that tables are created and dropped through
 * etcd (any one member does it for all).
 */
