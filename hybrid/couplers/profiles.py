"""Film profiles h(x) [nm] the elastic data sets are made of: multi-mode random roughness, fractal Perlin noise,
frames picked from an evolution; each drawn with a slope cap and a floor (see :mod:`hybrid.couplers.dataset` for the
families' options).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["enforce_floor", "max_slope", "perlin_noise", "perlin_profiles", "random_profiles", "select_frames"]


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def max_slope(s: np.ndarray, length: float) -> float:
    """max |s'| of the trigonometric interpolant at the grid points (exact for band-limited profiles)."""
    n = s.shape[-1]
    k = 2 * np.pi * np.fft.rfftfreq(n, d=length / n)
    if n % 2 == 0:
        k[-1] = 0.0  # the Nyquist mode has no derivative on the grid
    return float(np.abs(np.fft.irfft(1j * k * np.fft.rfft(s), n=n)).max())


def _scaled(
    rng: np.random.Generator, shape: np.ndarray, mean: float, opts: Mapping[str, Any], length: float
) -> np.ndarray:
    """mean + A * shape/RMS(shape), A log-uniform in the amplitude range below the slope cap; then h >= floor."""
    s = shape - shape.mean()
    s /= max(float(s.std()), 1e-300)
    lo, hi = opts["amplitude"]
    cap = opts["max_slope"] / max(max_slope(s, length), 1e-300)
    amp = log_uniform(rng, lo, min(hi, cap)) if cap > lo else cap
    return enforce_floor(mean + amp * s, opts["floor"], opts["negative"])


def enforce_floor(h: np.ndarray, floor: float, how: str) -> np.ndarray:
    """h >= floor: shift the whole profile up ("shift") or clip ("clip")."""
    low = float(h.min())
    if low >= floor:
        return h
    return h + (floor - low) if how == "shift" else np.maximum(h, floor)


def random_profiles(
    rng: np.random.Generator, count: int, length: float, points: int, opts: Mapping[str, Any]
) -> np.ndarray:
    """Multi-mode random roughness profiles (``kind = "random"``).

    Args:
        rng: generator (draws happen profile by profile, in order).
        count: number of profiles.
        length: L [nm]. points: N.
        opts: resolved family table (mean, amplitude, modes, exponent, max_slope, floor, negative).

    Returns:
        (count, N) float64 profiles h [nm] >= floor on x_i = i L/N.
    """
    out = np.empty((count, points))
    for j in range(count):
        mean = uniform(rng, *opts["mean"])
        top = int(rng.integers(opts["modes"][0], opts["modes"][1] + 1))
        beta = uniform(rng, *opts["exponent"])
        m = np.arange(1, top + 1)
        coef = (rng.standard_normal(top) + 1j * rng.standard_normal(top)) * m**-beta
        spec = np.zeros(points // 2 + 1, dtype=complex)
        spec[1 : top + 1] = coef
        out[j] = _scaled(rng, np.fft.irfft(spec, n=points), mean, opts, length)
    return out


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(u: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Periodic 1D Perlin gradient noise.

    Args:
        u: lattice coordinates (any real values; the period is ``len(gradients)`` cells).
        gradients: (n,) gradient at each lattice point.

    Returns:
        Noise at u, same shape: g_j t + fade(t) (g_{j+1} (t - 1) - g_j t), t = u - j, j = floor(u); C2, zero at
        the lattice points.
    """
    n = len(gradients)
    j = np.floor(u).astype(np.int64)
    t = u - j
    g0 = gradients[j % n]
    g1 = gradients[(j + 1) % n]
    a, b = g0 * t, g1 * (t - 1.0)
    return a + _fade(t) * (b - a)


def perlin_profiles(
    rng: np.random.Generator, count: int, length: float, points: int, opts: Mapping[str, Any]
) -> np.ndarray:
    """Fractal Perlin-noise profiles (``kind = "perlin"``).

    Args:
        rng: generator (draws happen profile by profile, in order).
        count: number of profiles.
        length: L [nm]. points: N.
        opts: resolved family table (mean, amplitude, wavelength, octaves, persistence, min_wavelength,
            max_slope, floor, negative).

    Returns:
        (count, N) float64 profiles h [nm] >= floor.
    """
    x = np.arange(points) / points  # x / L
    out = np.empty((count, points))
    for j in range(count):
        mean = uniform(rng, *opts["mean"])
        cells = max(1, round(length / log_uniform(rng, *opts["wavelength"])))
        persistence = uniform(rng, *opts["persistence"])
        offset = float(rng.uniform())
        total = np.zeros(points)
        for o in range(int(opts["octaves"])):
            n = cells * 2**o
            if o > 0 and length / n < opts["min_wavelength"]:
                break
            grads = rng.uniform(-1.0, 1.0, size=n)
            total += persistence**o * perlin_noise((x + offset / cells) * n, grads)
        if not np.any(total - total.mean()):  # vanishing noise (all gradients ~0): fall back to one cosine
            total = np.cos(2 * np.pi * cells * x)
        out[j] = _scaled(rng, total, mean, opts, length)
    return out


def select_frames(frames: np.ndarray, times: np.ndarray, count: int, spacing: str = "progress") -> np.ndarray:
    """Indices of ``count`` frames spread over an evolution, strictly increasing, the first frame included.

    Args:
        frames: (F, N) candidate profiles [nm], in time order.
        times: (F,) their times.
        count: number of frames to pick (<= F).
        spacing: "time" (evenly in time) or "progress": evenly in s = (a + b)/2 with a the running maximum of
            log RMS(h) and b the accumulated RMS change of h between candidates, each normalised to [0, 1].

    Returns:
        (count,) int64 indices.
    """
    nf = len(frames)
    if count > nf:
        raise ValueError(f"cannot pick {count} frames from {nf}")
    if spacing == "time":
        s = (times - times[0]) / max(float(times[-1] - times[0]), 1e-300)
    else:
        rms = np.log(np.maximum(frames.std(axis=1), 1e-12))
        a = np.maximum.accumulate(rms) - rms[0]
        change = np.concatenate([[0.0], np.cumsum(np.sqrt(np.mean(np.diff(frames, axis=0) ** 2, axis=1)))])
        s = 0.5 * (a / a[-1] if a[-1] > 0 else a) + 0.5 * (change / change[-1] if change[-1] > 0 else change)
        s = s / s[-1] if s[-1] > 0 else np.linspace(0.0, 1.0, nf)
    targets = np.linspace(0.0, 1.0, count)
    idx = np.minimum(np.searchsorted(s, targets - 1e-12, side="left"), nf - 1).astype(np.int64)
    # make strictly increasing while staying in range: forward then backward pass
    for i in range(1, count):
        idx[i] = max(idx[i], idx[i - 1] + 1)
    for i in range(count - 1, -1, -1):
        idx[i] = min(idx[i], nf - count + i)
        if i < count - 1:
            idx[i] = min(idx[i], idx[i + 1] - 1)
    return idx
