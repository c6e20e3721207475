/*
 * Test harness for embkvd: start the real binary on port 0, talk raw wire
 * frames to it with the codec, stop it.
 *
 * One transport per run, chosen by th_transport_init(): TCP sockets on
 * 127.0.0.1 (the default), or "rdma://HOST" (the RDMA VM, HOST 10.0.2.15):
 * then embkvd also listens on rdma://HOST:0 and every connection goes
 * through the client transport's ops (net/transport.h), one SEND per
 * frame. A connection is a small integer handle (>= 0) of this harness,
 * not a file descriptor: close it with th_close().
 *
 * All helpers block, with a 5 s receive timeout on every test connection,
 * so a server that fails to answer fails the test instead of hanging it.
 * Helpers return 0, a negative errno, or the status of an ERROR reply.
 * Connections are used by one thread at a time; th_connect and th_close
 * may be called from any thread.
 */
#ifndef EMBKV_TESTS_SERVER_HARNESS_H
#define EMBKV_TESTS_SERVER_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "net/wire.h"

#define TH_TIMEOUT_MS 5000

#define TH_HOST_MAX 64

struct th_server {
	pid_t pid;
	int out_fd;        /* the server's stdout */
	uint16_t port;     /* the TCP listener's */
	uint16_t rdma_port; /* the rdma:// listener's, under rdma */
	char host[TH_HOST_MAX]; /* both listeners' address */
};

/*
 * The transport of this run: argv[1] when given, else $EMBKV_TEST_LISTEN,
 * else tcp://127.0.0.1; "SCHEME://HOST" without a port (tcp or rdma).
 * Call once from main before any test. 0 or -EINVAL.
 */
int th_transport_init(int argc, char **argv);
/* true when this run goes over rdma://. */
bool th_rdma(void);

/* Starts embkvd --listen tcp://HOST:0 (and under rdma --listen
 * rdma://HOST:0) plus extra (NULL-terminated, may be NULL) and waits for
 * its "listening on" lines. 0 or -errno. */
int th_start(struct th_server *s, const char *const *extra);
/* th_start on these ports instead of 0 (e.g. a restart on the ports a
 * stopped server had; rdma_port only matters under rdma). */
int th_start_on(struct th_server *s, uint16_t port, uint16_t rdma_port,
		const char *const *extra);
/* SIGTERM, then waits up to 15 s (SIGKILL after): the exit status (0 to
 * 255), 128 + signal when killed, or -1. */
int th_stop(struct th_server *s);
/* Runs embkvd with argv (NULL-terminated, without argv[0]) to completion
 * with stdout and stderr discarded: its exit status, or -1. */
int th_run_status(const char *const *args);

/* A connection to s over this run's transport: a handle >= 0, or -errno
 * (a connection refused by the server included). */
int th_connect(const struct th_server *s);
/* Closes a handle; a negative or closed one is a no-op. */
void th_close(int fd);
/* The largest request and reply frames (header included) the connection
 * carries; 0: no limit but the wire's (TCP). */
void th_limits(int fd, uint32_t *max_request, uint32_t *max_reply);
/* Sends bytes as they are: over TCP onto the stream, over rdma as ONE
 * message (at least a header's size; replies that must be taken to make
 * room in the window are kept for th_recv). */
int th_send_raw(int fd, const void *buf, size_t len);
int th_send(int fd, uint8_t op, uint64_t req_id, uint64_t epoch,
	    const void *body, uint32_t len);

struct th_frame {
	struct embkv_wire_hdr h;
	uint8_t *body;     /* malloc'ed, h.body_len bytes */
};
/* 0, -ETIMEDOUT, -ECONNRESET, or EMBKV_EDISCONNECTED on EOF. */
int th_recv(int fd, struct th_frame *f);
void th_frame_free(struct th_frame *f);
/* The status of an ERROR frame, or 0 when f is not one. */
int th_error_status(const struct th_frame *f);
/* true when the peer closes fd (EOF or reset) within ms, reading and
 * discarding whatever comes before. */
bool th_closed_within(int fd, int ms);
/* Without waiting: reads and discards what has arrived; true when the
 * peer has closed the connection. */
bool th_peer_gone(int fd);

/* Sends a request and receives its reply: 0 (reply in *f, which the
 * caller frees), the ERROR status (f freed), or a receive error. */
int th_call(int fd, uint8_t op, uint64_t epoch, const void *body,
	    uint32_t len, struct th_frame *f);

/* Conveniences on top of th_call (epoch 1 unless given). A table is
 * named by its id and uid, as TABLE_CREATE and TABLE_OPEN give them (see
 * th_ref). th_pull, th_rows and th_erase split a batch into as many
 * frames as the connection's limits need (none over TCP), in order;
 * counts are summed, the first error is returned. */
int th_create(int fd, const struct embkv_table_attr *a,
	      struct embkv_wire_table_ref *ref);
int th_drop(int fd, const char *name);
int th_open(int fd, const char *name, struct embkv_wire_table_info *info);
/* The id and uid of an opened table. */
struct embkv_wire_table_ref th_ref(const struct embkv_wire_table_info *info);
int th_pull(int fd, uint64_t epoch, struct embkv_wire_table_ref table,
	    uint32_t dim, uint32_t n, const uint64_t *keys, uint8_t mode,
	    float *out, uint8_t *found);
int th_rows(int fd, uint8_t op, struct embkv_wire_table_ref table,
	    uint32_t dim, uint32_t n, const uint64_t *keys, const float *vals,
	    struct embkv_wire_count_reply *cr);
int th_erase(int fd, struct embkv_wire_table_ref table, uint32_t n,
	     const uint64_t *keys, struct embkv_wire_count_reply *cr);
/* A request whose body is a table reference (STATS, SHARD_MAP,
 * TABLE_REGIONS), as th_call. */
int th_ref_call(int fd, uint8_t op, struct embkv_wire_table_ref table,
		struct th_frame *f);
/* HITS: counts[i] one-sided hits of keys[i], in one frame. */
int th_hits(int fd, struct embkv_wire_table_ref table, uint32_t n,
	    const uint64_t *keys, const uint32_t *counts,
	    struct embkv_wire_count_reply *cr);
/*
 * Every request that names a table, for table (dim, n keys): PULL (train
 * mode, which would insert), PUSH, ASSIGN, ERASE, HITS, STATS, SHARD_MAP
 * and, under rdma, TABLE_REGIONS. 0 when the server answered each with
 * ERROR EMBKV_ENOTABLE; else the opcode of the first that it did not
 * (> 0), after printing what came instead.
 */
int th_all_refused(int fd, struct embkv_wire_table_ref table, uint32_t dim,
		   uint32_t n, const uint64_t *keys);
/* One counter of a STATS reply (table EMBKV_WIRE_TABLE_ALL: the
 * server's); -ENOENT when absent. */
int th_stat(int fd, uint32_t table, uint16_t id, uint64_t *value);
/* Polls the server's connection count until it equals want (ms budget). */
int th_wait_conns(int fd, uint64_t want, int ms);
/* HELLO/AUTH with token; checks the server's MAC. */
int th_auth(int fd, const char *token);

/* A small table attr: name, dim, partitions, SGD lr 0.05, seeded init. */
void th_attr(struct embkv_table_attr *a, const char *name, uint32_t dim,
	     uint32_t partitions);

#endif
