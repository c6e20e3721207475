"""The issue-15 C calls through Python: several tables in one call,
contains, learning rate at run time (API and embkvctl set-table), row
count, polling and timed waits on async operations."""
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

import embkv
from conftest import start_embkvd, stop_embkvd

HERE = os.path.dirname(os.path.abspath(__file__))


def requests(client):
    """The server's frame count (one server in these tests)."""
    return sum(v for _, t, name, v in client.stats()
               if t is None and name == "requests")


def one_frame(client, call):
    """call()'s result, after checking the server saw it as ONE request
    (two stats calls in a row give the stats' own count)."""
    r0 = requests(client)
    r1 = requests(client)
    out = call()
    r2 = requests(client)
    assert r2 - r1 == (r1 - r0) + 1, (r0, r1, r2)
    return out


def test_multi_equals_separate(client, tname):
    client.create_table(tname + "a", dim=4, partitions=4, capacity=4096,
                        lr=0.5)
    client.create_table(tname + "b", dim=6, partitions=2, capacity=4096,
                        lr=0.25)
    client.create_table(tname + "c", dim=3, partitions=2, capacity=4096,
                        optimizer="adagrad", lr=0.1)
    a, b = client.open(tname + "a"), client.open(tname + "b")
    c = client.open(tname + "c")
    ka = np.arange(100, dtype=np.uint64)
    kb = torch.tensor([5, 5, 9, 1 << 40])
    kc = np.array([], np.uint64)
    # one MULTI_PULL frame for three tables (one of them without keys)
    ra, rb, rc = one_frame(client, lambda: client.pull_multi(
        [(a, ka), (b, kb), (c, kc)]))
    assert isinstance(rb, torch.Tensor) and rb.shape == (4, 6)
    assert rc.shape == (0, 3)
    np.testing.assert_array_equal(ra, a.pull(ka))
    assert torch.equal(rb, b.pull(kb))
    ga = np.ones((100, 4), np.float32)
    gb = torch.ones(4, 6)
    done = one_frame(client, lambda: client.push_multi(
        [(a, ka, ga), (b, kb, gb), (c, kc, np.zeros((0, 3), np.float32))]))
    assert done == [100, 3, 0]      # distinct keys applied, as push() says
    np.testing.assert_allclose(a.pull(ka), ra - 0.5, rtol=1e-6)
    exp = rb.clone()
    exp[:2] -= 0.5          # key 5 twice: summed gradient 2 * 0.25
    exp[2:] -= 0.25
    torch.testing.assert_close(b.pull(kb), exp)
    assert client.pull_multi([]) == []
    with pytest.raises(TypeError):
        client.pull_multi([("a", ka)])
    # a dropped table in the middle fails alone: the others' rows arrive
    client.drop_table(tname + "b")
    with pytest.raises(embkv.EmbkvError) as e:
        client.pull_multi([(a, ka), (b, kb), (a, ka[:3])])
    assert "entry 1" in str(e.value)
    b.close()
    with pytest.raises(ValueError):
        client.pull_multi([(a, ka), (b, kb)])


def test_contains_inserts_nothing(client, tname):
    client.create_table(tname, dim=4, partitions=4, capacity=4096)
    t = client.open(tname)
    t.pull([1, 2, 3])
    assert t.count() == 3
    f = t.contains(np.array([0, 1, 2, 3, 4, 1], np.uint64))
    assert f.tolist() == [False, True, True, True, False, True]
    assert t.count() == 3
    assert not t.contains([4])[0]
    ft = t.contains(torch.tensor([3, 7]))
    assert isinstance(ft, torch.Tensor) and ft.tolist() == [True, False]
    assert t.contains([]).shape == (0,)


def test_lr_changed_at_run_time(client, tname):
    client.create_table(tname, dim=2, partitions=4, capacity=4096, lr=0.5,
                        init="zeros")
    t = client.open(tname)
    keys = np.arange(50, dtype=np.uint64)
    g = np.ones((50, 2), np.float32)
    t.pull(keys)
    t.push(keys, g)
    t.set_lr(0.125)
    assert t.current_opt()["lr"] == 0.125
    t.push(keys, g)
    np.testing.assert_allclose(t.pull(keys), -0.625)
    with pytest.raises(embkv.EmbkvError) as e:
        t.set_lr(-1.0)
    assert e.value.status == -22 and "lr -1" in str(e.value)
    with pytest.raises(ValueError):
        t.set_opt(momentum=0.9)
    t.set_opt(lr=0.25)
    t.push(keys, g)
    np.testing.assert_allclose(t.pull(keys), -0.875)
    # embkvctl set-table
    ctl = os.environ.get("EMBKVCTL") or os.path.normpath(
        os.path.join(HERE, "..", "..", "build", "tools", "embkvctl"))
    out = subprocess.run([ctl, "--servers", client.servers[0], "set-table",
                          tname, "--lr", "0.0625"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "lr 0.25 -> 0.0625" in out.stdout
    t.push(keys, g)
    np.testing.assert_allclose(t.pull(keys), -0.9375)
    out = subprocess.run([ctl, "--servers", client.servers[0], "set-table",
                          tname, "--lr", "0"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0 and "refused" in out.stderr
    assert t.current_opt()["lr"] == 0.0625


def test_accumulate_bypasses_optimizer(client, tname):
    client.create_table(tname, dim=3, partitions=2, capacity=1024,
                        optimizer="adagrad", lr=0.5, init="zeros")
    t = client.open(tname)
    d = np.array([[1, 2, 3], [10, 20, 30], [1, 1, 1]], np.float32)
    assert t.accumulate([7, 8, 7], d) == 2
    np.testing.assert_array_equal(t.pull([7, 8]), [[2, 3, 4], [10, 20, 30]])
    with pytest.raises(ValueError):
        t.accumulate([1], np.zeros((2, 3), np.float32))


def test_clear(client, tname):
    client.create_table(tname, dim=2, partitions=4, capacity=4096)
    t = client.open(tname)
    t.pull(np.arange(300))
    assert t.clear() == 300
    assert t.count() == 0 and not t.contains(np.arange(300)).any()
    assert t.clear() == 0


def _state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _stop(pid):
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while _state(pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.001)
    assert _state(pid) == "T"


def _cont(pid):
    # again until it runs: a stop still pending behind an uninterruptible
    # sleep would otherwise win
    deadline = time.monotonic() + 5
    while True:
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.005)
        if _state(pid) != "T" or time.monotonic() > deadline:
            break
    assert _state(pid) != "T"


def test_timed_wait_and_poll(tname):
    p, addr = start_embkvd()
    try:
        c = embkv.Client([addr], request_timeout_ms=20000)
        c.create_table(tname, dim=4, partitions=2, capacity=4096)
        t = c.open(tname)
        _stop(p.pid)
        try:
            op = t.pull_async(np.arange(10))
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                op.wait(timeout=0.2)
            dt = time.monotonic() - t0
            assert 0.18 <= dt < 2.0, dt
            assert not op.done()
        finally:
            _cont(p.pid)
        rows = op.wait(timeout=15)
        assert rows.shape == (10, 4)
        assert op.done()
        op = t.pull_async(np.arange(10))
        deadline = time.monotonic() + 15
        while not op.done() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert op.done()
        np.testing.assert_array_equal(op.wait(), rows)
        c.close()
    finally:
        stop_embkvd(p)


def test_16bit_tables(client, tname):
    """A bf16 and an fp16 table: pull gives the assigned values rounded
    once to the storage type; pull_raw gives the stored 16-bit rows (numpy
    float16 / uint16 bf16 patterns, torch.bfloat16 with torch keys)."""
    keys = np.arange(1, 201, dtype=np.uint64)
    vals = np.random.default_rng(3).standard_normal((200, 8)).astype(
        np.float32)
    client.create_table(tname + "h", dim=8, partitions=4, capacity=4096,
                        dtype="fp16")
    h = client.open(tname + "h")
    assert h.dtype == "fp16"
    h.assign(keys, vals)
    np.testing.assert_array_equal(h.pull(keys, mode="infer"),
                                  vals.astype(np.float16).astype(np.float32))
    raw = h.pull_raw(keys, mode="infer")
    assert raw.dtype == np.float16
    np.testing.assert_array_equal(raw, vals.astype(np.float16))
    client.create_table(tname + "b", dim=8, partitions=4, capacity=4096,
                        dtype="bf16", optimizer="rowwise_adagrad",
                        rounding="nearest")
    b = client.open(tname + "b")
    assert b.dtype == "bf16" and b.optimizer == "rowwise_adagrad"
    b.assign(keys, vals)
    want = torch.from_numpy(vals).to(torch.bfloat16)
    got = b.pull(torch.from_numpy(keys.astype(np.int64)), mode="infer")
    assert torch.equal(got, want.to(torch.float32))
    rt = b.pull_raw(torch.from_numpy(keys.astype(np.int64)), mode="infer")
    assert rt.dtype == torch.bfloat16 and torch.equal(rt, want)
    rn = b.pull_raw(keys, mode="infer")
    assert rn.dtype == np.uint16
    np.testing.assert_array_equal(rn, want.view(torch.int16).numpy().view(
        np.uint16))
    with pytest.raises(ValueError):
        client.create_table(tname + "x", dtype="int8")
    with pytest.raises(embkv.EmbkvError):   # fp32 rows are not rounded
        client.create_table(tname + "y", rounding="nearest")
