"""Physics validation of the scikit-fem strained-film solver (docs/physics.md §1, term ``elastic``, provider ``fem``).

References: flat film rho0 = E eps_m^2 / (2 (1 - nu^2)); small sinusoid rho = rho0 [1 - 4 A k g(kT) cos kx] +
O((kA)^2) with the finite-depth factor g(kT) of docs/physics.md; film thickness does not change rho. Material:
Ge on Si(001) defaults of docs/physics.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from hybrid.solvers.elasticity import (
    FilmElasticitySolver,
    depth_factor,
    flat_film_stress,
    misfit_energy_density,
    plane_strain_energy_density,
)

E, NU, EPS = 643.75, 0.26, 0.04  # eV/nm^3, -, -
RHO0 = E * EPS**2 / (2.0 * (1.0 - NU**2))


def grid(length: float, points: int) -> np.ndarray:
    return np.arange(points) * (length / points)


def first_harmonic(values: np.ndarray, k: float, x: np.ndarray) -> float:
    """Projection on cos(kx) over whole periods: removes the mean and every other harmonic exactly."""
    return float(2.0 * np.mean(values * np.cos(k * x)))


def island(x: np.ndarray, length: float) -> np.ndarray:
    """Flat-topped island, 6 nm high on a 1 nm wetting layer, slopes up to 1.14: a non-small-slope profile."""
    return 1.0 + 3.0 * (np.tanh((x - 0.34 * length) / 2.5) - np.tanh((x - 0.66 * length) / 2.5))


def rough(x: np.ndarray, length: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = np.full_like(x, 2.0)
    for m in range(1, 9):
        h += rng.normal() * 0.6 / m * np.cos(2 * np.pi * m * x / length + rng.uniform(0, 2 * np.pi))
    return np.maximum(h, 0.1)


@pytest.fixture(scope="module")
def shipped() -> FilmElasticitySolver:
    """Default options on the shipped case's grid: L = 100 nm, N = 100 (dx = 1 nm), H = L."""
    return FilmElasticitySolver(100.0, 100, None, E, NU, EPS)


# --------------------------------------------------------------------------------------------- closed forms
def test_flat_film_closed_forms() -> None:
    assert misfit_energy_density(E, NU, EPS) == pytest.approx(RHO0, rel=1e-15)
    s0 = flat_film_stress(E, NU, EPS)
    assert s0 == pytest.approx(-E * EPS / (1 - NU**2), rel=1e-15)
    # uniaxial sigma0 e_x e_x with sigma_zz = nu sigma0 (plane strain) stores rho0
    rho = plane_strain_energy_density(np.array(s0), np.array(0.0), np.array(0.0), E, NU)
    assert float(rho) == pytest.approx(RHO0, rel=1e-14)


def test_depth_factor_limits() -> None:
    # docs/physics.md: kT >= 2 pi gives g > 0.9997; g -> 1 for a deep body; g(0) = 0 (fully clamped film)
    assert depth_factor(2 * np.pi, NU) > 0.9997
    assert depth_factor(1e3, NU) == pytest.approx(1.0, abs=1e-15)
    assert depth_factor(0.0, NU) == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------------------------------------- flat film
@pytest.mark.parametrize("thickness", [0.0, 0.3, 1.0, 5.0, 40.0])
@pytest.mark.parametrize("solver", ["pcg", "direct"])
def test_flat_film_gives_rho0(thickness: float, solver: str) -> None:
    # exact: a flat surface carries no correction load, so rho0 comes out to round-off (1e-10 asked)
    s = FilmElasticitySolver(32.0, 32, None, E, NU, EPS, solver=solver)
    s(2.0 + np.cos(2 * np.pi * grid(32.0, 32) / 32.0))  # a non-flat call first: state must not leak
    rho = s(np.full(32, thickness))
    np.testing.assert_allclose(rho, RHO0, rtol=1e-10)


# ------------------------------------------------------------------------------------------ small sinusoid
@pytest.mark.parametrize("mode", [5, 10])
def test_small_sinusoid_matches_linear_theory(shipped: FilmElasticitySolver, mode: int) -> None:
    """h = h0 + A cos kx, kA = 1e-2, on the shipped grid; mode 5 is lambda = 20 nm ~ lambda_max = 22.75 nm."""
    length, n = 100.0, 100
    x = grid(length, n)
    k = 2 * np.pi * mode / length
    amp, h0 = 1e-2 / k, 5.0
    rho = shipped(h0 + amp * np.cos(k * x))
    expected = -4.0 * amp * k * RHO0 * depth_factor(k * (h0 + length), NU)
    # first harmonic: the O((kA)^2) terms go to the mean and 2k; what is left is O((kA)^2) ~ 1e-4 relative
    # (third order) plus the discretisation error (measured 1e-4 and 2.3e-4 at 20 and 10 points per
    # wavelength). The contract asks 2%; 2e-3 still leaves an 8x margin.
    assert first_harmonic(rho, k, x) == pytest.approx(expected, rel=2e-3)
    # mean: rho0 + O((kA)^2); measured |mean/rho0 - 1| ~ 1e-7, bound by (kA)^2 = 1e-4
    assert abs(rho.mean() / RHO0 - 1.0) < 1e-4


@pytest.mark.parametrize(("depth", "mode"), [(11.0, 1), (5.0, 2)])
def test_shallow_substrate_matches_depth_factor(depth: float, mode: int) -> None:
    """kT ~ 1 (g ~ 0.77-0.82): checks the clamped bottom and the finite-depth factor g(kT) of docs/physics.md."""
    length, n = 100.0, 100
    x = grid(length, n)
    k = 2 * np.pi * mode / length
    amp, h0 = 1e-3 / k, 5.0
    rho = FilmElasticitySolver(length, n, depth, E, NU, EPS)(h0 + amp * np.cos(k * x))
    g = depth_factor(k * (h0 + depth), NU)
    assert g < 0.85  # the test is meaningful: g differs from 1 by 15-25%
    # measured agreement ~1e-4; (kA)^2 = 1e-6
    assert first_harmonic(rho, k, x) == pytest.approx(-4.0 * amp * k * RHO0 * g, rel=1e-3)


# ------------------------------------------------------------------------------------------- convergence
def test_modulation_error_converges() -> None:
    """5 points per wavelength (mode 10 on L = 50, N = 50): error of the first harmonic vs refinement."""
    length, n, mode = 50.0, 50, 10
    x = grid(length, n)
    k = 2 * np.pi * mode / length
    amp, h0 = 1e-3 / k, 5.0
    expected = -4.0 * amp * k * RHO0 * depth_factor(k * (h0 + length), NU)
    errors = []
    for refine in (1, 2, 4):
        s = FilmElasticitySolver(length, n, None, E, NU, EPS, refine=refine, solver="direct")
        errors.append(abs(first_harmonic(s(h0 + amp * np.cos(k * x)), k, x) / expected - 1.0))
    # measured 1.0e-2, 2.6e-4, 1.0e-4: the error changes sign between 5 and 10 points per wavelength, so the
    # ratios are irregular (38, 2.6); asymptotically they approach 16 (1.0e-4 -> 1.6e-5 -> 9e-7 at 20, 40, 80
    # points per wavelength, too slow for this suite). Loose: ratio > 2, and the contract's 2% at 5 points.
    assert errors[0] < 2e-2
    assert errors[0] / errors[1] > 2.0
    assert errors[1] / errors[2] > 2.0
    assert errors[2] < 3e-4


def test_island_self_convergence() -> None:
    """Non-small slopes (max 1.14): max-norm difference to a 4x refined solution shrinks with refinement."""
    length, n = 64.0, 64
    h = island(grid(length, n), length)
    rho = {r: FilmElasticitySolver(length, n, None, E, NU, EPS, refine=r, solver="direct")(h) for r in (1, 2, 4)}
    e1 = np.abs(rho[1] - rho[4]).max() / RHO0
    e2 = np.abs(rho[2] - rho[4]).max() / RHO0
    # measured e1 = 5.2e-3, e2 = 4.7e-4 (rho itself spans 0.003 .. 2.8 rho0 on this island): ratio 11;
    # a second-order method gives 4
    assert e1 < 2e-2
    assert e1 / e2 > 4.0


def test_gradient_recovery_agrees_and_converges() -> None:
    """Independent recovery (full element stress, no traction-free identity) converges to the same rho.

    The default recovery uses sigma.n = 0 and the flat-state strain; the gradient recovery uses neither, so
    agreement at O(slope^2) checks both. It is second order: the difference must shrink ~4x per refinement.
    """
    length, n = 64.0, 64
    h = island(grid(length, n), length)
    diff = []
    for refine in (1, 2):
        a = FilmElasticitySolver(length, n, None, E, NU, EPS, refine=refine, solver="direct")
        b = FilmElasticitySolver(length, n, None, E, NU, EPS, refine=refine, solver="direct", recovery="gradient")
        diff.append(np.abs(a(h) - b(h)).max() / RHO0)
    # measured 6.0e-2, 1.8e-2 (ratio 3.4; 4 asymptotically)
    assert diff[1] < 3e-2
    assert diff[0] / diff[1] > 2.5


# -------------------------------------------------------------------------------------------- invariance
@pytest.fixture(scope="module")
def rough_case() -> tuple[np.ndarray, np.ndarray, FilmElasticitySolver]:
    length, n = 64.0, 64
    s = FilmElasticitySolver(length, n, None, E, NU, EPS, solver="direct")
    h = rough(grid(length, n), length)
    return h, s(h), s


def test_translation_shifts_rho(rough_case: tuple[np.ndarray, np.ndarray, FilmElasticitySolver]) -> None:
    h, rho, s = rough_case
    for shift in (1, 7, 33):
        # the mesh is invariant under a grid shift: equal to round-off
        np.testing.assert_allclose(s(np.roll(h, shift)), np.roll(rho, shift), rtol=0, atol=1e-10 * RHO0)


def test_mirror_mirrors_rho(rough_case: tuple[np.ndarray, np.ndarray, FilmElasticitySolver]) -> None:
    h, rho, s = rough_case
    mirror = np.roll(h[::-1], 1)  # h(-x) on the grid
    np.testing.assert_allclose(s(mirror), np.roll(rho[::-1], 1), rtol=0, atol=1e-10 * RHO0)


@pytest.mark.parametrize("extra", [0.5, 5.0])
def test_film_thickness_does_not_change_rho(
    rough_case: tuple[np.ndarray, np.ndarray, FilmElasticitySolver], extra: float
) -> None:
    h, rho, s = rough_case
    # same total depth (substrate thinner by the same amount): the body is the same up to a translation,
    # and so is the mesh, so rho must agree to round-off; this is the exact form of the docs/physics.md statement
    same_total = FilmElasticitySolver(64.0, 64, 64.0 - extra, E, NU, EPS, solver="direct")
    np.testing.assert_allclose(same_total(h + extra), rho, rtol=0, atol=1e-10 * RHO0)
    # same substrate depth: the body is deeper by `extra`. Linear theory bounds the change by
    # 4 sum_k |k A_k| |g(k T') - g(k T)| = 8e-6 rho0 for extra = 5 nm here; the near-surface mesh moves
    # rigidly, so the discretisation adds little (measured 1.3e-6 and 9.4e-6 rho0). Bound: 3e-5 rho0.
    np.testing.assert_allclose(s(h + extra), rho, rtol=0, atol=3e-5 * RHO0)


# --------------------------------------------------------------------------------- warm-started solver path
def test_warm_started_path_matches_fresh_solves() -> None:
    length, n = 64.0, 64
    x = grid(length, n)
    h = island(x, length)
    drift = 0.02 * np.sin(2 * np.pi * 3 * x / length) + 0.01 * np.cos(2 * np.pi * 7 * x / length)
    warm = FilmElasticitySolver(length, n, None, E, NU, EPS, solver="pcg")
    fresh = FilmElasticitySolver(length, n, None, E, NU, EPS, solver="direct")
    worst = 0.0
    for step in range(25):
        hs = h + step * drift  # slowly evolving, as in a time-stepping simulation
        worst = max(worst, float(np.abs(warm(hs) - fresh(hs)).max() / RHO0))
    stats = warm.stats()
    assert worst < 1e-8  # rtol = 1e-11 in energy norm; measured ~1e-11
    assert stats["iterations"] > 0  # the iterative path ran ...
    assert stats["factorizations"] < 25 / 2  # ... and reused factorisations
    assert stats["calls"] == 25 and stats["seconds"] > 0.0
    # an unrelated geometry must not break it (falls back to a fresh factorisation)
    other = rough(x, length, seed=5) + 3.0
    np.testing.assert_allclose(warm(other), fresh(other), rtol=0, atol=1e-8 * RHO0)


def test_restart_reproduces_uninterrupted_run_bitwise() -> None:
    length, n = 32.0, 32
    x = grid(length, n)
    profiles = [island(x, length) + 0.05 * i * np.sin(2 * np.pi * 2 * x / length) for i in range(12)]
    run = FilmElasticitySolver(length, n, None, E, NU, EPS)
    reference = [run(h) for h in profiles]
    first = FilmElasticitySolver(length, n, None, E, NU, EPS)
    for h in profiles[:6]:
        first(h)
    state = first.state_dict()
    state["h_factor"] = list(state["h_factor"])  # as a JSON round trip would give it back
    resumed = FilmElasticitySolver(length, n, None, E, NU, EPS)
    resumed.load_state_dict(state)
    for h, ref in zip(profiles[6:], reference[6:], strict=True):
        np.testing.assert_array_equal(resumed(h), ref)  # deterministic refresh rule: bit for bit
    assert resumed.stats()["calls"] == 12


# ------------------------------------------------------------------------------- cross-check with skfem asm
def test_matches_plain_scikit_fem_assembly() -> None:
    """Same mesh assembled by scikit-fem (MeshQuad2, ElementQuad2, linear_elasticity, FacetBasis load),
    periodic DOFs tied by hand, no condensation, solved directly: the displacement fields must agree."""
    from skfem import Basis, ElementQuad2, ElementVector, FacetBasis, LinearForm, MeshQuad1, MeshQuad2, asm
    from skfem.models.elasticity import lame_parameters, linear_elasticity

    length, n = 16.0, 16
    s = FilmElasticitySolver(length, n, 12.0, E, NU, EPS, solver="direct")
    s(island(grid(length, n), length))
    x_nodes, y_nodes, u_ref = s.displacement()
    nx, ny = x_nodes.size, y_nodes.shape[0]
    nrows = (ny - 1) // 2
    # straight reference mesh in (x, element-row index): vertex columns at x_i, unit row height
    m1 = MeshQuad1.init_tensor(np.linspace(0.0, length, nx // 2 + 1), np.arange(nrows + 1, dtype=float))
    straight = MeshQuad2.from_mesh(m1)
    elem = ElementVector(ElementQuad2())
    # curved mesh: same topology, every geometry node moved onto the solver's node position
    geo_col = np.rint(straight.doflocs[0] / (length / nx)).astype(int) % nx
    geo_row = np.rint(2 * straight.doflocs[1]).astype(int)
    mesh = MeshQuad2(doflocs=np.vstack([straight.doflocs[0], y_nodes[geo_row, geo_col]]), t=m1.t)
    # lattice position and component of every scikit-fem dof (numbering depends on the topology only)
    ref_basis = Basis(straight, elem, intorder=5)
    locs = ref_basis.doflocs
    col = np.rint(locs[0] / (length / nx)).astype(int) % nx  # x = L is tied to x = 0 (periodic)
    row = np.rint(2 * locs[1]).astype(int)
    comp = np.zeros(locs.shape[1], dtype=int)
    comp[ref_basis.split_indices()[1]] = 1
    basis = Basis(mesh, elem, intorder=5)
    stiffness = asm(linear_elasticity(*lame_parameters(E, NU)), basis)
    top = m1.facets_satisfying(lambda p: np.isclose(p[1], nrows))
    sigma0 = flat_film_stress(E, NU, EPS)

    @LinearForm
    def traction(v, w):  # -sigma0 n_x e_x on the surface
        return -sigma0 * v[0] * w.n[0]

    load = asm(traction, FacetBasis(mesh, elem, facets=top, intorder=5))
    # tie periodic copies and drop the clamped bottom row
    lattice = (row * nx + col) * 2 + comp
    free = row >= 1
    keep, index = np.unique(lattice[free], return_inverse=True)
    tie = sp.csr_matrix((np.ones(free.sum()), (np.flatnonzero(free), index)), shape=(lattice.size, keep.size))
    solution = spla.spsolve((tie.T @ stiffness @ tie).tocsc(), tie.T @ load)
    u_skfem = np.zeros(2 * nx * ny)
    u_skfem[keep] = solution
    # every node, the statically condensed element centres included; agreement to solver round-off
    np.testing.assert_allclose(u_skfem.reshape(ny, nx, 2), u_ref, rtol=0, atol=1e-10 * np.abs(u_ref).max())


def test_numba_and_numpy_assembly_agree() -> None:
    length, n = 32.0, 32
    h = island(grid(length, n), length)
    fast = FilmElasticitySolver(length, n, None, E, NU, EPS, assembly="numba")
    ref = FilmElasticitySolver(length, n, None, E, NU, EPS, assembly="numpy")
    _, y, _ = fast.node_coordinates(h)
    a, b = fast._assemble(y), ref._assemble(y)
    assert np.abs(a.data - b.data).max() < 1e-12 * np.abs(b.data).max()
    np.testing.assert_allclose(fast(h), ref(h), rtol=0, atol=1e-12 * RHO0)


# --------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "bad",
    [
        np.ones(31),
        np.ones((32, 1)),
        np.ones(33),
        np.where(np.arange(32) == 3, np.nan, 1.0),
        np.where(np.arange(32) == 3, np.inf, 1.0),
        np.where(np.arange(32) == 3, -0.1, 1.0),
        np.array(["a"] * 32),
    ],
)
def test_bad_input_raises(bad: np.ndarray) -> None:
    s = FilmElasticitySolver(32.0, 32, None, E, NU, EPS)
    with pytest.raises(ValueError):
        s(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": -1.0},
        {"points": 2},
        {"substrate_depth": 0.0},
        {"poisson": 0.5},
        {"young": 0.0},
        {"refine": 0},
        {"solver": "lu"},
        {"recovery": "nodal"},
        {"derivative_order": 3},
    ],
)
def test_bad_options_raise(kwargs: dict[str, object]) -> None:
    args = {"length": 32.0, "points": 32, "substrate_depth": None, "young": E, "poisson": NU, "misfit": EPS}
    args.update(kwargs)
    with pytest.raises(ValueError):
        FilmElasticitySolver(**args)  # type: ignore[arg-type]
