/*
 * The etcd gateway's encodings: keys and values are base64 strings,
 * int64 fields are decimal strings, errors are gRPC codes.
 *
 * Why a base64 codec here: the gateway needs standard base64 with
 * padding, and none of what embkv links (libcurl keeps its codec
 * internal, jansson, liburcu, libxxhash) exports one; 40 lines are cheaper
 * than another dependency. The decoder is strict: a character outside
 * the alphabet, bad padding or a length not a multiple of 4 is
 * EMBKV_EPROTO, never a guess.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <embkv/embkv.h>
#include "net/etcd_priv.h"

#define B64_BAD 0xff

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* gRPC status codes (google.golang.org/grpc/codes). */
enum {
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNAVAILABLE = 14,
	GRPC_UNAUTHENTICATED = 16,
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) ? -ENOMEM : 0;
}

int embkv_etcd_global_init(void)
{
	pthread_once(&global_once, global_init);
	return global_rc;
}

void embkv_etcd_curl_common(CURL *c, const struct curl_slist *headers,
			    uint32_t connect_timeout_ms)
{
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
}

json_t *embkv_etcd_b64_json(const void *p, size_t len)
{
	const uint8_t *s = p;
	size_t olen = (len + 2) / 3 * 4, o = 0;
	char *buf = malloc(olen + 1);
	json_t *j;

	if (!buf)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < len)
			v |= s[i + 2];
		buf[o++] = b64_alphabet[v >> 18 & 63];
		buf[o++] = b64_alphabet[v >> 12 & 63];
		buf[o++] = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
		buf[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	j = json_stringn(buf, o);
	free(buf);
	return j;
}

json_t *embkv_etcd_prefix_end_json(const char *prefix)
{
	size_t len = strlen(prefix);
	uint8_t *end = malloc(len ? len : 1);
	json_t *j;

	if (!end)
		return NULL;
	memcpy(end, prefix, len);
	while (len && end[len - 1] == 0xff)
		len--;
	if (!len) { /* every key from prefix on */
		end[0] = 0;
		len = 1;
	} else {
		end[len - 1]++;
	}
	j = embkv_etcd_b64_json(end, len);
	free(end);
	return j;
}

static uint8_t b64_value(char c)
{
	const char *p = c ? strchr(b64_alphabet, c) : NULL;

	return p ? (uint8_t)(p - b64_alphabet) : B64_BAD;
}

int embkv_etcd_b64_field(const json_t *obj, const char *name, char **out,
			 size_t *len)
{
	const json_t *f = json_object_get(obj, name);
	const char *s = "";
	size_t n = 0, o = 0;
	char *buf;

	if (f) {
		if (!json_is_string(f))
			return EMBKV_EPROTO;
		s = json_string_value(f);
		n = json_string_length(f);
	}
	if (n % 4)
		return EMBKV_EPROTO;
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i += 4) {
		uint8_t a = b64_value(s[i]), b = b64_value(s[i + 1]);
		uint8_t c = s[i + 2] == '=' ? 0 : b64_value(s[i + 2]);
		uint8_t d = s[i + 3] == '=' ? 0 : b64_value(s[i + 3]);
		bool last = i + 4 == n;
		uint32_t v;

		if (a == B64_BAD || b == B64_BAD || c == B64_BAD ||
		    d == B64_BAD || (!last && (s[i + 2] == '=' ||
					       s[i + 3] == '=')) ||
		    (s[i + 2] == '=' && s[i + 3] != '='))
			goto bad;
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
		buf[o++] = (char)(v >> 16);
		if (s[i + 2] != '=')
			buf[o++] = (char)(v >> 8 & 0xff);
		if (s[i + 3] != '=')
			buf[o++] = (char)(v & 0xff);
	}
	buf[o] = '\0';
	*out = buf;
	if (len)
		*len = o;
	return 0;
bad:
	free(buf);
	return EMBKV_EPROTO;
}

int embkv_etcd_i64_field(const json_t *obj, const char *name, int64_t *out)
{
	const json_t *f = json_object_get(obj, name);
	const char *s;
	char *end;
	long long v;

	*out = 0;
	if (!f)
		return 0;
	if (json_is_integer(f)) {
		*out = json_integer_value(f);
		return 0;
	}
	if (!json_is_string(f))
		return EMBKV_EPROTO;
	s = json_string_value(f);
	if (!*s)
		return EMBKV_EPROTO;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return EMBKV_EPROTO;
	*out = v;
	return 0;
}

void embkv_etcd_kv_free(struct embkv_etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

int embkv_etcd_kv_parse(const json_t *obj, struct embkv_etcd_kv *kv)
{
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(obj))
		return EMBKV_EPROTO;
	rc = embkv_etcd_b64_field(obj, "key", &kv->key, NULL);
	if (!rc)
		rc = embkv_etcd_b64_field(obj, "value", &kv->value,
					  &kv->value_len);
	if (!rc)
		rc = embkv_etcd_i64_field(obj, "create_revision",
					  &kv->create_revision);
	if (!rc)
		rc = embkv_etcd_i64_field(obj, "mod_revision",
					  &kv->mod_revision);
	if (!rc)
		rc = embkv_etcd_i64_field(obj, "version", &kv->version);
	if (!rc)
		rc = embkv_etcd_i64_field(obj, "lease", &kv->lease);
	if (!rc && !kv->key[0])
		rc = EMBKV_EPROTO;
	if (rc)
		embkv_etcd_kv_free(kv);
	return rc;
}

int embkv_etcd_grpc_status(json_int_t code)
{
	switch (code) {
	case GRPC_INVALID_ARGUMENT:
	case GRPC_FAILED_PRECONDITION:
		return -EINVAL;
	case GRPC_DEADLINE_EXCEEDED:
		return -ETIMEDOUT;
	case GRPC_NOT_FOUND:
		return -ENOENT;
	case GRPC_PERMISSION_DENIED:
	case GRPC_UNAUTHENTICATED:
		return -EACCES;
	case GRPC_RESOURCE_EXHAUSTED:
		return -ENOSPC;
	case GRPC_OUT_OF_RANGE:
		return -ERANGE;
	case GRPC_UNAVAILABLE:
		return -EAGAIN;
	default:
		return -EIO;
	}
}
