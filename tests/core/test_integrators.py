"""IMEX steps on periodic and no-flux grids, and an equation's own implicit solve, against closed forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from hybrid.core.backend import Backend, to_numpy
from hybrid.core.grid import Grid
from hybrid.core.integrators import make_stepper
from hybrid.core.state import State

BACKENDS = [Backend("numpy"), pytest.param(Backend("torch"), id="torch")]


@dataclass
class Diffusion:
    """dφ/dt = D Δ_h φ (compact 3/5-point Laplacian, reflecting at no-flux walls), all of it implicit in IMEX."""

    grid: Grid
    backend: Backend
    diffusivity: float = 1.0
    evolved_fields: tuple[str, ...] = ("phi",)
    terms: dict[str, Any] = field(default_factory=dict)

    def rhs(self, state: State) -> dict[str, Any]:
        return {"phi": self.backend.asarray(self.diffusivity * laplacian(to_numpy(state["phi"]), self.grid))}

    def linear_symbol(self, name: str) -> Any:
        return -self.diffusivity * self.grid.rfft_difference_symbol()


def laplacian(u: np.ndarray, grid: Grid) -> np.ndarray:
    """Compact Laplacian, periodic or reflecting (φ_{-1} = φ_1) per axis: the independent real-space reference."""
    out = np.zeros_like(u)
    for c, (d, periodic) in enumerate(zip(grid.spacing, grid.periodic, strict=True)):
        ax = u.ndim - 1 - c
        if periodic:
            lo, hi = np.roll(u, 1, axis=ax), np.roll(u, -1, axis=ax)
        else:
            pad = np.pad(u, [(1, 1) if a == ax else (0, 0) for a in range(u.ndim)], mode="reflect")
            lo = np.take(pad, np.arange(0, u.shape[ax]), axis=ax)
            hi = np.take(pad, np.arange(2, u.shape[ax] + 2), axis=ax)
        out += (lo - 2 * u + hi) / d**2
    return out


def test_spectral_grid_of_a_no_flux_axis_is_its_even_extension() -> None:
    g = Grid((6.0, 3.0), (12, 7), periodic=(True, False))
    assert g.spacing == (0.5, 0.5) and g.no_flux_array_axes == (-2,)
    s = g.spectral_grid()
    assert s.periodic == (True, True) and s.points == (12, 12) and s.lengths == (6.0, 6.0) and s.spacing == g.spacing
    a = np.arange(7.0)[:, None] * np.ones((1, 12))
    ext = Backend().extend_even(a, (-2,))
    np.testing.assert_array_equal(ext[:, 0], [0, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_imex_on_a_no_flux_axis_decays_each_neumann_mode_by_its_discrete_eigenvalue(backend: Backend) -> None:
    if backend.is_torch:
        pytest.importorskip("torch")
    lx, ly, nx, ny = 8.0, 3.0, 16, 13
    grid = Grid((lx, ly), (nx, ny), periodic=(True, False))
    dx, dy = grid.spacing
    x, y = grid.coordinates()
    kx, m = 2 * np.pi * 3 / lx, 2  # cos(kx x) cos(m π y / ly) satisfies the discrete Neumann condition
    phi = np.cos(m * np.pi * y / ly)[:, None] * np.cos(kx * x)[None, :]
    # eigenvalue of the compact Laplacian for this mode (independent of the Fourier code under test)
    lam = (2 * np.sin(kx * dx / 2) / dx) ** 2 + (2 * np.sin(m * np.pi * dy / (2 * ly)) / dy) ** 2
    np.testing.assert_allclose(laplacian(phi, grid), -lam * phi, atol=1e-12)
    dt, steps = 0.7, 5  # far beyond the explicit limit dx²/4 = 0.0625: only the implicit part keeps it stable
    eq = Diffusion(grid, backend)
    stepper = make_stepper("imex", eq, dt)
    state = State.from_arrays({"phi": phi}, backend=backend)
    for _ in range(steps):
        state = stepper(state)
    np.testing.assert_allclose(to_numpy(state["phi"]), phi / (1 + dt * lam) ** steps, atol=1e-12)


def test_imex_on_a_no_flux_axis_conserves_the_trapezoidal_mass() -> None:
    grid = Grid((5.0, 4.0), (10, 9), periodic=(True, False))
    phi = np.random.default_rng(0).standard_normal(grid.shape)
    w = np.ones(grid.shape[0])
    w[[0, -1]] = 0.5  # trapezoidal weights of the vertex-centred no-flux axis: the mass the Neumann Laplacian keeps
    mass = (w[:, None] * phi).sum()
    np.testing.assert_allclose((w[:, None] * laplacian(phi, grid)).sum(), 0.0, atol=1e-10)
    stepper = make_stepper("imex", Diffusion(grid, Backend()), 0.3)
    state = State.from_arrays({"phi": phi})
    for _ in range(20):
        state = stepper(state)
    assert (w[:, None] * state["phi"]).sum() == pytest.approx(mass, abs=1e-11)
    assert np.ptp(state["phi"]) < np.ptp(phi)  # and it diffuses


@dataclass
class DenseDiffusion(Diffusion):
    """The same equation solving (1 − dt L) x = b itself with a dense matrix (the ImplicitSolve seam)."""

    solves: int = 0

    def implicit_solve(self, name: str, b: Any, dt: float) -> Any:
        n = self.grid.points[0]
        eye = np.eye(n)
        lap = np.array([laplacian(e, self.grid) for e in eye]).T  # columns: the Laplacian of unit vectors
        self.solves += 1
        return np.linalg.solve(eye - dt * self.diffusivity * lap, to_numpy(b))


@pytest.mark.parametrize("periodic", [True, False])
def test_an_equations_own_implicit_solve_replaces_the_fourier_symbol(periodic: bool) -> None:
    grid = Grid((4.0,), (24,), periodic=(periodic,))
    phi = np.random.default_rng(2).standard_normal(grid.shape)
    own, fourier = DenseDiffusion(grid, Backend()), Diffusion(grid, Backend())
    a, b = State.from_arrays({"phi": phi}), State.from_arrays({"phi": phi})
    step_own, step_fourier = make_stepper("imex", own, 0.05), make_stepper("imex", fourier, 0.05)
    for _ in range(10):
        a, b = step_own(a), step_fourier(b)
    assert own.solves == 10
    np.testing.assert_allclose(a["phi"], b["phi"], atol=1e-12)


@dataclass
class ReactionDiffusion(Diffusion):
    """dφ/dt = D Δ_h φ + β φ: the diffusion implicit (its symbol), the linear reaction explicit."""

    rate: float = 0.8

    def rhs(self, state: State) -> dict[str, Any]:
        phi = to_numpy(state["phi"])
        return {"phi": self.backend.asarray(self.diffusivity * laplacian(phi, self.grid) + self.rate * phi)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_imex2_is_second_order_and_imex_first(backend: Backend) -> None:
    """A Neumann-periodic mode of dφ/dt = D Δ_h φ + β φ grows or decays as exp((β − D λ) t) exactly, λ the compact
    Laplacian's eigenvalue: halving dt must divide imex2's error at t = 1 by about 4 (Crank–Nicolson + Heun) and
    imex's by about 2, and imex2 stays bounded at a step 10x the explicit limit."""
    if backend.is_torch:
        pytest.importorskip("torch")
    grid = Grid((8.0, 3.0), (16, 13), periodic=(True, False))
    dx, dy = grid.spacing
    x, y = grid.coordinates()
    kx, m = 2 * np.pi * 2 / 8.0, 1
    phi = np.cos(m * np.pi * y / 3.0)[:, None] * np.cos(kx * x)[None, :]
    lam = (2 * np.sin(kx * dx / 2) / dx) ** 2 + (2 * np.sin(m * np.pi * dy / 6.0) / dy) ** 2
    eq = ReactionDiffusion(grid, backend, diffusivity=0.5)
    exact = phi * np.exp((eq.rate - eq.diffusivity * lam) * 1.0)

    def error(name: str, dt: float) -> float:
        stepper, state = make_stepper(name, eq, dt), State.from_arrays({"phi": phi}, backend=backend)
        for _ in range(round(1.0 / dt)):
            state = stepper(state)
        assert state.step == round(1.0 / dt) and abs(state.time - 1.0) < 1e-12
        return float(np.abs(to_numpy(state["phi"]) - exact).max())

    second = [error("imex2", dt) for dt in (0.05, 0.025, 0.0125)]  # the asymptotic range
    first = [error("imex", dt) for dt in (0.05, 0.025, 0.0125)]
    assert 3.6 < second[0] / second[1] < 4.4 and 3.6 < second[1] / second[2] < 4.4
    assert 1.7 < first[1] / first[2] < 2.3 and second[2] < first[2] / 50
    stiff = make_stepper("imex2", Diffusion(grid, backend), 0.6)  # explicit limit dx²dy²/(2(dx²+dy²)) ≈ 0.04
    state = State.from_arrays({"phi": phi}, backend=backend)
    for _ in range(20):
        state = stiff(state)
    assert np.abs(to_numpy(state["phi"])).max() < 1.0


def test_imex2_refuses_an_equation_that_solves_its_stiff_part_itself() -> None:
    with pytest.raises(ValueError, match=r"imex2.*time\.integrator = 'imex'"):
        make_stepper("imex2", DenseDiffusion(Grid((4.0,), (8,)), Backend()), 0.1)
