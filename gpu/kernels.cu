/*
 * The GPU path's kernels: key dedup with an inverse index, gradient
 * coalescing through it, the scatter of distinct rows to the caller's
 * dense tensor, and the fused record check (XXH3 of gpu/xxh3_hd.h, the
 * checksum of hashing/record.h) and scatter of records fetched into
 * device memory. Launched through the table of gpu/gpu.h (plugin.cu).
 *
 * Dedup: cub::DeviceRadixSort::SortPairs (key, position) -- stable, so
 * the occurrences of a key keep their input order -- then head flags, an
 * inclusive scan of them (the run id of every sorted position) and one
 * pass that writes the distinct keys, run offsets and the inverse. Every
 * step is parallel over positions, so one key with a million duplicates
 * costs what a million distinct keys cost.
 *
 * Coalescing: runs are cut into chunks of EMBKV_GPU_COALESCE_CHUNK rows;
 * a block per chunk sums its rows sequentially per column (coalesced
 * across columns), a run of several chunks then sums its chunks' partials
 * in order. Deterministic, equal bit for bit to the CPU client's
 * sequential sum for keys with up to a chunk of duplicates, and a hot key
 * with thousands of duplicates is spread over that many blocks.
 *
 * Record check: a thread per distinct record computes its verdict, then
 * the scatter reads the good records' payloads straight into the
 * caller's rows (converted from fp16/bf16 where stored so), parallel
 * over elements, so a hot key is no slower than distinct ones.
 *
 * ABI 2 (the one-sided path, at the end of this file): the same check
 * and scatter for a range of the distinct keys whose records landed in a
 * compact buffer (check_scatter_range), and the scatter of the rows of a
 * list of distinct keys fetched by RPC (scatter_list); both parallel
 * over the elements they write. ABI 3: check_scatter_list, the check
 * and scatter of listed keys' records that an RPC wrote into the device
 * slab (scatter_list's scatter, reading records).
 *
 * Invariant: nothing here reads or writes past n keys, nu runs or the
 * dim columns of a row; device buffers are sized by the launchers.
 */
#include <errno.h>
#include <cuda_runtime.h>
#include <cub/cub.cuh>

#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/logic_hd.h"
#include "gpu/xxh3_hd.h"

static __global__ void iota_kernel(uint32_t *p, uint32_t n)
{
	for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += gridDim.x * blockDim.x)
		p[i] = i;
}

static __global__ void head_kernel(const uint64_t *sorted, uint32_t n,
				   uint32_t *head)
{
	for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < n;
	     j += gridDim.x * blockDim.x)
		head[j] = (j == 0 || sorted[j] != sorted[j - 1]) ? 1u : 0u;
}

static __global__ void runs_kernel(const uint64_t *sorted,
				   const uint32_t *perm, const uint32_t *runid1,
				   uint32_t n, uint64_t *ukeys,
				   uint32_t *offsets, uint32_t *inverse,
				   uint32_t *nu)
{
	for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < n;
	     j += gridDim.x * blockDim.x) {
		uint32_t r = runid1[j] - 1;

		inverse[perm[j]] = r;
		if (j == 0 || runid1[j - 1] != runid1[j]) {
			ukeys[r] = sorted[j];
			offsets[r] = j;
		}
		if (j == n - 1) {
			offsets[r + 1] = n;
			*nu = r + 1;
		}
	}
}

static unsigned grid_for(uint64_t items, unsigned block)
{
	uint64_t g = (items + block - 1) / block;

	if (g < 1)
		g = 1;
	return g > 65535u * 4 ? 65535u * 4 : (unsigned)g;
}

static size_t up256(size_t b)
{
	return (b + 255) & ~(size_t)255;
}

int embkv_gpu_k_dedup(const uint64_t *d_keys, uint32_t n,
		      struct embkv_gpu_dedup *dd, uint32_t *h_nu,
		      cudaStream_t s)
{
	(void)cudaGetLastError(); /* not an earlier call's error */
	size_t sort_tmp = 0, scan_tmp = 0, tmp, off = 0, total;
	uint64_t *sorted;
	uint32_t *iota, *head, *runid1, *d_nu;
	uint8_t *m;
	cudaError_t e;

	memset(dd, 0, sizeof(*dd));
	e = cub::DeviceRadixSort::SortPairs(NULL, sort_tmp, (const uint64_t *)NULL,
					    (uint64_t *)NULL, (const uint32_t *)NULL,
					    (uint32_t *)NULL, (int)n, 0, 64, s);
	if (e == cudaSuccess)
		e = cub::DeviceScan::InclusiveSum(NULL, scan_tmp, (uint32_t *)NULL,
						  (uint32_t *)NULL, (int)n, s);
	if (e != cudaSuccess)
		return embkv_gpu_fail(e);
	tmp = sort_tmp > scan_tmp ? sort_tmp : scan_tmp;
	/* one allocation: ukeys, sorted | inverse, perm, offsets, iota, head,
	 * runid1, nu | temp */
	total = 2 * up256(n * sizeof(uint64_t)) +
		5 * up256(n * sizeof(uint32_t)) +
		up256((size_t)(n + 1) * sizeof(uint32_t)) + 256 + up256(tmp);
	e = embkv_gpu_malloc((void **)&m, total, s);
	if (e != cudaSuccess)
		return embkv_gpu_fail(e);
	dd->mem = m;
	dd->n = n;
	dd->ukeys = (uint64_t *)(m + off); off += up256(n * sizeof(uint64_t));
	sorted = (uint64_t *)(m + off); off += up256(n * sizeof(uint64_t));
	dd->inverse = (uint32_t *)(m + off); off += up256(n * sizeof(uint32_t));
	dd->perm = (uint32_t *)(m + off); off += up256(n * sizeof(uint32_t));
	dd->offsets = (uint32_t *)(m + off);
	off += up256((size_t)(n + 1) * sizeof(uint32_t));
	iota = (uint32_t *)(m + off); off += up256(n * sizeof(uint32_t));
	head = (uint32_t *)(m + off); off += up256(n * sizeof(uint32_t));
	runid1 = (uint32_t *)(m + off); off += up256(n * sizeof(uint32_t));
	d_nu = (uint32_t *)(m + off); off += 256;

	iota_kernel<<<grid_for(n, 256), 256, 0, s>>>(iota, n);
	e = cub::DeviceRadixSort::SortPairs(m + off, sort_tmp, d_keys, sorted,
					    iota, dd->perm, (int)n, 0, 64, s);
	if (e != cudaSuccess)
		goto fail;
	head_kernel<<<grid_for(n, 256), 256, 0, s>>>(sorted, n, head);
	e = cub::DeviceScan::InclusiveSum(m + off, scan_tmp, head, runid1,
					  (int)n, s);
	if (e != cudaSuccess)
		goto fail;
	runs_kernel<<<grid_for(n, 256), 256, 0, s>>>(sorted, dd->perm, runid1,
						     n, dd->ukeys, dd->offsets,
						     dd->inverse, d_nu);
	e = cudaGetLastError(); /* else *h_nu would be whatever d_nu held */
	if (e != cudaSuccess)
		goto fail;
	e = cudaMemcpyAsync(h_nu, d_nu, sizeof(*h_nu), cudaMemcpyDeviceToHost,
			    s);
	if (e == cudaSuccess)
		e = cudaStreamSynchronize(s);
	if (e != cudaSuccess)
		goto fail;
	dd->nu = *h_nu;
	return 0;
fail:
	embkv_gpu_free(m, s);
	memset(dd, 0, sizeof(*dd));
	return embkv_gpu_fail(e);
}

static __global__ void scatter_kernel(const uint32_t *inverse,
				      const float *urows,
				      const uint8_t *ufound, uint32_t n,
				      uint32_t dim, float *out, uint8_t *found)
{
	uint64_t total = (uint64_t)n * dim;

	for (uint64_t x = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	     x < total; x += (uint64_t)gridDim.x * blockDim.x) {
		uint32_t i, c, r;

		embkv_gpu_divmod(x, dim, &i, &c);
		r = inverse[i];
		out[x] = urows[(uint64_t)r * dim + c];
		if (c == 0 && found)
			found[i] = ufound ? ufound[r] : 1;
	}
}

int embkv_gpu_k_scatter(const struct embkv_gpu_dedup *dd, const float *urows,
			const uint8_t *ufound, uint32_t dim, float *out,
			uint8_t *found, cudaStream_t s)
{
	(void)cudaGetLastError(); /* not an earlier call's error */
	scatter_kernel<<<grid_for((uint64_t)dd->n * dim, 256), 256, 0, s>>>(
		dd->inverse, urows, ufound, dd->n, dim, out, found);
	return embkv_gpu_fail(cudaGetLastError());
}

/* nchunks[r] = the chunks of run r (chunk_end is their inclusive scan);
 * pchunks[r] = those that keep partial sums (pchunk_end, their scan) */
static __global__ void chunks_kernel(const uint32_t *offsets, uint32_t nu,
				     uint32_t *nchunks, uint32_t *pchunks)
{
	for (uint32_t r = blockIdx.x * blockDim.x + threadIdx.x; r < nu;
	     r += gridDim.x * blockDim.x) {
		uint32_t cnt = offsets[r + 1] - offsets[r];

		nchunks[r] = embkv_gpu_chunks_of(cnt);
		pchunks[r] = embkv_gpu_partial_chunks_of(cnt);
	}
}

static __global__ void chunk_sum_kernel(const uint32_t *offsets,
					const uint32_t *perm,
					const uint32_t *chunk_end,
					const uint32_t *pchunk_end, uint32_t nu,
					const float *grads, uint32_t dim,
					float *partial, float *ugrads)
{
	uint32_t total = chunk_end[nu - 1];

	for (uint32_t b = blockIdx.x; b < total; b += gridDim.x) {
		uint32_t r = embkv_gpu_run_of_chunk(chunk_end, nu, b), j0, j1;
		uint32_t nch = embkv_gpu_chunk_range(offsets, chunk_end, r, b,
						     &j0, &j1);
		float *dst = nch == 1
			? ugrads + (uint64_t)r * dim
			: partial + embkv_gpu_partial_row(chunk_end, pchunk_end,
							  r, b) * dim;

		for (uint32_t c = threadIdx.x; c < dim; c += blockDim.x) {
			float acc = grads[(uint64_t)perm[j0] * dim + c];

			for (uint32_t j = j0 + 1; j < j1; j++)
				acc += grads[(uint64_t)perm[j] * dim + c];
			dst[c] = acc;
		}
	}
}

static __global__ void chunk_merge_kernel(const uint32_t *chunk_end,
					  const uint32_t *pchunk_end,
					  uint32_t nu, const float *partial,
					  uint32_t dim, float *ugrads)
{
	for (uint32_t r = blockIdx.x; r < nu; r += gridDim.x) {
		uint32_t first = r ? chunk_end[r - 1] : 0;
		uint32_t nch = chunk_end[r] - first;
		const float *p;

		if (nch < 2)
			continue;
		p = partial + embkv_gpu_partial_row(chunk_end, pchunk_end, r,
						    first) * dim;
		for (uint32_t c = threadIdx.x; c < dim; c += blockDim.x) {
			float acc = p[c];

			for (uint32_t b = 1; b < nch; b++)
				acc += p[(uint64_t)b * dim + c];
			ugrads[(uint64_t)r * dim + c] = acc;
		}
	}
}

static unsigned cols_block(uint32_t dim)
{
	unsigned t = (dim + 31) / 32 * 32;

	return t > 256 ? 256 : t;
}

/*
 * Memory: only runs of 2+ chunks keep partial sums (a run of one chunk
 * writes its sum straight to ugrads), and their chunks number at most
 * n / 32 (embkv_gpu_partial_chunks_of), so partial holds n / 32 rows,
 * placed by a second scan (pchunk_end) over those runs only. A row per
 * chunk of every run (nu + n / 64 rows, the launch bound) was ~1 GB for
 * a million distinct keys at dim 256, where no row is needed at all.
 * Both bounds come from n and nu, so there is no host round trip; the
 * sums (and their order) are unchanged, only where partials live.
 */
int embkv_gpu_k_coalesce(const struct embkv_gpu_dedup *dd, const float *grads,
			 uint32_t dim, float *ugrads, cudaStream_t s)
{
	(void)cudaGetLastError(); /* not an earlier call's error */
	uint32_t nu = dd->nu;
	/* chunks <= nu + n / CHUNK: the launch bound, no host round trip */
	uint64_t maxch = (uint64_t)nu + dd->n / EMBKV_GPU_COALESCE_CHUNK;
	uint64_t prows = dd->n / 32; /* >= the partial chunks, see above */
	size_t scan_tmp = 0, off = 0, arr = up256(nu * sizeof(uint32_t));
	uint32_t *nch, *chunk_end, *pch, *pchunk_end;
	float *partial;
	uint8_t *m;
	cudaError_t e;

	if (!nu)
		return 0;
	e = cub::DeviceScan::InclusiveSum(NULL, scan_tmp, (uint32_t *)NULL,
					  (uint32_t *)NULL, (int)nu, s);
	if (e != cudaSuccess)
		return embkv_gpu_fail(e);
	e = embkv_gpu_malloc((void **)&m, 4 * arr +
					 up256(prows * dim * sizeof(float)) +
					 up256(scan_tmp), s);
	if (e != cudaSuccess)
		return embkv_gpu_fail(e);
	nch = (uint32_t *)m; off += arr;
	chunk_end = (uint32_t *)(m + off); off += arr;
	pch = (uint32_t *)(m + off); off += arr;
	pchunk_end = (uint32_t *)(m + off); off += arr;
	partial = (float *)(m + off); off += up256(prows * dim * sizeof(float));
	chunks_kernel<<<grid_for(nu, 256), 256, 0, s>>>(dd->offsets, nu, nch,
							 pch);
	e = cub::DeviceScan::InclusiveSum(m + off, scan_tmp, nch, chunk_end,
					  (int)nu, s);
	if (e == cudaSuccess)
		e = cub::DeviceScan::InclusiveSum(m + off, scan_tmp, pch,
						  pchunk_end, (int)nu, s);
	if (e == cudaSuccess) {
		unsigned g = maxch > 65535u * 16 ? 65535u * 16 : (unsigned)maxch;
		unsigned gm = nu > 65535u * 16 ? 65535u * 16 : nu;

		chunk_sum_kernel<<<g, cols_block(dim), 0, s>>>(
			dd->offsets, dd->perm, chunk_end, pchunk_end, nu, grads,
			dim, partial, ugrads);
		chunk_merge_kernel<<<gm, cols_block(dim), 0, s>>>(
			chunk_end, pchunk_end, nu, partial, dim, ugrads);
		e = cudaGetLastError();
	}
	embkv_gpu_free(m, s);
	return embkv_gpu_fail(e);
}

/* The check: a thread per distinct key hashes its record (XXH3 over the
 * payload, then key and version seeded with it) and lists a failed one. */
static __global__ void check_kernel(const uint64_t *ukeys, uint32_t nu,
				    const uint8_t *records, size_t stride,
				    size_t payload_bytes, uint8_t *verdicts,
				    uint32_t *failed, uint32_t *nfailed)
{
	for (uint32_t r = blockIdx.x * blockDim.x + threadIdx.x; r < nu;
	     r += gridDim.x * blockDim.x) {
		unsigned v = embkv_gpu_rec_verdict(records + (uint64_t)r * stride,
						   ukeys[r], payload_bytes);

		verdicts[r] = (uint8_t)v;
		if (v)
			failed[atomicAdd(nfailed, 1u)] = r;
	}
}

/* The scatter straight from the records: an element of the caller's rows
 * a thread, through the inverse, converted from the stored type; rows of
 * failed records are left alone. Parallel over n * dim, so one key
 * repeated a million times costs what a million keys cost. */
static __global__ void record_scatter_kernel(const uint32_t *inverse,
					     uint32_t n, const uint8_t *records,
					     size_t stride,
					     const uint8_t *verdicts,
					     enum embkv_gpu_elem elem,
					     uint32_t dim, float *out,
					     uint8_t *found)
{
	uint64_t total = (uint64_t)n * dim;

	for (uint64_t x = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	     x < total; x += (uint64_t)gridDim.x * blockDim.x) {
		uint32_t i, c, r;

		embkv_gpu_divmod(x, dim, &i, &c);
		r = inverse[i];
		if (verdicts[r])
			continue;
		out[x] = embkv_gpu_elem_f32(records + (uint64_t)r * stride + 24,
					    c, elem);
		if (c == 0 && found)
			found[i] = 1;
	}
}

int embkv_gpu_k_check_scatter(const struct embkv_gpu_dedup *dd,
			      const void *records, size_t stride,
			      size_t payload_bytes, enum embkv_gpu_elem elem,
			      uint32_t dim, float *out, uint8_t *found,
			      uint32_t *failed, uint32_t *nfailed,
			      uint8_t *verdicts, cudaStream_t s)
{
	(void)cudaGetLastError(); /* not an earlier call's error */
	uint8_t *v = verdicts;
	cudaError_t e;

	/* check_scatter_range's refusals over all nu (failed standing for
	 * its verdicts), and nfailed */
	if (!nfailed || embkv_gpu_range_args(dd, 0, dd->nu, records, stride,
					     payload_bytes, elem, dim, out,
					     failed))
		return -EINVAL;
	e = cudaMemsetAsync(nfailed, 0, sizeof(*nfailed), s);

	if (e != cudaSuccess)
		return embkv_gpu_fail(e);
	if (!dd->nu)
		return 0;
	if (!v && (e = embkv_gpu_malloc((void **)&v, dd->nu, s)) != cudaSuccess)
		return embkv_gpu_fail(e);
	check_kernel<<<grid_for(dd->nu, 128), 128, 0, s>>>(
		dd->ukeys, dd->nu, (const uint8_t *)records, stride,
		payload_bytes, v, failed, nfailed);
	record_scatter_kernel<<<grid_for((uint64_t)dd->n * dim, 256), 256, 0,
				s>>>(dd->inverse, dd->n,
				     (const uint8_t *)records, stride, v, elem,
				     dim, out, found);
	e = cudaGetLastError();
	if (!verdicts)
		embkv_gpu_free(v, s);
	return embkv_gpu_fail(e);
}

/*
 * check_scatter_range (ABI 2): the one-sided path reads the records of a
 * range of the distinct keys into a compact landing buffer and checks
 * them there. A thread per record gives its verdict; then the scatter
 * runs over the range's occurrences x dim in sorted order (the range's
 * occurrences are the sorted positions offsets[first] ..
 * offsets[first + count], contiguous), so a hot key spreads over as
 * many threads as it has elements. The element count lives on the device
 * (offsets), so the grid is sized without a host round trip: enough
 * blocks to fill the device (resident_grid), each grid-striding; the
 * threads past the range's end exit at once.
 */
static unsigned resident_grid(uint64_t items, unsigned block)
{
	unsigned g = grid_for(items, block);
	int dev = 0, sms = 0;

	if (cudaGetDevice(&dev) == cudaSuccess &&
	    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount,
				   dev) == cudaSuccess &&
	    sms > 0 && g > (unsigned)sms * 16)
		g = (unsigned)sms * 16;
	return g;
}

static __global__ void range_check_kernel(const uint64_t *ukeys,
					  uint32_t first, uint32_t count,
					  const uint8_t *records, size_t stride,
					  size_t payload_bytes,
					  uint8_t *verdicts)
{
	for (uint32_t r = blockIdx.x * blockDim.x + threadIdx.x; r < count;
	     r += gridDim.x * blockDim.x)
		verdicts[r] = (uint8_t)embkv_gpu_rec_verdict(
			records + (uint64_t)r * stride, ukeys[first + r],
			payload_bytes);
}

static __global__ void range_scatter_kernel(
	const uint32_t *offsets, const uint32_t *perm, const uint32_t *inverse,
	uint32_t first, uint32_t count, const uint8_t *records, size_t stride,
	const uint8_t *verdicts, enum embkv_gpu_elem elem, uint32_t dim,
	float *out, uint8_t *found)
{
	uint64_t total = (uint64_t)(offsets[first + count] - offsets[first]) *
			 dim;

	for (uint64_t x = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	     x < total; x += (uint64_t)gridDim.x * blockDim.x)
		embkv_gpu_range_scatter_elem(offsets, perm, inverse, first,
					     records, stride, verdicts, elem,
					     dim, x, out, found);
}

int embkv_gpu_k_check_scatter_range(const struct embkv_gpu_dedup *dd,
				    uint32_t first, uint32_t count,
				    const void *records, size_t stride,
				    size_t payload_bytes,
				    enum embkv_gpu_elem elem, uint32_t dim,
				    float *out, uint8_t *found,
				    uint8_t *verdicts, cudaStream_t s)
{
	(void)cudaGetLastError(); /* not an earlier call's error */
	int rc = embkv_gpu_range_args(dd, first, count, records, stride,
				      payload_bytes, elem, dim, out, verdicts);

	if (rc || !count)
		return rc;
	range_check_kernel<<<grid_for(count, 128), 128, 0, s>>>(
		dd->ukeys, first, count, (const uint8_t *)records, stride,
		payload_bytes, verdicts);
	range_scatter_kernel<<<resident_grid((uint64_t)dd->n * dim, 256), 256,
			       0, s>>>(dd->offsets, dd->perm, dd->inverse,
				       first, count, (const uint8_t *)records,
				       stride, verdicts, elem, dim, out, found);
	return embkv_gpu_fail(cudaGetLastError());
}

/*
 * scatter_list (ABI 2): the rows of listed distinct keys (those the
 * one-sided path left to RPC) to every occurrence. counts[k] = the
 * occurrences of list[k]; their inclusive scan (cub) ends[] makes the
 * listed occurrences one flat range, and a thread per element finds its
 * listed key by a binary search in ends (embkv_gpu_list_scatter_elem):
 * balanced whatever the counts, so a key with a million occurrences
 * spreads over the whole grid. Grid as check_scatter_range's (the total
 * is on the device).
 */
static __global__ void list_counts_kernel(const uint32_t *offsets,
					  const uint32_t *list, uint32_t m,
					  uint32_t *counts)
{
	for (uint32_t k = blockIdx.x * blockDim.x + threadIdx.x; k < m;
	     k += gridDim.x * blockDim.x)
		counts[k] = offsets[list[k] + 1] - offsets[list[k]];
}

static __global__ void list_scatter_kernel(
	const uint32_t *offsets, const uint32_t *perm, const uint32_t *list,
	const uint32_t *ends, uint32_t m, const float *rows,
	const uint8_t *ufound, uint32_t dim, float *out, uint8_t *found)
{
	uint64_t total = (uint64_t)ends[m - 1] * dim;

	for (uint64_t x = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	     x < total; x += (uint64_t)gridDim.x * blockDim.x)
		embkv_gpu_list_scatter_elem(offsets, perm, list, ends, m, rows,
					    ufound, dim, x, out, found);
}

/* The listed keys' counts and their inclusive scan, *ends (m entries),
 * in stream-ordered memory *mem that the caller frees (NULL on failure;
 * then nothing is left allocated). 1 <= m <= nu. */
static cudaError_t list_ends(const uint32_t *offsets, const uint32_t *list,
			     uint32_t m, uint8_t **mem, uint32_t **ends,
			     cudaStream_t s)
{
	size_t scan_tmp = 0, arr = up256((size_t)m * sizeof(uint32_t));
	uint32_t *counts;
	cudaError_t e;

	*mem = NULL;
	e = cub::DeviceScan::InclusiveSum(NULL, scan_tmp, (uint32_t *)NULL,
					  (uint32_t *)NULL, (int)m, s);
	if (e != cudaSuccess)
		return e;
	e = embkv_gpu_malloc((void **)mem, 2 * arr + up256(scan_tmp), s);
	if (e != cudaSuccess) {
		*mem = NULL;
		return e;
	}
	counts = (uint32_t *)*mem;
	*ends = (uint32_t *)(*mem + arr);
	list_counts_kernel<<<grid_for(m, 256), 256, 0, s>>>(offsets, list, m,
							     counts);
	e = cub::DeviceScan::InclusiveSum(*mem + 2 * arr, scan_tmp, counts,
					  *ends, (int)m, s);
	if (e != cudaSuccess) {
		embkv_gpu_free(*mem, s);
		*mem = NULL;
	}
	return e;
}

int embkv_gpu_k_scatter_list(const struct embkv_gpu_dedup *dd,
			     const uint32_t *list, uint32_t m,
			     const float *rows, const uint8_t *ufound,
			     uint32_t dim, float *out, uint8_t *found,
			     cudaStream_t s)
{
	(void)cudaGetLastError(); /* not an earlier call's error */
	uint32_t *ends;
	uint8_t *mem;
	cudaError_t e;
	int rc = embkv_gpu_list_args(dd, list, m, rows, dim, out);

	if (rc || !m)
		return rc;
	e = list_ends(dd->offsets, list, m, &mem, &ends, s);
	if (e != cudaSuccess)
		return embkv_gpu_fail(e);
	list_scatter_kernel<<<resident_grid((uint64_t)dd->n * dim, 256), 256,
			      0, s>>>(dd->offsets, dd->perm, list, ends, m,
				      rows, ufound, dim, out, found);
	e = cudaGetLastError();
	embkv_gpu_free(mem, s);
	return embkv_gpu_fail(e);
}

/*
 * check_scatter_list (ABI 3): the records of the keys the one-sided
 * READs left over, written whole by an RPC's server into the device slab
 * (slot k for listed key list[k]). A thread per record gives its verdict
 * against ukeys[list[k]] (as range_check_kernel does against its range),
 * then scatter_list's flat, balanced scatter (list_ends, a binary search
 * per element) reads each good record's payload instead of an fp32 row.
 */
static __global__ void list_check_kernel(const uint64_t *ukeys,
					 const uint32_t *list, uint32_t m,
					 const uint8_t *records, size_t stride,
					 size_t payload_bytes,
					 uint8_t *verdicts)
{
	for (uint32_t k = blockIdx.x * blockDim.x + threadIdx.x; k < m;
	     k += gridDim.x * blockDim.x)
		verdicts[k] = (uint8_t)embkv_gpu_rec_verdict(
			records + (uint64_t)k * stride, ukeys[list[k]],
			payload_bytes);
}

static __global__ void list_rec_scatter_kernel(
	const uint32_t *offsets, const uint32_t *perm, const uint32_t *list,
	const uint32_t *ends, uint32_t m, const uint8_t *records,
	size_t stride, const uint8_t *verdicts, enum embkv_gpu_elem elem,
	const uint8_t *ufound, uint32_t dim, float *out, uint8_t *found)
{
	uint64_t total = (uint64_t)ends[m - 1] * dim;

	for (uint64_t x = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	     x < total; x += (uint64_t)gridDim.x * blockDim.x)
		embkv_gpu_list_rec_scatter_elem(offsets, perm, list, ends, m,
						records, stride, verdicts,
						elem, ufound, dim, x, out,
						found);
}

int embkv_gpu_k_check_scatter_list(const struct embkv_gpu_dedup *dd,
				   const uint32_t *list, uint32_t m,
				   const void *records, size_t stride,
				   size_t payload_bytes,
				   enum embkv_gpu_elem elem, uint32_t dim,
				   const uint8_t *ufound, float *out,
				   uint8_t *found, uint8_t *verdicts,
				   cudaStream_t s)
{
	(void)cudaGetLastError(); /* not an earlier call's error */
	uint32_t *ends;
	uint8_t *mem;
	cudaError_t e;
	int rc = embkv_gpu_list_check_args(dd, list, m, records, stride,
					   payload_bytes, elem, dim, out,
					   verdicts);

	if (rc || !m)
		return rc;
	list_check_kernel<<<grid_for(m, 128), 128, 0, s>>>(
		dd->ukeys, list, m, (const uint8_t *)records, stride,
		payload_bytes, verdicts);
	e = cudaGetLastError();
	if (e == cudaSuccess)
		e = list_ends(dd->offsets, list, m, &mem, &ends, s);
	if (e != cudaSuccess)
		return embkv_gpu_fail(e);
	list_rec_scatter_kernel<<<resident_grid((uint64_t)dd->n * dim, 256),
				  256, 0, s>>>(dd->offsets, dd->perm, list,
					       ends, m,
					       (const uint8_t *)records,
					       stride, verdicts, elem, ufound,
					       dim, out, found);
	e = cudaGetLastError();
	embkv_gpu_free(mem, s);
	return embkv_gpu_fail(e);
}
