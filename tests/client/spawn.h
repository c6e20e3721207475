/*
 * Test helper: runs server processes (embkvd, or any program that prints
 * "embkvd: listening on tcp://HOST:PORT" lines when ready) and stops them.
 * For multi-process integration tests: start each server on port 0, read
 * the address it really listens on, hand the addresses to clients.
 *
 * The child's stdout is read until the expected lines came, then copied to
 * this process's stderr by a thread (so the child never blocks on a full
 * pipe). Test code: any thread, one thread per struct at a time.
 */
#ifndef EMBKV_TESTS_SPAWN_H
#define EMBKV_TESTS_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

#define EMBKV_TEST_READY_PREFIX "embkvd: listening on "
#define EMBKV_TEST_MAX_ADDRS 8u
#define EMBKV_TEST_ADDR_MAX 256u

struct embkv_test_proc {
	pid_t pid;
	int out_fd;
	uint32_t naddrs;
	char addrs[EMBKV_TEST_MAX_ADDRS][EMBKV_TEST_ADDR_MAX];
	void *drain;    /* the copying thread, once started */
};

/*
 * Starts argv[0] (a path) with argv and waits up to timeout_ms for
 * nready "embkvd: listening on ADDR" lines. 0, or -ETIMEDOUT / -ECHILD
 * (exited first) / -errno; on failure the child is killed and reaped.
 */
int embkv_test_proc_start(const char *const argv[], uint32_t nready,
			  uint32_t timeout_ms, struct embkv_test_proc *p);
/*
 * SIGTERM, then waits up to timeout_ms for the exit (SIGKILL after).
 * Returns the exit status (0..255), 128 + signal when killed by one, or
 * -errno. Always reaps the child.
 */
int embkv_test_proc_stop(struct embkv_test_proc *p, uint32_t timeout_ms);
/* SIGKILL and reap (a server crash). */
void embkv_test_proc_kill(struct embkv_test_proc *p);

/* Monotonic milliseconds (the tests' deadlines). */
uint64_t embkv_test_now_ms(void);

/* A free TCP port on 127.0.0.1 (bound, read, released: another process
 * may take it first; callers retry). 0 on failure. */
uint16_t embkv_test_free_port(void);

/*
 * Where clusters listen: $EMBKV_TEST_LISTEN ("rdma://10.0.2.15" in the
 * RDMA VM) or tcp://127.0.0.1; "SCHEME://HOST" without the port.
 */
#define EMBKV_TEST_LISTEN_ENV "EMBKV_TEST_LISTEN"
#define EMBKV_TEST_LISTEN_DEFAULT "tcp://127.0.0.1"
const char *embkv_test_listen_prefix(void);

/*
 * A cluster of n embkvd processes, on 127.0.0.1 over TCP unless
 * $EMBKV_TEST_LISTEN says otherwise (above), started as
 *   EMBKVD --listen PREFIX:PORT_i --peers ADDR_0,...,ADDR_n-1
 *          --self i [extra...]
 * so that every server knows the whole map (partition p on server p % n).
 * addrs[] holds the addresses in map order, ready for a client's
 * embkv_client_attr.servers.
 */
#define EMBKV_TEST_MAX_SERVERS 8u
#define EMBKV_TEST_MAX_EXTRA 16u

struct embkv_test_cluster {
	uint32_t n;
	struct embkv_test_proc procs[EMBKV_TEST_MAX_SERVERS];
	char addr_buf[EMBKV_TEST_MAX_SERVERS][EMBKV_TEST_ADDR_MAX];
	const char *addrs[EMBKV_TEST_MAX_SERVERS];
};

/* extra: NULL-terminated (may be NULL), at most EMBKV_TEST_MAX_EXTRA.
 * 0 or a negative errno (every started process is killed then). */
int embkv_test_cluster_start(const char *embkvd, uint32_t n,
			     const char *const *extra, uint32_t timeout_ms,
			     struct embkv_test_cluster *c);
/* Stops every server (embkv_test_proc_stop): 0 when all exited with 0,
 * else the first nonzero status. */
int embkv_test_cluster_stop(struct embkv_test_cluster *c,
			    uint32_t timeout_ms);

#endif
