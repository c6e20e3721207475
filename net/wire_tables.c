/*
 * Wire codec, tables and maps: table names and attributes, TABLE_OPEN
 * info, the table list, TABLE_REGIONS, STATS and SHARD_MAP (net/wire.c
 * has the codec's design). Variable-length sections are validated in
 * full by the decoder, then walked with a cursor.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/wire.h"
#include "net/wire_priv.h"

/* Table names and attributes ------------------------------------------------ */

int embkv_wire_name_size(const char *name, size_t *len)
{
	size_t nl;
	int rc;

	if (!len)
		return -EINVAL;
	rc = name_len(name, &nl);
	if (rc)
		return rc;
	*len = STR_LEN_SIZE + nl;
	return 0;
}

int embkv_wire_name_encode(const char *name, uint8_t *body, size_t cap)
{
	size_t len;
	int rc = embkv_wire_name_size(name, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_str(body, name, len - STR_LEN_SIZE);
	return 0;
}

int embkv_wire_name_decode(const uint8_t *body, size_t len,
			   char name[EMBKV_TABLE_NAME_MAX])
{
	char tmp[EMBKV_TABLE_NAME_MAX];
	struct rd r;
	int rc = dec_args(body, len, name);

	if (rc)
		return rc;
	if (len < STR_LEN_SIZE)
		return EMBKV_EPROTO;
	r.p = body;
	r.end = body + len;
	rc = rd_name(&r, tmp);
	if (rc)
		return rc;
	if (r.p != r.end)
		return EMBKV_EPROTO;
	memcpy(name, tmp, sizeof(tmp));
	return 0;
}

static int attr_size(const struct embkv_table_attr *a, size_t *len)
{
	size_t nl;
	int rc;

	if (!a || !len)
		return -EINVAL;
	rc = dim_check(a->dim, -EINVAL);
	if (!rc)
		rc = name_len(a->name, &nl);
	if (rc)
		return rc;
	*len = ATTR_FIXED_SIZE + STR_LEN_SIZE + nl;
	return 0;
}

/* Writes a (already checked by attr_size) at p; len is its encoded size. */
static void attr_write(uint8_t *p, const struct embkv_table_attr *a, size_t len)
{
	put_u32(p + EMBKV_WIRE_ATTR_DIM, a->dim);
	put_u32(p + EMBKV_WIRE_ATTR_DTYPE, (uint32_t)a->dtype);
	put_u32(p + EMBKV_WIRE_ATTR_PARTITIONS, a->partitions);
	put_u32(p + EMBKV_WIRE_ATTR_ADMIT_AFTER, a->admit_after);
	put_u64(p + EMBKV_WIRE_ATTR_CAPACITY, a->capacity);
	put_u32(p + EMBKV_WIRE_ATTR_OPT_TYPE, (uint32_t)a->opt.type);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_LR, a->opt.lr);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_BETA1, a->opt.beta1);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_BETA2, a->opt.beta2);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_EPS, a->opt.eps);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_INIT_ACCUM, a->opt.initial_accum);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_L1, a->opt.l1);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_L2, a->opt.l2);
	put_f32(p + EMBKV_WIRE_ATTR_OPT_FTRL_BETA, a->opt.ftrl_beta);
	put_u32(p + EMBKV_WIRE_ATTR_INIT_TYPE, (uint32_t)a->init.type);
	put_f32(p + EMBKV_WIRE_ATTR_INIT_A, a->init.a);
	put_f32(p + EMBKV_WIRE_ATTR_INIT_B, a->init.b);
	put_u64(p + EMBKV_WIRE_ATTR_INIT_SEED, a->init.seed);
	put_u32(p + EMBKV_WIRE_ATTR_LFU_DECAY, a->lfu_decay_period);
	put_u32(p + EMBKV_WIRE_ATTR_FLAGS, a->flags);
	put_u64(p + EMBKV_WIRE_ATTR_HASH_SEED, a->hash_seed);
	put_f32(p + EMBKV_WIRE_ATTR_INDEX_LOAD, a->index_load);
	put_u32(p + EMBKV_WIRE_ATTR_RESERVED, 0);
	put_str(p + EMBKV_WIRE_ATTR_NAME, a->name,
		len - ATTR_FIXED_SIZE - STR_LEN_SIZE);
}

/* Reads an attr that must fill [p, p + len) exactly. */
static int attr_read(const uint8_t *p, size_t len, struct embkv_table_attr *out)
{
	struct embkv_table_attr a;
	struct rd r;
	int rc;

	if (len < ATTR_FIXED_SIZE)
		return EMBKV_EPROTO;
	r.p = p + ATTR_FIXED_SIZE;
	r.end = p + len;
	memset(&a, 0, sizeof(a));
	a.dim = get_u32(p + EMBKV_WIRE_ATTR_DIM);
	rc = dim_check(a.dim, EMBKV_EPROTO);
	if (!rc)
		rc = rd_name(&r, a.name);
	if (rc)
		return rc;
	if (r.p != r.end)
		return EMBKV_EPROTO;
	a.dtype = (enum embkv_dtype)get_u32(p + EMBKV_WIRE_ATTR_DTYPE);
	a.partitions = get_u32(p + EMBKV_WIRE_ATTR_PARTITIONS);
	a.admit_after = get_u32(p + EMBKV_WIRE_ATTR_ADMIT_AFTER);
	a.capacity = get_u64(p + EMBKV_WIRE_ATTR_CAPACITY);
	a.opt.type = (enum embkv_optimizer)get_u32(p + EMBKV_WIRE_ATTR_OPT_TYPE);
	a.opt.lr = get_f32(p + EMBKV_WIRE_ATTR_OPT_LR);
	a.opt.beta1 = get_f32(p + EMBKV_WIRE_ATTR_OPT_BETA1);
	a.opt.beta2 = get_f32(p + EMBKV_WIRE_ATTR_OPT_BETA2);
	a.opt.eps = get_f32(p + EMBKV_WIRE_ATTR_OPT_EPS);
	a.opt.initial_accum = get_f32(p + EMBKV_WIRE_ATTR_OPT_INIT_ACCUM);
	a.opt.l1 = get_f32(p + EMBKV_WIRE_ATTR_OPT_L1);
	a.opt.l2 = get_f32(p + EMBKV_WIRE_ATTR_OPT_L2);
	a.opt.ftrl_beta = get_f32(p + EMBKV_WIRE_ATTR_OPT_FTRL_BETA);
	a.init.type = (enum embkv_init_type)get_u32(p + EMBKV_WIRE_ATTR_INIT_TYPE);
	a.init.a = get_f32(p + EMBKV_WIRE_ATTR_INIT_A);
	a.init.b = get_f32(p + EMBKV_WIRE_ATTR_INIT_B);
	a.init.seed = get_u64(p + EMBKV_WIRE_ATTR_INIT_SEED);
	a.lfu_decay_period = get_u32(p + EMBKV_WIRE_ATTR_LFU_DECAY);
	a.flags = get_u32(p + EMBKV_WIRE_ATTR_FLAGS);
	a.hash_seed = get_u64(p + EMBKV_WIRE_ATTR_HASH_SEED);
	a.index_load = get_f32(p + EMBKV_WIRE_ATTR_INDEX_LOAD);
	if (get_u32(p + EMBKV_WIRE_ATTR_RESERVED) != 0)
		return EMBKV_EPROTO;
	*out = a;
	return 0;
}

int embkv_wire_table_attr_size(const struct embkv_table_attr *a, size_t *len)
{
	return attr_size(a, len);
}

int embkv_wire_table_attr_encode(const struct embkv_table_attr *a,
				 uint8_t *body, size_t cap)
{
	size_t len;
	int rc = attr_size(a, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	attr_write(body, a, len);
	return 0;
}

int embkv_wire_table_attr_decode(const uint8_t *body, size_t len,
				 struct embkv_table_attr *out)
{
	int rc = dec_args(body, len, out);

	return rc ? rc : attr_read(body, len, out);
}

int embkv_wire_table_info_size(const struct embkv_wire_table_info *m,
			       size_t *len)
{
	int rc;

	if (!m || !len || !m->uid)
		return -EINVAL;
	rc = attr_size(&m->attr, len);
	if (rc)
		return rc;
	*len += EMBKV_WIRE_TABLE_INFO_ATTR;
	return 0;
}

int embkv_wire_table_info_encode(const struct embkv_wire_table_info *m,
				 uint8_t *body, size_t cap)
{
	size_t len;
	int rc = embkv_wire_table_info_size(m, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_TABLE_INFO_ID, m->table_id);
	put_u32(body + EMBKV_WIRE_TABLE_INFO_RESERVED, 0);
	put_u64(body + EMBKV_WIRE_TABLE_INFO_UID, m->uid);
	attr_write(body + EMBKV_WIRE_TABLE_INFO_ATTR, &m->attr,
		   len - EMBKV_WIRE_TABLE_INFO_ATTR);
	return 0;
}

int embkv_wire_table_info_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_table_info *out)
{
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_TABLE_INFO_ATTR ||
	    get_u32(body + EMBKV_WIRE_TABLE_INFO_RESERVED) ||
	    !get_u64(body + EMBKV_WIRE_TABLE_INFO_UID))
		return EMBKV_EPROTO;
	rc = attr_read(body + EMBKV_WIRE_TABLE_INFO_ATTR,
		       len - EMBKV_WIRE_TABLE_INFO_ATTR, &out->attr);
	if (rc)
		return rc;
	out->table_id = get_u32(body + EMBKV_WIRE_TABLE_INFO_ID);
	out->uid = get_u64(body + EMBKV_WIRE_TABLE_INFO_UID);
	return 0;
}

/* TABLE_SET_OPT ------------------------------------------------------------ */

#define SET_OPT_NFLOATS 8u

static float *set_opt_field(struct embkv_opt_attr *o, unsigned i)
{
	float *f[SET_OPT_NFLOATS] = { &o->lr, &o->beta1, &o->beta2, &o->eps,
				      &o->initial_accum, &o->l1, &o->l2,
				      &o->ftrl_beta };

	return f[i];
}

int embkv_wire_set_opt_encode(const struct embkv_wire_set_opt *m,
			      uint8_t *body, size_t cap)
{
	struct embkv_opt_attr o;
	int rc;

	if (!m || !m->uid || m->table_id == EMBKV_WIRE_TABLE_ALL)
		return -EINVAL;
	rc = enc_room(body, cap, EMBKV_WIRE_SET_OPT_SIZE);
	if (rc)
		return rc;
	o = m->opt;
	put_u32(body + EMBKV_WIRE_SET_OPT_ID, m->table_id);
	put_u32(body + EMBKV_WIRE_SET_OPT_RESERVED, 0);
	put_u64(body + EMBKV_WIRE_SET_OPT_UID, m->uid);
	put_u32(body + EMBKV_WIRE_SET_OPT_TYPE, (uint32_t)o.type);
	for (unsigned i = 0; i < SET_OPT_NFLOATS; i++)
		put_f32(body + EMBKV_WIRE_SET_OPT_LR + 4 * i,
			*set_opt_field(&o, i));
	return 0;
}

int embkv_wire_set_opt_decode(const uint8_t *body, size_t len,
			      struct embkv_wire_set_opt *out)
{
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len != EMBKV_WIRE_SET_OPT_SIZE ||
	    get_u32(body + EMBKV_WIRE_SET_OPT_RESERVED))
		return EMBKV_EPROTO;
	out->table_id = get_u32(body + EMBKV_WIRE_SET_OPT_ID);
	out->uid = get_u64(body + EMBKV_WIRE_SET_OPT_UID);
	if (!out->uid || out->table_id == EMBKV_WIRE_TABLE_ALL)
		return EMBKV_EPROTO;
	memset(&out->opt, 0, sizeof(out->opt));
	out->opt.type = (enum embkv_optimizer)get_u32(
		body + EMBKV_WIRE_SET_OPT_TYPE);
	for (unsigned i = 0; i < SET_OPT_NFLOATS; i++)
		*set_opt_field(&out->opt, i) =
			get_f32(body + EMBKV_WIRE_SET_OPT_LR + 4 * i);
	return 0;
}

/* Table list ------------------------------------------------------------------ */

int embkv_wire_table_list_size(const struct embkv_wire_table_entry *e,
			       uint32_t n, size_t *len)
{
	uint64_t total = LIST_COUNT_SIZE;
	size_t nl;
	uint32_t i;
	int rc;

	if (!len || (n && !e))
		return -EINVAL;
	if (n > EMBKV_WIRE_MAX_TABLES)
		return EMBKV_ELIMIT;
	for (i = 0; i < n; i++) {
		rc = dim_check(e[i].dim, -EINVAL);
		if (!rc && !e[i].uid)
			rc = -EINVAL;
		if (!rc)
			rc = name_len(e[i].name, &nl);
		if (rc)
			return rc;
		total += TABLE_ENTRY_FIXED + STR_LEN_SIZE + nl;
	}
	if (total > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	*len = (size_t)total;
	return 0;
}

int embkv_wire_table_list_encode(const struct embkv_wire_table_entry *e,
				 uint32_t n, uint8_t *body, size_t cap)
{
	size_t len;
	uint32_t i;
	uint8_t *p;
	int rc = embkv_wire_table_list_size(e, n, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body, n);
	p = body + LIST_COUNT_SIZE;
	for (i = 0; i < n; i++) {
		put_u32(p, e[i].table_id);
		put_u32(p + U32_SIZE, e[i].dim);
		put_u64(p + 2 * U32_SIZE, e[i].uid);
		p = put_str(p + TABLE_ENTRY_FIXED, e[i].name,
			    strnlen(e[i].name, EMBKV_TABLE_NAME_MAX));
	}
	return 0;
}

static int table_entry_read(struct rd *r, struct embkv_wire_table_entry *e)
{
	int rc;

	if (!rd_has(r, TABLE_ENTRY_FIXED))
		return EMBKV_EPROTO;
	e->table_id = get_u32(r->p);
	e->dim = get_u32(r->p + U32_SIZE);
	e->uid = get_u64(r->p + 2 * U32_SIZE);
	rc = dim_check(e->dim, EMBKV_EPROTO);
	if (rc)
		return rc;
	if (!e->uid)
		return EMBKV_EPROTO;
	r->p += TABLE_ENTRY_FIXED;
	return rd_name(r, e->name);
}

int embkv_wire_table_list_decode(const uint8_t *body, size_t len,
				 struct embkv_wire_table_list *out)
{
	struct embkv_wire_table_entry e;
	uint32_t count, i;
	struct rd r;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < LIST_COUNT_SIZE)
		return EMBKV_EPROTO;
	r.p = body + LIST_COUNT_SIZE;
	r.end = body + len;
	count = get_u32(body);
	if (count > EMBKV_WIRE_MAX_TABLES)
		return EMBKV_ELIMIT;
	for (i = 0; i < count; i++) {
		rc = table_entry_read(&r, &e);
		if (rc)
			return rc;
	}
	if (r.p != r.end)
		return EMBKV_EPROTO;
	out->count = count;
	out->cur.p = body + LIST_COUNT_SIZE;
	out->cur.end = body + len;
	out->cur.left = count;
	out->cur.inner_left = 0;
	out->cur.group = 0;
	return 0;
}

bool embkv_wire_table_list_next(struct embkv_wire_table_list *l,
				struct embkv_wire_table_entry *out)
{
	struct rd r;

	if (!l || !out || !l->cur.left)
		return false;
	r.p = l->cur.p;
	r.end = l->cur.end;
	if (table_entry_read(&r, out))
		return false;
	l->cur.p = r.p;
	l->cur.left--;
	return true;
}


/* TABLE_REGIONS ------------------------------------------------------------------ */

#define REGION_BUCKET_SIZE 64u /* bytes of one index bucket */

static uint64_t regions_bytes(uint32_t count)
{
	return EMBKV_WIRE_REGIONS_PARTS +
	       (uint64_t)count * EMBKV_WIRE_REGION_SIZE;
}

/* The checks a decoder makes on one partition, shared with the encoder so
 * that nothing encodes that would not decode. */
static int region_part_check(const struct embkv_wire_region_part *p,
			     uint32_t stride)
{
	if (p->part >= EMBKV_MAX_PARTITIONS || !p->nbuckets)
		return EMBKV_EPROTO;
	if (p->nbuckets > (UINT64_MAX - p->index_addr) / REGION_BUCKET_SIZE)
		return EMBKV_EPROTO;
	if (p->capacity > (UINT64_MAX - p->arena_addr) / stride)
		return EMBKV_EPROTO;
	return 0;
}

static int regions_check(const struct embkv_wire_table_regions *m,
			 size_t *len)
{
	uint32_t i;
	int rc;

	if (!m)
		return -EINVAL;
	if (m->count > EMBKV_WIRE_MAX_REGION_PARTS)
		return EMBKV_ELIMIT;
	if (!m->stride || m->stride % BODY_ALIGN || (m->count && !m->parts) ||
	    !m->uid)
		return -EINVAL;
	for (i = 0; i < m->count; i++) {
		rc = region_part_check(&m->parts[i], m->stride);
		if (rc)
			return -EINVAL;
	}
	*len = (size_t)regions_bytes(m->count);
	return 0;
}

int embkv_wire_table_regions_size(const struct embkv_wire_table_regions *m,
				  size_t *len)
{
	return len ? regions_check(m, len) : -EINVAL;
}

int embkv_wire_table_regions_encode(const struct embkv_wire_table_regions *m,
				    uint8_t *body, size_t cap)
{
	size_t len;
	uint8_t *p;
	uint32_t i;
	int rc = regions_check(m, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body + EMBKV_WIRE_REGIONS_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_REGIONS_COUNT, m->count);
	put_u32(body + EMBKV_WIRE_REGIONS_STRIDE, m->stride);
	put_u32(body + EMBKV_WIRE_REGIONS_RESERVED, 0);
	put_u64(body + EMBKV_WIRE_REGIONS_UID, m->uid);
	for (i = 0; i < m->count; i++) {
		p = body + regions_bytes(i);
		put_u32(p + EMBKV_WIRE_REGION_PART, m->parts[i].part);
		put_u32(p + EMBKV_WIRE_REGION_INDEX_RKEY,
			m->parts[i].index_rkey);
		put_u32(p + EMBKV_WIRE_REGION_ARENA_RKEY,
			m->parts[i].arena_rkey);
		put_u32(p + EMBKV_WIRE_REGION_RESERVED, 0);
		put_u64(p + EMBKV_WIRE_REGION_INDEX_ADDR,
			m->parts[i].index_addr);
		put_u64(p + EMBKV_WIRE_REGION_NBUCKETS, m->parts[i].nbuckets);
		put_u64(p + EMBKV_WIRE_REGION_ARENA_ADDR,
			m->parts[i].arena_addr);
		put_u64(p + EMBKV_WIRE_REGION_CAPACITY, m->parts[i].capacity);
	}
	return 0;
}

static void region_part_read(const uint8_t *p,
			     struct embkv_wire_region_part *out)
{
	out->part = get_u32(p + EMBKV_WIRE_REGION_PART);
	out->index_rkey = get_u32(p + EMBKV_WIRE_REGION_INDEX_RKEY);
	out->arena_rkey = get_u32(p + EMBKV_WIRE_REGION_ARENA_RKEY);
	out->index_addr = get_u64(p + EMBKV_WIRE_REGION_INDEX_ADDR);
	out->nbuckets = get_u64(p + EMBKV_WIRE_REGION_NBUCKETS);
	out->arena_addr = get_u64(p + EMBKV_WIRE_REGION_ARENA_ADDR);
	out->capacity = get_u64(p + EMBKV_WIRE_REGION_CAPACITY);
}

int embkv_wire_table_regions_decode(const uint8_t *body, size_t len,
				    struct embkv_wire_table_regions *out)
{
	struct embkv_wire_region_part part;
	uint32_t count, stride, i;
	const uint8_t *p;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_REGIONS_PARTS)
		return EMBKV_EPROTO;
	count = get_u32(body + EMBKV_WIRE_REGIONS_COUNT);
	if (count > EMBKV_WIRE_MAX_REGION_PARTS)
		return EMBKV_ELIMIT;
	if (len != regions_bytes(count))
		return EMBKV_EPROTO;
	stride = get_u32(body + EMBKV_WIRE_REGIONS_STRIDE);
	if (!stride || stride % BODY_ALIGN ||
	    get_u32(body + EMBKV_WIRE_REGIONS_RESERVED) ||
	    !get_u64(body + EMBKV_WIRE_REGIONS_UID))
		return EMBKV_EPROTO;
	for (i = 0; i < count; i++) {
		p = body + regions_bytes(i);
		if (get_u32(p + EMBKV_WIRE_REGION_RESERVED))
			return EMBKV_EPROTO;
		region_part_read(p, &part);
		rc = region_part_check(&part, stride);
		if (rc)
			return rc;
	}
	out->table_id = get_u32(body + EMBKV_WIRE_REGIONS_TABLE);
	out->uid = get_u64(body + EMBKV_WIRE_REGIONS_UID);
	out->count = count;
	out->stride = stride;
	out->parts = NULL;
	memset(&out->cur, 0, sizeof(out->cur));
	out->cur.p = body + EMBKV_WIRE_REGIONS_PARTS;
	out->cur.end = body + len;
	out->cur.left = count;
	return 0;
}

bool embkv_wire_table_regions_next(struct embkv_wire_table_regions *m,
				   struct embkv_wire_region_part *out)
{
	if (!m || !out || !m->cur.left)
		return false;
	region_part_read(m->cur.p, out);
	m->cur.p += EMBKV_WIRE_REGION_SIZE;
	m->cur.left--;
	return true;
}

/* STATS ------------------------------------------------------------------------ */

static const char *const stat_names[EMBKV_WIRE_STAT_ID_COUNT] = {
	[EMBKV_WIRE_STAT_ROWS] = "rows",
	[EMBKV_WIRE_STAT_CAPACITY] = "capacity",
	[EMBKV_WIRE_STAT_MEM_BYTES] = "mem_bytes",
	[EMBKV_WIRE_STAT_PULLS] = "pulls",
	[EMBKV_WIRE_STAT_PULL_KEYS] = "pull_keys",
	[EMBKV_WIRE_STAT_PULL_MISSES] = "pull_misses",
	[EMBKV_WIRE_STAT_PUSHES] = "pushes",
	[EMBKV_WIRE_STAT_PUSH_KEYS] = "push_keys",
	[EMBKV_WIRE_STAT_GRADS_DROPPED] = "grads_dropped",
	[EMBKV_WIRE_STAT_INSERTS] = "inserts",
	[EMBKV_WIRE_STAT_EVICTIONS] = "evictions",
	[EMBKV_WIRE_STAT_ADMIT_REJECTS] = "admit_rejects",
	[EMBKV_WIRE_STAT_ASSIGN_KEYS] = "assign_keys",
	[EMBKV_WIRE_STAT_ERASE_KEYS] = "erase_keys",
	[EMBKV_WIRE_STAT_BYTES_IN] = "bytes_in",
	[EMBKV_WIRE_STAT_BYTES_OUT] = "bytes_out",
	[EMBKV_WIRE_STAT_CONNECTIONS] = "connections",
	[EMBKV_WIRE_STAT_ERRORS] = "errors",
	[EMBKV_WIRE_STAT_STALE_EPOCH] = "stale_epoch",
	[EMBKV_WIRE_STAT_AUTH_FAILURES] = "auth_failures",
	[EMBKV_WIRE_STAT_UPTIME_S] = "uptime_s",
	[EMBKV_WIRE_STAT_REQUESTS] = "requests",
	[EMBKV_WIRE_STAT_PULLS_PER_S] = "pulls_per_s",
	[EMBKV_WIRE_STAT_PUSHES_PER_S] = "pushes_per_s",
	[EMBKV_WIRE_STAT_PULL_KEYS_PER_S] = "pull_keys_per_s",
	[EMBKV_WIRE_STAT_PUSH_KEYS_PER_S] = "push_keys_per_s",
	[EMBKV_WIRE_STAT_PULL_P50_US] = "pull_p50_us",
	[EMBKV_WIRE_STAT_PULL_P99_US] = "pull_p99_us",
	[EMBKV_WIRE_STAT_PUSH_P50_US] = "push_p50_us",
	[EMBKV_WIRE_STAT_PUSH_P99_US] = "push_p99_us",
	[EMBKV_WIRE_STAT_HITS] = "hits",
	[EMBKV_WIRE_STAT_TABLES] = "tables",
	[EMBKV_WIRE_STAT_MEM_LIMIT] = "mem_limit",
	[EMBKV_WIRE_STAT_EPOCH] = "epoch",
	[EMBKV_WIRE_STAT_OWNER_THREADS] = "owner_threads",
	[EMBKV_WIRE_STAT_IO_THREADS] = "io_threads",
	[EMBKV_WIRE_STAT_PARTITIONS] = "partitions",
	[EMBKV_WIRE_STAT_RDMA_BYTES] = "rdma_bytes",
	[EMBKV_WIRE_STAT_CKPT_ID] = "ckpt_id",
	[EMBKV_WIRE_STAT_CKPT_AGE_S] = "ckpt_age_s",
	[EMBKV_WIRE_STAT_CKPT_DURATION_MS] = "ckpt_duration_ms",
	[EMBKV_WIRE_STAT_CKPT_BYTES] = "ckpt_bytes",
	[EMBKV_WIRE_STAT_MISSES] = "misses",
	[EMBKV_WIRE_STAT_REPL_LAG_UPDATES] = "repl_lag_updates",
	[EMBKV_WIRE_STAT_REPL_LAG_MS] = "repl_lag_ms",
	[EMBKV_WIRE_STAT_REPL_SNAPSHOTS] = "repl_snapshots",
	[EMBKV_WIRE_STAT_RDMA_REPLY_REGS] = "rdma_reply_regs",
	[EMBKV_WIRE_STAT_RDMA_REPLY_POOL_BYTES] = "rdma_reply_pool_bytes",
};

const char *embkv_wire_stat_name(unsigned int id)
{
	return id < EMBKV_WIRE_STAT_ID_COUNT ? stat_names[id] : NULL;
}

int embkv_wire_stats_size(const struct embkv_wire_stats_group *g,
			  uint32_t n_groups, size_t *len)
{
	uint64_t total = LIST_COUNT_SIZE;
	uint32_t i, j;

	if (!len || (n_groups && !g))
		return -EINVAL;
	if (n_groups > EMBKV_WIRE_MAX_STAT_GROUPS)
		return EMBKV_ELIMIT;
	for (i = 0; i < n_groups; i++) {
		if (g[i].n && !g[i].stats)
			return -EINVAL;
		for (j = 0; j < g[i].n; j++)
			if (!g[i].stats[j].id)
				return -EINVAL;
		total += STATS_GROUP_FIXED + (uint64_t)g[i].n * STAT_PAIR_SIZE;
	}
	if (total > EMBKV_WIRE_MAX_BODY)
		return EMBKV_ELIMIT;
	*len = (size_t)total;
	return 0;
}

int embkv_wire_stats_encode(const struct embkv_wire_stats_group *g,
			    uint32_t n_groups, uint8_t *body, size_t cap)
{
	size_t len;
	uint32_t i, j;
	uint8_t *p;
	int rc = embkv_wire_stats_size(g, n_groups, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u32(body, n_groups);
	p = body + LIST_COUNT_SIZE;
	for (i = 0; i < n_groups; i++) {
		put_u32(p, g[i].table_id);
		put_u16(p + U32_SIZE, g[i].n);
		p += STATS_GROUP_FIXED;
		for (j = 0; j < g[i].n; j++, p += STAT_PAIR_SIZE) {
			put_u16(p, g[i].stats[j].id);
			put_u64(p + U16_SIZE, g[i].stats[j].value);
		}
	}
	return 0;
}

int embkv_wire_stats_decode(const uint8_t *body, size_t len,
			    struct embkv_wire_stats *out)
{
	uint64_t n_stats = 0;
	uint32_t n_groups, i, j, count;
	struct rd r;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < LIST_COUNT_SIZE)
		return EMBKV_EPROTO;
	r.p = body + LIST_COUNT_SIZE;
	r.end = body + len;
	n_groups = get_u32(body);
	if (n_groups > EMBKV_WIRE_MAX_STAT_GROUPS)
		return EMBKV_ELIMIT;
	for (i = 0; i < n_groups; i++) {
		if (!rd_has(&r, STATS_GROUP_FIXED))
			return EMBKV_EPROTO;
		count = get_u16(r.p + U32_SIZE);
		r.p += STATS_GROUP_FIXED;
		if (!rd_has(&r, (size_t)count * STAT_PAIR_SIZE))
			return EMBKV_EPROTO;
		for (j = 0; j < count; j++, r.p += STAT_PAIR_SIZE)
			if (!get_u16(r.p))
				return EMBKV_EPROTO;
		n_stats += count;
	}
	if (r.p != r.end)
		return EMBKV_EPROTO;
	out->n_groups = n_groups;
	out->n_stats = n_stats;
	out->cur.p = body + LIST_COUNT_SIZE;
	out->cur.end = body + len;
	out->cur.left = n_groups;
	out->cur.inner_left = 0;
	out->cur.group = 0;
	return 0;
}

bool embkv_wire_stats_next(struct embkv_wire_stats *s, uint32_t *table_id,
			   struct embkv_wire_stat *out)
{
	struct embkv_wire_cursor *c;

	if (!s || !table_id || !out)
		return false;
	c = &s->cur;
	while (!c->inner_left && c->left) {
		if ((size_t)(c->end - c->p) < STATS_GROUP_FIXED)
			return false;
		c->group = get_u32(c->p);
		c->inner_left = get_u16(c->p + U32_SIZE);
		c->p += STATS_GROUP_FIXED;
		c->left--;
	}
	if (!c->inner_left || (size_t)(c->end - c->p) < STAT_PAIR_SIZE)
		return false;
	*table_id = c->group;
	out->id = get_u16(c->p);
	out->value = get_u64(c->p + U16_SIZE);
	c->p += STAT_PAIR_SIZE;
	c->inner_left--;
	return true;
}

/* SHARD_MAP ---------------------------------------------------------------------- */

static int addr_len(const char *addr, size_t *len)
{
	if (!addr)
		return -EINVAL;
	*len = strnlen(addr, EMBKV_WIRE_ADDR_MAX + 1);
	if (*len > EMBKV_WIRE_ADDR_MAX)
		return EMBKV_ELIMIT;
	return *len ? 0 : -EINVAL;
}

/* A table's map has a power of two partitions; the membership none. */
static bool parts_ok(uint32_t table_id, uint32_t parts)
{
	return table_id == EMBKV_WIRE_TABLE_ALL ? parts == 0 : is_pow2(parts);
}

int embkv_wire_shard_map_size(const struct embkv_wire_shard_map *m,
			      size_t *len)
{
	uint64_t total;
	size_t al;
	uint32_t i;
	int rc;

	if (!m || !len || !m->servers || (m->n_partitions && !m->part_server))
		return -EINVAL;
	if (m->n_partitions > EMBKV_MAX_PARTITIONS ||
	    m->n_servers > EMBKV_WIRE_MAX_SERVERS)
		return EMBKV_ELIMIT;
	if (!parts_ok(m->table_id, m->n_partitions) || !m->n_servers ||
	    m->self >= m->n_servers)
		return -EINVAL;
	for (i = 0; i < m->n_partitions; i++)
		if (m->part_server[i] >= m->n_servers)
			return -EINVAL;
	total = EMBKV_WIRE_SHARD_MAP_PART_SERVER +
		(uint64_t)m->n_partitions * U16_SIZE;
	for (i = 0; i < m->n_servers; i++) {
		rc = addr_len(m->servers[i], &al);
		if (rc)
			return rc;
		total += STR_LEN_SIZE + al;
	}
	*len = (size_t)total; /* bounded far below EMBKV_WIRE_MAX_BODY */
	return 0;
}

int embkv_wire_shard_map_encode(const struct embkv_wire_shard_map *m,
				uint8_t *body, size_t cap)
{
	size_t len;
	uint32_t i;
	uint8_t *p;
	int rc = embkv_wire_shard_map_size(m, &len);

	if (!rc)
		rc = enc_room(body, cap, len);
	if (rc)
		return rc;
	put_u64(body + EMBKV_WIRE_SHARD_MAP_EPOCH, m->epoch);
	put_u32(body + EMBKV_WIRE_SHARD_MAP_TABLE, m->table_id);
	put_u32(body + EMBKV_WIRE_SHARD_MAP_PARTS, m->n_partitions);
	put_u32(body + EMBKV_WIRE_SHARD_MAP_SERVERS, m->n_servers);
	put_u32(body + EMBKV_WIRE_SHARD_MAP_SELF, m->self);
	p = body + EMBKV_WIRE_SHARD_MAP_PART_SERVER;
	for (i = 0; i < m->n_partitions; i++, p += U16_SIZE)
		put_u16(p, m->part_server[i]);
	for (i = 0; i < m->n_servers; i++)
		p = put_str(p, m->servers[i],
			    strnlen(m->servers[i], EMBKV_WIRE_ADDR_MAX));
	return 0;
}

int embkv_wire_shard_map_decode(const uint8_t *body, size_t len,
				struct embkv_wire_shard_map *out)
{
	struct embkv_wire_str addr;
	const uint8_t *map;
	uint32_t parts, servers, self, table_id, i;
	struct rd r;
	int rc = dec_args(body, len, out);

	if (rc)
		return rc;
	if (len < EMBKV_WIRE_SHARD_MAP_PART_SERVER)
		return EMBKV_EPROTO;
	table_id = get_u32(body + EMBKV_WIRE_SHARD_MAP_TABLE);
	parts = get_u32(body + EMBKV_WIRE_SHARD_MAP_PARTS);
	servers = get_u32(body + EMBKV_WIRE_SHARD_MAP_SERVERS);
	self = get_u32(body + EMBKV_WIRE_SHARD_MAP_SELF);
	if (parts > EMBKV_MAX_PARTITIONS || servers > EMBKV_WIRE_MAX_SERVERS)
		return EMBKV_ELIMIT;
	if (!parts_ok(table_id, parts) || !servers || self >= servers)
		return EMBKV_EPROTO;
	map = body + EMBKV_WIRE_SHARD_MAP_PART_SERVER;
	r.p = map;
	r.end = body + len;
	if (!rd_has(&r, (size_t)parts * U16_SIZE))
		return EMBKV_EPROTO;
	for (i = 0; i < parts; i++, r.p += U16_SIZE)
		if (get_u16(r.p) >= servers)
			return EMBKV_EPROTO;
	out->cur.p = r.p;
	for (i = 0; i < servers; i++) {
		rc = rd_str(&r, 1, EMBKV_WIRE_ADDR_MAX, &addr);
		if (rc)
			return rc;
	}
	if (r.p != r.end)
		return EMBKV_EPROTO;
	out->epoch = get_u64(body + EMBKV_WIRE_SHARD_MAP_EPOCH);
	out->table_id = table_id;
	out->n_partitions = parts;
	out->n_servers = servers;
	out->self = self;
	out->part_server = parts ? (const uint16_t *)(const void *)map : NULL;
	out->servers = NULL;
	out->cur.end = r.end;
	out->cur.left = servers;
	out->cur.inner_left = 0;
	out->cur.group = 0;
	return 0;
}

bool embkv_wire_shard_map_next_server(struct embkv_wire_shard_map *m,
				      struct embkv_wire_str *addr)
{
	struct rd r;

	if (!m || !addr || !m->cur.left)
		return false;
	r.p = m->cur.p;
	r.end = m->cur.end;
	if (rd_str(&r, 1, EMBKV_WIRE_ADDR_MAX, addr))
		return false;
	m->cur.p = r.p;
	m->cur.left--;
	return true;
}
