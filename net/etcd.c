/*
 * etcd v3 client over the JSON gateway (net/etcd.h): every call is one
 * HTTP POST of a JSON body built with jansson, sent with libcurl, and one
 * JSON answer parsed back.
 *
 * Why the gateway: Debian packages no C client for etcd's gRPC API, and
 * the gateway (/v3/..., served by etcd 3.4 and later) needs only libcurl
 * and jansson. It lives in net/ beside the other code that speaks to
 * other processes; the server's membership (server/member.c) and
 * embkvctl use it.
 *
 * Failover: the endpoints are tried from the one that answered last; the
 * next one is tried only when no connection could be made, so that a
 * request that may have reached etcd is never sent twice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <embkv/embkv.h>
#include "net/etcd_priv.h"

#define HTTP_OK 200L
#define HTTP_SCHEME "http://"
#define URL_MAX (EMBKV_ETCD_ENDPOINT_MAX + 64u)

struct reply {
	char *p;
	size_t n, cap;
	bool over;
};

void embkv_etcd_attr_init(struct embkv_etcd_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	attr->timeout_ms = EMBKV_ETCD_TIMEOUT_MS;
}

bool embkv_etcd_unreachable(int status)
{
	return status == -ECONNREFUSED || status == -ETIMEDOUT ||
	       status == -EHOSTUNREACH || status == -ECONNRESET;
}

const char *embkv_etcd_errmsg(const struct embkv_etcd *e)
{
	return e ? e->errmsg : "";
}

static int endpoints_parse(struct embkv_etcd *e, const char *list)
{
	char *copy = strdup(list), *save = NULL, *s;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	e->endpoints = calloc(EMBKV_ETCD_MAX_ENDPOINTS, sizeof(char *));
	if (!e->endpoints) {
		rc = -ENOMEM;
		goto out;
	}
	for (s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		size_t len = strlen(s);

		while (len > strlen(HTTP_SCHEME) && s[len - 1] == '/')
			s[--len] = '\0';
		if (strncmp(s, HTTP_SCHEME, strlen(HTTP_SCHEME)) ||
		    len == strlen(HTTP_SCHEME) ||
		    len >= EMBKV_ETCD_ENDPOINT_MAX ||
		    e->nendpoints == EMBKV_ETCD_MAX_ENDPOINTS ||
		    strpbrk(s, " \t\r\n?#")) {
			rc = -EINVAL;
			goto out;
		}
		e->endpoints[e->nendpoints] = strdup(s);
		if (!e->endpoints[e->nendpoints]) {
			rc = -ENOMEM;
			goto out;
		}
		e->nendpoints++;
	}
	if (!e->nendpoints)
		rc = -EINVAL;
out:
	free(copy);
	return rc;
}

int embkv_etcd_create(const struct embkv_etcd_attr *attr,
		      struct embkv_etcd **out)
{
	struct embkv_etcd *e;
	int rc;

	if (!attr || !out || !attr->endpoints || !attr->timeout_ms ||
	    attr->flags)
		return -EINVAL;
	rc = embkv_etcd_global_init();
	if (rc)
		return rc;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->timeout_ms = attr->timeout_ms;
	e->connect_timeout_ms = attr->connect_timeout_ms &&
					attr->connect_timeout_ms < attr->timeout_ms ?
				attr->connect_timeout_ms : attr->timeout_ms;
	rc = endpoints_parse(e, attr->endpoints);
	if (rc)
		goto destroy;
	rc = -ENOMEM;
	e->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (!e->headers)
		goto destroy;
	e->headers = curl_slist_append(e->headers, "Expect:");
	e->curl = curl_easy_init();
	if (!e->curl)
		goto destroy;
	*out = e;
	return 0;
destroy:
	embkv_etcd_destroy(e);
	return rc;
}

void embkv_etcd_destroy(struct embkv_etcd *e)
{
	if (!e)
		return;
	if (e->curl)
		curl_easy_cleanup(e->curl);
	curl_slist_free_all(e->headers);
	for (size_t i = 0; e->endpoints && i < e->nendpoints; i++)
		free(e->endpoints[i]);
	free(e->endpoints);
	free(e);
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct reply *r = arg;
	size_t len = size * nmemb;

	if (len > EMBKV_ETCD_REPLY_MAX - r->n) {
		r->over = true;
		return 0;
	}
	if (r->n + len + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		char *p;

		while (cap < r->n + len + 1)
			cap *= 2;
		p = realloc(r->p, cap);
		if (!p)
			return 0;
		r->p = p;
		r->cap = cap;
	}
	memcpy(r->p + r->n, data, len);
	r->n += len;
	r->p[r->n] = '\0';
	return len;
}

static void set_errmsg(struct embkv_etcd *e, const char *msg)
{
	snprintf(e->errmsg, sizeof(e->errmsg), "%s", msg);
}

/* What the answer to a request that reached etcd means. */
static int answer(struct embkv_etcd *e, const struct reply *r, long http,
		  json_t **resp)
{
	json_t *j = r->n ? json_loadb(r->p, r->n, 0, NULL) : NULL;
	const json_t *code, *msg;
	int rc;

	if (!json_is_object(j)) {
		snprintf(e->errmsg, sizeof(e->errmsg),
			 "HTTP %ld with an answer that is not a JSON object",
			 http);
		json_decref(j);
		return EMBKV_EPROTO;
	}
	if (http == HTTP_OK && !json_object_get(j, "error")) {
		*resp = j;
		return 0;
	}
	code = json_object_get(j, "code");
	msg = json_object_get(j, "error");
	if (!json_is_integer(code)) {
		snprintf(e->errmsg, sizeof(e->errmsg),
			 "HTTP %ld without an error code", http);
		rc = EMBKV_EPROTO;
	} else {
		set_errmsg(e, json_is_string(msg) ? json_string_value(msg) :
						    "(no message)");
		rc = embkv_etcd_grpc_status(json_integer_value(code));
	}
	json_decref(j);
	return rc;
}

/* libcurl's result for a request that did not get an answer. *sent is
 * false when nothing can have reached etcd (another endpoint may take
 * it). */
static int curl_status(CURL *c, CURLcode cc, const struct reply *r,
		       bool *sent)
{
	curl_off_t connect_us = 0;

	curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connect_us);
	*sent = connect_us > 0;
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		*sent = false;
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		*sent = false;
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_WRITE_ERROR:
		return r->over ? EMBKV_ELIMIT : -ENOMEM;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	default:
		return -EIO;
	}
}

/* POSTs req (a reference it steals) to path and returns the answer's
 * object in *resp (the caller's reference). */
static int post(struct embkv_etcd *e, const char *path, json_t *req,
		json_t **resp)
{
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	char url[URL_MAX];
	int rc = -ENOMEM;

	json_decref(req);
	e->errmsg[0] = '\0';
	if (!body)
		return -ENOMEM;
	for (size_t i = 0; i < e->nendpoints; i++) {
		size_t idx = (e->cur + i) % e->nendpoints;
		struct reply r = { 0 };
		CURL *c = e->curl;
		CURLcode cc;
		long http = 0;
		bool sent;

		snprintf(url, sizeof(url), "%s%s", e->endpoints[idx], path);
		curl_easy_reset(c);
		embkv_etcd_curl_common(c, e->headers, e->connect_timeout_ms);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
		cc = curl_easy_perform(c);
		if (cc == CURLE_OK) {
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
			rc = answer(e, &r, http, resp);
			e->cur = idx;
			free(r.p);
			break;
		}
		rc = curl_status(c, cc, &r, &sent);
		free(r.p);
		snprintf(e->errmsg, sizeof(e->errmsg), "%s: %s",
			 e->endpoints[idx], curl_easy_strerror(cc));
		if (sent)
			break;
	}
	free(body);
	return rc;
}

/* {"key": b64(key)} plus "range_end" for a prefix. */
static json_t *range_req(const char *key, bool prefix)
{
	json_t *req = json_object();

	if (!req || json_object_set_new(req, "key",
					embkv_etcd_b64_json(key, strlen(key))) ||
	    (prefix && json_object_set_new(req, "range_end",
					   embkv_etcd_prefix_end_json(key)))) {
		json_decref(req);
		return NULL;
	}
	return req;
}

static int header_revision(const json_t *resp, int64_t *rev)
{
	const json_t *h = json_object_get(resp, "header");

	*rev = 0;
	if (!json_is_object(h))
		return EMBKV_EPROTO;
	return embkv_etcd_i64_field(h, "revision", rev);
}

void embkv_etcd_kvs_free(struct embkv_etcd_kvs *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		embkv_etcd_kv_free(&r->kv[i]);
	free(r->kv);
	memset(r, 0, sizeof(*r));
}

int embkv_etcd_get(struct embkv_etcd *e, const char *key, bool prefix,
		   struct embkv_etcd_kvs *out)
{
	struct embkv_etcd_kvs r = { 0 };
	const json_t *kvs;
	json_t *resp = NULL;
	int rc;

	if (!e || !key || !*key || !out)
		return -EINVAL;
	rc = post(e, "/v3/kv/range", range_req(key, prefix), &resp);
	if (rc)
		return rc;
	rc = header_revision(resp, &r.revision);
	kvs = json_object_get(resp, "kvs");
	if (!rc && kvs && !json_is_array(kvs))
		rc = EMBKV_EPROTO;
	if (!rc && json_array_size(kvs)) {
		r.kv = calloc(json_array_size(kvs), sizeof(*r.kv));
		if (!r.kv)
			rc = -ENOMEM;
	}
	for (size_t i = 0; !rc && i < json_array_size(kvs); i++) {
		rc = embkv_etcd_kv_parse(json_array_get(kvs, i), &r.kv[i]);
		if (!rc)
			r.n++;
	}
	json_decref(resp);
	if (rc) {
		embkv_etcd_kvs_free(&r);
		return rc;
	}
	*out = r;
	return 0;
}

/* The RequestPut object of a put. */
static json_t *put_req(const char *key, const void *value, size_t len,
		       int64_t lease)
{
	json_t *req = json_object();

	if (!req || json_object_set_new(req, "key",
					embkv_etcd_b64_json(key, strlen(key))) ||
	    json_object_set_new(req, "value", embkv_etcd_b64_json(value, len)) ||
	    (lease && json_object_set_new(req, "lease", json_integer(lease)))) {
		json_decref(req);
		return NULL;
	}
	return req;
}

int embkv_etcd_put(struct embkv_etcd *e, const char *key, const void *value,
		   size_t len, int64_t lease, int64_t *revision)
{
	json_t *resp = NULL;
	int64_t rev;
	int rc;

	if (!e || !key || !*key || (!value && len) || lease < 0)
		return -EINVAL;
	rc = post(e, "/v3/kv/put", put_req(key, value ? value : "", len, lease),
		  &resp);
	if (rc)
		return rc;
	rc = header_revision(resp, &rev);
	json_decref(resp);
	if (!rc && revision)
		*revision = rev;
	return rc;
}

int embkv_etcd_delete(struct embkv_etcd *e, const char *key, bool prefix,
		      int64_t *deleted)
{
	json_t *resp = NULL;
	int64_t n;
	int rc;

	if (!e || !key || !*key)
		return -EINVAL;
	rc = post(e, "/v3/kv/deleterange", range_req(key, prefix), &resp);
	if (rc)
		return rc;
	rc = embkv_etcd_i64_field(resp, "deleted", &n);
	json_decref(resp);
	if (!rc && deleted)
		*deleted = n;
	return rc;
}

int embkv_etcd_compact(struct embkv_etcd *e, int64_t revision)
{
	json_t *resp = NULL;
	int rc;

	if (!e || revision <= 0)
		return -EINVAL;
	rc = post(e, "/v3/kv/compaction", json_pack("{sI}", "revision",
						    (json_int_t)revision), &resp);
	json_decref(resp);
	return rc;
}

/* Transactions -------------------------------------------------------- */

static json_t *cmp_json(const struct embkv_etcd_cmp *c)
{
	static const char *const targets[] = {
		[EMBKV_ETCD_VERSION] = "VERSION", [EMBKV_ETCD_CREATE] = "CREATE",
		[EMBKV_ETCD_MOD] = "MOD", [EMBKV_ETCD_VALUE] = "VALUE",
	};
	static const char *const fields[] = {
		[EMBKV_ETCD_VERSION] = "version",
		[EMBKV_ETCD_CREATE] = "create_revision",
		[EMBKV_ETCD_MOD] = "mod_revision", [EMBKV_ETCD_VALUE] = "value",
	};
	static const char *const results[] = {
		[EMBKV_ETCD_EQUAL] = "EQUAL", [EMBKV_ETCD_NOT_EQUAL] = "NOT_EQUAL",
		[EMBKV_ETCD_GREATER] = "GREATER", [EMBKV_ETCD_LESS] = "LESS",
	};
	json_t *j;

	if (!c->key || !*c->key || (unsigned)c->target > EMBKV_ETCD_VALUE ||
	    (unsigned)c->result > EMBKV_ETCD_LESS ||
	    (c->target == EMBKV_ETCD_VALUE && !c->value && c->value_len))
		return NULL;
	j = json_object();
	if (!j || json_object_set_new(j, "key", embkv_etcd_b64_json(
				c->key, strlen(c->key))) ||
	    json_object_set_new(j, "target", json_string(targets[c->target])) ||
	    json_object_set_new(j, "result", json_string(results[c->result])) ||
	    json_object_set_new(j, fields[c->target],
				c->target == EMBKV_ETCD_VALUE ?
				embkv_etcd_b64_json(c->value ? c->value : "",
						    c->value_len) :
				json_integer(c->number))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static json_t *op_json(const struct embkv_etcd_op *op)
{
	json_t *j, *inner;
	const char *name;

	if (!op->key || !*op->key)
		return NULL;
	if (op->type == EMBKV_ETCD_OP_PUT) {
		if ((!op->value && op->value_len) || op->lease < 0)
			return NULL;
		inner = put_req(op->key, op->value ? op->value : "",
				op->value_len, op->lease);
		name = "request_put";
	} else if (op->type == EMBKV_ETCD_OP_DELETE) {
		inner = range_req(op->key, op->prefix);
		name = "request_delete_range";
	} else {
		return NULL;
	}
	j = json_object();
	if (!j || !inner || json_object_set_new(j, name, inner)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* Appends n items made by make (NULL: invalid) to a new array. */
static int txn_array(json_t *req, const char *name, const void *items,
		     size_t n, size_t size, json_t *(*make)(const void *))
{
	json_t *a = json_array();

	if (!a || json_object_set_new(req, name, a))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *j = make((const char *)items + i * size);

		if (!j || json_array_append_new(a, j))
			return -EINVAL;
	}
	return 0;
}

static json_t *cmp_make(const void *p)
{
	return cmp_json(p);
}

static json_t *op_make(const void *p)
{
	return op_json(p);
}

int embkv_etcd_txn(struct embkv_etcd *e, const struct embkv_etcd_txn *t,
		   bool *succeeded, int64_t *revision)
{
	json_t *req, *resp = NULL;
	const json_t *ok;
	int64_t rev;
	int rc;

	if (!e || !t || !succeeded || (t->ncmp && !t->cmp) ||
	    (t->nsuccess && !t->success) || (t->nfailure && !t->failure))
		return -EINVAL;
	req = json_object();
	if (!req)
		return -ENOMEM;
	rc = txn_array(req, "compare", t->cmp, t->ncmp, sizeof(*t->cmp),
		       cmp_make);
	if (!rc)
		rc = txn_array(req, "success", t->success, t->nsuccess,
			       sizeof(*t->success), op_make);
	if (!rc)
		rc = txn_array(req, "failure", t->failure, t->nfailure,
			       sizeof(*t->failure), op_make);
	if (rc) {
		json_decref(req);
		return rc;
	}
	rc = post(e, "/v3/kv/txn", req, &resp);
	if (rc)
		return rc;
	ok = json_object_get(resp, "succeeded");
	rc = header_revision(resp, &rev);
	if (!rc && ok && !json_is_boolean(ok))
		rc = EMBKV_EPROTO;
	if (!rc) {
		*succeeded = json_is_true(ok);
		if (revision)
			*revision = rev;
	}
	json_decref(resp);
	return rc;
}

/* Leases -------------------------------------------------------------- */

int embkv_etcd_lease_grant(struct embkv_etcd *e, int64_t ttl_s, int64_t *id,
			   int64_t *granted_ttl_s)
{
	json_t *resp = NULL;
	int64_t lid, ttl;
	int rc;

	if (!e || ttl_s <= 0 || !id)
		return -EINVAL;
	rc = post(e, "/v3/lease/grant", json_pack("{sI}", "TTL",
						  (json_int_t)ttl_s), &resp);
	if (rc)
		return rc;
	rc = embkv_etcd_i64_field(resp, "ID", &lid);
	if (!rc)
		rc = embkv_etcd_i64_field(resp, "TTL", &ttl);
	if (!rc && (lid == 0 || ttl <= 0))
		rc = EMBKV_EPROTO;
	json_decref(resp);
	if (rc)
		return rc;
	*id = lid;
	if (granted_ttl_s)
		*granted_ttl_s = ttl;
	return 0;
}

int embkv_etcd_lease_keepalive(struct embkv_etcd *e, int64_t id,
			       int64_t *ttl_s)
{
	const json_t *result;
	json_t *resp = NULL;
	int64_t ttl;
	int rc;

	if (!e || id <= 0)
		return -EINVAL;
	/* A streaming call: one request in the body, so one result. */
	rc = post(e, "/v3/lease/keepalive", json_pack("{sI}", "ID",
						      (json_int_t)id), &resp);
	if (rc)
		return rc;
	result = json_object_get(resp, "result");
	rc = json_is_object(result) ?
		     embkv_etcd_i64_field(result, "TTL", &ttl) : EMBKV_EPROTO;
	json_decref(resp);
	if (rc)
		return rc;
	if (ttl <= 0) /* etcd renews an unknown lease to TTL 0 */
		return -ENOENT;
	if (ttl_s)
		*ttl_s = ttl;
	return 0;
}

int embkv_etcd_lease_revoke(struct embkv_etcd *e, int64_t id)
{
	json_t *resp = NULL;
	int rc;

	if (!e || id <= 0)
		return -EINVAL;
	rc = post(e, "/v3/lease/revoke", json_pack("{sI}", "ID",
						   (json_int_t)id), &resp);
	json_decref(resp);
	return rc;
}

int embkv_etcd_lease_ttl(struct embkv_etcd *e, int64_t id, int64_t *ttl_s)
{
	json_t *resp = NULL;
	int64_t ttl;
	int rc;

	if (!e || id <= 0 || !ttl_s)
		return -EINVAL;
	rc = post(e, "/v3/lease/timetolive", json_pack("{sI}", "ID",
						       (json_int_t)id), &resp);
	if (rc)
		return rc;
	rc = embkv_etcd_i64_field(resp, "TTL", &ttl);
	json_decref(resp);
	if (rc)
		return rc;
	if (ttl < 0) /* -1: expired or never granted */
		return -ENOENT;
	*ttl_s = ttl;
	return 0;
}
