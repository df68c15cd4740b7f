"""Name -> model / term provider / integrator registries.

Solvers and couplers fill these when their modules are imported, so adding a model or a provider touches its own
module and nothing here. Each entry carries the schema of its case-file options, which is how case files are
validated key by key and how the README's case-file reference is generated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.core.backend import Backend
from hybrid.core.config import Table, Tagged
from hybrid.core.grid import Grid


@dataclass(frozen=True)
class Context:
    """What a model, a provider or an initial condition is built from.

    Attributes:
        grid: the simulation grid.
        backend: array backend and device.
        params: resolved ``[model]`` table (physical parameters in the units of docs/physics.md).
        seed: case seed; draw randomness only through :meth:`rng`.
        case_dir: directory of the case file (relative paths in options resolve against it).
        model: model name.
        output: resolved ``[output]`` table (e.g. ``spacing`` for a model that samples its fields itself).
    """

    grid: Grid
    backend: Backend
    params: Mapping[str, Any]
    seed: int = 0
    case_dir: Path = field(default_factory=Path.cwd)
    model: str = ""
    output: Mapping[str, Any] = field(default_factory=dict)

    def rng(self, stream: int = 0) -> np.random.Generator:
        """An independent, reproducible generator for purpose ``stream`` (0: initial condition, ...)."""
        return np.random.default_rng([self.seed, stream])

    def resolve_path(self, path: str | Path) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.case_dir / p


@dataclass(frozen=True)
class ModelSpec:
    """A registered physical model.

    Attributes:
        name: ``case.model`` value.
        build: (context, terms) -> equation object (see :mod:`hybrid.core.equation`).
        params: schema of the ``[model]`` table.
        initial: schema of the ``[initial]`` table (tagged on ``kind``).
        initial_state: (context, resolved [initial]) -> dict of numpy fields.
        terms: term name -> default provider name.
        finalize_params: fills defaults that depend on other values (e.g. a depth = domain length).
        grid_ndim: 1 or 2.
        doc: one line.
        plot: (results .h5, output dir) -> PNG paths written at the end of `hybrid run`.
        units: unit of each field and term (by name), of ``"time"`` and of the grid coordinate ``"x"`` (and
            ``"y"``), as written to the results file's ``units`` attributes and on plot axes ("1": dimensionless).
        step_quantum: the ``[model]`` key (an int, in steps) on whose multiples the model's ``after_step`` hooks
            change the state (e.g. grain growth's ``reassign_every``): whole-model surrogates are trained on and
            jump between such states. None: every step is alike (quantum 1).
        periodic: per coordinate axis (x, y), periodic (True) or no-flux walls (False); empty: all periodic.
        stability_limit: (integrator name, grid, resolved ``[model]``) -> (largest stable ``time.dt`` [time unit],
            the formula it comes from with its values), or ``None`` where the integrator has no known limit; a case
            with a larger ``time.dt`` is refused before it runs.
        frame_terms: terms whose values the model's ``frame_output`` saves itself (e.g. the laser's patch as
            ``/patch/T``): an A/B comparison reads them there instead of asking for a second call per frame.
        image_origin: where images of the model's 2D fields put their first row: ``"lower"`` (y up from the first
            row) or ``"upper"`` (the first row on top, e.g. depth below a surface).
    """

    name: str
    build: Callable[..., Any]
    params: Table
    initial: Tagged
    initial_state: Callable[[Context, Mapping[str, Any]], dict[str, np.ndarray]]
    terms: Mapping[str, str]
    finalize_params: Callable[[Grid, dict[str, Any]], dict[str, Any]] | None = None
    grid_ndim: int = 1
    doc: str = ""
    plot: Callable[[Path, Path], list[Path]] | None = None
    units: Mapping[str, str] = field(default_factory=dict)
    step_quantum: str | None = None
    periodic: tuple[bool, ...] = ()
    stability_limit: Callable[[str, Grid, Mapping[str, Any]], tuple[float, str] | None] | None = None
    frame_terms: tuple[str, ...] = ()
    image_origin: str = "lower"

    def unit(self, name: str) -> str:
        """Unit of a field, term, ``"time"`` or coordinate; ``""`` where the model does not state one."""
        return self.units.get(name, "")


@dataclass(frozen=True)
class ProviderSpec:
    """A registered provider of a term.

    Attributes:
        term: term name (e.g. "elastic").
        name: provider name (e.g. "fem").
        build: (context, resolved options) -> Term.
        options: schema of the options in ``[terms.<term>]`` besides ``provider``.
        doc: one line.
        step_quantum: (context, resolved options) -> the steps one call advances (a surrogate stepper's window);
            a case's ``time.steps``, ``output.every`` and ``output.checkpoint_every`` must be multiples of it.
            None: 1.
    """

    term: str
    name: str
    build: Callable[[Context, Mapping[str, Any]], Any]
    options: Table
    doc: str = ""
    step_quantum: Callable[[Context, Mapping[str, Any]], int] | None = None


MODELS: dict[str, ModelSpec] = {}
PROVIDERS: dict[str, dict[str, ProviderSpec]] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    MODELS[spec.name] = spec
    return spec


def register_provider(
    term: str,
    name: str,
    *,
    options: Table | None = None,
    doc: str = "",
    step_quantum: Callable[[Context, Mapping[str, Any]], int] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``build(context, options) -> Term`` as provider ``name`` of ``term``."""

    def deco(build: Callable[..., Any]) -> Callable[..., Any]:
        spec = ProviderSpec(term, name, build, options or Table({}), doc, step_quantum)
        PROVIDERS.setdefault(term, {})[name] = spec
        return build

    return deco


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None


def get_provider(term: str, name: str) -> ProviderSpec:
    if term not in PROVIDERS:
        raise KeyError(f"unknown term {term!r}; available: {', '.join(sorted(PROVIDERS))}")
    try:
        return PROVIDERS[term][name]
    except KeyError:
        raise KeyError(
            f"unknown provider {name!r} for term {term!r}; available: {', '.join(sorted(PROVIDERS[term]))}"
        ) from None


def split_options(term: str, provider: str, table: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split a ``[terms.<term>]`` table into what ``provider`` accepts (with ``provider`` set) and the dropped keys.

    Used when a run switches the provider of a term (``--set terms.elastic.provider=fem``, ``hybrid compare``) so
    that options of the previous provider (e.g. a monitor's ``tolerance``) do not fail validation. An unknown
    provider keeps everything (validation then names what is allowed).
    """
    spec = PROVIDERS.get(term, {}).get(provider)
    if spec is None:
        return {**table, "provider": provider}, []
    kept = {k: v for k, v in table.items() if k in spec.options.entries}
    dropped = [k for k in table if k != "provider" and k not in spec.options.entries]
    return {"provider": provider, **kept}, dropped
