/* embkv-bench checkpoint mode (tools/bench_ckpt.c). */
#ifndef EMBKV_TOOLS_BENCH_CKPT_H
#define EMBKV_TOOLS_BENCH_CKPT_H

/* Runs the checkpoint benchmark with the whole command line; the exit
 * status: 0, 1 (a run failed) or 2 (usage). */
int bench_ckpt_main(int argc, char **argv);

#endif
