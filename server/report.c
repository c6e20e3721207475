/*
 * embkvd reports: the STATS and SHARD_MAP replies.
 *
 * What: STATS gathers the server's counters (summed over I/O threads),
 * rates over the last few seconds, latency quantiles (merged histograms)
 * and, per table, the store's totals plus the service's request counters.
 * SHARD_MAP describes the static placement: partition p on server p % S;
 * asked for no table (EMBKV_WIRE_TABLE_ALL) it gives the membership alone
 * (every server's address and which one this is), so that a client given
 * one address learns the others.
 *
 * Why here: both read many things and change none; they run on the I/O
 * thread that received them, inside an RCU read-side section for the
 * catalog, and never touch a partition (store totals are the owners'
 * recent values, read relaxed).
 *
 * Invariant: counter ids are net/wire.h's; a table's group has
 * TABLE_STATS pairs, the server's at most SERVER_STATS.
 */
#include "server/replica.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "server/daemon.h"
#include "server/ckpt.h"
#include "server/verbs.h"

#define SERVER_STATS 40u
#define TABLE_STATS 24u
#define NS_PER_S 1000000000ull
#define P50 0.50
#define P99 0.99

struct stat_fill {
	struct embkv_wire_stat *p;
	uint16_t n;
};

static void put(struct stat_fill *f, enum embkv_wire_stat_id id, uint64_t v)
{
	f->p[f->n].id = (uint16_t)id;
	f->p[f->n].value = v;
	f->n++;
}

void embkvd_io_stats_sum(struct embkvd *s, struct embkv_io_stats *sum,
			 struct embkv_hist *pull, struct embkv_hist *push)
{
	memset(sum, 0, sizeof(*sum));
	memset(pull, 0, sizeof(*pull));
	memset(push, 0, sizeof(*push));
	for (uint32_t i = 0; i < s->nio; i++) {
		const struct embkv_io_stats *st = &s->io[i].st;

		sum->requests += embkv_stat_read(&st->requests);
		sum->errors += embkv_stat_read(&st->errors);
		sum->misses += embkv_stat_read(&st->misses);
		sum->stale += embkv_stat_read(&st->stale);
		sum->auth_failures += embkv_stat_read(&st->auth_failures);
		sum->bytes_in += embkv_stat_read(&st->bytes_in);
		sum->bytes_out += embkv_stat_read(&st->bytes_out);
		sum->pulls += embkv_stat_read(&st->pulls);
		sum->pull_keys += embkv_stat_read(&st->pull_keys);
		sum->pushes += embkv_stat_read(&st->pushes);
		sum->push_keys += embkv_stat_read(&st->push_keys);
		embkv_hist_merge(pull, &st->pull_us);
		embkv_hist_merge(push, &st->push_us);
	}
}

static void server_stats(struct embkvd *s, struct stat_fill *f)
{
	struct embkv_io_stats sum;
	struct embkv_hist pull, push;
	uint64_t now = embkv_now_ns(), cur[EMBKV_RATE_COUNT],
		 rate[EMBKV_RATE_COUNT];
	struct embkv_catalog_entry *const *e;
	struct embkvd_ckpt_last last;

	embkvd_io_stats_sum(s, &sum, &pull, &push);
	cur[EMBKV_RATE_PULLS] = sum.pulls;
	cur[EMBKV_RATE_PUSHES] = sum.pushes;
	cur[EMBKV_RATE_PULL_KEYS] = sum.pull_keys;
	cur[EMBKV_RATE_PUSH_KEYS] = sum.push_keys;
	embkv_rates_get(&s->rates, now, cur, rate);

	put(f, EMBKV_WIRE_STAT_CONNECTIONS,
	    __atomic_load_n(&s->conns, __ATOMIC_RELAXED));
	put(f, EMBKV_WIRE_STAT_UPTIME_S, (now - s->start_ns) / NS_PER_S);
	put(f, EMBKV_WIRE_STAT_REQUESTS, sum.requests);
	put(f, EMBKV_WIRE_STAT_ERRORS, sum.errors);
	put(f, EMBKV_WIRE_STAT_MISSES, sum.misses);
	put(f, EMBKV_WIRE_STAT_STALE_EPOCH, sum.stale);
	put(f, EMBKV_WIRE_STAT_AUTH_FAILURES, sum.auth_failures);
	put(f, EMBKV_WIRE_STAT_BYTES_IN, sum.bytes_in);
	put(f, EMBKV_WIRE_STAT_BYTES_OUT, sum.bytes_out);
	put(f, EMBKV_WIRE_STAT_PULLS, sum.pulls);
	put(f, EMBKV_WIRE_STAT_PULL_KEYS, sum.pull_keys);
	put(f, EMBKV_WIRE_STAT_PUSHES, sum.pushes);
	put(f, EMBKV_WIRE_STAT_PUSH_KEYS, sum.push_keys);
	put(f, EMBKV_WIRE_STAT_PULLS_PER_S, rate[EMBKV_RATE_PULLS]);
	put(f, EMBKV_WIRE_STAT_PUSHES_PER_S, rate[EMBKV_RATE_PUSHES]);
	put(f, EMBKV_WIRE_STAT_PULL_KEYS_PER_S, rate[EMBKV_RATE_PULL_KEYS]);
	put(f, EMBKV_WIRE_STAT_PUSH_KEYS_PER_S, rate[EMBKV_RATE_PUSH_KEYS]);
	put(f, EMBKV_WIRE_STAT_PULL_P50_US, embkv_hist_quantile(&pull, P50));
	put(f, EMBKV_WIRE_STAT_PULL_P99_US, embkv_hist_quantile(&pull, P99));
	put(f, EMBKV_WIRE_STAT_PUSH_P50_US, embkv_hist_quantile(&push, P50));
	put(f, EMBKV_WIRE_STAT_PUSH_P99_US, embkv_hist_quantile(&push, P99));
	put(f, EMBKV_WIRE_STAT_TABLES, embkv_catalog_snapshot(s->cat, &e));
	put(f, EMBKV_WIRE_STAT_MEM_BYTES, embkv_catalog_bytes(s->cat));
	put(f, EMBKV_WIRE_STAT_MEM_LIMIT, embkv_catalog_memory_limit(s->cat));
	put(f, EMBKV_WIRE_STAT_EPOCH, embkvd_epoch(s));
	put(f, EMBKV_WIRE_STAT_OWNER_THREADS, embkv_owner_count(s->owners));
	put(f, EMBKV_WIRE_STAT_IO_THREADS, s->nio);
	if (s->obpool) {
		struct embkvd_obpool_stats ps;

		embkvd_obpool_stats(s->obpool, &ps);
		put(f, EMBKV_WIRE_STAT_RDMA_REPLY_REGS, ps.registrations);
		put(f, EMBKV_WIRE_STAT_RDMA_REPLY_POOL_BYTES, ps.idle_bytes);
	}
	embkvd_ckpt_last(s->ckpt, &last);
	if (last.id) {
		uint64_t wall = (uint64_t)time(NULL) * 1000u;

		put(f, EMBKV_WIRE_STAT_CKPT_ID, last.id);
		put(f, EMBKV_WIRE_STAT_CKPT_AGE_S,
		    wall > last.id ? (wall - last.id) / 1000u : 0);
		put(f, EMBKV_WIRE_STAT_CKPT_DURATION_MS, last.duration_ms);
		put(f, EMBKV_WIRE_STAT_CKPT_BYTES, last.bytes);
	}
}

static void table_stats(struct embkvd *s, const struct embkv_catalog_entry *e,
			struct stat_fill *f)
{
	const struct embkv_table_counters *ctr = &e->ctr;
	struct embkv_table_stats st;
	uint64_t lag_n, lag_ms, snaps;

	if (e->replica &&
	    embkvd_replica_lag(s->replica, e, &lag_n, &lag_ms, &snaps)) {
		put(f, EMBKV_WIRE_STAT_REPL_LAG_UPDATES, lag_n);
		put(f, EMBKV_WIRE_STAT_REPL_LAG_MS, lag_ms);
		put(f, EMBKV_WIRE_STAT_REPL_SNAPSHOTS, snaps);
	}

	embkv_table_get_stats(e->table, &st);
	put(f, EMBKV_WIRE_STAT_ROWS, st.rows);
	put(f, EMBKV_WIRE_STAT_CAPACITY, st.capacity);
	put(f, EMBKV_WIRE_STAT_MEM_BYTES, st.bytes);
	put(f, EMBKV_WIRE_STAT_PARTITIONS, e->table->nloaded);
	put(f, EMBKV_WIRE_STAT_RDMA_BYTES, embkvd_regions_bytes(e));
	put(f, EMBKV_WIRE_STAT_HITS, st.sum.hits);
	put(f, EMBKV_WIRE_STAT_PULL_MISSES, st.sum.misses);
	put(f, EMBKV_WIRE_STAT_INSERTS, st.sum.inserts);
	put(f, EMBKV_WIRE_STAT_EVICTIONS, st.sum.evictions);
	put(f, EMBKV_WIRE_STAT_ADMIT_REJECTS, st.sum.admit_rejects);
	put(f, EMBKV_WIRE_STAT_PULLS, embkv_stat_read(&ctr->pulls));
	put(f, EMBKV_WIRE_STAT_PULL_KEYS, embkv_stat_read(&ctr->pull_keys));
	put(f, EMBKV_WIRE_STAT_PUSHES, embkv_stat_read(&ctr->pushes));
	put(f, EMBKV_WIRE_STAT_PUSH_KEYS, embkv_stat_read(&ctr->push_keys));
	put(f, EMBKV_WIRE_STAT_GRADS_DROPPED, st.sum.push_dropped);
	put(f, EMBKV_WIRE_STAT_ASSIGN_KEYS, st.sum.assigns);
	put(f, EMBKV_WIRE_STAT_ERASE_KEYS, st.sum.erases);
}

void embkvd_report_stats(struct embkvd_conn *c, uint64_t req_id,
			 uint32_t table_id, uint64_t uid)
{
	struct embkvd *s = c->io->srv;
	struct embkv_catalog_entry *const *e;
	struct embkv_catalog_entry *one = NULL;
	struct embkv_wire_stats_group *g = NULL;
	struct embkv_wire_stat *pairs = NULL;
	struct stat_fill f;
	uint32_t ng = 0, n;
	uint8_t *body;
	size_t len;
	int rc = -ENOMEM;

	if (table_id != EMBKV_WIRE_TABLE_ALL) {
		one = embkvd_svc_table_get(c, req_id, table_id, uid);
		if (!one)
			return;
	}
	rcu_read_lock();
	n = embkv_catalog_snapshot(s->cat, &e);
	if (one) {
		e = (struct embkv_catalog_entry *const *)&one;
		n = 1;
	}
	g = calloc((size_t)n + 1, sizeof(*g));
	pairs = calloc(SERVER_STATS + (size_t)n * TABLE_STATS, sizeof(*pairs));
	if (!g || !pairs) {
		rcu_read_unlock();
		goto reply;
	}
	f.p = pairs;
	if (table_id == EMBKV_WIRE_TABLE_ALL) {
		f.n = 0;
		server_stats(s, &f);
		g[ng].table_id = EMBKV_WIRE_TABLE_ALL;
		g[ng].n = f.n;
		g[ng++].stats = f.p;
		f.p += f.n;
	}
	for (uint32_t i = 0; i < n; i++) {
		f.n = 0;
		table_stats(s, e[i], &f);
		g[ng].table_id = e[i]->id;
		g[ng].n = f.n;
		g[ng++].stats = f.p;
		f.p += f.n;
	}
	rcu_read_unlock();
	rc = embkv_wire_stats_size(g, ng, &len);
	if (!rc)
		rc = embkvd_conn_reply(c, req_id, EMBKV_WIRE_OP_STATS |
				       EMBKV_WIRE_OP_REPLY, (uint32_t)len,
				       &body);
	if (!rc)
		embkv_wire_stats_encode(g, ng, body, len);
reply:
	if (rc)
		embkvd_conn_error(c, req_id, rc, false,
				  "cannot report stats: %s",
				  embkv_strerror(rc));
	free(pairs);
	free(g);
	embkv_catalog_entry_put(one);
}

/* Encodes m and sends it as the reply to req_id (or an ERROR). */
static void shard_map_reply(struct embkvd_conn *c, uint64_t req_id,
			    const struct embkv_wire_shard_map *m)
{
	uint8_t *body;
	size_t len;
	int rc;

	rc = embkv_wire_shard_map_size(m, &len);
	if (!rc)
		rc = embkvd_conn_reply(c, req_id,
				       EMBKV_WIRE_OP_SHARD_MAP |
					      EMBKV_WIRE_OP_REPLY,
				      (uint32_t)len, &body);
	if (!rc)
		embkv_wire_shard_map_encode(m, body, len);
	else
		embkvd_conn_error(c, req_id, rc, false,
				  "cannot encode the shard map: %s",
				  embkv_strerror(rc));
}

void embkvd_report_shard_map(struct embkvd_conn *c, uint64_t req_id,
			     uint32_t table_id, uint64_t uid)
{
	struct embkvd *s = c->io->srv;
	struct embkv_catalog_entry *e = NULL;
	struct embkv_wire_shard_map m = { .table_id = table_id };
	const struct embkvd_map *cur;
	const char **servers = NULL;
	uint16_t *map = NULL;

	if (table_id != EMBKV_WIRE_TABLE_ALL) {
		e = embkvd_svc_table_get(c, req_id, table_id, uid);
		if (!e)
			return;
		m.n_partitions = e->table->nparts;
		map = malloc(sizeof(*map) * m.n_partitions);
		if (!map) {
			embkv_catalog_entry_put(e);
			embkvd_conn_error(c, req_id, -ENOMEM, false,
					  "no memory for a shard map");
			return;
		}
	}
	rcu_read_lock();
	/* The membership (no table): the server's map, whose epoch is 0 in
	 * a cluster coordinated by etcd. */
	cur = e ? embkvd_table_map(s, e) : embkvd_map_cur(&s->map);
	for (uint32_t p = 0; p < m.n_partitions; p++)
		map[p] = (uint16_t)embkvd_map_server(cur, p);
	m.epoch = cur->epoch;
	m.n_servers = cur->nservers;
	m.self = cur->self;
	m.servers = (const char *const *)cur->servers;
	m.part_server = map;
	if (cur->self == EMBKVD_MAP_NOT_MEMBER) {
		/* A table none of whose partitions is here: this server is
		 * named last, holding none, so that self stays true. */
		const struct embkvd_map *me = embkvd_map_cur(&s->map);

		servers = me->self < me->nservers
			  ? malloc(sizeof(*servers) * (cur->nservers + 1u))
			  : NULL;
		if (servers) {
			memcpy(servers, cur->servers,
			       sizeof(*servers) * cur->nservers);
			servers[cur->nservers] = me->servers[me->self];
			m.servers = servers;
			m.self = cur->nservers;
			m.n_servers = cur->nservers + 1u;
		}
	}
	if (!servers && cur->self == EMBKVD_MAP_NOT_MEMBER)
		embkvd_conn_error(c, req_id, -ENOMEM, false,
				  "no memory for a shard map");
	else
		shard_map_reply(c, req_id, &m);
	rcu_read_unlock();
	free(servers);
	free(map);
	embkv_catalog_entry_put(e);
}
