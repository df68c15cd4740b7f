"""The one generation driver of every data set kind (labelled term samples, DNS trajectories).

A data set is generated as a list of independent *tasks*, each returning a mapping with its ``"index"``. The kind
supplies how to plan its tasks, the task function (a per-term sample maker) and how to assemble the results into
a file; this module does what is common: run the tasks in this process or on a dask.distributed cluster
(:func:`hybrid.couplers.parallel.run_on_dask`) with a progress bar, return the results in task order (so that the
file is bitwise the same for any number of workers), and write the file atomically (a temporary file in the
target folder, renamed into place), stamped with the same provenance attributes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid.core.progress import progress_bar
from hybrid.core.provenance import hybrid_version, utc_now

__all__ = ["Generated", "check_workers", "local_workers", "run_tasks", "set_worker_threads", "stamp", "write_atomic"]


@dataclass(frozen=True)
class Generated:
    """What :func:`run_tasks` returns.

    Attributes:
        results: the task results, in task order.
        seconds: wall seconds of all tasks together.
        workers: where they ran, in words ("in-process", "2 local workers", "scheduler tcp://...").
    """

    results: list[dict[str, Any]]
    seconds: float
    workers: str


def check_workers(workers: int | None, scheduler: str | None) -> None:
    """Refuse a ``workers`` count below 0, or ``workers`` together with ``scheduler`` (ValueError)."""
    if workers is not None and scheduler is not None:
        raise ValueError("give workers or scheduler, not both")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")


def local_workers(workers: int | None) -> int:
    """Worker processes of a local run: ``workers``, or one per CPU core when None."""
    return (os.cpu_count() or 1) if workers is None else workers


def set_worker_threads(threads: int | None) -> int | None:
    """Set numba's thread count (capped by NUMBA_NUM_THREADS); returns the previous one (None: unchanged)."""
    if threads is None:
        return None
    import numba

    previous = int(numba.get_num_threads())
    available = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, min(int(threads), available)))
    return previous


def run_tasks(
    fn: Callable[[Any], dict[str, Any]],
    tasks: Sequence[Any],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    desc: str = "tasks",
    unit: str = "task",
    weight: Callable[[Any], int] = lambda task: 1,
    priority: Callable[[Any], int] | None = None,
    on_result: Callable[[dict[str, Any]], object] | None = None,
) -> Generated:
    """``[fn(t) for t in tasks]``, in this process or on dask, with a progress bar.

    Args:
        fn: the task function (picklable for dask); its result carries ``"index"``, the task's position.
        tasks: the planned tasks (picklable).
        workers: local worker processes (None: one per core; 0 or 1: in this process, without dask).
        scheduler: address of a running dask scheduler instead of a local cluster.
        progress: show a progress bar of ``sum(weight(t))`` ``unit`` (e.g. samples), titled ``desc``.
        weight: units of progress a task stands for.
        priority: dask priority of a task (higher starts first: long tasks first fill the cluster best).
        on_result: called with each result as it arrives (e.g. to record a finished sweep point at once).

    Returns:
        The results in task order, the wall seconds and where the tasks ran.
    """
    check_workers(workers, scheduler)
    n_workers = local_workers(workers)
    bar = progress_bar(sum(weight(t) for t in tasks), desc=desc, unit=unit) if progress else None

    def tick(result: dict[str, Any]) -> dict[str, Any]:
        if on_result is not None:
            on_result(result)
        if bar is not None:
            bar.update(weight(tasks[result["index"]]))
        return result

    t0 = time.perf_counter()
    try:
        if scheduler is None and n_workers <= 1:
            results = [tick(fn(t)) for t in tasks]
            used = "in-process"
        else:
            from hybrid.couplers.parallel import run_on_dask

            results = run_on_dask(
                fn,
                tasks,
                n_workers=None if scheduler is not None else n_workers,
                scheduler=scheduler,
                priority=priority,
                on_result=tick,
            )
            used = f"scheduler {scheduler}" if scheduler is not None else f"{n_workers} local workers"
    finally:
        if bar is not None:
            bar.close()
    return Generated(results, time.perf_counter() - t0, used)


def stamp(f: Any, *, kind: str, format_version: int, spec: str, seconds: float, workers: str) -> None:
    """Write the provenance attributes every generated file carries on an open ``h5py.File``.

    ``hybrid_kind`` (which reader applies), ``format_version``, ``spec`` (the resolved spec as TOML),
    ``created`` (ISO 8601 UTC), ``hybrid_version``, ``seconds`` (generation wall time) and ``workers``.
    """
    f.attrs["hybrid_kind"] = kind
    f.attrs["format_version"] = format_version
    f.attrs["spec"] = spec
    f.attrs["created"] = utc_now()
    f.attrs["hybrid_version"] = hybrid_version()
    f.attrs["seconds"] = float(seconds)
    f.attrs["workers"] = workers


def write_atomic(out: Path, write: Callable[[Any], None]) -> None:
    """Create ``out`` as an HDF5 file through ``write(h5py.File)``: all or nothing.

    The file is written under a temporary name in the target folder (created if needed) and renamed into place,
    so a reader never sees a half-written file and a failure leaves an earlier file at ``out`` untouched.
    """
    import h5py

    from hybrid.core.io import temp_beside

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(out)  # with the user's usual permissions
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            write(f)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
