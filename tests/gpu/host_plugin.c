/*
 * A host-memory stand-in for libembkv_gpu.so (gpu/gpu.h), for tests on
 * machines without a GPU: "device" memory is host memory, copies are
 * memcpy, events and streams are no-ops, and the kernels are host
 * references with the kernels' exact contracts -- a stable sort dedup
 * (ascending distinct keys, inverse, perm in input order, offsets),
 * coalescing in the same chunks of EMBKV_GPU_COALESCE_CHUNK rows summed
 * in the same order, the scatter, the record check, (ABI 2) the
 * record check over a range of the distinct keys and the scatter of
 * listed keys' rows, and (ABI 3) the record check and scatter of listed
 * keys' records. The per-element logic is the kernels' own text
 * (gpu/logic_hd.h: chunking and the partial rows, record verdict,
 * element conversion, the range and list scatters' elements, the ABI
 * 2/3 ops' argument checks; gpu/xxh3_hd.h). Built as libembkv_gpu_host.so;
 * the host variants of the GPU tests load it in place of the CUDA
 * plugin, so client/gpu.c's staging path (dedup, chunking, double
 * buffering, push a chunk ahead) and the tests' own assertions run in
 * every build.
 *
 * Test hook (this stand-in only; the CUDA plugin has none):
 * EMBKV_GPU_HOST_TEAR=N (N > 0) makes check_scatter_range and
 * check_scatter_list tear the first N records they are ever asked to
 * check in this process (one process-wide atomic count over both ops,
 * all calls and threads; in each call's record order): one payload
 * byte of each (the checksum's first byte when payload_bytes is 0) is
 * flipped BEFORE the check, in a private copy of the record (the
 * caller's landing buffer is not written), so those records come back
 * EMBKV_GPU_REC_TORN and their rows unwritten, as a READ that raced a
 * write would, and the caller must re-read them. Read at every call;
 * unset, empty, 0 or not a number: no tearing.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"
#include "gpu/logic_hd.h"

static const char *h_last_error(void)
{
	return "no error";
}

static int h_probe(struct embkv_gpu_dev_info *info)
{
	memset(info, 0, sizeof(*info));
	info->count = 1;
	info->cc_major = 9;
	snprintf(info->name, sizeof(info->name), "host reference (no GPU)");
	return 0;
}

static int h_alloc(void **p, size_t bytes)
{
	*p = malloc(bytes ? bytes : 1);
	return *p ? 0 : -ENOMEM;
}

static void h_free(void *p)
{
	free(p);
}

static int h_dev_alloc(void **p, size_t bytes, void *stream)
{
	(void)stream;
	return h_alloc(p, bytes);
}

static void h_dev_free(void *p, void *stream)
{
	(void)stream;
	free(p);
}

static int h_copy(void *dst, const void *src, size_t bytes, void *stream)
{
	(void)stream;
	memcpy(dst, src, bytes);
	return 0;
}

static int h_memset(void *dst, int v, size_t bytes, void *stream)
{
	(void)stream;
	memset(dst, v, bytes);
	return 0;
}

static int h_event_create(void **ev)
{
	*ev = malloc(1);
	return *ev ? 0 : -ENOMEM;
}

static int h_event_record(void *ev, void *stream)
{
	(void)ev;
	(void)stream;
	return 0;
}

static int h_wait(void *x)
{
	(void)x;
	return 0;
}

struct kp {
	uint64_t key;
	uint32_t pos;
};

static int cmp_kp(const void *a, const void *b)
{
	const struct kp *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int h_dedup(const uint64_t *keys, uint32_t n, struct embkv_gpu_dedup *dd,
		   uint64_t *h_ukeys, void *stream)
{
	struct kp *s;
	uint32_t r = 0;

	(void)stream;
	if (!n || n > INT32_MAX || !keys || !dd)
		return -EINVAL;
	memset(dd, 0, sizeof(*dd));
	s = malloc((size_t)n * sizeof(*s));
	dd->ukeys = malloc((size_t)n * sizeof(uint64_t));
	dd->inverse = malloc((size_t)n * sizeof(uint32_t));
	dd->perm = malloc((size_t)n * sizeof(uint32_t));
	dd->offsets = malloc(((size_t)n + 1) * sizeof(uint32_t));
	if (!s || !dd->ukeys || !dd->inverse || !dd->perm || !dd->offsets) {
		free(s);
		free(dd->ukeys);
		free(dd->inverse);
		free(dd->perm);
		free(dd->offsets);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		s[i].key = keys[i];
		s[i].pos = i;
	}
	qsort(s, n, sizeof(*s), cmp_kp);
	for (uint32_t j = 0; j < n; j++) {
		if (j && s[j].key != s[j - 1].key)
			r++;
		if (!j || s[j].key != s[j - 1].key) {
			dd->ukeys[r] = s[j].key;
			dd->offsets[r] = j;
		}
		dd->perm[j] = s[j].pos;
		dd->inverse[s[j].pos] = r;
	}
	free(s);
	dd->n = n;
	dd->nu = r + 1;
	dd->offsets[dd->nu] = n;
	dd->mem = dd->ukeys;
	if (h_ukeys)
		memcpy(h_ukeys, dd->ukeys, dd->nu * sizeof(uint64_t));
	return 0;
}

static void h_dedup_free(struct embkv_gpu_dedup *dd, void *stream)
{
	(void)stream;
	if (!dd)
		return;
	if (dd->mem) {
		free(dd->ukeys);
		free(dd->inverse);
		free(dd->perm);
		free(dd->offsets);
	}
	memset(dd, 0, sizeof(*dd));
}

static int h_scatter(const struct embkv_gpu_dedup *dd, const float *urows,
		     const uint8_t *ufound, uint32_t dim, float *out,
		     uint8_t *found, void *stream)
{
	(void)stream;
	if (!dd || !dim)
		return -EINVAL; /* as the plugin */
	for (uint32_t i = 0; i < dd->n; i++) {
		uint32_t r = dd->inverse[i];

		memcpy(out + (size_t)i * dim, urows + (size_t)r * dim,
		       dim * sizeof(float));
		if (found)
			found[i] = ufound ? ufound[r] : 1;
	}
	return 0;
}

/* The kernels' steps: chunk counts and their inclusive scans (all
 * chunks; the chunks of runs of 2+ chunks, which place the partial rows,
 * at most n / 32 of them), each chunk summed sequentially
 * (chunk_sum_kernel), then a key's chunks in order (chunk_merge_kernel). */
static int h_coalesce(const struct embkv_gpu_dedup *dd, const float *grads,
		      uint32_t dim, float *ugrads, void *stream)
{
	if (!dd || !dim)
		return -EINVAL; /* as the plugin */
	size_t nu1 = dd->nu ? dd->nu : 1;
	uint32_t *chunk_end = malloc(nu1 * sizeof(uint32_t));
	uint32_t *pchunk_end = malloc(nu1 * sizeof(uint32_t));
	float *partial;
	uint32_t total = 0, ptotal = 0;

	(void)stream;
	if (!chunk_end || !pchunk_end) {
		free(chunk_end);
		free(pchunk_end);
		return -ENOMEM;
	}
	for (uint32_t r = 0; r < dd->nu; r++) {
		uint32_t cnt = dd->offsets[r + 1] - dd->offsets[r];

		total += embkv_gpu_chunks_of(cnt);
		chunk_end[r] = total;
		ptotal += embkv_gpu_partial_chunks_of(cnt);
		pchunk_end[r] = ptotal;
	}
	/* the kernels' bound, which the count must never pass */
	if (ptotal > dd->n / 32)
		abort();
	partial = malloc(((size_t)ptotal ? ptotal : 1) * dim * sizeof(float));
	if (!partial) {
		free(chunk_end);
		free(pchunk_end);
		return -ENOMEM;
	}
	for (uint32_t b = 0; b < total; b++) {
		uint32_t r = embkv_gpu_run_of_chunk(chunk_end, dd->nu, b), j0, j1;
		uint32_t nch = embkv_gpu_chunk_range(dd->offsets, chunk_end, r, b,
						     &j0, &j1);
		float *dst = nch == 1
			? ugrads + (size_t)r * dim
			: partial + embkv_gpu_partial_row(chunk_end, pchunk_end,
							  r, b) * dim;

		for (uint32_t c = 0; c < dim; c++) {
			float acc = grads[(size_t)dd->perm[j0] * dim + c];

			for (uint32_t j = j0 + 1; j < j1; j++)
				acc += grads[(size_t)dd->perm[j] * dim + c];
			dst[c] = acc;
		}
	}
	for (uint32_t r = 0; r < dd->nu; r++) {
		uint32_t first = r ? chunk_end[r - 1] : 0;
		uint32_t nch = chunk_end[r] - first;
		const float *p;

		if (nch < 2)
			continue;
		p = partial + embkv_gpu_partial_row(chunk_end, pchunk_end, r,
						    first) * dim;
		for (uint32_t c = 0; c < dim; c++) {
			float acc = p[c];

			for (uint32_t b = 1; b < nch; b++)
				acc += p[(size_t)b * dim + c];
			ugrads[(size_t)r * dim + c] = acc;
		}
	}
	free(partial);
	free(chunk_end);
	free(pchunk_end);
	return 0;
}

static int h_check_scatter(const struct embkv_gpu_dedup *dd,
			   const void *records, size_t stride,
			   size_t payload_bytes, enum embkv_gpu_elem elem,
			   uint32_t dim, float *out, uint8_t *found,
			   uint32_t *failed, uint32_t *nfailed,
			   uint8_t *verdicts, void *stream)
{
	(void)stream;
	if (!dd || !nfailed ||
	    embkv_gpu_range_args(dd, 0, dd->nu, records, stride,
				 payload_bytes, elem, dim, out, failed))
		return -EINVAL; /* as the plugin */
	*nfailed = 0;
	for (uint32_t r = 0; r < dd->nu; r++) {
		const uint8_t *rec = (const uint8_t *)records + (size_t)r * stride;
		unsigned v = embkv_gpu_rec_verdict(rec, dd->ukeys[r],
						   payload_bytes);

		if (verdicts)
			verdicts[r] = (uint8_t)v;
		if (v) {
			failed[(*nfailed)++] = r;
			continue;
		}
		for (uint32_t j = dd->offsets[r]; j < dd->offsets[r + 1]; j++) {
			uint32_t i = dd->perm[j];

			for (uint32_t c = 0; c < dim; c++)
				out[(size_t)i * dim + c] =
					embkv_gpu_elem_f32(rec + 24, c, elem);
			if (found)
				found[i] = 1;
		}
	}
	return 0;
}

/* EMBKV_GPU_HOST_TEAR's count of the records torn so far (header). */
static atomic_ulong host_torn;

static unsigned long host_tear_limit(void)
{
	const char *v = getenv("EMBKV_GPU_HOST_TEAR");
	char *end;
	unsigned long n;

	if (!v || !*v)
		return 0;
	n = strtoul(v, &end, 10);
	return *end ? 0 : n;
}

/* The record to check in place of rec: while the hook's count of tear
 * records lasts, a private copy (*scratch, stride bytes, allocated on
 * first use; the caller frees it) with one byte flipped (header), else
 * rec itself. NULL when out of memory. */
static const uint8_t *host_tear_rec(const uint8_t *rec, size_t stride,
				    size_t payload_bytes, unsigned long tear,
				    uint8_t **scratch)
{
	if (!tear || atomic_load(&host_torn) >= tear ||
	    atomic_fetch_add(&host_torn, 1) >= tear)
		return rec;
	if (!*scratch && !(*scratch = malloc(stride)))
		return NULL;
	memcpy(*scratch, rec, stride);
	(*scratch)[payload_bytes ? 24 : 0] ^= 0x01;
	return *scratch;
}

/* The kernels' two steps (range_check_kernel, range_scatter_kernel):
 * every verdict first, then the scatter over the range's occurrences x
 * dim in sorted order, through logic_hd.h's element text. */
static int h_check_scatter_range(const struct embkv_gpu_dedup *dd,
				 uint32_t first, uint32_t count,
				 const void *records, size_t stride,
				 size_t payload_bytes, enum embkv_gpu_elem elem,
				 uint32_t dim, float *out, uint8_t *found,
				 uint8_t *verdicts, void *stream)
{
	int rc = embkv_gpu_range_args(dd, first, count, records, stride,
				      payload_bytes, elem, dim, out, verdicts);
	unsigned long tear = host_tear_limit();
	uint8_t *scratch = NULL;
	uint64_t total;

	(void)stream;
	if (rc || !count)
		return rc;
	for (uint32_t r = 0; r < count; r++) {
		const uint8_t *rec = host_tear_rec(
			(const uint8_t *)records + (size_t)r * stride, stride,
			payload_bytes, tear, &scratch);

		if (!rec)
			return -ENOMEM;
		verdicts[r] = (uint8_t)embkv_gpu_rec_verdict(
			rec, dd->ukeys[first + r], payload_bytes);
	}
	free(scratch);
	total = (uint64_t)(dd->offsets[first + count] - dd->offsets[first]) *
		dim;
	for (uint64_t x = 0; x < total; x++)
		embkv_gpu_range_scatter_elem(dd->offsets, dd->perm, dd->inverse,
					     first, (const uint8_t *)records,
					     stride, verdicts, elem, dim, x,
					     out, found);
	return 0;
}

/* The listed keys' occurrence counts and their inclusive scan (the
 * kernels' list_ends); *total the listed occurrences. NULL: no memory. */
static uint32_t *host_list_ends(const struct embkv_gpu_dedup *dd,
				const uint32_t *list, uint32_t m,
				uint32_t *total)
{
	uint32_t *ends = malloc((size_t)m * sizeof(*ends)), sum = 0;

	if (!ends)
		return NULL;
	for (uint32_t k = 0; k < m; k++) {
		sum += dd->offsets[list[k] + 1] - dd->offsets[list[k]];
		ends[k] = sum;
	}
	*total = sum;
	return ends;
}

/* The kernels' steps: the listed keys' occurrence counts, their
 * inclusive scan, then every listed element through logic_hd.h's text. */
static int h_scatter_list(const struct embkv_gpu_dedup *dd,
			  const uint32_t *list, uint32_t m, const float *rows,
			  const uint8_t *ufound, uint32_t dim, float *out,
			  uint8_t *found, void *stream)
{
	int rc = embkv_gpu_list_args(dd, list, m, rows, dim, out);
	uint32_t *ends, occ;

	(void)stream;
	if (rc || !m)
		return rc;
	if (!(ends = host_list_ends(dd, list, m, &occ)))
		return -ENOMEM;
	for (uint64_t x = 0; x < (uint64_t)occ * dim; x++)
		embkv_gpu_list_scatter_elem(dd->offsets, dd->perm, list, ends,
					    m, rows, ufound, dim, x, out, found);
	free(ends);
	return 0;
}

/* The kernels' steps (list_check_kernel, list_ends,
 * list_rec_scatter_kernel): every listed record's verdict against
 * ukeys[list[k]] (torn by the hook as check_scatter_range's are, one
 * count for both), then every listed element through logic_hd.h. */
static int h_check_scatter_list(const struct embkv_gpu_dedup *dd,
				const uint32_t *list, uint32_t m,
				const void *records, size_t stride,
				size_t payload_bytes, enum embkv_gpu_elem elem,
				uint32_t dim, const uint8_t *ufound, float *out,
				uint8_t *found, uint8_t *verdicts, void *stream)
{
	int rc = embkv_gpu_list_check_args(dd, list, m, records, stride,
					   payload_bytes, elem, dim, out,
					   verdicts);
	unsigned long tear = host_tear_limit();
	uint8_t *scratch = NULL;
	uint32_t *ends, occ;

	(void)stream;
	if (rc || !m)
		return rc;
	for (uint32_t k = 0; k < m; k++) {
		const uint8_t *rec = host_tear_rec(
			(const uint8_t *)records + (size_t)k * stride, stride,
			payload_bytes, tear, &scratch);

		if (!rec)
			return -ENOMEM;
		verdicts[k] = (uint8_t)embkv_gpu_rec_verdict(
			rec, dd->ukeys[list[k]], payload_bytes);
	}
	free(scratch);
	if (!(ends = host_list_ends(dd, list, m, &occ)))
		return -ENOMEM;
	for (uint64_t x = 0; x < (uint64_t)occ * dim; x++)
		embkv_gpu_list_rec_scatter_elem(dd->offsets, dd->perm, list,
						ends, m,
						(const uint8_t *)records,
						stride, verdicts, elem, ufound,
						dim, x, out, found);
	free(ends);
	return 0;
}

static int h_dmabuf_fd(void *p, size_t bytes, int *fd, uint64_t *offset)
{
	(void)p;
	(void)bytes;
	(void)fd;
	(void)offset;
	return -EOPNOTSUPP;
}

static int h_dev_alloc_sync(void **p, size_t bytes)
{
	return h_alloc(p, bytes);
}

static int h_device_get(int *dev)
{
	*dev = 0;
	return 0;
}

static int h_device_set(int dev)
{
	return dev == 0 ? 0 : -ENODEV;
}

static const struct embkv_gpu_ops ops = {
	.abi = EMBKV_GPU_ABI,
	.last_error = h_last_error,
	.probe = h_probe,
	.host_alloc = h_alloc,
	.host_free = h_free,
	.dev_alloc = h_dev_alloc,
	.dev_free = h_dev_free,
	.h2d = h_copy,
	.d2h = h_copy,
	.memset_dev = h_memset,
	.event_create = h_event_create,
	.event_destroy = h_free,
	.event_record = h_event_record,
	.event_wait = h_wait,
	.stream_wait = h_wait,
	.dedup = h_dedup,
	.dedup_free = h_dedup_free,
	.scatter = h_scatter,
	.coalesce = h_coalesce,
	.check_scatter = h_check_scatter,
	.dmabuf_fd = h_dmabuf_fd,
	.device_get = h_device_get,
	.device_set = h_device_set,
	.check_scatter_range = h_check_scatter_range,
	.scatter_list = h_scatter_list,
	.dev_alloc_sync = h_dev_alloc_sync,
	.dev_free_sync = h_free,
	.check_scatter_list = h_check_scatter_list,
};

const struct embkv_gpu_ops *embkv_gpu_plugin_ops(void)
{
	return &ops;
}
