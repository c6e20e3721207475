/*
 * embkv_rdma_move: one-sided readers during live partition moves (issue
 * 13), in the soft-RoCE VM: etcd on loopback, 3 embkvd members on
 * rdma://$EMBKV_VM_IP, libembkv.
 *
 * What is asserted: a writer assigns every key's row over and over, each
 * time with a higher generation (row = [key, gen, gen, ...]) and, once
 * the assign is acknowledged, publishes gen as committed; READERS threads
 * (each its own client) pull random keys in infer mode, which goes by
 * one-sided READs, while the main thread moves partitions back and forth
 * among the members (embkv_partition_move: snapshot, deltas, freeze, flip
 * in etcd). For every row a reader gets:
 *   - found, and row[0] is its key and every other element one generation
 *     (no torn or foreign row);
 *   - gen >= the generation committed before the pull began (a row from
 *     the old owner's memory after the flip is older than that: the new
 *     owner took the newer assigns);
 *   - gen >= the highest generation this reader saw for that key before
 *     (never older once newer was seen).
 * And the readers did read one-sided during the moves and after the last
 * one (embkv_client_counters: keys_onesided grows in both windows), so
 * the check is of the one-sided path, not of the RPC fallback.
 *
 * Why: server/move.c's fence (MOVE_FREEZE deregisters the partition's
 * memory before the map flips) is the only thing that keeps a one-sided
 * reader with a stale map or cached locations off the old owner's copy;
 * the client's RPC path is fenced by EMBKV_ESTALE instead.
 *
 * embkv_rdma_move_gpu (built with MOVE_GPU, in tests/gpu/ with the host
 * stand-in plugin as the GPU and EMBKV_GPU_PATH=peermem): the same, with
 * reader 0 pulling through the GPUDirect path (embkv_pull_device: READs
 * into the device slab, PULL_LAND for what they leave, whose frames get
 * EMBKV_ESTALE during a move) under the same assertions, and a device
 * pusher on a second table "ma" whose partitions move along: it pushes
 * -1 to every key, lr 1, from zero rows (embkv_push_device: rows sent
 * from the slab, a round re-gathered after EMBKV_ESTALE), so that every
 * element must end equal to the number of pushes that succeeded: none
 * applied twice, none lost.
 *
 * usage: embkv_rdma_move [SECONDS_AFTER] (servers on rdma://$EMBKV_VM_IP,
 * default 10.0.2.15). Prints PASS/FAIL lines; exit 0 when all pass.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <embkv/embkv.h>
#if MOVE_GPU
#include <embkv/embkv_gpu.h>
#endif
#include "tests/client/spawn.h"
#include "tests/cluster/etcd_harness.h"

#define NMEM 3u
#define DIM 8u
#define PARTS 8u
#define NKEYS 512u
#define READERS 3u
#define PULL_KEYS 64u
#define MOVES 12u
#define READY_MS 30000u
#define STOP_MS 10000u
#define CLUSTER "mvr"

static struct embkv_test_etcd etcd;
static struct embkv_test_proc mem[NMEM];
static const char *addrs[NMEM];
static char dir[128];
static volatile int stop;
static uint64_t committed;     /* atomic: generation acknowledged by all */
static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", \
	__FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); \
	fflush(stdout); failures++; goto out; } } while (0)

static struct embkv_client *client(void)
{
	struct embkv_client_attr ca;
	struct embkv_client *c = NULL;
	int rc;

	embkv_client_attr_init(&ca);
	ca.servers = addrs;
	ca.nservers = NMEM;
	ca.request_timeout_ms = 20000;
	rc = embkv_client_create(&ca, &c);
	if (rc)
		printf("client: %s\n", embkv_strerror(rc));
	return c;
}

static uint64_t key_of(uint32_t i)
{
	return i + 1;                 /* exact as a float */
}

/* ---- the writer ---------------------------------------------------------- */

struct writer {
	struct embkv_table_handle *t;
	uint64_t gens;
	int rc;
};

static void *write_loop(void *arg)
{
	struct writer *w = arg;
	static uint64_t keys[NKEYS];
	static float rows[NKEYS * DIM];

	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = key_of(i);
	while (!stop) {
		uint64_t g = __atomic_load_n(&committed, __ATOMIC_RELAXED) + 1;

		for (uint32_t i = 0; i < NKEYS; i++) {
			rows[i * DIM] = (float)keys[i];
			for (uint32_t d = 1; d < DIM; d++)
				rows[i * DIM + d] = (float)g;
		}
		w->rc = embkv_assign(w->t, NKEYS, keys, rows);
		if (w->rc) {
			printf("writer: assign of generation %llu: %s\n",
			       (unsigned long long)g, embkv_strerror(w->rc));
			fflush(stdout);
			return NULL;
		}
		__atomic_store_n(&committed, g, __ATOMIC_RELEASE);
		w->gens++;
		usleep(2000);
	}
	return NULL;
}

/* ---- the readers --------------------------------------------------------- */

struct reader {
	struct embkv_client *c;
	struct embkv_table_handle *t;
	uint32_t id;
	uint64_t pulls, rows, stale, bad, missing;
	uint32_t seen[NKEYS];         /* highest generation seen per key */
	int rc;
	char first[200];              /* the first failure */
};

static void note(struct reader *r, const char *fmt, uint64_t k, uint64_t a,
		 uint64_t b)
{
	if (!r->first[0])
		snprintf(r->first, sizeof(r->first), fmt,
			 (unsigned long long)k, (unsigned long long)a,
			 (unsigned long long)b);
}

static void *read_loop(void *arg)
{
	struct reader *r = arg;
	uint64_t keys[PULL_KEYS];
	uint32_t idx[PULL_KEYS];
	float out[PULL_KEYS * DIM];
	uint8_t found[PULL_KEYS];
	unsigned seed = 0x9e37u * (r->id + 1);

	while (!stop) {
		uint64_t before = __atomic_load_n(&committed,
						  __ATOMIC_ACQUIRE);

		for (uint32_t j = 0; j < PULL_KEYS; j++) {
			idx[j] = (uint32_t)rand_r(&seed) % NKEYS;
			keys[j] = key_of(idx[j]);
		}
#if MOVE_GPU
		/* reader 0: the GPUDirect path (stand-in: "device" memory is
		 * host memory) */
		if (r->id == 0)
			r->rc = embkv_pull_device(r->t, PULL_KEYS, keys, out,
						  found, EMBKV_MODE_INFER, NULL,
						  NULL);
		else
#endif
		r->rc = embkv_pull(r->t, PULL_KEYS, keys, out, found,
				   EMBKV_MODE_INFER, NULL);
		if (r->rc == EMBKV_EUNAVAIL || r->rc == EMBKV_ESTALE) {
			usleep(1000);   /* a map being applied: again */
			continue;
		}
		if (r->rc) {
			printf("reader %u: pull: %s\n", r->id,
			       embkv_strerror(r->rc));
			fflush(stdout);
			return NULL;
		}
		r->pulls++;
		for (uint32_t j = 0; j < PULL_KEYS; j++) {
			const float *v = &out[j * DIM];
			uint64_t g = (uint64_t)v[1];
			bool one = true;

			r->rows++;
			if (!found[j]) {
				r->missing++;
				note(r, "key %llu not found (%llu %llu)",
				     keys[j], 0, 0);
				continue;
			}
			for (uint32_t d = 2; d < DIM; d++)
				one &= v[d] == v[1];
			if (v[0] != (float)keys[j] || !one ||
			    v[1] != (float)g) {
				r->bad++;
				note(r, "key %llu: row [%llu, %llu, ...] is "
				     "not its own", keys[j], (uint64_t)v[0],
				     g);
				continue;
			}
			if (g < before || g < r->seen[idx[j]]) {
				r->stale++;
				note(r, "key %llu: generation %llu, but %llu "
				     "was committed or seen before", keys[j],
				     g, before > r->seen[idx[j]] ? before :
				     r->seen[idx[j]]);
				continue;
			}
			r->seen[idx[j]] = (uint32_t)g;
		}
	}
	return NULL;
}

/* ---- the device pusher (MOVE_GPU) ------------------------------------------ */

struct pusher {
	struct embkv_client *c;
	struct embkv_table_handle *t;
	uint64_t pushes, errors;
	int first_rc;
	uint32_t short_applied;
};

#if MOVE_GPU
static void *push_loop(void *arg)
{
	struct pusher *p = arg;
	static uint64_t keys[NKEYS];
	static float grads[NKEYS * DIM];

	for (uint32_t i = 0; i < NKEYS; i++)
		keys[i] = key_of(i);
	for (uint32_t i = 0; i < NKEYS * DIM; i++)
		grads[i] = -1.0f;
	while (!stop) {
		uint32_t applied = 0;
		int rc = embkv_push_device(p->t, NKEYS, keys, grads, &applied,
					   NULL);

		if (rc) {
			/* applied in part, perhaps: the count is lost */
			if (!p->errors++)
				p->first_rc = rc;
		} else {
			p->pushes++;
			if (applied != NKEYS)
				p->short_applied++;
		}
		usleep(3000);
	}
	return NULL;
}
#endif

static uint64_t onesided_keys(struct reader *rd)
{
	struct embkv_client_counters k;
	uint64_t n = 0;

	for (uint32_t i = 0; i < READERS; i++)
		if (!embkv_client_counters(rd[i].c, &k))
			n += k.keys_onesided;
	return n;
}

static uint64_t fallback_keys(struct reader *rd)
{
	struct embkv_client_counters k;
	uint64_t n = 0;

	for (uint32_t i = 0; i < READERS; i++)
		if (!embkv_client_counters(rd[i].c, &k))
			n += k.fallbacks;
	return n;
}

/* ---- setup ---------------------------------------------------------------- */

static int start_members(const char *ip)
{
	char listen[64], ids[NMEM][8];

	snprintf(listen, sizeof(listen), "rdma://%s:0", ip);
	for (uint32_t i = 0; i < NMEM; i++) {
		const char *argv[] = {
			EMBKVD_PATH, "--listen", listen, "--threads", "2",
			"--etcd", etcd.url, "--cluster", CLUSTER,
			"--member-ttl", "10", "--member-id", ids[i],
			"--data-dir", dir, NULL,
		};
		int rc;

		snprintf(ids[i], sizeof(ids[i]), "%u", i);
		rc = embkv_test_proc_start(argv, 1, READY_MS, &mem[i]);
		if (rc) {
			printf("embkvd %u: %s\n", i, strerror(-rc));
			return rc;
		}
		addrs[i] = mem[i].addrs[0];
		printf("member %u on %s\n", i, addrs[i]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *ip = getenv("EMBKV_VM_IP");
	uint32_t after_s = argc > 1 ? (uint32_t)atoi(argv[1]) : 3;
	struct embkv_client *mc = NULL, *wc = NULL;
	struct embkv_table_handle *mt = NULL, *wt = NULL;
	struct reader *rd = calloc(READERS, sizeof(*rd));
	struct writer w = { 0 };
	struct pusher pu = { 0 };
	pthread_t wth, rth[READERS], pth;
	bool pstarted = false;
	struct embkv_table_handle *pt = NULL;
	uint16_t powner[PARTS];
	uint32_t nthreads = 0, moved = 0;
	uint16_t owner[PARTS];
	struct embkv_table_attr at;
	struct embkv_move_attr ma;
	struct embkv_ckpt_result res;
	uint64_t os0 = 0, os1 = 0, os2 = 0, fb0 = 0, fb1 = 0, g_moves = 0;
	bool wstarted = false;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
#if MOVE_GPU
	setenv("EMBKV_GPU_PATH", "peermem", 1); /* before the plugin loads */
#endif
	if (!ip || !*ip)
		ip = "10.0.2.15";
	snprintf(dir, sizeof(dir), "/tmp/embkv-rdma-move.%d", getpid());
	CHECK(rd && !mkdir(dir, 0755), "setup");
	rc = embkv_test_etcd_start(&etcd);
	CHECK(rc == 0, "etcd: %s", strerror(-rc));
	CHECK(start_members(ip) == 0, "members");
	mc = client();
	wc = client();
	CHECK(mc && wc, "clients");
	embkv_table_attr_init(&at);
	snprintf(at.name, sizeof(at.name), "mr");
	at.dim = DIM;
	at.partitions = PARTS;
	at.capacity = 4 * NKEYS;
	at.init.type = EMBKV_INIT_ZEROS;
	at.opt.lr = 0.1f;
	rc = embkv_table_create_remote(mc, &at);
	CHECK(rc == 0, "create: %s", embkv_strerror(rc));
	CHECK(embkv_table_open(mc, "mr", &mt) == 0, "open");
	CHECK(embkv_table_open(wc, "mr", &wt) == 0, "open (writer)");
	w.t = wt;
	/* generation 1 in before anyone reads */
	CHECK(pthread_create(&wth, NULL, write_loop, &w) == 0, "writer");
	wstarted = true;
	for (uint64_t end = embkv_test_now_ms() + 20000;
	     !__atomic_load_n(&committed, __ATOMIC_ACQUIRE) && !w.rc &&
	     embkv_test_now_ms() < end;)
		usleep(10000);
	CHECK(__atomic_load_n(&committed, __ATOMIC_ACQUIRE) && !w.rc,
	      "the first generation was not written");
	for (uint32_t i = 0; i < READERS; i++) {
		rd[i].id = i;
		rd[i].c = client();
		CHECK(rd[i].c, "reader client");
		CHECK(embkv_table_open(rd[i].c, "mr", &rd[i].t) == 0,
		      "open (reader)");
		CHECK(pthread_create(&rth[i], NULL, read_loop, &rd[i]) == 0,
		      "reader");
		nthreads++;
	}
#if MOVE_GPU
	/* "ma": zero rows, SGD lr 1, every key stored before the pushes */
	snprintf(at.name, sizeof(at.name), "ma");
	at.opt.type = EMBKV_OPT_SGD;
	at.opt.lr = 1.0f;
	rc = embkv_table_create_remote(mc, &at);
	CHECK(rc == 0, "create ma: %s", embkv_strerror(rc));
	CHECK(embkv_table_open(mc, "ma", &pt) == 0, "open ma");
	{
		static uint64_t k[NKEYS];
		static float z[NKEYS * DIM];

		for (uint32_t i = 0; i < NKEYS; i++)
			k[i] = key_of(i);
		CHECK(embkv_pull(pt, NKEYS, k, z, NULL, EMBKV_MODE_TRAIN,
				 NULL) == 0, "insert into ma");
	}
	pu.c = client();
	CHECK(pu.c && embkv_table_open(pu.c, "ma", &pu.t) == 0, "pusher");
	CHECK(pthread_create(&pth, NULL, push_loop, &pu) == 0, "pusher");
	pstarted = true;
	CHECK(embkv_table_map(pt, NULL, powner, PARTS) == 0, "map ma");
#else
	(void)pt;
	(void)powner;
#endif
	usleep(500 * 1000);
	os0 = onesided_keys(rd);
	fb0 = fallback_keys(rd);
	g_moves = __atomic_load_n(&committed, __ATOMIC_ACQUIRE);
	embkv_move_attr_init(&ma);
	/* partitions back and forth: each one moved to the next member, the
	 * same ones again later (so a member gets back a partition it had) */
	/* (the owners are tracked here: this is the only mover, and mt's
	 * map is refreshed only by a stale answer) */
	CHECK(embkv_table_map(mt, NULL, owner, PARTS) == 0, "map");
	for (uint32_t k = 0; k < MOVES && !w.rc; k++) {
		uint32_t part = (k * 3u) % PARTS, to;
		uint64_t t0 = embkv_test_now_ms();

		to = (owner[part] + 1u + (k & 1u)) % NMEM;
		rc = embkv_partition_move(mc, "mr", part, to, &ma, &res);
		CHECK(rc == 0, "move %u of partition %u to %u: %s", k, part,
		      to, res.error);
		CHECK(res.files == 1, "move %u of partition %u to %u: not made",
		      k, part, to);
		owner[part] = (uint16_t)to;
		moved++;
#if MOVE_GPU
		/* the pushed table's same partition, to the next member */
		to = (powner[part] + 1u) % NMEM;
		rc = embkv_partition_move(mc, "ma", part, to, &ma, &res);
		CHECK(rc == 0 && res.files == 1, "move %u of ma's partition "
		      "%u to %u: %s", k, part, to, res.error);
		powner[part] = (uint16_t)to;
#endif
		printf("move %u: partition %u -> server %u, %llu ms, "
		       "generation %llu\n", k, part, to,
		       (unsigned long long)(embkv_test_now_ms() - t0),
		       (unsigned long long)__atomic_load_n(&committed,
							   __ATOMIC_ACQUIRE));
		usleep(200 * 1000);
	}
	/* every reader's map comes to the moves' result (a stale one reads
	 * memory that is gone, falls back and is answered EMBKV_ESTALE) */
	for (uint32_t i = 0; i < READERS; i++) {
		uint16_t now[PARTS];
		uint64_t until = embkv_test_now_ms() + 20000;

		for (;;) {
			CHECK(embkv_table_map(rd[i].t, NULL, now, PARTS) == 0,
			      "map");
			if (!memcmp(now, owner, sizeof(now)) ||
			    embkv_test_now_ms() >= until)
				break;
			usleep(50 * 1000);
		}
		CHECK(!memcmp(now, owner, sizeof(now)), "reader %u's map is "
		      "not the moves' result after 20 s", i);
	}
	os1 = onesided_keys(rd);
	fb1 = fallback_keys(rd);
	sleep(after_s);
	os2 = onesided_keys(rd);
out:
	stop = 1;
	if (wstarted)
		pthread_join(wth, NULL);
	if (pstarted)
		pthread_join(pth, NULL);
#if MOVE_GPU
	if (pstarted && !failures) {
		static uint64_t k[NKEYS];
		static float v[NKEYS * DIM];
		struct embkv_gpu_stats gs;
		uint32_t off = 0;

		for (uint32_t i = 0; i < NKEYS; i++)
			k[i] = key_of(i);
		rc = embkv_pull(pt, NKEYS, k, v, NULL, EMBKV_MODE_INFER, NULL);
		for (uint32_t i = 0; !rc && i < NKEYS * DIM; i++)
			off += v[i] != (float)pu.pushes;
		embkv_gpu_stats_get(&gs);
		printf("device pusher: %llu pushes, %llu failed (first: %s), "
		       "%u applied short; GPU stats: %llu keys READ, %llu "
		       "landed, %llu pushed from the slab, %llu staged\n",
		       (unsigned long long)pu.pushes,
		       (unsigned long long)pu.errors,
		       embkv_strerror(pu.first_rc), pu.short_applied,
		       (unsigned long long)gs.direct_keys,
		       (unsigned long long)gs.direct_landed,
		       (unsigned long long)gs.direct_pushed,
		       (unsigned long long)gs.direct_rest);
		if (rc || pu.errors || pu.short_applied || off) {
			printf("FAIL device pushes during moves: pull %s, "
			       "%llu failed, %u short, %u elements not %llu\n",
			       embkv_strerror(rc),
			       (unsigned long long)pu.errors,
			       pu.short_applied, off,
			       (unsigned long long)pu.pushes);
			failures++;
		} else if (pu.pushes < (uint64_t)moved || !gs.direct_pushed ||
			   !gs.direct_keys) {
			printf("FAIL the device paths were not exercised\n");
			failures++;
		} else {
			printf("PASS %llu device pushes during %u moves of "
			       "their table: every element is exactly their "
			       "count (none applied twice or lost)\n",
			       (unsigned long long)pu.pushes, moved);
		}
	}
#endif
	for (uint32_t i = 0; i < nthreads; i++)
		pthread_join(rth[i], NULL);
	if (!failures) {
		uint64_t pulls = 0, rows = 0, stale = 0, bad = 0, missing = 0;
		int rrc = 0;

		for (uint32_t i = 0; i < READERS; i++) {
			pulls += rd[i].pulls;
			rows += rd[i].rows;
			stale += rd[i].stale;
			bad += rd[i].bad;
			missing += rd[i].missing;
			if (rd[i].rc && !rrc)
				rrc = rd[i].rc;
			if (rd[i].first[0])
				printf("reader %u: first failure: %s\n", i,
				       rd[i].first);
		}
		printf("%u moves, %llu generations written (%llu during the "
		       "moves), %llu pulls, %llu rows checked; one-sided keys: "
		       "%llu during the moves, %llu after; RPC fallbacks %llu "
		       "during the moves\n", moved,
		       (unsigned long long)w.gens,
		       (unsigned long long)(__atomic_load_n(&committed,
				__ATOMIC_ACQUIRE) - g_moves),
		       (unsigned long long)pulls, (unsigned long long)rows,
		       (unsigned long long)(os1 - os0),
		       (unsigned long long)(os2 - os1),
		       (unsigned long long)(fb1 - fb0));
		if (w.rc || rrc) {
			printf("FAIL writer %s, readers %s\n",
			       embkv_strerror(w.rc), embkv_strerror(rrc));
			failures++;
		} else if (stale || bad || missing) {
			printf("FAIL %llu stale rows, %llu foreign or torn, "
			       "%llu missing\n", (unsigned long long)stale,
			       (unsigned long long)bad,
			       (unsigned long long)missing);
			failures++;
		} else {
			printf("PASS %llu rows pulled during %u moves: none "
			       "stale, torn or missing\n",
			       (unsigned long long)rows, moved);
		}
		if (os1 == os0 || os2 == os1) {
			printf("FAIL the readers did not read one-sided "
			       "(%llu keys during the moves, %llu after)\n",
			       (unsigned long long)(os1 - os0),
			       (unsigned long long)(os2 - os1));
			failures++;
		} else {
			printf("PASS one-sided reads during the moves and "
			       "after the last\n");
		}
		if (w.gens < 2 * (uint64_t)moved) {
			printf("FAIL only %llu generations written\n",
			       (unsigned long long)w.gens);
			failures++;
		}
	}
	for (uint32_t i = 0; rd && i < READERS; i++) {
		if (rd[i].t)
			embkv_table_close(rd[i].t);
		if (rd[i].c)
			embkv_client_destroy(rd[i].c);
	}
	if (pu.t)
		embkv_table_close(pu.t);
	if (pu.c)
		embkv_client_destroy(pu.c);
	if (pt)
		embkv_table_close(pt);
	if (wt)
		embkv_table_close(wt);
	if (mt)
		embkv_table_close(mt);
	if (wc)
		embkv_client_destroy(wc);
	if (mc)
		embkv_client_destroy(mc);
	for (uint32_t i = 0; i < NMEM; i++)
		if (mem[i].pid && embkv_test_proc_stop(&mem[i], STOP_MS)) {
			printf("FAIL member %u did not exit with 0\n", i);
			failures++;
		}
	embkv_test_etcd_stop(&etcd);
	if (dir[0]) {
		char cmd[200];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			printf("cannot remove %s\n", dir);
	}
	free(rd);
	printf("%s\n", failures ? "FAILED" : "ALL PASSED");
	return failures ? 1 : 0;
}
