"""The ctypes client: layout, pull/push/assign/erase with numpy and torch,
zero-copy, async, errors, and two threads overlapping (GIL released)."""
import ctypes
import threading
import time

import numpy as np
import pytest
import torch

import embkv
from embkv import _lib


def test_attr_layout_matches_header():
    # embkv_table_attr_init fills every field; wrong offsets would read
    # garbage here.
    a = _lib.TableAttr()
    embkv.lib.embkv_table_attr_init(ctypes.byref(a))
    assert a.name == b"default"
    assert (a.dim, a.partitions, a.capacity) == (64, 64, 1 << 20)
    assert a.opt.type == 0 and abs(a.opt.lr - 0.01) < 1e-9
    assert abs(a.opt.eps - 1e-8) < 1e-15 and abs(a.opt.initial_accum - 0.1) < 1e-7
    assert a.init.type == 1 and abs(a.init.b - 0.01) < 1e-9
    assert a.admit_after == 1 and a.lfu_decay_period == 8
    assert a.hash_seed == 0x656d626b76
    c = _lib.ClientAttr()
    embkv.lib.embkv_client_attr_init(ctypes.byref(c))
    assert c.max_retries == 3 and c.nservers == 0


def test_strerror_and_error_text(client):
    assert "table" in embkv.strerror(embkv.ENOTABLE).lower()
    with pytest.raises(embkv.EmbkvError) as e:
        client.open("no_such_table")
    assert e.value.status == embkv.ENOTABLE
    assert embkv.strerror(embkv.ENOTABLE) in str(e.value)
    assert "embkv_table_open" in str(e.value)


def test_connect_refused_raises():
    with pytest.raises(embkv.EmbkvError) as e:
        embkv.Client(["tcp://127.0.0.1:1"], connect_timeout_ms=500)
    assert e.value.status < 0 and "embkv_client_create" in str(e.value)


def test_bad_arguments(client, tname):
    with pytest.raises(ValueError):
        client.create_table("bad name!", dim=4)
    with pytest.raises(ValueError):
        client.create_table(tname, dim=4, optimizer="nope")
    with pytest.raises(embkv.EmbkvError) as e:
        client.create_table(tname, dim=0)
    assert e.value.status == -22
    client.create_table(tname, dim=4, partitions=4, capacity=1024)
    with pytest.raises(embkv.EmbkvError) as e:
        client.create_table(tname, dim=4, partitions=4, capacity=1024)
    assert e.value.status == embkv.ETABLEEXISTS
    with client.open(tname) as t:
        with pytest.raises(ValueError):
            t.push(np.arange(3), np.zeros((2, 4), np.float32))
        with pytest.raises(TypeError):
            t.pull(np.array([1.5, 2.5]))
        with pytest.raises(ValueError):  # out written in place: f64 refused
            t.pull(np.arange(2), out=np.zeros((2, 4)))
        with pytest.raises(ValueError):
            t.pull(np.arange(2), mode="fast")
    with pytest.raises(ValueError):
        t.pull(np.arange(2))  # closed
    client.drop_table(tname)
    with pytest.raises(embkv.EmbkvError):
        client.drop_table(tname)


def test_pull_push_assign_erase_numpy(client, tname):
    client.create_table(tname, dim=8, partitions=4, capacity=4096, lr=0.5,
                        init="zeros")
    assert (tname, 8) in client.list_tables()
    with client.open(tname) as t:
        assert (t.dim, t.optimizer) == (8, "sgd")
        keys = np.array([5, 7, 5, 1 << 63], dtype=np.uint64)
        rows = t.pull(keys)
        assert rows.shape == (4, 8) and rows.dtype == np.float32
        assert not rows.any()
        g = np.ones((4, 8), np.float32)
        assert t.push(keys, g) == 3  # distinct keys
        rows = t.pull(keys)
        np.testing.assert_allclose(rows[0], -1.0)   # 5 twice: 2 * 0.5
        np.testing.assert_allclose(rows[1], -0.5)
        np.testing.assert_allclose(rows[3], -0.5)
        vals = np.arange(16, dtype=np.float32).reshape(2, 8)
        t.assign(np.array([10, 11]), vals)
        np.testing.assert_array_equal(t.pull([10, 11]), vals)
        assert t.erase([10, 11, 12]) == 2
        rows, found = t.pull([10, 5], mode="infer", found=True)
        assert found.tolist() == [False, True]
        assert not rows[0].any()
        d = np.full(8, 3.0, np.float32)
        rows = t.pull([10], mode="infer", default=d)
        np.testing.assert_array_equal(rows[0], d)
        # infer mode inserted nothing: 10 is still absent
        _, found = t.pull([10], mode="infer", found=True)
        assert not found[0]
        assert t.pull(np.array([], np.uint64)).shape == (0, 8)
        assert t.push([], np.zeros((0, 8), np.float32)) == 0


def test_torch_zero_copy(client, tname):
    client.create_table(tname, dim=4, partitions=2, capacity=1024,
                        init="zeros")
    with client.open(tname) as t:
        keys = torch.tensor([3, -1, 4], dtype=torch.int64)  # -1: 2^64-1
        out = torch.full((3, 4), 9.0)
        r = t.pull(keys, out=out)
        assert r is out and not out.any()     # written in place
        vals = torch.arange(12, dtype=torch.float32).reshape(3, 4)
        t.assign(keys, vals)
        got = t.pull(keys)
        assert isinstance(got, torch.Tensor)
        assert torch.equal(got, vals)
        # the same key as uint64 from numpy
        np.testing.assert_array_equal(
            t.pull(np.array([(1 << 64) - 1], np.uint64))[0], vals[1].numpy())
        # numpy out in place too
        o = np.zeros((3, 4), np.float32)
        assert t.pull(keys.numpy(), out=o) is o
        np.testing.assert_array_equal(o, vals.numpy())
        # a non-contiguous input is converted, not refused
        t.assign(torch.tensor([20, 21]), vals[:2].t().contiguous().t())
        assert torch.equal(t.pull(torch.tensor([20, 21])), vals[:2])


def test_async(client, tname):
    client.create_table(tname, dim=4, partitions=2, capacity=1024, lr=1.0,
                        init="zeros")
    with client.open(tname) as t:
        keys = np.arange(100, dtype=np.uint64)
        t.pull(keys)  # a push applies to stored rows only
        op = t.push_async(keys, np.ones((100, 4), np.float32))
        assert op.wait() is None
        op = t.pull_async(keys, found=True)
        rows, found = op.wait()
        assert found.all()
        np.testing.assert_allclose(rows, -1.0)
        ops = [t.pull_async(keys[i:i + 10]) for i in range(0, 100, 10)]
        assert all(np.allclose(o.wait(), -1.0) for o in ops)
        # an op forgotten without wait is waited when collected
        t.pull_async(keys)
        op = t.pull_async(keys, mode="infer")
        op.wait()
        assert op.wait() is not None  # a second wait returns the result


def test_stats(client, tname):
    client.create_table(tname, dim=4, partitions=2, capacity=1024)
    with client.open(tname) as t:
        t.pull(np.arange(10))
    st = client.stats()
    mine = {n: v for s, tb, n, v in st if tb == tname}
    assert mine.get("rows") == 10


def _ticks_during(fn):
    """How far a busy pure-Python thread counts while fn() runs on this
    thread, and fn's duration."""
    ticks = [0]
    stop = threading.Event()
    go = threading.Event()

    def ticker():
        go.set()
        n = 0
        while not stop.is_set():
            n += 1
            ticks[0] = n

    th = threading.Thread(target=ticker)
    th.start()
    go.wait()
    time.sleep(0.01)
    t0 = time.perf_counter()
    before = ticks[0]
    fn()
    after = ticks[0]
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    return after - before, dt


def test_threads_overlap(server, tname):
    # One thread is inside a long pull (one foreign call) while another
    # runs Python: with the GIL held during the call the other would be
    # stuck for its whole length (it only gets switch-interval slices
    # between calls, and there is only one call here).
    c = embkv.Client([server])
    c.create_table(tname, dim=16, partitions=8, capacity=1 << 19)
    t = c.open(tname)
    keys = np.arange(300000, dtype=np.uint64)
    out = np.empty((keys.size, 16), np.float32)
    t.pull(keys, out=out)
    ticks_sleep, dt_sleep = _ticks_during(lambda: time.sleep(0.1))
    rate = ticks_sleep / dt_sleep
    ticks_call, dt_call = _ticks_during(lambda: t.pull(keys, out=out))
    assert dt_call > 0.02, "the pull was too short to tell (%.3f s)" % dt_call
    # GIL held: at most one 5 ms slice at the start. Released: the ticker
    # runs the whole call (sharing the CPUs with the server).
    assert ticks_call > 0.15 * rate * dt_call, (
        "the GIL was held during embkv_pull: %d ticks in %.3f s, %.0f/s "
        "when free" % (ticks_call, dt_call, rate))
    # and two threads calling at once both complete with the same rows
    res = [None, None]

    def work(i):
        res[i] = t.pull(keys[:50000])
    th = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    assert np.array_equal(res[0], res[1])
    np.testing.assert_array_equal(res[0], out[:50000])
    c.close()
