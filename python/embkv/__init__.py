"""
embkv for Python: a client of an embkv cluster over libembkv (ctypes).

    import embkv
    with embkv.Client(["tcp://127.0.0.1:7000"]) as c:
        c.create_table("emb", dim=16, optimizer="adagrad", lr=0.05)
        t = c.open("emb")
        rows = t.pull(np.array([1, 2, 3], dtype=np.uint64))   # (3, 16) f32
        t.push(keys, grads)

Arrays: keys are numpy arrays (any integer dtype; uint64 or int64 travel
without a copy, int64 reinterpreted as the same 64 bits) or torch int64
tensors; rows are float32. A contiguous CPU array or tensor of the right
dtype is handed to the library as it is (no copy); anything else is
converted first (inputs) or refused (an `out=` buffer, which must be
written in place). Torch inputs give torch outputs, numpy inputs numpy.
CUDA tensors given to these calls are copied through host memory; the
device API (rows straight into and out of GPU memory) is embkv.gpu,
which embkv.torch uses for CUDA keys when its probe says it works.

Every failing call raises EmbkvError, whose .status is the library's code
and whose message carries embkv_strerror()'s text; bad Python arguments
raise ValueError or TypeError before anything is sent. The GIL is released
during every library call (ctypes.CDLL), so threads overlap.
"""
import ctypes
import re
import threading
from ctypes import byref, c_uint32, c_uint64, c_void_p

import numpy as np

from . import _lib
from ._lib import lib, has, strerror

try:
    import torch as _torch
except ImportError:  # numpy alone is enough for the client
    _torch = None

__all__ = ["Client", "Table", "Op", "EmbkvError", "strerror", "has",
           "TRAIN", "INFER"]

TRAIN = 0
INFER = 1

# Status codes (include/embkv/embkv.h).
ENOTFOUND = -4000
EREJECTED = -4002
EFULL = -4003
ENOTABLE = -4004
ETABLEEXISTS = -4005
ESTALE = -4006
EPROTO = -4007
EDIM = -4010
ELIMIT = -4011
EOPCODE = -4012
EDISCONNECTED = -4013
ETIMEDOUT = -4014
ESERVER = -4015

_U32_MAX = (1 << 32) - 1
_NAME_RE = re.compile(rb"[A-Za-z0-9_.-]+")


class EmbkvError(RuntimeError):
    """A libembkv call failed: .status (negative code), .op (the call)."""

    def __init__(self, status, op, detail=None):
        self.status = int(status)
        self.op = op
        msg = "%s: %s (status %d)" % (op, strerror(status), self.status)
        if detail:
            msg += ": " + detail
        super().__init__(msg)


def _check(rc, op, detail=None):
    if rc < 0:
        raise EmbkvError(rc, op, detail)
    return rc


# Arrays ---------------------------------------------------------------------

def _is_torch(x):
    return _torch is not None and isinstance(x, _torch.Tensor)


class _Keys:
    """Keys as a contiguous 64-bit buffer: .ptr, .n, and what keeps the
    memory alive (.obj)."""
    __slots__ = ("obj", "ptr", "n", "torch")

    def __init__(self, keys):
        self.torch = _is_torch(keys)
        if self.torch:
            t = keys.detach()
            if t.device.type != "cpu":
                t = t.cpu()
            if t.dtype != _torch.int64:
                if t.dtype.is_floating_point or t.dtype == _torch.bool:
                    raise TypeError("embkv: keys must be integers, not %s"
                                    % t.dtype)
                t = t.to(_torch.int64)
            t = t.contiguous().reshape(-1)
            self.obj, self.n = t, t.numel()
            self.ptr = t.data_ptr() if self.n else 0
        else:
            a = np.asarray(keys)
            if a.size == 0:
                a = a.astype(np.uint64)
            if a.dtype.kind not in "iu":
                raise TypeError("embkv: keys must be integers, not %s"
                                % a.dtype)
            a = np.ascontiguousarray(a).reshape(-1)
            if a.dtype == np.int64:
                a = a.view(np.uint64)
            elif a.dtype != np.uint64:
                a = a.astype(np.uint64)
            self.obj, self.n = a, a.size
            self.ptr = a.ctypes.data if self.n else 0
        if self.n > _U32_MAX:
            raise ValueError("embkv: %d keys, at most %d per call"
                             % (self.n, _U32_MAX))


def _rows_in(x, n, dim, what):
    """An input of n x dim float32 rows: (pointer, object keeping it)."""
    if _is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.to(_torch.float32).contiguous()
        if t.numel() != n * dim:
            raise ValueError("embkv: %s has %d values, %d keys x dim %d "
                             "need %d" % (what, t.numel(), n, dim, n * dim))
        return t.data_ptr(), t
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.size != n * dim:
        raise ValueError("embkv: %s has %d values, %d keys x dim %d need %d"
                         % (what, a.size, n, dim, n * dim))
    return a.ctypes.data, a


def _rows_out(out, n, dim, as_torch):
    """The buffer a pull writes: the caller's (used in place: contiguous
    float32 CPU memory of n x dim values, else ValueError) or a new one."""
    if out is None:
        if as_torch:
            out = _torch.empty((n, dim), dtype=_torch.float32)
        else:
            out = np.empty((n, dim), dtype=np.float32)
    if _is_torch(out):
        if (out.dtype != _torch.float32 or out.device.type != "cpu"
                or not out.is_contiguous()):
            raise ValueError("embkv: out must be a contiguous float32 CPU "
                             "tensor (it is written in place)")
        if out.numel() != n * dim:
            raise ValueError("embkv: out has %d values, need %d"
                             % (out.numel(), n * dim))
        return out.data_ptr() if n else 0, out
    if not isinstance(out, np.ndarray):
        raise TypeError("embkv: out must be a numpy array or torch tensor")
    if (out.dtype != np.float32 or not out.flags.c_contiguous
            or not out.flags.writeable):
        raise ValueError("embkv: out must be a writable C-contiguous "
                         "float32 array (it is written in place)")
    if out.size != n * dim:
        raise ValueError("embkv: out has %d values, need %d"
                         % (out.size, n * dim))
    return out.ctypes.data, out


def _flags_out(n, as_torch):
    if as_torch:
        f = _torch.empty(n, dtype=_torch.uint8)
        return f.data_ptr() if n else 0, f
    f = np.empty(n, dtype=np.uint8)
    return f.ctypes.data, f


def _bool(f):
    return f.bool() if _is_torch(f) else f.astype(bool)


def _name(name):
    b = name.encode() if isinstance(name, str) else bytes(name)
    if (not b or len(b) >= _lib.TABLE_NAME_MAX
            or not _NAME_RE.fullmatch(b)):
        raise ValueError("embkv: table name %r: 1..%d of A-Z a-z 0-9 _ - ."
                         % (name, _lib.TABLE_NAME_MAX - 1))
    return b


def _mode(mode):
    if mode in (TRAIN, "train"):
        return TRAIN
    if mode in (INFER, "infer"):
        return INFER
    raise ValueError("embkv: mode must be 'train' or 'infer', not %r"
                     % (mode,))


# Client -----------------------------------------------------------------------

class Client:
    """A client of one embkv cluster (thread-safe; use from any thread).

    servers: one address or a list ("tcp://host:port"); one member is
    enough, the others are learned. The other arguments are those of
    struct embkv_client_attr (0 or None: the library's default).
    """

    def __init__(self, servers, token=None, connect_timeout_ms=0,
                 request_timeout_ms=0, max_retries=None,
                 max_conns_per_server=0, async_threads=0, allow_down=False):
        if isinstance(servers, (str, bytes)):
            servers = [servers]
        servers = [s.encode() if isinstance(s, str) else bytes(s)
                   for s in servers]
        if not servers:
            raise ValueError("embkv: no servers given")
        self._handle = None
        self._tables = set()
        self._lock = threading.Lock()
        attr = _lib.ClientAttr()
        lib.embkv_client_attr_init(byref(attr))
        arr = (ctypes.c_char_p * len(servers))(*servers)
        attr.servers = arr
        attr.nservers = len(servers)
        attr.token = token.encode() if isinstance(token, str) else token
        attr.connect_timeout_ms = connect_timeout_ms
        attr.request_timeout_ms = request_timeout_ms
        if max_retries is not None:
            attr.max_retries = max_retries
        attr.max_conns_per_server = max_conns_per_server
        attr.async_threads = async_threads
        attr.flags = 1 if allow_down else 0
        h = c_void_p()
        _check(lib.embkv_client_create(byref(attr), byref(h)),
               "embkv_client_create",
               "servers " + ", ".join(s.decode() for s in servers))
        self._handle = h

    def _h(self):
        if self._handle is None:
            raise ValueError("embkv: client is closed")
        return self._handle

    def close(self):
        """Closes the client's tables (waiting for their async operations)
        and then the client. Idempotent."""
        if self._handle is None:
            return
        for t in list(self._tables):
            t.close()
        lib.embkv_client_destroy(self._handle)
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def servers(self):
        h = self._h()
        n = lib.embkv_client_server_count(h)
        return [lib.embkv_client_server_addr(h, i).decode() for i in range(n)]

    def create_table(self, name, dim=64, partitions=None, capacity=None,
                     optimizer="sgd", lr=None, eps=None, initial_accum=None,
                     beta1=None, beta2=None, l1=None, l2=None, ftrl_beta=None,
                     init=None, init_a=None, init_b=None, seed=None,
                     admit_after=None, hash_seed=None, dtype="fp32",
                     rounding="stochastic", state_dtype="fp32"):
        """Creates a table on every server (embkv_table_create_remote).
        Unset arguments keep embkv_table_attr_init()'s defaults. dtype:
        the rows' storage ("fp32", "fp16", "bf16"); rounding: how a 16-bit
        table writes optimizer updates back ("stochastic" or "nearest");
        state_dtype: "bf16" stores Adagrad/Adam state as bf16."""
        a = _lib.TableAttr()
        lib.embkv_table_attr_init(byref(a))
        a.name = _name(name)
        a.dim = dim
        dt = lib.embkv_dtype_parse(dtype.encode())
        if dt < 0:
            raise ValueError("embkv: unknown dtype %r" % (dtype,))
        a.dtype = dt
        if rounding not in ("stochastic", "nearest"):
            raise ValueError("embkv: rounding %r: stochastic or nearest"
                             % (rounding,))
        if state_dtype not in ("fp32", "bf16"):
            raise ValueError("embkv: state_dtype %r: fp32 or bf16"
                             % (state_dtype,))
        a.flags = ((1 if rounding == "nearest" else 0) |
                   (2 if state_dtype == "bf16" else 0))
        opt = lib.embkv_optimizer_parse(optimizer.encode())
        if opt < 0:
            raise ValueError("embkv: unknown optimizer %r" % (optimizer,))
        a.opt.type = opt
        for field, v in (("lr", lr), ("eps", eps),
                         ("initial_accum", initial_accum), ("beta1", beta1),
                         ("beta2", beta2), ("l1", l1), ("l2", l2),
                         ("ftrl_beta", ftrl_beta)):
            if v is not None:
                setattr(a.opt, field, v)
        if init is not None:
            it = lib.embkv_init_parse(init.encode())
            if it < 0:
                raise ValueError("embkv: unknown initializer %r" % (init,))
            a.init.type = it
        for obj, field, v in ((a, "partitions", partitions),
                              (a, "capacity", capacity),
                              (a.init, "a", init_a), (a.init, "b", init_b),
                              (a.init, "seed", seed),
                              (a, "admit_after", admit_after),
                              (a, "hash_seed", hash_seed)):
            if v is not None:
                setattr(obj, field, v)
        rc = lib.embkv_table_attr_check(byref(a))
        if rc < 0:
            raise EmbkvError(rc, "embkv_table_attr_check",
                             "table %r dim %d partitions %d" %
                             (name, a.dim, a.partitions))
        _check(lib.embkv_table_create_remote(self._h(), byref(a)),
               "embkv_table_create_remote", "table %r" % (name,))

    def drop_table(self, name):
        _check(lib.embkv_table_drop_remote(self._h(), _name(name)),
               "embkv_table_drop_remote", "table %r" % (name,))

    def list_tables(self):
        """[(name, dim)] of every table."""
        h = self._h()
        count = c_uint32()
        cap = 64
        while True:
            arr = (_lib.TableSummary * cap)()
            _check(lib.embkv_table_list(h, arr, cap, byref(count)),
                   "embkv_table_list")
            if count.value <= cap:
                return [(arr[i].name.decode(), arr[i].dim)
                        for i in range(count.value)]
            cap = count.value

    def open(self, name):
        """Opens a table: a Table (close it, or close the client)."""
        h = c_void_p()
        _check(lib.embkv_table_open(self._h(), _name(name), byref(h)),
               "embkv_table_open", "table %r" % (name,))
        t = Table(self, h, name)
        with self._lock:
            self._tables.add(t)
        return t

    def _multi(self, entries, push, mode):
        if not has("embkv_pull_multi"):
            raise NotImplementedError("embkv: this libembkv has no "
                                      "embkv_pull_multi")
        reqs = (_lib.MultiReq * max(1, len(entries)))()
        keep, results = [], []
        for i, e in enumerate(entries):
            t, keys = e[0], e[1]
            if not isinstance(t, Table):
                raise TypeError("embkv: entry %d: (Table, keys%s)"
                                % (i, ", grads" if push else ""))
            k = _Keys(keys)
            if push:
                rptr, rkeep = _rows_in(e[2], k.n, t.dim, "grads")
                results.append(None)
            else:
                rptr, rkeep = _rows_out(None, k.n, t.dim, k.torch)
                results.append(rkeep)
            keep.append((k, rkeep))
            reqs[i].t = t._h()
            reqs[i].n = k.n
            reqs[i].keys = k.ptr or None
            reqs[i].rows = rptr or None
        if not entries:
            return []
        if push:
            rc = lib.embkv_push_multi(reqs, len(entries))
        else:
            rc = lib.embkv_pull_multi(reqs, len(entries), mode)
        if rc < 0:
            bad = [i for i in range(len(entries)) if reqs[i].status < 0]
            i = bad[0] if bad else 0
            raise EmbkvError(reqs[i].status or rc,
                             "embkv_push_multi" if push
                             else "embkv_pull_multi",
                             "entry %d, table %r" % (i, entries[i][0].name))
        del keep
        if push:
            return [reqs[i].done for i in range(len(entries))]
        return results

    def pull_multi(self, entries, mode="train"):
        """Pulls several tables in one call: entries [(table, keys)] ->
        [rows]. Every table's keys go to each server in one request
        (MULTI_PULL: one round trip per server, embkv_pull_multi)."""
        return self._multi(list(entries), False, _mode(mode))

    def push_multi(self, entries):
        """Pushes several tables in one call: entries [(table, keys,
        grads)] -> [keys applied per entry]. One request per server
        (MULTI_PUSH, embkv_push_multi)."""
        return self._multi(list(entries), True, TRAIN)

    def stats(self):
        """[(server, table or None, counter, value)] from every server."""
        out = []

        def cb(_ctx, server, table, name, value):
            out.append((server, table.decode() if table else None,
                        name.decode(), value))

        fn = _lib.STATS_FN(cb)
        _check(lib.embkv_stats(self._h(), fn, None), "embkv_stats")
        return out


# Tables -----------------------------------------------------------------------

class Table:
    """An open table (Client.open). Thread-safe like the client."""

    def __init__(self, client, handle, name):
        self._client = client
        self._handle = handle
        self.name = name
        a = lib.embkv_table_attr_get(handle).contents
        self.dim = a.dim
        self.partitions = a.partitions
        self.capacity = a.capacity
        self.optimizer = lib.embkv_optimizer_name(a.opt.type).decode()
        self.lr = a.opt.lr
        self.dtype = lib.embkv_dtype_name(a.dtype).decode()
        self._ops = set()
        self._lock = threading.Lock()

    def _h(self):
        if self._handle is None:
            raise ValueError("embkv: table %r is closed" % (self.name,))
        return self._handle

    def close(self):
        """Waits for this table's pending async operations, then closes."""
        if self._handle is None:
            return
        for op in list(self._ops):
            try:
                op.wait()
            except Exception:
                pass
        lib.embkv_table_close(self._handle)
        self._handle = None
        with self._client._lock:
            self._client._tables.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def attr(self):
        """The table's attributes (a _lib.TableAttr copy)."""
        a = _lib.TableAttr()
        ctypes.pointer(a)[0] = lib.embkv_table_attr_get(self._h()).contents
        return a

    def pull(self, keys, out=None, mode="train", found=False, default=None):
        """Rows of keys: an (n, dim) float32 array/tensor (out, when given,
        is filled in place). mode 'infer' inserts nothing: missing keys
        read as default (dim floats, None: zeros). found=True returns
        (rows, found) with a bool per key."""
        k = _Keys(keys)
        m = _mode(mode)
        optr, out = _rows_out(out, k.n, self.dim, k.torch)
        fptr, fl = _flags_out(k.n, k.torch) if found else (0, None)
        dptr, dkeep = (_rows_in(default, 1, self.dim, "default")
                       if default is not None else (0, None))
        if k.n:
            _check(lib.embkv_pull(self._h(), k.n, k.ptr, optr, fptr or None,
                                  m, dptr or None),
                   "embkv_pull", "table %r, %d keys" % (self.name, k.n))
        del dkeep
        return (out, _bool(fl)) if found else out

    def pull_raw(self, keys, mode="train"):
        """Rows of keys as the table stores them (embkv_pull_raw): for an
        fp16 table an (n, dim) float16 array, for bf16 the 16-bit patterns
        as uint16 (numpy has no bfloat16; with torch keys a torch.bfloat16
        tensor), for fp32 float32. No conversion: the stored bytes. mode
        'infer': missing keys read as zeros."""
        k = _Keys(keys)
        m = _mode(mode)
        if self.dtype == "fp16":
            npt, tt = np.float16, (_torch.float16 if k.torch else None)
        elif self.dtype == "bf16":
            npt, tt = np.uint16, (_torch.bfloat16 if k.torch else None)
        else:
            npt, tt = np.float32, (_torch.float32 if k.torch else None)
        if tt is not None:
            out = _torch.empty((k.n, self.dim), dtype=tt)
            ptr = out.data_ptr() if k.n else 0
        else:
            out = np.empty((k.n, self.dim), dtype=npt)
            ptr = out.ctypes.data
        if k.n:
            _check(lib.embkv_pull_raw(self._h(), k.n, k.ptr, ptr, None, m,
                                      None),
                   "embkv_pull_raw", "table %r, %d keys" % (self.name, k.n))
        return out

    def push(self, keys, grads):
        """Pushes gradients (n x dim; duplicates summed): the number of
        distinct keys applied."""
        k = _Keys(keys)
        gptr, keep = _rows_in(grads, k.n, self.dim, "grads")
        if not k.n:
            return 0
        applied = c_uint32()
        _check(lib.embkv_push(self._h(), k.n, k.ptr, gptr, byref(applied)),
               "embkv_push", "table %r, %d keys" % (self.name, k.n))
        del keep
        return applied.value

    def assign(self, keys, values):
        """Stores values (n x dim) as the rows of keys."""
        k = _Keys(keys)
        vptr, keep = _rows_in(values, k.n, self.dim, "values")
        if k.n:
            _check(lib.embkv_assign(self._h(), k.n, k.ptr, vptr),
                   "embkv_assign", "table %r, %d keys" % (self.name, k.n))
        del keep

    def accumulate(self, keys, deltas):
        """Adds deltas (n x dim) to the rows, without the optimizer
        (duplicates summed; missing keys created first): the number of
        distinct keys updated."""
        k = _Keys(keys)
        dptr, keep = _rows_in(deltas, k.n, self.dim, "deltas")
        if not k.n:
            return 0
        done = c_uint32()
        _check(lib.embkv_accumulate(self._h(), k.n, k.ptr, dptr,
                                    byref(done)),
               "embkv_accumulate", "table %r, %d keys" % (self.name, k.n))
        del keep
        return done.value

    def erase(self, keys):
        """Removes keys: how many were stored."""
        k = _Keys(keys)
        if not k.n:
            return 0
        erased = c_uint32()
        _check(lib.embkv_erase(self._h(), k.n, k.ptr, byref(erased)),
               "embkv_erase", "table %r, %d keys" % (self.name, k.n))
        return erased.value

    def contains(self, keys):
        """A bool per key: whether it is stored. Inserts nothing."""
        k = _Keys(keys)
        fptr, fl = _flags_out(k.n, k.torch)
        if k.n:
            _check(lib.embkv_contains(self._h(), k.n, k.ptr, fptr, None),
                   "embkv_contains", "table %r, %d keys" % (self.name, k.n))
        return _bool(fl)

    def count(self):
        """Rows stored, over every server (a recent value)."""
        n = c_uint64()
        _check(lib.embkv_table_count(self._h(), byref(n)),
               "embkv_table_count", "table %r" % (self.name,))
        return n.value

    def clear(self):
        """Erases every row (not atomic against concurrent writers): how
        many were erased."""
        n = c_uint64()
        _check(lib.embkv_table_clear(self._h(), byref(n)),
               "embkv_table_clear", "table %r" % (self.name,))
        return n.value

    def current_opt(self):
        """The optimizer's hyper-parameters as the servers have them now
        (run-time changes included): a dict."""
        a = _lib.TableAttr()
        _check(lib.embkv_table_locate(self._client._h(), _name(self.name),
                                      byref(a), None, 0),
               "embkv_table_locate", "table %r" % (self.name,))
        o = a.opt
        return {"optimizer": lib.embkv_optimizer_name(o.type).decode(),
                "lr": o.lr, "beta1": o.beta1, "beta2": o.beta2,
                "eps": o.eps, "initial_accum": o.initial_accum, "l1": o.l1,
                "l2": o.l2, "ftrl_beta": o.ftrl_beta}

    def set_opt(self, **fields):
        """Changes optimizer hyper-parameters at run time on every server
        (lr=, eps=, beta1=, beta2=, initial_accum=, l1=, l2=, ftrl_beta=);
        the next pushes use them. The others keep their current values."""
        a = _lib.TableAttr()
        _check(lib.embkv_table_locate(self._client._h(), _name(self.name),
                                      byref(a), None, 0),
               "embkv_table_locate", "table %r" % (self.name,))
        for f, v in fields.items():
            if f not in ("lr", "beta1", "beta2", "eps", "initial_accum",
                         "l1", "l2", "ftrl_beta"):
                raise ValueError("embkv: no optimizer field %r" % (f,))
            setattr(a.opt, f, v)
        _check(lib.embkv_table_set_opt(self._h(), byref(a.opt)),
               "embkv_table_set_opt", "table %r, %s" % (
                   self.name, ", ".join("%s=%g" % kv
                                        for kv in fields.items())))
        if "lr" in fields:
            self.lr = a.opt.lr

    def set_lr(self, lr):
        """The learning rate at run time (warm-up, decay)."""
        _check(lib.embkv_table_set_lr(self._h(), lr), "embkv_table_set_lr",
               "table %r, lr %g" % (self.name, lr))
        self.lr = lr

    def pull_async(self, keys, out=None, mode="train", found=False,
                   default=None):
        """Starts a pull; Op.wait() returns what pull() would."""
        k = _Keys(keys)
        m = _mode(mode)
        optr, out = _rows_out(out, k.n, self.dim, k.torch)
        fptr, fl = _flags_out(k.n, k.torch) if found else (0, None)
        dptr, dkeep = (_rows_in(default, 1, self.dim, "default")
                       if default is not None else (0, None))
        result = (out, fl) if found else out
        if not k.n:
            return Op(self, None, result, (), "embkv_pull_async")
        h = c_void_p()
        _check(lib.embkv_pull_async(self._h(), k.n, k.ptr, optr,
                                    fptr or None, m, dptr or None, byref(h)),
               "embkv_pull_async", "table %r, %d keys" % (self.name, k.n))
        return Op(self, h, result, (k, out, fl, dkeep), "embkv_pull_async")

    def push_async(self, keys, grads):
        """Starts a push; Op.wait() returns None."""
        k = _Keys(keys)
        gptr, keep = _rows_in(grads, k.n, self.dim, "grads")
        if not k.n:
            return Op(self, None, None, (), "embkv_push_async")
        h = c_void_p()
        _check(lib.embkv_push_async(self._h(), k.n, k.ptr, gptr, byref(h)),
               "embkv_push_async", "table %r, %d keys" % (self.name, k.n))
        return Op(self, h, None, (k, keep), "embkv_push_async")

    def scan(self, part, page=1024):
        """Yields (keys uint64 array, rows float32 array) pages of one
        partition's live rows."""
        cursor = c_uint64(0)
        keys = np.empty(page, dtype=np.uint64)
        vals = np.empty((page, self.dim), dtype=np.float32)
        n = c_uint32()
        while cursor.value != _lib.SCAN_END:
            _check(lib.embkv_scan(self._h(), part, byref(cursor), page,
                                  keys.ctypes.data, vals.ctypes.data,
                                  byref(n)),
                   "embkv_scan", "table %r partition %d" % (self.name, part))
            if n.value:
                yield keys[:n.value].copy(), vals[:n.value].copy()


class Op:
    """An async operation: wait() once for its result (the buffers it
    uses are kept alive until then). Waited on garbage collection if
    forgotten, so its buffers are never freed under the library."""

    def __init__(self, table, handle, result, keep, what):
        self._table = table
        self._handle = handle
        self._result = result
        self._keep = keep
        self._what = what
        self._status = None
        self._lock = threading.Lock()
        if handle is not None:
            with table._lock:
                table._ops.add(self)
        else:
            self._status = 0

    def _finish(self, status):
        self._handle = None
        self._keep = ()
        self._status = status
        with self._table._lock:
            self._table._ops.discard(self)

    def _result_or_raise(self):
        if self._status < 0:
            raise EmbkvError(self._status, self._what,
                             "table %r" % (self._table.name,))
        if isinstance(self._result, tuple):
            return self._result[0], _bool(self._result[1])
        return self._result

    def done(self):
        """True once the operation completed (wait() then returns at
        once). Needs embkv_op_test (else: False until waited)."""
        with self._lock:
            if self._handle is None:
                return True
            if not has("embkv_op_test"):
                return False
            return _check(lib.embkv_op_test(self._handle),
                          "embkv_op_test") == 1

    def wait(self, timeout=None):
        """The operation's result (pull: rows, or (rows, found)); raises
        EmbkvError when it failed. timeout (seconds): TimeoutError when it
        is still running then; the op stays valid, wait again later."""
        with self._lock:
            if self._handle is not None:
                if timeout is None:
                    self._finish(lib.embkv_op_wait(self._handle))
                else:
                    if not has("embkv_op_timedwait"):
                        raise NotImplementedError(
                            "embkv: this libembkv has no embkv_op_timedwait")
                    st = ctypes.c_int()
                    ms = max(0, min(int(timeout * 1000), _U32_MAX))
                    rc = lib.embkv_op_timedwait(self._handle, ms, byref(st))
                    if rc == -110:  # -ETIMEDOUT: still running
                        raise TimeoutError("embkv: %s still running after "
                                           "%.3f s" % (self._what, timeout))
                    _check(rc, "embkv_op_timedwait")
                    self._finish(st.value)
        return self._result_or_raise()

    def __del__(self):
        try:
            if self._handle is not None:
                lib.embkv_op_wait(self._handle)
                self._handle = None
        except Exception:
            pass
