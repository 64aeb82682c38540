"""Benchmark: forward, gradient and every LRP rule against plain NumPy and, if installed, Zennit
and Captum, measured side by side in one process (issue 10's targets are ratios from this table).

    python benchmarks/bench_lrp.py              # the full table (a few minutes on 2 cores)
    python benchmarks/bench_lrp.py --quick      # batch 1 and 64, float32, fewer repeats
    python benchmarks/bench_lrp.py --no-memory  # skip the peak-memory subprocesses

For each architecture (784-300-100-10 and 784-1000-1000-1000-10 ReLU), dtype (float32, float64)
and batch (1, 64, 1024) it prints the median time of refimpl, the ratio to refimpl's own forward
pass, the ratio to a plain-NumPy version of the same formulas written below (parameters prepared
once, the forward pre-activations reused as denominators: the matmul floor of the algorithm),
and, with the ``[torch]`` extra, Zennit's and Captum's median time and refimpl / peer, where
refimpl runs under that peer's preset (the same formula; ``-``: the peer lacks the rule).
Implementations are interleaved round by round so that machine noise hits all of them alike.
Peak extra memory (``VmHWM`` after the call minus the resident size before it, one fresh
subprocess per method and implementation) is measured at batch 1024, float32. The header states
the machine, the BLAS, the thread count and the allocator settings.

Random weights (He init) and inputs in [0, 1] (z^B's box is [0, 1]): the cost does not depend
on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from refimpl._malloc import tune_malloc
from refimpl.explain.gradient import gradient_x_input
from refimpl.explain.lrp import RuleMap, lrp
from refimpl.explain.prepared import PreparedParameters
from refimpl.explain.presets import preset
from refimpl.explain.stabilizer import sign0
from refimpl.nn.network import mlp

ARCHS = {
    "784-300-100-10": (784, 300, 100, 10),
    "784-1000-1000-1000-10": (784, 1000, 1000, 1000, 10),
}
METHODS = ("forward", "gradient", "eps", "z+", "alpha2-beta1", "zB-first", "gamma", "w2", "flat")
EPS, GAMMA = 0.25, 0.25


# --- refimpl ----------------------------------------------------------------------------------


def refimpl_rules(method: str, library: str = "paper"):
    """The rule (or rule map) of ``method``, with ``library``'s conventions."""
    p = preset(library)
    if method == "eps":
        return p.rule("lrp-epsilon", eps=EPS)
    if method == "z+":
        return p.rule("lrp-zplus")
    if method == "alpha2-beta1":
        return p.rule("lrp-alpha-beta", alpha=2.0, beta=1.0)
    if method == "zB-first":
        return RuleMap(p.rule("lrp-epsilon", eps=EPS), first=p.rule("lrp-zb", low=0.0, high=1.0))
    if method == "gamma":
        return p.rule("lrp-gamma", gamma=GAMMA)
    if method == "w2":
        return p.rule("lrp-w2")
    if method == "flat":
        return p.rule("lrp-flat")
    raise ValueError(method)


def refimpl_call(net, x, method: str, library: str = "paper") -> Callable[[], object]:
    if method == "forward":
        return lambda: net(x)
    if method == "gradient":
        return lambda: gradient_x_input(net, x, target=0)
    rules = refimpl_rules(method, library)
    seed = preset(library).seed
    prepared = PreparedParameters()  # warm after the first call, as the plain version's
    return lambda: lrp(net, x, rules, target=0, seed=seed, prepared=prepared)


# --- plain NumPy: the same formulas, parameters prepared once, forward z reused -----------------


def _div(R, d):
    return np.divide(R, d, out=np.zeros_like(R), where=d != 0)


def plain_call(net, x, method: str) -> Callable[[], object]:
    """The paper's formulas in a few lines of NumPy per rule (biases as refimpl's defaults), in
    the same algorithm as refimpl's (e.g. flat through a matrix of ones, z^B as
    ``(x - l) w+ + (x - h) w-``), so that the ratio measures overhead, not a different algorithm.
    """
    Ws = [layer.W for layer in net.layers[::2]]
    bs = [layer.b for layer in net.layers[::2]]
    Wp = [np.maximum(W, 0) for W in Ws]
    Wn = [np.minimum(W, 0) for W in Ws]
    Wg = [W + GAMMA * p for W, p in zip(Ws, Wp, strict=True)]
    bg = [b + GAMMA * np.maximum(b, 0) for b in bs]
    W2 = [W * W for W in Ws]
    W2s = [w.sum(axis=0) for w in W2]
    ones = [np.ones_like(W) for W in Ws]
    lo, hi = 0.0, 1.0

    def forward(x):
        acts, zs = [x], []
        for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
            z = acts[-1] @ W + b
            zs.append(z)
            if i < len(Ws) - 1:
                acts.append(np.maximum(z, 0))
        return acts, zs

    def seed(z):
        R = np.zeros_like(z)
        R[:, 0] = z[:, 0]
        return R

    def step(rule, i, a, z, R):
        if rule == "eps":
            return a * ((R / (z + EPS * sign0(z))) @ Ws[i].T)
        if rule == "z+":
            return a * (_div(R, a @ Wp[i]) @ Wp[i].T)
        if rule == "ab":
            sp, sn = _div(2.0 * R, a @ Wp[i]), _div(-1.0 * R, a @ Wn[i])
            return a * (sp @ Wp[i].T + sn @ Wn[i].T)
        if rule == "zb":  # (x - l) w+ + (x - h) w-: exact zeros on the box's faces
            al, ah = a - lo, a - hi
            s = _div(R, al @ Wp[i] + ah @ Wn[i])
            return al * (s @ Wp[i].T) + ah * (s @ Wn[i].T)
        if rule == "gamma":
            return a * (_div(R, a @ Wg[i] + bg[i]) @ Wg[i].T)
        if rule == "w2":
            return np.broadcast_to(_div(R, W2s[i][None]) @ W2[i].T, a.shape)
        if rule == "flat":  # as refimpl computes it for any linear layer: through w = 1
            return _div(R, np.full_like(R, a.shape[1])) @ ones[i].T
        raise ValueError(rule)

    def lrp_plain(rule, first=None):
        def run():
            acts, zs = forward(x)
            R = seed(zs[-1])
            for i in reversed(range(len(Ws))):
                R = step(first if (i == 0 and first) else rule, i, acts[i], zs[i], R)
            return R

        return run

    if method == "forward":
        return lambda: forward(x)
    if method == "gradient":

        def grad():
            acts, zs = forward(x)
            g = np.zeros_like(zs[-1])
            g[:, 0] = 1.0
            for i in reversed(range(len(Ws))):
                g = g @ Ws[i].T
                if i:
                    g = g * (zs[i - 1] > 0)
            return x * g

        return grad
    rule = {"eps": "eps", "z+": "z+", "alpha2-beta1": "ab", "gamma": "gamma"}.get(method)
    if rule:
        return lrp_plain(rule)
    if method == "zB-first":
        return lrp_plain("eps", first="zb")
    if method in ("w2", "flat"):
        return lrp_plain(method)
    raise ValueError(method)


# --- peers ------------------------------------------------------------------------------------


def peers_available() -> dict[str, bool]:
    out = {}
    for name, module in (("zennit", "zennit"), ("captum", "captum")):
        try:
            __import__(module)
            out[name] = True
        except ImportError:
            out[name] = False
    return out


def zennit_call(net, x, method: str) -> Callable[[], object] | None:
    """Zennit's attribution with the model and composite built once (only the call is timed)."""
    import torch
    from zennit.attribution import Gradient
    from zennit.core import Composite
    from zennit.rules import AlphaBeta as ZAlphaBeta
    from zennit.rules import Epsilon as ZEpsilon
    from zennit.rules import Flat as ZFlat
    from zennit.rules import Gamma as ZGamma
    from zennit.rules import Pass, ZBox
    from zennit.rules import WSquare as ZWSquare
    from zennit.rules import ZPlus as ZZPlus

    from refimpl.interop.torch import to_torch

    model = to_torch(net)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if method == "forward":
        return lambda: model(xt)
    factories = {
        "eps": lambda: ZEpsilon(epsilon=EPS),
        "z+": ZZPlus,
        "alpha2-beta1": lambda: ZAlphaBeta(alpha=2.0, beta=1.0),
        "gamma": lambda: ZGamma(gamma=GAMMA),
        "w2": ZWSquare,
        "flat": ZFlat,
        "zB-first": lambda: ZEpsilon(epsilon=EPS),
    }
    if method == "gradient":
        xg = xt.clone().requires_grad_(True)

        def grad():
            out = model(xg)
            (g,) = torch.autograd.grad(out[:, 0].sum(), xg)
            return xg * g

        return grad
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]

    def module_map(ctx, name, module):
        if isinstance(module, torch.nn.Linear):
            if method == "zB-first" and name == linears[0]:
                return ZBox(low=0.0, high=1.0)
            return factories[method]()
        if isinstance(module, torch.nn.ReLU):
            return Pass()
        return None

    attributor = Gradient(model=model, composite=Composite(module_map=module_map))
    attributor.__enter__()
    seed = torch.zeros((len(x), net.output_shape[0]), dtype=xt.dtype)
    seed[:, 0] = 1.0
    xg = xt.clone().requires_grad_(True)
    return lambda: attributor(xg, seed)[1]


def captum_call(net, x, method: str) -> Callable[[], object] | None:
    """Captum's ``LRP.attribute`` with rules set once (only the call is timed)."""
    import torch
    from captum.attr import LRP
    from captum.attr._utils import lrp_rules

    from refimpl.interop.torch import to_torch

    factories = {
        "eps": lambda: lrp_rules.EpsilonRule(epsilon=EPS),
        "z+": lrp_rules.Alpha1_Beta0_Rule,
        "gamma": lambda: lrp_rules.GammaRule(gamma=GAMMA),
    }
    model = to_torch(net)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if method == "forward":
        return lambda: model(xt)
    if method == "gradient":
        from captum.attr import InputXGradient

        ixg = InputXGradient(model)
        xg = xt.clone().requires_grad_(True)
        return lambda: ixg.attribute(xg, target=0)
    if method not in factories:
        return None
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.rule = factories[method]()
    lrp_ = LRP(model)
    xg = xt.clone().requires_grad_(True)
    return lambda: lrp_.attribute(xg, target=0)


PEER_PRESET = {"zennit": "zennit", "captum": "captum"}
PEER_CALL = {"zennit": zennit_call, "captum": captum_call}


# --- timing -----------------------------------------------------------------------------------


def interleaved_medians(calls: dict[str, Callable], repeats: int, budget_s: float) -> dict:
    """Median seconds of each call, run round by round (one call of each per round)."""
    for fn in calls.values():
        fn()  # warm: prepared parameters, caches, first-touch pages
    times: dict[str, list[float]] = {k: [] for k in calls}
    start = time.perf_counter()
    for r in range(repeats):
        for k, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
        if r >= 4 and time.perf_counter() - start > budget_s:
            break
    return {k: float(np.median(v)) for k, v in times.items()}


def build(arch: str, dtype, batch: int):
    net = mlp(ARCHS[arch], rng=0, dtype=dtype)
    rng = np.random.default_rng(1)
    for layer in net.layers[::2]:
        layer.params["b"][:] = rng.normal(0, 0.05, layer.b.shape).astype(dtype)
    x = rng.uniform(0, 1, (batch, ARCHS[arch][0])).astype(dtype)
    return net, x


def make_calls(arch, dtype, batch, method, peers):
    net, x = build(arch, dtype, batch)
    calls = {"refimpl": refimpl_call(net, x, method), "plain": plain_call(net, x, method)}
    for peer in peers:
        fn = PEER_CALL[peer](net, x, method)
        if fn is not None:
            calls[peer] = fn
            calls[f"refimpl@{peer}"] = (
                refimpl_call(net, x, method, PEER_PRESET[peer])
                if method not in ("forward", "gradient")
                else calls["refimpl"]
            )
    return calls


def fmt_ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.3f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


# --- memory -----------------------------------------------------------------------------------


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(arch: str, method: str, impl: str) -> None:
    """Print the peak extra resident memory (MiB) of one call, as JSON."""
    peers = [impl] if impl in PEER_CALL else []
    calls = make_calls(arch, np.float32, 1024, method, peers)
    fn = calls.get(impl)
    if fn is None:
        print(json.dumps(None))
        return
    fn()  # warm (prepared parameters are part of the setup, not of the call)
    import gc

    gc.collect()
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    fn()
    print(json.dumps((_rss_kib("VmHWM") - before) / 1024))


def memory_table(peers: list[str], methods) -> list[str]:
    arch = "784-1000-1000-1000-10"
    impls = ["refimpl", "plain", *peers]
    rows = [f"| method | {' | '.join(impls)} |", "|" + " --- |" * (len(impls) + 1)]
    for method in methods:
        cells = []
        for impl in impls:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", arch, method, impl],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            value = json.loads(out.splitlines()[-1])
            cells.append("-" if value is None else f"{value:.0f} MB")
        rows.append(f"| {method} | {' | '.join(cells)} |")
    return [f"Peak extra memory of one call, {arch}, batch 1024, float32:", "", *rows]


# --- main -------------------------------------------------------------------------------------


def machine() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older NumPy: no dict mode
        blas = "unknown"
    threads = {
        k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ
    }
    torch_threads = ""
    try:
        import torch

        torch_threads = f", torch {torch.__version__} with {torch.get_num_threads()} threads"
    except ImportError:
        pass
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, NumPy {np.__version__} ({blas}), "
        f"thread env {threads or 'unset'}{torch_threads}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 1 and 64, float32, fewer repeats")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    ap.add_argument("--no-peers", action="store_true", help="skip Zennit and Captum")
    ap.add_argument("--no-tune", action="store_true", help="keep glibc's malloc defaults")
    ap.add_argument("--arch", choices=list(ARCHS), help="one architecture only")
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    tuned = False if args.no_tune else tune_malloc()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    avail = peers_available()
    peers = [] if args.no_peers else [p for p, ok in avail.items() if ok]
    print(f"machine: {machine()}")
    alloc = "raised (refimpl._malloc)" if tuned else "default"
    print(f"allocator: glibc mmap/trim thresholds {alloc}")
    print(f"peers: {', '.join(peers) or 'none installed (extra [torch])'}")
    batches = (1, 64) if args.quick else (1, 64, 1024)
    dtypes = (np.float32,) if args.quick else (np.float32, np.float64)
    archs = [args.arch] if args.arch else list(ARCHS)
    head = ["arch", "dtype", "batch", "method", "refimpl ms", "/ forward", "/ plain"]
    for p in peers:
        head += [f"{p} ms", f"refimpl@{p} / {p}"]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for arch in archs:
        for dtype in dtypes:
            for batch in batches:
                repeats = 15 if args.quick else (41 if batch < 1024 else 11)
                forward = None
                for method in METHODS:
                    calls = make_calls(arch, dtype, batch, method, peers)
                    med = interleaved_medians(calls, repeats, budget_s=4.0 if args.quick else 8.0)
                    if method == "forward":
                        forward = med["refimpl"]
                    row = [
                        arch,
                        np.dtype(dtype).name,
                        str(batch),
                        method,
                        fmt_ms(med["refimpl"]),
                        fmt_ratio(med["refimpl"], forward),
                        fmt_ratio(med["refimpl"], med["plain"]),
                    ]
                    for p in peers:
                        row += [fmt_ms(med.get(p)), fmt_ratio(med.get(f"refimpl@{p}"), med.get(p))]
                    print("| " + " | ".join(row) + " |", flush=True)
    if not args.no_memory and sys.platform.startswith("linux"):
        print()
        print("\n".join(memory_table(peers, METHODS[2:])))


if __name__ == "__main__":
    main()
