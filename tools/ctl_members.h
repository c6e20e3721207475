/*
 * embkvctl's cluster commands (tools/ctl_members.c): members, health and
 * forget, which read the membership embkvd keeps in etcd (--etcd) instead
 * of talking to --servers. Tool code: prints to stdout and stderr.
 */
#ifndef EMBKV_TOOLS_CTL_MEMBERS_H
#define EMBKV_TOOLS_CTL_MEMBERS_H

#include "tools/clientopts.h"

#define EMBKV_CTL_ETCD_ENV "EMBKV_ETCD"
#define EMBKV_CTL_NOT_MINE (-1)

struct embkv_ctl_etcd {
	const char *etcd;         /* --etcd, else $EMBKV_ETCD */
	const char *cluster;      /* --cluster, else "embkv" */
};

/* The usage lines of these commands and of --etcd and --cluster. */
extern const char embkv_ctl_members_usage_opts[];
extern const char embkv_ctl_members_usage_cmds[];

/*
 * Runs argv[0] when it is one of these commands: its exit status (0 all
 * well, 1 failed or unhealthy, 2 usage), or EMBKV_CTL_NOT_MINE for any
 * other command. conn: the token and timeout for reaching members.
 */
int embkv_ctl_members_run(const char *prog, const struct embkv_ctl_etcd *o,
			  const struct embkv_tool_conn *conn, int json,
			  int argc, char **argv);

#endif
