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
 * Starts the checkpoint thread: with a->data_dir (which exists and is
 * writable) it serves checkpoints and, unless a->no_restore, loads this
 * server's partitions from the newest complete checkpoint by itself
 * (static mode: re-creating its tables; cluster mode, a->etcd: the
 * partitions a restart left unloaded or the map newly gives it). Without
 * a data directory it still moves partitions (server/move.c).
 */
struct embkvd_attr;
int embkvd_ckpt_start(struct embkvd *s, const struct embkvd_attr *a,
		      struct embkvd_ckpt **out);
/* Finishes the request in progress, answers the queued ones with an
 * error (through the I/O threads, which must still run) and joins the
 * thread; later requests are answered with an error at once. _free (after
 * the I/O and cluster threads are gone) stops if needed and frees. NULL:
 * no-op. */
void embkvd_ckpt_stop(struct embkvd_ckpt *ck);
void embkvd_ckpt_free(struct embkvd_ckpt *ck);
/* I/O thread: a CKPT_* or MOVE_* request (body checked by the codec). */
void embkvd_ckpt_submit(struct embkvd_ckpt *ck, struct embkvd_conn *c,
			const struct embkv_wire_hdr *h, const uint8_t *body);
/* Any thread: whether partition part of table uid is being moved into
 * this server (between MOVE_PREPARE and the map that gives it here, or an
 * abort): the cluster thread leaves such a partition alone. _done: the
 * map gave it here (it serves, or is restored if the move was not
 * complete); the move's state is dropped. */
enum { EMBKVD_MOVE_NONE = 0, EMBKVD_MOVE_PARTIAL = 1, EMBKVD_MOVE_FINAL = 2 };
/* EMBKVD_MOVE_NONE, _PARTIAL (copies still coming) or _FINAL (the copy
 * after the source's freeze is applied: it may serve once the map says). */
int embkvd_ckpt_incoming(struct embkvd_ckpt *ck, uint64_t uid,
			 uint32_t part);
void embkvd_ckpt_incoming_done(struct embkvd_ckpt *ck, uint64_t uid,
			       uint32_t part);
/* Any thread. */
void embkvd_ckpt_last(struct embkvd_ckpt *ck, struct embkvd_ckpt_last *out);

#endif
