/*
 * Wire codec, connection setup: the rdma_cm private data of the verbs
 * transport (net/RDMA.md) and the shared-secret challenge-response
 * authentication (PROTOCOL.md section 8): no secret crosses the wire.
 * The MAC is HMAC-SHA-256 from OpenSSL's libcrypto (protocol version 3;
 * versions 1 and 2 used a keyed XXH3-128, not a cryptographic MAC).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "net/wire.h"
#include "net/wire_priv.h"

/* Authentication constants. */
#define AUTH_LABEL_SIZE 8u
#define AUTH_MSG_SIZE \
	(AUTH_LABEL_SIZE + U16_SIZE + 2 * EMBKV_WIRE_NONCE_SIZE)
#define SHA256_SIZE 32u

_Static_assert(EMBKV_WIRE_AUTH_SECRET_SIZE == SHA256_SIZE,
	       "the key is one HMAC-SHA-256 output");
_Static_assert(EMBKV_WIRE_MAC_SIZE == SHA256_SIZE,
	       "the MAC is one untruncated HMAC-SHA-256");

static const uint8_t kdf_label[AUTH_LABEL_SIZE] = {
	'E', 'M', 'K', 'V', 'K', 'D', 'F', '3',
};

static const uint8_t auth_label[][AUTH_LABEL_SIZE] = {
	[EMBKV_WIRE_AUTH_CLIENT] = { 'E', 'M', 'K', 'V', 'A', 'U', 'T', 'C' },
	[EMBKV_WIRE_AUTH_SERVER] = { 'E', 'M', 'K', 'V', 'A', 'U', 'T', 'S' },
};

/* Verbs private data ---------------------------------------------------------------- */

static int verbs_recv_size_check(uint32_t v)
{
	if (!v)
		return EMBKV_EPROTO;
	if (v < EMBKV_VERBS_MIN_RECV_SIZE || v > EMBKV_VERBS_MAX_RECV_SIZE)
		return EMBKV_ELIMIT;
	return 0;
}

static int verbs_connect_check(const struct embkv_verbs_connect *m)
{
	int rc;

	if (!m->credits || !m->reply_slots)
		return EMBKV_EPROTO;
	if (m->credits > EMBKV_VERBS_MAX_CREDITS ||
	    m->reply_slots > EMBKV_VERBS_MAX_REPLY_SLOTS)
		return EMBKV_ELIMIT;
	rc = verbs_recv_size_check(m->recv_size);
	if (!rc)
		rc = verbs_recv_size_check(m->slot_size);
	if (rc)
		return rc;
	if ((uint64_t)m->reply_slots * m->slot_size >
	    EMBKV_VERBS_MAX_REPLY_ARENA)
		return EMBKV_ELIMIT;
	return 0;
}

int embkv_wire_verbs_connect_encode(const struct embkv_verbs_connect *m,
				    uint8_t *buf, size_t cap)
{
	int rc;

	if (!m || verbs_connect_check(m))
		return -EINVAL;
	rc = enc_room(buf, cap, EMBKV_VERBS_CONNECT_SIZE);
	if (rc)
		return rc;
	put_u32(buf + EMBKV_VERBS_CONNECT_MAGIC, EMBKV_WIRE_MAGIC);
	put_u16(buf + EMBKV_VERBS_CONNECT_VERSION, EMBKV_WIRE_VERSION);
	put_u16(buf + EMBKV_VERBS_CONNECT_CREDITS, m->credits);
	put_u32(buf + EMBKV_VERBS_CONNECT_RECV_SIZE, m->recv_size);
	put_u32(buf + EMBKV_VERBS_CONNECT_SLOTS, m->reply_slots);
	put_u64(buf + EMBKV_VERBS_CONNECT_REPLY_ADDR, m->reply_addr);
	put_u32(buf + EMBKV_VERBS_CONNECT_REPLY_RKEY, m->reply_rkey);
	put_u32(buf + EMBKV_VERBS_CONNECT_SLOT_SIZE, m->slot_size);
	return 0;
}

int embkv_wire_verbs_connect_decode(const uint8_t *buf, size_t len,
				    struct embkv_verbs_connect *out)
{
	struct embkv_verbs_connect m;
	int rc;

	if (!out || (!buf && len))
		return -EINVAL;
	if (len < EMBKV_VERBS_CONNECT_SIZE ||
	    get_u32(buf + EMBKV_VERBS_CONNECT_MAGIC) != EMBKV_WIRE_MAGIC)
		return EMBKV_EPROTO;
	m.version = get_u16(buf + EMBKV_VERBS_CONNECT_VERSION);
	if (m.version != EMBKV_WIRE_VERSION)
		return EMBKV_EVERSION;
	m.credits = get_u16(buf + EMBKV_VERBS_CONNECT_CREDITS);
	m.recv_size = get_u32(buf + EMBKV_VERBS_CONNECT_RECV_SIZE);
	m.reply_slots = get_u32(buf + EMBKV_VERBS_CONNECT_SLOTS);
	m.reply_addr = get_u64(buf + EMBKV_VERBS_CONNECT_REPLY_ADDR);
	m.reply_rkey = get_u32(buf + EMBKV_VERBS_CONNECT_REPLY_RKEY);
	m.slot_size = get_u32(buf + EMBKV_VERBS_CONNECT_SLOT_SIZE);
	rc = verbs_connect_check(&m);
	if (rc)
		return rc;
	*out = m;
	return 0;
}

static int verbs_accept_check(const struct embkv_verbs_accept *m)
{
	if (!m->credits)
		return EMBKV_EPROTO;
	if (m->credits > EMBKV_VERBS_MAX_CREDITS)
		return EMBKV_ELIMIT;
	return verbs_recv_size_check(m->recv_size);
}

int embkv_wire_verbs_accept_encode(const struct embkv_verbs_accept *m,
				   uint8_t *buf, size_t cap)
{
	int rc;

	if (!m || verbs_accept_check(m))
		return -EINVAL;
	rc = enc_room(buf, cap, EMBKV_VERBS_ACCEPT_SIZE);
	if (rc)
		return rc;
	put_u32(buf + EMBKV_VERBS_ACCEPT_MAGIC, EMBKV_WIRE_MAGIC);
	put_u16(buf + EMBKV_VERBS_ACCEPT_VERSION, EMBKV_WIRE_VERSION);
	put_u16(buf + EMBKV_VERBS_ACCEPT_CREDITS, m->credits);
	put_u32(buf + EMBKV_VERBS_ACCEPT_RECV_SIZE, m->recv_size);
	return 0;
}

int embkv_wire_verbs_accept_decode(const uint8_t *buf, size_t len,
				   struct embkv_verbs_accept *out)
{
	struct embkv_verbs_accept m;
	int rc;

	if (!out || (!buf && len))
		return -EINVAL;
	if (len < EMBKV_VERBS_ACCEPT_SIZE ||
	    get_u32(buf + EMBKV_VERBS_ACCEPT_MAGIC) != EMBKV_WIRE_MAGIC)
		return EMBKV_EPROTO;
	m.version = get_u16(buf + EMBKV_VERBS_ACCEPT_VERSION);
	if (m.version != EMBKV_WIRE_VERSION)
		return EMBKV_EVERSION;
	m.credits = get_u16(buf + EMBKV_VERBS_ACCEPT_CREDITS);
	m.recv_size = get_u32(buf + EMBKV_VERBS_ACCEPT_RECV_SIZE);
	rc = verbs_accept_check(&m);
	if (rc)
		return rc;
	*out = m;
	return 0;
}

/* Authentication -------------------------------------------------------------------- */

int embkv_wire_hmac_sha256(const void *key, size_t key_len, const void *msg,
			   size_t msg_len, uint8_t out[32])
{
	unsigned int n = 0;

	if ((!key && key_len) || (!msg && msg_len) || !out ||
	    key_len > INT32_MAX)
		return -EINVAL;
	/* HMAC() with a NULL key means "reuse the last one": never. */
	if (!HMAC(EVP_sha256(), key_len ? key : (const void *)"", (int)key_len,
		  msg_len ? msg : (const void *)"", msg_len, out, &n) ||
	    n != SHA256_SIZE)
		return -EINVAL;
	return 0;
}

int embkv_wire_auth_key_derive(const void *token, size_t token_len,
			       struct embkv_wire_auth_key *key)
{
	if (!token || !token_len || !key)
		return -EINVAL;
	return embkv_wire_hmac_sha256(kdf_label, sizeof(kdf_label), token,
				      token_len, key->secret);
}

void embkv_wire_auth_key_wipe(struct embkv_wire_auth_key *key)
{
	if (key)
		OPENSSL_cleanse(key, sizeof(*key));
}

int embkv_wire_auth_mac(const struct embkv_wire_auth_key *key,
			enum embkv_wire_auth_role role,
			const uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE],
			const uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE],
			uint8_t mac[EMBKV_WIRE_MAC_SIZE])
{
	uint8_t msg[AUTH_MSG_SIZE];
	uint8_t *p = msg;

	if (!key || !server_nonce || !client_nonce || !mac ||
	    (role != EMBKV_WIRE_AUTH_CLIENT && role != EMBKV_WIRE_AUTH_SERVER))
		return -EINVAL;
	memcpy(p, auth_label[role], AUTH_LABEL_SIZE);
	p += AUTH_LABEL_SIZE;
	put_u16(p, EMBKV_WIRE_VERSION);
	p += U16_SIZE;
	memcpy(p, server_nonce, EMBKV_WIRE_NONCE_SIZE);
	p += EMBKV_WIRE_NONCE_SIZE;
	memcpy(p, client_nonce, EMBKV_WIRE_NONCE_SIZE);
	return embkv_wire_hmac_sha256(key->secret, EMBKV_WIRE_AUTH_SECRET_SIZE,
				      msg, sizeof(msg), mac);
}

int embkv_wire_auth_verify(const struct embkv_wire_auth_key *key,
			   enum embkv_wire_auth_role role,
			   const uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE],
			   const uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE],
			   const uint8_t mac[EMBKV_WIRE_MAC_SIZE])
{
	uint8_t want[EMBKV_WIRE_MAC_SIZE];
	int rc;

	if (!mac)
		return -EINVAL;
	rc = embkv_wire_auth_mac(key, role, server_nonce, client_nonce, want);
	if (rc)
		return rc;
	rc = CRYPTO_memcmp(want, mac, EMBKV_WIRE_MAC_SIZE) ? EMBKV_EAUTH : 0;
	OPENSSL_cleanse(want, sizeof(want));
	return rc;
}
