"""Tests of hybrid.models; shared builders of tiny synthetic datasets."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from hybrid.models.data import TermDataset

SLOPE_COEFFICIENT = 3.0
"""Synthetic law: rho/rho0 = 1 - 4 Lambda h + SLOPE_COEFFICIENT * (dh/dx)^2."""


def lambda_h_reference(h: np.ndarray, dx: np.ndarray | float) -> np.ndarray:
    """Lambda h = F^-1[|k| F[h]] with numpy (independent of hybrid.models.features). h (S, N), dx (S,) or float."""
    n = h.shape[-1]
    k = 2 * np.pi * np.fft.rfftfreq(n) / np.reshape(dx, (-1, 1))
    return np.fft.irfft(np.abs(k) * np.fft.rfft(h, axis=-1), n=n, axis=-1)


def slope_reference(h: np.ndarray, dx: np.ndarray | float) -> np.ndarray:
    """Spectral dh/dx with numpy, Nyquist mode dropped."""
    n = h.shape[-1]
    k = 2 * np.pi * np.fft.rfftfreq(n) / np.reshape(dx, (-1, 1))
    mult = 1j * k
    if n % 2 == 0:
        mult[..., -1] = 0
    return np.fft.irfft(mult * np.fft.rfft(h, axis=-1), n=n, axis=-1)


def random_profiles(rng: np.random.Generator, samples: int, points: int, max_slope: float = 0.3) -> np.ndarray:
    """(S, N) smooth random periodic profiles [nm] (dx = 1) with max |slope| <= max_slope, min height 1."""
    x = np.arange(points) / points
    modes = np.arange(1, max(2, points // 6) + 1)
    amp = rng.normal(size=(samples, modes.size)) / modes
    phase = rng.uniform(0, 2 * np.pi, size=(samples, modes.size))
    h = np.einsum("sm,smn->sn", amp, np.cos(2 * np.pi * modes[None, :, None] * x + phase[..., None]))
    slope = np.abs(np.gradient(h, axis=-1)).max(axis=-1, keepdims=True)
    h *= rng.uniform(0.2, 1.0, size=(samples, 1)) * max_slope / slope
    return h - h.min(axis=-1, keepdims=True) + 1.0


def synthetic_dataset(
    samples: int = 120, points: int = 32, group_size: int = 3, seed: int = 0, max_slope: float = 0.3
) -> TermDataset:
    """Tiny dataset with the known law rho/rho0 = 1 - 4 Lambda h + 3 (dh/dx)^2 (spacings vary per sample)."""
    rng = np.random.default_rng(seed)
    h = random_profiles(rng, samples, points, max_slope)
    dx = rng.uniform(0.5, 2.0, size=samples)
    h = h * dx[:, None]  # same shapes in grid units, physical lengths scaled
    target = 1.0 - 4.0 * lambda_h_reference(h, dx) + SLOPE_COEFFICIENT * slope_reference(h, dx) ** 2
    rho0 = rng.uniform(0.5, 2.0, size=samples)
    family = np.array(["random", "ripple"])[np.arange(samples) % 2]
    group = np.arange(samples) // group_size
    return TermDataset(h, target * rho0[:, None], rho0, dx, family, group.astype(np.int64), spec="# synthetic\n")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread in these tests (tiny tensors; extra threads only add barrier waits on a busy
    machine), restoring the previous setting afterwards. Imported by each test module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
