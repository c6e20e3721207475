"""
embkv.torch: embedding lookups on embkv tables as PyTorch modules.

    tables = {"user": client.open("user"), "item": client.open("item")}
    ebc = embkv.torch.EmbeddingBagCollection(tables, pooling="sum")
    out = ebc({"user": (keys, lengths), "item": (keys2, lengths2)})
    loss(mlp(torch.cat([out["user"], out["item"]], 1))).backward()
    dense_opt.step()          # embeddings were updated server-side

Input per feature (TorchRec's jagged layout): a 1-D integer tensor of keys
(all bags concatenated) plus either lengths (B,) or offsets (B,)
(offsets[i] is where bag i starts, nn.EmbeddingBag's default). Pooling:
"sum", "mean" (an empty bag gives zeros, like nn.EmbeddingBag) or "none"
(one row per key, shape (N, dim); lengths/offsets not needed).

How training works: forward pulls the rows of the batch's keys (train
mode: missing keys are inserted and initialised by the server; duplicate
keys are fetched once), and the pooling runs as ordinary torch ops on them.
An autograd Function around the pulled rows has a backward that pushes
d(loss)/d(rows) for the keys; the client sums duplicate keys and the
server applies the table's optimizer. So a loop of forward,
loss.backward() and a torch optimizer for the dense parameters trains the
embeddings too; the module has no embedding parameters of its own.

One round trip per server and step: a forward pulls all its features'
keys with one Client.pull_multi (one MULTI_PULL request per server,
whatever the number of tables), and the backward pushes all their
gradients with one Client.push_multi (one MULTI_PUSH request per server).

Pushes are sent asynchronously from backward (on a thread of their own;
the push and the rest of backward overlap); the next forward, prefetch()
or flush() waits for them first, so every pull sees every earlier push:
results are those of synchronous training. In eval() mode (or train=False) pulls are
infer-mode: nothing is inserted, a missing key reads as zeros, nothing is
pushed.

Prefetch: prefetch(features) starts async pulls of the next batch's rows;
the forward whose keys equal them uses those rows instead of pulling.
Call it after loss.backward(): the pull then overlaps the dense
optimizer step and data loading, and it still sees this step's pushes
(it waits for them before it starts). Called earlier (before backward), a
key in both batches would miss this step's update (one step stale).

Equivalence with torch (tests/test_torch.py checks both to 1e-5 over 20
steps): an embkv "sgd" table with lr L matches nn.EmbeddingBag(sparse=True)
trained by torch.optim.SGD(lr=L) (no momentum, dampening, weight decay or
nesterov). An "adagrad" table with lr L, eps E and initial_accum A matches
torch.optim.Adagrad(lr=L, eps=E, initial_accumulator_value=A, lr_decay=0,
weight_decay=0): both do acc += g*g; w -= L * g / (sqrt(acc) + E) on the
rows in the batch, with the duplicates' gradients summed first. (embkv's
defaults are eps 1e-8 and initial_accum 0.1, torch's 1e-10 and 0: set
one side to the other's.) Caveat: two features on one table push
separately (two sections of one push_multi), so a key in both gets two
optimizer updates (equal to one for SGD only).

Device tensors: a feature whose keys are a CUDA tensor goes through
libembkv's device API (embkv.gpu, include/embkv/embkv_gpu.h) when
embkv.gpu.probe() says it works (status 0; probed once per process, on
the first CUDA keys): its rows are pulled straight into a tensor on the
keys' device and its gradients pushed from the device (duplicates
deduplicated and summed on the GPU), ordered on torch's current CUDA
stream (the one current when forward, prefetch() or the backward runs).
That path is one request per table and server (one embkv.gpu.pull per
feature in forward, one embkv.gpu.push per feature in backward), not the
single multi-table round trip above: the device API takes one table per
call (there is no device MULTI_PULL/MULTI_PUSH entry point), so a step
costs as many round trips as device features; the features with host
keys in the same forward still share one pull_multi/push_multi. Pushes
stay asynchronous (flush() waits for them), prefetch() pulls device
features too, infer mode is the same. Without the device path (a
libembkv built without CUDA, no device: probe status -EOPNOTSUPP or
-ENODEV), CUDA keys are copied to host for the host calls and the rows
come back on the keys' device, as before.
"""
import contextlib
import threading

import torch
from torch import nn

import embkv
from embkv import gpu as _gpu

_POOLINGS = ("sum", "mean", "none")

# Keys on these devices take the device path when the probe allows it.
_DEVICE_TYPES = ("cuda",)
_probe_lock = threading.Lock()
_probe_status = None     # embkv.gpu.probe()'s status, once per process


def device_path():
    """True when CUDA keys go through libembkv's device API (embkv.gpu):
    its probe's status is 0. Probed on the first call, then cached for
    the process."""
    global _probe_status
    with _probe_lock:
        if _probe_status is None:
            _probe_status = _gpu.probe()["status"]
        return _probe_status == 0


def _on_device(keys):
    """Whether keys (a tensor) take the device path."""
    return keys.device.type in _DEVICE_TYPES and device_path()


def _stream_of(t):
    """torch's current CUDA stream of t's device (None off CUDA): what a
    device call made on another thread must be ordered on."""
    return torch.cuda.current_stream(t.device) if t.is_cuda else None


def _on_stream(stream):
    return torch.cuda.stream(stream) if stream is not None \
        else contextlib.nullcontext()


def _segments(n, lengths, offsets, device):
    """(segment id per key, lengths) from lengths or offsets."""
    if lengths is not None:
        lengths = torch.as_tensor(lengths, dtype=torch.int64)
        if lengths.dim() != 1:
            raise ValueError("embkv.torch: lengths must be 1-D")
        if (lengths < 0).any():
            raise ValueError("embkv.torch: negative length")
    elif offsets is not None:
        # B bags: offsets[i] is where bag i starts (nn.EmbeddingBag's
        # default, include_last_offset=False)
        offsets = torch.as_tensor(offsets, dtype=torch.int64).cpu()
        if offsets.dim() != 1:
            raise ValueError("embkv.torch: offsets must be 1-D")
        if offsets.numel() and int(offsets[0]) != 0:
            raise ValueError("embkv.torch: offsets must start at 0")
        lengths = torch.cat([offsets[1:], torch.tensor([n])]) - offsets
        if (lengths < 0).any():
            raise ValueError("embkv.torch: offsets must not decrease and "
                             "not pass the %d keys" % n)
    else:
        raise ValueError("embkv.torch: pooling needs lengths or offsets")
    lengths = lengths.cpu()
    if int(lengths.sum()) != n:
        raise ValueError("embkv.torch: lengths sum to %d, %d keys given"
                         % (int(lengths.sum()), n))
    seg = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    return seg.to(device), lengths.to(device)


class _Task:
    """A call run on a thread of its own (libembkv releases the GIL), its
    result or exception taken once with wait(). It counts as a pending
    operation of each of its tables until it ends, so Table.close() waits
    for it (as it does for push_async/pull_async operations)."""

    def __init__(self, fn, *args, tables=()):
        self._result = self._error = None
        self._tables = list({id(t): t for t in tables}.values())
        for t in self._tables:
            with t._lock:
                t._ops.add(self)
        self._thread = threading.Thread(target=self._run, args=(fn, args),
                                        daemon=True)
        self._thread.start()

    def _run(self, fn, args):
        try:
            self._result = fn(*args)
        except BaseException as e:  # handed to wait()
            self._error = e
        finally:
            for t in self._tables:
                with t._lock:
                    t._ops.discard(self)

    def wait(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def _by_client(tables, feats):
    """[(client, [feature])]: the features grouped by their table's client
    (one multi call each; one group in the usual case)."""
    groups = {}
    for f in feats:
        c = tables[f]._client
        groups.setdefault(id(c), (c, []))[1].append(f)
    return list(groups.values())


class _Rows(torch.autograd.Function):
    """Identity on the rows pulled for several features; its backward
    pushes all their gradients at once (one push_multi)."""

    @staticmethod
    def forward(ctx, anchor, owner, entries, *rows):
        ctx.owner, ctx.entries = owner, entries
        ctx.set_materialize_grads(False)
        return rows

    @staticmethod
    def backward(ctx, *grads):
        ctx.owner._push([(t, k, g, dev)
                         for (t, k, dev), g in zip(ctx.entries, grads)
                         if g is not None])
        return (None, None, None) + (None,) * len(grads)


class EmbeddingBagCollection(nn.Module):
    """Pooled lookups of several features, each on an embkv table.

    tables: {feature: embkv.Table} (several features may share a table).
    pooling: "sum", "mean" or "none" for all, or {feature: pooling}.
    forward(features) with features {feature: keys | (keys, lengths) |
    (keys, None, offsets)} returns {feature: tensor}.
    """

    def __init__(self, tables, pooling="sum", train=True):
        super().__init__()
        if not tables:
            raise ValueError("embkv.torch: no tables")
        for f, t in tables.items():
            if not isinstance(t, embkv.Table):
                raise TypeError("embkv.torch: table of %r is not an "
                                "embkv.Table" % (f,))
        self.tables = dict(tables)
        if isinstance(pooling, str):
            pooling = {f: pooling for f in self.tables}
        for f, p in pooling.items():
            if p not in _POOLINGS:
                raise ValueError("embkv.torch: pooling %r of %r: one of %s"
                                 % (p, f, ", ".join(_POOLINGS)))
        missing = set(self.tables) - set(pooling)
        if missing:
            raise ValueError("embkv.torch: no pooling for %s"
                             % ", ".join(sorted(missing)))
        self.pooling = dict(pooling)
        self.train(train)
        # What autograd hangs the push on: not a Parameter (no optimizer
        # should see it), never updated.
        self._anchor = torch.zeros(0, requires_grad=True)
        self._pending = []      # async pushes of the last backward
        self._prefetched = None  # (training, {feature: (keys, op)})

    @property
    def dims(self):
        return {f: t.dim for f, t in self.tables.items()}

    # Pushes -----------------------------------------------------------------

    def _push(self, entries):
        """One push_multi (per client) of the host entries of [(table,
        keys, grad, device path)], and the device ones one embkv.gpu.push
        each (on the stream current here), started on threads; flush()
        waits for them."""
        groups = {}
        dev = []
        for t, k, g, d in entries:
            if d:
                dev.append((t, k, g.to(torch.float32).contiguous(),
                            _stream_of(g)))
                continue
            groups.setdefault(id(t._client), (t._client, []))[1].append(
                (t, k, g.contiguous()))
        for client, es in groups.values():
            self._pending.append(_Task(client.push_multi, es,
                                       tables=[e[0] for e in es]))
        if dev:
            self._pending.append(_Task(self._push_device, dev,
                                       tables=[e[0] for e in dev]))

    @staticmethod
    def _push_device(entries):
        for t, k, g, stream in entries:
            with _on_stream(stream):
                _gpu.push(t, k, g)

    def flush(self):
        """Waits for the pushes of the last backward (raises the first
        error). forward and prefetch call it."""
        pending, self._pending = self._pending, []
        err = None
        for op in pending:
            try:
                op.wait()
            except embkv.EmbkvError as e:
                err = err or e
        if err:
            raise err

    # Pulls ------------------------------------------------------------------

    @staticmethod
    def _split(feature, v):
        if isinstance(v, torch.Tensor):
            return v, None, None
        if isinstance(v, (tuple, list)) and 1 <= len(v) <= 3:
            v = tuple(v) + (None,) * (3 - len(v))
            return v[0], v[1], v[2]
        raise TypeError("embkv.torch: feature %r: keys, (keys, lengths) or "
                        "(keys, None, offsets)" % (feature,))

    @staticmethod
    def _norm_keys(keys):
        """(int64 contiguous keys, device path): on their device for the
        device path, else on the CPU."""
        keys = torch.as_tensor(keys)
        if keys.dim() != 1:
            raise ValueError("embkv.torch: keys must be 1-D")
        if keys.dtype.is_floating_point or keys.dtype == torch.bool:
            raise TypeError("embkv.torch: keys must be integers")
        if _on_device(keys):
            return keys.detach().to(torch.int64).contiguous(), True
        return keys.detach().to("cpu", torch.int64).contiguous(), False

    def _keys_of(self, features):
        """({feature: keys}, {features on the device path})."""
        keys, dev = {}, set()
        for f, v in features.items():
            if f not in self.tables:
                raise KeyError("embkv.torch: no table for feature %r" % (f,))
            keys[f], d = self._norm_keys(self._split(f, v)[0])
            if d:
                dev.add(f)
        return keys, dev

    def _pull(self, keys, mode, dev=frozenset(), streams=None):
        """{feature: rows} of {feature: keys}: the host features with one
        pull_multi per client (one request per server for all of them),
        the device features (dev) one embkv.gpu.pull each, on their
        stream in streams (torch's current one where the pull is asked
        for: this may run on a thread)."""
        out = {}
        host = {f: k for f, k in keys.items() if f not in dev}
        for client, fs in _by_client(self.tables, host):
            rows = client.pull_multi([(self.tables[f], keys[f]) for f in fs],
                                     mode=mode)
            out.update(zip(fs, rows))
        for f in keys:
            if f in dev:
                with _on_stream((streams or {}).get(f)):
                    out[f] = _gpu.pull(self.tables[f], keys[f], mode=mode)
        return out

    @staticmethod
    def _streams(keys, dev):
        return {f: _stream_of(keys[f]) for f in dev}

    def _mode(self):
        return "train" if self.training else "infer"

    def prefetch(self, features, exact=True):
        """Starts pulling the rows of a later batch's features (see the
        module's doc for when to call it). exact=False does not wait for
        the pushes of the last backward first: the pull overlaps them too,
        and a key in both batches may miss that update (embkv-demo's
        pipelining)."""
        if exact:
            self.flush()
        self.drop_prefetch()
        keys, dev = self._keys_of(features)
        self._prefetched = (self.training, keys, dev,
                            _Task(self._pull, keys, self._mode(), dev,
                                  self._streams(keys, dev),
                                  tables=[self.tables[f] for f in keys]))

    def drop_prefetch(self):
        if self._prefetched is not None:
            task = self._prefetched[-1]
            self._prefetched = None
            try:
                task.wait()
            except embkv.EmbkvError:
                pass

    def _rows(self, features):
        """{feature: (keys, rows, device path)}: the prefetched rows where
        a prefetch of the same keys (and mode and path) exists, the others
        pulled now (the host ones in one pull_multi)."""
        keys, dev = self._keys_of(features)
        pre = {}
        if self._prefetched is not None:
            training, pkeys, pdev, task = self._prefetched
            self._prefetched = None
            rows = task.wait()
            if training == self.training:
                pre = {f: rows[f] for f, k in pkeys.items()
                       if f in keys and (f in pdev) == (f in dev)
                       and k.device == keys[f].device
                       and torch.equal(k, keys[f])}
        todo = {f: k for f, k in keys.items() if f not in pre}
        got = dict(pre)
        if todo:
            tdev = dev & set(todo)
            got.update(self._pull(todo, self._mode(), tdev,
                                  self._streams(todo, tdev)))
        return {f: (keys[f], got[f], f in dev) for f in keys}

    def forward(self, features):
        self.flush()
        pulled = self._rows(features)
        if self.training and torch.is_grad_enabled() and pulled:
            fs = list(pulled)
            rows = _Rows.apply(self._anchor, self,
                               [(self.tables[f], pulled[f][0], pulled[f][2])
                                for f in fs],
                               *[pulled[f][1] for f in fs])
            pulled = {f: (pulled[f][0], r, pulled[f][2])
                      for f, r in zip(fs, rows)}
        out = {}
        for f, v in features.items():
            keys_in, lengths, offsets = self._split(f, v)
            keys, rows, _ = pulled[f]
            device = keys_in.device if isinstance(keys_in, torch.Tensor) \
                else torch.device("cpu")
            table = self.tables[f]
            rows = rows.to(device)
            p = self.pooling[f]
            if p == "none":
                out[f] = rows
                continue
            seg, lens = _segments(keys.numel(), lengths, offsets, device)
            pooled = torch.zeros((lens.numel(), table.dim), device=device,
                                 dtype=rows.dtype).index_add(0, seg, rows)
            if p == "mean":
                pooled = pooled / lens.clamp(min=1).unsqueeze(1).to(
                    rows.dtype)
            out[f] = pooled
        return out


class EmbeddingBag(nn.Module):
    """One table: forward(keys, lengths=None, offsets=None) -> (B, dim)
    pooled rows ("sum"/"mean"), or (N, dim) with pooling "none"."""

    def __init__(self, table, pooling="sum", train=True):
        super().__init__()
        self.ebc = EmbeddingBagCollection({"x": table}, pooling, train)
        self.train(train)

    def forward(self, keys, lengths=None, offsets=None):
        return self.ebc({"x": (keys, lengths, offsets)})["x"]

    def prefetch(self, keys, exact=True):
        self.ebc.prefetch({"x": keys}, exact)

    def flush(self):
        self.ebc.flush()
