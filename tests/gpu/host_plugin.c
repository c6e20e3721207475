/*
 * A host-memory stand-in for libembkv_gpu.so (gpu/gpu.h), for tests on
 * machines without a GPU: "device" memory is host memory, copies are
 * memcpy, events and streams are no-ops, and the kernels are host
 * references with the kernels' exact contracts -- a stable sort dedup
 * (ascending distinct keys, inverse, perm in input order, offsets),
 * coalescing in the same chunks of EMBKV_GPU_COALESCE_CHUNK rows summed
 * in the same order, the scatter, and the record check. The per-element
 * logic is the kernels' own text (gpu/logic_hd.h: chunking, record
 * verdict, element conversion; gpu/xxh3_hd.h). Built as libembkv_gpu_host.so; the
 * host variants of the GPU tests load it in place of the CUDA plugin, so
 * client/gpu.c's staging path (dedup, chunking, double buffering, push
 * a chunk ahead) and the tests' own assertions run in every build.
 */
#include <errno.h>
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
	for (uint32_t i = 0; i < dd->n; i++) {
		uint32_t r = dd->inverse[i];

		memcpy(out + (size_t)i * dim, urows + (size_t)r * dim,
		       dim * sizeof(float));
		if (found)
			found[i] = ufound[r];
	}
	return 0;
}

/* The kernels' steps: chunk counts and their inclusive scan, each chunk
 * summed sequentially (chunk_sum_kernel), then a key's chunks in order
 * (chunk_merge_kernel). */
static int h_coalesce(const struct embkv_gpu_dedup *dd, const float *grads,
		      uint32_t dim, float *ugrads, void *stream)
{
	uint32_t *chunk_end = malloc((dd->nu ? dd->nu : 1) * sizeof(uint32_t));
	float *partial;
	uint32_t total = 0;

	(void)stream;
	if (!chunk_end)
		return -ENOMEM;
	for (uint32_t r = 0; r < dd->nu; r++) {
		total += embkv_gpu_chunks_of(dd->offsets[r + 1] - dd->offsets[r]);
		chunk_end[r] = total;
	}
	partial = malloc(((size_t)total ? total : 1) * dim * sizeof(float));
	if (!partial) {
		free(chunk_end);
		return -ENOMEM;
	}
	for (uint32_t b = 0; b < total; b++) {
		uint32_t r = embkv_gpu_run_of_chunk(chunk_end, dd->nu, b), j0, j1;
		uint32_t nch = embkv_gpu_chunk_range(dd->offsets, chunk_end, r, b,
						     &j0, &j1);
		float *dst = nch == 1 ? ugrads + (size_t)r * dim
				      : partial + (size_t)b * dim;

		for (uint32_t c = 0; c < dim; c++) {
			float acc = grads[(size_t)dd->perm[j0] * dim + c];

			for (uint32_t j = j0 + 1; j < j1; j++)
				acc += grads[(size_t)dd->perm[j] * dim + c];
			dst[c] = acc;
		}
	}
	for (uint32_t r = 0; r < dd->nu; r++) {
		uint32_t first = r ? chunk_end[r - 1] : 0;

		if (chunk_end[r] - first < 2)
			continue;
		for (uint32_t c = 0; c < dim; c++) {
			float acc = partial[(size_t)first * dim + c];

			for (uint32_t b = first + 1; b < chunk_end[r]; b++)
				acc += partial[(size_t)b * dim + c];
			ugrads[(size_t)r * dim + c] = acc;
		}
	}
	free(partial);
	free(chunk_end);
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

/* TEMP (lead): replaced by the kernels branch's versions */
static int h_check_scatter_range(const struct embkv_gpu_dedup *dd,
				 uint32_t first, uint32_t count,
				 const void *records, size_t stride,
				 size_t payload_bytes, enum embkv_gpu_elem elem,
				 uint32_t dim, float *out, uint8_t *found,
				 uint8_t *verdicts, void *stream)
{
	static uint32_t torn_left = UINT32_MAX;

	(void)stream;
	if (first > dd->nu || count > dd->nu - first)
		return -EINVAL;
	if (torn_left == UINT32_MAX)
		torn_left = getenv("EMBKV_GPU_HOST_TEAR")
			? (uint32_t)atoi(getenv("EMBKV_GPU_HOST_TEAR")) : 0;
	for (uint32_t k = 0; k < count; k++) {
		uint32_t r = first + k;
		uint8_t *rec = (uint8_t *)records + (size_t)k * stride;
		unsigned v;

		if (torn_left && rec[0] | rec[8]) {
			rec[24] ^= 1;
			torn_left--;
		}
		v = embkv_gpu_rec_verdict(rec, dd->ukeys[r], payload_bytes);
		verdicts[k] = (uint8_t)v;
		if (v)
			continue;
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

static int h_scatter_list(const struct embkv_gpu_dedup *dd,
			  const uint32_t *list, uint32_t m, const float *rows,
			  const uint8_t *ufound, uint32_t dim, float *out,
			  uint8_t *found, void *stream)
{
	(void)stream;
	for (uint32_t k = 0; k < m; k++) {
		uint32_t r = list[k];

		for (uint32_t j = dd->offsets[r]; j < dd->offsets[r + 1]; j++) {
			uint32_t i = dd->perm[j];

			memcpy(out + (size_t)i * dim, rows + (size_t)k * dim,
			       dim * sizeof(float));
			if (found)
				found[i] = ufound ? ufound[k] : 1;
		}
	}
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
};

const struct embkv_gpu_ops *embkv_gpu_plugin_ops(void)
{
	return &ops;
}
