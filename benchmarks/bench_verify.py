"""Benchmark: ``refimpl verify`` on the 784-512-256-10 ReLU classifier (100 samples).

Run from the project root (``--tuned`` raises glibc's malloc thresholds, as ``refimpl`` does):

    python benchmarks/bench_verify.py --tuned

Times a verification that matches (the reference, the float32 rounding estimate: six
explanations in all) and one that does not, with its diagnosis (every preset, every single rule
option and pairs of them, the other methods: about 125 configurations on up to 32 failing
samples). Random weights and inputs in [-1, 1].
"""

from __future__ import annotations

import copy
import sys
import time

import numpy as np

from refimpl._malloc import tune_malloc
from refimpl.explain.methods import explain
from refimpl.nn.network import mlp
from refimpl.verify import verify


def best_of(fn, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":
    print(f"malloc tuned: {tune_malloc() if '--tuned' in sys.argv else False}")
    net = mlp([784, 512, 256, 10], rng=0)
    x = np.random.default_rng(0).uniform(-1, 1, (100, 784))
    net32 = copy.deepcopy(net).astype(np.float32)
    ab = {"alpha": 2.0, "beta": 1.0, "inputs": "split"}
    R32 = explain(net32, x.astype(np.float32), "lrp-alpha-beta", **ab).R
    Rz = explain(net, x, "lrp-alpha-beta", preset="zennit", alpha=2.0, beta=1.0).R
    for name, R in (("float32 candidate, match", R32), ("Zennit's numbers, diagnosis", Rz)):
        report = verify(net, x, R, "lrp-alpha-beta", **ab)
        seconds = best_of(lambda R=R: verify(net, x, R, "lrp-alpha-beta", **ab))
        verdict = "match" if report.passed else report.diagnosis_message()
        print(f"{name:30s} {seconds:6.2f} s   {verdict}")
