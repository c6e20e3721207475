/*
 * An installed-embkv consumer: connects to the server named by argv[1],
 * opens table argv[2], assigns rows to 64 keys, pulls them back and
 * checks every value; pushes one gradient. Exit 0 only if all of that
 * worked; the device API's header is installed and its probe answers
 * (0, -EOPNOTSUPP or -ENODEV). Built with find_package(embkv) against an install prefix, run
 * without LD_LIBRARY_PATH: the library is found through the prefix.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <embkv/embkv.h>
#include <embkv/embkv_gpu.h>

#define N 64u

int main(int argc, char **argv)
{
	struct embkv_client_attr a;
	struct embkv_client *c = NULL;
	struct embkv_table_handle *t = NULL;
	uint64_t keys[N];
	uint8_t found[N];
	float *vals, *out, *grads;
	uint32_t dim, applied = 0;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: consumer tcp://HOST:PORT TABLE\n");
		return 2;
	}
	embkv_client_attr_init(&a);
	a.servers = (const char *const *)&argv[1];
	a.nservers = 1;
	rc = embkv_client_create(&a, &c);
	if (!rc)
		rc = embkv_table_open(c, argv[2], &t);
	if (rc) {
		fprintf(stderr, "consumer: %s\n", embkv_strerror(rc));
		embkv_client_destroy(c);
		return 1;
	}
	dim = embkv_table_attr_get(t)->dim;
	vals = calloc((size_t)N * dim, sizeof(float));
	out = calloc((size_t)N * dim, sizeof(float));
	grads = calloc((size_t)N * dim, sizeof(float));
	if (!vals || !out || !grads)
		return 1;
	for (uint32_t i = 0; i < N; i++) {
		keys[i] = 1000u + i * 7u;
		for (uint32_t d = 0; d < dim; d++)
			vals[(size_t)i * dim + d] = (float)i + (float)d / 1000.0f;
	}
	rc = embkv_assign(t, N, keys, vals);
	if (!rc)
		rc = embkv_pull(t, N, keys, out, found, EMBKV_MODE_INFER, NULL);
	for (uint32_t i = 0; !rc && i < N; i++) {
		if (!found[i])
			rc = -1;
		for (uint32_t d = 0; !rc && d < dim; d++)
			if (out[(size_t)i * dim + d] != vals[(size_t)i * dim + d])
				rc = -1;
	}
	if (!rc)
		rc = embkv_push(t, N, keys, grads, &applied);
	if (!rc && applied != N)
		rc = -1;
	if (!rc) {
		int g = embkv_gpu_probe(NULL);

		if (g && g != -EOPNOTSUPP && g != -ENODEV)
			rc = -1;
	}
	printf("consumer: %s (%u keys, dim %u, embkv %s)\n",
	       rc ? "FAILED" : "ok", N, dim, argv[2]);
	if (rc > 0 || rc < -1)
		fprintf(stderr, "consumer: %s\n", embkv_strerror(rc));
	free(vals);
	free(out);
	free(grads);
	embkv_table_close(t);
	embkv_client_destroy(c);
	return rc ? 1 : 0;
}
