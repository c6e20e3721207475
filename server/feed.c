/*
 * The replication feed of a partition (issue 13 item 3; the follower side
 * is server/replica.c, the requests server/repl.c).
 *
 * What: a ring of the keys of the partition's last mutations, indexed by
 * the partition's seq (store.c's seq_bump writes keys[seq & mask]). A
 * follower at seq S asks which keys changed in (S, seq] and gets their
 * current rows; the ring is allocated on the first follower's request and
 * costs the hot path one predictable branch before that.
 *
 * Why keys and not row images: a row changed many times between two
 * pulls is sent once, with its newest value, so a follower's traffic is
 * bounded by the rows that changed, not the updates; the order that
 * matters (per key, newest wins) holds because a follower applies one
 * partition's replies in order.
 *
 * Invariant: when embkv_part_feed_read answers 0 for (id, since), every
 * key mutated after since is among the keys it returned or after *upto;
 * otherwise it says -ESPIPE and the follower snapshots. Mutations that do
 * not bump seq (restores, clears) break the feed: new id.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include "server/store.h"

#define FEED_ENTRIES_MAX (1ull << 30)

static uint64_t feed_new_id(void)
{
	static uint64_t ctr;
	uint64_t v = 0;
	struct timespec ts;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v)) {
		clock_gettime(CLOCK_REALTIME, &ts);
		v = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	v ^= __atomic_add_fetch(&ctr, 1, __ATOMIC_RELAXED) << 32;
	/* positive in a JSON integer, never 0 */
	v &= (1ull << 62) - 1;
	return v ? v : 1;
}

int embkv_part_feed_open(struct embkv_table *t, uint32_t i, uint64_t entries,
			 uint64_t *id, uint64_t *seq)
{
	struct embkv_part *p;
	uint64_t n = 1024;

	if (i >= t->nparts || !t->parts[i].loaded)
		return -EINVAL;
	p = &t->parts[i];
	if (!p->feed) {
		struct embkv_feed *f;

		if (entries > FEED_ENTRIES_MAX)
			entries = FEED_ENTRIES_MAX;
		/* Never more entries than the partition holds rows (at
		 * least 1024): a follower further behind than that copies
		 * the partition, which then costs no more than the ring
		 * would have, and the ring stays a small fraction of the
		 * memory the partition was charged under --memory-limit
		 * (8 bytes an entry against a record of 32 or more). */
		if (entries > p->capacity)
			entries = p->capacity;
		while (n < entries)
			n <<= 1;
		f = malloc(sizeof(*f) + n * sizeof(f->keys[0]));
		if (!f)
			return -ENOMEM;
		f->id = feed_new_id();
		f->lo = p->seq;
		f->mask = n - 1;
		p->feed = f;
	}
	*id = p->feed->id;
	*seq = p->seq;
	return 0;
}

void embkv_part_feed_break(struct embkv_part *p)
{
	if (p->feed) {
		p->feed->id = feed_new_id();
		p->feed->lo = p->seq;
	}
}

int embkv_part_feed_read(const struct embkv_table *t, uint32_t i, uint64_t id,
			 uint64_t since, uint32_t max, uint64_t *keys,
			 uint32_t *n, uint64_t *upto)
{
	const struct embkv_part *p;
	const struct embkv_feed *f;
	uint64_t end;

	*n = 0;
	if (i >= t->nparts || !t->parts[i].loaded)
		return -ESPIPE;
	p = &t->parts[i];
	f = p->feed;
	if (!f || f->id != id || since < f->lo || since > p->seq ||
	    p->seq - since > f->mask + 1)
		return -ESPIPE;
	end = p->seq - since > max ? since + max : p->seq;
	for (uint64_t s = since + 1; s <= end; s++)
		keys[(*n)++] = f->keys[s & f->mask];
	*upto = end;
	return 0;
}
