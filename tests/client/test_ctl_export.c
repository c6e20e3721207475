/*
 * embkvctl export / import against two real embkvd processes (static
 * peers, 127.0.0.1, random ports), through the embkvctl binary:
 * - export (fp32) then import into a fresh table gives bitwise the same
 *   rows (pulled and compared); the same with --fp16 within half
 *   precision; the file's header says rows, dim and dtype, and its length
 *   is the documented one;
 * - a file with a flipped byte (values, header), a truncated file and one
 *   with trailing bytes are refused, naming the file, and the target
 *   table stays empty; a dim mismatch is refused naming the file; an
 *   empty table round-trips; a missing table writes nothing;
 * - Debian's python (/usr/bin/python3) reads the file with the lines of
 *   tools/EXPORT.md and compares with the pulled rows (skipped, with the
 *   reason printed, when numpy is absent).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <embkv/embkv.h>
#include "tests/client/spawn.h"

#define NSRV 2u
#define DIM 8u
#define PARTS 8u
#define NKEYS 2000u
#define READY_MS 10000u
#define STOP_MS 10000u
#define OUT_MAX 65536u
#define CMD_MAX 8192u
#define SERVERS_MAX 2048u
#define DIR_MAX 64u
#define PATH_MAX_T 512u
#define HDR 64u
#define TRAILER 16u
#define PY "/usr/bin/python3"
#define PY_SKIP 77

static const char *const extra[] = { "--threads", "1", NULL };

struct state {
	struct embkv_test_cluster cl;
	struct embkv_client *c;
	char dir[DIR_MAX];
	char servers[SERVERS_MAX];
	uint64_t keys[NKEYS];
	float vals[NKEYS * DIM];
};

static int setup(void **state)
{
	struct state *s = calloc(1, sizeof(*s));
	struct embkv_client_attr ca;
	size_t off = 0;

	if (!s)
		return -1;
	*state = s;
	snprintf(s->dir, sizeof(s->dir), "/tmp/embkv-export-XXXXXX");
	if (!mkdtemp(s->dir))
		return -1;
	if (embkv_test_cluster_start(EMBKVD_PATH, NSRV, extra, READY_MS,
				     &s->cl))
		return -1;
	for (uint32_t i = 0; i < s->cl.n; i++)
		off += (size_t)snprintf(s->servers + off,
					sizeof(s->servers) - off, "%s%s",
					i ? "," : "", s->cl.addrs[i]);
	embkv_client_attr_init(&ca);
	ca.servers = s->cl.addrs;
	ca.nservers = s->cl.n;
	return embkv_client_create(&ca, &s->c) ? -1 : 0;
}

static int teardown(void **state)
{
	struct state *s = *state;
	char cmd[CMD_MAX];

	embkv_client_destroy(s->c);
	embkv_test_cluster_stop(&s->cl, STOP_MS);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
	if (system(cmd))
		print_message("could not remove %s\n", s->dir);
	free(s);
	return 0;
}

/* Runs embkvctl --servers ... ARGS, stdout and stderr in out: its exit
 * status. */
static int ctl(struct state *s, char *out, const char *args)
{
	char cmd[CMD_MAX];
	size_t n = 0, got;
	FILE *f;
	int st;

	snprintf(cmd, sizeof(cmd), "%s --servers %s %s 2>&1", EMBKVCTL_PATH,
		 s->servers, args);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (n + 1 < OUT_MAX &&
	       (got = fread(out + n, 1, OUT_MAX - 1 - n, f)) > 0)
		n += got;
	out[n] = '\0';
	st = pclose(f);
	print_message("$ %s\n%s", cmd, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void assert_has(const char *out, const char *what)
{
	if (!strstr(out, what))
		fail_msg("output lacks \"%s\"", what);
}

static void create(struct state *s, const char *name, uint32_t dim)
{
	struct embkv_table_attr a;

	embkv_table_attr_init(&a);
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.dim = dim;
	a.partitions = PARTS;
	a.capacity = 100000;
	assert_int_equal(embkv_table_create_remote(s->c, &a), 0);
}

/* Values that exercise fp16: ordinary, tiny (subnormal in half), large
 * (rounded coarsely), negative, zero. */
static float value(uint32_t i, uint32_t j)
{
	switch ((i + j) % 5) {
	case 0:
		return (float)i * 0.001f - (float)j;
	case 1:
		return 1e-6f * (float)(j + 1);
	case 2:
		return 1000.0f + (float)i * 0.37f;
	case 3:
		return -0.5f / (float)(i + 1);
	default:
		return 0.0f;
	}
}

static void fill_src(struct state *s)
{
	struct embkv_table_handle *t;

	create(s, "src", DIM);
	assert_int_equal(embkv_table_open(s->c, "src", &t), 0);
	for (uint32_t i = 0; i < NKEYS; i++) {
		s->keys[i] = 0x5bd1e995ull * (i + 7);
		for (uint32_t j = 0; j < DIM; j++)
			s->vals[(size_t)i * DIM + j] = value(i, j);
	}
	assert_int_equal(embkv_assign(t, NKEYS, s->keys, s->vals), 0);
	embkv_table_close(t);
}

/* Pulls (infer mode) every source key from table name: found count. */
static uint32_t pull_all(struct state *s, const char *name, float *out)
{
	struct embkv_table_handle *t;
	uint8_t *found = malloc(NKEYS);
	uint32_t nf = 0;

	assert_non_null(found);
	assert_int_equal(embkv_table_open(s->c, name, &t), 0);
	assert_int_equal(embkv_pull(t, NKEYS, s->keys, out, found,
				    EMBKV_MODE_INFER, NULL), 0);
	for (uint32_t i = 0; i < NKEYS; i++)
		nf += found[i];
	embkv_table_close(t);
	free(found);
	return nf;
}

static void path_of(const struct state *s, char *buf, const char *name)
{
	snprintf(buf, PATH_MAX_T, "%s/%s", s->dir, name);
}

static off_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* Checks the header fields a reader needs. */
static void check_header(const char *path, uint32_t dtype, uint64_t rows)
{
	uint8_t h[HDR];
	uint32_t d, dim;
	uint64_t r;
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fread(h, 1, HDR, f), HDR);
	fclose(f);
	assert_memory_equal(h, "EMBKVEX1", 8);
	memcpy(&d, h + 12, 4);
	memcpy(&dim, h + 16, 4);
	memcpy(&r, h + 24, 8);
	assert_int_equal(d, dtype);
	assert_int_equal(dim, DIM);
	assert_int_equal(r, rows);
	assert_int_equal(file_size(path),
			 (off_t)(HDR + rows * 8 + rows * DIM *
				 (dtype ? 2 : 4) + TRAILER));
}

/* The pulled rows as a raw file for export_check.py. */
static void write_pulled(const struct state *s, const char *path,
			 const float *vals)
{
	FILE *f = fopen(path, "wb");
	uint64_t n = NKEYS;

	assert_non_null(f);
	assert_int_equal(fwrite(&n, 8, 1, f), 1);
	assert_int_equal(fwrite(s->keys, 8, NKEYS, f), NKEYS);
	assert_int_equal(fwrite(vals, sizeof(float) * DIM, NKEYS, f), NKEYS);
	assert_int_equal(fclose(f), 0);
}

static void py_check(const char *file, const char *pulled, const char *tol)
{
	char cmd[CMD_MAX];
	int st;

	if (access(PY, X_OK)) {
		print_message("python check skipped: %s is absent\n", PY);
		return;
	}
	snprintf(cmd, sizeof(cmd), "%s %s %s %s %s", PY, EXPORT_CHECK_PY,
		 file, pulled, tol);
	st = system(cmd);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == PY_SKIP) {
		print_message("python check skipped (see its reason above)\n");
		return;
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_round_trip(void **state)
{
	struct state *s = *state;
	char out[OUT_MAX], args[CMD_MAX], f32[PATH_MAX_T], f16[PATH_MAX_T],
		pulled[PATH_MAX_T];
	float *got = malloc(sizeof(s->vals)), *src = malloc(sizeof(s->vals));

	assert_non_null(got);
	assert_non_null(src);
	fill_src(s);
	assert_int_equal(pull_all(s, "src", src), NKEYS);
	path_of(s, f32, "t32.embkv");
	path_of(s, f16, "t16.embkv");
	path_of(s, pulled, "pulled.bin");

	snprintf(args, sizeof(args), "export src %s --progress", f32);
	assert_int_equal(ctl(s, out, args), 0);
	assert_has(out, "exported 2000 rows of dim 8 (fp32)");
	assert_has(out, "MB/s");
	check_header(f32, 0, NKEYS);
	create(s, "dst32", DIM);
	snprintf(args, sizeof(args), "import dst32 %s", f32);
	assert_int_equal(ctl(s, out, args), 0);
	assert_has(out, "imported 2000 rows");
	assert_int_equal(pull_all(s, "dst32", got), NKEYS);
	assert_memory_equal(got, src, sizeof(s->vals));
	write_pulled(s, pulled, src);
	py_check(f32, pulled, "0");

	snprintf(args, sizeof(args), "export src %s --fp16", f16);
	assert_int_equal(ctl(s, out, args), 0);
	assert_has(out, "(fp16)");
	check_header(f16, 1, NKEYS);
	create(s, "dst16", DIM);
	snprintf(args, sizeof(args), "import dst16 %s --progress", f16);
	assert_int_equal(ctl(s, out, args), 0);
	assert_int_equal(pull_all(s, "dst16", got), NKEYS);
	for (size_t i = 0; i < (size_t)NKEYS * DIM; i++) {
		/* half: 11 significant bits; subnormals below 2^-14 are
		 * steps of 2^-24 */
		float tol = fabsf(src[i]) * 0x1p-11f + 0x1p-25f;

		if (fabsf(got[i] - src[i]) > tol)
			fail_msg("value %zu: %g became %g", i,
				 (double)src[i], (double)got[i]);
	}
	py_check(f16, pulled, "0.001");
	free(src);
	free(got);
}

/* Copies src to dst, then applies what: 'f' flips byte at, 't' truncates
 * to at bytes, 'a' appends a byte. */
static void damaged_copy(const char *src, const char *dst, char what,
			 off_t at)
{
	char cmd[CMD_MAX];
	int fd;
	uint8_t b;

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, dst);
	assert_int_equal(system(cmd), 0);
	fd = open(dst, O_RDWR);
	assert_true(fd >= 0);
	if (what == 'f') {
		assert_int_equal(pread(fd, &b, 1, at), 1);
		b ^= 0x40;
		assert_int_equal(pwrite(fd, &b, 1, at), 1);
	} else if (what == 't') {
		assert_int_equal(ftruncate(fd, at), 0);
	} else {
		b = 0;
		assert_int_equal(pwrite(fd, &b, 1, file_size(dst)), 1);
	}
	close(fd);
}

static void test_refused(void **state)
{
	struct state *s = *state;
	char out[OUT_MAX], args[CMD_MAX], good[PATH_MAX_T], bad[PATH_MAX_T];
	float *got = malloc(sizeof(s->vals));
	const struct {
		char what;
		int64_t at; /* negative: from the end */
		const char *says;
	} cases[] = {
		{ 'f', HDR + NKEYS * 8 + 100, "checksum mismatch" },
		{ 'f', 5, "bad magic" },
		{ 'f', 17, "header checksum" },
		{ 'f', HDR + 3, "checksum mismatch" },
		{ 'f', -12, "bad trailer" },
		{ 't', -1, "truncated" },
		{ 't', 40, "too short" },
		{ 'a', 0, "trailing bytes" },
	};

	assert_non_null(got);
	fill_src(s);
	path_of(s, good, "good.embkv");
	path_of(s, bad, "bad.embkv");
	snprintf(args, sizeof(args), "export src %s", good);
	assert_int_equal(ctl(s, out, args), 0);
	create(s, "target", DIM);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		off_t at = cases[k].at < 0 ? file_size(good) + cases[k].at
					   : (off_t)cases[k].at;

		damaged_copy(good, bad, cases[k].what, at);
		snprintf(args, sizeof(args), "import target %s", bad);
		assert_int_equal(ctl(s, out, args), 1);
		assert_has(out, bad);
		assert_has(out, "refused");
		assert_has(out, cases[k].says);
		assert_int_equal(pull_all(s, "target", got), 0);
	}
	/* a table of another dim */
	create(s, "dim4", 4);
	snprintf(args, sizeof(args), "import dim4 %s", good);
	assert_int_equal(ctl(s, out, args), 1);
	assert_has(out, good);
	assert_has(out, "dim 8");
	/* an empty table exports to an 80-byte file that imports */
	create(s, "empty", DIM);
	snprintf(args, sizeof(args), "export empty %s", bad);
	assert_int_equal(ctl(s, out, args), 0);
	assert_has(out, "exported 0 rows");
	check_header(bad, 0, 0);
	snprintf(args, sizeof(args), "import target %s", bad);
	assert_int_equal(ctl(s, out, args), 0);
	assert_has(out, "imported 0 rows");
	/* a table that does not exist: nothing written */
	snprintf(args, sizeof(args), "export nosuch %s.x", bad);
	assert_int_equal(ctl(s, out, args), 1);
	assert_has(out, "nosuch");
	snprintf(args, sizeof(args), "%s.x", bad);
	assert_int_not_equal(access(args, F_OK), 0);
	/* usage errors need no server */
	assert_int_equal(ctl(s, out, "export src"), 2);
	assert_int_equal(ctl(s, out, "import src a b c"), 2);
	/* no temp file left behind by export */
	snprintf(args, sizeof(args), "ls -a '%s' | grep -q tmp", s->dir);
	assert_int_not_equal(system(args), 0);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	};

	return cmocka_run_group_tests_name("embkvctl export/import", tests,
					   NULL, NULL);
}
