/*
 * etcd watches (net/etcd.h): one thread per watch holds a streaming POST
 * to /v3/watch, where the gateway writes one JSON object per line
 * ({"result": {...}}) for as long as the watch lives.
 *
 * Why a curl multi handle for a single transfer: curl_multi_poll() sleeps
 * on the socket and curl_multi_wakeup() interrupts it from another
 * thread, so embkv_etcd_watch_stop() ends a watch in milliseconds, in the
 * middle of a stream or of the wait between reconnects, with nothing
 * polled on a timer.
 *
 * Resuming: next_rev is one past the last revision delivered (or, for a
 * watch "from now", one past the store's revision when it was created),
 * and every reconnect asks for changes from next_rev: nothing is missed
 * and nothing is delivered twice.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <embkv/embkv.h>
#include "net/etcd_priv.h"

#define URL_MAX (EMBKV_ETCD_ENDPOINT_MAX + 64u)
#define POLL_MS 1000
#define KEEPALIVE_IDLE_S 5L
#define KEEPALIVE_INTVL_S 2L

struct embkv_etcd_watch {
	char **endpoints;
	size_t nendpoints, cur;
	uint32_t connect_timeout_ms, retry_ms;
	struct curl_slist *headers;
	char *prefix;
	int64_t next_rev;          /* 0: from now, not yet created */
	embkv_etcd_watch_fn fn;
	void *ctx;
	CURLM *multi;
	pthread_t thread;
	bool stop;                 /* atomic */
	/* The current stream. */
	char *line;
	size_t len, cap;
	int status;                /* what ended it, from its content */
	bool ended;                /* compacted: no resuming */
	bool created;              /* the stream answered "created" */
};

static bool stopping(struct embkv_etcd_watch *w)
{
	return __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE);
}

/* Hands one line's events to fn: 0, or the status that ends the stream. */
static int deliver(struct embkv_etcd_watch *w, const json_t *res)
{
	const json_t *evs = json_object_get(res, "events");
	struct embkv_etcd_event *ev = NULL;
	size_t n = 0, total = json_array_size(evs);
	int rc = 0;

	if (evs && !json_is_array(evs))
		return EMBKV_EPROTO;
	if (total && !(ev = calloc(total, sizeof(*ev))))
		return -ENOMEM;
	for (size_t i = 0; i < total; i++) {
		const json_t *e = json_array_get(evs, i);
		const json_t *type = json_object_get(e, "type");

		if (!json_is_object(e) || (type && !json_is_string(type))) {
			rc = EMBKV_EPROTO;
			break;
		}
		if (!type || !strcmp(json_string_value(type), "PUT"))
			ev[n].type = EMBKV_ETCD_EV_PUT;
		else if (!strcmp(json_string_value(type), "DELETE"))
			ev[n].type = EMBKV_ETCD_EV_DELETE;
		else
			rc = EMBKV_EPROTO;
		if (!rc)
			rc = embkv_etcd_kv_parse(json_object_get(e, "kv"),
						 &ev[n].kv);
		if (rc)
			break;
		n++;
	}
	/* Nothing of a malformed batch is delivered: on reconnect it comes
	 * again from the same revision. */
	if (!rc && n)
		w->next_rev = ev[n - 1].kv.mod_revision + 1;
	if (!rc && !stopping(w))
		w->fn(w->ctx, 0, ev, n);
	for (size_t i = 0; i < n; i++)
		embkv_etcd_kv_free(&ev[i].kv);
	free(ev);
	return rc;
}

/* One line of the stream: 0, or the status that ends the stream. */
static int on_line(struct embkv_etcd_watch *w, const char *p, size_t len)
{
	json_t *j = json_loadb(p, len, 0, NULL);
	const json_t *res = json_object_get(j, "result"), *code;
	int64_t compact = 0, rev = 0;
	int rc = 0;

	if (!json_is_object(j)) {
		rc = EMBKV_EPROTO;
	} else if (json_object_get(j, "error")) {
		code = json_object_get(j, "code");
		rc = json_is_integer(code) ?
			     embkv_etcd_grpc_status(json_integer_value(code)) :
			     EMBKV_EPROTO;
	} else if (!json_is_object(res)) {
		rc = EMBKV_EPROTO;
	} else if (json_is_true(json_object_get(res, "canceled"))) {
		rc = embkv_etcd_i64_field(res, "compact_revision", &compact);
		if (!rc && compact > 0) {
			w->ended = true;
			rc = -ERANGE;
		} else if (!rc) {
			rc = -ECONNRESET; /* canceled by etcd: start again */
		}
	} else {
		if (json_is_true(json_object_get(res, "created"))) {
			const json_t *h = json_object_get(res, "header");

			rc = embkv_etcd_i64_field(h, "revision", &rev);
			if (!rc && !w->next_rev)
				w->next_rev = rev + 1;
			w->created = true;
		}
		if (!rc)
			rc = deliver(w, res);
	}
	json_decref(j);
	return rc;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct embkv_etcd_watch *w = arg;
	size_t len = size * nmemb, start = 0;

	if (stopping(w))
		return 0;
	if (len > EMBKV_ETCD_REPLY_MAX - w->len) {
		w->status = EMBKV_ELIMIT;
		return 0;
	}
	if (w->len + len > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		char *p;

		while (cap < w->len + len)
			cap *= 2;
		p = realloc(w->line, cap);
		if (!p) {
			w->status = -ENOMEM;
			return 0;
		}
		w->line = p;
		w->cap = cap;
	}
	memcpy(w->line + w->len, data, len);
	w->len += len;
	for (size_t i = 0; i < w->len; i++) {
		if (w->line[i] != '\n')
			continue;
		if (i > start) {
			int rc = on_line(w, w->line + start, i - start);

			if (rc) {
				w->status = rc;
				return 0;
			}
		}
		start = i + 1;
	}
	memmove(w->line, w->line + start, w->len - start);
	w->len -= start;
	return len;
}

static char *create_body(struct embkv_etcd_watch *w)
{
	json_t *cr = json_object(), *req = json_object();
	char *body = NULL;

	if (!cr || !req || json_object_set_new(req, "create_request", cr)) {
		json_decref(cr);
		goto out;
	}
	if (json_object_set_new(cr, "key", embkv_etcd_b64_json(
					w->prefix, strlen(w->prefix))) ||
	    json_object_set_new(cr, "range_end",
				embkv_etcd_prefix_end_json(w->prefix)) ||
	    (w->next_rev && json_object_set_new(cr, "start_revision",
						json_integer(w->next_rev))))
		goto out;
	body = json_dumps(req, JSON_COMPACT);
out:
	json_decref(req);
	return body;
}

static int curl_result(CURLcode cc)
{
	switch (cc) {
	case CURLE_OK:
		return -ECONNRESET; /* the stream ended */
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -ECONNRESET;
	}
}

/* Runs one stream until it ends or the watch is stopped. */
static int stream(struct embkv_etcd_watch *w)
{
	char url[URL_MAX], *body = create_body(w);
	CURLcode cc = CURLE_OK;
	CURL *c = curl_easy_init();
	CURLMsg *msg;
	int running = 1, left;

	w->len = 0;
	w->status = 0;
	w->created = false;
	if (!body || !c) {
		free(body);
		if (c)
			curl_easy_cleanup(c);
		return -ENOMEM;
	}
	snprintf(url, sizeof(url), "%s/v3/watch", w->endpoints[w->cur]);
	embkv_etcd_curl_common(c, w->headers, w->connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, KEEPALIVE_IDLE_S);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, KEEPALIVE_INTVL_S);
	curl_multi_add_handle(w->multi, c);
	while (running && !stopping(w)) {
		if (curl_multi_perform(w->multi, &running) != CURLM_OK)
			break;
		if (running)
			curl_multi_poll(w->multi, NULL, 0, POLL_MS, NULL);
	}
	while ((msg = curl_multi_info_read(w->multi, &left)))
		if (msg->msg == CURLMSG_DONE)
			cc = msg->data.result;
	curl_multi_remove_handle(w->multi, c);
	curl_easy_cleanup(c);
	free(body);
	return w->status ? w->status : curl_result(cc);
}

static void *watch_main(void *arg)
{
	struct embkv_etcd_watch *w = arg;
	bool down = false;

	while (!stopping(w)) {
		int rc = stream(w);

		if (stopping(w))
			break;
		if (w->ended) {
			w->fn(w->ctx, -ERANGE, NULL, 0);
			break;
		}
		if (w->created) /* it was up: a new outage */
			down = false;
		if (!down) /* once per outage */
			w->fn(w->ctx, rc, NULL, 0);
		down = true;
		w->cur = (w->cur + 1) % w->nendpoints;
		/* Waits retry_ms, or until embkv_etcd_watch_stop() wakes it. */
		curl_multi_poll(w->multi, NULL, 0, (int)w->retry_ms, NULL);
	}
	return NULL;
}

static void watch_free(struct embkv_etcd_watch *w)
{
	if (w->multi)
		curl_multi_cleanup(w->multi);
	curl_slist_free_all(w->headers);
	for (size_t i = 0; w->endpoints && i < w->nendpoints; i++)
		free(w->endpoints[i]);
	free(w->endpoints);
	free(w->prefix);
	free(w->line);
	free(w);
}

int embkv_etcd_watch_start(struct embkv_etcd *e, const char *prefix,
			   int64_t start_revision, uint32_t retry_ms,
			   embkv_etcd_watch_fn fn, void *ctx,
			   struct embkv_etcd_watch **out)
{
	struct embkv_etcd_watch *w;
	int rc = -ENOMEM;

	if (!e || !prefix || !*prefix || start_revision < 0 || !fn || !out)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->endpoints = calloc(e->nendpoints, sizeof(char *));
	if (!w->endpoints)
		goto free;
	for (; w->nendpoints < e->nendpoints; w->nendpoints++) {
		w->endpoints[w->nendpoints] = strdup(e->endpoints[w->nendpoints]);
		if (!w->endpoints[w->nendpoints])
			goto free;
	}
	w->cur = e->cur;
	w->connect_timeout_ms = e->connect_timeout_ms;
	w->retry_ms = retry_ms ? retry_ms : EMBKV_ETCD_WATCH_RETRY_MS;
	w->next_rev = start_revision;
	w->fn = fn;
	w->ctx = ctx;
	w->prefix = strdup(prefix);
	w->headers = curl_slist_append(NULL, "Content-Type: application/json");
	w->multi = curl_multi_init();
	if (!w->prefix || !w->headers || !w->multi)
		goto free;
	rc = -pthread_create(&w->thread, NULL, watch_main, w);
	if (rc)
		goto free;
	*out = w;
	return 0;
free:
	watch_free(w);
	return rc;
}

void embkv_etcd_watch_stop(struct embkv_etcd_watch *w)
{
	if (!w)
		return;
	__atomic_store_n(&w->stop, true, __ATOMIC_RELEASE);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thread, NULL);
	watch_free(w);
}
