#!/usr/bin/python3
# Reads an embkvctl export with the lines of tools/EXPORT.md and compares
# it with rows pulled from the table (a raw file the C test wrote: u64
# rows, then u64 keys[rows], then f32 values[rows][dim]).
# Usage: export_check.py EXPORT_FILE PULLED_FILE TOLERANCE
# Exit 0: equal (within TOLERANCE relative, 0: exact); 1: differ;
# 77: numpy is absent (skipped, reason printed).
import struct
import sys

try:
    import numpy as np
except ImportError as e:
    print("export_check: skipped: numpy is absent (%s)" % e)
    sys.exit(77)

path, pulled, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])

# --- the lines of tools/EXPORT.md ---
magic, version, dtype, dim, hdr_size, rows = struct.unpack_from(
    "<8sIIIIQ", open(path, "rb").read(64))
assert magic == b"EMBKVEX1" and version == 1
keys = np.fromfile(path, dtype="<u8", count=rows, offset=64)
vals = np.fromfile(path, dtype="<f4" if dtype == 0 else "<f2",
                   count=rows * dim, offset=64 + 8 * rows).reshape(rows, dim)
# ---

n = int(np.fromfile(pulled, dtype="<u8", count=1)[0])
pk = np.fromfile(pulled, dtype="<u8", count=n, offset=8)
pv = np.fromfile(pulled, dtype="<f4", count=n * dim,
                 offset=8 + 8 * n).reshape(n, dim)
if rows != n:
    print("export_check: %d rows in the file, %d pulled" % (rows, n))
    sys.exit(1)
order = np.argsort(keys)
porder = np.argsort(pk)
if not np.array_equal(keys[order], pk[porder]):
    print("export_check: keys differ")
    sys.exit(1)
a = vals[order].astype(np.float32)
b = pv[porder]
if tol == 0:
    ok = np.array_equal(a, b)
else:
    ok = np.allclose(a, b, rtol=tol, atol=1e-7)
if not ok:
    print("export_check: values differ, max abs diff %g" %
          float(np.max(np.abs(a - b))))
    sys.exit(1)
print("export_check: %d rows of dim %d (%s) match" %
      (rows, dim, "fp32" if dtype == 0 else "fp16"))
