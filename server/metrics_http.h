/*
 * embkvd's Prometheus endpoint (--metrics-listen): GET /metrics in the
 * text exposition format, served by libmicrohttpd on a thread of its own.
 */
#ifndef EMBKV_SERVER_METRICS_HTTP_H
#define EMBKV_SERVER_METRICS_HTTP_H

#include <stdint.h>
#include <stdio.h>

struct embkvd;
struct embkvd_metrics_http;

/* Binds host:port (0: the kernel picks; s->metrics_port gets the bound
 * one) and starts serving; sets s->mhttp. Call once everything the
 * metrics read exists (catalog, owners, I/O threads). 0 or -errno. */
int embkvd_metrics_http_start(struct embkvd *s, const char *host,
			      uint16_t port);
/* Stops serving and joins the thread; NULL is a no-op. */
void embkvd_metrics_http_stop(struct embkvd_metrics_http *m);
/* Writes the whole exposition to f (the handler's body; exposed for
 * tests). Any thread registered with RCU, outside rcu_read_lock(). */
void embkvd_metrics_write(struct embkvd *s, FILE *f);

#endif
