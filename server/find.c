/*
 * The lock-free validated lookup (embkv_table_find): what a local reader
 * thread runs concurrently with the owners, and the same steps an RDMA
 * client runs on its READ buffers: read the key's buckets, match
 * fingerprints, copy the record, and accept it only through
 * embkv_record_read (checksum, then key). Batches run on the probe
 * pipeline of server/probe.h.
 *
 * A miss is trusted only when the partition's cuckoo-move sequence did not
 * change during the lookup (and was even); otherwise the lookup is redone,
 * because a key being moved between its buckets can be missed by a reader
 * that scans them one after the other.
 */
#include <string.h>
#include "server/probe.h"
#include "server/store.h"

#define MAX_REPROBES 64u
/* Output rows at this alignment are validated in place (see below). */
#define DST_ALIGN 64u

/* Tries the records that the match bits in m point at. 0 when one of them
 * is key's (its payload copied to dst), EMBKV_ENOTFOUND or EMBKV_ETORN. */
static int try_matches(const struct embkv_table *t,
		       const struct embkv_probe *pr, unsigned m, uint64_t key,
		       void *dst, struct embkv_read_stats *rs)
{
	for (; m; m &= m - 1) {
		uint64_t row = embkv_probe_row(pr, (unsigned)__builtin_ctz(m));
		int err = embkv_record_read(embkv_part_record(pr->p, row), dst,
					    key, t->payload_bytes,
					    EMBKV_READ_MAX_TRIES, &rs->retries);

		if (err != EMBKV_ENOTFOUND)
			return err;
	}
	return EMBKV_ENOTFOUND;
}

/* Full lookup of one key: the probe's matches first, then every match in
 * both buckets, redone while a concurrent cuckoo move may have hidden it. */
static int find_slow(const struct embkv_table *t, struct embkv_probe *pr,
		     uint64_t key, unsigned tried, void *dst,
		     struct embkv_read_stats *rs)
{
	int err = EMBKV_ENOTFOUND;

	for (unsigned probe = 0; err == EMBKV_ENOTFOUND && probe < MAX_REPROBES;
	     probe++) {
		err = try_matches(t, pr, embkv_probe_match_all(pr) & ~tried, key,
				  dst, rs);
		if (err != EMBKV_ENOTFOUND)
			break;
		if (!(pr->seq & 1) && embkv_index_moves(&pr->p->index) == pr->seq)
			return EMBKV_ENOTFOUND;
		rs->reprobes++;
		pr->seq = embkv_index_moves(&pr->p->index);
		tried = 0;
	}
	if (err == EMBKV_ETORN)
		rs->giveups++;
	return err;
}

/* The common case inline: the first fingerprint match holds the key. */
static inline int find_one(const struct embkv_table *t, struct embkv_probe *pr,
			   uint64_t key, void *dst,
			   struct embkv_read_stats *rs)
{
	if (pr->match) {
		unsigned first = pr->match & -pr->match;
		uint64_t row = embkv_probe_row(pr, (unsigned)__builtin_ctz(first));
		int err = embkv_record_read(embkv_part_record(pr->p, row), dst, key,
					    t->payload_bytes,
					    EMBKV_READ_MAX_TRIES, &rs->retries);

		if (err == 0)
			return 0;
		if (err == EMBKV_ETORN) {
			rs->giveups++;
			return err;
		}
		return find_slow(t, pr, key, first, dst, rs);
	}
	return find_slow(t, pr, key, 0, dst, rs);
}

uint32_t embkv_table_find(const struct embkv_table *t, uint32_t n,
			  const uint64_t *keys, void *out, uint8_t *found,
			  const void *dflt, struct embkv_read_stats *rs)
{
	struct embkv_read_stats local = { 0 };
	struct embkv_probe probes[EMBKV_PROBE_CHUNK];
	float buf[EMBKV_MAX_DIM] __attribute__((aligned(DST_ALIGN)));
	uint32_t nfound = 0;
	/* A row is validated by hashing the copy just made of it; the hash's
	 * vector loads line up with the copy's stores only in an aligned row
	 * (else they stall on failed store forwards), so rows of an output
	 * that is not 64-byte aligned are validated in buf and copied out. */
	int direct = (uintptr_t)out % DST_ALIGN == 0 &&
		     t->payload_bytes % DST_ALIGN == 0;

	if (!rs)
		rs = &local;
	for (uint32_t i0 = 0, m; i0 < n; i0 += m) {
		m = embkv_probe_chunk(t, probes, keys, n, i0, 0);
		for (uint32_t j = 0; j < m; j++) {
			uint32_t i = i0 + j;
			struct embkv_probe *pr = &probes[j];
			uint8_t *dst = (uint8_t *)out +
				       (size_t)i * t->payload_bytes;
			int ok = find_one(t, pr, keys[i], direct ? (void *)dst : (void *)buf,
					  rs) == 0;

			if (ok && !direct)
				memcpy(dst, buf, t->payload_bytes);
			else if (!ok && dflt)
				memcpy(dst, dflt, t->payload_bytes);
			else if (!ok)
				memset(dst, 0, t->payload_bytes);
			if (found)
				found[i] = (uint8_t)ok;
			nfound += (uint32_t)ok;
		}
	}
	rs->hits += nfound;
	rs->misses += n - nfound;
	return nfound;
}
