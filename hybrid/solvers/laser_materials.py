"""Temperature-dependent material data of the laser model (docs/laser.md): piecewise-linear curves, the enthalpy
h(T) and its inverse, and the Kirchhoff transform u(T) = ∫k dT.

A material key is a constant or a list of ``[T, value]`` points (T strictly increasing [K]); between points the
value is linear in T, beyond the first/last point constant. A property with a solid and a liquid curve is the
solid curve below the solidus T_s, the liquid curve above the liquidus T_l and linear between their values at T_s
and T_l. The enthalpy per unit mass is measured from 0 K:

    h(T) = ∫₀ᵀ c_p dT + L_f f_l(T),      f_l = clip((T − T_s)/(T_l − T_s), 0, 1)

so between breakpoints c_p is linear and h quadratic, and h is inverted exactly, segment by segment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybrid.core.config import ConfigError


def parse_curve(value: Any, key: str, *, minimum: float = 0.0, positive: bool = True) -> np.ndarray:
    """A material key as an array of points (n, 2) [[T K, value]]; a constant becomes one point.

    Raises:
        ConfigError: naming ``key``, when the value is neither a finite number nor a list of [T, value] points with
            T strictly increasing and values above ``minimum`` (or at least ``minimum`` when not ``positive``).
    """
    bound = f"> {minimum:g}" if positive else f">= {minimum:g}"
    allowed = f"a number {bound} or a list of [T, value] points (T in K, strictly increasing, values {bound})"

    def number(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"got {v!r}; allowed: {allowed}", key=key)
        try:
            x = float(v)
        except OverflowError:
            raise ConfigError(f"got {v!r} (too large); allowed: {allowed}", key=key) from None
        if not math.isfinite(x):
            raise ConfigError(f"got {v!r}; allowed: {allowed}", key=key)
        return x

    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(f"got an empty list; allowed: {allowed}", key=key)
        pts = []
        for p in value:
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise ConfigError(f"got the point {p!r}; allowed: {allowed}", key=key)
            pts.append((number(p[0]), number(p[1])))
        arr = np.array(pts, dtype=np.float64)
        if np.any(np.diff(arr[:, 0]) <= 0) or arr[0, 0] < 0:
            raise ConfigError(
                f"the temperatures {arr[:, 0].tolist()} are not >= 0 and increasing; allowed: {allowed}", key=key
            )
    else:
        arr = np.array([[0.0, number(value)]])
    vals = arr[:, 1]
    if np.any(vals <= minimum) if positive else np.any(vals < minimum):
        raise ConfigError(f"got values {vals.tolist()}; allowed: {allowed}", key=key)
    return arr


def _merge(solid: np.ndarray, liquid: np.ndarray, ts: float, tl: float) -> np.ndarray:
    """One curve (n, 2): ``solid`` below ts, ``liquid`` above tl, linear in between."""
    below = solid[solid[:, 0] < ts]
    above = liquid[liquid[:, 0] > tl]
    mid = np.array([[ts, _eval(solid, ts)], [tl, _eval(liquid, tl)]])
    return np.concatenate([below, mid, above])


def _eval(curve: np.ndarray, t: Any) -> Any:
    """Piecewise-linear value of ``curve`` at ``t`` (constant beyond its ends)."""
    return np.interp(t, curve[:, 0], curve[:, 1])


class PiecewiseQuadratic:
    """F(T) = ∫₀ᵀ f dT + jump·ramp(T) for a piecewise-linear f (points (n, 2)) and an optional linear ramp of
    height ``jump`` between ``ramp = (Ta, Tb)``, with its exact inverse. Vectorised over arrays of T or F."""

    def __init__(self, curve: np.ndarray, jump: float = 0.0, ramp: tuple[float, float] | None = None) -> None:
        knots = [0.0, *curve[:, 0].tolist()]
        if ramp is not None:
            knots += list(ramp)
        t = np.unique(np.clip(np.array(knots), 0.0, None))
        slope_add = np.zeros_like(t)
        if ramp is not None and jump:
            inside = (t >= ramp[0]) & (t < ramp[1])
            slope_add[inside] = jump / (ramp[1] - ramp[0])
        f = _eval(curve, t) + slope_add  # value at the start of each segment (right limit)
        f_end = np.append(_eval(curve, t[1:]) + slope_add[:-1], np.nan)  # left limit at the segment's end
        widths = np.diff(t)
        slope = np.zeros_like(t)
        slope[:-1] = (f_end[:-1] - f[:-1]) / widths
        big = np.zeros_like(t)
        big[1:] = np.cumsum(f[:-1] * widths + 0.5 * slope[:-1] * widths**2)
        slope[-1] = 0.0  # beyond the last knot: constant f
        self.t, self.f, self.slope, self.big = t, f, slope, big

    def __call__(self, temp: Any) -> np.ndarray:
        """F(T) for T [K] (any shape)."""
        temp = np.asarray(temp, dtype=np.float64)
        i = np.clip(np.searchsorted(self.t, temp, side="right") - 1, 0, None)
        tau = temp - self.t[i]
        return self.big[i] + self.f[i] * tau + 0.5 * self.slope[i] * tau * tau

    def derivative(self, temp: Any) -> np.ndarray:
        """dF/dT at T [K] (the right limit at a knot)."""
        temp = np.asarray(temp, dtype=np.float64)
        i = np.clip(np.searchsorted(self.t, temp, side="right") - 1, 0, None)
        return self.f[i] + self.slope[i] * (temp - self.t[i])

    def inverse(self, value: Any) -> np.ndarray:
        """T with F(T) = ``value`` (F increasing; below F(0) = 0 linear with slope f(0))."""
        value = np.asarray(value, dtype=np.float64)
        i = np.clip(np.searchsorted(self.big, value, side="right") - 1, 0, None)
        d = value - self.big[i]
        a, s = self.f[i], self.slope[i]
        # root of s/2 τ² + a τ − d = 0 in the cancellation-free form
        disc = np.sqrt(np.maximum(a * a + 2.0 * s * d, 0.0))
        return self.t[i] + 2.0 * d / (a + disc)


@dataclass
class Material:
    """The resolved material of a laser case.

    Attributes:
        density: ρ [kg/m³] (constant).
        enthalpy: h(T) [J/kg] from 0 K with latent heat; ``.inverse`` gives T(h).
        kirchhoff: u(T) = ∫₀ᵀ k dT [W/m].
        conductivity: k(T) points (n, 2) [K, W/(m K)].
        cp: c_p(T) points (n, 2) [K, J/(kg K)] without latent heat.
        solidus, liquidus: T_s, T_l [K].
        latent_heat: L_f [J/kg].
        constant: whether c_p and k are constant and L_f = 0 (then E(T) and u(T) are linear).
    """

    density: float
    enthalpy: PiecewiseQuadratic
    kirchhoff: PiecewiseQuadratic
    conductivity: np.ndarray
    cp: np.ndarray
    solidus: float
    liquidus: float
    latent_heat: float
    constant: bool

    def temperature(self, energy: Any) -> np.ndarray:
        """T [K] of volumetric enthalpy E = ρ h [J/m³]."""
        return self.enthalpy.inverse(np.asarray(energy) / self.density)

    def energy(self, temp: Any) -> np.ndarray:
        """E = ρ h(T) [J/m³]."""
        return self.density * self.enthalpy(temp)

    def mean_cp(self, t0: float, t1: float) -> float:
        """∫ c_p dT / (t1 − t0) over [t0, t1] without latent heat [J/(kg K)]."""
        sensible = PiecewiseQuadratic(self.cp)
        return float((sensible(t1) - sensible(t0)) / (t1 - t0))


def material(params: Mapping[str, Any]) -> Material:
    """The material of a ``[model]`` table (keys of :data:`hybrid.solvers.laser.PARAMS`); ConfigError on bad keys."""
    ts, tl = float(params["solidus"]), float(params["liquidus"])
    if not tl > ts:
        raise ConfigError(f"must be > model.solidus = {ts:g} K (got {tl:g} K)", key="model.liquidus")
    cp = _merge(
        parse_curve(params["cp_solid"], "model.cp_solid"), parse_curve(params["cp_liquid"], "model.cp_liquid"), ts, tl
    )
    k = _merge(
        parse_curve(params["k_solid"], "model.k_solid"), parse_curve(params["k_liquid"], "model.k_liquid"), ts, tl
    )
    lf = float(params["latent_heat"])
    constant = lf == 0.0 and np.ptp(cp[:, 1]) == 0.0 and np.ptp(k[:, 1]) == 0.0
    return Material(
        density=float(params["density"]),
        enthalpy=PiecewiseQuadratic(cp, lf, (ts, tl)),
        kirchhoff=PiecewiseQuadratic(k),
        conductivity=k,
        cp=cp,
        solidus=ts,
        liquidus=tl,
        latent_heat=lf,
        constant=bool(constant),
    )
