/*
 * Unit tests for the TCP transport and client creation, no embkvd:
 * address parsing (bad ones are -EINVAL), a closed port refused at once,
 * a server that never answers the handshake timed out within the connect
 * timeout, frames read byte by byte or several in one segment, a header
 * over the limit rejected before any body byte is awaited, a peer that
 * goes away mid-frame.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client.h"
#include "net/transport.h"

#define SHORT_MS 300u
#define SLACK_MS 2000u /* scheduling noise, sanitizers */
#define ADDR_LEN 64u

/* A loopback listener on port 0: the fd, its "tcp://127.0.0.1:PORT". */
static int listener(char *addr, int backlog)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(addr, ADDR_LEN, "tcp://127.0.0.1:%u",
		 (unsigned)ntohs(sa.sin_port));
	return fd;
}

static void test_parse(void **state)
{
	static const char *const good[] = {
		"tcp://127.0.0.1:7000", "tcp://localhost:1",
		"tcp://[::1]:65535", "tcp://a-b.c_d:80",
	};
	static const char *const bad[] = {
		"", "127.0.0.1:7000", "tcp://", "tcp://:7000", "tcp://host",
		"tcp://host:", "tcp://host:0", "tcp://host:65536",
		"tcp://host:12a", "udp://host:1", "tcp://ho st:1",
		"tcp://[::1:5", "://host:1", "tcp://h:1:2", "tcp://[]:1",
		"tcp://[x::1]:1", "TCP://host:1",
	};
	struct embkv_endpoint ep;
	char longaddr[EMBKV_WIRE_ADDR_MAX + 16];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(embkv_endpoint_parse(good[i], &ep), 0);
	assert_int_equal(embkv_endpoint_parse("tcp://[::1]:65535", &ep), 0);
	assert_string_equal(ep.host, "::1");
	assert_int_equal(ep.port, 65535);
	assert_ptr_equal(ep.ops, &embkv_tcp_ops);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = embkv_endpoint_parse(bad[i], &ep);

		if (rc != -EINVAL)
			fail_msg("\"%s\" gave %d", bad[i], rc);
	}
	assert_int_equal(embkv_endpoint_parse(NULL, &ep), -EINVAL);
	/* rdma parses whether or not this build has verbs; connecting
	 * without an RDMA device (or without verbs) fails at once. */
	assert_int_equal(embkv_endpoint_parse("rdma://127.0.0.1:1", &ep), 0);
	assert_ptr_equal(ep.ops, &embkv_verbs_ops);
	{
		struct embkv_conn *conn = NULL;
		uint64_t t0 = embkv_now_ms();

		assert_true(ep.ops->connect(&ep, 1000, &conn) < 0);
		assert_null(conn);
		assert_true(embkv_now_ms() - t0 < 2000);
	}
	memset(longaddr, 'a', sizeof(longaddr) - 1);
	memcpy(longaddr, "tcp://", 6);
	longaddr[sizeof(longaddr) - 1] = '\0';
	assert_int_equal(embkv_endpoint_parse(longaddr, &ep), EMBKV_ELIMIT);
}

static void test_client_attr_rejected(void **state)
{
	const char *bad_addr[] = { "tcp://127.0.0.1" };
	const char *dup[] = { "tcp://127.0.0.1:9", "tcp://127.0.0.1:9" };
	struct embkv_client_attr a;
	struct embkv_client *c = (void *)1;

	(void)state;
	embkv_client_attr_init(&a);
	assert_int_equal(a.connect_timeout_ms, 5000);
	assert_int_equal(a.request_timeout_ms, 30000);
	assert_int_equal(a.max_retries, 3);
	assert_int_equal(embkv_client_create(&a, &c), -EINVAL); /* no servers */
	a.servers = bad_addr;
	a.nservers = 1;
	assert_int_equal(embkv_client_create(&a, &c), -EINVAL);
	a.servers = dup;
	a.nservers = 2;
	assert_int_equal(embkv_client_create(&a, &c), -EINVAL);
	a.nservers = 1;
	a.flags = ~EMBKV_CLIENT_ALLOW_DOWN; /* unknown flags */
	assert_int_equal(embkv_client_create(&a, &c), -EINVAL);
	a.flags = 0;
	a.async_threads = EMBKV_CLIENT_ASYNC_MAX + 1;
	assert_int_equal(embkv_client_create(&a, &c), -EINVAL);
	assert_int_equal(embkv_client_create(NULL, &c), -EINVAL);
	assert_ptr_equal(c, (void *)1); /* untouched on failure */
	embkv_client_destroy(NULL);
}

static void test_closed_port(void **state)
{
	char addr[ADDR_LEN];
	const char *servers[1] = { addr };
	struct embkv_client_attr a;
	struct embkv_client *c = NULL;
	uint64_t t0;
	int fd = listener(addr, 1);

	(void)state;
	close(fd); /* nothing listens there now */
	embkv_client_attr_init(&a);
	a.servers = servers;
	a.nservers = 1;
	a.connect_timeout_ms = SHORT_MS;
	t0 = embkv_now_ms();
	assert_int_equal(embkv_client_create(&a, &c), -ECONNREFUSED);
	assert_true(embkv_now_ms() - t0 < SHORT_MS + SLACK_MS);
	assert_null(c);
}

/* A server whose kernel accepts the connection but that never reads:
 * the authentication handshake times out within the connect timeout. */
static void test_handshake_timeout(void **state)
{
	char addr[ADDR_LEN];
	const char *servers[1] = { addr };
	struct embkv_client_attr a;
	struct embkv_client *c = NULL;
	uint64_t t0, dt;
	int fd = listener(addr, 8);

	(void)state;
	embkv_client_attr_init(&a);
	a.servers = servers;
	a.nservers = 1;
	a.token = "secret";
	a.connect_timeout_ms = SHORT_MS;
	t0 = embkv_now_ms();
	assert_int_equal(embkv_client_create(&a, &c), EMBKV_ETIMEDOUT);
	dt = embkv_now_ms() - t0;
	assert_true(dt >= SHORT_MS - 10 && dt < SHORT_MS + SLACK_MS);
	close(fd);
}

/* Raw peer: writes a script of byte chunks, with pauses. */
struct raw_peer {
	int lfd;
	const uint8_t *bytes;
	size_t len;
	size_t chunk;      /* 0: all at once */
	int close_early;   /* close after this many bytes (0: no) */
	size_t close_at;
	pthread_t th;
};

static void *raw_main(void *arg)
{
	struct raw_peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	size_t off = 0, end = p->close_early ? p->close_at : p->len;

	if (fd < 0)
		return NULL;
	while (off < end) {
		size_t n = p->chunk ? p->chunk : end - off;

		if (n > end - off)
			n = end - off;
		if (send(fd, p->bytes + off, n, MSG_NOSIGNAL) != (ssize_t)n)
			break;
		off += n;
		if (p->chunk)
			usleep(200);
	}
	if (!p->close_early)
		usleep(SHORT_MS * 1000u * 2); /* keep it open a while */
	close(fd);
	return NULL;
}

static struct embkv_conn *raw_connect(struct raw_peer *p, char *addr)
{
	struct embkv_endpoint ep;
	struct embkv_conn *c = NULL;

	assert_int_equal(embkv_endpoint_parse(addr, &ep), 0);
	assert_int_equal(pthread_create(&p->th, NULL, raw_main, p), 0);
	assert_int_equal(ep.ops->connect(&ep, SHORT_MS, &c), 0);
	return c;
}

/* A reply frame (TABLE_LIST reply, body of len bytes) into buf. */
static size_t make_frame(uint8_t *buf, uint64_t req, uint32_t len)
{
	struct embkv_wire_hdr h = {
		.opcode = EMBKV_WIRE_OP_TABLE_LIST | EMBKV_WIRE_OP_REPLY,
		.request_id = req, .body_len = len,
	};

	assert_int_equal(embkv_wire_hdr_encode(&h, buf), EMBKV_WIRE_HDR_SIZE);
	for (uint32_t i = 0; i < len; i++)
		buf[EMBKV_WIRE_HDR_SIZE + i] = (uint8_t)(i * 7 + req);
	return EMBKV_WIRE_HDR_SIZE + len;
}

static void check_frame(struct embkv_rx *rx, uint64_t req, uint32_t len)
{
	assert_int_equal(rx->hdr.request_id, req);
	assert_int_equal(rx->hdr.body_len, len);
	assert_int_equal(rx->buf.len, EMBKV_WIRE_HDR_SIZE + len);
	for (uint32_t i = 0; i < len; i++)
		assert_int_equal(rx->buf.data[EMBKV_WIRE_HDR_SIZE + i],
				 (uint8_t)(i * 7 + req));
}

/* Byte-by-byte delivery, then three frames (one larger than the
 * read-ahead buffer) in one write. */
static void test_partial_and_coalesced(void **state)
{
	const uint32_t big = 200000;
	uint8_t *bytes = malloc(3 * EMBKV_WIRE_HDR_SIZE + 100 + big + 7);
	struct raw_peer p = { 0 };
	struct embkv_conn *c;
	struct embkv_rx rx;
	char addr[ADDR_LEN];
	size_t len;

	(void)state;
	assert_non_null(bytes);
	/* 1: slow */
	p.lfd = listener(addr, 1);
	len = make_frame(bytes, 1, 100);
	p.bytes = bytes;
	p.len = len;
	p.chunk = 1;
	c = raw_connect(&p, addr);
	embkv_rx_init(&rx, EMBKV_WIRE_MAX_BODY);
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 10000), 0);
	check_frame(&rx, 1, 100);
	c->ops->close(c);
	pthread_join(p.th, NULL);
	close(p.lfd);

	/* 2: three frames in one go */
	p.lfd = listener(addr, 1);
	len = make_frame(bytes, 2, 100);
	len += make_frame(bytes + len, 3, big);
	len += make_frame(bytes + len, 4, 7);
	p.len = len;
	p.chunk = 0;
	c = raw_connect(&p, addr);
	embkv_rx_reset(&rx);
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 10000), 0);
	check_frame(&rx, 2, 100);
	embkv_rx_reset(&rx);
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 10000), 0);
	check_frame(&rx, 3, big);
	embkv_rx_reset(&rx);
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 10000), 0);
	check_frame(&rx, 4, 7);
	/* nothing more: times out */
	embkv_rx_reset(&rx);
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 50),
			 EMBKV_ETIMEDOUT);
	c->ops->close(c);
	pthread_join(p.th, NULL);
	close(p.lfd);
	embkv_rx_destroy(&rx);
	free(bytes);
}

/* body_len over the limit: refused on the header, no body awaited. */
static void test_header_limit(void **state)
{
	uint8_t hdr[EMBKV_WIRE_HDR_SIZE];
	struct raw_peer p = { 0 };
	struct embkv_conn *c;
	struct embkv_rx rx;
	char addr[ADDR_LEN];
	uint32_t huge = UINT32_MAX;
	uint64_t t0;

	(void)state;
	/* 1: 2^32-1, over EMBKV_WIRE_MAX_BODY (the header decoder's check) */
	make_frame(hdr, 9, 0);
	memcpy(hdr + EMBKV_WIRE_HDR_BODY_LEN, &huge, sizeof(huge));
	p.lfd = listener(addr, 1);
	p.bytes = hdr;
	p.len = sizeof(hdr);
	c = raw_connect(&p, addr);
	embkv_rx_init(&rx, EMBKV_WIRE_MAX_BODY);
	t0 = embkv_now_ms();
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 5000),
			 EMBKV_ELIMIT);
	assert_true(embkv_now_ms() - t0 < SHORT_MS);
	assert_true(rx.buf.cap < 4096); /* nothing reserved for the body */
	c->ops->close(c);
	pthread_join(p.th, NULL);
	close(p.lfd);
	embkv_rx_destroy(&rx);

	/* 2: within the wire limit but over the pre-auth one */
	make_frame(hdr, 9, 0);
	huge = EMBKV_WIRE_MAX_PREAUTH_BODY + 1;
	memcpy(hdr + EMBKV_WIRE_HDR_BODY_LEN, &huge, sizeof(huge));
	p.lfd = listener(addr, 1);
	c = raw_connect(&p, addr);
	embkv_rx_init(&rx, EMBKV_WIRE_MAX_PREAUTH_BODY);
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 5000),
			 EMBKV_ELIMIT);
	c->ops->close(c);
	pthread_join(p.th, NULL);
	close(p.lfd);
	embkv_rx_destroy(&rx);

	/* 3: bad magic */
	make_frame(hdr, 9, 0);
	hdr[0] ^= 0xff;
	p.lfd = listener(addr, 1);
	c = raw_connect(&p, addr);
	embkv_rx_init(&rx, EMBKV_WIRE_MAX_BODY);
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 5000),
			 EMBKV_EPROTO);
	c->ops->close(c);
	pthread_join(p.th, NULL);
	close(p.lfd);
	embkv_rx_destroy(&rx);
}

static void test_peer_gone(void **state)
{
	uint8_t buf[EMBKV_WIRE_HDR_SIZE + 64];
	struct raw_peer p = { 0 };
	struct embkv_conn *c;
	struct embkv_rx rx;
	char addr[ADDR_LEN];

	(void)state;
	p.lfd = listener(addr, 1);
	p.bytes = buf;
	p.len = make_frame(buf, 5, 64);
	p.close_early = 1;
	p.close_at = EMBKV_WIRE_HDR_SIZE + 10; /* mid-body */
	c = raw_connect(&p, addr);
	embkv_rx_init(&rx, EMBKV_WIRE_MAX_BODY);
	assert_int_equal(embkv_conn_recv(c, &rx, embkv_now_ms() + 5000),
			 EMBKV_EDISCONNECTED);
	pthread_join(p.th, NULL);
	/* sending to a closed peer: an error, never SIGPIPE */
	for (int i = 0; i < 100; i++) {
		int rc = embkv_conn_send(c, buf, sizeof(buf),
					 embkv_now_ms() + 1000);

		if (rc) {
			assert_int_equal(rc, EMBKV_EDISCONNECTED);
			break;
		}
		usleep(1000);
	}
	c->ops->close(c);
	close(p.lfd);
	embkv_rx_destroy(&rx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_client_attr_rejected),
		cmocka_unit_test(test_closed_port),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_partial_and_coalesced),
		cmocka_unit_test(test_header_limit),
		cmocka_unit_test(test_peer_gone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
