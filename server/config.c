/*
 * embkvd's CONFIG request (net/PROTOCOL.md section 5.24): the server's
 * effective configuration as one JSON object, for `embkvctl config`.
 *
 * What: the version, the bound listen addresses, threads, the memory limit
 * with what the tables use and what creates in progress reserve, each
 * table's charge, connection limits, every deadline and budget, the
 * metrics address, the data directory, the etcd settings, and the peers
 * (the server's membership map). The values are the ones in force (flags
 * after defaults, bound ports, not the command line's port 0).
 *
 * Why a file of its own: embkvd_create() drops its copies of the string
 * flags once they are used (etcd, cluster, data directory...), so the
 * ones CONFIG reports are kept here (embkvd_config_keep) and freed with
 * the server.
 *
 * Invariant: the token never appears in a reply, nor anything derived
 * from it; CONFIG says only whether one is required and which file it is
 * read from. With a token, CONFIG is served to authenticated connections
 * only, as every request but HELLO and AUTH (io.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "server/daemon.h"

struct embkvd_conf {
	char *etcd, *cluster, *advertise, *data_dir, *default_table;
	bool no_restore;
};

static int keep(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

int embkvd_config_keep(struct embkvd *s, const struct embkvd_attr *attr)
{
	struct embkvd_conf *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	s->conf = k;
	k->no_restore = attr->no_restore;
	if (keep(&k->etcd, attr->etcd) || keep(&k->cluster, attr->cluster) ||
	    keep(&k->advertise, attr->advertise) ||
	    keep(&k->data_dir, attr->data_dir) ||
	    keep(&k->default_table, attr->default_table))
		return -ENOMEM;
	return 0;
}

void embkvd_config_free(struct embkvd *s)
{
	struct embkvd_conf *k = s->conf;

	if (!k)
		return;
	free(k->etcd);
	free(k->cluster);
	free(k->advertise);
	free(k->data_dir);
	free(k->default_table);
	free(k);
	s->conf = NULL;
}

/* A string, or JSON null for NULL. */
static json_t *str_or_null(const char *v)
{
	return v ? json_string(v) : json_null();
}

/* "SCHEME://HOST:PORT" (brackets around an IPv6 host). */
static json_t *url(const char *scheme, const char *host, unsigned port,
		   const char *path)
{
	char buf[EMBKVD_HOST_MAX + 64];

	snprintf(buf, sizeof(buf),
		 strchr(host, ':') ? "%s://[%s]:%u%s" : "%s://%s:%u%s", scheme,
		 host, port, path);
	return json_string(buf);
}

static json_t *u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *listeners(const struct embkvd *s)
{
	json_t *a = json_array();

	if (a && s->attr.tcp)
		json_array_append_new(a, url("tcp", s->attr.host, s->port, ""));
	if (a && s->attr.rdma)
		json_array_append_new(a, url("rdma", s->attr.rdma_host,
					     s->rdma_port, ""));
	return a;
}

/* The limit, what published tables use, what creates in progress hold,
 * and what is left; each table's charge (its loaded partitions). */
static json_t *memory(struct embkvd *s, json_t **tables)
{
	struct embkv_catalog_entry *const *e;
	uint64_t limit = embkv_catalog_memory_limit(s->cat);
	uint64_t reserved = embkv_catalog_reserved(s->cat);
	uint64_t used = embkv_catalog_bytes(s->cat), taken = used + reserved;
	uint32_t n;

	*tables = json_array();
	rcu_read_lock();
	n = embkv_catalog_snapshot(s->cat, &e);
	for (uint32_t i = 0; *tables && i < n; i++) {
		const struct embkv_table *t = e[i]->table;
		char uid[17];

		snprintf(uid, sizeof(uid), "%016llx",
			 (unsigned long long)e[i]->uid);
		json_array_append_new(*tables, json_pack(
			"{s:s, s:s, s:I, s:I, s:I, s:I, s:I}",
			"name", t->attr.name, "uid", uid,
			"dim", (json_int_t)t->attr.dim,
			"partitions", (json_int_t)t->nparts,
			"partitions_held", (json_int_t)t->nloaded,
			"capacity", (json_int_t)t->attr.capacity,
			"memory_bytes", (json_int_t)__atomic_load_n(
				&e[i]->bytes, __ATOMIC_RELAXED)));
	}
	rcu_read_unlock();
	return json_pack("{s:o, s:I, s:I, s:o}",
			 "limit_bytes", limit ? u64(limit) : json_null(),
			 "used_bytes", (json_int_t)used,
			 "reserved_bytes", (json_int_t)reserved,
			 "free_bytes", !limit ? json_null()
				       : u64(limit > taken ? limit - taken : 0));
}

/* The server's membership map: every peer, and which one this is. */
static json_t *peers(struct embkvd *s)
{
	const struct embkvd_map *m;
	json_t *a = json_array();

	rcu_read_lock();
	m = embkvd_map_cur(&s->map);
	for (uint32_t i = 0; a && i < m->nservers; i++)
		json_array_append_new(a, json_pack(
			"{s:I, s:s, s:b}", "index", (json_int_t)i,
			"address", m->servers[i], "self", i == m->self));
	rcu_read_unlock();
	return a;
}

static json_t *cluster(const struct embkvd *s)
{
	const struct embkvd_conf *k = s->conf;

	if (!k->etcd)
		return json_null();
	return json_pack("{s:s, s:o, s:I, s:o, s:I, s:I}", "etcd", k->etcd,
			 "name", str_or_null(k->cluster),
			 "member_id", (json_int_t)s->attr.member_id,
			 "advertise", str_or_null(k->advertise),
			 "member_ttl_s", (json_int_t)s->attr.member_ttl_s,
			 "auto_recover_s",
			 (json_int_t)s->attr.auto_recover_s);
}

/* Every limit, deadline and budget of a connection (PROTOCOL.md 9.1). */
static json_t *limits(const struct embkvd *s)
{
	const struct embkvd_attr *a = &s->attr;

	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "max_conns", (json_int_t)a->max_conns,
			 "max_unauth_conns", (json_int_t)a->max_unauth_conns,
			 "auth_timeout_ms", (json_int_t)a->auth_timeout_ms,
			 "frame_timeout_ms", (json_int_t)a->frame_timeout_ms,
			 "inflight_bytes", (json_int_t)a->inflight_bytes,
			 "failed_logins_max",
			 (json_int_t)EMBKVD_GUARD_MAX_FAILS,
			 "failed_logins_window_ms",
			 (json_int_t)EMBKVD_GUARD_WINDOW_MS,
			 "failed_logins_block_ms",
			 (json_int_t)EMBKVD_GUARD_BLOCK_MS,
			 "rdma_reply_pool_bytes",
			 (json_int_t)a->rdma_reply_pool);
}

/* The whole document; NULL when out of memory. */
static json_t *config_json(struct embkvd *s)
{
	const struct embkvd_attr *a = &s->attr;
	const struct embkvd_conf *k = s->conf;
	json_t *tables = NULL, *mem = memory(s, &tables);

	return json_pack(
		"{s:s, s:I, s:I, s:o, s:I, s:I, s:o, s:o, s:o,"
		" s:{s:b, s:o}, s:o, s:o, s:o, s:b, s:o, s:o, s:I, s:o}",
		"version", EMBKV_VERSION,
		"pid", (json_int_t)getpid(),
		"uptime_s", (json_int_t)((embkv_now_ns() - s->start_ns) /
					 1000000000ull),
		"listen", listeners(s),
		"threads", (json_int_t)embkv_owner_count(s->owners),
		"io_threads", (json_int_t)s->nio,
		"memory", mem, "tables", tables,
		"limits", limits(s),
		"auth", "token_required", s->auth,
		"token_file", str_or_null(s->token_file),
		"metrics_listen", a->metrics ? url("http", a->metrics_host,
						  s->metrics_port, "/metrics")
					    : json_null(),
		"log_file", str_or_null(s->log_file),
		"data_dir", str_or_null(k->data_dir),
		"no_restore", k->no_restore,
		"default_table", str_or_null(k->default_table),
		"cluster", cluster(s),
		"epoch", (json_int_t)embkvd_epoch(s),
		"peers", peers(s));
}

void embkvd_report_config(struct embkvd_conn *c,
			  const struct embkv_wire_hdr *h, const uint8_t *body)
{
	struct embkvd *s = c->io->srv;
	json_t *doc;
	char *text = NULL;
	uint8_t *out;
	size_t len = 0;
	int rc;

	rc = embkv_wire_json_check(body, h->body_len);
	if (rc) {
		embkvd_conn_error(c, h->request_id, rc, false,
				  "bad CONFIG body: %s (a JSON object, {})",
				  embkv_strerror(rc));
		return;
	}
	doc = config_json(s);
	if (doc)
		text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	if (text)
		len = strlen(text);
	if (!text)
		rc = -ENOMEM;
	else if (len > EMBKV_WIRE_MAX_JSON)
		rc = EMBKV_ELIMIT;
	if (!rc)
		rc = embkvd_conn_reply(c, h->request_id,
				       EMBKV_WIRE_OP_CONFIG |
					       EMBKV_WIRE_OP_REPLY,
				       (uint32_t)len, &out);
	if (rc)
		embkvd_conn_error(c, h->request_id, rc, false,
				  "cannot report the configuration: %s",
				  embkv_strerror(rc));
	else
		memcpy(out, text, len);
	free(text);
}
