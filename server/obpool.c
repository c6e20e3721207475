/*
 * Output buffers, and the pool of registered reply buffers of RDMA
 * connections.
 *
 * What: a reply over verbs too large for the connection's send slots
 * (the client's recv_size, at most 64 KiB: a PULL reply of a few hundred
 * rows, a PULL_LAND's records) goes to the NIC from the buffer it was
 * built in, so that buffer must be registered with the protection
 * domain. Registering pins its pages and writes the NIC's translation
 * table; deregistering undoes it: a cost per MiB paid on the I/O thread
 * that serves every connection (measured in the soft-RoCE VM: 200 to 400
 * us per MiB, more than the 84 us a 100 Gb/s link needs to send it). So
 * those buffers come from this pool: size classes two per doubling from
 * 4 KiB to 16 MiB; a buffer given back keeps its registration and goes
 * on its class's list (LIFO: the warmest first), and the next reply of
 * that class reuses both. Replies copied into send slots, replies over
 * 16 MiB and TCP replies stay plain malloc'ed buffers.
 *
 * Why not register the whole reply memory once: a reply is allocated at
 * the size its request needs (the owner threads fill it), and their number in
 * flight follows the clients' windows; a pool of whole buffers keeps the
 * same code for both and bounds what it keeps, not what is in flight
 * (that is bounded by the connections' backlog limits, as before).
 *
 * Invariants:
 * - Idle buffers never exceed keep_bytes. A buffer given back is kept if
 *   it fits at all, idle buffers of other classes (the largest first)
 *   unregistered and freed to make room, so what is kept follows the
 *   replies of the moment; a buffer given back over it is unregistered
 *   and freed. A registration the NIC refuses (locked memory exhausted)
 *   is retried once after every idle buffer was dropped (trim).
 * - A registration belongs to its buffer: it is dropped only when the
 *   buffer is freed, never while the buffer is in use (the transport
 *   gives a buffer back only after its send completed, or after its QP
 *   was destroyed).
 * - The pool outlives its buffers: destroying it frees the idle ones,
 *   and the last buffer in use to come back frees the pool; nothing
 *   reads the pool after its lock is released.
 * - Any thread gets and gives back (owner threads build replies, I/O
 *   threads send them); one mutex guards the lists.
 */
#include "server/obpool.h"
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CLASSES 25u                 /* 4K << k/2, times 1.5 on odd k */
#define ALIGN 4096u                 /* whole pages: nothing else shares
				       a registered page */

_Static_assert(sizeof(struct embkvd_obuf) % 8 == 0,
	       "frame data right after the obuf must be 8-byte aligned");

struct embkvd_obpool {
	pthread_mutex_t lock;
	struct embkvd_obuf *idle[CLASSES];
	uint64_t keep, idle_bytes, out, reuses, regs;
	bool dead;                      /* destroyed: freed with the last */
	void (*unreg)(void *reg);
};

/* Bytes of class k: 4K, 6K, 8K, 12K, ... 16M (k = 24) plus one page for
 * the header in front of the frame. */
static size_t class_bytes(uint32_t k)
{
	size_t base = (k & 1u) ? (6u << 10) : (4u << 10);

	return (base << (k / 2u)) + ALIGN;
}

static bool class_of(size_t len, uint32_t *k)
{
	if (len < EMBKVD_OBPOOL_MIN || len > EMBKVD_OBPOOL_MAX)
		return false;
	for (uint32_t i = 0; i < CLASSES; i++)
		if (class_bytes(i) - ALIGN >= len) {
			*k = i;
			return true;
		}
	return false;
}

static void obuf_init(struct embkvd_obuf *ob, size_t len)
{
	ob->next = NULL;
	ob->data = (uint8_t *)(ob + 1);
	ob->len = len;
	ob->off = 0;
	ob->land_len = 0;
	ob->land_addr = 0;
	ob->land_rkey = 0;
}

struct embkvd_obuf *embkvd_obuf_plain(size_t len)
{
	struct embkvd_obuf *ob = malloc(sizeof(*ob) + len);

	if (!ob)
		return NULL;
	obuf_init(ob, len);
	ob->pool = NULL;
	ob->reg = NULL;
	ob->alloc = sizeof(*ob) + len;
	ob->cls = 0;
	return ob;
}

int embkvd_obpool_create(uint64_t keep_bytes, void (*unreg)(void *reg),
			 struct embkvd_obpool **out)
{
	struct embkvd_obpool *p = calloc(1, sizeof(*p));

	if (!p || pthread_mutex_init(&p->lock, NULL)) {
		free(p);
		return -ENOMEM;
	}
	p->keep = keep_bytes;
	p->unreg = unreg;
	*out = p;
	return 0;
}

/* Without the lock, and without touching the pool (its last buffer may
 * have freed it meanwhile): unreg is the pool's, read under its lock. */
static void drop_list(void (*unreg)(void *reg), struct embkvd_obuf *list)
{
	while (list) {
		struct embkvd_obuf *ob = list;

		list = ob->next;
		if (ob->reg && unreg)
			unreg(ob->reg);
		free(ob);
	}
}

/* Under the lock: moves idle buffers to *out, largest classes first and
 * never of class `except`, until `need` more bytes fit under keep (or
 * none are left). */
static void take_idle(struct embkvd_obpool *p, uint32_t except, size_t need,
		      struct embkvd_obuf **out)
{
	for (uint32_t k = CLASSES; k-- > 0 && p->idle_bytes + need > p->keep;) {
		if (k == except)
			continue;
		while (p->idle[k] && p->idle_bytes + need > p->keep) {
			struct embkvd_obuf *ob = p->idle[k];

			p->idle[k] = ob->next;
			p->idle_bytes -= ob->alloc;
			ob->next = *out;
			*out = ob;
		}
	}
}

static void pool_free(struct embkvd_obpool *p)
{
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Under the lock: every idle buffer to *out. */
static void take_all(struct embkvd_obpool *p, struct embkvd_obuf **out)
{
	for (uint32_t k = 0; k < CLASSES; k++)
		while (p->idle[k]) {
			struct embkvd_obuf *ob = p->idle[k];

			p->idle[k] = ob->next;
			ob->next = *out;
			*out = ob;
		}
	p->idle_bytes = 0;
}

void embkvd_obpool_trim(struct embkvd_obpool *p)
{
	struct embkvd_obuf *list = NULL;
	void (*unreg)(void *reg);

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	take_all(p, &list);
	unreg = p->unreg;
	pthread_mutex_unlock(&p->lock);
	drop_list(unreg, list);
}

void embkvd_obpool_destroy(struct embkvd_obpool *p)
{
	struct embkvd_obuf *list = NULL;
	void (*unreg)(void *reg);
	bool last;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	take_all(p, &list);
	p->dead = true;
	last = !p->out;
	unreg = p->unreg;
	pthread_mutex_unlock(&p->lock);
	drop_list(unreg, list);
	if (last)
		pool_free(p);
}

struct embkvd_obuf *embkvd_obpool_get(struct embkvd_obpool *p, size_t len)
{
	struct embkvd_obuf *ob;
	uint32_t k;

	if (!p || !class_of(len, &k))
		return NULL;
	pthread_mutex_lock(&p->lock);
	ob = p->idle[k];
	if (ob) {
		p->idle[k] = ob->next;
		p->idle_bytes -= ob->alloc;
		p->reuses++;
	}
	p->out++;
	pthread_mutex_unlock(&p->lock);
	if (!ob) {
		void *mem = NULL;

		if (posix_memalign(&mem, ALIGN, class_bytes(k))) {
			pthread_mutex_lock(&p->lock);
			p->out--;
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		ob = mem;
		ob->pool = p;
		ob->reg = NULL;
		ob->alloc = class_bytes(k);
		ob->cls = k;
		ob->pad_ = 0;
	}
	obuf_init(ob, len);
	return ob;
}

void embkvd_obuf_free(struct embkvd_obuf *ob)
{
	struct embkvd_obuf *list = NULL;
	struct embkvd_obpool *p;
	void (*unreg)(void *reg);
	bool last = false;

	if (!ob)
		return;
	p = ob->pool;
	if (!p) {
		free(ob);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->out--;
	/* the buffer just used is kept, at the cost of idle ones of other
	 * classes if need be: what is kept follows the current replies */
	if (!p->dead && ob->alloc <= p->keep)
		take_idle(p, ob->cls, ob->alloc, &list);
	if (!p->dead && p->idle_bytes + ob->alloc <= p->keep) {
		ob->next = p->idle[ob->cls];
		p->idle[ob->cls] = ob;
		p->idle_bytes += ob->alloc;
	} else {
		ob->next = list;
		list = ob;
		last = p->dead && !p->out;
	}
	unreg = p->unreg;
	pthread_mutex_unlock(&p->lock);
	drop_list(unreg, list);
	if (last)
		pool_free(p);
}

void embkvd_obpool_registered(struct embkvd_obpool *p)
{
	if (p)
		__atomic_fetch_add(&p->regs, 1, __ATOMIC_RELAXED);
}

void embkvd_obpool_stats(struct embkvd_obpool *p,
			 struct embkvd_obpool_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	st->reuses = p->reuses;
	st->idle_bytes = p->idle_bytes;
	st->out = p->out;
	pthread_mutex_unlock(&p->lock);
	st->registrations = __atomic_load_n(&p->regs, __ATOMIC_RELAXED);
}
