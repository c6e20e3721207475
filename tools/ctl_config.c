/*
 * embkvctl config [--json]: each server's flags, limits and peers, as its
 * CONFIG reply says (embkv_server_config; net/PROTOCOL.md 5.24): what is
 * in force now (defaults applied, bound ports), never the token.
 *
 * Text: one block per server, a line per setting; --json: one document,
 * {"servers": [{"index", "address", "up", "config": {...}} or "error"]},
 * the config exactly as the server sent it. A server that does not answer
 * is a DOWN line (an "up": false entry) and the exit status is EXIT_DOWN,
 * after the others were printed.
 *
 * Why a file of its own: one file per object, as the other ctl_*.c.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include <embkv/embkv.h>
#include "tools/clientopts.h"
#include "tools/ctl.h"

int embkv_ctl_config_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	opterr = 0;
	optind = 0;
	while ((o = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		if (o == 'j')
			a->json = 1;
		else if (o == 'h')
			return HELP_SHOWN;
		else
			return embkv_ctl_usage_error("config: bad option %s",
						     argv[optind - 1]);
	}
	if (optind < argc)
		return embkv_ctl_usage_error("config: unexpected argument %s",
					     argv[optind]);
	return 0;
}

/* ---- text ---------------------------------------------------------------- */

static const char *jstr(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v ? v : "-";
}

static uint64_t jnum(const json_t *o, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(o, k));

	return v > 0 ? (uint64_t)v : 0;
}

/* Bytes, human; "none" when the field is null (no limit). */
static const char *jbytes(const json_t *o, const char *k, char *buf)
{
	if (!json_is_integer(json_object_get(o, k)))
		return "none";
	embkv_tool_human_bytes(buf, CELL_MAX, jnum(o, k));
	return buf;
}

static void line(const char *key, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void line(const char *key, const char *fmt, ...)
{
	va_list ap;

	printf("  %-18s", key);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void print_text(uint32_t srv, const char *addr, const json_t *c)
{
	const json_t *m = json_object_get(c, "memory"),
		     *l = json_object_get(c, "limits"),
		     *au = json_object_get(c, "auth"),
		     *cl = json_object_get(c, "cluster"), *x;
	char b1[CELL_MAX], b2[CELL_MAX], b3[CELL_MAX], b4[CELL_MAX];
	size_t i;

	printf("SERVER %u  %s  up\n", srv, addr);
	line("version", "%s (pid %" PRIu64 ", up %" PRIu64 " s)",
	     jstr(c, "version"), jnum(c, "pid"), jnum(c, "uptime_s"));
	json_array_foreach(json_object_get(c, "listen"), i, x)
		line(i ? "" : "listen", "%s", json_string_value(x));
	line("threads", "%" PRIu64 " owner, %" PRIu64 " I/O",
	     jnum(c, "threads"), jnum(c, "io_threads"));
	line("memory", "limit %s, used %s, reserved %s, free %s",
	     jbytes(m, "limit_bytes", b1), jbytes(m, "used_bytes", b2),
	     jbytes(m, "reserved_bytes", b3), jbytes(m, "free_bytes", b4));
	json_array_foreach(json_object_get(c, "tables"), i, x)
		line(i ? "" : "tables", "%s: %s (%" PRIu64 " of %" PRIu64
		     " partitions, capacity %" PRIu64 ", dim %" PRIu64 ")",
		     jstr(x, "name"), jbytes(x, "memory_bytes", b1),
		     jnum(x, "partitions_held"), jnum(x, "partitions"),
		     jnum(x, "capacity"), jnum(x, "dim"));
	if (!json_array_size(json_object_get(c, "tables")))
		line("tables", "none");
	line("max conns", "%" PRIu64 " (logging in at once: %" PRIu64 ")",
	     jnum(l, "max_conns"), jnum(l, "max_unauth_conns"));
	line("token", "%s%s%s",
	     json_is_true(json_object_get(au, "token_required")) ?
		     "required" : "none",
	     json_is_string(json_object_get(au, "token_file")) ?
		     ", file " : "",
	     json_is_string(json_object_get(au, "token_file")) ?
		     jstr(au, "token_file") : "");
	line("deadlines", "auth %" PRIu64 " ms, frame %" PRIu64 " ms",
	     jnum(l, "auth_timeout_ms"), jnum(l, "frame_timeout_ms"));
	line("inflight bytes", "%s", jbytes(l, "inflight_bytes", b1));
	line("rdma reply pool", "%s", jbytes(l, "rdma_reply_pool_bytes", b1));
	line("failed logins", "%" PRIu64 " in %" PRIu64 " ms: blocked %"
	     PRIu64 " ms", jnum(l, "failed_logins_max"),
	     jnum(l, "failed_logins_window_ms"),
	     jnum(l, "failed_logins_block_ms"));
	line("metrics", "%s", jstr(c, "metrics_listen"));
	line("log file", "%s", jstr(c, "log_file"));
	line("data dir", "%s%s", jstr(c, "data_dir"),
	     json_is_true(json_object_get(c, "no_restore")) ?
		     " (--no-restore)" : "");
	line("default table", "%s", jstr(c, "default_table"));
	if (json_is_object(cl))
		line("cluster", "etcd %s, name %s, member %" PRIu64
		     ", advertise %s, ttl %" PRIu64 " s, auto-recover %"
		     PRIu64 " s", jstr(cl, "etcd"), jstr(cl, "name"),
		     jnum(cl, "member_id"),
		     json_is_string(json_object_get(cl, "advertise")) ?
			     jstr(cl, "advertise") : "the first listener's",
		     jnum(cl, "member_ttl_s"), jnum(cl, "auto_recover_s"));
	else
		line("cluster", "none (no --etcd)");
	line("epoch", "%" PRIu64, jnum(c, "epoch"));
	json_array_foreach(json_object_get(c, "peers"), i, x)
		line(i ? "" : "peers", "%" PRIu64 " %s%s", jnum(x, "index"),
		     jstr(x, "address"),
		     json_is_true(json_object_get(x, "self")) ? " (self)" : "");
}

int embkv_ctl_config_run(struct embkv_client *c,
			 const struct embkv_ctl_args *a, int json)
{
	uint32_t nsrv = embkv_client_server_count(c), down = 0;
	int first = 1;

	if (json || a->json)
		printf("{\"servers\":[");
	for (uint32_t srv = 0; srv < nsrv; srv++) {
		const char *addr = embkv_client_server_addr(c, srv);
		char *text = NULL;
		json_t *doc = NULL;
		int rc = embkv_server_config(c, srv, &text);

		if (!rc) {
			doc = json_loads(text, 0, NULL);
			if (!json_is_object(doc))
				rc = EMBKV_EPROTO;
		}
		if (json || a->json) {
			printf("%s{\"index\":%u,\"address\":", first ? "" : ",",
			       srv);
			embkv_ctl_json_str(addr);
			if (rc) {
				printf(",\"up\":false,\"error\":");
				embkv_ctl_json_str(embkv_strerror(rc));
			} else {
				char *compact = json_dumps(doc, JSON_COMPACT |
							   JSON_SORT_KEYS);

				printf(",\"up\":true,\"config\":%s",
				       compact ? compact : "null");
				free(compact);
			}
			printf("}");
			first = 0;
		} else if (rc) {
			embkv_ctl_print_down(stdout, c, srv, rc);
		} else {
			print_text(srv, addr, doc);
		}
		down += rc != 0;
		json_decref(doc);
		free(text);
	}
	if (json || a->json)
		printf("]}\n");
	if (down) {
		fprintf(stderr, "%s: config: %u of %u servers did not answer\n",
			embkv_ctl_prog, down, nsrv);
		return down == nsrv ? EXIT_FAILED : EXIT_DOWN;
	}
	return 0;
}
