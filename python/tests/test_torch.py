"""embkv.torch against plain PyTorch: the same model trained 20 steps with
embkv tables and with nn.EmbeddingBag/nn.Embedding(sparse=True) + a torch
optimizer ends with the same parameters (1e-5 relative); pooling,
duplicates, empty bags, infer mode, prefetch and errors."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

import embkv
import embkv.torch as et

VOCAB, DIM, B, STEPS = 50, 8, 16, 20


def batches(seed, steps=STEPS):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(steps):
        feats = {}
        for f in ("user", "item"):
            lengths = torch.randint(0, 5, (B,), generator=g)
            lengths[1] = 0                      # an empty bag every step
            keys = torch.randint(0, VOCAB, (int(lengths.sum()),),
                                 generator=g)
            if lengths[0] >= 2:
                keys[1] = keys[0]               # a duplicate inside a bag
            feats[f] = (keys, lengths)
        x = torch.randn(B, 4, generator=g)
        y = torch.rand(B, 1, generator=g)
        out.append((feats, x, y))
    return out


def offsets_of(lengths):
    return torch.cat([torch.zeros(1, dtype=torch.int64),
                      torch.cumsum(lengths, 0)[:-1]])


class Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * DIM + 4, 8), nn.ReLU(),
                                 nn.Linear(8, 1))

    def forward(self, e, x):
        return self.mlp(torch.cat([e["user"], e["item"], x], 1))


def make_tables(client, tname, opt, **kw):
    tables = {}
    for f in ("user", "item"):
        client.create_table(tname + f, dim=DIM, partitions=4, capacity=4096,
                            optimizer=opt, init="zeros", **kw)
        tables[f] = client.open(tname + f)
    return tables


def train_pair(client, tname, opt, pooling, kw, torch_sparse_opt,
               prefetch=False):
    torch.manual_seed(0)
    dense_ref = Dense()
    dense_kv = copy.deepcopy(dense_ref)
    ref = {f: nn.EmbeddingBag(VOCAB, DIM, mode=pooling, sparse=True)
           for f in ("user", "item")}
    for e in ref.values():
        nn.init.normal_(e.weight, std=0.3)
    tables = make_tables(client, tname, opt, **kw)
    for f, t in tables.items():
        t.assign(torch.arange(VOCAB), ref[f].weight.detach())
    ebc = et.EmbeddingBagCollection(tables, pooling=pooling)
    sparse_opt = torch_sparse_opt([e.weight for e in ref.values()])
    opt_ref = torch.optim.SGD(dense_ref.parameters(), lr=0.05)
    opt_kv = torch.optim.SGD(dense_kv.parameters(), lr=0.05)
    data = batches(1)
    for i, (feats, x, y) in enumerate(data):
        # reference
        e = {f: ref[f](k, offsets_of(l)) for f, (k, l) in feats.items()}
        loss_ref = nn.functional.mse_loss(dense_ref(e, x), y)
        opt_ref.zero_grad()
        sparse_opt.zero_grad()
        loss_ref.backward()
        opt_ref.step()
        sparse_opt.step()
        # embkv: half the features by lengths, half by offsets
        kin = {"user": feats["user"],
               "item": (feats["item"][0], None, offsets_of(feats["item"][1]))}
        e = ebc(kin)
        loss_kv = nn.functional.mse_loss(dense_kv(e, x), y)
        opt_kv.zero_grad()
        loss_kv.backward()
        if prefetch and i + 1 < len(data):
            ebc.prefetch({f: k for f, (k, _) in data[i + 1][0].items()})
        opt_kv.step()
        assert abs(loss_ref.item() - loss_kv.item()) <= \
            1e-5 * abs(loss_ref.item()) + 1e-7, (i, loss_ref, loss_kv)
    ebc.flush()
    for f, t in tables.items():
        got = t.pull(torch.arange(VOCAB), mode="infer")
        torch.testing.assert_close(got, ref[f].weight.detach(), rtol=1e-5,
                                   atol=1e-7)
    for a, b in zip(dense_kv.parameters(), dense_ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the embeddings did move: not a vacuous comparison
    assert not torch.allclose(ref["user"].weight.detach(),
                              tables["user"].pull(torch.arange(VOCAB)) * 0)
    return tables


def test_one_multi_call_per_step(client, tname):
    """A module over several tables: each forward is one pull_multi (one
    request to the server), each backward one push_multi."""
    tables = make_tables(client, tname, "sgd", lr=0.1)
    client.create_table(tname + "third", dim=4, partitions=2,
                        capacity=4096, optimizer="adagrad", lr=0.1)
    tables["third"] = client.open(tname + "third")
    ebc = et.EmbeddingBagCollection(tables, pooling="sum")
    calls = {"pull_multi": 0, "push_multi": 0}
    for name in calls:
        real = getattr(client, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*a, **kw)
        setattr(client, name, counted)
    try:
        for feats, x, y in batches(3, steps=3):
            feats = dict(feats)
            feats["third"] = (torch.tensor([1, 2, 2]), torch.tensor([3]))
            before = dict(calls)
            r0 = sum(v for _, t, n, v in client.stats()
                     if t is None and n == "requests")
            out = ebc(feats)
            r1 = sum(v for _, t, n, v in client.stats()
                     if t is None and n == "requests")
            r2 = sum(v for _, t, n, v in client.stats()
                     if t is None and n == "requests")
            # the frames between the counts: one MULTI_PULL for the three
            # tables, and the stats call's own (r2 - r1 of them)
            assert calls["pull_multi"] == before["pull_multi"] + 1
            assert r1 - r0 == (r2 - r1) + 1, (r0, r1, r2)
            loss = sum(o.sum() for o in out.values())
            loss.backward()
            ebc.flush()
            assert calls["push_multi"] == before["push_multi"] + 1
    finally:
        for name in calls:
            delattr(client, name)
    assert calls == {"pull_multi": 3, "push_multi": 3}


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_sgd_equivalence(client, tname, pooling):
    train_pair(client, tname, "sgd", pooling, {"lr": 0.1},
               lambda p: torch.optim.SGD(p, lr=0.1))


def test_adagrad_equivalence(client, tname):
    # embkv adagrad(lr, eps, initial_accum) == torch Adagrad with the same
    # lr, eps and initial_accumulator_value, lr_decay = weight_decay = 0.
    train_pair(client, tname, "adagrad", "sum",
               {"lr": 0.1, "eps": 1e-8, "initial_accum": 0.1},
               lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-8,
                                             initial_accumulator_value=0.1))


def test_prefetch_after_backward_is_exact(client, tname):
    train_pair(client, tname, "sgd", "mean", {"lr": 0.1},
               lambda p: torch.optim.SGD(p, lr=0.1), prefetch=True)


def test_pooling_none_matches_embedding(client, tname):
    client.create_table(tname, dim=DIM, partitions=2, capacity=1024,
                        lr=0.2, init="zeros")
    t = client.open(tname)
    ref = nn.Embedding(VOCAB, DIM, sparse=True)
    t.assign(torch.arange(VOCAB), ref.weight.detach())
    m = et.EmbeddingBag(t, pooling="none")
    opt = torch.optim.SGD(ref.parameters(), lr=0.2)
    keys = torch.tensor([4, 4, 9, 0, 4])
    w = torch.randn(5, DIM)
    out = m(keys)
    assert out.shape == (5, DIM)
    torch.testing.assert_close(out, ref(keys))
    (out * w).sum().backward()
    (ref(keys) * w).sum().backward()
    opt.step()
    m.flush()
    torch.testing.assert_close(t.pull(torch.arange(VOCAB)),
                               ref.weight.detach(), rtol=1e-5, atol=1e-7)


def test_pooling_values_and_empty_bags(client, tname):
    client.create_table(tname, dim=2, partitions=2, capacity=1024,
                        init="zeros")
    t = client.open(tname)
    t.assign([1, 2, 3], np.array([[1, 10], [2, 20], [3, 30]], np.float32))
    keys = torch.tensor([1, 1, 2, 3])
    lengths = torch.tensor([3, 0, 1, 0])
    s = et.EmbeddingBag(t, "sum")(keys, lengths)
    assert s.tolist() == [[4, 40], [0, 0], [3, 30], [0, 0]]
    mean = et.EmbeddingBag(t, "mean")(keys, offsets=torch.tensor([0, 3, 3, 4]))
    torch.testing.assert_close(mean, torch.tensor(
        [[4 / 3, 40 / 3], [0, 0], [3, 30], [0, 0]]))
    # no keys at all: B bags of zeros
    z = et.EmbeddingBag(t, "sum")(torch.tensor([], dtype=torch.int64),
                                  torch.zeros(3, dtype=torch.int64))
    assert z.shape == (3, 2) and not z.any()


def test_infer_mode_inserts_and_pushes_nothing(client, tname):
    client.create_table(tname, dim=4, partitions=2, capacity=1024,
                        init="uniform", init_a=1.0, init_b=2.0)
    t = client.open(tname)
    m = et.EmbeddingBag(t, "sum").eval()
    out = m(torch.tensor([7, 8]), torch.tensor([1, 1]))
    assert not out.any()                 # missing keys read as zeros
    assert not out.requires_grad
    _, found = t.pull([7, 8], mode="infer", found=True)
    assert not found.any()               # and were not inserted
    m.train()
    out = m(torch.tensor([7]), torch.tensor([1]))
    assert (out >= 1).all()              # train mode inserts (init 1..2)
    before = t.pull([7])
    out.sum().backward()
    m.flush()
    assert (t.pull([7]) < before).all()  # the push landed (sgd lr 0.01)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(torch.tensor([7]), torch.tensor([1])),
                                   t.pull(torch.tensor([7])))


def test_module_errors(client, tname):
    client.create_table(tname, dim=4, partitions=2, capacity=1024)
    t = client.open(tname)
    with pytest.raises(ValueError, match="pooling"):
        et.EmbeddingBag(t, "max")
    with pytest.raises(TypeError):
        et.EmbeddingBagCollection({"a": "not a table"})
    m = et.EmbeddingBag(t, "sum")
    with pytest.raises(ValueError, match="lengths or offsets"):
        m(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="sum to"):
        m(torch.tensor([1, 2]), torch.tensor([1]))
    with pytest.raises(TypeError, match="integers"):
        m(torch.tensor([1.0]), torch.tensor([1]))
    ebc = et.EmbeddingBagCollection({"a": t})
    with pytest.raises(KeyError, match="no table"):
        ebc({"b": (torch.tensor([1]), torch.tensor([1]))})
    # a dropped table: the pull raises EmbkvError naming the table
    client.drop_table(tname)
    with pytest.raises(embkv.EmbkvError) as e:
        m(torch.tensor([1]), torch.tensor([1]))
    assert e.value.status == embkv.ENOTABLE and tname in str(e.value)
