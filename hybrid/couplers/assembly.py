"""Assembling a Simulation or a term provider from a case file, via the registries (public as :mod:`hybrid.cases`).

This sits in ``couplers`` so that the couplers that build simulations from a case (``hybrid compare``, trajectory
generation) use it without importing the top layer; :mod:`hybrid.cases` re-exports its public names.

A case file (TOML) has the fixed top-level tables ``[case] [grid] [model] [initial] [terms.NAME] [time] [output]``
(docs/architecture.md), and the optional ``[stepper]`` (whole-model NN surrogate steppers,
:mod:`hybrid.couplers.surrogate`;
default ``provider = "dns"``: the ``[time]`` integrator). Validation is schema-driven: the ``[case]`` table is checked
first to learn the model, then the whole file is checked against the schema assembled from that model's
registration (its ``[model]`` keys, initial condition kinds and terms) and from the providers registered for each
term and for the stepper. Every error names the file, the
dotted key and what is allowed. The fully resolved case (every default filled in) is what outputs and checkpoints
store, so a run can be reproduced from its output alone.

Paths in a case file (``initial.path``, weights) are relative to the case file; ``output.path`` is relative to the
working directory (default ``<case.name>.h5``).

An override replaces the file's keys it contradicts: ``time.steps`` the file's ``time.end`` (and the reverse, any
group of keys of which at most one may be given), ``initial.kind`` or ``terms.<t>.provider`` the keys the new
variant does not take (logged). Before anything runs, ``time.dt`` is compared with the model's stability limit for
the integrator and grid (:attr:`ModelSpec.stability_limit`) and refused beyond it unless ``time.allow_unstable``;
any failure while building from the case is a :class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import hybrid.couplers
import hybrid.solvers  # noqa: F401  (registers models and DNS providers)
from hybrid.core.backend import BACKENDS, Backend
from hybrid.core.config import (
    ConfigError,
    Option,
    Table,
    Tagged,
    apply_overrides,
    describe,
    drop_none,
    dumps_toml,
    read_document,
    validate,
)
from hybrid.core.grid import Grid
from hybrid.core.integrators import INTEGRATORS, make_stepper
from hybrid.core.provenance import hybrid_version
from hybrid.core.registry import MODELS, PROVIDERS, Context, ModelSpec, get_model, get_provider
from hybrid.core.simulation import OutputSpec, Simulation
from hybrid.core.state import State

log = logging.getLogger(__name__)

STEPPER_TERM = "stepper"
"""Pseudo-term of the stepper providers (``[stepper] provider``): "dns" or a registered surrogate."""

TOP_LEVEL = ("case", "grid", "model", "initial", "terms", "time", "output", "stepper")

MAX_STEPS = 10**9
"""Most steps a case may ask for: 10⁹ steps take days even at 100 µs a step, so a larger count is a slip in
``time.dt`` or ``time.end`` (e.g. a unit)."""

MAX_POINTS_1D = 2**22
"""Most points of a 1D grid (4 194 304: a 4 mm film at dx = 1 nm; fields, FFTs and the FEM mesh grow with it)."""

MAX_POINTS_2D = 2**28
"""Most points of a 2D grid (16384²): one float64 field takes 2 GiB, a grain-growth state of Q = 12 order
parameters with its step buffers about 50 GiB, the memory of one large machine."""

_LMIN, _LMAX = 1e-6, 1e9  # range of domain lengths and mesh sizes [model length unit]


def case_table() -> Table:
    """Schema of ``[case]``; ``model`` is one of the models registered now (a model registered later counts too)."""
    return Table(
        {
            "name": Option(
                "str",
                None,
                "run name (default: the case file's stem)",
                pattern=r"[^./\\\s][^/\\]*",
                pattern_doc="a non-empty name that does not start with '.' or a space and holds no '/' or '\\'",
            ),
            "model": Option("str", doc="physical model", choices=tuple(sorted(MODELS)) or None),
            "seed": Option("int", 0, "seed of every random draw (initial roughness, ...)", min=0),
            "backend": Option(
                "str", "numpy", "array backend (numpy: numba kernels on CPU; torch: CPU or CUDA)", choices=BACKENDS
            ),
            "device": Option("str", "cpu", "torch device: cpu, cuda, cuda:N (numpy: cpu only)"),
        }
    )


def grid_table(ndim: int) -> Table:
    """Schema of ``[grid]`` for a model of ``ndim`` dimensions."""
    if ndim == 1:
        return Table(
            {
                "length": Option("float", None, "domain length L [model length unit]", min=_LMIN, max=_LMAX),
                "lengths": Option("list[float]", None, "[L] (alternative to length)", length=1, min=_LMIN, max=_LMAX),
                "points": Option("int", None, "number of grid points N", min=4, max=MAX_POINTS_1D),
                "shape": Option("list[int]", None, "[N] (alternative to points)", min=4, max=MAX_POINTS_1D, length=1),
            },
            exclusive=(("length", "lengths"), ("points", "shape")),
            require_one=(("length", "lengths"), ("points", "shape")),
        )
    return Table(
        {
            "lengths": Option(
                "list[float]", doc="[Lx, Ly] domain lengths [model length unit]", length=2, min=_LMIN, max=_LMAX
            ),
            "shape": Option(
                "list[int]", None, f"[nx, ny] grid points (nx·ny at most {MAX_POINTS_2D})", min=4, max=2**15, length=2
            ),
            "spacing": Option(
                "float",
                None,
                "grid spacing on both axes, instead of shape [model length unit]: N = L/spacing points on a periodic "
                "axis, L/spacing + 1 on a bounded one (nodes on both walls)",
                min=_LMIN,
                max=_LMAX,
            ),
        },
        exclusive=(("shape", "spacing"),),
        require_one=(("shape", "spacing"),),
    )


TIME = Table(
    {
        "integrator": Option("str", "euler", "time stepper", choices=tuple(INTEGRATORS)),
        "dt": Option(
            "float",
            doc="time step [model time unit] (at most the model's stability limit)",
            min=0.0,
            min_exclusive=True,
        ),
        "steps": Option("int", None, "number of steps", min=0, max=MAX_STEPS),
        "end": Option("float", None, f"end time [model time unit] (steps = end / dt, at most {MAX_STEPS})", min=0.0),
        "allow_unstable": Option(
            "bool",
            False,
            "run even with time.dt beyond the model's stability limit (to study a blow-up; a warning is logged)",
        ),
    },
    exclusive=(("steps", "end"),),
    require_one=(("steps", "end"),),
)

OUTPUT = Table(
    {
        "path": Option("str", None, "HDF5 results file (default: <case.name>.h5 in the working directory)"),
        "every": Option("int", 100, "steps between saved frames", min=1),
        "spacing": Option(
            "float",
            None,
            "spacing of the cell-centred samples of fields a model saves on a grid of its own (laser: fields/T) "
            "[model length unit]; default: the model's",
            min=_LMIN,
            max=_LMAX,
        ),
        "fields": Option("list[str]", [], "fields to save (default: all)"),
        "terms": Option("list[str]", [], "terms whose values to save as /terms/<name> (one extra call per frame)"),
        "checkpoint_every": Option("int", 0, "steps between checkpoints (0: only at the end)", min=0),
        "check_every": Option(
            "int", 10, "steps between NaN/inf and physical-state checks (always at frames and checkpoints)", min=1
        ),
    }
)


def term_schema(term: str, default: str | None = None) -> Tagged:
    """Schema of ``[terms.<term>]``: ``provider`` = one registered name, plus that provider's options."""
    return Tagged(
        "provider",
        {n: p.options for n, p in PROVIDERS.get(term, {}).items()},
        default=default,
        doc=f"provider of term {term!r}",
    )


def case_schema(spec: ModelSpec) -> Table:
    """The full schema of a case file for model ``spec``."""
    return Table(
        {
            "case": case_table(),
            "grid": grid_table(spec.grid_ndim),
            "model": spec.params,
            "initial": spec.initial,
            "terms": Table({t: term_schema(t, d) for t, d in spec.terms.items()}),
            "time": TIME,
            "output": OUTPUT,
            "stepper": term_schema(STEPPER_TERM, "dns"),
        }
    )


@dataclass
class ResolvedCase:
    """A validated case: the resolved tables, the context to build things from, and the TOML text."""

    data: dict[str, Any]
    spec: ModelSpec
    context: Context
    file: str | None

    @property
    def text(self) -> str:
        return dumps_toml(self.data)


def resolve_case(
    case: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[str] | None = None
) -> ResolvedCase:
    """Load, override and validate a case; fill every default (also grid-dependent ones)."""
    doc = read_document(case, "case")
    raw, file, case_dir, stem = doc.tables, doc.file, doc.folder, doc.stem
    data = override_case(raw, overrides, file=file)
    spec = get_model(data["case"]["model"])
    schema = case_schema(spec)
    resolved = validate(data, schema, file=file)
    resolved = drop_none(resolved)
    resolved["case"].setdefault("name", stem)
    grid = make_grid(resolved["grid"], spec, file)
    params = dict(resolved["model"])
    if spec.finalize_params is not None:
        with _assembling(file, "model"):
            params = spec.finalize_params(grid, params)
    resolved["model"] = params
    t = resolved["time"]
    if "end" in t:
        t["steps"] = _steps_of(t["end"], t["dt"], file)
        del t["end"]
    _check_stability(spec, grid, [k for k in resolved["grid"] if k != "spacing"], params, t, file)
    out = resolved["output"]
    out.setdefault("path", f"{resolved['case']['name']}.h5")
    for name in out["terms"]:
        if name not in spec.terms:
            raise ConfigError(
                f"unknown term {name!r}; model {spec.name!r} has {', '.join(spec.terms)}", key="output.terms", file=file
            )
    _check_step_quantum(resolved, spec, grid, params, case_dir, file)
    c = resolved["case"]
    try:
        backend = Backend(c["backend"], c["device"])
    except ValueError as err:
        raise ConfigError(str(err), key="case.device", file=file) from None
    ctx = Context(
        grid=grid, backend=backend, params=params, seed=c["seed"], case_dir=case_dir, model=spec.name, output=out
    )
    return ResolvedCase(resolved, spec, ctx, file)


def override_case(
    raw: Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[str] | None, *, file: str | None = None
) -> dict[str, Any]:
    """A copy of case document ``raw`` with ``overrides`` applied against its model's schema.

    An override replaces the keys of ``raw`` it contradicts (``time.steps`` the file's ``time.end``, a switched
    ``initial.kind`` or ``terms.<t>.provider`` the keys the new variant does not take; see
    :func:`hybrid.core.config.apply_overrides`). The ``[case]`` table and the top-level table names are checked.
    """
    plain = apply_overrides(raw, overrides or {}, file=file)
    unknown = [k for k in plain if k not in TOP_LEVEL]
    if unknown:
        raise ConfigError(f"unknown table; allowed: {', '.join(TOP_LEVEL)}", key=unknown[0], file=file)
    head = validate({"case": plain.get("case", {})}, Table({"case": case_table()}), file=file)["case"]
    schema = case_schema(get_model(head["model"]))
    return apply_overrides(raw, overrides or {}, file=file, schema=schema)


def _steps_of(end: float, dt: float, file: str | None) -> int:
    """``time.end / time.dt`` as a whole number of steps (at most :data:`MAX_STEPS`)."""
    ratio = end / dt  # both finite, dt > 0: at worst inf, never an exception
    if not ratio <= MAX_STEPS:
        raise ConfigError(
            f"time.end / time.dt = {end:g} / {dt:g} = {ratio:.4g} steps; at most {MAX_STEPS:.0e} steps are allowed "
            "(raise time.dt or lower time.end)",
            key="time.end",
            file=file,
        )
    steps = round(ratio)
    if not math.isclose(steps * dt, end, rel_tol=1e-9, abs_tol=1e-12):
        raise ConfigError(f"time.end = {end} is not a whole number of steps time.dt = {dt}", key="time.end", file=file)
    return steps


def _check_stability(
    spec: ModelSpec,
    grid: Grid,
    grid_keys: Sequence[str],
    params: Mapping[str, Any],
    time: Mapping[str, Any],
    file: str | None,
) -> None:
    """Refuse a ``time.dt`` beyond the model's stability limit for the integrator and grid (a run that would blow up).

    A run of no steps cannot become unstable and is not checked; ``time.allow_unstable`` turns the refusal into a
    warning.
    """
    if spec.stability_limit is None or time["steps"] == 0:
        return
    # imex2 has imex's limits: its implicit part is A-stable, and Heun's real stability interval is explicit Euler's
    integrator = "imex" if time["integrator"] == "imex2" else time["integrator"]
    with _assembling(file, "time.dt"):
        limit = spec.stability_limit(integrator, grid, params)
    if limit is None:
        return
    dt_max, why = limit
    if time["dt"] > dt_max * (1.0 + 1e-9):
        spacing = ", ".join(f"{a} = {d:g}" for a, d in zip(("dx", "dy"), grid.spacing, strict=False))
        keys = " and ".join(f"grid.{k}" for k in grid_keys)
        text = (
            f"dt = {time['dt']:g} is beyond the stability limit {dt_max:.4g} of time.integrator = "
            f"{time['integrator']!r} on this grid ({spacing} from {keys}): {why}"
        )
        if time["allow_unstable"]:
            log.warning("%s: time.dt: %s; running anyway (time.allow_unstable = true)", file or "case", text)
            return
        raise ConfigError(
            f"{text}; lower time.dt (or set time.allow_unstable = true to run anyway)", key="time.dt", file=file
        )


@contextlib.contextmanager
def _assembling(file: str | None, key: str) -> Iterator[None]:
    """Any failure while building from the case (a model's or provider's own check, arithmetic on extreme values,
    a frame past the end of a file, an allocation too large) becomes a ConfigError naming the file and ``key``
    (a ConfigError keeps its own key)."""
    try:
        yield
    except ConfigError as err:
        if err.file or not file:
            raise
        raise ConfigError(err.message, key=err.key, file=file) from None
    except MemoryError:
        raise ConfigError(
            "not enough memory to build it; reduce the grid (grid.points, grid.shape) or the number of fields",
            key=key,
            file=file,
        ) from None
    except (ArithmeticError, IndexError, ValueError) as err:
        raise ConfigError(
            f"cannot be built from these values: {err} ({type(err).__name__})", key=key, file=file
        ) from None


def _check_step_quantum(
    resolved: Mapping[str, Any],
    spec: ModelSpec,
    grid: Grid,
    params: Mapping[str, Any],
    case_dir: Path,
    file: str | None,
) -> None:
    """A stepper that advances several steps a call (its provider's ``step_quantum``, e.g. a surrogate's window)
    needs steps, frames and checkpoints on multiples of it."""
    options = dict(resolved.get(STEPPER_TERM) or {})
    provider = PROVIDERS.get(STEPPER_TERM, {}).get(options.pop("provider", "dns"))
    if provider is None or provider.step_quantum is None:
        return
    ctx = Context(grid=grid, backend=Backend("numpy"), params=params, case_dir=case_dir, model=spec.name)
    with _assembling(file, STEPPER_TERM):
        quantum = provider.step_quantum(ctx, options)
    for key, value in (
        ("time.steps", resolved["time"]["steps"]),
        ("output.every", resolved["output"]["every"]),
        ("output.checkpoint_every", resolved["output"]["checkpoint_every"]),
    ):
        if value % quantum:
            raise ConfigError(
                f"{value} is not a multiple of the surrogate's window of {quantum} steps "
                f"({STEPPER_TERM}.provider = {provider.name!r}, {STEPPER_TERM}.weights)",
                key=key,
                file=file,
            )


def make_grid(g: Mapping[str, Any], spec: ModelSpec, file: str | None) -> Grid:
    """The Grid of a resolved ``[grid]`` table for ``spec``'s model (its dimensions and periodic axes)."""
    if spec.grid_ndim == 1:
        length = g["lengths"][0] if "lengths" in g else g["length"]
        points = g["shape"][0] if "shape" in g else g["points"]
        with _assembling(file, "grid"):
            return Grid((length,), (points,), spec.periodic)
    nx, ny = g["shape"] if "shape" in g else _shape_of_spacing(g["lengths"], g["spacing"], spec.periodic, file)
    if nx * ny > MAX_POINTS_2D:
        source = "" if "shape" in g else " from grid.lengths / grid.spacing"
        raise ConfigError(
            f"{nx} × {ny} = {nx * ny} points{source}; at most {MAX_POINTS_2D} (16384²: one float64 field takes 2 GiB)",
            key="grid.shape" if "shape" in g else "grid.spacing",
            file=file,
        )
    with _assembling(file, "grid"):
        return Grid(tuple(g["lengths"]), (nx, ny), spec.periodic)


def _shape_of_spacing(
    lengths: Sequence[float], spacing: float, periodic: Sequence[bool], file: str | None
) -> tuple[int, int]:
    """Points per axis for ``grid.spacing``: L/h on a periodic axis, L/h + 1 on a bounded one (L/h whole)."""
    shape = []
    for axis, length, wraps in zip("xy", lengths, periodic, strict=True):
        cells = length / spacing
        if abs(cells - round(cells)) > 1e-6 * max(cells, 1.0) or round(cells) < 3:
            raise ConfigError(
                f"L{axis} / spacing = {length:g} / {spacing:g} = {cells:.6g} is not a whole number of at least 3 "
                "cells; give a spacing that divides grid.lengths, or grid.shape",
                key="grid.spacing",
                file=file,
            )
        shape.append(round(cells) + (0 if wraps else 1))
    return shape[0], shape[1]


def build_provider(rc: ResolvedCase, term: str) -> Any:
    """Instantiate the provider chosen for ``term`` in a resolved case."""
    opts = dict(rc.data["terms"][term])
    name = opts.pop("provider")
    with _assembling(rc.file, f"terms.{term}"):  # a provider's own checks (weights, device) name their key
        return get_provider(term, name).build(rc.context, opts)


def build_simulation(rc: ResolvedCase, *, out: str | Path | None = None, progress: bool = False) -> Simulation:
    """A ready-to-run Simulation for a resolved case (``out`` overrides ``output.path``)."""
    ctx, spec = rc.context, rc.spec
    if out is not None:
        rc.data["output"]["path"] = str(out)
    terms = {t: build_provider(rc, t) for t in spec.terms}
    with _assembling(rc.file, "model"):
        equation = spec.build(ctx, terms)
    with _assembling(rc.file, "initial"):
        init = spec.initial_state(ctx, rc.data["initial"])
        state = State({k: ctx.backend.asarray(v) for k, v in init.items()}, 0.0, 0, ctx.backend)
    t = rc.data["time"]
    with _assembling(rc.file, "time"):
        stepper = make_stepper(t["integrator"], equation, t["dt"])
    options = dict(rc.data.get(STEPPER_TERM) or {"provider": "dns"})
    with _assembling(rc.file, STEPPER_TERM):
        factory = get_provider(STEPPER_TERM, options.pop("provider")).build(ctx, options)
        stepper = factory(equation, stepper)
    o = rc.data["output"]
    output = OutputSpec(
        path=Path(o["path"]),
        every=o["every"],
        fields=tuple(o["fields"]),
        terms=tuple(o["terms"]),
        checkpoint_every=o["checkpoint_every"],
    )
    return Simulation(
        equation,
        stepper,
        state,
        t["steps"],
        output,
        case_text=rc.text,
        attrs={"hybrid_version": hybrid_version(), "model": spec.name},
        rng=ctx.rng(1),
        check_every=o["check_every"],
        progress=progress,
    )


def load_case(
    case: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    out: str | Path | None = None,
    progress: bool = False,
) -> Simulation:
    """Build a Simulation from a case file (or a dict of its tables) with dotted-key overrides.

    Example: ``hybrid.load_case("cases/atg_film.toml", overrides={"time.steps": 1000}).run()``.
    """
    return build_simulation(resolve_case(case, overrides), out=out, progress=progress)


def load_provider(
    term: str,
    provider: str,
    *,
    case: str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    **options: Any,
) -> Any:
    """A term provider usable from any code: ``rho = load_provider("elastic", "fem", case=...)(h)``.

    The provider is configured by the case (its grid and ``[model]`` parameters) with ``overrides``; without a case,
    the model's defaults are used and ``overrides`` must give the grid (e.g. ``{"grid.length": 100.0,
    "grid.points": 128}``). ``options`` are provider options (as in ``[terms.<term>]``). The returned Term accepts a
    State or bare arrays (numpy or torch) of the model's input fields, e.g. h of shape (N,).
    """
    get_provider(term, provider)  # clear error for an unknown term/provider
    if case is None:
        owner = next((m for m in MODELS.values() if term in m.terms), None)
        if owner is None:
            raise KeyError(f"no registered model uses term {term!r}")
        case = {"case": {"model": owner.name}, "time": {"dt": 1.0, "steps": 0}}
    table = {f"terms.{term}.provider": provider, **{f"terms.{term}.{k}": v for k, v in options.items()}}
    ov: dict[str, Any] = {}
    if overrides:
        from hybrid.core.config import parse_override

        items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(s) for s in overrides)
        ov.update(dict(items))
    ov.update(table)
    rc = resolve_case(case, ov)
    return build_provider(rc, term)


def example_state(rc: ResolvedCase) -> dict[str, np.ndarray]:
    """The initial fields of a resolved case (numpy)."""
    with _assembling(rc.file, "initial"):
        return rc.spec.initial_state(rc.context, rc.data["initial"])


def case_reference() -> str:
    """Markdown reference of every registered model's case file (docs/case-reference.md, tools/update_readme.py)."""
    parts = []
    for name in sorted(MODELS):
        spec = MODELS[name]
        parts.append(f'### `model = "{name}"` — {spec.doc}\n\n{describe(case_schema(spec))}')
    return "\n\n".join(parts) + "\n"
