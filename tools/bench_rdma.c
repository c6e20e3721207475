/*
 * embkv-bench, rdma-count mode: what a one-sided pull costs, counted, not
 * timed (under soft-RoCE emulation times say nothing about hardware).
 *
 * Against running embkvd servers on rdma:// (tools/bench-rdma.sh starts
 * them in the test VM): a loader client creates the table and inserts
 * --keys rows; then a fresh client (empty location cache) pulls them all
 * in batches (cold) and pulls them again (warm). From the client's
 * counters (embkv_client_counters) it reports per pulled key:
 *   round trips: chains of READs each key waited for (a chain is one
 *                doorbell, all keys of a batch at once);
 *   READs and bytes moved by them;
 * beside the payload bytes (dim x 4). Batch-level round trips (chains
 * per batch) are reported too. The load (train pulls of new keys, served
 * by RPC: PULL replies over 64 KiB each) reports the servers' PULL
 * requests and the reply buffers they registered meanwhile (their
 * rdma_reply_regs: once per pooled buffer, not per reply).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <embkv/embkv.h>
#include "tools/bench_rdma.h"

#define RC_DEFAULT_KEYS 20000u
#define RC_DEFAULT_DIM 64u
#define RC_DEFAULT_BATCH 1024u
#define RC_PARTITIONS 64u
#define RC_MAX_SERVERS 16u
#define RC_TABLE "rdma_count"

struct rc_opts {
	uint32_t keys, dim, batch, nsrv;
	const char *srv[RC_MAX_SERVERS];
	char *list;
	int json;
};

struct rc_server_sums {
	uint64_t pulls, reply_regs;
};

struct rc_pass {
	double round_trips_per_key, reads_per_key, bytes_per_key;
	double round_trips_per_batch, onesided_fraction;
	uint64_t torn, fallbacks;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: embkv-bench --mode rdma-count --servers rdma://H:P,...\n"
		"  --keys N   rows (default %u)\n"
		"  --dim D    floats per row (default %u)\n"
		"  --batch B  keys per pull (default %u)\n"
		"  --json     one JSON object on stdout\n",
		RC_DEFAULT_KEYS, RC_DEFAULT_DIM, RC_DEFAULT_BATCH);
}

static int parse(int argc, char **argv, struct rc_opts *o)
{
	static const struct option lo[] = {
		{ "mode", required_argument, 0, 'M' },
		{ "servers", required_argument, 0, 's' },
		{ "keys", required_argument, 0, 'k' },
		{ "dim", required_argument, 0, 'd' },
		{ "batch", required_argument, 0, 'b' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	char *save = NULL, *tok;
	int c;

	memset(o, 0, sizeof(*o));
	o->keys = RC_DEFAULT_KEYS;
	o->dim = RC_DEFAULT_DIM;
	o->batch = RC_DEFAULT_BATCH;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'M':
			break;
		case 's':
			o->list = optarg;
			break;
		case 'k':
			o->keys = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'd':
			o->dim = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'b':
			o->batch = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'j':
			o->json = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o->list || !o->keys || !o->dim || !o->batch) {
		usage(stderr);
		return 2;
	}
	for (tok = strtok_r(o->list, ",", &save); tok && o->nsrv < RC_MAX_SERVERS;
	     tok = strtok_r(NULL, ",", &save))
		o->srv[o->nsrv++] = tok;
	return o->nsrv ? 0 : 2;
}

static struct embkv_client *rc_client(const struct rc_opts *o)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;
	int rc;

	embkv_client_attr_init(&ca);
	ca.servers = o->srv;
	ca.nservers = o->nsrv;
	rc = embkv_client_create(&ca, &c);
	if (rc)
		fprintf(stderr, "embkv-bench: client: %s\n", embkv_strerror(rc));
	return c;
}

/* Pulls every key in batches; the counters' difference over it. */
static int rc_pull_all(struct embkv_table_handle *t, struct embkv_client *c,
		       const struct rc_opts *o, const uint64_t *keys,
		       float *out, struct rc_pass *p)
{
	struct embkv_client_counters a, b;
	uint32_t nb = 0;
	double n;

	embkv_client_counters(c, &a);
	for (uint32_t at = 0; at < o->keys; at += o->batch, nb++) {
		uint32_t m = o->keys - at < o->batch ? o->keys - at : o->batch;
		int rc = embkv_pull(t, m, keys + at, out, NULL, EMBKV_MODE_INFER,
				    NULL);

		if (rc) {
			fprintf(stderr, "embkv-bench: pull: %s\n",
				embkv_strerror(rc));
			return rc;
		}
	}
	embkv_client_counters(c, &b);
	n = (double)(b.keys_onesided - a.keys_onesided);
	if (n == 0) {
		fprintf(stderr, "embkv-bench: no key was pulled one-sided "
			"(servers not on rdma://?)\n");
		return -ENOTSUP;
	}
	p->round_trips_per_key = (double)(b.key_round_trips -
					  a.key_round_trips) / n;
	p->reads_per_key = (double)(b.read_wrs - a.read_wrs) / n;
	p->bytes_per_key = (double)(b.read_bytes - a.read_bytes) / n;
	p->round_trips_per_batch = (double)(b.round_trips - a.round_trips) / nb;
	p->onesided_fraction = n / o->keys;
	p->torn = b.torn_retries - a.torn_retries;
	p->fallbacks = b.fallbacks - a.fallbacks;
	return 0;
}

static void rc_on_stat(void *ctx, uint32_t server, const char *table,
		       const char *name, uint64_t value)
{
	struct rc_server_sums *s = ctx;

	(void)server;
	if (table)
		return;
	if (!strcmp(name, "pulls"))
		s->pulls += value;
	else if (!strcmp(name, "rdma_reply_regs"))
		s->reply_regs += value;
}

static int rc_server_sums(struct embkv_client *c, struct rc_server_sums *s)
{
	memset(s, 0, sizeof(*s));
	return embkv_stats(c, rc_on_stat, s);
}

static int rc_load(const struct rc_opts *o, const uint64_t *keys, float *out,
		   struct rc_server_sums *load)
{
	struct rc_server_sums s0, s1;
	struct embkv_client *c = rc_client(o);
	struct embkv_table_handle *t = NULL;
	struct embkv_table_attr ta;
	int rc;

	if (!c)
		return 1;
	embkv_table_attr_init(&ta);
	snprintf(ta.name, sizeof(ta.name), "%s", RC_TABLE);
	ta.dim = o->dim;
	ta.partitions = RC_PARTITIONS;
	ta.capacity = 2ull * o->keys + 4096;
	ta.init.type = EMBKV_INIT_NORMAL;
	rc = embkv_table_create_remote(c, &ta);
	if (rc == EMBKV_ETABLEEXISTS)
		rc = 0;
	if (!rc)
		rc = embkv_table_open(c, RC_TABLE, &t);
	if (!rc)
		rc = rc_server_sums(c, &s0);
	for (uint32_t at = 0; !rc && at < o->keys; at += o->batch) {
		uint32_t m = o->keys - at < o->batch ? o->keys - at : o->batch;

		rc = embkv_pull(t, m, keys + at, out, NULL, EMBKV_MODE_TRAIN,
				NULL);
	}
	if (!rc)
		rc = rc_server_sums(c, &s1);
	if (!rc) {
		load->pulls = s1.pulls - s0.pulls;
		load->reply_regs = s1.reply_regs - s0.reply_regs;
	}
	if (rc)
		fprintf(stderr, "embkv-bench: loading: %s\n", embkv_strerror(rc));
	embkv_table_close(t);
	embkv_client_destroy(c);
	return rc ? 1 : 0;
}

int bench_rdma_main(int argc, char **argv)
{
	struct rc_opts o;
	struct rc_pass cold, warm;
	struct rc_server_sums load;
	struct embkv_client *c = NULL;
	struct embkv_table_handle *t = NULL;
	uint64_t *keys;
	float *out;
	double payload;
	int rc = parse(argc, argv, &o);

	if (rc)
		return rc;
	keys = malloc((size_t)o.keys * sizeof(*keys));
	out = malloc((size_t)o.batch * o.dim * sizeof(float));
	if (!keys || !out)
		return 1;
	for (uint32_t i = 0; i < o.keys; i++)
		keys[i] = 0x9e3779b97f4a7c15ull * (i + 1);
	rc = rc_load(&o, keys, out, &load);
	if (rc)
		goto out;
	rc = 1;
	c = rc_client(&o); /* fresh: empty location cache */
	if (!c || embkv_table_open(c, RC_TABLE, &t))
		goto out;
	if (rc_pull_all(t, c, &o, keys, out, &cold) ||
	    rc_pull_all(t, c, &o, keys, out, &warm))
		goto out;
	payload = (double)o.dim * sizeof(float);
	if (o.json) {
		printf("{\"mode\": \"rdma-count\", \"keys\": %u, \"dim\": %u, "
		       "\"batch\": %u, \"servers\": %u, "
		       "\"cold_round_trips_per_key\": %.4f, "
		       "\"cold_reads_per_key\": %.4f, "
		       "\"cold_wire_bytes_per_row\": %.2f, "
		       "\"cold_round_trips_per_batch\": %.2f, "
		       "\"warm_round_trips_per_key\": %.4f, "
		       "\"warm_reads_per_key\": %.4f, "
		       "\"warm_wire_bytes_per_row\": %.2f, "
		       "\"warm_round_trips_per_batch\": %.2f, "
		       "\"payload_bytes_per_row\": %.0f, "
		       "\"onesided_fraction\": %.4f, \"torn_retries\": %llu, "
		       "\"fallbacks\": %llu, \"load_pull_requests\": %llu, "
		       "\"load_reply_registrations\": %llu}\n",
		       o.keys, o.dim, o.batch, o.nsrv,
		       cold.round_trips_per_key, cold.reads_per_key,
		       cold.bytes_per_key, cold.round_trips_per_batch,
		       warm.round_trips_per_key, warm.reads_per_key,
		       warm.bytes_per_key, warm.round_trips_per_batch, payload,
		       warm.onesided_fraction,
		       (unsigned long long)(cold.torn + warm.torn),
		       (unsigned long long)(cold.fallbacks + warm.fallbacks),
		       (unsigned long long)load.pulls,
		       (unsigned long long)load.reply_regs);
	} else {
		printf("rdma-count: %u keys, dim %u, batches of %u, %u servers "
		       "(counts, not times)\n", o.keys, o.dim, o.batch, o.nsrv);
		printf("  %-5s %12s %12s %14s %14s\n", "pass", "rtt/key",
		       "READs/key", "bytes/row", "rtt/batch");
		printf("  %-5s %12.4f %12.4f %14.2f %14.2f\n", "cold",
		       cold.round_trips_per_key, cold.reads_per_key,
		       cold.bytes_per_key, cold.round_trips_per_batch);
		printf("  %-5s %12.4f %12.4f %14.2f %14.2f\n", "warm",
		       warm.round_trips_per_key, warm.reads_per_key,
		       warm.bytes_per_key, warm.round_trips_per_batch);
		printf("  payload %.0f bytes/row; warm wire/payload %.3f\n",
		       payload, warm.bytes_per_key / payload);
		printf("  load: %llu PULL requests served by RPC, %llu reply "
		       "buffers registered\n", (unsigned long long)load.pulls,
		       (unsigned long long)load.reply_regs);
	}
	rc = 0;
out:
	embkv_table_close(t);
	embkv_client_destroy(c);
	free(out);
	free(keys);
	return rc;
}
