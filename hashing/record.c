/*
 * The validated record reader. It never trusts what it copied until the
 * checksum over key, version and payload matches; a torn copy (the owner
 * was writing while we copied) is retried, a record that holds another key
 * or is dead is reported as not found, so a reader never returns another
 * key's row, whatever happened to the row in between.
 */
#include <embkv/embkv.h>
#include "hashing/record.h"

int embkv_record_read(const struct embkv_record *src, struct embkv_record *dst,
		      uint64_t key, size_t payload_bytes, unsigned max_tries, uint64_t *retries)
{
	size_t bytes = EMBKV_RECORD_HDR_BYTES + payload_bytes;

	for (unsigned t = 0; t < max_tries; t++) {
		enum embkv_record_verdict v;

		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		memcpy(dst, src, bytes);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		v = embkv_record_check(dst, key, payload_bytes);
		if (v == EMBKV_RECORD_OK)
			return 0;
		if (v != EMBKV_RECORD_TORN)
			return EMBKV_ENOTFOUND;
		if (retries)
			(*retries)++;
	}
	return EMBKV_ETORN;
}
