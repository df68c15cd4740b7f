"""Laser track, the melt-pool patch: provider ``cfd`` of the term ``patch_temperature`` (docs/laser.md, docs/physics.md
§4).

A uniform finite-volume grid of nzp × nxp square cells of size h (``spacing``) covers the patch box
ξ = x − x_L(t) ∈ [−px/2, px/2], d ∈ [0, pz] (d the depth below the top surface, row 0 at the top), and moves with
the spot. In this frame the plate streams through the box at −v, and the patch solves

    ∂E/∂t + ∇·((u − v e_ξ) E) = ∇·(k(T) ∇T),   E = ρ h(T) (latent heat, T-dependent c_p and k: laser_materials)

    ∂u/∂t + ∇·((u − v e_ξ) ⊗ u) = −∇p + ν ∇²u − (A(f_l)/ρ) u − β g (T − T_l) e_d,   ∇·u = 0

for the lab-frame melt velocity u = (u, w) (the solid is at rest in the lab frame), with the Carman–Kozeny drag
A(f_l) = C (1 − f_l)²/(f_l³ + ε) that stops the flow in solid and mushy cells.

Boundaries. Top (d = 0): the absorbed Gaussian flux integrated exactly over each top cell (erf differences, as the
coarse load) minus the coarse model's losses h_c (T − T∞) + ε σ_SB (T⁴ − T∞⁴) at the top cells' T; a flat free
surface w = 0 with the Marangoni traction μ ∂u/∂z_up = (dσ/dT) ∂T/∂x, i.e. μ ∂u/∂d = −(dσ/dT) ∂T/∂ξ, applied with
the liquid fraction of the surface (none on solid). Sides and bottom: Dirichlet temperatures from the coarse field
(the plate entering at the front carries the coarse enthalpy), no-slip walls.

Numerics. MAC grid (p and E at cell centres, u on ξ-faces, w on d-faces). Conduction fluxes −∇u_K with the Kirchhoff
transform u_K = ∫k dT; advection of E and of momentum in flux form with a van Leer limited upwind reconstruction;
forward Euler, the drag implicit (u ← u/(1 + dt A/ρ)), then a projection: the pressure Poisson equation with
Neumann walls (one cell pinned) is factorised once per patch (sparse LU) and leaves ∇·u at round-off. The scheme is
in flux form, so ∫E dA changes by exactly dt × (absorbed − losses + what the walls let in), see :attr:`CfdPatch.budget`.
The step is chosen each step as 0.9 / (4 D/h² + 2 (max|u − v| + max|w|)/h), D = max(α_max, ν): with α_max the
largest k/(ρ c_p) of the material it is the thermal limit h²/(4 α) when the flow is slow, the flow's advective
limit when it is fast (:attr:`CfdPatch.step_stats` counts the steps where the advective term was the larger).
The drag is implicit and sets no limit. The pressure matrix does not see the drag, so the projection's correction
reaches a few cells into the solid next to the pool (docs/laser.md gives the measured size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from scipy.special import erf

from hybrid.core.backend import Array
from hybrid.core.config import ConfigError, Option, Table
from hybrid.core.registry import Context, register_provider
from hybrid.core.state import State, UnphysicalState
from hybrid.core.terms import TermProvider
from hybrid.solvers.laser import COUPLE_EVERY, MAX_PATCH_POINTS, SIGMA_SB, TERM, line_power, sample
from hybrid.solvers.laser_materials import Material, material

GRAVITY = 9.81
"""g [m/s²], along +d (down)."""
SAFETY = 0.9
MAX_STEPS = 2_000_000

CFD_OPTIONS = Table(
    {
        "size": Option("list[float]", [1.2e-3, 3e-4], "[px, pz]: patch box around the spot [m]", length=2,
                       min=1e-9, max=1e3),
        "spacing": Option("float", 1e-5, "patch grid spacing h [m]", min=1e-9, max=1e3),
        "window": Option("float", None, "time the patch is integrated per call [s] (default r/v: the spot crosses "
                         "its radius)", min=0.0, min_exclusive=True, max=1.0),
        "dt": Option("float", None, "largest patch step [s] (default: the stability limit, chosen every step); "
                     "at most h²/(4 α_max)", min=0.0, min_exclusive=True, max=1.0),
        "mushy_constant": Option("float", 1e9, "C of the Carman–Kozeny drag C (1 − f_l)²/(f_l³ + ε) [kg/(m³ s)]",
                                 min=0.0, max=1e20),
        "mushy_epsilon": Option("float", 1e-3, "ε of the Carman–Kozeny drag", min=1e-12, max=1.0),
        "couple_every": COUPLE_EVERY,
    }
)  # fmt: skip


def _van_leer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Van Leer limited slope of the neighbouring differences ``a``, ``b`` (0 at extrema)."""
    ab = a * b
    pos = ab > 0.0
    return np.where(pos, 2.0 * ab / np.where(pos, a + b, 1.0), 0.0)


def limited_flux(padded: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Advective flux velocity × q_face along the last axis, q_face the van Leer (MUSCL) upwind reconstruction.

    ``padded`` (..., n + 4): n values with two ghosts on each side; ``velocity`` (..., n + 1) at the faces between
    them (face k between value k − 1 and value k, k = 0 … n, the end faces included). Returns (..., n + 1).
    """
    d = np.diff(padded, axis=-1)  # n + 3
    slope = _van_leer(d[..., :-1], d[..., 1:])  # slopes of padded values 1 … n + 2
    n = padded.shape[-1] - 4
    left = padded[..., 1 : n + 2] + 0.5 * slope[..., : n + 1]
    right = padded[..., 2 : n + 3] - 0.5 * slope[..., 1 : n + 2]
    return velocity * np.where(velocity > 0.0, left, right)


def _pad(q: np.ndarray, before: np.ndarray | float, after: np.ndarray | float, axis: int) -> np.ndarray:
    """``q`` with two copies of ``before`` / ``after`` (broadcast) on each side along ``axis`` (moved last)."""
    q = np.moveaxis(q, axis, -1)
    shape = (*q.shape[:-1], 2)

    def ghosts(value: np.ndarray | float) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        return np.broadcast_to(arr[..., None] if arr.ndim else arr, shape)

    lo, hi = ghosts(before), ghosts(after)
    return np.concatenate([lo, q, hi], axis=-1)


def poisson_matrix(nz: int, nx: int, h: float) -> sp.csc_matrix:
    """5-point Laplacian (nz·nx)² [1/m²] on cells with zero-flux walls, row 0 replaced by p_0 = 0 (the pin)."""

    def neumann(n: int) -> sp.csr_matrix:
        main = np.full(n, -2.0)
        main[[0, -1]] = -1.0
        if n == 1:
            main[:] = 0.0
        return sp.diags([np.ones(n - 1), main, np.ones(n - 1)], [-1, 0, 1], format="csr")

    lap = (sp.kron(sp.identity(nz), neumann(nx)) + sp.kron(neumann(nz), sp.identity(nx))).tolil() / (h * h)
    lap[0, :] = 0.0
    lap[0, 0] = 1.0 / (h * h)
    return lap.tocsc()


class CfdPatch(TermProvider):
    """``patch_temperature`` from the melt-pool DNS of the module docstring, on the box of ``coarse``.

    Each call takes the coarse enthalpy E (nz, nx) [J/m³] at time t, samples its temperature (bilinear, clamped to the
    plate, as ``coarse``) at the patch's cell centres (the initial field) and wall centres (the boundary values),
    starts the melt at rest, and integrates ``window`` seconds in the spot's frame with the boundary values frozen.
    The coarse field is quasi-steady in that frame, so the window relaxes the patch toward the resolved melt-pool
    field that belongs with the coarse surroundings at time t. It returns that patch temperature (nzp, nxp) [K] at
    the cell centres ξ_j = (j + ½) h − px/2, d_i = (i + ½) h (the points of ``coarse``): the high-fidelity patch
    temperature whose energy the coarse model takes back every ``couple_every`` steps
    (:meth:`hybrid.solvers.laser.LaserCoarse.hand_back`; 0: never). After a call,
    :attr:`velocity` holds (u (nzp, nxp + 1), w (nzp + 1, nxp)) [m/s], :attr:`budget` the energy tally [J/m] and
    :attr:`step_stats` the step counts.
    """

    name = TERM
    provider = "cfd"
    inputs = ("E",)

    def __init__(self, ctx: Context, options: Mapping[str, Any]) -> None:
        super().__init__(ctx)
        key = f"terms.{TERM}"
        p = ctx.params
        self.mat: Material = material(p)
        self.dx, self.dz = ctx.grid.spacing
        self.x0, self.speed, self.radius = float(p["laser_start"]), float(p["speed"]), float(p["radius"])
        self.q_line = line_power(p)
        self.h_conv, self.emissivity = float(p["h_conv"]), float(p["emissivity"])
        self.t_inf = float(p["ambient_temperature"])
        size = list(options.get("size", [1.2e-3, 3e-4]))
        h = self.h = self.spacing = float(options.get("spacing", 1e-5))
        self.couple_every = int(options.get("couple_every", 0))
        nxp, nzp = (round(s / h) for s in size)
        if min(nxp, nzp) < 3 or nxp * nzp > MAX_PATCH_POINTS:
            raise ConfigError(
                f"size / spacing gives {nxp} × {nzp} cells; allowed: at least 3 each and at most {MAX_PATCH_POINTS}"
                " in all",
                key=f"{key}.spacing",
            )
        self.nx, self.nz = nxp, nzp
        self.edges = np.arange(nxp + 1) * h - 0.5 * nxp * h  # ξ of the cell faces [m]
        self.xi = 0.5 * (self.edges[1:] + self.edges[:-1])
        self.depth = (np.arange(nzp) + 0.5) * h
        params = ctx.params  # the melt's flow properties are material keys of [model]
        self.flow = bool(params["marangoni"])
        self.mu = float(params["viscosity"])
        self.rho = self.mat.density
        self.nu = self.mu / self.rho
        self.dsigma = float(params["dsigma_dT"])
        self.mushy_c = float(options.get("mushy_constant", 1e9))
        self.mushy_eps = float(options.get("mushy_epsilon", 1e-3))
        self.beta = float(params["thermal_expansion"])
        window = options.get("window")
        if window is None:
            if not self.speed > 0.0:
                raise ConfigError("has no default when model.speed = 0 (it is r/v); give it", key=f"{key}.window")
            window = self.radius / self.speed
        self.window = float(window)
        # α_max: k/(ρ c_p) is a ratio of piecewise-linear curves, monotone between their joint knots
        knots = np.union1d(self.mat.conductivity[:, 0], self.mat.cp[:, 0])
        kk = np.interp(knots, self.mat.conductivity[:, 0], self.mat.conductivity[:, 1])
        cc = np.interp(knots, self.mat.cp[:, 0], self.mat.cp[:, 1])
        self.alpha_max = float(np.max(kk / (self.rho * cc)))
        self.dt_thermal = h * h / (4.0 * self.alpha_max)
        self.dt_max = options.get("dt")
        if self.dt_max is not None and self.dt_max > self.dt_thermal:
            raise ConfigError(
                f"= {self.dt_max:.3g} s exceeds the thermal stability limit h²/(4 α_max) = {self.dt_thermal:.3g} s"
                f" (α_max = {self.alpha_max:.3g} m²/s at h = {h:g} m); allowed: ≤ {self.dt_thermal:.3g} s",
                key=f"{key}.dt",
            )
        diffusivity = max(self.alpha_max, self.nu) if self.flow else self.alpha_max
        fastest = min(SAFETY / (4.0 * diffusivity / (h * h) + 2.0 * self.speed / h), self.dt_max or math.inf)
        if self.window / fastest > MAX_STEPS:
            raise ConfigError(
                f"= {self.window:.3g} s needs more than {MAX_STEPS} patch steps of ≤ {fastest:.3g} s; allowed: "
                f"≤ {MAX_STEPS * fastest:.3g} s",
                key=f"{key}.window",
            )
        s = math.sqrt(2.0) / self.radius
        self.laser = 0.5 * self.q_line * np.diff(erf(s * self.edges))  # absorbed per top cell [W/m]
        self._lu: Any = None
        self.velocity: tuple[np.ndarray, np.ndarray] | None = None
        self.budget: dict[str, float] = {}
        self.step_stats: dict[str, Any] = {}

    def output_shape(self) -> tuple[int, ...]:
        """(patch cells in depth, along the scan)."""
        return (self.nz, self.nx)

    def origin(self, time: float) -> np.ndarray:
        """(x, depth) [m] of the box's corner at the top, behind the spot, at ``time``."""
        return np.array([self.x0 + self.speed * time + self.edges[0], 0.0])

    # ------------------------------------------------------------------------------------------------ pieces
    def loss_flux(self, t_top: np.ndarray) -> np.ndarray:
        """h_c (T − T∞) + ε σ_SB (T⁴ − T∞⁴) [W/m²] (the coarse model's top loss)."""
        return self.h_conv * (t_top - self.t_inf) + self.emissivity * SIGMA_SB * (t_top**4 - self.t_inf**4)

    def liquid_fraction(self, temp: np.ndarray) -> np.ndarray:
        """f_l = clip((T − T_s)/(T_l − T_s), 0, 1)."""
        return np.clip((temp - self.mat.solidus) / (self.mat.liquidus - self.mat.solidus), 0.0, 1.0)

    def drag(self, fl: np.ndarray) -> np.ndarray:
        """Carman–Kozeny A(f_l) = C (1 − f_l)²/(f_l³ + ε) [kg/(m³ s)]."""
        return self.mushy_c * (1.0 - fl) ** 2 / (fl**3 + self.mushy_eps)

    def divergence(self, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """∇·u (nzp, nxp) [1/s] of face velocities u (nzp, nxp + 1), w (nzp + 1, nxp) [m/s]."""
        return (np.diff(u, axis=1) + np.diff(w, axis=0)) / self.h

    def project(self, u: np.ndarray, w: np.ndarray, dt: float) -> None:
        """Make (u, w) divergence-free in place: u ← u − dt ∇φ with ∇²φ = ∇·u/dt (walls: zero normal velocity)."""
        if self._lu is None:
            self._lu = splu(poisson_matrix(self.nz, self.nx, self.h), permc_spec="COLAMD")
        rhs = self.divergence(u, w) / dt
        rhs.flat[0] = 0.0
        phi = self._lu.solve(rhs.ravel()).reshape(self.nz, self.nx)
        u[:, 1:-1] -= dt * np.diff(phi, axis=1) / self.h
        w[1:-1, :] -= dt * np.diff(phi, axis=0) / self.h

    def boundary(self, temp: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The patch's start from a coarse temperature (nz, nx) [K] at ``time``: T0 (nzp, nxp) and the wall
        temperatures left (nzp,), right (nzp,), bottom (nxp,) [K]."""
        centre = self.x0 + self.speed * time
        half = 0.5 * self.nx * self.h
        t0 = sample(temp, self.dx, self.dz, centre + self.xi, self.depth)
        sides = sample(temp, self.dx, self.dz, np.array([centre - half, centre + half]), self.depth)
        bottom = sample(temp, self.dx, self.dz, centre + self.xi, np.array([self.nz * self.h]))[0]
        return t0, sides[:, 0], sides[:, 1], bottom

    # ------------------------------------------------------------------------------------------------ solver
    def integrate(
        self, t0: np.ndarray, walls: tuple[np.ndarray, np.ndarray, np.ndarray], window: float | None = None
    ) -> np.ndarray:
        """T (nzp, nxp) [K] after ``window`` [s] (default the option) from T0 (nzp, nxp) [K] with the melt at rest and
        the wall temperatures ``walls`` = (left (nzp,), right (nzp,), bottom (nxp,)) [K] held."""
        h, v, mat = self.h, self.speed, self.mat
        nz, nx = self.nz, self.nx
        window = self.window if window is None else float(window)
        e = mat.energy(t0)
        left_t, right_t, _ = walls
        k_left, k_right, k_bottom = (mat.kirchhoff(t) for t in walls)
        e_left, e_right = mat.energy(left_t), mat.energy(right_t)
        u = np.zeros((nz, nx + 1))
        w = np.zeros((nz + 1, nx))
        tally = {"absorbed": 0.0, "losses": 0.0, "walls": 0.0, "initial": float(e.sum()) * h * h}
        time, steps, advective, dt_min = 0.0, 0, 0, math.inf
        diffusivity = max(self.alpha_max, self.nu) if self.flow else self.alpha_max
        while time < window * (1.0 - 1e-12):
            speed = float(np.abs(u - v).max() + np.abs(w).max())
            dt = SAFETY / (4.0 * diffusivity / (h * h) + 2.0 * speed / h)
            if self.dt_max is not None:
                dt = min(dt, float(self.dt_max))
            advective += int(2.0 * speed / h > 4.0 * diffusivity / (h * h))
            dt_min = min(dt_min, dt)
            dt = min(dt, window - time)
            temp = mat.temperature(e)
            ku = mat.kirchhoff(temp)
            # energy fluxes [W/m²] through the faces, positive along +ξ / +d
            gx = np.empty((nz, nx + 1))
            gx[:, 1:-1] = -np.diff(ku, axis=1) / h
            gx[:, 0] = -(ku[:, 0] - k_left) / (0.5 * h)
            gx[:, -1] = -(k_right - ku[:, -1]) / (0.5 * h)
            gx += limited_flux(_pad(e, e_left, e_right, 1), u - v)
            gz = np.empty((nz + 1, nx))
            gz[1:-1] = -np.diff(ku, axis=0) / h
            loss = self.loss_flux(temp[0])
            gz[0] = self.laser / h - loss
            gz[-1] = -(k_bottom - ku[-1]) / (0.5 * h)
            if self.flow:
                gz += limited_flux(_pad(e, e[0], e[-1], 0), w.T).T
            e_new = e - dt * (np.diff(gx, axis=1) + np.diff(gz, axis=0)) / h
            tally["absorbed"] += dt * float(self.laser.sum())
            tally["losses"] += dt * h * float(loss.sum())
            tally["walls"] += dt * h * float(gx[:, 0].sum() - gx[:, -1].sum() - gz[-1].sum())
            if self.flow:
                self._flow_step(u, w, temp, dt)
            e = e_new
            time += dt
            steps += 1
        temp = mat.temperature(e)
        if not np.all(np.isfinite(temp)):
            raise UnphysicalState("the cfd patch produced NaN/inf (unstable step?)")
        tally["final"] = float(e.sum()) * h * h
        self.budget = tally
        self.velocity = (u, w)
        self.step_stats = {"steps": steps, "dt_min": dt_min, "dt_thermal": self.dt_thermal, "advective": advective}
        return temp

    def _flow_step(self, u: np.ndarray, w: np.ndarray, temp: np.ndarray, dt: float) -> None:
        """One projection step of the melt flow in place: u (nzp, nxp + 1), w (nzp + 1, nxp) [m/s]; T (nzp, nxp)."""
        h, v, nu = self.h, self.speed, self.nu
        uc, wc = u[:, 1:-1], w[1:-1, :]
        # advection by the frame velocity (u − v, w), flux form, limited upwind
        fx = limited_flux(_pad(uc, 0.0, 0.0, 1), 0.5 * (u[:, :-1] + u[:, 1:]) - v)
        fz = limited_flux(_pad(uc, uc[0], uc[-1], 0), (0.5 * (w[:, :-1] + w[:, 1:])).T).T
        adv_u = (np.diff(fx, axis=1) + np.diff(fz, axis=0)) / h
        gz_ = limited_flux(_pad(wc, 0.0, 0.0, 0), (0.5 * (w[:-1] + w[1:])).T).T
        gx_ = limited_flux(_pad(wc, 0.0, 0.0, 1), 0.5 * (u[:-1] + u[1:]) - v)
        adv_w = (np.diff(gz_, axis=0) + np.diff(gx_, axis=1)) / h
        # viscous terms; Marangoni traction on the top: ∂u/∂d = −(dσ/dT)/μ ∂T/∂ξ, on the molten surface only
        fl = self.liquid_fraction(temp)
        top_fl = 0.5 * (fl[0, :-1] + fl[0, 1:])
        dudd = np.empty((self.nz + 1, self.nx - 1))
        dudd[0] = -self.dsigma / self.mu * np.diff(temp[0]) / h * top_fl
        dudd[1:-1] = np.diff(uc, axis=0) / h
        dudd[-1] = -2.0 * uc[-1] / h
        lap_u = np.diff(np.diff(u, axis=1), axis=1) / (h * h) + np.diff(dudd, axis=0) / h
        dwdx = np.empty((self.nz - 1, self.nx + 1))
        dwdx[:, 0] = 2.0 * wc[:, 0] / h
        dwdx[:, 1:-1] = np.diff(wc, axis=1) / h
        dwdx[:, -1] = -2.0 * wc[:, -1] / h
        lap_w = np.diff(np.diff(w, axis=0), axis=0) / (h * h) + np.diff(dwdx, axis=1) / h
        uc += dt * (nu * lap_u - adv_u)
        wc += dt * (nu * lap_w - adv_w)
        if self.beta:
            wc -= dt * self.beta * GRAVITY * (0.5 * (temp[:-1] + temp[1:]) - self.mat.liquidus)
        # Carman–Kozeny drag, implicit
        uc /= 1.0 + dt * self.drag(0.5 * (fl[:, :-1] + fl[:, 1:])) / self.rho
        wc /= 1.0 + dt * self.drag(0.5 * (fl[:-1] + fl[1:])) / self.rho
        self.project(u, w, dt)

    def evaluate(self, state: State) -> Array:
        be = state.backend
        temp = self.mat.temperature(np.asarray(be.to_numpy(state["E"]), dtype=np.float64))
        t0, left, right, bottom = self.boundary(temp, state.time)
        return be.asarray(self.integrate(t0, (left, right, bottom)))  # the state's backend


@register_provider(
    TERM, "cfd", options=CFD_OPTIONS, doc="melt-pool DNS on the patch: enthalpy method + Marangoni flow (MAC grid)"
)
def _build_cfd(ctx: Context, options: Mapping[str, Any]) -> CfdPatch:
    return CfdPatch(ctx, options)
