/*
 * The etcd client (net/etcd.h) against a real etcd on loopback
 * (etcd_harness.h), plus a fake HTTP server for the answers etcd never
 * gives: put/get/prefix/delete, CAS transactions that succeed and fail,
 * leases that expire without keepalive and live with it, a watch that
 * sees puts and deletes in order, resumes after etcd restarts and stops
 * promptly, failover past a dead endpoint, and bounded, distinct errors
 * when etcd is down, silent, or answers garbage.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <embkv/embkv.h>
#include "net/etcd.h"
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define LEASE_TTL_S 2
#define EXPIRE_WAIT_MS 8000u
#define WATCH_WAIT_MS 5000u
#define STOP_BOUND_MS 300u
#define DOWN_BOUND_MS 1000u
#define SILENT_TIMEOUT_MS 300u
#define MAX_EVENTS 16

static struct embkv_test_etcd etcd;

static struct embkv_etcd *client(const char *endpoints, uint32_t timeout_ms)
{
	struct embkv_etcd_attr a;
	struct embkv_etcd *e = NULL;

	embkv_etcd_attr_init(&a);
	a.endpoints = endpoints;
	if (timeout_ms)
		a.timeout_ms = timeout_ms;
	assert_int_equal(embkv_etcd_create(&a, &e), 0);
	return e;
}

static int group_setup(void **state)
{
	(void)state;
	return embkv_test_etcd_start(&etcd) ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	embkv_test_etcd_stop(&etcd);
	return 0;
}

static bool exists(struct embkv_etcd *e, const char *key)
{
	struct embkv_etcd_kvs r;
	bool found;

	assert_int_equal(embkv_etcd_get(e, key, false, &r), 0);
	found = r.n == 1;
	embkv_etcd_kvs_free(&r);
	return found;
}

static void test_attr_checks(void **state)
{
	struct embkv_etcd_attr a;
	struct embkv_etcd *e = NULL;

	(void)state;
	embkv_etcd_attr_init(&a);
	assert_int_equal(embkv_etcd_create(&a, &e), -EINVAL);
	a.endpoints = "127.0.0.1:2379"; /* no scheme */
	assert_int_equal(embkv_etcd_create(&a, &e), -EINVAL);
	a.endpoints = "https://127.0.0.1:2379";
	assert_int_equal(embkv_etcd_create(&a, &e), -EINVAL);
	a.endpoints = ",";
	assert_int_equal(embkv_etcd_create(&a, &e), -EINVAL);
	a.endpoints = "http://a:1,http://b:2/";
	a.flags = 1;
	assert_int_equal(embkv_etcd_create(&a, &e), -EINVAL);
	a.flags = 0;
	assert_int_equal(embkv_etcd_create(&a, &e), 0);
	assert_int_equal(embkv_etcd_get(e, "", false, NULL), -EINVAL);
	embkv_etcd_destroy(e);
	embkv_etcd_destroy(NULL);
	assert_true(embkv_etcd_unreachable(-ECONNREFUSED));
	assert_false(embkv_etcd_unreachable(-ENOENT));
}

static void test_put_get_delete(void **state)
{
	static const char bin[] = { 'a', 0, 'b', (char)0xff, '\n' };
	struct embkv_etcd *e = client(etcd.url, 0);
	struct embkv_etcd_kvs r;
	int64_t rev1, rev2, deleted;

	(void)state;
	assert_int_equal(embkv_etcd_put(e, "/t/kv/a", "one", 3, 0, &rev1), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/kv/b", bin, sizeof(bin), 0,
					NULL), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/kvx", "out", 3, 0, NULL), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/kv/a", "uno", 3, 0, &rev2), 0);
	assert_true(rev2 > rev1);

	assert_int_equal(embkv_etcd_get(e, "/t/kv/a", false, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.kv[0].key, "/t/kv/a");
	assert_int_equal(r.kv[0].value_len, 3);
	assert_string_equal(r.kv[0].value, "uno");
	assert_int_equal(r.kv[0].create_revision, rev1);
	assert_int_equal(r.kv[0].mod_revision, rev2);
	assert_int_equal(r.kv[0].version, 2);
	assert_int_equal(r.kv[0].lease, 0);
	assert_true(r.revision >= rev2);
	embkv_etcd_kvs_free(&r);

	/* A prefix: both keys under /t/kv/, in key order, not /t/kvx. */
	assert_int_equal(embkv_etcd_get(e, "/t/kv/", true, &r), 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.kv[0].key, "/t/kv/a");
	assert_string_equal(r.kv[1].key, "/t/kv/b");
	assert_int_equal(r.kv[1].value_len, sizeof(bin));
	assert_memory_equal(r.kv[1].value, bin, sizeof(bin));
	embkv_etcd_kvs_free(&r);

	assert_int_equal(embkv_etcd_get(e, "/t/none", false, &r), 0);
	assert_int_equal(r.n, 0);
	embkv_etcd_kvs_free(&r);

	assert_int_equal(embkv_etcd_delete(e, "/t/kv/", true, &deleted), 0);
	assert_int_equal(deleted, 2);
	assert_false(exists(e, "/t/kv/a"));
	assert_true(exists(e, "/t/kvx"));
	assert_int_equal(embkv_etcd_delete(e, "/t/kvx", false, &deleted), 0);
	assert_int_equal(deleted, 1);
	assert_int_equal(embkv_etcd_delete(e, "/t/kvx", false, &deleted), 0);
	assert_int_equal(deleted, 0);
	embkv_etcd_destroy(e);
}

static void test_txn_cas(void **state)
{
	struct embkv_etcd *e = client(etcd.url, 0);
	struct embkv_etcd_cmp absent = {
		.key = "/t/cas/k", .target = EMBKV_ETCD_CREATE,
		.result = EMBKV_ETCD_EQUAL, .number = 0,
	};
	struct embkv_etcd_op put1 = {
		.type = EMBKV_ETCD_OP_PUT, .key = "/t/cas/k", .value = "v1",
		.value_len = 2,
	};
	struct embkv_etcd_op mark = {
		.type = EMBKV_ETCD_OP_PUT, .key = "/t/cas/lost", .value = "x",
		.value_len = 1,
	};
	struct embkv_etcd_txn t = {
		.cmp = &absent, .ncmp = 1, .success = &put1, .nsuccess = 1,
		.failure = &mark, .nfailure = 1,
	};
	struct embkv_etcd_kvs r;
	int64_t rev, mod;
	bool ok = false;

	(void)state;
	/* Create-if-absent: the first wins, the second runs its failure. */
	assert_int_equal(embkv_etcd_txn(e, &t, &ok, &rev), 0);
	assert_true(ok);
	assert_false(exists(e, "/t/cas/lost"));
	assert_int_equal(embkv_etcd_txn(e, &t, &ok, NULL), 0);
	assert_false(ok);
	assert_true(exists(e, "/t/cas/lost"));

	/* Compare-and-swap on mod_revision: the current one wins once. */
	assert_int_equal(embkv_etcd_get(e, "/t/cas/k", false, &r), 0);
	assert_int_equal(r.n, 1);
	mod = r.kv[0].mod_revision;
	assert_int_equal(mod, rev);
	embkv_etcd_kvs_free(&r);
	{
		struct embkv_etcd_cmp c = {
			.key = "/t/cas/k", .target = EMBKV_ETCD_MOD,
			.result = EMBKV_ETCD_EQUAL, .number = mod,
		};
		struct embkv_etcd_op put2 = {
			.type = EMBKV_ETCD_OP_PUT, .key = "/t/cas/k",
			.value = "v2", .value_len = 2,
		};
		struct embkv_etcd_txn t2 = {
			.cmp = &c, .ncmp = 1, .success = &put2, .nsuccess = 1,
		};

		assert_int_equal(embkv_etcd_txn(e, &t2, &ok, NULL), 0);
		assert_true(ok);
		put2.value = "v3";
		assert_int_equal(embkv_etcd_txn(e, &t2, &ok, NULL), 0);
		assert_false(ok); /* stale revision: nothing changed */
	}
	assert_int_equal(embkv_etcd_get(e, "/t/cas/k", false, &r), 0);
	assert_string_equal(r.kv[0].value, "v2");
	embkv_etcd_kvs_free(&r);

	/* Value compare and a delete op. */
	{
		struct embkv_etcd_cmp c = {
			.key = "/t/cas/k", .target = EMBKV_ETCD_VALUE,
			.result = EMBKV_ETCD_EQUAL, .value = "v1",
			.value_len = 2,
		};
		struct embkv_etcd_op del = {
			.type = EMBKV_ETCD_OP_DELETE, .key = "/t/cas/",
			.prefix = true,
		};
		struct embkv_etcd_txn t3 = {
			.cmp = &c, .ncmp = 1, .success = &del, .nsuccess = 1,
		};

		assert_int_equal(embkv_etcd_txn(e, &t3, &ok, NULL), 0);
		assert_false(ok);
		assert_true(exists(e, "/t/cas/k"));
		c.value = "v2";
		assert_int_equal(embkv_etcd_txn(e, &t3, &ok, NULL), 0);
		assert_true(ok);
		assert_false(exists(e, "/t/cas/k"));
		assert_false(exists(e, "/t/cas/lost"));
	}
	/* An invalid compare is refused before anything is sent. */
	absent.target = (enum embkv_etcd_target)99;
	assert_int_equal(embkv_etcd_txn(e, &t, &ok, NULL), -EINVAL);
	embkv_etcd_destroy(e);
}

static void test_lease(void **state)
{
	struct embkv_etcd *e = client(etcd.url, 0);
	int64_t dying, kept, ttl = 0, granted;
	struct embkv_etcd_kvs r;
	uint64_t deadline, next_keep = 0;

	(void)state;
	assert_int_equal(embkv_etcd_lease_grant(e, LEASE_TTL_S, &dying,
						&granted), 0);
	assert_true(granted >= LEASE_TTL_S);
	assert_int_equal(embkv_etcd_lease_grant(e, LEASE_TTL_S, &kept, NULL),
			 0);
	assert_true(dying != kept);
	assert_int_equal(embkv_etcd_put(e, "/t/lease/dying", "d", 1, dying,
					NULL), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/lease/kept", "k", 1, kept,
					NULL), 0);
	assert_int_equal(embkv_etcd_get(e, "/t/lease/kept", false, &r), 0);
	assert_int_equal(r.kv[0].lease, kept);
	embkv_etcd_kvs_free(&r);
	assert_int_equal(embkv_etcd_lease_ttl(e, kept, &ttl), 0);
	assert_true(ttl >= 0 && ttl <= granted);

	/* Keep one alive, not the other, until the other's key is gone. */
	deadline = embkv_test_now_ms() + EXPIRE_WAIT_MS;
	while (exists(e, "/t/lease/dying")) {
		assert_true(embkv_test_now_ms() < deadline);
		if (embkv_test_now_ms() >= next_keep) {
			assert_int_equal(embkv_etcd_lease_keepalive(e, kept,
								    &ttl), 0);
			assert_true(ttl >= LEASE_TTL_S);
			next_keep = embkv_test_now_ms() + 400;
		}
		usleep(100 * 1000);
	}
	assert_true(exists(e, "/t/lease/kept"));
	assert_int_equal(embkv_etcd_lease_ttl(e, dying, &ttl), -ENOENT);
	assert_int_equal(embkv_etcd_lease_keepalive(e, dying, &ttl), -ENOENT);

	/* Revoking deletes the key at once; a second revoke is ENOENT. */
	assert_int_equal(embkv_etcd_lease_revoke(e, kept), 0);
	assert_false(exists(e, "/t/lease/kept"));
	assert_int_equal(embkv_etcd_lease_revoke(e, kept), -ENOENT);
	assert_int_equal(embkv_etcd_put(e, "/t/lease/x", "x", 1, kept, NULL),
			 -ENOENT);
	embkv_etcd_destroy(e);
}

/* What a watch callback collected. */
struct seen {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int n;
	enum embkv_etcd_event_type type[MAX_EVENTS];
	char key[MAX_EVENTS][64];
	char value[MAX_EVENTS][16];
	int64_t rev[MAX_EVENTS];
	int errors, last_status;
	bool after_stop;
	bool stopped;
};

static void seen_init(struct seen *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
}

static void on_watch(void *ctx, int status, const struct embkv_etcd_event *ev,
		     size_t n)
{
	struct seen *s = ctx;

	pthread_mutex_lock(&s->lock);
	if (s->stopped)
		s->after_stop = true;
	if (status) {
		s->errors++;
		s->last_status = status;
	}
	for (size_t i = 0; i < n && s->n < MAX_EVENTS; i++, s->n++) {
		s->type[s->n] = ev[i].type;
		snprintf(s->key[s->n], sizeof(s->key[0]), "%s", ev[i].kv.key);
		snprintf(s->value[s->n], sizeof(s->value[0]), "%s",
			 ev[i].kv.value);
		s->rev[s->n] = ev[i].kv.mod_revision;
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Waits until s->n >= n (or errors >= errs when n < 0). */
static bool seen_wait(struct seen *s, int n, int errs)
{
	uint64_t deadline = embkv_test_now_ms() + WATCH_WAIT_MS;
	bool ok;

	pthread_mutex_lock(&s->lock);
	while (!(ok = n >= 0 ? s->n >= n : s->errors >= errs) &&
	       embkv_test_now_ms() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static void test_watch(void **state)
{
	struct embkv_etcd *e = client(etcd.url, 0);
	struct embkv_etcd_watch *w = NULL;
	struct embkv_etcd_kvs r;
	struct seen s;
	int64_t r1, r2, r3;
	uint64_t t0;

	(void)state;
	seen_init(&s);
	assert_int_equal(embkv_etcd_put(e, "/t/w/old", "0", 1, 0, NULL), 0);
	/* List, then watch from the list's revision + 1. */
	assert_int_equal(embkv_etcd_get(e, "/t/w/", true, &r), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(embkv_etcd_watch_start(e, "/t/w/", r.revision + 1, 0,
						on_watch, &s, &w), 0);
	embkv_etcd_kvs_free(&r);
	assert_int_equal(embkv_etcd_put(e, "/t/w/a", "1", 1, 0, &r1), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/wx", "no", 2, 0, NULL), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/w/b", "2", 1, 0, &r2), 0);
	assert_int_equal(embkv_etcd_delete(e, "/t/w/a", false, NULL), 0);
	assert_int_equal(embkv_etcd_get(e, "/t/w/b", false, &r), 0);
	r3 = r.revision;
	embkv_etcd_kvs_free(&r);
	assert_true(seen_wait(&s, 3, 0));
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.type[0], EMBKV_ETCD_EV_PUT);
	assert_string_equal(s.key[0], "/t/w/a");
	assert_string_equal(s.value[0], "1");
	assert_int_equal(s.rev[0], r1);
	assert_int_equal(s.type[1], EMBKV_ETCD_EV_PUT);
	assert_string_equal(s.key[1], "/t/w/b");
	assert_int_equal(s.rev[1], r2);
	assert_int_equal(s.type[2], EMBKV_ETCD_EV_DELETE);
	assert_string_equal(s.key[2], "/t/w/a");
	assert_int_equal(s.rev[2], r3);
	assert_int_equal(s.errors, 0);
	s.stopped = true;
	pthread_mutex_unlock(&s.lock);

	/* Stopping an idle stream is prompt and silences the callback. */
	t0 = embkv_test_now_ms();
	embkv_etcd_watch_stop(w);
	assert_true(embkv_test_now_ms() - t0 < STOP_BOUND_MS);
	assert_int_equal(embkv_etcd_put(e, "/t/w/c", "3", 1, 0, NULL), 0);
	usleep(200 * 1000);
	assert_false(s.after_stop);
	assert_int_equal(s.n, 3);
	embkv_etcd_delete(e, "/t/w", true, NULL);
	embkv_etcd_destroy(e);
}

/* A watch from a revision compacted away ends with -ERANGE, once. */
static void test_watch_compacted(void **state)
{
	struct embkv_etcd *e = client(etcd.url, 0);
	struct embkv_etcd_watch *w = NULL;
	struct seen s;
	int64_t rev1, rev2;

	(void)state;
	seen_init(&s);
	assert_int_equal(embkv_etcd_put(e, "/t/c/a", "1", 1, 0, &rev1), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/c/a", "2", 1, 0, &rev2), 0);
	assert_int_equal(embkv_etcd_compact(e, rev2), 0);
	assert_int_equal(embkv_etcd_watch_start(e, "/t/c/", rev1, 100,
						on_watch, &s, &w), 0);
	assert_true(seen_wait(&s, -1, 1));
	usleep(300 * 1000); /* it ended: no retries, nothing more */
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.errors, 1);
	assert_int_equal(s.last_status, -ERANGE);
	assert_int_equal(s.n, 0);
	pthread_mutex_unlock(&s.lock);
	embkv_etcd_watch_stop(w);
	/* From the compaction's revision on, it works. */
	seen_init(&s);
	assert_int_equal(embkv_etcd_watch_start(e, "/t/c/", rev2, 0, on_watch,
						&s, &w), 0);
	assert_true(seen_wait(&s, 1, 0));
	assert_string_equal(s.value[0], "2");
	embkv_etcd_watch_stop(w);
	assert_int_equal(embkv_etcd_compact(e, rev1), -ERANGE);
	embkv_etcd_destroy(e);
}

static void test_failover(void **state)
{
	char list[2 * EMBKV_TEST_ETCD_URL_MAX + 2];
	uint16_t dead = embkv_test_free_port();
	struct embkv_etcd *e;
	struct embkv_etcd_kvs r;

	(void)state;
	assert_true(dead != 0);
	snprintf(list, sizeof(list), "http://127.0.0.1:%u,%s", dead, etcd.url);
	e = client(list, 0);
	assert_int_equal(embkv_etcd_put(e, "/t/fo", "1", 1, 0, NULL), 0);
	assert_int_equal(embkv_etcd_get(e, "/t/fo", false, &r), 0);
	assert_int_equal(r.n, 1);
	embkv_etcd_kvs_free(&r);
	embkv_etcd_destroy(e);
}

/* A fake etcd: accepts connections and answers each with the next of
 * its canned answers (n 0: listens and never accepts). */
struct answer {
	const char *status;     /* "200 OK" */
	const char *body;
};

struct fake {
	int fd;
	uint16_t port;
	const struct answer *answers;
	size_t n;
	pthread_t thread;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	char buf[4096], req[4096];

	for (size_t i = 0; i < f->n; i++) {
		int c = accept(f->fd, NULL, NULL);
		int len;

		if (c < 0)
			break;
		len = snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\nConnection: "
			       "close\r\nContent-Length: %zu\r\n\r\n%s",
			       f->answers[i].status,
			       strlen(f->answers[i].body), f->answers[i].body);
		if (read(c, req, sizeof(req)) <= 0 ||
		    write(c, buf, (size_t)len) < 0)
			i = f->n;
		close(c);
	}
	return NULL;
}

static void fake_start(struct fake *f, const struct answer *answers,
		       size_t n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	f->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->fd, 8), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &len), 0);
	f->port = ntohs(sa.sin_port);
	f->answers = answers;
	f->n = n;
	if (n)
		assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f),
				 0);
}

static void fake_stop(struct fake *f)
{
	if (f->n) {
		shutdown(f->fd, SHUT_RDWR);
		pthread_join(f->thread, NULL);
	}
	close(f->fd);
}

static void test_malformed(void **state)
{
	static const struct answer answers[] = {
		{ "200 OK", "hello" },
		{ "200 OK", "[]" },
		{ "200 OK", "{\"header\":{\"revision\":\"1\"},"
			    "\"kvs\":[{\"key\":\"!!\"}]}" },
		{ "200 OK", "{\"header\":{\"revision\":\"x\"}}" },
		{ "200 OK", "{\"header\":{\"revision\":\"1\"},\"kvs\":7}" },
		{ "500 Oops", "oops" },
		{ "400 Bad", "{\"error\":\"bad thing\",\"code\":3}" },
		{ "200 OK", "{\"result\":" },
		{ "200 OK", "{\"header\":{},\"ID\":\"5\"}" },
	};
	char url[EMBKV_TEST_ETCD_URL_MAX];
	struct embkv_etcd_kvs r;
	struct fake f;
	struct embkv_etcd *e;
	int64_t ttl;

	(void)state;
	fake_start(&f, answers, sizeof(answers) / sizeof(answers[0]));
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", f.port);
	e = client(url, 0);
	assert_int_equal(embkv_etcd_get(e, "/k", false, &r), EMBKV_EPROTO);
	assert_int_equal(embkv_etcd_get(e, "/k", false, &r), EMBKV_EPROTO);
	assert_int_equal(embkv_etcd_get(e, "/k", true, &r), EMBKV_EPROTO);
	assert_int_equal(embkv_etcd_get(e, "/k", false, &r), EMBKV_EPROTO);
	assert_int_equal(embkv_etcd_get(e, "/k", false, &r), EMBKV_EPROTO);
	assert_int_equal(embkv_etcd_get(e, "/k", false, &r), EMBKV_EPROTO);
	assert_int_equal(embkv_etcd_put(e, "/k", "v", 1, 0, NULL), -EINVAL);
	assert_string_equal(embkv_etcd_errmsg(e), "bad thing");
	assert_int_equal(embkv_etcd_lease_keepalive(e, 1, &ttl), EMBKV_EPROTO);
	assert_int_equal(embkv_etcd_lease_grant(e, 1, &ttl, NULL), EMBKV_EPROTO);
	embkv_etcd_destroy(e);
	fake_stop(&f);
}

/* A peer that takes the connection and never answers: -ETIMEDOUT within
 * the request timeout, not later. */
static void test_silent_timeout(void **state)
{
	char url[EMBKV_TEST_ETCD_URL_MAX];
	struct embkv_etcd_kvs r;
	struct fake f;
	struct embkv_etcd *e;
	uint64_t t0, took;

	(void)state;
	fake_start(&f, NULL, 0); /* listens, never accepts */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", f.port);
	e = client(url, SILENT_TIMEOUT_MS);
	t0 = embkv_test_now_ms();
	assert_int_equal(embkv_etcd_get(e, "/k", false, &r), -ETIMEDOUT);
	took = embkv_test_now_ms() - t0;
	assert_true(took >= SILENT_TIMEOUT_MS - 50 &&
		    took < SILENT_TIMEOUT_MS + 500);
	assert_true(embkv_etcd_unreachable(-ETIMEDOUT));
	embkv_etcd_destroy(e);
	fake_stop(&f);
}

/* etcd stopped: every call fails fast with ECONNREFUSED; a watch reports
 * the outage once, retries, and after the restart resumes where it was:
 * the next change arrives, none is repeated. Runs last. */
static void test_etcd_down(void **state)
{
	struct embkv_etcd *e = client(etcd.url, 0);
	struct embkv_etcd_watch *w = NULL;
	struct embkv_etcd_kvs r;
	struct seen s;
	int64_t id, rev;
	uint64_t t0;

	(void)state;
	seen_init(&s);
	assert_int_equal(embkv_etcd_put(e, "/t/d/a", "1", 1, 0, &rev), 0);
	assert_int_equal(embkv_etcd_watch_start(e, "/t/d/", rev + 1, 100,
						on_watch, &s, &w), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/d/b", "2", 1, 0, NULL), 0);
	assert_true(seen_wait(&s, 1, 0));

	embkv_test_etcd_halt(&etcd);
	t0 = embkv_test_now_ms();
	assert_int_equal(embkv_etcd_get(e, "/t/d/a", false, &r),
			 -ECONNREFUSED);
	assert_int_equal(embkv_etcd_put(e, "/t/d/a", "1", 1, 0, NULL),
			 -ECONNREFUSED);
	assert_int_equal(embkv_etcd_lease_grant(e, 5, &id, NULL),
			 -ECONNREFUSED);
	assert_true(embkv_test_now_ms() - t0 < DOWN_BOUND_MS);
	assert_true(embkv_etcd_errmsg(e)[0] != '\0');
	/* The watch heard the break, once. */
	assert_true(seen_wait(&s, -1, 1));
	usleep(400 * 1000); /* several retries */
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.errors, 1);
	assert_true(embkv_etcd_unreachable(s.last_status));
	pthread_mutex_unlock(&s.lock);

	assert_int_equal(embkv_test_etcd_restart(&etcd), 0);
	assert_int_equal(embkv_etcd_put(e, "/t/d/c", "3", 1, 0, NULL), 0);
	assert_true(seen_wait(&s, 2, 0));
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.key[0], "/t/d/b");
	assert_string_equal(s.key[1], "/t/d/c");
	pthread_mutex_unlock(&s.lock);
	t0 = embkv_test_now_ms();
	embkv_etcd_watch_stop(w);
	assert_true(embkv_test_now_ms() - t0 < STOP_BOUND_MS);
	embkv_etcd_destroy(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attr_checks),
		cmocka_unit_test(test_put_get_delete),
		cmocka_unit_test(test_txn_cas),
		cmocka_unit_test(test_lease),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_watch_compacted),
		cmocka_unit_test(test_failover),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_silent_timeout),
		cmocka_unit_test(test_etcd_down),
	};

	if (!embkv_test_etcd_available()) {
		fprintf(stderr, "test_etcd: no etcd at %s\n", EMBKV_TEST_ETCD_BIN);
		return 1;
	}
	return cmocka_run_group_tests_name("etcd", tests, group_setup,
					   group_teardown);
}
