/* embkv-bench replica mode (tools/bench_replica.c). */
#ifndef EMBKV_TOOLS_BENCH_REPLICA_H
#define EMBKV_TOOLS_BENCH_REPLICA_H

/* Runs the replica benchmark with the whole command line; the exit
 * status: 0, 1 (a run failed, or the rows differ) or 2 (usage). */
int bench_replica_main(int argc, char **argv);

#endif
