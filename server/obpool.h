/*
 * embkvd's output buffers (struct embkvd_obuf: one reply frame each) and
 * the pool that recycles the large ones of RDMA connections together with
 * their NIC registration (server/obpool.c has the design).
 */
#ifndef EMBKV_SERVER_OBPOOL_H
#define EMBKV_SERVER_OBPOOL_H

#include <stddef.h>
#include <stdint.h>

struct embkvd_obpool;

/* One reply frame, queued on a connection. */
struct embkvd_obuf {
	struct embkvd_obuf *next;
	uint8_t *data;                  /* a whole frame, right after this */
	size_t len, off;
	/* PULL_LAND (RDMA only): land_len bytes after the frame, at data +
	 * len, go by RDMA WRITE to land_addr / land_rkey before it */
	size_t land_len;
	uint64_t land_addr;
	uint64_t land_rkey;
	/* A pooled buffer: its pool, its size class, the bytes of the whole
	 * allocation (this struct included; what a registration covers) and
	 * its registration (the transport's, NULL until it registers it; it
	 * stays with the buffer while the pool keeps it). pool NULL: a plain
	 * malloc'ed buffer, never registered through here. */
	struct embkvd_obpool *pool;
	void *reg;
	size_t alloc;
	uint32_t cls;
	uint32_t pad_;
};

/* A plain buffer for a len-byte frame; NULL when out of memory. */
struct embkvd_obuf *embkvd_obuf_plain(size_t len);
/* Frees a plain buffer, or gives a pooled one back. NULL-safe. */
void embkvd_obuf_free(struct embkvd_obuf *ob);

/* The smallest frame the pool takes (a connection copies replies up to
 * its client's recv_size, at least 1 KiB, into registered send slots)
 * and the largest class. */
#define EMBKVD_OBPOOL_MIN (4u << 10)
#define EMBKVD_OBPOOL_MAX (16u << 20)

struct embkvd_obpool_stats {
	uint64_t registrations;         /* embkvd_obpool_registered calls */
	uint64_t reuses;                /* gets served by a kept buffer */
	uint64_t idle_bytes;            /* kept, not in use (registered
					 * once they were sent from) */
	uint64_t out;                   /* buffers in use */
};

/*
 * A pool that keeps at most keep_bytes of idle buffers (0: none; every
 * buffer is freed, and unregistered, when given back; a buffer given back
 * displaces idle ones of other classes to fit). unreg drops a
 * buffer's registration (called without the pool's lock, never on NULL).
 * 0 or -ENOMEM.
 */
int embkvd_obpool_create(uint64_t keep_bytes, void (*unreg)(void *reg),
			 struct embkvd_obpool **out);
/*
 * Frees every idle buffer (unregistering it). Buffers still in use stay
 * valid: the pool is freed when the last of them comes back. NULL-safe.
 */
void embkvd_obpool_destroy(struct embkvd_obpool *p);
/*
 * A buffer for a len-byte frame, of the smallest class that holds it:
 * the most recently given back one of that class (registration kept),
 * else a new one. NULL when len is outside [EMBKVD_OBPOOL_MIN,
 * EMBKVD_OBPOOL_MAX] or out of memory (the caller uses a plain buffer).
 * Any thread.
 */
struct embkvd_obuf *embkvd_obpool_get(struct embkvd_obpool *p, size_t len);
/* Unregisters and frees every idle buffer (a registration failed: the
 * locked memory they hold may be what is missing). NULL-safe. */
void embkvd_obpool_trim(struct embkvd_obpool *p);
/* The transport registered ob->reg (counted in the stats). */
void embkvd_obpool_registered(struct embkvd_obpool *p);
void embkvd_obpool_stats(struct embkvd_obpool *p,
			 struct embkvd_obpool_stats *st);

#endif
