/*
 * embkvd's shard map (server/shardmap.h).
 *
 * What: an immutable {epoch, servers, self} value and the placement rule
 * partition -> server (p % S, or placed) and partition -> owner thread
 * ((p / spread) % T), in one place.
 * Why: placement was arithmetic copied into batch planning, SHARD_MAP and
 * TABLE_REGIONS; a map learned from etcd, or moved partitions, must change
 * it for all of them at once.
 * Invariant: a published map never changes; a new one replaces it under
 * RCU, so a reader sees one whole map or the next, never a mix.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "server/shardmap.h"

int embkvd_map_create(uint64_t epoch, const char *const *servers, uint32_t n,
		      uint32_t self, struct embkvd_map **out)
{
	struct embkvd_map *m;

	*out = NULL;
	if (!n || (self >= n && self != EMBKVD_MAP_NOT_MEMBER) || !servers)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (!servers[i])
			return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->servers = calloc(n, sizeof(*m->servers));
	if (!m->servers)
		goto nomem;
	m->nservers = n;
	for (uint32_t i = 0; i < n; i++)
		if (!(m->servers[i] = strdup(servers[i])))
			goto nomem;
	m->epoch = epoch;
	m->self = self;
	*out = m;
	return 0;

nomem:
	embkvd_map_destroy(m);
	return -ENOMEM;
}

int embkvd_map_create_placed(uint64_t epoch, const char *const *servers,
			     uint32_t n, uint32_t self,
			     const uint16_t *part_server, uint32_t nparts,
			     struct embkvd_map **out)
{
	struct embkvd_map *m;
	int err;

	for (uint32_t p = 0; p < nparts; p++)
		if (part_server[p] >= n)
			return -EINVAL;
	err = embkvd_map_create(epoch, servers, n, self, &m);
	if (err)
		return err;
	m->part_server = malloc(sizeof(*m->part_server) * (nparts ? nparts
								   : 1));
	if (!m->part_server) {
		embkvd_map_destroy(m);
		return -ENOMEM;
	}
	memcpy(m->part_server, part_server, sizeof(*part_server) * nparts);
	m->nparts = nparts;
	*out = m;
	return 0;
}

void embkvd_map_destroy(struct embkvd_map *m)
{
	if (!m)
		return;
	free(m->part_server);
	for (uint32_t i = 0; m->servers && i < m->nservers; i++)
		free(m->servers[i]);
	free(m->servers);
	free(m);
}

uint32_t embkvd_map_owned(const struct embkvd_map *m, uint32_t nparts,
			  uint8_t *owned)
{
	uint32_t n = 0;

	for (uint32_t p = 0; p < nparts; p++) {
		owned[p] = embkvd_map_mine(m, p);
		n += owned[p];
	}
	return n;
}

static void map_free_rcu(struct rcu_head *head)
{
	embkvd_map_destroy(caa_container_of(head, struct embkvd_map, rcu));
}

void embkvd_map_publish(struct embkvd_map **slot, struct embkvd_map *m)
{
	struct embkvd_map *old = rcu_xchg_pointer(slot, m);

	if (old)
		call_rcu(&old->rcu, map_free_rcu);
}
