/*
 * embkvctl's output helpers: aligned text tables, JSON strings, and how
 * every command reports the servers that did not answer (ADDRESS DOWN
 * error lines, the "servers" JSON array). Human bytes are
 * embkv_tool_human_bytes() (tools/clientopts.c), shared with embkv-demo.
 *
 * Why a file of its own: stats, tables and map all print through these,
 * and the commands' files should hold only what the command computes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <embkv/embkv.h>
#include "tools/ctl.h"

/* JSON string (names and addresses are plain, but escape anyway). */
void embkv_ctl_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* Aligned text tables ------------------------------------------------------ */

int embkv_ctl_tt_init(struct embkv_ctl_tt *t, uint32_t ncols, uint32_t left,
		      const char *const *header)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->left = left;
	t->cap = 16;
	t->cells = calloc((size_t)t->cap * ncols, CELL_MAX);
	if (!t->cells)
		return -ENOMEM;
	for (uint32_t c = 0; c < ncols; c++)
		snprintf(t->cells[c], CELL_MAX, "%s", header[c]);
	t->nrows = 1;
	return 0;
}

/* The next row's cells, for the caller to fill (NULL: out of memory). */
char (*embkv_ctl_tt_row(struct embkv_ctl_tt *t))[CELL_MAX]
{
	char (*row)[CELL_MAX];

	if (t->nrows == t->cap) {
		void *p = realloc(t->cells, (size_t)t->cap * 2 * t->ncols *
					   CELL_MAX);

		if (!p)
			return NULL;
		t->cells = p;
		t->cap *= 2;
	}
	row = t->cells + (size_t)t->nrows * t->ncols;
	for (uint32_t c = 0; c < t->ncols; c++)
		strcpy(row[c], "-");
	t->nrows++;
	return row;
}

void embkv_ctl_tt_print(struct embkv_ctl_tt *t)
{
	size_t width[64] = { 0 };

	for (uint32_t r = 0; r < t->nrows; r++)
		for (uint32_t c = 0; c < t->ncols && c < 64; c++) {
			size_t w = strlen(t->cells[(size_t)r * t->ncols + c]);

			if (w > width[c])
				width[c] = w;
		}
	for (uint32_t r = 0; r < t->nrows; r++) {
		for (uint32_t c = 0; c < t->ncols && c < 64; c++) {
			const char *s = t->cells[(size_t)r * t->ncols + c];
			int w = (int)width[c];

			if (c + 1 == t->ncols && c < t->left)
				printf("%s", s);
			else if (c < t->left)
				printf("%-*s  ", w, s);
			else
				printf("%*s%s", w, s, c + 1 < t->ncols ? "  " : "");
		}
		putchar('\n');
	}
}

void embkv_ctl_tt_free(struct embkv_ctl_tt *t)
{
	free(t->cells);
	t->cells = NULL;
}

/* Servers that did not answer ---------------------------------------------- */

/*
 * Why server srv counts as down after a cluster-wide call: the error that
 * reaching it ended with, else call_rc when it reported nothing (answered
 * is 0) although it was reached; 0 when it is up.
 */
int embkv_ctl_server_error(struct embkv_client *c, uint32_t srv, int answered,
			   int call_rc)
{
	int st = embkv_client_server_status(c, srv);

	if (st)
		return st;
	if (!answered)
		return call_rc ? call_rc : EMBKV_EPROTO;
	return 0;
}

/* One "ADDRESS  DOWN  error" line (the operator's view of a dead member). */
void embkv_ctl_print_down(FILE *f, struct embkv_client *c, uint32_t srv,
			  int err)
{
	fprintf(f, "%s  DOWN  %s\n", embkv_client_server_addr(c, srv),
		embkv_strerror(err));
}

/* Servers that did not answer this client's last try to reach them. */
uint32_t embkv_ctl_down_count(struct embkv_client *c)
{
	uint32_t n = 0;

	for (uint32_t srv = 0; srv < embkv_client_server_count(c); srv++)
		n += embkv_client_server_status(c, srv) != 0;
	return n;
}

/* The "servers" JSON array: every server, up or down with its error. */
void embkv_ctl_servers_json(struct embkv_client *c, const int *err)
{
	uint32_t nsrv = embkv_client_server_count(c);

	printf("\"servers\":[");
	for (uint32_t srv = 0; srv < nsrv; srv++) {
		printf("%s{\"index\":%u,\"address\":", srv ? "," : "", srv);
		embkv_ctl_json_str(embkv_client_server_addr(c, srv));
		printf(",\"up\":%s", err[srv] ? "false" : "true");
		if (err[srv]) {
			printf(",\"error\":");
			embkv_ctl_json_str(embkv_strerror(err[srv]));
		}
		printf("}");
	}
	printf("]");
}
