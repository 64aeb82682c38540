"""Benchmark: training throughput of the 784-512-256-10 classifier, float64 and float32.

Run from the project root:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
        python benchmarks/bench_train.py

The allocator variables avoid page-fault slowdowns from large temporaries (DESIGN.md sec. 3);
the script prints whether they were set. ``--tuned`` instead calls
``refimpl._malloc.tune_malloc`` (what the ``refimpl`` command does) and measures that.
Synthetic inputs: throughput does not depend on the data.

With PyTorch installed (extra ``[torch]``) the same loop (same net, init, random-shift
augmentation in NumPy, softmax cross-entropy, Adam) runs in PyTorch on the CPU, interleaved
with refimpl's (median of ``--repeats`` rounds), and the ratio is printed: issue 10's target is
refimpl within 1.2x of PyTorch.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from refimpl._malloc import tune_malloc
from refimpl.nn.losses import softmax_cross_entropy
from refimpl.nn.network import mlp
from refimpl.nn.optim import Adam
from refimpl.nn.train import evaluate, random_shift


def torch_train_rate(dtype, steps: int = 60, batch: int = 128) -> float | None:
    """Samples/s of the same training loop in PyTorch on the CPU, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    from refimpl.interop.torch import to_torch

    rng = np.random.default_rng(0)
    model = to_torch(mlp([784, 512, 256, 10], rng=0, dtype=dtype))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = rng.uniform(-1, 1, (batch * steps, 784)).astype(dtype)
    y = torch.from_numpy(rng.integers(0, 10, batch * steps))
    start = time.perf_counter()
    for s in range(steps):
        xb = random_shift(x[s * batch : (s + 1) * batch], 2, rng, (28, 28), -1.0)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(torch.from_numpy(xb)), y[s * batch : (s + 1) * batch])
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def bench(dtype, steps: int = 60, batch: int = 128) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    net = mlp([784, 512, 256, 10], rng=0, dtype=dtype)
    opt = Adam(net.parameters())
    x = rng.uniform(-1, 1, (batch * steps, 784)).astype(dtype)
    y = rng.integers(0, 10, batch * steps)
    start = time.perf_counter()
    for s in range(steps):
        xb = random_shift(x[s * batch : (s + 1) * batch], 2, rng, (28, 28), -1.0)
        z, caches = net.forward(xb)
        _, dz = softmax_cross_entropy(z, y[s * batch : (s + 1) * batch])
        opt.step(net.backward(caches, dz, input_grad=False)[1])
    train_rate = batch * steps / (time.perf_counter() - start)
    start = time.perf_counter()
    evaluate(net, x, y)
    eval_rate = len(x) / (time.perf_counter() - start)
    return train_rate, eval_rate


if __name__ == "__main__":
    if "--tuned" in sys.argv:
        alloc = f"tuned by mallopt: {tune_malloc()}"
    else:
        alloc = "environment " + ("set" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "NOT set")
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 5
    print(f"malloc thresholds {alloc}; cores {os.cpu_count()}; median of {repeats} rounds")
    print(
        "| dtype | refimpl train samples/s | inference samples/s | PyTorch train samples/s "
        "| PyTorch / refimpl |"
    )
    print("| --- | --- | --- | --- | --- |")
    for dtype in (np.float64, np.float32):
        ours, ev, theirs = [], [], []
        for _ in range(repeats):  # interleaved: both see the same machine load
            tr, e = bench(dtype)
            ours.append(tr)
            ev.append(e)
            t = torch_train_rate(dtype)
            if t is not None:
                theirs.append(t)
        tr, e = float(np.median(ours)), float(np.median(ev))
        t = float(np.median(theirs)) if theirs else None
        ratio = f"{t / tr:.2f}" if t else "-"
        print(
            f"| {np.dtype(dtype).name} | {tr:,.0f} | {e:,.0f} | "
            f"{f'{t:,.0f}' if t else '-'} | {ratio} |"
        )
