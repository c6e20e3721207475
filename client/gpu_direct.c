/*
 * GPUDirect RDMA probe and registration (client/gpu_direct.h), after
 * NCCL (net_ib/gdr.cc: the peermem sysfs files; a dma-buf probe by
 * ibv_reg_dmabuf_mr with fd -1, where EOPNOTSUPP or EPROTONOSUPPORT mean
 * "not supported" and any other errno "supported") and perftest (the
 * dma-buf fd of a host-page aligned range, iova = the CUDA address, the
 * fd closed right after registering). Invariant: the probe allocates
 * nothing it does not free, and never registers device memory.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "client/gpu_direct.h"
#include "gpu/gpu.h"

#ifdef EMBKV_HAVE_RDMA
#include <infiniband/verbs.h>

static int peermem_loaded(void)
{
	return !access("/sys/kernel/mm/memory_peers/nv_mem/version", F_OK) ||
	       !access("/sys/kernel/mm/memory_peers/nv_mem_nc/version", F_OK) ||
	       !access("/sys/module/nvidia_peermem/version", F_OK);
}

enum embkv_gpu_path embkv_gpu_direct_probe(int dmabuf, int gdr, char *why,
					   size_t why_len)
{
	enum embkv_gpu_path path = EMBKV_GPU_PATH_STAGING;
	struct ibv_device **list;
	struct ibv_context *ctx = NULL;
	struct ibv_pd *pd = NULL;
	int num = 0;

	list = ibv_get_device_list(&num);
	if (!list || num < 1) {
		snprintf(why, why_len, "no RDMA device: pinned host staging");
		goto out;
	}
	ctx = ibv_open_device(list[0]);
	pd = ctx ? ibv_alloc_pd(ctx) : NULL;
	if (!pd) {
		snprintf(why, why_len, "RDMA device %s not usable: staging",
			 ibv_get_device_name(list[0]));
		goto out;
	}
	if (dmabuf) {
		struct ibv_mr *mr;

		errno = 0;
		mr = ibv_reg_dmabuf_mr(pd, 0, 0, 0, -1, 0);
		if (mr)
			ibv_dereg_mr(mr);
		if (errno != EOPNOTSUPP && errno != EPROTONOSUPPORT) {
			path = EMBKV_GPU_PATH_DMABUF;
			snprintf(why, why_len, "dma-buf registration on %s",
				 ibv_get_device_name(list[0]));
			goto out;
		}
	}
	if (gdr && peermem_loaded()) {
		path = EMBKV_GPU_PATH_PEERMEM;
		snprintf(why, why_len, "nvidia-peermem on %s",
			 ibv_get_device_name(list[0]));
		goto out;
	}
	snprintf(why, why_len,
		 "%s: no dma-buf (device %d) and no nvidia-peermem: staging",
		 ibv_get_device_name(list[0]), dmabuf);
out:
	if (pd)
		ibv_dealloc_pd(pd);
	if (ctx)
		ibv_close_device(ctx);
	if (list)
		ibv_free_device_list(list);
	return path;
}

struct ibv_mr *embkv_gpu_direct_reg(const struct embkv_gpu_ops *ops,
				    struct ibv_pd *pd, void *d, size_t bytes,
				    int access, enum embkv_gpu_path path)
{
	struct ibv_mr *mr;
	uint64_t off;
	int fd, rc;

	if (!ops || !pd || !d || !bytes) {
		errno = EINVAL;
		return NULL;
	}
	if (path == EMBKV_GPU_PATH_PEERMEM)
		return ibv_reg_mr(pd, d, bytes, access);
	if (path != EMBKV_GPU_PATH_DMABUF) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	rc = ops->dmabuf_fd(d, bytes, &fd, &off);
	if (rc) {
		errno = -rc;
		return NULL;
	}
	mr = ibv_reg_dmabuf_mr(pd, off, bytes, (uint64_t)(uintptr_t)d, fd,
			       access);
	rc = errno;
	close(fd);
	errno = rc;
	return mr;
}
#else
enum embkv_gpu_path embkv_gpu_direct_probe(int dmabuf, int gdr, char *why,
					   size_t why_len)
{
	(void)dmabuf;
	(void)gdr;
	snprintf(why, why_len, "built without RDMA: pinned host staging");
	return EMBKV_GPU_PATH_STAGING;
}

struct ibv_mr *embkv_gpu_direct_reg(const struct embkv_gpu_ops *ops,
				    struct ibv_pd *pd, void *d, size_t bytes,
				    int access, enum embkv_gpu_path path)
{
	(void)ops;
	(void)pd;
	(void)d;
	(void)bytes;
	(void)access;
	(void)path;
	errno = EOPNOTSUPP;
	return NULL;
}
#endif
