/*
 * Optimizer kernel tests: every optimizer against a scalar reference that
 * this file computes in double precision, over several steps with varying
 * gradients, for a dim that is not a multiple of the vector width (37) and
 * one that is (64). Also: Adam's per-row step counts and bias corrections,
 * FTRL's exact zeros under L1, Adagrad's initial accumulator (and
 * row-wise Adagrad's single one, fed the mean squared gradient), writes that
 * stay inside the row, and embkv_optim_check's rejections.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/optim.h"

#define DIM_ODD 37u
#define DIM_WIDE 64u
#define STEPS 8u
#define REL_TOL 1e-5
/* A value written past the end of an array by a buggy kernel shows up. */
#define CANARY 12345.0f

/* Gradients: a smooth function of (step, coordinate) with changing signs
 * and magnitudes, so no two steps or coordinates see the same gradient. */
#define GRAD_AMP 0.3
#define GRAD_FREQ_I 0.37
#define GRAD_FREQ_T 1.1
#define GRAD_PHASE 0.2
#define GRAD_DRIFT 0.05
/* Initial weights around W_CENTER, away from 0 so that a relative
 * tolerance on weights is meaningful. */
#define W_CENTER 0.5
#define W_SPREAD 0.25
#define W_FREQ 0.9

static float grad_at(uint32_t t, uint32_t i)
{
	return (float)(GRAD_AMP * sin(GRAD_FREQ_I * i + GRAD_FREQ_T * t +
				      GRAD_PHASE) +
		       GRAD_DRIFT * ((double)(t % 3) - 1.0));
}

static float w0_at(uint32_t i)
{
	return (float)(W_CENTER + W_SPREAD * cos(W_FREQ * i));
}

/*
 * |got - ref| <= REL_TOL * max(|ref|, floor). floor is 0 for quantities
 * that stay away from zero; for quantities that may cross zero it is the
 * scale the quantity lives on, so that a value near zero is held to the
 * rounding error of the terms that cancelled in it.
 */
static void assert_close(const float *got, const double *ref, size_t n,
			 double floor, const char *what, uint32_t step)
{
	for (size_t i = 0; i < n; i++) {
		const double err = fabs((double)got[i] - ref[i]);
		const double bound = REL_TOL * fmax(fabs(ref[i]), floor);

		if (!(err <= bound))
			fail_msg("%s[%zu] step %u: got %.9g, want %.9g "
				 "(err %.3g > %.3g)",
				 what, i, step, (double)got[i], ref[i], err,
				 bound);
	}
}

/* ------------------------------------------------------------------ */
/* Double-precision references, written straight from the formulas.    */
/* ------------------------------------------------------------------ */

struct ref_row {
	uint32_t dim;
	double *w;
	double *s;      /* state, same layout as the kernel's */
	uint32_t t;     /* Adam step */
};

static void ref_sgd(const struct embkv_opt_attr *hp, struct ref_row *r,
		    const float *g)
{
	for (uint32_t i = 0; i < r->dim; i++)
		r->w[i] -= (double)hp->lr * g[i];
}

static void ref_adagrad(const struct embkv_opt_attr *hp, struct ref_row *r,
			const float *g)
{
	for (uint32_t i = 0; i < r->dim; i++) {
		r->s[i] += (double)g[i] * g[i];
		r->w[i] -= (double)hp->lr * g[i] /
			   (sqrt(r->s[i]) + (double)hp->eps);
	}
}

/* Row-wise Adagrad: s[0] += mean(g^2); w -= lr g / (sqrt(s[0]) + eps). */
static void ref_rowwise_adagrad(const struct embkv_opt_attr *hp,
				struct ref_row *r, const float *g)
{
	double sum = 0.0;

	for (uint32_t i = 0; i < r->dim; i++)
		sum += (double)g[i] * g[i];
	r->s[0] += sum / r->dim;
	for (uint32_t i = 0; i < r->dim; i++)
		r->w[i] -= (double)hp->lr * g[i] /
			   (sqrt(r->s[0]) + (double)hp->eps);
}

static void ref_adam(const struct embkv_opt_attr *hp, struct ref_row *r,
		     const float *g)
{
	const double b1 = hp->beta1, b2 = hp->beta2;
	double *m = r->s, *v = r->s + r->dim;

	r->t++;
	for (uint32_t i = 0; i < r->dim; i++) {
		m[i] = b1 * m[i] + (1.0 - b1) * g[i];
		v[i] = b2 * v[i] + (1.0 - b2) * (double)g[i] * g[i];
		const double mhat = m[i] / (1.0 - pow(b1, r->t));
		const double vhat = v[i] / (1.0 - pow(b2, r->t));

		r->w[i] -= (double)hp->lr * mhat / (sqrt(vhat) + hp->eps);
	}
}

static void ref_ftrl(const struct embkv_opt_attr *hp, struct ref_row *r,
		     const float *g)
{
	const double alpha = hp->lr, l1 = hp->l1, l2 = hp->l2;
	double *z = r->s, *n = r->s + r->dim;

	for (uint32_t i = 0; i < r->dim; i++) {
		const double gi = g[i];
		const double sigma = (sqrt(n[i] + gi * gi) - sqrt(n[i])) /
				     alpha;

		z[i] += gi - sigma * r->w[i];
		n[i] += gi * gi;
		if (fabs(z[i]) <= l1)
			r->w[i] = 0.0;
		else
			r->w[i] = -(z[i] - copysign(l1, z[i])) /
				  ((hp->ftrl_beta + sqrt(n[i])) / alpha + l2);
	}
}

static void ref_step(const struct embkv_opt_attr *hp, struct ref_row *r,
		     const float *g)
{
	switch (hp->type) {
	case EMBKV_OPT_SGD:
		ref_sgd(hp, r, g);
		break;
	case EMBKV_OPT_ADAGRAD:
		ref_adagrad(hp, r, g);
		break;
	case EMBKV_OPT_ADAM:
		ref_adam(hp, r, g);
		break;
	case EMBKV_OPT_FTRL:
		ref_ftrl(hp, r, g);
		break;
	case EMBKV_OPT_ROWWISE_ADAGRAD:
		ref_rowwise_adagrad(hp, r, g);
		break;
	default:
		fail_msg("no reference for type %d", (int)hp->type);
	}
}

/* ------------------------------------------------------------------ */
/* Hyper-parameters used across the tests                              */
/* ------------------------------------------------------------------ */

#define LR_SGD 0.05f
#define LR_ADAGRAD 0.05f
#define ADAGRAD_EPS 1e-8f
#define ADAGRAD_ACC0 0.1f
#define LR_ADAM 0.01f
#define ADAM_B1 0.9f
#define ADAM_B2 0.999f
#define ADAM_EPS 1e-8f
#define LR_FTRL 0.1f
#define FTRL_L1_WEAK 1e-3f
#define FTRL_L1_STRONG 10.0f
#define FTRL_L2 0.5f
#define FTRL_BETA 1.0f
/* An eps large enough next to sqrt(acc) and sqrt(v_hat) that its place in
 * the formula shows in the result (1e-8 would be invisible). */
#define LARGE_EPS 0.1f

static struct embkv_opt_attr hp_of(enum embkv_optimizer type)
{
	struct embkv_opt_attr hp;

	memset(&hp, 0, sizeof(hp));
	hp.type = type;
	switch (type) {
	case EMBKV_OPT_SGD:
		hp.lr = LR_SGD;
		break;
	case EMBKV_OPT_ADAGRAD:
	case EMBKV_OPT_ROWWISE_ADAGRAD:
		hp.lr = LR_ADAGRAD;
		hp.eps = ADAGRAD_EPS;
		hp.initial_accum = ADAGRAD_ACC0;
		break;
	case EMBKV_OPT_ADAM:
		hp.lr = LR_ADAM;
		hp.beta1 = ADAM_B1;
		hp.beta2 = ADAM_B2;
		hp.eps = ADAM_EPS;
		break;
	case EMBKV_OPT_FTRL:
	default:
		hp.lr = LR_FTRL;
		hp.l1 = FTRL_L1_WEAK;
		hp.l2 = FTRL_L2;
		hp.ftrl_beta = FTRL_BETA;
		break;
	}
	return hp;
}

/* ------------------------------------------------------------------ */
/* A row under test: kernel copy and reference copy side by side        */
/* ------------------------------------------------------------------ */

struct row {
	const struct embkv_optim_ops *ops;
	uint32_t dim, nstate;
	float *w;       /* dim + 1: last is a canary */
	float *s;       /* nstate + 1: last is a canary */
	uint32_t step;
	struct ref_row ref;
};

static void row_setup(struct row *r, const struct embkv_opt_attr *hp,
		      uint32_t dim)
{
	r->ops = embkv_optim_get(hp->type);
	assert_non_null(r->ops);
	r->dim = dim;
	r->nstate = r->ops->state_floats(dim);
	r->w = malloc((dim + 1) * sizeof(float));
	r->s = malloc((r->nstate + 1) * sizeof(float));
	r->ref.w = calloc(dim, sizeof(double));
	r->ref.s = calloc(r->nstate + 1, sizeof(double));
	assert_true(r->w && r->s && r->ref.w && r->ref.s);
	r->ref.dim = dim;
	r->ref.t = 0;
	r->step = 0;

	for (uint32_t i = 0; i < dim; i++) {
		r->w[i] = w0_at(i);
		r->ref.w[i] = r->w[i];
	}
	r->w[dim] = CANARY;
	for (uint32_t i = 0; i < r->nstate; i++)
		r->s[i] = CANARY; /* init_state must overwrite all of it */
	r->s[r->nstate] = CANARY;
	r->ops->init_state(hp, dim, r->s);
	if (hp->type == EMBKV_OPT_ADAGRAD ||
	    hp->type == EMBKV_OPT_ROWWISE_ADAGRAD)
		for (uint32_t i = 0; i < r->nstate; i++)
			r->ref.s[i] = hp->initial_accum;
}

static void row_teardown(struct row *r)
{
	free(r->w);
	free(r->s);
	free(r->ref.w);
	free(r->ref.s);
}

static void row_apply(struct row *r, const struct embkv_opt_attr *hp,
		      const float *g)
{
	r->ops->apply(hp, r->dim, r->w, r->nstate ? r->s : NULL,
		      r->ops->needs_step ? &r->step : NULL, g);
	ref_step(hp, &r->ref, g);
	assert_true(r->w[r->dim] == CANARY);
	assert_true(r->s[r->nstate] == CANARY);
	if (r->ops->needs_step)
		assert_int_equal(r->step, r->ref.t);
}

/*
 * Runs STEPS updates with varying gradients on kernel and reference and
 * compares weights and state after each one. state_floor: the scale of the
 * state values (see assert_close). w_floor likewise for the weights.
 */
static void run_against_reference(const struct embkv_opt_attr *hp,
				  uint32_t dim, double w_floor,
				  double state_floor)
{
	struct row r;
	float *g = malloc(dim * sizeof(float));

	assert_non_null(g);
	row_setup(&r, hp, dim);
	assert_close(r.s, r.ref.s, r.nstate, state_floor, "initial state", 0);
	for (uint32_t t = 0; t < STEPS; t++) {
		for (uint32_t i = 0; i < dim; i++)
			g[i] = grad_at(t, i);
		row_apply(&r, hp, g);
		assert_close(r.w, r.ref.w, dim, w_floor, "w", t);
		assert_close(r.s, r.ref.s, r.nstate, state_floor, "state", t);
	}
	row_teardown(&r);
	free(g);
}

/* ------------------------------------------------------------------ */
/* Tests                                                                */
/* ------------------------------------------------------------------ */

static void test_ops_table(void **unused)
{
	static const char *const names[EMBKV_OPT_COUNT] = {
		[EMBKV_OPT_SGD] = "sgd", [EMBKV_OPT_ADAGRAD] = "adagrad",
		[EMBKV_OPT_ADAM] = "adam", [EMBKV_OPT_FTRL] = "ftrl",
		[EMBKV_OPT_ROWWISE_ADAGRAD] = "rowwise_adagrad",
	};
	static const uint32_t per_dim[EMBKV_OPT_COUNT] = {
		[EMBKV_OPT_SGD] = 0, [EMBKV_OPT_ADAGRAD] = 1,
		[EMBKV_OPT_ADAM] = 2, [EMBKV_OPT_FTRL] = 2,
		[EMBKV_OPT_ROWWISE_ADAGRAD] = 0,
	};

	(void)unused;
	for (int type = 0; type < EMBKV_OPT_COUNT; type++) {
		const struct embkv_optim_ops *ops = embkv_optim_get(type);

		assert_non_null(ops);
		assert_string_equal(ops->name, names[type]);
		assert_int_equal(ops->state_floats(DIM_ODD),
				 type == EMBKV_OPT_ROWWISE_ADAGRAD
					 ? 1 : per_dim[type] * DIM_ODD);
		assert_int_equal(ops->needs_step, type == EMBKV_OPT_ADAM);
		assert_non_null(ops->init_state);
		assert_non_null(ops->apply);
	}
	assert_null(embkv_optim_get(EMBKV_OPT_COUNT));
	assert_null(embkv_optim_get((enum embkv_optimizer)-1));
}

static void test_sgd_matches_reference(void **unused)
{
	const struct embkv_opt_attr hp = hp_of(EMBKV_OPT_SGD);

	(void)unused;
	run_against_reference(&hp, DIM_ODD, 0.0, 0.0);
	run_against_reference(&hp, DIM_WIDE, 0.0, 0.0);
}

static void test_adagrad_initial_accum(void **unused)
{
	const struct embkv_opt_attr hp = hp_of(EMBKV_OPT_ADAGRAD);
	struct row r;

	(void)unused;
	row_setup(&r, &hp, DIM_ODD);
	assert_int_equal(r.nstate, DIM_ODD);
	for (uint32_t i = 0; i < r.nstate; i++)
		assert_true(r.s[i] == ADAGRAD_ACC0);
	assert_true(r.s[r.nstate] == CANARY);
	row_teardown(&r);
}

static void test_adagrad_matches_reference(void **unused)
{
	const struct embkv_opt_attr hp = hp_of(EMBKV_OPT_ADAGRAD);

	struct embkv_opt_attr big_eps = hp;

	(void)unused;
	big_eps.eps = LARGE_EPS;
	/* The accumulator only grows from initial_accum: no cancellation. */
	run_against_reference(&hp, DIM_ODD, 0.0, 0.0);
	run_against_reference(&hp, DIM_WIDE, 0.0, 0.0);
	run_against_reference(&big_eps, DIM_ODD, 0.0, 0.0);
}

/* Row-wise Adagrad: one accumulator fed the mean of g^2 (so a row of
 * larger gradients moves less per unit of gradient), against the
 * double-precision formula over STEPS steps, dims 37 and 64, and with an
 * eps large enough to show where it sits. */
static void test_rowwise_adagrad_matches_reference(void **unused)
{
	const struct embkv_opt_attr hp = hp_of(EMBKV_OPT_ROWWISE_ADAGRAD);
	struct embkv_opt_attr big_eps = hp;
	struct row r;
	float g[DIM_WIDE];

	(void)unused;
	big_eps.eps = LARGE_EPS;
	run_against_reference(&hp, DIM_ODD, 0.0, 0.0);
	run_against_reference(&hp, DIM_WIDE, 0.0, 0.0);
	run_against_reference(&big_eps, DIM_ODD, 0.0, 0.0);
	/* One step by hand: acc = 0.1 + mean(g^2), every weight moves by
	 * the same multiple of its gradient. */
	row_setup(&r, &hp, DIM_WIDE);
	assert_int_equal(r.nstate, 1);
	assert_true(r.s[0] == ADAGRAD_ACC0);
	for (uint32_t i = 0; i < DIM_WIDE; i++)
		g[i] = i % 2 ? 0.5f : -0.25f;
	row_apply(&r, &hp, g);
	assert_true(fabs(r.s[0] - (ADAGRAD_ACC0 + (0.25 + 0.0625) / 2)) <
		    1e-7);
	for (uint32_t i = 0; i < DIM_WIDE; i++) {
		double mult = LR_ADAGRAD / (sqrt(ADAGRAD_ACC0 + 0.15625) +
					    ADAGRAD_EPS);

		assert_true(fabs(r.w[i] - (w0_at(i) - mult * g[i])) < 1e-6);
	}
	row_teardown(&r);
}

static void test_adam_matches_reference(void **unused)
{
	const struct embkv_opt_attr hp = hp_of(EMBKV_OPT_ADAM);

	struct embkv_opt_attr big_eps = hp;

	(void)unused;
	big_eps.eps = LARGE_EPS;
	/* m is a running mean of gradients of both signs: it may pass near
	 * zero, so it is held to the gradient's scale. */
	run_against_reference(&hp, DIM_ODD, 0.0, GRAD_AMP);
	run_against_reference(&hp, DIM_WIDE, 0.0, GRAD_AMP);
	run_against_reference(&big_eps, DIM_ODD, 0.0, GRAD_AMP);
}

/*
 * Lazy Adam: each row counts its own steps. Two rows with identical
 * weights, state and gradient but different step counts must move by
 * different amounts, each matching the reference at its own t; and
 * updating one row never advances the other's counter.
 */
#define ADAM_OLD_ROW_STEPS 9u

static void test_adam_per_row_step(void **unused)
{
	const struct embkv_opt_attr hp = hp_of(EMBKV_OPT_ADAM);
	struct row fresh, old;
	float g[DIM_ODD];

	(void)unused;
	row_setup(&fresh, &hp, DIM_ODD);
	row_setup(&old, &hp, DIM_ODD);
	for (uint32_t i = 0; i < DIM_ODD; i++)
		g[i] = grad_at(0, i);

	/* Same m, v, w; only the step count differs. */
	for (uint32_t i = 0; i < fresh.nstate; i++) {
		fresh.s[i] = old.s[i] = (float)(GRAD_DRIFT * (1.0 + i % 5));
		fresh.ref.s[i] = old.ref.s[i] = fresh.s[i];
	}
	old.step = ADAM_OLD_ROW_STEPS;
	old.ref.t = ADAM_OLD_ROW_STEPS;

	row_apply(&fresh, &hp, g);
	assert_int_equal(fresh.step, 1);
	assert_int_equal(old.step, ADAM_OLD_ROW_STEPS);
	row_apply(&old, &hp, g);
	assert_int_equal(fresh.step, 1);
	assert_int_equal(old.step, ADAM_OLD_ROW_STEPS + 1);

	assert_close(fresh.w, fresh.ref.w, DIM_ODD, 0.0, "fresh w", 1);
	assert_close(old.w, old.ref.w, DIM_ODD, 0.0, "old w", 1);
	for (uint32_t i = 0; i < DIM_ODD; i++) {
		/* Bias correction is larger at t = 1 than at t = 10. */
		const double d_fresh = fabs((double)fresh.w[i] - w0_at(i));
		const double d_old = fabs((double)old.w[i] - w0_at(i));

		assert_true(d_fresh > d_old * (1.0 + 1e3 * REL_TOL));
	}

	/* Interleaved updates keep separate clocks. */
	for (uint32_t t = 1; t < STEPS; t++) {
		for (uint32_t i = 0; i < DIM_ODD; i++)
			g[i] = grad_at(t, i);
		row_apply(&old, &hp, g);
		if (t % 2)
			row_apply(&fresh, &hp, g);
		assert_close(fresh.w, fresh.ref.w, DIM_ODD, 0.0, "fresh w", t);
		assert_close(old.w, old.ref.w, DIM_ODD, 0.0, "old w", t);
		assert_close(fresh.s, fresh.ref.s, fresh.nstate, GRAD_AMP,
			     "fresh state", t);
		assert_close(old.s, old.ref.s, old.nstate, GRAD_AMP,
			     "old state", t);
	}
	assert_int_equal(fresh.step, 1 + STEPS / 2);
	assert_int_equal(old.step, ADAM_OLD_ROW_STEPS + STEPS);
	row_teardown(&fresh);
	row_teardown(&old);
}

/* The step counter saturates instead of wrapping to 0 (1 - b^0 = 0). */
static void test_adam_step_saturates(void **unused)
{
	const struct embkv_opt_attr hp = hp_of(EMBKV_OPT_ADAM);
	struct row r;
	float g[DIM_ODD];

	(void)unused;
	row_setup(&r, &hp, DIM_ODD);
	for (uint32_t i = 0; i < DIM_ODD; i++)
		g[i] = grad_at(1, i);
	r.step = UINT32_MAX;
	r.ops->apply(&hp, DIM_ODD, r.w, r.s, &r.step, g);
	assert_int_equal(r.step, UINT32_MAX);
	for (uint32_t i = 0; i < DIM_ODD; i++)
		assert_true(isfinite(r.w[i]));
	row_teardown(&r);
}

static void test_ftrl_matches_reference(void **unused)
{
	const struct embkv_opt_attr hp = hp_of(EMBKV_OPT_FTRL);

	(void)unused;
	/*
	 * z sums gradients of both signs and n only grows. Weights are
	 * (|z| - l1) / denom: held to the scale of z / denom, since a weight
	 * near zero is a difference of terms of that size.
	 */
	run_against_reference(&hp, DIM_ODD, GRAD_AMP * LR_FTRL, GRAD_AMP);
	run_against_reference(&hp, DIM_WIDE, GRAD_AMP * LR_FTRL, GRAD_AMP);
}

static void ftrl_run(const struct embkv_opt_attr *hp, uint32_t dim,
		     struct row *r)
{
	float *g = malloc(dim * sizeof(float));

	assert_non_null(g);
	row_setup(r, hp, dim);
	for (uint32_t t = 0; t < STEPS; t++) {
		for (uint32_t i = 0; i < dim; i++)
			g[i] = grad_at(t, i);
		row_apply(r, hp, g);
	}
	free(g);
}

static void test_ftrl_l1_sparsity(void **unused)
{
	struct embkv_opt_attr hp = hp_of(EMBKV_OPT_FTRL);
	struct row r;

	(void)unused;
	/* Strong L1: every weight is exactly +0.0f. */
	hp.l1 = FTRL_L1_STRONG;
	ftrl_run(&hp, DIM_ODD, &r);
	for (uint32_t i = 0; i < DIM_ODD; i++) {
		assert_true(r.w[i] == 0.0f);
		assert_false(signbit(r.w[i]));
		assert_true(r.ref.w[i] == 0.0);
	}
	row_teardown(&r);

	/* Weak L1: no weight is zero, and all match the reference. */
	hp.l1 = FTRL_L1_WEAK;
	ftrl_run(&hp, DIM_ODD, &r);
	for (uint32_t i = 0; i < DIM_ODD; i++)
		assert_true(r.w[i] != 0.0f);
	assert_close(r.w, r.ref.w, DIM_ODD, GRAD_AMP * LR_FTRL, "w", STEPS);
	row_teardown(&r);
}

static void test_check_accepts_valid(void **unused)
{
	(void)unused;
	for (int type = 0; type < EMBKV_OPT_COUNT; type++) {
		struct embkv_opt_attr hp = hp_of(type);

		assert_int_equal(embkv_optim_check(&hp), 0);
	}
	/* Boundary values that are allowed. */
	struct embkv_opt_attr hp = hp_of(EMBKV_OPT_ADAM);

	hp.beta1 = 0.0f;
	hp.beta2 = 0.0f;
	assert_int_equal(embkv_optim_check(&hp), 0);
	hp = hp_of(EMBKV_OPT_ADAGRAD);
	hp.initial_accum = 0.0f;
	assert_int_equal(embkv_optim_check(&hp), 0);
	hp = hp_of(EMBKV_OPT_FTRL);
	hp.l1 = hp.l2 = hp.ftrl_beta = 0.0f;
	assert_int_equal(embkv_optim_check(&hp), 0);
	/* eps does not matter to SGD. */
	hp = hp_of(EMBKV_OPT_SGD);
	hp.eps = 0.0f;
	assert_int_equal(embkv_optim_check(&hp), 0);
}

static void expect_einval(struct embkv_opt_attr hp, const char *what)
{
	const int rc = embkv_optim_check(&hp);

	if (rc != -EINVAL)
		fail_msg("%s: type %d accepted (rc %d)", what, (int)hp.type, rc);
}

static void test_check_rejects_bad(void **unused)
{
	struct embkv_opt_attr hp;

	(void)unused;
	assert_int_equal(embkv_optim_check(NULL), -EINVAL);
	for (int type = 0; type < EMBKV_OPT_COUNT; type++) {
		hp = hp_of(type);
		hp.lr = 0.0f;
		expect_einval(hp, "lr 0");
		hp.lr = -LR_SGD;
		expect_einval(hp, "lr < 0");
		hp.lr = NAN;
		expect_einval(hp, "lr NaN");
		hp.lr = INFINITY;
		expect_einval(hp, "lr inf");
		hp = hp_of(type);
		hp.l2 = NAN; /* non-finite anywhere is refused */
		expect_einval(hp, "NaN in an unused field");
	}

	hp = hp_of(EMBKV_OPT_ADAM);
	hp.beta1 = 1.0f;
	expect_einval(hp, "beta1 1");
	hp.beta1 = -0.1f;
	expect_einval(hp, "beta1 < 0");
	hp = hp_of(EMBKV_OPT_ADAM);
	hp.beta2 = 1.0f;
	expect_einval(hp, "beta2 1");
	hp.beta2 = NAN;
	expect_einval(hp, "beta2 NaN");
	hp = hp_of(EMBKV_OPT_ADAM);
	hp.eps = 0.0f;
	expect_einval(hp, "adam eps 0");
	hp.eps = -ADAM_EPS;
	expect_einval(hp, "adam eps < 0");

	hp = hp_of(EMBKV_OPT_ADAGRAD);
	hp.eps = 0.0f;
	expect_einval(hp, "adagrad eps 0");
	hp = hp_of(EMBKV_OPT_ADAGRAD);
	hp.initial_accum = -ADAGRAD_ACC0;
	expect_einval(hp, "initial_accum < 0");
	hp.initial_accum = INFINITY;
	expect_einval(hp, "initial_accum inf");

	hp = hp_of(EMBKV_OPT_FTRL);
	hp.l1 = -FTRL_L1_WEAK;
	expect_einval(hp, "l1 < 0");
	hp = hp_of(EMBKV_OPT_FTRL);
	hp.l2 = -FTRL_L2;
	expect_einval(hp, "l2 < 0");
	hp = hp_of(EMBKV_OPT_FTRL);
	hp.ftrl_beta = -FTRL_BETA;
	expect_einval(hp, "ftrl_beta < 0");

	hp = hp_of(EMBKV_OPT_SGD);
	hp.type = EMBKV_OPT_COUNT;
	expect_einval(hp, "type COUNT");
	hp.type = (enum embkv_optimizer)-1;
	expect_einval(hp, "type -1");
}

/* Every instruction set the CPU has gives bit-identical rows, states and
 * step counts to the baseline: the server's results must not depend on
 * which machine of a cluster applied a push. */
static void test_isa_variants_identical(void **state)
{
	static const uint32_t dims[] = { 1, 7, 37, 64, 129 };
	struct embkv_opt_attr hp = { 0 };

	(void)state;
	hp.lr = 0.05f;
	hp.beta1 = 0.9f;
	hp.beta2 = 0.999f;
	hp.eps = 1e-6f;
	hp.initial_accum = 0.1f;
	hp.l1 = 0.01f;
	hp.l2 = 0.001f;
	hp.ftrl_beta = 1.0f;
	assert_true(embkv_optim_isa_supported(EMBKV_OPTIM_BASE));
	assert_null(embkv_optim_get_isa(EMBKV_OPT_SGD, EMBKV_OPTIM_ISA_COUNT));
	for (int isa = 1; isa < EMBKV_OPTIM_ISA_COUNT; isa++) {
		if (!embkv_optim_isa_supported((enum embkv_optim_isa)isa)) {
			print_message("instruction set %d absent: skipped\n", isa);
			continue;
		}
		for (int type = 0; type < EMBKV_OPT_COUNT; type++)
			for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
				const struct embkv_optim_ops *a = embkv_optim_get_isa(
					(enum embkv_optimizer)type, EMBKV_OPTIM_BASE);
				const struct embkv_optim_ops *b = embkv_optim_get_isa(
					(enum embkv_optimizer)type,
					(enum embkv_optim_isa)isa);
				uint32_t dim = dims[d], sf = a->state_floats(dim);
				float wa[129], wb[129], sa[258], sb[258], g[129];
				uint32_t ta = 0, tb = 0;

				hp.type = (enum embkv_optimizer)type;
				for (uint32_t i = 0; i < dim; i++)
					wa[i] = wb[i] = 0.01f * (float)i - 0.3f;
				a->init_state(&hp, dim, sa);
				b->init_state(&hp, dim, sb);
				for (int step = 0; step < 6; step++) {
					for (uint32_t i = 0; i < dim; i++)
						g[i] = sinf((float)(i * 7 + step)) * 0.5f;
					a->apply(&hp, dim, wa, sf ? sa : NULL,
						 a->needs_step ? &ta : NULL, g);
					b->apply(&hp, dim, wb, sf ? sb : NULL,
						 b->needs_step ? &tb : NULL, g);
				}
				assert_memory_equal(wa, wb, dim * sizeof(float));
				if (sf)
					assert_memory_equal(sa, sb, sf * sizeof(float));
				assert_int_equal(ta, tb);
			}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops_table),
		cmocka_unit_test(test_sgd_matches_reference),
		cmocka_unit_test(test_adagrad_initial_accum),
		cmocka_unit_test(test_adagrad_matches_reference),
		cmocka_unit_test(test_rowwise_adagrad_matches_reference),
		cmocka_unit_test(test_adam_matches_reference),
		cmocka_unit_test(test_adam_per_row_step),
		cmocka_unit_test(test_adam_step_saturates),
		cmocka_unit_test(test_ftrl_matches_reference),
		cmocka_unit_test(test_ftrl_l1_sparsity),
		cmocka_unit_test(test_check_accepts_valid),
		cmocka_unit_test(test_check_rejects_bad),
		cmocka_unit_test(test_isa_variants_identical),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
