/*
 * Checkpoints, the coordinator side (include/embkv/embkv.h, "Checkpoints";
 * the files and the crash model: server/CHECKPOINT.md).
 *
 * What: create asks the owner of every partition of every table for that
 * partition's file (CKPT_PART), builds the manifest from the answers and
 * hands it to every server (CKPT_COMMIT), which write it last. Restore
 * reads a manifest, creates missing tables with its attributes, and asks
 * the server that holds each partition now to load it (CKPT_LOAD). list,
 * verify and delete ask every server and merge the answers.
 *
 * Why in the library: a trainer takes a checkpoint at the end of an epoch
 * without shelling out; embkvctl and the Python module call the same code.
 *
 * Invariants:
 * - One checkpoint id (ms since the epoch, above every id the servers
 *   list) ties every server's files together; the manifest names each
 *   file by (table uid, partition), never by server.
 * - The manifest is sent only after every partition's file was written
 *   and fsync'ed; a create that fails before leaves no manifest, so the
 *   checkpoint is never listed as complete nor loaded.
 * - Requests go out in rounds of at most one per server, so a server
 *   works through its partitions one at a time and progress is reported
 *   after every round.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "client/client.h"

#define CK_ROUND_MS (30u * 60u * 1000u)   /* one partition's file, at most */

uint64_t embkv_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int embkv_res_fail(struct embkv_ckpt_result *res, int status,
		   const char *fmt, ...)
{
	va_list ap;

	if (res && !res->error[0]) {
		va_start(ap, fmt);
		vsnprintf(res->error, sizeof(res->error), fmt, ap);
		va_end(ap);
	}
	return status;
}

void embkv_ckpt_attr_init(struct embkv_ckpt_attr *a)
{
	memset(a, 0, sizeof(*a));
}

static int jreq_build(struct embkv_jreq *q, uint32_t server, uint8_t op,
		      const json_t *body, const void *raw, size_t raw_len,
		      bool blob, void *user)
{
	char *text = json_dumps(body, JSON_COMPACT);
	uint8_t *out;
	size_t len, tl;
	int rc;

	memset(q, 0, sizeof(*q));
	embkv_rpc_init(&q->rpc, server);
	q->user = user;
	if (!text)
		return -ENOMEM;
	tl = strlen(text);
	len = blob ? 4 + tl + raw_len : tl;
	rc = tl > EMBKV_WIRE_MAX_JSON ? EMBKV_ELIMIT
		: embkv_rpc_frame(&q->rpc, op, 0, len, &out);
	if (!rc && blob) {
		out[0] = (uint8_t)tl;
		out[1] = (uint8_t)(tl >> 8);
		out[2] = (uint8_t)(tl >> 16);
		out[3] = (uint8_t)(tl >> 24);
		memcpy(out + 4, text, tl);
		if (raw_len)
			memcpy(out + 4 + tl, raw, raw_len);
	} else if (!rc) {
		memcpy(out, text, tl);
	}
	free(text);
	return rc;
}

int embkv_jreq_init(struct embkv_jreq *q, uint32_t server, uint8_t op,
		    const json_t *body, void *user)
{
	return jreq_build(q, server, op, body, NULL, 0, false, user);
}

int embkv_jreq_init_blob(struct embkv_jreq *q, uint32_t server, uint8_t op,
			 json_t *body, const void *raw, size_t raw_len)
{
	if (json_object_set_new(body, "n", json_integer((json_int_t)raw_len)))
		return -ENOMEM;
	return jreq_build(q, server, op, body, raw, raw_len, true, NULL);
}

/* Sends n requests (at most one per server for order) and parses the
 * replies; each q's rpc.status says how it went, its msg why. */
void embkv_jreq_run(struct embkv_client *c, struct embkv_jreq *q, uint32_t n,
		     uint32_t timeout_ms)
{
	struct embkv_rpc *rpcs = calloc(n ? n : 1, sizeof(*rpcs));

	if (!rpcs) {
		for (uint32_t i = 0; i < n; i++)
			q[i].rpc.status = -ENOMEM;
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		rpcs[i] = q[i].rpc;
	embkv_rpc_exchange(c, rpcs, n, embkv_now_ms() + timeout_ms);
	for (uint32_t i = 0; i < n; i++) {
		struct embkv_rpc *r = &rpcs[i];

		q[i].rpc = *r;
		embkv_client_rpc_seen(c, r);
		if (r->status && r->has_reply &&
		    r->rhdr.opcode == EMBKV_WIRE_OP_ERROR) {
			struct embkv_wire_error e;

			if (!embkv_wire_error_decode(r->body, r->body_len, &e))
				snprintf(q[i].msg, sizeof(q[i].msg), "%.*s",
					 (int)e.msg.len, e.msg.ptr);
		}
		if (!r->status) {
			const uint8_t *jb = r->body;
			size_t jl = r->body_len;
			json_error_t je;

			/* blobs were checked by the codec: JSON, then bytes */
			if (r->rhdr.opcode == (EMBKV_WIRE_OP_MOVE_READ |
					       EMBKV_WIRE_OP_REPLY) ||
			    r->rhdr.opcode == (EMBKV_WIRE_OP_REPL_SNAP |
					       EMBKV_WIRE_OP_REPLY) ||
			    r->rhdr.opcode == (EMBKV_WIRE_OP_REPL_PULL |
					       EMBKV_WIRE_OP_REPLY))
				embkv_wire_blob_split(r->body, r->body_len, &jb,
						      &jl, &q[i].raw,
						      &q[i].raw_len);
			q[i].reply = json_loadb((const char *)jb, jl, 0, &je);
			if (!json_is_object(q[i].reply)) {
				json_decref(q[i].reply);
				q[i].reply = NULL;
				q[i].rpc.status = EMBKV_EPROTO;
				snprintf(q[i].msg, sizeof(q[i].msg),
					 "malformed reply: %s", je.text);
			}
		}
		if (q[i].rpc.status && !q[i].msg[0])
			snprintf(q[i].msg, sizeof(q[i].msg), "%s",
				 embkv_strerror(q[i].rpc.status));
	}
	free(rpcs);
}

void embkv_jreq_clear(struct embkv_jreq *q)
{
	embkv_rpc_clear(&q->rpc);
	json_decref(q->reply);
	q->reply = NULL;
}

/* One request to every server: replies in q[0..nservers). */
int embkv_jreq_ask_all(struct embkv_client *c, uint8_t op, const json_t *body,
		   struct embkv_jreq **out, uint32_t *n)
{
	uint32_t ns = embkv_client_server_count(c);
	struct embkv_jreq *q = calloc(ns ? ns : 1, sizeof(*q));
	int rc = 0;

	if (!q)
		return -ENOMEM;
	for (uint32_t i = 0; i < ns && !rc; i++)
		rc = embkv_jreq_init(&q[i], i, op, body, NULL);
	if (rc) {
		for (uint32_t i = 0; i < ns; i++)
			embkv_jreq_clear(&q[i]);
		free(q);
		return rc;
	}
	embkv_jreq_run(c, q, ns, c->request_timeout_ms);
	*out = q;
	*n = ns;
	return 0;
}

void embkv_jreq_ask_free(struct embkv_jreq *q, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		embkv_jreq_clear(&q[i]);
	free(q);
}

static uint64_t jget(const json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) && json_integer_value(v) > 0
		       ? (uint64_t)json_integer_value(v) : 0;
}

/* ---- list ---------------------------------------------------------------------- */

/* Merges every server's CKPT_LIST: {"checkpoints": [summary + "servers"
 * (how many have its manifest)], "incomplete": [ids], "servers": n}. */
static int list_merged(struct embkv_client *c, json_t **out,
		       struct embkv_ckpt_result *res)
{
	json_t *body = json_object(), *all = json_array(), *inc = json_array();
	struct embkv_jreq *q = NULL;
	uint32_t n = 0, answered = 0;
	int rc = body && all && inc ? embkv_jreq_ask_all(c, EMBKV_WIRE_OP_CKPT_LIST, body,
					      &q, &n)
				    : -ENOMEM;

	for (uint32_t i = 0; !rc && i < n; i++) {
		size_t j, k;
		json_t *s, *x;

		if (q[i].rpc.status) {
			rc = embkv_res_fail(res, q[i].rpc.status, "%s: %s",
				 embkv_client_server_addr(c, i), q[i].msg);
			break;
		}
		answered++;
		json_array_foreach(json_object_get(q[i].reply, "checkpoints"),
				   j, s) {
			uint64_t id = jget(s, "id");
			bool found = false;

			json_array_foreach(all, k, x)
				if (jget(x, "id") == id) {
					json_object_set_new(x, "servers",
						json_integer((json_int_t)
							jget(x, "servers") + 1));
					found = true;
				}
			if (!found && id) {
				json_t *cp = json_deep_copy(s);

				if (cp) {
					json_object_set_new(cp, "servers",
							    json_integer(1));
					json_array_append_new(all, cp);
				}
			}
		}
		json_array_foreach(json_object_get(q[i].reply, "incomplete"),
				   j, s) {
			bool found = false;

			json_array_foreach(inc, k, x)
				if (json_equal(x, s))
					found = true;
			if (!found)
				json_array_append(inc, s);
		}
	}
	if (!rc) {
		/* sort by id (a few entries) */
		size_t m = json_array_size(all);

		for (size_t i = 1; i < m; i++)
			for (size_t j = i; j > 0 &&
			     jget(json_array_get(all, j - 1), "id") >
			     jget(json_array_get(all, j), "id"); j--) {
				json_t *a = json_incref(json_array_get(all, j));

				json_array_remove(all, j);
				json_array_insert_new(all, j - 1, a);
			}
		*out = json_pack("{s:O, s:O, s:I}", "checkpoints", all,
				 "incomplete", inc, "servers",
				 (json_int_t)answered);
		if (!*out)
			rc = -ENOMEM;
	}
	if (q)
		embkv_jreq_ask_free(q, n);
	json_decref(body);
	json_decref(all);
	json_decref(inc);
	return rc;
}

int embkv_checkpoint_list(struct embkv_client *c, char **json,
			  struct embkv_ckpt_result *res)
{
	json_t *l;
	int rc;

	if (!c || !json)
		return -EINVAL;
	if (res)
		memset(res, 0, sizeof(*res));
	rc = list_merged(c, &l, res);
	if (rc)
		return rc;
	*json = json_dumps(l, JSON_INDENT(2));
	json_decref(l);
	return *json ? 0 : -ENOMEM;
}

/* The newest checkpoint complete on every server that answered (0: none),
 * and the largest id seen at all. */
static int newest(struct embkv_client *c, uint64_t *complete, uint64_t *any,
		  struct embkv_ckpt_result *res)
{
	json_t *l, *x;
	size_t i;
	int rc = list_merged(c, &l, res);
	uint64_t ns;

	if (rc)
		return rc;
	ns = jget(l, "servers");
	*complete = *any = 0;
	json_array_foreach(json_object_get(l, "checkpoints"), i, x) {
		uint64_t id = jget(x, "id");

		if (jget(x, "servers") == ns && id > *complete)
			*complete = id;
		if (id > *any)
			*any = id;
	}
	json_array_foreach(json_object_get(l, "incomplete"), i, x)
		if (json_is_integer(x) && (uint64_t)json_integer_value(x) > *any)
			*any = (uint64_t)json_integer_value(x);
	json_decref(l);
	return 0;
}

/* "newest", a decimal id, or a checkpoint's name: its id. */
static int resolve(struct embkv_client *c, const char *which, uint64_t *id,
		   struct embkv_ckpt_result *res)
{
	json_t *l, *x;
	size_t i;
	char *end;
	uint64_t any;
	int rc;

	if (!which || !*which || !strcmp(which, "newest")) {
		rc = newest(c, id, &any, res);
		if (!rc && !*id)
			rc = embkv_res_fail(res, -ENOENT, "no complete checkpoint");
		return rc;
	}
	errno = 0;
	*id = strtoull(which, &end, 10);
	if (!*end && !errno && *id)
		return 0;
	rc = list_merged(c, &l, res);
	if (rc)
		return rc;
	*id = 0;
	json_array_foreach(json_object_get(l, "checkpoints"), i, x) {
		const char *nm = json_string_value(json_object_get(x, "name"));

		if (nm && !strcmp(nm, which) && jget(x, "id") > *id)
			*id = jget(x, "id");
	}
	json_decref(l);
	return *id ? 0 : embkv_res_fail(res, -ENOENT, "no checkpoint named %s", which);
}

/* ---- create -------------------------------------------------------------------- */

struct ck_part {
	uint32_t table, part, server;   /* server: client index */
	uint64_t uid;
	json_t *entry;                  /* the manifest entry, once written */
};

static bool wanted(const struct embkv_ckpt_attr *a, const char *name)
{
	if (!a || !a->ntables)
		return true;
	for (uint32_t i = 0; i < a->ntables; i++)
		if (!strcmp(a->tables[i], name))
			return true;
	return false;
}

static void progress(const struct embkv_ckpt_attr *a, const char *phase,
		     uint32_t done, uint32_t total, uint64_t rows,
		     uint64_t bytes, uint64_t t0)
{
	struct embkv_ckpt_progress p = {
		.phase = phase, .parts_done = done, .parts_total = total,
		.rows = rows, .bytes = bytes, .elapsed_ms = embkv_now_ms() - t0,
	};

	if (a && a->progress)
		a->progress(a->progress_ctx, &p);
}

/* Runs one request per partition, in rounds of one per server.
 * make(ctx, part, body) fills a request; took(ctx, part, reply) takes an
 * answer. */
static int run_parts(struct embkv_client *c, struct ck_part *parts,
		     uint32_t nparts, uint8_t op,
		     json_t *(*make)(void *ctx, const struct ck_part *p),
		     int (*took)(void *ctx, struct ck_part *p, json_t *reply,
				 uint64_t *rows, uint64_t *bytes),
		     void *ctx, const struct embkv_ckpt_attr *a,
		     const char *phase, struct embkv_ckpt_result *res,
		     uint64_t *rows, uint64_t *bytes)
{
	uint32_t ns = embkv_client_server_count(c), done = 0;
	uint32_t *next = calloc(ns ? ns : 1, sizeof(*next));
	struct embkv_jreq *q = calloc(ns ? ns : 1, sizeof(*q));
	uint64_t t0 = embkv_now_ms();
	int rc = next && q ? 0 : -ENOMEM;

	*rows = *bytes = 0;
	while (!rc && done < nparts) {
		uint32_t n = 0;

		/* the next partition of each server */
		for (uint32_t s = 0; s < ns && !rc; s++) {
			while (next[s] < nparts && parts[next[s]].server != s)
				next[s]++;
			if (next[s] < nparts) {
				json_t *b = make(ctx, &parts[next[s]]);

				rc = b ? embkv_jreq_init(&q[n], s, op, b,
						   &parts[next[s]]) : -ENOMEM;
				json_decref(b);
				next[s]++;
				n++;
			}
		}
		if (rc) {
			for (uint32_t i = 0; i < n; i++)
				embkv_jreq_clear(&q[i]);
			break;
		}
		embkv_jreq_run(c, q, n, CK_ROUND_MS);
		for (uint32_t i = 0; i < n; i++) {
			struct ck_part *p = q[i].user;

			if (!rc && q[i].rpc.status)
				rc = embkv_res_fail(res, q[i].rpc.status, "%s: %s",
					 embkv_client_server_addr(c, p->server),
					 q[i].msg);
			else if (!rc)
				rc = took(ctx, p, q[i].reply, rows, bytes);
			embkv_jreq_clear(&q[i]);
			done++;
		}
		progress(a, phase, done, nparts, *rows, *bytes, t0);
	}
	free(next);
	free(q);
	return rc;
}

struct create_ctx {
	uint64_t id, base;
	struct embkv_ckpt_result *res;
};

static json_t *make_part(void *ctx, const struct ck_part *p)
{
	struct create_ctx *x = ctx;
	char uh[17];

	snprintf(uh, sizeof(uh), "%016" PRIx64, p->uid);
	return json_pack("{s:I, s:I, s:s, s:I}", "id", (json_int_t)x->id,
			 "base", (json_int_t)x->base, "uid", uh,
			 "part", (json_int_t)p->part);
}

static int took_part(void *ctx, struct ck_part *p, json_t *reply,
		     uint64_t *rows, uint64_t *bytes)
{
	struct create_ctx *x = ctx;
	char uh[17];

	if (!json_is_string(json_object_get(reply, "file")))
		return embkv_res_fail(x->res, EMBKV_EPROTO, "a server's CKPT_PART reply "
			   "names no file");
	snprintf(uh, sizeof(uh), "%016" PRIx64, p->uid);
	p->entry = json_deep_copy(reply);
	if (!p->entry)
		return -ENOMEM;
	json_object_del(p->entry, "ms");
	json_object_set_new(p->entry, "part", json_integer(p->part));
	json_object_set_new(p->entry, "uid", json_string(uh));
	*rows += jget(reply, "rows");
	*bytes += jget(reply, "bytes");
	return 0;
}

/* The table's attributes as the manifest keeps them: readable fields and
 * the TABLE_CREATE encoding in hex (what a restore creates from). */
static json_t *table_json(const struct embkv_table_attr *a, uint64_t epoch)
{
	uint8_t wire[512];
	char hex[2 * sizeof(wire) + 1];
	size_t len;

	if (embkv_wire_table_attr_size(a, &len) || len > sizeof(wire) ||
	    embkv_wire_table_attr_encode(a, wire, len))
		return NULL;
	embkv_hex_encode(wire, len, hex);
	return json_pack("{s:s, s:I, s:s, s:I, s:I, s:s, s:s, s:I, s:[]}",
			 "name", a->name, "dim", (json_int_t)a->dim,
			 "dtype", embkv_dtype_name(a->dtype),
			 "partitions", (json_int_t)a->partitions,
			 "capacity", (json_int_t)a->capacity,
			 "optimizer", embkv_optimizer_name(a->opt.type),
			 "attr", hex, "epoch", (json_int_t)epoch, "parts");
}

/* Opens the tables to checkpoint: handles in *ts, their partitions in
 * *parts (grouped by table). */
static int open_tables(struct embkv_client *c, const struct embkv_ckpt_attr *a,
		       struct embkv_table_handle ***ts, uint32_t *nt,
		       struct ck_part **parts, uint32_t *np,
		       struct embkv_ckpt_result *res)
{
	struct embkv_table_summary *sum = NULL;
	uint32_t count = 0, k = 0, total = 0;
	int rc = embkv_table_list(c, NULL, 0, &count);

	*ts = NULL;
	*parts = NULL;
	*nt = *np = 0;
	if (rc)
		return embkv_res_fail(res, rc, "cannot list the tables: %s",
			   embkv_strerror(rc));
	sum = calloc(count ? count : 1, sizeof(*sum));
	*ts = calloc(count ? count : 1, sizeof(**ts));
	if (!sum || !*ts) {
		free(sum);
		return -ENOMEM;
	}
	rc = embkv_table_list(c, sum, count, &count);
	for (uint32_t i = 0; !rc && i < count; i++) {
		if (!wanted(a, sum[i].name))
			continue;
		rc = embkv_table_open(c, sum[i].name, &(*ts)[k]);
		if (rc) {
			embkv_res_fail(res, rc, "cannot open table %s: %s", sum[i].name,
			    embkv_strerror(rc));
			break;
		}
		total += embkv_table_attr_get((*ts)[k])->partitions;
		k++;
	}
	for (uint32_t i = 0; !rc && a && i < a->ntables; i++) {
		bool found = false;

		for (uint32_t j = 0; j < k; j++)
			if (!strcmp(embkv_table_attr_get((*ts)[j])->name,
				    a->tables[i]))
				found = true;
		if (!found)
			rc = embkv_res_fail(res, EMBKV_ENOTABLE, "no table %s",
				 a->tables[i]);
	}
	free(sum);
	*nt = k;
	if (rc)
		return rc;
	*parts = calloc(total ? total : 1, sizeof(**parts));
	if (!*parts)
		return -ENOMEM;
	for (uint32_t i = 0; i < k; i++) {
		struct embkv_shardmap *m = embkv_shardmap_get((*ts)[i]);

		for (uint32_t p = 0; p < m->nparts; p++) {
			struct ck_part *cp = &(*parts)[(*np)++];
			uint32_t ms = m->part_srv[p];

			cp->table = i;
			cp->part = p;
			cp->server = m->srv[ms];
			cp->uid = m->tref[ms].uid;
		}
		embkv_shardmap_put(m);
	}
	return 0;
}

static void close_tables(struct embkv_table_handle **ts, uint32_t nt,
			 struct ck_part *parts, uint32_t np)
{
	for (uint32_t i = 0; i < nt; i++)
		embkv_table_close(ts[i]);
	free(ts);
	for (uint32_t i = 0; parts && i < np; i++)
		json_decref(parts[i].entry);
	free(parts);
}

/* Every server writes the manifest; then one of them records the
 * checkpoint as etcd's newest (cluster mode; a no-op without etcd), so
 * etcd never names a checkpoint that is not complete everywhere. */
static int commit_all(struct embkv_client *c, uint64_t id, json_t *manifest,
		      struct embkv_ckpt_result *res)
{
	json_t *body = json_pack("{s:I, s:b, s:O}", "id", (json_int_t)id,
				 "record", 0, "manifest", manifest);
	struct embkv_jreq *q;
	uint32_t n;
	int rc = body ? embkv_jreq_ask_all(c, EMBKV_WIRE_OP_CKPT_COMMIT, body, &q, &n)
		      : -ENOMEM;

	if (rc) {
		json_decref(body);
		return rc;
	}
	for (uint32_t i = 0; i < n && !rc; i++)
		if (q[i].rpc.status)
			rc = embkv_res_fail(res, q[i].rpc.status, "%s: the manifest of "
				 "checkpoint %" PRIu64 " was not written: %s",
				 embkv_client_server_addr(c, i), id, q[i].msg);
	embkv_jreq_ask_free(q, n);
	json_object_set_new(body, "record", json_true());
	if (!rc && n) {
		struct embkv_jreq one;

		rc = embkv_jreq_init(&one, 0, EMBKV_WIRE_OP_CKPT_COMMIT, body, NULL);
		if (!rc)
			embkv_jreq_run(c, &one, 1, c->request_timeout_ms);
		rc = rc ? rc : one.rpc.status;
		if (rc)
			embkv_res_fail(res, rc, "%s: checkpoint %" PRIu64 " is written but "
			    "could not be recorded as the newest: %s",
			    embkv_client_server_addr(c, 0), id, one.msg);
		embkv_jreq_clear(&one);
	}
	json_decref(body);
	return rc;
}

/* A failed create: best effort, the servers that answer remove what they
 * wrote of it (never listed as complete anyway: it has no manifest). */
static void discard(struct embkv_client *c, uint64_t id)
{
	json_t *body = json_pack("{s:I, s:b}", "id", (json_int_t)id, "force",
				 1);
	struct embkv_jreq *q;
	uint32_t n;

	if (body && !embkv_jreq_ask_all(c, EMBKV_WIRE_OP_CKPT_DELETE, body, &q, &n))
		embkv_jreq_ask_free(q, n);
	json_decref(body);
}

int embkv_checkpoint_create(struct embkv_client *c,
			    const struct embkv_ckpt_attr *a,
			    struct embkv_ckpt_result *res)
{
	struct embkv_table_handle **ts = NULL;
	struct ck_part *parts = NULL;
	uint32_t nt = 0, np = 0;
	uint64_t complete, any, t0 = embkv_now_ms(), rows = 0, bytes = 0;
	struct embkv_ckpt_result dummy;
	struct create_ctx x;
	json_t *man = NULL, *tabs;
	int rc;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!c || (a && a->flags))
		return -EINVAL;
	rc = newest(c, &complete, &any, res);
	if (rc)
		return rc;
	x.res = res;
	x.id = embkv_wall_ms();
	if (x.id <= any)
		x.id = any + 1;
	x.base = a && a->incremental ? complete : 0;
	if (a && a->incremental && !x.base)
		return embkv_res_fail(res, -ENOENT, "no complete checkpoint to base an "
			   "increment on: take a full one first");
	rc = open_tables(c, a, &ts, &nt, &parts, &np, res);
	if (!rc)
		rc = run_parts(c, parts, np, EMBKV_WIRE_OP_CKPT_PART, make_part,
			       took_part, &x, a, "write", res, &rows, &bytes);
	if (rc)
		goto out;
	man = json_pack("{s:i, s:I, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:[]}",
			"format", 1, "id", (json_int_t)x.id,
			"name", a && a->name ? a->name : "",
			"created_ms", (json_int_t)x.id,
			"kind", x.base ? "incremental" : "full",
			"base", (json_int_t)x.base,
			"duration_ms", (json_int_t)(embkv_now_ms() - t0),
			"rows", (json_int_t)rows, "bytes", (json_int_t)bytes,
			"tables");
	tabs = json_object_get(man, "tables");
	for (uint32_t i = 0; man && i < nt; i++) {
		struct embkv_table_attr cur = *embkv_table_attr_get(ts[i]), now;
		uint64_t epoch = 0;
		json_t *tj;

		embkv_table_map(ts[i], &epoch, NULL, cur.partitions);
		/* the optimizer values the servers use now (set-table may
		 * have changed them since the open), not the open's */
		if (!embkv_table_locate(c, cur.name, &now, NULL, 0) &&
		    now.opt.type == cur.opt.type)
			cur.opt = now.opt;
		tj = table_json(&cur, epoch);
		if (!tj) {
			rc = -ENOMEM;
			goto out;
		}
		for (uint32_t p = 0; p < np; p++)
			if (parts[p].table == i)
				json_array_append(json_object_get(tj, "parts"),
						  parts[p].entry);
		json_array_append_new(tabs, tj);
	}
	rc = man ? commit_all(c, x.id, man, res) : -ENOMEM;
	if (!rc) {
		res->id = x.id;
		res->base = x.base;
		res->rows = rows;
		res->bytes = bytes;
		res->files = np;
		res->ms = embkv_now_ms() - t0;
	}
out:
	if (rc && !res->error[0])
		embkv_res_fail(res, rc, "%s", embkv_strerror(rc));
	if (rc && np)
		discard(c, x.id);
	json_decref(man);
	close_tables(ts, nt, parts, np);
	return rc;
}

/* ---- restore ------------------------------------------------------------------- */

/* The manifest of id from the first server that has it. */
static int get_manifest(struct embkv_client *c, uint64_t id, json_t **out,
			struct embkv_ckpt_result *res)
{
	json_t *body = json_pack("{s:I}", "id", (json_int_t)id);
	struct embkv_jreq *q;
	uint32_t n;
	int rc = body ? embkv_jreq_ask_all(c, EMBKV_WIRE_OP_CKPT_GET, body, &q, &n)
		      : -ENOMEM;

	json_decref(body);
	if (rc)
		return rc;
	*out = NULL;
	for (uint32_t i = 0; i < n && !*out; i++)
		if (!q[i].rpc.status)
			*out = json_incref(q[i].reply);
	if (!*out)
		rc = embkv_res_fail(res, n ? q[0].rpc.status : -ENOENT, "checkpoint %"
			 PRIu64 ": %s", id, n ? q[0].msg : "no server");
	embkv_jreq_ask_free(q, n);
	return rc;
}

struct load_ctx {
	uint64_t id;
	const char *mode;       /* "check", then "checked" */
	struct embkv_ckpt_result *res;
};

static json_t *make_load(void *ctx, const struct ck_part *p)
{
	struct load_ctx *x = ctx;
	char uh[17];

	snprintf(uh, sizeof(uh), "%016" PRIx64, p->uid);
	return json_pack("{s:I, s:s, s:I, s:b}", "id", (json_int_t)x->id,
			 "uid", uh, "part", (json_int_t)p->part, x->mode, 1);
}

static int took_load(void *ctx, struct ck_part *p, json_t *reply,
		     uint64_t *rows, uint64_t *bytes)
{
	(void)ctx;
	(void)p;
	*rows += jget(reply, "rows");
	*bytes += jget(reply, "bytes");
	return 0;
}

/* Makes sure the manifest's table t exists with its attributes. */
static int ensure_table(struct embkv_client *c, const json_t *t,
			struct embkv_ckpt_result *res)
{
	const char *hex = json_string_value(json_object_get(t, "attr"));
	const char *name = json_string_value(json_object_get(t, "name"));
	struct embkv_table_handle *h;
	struct embkv_table_attr a;
	uint8_t wire[512];
	int n, rc;

	n = hex ? embkv_hex_decode(hex, wire, sizeof(wire)) : -1;
	if (!name || n <= 0 ||
	    embkv_wire_table_attr_decode(wire, (size_t)n, &a) ||
	    embkv_table_attr_check(&a) || strcmp(a.name, name))
		return embkv_res_fail(res, EMBKV_EPROTO, "the manifest's table %s has bad "
			   "attributes", name ? name : "?");
	rc = embkv_table_open(c, name, &h);
	if (rc == EMBKV_ENOTABLE) {
		rc = embkv_table_create_remote(c, &a);
		return rc ? embkv_res_fail(res, rc, "cannot create table %s: %s", name,
				embkv_strerror(rc)) : 0;
	}
	if (rc)
		return embkv_res_fail(res, rc, "cannot open table %s: %s", name,
			   embkv_strerror(rc));
	{
		const struct embkv_table_attr *cur = embkv_table_attr_get(h);

		if (cur->dim != a.dim || cur->dtype != a.dtype ||
		    cur->partitions != a.partitions ||
		    cur->opt.type != a.opt.type ||
		    cur->hash_seed != a.hash_seed)
			rc = embkv_res_fail(res, -EINVAL, "table %s exists with other "
				 "attributes (dim %u, %u partitions, %s) than "
				 "the checkpoint's (dim %u, %u partitions, "
				 "%s): drop it first", name, cur->dim,
				 cur->partitions,
				 embkv_optimizer_name(cur->opt.type), a.dim,
				 a.partitions, embkv_optimizer_name(a.opt.type));
	}
	embkv_table_close(h);
	return rc;
}

int embkv_checkpoint_restore(struct embkv_client *c, const char *which,
			     const struct embkv_ckpt_attr *a,
			     struct embkv_ckpt_result *res)
{
	struct embkv_table_handle **ts = NULL;
	struct ck_part *parts = NULL;
	struct embkv_ckpt_result dummy;
	struct embkv_ckpt_attr sel;
	const char **names = NULL;
	uint32_t nt = 0, np = 0, nn = 0;
	uint64_t t0 = embkv_now_ms(), rows = 0, bytes = 0;
	struct load_ctx x;
	json_t *man = NULL, *t;
	size_t i;
	int rc;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!c || (a && a->flags))
		return -EINVAL;
	x.res = res;
	rc = resolve(c, which, &x.id, res);
	if (!rc)
		rc = get_manifest(c, x.id, &man, res);
	if (rc)
		goto out;
	names = calloc(json_array_size(json_object_get(man, "tables")) + 1,
		       sizeof(*names));
	if (!names) {
		rc = -ENOMEM;
		goto out;
	}
	json_array_foreach(json_object_get(man, "tables"), i, t) {
		const char *nm = json_string_value(json_object_get(t, "name"));

		if (!nm || !wanted(a, nm))
			continue;
		rc = ensure_table(c, t, res);
		if (rc)
			goto out;
		names[nn++] = nm;
	}
	for (uint32_t k = 0; a && k < a->ntables; k++) {
		bool found = false;

		for (uint32_t j = 0; j < nn; j++)
			if (!strcmp(names[j], a->tables[k]))
				found = true;
		if (!found) {
			rc = embkv_res_fail(res, -ENOENT, "checkpoint %" PRIu64 " has no "
				 "table %s", x.id, a->tables[k]);
			goto out;
		}
	}
	if (!nn) {
		rc = embkv_res_fail(res, -ENOENT, "checkpoint %" PRIu64 " has no table",
			 x.id);
		goto out;
	}
	embkv_ckpt_attr_init(&sel);
	sel.tables = names;
	sel.ntables = nn;
	rc = open_tables(c, &sel, &ts, &nt, &parts, &np, res);
	/* every partition's chain verified before any is replaced: a bad
	 * file leaves the whole table as it was */
	x.mode = "check";
	if (!rc)
		rc = run_parts(c, parts, np, EMBKV_WIRE_OP_CKPT_LOAD, make_load,
			       took_load, &x, a, "verify", res, &rows, &bytes);
	x.mode = "checked";
	if (!rc)
		rc = run_parts(c, parts, np, EMBKV_WIRE_OP_CKPT_LOAD, make_load,
			       took_load, &x, a, "load", res, &rows, &bytes);
	if (!rc) {
		res->id = x.id;
		res->base = jget(man, "base");
		res->rows = rows;
		res->bytes = bytes;
		res->files = np;
		res->ms = embkv_now_ms() - t0;
	}
out:
	if (rc && !res->error[0])
		embkv_res_fail(res, rc, "%s", embkv_strerror(rc));
	free(names);
	json_decref(man);
	close_tables(ts, nt, parts, np);
	return rc;
}

/* ---- verify and delete ------------------------------------------------------------ */

int embkv_checkpoint_verify(struct embkv_client *c, const char *which,
			    char **json, struct embkv_ckpt_result *res)
{
	struct embkv_ckpt_result dummy;
	json_t *man = NULL, *body = NULL, *files = NULL, *out = NULL, *t, *p;
	struct embkv_jreq *q = NULL;
	uint32_t n = 0, nbad = 0;
	uint64_t id;
	size_t i, j;
	int rc;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!c || !json)
		return -EINVAL;
	*json = NULL;
	rc = resolve(c, which, &id, res);
	if (!rc)
		rc = get_manifest(c, id, &man, res);
	if (rc)
		goto out;
	body = json_pack("{s:I}", "id", (json_int_t)id);
	rc = body ? embkv_jreq_ask_all(c, EMBKV_WIRE_OP_CKPT_VERIFY, body, &q, &n)
		  : -ENOMEM;
	if (rc)
		goto out;
	files = json_array();
	/* every listed file: ok on some server, bad on none */
	json_array_foreach(json_object_get(man, "tables"), i, t)
		json_array_foreach(json_object_get(t, "parts"), j, p) {
		const char *f = json_string_value(json_object_get(p, "file"));
		const char *why = NULL;
		bool ok = false;

		for (uint32_t s = 0; f && s < n; s++) {
			size_t k;
			json_t *v;

			if (q[s].rpc.status)
				continue;
			json_array_foreach(json_object_get(q[s].reply,
							   "checked"), k, v) {
				const char *vf = json_string_value(
					json_object_get(v, "file"));

				if (!vf || strcmp(vf, f))
					continue;
				if (json_is_true(json_object_get(v, "ok")))
					ok = true;
				else if (!json_is_true(json_object_get(v,
								"missing")))
					why = json_string_value(
						json_object_get(v, "why"));
			}
		}
		if (why || !ok)
			nbad++;
		res->files++;
		res->rows += jget(p, "rows");
		res->bytes += jget(p, "bytes");
		json_array_append_new(files, json_pack("{s:s, s:s, s:s}",
			"table", json_string_value(json_object_get(t, "name")),
			"file", f ? f : "?",
			"status", why ? why : ok ? "ok" : "missing"));
	}
	for (uint32_t s = 0; s < n && !rc; s++)
		if (q[s].rpc.status && q[s].rpc.status != -ENOENT)
			rc = embkv_res_fail(res, q[s].rpc.status, "%s: %s",
				 embkv_client_server_addr(c, s), q[s].msg);
	out = json_pack("{s:I, s:I, s:I, s:o}", "id", (json_int_t)id,
			"files", (json_int_t)res->files, "bad",
			(json_int_t)nbad, "checked", files);
	files = NULL;
	*json = out ? json_dumps(out, JSON_INDENT(2)) : NULL;
	if (!*json && !rc)
		rc = -ENOMEM;
	res->id = id;
	if (!rc && nbad)
		rc = embkv_res_fail(res, EMBKV_EPROTO, "checkpoint %" PRIu64 ": %u of %"
			 PRIu64 " files missing or corrupt", id, nbad,
			 res->files);
out:
	if (q)
		embkv_jreq_ask_free(q, n);
	json_decref(files);
	json_decref(out);
	json_decref(body);
	json_decref(man);
	return rc;
}

int embkv_checkpoint_delete(struct embkv_client *c, const char *which,
			    int force, struct embkv_ckpt_result *res)
{
	struct embkv_ckpt_result dummy;
	json_t *body;
	struct embkv_jreq *q;
	uint32_t n, found = 0;
	uint64_t id;
	int rc;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!c || !which)
		return -EINVAL;
	errno = 0;
	{
		/* an exact id is deleted even when incomplete */
		char *end;

		id = strtoull(which, &end, 10);
		if (*end || errno || !id) {
			rc = resolve(c, which, &id, res);
			if (rc)
				return rc;
		}
	}
	body = json_pack("{s:I, s:b}", "id", (json_int_t)id, "force", !!force);
	rc = body ? embkv_jreq_ask_all(c, EMBKV_WIRE_OP_CKPT_DELETE, body, &q, &n)
		  : -ENOMEM;
	json_decref(body);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < n; i++) {
		if (q[i].rpc.status && !rc)
			rc = embkv_res_fail(res, q[i].rpc.status, "%s: %s",
				 embkv_client_server_addr(c, i), q[i].msg);
		else if (!q[i].rpc.status &&
			 json_is_true(json_object_get(q[i].reply, "found")))
			found++;
	}
	embkv_jreq_ask_free(q, n);
	res->id = id;
	if (!rc && !found)
		rc = embkv_res_fail(res, -ENOENT, "no checkpoint %" PRIu64, id);
	return rc;
}
