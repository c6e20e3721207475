/*
 * Partition owner threads of embkvd.
 *
 * Every partition of every table belongs to exactly one owner thread; only
 * that thread runs embkv_table_pull/push/assign/erase on its keys (see
 * server/store.h). Work reaches an owner as jobs on its FIFO queue.
 *
 * Threads. embkv_owner_submit() may be called from any thread, any number
 * at once (wait-free). Jobs submitted by one thread to one owner run in
 * submission order. A job's run() is called on the owner thread, or on
 * the submitter's by embkv_owner_try_run(); either way one runner at a
 * time per owner. The job memory belongs to the submitter again as soon as
 * run() starts: run() may free it (or hand it on) and the pool never
 * touches it afterwards.
 */
#ifndef EMBKV_SERVER_OWNER_H
#define EMBKV_SERVER_OWNER_H

#include <stdbool.h>
#include <stdint.h>
#include <urcu/wfcqueue.h>

#define EMBKV_OWNER_MAX 1024u

struct embkv_job {
	struct cds_wfcq_node node;
	void (*run)(struct embkv_job *job);
};

struct embkv_owner_pool;

/* Starts n owner threads (1 to EMBKV_OWNER_MAX). 0, -EINVAL, -ENOMEM or
 * a negative errno from pthread_create. The caller owns *out. */
int embkv_owner_pool_create(uint32_t n, struct embkv_owner_pool **out);
/* Runs every job already submitted, then stops and joins the threads.
 * Nothing may be submitted any more. NULL is a no-op. */
void embkv_owner_pool_destroy(struct embkv_owner_pool *pool);

uint32_t embkv_owner_count(const struct embkv_owner_pool *pool);
/* Queues job on owner (< count); job->run must be set. */
void embkv_owner_submit(struct embkv_owner_pool *pool, uint32_t owner,
			struct embkv_job *job);
/*
 * Runs job on the calling thread, as owner, when the owner is idle: no job
 * running and none queued. true when it ran (it is finished), false when
 * the owner was busy (nothing done: submit it). Never blocks.
 */
bool embkv_owner_try_run(struct embkv_owner_pool *pool, uint32_t owner,
			 struct embkv_job *job);

/*
 * Runs fn(arg) as owner `owner`, queued behind every job already
 * submitted to it, and waits for it; returns what fn returned. For the
 * threads that are not owners (checkpoints, the cluster thread): a
 * partition's bookkeeping done between two of its batches.
 */
int embkv_owner_call(struct embkv_owner_pool *pool, uint32_t owner,
		     int (*fn)(void *arg), void *arg);

#endif
