"""
embkv.gpu (the device API) from Python. Everywhere: the probe answers
(0, -EOPNOTSUPP or -ENODEV) with a reason, and without a usable device
every call raises EmbkvError with that status before touching its
arguments. On a machine with a GPU and a CUDA-built libembkv
(tools/gpu-check.sh): a device pull equals a host pull bit for bit, and a
device push leaves a table as a host push leaves its twin.
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
        assert p["name"] and p["path"] == "staging"
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
