/*
 * embkvctl checkpoint create|restore|list|verify|delete (tools/ctl.h).
 *
 * What: argument parsing and output around libembkv's checkpoint calls
 * (include/embkv/embkv.h), which coordinate the servers.
 * Why a thin layer: a trainer calls the same functions from its own
 * process; the tool only adds progress lines, tables and JSON.
 * Invariant: every failure prints the library's message (server, file,
 * reason) and exits 1; progress goes to stderr, results to stdout.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "tools/ctl.h"
#include "tools/clientopts.h"

static const char *const subs[] = { "create", "restore", "list", "verify",
				    "delete" };

int embkv_ctl_ckpt_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	int i = 1;

	if (argc < 2)
		return embkv_ctl_usage_error("checkpoint needs %s",
					     "create, restore, list, verify "
					     "or delete");
	if (embkv_ctl_is_help(argv[1]))
		return HELP_SHOWN;
	for (size_t k = 0; k < sizeof(subs) / sizeof(subs[0]); k++)
		if (!strcmp(argv[1], subs[k]))
			a->sub = subs[k];
	if (!a->sub)
		return embkv_ctl_usage_error("unknown checkpoint command %s",
					     argv[1]);
	a->progress = isatty(2);
	for (i = 2; i < argc; i++) {
		const char *o = argv[i];
		bool more = i + 1 < argc;

		if (embkv_ctl_is_help(o))
			return HELP_SHOWN;
		if (!strcmp(o, "--json")) {
			a->json = 1;
		} else if (!strcmp(o, "--progress")) {
			a->progress = 1;
		} else if (!strcmp(o, "--incremental") &&
			   !strcmp(a->sub, "create")) {
			a->incremental = 1;
		} else if (!strcmp(o, "--force") && !strcmp(a->sub, "delete")) {
			a->force = 1;
		} else if (!strcmp(o, "--name") && !strcmp(a->sub, "create")) {
			if (!more)
				return embkv_ctl_usage_error("%s needs a value",
							     o);
			a->ckpt_name = argv[++i];
		} else if (!strcmp(o, "--table") &&
			   (!strcmp(a->sub, "create") ||
			    !strcmp(a->sub, "restore"))) {
			if (!more)
				return embkv_ctl_usage_error("%s needs a value",
							     o);
			if (a->ntables == sizeof(a->tables) /
					  sizeof(a->tables[0]))
				return embkv_ctl_usage_error("too many %s",
							     "--table");
			a->tables[a->ntables++] = argv[++i];
		} else if (o[0] == '-') {
			return embkv_ctl_usage_error("unknown checkpoint "
						     "option %s", o);
		} else if (!a->ckpt && (!strcmp(a->sub, "restore") ||
					!strcmp(a->sub, "verify") ||
					!strcmp(a->sub, "delete"))) {
			a->ckpt = o;
		} else {
			return embkv_ctl_usage_error("unexpected argument %s",
						     o);
		}
	}
	if (!strcmp(a->sub, "delete") && !a->ckpt)
		return embkv_ctl_usage_error("checkpoint delete needs %s",
					     "an ID or a name");
	return 0;
}

struct prog {
	uint64_t last_ms;
	int shown;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* At most two lines a second, and the last one. */
static void on_progress(void *ctx, const struct embkv_ckpt_progress *p)
{
	struct prog *pr = ctx;
	uint64_t now = mono_ms();
	double s = (double)p->elapsed_ms / 1000.0;
	double mbs = s > 0 ? (double)p->bytes / 1e6 / s : 0;
	double left = p->parts_done && p->parts_done < p->parts_total
		? s * (double)(p->parts_total - p->parts_done) / p->parts_done
		: 0;

	if (now - pr->last_ms < 500 && p->parts_done < p->parts_total)
		return;
	pr->last_ms = now;
	pr->shown = 1;
	fprintf(stderr, "%s: %s: %u/%u partitions, %" PRIu64 " rows, %.1f MB, "
		"%.1f MB/s, %.0f s left\n", embkv_ctl_prog, p->phase,
		p->parts_done, p->parts_total, p->rows, (double)p->bytes / 1e6,
		mbs, left);
}

static int fail_res(const char *what, int rc,
		    const struct embkv_ckpt_result *r)
{
	fprintf(stderr, "%s: checkpoint %s failed: %s\n", embkv_ctl_prog, what,
		r->error[0] ? r->error : embkv_strerror(rc));
	return EXIT_FAILED;
}

static void age(uint64_t id, char *buf, size_t n)
{
	uint64_t now = (uint64_t)time(NULL) * 1000u;
	uint64_t s = now > id ? (now - id) / 1000u : 0;

	if (s < 120)
		snprintf(buf, n, "%" PRIu64 "s", s);
	else if (s < 7200)
		snprintf(buf, n, "%" PRIu64 "m", s / 60);
	else if (s < 172800)
		snprintf(buf, n, "%" PRIu64 "h", s / 3600);
	else
		snprintf(buf, n, "%" PRIu64 "d", s / 86400);
}

static uint64_t jnum(const json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static int run_list(struct embkv_client *c, int json)
{
	struct embkv_ckpt_result r;
	char *text = NULL;
	json_t *l, *x;
	size_t i;
	int rc = embkv_checkpoint_list(c, &text, &r);
	struct embkv_ctl_tt tt;
	static const char *const hdr[] = { "ID", "NAME", "KIND", "BASE", "AGE",
					   "TABLES", "ROWS", "SIZE", "SERVERS" };

	if (rc)
		return fail_res("list", rc, &r);
	if (json) {
		printf("%s\n", text);
		free(text);
		return 0;
	}
	l = json_loads(text, 0, NULL);
	free(text);
	if (!l || embkv_ctl_tt_init(&tt, 9, 3, hdr)) {
		json_decref(l);
		return embkv_ctl_failed("checkpoint list", -ENOMEM);
	}
	json_array_foreach(json_object_get(l, "checkpoints"), i, x) {
		char (*row)[CELL_MAX] = embkv_ctl_tt_row(&tt);
		const char *nm = json_string_value(json_object_get(x, "name"));

		if (!row)
			break;
		snprintf(row[0], CELL_MAX, "%" PRIu64, jnum(x, "id"));
		snprintf(row[1], CELL_MAX, "%s", nm && *nm ? nm : "-");
		snprintf(row[2], CELL_MAX, "%s", json_string_value(
			json_object_get(x, "kind")) ?: "?");
		if (jnum(x, "base"))
			snprintf(row[3], CELL_MAX, "%" PRIu64, jnum(x, "base"));
		age(jnum(x, "id"), row[4], CELL_MAX);
		snprintf(row[5], CELL_MAX, "%zu",
			 json_array_size(json_object_get(x, "tables")));
		snprintf(row[6], CELL_MAX, "%" PRIu64, jnum(x, "rows"));
		embkv_tool_human_bytes(row[7], CELL_MAX, jnum(x, "bytes"));
		snprintf(row[8], CELL_MAX, "%" PRIu64 "/%" PRIu64,
			 jnum(x, "servers"), jnum(l, "servers"));
	}
	embkv_ctl_tt_print(&tt);
	embkv_ctl_tt_free(&tt);
	if (json_array_size(json_object_get(l, "incomplete")))
		printf("%zu incomplete (interrupted; never loaded): delete "
		       "them with checkpoint delete ID\n",
		       json_array_size(json_object_get(l, "incomplete")));
	json_decref(l);
	return 0;
}

int embkv_ctl_ckpt_run(struct embkv_client *c, const struct embkv_ctl_args *a,
		       int json)
{
	struct embkv_ckpt_attr at;
	struct embkv_ckpt_result r;
	struct prog pr = { 0 };
	char size[32];
	int rc;

	embkv_ckpt_attr_init(&at);
	at.name = a->ckpt_name;
	at.incremental = a->incremental;
	at.tables = a->tables;
	at.ntables = a->ntables;
	if (a->progress) {
		at.progress = on_progress;
		at.progress_ctx = &pr;
	}
	if (!strcmp(a->sub, "list"))
		return run_list(c, json);
	if (!strcmp(a->sub, "create") || !strcmp(a->sub, "restore")) {
		bool create = !strcmp(a->sub, "create");

		rc = create ? embkv_checkpoint_create(c, &at, &r)
			    : embkv_checkpoint_restore(c, a->ckpt, &at, &r);
		if (rc)
			return fail_res(a->sub, rc, &r);
		embkv_tool_human_bytes(size, sizeof(size), r.bytes);
		if (json)
			printf("{\"id\": %" PRIu64 ", \"base\": %" PRIu64
			       ", \"rows\": %" PRIu64 ", \"bytes\": %" PRIu64
			       ", \"files\": %" PRIu64 ", \"ms\": %" PRIu64
			       "}\n", r.id, r.base, r.rows, r.bytes, r.files,
			       r.ms);
		else
			printf("checkpoint %" PRIu64 " %s: %" PRIu64 " rows, "
			       "%" PRIu64 " partitions, %s in %.1f s "
			       "(%.1f MB/s)%s\n", r.id,
			       create ? (r.base ? "written (incremental)"
						: "written")
				      : "restored",
			       r.rows, r.files, size, (double)r.ms / 1000.0,
			       r.ms ? (double)r.bytes / 1e3 / (double)r.ms : 0,
			       "");
		return 0;
	}
	if (!strcmp(a->sub, "verify")) {
		char *text = NULL;

		rc = embkv_checkpoint_verify(c, a->ckpt, &text, &r);
		if (text && (json || rc))
			printf("%s\n", text);
		free(text);
		if (rc)
			return fail_res("verify", rc, &r);
		if (!json) {
			embkv_tool_human_bytes(size, sizeof(size), r.bytes);
			printf("checkpoint %" PRIu64 ": %" PRIu64 " files, %"
			       PRIu64 " rows, %s: every checksum verified\n",
			       r.id, r.files, r.rows, size);
		}
		return 0;
	}
	rc = embkv_checkpoint_delete(c, a->ckpt, a->force, &r);
	if (rc)
		return fail_res("delete", rc, &r);
	if (json)
		printf("{\"deleted\": %" PRIu64 "}\n", r.id);
	else
		printf("checkpoint %" PRIu64 " deleted\n", r.id);
	return 0;
}
