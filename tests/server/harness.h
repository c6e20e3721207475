/*
 * Test harness for embkvd: start the real binary on 127.0.0.1 port 0,
 * talk raw wire frames to it with the codec, stop it.
 *
 * All helpers block, with a 5 s receive timeout on every test socket, so
 * a server that fails to answer fails the test instead of hanging it.
 * Helpers return 0, a negative errno, or the status of an ERROR reply.
 */
#ifndef EMBKV_TESTS_SERVER_HARNESS_H
#define EMBKV_TESTS_SERVER_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "net/wire.h"

#define TH_TIMEOUT_MS 5000

struct th_server {
	pid_t pid;
	int out_fd;        /* the server's stdout */
	uint16_t port;
};

/* Starts embkvd --listen tcp://127.0.0.1:0 plus extra (NULL-terminated,
 * may be NULL) and waits for its "listening on" line. 0 or -errno. */
int th_start(struct th_server *s, const char *const *extra);
/* SIGTERM, then waits up to 15 s (SIGKILL after): the exit status (0 to
 * 255), 128 + signal when killed, or -1. */
int th_stop(struct th_server *s);
/* Runs embkvd with argv (NULL-terminated, without argv[0]) to completion
 * with stdout and stderr discarded: its exit status, or -1. */
int th_run_status(const char *const *args);

int th_connect(uint16_t port);
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

/* Sends a request and receives its reply: 0 (reply in *f, which the
 * caller frees), the ERROR status (f freed), or a receive error. */
int th_call(int fd, uint8_t op, uint64_t epoch, const void *body,
	    uint32_t len, struct th_frame *f);

/* Conveniences on top of th_call (epoch 1 unless given). */
int th_create(int fd, const struct embkv_table_attr *a, uint32_t *id);
int th_drop(int fd, const char *name);
int th_open(int fd, const char *name, struct embkv_wire_table_info *info);
int th_pull(int fd, uint64_t epoch, uint32_t table, uint32_t dim, uint32_t n,
	    const uint64_t *keys, uint8_t mode, float *out, uint8_t *found);
int th_rows(int fd, uint8_t op, uint32_t table, uint32_t dim, uint32_t n,
	    const uint64_t *keys, const float *vals,
	    struct embkv_wire_count_reply *cr);
int th_erase(int fd, uint32_t table, uint32_t n, const uint64_t *keys,
	     struct embkv_wire_count_reply *cr);
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
