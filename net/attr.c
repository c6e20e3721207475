/*
 * Table attributes: defaults, validation, dtype sizes and enum names.
 * Shared by the server (which trusts nothing it did not validate here) and
 * the client. Validation never modifies the attr and never trusts a string
 * to be NUL-terminated.
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <embkv/embkv.h>
#include "hashing/f16.h"

#define DEFAULT_DIM 64u
#define DEFAULT_PARTITIONS 64u
#define DEFAULT_CAPACITY (1u << 20)
#define DEFAULT_LR 0.01f
#define DEFAULT_INIT_RANGE 0.01f
#define DEFAULT_BETA1 0.9f
#define DEFAULT_BETA2 0.999f
#define DEFAULT_EPS 1e-8f
#define DEFAULT_ADAGRAD_ACCUM 0.1f
#define DEFAULT_FTRL_BETA 1.0f
#define DEFAULT_DECAY_PERIOD 8u
#define DEFAULT_HASH_SEED 0x656d626b76ull /* "embkv" */

void embkv_table_attr_init(struct embkv_table_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	strcpy(attr->name, "default");
	attr->dim = DEFAULT_DIM;
	attr->dtype = EMBKV_DTYPE_F32;
	attr->partitions = DEFAULT_PARTITIONS;
	attr->capacity = DEFAULT_CAPACITY;
	attr->opt.type = EMBKV_OPT_SGD;
	attr->opt.lr = DEFAULT_LR;
	attr->opt.beta1 = DEFAULT_BETA1;
	attr->opt.beta2 = DEFAULT_BETA2;
	attr->opt.eps = DEFAULT_EPS;
	attr->opt.initial_accum = DEFAULT_ADAGRAD_ACCUM;
	attr->opt.ftrl_beta = DEFAULT_FTRL_BETA;
	attr->init.type = EMBKV_INIT_UNIFORM;
	attr->init.a = -DEFAULT_INIT_RANGE;
	attr->init.b = DEFAULT_INIT_RANGE;
	attr->admit_after = 1;
	attr->lfu_decay_period = DEFAULT_DECAY_PERIOD;
	attr->hash_seed = DEFAULT_HASH_SEED;
}

static int name_check(const char *name)
{
	size_t len = strnlen(name, EMBKV_TABLE_NAME_MAX);

	if (len == 0 || len == EMBKV_TABLE_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.'))
			return -EINVAL;
	}
	return 0;
}

size_t embkv_dtype_size(enum embkv_dtype dtype)
{
	switch (dtype) { /* no default: a new dtype must be sized here */
	case EMBKV_DTYPE_F32:
		return sizeof(float);
	case EMBKV_DTYPE_F16:
	case EMBKV_DTYPE_BF16:
		return sizeof(uint16_t);
	case EMBKV_DTYPE_COUNT:
		break;
	}
	return 0;
}

static const char *const dtype_names[EMBKV_DTYPE_COUNT] = {
	[EMBKV_DTYPE_F32] = "fp32",
	[EMBKV_DTYPE_F16] = "fp16",
	[EMBKV_DTYPE_BF16] = "bf16",
};

const char *embkv_dtype_name(enum embkv_dtype dtype)
{
	return (unsigned)dtype < EMBKV_DTYPE_COUNT ? dtype_names[dtype]
						   : "unknown";
}

int embkv_dtype_parse(const char *name)
{
	static const struct {
		const char *name;
		enum embkv_dtype dtype;
	} alias[] = {
		{ "fp32", EMBKV_DTYPE_F32 }, { "f32", EMBKV_DTYPE_F32 },
		{ "float32", EMBKV_DTYPE_F32 }, { "fp16", EMBKV_DTYPE_F16 },
		{ "f16", EMBKV_DTYPE_F16 }, { "float16", EMBKV_DTYPE_F16 },
		{ "half", EMBKV_DTYPE_F16 }, { "bf16", EMBKV_DTYPE_BF16 },
		{ "bfloat16", EMBKV_DTYPE_BF16 },
	};

	for (size_t i = 0; name && i < sizeof(alias) / sizeof(alias[0]); i++)
		if (strcasecmp(name, alias[i].name) == 0)
			return (int)alias[i].dtype;
	return -EINVAL;
}

void embkv_dtype_from_f32(enum embkv_dtype dtype, const float *src,
			  void *dst, size_t n)
{
	uint16_t *h = dst;

	switch (dtype) {
	case EMBKV_DTYPE_F32:
		memcpy(dst, src, n * sizeof(float));
		break;
	case EMBKV_DTYPE_F16:
		for (size_t i = 0; i < n; i++)
			h[i] = embkv_f32_to_f16(src[i]);
		break;
	case EMBKV_DTYPE_BF16:
		for (size_t i = 0; i < n; i++)
			h[i] = embkv_f32_to_bf16(src[i]);
		break;
	case EMBKV_DTYPE_COUNT:
		break;
	}
}

void embkv_dtype_to_f32(enum embkv_dtype dtype, const void *src, float *dst,
			size_t n)
{
	const uint16_t *h = src;

	switch (dtype) {
	case EMBKV_DTYPE_F32:
		memcpy(dst, src, n * sizeof(float));
		break;
	case EMBKV_DTYPE_F16:
		for (size_t i = 0; i < n; i++)
			dst[i] = embkv_f16_to_f32(h[i]);
		break;
	case EMBKV_DTYPE_BF16:
		for (size_t i = 0; i < n; i++)
			dst[i] = embkv_bf16_to_f32(h[i]);
		break;
	case EMBKV_DTYPE_COUNT:
		break;
	}
}

int embkv_table_attr_check(const struct embkv_table_attr *attr)
{
	if (!attr || name_check(attr->name))
		return -EINVAL;
	if (attr->dim == 0)
		return -EINVAL;
	if (attr->dim > EMBKV_MAX_DIM)
		return EMBKV_ELIMIT;
	if ((unsigned)attr->dtype >= EMBKV_DTYPE_COUNT)
		return -EINVAL;
	if (attr->partitions == 0 ||
	    (attr->partitions & (attr->partitions - 1)) != 0)
		return -EINVAL;
	if (attr->partitions > EMBKV_MAX_PARTITIONS)
		return EMBKV_ELIMIT;
	if (attr->capacity == 0)
		return -EINVAL;
	if (attr->capacity / attr->partitions >= EMBKV_MAX_ROWS_PER_PARTITION)
		return EMBKV_ELIMIT;
	if ((unsigned)attr->opt.type >= EMBKV_OPT_COUNT ||
	    (unsigned)attr->init.type >= EMBKV_INIT_COUNT)
		return -EINVAL;
	if (attr->admit_after == 0 || attr->lfu_decay_period == 0)
		return -EINVAL;
	if (!(attr->index_load == 0.0f ||
	      (attr->index_load >= 0.5f && attr->index_load <= 1.0f)))
		return -EINVAL;
	if (attr->flags & ~EMBKV_TABLE_FLAGS_KNOWN)
		return -EINVAL;
	/* rounding is a choice only where rows are narrower than fp32 */
	if ((attr->flags & EMBKV_TABLE_ROUND_NEAREST) &&
	    attr->dtype == EMBKV_DTYPE_F32)
		return -EINVAL;
	if ((attr->flags & EMBKV_TABLE_STATE_BF16) &&
	    attr->opt.type != EMBKV_OPT_ADAGRAD &&
	    attr->opt.type != EMBKV_OPT_ADAM)
		return -EINVAL;
	return 0;
}

static const char *const opt_names[EMBKV_OPT_COUNT] = {
	[EMBKV_OPT_SGD] = "sgd",
	[EMBKV_OPT_ADAGRAD] = "adagrad",
	[EMBKV_OPT_ADAM] = "adam",
	[EMBKV_OPT_FTRL] = "ftrl",
	[EMBKV_OPT_ROWWISE_ADAGRAD] = "rowwise_adagrad",
};

static const char *const init_names[EMBKV_INIT_COUNT] = {
	[EMBKV_INIT_ZEROS] = "zeros",
	[EMBKV_INIT_UNIFORM] = "uniform",
	[EMBKV_INIT_NORMAL] = "normal",
};

const char *embkv_optimizer_name(enum embkv_optimizer o)
{
	return (unsigned)o < EMBKV_OPT_COUNT ? opt_names[o] : "unknown";
}

int embkv_optimizer_parse(const char *name)
{
	for (int i = 0; name && i < EMBKV_OPT_COUNT; i++)
		if (strcasecmp(name, opt_names[i]) == 0)
			return i;
	return -EINVAL;
}

const char *embkv_init_name(enum embkv_init_type t)
{
	return (unsigned)t < EMBKV_INIT_COUNT ? init_names[t] : "unknown";
}

int embkv_init_parse(const char *name)
{
	for (int i = 0; name && i < EMBKV_INIT_COUNT; i++)
		if (strcasecmp(name, init_names[i]) == 0)
			return i;
	return -EINVAL;
}
