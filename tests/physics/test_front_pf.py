"""Allen–Cahn front (docs/physics.md §3): the phase-field DNS against the travelling-wave speed, the curvature law
of a gentle front, its own kernels across backends, and the front extraction against an exact profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hybrid.cases import load_case
from hybrid.core.io import read_output
from hybrid.solvers.front_kernels import front_position, front_rhs_numpy, make_front_rhs

D, A = 0.1, -0.1
V0 = -np.sqrt(2 * D) * A  # the travelling wave's speed


def _case(initial: dict[str, Any], nx: int, lx: float, integrator: str = "euler", dt: float = 0.02) -> dict[str, Any]:
    return {
        "case": {"name": "front", "model": "front_pf"},
        "grid": {"lengths": [lx, 12.0], "shape": [nx, 121]},  # dy = 0.1
        "model": {"diffusion": D, "asymmetry": A},
        "initial": initial,
        "time": {"integrator": integrator, "dt": dt, "end": 60.0},
        "output": {"every": 500},
    }


def _run(case: dict[str, Any], out: Path) -> dict[str, Any]:
    load_case(case, out=out).run()
    return read_output(out)


def test_a_flat_front_travels_at_v0(tmp_path: Path) -> None:
    res = _run(_case({"kind": "flat", "mean": 3.0}, nx=4, lx=4.0), tmp_path / "flat.h5")
    t, h = res["time"], res["fields"]["h"]
    assert np.ptp(h[-1]) < 1e-12  # stays flat
    speed = np.polyfit(t[1:], h[1:, 0], 1)[0]  # after the start's relaxation (frames from t = 10)
    # the compact stencil's O(dy²) error at dy = 0.1 is 0.5 % (0.13 % at dy = 0.05: second order); the 1 %
    assert speed == pytest.approx(V0, rel=0.01)


def test_a_gentle_ripple_flattens_at_the_curvature_laws_rate(tmp_path: Path) -> None:
    lx = 16.0
    k = 2 * np.pi / lx
    res = _run(_case({"kind": "sinusoid", "mean": 3.0, "amplitude": 0.05, "mode": 1}, 64, lx), tmp_path / "s.h5")
    t, h = res["time"], res["fields"]["h"]
    amplitude = 2 * np.abs(np.fft.rfft(h, axis=1))[:, 1] / h.shape[1]
    rate = -np.polyfit(t[1:], np.log(amplitude[1:]), 1)[0]
    # normal velocity v0 − D K with K ≈ −h_xx for small slopes: h_t ≈ v0 + D h_xx, so the mode decays at D k²;
    # measured within 0.7 % (the same O(dy²) error as the flat front, and O((k W)²) = 0.2 % for width W = 0.45)
    assert rate == pytest.approx(D * k**2, rel=0.02)
    assert np.polyfit(t[1:], h[1:].mean(axis=1), 1)[0] == pytest.approx(V0, rel=0.01)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_kernels_equal_the_reference(backend: str) -> None:
    phi = np.random.default_rng(0).uniform(-1.2, 1.2, size=(17, 12))
    ref = front_rhs_numpy(phi, 0.5, 0.25, D, A)
    arr: Any = phi if backend == "numpy" else torch.from_numpy(phi)
    out = make_front_rhs(backend)(arr, 0.5, 0.25, D, A)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-12)
    # the reflecting walls: a field even about y = 0 and y = Ly keeps zero flux (the walls' Laplacian in y is
    # twice the one-sided difference, as the reflection φ_{-1} = φ_1 gives)
    col = phi[:, 0]
    lap_y0 = 2 * (col[1] - col[0]) / 0.25**2
    lap_x0 = (phi[0, -1] - 2 * phi[0, 0] + phi[0, 1]) / 0.5**2
    assert ref[0, 0] == pytest.approx(D * (lap_x0 + lap_y0) - (phi[0, 0] - A) * (phi[0, 0] ** 2 - 1), rel=1e-12)


def test_front_position_recovers_an_exact_profile() -> None:
    dy = 0.1
    y, x = np.arange(121) * dy, np.arange(64) * 0.25
    h = 3.0 + 0.5 * np.cos(2 * np.pi * x / 16.0)
    phi = np.tanh((h[None, :] - y[:, None]) / np.sqrt(2 * D))
    # linear interpolation across one cell of tanh: error <= dy² max|φ''| / (8 min|φ'|) ~ 2e-4 near the zero
    np.testing.assert_allclose(front_position(phi, dy), h, atol=3e-4)
    assert front_position(np.full((5, 3), -1.0), dy).tolist() == [0.0] * 3  # no +1 phase: at the bottom
    assert front_position(np.full((5, 3), 1.0), dy).tolist() == [0.4] * 3  # no −1 phase: at the top


def test_an_explicit_step_beyond_its_limit_is_refused() -> None:
    from hybrid.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"stability limit 0\.04115") as err:  # 2/(0.1 (4/0.25² + 4/0.1²) + 2.2)
        load_case(_case({"kind": "flat", "mean": 3.0}, nx=16, lx=4.0, dt=0.05))
    assert err.value.key == "time.dt"
