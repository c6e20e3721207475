/*
 * Optimizer kernels: SGD, Adagrad, sparse/lazy Adam, FTRL-Proximal.
 *
 * What: one ops table per optimizer; apply() folds one gradient into one
 * row and its private state, in place, on the partition's owner thread.
 *
 * Why this shape: apply() runs for every pushed row, so each kernel is a
 * single pass over dim floats with no branches and no calls in the body
 * (sqrtf becomes a vector square root under -fno-math-errno). Everything
 * that is constant for the call -- hyper-parameters, Adam's bias
 * corrections from the row's own step count, reciprocals -- is computed
 * once before the loop. Kernels with two state arrays (Adam: m then v;
 * FTRL: z then n) split the row's state in a small wrapper and pass the
 * halves as separate restrict pointers, so the loop needs no run-time
 * alias check.
 *
 * Invariants: a row's state is state_floats(dim) floats laid out as
 * documented per optimizer below; Adam's step counter counts the updates
 * applied to that row only (lazy Adam), saturating at UINT32_MAX. Kernels
 * trust their hyper-parameters: embkv_optim_check() must have accepted
 * them when the table was created.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "server/optim.h"

/* Adam and FTRL keep two dim-sized arrays per row. */
#define OPTIM_TWO_ARRAYS 2u

/* -------------------------------------------------------------------- */
/* State sizes and initial state                                         */
/* -------------------------------------------------------------------- */

static uint32_t optim_no_state(uint32_t dim)
{
	(void)dim;
	return 0;
}

static uint32_t optim_one_array(uint32_t dim)
{
	return dim;
}

static uint32_t optim_two_arrays(uint32_t dim)
{
	return OPTIM_TWO_ARRAYS * dim;
}

static void optim_init_none(const struct embkv_opt_attr *hp, uint32_t dim,
			    float *state)
{
	(void)hp;
	(void)dim;
	(void)state;
}

static void optim_init_zero2(const struct embkv_opt_attr *hp, uint32_t dim,
			     float *state)
{
	(void)hp;
	for (size_t i = 0; i < (size_t)OPTIM_TWO_ARRAYS * dim; i++)
		state[i] = 0.0f;
}

static void optim_init_adagrad(const struct embkv_opt_attr *hp, uint32_t dim,
			       float *state)
{
	const float acc0 = hp->initial_accum;

	for (size_t i = 0; i < dim; i++)
		state[i] = acc0;
}

/* -------------------------------------------------------------------- */
/* SGD: w -= lr * g. No state.                                           */
/* -------------------------------------------------------------------- */

static void optim_sgd_apply(const struct embkv_opt_attr *hp, uint32_t dim,
			    float *restrict w, float *restrict state,
			    uint32_t *restrict step, const float *restrict g)
{
	const float lr = hp->lr;

	(void)state;
	(void)step;
	for (size_t i = 0; i < dim; i++)
		w[i] -= lr * g[i];
}

/* -------------------------------------------------------------------- */
/* Adagrad: acc += g^2; w -= lr * g / (sqrt(acc) + eps).                 */
/* State: acc[dim], starting at initial_accum.                           */
/* -------------------------------------------------------------------- */

static void optim_adagrad_apply(const struct embkv_opt_attr *hp, uint32_t dim,
				float *restrict w, float *restrict acc,
				uint32_t *restrict step,
				const float *restrict g)
{
	const float lr = hp->lr;
	const float eps = hp->eps;

	(void)step;
	for (size_t i = 0; i < dim; i++) {
		const float a = acc[i] + g[i] * g[i];

		acc[i] = a;
		w[i] -= lr * g[i] / (sqrtf(a) + eps);
	}
}

/* -------------------------------------------------------------------- */
/* Sparse/lazy Adam. State: m[dim] then v[dim]; a per-row step t.         */
/*   t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;                 */
/*   w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)               */
/* -------------------------------------------------------------------- */

static void optim_adam_kernel(uint32_t dim, float step_size, float inv_bc2,
			      float b1, float b2, float eps,
			      float *restrict w, float *restrict m,
			      float *restrict v, const float *restrict g)
{
	const float one_minus_b1 = 1.0f - b1;
	const float one_minus_b2 = 1.0f - b2;

	for (size_t i = 0; i < dim; i++) {
		const float gi = g[i];
		const float mi = b1 * m[i] + one_minus_b1 * gi;
		const float vi = b2 * v[i] + one_minus_b2 * gi * gi;

		m[i] = mi;
		v[i] = vi;
		w[i] -= step_size * mi / (sqrtf(vi * inv_bc2) + eps);
	}
}

static void optim_adam_apply(const struct embkv_opt_attr *hp, uint32_t dim,
			     float *restrict w, float *restrict state,
			     uint32_t *restrict step, const float *restrict g)
{
	/* Saturate rather than wrap: t = 0 would divide by 1 - b^0 = 0. */
	const uint32_t t = *step + (*step < UINT32_MAX);
	const float tf = (float)t;
	const float bc1 = 1.0f - powf(hp->beta1, tf);
	const float bc2 = 1.0f - powf(hp->beta2, tf);

	*step = t;
	optim_adam_kernel(dim, hp->lr / bc1, 1.0f / bc2, hp->beta1, hp->beta2,
			  hp->eps, w, state, state + dim, g);
}

/* -------------------------------------------------------------------- */
/* FTRL-Proximal (McMahan et al. 2013), learning-rate power -1/2.        */
/* State: z[dim] then n[dim], both starting at 0. Per coordinate:        */
/*   sigma = (sqrt(n + g^2) - sqrt(n)) / alpha; z += g - sigma w;        */
/*   n += g^2;                                                           */
/*   w = |z| <= l1 ? 0 : -(z - sign(z) l1) / ((beta + sqrt(n))/alpha + l2)*/
/* The weight is a function of (z, n) alone: the first update of a row   */
/* replaces its initial values.                                          */
/* -------------------------------------------------------------------- */

static void optim_ftrl_kernel(uint32_t dim, float inv_alpha, float l1,
			      float l2, float beta_over_alpha,
			      float *restrict w, float *restrict z,
			      float *restrict n, const float *restrict g)
{
	for (size_t i = 0; i < dim; i++) {
		const float gi = g[i];
		const float n_old = n[i];
		const float n_new = n_old + gi * gi;
		const float sqrt_n_new = sqrtf(n_new);
		const float sigma = (sqrt_n_new - sqrtf(n_old)) * inv_alpha;
		const float zi = z[i] + gi - sigma * w[i];
		const float denom = beta_over_alpha + sqrt_n_new * inv_alpha
				    + l2;
		const float wi = -(zi - copysignf(l1, zi)) / denom;

		z[i] = zi;
		n[i] = n_new;
		/* A select, not a branch: both sides are already computed. */
		w[i] = fabsf(zi) <= l1 ? 0.0f : wi;
	}
}

static void optim_ftrl_apply(const struct embkv_opt_attr *hp, uint32_t dim,
			     float *restrict w, float *restrict state,
			     uint32_t *restrict step, const float *restrict g)
{
	const float inv_alpha = 1.0f / hp->lr;

	(void)step;
	optim_ftrl_kernel(dim, inv_alpha, hp->l1, hp->l2,
			  hp->ftrl_beta * inv_alpha, w, state, state + dim, g);
}

/* -------------------------------------------------------------------- */
/* Ops tables, lookup, checks                                            */
/* -------------------------------------------------------------------- */

static const struct embkv_optim_ops optim_ops[EMBKV_OPT_COUNT] = {
	[EMBKV_OPT_SGD] = {
		.name = "sgd",
		.state_floats = optim_no_state,
		.needs_step = false,
		.init_state = optim_init_none,
		.apply = optim_sgd_apply,
	},
	[EMBKV_OPT_ADAGRAD] = {
		.name = "adagrad",
		.state_floats = optim_one_array,
		.needs_step = false,
		.init_state = optim_init_adagrad,
		.apply = optim_adagrad_apply,
	},
	[EMBKV_OPT_ADAM] = {
		.name = "adam",
		.state_floats = optim_two_arrays,
		.needs_step = true,
		.init_state = optim_init_zero2,
		.apply = optim_adam_apply,
	},
	[EMBKV_OPT_FTRL] = {
		.name = "ftrl",
		.state_floats = optim_two_arrays,
		.needs_step = false,
		.init_state = optim_init_zero2,
		.apply = optim_ftrl_apply,
	},
};

const struct embkv_optim_ops *embkv_optim_get(enum embkv_optimizer type)
{
	/* Compare as unsigned: an out-of-range enum may be negative. */
	if ((unsigned int)type >= (unsigned int)EMBKV_OPT_COUNT)
		return NULL;
	return &optim_ops[type];
}

static bool optim_is_beta(float b)
{
	return b >= 0.0f && b < 1.0f;
}

/*
 * Every float field must be finite, whatever the type: a NaN anywhere in
 * the attr is a caller bug worth reporting. Range checks apply only to the
 * fields the type uses, so unused fields may stay 0.
 */
int embkv_optim_check(const struct embkv_opt_attr *hp)
{
	if (!hp)
		return -EINVAL;
	if (!isfinite(hp->lr) || !isfinite(hp->beta1) ||
	    !isfinite(hp->beta2) || !isfinite(hp->eps) ||
	    !isfinite(hp->initial_accum) || !isfinite(hp->l1) ||
	    !isfinite(hp->l2) || !isfinite(hp->ftrl_beta))
		return -EINVAL;
	if (!(hp->lr > 0.0f))
		return -EINVAL;

	switch (hp->type) {
	case EMBKV_OPT_SGD:
		return 0;
	case EMBKV_OPT_ADAGRAD:
		if (!(hp->eps > 0.0f) || hp->initial_accum < 0.0f)
			return -EINVAL;
		return 0;
	case EMBKV_OPT_ADAM:
		if (!optim_is_beta(hp->beta1) || !optim_is_beta(hp->beta2) ||
		    !(hp->eps > 0.0f))
			return -EINVAL;
		return 0;
	case EMBKV_OPT_FTRL:
		if (hp->l1 < 0.0f || hp->l2 < 0.0f || hp->ftrl_beta < 0.0f)
			return -EINVAL;
		return 0;
	case EMBKV_OPT_COUNT:
	default:
		return -EINVAL;
	}
}
