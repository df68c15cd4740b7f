"""Training data for the ATG term ``elastic``: film profiles labelled with the FEM DNS (``hybrid dataset``).

A *dataset spec* (TOML, schema :data:`DATASET_SPEC`) names a grid, the ``[model]`` parameters and one or more
*families* of film profiles h(x) [nm]. :func:`generate_dataset` draws the profiles, labels every one of them with
:class:`hybrid.solvers.elasticity.FilmElasticitySolver` (the ``fem`` provider's solver: surface elastic energy
density rho [eV/nm³]) and writes one HDF5 file. Work is split into *tasks* (a chunk of ``batch`` random/perlin
profiles, or one ATG trajectory) that run on a dask.distributed cluster (or in-process); every task seeds its own
``numpy.random.Generator`` from ``(dataset.seed, CRC-32 of the family name, task index)``, so the file's arrays
are bitwise identical for any number of workers (only the attrs ``created``/``seconds``/``workers`` differ).

Spec (TOML; every key is validated, errors name the file, the dotted key and what is allowed)::

    [dataset]   name (default: the spec file's stem), seed = 0, description = ""
    [grid]      length (L [nm], required), points (N, required, >= 8); dx = L/N, x_i = i dx
    [model]     the ATG [model] table of docs/physics.md §1 (Ge/Si defaults): young, poisson, misfit and
                substrate_depth (default = grid.length) define the labels; the others drive trajectories
    [labels]    solver = "pcg" (CG preconditioned by a reused LU; the profiles of a random/perlin chunk are
                labelled in order of increasing max slope so that one LU serves many: ~40% cheaper than
                "direct" at N = 100, same labels to ~1e-11) | "direct" (LU per profile) | "auto" (direct for
                random/perlin, pcg for trajectories: the first version's choice, kept so that older specs
                reproduce their files), refine = 1 (FEM element columns per dx)
    [family.NAME]  one table per family (any name; ``[[family]]`` arrays are accepted too, named by an
                optional ``name`` key or "<kind><index>"), with ``kind`` one of:

      kind = "random"   multi-mode roughness  h = mean + A s(x), s = sum_{m=1..M} m^-beta c_m e^{2 pi i m x/L}
                        (c_m complex Gaussian: random amplitudes and phases; beta = 0 is a flat spectrum),
                        s scaled to unit RMS
        count           number of profiles (required)
        batch = 100     profiles per task (also one group)
        mean = [1.0, 8.0]        mean thickness range [nm], uniform
        amplitude = [0.01, 3.0]  RMS roughness range A [nm], log-uniform
        modes = [1, 25]          highest mode M range (integers, uniform, <= N/2)
        exponent = [0.0, 2.0]    spectral exponent beta range, uniform ([0, 0]: flat spectrum)
        max_slope = 1.5          slope cap: A is drawn log-uniformly in [A_lo, min(A_hi, A_cap)], A_cap the RMS
                                 at which max |h'| = max_slope (if A_cap < A_lo, A = A_cap), so the RMS stays in
                                 the range unless the cap forbids it, and there is no pile-up at the cap
        floor = 0.0, negative = "shift"   h >= floor: see below

      kind = "perlin"   fractal gradient noise: sum over octaves o = 0.. of persistence^o * n_o(x), n_o periodic
                        1D Perlin gradient noise (quintic fade, C2) with cells * 2^o lattice cells over L,
                        cells = round(L / wavelength) >= 1, a random offset; s scaled to unit RMS
        count, batch = 100, mean = [1.0, 8.0], amplitude = [0.01, 3.0], max_slope = 1.5, floor, negative
        wavelength = [10.0, 100.0]  base wavelength range [nm], log-uniform
        octaves = 4                  number of octaves (finer ones than min_wavelength are dropped)
        persistence = [0.3, 0.7]     amplitude ratio of successive octaves, uniform
        min_wavelength               finest lattice cell [nm] kept (default 4 dx)

      kind = "trajectory"  snapshots of ATG evolutions (one task and one group per trajectory): random initial
                        roughness (the model's [initial] kind "random": equal-amplitude modes 1..modes, random
                        phases), IMEX steps of dt until end, then `snapshots` frames spread over the evolution
        count           number of trajectories (required)
        snapshots = 50  frames kept per trajectory (the first is the initial profile)
        mean = [2.2, 4.5]       mean film thickness range [nm], uniform
        amplitude = [0.05, 0.3] initial RMS roughness range [nm], log-uniform
        modes = [10, 30]        initial highest mode range (integers, uniform, <= N/2)
        provider = "fem"        elastic term driving the evolution: "fem" or "linear" (the small-slope law: fine
                                for ripples, unphysical grooves once slopes approach 1). Labels are always FEM.
        fem_tolerance = 0.05    "fem" only: the evolution re-solves the FEM once h has moved by more than this
                                [nm] (max norm) since the latest solve, or after fem_every steps, and adds the
                                change of the linear law in between: rho = rho_fem(h_n) + rho_lin(h) - rho_lin(h_n).
                                Against FEM at every step (L = 100 nm, 3 nm film, dt = 0.02) profiles differ by
                                <~ 0.02 nm until islands form and ~0.2 nm (of ~4 nm islands) while they coarsen,
                                with ~1/30 of the FEM solves; fem_tolerance = 0 or fem_every = 1 is FEM every step
        fem_every = 100         "fem" only: most steps between FEM solves
        dt = 0.02, end = 250.0  time step and duration [time units]
        record_interval = 0.5   time between candidate frames [time units]
        spacing = "progress"    how frames are picked from the candidates: "progress" = evenly in
                                s = (normalised running max of log RMS + normalised accumulated RMS change)/2,
                                so that ripple growth, island formation and coarsening are all sampled and a
                                stationary late phase is not; "time" = evenly in time
        floor = 0.0, negative = "shift"

    h >= 0: a profile whose minimum falls below ``floor`` [nm] is, with ``negative = "shift"`` (default), raised
    rigidly so that min h = floor (the FEM label depends on the shape only, not on the film thickness, apart from
    the total depth h + H, so the shift keeps the label of the drawn shape); with ``"clip"``, h = max(h, floor)
    (flat wetting-layer plateaus with slope kinks at their edges).

File (HDF5, the layout is fixed; read with :func:`read_dataset`)::

    /h        (S, N) float64   film profiles [nm] on x_i = i dx
    /rho      (S, N) float64   elastic energy density from FEM [eV/nm³]
    /rho0     (S,)   float64   flat-film value E eps_m^2 / (2 (1 - nu^2)) [eV/nm³]
    /dx       (S,)   float64   grid spacing [nm]
    /family   (S,)   str       family kind: "random", "perlin", "trajectory"
    /group    (S,)   int64     group id (one task: one trajectory or one batch); split training data by group
    /params/<name> (S,) float64  young, poisson, misfit, length, substrate_depth, mean_thickness
    /family_name (S,) str      the family's table name in the spec
    /time     (S,)   float64   simulated time of a trajectory snapshot (NaN for other families)
    attrs: spec (resolved TOML), created (ISO 8601 UTC), hybrid_version, hybrid_kind = "dataset",
           format_version, samples, seconds (generation wall time), workers

Samples are stored in task order (families in spec order, tasks in order, profiles/snapshots in order), so the
snapshots of a trajectory are consecutive and in time order.
"""

from __future__ import annotations

import logging
import math
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.core.config import (
    REQUIRED,
    ConfigError,
    MapOf,
    Option,
    Table,
    Tagged,
    apply_overrides,
    drop_none,
    dumps_toml,
    read_document,
    validate,
)
from hybrid.core.grid import Grid
from hybrid.core.io import check_writable
from hybrid.couplers.generate import check_workers, run_tasks, stamp, write_atomic
from hybrid.couplers.pipeline import DatasetKind, register_dataset_kind
from hybrid.couplers.profiles import (
    enforce_floor,
    log_uniform,
    max_slope,
    perlin_profiles,
    random_profiles,
    select_frames,
    uniform,
)
from hybrid.solvers.atg import PARAMS as ATG_PARAMS
from hybrid.solvers.atg import finalize_params

logger = logging.getLogger(__name__)

__all__ = [
    "DATASET_SPEC",
    "FORMAT_VERSION",
    "PARAM_NAMES",
    "Task",
    "generate_dataset",
    "plan_tasks",
    "read_dataset",
    "resolve_spec",
    "run_task",
]

FORMAT_VERSION = 1
"""Version of the dataset layout (root attr ``format_version``)."""

PARAM_NAMES = ("young", "poisson", "misfit", "length", "substrate_depth", "mean_thickness")
"""Names of the per-sample physical parameters stored under ``/params``."""

# ------------------------------------------------------------------------------------------------ schema


def _range(type_: str, default: Any, doc: str, **limits: Any) -> Option:
    """A ``[lo, hi]`` range option (lo <= hi is checked after validation)."""
    return Option(f"list[{type_}]", default, doc, length=2, **limits)  # type: ignore[arg-type]


_POSITIVE: dict[str, Any] = {"min": 0.0, "min_exclusive": True}

_COUNT = Option("int", REQUIRED, "number of profiles", min=0)
_BATCH = Option("int", 100, "profiles per task (one task = one group)", min=1)
_MEAN = _range("float", [1.0, 8.0], "mean film thickness range [nm], uniform", min=0.0)
_AMPLITUDE = _range("float", [0.01, 3.0], "RMS roughness range [nm], log-uniform", **_POSITIVE)
_MAX_SLOPE = Option("float", 1.5, "cap on max |h'|: the amplitude is drawn below the cap", **_POSITIVE)
_FLOOR = Option("float", 0.0, "lowest allowed thickness [nm] (h >= floor)", min=0.0)
_NEGATIVE = Option(
    "str",
    "shift",
    "profiles reaching below floor: 'shift' raises the whole profile, 'clip' sets h = max(h, floor)",
    choices=("shift", "clip"),
)

RANDOM = Table(
    {
        "count": _COUNT,
        "batch": _BATCH,
        "mean": _MEAN,
        "amplitude": _AMPLITUDE,
        "modes": _range("int", [1, 25], "highest Fourier mode range (integers, uniform, <= points/2)", min=1),
        "exponent": _range("float", [0.0, 2.0], "amplitude spectrum m^-exponent, range (uniform; 0 = flat)"),
        "max_slope": _MAX_SLOPE,
        "floor": _FLOOR,
        "negative": _NEGATIVE,
    },
    doc="multi-mode random roughness (random amplitudes and phases, flat or power-law spectrum)",
)

PERLIN = Table(
    {
        "count": _COUNT,
        "batch": _BATCH,
        "mean": _MEAN,
        "amplitude": _AMPLITUDE,
        "wavelength": _range("float", [10.0, 100.0], "base wavelength range [nm], log-uniform", **_POSITIVE),
        "octaves": Option("int", 4, "number of octaves (each halves the lattice cell)", min=1, max=12),
        "persistence": _range("float", [0.3, 0.7], "amplitude ratio of successive octaves, uniform", **_POSITIVE),
        "min_wavelength": Option("float", None, "finest lattice cell kept [nm] (default 4 dx)", **_POSITIVE),
        "max_slope": _MAX_SLOPE,
        "floor": _FLOOR,
        "negative": _NEGATIVE,
    },
    doc="fractal (multi-octave) periodic Perlin gradient noise",
)

TRAJECTORY = Table(
    {
        "count": Option("int", REQUIRED, "number of trajectories (one task and one group each)", min=0),
        "snapshots": Option("int", 50, "profiles kept per trajectory (the first is the initial one)", min=1),
        "mean": _range("float", [2.2, 4.5], "mean film thickness range [nm], uniform", **_POSITIVE),
        "amplitude": _range("float", [0.05, 0.3], "initial RMS roughness range [nm], log-uniform", **_POSITIVE),
        "modes": _range("int", [10, 30], "initial highest mode range (integers, uniform, <= points/2)", min=1),
        "provider": Option(
            "str", "fem", "elastic term of the evolution (labels are always FEM)", choices=("fem", "linear")
        ),
        "fem_tolerance": Option(
            "float", 0.05, "fem: change of h [nm] since the latest FEM solve that triggers a new one", min=0.0
        ),
        "fem_every": Option("int", 100, "fem: most steps between FEM solves", min=1),
        "dt": Option("float", 0.02, "IMEX time step [time units]", **_POSITIVE),
        "end": Option("float", 250.0, "duration of each evolution [time units]", **_POSITIVE),
        "record_interval": Option("float", 0.5, "time between candidate frames [time units]", **_POSITIVE),
        "spacing": Option(
            "str",
            "progress",
            "frame selection: 'progress' (evenly in roughness growth + shape change) or 'time'",
            choices=("progress", "time"),
        ),
        "floor": _FLOOR,
        "negative": _NEGATIVE,
    },
    doc="snapshots of ATG evolutions (ripples, islands, coarsening)",
)

FAMILY = Tagged("kind", {"random": RANDOM, "perlin": PERLIN, "trajectory": TRAJECTORY}, doc="a profile family")

DATASET_SPEC = Table(
    {
        "dataset": Table(
            {
                "name": Option("str", None, "dataset name (default: the spec file's stem)"),
                "seed": Option("int", 0, "seed of every random draw", min=0),
                "description": Option("str", "", "free text"),
                "term": Option(
                    "str", "elastic", "the learned term labelled (this spec kind: elastic)", choices=("elastic",)
                ),
            }
        ),
        "grid": Table(
            {
                "length": Option("float", REQUIRED, "period L [nm]", **_POSITIVE),
                "points": Option("int", REQUIRED, "grid points N (dx = L/N)", min=8),
            }
        ),
        "model": ATG_PARAMS,
        "labels": Table(
            {
                "solver": Option(
                    "str",
                    "pcg",
                    "FEM linear solver: pcg (reused-LU preconditioned CG), direct (LU per profile), auto "
                    "(direct for random/perlin, pcg for trajectories)",
                    choices=("pcg", "direct", "auto"),
                ),
                "refine": Option("int", 1, "FEM element columns per grid interval", min=1),
            }
        ),
        "family": MapOf(FAMILY, doc="profile families by name"),
    },
    doc="dataset spec for the ATG elastic term",
)
"""Schema of a dataset spec (see the module docstring for the keys and their meaning)."""


def resolve_spec(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Load, override and validate a dataset spec; fill every default.

    Args:
        spec: path of a TOML spec, or the parsed tables as a dict.
        overrides: dotted-key overrides (``{"family.random.count": 10}`` or ``["dataset.seed=3"]``).

    Returns:
        (resolved spec, file name or None).

    Raises:
        ConfigError: naming the file, the key and what is allowed.
    """
    doc = read_document(spec, "dataset")
    file, stem = doc.file, doc.stem
    raw = _family_list_to_map(doc.tables, file)
    data = apply_overrides(raw, overrides or {}, file=file)
    res = validate(data, DATASET_SPEC, file=file)
    if not res["dataset"].get("name"):
        res["dataset"]["name"] = stem
    length, points = res["grid"]["length"], res["grid"]["points"]
    res["model"] = finalize_params(Grid((length,), (points,)), dict(res["model"]))  # H = L, IMEX defaults
    if not res["family"]:
        raise ConfigError("at least one [family.NAME] table is needed", key="family", file=file)
    dx = length / points
    for name, fam in res["family"].items():
        where = f"family.{name}"
        for key in ("mean", "amplitude", "modes", "exponent", "wavelength", "persistence"):
            if key in fam and fam[key][0] > fam[key][1]:
                raise ConfigError(f"range [lo, hi] needs lo <= hi, got {fam[key]}", key=f"{where}.{key}", file=file)
        if "modes" in fam and fam["modes"][1] > points // 2:
            raise ConfigError(
                f"highest mode must be <= points/2 = {points // 2}, got {fam['modes'][1]}",
                key=f"{where}.modes",
                file=file,
            )
        if fam["kind"] == "perlin" and fam.get("min_wavelength") is None:
            fam["min_wavelength"] = 4.0 * dx
        if fam["kind"] == "trajectory":
            steps = _trajectory_steps(fam)
            every = _record_every(fam)
            if every > steps:
                raise ConfigError(
                    f"record_interval = {fam['record_interval']} exceeds end = {fam['end']}",
                    key=f"{where}.record_interval",
                    file=file,
                )
            candidates = steps // every + 1
            if fam["snapshots"] > candidates:
                raise ConfigError(
                    f"only {candidates} candidate frames (end / record_interval + 1) for {fam['snapshots']} "
                    "snapshots: lower snapshots or record_interval",
                    key=f"{where}.snapshots",
                    file=file,
                )
    return drop_none(res), file


def _family_list_to_map(raw: dict[str, Any], file: str | None) -> dict[str, Any]:
    """Accept ``[[family]]`` arrays of tables: name each by its ``name`` key or ``<kind><index>``."""
    fams = raw.get("family")
    if not isinstance(fams, list):
        return raw
    named: dict[str, Any] = {}
    for i, item in enumerate(fams):
        if not isinstance(item, Mapping):
            raise ConfigError(f"expected a table, got {type(item).__name__}", key=f"family[{i}]", file=file)
        item = dict(item)
        name = item.pop("name", None) or f"{item.get('kind', 'family')}{i}"
        if not isinstance(name, str) or name in named:
            raise ConfigError(f"family names must be unique strings, got {name!r}", key=f"family[{i}].name", file=file)
        named[name] = item
    return {**raw, "family": named}


def _trajectory_steps(fam: Mapping[str, Any]) -> int:
    return max(1, math.ceil(fam["end"] / fam["dt"] - 1e-9))


def _record_every(fam: Mapping[str, Any]) -> int:
    return max(1, round(fam["record_interval"] / fam["dt"]))


# ------------------------------------------------------------------------------------------------ tasks


@dataclass(frozen=True)
class Task:
    """One unit of work: a chunk of random/perlin profiles or one trajectory (picklable, self-contained).

    Attributes:
        index: position of the task in the file (global task order).
        family: family table name.
        kind: "random", "perlin" or "trajectory".
        task_index: index of the task within its family.
        count: number of profiles (random/perlin) or of snapshots (trajectory) it produces.
        group: group id of its samples.
        seed: entropy of its generator, (dataset.seed, CRC-32 of the family name, task_index).
        length: L [nm]. points: N.
        model: resolved ``[model]`` table.
        labels: resolved ``[labels]`` table.
        options: resolved family table.
    """

    index: int
    family: str
    kind: str
    task_index: int
    count: int
    group: int
    seed: tuple[int, int, int]
    length: float
    points: int
    model: Mapping[str, Any] = field(repr=False)
    labels: Mapping[str, Any] = field(repr=False)
    options: Mapping[str, Any] = field(repr=False)

    def rng(self) -> np.random.Generator:
        """The task's own generator (independent of which worker runs it)."""
        return np.random.default_rng(list(self.seed))


def plan_tasks(resolved: Mapping[str, Any]) -> list[Task]:
    """Split a resolved spec into tasks, in file order (families in spec order).

    Args:
        resolved: output of :func:`resolve_spec`.

    Returns:
        The tasks; task ``i`` has ``index == group == i``.
    """
    tasks: list[Task] = []
    seed = int(resolved["dataset"]["seed"])
    for name, fam in resolved["family"].items():
        crc = zlib.crc32(name.encode("utf-8"))
        if fam["kind"] == "trajectory":
            sizes = [int(fam["snapshots"])] * int(fam["count"])
        else:
            n, b = int(fam["count"]), int(fam["batch"])
            sizes = [min(b, n - s) for s in range(0, n, b)]
        for k, size in enumerate(sizes):
            i = len(tasks)
            tasks.append(
                Task(
                    index=i,
                    family=name,
                    kind=fam["kind"],
                    task_index=k,
                    count=size,
                    group=i,
                    seed=(seed, crc, k),
                    length=float(resolved["grid"]["length"]),
                    points=int(resolved["grid"]["points"]),
                    model=dict(resolved["model"]),
                    labels=dict(resolved["labels"]),
                    options=dict(fam),
                )
            )
    return tasks


# ------------------------------------------------------------------------------------------------ trajectories


class _LaggedFEM:
    """Term ``elastic`` for the evolution: FEM when h has moved, linear-law increments in between.

    rho(h) = rho_fem(h_n) + rho_lin(h) - rho_lin(h_n), h_n the profile of the latest FEM solve (clipped at 0 for the
    FEM), which is refreshed once max |h - h_n| > ``tolerance`` [nm] or ``every`` steps have passed. A brief dip
    of a groove below 0 is part of these evolutions (the FEM sees it clipped, the frames are floored afterwards), so
    the linear law is evaluated directly, without the input check a provider call makes (which refuses h < 0).
    """

    name = "elastic"

    def __init__(self, fem: Any, linear: Any, tolerance: float, every: int) -> None:
        self.fem, self.linear, self.tolerance, self.every = fem, linear, tolerance, every
        self._step: int | None = None
        self._h = self._rho = self._lin = np.zeros(0)
        self.solves = 0

    def __call__(self, state: Any) -> np.ndarray:
        h = np.asarray(state["h"])
        lin = np.asarray(self.linear.evaluate(state))
        if (
            self._step is None
            or not 0 <= state.step - self._step < self.every
            or float(np.abs(h - self._h).max()) > self.tolerance
        ):
            self._rho = self.fem(np.maximum(h, 0.0))
            self._h, self._lin, self._step = h.copy(), lin, state.step
            self.solves += 1
            return self._rho.copy()
        return self._rho + (lin - self._lin)


def _evolve(task: Task, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Run one ATG evolution; return the candidate frames (F, N) [nm] and their times (F,)."""
    import hybrid.solvers.atg  # noqa: F401  (registers the model and its providers)
    from hybrid.core.backend import Backend
    from hybrid.core.grid import Grid
    from hybrid.core.integrators import make_stepper
    from hybrid.core.registry import Context, get_model, get_provider
    from hybrid.core.state import State
    from hybrid.solvers.elasticity import FilmElasticitySolver

    o = task.options
    mean = uniform(rng, *o["mean"])
    amplitude = log_uniform(rng, *o["amplitude"])
    modes = int(rng.integers(o["modes"][0], o["modes"][1] + 1))
    case_seed = int(rng.integers(0, 2**31 - 1))
    spec = get_model("atg")
    grid = Grid((task.length,), (task.points,))
    params = dict(task.model)
    ctx = Context(grid=grid, backend=Backend("numpy", "cpu"), params=params, seed=case_seed, model="atg")
    linear = get_provider("elastic", "linear").build(ctx, {})
    if o["provider"] == "linear":
        term: Any = linear
    else:
        solver = FilmElasticitySolver(
            task.length,
            task.points,
            params["substrate_depth"],
            params["young"],
            params["poisson"],
            params["misfit"],
            solver="pcg",
        )
        term = _LaggedFEM(solver, linear, float(o["fem_tolerance"]), int(o["fem_every"]))
    equation = spec.build(ctx, {"elastic": term})
    init = spec.initial_state(ctx, {"kind": "random", "mean": mean, "amplitude": amplitude, "modes": modes})
    state = State({k: np.asarray(v) for k, v in init.items()}, 0.0, 0, ctx.backend)
    steps = _trajectory_steps(o)
    every = _record_every(o)
    # stepped directly, not by a Simulation: a groove may dip briefly below 0 here (the FEM sees it clipped and the
    # frames are floored), which a run would stop as unphysical; only NaN/inf stops the evolution
    stepper = make_stepper("imex", equation, float(o["dt"]))
    frames = [np.array(state.numpy_fields()["h"], dtype=np.float64)]
    times = [0.0]
    for n in range(1, steps + 1):
        state = stepper(state)
        if n % every == 0:
            h = np.array(state.numpy_fields()["h"], dtype=np.float64)
            if not np.isfinite(h).all():
                raise FloatingPointError(f"the evolution became NaN/inf by step {n} (t = {state.time:g})")
            frames.append(h)
            times.append(float(state.time))
    logger.debug(
        "trajectory %s/%d: mean %.3g nm, amplitude %.3g nm, modes %d, %d steps, %d FEM solves, rms %.3g -> %.3g nm",
        task.family,
        task.task_index,
        mean,
        amplitude,
        modes,
        steps,
        getattr(term, "solves", 0),
        frames[0].std(),
        frames[-1].std(),
    )
    return np.array(frames), np.array(times)


# ------------------------------------------------------------------------------------------------ run a task


def run_task(task: Task) -> dict[str, Any]:
    """Generate and label the samples of one task (runs on a worker).

    Args:
        task: from :func:`plan_tasks`.

    Returns:
        dict with ``index``, ``h`` (n, N) [nm], ``rho`` (n, N) [eV/nm³], ``time`` (n,) (NaN unless trajectory),
        ``seconds`` (wall time), ``cpu_seconds`` (CPU time of the worker process), ``fem_seconds`` (labelling).

    Raises:
        RuntimeError: naming the task, its family and seed, from any failure (e.g. a trajectory that blew up).
    """
    try:
        return _run_task(task)
    except Exception as err:
        raise RuntimeError(
            f"dataset task {task.index} (family {task.family!r}, {task.kind} #{task.task_index}, seed {task.seed}) "
            f"failed: {type(err).__name__}: {err}"
        ) from err


def _run_task(task: Task) -> dict[str, Any]:
    from hybrid.solvers.elasticity import FilmElasticitySolver

    t0, c0 = time.perf_counter(), time.process_time()
    rng = task.rng()
    o = task.options
    times = np.full(task.count, np.nan)
    if task.kind == "random":
        h = random_profiles(rng, task.count, task.length, task.points, o)
    elif task.kind == "perlin":
        h = perlin_profiles(rng, task.count, task.length, task.points, o)
    elif task.kind == "trajectory":
        frames, ftimes = _evolve(task, rng)
        pick = select_frames(frames, ftimes, task.count, o["spacing"])
        h = np.array([enforce_floor(f, o["floor"], o["negative"]) for f in frames[pick]])
        times = ftimes[pick]
    else:  # pragma: no cover - the schema rejects other kinds
        raise ValueError(f"unknown family kind {task.kind!r}")
    m = task.model
    solver = task.labels["solver"]
    if solver == "auto":
        solver = "pcg" if task.kind == "trajectory" else "direct"
    t1 = time.perf_counter()
    fem = FilmElasticitySolver(
        task.length,
        task.points,
        m["substrate_depth"],
        m["young"],
        m["poisson"],
        m["misfit"],
        refine=int(task.labels["refine"]),
        solver=solver,
    )
    # snapshots in time order; independent profiles from smooth to steep, so that the preconditioner of one
    # profile (pcg) serves the next ones (a fixed order: the labels do not depend on who runs the task)
    order = (
        np.argsort([max_slope(p, task.length) for p in h], kind="stable")
        if task.kind != "trajectory" and solver == "pcg"
        else np.arange(len(h))
    )
    rho = np.empty_like(h)
    for i in order:
        rho[i] = fem(h[i])
    t2 = time.perf_counter()
    return {
        "index": task.index,
        "h": np.ascontiguousarray(h, dtype=np.float64),
        "rho": rho,
        "time": times,
        "seconds": t2 - t0,
        "cpu_seconds": time.process_time() - c0,
        "fem_seconds": t2 - t1,
    }


# ------------------------------------------------------------------------------------------------ driver


def generate_dataset(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Path:
    """Generate a labelled dataset from a spec and write it to an HDF5 file.

    Args:
        spec: path of a TOML dataset spec, or its tables as a dict (see the module docstring).
        out: HDF5 file to write (replaced atomically at the end; parent folders are created).
        workers: number of local worker processes (a ``distributed.LocalCluster``, one thread each); None:
            ``os.cpu_count()``; 0 or 1: run the tasks in this process, without dask.
        scheduler: address of a running dask scheduler (e.g. ``"tcp://host:8786"``) to use instead of a local
            cluster; its workers need ``hybrid`` installed. Not combined with ``workers``.
        progress: show a tqdm progress bar (samples).
        overrides: dotted-key overrides of the spec, as in ``--set`` (``{"family.random.count": 10}``).

    Returns:
        The path written.

    With ``workers`` > 1 the local cluster starts worker processes with the ``spawn`` method, so a script that
    calls this function must do so under ``if __name__ == "__main__":`` (the ``hybrid`` command does).

    Raises:
        ConfigError: invalid spec or override (names the file and key).
        ValueError: invalid ``workers``/``scheduler``.
    """
    check_workers(workers, scheduler)
    resolved, _file = resolve_spec(spec, overrides)
    check_writable(out, "--out")  # before the labelling, not after it
    tasks = plan_tasks(resolved)
    total = sum(t.count for t in tasks)
    per_family = {name: sum(t.count for t in tasks if t.family == name) for name in resolved["family"]}
    logger.info(
        "dataset %r: %d samples in %d tasks (%s), N = %d",
        resolved["dataset"]["name"],
        total,
        len(tasks),
        ", ".join(f"{k}: {v}" for k, v in per_family.items()),
        resolved["grid"]["points"],
    )
    out = Path(out)
    run = run_tasks(
        run_task,
        tasks,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        desc="dataset",
        unit="sample",
        weight=lambda t: t.count,
        priority=lambda t: 1 if t.kind == "trajectory" else 0,  # the long tasks first fill the cluster best
    )
    results = run.results
    _write(out, resolved, tasks, results, seconds=run.seconds, workers=run.workers)
    logger.info(
        "wrote %s: %d samples in %.1f s (%.1f samples/s) with %s; tasks took %.1f s wall, %.1f s CPU (labels %.1f s)",
        out,
        total,
        run.seconds,
        total / max(run.seconds, 1e-9),
        run.workers,
        sum(r["seconds"] for r in results),
        sum(r["cpu_seconds"] for r in results),
        sum(r["fem_seconds"] for r in results),
    )
    return out


def _write(
    out: Path,
    resolved: Mapping[str, Any],
    tasks: Sequence[Task],
    results: Sequence[Mapping[str, Any]],
    *,
    seconds: float,
    workers: str,
) -> None:
    """Assemble the samples in task order and write the file (temporary file + atomic rename)."""
    import h5py

    from hybrid.solvers.elastic_laws import misfit_energy_density

    if len(results) != len(tasks):  # pragma: no cover - defensive
        raise RuntimeError(f"{len(tasks) - len(results)} tasks returned no result")
    points = int(resolved["grid"]["points"])
    length = float(resolved["grid"]["length"])
    m = resolved["model"]
    h = np.concatenate([r["h"] for r in results]) if results else np.zeros((0, points))
    rho = np.concatenate([r["rho"] for r in results]) if results else np.zeros((0, points))
    t = np.concatenate([r["time"] for r in results]) if results else np.zeros(0)
    counts = [t_.count for t_ in tasks]
    n = int(sum(counts))
    if h.shape != (n, points) or rho.shape != (n, points):  # pragma: no cover - defensive
        raise RuntimeError(f"sample arrays have shapes {h.shape}, {rho.shape}; expected ({n}, {points})")
    kinds = np.repeat([t_.kind for t_ in tasks], counts) if tasks else np.zeros(0, dtype=str)
    names = np.repeat([t_.family for t_ in tasks], counts) if tasks else np.zeros(0, dtype=str)
    groups = np.repeat(np.array([t_.group for t_ in tasks], dtype=np.int64), counts)
    params = {
        "young": np.full(n, m["young"]),
        "poisson": np.full(n, m["poisson"]),
        "misfit": np.full(n, m["misfit"]),
        "length": np.full(n, length),
        "substrate_depth": np.full(n, m["substrate_depth"]),
        "mean_thickness": h.mean(axis=1) if n else np.zeros(0),
    }
    rho0 = misfit_energy_density(m["young"], m["poisson"], m["misfit"])
    str_dtype = h5py.string_dtype(encoding="utf-8")

    def write(f: Any) -> None:
        f.create_dataset("h", data=h, dtype=np.float64)
        f.create_dataset("rho", data=rho, dtype=np.float64)
        f.create_dataset("rho0", data=np.full(n, rho0), dtype=np.float64)
        f.create_dataset("dx", data=np.full(n, length / points), dtype=np.float64)
        f.create_dataset("family", data=np.asarray(kinds, dtype=object), dtype=str_dtype)
        f.create_dataset("group", data=groups, dtype=np.int64)
        f.create_dataset("family_name", data=np.asarray(names, dtype=object), dtype=str_dtype)
        f.create_dataset("time", data=t, dtype=np.float64)
        g = f.create_group("params")
        for name in PARAM_NAMES:
            g.create_dataset(name, data=params[name], dtype=np.float64)
        stamp(
            f,
            kind="dataset",
            format_version=FORMAT_VERSION,
            spec=dumps_toml(resolved),
            seconds=seconds,
            workers=workers,
        )
        f.attrs["samples"] = n

    write_atomic(out, write)


def _is_profile_spec(spec: Mapping[str, Any]) -> bool:
    head = spec.get("dataset")
    term = head.get("term", "elastic") if isinstance(head, Mapping) else "elastic"
    return ("family" in spec) and "trajectories" not in spec and term == "elastic"


register_dataset_kind(
    DatasetKind(
        "atg-profiles",
        _is_profile_spec,
        generate_dataset,
        "[family.NAME] tables of film profiles labelled by the FEM (datasets/atg_elastic.toml)",
    )
)


def read_dataset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a dataset file written by :func:`generate_dataset` into memory.

    Args:
        path: the HDF5 file.

    Returns:
        dict with numpy arrays ``h``, ``rho`` (S, N), ``rho0``, ``dx``, ``group``, ``time`` (S,), ``family`` and
        ``family_name`` (S,) str arrays, ``params`` (dict name -> (S,)), and ``attrs`` (dict).
    """
    import h5py

    with h5py.File(path, "r") as f:
        data: dict[str, Any] = {k: f[k][()] for k in ("h", "rho", "rho0", "dx", "group")}
        for k in ("family", "family_name"):
            if k in f:
                data[k] = f[k].asstr()[()]
        data["time"] = f["time"][()] if "time" in f else np.full(len(data["group"]), np.nan)
        data["params"] = {k: f["params"][k][()] for k in f["params"]}
        data["attrs"] = dict(f.attrs)
    return data
