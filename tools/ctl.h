/*
 * What embkvctl's files share (private to tools/embkvctl*, tools/ctl_*.c):
 * exit codes, the parsed command arguments, argument helpers, aligned
 * text tables, JSON strings, the DOWN-server report, and the commands the
 * table in embkvctl.c runs. Tool code: prints to stdout and stderr.
 *
 *   embkvctl.c     main, global options, the command table, usage,
 *                  argument helpers (usage_error, failed, numbers)
 *   ctl_out.c      aligned text tables, JSON strings, DOWN servers
 *   ctl_stats.c    stats
 *   ctl_tables.c   tables, create-table, drop-table, map
 *   ctl_members.c  members, health, forget (etcd; see ctl_members.h)
 *   ctl_ckpt.c     checkpoint create|restore|list|verify|delete
 *   ctl_move.c     move, rebalance, drain, recover
 *   ctl_export.c   export, import (tools/EXPORT.md)
 *   ctl_config.c   config (each server's CONFIG)
 *
 * Every function here is for the main thread of the tool only.
 */
#ifndef EMBKV_TOOLS_CTL_H
#define EMBKV_TOOLS_CTL_H

#include <stdint.h>
#include <stdio.h>
#include <embkv/embkv.h>

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_DOWN 3      /* a server did not answer; the others reported */
#define CELL_MAX 96u

/* "embkvctl", the prefix of every message. */
extern const char *const embkv_ctl_prog;

/* Parsed command arguments (parsed before connecting, so that a usage
 * error never needs a server). */
struct embkv_ctl_args {
	int all;                      /* stats --all */
	int json;                     /* stats --json, tables --json */
	uint32_t watch_s;             /* stats --watch; 0: once */
	int list;                     /* map --partitions */
	const char *name;             /* drop-table, map, export, import */
	const char *file;             /* export, import */
	int fp16;                     /* export --fp16 */
	int progress;                 /* export, import, checkpoint --progress */
	struct embkv_table_attr attr; /* create-table */
	/* checkpoint SUB [ID] [--name N] [--incremental] [--table T]...
	 * [--force] [--progress] */
	const char *sub;
	const char *ckpt;             /* ID, name or "newest" */
	const char *ckpt_name;
	int incremental, force;         /* progress: above */
	/* move TABLE PART SERVER, drain SERVER, rebalance, recover */
	uint32_t part;
	const char *server;
	uint64_t rate;                /* --rate, bytes/s; 0: no limit */
	const char *tables[64];
	uint32_t ntables;
	/* set-table: the fields given (bit i: the i-th of --lr, --beta1,
	 * --beta2, --eps, --initial-accum, --l1, --l2, --ftrl-beta) */
	struct embkv_opt_attr set_opt;
	uint32_t set_mask;
};

#define HELP_SHOWN (-1)

/* Arguments and errors (embkvctl.c) ---------------------------------------- */

/* Prints "embkvctl: " fmt (with arg) " (see embkvctl --help)" to stderr;
 * returns EXIT_USAGE. */
int embkv_ctl_usage_error(const char *fmt, const char *arg);
/* 1 when s is -h or --help. */
int embkv_ctl_is_help(const char *s);
/* Prints "embkvctl: what: <status>" to stderr; returns EXIT_FAILED. */
int embkv_ctl_failed(const char *what, int status);
/* Whole numbers (in the type's range) and finite floats: 0 or -EINVAL. */
int embkv_ctl_parse_u64(const char *s, uint64_t *out);
int embkv_ctl_parse_u32(const char *s, uint32_t *out);
int embkv_ctl_parse_float(const char *s, float *out);

/* Output (ctl_out.c) ------------------------------------------------------ */

/* s as a JSON string, to stdout. */
void embkv_ctl_json_str(const char *s);

/* An aligned text table: a header row, then rows of CELL_MAX-byte cells. */
struct embkv_ctl_tt {
	uint32_t ncols, nrows, cap;
	uint32_t left;              /* columns [0, left) are left-aligned */
	char (*cells)[CELL_MAX];    /* nrows x ncols */
};

/* header: ncols strings, copied. 0 or -ENOMEM; embkv_ctl_tt_free() is safe
 * either way. */
int embkv_ctl_tt_init(struct embkv_ctl_tt *t, uint32_t ncols, uint32_t left,
		      const char *const *header);
/* The next row's cells, each "-" for the caller to fill; valid until the
 * next call (NULL: out of memory). */
char (*embkv_ctl_tt_row(struct embkv_ctl_tt *t))[CELL_MAX];
/* Prints every row, columns padded to their widest cell, to stdout. */
void embkv_ctl_tt_print(struct embkv_ctl_tt *t);
void embkv_ctl_tt_free(struct embkv_ctl_tt *t);

/* Servers that did not answer (ctl_out.c). */
int embkv_ctl_server_error(struct embkv_client *c, uint32_t srv, int answered,
			   int call_rc);
void embkv_ctl_print_down(FILE *f, struct embkv_client *c, uint32_t srv,
			  int err);
uint32_t embkv_ctl_down_count(struct embkv_client *c);
void embkv_ctl_servers_json(struct embkv_client *c, const int *err);

/* Commands (ctl_stats.c, ctl_tables.c) ------------------------------------ */

/*
 * parse: argv[0] is the command's name; fills a before any server is
 * reached. 0, EXIT_USAGE (message printed) or HELP_SHOWN.
 * run: prints the result (json: one JSON document); the exit status.
 */
int embkv_ctl_move_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_move_run(struct embkv_client *c,
		       const struct embkv_ctl_args *a, int json);
int embkv_ctl_ckpt_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_ckpt_run(struct embkv_client *c,
		       const struct embkv_ctl_args *a, int json);
int embkv_ctl_stats_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_stats_run(struct embkv_client *c,
			const struct embkv_ctl_args *a, int json);
int embkv_ctl_tables_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_tables_run(struct embkv_client *c,
			 const struct embkv_ctl_args *a, int json);
int embkv_ctl_create_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_create_run(struct embkv_client *c,
			 const struct embkv_ctl_args *a, int json);
int embkv_ctl_drop_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_drop_run(struct embkv_client *c,
		       const struct embkv_ctl_args *a, int json);
int embkv_ctl_map_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_map_run(struct embkv_client *c,
		      const struct embkv_ctl_args *a, int json);
int embkv_ctl_settable_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_settable_run(struct embkv_client *c,
			   const struct embkv_ctl_args *a, int json);
int embkv_ctl_export_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_export_run(struct embkv_client *c,
			 const struct embkv_ctl_args *a, int json);
int embkv_ctl_import_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_import_run(struct embkv_client *c,
			 const struct embkv_ctl_args *a, int json);
int embkv_ctl_config_parse(int argc, char **argv, struct embkv_ctl_args *a);
int embkv_ctl_config_run(struct embkv_client *c,
			 const struct embkv_ctl_args *a, int json);

#endif
