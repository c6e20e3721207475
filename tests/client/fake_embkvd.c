/*
 * fake_embkvd: the embkvd test double (fake_server.h) as a process, for
 * the spawn helper's test and for trying embkvctl and embkv-demo by hand
 * before the real server exists.
 *
 *   fake_embkvd [--servers N] [--token T]
 *
 * Prints "embkvd: listening on tcp://127.0.0.1:PORT" per server, like
 * embkvd, then serves until SIGTERM or SIGINT (exit 0).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/client/fake_server.h"

int main(int argc, char **argv)
{
	struct fake_cluster *fc;
	const char *token = NULL;
	uint32_t n = 1;
	sigset_t set;
	int sig;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--servers") == 0 && i + 1 < argc) {
			n = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
			token = argv[++i];
		} else {
			fprintf(stderr, "usage: fake_embkvd [--servers N] "
					"[--token T]\n");
			return 2;
		}
	}
	if (n == 0 || n > FAKE_MAX_SERVERS) {
		fprintf(stderr, "fake_embkvd: 1 to %u servers\n",
			FAKE_MAX_SERVERS);
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread */
	fc = fake_cluster_start(n, token);
	for (uint32_t i = 0; i < n; i++)
		printf("embkvd: listening on %s\n", fake_cluster_addr(fc, i));
	fflush(stdout);
	sigwait(&set, &sig);
	fake_cluster_stop(fc);
	return 0;
}
