/*
 * embkvd's shard map: which server holds each partition, under which epoch.
 * The one place that decides placement; batch planning, SHARD_MAP,
 * STATS, TABLE_REGIONS and table creation (which partitions to load) all
 * ask it, so a map learned from the cluster later replaces it in one spot.
 *
 * Threads. A map is immutable once published. Readers take the current
 * one with embkvd_map_cur() inside rcu_read_lock() (any registered
 * thread) and may use it until rcu_read_unlock(). embkvd_map_publish()
 * replaces it (one writer at a time) and frees the old one after a grace
 * period.
 */
#ifndef EMBKV_SERVER_SHARDMAP_H
#define EMBKV_SERVER_SHARDMAP_H

#include <stdbool.h>
#include <stdint.h>
#include <urcu.h>

#define EMBKVD_MAP_NOT_MEMBER UINT32_MAX /* self: this server holds none */

struct embkvd_map {
	uint64_t epoch;          /* >= 1; 0 only for the membership of a
				    cluster whose tables etcd coordinates
				    (each table then has its own map) */
	uint32_t nservers;       /* >= 1 */
	uint32_t self;           /* this server's index in servers, or
				    EMBKVD_MAP_NOT_MEMBER */
	char **servers;          /* nservers addresses, as clients dial them */
	uint32_t nparts;         /* entries of part_server; 0: none */
	uint16_t *part_server;   /* partition -> server index; NULL: p % S */
	uint32_t spread;         /* owner rule's divisor: the server count
				    the partitions were first placed over
				    (nservers unless set); fixed for a
				    table's life, so that a partition keeps
				    its owner thread when servers come and
				    go */
	struct rcu_head rcu;
};

/* Copies servers. 0, -EINVAL (n == 0, self >= n, a NULL address) or
 * -ENOMEM. The caller owns *out until _destroy or _publish. */
int embkvd_map_create(uint64_t epoch, const char *const *servers, uint32_t n,
		      uint32_t self, struct embkvd_map **out);
void embkvd_map_destroy(struct embkvd_map *m); /* NULL is a no-op */

/*
 * A table's own map (cluster mode): placement as etcd records it. servers
 * and part_server (nparts entries, each < n) are copied; self may be
 * EMBKVD_MAP_NOT_MEMBER. 0, -EINVAL or -ENOMEM.
 */
int embkvd_map_create_placed(uint64_t epoch, const char *const *servers,
			     uint32_t n, uint32_t self,
			     const uint16_t *part_server, uint32_t nparts,
			     struct embkvd_map **out);

/* The server that holds partition part: the placement rule. */
static inline uint32_t embkvd_map_server(const struct embkvd_map *m,
					 uint32_t part)
{
	return m->part_server && part < m->nparts ? m->part_server[part]
						  : part % m->nservers;
}

static inline bool embkvd_map_mine(const struct embkvd_map *m, uint32_t part)
{
	return embkvd_map_server(m, part) == m->self;
}

/* Of this server's nowners owner threads, the one that runs part: (p /
 * spread) % T spreads a server's partitions of the first placement (p %
 * spread) evenly over its owners, and never changes with the map (a
 * partition's batches must never run on two owners at once). */
static inline uint32_t embkvd_map_owner(const struct embkvd_map *m,
					uint32_t part, uint32_t nowners)
{
	return (part / (m->spread ? m->spread : m->nservers)) % nowners;
}

/* owned[p] = 1 for every partition p < nparts this server holds, else 0;
 * returns how many it holds. */
uint32_t embkvd_map_owned(const struct embkvd_map *m, uint32_t nparts,
			  uint8_t *owned);

/* Inside rcu_read_lock(): the current map of *slot (never NULL once the
 * server is created). */
static inline const struct embkvd_map *embkvd_map_cur(struct embkvd_map **slot)
{
	return rcu_dereference(*slot);
}

/* Makes m current in *slot and frees the previous map after a grace
 * period (call_rcu). One writer at a time. */
void embkvd_map_publish(struct embkvd_map **slot, struct embkvd_map *m);

#endif
