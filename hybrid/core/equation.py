"""The Equation protocol: what a time integrator needs to know about a model.

An equation says how to evaluate the full tendency dφ/dt of each field (explicit part) and, optionally, the
Fourier symbol of a stiff linear operator L (real, ≤ 0) that an IMEX stepper treats implicitly. Physics lives in
the solvers; the core only sees this interface (as jax-cfd separates an equation from its stepper).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

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
        """Symbol of the stiff linear part L of dφ/dt on the rfftn layout (real, ≤ 0), or None if none.

        IMEX steps solve (1 − dt L) φ^{n+1} = φ^n + dt (R(φ^n) − L φ^n) in Fourier space.
        """
        ...


# Optional: ``state_bounds: Mapping[str, tuple[float, float]]`` gives per field the range a sound state stays in; the
# run loop stops a run whose field leaves it (a divergence caught while the values are still finite).
# Optional: ``check_state(state) -> str | None`` names what makes a finite state unphysical (for example a negative
# film thickness), or returns None. The run loop calls it with its NaN/inf check and stops the run on a message.
