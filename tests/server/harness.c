/*
 * embkvd test harness: spawns the real server binary (EMBKVD_PATH), reads
 * its ports from the "listening on" lines, and speaks wire frames built
 * and checked with net/wire's codec. See harness.h.
 *
 * Connections live in a fixed table of this file, indexed by the handle:
 * a TCP socket, or a client transport connection (rdma) with its receive
 * state and a queue of replies that arrived while a send waited for room
 * in the transport's window. The rdma transport splits nothing: a frame is
 * one message, so callers keep frames within th_limits().
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include "net/transport.h"
#include "tests/server/harness.h"

#ifndef EMBKVD_PATH
#error "EMBKVD_PATH must name the embkvd binary"
#endif

#define MAX_ARGS 64
#define LINE_MAX_BYTES 512
#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 15000
#define POLL_STEP_MS 20
#define LISTEN_PREFIX "embkvd: listening on "
#define TH_MAX_CONNS 256
#define ADDR_BYTES 128

static uint64_t next_req_id = 1;
static bool use_rdma;
static char listen_host[TH_HOST_MAX] = "127.0.0.1";

struct th_conn {
	bool used;
	int fd;                /* TCP */
	struct embkv_conn *c;  /* rdma */
	struct embkv_rx rx;
	struct th_frame *q;    /* replies received while sending */
	size_t qhead, qn, qcap;
};

static struct th_conn conns[TH_MAX_CONNS];
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;

int th_transport_init(int argc, char **argv)
{
	const char *l = argc > 1 ? argv[1] : getenv("EMBKV_TEST_LISTEN");
	const char *host;

	if (!l || !*l)
		return 0;
	if (!strncmp(l, "tcp://", 6)) {
		host = l + 6;
	} else if (!strncmp(l, "rdma://", 7)) {
		host = l + 7;
		use_rdma = true;
	} else {
		return -EINVAL;
	}
	if (!*host || strlen(host) >= sizeof(listen_host))
		return -EINVAL;
	strcpy(listen_host, host);
	return 0;
}

bool th_rdma(void)
{
	return use_rdma;
}

static struct th_conn *conn_of(int h)
{
	return h >= 0 && h < TH_MAX_CONNS && conns[h].used ? &conns[h] : NULL;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static pid_t spawn(const char *const *args, int out_fd, int err_fd)
{
	const char *argv[MAX_ARGS];
	int n = 0;
	pid_t pid;

	argv[n++] = EMBKVD_PATH;
	for (; args && *args && n < MAX_ARGS - 1; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	pid = fork();
	if (pid)
		return pid;
	/* A test killed by its runner's timeout must not leave its server
	 * behind: it gets SIGTERM when the test dies. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (out_fd >= 0)
		dup2(out_fd, STDOUT_FILENO);
	if (err_fd >= 0)
		dup2(err_fd, STDERR_FILENO);
	execv(EMBKVD_PATH, (char *const *)argv);
	_exit(127);
}

int th_start_on(struct th_server *s, uint16_t port, uint16_t rdma_port,
		const char *const *extra)
{
	char tcp_l[ADDR_BYTES], rdma_l[ADDR_BYTES], tcp_p[ADDR_BYTES],
		rdma_p[ADDR_BYTES];
	const char *args[MAX_ARGS] = { "--listen", tcp_l };
	char line[LINE_MAX_BYTES];
	size_t got = 0;
	long deadline = now_ms() + START_TIMEOUT_MS;
	int pfd[2], n = 2;
	bool have_tcp = false, have_rdma = !use_rdma;

	memset(s, 0, sizeof(*s));
	snprintf(s->host, sizeof(s->host), "%s", listen_host);
	snprintf(tcp_l, sizeof(tcp_l), "tcp://%s:%u", listen_host, port);
	snprintf(rdma_l, sizeof(rdma_l), "rdma://%s:%u", listen_host,
		 rdma_port);
	snprintf(tcp_p, sizeof(tcp_p), LISTEN_PREFIX "tcp://%s:", listen_host);
	snprintf(rdma_p, sizeof(rdma_p), LISTEN_PREFIX "rdma://%s:",
		 listen_host);
	if (use_rdma) {
		args[n++] = "--listen";
		args[n++] = rdma_l;
	}

	for (; extra && *extra && n < MAX_ARGS - 1; extra++)
		args[n++] = *extra;
	args[n] = NULL;
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	s->pid = spawn(args, pfd[1], -1);
	close(pfd[1]);
	if (s->pid < 0) {
		close(pfd[0]);
		return -errno;
	}
	s->out_fd = pfd[0];
	while (got < sizeof(line) - 1) {
		struct pollfd p = { .fd = s->out_fd, .events = POLLIN };
		long left = deadline - now_ms();
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		r = read(s->out_fd, line + got, 1);
		if (r <= 0)
			break;
		if (line[got] == '\n') {
			line[got] = '\0';
			if (!strncmp(line, tcp_p, strlen(tcp_p))) {
				s->port = (uint16_t)atoi(line + strlen(tcp_p));
				have_tcp = true;
			} else if (use_rdma &&
				   !strncmp(line, rdma_p, strlen(rdma_p))) {
				s->rdma_port = (uint16_t)atoi(line +
							      strlen(rdma_p));
				have_rdma = true;
			}
			if (have_tcp && have_rdma)
				return 0;
			got = 0;
			continue;
		}
		got++;
	}
	th_stop(s);
	return -ETIMEDOUT;
}

int th_start(struct th_server *s, const char *const *extra)
{
	return th_start_on(s, 0, 0, extra);
}

static int wait_status(pid_t pid, int ms)
{
	long deadline = now_ms() + ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			break;
		if (r < 0)
			return -1;
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(POLL_STEP_MS * 1000);
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

int th_stop(struct th_server *s)
{
	int st;

	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	st = wait_status(s->pid, STOP_TIMEOUT_MS);
	s->pid = 0;
	close(s->out_fd);
	s->out_fd = -1;
	return st;
}

int th_run_status(const char *const *args)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	pid_t pid = spawn(args, null, null);

	close(null);
	return pid < 0 ? -1 : wait_status(pid, STOP_TIMEOUT_MS);
}

static int tcp_connect(const struct th_server *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(s->port) };
	struct timeval tv = { .tv_sec = TH_TIMEOUT_MS / 1000 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -errno;
	if (inet_pton(AF_INET, s->host, &sa.sin_addr) != 1) {
		close(fd);
		return -EINVAL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int rdma_connect(const struct th_server *s, struct embkv_conn **out)
{
	struct embkv_endpoint ep;
	char addr[ADDR_BYTES];
	int rc;

	snprintf(addr, sizeof(addr), "rdma://%s:%u", s->host, s->rdma_port);
	rc = embkv_endpoint_parse(addr, &ep);
	return rc ? rc : ep.ops->connect(&ep, TH_TIMEOUT_MS, out);
}

int th_connect(const struct th_server *s)
{
	struct embkv_conn *c = NULL;
	int fd = -1, h;

	if (use_rdma) {
		int rc = rdma_connect(s, &c);

		if (rc)
			return rc < 0 ? rc : -ECONNREFUSED;
	} else {
		fd = tcp_connect(s);
		if (fd < 0)
			return fd;
	}
	pthread_mutex_lock(&conns_lock);
	for (h = 0; h < TH_MAX_CONNS && conns[h].used; h++)
		;
	if (h < TH_MAX_CONNS) {
		memset(&conns[h], 0, sizeof(conns[h]));
		conns[h].used = true;
		conns[h].fd = fd;
		conns[h].c = c;
		embkv_rx_init(&conns[h].rx, EMBKV_WIRE_MAX_BODY);
	}
	pthread_mutex_unlock(&conns_lock);
	if (h == TH_MAX_CONNS) {
		if (c)
			c->ops->close(c);
		if (fd >= 0)
			close(fd);
		return -EMFILE;
	}
	return h;
}

void th_close(int h)
{
	struct th_conn *k = conn_of(h);

	if (!k)
		return;
	if (k->c)
		k->c->ops->close(k->c);
	if (k->fd >= 0)
		close(k->fd);
	embkv_rx_destroy(&k->rx);
	for (size_t i = 0; i < k->qn; i++)
		th_frame_free(&k->q[(k->qhead + i) % k->qcap]);
	free(k->q);
	pthread_mutex_lock(&conns_lock);
	memset(k, 0, sizeof(*k));
	pthread_mutex_unlock(&conns_lock);
}

void th_limits(int h, uint32_t *max_request, uint32_t *max_reply)
{
	struct th_conn *k = conn_of(h);
	struct embkv_conn_limits l = { 0 };

	if (k && k->c && k->c->ops->limits)
		k->c->ops->limits(k->c, &l);
	*max_request = l.max_request;
	*max_reply = l.max_reply;
}

static int map_err(int rc)
{
	return rc == EMBKV_ETIMEDOUT ? -ETIMEDOUT : rc;
}

/* The frame now whole in k->rx, moved into f (body malloc'ed). */
static int rx_take(struct th_conn *k, struct th_frame *f)
{
	f->h = k->rx.hdr;
	f->body = malloc(f->h.body_len ? f->h.body_len : 1);
	if (!f->body)
		return -ENOMEM;
	memcpy(f->body, k->rx.buf.data + EMBKV_WIRE_HDR_SIZE, f->h.body_len);
	embkv_rx_reset(&k->rx);
	return 0;
}

/* One rdma frame without waiting: 0 (in f), -EAGAIN, or an error. */
static int rdma_try_recv(struct th_conn *k, struct th_frame *f)
{
	int rc = k->c->ops->recv_some(k->c, &k->rx);

	return rc ? rc : rx_take(k, f);
}

static int rdma_recv(struct th_conn *k, struct th_frame *f, uint64_t deadline)
{
	for (;;) {
		int rc = rdma_try_recv(k, f);

		if (rc != -EAGAIN)
			return rc;
		rc = embkv_fd_wait(k->c->ops->poll_fd(k->c), POLLIN, deadline);
		if (rc)
			return map_err(rc);
	}
}

static int queue_push(struct th_conn *k, struct th_frame *f)
{
	if (k->qn == k->qcap) {
		size_t cap = k->qcap ? 2 * k->qcap : 16;
		struct th_frame *q = malloc(cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		for (size_t i = 0; i < k->qn; i++)
			q[i] = k->q[(k->qhead + i) % k->qcap];
		free(k->q);
		k->q = q;
		k->qcap = cap;
		k->qhead = 0;
	}
	k->q[(k->qhead + k->qn++) % k->qcap] = *f;
	return 0;
}

static int rdma_send(struct th_conn *k, const uint8_t *buf, size_t len)
{
	uint64_t deadline = embkv_now_ms() + TH_TIMEOUT_MS;
	size_t off = 0;

	if (len < EMBKV_WIRE_HDR_SIZE)
		return -EINVAL; /* a message carries at least a header */
	for (;;) {
		struct th_frame f;
		int rc = k->c->ops->send_some(k->c, buf, len, &off);

		if (rc != -EAGAIN)
			return rc;
		/* The window is full: take replies to make room. */
		rc = rdma_try_recv(k, &f);
		if (!rc) {
			rc = queue_push(k, &f);
			if (rc) {
				th_frame_free(&f);
				return rc;
			}
			continue;
		}
		if (rc != -EAGAIN)
			return rc;
		rc = embkv_fd_wait(k->c->ops->poll_fd(k->c), POLLIN, deadline);
		if (rc)
			return map_err(rc);
	}
}

int th_send_raw(int h, const void *buf, size_t len)
{
	struct th_conn *k = conn_of(h);
	const uint8_t *p = buf;

	if (!k)
		return -EBADF;
	if (k->c)
		return rdma_send(k, buf, len);
	while (len) {
		ssize_t r = send(k->fd, p, len, MSG_NOSIGNAL);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int th_send(int h, uint8_t op, uint64_t req_id, uint64_t epoch,
	    const void *body, uint32_t len)
{
	struct embkv_wire_hdr hd = { .opcode = op, .request_id = req_id,
				     .epoch = epoch, .body_len = len };
	uint8_t *frame;
	int rc;

	frame = malloc(EMBKV_WIRE_HDR_SIZE + (size_t)len);
	if (!frame)
		return -ENOMEM;
	if (!embkv_wire_hdr_encode(&hd, frame)) {
		free(frame);
		return -EINVAL;
	}
	if (len)
		memcpy(frame + EMBKV_WIRE_HDR_SIZE, body, len);
	rc = th_send_raw(h, frame, EMBKV_WIRE_HDR_SIZE + (size_t)len);
	free(frame);
	return rc;
}

static int recv_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = recv(fd, p, len, 0);

		if (r == 0)
			return EMBKV_EDISCONNECTED;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ?
				       -ETIMEDOUT : -errno;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static int tcp_recv(int fd, struct th_frame *f)
{
	uint8_t hdr[EMBKV_WIRE_HDR_SIZE];
	int rc;

	rc = recv_all(fd, hdr, sizeof(hdr));
	if (rc)
		return rc;
	rc = embkv_wire_hdr_decode(hdr, sizeof(hdr), &f->h);
	if (rc)
		return rc;
	f->body = malloc(f->h.body_len ? f->h.body_len : 1);
	if (!f->body)
		return -ENOMEM;
	return recv_all(fd, f->body, f->h.body_len);
}

int th_recv(int h, struct th_frame *f)
{
	struct th_conn *k = conn_of(h);
	int rc;

	memset(f, 0, sizeof(*f));
	if (!k)
		return -EBADF;
	if (k->qn) {
		*f = k->q[k->qhead];
		k->qhead = (k->qhead + 1) % k->qcap;
		k->qn--;
		rc = 0;
	} else if (k->c) {
		rc = rdma_recv(k, f, embkv_now_ms() + TH_TIMEOUT_MS);
	} else {
		rc = tcp_recv(k->fd, f);
	}
	if (!rc)
		rc = embkv_wire_body_validate(f->h.opcode, f->body,
					      f->h.body_len);
	if (rc)
		th_frame_free(f);
	return rc;
}

void th_frame_free(struct th_frame *f)
{
	free(f->body);
	f->body = NULL;
}

int th_error_status(const struct th_frame *f)
{
	struct embkv_wire_error e;

	if (f->h.opcode != EMBKV_WIRE_OP_ERROR ||
	    embkv_wire_error_decode(f->body, f->h.body_len, &e))
		return 0;
	return e.status;
}

bool th_closed_within(int h, int ms)
{
	struct th_conn *k = conn_of(h);
	long deadline = now_ms() + ms;
	uint8_t buf[4096];

	if (!k)
		return false;
	while (k->c) {
		struct th_frame f;
		int rc = rdma_try_recv(k, &f);

		if (!rc) {
			th_frame_free(&f);
			continue;
		}
		if (rc != -EAGAIN)
			return true;
		if (now_ms() >= deadline ||
		    embkv_fd_wait(k->c->ops->poll_fd(k->c), POLLIN,
				  embkv_now_ms() + (uint64_t)(deadline -
							      now_ms())))
			return false;
	}
	while (now_ms() < deadline) {
		struct pollfd p = { .fd = k->fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, (int)(deadline - now_ms())) <= 0)
			return false;
		r = recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return true;
	}
	return false;
}

bool th_peer_gone(int h)
{
	struct th_conn *k = conn_of(h);
	uint8_t buf[4096];

	if (!k)
		return true;
	while (k->c) {
		struct th_frame f;
		int rc = rdma_try_recv(k, &f);

		if (rc == -EAGAIN)
			return false;
		if (rc)
			return true;
		th_frame_free(&f);
	}
	return recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT) == 0;
}

int th_call(int fd, uint8_t op, uint64_t epoch, const void *body,
	    uint32_t len, struct th_frame *f)
{
	uint64_t id = __atomic_fetch_add(&next_req_id, 1, __ATOMIC_RELAXED);
	int rc = th_send(fd, op, id, epoch, body, len);

	if (rc)
		return rc;
	rc = th_recv(fd, f);
	if (rc)
		return rc;
	if (f->h.request_id != id) {
		th_frame_free(f);
		return -EBADMSG;
	}
	if (f->h.opcode == EMBKV_WIRE_OP_ERROR) {
		rc = th_error_status(f);
		th_frame_free(f);
		return rc ? rc : -EBADMSG;
	}
	if (f->h.opcode != (op | EMBKV_WIRE_OP_REPLY)) {
		th_frame_free(f);
		return -EBADMSG;
	}
	return 0;
}

int th_create(int fd, const struct embkv_table_attr *a,
	      struct embkv_wire_table_ref *ref)
{
	uint8_t body[512];
	struct th_frame f;
	size_t len;
	int rc = embkv_wire_table_attr_size(a, &len);

	if (!rc)
		rc = embkv_wire_table_attr_encode(a, body, sizeof(body));
	if (!rc)
		rc = th_call(fd, EMBKV_WIRE_OP_TABLE_CREATE, 1, body,
			     (uint32_t)len, &f);
	if (rc)
		return rc;
	rc = embkv_wire_table_ref_decode(f.body, f.h.body_len, ref);
	th_frame_free(&f);
	return rc;
}

static int name_call(int fd, uint8_t op, const char *name, struct th_frame *f)
{
	uint8_t body[EMBKV_TABLE_NAME_MAX + 8];
	size_t len;
	int rc = embkv_wire_name_size(name, &len);

	if (!rc)
		rc = embkv_wire_name_encode(name, body, sizeof(body));
	return rc ? rc : th_call(fd, op, 1, body, (uint32_t)len, f);
}

int th_drop(int fd, const char *name)
{
	struct th_frame f;
	int rc = name_call(fd, EMBKV_WIRE_OP_TABLE_DROP, name, &f);

	if (!rc)
		th_frame_free(&f);
	return rc;
}

struct embkv_wire_table_ref th_ref(const struct embkv_wire_table_info *info)
{
	struct embkv_wire_table_ref r = {
		.table_id = info->table_id,
		.uid = info->uid,
	};

	return r;
}

int th_open(int fd, const char *name, struct embkv_wire_table_info *info)
{
	struct th_frame f;
	int rc = name_call(fd, EMBKV_WIRE_OP_TABLE_OPEN, name, &f);

	if (rc)
		return rc;
	rc = embkv_wire_table_info_decode(f.body, f.h.body_len, info);
	th_frame_free(&f);
	return rc;
}

static int pull_one(int fd, uint64_t epoch, struct embkv_wire_table_ref table,
		    uint32_t dim, uint32_t n, const uint64_t *keys,
		    uint8_t mode, float *out, uint8_t *found)
{
	struct embkv_wire_pull_req m = {
		.table_id = table.table_id, .uid = table.uid, .dim = dim,
		.n = n, .mode = mode, .keys = keys,
	};
	struct embkv_wire_pull_reply r;
	struct th_frame f;
	uint8_t *body;
	size_t len;
	int rc = embkv_wire_pull_req_size(&m, &len);

	if (rc)
		return rc;
	body = malloc(len);
	if (!body)
		return -ENOMEM;
	rc = embkv_wire_pull_req_encode(&m, body, len);
	if (!rc)
		rc = th_call(fd, EMBKV_WIRE_OP_PULL, epoch, body,
			     (uint32_t)len, &f);
	free(body);
	if (rc)
		return rc;
	rc = embkv_wire_pull_reply_decode(f.body, f.h.body_len, &r);
	if (!rc && (r.n != n || r.dim != dim))
		rc = -EBADMSG;
	if (!rc) {
		memcpy(out, r.vals, sizeof(float) * n * dim);
		if (found)
			memcpy(found, r.found, n);
	}
	th_frame_free(&f);
	return rc;
}

static int count_reply(struct th_frame *f, struct embkv_wire_count_reply *cr)
{
	struct embkv_wire_count_reply tmp;
	int rc = embkv_wire_count_reply_decode(f->body, f->h.body_len,
					       cr ? cr : &tmp);

	th_frame_free(f);
	return rc;
}

static int rows_one(int fd, uint8_t op, struct embkv_wire_table_ref table,
		    uint32_t dim, uint32_t n, const uint64_t *keys,
		    const float *vals, struct embkv_wire_count_reply *cr)
{
	struct embkv_wire_rows_req m = {
		.table_id = table.table_id, .uid = table.uid, .dim = dim,
		.n = n, .keys = keys, .vals = vals,
	};
	struct th_frame f;
	uint8_t *body;
	size_t len;
	int rc = embkv_wire_rows_req_size(&m, &len);

	if (rc)
		return rc;
	body = malloc(len);
	if (!body)
		return -ENOMEM;
	rc = embkv_wire_rows_req_encode(&m, body, len);
	if (!rc)
		rc = th_call(fd, op, 1, body, (uint32_t)len, &f);
	free(body);
	return rc ? rc : count_reply(&f, cr);
}

static int erase_one(int fd, struct embkv_wire_table_ref table, uint32_t n,
		     const uint64_t *keys, struct embkv_wire_count_reply *cr)
{
	struct embkv_wire_erase_req m = {
		.table_id = table.table_id, .uid = table.uid, .n = n,
		.keys = keys,
	};
	struct th_frame f;
	uint8_t *body;
	size_t len;
	int rc = embkv_wire_erase_req_size(&m, &len);

	if (rc)
		return rc;
	body = malloc(len);
	if (!body)
		return -ENOMEM;
	rc = embkv_wire_erase_req_encode(&m, body, len);
	if (!rc)
		rc = th_call(fd, EMBKV_WIRE_OP_ERASE, 1, body, (uint32_t)len,
			     &f);
	free(body);
	return rc ? rc : count_reply(&f, cr);
}

/* Keys per frame when each key costs per_key bytes of a frame limited to
 * max bytes (0: no limit); at least 1. */
static uint32_t fit(uint32_t max, uint32_t per_key, uint32_t n)
{
	/* header, the request's fixed part and the reply's padding */
	const uint32_t fixed = EMBKV_WIRE_HDR_SIZE + EMBKV_WIRE_ROWS_REQ_KEYS +
			       8;
	uint32_t k;

	if (!max || max <= fixed)
		return n ? n : 1;
	k = (max - fixed) / per_key;
	return k ? (k < n ? k : n) : 1;
}

int th_pull(int fd, uint64_t epoch, struct embkv_wire_table_ref table,
	    uint32_t dim, uint32_t n, const uint64_t *keys, uint8_t mode,
	    float *out, uint8_t *found)
{
	uint32_t req, rep, chunk, done = 0;
	int rc;

	th_limits(fd, &req, &rep);
	chunk = fit(req, 8, n);
	if (fit(rep, 4 * dim + 1, n) < chunk)
		chunk = fit(rep, 4 * dim + 1, n);
	do {
		uint32_t k = n - done < chunk ? n - done : chunk;

		rc = pull_one(fd, epoch, table, dim, k, keys + done, mode,
			      out + (size_t)done * dim,
			      found ? found + done : NULL);
		done += k;
	} while (!rc && done < n);
	return rc;
}

int th_rows(int fd, uint8_t op, struct embkv_wire_table_ref table,
	    uint32_t dim, uint32_t n, const uint64_t *keys, const float *vals,
	    struct embkv_wire_count_reply *cr)
{
	struct embkv_wire_count_reply sum = { 0 }, one = { 0 };
	uint32_t req, rep, chunk, done = 0;
	int rc;

	th_limits(fd, &req, &rep);
	chunk = fit(req, 8 + 4 * dim, n);
	do {
		uint32_t k = n - done < chunk ? n - done : chunk;

		rc = rows_one(fd, op, table, dim, k, keys + done,
			      vals + (size_t)done * dim, &one);
		sum.done += one.done;
		sum.skipped += one.skipped;
		done += k;
	} while (!rc && done < n);
	if (!rc && cr)
		*cr = sum;
	return rc;
}

int th_erase(int fd, struct embkv_wire_table_ref table, uint32_t n,
	     const uint64_t *keys, struct embkv_wire_count_reply *cr)
{
	struct embkv_wire_count_reply sum = { 0 }, one = { 0 };
	uint32_t req, rep, chunk, done = 0;
	int rc;

	th_limits(fd, &req, &rep);
	chunk = fit(req, 8, n);
	do {
		uint32_t k = n - done < chunk ? n - done : chunk;

		rc = erase_one(fd, table, k, keys + done, &one);
		sum.done += one.done;
		sum.skipped += one.skipped;
		done += k;
	} while (!rc && done < n);
	if (!rc && cr)
		*cr = sum;
	return rc;
}

int th_stat(int fd, uint32_t table, uint16_t id, uint64_t *value)
{
	const struct embkv_wire_table_ref all = { EMBKV_WIRE_TABLE_ALL, 0 };
	uint8_t body[EMBKV_WIRE_TABLE_REF_SIZE];
	struct embkv_wire_stats st;
	struct embkv_wire_stat s;
	struct th_frame f;
	uint32_t tid;
	int rc;

	embkv_wire_table_ref_encode(&all, body, sizeof(body));
	rc = th_call(fd, EMBKV_WIRE_OP_STATS, 0, body, sizeof(body), &f);
	if (rc)
		return rc;
	rc = embkv_wire_stats_decode(f.body, f.h.body_len, &st);
	if (!rc) {
		rc = -ENOENT;
		while (embkv_wire_stats_next(&st, &tid, &s))
			if (tid == table && s.id == id) {
				*value = s.value;
				rc = 0;
				break;
			}
	}
	th_frame_free(&f);
	return rc;
}

int th_ref_call(int fd, uint8_t op, struct embkv_wire_table_ref table,
		struct th_frame *f)
{
	uint8_t body[EMBKV_WIRE_TABLE_REF_SIZE];
	int rc = embkv_wire_table_ref_encode(&table, body, sizeof(body));

	return rc ? rc : th_call(fd, op, 1, body, sizeof(body), f);
}

int th_hits(int fd, struct embkv_wire_table_ref table, uint32_t n,
	    const uint64_t *keys, const uint32_t *counts,
	    struct embkv_wire_count_reply *cr)
{
	struct embkv_wire_hits m = {
		.table_id = table.table_id, .uid = table.uid, .n = n,
		.keys = keys, .counts = counts,
	};
	struct th_frame f;
	uint8_t *body;
	size_t len;
	int rc = embkv_wire_hits_size(&m, &len);

	if (rc)
		return rc;
	body = malloc(len);
	if (!body)
		return -ENOMEM;
	rc = embkv_wire_hits_encode(&m, body, len);
	if (!rc)
		rc = th_call(fd, EMBKV_WIRE_OP_HITS, 1, body, (uint32_t)len,
			     &f);
	free(body);
	return rc ? rc : count_reply(&f, cr);
}

/* 0 when rc is EMBKV_ENOTABLE; else op, after saying what came. */
static int refused(uint8_t op, int rc)
{
	if (rc == EMBKV_ENOTABLE)
		return 0;
	fprintf(stderr, "%s: %d (%s), not EMBKV_ENOTABLE\n",
		embkv_wire_op_name(op), rc, embkv_strerror(rc));
	return op;
}

int th_all_refused(int fd, struct embkv_wire_table_ref table, uint32_t dim,
		   uint32_t n, const uint64_t *keys)
{
	static const uint8_t ref_ops[] = {
		EMBKV_WIRE_OP_STATS, EMBKV_WIRE_OP_SHARD_MAP,
		EMBKV_WIRE_OP_TABLE_REGIONS,
	};
	float *vals = calloc((size_t)n * dim + 1, sizeof(float));
	uint32_t *counts = calloc((size_t)n + 1, sizeof(uint32_t));
	uint8_t *found = malloc((size_t)n + 1);
	struct th_frame f;
	int bad = 0, rc;

	if (!vals || !counts || !found) {
		bad = EMBKV_WIRE_OP_PULL;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		counts[i] = 1;
	rc = th_pull(fd, 1, table, dim, n, keys, EMBKV_WIRE_PULL_TRAIN, vals,
		     found);
	bad = refused(EMBKV_WIRE_OP_PULL, rc);
	if (!bad)
		bad = refused(EMBKV_WIRE_OP_PUSH,
			      th_rows(fd, EMBKV_WIRE_OP_PUSH, table, dim, n,
				      keys, vals, NULL));
	if (!bad)
		bad = refused(EMBKV_WIRE_OP_ASSIGN,
			      th_rows(fd, EMBKV_WIRE_OP_ASSIGN, table, dim, n,
				      keys, vals, NULL));
	if (!bad)
		bad = refused(EMBKV_WIRE_OP_ERASE,
			      th_erase(fd, table, n, keys, NULL));
	if (!bad)
		bad = refused(EMBKV_WIRE_OP_HITS,
			      th_hits(fd, table, n, keys, counts, NULL));
	for (size_t i = 0; !bad && i < sizeof(ref_ops); i++) {
		if (ref_ops[i] == EMBKV_WIRE_OP_TABLE_REGIONS && !use_rdma)
			continue; /* over TCP: -EOPNOTSUPP whatever the table */
		rc = th_ref_call(fd, ref_ops[i], table, &f);
		if (!rc)
			th_frame_free(&f);
		bad = refused(ref_ops[i], rc);
	}
out:
	free(found);
	free(counts);
	free(vals);
	return bad;
}

int th_wait_conns(int fd, uint64_t want, int ms)
{
	long deadline = now_ms() + ms;
	uint64_t v = 0;

	do {
		int rc = th_stat(fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_CONNECTIONS, &v);

		if (rc)
			return rc;
		if (v == want)
			return 0;
		usleep(POLL_STEP_MS * 1000);
	} while (now_ms() < deadline);
	fprintf(stderr, "connections: %llu, want %llu\n",
		(unsigned long long)v, (unsigned long long)want);
	return -ETIMEDOUT;
}

int th_auth(int fd, const char *token)
{
	struct embkv_wire_auth_key key;
	struct embkv_wire_hello hello, shello;
	struct embkv_wire_auth auth, sauth;
	struct th_frame f;
	int rc;

	if (getrandom(hello.nonce, sizeof(hello.nonce), 0) !=
	    (ssize_t)sizeof(hello.nonce))
		return -EIO;
	rc = th_call(fd, EMBKV_WIRE_OP_HELLO, 0, hello.nonce,
		     sizeof(hello.nonce), &f);
	if (rc)
		return rc;
	rc = embkv_wire_hello_decode(f.body, f.h.body_len, &shello);
	th_frame_free(&f);
	if (rc)
		return rc;
	rc = embkv_wire_auth_key_derive(token, strlen(token), &key);
	if (rc)
		return rc;
	embkv_wire_auth_mac(&key, EMBKV_WIRE_AUTH_CLIENT, shello.nonce,
			    hello.nonce, auth.mac);
	rc = th_call(fd, EMBKV_WIRE_OP_AUTH, 0, auth.mac, sizeof(auth.mac),
		     &f);
	if (!rc) {
		rc = embkv_wire_auth_decode(f.body, f.h.body_len, &sauth);
		th_frame_free(&f);
	}
	if (!rc)
		rc = embkv_wire_auth_verify(&key, EMBKV_WIRE_AUTH_SERVER,
					    shello.nonce, hello.nonce,
					    sauth.mac);
	embkv_wire_auth_key_wipe(&key);
	return rc;
}

void th_attr(struct embkv_table_attr *a, const char *name, uint32_t dim,
	     uint32_t partitions)
{
	embkv_table_attr_init(a);
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->dim = dim;
	a->partitions = partitions;
	a->capacity = 1u << 16;
	a->opt.lr = 0.05f;
	a->init.seed = 1234;
}
