"""Estimated wall time of ``hybrid dataset`` on a spec: one task of each family timed, scaled by the task counts.

Run: ``python benchmarks/bench_dataset_cost.py [--spec datasets/atg_elastic.toml] [--workers 2]`` (never in CI).

Each family's first task runs in this process and its CPU seconds per sample are scaled by the family's sample
count; the total divided by ``--workers`` estimates the wall time of a LocalCluster run with that many workers
(FEM labelling is single-threaded and the tasks are independent, so the estimate ignores only dask's overhead).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hybrid.couplers.dataset import plan_tasks, resolve_spec, run_task

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", type=Path, default=ROOT / "datasets" / "atg_elastic.toml", help="dataset spec (TOML)")
    p.add_argument("--workers", type=int, default=2, help="dask workers the estimate assumes")
    args = p.parse_args()
    tasks = plan_tasks(resolve_spec(args.spec)[0])
    per_sample: dict[str, float] = {}
    for task in tasks:
        if task.family not in per_sample:
            t0 = time.process_time()
            run_task(task)
            per_sample[task.family] = (time.process_time() - t0) / task.count
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.family] = counts.get(t.family, 0) + t.count
    for family, s in per_sample.items():
        print(f"{family:>14}: {counts[family]:6d} samples × {1e3 * s:8.2f} ms CPU = {counts[family] * s / 60:6.2f} min")
    total = sum(per_sample[f] * c for f, c in counts.items())
    wall = total / args.workers / 60
    print(f"total {total / 60:.1f} CPU min; estimated wall time on {args.workers} workers: {wall:.1f} min")


if __name__ == "__main__":
    main()
