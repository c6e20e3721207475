/*
 * TABLE_CREATE and TABLE_DROP in a cluster (server/cluster_priv.h).
 *
 * What: an I/O thread hands the request to the cluster thread
 * (embkvd_cluster_submit), which runs it as etcd transactions and hands
 * the answer back through the I/O thread's inbox.
 * Why: a create is all or nothing across members: put the table as
 * "creating" (only if the name is free), wait for every member of its map
 * to build and charge its share, flip it to "ready" (only if unchanged),
 * wait for every member to serve it, then answer; any refusal or silence
 * deletes the record, and every member frees its share.
 * Invariant: every submitted request gets exactly one answer, also when
 * etcd is away or the server stops.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "server/cluster_priv.h"
#include <sys/random.h>

/* ---- admin requests ----------------------------------------------------- */

int cl_job_fail(struct cl_job *j, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

int cl_job_fail(struct cl_job *j, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
	j->status = status;
	return status;
}

int cl_etcd_fail(struct embkvd_cluster *cl, struct cl_job *j, int rc,
		     const char *what)
{
	cl_log_state(cl, embkv_etcd_unreachable(rc) ? rc : 0);
	if (embkv_etcd_unreachable(rc))
		return cl_job_fail(j, rc, "table %s: etcd is unreachable (%s): "
				"tables are created and dropped through etcd; "
				"the data path keeps serving", j->name,
				embkv_strerror(rc));
	return cl_job_fail(j, rc, "table %s: %s in etcd failed: %s %s", j->name,
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
		return cl_etcd_fail(cl, j, rc, "reading the members");
	cl_nodes_read(cl->members, &kvs, &live, &nlive);
	for (uint32_t i = 0; i < nlive; i++) {
		struct cl_node *nn;

		if (cl_node_addr(cl, live[i].id))
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
		return cl_job_fail(j, -ENOMEM, "out of memory");
	if (!*n)
		return cl_job_fail(j, EMBKV_ESERVER, "table %s: no live member "
				"in the cluster's etcd", j->name);
	qsort(*ids, *n, sizeof(**ids), cmp_u32);
	return 0;
}

/* Whether an ack key's last part names a member of t's map. Keys are
 * unique, so each member counts once. */
static bool ack_of_member(const char *id_s, const struct ctable *t)
{
	char *end;
	unsigned long id = strtoul(id_s, &end, 10);

	if (end == id_s || *end || id > UINT32_MAX)
		return false;
	for (uint32_t i = 0; i < t->nmembers; i++)
		if (t->members[i] == id)
			return true;
	return false;
}

/* Waits until every member of t answered the create with want (ACK_OK:
 * share built; ACK_READY: published). 0: all did. */
static int acks_wait(struct embkvd_cluster *cl, struct cl_job *j,
		     const struct ctable *t, const char *want)
{
	uint64_t deadline = cl_now_ms() + EMBKVD_CLUSTER_CREATE_TIMEOUT_MS;
	char prefix[KEY_MAX];

	cl_acks_key(cl, t->uid, CL_ACKS_ALL, prefix, sizeof(prefix));
	for (;;) {
		struct embkv_etcd_kvs kvs;
		uint32_t ok = 0;
		int rc;

		cl_drain_events(cl); /* our own share is built here */
		rc = embkv_etcd_get(cl->etcd, prefix, true, &kvs);
		if (rc)
			return cl_etcd_fail(cl, j, rc, "reading the answers");
		for (size_t i = 0; i < kvs.n; i++) {
			const char *v = kvs.kv[i].value;
			size_t len = kvs.kv[i].value_len;

			/* Only the members of the table's map answer for it
			 * (the key's last part is the member id; one each). */
			if (!ack_of_member(kvs.kv[i].key + strlen(prefix), t))
				continue;
			if ((len == strlen(ACK_OK) && !memcmp(v, ACK_OK, len)) ||
			    (len == strlen(ACK_READY) &&
			     !memcmp(v, ACK_READY, len))) {
				ok += len == strlen(want) &&
				      !memcmp(v, want, len);
				continue;
			}
			cl_job_fail(j, -ENOMEM, "table %s: %.*s", j->name,
				 (int)(kvs.kv[i].value_len < 200
					       ? kvs.kv[i].value_len : 200),
				 kvs.kv[i].value);
			embkv_etcd_kvs_free(&kvs);
			return j->status;
		}
		embkv_etcd_kvs_free(&kvs);
		if (ok >= t->nmembers)
			return 0;
		if (cl_now_ms() > deadline)
			return cl_job_fail(j, EMBKV_ETIMEDOUT, "table %s: %u of %u "
					"members answered in %u ms", j->name, ok,
					t->nmembers,
					EMBKVD_CLUSTER_CREATE_TIMEOUT_MS);
		if (cl_stopping(cl))
			return cl_job_fail(j, EMBKV_EDISCONNECTED, "table %s: the "
					"server is shutting down", j->name);
		cl_sleep_ms(POLL_MS);
	}
}

void cl_acks_key(const struct embkvd_cluster *cl, uint64_t uid,
		 uint32_t member, char *buf, size_t len)
{
	char hex[UID_HEX];

	cl_uid_hex(uid, hex);
	if (member == CL_ACKS_ALL)
		snprintf(buf, len, "%s%s/", cl->acks, hex);
	else
		snprintf(buf, len, "%s%s/%u", cl->acks, hex, member);
}

int cl_table_delete(struct embkvd_cluster *cl, const char *key, int64_t rev,
		    uint64_t uid, bool *done)
{
	char prefix[KEY_MAX];
	struct embkv_etcd_cmp cmp = { .key = key, .target = EMBKV_ETCD_MOD,
				      .result = EMBKV_ETCD_EQUAL,
				      .number = rev };
	struct embkv_etcd_op ops[2] = {
		{ .type = EMBKV_ETCD_OP_DELETE, .key = key },
		{ .type = EMBKV_ETCD_OP_DELETE, .key = prefix, .prefix = true },
	};
	struct embkv_etcd_txn txn = { &cmp, 1, ops, 2, NULL, 0 };

	cl_acks_key(cl, uid, CL_ACKS_ALL, prefix, sizeof(prefix));
	return embkv_etcd_txn(cl->etcd, &txn, done, NULL);
}

/* Undoes a create: the record if still at rev, and the acks in any case. */
static void undo(struct embkvd_cluster *cl, const char *key, int64_t rev,
		 uint64_t uid)
{
	char prefix[KEY_MAX];
	bool ok;

	/* The record changed (a drop came first): the acks go anyway, they
	 * belong to this uid alone. */
	if (!cl_table_delete(cl, key, rev, uid, &ok) && !ok) {
		cl_acks_key(cl, uid, CL_ACKS_ALL, prefix, sizeof(prefix));
		(void)embkv_etcd_delete(cl->etcd, prefix, true, NULL);
	}
}

/* Waits (applying changes) until the local catalog has the table with
 * uid published (want) or gone (!want). */
static bool local_wait(struct embkvd_cluster *cl, const char *name,
		       uint64_t uid, bool want)
{
	uint64_t deadline = cl_now_ms() + EMBKVD_CLUSTER_CREATE_TIMEOUT_MS;

	for (;;) {
		cl_drain_events(cl);
		if ((cl_local_uid(cl, name, NULL) == uid) == want)
			return true;
		if (cl_now_ms() > deadline || cl_stopping(cl))
			return false;
		cl_sleep_ms(POLL_MS);
	}
}

void cl_run_create(struct embkvd_cluster *cl, struct cl_job *j)
{
	struct ctable t = { .attr = j->attr, .epoch = 1 };
	struct embkv_etcd_cmp cmp;
	struct embkv_etcd_op op;
	struct embkv_etcd_txn txn = { &cmp, 1, &op, 1, NULL, 0 };
	char key[KEY_MAX], *value = NULL;
	int64_t rev, ready_rev = 0;
	bool ok;
	int rc;

	snprintf(key, sizeof(key), "%s%s", cl->tables, j->name);
	if (live_members(cl, j, &t.members, &t.nmembers))
		goto out;
	t.parts = calloc(t.attr.partitions, sizeof(*t.parts));
	if (!t.parts) {
		cl_job_fail(j, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t p = 0; p < t.attr.partitions; p++)
		t.parts[p] = (uint16_t)(p % t.nmembers);
	do {
		if (getrandom(&t.uid, sizeof(t.uid), 0) != sizeof(t.uid)) {
			cl_job_fail(j, -EIO, "no random uid");
			goto out;
		}
	} while (!t.uid);
	value = cl_table_json(&t);
	if (!value) {
		cl_job_fail(j, -ENOMEM, "out of memory");
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
		cl_etcd_fail(cl, j, rc, "creating");
		goto out;
	}
	if (!ok) {
		cl_job_fail(j, EMBKV_ETABLEEXISTS, "table %s exists in the "
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
	value = cl_table_json(&t);
	cmp = (struct embkv_etcd_cmp){ .key = key, .target = EMBKV_ETCD_MOD,
				       .result = EMBKV_ETCD_EQUAL,
				       .number = rev };
	op.value = value;
	op.value_len = value ? strlen(value) : 0;
	rc = value ? embkv_etcd_txn(cl->etcd, &txn, &ok, &ready_rev)
		   : -ENOMEM;
	if (rc || !ok) {
		if (rc)
			cl_etcd_fail(cl, j, rc, "making it ready");
		else
			cl_job_fail(j, EMBKV_ENOTABLE, "table %s was dropped "
				 "while it was being created", j->name);
		undo(cl, key, rev, t.uid);
		goto out;
	}
	/* Every member of the map serves it before the answer goes out;
	 * one that does not (it failed to publish, or restarted meanwhile
	 * and lost its share) undoes the create, so a failed create leaves
	 * nothing behind. */
	rc = acks_wait(cl, j, &t, ACK_READY);
	if (rc) {
		undo(cl, key, ready_rev, t.uid);
		local_wait(cl, j->name, t.uid, false);
		goto out;
	}
	{
		char prefix[KEY_MAX];

		cl_acks_key(cl, t.uid, CL_ACKS_ALL, prefix, sizeof(prefix));
		(void)embkv_etcd_delete(cl->etcd, prefix, true, NULL);
	}
	if (!local_wait(cl, j->name, t.uid, true)) {
		cl_job_fail(j, EMBKV_ETIMEDOUT, "table %s was created but is not "
			 "visible here yet", j->name);
		goto out;
	}
	{
		struct embkv_catalog_entry *e;

		j->ref.uid = cl_local_uid(cl, j->name, &e);
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

void cl_run_drop(struct embkvd_cluster *cl, struct cl_job *j)
{
	struct embkv_etcd_kvs kvs;
	struct ctable t;
	char key[KEY_MAX];
	uint64_t uid;
	int64_t rev;
	bool ok;
	int rc;

	snprintf(key, sizeof(key), "%s%s", cl->tables, j->name);
	rc = embkv_etcd_get(cl->etcd, key, false, &kvs);
	if (rc) {
		cl_etcd_fail(cl, j, rc, "reading");
		return;
	}
	if (!kvs.n) {
		embkv_etcd_kvs_free(&kvs);
		cl_job_fail(j, EMBKV_ENOTABLE, "no table called %s in the cluster",
			 j->name);
		return;
	}
	rc = cl_table_parse(j->name, kvs.kv[0].value, kvs.kv[0].value_len, &t);
	rev = kvs.kv[0].mod_revision;
	embkv_etcd_kvs_free(&kvs);
	uid = rc ? 0 : t.uid;
	cl_table_free(&t);
	rc = cl_table_delete(cl, key, rev, uid, &ok);
	if (rc) {
		cl_etcd_fail(cl, j, rc, "dropping");
		return;
	}
	if (!ok) {
		cl_job_fail(j, EMBKV_ESTALE, "table %s changed while it was being "
			 "dropped: try again", j->name);
		return;
	}
	if (!local_wait(cl, j->name, 0, true))
		cl_job_fail(j, EMBKV_ETIMEDOUT, "table %s was dropped from the "
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

void cl_job_post(struct cl_job *j)
{
	embkvd_io_post(j->conn->io, &j->fin.node);
}

static void job_queue(struct embkvd_cluster *cl, struct cl_job *j);

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
	job_queue(cl, j);
}

/* Hands j to the cluster thread (or answers that the server stops). */
static void job_queue(struct embkvd_cluster *cl, struct cl_job *j)
{
	pthread_mutex_lock(&cl->lock);
	if (cl->stop) {
		pthread_mutex_unlock(&cl->lock);
		embkvd_conn_error(j->conn, j->req_id, EMBKV_EDISCONNECTED,
				 false, "the server is shutting down");
		free(j);
		return;
	}
	embkvd_conn_hold(j->conn, 0);
	*cl->jobs_tail = j;
	cl->jobs_tail = &j->next;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

void embkvd_cluster_set_opt(struct embkvd_cluster *cl, struct embkvd_conn *c,
			    uint64_t req_id, const char *name, uint64_t uid,
			    const struct embkv_opt_attr *opt)
{
	struct cl_job *j = calloc(1, sizeof(*j));

	if (!j) {
		embkvd_conn_error(c, req_id, -ENOMEM, false,
				 "no memory for a table request");
		return;
	}
	j->fin.finish = job_finish;
	j->conn = c;
	j->req_id = req_id;
	j->op = EMBKV_WIRE_OP_TABLE_SET_OPT;
	snprintf(j->name, sizeof(j->name), "%s", name);
	j->ref.uid = uid;
	j->attr.opt = *opt;
	job_queue(cl, j);
}

static bool opt_same(const struct embkv_opt_attr *a,
		     const struct embkv_opt_attr *b)
{
	return a->type == b->type && a->lr == b->lr && a->beta1 == b->beta1 &&
	       a->beta2 == b->beta2 && a->eps == b->eps &&
	       a->initial_accum == b->initial_accum && a->l1 == b->l1 &&
	       a->l2 == b->l2 && a->ftrl_beta == b->ftrl_beta;
}

/*
 * TABLE_SET_OPT in a cluster: the new optimizer fields written into the
 * table's record (compare-and-swap on its revision, retried when a move
 * or another member's write came first), so that members that restart
 * or join build the table with them and the others follow the change
 * (cluster.c: a record of the same uid with other values is applied).
 * Every server of the map gets the request: the first writes, the
 * others find the values there already.
 */
void cl_run_set_opt(struct embkvd_cluster *cl, struct cl_job *j)
{
	struct embkv_etcd_op op = { .type = EMBKV_ETCD_OP_PUT };
	struct embkv_etcd_cmp cmp;
	struct embkv_etcd_txn txn = { &cmp, 1, &op, 1, NULL, 0 };
	struct embkv_etcd_kvs kvs;
	struct ctable t;
	char key[KEY_MAX], *value;
	int64_t rev;
	bool ok = false;
	int rc;

	snprintf(key, sizeof(key), "%s%s", cl->tables, j->name);
	for (int tries = 0; tries < 8 && !ok; tries++) {
		rc = embkv_etcd_get(cl->etcd, key, false, &kvs);
		if (rc) {
			cl_etcd_fail(cl, j, rc, "reading");
			return;
		}
		rc = kvs.n ? cl_table_parse(j->name, kvs.kv[0].value,
					    kvs.kv[0].value_len, &t)
			   : EMBKV_ENOTABLE;
		rev = kvs.n ? kvs.kv[0].mod_revision : 0;
		embkv_etcd_kvs_free(&kvs);
		if (!rc && t.uid != j->ref.uid) {
			cl_table_free(&t);
			rc = EMBKV_ENOTABLE;
		}
		if (rc) {
			cl_job_fail(j, EMBKV_ENOTABLE, "table %s changed here "
				 "but is not in the cluster's catalog (dropped "
				 "or re-created)", j->name);
			return;
		}
		if (opt_same(&t.attr.opt, &j->attr.opt)) {
			cl_table_free(&t);
			return; /* recorded already (another member) */
		}
		t.attr.opt = j->attr.opt;
		value = cl_table_json(&t);
		cl_table_free(&t);
		if (!value) {
			cl_job_fail(j, -ENOMEM, "no memory for table %s's "
				 "record", j->name);
			return;
		}
		cmp = (struct embkv_etcd_cmp){ .key = key,
					       .target = EMBKV_ETCD_MOD,
					       .result = EMBKV_ETCD_EQUAL,
					       .number = rev };
		op.key = key;
		op.value = value;
		op.value_len = strlen(value);
		rc = embkv_etcd_txn(cl->etcd, &txn, &ok, NULL);
		free(value);
		if (rc) {
			cl_etcd_fail(cl, j, rc, "recording the optimizer of");
			return;
		}
	}
	if (!ok)
		cl_job_fail(j, EMBKV_ESTALE, "table %s's record kept changing: "
			 "call set-table again", j->name);
	else
		embkvd_log("table %s: optimizer values recorded in the cluster "
			   "(lr %g)", j->name, (double)j->attr.opt.lr);
}

struct cl_job *cl_job_take(struct embkvd_cluster *cl)
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
void cl_default_table(struct embkvd_cluster *cl)
{
	struct cl_job j = { .op = EMBKV_WIRE_OP_TABLE_CREATE,
			    .attr = cl->default_attr };
	struct embkv_etcd_kvs kvs;
	char key[KEY_MAX];
	int rc;

	memcpy(j.name, j.attr.name, sizeof(j.name));
	if (cl_local_uid(cl, j.name, NULL))
		goto done;
	snprintf(key, sizeof(key), "%s%u", cl->members, cl->self);
	rc = embkv_etcd_get(cl->etcd, key, false, &kvs);
	if (rc || !kvs.n) {           /* not registered yet: later */
		if (!rc)
			embkv_etcd_kvs_free(&kvs);
		return;
	}
	embkv_etcd_kvs_free(&kvs);
	cl_run_create(cl, &j);
	/* Made, or the cluster has it: applying etcd's record does the
	 * rest (and says so if this member cannot hold its share). */
	if (!j.status || j.status == EMBKV_ETABLEEXISTS)
		goto done;
	if (!cl->default_logged)
		embkvd_log_at(EMBKVD_WARN, "cannot create the default table: %s (trying again, "
			   "backing off up to %u s)", j.msg,
			   DEFAULT_BACKOFF_MAX_MS / 1000u);
	cl->default_logged = true;
	cl->default_wait_ms = cl->default_wait_ms ? 2 * cl->default_wait_ms
						  : RETRY_MS;
	if (cl->default_wait_ms > DEFAULT_BACKOFF_MAX_MS)
		cl->default_wait_ms = DEFAULT_BACKOFF_MAX_MS;
	cl->default_next_ms = cl_now_ms() + cl->default_wait_ms;
	return;
done:
	pthread_mutex_lock(&cl->lock);
	cl->want_default = false;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

