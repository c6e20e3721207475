/*
 * Checkpoints of embkvd (server/CHECKPOINT.md): the CKPT_* requests and
 * the restore of a restarted server's partitions.
 *
 * One thread per server does the work; I/O threads hand it requests
 * (embkvd_ckpt_submit) and get the answers back through their inbox, so
 * no data-path thread waits for a disk. A partition is copied by its owner
 * thread (a job between batches); the file is written by this thread.
 */
#ifndef EMBKV_SERVER_CKPT_H
#define EMBKV_SERVER_CKPT_H

#include <stdbool.h>
#include <stdint.h>
#include "net/wire.h"

struct embkvd;
struct embkvd_conn;
struct embkvd_ckpt;

/* What STATS says about the newest checkpoint this server committed or
 * restored from (zeros: none). */
struct embkvd_ckpt_last {
	uint64_t id;             /* checkpoint id (ms since the epoch) */
	uint64_t duration_ms;    /* from the first partition to the manifest */
	uint64_t bytes;          /* all its files (every server's) */
	uint64_t rows;
};

/*
 * Starts the checkpoint thread over data_dir (which exists and is
 * writable). etcd, cluster: the server's --etcd and --cluster (NULL etcd:
 * static mode; both copied; passed here because the server's own copy of
 * its attributes does not keep them). restore: load this server's
 * partitions from the newest complete checkpoint by itself (static mode:
 * re-creating its tables; cluster mode: the partitions a restart left
 * unloaded, from the checkpoint etcd records as newest).
 */
int embkvd_ckpt_start(struct embkvd *s, const char *data_dir,
		      const char *etcd, const char *cluster, bool restore,
		      struct embkvd_ckpt **out);
/* Finishes the request in progress, answers the queued ones with an
 * error, joins the thread, frees. NULL: no-op. */
void embkvd_ckpt_stop(struct embkvd_ckpt *ck);
/* I/O thread: a CKPT_* request (body checked by embkv_wire_json_check).
 * ck NULL (no --data-dir): answered with an error here. */
void embkvd_ckpt_submit(struct embkvd_ckpt *ck, struct embkvd_conn *c,
			const struct embkv_wire_hdr *h, const uint8_t *body);
/* Any thread. */
void embkvd_ckpt_last(struct embkvd_ckpt *ck, struct embkvd_ckpt_last *out);

#endif
