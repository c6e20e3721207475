/*
 * embkvd, table administration against the real binary: create, open,
 * list and drop; ids never reused; a dropped and re-created table refuses
 * every request that names the old one (id and uid); the default table;
 * the memory limit;
 * SHARD_MAP alone and with --peers (and keys of another server refused);
 * STATS per server and per table.
 *
 * Runs over TCP, or over rdma:// with the argument rdma://HOST (harness.h).
 * TCP-only: the default table and memory limit (transport-independent, and
 * its 300 MB default table is too slow to allocate and register for RDMA
 * under the VM's emulation).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "server/store.h"
#include "tests/server/harness.h"

struct fixture {
	struct th_server srv;
	int fd;
};

static int start_with(void **state, const char *const *args)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx || th_start(&fx->srv, args))
		return -1;
	fx->fd = th_connect(&fx->srv);
	*state = fx;
	return fx->fd < 0 ? -1 : 0;
}

static int setup(void **state)
{
	static const char *const args[] = { "--threads", "2", NULL };

	return start_with(state, args);
}

static int setup_default(void **state)
{
	static const char *const args[] = { "--default-table", "emb",
					     "--memory-limit", "1G", NULL };

	return start_with(state, args);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	if (!fx)
		return 0;
	if (fx->fd >= 0)
		th_close(fx->fd);
	assert_int_equal(th_stop(&fx->srv), 0);
	free(fx);
	return 0;
}

/* The TABLE_LIST reply as (id, dim, name) entries; returns the count. */
static uint32_t list(int fd, struct embkv_wire_table_entry *out, uint32_t max)
{
	struct embkv_wire_table_list l;
	struct th_frame f;
	uint32_t n = 0;

	assert_int_equal(th_call(fd, EMBKV_WIRE_OP_TABLE_LIST, 0, NULL, 0, &f),
			 0);
	assert_int_equal(embkv_wire_table_list_decode(f.body, f.h.body_len,
						      &l), 0);
	while (n < max && embkv_wire_table_list_next(&l, &out[n]))
		n++;
	assert_int_equal(n, l.count);
	th_frame_free(&f);
	return n;
}

static void test_create_open_list_drop(void **state)
{
	struct fixture *fx = *state;
	struct embkv_table_attr a, b;
	struct embkv_wire_table_entry e[8];
	struct embkv_wire_table_info info;
	struct embkv_wire_table_ref ida, idb, ida2;

	assert_int_equal(list(fx->fd, e, 8), 0);
	th_attr(&a, "alpha", 8, 16);
	th_attr(&b, "beta", 16, 4);
	b.opt.type = EMBKV_OPT_ADAM;
	assert_int_equal(th_create(fx->fd, &a, &ida), 0);
	assert_int_equal(th_create(fx->fd, &b, &idb), 0);
	assert_int_not_equal(ida.table_id, idb.table_id);
	assert_true(ida.uid != 0 && idb.uid != 0 && ida.uid != idb.uid);
	assert_int_equal(th_create(fx->fd, &a, &ida2), EMBKV_ETABLEEXISTS);

	assert_int_equal(list(fx->fd, e, 8), 2);
	assert_int_equal(e[0].table_id, ida.table_id);
	assert_true(e[0].uid == ida.uid);
	assert_string_equal(e[0].name, "alpha");
	assert_int_equal(e[0].dim, 8);
	assert_string_equal(e[1].name, "beta");
	assert_int_equal(e[1].dim, 16);
	assert_true(e[1].uid == idb.uid);

	assert_int_equal(th_open(fx->fd, "beta", &info), 0);
	assert_int_equal(info.table_id, idb.table_id);
	assert_true(info.uid == idb.uid);
	assert_int_equal(info.attr.dim, 16);
	assert_int_equal(info.attr.partitions, 4);
	assert_int_equal(info.attr.opt.type, EMBKV_OPT_ADAM);
	assert_int_equal(info.attr.init.seed, 1234);
	assert_int_equal(th_open(fx->fd, "gamma", &info), EMBKV_ENOTABLE);

	assert_int_equal(th_drop(fx->fd, "alpha"), 0);
	assert_int_equal(th_drop(fx->fd, "alpha"), EMBKV_ENOTABLE);
	assert_int_equal(th_open(fx->fd, "alpha", &info), EMBKV_ENOTABLE);
	assert_int_equal(list(fx->fd, e, 8), 1);
	/* Re-created: a new id and uid, never the dropped one's. */
	assert_int_equal(th_create(fx->fd, &a, &ida2), 0);
	assert_true(ida2.table_id != ida.table_id &&
		    ida2.table_id != idb.table_id);
	assert_true(ida2.uid != ida.uid && ida2.uid != idb.uid);
}

/*
 * Table identity: a table dropped and created again with the same name and
 * dim is another table. Every request still naming the first one (by its
 * id and uid) is refused with EMBKV_ENOTABLE, and the second table's rows
 * are what its own client stored: nothing of the stale requests reached
 * it (a train-mode pull would have inserted, a push changed rows).
 */
static void test_recreated_table_refuses_old_uid(void **state)
{
	enum { RN = 32, RDIM = 8 };
	struct fixture *fx = *state;
	struct embkv_wire_table_ref old, cur, forged;
	struct embkv_wire_table_info info;
	struct embkv_table_attr a;
	uint64_t keys[RN], more[RN], rows = 0;
	float vals[RN * RDIM], out[RN * RDIM];
	uint8_t found[RN];

	for (uint32_t i = 0; i < RN; i++) {
		keys[i] = 500 + i;
		more[i] = 9000 + i;
	}
	for (uint32_t i = 0; i < RN * RDIM; i++)
		vals[i] = (float)i * 0.5f - 3.0f;
	th_attr(&a, "reborn", RDIM, 8);
	assert_int_equal(th_create(fx->fd, &a, &old), 0);
	assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_ASSIGN, old, RDIM, RN,
				 keys, vals, NULL), 0);
	assert_int_equal(th_drop(fx->fd, "reborn"), 0);
	a.init.seed = 99; /* same name and dim, another table */
	assert_int_equal(th_create(fx->fd, &a, &cur), 0);
	assert_true(cur.uid != old.uid);
	assert_int_equal(th_open(fx->fd, "reborn", &info), 0);
	assert_int_equal(info.table_id, cur.table_id);
	assert_true(info.uid == cur.uid);
	for (uint32_t i = 0; i < RN * RDIM; i++)
		vals[i] = (float)i;
	assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_ASSIGN, cur, RDIM, RN,
				 keys, vals, NULL), 0);

	/* The old handle's id and uid, and the new id with the old uid. */
	assert_int_equal(th_all_refused(fx->fd, old, RDIM, RN, more), 0);
	assert_int_equal(th_all_refused(fx->fd, old, RDIM, RN, keys), 0);
	forged = cur;
	forged.uid = old.uid;
	assert_int_equal(th_all_refused(fx->fd, forged, RDIM, RN, more), 0);
	assert_int_equal(th_all_refused(fx->fd, forged, RDIM, RN, keys), 0);

	assert_int_equal(th_pull(fx->fd, 1, cur, RDIM, RN, keys,
				 EMBKV_WIRE_PULL_INFER, out, found), 0);
	assert_memory_equal(out, vals, sizeof(out));
	for (uint32_t i = 0; i < RN; i++)
		assert_int_equal(found[i], 1);
	assert_int_equal(th_stat(fx->fd, cur.table_id, EMBKV_WIRE_STAT_ROWS,
				 &rows), 0);
	assert_int_equal(rows, RN);
	/* the connection kept working through the refusals */
	assert_int_equal(th_pull(fx->fd, 1, cur, RDIM, RN, more,
				 EMBKV_WIRE_PULL_TRAIN, out, NULL), 0);
	assert_int_equal(th_stat(fx->fd, cur.table_id, EMBKV_WIRE_STAT_ROWS,
				 &rows), 0);
	assert_int_equal(rows, 2 * RN);
}

static void test_create_rejects_bad_attr(void **state)
{
	struct fixture *fx = *state;
	struct embkv_table_attr a;
	struct embkv_wire_table_ref id;

	th_attr(&a, "bad", 8, 3); /* not a power of two */
	assert_int_equal(th_create(fx->fd, &a, &id), -EINVAL);
	th_attr(&a, "bad name!", 8, 4);
	assert_int_equal(th_create(fx->fd, &a, &id), -EINVAL);
	th_attr(&a, "bad", 8, 4);
	a.opt.lr = -1;
	assert_int_equal(th_create(fx->fd, &a, &id), -EINVAL);
	th_attr(&a, "good", 8, 4);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
}

static void test_drop_while_in_use(void **state)
{
	struct fixture *fx = *state;
	struct embkv_table_attr a;
	uint64_t keys[256];
	float out[256 * 4];
	struct embkv_wire_table_ref id;
	int fd2 = th_connect(&fx->srv);

	assert_true(fd2 >= 0);
	th_attr(&a, "churn", 4, 8);
	for (int round = 0; round < 20; round++) {
		int rc;

		assert_int_equal(th_create(fx->fd, &a, &id), 0);
		for (uint32_t i = 0; i < 256; i++)
			keys[i] = (uint64_t)round * 1000 + i;
		/* A pull on another connection races with the drop. */
		rc = th_pull(fd2, 1, id, 4, 256, keys, EMBKV_WIRE_PULL_TRAIN,
			     out, NULL);
		assert_int_equal(rc, 0);
		assert_int_equal(th_drop(fx->fd, "churn"), 0);
		rc = th_pull(fd2, 1, id, 4, 256, keys, EMBKV_WIRE_PULL_TRAIN,
			     out, NULL);
		assert_int_equal(rc, EMBKV_ENOTABLE);
	}
	th_close(fd2);
}

static void test_default_table_and_memory_limit(void **state)
{
	struct fixture *fx = *state;
	struct embkv_wire_table_info info;
	struct embkv_table_attr a;
	uint64_t mem = 0, limit = 0;
	struct embkv_wire_table_ref id;

	assert_int_equal(th_open(fx->fd, "emb", &info), 0);
	assert_int_equal(info.attr.dim, 64);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_MEM_LIMIT, &limit), 0);
	assert_int_equal(limit, 1ull << 30);
	/* The default table (1M rows of dim 64) takes about 300 MB. */
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_MEM_BYTES, &mem), 0);
	assert_true(mem > 0 && mem <= limit);
	th_attr(&a, "big", 64, 64);
	a.capacity = 10u << 20;
	assert_int_equal(th_create(fx->fd, &a, &id), -ENOMEM);
	th_attr(&a, "small", 8, 4);
	a.capacity = 1024;
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	/* A drop gives the memory back. */
	assert_int_equal(th_drop(fx->fd, "emb"), 0);
	th_attr(&a, "big", 64, 64);
	a.capacity = 512u << 10;
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
}

/* Without --memory-limit the server allows 3/4 of physical memory, and a
 * table larger than that is refused before any of it is mapped or (over
 * rdma) pinned: the server answers at once and keeps serving. */
static void test_default_memory_limit(void **state)
{
	struct fixture *fx = *state;
	struct embkv_table_attr a;
	uint64_t limit = 0, mem = 0;
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	struct embkv_wire_table_ref id;

	assert_true(pages > 0 && page > 0);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_MEM_LIMIT, &limit), 0);
	assert_int_equal(limit, (uint64_t)pages / 4 * 3 * (uint64_t)page);
	/* 2^44 rows of dim 64: about 5 PB. */
	th_attr(&a, "huge", 64, 65536);
	a.capacity = 1ull << 44;
	assert_int_equal(th_create(fx->fd, &a, &id), -ENOMEM);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_MEM_BYTES, &mem), 0);
	assert_int_equal(mem, 0);
	th_attr(&a, "fits", 8, 4);
	a.capacity = 4096;
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
}

static void shard_map(int fd, struct embkv_wire_table_ref table,
		      struct th_frame *f, struct embkv_wire_shard_map *m)
{
	uint8_t body[EMBKV_WIRE_TABLE_REF_SIZE];

	embkv_wire_table_ref_encode(&table, body, sizeof(body));
	assert_int_equal(th_call(fd, EMBKV_WIRE_OP_SHARD_MAP, 0, body,
				 sizeof(body), f), 0);
	assert_int_equal(embkv_wire_shard_map_decode(f->body, f->h.body_len,
						     m), 0);
}

static void test_shard_map_alone(void **state)
{
	struct fixture *fx = *state;
	struct embkv_wire_shard_map m;
	struct embkv_wire_str addr;
	struct embkv_table_attr a;
	struct th_frame f;
	char want[TH_HOST_MAX + 32];
	uint8_t body[EMBKV_WIRE_TABLE_REF_SIZE];
	struct embkv_wire_table_ref id;

	th_attr(&a, "mapped", 8, 32);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	shard_map(fx->fd, id, &f, &m);
	assert_int_equal(m.epoch, 1);
	assert_int_equal(m.table_id, id.table_id);
	assert_int_equal(m.n_partitions, 32);
	assert_int_equal(m.n_servers, 1);
	for (uint32_t p = 0; p < 32; p++)
		assert_int_equal(m.part_server[p], 0);
	assert_true(embkv_wire_shard_map_next_server(&m, &addr));
	/* the TCP listener's address, which it also has under rdma */
	snprintf(want, sizeof(want), "tcp://%s:%u", fx->srv.host, fx->srv.port);
	assert_int_equal(addr.len, strlen(want));
	assert_memory_equal(addr.ptr, want, addr.len);
	th_frame_free(&f);

	id.table_id += 100;
	embkv_wire_table_ref_encode(&id, body, sizeof(body));
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_SHARD_MAP, 0, body,
				 sizeof(body), &f), EMBKV_ENOTABLE);
	id.table_id -= 100;
	id.uid ^= 1; /* the id of a table, the uid of none */
	embkv_wire_table_ref_encode(&id, body, sizeof(body));
	assert_int_equal(th_call(fx->fd, EMBKV_WIRE_OP_SHARD_MAP, 0, body,
				 sizeof(body), &f), EMBKV_ENOTABLE);
}

static int setup_peers(void **state)
{
	static const char *const args[] = {
		"--peers", "tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://h3:3",
		"--self", "1", "--threads", "2", NULL };

	return start_with(state, args);
}

static void test_shard_map_peers(void **state)
{
	struct fixture *fx = *state;
	struct embkv_wire_shard_map m;
	struct embkv_wire_str addr;
	struct embkv_table_attr a;
	struct embkv_table *ref;
	struct th_frame f;
	uint64_t mine[64], other[1] = { 0 };
	float out[64 * 8];
	struct embkv_wire_table_ref id;
	uint32_t nmine = 0, nother = 0;

	th_attr(&a, "spread", 8, 64);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	shard_map(fx->fd, id, &f, &m);
	assert_int_equal(m.n_servers, 3);
	for (uint32_t p = 0; p < 64; p++)
		assert_int_equal(m.part_server[p], p % 3);
	assert_true(embkv_wire_shard_map_next_server(&m, &addr));
	assert_true(embkv_wire_shard_map_next_server(&m, &addr));
	assert_int_equal(addr.len, strlen("tcp://127.0.0.1:2"));
	assert_memory_equal(addr.ptr, "tcp://127.0.0.1:2", addr.len);
	th_frame_free(&f);

	/* Route keys with an in-process table of the same attributes. */
	assert_int_equal(embkv_table_create(&a, &ref), 0);
	for (uint64_t k = 1; nmine < 64 || !nother; k++) {
		uint32_t p = embkv_table_partition_of(ref, k);

		if (p % 3 == 1 && nmine < 64)
			mine[nmine++] = k;
		else if (p % 3 != 1 && !nother)
			other[nother++] = k;
	}
	embkv_table_destroy(ref);
	assert_int_equal(th_pull(fx->fd, 1, id, 8, 64, mine,
				 EMBKV_WIRE_PULL_TRAIN, out, NULL), 0);
	mine[10] = other[0];
	assert_int_equal(th_pull(fx->fd, 1, id, 8, 64, mine,
				 EMBKV_WIRE_PULL_TRAIN, out, NULL),
			 EMBKV_ESTALE);
	/* Nothing of the refused batch was applied. */
	{
		uint64_t rows = 0;

		assert_int_equal(th_stat(fx->fd, id.table_id,
					 EMBKV_WIRE_STAT_ROWS, &rows), 0);
		assert_int_equal(rows, 64);
	}
}

/* STATS for one table: that table's group only; an unknown id or another
 * uid: ENOTABLE. */
static void stats_of_one_table(int fd, struct embkv_wire_table_ref id)
{
	uint8_t body[EMBKV_WIRE_TABLE_REF_SIZE];
	struct embkv_wire_stats st;
	struct embkv_wire_stat s;
	struct th_frame f;
	uint32_t tid;
	bool rows = false;

	embkv_wire_table_ref_encode(&id, body, sizeof(body));
	assert_int_equal(th_call(fd, EMBKV_WIRE_OP_STATS, 0, body,
				 sizeof(body), &f), 0);
	assert_int_equal(embkv_wire_stats_decode(f.body, f.h.body_len, &st),
			 0);
	assert_int_equal(st.n_groups, 1);
	while (embkv_wire_stats_next(&st, &tid, &s)) {
		assert_int_equal(tid, id.table_id);
		if (s.id == EMBKV_WIRE_STAT_ROWS) {
			assert_int_equal(s.value, 100);
			rows = true;
		}
	}
	assert_true(rows);
	th_frame_free(&f);
	id.table_id++;
	embkv_wire_table_ref_encode(&id, body, sizeof(body));
	assert_int_equal(th_call(fd, EMBKV_WIRE_OP_STATS, 0, body,
				 sizeof(body), &f), EMBKV_ENOTABLE);
	id.table_id--;
	id.uid ^= 1;
	embkv_wire_table_ref_encode(&id, body, sizeof(body));
	assert_int_equal(th_call(fd, EMBKV_WIRE_OP_STATS, 0, body,
				 sizeof(body), &f), EMBKV_ENOTABLE);
}

static void test_stats(void **state)
{
	struct fixture *fx = *state;
	struct embkv_table_attr a;
	uint64_t keys[100], v = 0, p50 = 0, p99 = 0;
	float out[100 * 8], grads[100 * 8];
	struct embkv_wire_table_ref id;
	uint32_t tid;

	th_attr(&a, "counted", 8, 16);
	assert_int_equal(th_create(fx->fd, &a, &id), 0);
	tid = id.table_id;
	for (uint32_t i = 0; i < 100; i++)
		keys[i] = i + 1;
	memset(grads, 0, sizeof(grads));
	for (int r = 0; r < 3; r++)
		assert_int_equal(th_pull(fx->fd, 1, id, 8, 100, keys,
					 EMBKV_WIRE_PULL_TRAIN, out, NULL), 0);
	assert_int_equal(th_rows(fx->fd, EMBKV_WIRE_OP_PUSH, id, 8, 100, keys,
				 grads, NULL), 0);

	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_CONNECTIONS, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_PULLS, &v), 0);
	assert_int_equal(v, 3);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_PUSH_KEYS, &v), 0);
	assert_int_equal(v, 100);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_REQUESTS, &v), 0);
	assert_true(v >= 6);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_BYTES_IN, &v), 0);
	assert_true(v > 100 * 8 * 4);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_PULL_P50_US, &p50), 0);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_PULL_P99_US, &p99), 0);
	assert_true(p50 <= p99);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_PULL_KEYS_PER_S, &v), 0);
	assert_int_equal(th_stat(fx->fd, EMBKV_WIRE_TABLE_ALL,
				 EMBKV_WIRE_STAT_UPTIME_S, &v), 0);

	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_ROWS, &v), 0);
	assert_int_equal(v, 100);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_CAPACITY, &v), 0);
	assert_true(v >= a.capacity);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_INSERTS, &v), 0);
	assert_int_equal(v, 100);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_HITS, &v), 0);
	assert_int_equal(v, 200);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_PULL_MISSES, &v),
			 0);
	assert_int_equal(v, 100);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_PULL_KEYS, &v),
			 0);
	assert_int_equal(v, 300);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_PUSHES, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_MEM_BYTES, &v),
			 0);
	assert_true(v > 0);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_GRADS_DROPPED,
				 &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_EVICTIONS, &v),
			 0);
	assert_int_equal(th_stat(fx->fd, tid, EMBKV_WIRE_STAT_ADMIT_REJECTS,
				 &v), 0);
	stats_of_one_table(fx->fd, id);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_open_list_drop,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_recreated_table_refuses_old_uid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_rejects_bad_attr,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_drop_while_in_use, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_shard_map_alone, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_shard_map_peers,
						setup_peers, teardown),
		cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_memory_limit,
						setup, teardown),
	};
	const struct CMUnitTest tcp_only[] = {
		cmocka_unit_test_setup_teardown(
			test_default_table_and_memory_limit, setup_default,
			teardown),
	};
	int failed;

	if (th_transport_init(argc, argv))
		return 2;
	failed = cmocka_run_group_tests_name("tables", tests, NULL, NULL);
	if (!th_rdma())
		failed += cmocka_run_group_tests_name("tables, tcp only",
						      tcp_only, NULL, NULL);
	return failed;
}
