/*
 * The per-element logic of the GPU kernels (gpu/kernels.cu), as
 * __host__ __device__ code that also compiles as plain C: the record
 * verdict, the conversion of stored elements to fp32, and the chunking of
 * gradient coalescing. The kernels call these; so does the host stand-in
 * of the plugin (tests/gpu/host_plugin.c), so the tests that run on every
 * machine run the same text the kernels run, not a second version of it.
 * Invariant: no function here reads outside the record, payload or
 * arrays it is given the bounds of.
 */
#ifndef EMBKV_GPU_LOGIC_HD_H
#define EMBKV_GPU_LOGIC_HD_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "gpu/gpu.h"
#include "gpu/xxh3_hd.h"

/* The verdict on a record (checksum, key, version, payload of
 * payload_bytes) read for want: hashing/record.h's embkv_record_judge. */
EMBKV_HD unsigned embkv_gpu_rec_verdict(const uint8_t *rec, uint64_t want,
					size_t payload_bytes)
{
	uint64_t sum = embkv_xxh3_r64(rec);
	uint64_t key = embkv_xxh3_r64(rec + 8);
	uint64_t ver = embkv_xxh3_r64(rec + 16);

	if (embkv_xxh3_record_sum(key, ver, rec + 24, payload_bytes) != sum)
		return EMBKV_GPU_REC_TORN;
	if (ver >> 63)
		return EMBKV_GPU_REC_DEAD;
	if (key != want)
		return EMBKV_GPU_REC_OTHER_KEY;
	return EMBKV_GPU_REC_OK;
}

/* IEEE half to float, exact (normal, subnormal, inf, NaN, signed 0). */
EMBKV_HD float embkv_gpu_half_to_f32(uint16_t h)
{
	uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31u;
	uint32_t m = h & 1023u, u;
	float f;

	if (e == 31)
		u = s | 0x7f800000u | (m << 13);
	else if (e)
		u = s | ((e + 112) << 23) | (m << 13);
	else if (!m)
		u = s;
	else {
		/* subnormal: m * 2^-24, exact in float */
		f = (float)m * 5.9604644775390625e-8f;
		return s ? -f : f;
	}
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* x / dim and x % dim of an element index: in 32 bits when x fits (a
 * 64-bit divide is a long instruction sequence on a GPU, per element). */
EMBKV_HD void embkv_gpu_divmod(uint64_t x, uint32_t dim, uint32_t *q,
			       uint32_t *c)
{
	if (x <= 0xffffffffull) {
		*q = (uint32_t)x / dim;
		*c = (uint32_t)x - *q * dim;
	} else {
		*q = (uint32_t)(x / dim);
		*c = (uint32_t)(x % dim);
	}
}

/* Element c of a stored payload, as fp32. On the device the payload is
 * 8-byte aligned (records at a stride that is a multiple of 8, payload at
 * +24: the plugin refuses other strides), so elements load directly
 * (memcpy there compiles to byte loads). */
EMBKV_HD float embkv_gpu_elem_f32(const uint8_t *payload, uint32_t c,
				  enum embkv_gpu_elem elem)
{
	uint16_t h;
	uint32_t u;
	float f;

#ifdef __CUDA_ARCH__
	if (elem == EMBKV_GPU_ELEM_F32)
		return __ldg((const float *)payload + c);
	h = __ldg((const unsigned short *)payload + c);
#else
	if (elem == EMBKV_GPU_ELEM_F32) {
		memcpy(&f, payload + 4 * (size_t)c, sizeof(f));
		return f;
	}
	memcpy(&h, payload + 2 * (size_t)c, sizeof(h));
#endif
	if (elem == EMBKV_GPU_ELEM_F16)
		return embkv_gpu_half_to_f32(h);
	u = (uint32_t)h << 16; /* bf16: the top half of a float */
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Chunks of coalescing for a key with cnt occurrences. */
EMBKV_HD uint32_t embkv_gpu_chunks_of(uint32_t cnt)
{
	return (cnt + EMBKV_GPU_COALESCE_CHUNK - 1) / EMBKV_GPU_COALESCE_CHUNK;
}

/* The run of chunk b: the first r with chunk_end[r] > b (chunk_end the
 * inclusive prefix sum of embkv_gpu_chunks_of over the runs). */
EMBKV_HD uint32_t embkv_gpu_run_of_chunk(const uint32_t *chunk_end,
					 uint32_t nu, uint32_t b)
{
	uint32_t lo = 0, hi = nu;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (chunk_end[mid] > b)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Sorted positions [*j0, *j1) of chunk b of run r; returns the run's
 * number of chunks. */
EMBKV_HD uint32_t embkv_gpu_chunk_range(const uint32_t *offsets,
					const uint32_t *chunk_end, uint32_t r,
					uint32_t b, uint32_t *j0, uint32_t *j1)
{
	uint32_t first = r ? chunk_end[r - 1] : 0;
	uint32_t end = offsets[r + 1];

	*j0 = offsets[r] + (b - first) * EMBKV_GPU_COALESCE_CHUNK;
	*j1 = *j0 + EMBKV_GPU_COALESCE_CHUNK < end
		      ? *j0 + EMBKV_GPU_COALESCE_CHUNK : end;
	return chunk_end[r] - first;
}

/* Chunks a run of cnt occurrences keeps partial sums for: its chunks
 * when it has 2 or more, else 0 (a run of one chunk writes its sum
 * straight to ugrads). Their inclusive scan over the runs, pchunk_end,
 * places each multi-chunk run's partial rows; the total is at most n /
 * 32 (a run of c >= 2 chunks has cnt > 64 (c - 1) >= 32 c occurrences),
 * which is what coalescing allocates instead of a row per chunk. */
EMBKV_HD uint32_t embkv_gpu_partial_chunks_of(uint32_t cnt)
{
	uint32_t c = embkv_gpu_chunks_of(cnt);

	return c >= 2 ? c : 0;
}

/* The partial row of chunk b of run r (a run of 2+ chunks). */
EMBKV_HD uint64_t embkv_gpu_partial_row(const uint32_t *chunk_end,
					const uint32_t *pchunk_end, uint32_t r,
					uint32_t b)
{
	uint32_t first = r ? chunk_end[r - 1] : 0;

	return (uint64_t)pchunk_end[r] - (chunk_end[r] - first) + (b - first);
}

/* Element x of check_scatter_range's scatter: x < (offsets[first +
 * count] - offsets[first]) * dim counts the elements of the range's
 * occurrences in sorted order. Sorted position p -> input position i =
 * perm[p], whose run is inverse[i] (no search); a record that failed
 * its check (verdicts[r - first] != 0) writes nothing. */
EMBKV_HD void embkv_gpu_range_scatter_elem(
	const uint32_t *offsets, const uint32_t *perm, const uint32_t *inverse,
	uint32_t first, const uint8_t *records, size_t stride,
	const uint8_t *verdicts, enum embkv_gpu_elem elem, uint32_t dim,
	uint64_t x, float *out, uint8_t *found)
{
	uint32_t q, c, p, i;

	embkv_gpu_divmod(x, dim, &q, &c);
	p = offsets[first] + q;
	i = perm[p];
	uint32_t r = inverse[i] - first;

	if (verdicts[r])
		return;
	out[(uint64_t)i * dim + c] =
		embkv_gpu_elem_f32(records + (uint64_t)r * stride + 24, c, elem);
	if (c == 0 && found)
		found[i] = 1;
}

/* Element x of scatter_list's scatter: ends is the inclusive scan of the
 * listed runs' occurrence counts, so x / dim = q is the q-th listed
 * occurrence, of listed key k = the first with ends[k] > q (a binary
 * search, embkv_gpu_run_of_chunk's), x < ends[m - 1] * dim.
 * embkv_gpu_list_locate returns that occurrence's input position i,
 * with k and the column c. */
EMBKV_HD uint32_t embkv_gpu_list_locate(const uint32_t *offsets,
					const uint32_t *perm,
					const uint32_t *list,
					const uint32_t *ends, uint32_t m,
					uint32_t dim, uint64_t x, uint32_t *k,
					uint32_t *c)
{
	uint32_t q, start;

	embkv_gpu_divmod(x, dim, &q, c);
	*k = embkv_gpu_run_of_chunk(ends, m, q);
	start = *k ? ends[*k - 1] : 0;
	return perm[offsets[list[*k]] + (q - start)];
}

EMBKV_HD void embkv_gpu_list_scatter_elem(
	const uint32_t *offsets, const uint32_t *perm, const uint32_t *list,
	const uint32_t *ends, uint32_t m, const float *rows,
	const uint8_t *ufound, uint32_t dim, uint64_t x, float *out,
	uint8_t *found)
{
	uint32_t k, c;
	uint32_t i = embkv_gpu_list_locate(offsets, perm, list, ends, m, dim,
					   x, &k, &c);

	out[(uint64_t)i * dim + c] = rows[(uint64_t)k * dim + c];
	if (c == 0 && found)
		found[i] = ufound ? ufound[k] : 1;
}

/* Element x of check_scatter_list's scatter: located as scatter_list's
 * (x < ends[m - 1] * dim), the row read from listed record k's payload
 * (records + k * stride + 24, converted from elem); a record that failed
 * its check (verdicts[k] != 0) writes nothing. */
EMBKV_HD void embkv_gpu_list_rec_scatter_elem(
	const uint32_t *offsets, const uint32_t *perm, const uint32_t *list,
	const uint32_t *ends, uint32_t m, const uint8_t *records,
	size_t stride, const uint8_t *verdicts, enum embkv_gpu_elem elem,
	const uint8_t *ufound, uint32_t dim, uint64_t x, float *out,
	uint8_t *found)
{
	uint32_t k, c;
	uint32_t i = embkv_gpu_list_locate(offsets, perm, list, ends, m, dim,
					   x, &k, &c);

	if (verdicts[k])
		return;
	out[(uint64_t)i * dim + c] =
		embkv_gpu_elem_f32(records + (uint64_t)k * stride + 24, c, elem);
	if (c == 0 && found)
		found[i] = ufound ? ufound[k] : 1;
}

/* The argument checks of check_scatter_range, scatter_list and
 * check_scatter_list (gpu.h),
 * on the host before any work; both plugins call these, so they refuse
 * the same calls. 0 or -EINVAL. */
EMBKV_HD int embkv_gpu_range_args(const struct embkv_gpu_dedup *dd,
				  uint32_t first, uint32_t count,
				  const void *records, size_t stride,
				  size_t payload_bytes,
				  enum embkv_gpu_elem elem, uint32_t dim,
				  const void *out, const void *verdicts)
{
	size_t esize = elem == EMBKV_GPU_ELEM_F32 ? 4 : 2;

	/* records 8-byte aligned: the device loads payload elements in
	 * place (a misaligned load is a sticky fault there) */
	if (!dd || (uint64_t)first + count > dd->nu || !verdicts || !dim ||
	    stride % 8 || stride < 24 + payload_bytes ||
	    payload_bytes < esize * dim ||
	    (elem != EMBKV_GPU_ELEM_F32 && elem != EMBKV_GPU_ELEM_F16 &&
	     elem != EMBKV_GPU_ELEM_BF16) ||
	    (count && (!records || !out)) ||
	    ((uintptr_t)records & 7u))
		return -EINVAL;
	return 0;
}

EMBKV_HD int embkv_gpu_list_args(const struct embkv_gpu_dedup *dd,
				 const uint32_t *list, uint32_t m,
				 const float *rows, uint32_t dim,
				 const float *out)
{
	if (!dd || m > dd->nu || !dim || (m && (!list || !rows || !out)))
		return -EINVAL;
	return 0;
}

/* check_scatter_list's: the record and verdict checks of a range of m
 * (the same refusals, m > nu among them) plus the list. */
EMBKV_HD int embkv_gpu_list_check_args(const struct embkv_gpu_dedup *dd,
				       const uint32_t *list, uint32_t m,
				       const void *records, size_t stride,
				       size_t payload_bytes,
				       enum embkv_gpu_elem elem, uint32_t dim,
				       const void *out, const void *verdicts)
{
	if (embkv_gpu_range_args(dd, 0, m, records, stride, payload_bytes,
				 elem, dim, out, verdicts) ||
	    (m && !list))
		return -EINVAL;
	return 0;
}

#endif
