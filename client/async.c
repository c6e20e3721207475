/*
 * Async pull and push: a small per-client pool of worker threads runs the
 * same synchronous batch code (client/ops.c) while the caller computes.
 *
 * Why threads and not a completion-driven state machine: a batch is a few
 * CPU-bound steps (dedup, hashing, scatter) around one exchange, and the
 * worker takes its own pooled connections, so a worker's pull really
 * overlaps the caller's own calls (a push of the previous batch, say) and
 * other workers. Workers start on the first async call, so clients that
 * never use it pay nothing.
 *
 * Invariants: an op is on the queue or being run until done is set under
 * the pool lock; embkv_op_wait() (or embkv_op_timedwait() once it saw
 * done) frees it after done; embkv_op_test() only reads done. Destroy lets the
 * workers drain the queue before they exit, so every queued op completes
 * (each is bounded by the request timeouts).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"

struct embkv_op {
	struct embkv_op *next;
	void (*job)(void *arg);  /* a detached job instead of args */
	void *job_arg;
	struct embkv_async *pool;
	struct embkv_batch_args args;
	uint32_t applied;       /* push: args.done points here */
	int status;
	int done;
	pthread_cond_t cond;    /* done was set */
};

struct embkv_async {
	pthread_mutex_t lock;
	pthread_cond_t work;    /* queue not empty, or stopping */
	struct embkv_op *head, *tail;
	pthread_t *threads;
	uint32_t nthreads;      /* wanted */
	uint32_t started;
	int stopping;
};

static void *worker(void *arg)
{
	struct embkv_async *p = arg;
	struct embkv_op *op;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->work, &p->lock);
		op = p->head;
		if (!op)
			break; /* stopping and drained */
		p->head = op->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		if (op->job) {
			op->job(op->job_arg);
			free(op);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		op->status = embkv_batch_run(&op->args);
		pthread_mutex_lock(&p->lock);
		op->done = 1;
		pthread_cond_signal(&op->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int embkv_async_create(struct embkv_client *c)
{
	struct embkv_async *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->nthreads = c->async_threads;
	p->threads = calloc(p->nthreads, sizeof(*p->threads));
	if (!p->threads)
		goto free_pool;
	if (pthread_mutex_init(&p->lock, NULL))
		goto free_threads;
	if (pthread_cond_init(&p->work, NULL))
		goto destroy_lock;
	c->async = p;
	return 0;

destroy_lock:
	pthread_mutex_destroy(&p->lock);
free_threads:
	free(p->threads);
free_pool:
	free(p);
	return -ENOMEM;
}

void embkv_async_destroy(struct embkv_client *c)
{
	struct embkv_async *p = c->async;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (uint32_t i = 0; i < p->started; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
	c->async = NULL;
}

/* Called with the lock held: at least one worker running. */
static int ensure_workers(struct embkv_async *p)
{
	while (p->started < p->nthreads) {
		if (pthread_create(&p->threads[p->started], NULL, worker, p))
			break;
		p->started++;
	}
	return p->started ? 0 : -EAGAIN;
}

static int submit(const struct embkv_batch_args *a, struct embkv_op **out)
{
	struct embkv_async *p;
	struct embkv_op *op;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	rc = embkv_batch_check(a);
	if (rc)
		return rc;
	p = a->t->c->async;
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->pool = p;
	op->args = *a;
	if (a->op == EMBKV_BATCH_PUSH)
		op->args.done = &op->applied;
	rc = embkv_cond_init_monotonic(&op->cond);
	if (rc)
		goto free_op;
	pthread_mutex_lock(&p->lock);
	rc = ensure_workers(p);
	if (rc) {
		pthread_mutex_unlock(&p->lock);
		goto destroy_cond;
	}
	if (p->tail)
		p->tail->next = op;
	else
		p->head = op;
	p->tail = op;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
	*out = op;
	return 0;

destroy_cond:
	pthread_cond_destroy(&op->cond);
free_op:
	free(op);
	return rc;
}

int embkv_async_job(struct embkv_client *c, void (*fn)(void *arg), void *arg)
{
	struct embkv_async *p = c->async;
	struct embkv_op *op;
	int rc;

	if (!p || !fn)
		return -EINVAL;
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->pool = p;
	op->job = fn;
	op->job_arg = arg;
	pthread_mutex_lock(&p->lock);
	rc = p->stopping ? -ESHUTDOWN : ensure_workers(p);
	if (rc) {
		pthread_mutex_unlock(&p->lock);
		free(op);
		return rc;
	}
	if (p->tail)
		p->tail->next = op;
	else
		p->head = op;
	p->tail = op;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int embkv_pull_async(struct embkv_table_handle *t, uint32_t n,
		     const uint64_t *keys, float *out, uint8_t *found,
		     enum embkv_mode mode, const float *dflt,
		     struct embkv_op **op)
{
	struct embkv_batch_args a = {
		.t = t, .op = EMBKV_BATCH_PULL, .n = n, .keys = keys,
		.out = out, .found = found, .mode = mode, .dflt = dflt,
	};

	return submit(&a, op);
}

int embkv_push_async(struct embkv_table_handle *t, uint32_t n,
		     const uint64_t *keys, const float *grads,
		     struct embkv_op **op)
{
	struct embkv_batch_args a = {
		.t = t, .op = EMBKV_BATCH_PUSH, .n = n, .keys = keys,
		.vals = grads,
	};

	return submit(&a, op);
}

int embkv_op_wait(struct embkv_op *op)
{
	return embkv_op_wait_applied(op, NULL);
}

int embkv_op_wait_applied(struct embkv_op *op, uint32_t *applied)
{
	struct embkv_async *p;
	int status;

	if (!op)
		return -EINVAL;
	p = op->pool;
	pthread_mutex_lock(&p->lock);
	while (!op->done)
		pthread_cond_wait(&op->cond, &p->lock);
	status = op->status;
	if (applied)
		*applied = op->applied;
	pthread_mutex_unlock(&p->lock);
	pthread_cond_destroy(&op->cond);
	free(op);
	return status;
}

int embkv_op_test(struct embkv_op *op)
{
	int done;

	if (!op)
		return -EINVAL;
	pthread_mutex_lock(&op->pool->lock);
	done = op->done;
	pthread_mutex_unlock(&op->pool->lock);
	return done ? 1 : 0;
}

int embkv_op_timedwait(struct embkv_op *op, uint32_t timeout_ms, int *status)
{
	struct embkv_async *p;
	uint64_t deadline;
	struct timespec ts;

	if (!op || !status)
		return -EINVAL;
	p = op->pool;
	deadline = embkv_now_ms() + timeout_ms;
	ts.tv_sec = (time_t)(deadline / 1000u);
	ts.tv_nsec = (long)(deadline % 1000u) * 1000000L;
	pthread_mutex_lock(&p->lock);
	while (!op->done) {
		/* op->cond is CLOCK_MONOTONIC, as embkv_now_ms() */
		if (pthread_cond_timedwait(&op->cond, &p->lock, &ts) ==
		    ETIMEDOUT && !op->done) {
			pthread_mutex_unlock(&p->lock);
			return -ETIMEDOUT;
		}
	}
	*status = op->status;
	pthread_mutex_unlock(&p->lock);
	pthread_cond_destroy(&op->cond);
	free(op);
	return 0;
}
