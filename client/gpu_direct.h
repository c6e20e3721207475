/*
 * GPUDirect RDMA registration for the device path (client/gpu_direct.c):
 * the ladder of DESIGN.md section 7, probed once when the GPU plugin
 * loads -- dma-buf (the device supports it and the verbs stack accepts
 * ibv_reg_dmabuf_mr), else nvidia-peermem (its sysfs files exist and the
 * device supports GPUDirect RDMA), else pinned host staging -- and the
 * registration of a device slab (allocated and registered once, never per
 * request). Without RDMA built in the probe says staging.
 */
#ifndef EMBKV_CLIENT_GPU_DIRECT_H
#define EMBKV_CLIENT_GPU_DIRECT_H

#include <stddef.h>
#include <embkv/embkv_gpu.h>

/* The best path this machine allows: dmabuf and gdr are the device's
 * attributes. Writes why a better one is not possible to why. */
enum embkv_gpu_path embkv_gpu_direct_probe(int dmabuf, int gdr, char *why,
					   size_t why_len);

struct ibv_pd;
struct ibv_mr;
struct embkv_gpu_ops;
/* Registers [d, d + bytes) of device memory with pd for path (dma-buf fd
 * from the plugin then ibv_reg_dmabuf_mr, iova = d; or ibv_reg_mr on the
 * device pointer for peermem). NULL with errno set on failure. */
struct ibv_mr *embkv_gpu_direct_reg(const struct embkv_gpu_ops *ops,
				    struct ibv_pd *pd, void *d, size_t bytes,
				    int access, enum embkv_gpu_path path);

#endif
