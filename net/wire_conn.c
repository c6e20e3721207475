/*
 * Wire codec, connection setup: the rdma_cm private data of the verbs
 * transport (net/RDMA.md) and the shared-secret challenge-response
 * authentication (PROTOCOL.md section 8): no secret crosses the wire.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "net/wire.h"
#include "net/wire_priv.h"

/* Authentication constants. */
#define AUTH_LABEL_SIZE 8u
#define AUTH_MSG_SIZE \
	(AUTH_LABEL_SIZE + U16_SIZE + 2 * EMBKV_WIRE_NONCE_SIZE)
#define AUTH_KDF_SEED 0x656d626b762d6b64ull /* "embkv-kd" */
#define AUTH_BLOCK_SIZE sizeof(XXH128_canonical_t)

_Static_assert(EMBKV_WIRE_AUTH_SECRET_SIZE >= XXH3_SECRET_SIZE_MIN,
	       "XXH3 secret too short");
_Static_assert(EMBKV_WIRE_AUTH_SECRET_SIZE % sizeof(XXH128_canonical_t) == 0,
	       "secret must be whole XXH128 blocks");
_Static_assert(EMBKV_WIRE_MAC_SIZE == sizeof(XXH128_canonical_t),
	       "MAC is one XXH128");

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

int embkv_wire_auth_key_derive(const void *token, size_t token_len,
			       struct embkv_wire_auth_key *key)
{
	XXH128_canonical_t block;
	size_t i;

	if (!token || !token_len || !key)
		return -EINVAL;
	for (i = 0; i < EMBKV_WIRE_AUTH_SECRET_SIZE / AUTH_BLOCK_SIZE; i++) {
		XXH128_canonicalFromHash(&block,
			XXH3_128bits_withSeed(token, token_len,
					      AUTH_KDF_SEED + i));
		memcpy(key->secret + i * AUTH_BLOCK_SIZE, &block,
		       AUTH_BLOCK_SIZE);
	}
	explicit_bzero(&block, sizeof(block));
	return 0;
}

void embkv_wire_auth_key_wipe(struct embkv_wire_auth_key *key)
{
	if (key)
		explicit_bzero(key, sizeof(*key));
}

int embkv_wire_auth_mac(const struct embkv_wire_auth_key *key,
			enum embkv_wire_auth_role role,
			const uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE],
			const uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE],
			uint8_t mac[EMBKV_WIRE_MAC_SIZE])
{
	uint8_t msg[AUTH_MSG_SIZE];
	uint8_t *p = msg;
	XXH128_canonical_t out;

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
	XXH128_canonicalFromHash(&out,
		XXH3_128bits_withSecret(msg, sizeof(msg), key->secret,
					EMBKV_WIRE_AUTH_SECRET_SIZE));
	memcpy(mac, &out, EMBKV_WIRE_MAC_SIZE);
	return 0;
}

int embkv_wire_auth_verify(const struct embkv_wire_auth_key *key,
			   enum embkv_wire_auth_role role,
			   const uint8_t server_nonce[EMBKV_WIRE_NONCE_SIZE],
			   const uint8_t client_nonce[EMBKV_WIRE_NONCE_SIZE],
			   const uint8_t mac[EMBKV_WIRE_MAC_SIZE])
{
	uint8_t want[EMBKV_WIRE_MAC_SIZE];
	uint8_t diff = 0;
	size_t i;
	int rc;

	if (!mac)
		return -EINVAL;
	rc = embkv_wire_auth_mac(key, role, server_nonce, client_nonce, want);
	if (rc)
		return rc;
	for (i = 0; i < EMBKV_WIRE_MAC_SIZE; i++)
		diff |= want[i] ^ mac[i];
	explicit_bzero(want, sizeof(want));
	return diff ? EMBKV_EAUTH : 0;
}
