/* embkv-bench multi-table mode (tools/bench_multi.c). */
#ifndef EMBKV_TOOLS_BENCH_MULTI_H
#define EMBKV_TOOLS_BENCH_MULTI_H

/* Runs the multi-table benchmark with the whole command line; the exit
 * status: 0, 1 (a run failed) or 2 (usage). */
int bench_multi_main(int argc, char **argv);

#endif
