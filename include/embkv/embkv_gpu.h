/*
 * embkv's device API: pull rows into GPU memory and push gradients from
 * it, with device pointers and a CUDA stream, in the manner of
 * HierarchicalKV's find/accum (n, device arrays, stream) and TorchRec's
 * unique_indices / reverse_index dedup. No CUDA header is needed: a
 * stream is passed as void * (a cudaStream_t; NULL is the legacy default
 * stream), device pointers as plain pointers.
 *
 * The CUDA part lives in libembkv_gpu.so, loaded by libembkv the first
 * time one of these calls is made ($EMBKV_GPU_LIB names it, else it is
 * looked for next to libembkv). Every call returns:
 *   -EOPNOTSUPP  libembkv was built without CUDA, or libembkv_gpu.so
 *                cannot be loaded (embkv_gpu_probe's why says which);
 *   -ENODEV      the plugin found no usable CUDA device;
 *   -EIO         a CUDA error (embkv_gpu_last_error() has its text);
 * else what embkv_pull / embkv_push return.
 *
 * Data movement (embkv_gpu_probe reports it): keys are made distinct on
 * the GPU (sort, inverse index); only the distinct keys and their rows
 * cross PCIe and the network. With GPUDirect RDMA (the probe found
 * dma-buf or nvidia-peermem registration and the table's servers are on
 * rdma://) a pull READs the records one-sided straight into device
 * memory and the GPU checks them there (checksum, key); otherwise, and
 * for the keys that path leaves (missing, servers without one-sided
 * reads), rows move through pinned host memory in chunks, double
 * buffered (a chunk's network pull overlaps the previous chunk's copy to
 * the device). Gradients are summed per key on the GPU and leave through
 * pinned memory the same way. EMBKV_GPU_PATH=staging turns GPUDirect off
 * (gpu/README.md).
 */
#ifndef EMBKV_EMBKV_GPU_H
#define EMBKV_EMBKV_GPU_H

#include <stdint.h>
#include <embkv/embkv.h>

#ifdef __cplusplus
extern "C" {
#endif

enum embkv_gpu_path {
	EMBKV_GPU_PATH_NONE = 0,        /* no device path (see why) */
	EMBKV_GPU_PATH_STAGING = 1,     /* pinned host staging + cudaMemcpyAsync */
	EMBKV_GPU_PATH_DMABUF = 2,      /* GPUDirect RDMA, dma-buf registration */
	EMBKV_GPU_PATH_PEERMEM = 3,     /* GPUDirect RDMA, nvidia-peermem */
};

struct embkv_gpu_info {
	int device;                 /* CUDA device of the calling thread */
	int cc_major, cc_minor;
	int driver_version;         /* e.g. 13000 */
	int dmabuf_supported;       /* CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED */
	int gdr_supported;          /* ..._GPU_DIRECT_RDMA_SUPPORTED */
	enum embkv_gpu_path capable; /* best registration the probe found */
	enum embkv_gpu_path path;    /* what pulls and pushes use */
	char name[96];
	char why[160];              /* why not a better path, or an error */
};

/* Loads the plugin (once) and probes the device and the NIC. 0, or
 * -EOPNOTSUPP / -ENODEV with info->why saying why (info may be NULL).
 * Any thread. */
int embkv_gpu_probe(struct embkv_gpu_info *info);
/* "none", "staging", "gpudirect-dmabuf", "gpudirect-peermem". */
const char *embkv_gpu_path_name(enum embkv_gpu_path path);
/* The calling thread's last plugin error text (CUDA's), or "". */
const char *embkv_gpu_last_error(void);

/*
 * embkv_pull into device memory: d_keys (n keys), d_out (n x dim floats),
 * d_found (n bytes, may be NULL), d_dflt (dim floats, may be NULL) are
 * device pointers. Stream-ordered: the keys are read after the work
 * enqueued on stream before the call; the call returns once the rows are
 * fetched and their copy and scatter are enqueued on stream, so work
 * enqueued after it sees them (synchronize the stream before reading them
 * on the host). Equal bit for bit to embkv_pull of the same keys.
 * n over INT32_MAX: -EINVAL (the device dedup's limit), before any work.
 */
int embkv_pull_device(struct embkv_table_handle *t, uint32_t n,
		      const uint64_t *d_keys, float *d_out, uint8_t *d_found,
		      enum embkv_mode mode, const float *d_dflt, void *stream);

/*
 * embkv_push from device memory: d_keys (n), d_grads (n x dim floats).
 * Duplicates are summed on the GPU (exactly as embkv_push sums them for a
 * key with up to 64 duplicates; in a fixed order beyond). Returns when
 * the push is applied (it waits for the stream's earlier work, which
 * wrote the gradients). *applied as embkv_push. n over INT32_MAX:
 * -EINVAL.
 */
int embkv_push_device(struct embkv_table_handle *t, uint32_t n,
		      const uint64_t *d_keys, const float *d_grads,
		      uint32_t *applied, void *stream);

/*
 * The same, started on the client's async workers: the arrays and the
 * stream must stay valid until embkv_gpu_op_wait returns the status and
 * frees the op. The pull's copy and scatter are enqueued on stream when
 * the op completes; wait for the op before enqueueing work that reads
 * d_out. cudaStreamPerThread is refused (-EINVAL): on the worker it would
 * name another thread's stream; pass the stream itself.
 */
struct embkv_gpu_op;
int embkv_pull_device_async(struct embkv_table_handle *t, uint32_t n,
			    const uint64_t *d_keys, float *d_out,
			    uint8_t *d_found, enum embkv_mode mode,
			    const float *d_dflt, void *stream,
			    struct embkv_gpu_op **op);
int embkv_push_device_async(struct embkv_table_handle *t, uint32_t n,
			    const uint64_t *d_keys, const float *d_grads,
			    void *stream, struct embkv_gpu_op **op);
/* Waits; returns the op's status (a push's applied count in *applied,
 * may be NULL) and frees it. */
int embkv_gpu_op_wait(struct embkv_gpu_op *op, uint32_t *applied);

/* Process-wide counters of the device calls. */
struct embkv_gpu_stats {
	enum embkv_gpu_path path;
	uint64_t pulls, pushes;
	uint64_t keys;              /* keys asked for */
	uint64_t distinct_keys;     /* after dedup: the keys that crossed
				       PCIe or the NIC */
	uint64_t h2d_bytes, d2h_bytes;
	uint64_t chunks;            /* staging chunks moved */
	uint64_t direct_keys;       /* distinct keys READ into device memory */
	uint64_t direct_rest;       /* keys a GPUDirect pull left to staging,
				       or a GPUDirect push sent from host
				       memory */
	uint64_t direct_landed;     /* keys the READs left whose records their
				       servers wrote into device memory
				       (PULL_LAND), or infer-mode misses
				       given the default there */
	uint64_t direct_pushed;     /* distinct keys pushed with their rows
				       sent from device memory (GPUDirect) */
};
void embkv_gpu_stats_get(struct embkv_gpu_stats *out);

#ifdef __cplusplus
}
#endif
#endif
