/*
 * embkvd without the RDMA verbs transport (EMBKV_RDMA=OFF): the
 * server/verbs.h interface, refusing rdma:// listeners. No verbs
 * connection and no table region ever exists, so the connection entry
 * points are never reached.
 */
#include <errno.h>
#include <stddef.h>
#include "server/verbs.h"

int embkv_verbs_open(struct embkv_server *s)
{
	(void)s;
	embkv_log("built without RDMA (EMBKV_RDMA=OFF)");
	return -EOPNOTSUPP;
}

void embkv_verbs_close(struct embkv_verbs *v)
{
	(void)v;
}

int embkv_verbs_attach(struct embkv_server *s, struct embkv_io *io, int epfd,
		       struct epoll_event *ev)
{
	(void)s;
	(void)io;
	(void)epfd;
	(void)ev;
	return -EOPNOTSUPP;
}

void embkv_verbs_cm_events(struct embkv_io *io)
{
	(void)io;
}

void embkv_verbs_timers(struct embkv_io *io, uint64_t now_ns)
{
	(void)io;
	(void)now_ns;
}

void embkv_vconn_event(struct embkv_conn *c)
{
	(void)c;
}

void embkv_vconn_flush(struct embkv_conn *c)
{
	(void)c;
}

void embkv_vconn_settle(struct embkv_conn *c)
{
	(void)c;
}

void embkv_vconn_destroy(struct embkv_conn *c)
{
	(void)c;
}

void embkv_verbs_table_regions(struct embkv_conn *c, uint64_t req_id,
			       uint32_t table_id, uint64_t uid)
{
	(void)table_id;
	(void)uid;
	embkv_conn_error(c, req_id, -EOPNOTSUPP, false,
			 "built without RDMA");
}

int embkv_regions_register(struct embkv_verbs *v, const struct embkv_table *t,
			   struct embkv_regions **out)
{
	(void)v;
	(void)t;
	*out = NULL;
	return 0;
}

void embkv_regions_free(struct embkv_regions *r)
{
	(void)r;
}

uint64_t embkv_regions_bytes(const struct embkv_regions *r)
{
	(void)r;
	return 0;
}
