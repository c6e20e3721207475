/* embkv-bench latency mode (tools/bench_latency.c). */
#ifndef EMBKV_TOOLS_BENCH_LATENCY_H
#define EMBKV_TOOLS_BENCH_LATENCY_H

/* Runs the latency benchmark with the whole command line; the exit
 * status: 0, 1 (a run failed) or 2 (usage). */
int bench_latency_main(int argc, char **argv);

#endif
