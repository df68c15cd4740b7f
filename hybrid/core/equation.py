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


# Optional: ``state_bounds: Mapping[str, tuple[float, float]]`` gives per field the range a sound state stays in; the
# run loop stops a run whose field leaves it (a divergence caught while the values are still finite).
# Optional: ``check_state(state) -> str | None`` names what makes a finite state unphysical (for example a negative
# film thickness), or returns None. The run loop calls it with its NaN/inf check and stops the run on a message.
