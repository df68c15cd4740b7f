"""The Equation protocol: what a time integrator needs to know about a model.

An equation says how to evaluate the full tendency dφ/dt of each field (explicit part) and, optionally, a stiff
linear operator L that an IMEX stepper treats implicitly, in one of two ways:

- its Fourier symbol (:meth:`Equation.linear_symbol`, the default): real, ≤ 0, on the ``rfftn`` layout of
  ``grid.spectral_grid()``, so it serves periodic grids and grids with no-flux axes alike;
- its own implicit solve (:class:`ImplicitSolve`, optional): ``implicit_solve(field, b, dt)`` returns x with
  (1 − dt L) x = b, for operators without a Fourier symbol (a finite-element heat equation, variable
  coefficients). It takes precedence over the symbol.

Physics lives in the solvers; the core only sees this interface (as jax-cfd separates an equation from its stepper).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from hybrid.core.backend import Array, Backend
from hybrid.core.grid import Grid
from hybrid.core.state import State


class Equation(Protocol):
    """A time-dependent model dφ/dt = R(φ), with an optional stiff linear part L for IMEX.

    Attributes:
        grid: the spatial grid.
        backend: arrays' backend/device.
        terms: the bound term providers by term name.
        evolved_fields: names of the fields that the equation advances.
    """

    evolved_fields: tuple[str, ...]
    grid: Grid
    backend: Backend
    terms: Mapping[str, Any]

    def rhs(self, state: State) -> dict[str, Array]:
        """Full tendency dφ/dt for every evolved field [field unit / time unit]."""
        ...

    def linear_symbol(self, field: str) -> Array | None:
        """Symbol of the stiff linear part L of dφ/dt on the rfftn layout of ``grid.spectral_grid()`` (real, ≤ 0),
        or None if none.

        IMEX steps solve (1 − dt L) φ^{n+1} = φ^n + dt (R(φ^n) − L φ^n) in Fourier space.
        """
        ...


@runtime_checkable
class ImplicitSolve(Protocol):
    """An equation that solves its stiff linear part itself (instead of, or besides, a Fourier symbol)."""

    def implicit_solve(self, field: str, b: Array, dt: float) -> Array | None:
        """x with (1 − dt L) x = b for the stiff part L of dφ/dt of ``field`` [field unit]; None: no stiff part.

        An IMEX step calls it with b = dt R(φ^n) and adds x to φ^n, which is the same as solving
        (1 − dt L) φ^{n+1} = φ^n + dt (R(φ^n) − L φ^n). ``dt`` is fixed during a run: an implementation may factor
        (1 − dt L) once and reuse it.
        """
        ...


# ---------------------------------------------------------------------------------------------------- model hooks
# What the run loop and the steppers call when an equation has it (checked once, when they are built).


@runtime_checkable
class FusedExplicitStep(Protocol):
    """An equation with a fused explicit Euler kernel: φ^{n+1} from φ^n in one pass over memory."""

    def explicit_step(self, state: State, dt: float) -> dict[str, Array]:
        """The evolved fields after one explicit Euler step of ``dt`` (the same update as ``φ + dt rhs(φ)``)."""
        ...


@runtime_checkable
class AfterStep(Protocol):
    """An equation with work after every step (e.g. grain tracking and order-parameter reassignment)."""

    def after_step(self, state: State) -> State:
        """The state the next step starts from (the run loop calls it after each stepper call)."""
        ...


@runtime_checkable
class StateBounds(Protocol):
    """An equation that states the range a sound state stays in, per field: a run whose field leaves it stops
    (a divergence caught while the values are still finite)."""

    @property
    def state_bounds(self) -> Mapping[str, tuple[float, float]]: ...


@runtime_checkable
class CheckState(Protocol):
    """An equation that knows what makes a finite state unphysical (e.g. a negative film thickness)."""

    def check_state(self, state: State) -> str | None:
        """Why ``state`` is unphysical, or None; called with the NaN/inf check, a message stops the run."""
        ...


@runtime_checkable
class FrameOutput(Protocol):
    """An equation that derives output at every frame (fields such as grain labels, rows of tables)."""

    def frame_output(self, state: State) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """(derived fields {name: array}, table rows {table path: {column: values}}) of the frame's state; a field
        named ``patch/<name>`` is saved under ``/patch`` (a sub-domain that moves with the model)."""
        ...


@runtime_checkable
class DefaultOutputFields(Protocol):
    """An equation that names the fields saved when ``output.fields`` is empty (e.g. grain labels, not η)."""

    @property
    def default_output_fields(self) -> tuple[str, ...]: ...
