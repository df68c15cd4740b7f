"""The front laws against the phase-field DNS: wall time, speed-up and accuracy of each provider of front_correction.

Run: ``python benchmarks/bench_front.py [--repeats 3] [--end 100]``. Never run in CI.

Side by side in one run: the phase field ``cases/front_pf.toml`` and the front law ``cases/front_kpz.toml`` with the
providers ``none`` (KPZ), ``eikonal``, ``nn`` and ``monitor``, each to ``time.end`` from the same initial front.
Wall times are medians over ``--repeats`` interleaved rounds (each round runs the phase field and every law once) of
``Simulation.run()`` (building the Simulation, e.g. loading the ensemble, is not counted; warm-up runs before compile
the numba kernels); speed-ups are medians of the per-round ratios, with their range; "step" is the part spent stepping
(the rest writes the same frames and checkpoint for both solvers). The accuracy of h is against the
phase field frame by frame (``output.every``: every 10 time units): RMSE and rmse_rel (RMSE / std of the phase
field's h) averaged over the frames after t = 0.

The bound of the speed-up of a law with a network against the phase field, counting only the dominant flops:

    bound = Ny · F_pf · (dt_law / dt_pf) / (c · F_nn)

c: network calls per step of the law (2 for ``imex2``), F_pf: the flops per unknown and step of the phase field
(its kernel in hybrid/solvers/front_kernels.py plus the Euler update), F_nn: the ensemble's flops per point (2 × its
multiply-adds, from its weights: the networks are pointwise, so every weight is one multiply-add per point;
activations not counted).

Second table: the same errors on fronts the network never saw (other seeds, other amplitudes inside its training
range of slopes, max |h_x| ≤ 1.2), law runs at the shipped case's step.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import hybrid
from hybrid.cases import load_case
from hybrid.core.io import read_output
from hybrid.couplers.metrics import rmse, rmse_rel
from hybrid.couplers.terms.front_correction import SHIPPED_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
PF_CASE, LAW_CASE = ROOT / "cases" / "front_pf.toml", ROOT / "cases" / "front_kpz.toml"
PROVIDERS = ("none", "eikonal", "nn", "monitor")

# Phase-field flops per unknown and step, counted from _front_rhs_numba: the x and y second differences
# (2 subtractions, 1 multiply by 2, 1 multiply by the coefficient: 4 each), their sum (1), the reaction
# (p − a, p², − 1, two products, the subtraction: 5 with the sum); the Euler update φ + dt·R (2).
PF_FLOPS = 4 + 4 + 1 + 5 + 2


def _machine() -> str:
    import numba
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cpus, python {platform.python_version()}, hybrid {hybrid.__version__}, "
        f"numpy {np.__version__}, numba {numba.__version__} (threads {numba.get_num_threads()}), "
        f"torch {torch.__version__} (threads {torch.get_num_threads()})"
    )


def _run(case: Path, overrides: dict[str, Any], out: Path) -> tuple[float, dict[str, Any], Any]:
    sim = load_case(case, overrides, out=out)
    t0 = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    return wall, read_output(out), sim


def _errors(ref: dict[str, Any], res: dict[str, Any]) -> tuple[float, float]:
    """Time-averaged RMSE and rmse_rel of h (res against ref) over the common frames after t = 0."""
    index = {round(float(t), 9): i for i, t in enumerate(ref["time"])}
    pairs = [(index[round(float(t), 9)], j) for j, t in enumerate(res["time"]) if t > 0 and round(float(t), 9) in index]
    href, h = ref["fields"]["h"], res["fields"]["h"]
    return (
        float(np.mean([rmse(href[i], h[j]) for i, j in pairs])),
        float(np.mean([rmse_rel(href[i], h[j]) for i, j in pairs])),
    )


def _provider(provider: str, weights: Path) -> dict[str, Any]:
    """Overrides selecting ``provider`` of front_correction (with ``weights`` for the ensemble's providers)."""
    over: dict[str, Any] = {"terms.front_correction.provider": provider}
    if provider in ("nn", "monitor"):
        over["terms.front_correction.weights"] = str(weights)
    return over


def _nn_flops(weights: Path) -> tuple[int, str]:
    """2 × the multiply-adds per point of an ensemble (weights of its pointwise convolutions)."""
    import torch

    from hybrid.models.card import read_card

    state = torch.load(weights / "weights.pt", map_location="cpu", weights_only=True)
    macs = sum(int(v.numel()) for v in state.values() if v.ndim >= 2)  # taps (K·C_out, C_in, 1) and the readout
    arch = read_card(weights).get("architecture", {})
    what = f"{arch.get('members')} members, {arch.get('layers')} layers of {arch.get('channels')} channels"
    return 2 * macs, f"{macs} multiply-adds per point ({what})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per solver (median)")
    parser.add_argument("--end", type=float, default=None, help="simulated time (default: the cases' time.end)")
    parser.add_argument("--weights", default="shipped", help="ensemble directory of nn and monitor (default: shipped)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    common: dict[str, Any] = {} if args.end is None else {"time.end": args.end}
    weights = Path(args.weights).resolve() if args.weights != "shipped" else SHIPPED_WEIGHTS
    tmp = Path(tempfile.mkdtemp(prefix="bench_front_"))
    print(_machine())

    _run(PF_CASE, {"time.end": 0.4}, tmp / "warm.h5")  # numba compilation
    overrides = {provider: {**common, **_provider(provider, weights)} for provider in PROVIDERS}
    for provider in PROVIDERS:  # compile and load everything before timing
        _run(LAW_CASE, {**overrides[provider], "time.end": 10.0, "output.every": 1}, tmp / "warm.h5")
    # interleaved rounds: each round runs the phase field and every law once, so a slow spell of a shared machine
    # hits all of them alike; speed-ups are the medians of the per-round ratios
    walls: dict[str, list[float]] = {name: [] for name in ("pf", *PROVIDERS)}
    steps: dict[str, list[float]] = {name: [] for name in ("pf", *PROVIDERS)}
    results: dict[str, Any] = {}
    for r in range(args.repeats):
        wall, pf, sim = _run(PF_CASE, common, tmp / f"pf{r}.h5")
        walls["pf"].append(wall)
        steps["pf"].append(sim.stepper.seconds)
        for provider in PROVIDERS:
            wall, res, law = _run(LAW_CASE, overrides[provider], tmp / f"{provider}{r}.h5")
            walls[provider].append(wall)
            steps[provider].append(law.stepper.seconds)
            results[provider] = (res, law)
    pf_wall, pf_dt, end = statistics.median(walls["pf"]), float(sim.stepper.dt), float(pf["time"][-1])
    pf_step = statistics.median(steps["pf"])
    ny, dx = sim.equation.grid.points[1], sim.equation.grid.spacing[0]
    print(
        f"\nshipped case to t = {end:g}: phase field {pf_wall:.3f} s, of which stepping {pf_step:.3f} s "
        f"({sim.stepper.name}, dt {pf_dt:g}, median of {args.repeats} interleaved rounds)"
    )
    print(
        f"{'provider':<9} {'wall [s]':>9} {'speed-up':>9} {'step [s]':>9} {'speed-up':>9} {'range':>12} "
        f"{'RMSE(h)':>9} {'rmse_rel':>9} {'NN share':>9}"
    )
    law_dt = None
    for provider in PROVIDERS:
        res, law = results[provider]
        law_dt, law_rhs = float(law.stepper.dt), (2 if law.stepper.name == "imex2" else 1)
        e, e_rel = _errors(pf, res)
        share = getattr(law.equation.terms["front_correction"], "nn_fraction", None)
        w, st = statistics.median(walls[provider]), statistics.median(steps[provider])
        wall_ratio = statistics.median(a / b for a, b in zip(walls["pf"], walls[provider], strict=True))
        ratios = [a / b for a, b in zip(steps["pf"], steps[provider], strict=True)]
        print(
            f"{provider:<9} {w:>9.3f} {wall_ratio:>8.1f}x {st:>9.3f} {statistics.median(ratios):>8.1f}x "
            f"{f'{min(ratios):.1f}-{max(ratios):.1f}x':>12} {e:>9.5f} {e_rel:>9.4f} "
            f"{'' if share is None else f'{share:.3f}':>9}"
        )

    f_nn, macs = _nn_flops(weights)
    assert law_dt is not None
    bound = ny * PF_FLOPS * (law_dt / pf_dt) / (law_rhs * f_nn)
    print(
        f"\nbound = Ny · F_pf · (dt_law/dt_pf) / (network calls per step · F_nn) = {ny} · {PF_FLOPS} · "
        f"({law_dt:g}/{pf_dt:g}) / ({law_rhs} · {f_nn}) = {bound:.2f}  (F_nn: {macs}); 10x needs dt_law ≥ "
        f"{10 * law_rhs * f_nn * pf_dt / (ny * PF_FLOPS):.2f}"
    )

    fronts = [(f"seed {s}", {"case.seed": s}) for s in (1, 2, 4)]
    fronts += [(f"amplitude {a:g}", {"initial.amplitude": a}) for a in (0.75, 1.2)]
    print(f"\nunseen fronts to t = {end:g} (law dt {law_dt:g}): time-averaged RMSE(h) against the phase field")
    print(f"{'front':<15} {'max|h_x|':>8} " + " ".join(f"{p:>9}" for p in PROVIDERS) + f" {'nn/eik':>7}")
    for label, over in fronts:
        over = {**common, **over}
        _, ref, _ = _run(PF_CASE, over, tmp / "pf_unseen.h5")
        h0 = ref["fields"]["h"][0]
        slope = float(np.abs(np.roll(h0, -1) - np.roll(h0, 1)).max() / (2 * dx))
        errs = {}
        for provider in PROVIDERS:
            _, res, _ = _run(LAW_CASE, {**over, **_provider(provider, weights)}, tmp / "law_unseen.h5")
            errs[provider] = _errors(ref, res)[0]
        row = " ".join(f"{errs[p]:>9.5f}" for p in PROVIDERS)
        print(f"{label:<15} {slope:>8.2f} {row} {errs['nn'] / errs['eikonal']:>7.2f}")


if __name__ == "__main__":
    main()
