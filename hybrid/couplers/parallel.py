"""Independent tasks on a dask.distributed cluster, results in task order (dataset and trajectory generation).

:func:`run_on_dask` starts a LocalCluster of ``n_workers`` single-threaded processes (or connects to an existing
scheduler), submits every task, and collects the results as they complete: each result is a mapping whose
``"index"`` is its task's position, so the list it returns is in task order whatever the completion order, and a
run on any number of workers assembles the same file. distributed's per-worker INFO logging is kept out of the
caller's log unless the root logger is at DEBUG; a failing task cancels the others and re-raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["run_on_dask"]


def run_on_dask(
    fn: Callable[[Any], dict[str, Any]],
    tasks: Sequence[Any],
    *,
    n_workers: int | None = None,
    scheduler: str | None = None,
    priority: Callable[[Any], int] | None = None,
    on_result: Callable[[dict[str, Any]], object] | None = None,
) -> list[dict[str, Any]]:
    """``[fn(t) for t in tasks]`` on a dask.distributed cluster.

    Args:
        fn: the task function (picklable); its result must carry ``"index"``, the task's position in ``tasks``.
        tasks: the tasks (picklable).
        n_workers: processes of the LocalCluster started when no ``scheduler`` is given (None: dask's default).
        scheduler: address of an existing scheduler (e.g. ``tcp://host:8786``); the cluster is then not ours.
        priority: dask priority of each task (higher starts first), e.g. long tasks first; None: all equal.
        on_result: called with every result as it arrives (a progress bar).

    Returns:
        The results in task order.

    Raises:
        RuntimeError: if a task returned no result (a result with a wrong index).
    """
    from distributed import Client, LocalCluster, as_completed

    dlog = logging.getLogger("distributed")
    saved_level = dlog.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        dlog.setLevel(logging.WARNING)
    cluster = None
    try:
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # a random free port: nothing fixed is bound
                silence_logs=logging.WARNING,
            )
            client = Client(cluster)
        else:
            client = Client(scheduler)
        results: list[dict[str, Any] | None] = [None] * len(tasks)
        try:
            futures = [client.submit(fn, t, pure=False, priority=0 if priority is None else priority(t)) for t in tasks]
            try:
                for fut in as_completed(futures):
                    res = fut.result()
                    results[res["index"]] = res
                    fut.release()
                    if on_result is not None:
                        on_result(res)
            except BaseException:
                client.cancel(futures)
                raise
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
        dlog.setLevel(saved_level)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # pragma: no cover - defensive
        raise RuntimeError(f"tasks {missing} returned no result")
    return [r for r in results if r is not None]
