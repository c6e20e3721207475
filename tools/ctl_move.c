/*
 * embkvctl move, rebalance, drain and recover (tools/ctl.h).
 *
 * What: arguments, progress and results around libembkv's partition moves
 * (include/embkv/embkv.h, "Moving partitions"), which need a cluster
 * (embkvd --etcd).
 * Why a thin layer: the library does the moving; a trainer or an
 * operator's script calls the same functions.
 * Invariant: progress to stderr, the result to stdout, a failure exits 1
 * with the library's message (which server, which step).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "tools/ctl.h"

static int need(const char *o, bool more)
{
	return more ? 0 : embkv_ctl_usage_error("%s needs a value", o);
}

int embkv_ctl_move_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	const char *cmd = argv[0];
	uint32_t npos = 0;
	const char *pos[3] = { NULL, NULL, NULL };

	a->sub = cmd;
	a->progress = isatty(2);
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		bool more = i + 1 < argc;

		if (embkv_ctl_is_help(o))
			return HELP_SHOWN;
		if (!strcmp(o, "--progress")) {
			a->progress = 1;
		} else if (!strcmp(o, "--json")) {
			a->json = 1;
		} else if (!strcmp(o, "--rate") && strcmp(cmd, "recover")) {
			float mbs;

			if (need(o, more))
				return EXIT_USAGE;
			if (embkv_ctl_parse_float(argv[++i], &mbs) || mbs <= 0)
				return embkv_ctl_usage_error("--rate %s: "
					"expected MB/s above 0", argv[i]);
			a->rate = (uint64_t)(mbs * 1e6);
		} else if (!strcmp(o, "--table") &&
			   (!strcmp(cmd, "rebalance") ||
			    !strcmp(cmd, "drain"))) {
			if (need(o, more))
				return EXIT_USAGE;
			if (a->ntables == sizeof(a->tables) /
					  sizeof(a->tables[0]))
				return embkv_ctl_usage_error("too many %s",
							     "--table");
			a->tables[a->ntables++] = argv[++i];
		} else if (o[0] == '-') {
			return embkv_ctl_usage_error("unknown option %s", o);
		} else if (npos < 3) {
			pos[npos++] = o;
		} else {
			return embkv_ctl_usage_error("unexpected argument %s",
						     o);
		}
	}
	if (!strcmp(cmd, "move")) {
		if (npos != 3)
			return embkv_ctl_usage_error("%s", "move needs TABLE "
						     "PARTITION SERVER");
		a->name = pos[0];
		if (embkv_ctl_parse_u32(pos[1], &a->part))
			return embkv_ctl_usage_error("bad partition %s",
						     pos[1]);
		a->server = pos[2];
	} else if (!strcmp(cmd, "drain")) {
		if (npos != 1)
			return embkv_ctl_usage_error("%s", "drain needs SERVER");
		a->server = pos[0];
	} else if (npos) {
		return embkv_ctl_usage_error("unexpected argument %s", pos[0]);
	}
	return 0;
}

/* SERVER: the client's index, or an address it knows. */
static int server_index(struct embkv_client *c, const char *s, uint32_t *out)
{
	uint32_t n = embkv_client_server_count(c);

	if (!embkv_ctl_parse_u32(s, out) && *out < n)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(embkv_client_server_addr(c, i), s)) {
			*out = i;
			return 0;
		}
	fprintf(stderr, "%s: no server %s: give an index below %u or one of",
		embkv_ctl_prog, s, n);
	for (uint32_t i = 0; i < n; i++)
		fprintf(stderr, " %s", embkv_client_server_addr(c, i));
	fprintf(stderr, "\n");
	return -EINVAL;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_progress(void *ctx, const struct embkv_move_progress *p)
{
	uint64_t *last = ctx, now = mono_ms();
	double s = (double)p->elapsed_ms / 1000.0;

	if (now - *last < 500 && strcmp(p->phase, "done"))
		return;
	*last = now;
	fprintf(stderr, "%s: table %s partition %u: %s, %.1f MB, %.1f MB/s\n",
		embkv_ctl_prog, p->table, p->part, p->phase,
		(double)p->bytes / 1e6,
		s > 0 ? (double)p->bytes / 1e6 / s : 0.0);
}

int embkv_ctl_move_run(struct embkv_client *c, const struct embkv_ctl_args *a,
		       int json)
{
	struct embkv_move_attr at;
	struct embkv_ckpt_result r;
	uint64_t last = 0;
	uint32_t srv = 0;
	int rc;

	embkv_move_attr_init(&at);
	at.rate_bytes_per_s = a->rate;
	at.tables = a->tables;
	at.ntables = a->ntables;
	if (a->progress) {
		at.progress = on_progress;
		at.progress_ctx = &last;
	}
	if (a->server && server_index(c, a->server, &srv))
		return EXIT_USAGE;
	if (!strcmp(a->sub, "move"))
		rc = embkv_partition_move(c, a->name, a->part, srv, &at, &r);
	else if (!strcmp(a->sub, "drain"))
		rc = embkv_drain(c, srv, &at, &r);
	else if (!strcmp(a->sub, "rebalance"))
		rc = embkv_rebalance(c, &at, &r);
	else
		rc = embkv_recover(c, &r);
	if (rc) {
		fprintf(stderr, "%s: %s failed: %s\n", embkv_ctl_prog, a->sub,
			r.error[0] ? r.error : embkv_strerror(rc));
		return EXIT_FAILED;
	}
	if (json)
		printf("{\"partitions\": %" PRIu64 ", \"bytes\": %" PRIu64
		       ", \"ms\": %" PRIu64 "}\n", r.files, r.bytes, r.ms);
	else if (!strcmp(a->sub, "recover"))
		printf("%" PRIu64 " partitions of members that are down given "
		       "to live ones (%" PRIu64 " tables); they load from the "
		       "newest checkpoint\n", r.files, r.rows);
	else
		printf("%s: %" PRIu64 " partitions moved, %.1f MB relayed in "
		       "%.1f s\n", a->sub, r.files, (double)r.bytes / 1e6,
		       (double)r.ms / 1000.0);
	return 0;
}
