"""Cost of the laser model: the coarse backward-Euler step (Newton steps by Jacobi-preconditioned conjugate
gradients, against the factorised chord-Newton iteration it falls back to, its refactorising-only variant and the
sparse LU they replaced) and a call of the cfd patch.

Run: ``python benchmarks/bench_laser.py [--end 2e-3] [--repeats 3]`` (never in CI; set OMP_NUM_THREADS=1 for
one-core figures).

Coarse step: the shipped case ``cases/laser_track.toml`` from its start to ``--end`` (2 ms: 100 steps, melting from
step ~40) with the model's solver ("cg": every Newton step by CG on the SPD form A = K + diag(g/d) of the Jacobian J
= A diag(d), preconditioned by A's diagonal), with the factorised iteration it falls back to ("cholesky+pcg",
``jacobi_cg = False``: banded Cholesky of A with z fastest, reused over iterations and steps, and when the chord
iteration slows a Newton step by CG preconditioned with the last factorisation), with that factorisation refreshed
by refactorising only ("cholesky", ``newton_pcg = False``) and with the sparse LU of J refreshed the same way
("splu", scipy ``splu``, COLAMD), interleaved ``--repeats`` times so all see the same machine load. Times are CPU
seconds of the process (``time.process_time``: single-threaded work, less disturbed by other jobs on a shared
machine than wall time), medians of ``Simulation.run()`` divided by the steps (frames at the start and the end
only). All iterate to the same tolerance, so their fields agree to it (the table prints the largest temperature
difference from the model's solver). cfd: one call of the ``cfd`` provider of ``patch_temperature`` (shipped
options: 120 × 30 cells, window r/v = 0.4 ms) on the coarse state at ``--end``, median of ``--repeats``.
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
import scipy
import scipy.sparse as sp
from scipy.sparse.linalg import splu

import hybrid
from hybrid.cases import build_provider, build_simulation, resolve_case
from hybrid.core.simulation import Simulation
from hybrid.solvers.laser import LaserCoarse

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "laser_track.toml"
SOLVERS = ("cg", "cholesky+pcg", "cholesky", "splu")


def _machine() -> str:
    import skfem

    return (
        f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cpus (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
        f"python {platform.python_version()}, hybrid {hybrid.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, scikit-fem {skfem.__version__}"
    )


def use_sparse_lu(eq: LaserCoarse) -> None:
    """Make ``eq`` factorise its Jacobian J = K diag(d) + diag(g) by sparse LU (the former solver), same iteration."""

    def factorize(t: np.ndarray, dt: float) -> None:
        c_eff = eq.mat.density * eq.mat.enthalpy.derivative(t)
        d = eq.mat.kirchhoff.derivative(t) / c_eff
        diag = eq.mass / dt
        diag[eq.top] += eq._loss_slope(t[eq.top]) / c_eff[eq.top]
        jac = eq.stiffness @ sp.diags(d) + sp.diags(diag)
        if eq.bottom_energy is not None:
            keep = np.ones(diag.size)
            keep[eq.bottom] = 0.0
            jac = sp.diags(keep) @ jac + sp.diags(1.0 - keep)
        eq._chol = splu(jac.tocsc(), permc_spec="COLAMD")  # type: ignore[assignment]
        eq._lu_dt, eq._lu_temperature = dt, t.copy()
        eq.factorizations += 1

    eq._factorize = factorize  # type: ignore[method-assign]
    eq._solve = lambda r: eq._chol.solve(r)  # type: ignore[method-assign, union-attr]


def coarse_run(end: float, folder: Path, solver: str) -> tuple[float, Simulation]:
    """CPU seconds of Simulation.run() of the shipped case to ``end`` with ``solver`` (a key of :data:`SOLVERS`)."""
    rc = resolve_case(CASE, {"time.end": end, "output.every": 10**6, "output.path": str(folder / f"{solver}.h5")})
    sim = build_simulation(rc)
    assert isinstance(sim.equation, LaserCoarse)
    if solver != "cg":
        sim.equation.jacobi_cg = False
    if solver not in ("cg", "cholesky+pcg"):
        sim.equation.newton_pcg = False
    if solver == "splu":
        use_sparse_lu(sim.equation)
    t0 = time.process_time()
    sim.run()
    return time.process_time() - t0, sim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--end", type=float, default=2e-3, help="time.end of the coarse runs [s]")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (medians)")
    args = p.parse_args()
    print("machine:", _machine())
    times: dict[str, list[float]] = {s: [] for s in SOLVERS}
    sims: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for solver in times:
                wall, sims[solver] = coarse_run(args.end, Path(tmp), solver)
                times[solver].append(wall)
    model = SOLVERS[0]
    steps = sims[model].state.step
    temps = {s: sims[s].equation.temperature(np.asarray(sims[s].state["E"])) for s in sims}
    print(f"\ncoarse model, shipped case to t = {args.end:g} s ({steps} steps), medians of {args.repeats}:")
    head = f"{'solver':>13} {'ms/step':>8} {'ratio':>6} {'factorisations':>15} {'solves':>7} {'CG its':>7}"
    print(head + f" {'PCG its':>7} {'max dT K':>9}")
    base = statistics.median(times[model])
    for solver, walls in times.items():
        eq = sims[solver].equation
        ms = 1e3 * statistics.median(walls) / steps
        dtemp = float(np.abs(temps[solver] - temps[model]).max())
        print(
            f"{solver:>13} {ms:8.2f} {statistics.median(walls) / base:6.2f} {eq.factorizations:15d} {eq.solves:7d} "
            f"{eq.cg_iterations:7d} {eq.pcg_iterations:7d} {dtemp:9.1e}"
        )

    rc = resolve_case(CASE, {"terms.patch_temperature.provider": "cfd"})
    cfd = build_provider(rc, "patch_temperature")
    state = sims[model].state
    calls = []
    for _ in range(args.repeats):
        t0 = time.process_time()
        cfd(state)
        calls.append(time.process_time() - t0)
    per_step = base / steps
    call = statistics.median(calls)
    print(
        f"\ncfd patch call ({cfd.nz} × {cfd.nx} cells, window {cfd.window:g} s, {cfd.step_stats['steps']} steps): "
        f"{call:.3f} s = {call / per_step:.1f} coarse steps"
    )


if __name__ == "__main__":
    main()
