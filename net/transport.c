/*
 * Transport-independent pieces of net/transport.h: the scheme registry,
 * server address parsing, the frame receive state (header checked before
 * the body is reserved) and the blocking send/recv built on the
 * nonblocking ops with poll() and a deadline.
 *
 * Invariant: embkv_rx never reserves memory for a body whose header has
 * not passed embkv_wire_hdr_decode and the caller's max_body limit.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/transport.h"

#define SCHEME_SEP "://"
#define PORT_MAX 65535ul
#define MS_PER_S 1000ull
#define NS_PER_MS 1000000ull

/* Built-in transports. Without RDMA, embkv_verbs_ops is the stub whose
 * connect says -EPROTONOSUPPORT (CMake picks the file). */
static const struct embkv_transport_ops *const transports[] = {
	&embkv_tcp_ops,
	&embkv_verbs_ops,
};

/* Schemes embkv knows, whether or not this build has their transport. */
static const char *const known_schemes[] = { "tcp", "rdma" };

const struct embkv_transport_ops *embkv_transport_find(const char *scheme)
{
	size_t i;

	if (!scheme)
		return NULL;
	for (i = 0; i < sizeof(transports) / sizeof(transports[0]); i++)
		if (strcmp(transports[i]->scheme, scheme) == 0)
			return transports[i];
	return NULL;
}

static int scheme_known(const char *scheme)
{
	size_t i;

	for (i = 0; i < sizeof(known_schemes) / sizeof(known_schemes[0]); i++)
		if (strcmp(known_schemes[i], scheme) == 0)
			return 1;
	return 0;
}

static int host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static int port_parse(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > PORT_MAX)
			return -EINVAL;
	}
	if (v == 0)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int embkv_endpoint_parse(const char *addr, struct embkv_endpoint *out)
{
	struct embkv_endpoint ep;
	const char *sep, *host, *host_end, *colon;
	size_t len, slen, hlen, i;

	if (!addr || !out)
		return -EINVAL;
	len = strnlen(addr, EMBKV_WIRE_ADDR_MAX + 1);
	if (len > EMBKV_WIRE_ADDR_MAX)
		return EMBKV_ELIMIT;
	memset(&ep, 0, sizeof(ep));
	sep = strstr(addr, SCHEME_SEP);
	if (!sep)
		return -EINVAL;
	slen = (size_t)(sep - addr);
	if (slen == 0 || slen >= sizeof(ep.scheme))
		return -EINVAL;
	memcpy(ep.scheme, addr, slen);
	host = sep + strlen(SCHEME_SEP);
	if (*host == '[') {
		host_end = strchr(host, ']');
		if (!host_end || host_end[1] != ':')
			return -EINVAL;
		host++;
		colon = host_end + 1;
		for (i = 0; host + i < host_end; i++) {
			char c = host[i];

			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			      (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
				return -EINVAL;
		}
	} else {
		colon = strrchr(host, ':');
		if (!colon)
			return -EINVAL;
		host_end = colon;
		for (i = 0; host + i < host_end; i++)
			if (!host_char_ok(host[i]))
				return -EINVAL;
	}
	hlen = (size_t)(host_end - host);
	if (hlen == 0)
		return -EINVAL;
	memcpy(ep.host, host, hlen);
	if (port_parse(colon + 1, &ep.port))
		return -EINVAL;
	if (!scheme_known(ep.scheme))
		return -EINVAL;
	ep.ops = embkv_transport_find(ep.scheme);
	if (!ep.ops)
		return -EPROTONOSUPPORT;
	*out = ep;
	return 0;
}

/* Receive state ------------------------------------------------------------ */

void embkv_rx_init(struct embkv_rx *rx, uint32_t max_body)
{
	memset(rx, 0, sizeof(*rx));
	embkv_buf_init(&rx->buf);
	rx->max_body = max_body < EMBKV_WIRE_MAX_BODY ? max_body
						      : EMBKV_WIRE_MAX_BODY;
}

void embkv_rx_reset(struct embkv_rx *rx)
{
	embkv_buf_reset(&rx->buf);
	rx->have_hdr = 0;
	memset(&rx->hdr, 0, sizeof(rx->hdr));
}

void embkv_rx_destroy(struct embkv_rx *rx)
{
	if (!rx)
		return;
	embkv_buf_destroy(&rx->buf);
	rx->have_hdr = 0;
}

int embkv_rx_header_done(struct embkv_rx *rx)
{
	int rc;

	if (rx->buf.len != EMBKV_WIRE_HDR_SIZE)
		return -EINVAL;
	rc = embkv_wire_hdr_decode(rx->buf.data, rx->buf.len, &rx->hdr);
	if (rc)
		return rc;
	if (rx->hdr.body_len > rx->max_body)
		return EMBKV_ELIMIT;
	rc = embkv_buf_reserve(&rx->buf, rx->hdr.body_len);
	if (rc)
		return rc;
	rx->have_hdr = 1;
	return 0;
}

size_t embkv_rx_missing(const struct embkv_rx *rx)
{
	if (!rx->have_hdr)
		return EMBKV_WIRE_HDR_SIZE - rx->buf.len;
	return EMBKV_WIRE_HDR_SIZE + (size_t)rx->hdr.body_len - rx->buf.len;
}

/* Blocking forms ------------------------------------------------------------ */

uint64_t embkv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * MS_PER_S + (uint64_t)ts.tv_nsec / NS_PER_MS;
}

int embkv_fd_wait(int fd, short events, uint64_t deadline_ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		uint64_t now = embkv_now_ms();
		int wait, rc;

		if (now >= deadline_ms)
			return EMBKV_ETIMEDOUT;
		wait = deadline_ms - now > INT_MAX ? INT_MAX
						   : (int)(deadline_ms - now);
		rc = poll(&pfd, 1, wait);
		if (rc > 0)
			return 0; /* ready, or an error the next op reports */
		if (rc == 0)
			continue; /* re-check the clock */
		if (errno != EINTR)
			return -errno;
	}
}

int embkv_conn_send(struct embkv_conn *c, const uint8_t *frame, size_t len,
		    uint64_t deadline_ms)
{
	size_t off = 0;
	int rc;

	for (;;) {
		rc = c->ops->send_some(c, frame, len, &off);
		if (rc != -EAGAIN)
			return rc;
		rc = embkv_fd_wait(c->ops->poll_fd(c), POLLOUT, deadline_ms);
		if (rc)
			return rc;
	}
}

int embkv_conn_recv(struct embkv_conn *c, struct embkv_rx *rx,
		    uint64_t deadline_ms)
{
	int rc;

	for (;;) {
		rc = c->ops->recv_some(c, rx);
		if (rc != -EAGAIN)
			return rc;
		rc = embkv_fd_wait(c->ops->poll_fd(c), POLLIN, deadline_ms);
		if (rc)
			return rc;
	}
}
