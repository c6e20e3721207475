/*
 * Partition moves, rebalance, drain and recovery: the coordinator side
 * (include/embkv/embkv.h, "Moving partitions"; the servers' side and the
 * invariants are server/move.c's).
 *
 * What: a move relays checkpoint-format copies of one partition from its
 * source to its target: a full copy, then deltas of what changed while
 * the previous one travelled (each smaller than the last while training
 * goes on), then the source freezes the partition (its pushes answer
 * EMBKV_ESTALE and are retried by the clients), the last delta goes
 * across, and the source flips the table's map in etcd (epoch + 1).
 * Rebalance and drain are sequences of moves; recover asks one member to
 * give the partitions of members that are down to live ones.
 *
 * Why relayed by the caller: the servers need no connections to each
 * other, and the relay is where a bandwidth limit and progress live. The
 * bytes cross the network twice; that is the price, stated in the docs.
 *
 * Invariant: any failure before the flip aborts on both sides (the
 * source serves again, the target frees its copy); after the flip the
 * move is done, whatever follows.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "client/client.h"

#define MV_CHUNK (4u << 20)        /* bytes per MOVE_READ / MOVE_WRITE */
#define MV_DELTA_SMALL (256u << 10)/* a delta this small: freeze next */
#define MV_ROUNDS_MAX 6u           /* copies before the freeze at most */
#define MV_STEP_MS (10u * 60u * 1000u)
#define MV_FLIP_WAIT_MS 10000u     /* for the client's map to show a flip */
#define MV_PREPARE_WAIT_MS 3000u   /* for a target to apply an earlier flip */
#define MV_PREPARE_POLL_MS 2u

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000u),
			       (long)(ms % 1000u) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

void embkv_move_attr_init(struct embkv_move_attr *a)
{
	memset(a, 0, sizeof(*a));
}

static uint64_t jnum(const json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) && json_integer_value(v) > 0
		       ? (uint64_t)json_integer_value(v) : 0;
}

/* One JSON request to server; its reply in *reply (owned by the caller)
 * when not NULL. */
static int ask(struct embkv_client *c, uint32_t server, uint8_t op,
	       json_t *body, json_t **reply, struct embkv_ckpt_result *res)
{
	struct embkv_jreq q;
	int rc;

	if (!body)
		return -ENOMEM;
	rc = embkv_jreq_init(&q, server, op, body, NULL);
	json_decref(body);
	if (!rc) {
		embkv_jreq_run(c, &q, 1, MV_STEP_MS);
		rc = q.rpc.status;
		if (rc)
			embkv_res_fail(res, rc, "%s: %s: %s",
			     embkv_client_server_addr(c, server),
			     embkv_wire_op_name(op), q.msg);
		else if (reply)
			*reply = json_incref(q.reply);
	}
	embkv_jreq_clear(&q);
	return rc;
}

struct move {
	struct embkv_client *c;
	const struct embkv_move_attr *a;
	struct embkv_ckpt_result *res;
	const char *table;
	uint32_t part, src, dst;
	uint64_t uid, epoch;
	uint64_t id;                    /* the move's id (every request) */
	uint32_t to;                    /* the target's member id */
	char uh[17];
	uint64_t t0, bytes, rows;
	uint32_t done, total;
};

static void progress(struct move *mv, const char *phase)
{
	struct embkv_move_progress p = {
		.table = mv->table, .part = mv->part, .phase = phase,
		.bytes = mv->bytes, .rows = mv->rows,
		.moves_done = mv->done, .moves_total = mv->total,
		.elapsed_ms = embkv_now_ms() - mv->t0,
	};

	if (mv->a && mv->a->progress)
		mv->a->progress(mv->a->progress_ctx, &p);
}

/* Copies snapshot mid (bytes long) from the source to the target, in
 * chunks, within the bandwidth limit. */
static int relay(struct move *mv, uint64_t mid, uint64_t bytes)
{
	uint64_t off = 0, t0 = embkv_now_ms(), sent = 0;
	int rc = 0;

	while (!rc && off < bytes) {
		struct embkv_jreq rd, wr;
		json_t *b = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "uid",
				      mv->uh, "part", (json_int_t)mv->part,
				      "mid", (json_int_t)mid, "offset",
				      (json_int_t)off, "max",
				      (json_int_t)MV_CHUNK, "move",
				      (json_int_t)mv->id);

		if (!b)
			return -ENOMEM;
		rc = embkv_jreq_init(&rd, mv->src, EMBKV_WIRE_OP_MOVE_READ, b,
				     NULL);
		json_decref(b);
		if (!rc) {
			embkv_jreq_run(mv->c, &rd, 1, MV_STEP_MS);
			rc = rd.rpc.status;
			if (rc)
				embkv_res_fail(mv->res, rc, "%s: MOVE_READ: %s",
				     embkv_client_server_addr(mv->c, mv->src),
				     rd.msg);
			else if (!rd.raw_len)
				rc = embkv_res_fail(mv->res, EMBKV_EPROTO, "%s: an empty "
					  "chunk at %" PRIu64 " of %" PRIu64,
					  embkv_client_server_addr(mv->c,
								   mv->src),
					  off, bytes);
		}
		if (!rc) {
			b = json_pack("{s:s, s:I, s:I, s:I}", "uid", mv->uh,
				      "part", (json_int_t)mv->part, "offset",
				      (json_int_t)off, "move", (json_int_t)mv->id);
			rc = b ? embkv_jreq_init_blob(&wr, mv->dst,
						      EMBKV_WIRE_OP_MOVE_WRITE,
						      b, rd.raw, rd.raw_len)
			       : -ENOMEM;
			json_decref(b);
			if (!rc) {
				embkv_jreq_run(mv->c, &wr, 1, MV_STEP_MS);
				rc = wr.rpc.status;
				if (rc)
					embkv_res_fail(mv->res, rc, "%s: MOVE_WRITE: %s",
					     embkv_client_server_addr(mv->c,
								      mv->dst),
					     wr.msg);
			}
			embkv_jreq_clear(&wr);
			off += rd.raw_len;
			sent += rd.raw_len;
			mv->bytes += rd.raw_len;
		}
		embkv_jreq_clear(&rd);
		if (!rc && mv->a && mv->a->rate_bytes_per_s) {
			uint64_t due = t0 + sent * 1000u /
					    mv->a->rate_bytes_per_s;
			uint64_t now = embkv_now_ms();

			if (due > now)
				sleep_ms(due - now);
		}
	}
	return rc;
}

/* The request naming the partition and the move. */
static json_t *req(const struct move *mv)
{
	return json_pack("{s:s, s:I, s:I, s:s, s:I}", "uid", mv->uh, "part",
			 (json_int_t)mv->part, "move", (json_int_t)mv->id,
			 "name", mv->table, "to", (json_int_t)mv->to);
}

/*
 * Undoes a move that failed: the source first, which refuses when etcd
 * says the move committed (its answer was lost): then the move is done.
 * Returns 0 in that case, else rc.
 */
static int abort_move(struct move *mv, int rc)
{
	struct embkv_ckpt_result tmp;
	int src;

	memset(&tmp, 0, sizeof(tmp));
	src = ask(mv->c, mv->src, EMBKV_WIRE_OP_MOVE_ABORT, req(mv), NULL,
		  &tmp);
	if (src == EMBKV_ECLUSTER && strstr(tmp.error, "committed already")) {
		mv->res->error[0] = '\0';
		return 0;
	}
	ask(mv->c, mv->dst, EMBKV_WIRE_OP_MOVE_ABORT, req(mv), NULL, NULL);
	return rc;
}

/* Moves mv->part from mv->src to mv->dst. */
static int move_run(struct move *mv)
{
	uint64_t mid = embkv_wall_ms() * 16u, base = 0, from = 0;
	bool frozen = false, had_error = mv->res->error[0] != '\0';
	json_t *rep = NULL, *b;
	int rc;

	mv->id = embkv_wall_ms() << 8 | ((uint64_t)mv->part & 0xffu);
	/* A target that gave the partition away a moment ago may not have
	 * applied that flip yet (-EEXIST: still its own by its map; -EBUSY:
	 * still being freed): it does within ms, so ask again, bounded. */
	for (uint64_t until = embkv_now_ms() + MV_PREPARE_WAIT_MS;;) {
		b = req(mv);
		json_object_del(b, "to");
		rc = ask(mv->c, mv->dst, EMBKV_WIRE_OP_MOVE_PREPARE, b, &rep,
			 mv->res);
		if ((rc != -EEXIST && rc != -EBUSY) ||
		    embkv_now_ms() >= until)
			break;
		if (!had_error)   /* (the last answer is the one reported) */
			mv->res->error[0] = '\0';
		sleep_ms(MV_PREPARE_POLL_MS);
	}
	if (rc)
		return rc;
	mv->to = (uint32_t)jnum(rep, "member");
	json_decref(rep);
	for (uint32_t round = 0;; round++, mid++) {
		uint64_t bytes, rows;

		rep = NULL;
		b = req(mv);
		json_object_set_new(b, "mid", json_integer((json_int_t)mid));
		json_object_set_new(b, "base", json_integer((json_int_t)base));
		rc = ask(mv->c, mv->src, EMBKV_WIRE_OP_MOVE_SNAP, b, &rep,
			 mv->res);
		if (rc)
			goto abort;
		bytes = jnum(rep, "bytes");
		rows = jnum(rep, "rows");
		from = jnum(rep, "member");
		json_decref(rep);
		rc = relay(mv, mid, bytes);
		if (!rc) {
			b = req(mv);
			json_object_set_new(b, "final", json_boolean(frozen));
			rc = ask(mv->c, mv->dst, EMBKV_WIRE_OP_MOVE_APPLY, b,
				 NULL, mv->res);
		}
		if (rc)
			goto abort;
		mv->rows = round ? mv->rows : rows;
		progress(mv, frozen ? "final" : round ? "delta" : "copy");
		if (frozen)
			break;
		base = mid;
		if (round && (bytes < MV_DELTA_SMALL ||
			      round + 1 >= MV_ROUNDS_MAX)) {
			rc = ask(mv->c, mv->src, EMBKV_WIRE_OP_MOVE_FREEZE,
				 req(mv), NULL, mv->res);
			if (rc)
				goto abort;
			frozen = true;
		}
	}
	rep = NULL;
	rc = ask(mv->c, mv->src, EMBKV_WIRE_OP_MOVE_COMMIT,
		 json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "name", mv->table,
			   "uid", mv->uh, "part", (json_int_t)mv->part,
			   "from", (json_int_t)from, "to", (json_int_t)mv->to,
			   "epoch", (json_int_t)mv->epoch), &rep, mv->res);
	if (rc)
		goto abort;
	mv->epoch = jnum(rep, "epoch");
	json_decref(rep);
	progress(mv, "done");
	return 0;
abort:
	rc = abort_move(mv, rc);
	if (!rc) {
		/* committed after all: the map's epoch moved on */
		mv->epoch++;
		progress(mv, "done");
	}
	return rc;
}

/* Waits (bounded) until t's map has at least epoch. */
static void wait_epoch(struct embkv_table_handle *t, uint64_t epoch)
{
	uint64_t until = embkv_now_ms() + MV_FLIP_WAIT_MS;

	for (;;) {
		struct embkv_shardmap *m;
		uint64_t e;
		int newer;

		embkv_shardmap_refresh(t, UINT32_MAX, &newer);
		m = embkv_shardmap_get(t);
		e = m->epoch;
		embkv_shardmap_put(m);
		if (e >= epoch || embkv_now_ms() >= until)
			return;
		sleep_ms(20);
	}
}

/* Moves partition part of the open table t to client server dst. */
static int move_one(struct embkv_client *c, struct embkv_table_handle *t,
		    uint32_t part, uint32_t dst, const struct embkv_move_attr *a,
		    struct embkv_ckpt_result *res, uint32_t done,
		    uint32_t total)
{
	struct embkv_shardmap *m = embkv_shardmap_get(t);
	struct move mv = {
		.c = c, .a = a, .res = res, .table = embkv_table_attr_get(t)->name,
		.part = part, .dst = dst, .t0 = embkv_now_ms(), .done = done,
		.total = total,
	};
	uint32_t ms;
	int rc;

	if (part >= m->nparts) {
		embkv_shardmap_put(m);
		return embkv_res_fail(res, -EINVAL, "table %s has %u partitions", mv.table,
			    m->nparts);
	}
	ms = m->part_srv[part];
	mv.src = m->srv[ms];
	mv.uid = m->tref[ms].uid;
	mv.epoch = m->epoch;
	embkv_shardmap_put(m);
	if (mv.src == dst)
		return 0;
	snprintf(mv.uh, sizeof(mv.uh), "%016" PRIx64, mv.uid);
	rc = move_run(&mv);
	if (!rc) {
		res->files++;
		res->bytes += mv.bytes;
		res->rows += mv.rows;
		wait_epoch(t, mv.epoch);
	}
	return rc;
}

int embkv_partition_move(struct embkv_client *c, const char *table,
			 uint32_t part, uint32_t server,
			 const struct embkv_move_attr *a,
			 struct embkv_ckpt_result *res)
{
	struct embkv_ckpt_result dummy;
	struct embkv_table_handle *t;
	uint64_t t0 = embkv_now_ms();
	int rc;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!c || !table || (a && a->flags))
		return -EINVAL;
	if (server >= embkv_client_server_count(c))
		return embkv_res_fail(res, -EINVAL, "no server %u (the client knows %u)",
			    server, embkv_client_server_count(c));
	rc = embkv_table_open(c, table, &t);
	if (rc)
		return embkv_res_fail(res, rc, "cannot open table %s: %s", table,
			    embkv_strerror(rc));
	rc = move_one(c, t, part, server, a, res, 0, 1);
	embkv_table_close(t);
	res->ms = embkv_now_ms() - t0;
	return rc;
}

/* Partition counts per client server of t's map. */
static void counts(struct embkv_table_handle *t, uint32_t *cnt, uint32_t ns)
{
	struct embkv_shardmap *m = embkv_shardmap_get(t);

	memset(cnt, 0, ns * sizeof(*cnt));
	for (uint32_t p = 0; p < m->nparts; p++) {
		uint32_t s = m->srv[m->part_srv[p]];

		if (s < ns)
			cnt[s]++;
	}
	embkv_shardmap_put(m);
}

/* The first partition of t on server s, or UINT32_MAX. */
static uint32_t part_on(struct embkv_table_handle *t, uint32_t s)
{
	struct embkv_shardmap *m = embkv_shardmap_get(t);
	uint32_t found = UINT32_MAX;

	for (uint32_t p = 0; p < m->nparts && found == UINT32_MAX; p++)
		if (m->srv[m->part_srv[p]] == s)
			found = p;
	embkv_shardmap_put(m);
	return found;
}

/* Rebalances (drain == UINT32_MAX) or drains one server, table by table:
 * the most loaded server (or the drained one) gives a partition to the
 * least loaded one until the counts differ by one at most (or the drained
 * one holds none). */
static int spread(struct embkv_client *c, uint32_t drain,
		  const struct embkv_move_attr *a, struct embkv_ckpt_result *res)
{
	uint32_t ns = embkv_client_server_count(c), count = 0;
	struct embkv_table_summary *sum = NULL;
	uint32_t *cnt = calloc(ns ? ns : 1, sizeof(*cnt));
	uint64_t t0 = embkv_now_ms();
	int rc;

	if (!cnt)
		return -ENOMEM;
	if (drain != UINT32_MAX && (drain >= ns || ns < 2)) {
		free(cnt);
		return embkv_res_fail(res, -EINVAL, "cannot drain server %u of %u",
			    drain, ns);
	}
	rc = embkv_table_list(c, NULL, 0, &count);
	sum = calloc(count ? count : 1, sizeof(*sum));
	if (!rc && !sum)
		rc = -ENOMEM;
	if (!rc)
		rc = embkv_table_list(c, sum, count, &count);
	for (uint32_t i = 0; !rc && i < count; i++) {
		struct embkv_table_handle *t;

		if (a && a->ntables) {
			bool want = false;

			for (uint32_t k = 0; k < a->ntables; k++)
				want |= !strcmp(a->tables[k], sum[i].name);
			if (!want)
				continue;
		}
		rc = embkv_table_open(c, sum[i].name, &t);
		if (rc) {
			embkv_res_fail(res, rc, "cannot open table %s: %s", sum[i].name,
			     embkv_strerror(rc));
			break;
		}
		for (uint32_t step = 0; !rc; step++) {
			uint32_t hi = UINT32_MAX, lo = UINT32_MAX, p;

			counts(t, cnt, ns);
			for (uint32_t s = 0; s < ns; s++) {
				if (embkv_client_server_status(c, s) &&
				    s != drain)
					continue;   /* down: not a target */
				if (s != drain &&
				    (lo == UINT32_MAX || cnt[s] < cnt[lo]))
					lo = s;
				if (hi == UINT32_MAX || cnt[s] > cnt[hi])
					hi = s;
			}
			if (drain != UINT32_MAX)
				hi = cnt[drain] ? drain : UINT32_MAX;
			else if (hi != UINT32_MAX && lo != UINT32_MAX &&
				 cnt[hi] <= cnt[lo] + 1)
				hi = UINT32_MAX;
			if (hi == UINT32_MAX || lo == UINT32_MAX || hi == lo)
				break;
			p = part_on(t, hi);
			if (p == UINT32_MAX)
				break;
			rc = move_one(c, t, p, lo, a, res, step, step + 1);
		}
		embkv_table_close(t);
	}
	free(sum);
	free(cnt);
	res->ms = embkv_now_ms() - t0;
	return rc;
}

int embkv_rebalance(struct embkv_client *c, const struct embkv_move_attr *a,
		    struct embkv_ckpt_result *res)
{
	struct embkv_ckpt_result dummy;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!c || (a && a->flags))
		return -EINVAL;
	return spread(c, UINT32_MAX, a, res);
}

int embkv_drain(struct embkv_client *c, uint32_t server,
		const struct embkv_move_attr *a, struct embkv_ckpt_result *res)
{
	struct embkv_ckpt_result dummy;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!c || (a && a->flags))
		return -EINVAL;
	return spread(c, server, a, res);
}

int embkv_recover(struct embkv_client *c, struct embkv_ckpt_result *res)
{
	struct embkv_ckpt_result dummy;
	uint32_t ns;
	int rc = -ENOENT;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!c)
		return -EINVAL;
	ns = embkv_client_server_count(c);
	/* any live member: it reads the members and maps from etcd */
	for (uint32_t s = 0; s < ns; s++) {
		json_t *rep = NULL;

		if (embkv_client_server_status(c, s) == 0 || s + 1 == ns) {
			res->error[0] = '\0';
			rc = ask(c, s, EMBKV_WIRE_OP_RECOVER, json_object(),
				 &rep, res);
			if (!rc) {
				res->files = jnum(rep, "partitions");
				res->rows = jnum(rep, "tables");
				json_decref(rep);
				return 0;
			}
		}
	}
	return rc;
}
