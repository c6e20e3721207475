/*
 * TCP transport, client side: "tcp://host:port".
 *
 * Sockets are nonblocking from creation (connect waits with poll() and a
 * deadline), TCP_NODELAY (frames are latency-bound RPCs, and every frame
 * is written with one send() when the socket has room), close-on-exec,
 * and written with MSG_NOSIGNAL so a dead peer gives EMBKV_EDISCONNECTED,
 * never SIGPIPE.
 *
 * Receiving goes through a small read-ahead buffer: a reply of a few
 * hundred bytes costs one recv() instead of two (header, then body), and
 * replies pipelined on one connection are split out of it. A frame part of
 * at least READ_AHEAD bytes is read straight into the frame buffer, so
 * large pull replies are not copied twice. Invariant: read-ahead bytes
 * always belong to frames after the one being assembled in rx, or to it;
 * the header is checked (embkv_rx_header_done) before its body is
 * reserved or read.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/transport.h"

#define READ_AHEAD (64u << 10)
#define PORT_STR_MAX 8u

struct tcp_conn {
	struct embkv_conn base;
	int fd;
	size_t ra_off, ra_len; /* unread read-ahead bytes: [ra_off, ra_len) */
	uint8_t ra[READ_AHEAD];
};

static struct tcp_conn *tcp_of(struct embkv_conn *c)
{
	return (struct tcp_conn *)c;
}

static int gai_status(int gai)
{
	switch (gai) {
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_NONAME:
	case EAI_FAIL:
	case EAI_NODATA:
		return -EHOSTUNREACH;
	default:
		return -EINVAL;
	}
}

/* Nonblocking connect of one address before deadline: the fd or < 0. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline)
{
	int fd, rc, err = 0, one = 1;
	socklen_t elen = sizeof(err);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0)
		return -errno;
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	if (rc < 0 && errno != EINPROGRESS && errno != EINTR) {
		rc = -errno;
		goto close_fd;
	}
	if (rc < 0) {
		rc = embkv_fd_wait(fd, POLLOUT, deadline);
		if (rc)
			goto close_fd;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
			rc = -errno;
			goto close_fd;
		}
		if (err) {
			rc = -err;
			goto close_fd;
		}
	}
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
		rc = -errno;
		goto close_fd;
	}
	return fd;

close_fd:
	close(fd);
	return rc;
}

static int tcp_connect(const struct embkv_endpoint *ep, uint32_t timeout_ms,
		       struct embkv_conn **out)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[PORT_STR_MAX];
	uint64_t deadline = embkv_now_ms() + timeout_ms;
	struct tcp_conn *tc;
	int rc, fd = -EHOSTUNREACH;

	if (!ep || !out)
		return -EINVAL;
	tc = malloc(sizeof(*tc));
	if (!tc)
		return -ENOMEM;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", (unsigned)ep->port);
	rc = getaddrinfo(ep->host, port, &hints, &res);
	if (rc) {
		rc = gai_status(rc);
		goto free_conn;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai, deadline);
		if (fd >= 0 || fd == EMBKV_ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		rc = fd;
		goto free_conn;
	}
	tc->base.ops = &embkv_tcp_ops;
	tc->fd = fd;
	tc->ra_off = tc->ra_len = 0;
	*out = &tc->base;
	return 0;

free_conn:
	free(tc);
	return rc;
}

static void tcp_close(struct embkv_conn *c)
{
	struct tcp_conn *tc;

	if (!c)
		return;
	tc = tcp_of(c);
	close(tc->fd);
	free(tc);
}

static int io_error(int err)
{
	switch (err) {
	case EPIPE:
	case ECONNRESET:
	case ECONNABORTED:
	case ENOTCONN:
	case ESHUTDOWN:
		return EMBKV_EDISCONNECTED;
	case ETIMEDOUT:
		return EMBKV_ETIMEDOUT;
	default:
		return -err;
	}
}

static int tcp_send_some(struct embkv_conn *c, const uint8_t *frame,
			 size_t len, size_t *off)
{
	struct tcp_conn *tc = tcp_of(c);

	while (*off < len) {
		ssize_t n = send(tc->fd, frame + *off, len - *off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			*off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -EAGAIN;
		return n < 0 ? io_error(errno) : EMBKV_EDISCONNECTED;
	}
	return 0;
}

/* Appends k bytes to rx->buf (room was reserved). */
static void rx_append(struct embkv_rx *rx, const uint8_t *src, size_t k)
{
	memcpy(rx->buf.data + rx->buf.len, src, k);
	rx->buf.len += k;
}

static int tcp_recv_some(struct embkv_conn *c, struct embkv_rx *rx)
{
	struct tcp_conn *tc = tcp_of(c);

	for (;;) {
		size_t missing, k;
		ssize_t n;
		int rc;

		if (!rx->have_hdr && rx->buf.len == EMBKV_WIRE_HDR_SIZE) {
			rc = embkv_rx_header_done(rx);
			if (rc)
				return rc;
		}
		missing = embkv_rx_missing(rx);
		if (rx->have_hdr && missing == 0)
			return 0;
		rc = embkv_buf_reserve(&rx->buf, missing);
		if (rc)
			return rc;
		if (tc->ra_off < tc->ra_len) {
			k = tc->ra_len - tc->ra_off;
			k = k < missing ? k : missing;
			rx_append(rx, tc->ra + tc->ra_off, k);
			tc->ra_off += k;
			continue;
		}
		if (missing >= READ_AHEAD) {
			n = recv(tc->fd, rx->buf.data + rx->buf.len, missing,
				 MSG_DONTWAIT);
			if (n > 0) {
				rx->buf.len += (size_t)n;
				continue;
			}
		} else {
			n = recv(tc->fd, tc->ra, READ_AHEAD, MSG_DONTWAIT);
			if (n > 0) {
				tc->ra_off = 0;
				tc->ra_len = (size_t)n;
				continue;
			}
		}
		if (n == 0)
			return EMBKV_EDISCONNECTED;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		return io_error(errno);
	}
}

static int tcp_poll_fd(const struct embkv_conn *c)
{
	return ((const struct tcp_conn *)c)->fd;
}

const struct embkv_transport_ops embkv_tcp_ops = {
	.scheme = "tcp",
	.connect = tcp_connect,
	.close = tcp_close,
	.send_some = tcp_send_some,
	.recv_some = tcp_recv_some,
	.poll_fd = tcp_poll_fd,
	.idle_check = NULL,
	.limits = NULL,
	.read_buf = NULL,
	.post_reads = NULL,
	.poll_reads = NULL,
};
