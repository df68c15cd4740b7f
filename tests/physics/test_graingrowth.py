"""Grain-growth physics (docs/physics.md §2): curvature-driven shrinkage of a circular grain, a flat boundary at rest,
the semi-implicit (Chen–Shen) step, and — behind ``-m slow`` — the coarsening exponent of the shipped case.

Circular grain: in the sharp-interface limit the boundary moves with v = L κ K, so the area of a circular grain of
radius R obeys dA/dt = −2π L κ for any R. Choices, so that the check at 5 % has margin:
- R from 20 down to ≈ 13 against an interface of width ≈ 2ℓ ≈ 3 (ℓ = sqrt(κ/(2γ − α)) = 1.41): the curvature
  corrections to v are O((ℓ/R)²) ≈ 1 %;
- dx = 1 puts 4–6 grid points in the interface; halving dx changes the rate by 1 % (measured: 0.990 at dx = 1,
  1.004 at dx = 0.5, while dx = 2 gives 0.92);
- dt = 0.05: explicit Euler is far inside its stability limit (dt ≤ 0.11 at dx = 1) and its O(dt) error is
  negligible; the semi-implicit scheme slows the boundary by O(dt L κ k²) ≈ 2 % (docs/physics.md: dt ≲ 0.05 for 2 %);
- the area is ∫ (1 + η_in − η_out)/2 dA, a profile that is antisymmetric about the boundary, so its integral is the
  area inside the boundary up to O((ℓ/R)²); the rate is the slope of a linear fit over t ∈ [5, 60] (after the
  initial tanh profile has relaxed);
- the domain (64 × 64) leaves 24 units between periodic images: their interaction ~ exp(−24/ℓ) is nil.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybrid.analysis.grain_statistics import GRAINS_TABLE, fit_growth_exponent, late_time_window
from hybrid.cases import load_case
from hybrid.core.io import read_output, read_table
from hybrid.solvers.graingrowth_kernels import graingrowth_rhs_numpy

KAPPA, L_MOB = 2.0, 1.0
CASE_FILE = Path(__file__).resolve().parents[2] / "cases" / "graingrowth.toml"


def _circle_case(integrator: str, dt: float, steps: int) -> dict[str, Any]:
    return {
        "case": {"name": "circle", "model": "graingrowth"},
        "grid": {"lengths": [64.0, 64.0], "shape": [64, 64]},
        "model": {"order_parameters": 2, "kappa": KAPPA, "mobility": L_MOB, "reassign": False, "reassign_every": 100},
        "initial": {"kind": "circle", "radius": 20.0},
        "time": {"integrator": integrator, "dt": dt, "steps": steps},
    }


def _area(eta: np.ndarray, cell: float) -> float:
    return float(0.5 * np.sum(1.0 + eta[0] - eta[1]) * cell)


@pytest.mark.parametrize("integrator", ["euler", "imex"])
def test_circular_grain_area_shrinks_at_minus_two_pi_mobility_kappa(integrator: str) -> None:
    dt, t_end = 0.05, 60.0
    steps = round(t_end / dt)
    sim = load_case(_circle_case(integrator, dt, steps))
    sim.output.path = None
    times, areas = [], []
    while sim.state.step < steps:
        sim.step()
        if sim.state.step % 20 == 0 and sim.state.time >= 5.0 - 1e-9:
            times.append(sim.state.time)
            areas.append(_area(sim.state.numpy_fields()["eta"], 1.0))
    rate = np.polyfit(times, areas, 1)[0]
    expected = -2 * np.pi * L_MOB * KAPPA
    assert rate == pytest.approx(expected, rel=0.05)
    r_end = np.sqrt(areas[-1] / np.pi)
    assert 11.0 < r_end < 15.0  # it did shrink by a good part of its radius, and stayed far from vanishing
    # the rate is constant (independent of R): first and second halves agree
    half = len(times) // 2
    r1 = np.polyfit(times[:half], areas[:half], 1)[0]
    r2 = np.polyfit(times[half:], areas[half:], 1)[0]
    assert r1 == pytest.approx(r2, rel=0.02)


@pytest.mark.parametrize("integrator", ["euler", "imex"])
def test_flat_boundary_does_not_move(tmp_path: Path, integrator: str) -> None:
    """Two flat boundaries (a slab of grain 0 in grain 1, from a .npy file, off-centre) stay where they are."""
    nx, ny, dx = 80, 16, 1.0
    eta = np.zeros((3, ny, nx))
    x = np.arange(nx) * dx
    slab = (x >= 17.0) & (x < 51.0)
    eta[0][:, slab] = 1.0
    eta[1][:, ~slab] = 1.0  # η_2 stays empty
    np.save(tmp_path / "slab.npy", eta)
    case = {
        "case": {"name": "flat", "model": "graingrowth"},
        "grid": {"lengths": [nx * dx, ny * dx], "shape": [nx, ny]},
        "model": {"order_parameters": 3, "reassign_every": 50},
        "initial": {"kind": "file", "path": str(tmp_path / "slab.npy")},
        "time": {"integrator": integrator, "dt": 0.1, "steps": 2000},
    }
    sim = load_case(case)
    sim.output.path = None

    def boundaries() -> np.ndarray:
        e = sim.state.numpy_fields()["eta"]
        phi = 0.5 * (1.0 + e[0] - e[1]).mean(axis=0)  # 1 in the slab, 0 outside
        crossings = []
        for i in range(nx - 1):
            if (phi[i] - 0.5) * (phi[i + 1] - 0.5) < 0:
                crossings.append(x[i] + dx * (phi[i] - 0.5) / (phi[i] - phi[i + 1]))
        return np.array(crossings)

    for _ in range(200):  # 20 time units: the sharp start relaxes to the diffuse profile
        sim.step()
    early = boundaries()
    assert early.size == 2 and np.all(np.abs(early - [17.0, 51.0]) < 1.0)
    for _ in range(1800):  # 180 more time units
        sim.step()
    late = boundaries()
    np.testing.assert_allclose(late, early, atol=1e-6)  # a curvature-driven boundary with K = 0 has v = 0
    labels = sim.equation.frame_output(sim.state)[0]["grain"]
    assert np.unique(labels).size == 2


def test_imex_step_is_the_chen_shen_scheme() -> None:
    """(1 + dt L κ s²) η̂^{n+1} = η̂^n − dt L [∂f0/∂η]^n_k with s² the symbol of −(5-point Laplacian)."""
    dt = 0.3
    case = {
        "case": {"name": "cs", "model": "graingrowth", "seed": 2},
        "grid": {"lengths": [60.0, 45.0], "shape": [40, 30]},
        "model": {"order_parameters": 8, "reassign": False},
        "initial": {"kind": "voronoi", "grains": 12},
        "time": {"integrator": "imex", "dt": dt, "steps": 10},
    }
    sim = load_case(case)
    sim.output.path = None
    for _ in range(5):
        sim.step()
    eta = np.array(sim.state.numpy_fields()["eta"], copy=True)
    sim.step()
    new = sim.state.numpy_fields()["eta"]
    dx, dy = 1.5, 1.5
    p = sim.equation.params
    # the local part of the tendency: full tendency with κ = 0
    dfdeta = -graingrowth_rhs_numpy(eta, dx, dy, 1.0, p["alpha"], p["beta"], p["gamma"], 0.0)
    ky = 2 * np.pi * np.fft.fftfreq(30, d=dy)[:, None]
    kx = 2 * np.pi * np.fft.rfftfreq(40, d=dx)[None, :]
    s2 = (2 * np.sin(kx * dx / 2) / dx) ** 2 + (2 * np.sin(ky * dy / 2) / dy) ** 2
    hat = (np.fft.rfftn(eta, axes=(1, 2)) - dt * L_MOB * np.fft.rfftn(dfdeta, axes=(1, 2))) / (
        1 + dt * L_MOB * KAPPA * s2
    )
    expected = np.fft.irfftn(hat, s=(30, 40), axes=(1, 2))
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-12)


def test_shipped_case_runs_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "tiny.h5"
    sim = load_case(
        CASE_FILE,
        {
            "grid.shape": [64, 64],
            "grid.lengths": [128.0, 128.0],
            "initial.grains": 16,
            "time.steps": 40,
            "output.every": 20,
        },
        out=out,
    )
    sim.run()
    stats = read_table(out, GRAINS_TABLE)
    assert stats["count"][0] == 16 and len(stats["count"]) == 3
    assert np.all(np.diff(stats["count"]) <= 0)  # grains vanish, none appear
    np.testing.assert_allclose(stats["count"] * stats["mean_area"], 128.0 * 128.0, rtol=1e-12)  # labels tile it
    grain = read_output(out)["fields"]["grain"]
    assert [len(np.unique(g)) for g in grain] == stats["count"].tolist()


@pytest.mark.slow
def test_shipped_case_coarsens_with_exponent_one_half(tmp_path: Path) -> None:
    """The full shipped case (minutes): ⟨R⟩ ∝ (t − t0)^n with n = 0.5 ± 0.05 over the late-time window."""
    out = tmp_path / "graingrowth.h5"
    load_case(CASE_FILE, out=out).run()
    stats = read_table(out, GRAINS_TABLE)
    assert stats["count"][-1] <= 0.1 * stats["count"][0]
    window = late_time_window(stats["count"])
    fit = fit_growth_exponent(stats["time"][window], stats["mean_radius"][window])
    assert fit["n"] == pytest.approx(0.5, abs=0.05)
