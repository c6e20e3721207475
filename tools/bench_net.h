/* embkv-bench network mode (tools/bench_net.c). */
#ifndef EMBKV_TOOLS_BENCH_NET_H
#define EMBKV_TOOLS_BENCH_NET_H

/* Runs the network benchmark with the whole command line; the exit
 * status: 0, 1 (a run failed) or 2 (usage). */
int bench_net_main(int argc, char **argv);

#endif
