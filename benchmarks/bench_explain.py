"""Benchmark: explanation throughput on the 784-512-256-10 ReLU classifier (float64).

Run from the project root (``--tuned`` raises glibc's malloc thresholds, as ``refimpl`` does):

    python benchmarks/bench_explain.py --tuned

Random weights and inputs in [-1, 1]: the cost does not depend on the values.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from refimpl._malloc import tune_malloc
from refimpl.explain.gradient import gradient_x_input, sensitivity
from refimpl.explain.lrp import RuleMap, lrp
from refimpl.explain.rules import LRP0, ZB, AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZPlus
from refimpl.nn.network import mlp


def rate(fn, n: int, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


if __name__ == "__main__":
    print(f"malloc tuned: {tune_malloc() if '--tuned' in sys.argv else False}")
    net = mlp([784, 512, 256, 10], rng=0)
    x = np.random.default_rng(0).uniform(-1, 1, (1000, 784))
    cases = {
        "sensitivity": lambda: sensitivity(net, x),
        "gradient_x_input": lambda: gradient_x_input(net, x),
        "lrp-0": lambda: lrp(net, x, LRP0()),
        "lrp-epsilon": lambda: lrp(net, x, Epsilon(0.25)),
        "lrp-gamma (generalized)": lambda: lrp(net, x, Gamma(variant="generalized")),
        "z^B + alpha2beta1 + epsilon": lambda: lrp(
            net, x, RuleMap(first=ZB(), middle=AlphaBeta(2, 1), last=Epsilon(0.25))
        ),
        "z^B + z+ + LRP-0": lambda: lrp(net, x, RuleMap(first=ZB(), middle=ZPlus(), last=LRP0())),
        "w^2 + flat": lambda: lrp(net, x, RuleMap(Flat(), first=WSquare())),
    }
    for name, fn in cases.items():
        print(f"{name:30s} {rate(fn, len(x)):>10,.0f} samples/s")
