"""The front law (docs/physics.md §3): the height h(x) of an Allen–Cahn front evolved by KPZ plus a correction term.

    h_t = D h_xx + v0 (1 + h_x²/2) + C[h],        v0 = −sqrt(2D)·a

``C`` is the term ``front_correction``: what the phase field's front velocity adds to KPZ. Its providers here are
``none`` (C = 0: the KPZ law), ``eikonal`` (the eikonal law's difference from KPZ,
C = D h_xx/(1 + h_x²) + v0 sqrt(1 + h_x²) − D h_xx − v0 (1 + h_x²/2)) and ``pf``, the DNS definition: the front's
equilibrium tanh profile is rebuilt around h on the phase field's grid, relaxed by the phase field for ``relax``
time units, and the front's velocity h_t is measured over the next ``window``; C is that minus KPZ's h_t of the
phase field's own front at the window's centre.

The case file's grid is the phase field's (``grid.lengths = [Lx, Ly]``, ``grid.shape = [nx, ny]``, as in
``cases/front_pf.toml``); the law uses its x axis, the ``pf`` provider the whole grid. Derivatives are compact
central differences (periodic); IMEX treats D h_xx implicitly (its compact symbol). Explicit Euler is stable for
dt ≤ dx²/(2D) while slopes are gentle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np

from hybrid.analysis.front_plots import plot_front
from hybrid.core.backend import Array
from hybrid.core.config import Option, Table
from hybrid.core.grid import Grid
from hybrid.core.registry import Context, ModelSpec, register_model, register_provider
from hybrid.core.state import State
from hybrid.core.terms import FieldRange, TermProvider, declare_inputs
from hybrid.solvers.front_pf import INITIAL, PARAMS, initial_front
from hybrid.solvers.front_pf import stability_limit as pf_stability_limit

TERM = "front_correction"


def line_grid(grid: Grid) -> Grid:
    """The periodic x axis of the case's (x periodic, y no-flux) grid: what the front law lives on."""
    return Grid((grid.lengths[0],), (grid.points[0],))


def front_speed(params: Mapping[str, Any]) -> float:
    """v0 = −sqrt(2D)·a, the flat front's speed [length/time]."""
    return -math.sqrt(2.0 * float(params["diffusion"])) * float(params["asymmetry"])


def derivatives(h: Any, dx: Any) -> tuple[Any, Any]:
    """(h_x, h_xx) by compact central differences along the last (periodic) axis; numpy or torch (..., N), ``dx``
    a float or an array broadcasting against h (e.g. (B, 1) per-profile spacings)."""
    hp: Any
    hm: Any
    if isinstance(h, np.ndarray):  # slices, not np.roll: a 1D front's step is a few microseconds of arithmetic
        diff, curv = np.empty_like(h), np.empty_like(h)
        np.subtract(h[..., 2:], h[..., :-2], out=diff[..., 1:-1])
        np.subtract(h[..., :1], h[..., -2:-1], out=diff[..., -1:])
        np.subtract(h[..., 1:2], h[..., -1:], out=diff[..., :1])
        np.add(h[..., 2:], h[..., :-2], out=curv[..., 1:-1])
        np.add(h[..., :1], h[..., -2:-1], out=curv[..., -1:])
        np.add(h[..., 1:2], h[..., -1:], out=curv[..., :1])
        curv -= 2.0 * h
        return diff / (2.0 * dx), curv / (dx * dx)
    else:
        import torch

        hp, hm = torch.roll(h, -1, dims=-1), torch.roll(h, 1, dims=-1)
    return (hp - hm) / (2.0 * dx), (hp - 2.0 * h + hm) / (dx * dx)


@numba.njit(cache=True)
def _slope_features(h: np.ndarray, dx: float, out: np.ndarray) -> None:
    """out[b, 0] = h_x², out[b, 1] = h_xx of fronts h (B, N) float64 (the stencils of :func:`derivatives`, in its
    operation order, so the float64 values are those of the numpy and torch paths); ``out`` (B, 2, N) any float."""
    nb, n = h.shape
    for b in range(nb):
        for i in range(n):
            hm = h[b, i - 1] if i > 0 else h[b, n - 1]
            hp = h[b, i + 1] if i < n - 1 else h[b, 0]
            hx = (hp - hm) / (2.0 * dx)
            out[b, 0, i] = hx * hx
            out[b, 1, i] = (hp + hm - 2.0 * h[b, i]) / (dx * dx)


def slope_features(h: np.ndarray, dx: float, dtype: Any = np.float32) -> np.ndarray:
    """(h_x², h_xx) of fronts h (B, N) on a periodic axis of spacing dx: (B, 2, N) in ``dtype``, computed in
    float64 in one compiled pass."""
    h = np.ascontiguousarray(h, dtype=np.float64)
    out = np.empty((h.shape[0], 2, h.shape[1]), dtype=dtype)
    _slope_features(h, float(dx), out)
    return out


@numba.njit(cache=True)
def _kpz_tendency(h: np.ndarray, dx: float, diffusion: float, v0: float, correction: np.ndarray) -> np.ndarray:
    """D h_xx + v0 (1 + h_x²/2) + C of one front h (N,) float64 (the stencils of :func:`derivatives`)."""
    n = h.size
    out = np.empty(n)
    for i in range(n):
        hm = h[i - 1] if i > 0 else h[n - 1]
        hp = h[i + 1] if i < n - 1 else h[0]
        hx = (hp - hm) / (2.0 * dx)
        out[i] = diffusion * ((hp + hm - 2.0 * h[i]) / (dx * dx)) + v0 * (1.0 + 0.5 * hx * hx) + correction[i]
    return out


class FrontLaw:
    """KPZ plus the ``front_correction`` term (module docstring), for the integrators and the run loop."""

    evolved_fields = ("h",)

    def __init__(self, ctx: Context, terms: Mapping[str, Any]) -> None:
        self.grid, self.backend, self.terms = line_grid(ctx.grid), ctx.backend, dict(terms)
        self.diffusion = float(ctx.params["diffusion"])
        self.v0 = front_speed(ctx.params)
        self.correction = self.terms[TERM]

    def rhs(self, state: State) -> dict[str, Array]:
        h = state["h"]
        correction = self.correction(state)
        if isinstance(h, np.ndarray) and h.ndim == 1 and h.dtype == np.float64 and correction.dtype == np.float64:
            return {"h": _kpz_tendency(h, self.grid.dx, self.diffusion, self.v0, correction)}  # one compiled pass
        hx, hxx = derivatives(h, self.grid.dx)
        return {"h": self.diffusion * hxx + self.v0 * (1.0 + 0.5 * hx * hx) + correction}

    def linear_symbol(self, field: str) -> Array | None:
        """−D times the compact second difference's symbol: the diffusion, implicit in IMEX."""
        return -self.diffusion * self.grid.rfft_difference_symbol()


def initial_state(ctx: Context, init: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{"h": (nx,)}: the initial front of the phase field's ``[initial]`` table."""
    return {"h": initial_front(ctx, init)}


def stability_limit(integrator: str, grid: Grid, params: Mapping[str, Any]) -> tuple[float, str] | None:
    """Explicit Euler: dt ≤ dx²/(2D) (the diffusion; gentle slopes); IMEX: no limit of its own."""
    if integrator != "euler":
        return None
    dx, d = line_grid(grid).dx, float(params["diffusion"])
    return dx * dx / (2.0 * d), f"explicit Euler needs dt ≤ dx²/(2D) = {dx * dx / (2.0 * d):.4g} (model.diffusion)"


class FrontTerm(TermProvider):
    """Base of the providers of ``front_correction``: input h (nx,) [length] on the x axis of the case's grid (the
    axis :func:`hybrid.core.terms.declare_inputs` names for the term)."""

    name = TERM
    inputs = ("h",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.dx = line_grid(ctx.grid).dx
        self.diffusion = float(ctx.params["diffusion"])
        self.v0 = front_speed(ctx.params)


class NoCorrection(FrontTerm):
    """C = 0: the front follows KPZ."""

    provider = "none"

    def evaluate(self, state: State) -> Array:
        return state["h"] * 0.0


class EikonalCorrection(FrontTerm):
    """C = the eikonal law's tendency minus KPZ's (same stencils), so the front follows the eikonal law."""

    provider = "eikonal"

    def evaluate(self, state: State) -> Array:
        h = state["h"]
        hx, hxx = derivatives(h, self.dx)
        g = 1.0 + hx * hx
        eikonal = self.diffusion * hxx / g + self.v0 * g**0.5
        kpz = self.diffusion * hxx + self.v0 * (1.0 + 0.5 * hx * hx)
        return eikonal - kpz


class PhaseFieldCorrection(FrontTerm):
    """C = h_t of the phase field around the front h, minus KPZ's (the DNS of ``front_correction``).

    The phase field lives on the case's (x periodic, y no-flux) grid with the model's D and a; φ is rebuilt as
    tanh((h − mean h + Ly/2 − y)/sqrt(2D)) (the front in the middle of the domain: the law is translation
    invariant in y), stepped by explicit Euler for ``relax`` time units to let the profile settle around the
    curved front, then for ``window`` more; h_t is the change of the front's height over the window, and C is h_t
    minus KPZ's h_t evaluated on the phase field's front at the window's centre (the mean of its heights at the
    window's ends, the point at which the difference quotient is centred), not on h. Both parts of C then belong
    to the same front, and only C itself is attributed to h with an O(relax + window/2) lag: C changes with the
    slopes, slowly, whereas KPZ's h_t (its D h_xx especially) changes at the rate the roughness decays, which
    over the lag would bias C by several % of v0 on fronts with slopes near 1. The default ``relax`` = 2 lets the
    rebuilt profile settle (at relax = 1 the front still runs ~0.2 % of v0 fast). Input h (nx,) [length]; output
    C (nx,) [length/time].
    """

    provider = "pf"

    def __init__(self, ctx: Context, relax: float, window: float) -> None:
        from hybrid.solvers.front_kernels import make_front_rhs

        super().__init__(ctx)
        self.grid = ctx.grid
        self.asymmetry = float(ctx.params["asymmetry"])
        self._rhs = make_front_rhs("numpy")
        limit = pf_stability_limit("euler", self.grid, ctx.params)
        assert limit is not None  # explicit Euler always has one
        self.dt = 0.5 * limit[0]  # half the explicit limit of the phase field
        self.relax_steps = max(1, round(relax / self.dt))
        self.window_steps = max(1, round(window / self.dt))

    def evaluate(self, state: State) -> Array:
        from hybrid.solvers.front_kernels import front_position

        be = state.backend
        h = np.asarray(be.to_numpy(state["h"]), dtype=np.float64)
        ly = self.grid.lengths[1]
        dx, dy = self.grid.spacing
        y = self.grid.coordinates()[1]
        shift = ly / 2.0 - float(h.mean())
        if np.ptp(h) > 0.75 * ly:  # its extremes 0.125 Ly (4 widths on the shipped grid) from the walls
            from hybrid.core.state import UnphysicalState

            raise UnphysicalState(
                f"the front spans {np.ptp(h):.3g}, more than 0.75 Ly = {0.75 * ly:.3g}: grid.lengths[1]"
            )
        phi = np.tanh((h[None, :] + shift - y[:, None]) / math.sqrt(2.0 * self.diffusion))
        for _ in range(self.relax_steps):
            phi = phi + self.dt * self._rhs(phi, dx, dy, self.diffusion, self.asymmetry)
        start = front_position(phi, dy)
        for _ in range(self.window_steps):
            phi = phi + self.dt * self._rhs(phi, dx, dy, self.diffusion, self.asymmetry)
        end = front_position(phi, dy)
        velocity = (end - start) / (self.window_steps * self.dt)
        hx, hxx = derivatives(0.5 * (start + end), self.dx)  # the front the velocity belongs to
        return be.asarray(velocity - (self.diffusion * hxx + self.v0 * (1.0 + 0.5 * hx * hx)))


PF_OPTIONS = Table(
    {
        "relax": Option("float", 2.0, "time for the rebuilt profile to settle [time]", min=0.0, max=1e3),
        "window": Option("float", 1.0, "time over which the front's velocity is measured [time]", min=1e-3, max=1e3),
    }
)


declare_inputs(TERM, grid_axes=(-1,), h=FieldRange(what="a front height"))  # h(x) on the (y, x) grid


@register_provider(TERM, "pf", options=PF_OPTIONS, doc="the DNS: the phase field relaxed around the front")
def _build_pf(ctx: Context, options: Mapping[str, Any]) -> PhaseFieldCorrection:
    return PhaseFieldCorrection(ctx, float(options.get("relax", 2.0)), float(options.get("window", 1.0)))


@register_provider(TERM, "none", doc="no correction: the KPZ law")
def _build_none(ctx: Context, options: Mapping[str, Any]) -> NoCorrection:
    return NoCorrection(ctx)


@register_provider(TERM, "eikonal", doc="the eikonal law's difference from KPZ")
def _build_eikonal(ctx: Context, options: Mapping[str, Any]) -> EikonalCorrection:
    return EikonalCorrection(ctx)


register_model(
    ModelSpec(
        name="front",
        build=FrontLaw,
        params=PARAMS,
        initial=INITIAL,
        initial_state=initial_state,
        terms={TERM: "none"},
        units={"h": "1", TERM: "1", "x": "1", "time": "1"},
        stability_limit=stability_limit,
        grid_ndim=2,
        periodic=(True, False),
        plot=plot_front,
        doc="front law: KPZ plus the correction term front_correction (docs/physics.md §3)",
    )
)
