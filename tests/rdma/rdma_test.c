/*
 * The client-side RDMA tests' shared part (rdma_test.h): one copy of the
 * cluster start/stop, clients and table creation for every mode of
 * onesided_test.c and gpu_direct_test.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client.h"
#include "tests/rdma/rdma_test.h"

#define READY_MS 20000u
#define STOP_MS 10000u

int failures;
struct embkv_test_cluster cl;

struct embkv_client *client(uint32_t nsrv, int rpc_only)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;
	int rc;

	embkv_client_attr_init(&ca);
	ca.servers = cl.addrs;
	ca.nservers = nsrv;
	ca.request_timeout_ms = 8000;
	rc = embkv_client_create(&ca, &c);
	if (rc) {
		printf("client: %s\n", embkv_strerror(rc));
		return NULL;
	}
	c->no_onesided = rpc_only;
	return c;
}

int table_create(struct embkv_client *c, const char *name, uint32_t dim,
		 uint64_t cap, enum embkv_dtype dtype,
		 enum embkv_init_type init)
{
	struct embkv_table_attr ta;

	embkv_table_attr_init(&ta);
	snprintf(ta.name, sizeof(ta.name), "%s", name);
	ta.dim = dim;
	ta.capacity = cap;
	ta.partitions = 64;
	ta.dtype = dtype;
	ta.init.type = init;
	ta.opt.lr = 0.1f;
	return embkv_table_create_remote(c, &ta);
}

int rdma_test_main(int argc, char **argv, uint32_t nsrv, unsigned alarm_s,
		   const struct rdma_mode *modes)
{
	static const char *const extra[] = { "--threads", "1", NULL };
	const char *mode = argc > 1 ? argv[1] : modes[0].name;
	const char *ip = getenv("EMBKV_VM_IP");
	const struct rdma_mode *m = modes;
	char prefix[64];
	int rc;

	for (; m->name && strcmp(m->name, mode); m++)
		;
	if (!m->name) {
		printf("FAIL unknown mode %s\n", mode);
		return 1;
	}
	alarm(alarm_s);
	snprintf(prefix, sizeof(prefix), "rdma://%s", ip ? ip : "10.0.2.15");
	setenv(EMBKV_TEST_LISTEN_ENV, prefix, 1);
	rc = embkv_test_cluster_start(EMBKVD_PATH, nsrv, extra, READY_MS, &cl);
	if (rc) {
		printf("FAIL cluster: %s\n", strerror(-rc));
		return 1;
	}
	m->run(argc, argv);
	rc = embkv_test_cluster_stop(&cl, STOP_MS);
	if (rc) {
		printf("FAIL servers exited with %d\n", rc);
		failures++;
	}
	printf("%s\n", failures ? "FAILED" : "ALL PASSED");
	return failures ? 1 : 0;
}
