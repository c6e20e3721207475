/*
 * embkvd: the embkv server daemon (TCP and RDMA verbs transports).
 *
 * What: parses and checks the command line, prepares the data directory
 * and the token, starts the server (server/server.c), prints the line
 * "embkvd: listening on tcp://HOST:PORT" (and/or rdma://HOST:PORT, one line
 * per listener) on stdout once it accepts connections, and serves until
 * SIGINT or SIGTERM. The first log line names the version; --version
 * prints it; --log-file sends the log there (SIGHUP reopens it);
 * --metrics-listen serves Prometheus metrics (server/metrics_http.c).
 *
 * Why so strict: a server that starts with a mistyped flag silently
 * ignored serves the wrong cluster. Every flag is checked in full (no
 * trailing garbage, ranges enforced); anything wrong exits with status 2
 * and one line saying what, before anything starts.
 *
 * Exit status: 0 after a clean shutdown, 1 when the server could not
 * start or failed, 2 for a bad command line.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "server/daemon.h"
#include "server/member.h"

#define EXIT_USAGE 2
#define TOKEN_MAX 4096u
#define PATH_BYTES 4096u
#define TCP_SCHEME "tcp://"
#define RDMA_SCHEME "rdma://"
#define HTTP_SCHEME "http://"
#define PORT_MAX 65535u

#define REPLICA_OF_MAX 64u /* --replica-of flags */

enum {
	OPT_LISTEN = 256,
	OPT_PORT_FILE,
	OPT_THREADS,
	OPT_IO_THREADS,
	OPT_MEMORY_LIMIT,
	OPT_DATA_DIR,
	OPT_TOKEN_FILE,
	OPT_PEERS,
	OPT_SELF,
	OPT_EPOCH,
	OPT_MAX_CONNS,
	OPT_DEFAULT_TABLE,
	OPT_ETCD,
	OPT_CLUSTER,
	OPT_ADVERTISE,
	OPT_MEMBER_TTL,
	OPT_MEMBER_ID,
	OPT_NO_RESTORE,
	OPT_AUTO_RECOVER,
	OPT_LOG_FILE,
	OPT_METRICS_LISTEN,
	OPT_VERSION,
	OPT_AUTH_TIMEOUT,
	OPT_FRAME_TIMEOUT,
	OPT_INFLIGHT_BYTES,
	OPT_MAX_UNAUTH,
	OPT_REPLICA_OF,
	OPT_PRIMARY_SERVERS,
	OPT_REPL_LOG_ROWS,
	OPT_RDMA_REPLY_POOL,
};

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "port-file", required_argument, NULL, OPT_PORT_FILE },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "io-threads", required_argument, NULL, OPT_IO_THREADS },
	{ "memory-limit", required_argument, NULL, OPT_MEMORY_LIMIT },
	{ "data-dir", required_argument, NULL, OPT_DATA_DIR },
	{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
	{ "peers", required_argument, NULL, OPT_PEERS },
	{ "self", required_argument, NULL, OPT_SELF },
	{ "epoch", required_argument, NULL, OPT_EPOCH },
	{ "max-conns", required_argument, NULL, OPT_MAX_CONNS },
	{ "default-table", required_argument, NULL, OPT_DEFAULT_TABLE },
	{ "etcd", required_argument, NULL, OPT_ETCD },
	{ "cluster", required_argument, NULL, OPT_CLUSTER },
	{ "advertise", required_argument, NULL, OPT_ADVERTISE },
	{ "member-ttl", required_argument, NULL, OPT_MEMBER_TTL },
	{ "member-id", required_argument, NULL, OPT_MEMBER_ID },
	{ "no-restore", no_argument, NULL, OPT_NO_RESTORE },
	{ "auto-recover", required_argument, NULL, OPT_AUTO_RECOVER },
	{ "log-file", required_argument, NULL, OPT_LOG_FILE },
	{ "metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "auth-timeout-ms", required_argument, NULL, OPT_AUTH_TIMEOUT },
	{ "frame-timeout-ms", required_argument, NULL, OPT_FRAME_TIMEOUT },
	{ "inflight-bytes", required_argument, NULL, OPT_INFLIGHT_BYTES },
	{ "max-unauth-conns", required_argument, NULL, OPT_MAX_UNAUTH },
	{ "replica-of", required_argument, NULL, OPT_REPLICA_OF },
	{ "primary-servers", required_argument, NULL, OPT_PRIMARY_SERVERS },
	{ "repl-log-rows", required_argument, NULL, OPT_REPL_LOG_ROWS },
	{ "rdma-reply-pool", required_argument, NULL, OPT_RDMA_REPLY_POOL },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
"Usage: embkvd [flags]\n"
"The embkv server: sharded embedding tables over TCP and RDMA verbs.\n"
"\n"
"  --listen tcp://HOST:PORT  address to listen on (default tcp://127.0.0.1:7070);\n"
"  --listen rdma://HOST:PORT port 0 picks a free port. Repeatable: at most one\n"
"                            tcp:// and one rdma:// (HOST: an address of an\n"
"                            RDMA device; table memory is registered for\n"
"                            remote READ). Given any --listen, only those\n"
"                            are served. Once ready, prints one line\n"
"                            'embkvd: listening on SCHEME://HOST:PORT' per\n"
"                            listener on stdout\n"
"  --port-file PATH          also write the port (a decimal line) to PATH:\n"
"                            the TCP one, or the RDMA one without TCP\n"
"  --threads N               partition owner threads, 1-%u (default: CPUs)\n"
"  --io-threads N            network I/O threads, 1-%u (default 1)\n"
"  --memory-limit BYTES      memory for all tables, with an optional K, M, G\n"
"                            or T suffix (powers of 1024); a TABLE_CREATE\n"
"                            over it fails with ENOMEM; 0: no limit\n"
"                            (default: 3/4 of physical memory)\n"
"  --data-dir DIR            directory for checkpoints (DIR/ckpt/ID/; may be\n"
"                            shared by every server); created if missing,\n"
"                            must be writable. At start the server loads\n"
"                            its partitions from the newest complete\n"
"                            checkpoint (alone or with --peers: re-creating\n"
"                            its tables; with --etcd: the partitions a\n"
"                            restart left unloaded)\n"
"  --no-restore              with --data-dir: start empty instead\n"
"  --auto-recover SECONDS    with --etcd: when a member that holds\n"
"                            partitions has had no lease for SECONDS, give\n"
"                            its partitions to the live members (they load\n"
"                            them from the newest checkpoint); off by\n"
"                            default (embkvctl recover does it by hand)\n"
"  --token-file PATH         shared secret (the file's content, trailing\n"
"                            newline removed): clients must authenticate\n"
"                            (HELLO/AUTH) before any other request\n"
"  --peers ADDR,ADDR,...     every server of the cluster, tcp:// or rdma://\n"
"                            host:port,\n"
"                            in shard-map order: partition p lives on\n"
"                            server p %% S. Needs --self. Without it the\n"
"                            server is alone and serves every partition\n"
"  --self N                  this server's index in --peers\n"
"  --epoch N                 shard-map epoch, >= 1 (default 1)\n"
"  --max-conns N             open connections at most (default 1024); with\n"
"                            a token, authenticated ones only; without,\n"
"                            when reached, the oldest connection that sent\n"
"                            no request within --auth-timeout-ms is closed\n"
"                            to make room\n"
"  --max-unauth-conns N      with a token: connections still authenticating\n"
"                            at most (default 64, split among I/O threads);\n"
"                            a new one closes the oldest\n"
"  --auth-timeout-ms MS      with a token: HELLO and AUTH done within MS of\n"
"                            the accept, or the connection is closed\n"
"                            (default 5000); without a token: see\n"
"                            --max-conns\n"
"  --frame-timeout-ms MS     a frame whose first bytes arrived is whole\n"
"                            within MS, or the connection is closed\n"
"                            (default 30000)\n"
"  --inflight-bytes BYTES    memory for request bodies being received, all\n"
"                            connections together (K, M, G suffixes; at\n"
"                            least 64M; default 1G); over it, reading\n"
"                            waits (net/PROTOCOL.md section 9)\n"
"  --rdma-reply-pool BYTES   RDMA replies over 64 KiB go from buffers\n"
"                            registered once and reused: keep up to BYTES\n"
"                            of them idle (K, M, G suffixes; at most 64G;\n"
"                            default 64M; registered memory is locked,\n"
"                            RLIMIT_MEMLOCK); 0: register each such reply\n"
"                            for itself\n"
"  --default-table NAME      create table NAME with the default attributes\n"
"                            at start\n"
"  --etcd URL[,URL...]       register in the etcd cluster at these client\n"
"                            URLs (http://HOST:PORT): /CLUSTER/members/ID,\n"
"                            under a lease kept alive every TTL/3, and\n"
"                            /CLUSTER/nodes/ID. Serves on with etcd down\n"
"  --cluster NAME            the cluster's etcd key prefix (default %s)\n"
"  --advertise ADDR          the address clients use, tcp:// or rdma://\n"
"                            HOST:PORT (default: the first listener's)\n"
"  --member-id N             member id (default: --self, else 0); refused\n"
"                            while another live member holds it\n"
"  --member-ttl SECONDS      member lease TTL, 2-%u (default %u)\n"
"  --metrics-listen HOST:PORT\n"
"                            serve Prometheus metrics at\n"
"                            http://HOST:PORT/metrics (port 0 picks one;\n"
"                            the line 'embkvd: metrics on URL' goes to\n"
"                            stdout); off by default\n"
"  --replica-of TABLE        follow TABLE of the servers of\n"
"                            --primary-servers as a read-only replica\n"
"                            (repeatable, at most %u): the table is created\n"
"                            here with the primary's attributes, copied and\n"
"                            kept up with every update; pushes, assigns and\n"
"                            erases are refused (EMBKV_EREADONLY), pulls\n"
"                            read as infer. Not with --etcd, --peers or\n"
"                            --data-dir\n"
"  --primary-servers URL,... the primary's servers (tcp://HOST:PORT; one is\n"
"                            enough, the others are learned)\n"
"  --repl-log-rows N         updates a partition remembers for replicas\n"
"                            (the feed ring, 8 bytes each, made on the\n"
"                            first replica's request; at most the\n"
"                            partition's capacity in rows; rounded up to a\n"
"                            power of two, 1024 to 2^30; default %u); a replica\n"
"                            further behind copies the partition again\n"
"  --log-file PATH           append the log (stderr) to PATH; SIGHUP\n"
"                            reopens it (for logrotate)\n"
"  --version                 print the version and exit\n"
"  -h, --help                print this help and exit\n"
"\n"
"Log lines: 'TIME LEVEL embkvd: MESSAGE', TIME in UTC (ISO 8601, ms),\n"
"LEVEL one of INFO, WARN, ERROR.\n"
"SIGINT or SIGTERM shuts the server down cleanly (exit status 0).\n"
"SIGHUP reopens the log file and re-reads the token file.\n",
		EMBKV_OWNER_MAX, EMBKVD_MAX_IO_THREADS,
		EMBKVD_MEMBER_CLUSTER_DEFAULT, EMBKVD_MEMBER_TTL_MAX_S,
		EMBKVD_MEMBER_TTL_S, REPLICA_OF_MAX,
		EMBKVD_REPL_LOG_ROWS_DEFAULT);
}

/* Without --memory-limit: three quarters of physical memory, so a table
 * too big for the machine is refused with ENOMEM instead of growing into
 * the kernel's OOM killer (with RDMA every table page is pinned at once).
 * 0 (no limit) if the size is unknown. */
static uint64_t default_memory_limit(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	long page = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || page <= 0)
		return 0;
	return (uint64_t)pages / 4 * 3 * (uint64_t)page;
}

struct opts {
	struct embkvd_attr attr;
	const char *replica_of[REPLICA_OF_MAX];
	const char *port_file;
	const char *data_dir;
	const char *token_file;
	char *peers_arg;          /* strdup'ed, split in place */
	const char **peers;
	bool self_set;
	bool listen_set;          /* a --listen was given */
	bool memory_limit_set;    /* a --memory-limit was given */
	bool member_set;          /* a membership flag other than --etcd */
	bool member_id_set;
	uint8_t *token;
};

static int bad(const char *flag, const char *value, const char *why)
{
	fprintf(stderr, "embkvd: bad value '%s' for --%s: %s\n", value, flag,
		why);
	return -EINVAL;
}

/* A whole decimal number in [min, max]. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* BYTES[K|M|G|T]. */
static int parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGT";
	char *end;
	unsigned long long v;
	const char *u;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		if (end[1] || !(u = strchr(units, end[0] & ~0x20)))
			return -EINVAL;
		shift = 10u * (unsigned)(u - units + 1);
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* SCHEME HOST:PORT, HOST a name, an IPv4 address or [IPv6]. */
static int parse_addr(const char *s, const char *scheme, char *host,
		      size_t host_cap, uint16_t *port)
{
	const char *h, *colon;
	size_t hl;
	uint64_t p;

	if (strncmp(s, scheme, strlen(scheme)))
		return -EINVAL;
	h = s + strlen(scheme);
	if (*h == '[') {
		const char *close = strchr(h, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		h++;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(h, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - h);
		if (memchr(h, ':', hl))
			return -EINVAL; /* IPv6 needs brackets */
	}
	if (!hl || hl >= host_cap || parse_u64(colon + 1, 0, PORT_MAX, &p))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static int parse_peers(struct opts *o, const char *arg)
{
	char host[EMBKVD_HOST_MAX + 1];
	uint32_t n = 1;
	uint16_t port;
	char *p, *save = NULL;

	for (const char *q = arg; *q; q++)
		n += *q == ',';
	if (n > EMBKV_WIRE_MAX_SERVERS)
		return bad("peers", arg, "too many servers");
	free(o->peers_arg);
	free(o->peers);
	o->peers_arg = strdup(arg);
	o->peers = calloc(n, sizeof(*o->peers));
	if (!o->peers_arg || !o->peers)
		return -ENOMEM;
	n = 0;
	for (p = strtok_r(o->peers_arg, ",", &save); p;
	     p = strtok_r(NULL, ",", &save)) {
		if (strlen(p) > EMBKV_WIRE_ADDR_MAX ||
		    ((parse_addr(p, TCP_SCHEME, host, sizeof(host), &port) &&
		      parse_addr(p, RDMA_SCHEME, host, sizeof(host), &port)) ||
		     !port))
			return bad("peers", p,
				   "expected tcp://HOST:PORT or rdma://HOST:PORT");
		o->peers[n++] = p;
	}
	if (!n)
		return bad("peers", arg, "no server");
	o->attr.peers = o->peers;
	o->attr.npeers = n;
	return 0;
}

static int parse_flag(struct opts *o, int c, const char *arg)
{
	const char *name = long_opts[0].name;
	uint64_t v;

	for (const struct option *lo = long_opts; lo->name; lo++)
		if (lo->val == c)
			name = lo->name;
	switch (c) {
	case OPT_LISTEN:
		if (!o->listen_set)
			o->attr.tcp = false; /* only what --listen names */
		o->listen_set = true;
		if (!parse_addr(arg, TCP_SCHEME, o->attr.host,
				sizeof(o->attr.host), &o->attr.port)) {
			if (o->attr.tcp)
				return bad(name, arg, "a second tcp:// address");
			o->attr.tcp = true;
			return 0;
		}
		if (!parse_addr(arg, RDMA_SCHEME, o->attr.rdma_host,
				sizeof(o->attr.rdma_host), &o->attr.rdma_port)) {
			if (o->attr.rdma)
				return bad(name, arg, "a second rdma:// address");
			o->attr.rdma = true;
			return 0;
		}
		return bad(name, arg,
			   "expected tcp://HOST:PORT or rdma://HOST:PORT");
	case OPT_PORT_FILE:
		o->port_file = arg;
		return 0;
	case OPT_THREADS:
	case OPT_IO_THREADS:
	case OPT_MAX_CONNS:
	case OPT_SELF:
		if (parse_u64(arg, c == OPT_SELF ? 0 : 1,
			      c == OPT_THREADS ? EMBKV_OWNER_MAX :
			      c == OPT_IO_THREADS ? EMBKVD_MAX_IO_THREADS :
			      c == OPT_SELF ? EMBKV_WIRE_MAX_SERVERS - 1 :
			      UINT32_MAX, &v))
			return bad(name, arg, "out of range or not a number");
		if (c == OPT_THREADS)
			o->attr.threads = (uint32_t)v;
		else if (c == OPT_IO_THREADS)
			o->attr.io_threads = (uint32_t)v;
		else if (c == OPT_MAX_CONNS)
			o->attr.max_conns = (uint32_t)v;
		else {
			o->attr.self = (uint32_t)v;
			o->self_set = true;
		}
		return 0;
	case OPT_EPOCH:
		if (parse_u64(arg, 1, UINT64_MAX, &o->attr.epoch))
			return bad(name, arg, "expected a number >= 1");
		return 0;
	case OPT_MEMORY_LIMIT:
		if (parse_size(arg, &o->attr.memory_limit))
			return bad(name, arg, "expected BYTES[K|M|G|T]");
		o->memory_limit_set = true;
		return 0;
	case OPT_DATA_DIR:
		o->data_dir = arg;
		o->attr.data_dir = arg;
		return 0;
	case OPT_NO_RESTORE:
		o->attr.no_restore = true;
		return 0;
	case OPT_AUTH_TIMEOUT:
	case OPT_FRAME_TIMEOUT:
	case OPT_MAX_UNAUTH:
		if (parse_u64(arg, 1, c == OPT_MAX_UNAUTH ? 1000000 : 3600000,
			      &v))
			return bad(name, arg, "out of range or not a number");
		if (c == OPT_AUTH_TIMEOUT)
			o->attr.auth_timeout_ms = (uint32_t)v;
		else if (c == OPT_FRAME_TIMEOUT)
			o->attr.frame_timeout_ms = (uint32_t)v;
		else
			o->attr.max_unauth_conns = (uint32_t)v;
		return 0;
	case OPT_INFLIGHT_BYTES:
		if (parse_size(arg, &o->attr.inflight_bytes) ||
		    o->attr.inflight_bytes < EMBKV_WIRE_MAX_BODY)
			return bad(name, arg, "expected BYTES[K|M|G|T], at "
				   "least 64M (the largest body)");
		return 0;
	case OPT_RDMA_REPLY_POOL:
		if (parse_size(arg, &o->attr.rdma_reply_pool) ||
		    o->attr.rdma_reply_pool > (64ull << 30))
			return bad(name, arg, "expected BYTES[K|M|G], at most "
				   "64G");
		return 0;
	case OPT_AUTO_RECOVER:
		if (parse_u64(arg, 1, 86400, &v))
			return bad(name, arg, "expected seconds, 1 to 86400");
		o->attr.auto_recover_s = (uint32_t)v;
		o->member_set = true;
		return 0;
	case OPT_TOKEN_FILE:
		o->token_file = arg;
		o->attr.token_file = arg;
		return 0;
	case OPT_LOG_FILE:
		if (!*arg)
			return bad(name, arg, "empty path");
		o->attr.log_file = arg;
		return 0;
	case OPT_METRICS_LISTEN:
		if (parse_addr(arg, strncmp(arg, HTTP_SCHEME,
					    strlen(HTTP_SCHEME)) ? "" :
					    HTTP_SCHEME, o->attr.metrics_host,
			       sizeof(o->attr.metrics_host),
			       &o->attr.metrics_port))
			return bad(name, arg, "expected HOST:PORT");
		o->attr.metrics = true;
		return 0;
	case OPT_PEERS:
		return parse_peers(o, arg);
	case OPT_ETCD:
		for (const char *p = arg;;) {
			const char *comma = strchr(p, ',');
			size_t len = comma ? (size_t)(comma - p) : strlen(p);

			if (len <= strlen(HTTP_SCHEME) ||
			    strncmp(p, HTTP_SCHEME, strlen(HTTP_SCHEME)))
				return bad(name, arg, "expected http://HOST:PORT"
					   "[,http://HOST:PORT...]");
			if (!comma)
				break;
			p = comma + 1;
		}
		o->attr.etcd = arg;
		return 0;
	case OPT_CLUSTER:
		if (!embkvd_member_cluster_ok(arg))
			return bad(name, arg, "use 1-63 of [A-Za-z0-9_.-]");
		o->attr.cluster = arg;
		o->member_set = true;
		return 0;
	case OPT_ADVERTISE: {
		char host[EMBKVD_HOST_MAX + 1];
		uint16_t port = 0;

		if (strlen(arg) > EMBKV_WIRE_ADDR_MAX ||
		    ((parse_addr(arg, TCP_SCHEME, host, sizeof(host), &port) &&
		      parse_addr(arg, RDMA_SCHEME, host, sizeof(host), &port)) ||
		     !port))
			return bad(name, arg,
				   "expected tcp://HOST:PORT or rdma://HOST:PORT");
		o->attr.advertise = arg;
		o->member_set = true;
		return 0;
	}
	case OPT_MEMBER_TTL:
		if (parse_u64(arg, 2, EMBKVD_MEMBER_TTL_MAX_S, &v))
			return bad(name, arg, "out of range or not a number");
		o->attr.member_ttl_s = (uint32_t)v;
		o->member_set = true;
		return 0;
	case OPT_MEMBER_ID:
		if (parse_u64(arg, 0, UINT32_MAX, &v))
			return bad(name, arg, "out of range or not a number");
		o->attr.member_id = (uint32_t)v;
		o->member_id_set = o->member_set = true;
		return 0;
	case OPT_REPLICA_OF: {
		struct embkv_table_attr a;

		embkv_table_attr_init(&a);
		if (strlen(arg) >= sizeof(a.name))
			return bad(name, arg, "name too long");
		strcpy(a.name, arg);
		if (embkv_table_attr_check(&a))
			return bad(name, arg, "use 1-63 of [A-Za-z0-9_.-]");
		if (o->attr.nreplica_of == REPLICA_OF_MAX)
			return bad(name, arg, "too many --replica-of");
		for (uint32_t i = 0; i < o->attr.nreplica_of; i++)
			if (!strcmp(o->replica_of[i], arg))
				return bad(name, arg, "given twice");
		o->replica_of[o->attr.nreplica_of++] = arg;
		o->attr.replica_of = o->replica_of;
		return 0;
	}
	case OPT_PRIMARY_SERVERS:
		if (!*arg || strncmp(arg, "tcp://", 6))
			return bad(name, arg, "expected tcp://HOST:PORT[,...]");
		o->attr.primary_servers = arg;
		return 0;
	case OPT_REPL_LOG_ROWS:
		if (parse_u64(arg, 1024, 1u << 30, &v))
			return bad(name, arg, "expected a number of updates, "
				   "1024 to 1073741824");
		o->attr.repl_log_rows = v;
		return 0;
	case OPT_DEFAULT_TABLE: {
		struct embkv_table_attr a;

		embkv_table_attr_init(&a);
		if (strlen(arg) >= sizeof(a.name))
			return bad(name, arg, "name too long");
		strcpy(a.name, arg);
		if (embkv_table_attr_check(&a))
			return bad(name, arg, "use 1-63 of [A-Za-z0-9_.-]");
		o->attr.default_table = arg;
		return 0;
	}
	default:
		return -EINVAL;
	}
}

/* mkdir -p, then check that we may create files there. */
static int data_dir_prepare(const char *dir)
{
	char path[PATH_BYTES];
	struct stat st;
	size_t len = strlen(dir);

	if (!len || len >= sizeof(path))
		return bad("data-dir", dir, "bad path");
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; ; p++) {
		char save = *p;

		if (save != '/' && save)
			continue;
		*p = '\0';
		if (mkdir(path, 0755) && errno != EEXIST)
			return bad("data-dir", dir, strerror(errno));
		*p = save;
		if (!save)
			break;
	}
	if (stat(dir, &st) || !S_ISDIR(st.st_mode))
		return bad("data-dir", dir, "not a directory");
	if (access(dir, W_OK | X_OK))
		return bad("data-dir", dir, "not writable");
	return 0;
}

static int token_read(struct opts *o)
{
	FILE *f = fopen(o->token_file, "rb");
	size_t n;

	if (!f)
		return bad("token-file", o->token_file, strerror(errno));
	o->token = malloc(TOKEN_MAX + 1);
	if (!o->token) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(o->token, 1, TOKEN_MAX + 1, f);
	fclose(f);
	if (n > TOKEN_MAX)
		return bad("token-file", o->token_file, "longer than 4096 bytes");
	while (n && (o->token[n - 1] == '\n' || o->token[n - 1] == '\r'))
		n--;
	if (!n)
		return bad("token-file", o->token_file, "empty");
	o->attr.token = o->token;
	o->attr.token_len = n;
	return 0;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int c;

	embkvd_attr_init(&o->attr);
	o->attr.threads = cpus < 1 ? 1 :
			  cpus > EMBKV_OWNER_MAX ? EMBKV_OWNER_MAX :
						   (uint32_t)cpus;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (c == OPT_VERSION) {
			printf("embkvd %s\n", EMBKV_VERSION);
			exit(0);
		}
		if (c == '?') {
			fprintf(stderr, "embkvd: unknown flag '%s' (see "
				"--help)\n", argv[optind - 1]);
			return -EINVAL;
		}
		if (c == ':') {
			fprintf(stderr, "embkvd: flag '%s' needs a value\n",
				argv[optind - 1]);
			return -EINVAL;
		}
		if (parse_flag(o, c, optarg))
			return -EINVAL;
	}
	if (optind < argc) {
		fprintf(stderr, "embkvd: unexpected argument '%s' (see "
			"--help)\n", argv[optind]);
		return -EINVAL;
	}
	if (o->attr.peers && !o->self_set) {
		fprintf(stderr, "embkvd: --peers needs --self\n");
		return -EINVAL;
	}
	if (o->self_set && !o->attr.peers) {
		fprintf(stderr, "embkvd: --self needs --peers\n");
		return -EINVAL;
	}
	if (o->attr.peers && o->attr.self >= o->attr.npeers) {
		fprintf(stderr, "embkvd: --self %u but --peers has %u "
			"servers\n", o->attr.self, o->attr.npeers);
		return -EINVAL;
	}
	if (o->member_set && !o->attr.etcd) {
		fprintf(stderr, "embkvd: --cluster, --advertise, --member-id, "
			"--member-ttl and --auto-recover need --etcd\n");
		return -EINVAL;
	}
	if (o->attr.etcd) {
		if (!o->attr.cluster)
			o->attr.cluster = EMBKVD_MEMBER_CLUSTER_DEFAULT;
		if (!o->attr.member_ttl_s)
			o->attr.member_ttl_s = EMBKVD_MEMBER_TTL_S;
		if (!o->member_id_set)
			o->attr.member_id = o->self_set ? o->attr.self : 0;
	}
	if (o->attr.nreplica_of && !o->attr.primary_servers) {
		fprintf(stderr, "embkvd: --replica-of needs --primary-servers\n");
		return -EINVAL;
	}
	if (o->attr.primary_servers && !o->attr.nreplica_of) {
		fprintf(stderr, "embkvd: --primary-servers needs --replica-of\n");
		return -EINVAL;
	}
	if (o->attr.nreplica_of &&
	    (o->attr.etcd || o->attr.peers || o->data_dir)) {
		fprintf(stderr, "embkvd: a replica (--replica-of) stands "
			"alone: not with --etcd, --peers or --data-dir\n");
		return -EINVAL;
	}
	if (o->data_dir && data_dir_prepare(o->data_dir))
		return -EINVAL;
	if (o->token_file && token_read(o))
		return -EINVAL;
	if (!o->memory_limit_set)
		o->attr.memory_limit = default_memory_limit();
	return 0;
}

static void opts_free(struct opts *o)
{
	if (o->token) {
		explicit_bzero(o->token, TOKEN_MAX + 1);
		free(o->token);
	}
	free(o->peers);
	free(o->peers_arg);
}

static int port_file_write(const char *path, uint16_t port)
{
	char tmp[PATH_BYTES];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%u\n", port);
	if (fclose(f) || rename(tmp, path)) {
		unlink(tmp);
		return -errno;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct embkvd *s = NULL;
	char limit[32];
	struct opts o;
	int rc;

	memset(&o, 0, sizeof(o));
	if (parse_args(&o, argc, argv)) {
		opts_free(&o);
		return EXIT_USAGE;
	}
	if (o.attr.log_file) {
		rc = embkvd_log_open(o.attr.log_file);
		if (rc) {
			fprintf(stderr, "embkvd: cannot open --log-file %s: "
				"%s\n", o.attr.log_file, strerror(-rc));
			opts_free(&o);
			return EXIT_FAILURE;
		}
	}
	embkvd_log("embkvd %s starting (pid %ld)", EMBKV_VERSION,
		   (long)getpid());
	rc = embkvd_create(&o.attr, &s);
	if (rc) {
		embkvd_log_at(EMBKVD_ERROR, "cannot start: %s", embkv_strerror(rc));
		opts_free(&o);
		return EXIT_FAILURE;
	}
	if (o.port_file) {
		rc = port_file_write(o.port_file,
				     o.attr.tcp ? s->port : s->rdma_port);
		if (rc) {
			embkvd_log_at(EMBKVD_ERROR, "cannot write --port-file %s: %s",
				   o.port_file, embkv_strerror(rc));
			goto out;
		}
	}
	if (o.attr.memory_limit)
		snprintf(limit, sizeof(limit), "%llu MiB",
			 (unsigned long long)(o.attr.memory_limit >> 20));
	else
		snprintf(limit, sizeof(limit), "none");
	embkvd_log("%u owner threads, %u I/O threads, epoch %llu, server %u "
		   "of %u, table memory limit %s%s",
		   embkv_owner_count(s->owners), s->nio,
		   (unsigned long long)s->map->epoch, s->map->self,
		   s->map->nservers, limit,
		   s->auth ? ", token required" : "");
	if (o.attr.tcp)
		printf(strchr(o.attr.host, ':') ?
			       "embkvd: listening on tcp://[%s]:%u\n" :
			       "embkvd: listening on tcp://%s:%u\n",
		       o.attr.host, s->port);
	if (o.attr.rdma)
		printf(strchr(o.attr.rdma_host, ':') ?
			       "embkvd: listening on rdma://[%s]:%u\n" :
			       "embkvd: listening on rdma://%s:%u\n",
		       o.attr.rdma_host, s->rdma_port);
	if (o.attr.metrics)
		printf(strchr(o.attr.metrics_host, ':') ?
			       "embkvd: metrics on http://[%s]:%u/metrics\n" :
			       "embkvd: metrics on http://%s:%u/metrics\n",
		       o.attr.metrics_host, s->metrics_port);
	fflush(stdout);
	rc = embkvd_run(s);
	if (rc)
		embkvd_log_at(EMBKVD_ERROR, "failed: %s", embkv_strerror(rc));
out:
	embkvd_destroy(s);
	opts_free(&o);
	return rc ? EXIT_FAILURE : EXIT_SUCCESS;
}
