"""
embkv.gpu: the device API of include/embkv/embkv_gpu.h for torch CUDA
tensors (gpu/README.md). Rows go straight into and out of GPU memory:

    import embkv, embkv.gpu
    rows = embkv.gpu.pull(table, keys_cuda)          # (n, dim) float32 on keys' device
    applied = embkv.gpu.push(table, keys_cuda, grads_cuda)
    embkv.gpu.probe()  # {'status': 0, 'name': ..., 'path': 'staging', ...}

Keys are int64 CUDA tensors (the same 64 bits as uint64); duplicates are
made distinct on the GPU, and only distinct keys and rows cross PCIe and
the network. The calls are ordered on torch's current CUDA stream of the
keys' device (or stream=, a torch.cuda.Stream or a raw cudaStream_t):
they read the keys after the work queued before them, and work queued
after a pull sees its rows. Without CUDA in libembkv, or without a
device, every call raises EmbkvError with the probe's status
(-EOPNOTSUPP or -ENODEV) before it looks at its arguments.

A module of its own (ctypes, nothing compiled): importing embkv never
needs it, and it declares only the device functions.
"""
import ctypes
import errno
from ctypes import (POINTER, Structure, c_char, c_char_p, c_int, c_uint32,
                    c_uint64, c_void_p)

from . import EmbkvError, _check, _lib, _mode

try:
    import torch as _torch
except ImportError:  # pragma: no cover - torch is optional
    _torch = None

lib = _lib.lib
PATHS = {0: "none", 1: "staging", 2: "gpudirect-dmabuf", 3: "gpudirect-peermem"}


class GpuInfo(Structure):
    _fields_ = [("device", c_int), ("cc_major", c_int), ("cc_minor", c_int),
                ("driver_version", c_int), ("dmabuf_supported", c_int),
                ("gdr_supported", c_int), ("capable", c_int), ("path", c_int),
                ("name", c_char * 96), ("why", c_char * 160)]


class GpuStats(Structure):
    _fields_ = [("path", c_int), ("pulls", c_uint64), ("pushes", c_uint64),
                ("keys", c_uint64), ("distinct_keys", c_uint64),
                ("h2d_bytes", c_uint64), ("d2h_bytes", c_uint64),
                ("chunks", c_uint64), ("direct_keys", c_uint64),
                ("direct_rest", c_uint64),
                ("direct_landed", c_uint64),
                ("direct_pushed", c_uint64)]


_P = c_void_p
_SIGS = {
    "embkv_gpu_probe": (c_int, [POINTER(GpuInfo)]),
    "embkv_gpu_last_error": (c_char_p, []),
    "embkv_pull_device": (c_int, [_P, c_uint32, _P, _P, _P, c_int, _P, _P]),
    "embkv_push_device": (c_int, [_P, c_uint32, _P, _P, POINTER(c_uint32),
                                  _P]),
    "embkv_gpu_stats_get": (None, [POINTER(GpuStats)]),
}
_missing = set()
for _name, (_res, _args) in _SIGS.items():
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        _missing.add(_name)
        continue
    _f.restype = _res
    _f.argtypes = _args


def probe():
    """What the device path found: a dict with 'status' (0, -EOPNOTSUPP
    or -ENODEV), 'why', and for a device its 'name', 'cc', 'path' (in
    use) and 'capable' (the best GPUDirect registration found)."""
    if _missing:
        return {"status": -errno.EOPNOTSUPP, "path": "none",
                "why": "libembkv has no device API (%s)"
                       % ", ".join(sorted(_missing))}
    info = GpuInfo()
    rc = lib.embkv_gpu_probe(ctypes.byref(info))
    d = {"status": rc, "why": info.why.decode("utf-8", "replace"),
         "path": PATHS.get(info.path, "none") if rc == 0 else "none"}
    if rc == 0:
        d.update(name=info.name.decode("utf-8", "replace"), device=info.device,
                 cc=(info.cc_major, info.cc_minor),
                 capable=PATHS.get(info.capable, "none"),
                 dmabuf=bool(info.dmabuf_supported),
                 gdr=bool(info.gdr_supported))
    return d


def available():
    """True when pulls and pushes into device memory work here."""
    return probe()["status"] == 0


def stats():
    """Process-wide counters of the device calls (a dict)."""
    if _missing:
        return {}
    s = GpuStats()
    lib.embkv_gpu_stats_get(ctypes.byref(s))
    d = {f: getattr(s, f) for f, _ in GpuStats._fields_}
    d["path"] = PATHS.get(s.path, "none")
    return d


def _ready(op):
    st = probe()
    if st["status"]:
        raise EmbkvError(st["status"], op, st["why"])
    if _torch is None or not _torch.cuda.is_available():
        raise EmbkvError(-errno.ENODEV, op, "torch sees no CUDA device")


def _cuda(t, dtype, n, what):
    if not isinstance(t, _torch.Tensor) or t.device.type != "cuda":
        raise TypeError("embkv.gpu: %s must be a CUDA tensor" % what)
    if t.dtype != dtype:
        raise TypeError("embkv.gpu: %s must be %s, not %s" % (what, dtype,
                                                              t.dtype))
    if not t.is_contiguous():
        raise ValueError("embkv.gpu: %s must be contiguous" % what)
    if n is not None and t.numel() != n:
        raise ValueError("embkv.gpu: %s has %d values, %d needed"
                         % (what, t.numel(), n))
    return t


def _stream(stream, device):
    if stream is None:
        return _torch.cuda.current_stream(device).cuda_stream
    if isinstance(stream, int):
        return stream
    return stream.cuda_stream


def pull(table, keys, out=None, mode="train", found=None, default=None,
         stream=None):
    """Rows of keys (an int64 CUDA tensor) into out, an (n, dim) float32
    CUDA tensor (made on keys' device when None), returned. found: a
    uint8 CUDA tensor of n to fill (1 stored, 0 not); default: dim
    float32 on the device, the row of a missing key in infer mode."""
    _ready("embkv_pull_device")
    k = _cuda(keys, _torch.int64, None, "keys").reshape(-1)
    n, dim = k.numel(), table.dim
    if out is None:
        out = _torch.empty((n, dim), dtype=_torch.float32, device=k.device)
    _cuda(out, _torch.float32, n * dim, "out")
    if found is not None:
        _cuda(found, _torch.uint8, n, "found")
    if default is not None:
        _cuda(default, _torch.float32, dim, "default")
    if n:
        with _torch.cuda.device(k.device):
            _check(lib.embkv_pull_device(
                table._h(), n, k.data_ptr(), out.data_ptr(),
                found.data_ptr() if found is not None else None,
                _mode(mode),
                default.data_ptr() if default is not None else None,
                _stream(stream, k.device)),
                "embkv_pull_device", "table %r, %d keys" % (table.name, n))
    return out


def push(table, keys, grads, stream=None):
    """Pushes grads ((n, dim) float32 CUDA) for keys (int64 CUDA);
    duplicates are summed on the GPU. Returns how many distinct keys were
    applied; returns once they are."""
    _ready("embkv_push_device")
    k = _cuda(keys, _torch.int64, None, "keys").reshape(-1)
    n = k.numel()
    _cuda(grads, _torch.float32, n * table.dim, "grads")
    applied = c_uint32(0)
    if n:
        with _torch.cuda.device(k.device):
            _check(lib.embkv_push_device(
                table._h(), n, k.data_ptr(), grads.data_ptr(),
                ctypes.byref(applied), _stream(stream, k.device)),
                "embkv_push_device", "table %r, %d keys" % (table.name, n))
    return applied.value
