"""Input features of the neural networks, computed from the physical fields (torch, CPU or CUDA).

The elastic-energy network (docs/physics.md §1, term ``elastic``) sees a periodic film profile h(x) [nm] on the grid
x_i = i dx, i = 0..N-1, only through :func:`elastic_features`. The features are chosen so that the symmetries
of the physics hold by construction:

* translation (roll of the grid) and mirror (x -> -x) equivariance: every channel is a scalar under both;
* scale freedom: linear elasticity has no length scale, so rho/rho0 depends on the *shape* of the profile
  only; scaling h and dx by the same factor leaves every channel unchanged (all lengths are in grid units);
* thickness freedom: rho does not depend on the mean film thickness or on the wetting layer (docs/physics.md:
  "film thickness does not change rho along the surface"), so the mean of h is removed and there is no
  thickness channel;
* any N: nothing depends on the number of points except through the periodic FFT.

The linear-response channel Lambda h is the small-slope law itself (rho/rho0 = 1 - 4 Lambda h + O(slope^2)),
so the network only learns the nonlinear correction on top of it; being computed by FFT over the whole
period it also carries the long-range part of the elastic interaction that a finite receptive field misses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numba
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ELASTIC_CHANNELS",
    "ELASTIC_FEATURES",
    "FEATURES",
    "elastic_features",
    "elastic_features_numpy",
]

ELASTIC_FEATURES: Final = "elastic-v1"
"""Name of the feature set of :func:`elastic_features`, recorded in model cards."""

ELASTIC_CHANNELS: Final = ("h_dev", "lambda_h", "slope2")
"""Channel names of :func:`elastic_features`, in order (index 1 = Lambda h, the linear-response baseline)."""

_wavenumber_cache: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}


def _grid_wavenumbers(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(2, N//2 + 1) complex multipliers [|k| dx, i k dx] of the rfft modes (Nyquist zeroed for i k)."""
    key = (n, dtype, device)
    mult = _wavenumber_cache.get(key)
    if mult is None:
        kdx = 2.0 * np.pi * np.arange(n // 2 + 1) / n  # k * dx: dimensionless wavenumber in grid units
        ik = 1j * kdx
        if n % 2 == 0:
            ik[-1] = 0.0  # derivative of the Nyquist mode is not defined on the grid (keeps h_x real, odd)
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        mult = torch.as_tensor(np.stack([kdx.astype(complex), ik]), dtype=cdtype, device=device)
        if len(_wavenumber_cache) > 64:
            _wavenumber_cache.clear()
        _wavenumber_cache[key] = mult
    return mult


def elastic_features(h: Tensor | np.ndarray, dx: float | Tensor | np.ndarray) -> Tensor:
    """Scale-free, mirror-even, translation-equivariant features of periodic film profiles.

    Channels (all dimensionless; index in :data:`ELASTIC_CHANNELS`):

    0. ``h_dev`` = (h - mean h) / dx: height deviation in grid units.
    1. ``lambda_h`` = Lambda h = F^-1[|k| F[h]], with |k| = 2 pi m / (N dx) [1/nm] and h [nm]: the product
       of a height and a wavenumber, so dimensionless (computed as F^-1[|k dx| F[h_dev]] in grid units).
       The small-slope law is rho/rho0 = 1 - 4 Lambda h (docs/physics.md §1). Lambda of a constant is 0.
    2. ``slope2`` = (dh/dx)^2, the squared spectral derivative (Nyquist mode dropped for even N): the
       leading nonlinearity of the elastic problem is second order in the slope.

    Args:
        h: (B, N) film profiles [nm] on x_i = i dx (any float dtype, numpy or torch, any device; a numpy
            array is wrapped without a copy). Only the shape of h matters: its mean is removed.
        dx: grid spacing [nm], a float or a (B,) array of per-profile spacings.

    Returns:
        (B, 3, N) float32 tensor on h's device. Computed in float64 when h is float64, then rounded.

    Raises:
        ValueError: if h is not 2-D or N < 2, or dx has the wrong size.
    """
    h = torch.as_tensor(h)
    if h.ndim != 2 or h.shape[-1] < 2:
        raise ValueError(f"h must have shape (B, N) with N >= 2, got {tuple(h.shape)}")
    work = torch.float64 if h.dtype == torch.float64 else torch.float32
    h = h.to(work)
    n = h.shape[-1]
    dx_t = torch.as_tensor(dx, dtype=work, device=h.device)
    if dx_t.ndim > 0:
        if dx_t.numel() != h.shape[0]:
            raise ValueError(f"dx must be a float or have shape ({h.shape[0]},), got {tuple(dx_t.shape)}")
        dx_t = dx_t.reshape(-1, 1)
    g = (h - h.mean(dim=-1, keepdim=True)) / dx_t  # (B, N) heights in grid units
    spec = torch.fft.rfft(g, dim=-1).unsqueeze(1) * _grid_wavenumbers(n, work, h.device)  # (B, 2, M)
    lam_slope = torch.fft.irfft(spec, n=n, dim=-1)  # (B, 2, N): Lambda h, dh/dx
    out = torch.stack((g, lam_slope[:, 0], lam_slope[:, 1].square()), dim=1)
    return out.to(torch.float32)


DENSE_OPERATOR_POINTS: Final = 256
"""Largest N for which :func:`elastic_features_numpy` applies Lambda and d/dx as one dense (N, 2N) matrix: below
it one small matrix product costs less than the two FFT calls' fixed overhead (~40 us at N = 100)."""

_numpy_operator_cache: dict[int, np.ndarray] = {}


def _numpy_operator(n: int) -> np.ndarray:
    """The grid operators (Lambda, d/dx) on N points in float64: for N <= :data:`DENSE_OPERATOR_POINTS` their
    dense matrix (N, 2N), row i = (Lambda e_i, d/dx e_i), otherwise their Fourier multiplier (2, N // 2 + 1)."""
    op = _numpy_operator_cache.get(n)
    if op is None:
        mult = _grid_wavenumbers(n, torch.float64, torch.device("cpu")).numpy()
        if n <= DENSE_OPERATOR_POINTS:
            basis = np.eye(n)
            op = np.fft.irfft(np.fft.rfft(basis, axis=-1)[:, None, :] * mult, n=n, axis=-1).reshape(n, 2 * n)
        else:
            op = mult
        if len(_numpy_operator_cache) > 16:  # at most ~16 MiB of dense matrices
            _numpy_operator_cache.clear()
        _numpy_operator_cache[n] = op
    return op


@numba.njit(error_model="numpy", cache=True)
def _dense_elastic_features(h: np.ndarray, dx: float, op: np.ndarray, out: np.ndarray) -> None:
    """out (B, 3, N) float32 = (h_dev, Lambda h, slope2) of h (B, N) float64 with the dense operators op (N, 2N),
    accumulated in float64 row by row (each row update vectorises)."""
    batch, n = h.shape
    acc = np.empty(2 * n)
    for b in range(batch):
        mean = 0.0
        for i in range(n):
            mean += h[b, i]
        mean /= n
        acc[:] = 0.0
        for i in range(n):
            g = (h[b, i] - mean) / dx
            out[b, 0, i] = g
            row = op[i]
            for j in range(2 * n):
                acc[j] += g * row[j]
        for i in range(n):
            out[b, 1, i] = acc[i]
            out[b, 2, i] = acc[n + i] * acc[n + i]


def elastic_features_numpy(h: np.ndarray, dx: float) -> np.ndarray:
    """:func:`elastic_features` computed with numpy (for the fused CPU inference path).

    For N <= :data:`DENSE_OPERATOR_POINTS` the spectral operators are applied as one dense float64 matrix product
    (the same linear maps, built once per N from the FFT), above it by FFT.

    Args:
        h: (B, N) film profiles [nm] (any float dtype; computed in float64).
        dx: grid spacing [nm].

    Returns:
        (B, 3, N) float32 numpy array, equal to ``elastic_features(h, dx)`` to float32 rounding.
    """
    h = np.asarray(h, dtype=np.float64)
    n = h.shape[-1]
    op = _numpy_operator(n)
    out = np.empty((h.shape[0], 3, n), dtype=np.float32)
    if n <= DENSE_OPERATOR_POINTS:
        _dense_elastic_features(np.ascontiguousarray(h), float(dx), op, out)
        return out
    g = (h - h.mean(axis=-1, keepdims=True)) / dx
    lam_slope = np.fft.irfft(np.fft.rfft(g, axis=-1)[:, None, :] * op, n=n, axis=-1)
    out[:, 0] = g
    out[:, 1] = lam_slope[:, 0]
    out[:, 2] = lam_slope[:, 1] * lam_slope[:, 1]
    return out


FEATURES: Final[dict[str, Callable[[Tensor | np.ndarray, float | Tensor | np.ndarray], Tensor]]] = {
    ELASTIC_FEATURES: elastic_features,
}
"""Feature-set name (as recorded in a model card's ``features``) -> feature function."""
