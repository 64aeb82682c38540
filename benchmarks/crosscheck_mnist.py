"""Cross-check on real digits: the real Zennit and Captum against refimpl's presets.

Needs the extra ``[torch]`` and a trained classifier (``refimpl train`` writes
``classifier.npz``). Run from the project root:

    python benchmarks/crosscheck_mnist.py classifier.npz [--n 100]

For every rule both peers have (refimpl/interop/peers.py), in float64 and float32, it runs the
peer on the first ``n`` digits of the held-out part of the MNIST test split (pixels in [-1, 1],
explaining the true class), checks the result with ``refimpl.verify.verify`` under the peer's
preset, and prints the verdict, the largest relative error and the time ``verify`` took. Then it
checks two peer results against the paper's rules and prints the diagnosis.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from refimpl.data.mnist import load_mnist, scale_pixels
from refimpl.interop.peers import (
    CAPTUM_RULES,
    ZENNIT_RULES,
    captum_relevance,
    captum_rule,
    zennit_relevance,
    zennit_rule,
)
from refimpl.nn.modelfile import load_model
from refimpl.verify import verify

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="classifier model file (refimpl train)")
    parser.add_argument("--n", type=int, default=100, help="digits (default: %(default)s)")
    args = parser.parse_args()
    net = load_model(args.model)
    data = load_mnist(log=print)
    x = scale_pixels(data.x_test[: args.n]).reshape(args.n, -1).astype(np.float64)
    y = data.y_test[: args.n].astype(np.int64)
    peers = (
        ("zennit", ZENNIT_RULES, zennit_relevance, zennit_rule),
        ("captum", CAPTUM_RULES, captum_relevance, captum_rule),
    )
    for dtype in (np.float64, np.float32):
        model, xx = copy.deepcopy(net).astype(dtype), x.astype(dtype)
        for lib, rules, run, make in peers:
            for method in rules:
                R = run(model, xx, y, lambda m=method, make=make: make(m))
                start = time.perf_counter()
                report = verify(model, xx, R, method, preset=lib, target=y)
                seconds = time.perf_counter() - start
                rel = (report.comparison.abs_error / report.reference_max).max()
                verdict = "match" if report.passed else "MISMATCH"
                print(
                    f"{np.dtype(dtype).name} {lib:7s} {method:15s} {verdict:8s} "
                    f"max rel err {rel:.2e}  verify {seconds:.2f} s"
                )
    net32, x32 = copy.deepcopy(net).astype(np.float32), x.astype(np.float32)
    R = zennit_relevance(net32, x32, y, lambda: zennit_rule("lrp-alpha-beta"))
    report = verify(net32, x32, R, "lrp-alpha-beta", alpha=2.0, beta=1.0, inputs="split", target=y)
    print("Zennit AlphaBeta(2, 1) checked against the paper:", report.diagnosis_message())
    R = captum_relevance(net32, x32, y, lambda: captum_rule("lrp-gamma"))
    report = verify(net32, x32, R, "lrp-gamma", inputs="weights", target=y)
    print("Captum GammaRule checked against the paper:", report.diagnosis_message())
