"""Strained-film surface diffusion: the Asaro–Tiller–Grinfeld (ATG) model (docs/physics.md §1).

State: film thickness h(x) [nm] ≥ 0 on a periodic grid of ``grid.points`` = N points over ``grid.length`` = L nm.

    ∂h/∂t = M ∂x[(∂x μ) / sqrt(1 + h_x²)] + F,   μ = γ(h) κ + γ'(h)/sqrt(1 + h_x²) + ρ(x)

with the wetting surface energy γ(h) = γ_f + (γ_s − γ_f) exp(−h/δ) [eV/nm²] and the term ``elastic`` = ρ, the
elastic energy density at the surface [eV/nm³], from a pluggable provider:

- ``fem``: the DNS definition (plane-strain FEM, :mod:`hybrid.solvers.elasticity`);
- ``linear``: the small-slope spectral law ρ = ρ0 − 4 ρ0 Λh, Λ = (−∂²)^{1/2} (|k| per Fourier mode).

The IMEX integrator treats −M γ_imp ∂⁴h implicitly with the symbol of the compact difference operator actually
used in the explicit kernel (so IMEX with constant γ and the linear provider multiplies each mode by exactly
(1 + dt M 4ρ0 s²|k|) / (1 + dt M γ s⁴), s = 2 sin(k dx/2)/dx → k). γ_imp = max(γ_f, γ_s) by default, the stiffest
coefficient of the curvature term (a stabilised semi-implicit splitting), settable with ``model.imex_gamma``.
The wetting term γ'(h)/sqrt(1 + h_x²) in μ acts like a diffusion with coefficient M γ''(h), which near h → 0
reaches M (γ_s − γ_f)/δ² ≈ 185 nm²/time unit for Ge/Si, far stiffer than the curvature term at dx = 1 nm; the
IMEX step therefore also treats −M S ∂²h implicitly (and adds it back explicitly), with S = max γ'' =
(γ_s − γ_f)/δ² by default (``model.imex_wetting``). Each Fourier mode of a linear diffusion with coefficient
D ≤ M S is then damped, not amplified, at any dt. With γ_s = γ_f, S = 0 and the scheme is the plain one above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.analysis.atg_plots import plot_atg
from hybrid.core.backend import Array, to_numpy
from hybrid.core.config import ConfigError, Option, Table, Tagged
from hybrid.core.grid import Grid
from hybrid.core.registry import Context, ModelSpec, register_model, register_provider
from hybrid.core.state import State
from hybrid.core.terms import FieldRange, TermProvider, declare_inputs
from hybrid.solvers.atg_kernels import make_atg_rhs


def _positive(type_: str, default: Any, doc: str, max: float | None = None) -> Option:
    """An option that must be > 0 (and at most ``max``)."""
    return Option(type_, default, doc, min=0.0, min_exclusive=True, max=max)  # type: ignore[arg-type]


def _nonnegative(type_: str, default: Any, doc: str, max: float | None = None) -> Option:
    return Option(type_, default, doc, min=0.0, max=max)  # type: ignore[arg-type]


MAX_MODE = 2**22
"""Largest mode number of an initial profile (the most points of a 1D grid; the Nyquist limit N/2 applies too)."""

# Physical ranges: wide around real films (surface energies 3–20 eV/nm², δ ≈ 0.1–1 nm, E ≲ 7500 eV/nm³ for
# diamond), narrow enough that no derived quantity (ρ0, S = Δγ/δ², the stability limit) overflows.
PARAMS = Table(
    {
        "gamma_film": _positive("float", 6.0, "γ_f, surface energy of the thick film [eV/nm²]", max=100.0),
        "gamma_substrate": _positive("float", 8.7, "γ_s, surface energy as h → 0 (substrate) [eV/nm²]", max=100.0),
        "wetting_length": Option("float", 0.27, "δ, decay length of the wetting interaction [nm]", min=1e-3, max=1e3),
        "young": _positive("float", 643.75, "E, Young's modulus of film and substrate [eV/nm³] (103 GPa)", max=1e5),
        "poisson": Option(
            "float", 0.26, "ν, Poisson ratio [-]", min=-1.0, max=0.5, min_exclusive=True, max_exclusive=True
        ),
        "misfit": Option("float", 0.04, "ε_m, misfit eigenstrain of the film [-]", min=-0.2, max=0.2),
        "mobility": _positive("float", 5.0, "M, surface mobility [nm⁴/(eV·time unit)]", max=1e6),
        "flux": Option("float", 0.0, "F, deposition flux [nm/time unit] (< 0: evaporation)", min=-1e3, max=1e3),
        "substrate_depth": _positive(
            "float", None, "H, substrate depth below y = 0 [nm] (default: grid.length)", max=1e9
        ),
        "imex_gamma": _positive(
            "float", None, "γ_imp of the implicit −Mγ∂⁴h part (default: max(γ_f, γ_s)) [eV/nm²]", max=1e3
        ),
        "imex_wetting": _nonnegative(
            "float",
            None,
            "S of the implicit stabilising M S ∂²h part (default: max(γ'') = |γ_s − γ_f|/δ²) [eV/nm⁴]",
            max=1e9,
        ),
    },
    doc="Ge on Si(001) defaults (docs/physics.md §1)",
)

INITIAL = Tagged(
    "kind",
    {
        "flat": Table({"mean": _positive("float", 5.0, "film thickness [nm]", max=1e6)}),
        "sinusoid": Table(
            {
                "mean": _positive("float", 5.0, "mean thickness [nm]", max=1e6),
                "amplitude": _nonnegative("float", 0.1, "amplitude A of A cos(2π mode x / L) [nm]", max=1e6),
                "mode": Option("int", 1, "number of periods in L (at most grid.points / 2)", min=1, max=MAX_MODE),
            }
        ),
        "random": Table(
            {
                "mean": _positive("float", 5.0, "mean thickness [nm]", max=1e6),
                "amplitude": _nonnegative("float", 0.1, "RMS roughness of h − mean [nm]", max=1e6),
                "modes": Option(
                    "int",
                    10,
                    "highest Fourier mode (modes 1..modes, equal amplitude, random phase; at most grid.points / 2)",
                    min=1,
                    max=MAX_MODE,
                ),
            }
        ),
        "file": Table(
            {
                "path": Option("str", doc=".npy profile of shape (N,), or a hybrid output .h5 (fields/h)"),
                "frame": Option("int", -1, "frame of an .h5 output (negative counts from the end)"),
            }
        ),
    },
    default="random",
    doc="initial film profile",
)


def stability_limit(integrator: str, grid: Grid, params: Mapping[str, Any]) -> tuple[float, str] | None:
    """Largest dt [time unit] a case may ask for (docs/physics.md §1).

    Explicit Euler: its stability limit dx⁴/(8 M γ_max) for the compact form. IMEX is stable at any dt, but a step
    longer than the e-folding time 1/ω_max of the fastest-growing ripple, ω_max = max_k M (4 ρ0 |k|³ − γ_f k⁴) =
    27 M ρ0⁴ / γ_f³ (at k = 3 ρ0 / γ_f), steps over the instability it is meant to resolve, so that is its limit
    (``None`` for an unstrained film, ρ0 = 0).
    """
    dx, m = grid.dx, float(params["mobility"])
    if integrator == "imex":
        from hybrid.solvers.elastic_laws import misfit_energy_density

        rho0 = misfit_energy_density(params["young"], params["poisson"], params["misfit"])
        gamma = float(params["gamma_film"])
        if not (rho0 > 0 and gamma > 0 and m > 0):
            return None
        log_limit = 3 * math.log(gamma) - 4 * math.log(rho0) - math.log(27.0 * m)  # no overflow at extreme values
        if log_limit > 700:  # beyond any float dt: no limit
            return None
        limit = math.exp(log_limit)
        return limit, (
            f"IMEX is stable at any dt, but a step longer than the e-folding time 1/ω_max = γ_f³/(27 M ρ0⁴) = "
            f"{limit:.4g} of the fastest-growing ripple cannot resolve the instability (ρ0 = {rho0:.4g} "
            "eV/nm³ from model.young, model.poisson, model.misfit; model.mobility, model.gamma_film; "
            "docs/physics.md §1)"
        )
    if integrator != "euler":
        return None
    g = max(float(params["gamma_film"]), float(params["gamma_substrate"]))
    limit = dx**4 / (8.0 * m * g)
    return limit, (
        f"explicit Euler needs dt ≤ dx⁴/(8 M max(γ_f, γ_s)) = {dx:g}⁴/(8 · {m:g} · {g:g}) = {limit:.4g} "
        "(model.mobility, model.gamma_film, model.gamma_substrate; docs/physics.md §1); "
        f"time.integrator = 'imex' allows steps up to the instability's e-folding time"
    )


def finalize_params(grid: Grid, params: dict[str, Any]) -> dict[str, Any]:
    """Fill the defaults that depend on the grid: H = L, γ_imp = max(γ_f, γ_s)."""
    out = dict(params)
    if out.get("substrate_depth") is None:
        out["substrate_depth"] = grid.lengths[0]
    if out.get("imex_gamma") is None:
        out["imex_gamma"] = max(out["gamma_film"], out["gamma_substrate"])
    if out.get("imex_wetting") is None:
        out["imex_wetting"] = max(out["gamma_substrate"] - out["gamma_film"], 0.0) / out["wetting_length"] ** 2
    return out


def initial_profile(ctx: Context, init: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The initial h [nm], shape (N,), from a resolved ``[initial]`` table; random phases from the case seed."""
    grid = ctx.grid
    (x,) = grid.coordinates()
    L = grid.lengths[0]
    kind = init["kind"]
    if kind == "flat":
        h = np.full(grid.points[0], init["mean"], dtype=np.float64)
    elif kind == "sinusoid":
        if init["mode"] > grid.points[0] // 2:  # a higher mode aliases to a lower one on the grid
            raise ConfigError(f"must be <= points/2 = {grid.points[0] // 2} (Nyquist limit)", key="initial.mode")
        h = init["mean"] + init["amplitude"] * np.cos(2 * np.pi * init["mode"] * x / L)
    elif kind == "random":
        modes = int(init["modes"])
        if modes > grid.points[0] // 2:
            raise ConfigError(f"must be <= points/2 = {grid.points[0] // 2} (Nyquist limit)", key="initial.modes")
        phases = ctx.rng(0).uniform(0.0, 2 * np.pi, size=modes)
        m = np.arange(1, modes + 1)[:, None]
        pert = np.cos(2 * np.pi * m * x[None, :] / L + phases[:, None]).sum(axis=0)
        pert *= init["amplitude"] / max(float(np.std(pert)), 1e-300)
        h = init["mean"] + pert
    elif kind == "file":
        h = _load_profile(ctx.resolve_path(init["path"]), int(init["frame"]))
        if h.shape != (grid.points[0],):
            raise ConfigError(
                f"profile in {init['path']} has shape {h.shape}, the grid needs ({grid.points[0]},)", key="initial.path"
            )
    else:  # pragma: no cover - the schema rejects other kinds
        raise ConfigError(f"unknown kind {kind!r}", key="initial.kind")
    if np.any(h < 0):
        raise ConfigError(
            f"the initial profile reaches h = {h.min():.3g} < 0 nm; raise initial.mean or lower initial.amplitude",
            key="initial",
        )
    return {"h": np.ascontiguousarray(h, dtype=np.float64)}


def _load_profile(path: Path, frame: int) -> np.ndarray:
    if not path.exists():
        raise ConfigError(f"file {path} does not exist", key="initial.path")
    if path.suffix == ".npy":
        return np.asarray(np.load(path), dtype=np.float64)
    import h5py

    with h5py.File(path, "r") as f:
        if "fields/h" not in f:
            raise ConfigError(f"{path} has no dataset fields/h", key="initial.path")
        frames = len(f["fields/h"])
        if not -frames <= frame < frames:
            raise ConfigError(
                f"{path} holds {frames} frames (0..{frames - 1}, or -{frames}..-1), got {frame}", key="initial.frame"
            )
        return np.asarray(f["fields/h"][frame], dtype=np.float64)


class ATGEquation:
    """The ATG model as an :class:`hybrid.core.equation.Equation` (field ``h``, term ``elastic``)."""

    evolved_fields = ("h",)

    def __init__(self, ctx: Context, terms: Mapping[str, Any]) -> None:
        self.grid = ctx.grid
        self.backend = ctx.backend
        self.terms = dict(terms)
        self.params = dict(ctx.params)
        p = self.params
        self._kernel = make_atg_rhs(ctx.backend.name)
        self._args = (
            float(ctx.grid.dx),
            float(p["mobility"]),
            float(p["gamma_film"]),
            float(p["gamma_substrate"]),
            float(p["wetting_length"]),
            float(p["flux"]),
        )
        s2 = ctx.grid.rfft_difference_symbol()
        self._symbol = ctx.backend.constant(-p["mobility"] * (p["imex_gamma"] * s2 * s2 + p["imex_wetting"] * s2))

    def rhs(self, state: State) -> dict[str, Array]:
        """∂h/∂t [nm/time unit], shape (N,)."""
        h = state["h"]
        rho = self.terms["elastic"](state)
        return {"h": self._kernel(h, rho, *self._args)}

    def linear_symbol(self, field: str) -> Array | None:
        """−M (γ_imp s⁴ + S s²) on the rfft layout (s² the compact second-difference symbol)."""
        return self._symbol if field == "h" else None

    @property
    def state_bounds(self) -> dict[str, tuple[float, float]]:
        """Bounds of a sound state, checked by the run loop with its NaN/inf guard: 0 <= h <= 5 max(H, L) [nm].

        h < 0 is no film (:meth:`check_state` says so first, in those words). The upper bound is five domain
        heights, the larger of the substrate depth H below the film and the cell length L: the film is a thin
        layer on that domain (a few nm on ~100 nm), and islands never rise above the mean thickness by more than
        about the cell length (mass is conserved up to the deposited flux), so a profile that tall is an
        unstable step amplifying itself, caught while still finite. A deposition run meant to grow a film thicker
        than that needs a deeper or wider domain.
        """
        height = max(float(self.params["substrate_depth"]), float(self.grid.lengths[0]))
        return {"h": (0.0, 5.0 * height)}

    def check_state(self, state: State) -> str | None:
        """A negative film thickness is unphysical (an unstable step, typically): say so, or None."""
        low = float(to_numpy(state["h"]).min())
        return f"field 'h' fell below 0 (minimum {low:.4g} nm), which a film thickness cannot" if low < 0 else None


# ---------------------------------------------------------------------------- providers of `elastic`

UNITS = {"h": "nm", "elastic": "eV/nm³", "x": "nm", "time": "time unit"}
"""Units of the ATG fields, term and coordinates (docs/physics.md §1)."""

# the term `elastic` reads the film thickness, which cannot be negative: every provider refuses h < 0
declare_inputs("elastic", h=FieldRange(min=0.0, unit=UNITS["h"], what="a film thickness"))


class LinearElastic(TermProvider):
    """Small-slope spectral elastic energy density ρ = ρ0 − 4 ρ0 Λh [eV/nm³] (input h (N,) [nm])."""

    name = "elastic"
    provider = "linear"
    inputs = ("h",)

    def __init__(self, ctx: Context) -> None:
        from hybrid.solvers.elastic_laws import misfit_energy_density

        super().__init__(ctx)
        p = ctx.params
        self.rho0 = misfit_energy_density(p["young"], p["poisson"], p["misfit"])
        self.grid = ctx.grid
        self._symbol: dict[str, Array] = {}

    def evaluate(self, state: State) -> Array:
        h = state["h"]
        be = state.backend
        key = f"{be.name}:{be.device}"
        sym = self._symbol.get(key)
        if sym is None:
            sym = self._symbol[key] = be.constant(self.grid.rfft_abs_k())
        lam_h = be.irfftn(sym * be.rfftn(h, 1), self.grid.shape)
        return self.rho0 - 4.0 * self.rho0 * lam_h


class FEMElastic(TermProvider):
    """DNS elastic energy density at the surface by plane-strain FEM (scikit-fem), see elasticity.py.

    Input h (N,) [nm] on any backend; the solve runs on the CPU in float64; output ρ (N,) [eV/nm³] on the
    state's backend/device.
    """

    name = "elastic"
    provider = "fem"
    inputs = ("h",)

    def __init__(self, ctx: Context, options: Mapping[str, Any]) -> None:
        from hybrid.solvers.elasticity import FilmElasticitySolver

        super().__init__(ctx)
        p = ctx.params
        self.solver = FilmElasticitySolver(
            ctx.grid.lengths[0],
            ctx.grid.points[0],
            p["substrate_depth"],
            p["young"],
            p["poisson"],
            p["misfit"],
            **dict(options),
        )

    def evaluate(self, state: State) -> Array:
        be = state.backend
        rho = self.solver(be.to_numpy(state["h"]))
        return be.asarray(rho)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(self.solver.stats())
        return out

    def state_dict(self) -> dict[str, Any]:
        get = getattr(self.solver, "state_dict", None)
        return get() if get is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load = getattr(self.solver, "load_state_dict", None)
        if load is not None and state:
            load(state)


@register_provider("elastic", "linear", doc="small-slope spectral law ρ0 (1 − 4Λh)")
def _build_linear(ctx: Context, options: Mapping[str, Any]) -> LinearElastic:
    return LinearElastic(ctx)


FEM_OPTIONS = Table(
    {
        "refine": Option("int", 1, "element columns per grid interval (accuracy: see elasticity.py)", min=1, max=8),
        "surface_layers": Option("int", 3, "element rows of the element width below the surface", min=1),
        "growth": Option("float", 1.3, "geometric growth of element height with depth", min=1.0, max=3.0),
        "solver": Option(
            "str",
            "pcg",
            "pcg: CG preconditioned by an earlier factorisation; direct: factorise every call",
            choices=("pcg", "direct"),
        ),
        "rtol": Option(
            "float", 1e-11, "relative energy-norm tolerance of the pcg solve", min=0.0, min_exclusive=True, max=1e-3
        ),
    }
)


@register_provider("elastic", "fem", options=FEM_OPTIONS, doc="plane-strain FEM DNS (scikit-fem)")
def _build_fem(ctx: Context, options: Mapping[str, Any]) -> FEMElastic:
    return FEMElastic(ctx, options)


register_model(
    ModelSpec(
        name="atg",
        plot=plot_atg,
        build=ATGEquation,
        params=PARAMS,
        initial=INITIAL,
        initial_state=initial_profile,
        terms={"elastic": "fem"},
        finalize_params=finalize_params,
        stability_limit=stability_limit,
        grid_ndim=1,
        units=UNITS,
        doc="strained-film surface diffusion (Asaro–Tiller–Grinfeld), docs/physics.md §1",
    )
)
