"""Grain-growth surrogate: does one NN window change each grain's area as the DNS window does (issue #4)?

Run: ``python benchmarks/study_surrogate_grain_areas.py [--size 512] [--starts 2120 6360 10600 14840 19080]
[--after 0] [--dtype float32]`` (never in CI; about 4 minutes at 512² on 2 cores). The shipped hybrid case
(``cases/graingrowth_hybrid.toml`` at ``--size``² with the shipped grain density) is advanced by the DNS; at each
start step the NN first takes ``--after`` windows (so the compared window starts from a state the network made, as
in a run), then one window is taken twice from the same state, by the NN (the shipped ensemble's jump and its
relaxation steps, as ``stepper.provider = "nn"``) and by the DNS (the same number of steps). Grains are labelled by the
model's tracker from the start state's labels, so a label names the same grain in both windows. Prints per start the
grains that vanished in each window and, binned by the grain's area at the start [grid points], the mean area
change of both windows and the mean and RMS of their difference.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_surrogate import CASE, _overrides

BINS = (0, 50, 100, 200, 400, 800, 1600, np.inf)


def _sim(size: int, provider: str, dtype: str):  # type: ignore[no-untyped-def]
    import hybrid
    from hybrid.core.simulation import OutputSpec

    sim = hybrid.load_case(CASE, overrides=_overrides(size, provider, "cpu", "numpy", dtype))
    sim.output = OutputSpec(path=None, checkpoint_every=None)
    return sim


def main(argv: list[str] | None = None) -> int:
    from hybrid.core.state import State

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="grid points per side (default 512, the shipped case)")
    ap.add_argument("--starts", type=int, nargs="+", default=[2120, 6360, 10600, 14840, 19080], help="start steps")
    ap.add_argument("--after", type=int, default=0, help="NN windows before the compared window (default 0)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="the network's dtype")
    args = ap.parse_args(argv)

    dns, nn, ref = (_sim(args.size, provider, args.dtype) for provider in ("dns", "nn", "dns"))
    window = nn.stepper.steps_per_call
    track = dns.equation._track
    rows = []
    for start in sorted(args.starts):
        while dns.state.step < start:
            dns.step()
        s0 = dns.state
        nn.state = State(dict(s0.copy().fields), s0.time, s0.step, s0.backend)
        for _ in range(args.after):
            nn.step()
        s0 = nn.state
        ref.state = State(dict(s0.copy().fields), s0.time, s0.step, s0.backend)
        nn.step()
        for _ in range(window):
            ref.step()
        areas = [np.bincount(track(s)[0].ravel()) for s in (s0, nn.state, ref.state)]
        m = max(len(a) for a in areas)
        a0, a_nn, a_dns = (np.pad(a, (0, m - len(a))) for a in areas)
        present = a0 > 0
        present[0] = False  # label 0 is no grain
        print(
            f"start step {s0.step} (t = {s0.time:g}): {present.sum()} grains; vanished in the NN window "
            f"{(present & (a_nn == 0)).sum()}, in the DNS window {(present & (a_dns == 0)).sum()}",
            flush=True,
        )
        rows.append(np.stack([a0[present], a_nn[present], a_dns[present]], axis=1))
    a0, a_nn, a_dns = np.concatenate(rows).T.astype(float)
    d_nn, d_dns = a_nn - a0, a_dns - a0
    print(f"\narea change over one window [grid points], {len(a0)} grains")
    print(f"{'start area':>14} {'grains':>7} {'DNS':>8} {'NN':>8} {'NN - DNS':>9} {'rms':>7}")
    for lo, hi in itertools.pairwise(BINS):
        k = (a0 >= lo) & (a0 < hi)
        if k.any():
            diff = d_nn[k] - d_dns[k]
            label = f"[{lo:g}, {hi:g})"
            print(
                f"{label:>14} {k.sum():7d} {d_dns[k].mean():8.1f} {d_nn[k].mean():8.1f} {diff.mean():+9.2f} "
                f"{np.sqrt(np.mean(diff**2)):7.2f}"
            )
    diff = d_nn - d_dns
    rms = np.sqrt(np.mean(diff**2))
    print(f"{'all':>14} {len(a0):7d} {d_dns.mean():8.1f} {d_nn.mean():8.1f} {diff.mean():+9.2f} {rms:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
