/*
 * Shared tool option handling (tools/clientopts.h): splits the comma-
 * separated server list, reads the token file the way embkvd does (the
 * file's bytes, trailing newlines removed) and creates the client. The
 * token buffer is wiped once the client has derived its key.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/clientopts.h"

int embkv_tool_parse_u64(const char *s, uint64_t min, uint64_t max,
			 uint64_t *out)
{
	char *end;
	uint64_t v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int token_read(const char *prog, const char *path, char **out)
{
	FILE *f = fopen(path, "rb");
	char *tok;
	size_t n;

	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		return -errno;
	}
	tok = calloc(1, EMBKV_TOOL_TOKEN_MAX + 2);
	if (!tok) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(tok, 1, EMBKV_TOOL_TOKEN_MAX + 1, f);
	fclose(f);
	while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r'))
		n--;
	tok[n] = '\0';
	if (n == 0 || n > EMBKV_TOOL_TOKEN_MAX || strlen(tok) != n) {
		fprintf(stderr, "%s: %s: the token must be 1 to %u bytes, "
			"no NUL\n", prog, path, EMBKV_TOOL_TOKEN_MAX);
		free(tok);
		return -EINVAL;
	}
	*out = tok;
	return 0;
}

const char *embkv_tool_servers(const struct embkv_tool_conn *conn)
{
	const char *list = conn->servers_arg;

	if (!list)
		list = getenv(EMBKV_TOOL_SERVERS_ENV);
	if (!list || !*list)
		list = EMBKV_TOOL_DEFAULT_SERVER;
	return list;
}

int embkv_tool_servers_check(const char *prog, const char *list)
{
	const char *s = list, *end, *o;
	size_t len, olen;
	uint32_t n = 0;

	for (; *s; s = *end ? end + 1 : end) {
		end = strchr(s, ',');
		if (!end)
			end = s + strlen(s);
		len = (size_t)(end - s);
		if (!len)
			continue; /* ",," as strtok_r reads it: no entry */
		if (++n > EMBKV_TOOL_MAX_SERVERS) {
			fprintf(stderr, "%s: more than %u servers\n", prog,
				EMBKV_TOOL_MAX_SERVERS);
			return -EINVAL;
		}
		if (!memmem(s, len, "://", 3)) {
			fprintf(stderr, "%s: server %.*s has no scheme: use "
				"tcp://%.*s\n", prog, (int)len, s, (int)len, s);
			return -EINVAL;
		}
		for (o = list; o < s; o += olen + 1) {
			olen = strcspn(o, ",");
			if (olen == len && !memcmp(o, s, len)) {
				fprintf(stderr, "%s: server %.*s is given "
					"twice\n", prog, (int)len, s);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int embkv_tool_connect(const char *prog, const struct embkv_tool_conn *conn,
		       struct embkv_client **out)
{
	const char *list;
	struct embkv_client_attr a;
	const char **servers = NULL;
	char *copy = NULL, *tok = NULL, *save = NULL, *s;
	uint32_t n = 0;
	int rc;

	list = embkv_tool_servers(conn);
	if (embkv_tool_servers_check(prog, list))
		return -EINVAL;
	copy = strdup(list);
	servers = calloc(EMBKV_TOOL_MAX_SERVERS, sizeof(*servers));
	if (!copy || !servers) {
		rc = -ENOMEM;
		goto fail;
	}
	for (s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		if (n == EMBKV_TOOL_MAX_SERVERS) {
			rc = EMBKV_ELIMIT;
			goto fail;
		}
		servers[n++] = s;
	}
	if (conn->token_file) {
		rc = token_read(prog, conn->token_file, &tok);
		if (rc)
			goto free_all;
	}
	embkv_client_attr_init(&a);
	a.servers = servers;
	a.nservers = n;
	a.token = tok;
	a.flags = conn->flags;
	if (conn->timeout_ms) {
		a.connect_timeout_ms = conn->timeout_ms;
		a.request_timeout_ms = conn->timeout_ms;
	}
	rc = embkv_client_create(&a, out);
	if (rc)
		goto fail;
	goto free_all;

fail:
	if (rc == EMBKV_ECLUSTER || rc == -EINVAL)
		fprintf(stderr, "%s: %s: %s\n", prog, list, embkv_strerror(rc));
	else if (conn->flags & EMBKV_CLIENT_ALLOW_DOWN)
		fprintf(stderr, "%s: no server of %s answered: %s\n", prog,
			list, embkv_strerror(rc));
	else
		fprintf(stderr, "%s: cannot connect to %s: %s\n", prog, list,
			embkv_strerror(rc));
free_all:
	if (tok) {
		explicit_bzero(tok, EMBKV_TOOL_TOKEN_MAX + 2);
		free(tok);
	}
	free(servers);
	free(copy);
	return rc;
}

void embkv_tool_human_bytes(char *buf, size_t len, uint64_t v)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double d = (double)v;
	unsigned u = 0;

	while (d >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		d /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", v);
	else
		snprintf(buf, len, "%.1f %s", d, units[u]);
}
