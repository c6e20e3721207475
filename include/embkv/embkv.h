/*
 * embkv public API: status codes and table attributes.
 *
 * This header is the only one a trainer, an inference pod or an operator
 * tool includes. It carries no verbs or CUDA types. All functions here are
 * pure (no I/O) and may be called from any thread.
 */
#ifndef EMBKV_EMBKV_H
#define EMBKV_EMBKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Status codes. Int-returning functions return 0 or a negative value: a
 * negative errno (-EINVAL, -ENOMEM, ...) or one of the project codes below,
 * which live in the reserved range [EMBKV_ERR_BASE - 99, EMBKV_ERR_BASE].
 */
#define EMBKV_ERR_BASE (-4000)
enum embkv_status {
	EMBKV_OK = 0,
	EMBKV_ENOTFOUND = EMBKV_ERR_BASE - 0,  /* key not in the table */
	EMBKV_ETORN = EMBKV_ERR_BASE - 1,      /* validated read kept failing */
	EMBKV_EREJECTED = EMBKV_ERR_BASE - 2,  /* admission filter said not yet */
	EMBKV_EFULL = EMBKV_ERR_BASE - 3,      /* no room and nothing to evict */
	EMBKV_ENOTABLE = EMBKV_ERR_BASE - 4,   /* table does not exist */
	EMBKV_ETABLEEXISTS = EMBKV_ERR_BASE - 5, /* table name already used */
	EMBKV_ESTALE = EMBKV_ERR_BASE - 6,     /* shard map epoch is stale */
	EMBKV_EPROTO = EMBKV_ERR_BASE - 7,     /* malformed frame */
	EMBKV_EVERSION = EMBKV_ERR_BASE - 8,   /* protocol version mismatch */
	EMBKV_EAUTH = EMBKV_ERR_BASE - 9,      /* authentication failed */
	EMBKV_EDIM = EMBKV_ERR_BASE - 10,      /* dimension does not match */
	EMBKV_ELIMIT = EMBKV_ERR_BASE - 11,    /* a length or count over its limit */
	EMBKV_EOPCODE = EMBKV_ERR_BASE - 12,   /* unknown opcode */
	EMBKV_EDISCONNECTED = EMBKV_ERR_BASE - 13, /* peer went away */
	EMBKV_ETIMEDOUT = EMBKV_ERR_BASE - 14, /* no answer in time */
	EMBKV_ESERVER = EMBKV_ERR_BASE - 15,   /* server-side internal error */
	EMBKV_ERR_LAST = EMBKV_ESERVER,
};

/*
 * A human-readable name for any status this library returns: project codes
 * and negative errno values. The string is static; never NULL.
 */
const char *embkv_strerror(int status);

/* Limits that apply everywhere (API, wire, storage). */
#define EMBKV_MAX_DIM 4096u
#define EMBKV_TABLE_NAME_MAX 64u          /* bytes, including the NUL */
#define EMBKV_MAX_PARTITIONS 65536u
#define EMBKV_MAX_ROWS_PER_PARTITION ((uint64_t)1 << 32)

enum embkv_dtype {
	EMBKV_DTYPE_F32 = 0, /* the only storage type for now */
};

enum embkv_optimizer {
	EMBKV_OPT_SGD = 0,
	EMBKV_OPT_ADAGRAD = 1,
	EMBKV_OPT_ADAM = 2,     /* sparse/lazy Adam: per-row step counts */
	EMBKV_OPT_FTRL = 3,     /* FTRL-Proximal, learning-rate power -1/2 */
	EMBKV_OPT_COUNT,
};

/* Optimizer hyper-parameters; which fields matter depends on type. */
struct embkv_opt_attr {
	enum embkv_optimizer type;
	float lr;              /* all: learning rate (FTRL: alpha) */
	float beta1, beta2;    /* Adam */
	float eps;             /* Adagrad, Adam */
	float initial_accum;   /* Adagrad accumulator start value */
	float l1, l2;          /* FTRL regularization */
	float ftrl_beta;       /* FTRL beta */
};

enum embkv_init_type {
	EMBKV_INIT_ZEROS = 0,
	EMBKV_INIT_UNIFORM = 1, /* uniform in [a, b) */
	EMBKV_INIT_NORMAL = 2,  /* normal with mean a, standard deviation b */
	EMBKV_INIT_COUNT,
};

/*
 * Row initializer. Deterministic: the same key, seed and parameters always
 * give the same row, so a row evicted and created again is identical.
 */
struct embkv_init_attr {
	enum embkv_init_type type;
	float a, b;
	uint64_t seed;
};

/*
 * A table. Fill with embkv_table_attr_init(), then set what differs.
 *
 * capacity is the most rows the table ever holds; the store evicts the
 * least-frequently-used row of a key's candidate buckets to stay within it.
 * admit_after = N stores a key only on its N-th sighting (1: always).
 */
struct embkv_table_attr {
	char name[EMBKV_TABLE_NAME_MAX];
	uint32_t dim;
	enum embkv_dtype dtype;
	uint32_t partitions;        /* a power of two */
	uint64_t capacity;          /* rows, whole table */
	struct embkv_opt_attr opt;
	struct embkv_init_attr init;
	uint32_t admit_after;       /* admission threshold N, >= 1 */
	uint32_t lfu_decay_period;  /* halve LFU counters every this many
	                               accesses per row of capacity (>= 1) */
	uint64_t hash_seed;         /* key hash seed */
	float index_load;           /* index slots in use at full capacity,
	                               in [0.5, 1]; 0: the default (0.92) */
	uint32_t flags;             /* reserved, must be 0 */
};

/* Fills defaults: dim 64, fp32, 64 partitions, capacity 1M rows, SGD lr
 * 0.01, uniform(-0.01, 0.01) init, admission off. */
void embkv_table_attr_init(struct embkv_table_attr *attr);

/* 0 when attr describes a valid table, else -EINVAL (or EMBKV_ELIMIT for a
 * value over its limit). Never modifies attr. */
int embkv_table_attr_check(const struct embkv_table_attr *attr);

/* Names for the enums ("sgd", "adam", "uniform", ...), and parsing back.
 * parse functions return the value or -EINVAL. */
const char *embkv_optimizer_name(enum embkv_optimizer o);
int embkv_optimizer_parse(const char *name);
const char *embkv_init_name(enum embkv_init_type t);
int embkv_init_parse(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* EMBKV_EMBKV_H */
