/*
 * embkv wire protocol: frame header and message bodies, encoded and decoded
 * as pure functions over byte buffers (no I/O). net/PROTOCOL.md is the
 * normative description; this header mirrors it.
 *
 * Conventions for every function below:
 * - Pure and reentrant: any thread, no global state, no allocation except
 *   in the embkv_buf helpers.
 * - Int-returning functions return 0 or a negative code. Decoders return
 *   EMBKV_EPROTO for a malformed body, EMBKV_ELIMIT for a length or count
 *   over its limit, -EINVAL for a caller mistake (NULL out-param, body not
 *   8-byte aligned). Encoders return -EINVAL for an invalid message,
 *   EMBKV_ELIMIT for one over a limit and -ENOSPC when cap is too small.
 * - Decoders never read outside [body, body + len) and never trust a count
 *   before checking it against its limit and against len.
 * - Zero copy: decoded messages hold pointers INTO the caller's body
 *   buffer (keys, floats, strings). They stay valid while that buffer does;
 *   the caller owns it. Array offsets are multiples of 8 relative to the
 *   body start, so body buffers must be 8-byte aligned (malloc, registered
 *   RDMA buffers and a body right after the 32-byte header in such a buffer
 *   all are); decoders and prepare functions return -EINVAL otherwise.
 * - Decoded strings (struct embkv_wire_str) are NOT NUL-terminated; table
 *   names are copied into NUL-terminated char arrays instead.
 * - embkv runs on little-endian hosts only (checked at compile time in
 *   wire.c): wire arrays are then native arrays.
 */
#ifndef EMBKV_NET_WIRE_H
#define EMBKV_NET_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <embkv/embkv.h>

/* Frame header ------------------------------------------------------------ */

#define EMBKV_WIRE_MAGIC 0x564b4d45u /* bytes 'E' 'M' 'K' 'V' on the wire */
#define EMBKV_WIRE_VERSION 3u
#define EMBKV_WIRE_HDR_SIZE 32u

/* Byte offsets of the header fields (all little-endian). Magic and version
 * keep these offsets in every protocol version. */
enum embkv_wire_hdr_off {
	EMBKV_WIRE_HDR_MAGIC = 0,     /* u32 EMBKV_WIRE_MAGIC */
	EMBKV_WIRE_HDR_VERSION = 4,   /* u16 EMBKV_WIRE_VERSION */
	EMBKV_WIRE_HDR_OPCODE = 6,    /* u8 enum embkv_wire_op */
	EMBKV_WIRE_HDR_FLAGS = 7,     /* u8, no flag defined yet */
	EMBKV_WIRE_HDR_REQ_ID = 8,    /* u64, echoed by the reply */
	EMBKV_WIRE_HDR_EPOCH = 16,    /* u64 shard-map epoch */
	EMBKV_WIRE_HDR_BODY_LEN = 24, /* u32 bytes after the header */
	EMBKV_WIRE_HDR_RESERVED = 28, /* u32, must be 0 */
};

/* Flag bits a receiver accepts; any other bit is EMBKV_EPROTO. */
#define EMBKV_WIRE_FLAGS_KNOWN 0u

/* Limits ------------------------------------------------------------------ */

#define EMBKV_WIRE_MAX_BODY (64u << 20)   /* bytes of one frame body */
#define EMBKV_WIRE_MAX_PREAUTH_BODY 512u  /* bytes, before AUTH succeeded */
#define EMBKV_WIRE_MAX_KEYS (1u << 20)    /* keys of one batch */
#define EMBKV_WIRE_MAX_TABLES 65536u      /* entries of a TABLE_LIST reply */
#define EMBKV_WIRE_MAX_STAT_GROUPS (EMBKV_WIRE_MAX_TABLES + 1u)
#define EMBKV_WIRE_MAX_SERVERS 4096u      /* servers of a shard map */
#define EMBKV_WIRE_ADDR_MAX 255u          /* bytes of a server address */
#define EMBKV_WIRE_ERRMSG_MAX 255u        /* bytes of an error message */
#define EMBKV_WIRE_MAX_REGION_PARTS EMBKV_MAX_PARTITIONS /* TABLE_REGIONS */
#define EMBKV_WIRE_NAME_LEN_MAX (EMBKV_TABLE_NAME_MAX - 1u) /* name bytes */

/* Bytes of a JSON body (the checkpoint opcodes): one UTF-8 JSON object,
 * "{" first, no NUL byte, no duplicate key, nothing after it. Its fields
 * are checked by whoever acts on it. */
#define EMBKV_WIRE_MAX_JSON (16u << 20)

#define EMBKV_WIRE_NONCE_SIZE 32u
#define EMBKV_WIRE_MAC_SIZE 32u /* HMAC-SHA-256 */

/* A table id no table has: "every table" in a STATS request, "the server
 * itself" as the table id of a STATS group. */
#define EMBKV_WIRE_TABLE_ALL UINT32_MAX

/* Opcodes. A reply's opcode is its request's with EMBKV_WIRE_OP_REPLY set;
 * EMBKV_WIRE_OP_ERROR answers any request. */
enum embkv_wire_op {
	EMBKV_WIRE_OP_HELLO = 0x01,
	EMBKV_WIRE_OP_AUTH = 0x02,
	EMBKV_WIRE_OP_TABLE_CREATE = 0x10,
	EMBKV_WIRE_OP_TABLE_DROP = 0x11,
	EMBKV_WIRE_OP_TABLE_LIST = 0x12,
	EMBKV_WIRE_OP_TABLE_OPEN = 0x13,
	EMBKV_WIRE_OP_TABLE_REGIONS = 0x14, /* RDMA connections only */
	EMBKV_WIRE_OP_TABLE_SET_OPT = 0x15,
	EMBKV_WIRE_OP_PULL = 0x20,
	EMBKV_WIRE_OP_PUSH = 0x21,
	EMBKV_WIRE_OP_ASSIGN = 0x22,
	EMBKV_WIRE_OP_ERASE = 0x23,
	EMBKV_WIRE_OP_HITS = 0x24,
	EMBKV_WIRE_OP_SCAN = 0x25,
	EMBKV_WIRE_OP_ACCUMULATE = 0x26,
	EMBKV_WIRE_OP_MULTI_PULL = 0x27, /* several tables' PULLs (5.25) */
	EMBKV_WIRE_OP_MULTI_PUSH = 0x28, /* several tables' PUSHes (5.25) */
	EMBKV_WIRE_OP_PULL_LAND = 0x29,  /* records RDMA-written (5.26);
					    RDMA connections only */
	EMBKV_WIRE_OP_STATS = 0x30,
	EMBKV_WIRE_OP_SHARD_MAP = 0x31,
	EMBKV_WIRE_OP_CONFIG = 0x32,        /* JSON: the server's settings */
	/* Checkpoints (server/CHECKPOINT.md): JSON bodies, both ways. */
	EMBKV_WIRE_OP_CKPT_PART = 0x40,
	EMBKV_WIRE_OP_CKPT_COMMIT = 0x41,
	EMBKV_WIRE_OP_CKPT_LOAD = 0x42,
	EMBKV_WIRE_OP_CKPT_LIST = 0x43,
	EMBKV_WIRE_OP_CKPT_GET = 0x44,
	EMBKV_WIRE_OP_CKPT_VERIFY = 0x45,
	EMBKV_WIRE_OP_CKPT_DELETE = 0x46,
	/* Partition moves and recovery (server/move.c): JSON bodies, but
	 * MOVE_READ's reply and MOVE_WRITE's request are blobs (a JSON
	 * object, then raw bytes: embkv_wire_blob_check). */
	EMBKV_WIRE_OP_MOVE_PREPARE = 0x48,
	EMBKV_WIRE_OP_MOVE_SNAP = 0x49,
	EMBKV_WIRE_OP_MOVE_READ = 0x4a,
	EMBKV_WIRE_OP_MOVE_WRITE = 0x4b,
	EMBKV_WIRE_OP_MOVE_APPLY = 0x4c,
	EMBKV_WIRE_OP_MOVE_FREEZE = 0x4d,
	EMBKV_WIRE_OP_MOVE_COMMIT = 0x4e,
	EMBKV_WIRE_OP_MOVE_ABORT = 0x4f,
	EMBKV_WIRE_OP_RECOVER = 0x50,
	/* Serving replicas (server/repl.c, server/replica.c): a JSON
	 * request, a blob reply (the rows). */
	EMBKV_WIRE_OP_REPL_SNAP = 0x51,
	EMBKV_WIRE_OP_REPL_PULL = 0x52,
	EMBKV_WIRE_OP_REPLY = 0x80, /* bit */
	EMBKV_WIRE_OP_ERROR = 0xff,
};

struct embkv_wire_hdr {
	uint16_t version;    /* set by decode; encode always writes
				EMBKV_WIRE_VERSION */
	uint8_t opcode;      /* enum embkv_wire_op */
	uint8_t flags;
	uint32_t body_len;
	uint64_t request_id;
	uint64_t epoch;
};

/*
 * Writes the EMBKV_WIRE_HDR_SIZE header bytes of h to buf. Returns
 * EMBKV_WIRE_HDR_SIZE, or 0 (nothing written) when h has an unknown opcode
 * or flag or a body_len over EMBKV_WIRE_MAX_BODY.
 */
size_t embkv_wire_hdr_encode(const struct embkv_wire_hdr *h, uint8_t *buf);

/*
 * Writes id into the request id field of the encoded header at frame (a
 * frame started with embkv_wire_hdr_encode or embkv_wire_frame_start),
 * leaving every other byte alone: a sender numbers a frame it built
 * earlier once it knows the connection it goes out on.
 */
void embkv_wire_hdr_set_request_id(uint8_t *frame, uint64_t id);

/*
 * Decodes the header at buf, checking in this order: len >= header size
 * (else EMBKV_EPROTO), magic (EMBKV_EPROTO), version (EMBKV_EVERSION),
 * opcode (EMBKV_EOPCODE), flags and reserved field (EMBKV_EPROTO), body_len
 * <= EMBKV_WIRE_MAX_BODY (EMBKV_ELIMIT). Whenever len >= header size, *out
 * holds the raw fields even on error, so that a server can answer with the
 * request id; only fields checked before the failing one are trustworthy.
 */
int embkv_wire_hdr_decode(const uint8_t *buf, size_t len,
			  struct embkv_wire_hdr *out);

/*
 * A whole frame (one RDMA RECV, or a header and body read off a socket into
 * one buffer): the header decode above, then len must be exactly
 * header + body_len (else EMBKV_EPROTO). *body points into buf.
 */
int embkv_wire_frame_decode(const uint8_t *buf, size_t len,
			    struct embkv_wire_hdr *out, const uint8_t **body);

bool embkv_wire_op_known(unsigned int op);      /* request, reply or ERROR */
bool embkv_wire_op_is_reply(unsigned int op);   /* reply bit or ERROR */
/* Request opcodes whose header epoch the server checks (PULL, PUSH, ASSIGN,
 * ERASE, SCAN): a mismatch is answered with ERROR EMBKV_ESTALE. */
bool embkv_wire_op_checks_epoch(unsigned int op);
/*
 * The epoch rule, server side: EMBKV_ESTALE when h is a request that
 * checks epochs and h->epoch differs from server_epoch (the server then
 * answers ERROR EMBKV_ESTALE with server_epoch in the reply header), else 0.
 */
int embkv_wire_epoch_check(const struct embkv_wire_hdr *h,
			   uint64_t server_epoch);
/* "PULL", "PULL_REPLY", "ERROR", ...; "UNKNOWN" for an unknown opcode. */
const char *embkv_wire_op_name(unsigned int op);
/* 0 when body is a JSON body as EMBKV_WIRE_MAX_JSON says, else
 * EMBKV_EPROTO (or EMBKV_ELIMIT when too long). The JSON itself is
 * parsed by the receiver. */
int embkv_wire_json_check(const uint8_t *body, size_t len);

/* A blob body: u32 j (little-endian), a JSON body of j bytes (as above)
 * whose integer field "n" is the count of raw bytes that follow, then
 * those bytes. 0, EMBKV_EPROTO or EMBKV_ELIMIT. */
int embkv_wire_blob_check(const uint8_t *body, size_t len);
/* The JSON part of a checked blob, and where its raw bytes start. */
void embkv_wire_blob_split(const uint8_t *body, size_t len,
			   const uint8_t **json, size_t *json_len,
			   const uint8_t **raw, size_t *raw_len);

/* Lowercase hex of b[0..n) into out (2n + 1 bytes, NUL-terminated). */
void embkv_hex_encode(const uint8_t *b, size_t n, char *out);
/* Decodes a string of lowercase hex pairs of at most cap bytes; returns
 * the byte count, or -1 for odd length, a bad digit or too many bytes. */
int embkv_hex_decode(const char *s, uint8_t *out, size_t cap);

/*
 * Runs the body decoder that op's frames use, discarding the result: 0 when
 * the body is well formed for op, else the decoder's error (EMBKV_EOPCODE
 * for an unknown op).
 */
int embkv_wire_body_validate(unsigned int op, const uint8_t *body,
			     size_t len);

/*
 * Largest batch (keys) whose PULL reply and PUSH/ASSIGN request bodies fit
 * EMBKV_WIRE_MAX_BODY at this dim, at most EMBKV_WIRE_MAX_KEYS; 0 when dim
 * is 0 or over EMBKV_MAX_DIM. Clients split batches with it.
 */
uint32_t embkv_wire_max_rows(uint32_t dim);

/* Growable byte buffer for building frames --------------------------------- */

/*
 * data is malloc'ed (so 8-byte aligned); pointers into it are invalidated
 * by any call that grows it. One owner at a time; no locking.
 */
struct embkv_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void embkv_buf_init(struct embkv_buf *b);
/* Makes room for extra more bytes past len: 0, -ENOMEM or -EOVERFLOW. */
int embkv_buf_reserve(struct embkv_buf *b, size_t extra);
/* Grows len by n and points *out at those n (uninitialized) bytes. */
int embkv_buf_extend(struct embkv_buf *b, size_t n, uint8_t **out);
void embkv_buf_reset(struct embkv_buf *b); /* len = 0, keeps memory */
void embkv_buf_destroy(struct embkv_buf *b); /* frees; NULL is a no-op */

/*
 * Appends a frame: h encoded (h->body_len decides the body size) then
 * h->body_len bytes for the body, at *body, for a body encoder to fill.
 * The header is 32 bytes, so the body is 8-byte aligned whenever b->len
 * was a multiple of 8 on entry (an empty or reset buffer always is). *body
 * is invalidated by the next call that grows b. -EINVAL when h does not
 * encode (see embkv_wire_hdr_encode); -ENOMEM.
 */
int embkv_wire_frame_start(struct embkv_buf *b, const struct embkv_wire_hdr *h,
			   uint8_t **body);

/* Strings ------------------------------------------------------------------ */

/* Bytes inside a body; not NUL-terminated (print with "%.*s"). */
struct embkv_wire_str {
	const char *ptr;
	uint32_t len;
};

/* Decode-side cursor over a validated variable-length section. Private:
 * filled by a decoder, advanced by the matching _next(). */
struct embkv_wire_cursor {
	const uint8_t *p;
	const uint8_t *end;
	uint32_t left;       /* items (entries, groups, servers) left */
	uint32_t inner_left; /* stats: counters left in the current group */
	uint32_t group;      /* stats: table id of the current group */
};

/* Messages ----------------------------------------------------------------- */
/*
 * For each body: _size() computes the body length of a valid message,
 * _encode() writes exactly that many bytes (cap must be at least that),
 * _decode() parses and fully validates. _prepare() (array-carrying bodies)
 * writes the fixed fields and returns where the caller writes the arrays
 * in place, avoiding a copy; the caller must fill them all.
 */

/* HELLO request and reply: a 32-byte nonce (client's, then server's). */
struct embkv_wire_hello {
	uint8_t nonce[EMBKV_WIRE_NONCE_SIZE];
};
#define EMBKV_WIRE_HELLO_SIZE EMBKV_WIRE_NONCE_SIZE
int embkv_wire_hello_encode(const struct embkv_wire_hello *m, uint8_t *body,
			    size_t cap);
int embkv_wire_hello_decode(const uint8_t *body, size_t len,
			    struct embkv_wire_hello *out);

/* AUTH request (client's MAC) and reply (server's MAC). */
struct embkv_wire_auth {
	uint8_t mac[EMBKV_WIRE_MAC_SIZE];
};
#define EMBKV_WIRE_AUTH_SIZE EMBKV_WIRE_MAC_SIZE
int embkv_wire_auth_encode(const struct embkv_wire_auth *m, uint8_t *body,
			   size_t cap);
int embkv_wire_auth_decode(const uint8_t *body, size_t len,
			   struct embkv_wire_auth *out);

/* Empty body (TABLE_LIST request, TABLE_DROP reply): len must be 0. */
int embkv_wire_empty_decode(const uint8_t *body, size_t len);

/*
 * A table's identity on one server: its u32 id (a per-server number,
 * never reused within a server run) and the nonzero u64 uid the table got
 * at creation (never reused at all, across restarts too). Every frame
 * that names a table carries both; the server answers EMBKV_ENOTABLE when
 * they do not name one of its tables, so a handle to a dropped or
 * re-created table never reaches another table's rows.
 *
 * The table reference body (TABLE_CREATE reply; STATS, SHARD_MAP and
 * TABLE_REGIONS requests): u32 table id, u32 reserved 0, u64 uid. The uid
 * is 0 exactly when the id is EMBKV_WIRE_TABLE_ALL (STATS of every table);
 * anything else is EMBKV_EPROTO to decode and -EINVAL to encode.
 */
struct embkv_wire_table_ref {
	uint32_t table_id;
	uint64_t uid;
};
enum embkv_wire_table_ref_off {
	EMBKV_WIRE_TABLE_REF_ID = 0,       /* u32 */
	EMBKV_WIRE_TABLE_REF_RESERVED = 4, /* u32 0 */
	EMBKV_WIRE_TABLE_REF_UID = 8,      /* u64 */
	EMBKV_WIRE_TABLE_REF_SIZE = 16,
};
int embkv_wire_table_ref_encode(const struct embkv_wire_table_ref *m,
				uint8_t *body, size_t cap);
int embkv_wire_table_ref_decode(const uint8_t *body, size_t len,
				struct embkv_wire_table_ref *out);

/* A table name (TABLE_DROP and TABLE_OPEN requests): u16 length and the
 * bytes, 1 to EMBKV_WIRE_NAME_LEN_MAX of them, no NUL. Encoding a name with
 * no NUL in its first EMBKV_TABLE_NAME_MAX bytes is EMBKV_ELIMIT. */
int embkv_wire_name_size(const char *name, size_t *len);
int embkv_wire_name_encode(const char *name, uint8_t *body, size_t cap);
int embkv_wire_name_decode(const uint8_t *body, size_t len,
			   char name[EMBKV_TABLE_NAME_MAX]);

/*
 * TABLE_CREATE request: struct embkv_table_attr field by field. Decoding
 * checks the name (as above) and 1 <= dim <= EMBKV_MAX_DIM (0 is
 * EMBKV_EPROTO, over is EMBKV_ELIMIT) and nothing else: the receiver must
 * run embkv_table_attr_check() before using the result.
 */
enum embkv_wire_attr_off {
	EMBKV_WIRE_ATTR_DIM = 0,             /* u32 */
	EMBKV_WIRE_ATTR_DTYPE = 4,           /* u32 */
	EMBKV_WIRE_ATTR_PARTITIONS = 8,      /* u32 */
	EMBKV_WIRE_ATTR_ADMIT_AFTER = 12,    /* u32 */
	EMBKV_WIRE_ATTR_CAPACITY = 16,       /* u64 */
	EMBKV_WIRE_ATTR_OPT_TYPE = 24,       /* u32 */
	EMBKV_WIRE_ATTR_OPT_LR = 28,         /* f32 x 9: lr, beta1, beta2, eps, */
	EMBKV_WIRE_ATTR_OPT_BETA1 = 32,      /* initial_accum, l1, l2, ftrl_beta */
	EMBKV_WIRE_ATTR_OPT_BETA2 = 36,
	EMBKV_WIRE_ATTR_OPT_EPS = 40,
	EMBKV_WIRE_ATTR_OPT_INIT_ACCUM = 44,
	EMBKV_WIRE_ATTR_OPT_L1 = 48,
	EMBKV_WIRE_ATTR_OPT_L2 = 52,
	EMBKV_WIRE_ATTR_OPT_FTRL_BETA = 56,
	EMBKV_WIRE_ATTR_INIT_TYPE = 60,      /* u32 */
	EMBKV_WIRE_ATTR_INIT_A = 64,         /* f32 */
	EMBKV_WIRE_ATTR_INIT_B = 68,         /* f32 */
	EMBKV_WIRE_ATTR_INIT_SEED = 72,      /* u64 */
	EMBKV_WIRE_ATTR_LFU_DECAY = 80,      /* u32 */
	EMBKV_WIRE_ATTR_FLAGS = 84,          /* u32 */
	EMBKV_WIRE_ATTR_HASH_SEED = 88,      /* u64 */
	EMBKV_WIRE_ATTR_INDEX_LOAD = 96,     /* f32 */
	EMBKV_WIRE_ATTR_RESERVED = 100,      /* u32, 0 */
	EMBKV_WIRE_ATTR_NAME = 104,          /* u16 length, then the bytes */
};
int embkv_wire_table_attr_size(const struct embkv_table_attr *a, size_t *len);
int embkv_wire_table_attr_encode(const struct embkv_table_attr *a,
				 uint8_t *body, size_t cap);
int embkv_wire_table_attr_decode(const uint8_t *body, size_t len,
				 struct embkv_table_attr *out);

/* TABLE_OPEN reply: u32 table id, u32 reserved 0, u64 uid (nonzero,
 * else EMBKV_EPROTO), then the attr encoding above at offset
 * EMBKV_WIRE_TABLE_INFO_ATTR. */
enum embkv_wire_table_info_off {
	EMBKV_WIRE_TABLE_INFO_ID = 0,       /* u32 */
	EMBKV_WIRE_TABLE_INFO_RESERVED = 4, /* u32 0 */
	EMBKV_WIRE_TABLE_INFO_UID = 8,      /* u64 */
	EMBKV_WIRE_TABLE_INFO_ATTR = 16,    /* attr, as in TABLE_CREATE */
};
struct embkv_wire_table_info {
	uint32_t table_id;
	uint64_t uid;
	struct embkv_table_attr attr;
};
int embkv_wire_table_info_size(const struct embkv_wire_table_info *m,
			       size_t *len);
int embkv_wire_table_info_encode(const struct embkv_wire_table_info *m,
				 uint8_t *body, size_t cap);
int embkv_wire_table_info_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_table_info *out);

/*
 * TABLE_SET_OPT request: a table's optimizer hyper-parameters at run time.
 * The table reference (u32 id, u32 reserved 0, u64 uid, nonzero; as in
 * 5.3) then struct embkv_opt_attr field by field: u32 type, f32 lr,
 * beta1, beta2, eps, initial_accum, l1, l2, ftrl_beta. Decoding checks the
 * reference and the length only; the server checks the values (the type
 * must be the table's, embkv_optim_check must accept them). Reply: empty.
 */
struct embkv_wire_set_opt {
	uint32_t table_id;
	uint64_t uid;
	struct embkv_opt_attr opt;
};
enum embkv_wire_set_opt_off {
	EMBKV_WIRE_SET_OPT_ID = 0,          /* u32 */
	EMBKV_WIRE_SET_OPT_RESERVED = 4,    /* u32 0 */
	EMBKV_WIRE_SET_OPT_UID = 8,         /* u64 */
	EMBKV_WIRE_SET_OPT_TYPE = 16,       /* u32 */
	EMBKV_WIRE_SET_OPT_LR = 20,         /* f32 x 8: lr, beta1, beta2, eps, */
	EMBKV_WIRE_SET_OPT_SIZE = 52,       /* initial_accum, l1, l2, ftrl_beta */
};
int embkv_wire_set_opt_encode(const struct embkv_wire_set_opt *m,
			      uint8_t *body, size_t cap);
int embkv_wire_set_opt_decode(const uint8_t *body, size_t len,
			      struct embkv_wire_set_opt *out);

/* TABLE_LIST reply: u32 count, then per table u32 id, u32 dim, u64 uid
 * (nonzero), name. */
struct embkv_wire_table_entry {
	uint32_t table_id;
	uint32_t dim;
	uint64_t uid;
	char name[EMBKV_TABLE_NAME_MAX];
};
struct embkv_wire_table_list {
	uint32_t count;
	struct embkv_wire_cursor cur;
};
int embkv_wire_table_list_size(const struct embkv_wire_table_entry *e,
			       uint32_t n, size_t *len);
int embkv_wire_table_list_encode(const struct embkv_wire_table_entry *e,
				 uint32_t n, uint8_t *body, size_t cap);
int embkv_wire_table_list_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_table_list *out);
/* Next entry of a decoded list; false when none is left. */
bool embkv_wire_table_list_next(struct embkv_wire_table_list *l,
				struct embkv_wire_table_entry *out);

/* PULL request. */
enum embkv_wire_pull_mode {
	EMBKV_WIRE_PULL_TRAIN = 0, /* find or insert */
	EMBKV_WIRE_PULL_INFER = 1, /* find; missing rows read as default */
	EMBKV_WIRE_PULL_MODE_COUNT,
};
enum embkv_wire_pull_req_off {
	EMBKV_WIRE_PULL_REQ_TABLE = 0,    /* u32 */
	EMBKV_WIRE_PULL_REQ_DIM = 4,      /* u32, the client's idea of dim */
	EMBKV_WIRE_PULL_REQ_N = 8,        /* u32 */
	EMBKV_WIRE_PULL_REQ_MODE = 12,    /* u8 */
	EMBKV_WIRE_PULL_REQ_RESERVED = 13, /* 3 bytes of 0 */
	EMBKV_WIRE_PULL_REQ_UID = 16,     /* u64, nonzero */
	EMBKV_WIRE_PULL_REQ_KEYS = 24,    /* u64[n] */
};
/* For every request that names a table (pull, rows, erase, hits): uid is
 * the table's (see struct embkv_wire_table_ref); 0 is -EINVAL to encode
 * and EMBKV_EPROTO to decode. */
struct embkv_wire_pull_req {
	uint32_t table_id;
	uint64_t uid;
	uint32_t dim;
	uint32_t n;
	uint8_t mode;         /* enum embkv_wire_pull_mode */
	const uint64_t *keys; /* n keys */
};
int embkv_wire_pull_req_size(const struct embkv_wire_pull_req *m,
			     size_t *len);
/*
 * The _max_rows functions below answer "how many rows fit": the largest n
 * whose body (the matching _size with that n) is at most max_body bytes
 * and within the wire's limits (EMBKV_WIRE_MAX_KEYS, EMBKV_WIRE_MAX_BODY),
 * so n + 1 does not fit. 0 when not even one row fits, or for a dim that
 * _size rejects. Senders cut batches into frames with them.
 */
uint32_t embkv_wire_pull_req_max_rows(size_t max_body);
int embkv_wire_pull_req_encode(const struct embkv_wire_pull_req *m,
			       uint8_t *body, size_t cap);
/* m->keys is ignored; *keys gets the n slots to fill. */
int embkv_wire_pull_req_prepare(const struct embkv_wire_pull_req *m,
				uint8_t *body, size_t cap, uint64_t **keys);
int embkv_wire_pull_req_decode(const uint8_t *body, size_t len,
			       struct embkv_wire_pull_req *out);

/* PULL reply: u32 n, u16 dim, u8 dtype (enum embkv_dtype: the table's
 * storage type), u8 reserved 0, u8 found[n] (0 or 1), zero padding to a
 * multiple of 8, vals[n * dim] of dtype (rows as stored: a bf16 row of
 * dim 64 is 128 bytes). An fp32 reply is byte for byte the one of
 * protocol version 3 before 16-bit storage (dtype 0 in the upper half of
 * what was a u32 dim). The _size, _max_rows and _prepare functions
 * without _dt are fp32's. */
enum embkv_wire_pull_reply_off {
	EMBKV_WIRE_PULL_REPLY_N = 0,     /* u32 */
	EMBKV_WIRE_PULL_REPLY_DIM = 4,   /* u16 */
	EMBKV_WIRE_PULL_REPLY_DTYPE = 6, /* u8 */
	EMBKV_WIRE_PULL_REPLY_RESERVED = 7, /* u8 0 */
	EMBKV_WIRE_PULL_REPLY_FOUND = 8, /* u8[n] */
};
struct embkv_wire_pull_reply {
	uint32_t n;
	uint32_t dim;
	const uint8_t *found; /* n bytes, each 0 or 1 */
	const void *vals;     /* n rows of dim elements of dtype */
	uint32_t dtype;       /* enum embkv_dtype */
};
int embkv_wire_pull_reply_size(uint32_t n, uint32_t dim, size_t *len);
int embkv_wire_pull_reply_size_dt(uint32_t n, uint32_t dim, uint32_t dtype,
				  size_t *len);
uint32_t embkv_wire_pull_reply_max_rows(size_t max_body, uint32_t dim);
uint32_t embkv_wire_pull_reply_max_rows_dt(size_t max_body, uint32_t dim,
					   uint32_t dtype);
int embkv_wire_pull_reply_encode(const struct embkv_wire_pull_reply *m,
				 uint8_t *body, size_t cap);
int embkv_wire_pull_reply_prepare(uint32_t n, uint32_t dim, uint8_t *body,
				  size_t cap, uint8_t **found, float **vals);
int embkv_wire_pull_reply_prepare_dt(uint32_t n, uint32_t dim, uint32_t dtype,
				     uint8_t *body, size_t cap,
				     uint8_t **found, void **vals);
int embkv_wire_pull_reply_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_pull_reply *out);

/*
 * PULL_LAND (net/PROTOCOL.md 5.26, RDMA connections only): a PULL whose
 * rows the server RDMA-WRITEs as whole records (checksum, key, version,
 * payload as stored: hashing/record.h) into memory the client registered,
 * key j's at addr + j * stride, before it replies; the reply carries a
 * state per key. Request: u64 addr, u32 rkey, u32 stride, then a PULL
 * request body (5.8). stride is a multiple of 8 in [32,
 * EMBKV_WIRE_LAND_MAX_STRIDE]; the server checks it against the table's
 * records. Reply: as a PULL reply (5.9) without rows, state[n] in place of
 * found[n].
 */
#define EMBKV_WIRE_LAND_MAX_STRIDE (1u << 20)
enum embkv_wire_land_req_off {
	EMBKV_WIRE_LAND_REQ_ADDR = 0,     /* u64 */
	EMBKV_WIRE_LAND_REQ_RKEY = 8,     /* u32 */
	EMBKV_WIRE_LAND_REQ_STRIDE = 12,  /* u32 */
	EMBKV_WIRE_LAND_REQ_PULL = 16,    /* a PULL request body */
};
enum embkv_wire_land_state {
	EMBKV_WIRE_LAND_NONE = 0,     /* no record (an infer-mode miss: the
					 caller's default); slot zeroed */
	EMBKV_WIRE_LAND_FOUND = 1,    /* written: the key was stored */
	EMBKV_WIRE_LAND_INSERTED = 2, /* written: inserted by this pull */
	EMBKV_WIRE_LAND_INIT = 3,     /* written: a train-mode insert the
					 table refused (admission, full):
					 the initializer's row, version 0,
					 not stored */
	EMBKV_WIRE_LAND_STATE_COUNT,
};
struct embkv_wire_land_req {
	uint64_t addr;
	uint32_t rkey;
	uint32_t stride;
	struct embkv_wire_pull_req pull;
};
int embkv_wire_land_req_size(const struct embkv_wire_land_req *m,
			     size_t *len);
uint32_t embkv_wire_land_req_max_rows(size_t max_body);
/* m->pull.keys is ignored; *keys gets the n slots to fill. */
int embkv_wire_land_req_prepare(const struct embkv_wire_land_req *m,
				uint8_t *body, size_t cap, uint64_t **keys);
int embkv_wire_land_req_decode(const uint8_t *body, size_t len,
			       struct embkv_wire_land_req *out);
/* Reply: u32 n, u16 dim, u8 dtype, u8 reserved 0, u8 state[n] (enum
 * embkv_wire_land_state), zero padding to a multiple of 8. */
struct embkv_wire_land_reply {
	uint32_t n;
	uint32_t dim;
	uint32_t dtype;
	const uint8_t *state;
};
int embkv_wire_land_reply_size(uint32_t n, size_t *len);
int embkv_wire_land_reply_prepare(uint32_t n, uint32_t dim, uint32_t dtype,
				  uint8_t *body, size_t cap, uint8_t **state);
int embkv_wire_land_reply_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_land_reply *out);
/* Bytes of a record slot for a table of dim and dtype: 24 + its payload,
 * rounded up to 8 (the least stride a PULL_LAND may ask for); 0 for a
 * bad dim or dtype. */
uint32_t embkv_wire_land_min_stride(uint32_t dim, uint32_t dtype);

/* PUSH (vals are gradients) and ASSIGN (vals are values) requests. */
enum embkv_wire_rows_req_off {
	EMBKV_WIRE_ROWS_REQ_TABLE = 0,    /* u32 */
	EMBKV_WIRE_ROWS_REQ_DIM = 4,      /* u32 */
	EMBKV_WIRE_ROWS_REQ_N = 8,        /* u32 */
	EMBKV_WIRE_ROWS_REQ_RESERVED = 12, /* u32 0 */
	EMBKV_WIRE_ROWS_REQ_UID = 16,     /* u64, nonzero */
	EMBKV_WIRE_ROWS_REQ_KEYS = 24,    /* u64[n], then f32[n * dim] */
};
struct embkv_wire_rows_req {
	uint32_t table_id;
	uint64_t uid;
	uint32_t dim;
	uint32_t n;
	const uint64_t *keys; /* n keys */
	const float *vals;    /* n * dim floats, row i at i * dim */
};
int embkv_wire_rows_req_size(const struct embkv_wire_rows_req *m,
			     size_t *len);
uint32_t embkv_wire_rows_req_max_rows(size_t max_body, uint32_t dim);
int embkv_wire_rows_req_encode(const struct embkv_wire_rows_req *m,
			       uint8_t *body, size_t cap);
int embkv_wire_rows_req_prepare(const struct embkv_wire_rows_req *m,
				uint8_t *body, size_t cap, uint64_t **keys,
				float **vals);
int embkv_wire_rows_req_decode(const uint8_t *body, size_t len,
			       struct embkv_wire_rows_req *out);

/*
 * MULTI_PULL and MULTI_PUSH (net/PROTOCOL.md 5.25): several tables' PULL
 * or PUSH bodies for one server in one frame, answered by one frame.
 * Request and reply bodies alike: u32 count (1 to
 * EMBKV_WIRE_MAX_SECTIONS), u32 reserved 0, then count sections, each
 * u32 len, i32 status, u64 epoch, len bytes of section body, zeros up to
 * a multiple of 8. A request section's body is a whole PULL request (5.8)
 * or PUSH request (5.10), its status 0 and its epoch the table's map
 * epoch (checked per section, like a PULL's header epoch: the frame
 * header's epoch is not checked). A reply section answers the request
 * section of the same index: status 0 and a PULL reply (5.9) or counts
 * (5.12), or a negative status and an error message (0 to
 * EMBKV_WIRE_ERRMSG_MAX bytes, no NUL); its epoch is the server's.
 * Decoding validates every section's body with its own decoder, so a
 * decoded body needs no further check of its layout.
 */
#define EMBKV_WIRE_MAX_SECTIONS 4096u
enum embkv_wire_multi_off {
	EMBKV_WIRE_MULTI_COUNT = 0,      /* u32 */
	EMBKV_WIRE_MULTI_RESERVED = 4,   /* u32 0 */
	EMBKV_WIRE_MULTI_SECTIONS = 8,   /* sections */
};
enum embkv_wire_multi_sec_off {
	EMBKV_WIRE_MULTI_SEC_LEN = 0,    /* u32 */
	EMBKV_WIRE_MULTI_SEC_STATUS = 4, /* i32 */
	EMBKV_WIRE_MULTI_SEC_EPOCH = 8,  /* u64 */
	EMBKV_WIRE_MULTI_SEC_BODY = 16,  /* len bytes, padded to 8 */
};
struct embkv_wire_multi_sec {
	uint32_t len;
	int32_t status;
	uint64_t epoch;
	const uint8_t *body;  /* decode: len bytes inside the frame body */
};
struct embkv_wire_multi {
	uint32_t count;
	struct embkv_wire_cursor cur;
};
/* Bytes of one section whose body has len bytes (header and padding). */
uint64_t embkv_wire_multi_sec_bytes(uint32_t len);
/* The 8 fixed bytes at body. 0, -EINVAL (count 0 or over the limit) or
 * -ENOSPC. */
int embkv_wire_multi_encode_head(uint32_t count, uint8_t *body, size_t cap);
/* One section at at (8-byte aligned, cap bytes from there): header and
 * padding written, *sec_body gets the s->len bytes to fill (s->body is
 * ignored). Returns the section's bytes, or -EINVAL / -ENOSPC. */
int64_t embkv_wire_multi_sec_prepare(const struct embkv_wire_multi_sec *s,
				     uint8_t *at, size_t cap,
				     uint8_t **sec_body);
/* A MULTI_PULL or MULTI_PUSH request or reply body (op says which, the
 * reply bit included), every section checked. */
int embkv_wire_multi_decode(unsigned int op, const uint8_t *body, size_t len,
			    struct embkv_wire_multi *out);
/* Next section of a decoded body, in order; false at the end. */
bool embkv_wire_multi_next(struct embkv_wire_multi *m,
			   struct embkv_wire_multi_sec *out);

/* ERASE request: u32 table id, u32 n, u64 uid, u64 keys[n]. */
enum embkv_wire_erase_req_off {
	EMBKV_WIRE_ERASE_REQ_TABLE = 0, /* u32 */
	EMBKV_WIRE_ERASE_REQ_N = 4,     /* u32 */
	EMBKV_WIRE_ERASE_REQ_UID = 8,   /* u64, nonzero */
	EMBKV_WIRE_ERASE_REQ_KEYS = 16, /* u64[n] */
};
struct embkv_wire_erase_req {
	uint32_t table_id;
	uint64_t uid;
	uint32_t n;
	const uint64_t *keys;
};
int embkv_wire_erase_req_size(const struct embkv_wire_erase_req *m,
			      size_t *len);
uint32_t embkv_wire_erase_req_max_rows(size_t max_body);
int embkv_wire_erase_req_encode(const struct embkv_wire_erase_req *m,
				uint8_t *body, size_t cap);
int embkv_wire_erase_req_prepare(const struct embkv_wire_erase_req *m,
				 uint8_t *body, size_t cap, uint64_t **keys);
int embkv_wire_erase_req_decode(const uint8_t *body, size_t len,
				struct embkv_wire_erase_req *out);

/*
 * HITS request (net/RDMA.md section 4): u32 table id, u32 n, u64 uid,
 * u64 keys[n], u32 counts[n]. One-sided hits a client counted, for the
 * server's LFU. Not epoch-checked; answered with a count reply (done:
 * keys found, skipped: keys the server does not store).
 */
enum embkv_wire_hits_off {
	EMBKV_WIRE_HITS_TABLE = 0, /* u32 */
	EMBKV_WIRE_HITS_N = 4,     /* u32 */
	EMBKV_WIRE_HITS_UID = 8,   /* u64, nonzero */
	EMBKV_WIRE_HITS_KEYS = 16, /* u64[n], then u32[n] counts */
};
struct embkv_wire_hits {
	uint32_t table_id;
	uint64_t uid;
	uint32_t n;
	const uint64_t *keys;   /* n keys */
	const uint32_t *counts; /* n counts, counts[i] for keys[i] */
};
int embkv_wire_hits_size(const struct embkv_wire_hits *m, size_t *len);
int embkv_wire_hits_encode(const struct embkv_wire_hits *m, uint8_t *body,
			   size_t cap);
/* m->keys and m->counts are ignored; *keys and *counts get the n slots. */
int embkv_wire_hits_prepare(const struct embkv_wire_hits *m, uint8_t *body,
			    size_t cap, uint64_t **keys, uint32_t **counts);
int embkv_wire_hits_decode(const uint8_t *body, size_t len,
			   struct embkv_wire_hits *out);

/*
 * TABLE_REGIONS reply (net/RDMA.md section 3; the request is a table
 * reference): u32 table id, u32 count, u64 uid (nonzero, else
 * EMBKV_EPROTO), u32 stride (record bytes), u32 reserved 0, then count
 * 48-byte partition entries: u32 part, u32 index_rkey, u64 index_addr,
 * u64 nbuckets, u64 arena_addr, u64 capacity (rows; row r at arena_addr +
 * r * stride), u32 arena_rkey, u32 reserved 0. Every partition is
 * registered on its own, so each entry carries its own rkeys. Decoding
 * checks count <= EMBKV_WIRE_MAX_REGION_PARTS (EMBKV_ELIMIT), reserved
 * fields, part < EMBKV_MAX_PARTITIONS, stride a nonzero multiple of 8,
 * nbuckets nonzero, and that neither region end overflows 64 bits
 * (EMBKV_EPROTO).
 */
enum embkv_wire_regions_off {
	EMBKV_WIRE_REGIONS_TABLE = 0,      /* u32 */
	EMBKV_WIRE_REGIONS_COUNT = 4,      /* u32 */
	EMBKV_WIRE_REGIONS_UID = 8,        /* u64, nonzero */
	EMBKV_WIRE_REGIONS_STRIDE = 16,    /* u32 */
	EMBKV_WIRE_REGIONS_RESERVED = 20,  /* u32 0 */
	EMBKV_WIRE_REGIONS_PARTS = 24,     /* entries */
};
enum embkv_wire_region_part_off {
	EMBKV_WIRE_REGION_PART = 0,        /* u32 */
	EMBKV_WIRE_REGION_INDEX_RKEY = 4,  /* u32 */
	EMBKV_WIRE_REGION_INDEX_ADDR = 8,  /* u64 */
	EMBKV_WIRE_REGION_NBUCKETS = 16,   /* u64 (64-byte buckets) */
	EMBKV_WIRE_REGION_ARENA_ADDR = 24, /* u64 */
	EMBKV_WIRE_REGION_CAPACITY = 32,   /* u64 rows */
	EMBKV_WIRE_REGION_ARENA_RKEY = 40, /* u32 */
	EMBKV_WIRE_REGION_RESERVED = 44,   /* u32 0 */
	EMBKV_WIRE_REGION_SIZE = 48,
};
struct embkv_wire_region_part {
	uint32_t part;
	uint32_t index_rkey;
	uint32_t arena_rkey;
	uint64_t index_addr;
	uint64_t nbuckets;
	uint64_t arena_addr;
	uint64_t capacity;
};
struct embkv_wire_table_regions {
	uint32_t table_id;
	uint64_t uid;
	uint32_t count;
	uint32_t stride;
	const struct embkv_wire_region_part *parts; /* encode: count entries */
	struct embkv_wire_cursor cur;              /* decode: see _next */
};
int embkv_wire_table_regions_size(const struct embkv_wire_table_regions *m,
				  size_t *len);
int embkv_wire_table_regions_encode(const struct embkv_wire_table_regions *m,
				    uint8_t *body, size_t cap);
int embkv_wire_table_regions_decode(const uint8_t *body, size_t len,
				    struct embkv_wire_table_regions *out);
/* Next partition of a decoded reply, in body order; false at the end. */
bool embkv_wire_table_regions_next(struct embkv_wire_table_regions *m,
				   struct embkv_wire_region_part *out);

/*
 * SCAN request (net/PROTOCOL.md, "SCAN"): one page of one partition's live
 * rows, for export. u32 table id, u32 partition, u64 uid (nonzero), u64
 * cursor (a row id of the partition: 0 to start, then the reply's next),
 * u32 max rows (1 to EMBKV_WIRE_MAX_KEYS), u32 reserved 0. Epoch-checked.
 */
enum embkv_wire_scan_req_off {
	EMBKV_WIRE_SCAN_REQ_TABLE = 0,     /* u32 */
	EMBKV_WIRE_SCAN_REQ_PART = 4,      /* u32 */
	EMBKV_WIRE_SCAN_REQ_UID = 8,       /* u64, nonzero */
	EMBKV_WIRE_SCAN_REQ_CURSOR = 16,   /* u64 */
	EMBKV_WIRE_SCAN_REQ_MAX = 24,      /* u32 */
	EMBKV_WIRE_SCAN_REQ_RESERVED = 28, /* u32 0 */
	EMBKV_WIRE_SCAN_REQ_SIZE = 32,
};
struct embkv_wire_scan_req {
	uint32_t table_id;
	uint32_t part;
	uint64_t uid;
	uint64_t cursor;
	uint32_t max;
};
int embkv_wire_scan_req_encode(const struct embkv_wire_scan_req *m,
			       uint8_t *body, size_t cap);
int embkv_wire_scan_req_decode(const uint8_t *body, size_t len,
			       struct embkv_wire_scan_req *out);

/*
 * SCAN reply: u64 next cursor (EMBKV_SCAN_END: the partition is done), u32
 * n, u32 dim, u32 dtype (enum embkv_dtype), u32 reserved 0, u64 keys[n],
 * then n payload rows of dim elements of dtype (no optimizer state). n may
 * be 0 with a next cursor that is not the end (the server bounds the rows
 * it visits per page); only EMBKV_SCAN_END ends a partition. Decoding
 * checks dim, a known dtype, n <= EMBKV_WIRE_MAX_KEYS and the exact length.
 */
enum embkv_wire_scan_reply_off {
	EMBKV_WIRE_SCAN_REPLY_NEXT = 0,      /* u64 */
	EMBKV_WIRE_SCAN_REPLY_N = 8,         /* u32 */
	EMBKV_WIRE_SCAN_REPLY_DIM = 12,      /* u32 */
	EMBKV_WIRE_SCAN_REPLY_DTYPE = 16,    /* u32 */
	EMBKV_WIRE_SCAN_REPLY_RESERVED = 20, /* u32 0 */
	EMBKV_WIRE_SCAN_REPLY_KEYS = 24,     /* u64[n], then the rows */
};
struct embkv_wire_scan_reply {
	uint64_t next;
	uint32_t n;
	uint32_t dim;
	uint32_t dtype;
	const uint64_t *keys; /* n keys */
	const void *vals;     /* n rows of dim x embkv_dtype_size(dtype) */
};
int embkv_wire_scan_reply_size(uint32_t n, uint32_t dim, uint32_t dtype,
			       size_t *len);
uint32_t embkv_wire_scan_reply_max_rows(size_t max_body, uint32_t dim,
					uint32_t dtype);
/* Writes the fixed fields; *keys and *vals get the n slots to fill. */
int embkv_wire_scan_reply_prepare(uint64_t next, uint32_t n, uint32_t dim,
				  uint32_t dtype, uint8_t *body, size_t cap,
				  uint64_t **keys, void **vals);
int embkv_wire_scan_reply_encode(const struct embkv_wire_scan_reply *m,
				 uint8_t *body, size_t cap);
int embkv_wire_scan_reply_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_scan_reply *out);

/* PUSH, ASSIGN and ERASE replies. done: keys applied / stored / erased;
 * skipped: gradients dropped (row evicted or not admitted) / values not
 * stored (table full, not admitted) / keys not found. */
struct embkv_wire_count_reply {
	uint32_t done;
	uint32_t skipped;
};
#define EMBKV_WIRE_COUNT_REPLY_SIZE 8u
int embkv_wire_count_reply_encode(const struct embkv_wire_count_reply *m,
				  uint8_t *body, size_t cap);
int embkv_wire_count_reply_decode(const uint8_t *body, size_t len,
				  struct embkv_wire_count_reply *out);

/*
 * STATS reply: u32 group count, then per group u32 table id
 * (EMBKV_WIRE_TABLE_ALL: the server itself), u16 counter count, and that
 * many packed (u16 id, u64 value) pairs. Ids are never reused; a reader
 * skips ids it does not know. Id 0 is invalid.
 */
enum embkv_wire_stat_id {
	EMBKV_WIRE_STAT_ROWS = 1,          /* rows stored */
	EMBKV_WIRE_STAT_CAPACITY = 2,      /* row capacity */
	EMBKV_WIRE_STAT_MEM_BYTES = 3,     /* arena + index + private state */
	EMBKV_WIRE_STAT_PULLS = 4,         /* pull requests served */
	EMBKV_WIRE_STAT_PULL_KEYS = 5,
	EMBKV_WIRE_STAT_PULL_MISSES = 6,   /* keys not found */
	EMBKV_WIRE_STAT_PUSHES = 7,
	EMBKV_WIRE_STAT_PUSH_KEYS = 8,
	EMBKV_WIRE_STAT_GRADS_DROPPED = 9, /* row evicted since its pull */
	EMBKV_WIRE_STAT_INSERTS = 10,
	EMBKV_WIRE_STAT_EVICTIONS = 11,
	EMBKV_WIRE_STAT_ADMIT_REJECTS = 12,
	EMBKV_WIRE_STAT_ASSIGN_KEYS = 13,
	EMBKV_WIRE_STAT_ERASE_KEYS = 14,
	EMBKV_WIRE_STAT_BYTES_IN = 15,
	EMBKV_WIRE_STAT_BYTES_OUT = 16,
	EMBKV_WIRE_STAT_CONNECTIONS = 17,  /* open connections */
	EMBKV_WIRE_STAT_ERRORS = 18,       /* ERROR replies sent */
	EMBKV_WIRE_STAT_STALE_EPOCH = 19,  /* EMBKV_ESTALE replies sent */
	EMBKV_WIRE_STAT_AUTH_FAILURES = 20,
	EMBKV_WIRE_STAT_UPTIME_S = 21,       /* seconds since the server started */
	EMBKV_WIRE_STAT_REQUESTS = 22,       /* frames handled */
	EMBKV_WIRE_STAT_PULLS_PER_S = 23,    /* over the last few seconds */
	EMBKV_WIRE_STAT_PUSHES_PER_S = 24,
	EMBKV_WIRE_STAT_PULL_KEYS_PER_S = 25,
	EMBKV_WIRE_STAT_PUSH_KEYS_PER_S = 26,
	EMBKV_WIRE_STAT_PULL_P50_US = 27,    /* pull handling latency, us */
	EMBKV_WIRE_STAT_PULL_P99_US = 28,
	EMBKV_WIRE_STAT_PUSH_P50_US = 29,    /* push handling latency, us */
	EMBKV_WIRE_STAT_PUSH_P99_US = 30,
	EMBKV_WIRE_STAT_HITS = 31,           /* keys found by owner lookups */
	EMBKV_WIRE_STAT_TABLES = 32,         /* tables served */
	EMBKV_WIRE_STAT_MEM_LIMIT = 33,      /* bytes for all tables; 0: none */
	EMBKV_WIRE_STAT_EPOCH = 34,          /* the server's shard-map epoch */
	EMBKV_WIRE_STAT_OWNER_THREADS = 35,
	EMBKV_WIRE_STAT_IO_THREADS = 36,
	EMBKV_WIRE_STAT_PARTITIONS = 37,     /* partitions this server holds */
	EMBKV_WIRE_STAT_RDMA_BYTES = 38,     /* bytes registered for READ */
	/* The newest checkpoint committed here or restored from at start
	 * (server group; absent without --data-dir or before the first). */
	EMBKV_WIRE_STAT_CKPT_ID = 39,        /* its id: ms since the epoch */
	EMBKV_WIRE_STAT_CKPT_AGE_S = 40,
	EMBKV_WIRE_STAT_CKPT_DURATION_MS = 41,
	EMBKV_WIRE_STAT_CKPT_BYTES = 42,     /* all its files */
	/* expected "not found" answers (TABLE_OPEN of an unknown name), not
	 * in errors */
	EMBKV_WIRE_STAT_MISSES = 43,
	/* A table followed as a replica here (embkvd --replica-of; table
	 * group, only there): updates behind the primary, ms since it was
	 * last caught up (0 while it is), snapshots taken. */
	EMBKV_WIRE_STAT_REPL_LAG_UPDATES = 44,
	EMBKV_WIRE_STAT_REPL_LAG_MS = 45,
	EMBKV_WIRE_STAT_REPL_SNAPSHOTS = 46,
	/* Reply buffers registered with the NIC since start (server group,
	 * only with an rdma:// listener), and the bytes of registered ones
	 * kept idle for reuse (--rdma-reply-pool). */
	EMBKV_WIRE_STAT_RDMA_REPLY_REGS = 47,
	EMBKV_WIRE_STAT_RDMA_REPLY_POOL_BYTES = 48,
	EMBKV_WIRE_STAT_ID_COUNT,
};
/* "rows", "pull_keys", ...; NULL for an id this build does not know. */
const char *embkv_wire_stat_name(unsigned int id);

struct embkv_wire_stat {
	uint16_t id;
	uint64_t value;
};
struct embkv_wire_stats_group {
	uint32_t table_id;
	uint16_t n;
	const struct embkv_wire_stat *stats;
};
struct embkv_wire_stats {
	uint32_t n_groups;
	uint64_t n_stats; /* counters in all groups */
	struct embkv_wire_cursor cur;
};
int embkv_wire_stats_size(const struct embkv_wire_stats_group *g,
			  uint32_t n_groups, size_t *len);
int embkv_wire_stats_encode(const struct embkv_wire_stats_group *g,
			    uint32_t n_groups, uint8_t *body, size_t cap);
int embkv_wire_stats_decode(const uint8_t *body, size_t len,
			    struct embkv_wire_stats *out);
/* Next counter of a decoded reply, with its group's table id; false when
 * none is left. */
bool embkv_wire_stats_next(struct embkv_wire_stats *s, uint32_t *table_id,
			   struct embkv_wire_stat *out);

/*
 * SHARD_MAP reply: u64 epoch, u32 table id, u32 partition count P (a power
 * of two, <= EMBKV_MAX_PARTITIONS), u32 server count S (1 to
 * EMBKV_WIRE_MAX_SERVERS), u32 self (< S: the answering server's index),
 * u16 part_server[P] (each < S), then S addresses (u16 length, 1 to
 * EMBKV_WIRE_ADDR_MAX bytes, no NUL).
 *
 * Asked for table id EMBKV_WIRE_TABLE_ALL, the reply is the cluster's
 * membership: that table id, P = 0 and no part_server (P = 0 is
 * EMBKV_EPROTO with any other table id).
 */
enum embkv_wire_shard_map_off {
	EMBKV_WIRE_SHARD_MAP_EPOCH = 0,       /* u64 */
	EMBKV_WIRE_SHARD_MAP_TABLE = 8,       /* u32 */
	EMBKV_WIRE_SHARD_MAP_PARTS = 12,      /* u32 */
	EMBKV_WIRE_SHARD_MAP_SERVERS = 16,    /* u32 */
	EMBKV_WIRE_SHARD_MAP_SELF = 20,       /* u32 */
	EMBKV_WIRE_SHARD_MAP_PART_SERVER = 24, /* u16[P], then addresses */
};
struct embkv_wire_shard_map {
	uint64_t epoch;
	uint32_t table_id;
	uint32_t n_partitions;
	uint32_t n_servers;
	uint32_t self;                 /* the answering server's index */
	const uint16_t *part_server;   /* n_partitions server indexes (NULL
	                                  when n_partitions is 0) */
	const char *const *servers;    /* encode only: n_servers C strings */
	struct embkv_wire_cursor cur;  /* decode only: see _next_server */
};
int embkv_wire_shard_map_size(const struct embkv_wire_shard_map *m,
			      size_t *len);
int embkv_wire_shard_map_encode(const struct embkv_wire_shard_map *m,
				uint8_t *body, size_t cap);
int embkv_wire_shard_map_decode(const uint8_t *body, size_t len,
				struct embkv_wire_shard_map *out);
/* Next server address of a decoded map, in index order; false at the end. */
bool embkv_wire_shard_map_next_server(struct embkv_wire_shard_map *m,
				      struct embkv_wire_str *addr);

/* ERROR reply: i32 status (< 0), u16 message length (<=
 * EMBKV_WIRE_ERRMSG_MAX, no NUL), message bytes. Frozen in all versions. */
struct embkv_wire_error {
	int32_t status;
	struct embkv_wire_str msg;
};
int embkv_wire_error_size(const struct embkv_wire_error *m, size_t *len);
int embkv_wire_error_encode(const struct embkv_wire_error *m, uint8_t *body,
			    size_t cap);
int embkv_wire_error_decode(const uint8_t *body, size_t len,
			    struct embkv_wire_error *out);

/* Verbs connection private data (net/RDMA.md section 1) -------------------- */

#define EMBKV_VERBS_RECV_SIZE (64u << 10)   /* default RECV buffer bytes */
#define EMBKV_VERBS_WINDOW 16u              /* default credits */
#define EMBKV_VERBS_REPLY_SLOTS 16u         /* default reply arena slots */
#define EMBKV_VERBS_SLOT_SIZE (4u << 20)    /* default reply slot bytes */
#define EMBKV_VERBS_MAX_CREDITS 1024u
#define EMBKV_VERBS_MIN_RECV_SIZE 1024u     /* holds any ERROR frame */
#define EMBKV_VERBS_MAX_RECV_SIZE (EMBKV_WIRE_HDR_SIZE + EMBKV_WIRE_MAX_BODY)
#define EMBKV_VERBS_MAX_REPLY_SLOTS 4096u
#define EMBKV_VERBS_MAX_REPLY_ARENA (1ull << 30) /* slots x slot_size */
#define EMBKV_VERBS_MAX_QPS_PER_CLIENT 64u  /* connections per address */

/* rdma_connect private data, client to server (little-endian). */
enum embkv_verbs_connect_off {
	EMBKV_VERBS_CONNECT_MAGIC = 0,       /* u32 EMBKV_WIRE_MAGIC */
	EMBKV_VERBS_CONNECT_VERSION = 4,     /* u16 EMBKV_WIRE_VERSION */
	EMBKV_VERBS_CONNECT_CREDITS = 6,     /* u16 */
	EMBKV_VERBS_CONNECT_RECV_SIZE = 8,   /* u32 */
	EMBKV_VERBS_CONNECT_SLOTS = 12,      /* u32 reply_slots */
	EMBKV_VERBS_CONNECT_REPLY_ADDR = 16, /* u64 */
	EMBKV_VERBS_CONNECT_REPLY_RKEY = 24, /* u32 */
	EMBKV_VERBS_CONNECT_SLOT_SIZE = 28,  /* u32 */
	EMBKV_VERBS_CONNECT_SIZE = 32,
};
struct embkv_verbs_connect {
	uint16_t version;     /* decode: as received; encode writes ours */
	uint16_t credits;     /* client's RECVs posted for replies */
	uint32_t recv_size;   /* bytes of each */
	uint32_t reply_slots;
	uint64_t reply_addr;
	uint32_t reply_rkey;
	uint32_t slot_size;
};
/* rdma_accept private data, server to client. */
enum embkv_verbs_accept_off {
	EMBKV_VERBS_ACCEPT_MAGIC = 0,     /* u32 EMBKV_WIRE_MAGIC */
	EMBKV_VERBS_ACCEPT_VERSION = 4,   /* u16 */
	EMBKV_VERBS_ACCEPT_CREDITS = 6,   /* u16 RECVs posted for requests */
	EMBKV_VERBS_ACCEPT_RECV_SIZE = 8, /* u32 bytes of each */
	EMBKV_VERBS_ACCEPT_SIZE = 12,
};
struct embkv_verbs_accept {
	uint16_t version;
	uint16_t credits;
	uint32_t recv_size;
};
/*
 * Private data may arrive padded (rdma_cm hands over the transport's whole
 * private data area): decoders need len >= the size and ignore the rest.
 * Decoders check magic (EMBKV_EPROTO), version (EMBKV_EVERSION), zero
 * credits, sizes or slots (EMBKV_EPROTO), credits over
 * EMBKV_VERBS_MAX_CREDITS, recv_size outside [EMBKV_VERBS_MIN_RECV_SIZE,
 * EMBKV_VERBS_MAX_RECV_SIZE], slot_size outside the same range, slots over
 * EMBKV_VERBS_MAX_REPLY_SLOTS or an arena over EMBKV_VERBS_MAX_REPLY_ARENA
 * (EMBKV_ELIMIT); encoders refuse (-EINVAL) what would not decode.
 */
int embkv_wire_verbs_connect_encode(const struct embkv_verbs_connect *m,
				    uint8_t *buf, size_t cap);
int embkv_wire_verbs_connect_decode(const uint8_t *buf, size_t len,
				    struct embkv_verbs_connect *out);
int embkv_wire_verbs_accept_encode(const struct embkv_verbs_accept *m,
				   uint8_t *buf, size_t cap);
int embkv_wire_verbs_accept_decode(const uint8_t *buf, size_t len,
				   struct embkv_verbs_accept *out);

/* Authentication ----------------------------------------------------------- */
/*
 * Shared-secret challenge-response (net/PROTOCOL.md section 8):
 * MAC = HMAC-SHA-256(key, label || version || server nonce || client
 * nonce), key = HMAC-SHA-256("EMKVKDF3", token) (OpenSSL's libcrypto).
 * No secret crosses the wire. Nonces must come from getrandom().
 */
#define EMBKV_WIRE_AUTH_SECRET_SIZE 32u

/* HMAC-SHA-256 (RFC 2104, FIPS 180-4) of msg under key: 0 or -EINVAL. */
int embkv_wire_hmac_sha256(const void *key, size_t key_len, const void *msg,
			   size_t msg_len, uint8_t out[32]);

enum embkv_wire_auth_role {
	EMBKV_WIRE_AUTH_CLIENT = 0, /* the MAC the client sends */
	EMBKV_WIRE_AUTH_SERVER = 1, /* the MAC the server answers with */
};

struct embkv_wire_auth_key {
	uint8_t secret[EMBKV_WIRE_AUTH_SECRET_SIZE];
};

/* -EINVAL for an empty token. Wipe the key when done with it. */
int embkv_wire_auth_key_derive(const void *token, size_t token_len,
			       struct embkv_wire_auth_key *key);
void embkv_wire_auth_key_wipe(struct embkv_wire_auth_key *key);
int embkv_wire_auth_mac(const struct embkv_wire_auth_key *key,
			enum embkv_wire_auth_role role,
			const uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE],
			const uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE],
			uint8_t mac[EMBKV_WIRE_MAC_SIZE]);
/* 0 when mac is right (constant-time compare), else EMBKV_EAUTH. */
int embkv_wire_auth_verify(const struct embkv_wire_auth_key *key,
			   enum embkv_wire_auth_role role,
			   const uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE],
			   const uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE],
			   const uint8_t mac[EMBKV_WIRE_MAC_SIZE]);

#endif /* EMBKV_NET_WIRE_H */
