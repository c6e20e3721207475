/*
 * embkv-bench --mode bytes-per-row (tools/bench_bpr.c): memory per stored
 * row for every (storage type, optimizer, state type), and wire bytes per
 * pulled row.
 */
#ifndef EMBKV_TOOLS_BENCH_BPR_H
#define EMBKV_TOOLS_BENCH_BPR_H

int bench_bpr_main(int argc, char **argv);

#endif
