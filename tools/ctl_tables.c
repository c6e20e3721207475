/*
 * embkvctl tables | create-table | drop-table | map: the tables of a
 * cluster. tables lists them with their attributes and marks a table the
 * servers do not all have alike INCONSISTENT; create-table creates on
 * every server or on none; drop-table names the servers it did not reach;
 * map prints a table's shard map.
 *
 * Why a file of its own: one file per object, as iproute2's rdma tool
 * does; the table commands share the attribute JSON and the where-is-it
 * words, and nothing with stats.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <embkv/embkv.h>
#include "tools/ctl.h"

#define LIST_MAX 65536u

/* tables ---------------------------------------------------------------------- */

static void attr_json_fields(const struct embkv_table_attr *a)
{
	printf("\"name\":");
	embkv_ctl_json_str(a->name);
	printf(",\"dim\":%u,\"dtype\":\"%s\",\"rounding\":\"%s\","
	       "\"state_dtype\":\"%s\",\"partitions\":%u,"
	       "\"capacity\":%" PRIu64 ",\"optimizer\":\"%s\",\"lr\":%g,"
	       "\"beta1\":%g,\"beta2\":%g,\"eps\":%g,\"initial_accum\":%g,"
	       "\"l1\":%g,\"l2\":%g,\"ftrl_beta\":%g,\"init\":\"%s\","
	       "\"init_a\":%g,\"init_b\":%g,\"init_seed\":%" PRIu64 ","
	       "\"admit_after\":%u,\"lfu_decay_period\":%u,"
	       "\"hash_seed\":%" PRIu64 ",\"index_load\":%g",
	       a->dim, embkv_dtype_name(a->dtype),
	       a->dtype == EMBKV_DTYPE_F32 ? "none" :
	       a->flags & EMBKV_TABLE_ROUND_NEAREST ? "nearest" : "stochastic",
	       a->flags & EMBKV_TABLE_STATE_BF16 ? "bf16" : "fp32",
	       a->partitions, a->capacity,
	       embkv_optimizer_name(a->opt.type), (double)a->opt.lr,
	       (double)a->opt.beta1, (double)a->opt.beta2, (double)a->opt.eps,
	       (double)a->opt.initial_accum, (double)a->opt.l1,
	       (double)a->opt.l2, (double)a->opt.ftrl_beta,
	       embkv_init_name(a->init.type), (double)a->init.a,
	       (double)a->init.b, a->init.seed, a->admit_after,
	       a->lfu_decay_period, a->hash_seed, (double)a->index_load);
}

static void attr_json(const struct embkv_table_attr *a)
{
	printf("{");
	attr_json_fields(a);
	printf("}");
}

/* What server srv's locate status says about the table there. */
static const char *where_word(int st)
{
	if (st == 0)
		return "has it";
	if (st == EMBKV_ENOTABLE)
		return "missing";
	if (st == EMBKV_EINCONSISTENT)
		return "different attributes";
	return "down";
}

/* 1 when some server has the table (a locate status of 0). */
static int any_has(const int *st, uint32_t nsrv)
{
	for (uint32_t srv = 0; srv < nsrv; srv++)
		if (st[srv] == 0)
			return 1;
	return 0;
}

/* "missing_on":[...],"differs_on":[...] of a locate's statuses. */
static void where_json(struct embkv_client *c, const int *st, uint32_t nsrv)
{
	static const char *const keys[] = { "missing_on", "differs_on" };
	static const int codes[] = { EMBKV_ENOTABLE, EMBKV_EINCONSISTENT };

	for (size_t k = 0; k < 2; k++) {
		int first = 1;

		printf(",\"%s\":[", keys[k]);
		for (uint32_t srv = 0; srv < nsrv; srv++) {
			if (st[srv] != codes[k])
				continue;
			printf("%s", first ? "" : ",");
			embkv_ctl_json_str(embkv_client_server_addr(c, srv));
			first = 0;
		}
		printf("]");
	}
}

int embkv_ctl_tables_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	for (int i = 1; i < argc; i++) {
		if (embkv_ctl_is_help(argv[i]))
			return HELP_SHOWN;
		if (strcmp(argv[i], "--json") == 0)
			a->json = 1;
		else
			return embkv_ctl_usage_error("tables: unexpected "
						     "argument %s", argv[i]);
	}
	return 0;
}

/*
 * One table's row (or JSON object): its attributes as the first server
 * that has it says, and its state across the servers that answered: "ok",
 * or "INCONSISTENT" with, after the table, where it is missing or differs.
 * 1 when inconsistent, 0 when not, -1 when no server has it any more.
 */
static int table_entry(struct embkv_client *c, const char *name, int json,
		       int first, struct embkv_ctl_tt *t, int *st,
		       uint32_t nsrv)
{
	struct embkv_table_attr a;
	char (*row)[CELL_MAX];
	int rc, bad;

	for (uint32_t srv = 0; srv < nsrv; srv++)
		st[srv] = EMBKV_ENOTABLE;
	rc = embkv_table_locate(c, name, &a, st, nsrv);
	if (rc && rc != EMBKV_EINCONSISTENT && !any_has(st, nsrv))
		return -1; /* dropped meanwhile, or only on servers now down */
	bad = rc == EMBKV_EINCONSISTENT;
	if (json) {
		printf("%s{", first ? "" : ",");
		attr_json_fields(&a);
		printf(",\"state\":\"%s\"", bad ? "inconsistent" : "ok");
		where_json(c, st, nsrv);
		printf("}");
		return bad;
	}
	if (!(row = embkv_ctl_tt_row(t)))
		return -ENOMEM;
	snprintf(row[0], CELL_MAX, "%s", a.name);
	snprintf(row[1], CELL_MAX, "%u", a.dim);
	snprintf(row[2], CELL_MAX, "%u", a.partitions);
	snprintf(row[3], CELL_MAX, "%" PRIu64, a.capacity);
	snprintf(row[4], CELL_MAX, "%s", embkv_optimizer_name(a.opt.type));
	snprintf(row[5], CELL_MAX, "%g", (double)a.opt.lr);
	snprintf(row[6], CELL_MAX, "%s", embkv_init_name(a.init.type));
	snprintf(row[7], CELL_MAX, "%u", a.admit_after);
	snprintf(row[8], CELL_MAX, "%s", bad ? "INCONSISTENT" : "ok");
	return bad;
}

/* After the table: where each inconsistent table is and is not. */
static void print_where(struct embkv_client *c, const char *name, int *st,
			uint32_t nsrv)
{
	for (uint32_t srv = 0; srv < nsrv; srv++)
		st[srv] = EMBKV_ENOTABLE;
	if (embkv_table_locate(c, name, NULL, st, nsrv) != EMBKV_EINCONSISTENT)
		return;
	printf("%s: INCONSISTENT:", name);
	for (uint32_t srv = 0; srv < nsrv; srv++)
		printf("%s %s %s", srv ? "," : "",
		       embkv_client_server_addr(c, srv), where_word(st[srv]));
	printf("\n");
}

int embkv_ctl_tables_run(struct embkv_client *c,
			 const struct embkv_ctl_args *args, int json)
{
	static const char *const hdr[] = {
		"NAME", "DIM", "PARTITIONS", "CAPACITY", "OPTIMIZER", "LR",
		"INIT", "ADMIT_AFTER", "STATE",
	};
	uint32_t nsrv = embkv_client_server_count(c), count = 0, nup = 0;
	struct embkv_table_summary *list;
	int list_rc, rc = 0, nbad = 0, shown = 0, *st = NULL, *err = NULL;
	struct embkv_ctl_tt t = { 0 };

	(void)args;
	list = calloc(LIST_MAX, sizeof(*list));
	st = calloc(nsrv ? nsrv : 1, sizeof(*st));
	err = calloc(nsrv ? nsrv : 1, sizeof(*err));
	if (!list || !st || !err ||
	    (!json &&
	     embkv_ctl_tt_init(&t, sizeof(hdr) / sizeof(hdr[0]), 1, hdr))) {
		rc = -ENOMEM;
		goto out;
	}
	/* Fails when some server did; the others' tables are in list. */
	list_rc = embkv_table_list(c, list, LIST_MAX, &count);
	if (count > LIST_MAX)
		count = LIST_MAX;
	if (json)
		printf("{\"tables\":[");
	for (uint32_t i = 0; i < count; i++) {
		int e = table_entry(c, list[i].name, json, !shown, &t, st,
				    nsrv);

		if (e == -ENOMEM) {
			rc = e;
			break;
		}
		shown += e >= 0;
		nbad += e > 0;
	}
	for (uint32_t srv = 0; srv < nsrv; srv++) {
		err[srv] = embkv_ctl_server_error(c, srv, 1, list_rc);
		nup += !err[srv];
	}
	if (json) {
		printf("],");
		embkv_ctl_servers_json(c, err);
		printf("}\n");
	} else if (!rc) {
		if (shown)
			embkv_ctl_tt_print(&t);
		else
			printf("(no tables)\n");
		for (uint32_t i = 0; nbad && i < count; i++)
			print_where(c, list[i].name, st, nsrv);
		for (uint32_t srv = 0; srv < nsrv; srv++)
			if (err[srv])
				embkv_ctl_print_down(stdout, c, srv, err[srv]);
	}
	if (!rc && !nup)
		rc = list_rc ? list_rc : EMBKV_EPROTO;
out:
	embkv_ctl_tt_free(&t);
	free(err);
	free(st);
	free(list);
	if (rc)
		return embkv_ctl_failed("tables", rc);
	if (nup < nsrv) {
		fprintf(stderr, "%s: tables: %u of %u servers did not answer\n",
			embkv_ctl_prog, nsrv - nup, nsrv);
		return EXIT_DOWN;
	}
	if (nbad) {
		fprintf(stderr, "%s: tables: not on every server alike: %d\n",
			embkv_ctl_prog, nbad);
		return EXIT_FAILED;
	}
	return 0;
}

/* create-table ---------------------------------------------------------- */

enum create_opt {
	C_DIM = 1000, C_PARTS, C_CAP, C_OPT, C_LR, C_BETA1, C_BETA2, C_EPS,
	C_ACCUM, C_L1, C_L2, C_FTRL_BETA, C_INIT, C_INIT_A, C_INIT_B,
	C_INIT_SEED, C_ADMIT, C_DECAY, C_HASH_SEED, C_INDEX_LOAD, C_DTYPE,
	C_ROUNDING, C_STATE_DTYPE,
};

static int create_set(struct embkv_table_attr *a, int o, const char *v)
{
	int e;

	switch (o) {
	case C_DIM: return embkv_ctl_parse_u32(v, &a->dim);
	case C_PARTS: return embkv_ctl_parse_u32(v, &a->partitions);
	case C_CAP: return embkv_ctl_parse_u64(v, &a->capacity);
	case C_OPT:
		e = embkv_optimizer_parse(v);
		if (e < 0)
			return e;
		a->opt.type = (enum embkv_optimizer)e;
		return 0;
	case C_LR: return embkv_ctl_parse_float(v, &a->opt.lr);
	case C_BETA1: return embkv_ctl_parse_float(v, &a->opt.beta1);
	case C_BETA2: return embkv_ctl_parse_float(v, &a->opt.beta2);
	case C_EPS: return embkv_ctl_parse_float(v, &a->opt.eps);
	case C_ACCUM: return embkv_ctl_parse_float(v, &a->opt.initial_accum);
	case C_L1: return embkv_ctl_parse_float(v, &a->opt.l1);
	case C_L2: return embkv_ctl_parse_float(v, &a->opt.l2);
	case C_FTRL_BETA: return embkv_ctl_parse_float(v, &a->opt.ftrl_beta);
	case C_INIT:
		e = embkv_init_parse(v);
		if (e < 0)
			return e;
		a->init.type = (enum embkv_init_type)e;
		return 0;
	case C_INIT_A: return embkv_ctl_parse_float(v, &a->init.a);
	case C_INIT_B: return embkv_ctl_parse_float(v, &a->init.b);
	case C_INIT_SEED: return embkv_ctl_parse_u64(v, &a->init.seed);
	case C_ADMIT: return embkv_ctl_parse_u32(v, &a->admit_after);
	case C_DECAY: return embkv_ctl_parse_u32(v, &a->lfu_decay_period);
	case C_HASH_SEED: return embkv_ctl_parse_u64(v, &a->hash_seed);
	case C_INDEX_LOAD: return embkv_ctl_parse_float(v, &a->index_load);
	case C_DTYPE:
		e = embkv_dtype_parse(v);
		if (e < 0)
			return e;
		a->dtype = (enum embkv_dtype)e;
		return 0;
	case C_ROUNDING:
		if (strcmp(v, "nearest") == 0)
			a->flags |= EMBKV_TABLE_ROUND_NEAREST;
		else if (strcmp(v, "stochastic") == 0)
			a->flags &= ~EMBKV_TABLE_ROUND_NEAREST;
		else
			return -EINVAL;
		return 0;
	case C_STATE_DTYPE:
		if (strcmp(v, "bf16") == 0)
			a->flags |= EMBKV_TABLE_STATE_BF16;
		else if (embkv_dtype_parse(v) == EMBKV_DTYPE_F32)
			a->flags &= ~EMBKV_TABLE_STATE_BF16;
		else
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

/*
 * What embkv_table_attr_check (net/attr.c) refuses in a, said with the
 * option that sets it and its valid range, in the check's order, into
 * why: "--partitions 3: must be a power of two from 1 to 65536". false
 * when it finds nothing (the caller then falls back to the status).
 */
static bool attr_explain(const struct embkv_table_attr *a, char *why,
			 size_t len)
{
	size_t nlen = strnlen(a->name, EMBKV_TABLE_NAME_MAX);
	uint64_t max_cap;

	for (size_t i = 0; i < nlen; i++) {
		char c = a->name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.'))
			nlen = 0;
	}
	if (nlen == 0 || nlen >= EMBKV_TABLE_NAME_MAX) {
		snprintf(why, len, "table name '%.*s': must be 1 to %u of "
			 "the characters a-z A-Z 0-9 _ - .",
			 (int)strnlen(a->name, EMBKV_TABLE_NAME_MAX), a->name,
			 EMBKV_TABLE_NAME_MAX - 1);
		return true;
	}
	if (a->dim == 0 || a->dim > EMBKV_MAX_DIM) {
		snprintf(why, len, "--dim %u: must be from 1 to %u", a->dim,
			 EMBKV_MAX_DIM);
		return true;
	}
	if (a->partitions == 0 || (a->partitions & (a->partitions - 1)) ||
	    a->partitions > EMBKV_MAX_PARTITIONS) {
		snprintf(why, len, "--partitions %u: must be a power of two "
			 "from 1 to %u", a->partitions, EMBKV_MAX_PARTITIONS);
		return true;
	}
	max_cap = EMBKV_MAX_ROWS_PER_PARTITION * a->partitions - 1;
	if (a->capacity == 0 || a->capacity > max_cap) {
		snprintf(why, len, "--capacity %" PRIu64 ": must be from 1 "
			 "to %" PRIu64 " (under %" PRIu64 " rows per "
			 "partition, %u partitions)", a->capacity, max_cap,
			 EMBKV_MAX_ROWS_PER_PARTITION, a->partitions);
		return true;
	}
	if (a->admit_after == 0) {
		snprintf(why, len, "--admit-after 0: must be at least 1 "
			 "(1: admit a key at its first pull)");
		return true;
	}
	if (a->lfu_decay_period == 0) {
		snprintf(why, len, "--lfu-decay-period 0: must be at least 1");
		return true;
	}
	if (!(a->index_load == 0.0f ||
	      (a->index_load >= 0.5f && a->index_load <= 1.0f))) {
		snprintf(why, len, "--index-load %g: must be 0 (the "
			 "default) or from 0.5 to 1", (double)a->index_load);
		return true;
	}
	if ((a->flags & EMBKV_TABLE_ROUND_NEAREST) &&
	    a->dtype == EMBKV_DTYPE_F32) {
		snprintf(why, len, "--rounding nearest: only for --dtype "
			 "fp16 or bf16 (fp32 rows are not rounded)");
		return true;
	}
	if ((a->flags & EMBKV_TABLE_STATE_BF16) &&
	    a->opt.type != EMBKV_OPT_ADAGRAD && a->opt.type != EMBKV_OPT_ADAM) {
		snprintf(why, len, "--state-dtype bf16: only for --optimizer "
			 "adagrad or adam (%s keeps %s)",
			 embkv_optimizer_name(a->opt.type),
			 a->opt.type == EMBKV_OPT_SGD ? "no state" :
			 a->opt.type == EMBKV_OPT_ROWWISE_ADAGRAD
				 ? "one fp32 per row" : "fp32 state");
		return true;
	}
	return false;
}

/* Why create_set refused v for option o, into why. */
static void value_explain(int o, const char *opt, const char *v, char *why,
			  size_t len)
{
	switch (o) {
	case C_OPT:
		snprintf(why, len, "%s %s: must be one of sgd, adagrad, adam, "
			 "ftrl, rowwise_adagrad", opt, v);
		return;
	case C_INIT:
		snprintf(why, len, "%s %s: must be one of zeros, uniform, "
			 "normal", opt, v);
		return;
	case C_DTYPE:
		snprintf(why, len, "%s %s: must be one of fp32, fp16, bf16",
			 opt, v);
		return;
	case C_ROUNDING:
		snprintf(why, len, "%s %s: must be stochastic or nearest", opt,
			 v);
		return;
	case C_STATE_DTYPE:
		snprintf(why, len, "%s %s: must be fp32 or bf16", opt, v);
		return;
	case C_DIM: case C_PARTS: case C_ADMIT: case C_DECAY:
	case C_CAP: case C_INIT_SEED: case C_HASH_SEED:
		snprintf(why, len, "%s %s: must be a whole number", opt, v);
		return;
	default:
		snprintf(why, len, "%s %s: must be a finite number", opt, v);
	}
}

/* "--NAME" of the long option whose val is o, in a static buffer. */
static const char *opt_name(const struct option *opts, int o)
{
	static char buf[64];

	for (; opts->name; opts++)
		if (opts->val == o) {
			snprintf(buf, sizeof(buf), "--%s", opts->name);
			return buf;
		}
	return "option";
}

int embkv_ctl_create_parse(int argc, char **argv,
			   struct embkv_ctl_args *args)
{
	static const struct option opts[] = {
		{ "dim", required_argument, NULL, C_DIM },
		{ "partitions", required_argument, NULL, C_PARTS },
		{ "capacity", required_argument, NULL, C_CAP },
		{ "optimizer", required_argument, NULL, C_OPT },
		{ "lr", required_argument, NULL, C_LR },
		{ "beta1", required_argument, NULL, C_BETA1 },
		{ "beta2", required_argument, NULL, C_BETA2 },
		{ "eps", required_argument, NULL, C_EPS },
		{ "initial-accum", required_argument, NULL, C_ACCUM },
		{ "l1", required_argument, NULL, C_L1 },
		{ "l2", required_argument, NULL, C_L2 },
		{ "ftrl-beta", required_argument, NULL, C_FTRL_BETA },
		{ "init", required_argument, NULL, C_INIT },
		{ "init-a", required_argument, NULL, C_INIT_A },
		{ "init-b", required_argument, NULL, C_INIT_B },
		{ "init-seed", required_argument, NULL, C_INIT_SEED },
		{ "admit-after", required_argument, NULL, C_ADMIT },
		{ "lfu-decay-period", required_argument, NULL, C_DECAY },
		{ "hash-seed", required_argument, NULL, C_HASH_SEED },
		{ "index-load", required_argument, NULL, C_INDEX_LOAD },
		{ "dtype", required_argument, NULL, C_DTYPE },
		{ "rounding", required_argument, NULL, C_ROUNDING },
		{ "state-dtype", required_argument, NULL, C_STATE_DTYPE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct embkv_table_attr *a = &args->attr;
	int o, rc;

	embkv_table_attr_init(a);
	opterr = 0;
	optind = 0;
	while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (o == 'h')
			return HELP_SHOWN;
		if (o == '?' || o == ':')
			return embkv_ctl_usage_error("create-table: bad or "
						     "incomplete option %s",
						     argv[optind - 1]);
		if (create_set(a, o, optarg)) {
			char why[256];

			value_explain(o, opt_name(opts, o), optarg, why,
				      sizeof(why));
			return embkv_ctl_usage_error("create-table: %s", why);
		}
	}
	if (optind + 1 != argc)
		return embkv_ctl_usage_error("create-table: %s",
					     "needs exactly one NAME");
	if (strlen(argv[optind]) >= sizeof(a->name))
		return embkv_ctl_usage_error("create-table: name too long: %s",
					     argv[optind]);
	strcpy(a->name, argv[optind]);
	rc = embkv_table_attr_check(a);
	if (rc) {
		char why[256];

		if (attr_explain(a, why, sizeof(why)))
			fprintf(stderr, "%s: create-table %s: %s\n",
				embkv_ctl_prog, a->name, why);
		else /* a rule attr_explain does not know yet */
			fprintf(stderr, "%s: create-table %s: invalid "
				"attributes: %s\n", embkv_ctl_prog, a->name,
				embkv_strerror(rc));
		return EXIT_USAGE;
	}
	return 0;
}

/*
 * Why a create failed, server by server: the ones that did not answer
 * (then nothing was created), or where the table is and is not when the
 * cluster disagrees about it.
 */
static int create_failed(struct embkv_client *c, const char *name, int rc)
{
	uint32_t nsrv = embkv_client_server_count(c);
	int *st = calloc(nsrv ? nsrv : 1, sizeof(*st));

	if (rc == EMBKV_EINCONSISTENT || rc == EMBKV_ETABLEEXISTS ||
	    !embkv_ctl_down_count(c))
		fprintf(stderr, "%s: create-table %s: %s\n", embkv_ctl_prog,
			name, embkv_strerror(rc));
	else
		fprintf(stderr, "%s: create-table %s: not created: a server "
			"of the cluster did not answer\n", embkv_ctl_prog,
			name);
	if (rc == EMBKV_EINCONSISTENT && st &&
	    embkv_table_locate(c, name, NULL, st, nsrv) ==
		    EMBKV_EINCONSISTENT) {
		for (uint32_t srv = 0; srv < nsrv; srv++)
			fprintf(stderr, "%s:   %s: %s\n", embkv_ctl_prog,
				embkv_client_server_addr(c, srv),
				where_word(st[srv]));
		fprintf(stderr, "%s: nothing was created; the table's rows on "
			"the servers that have it are kept. To start it afresh: "
			"drop-table %s, then create-table again\n",
			embkv_ctl_prog, name);
	} else {
		for (uint32_t srv = 0; srv < nsrv; srv++) {
			int e = embkv_client_server_status(c, srv);

			if (e) {
				fprintf(stderr, "%s: ", embkv_ctl_prog);
				embkv_ctl_print_down(stderr, c, srv, e);
			}
		}
		if (rc != EMBKV_ETABLEEXISTS && !embkv_ctl_down_count(c))
			fprintf(stderr, "%s: nothing was created\n",
				embkv_ctl_prog);
	}
	free(st);
	return EXIT_FAILED;
}

int embkv_ctl_create_run(struct embkv_client *c,
			 const struct embkv_ctl_args *args, int json)
{
	const struct embkv_table_attr *a = &args->attr;
	int rc;

	rc = embkv_table_create_remote(c, a);
	if (rc)
		return create_failed(c, a->name, rc);
	if (json) {
		printf("{\"created\":");
		attr_json(a);
		printf("}\n");
	} else {
		printf("created table %s (dim %u, %u partitions, capacity %"
		       PRIu64 ", %s)\n", a->name, a->dim, a->partitions,
		       a->capacity, embkv_optimizer_name(a->opt.type));
	}
	return 0;
}

/* drop-table, map -------------------------------------------------------- */

int embkv_ctl_drop_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	if (argc == 2 && embkv_ctl_is_help(argv[1]))
		return HELP_SHOWN;
	if (argc != 2 || argv[1][0] == '-')
		return embkv_ctl_usage_error("drop-table: %s",
					     "needs exactly one NAME");
	a->name = argv[1];
	return 0;
}

int embkv_ctl_drop_run(struct embkv_client *c,
		       const struct embkv_ctl_args *a, int json)
{
	int rc;

	rc = embkv_table_drop_remote(c, a->name);
	if (rc && embkv_ctl_down_count(c)) {
		/* the others did drop it: name the ones that failed */
		fprintf(stderr, "%s: drop-table %s: dropped from the servers "
			"that answered, not from:\n", embkv_ctl_prog, a->name);
		for (uint32_t srv = 0; srv < embkv_client_server_count(c); srv++) {
			int e = embkv_client_server_status(c, srv);

			if (e) {
				fprintf(stderr, "%s: ", embkv_ctl_prog);
				embkv_ctl_print_down(stderr, c, srv, e);
			}
		}
		return EXIT_FAILED;
	}
	if (rc)
		return embkv_ctl_failed("drop-table", rc);
	if (json) {
		printf("{\"dropped\":");
		embkv_ctl_json_str(a->name);
		printf("}\n");
	} else {
		printf("dropped table %s\n", a->name);
	}
	return 0;
}

int embkv_ctl_map_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	for (int i = 1; i < argc; i++) {
		if (embkv_ctl_is_help(argv[i]))
			return HELP_SHOWN;
		if (strcmp(argv[i], "--partitions") == 0)
			a->list = 1;
		else if (argv[i][0] == '-' || a->name)
			return embkv_ctl_usage_error("map: unexpected "
						     "argument %s", argv[i]);
		else
			a->name = argv[i];
	}
	if (!a->name)
		return embkv_ctl_usage_error("map: %s", "needs a table NAME");
	return 0;
}

int embkv_ctl_map_run(struct embkv_client *c,
		      const struct embkv_ctl_args *a, int json)
{
	static const char *const hdr[] = { "SERVER", "ADDRESS", "PARTITIONS" };
	const char *name = a->name;
	struct embkv_table_handle *t;
	uint32_t nparts, nsrv, *per = NULL;
	uint16_t *ps = NULL;
	struct embkv_ctl_tt tt;
	uint64_t epoch;
	int rc;

	rc = embkv_table_open(c, name, &t);
	if (rc)
		return embkv_ctl_failed("map", rc);
	nparts = embkv_table_attr_get(t)->partitions;
	ps = calloc(nparts, sizeof(*ps));
	if (!ps) {
		rc = -ENOMEM;
		goto close;
	}
	rc = embkv_table_map(t, &epoch, ps, nparts);
	if (rc)
		goto close;
	nsrv = embkv_client_server_count(c);
	per = calloc(nsrv, sizeof(*per));
	if (!per) {
		rc = -ENOMEM;
		goto close;
	}
	for (uint32_t p = 0; p < nparts; p++)
		if (ps[p] < nsrv)
			per[ps[p]]++;
	if (json) {
		printf("{\"table\":");
		embkv_ctl_json_str(name);
		printf(",\"epoch\":%" PRIu64 ",\"partitions\":%u,\"servers\":[",
		       epoch, nparts);
		for (uint32_t s = 0; s < nsrv; s++) {
			printf("%s{\"index\":%u,\"address\":", s ? "," : "", s);
			embkv_ctl_json_str(embkv_client_server_addr(c, s));
			printf(",\"partitions\":%u}", per[s]);
		}
		printf("],\"part_server\":[");
		for (uint32_t p = 0; p < nparts; p++)
			printf("%s%u", p ? "," : "", ps[p]);
		printf("]}\n");
		goto close;
	}
	printf("table %s: epoch %" PRIu64 ", %u partitions\n", name, epoch,
	       nparts);
	if (embkv_ctl_tt_init(&tt, 3, 2, hdr)) {
		rc = -ENOMEM;
		goto close;
	}
	for (uint32_t s = 0; s < nsrv; s++) {
		char (*row)[CELL_MAX] = embkv_ctl_tt_row(&tt);

		if (!row) {
			rc = -ENOMEM;
			break;
		}
		snprintf(row[0], CELL_MAX, "%u", s);
		snprintf(row[1], CELL_MAX, "%s", embkv_client_server_addr(c, s));
		snprintf(row[2], CELL_MAX, "%u", per[s]);
	}
	embkv_ctl_tt_print(&tt);
	embkv_ctl_tt_free(&tt);
	if (a->list) {
		printf("\nPARTITION  SERVER\n");
		for (uint32_t p = 0; p < nparts; p++)
			printf("%9u  %6u\n", p, ps[p]);
	}
close:
	free(per);
	free(ps);
	embkv_table_close(t);
	return rc ? embkv_ctl_failed("map", rc) : 0;
}
