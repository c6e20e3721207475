/*
 * Minimal pipelined clients for the stores embkv-bench compares against:
 * Redis (RESP: one MGET / MSET per batch, binary 8-byte keys, as TFRA's
 * Redis backend stores one string per row) and memcached (text protocol:
 * one multi-get per batch, pipelined "set ... noreply" closed by a meta
 * no-op). Only what the benchmark needs; every reply is parsed and
 * checked, and any surprise is an error, never a silent zero.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include "tools/bench_kv.h"

#define RX_CHUNK (1u << 20)
#define HEX_KEY_LEN 16u

static int kv_write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int bench_kv_connect(struct bench_kv *kv, const char *host, unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };
	int one = 1;

	memset(kv, 0, sizeof(*kv));
	kv->fd = -1;
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	kv->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (kv->fd < 0)
		return -errno;
	setsockopt(kv->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(kv->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(kv->fd);
		kv->fd = -1;
		return err;
	}
	kv->rx_cap = RX_CHUNK;
	kv->rx = malloc(kv->rx_cap);
	return kv->rx ? 0 : -ENOMEM;
}

void bench_kv_close(struct bench_kv *kv)
{
	if (kv->fd >= 0)
		close(kv->fd);
	free(kv->rx);
	free(kv->tx);
	memset(kv, 0, sizeof(*kv));
	kv->fd = -1;
}

/* ---- buffered receive --------------------------------------------------- */

static int rx_fill(struct bench_kv *kv)
{
	ssize_t r;

	if (kv->rx_pos > 0) {
		memmove(kv->rx, kv->rx + kv->rx_pos, kv->rx_len - kv->rx_pos);
		kv->rx_len -= kv->rx_pos;
		kv->rx_pos = 0;
	}
	if (kv->rx_len == kv->rx_cap) {
		uint8_t *n = realloc(kv->rx, kv->rx_cap * 2);

		if (!n)
			return -ENOMEM;
		kv->rx = n;
		kv->rx_cap *= 2;
	}
	do
		r = read(kv->fd, kv->rx + kv->rx_len, kv->rx_cap - kv->rx_len);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return -EIO;
	kv->rx_len += (size_t)r;
	return 0;
}

/* Next line (without CRLF) into *line, *len; valid until the next call. */
static int rx_line(struct bench_kv *kv, const char **line, size_t *len)
{
	for (;;) {
		uint8_t *s = kv->rx + kv->rx_pos;
		size_t avail = kv->rx_len - kv->rx_pos;
		uint8_t *nl = avail ? memchr(s, '\n', avail) : NULL;

		if (nl) {
			*line = (const char *)s;
			*len = (size_t)(nl - s);
			if (*len && s[*len - 1] == '\r')
				(*len)--;
			kv->rx_pos += (size_t)(nl - s) + 1;
			return 0;
		}
		if (rx_fill(kv))
			return -EIO;
	}
}

/* n bytes followed by CRLF into dst (NULL: skip). */
static int rx_block(struct bench_kv *kv, void *dst, size_t n)
{
	while (kv->rx_len - kv->rx_pos < n + 2)
		if (rx_fill(kv))
			return -EIO;
	if (dst)
		memcpy(dst, kv->rx + kv->rx_pos, n);
	if (kv->rx[kv->rx_pos + n] != '\r' || kv->rx[kv->rx_pos + n + 1] != '\n')
		return -EPROTO;
	kv->rx_pos += n + 2;
	return 0;
}

/* ---- transmit buffer ---------------------------------------------------- */

static int tx_reserve(struct bench_kv *kv, size_t extra)
{
	if (kv->tx_len + extra > kv->tx_cap) {
		size_t cap = kv->tx_cap ? kv->tx_cap : RX_CHUNK;
		uint8_t *n;

		while (cap < kv->tx_len + extra)
			cap *= 2;
		n = realloc(kv->tx, cap);
		if (!n)
			return -ENOMEM;
		kv->tx = n;
		kv->tx_cap = cap;
	}
	return 0;
}

static void tx_put(struct bench_kv *kv, const void *p, size_t n)
{
	memcpy(kv->tx + kv->tx_len, p, n);
	kv->tx_len += n;
}

static void tx_fmt(struct bench_kv *kv, const char *s)
{
	tx_put(kv, s, strlen(s));
}

static int tx_flush(struct bench_kv *kv)
{
	int err = kv_write_all(kv->fd, kv->tx, kv->tx_len);

	kv->tx_len = 0;
	return err;
}

/* ---- Redis -------------------------------------------------------------- */

static void resp_bulk(struct bench_kv *kv, const void *p, size_t n)
{
	char hdr[32];

	snprintf(hdr, sizeof(hdr), "$%zu\r\n", n);
	tx_fmt(kv, hdr);
	tx_put(kv, p, n);
	tx_put(kv, "\r\n", 2);
}

int bench_redis_mget(struct bench_kv *kv, uint32_t n, const uint64_t *keys,
		     float *out, uint32_t dim, uint8_t *found)
{
	size_t row = (size_t)dim * sizeof(float);
	const char *line;
	size_t len;
	char hdr[32];
	int err = tx_reserve(kv, 64 + (size_t)n * 32);

	if (err)
		return err;
	snprintf(hdr, sizeof(hdr), "*%u\r\n", n + 1);
	tx_fmt(kv, hdr);
	resp_bulk(kv, "MGET", 4);
	for (uint32_t i = 0; i < n; i++)
		resp_bulk(kv, &keys[i], sizeof(keys[i]));
	if ((err = tx_flush(kv)) || (err = rx_line(kv, &line, &len)))
		return err;
	if (len < 2 || line[0] != '*' || strtoul(line + 1, NULL, 10) != n)
		return -EPROTO;
	for (uint32_t i = 0; i < n; i++) {
		long vlen;

		if ((err = rx_line(kv, &line, &len)))
			return err;
		if (len < 2 || line[0] != '$')
			return -EPROTO;
		vlen = strtol(line + 1, NULL, 10);
		if (vlen < 0) {
			memset(out + (size_t)i * dim, 0, row);
			found[i] = 0;
			continue;
		}
		if ((size_t)vlen != row)
			return -EPROTO;
		if ((err = rx_block(kv, out + (size_t)i * dim, row)))
			return err;
		found[i] = 1;
	}
	return 0;
}

int bench_redis_mset(struct bench_kv *kv, uint32_t n, const uint64_t *keys,
		     const float *rows, uint32_t dim)
{
	size_t row = (size_t)dim * sizeof(float);
	const char *line;
	size_t len;
	char hdr[32];
	int err = tx_reserve(kv, 64 + (size_t)n * (48 + row));

	if (err)
		return err;
	snprintf(hdr, sizeof(hdr), "*%u\r\n", 2 * n + 1);
	tx_fmt(kv, hdr);
	resp_bulk(kv, "MSET", 4);
	for (uint32_t i = 0; i < n; i++) {
		resp_bulk(kv, &keys[i], sizeof(keys[i]));
		resp_bulk(kv, rows + (size_t)i * dim, row);
	}
	if ((err = tx_flush(kv)) || (err = rx_line(kv, &line, &len)))
		return err;
	return len == 3 && memcmp(line, "+OK", 3) == 0 ? 0 : -EPROTO;
}

/* ---- memcached ---------------------------------------------------------- */

static void hex_key(uint64_t k, char out[HEX_KEY_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = HEX_KEY_LEN - 1; i >= 0; i--, k >>= 4)
		out[i] = digits[k & 15];
	out[HEX_KEY_LEN] = 0;
}

static uint64_t unhex_key(const char *s, size_t n)
{
	uint64_t k = 0;

	for (size_t i = 0; i < n; i++)
		k = k << 4 | (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
	return k;
}

int bench_memc_get(struct bench_kv *kv, uint32_t n, const uint64_t *keys,
		   float *out, uint32_t dim, uint8_t *found)
{
	size_t row = (size_t)dim * sizeof(float);
	char hk[HEX_KEY_LEN + 1];
	const char *line;
	size_t len;
	uint32_t next = 0;
	int err = tx_reserve(kv, 8 + (size_t)n * (HEX_KEY_LEN + 1));

	if (err)
		return err;
	tx_fmt(kv, "get");
	for (uint32_t i = 0; i < n; i++) {
		hex_key(keys[i], hk);
		tx_put(kv, " ", 1);
		tx_put(kv, hk, HEX_KEY_LEN);
	}
	tx_put(kv, "\r\n", 2);
	if ((err = tx_flush(kv)))
		return err;
	memset(found, 0, n);
	/* Hits come back in request order; misses are simply absent. */
	for (;;) {
		uint64_t k;

		if ((err = rx_line(kv, &line, &len)))
			return err;
		if (len == 3 && memcmp(line, "END", 3) == 0)
			break;
		if (len < 6 + HEX_KEY_LEN || memcmp(line, "VALUE ", 6) != 0)
			return -EPROTO;
		k = unhex_key(line + 6, HEX_KEY_LEN);
		while (next < n && keys[next] != k)
			next++;
		if (next == n)
			return -EPROTO;
		if ((err = rx_block(kv, out + (size_t)next * dim, row)))
			return err;
		found[next++] = 1;
	}
	for (uint32_t i = 0; i < n; i++)
		if (!found[i])
			memset(out + (size_t)i * dim, 0, row);
	return 0;
}

int bench_memc_set(struct bench_kv *kv, uint32_t n, const uint64_t *keys,
		   const float *rows, uint32_t dim)
{
	size_t row = (size_t)dim * sizeof(float);
	char hk[HEX_KEY_LEN + 1], hdr[64];
	const char *line;
	size_t len;
	int err = tx_reserve(kv, 16 + (size_t)n * (64 + row));

	if (err)
		return err;
	for (uint32_t i = 0; i < n; i++) {
		hex_key(keys[i], hk);
		snprintf(hdr, sizeof(hdr), "set %s 0 0 %zu noreply\r\n", hk, row);
		tx_fmt(kv, hdr);
		tx_put(kv, rows + (size_t)i * dim, row);
		tx_put(kv, "\r\n", 2);
	}
	tx_fmt(kv, "mn\r\n"); /* meta no-op: its reply says all sets are done */
	if ((err = tx_flush(kv)) || (err = rx_line(kv, &line, &len)))
		return err;
	return len == 2 && memcmp(line, "MN", 2) == 0 ? 0 : -EPROTO;
}
