/*
 * The device API of include/embkv/embkv_gpu.h: loads libembkv_gpu.so on
 * the first device call (dlopen; built by nvcc with EMBKV_CUDA=ON), and
 * runs the staging path around the ordinary embkv_pull / embkv_push:
 *
 *   pull: device keys -> dedup on the GPU (distinct keys, inverse) ->
 *         distinct keys to pinned host memory -> embkv_pull a chunk at a
 *         time into one of two pinned row buffers -> cudaMemcpyAsync to
 *         the device (the next chunk's network pull overlaps this copy)
 *         -> scatter through the inverse into the caller's tensor;
 *   push: dedup -> gradients summed per distinct key on the GPU -> copied
 *         to pinned memory a chunk ahead -> embkv_push per chunk.
 *
 * GPUDirect (the probe found dma-buf or nvidia-peermem registration, or
 * EMBKV_GPU_PATH asks for one): a pull of a table whose servers read
 * one-sided READs the distinct keys' records straight into a device slab
 * (allocated with the workspace, registered once per connection), the
 * GPU checks them there and scatters the good rows (check_scatter_range),
 * The keys the READs leave (missing, torn too often) are pulled by
 * PULL_LAND: their servers RDMA-WRITE the records into the slab too, and
 * the GPU checks them there (check_scatter_list); an infer-mode miss gets
 * the caller's default on the GPU. Only what is left after that (servers
 * without one-sided reads or that cannot take the slab, records that
 * failed their check) takes the staging path, scattered by scatter_list.
 *
 * Only distinct keys and their rows cross PCIe and the network. Without
 * CUDA built in (EMBKV_HAVE_CUDA 0) nothing is loaded and every call
 * says -EOPNOTSUPP, so the CPU library never needs libcuda or a GPU.
 *
 * Invariants: a staging workspace (pinned buffers, events of one device)
 * is used by one call at a time, on the device it was made on, and is reused only after its `done` event, recorded after the
 * last copy that reads it, has completed; every chunk buffer is rewritten
 * by the host only after its own event says its previous copy is done.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <embkv/embkv_gpu.h>

#include "client/client.h"
#include "client/gpu_direct.h"
#include "gpu/gpu.h"

#ifndef EMBKV_HAVE_CUDA
#define EMBKV_HAVE_CUDA 0
#endif

/* Bytes of rows per staging chunk buffer (two per workspace). */
#define GPU_CHUNK_BYTES (8u << 20)
/* Bytes of a workspace's device slab (GPUDirect): a pull's distinct keys
 * land in it a range at a time, a push's rows leave from it. 32 MiB, or
 * EMBKV_GPU_SLAB_MB (1 to 1024) read when the plugin loads; another
 * value is ignored. */
#define GPU_SLAB_BYTES (32u << 20)
static size_t slab_bytes = GPU_SLAB_BYTES;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const struct embkv_gpu_ops *ops;
static int load_status = -EOPNOTSUPP;
static struct embkv_gpu_info load_info;

static struct {
	uint64_t pulls, pushes, keys, distinct, h2d, d2h, chunks;
	uint64_t direct_keys, direct_rest, direct_landed, direct_pushed;
} stats;

static void count(uint64_t *c, uint64_t v)
{
	__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

const char *embkv_gpu_path_name(enum embkv_gpu_path path)
{
	switch (path) {
	case EMBKV_GPU_PATH_STAGING: return "staging";
	case EMBKV_GPU_PATH_DMABUF: return "gpudirect-dmabuf";
	case EMBKV_GPU_PATH_PEERMEM: return "gpudirect-peermem";
	default: return "none";
	}
}

#if EMBKV_HAVE_CUDA
static void *try_open(const char *path)
{
	return path && *path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
}

/* $EMBKV_GPU_LIB, else libembkv_gpu.so next to the object this code is
 * in (libembkv.so, or a program linking it statically), then the build
 * tree's, then the loader's search path. */
static void *open_plugin(void)
{
	char path[PATH_MAX];
	Dl_info di;
	void *h = try_open(getenv("EMBKV_GPU_LIB"));

	if (!h && dladdr((void *)embkv_gpu_probe, &di) && di.dli_fname) {
		const char *slash = strrchr(di.dli_fname, '/');

		if (slash && snprintf(path, sizeof(path), "%.*s/libembkv_gpu.so",
				      (int)(slash - di.dli_fname),
				      di.dli_fname) < (int)sizeof(path))
			h = try_open(path);
	}
#ifdef EMBKV_GPU_BUILD_LIB
	if (!h)
		h = try_open(EMBKV_GPU_BUILD_LIB);
#endif
	if (!h)
		h = try_open("libembkv_gpu.so");
	return h;
}
#endif

#if EMBKV_HAVE_CUDA
/* The path in use: what the probe found, unless EMBKV_GPU_PATH says
 * "staging" (never register device memory) or names a GPUDirect
 * registration to use whatever the probe said (for machines whose probe
 * is wrong, and for the tests: with the host stand-in plugin, "peermem"
 * registers its host "device" memory with ibv_reg_mr, so the whole
 * GPUDirect flow runs on soft-RoCE). A registration that fails on a
 * connection sends that server's keys through staging. */
static enum embkv_gpu_path path_chosen(enum embkv_gpu_path capable,
				       char *why, size_t why_len)
{
	const char *e = getenv("EMBKV_GPU_PATH");
	size_t l = strlen(why);

	if (!e || !*e)
		return capable;
	if (!strcmp(e, "staging") && capable != EMBKV_GPU_PATH_STAGING) {
		snprintf(why + l, why_len - l, "; EMBKV_GPU_PATH=staging");
		return EMBKV_GPU_PATH_STAGING;
	}
	if (!strcmp(e, "peermem") || !strcmp(e, "dmabuf")) {
		snprintf(why + l, why_len - l, "; EMBKV_GPU_PATH=%s", e);
		return e[0] == 'p' ? EMBKV_GPU_PATH_PEERMEM
				   : EMBKV_GPU_PATH_DMABUF;
	}
	return capable;
}
#endif

static void load(void)
{
	struct embkv_gpu_info *in = &load_info;

	memset(in, 0, sizeof(*in));
#if EMBKV_HAVE_CUDA
	{
		struct embkv_gpu_dev_info di;
		embkv_gpu_plugin_fn fn;
		void *h = open_plugin();

		if (!h) {
			snprintf(in->why, sizeof(in->why),
				 "libembkv_gpu.so not loaded: %.120s",
				 dlerror());
			return;
		}
		fn = (embkv_gpu_plugin_fn)(uintptr_t)dlsym(
			h, "embkv_gpu_plugin_ops");
		ops = fn ? fn() : NULL;
		if (!ops || ops->abi != EMBKV_GPU_ABI) {
			snprintf(in->why, sizeof(in->why),
				 "libembkv_gpu.so: no plugin table of ABI %d",
				 EMBKV_GPU_ABI);
			ops = NULL;
			return;
		}
		if (ops->probe(&di)) {
			snprintf(in->why, sizeof(in->why),
				 "no CUDA device: %.130s", ops->last_error());
			load_status = -ENODEV;
			ops = NULL;
			return;
		}
		in->device = di.device;
		in->cc_major = di.cc_major;
		in->cc_minor = di.cc_minor;
		in->driver_version = di.driver_version;
		in->dmabuf_supported = di.dmabuf;
		in->gdr_supported = di.gdr;
		snprintf(in->name, sizeof(in->name), "%s", di.name);
		in->capable = embkv_gpu_direct_probe(di.dmabuf, di.gdr, in->why,
						     sizeof(in->why));
		in->path = path_chosen(in->capable, in->why, sizeof(in->why));
		{
			const char *mb = getenv("EMBKV_GPU_SLAB_MB");
			char *end;
			unsigned long v = mb ? strtoul(mb, &end, 10) : 0;

			if (mb && *mb && !*end && v >= 1 && v <= 1024)
				slab_bytes = (size_t)v << 20;
		}
		load_status = 0;
	}
#else
	snprintf(in->why, sizeof(in->why),
		 "libembkv was built without CUDA (EMBKV_CUDA=OFF)");
#endif
}

int embkv_gpu_probe(struct embkv_gpu_info *info)
{
	pthread_once(&load_once, load);
	if (info)
		*info = load_info;
	return load_status;
}

/* The calling thread's last device-call error text: set when a call
 * of this thread fails with a CUDA error, and by embkv_gpu_op_wait from
 * the worker that ran the op (the plugin's own text is per thread, and
 * would be the worker's). */
static __thread char tl_err[160];

static int note_err(int rc)
{
	if (rc == -EIO && ops)
		snprintf(tl_err, sizeof(tl_err), "%s", ops->last_error());
	return rc;
}

const char *embkv_gpu_last_error(void)
{
	return tl_err[0] || !ops ? tl_err : ops->last_error();
}

void embkv_gpu_stats_get(struct embkv_gpu_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	pthread_once(&load_once, load); /* the path is the probe's */
	out->path = load_status ? EMBKV_GPU_PATH_NONE : load_info.path;
	out->pulls = __atomic_load_n(&stats.pulls, __ATOMIC_RELAXED);
	out->pushes = __atomic_load_n(&stats.pushes, __ATOMIC_RELAXED);
	out->keys = __atomic_load_n(&stats.keys, __ATOMIC_RELAXED);
	out->distinct_keys = __atomic_load_n(&stats.distinct, __ATOMIC_RELAXED);
	out->h2d_bytes = __atomic_load_n(&stats.h2d, __ATOMIC_RELAXED);
	out->d2h_bytes = __atomic_load_n(&stats.d2h, __ATOMIC_RELAXED);
	out->chunks = __atomic_load_n(&stats.chunks, __ATOMIC_RELAXED);
	out->direct_keys = __atomic_load_n(&stats.direct_keys,
					   __ATOMIC_RELAXED);
	out->direct_rest = __atomic_load_n(&stats.direct_rest,
					   __ATOMIC_RELAXED);
	out->direct_landed = __atomic_load_n(&stats.direct_landed,
					     __ATOMIC_RELAXED);
	out->direct_pushed = __atomic_load_n(&stats.direct_pushed,
					     __ATOMIC_RELAXED);
}

/* Pinned staging buffers: keys (cap_keys), two chunk buffers of rows and
 * found flags, the default row; kept in a free list between calls. */
struct ws {
	struct ws *next;
	int dev;                /* the CUDA device its events belong to */
	uint64_t *h_keys;
	size_t cap_keys;
	float *h_rows[2];
	uint8_t *h_found[2];
	size_t cap_floats;      /* per row buffer */
	uint32_t chunk_rows;    /* for this call's dim */
	float *h_dflt;
	size_t cap_dflt;
	size_t cap_found;       /* per found buffer: rows */
	void *ev[2];
	int ev_used[2];
	void *done;
	int done_used;
	/* GPUDirect: the device slab READs land in (made on first use, kept
	 * and registered for the workspace's life), its process-unique id,
	 * verdicts (device and pinned), and a pinned list of keys left. */
	void *d_slab;
	uint64_t slab_id;
	uint8_t *d_verdict, *h_verdict;
	uint32_t *h_list;
	size_t cap_list;
};

static pthread_mutex_t ws_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ws *ws_free;

static void ws_bufs_free(struct ws *w)
{
	ops->host_free(w->h_keys);
	for (int b = 0; b < 2; b++) {
		ops->host_free(w->h_rows[b]);
		ops->host_free(w->h_found[b]);
		w->h_rows[b] = NULL;
		w->h_found[b] = NULL;
	}
	ops->host_free(w->h_dflt);
	w->h_keys = NULL;
	w->h_dflt = NULL;
	w->cap_keys = w->cap_floats = w->cap_dflt = w->cap_found = 0;
}

/* The GPUDirect slab and its buffers. The slab's registrations on
 * connections stay until those close or evict them: freed memory may
 * stay pinned until then, but no READ is ever posted into it again (its
 * id is never reused). */
static void ws_slab_free(struct ws *w)
{
	ops->dev_free_sync(w->d_slab);
	ops->dev_free_sync(w->d_verdict);
	ops->host_free(w->h_verdict);
	ops->host_free(w->h_list);
	w->d_slab = NULL;
	w->d_verdict = NULL;
	w->h_verdict = NULL;
	w->h_list = NULL;
	w->cap_list = 0;
}

static int ws_get(uint32_t n, uint32_t dim, struct ws **out)
{
	struct ws *w, **pp;
	size_t chunk = GPU_CHUNK_BYTES / ((size_t)dim * sizeof(float));
	int rc = 0, dev = 0;

	if (n > INT32_MAX)
		return -EINVAL; /* dedup's limit: before pinning n keys' room */
	if (chunk < 1)
		chunk = 1;
	if (chunk > n)
		chunk = n;
	rc = ops->device_get(&dev);
	if (rc)
		return rc;
	pthread_mutex_lock(&ws_lock);
	for (pp = &ws_free; *pp && (*pp)->dev != dev; pp = &(*pp)->next)
		;
	w = *pp;
	if (w)
		*pp = w->next;
	pthread_mutex_unlock(&ws_lock);
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -ENOMEM;
		w->dev = dev;
		if ((rc = ops->event_create(&w->ev[0])) ||
		    (rc = ops->event_create(&w->ev[1])) ||
		    (rc = ops->event_create(&w->done))) {
			ops->event_destroy(w->ev[0]);
			ops->event_destroy(w->ev[1]);
			free(w);
			return rc;
		}
	}
	/* the previous call's copies out of these buffers are done */
	if (w->done_used && (rc = ops->event_wait(w->done)))
		goto fail;
	w->done_used = 0;
	w->ev_used[0] = w->ev_used[1] = 0;
	if (w->cap_keys < n || w->cap_floats < chunk * dim ||
	    w->cap_dflt < dim || w->cap_found < chunk) {
		ws_bufs_free(w);
		if ((rc = ops->host_alloc((void **)&w->h_keys,
					  (size_t)n * sizeof(uint64_t))) ||
		    (rc = ops->host_alloc((void **)&w->h_dflt,
					  (size_t)dim * sizeof(float))))
			goto fail;
		for (int b = 0; b < 2; b++)
			if ((rc = ops->host_alloc((void **)&w->h_rows[b],
						  chunk * dim * sizeof(float))) ||
			    (rc = ops->host_alloc((void **)&w->h_found[b],
						  chunk)))
				goto fail;
		w->cap_keys = n;
		w->cap_floats = chunk * dim;
		w->cap_dflt = dim;
		w->cap_found = chunk;
	}
	w->chunk_rows = (uint32_t)(w->cap_floats / dim < UINT32_MAX
				   ? w->cap_floats / dim : UINT32_MAX);
	if (w->chunk_rows > chunk)
		w->chunk_rows = (uint32_t)chunk; /* keep chunks small enough to overlap */
	/* never more rows a chunk than the found buffers hold (a workspace
	 * made for a wider table has room for fewer rows of flags) */
	if (w->chunk_rows > w->cap_found)
		w->chunk_rows = (uint32_t)w->cap_found;
	*out = w;
	return 0;
fail:
	ws_bufs_free(w);
	ws_slab_free(w);
	ops->event_destroy(w->ev[0]);
	ops->event_destroy(w->ev[1]);
	ops->event_destroy(w->done);
	free(w);
	return rc;
}

/* Back to the free list once `done` is recorded after its last copy. */
static void ws_put(struct ws *w, void *stream)
{
	w->done_used = ops->event_record(w->done, stream) == 0;
	if (!w->done_used)
		ops->stream_wait(stream);
	pthread_mutex_lock(&ws_lock);
	w->next = ws_free;
	ws_free = w;
	pthread_mutex_unlock(&ws_lock);
}

static int ready(void)
{
	pthread_once(&load_once, load);
	return load_status;
}

static int buf_wait(struct ws *w, int b)
{
	int rc = w->ev_used[b] ? ops->event_wait(w->ev[b]) : 0;

	w->ev_used[b] = 0;
	return rc;
}

/*
 * Rows of the host keys keys[0..cnt) into device memory d_rows (cnt x dim
 * floats) and d_found (cnt): embkv_pull a chunk at a time into one of the
 * two pinned buffers, each chunk's copy to the device overlapping the
 * next chunk's network pull. rpc_only: the keys were tried one-sided
 * already (the GPUDirect pull's leftovers), so no READs again. nf (NULL,
 * or cnt_all flags): keys a landing pull of this call inserted, found 0
 * whatever the pull here says (it finds them stored now).
 */
static int stage_rows(struct embkv_table_handle *t, struct ws *w,
		      const uint64_t *keys, uint32_t cnt_all, float *d_rows,
		      uint8_t *d_found, enum embkv_mode mode,
		      const float *h_dflt, int rpc_only, const uint8_t *nf,
		      void *stream)
{
	uint32_t dim = t->attr.dim, off, k;
	int rc = 0;

	for (off = 0, k = 0; off < cnt_all; off += w->chunk_rows, k++) {
		uint32_t cnt = cnt_all - off < w->chunk_rows ? cnt_all - off
							     : w->chunk_rows;
		int b = k & 1;
		struct embkv_batch_args a = {
			.t = t, .op = EMBKV_BATCH_PULL, .n = cnt,
			.keys = keys + off, .out = w->h_rows[b],
			.found = w->h_found[b], .mode = mode, .dflt = h_dflt,
			.rpc_only = rpc_only,
		};

		if ((rc = buf_wait(w, b)))
			break;
		rc = embkv_batch_run(&a);
		if (rc)
			break;
		for (uint32_t i = 0; nf && i < cnt; i++)
			if (nf[off + i])
				w->h_found[b][i] = 0;
		if ((rc = ops->h2d(d_rows + (size_t)off * dim, w->h_rows[b],
				   (size_t)cnt * dim * sizeof(float), stream)) ||
		    (rc = ops->h2d(d_found + off, w->h_found[b], cnt,
				   stream)) ||
		    (rc = ops->event_record(w->ev[b], stream)))
			break;
		w->ev_used[b] = 1;
		count(&stats.chunks, 1);
		count(&stats.h2d, (uint64_t)cnt * (dim * sizeof(float) + 1));
	}
	return rc;
}

/* GPUDirect ------------------------------------------------------------------- */

static uint64_t slab_ids;

/* read_region's registration of a slab on a connection's protection
 * domain: dma-buf or peermem, as the path in use says. */
static void *slab_reg(void *pd, void *p, size_t len, int access, void *arg)
{
	(void)arg;
	return embkv_gpu_direct_reg(ops, pd, p, len, access, load_info.path);
}

/* The workspace's slab and verdict buffers, made once. A record is at
 * least 32 bytes apart in the slab, so slab_bytes / 32 verdicts. */
static int slab_get(struct ws *w, uint32_t nu)
{
	size_t nv = slab_bytes / 32;
	int rc;

	if (w->cap_list < nu) {
		ops->host_free(w->h_list);
		w->h_list = NULL;
		w->cap_list = 0;
		rc = ops->host_alloc((void **)&w->h_list,
				     (size_t)nu * sizeof(uint32_t));
		if (rc)
			return rc;
		w->cap_list = nu;
	}
	if (w->d_slab)
		return 0;
	if ((rc = ops->dev_alloc_sync(&w->d_slab, slab_bytes)) ||
	    (rc = ops->dev_alloc_sync((void **)&w->d_verdict, nv)) ||
	    (rc = ops->host_alloc((void **)&w->h_verdict, nv))) {
		ops->dev_free_sync(w->d_slab);
		ops->dev_free_sync(w->d_verdict);
		w->d_slab = NULL;
		w->d_verdict = NULL;
		return rc;
	}
	w->slab_id = __atomic_add_fetch(&slab_ids, 1, __ATOMIC_RELAXED);
	return 0;
}

struct land_ctx {
	const struct embkv_gpu_dedup *dd;
	struct ws *w;
	size_t stride, payload;
	enum embkv_gpu_elem elem;
	uint32_t dim;
	float *d_out;
	uint8_t *d_found;
	void *stream;
};

/* After a round of READs into the slab: the GPU checks the range's
 * records, scatters the good ones, and the verdicts come back. */
static int land_check(void *arg, uint32_t first, uint32_t count_,
		      uint8_t *verdict)
{
	struct land_ctx *x = arg;
	int rc = ops->check_scatter_range(x->dd, first, count_, x->w->d_slab,
					  x->stride, x->payload, x->elem,
					  x->dim, x->d_out, x->d_found,
					  x->w->d_verdict, x->stream);

	if (!rc)
		rc = ops->d2h(verdict, x->w->d_verdict, count_, x->stream);
	if (!rc)
		rc = ops->stream_wait(x->stream);
	return rc;
}

static enum embkv_gpu_elem elem_of(enum embkv_dtype d)
{
	return d == EMBKV_DTYPE_F16 ? EMBKV_GPU_ELEM_F16
	       : d == EMBKV_DTYPE_BF16 ? EMBKV_GPU_ELEM_BF16
				       : EMBKV_GPU_ELEM_F32;
}

/* Rows of the caller's default (h_dflt, or zeros) with found 0 for the
 * distinct keys list[0..m) (infer-mode misses of a landing pull). */
static int scatter_default(const struct embkv_gpu_dedup *dd,
			   const uint32_t *list, uint32_t m, uint32_t dim,
			   const float *h_dflt, float *d_out,
			   uint8_t *d_found, void *stream)
{
	size_t rb = (size_t)dim * sizeof(float);
	float *h_rows = NULL, *d_rows = NULL;
	uint8_t *d_uf = NULL;
	uint32_t *d_l = NULL;
	int rc;

	if (!m)
		return 0;
	h_rows = malloc((size_t)m * rb);
	if (!h_rows)
		return -ENOMEM;
	for (uint32_t k = 0; k < m; k++) {
		if (h_dflt)
			memcpy(h_rows + (size_t)k * dim, h_dflt, rb);
		else
			memset(h_rows + (size_t)k * dim, 0, rb);
	}
	if (!(rc = ops->dev_alloc((void **)&d_rows, (size_t)m * rb, stream)) &&
	    !(rc = ops->dev_alloc((void **)&d_uf, m, stream)) &&
	    !(rc = ops->dev_alloc((void **)&d_l, (size_t)m * sizeof(*d_l),
				  stream)) &&
	    !(rc = ops->memset_dev(d_uf, 0, m, stream)) &&
	    !(rc = ops->h2d(d_rows, h_rows, (size_t)m * rb, stream)) &&
	    !(rc = ops->h2d(d_l, list, (size_t)m * sizeof(*d_l), stream)) &&
	    !(rc = ops->scatter_list(dd, d_l, m, d_rows, d_uf, dim, d_out,
				     d_found, stream)))
		rc = ops->stream_wait(stream); /* h_rows, list: pageable */
	ops->dev_free(d_rows, stream);
	ops->dev_free(d_uf, stream);
	ops->dev_free(d_l, stream);
	if (rc)
		ops->stream_wait(stream);
	free(h_rows);
	return rc;
}

/*
 * The keys one-sided READs tried and left (list[0..*n), distinct-key
 * indices): pulled by PULL_LAND a slab's worth at a time, their servers
 * writing the records into the slab, checked and scattered on the GPU
 * (check_scatter_list, found = the server's "was stored"); infer-mode
 * misses get the caller's default. list[0..*n) is then what is left for
 * the staging path: keys whose frame got no good answer (a server that
 * cannot take the slab or the op, an error, a move's retries past the
 * slab) and records that failed their check (seen before the NIC's write
 * was visible). Errors of the network only leave keys (the staging path
 * meets them again); a GPU error is returned. nf[k] (room for *n) for
 * the keys left: 1 when this pull inserted the key (its record failed
 * the check), whose "found" the staging pull must not report.
 */
static int land_rest(struct embkv_table_handle *t,
		     const struct embkv_gpu_dedup *dd, struct ws *w,
		     const struct land_ctx *x, enum embkv_mode mode,
		     const float *h_dflt, uint32_t *list, uint8_t *nf,
		     uint32_t *n)
{
	uint32_t lstride = (t->rec_len + 7u) & ~7u;
	uint32_t per = (uint32_t)(slab_bytes / lstride);
	uint32_t nin = *n, nleft = 0, ndef = 0, off, k, landed = 0;
	uint32_t *in = NULL, *slot_pos = NULL, *slist = NULL, *def = NULL;
	uint8_t *state = NULL, *sfound = NULL, *d_sfound = NULL;
	uint32_t *d_slist = NULL;
	uint64_t *rk = NULL;
	void *stream = x->stream;
	int rc = 0;

	if (per > nin)
		per = nin;
	in = malloc((size_t)nin * sizeof(*in));
	def = malloc((size_t)nin * sizeof(*def));
	slot_pos = malloc((size_t)per * sizeof(*slot_pos));
	slist = malloc((size_t)per * sizeof(*slist));
	rk = malloc((size_t)per * sizeof(*rk));
	state = malloc(per);
	sfound = malloc(per);
	if (!in || !def || !slot_pos || !slist || !rk || !state || !sfound) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(in, list, (size_t)nin * sizeof(*in));
	if ((rc = ops->dev_alloc((void **)&d_slist,
				 (size_t)per * sizeof(*d_slist), stream)) ||
	    (rc = ops->dev_alloc((void **)&d_sfound, per, stream)))
		goto out;
	for (off = 0; off < nin; off += per) {
		uint32_t cnt = nin - off < per ? nin - off : per, ns;
		struct embkv_land_rpc lr = {
			/* the whole slab: the registration's identity (read_region);
			 * slots are bounded by n (ops.c), so cnt of them */
			.base = w->d_slab, .bytes = slab_bytes,
			.stride = lstride, .id = w->slab_id, .reg = slab_reg,
			.slot_pos = slot_pos, .state = state,
		};
		struct embkv_batch_args a = {
			.t = t, .op = EMBKV_BATCH_PULL_LAND, .n = cnt,
			.keys = rk, .mode = mode, .land = &lr,
		};

		for (k = 0; k < cnt; k++) {
			rk[k] = w->h_keys[in[off + k]];
			slot_pos[k] = UINT32_MAX; /* no frame wrote it */
		}
		memset(state, EMBKV_LAND_UNANSWERED, cnt);
		memset(slist, 0, (size_t)cnt * sizeof(*slist));
		memset(sfound, 0, cnt);
		/* zeroed, and nothing of the GPU's runs on the slab while
		 * the servers write into it */
		if ((rc = ops->memset_dev(w->d_slab, 0,
					  (size_t)cnt * lstride, stream)) ||
		    (rc = ops->stream_wait(stream)))
			goto out;
		(void)embkv_batch_run(&a); /* what fails stays unanswered */
		ns = lr.nslots;
		for (k = 0; k < ns; k++) {
			if (slot_pos[k] == UINT32_MAX)
				continue;
			slist[k] = in[off + slot_pos[k]];
			sfound[k] = state[slot_pos[k]] == EMBKV_WIRE_LAND_FOUND;
		}
		if (ns &&
		    ((rc = ops->h2d(d_slist, slist, (size_t)ns * sizeof(*slist),
				    stream)) ||
		     (rc = ops->h2d(d_sfound, sfound, ns, stream))))
			goto out;
		/* each run of written slots (a failed frame's slots lie
		 * between runs, unwritten) */
		for (k = 0; k < ns;) {
			uint32_t k1;

			if (slot_pos[k] == UINT32_MAX) {
				k++;
				continue;
			}
			for (k1 = k; k1 < ns && slot_pos[k1] != UINT32_MAX; k1++)
				;
			rc = ops->check_scatter_list(
				dd, d_slist + k, k1 - k,
				(uint8_t *)w->d_slab + (size_t)k * lstride,
				lstride, x->payload, x->elem, x->dim,
				d_sfound + k, x->d_out, x->d_found,
				w->d_verdict + k, stream);
			if (rc)
				goto out;
			k = k1;
		}
		if (ns && ((rc = ops->d2h(w->h_verdict, w->d_verdict, ns,
					  stream)) ||
			   (rc = ops->stream_wait(stream))))
			goto out;
		for (k = 0; k < ns; k++) {
			uint8_t st;

			if (slot_pos[k] == UINT32_MAX)
				continue; /* a slot of a frame that failed */
			st = state[slot_pos[k]];
			if (st == EMBKV_WIRE_LAND_NONE && mode == EMBKV_MODE_INFER) {
				def[ndef++] = slist[k];
			} else if (st == EMBKV_WIRE_LAND_NONE || w->h_verdict[k]) {
				nf[nleft] = st == EMBKV_WIRE_LAND_INSERTED ||
					    st == EMBKV_WIRE_LAND_INIT;
				list[nleft++] = slist[k];
			} else {
				landed++;
			}
		}
		for (k = 0; k < cnt; k++)
			if (state[k] == EMBKV_LAND_UNANSWERED) {
				nf[nleft] = 0;
				list[nleft++] = in[off + k];
			}
	}
	rc = scatter_default(dd, def, ndef, x->dim, h_dflt, x->d_out,
			     x->d_found, stream);
	count(&stats.direct_landed, landed + ndef);
	*n = nleft;
out:
	ops->dev_free(d_slist, stream);
	ops->dev_free(d_sfound, stream);
	if (rc)
		ops->stream_wait(stream);
	free(in);
	free(def);
	free(slot_pos);
	free(slist);
	free(rk);
	free(state);
	free(sfound);
	return rc;
}

/*
 * The GPUDirect pull: the distinct keys a slab's worth at a time, the
 * slab zeroed (and the stream drained, so neither the zeroing nor the
 * previous range's check can run after the NIC's writes), READ
 * one-sided into it and checked there (client/onesided.c's
 * embkv_onesided_land); the keys the READs left are pulled into the slab
 * by PULL_LAND (land_rest), and what is left then takes the staging path
 * and scatter_list.
 */
static int pull_direct(struct embkv_table_handle *t,
		       const struct embkv_gpu_dedup *dd, struct ws *w,
		       float *d_out, uint8_t *d_found, enum embkv_mode mode,
		       const float *h_dflt, void *stream)
{
	uint32_t dim = t->attr.dim, first, nrest = 0, got, per, k;
	uint32_t nun = 0, gotu, *untried;
	uint8_t *nf = NULL;
	struct land_ctx x = {
		.dd = dd, .w = w, .stride = ((size_t)t->rec_len + 63) & ~(size_t)63,
		.payload = t->payload_bytes, .elem = elem_of(t->attr.dtype),
		.dim = dim, .d_out = d_out, .d_found = d_found,
		.stream = stream,
	};
	struct embkv_os_landing land;
	uint64_t *rk = NULL;
	float *d_rows = NULL;
	uint8_t *d_ufound = NULL;
	uint32_t *d_list = NULL;
	int rc = slab_get(w, dd->nu);

	if (rc)
		return rc;
	per = (uint32_t)(slab_bytes / x.stride);
	land = (struct embkv_os_landing){
		.base = w->d_slab, .bytes = slab_bytes, .stride = x.stride,
		.id = w->slab_id, .reg = slab_reg, .check = land_check,
		.arg = &x, .verdict = w->h_verdict,
	};
	untried = malloc((size_t)dd->nu * sizeof(*untried));
	if (!untried)
		return -ENOMEM;
	for (first = 0; first < dd->nu; first += per) {
		uint32_t cnt = dd->nu - first < per ? dd->nu - first : per;

		if ((rc = ops->memset_dev(w->d_slab, 0, (size_t)cnt * x.stride,
					  stream)) ||
		    (rc = ops->stream_wait(stream))) {
			free(untried);
			return rc;
		}
		embkv_onesided_land(t, w->h_keys, first, cnt, &land,
				    w->h_list + nrest, &got, untried + nun,
				    &gotu);
		nrest += got;
		nun += gotu;
	}
	count(&stats.direct_keys, dd->nu - nrest - nun);
	if (nrest) {
		nf = malloc(nrest);
		rc = nf ? land_rest(t, dd, w, &x, mode, h_dflt, w->h_list, nf,
				    &nrest)
			: -ENOMEM;
		if (rc) {
			free(nf);
			free(untried);
			return rc;
		}
	}
	count(&stats.direct_rest, nrest + nun);
	/* the list for scatter_list: tried keys, then untried ones */
	memcpy(w->h_list + nrest, untried, (size_t)nun * sizeof(*untried));
	free(untried);
	if (!nrest && !nun) {
		free(nf);
		return 0;
	}
	rk = malloc(((size_t)nrest + nun) * sizeof(*rk));
	if (!rk) {
		free(nf);
		return -ENOMEM;
	}
	for (k = 0; k < nrest + nun; k++)
		rk[k] = w->h_keys[w->h_list[k]];
	/* keys READs were tried for go by RPC only; the others (their
	 * server could not take the slab) may still be READ into host
	 * memory by the host path */
	if (!(rc = ops->dev_alloc((void **)&d_rows, ((size_t)nrest + nun) *
				  dim * sizeof(float), stream)) &&
	    !(rc = ops->dev_alloc((void **)&d_ufound, (size_t)nrest + nun,
				  stream)) &&
	    !(rc = ops->dev_alloc((void **)&d_list, ((size_t)nrest + nun) *
				  sizeof(uint32_t), stream)) &&
	    !(rc = ops->h2d(d_list, w->h_list, ((size_t)nrest + nun) *
			    sizeof(uint32_t), stream)) &&
	    !(rc = stage_rows(t, w, rk, nrest, d_rows, d_ufound, mode, h_dflt,
			      1, nf, stream)) &&
	    !(rc = stage_rows(t, w, rk + nrest, nun,
			      d_rows + (size_t)nrest * dim, d_ufound + nrest,
			      mode, h_dflt, 0, NULL, stream)))
		rc = ops->scatter_list(dd, d_list, nrest + nun, d_rows,
				       d_ufound, dim, d_out, d_found, stream);
	ops->dev_free(d_rows, stream);
	ops->dev_free(d_ufound, stream);
	ops->dev_free(d_list, stream);
	/* stage_rows' last embkv_pull has returned: rk is no longer read */
	free(rk);
	free(nf);
	return rc;
}

static int pull_device(struct embkv_table_handle *t, uint32_t n,
		       const uint64_t *d_keys, float *d_out, uint8_t *d_found,
		       enum embkv_mode mode, const float *d_dflt, void *stream)
{
	struct embkv_gpu_dedup dd;
	struct ws *w;
	float *d_urows = NULL;
	uint8_t *d_ufound = NULL;
	const float *h_dflt = NULL;
	uint32_t dim;
	int rc = ready();

	if (rc)
		return rc;
	if (!t || (n && (!d_keys || !d_out)))
		return -EINVAL;
	if (!n)
		return 0;
	dim = t->attr.dim;
	rc = ws_get(n, dim, &w);
	if (rc)
		return rc;
	rc = ops->dedup(d_keys, n, &dd, w->h_keys, stream);
	if (rc)
		goto put;
	count(&stats.pulls, 1);
	count(&stats.keys, n);
	count(&stats.distinct, dd.nu);
	if (d_dflt) {
		rc = ops->d2h(w->h_dflt, d_dflt, (size_t)dim * sizeof(float),
			      stream);
		if (!rc)
			rc = ops->stream_wait(stream);
		if (rc)
			goto free_dd;
		h_dflt = w->h_dflt;
	}
	if (load_info.path != EMBKV_GPU_PATH_STAGING && t->os) {
		rc = pull_direct(t, &dd, w, d_out, d_found, mode, h_dflt,
				 stream);
		goto free_dd;
	}
	if ((rc = ops->dev_alloc((void **)&d_urows,
				 (size_t)dd.nu * dim * sizeof(float), stream)) ||
	    (rc = ops->dev_alloc((void **)&d_ufound, dd.nu, stream)))
		goto free_dd;
	rc = stage_rows(t, w, w->h_keys, dd.nu, d_urows, d_ufound, mode, h_dflt,
			0, NULL, stream);
	if (!rc)
		rc = ops->scatter(&dd, d_urows, d_ufound, dim, d_out, d_found,
				  stream);
free_dd:
	ops->dev_free(d_urows, stream);
	ops->dev_free(d_ufound, stream);
	ops->dedup_free(&dd, stream);
put:
	ws_put(w, stream);
	return rc;
}

/* The GPUDirect push ------------------------------------------------------------ */

struct push_ctx {
	struct ws *w;
	const float *d_rows;    /* the chunk's coalesced rows, key order */
	uint32_t dim;
	void *stream;
};

/* Rows pos[0..m) of the chunk into the slab, row k at slab + k * dim
 * floats: scatter through pos as its inverse is a gather. Done (the
 * stream drained) when it returns: the SENDs read the slab next. */
static int push_gather(void *arg, const uint32_t *pos, uint32_t m)
{
	struct push_ctx *x = arg;
	struct embkv_gpu_dedup by = { 0 };
	uint32_t *d_pos = NULL;
	int rc;

	if (!m)
		return 0;
	if (!(rc = ops->dev_alloc((void **)&d_pos, (size_t)m * sizeof(*d_pos),
				  x->stream)) &&
	    !(rc = ops->h2d(d_pos, pos, (size_t)m * sizeof(*d_pos),
			    x->stream))) {
		by.n = m;
		by.inverse = d_pos;
		rc = ops->scatter(&by, x->d_rows, NULL, x->dim,
				  (float *)x->w->d_slab, NULL, x->stream);
	}
	ops->dev_free(d_pos, x->stream);
	if (!rc)
		rc = ops->stream_wait(x->stream);
	else
		ops->stream_wait(x->stream);
	return rc;
}

/*
 * The GPUDirect push: the coalesced rows d_ug of the distinct keys leave
 * device memory. A slab's worth of keys at a time, each round's rows are
 * gathered into the slab in frame order (push_gather), and each PUSH
 * frame's SEND takes its keys from host memory and its rows from the slab
 * (send_gather): nothing of the rows crosses to the host. Keys of a
 * server whose connection cannot take the slab were never sent: they are
 * pushed from host memory (gathered, copied back a pinned chunk at a
 * time, embkv_push). An error
 * after a frame was sent ends the call as a host push's does (a push is
 * applied at most once). *total: keys applied.
 */
static int push_direct(struct embkv_table_handle *t,
		       const struct embkv_gpu_dedup *dd, struct ws *w,
		       const float *d_ug, uint32_t *total, void *stream)
{
	uint32_t dim = t->attr.dim, per, off, k;
	size_t row = (size_t)dim * sizeof(float);
	uint8_t *unsent = NULL;
	uint32_t *pos = NULL;
	uint64_t *rk = NULL;
	int rc = slab_get(w, dd->nu);

	if (rc)
		return rc;
	per = (uint32_t)(slab_bytes / row);
	if (per > dd->nu)
		per = dd->nu;
	unsent = malloc(per);
	pos = malloc((size_t)per * sizeof(*pos));
	rk = malloc((size_t)per * sizeof(*rk));
	if (!unsent || !pos || !rk) {
		rc = -ENOMEM;
		goto out;
	}
	for (off = 0; off < dd->nu && !rc; off += per) {
		uint32_t cnt = dd->nu - off < per ? dd->nu - off : per;
		uint32_t got = 0, m = 0;
		struct push_ctx x = {
			.w = w, .d_rows = d_ug + (size_t)off * dim, .dim = dim,
			.stream = stream,
		};
		struct embkv_push_dev dev = {
			.base = w->d_slab, .bytes = slab_bytes,
			.id = w->slab_id, .reg = slab_reg,
			.gather = push_gather, .arg = &x, .unsent = unsent,
		};
		struct embkv_batch_args a = {
			.t = t, .op = EMBKV_BATCH_PUSH_DEV, .n = cnt,
			.keys = w->h_keys + off, .dev = &dev, .done = &got,
		};

		memset(unsent, 0, cnt);
		rc = embkv_batch_run(&a);
		*total += got;
		if (rc)
			break;
		for (k = 0; k < cnt; k++)
			if (unsent[k]) {
				pos[m] = k;
				rk[m++] = w->h_keys[off + k];
			}
		count(&stats.direct_pushed, cnt - m);
		if (!m)
			continue;
		/* the keys never sent: their rows through a pinned staging
		 * buffer, a chunk at a time */
		count(&stats.direct_rest, m);
		if ((rc = buf_wait(w, 0)))
			break;
		for (k = 0; k < m && !rc; k += w->chunk_rows) {
			uint32_t c = m - k < w->chunk_rows ? m - k
							   : w->chunk_rows;

			if (!(rc = push_gather(&x, pos + k, c)) &&
			    !(rc = ops->d2h(w->h_rows[0], w->d_slab,
					    (size_t)c * row, stream)) &&
			    !(rc = ops->stream_wait(stream))) {
				got = 0;
				rc = embkv_push(t, c, rk + k, w->h_rows[0], &got);
				*total += got;
				count(&stats.d2h, (uint64_t)c * row);
				count(&stats.chunks, 1);
			}
		}
	}
out:
	free(unsent);
	free(pos);
	free(rk);
	return rc;
}

static int push_device(struct embkv_table_handle *t, uint32_t n,
		       const uint64_t *d_keys, const float *d_grads,
		       uint32_t *applied, void *stream)
{
	struct embkv_gpu_dedup dd;
	struct ws *w;
	float *d_ug = NULL;
	uint32_t dim, off, k, total = 0, nchunks;
	size_t row;
	int rc = ready();

	if (applied)
		*applied = 0;
	if (rc)
		return rc;
	if (!t || (n && (!d_keys || !d_grads)))
		return -EINVAL;
	if (!n)
		return 0;
	dim = t->attr.dim;
	row = (size_t)dim * sizeof(float);
	rc = ws_get(n, dim, &w);
	if (rc)
		return rc;
	rc = ops->dedup(d_keys, n, &dd, w->h_keys, stream);
	if (rc)
		goto put;
	count(&stats.pushes, 1);
	count(&stats.keys, n);
	count(&stats.distinct, dd.nu);
	if ((rc = ops->dev_alloc((void **)&d_ug, dd.nu * row, stream)) ||
	    (rc = ops->coalesce(&dd, d_grads, dim, d_ug, stream)))
		goto free_dd;
	if (load_info.path != EMBKV_GPU_PATH_STAGING && t->os) {
		rc = push_direct(t, &dd, w, d_ug, &total, stream);
		if (applied)
			*applied = total;
		goto free_dd;
	}
	nchunks = (dd.nu + w->chunk_rows - 1) / w->chunk_rows;
	/* chunk k goes to buffer k & 1, copied one chunk ahead of its push */
	for (k = 0; k < nchunks && k < 2 && !rc; k++) {
		off = k * w->chunk_rows;
		uint32_t cnt = dd.nu - off < w->chunk_rows ? dd.nu - off
							     : w->chunk_rows;

		rc = ops->d2h(w->h_rows[k], d_ug + (size_t)off * dim,
			      cnt * row, stream);
		if (!rc)
			rc = ops->event_record(w->ev[k], stream);
		w->ev_used[k] = !rc;
	}
	for (k = 0; k < nchunks && !rc; k++) {
		int b = k & 1;
		uint32_t got = 0, cnt;

		off = k * w->chunk_rows;
		cnt = dd.nu - off < w->chunk_rows ? dd.nu - off : w->chunk_rows;
		if ((rc = buf_wait(w, b)))
			break;
		rc = embkv_push(t, cnt, w->h_keys + off, w->h_rows[b], &got);
		total += got;
		count(&stats.chunks, 1);
		count(&stats.d2h, (uint64_t)cnt * row);
		if (rc || k + 2 >= nchunks)
			continue;
		off = (k + 2) * w->chunk_rows;
		cnt = dd.nu - off < w->chunk_rows ? dd.nu - off : w->chunk_rows;
		rc = ops->d2h(w->h_rows[b], d_ug + (size_t)off * dim,
			      cnt * row, stream);
		if (!rc)
			rc = ops->event_record(w->ev[b], stream);
		w->ev_used[b] = !rc;
	}
	if (applied)
		*applied = total;
free_dd:
	ops->dev_free(d_ug, stream);
	ops->dedup_free(&dd, stream);
put:
	ws_put(w, stream);
	return rc;
}

int embkv_pull_device(struct embkv_table_handle *t, uint32_t n,
		      const uint64_t *d_keys, float *d_out, uint8_t *d_found,
		      enum embkv_mode mode, const float *d_dflt, void *stream)
{
	return note_err(pull_device(t, n, d_keys, d_out, d_found, mode,
				    d_dflt, stream));
}

int embkv_push_device(struct embkv_table_handle *t, uint32_t n,
		      const uint64_t *d_keys, const float *d_grads,
		      uint32_t *applied, void *stream)
{
	return note_err(push_device(t, n, d_keys, d_grads, applied, stream));
}

/* Async forms: the synchronous call on the client's async workers. */
struct embkv_gpu_op {
	int dev;                /* the caller's CUDA device */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done, status, push;
	struct embkv_table_handle *t;
	uint32_t n, applied;
	const uint64_t *keys;
	float *out;
	const float *grads;
	uint8_t *found;
	enum embkv_mode mode;
	const float *dflt;
	void *stream;
	char err[160];          /* the worker's error text */
};

static void op_run(void *arg)
{
	struct embkv_gpu_op *op = arg;
	int st;

	tl_err[0] = '\0'; /* the worker's text from an earlier op is not this one's */
	st = ops->device_set(op->dev);
	if (!st)
		st = op->push
			? embkv_push_device(op->t, op->n, op->keys, op->grads,
					    &op->applied, op->stream)
			: embkv_pull_device(op->t, op->n, op->keys, op->out,
					    op->found, op->mode, op->dflt,
					    op->stream);
	else
		note_err(st);
	snprintf(op->err, sizeof(op->err), "%s", st ? tl_err : "");

	pthread_mutex_lock(&op->lock);
	op->status = st;
	op->done = 1;
	pthread_cond_signal(&op->cond);
	pthread_mutex_unlock(&op->lock);
}

static int op_start(struct embkv_gpu_op *tmpl, struct embkv_gpu_op **out)
{
	struct embkv_gpu_op *op;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	rc = ready();
	if (rc)
		return rc;
	/* cudaStreamPerThread names the calling thread's own stream: on
	 * the worker it would be another stream, unordered with the
	 * caller's work */
	if (!tmpl->t || tmpl->stream == (void *)0x2)
		return -EINVAL;
	op = malloc(sizeof(*op));
	if (!op)
		return -ENOMEM;
	*op = *tmpl;
	rc = ops->device_get(&op->dev);
	if (rc) {
		free(op);
		return rc;
	}
	pthread_mutex_init(&op->lock, NULL);
	pthread_cond_init(&op->cond, NULL);
	rc = embkv_async_job(op->t->c, op_run, op);
	if (rc) {
		pthread_cond_destroy(&op->cond);
		pthread_mutex_destroy(&op->lock);
		free(op);
		return rc;
	}
	*out = op;
	return 0;
}

int embkv_pull_device_async(struct embkv_table_handle *t, uint32_t n,
			    const uint64_t *d_keys, float *d_out,
			    uint8_t *d_found, enum embkv_mode mode,
			    const float *d_dflt, void *stream,
			    struct embkv_gpu_op **op)
{
	struct embkv_gpu_op o = {
		.t = t, .n = n, .keys = d_keys, .out = d_out,
		.found = d_found, .mode = mode, .dflt = d_dflt,
		.stream = stream,
	};

	return op_start(&o, op);
}

int embkv_push_device_async(struct embkv_table_handle *t, uint32_t n,
			    const uint64_t *d_keys, const float *d_grads,
			    void *stream, struct embkv_gpu_op **op)
{
	struct embkv_gpu_op o = {
		.t = t, .n = n, .keys = d_keys, .grads = d_grads,
		.stream = stream, .push = 1,
	};

	return op_start(&o, op);
}

int embkv_gpu_op_wait(struct embkv_gpu_op *op, uint32_t *applied)
{
	int st;

	if (!op)
		return -EINVAL;
	pthread_mutex_lock(&op->lock);
	while (!op->done)
		pthread_cond_wait(&op->cond, &op->lock);
	pthread_mutex_unlock(&op->lock);
	st = op->status;
	if (st)
		snprintf(tl_err, sizeof(tl_err), "%s", op->err);
	if (applied)
		*applied = op->applied;
	pthread_cond_destroy(&op->cond);
	pthread_mutex_destroy(&op->lock);
	free(op);
	return st;
}
