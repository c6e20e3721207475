/*
 * The GPU plugin's interface: libembkv_gpu.so (gpu/plugin.cu and
 * gpu/kernels.cu, built by nvcc with EMBKV_CUDA=ON, the CUDA runtime
 * linked in statically) exports one symbol, embkv_gpu_plugin_ops, a table
 * of the functions below. libembkv (client/gpu.c) dlopens it the first
 * time a device call is made, so no build, binary or test of the CPU path
 * ever needs libcuda, libcudart or a GPU.
 *
 * Why a plugin and not CUDA in libembkv: a libembkv that linked the CUDA
 * runtime would fail to load (or to be built) where there is none. The
 * orchestration (network calls, chunking, double buffering) stays in C in
 * client/gpu.c; the plugin only manages CUDA memory, copies, events and
 * runs the kernels. Every function is stream-ordered on `stream` (a
 * cudaStream_t, NULL the legacy default stream) unless it says it waits.
 * Errors: -ENODEV (no usable device), -ENOMEM, -EIO (a CUDA error: its
 * text from last_error(), per thread), -EINVAL.
 */
#ifndef EMBKV_GPU_GPU_H
#define EMBKV_GPU_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The table's version: 1 the staging path's ops (through device_set);
 * 2 adds check_scatter_range, scatter_list and dev_alloc_sync /
 * dev_free_sync (the one-sided path); 3 adds check_scatter_list (records
 * an RPC wrote into the device slab). client/gpu.c loads only a plugin
 * of exactly this version. */
#define EMBKV_GPU_ABI 3

/* What the plugin learned about device 0 (the caller's current device). */
struct embkv_gpu_dev_info {
	int device;            /* cudaGetDevice */
	int count;             /* cudaGetDeviceCount */
	int cc_major, cc_minor;
	int dmabuf;            /* CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED */
	int gdr;               /* CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED */
	int driver_version;    /* cudaDriverGetVersion */
	char name[96];
};

/* Keys made distinct on the device: ukeys[0..nu) ascending; inverse[i]
 * is the index in ukeys of key i; the occurrences of ukeys[r] are
 * perm[offsets[r] .. offsets[r + 1]) (positions in the input, in input
 * order: the sort is stable). Device memory, one allocation (mem). */
struct embkv_gpu_dedup {
	uint32_t n, nu;
	uint64_t *ukeys;
	uint32_t *inverse;
	uint32_t *perm;
	uint32_t *offsets;     /* nu + 1 */
	void *mem;
};

/* Element types of stored rows, as the record check converts them. */
enum embkv_gpu_elem {
	EMBKV_GPU_ELEM_F32 = 0,
	EMBKV_GPU_ELEM_F16 = 1,
	EMBKV_GPU_ELEM_BF16 = 2,
};

/* Verdicts of the device record check (hashing/record.h's, same values). */
#define EMBKV_GPU_REC_OK 0u
#define EMBKV_GPU_REC_TORN 1u
#define EMBKV_GPU_REC_OTHER_KEY 2u
#define EMBKV_GPU_REC_DEAD 3u

/* Gradient rows of one key are summed in chunks of this many rows, each
 * chunk sequentially in input order, then the chunks' sums in order: a
 * key with at most this many duplicates is summed exactly as the CPU
 * client sums (client/batch.c), bit for bit; a hot key with thousands
 * spreads over many blocks. */
#define EMBKV_GPU_COALESCE_CHUNK 64u

struct embkv_gpu_ops {
	uint32_t abi;          /* EMBKV_GPU_ABI */
	const char *(*last_error)(void);
	/* 0 and *info filled; -ENODEV when cudaGetDeviceCount fails or
	 * finds none (last_error says why). */
	int (*probe)(struct embkv_gpu_dev_info *info);

	int (*host_alloc)(void **p, size_t bytes);     /* pinned */
	void (*host_free)(void *p);
	int (*dev_alloc)(void **p, size_t bytes, void *stream);
	void (*dev_free)(void *p, void *stream);
	int (*h2d)(void *dst, const void *src, size_t bytes, void *stream);
	int (*d2h)(void *dst, const void *src, size_t bytes, void *stream);
	int (*memset_dev)(void *dst, int v, size_t bytes, void *stream);
	int (*event_create)(void **ev);
	void (*event_destroy)(void *ev);
	int (*event_record)(void *ev, void *stream);
	int (*event_wait)(void *ev);                   /* waits (host) */
	int (*stream_wait)(void *stream);              /* waits (host) */

	/* Dedup of n device keys (1 to INT32_MAX, else -EINVAL); waits for the stream (it needs nu on
	 * the host) and copies ukeys to h_ukeys (pinned, n entries) when
	 * that is not NULL. Free with dedup_free. */
	int (*dedup)(const uint64_t *d_keys, uint32_t n,
		     struct embkv_gpu_dedup *dd, uint64_t *h_ukeys,
		     void *stream);
	void (*dedup_free)(struct embkv_gpu_dedup *dd, void *stream);
	/* out[i] = urows[inverse[i]] (dim floats), found[i] =
	 * ufound[inverse[i]], or 1 when ufound is NULL (found may be NULL). Reads only dd->n and
	 * dd->inverse: a struct with just those gathers rows by index (the
	 * GPUDirect push lays rows out in frame order so). */
	int (*scatter)(const struct embkv_gpu_dedup *dd, const float *d_urows,
		       const uint8_t *d_ufound, uint32_t dim, float *d_out,
		       uint8_t *d_found, void *stream);
	/* ugrads[r] = sum of grads[i] over the i with inverse[i] == r. */
	int (*coalesce)(const struct embkv_gpu_dedup *dd, const float *d_grads,
			uint32_t dim, float *d_ugrads, void *stream);
	/* The record check and the scatter from the records: record r
	 * (rec_stride bytes apart from d_records: checksum, key, version,
	 * payload of payload_bytes in elem) is checked on the device (XXH3
	 * as hashing/record.h, key == ukeys[r], not dead); a good one is
	 * converted to fp32 and written to out[i] (and found[i] = 1, found
	 * may be NULL) for every occurrence i of ukeys[r]; a failed one
	 * leaves them and is listed: d_failed[k] = r (nu entries of room),
	 * *d_nfailed = the count (order not defined), d_verdict[r] its
	 * verdict (may be NULL). -EINVAL, before any work: as
	 * check_scatter_range's over all nu keys (d_failed standing for
	 * d_verdict there), or d_nfailed NULL. */
	int (*check_scatter)(const struct embkv_gpu_dedup *dd,
			     const void *d_records, size_t rec_stride,
			     size_t payload_bytes, enum embkv_gpu_elem elem,
			     uint32_t dim, float *d_out, uint8_t *d_found,
			     uint32_t *d_failed, uint32_t *d_nfailed,
			     uint8_t *d_verdict, void *stream);
	/* A dma-buf fd for [p, p + bytes) of device memory (host-page
	 * aligned range, *offset = p - its start), for ibv_reg_dmabuf_mr;
	 * the caller closes it. -EOPNOTSUPP without driver support. */
	int (*dmabuf_fd)(void *p, size_t bytes, int *fd, uint64_t *offset);
	/* The calling thread's current device (cudaGetDevice/SetDevice):
	 * async ops run on a worker thread on the caller's device. */
	int (*device_get)(int *dev);
	int (*device_set)(int dev);

	/* ABI 2: the one-sided path's record check over ranges of the
	 * distinct keys, and the scatter of the rows left to RPC. */

	/* The record check and scatter for the distinct keys r in [first,
	 * first + count) of dd, whose records lie at d_records + (r - first)
	 * * rec_stride (rec_stride a multiple of 8): a good record (XXH3 as
	 * hashing/record.h, key == ukeys[r], not dead) is converted to fp32
	 * and written to out[i] (and found[i] = 1; found may be NULL) for
	 * every occurrence i of ukeys[r] (perm[offsets[r] .. offsets[r+1])),
	 * and nothing else of out/found is written; d_verdict[r - first]
	 * gets every record's verdict (count entries, not NULL). Parallel
	 * over the rows' elements, so a hot key costs no more than distinct
	 * ones. first + count <= dd->nu, else -EINVAL; count 0 is a no-op.
	 * Also -EINVAL, before any work: dd or d_verdict NULL, d_records
	 * or d_out NULL with count > 0, dim 0, elem unknown, rec_stride not
	 * a multiple of 8 or under 24 + payload_bytes, payload_bytes under
	 * dim elements of elem, d_records not 8-byte aligned (logic_hd.h's
	 * embkv_gpu_range_args). */
	int (*check_scatter_range)(const struct embkv_gpu_dedup *dd,
				   uint32_t first, uint32_t count,
				   const void *d_records, size_t rec_stride,
				   size_t payload_bytes,
				   enum embkv_gpu_elem elem, uint32_t dim,
				   float *d_out, uint8_t *d_found,
				   uint8_t *d_verdict, void *stream);
	/* For k < m: r = d_list[k] (< dd->nu), rows d_rows[k * dim ..]
	 * (fp32) and found flag d_ufound[k] (d_ufound may be NULL: 1) go to
	 * out[i] and found[i] (found may be NULL) for every occurrence i of
	 * ukeys[r]; other entries of out/found untouched. m 0 is a no-op.
	 * Parallel over elements (a hot key costs no more than distinct
	 * ones). The list may be in any order, without repeats. -EINVAL
	 * before any work: m > dd->nu (a list without repeats has at most
	 * nu entries), dim 0, dd NULL, or d_list, d_rows or d_out NULL with
	 * m > 0 (embkv_gpu_list_args). */
	int (*scatter_list)(const struct embkv_gpu_dedup *dd,
			    const uint32_t *d_list, uint32_t m,
			    const float *d_rows, const uint8_t *d_ufound,
			    uint32_t dim, float *d_out, uint8_t *d_found,
			    void *stream);
	/* Device memory outside the stream-ordered pool (cudaMalloc; waits),
	 * as GPUDirect registration needs: the one-sided READs' slab. */
	int (*dev_alloc_sync)(void **p, size_t bytes);
	void (*dev_free_sync)(void *p);

	/* ABI 3: the keys of a GPUDirect pull that the one-sided READs left
	 * over are pulled by an RPC whose server RDMA-WRITEs their whole
	 * records (checksummed, as stored) into the client's device slab,
	 * one frame's records contiguous; this checks and scatters them
	 * (slab slot k -> distinct key d_list[k]), d_ufound the server's
	 * found flags (0 for a key a train-mode pull just inserted). */

	/* The record check and scatter for a list of distinct keys whose
	 * records lie compactly: for k < m, the record at d_records + k *
	 * rec_stride belongs to distinct key r = d_list[k] (< dd->nu; the
	 * list without repeats, any order) and is checked exactly as
	 * check_scatter_range checks one (XXH3 as hashing/record.h, key ==
	 * ukeys[r], not dead), its verdict into d_verdict[k]; a good record
	 * is converted to fp32 and written to out[i], and found[i] =
	 * (d_ufound ? d_ufound[k] : 1) (found may be NULL), for every
	 * occurrence i of ukeys[r]; a failed one writes nothing. m 0 is a
	 * no-op. Parallel over the rows' elements like scatter_list (a hot
	 * key costs no more than distinct ones). -EINVAL before any work:
	 * dd or d_verdict NULL, m > dd->nu, d_list, d_records or d_out NULL
	 * with m > 0, dim 0, elem unknown, rec_stride not a multiple of 8 or
	 * under 24 + payload_bytes, payload_bytes under dim elements
	 * (logic_hd.h's embkv_gpu_list_check_args). */
	int (*check_scatter_list)(const struct embkv_gpu_dedup *dd,
				  const uint32_t *d_list, uint32_t m,
				  const void *d_records, size_t rec_stride,
				  size_t payload_bytes,
				  enum embkv_gpu_elem elem, uint32_t dim,
				  const uint8_t *d_ufound, float *d_out,
				  uint8_t *d_found, uint8_t *d_verdict,
				  void *stream);
};

typedef const struct embkv_gpu_ops *(*embkv_gpu_plugin_fn)(void);
/* The plugin's one export. */
const struct embkv_gpu_ops *embkv_gpu_plugin_ops(void);

#ifdef __cplusplus
}
#endif
#endif
