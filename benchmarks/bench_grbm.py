"""Benchmark: CD-5 training throughput of the 784-500 Gaussian-Bernoulli RBM, float64.

Run from the project root:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
        python benchmarks/bench_grbm.py

The allocator variables avoid page-fault slowdowns from large temporaries (DESIGN.md sec. 3);
the script prints whether they were set. ``--tuned`` instead calls
``refimpl._malloc.tune_malloc`` (what the ``refimpl`` command does) and measures that.
It also prints ``OPENBLAS_NUM_THREADS``: on a 2-core machine that other processes keep busy,
OpenBLAS with 2 threads ran these (100 x 784) x (784 x 500) products about 20x slower than with
1 thread (threads spin waiting for a core); on an idle machine 2 threads are faster.
Synthetic inputs (uniform in [-1, 1]): throughput does not depend on the data.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from refimpl._malloc import tune_malloc
from refimpl.interpret.grbm import GaussianRBM, train_grbm


def bench(n: int = 4000, batch: int = 100, epochs: int = 2) -> float:
    """Samples per second of CD-5 on a 784-500 GRBM (DESIGN.md recipe), best epoch."""
    x = np.random.default_rng(0).uniform(-1, 1, (n, 784))
    rbm = GaussianRBM.from_data(x, 500, sigma=0.5, rng=0)
    history = train_grbm(rbm, x, epochs=epochs, batch_size=batch, k=5, rng=0, log=None)
    return max(history.samples_per_second)


if __name__ == "__main__":
    if "--tuned" in sys.argv:
        alloc = f"tuned by mallopt: {tune_malloc()}"
    else:
        alloc = "environment " + ("set" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "NOT set")
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "not set")
    print(f"malloc thresholds {alloc}; cores {os.cpu_count()}; OPENBLAS_NUM_THREADS {threads}")
    rate = bench()
    print(
        f"GRBM 784-500 CD-5 float64, batch 100: {rate:,.0f} samples/s "
        f"({8000 / rate:.1f} s per epoch of 8,000 digits)"
    )
