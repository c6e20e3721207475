/*
 * embkvd's table catalog in etcd (server/cluster.h).
 *
 * What: one thread mirrors P tables/ into the local catalog, in revision
 * order (a read of everything, then a watch from the next revision), and
 * runs TABLE_CREATE and TABLE_DROP as etcd transactions for the I/O
 * threads.
 *
 * Why this way:
 * - A create is all or nothing across members. The creating server puts
 *   the table as "creating" (a transaction that succeeds only if the name
 *   is free), with a map that spreads its partitions over the live
 *   members. Each member of the map builds its share, charges it against
 *   its memory limit without publishing it (embkv_catalog_reserve), and
 *   acks "ok" or why not. With every ack ok the creator flips the table to
 *   "ready" (compared on its revision) and the members publish; any
 *   refusal or a member that does not answer in time makes the creator
 *   delete the key, and every member frees its share. A table is visible
 *   (open, list, data) only once ready, so no client sees half of it.
 * - A restarted member must never serve freshly initialised rows for a
 *   partition whose rows died with its previous process: every table that
 *   already existed when this process first read etcd (create revision at
 *   or below that read's revision) gets the partitions this member holds
 *   as UNLOADED (EMBKV_EUNAVAIL) until a checkpoint or a stream fills
 *   them. Tables created later start empty and SERVING, which is exact.
 * - The data path never waits for etcd: the local catalog is the truth for
 *   requests; this thread only changes it.
 * - A table's shard map names member ids; their addresses come from
 *   P nodes/<id> (server/member.c), and a change there re-reads
 *   everything, so maps follow a member that came back elsewhere.
 *
 * Invariants: local changes happen on this thread only, in etcd revision
 * order; a table is published only in state "ready"; reserved memory is
 * always either published or cancelled.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <jansson.h>
#include "net/etcd.h"
#include "server/cluster.h"
#include "server/daemon.h"
#include "server/member.h"

#define KEY_MAX 256u
#define PFX_MAX 96u  /* "/<cluster>/<kind>/": a name is at most 63 */
#define MSG_MAX 256u
#define RETRY_MS 500u
#define POLL_MS 20u
#define NS_PER_MS 1000000L
#define ATTR_WIRE_MAX 256u
#define UID_HEX 17u
#define ACK_OK "ok"          /* share built and charged */
#define ACK_READY "ready"    /* share published */

/* A change from the watch, copied off its thread. */
struct cl_event {
	struct cl_event *next;
	bool del;
	char *key;
	char *value;
	size_t len;
	int64_t create_rev, mod_rev;
};

/* An admin request from an I/O thread. */
struct cl_job {
	struct embkvd_done fin;
	struct cl_job *next;
	struct embkvd_conn *conn;
	uint64_t req_id;
	uint8_t op;
	struct embkv_table_attr attr;      /* CREATE */
	char name[EMBKV_TABLE_NAME_MAX];   /* CREATE, DROP */
	int status;
	char msg[MSG_MAX];
	struct embkv_wire_table_ref ref;   /* CREATE's answer */
};

/* A table built and charged here but not yet ready in etcd. */
struct cl_pending {
	uint64_t uid;
	char name[EMBKV_TABLE_NAME_MAX];
	struct embkv_catalog_entry *e;
};

struct cl_node {
	uint32_t id;
	char addr[EMBKV_WIRE_ADDR_MAX + 1];
};

/* A table record as etcd holds it. */
struct ctable {
	uint64_t uid;
	bool ready;
	struct embkv_table_attr attr;
	uint64_t epoch;
	uint32_t nmembers;
	uint32_t *members;
	uint16_t *parts;       /* attr.partitions entries */
};

struct embkvd_cluster {
	struct embkvd *s;
	struct embkv_etcd *etcd;           /* this thread only */
	char prefix[PFX_MAX], tables[PFX_MAX], nodes_pfx[PFX_MAX],
	     acks[PFX_MAX], members[PFX_MAX];
	uint32_t self;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock. */
	bool stop, resync;
	struct cl_event *evs, **evs_tail;
	struct cl_job *jobs, **jobs_tail;
	/* This thread only. */
	struct embkv_etcd_watch *watch;
	bool synced;
	int64_t boot_rev;                  /* first full read; 0: none yet */
	struct cl_node *nodes;
	uint32_t nnodes;
	struct cl_node *live;              /* members with a live lease */
	uint32_t nlive;
	char self_addr[EMBKV_WIRE_ADDR_MAX + 1];
	bool want_default;                 /* --default-table, not made yet */
	bool default_logged;
	struct embkv_table_attr default_attr;
	struct cl_pending *pend;
	uint32_t npend;
	int logged;                        /* last etcd state logged */
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / NS_PER_MS;
}

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * NS_PER_MS };

	nanosleep(&ts, NULL);
}

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes exactly cap bytes or fewer; returns the count or -1. */
static int hex_decode(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s);

	if (n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (int)(n / 2);
}

static void uid_hex(uint64_t uid, char out[UID_HEX])
{
	snprintf(out, UID_HEX, "%016" PRIx64, uid);
}

/* Logs etcd's state when it changes (0: reachable). */
static void log_state(struct embkvd_cluster *cl, int status)
{
	if (status == cl->logged)
		return;
	if (status)
		embkvd_log("cluster catalog: etcd: %s; serving the tables last "
			  "known, table changes wait", embkv_strerror(status));
	else if (cl->logged)
		embkvd_log("cluster catalog: etcd reachable again");
	cl->logged = status;
}

/* ---- table records ------------------------------------------------------ */

static void ctable_free(struct ctable *t)
{
	free(t->members);
	free(t->parts);
	memset(t, 0, sizeof(*t));
}

/* Parses and checks a P tables/<name> value; name must match. 0 or
 * EMBKV_EPROTO (or -ENOMEM). */
static int ctable_parse(const char *name, const char *value, size_t len,
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
	if (strlen(uid_s) != 16 || hex_decode(uid_s, wire, 8) != 8)
		goto out;
	for (int i = 0; i < 8; i++)
		t->uid = t->uid << 8 | wire[i];
	if (!t->uid)
		goto out;
	t->ready = !strcmp(state, "ready");
	if (!t->ready && strcmp(state, "creating"))
		goto out;
	n = hex_decode(attr_s, wire, sizeof(wire));
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
		ctable_free(t);
	return rc;
}

/* The JSON value of t (malloc'ed), or NULL. */
static char *ctable_json(const struct ctable *t)
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
	hex_encode(wire, len, hex);
	uid_hex(t->uid, uid);
	for (uint32_t i = 0; i < t->nmembers; i++)
		if (json_array_append_new(members, json_integer(t->members[i])))
			goto fail;
	for (uint32_t p = 0; p < t->attr.partitions; p++)
		if (json_array_append_new(parts, json_integer(t->parts[p])))
			goto fail;
	root = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:s, s:i, s:i, s:I, "
			 "s:s}",
			 "uid", uid, "state", t->ready ? "ready" : "creating",
			 "attr", hex, "epoch", (json_int_t)t->epoch,
			 "members", members, "parts", parts,
			 "name", t->attr.name, "dim", (int)t->attr.dim,
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

/* ---- local state -------------------------------------------------------- */

static const char *node_addr(struct embkvd_cluster *cl, uint32_t id)
{
	for (uint32_t i = 0; i < cl->nnodes; i++)
		if (cl->nodes[i].id == id)
			return cl->nodes[i].addr;
	return NULL;
}

static int node_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct cl_node *)a)->id,
		 y = ((const struct cl_node *)b)->id;

	return x < y ? -1 : x > y;
}

/* A member record (P nodes/ or P members/ value): true and *out. */
static bool node_parse(const char *value, size_t len, struct cl_node *out)
{
	json_t *root = json_loadb(value, len, 0, NULL);
	const char *addr;
	json_int_t id;
	bool ok;

	ok = root && !json_unpack(root, "{s:I, s:s}", "id", &id, "address",
				  &addr) &&
	     id >= 0 && id <= UINT32_MAX &&
	     strlen(addr) <= EMBKV_WIRE_ADDR_MAX;
	if (ok) {
		out->id = (uint32_t)id;
		strcpy(out->addr, addr);
	}
	json_decref(root);
	return ok;
}

/* Puts n into the sorted list (replacing one of its id); false on
 * -ENOMEM. */
static bool node_upsert(struct cl_node **list, uint32_t *n,
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

static void node_remove(struct cl_node *list, uint32_t *n, uint32_t id)
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
static void nodes_read(const char *pfx, const struct embkv_etcd_kvs *kvs,
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
		    node_parse(kv->value, kv->value_len, &nodes[n]))
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
static void membership_publish(struct embkvd_cluster *cl)
{
	const char **addrs = calloc(cl->nlive + 1, sizeof(*addrs));
	uint32_t n = 0, self = EMBKVD_MAP_NOT_MEMBER;
	struct embkvd_map *m;

	if (!addrs)
		return;
	for (uint32_t i = 0; i <= cl->nlive; i++) {
		bool mine = i < cl->nlive ? cl->live[i].id == cl->self : false;
		bool before = i == cl->nlive || cl->live[i].id > cl->self;

		if (self == EMBKVD_MAP_NOT_MEMBER && (mine || before)) {
			self = n;
			addrs[n++] = mine ? cl->live[i].addr : cl->self_addr;
			if (mine)
				continue;
		}
		if (i < cl->nlive)
			addrs[n++] = cl->live[i].addr;
	}
	if (!embkvd_map_create(0, addrs, n, self, &m))
		embkvd_map_publish(&cl->s->map, m);
	free(addrs);
}

/* The shard map of t for this member: addresses from the node records. */
static int map_build(struct embkvd_cluster *cl, const struct ctable *t,
		     struct embkvd_map **out)
{
	const char **addrs = calloc(t->nmembers, sizeof(*addrs));
	char (*unknown)[32] = calloc(t->nmembers, sizeof(*unknown));
	uint32_t self = EMBKVD_MAP_NOT_MEMBER;
	int rc = -ENOMEM;

	if (addrs && unknown) {
		for (uint32_t i = 0; i < t->nmembers; i++) {
			addrs[i] = node_addr(cl, t->members[i]);
			if (!addrs[i]) {
				/* Not seen yet: a read of everything follows,
				 * and the map is rebuilt with its address. */
				snprintf(unknown[i], sizeof(unknown[i]),
					 "tcp://unknown-member-%u:1",
					 t->members[i]);
				addrs[i] = unknown[i];
				pthread_mutex_lock(&cl->lock);
				cl->resync = true;
				pthread_mutex_unlock(&cl->lock);
			}
			if (t->members[i] == cl->self)
				self = i;
		}
		rc = embkvd_map_create_placed(t->epoch, addrs, t->nmembers,
					      self, t->parts,
					      t->attr.partitions, out);
	}
	free(addrs);
	free(unknown);
	return rc;
}

/* Partition states of t here: this member's partitions SERVING (or
 * UNLOADED when restarted), the others ABSENT. NULL on -ENOMEM. */
static uint8_t *owned_make(struct embkvd_cluster *cl, const struct ctable *t,
			   bool restarted)
{
	uint8_t *owned = calloc(t->attr.partitions, 1);

	for (uint32_t p = 0; owned && p < t->attr.partitions; p++)
		if (t->members[t->parts[p]] == cl->self)
			owned[p] = restarted ? EMBKV_PART_UNLOADED
					     : EMBKV_PART_SERVING;
	return owned;
}

static struct cl_pending *pending_find(struct embkvd_cluster *cl,
				       const char *name)
{
	for (uint32_t i = 0; i < cl->npend; i++)
		if (!strncmp(cl->pend[i].name, name, EMBKV_TABLE_NAME_MAX))
			return &cl->pend[i];
	return NULL;
}

static void pending_remove(struct embkvd_cluster *cl, struct cl_pending *p,
			   bool cancel)
{
	if (cancel)
		embkv_catalog_cancel(cl->s->cat, p->e);
	*p = cl->pend[--cl->npend];
}

/* Writes this member's ack for a table being created (best effort: a
 * creator that never sees it undoes the create). */
static void ack(struct embkvd_cluster *cl, uint64_t uid, const char *what)
{
	char key[KEY_MAX], hex[UID_HEX];

	uid_hex(uid, hex);
	snprintf(key, sizeof(key), "%s%s/%u", cl->acks, hex, cl->self);
	log_state(cl, embkv_etcd_put(cl->etcd, key, what, strlen(what), 0,
				     NULL));
}

/* Drops the published table called name, if any. */
static void local_drop(struct embkvd_cluster *cl, const char *name)
{
	if (!embkv_catalog_drop(cl->s->cat, name))
		embkvd_log("table %s dropped (cluster catalog)", name);
}

/* The uid of the published table called name, 0 if none. */
static uint64_t local_uid(struct embkvd_cluster *cl, const char *name,
			  struct embkv_catalog_entry **ref)
{
	struct embkv_catalog_entry *e;
	uint64_t uid = 0;

	rcu_read_lock();
	e = embkv_catalog_find_name(cl->s->cat, name);
	if (e) {
		uid = e->uid;
		if (ref)
			embkv_catalog_entry_get(e);
	}
	rcu_read_unlock();
	if (ref)
		*ref = e;
	return uid;
}

/* Builds t's share here (reserve: not visible yet). */
static int local_build(struct embkvd_cluster *cl, const struct ctable *t,
		       bool restarted, struct embkv_catalog_entry **out)
{
	uint8_t *owned = owned_make(cl, t, restarted);
	struct embkvd_map *map = NULL;
	int rc;

	*out = NULL;
	if (!owned)
		return -ENOMEM;
	rc = map_build(cl, t, &map);
	if (!rc)
		rc = embkv_catalog_reserve(cl->s->cat, &t->attr, owned, out);
	if (!rc)
		(*out)->map = map;
	else
		embkvd_map_destroy(map);
	free(owned);
	return rc;
}

static void local_publish(struct embkvd_cluster *cl, const struct ctable *t,
			  struct embkv_catalog_entry *e, bool restarted)
{
	uint32_t id, held = e->table->nloaded;
	int rc = embkv_catalog_publish(cl->s->cat, e, t->uid, &id, NULL);

	if (rc) {
		embkvd_log("table %s: cannot publish it here: %s", t->attr.name,
			  embkv_strerror(rc));
		return;
	}
	if (restarted && held)
		embkvd_log("table %s (uid %016" PRIx64 "): %u partitions held "
			  "here are not loaded (their rows were lost with the "
			  "previous process): EMBKV_EUNAVAIL until restored",
			  t->attr.name, t->uid, held);
	else
		embkvd_log("table %s (uid %016" PRIx64 ") ready: id %u, %u of "
			  "%u partitions here", t->attr.name, t->uid, id, held,
			  t->attr.partitions);
}

/* A new map for a published table (an epoch or an address changed). */
static void local_remap(struct embkvd_cluster *cl,
			struct embkv_catalog_entry *e, const struct ctable *t)
{
	struct embkvd_map *m;
	const struct embkvd_map *cur;
	bool same;

	if (map_build(cl, t, &m))
		return;
	rcu_read_lock();
	cur = rcu_dereference(e->map);
	same = cur && cur->epoch == m->epoch && cur->nservers == m->nservers;
	for (uint32_t i = 0; same && i < m->nservers; i++)
		same = !strcmp(cur->servers[i], m->servers[i]);
	rcu_read_unlock();
	if (same)
		embkvd_map_destroy(m);
	else
		embkvd_map_publish(&e->map, m);
}

/* P tables/<name> was put (at revision create_rev first). */
static void apply_put(struct embkvd_cluster *cl, const char *name,
		      const char *value, size_t len, int64_t create_rev)
{
	bool restarted = create_rev <= cl->boot_rev;
	struct embkv_catalog_entry *e, *ref;
	struct cl_pending *p;
	struct ctable t;
	uint64_t have;
	int rc;

	rc = ctable_parse(name, value, len, &t);
	if (rc) {
		embkvd_log("cluster catalog: table %s: unreadable record (%s), "
			  "ignored", name, embkv_strerror(rc));
		return;
	}
	have = local_uid(cl, name, &ref);
	if (have == t.uid) {
		local_remap(cl, ref, &t);
		goto out;
	}
	if (have)
		local_drop(cl, name); /* dropped and re-created meanwhile */
	p = pending_find(cl, name);
	if (p && p->uid != t.uid) {
		pending_remove(cl, p, true);
		p = NULL;
	}
	if (!t.ready) {
		if (p)
			goto out;
		rc = local_build(cl, &t, false, &e);
		if (rc) {
			char why[MSG_MAX];

			snprintf(why, sizeof(why), "member %u: %s%s", cl->self,
				 embkv_strerror(rc),
				 rc == -ENOMEM ? " (over --memory-limit or out of "
						 "memory)" : "");
			ack(cl, t.uid, why);
			goto out;
		}
		p = realloc(cl->pend, sizeof(*p) * (cl->npend + 1));
		if (!p) {
			embkv_catalog_cancel(cl->s->cat, e);
			ack(cl, t.uid, "out of memory");
			goto out;
		}
		cl->pend = p;
		p = &cl->pend[cl->npend++];
		p->uid = t.uid;
		p->e = e;
		snprintf(p->name, sizeof(p->name), "%s", name);
		ack(cl, t.uid, ACK_OK);
		goto out;
	}
	if (p) {
		e = p->e;
		pending_remove(cl, p, false);
		local_publish(cl, &t, e, false);
		ack(cl, t.uid, ACK_READY);
		goto out;
	}
	rc = local_build(cl, &t, restarted, &e);
	if (rc)
		embkvd_log("table %s: cannot hold this member's share: %s",
			  name, embkv_strerror(rc));
	else
		local_publish(cl, &t, e, restarted);
out:
	embkv_catalog_entry_put(ref);
	ctable_free(&t);
}

/*
 * A member's record changed. Applied in place, before any later change
 * of the same batch, so that a table created after a member registered
 * names its address. A member seen at a new address makes every table's
 * map be rebuilt (a read of everything).
 */
static void apply_member(struct embkvd_cluster *cl, const char *key,
			 bool del, const char *value, size_t len)
{
	bool node = !strncmp(key, cl->nodes_pfx, strlen(cl->nodes_pfx));
	const char *idp = key + strlen(node ? cl->nodes_pfx : cl->members);
	struct cl_node nn;
	const char *was;
	bool moved = false, ok = true;
	char *end;
	unsigned long id = strtoul(idp, &end, 10);

	if (end == idp || *end || id > UINT32_MAX)
		return;
	if (del) {
		node_remove(node ? cl->nodes : cl->live,
			    node ? &cl->nnodes : &cl->nlive, (uint32_t)id);
	} else if (node_parse(value, len, &nn)) {
		was = node ? node_addr(cl, nn.id) : NULL;
		moved = was && strcmp(was, nn.addr);
		ok = node_upsert(node ? &cl->nodes : &cl->live,
				 node ? &cl->nnodes : &cl->nlive, &nn);
	}
	if (!node)
		membership_publish(cl);
	if (moved || !ok) {
		pthread_mutex_lock(&cl->lock);
		cl->resync = true;
		pthread_mutex_unlock(&cl->lock);
	}
}

/* P tables/<name> was deleted. */
static void apply_delete(struct embkvd_cluster *cl, const char *name)
{
	struct cl_pending *p = pending_find(cl, name);

	if (p)
		pending_remove(cl, p, true);
	local_drop(cl, name);
}

/* One change under P, in revision order. */
static void apply(struct embkvd_cluster *cl, const char *key, bool del,
		  const char *value, size_t len, int64_t create_rev)
{
	size_t tl = strlen(cl->tables);

	if (!strncmp(key, cl->tables, tl)) {
		if (strlen(key + tl) >= EMBKV_TABLE_NAME_MAX)
			return;
		if (del)
			apply_delete(cl, key + tl);
		else
			apply_put(cl, key + tl, value, len, create_rev);
	} else if (!strncmp(key, cl->nodes_pfx, strlen(cl->nodes_pfx)) ||
		   !strncmp(key, cl->members, strlen(cl->members))) {
		apply_member(cl, key, del, value, len);
	}
}

/* ---- following etcd ----------------------------------------------------- */

static void on_watch(void *ctx, int status, const struct embkv_etcd_event *ev,
		     size_t n)
{
	struct embkvd_cluster *cl = ctx;

	pthread_mutex_lock(&cl->lock);
	if (status == -ERANGE)
		cl->resync = true;
	for (size_t i = 0; !status && i < n; i++) {
		struct cl_event *e = calloc(1, sizeof(*e));

		if (!e || !(e->key = strdup(ev[i].kv.key)) ||
		    (ev[i].kv.value &&
		     !(e->value = malloc(ev[i].kv.value_len + 1)))) {
			if (e)
				free(e->key);
			free(e);
			cl->resync = true; /* read everything again */
			break;
		}
		e->del = ev[i].type == EMBKV_ETCD_EV_DELETE;
		if (e->value) {
			memcpy(e->value, ev[i].kv.value, ev[i].kv.value_len);
			e->value[ev[i].kv.value_len] = '\0';
			e->len = ev[i].kv.value_len;
		}
		e->create_rev = ev[i].kv.create_revision;
		e->mod_rev = ev[i].kv.mod_revision;
		*cl->evs_tail = e;
		cl->evs_tail = &e->next;
	}
	pthread_cond_signal(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

static void events_free(struct cl_event *e)
{
	while (e) {
		struct cl_event *next = e->next;

		free(e->key);
		free(e->value);
		free(e);
		e = next;
	}
}

static int sync_all(struct embkvd_cluster *cl);

/* Applies the queued changes; a resync request drops them and reads
 * everything again instead (0, or the read's error). */
static int drain_events(struct embkvd_cluster *cl)
{
	struct cl_event *evs;

	pthread_mutex_lock(&cl->lock);
	evs = cl->evs;
	cl->evs = NULL;
	cl->evs_tail = &cl->evs;
	if (cl->resync)
		cl->synced = false;
	cl->resync = false;
	pthread_mutex_unlock(&cl->lock);
	if (!cl->synced) {
		events_free(evs);
		return sync_all(cl);
	}
	for (struct cl_event *e = evs; e; e = e->next)
		apply(cl, e->key, e->del, e->value, e->len, e->create_rev);
	events_free(evs);
	return 0;
}

static bool stopping(struct embkvd_cluster *cl)
{
	bool stop;

	pthread_mutex_lock(&cl->lock);
	stop = cl->stop;
	pthread_mutex_unlock(&cl->lock);
	return stop;
}

/* Reads everything under P, makes the local catalog match it, and
 * watches from the next revision. */
static int sync_all(struct embkvd_cluster *cl)
{
	struct embkv_catalog_entry *const *all;
	struct embkv_etcd_kvs kvs;
	size_t tl = strlen(cl->tables);
	char **names = NULL;
	uint32_t n;
	int rc;

	embkv_etcd_watch_stop(cl->watch);
	cl->watch = NULL;
	/* What the old watch queued is older than the read below. */
	pthread_mutex_lock(&cl->lock);
	events_free(cl->evs);
	cl->evs = NULL;
	cl->evs_tail = &cl->evs;
	pthread_mutex_unlock(&cl->lock);
	rc = embkv_etcd_get(cl->etcd, cl->prefix, true, &kvs);
	log_state(cl, rc);
	if (rc)
		return rc;
	if (!cl->boot_rev)
		cl->boot_rev = kvs.revision;
	nodes_read(cl->nodes_pfx, &kvs, &cl->nodes, &cl->nnodes);
	nodes_read(cl->members, &kvs, &cl->live, &cl->nlive);
	membership_publish(cl);
	/* Tables gone from etcd while we did not watch. */
	rcu_read_lock();
	n = embkv_catalog_snapshot(cl->s->cat, &all);
	names = calloc(n ? n : 1, sizeof(*names));
	for (uint32_t i = 0; names && i < n; i++)
		names[i] = strdup(all[i]->table->attr.name);
	rcu_read_unlock();
	for (uint32_t i = 0; names && i < n; i++) {
		char key[KEY_MAX];
		bool found = false;

		if (!names[i])
			continue;
		snprintf(key, sizeof(key), "%s%s", cl->tables, names[i]);
		for (size_t k = 0; k < kvs.n && !found; k++)
			found = !strcmp(kvs.kv[k].key, key);
		if (!found)
			local_drop(cl, names[i]);
		free(names[i]);
	}
	free(names);
	for (uint32_t i = 0; i < cl->npend;) {
		char key[KEY_MAX];
		bool found = false;

		snprintf(key, sizeof(key), "%s%s", cl->tables, cl->pend[i].name);
		for (size_t k = 0; k < kvs.n && !found; k++)
			found = !strcmp(kvs.kv[k].key, key);
		if (found)
			i++;
		else
			pending_remove(cl, &cl->pend[i], true);
	}
	for (size_t k = 0; k < kvs.n; k++)
		if (!strncmp(kvs.kv[k].key, cl->tables, tl))
			apply(cl, kvs.kv[k].key, false, kvs.kv[k].value,
			      kvs.kv[k].value_len, kvs.kv[k].create_revision);
	rc = embkv_etcd_watch_start(cl->etcd, cl->prefix, kvs.revision + 1, 0,
				    on_watch, cl, &cl->watch);
	embkv_etcd_kvs_free(&kvs);
	if (rc)
		return rc;
	pthread_mutex_lock(&cl->lock);
	cl->synced = !cl->resync;
	cl->resync = false;
	pthread_mutex_unlock(&cl->lock);
	return 0;
}

/* ---- admin requests ----------------------------------------------------- */

static int job_fail(struct cl_job *j, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int job_fail(struct cl_job *j, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
	j->status = status;
	return status;
}

static int etcd_fail(struct embkvd_cluster *cl, struct cl_job *j, int rc,
		     const char *what)
{
	log_state(cl, embkv_etcd_unreachable(rc) ? rc : 0);
	if (embkv_etcd_unreachable(rc))
		return job_fail(j, rc, "table %s: etcd is unreachable (%s): "
				"tables are created and dropped through etcd; "
				"the data path keeps serving", j->name,
				embkv_strerror(rc));
	return job_fail(j, rc, "table %s: %s in etcd failed: %s %s", j->name,
			what, embkv_strerror(rc), embkv_etcd_errmsg(cl->etcd));
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The live members (leased keys under P members/), sorted. Their
 * addresses join the node list, so that the map names every one of them
 * even before this thread saw their node records. */
static int live_members(struct embkvd_cluster *cl, struct cl_job *j,
			uint32_t **ids, uint32_t *n)
{
	struct embkv_etcd_kvs kvs;
	size_t ml = strlen(cl->members);
	struct cl_node *live = NULL;
	uint32_t nlive = 0;
	int rc = embkv_etcd_get(cl->etcd, cl->members, true, &kvs);

	if (rc)
		return etcd_fail(cl, j, rc, "reading the members");
	nodes_read(cl->members, &kvs, &live, &nlive);
	for (uint32_t i = 0; i < nlive; i++) {
		struct cl_node *nn;

		if (node_addr(cl, live[i].id))
			continue;
		nn = realloc(cl->nodes, sizeof(*nn) * (cl->nnodes + 1));
		if (!nn)
			break;
		cl->nodes = nn;
		cl->nodes[cl->nnodes++] = live[i];
	}
	free(live);
	*ids = calloc(kvs.n ? kvs.n : 1, sizeof(**ids));
	*n = 0;
	for (size_t i = 0; *ids && i < kvs.n; i++) {
		char *end;
		unsigned long v = strtoul(kvs.kv[i].key + ml, &end, 10);

		if (*end || end == kvs.kv[i].key + ml || v > UINT32_MAX)
			continue;
		(*ids)[(*n)++] = (uint32_t)v;
	}
	embkv_etcd_kvs_free(&kvs);
	if (!*ids)
		return job_fail(j, -ENOMEM, "out of memory");
	if (!*n)
		return job_fail(j, EMBKV_ESERVER, "table %s: no live member "
				"in the cluster's etcd", j->name);
	qsort(*ids, *n, sizeof(**ids), cmp_u32);
	return 0;
}

/* Waits until every member of t answered the create with want (ACK_OK:
 * share built; ACK_READY: published). 0: all did. */
static int acks_wait(struct embkvd_cluster *cl, struct cl_job *j,
		     const struct ctable *t, const char *want)
{
	uint64_t deadline = now_ms() + EMBKVD_CLUSTER_CREATE_TIMEOUT_MS;
	char prefix[KEY_MAX], hex[UID_HEX];

	uid_hex(t->uid, hex);
	snprintf(prefix, sizeof(prefix), "%s%s/", cl->acks, hex);
	for (;;) {
		struct embkv_etcd_kvs kvs;
		uint32_t ok = 0;
		int rc;

		drain_events(cl); /* our own share is built here */
		rc = embkv_etcd_get(cl->etcd, prefix, true, &kvs);
		if (rc)
			return etcd_fail(cl, j, rc, "reading the answers");
		for (size_t i = 0; i < kvs.n; i++) {
			const char *v = kvs.kv[i].value;
			size_t len = kvs.kv[i].value_len;

			if ((len == strlen(ACK_OK) && !memcmp(v, ACK_OK, len)) ||
			    (len == strlen(ACK_READY) &&
			     !memcmp(v, ACK_READY, len))) {
				ok += len == strlen(want) &&
				      !memcmp(v, want, len);
				continue;
			}
			job_fail(j, -ENOMEM, "table %s: %.*s", j->name,
				 (int)(kvs.kv[i].value_len < 200
					       ? kvs.kv[i].value_len : 200),
				 kvs.kv[i].value);
			embkv_etcd_kvs_free(&kvs);
			return j->status;
		}
		embkv_etcd_kvs_free(&kvs);
		if (ok >= t->nmembers)
			return 0;
		if (now_ms() > deadline)
			return job_fail(j, EMBKV_ETIMEDOUT, "table %s: %u of %u "
					"members answered in %u ms", j->name, ok,
					t->nmembers,
					EMBKVD_CLUSTER_CREATE_TIMEOUT_MS);
		if (stopping(cl))
			return job_fail(j, EMBKV_EDISCONNECTED, "table %s: the "
					"server is shutting down", j->name);
		sleep_ms(POLL_MS);
	}
}

/* Deletes a table's record if it is still at revision rev, and its acks. */
static void undo(struct embkvd_cluster *cl, const char *key, int64_t rev,
		 uint64_t uid)
{
	char prefix[KEY_MAX], hex[UID_HEX];
	struct embkv_etcd_cmp cmp = { .key = key, .target = EMBKV_ETCD_MOD,
				      .result = EMBKV_ETCD_EQUAL,
				      .number = rev };
	struct embkv_etcd_op ops[2] = {
		{ .type = EMBKV_ETCD_OP_DELETE, .key = key },
		{ .type = EMBKV_ETCD_OP_DELETE, .key = prefix, .prefix = true },
	};
	struct embkv_etcd_txn txn = { &cmp, 1, ops, 2, NULL, 0 };
	bool ok;

	uid_hex(uid, hex);
	snprintf(prefix, sizeof(prefix), "%s%s/", cl->acks, hex);
	(void)embkv_etcd_txn(cl->etcd, &txn, &ok, NULL);
}

/* Waits (applying changes) until the local catalog has the table with
 * uid published (want) or gone (!want). */
static bool local_wait(struct embkvd_cluster *cl, const char *name,
		       uint64_t uid, bool want)
{
	uint64_t deadline = now_ms() + EMBKVD_CLUSTER_CREATE_TIMEOUT_MS;

	for (;;) {
		drain_events(cl);
		if ((local_uid(cl, name, NULL) == uid) == want)
			return true;
		if (now_ms() > deadline || stopping(cl))
			return false;
		sleep_ms(POLL_MS);
	}
}

static void run_create(struct embkvd_cluster *cl, struct cl_job *j)
{
	struct ctable t = { .attr = j->attr, .epoch = 1 };
	struct embkv_etcd_cmp cmp;
	struct embkv_etcd_op op;
	struct embkv_etcd_txn txn = { &cmp, 1, &op, 1, NULL, 0 };
	char key[KEY_MAX], *value = NULL;
	int64_t rev;
	bool ok;
	int rc;

	snprintf(key, sizeof(key), "%s%s", cl->tables, j->name);
	if (live_members(cl, j, &t.members, &t.nmembers))
		goto out;
	t.parts = calloc(t.attr.partitions, sizeof(*t.parts));
	if (!t.parts) {
		job_fail(j, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t p = 0; p < t.attr.partitions; p++)
		t.parts[p] = (uint16_t)(p % t.nmembers);
	do {
		if (getrandom(&t.uid, sizeof(t.uid), 0) != sizeof(t.uid)) {
			job_fail(j, -EIO, "no random uid");
			goto out;
		}
	} while (!t.uid);
	value = ctable_json(&t);
	if (!value) {
		job_fail(j, -ENOMEM, "out of memory");
		goto out;
	}
	cmp = (struct embkv_etcd_cmp){ .key = key, .target = EMBKV_ETCD_CREATE,
				       .result = EMBKV_ETCD_EQUAL,
				       .number = 0 };
	op = (struct embkv_etcd_op){ .type = EMBKV_ETCD_OP_PUT, .key = key,
				     .value = value,
				     .value_len = strlen(value) };
	rc = embkv_etcd_txn(cl->etcd, &txn, &ok, &rev);
	if (rc) {
		etcd_fail(cl, j, rc, "creating");
		goto out;
	}
	if (!ok) {
		job_fail(j, EMBKV_ETABLEEXISTS, "table %s exists in the "
			 "cluster", j->name);
		goto out;
	}
	if (acks_wait(cl, j, &t, ACK_OK)) {
		undo(cl, key, rev, t.uid);
		local_wait(cl, j->name, t.uid, false);
		goto out;
	}
	free(value);
	t.ready = true;
	value = ctable_json(&t);
	cmp = (struct embkv_etcd_cmp){ .key = key, .target = EMBKV_ETCD_MOD,
				       .result = EMBKV_ETCD_EQUAL,
				       .number = rev };
	op.value = value;
	op.value_len = value ? strlen(value) : 0;
	rc = value ? embkv_etcd_txn(cl->etcd, &txn, &ok, NULL) : -ENOMEM;
	if (rc || !ok) {
		if (rc)
			etcd_fail(cl, j, rc, "making it ready");
		else
			job_fail(j, EMBKV_ENOTABLE, "table %s was dropped "
				 "while it was being created", j->name);
		undo(cl, key, rev, t.uid);
		goto out;
	}
	/* Every member of the map serves it before the answer goes out. */
	rc = acks_wait(cl, j, &t, ACK_READY);
	{
		char prefix[KEY_MAX], hex[UID_HEX];

		uid_hex(t.uid, hex);
		snprintf(prefix, sizeof(prefix), "%s%s/", cl->acks, hex);
		(void)embkv_etcd_delete(cl->etcd, prefix, true, NULL);
	}
	if (rc)
		goto out;
	if (!local_wait(cl, j->name, t.uid, true)) {
		job_fail(j, EMBKV_ETIMEDOUT, "table %s was created but is not "
			 "visible here yet", j->name);
		goto out;
	}
	{
		struct embkv_catalog_entry *e;

		j->ref.uid = local_uid(cl, j->name, &e);
		j->ref.table_id = e ? e->id : 0;
		embkv_catalog_entry_put(e);
	}
	embkvd_log("table %s created in the cluster: uid %016" PRIx64 ", %u "
		  "partitions over %u members", j->name, t.uid,
		  t.attr.partitions, t.nmembers);
out:
	free(value);
	free(t.members);
	free(t.parts);
}

static void run_drop(struct embkvd_cluster *cl, struct cl_job *j)
{
	struct embkv_etcd_kvs kvs;
	struct ctable t;
	char key[KEY_MAX], prefix[KEY_MAX], hex[UID_HEX];
	struct embkv_etcd_cmp cmp;
	struct embkv_etcd_op ops[2];
	struct embkv_etcd_txn txn = { &cmp, 1, ops, 2, NULL, 0 };
	bool ok;
	int rc;

	snprintf(key, sizeof(key), "%s%s", cl->tables, j->name);
	rc = embkv_etcd_get(cl->etcd, key, false, &kvs);
	if (rc) {
		etcd_fail(cl, j, rc, "reading");
		return;
	}
	if (!kvs.n) {
		embkv_etcd_kvs_free(&kvs);
		job_fail(j, EMBKV_ENOTABLE, "no table called %s in the cluster",
			 j->name);
		return;
	}
	rc = ctable_parse(j->name, kvs.kv[0].value, kvs.kv[0].value_len, &t);
	cmp = (struct embkv_etcd_cmp){ .key = key, .target = EMBKV_ETCD_MOD,
				       .result = EMBKV_ETCD_EQUAL,
				       .number = kvs.kv[0].mod_revision };
	embkv_etcd_kvs_free(&kvs);
	uid_hex(rc ? 0 : t.uid, hex);
	snprintf(prefix, sizeof(prefix), "%s%s/", cl->acks, hex);
	ops[0] = (struct embkv_etcd_op){ .type = EMBKV_ETCD_OP_DELETE,
					 .key = key };
	ops[1] = (struct embkv_etcd_op){ .type = EMBKV_ETCD_OP_DELETE,
					 .key = prefix, .prefix = true };
	rc = embkv_etcd_txn(cl->etcd, &txn, &ok, NULL);
	ctable_free(&t);
	if (rc) {
		etcd_fail(cl, j, rc, "dropping");
		return;
	}
	if (!ok) {
		job_fail(j, EMBKV_ESTALE, "table %s changed while it was being "
			 "dropped: try again", j->name);
		return;
	}
	if (!local_wait(cl, j->name, 0, true))
		job_fail(j, EMBKV_ETIMEDOUT, "table %s was dropped from the "
			 "cluster but is still here", j->name);
	else
		embkvd_log("table %s dropped from the cluster", j->name);
}

/* I/O thread: the job's answer. */
static void job_finish(struct embkvd_done *d)
{
	struct cl_job *j = caa_container_of(d, struct cl_job, fin);
	struct embkvd_conn *c = j->conn;
	uint8_t *body;

	if (j->status)
		embkvd_conn_error(c, j->req_id, j->status, false, "%s", j->msg);
	else if (j->op == EMBKV_WIRE_OP_TABLE_CREATE) {
		if (!embkvd_conn_reply(c, j->req_id, j->op | EMBKV_WIRE_OP_REPLY,
				      EMBKV_WIRE_TABLE_REF_SIZE, &body))
			embkv_wire_table_ref_encode(&j->ref, body,
						    EMBKV_WIRE_TABLE_REF_SIZE);
	} else {
		(void)embkvd_conn_reply(c, j->req_id,
				       j->op | EMBKV_WIRE_OP_REPLY, 0, &body);
	}
	embkvd_conn_release(c, 0);
	free(j);
}

static void job_post(struct cl_job *j)
{
	embkvd_io_post(j->conn->io, &j->fin.node);
}

void embkvd_cluster_submit(struct embkvd_cluster *cl, struct embkvd_conn *c,
			   const struct embkv_wire_hdr *h, const uint8_t *body)
{
	struct cl_job *j = calloc(1, sizeof(*j));
	int rc;

	if (!j) {
		embkvd_conn_error(c, h->request_id, -ENOMEM, false,
				 "no memory for a table request");
		return;
	}
	j->fin.finish = job_finish;
	j->conn = c;
	j->req_id = h->request_id;
	j->op = h->opcode;
	if (h->opcode == EMBKV_WIRE_OP_TABLE_CREATE) {
		rc = embkv_wire_table_attr_decode(body, h->body_len, &j->attr);
		if (!rc)
			rc = embkv_table_attr_check(&j->attr);
		if (!rc)
			memcpy(j->name, j->attr.name, sizeof(j->name));
	} else {
		rc = embkv_wire_name_decode(body, h->body_len, j->name);
	}
	if (rc) {
		embkvd_conn_error(c, h->request_id, rc, false, "bad %s: %s",
				 embkv_wire_op_name(h->opcode),
				 embkv_strerror(rc));
		free(j);
		return;
	}
	pthread_mutex_lock(&cl->lock);
	if (cl->stop) {
		pthread_mutex_unlock(&cl->lock);
		embkvd_conn_error(c, h->request_id, EMBKV_EDISCONNECTED, false,
				 "the server is shutting down");
		free(j);
		return;
	}
	embkvd_conn_hold(c, 0);
	*cl->jobs_tail = j;
	cl->jobs_tail = &j->next;
	pthread_cond_signal(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

static struct cl_job *job_take(struct embkvd_cluster *cl)
{
	struct cl_job *j;

	pthread_mutex_lock(&cl->lock);
	j = cl->jobs;
	if (j) {
		cl->jobs = j->next;
		if (!cl->jobs)
			cl->jobs_tail = &cl->jobs;
	}
	pthread_mutex_unlock(&cl->lock);
	return j;
}

/* --default-table in a cluster: created through etcd once this member is
 * live (so that the map gives it partitions), unless the cluster has it. */
static void default_table(struct embkvd_cluster *cl)
{
	struct cl_job j = { .op = EMBKV_WIRE_OP_TABLE_CREATE,
			    .attr = cl->default_attr };
	struct embkv_etcd_kvs kvs;
	char key[KEY_MAX];
	int rc;

	memcpy(j.name, j.attr.name, sizeof(j.name));
	if (local_uid(cl, j.name, NULL)) {
		pthread_mutex_lock(&cl->lock);
		cl->want_default = false;
		pthread_cond_broadcast(&cl->cond);
		pthread_mutex_unlock(&cl->lock);
		return;
	}
	snprintf(key, sizeof(key), "%s%u", cl->members, cl->self);
	rc = embkv_etcd_get(cl->etcd, key, false, &kvs);
	if (rc || !kvs.n) {           /* not registered yet: later */
		if (!rc)
			embkv_etcd_kvs_free(&kvs);
		return;
	}
	embkv_etcd_kvs_free(&kvs);
	run_create(cl, &j);
	if (!j.status || j.status == EMBKV_ETABLEEXISTS) {
		/* Next round: done once it is visible here. */
		return;
	}
	if (!cl->default_logged)
		embkvd_log("cannot create the default table: %s (trying again)",
			  j.msg);
	cl->default_logged = true;
}

/* ---- the thread --------------------------------------------------------- */

static void wait_work(struct embkvd_cluster *cl, uint32_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(ms % 1000u) * NS_PER_MS;
	ts.tv_sec += ms / 1000u + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&cl->lock);
	if (!cl->stop && !cl->evs && !cl->jobs && !cl->resync)
		pthread_cond_timedwait(&cl->cond, &cl->lock, &ts);
	pthread_mutex_unlock(&cl->lock);
}

static void *cl_main(void *arg)
{
	struct embkvd_cluster *cl = arg;
	struct cl_job *j;

	rcu_register_thread();
	while (!stopping(cl)) {
		if (drain_events(cl)) {
			/* Admin requests fail fast while etcd is away. */
			while ((j = job_take(cl))) {
				etcd_fail(cl, j, cl->logged ? cl->logged
							    : -ECONNREFUSED,
					  "reading the catalog");
				job_post(j);
			}
			wait_work(cl, RETRY_MS);
			continue;
		}
		if ((j = job_take(cl))) {
			if (j->op == EMBKV_WIRE_OP_TABLE_CREATE)
				run_create(cl, j);
			else
				run_drop(cl, j);
			job_post(j);
			continue;
		}
		if (cl->want_default)
			default_table(cl);
		wait_work(cl, cl->want_default ? POLL_MS * 5 : RETRY_MS);
	}
	embkv_etcd_watch_stop(cl->watch);
	cl->watch = NULL;
	rcu_unregister_thread();
	return NULL;
}

int embkvd_cluster_start(struct embkvd *s,
			 const struct embkvd_attr *a,
			 struct embkvd_cluster **out)
{
	const char *name = a->cluster ? a->cluster
				      : EMBKVD_MEMBER_CLUSTER_DEFAULT;
	struct embkv_etcd_attr ea;
	struct embkvd_cluster *cl;
	int rc;

	*out = NULL;
	if (!a->etcd)
		return -EINVAL;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	cl->s = s;
	cl->self = a->member_id;
	cl->evs_tail = &cl->evs;
	cl->jobs_tail = &cl->jobs;
	snprintf(cl->prefix, sizeof(cl->prefix), "/%s/", name);
	snprintf(cl->tables, sizeof(cl->tables), "/%s/tables/", name);
	snprintf(cl->nodes_pfx, sizeof(cl->nodes_pfx), "/%s/nodes/", name);
	snprintf(cl->acks, sizeof(cl->acks), "/%s/acks/", name);
	snprintf(cl->members, sizeof(cl->members), "/%s/members/", name);
	pthread_mutex_init(&cl->lock, NULL);
	pthread_cond_init(&cl->cond, NULL);
	if (a->advertise) {
		snprintf(cl->self_addr, sizeof(cl->self_addr), "%s",
			 a->advertise);
	} else {
		const struct embkvd_map *m;

		rcu_read_lock();
		m = embkvd_map_cur(&s->map);
		snprintf(cl->self_addr, sizeof(cl->self_addr), "%s",
			 m->servers[m->self]);
		rcu_read_unlock();
	}
	if (a->default_table) {
		embkv_table_attr_init(&cl->default_attr);
		if (strlen(a->default_table) >= sizeof(cl->default_attr.name)) {
			rc = EMBKV_ELIMIT;
			goto fail;
		}
		strcpy(cl->default_attr.name, a->default_table);
		cl->want_default = true;
	}
	embkv_etcd_attr_init(&ea);
	ea.endpoints = a->etcd;
	rc = embkv_etcd_create(&ea, &cl->etcd);
	if (rc)
		goto fail;
	/* The first read here, so that tables are known before anyone asks;
	 * with etcd away the thread keeps trying. */
	(void)sync_all(cl);
	rc = -pthread_create(&cl->thread, NULL, cl_main, cl);
	if (rc)
		goto fail;
	cl->started = true;
	*out = cl;
	return 0;

fail:
	embkvd_cluster_destroy(cl);
	return rc;
}

bool embkvd_cluster_wait_default(struct embkvd_cluster *cl, uint32_t ms)
{
	uint64_t deadline = now_ms() + ms;
	bool done;

	pthread_mutex_lock(&cl->lock);
	while (cl->want_default && now_ms() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)POLL_MS * NS_PER_MS;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&cl->cond, &cl->lock, &ts);
	}
	done = !cl->want_default;
	pthread_mutex_unlock(&cl->lock);
	return done;
}

void embkvd_cluster_stop(struct embkvd_cluster *cl)
{
	struct cl_job *j;

	if (!cl)
		return;
	pthread_mutex_lock(&cl->lock);
	cl->stop = true;
	pthread_cond_signal(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
	if (cl->started)
		pthread_join(cl->thread, NULL);
	cl->started = false;
	embkv_etcd_watch_stop(cl->watch);
	cl->watch = NULL;
	while ((j = job_take(cl))) {
		job_fail(j, EMBKV_EDISCONNECTED, "the server is shutting down");
		job_post(j);
	}
}

void embkvd_cluster_destroy(struct embkvd_cluster *cl)
{
	if (!cl)
		return;
	embkvd_cluster_stop(cl);
	while (cl->npend)
		pending_remove(cl, &cl->pend[cl->npend - 1], true);
	free(cl->pend);
	events_free(cl->evs);
	free(cl->nodes);
	free(cl->live);
	embkv_etcd_destroy(cl->etcd);
	pthread_cond_destroy(&cl->cond);
	pthread_mutex_destroy(&cl->lock);
	free(cl);
}
