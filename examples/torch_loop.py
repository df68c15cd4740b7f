"""A torch time loop on the GPU (or the CPU) that takes its elastic term from hybrid's network ensemble.

The state stays a torch tensor on the device the whole run: the provider receives it and answers a tensor on the
same device (the ensemble runs there in float32; the loop is float64). Small-slope surface diffusion of a strained
film, with the compact second difference in x. Run: ``python examples/torch_loop.py [cuda|cpu]`` (default: cuda
when there is one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import hybrid

CASE = Path(__file__).resolve().parents[1] / "cases" / "atg_film.toml"  # L = 100 nm, N = 100, Ge/Si(001)


def run(device: str, steps: int = 1000, dt: float = 2e-3) -> torch.Tensor:
    """Evolve a 4-period ripple for ``steps`` explicit steps on ``device``; returns h (N,) float64 there [nm]."""
    nn = hybrid.load_provider("elastic", "nn", case=CASE, overrides={"case.backend": "torch", "case.device": device})
    n, length, mobility, gamma = 100, 100.0, 5.0, 6.0
    dx = length / n
    x = torch.arange(n, dtype=torch.float64, device=device) * dx
    h = 3.0 + 0.05 * torch.cos(2 * torch.pi * 4 * x / length)

    def laplace(f: torch.Tensor) -> torch.Tensor:  # periodic second difference; explicit limit dx⁴/(8Mγ) ≈ 4e-3
        return (torch.roll(f, -1) - 2 * f + torch.roll(f, 1)) / dx**2

    for _ in range(steps):
        mu = -gamma * laplace(h) + nn(h)  # nn(h): a tensor on h's device
        h = h + dt * mobility * laplace(mu)
    return h


if __name__ == "__main__":
    device = sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
    h = run(device)
    print(f"on {h.device}: h in [{h.min().item():.3f}, {h.max().item():.3f}] nm after {1000 * 2e-3:g} time units")
