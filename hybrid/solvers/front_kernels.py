"""Right-hand side of the Allen–Cahn front equation on a grid periodic in x and no-flux in y, one kernel per backend.

    ∂φ/∂t = D ∇²φ − (φ − a)(φ² − 1)

φ has shape (ny, nx) (the last axis is x). The Laplacian is the compact 5-point stencil, periodic in x and
reflecting at the two walls in y (φ_{-1} = φ_1, φ_{ny} = φ_{ny-2}: the no-flux condition on a vertex-centred
axis, see :mod:`hybrid.core.grid`). ``front_rhs_numpy`` is the reference; ``make_front_rhs(backend)`` returns the
numba (numpy backend) or torch kernel with the same signature ``(phi, dx, dy, diffusion, asymmetry) -> dφ/dt``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

FrontRhs = Callable[..., Any]


def front_rhs_numpy(phi: np.ndarray, dx: float, dy: float, diffusion: float, asymmetry: float) -> np.ndarray:
    """Plain numpy reference of ∂φ/∂t (shape (ny, nx), see the module docstring)."""
    lap_x = (np.roll(phi, 1, axis=1) - 2.0 * phi + np.roll(phi, -1, axis=1)) / (dx * dx)
    pad = np.concatenate([phi[1:2], phi, phi[-2:-1]], axis=0)  # reflect across the walls
    lap_y = (pad[:-2] - 2.0 * phi + pad[2:]) / (dy * dy)
    return diffusion * (lap_x + lap_y) - (phi - asymmetry) * (phi * phi - 1.0)


@numba.njit(cache=True, parallel=True)
def _front_rhs_numba(phi: np.ndarray, dx: float, dy: float, diffusion: float, asymmetry: float) -> np.ndarray:
    ny, nx = phi.shape
    out = np.empty_like(phi)
    cx, cy = diffusion / (dx * dx), diffusion / (dy * dy)
    for j in numba.prange(ny):
        jm = j - 1 if j > 0 else 1
        jp = j + 1 if j < ny - 1 else ny - 2
        for i in range(nx):
            im = i - 1 if i > 0 else nx - 1
            ip = i + 1 if i < nx - 1 else 0
            p = phi[j, i]
            lap = cx * (phi[j, im] - 2.0 * p + phi[j, ip]) + cy * (phi[jm, i] - 2.0 * p + phi[jp, i])
            out[j, i] = lap - (p - asymmetry) * (p * p - 1.0)
    return out


def _front_rhs_torch(phi: Any, dx: float, dy: float, diffusion: float, asymmetry: float) -> Any:
    import torch

    lap_x = (torch.roll(phi, 1, dims=-1) - 2.0 * phi + torch.roll(phi, -1, dims=-1)) / (dx * dx)
    pad = torch.cat([phi[1:2], phi, phi[-2:-1]], dim=0)
    lap_y = (pad[:-2] - 2.0 * phi + pad[2:]) / (dy * dy)
    return diffusion * (lap_x + lap_y) - (phi - asymmetry) * (phi * phi - 1.0)


KERNELS: dict[str, FrontRhs] = {"reference": front_rhs_numpy, "numpy": _front_rhs_numba, "torch": _front_rhs_torch}


def make_front_rhs(backend: str) -> FrontRhs:
    """The kernel of ``backend`` ("numpy": numba; "torch": CPU or CUDA; "reference": plain numpy)."""
    try:
        return KERNELS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(KERNELS)}") from None


def front_position(phi: np.ndarray, dy: float) -> np.ndarray:
    """Subpixel height h(x) of the φ = 0 level in each column: (ny, nx) -> (nx,) [length], y_j = j dy.

    The lowest sign change from φ > 0 (below) to φ ≤ 0 (above) in the column, linearly interpolated between its
    two points; a column without one gets 0 (all φ ≤ 0) or (ny − 1) dy (all φ > 0).
    """
    phi = np.asarray(phi)
    ny, nx = phi.shape
    above = phi <= 0.0
    has = above.any(axis=0)
    j = np.where(has, np.argmax(above, axis=0), ny - 1)  # first index with φ <= 0
    lower = np.clip(j - 1, 0, ny - 1)
    cols = np.arange(nx)
    p0, p1 = phi[lower, cols], phi[j, cols]
    denom = np.where(p0 - p1 != 0.0, p0 - p1, 1.0)
    frac = np.clip(p0 / denom, 0.0, 1.0)
    h = (lower + frac) * dy
    h = np.where(j == 0, 0.0, h)
    return np.where(has, h, (ny - 1) * dy)
