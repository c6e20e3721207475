/* embkv-bench move mode (tools/bench_move.c). */
#ifndef EMBKV_TOOLS_BENCH_MOVE_H
#define EMBKV_TOOLS_BENCH_MOVE_H

/* Runs the partition-move benchmark with the whole command line; the exit
 * status: 0, 1 (a run failed) or 2 (usage). */
int bench_move_main(int argc, char **argv);

#endif
