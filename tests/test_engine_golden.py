"""The LRP engine's results stay bitwise the same across rewrites (issue 10).

``tests/data/engine_golden.json`` holds, for every rule, option set and preset on small random
dense nets, a SHA-256 of the relevances (input and every layer) and of the budget, as computed by
the engine before the rewrite to ``linear``/``linear_T`` with prepared transforms. The new engine
must reproduce every one of them. Signed zeros are normalized (``-0.0`` and ``0.0`` are the same
relevance); everything else is compared bit for bit. The digests depend on the BLAS kernels only
through matrix products of at most 9 x 9, which these machines compute identically run to run.

Regenerate (only when a change of results is intended, and say so in the commit):

    python -m tests.test_engine_golden --write
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from refimpl.explain.lrp import RuleMap, lrp
from refimpl.explain.presets import PRESETS
from refimpl.explain.rules import (
    LRP0,
    ZB,
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    WSquare,
    ZPlus,
)
from refimpl.nn.network import mlp

from .nets import randomize_biases

GOLDEN = Path(__file__).parent / "data" / "engine_golden.json"


def nets():
    """Small random nets: ReLU with and without biases, with exact zeros, and a tanh net."""
    out = {}
    for name, sizes, act, bias, seed in (
        ("relu-bias", (6, 5, 4, 3), "relu", True, 0),
        ("relu-nobias", (7, 6, 3), "relu", False, 1),
        ("relu-deep", (5, 9, 7, 6, 4), "relu", True, 2),
        ("tanh", (6, 5, 3), "tanh", True, 3),
    ):
        net = mlp(sizes, activation=act, bias=bias, rng=seed)
        rng = np.random.default_rng(seed + 10)
        if bias:
            randomize_biases(net, rng)
        for layer in net.layers[::2]:  # exact zeros: empty shares and zero denominators
            W = layer.params["W"]
            W[rng.random(W.shape) < 0.2] = 0.0
        x = rng.uniform(0, 1, (3, sizes[0]))
        x[0, :2] = 0.0
        x[1, :] = np.round(x[1, :] * 4) / 4  # ties and exact values
        out[name] = (net, x)
    return out


def rules():
    """(id, rule or RuleMap) for every rule, its options, and every preset's version."""
    out = [
        ("lrp-0", LRP0()),
        ("lrp-0-nobias", LRP0(bias="none")),
        ("eps", Epsilon(0.1)),
        ("eps-nobias", Epsilon(0.01, bias="none")),
        ("eps-unsigned", Epsilon(0.1, stabilizer_kind="unsigned")),
        ("eps-zero-only", Epsilon(0.1, stabilizer_kind="zero_only")),
        ("eps-relative", Epsilon(0.1, stabilizer_kind="relative")),
        ("ab21", AlphaBeta(2, 1)),
        ("ab10", AlphaBeta(1, 0)),
        ("ab32-split", AlphaBeta(3, 2, bias="split", inputs="split")),
        ("ab21-full-weights", AlphaBeta(2, 1, bias="full", inputs="weights", eps=1e-3)),
        ("zplus", ZPlus()),
        ("zplus-split", ZPlus(bias="split", inputs="split", eps=1e-6)),
        ("w2", WSquare()),
        ("w2-squared", WSquare(bias="squared", eps=1e-6)),
        ("flat", Flat()),
        ("flat-eps", Flat(eps=1e-3)),
        ("gamma", Gamma(0.25)),
        ("gamma-raw", Gamma(0.5, bias="raw", inputs="weights")),
        ("gamma-none", Gamma(0.25, bias="none")),
        ("gamma-gen", Gamma(0.25, "generalized")),
        ("gamma-gen-none", Gamma(1.0, "generalized", bias="none", eps=1e-6)),
        (
            "map-zb-ab-eps",
            RuleMap(first=ZB(low=0.0, high=1.0), middle=AlphaBeta(2, 1), last=Epsilon(0.25)),
        ),
        ("map-zb-arrays", RuleMap(ZPlus(), first=ZB(low=np.zeros(1), high=np.ones(1)))),
        ("map-w2-flat", RuleMap(Flat(), first=WSquare())),
    ]
    for p in PRESETS.values():
        for name in sorted(p.rules):
            try:
                out.append((f"{p.name}:{name}", p.rule(name)))
            except ValueError:
                continue
    return out


def needs_nonnegative_inputs_only(rule) -> bool:
    rs = [rule.default, rule.first, rule.middle, rule.last] if isinstance(rule, RuleMap) else [rule]
    return any(getattr(r, "inputs", None) == "nonnegative" for r in rs if r is not None)


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float64) + 0.0)  # -0.0 -> 0.0
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def compute(net, x, rule, seed, dtype):
    net = copy.deepcopy(net).astype(dtype)
    try:
        e = lrp(net, x.astype(dtype), rule, target=0, seed=seed, keep_layers=True)
    except ValueError as exc:  # e.g. nonnegative inputs on a tanh net: the error is the result
        return "error: " + str(exc).split(":")[0]
    budget = [
        np.stack([lb.relevance_out, lb.relevance_in, lb.bias, lb.stabilizer, lb.dropped])
        for _, _, lb in e.budget.layers
    ]
    return digest(e.R, *e.layers, *budget)


def cases():
    for net_name, (net, x) in nets().items():
        for rule_id, rule in rules():
            for seed in ("logit", "onehot"):
                for dtype in ("float64", "float32"):
                    yield f"{net_name}|{rule_id}|{seed}|{dtype}", net, x, rule, seed, dtype


def write() -> None:
    table = {key: compute(net, x, rule, seed, dt) for key, net, x, rule, seed, dt in cases()}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    print(f"wrote {len(table)} digests to {GOLDEN}")


def test_every_rule_option_and_preset_reproduces_the_stored_results_bitwise():
    table = json.loads(GOLDEN.read_text())
    seen, wrong = set(), []
    for key, net, x, rule, seed, dt in cases():
        seen.add(key)
        got = compute(net, x, rule, seed, dt)
        if key not in table:
            wrong.append(f"{key}: not in {GOLDEN.name}")
        elif got != table[key]:
            wrong.append(f"{key}: {got} != stored {table[key]}")
    assert not wrong, f"{len(wrong)} of {len(seen)} cases differ:\n" + "\n".join(wrong[:20])
    assert seen == set(table), sorted(set(table) - seen)[:10]


@pytest.mark.parametrize("key", ["relu-bias|ab21|logit|float64", "tanh|zplus|logit|float64"])
def test_golden_table_holds_results_and_errors(key):
    value = json.loads(GOLDEN.read_text())[key]
    assert len(value) == 32 or value.startswith("error: ")


if __name__ == "__main__" and "--write" in sys.argv:
    write()
