/*
 * Launchers of gpu/kernels.cu, called by gpu/plugin.cu (CUDA only). Each
 * enqueues on stream s; embkv_gpu_k_dedup alone waits for it (it returns
 * nu on the host). Return 0 or a negative errno (embkv_gpu_fail).
 */
#ifndef EMBKV_GPU_KERNELS_H
#define EMBKV_GPU_KERNELS_H

#include <cuda_runtime.h>
#include "gpu/gpu.h"

/* 0 for cudaSuccess; else records the error's text for last_error() and
 * returns -ENOMEM (allocation) or -EIO. */
int embkv_gpu_fail(cudaError_t e);
/* Stream-ordered device memory of the calls (plugin.cu: the plugin's own
 * pool, or cudaMalloc where the device has no pools). */
cudaError_t embkv_gpu_malloc(void **p, size_t bytes, cudaStream_t s);
void embkv_gpu_free(void *p, cudaStream_t s);

int embkv_gpu_k_dedup(const uint64_t *d_keys, uint32_t n,
		      struct embkv_gpu_dedup *dd, uint32_t *h_nu,
		      cudaStream_t s);
int embkv_gpu_k_scatter(const struct embkv_gpu_dedup *dd, const float *urows,
			const uint8_t *ufound, uint32_t dim, float *out,
			uint8_t *found, cudaStream_t s);
int embkv_gpu_k_coalesce(const struct embkv_gpu_dedup *dd, const float *grads,
			 uint32_t dim, float *ugrads, cudaStream_t s);
int embkv_gpu_k_check_scatter(const struct embkv_gpu_dedup *dd,
			      const void *records, size_t stride,
			      size_t payload_bytes, enum embkv_gpu_elem elem,
			      uint32_t dim, float *out, uint8_t *found,
			      uint32_t *failed, uint32_t *nfailed,
			      uint8_t *verdicts, cudaStream_t s);
/* ABI 2's ops; both check their arguments first (logic_hd.h). */
int embkv_gpu_k_check_scatter_range(const struct embkv_gpu_dedup *dd,
				    uint32_t first, uint32_t count,
				    const void *records, size_t stride,
				    size_t payload_bytes,
				    enum embkv_gpu_elem elem, uint32_t dim,
				    float *out, uint8_t *found,
				    uint8_t *verdicts, cudaStream_t s);
int embkv_gpu_k_scatter_list(const struct embkv_gpu_dedup *dd,
			     const uint32_t *list, uint32_t m,
			     const float *rows, const uint8_t *ufound,
			     uint32_t dim, float *out, uint8_t *found,
			     cudaStream_t s);
/* ABI 3's; checks its arguments first (embkv_gpu_list_check_args). */
int embkv_gpu_k_check_scatter_list(const struct embkv_gpu_dedup *dd,
				   const uint32_t *list, uint32_t m,
				   const void *records, size_t stride,
				   size_t payload_bytes,
				   enum embkv_gpu_elem elem, uint32_t dim,
				   const uint8_t *ufound, float *out,
				   uint8_t *found, uint8_t *verdicts,
				   cudaStream_t s);

#endif
