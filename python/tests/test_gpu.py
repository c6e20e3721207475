"""
embkv.gpu (the device API) from Python. Everywhere: the probe answers
(0, -EOPNOTSUPP or -ENODEV) with a reason, and without a usable device
every call raises EmbkvError with that status before touching its
arguments. On a machine with a GPU and a CUDA-built libembkv
(tools/gpu-check.sh): a device pull equals a host pull bit for bit, and a
device push leaves a table as a host push leaves its twin; and an
embkv.torch training step on CUDA keys (the device path, embkv.gpu's
counters show it) ends where the same step on CPU keys (host path) does.
"""
import errno

import pytest
import torch

import embkv
import embkv.gpu as gpu


def test_probe_answers():
    p = gpu.probe()
    assert p["status"] in (0, -errno.EOPNOTSUPP, -errno.ENODEV)
    assert p["why"]
    if p["status"] == 0:
        # staging unless an RDMA device can register device memory
        assert p["name"] and p["path"] in (
            "staging", "gpudirect-dmabuf", "gpudirect-peermem")
        assert gpu.available()
    else:
        assert not gpu.available()
        assert p["path"] == "none"
    assert isinstance(gpu.stats(), dict)


def test_calls_without_device(client, tname):
    p = gpu.probe()
    if p["status"] == 0 and torch.cuda.is_available():
        pytest.skip("a GPU is here: test_pull_push_equal covers it")
    client.create_table(tname, dim=4)
    with client.open(tname) as t:
        keys = torch.arange(8, dtype=torch.int64)   # CPU: never looked at
        with pytest.raises(embkv.EmbkvError) as e:
            gpu.pull(t, keys)
        assert e.value.status in (-errno.EOPNOTSUPP, -errno.ENODEV)
        with pytest.raises(embkv.EmbkvError) as e:
            gpu.push(t, keys, torch.zeros(8, 4))
        assert e.value.status in (-errno.EOPNOTSUPP, -errno.ENODEV)


@pytest.mark.skipif(not (gpu.available() and torch.cuda.is_available()),
                    reason="no CUDA device: skipped")
def test_pull_push_equal(client, tname):
    dim = 16
    for name in (tname + "_d", tname + "_h"):
        client.create_table(name, dim=dim, optimizer="adagrad", lr=0.1)
    g = torch.Generator().manual_seed(3)
    keys = torch.randint(0, 500, (4000,), generator=g, dtype=torch.int64)
    grads = torch.randn(4000, dim, generator=g)
    with client.open(tname + "_d") as a, \
            client.open(tname + "_h") as b:
        rows = a.pull(keys)                       # insert, then same rows
        b.assign(keys, rows)
        dk = keys.cuda()
        dev = gpu.pull(a, dk)
        torch.cuda.synchronize()
        assert torch.equal(dev.cpu(), a.pull(keys))
        assert gpu.push(a, dk, grads.cuda()) == b.push(keys, grads)
        assert torch.equal(a.pull(keys, mode="infer"),
                           b.pull(keys, mode="infer"))


@pytest.mark.skipif(not (gpu.available() and torch.cuda.is_available()),
                    reason="no CUDA device: skipped")
@pytest.mark.parametrize("prefetch", [False, True])
def test_torch_step_cuda_equals_cpu(client, tname, prefetch):
    """embkv.torch with CUDA keys takes the device path (embkv.gpu's
    counters move: one device pull and push per feature and step) and
    trains as the same module on CPU keys does (host path) on twin
    tables; infer mode after it reads the same rows on both."""
    import copy

    from torch import nn

    import embkv.torch as et

    assert et.device_path()
    dim, steps, b = 8, 6, 16
    tabs = {}
    for side in ("c", "g"):
        for f, opt in (("user", "adagrad"), ("item", "sgd")):
            client.create_table(tname + side + f, dim=dim, optimizer=opt,
                                lr=0.1, init="zeros")
            tabs[side, f] = client.open(tname + side + f)
    g = torch.Generator().manual_seed(11)
    for f in ("user", "item"):
        w = torch.randn(60, dim, generator=g) * 0.3
        tabs["c", f].assign(torch.arange(60), w)
        tabs["g", f].assign(torch.arange(60), w)
    ebc = {s: et.EmbeddingBagCollection(
        {f: tabs[s, f] for f in ("user", "item")}, pooling="mean")
        for s in ("c", "g")}
    torch.manual_seed(0)
    dense_c = nn.Sequential(nn.Linear(2 * dim, 8), nn.ReLU(),
                            nn.Linear(8, 1))
    dense_g = copy.deepcopy(dense_c).cuda()
    opt_c = torch.optim.SGD(dense_c.parameters(), lr=0.05)
    opt_g = torch.optim.SGD(dense_g.parameters(), lr=0.05)
    data = []
    for _ in range(steps):
        feats = {}
        for f in ("user", "item"):
            lengths = torch.randint(0, 5, (b,), generator=g)
            keys = torch.randint(0, 60, (int(lengths.sum()),), generator=g)
            feats[f] = (keys, lengths)
        data.append((feats, torch.rand(b, 1, generator=g)))
    before = gpu.stats()
    for i, (feats, y) in enumerate(data):
        losses = {}
        for s, dense, opt in (("c", dense_c, opt_c), ("g", dense_g, opt_g)):
            dev = "cuda" if s == "g" else "cpu"
            kin = {f: (k.to(dev), l.to(dev)) for f, (k, l) in feats.items()}
            e = ebc[s](kin)
            assert all(v.device.type == dev for v in e.values())
            loss = nn.functional.mse_loss(
                dense(torch.cat([e["user"], e["item"]], 1)), y.to(dev))
            opt.zero_grad()
            loss.backward()
            if prefetch and i + 1 < steps:
                ebc[s].prefetch({f: k.to(dev) for f, (k, _)
                                 in data[i + 1][0].items()})
            opt.step()
            losses[s] = loss.item()
        assert abs(losses["c"] - losses["g"]) <= 1e-5 * abs(losses["c"]) \
            + 1e-6, (i, losses)
    for s in ebc:
        ebc[s].flush()
    after = gpu.stats()
    assert after["pulls"] - before["pulls"] == 2 * steps
    assert after["pushes"] - before["pushes"] == 2 * steps
    keys = torch.arange(60)
    for f in ("user", "item"):
        torch.testing.assert_close(tabs["g", f].pull(keys, mode="infer"),
                                   tabs["c", f].pull(keys, mode="infer"),
                                   rtol=1e-5, atol=1e-6)
    # infer mode on device keys: the same rows, nothing pushed
    for s in ebc:
        ebc[s].eval()
    kin = {f: (torch.tensor([3, 3, 70]), torch.tensor([2, 1]))
           for f in ("user", "item")}
    with torch.no_grad():
        oc = ebc["c"](kin)
        og = ebc["g"]({f: (k.cuda(), l.cuda()) for f, (k, l) in kin.items()})
    for f in oc:
        assert og[f].is_cuda
        torch.testing.assert_close(og[f].cpu(), oc[f], rtol=1e-5, atol=1e-6)
    assert gpu.stats()["pushes"] == after["pushes"]
