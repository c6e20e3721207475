/*
 * The GPU backend of a build without CUDA: every entry point reports
 * -EOPNOTSUPP, so callers take their CPU paths.
 */
#include <errno.h>
#include "gpu/gpu.h"

int embkv_gpu_probe(void)
{
	return -EOPNOTSUPP;
}
