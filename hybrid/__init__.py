"""hybrid: couple direct numerical simulation of continuum materials models with trained neural networks.

Public API::

    sim = hybrid.load_case("cases/atg_film.toml", overrides={"time.steps": 1000})
    sim.run()                                   # or: for _ in range(n): sim.step()
    rho = hybrid.load_provider("elastic", "fem", case="cases/atg_film.toml")(h)
    hybrid.compare("cases/atg_film.toml", term="elastic", providers=("fem", "linear"))
"""

from __future__ import annotations

__version__ = "0.1.0"

from hybrid.cases import load_case, load_provider, resolve_case
from hybrid.core.backend import Backend
from hybrid.core.grid import Grid
from hybrid.core.simulation import Simulation, SimulationBlowUp
from hybrid.core.state import State
from hybrid.core.terms import Term, TermProvider
from hybrid.couplers.compare import compare

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
