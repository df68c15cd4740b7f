"""Parameter sweeps: one run of a case per point of a cartesian grid of case-key values (``hybrid sweep``).

``sweep(case, grid={"model.misfit": [0.03, 0.04], "model.flux": [0.0, 0.1]}, out="sweep")`` runs the 4 points on
dask.distributed (a LocalCluster by default, or a running scheduler) and writes into ``out``:

- ``point-0000.h5``, ... the results file of each point (the layout of ``hybrid run``);
- ``sweep.json``: the case, the grid, the common overrides and, per point, its overrides, ``status`` ("done",
  "failed" or "pending"), the error of a failed point, its wall seconds and the chosen scalar; rewritten as each
  point finishes, so it is current even while the sweep runs;
- ``sweep.csv``: the same, one row per point (the grid keys as columns);
- ``sweep_<scalar>.png``: the scalar against the grid (a line for one key, a map for two).

A failing point is recorded with its error and does not stop the others. Running the same sweep again into the
same folder skips the points that are done and runs the others (failed ones, and those a killed sweep left
pending: a point's partial results file is replaced, the point starts from its beginning).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.core.config import ConfigError, parse_override

log = logging.getLogger(__name__)

__all__ = ["SCALARS", "SweepPoint", "parse_grid", "run_point", "scalar_value", "sweep"]

INDEX = "sweep.json"
TABLE = "sweep.csv"


# ---------------------------------------------------------------------------------------------------- scalars


def _wall_seconds(path: Path, arg: str) -> float:
    import h5py

    with h5py.File(path, "r") as f:
        return float(f["timing"].attrs.get("run", math.nan)) if "timing" in f else math.nan


def _nn_fraction(path: Path, arg: str) -> float:
    from hybrid.core.io import read_output

    tables = read_output(path)["monitor"]
    sources = [np.asarray(t["source"]) for t in tables.values() if "source" in t]
    if not sources:
        return math.nan
    s = np.concatenate(sources)
    return float(np.mean(s == "nn")) if s.size else math.nan


def _dominant_wavelength(path: Path, arg: str) -> float:
    """Wavelength [length unit] of the strongest non-constant Fourier mode of a 1D field's final frame."""
    import tomllib

    from hybrid.analysis.descriptors import dominant_wavelength
    from hybrid.core.io import read_output

    out = read_output(path)
    fields = out["fields"]
    name = arg or next(iter(fields), "")
    if name not in fields or fields[name].ndim != 2:
        raise ValueError(f"dominant_wavelength needs a saved 1D field, got {name!r} (fields: {sorted(fields)})")
    grid = tomllib.loads(str(out["attrs"]["case"]))["grid"]
    length = float(grid["lengths"][0] if "lengths" in grid else grid["length"])
    return dominant_wavelength(fields[name][-1], length)


def _final(path: Path, arg: str) -> float:
    """``final:FIELD:STAT``: mean, min, max or std of a field's final frame."""
    from hybrid.core.io import read_output

    name, _, stat = arg.partition(":")
    fields = read_output(path)["fields"]
    if name not in fields:
        raise ValueError(f"no saved field {name!r} (fields: {sorted(fields)})")
    return float(_STATS[stat](fields[name][-1]))


def _last(path: Path, arg: str) -> float:
    """``last:TABLE:COLUMN``: a table's last row, e.g. ``last:grains:count``."""
    from hybrid.core.io import read_table

    table, _, column = arg.rpartition(":")
    values = read_table(path, table)[column]
    return float(values[-1]) if len(values) else math.nan


_STATS: dict[str, Callable[[np.ndarray], Any]] = {"mean": np.mean, "min": np.min, "max": np.max, "std": np.std}

SCALARS: dict[str, tuple[Callable[[Path, str], float], str]] = {
    "wall_seconds": (_wall_seconds, "wall seconds of the run"),
    "nn_fraction": (_nn_fraction, "fraction of monitored calls (or windows) served by the NN"),
    "dominant_wavelength": (_dominant_wavelength, "wavelength of the strongest mode of the final 1D field [length]"),
    "final": (_final, "final:FIELD:STAT, STAT one of mean, min, max, std of the final frame"),
    "last": (_last, "last:TABLE:COLUMN, the table's last value (e.g. last:grains:count)"),
}
"""Scalars a sweep can report per point: name -> (function(results file, argument), description)."""


def _check_scalar(name: str) -> None:
    kind, _, arg = name.partition(":")
    if kind not in SCALARS:
        raise ConfigError(f"unknown scalar {name!r}; allowed: {', '.join(SCALARS)}", key="--scalar")
    if kind == "final" and arg.partition(":")[2] not in _STATS:
        raise ConfigError(f"expected final:FIELD:STAT with STAT in {', '.join(_STATS)}, got {name!r}", key="--scalar")
    if kind == "last" and ":" not in arg:
        raise ConfigError(f"expected last:TABLE:COLUMN, got {name!r}", key="--scalar")


def scalar_value(name: str, path: Path) -> float:
    """The scalar ``name`` (see :data:`SCALARS`) of a results file."""
    kind, _, arg = name.partition(":")
    return SCALARS[kind][0](path, arg)


# ---------------------------------------------------------------------------------------------------- the grid


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["KEY=V1,V2,...", ...]`` -> ``{KEY: [values]}``; each value is a TOML value as in ``--set``.

    Commas inside brackets or quotes do not split (``model.x=[1,2],[3,4]`` has two values).
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, rest = item.partition("=")
        key = key.strip()
        if not sep or not key or not rest.strip():
            raise ConfigError(f"expected KEY=V1,V2,..., got {item!r}", key="--grid")
        if key in grid:
            raise ConfigError(f"key {key!r} is given twice", key="--grid")
        values = [parse_override(f"{key}={v}")[1] for v in _split_values(rest)]
        grid[key] = values
    return grid


def _split_values(text: str) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    if any(not p.strip() for p in parts):
        raise ConfigError(f"empty value in {text!r}", key="--grid")
    return [p.strip() for p in parts]


# ---------------------------------------------------------------------------------------------------- one point


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep (picklable: it travels to a dask worker).

    Attributes:
        index: the point's number in the sweep.
        position: its place in this batch of tasks (the runner assembles results by it).
        case: the case file (absolute path).
        overrides: the common ``--set`` overrides, then the point's grid values.
        out: its results file.
        scalar: the scalar to report (see :data:`SCALARS`), or None.
        threads: numba threads of the worker (None: leave the default).
    """

    index: int
    position: int
    case: str
    overrides: tuple[tuple[str, Any], ...]
    out: str
    scalar: str | None = None
    threads: int | None = None


def run_point(point: SweepPoint) -> dict[str, Any]:
    """Run one point; never raises: a failure is returned as ``status = "failed"`` with its error."""
    from hybrid.cases import load_case
    from hybrid.couplers.generate import set_worker_threads

    t0 = time.perf_counter()
    result: dict[str, Any] = {"index": point.position, "point": point.index, "status": "done", "error": ""}
    try:
        set_worker_threads(point.threads)
        out = Path(point.out)
        for stale in (out, out.with_suffix(".xdmf"), out.with_name(out.stem + ".ckpt.h5")):
            stale.unlink(missing_ok=True)  # what an interrupted attempt of this point left
        load_case(point.case, dict(point.overrides), out=out).run()
        if point.scalar:
            result["scalar"] = scalar_value(point.scalar, out)
    except Exception as err:
        result["status"] = "failed"
        result["error"] = f"{type(err).__name__}: {err}"
    result["wall_seconds"] = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------------------------------------------- the sweep


def sweep(
    case: str | os.PathLike[str],
    grid: Mapping[str, Sequence[Any]],
    out: str | os.PathLike[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    scalar: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run every point of ``grid`` (the cartesian product, first key slowest) and write the index.

    Args:
        case: the case file.
        grid: dotted case key -> the values it takes.
        out: folder of the sweep (created).
        overrides: overrides common to every point (as ``--set``).
        scalar: a scalar of :data:`SCALARS` to record per point and plot over the grid.
        workers: local worker processes (None: one per core; 0 or 1: in this process).
        scheduler: address of a running dask scheduler instead of a local cluster.
        progress: show a progress bar of points.

    Returns:
        The index (what ``sweep.json`` holds).

    Raises:
        ConfigError: an empty grid, an unknown scalar, a case that does not resolve with the first point's values
            (checked before any run), or an ``out`` folder that holds a different sweep.
    """
    from hybrid.cases import resolve_case
    from hybrid.couplers.generate import check_workers, local_workers, run_tasks

    check_workers(workers, scheduler)
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise ConfigError("give at least one key with at least one value", key="--grid")
    if scalar:
        _check_scalar(scalar)
    case_path = Path(case).resolve()
    common = dict(overrides or {})
    keys = list(grid)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    resolve_case(case_path, {**common, **points[0]})  # a typo in a key fails here, not in every worker
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    index = _load_or_start(folder, case_path, grid, common, scalar, points)
    pending = [i for i, p in enumerate(index["points"]) if not _is_done(folder, p)]
    n_workers = local_workers(workers)
    threads = max(1, (os.cpu_count() or 1) // n_workers) if scheduler is None and n_workers > 1 else None
    tasks = [
        SweepPoint(
            index=i,
            position=pos,
            case=str(case_path),
            overrides=tuple({**common, **index["points"][i]["overrides"]}.items()),
            out=str(folder / index["points"][i]["output"]),
            scalar=scalar,
            threads=threads,
        )
        for pos, i in enumerate(pending)
    ]
    log.info("sweep of %s: %d points, %d to run", case_path.name, len(points), len(tasks))

    def record(result: dict[str, Any]) -> None:
        entry = index["points"][result["point"]]
        entry.update({k: result[k] for k in ("status", "error", "wall_seconds")})
        entry["scalar"] = result.get("scalar")
        _write_index(folder, index)
        if result["status"] == "failed":
            log.warning("sweep point %d %s failed: %s", result["point"], entry["overrides"], result["error"])

    if tasks:
        run_tasks(
            run_point,
            tasks,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            desc="sweep",
            unit="point",
            on_result=record,
        )
    _write_index(folder, index)
    if scalar:
        _plot(folder, index, scalar)
    return index


def _load_or_start(
    folder: Path,
    case: Path,
    grid: Mapping[str, Sequence[Any]],
    common: Mapping[str, Any],
    scalar: str | None,
    points: list[dict[str, Any]],
) -> dict[str, Any]:
    """The index of an earlier run of the same sweep in ``folder``, or a new one (all points pending)."""
    head = {"case": str(case), "grid": {k: list(v) for k, v in grid.items()}, "set": dict(common)}
    path = folder / INDEX
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path} is not a sweep index ({err}); use another --out", key="--out") from None
        mine = json.loads(json.dumps(head))  # the JSON form, as stored
        differs = [k for k in ("case", "grid", "set") if old.get(k) != mine[k]]
        if differs:
            raise ConfigError(
                f"{folder} holds a different sweep (its {', '.join(differs)} differ); use another --out",
                key="--out",
            )
        old["scalar"] = scalar
        return dict(old)
    return {
        **head,
        "scalar": scalar,
        "points": [
            {"overrides": p, "output": f"point-{i:04d}.h5", "status": "pending", "error": "", "wall_seconds": None}
            for i, p in enumerate(points)
        ],
    }


def _is_done(folder: Path, entry: Mapping[str, Any]) -> bool:
    return entry.get("status") == "done" and (folder / entry["output"]).exists()


def _write_index(folder: Path, index: Mapping[str, Any]) -> None:
    """sweep.json and sweep.csv, each replaced atomically."""
    tmp = folder / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, folder / INDEX)
    keys = list(index["grid"])
    tmp = folder / f".{TABLE}.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["point", *keys, "status", "wall_seconds", index.get("scalar") or "scalar", "output", "error"])
        for i, p in enumerate(index["points"]):
            w.writerow(
                [
                    i,
                    *(p["overrides"][k] for k in keys),
                    p["status"],
                    p.get("wall_seconds"),
                    p.get("scalar"),
                    p["output"],
                    p["error"],
                ]
            )
    os.replace(tmp, folder / TABLE)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in the sweep index")


def _plot(folder: Path, index: Mapping[str, Any], scalar: str) -> Path | None:
    """``sweep_<scalar>.png``: the scalar against one grid key (a line) or two (a map); None for more keys."""
    from matplotlib.figure import Figure

    keys = list(index["grid"])
    if len(keys) > 2:
        log.info("sweep: %d grid keys, no plot (see %s)", len(keys), TABLE)
        return None
    axes_values = [index["grid"][k] for k in keys]
    value = np.full([len(v) for v in axes_values], np.nan)
    for flat, p in enumerate(index["points"]):
        if p.get("scalar") is not None:
            value[np.unravel_index(flat, value.shape)] = p["scalar"]
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    labels = [[str(v) for v in vals] for vals in axes_values]
    if len(keys) == 1:
        ax.plot(range(len(labels[0])), value, "o-")
        ax.set_xticks(range(len(labels[0])), labels[0])
        ax.set_xlabel(keys[0])
        ax.set_ylabel(scalar)
    else:
        im = ax.imshow(value.T, origin="lower", aspect="auto")
        ax.set_xticks(range(len(labels[0])), labels[0])
        ax.set_yticks(range(len(labels[1])), labels[1])
        ax.set_xlabel(keys[0])
        ax.set_ylabel(keys[1])
        fig.colorbar(im, ax=ax, label=scalar)
    ax.set_title(f"{Path(index['case']).name}: {scalar} (failed points left blank)", fontsize=9)
    path = folder / f"sweep_{scalar.replace(':', '_')}.png"
    fig.savefig(path, dpi=120)
    return path
