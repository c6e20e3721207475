/*
 * embkvctl: the embkv admin tool.
 *
 *   embkvctl [--servers tcp://a,tcp://b] [--token-file F] [--json]
 *            [--timeout MS] COMMAND [ARGS]
 *
 * The global options may also follow the command (embkvctl stats
 * --servers A --json): hoist_globals() moves them in front of it first.
 *
 * Commands: stats, tables, create-table, set-table, drop-table, map, export,
 * import
 * (see usage());
 * members, health and forget read etcd instead (tools/ctl_members.c).
 * Everything goes through libembkv's public API, so the tool also shows
 * what a client sees. Output is aligned human-readable tables, or one JSON
 * document with --json. Exit status: 0 success, 1 an operation failed, 2
 * usage error, 3 some server did not answer (stats and tables still
 * report the others).
 *
 * One server address is enough: the client learns the cluster's other
 * members from it. The client is made with EMBKV_CLIENT_ALLOW_DOWN, so a
 * dead member never blinds the operator: stats and tables mark it DOWN
 * with its own error and report the rest; create-table refuses (nothing
 * created) and drop-table names it.
 *
 * This file: main, the global options, the command table, usage and the
 * argument helpers every command's parser uses. One file per object, as
 * iproute2's rdma tool does: stats in ctl_stats.c; tables, create-table,
 * drop-table and map in ctl_tables.c; text tables, JSON and DOWN servers
 * in ctl_out.c; what they share in ctl.h. A new command is a file and a
 * row in commands[].
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <embkv/embkv.h>
#include "tools/clientopts.h"
#include "tools/ctl.h"
#include "tools/ctl_members.h"

const char *const embkv_ctl_prog = "embkvctl";

static void usage(FILE *f)
{
	fprintf(f,
"Usage: embkvctl [OPTIONS] COMMAND [ARGS]\n"
"The embkv admin tool.\n"
"\n"
"Options:\n"
"  --servers LIST       servers, comma-separated tcp://host:port (default\n"
"                       $" EMBKV_TOOL_SERVERS_ENV " or " EMBKV_TOOL_DEFAULT_SERVER "); one\n"
"                       is enough: the others are learned from it\n"
"  --token-file FILE    shared secret for authentication (the file's\n"
"                       content, trailing newlines removed)\n"
"  --json               print one JSON document instead of tables\n"
"  --timeout MS         connect and request timeout (default 5000/30000)\n"
"%s"
"  --version            print the version and exit\n"
"  -h, --help           this help\n"
"Global options may come before or after the command.\n"
"\n"
"Commands:\n"
"  stats [--all] [--json] [--watch SECONDS]\n"
"                       counters per server and per table: rows, capacity,\n"
"                       memory, hits, misses, inserts, evictions, admission\n"
"                       rejects, pulls and pushes per second, p50/p99\n"
"                       handling latency, connections, and TOTAL rows that\n"
"                       sum them over the servers that answered; a server\n"
"                       that did not is marked DOWN with its error; --all\n"
"                       lists every counter the servers report; --watch\n"
"                       repeats every SECONDS until interrupted (with\n"
"                       --json: one document per line). Latency columns\n"
"                       (_US*): server handling time in microseconds,\n"
"                       the upper bound of the histogram bucket that holds\n"
"                       the quantile\n"
"  config [--json]      each server's configuration in force: version,\n"
"                       listeners, threads, memory limit, used, reserved\n"
"                       and each table's share, connection limits,\n"
"                       deadlines and budgets, metrics address, data dir,\n"
"                       etcd settings, peers (never the token)\n"
"  tables [--json]      the tables, their attributes and whether every\n"
"                       server has them alike (else INCONSISTENT, with\n"
"                       where each is missing); DOWN servers as in stats\n"
"  create-table NAME [ATTRS]\n"
"                       creates a table on every server of the cluster or\n"
"                       on none: refused when a server does not answer or\n"
"                       some servers have the table already (INCONSISTENT:\n"
"                       drop it first), undone when a server fails. ATTRS\n"
"                       (defaults in brackets):\n"
"      --dim D                 row width, 1-4096 [64]\n"
"      --partitions P          a power of two, <= 65536 [64]\n"
"      --capacity N            rows, whole table [1048576]\n"
"      --optimizer NAME        sgd|adagrad|adam|ftrl|rowwise_adagrad [sgd]\n"
"      --lr X                  learning rate (FTRL: alpha) [0.01]\n"
"      --beta1 X --beta2 X     Adam [0.9, 0.999]\n"
"      --eps X                 Adagrad, Adam [1e-8]\n"
"      --initial-accum X       Adagrad accumulator start [0.1]\n"
"      --l1 X --l2 X           FTRL regularization [0, 0]\n"
"      --ftrl-beta X           FTRL beta [1]\n"
"      --init NAME             uniform|normal|zeros [uniform]\n"
"      --init-a X --init-b X   uniform: [a, b); normal: mean a, stddev b\n"
"                              [-0.01, 0.01]\n"
"      --init-seed N           initializer seed [0]\n"
"      --admit-after N         store a key on its N-th sighting [1]\n"
"      --lfu-decay-period N    LFU halving period [8]\n"
"      --hash-seed N           key hash seed [0x656d626b76]\n"
"      --index-load X          index load at capacity, 0.5-1 (0: the\n"
"                              server's default) [0]\n"
"      --dtype T               storage type: fp32|fp16|bf16 [fp32]\n"
"      --rounding R            16-bit write-backs: stochastic|nearest\n"
"                              [stochastic]\n"
"      --state-dtype T         adagrad, adam state: fp32|bf16 [fp32]\n"
"  set-table NAME [--lr X] [--eps X] [--beta1 X] [--beta2 X]\n"
"                 [--initial-accum X] [--l1 X] [--l2 X] [--ftrl-beta X]\n"
"                       changes the table's optimizer hyper-parameters on\n"
"                       every server (the others keep their values; the\n"
"                       optimizer type never changes); next pushes use them\n"
"  drop-table NAME      drops a table from every server that has it (names\n"
"                       the servers that did not answer)\n"
"  map NAME [--partitions]\n"
"                       shard map: epoch, partitions per server;\n"
"                       --partitions lists each partition's server\n"
"  move TABLE PARTITION SERVER [--rate MB/s] [--progress]\n"
"                       moves one partition to SERVER (an index of the\n"
"                       servers list, or an address) while training goes\n"
"                       on (cluster mode, embkvd --etcd)\n"
"  rebalance [--table T]... [--rate MB/s]\n"
"                       evens each table's partitions over the servers\n"
"                       that answer (start a server, then rebalance)\n"
"  drain SERVER [--table T]... [--rate MB/s]\n"
"                       moves every partition off SERVER\n"
"  recover              gives the partitions of members that are down to\n"
"                       live ones, which load them from the newest\n"
"                       checkpoint\n"
"  checkpoint create [--name N] [--incremental] [--table T]...\n"
"                       every server writes its partitions to its\n"
"                       --data-dir, then the manifest; prints the id\n"
"  checkpoint restore [ID|NAME|newest] [--table T]...\n"
"                       load a checkpoint onto the servers as they are\n"
"                       now (missing tables are created)\n"
"  checkpoint list      checkpoints: id, name, kind, age, rows, size\n"
"  checkpoint verify [ID|NAME|newest]\n"
"                       read every file, check every checksum\n"
"  checkpoint delete ID|NAME [--force]\n"
"                       (--force: even when an increment is based on it)\n"
"                       create, restore: --progress prints progress to\n"
"                       stderr (default when stderr is a terminal)\n"
"  export NAME FILE [--fp16] [--progress]\n"
"                       writes the table's keys and values (no optimizer\n"
"                       state) to FILE, fp32 or --fp16, in the format of\n"
"                       tools/EXPORT.md (numpy reads it); each partition is\n"
"                       read page by page, not as one snapshot\n"
"  import NAME FILE [--progress]\n"
"                       verifies FILE whole (length, checksums), then\n"
"                       stores its rows in table NAME (same dim)\n"
"                       --progress: rows, MB/s and time left on stderr\n"
"                       (default: only when stderr is a terminal)\n"
"%s"
"\n"
"Exit status: 0 success, 1 the operation failed (or tables found an\n"
"INCONSISTENT table), 2 usage error, 3 a server did not answer (stats and\n"
"tables report the others).\n",
		embkv_ctl_members_usage_opts, embkv_ctl_members_usage_cmds);
}

int embkv_ctl_usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", embkv_ctl_prog);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see %s --help)\n", embkv_ctl_prog);
	return EXIT_USAGE;
}

int embkv_ctl_is_help(const char *s)
{
	return strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0;
}

int embkv_ctl_failed(const char *what, int status)
{
	fprintf(stderr, "%s: %s: %s\n", embkv_ctl_prog, what,
		embkv_strerror(status));
	return EXIT_FAILED;
}

/* Numbers ---------------------------------------------------------------- */

int embkv_ctl_parse_u64(const char *s, uint64_t *out)
{
	return embkv_tool_parse_u64(s, 0, UINT64_MAX, out);
}

int embkv_ctl_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (embkv_tool_parse_u64(s, 0, UINT32_MAX, &v))
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

int embkv_ctl_parse_float(const char *s, float *out)
{
	char *end;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	*out = strtof(s, &end);
	return errno || *end || !isfinite(*out) ? -EINVAL : 0;
}

/* main -------------------------------------------------------------------- */

struct command {
	const char *name;
	/* 0, EXIT_USAGE (message printed) or HELP_SHOWN */
	int (*parse)(int argc, char **argv, struct embkv_ctl_args *a);
	int (*run)(struct embkv_client *c, const struct embkv_ctl_args *a,
		   int json);
};

static const struct command commands[] = {
	{ "stats", embkv_ctl_stats_parse, embkv_ctl_stats_run },
	{ "tables", embkv_ctl_tables_parse, embkv_ctl_tables_run },
	{ "create-table", embkv_ctl_create_parse, embkv_ctl_create_run },
	{ "drop-table", embkv_ctl_drop_parse, embkv_ctl_drop_run },
	{ "set-table", embkv_ctl_settable_parse, embkv_ctl_settable_run },
	{ "map", embkv_ctl_map_parse, embkv_ctl_map_run },
	{ "checkpoint", embkv_ctl_ckpt_parse, embkv_ctl_ckpt_run },
	{ "move", embkv_ctl_move_parse, embkv_ctl_move_run },
	{ "rebalance", embkv_ctl_move_parse, embkv_ctl_move_run },
	{ "drain", embkv_ctl_move_parse, embkv_ctl_move_run },
	{ "recover", embkv_ctl_move_parse, embkv_ctl_move_run },
	{ "export", embkv_ctl_export_parse, embkv_ctl_export_run },
	{ "import", embkv_ctl_import_parse, embkv_ctl_import_run },
	{ "config", embkv_ctl_config_parse, embkv_ctl_config_run },
};

enum global_opt { G_SERVERS = 1000, G_TOKEN, G_JSON, G_TIMEOUT, G_ETCD,
		  G_CLUSTER };

/* The global options: name, and whether it takes a value. */
static const struct {
	const char *name;
	int has_arg;
} globals[] = {
	{ "--servers", 1 }, { "--token-file", 1 }, { "--json", 0 },
	{ "--timeout", 1 }, { "--etcd", 1 }, { "--cluster", 1 },
	{ "--version", 0 },
};

/* 0: s is no global option; 1: one without its value in the next
 * argument (--json, --servers=A); 2: one whose value is the next. */
static int global_kind(const char *s)
{
	for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++) {
		size_t n = strlen(globals[i].name);

		if (strncmp(s, globals[i].name, n))
			continue;
		if (s[n] == '=' && globals[i].has_arg)
			return 1;
		if (!s[n])
			return globals[i].has_arg ? 2 : 1;
	}
	return 0;
}

/*
 * Moves the global options that follow the command (up to a "--") in
 * front of it, keeping their order, so that getopt reads them as if they
 * came first: "embkvctl stats --servers A --json" is "embkvctl --servers
 * A --json stats". A global option with its value missing stays where it
 * is (the command's parser reports it). 0, or -ENOMEM.
 */
static int hoist_globals(int argc, char **argv)
{
	char **moved, **rest;
	int cmd = 1, nm = 0, nr = 0;

	while (cmd < argc && argv[cmd][0] == '-' && strcmp(argv[cmd], "--")) {
		cmd += global_kind(argv[cmd]) == 2 ? 2 : 1;
	}
	if (cmd >= argc || !strcmp(argv[cmd], "--"))
		return 0;
	moved = calloc((size_t)argc, sizeof(*moved));
	rest = calloc((size_t)argc, sizeof(*rest));
	if (!moved || !rest) {
		free(moved);
		free(rest);
		return -ENOMEM;
	}
	for (int i = cmd + 1, stop = 0; i < argc; i++) {
		int k = stop ? 0 : global_kind(argv[i]);

		if (!strcmp(argv[i], "--"))
			stop = 1;
		if (k == 2 && i + 1 < argc) {
			moved[nm++] = argv[i];
			moved[nm++] = argv[++i];
		} else if (k == 1) {
			moved[nm++] = argv[i];
		} else {
			rest[nr++] = argv[i];
		}
	}
	rest[nr] = NULL;
	{
		char *c = argv[cmd];

		memcpy(argv + cmd, moved, sizeof(*argv) * (size_t)nm);
		argv[cmd + nm] = c;
		memcpy(argv + cmd + nm + 1, rest, sizeof(*argv) * (size_t)nr);
	}
	free(moved);
	free(rest);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "servers", required_argument, NULL, G_SERVERS },
		{ "token-file", required_argument, NULL, G_TOKEN },
		{ "json", no_argument, NULL, G_JSON },
		{ "timeout", required_argument, NULL, G_TIMEOUT },
		{ "etcd", required_argument, NULL, G_ETCD },
		{ "cluster", required_argument, NULL, G_CLUSTER },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct embkv_tool_conn conn = { 0 };
	struct embkv_ctl_etcd etcd = { 0 };
	const struct command *cmd = NULL;
	struct embkv_client *c;
	struct embkv_ctl_args args;
	int json = 0, o, rc;

	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("%s %s\n", embkv_ctl_prog, EMBKV_VERSION);
		return 0;
	}
	if (hoist_globals(argc, argv))
		return embkv_ctl_failed("arguments", -ENOMEM);
	opterr = 0;
	while ((o = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (o) {
		case G_SERVERS:
			conn.servers_arg = optarg;
			break;
		case G_TOKEN:
			conn.token_file = optarg;
			break;
		case G_JSON:
			json = 1;
			break;
		case G_TIMEOUT:
			if (embkv_ctl_parse_u32(optarg, &conn.timeout_ms) ||
			    conn.timeout_ms == 0)
				return embkv_ctl_usage_error("bad --timeout %s",
							     optarg);
			break;
		case G_ETCD:
			etcd.etcd = optarg;
			break;
		case G_CLUSTER:
			etcd.cluster = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("%s %s\n", embkv_ctl_prog, EMBKV_VERSION);
			return 0;
		default:
			return embkv_ctl_usage_error("bad or incomplete "
						     "option %s",
						     argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return embkv_ctl_usage_error("%s", "no command");
	rc = embkv_ctl_members_run(embkv_ctl_prog, &etcd, &conn, json,
				   argc - optind, argv + optind);
	if (rc != EMBKV_CTL_NOT_MINE)
		return rc;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd)
		return embkv_ctl_usage_error("unknown command %s",
					     argv[optind]);
	memset(&args, 0, sizeof(args));
	rc = cmd->parse(argc - optind, argv + optind, &args);
	if (rc == HELP_SHOWN) {
		usage(stdout);
		return 0;
	}
	if (rc)
		return rc;
	/* One dead server must not blind the operator: every command
	 * starts with the servers that answer, and says who did not. */
	if (embkv_tool_servers_check(embkv_ctl_prog,
				     embkv_tool_servers(&conn)))
		return EXIT_USAGE;
	conn.flags = EMBKV_CLIENT_ALLOW_DOWN;
	if (embkv_tool_connect(embkv_ctl_prog, &conn, &c))
		return EXIT_FAILED;
	rc = cmd->run(c, &args, json || args.json);
	embkv_client_destroy(c);
	return rc;
}
