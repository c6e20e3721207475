/*
 * Serving replicas, the follower (server/replica.c): embkvd --replica-of.
 */
#ifndef EMBKV_SERVER_REPLICA_H
#define EMBKV_SERVER_REPLICA_H

#include <stdbool.h>
#include <stdint.h>
#include "server/daemon.h"

/* Starts the follower thread when attr names tables to follow (*out NULL
 * otherwise): 0, -EINVAL (--replica-of without --primary-servers),
 * EMBKV_ELIMIT (a name too long), -ENOMEM or pthread_create's error.
 * Needs the catalog, the owners and the checkpoint thread running. */
int embkvd_replica_start(struct embkvd *s, struct embkvd_replica **out);
/* Stops and joins the thread (before the owners stop). NULL: no-op. */
void embkvd_replica_stop(struct embkvd_replica *r);
void embkvd_replica_free(struct embkvd_replica *r);
/* Any thread: whether e is a table r follows, and then its lag (updates
 * behind the primary, milliseconds since it was last caught up, 0 while
 * it is) and the snapshots it took. */
bool embkvd_replica_lag(struct embkvd_replica *r,
			const struct embkv_catalog_entry *e,
			uint64_t *updates, uint64_t *ms, uint64_t *snapshots);

#endif
