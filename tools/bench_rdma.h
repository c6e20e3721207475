/* embkv-bench rdma-count mode (tools/bench_rdma.c). */
#ifndef EMBKV_TOOLS_BENCH_RDMA_H
#define EMBKV_TOOLS_BENCH_RDMA_H

/* Runs the counting benchmark with the whole command line; the exit
 * status: 0, 1 (a run failed) or 2 (usage). */
int bench_rdma_main(int argc, char **argv);

#endif
