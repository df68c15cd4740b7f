"""Cost of the ATG elastic term per call (fem, linear, nn ensemble when shipped) and of one IMEX vs one explicit step.

Run: ``python benchmarks/bench_elastic.py [--points 100 256 512 1024] [--calls 30] [--device cpu]``. Never run
in CI. ``--device cuda`` runs the ensemble (``nn``, ``nn-graph`` = ``nn`` with ``cuda_graph = true``, and the plan
section) on a GPU; the FEM and the stepper stay on the CPU as in a run, so the ``nn`` figures include the
host-device copies of the profile and of ρ.

Sections: the providers per call (fem, linear, nn); the shipped ensemble through ``model(x)`` against the frozen
``InferencePlan`` the nn provider uses (interleaved call by call, so both see the same machine load); one step.

Each provider is timed side by side in one run on the same evolving profile: a random rough profile on L = N nm
(dx = 1 nm) that changes by ~1e-3 nm between calls, as in a simulation (so the FEM's warm-started solver is
measured in the regime it is used in). Times are medians over ``--calls`` calls after one warm-up call; the
table prints the ratio fem / provider. Step times are for the whole stepper call (term + kernel + FFT).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import hybrid
from hybrid.cases import build_provider, load_case, resolve_case
from hybrid.core.registry import PROVIDERS


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
    if "nn" in names and device.startswith("cuda"):
        names.append("nn-graph")
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


def bench_plan(points: list[int], calls: int, device: str = "cpu") -> None:
    """The shipped ensemble on one shared profile: ``model(x)`` (cache checks and dispatch on every call) against
    the frozen :class:`~hybrid.models.ensemble.InferencePlan` the ``nn`` provider uses, interleaved call by call.
    On a GPU each call is timed to its completion (``torch.cuda.synchronize``), the input staying on the device."""
    import torch

    from hybrid.couplers.terms.elastic import SHIPPED_WEIGHTS
    from hybrid.models.card import load_ensemble
    from hybrid.models.ensemble import EnsembleCNN1d, InferencePlan
    from hybrid.models.features import elastic_features

    if not (SHIPPED_WEIGHTS / "model_card.json").exists():
        return
    model, _ = load_ensemble(SHIPPED_WEIGHTS, device=device, expect=EnsembleCNN1d)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(
        f"\nshipped ensemble on {device}, seconds per evaluation (median of {calls}, interleaved); "
        "ratio = forward / plan"
    )
    print(f"{'N':>6} {'forward':>12} {'plan':>12} {'ratio':>12}")
    for n in points:
        rc = resolve_case(_case(n, "linear"))
        h = torch.from_numpy(rc.spec.initial_state(rc.context, rc.data["initial"])["h"]).float()
        x = elastic_features(h[None], 1.0).to(dev)
        plan = InferencePlan(model, n)
        times: dict[str, list[float]] = {"forward": [], "plan": []}
        with torch.inference_mode():
            model(x), plan(x)  # warm-up
            sync()
            for _ in range(calls):
                for name, fn in (("forward", model), ("plan", plan)):
                    t0 = time.perf_counter()
                    fn(x)
                    sync()
                    times[name].append(time.perf_counter() - t0)
        f, q = statistics.median(times["forward"]), statistics.median(times["plan"])
        print(f"{n:>6} {f:12.3e} {q:12.3e} {f / q:12.2f}")


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, nargs="+", default=[100, 256, 512, 1024])
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--device", default="cpu", help="torch device of the ensemble (default cpu; e.g. cuda)")
    args = p.parse_args()
    print("machine:", _machine())
    if args.device != "cpu":
        import torch

        print("ensemble device:", args.device, torch.cuda.get_device_name(args.device) if "cuda" in args.device else "")
    bench_providers(args.points, args.calls, args.device)
    bench_plan(args.points, args.calls * 10, args.device)
    bench_steps(args.points, args.calls)


if __name__ == "__main__":
    main()
