"""Benchmark: training throughput of the 784-512-256-10 classifier, float64 and float32.

Run from the project root:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
        python benchmarks/bench_train.py

The allocator variables avoid page-fault slowdowns from large temporaries (DESIGN.md sec. 3);
the script prints whether they were set. ``--tuned`` instead calls
``refimpl._malloc.tune_malloc`` (what the ``refimpl`` command does) and measures that.
Synthetic inputs: throughput does not depend on the data.
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
        opt.step(net.backward(caches, dz)[1])
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
    print(f"malloc thresholds {alloc}; cores {os.cpu_count()}")
    for dtype in (np.float64, np.float32):
        tr, ev = bench(dtype)
        print(f"{np.dtype(dtype).name}: train {tr:,.0f} samples/s, inference {ev:,.0f} samples/s")
