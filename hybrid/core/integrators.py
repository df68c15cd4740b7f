"""Time steppers. A stepper is made from (equation, dt) and maps a State to the next State.

- ``euler``: explicit Euler, φ^{n+1} = φ^n + dt R(φ^n) (through the equation's ``explicit_step(state, dt)`` when
  it has one: a fused kernel computing the same update in one pass over memory).
- ``imex``: first-order semi-implicit (IMEX) Euler, the stiff linear part L implicit:
  (1 − dt L) φ^{n+1} = φ^n + dt (R − L φ^n), i.e. φ^{n+1} = φ^n + (1 − dt L)^{-1} dt R. By the equation's own
  ``implicit_solve`` where it has one, else in Fourier space, φ̂^{n+1} = φ̂^n + dt R̂ / (1 − dt L̂): one FFT pair per
  field and step (on the even extension of no-flux axes, see :mod:`hybrid.core.grid`). Fields with neither are
  advanced explicitly.
- ``imex2``: second-order IMEX, Crank–Nicolson for L and Heun for the rest (:class:`IMEXHeun`): two right-hand
  sides per step, for models whose stiff part has a Fourier symbol.

Steppers are registered by name so a case file can pick them (``time.integrator``).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from typing import Any

from hybrid.core.equation import Equation, FusedExplicitStep, ImplicitSolve
from hybrid.core.state import State


class Stepper:
    """Base class: ``stepper(state) -> new state``; counts steps and wall seconds.

    Attributes:
        equation: the model.
        dt: time step [time unit].
        steps_per_call: DNS steps one call advances (1 here; surrogate steppers jump more).
    """

    name = ""
    steps_per_call = 1

    def __init__(self, equation: Equation, dt: float) -> None:
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        self.equation = equation
        self.dt = float(dt)
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, state: State) -> State:
        t0 = _time.perf_counter()
        new = self.advance(state)
        self.seconds += _time.perf_counter() - t0
        self.calls += 1
        return new

    def advance(self, state: State) -> State:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {"stepper": self.name, "calls": self.calls, "seconds": self.seconds}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class ExplicitEuler(Stepper):
    """φ^{n+1} = φ^n + dt R(φ^n)."""

    name = "euler"

    def __init__(self, equation: Equation, dt: float) -> None:
        super().__init__(equation, dt)
        self._fused = equation.explicit_step if isinstance(equation, FusedExplicitStep) else None

    def advance(self, state: State) -> State:
        if self._fused is not None:  # a model's fused kernel: reads φ^n and writes φ^{n+1} in one pass
            return state.replace(self._fused(state, self.dt), self.dt)
        tend = self.equation.rhs(state)
        dt = self.dt
        return state.replace({k: v + dt * tend[k] if k in tend else v for k, v in state.fields.items()}, dt)


class _FourierStepper(Stepper):
    """A stepper that treats the stiff linear part in Fourier space, on the spectral grid of the equation's grid."""

    def __init__(self, equation: Equation, dt: float) -> None:
        super().__init__(equation, dt)
        grid = equation.grid
        self._no_flux = grid.no_flux_array_axes
        self._spectral_shape = grid.spectral_grid().shape

    def _forward(self, r: Any, state: State) -> Any:
        """rfftn on the spectral grid (no-flux axes evenly extended)."""
        be = state.backend
        x = be.extend_even(r, self._no_flux) if self._no_flux else r
        return be.rfftn(x, len(self._spectral_shape))

    def _inverse(self, spectrum: Any, state: State) -> Any:
        """irfftn back to the grid (restricted to the physical part of no-flux axes)."""
        x = state.backend.irfftn(spectrum, self._spectral_shape)
        if not self._no_flux:
            return x
        return x[(..., *(slice(0, n) for n in self.equation.grid.shape))]


class IMEXEuler(_FourierStepper):
    """Semi-implicit Euler: stiff linear part implicit (the equation's solve or its symbol), the rest explicit."""

    name = "imex"

    def __init__(self, equation: Equation, dt: float) -> None:
        super().__init__(equation, dt)
        self._factor: dict[str, Any] = {}
        self._solves: dict[str, bool] = {}
        be = equation.backend
        own = isinstance(equation, ImplicitSolve)
        for name in _evolved_fields(equation):
            if own:
                self._solves[name] = True
                continue
            sym = equation.linear_symbol(name)
            if sym is not None:
                self._factor[name] = be.constant(dt / (1.0 - dt * sym))

    def advance(self, state: State) -> State:
        tend = self.equation.rhs(state)
        out = {}
        for k, v in state.fields.items():
            if k not in tend:
                out[k] = v
            elif k in self._solves:
                x = self.equation.implicit_solve(k, self.dt * tend[k], self.dt)  # type: ignore[attr-defined]
                out[k] = v + (self.dt * tend[k] if x is None else x)
            elif k in self._factor:
                out[k] = v + self._spectral(self._factor[k], tend[k], state)
            else:
                out[k] = v + self.dt * tend[k]
        return state.replace(out, self.dt)

    def _spectral(self, factor: Any, r: Any, state: State) -> Any:
        """irfftn(factor · rfftn(r)) on the spectral grid (no-flux axes evenly extended, then restricted)."""
        return self._inverse(factor * self._forward(r, state), state)


class IMEXHeun(_FourierStepper):
    """Second-order IMEX: Crank–Nicolson for the stiff linear part, Heun (explicit trapezoid) for the rest.

    With R = L φ + N(φ) the full right-hand side, a predictor (one IMEX Euler step) and a corrector in Fourier space::

        δ̂* = dt R̂(φ^n) / (1 − dt L̂),                         φ* = φ^n + δ*
        Δ̂  = (dt/2) (R̂(φ^n) + R̂(φ*) − L̂ δ̂*) / (1 − dt L̂/2),  φ^{n+1} = φ^n + Δ

    i.e. (1 − dt L/2) φ^{n+1} = (1 + dt L/2) φ^n + (dt/2) (N(φ^n) + N(φ*)): second order in dt; the linear part's
    amplification (1 + z/2)/(1 − z/2), z = dt L̂, is A-stable, and the explicit part has Heun's stability interval,
    the same as explicit Euler's on the real axis. Two right-hand sides per step (the predictor's at t + dt with the
    same step index, so step-keyed schedules such as a monitor's see two decisions per step). Fields without a
    symbol are advanced by Heun; equations that solve their stiff part themselves (``implicit_solve``) need ``imex``.
    """

    name = "imex2"

    def __init__(self, equation: Equation, dt: float) -> None:
        super().__init__(equation, dt)
        if isinstance(equation, ImplicitSolve):
            raise ValueError(
                f"integrator 'imex2' needs the Fourier symbol of the linear part, but {type(equation).__name__} solves "
                "its stiff part itself: use time.integrator = 'imex'"
            )
        be = equation.backend
        self._symbols: dict[str, tuple[Any, Any, Any]] = {}
        for name in _evolved_fields(equation):
            sym = equation.linear_symbol(name)
            if sym is not None:
                predictor, corrector = dt / (1.0 - dt * sym), (0.5 * dt) / (1.0 - 0.5 * dt * sym)
                self._symbols[name] = (be.constant(predictor), be.constant(corrector), be.constant(sym))

    def advance(self, state: State) -> State:
        dt = self.dt
        r0 = self.equation.rhs(state)
        star, spectra = {}, {}
        for k, v in state.fields.items():
            if k not in r0:
                star[k] = v
            elif k in self._symbols:
                r0_hat = self._forward(r0[k], state)
                delta_hat = self._symbols[k][0] * r0_hat
                spectra[k] = (r0_hat, delta_hat)
                star[k] = v + self._inverse(delta_hat, state)
            else:
                star[k] = v + dt * r0[k]
        r1 = self.equation.rhs(state.replace(star, dt, steps=0))
        out = {}
        for k, v in state.fields.items():
            if k not in r0:
                out[k] = v
            elif k in self._symbols:
                _, corrector, sym = self._symbols[k]
                r0_hat, delta_hat = spectra[k]
                out[k] = v + self._inverse(corrector * (r0_hat + self._forward(r1[k], state) - sym * delta_hat), state)
            else:
                out[k] = v + (0.5 * dt) * (r0[k] + r1[k])
        return state.replace(out, dt)


def _evolved_fields(equation: Equation) -> tuple[str, ...]:
    return tuple(getattr(equation, "evolved_fields", ()))


INTEGRATORS: dict[str, Callable[[Equation, float], Stepper]] = {
    "euler": ExplicitEuler,
    "imex": IMEXEuler,
    "imex2": IMEXHeun,
}


def make_stepper(name: str, equation: Equation, dt: float) -> Stepper:
    """Build the registered stepper ``name`` for ``equation`` with step ``dt``."""
    try:
        cls = INTEGRATORS[name]
    except KeyError:
        raise KeyError(f"unknown integrator {name!r}; available: {', '.join(INTEGRATORS)}") from None
    return cls(equation, dt)
