"""Training data for whole-model NN surrogates: pairs of DNS states ``jump`` steps apart (``hybrid dataset``).

A whole-model surrogate advances the evolved fields of a model by ``jump`` DNS steps at once. It is trained on pairs
(fields at step s, fields at step s + jump) taken from DNS runs of a case file. A *trajectory spec* (TOML, schema
:data:`TRAJECTORY_SPEC`) names the case, ``--set``-style overrides of it, the number of trajectories and where the
pairs are taken; :func:`generate_trajectories` runs one task per trajectory (in-process or on a dask.distributed
cluster) and writes one HDF5 file. Trajectory ``i`` runs the case with ``case.seed = dataset.seed + i``; everything
else is the same for every trajectory, and every random draw of a run comes from its case seed, so the file's
arrays are bitwise identical for any number of workers (only the attrs ``created``/``seconds``/``workers`` differ).

Each trajectory is stepped with :meth:`hybrid.core.simulation.Simulation.step` (so the model's ``after_step``
hooks, e.g. the order-parameter re-indexing of grain growth, run exactly as in ``hybrid run``), with no output
file, and the evolved fields (``equation.evolved_fields``, e.g. ``eta`` (Q, ny, nx) for grain growth) are recorded
at the pair start steps and at the end of a hook-free DNS window from each (see the file layout).

Spec (TOML; every key is validated, errors name the file, the dotted key and what is allowed)::

    [dataset]       name (default: the spec file's stem), seed = 0 (trajectory i: case.seed = seed + i),
                    description = ""
    [trajectories]
      case          case file (required), relative to the spec file
      set = []      overrides of the case, as ``hybrid run --set``: ["grid.shape=[128,128]", "initial.grains=62"]
      count         number of trajectories (required, >= 1)
      steps         DNS steps per trajectory (default: the case's time.steps)
      jump          DNS steps between the two frames of a pair (required, >= 1; a multiple of the step quantum)
      pairs         pairs per trajectory (required, >= 1)
      spacing = "log"   how the pair start steps s_k are spread over [start, steps - jump]: "log" = geometric in
                    s + jump (dense early, where the state changes fast, sparse late), "linear" = evenly
      start = 0     earliest pair start step
      dtype = "float32"   storage of the fields: "float32" | "float64" (the DNS runs in its own precision)

Pair start steps are multiples of the *step quantum* (:func:`step_quantum`: the ``[model]`` key the model declares
as its ``ModelSpec.step_quantum``, e.g. grain growth re-indexes its order parameters every ``reassign_every`` steps
and the surrogate jumps between such states; else 1), strictly increasing; ``jump`` must be a multiple of the quantum.

File (HDF5, the layout is fixed; read with :func:`read_trajectories`)::

    /fields/<name>  (R, F, *shape)  evolved field <name> at the recorded frames, in ``dtype``
                                    (e.g. fields/eta (R, F, Q, ny, nx)); gzip-compressed, one chunk per frame
    /step           (R, F) int64    DNS step of each frame (s_0, s_0 + jump, s_1, ...; the same for every run)
    /time           (R, F) float64  simulated time of each frame [model time unit]
    /seed           (R,)   int64    case.seed of each trajectory
    /pairs          (P, 2) int64    frame indices (i, j) with step[:, j] - step[:, i] == jump: the training pairs
                                    of every trajectory (P = pairs), in order of s_k
    attrs: hybrid_kind = "trajectories", format_version, spec (resolved spec TOML; ``trajectories.case`` is made
           absolute), case (resolved case TOML of trajectory 0), model (model name), dt [time unit], jump,
           created (ISO 8601 UTC), hybrid_version, seconds (generation wall time), workers

R = count trajectories, F = 2 × pairs frames per trajectory: frame 2k is the trajectory at s_k, frame 2k + 1 the
state ``jump`` DNS steps later, computed on a side branch from frame 2k *without* the model's ``after_step``
hooks (no order-parameter re-indexing inside a window, which is what one NN jump replaces; the trajectory itself
goes on with the hooks). Frame 2k + 1 therefore differs from the trajectory at s_k + jump only where the model
re-indexed a grain in between.
"""

from __future__ import annotations

import logging
import os
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.core.backend import to_numpy
from hybrid.core.config import (
    REQUIRED,
    ConfigError,
    Option,
    Table,
    apply_overrides,
    drop_none,
    dumps_toml,
    parse_override,
    read_document,
    validate,
)
from hybrid.core.io import check_writable
from hybrid.core.state import State
from hybrid.couplers.generate import (
    check_workers,
    local_workers,
    run_tasks,
    set_worker_threads,
    stamp,
    write_atomic,
)
from hybrid.couplers.pipeline import DatasetKind, register_dataset_kind

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "TRAJECTORY_SPEC",
    "TrajectoryTask",
    "generate_trajectories",
    "is_trajectory_spec",
    "pair_start_steps",
    "plan_trajectories",
    "rate_function",
    "read_trajectories",
    "resolve_trajectory_spec",
    "run_trajectory",
    "step_quantum",
]

FORMAT_VERSION = 1
"""Version of the trajectory file layout (root attr ``format_version``)."""

HYBRID_KIND = "trajectories"
"""Root attr ``hybrid_kind`` of a trajectory file."""

TRAJECTORY_SPEC = Table(
    {
        "dataset": Table(
            {
                "name": Option("str", None, "dataset name (default: the spec file's stem)"),
                "seed": Option("int", 0, "trajectory i runs the case with case.seed = seed + i", min=0),
                "description": Option("str", "", "free text"),
            }
        ),
        "trajectories": Table(
            {
                "case": Option("str", REQUIRED, "case file, relative to the spec file"),
                "set": Option("list[str]", [], "overrides of the case, KEY=VALUE as in `hybrid run --set`"),
                "count": Option("int", REQUIRED, "number of trajectories", min=1),
                "steps": Option("int", None, "DNS steps per trajectory (default: the case's time.steps)", min=1),
                "jump": Option("int", REQUIRED, "DNS steps between the two frames of a pair", min=1),
                "pairs": Option("int", REQUIRED, "pairs per trajectory", min=1),
                "spacing": Option(
                    "str",
                    "log",
                    "pair start steps over [start, steps - jump]: 'log' (geometric in s + jump) or 'linear'",
                    choices=("log", "linear"),
                ),
                "start": Option("int", 0, "earliest pair start step", min=0),
                "dtype": Option("str", "float32", "storage of the fields", choices=("float32", "float64")),
            }
        ),
    },
    doc="trajectory dataset spec for whole-model surrogates",
)
"""Schema of a trajectory spec (see the module docstring for the keys and their meaning)."""


# ------------------------------------------------------------------------------------------------ spec


def is_trajectory_spec(spec: str | os.PathLike[str] | Mapping[str, Any]) -> bool:
    """Whether a spec (TOML path or parsed tables) is a trajectory spec, i.e. has a ``[trajectories]`` table.

    Raises:
        ConfigError: the file does not exist or is not valid TOML.
    """
    return isinstance(read_document(spec, "trajectories").tables.get("trajectories"), Mapping)


def resolve_trajectory_spec(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Load, override and validate a trajectory spec; fill every default and check the case and its overrides.

    The case is resolved (validated) with the overrides of trajectory 0, so a bad ``set`` entry is reported here.

    Args:
        spec: path of a TOML spec, or the parsed tables as a dict (a relative ``trajectories.case`` is then taken
            relative to the working directory).
        overrides: dotted-key overrides of the spec (``{"trajectories.count": 2}`` or ``["dataset.seed=3"]``).

    Returns:
        (resolved spec, file name or None). ``trajectories.case`` is an absolute path, ``trajectories.steps`` is
        filled in from the case when absent.

    Raises:
        ConfigError: naming the file, the dotted key and what is allowed.
    """
    doc = read_document(spec, "trajectories")
    file, stem, base = doc.file, doc.stem, doc.folder
    data = apply_overrides(doc.tables, overrides or {}, file=file)
    res = validate(data, TRAJECTORY_SPEC, file=file)
    if not res["dataset"].get("name"):
        res["dataset"]["name"] = stem
    tr = res["trajectories"]
    case = Path(tr["case"]).expanduser()
    case = case if case.is_absolute() else (base / case)
    case = Path(os.path.normpath(case))
    if not case.is_file():
        raise ConfigError(
            f"case file {str(case)!r} not found (paths are relative to the spec file)", "trajectories.case", file
        )
    tr["case"] = str(case)
    for i, item in enumerate(tr["set"]):
        try:
            parse_override(item)
        except ConfigError as err:
            raise ConfigError(f"{err.message}, got {item!r}", f"trajectories.set[{i}]", file) from None
    rc = _resolve_case(res, 0, file)
    if tr.get("steps") is None:
        tr["steps"] = int(rc.data["time"]["steps"])
    pair_start_steps(res, *step_quantum(rc), file=file)  # raises if the pairs cannot be placed
    return drop_none(res), file


def _case_overrides(resolved: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The case overrides of trajectory ``index``: the spec's ``set``, then case.seed and time.steps.

    ``time.end`` is cleared, so that ``time.steps`` also applies to a case that gives its duration as ``end``.
    """
    tr = resolved["trajectories"]
    ov: dict[str, Any] = dict(parse_override(s) for s in tr["set"])
    ov["case.seed"] = int(resolved["dataset"]["seed"]) + index
    if tr.get("steps") is not None:
        ov["time.end"] = None
        ov["time.steps"] = int(tr["steps"])
    return ov


def _resolve_case(resolved: Mapping[str, Any], index: int, file: str | None) -> Any:
    """Resolve the case of trajectory ``index``; a ConfigError names the spec key that caused it."""
    from hybrid.couplers.assembly import resolve_case

    tr = resolved["trajectories"]
    ov = _case_overrides(resolved, index)
    try:
        return resolve_case(tr["case"], ov)
    except ConfigError as err:
        raise _case_error(err, tr["set"], tr["case"], file) from None


def _case_error(err: ConfigError, sets: Sequence[str], case: str, file: str | None) -> ConfigError:
    """Re-raise a case ConfigError as one about the spec key that caused it (set, steps, seed or case)."""
    key = "trajectories.case"
    bad = err.key or ""
    for i, item in enumerate(sets):
        k = parse_override(item)[0]
        if bad and (bad == k or bad.startswith(k + ".") or k.startswith(bad + ".") or bad.startswith(k + "[")):
            key = f"trajectories.set[{i}]"
    if bad.startswith("time.steps") or bad.startswith("time.end"):
        key = "trajectories.steps"
    elif bad.startswith("case.seed"):
        key = "dataset.seed"
    where = f"key '{bad}' of case {case}" if bad else f"case {case}"
    return ConfigError(f"{where}: {err.message}", key=key, file=file)


def step_quantum(rc: Any) -> tuple[int, str]:
    """Steps of which every pair start and the jump are multiples, and the case key that sets them.

    Args:
        rc: the resolved case (:class:`hybrid.couplers.assembly.ResolvedCase`); its model's
            ``ModelSpec.step_quantum`` names the ``[model]`` key, if any.

    Returns:
        (quantum >= 1, dotted key such as ``"model.reassign_every"``, or ``""`` when the model declares none).
    """
    key = rc.spec.step_quantum
    if key is None:
        return 1, ""
    return max(1, int(rc.data["model"][key])), f"model.{key}"


def pair_start_steps(
    resolved: Mapping[str, Any], quantum: int = 1, quantum_key: str = "", *, file: str | None = None
) -> np.ndarray:
    """The pair start steps s_k of a resolved spec: spread over [start, steps - jump], multiples of ``quantum``.

    ``spacing = "log"``: s_k + jump geometric from start + jump to steps; ``"linear"``: evenly. Each is rounded to
    the nearest multiple of ``quantum`` in range, then made strictly increasing (forward and backward passes).

    Args:
        resolved: spec tables (``trajectories.steps`` filled in).
        quantum: step quantum (:func:`step_quantum`).
        quantum_key: the case key that sets the quantum, for messages.
        file: spec file name for error messages.

    Returns:
        (pairs,) int64 strictly increasing steps.

    Raises:
        ConfigError: jump not a multiple of the quantum, or the pairs do not fit (names the key).
    """
    tr = resolved["trajectories"]
    steps, jump, pairs, start = int(tr["steps"]), int(tr["jump"]), int(tr["pairs"]), int(tr["start"])
    if jump % quantum:
        raise ConfigError(
            f"must be a multiple of the case's {quantum_key or 'step quantum'} = {quantum} (pairs connect states "
            f"right after the model's periodic hooks), got {jump}",
            "trajectories.jump",
            file,
        )
    hi = steps - jump
    if hi < start:
        raise ConfigError(
            f"steps = {steps} leaves no room for a pair: needs steps >= start + jump = {start + jump}",
            "trajectories.steps",
            file,
        )
    m_lo, m_hi = -(-start // quantum), hi // quantum  # start steps m * quantum, m in [m_lo, m_hi]
    available = m_hi - m_lo + 1
    if pairs > available:
        q = f" (multiples of {quantum_key or 'the step quantum'} = {quantum})" if quantum > 1 else ""
        raise ConfigError(
            f"only {max(available, 0)} distinct start steps{q} fit in [start, steps - jump] = [{start}, {hi}], "
            f"got pairs = {pairs}: lower pairs or jump, or raise steps",
            "trajectories.pairs",
            file,
        )
    lo_s, hi_s = m_lo * quantum, m_hi * quantum
    if tr["spacing"] == "log":
        u = np.geomspace(lo_s + jump, hi_s + jump, pairs) - jump
    else:
        u = np.linspace(lo_s, hi_s, pairs)
    m = np.clip(np.rint(u / quantum).astype(np.int64), m_lo, m_hi)
    for k in range(1, pairs):
        m[k] = max(m[k], m[k - 1] + 1)
    for k in range(pairs - 1, -1, -1):
        m[k] = min(m[k], m_hi - (pairs - 1 - k))
        if k < pairs - 1:
            m[k] = min(m[k], m[k + 1] - 1)
    s = m * quantum
    assert np.all(np.diff(s) > 0) and s[0] >= start and s[-1] <= hi  # guaranteed by pairs <= available
    return s.astype(np.int64)


def _frames(starts: np.ndarray, jump: int) -> tuple[np.ndarray, np.ndarray]:
    """Recorded steps (2P,) = s_0, s_0 + jump, s_1, s_1 + jump, ... and the pairs (P, 2) = (2k, 2k + 1)."""
    steps = np.column_stack([starts, starts + jump]).reshape(-1).astype(np.int64)
    pairs = np.arange(2 * len(starts), dtype=np.int64).reshape(-1, 2)
    return steps, pairs


# ------------------------------------------------------------------------------------------------ tasks


@dataclass(frozen=True)
class TrajectoryTask:
    """One trajectory to run (picklable, self-contained).

    Attributes:
        index: trajectory index i (row of the file).
        seed: its case.seed (dataset.seed + i).
        case: absolute path of the case file.
        overrides: case overrides (dotted key -> value), ``case.seed`` and ``time.steps`` included.
        steps: (2P,) s_0, s_0 + jump, s_1, s_1 + jump, ...: the pair start steps and their window ends.
        jump: DNS steps of a window.
        dtype: storage dtype name of the fields.
        spec_file: spec file name for error messages.
        sets: the spec's ``trajectories.set`` entries (to name the one behind a case error).
        threads: numba threads of the run (None: leave the process's setting). Local workers get
            ``cpu_count // workers``: numba's parallel kernels on more threads than their share of the cores
            slow a 128² grain-growth step down ~30x. The results do not depend on it.
    """

    index: int
    seed: int
    case: str
    overrides: Mapping[str, Any] = field(repr=False)
    steps: tuple[int, ...] = field(repr=False)
    jump: int = 1
    dtype: str = "float32"
    spec_file: str | None = None
    sets: tuple[str, ...] = field(default=(), repr=False)
    threads: int | None = None


def plan_trajectories(
    resolved: Mapping[str, Any], file: str | None = None, *, threads: int | None = None
) -> list[TrajectoryTask]:
    """Split a resolved spec into one task per trajectory.

    Args:
        resolved: output of :func:`resolve_trajectory_spec`.
        file: spec file name for error messages.
        threads: numba threads per run (None: the worker process's default).

    Returns:
        ``count`` tasks, task i with ``index == i``.
    """
    tr = resolved["trajectories"]
    rc = _resolve_case(resolved, 0, file)
    starts = pair_start_steps(resolved, *step_quantum(rc), file=file)
    steps, _ = _frames(starts, int(tr["jump"]))
    seed = int(resolved["dataset"]["seed"])
    return [
        TrajectoryTask(
            index=i,
            seed=seed + i,
            case=tr["case"],
            overrides=_case_overrides(resolved, i),
            steps=tuple(int(s) for s in steps),
            jump=int(tr["jump"]),
            dtype=tr["dtype"],
            spec_file=file,
            sets=tuple(tr["set"]),
            threads=threads,
        )
        for i in range(int(tr["count"]))
    ]


def run_trajectory(task: TrajectoryTask) -> dict[str, Any]:
    """Run one trajectory and record its evolved fields at ``task.steps`` (runs on a worker).

    Returns:
        dict with ``index``, ``fields`` (name -> (F, *shape) array in ``task.dtype``), ``time`` (F,) float64,
        ``seconds`` (wall time), ``cpu_seconds`` (CPU time of the worker process).

    Raises:
        SimulationBlowUp: a field became NaN/inf (the message names the trajectory and its seed).
        ConfigError: the case cannot be built with these overrides (names the spec key).
        RuntimeError: any other failure, naming the trajectory and its seed.
    """
    from hybrid.core.simulation import SimulationBlowUp

    try:
        return _run_trajectory(task)
    except SimulationBlowUp as err:
        raise SimulationBlowUp(f"trajectory {task.index} (case.seed = {task.seed}): {err}") from err
    except ConfigError as err:
        raise _case_error(err, task.sets, task.case, task.spec_file) from None
    except Exception as err:
        raise RuntimeError(
            f"trajectory {task.index} (case.seed = {task.seed}) failed: {type(err).__name__}: {err}"
        ) from err


def _run_trajectory(task: TrajectoryTask) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    saved_threads = set_worker_threads(task.threads)
    try:
        return _record(task, t0, c0)
    finally:
        set_worker_threads(saved_threads)


def _record(task: TrajectoryTask, t0: float, c0: float) -> dict[str, Any]:
    from hybrid.core.simulation import OutputSpec, SimulationBlowUp
    from hybrid.couplers.assembly import build_simulation, resolve_case

    rc = resolve_case(task.case, dict(task.overrides))
    sim = build_simulation(rc)
    sim.output = OutputSpec(path=None, checkpoint_every=None)  # write nothing: the frames are kept in memory
    names = tuple(sim.equation.evolved_fields)
    dtype = np.dtype(task.dtype)
    record = list(task.steps)
    frames: dict[str, list[np.ndarray]] = {n: [] for n in names}
    times: list[float] = []

    def keep(state: Any) -> None:
        arrays = state.numpy_fields()
        for n in names:
            a = np.array(arrays[n], dtype=dtype, copy=True)
            if not np.all(np.isfinite(a)):
                raise SimulationBlowUp(f"field {n!r} is NaN/inf at step {state.step} (t = {state.time:g})")
            frames[n].append(a)
        times.append(float(state.time))

    try:
        for start in record[0::2]:
            while sim.state.step < start:
                sim.step()
            keep(sim.state)
            # the pair's second frame: `jump` calls of the DNS stepper from this state, without the model's
            # after_step hooks (what one NN jump replaces: no order-parameter re-indexing inside a window)
            branch = sim.state
            for _ in range(task.jump):
                branch = sim.stepper(branch)
            keep(branch)
    finally:
        sim.close()
    return {
        "index": task.index,
        "fields": {n: np.stack(v) for n, v in frames.items()},
        "time": np.asarray(times, dtype=np.float64),
        "model": rc.spec.name,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }


# ------------------------------------------------------------------------------------------------ driver


def generate_trajectories(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Path:
    """Run the DNS trajectories of a spec and write the recorded frames and pairs to an HDF5 file.

    Args:
        spec: path of a TOML trajectory spec, or its tables as a dict (see the module docstring).
        out: HDF5 file to write (replaced atomically at the end; parent folders are created).
        workers: number of local worker processes (a ``distributed.LocalCluster``, one thread each); None:
            ``os.cpu_count()``; 0 or 1: run the trajectories in this process, without dask. Local workers run
            numba's parallel kernels on ``cpu_count // workers`` threads each (more would oversubscribe the cores).
        scheduler: address of a running dask scheduler to use instead of a local cluster (its workers need
            ``hybrid`` installed and the case file at the same absolute path). Not combined with ``workers``.
        progress: show a tqdm progress bar (trajectories).
        overrides: dotted-key overrides of the spec, as in ``--set`` (``{"trajectories.count": 2}``).

    Returns:
        The path written.

    With ``workers`` > 1 the local cluster starts worker processes with the ``spawn`` method, so a script that
    calls this function must do so under ``if __name__ == "__main__":``.

    Raises:
        ConfigError: invalid spec, override or case override (names the file and key).
        SimulationBlowUp: a trajectory became NaN/inf (the message names the trajectory).
        ValueError: invalid ``workers``/``scheduler``.
    """
    check_workers(workers, scheduler)
    resolved, file = resolve_trajectory_spec(spec, overrides)
    check_writable(out, "--out")  # before the runs, not after them
    tr = resolved["trajectories"]
    rc0 = _resolve_case(resolved, 0, file)
    starts = pair_start_steps(resolved, *step_quantum(rc0), file=file)
    rec_steps, pairs = _frames(starts, int(tr["jump"]))
    n_workers = local_workers(workers)
    # local worker processes share this machine's cores: one share of numba threads each
    threads = max(1, (os.cpu_count() or 1) // n_workers) if scheduler is None and n_workers > 1 else None
    tasks = plan_trajectories(resolved, file, threads=threads)
    logger.info(
        "trajectories %r: %d runs of %s (%d steps, grid %s), %d pairs each (jump %d), %d frames each",
        resolved["dataset"]["name"],
        len(tasks),
        Path(tr["case"]).name,
        tr["steps"],
        "x".join(str(n) for n in rc0.context.grid.shape),
        len(pairs),
        tr["jump"],
        len(rec_steps),
    )
    out = Path(out)
    run = run_tasks(
        run_trajectory,
        tasks,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        desc="trajectories",
        unit="trajectory",
    )
    results, seconds, used = run.results, run.seconds, run.workers
    _write(
        out,
        resolved,
        tasks,
        results,
        steps=rec_steps,
        pairs=pairs,
        case_text=rc0.text,
        model=rc0.spec.name,
        dt=float(rc0.data["time"]["dt"]),
        seconds=seconds,
        workers=used,
    )
    nbytes = out.stat().st_size
    logger.info(
        "wrote %s: %d trajectories x %d frames (%d pairs) in %.1f s with %s (runs %.1f s wall, %.1f s CPU), %.1f MB",
        out,
        len(tasks),
        len(rec_steps),
        len(tasks) * len(pairs),
        seconds,
        used,
        sum(r["seconds"] for r in results),
        sum(r["cpu_seconds"] for r in results),
        nbytes / 1e6,
    )
    return out


def _write(
    out: Path,
    resolved: Mapping[str, Any],
    tasks: Sequence[TrajectoryTask],
    results: Sequence[Mapping[str, Any]],
    *,
    steps: np.ndarray,
    pairs: np.ndarray,
    case_text: str,
    model: str,
    dt: float,
    seconds: float,
    workers: str,
) -> None:
    """Write the file (temporary file in the target folder + atomic rename)."""

    tr = resolved["trajectories"]
    dtype = np.dtype(tr["dtype"])
    nr, nf = len(tasks), len(steps)
    if len(results) != nr:  # pragma: no cover - defensive
        raise RuntimeError(f"{nr - len(results)} trajectories returned no result")
    names = list(results[0]["fields"]) if results else []

    def write(f: Any) -> None:
        g = f.create_group("fields")
        for name in names:
            shape = results[0]["fields"][name].shape[1:]
            ds = g.create_dataset(
                name,
                shape=(nr, nf, *shape),
                dtype=dtype,
                chunks=(1, 1, *shape),  # one frame per chunk: random access to pairs for training
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
            for r in results:
                a = r["fields"][name]
                if a.shape != (nf, *shape):  # pragma: no cover - defensive
                    raise RuntimeError(f"trajectory {r['index']}: {name} has shape {a.shape}, expected {(nf, *shape)}")
                ds[r["index"]] = a
        f.create_dataset("step", data=np.tile(steps.astype(np.int64), (nr, 1)), dtype=np.int64)
        time_ = np.zeros((nr, nf))
        for r in results:
            time_[r["index"]] = r["time"]
        f.create_dataset("time", data=time_, dtype=np.float64)
        f.create_dataset("seed", data=np.array([t.seed for t in tasks], dtype=np.int64), dtype=np.int64)
        f.create_dataset("pairs", data=pairs.astype(np.int64).reshape(-1, 2), dtype=np.int64)
        stamp(
            f,
            kind=HYBRID_KIND,
            format_version=FORMAT_VERSION,
            spec=dumps_toml(resolved),
            seconds=seconds,
            workers=workers,
        )
        f.attrs["case"] = case_text
        f.attrs["model"] = model
        f.attrs["dt"] = float(dt)
        f.attrs["jump"] = int(tr["jump"])

    write_atomic(out, write)


register_dataset_kind(
    DatasetKind(
        "trajectories",
        is_trajectory_spec,
        generate_trajectories,
        "a [trajectories] table: DNS runs of a case for whole-model surrogates (e.g. "
        "datasets/graingrowth_trajectories.toml)",
    )
)


def read_trajectories(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a trajectory file written by :func:`generate_trajectories` into memory.

    Args:
        path: the HDF5 file.

    Returns:
        dict with ``fields`` (name -> (R, F, *shape) array), ``step`` (R, F) int64, ``time`` (R, F) float64,
        ``seed`` (R,) int64, ``pairs`` (P, 2) int64 and ``attrs`` (dict).

    Raises:
        ValueError: the file is not a trajectory file.
    """
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("hybrid_kind") != HYBRID_KIND:
            raise ValueError(f"{path} is not a trajectory file (hybrid_kind = {f.attrs.get('hybrid_kind')!r})")
        data: dict[str, Any] = {"fields": {k: f["fields"][k][()] for k in f["fields"]}}
        for k in ("step", "time", "seed", "pairs"):
            data[k] = f[k][()]
        data["attrs"] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    return data


def rate_function(path: str | os.PathLike[str], field: str | None = None) -> Callable[[Any], Any]:
    """dη/dt of the DNS that wrote a trajectory file, as a function of torch tensors (the "rate" feature).

    The model is rebuilt from the file's resolved case (``attrs["case"]``), so the right-hand side is the same
    kernel and parameters as the DNS of the data.

    Args:
        path: trajectory file of :func:`generate_trajectories`.
        field: the evolved field (default: the first of the file).

    Returns:
        f(x) for a tensor x of the field's shape (any float dtype, on the CPU): the rate as a float32 CPU tensor,
        computed in float64 on the case's backend.
    """
    import h5py
    import torch

    from hybrid.couplers.assembly import build_simulation, resolve_case

    with h5py.File(path, "r") as f:
        if f.attrs.get("hybrid_kind") != HYBRID_KIND:
            raise ValueError(f"{path} is not a trajectory file (hybrid_kind = {f.attrs.get('hybrid_kind')!r})")
        case_text = str(f.attrs["case"])
        name = field or next(iter(f["fields"]))
    sim = build_simulation(resolve_case(tomllib.loads(case_text)))
    equation, template = sim.equation, sim.state

    def rate(x: Any) -> Any:
        fields = dict(template.fields)
        fields[name] = template.backend.asarray(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float64))
        out = equation.rhs(State(fields, template.time, template.step, template.backend))[name]
        return torch.from_numpy(np.asarray(to_numpy(out), dtype=np.float32))

    return rate
