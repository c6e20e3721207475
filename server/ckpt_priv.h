/*
 * What the checkpoint thread's files share (server/ckpt.c: the thread,
 * requests and restore at start; server/ckpt_ops.c: the CKPT_* requests;
 * server/move.c: partition moves and recovery). Private to them.
 */
#ifndef EMBKV_SERVER_CKPT_PRIV_H
#define EMBKV_SERVER_CKPT_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <pthread.h>
#include "net/etcd.h"
#include "server/ckpt.h"
#include "server/ckpt_file.h"
#include "server/daemon.h"

#define CK_MSG_MAX 512u
#define CK_PATH_MAX 4096u
#define CK_MANIFEST "MANIFEST.json"
#define CK_POLL_MS 1000u
#define CK_MANIFEST_MAX (64u << 20)   /* bytes of a manifest file */

struct ck_req {
	struct embkvd_done fin;
	struct ck_req *next;
	struct embkvd_conn *conn;
	uint64_t req_id;
	uint8_t op;
	json_t *in;
	json_t *out;            /* the reply (NULL: {}) */
	uint8_t *raw;           /* MOVE_WRITE's bytes in, MOVE_READ's out */
	size_t raw_len;
	int status;
	char msg[CK_MSG_MAX];
};

/* A partition moving in (target) or out (source) here (server/move.c);
 * the registry is under ck->lock. */
struct mv_part {
	uint64_t uid;
	uint32_t part;
	bool incoming;
	int fd;                 /* source: the last copy; target: received */
	uint64_t size;
	uint64_t mid;           /* source: the copy's id; target: the last
				   copy applied */
	uint64_t move_id;       /* the move's (its coordinator's) id */
	uint64_t touched_ms;    /* the last request of the move */
	bool final;             /* target: the copy after the freeze is in */
	bool frozen;            /* source: MOVE_FREEZE done */
	char name[EMBKV_TABLE_NAME_MAX];
};

#define CK_DOWN_MAX 64u

/* A member seen without a lease (--auto-recover), and since when. */
struct ck_down {
	uint32_t id;
	uint64_t since;
};

struct ck_tried {
	uint64_t uid, id;
	uint32_t part;
};

struct embkvd_ckpt {
	struct embkvd *s;
	char *root;             /* <data-dir>/ckpt; NULL: no --data-dir */
	bool restore;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ck_req *head, **tail;
	bool stop;
	struct embkvd_ckpt_last last;     /* under lock */
	struct embkv_etcd *etcd;          /* cluster mode; this thread only */
	char newest_key[256];
	char prefix[128];                 /* "/<cluster>/" (cluster mode) */
	struct mv_part *mv;               /* moves in progress (lock) */
	uint32_t nmv;
	/* The table record MOVE_FREEZE read ahead for the MOVE_COMMIT that
	 * follows (server/move.c: one etcd read less while pushes wait);
	 * this thread only; NULL: none. */
	char *pre_val;
	size_t pre_len;
	int64_t pre_rev;
	char pre_name[EMBKV_TABLE_NAME_MAX];
	uint32_t member_id;               /* cluster mode */
	uint64_t auto_recover_ms;         /* --auto-recover; 0: off */
	struct ck_down down[CK_DOWN_MAX];
	uint32_t ndown;
	/* Restore: partitions tried against which checkpoint. */
	struct ck_tried *tried;
	uint32_t ntried;
	uint64_t next_poll_ms;
};

struct ck_ojob {
	int (*fn)(struct ck_ojob *o);
	struct embkv_table *t;
	uint32_t part;
	/* snap */
	uint64_t id, base;
	struct embkv_ckpt_snap *snap;
	/* load */
	const int *fds;
	const uint64_t *uids;
	uint32_t nfiles;
	uint64_t last_id, seq, rows;
	bool serve;             /* set SERVING once loaded */
	uint32_t bad_file;      /* the file that failed */
	char why[256];
};

/* mode: LOAD_FULL verifies the chain, then loads; LOAD_CHECK only
 * verifies; LOAD_CHECKED loads a chain verified by an earlier LOAD_CHECK
 * (the apply still checks every block it reads). */
enum load_mode { LOAD_FULL, LOAD_CHECK, LOAD_CHECKED };

/* ---- helpers (ckpt.c) ---- */
uint64_t ck_now_ms(void);
uint64_t ck_wall_ms(void);
/* Fails r: status and message; returns status. */
int ck_fail(struct ck_req *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ck_uid_hex(uint64_t uid, char out[17]);
bool ck_parse_uid(const char *s, uint64_t *out);
/* A non-negative integer field of o; false when absent or not one. */
bool ck_get_u64(const json_t *o, const char *k, uint64_t *out);
/* <root>/<id>[/<name>] into buf (CK_PATH_MAX): 0 or -ENAMETOOLONG. */
int ck_path(const struct embkvd_ckpt *ck, char *buf, uint64_t id,
	    const char *name);
int ck_fsync_path(const char *path);
bool ck_file_name_ok(const char *f);
json_t *ck_manifest_read(struct embkvd_ckpt *ck, uint64_t id,
			 struct ck_req *r);
bool ck_manifest_find(const json_t *m, const char *name, uint32_t part,
		      json_t **table, json_t **entry);
int ck_list_ids(struct embkvd_ckpt *ck, uint64_t **ids, bool **complete,
		uint32_t *n);
uint64_t ck_newest_complete(struct embkvd_ckpt *ck);
/* The catalog entry of uid, with a reference; NULL when none. */
struct embkv_catalog_entry *ck_find_uid(struct embkvd *s, uint64_t uid);
int ck_ojob_run(void *arg);
/* Runs o->fn as partition o->part's owner and waits for it. */
int ck_owner_run(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		 struct ck_ojob *o);
int ck_oj_load(struct ck_ojob *o);

/* ---- requests (ckpt_ops.c) ---- */
int ck_part_check(struct embkvd *s, struct embkv_catalog_entry *e,
		  uint32_t part, bool serving, struct ck_req *r);
int ck_load_part(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		 uint32_t part, uint64_t id, enum load_mode mode,
		 struct ck_req *r, uint64_t *rows, uint64_t *bytes,
		 uint32_t *files);
void ck_do_part(struct embkvd_ckpt *ck, struct ck_req *r);
void ck_do_commit(struct embkvd_ckpt *ck, struct ck_req *r);
void ck_do_load(struct embkvd_ckpt *ck, struct ck_req *r);
void ck_do_list(struct embkvd_ckpt *ck, struct ck_req *r);
void ck_do_get(struct embkvd_ckpt *ck, struct ck_req *r);
void ck_do_verify(struct embkvd_ckpt *ck, struct ck_req *r);
void ck_do_delete(struct embkvd_ckpt *ck, struct ck_req *r);
void ck_set_last(struct embkvd_ckpt *ck, const json_t *m);

/* ---- replicas, the primary's side (repl.c) ---- */
/* Runs a REPL_* request; false for another opcode. */
bool ck_do_repl(struct embkvd_ckpt *ck, struct ck_req *r);
/* Runs o[i]->fn as the owner of o[i]->part for every i, the owners in
 * parallel, and waits for all: rc[i] gets what each returned. */
int ck_owner_run_many(struct embkvd_ckpt *ck, struct embkv_catalog_entry *e,
		      struct ck_ojob *const *o, int *rc, uint32_t n);
/* The same in two steps: submit returns at once (jobs of one caller to
 * one owner run in submission order); wait (exactly once after each
 * submit) returns when every job ran. o, rc and the jobs must live
 * until then. */
struct ck_many {
	struct embkvd_ckpt *ck;
	struct embkv_catalog_entry *e;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint32_t left;
	bool init;
	void *pj;
};
void ck_owner_submit_many(struct ck_many *m, struct embkvd_ckpt *ck,
			  struct embkv_catalog_entry *e,
			  struct ck_ojob *const *o, int *rc, uint32_t n);
void ck_owner_wait_many(struct ck_many *m);

/* ---- moves (move.c) ---- */
/* Runs a MOVE_* or RECOVER request; false for another opcode. */
bool ck_do_move(struct embkvd_ckpt *ck, struct ck_req *r);
void ck_moves_free(struct embkvd_ckpt *ck);
/* The poll's --auto-recover step. */
void ck_auto_recover(struct embkvd_ckpt *ck);
/* The poll's clean-up of moves whose coordinator went silent. */
void ck_moves_expire(struct embkvd_ckpt *ck);

#endif
