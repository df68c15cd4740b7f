"""hybrid: couple direct numerical simulation of continuum materials models with trained neural networks.

Public API::

    sim = hybrid.load_case("cases/atg_film.toml", overrides={"time.steps": 1000})
    sim.run()                                   # or: for _ in range(n): sim.step()
    rho = hybrid.load_provider("elastic", "fem", case="cases/atg_film.toml")(h)
    hybrid.compare("cases/atg_film.toml", term="elastic", providers=("fem", "linear"))

The names are imported on first use, so ``import hybrid`` (and ``hybrid --help``) stays fast; the solvers, numba and
torch load with the first of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hybrid.cases import load_case, load_provider, resolve_case
    from hybrid.core.backend import Backend
    from hybrid.core.grid import Grid
    from hybrid.core.simulation import Simulation, SimulationBlowUp
    from hybrid.core.state import State
    from hybrid.core.terms import Term, TermProvider
    from hybrid.couplers.compare import compare

_LAZY = {
    "Backend": "hybrid.core.backend",
    "Grid": "hybrid.core.grid",
    "Simulation": "hybrid.core.simulation",
    "SimulationBlowUp": "hybrid.core.simulation",
    "State": "hybrid.core.state",
    "Term": "hybrid.core.terms",
    "TermProvider": "hybrid.core.terms",
    "compare": "hybrid.couplers.compare",
    "load_case": "hybrid.cases",
    "load_provider": "hybrid.cases",
    "resolve_case": "hybrid.cases",
}

__all__ = [
    "Backend",
    "Grid",
    "Simulation",
    "SimulationBlowUp",
    "State",
    "Term",
    "TermProvider",
    "__version__",
    "compare",
    "load_case",
    "load_provider",
    "resolve_case",
]


_SUBPACKAGES = frozenset({"cases", "cli", "core", "couplers", "models", "solvers"})


def __getattr__(name: str) -> Any:
    """Import a public name (or a subpackage, e.g. ``hybrid.cases``) on first access (PEP 562)."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"hybrid.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hybrid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
