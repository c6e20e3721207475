/*
 * What the client-side RDMA tests in the VM share (onesided_test.c,
 * gpu_direct_test.c): PASS/FAIL printing, clients of the test cluster's
 * servers, table creation, and main: start the servers on rdma://, run
 * one mode, stop them, say ALL PASSED or FAILED.
 */
#ifndef EMBKV_TESTS_RDMA_TEST_H
#define EMBKV_TESTS_RDMA_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <embkv/embkv.h>

#include "tests/client/spawn.h"

extern int failures;                  /* FAIL lines printed */
extern struct embkv_test_cluster cl;  /* the servers, on rdma:// */

/* Prints a FAIL line, counts it and jumps to the function's out label. */
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", \
	__FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); \
	fflush(stdout); failures++; goto out; } } while (0)

/* A client of the first nsrv servers (8 s request timeout); rpc_only:
 * no one-sided READs. NULL (said why) on failure. */
struct embkv_client *client(uint32_t nsrv, int rpc_only);
/* Creates a table of dim, capacity cap, dtype and initializer on the
 * servers (64 partitions, lr 0.1): 0 or an error. */
int table_create(struct embkv_client *c, const char *name, uint32_t dim,
		 uint64_t cap, enum embkv_dtype dtype,
		 enum embkv_init_type init);

struct rdma_mode {
	const char *name;
	void (*run)(int argc, char **argv);   /* argv[1] is the mode */
};

/* usage: PROG MODE [ARGS]: alarm(alarm_s), nsrv embkvd (--threads 1) on
 * rdma://$EMBKV_VM_IP (10.0.2.15), the mode, the servers stopped. Exit 0
 * when nothing failed. */
int rdma_test_main(int argc, char **argv, uint32_t nsrv, unsigned alarm_s,
		   const struct rdma_mode *modes);

#endif
