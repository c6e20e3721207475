/*
 * embkvctl set-table NAME [--lr X] [--eps X] [--beta1 X] [--beta2 X]
 *                         [--initial-accum X] [--l1 X] [--l2 X]
 *                         [--ftrl-beta X]
 *
 * Changes a table's optimizer hyper-parameters at run time (a warm-up or
 * decay step by hand, or from a cron job): reads the table's current
 * values from the servers (embkv_table_locate, which also refuses a
 * table the servers disagree about), replaces the fields given, and sends
 * them to every server of the table's shard map (embkv_table_set_opt,
 * TABLE_SET_OPT). The optimizer type never changes. Prints the old and
 * new learning rate (or JSON with --json).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ctl.h"

enum {
	S_LR = 1000, S_BETA1, S_BETA2, S_EPS, S_ACCUM, S_L1, S_L2, S_FTRL_BETA,
};

static float *field(struct embkv_opt_attr *o, int which)
{
	switch (which) {
	case S_LR: return &o->lr;
	case S_BETA1: return &o->beta1;
	case S_BETA2: return &o->beta2;
	case S_EPS: return &o->eps;
	case S_ACCUM: return &o->initial_accum;
	case S_L1: return &o->l1;
	case S_L2: return &o->l2;
	case S_FTRL_BETA: return &o->ftrl_beta;
	}
	return NULL;
}

int embkv_ctl_settable_parse(int argc, char **argv, struct embkv_ctl_args *a)
{
	static const struct option opts[] = {
		{ "lr", required_argument, NULL, S_LR },
		{ "beta1", required_argument, NULL, S_BETA1 },
		{ "beta2", required_argument, NULL, S_BETA2 },
		{ "eps", required_argument, NULL, S_EPS },
		{ "initial-accum", required_argument, NULL, S_ACCUM },
		{ "l1", required_argument, NULL, S_L1 },
		{ "l2", required_argument, NULL, S_L2 },
		{ "ftrl-beta", required_argument, NULL, S_FTRL_BETA },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	memset(&a->set_opt, 0, sizeof(a->set_opt));
	a->set_mask = 0;
	opterr = 0;
	optind = 0;
	while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (o == 'h')
			return HELP_SHOWN;
		if (o == '?' || o == ':')
			return embkv_ctl_usage_error("set-table: bad or "
						     "incomplete option %s",
						     argv[optind - 1]);
		if (embkv_ctl_parse_float(optarg, field(&a->set_opt, o)))
			return embkv_ctl_usage_error("set-table: bad value "
						     "in %s", argv[optind - 1]);
		a->set_mask |= 1u << (o - S_LR);
	}
	if (optind + 1 != argc || argv[optind][0] == '-')
		return embkv_ctl_usage_error("set-table: %s",
					     "needs exactly one NAME");
	if (!a->set_mask)
		return embkv_ctl_usage_error("set-table: %s", "nothing to set "
					     "(--lr X, --eps X, ...)");
	a->name = argv[optind];
	return 0;
}

int embkv_ctl_settable_run(struct embkv_client *c,
			   const struct embkv_ctl_args *a, int json)
{
	struct embkv_table_handle *t = NULL;
	struct embkv_table_attr cur;
	struct embkv_opt_attr o;
	int rc;

	rc = embkv_table_locate(c, a->name, &cur, NULL, 0);
	if (rc)
		return embkv_ctl_failed("set-table", rc);
	o = cur.opt;
	for (int w = S_LR; w <= S_FTRL_BETA; w++)
		if (a->set_mask & (1u << (w - S_LR)))
			*field(&o, w) = *field((struct embkv_opt_attr *)
					       &a->set_opt, w);
	rc = embkv_table_open(c, a->name, &t);
	if (!rc)
		rc = embkv_table_set_opt(t, &o);
	embkv_table_close(t);
	if (rc == -EINVAL) {
		fprintf(stderr, "%s: set-table %s: the servers refused the "
			"values for optimizer %s (lr must be > 0; see "
			"create-table --help)\n", embkv_ctl_prog, a->name,
			embkv_optimizer_name(o.type));
		return EXIT_FAILED;
	}
	if (rc)
		return embkv_ctl_failed("set-table", rc);
	if (json) {
		printf("{\"table\":");
		embkv_ctl_json_str(a->name);
		printf(",\"optimizer\":\"%s\",\"lr\":%.9g,\"old_lr\":%.9g,"
		       "\"beta1\":%.9g,\"beta2\":%.9g,\"eps\":%.9g,"
		       "\"initial_accum\":%.9g,\"l1\":%.9g,\"l2\":%.9g,"
		       "\"ftrl_beta\":%.9g}\n", embkv_optimizer_name(o.type),
		       (double)o.lr, (double)cur.opt.lr, (double)o.beta1,
		       (double)o.beta2, (double)o.eps,
		       (double)o.initial_accum, (double)o.l1, (double)o.l2,
		       (double)o.ftrl_beta);
	} else {
		printf("table %s: %s lr %g -> %g\n", a->name,
		       embkv_optimizer_name(o.type), (double)cur.opt.lr,
		       (double)o.lr);
	}
	return 0;
}
