/*
 * embkvd hardening helpers: the per-peer throttle of failed
 * authentications, and peer address formatting for log lines.
 *
 * What: a fixed table of GUARD_SLOTS entries, indexed by a hash of the
 * peer's IP address (the port is ignored: a new connection from the
 * same host is the same peer). GUARD_MAX_FAILS failed authentications
 * from one address within GUARD_WINDOW_NS block that address for
 * GUARD_BLOCK_NS: its HELLO and AUTH are refused with EMBKV_EAUTH and a
 * "retry in" message without computing any MAC. A good authentication
 * clears the entry.
 *
 * Why: a wrong token costs the server one MAC and the attacker one round
 * trip; without a throttle a peer tries hundreds of tokens a second. The
 * table is bounded (no allocation per peer), so many addresses cannot
 * grow server memory: a collision simply replaces the older entry, which
 * at worst lets a flooding attacker reset someone else's count, never
 * blocks an address that did not fail.
 *
 * Invariants: one mutex guards the table; it is taken only on HELLO,
 * AUTH and their failures, never on the data path.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <xxhash.h>
#include "server/daemon.h"

#define GUARD_SLOTS 1024u
#define GUARD_MAX_FAILS EMBKVD_GUARD_MAX_FAILS
#define NS_PER_MS 1000000ull
#define GUARD_WINDOW_NS ((uint64_t)EMBKVD_GUARD_WINDOW_MS * NS_PER_MS)
#define GUARD_BLOCK_NS ((uint64_t)EMBKVD_GUARD_BLOCK_MS * NS_PER_MS)

struct guard_slot {
	uint8_t addr[16];
	bool used;
	uint32_t fails;
	uint64_t first_ns;              /* first failure of this window */
	uint64_t until_ns;              /* blocked until */
};

struct embkvd_guard {
	pthread_mutex_t lock;
	struct guard_slot slot[GUARD_SLOTS];
};

int embkvd_guard_create(struct embkvd_guard **out)
{
	struct embkvd_guard *g = calloc(1, sizeof(*g));

	if (!g)
		return -ENOMEM;
	pthread_mutex_init(&g->lock, NULL);
	*out = g;
	return 0;
}

void embkvd_guard_destroy(struct embkvd_guard *g)
{
	if (!g)
		return;
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* The address (IPv4 as v4-mapped IPv6) of sa; false for other families. */
static bool addr_of(const struct sockaddr_storage *sa, uint8_t a[16])
{
	memset(a, 0, 16);
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		a[10] = a[11] = 0xff;
		memcpy(a + 12, &in->sin_addr, 4);
		return true;
	}
	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		memcpy(a, &in6->sin6_addr, 16);
		return true;
	}
	return false;
}

static struct guard_slot *slot_of(struct embkvd_guard *g, const uint8_t a[16])
{
	return &g->slot[XXH3_64bits(a, 16) % GUARD_SLOTS];
}

uint64_t embkvd_guard_blocked_ms(struct embkvd_guard *g,
				 const struct sockaddr_storage *sa)
{
	uint64_t now = embkv_now_ns(), left = 0;
	struct guard_slot *s;
	uint8_t a[16];

	if (!g || !addr_of(sa, a))
		return 0;
	pthread_mutex_lock(&g->lock);
	s = slot_of(g, a);
	if (s->used && !memcmp(s->addr, a, 16) && s->until_ns > now)
		left = (s->until_ns - now + NS_PER_MS - 1) / NS_PER_MS;
	pthread_mutex_unlock(&g->lock);
	return left;
}

void embkvd_guard_note(struct embkvd_guard *g,
		       const struct sockaddr_storage *sa, bool ok)
{
	uint64_t now = embkv_now_ns();
	struct guard_slot *s;
	uint8_t a[16];

	if (!g || !addr_of(sa, a))
		return;
	pthread_mutex_lock(&g->lock);
	s = slot_of(g, a);
	if (!s->used || memcmp(s->addr, a, 16)) {
		if (ok)
			goto unlock;
		memset(s, 0, sizeof(*s));
		memcpy(s->addr, a, 16);
		s->used = true;
	}
	if (ok) {
		s->used = false;
		goto unlock;
	}
	if (!s->fails || now - s->first_ns > GUARD_WINDOW_NS) {
		s->fails = 0;
		s->first_ns = now;
	}
	if (++s->fails >= GUARD_MAX_FAILS) {
		s->until_ns = now + GUARD_BLOCK_NS;
		s->fails = 0;
	}
unlock:
	pthread_mutex_unlock(&g->lock);
}

void embkvd_peer_format(const struct sockaddr_storage *sa, char *buf,
			size_t cap)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host))) {
			snprintf(buf, cap, "%s:%u", host, ntohs(in->sin_port));
			return;
		}
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		if (inet_ntop(AF_INET6, &in6->sin6_addr, host,
			      sizeof(host))) {
			snprintf(buf, cap, "[%s]:%u", host,
				 ntohs(in6->sin6_port));
			return;
		}
	}
	snprintf(buf, cap, "?");
}
