/*
 * Test helper: a private etcd on loopback for cluster tests.
 *
 * embkv_test_etcd_start() runs Debian's etcd (EMBKV_TEST_ETCD_BIN, or
 * $EMBKV_ETCD_BIN) as a one-member cluster in a fresh temporary directory,
 * client and peer URLs on 127.0.0.1 at free ports, and returns once it
 * answers a read. etcd's own log goes to DIR/etcd.log and is copied to
 * stderr when it fails to start. The child dies with the thread that
 * started it (PR_SET_PDEATHSIG), and a small guardian process removes the
 * directory when the test process ends in any way (even SIGKILL, as on a
 * ctest timeout): a dead test leaves neither etcd nor its files behind.
 * embkv_test_etcd_stop() removes the directory itself.
 *
 * Test code: one thread per struct at a time; start it from the thread
 * that lives as long as the test (the main thread).
 */
#ifndef EMBKV_TESTS_CLUSTER_ETCD_HARNESS_H
#define EMBKV_TESTS_CLUSTER_ETCD_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef EMBKV_TEST_ETCD_BIN
#define EMBKV_TEST_ETCD_BIN "/usr/bin/etcd"
#endif
#define EMBKV_TEST_ETCD_BIN_ENV "EMBKV_ETCD_BIN"
#define EMBKV_TEST_ETCD_START_MS 15000u
#define EMBKV_TEST_ETCD_DIR_MAX 256u
#define EMBKV_TEST_ETCD_URL_MAX 64u

struct embkv_test_etcd {
	pid_t pid;                               /* 0: not running */
	char dir[EMBKV_TEST_ETCD_DIR_MAX];       /* "": none */
	uint16_t client_port, peer_port;
	char url[EMBKV_TEST_ETCD_URL_MAX];       /* http://127.0.0.1:PORT */
	pid_t guard;                             /* the guardian, 0: none */
	int guard_fd;                            /* its pipe's write end */
};

/* true when the etcd binary is there (a test may skip without it). */
bool embkv_test_etcd_available(void);
/* Starts etcd and waits until it answers. 0, or a negative errno (nothing
 * is left running and the directory is removed). */
int embkv_test_etcd_start(struct embkv_test_etcd *e);
/* SIGTERM, then SIGKILL after 5 s; reaps it; keeps the directory (a later
 * embkv_test_etcd_restart() reuses it). No-op when not running. */
void embkv_test_etcd_halt(struct embkv_test_etcd *e);
/* Starts it again on the same ports and data (after halt). */
int embkv_test_etcd_restart(struct embkv_test_etcd *e);
/* Halts it and removes its directory. No-op on a zeroed struct. */
void embkv_test_etcd_stop(struct embkv_test_etcd *e);

struct embkv_test_proc;
/*
 * embkvd (its path) as member id of cluster on etcd e: --listen listen
 * (NULL: tcp://127.0.0.1:0), --threads threads (NULL: 2), --member-ttl
 * ttl, --member-id id, then the NULL-terminated flags extra (NULL: none,
 * at most 16); waits up to ready_ms for its listener and copies its
 * address into addr (EMBKV_TEST_ADDR_MAX bytes). 0, -E2BIG (extra too
 * long) or embkv_test_proc_start's error.
 */
int embkv_test_member_start(const char *embkvd, const struct embkv_test_etcd *e,
			    const char *cluster, uint32_t id,
			    const char *listen, const char *threads,
			    const char *ttl, const char *const *extra,
			    uint32_t ready_ms, struct embkv_test_proc *p,
			    char *addr);

#endif
