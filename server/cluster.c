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
 *   P nodes/<id> (server/member.c), applied in revision order with the
 *   tables; a member seen at a new address re-reads everything, so maps
 *   follow a member that came back elsewhere.
 * The admin requests are in cluster_admin.c, the records' formats in
 * cluster_record.c (server/cluster_priv.h lists the three).
 *
 * Invariants: local changes happen on this thread only, in etcd revision
 * order; a table is published only in state "ready"; reserved memory is
 * always either published or cancelled.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "server/cluster_priv.h"
#include "server/ckpt.h"
#include <time.h>
#include "server/member.h"

/* ---- small helpers ------------------------------------------------------ */

uint64_t cl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / NS_PER_MS;
}

void cl_sleep_ms(uint32_t ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * NS_PER_MS };

	nanosleep(&ts, NULL);
}

void cl_log_state(struct embkvd_cluster *cl, int status)
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

/* ---- local state -------------------------------------------------------- */

const char *cl_node_addr(struct embkvd_cluster *cl, uint32_t id)
{
	for (uint32_t i = 0; i < cl->nnodes; i++)
		if (cl->nodes[i].id == id)
			return cl->nodes[i].addr;
	return NULL;
}

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
			addrs[i] = cl_node_addr(cl, t->members[i]);
			if (!addrs[i]) {
				/* Not seen yet: a read of everything follows,
				 * and the map is rebuilt once its node record
				 * comes (apply_member). */
				snprintf(unknown[i], sizeof(unknown[i]),
					 "tcp://unknown-member-%u:1",
					 t->members[i]);
				addrs[i] = unknown[i];
			}
			if (t->members[i] == cl->self)
				self = i;
		}
		rc = embkvd_map_create_placed(t->epoch, addrs, t->nmembers,
					      self, t->parts,
					      t->attr.partitions, out);
		if (!rc)
			(*out)->spread = t->spread;
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
	char key[KEY_MAX];

	cl_acks_key(cl, uid, cl->self, key, sizeof(key));
	cl_log_state(cl, embkv_etcd_put(cl->etcd, key, what, strlen(what), 0,
				     NULL));
}

/* Drops the published table called name, if any. */
static void local_drop(struct embkvd_cluster *cl, const char *name)
{
	if (!embkv_catalog_drop(cl->s->cat, name))
		embkvd_log("table %s dropped (cluster catalog)", name);
}

/* The uid of the published table called name, 0 if none. */
uint64_t cl_local_uid(struct embkvd_cluster *cl, const char *name,
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

/* Publishes e (consumed either way): 0 or the catalog's error. */
static int local_publish(struct embkvd_cluster *cl, const struct ctable *t,
			 struct embkv_catalog_entry *e, bool restarted)
{
	uint32_t id, held = e->table->nloaded;
	int rc = embkv_catalog_publish(cl->s->cat, e, t->uid, &id, NULL);

	if (rc) {
		embkvd_log_at(EMBKVD_ERROR, "table %s: cannot publish it here: %s", t->attr.name,
			  embkv_strerror(rc));
		return rc;
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
	return 0;
}

/* Whether this member is in t's map (only those answer a create). */
static bool in_map(const struct embkvd_cluster *cl, const struct ctable *t)
{
	for (uint32_t i = 0; i < t->nmembers; i++)
		if (t->members[i] == cl->self)
			return true;
	return false;
}

/* The answer of this member to a create, when it is in the map. */
static void ack_if_member(struct embkvd_cluster *cl, const struct ctable *t,
			  const char *what)
{
	if (in_map(cl, t))
		ack(cl, t->uid, what);
}

/* The text of an ack that refuses: why this member cannot. */
static void ack_refuse(struct embkvd_cluster *cl, const struct ctable *t,
		       int rc)
{
	char why[MSG_MAX];

	snprintf(why, sizeof(why), "member %u: %s%s", cl->self,
		 embkv_strerror(rc),
		 rc == -ENOMEM ? " (over --memory-limit or out of memory)" : "");
	ack_if_member(cl, t, why);
}

struct leave {
	struct embkv_catalog *cat;
	struct embkv_catalog_entry *e;
	uint32_t part;
};

static int leave_run(void *arg)
{
	struct leave *l = arg;

	embkv_catalog_part_remove(l->cat, l->e, l->part);
	return 0;
}

/*
 * Partitions of e that left this member in map m (they were held here and
 * m gives them elsewhere): each was refused (MOVING) before m was
 * published. Its RDMA registration goes first; after a grace period every
 * batch that found it serving is in its owner's queue, and the owner frees
 * it after them (a job queued later, a restore's or a move's, finds it
 * gone and gives up).
 */
static void drop_leaving(struct embkvd_cluster *cl,
			 struct embkv_catalog_entry *e, const uint8_t *leaving,
			 const struct embkvd_map *m)
{
	struct embkvd *s = cl->s;
	uint32_t n = 0;

	for (uint32_t p = 0; p < e->table->nparts; p++)
		if (leaving[p] && e->hooks.part_removed)
			e->hooks.part_removed(e->hooks.ctx, e, p);
	synchronize_rcu();
	for (uint32_t p = 0; p < e->table->nparts; p++) {
		struct leave l = { s->cat, e, p };

		if (!leaving[p])
			continue;
		if (s->owners)
			embkv_owner_call(s->owners,
					 embkvd_map_owner(m, p,
						embkv_owner_count(s->owners)),
					 leave_run, &l);
		else    /* (none yet at start: no batch either) */
			leave_run(&l);
		n++;
	}
	if (n)
		embkvd_log("table %s: %u partitions left this member (epoch "
			   "%" PRIu64 ") and were freed", e->table->attr.name,
			   n, m->epoch);
}

/*
 * A new map for a published table (an epoch, an address or the placement
 * changed). Placement changes: a partition the map gives this member and
 * that is not here is mapped UNLOADED (the checkpoint thread loads it from
 * the newest checkpoint: recovery), unless a move brings it (then it
 * serves from now on); a partition held here that the map gives elsewhere
 * is refused, then freed once no batch can reach it (drop_leaving).
 */
static void local_remap(struct embkvd_cluster *cl,
			struct embkv_catalog_entry *e, const struct ctable *t)
{
	struct embkv_table *tb = e->table;
	struct embkvd_map *m;
	const struct embkvd_map *cur;
	uint8_t *leaving, *arrived;
	bool same, any_leaving = false;

	if (map_build(cl, t, &m))
		return;
	rcu_read_lock();
	cur = rcu_dereference(e->map);
	same = cur && cur->epoch == m->epoch && cur->nservers == m->nservers;
	for (uint32_t i = 0; same && i < m->nservers; i++)
		same = !strcmp(cur->servers[i], m->servers[i]);
	rcu_read_unlock();
	if (same) {
		embkvd_map_destroy(m);
		return;
	}
	leaving = calloc(tb->nparts, 1);
	arrived = calloc(tb->nparts, 1);
	for (uint32_t p = 0; leaving && arrived && p < tb->nparts; p++) {
		bool here = embkvd_map_mine(m, p);
		int st = embkv_part_state(&tb->parts[p]);
		int in = embkvd_ckpt_incoming(cl->s->ckpt, e->uid, p);
		bool incoming = in != EMBKVD_MOVE_NONE;
		int rc;

		if (here && in == EMBKVD_MOVE_FINAL &&
		    st == EMBKV_PART_MOVING) {
			arrived[p] = 1;
		} else if (here && incoming) {
			/* given here (a recovery) while a move into it had
			 * not finished: restored from a checkpoint instead */
			embkvd_ckpt_incoming_done(cl->s->ckpt, e->uid, p);
			if (st == EMBKV_PART_ABSENT)
				rc = embkv_catalog_part_add(cl->s->cat, e, p,
							    EMBKV_PART_UNLOADED);
			else
				rc = embkv_part_set_state(tb, p,
							  EMBKV_PART_UNLOADED);
			embkvd_log("table %s partition %u: given to this member "
				   "before the move into it finished; %s",
				   tb->attr.name, p, rc ? embkv_strerror(rc) :
				   "restored from the newest checkpoint");
		} else if (here && st == EMBKV_PART_ABSENT) {
			rc = embkv_catalog_part_add(cl->s->cat, e, p,
						    EMBKV_PART_UNLOADED);
			if (rc)
				embkvd_log_at(EMBKVD_WARN, "table %s partition %u: cannot hold "
					   "it here: %s", tb->attr.name, p,
					   embkv_strerror(rc));
			else
				embkvd_log("table %s partition %u: given to "
					   "this member (epoch %" PRIu64 "); "
					   "EMBKV_EUNAVAIL until restored",
					   tb->attr.name, p, m->epoch);
		} else if (!here && st != EMBKV_PART_ABSENT && !incoming) {
			embkv_part_set_state(tb, p, EMBKV_PART_MOVING);
			leaving[p] = 1;
			any_leaving = true;
		}
	}
	embkvd_map_publish(&e->map, m);
	for (uint32_t p = 0; arrived && p < tb->nparts; p++)
		if (arrived[p]) {
			int rc = embkv_part_set_state(tb, p,
						      EMBKV_PART_SERVING);

			embkvd_ckpt_incoming_done(cl->s->ckpt, e->uid, p);
			embkvd_log("table %s partition %u: moved here, %s "
				   "(epoch %" PRIu64 ")", tb->attr.name, p,
				   rc ? "but it is gone" : "serving", t->epoch);
		}
	if (any_leaving) {
		rcu_read_lock();
		cur = rcu_dereference(e->map);
		rcu_read_unlock();
		/* cur stays valid: only this thread replaces e->map */
		drop_leaving(cl, e, leaving, cur);
	}
	free(leaving);
	free(arrived);
}

/* The record's optimizer values (TABLE_SET_OPT recorded them) replace
 * the local table's when they differ. */
static void opt_follow(struct embkv_catalog_entry *e, const struct ctable *t)
{
	struct embkv_opt_attr cur;

	embkv_table_opt_get(e->table, &cur);
	if (!memcmp(&cur, &t->attr.opt, sizeof(cur)))
		return;
	if (embkv_table_opt_set(e->table, &t->attr.opt))
		embkvd_log_at(EMBKVD_WARN, "table %s: the cluster's optimizer "
			      "values are refused here", t->attr.name);
	else
		embkvd_log("table %s: optimizer values from the cluster (lr "
			   "%g -> %g)", t->attr.name, (double)cur.lr,
			   (double)t->attr.opt.lr);
}

/* P tables/<name> was put (at revision create_rev first, mod_rev now). */
static void apply_put(struct embkvd_cluster *cl, const char *name,
		      const char *value, size_t len, int64_t create_rev,
		      int64_t mod_rev)
{
	bool restarted = create_rev <= cl->boot_rev;
	struct embkv_catalog_entry *e, *ref;
	struct cl_pending *p;
	struct ctable t;
	uint64_t have;
	int rc;

	rc = cl_table_parse(name, value, len, &t);
	if (rc) {
		embkvd_log("cluster catalog: table %s: unreadable record (%s), "
			  "ignored", name, embkv_strerror(rc));
		return;
	}
	have = cl_local_uid(cl, name, &ref);
	if (have == t.uid) {
		opt_follow(ref, &t);
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
			ack_refuse(cl, &t, rc);
			goto out;
		}
		p = realloc(cl->pend, sizeof(*p) * (cl->npend + 1));
		if (!p) {
			embkv_catalog_cancel(cl->s->cat, e);
			ack_refuse(cl, &t, -ENOMEM);
			goto out;
		}
		cl->pend = p;
		p = &cl->pend[cl->npend++];
		p->uid = t.uid;
		p->e = e;
		p->mod_rev = mod_rev;
		p->since_ms = cl_now_ms();
		snprintf(p->name, sizeof(p->name), "%s", name);
		ack_if_member(cl, &t, ACK_OK);
		goto out;
	}
	if (p) {
		e = p->e;
		pending_remove(cl, p, false);
		rc = local_publish(cl, &t, e, false);
		if (rc)
			ack_refuse(cl, &t, rc);
		else
			ack_if_member(cl, &t, ACK_READY);
		goto out;
	}
	rc = local_build(cl, &t, restarted, &e);
	if (rc)
		embkvd_log_at(EMBKVD_ERROR, "table %s: cannot hold this member's share: %s",
			  name, embkv_strerror(rc));
	else
		local_publish(cl, &t, e, restarted);
out:
	embkv_catalog_entry_put(ref);
	cl_table_free(&t);
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
		cl_node_remove(node ? cl->nodes : cl->live,
			    node ? &cl->nnodes : &cl->nlive, (uint32_t)id);
	} else if (cl_node_parse(value, len, &nn)) {
		was = node ? cl_node_addr(cl, nn.id) : NULL;
		/* A new address, or a member no map could name yet: maps
		 * are rebuilt from a read of everything. */
		moved = node && (!was || strcmp(was, nn.addr));
		ok = cl_node_upsert(node ? &cl->nodes : &cl->live,
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

	if (p) {
		/* An undone create: our ack may have come after the
		 * creator deleted the others. */
		char key[KEY_MAX];

		cl_acks_key(cl, p->uid, cl->self, key, sizeof(key));
		cl_log_state(cl, embkv_etcd_delete(cl->etcd, key, false,
						   NULL));
		pending_remove(cl, p, true);
	}
	local_drop(cl, name);
}

/* One change under P, in revision order. */
static void apply(struct embkvd_cluster *cl, const char *key, bool del,
		  const char *value, size_t len, int64_t create_rev,
		  int64_t mod_rev)
{
	size_t tl = strlen(cl->tables);

	if (!strncmp(key, cl->tables, tl)) {
		if (strlen(key + tl) >= EMBKV_TABLE_NAME_MAX)
			return;
		if (del)
			apply_delete(cl, key + tl);
		else
			apply_put(cl, key + tl, value, len, create_rev,
				  mod_rev);
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
	pthread_cond_broadcast(&cl->cond);
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
int cl_drain_events(struct embkvd_cluster *cl)
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
		apply(cl, e->key, e->del, e->value, e->len, e->create_rev,
		      e->mod_rev);
	events_free(evs);
	return 0;
}

bool cl_stopping(struct embkvd_cluster *cl)
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
	cl_log_state(cl, rc);
	if (rc)
		return rc;
	if (!cl->boot_rev)
		cl->boot_rev = kvs.revision;
	cl_nodes_read(cl->nodes_pfx, &kvs, &cl->nodes, &cl->nnodes);
	cl_nodes_read(cl->members, &kvs, &cl->live, &cl->nlive);
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
			      kvs.kv[k].value_len, kvs.kv[k].create_revision,
			      kvs.kv[k].mod_revision);
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

/*
 * A create whose creator vanished (killed between its "creating" put and
 * its ready flip or undo) would hold every member's share forever: a
 * member that has held one this long deletes the record, compared on its
 * revision, and every member frees its share on the delete.
 */
static void expire_pending(struct embkvd_cluster *cl)
{
	uint64_t now = cl_now_ms();

	for (uint32_t i = 0; i < cl->npend; i++) {
		struct cl_pending *p = &cl->pend[i];
		char key[KEY_MAX];
		bool done;

		if (now - p->since_ms < PENDING_EXPIRE_MS)
			continue;
		p->since_ms = now; /* once per period, whatever happens */
		snprintf(key, sizeof(key), "%s%s", cl->tables, p->name);
		if (!cl_table_delete(cl, key, p->mod_rev, p->uid, &done) &&
		    done)
			embkvd_log("table %s: its create was left unfinished "
				   "for %u s (creator gone?): undone",
				   p->name, PENDING_EXPIRE_MS / 1000u);
	}
}

static void *cl_main(void *arg)
{
	struct embkvd_cluster *cl = arg;
	struct cl_job *j;

	rcu_register_thread();
	while (!cl_stopping(cl)) {
		if (cl_drain_events(cl)) {
			/* Admin requests fail fast while etcd is away. */
			while ((j = cl_job_take(cl))) {
				cl_etcd_fail(cl, j, cl->logged ? cl->logged
							    : -ECONNREFUSED,
					  "reading the catalog");
				cl_job_post(j);
			}
			wait_work(cl, RETRY_MS);
			continue;
		}
		if ((j = cl_job_take(cl))) {
			if (j->op == EMBKV_WIRE_OP_TABLE_CREATE)
				cl_run_create(cl, j);
			else if (j->op == EMBKV_WIRE_OP_TABLE_SET_OPT)
				cl_run_set_opt(cl, j);
			else
				cl_run_drop(cl, j);
			cl_job_post(j);
			continue;
		}
		expire_pending(cl);
		if (cl->want_default && cl_now_ms() >= cl->default_next_ms)
			cl_default_table(cl);
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
	uint64_t deadline = cl_now_ms() + ms;
	bool done;

	pthread_mutex_lock(&cl->lock);
	while (cl->want_default && cl_now_ms() < deadline) {
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
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
	if (cl->started)
		pthread_join(cl->thread, NULL);
	cl->started = false;
	embkv_etcd_watch_stop(cl->watch);
	cl->watch = NULL;
	while ((j = cl_job_take(cl))) {
		cl_job_fail(j, EMBKV_EDISCONNECTED, "the server is shutting down");
		cl_job_post(j);
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
