"""
Loading libembkv and declaring its functions (ctypes, nothing compiled).

Where the library comes from, first match wins:
  1. $EMBKV_LIB: the path of libembkv.so (or of the directory holding it);
  2. build/client/libembkv.so of the source tree this package sits in
     (python/embkv -> ../../build/client), for running from a checkout;
  3. the system's loader: libembkv.so.0 (an installed embkv).

Every function is loaded through ctypes.CDLL, never PyDLL: ctypes releases
the GIL for the duration of each foreign call, so a pull or push of one
Python thread runs while other Python threads run Python code or call
embkv themselves. The structures mirror include/embkv/embkv.h field by
field (C enums are ints on every ABI this runs on); tests check the layout
by reading back what embkv_table_attr_init() fills.
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_float, c_int,
                    c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)

TABLE_NAME_MAX = 64
ERR_BASE = -4000
SCAN_END = (1 << 64) - 1


class OptAttr(Structure):
    _fields_ = [("type", c_int), ("lr", c_float), ("beta1", c_float),
                ("beta2", c_float), ("eps", c_float),
                ("initial_accum", c_float), ("l1", c_float), ("l2", c_float),
                ("ftrl_beta", c_float)]


class InitAttr(Structure):
    _fields_ = [("type", c_int), ("a", c_float), ("b", c_float),
                ("seed", c_uint64)]


class TableAttr(Structure):
    _fields_ = [("name", c_char * TABLE_NAME_MAX), ("dim", c_uint32),
                ("dtype", c_int), ("partitions", c_uint32),
                ("capacity", c_uint64), ("opt", OptAttr), ("init", InitAttr),
                ("admit_after", c_uint32), ("lfu_decay_period", c_uint32),
                ("hash_seed", c_uint64), ("index_load", c_float),
                ("flags", c_uint32)]


class TableSummary(Structure):
    _fields_ = [("name", c_char * TABLE_NAME_MAX), ("dim", c_uint32)]


class ClientAttr(Structure):
    _fields_ = [("servers", POINTER(c_char_p)), ("nservers", c_uint32),
                ("token", c_char_p), ("connect_timeout_ms", c_uint32),
                ("request_timeout_ms", c_uint32), ("max_retries", c_uint32),
                ("max_conns_per_server", c_uint32),
                ("async_threads", c_uint32), ("flags", c_uint32)]


class MultiReq(Structure):
    _fields_ = [("t", c_void_p), ("n", c_uint32), ("keys", c_void_p),
                ("rows", c_void_p), ("found", c_void_p), ("status", c_int),
                ("done", c_uint32)]


STATS_FN = ctypes.CFUNCTYPE(None, c_void_p, c_uint32, c_char_p, c_char_p,
                            c_uint64)

_P = c_void_p  # opaque handles and array pointers travel as addresses


def _candidates():
    env = os.environ.get("EMBKV_LIB")
    if env:
        if os.path.isdir(env):
            env = os.path.join(env, "libembkv.so")
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.normpath(os.path.join(here, "..", "..", "build", "client",
                                         "libembkv.so"))
    return [tree, "libembkv.so.0", "libembkv.so"]


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    raise ImportError("embkv: cannot load libembkv (set EMBKV_LIB to "
                      "build/client/libembkv.so): " + "; ".join(errors))


lib, path = _load()

# name: (restype, argtypes). Optional ones (newer API) may be missing from
# an older library; has() says whether a function is there.
_SIGS = {
    "embkv_strerror": (c_char_p, [c_int]),
    "embkv_table_attr_init": (None, [POINTER(TableAttr)]),
    "embkv_table_attr_check": (c_int, [POINTER(TableAttr)]),
    "embkv_optimizer_parse": (c_int, [c_char_p]),
    "embkv_optimizer_name": (c_char_p, [c_int]),
    "embkv_init_parse": (c_int, [c_char_p]),
    "embkv_client_attr_init": (None, [POINTER(ClientAttr)]),
    "embkv_client_create": (c_int, [POINTER(ClientAttr), POINTER(_P)]),
    "embkv_client_destroy": (None, [_P]),
    "embkv_client_server_count": (c_uint32, [_P]),
    "embkv_client_server_addr": (c_char_p, [_P, c_uint32]),
    "embkv_table_create_remote": (c_int, [_P, POINTER(TableAttr)]),
    "embkv_table_drop_remote": (c_int, [_P, c_char_p]),
    "embkv_table_list": (c_int, [_P, POINTER(TableSummary), c_uint32,
                                 POINTER(c_uint32)]),
    "embkv_table_locate": (c_int, [_P, c_char_p, POINTER(TableAttr), _P,
                                   c_uint32]),
    "embkv_table_open": (c_int, [_P, c_char_p, POINTER(_P)]),
    "embkv_table_close": (None, [_P]),
    "embkv_table_attr_get": (POINTER(TableAttr), [_P]),
    "embkv_table_map": (c_int, [_P, POINTER(c_uint64), _P, c_uint32]),
    "embkv_pull": (c_int, [_P, c_uint32, _P, _P, _P, c_int, _P]),
    "embkv_pull_raw": (c_int, [_P, c_uint32, _P, _P, _P, c_int, _P]),
    "embkv_dtype_parse": (c_int, [c_char_p]),
    "embkv_dtype_name": (c_char_p, [c_int]),
    "embkv_push": (c_int, [_P, c_uint32, _P, _P, POINTER(c_uint32)]),
    "embkv_assign": (c_int, [_P, c_uint32, _P, _P]),
    "embkv_erase": (c_int, [_P, c_uint32, _P, POINTER(c_uint32)]),
    "embkv_scan": (c_int, [_P, c_uint32, POINTER(c_uint64), c_uint32, _P, _P,
                           POINTER(c_uint32)]),
    "embkv_pull_async": (c_int, [_P, c_uint32, _P, _P, _P, c_int, _P,
                                 POINTER(_P)]),
    "embkv_push_async": (c_int, [_P, c_uint32, _P, _P, POINTER(_P)]),
    "embkv_op_wait": (c_int, [_P]),
    "embkv_stats": (c_int, [_P, STATS_FN, c_void_p]),
    # Newer calls (issue 15); missing from an older libembkv.
    "embkv_op_test": (c_int, [_P]),
    "embkv_op_timedwait": (c_int, [_P, c_uint32, POINTER(c_int)]),
    "embkv_contains": (c_int, [_P, c_uint32, _P, _P, POINTER(c_uint32)]),
    "embkv_pull_multi": (c_int, [POINTER(MultiReq), c_uint32, c_int]),
    "embkv_push_multi": (c_int, [POINTER(MultiReq), c_uint32]),
    "embkv_table_set_opt": (c_int, [_P, POINTER(OptAttr)]),
    "embkv_table_set_lr": (c_int, [_P, c_float]),
    "embkv_table_count": (c_int, [_P, POINTER(c_uint64)]),
    "embkv_table_clear": (c_int, [_P, POINTER(c_uint64)]),
    "embkv_accumulate": (c_int, [_P, c_uint32, _P, _P, POINTER(c_uint32)]),
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


def has(name):
    """Whether the loaded libembkv has function name."""
    return name not in _missing and hasattr(lib, name)


def strerror(status):
    return lib.embkv_strerror(int(status)).decode("utf-8", "replace")
