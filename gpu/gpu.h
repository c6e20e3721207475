/*
 * GPU path: CUDA kernels (dedup, gradient coalescing, gather/scatter,
 * record validation) and GPUDirect registration. Built from gpu_cuda.cu
 * with EMBKV_CUDA=ON, else from gpu_stub.c, whose functions return
 * -EOPNOTSUPP. The CPU paths never depend on it.
 */
#ifndef EMBKV_GPU_GPU_H
#define EMBKV_GPU_GPU_H

/* 0 when a CUDA device is usable, -EOPNOTSUPP without CUDA support,
 * -ENODEV when built with CUDA but no device is present. */
int embkv_gpu_probe(void);

#endif
