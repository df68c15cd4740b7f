"""Melt-pool descriptors of a laser-track temperature field (docs/laser.md): depth, width and peak temperature.

The field is a 2D x–z section T (nz, nx) [K] of the plate, row 0 the top, columns along the scan x; its samples sit
at x_j = x0 + (j + c) dx, d_i = d0 + (i + c) dz (d the depth below the top surface), c = 0 for nodal fields (the
coarse model's E converted to T) and c = ½ for cell-centred ones (``fields/T``, the patch ``patch/T``), with
(x0, d0) the position of the grid's corner (for the patch: ``patch/origin``).

- depth [m]: the deepest point at or above the liquidus: in each column the deepest molten sample and, when the
  sample below it is not molten, the liquidus crossing between the two by linear interpolation along z; the largest
  over the columns. A pool reaching the last row gives that row's depth (a lower bound).
- width [m]: the extent along x of the molten top surface: the molten run of the top row around its hottest
  sample, each end moved to the liquidus crossing with its non-molten neighbour by linear interpolation along x
  (an end at the field's edge stays at the last sample). In this x–z section the scan runs along x, so this is the
  pool's surface length along the scan (its extent across the track is not in the section). For a cell-centred
  field the top row lies at depth dz/2 and stands for the surface.
- peak [K]: the largest sample.

With no sample at or above the liquidus, depth and width are 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MeltPool", "melt_pool"]


@dataclass(frozen=True)
class MeltPool:
    """Melt-pool descriptors (module docstring): ``depth`` [m], ``width`` [m] (surface extent along x),
    ``peak`` [K], and ``bottomed``: whether the molten region reaches the field's last row (depth a lower bound)."""

    depth: float
    width: float
    peak: float
    bottomed: bool = False


def melt_pool(
    temp: np.ndarray,
    spacing: float | tuple[float, float],
    liquidus: float,
    *,
    cell_centred: bool = False,
    origin: tuple[float, float] = (0.0, 0.0),
) -> MeltPool:
    """Depth, width and peak of the melt pool in ``temp`` (nz, nx) [K] (module docstring).

    Args:
        temp: temperature (nz, nx) [K], row 0 at the top, columns along x.
        spacing: sample spacing [m], one value or (dx, dz).
        liquidus: T_l [K]; molten means T ≥ T_l.
        cell_centred: samples at cell centres ((i + ½) dz) instead of nodes (i dz).
        origin: (x0, d0) [m] of the grid's corner (d0: the depth of its top edge, 0 for a field from the surface).

    Raises:
        ValueError: ``temp`` is not 2D or holds non-finite values, or a spacing is not > 0.
    """
    t = np.asarray(temp, dtype=np.float64)
    if t.ndim != 2 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"temp must be a finite 2D array (nz, nx); got shape {t.shape}")
    if isinstance(spacing, tuple | list):
        dx, dz = float(spacing[0]), float(spacing[1])
    else:
        dx = dz = float(spacing)
    if not (dx > 0.0 and dz > 0.0):
        raise ValueError(f"spacing must be > 0; got dx = {dx}, dz = {dz}")
    nz, nx = t.shape
    c = 0.5 if cell_centred else 0.0
    depth_of = origin[1] + (np.arange(nz) + c) * dz
    x_of = origin[0] + (np.arange(nx) + c) * dx
    peak = float(t.max())
    molten = t >= liquidus
    if not molten.any():
        return MeltPool(0.0, 0.0, peak)

    # depth: per column the deepest molten sample, then the crossing toward the sample below it
    cols = np.flatnonzero(molten.any(axis=0))
    deepest = nz - 1 - np.argmax(molten[::-1, cols], axis=0)  # row of the deepest molten sample per column
    bottomed = bool(np.any(deepest == nz - 1))
    below = np.minimum(deepest + 1, nz - 1)
    t_a, t_b = t[deepest, cols], t[below, cols]
    inside = deepest < nz - 1
    frac = np.where(inside, (t_a - liquidus) / np.where(inside, t_a - t_b, 1.0), 0.0)
    depth = float(np.max(depth_of[deepest] + frac * dz))

    # width: the molten run of the top row around its hottest sample
    top = t[0]
    width = 0.0
    if molten[0].any():
        j = int(np.argmax(top))
        lo = j
        while lo > 0 and top[lo - 1] >= liquidus:
            lo -= 1
        hi = j
        while hi < nx - 1 and top[hi + 1] >= liquidus:
            hi += 1
        left = x_of[lo] - (dx * (top[lo] - liquidus) / (top[lo] - top[lo - 1]) if lo > 0 else 0.0)
        right = x_of[hi] + (dx * (top[hi] - liquidus) / (top[hi] - top[hi + 1]) if hi < nx - 1 else 0.0)
        width = float(right - left)
    return MeltPool(depth, width, peak, bottomed)
