"""Grain growth, DNS vs the jump surrogate over the same simulated time (issue #4's hybrid target).

Run: ``python benchmarks/bench_surrogate.py [--size 512] [--start 2000] [--windows 10] [--device cpu]
[--backend numpy] [--dtype float32]`` (never in CI). Builds ``cases/graingrowth_hybrid.toml`` (at ``--size``² with
the shipped grain density) three ways from the same state — the DNS at step ``--start`` of the shipped DNS case —
and advances each by ``--windows`` windows of ``jump`` DNS steps, with the model's tracking/reassignment hooks as in
``hybrid run`` (no output file):

- ``dns``: the case's DNS stepper (fused numba explicit Euler, dt = 0.25: the fastest stable setting, see
  benchmarks/bench_graingrowth.py);
- ``nn``: every window one jump of the shipped ensemble (float32 inference unless ``--dtype bfloat16``; torch
  threads = the machine's cores);
- ``monitor``: the shipped ensemble with the calibrated threshold; rejected windows re-run with the DNS.

Prints seconds per window, the speed-up over the DNS, the NN's share of windows, the mean fraction of
(order parameter, tile) pairs the tiled inference evaluated, and the grain count and mean grain area at the end
relative to the DNS. ``--device cuda`` runs the network on a GPU; the DNS stays numba on the CPU (as shipped)
unless ``--backend torch``, which runs every stepper's DNS with the torch kernel on ``--device``: the same-device
comparison issue #4 asks for on a GPU (``--backend torch --device cuda``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

CASE = Path(__file__).resolve().parents[1] / "cases" / "graingrowth_hybrid.toml"


def _overrides(size: int, provider: str, device: str, backend: str, dtype: str) -> dict[str, Any]:
    grains = round(1000 * (size / 512) ** 2)
    out: dict[str, Any] = {
        "grid.shape": [size, size],
        "grid.lengths": [2.0 * size, 2.0 * size],
        "initial.grains": grains,
        "stepper.provider": provider,
    }
    if backend == "torch":  # the DNS (and the state) on the network's device
        out["case.backend"] = "torch"
        out["case.device"] = device
    if provider != "dns":
        out["stepper.device"] = device
        out["stepper.threads"] = os.cpu_count() or 1
        out["stepper.dtype"] = dtype
    return out


def _descriptors(state: Any, eq: Any) -> tuple[int, float]:
    from hybrid.analysis.descriptors import grain_count, mean_grain_area

    labels = eq._track(state)[0]
    return grain_count(labels), mean_grain_area(labels, eq.grid.lengths)


def main(argv: list[str] | None = None) -> int:
    import torch

    import hybrid
    from hybrid.core.simulation import OutputSpec
    from hybrid.core.state import State

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="grid points per side (default 512, the shipped case)")
    ap.add_argument("--start", type=int, default=2000, help="DNS steps before the comparison (default 2000)")
    ap.add_argument("--windows", type=int, default=10, help="windows compared (default 10)")
    ap.add_argument("--device", default="cpu", help="torch device of the network (default cpu)")
    ap.add_argument(
        "--backend",
        choices=("numpy", "torch"),
        default="numpy",
        help="array backend of the DNS: numpy (fused numba on the CPU, the default and fastest on CPUs) or torch "
        "(the torch kernel on --device)",
    )
    ap.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="the network's inference dtype (stepper.dtype; default float32, the card's)",
    )
    args = ap.parse_args(argv)

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"versions: torch {torch.__version__}, numpy {np.__version__}; "
        f"network device {args.device} ({args.dtype}), DNS backend {args.backend}"
    )
    sims = {}
    for provider in ("dns", "nn", "monitor"):
        sim = hybrid.load_case(CASE, overrides=_overrides(args.size, provider, args.device, args.backend, args.dtype))
        sim.output = OutputSpec(path=None, checkpoint_every=None)
        sims[provider] = sim
    jump = sims["nn"].stepper.steps_per_call
    start = args.start - args.start % jump
    dns = sims["dns"]
    t0 = time.perf_counter()
    while dns.state.step < start:
        dns.step()
    print(f"grid {args.size}^2, window = {jump} steps; DNS to step {start} took {time.perf_counter() - t0:.1f} s")
    begin = dns.state
    for provider in ("nn", "monitor"):
        sims[provider].state = State(dict(begin.copy().fields), begin.time, begin.step, begin.backend)
        sims[provider].step()  # warm-up window (not timed): thread pools, first allocations
        sims[provider].state = State(dict(begin.copy().fields), begin.time, begin.step, begin.backend)
    results = {}
    for provider, sim in sims.items():
        t0 = time.perf_counter()
        for _ in range(args.windows * (jump if provider == "dns" else 1)):
            sim.step()
        seconds = time.perf_counter() - t0
        results[provider] = (seconds, _descriptors(sim.state, sim.equation))
    ref_s, (ref_n, ref_a) = results["dns"]
    head = f"{'stepper':8}  {'s/window':>9}  {'speed-up':>8}  {'nn share':>8}  {'tiles':>6}  {'grains':>12}  mean area"
    print("\n" + head)
    for provider, (seconds, (n, area)) in results.items():
        st: Any = sims[provider].stepper
        share = getattr(st, "nn_fraction", 0.0)
        summary = st.summary() if hasattr(st, "summary") else {}
        tiles = summary.get("mean_active_fraction", float("nan"))
        print(
            f"{provider:8}  {seconds / args.windows:9.3f}  {ref_s / seconds:8.2f}  {share:8.2f}  {tiles:6.2f}  "
            f"{n:5d} ({n / ref_n - 1:+.1%})  {area:.1f} ({area / ref_a - 1:+.1%})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
