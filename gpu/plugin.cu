/*
 * libembkv_gpu.so: the table of gpu/gpu.h over the CUDA runtime (linked
 * in statically, so that a machine needs only the driver, libcuda, which
 * the runtime itself loads at run time) and the kernels of kernels.cu.
 *
 * Device memory of the path's temporaries is stream-ordered, from a
 * pool of the plugin's own per device (embkv_gpu_malloc below: 256 MiB
 * kept between calls, so a steady stream of batches allocates nothing
 * from the driver; cudaMalloc where the device has no pools).
 * Driver-only calls (the dma-buf export, the dma-buf attribute) are
 * reached through cudaGetDriverEntryPointByVersion, never by linking
 * libcuda.
 *
 * Errors keep the CUDA error's text per thread for last_error().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <cuda.h>
#include <cuda_runtime.h>

#include "gpu/gpu.h"
#include "gpu/kernels.h"

static __thread char last_err[160];

int embkv_gpu_fail(cudaError_t e)
{
	if (e == cudaSuccess)
		return 0;
	snprintf(last_err, sizeof(last_err), "%s: %s", cudaGetErrorName(e),
		 cudaGetErrorString(e));
	/* the runtime keeps a failed call's error for the thread until it
	 * is read, and cub checks its launches with cudaPeekAtLastError:
	 * left there, one failure would fail every later call */
	(void)cudaGetLastError();
	if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
	    e == cudaErrorInvalidDevice)
		return -ENODEV;
	return e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
}

/*
 * Device memory of the calls: stream-ordered, from a pool of the
 * plugin's own per device (cudaMemPoolCreate), which keeps up to 256 MiB
 * of freed memory for the next batch and gives the rest back (the
 * device's default pool, which torch may use, is left alone); where the
 * device has no memory pools (some virtual GPUs), cudaMalloc, and a free
 * waits for the stream first.
 */
#define POOL_DEVS 64
#define POOL_KEEP (256ull << 20)
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static cudaMemPool_t pools[POOL_DEVS];
static int pool_state[POOL_DEVS]; /* 0 not asked, 1 a pool, 2 none */

static int pool_of(cudaMemPool_t *out)
{
	int dev = 0, v = 0, st;

	if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= POOL_DEVS) {
		(void)cudaGetLastError();
		return 0;
	}
	st = __atomic_load_n(&pool_state[dev], __ATOMIC_ACQUIRE);
	if (!st) {
		pthread_mutex_lock(&pool_lock);
		st = pool_state[dev];
		if (!st) {
			cudaMemPoolProps pp;
			uint64_t keep = POOL_KEEP;

			memset(&pp, 0, sizeof(pp));
			pp.allocType = cudaMemAllocationTypePinned;
			pp.location.type = cudaMemLocationTypeDevice;
			pp.location.id = dev;
			st = 2;
			if (cudaDeviceGetAttribute(&v,
				cudaDevAttrMemoryPoolsSupported, dev) ==
				    cudaSuccess && v &&
			    cudaMemPoolCreate(&pools[dev], &pp) == cudaSuccess) {
				cudaMemPoolSetAttribute(pools[dev],
					cudaMemPoolAttrReleaseThreshold, &keep);
				st = 1;
			}
			(void)cudaGetLastError();
			__atomic_store_n(&pool_state[dev], st,
					 __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&pool_lock);
	}
	if (st == 1)
		*out = pools[dev];
	return st == 1;
}

cudaError_t embkv_gpu_malloc(void **p, size_t bytes, cudaStream_t s)
{
	cudaMemPool_t pool;

	if (!bytes)
		bytes = 1;
	if (pool_of(&pool))
		return cudaMallocFromPoolAsync(p, bytes, pool, s);
	return cudaMalloc(p, bytes);
}

void embkv_gpu_free(void *p, cudaStream_t s)
{
	cudaMemPool_t pool;

	if (!p)
		return;
	if (pool_of(&pool)) {
		cudaFreeAsync(p, s);
	} else {
		cudaStreamSynchronize(s);
		cudaFree(p);
	}
	(void)cudaGetLastError();
}

static const char *p_last_error(void)
{
	return last_err[0] ? last_err : "no error";
}

static void *driver_fn(const char *name)
{
	void *fn = NULL;
	cudaDriverEntryPointQueryResult q;

	if (cudaGetDriverEntryPointByVersion(name, &fn, 12000,
					     cudaEnableDefault, &q) !=
		    cudaSuccess ||
	    q != cudaDriverEntryPointSuccess)
		return NULL;
	return fn;
}

static int p_probe(struct embkv_gpu_dev_info *info)
{
	typedef CUresult (*attr_fn)(int *, CUdevice_attribute, CUdevice);
	attr_fn attr;
	cudaDeviceProp prop;
	cudaError_t e;
	int dev = 0, v = 0;

	memset(info, 0, sizeof(*info));
	e = cudaGetDeviceCount(&info->count);
	if (e == cudaSuccess && info->count < 1)
		e = cudaErrorNoDevice;
	if (e == cudaSuccess)
		e = cudaGetDevice(&dev);
	if (e == cudaSuccess)
		e = cudaGetDeviceProperties(&prop, dev);
	if (e != cudaSuccess) {
		embkv_gpu_fail(e);
		return -ENODEV;
	}
	info->device = dev;
	info->cc_major = prop.major;
	info->cc_minor = prop.minor;
	snprintf(info->name, sizeof(info->name), "%.95s", prop.name);
	cudaDriverGetVersion(&info->driver_version);
	if (cudaDeviceGetAttribute(&v, cudaDevAttrGPUDirectRDMASupported, dev) ==
	    cudaSuccess)
		info->gdr = v;
	attr = (attr_fn)driver_fn("cuDeviceGetAttribute");
	if (attr && attr(&v, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, dev) ==
			    CUDA_SUCCESS)
		info->dmabuf = v;
	(void)cudaGetLastError(); /* attributes a device may not have */
	return 0;
}

static int p_host_alloc(void **p, size_t bytes)
{
	return embkv_gpu_fail(cudaHostAlloc(p, bytes ? bytes : 1,
					    cudaHostAllocDefault));
}

static void p_host_free(void *p)
{
	if (p)
		cudaFreeHost(p);
}

static int p_dev_alloc(void **p, size_t bytes, void *stream)
{
	return embkv_gpu_fail(embkv_gpu_malloc(p, bytes, (cudaStream_t)stream));
}

static void p_dev_free(void *p, void *stream)
{
	embkv_gpu_free(p, (cudaStream_t)stream);
}

static int p_h2d(void *dst, const void *src, size_t bytes, void *stream)
{
	return embkv_gpu_fail(cudaMemcpyAsync(dst, src, bytes,
					      cudaMemcpyHostToDevice,
					      (cudaStream_t)stream));
}

static int p_d2h(void *dst, const void *src, size_t bytes, void *stream)
{
	return embkv_gpu_fail(cudaMemcpyAsync(dst, src, bytes,
					      cudaMemcpyDeviceToHost,
					      (cudaStream_t)stream));
}

static int p_memset_dev(void *dst, int v, size_t bytes, void *stream)
{
	return embkv_gpu_fail(cudaMemsetAsync(dst, v, bytes,
					      (cudaStream_t)stream));
}

static int p_event_create(void **ev)
{
	return embkv_gpu_fail(cudaEventCreateWithFlags(
		(cudaEvent_t *)ev, cudaEventDisableTiming));
}

static void p_event_destroy(void *ev)
{
	if (ev)
		cudaEventDestroy((cudaEvent_t)ev);
}

static int p_event_record(void *ev, void *stream)
{
	return embkv_gpu_fail(cudaEventRecord((cudaEvent_t)ev,
					      (cudaStream_t)stream));
}

static int p_event_wait(void *ev)
{
	return embkv_gpu_fail(cudaEventSynchronize((cudaEvent_t)ev));
}

static int p_stream_wait(void *stream)
{
	return embkv_gpu_fail(cudaStreamSynchronize((cudaStream_t)stream));
}

static int p_dedup(const uint64_t *d_keys, uint32_t n,
		   struct embkv_gpu_dedup *dd, uint64_t *h_ukeys, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;
	uint32_t nu = 0; /* pageable: the copy is waited for anyway */
	int rc;

	/* cub counts items in an int */
	if (!n || n > INT32_MAX || !d_keys || !dd)
		return -EINVAL;
	rc = embkv_gpu_k_dedup(d_keys, n, dd, &nu, s);
	if (rc || !h_ukeys)
		return rc;
	rc = embkv_gpu_fail(cudaMemcpyAsync(h_ukeys, dd->ukeys,
					    dd->nu * sizeof(uint64_t),
					    cudaMemcpyDeviceToHost, s));
	if (!rc)
		rc = embkv_gpu_fail(cudaStreamSynchronize(s));
	if (rc) {
		embkv_gpu_free(dd->mem, s);
		memset(dd, 0, sizeof(*dd));
	}
	return rc;
}

static void p_dedup_free(struct embkv_gpu_dedup *dd, void *stream)
{
	if (dd && dd->mem)
		embkv_gpu_free(dd->mem, (cudaStream_t)stream);
	if (dd)
		memset(dd, 0, sizeof(*dd));
}

static int p_scatter(const struct embkv_gpu_dedup *dd, const float *urows,
		     const uint8_t *ufound, uint32_t dim, float *out,
		     uint8_t *found, void *stream)
{
	if (!dd || !dim)
		return -EINVAL; /* a launch of 0 threads fails */
	return embkv_gpu_k_scatter(dd, urows, ufound, dim, out, found,
				   (cudaStream_t)stream);
}

static int p_coalesce(const struct embkv_gpu_dedup *dd, const float *grads,
		      uint32_t dim, float *ugrads, void *stream)
{
	if (!dd || !dim)
		return -EINVAL;
	return embkv_gpu_k_coalesce(dd, grads, dim, ugrads,
				    (cudaStream_t)stream);
}

static int p_check_scatter(const struct embkv_gpu_dedup *dd,
			   const void *records, size_t stride,
			   size_t payload_bytes, enum embkv_gpu_elem elem,
			   uint32_t dim, float *out, uint8_t *found,
			   uint32_t *failed, uint32_t *nfailed,
			   uint8_t *verdicts, void *stream)
{
	if (!dd || !dim || stride % 8 || stride < 24 + payload_bytes)
		return -EINVAL; /* the rest in embkv_gpu_k_check_scatter */
	return embkv_gpu_k_check_scatter(dd, records, stride, payload_bytes,
					 elem, dim, out, found, failed,
					 nfailed, verdicts,
					 (cudaStream_t)stream);
}

static int p_check_scatter_range(const struct embkv_gpu_dedup *dd,
				 uint32_t first, uint32_t count,
				 const void *records, size_t stride,
				 size_t payload_bytes, enum embkv_gpu_elem elem,
				 uint32_t dim, float *out, uint8_t *found,
				 uint8_t *verdicts, void *stream)
{
	return embkv_gpu_k_check_scatter_range(dd, first, count, records,
					       stride, payload_bytes, elem,
					       dim, out, found, verdicts,
					       (cudaStream_t)stream);
}

static int p_scatter_list(const struct embkv_gpu_dedup *dd,
			  const uint32_t *list, uint32_t m, const float *rows,
			  const uint8_t *ufound, uint32_t dim, float *out,
			  uint8_t *found, void *stream)
{
	return embkv_gpu_k_scatter_list(dd, list, m, rows, ufound, dim, out,
					found, (cudaStream_t)stream);
}

static int p_check_scatter_list(const struct embkv_gpu_dedup *dd,
				const uint32_t *list, uint32_t m,
				const void *records, size_t stride,
				size_t payload_bytes, enum embkv_gpu_elem elem,
				uint32_t dim, const uint8_t *ufound, float *out,
				uint8_t *found, uint8_t *verdicts, void *stream)
{
	return embkv_gpu_k_check_scatter_list(dd, list, m, records, stride,
					      payload_bytes, elem, dim, ufound,
					      out, found, verdicts,
					      (cudaStream_t)stream);
}

static int p_dmabuf_fd(void *p, size_t bytes, int *fd, uint64_t *offset)
{
	typedef CUresult (*handle_fn)(void *, CUdeviceptr, size_t,
				      CUmemRangeHandleType,
				      unsigned long long);
	handle_fn get = (handle_fn)driver_fn("cuMemGetHandleForAddressRange");
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)p & ~(page - 1);
	uintptr_t end = ((uintptr_t)p + bytes + page - 1) & ~(page - 1);
	int f = -1;

	if (!get)
		return -EOPNOTSUPP;
	if (get(&f, (CUdeviceptr)start, end - start,
		CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0) != CUDA_SUCCESS) {
		snprintf(last_err, sizeof(last_err),
			 "cuMemGetHandleForAddressRange failed");
		return -EOPNOTSUPP;
	}
	*fd = f;
	*offset = (uintptr_t)p - start;
	return 0;
}

static int p_dev_alloc_sync(void **p, size_t bytes)
{
	return embkv_gpu_fail(cudaMalloc(p, bytes ? bytes : 1));
}

static void p_dev_free_sync(void *p)
{
	if (p)
		cudaFree(p);
}

static int p_device_get(int *dev)
{
	return embkv_gpu_fail(cudaGetDevice(dev));
}

static int p_device_set(int dev)
{
	return embkv_gpu_fail(cudaSetDevice(dev));
}

/* Designated, in the struct's order (C++20's rule, which nvcc's C++17
 * mode accepts as GCC does): ops of one signature cannot trade places. */
static const struct embkv_gpu_ops ops = {
	.abi = EMBKV_GPU_ABI,
	.last_error = p_last_error,
	.probe = p_probe,
	.host_alloc = p_host_alloc,
	.host_free = p_host_free,
	.dev_alloc = p_dev_alloc,
	.dev_free = p_dev_free,
	.h2d = p_h2d,
	.d2h = p_d2h,
	.memset_dev = p_memset_dev,
	.event_create = p_event_create,
	.event_destroy = p_event_destroy,
	.event_record = p_event_record,
	.event_wait = p_event_wait,
	.stream_wait = p_stream_wait,
	.dedup = p_dedup,
	.dedup_free = p_dedup_free,
	.scatter = p_scatter,
	.coalesce = p_coalesce,
	.check_scatter = p_check_scatter,
	.dmabuf_fd = p_dmabuf_fd,
	.device_get = p_device_get,
	.device_set = p_device_set,
	.check_scatter_range = p_check_scatter_range,
	.scatter_list = p_scatter_list,
	.dev_alloc_sync = p_dev_alloc_sync,
	.dev_free_sync = p_dev_free_sync,
	.check_scatter_list = p_check_scatter_list,
};

extern "C" __attribute__((visibility("default")))
const struct embkv_gpu_ops *embkv_gpu_plugin_ops(void)
{
	return &ops;
}
