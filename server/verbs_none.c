/*
 * embkvd without the RDMA verbs transport (EMBKV_RDMA=OFF): the
 * server/verbs.h interface, refusing rdma:// listeners. No verbs
 * connection and no table region ever exists, so the connection entry
 * points are never reached.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include "server/verbs.h"

int embkvd_verbs_open(struct embkvd *s)
{
	(void)s;
	embkvd_log("built without RDMA (EMBKV_RDMA=OFF)");
	return -EOPNOTSUPP;
}

void embkvd_verbs_close(struct embkvd_verbs *v)
{
	(void)v;
}

void embkvd_verbs_unreg(void *reg)
{
	(void)reg;
}

int embkvd_verbs_attach(struct embkvd *s, struct embkvd_io *io, int epfd,
			struct epoll_event *ev)
{
	(void)s;
	(void)io;
	(void)epfd;
	(void)ev;
	return -EOPNOTSUPP;
}

void embkvd_verbs_cm_events(struct embkvd_io *io)
{
	(void)io;
}

void embkvd_verbs_timers(struct embkvd_io *io, uint64_t now_ns)
{
	(void)io;
	(void)now_ns;
}

void embkvd_vconn_event(struct embkvd_conn *c)
{
	(void)c;
}

void embkvd_vconn_flush(struct embkvd_conn *c)
{
	(void)c;
}

size_t embkvd_vconn_land_max(const struct embkvd_conn *c)
{
	(void)c;
	return 0;
}

size_t embkvd_vconn_copy_max(const struct embkvd_conn *c)
{
	(void)c;
	return 0;
}

void embkvd_vconn_settle(struct embkvd_conn *c)
{
	(void)c;
}

void embkvd_vconn_destroy(struct embkvd_conn *c)
{
	(void)c;
}

void embkvd_verbs_table_regions(struct embkvd_conn *c, uint64_t req_id,
				uint32_t table_id, uint64_t uid)
{
	(void)table_id;
	(void)uid;
	embkvd_conn_error(c, req_id, -EOPNOTSUPP, false,
			  "built without RDMA");
}

void embkvd_regions_hooks(struct embkvd_verbs *v,
			  struct embkv_catalog_hooks *hooks)
{
	(void)v;
	memset(hooks, 0, sizeof(*hooks));
}

uint64_t embkvd_regions_bytes(const struct embkv_catalog_entry *e)
{
	(void)e;
	return 0;
}
