/*
 * A test double for embkvd: a cluster of in-process servers on loopback
 * that speak the wire protocol (net/PROTOCOL.md) over real TCP, store rows
 * in the real shard store (server/store.h) and let a test steer what the
 * real server will do rarely: move partitions and bump the map epoch, lag
 * one server's epoch, answer pipelined requests in reverse order, swallow
 * requests without answering, or go away.
 *
 * Each server has an accept thread and a thread per connection; all state
 * is under one cluster mutex (so the store has one owner at a time).
 * Every function may be called from any thread. Test code only: failures
 * of the double itself abort the test.
 */
#ifndef EMBKV_TESTS_FAKE_SERVER_H
#define EMBKV_TESTS_FAKE_SERVER_H

#include <stdint.h>
#include "net/wire.h"

#define FAKE_MAX_SERVERS 8u
#define FAKE_OPS 256u

struct fake_cluster;

/* Per-server counters. */
struct fake_counts {
	uint64_t frames[FAKE_OPS];   /* requests by opcode */
	uint64_t keys[FAKE_OPS];     /* keys carried by PULL/PUSH/ASSIGN/ERASE */
	uint64_t misrouted;          /* keys whose partition is not ours */
	uint64_t stale;              /* EMBKV_ESTALE answers */
	uint64_t connections;        /* accepted so far */
	uint64_t auth_failures;
	uint64_t reordered;          /* replies sent after a later one */
};

/* Starts n servers on 127.0.0.1, port 0. token NULL: no authentication.
 * The map starts at epoch 1 with partition p on server p % n. */
struct fake_cluster *fake_cluster_start(uint32_t n, const char *token);
void fake_cluster_stop(struct fake_cluster *fc);
/* "tcp://127.0.0.1:PORT" of server i. */
const char *fake_cluster_addr(struct fake_cluster *fc, uint32_t i);

/* Moves partition p to server (p + shift) % n and sets the epoch. */
void fake_cluster_set_map(struct fake_cluster *fc, uint64_t epoch,
			  uint32_t shift);
/* Server i answers with this epoch instead of the map's (0: the map's). */
void fake_cluster_set_server_epoch(struct fake_cluster *fc, uint32_t i,
				   uint64_t epoch);
/* Server i answers requests that arrived together in reverse order. */
void fake_cluster_set_reorder(struct fake_cluster *fc, uint32_t i, int on);
/* Server i reads requests and never answers them. */
void fake_cluster_set_silent(struct fake_cluster *fc, uint32_t i, int on);
/* Server i closes its listener and every connection. */
void fake_cluster_kill(struct fake_cluster *fc, uint32_t i);

void fake_cluster_counts(struct fake_cluster *fc, uint32_t i,
			 struct fake_counts *out);
/* Reads a row straight from server i's store (find, no insert): 1 when
 * stored. dim floats to out. */
int fake_cluster_row(struct fake_cluster *fc, uint32_t i, const char *table,
		     uint64_t key, float *out);
/* Rows stored in table over all servers. */
uint64_t fake_cluster_rows(struct fake_cluster *fc, const char *table);

#endif
