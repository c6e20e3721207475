/*
 * Optimizer kernels: apply one gradient to one row, in place.
 *
 * Each optimizer is an ops table. Its private state lives beside the row
 * arena (never registered for remote access), indexed by row id:
 * state_floats(dim) floats per row, plus a per-row step counter when
 * needs_step is set (sparse/lazy Adam counts steps per row).
 *
 * Kernels are written as tight loops over restrict pointers with no
 * branches in the body, so the compiler vectorizes them. They run on the
 * partition's owner thread only.
 */
#ifndef EMBKV_SERVER_OPTIM_H
#define EMBKV_SERVER_OPTIM_H

#include <stdbool.h>
#include <stdint.h>
#include <embkv/embkv.h>

struct embkv_optim_ops {
	const char *name;
	/* floats of private state per row for a row of dim floats */
	uint32_t (*state_floats)(uint32_t dim);
	bool needs_step;
	/* fill a fresh row's state (e.g. Adagrad's initial accumulator) */
	void (*init_state)(const struct embkv_opt_attr *hp, uint32_t dim,
			   float *state);
	/*
	 * w: the row (dim floats); state: its private state (may be NULL when
	 * state_floats is 0); step: its step counter (NULL unless needs_step);
	 * g: the gradient (dim floats).
	 */
	void (*apply)(const struct embkv_opt_attr *hp, uint32_t dim,
		      float *restrict w, float *restrict state,
		      uint32_t *restrict step, const float *restrict g);
};

/* Instruction sets the kernels are compiled for; all give identical rows. */
enum embkv_optim_isa {
	EMBKV_OPTIM_BASE = 0, /* x86-64 baseline (SSE2) */
	EMBKV_OPTIM_AVX2 = 1,
	EMBKV_OPTIM_ISA_COUNT,
};

/* The ops for an optimizer type on the widest instruction set this CPU
 * has, or NULL for an unknown type. */
const struct embkv_optim_ops *embkv_optim_get(enum embkv_optimizer type);
/* The ops for a given instruction set; NULL when unknown or unsupported
 * by this CPU (for tests). */
const struct embkv_optim_ops *embkv_optim_get_isa(enum embkv_optimizer type,
						  enum embkv_optim_isa isa);
bool embkv_optim_isa_supported(enum embkv_optim_isa isa);

/* 0 when the hyper-parameters are usable for their type, else -EINVAL. */
int embkv_optim_check(const struct embkv_opt_attr *hp);

#endif
