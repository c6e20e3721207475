/*
 * What embkvctl and embkv-demo share: the server list and token options
 * and the client they make. Tool code: prints its own errors to stderr.
 */
#ifndef EMBKV_TOOLS_CLIENTOPTS_H
#define EMBKV_TOOLS_CLIENTOPTS_H

#include <stddef.h>
#include <stdint.h>
#include <embkv/embkv.h>

#define EMBKV_TOOL_DEFAULT_SERVER "tcp://127.0.0.1:7070"
#define EMBKV_TOOL_SERVERS_ENV "EMBKV_SERVERS"
#define EMBKV_TOOL_MAX_SERVERS 4096u
#define EMBKV_TOOL_TOKEN_MAX 4096u

struct embkv_tool_conn {
	const char *servers_arg;  /* --servers, else $EMBKV_SERVERS, else
				     EMBKV_TOOL_DEFAULT_SERVER */
	const char *token_file;   /* --token-file, may be NULL */
	uint32_t timeout_ms;      /* 0: the library's defaults */
	uint32_t flags;           /* embkv_client_attr.flags */
};

/* Parses a whole decimal (or 0x hex) number in [min, max]: 0 or -EINVAL.
 * A leading '-' is refused rather than wrapped. */
int embkv_tool_parse_u64(const char *s, uint64_t min, uint64_t max,
			 uint64_t *out);

/* v bytes for people: "512 B", "1.5 KiB", ... up to TiB, into buf. */
void embkv_tool_human_bytes(char *buf, size_t len, uint64_t v);

/* The server list conn will use (--servers, else $EMBKV_SERVERS, else
 * the default). */
const char *embkv_tool_servers(const struct embkv_tool_conn *conn);

/* Checks a comma-separated server list before any connection: every
 * entry has a scheme ("PROG: server 127.0.0.1:7070 has no scheme: use
 * tcp://127.0.0.1:7070"), none is given twice ("PROG: server X is given
 * twice"), at most EMBKV_TOOL_MAX_SERVERS of them. 0, or -EINVAL with the
 * message printed to stderr. */
int embkv_tool_servers_check(const char *prog, const char *list);

/* Connects as conn says. On failure prints "PROG: ..." and returns the
 * status (never 0); on success the caller owns *out. */
int embkv_tool_connect(const char *prog, const struct embkv_tool_conn *conn,
		       struct embkv_client **out);

#endif
