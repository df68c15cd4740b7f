"""A hand-written numpy time loop that takes its elastic term from hybrid's monitor: the network where its ensemble
is trusted, the finite-element DNS where not, and every decision logged.

Explicit small-slope surface diffusion of a strained film from a random start, ∂h/∂t = M ∂²/∂x² [−γ ∂²h/∂x² + ρ(h)]
(the full model with its slope and wetting terms is ``hybrid run cases/atg_film.toml``). Run:
``python examples/numpy_monitor_loop.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import hybrid

CASE = Path(__file__).resolve().parents[1] / "cases" / "atg_film.toml"  # L = 100 nm, N = 100, Ge/Si(001)


def run(steps: int = 2000, dt: float = 2e-3, audit_every: int = 200) -> tuple[np.ndarray, dict, dict]:
    """Returns (final h (N,) [nm], the monitor's decision log {column: (calls,)}, its summary)."""
    monitor = hybrid.load_provider(
        "elastic", "monitor", case=CASE, overrides={"terms.elastic.audit_every": audit_every}
    )
    n, length, mobility, gamma = 100, 100.0, 5.0, 6.0
    dx = length / n
    rng = np.random.default_rng(0)
    x = np.arange(n) * dx
    modes = np.arange(1, 21)  # random phases on the 20 longest waves, 0.1 nm RMS: the shipped case's start
    h = np.cos(2 * np.pi * np.outer(x, modes) / length + rng.uniform(0, 2 * np.pi, modes.size)).sum(axis=1)
    h = 3.0 + 0.1 * h / h.std()  # film thickness [nm]

    def d2(f: np.ndarray) -> np.ndarray:  # periodic second difference
        return (np.roll(f, -1) - 2 * f + np.roll(f, 1)) / dx**2

    for _ in range(steps):
        mu = -gamma * d2(h) + monitor(h)  # each call: the network's answer, or the FEM's when the monitor is unsure
        h = h + dt * mobility * d2(mu)
    return h, monitor.take_log_rows(), monitor.summary()


if __name__ == "__main__":
    h, log, summary = run()
    nn = log["source"] == "nn"
    audited = ~np.isnan(log["audit_error"])
    print(f"{nn.size} calls: {np.count_nonzero(nn)} from the network, {np.count_nonzero(~nn)} from the FEM")
    print(f"threshold {summary['threshold']:.4g} on the ensemble spread; largest {log['uncertainty'].max():.4g}")
    trusted = log["audit_error"][audited & nn]
    print(
        f"{np.count_nonzero(audited)} audits; on answers the network gave, the true error was at most "
        f"{trusted.max():.3g} of ρ0 (tolerance {summary['tolerance']})"
    )
