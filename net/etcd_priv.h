/*
 * What net/etcd.c and net/etcd_watch.c share: the handle, the JSON and
 * base64 helpers, and how a libcurl result becomes a status.
 */
#ifndef EMBKV_NET_ETCD_PRIV_H
#define EMBKV_NET_ETCD_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include <jansson.h>
#include "net/etcd.h"

struct embkv_etcd {
	char **endpoints;          /* without a trailing '/' */
	size_t nendpoints;
	size_t cur;                /* the endpoint that answered last */
	uint32_t timeout_ms, connect_timeout_ms;
	CURL *curl;                /* kept: its connection is reused */
	struct curl_slist *headers;
	char errmsg[EMBKV_ETCD_ERRMSG_MAX];
};

/* libcurl's global setup, once per process. 0 or -ENOMEM. */
int embkv_etcd_global_init(void);

/* Options every request of ours sets on an easy handle: no proxy from
 * the environment, http only, no signals, our headers. */
void embkv_etcd_curl_common(CURL *c, const struct curl_slist *headers,
			    uint32_t connect_timeout_ms);

/* A JSON string of the base64 of len bytes; NULL when out of memory. */
json_t *embkv_etcd_b64_json(const void *p, size_t len);
/* The base64 range end for "every key starting with prefix" (the prefix
 * with its last byte raised by one; "\0" when it is all 0xff). */
json_t *embkv_etcd_prefix_end_json(const char *prefix);
/* Decodes the base64 string field name of obj (absent: empty) into a
 * malloc'ed NUL-terminated buffer: 0, EMBKV_EPROTO, -ENOMEM. */
int embkv_etcd_b64_field(const json_t *obj, const char *name, char **out,
			 size_t *len);
/* An int64 field the gateway writes as a string (a number is accepted
 * too; absent: 0): 0 or EMBKV_EPROTO. */
int embkv_etcd_i64_field(const json_t *obj, const char *name, int64_t *out);
/* Fills kv from a gateway KeyValue object: 0, EMBKV_EPROTO, -ENOMEM; on
 * error kv holds nothing to free. */
int embkv_etcd_kv_parse(const json_t *obj, struct embkv_etcd_kv *kv);
void embkv_etcd_kv_free(struct embkv_etcd_kv *kv);
/* The status for a gRPC code the gateway reports in an error object. */
int embkv_etcd_grpc_status(json_int_t code);

#endif
