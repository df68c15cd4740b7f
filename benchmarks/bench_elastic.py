"""Cost of the ATG elastic term per call, of the ensemble's inference paths, of one step, and of the whole main job.

Run: ``python benchmarks/bench_elastic.py [--points 100 256 512 1024] [--calls 30] [--run-end 150] [--device cpu]``.
Never run in CI. ``--device cuda`` runs the ensemble (``nn``, ``nn-graph`` = ``nn`` with ``cuda_graph = true``, and
the plan section) on a GPU; the FEM and the stepper stay on the CPU as in a run, so the ``nn`` figures include the
host-device copies of the profile and of ρ.

Sections, each measured side by side in this one run:

1. the providers per call: fem, linear, nn (on a CPU the fused plan) and nn-torch (the torch reference path), with
   the ratio fem / provider;
2. the shipped ensemble alone: the torch plan against the fused CPU plan, interleaved call by call, the multiply-adds
   per second each achieves and the fused plan's share of a large float32 ``torch.mm`` on 1 thread and on all;
3. one IMEX and one explicit step;
4. the shipped case (``cases/atg_film.toml``) to t = ``--run-end`` with the monitor against the FEM: wall seconds
   and their ratio, the NN share, the FEM seconds inside the monitored run by kind (fallback, hysteresis, audit),
   and rmse_rel of h against the FEM run at every frame.

Each provider is timed on the same evolving profile: a random rough profile on L = N nm (dx = 1 nm) that changes by
~1e-3 nm between calls, as in a simulation (so the FEM's warm-started solver is measured in the regime it is used
in). Times are medians over ``--calls`` calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import hybrid
from hybrid.cases import build_provider, load_case, resolve_case
from hybrid.core.registry import PROVIDERS

ROOT = Path(__file__).resolve().parents[1]


def _machine() -> str:
    import numba
    import scipy
    import skfem
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
        f"python {platform.python_version()}, hybrid {hybrid.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, scikit-fem {skfem.__version__}, numba {numba.__version__}, "
        f"torch {torch.__version__} (threads {torch.get_num_threads()})"
    )


def _case(
    points: int, provider: str, integrator: str = "imex", dt: float = 0.01, device: str | None = None
) -> dict[str, Any]:
    elastic: dict[str, Any] = {"provider": provider}
    if provider == "nn-graph":  # the nn provider replaying each call as one CUDA graph
        elastic = {"provider": "nn", "cuda_graph": True}
    if provider == "nn-torch":  # the nn provider on the torch reference path (on a CPU it defaults to the fused plan)
        elastic = {"provider": "nn", "inference": "torch"}
    if device is not None and elastic["provider"] == "nn":
        elastic["device"] = device
    return {
        "case": {"model": "atg", "name": "bench", "seed": 1},
        "grid": {"length": float(points), "points": points},
        "initial": {"kind": "random", "mean": 4.0, "amplitude": 0.5, "modes": max(4, points // 5)},
        "terms": {"elastic": elastic},
        "time": {"integrator": integrator, "dt": dt, "steps": 1},
    }


def _median_time(fn: Callable[[int], Any], calls: int) -> float:
    fn(0)  # warm-up (JIT, factorisation)
    times = []
    for i in range(1, calls + 1):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_providers(points: list[int], calls: int, device: str = "cpu") -> None:
    names = [n for n in ("fem", "linear", "nn") if n in PROVIDERS.get("elastic", {})]
    if "nn" in names:
        names.append("nn-graph" if device.startswith("cuda") else "nn-torch")
    print(f"\nelastic term, seconds per call (median of {calls}; nn on {device}); ratio = fem / provider")
    print(f"{'N':>6} " + " ".join(f"{n:>12}" for n in names) + " " + " ".join(f"{'fem/' + n:>12}" for n in names[1:]))
    for n in points:
        rc = resolve_case(_case(n, "linear"))
        h0 = rc.spec.initial_state(rc.context, rc.data["initial"])["h"]
        drift = 1e-3 * np.cos(2 * np.pi * np.arange(n) / n)
        row = {}
        for name in names:
            try:
                term = build_provider(resolve_case(_case(n, name, device=device)), "elastic")
            except Exception as err:  # e.g. no shipped weights yet
                print(f"  ({name}: {err})")
                continue
            row[name] = _median_time(lambda i, term=term, h0=h0, drift=drift: term(h0 + i * drift), calls)
        cells = [f"{row[k]:12.3e}" if k in row else f"{'-':>12}" for k in names]
        ratios = [f"{row['fem'] / row[k]:12.1f}" if k in row and "fem" in row else f"{'-':>12}" for k in names[1:]]
        print(f"{n:>6} " + " ".join(cells) + " " + " ".join(ratios))


def _matmul_rate(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Multiply-adds per second of a large float32 ``torch.mm`` on ``threads`` CPU threads (best of ``repeats``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    torch.set_num_threads(before)
    return size**3 / best


def _layer_product_rate(w: int, ks: int, n: int, repeats: int = 2000) -> float:
    """Multiply-adds per second of one hidden layer's product (W, ks W) x (ks W, N) as the fused plan runs it (BLAS
    sgemm through numba's ``np.dot``, one thread, operands in cache): the bound on the plan's rate at this N."""
    import numba

    @numba.njit
    def products(a: np.ndarray, b: np.ndarray, c: np.ndarray, reps: int) -> None:
        for _ in range(reps):
            np.dot(a, b, c)

    rng = np.random.default_rng(0)
    a, b = rng.random((w, ks * w), np.float32), rng.random((ks * w, n), np.float32)
    c = np.empty((w, n), np.float32)
    products(a, b, c, 1)
    reps = max(20, repeats * 100 // n)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        products(a, b, c, reps)
        best = min(best, (time.perf_counter() - t0) / reps)
    return w * ks * w * n / best


def bench_plan(points: list[int], calls: int, device: str = "cpu") -> None:
    """The shipped ensemble on one shared profile, interleaved call by call so both see the same machine load: the
    torch reference (:class:`~hybrid.models.ensemble.InferencePlan`, the path on a GPU) against the fused CPU plan
    the ``nn`` provider uses on the CPU (:class:`~hybrid.models.fused_inference.FusedEnsemblePlan`, serial, and with
    its members shared out over the cores: the option ``threads``), with the multiply-adds per second each achieves
    beside a large float32 ``torch.mm`` and beside one hidden layer's product alone (the shape of most of the
    plan's arithmetic: what its products reach at best), measured in the same run. On a GPU
    each call is timed to its completion (``torch.cuda.synchronize``), the input staying on the device."""
    import torch

    from hybrid.couplers.terms.elastic import SHIPPED_WEIGHTS
    from hybrid.models.card import load_ensemble
    from hybrid.models.ensemble import EnsembleCNN1d

    if not (SHIPPED_WEIGHTS / "model_card.json").exists():
        return
    model, _ = load_ensemble(SHIPPED_WEIGHTS, device=device, expect=EnsembleCNN1d)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    k, c, w, ks = model.members, model.in_channels, model.channels, model.kernel_size
    per_point = k * (c * ks * w + (model.layers - 1) * w * w * ks + w)
    cores = os.cpu_count() or 1  # the nn provider sets torch's threads to its option (1): measure all cores too
    peak1, peak_all = _matmul_rate(1), _matmul_rate(cores)
    print(
        f"\nshipped ensemble on {device} ({per_point} multiply-adds per point), seconds per evaluation (median of "
        f"{calls}, interleaved; the torch plan on 1 CPU thread, as the nn provider runs it); float32 torch.mm on "
        f"this CPU: {peak1 / 1e9:.1f} G multiply-adds/s on 1 thread, {peak_all / 1e9:.1f} G on {cores}"
    )
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # also keeps torch's idle worker threads from spinning beside the fused plan
    try:
        _time_plans(model, points, calls, dev, sync, per_point, peak1, peak_all, cores)
    finally:
        torch.set_num_threads(torch_threads)


def _time_calls(group: dict[str, Callable[[], Any]], calls: int, sync: Callable[[], Any]) -> dict[str, float]:
    """Median seconds per call of each function in ``group``, interleaved call by call after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in group}
    for fn in group.values():
        fn()
    sync()
    for _ in range(calls):
        for name, fn in group.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def _time_plans(
    model: Any,
    points: list[int],
    calls: int,
    dev: Any,
    sync: Callable[[], Any],
    per_point: int,
    peak1: float,
    peak_all: float,
    cores: int,
) -> None:
    """The rows of :func:`bench_plan`: torch and fused interleaved at every N, then the fused plan with its members
    on the cores at every N (after all the others: its idle worker threads spin for a while after each call and
    would slow whatever ran beside them)."""
    import torch

    from hybrid.models.ensemble import InferencePlan
    from hybrid.models.features import elastic_features
    from hybrid.models.fused_inference import FusedEnsemblePlan

    w, ks = model.channels, model.kernel_size
    paths = ["torch"] + (["fused"] if dev.type == "cpu" else [])
    head = " ".join(f"{p:>12}" for p in paths) + " " + " ".join(f"{p + ' GMAC/s':>14}" for p in paths)
    ratios = f"{'torch/fused':>12} {'fused/mm1':>10} {'fused/mm':>10} {'layer GMAC/s':>13} {'layer/mm1':>10}"
    print(f"{'N':>6} {head} {ratios}")
    inputs = {}
    serial: dict[int, float] = {}
    for n in points:
        rc = resolve_case(_case(n, "linear"))
        h = torch.from_numpy(rc.spec.initial_state(rc.context, rc.data["initial"])["h"]).float()
        x = elastic_features(h[None], 1.0).to(dev)
        inputs[n] = x
        reference = InferencePlan(model, n)
        group: dict[str, Callable[[], Any]] = {"torch": lambda plan=reference, x=x: plan(x)}
        if dev.type == "cpu":
            fused, xn = FusedEnsemblePlan(model, n), x.numpy()
            group["fused"] = lambda plan=fused, xn=xn: plan(xn)
        with torch.inference_mode():
            med = _time_calls(group, calls, sync)
        rate = {p: per_point * n / med[p] for p in paths}
        row = " ".join(f"{med[p]:12.3e}" for p in paths) + " " + " ".join(f"{rate[p] / 1e9:14.1f}" for p in paths)
        if "fused" in med:
            serial[n] = med["fused"]
            share1, share_all = rate["fused"] / peak1, rate["fused"] / peak_all
            layer = _layer_product_rate(w, ks, n)
            row += f" {med['torch'] / med['fused']:12.2f} {share1:10.0%} {share_all:10.0%}"
            row += f" {layer / 1e9:13.1f} {layer / peak1:10.0%}"
        print(f"{n:>6} {row}")
    threads = min(cores, model.members)
    if not serial or threads < 2:
        return
    print(
        f"\nthe fused plan with its members on {threads} threads (provider option threads = {threads}), after the above"
    )
    print(f"{'N':>6} {'fused-' + str(threads):>12} {'GMAC/s':>10} {'fused/fused-' + str(threads):>16}")
    for n in points:
        plan = FusedEnsemblePlan(model, n, threads=threads)
        xn = inputs[n].numpy()
        med_k = _time_calls({"shared": lambda plan=plan, xn=xn: plan(xn)}, calls, sync)["shared"]
        print(f"{n:>6} {med_k:12.3e} {per_point * n / med_k / 1e9:10.1f} {serial[n] / med_k:16.2f}")


def bench_steps(points: list[int], calls: int) -> None:
    print(f"\none step of the ATG model with the linear provider, seconds per step (median of {calls})")
    print(f"{'N':>6} {'euler':>12} {'imex':>12} {'imex/euler':>12}")
    for n in points:
        out = {}
        for integ in ("euler", "imex"):
            sim = load_case(_case(n, "linear", integ, dt=1e-4))
            sim.output.path = None
            sim.steps = 10**9
            out[integ] = _median_time(lambda i, sim=sim: sim.step(), calls * 20)
        print(f"{n:>6} {out['euler']:12.3e} {out['imex']:12.3e} {out['imex'] / out['euler']:12.2f}")
    print("(an IMEX step costs about as much as an explicit one but may be ~10-100x longer: see docs/physics.md §1)")


def bench_run(end: float) -> None:
    """The shipped main job to t = ``end`` with the monitor against the same run on the FEM, side by side: wall
    seconds, the monitor's NN share and FEM seconds (what the FEM calls were: fallbacks, hysteresis, audits), the
    ensemble's seconds per call inside the run, and rmse_rel of h against the FEM run at every common frame."""
    import tempfile

    import h5py

    from hybrid.couplers.metrics import rmse_rel

    case = ROOT / "cases" / "atg_film.toml"
    sets = {"time.end": end, "output.every": 250, "output.checkpoint_every": 0}
    print(f"\nthe shipped case {case.name} to t = {end:g}: monitor against fem (one run each, side by side)")
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for provider in ("monitor", "fem"):
            sim = load_case(case, {**sets, "terms.elastic.provider": provider}, out=Path(tmp) / f"{provider}.h5")
            t0 = time.perf_counter()
            sim.run()
            wall = time.perf_counter() - t0
            with h5py.File(Path(tmp) / f"{provider}.h5", "r") as f:
                h, times = f["fields/h"][()], f["time"][()]
                columns = ("source", "uncertainty", "threshold", "audit_error")
                log = {k: f[f"monitor/elastic/{k}"][()] for k in columns} if provider == "monitor" else {}
            runs[provider] = {"wall": wall, "h": h, "time": times, "log": log, "term": sim.equation.terms["elastic"]}
    mon, fem = runs["monitor"], runs["fem"]
    term = mon["term"]
    source = mon["log"]["source"].astype(str)
    dns = source == "dns"
    above = mon["log"]["uncertainty"] > mon["log"]["threshold"]
    audits_on_nn = np.isfinite(mon["log"]["audit_error"]) & ~dns
    errs = [rmse_rel(a, b) for a, b in zip(fem["h"], mon["h"], strict=True)]
    ratio = fem["wall"] / mon["wall"]
    print(f"  wall: fem {fem['wall']:.2f} s, monitor {mon['wall']:.2f} s, ratio fem/monitor {ratio:.2f}")
    print(
        f"  monitor: NN share {100 * np.mean(~dns):.1f} % of {source.size} steps; FEM calls {term.dns.calls} in "
        f"{term.dns.seconds:.2f} s ({1e3 * term.dns.seconds / max(term.dns.calls, 1):.2f} ms each): "
        f"{int(np.sum(dns & above))} fallbacks (u > threshold), {int(np.sum(dns & ~above))} hysteresis, "
        f"{int(np.sum(audits_on_nn))} audits of accepted answers"
    )
    print(
        f"  ensemble: {term.nn.calls} calls in {term.nn.seconds:.2f} s "
        f"({1e6 * term.nn.seconds / max(term.nn.calls, 1):.0f} us each, inference {term.nn.inference!r}); rest of "
        "the monitored run (stepping, output) "
        f"{mon['wall'] - term.nn.seconds - term.dns.seconds:.2f} s"
    )
    print(f"  rmse_rel of h against fem: max {max(errs):.4f} over {len(errs)} frames to t = {fem['time'][-1]:g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, nargs="+", default=[100, 256, 512, 1024])
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--run-end", type=float, default=150.0, help="t_end of the whole-run section (0: skip it)")
    p.add_argument("--device", default="cpu", help="torch device of the ensemble (default cpu; e.g. cuda)")
    args = p.parse_args()
    print("machine:", _machine())
    if args.device != "cpu":
        import torch

        print("ensemble device:", args.device, torch.cuda.get_device_name(args.device) if "cuda" in args.device else "")
    bench_providers(args.points, args.calls, args.device)
    bench_plan(args.points, args.calls * 10, args.device)
    bench_steps(args.points, args.calls)
    if args.run_end > 0:
        bench_run(args.run_end)


if __name__ == "__main__":
    main()
