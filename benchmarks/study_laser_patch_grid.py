"""Grid convergence of the cfd melt-pool patch: the same coarse state, the patch at 10 µm and at 5 µm.

Run: ``python benchmarks/study_laser_patch_grid.py [--steps 150]``. Never run in CI (about 10 s on one core).

The shipped case (cases/laser_track.toml) is stepped by its coarse model for ``--steps`` steps (3 ms: a
quasi-steady pool), then the ``cfd`` provider of ``patch_temperature`` is called on that state with ``spacing``
10 µm (the shipped patch) and 5 µm. Printed per grid: the call's wall time and the melt pool of the answer
(hybrid.analysis.melt_pool: peak temperature, depth, length of the molten surface), and the relative change from
10 to 5 µm: docs/physics.md §4 expects a 10 µm patch to resolve depth and peak temperature to a few percent.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

import hybrid
from hybrid.analysis.melt_pool import melt_pool
from hybrid.core.simulation import OutputSpec
from hybrid.couplers.assembly import build_simulation, resolve_case

CASE = Path(__file__).resolve().parents[1] / "cases" / "laser_track.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="coarse steps before the patch calls (default 150)")
    args = parser.parse_args()
    print(f"{platform.machine()}, python {platform.python_version()}, hybrid {hybrid.__version__}, "
          f"numpy {np.__version__}")  # fmt: skip
    rc = resolve_case(CASE, {"time.end": None, "time.steps": args.steps})
    sim = build_simulation(rc)
    sim.output = OutputSpec(path=None, checkpoint_every=None)
    for _ in range(args.steps):
        sim.step()
    liquidus = float(rc.context.params["liquidus"])
    rows = []
    for spacing in (1e-5, 5e-6):
        patch = hybrid.load_provider("patch_temperature", "cfd", case=CASE, spacing=spacing)
        t0 = time.perf_counter()
        temp = patch(sim.state)
        wall = time.perf_counter() - t0
        pool = melt_pool(temp, spacing, liquidus, cell_centred=True)
        rows.append((spacing, wall, pool))
        print(
            f"spacing {spacing * 1e6:4.0f} µm: call {wall:6.2f} s, peak {pool.peak:7.1f} K, depth "
            f"{pool.depth * 1e6:6.2f} µm, molten surface {pool.width * 1e6:7.2f} µm"
        )
    (_, _, a), (_, _, b) = rows
    print(
        f"10 -> 5 µm: peak {100 * (b.peak / a.peak - 1):+.1f} %, depth {100 * (b.depth / a.depth - 1):+.1f} %, "
        f"molten surface {100 * (b.width / a.width - 1):+.1f} %"
    )


if __name__ == "__main__":
    main()
