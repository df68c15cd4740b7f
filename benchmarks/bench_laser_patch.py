"""The laser's patch term: call time and accuracy of the providers coarse, nn and cfd side by side.

Run: ``python benchmarks/bench_laser_patch.py [--repeats 5] [--power 150] [--speed 0.25] [--steps 60 120 200]
[--weights DIR ...]``. Never run in CI.

The shipped case ``cases/laser_track.toml`` (with ``model.power``/``model.speed`` as given) is run by its coarse
model to each of ``--steps``; on each state every provider of ``patch_temperature`` is called ``--repeats`` times
(median wall time per call; the nn provider in float32 on one torch thread, the default) and its answer compared
with the cfd patch: MARE = mean over the patch of |T − T_cfd| / T_cfd, and the largest |T − T_cfd| [K].
Each ``--weights`` folder (written by ``hybrid train``, e.g. a ``[model] encoder = "conv"`` surrogate) adds an nn
provider with those weights, printed below the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import hybrid
from hybrid.core.simulation import OutputSpec
from hybrid.couplers.assembly import build_simulation, resolve_case

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "laser_track.toml"
TERM = "patch_temperature"


def _machine() -> str:
    import numba
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cpus, python {platform.python_version()}, hybrid {hybrid.__version__}, "
        f"numpy {np.__version__}, numba {numba.__version__} (threads {numba.get_num_threads()}), "
        f"torch {torch.__version__} (threads {torch.get_num_threads()})"
    )


def _timed(fn: Any, state: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(state)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--power", type=float, default=150.0)
    ap.add_argument("--speed", type=float, default=0.25)
    ap.add_argument("--steps", type=int, nargs="+", default=[60, 120, 200])
    ap.add_argument("--weights", nargs="*", default=[], help="further surrogate folders, each an extra nn provider")
    args = ap.parse_args()
    ov = {"model.power": args.power, "model.speed": args.speed, "time.end": None, "time.steps": max(args.steps)}
    rc = resolve_case(CASE, ov)
    sim = build_simulation(rc)
    sim.output = OutputSpec(path=None, checkpoint_every=None)
    providers = {p: hybrid.load_provider(TERM, p, case=CASE, overrides=ov) for p in ("coarse", "nn", "cfd")}
    extra = {w: hybrid.load_provider(TERM, "nn", case=CASE, overrides=ov, weights=w) for w in args.weights}
    extra_rows: list[str] = []
    print(f"machine: {_machine()}")
    print(f"case {CASE.name}, P = {args.power} W, v = {args.speed} m/s; median of {args.repeats} calls per provider")
    print(f"{'step':>5} {'travel mm':>9} | {'coarse s':>9} {'nn s':>9} {'cfd s':>9} {'cfd/nn':>8} | "
          f"{'MARE coarse':>11} {'MARE nn':>8} | {'max|dT| coarse K':>16} {'max|dT| nn K':>12}")  # fmt: skip
    rows = []
    for step in sorted(args.steps):
        while sim.state.step < step:
            sim.step()
        state = sim.state
        t_c, a_c = _timed(providers["coarse"], state, args.repeats)
        t_n, a_n = _timed(providers["nn"], state, args.repeats)
        t_d, a_d = _timed(providers["cfd"], state, max(1, min(args.repeats, 3)))
        e_c, e_n = float(np.mean(np.abs(a_c - a_d) / a_d)), float(np.mean(np.abs(a_n - a_d) / a_d))
        rows.append((t_n, t_d))
        for w, prov in extra.items():
            t_w, a_w = _timed(prov, state, args.repeats)
            e_w, d_w = float(np.mean(np.abs(a_w - a_d) / a_d)), float(np.max(np.abs(a_w - a_d)))
            extra_rows.append(f"{step:>5} nn {w}: {t_w:.2e} s, MARE {e_w:.4f}, max|dT| {d_w:.1f} K")
        d_c, d_n = float(np.max(np.abs(a_c - a_d))), float(np.max(np.abs(a_n - a_d)))
        travel = 1e3 * args.speed * state.time
        print(f"{step:>5} {travel:>9.3f} | {t_c:>9.2e} {t_n:>9.2e} {t_d:>9.2e} {t_d / t_n:>8.0f} | "
              f"{e_c:>11.4f} {e_n:>8.4f} | {d_c:>16.1f} {d_n:>12.1f}")  # fmt: skip
    tn, td = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
    print(f"median call: nn {tn:.3g} s, cfd {td:.3g} s: nn is {td / tn:.0f}x faster")
    for line in extra_rows:
        print(line)
    sim.close()


if __name__ == "__main__":
    main()
