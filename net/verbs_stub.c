/*
 * The "rdma" transport of a build without RDMA (EMBKV_RDMA=OFF): the
 * scheme parses, so that an address is never mistaken for a typo, and
 * connecting says -EPROTONOSUPPORT. CMake compiles this file instead of
 * net/verbs.c.
 */
#include <errno.h>
#include <stddef.h>

#include "net/transport.h"

static int stub_connect(const struct embkv_endpoint *ep, uint32_t timeout_ms,
			struct embkv_conn **out)
{
	(void)ep;
	(void)timeout_ms;
	(void)out;
	return -EPROTONOSUPPORT;
}

static void stub_close(struct embkv_conn *c)
{
	(void)c;
}

static int stub_send_some(struct embkv_conn *c, const uint8_t *frame,
			  size_t len, size_t *off)
{
	(void)c;
	(void)frame;
	(void)len;
	(void)off;
	return -EPROTONOSUPPORT;
}

static int stub_recv_some(struct embkv_conn *c, struct embkv_rx *rx)
{
	(void)c;
	(void)rx;
	return -EPROTONOSUPPORT;
}

static int stub_poll_fd(const struct embkv_conn *c)
{
	(void)c;
	return -1;
}

const struct embkv_transport_ops embkv_verbs_ops = {
	.scheme = "rdma",
	.connect = stub_connect,
	.close = stub_close,
	.send_some = stub_send_some,
	.recv_some = stub_recv_some,
	.poll_fd = stub_poll_fd,
};
