/*
 * embkvctl members | health | forget: the cluster as etcd records it.
 *
 * What: reads /<cluster>/nodes/ (every member ever registered, permanent)
 * and /<cluster>/members/ (leased: present while the member lives), so a
 * member is "up" when its leased key exists and "down" when only its node
 * record is left (stopped, or dead for longer than its lease TTL). Each
 * up member is then asked for STATS at the address it advertised, like
 * `embkvctl stats` does, for its uptime, tables and memory; an up member
 * that does not answer is "no-answer".
 *
 * Why a file of its own: these commands talk to etcd, not to --servers,
 * and embkvctl.c only hooks them in (embkv_ctl_members_run()).
 *
 * forget ID removes a down member's node record, in one transaction that
 * holds only while its leased key is absent, so a live member can never
 * be forgotten.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include <embkv/embkv.h>
#include "net/etcd.h"
#include "tools/ctl_members.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define CLUSTER_DEFAULT "embkv"
#define KEY_MAX 160u
#define FIELD_MAX 256u
#define PROBE_TIMEOUT_MS 2000u
#define ETCD_TIMEOUT_MS 3000u
#define NCOLS 12u

const char embkv_ctl_members_usage_opts[] =
"  --etcd URL[,URL...]  etcd client URLs, for members, health and forget\n"
"                       (default $" EMBKV_CTL_ETCD_ENV ")\n"
"  --cluster NAME       the cluster's etcd key prefix (default "
CLUSTER_DEFAULT ")\n";

const char embkv_ctl_members_usage_cmds[] =
"  members              every member registered in etcd: id, address,\n"
"                       state (up, down: its lease expired, no-answer: up\n"
"                       but STATS fails), lease seconds left, tables,\n"
"                       memory and limit, uptime, pid, host, version\n"
"  health               one line per member; exit status 0 only when every\n"
"                       registered member is up and answers STATS\n"
"  forget ID            drops a down member's node record\n";

struct member {
	uint32_t id;
	bool node, live;
	char address[FIELD_MAX], host[FIELD_MAX], version[FIELD_MAX];
	json_int_t pid, start_time, memory_limit;
	int64_t lease, ttl;        /* ttl -1: unknown */
	int probe;                 /* 0: answered STATS; 1: not probed */
	bool has_stats;
	uint64_t uptime_s, tables, mem_bytes, mem_limit, conns;
	uint64_t parts;           /* partitions held, over all tables */
};

struct members {
	struct member *v;
	size_t n;
};

static const char *cluster_of(const struct embkv_ctl_etcd *o)
{
	return o->cluster ? o->cluster : CLUSTER_DEFAULT;
}

static struct member *member_get(struct members *ms, uint32_t id)
{
	struct member *p;

	for (size_t i = 0; i < ms->n; i++)
		if (ms->v[i].id == id)
			return &ms->v[i];
	p = realloc(ms->v, (ms->n + 1) * sizeof(*ms->v));
	if (!p)
		return NULL;
	ms->v = p;
	p = &ms->v[ms->n++];
	memset(p, 0, sizeof(*p));
	p->id = id;
	p->ttl = -1;
	p->probe = 1;
	return p;
}

static void str_field(const json_t *v, const char *name, char *buf)
{
	const json_t *f = json_object_get(v, name);

	snprintf(buf, FIELD_MAX, "%s", json_is_string(f) ?
		 json_string_value(f) : "");
}

/* The id from a key ".../<id>"; -1 when the tail is not a number. */
static int64_t key_id(const char *key)
{
	const char *tail = strrchr(key, '/');
	char *end;
	unsigned long long v;

	if (!tail || !tail[1] || tail[1] < '0' || tail[1] > '9')
		return -1;
	v = strtoull(tail + 1, &end, 10);
	return *end || v > UINT32_MAX ? -1 : (int64_t)v;
}

static void member_fill(struct member *m, const struct embkv_etcd_kv *kv)
{
	json_t *v = json_loadb(kv->value, kv->value_len, 0, NULL);

	str_field(v, "address", m->address);
	str_field(v, "host", m->host);
	str_field(v, "version", m->version);
	m->pid = json_integer_value(json_object_get(v, "pid"));
	m->start_time = json_integer_value(json_object_get(v, "start_time"));
	m->memory_limit = json_integer_value(json_object_get(v,
							    "memory_limit"));
	json_decref(v);
}

static int cmp_id(const void *a, const void *b)
{
	const struct member *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Reads nodes/ then members/ (a member's own value wins). */
static int members_read(struct embkv_etcd *e, const char *cluster,
			struct members *ms)
{
	static const char *const kinds[] = { "nodes", "members" };
	char prefix[KEY_MAX];
	int rc = 0;

	for (size_t k = 0; k < 2 && !rc; k++) {
		struct embkv_etcd_kvs r = { 0 };

		snprintf(prefix, sizeof(prefix), "/%s/%s/", cluster, kinds[k]);
		rc = embkv_etcd_get(e, prefix, true, &r);
		for (size_t i = 0; !rc && i < r.n; i++) {
			int64_t id = key_id(r.kv[i].key);
			struct member *m;

			if (id < 0)
				continue;
			m = member_get(ms, (uint32_t)id);
			if (!m) {
				rc = -ENOMEM;
				break;
			}
			member_fill(m, &r.kv[i]);
			if (k == 0) {
				m->node = true;
			} else {
				m->live = true;
				m->lease = r.kv[i].lease;
			}
		}
		embkv_etcd_kvs_free(&r);
	}
	for (size_t i = 0; !rc && i < ms->n; i++) {
		struct member *m = &ms->v[i];

		if (m->live && m->lease &&
		    embkv_etcd_lease_ttl(e, m->lease, &m->ttl))
			m->ttl = -1;
	}
	if (!rc)
		qsort(ms->v, ms->n, sizeof(*ms->v), cmp_id);
	return rc;
}

static void on_stat(void *ctx, uint32_t server, const char *table,
		    const char *name, uint64_t value)
{
	struct member *m = ctx;

	/* The probe's client was given this member alone (index 0); it may
	 * learn the others and report them too. */
	if (server != 0)
		return;
	if (table) {
		if (!strcmp(name, "partitions"))
			m->parts += value;
		return;
	}
	m->has_stats = true;
	if (!strcmp(name, "uptime_s"))
		m->uptime_s = value;
	else if (!strcmp(name, "tables"))
		m->tables = value;
	else if (!strcmp(name, "mem_bytes"))
		m->mem_bytes = value;
	else if (!strcmp(name, "mem_limit"))
		m->mem_limit = value;
	else if (!strcmp(name, "connections"))
		m->conns = value;
}

/* STATS from every live member, at its advertised address. */
static void members_probe(const char *prog, const struct embkv_tool_conn *conn,
			  struct members *ms)
{
	for (size_t i = 0; i < ms->n; i++) {
		struct member *m = &ms->v[i];
		struct embkv_tool_conn c = *conn;
		struct embkv_client *cl;

		if (!m->live || !m->address[0])
			continue;
		c.servers_arg = m->address;
		if (!c.timeout_ms)
			c.timeout_ms = PROBE_TIMEOUT_MS;
		m->probe = embkv_tool_connect(prog, &c, &cl);
		if (m->probe)
			continue;
		m->probe = embkv_stats(cl, on_stat, m);
		embkv_client_destroy(cl);
	}
}

static const char *state_of(const struct member *m)
{
	return !m->live ? "down" : m->probe ? "no-answer" : "up";
}

static void print_human(const struct members *ms)
{
	static const char *const hdr[NCOLS] = {
		"ID", "ADDRESS", "STATE", "TTL", "TABLES", "PARTS", "MEMORY",
		"LIMIT", "UPTIME", "PID", "HOST", "VERSION",
	};
	char (*cells)[NCOLS][FIELD_MAX];
	size_t width[NCOLS] = { 0 };

	cells = calloc(ms->n + 1, sizeof(*cells));
	if (!cells)
		return;
	for (size_t c = 0; c < NCOLS; c++)
		snprintf(cells[0][c], FIELD_MAX, "%s", hdr[c]);
	for (size_t i = 0; i < ms->n; i++) {
		const struct member *m = &ms->v[i];
		char (*row)[FIELD_MAX] = cells[i + 1];
		uint64_t limit = m->has_stats ? m->mem_limit :
						(uint64_t)m->memory_limit;

		for (size_t c = 0; c < NCOLS; c++)
			strcpy(row[c], "-");
		snprintf(row[0], FIELD_MAX, "%u", m->id);
		snprintf(row[1], FIELD_MAX, "%s", m->address[0] ? m->address :
			 "?");
		snprintf(row[2], FIELD_MAX, "%s", state_of(m));
		if (m->live && m->ttl >= 0)
			snprintf(row[3], FIELD_MAX, "%llds", (long long)m->ttl);
		if (m->has_stats) {
			snprintf(row[4], FIELD_MAX, "%" PRIu64, m->tables);
			snprintf(row[5], FIELD_MAX, "%" PRIu64, m->parts);
			embkv_tool_human_bytes(row[6], FIELD_MAX, m->mem_bytes);
			snprintf(row[8], FIELD_MAX, "%" PRIu64 "s", m->uptime_s);
		}
		if (limit)
			embkv_tool_human_bytes(row[7], FIELD_MAX, limit);
		if (m->pid)
			snprintf(row[9], FIELD_MAX, "%lld", (long long)m->pid);
		if (m->host[0])
			snprintf(row[10], FIELD_MAX, "%s", m->host);
		if (m->version[0])
			snprintf(row[11], FIELD_MAX, "%s", m->version);
	}
	for (size_t r = 0; r <= ms->n; r++)
		for (size_t c = 0; c < NCOLS; c++)
			if (strlen(cells[r][c]) > width[c])
				width[c] = strlen(cells[r][c]);
	for (size_t r = 0; r <= ms->n; r++)
		for (size_t c = 0; c < NCOLS; c++)
			printf(c + 1 < NCOLS ? "%-*s  " : "%-*s\n",
			       (int)(c + 1 < NCOLS ? width[c] : 0), cells[r][c]);
	free(cells);
}

static int print_json(const char *cluster, const struct members *ms)
{
	json_t *doc = json_object(), *arr = json_array();
	char *s;
	int rc = -ENOMEM;

	if (!doc || !arr || json_object_set_new(doc, "members", arr)) {
		json_decref(arr);
		goto out;
	}
	if (json_object_set_new(doc, "cluster", json_string(cluster)))
		goto out;
	for (size_t i = 0; i < ms->n; i++) {
		const struct member *m = &ms->v[i];
		json_t *o = json_pack("{sI ss ss sI sI ss ss sI}",
				      "id", (json_int_t)m->id,
				      "address", m->address,
				      "state", state_of(m),
				      "pid", m->pid,
				      "start_time", m->start_time,
				      "host", m->host,
				      "version", m->version,
				      "memory_limit", m->memory_limit);

		if (!o || json_array_append_new(arr, o))
			goto out;
		if (m->live && m->ttl >= 0 &&
		    json_object_set_new(o, "ttl", json_integer(m->ttl)))
			goto out;
		if (m->has_stats &&
		    json_object_set_new(o, "stats", json_pack(
				"{sI sI sI sI sI sI}",
				"uptime_s", (json_int_t)m->uptime_s,
				"tables", (json_int_t)m->tables,
				"partitions", (json_int_t)m->parts,
				"mem_bytes", (json_int_t)m->mem_bytes,
				"mem_limit", (json_int_t)m->mem_limit,
				"connections", (json_int_t)m->conns)))
			goto out;
	}
	s = json_dumps(doc, JSON_COMPACT);
	if (s) {
		printf("%s\n", s);
		free(s);
		rc = 0;
	}
out:
	json_decref(doc);
	return rc;
}

static int etcd_open(const char *prog, const struct embkv_ctl_etcd *o,
		     struct embkv_etcd **e)
{
	const char *url = o->etcd ? o->etcd : getenv(EMBKV_CTL_ETCD_ENV);
	struct embkv_etcd_attr a;
	int rc;

	if (!url || !*url) {
		fprintf(stderr, "%s: this command needs --etcd URL (or $%s)\n",
			prog, EMBKV_CTL_ETCD_ENV);
		return EXIT_USAGE;
	}
	embkv_etcd_attr_init(&a);
	a.endpoints = url;
	a.timeout_ms = ETCD_TIMEOUT_MS;
	rc = embkv_etcd_create(&a, e);
	if (rc) {
		fprintf(stderr, "%s: bad --etcd %s: %s\n", prog, url,
			embkv_strerror(rc));
		return EXIT_USAGE;
	}
	return 0;
}

static int etcd_failed(const char *prog, struct embkv_etcd *e, int rc)
{
	const char *msg = embkv_etcd_errmsg(e);

	fprintf(stderr, "%s: etcd: %s%s%s\n", prog, embkv_strerror(rc),
		msg[0] ? ": " : "", msg);
	return EXIT_FAILED;
}

static int cmd_list(const char *prog, const struct embkv_ctl_etcd *o,
		    const struct embkv_tool_conn *conn, int json, bool health)
{
	struct members ms = { 0 };
	struct embkv_etcd *e;
	int rc, bad = 0;

	rc = etcd_open(prog, o, &e);
	if (rc)
		return rc;
	rc = members_read(e, cluster_of(o), &ms);
	if (rc) {
		rc = etcd_failed(prog, e, rc);
		goto out;
	}
	members_probe(prog, conn, &ms);
	for (size_t i = 0; i < ms.n; i++)
		bad += ms.v[i].probe != 0;
	if (!health) {
		if (json)
			rc = print_json(cluster_of(o), &ms) ? EXIT_FAILED : 0;
		else if (!ms.n)
			printf("(no members in cluster %s)\n", cluster_of(o));
		else
			print_human(&ms);
		goto out;
	}
	for (size_t i = 0; i < ms.n; i++) {
		const struct member *m = &ms.v[i];

		printf("member %u %s: ", m->id, m->address[0] ? m->address : "?");
		if (!m->live)
			printf("DOWN: no live registration (lease expired or "
			       "revoked; was pid %lld on %s)\n",
			       (long long)m->pid, m->host[0] ? m->host : "?");
		else if (m->probe)
			printf("NOT ANSWERING: %s\n", embkv_strerror(m->probe));
		else
			printf("ok (uptime %" PRIu64 "s, %" PRIu64 " tables)\n",
			       m->uptime_s, m->tables);
	}
	if (!ms.n)
		printf("no members registered in cluster %s\n", cluster_of(o));
	else
		printf("%zu of %zu members healthy\n", ms.n - (size_t)bad, ms.n);
	rc = bad || !ms.n ? EXIT_FAILED : 0;
out:
	free(ms.v);
	embkv_etcd_destroy(e);
	return rc;
}

static int cmd_forget(const char *prog, const struct embkv_ctl_etcd *o,
		      const char *arg)
{
	char member[KEY_MAX], node[KEY_MAX];
	struct embkv_etcd_kvs r;
	struct embkv_etcd *e;
	uint64_t id;
	bool ok = false;
	int rc;

	if (embkv_tool_parse_u64(arg, 0, UINT32_MAX, &id)) {
		fprintf(stderr, "%s: forget: bad member id %s\n", prog, arg);
		return EXIT_USAGE;
	}
	rc = etcd_open(prog, o, &e);
	if (rc)
		return rc;
	snprintf(member, sizeof(member), "/%s/members/%" PRIu64,
		 cluster_of(o), id);
	snprintf(node, sizeof(node), "/%s/nodes/%" PRIu64, cluster_of(o), id);
	rc = embkv_etcd_get(e, node, false, &r);
	if (rc) {
		rc = etcd_failed(prog, e, rc);
		goto out;
	}
	ok = r.n == 1;
	embkv_etcd_kvs_free(&r);
	if (!ok) {
		fprintf(stderr, "%s: forget: no member %" PRIu64 " in cluster "
			"%s\n", prog, id, cluster_of(o));
		rc = EXIT_FAILED;
		goto out;
	}
	{
		struct embkv_etcd_cmp absent = {
			.key = member, .target = EMBKV_ETCD_CREATE,
			.result = EMBKV_ETCD_EQUAL, .number = 0,
		};
		struct embkv_etcd_op del = {
			.type = EMBKV_ETCD_OP_DELETE, .key = node,
		};
		struct embkv_etcd_txn t = {
			.cmp = &absent, .ncmp = 1, .success = &del,
			.nsuccess = 1,
		};

		rc = embkv_etcd_txn(e, &t, &ok, NULL);
	}
	if (rc) {
		rc = etcd_failed(prog, e, rc);
	} else if (!ok) {
		fprintf(stderr, "%s: forget: member %" PRIu64 " is alive; stop "
			"it first\n", prog, id);
		rc = EXIT_FAILED;
	} else {
		printf("forgot member %" PRIu64 "\n", id);
	}
out:
	embkv_etcd_destroy(e);
	return rc;
}

int embkv_ctl_members_run(const char *prog, const struct embkv_ctl_etcd *o,
			  const struct embkv_tool_conn *conn, int json,
			  int argc, char **argv)
{
	bool health = !strcmp(argv[0], "health");

	if (strcmp(argv[0], "members") && !health &&
	    strcmp(argv[0], "forget"))
		return EMBKV_CTL_NOT_MINE;
	if (o->cluster && (!*o->cluster || strchr(o->cluster, '/'))) {
		fprintf(stderr, "%s: bad --cluster %s\n", prog, o->cluster);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[0], "forget")) {
		if (argc != 2) {
			fprintf(stderr, "%s: forget needs exactly one ID\n", prog);
			return EXIT_USAGE;
		}
		return cmd_forget(prog, o, argv[1]);
	}
	if (argc > 1) {
		fprintf(stderr, "%s: %s: unexpected argument %s\n", prog,
			argv[0], argv[1]);
		return EXIT_USAGE;
	}
	return cmd_list(prog, o, conn, json, health);
}
