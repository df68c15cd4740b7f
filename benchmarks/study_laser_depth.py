"""Melt-pool depth of the coarse laser model against the conduction-limit law of docs/physics.md §4.

Run: ``python benchmarks/study_laser_depth.py [--spacing 1e-5] [--out docs/laser_depth_law.png]`` (a few minutes on
one core; never in CI).

The shipped case (Ti-6Al-4V with latent heat, T-dependent c_p and k, losses; W_eff = 0.35 mm, so q′ = A P / W_eff)
on a 2.5 mm × 0.6 mm plate meshed at ``--spacing``, for P ∈ {100, 150, 200, 250} W at v = 0.25 m/s and
v ∈ {0.15, 0.4} m/s at 150 W. Each run moves the spot 5 µm per step (dt = 5 µm / v) over 1 mm (200 steps): the
pool is quasi-steady after about 0.5 mm (the start's memory decays over 4α/v ≤ 0.2 mm of track); the depth is the
mean over the last 4 steps (the spot's position relative to the nodes repeats every 2 steps at 10 µm) of
:func:`hybrid.analysis.melt_pool.melt_pool` on the nodal temperature, and "drift" is its change from the same mean
0.25 mm earlier (the quasi-steady check).

The law (docs/physics.md §4): for n = q′/(π k ΔT) ≫ 1, D ≈ 0.484 q′/(ρ c_p v ΔT), ΔT = T_l − T∞: the deepest point of
the T_l isotherm of a moving line source in the limit where it is long and thin (each slice behind the source
cools as a plane source: D = √(2/(π e)) q′/(ρ c_p v ΔT)). It has constant properties and no latent heat; here c_p is
the mean sensible c̄_p over [T∞, T_l] (as for the default W_eff) and k in n the mean conductivity over the same range
(the Kirchhoff transform's (u(T_l) − u(T∞))/ΔT).

Two more runs in the law's own setting: constant properties (c_p = 700 J/(kg K), k = 20 W/(m K)), no latent heat
and no losses, a narrow spot (r = 20 µm), q′ = n π k ΔT for n = 1.74 (the shipped case's) and n = 4, 1.5 mm of
track (the deepest point of the n = 4 pool lies about 1.16 n² α/v = 0.5 mm behind the spot).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import hybrid
from hybrid.analysis.melt_pool import melt_pool
from hybrid.cases import build_simulation, resolve_case
from hybrid.solvers.laser import LaserCoarse, line_power

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "laser_track.toml"
STEP_LENGTH = 5e-6  # spot travel per step [m]
TRAVEL = 1e-3  # spot travel per run [m]
POWERS = (100.0, 150.0, 200.0, 250.0)
SPEEDS = (0.15, 0.25, 0.4)
CONSTANT = {  # the law's own setting: constant properties, no latent heat, no losses, a narrow spot, q′ = P
    "model.cp_solid": 700.0,
    "model.cp_liquid": 700.0,
    "model.k_solid": 20.0,
    "model.k_liquid": 20.0,
    "model.latent_heat": 0.0,
    "model.emissivity": 0.0,
    "model.h_conv": 0.0,
    "model.radius": 2e-5,
    "model.absorptivity": 1.0,
    "model.laser_width": 1.0,
}
REGIME_N = (1.74, 4.0)  # n of the shipped case, and larger (the deepest point then lies ~0.5 mm behind the spot)


def law(eq: LaserCoarse, q_line: float, speed: float) -> tuple[float, float]:
    """(D [m], n) of docs/physics.md §4 for the model's material: c̄_p and k̄ means over [T∞, T_l]."""
    mat, t_inf = eq.mat, eq.t_inf
    dt_melt = mat.liquidus - t_inf
    cp = mat.mean_cp(t_inf, mat.liquidus)
    k = float(mat.kirchhoff(mat.liquidus) - mat.kirchhoff(t_inf)) / dt_melt
    return 0.484 * q_line / (mat.density * cp * speed * dt_melt), q_line / (math.pi * k * dt_melt)


def run(
    power: float,
    speed: float,
    spacing: float,
    folder: Path,
    extra: dict[str, Any] | None = None,
    travel: float = TRAVEL,
) -> dict[str, Any]:
    """One coarse run (``extra``: more case overrides); the quasi-steady depth, its drift, width and peak, the law."""
    steps = round(travel / STEP_LENGTH)
    rc = resolve_case(
        CASE,
        {
            **(extra or {}),
            "grid.lengths": [2.5e-3, 0.6e-3],
            "grid.spacing": spacing,
            "model.power": power,
            "model.speed": speed,
            "terms.patch_temperature.couple_every": 0,
            "time.dt": STEP_LENGTH / speed,
            "time.steps": steps,
            "output.every": steps,
            "output.path": str(folder / f"p{power:g}_v{speed:g}.h5"),
        },
    )
    sim = build_simulation(rc)
    eq = sim.equation
    assert isinstance(eq, LaserCoarse)
    pools: dict[int, Any] = {}
    t0 = time.perf_counter()
    while sim.state.step < sim.steps:
        sim.step()
        pools[sim.state.step] = melt_pool(eq.temperature(np.asarray(sim.state["E"])), (eq.dx, eq.dz), eq.mat.liquidus)
    sim.close()
    earlier = steps - round(0.25e-3 / STEP_LENGTH)

    def mean(attr: str, end: int) -> float:
        return float(np.mean([getattr(pools[s], attr) for s in range(end - 3, end + 1)]))

    q = line_power(rc.context.params)
    d_law, n = law(eq, q, speed)
    depth = mean("depth", steps)
    return {
        "kind": "constant" if extra else "Ti-6Al-4V",
        "P": power,
        "v": speed,
        "q": q,
        "n": n,
        "depth": depth,
        "drift": depth - mean("depth", earlier),
        "width": mean("width", steps),
        "peak": mean("peak", steps),
        "law": d_law,
        "seconds": time.perf_counter() - t0,
        "steps": steps,
    }


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    ax = axes[0]
    laws = np.array([r["law"] for r in rows]) * 1e6
    meas = np.array([r["depth"] for r in rows]) * 1e6
    for r in rows:
        if r["kind"] == "constant":
            ax.plot(r["law"] * 1e6, r["depth"] * 1e6, "s", color="C2")
            label = f"n = {r['n']:.2f}"
        else:
            ax.plot(r["law"] * 1e6, r["depth"] * 1e6, "o", color="C0" if r["v"] == 0.25 else "C1")
            label = f"{r['P']:g} W, {r['v']:g} m/s"
        ax.annotate(label, (r["law"] * 1e6, r["depth"] * 1e6), fontsize=7, xytext=(4, -8), textcoords="offset points")
    top = 1.1 * max(laws.max(), meas.max())
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="D = law")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="law 0.484 q′/(ρ c̄_p v ΔT) [µm]", ylabel="measured depth [µm]",
           title="coarse model against the law")  # fmt: skip
    ax.plot([], [], "o", color="C0", label="v = 0.25 m/s")
    ax.plot([], [], "o", color="C1", label="P = 150 W")
    ax.plot([], [], "s", color="C2", label="constant properties, r = 20 µm")
    ax.legend(loc="upper left", fontsize=8)
    rows = [r for r in rows if r["kind"] != "constant"]
    at_v = [r for r in rows if r["v"] == 0.25]
    ax = axes[1]
    ax.plot([r["P"] for r in at_v], [r["depth"] * 1e6 for r in at_v], "o-", label="coarse model")
    ax.plot([r["P"] for r in at_v], [r["law"] * 1e6 for r in at_v], "k--", label="law")
    ax.set(xlabel="P [W]", ylabel="depth [µm]", title="v = 0.25 m/s")
    ax.legend(fontsize=8)
    at_p = sorted((r for r in rows if r["P"] == 150.0), key=lambda r: r["v"])
    ax = axes[2]
    ax.plot([r["v"] for r in at_p], [r["depth"] * 1e6 for r in at_p], "o-", color="C1", label="coarse model")
    speeds = np.linspace(min(SPEEDS), max(SPEEDS), 50)
    ref = at_p[0]
    ax.plot(speeds, ref["law"] * ref["v"] / speeds * 1e6, "k--", label="law ∝ 1/v")
    ax.set(xlabel="v [m/s]", ylabel="depth [µm]", title="P = 150 W")
    ax.legend(fontsize=8)
    fig.suptitle("Melt-pool depth, Ti-6Al-4V, r = 100 µm, W_eff = 0.35 mm (benchmarks/study_laser_depth.py)",
                 fontsize=10)  # fmt: skip
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spacing", type=float, default=1e-5, help="coarse mesh spacing [m]")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "laser_depth_law.png", help="figure (PNG)")
    args = p.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus (OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), python {platform.python_version()}, "
        f"hybrid {hybrid.__version__}, numpy {np.__version__}"
    )
    cases = [(pw, 0.25) for pw in POWERS] + [(150.0, v) for v in SPEEDS if v != 0.25]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for power, speed in cases:
            rows.append(run(power, speed, args.spacing, Path(tmp)))
        for n in REGIME_N:  # q′ = n π k ΔT with k = 20 W/(m K), ΔT = 1623 K
            rows.append(run(n * math.pi * 20.0 * 1623.0, 0.25, args.spacing, Path(tmp), CONSTANT, 1.5e-3))
    print(f"\nmesh {args.spacing * 1e6:g} µm, the spot moving 5 µm per step\n")
    head = f"{'material':>9} {'P W':>7} {'v m/s':>6} {'q′ W/m':>8} {'n':>5} {'depth µm':>9} {'drift µm':>9} "
    print(head + f"{'law µm':>7} {'D/law':>6} {'width µm':>9} {'peak K':>7} {'steps':>6} {'run s':>6}")
    for r in rows:
        print(
            f"{r['kind']:>9} {r['P']:7.4g} {r['v']:6g} {r['q']:8.3g} {r['n']:5.2f} {r['depth'] * 1e6:9.1f} "
            f"{r['drift'] * 1e6:9.2f} {r['law'] * 1e6:7.1f} {r['depth'] / r['law']:6.3f} {r['width'] * 1e6:9.1f} "
            f"{r['peak']:7.0f} {r['steps']:6d} {r['seconds']:6.1f}"
        )
    plot(rows, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
