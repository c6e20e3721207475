"""embkv.torch's choice between the host path and libembkv's device API
(embkv.gpu) for keys on a device. This machine needs no GPU: the device
path is exercised with fakes of embkv.gpu.probe/pull/push that record
their calls and serve CPU tensors through the table's host calls, with
CPU keys counted as "device" keys (et._DEVICE_TYPES). Checked: the device
path is taken only when the probe's status is 0, the probe runs once per
process, CPU keys never probe, a step through the device path (train,
prefetch, infer, one feature on each path) ends exactly where the host
path ends, and the pushes stay asynchronous behind flush(). The real
thing on CUDA tensors is test_gpu.py's test_torch_step_cuda_equals_cpu
(tools/gpu-check.sh)."""
import errno
import threading

import pytest
import torch
from torch import nn

import embkv
import embkv.gpu as gpu
import embkv.torch as et

from test_torch import DIM, Dense, batches, make_tables, offsets_of

VOCAB = 50


class FakeGpu:
    def __init__(self, status=0):
        self.status = status
        self.probes = 0
        self.calls = []
        self.gate = None      # an Event a push waits for, when set

    def probe(self):
        self.probes += 1
        return {"status": self.status, "why": "fake",
                "path": "staging" if self.status == 0 else "none"}

    def pull(self, table, keys, out=None, mode="train", found=None,
             default=None, stream=None):
        assert keys.dtype == torch.int64 and keys.is_contiguous()
        self.calls.append(("pull", table.name, keys.clone(), mode))
        return table.pull(keys, mode=mode)

    def push(self, table, keys, grads, stream=None):
        assert grads.dtype == torch.float32 and grads.is_contiguous()
        assert grads.shape == (keys.numel(), table.dim)
        if self.gate is not None:
            assert self.gate.wait(10)
        self.calls.append(("push", table.name, keys.clone()))
        return table.push(keys, grads)

    def count(self, kind):
        return sum(1 for c in self.calls if c[0] == kind)


@pytest.fixture
def fake(monkeypatch):
    """A fake embkv.gpu whose probe says 0; CPU keys count as device keys
    (the probe result cache is cleared, and restored after the test)."""
    f = FakeGpu()
    monkeypatch.setattr(gpu, "probe", f.probe)
    monkeypatch.setattr(gpu, "pull", f.pull)
    monkeypatch.setattr(gpu, "push", f.push)
    monkeypatch.setattr(et, "_probe_status", None)
    monkeypatch.setattr(et, "_DEVICE_TYPES", ("cpu",))
    return f


def count_multi(monkeypatch, client):
    calls = {"pull_multi": 0, "push_multi": 0}
    for name in calls:
        real = getattr(client, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*a, **kw)
        monkeypatch.setattr(client, name, counted, raising=False)
    return calls


def train(client, tname, opt, kw, pooling="mean", prefetch=False, steps=8,
          item_dtype=torch.int64):
    """Trains a fresh pair of tables (user, item) with an
    EmbeddingBagCollection; returns (losses, final rows, initial rows)."""
    torch.manual_seed(0)
    dense = Dense()
    init = torch.Generator().manual_seed(5)
    tables = make_tables(client, tname, opt, **kw)
    start = {}
    for f, t in tables.items():
        start[f] = torch.randn(VOCAB, DIM, generator=init) * 0.3
        t.assign(torch.arange(VOCAB), start[f])
    ebc = et.EmbeddingBagCollection(tables, pooling=pooling)
    sgd = torch.optim.SGD(dense.parameters(), lr=0.05)
    data = batches(1, steps)
    losses = []
    for i, (feats, x, y) in enumerate(data):
        kin = {"user": feats["user"],
               "item": (feats["item"][0].to(item_dtype), None,
                        offsets_of(feats["item"][1]))}
        loss = nn.functional.mse_loss(dense(ebc(kin), x), y)
        sgd.zero_grad()
        loss.backward()
        if prefetch and i + 1 < len(data):
            ebc.prefetch({f: k for f, (k, _) in data[i + 1][0].items()})
        sgd.step()
        losses.append(loss.item())
    ebc.flush()
    rows = {f: t.pull(torch.arange(VOCAB), mode="infer")
            for f, t in tables.items()}
    return losses, rows, start


@pytest.mark.parametrize("opt,kw,prefetch", [
    ("sgd", {"lr": 0.1}, False),
    ("adagrad", {"lr": 0.1}, False),
    ("sgd", {"lr": 0.1}, True),
])
def test_device_path_trains_like_host_path(client, tname, monkeypatch,
                                           opt, kw, prefetch):
    host_losses, host_rows, _ = train(client, tname + "h", opt, kw,
                                      prefetch=prefetch)
    f = FakeGpu()
    monkeypatch.setattr(gpu, "probe", f.probe)
    monkeypatch.setattr(gpu, "pull", f.pull)
    monkeypatch.setattr(gpu, "push", f.push)
    monkeypatch.setattr(et, "_probe_status", None)
    monkeypatch.setattr(et, "_DEVICE_TYPES", ("cpu",))
    calls = count_multi(monkeypatch, client)
    losses, rows, start = train(client, tname + "d", opt, kw,
                                prefetch=prefetch)
    # every pull and push went through the device API, per feature
    assert calls == {"pull_multi": 0, "push_multi": 0}
    assert f.count("pull") == 2 * 8 and f.count("push") == 2 * 8
    assert {c[1] for c in f.calls} == {tname + "duser", tname + "ditem"}
    assert f.probes == 1                     # cached for the process
    assert losses == host_losses
    for k in rows:
        assert torch.equal(rows[k], host_rows[k]), k
    # and training did move the rows: not a vacuous comparison
    assert not torch.allclose(rows["user"], start["user"])


def test_one_feature_each_path(client, tname, monkeypatch):
    """A forward with one device feature and one host feature: the host
    one in a pull_multi/push_multi of its own, the device one through
    embkv.gpu; the same rows as the host path for both."""
    host_losses, host_rows, _ = train(client, tname + "h", "sgd",
                                      {"lr": 0.1}, steps=4)
    f = FakeGpu()
    monkeypatch.setattr(gpu, "probe", f.probe)
    monkeypatch.setattr(gpu, "pull", f.pull)
    monkeypatch.setattr(gpu, "push", f.push)
    monkeypatch.setattr(et, "_probe_status", None)
    # the "user" keys (int64) take the device path, the "item" keys
    # (int32 here) the host one
    monkeypatch.setattr(et, "_on_device", lambda k: k.dtype == torch.int64
                        and et.device_path())
    calls = count_multi(monkeypatch, client)
    losses, rows, _ = train(client, tname + "d", "sgd", {"lr": 0.1},
                            steps=4, item_dtype=torch.int32)
    assert calls == {"pull_multi": 4, "push_multi": 4}
    assert {c[1] for c in f.calls} == {tname + "duser"}
    assert f.count("pull") == 4 and f.count("push") == 4
    assert losses == host_losses
    for k in rows:
        assert torch.equal(rows[k], host_rows[k]), k


def test_probe_failure_takes_host_path(client, tname, monkeypatch):
    """Device keys and a probe that says -EOPNOTSUPP (a libembkv built
    without CUDA) or -ENODEV: the host path, the probe asked once."""
    for status in (-errno.EOPNOTSUPP, -errno.ENODEV):
        f = FakeGpu(status)
        monkeypatch.setattr(gpu, "probe", f.probe)
        monkeypatch.setattr(gpu, "pull", f.pull)
        monkeypatch.setattr(gpu, "push", f.push)
        monkeypatch.setattr(et, "_probe_status", None)
        monkeypatch.setattr(et, "_DEVICE_TYPES", ("cpu",))
        calls = count_multi(monkeypatch, client)
        train(client, tname + str(-status), "sgd", {"lr": 0.1}, steps=3)
        assert f.calls == []
        assert calls == {"pull_multi": 3, "push_multi": 3}
        assert f.probes == 1
        assert not et.device_path()


def test_cpu_keys_never_probe(client, tname, monkeypatch):
    def boom():
        raise AssertionError("probed for CPU keys")
    monkeypatch.setattr(gpu, "probe", boom)
    monkeypatch.setattr(et, "_probe_status", None)
    train(client, tname, "sgd", {"lr": 0.1}, steps=2)
    assert et._probe_status is None


def test_real_probe_decides(monkeypatch):
    """The cached answer is the real probe's: here (no CUDA in libembkv or
    no device) the host path."""
    monkeypatch.setattr(et, "_probe_status", None)
    assert et.device_path() == (gpu.probe()["status"] == 0)
    assert et._probe_status == gpu.probe()["status"]


def test_device_infer_and_async_push(client, tname, fake):
    client.create_table(tname, dim=4, partitions=2, capacity=1024,
                        init="uniform", init_a=1.0, init_b=2.0)
    t = client.open(tname)
    m = et.EmbeddingBag(t, "sum").eval()
    out = m(torch.tensor([7, 8]), torch.tensor([1, 1]))
    assert not out.any() and not out.requires_grad
    assert fake.calls[-1][0] == "pull" and fake.calls[-1][3] == "infer"
    _, found = t.pull([7, 8], mode="infer", found=True)
    assert not found.any()                 # nothing inserted
    # train: the push runs on a thread of its own; flush() waits for it
    m.train()
    out = m(torch.tensor([7, 7]), torch.tensor([2]))
    assert fake.calls[-1][3] == "train"
    before = t.pull([7])
    fake.gate = threading.Event()
    out.sum().backward()                   # returns with the push held
    assert fake.count("push") == 0
    fake.gate.set()
    m.flush()
    assert fake.count("push") == 1
    pushed = fake.calls[-1][2]
    assert pushed.tolist() == [7, 7]       # duplicates left to the API
    assert (t.pull([7]) < before).all()
    # a prefetch of the same keys serves the next forward: one pull
    n = fake.count("pull")
    m.prefetch(torch.tensor([7, 9]))
    m(torch.tensor([7, 9]), torch.tensor([1, 1]))
    assert fake.count("pull") == n + 1
    # different keys than prefetched: pulled again
    m.prefetch(torch.tensor([1]))
    m(torch.tensor([2]), torch.tensor([1]))
    assert fake.count("pull") == n + 3


def test_device_push_error_raised_by_flush(client, tname, fake, monkeypatch):
    client.create_table(tname, dim=4, partitions=2, capacity=1024)
    t = client.open(tname)
    m = et.EmbeddingBag(t, "sum")

    def failing(table, keys, grads, stream=None):
        raise embkv.EmbkvError(-errno.EIO, "embkv_push_device", "fake")
    monkeypatch.setattr(gpu, "push", failing)
    m(torch.tensor([1]), torch.tensor([1])).sum().backward()
    with pytest.raises(embkv.EmbkvError) as e:
        m.flush()
    assert e.value.status == -errno.EIO
