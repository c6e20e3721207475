/*
 * Client transports behind one ops table, chosen from the scheme of a
 * server address ("tcp://host:port" now, "rdma://host:port" with the verbs
 * transport).
 *
 * The interface is frame-based and nonblocking at heart, so that one
 * thread can drive many connections at once (the client's parallel
 * fan-out): send_some() and recv_some() make as much progress as they can
 * without blocking and say -EAGAIN when they must wait; poll_fd() names the
 * file descriptor to wait on (a socket, or a verbs completion channel).
 * embkv_conn_send() and embkv_conn_recv() are blocking forms with a
 * deadline built on top of them, for handshakes and tools.
 *
 * Receiving always decodes the 32-byte header first and checks it (magic,
 * version, opcode, flags, body_len against the caller's limit) BEFORE any
 * memory is reserved for the body or a body byte is read.
 *
 * Threads: a connection is used by one thread at a time (the client's
 * connection pool hands it out exclusively); different connections are
 * independent. Nothing here prints, exits or aborts.
 */
#ifndef EMBKV_NET_TRANSPORT_H
#define EMBKV_NET_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include "net/wire.h"

#define EMBKV_TRANSPORT_SCHEME_MAX 16u /* bytes, including the NUL */

struct embkv_transport_ops;

/* A parsed server address. host is NUL-terminated ("[...]" removed from an
 * IPv6 literal); ops is the transport of its scheme. */
struct embkv_endpoint {
	const struct embkv_transport_ops *ops;
	char scheme[EMBKV_TRANSPORT_SCHEME_MAX];
	char host[EMBKV_WIRE_ADDR_MAX + 1];
	uint16_t port;
};

/*
 * Parses "scheme://host:port" (host a name, an IPv4 literal or a
 * bracketed IPv6 literal; port 1 to 65535). -EINVAL when malformed or the
 * scheme is unknown, -EPROTONOSUPPORT when the scheme is known but its
 * transport is not built in, EMBKV_ELIMIT when longer than
 * EMBKV_WIRE_ADDR_MAX. Pure; any thread. out is written only on success.
 */
int embkv_endpoint_parse(const char *addr, struct embkv_endpoint *out);

/* The transport for a scheme ("tcp"), or NULL. Any thread. */
const struct embkv_transport_ops *embkv_transport_find(const char *scheme);

/* Every transport's connection starts with this; the rest is private. */
struct embkv_conn {
	const struct embkv_transport_ops *ops;
};

/*
 * Receive state of one frame. recv_some() fills buf with the header and
 * then the body; when it returns 0, buf holds exactly one whole frame
 * (EMBKV_WIRE_HDR_SIZE + hdr.body_len bytes, the body 8-byte aligned) and
 * hdr its decoded header. The caller then consumes the frame (or takes
 * buf's memory) and calls embkv_rx_reset() before the next one.
 */
struct embkv_rx {
	struct embkv_buf buf;
	struct embkv_wire_hdr hdr;  /* valid once the header is in */
	uint32_t max_body;          /* the body_len limit checked on the header */
	uint8_t have_hdr;
};

/* max_body: largest body accepted (<= EMBKV_WIRE_MAX_BODY; before
 * authentication, EMBKV_WIRE_MAX_PREAUTH_BODY). */
void embkv_rx_init(struct embkv_rx *rx, uint32_t max_body);
/* Ready for the next frame; keeps the memory. */
void embkv_rx_reset(struct embkv_rx *rx);
void embkv_rx_destroy(struct embkv_rx *rx);
/*
 * For transports: called when the first EMBKV_WIRE_HDR_SIZE bytes of buf
 * are in. Decodes and checks the header (embkv_wire_hdr_decode, then
 * body_len <= max_body, else EMBKV_ELIMIT), reserves room for the body and
 * sets have_hdr. Returns 0 or the error; on error the connection's framing
 * is lost and it must be closed.
 */
int embkv_rx_header_done(struct embkv_rx *rx);
/* Bytes of the current frame still missing (header first). */
size_t embkv_rx_missing(const struct embkv_rx *rx);

/*
 * A one-sided read of server memory (the rdma transport's pull fast path):
 * len bytes at (remote_addr, rkey) into local, which the transport has
 * registered. Declared here so that the client's fast path is written
 * against the ops table; transports without one-sided access leave
 * post_reads NULL and the client uses the RPC path.
 */
struct embkv_remote_read {
	uint64_t remote_addr;
	uint32_t rkey;
	uint32_t len;
	void *local;
	uint64_t cookie; /* returned by poll_reads for each completed read */
	/* NULL: local lies in read_buf; else a handle from read_region and
	 * local lies inside that region. */
	const void *region;
};

/*
 * Registers memory the caller owns for reads into (read_region): reg
 * (the caller's, e.g. GPUDirect registration of device memory) is given
 * the transport's protection domain (an ibv_pd) and returns an ibv_mr
 * for [p, p + len) whose addr is p, or NULL with errno set.
 */
typedef void *(*embkv_region_reg_fn)(void *pd, void *p, size_t len,
				     int access, void *arg);

/*
 * What one connection accepts beyond the wire's own limits (the rdma
 * transport's RECV buffers and reply slots). 0 in a field: no limit of
 * the transport's (the wire limits still hold).
 */
struct embkv_conn_limits {
	uint32_t max_request; /* bytes of a request frame, header included */
	uint32_t max_reply;   /* bytes of a reply frame, header included */
	uint32_t max_reads;   /* reads of one post_reads call */
};

struct embkv_transport_ops {
	const char *scheme; /* "tcp" */

	/*
	 * Connects to ep within timeout_ms (name resolution included where
	 * the system allows). 0 and *out, or -ECONNREFUSED, -EHOSTUNREACH,
	 * EMBKV_ETIMEDOUT, -ENOMEM, ... The caller owns *out until close().
	 */
	int (*connect)(const struct embkv_endpoint *ep, uint32_t timeout_ms,
		       struct embkv_conn **out);
	/* Closes and frees; NULL is a no-op. Never blocks for long. */
	void (*close)(struct embkv_conn *c);

	/*
	 * Sends bytes [*off, len) of one whole frame, as many as possible
	 * without blocking, advancing *off. 0 when *off == len, -EAGAIN
	 * when it must wait for poll_fd() to be writable, else an error
	 * (EMBKV_EDISCONNECTED, ...) after which the connection is unusable.
	 * frame stays the caller's; it must not change until 0 is returned.
	 */
	int (*send_some)(struct embkv_conn *c, const uint8_t *frame, size_t len,
			 size_t *off);
	/*
	 * Receives into rx without blocking. 0 when rx holds a whole frame,
	 * -EAGAIN when it must wait for poll_fd() to be readable, else an
	 * error (EMBKV_EDISCONNECTED when the peer closed, a header error
	 * of embkv_rx_header_done) after which the connection is unusable.
	 * May hold bytes of later frames internally: call it again (until
	 * -EAGAIN) before waiting on poll_fd().
	 */
	int (*recv_some)(struct embkv_conn *c, struct embkv_rx *rx);
	/* The descriptor to poll(): POLLOUT for send_some, POLLIN for
	 * recv_some. A transport whose sends wait for its peer (the rdma
	 * window) makes it readable when send_some may go on, unless
	 * recv_some already took the replies that opened the window: a
	 * caller that received frames calls send_some again before it
	 * waits (client/rpc.c). */
	int (*poll_fd)(const struct embkv_conn *c);

	/*
	 * Optional: checks an idle connection (no exchange on it) without
	 * blocking: 0 when it may be reused, else an error (peer gone,
	 * something arrived unasked). NULL: the caller polls poll_fd() for
	 * POLLIN instead (readable while idle = closed or broken).
	 */
	int (*idle_check)(struct embkv_conn *c);

	/*
	 * Optional (NULL: no limits): the connection's limits, fixed once
	 * connected. A request frame over max_request makes send_some fail
	 * with EMBKV_ELIMIT, so callers split batches to fit.
	 */
	void (*limits)(const struct embkv_conn *c,
		       struct embkv_conn_limits *out);

	/*
	 * Optional one-sided reads (all three NULL when unsupported).
	 * read_buf returns a buffer of at least len bytes that the
	 * connection registered for reads into (NULL: -ENOMEM); it stays
	 * the connection's, valid until the next read_buf call or close,
	 * and must not be replaced while reads are posted. Every
	 * embkv_remote_read.local must lie inside it.
	 * post_reads posts reads[0..n) as one chain (one doorbell, only the
	 * last one signaled), n <= limits' max_reads: 0, -EAGAIN (too many
	 * reads posted, or chains completed whose cookies were not polled
	 * yet: poll first) or an error. The chain completes as a
	 * whole: poll_reads returns, without blocking, the cookie of the
	 * LAST read of each completed chain (every read of that chain is
	 * then in local), up to max of them: the count (0: wait on
	 * poll_fd() for POLLIN), or an error (a failed read, EMBKV_EDISCONNECTED)
	 * after which the connection is unusable.
	 */
	void *(*read_buf)(struct embkv_conn *c, size_t len);
	int (*post_reads)(struct embkv_conn *c,
			  const struct embkv_remote_read *reads, uint32_t n);
	int (*poll_reads)(struct embkv_conn *c, uint64_t *cookies,
			  uint32_t max);
	/*
	 * Optional (NULL: reads land only in read_buf): a handle for reads
	 * into [p, p + len), memory the caller allocated (GPU memory for
	 * GPUDirect RDMA), registered by reg on this connection the first
	 * time id is asked for and kept until close (the connection holds
	 * at most 16: the least recently asked one is deregistered to make
	 * room, never while reads are posted). id names one allocation for
	 * the process's life: a region that changes p or len under the same
	 * id is registered again. NULL with errno set when reg fails; a
	 * failure is remembered, so asking again for the same id, p and len
	 * fails at once (the caller reads into read_buf or goes by RPC).
	 */
	const void *(*read_region)(struct embkv_conn *c, uint64_t id, void *p,
				   size_t len, embkv_region_reg_fn reg,
				   void *arg);
	/*
	 * Optional, with read_region: the rkey under which the server may
	 * RDMA-WRITE into a region (regions are registered for local and
	 * remote write: PULL_LAND, net/PROTOCOL.md 5.26). The region must
	 * stay registered until such a reply came back: it does unless more
	 * than 16 other regions are asked for on the connection meanwhile,
	 * and then the server's WRITE fails and the connection closes.
	 */
	uint32_t (*region_rkey)(struct embkv_conn *c, const void *region);
	/*
	 * Optional, with read_region: send_some for a frame whose last
	 * tail_len bytes are not after head but at tail, inside a region
	 * of this connection (read_region): one SEND gathering both (the
	 * GPUDirect push's rows leave device memory so). head's header
	 * counts the tail in its body_len; head_len + tail_len is the
	 * frame's length. *off becomes head_len once sent; the tail must
	 * stay until the request's reply came.
	 */
	int (*send_gather)(struct embkv_conn *c, const uint8_t *head,
			   size_t head_len, const void *region,
			   const void *tail, size_t tail_len, size_t *off);
};

/* The built-in transports (net/tcp.c, net/verbs.c or, built without
 * RDMA, net/verbs_stub.c whose connect says -EPROTONOSUPPORT). */
extern const struct embkv_transport_ops embkv_tcp_ops;
extern const struct embkv_transport_ops embkv_verbs_ops;

/* Monotonic milliseconds, for deadlines. */
uint64_t embkv_now_ms(void);

/*
 * Blocking forms: send a whole frame / receive a whole frame (into rx, see
 * above) before deadline_ms (embkv_now_ms() time), EMBKV_ETIMEDOUT after.
 * Same errors as send_some / recv_some otherwise. EINTR-safe.
 */
int embkv_conn_send(struct embkv_conn *c, const uint8_t *frame, size_t len,
		    uint64_t deadline_ms);
int embkv_conn_recv(struct embkv_conn *c, struct embkv_rx *rx,
		    uint64_t deadline_ms);

/* Waits until fd has one of events (POLLIN, POLLOUT) or deadline_ms
 * passes: 0, EMBKV_ETIMEDOUT, or a negative errno. EINTR-safe. */
int embkv_fd_wait(int fd, short events, uint64_t deadline_ms);

#endif /* EMBKV_NET_TRANSPORT_H */
