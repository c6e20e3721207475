"""
pytest fixtures: one embkvd per test session on 127.0.0.1 with a port the
kernel picks, started from the build tree ($EMBKVD, else
build/server/embkvd) and stopped at the end; a client of it; fresh table
names. The library comes from $EMBKV_LIB or the build tree (embkv._lib).
"""
import itertools
import os
import select
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))  # python/: the embkv package

import embkv  # noqa: E402

READY = "embkvd: listening on "


def _embkvd_path():
    p = os.environ.get("EMBKVD")
    if p:
        return p
    return os.path.normpath(os.path.join(HERE, "..", "..", "build", "server",
                                         "embkvd"))


def start_embkvd(extra=(), timeout=10.0):
    """(process, address) of a fresh embkvd; stop it with stop_embkvd."""
    path = _embkvd_path()
    if not os.access(path, os.X_OK):
        pytest.fail("embkvd not found at %s (build it, or set EMBKVD)" % path)
    p = subprocess.Popen([path, "--listen", "tcp://127.0.0.1:0",
                          "--threads", "2", "--memory-limit", "512M"]
                         + list(extra),
                         stdout=subprocess.PIPE, stderr=None, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.1)
        if r:
            line = p.stdout.readline()
            if not line:
                break
            if line.startswith(READY):
                return p, line[len(READY):].strip()
        if p.poll() is not None:
            break
    p.kill()
    p.wait()
    pytest.fail("embkvd did not report it was listening within %.0f s"
                % timeout)


def stop_embkvd(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


@pytest.fixture(scope="session")
def server():
    p, addr = start_embkvd()
    yield addr
    stop_embkvd(p)


@pytest.fixture(scope="session")
def client(server):
    c = embkv.Client([server], async_threads=4)
    yield c
    c.close()


_names = itertools.count()


@pytest.fixture
def tname(request):
    """A table name no other test uses."""
    return "t%d_%s" % (next(_names), request.node.name[:40].replace("[", "_")
                       .replace("]", "").replace("-", "_"))
