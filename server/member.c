/*
 * embkvd's membership in etcd (server/member.h).
 *
 * What: at start, grant a lease and register with one transaction: "if
 * /<cluster>/members/<id> does not exist (create_revision == 0), put it
 * under the lease and put /<cluster>/nodes/<id>". A thread then renews
 * the lease every TTL/3; when etcd says the lease is gone (it expired
 * while etcd was out of reach) it registers again with a new one.
 * Shutdown revokes the lease, so the member key disappears at once.
 *
 * Why these choices:
 * - The id is the operator's (--member-id, default --self, else 0), not
 *   allocated from a counter: a restarted server keeps its id, so its
 *   node record, and later its partitions, stay its own.
 * - A live holder of the id refuses the start (two servers answering as
 *   one member would split the cluster's view), except when the holder
 *   advertises our own address: we are bound to it now, so the holder is
 *   our previous incarnation whose lease has not run out yet (a kill -9
 *   and a quick restart); we replace it by a CAS on its mod_revision.
 * - etcd down never stops serving: at start we log and let the thread
 *   register later, and every later failure is logged once per change
 *   of state, not once per retry.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "net/etcd.h"
#include "server/daemon.h"
#include "server/member.h"

#ifndef EMBKV_VERSION
#define EMBKV_VERSION "unknown"
#endif

#define KEY_MAX 128u
#define HOST_NAME_BYTES 256u
#define MS_PER_S 1000u
#define REQUEST_MIN_MS 500u
#define NS_PER_MS 1000000L

/* What the member thread last saw, for logging changes only. */
enum member_state {
	ST_REGISTERED,
	ST_UNREACHABLE,
	ST_HELD,               /* another live member holds the id */
	ST_ERROR,
};

struct embkvd_member {
	struct embkv_etcd *etcd;
	char member_key[KEY_MAX], node_key[KEY_MAX];
	char *value;                    /* the JSON value */
	char address[EMBKV_WIRE_ADDR_MAX + 1];
	uint32_t id, ttl_s;
	int64_t lease;                  /* 0: not registered */
	enum member_state state;
	bool logged;                    /* state has been logged */
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;                      /* under lock */
};

int embkvd_member_cluster_ok(const char *name)
{
	size_t len = strlen(name);

	if (!len || len > EMBKVD_MEMBER_CLUSTER_MAX)
		return 0;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
			    "wxyz0123456789_.-") == len;
}

static void listen_addr(char *buf, size_t len, const char *scheme,
			const char *host, uint16_t port)
{
	snprintf(buf, len, strchr(host, ':') ? "%s://[%s]:%u" : "%s://%s:%u",
		 scheme, host, port);
}

/* The advertised address: --advertise, else the first listener's, with a
 * wildcard host replaced by this machine's name. */
static void advertise(const struct embkvd *s,
		      const struct embkvd_attr *a, char *buf, size_t len)
{
	char host[HOST_NAME_BYTES];
	const char *h = a->tcp ? a->host : a->rdma_host;

	if (a->advertise) {
		snprintf(buf, len, "%s", a->advertise);
		return;
	}
	if ((!strcmp(h, "0.0.0.0") || !strcmp(h, "::")) &&
	    !gethostname(host, sizeof(host))) {
		host[sizeof(host) - 1] = '\0';
		h = host;
	}
	listen_addr(buf, len, a->tcp ? "tcp" : "rdma", h,
		    a->tcp ? s->port : s->rdma_port);
}

static char *value_make(const struct embkvd *s,
			const struct embkvd_attr *a,
			const struct embkvd_member *m)
{
	char addr[EMBKV_WIRE_ADDR_MAX + 1], host[HOST_NAME_BYTES] = "";
	json_t *v = json_object(), *addrs = json_array();
	char *out = NULL;

	if (gethostname(host, sizeof(host)))
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	if (!v || !addrs || json_object_set_new(v, "addresses", addrs)) {
		json_decref(addrs);
		goto out;
	}
	if (a->tcp) {
		listen_addr(addr, sizeof(addr), "tcp", a->host, s->port);
		if (json_array_append_new(addrs, json_string(addr)))
			goto out;
	}
	if (a->rdma) {
		listen_addr(addr, sizeof(addr), "rdma", a->rdma_host,
			    s->rdma_port);
		if (json_array_append_new(addrs, json_string(addr)))
			goto out;
	}
	if (json_object_set_new(v, "id", json_integer(m->id)) ||
	    json_object_set_new(v, "address", json_string(m->address)) ||
	    json_object_set_new(v, "pid", json_integer(getpid())) ||
	    json_object_set_new(v, "host", json_string(host)) ||
	    json_object_set_new(v, "start_time",
				json_integer((json_int_t)time(NULL))) ||
	    json_object_set_new(v, "memory_limit",
				json_integer((json_int_t)a->memory_limit)) ||
	    json_object_set_new(v, "version", json_string(EMBKV_VERSION)) ||
	    json_object_set_new(v, "ttl", json_integer(m->ttl_s)))
		goto out;
	out = json_dumps(v, JSON_COMPACT);
out:
	json_decref(v);
	return out;
}

/* The holder's "address" field; "" when unreadable. */
static void holder_address(const struct embkv_etcd_kv *kv, char *buf,
			   size_t len, json_int_t *pid)
{
	json_t *v = json_loadb(kv->value, kv->value_len, 0, NULL);
	const json_t *a = json_object_get(v, "address");

	snprintf(buf, len, "%s", json_is_string(a) ? json_string_value(a) : "");
	*pid = json_integer_value(json_object_get(v, "pid"));
	json_decref(v);
}

/* One registration attempt under lease: CAS on create_revision (absent)
 * or, for our own stale registration, on its mod_revision. */
static int register_with(struct embkvd_member *m, int64_t lease,
			 bool log_holder)
{
	struct embkv_etcd_cmp cmp = {
		.key = m->member_key, .target = EMBKV_ETCD_CREATE,
		.result = EMBKV_ETCD_EQUAL, .number = 0,
	};
	struct embkv_etcd_op ops[2] = {
		{ .type = EMBKV_ETCD_OP_PUT, .key = m->member_key,
		  .value = m->value, .value_len = strlen(m->value),
		  .lease = lease },
		{ .type = EMBKV_ETCD_OP_PUT, .key = m->node_key,
		  .value = m->value, .value_len = strlen(m->value) },
	};
	struct embkv_etcd_txn t = {
		.cmp = &cmp, .ncmp = 1, .success = ops, .nsuccess = 2,
	};
	char holder[EMBKV_WIRE_ADDR_MAX + 1];
	struct embkv_etcd_kvs r;
	json_int_t pid;
	bool ok = false;
	int rc;

	rc = embkv_etcd_txn(m->etcd, &t, &ok, NULL);
	if (rc || ok)
		return rc;
	rc = embkv_etcd_get(m->etcd, m->member_key, false, &r);
	if (rc)
		return rc;
	if (!r.n) { /* it expired meanwhile: try again next round */
		embkv_etcd_kvs_free(&r);
		return -EAGAIN;
	}
	holder_address(&r.kv[0], holder, sizeof(holder), &pid);
	if (strcmp(holder, m->address)) {
		if (log_holder)
			embkvd_log("member id %u is held by a live member at "
				   "%s (pid %lld)", m->id,
				   holder[0] ? holder : "?", (long long)pid);
		embkv_etcd_kvs_free(&r);
		return -EEXIST;
	}
	/* Our own address: a previous incarnation's lease. */
	cmp.target = EMBKV_ETCD_MOD;
	cmp.number = r.kv[0].mod_revision;
	embkv_etcd_kvs_free(&r);
	rc = embkv_etcd_txn(m->etcd, &t, &ok, NULL);
	if (!rc && ok)
		embkvd_log("member id %u: replaced the registration of a "
			   "previous embkvd at %s (pid %lld)", m->id, holder,
			   (long long)pid);
	return rc ? rc : ok ? 0 : -EAGAIN;
}

/* Grants a lease and registers under it: 0, -EEXIST, or etcd's error. */
static int do_register(struct embkvd_member *m, bool log_holder)
{
	int64_t lease;
	int rc;

	rc = embkv_etcd_lease_grant(m->etcd, m->ttl_s, &lease, NULL);
	if (rc)
		return rc;
	rc = register_with(m, lease, log_holder);
	if (rc) {
		(void)embkv_etcd_lease_revoke(m->etcd, lease);
		return rc;
	}
	m->lease = lease;
	return 0;
}

/* Logs a change of state (and only a change). */
static void state_set(struct embkvd_member *m, enum member_state st, int rc)
{
	if (m->logged && m->state == st)
		return;
	switch (st) {
	case ST_REGISTERED:
		embkvd_log("registered as member %u of %s (lease %llx, ttl "
			   "%us)", m->id, m->member_key, (long long)m->lease,
			   m->ttl_s);
		break;
	case ST_UNREACHABLE:
		embkvd_log("etcd unreachable (%s%s%s): still serving, retrying "
			   "every %u ms", embkv_strerror(rc),
			   embkv_etcd_errmsg(m->etcd)[0] ? ": " : "",
			   embkv_etcd_errmsg(m->etcd),
			   m->ttl_s * MS_PER_S / 3);
		break;
	case ST_HELD:
		embkvd_log_at(EMBKVD_ERROR, "member id %u is held by another live member: not "
			   "registered, retrying", m->id);
		break;
	case ST_ERROR:
		embkvd_log_at(EMBKVD_WARN, "etcd error (%s%s%s): still serving, retrying",
			   embkv_strerror(rc),
			   embkv_etcd_errmsg(m->etcd)[0] ? ": " : "",
			   embkv_etcd_errmsg(m->etcd));
		break;
	}
	m->state = st;
	m->logged = true;
}

static void state_from(struct embkvd_member *m, int rc)
{
	if (!rc)
		state_set(m, ST_REGISTERED, 0);
	else if (embkv_etcd_unreachable(rc))
		state_set(m, ST_UNREACHABLE, rc);
	else if (rc == -EEXIST)
		state_set(m, ST_HELD, rc);
	else
		state_set(m, ST_ERROR, rc);
}

/* One round: renew, or register when there is no lease (any more). */
static void round_once(struct embkvd_member *m)
{
	int rc;

	if (m->lease) {
		rc = embkv_etcd_lease_keepalive(m->etcd, m->lease, NULL);
		if (!rc && m->state != ST_REGISTERED) {
			embkvd_log("etcd answers again: member %u keeps lease "
				   "%llx", m->id, (long long)m->lease);
			m->state = ST_REGISTERED;
		}
		if (rc != -ENOENT) {
			state_from(m, rc);
			return;
		}
		embkvd_log("lease %llx expired: registering again",
			   (long long)m->lease);
		m->lease = 0;
	}
	state_from(m, do_register(m, m->state != ST_HELD));
}

static void *member_main(void *arg)
{
	struct embkvd_member *m = arg;
	uint32_t period_ms = m->ttl_s * MS_PER_S / 3;

	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += period_ms / MS_PER_S;
		ts.tv_nsec += (long)(period_ms % MS_PER_S) * NS_PER_MS;
		if (ts.tv_nsec >= NS_PER_MS * (long)MS_PER_S) {
			ts.tv_sec++;
			ts.tv_nsec -= NS_PER_MS * (long)MS_PER_S;
		}
		while (!m->stop &&
		       pthread_cond_timedwait(&m->cond, &m->lock, &ts) != ETIMEDOUT)
			;
		if (m->stop)
			break;
		pthread_mutex_unlock(&m->lock);
		round_once(m);
		pthread_mutex_lock(&m->lock);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static void member_free(struct embkvd_member *m)
{
	embkv_etcd_destroy(m->etcd);
	free(m->value);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

int embkvd_member_join(struct embkvd *s,
		       const struct embkvd_attr *attr)
{
	struct embkv_etcd_attr ea;
	struct embkvd_member *m;
	pthread_condattr_t ca;
	int rc;

	if (!attr->etcd || !attr->cluster ||
	    !embkvd_member_cluster_ok(attr->cluster) || !attr->member_ttl_s ||
	    attr->member_ttl_s > EMBKVD_MEMBER_TTL_MAX_S)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	m->id = attr->member_id;
	m->ttl_s = attr->member_ttl_s;
	snprintf(m->member_key, sizeof(m->member_key), "/%s/members/%u",
		 attr->cluster, m->id);
	snprintf(m->node_key, sizeof(m->node_key), "/%s/nodes/%u",
		 attr->cluster, m->id);
	advertise(s, attr, m->address, sizeof(m->address));
	embkv_etcd_attr_init(&ea);
	ea.endpoints = attr->etcd;
	/* A request must end well before the lease would. */
	ea.timeout_ms = m->ttl_s * MS_PER_S / 2;
	if (ea.timeout_ms < REQUEST_MIN_MS)
		ea.timeout_ms = REQUEST_MIN_MS;
	if (ea.timeout_ms > EMBKV_ETCD_TIMEOUT_MS)
		ea.timeout_ms = EMBKV_ETCD_TIMEOUT_MS;
	rc = embkv_etcd_create(&ea, &m->etcd);
	if (rc)
		goto free;
	rc = -ENOMEM;
	m->value = value_make(s, attr, m);
	if (!m->value)
		goto free;
	rc = do_register(m, true);
	if (rc == -EEXIST) {
		embkvd_log("refusing to start: member id %u is in use (choose "
			   "another --member-id, or stop the other embkvd)",
			   m->id);
		goto free;
	}
	state_from(m, rc);
	rc = -pthread_create(&m->thread, NULL, member_main, m);
	if (rc)
		goto revoke;
	m->started = true;
	s->member = m;
	return 0;
revoke:
	if (m->lease)
		(void)embkv_etcd_lease_revoke(m->etcd, m->lease);
free:
	member_free(m);
	return rc;
}

void embkvd_member_leave(struct embkvd *s)
{
	struct embkvd_member *m = s->member;
	int rc;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->started)
		pthread_join(m->thread, NULL);
	if (m->lease) {
		rc = embkv_etcd_lease_revoke(m->etcd, m->lease);
		if (rc && rc != -ENOENT)
			embkvd_log_at(EMBKVD_WARN, "cannot revoke lease %llx: %s (the member "
				   "key expires in %us)", (long long)m->lease,
				   embkv_strerror(rc), m->ttl_s);
		else
			embkvd_log("left the cluster (member %u)", m->id);
	}
	member_free(m);
	s->member = NULL;
}
