/*
 * Server process helper (tests/client/spawn.h): fork + exec with stdout on
 * a pipe, the ready lines parsed with a deadline (poll), then a drain
 * thread that copies the rest of the output to stderr until EOF.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/client/spawn.h"

#define LINE_MAX_BYTES 1024u
#define DRAIN_CHUNK 4096u
#define WAIT_STEP_MS 10u
#define PORT_TRIES 5
#define PEERS_MAX (EMBKV_TEST_MAX_SERVERS * EMBKV_TEST_ADDR_MAX)
#define SELF_MAX 16u

uint64_t embkv_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *drain_main(void *arg)
{
	struct embkv_test_proc *p = arg;
	char buf[DRAIN_CHUNK];
	ssize_t n;

	while ((n = read(p->out_fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (write(STDERR_FILENO, buf, (size_t)n) < 0)
			break;
	}
	return NULL;
}

/* Parses a complete line: an address when it is a ready line. */
static void take_line(struct embkv_test_proc *p, const char *line)
{
	size_t plen = strlen(EMBKV_TEST_READY_PREFIX), alen;

	if (strncmp(line, EMBKV_TEST_READY_PREFIX, plen) != 0 ||
	    p->naddrs >= EMBKV_TEST_MAX_ADDRS)
		return;
	alen = strlen(line + plen);
	if (alen >= EMBKV_TEST_ADDR_MAX)
		return;
	memcpy(p->addrs[p->naddrs], line + plen, alen + 1);
	p->naddrs++;
}

static int read_ready(struct embkv_test_proc *p, uint32_t nready,
		      uint64_t deadline)
{
	char line[LINE_MAX_BYTES];
	size_t len = 0;

	while (p->naddrs < nready) {
		struct pollfd pfd = { .fd = p->out_fd, .events = POLLIN };
		uint64_t now = embkv_test_now_ms();
		char c;
		ssize_t n;
		int rc;

		if (now >= deadline)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, (int)(deadline - now));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			continue;
		/* One byte at a time: nothing past the ready lines is
		 * consumed here. */
		n = read(p->out_fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -ECHILD;
		if (c == '\n') {
			line[len] = '\0';
			take_line(p, line);
			len = 0;
		} else if (len + 1 < sizeof(line)) {
			line[len++] = c;
		}
	}
	return 0;
}

int embkv_test_proc_start(const char *const argv[], uint32_t nready,
			  uint32_t timeout_ms, struct embkv_test_proc *p)
{
	pthread_t *th;
	int fds[2], rc;

	memset(p, 0, sizeof(*p));
	p->pid = -1;
	p->out_fd = -1;
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	p->pid = fork();
	if (p->pid < 0) {
		rc = -errno;
		close(fds[0]);
		close(fds[1]);
		return rc;
	}
	if (p->pid == 0) {
		/* A test killed by its runner's timeout must not leave its
		 * servers behind: they get SIGTERM when it dies. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fds[1], STDOUT_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	p->out_fd = fds[0];
	rc = read_ready(p, nready, embkv_test_now_ms() + timeout_ms);
	if (rc)
		goto kill_child;
	th = malloc(sizeof(*th));
	if (!th || pthread_create(th, NULL, drain_main, p)) {
		free(th);
		rc = -ENOMEM;
		goto kill_child;
	}
	p->drain = th;
	return 0;

kill_child:
	embkv_test_proc_kill(p);
	return rc;
}

static void finish(struct embkv_test_proc *p)
{
	if (p->drain) {
		pthread_join(*(pthread_t *)p->drain, NULL);
		free(p->drain);
		p->drain = NULL;
	}
	if (p->out_fd >= 0)
		close(p->out_fd);
	p->out_fd = -1;
	p->pid = -1;
}

int embkv_test_proc_stop(struct embkv_test_proc *p, uint32_t timeout_ms)
{
	uint64_t deadline = embkv_test_now_ms() + timeout_ms;
	int status, rc;

	if (p->pid <= 0)
		return -ECHILD;
	kill(p->pid, SIGTERM);
	for (;;) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);

		if (r == p->pid)
			break;
		if (r < 0 && errno != EINTR) {
			rc = -errno;
			finish(p);
			return rc;
		}
		if (embkv_test_now_ms() >= deadline) {
			kill(p->pid, SIGKILL);
			while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
				;
			break;
		}
		usleep(WAIT_STEP_MS * 1000u);
	}
	finish(p);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

void embkv_test_proc_kill(struct embkv_test_proc *p)
{
	int status;

	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	finish(p);
}

uint16_t embkv_test_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	uint16_t port = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

const char *embkv_test_listen_prefix(void)
{
	const char *p = getenv(EMBKV_TEST_LISTEN_ENV);

	return p && *p ? p : EMBKV_TEST_LISTEN_DEFAULT;
}

static int cluster_try(const char *embkvd, uint32_t n,
		       const char *const *extra, uint32_t timeout_ms,
		       struct embkv_test_cluster *c)
{
	const char *argv[8 + EMBKV_TEST_MAX_EXTRA];
	char peers[PEERS_MAX], self[SELF_MAX];
	size_t off = 0;
	uint32_t i, k;
	int rc = 0;

	for (i = 0; i < n; i++) {
		uint16_t port = embkv_test_free_port();

		if (!port)
			return -EADDRNOTAVAIL;
		snprintf(c->addr_buf[i], EMBKV_TEST_ADDR_MAX, "%s:%u",
			 embkv_test_listen_prefix(), (unsigned)port);
		c->addrs[i] = c->addr_buf[i];
		off += (size_t)snprintf(peers + off, sizeof(peers) - off, "%s%s",
					i ? "," : "", c->addr_buf[i]);
	}
	for (i = 0; i < n && !rc; i++) {
		k = 0;
		argv[k++] = embkvd;
		argv[k++] = "--listen";
		argv[k++] = c->addr_buf[i];
		argv[k++] = "--peers";
		argv[k++] = peers;
		argv[k++] = "--self";
		snprintf(self, sizeof(self), "%u", i);
		argv[k++] = self;
		for (uint32_t e = 0; extra && extra[e] &&
				     e < EMBKV_TEST_MAX_EXTRA; e++)
			argv[k++] = extra[e];
		argv[k] = NULL;
		rc = embkv_test_proc_start(argv, 1, timeout_ms, &c->procs[i]);
		if (!rc)
			c->n = i + 1;
	}
	if (rc) {
		for (i = 0; i < c->n; i++)
			embkv_test_proc_kill(&c->procs[i]);
		c->n = 0;
	}
	return rc;
}

int embkv_test_cluster_start(const char *embkvd, uint32_t n,
			     const char *const *extra, uint32_t timeout_ms,
			     struct embkv_test_cluster *c)
{
	int rc = -EINVAL;

	memset(c, 0, sizeof(*c));
	if (n == 0 || n > EMBKV_TEST_MAX_SERVERS)
		return -EINVAL;
	/* A port picked free may be taken before the server binds it. */
	for (int t = 0; t < PORT_TRIES; t++) {
		rc = cluster_try(embkvd, n, extra, timeout_ms, c);
		if (rc != -ECHILD)
			break;
	}
	return rc;
}

int embkv_test_cluster_stop(struct embkv_test_cluster *c, uint32_t timeout_ms)
{
	int worst = 0;

	for (uint32_t i = 0; i < c->n; i++) {
		int rc = embkv_test_proc_stop(&c->procs[i], timeout_ms);

		if (rc && !worst)
			worst = rc;
	}
	c->n = 0;
	return worst;
}
