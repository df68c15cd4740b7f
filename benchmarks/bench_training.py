"""Cost of one training step of the elastic ensemble: the exact linear part by FFT vs by forward-mode AD.

Run: ``python benchmarks/bench_training.py [--batch 64] [--points 100] [--steps 10] [--rounds 4]`` (never in CI).

A training step of ``hybrid train`` with ``model.linear_response = "exact"`` evaluates the ensemble on per-member
bootstrap batches (B, K, C_in, N) and subtracts the correction's value and first-order response at the flat
profile. ``training.linear_method = "jvp"`` gets that part by forward-mode AD through the whole batch;
``"fft"`` gets the impulse responses of J(0) once per step (a jvp on L = 2 impulses) and applies them by FFT.
Both give the same values and gradients to rounding (tests/models/test_ensemble.py). The script times forward +
backward of the shipped architecture (random weights do not change the cost; the shipped ones are used when
present) with both methods alternately, ``--rounds`` times ``--steps`` steps each, and prints the medians and
their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hybrid.couplers.terms.elastic import SHIPPED_WEIGHTS
from hybrid.models.card import load_ensemble
from hybrid.models.ensemble import EnsembleCNN1d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64, help="profiles per member per step (shipped spec: 64)")
    p.add_argument("--points", type=int, default=100, help="profile length N (shipped dataset: 100)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds per method")
    args = p.parse_args()
    if (SHIPPED_WEIGHTS / "model_card.json").exists():
        model, _ = load_ensemble(SHIPPED_WEIGHTS, expect=EnsembleCNN1d)
    else:
        model = EnsembleCNN1d(5, 3, channels=16, layers=5, kernel_size=5, linear_channels=[0, 1])
    model.train()
    g = torch.Generator().manual_seed(0)
    k, c = model.members, model.in_channels
    x = torch.randn(args.batch, k, c, args.points, generator=g)
    y = torch.randn(args.batch, k, args.points, generator=g)

    def step() -> None:
        loss = (model(x) - y).square().mean()
        model.zero_grad(set_to_none=True)
        loss.backward()

    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); K = {k}, channels {model.channels}, "
        f"layers {model.layers}, batch {args.batch}, N = {args.points}"
    )
    times: dict[str, list[float]] = {"jvp": [], "fft": []}
    for _ in range(args.rounds):
        for method in times:
            model.linear_method = method
            step()  # warm-up after the switch
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[method].append((time.perf_counter() - t0) / args.steps)
    jvp, fft = statistics.median(times["jvp"]), statistics.median(times["fft"])
    print(f"seconds per training step (median of {args.rounds} rounds): jvp {jvp:.3e}, fft {fft:.3e}")
    print(f"ratio jvp / fft = {jvp / fft:.2f}")


if __name__ == "__main__":
    main()
