/*
 * Optimizer kernels: SGD, Adagrad, row-wise Adagrad, sparse/lazy Adam,
 * FTRL-Proximal.
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

static uint32_t optim_one_float(uint32_t dim)
{
	(void)dim;
	return 1;
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

static inline __attribute__((always_inline)) void
optim_sgd_apply(const struct embkv_opt_attr *hp, uint32_t dim,
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

static inline __attribute__((always_inline)) void
optim_adagrad_apply(const struct embkv_opt_attr *hp, uint32_t dim,
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
/* Row-wise Adagrad (FBGEMM's EXACT_ROWWISE_ADAGRAD): one accumulator    */
/* per row: acc += mean(g^2); w -= lr * g / (sqrt(acc) + eps).           */
/* State: acc[1], starting at initial_accum. The mean is summed in       */
/* element order, so both instruction sets give the same row.            */
/* -------------------------------------------------------------------- */

static void optim_init_rowwise(const struct embkv_opt_attr *hp, uint32_t dim,
			       float *state)
{
	(void)dim;
	state[0] = hp->initial_accum;
}

static inline __attribute__((always_inline)) void
optim_rowwise_adagrad_apply(const struct embkv_opt_attr *hp, uint32_t dim,
			    float *restrict w, float *restrict acc,
			    uint32_t *restrict step, const float *restrict g)
{
	float sum = 0.0f, a, mult;

	(void)step;
	for (size_t i = 0; i < dim; i++)
		sum += g[i] * g[i];
	a = acc[0] + sum / (float)dim;
	acc[0] = a;
	mult = hp->lr / (sqrtf(a) + hp->eps);
	for (size_t i = 0; i < dim; i++)
		w[i] -= mult * g[i];
}

/* -------------------------------------------------------------------- */
/* Sparse/lazy Adam. State: m[dim] then v[dim]; a per-row step t.         */
/*   t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;                 */
/*   w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)               */
/* -------------------------------------------------------------------- */

static inline __attribute__((always_inline)) void
optim_adam_kernel(uint32_t dim, float step_size, float inv_bc2,
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

static inline __attribute__((always_inline)) void
optim_adam_apply(const struct embkv_opt_attr *hp, uint32_t dim,
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

static inline __attribute__((always_inline)) void
optim_ftrl_kernel(uint32_t dim, float inv_alpha, float l1,
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

static inline __attribute__((always_inline)) void
optim_ftrl_apply(const struct embkv_opt_attr *hp, uint32_t dim,
			     float *restrict w, float *restrict state,
			     uint32_t *restrict step, const float *restrict g)
{
	const float inv_alpha = 1.0f / hp->lr;

	(void)step;
	optim_ftrl_kernel(dim, inv_alpha, hp->l1, hp->l2,
			  hp->ftrl_beta * inv_alpha, w, state, state + dim, g);
}

/* -------------------------------------------------------------------- */
/* Instances: every kernel above is an always-inline body, compiled here */
/* twice, for the x86-64 baseline (SSE2) and for AVX2, which halves the  */
/* instructions of a dim-64 row. No FMA: each element sees the same      */
/* IEEE operations in both, so both give bit-identical rows.             */
/* -------------------------------------------------------------------- */

#define OPTIM_ARGS                                                      \
	const struct embkv_opt_attr *hp, uint32_t dim, float *restrict w, \
		float *restrict state, uint32_t *restrict step,           \
		const float *restrict g

static void sgd_base(OPTIM_ARGS) { optim_sgd_apply(hp, dim, w, state, step, g); }
static void adagrad_base(OPTIM_ARGS) { optim_adagrad_apply(hp, dim, w, state, step, g); }
static void adam_base(OPTIM_ARGS) { optim_adam_apply(hp, dim, w, state, step, g); }
static void ftrl_base(OPTIM_ARGS) { optim_ftrl_apply(hp, dim, w, state, step, g); }
static void rowwise_base(OPTIM_ARGS) { optim_rowwise_adagrad_apply(hp, dim, w, state, step, g); }

#define AVX2 __attribute__((target("avx2")))
AVX2 static void sgd_avx2(OPTIM_ARGS) { optim_sgd_apply(hp, dim, w, state, step, g); }
AVX2 static void adagrad_avx2(OPTIM_ARGS) { optim_adagrad_apply(hp, dim, w, state, step, g); }
AVX2 static void adam_avx2(OPTIM_ARGS) { optim_adam_apply(hp, dim, w, state, step, g); }
AVX2 static void ftrl_avx2(OPTIM_ARGS) { optim_ftrl_apply(hp, dim, w, state, step, g); }
AVX2 static void rowwise_avx2(OPTIM_ARGS) { optim_rowwise_adagrad_apply(hp, dim, w, state, step, g); }

/* -------------------------------------------------------------------- */
/* Ops tables, lookup, checks                                            */
/* -------------------------------------------------------------------- */

#define OPTIM_TABLE(sgd, adagrad, adam, ftrl, rowwise)                  \
	{                                                               \
		[EMBKV_OPT_SGD] = { "sgd", optim_no_state, false,       \
				    optim_init_none, sgd },             \
		[EMBKV_OPT_ADAGRAD] = { "adagrad", optim_one_array,     \
					false, optim_init_adagrad,      \
					adagrad },                      \
		[EMBKV_OPT_ADAM] = { "adam", optim_two_arrays, true,    \
				     optim_init_zero2, adam },          \
		[EMBKV_OPT_FTRL] = { "ftrl", optim_two_arrays, false,   \
				     optim_init_zero2, ftrl },          \
		[EMBKV_OPT_ROWWISE_ADAGRAD] = { "rowwise_adagrad",      \
						optim_one_float, false, \
						optim_init_rowwise,     \
						rowwise },              \
	}

static const struct embkv_optim_ops optim_ops[EMBKV_OPTIM_ISA_COUNT]
					     [EMBKV_OPT_COUNT] = {
	[EMBKV_OPTIM_BASE] = OPTIM_TABLE(sgd_base, adagrad_base, adam_base,
					 ftrl_base, rowwise_base),
	[EMBKV_OPTIM_AVX2] = OPTIM_TABLE(sgd_avx2, adagrad_avx2, adam_avx2,
					 ftrl_avx2, rowwise_avx2),
};

bool embkv_optim_isa_supported(enum embkv_optim_isa isa)
{
	__builtin_cpu_init();
	return isa == EMBKV_OPTIM_BASE ||
	       (isa == EMBKV_OPTIM_AVX2 && __builtin_cpu_supports("avx2"));
}

const struct embkv_optim_ops *embkv_optim_get_isa(enum embkv_optimizer type,
						  enum embkv_optim_isa isa)
{
	/* Compare as unsigned: an out-of-range enum may be negative. */
	if ((unsigned int)type >= (unsigned int)EMBKV_OPT_COUNT ||
	    (unsigned int)isa >= (unsigned int)EMBKV_OPTIM_ISA_COUNT ||
	    !embkv_optim_isa_supported(isa))
		return NULL;
	return &optim_ops[isa][type];
}

const struct embkv_optim_ops *embkv_optim_get(enum embkv_optimizer type)
{
	return embkv_optim_get_isa(type,
				   embkv_optim_isa_supported(EMBKV_OPTIM_AVX2)
					   ? EMBKV_OPTIM_AVX2
					   : EMBKV_OPTIM_BASE);
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
	case EMBKV_OPT_ROWWISE_ADAGRAD:
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
