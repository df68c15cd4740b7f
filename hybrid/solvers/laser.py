"""Laser track, coarse model (docs/laser.md, docs/physics.md §4): a 2D cross-section of a plate under a moving laser.

x runs along the scan, z is the depth below the top surface. The case's grid is the finite-element mesh:
``grid.lengths = [Lx, Lz]`` [m] and ``grid.spacing`` [m] (or ``grid.shape = [nx, nz]`` nodes), nodes on all four
edges (dx = Lx/(nx − 1), dz = Lz/(nz − 1)). The state is the nodal volumetric enthalpy E (nz, nx) [J/m³], row 0 the top.

    ∂E/∂t = ∇·(k(T) ∇T),   E = ρ h(T),   h(T) = ∫₀ᵀ c_p dT + L_f f_l(T)

with, on the top, the absorbed laser flux q(x − x_L(t)) (:mod:`hybrid.solvers.laser_load`) minus the loss
h_c (T − T∞) + ε σ_SB (T⁴ − T∞⁴); the sides are insulated, and the bottom too unless ``bottom_temperature`` fixes it.

Numerics: bilinear (Q1) finite elements of scikit-fem on the structured quad mesh, with a lumped (row-sum) mass
matrix so that E is nodal and T(E) a pointwise inversion; the conductivity enters through the Kirchhoff transform
u = ∫k dT interpolated in Q1 (∇·(k∇T) = ∇²u), so the stiffness matrix K is assembled once. Backward Euler on E,

    M (E^{n+1} − E^n)/dt + K u(E^{n+1}) + g(E^{n+1}) = f(t^n + dt/2)

(g: top losses, lumped on the top nodes; f: the laser load at the step's midpoint, exact per element), solved by
Newton's method on E. The Jacobian J = K diag(d) + diag(m/dt + dg/dE), d = du/dE > 0, is A diag(d) with the
symmetric positive definite A = K + diag((m/dt + dg/dE)/d), so J x = r is A y = r, x = y/d.

Each Newton step solves A y = r by conjugate gradients with A's diagonal as preconditioner, to 1e-3 of the
right-hand side's norm (an inexact Newton step: the outer iteration still converges to the tolerance below). The
mass term dominates A's diagonal while α dt/dx² is of order one (0.45 in the melt of the shipped case, less in the
solid), so a few CG iterations suffice and no factorisation is needed. For larger steps, where CG would need more
than 40 iterations, and for the linear problem (constant c_p and k, no latent heat, no radiation: one solve per
step), the step falls back to a chord-Newton iteration with a reused factorisation: A is factorised by banded
Cholesky (LAPACK, nodes ordered with z fastest: half-bandwidth nz + 1) and the factorisation kept over iterations
and steps while dt is fixed. When a chord iteration contracts the update by less than tenfold, the next one is a
Newton step by CG preconditioned with the reused factorisation (the two A differ by a diagonal); only when that
needs more than 4 CG iterations (a factorisation costs about 10 solves), and at every 8th iteration of a step, is
A refactorised at the current iterate. The linear problem is one solve with the one factorisation of the run. The
iteration stops when the update is below 1e-10 of max |E| (≈ 1e-6 K); the global energy balance then closes to
that tolerance, since K's rows sum to zero.

Hand-back (``terms.patch_temperature.couple_every = k`` > 0, any provider of the term): every k steps, after the
step, the patch temperature is evaluated on the new state and its energy replaces the nodal E of the nodes whose
lumped control volume lies in the patch box (:meth:`LaserCoarse.hand_back`: Σ m_i E_i = ∫E_patch over those control
volumes); the energy it adds accumulates in the /energy column ``handback`` [J/m]. The ``coarse`` provider, a view
of the coarse field itself, is not handed back.

The model solves its own implicit step (:class:`hybrid.core.equation.ImplicitSolve`): only ``time.integrator =
"imex"`` is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_solve_banded, cholesky_banded

from hybrid.analysis.laser_plots import plot_laser
from hybrid.core.backend import Array
from hybrid.core.config import ConfigError, Option, Table, Tagged
from hybrid.core.grid import Grid
from hybrid.core.registry import Context, ModelSpec, register_model, register_provider
from hybrid.core.state import State, UnphysicalState
from hybrid.core.terms import FieldRange, TermProvider, declare_inputs
from hybrid.solvers.laser_load import nodal_load
from hybrid.solvers.laser_materials import Material, material

TERM = "patch_temperature"
SIGMA_SB = 5.670374419e-8
"""Stefan–Boltzmann constant [W/(m² K⁴)]."""

_MAT = "a number or a list of [T K, value] points"

PARAMS = Table(
    {
        "density": Option("float", 4420.0, "ρ [kg/m³]", min=1e-3, max=1e6),
        "cp_solid": Option(
            "any", [[300.0, 547.5], [1268.0, 755.62], [1269.0, 641.42], [1878.0, 751.04]],
            f"c_p of the solid [J/(kg K)], {_MAT}",
        ),
        "cp_liquid": Option("any", 831.0, f"c_p of the liquid [J/(kg K)], {_MAT}"),
        "k_solid": Option("any", [[300.0, 6.0], [1878.0, 27.0]], f"conductivity of the solid [W/(m K)], {_MAT}"),
        "k_liquid": Option("any", 33.0, f"conductivity of the liquid [W/(m K)], {_MAT}"),
        "latent_heat": Option("float", 2.86e5, "L_f [J/kg] (0: no phase change)", min=0.0, max=1e8),
        "solidus": Option("float", 1878.0, "T_s [K]", min=1.0, max=1e5),
        "liquidus": Option("float", 1923.0, "T_l [K] (> T_s; f_l linear in between)", min=1.0, max=1e5),
        "emissivity": Option("float", 0.4, "ε of the top surface", min=0.0, max=1.0),
        "h_conv": Option("float", 20.0, "h_c, convective loss coefficient of the top [W/(m² K)]", min=0.0, max=1e7),
        "ambient_temperature": Option("float", 300.0, "T∞ [K]", min=0.0, max=1e5),
        "bottom_temperature": Option("float", None, "fixed bottom temperature [K] (default: insulated)", min=0.0,
                                     min_exclusive=True, max=1e5),
        "power": Option("float", 150.0, "laser power P [W]", min=0.0, max=1e6),
        "absorptivity": Option("float", 0.35, "A, absorbed fraction", min=0.0, max=1.0),
        "radius": Option("float", 1e-4, "r, 1/e² radius of the spot [m]", min=1e-8, max=1.0),
        "speed": Option("float", 0.25, "v, scan speed along x [m/s]", min=0.0, max=1e3),
        "laser_start": Option("float", 0.0, "x0, spot centre at t = 0 [m]", min=-1e3, max=1e3),
        "marangoni": Option("bool", True, "melt flow in the cfd patch (false: conduction and the frame's advection)"),
        "viscosity": Option("float", 4e-3, "μ of the melt [Pa s] (cfd patch)", min=1e-7, max=1e3),
        "dsigma_dT": Option("float", -2.6e-4, "dσ/dT, surface-tension slope [N/(m K)] (cfd patch)", min=-1.0, max=1.0),
        "thermal_expansion": Option(
            "float", 0.0, "β of the Boussinesq buoyancy [1/K] (cfd patch; 0: none)", min=0.0, max=1.0
        ),
        "laser_width": Option(
            "float", None, "W_eff, out-of-plane width [m]: q′ = A P / W_eff (default √(A P/(ρ c̄_p v (T_l − T∞))))",
            min=1e-9, max=1e3,
        ),
    },
    doc="laser track, coarse model (docs/physics.md §4), SI units; defaults Ti-6Al-4V",
)  # fmt: skip

INITIAL = Tagged(
    "kind",
    {"uniform": Table({"temperature": Option("float", 300.0, "T0 [K]", min=0.0, min_exclusive=True, max=1e5)})},
    default="uniform",
    doc="initial temperature",
)

COUPLE_EVERY = Option(
    "int",
    0,
    "steps between hand-backs of the patch's energy to the coarse model (0: none, the term is read at frames only)",
    min=0,
    max=10**9,
)
"""``terms.patch_temperature.couple_every``: every provider of the term takes it (and keeps it as ``couple_every``)."""

PATCH_OPTIONS = Table(
    {
        "size": Option("list[float]", [1.2e-3, 3e-4], "[px, pz]: patch box around the spot [m]", length=2,
                       min=1e-9, max=1e3),
        "spacing": Option("float", 1e-5, "patch grid spacing [m]", min=1e-9, max=1e3),
        "couple_every": COUPLE_EVERY,
    }
)  # fmt: skip

MAX_PATCH_POINTS = 2**22


def line_power(params: Mapping[str, Any]) -> float:
    """q′ = A P / W_eff [W/m] of a finalized ``[model]`` table."""
    ap = float(params["absorptivity"]) * float(params["power"])
    return 0.0 if ap == 0.0 else ap / float(params["laser_width"])


def finalize_params(grid: Grid, params: dict[str, Any]) -> dict[str, Any]:
    """Check the material keys and fill ``laser_width``."""
    mat = material(params)
    out = dict(params)
    if out.get("laser_width") is None:
        ap = float(params["absorptivity"]) * float(params["power"])
        if ap > 0.0:
            t_inf, tl = float(params["ambient_temperature"]), mat.liquidus
            if not (params["speed"] > 0.0 and tl > t_inf):
                raise ConfigError(
                    "has no default unless model.speed > 0 and model.liquidus > model.ambient_temperature; give it",
                    key="model.laser_width",
                )
            width = math.sqrt(ap / (mat.density * mat.mean_cp(t_inf, tl) * params["speed"] * (tl - t_inf)))
            if not (math.isfinite(width) and width > 0.0):
                raise ConfigError(f"the default is {width!r}; give it", key="model.laser_width")
            out["laser_width"] = width
        else:
            out["laser_width"] = 1.0
    return out


def output_spacing(ctx: Context) -> float:
    """Spacing [m] of the cell-centred samples of fields/T: ``output.spacing``, by default the mesh's dx."""
    given = ctx.output.get("spacing")
    s = float(given) if given is not None else ctx.grid.spacing[0]
    for axis, length in zip("xz", ctx.grid.lengths, strict=True):
        if length / s < 1.0 or length / s > 2**15:
            raise ConfigError(
                f"gives {length / s:.3g} samples along {axis} (L{axis} = {length:g} m); allowed: 1 to 32768"
                + ("" if given is not None else " (output.spacing defaults to the mesh's dx)"),
                key="output.spacing" if given is not None else "grid.lengths",
            )
    return s


def stability_limit(integrator: str, grid: Grid, params: Mapping[str, Any]) -> tuple[float, str] | None:
    """Backward Euler is unconditionally stable; the model refuses the integrators that do not call its solve."""
    if integrator != "imex":
        raise ConfigError(
            f"model 'laser' solves its own backward-Euler step: allowed: 'imex' (got {integrator!r})",
            key="time.integrator",
        )
    return None


def initial_state(ctx: Context, init: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{"E": (nz, nx)} [J/m³] of the uniform initial temperature."""
    mat = material(ctx.params)
    e0 = float(mat.energy(float(init["temperature"])))
    return {"E": np.full(ctx.grid.shape, e0)}


def sampling_matrix(n_nodes: int, spacing: float, points: np.ndarray) -> sp.csr_matrix:
    """Linear interpolation (m, n_nodes) from nodes i·spacing to ``points`` (m,) [m], clamped to the end nodes."""
    s = np.clip(np.asarray(points, dtype=np.float64) / spacing, 0.0, n_nodes - 1.0)
    i = np.minimum(np.floor(s).astype(np.int64), n_nodes - 2)
    w = s - i
    rows = np.repeat(np.arange(s.size), 2)
    cols = np.stack([i, i + 1], axis=1).ravel()
    vals = np.stack([1.0 - w, w], axis=1).ravel()
    return sp.csr_matrix((vals, (rows, cols)), shape=(s.size, n_nodes))


def lower_band(matrix: sp.spmatrix, order: np.ndarray, width: int) -> np.ndarray:
    """The symmetric ``matrix`` (N, N) permuted by ``order`` (position → index) in the lower banded storage of
    :func:`scipy.linalg.cholesky_banded`: (width + 1, N), row k holding the k-th subdiagonal."""
    a = sp.csr_matrix(matrix)[order][:, order].tocoo()
    lower = a.row >= a.col
    if np.any(a.row - a.col > width):
        raise ValueError(f"the matrix has entries beyond the half-bandwidth {width}")
    band = np.zeros((width + 1, a.shape[0]))
    band[a.row[lower] - a.col[lower], a.col[lower]] = a.data[lower]
    return band


def overlap_matrix(n_nodes: int, spacing: float, edges: np.ndarray) -> np.ndarray:
    """Lengths (n_nodes, m) [m] of the overlaps of the nodes' dual intervals [x_i − s/2, x_i + s/2] ∩ [0, (n − 1) s]
    (x_i = i·s, s = ``spacing``) with the cells [edges_j, edges_{j+1}] of sorted ``edges`` (m + 1,) [m]."""
    x = np.arange(n_nodes) * spacing
    lo = np.maximum(x - 0.5 * spacing, 0.0)[:, None]
    hi = np.minimum(x + 0.5 * spacing, (n_nodes - 1) * spacing)[:, None]
    return np.maximum(np.minimum(hi, edges[None, 1:]) - np.maximum(lo, edges[None, :-1]), 0.0)


def covered(n_nodes: int, spacing: float, edges: np.ndarray) -> np.ndarray:
    """Indices of the nodes whose dual interval (as :func:`overlap_matrix`) lies inside [edges_0, edges_-1]."""
    x = np.arange(n_nodes) * spacing
    lo = np.maximum(x - 0.5 * spacing, 0.0)
    hi = np.minimum(x + 0.5 * spacing, (n_nodes - 1) * spacing)
    tol = 1e-9 * spacing
    return np.flatnonzero((lo >= edges[0] - tol) & (hi <= edges[-1] + tol))


def sample(temp: np.ndarray, dx: float, dz: float, xs: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """The Q1 field ``temp`` (nz, nx) at the tensor points (zs × xs) → (len(zs), len(xs)) (bilinear: exact in Q1)."""
    nz, nx = temp.shape
    wx = sampling_matrix(nx, dx, xs)
    wz = sampling_matrix(nz, dz, zs)
    return np.asarray(wz @ (wx @ temp.T).T)


class LaserCoarse:
    """The coarse FEM heat model of the laser track (module docstring) for the IMEX stepper and the run loop.

    Counters: ``factorizations`` (banded Cholesky), ``solves`` (iterations' linear solves), ``cg_iterations``
    (Jacobi-preconditioned CG iterations), ``pcg_iterations`` (CG iterations preconditioned by the factorisation),
    ``iterations`` per run.
    """

    evolved_fields = ("E",)
    default_output_fields = ("T",)
    tolerance = 1e-10

    def __init__(self, ctx: Context, terms: Mapping[str, Any]) -> None:
        from skfem import Basis, BilinearForm, ElementQuad1, MeshQuad, asm
        from skfem.helpers import dot, grad

        if ctx.backend.name != "numpy":
            raise ConfigError("model 'laser' runs on the numpy backend only; allowed: 'numpy'", key="case.backend")
        self.grid, self.backend, self.terms = ctx.grid, ctx.backend, dict(terms)
        p = ctx.params
        self.mat: Material = material(p)
        nx, nz = ctx.grid.points
        self.dx, self.dz = ctx.grid.spacing
        self.shape = (nz, nx)
        x = np.arange(nx) * self.dx
        z = np.arange(nz) * self.dz
        mesh = MeshQuad.init_tensor(x, z)
        basis = Basis(mesh, ElementQuad1())

        @BilinearForm
        def laplace(u: Any, v: Any, w: Any) -> Any:
            return dot(grad(u), grad(v))

        @BilinearForm
        def mass(u: Any, v: Any, w: Any) -> Any:
            return u * v

        # skfem's node order → the (nz, nx) array, row-major
        order = np.rint(mesh.p[1] / self.dz).astype(np.int64) * nx + np.rint(mesh.p[0] / self.dx).astype(np.int64)
        perm = sp.csr_matrix((np.ones(order.size), (order, np.arange(order.size))), shape=(order.size,) * 2)
        self.stiffness = (perm @ asm(laplace, basis) @ perm.T).tocsr()  # K, unit conductivity
        self.mass = np.asarray((perm @ asm(mass, basis) @ perm.T).sum(axis=1)).ravel()  # lumped M [m²]
        self.top = np.arange(nx)  # flat indices of the top nodes (row 0)
        self.top_x = x
        self.top_length = np.full(nx, self.dx)  # lumped boundary mass [m]
        self.top_length[[0, -1]] = 0.5 * self.dx
        self.bottom = np.arange((nz - 1) * nx, nz * nx)
        tb = p.get("bottom_temperature")
        self.bottom_energy = None if tb is None else float(self.mat.energy(float(tb)))
        self.q_line = line_power(p)
        self.radius, self.speed, self.x0 = float(p["radius"]), float(p["speed"]), float(p["laser_start"])
        self.h_conv, self.emissivity = float(p["h_conv"]), float(p["emissivity"])
        self.t_inf = float(p["ambient_temperature"])
        self.linear = self.mat.constant and self.emissivity == 0.0
        s = output_spacing(ctx)
        self.out_x = (np.arange(int(ctx.grid.lengths[0] / s + 1e-9)) + 0.5) * s
        self.out_z = (np.arange(int(ctx.grid.lengths[1] / s + 1e-9)) + 0.5) * s
        self.factorizations = self.solves = self.iterations = 0
        # the SPD part K of the Jacobian in lower banded storage, nodes ordered with z fastest (half-bandwidth nz + 1)
        self._band_order = np.arange(nz * nx).reshape(nz, nx).T.ravel()  # banded position → flat node
        self._stiffness_band = lower_band(self.stiffness, self._band_order, nz + 1)
        self._stiffness_bottom = sp.csr_matrix((nz * nx, 0))  # K's columns (N, nx) of a fixed bottom, off its rows
        self._bottom_band = np.zeros(0, dtype=np.int64)  # banded positions of a fixed bottom
        if self.bottom_energy is not None:
            keep = sp.diags(np.where(np.arange(nz * nx) >= (nz - 1) * nx, 0.0, 1.0))
            self._stiffness_bottom = (keep @ self.stiffness[:, self.bottom]).tocsr()
            self._stiffness_band = lower_band(keep @ self.stiffness @ keep, self._band_order, nz + 1)
            self._bottom_band = np.flatnonzero(self._band_order >= (nz - 1) * nx)
        keep_all = np.ones(nz * nx)
        if self.bottom_energy is not None:
            keep_all[self.bottom] = 0.0
        self._stiffness_free = (sp.diags(keep_all) @ self.stiffness @ sp.diags(keep_all)).tocsr()
        self.pcg_iterations = self.cg_iterations = 0
        self.cg_most = 40  # Jacobi-CG iterations a Newton step may take before the factorised iteration takes over
        self.jacobi_cg = not self.linear  # False: the factorised iteration only (kept for side-by-side timing)
        self._diagonal_k = self._stiffness_free.diagonal()
        self.pcg_most = 4  # CG iterations a Newton step may take before a refactorisation (≈ 10 solves) is cheaper
        self.newton_pcg = True  # False: refresh by refactorising only (kept for side-by-side timing)
        self._chol: np.ndarray | None = None
        self._d = np.zeros(0)
        self._lu_dt = 0.0
        self._lu_temperature = np.zeros(0)
        self._previous: tuple[np.ndarray, float] | None = None
        term = self.terms.get(TERM)
        self.couple_every = int(getattr(term, "couple_every", 0) or 0) if getattr(term, "hands_back", True) else 0
        if self.couple_every and not (hasattr(term, "origin") and hasattr(term, "spacing")):
            raise ConfigError(
                f"needs a provider that places its patch (origin(time) and spacing); provider "
                f"{getattr(term, 'provider', '?')!r} does not; allowed: 0 with it",
                key=f"terms.{TERM}.couple_every",
            )
        self.handback = 0.0  # energy the hand-backs added since the start of the run [J/m]
        self._patch: tuple[int, float, np.ndarray] | None = None  # (step, time, value) of the last hand-back

    # ---------------------------------------------------------------------------------------------- physics
    def spot(self, time: float) -> float:
        """x_L(t) = x0 + v t [m]."""
        return self.x0 + self.speed * time

    def laser_load(self, time: float) -> np.ndarray:
        """Nodal laser load (nx,) on the top nodes at ``time`` [W/m]."""
        if self.q_line == 0.0:
            return np.zeros(self.top_x.size)
        return nodal_load(self.top_x, self.q_line, self.radius, self.spot(time))

    def loss_flux(self, t_top: np.ndarray) -> np.ndarray:
        """h_c (T − T∞) + ε σ_SB (T⁴ − T∞⁴) [W/m²] at top temperatures [K]."""
        return self.h_conv * (t_top - self.t_inf) + self.emissivity * SIGMA_SB * (t_top**4 - self.t_inf**4)

    def loss_load(self, t_top: np.ndarray) -> np.ndarray:
        """Nodal loss (nx,) [W/m]: the flux lumped on the top nodes (trapezoid rule on the top edge)."""
        return self.top_length * self.loss_flux(t_top)

    def _loss_slope(self, t_top: np.ndarray) -> np.ndarray:
        """d(loss load)/dT (nx,) [W/(m K)]."""
        return self.top_length * (self.h_conv + 4.0 * self.emissivity * SIGMA_SB * t_top**3)

    def temperature(self, energy: np.ndarray) -> np.ndarray:
        """T [K] of E [J/m³] (any shape)."""
        return self.mat.temperature(energy)

    def energy_content(self, energy: np.ndarray) -> float:
        """∫E dA [J/m] (lumped mass: exact for the scheme's stored quantity)."""
        return float(self.mass @ np.asarray(energy).ravel())

    def _residual(self, e: np.ndarray, e_old: np.ndarray, dt: float, load: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward-Euler residual (N,) [W/m] and T (N,) at iterate ``e``."""
        t = self.temperature(e)
        r = self.mass * (e - e_old) / dt + self.stiffness @ self.mat.kirchhoff(t)
        r[self.top] += self.loss_load(t[self.top]) - load
        if self.bottom_energy is not None:
            r[self.bottom] = e[self.bottom] - self.bottom_energy
        return r, t

    def _jacobian_parts(self, t: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """The Jacobian J = K diag(d) + diag(g) = A diag(d), A = K + diag(g/d), at the temperatures ``t`` (N,) [K]
        for the step ``dt`` [s]: (d = du/dE (N,), the diagonal g/d (N,) of A; 1 on a fixed bottom)."""
        c_eff = self.mat.density * self.mat.enthalpy.derivative(t)  # dE/dT
        d = self.mat.kirchhoff.derivative(t) / c_eff  # du/dE
        diag = self.mass / dt
        diag[self.top] += self._loss_slope(t[self.top]) / c_eff[self.top]
        c = diag / d
        if self.bottom_energy is not None:
            c[self.bottom] = 1.0
        return d, c

    def _factorize(self, t: np.ndarray, dt: float) -> None:
        """Factorise the Jacobian at the temperatures ``t`` (N,) [K] for the step ``dt`` [s].

        d = du/dE > 0 and g = M/dt + the loss slope, so J = A diag(d) with the SPD A = K + diag(g/d): A is
        factorised by banded Cholesky in the node order with z fastest (half-bandwidth nz + 1). A fixed bottom's
        identity rows of J become identity rows and columns of A (their known values move to the right-hand side).
        """
        d, c = self._jacobian_parts(t, dt)
        band = self._stiffness_band.copy()
        band[0] += c[self._band_order]
        self._chol = cholesky_banded(band, lower=True, check_finite=False)
        self._d = d
        self._lu_dt = dt
        self._lu_temperature = t.copy()
        self.factorizations += 1

    def _reduced(self, r: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The right-hand side of A y = · for J x = ``r`` (x = y/d): a fixed bottom's x_b = r_b, i.e. y_b = d_b r_b,
        moved to the other rows."""
        rhs = r.copy()
        if self.bottom_energy is not None:
            yb = d[self.bottom] * r[self.bottom]
            rhs -= self._stiffness_bottom @ yb
            rhs[self.bottom] = yb
        return rhs

    def _precondition(self, v: np.ndarray) -> np.ndarray:
        """A⁻¹ v (N,) with the last factorisation."""
        out = np.empty_like(v)
        out[self._band_order] = cho_solve_banded((self._chol, True), v[self._band_order], check_finite=False)
        return out

    def _solve(self, r: np.ndarray) -> np.ndarray:
        """x (N,) of J x = ``r`` (N,) with the Jacobian of the last :meth:`_factorize`."""
        return self._precondition(self._reduced(r, self._d)) / self._d

    def _newton_cg(self, r: np.ndarray, t: np.ndarray, dt: float, most: int, factorised: bool) -> tuple[Any, int]:
        """x (N,) of J(t) x = ``r`` with the Jacobian at the iterate's ``t`` (N,) [K]: conjugate gradients on
        A(t) y = rhs to 1e-3 of the right-hand side's norm, preconditioned by A(t)'s diagonal or (``factorised``)
        by the last factorisation (the two A differ by a diagonal). Returns (x, CG iterations); x is None when it
        takes more than ``most`` iterations."""
        d, c = self._jacobian_parts(t, dt)
        rhs = self._reduced(r, d)
        if factorised:
            precondition = self._precondition
        else:
            inverse_diagonal = 1.0 / (self._diagonal_k + c)

            def precondition(v: np.ndarray) -> np.ndarray:
                return inverse_diagonal * v

        stop = 1e-3 * float(np.linalg.norm(rhs))
        y = precondition(rhs)
        res = rhs - (self._stiffness_free @ y + c * y)
        z = precondition(res)
        p = z.copy()
        rz = float(res @ z)
        iterations = 0
        for _ in range(most):
            if float(np.linalg.norm(res)) <= stop:
                break
            ap = self._stiffness_free @ p + c * p
            alpha = rz / float(p @ ap)
            y += alpha * p
            res -= alpha * ap
            z = precondition(res)
            rz, previous = float(res @ z), rz
            p = z + (rz / previous) * p
            iterations += 1
        return (y / d if float(np.linalg.norm(res)) <= stop else None), iterations

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps so that a restart continues bit for bit: the temperature (N,) [K] and step [s]
        the reused factorisation was built at (the iteration's answer depends on it at round-off level), and the
        energy handed back so far [J/m]."""
        out: dict[str, Any] = {"handback": np.float64(self.handback)}
        if self._chol is not None:
            out.update(lu_temperature=self._lu_temperature.copy(), lu_dt=np.float64(self._lu_dt))
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Rebuild the factorisation a checkpoint recorded (nothing for a checkpoint without one)."""
        self.handback = float(state.get("handback", 0.0))
        if "lu_temperature" in state:
            self._factorize(np.asarray(state["lu_temperature"], dtype=np.float64), float(state["lu_dt"]))

    def solve_step(self, e_old: np.ndarray, time: float, dt: float) -> np.ndarray:
        """E^{n+1} (N,) of one backward-Euler step from E^n = ``e_old`` (N,) at ``time`` [s] over ``dt`` [s]."""
        load = self.laser_load(time + 0.5 * dt)
        e = e_old.copy()
        if self.bottom_energy is not None:
            e[self.bottom] = self.bottom_energy
        scale = self.tolerance * max(float(np.abs(e_old).max()), 1.0)
        refresh = self._chol is None or self._lu_dt != dt
        jacobi = self.jacobi_cg
        previous = math.inf
        for it in range(60):
            r, t = self._residual(e, e_old, dt, load)
            de = None
            if jacobi:
                de, n = self._newton_cg(r, t, dt, self.cg_most, factorised=False)
                self.cg_iterations += n
                jacobi = de is not None  # once CG stalls, the factorised iteration finishes the step
            if de is None and refresh and self.newton_pcg and self._lu_dt == dt and it % 8 != 0:
                de, n = self._newton_cg(r, t, dt, self.pcg_most, factorised=True)
                self.pcg_iterations += n
                refresh = de is None
            if de is None and refresh:
                self._factorize(t, dt)
                refresh = False
            if de is None:
                de = self._solve(r)
            self.solves += 1
            self.iterations += 1
            e -= de
            size = float(np.abs(de).max())
            if self.linear or size <= scale:
                return e
            if size > 0.1 * previous or it % 8 == 7:
                refresh = True
            previous = size
        raise UnphysicalState(
            f"the backward-Euler iteration did not converge at t = {time:.6g} s (update {size:.3g} J/m³)"
        )

    # ------------------------------------------------------------------------------------------- integrator API
    def rhs(self, state: State) -> dict[str, Array]:
        """dE/dt (nz, nx) [W/m³] at the state (lumped): the IMEX stepper's explicit part; keeps E^n for the solve."""
        e = np.asarray(state["E"], dtype=np.float64).ravel()
        t = self.temperature(e)
        flux = -(self.stiffness @ self.mat.kirchhoff(t))
        flux[self.top] += self.laser_load(state.time) - self.loss_load(t[self.top])
        rate = flux / self.mass
        if self.bottom_energy is not None:
            rate[self.bottom] = 0.0
        self._previous = (e, state.time)
        return {"E": rate.reshape(self.shape)}

    def implicit_solve(self, field: str, b: Array, dt: float) -> Array | None:
        """The backward-Euler increment E^{n+1} − E^n (nz, nx) from the state of the preceding :meth:`rhs` call.

        For a linear operator L this is the x of (1 − dt L) x = b = dt R(E^n) that the IMEX stepper asks for; here
        the step is the nonlinear backward Euler of the module docstring (``b`` is not needed).
        """
        if self._previous is None:
            raise RuntimeError("LaserCoarse.implicit_solve needs the preceding rhs(state) call of the IMEX stepper")
        e_old, time = self._previous
        self._previous = None
        return (self.solve_step(e_old, time, dt) - e_old).reshape(self.shape)

    # ------------------------------------------------------------------------------------------------ hand-back
    def hand_back(self, energy: np.ndarray, patch_temperature: np.ndarray, origin: np.ndarray, spacing: float) -> float:
        """Replace in place the nodal E (nz, nx) [J/m³] of the nodes whose lumped control volume (dual cell, clipped
        to the plate) lies in the patch box by the mean over it of the patch's E = ρ h(T) (cells of ``spacing`` [m]
        from the box's top corner ``origin`` = (x, depth) [m]; T (pz, px) [K]), weighted by the cells' overlap
        areas. Σ m_i E_i over those nodes then equals ∫E_patch over their control volumes (to round-off). Returns
        the energy this adds, Σ m_i ΔE_i [J/m]."""
        nz, nx = self.shape
        pz, px = patch_temperature.shape
        ex = origin[0] + np.arange(px + 1) * spacing
        ez = origin[1] + np.arange(pz + 1) * spacing
        ix, iz = covered(nx, self.dx, ex), covered(nz, self.dz, ez)
        if ix.size == 0 or iz.size == 0:
            return 0.0
        wx = overlap_matrix(nx, self.dx, ex)[ix]  # (len ix, px) [m]
        wz = overlap_matrix(nz, self.dz, ez)[iz]  # (len iz, pz) [m]
        integral = wz @ self.mat.energy(patch_temperature) @ wx.T  # ∫E over each control volume [J/m]
        mass = self.mass.reshape(self.shape)[np.ix_(iz, ix)]
        before = float((mass * energy[np.ix_(iz, ix)]).sum())
        energy[np.ix_(iz, ix)] = integral / mass
        return float(integral.sum()) - before

    def after_step(self, state: State) -> State:
        """Every ``couple_every`` steps (the option of ``terms.patch_temperature``; 0: never; never for a provider
        with ``hands_back = False``, i.e. ``coarse``): evaluate the patch term on the new state and hand its energy
        back (:meth:`hand_back`); the added energy accumulates in :attr:`handback` [J/m]."""
        term = self.terms.get(TERM)
        if self.couple_every <= 0 or state.step % self.couple_every or term is None:
            return state
        value = np.asarray(self.backend.to_numpy(term(state)), dtype=np.float64)
        energy = np.array(self.backend.to_numpy(state["E"]), dtype=np.float64)
        self.handback += self.hand_back(energy, value, np.asarray(term.origin(state.time)), float(term.spacing))
        self._patch = (state.step, state.time, value)
        fields = dict(state.fields)
        fields["E"] = self.backend.asarray(energy)
        return State(fields, state.time, state.step, state.backend)

    # -------------------------------------------------------------------------------------------- run-loop hooks
    def check_state(self, state: State) -> str | None:
        """A temperature below 0 K or above 1e5 K means the step failed."""
        t = self.temperature(np.asarray(state["E"]))
        lo, hi = float(t.min()), float(t.max())
        if lo < 0.0 or hi > 1e5:
            return f"the temperature left [0, 1e5] K (min {lo:.4g} K, max {hi:.4g} K)"
        return None

    def power_balance(self, state: State) -> tuple[float, float, float]:
        """(absorbed laser power, losses, ∫E dA) at the state: [W/m], [W/m], [J/m]. Losses include the heat that
        leaves through a fixed-temperature bottom."""
        e = np.asarray(state["E"], dtype=np.float64).ravel()
        t = self.temperature(e)
        absorbed = float(self.laser_load(state.time).sum())
        losses = float(self.loss_load(t[self.top]).sum())
        if self.bottom_energy is not None:
            losses -= float((self.stiffness @ self.mat.kirchhoff(t))[self.bottom].sum())
        return absorbed, losses, self.energy_content(e)

    def frame_output(self, state: State) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """fields/T (nz_out, nx_out) [K] at the cell centres of ``output.spacing``; the patch term's value
        patch/T (pz, px) [K] (at a hand-back step the value handed back) and its box's corner patch/origin
        (x, depth) [m]; a row of the table /energy (``handback``: the energy handed back since the start [J/m])."""
        temp = self.temperature(np.asarray(state["E"], dtype=np.float64))
        absorbed, losses, content = self.power_balance(state)
        row = {
            "step": np.array([state.step]),
            "time": np.array([state.time]),
            "absorbed": np.array([absorbed]),
            "enthalpy": np.array([content]),
            "losses": np.array([losses]),
            "handback": np.array([self.handback]),
        }
        fields = {"T": sample(temp, self.dx, self.dz, self.out_x, self.out_z)}
        term = self.terms.get(TERM)
        if term is not None and hasattr(term, "origin"):  # the patch term's box: /patch/T and its corner /patch/origin
            if self._patch is not None and self._patch[:2] == (state.step, state.time):  # handed back at this step
                fields["patch/T"] = self._patch[2]
            else:
                fields["patch/T"] = np.asarray(self.backend.to_numpy(term(state)), dtype=np.float64)
            fields["patch/origin"] = np.asarray(term.origin(state.time), dtype=np.float64)
        return fields, {"energy": row}


class CoarsePatch(TermProvider):
    """``patch_temperature`` from the coarse FEM alone: its Q1 temperature at the cell centres of the patch box
    [x_L − px/2, x_L + px/2] × [0, pz] (depth) at ``spacing``, clamped to the domain. Input E (nz, nx) [J/m³] and the
    state's time; output (pz/spacing, px/spacing) [K]."""

    name = TERM
    provider = "coarse"
    inputs = ("E",)
    hands_back = False
    """The value is the coarse field itself: handing it back would only re-average the coarse field over the
    control volumes (not the identity, docs/laser.md), so the model skips the hand-back for this provider."""

    def __init__(self, ctx: Context, size: list[float], spacing: float, couple_every: int = 0) -> None:
        super().__init__(ctx)
        self.couple_every = int(couple_every)
        self.mat = material(ctx.params)
        self.dx, self.dz = ctx.grid.spacing
        p = ctx.params
        self.x0, self.speed = float(p["laser_start"]), float(p["speed"])
        nxp, nzp = (round(s / spacing) for s in size)
        if min(nxp, nzp) < 1 or nxp * nzp > MAX_PATCH_POINTS:
            raise ConfigError(
                f"size / spacing gives {nxp} × {nzp} points; allowed: at least 1 and at most {MAX_PATCH_POINTS} in all",
                key=f"terms.{TERM}.spacing",
            )
        self.spacing = float(spacing)
        self.px = (np.arange(nxp) + 0.5) * spacing - 0.5 * nxp * spacing
        self.pz = (np.arange(nzp) + 0.5) * spacing

    def output_shape(self) -> tuple[int, ...]:
        """(patch points in depth, along the scan)."""
        return (self.pz.size, self.px.size)

    def origin(self, time: float) -> np.ndarray:
        """(x, depth) [m] of the box's corner at the top, behind the spot, at ``time``."""
        return np.array([self.x0 + self.speed * time - 0.5 * self.px.size * self.spacing, 0.0])

    def evaluate(self, state: State) -> Array:
        be = state.backend
        temp = self.mat.temperature(np.asarray(be.to_numpy(state["E"]), dtype=np.float64))
        centre = self.x0 + self.speed * state.time
        return be.asarray(sample(temp, self.dx, self.dz, centre + self.px, self.pz))  # the state's backend


declare_inputs(TERM, E=FieldRange(min=0.0, unit="J/m^3", what="an enthalpy measured from 0 K"))


@register_provider(TERM, "coarse", options=PATCH_OPTIONS, doc="the coarse FEM temperature on the patch box")
def _build_coarse(ctx: Context, options: Mapping[str, Any]) -> CoarsePatch:
    return CoarsePatch(
        ctx,
        list(options.get("size", [1.2e-3, 3e-4])),
        float(options.get("spacing", 1e-5)),
        int(options.get("couple_every", 0)),
    )


register_model(
    ModelSpec(
        name="laser",
        build=LaserCoarse,
        params=PARAMS,
        initial=INITIAL,
        initial_state=initial_state,
        terms={TERM: "coarse"},
        finalize_params=finalize_params,
        units={"E": "J/m^3", "T": "K", TERM: "K", "x": "m", "y": "m", "time": "s"},
        stability_limit=stability_limit,
        grid_ndim=2,
        periodic=(False, False),
        frame_terms=(TERM,),  # saved as /patch/T by frame_output
        image_origin="upper",  # row 0 is the top surface
        plot=plot_laser,
        doc="laser track: coarse FEM heat conduction in enthalpy form under a moving Gaussian laser (docs/laser.md)",
    )
)
