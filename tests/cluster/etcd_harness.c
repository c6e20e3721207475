/*
 * Private etcd for tests (tests/cluster/etcd_harness.h): fork + exec of
 * etcd with its output in a log file, readiness by a real read through
 * net/etcd.h (the same path the code under test takes), and a directory
 * removed with nftw. A start that loses its ports to another process
 * (etcd exits at once) is retried on new ones. The guardian is a fork
 * that blocks reading a pipe only this process writes: EOF means the test
 * process is gone (or embkv_test_etcd_stop() ran), and it removes the
 * directory.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/etcd.h"
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define PORT_TRIES 5
#define POLL_MS 50u
#define HALT_MS 5000u
#define ARG_MAX_BYTES 512u
#define PROBE_TIMEOUT_MS 500u
#define LOG_TAIL 4096
#define NFTW_FDS 16
#define GUARD_GRACE_MS 200u
#define FD_SCAN_MAX 1024

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static const char *etcd_bin(void)
{
	const char *p = getenv(EMBKV_TEST_ETCD_BIN_ENV);

	return p && *p ? p : EMBKV_TEST_ETCD_BIN;
}

bool embkv_test_etcd_available(void)
{
	return access(etcd_bin(), X_OK) == 0;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void log_tail(const struct embkv_test_etcd *e)
{
	char path[EMBKV_TEST_ETCD_DIR_MAX + 16], buf[LOG_TAIL + 1];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/etcd.log", e->dir);
	f = fopen(path, "r");
	if (!f)
		return;
	if (fseek(f, -LOG_TAIL, SEEK_END))
		rewind(f);
	n = fread(buf, 1, LOG_TAIL, f);
	fclose(f);
	buf[n] = '\0';
	fprintf(stderr, "etcd_harness: etcd's log ends:\n%s\n", buf);
}

/* Forks the guardian of e->dir (see the top comment). */
static int guard_start(struct embkv_test_etcd *e)
{
	int pfd[2];
	ssize_t n;
	char c;

	if (pipe(pfd))
		return -errno;
	e->guard = fork();
	if (e->guard < 0) {
		e->guard = 0;
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (e->guard == 0) {
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		for (int fd = 3; fd < FD_SCAN_MAX; fd++)
			if (fd != pfd[0])
				close(fd);
		while ((n = read(pfd[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n == 1) /* stopped cleanly: the directory is gone */
			_exit(0);
		sleep_ms(GUARD_GRACE_MS); /* etcd gets its SIGKILL */
		nftw(e->dir, rm_one, NFTW_FDS, FTW_DEPTH | FTW_PHYS);
		_exit(0);
	}
	close(pfd[0]);
	e->guard_fd = pfd[1];
	fcntl(e->guard_fd, F_SETFD, FD_CLOEXEC);
	return 0;
}

static pid_t spawn(const struct embkv_test_etcd *e)
{
	char client[EMBKV_TEST_ETCD_URL_MAX], peer[EMBKV_TEST_ETCD_URL_MAX];
	char data[EMBKV_TEST_ETCD_DIR_MAX + 8], log[EMBKV_TEST_ETCD_DIR_MAX + 16];
	char cluster[ARG_MAX_BYTES];
	pid_t parent = getpid(), pid;

	snprintf(client, sizeof(client), "http://127.0.0.1:%u", e->client_port);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%u", e->peer_port);
	snprintf(data, sizeof(data), "%s/data", e->dir);
	snprintf(log, sizeof(log), "%s/etcd.log", e->dir);
	snprintf(cluster, sizeof(cluster), "default=%s", peer);
	pid = fork();
	if (pid != 0)
		return pid;
	{
		const char *argv[] = {
			etcd_bin(), "--name", "default", "--data-dir", data,
			"--listen-client-urls", client,
			"--advertise-client-urls", client,
			"--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer,
			"--initial-cluster", cluster,
			"--log-level", "warn", NULL,
		};
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
}

/* Waits until etcd answers a read: 0, -ECHILD when it exited. */
static int wait_ready(struct embkv_test_etcd *e)
{
	uint64_t deadline = embkv_test_now_ms() + EMBKV_TEST_ETCD_START_MS;
	struct embkv_etcd_attr a;
	struct embkv_etcd *c;
	int rc, st;

	embkv_etcd_attr_init(&a);
	a.endpoints = e->url;
	a.timeout_ms = PROBE_TIMEOUT_MS;
	rc = embkv_etcd_create(&a, &c);
	if (rc)
		return rc;
	for (;;) {
		struct embkv_etcd_kvs r;

		rc = embkv_etcd_get(c, "/embkv-test-probe", false, &r);
		if (!rc) {
			embkv_etcd_kvs_free(&r);
			break;
		}
		if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
			e->pid = 0;
			rc = -ECHILD;
			break;
		}
		if (embkv_test_now_ms() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		sleep_ms(POLL_MS);
	}
	embkv_etcd_destroy(c);
	return rc;
}

static int launch(struct embkv_test_etcd *e)
{
	int rc;

	snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%u", e->client_port);
	e->pid = spawn(e);
	if (e->pid < 0) {
		e->pid = 0;
		return -errno;
	}
	rc = wait_ready(e);
	if (rc)
		embkv_test_etcd_halt(e);
	return rc;
}

int embkv_test_etcd_start(struct embkv_test_etcd *e)
{
	char tmpl[] = "/tmp/embkv-etcd-XXXXXX";
	int rc = -EADDRNOTAVAIL;

	memset(e, 0, sizeof(*e));
	if (!embkv_test_etcd_available())
		return -ENOENT;
	if (!mkdtemp(tmpl))
		return -errno;
	snprintf(e->dir, sizeof(e->dir), "%s", tmpl);
	rc = guard_start(e);
	if (rc) {
		embkv_test_etcd_stop(e);
		return rc;
	}
	rc = -EADDRNOTAVAIL;
	for (int t = 0; t < PORT_TRIES; t++) {
		e->client_port = embkv_test_free_port();
		e->peer_port = embkv_test_free_port();
		if (!e->client_port || !e->peer_port ||
		    e->client_port == e->peer_port)
			continue;
		rc = launch(e);
		if (rc != -ECHILD)
			break;
		/* Lost a port (or a bad start): clean data, new ports. */
		log_tail(e);
		nftw(e->dir, rm_one, NFTW_FDS, FTW_DEPTH | FTW_PHYS);
		mkdir(e->dir, 0700);
	}
	if (rc) {
		log_tail(e);
		embkv_test_etcd_stop(e);
	}
	return rc;
}

void embkv_test_etcd_halt(struct embkv_test_etcd *e)
{
	uint64_t deadline = embkv_test_now_ms() + HALT_MS;
	int st;

	if (!e->pid)
		return;
	kill(e->pid, SIGTERM);
	while (waitpid(e->pid, &st, WNOHANG) == 0) {
		if (embkv_test_now_ms() >= deadline) {
			kill(e->pid, SIGKILL);
			waitpid(e->pid, &st, 0);
			break;
		}
		sleep_ms(10);
	}
	e->pid = 0;
}

int embkv_test_etcd_restart(struct embkv_test_etcd *e)
{
	if (e->pid || !e->dir[0])
		return -EINVAL;
	return launch(e);
}

void embkv_test_etcd_stop(struct embkv_test_etcd *e)
{
	embkv_test_etcd_halt(e);
	if (e->dir[0])
		nftw(e->dir, rm_one, NFTW_FDS, FTW_DEPTH | FTW_PHYS);
	e->dir[0] = '\0';
	if (e->guard) {
		if (write(e->guard_fd, "x", 1) < 0)
			e->guard_fd = e->guard_fd; /* EOF does the same */
		close(e->guard_fd);
		waitpid(e->guard, NULL, 0);
		e->guard = 0;
	}
}

int embkv_test_member_start(const char *embkvd, const struct embkv_test_etcd *e,
			    const char *cluster, uint32_t id,
			    const char *listen, const char *threads,
			    const char *ttl, const char *const *extra,
			    uint32_t ready_ms, struct embkv_test_proc *p,
			    char *addr)
{
	const char *argv[16 + 16];
	char ids[16];
	size_t n = 0;
	int rc;

	snprintf(ids, sizeof(ids), "%u", id);
	argv[n++] = embkvd;
	argv[n++] = "--listen";
	argv[n++] = listen ? listen : "tcp://127.0.0.1:0";
	argv[n++] = "--threads";
	argv[n++] = threads ? threads : "2";
	argv[n++] = "--etcd";
	argv[n++] = e->url;
	argv[n++] = "--cluster";
	argv[n++] = cluster;
	argv[n++] = "--member-ttl";
	argv[n++] = ttl;
	argv[n++] = "--member-id";
	argv[n++] = ids;
	for (size_t i = 0; extra && extra[i]; i++) {
		if (n + 1 >= sizeof(argv) / sizeof(argv[0]))
			return -E2BIG;
		argv[n++] = extra[i];
	}
	argv[n] = NULL;
	rc = embkv_test_proc_start(argv, 1, ready_ms, p);
	if (!rc)
		snprintf(addr, EMBKV_TEST_ADDR_MAX, "%s", p->addrs[0]);
	return rc;
}
