/* embkv-bench GPU mode (tools/bench_gpu.c). */
#ifndef EMBKV_TOOLS_BENCH_GPU_H
#define EMBKV_TOOLS_BENCH_GPU_H

/* Runs the GPU benchmark with the whole command line; the exit status:
 * 0, 1 (a run failed, or no GPU: the reason is printed) or 2 (usage). */
int bench_gpu_main(int argc, char **argv);

#endif
