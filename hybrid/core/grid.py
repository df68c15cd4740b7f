"""Uniform grids in 1D and 2D: spacing, coordinates and Fourier wavenumbers.

Axis convention: a case file lists ``lengths`` and ``points`` in coordinate order ``(x, y)``; arrays are stored
row-major with the *last* array axis along x, i.e. a 2D field has array shape ``(ny, nx)`` (image convention,
as in the HDF5 outputs ``fields/grain (F, ny, nx)``). A 1D field has shape ``(nx,)``. Grid points of a periodic
axis sit at ``x_i = i * dx`` with ``dx = L / n`` (the point at ``x = L`` is the image of ``x = 0``).

A non-periodic axis is a *no-flux* (homogeneous Neumann) axis with points on both walls, ``y_j = j * dy``,
``dy = L / (n - 1)``; a compact stencil reflects across a wall (``φ_{-1} = φ_1``). Such a field is the restriction
of its even extension, which is periodic with period 2L on ``2 (n - 1)`` points, so spectral (IMEX) steps work on
any grid through :meth:`Grid.spectral_grid` (the periodic grid of the extension): its Fourier modes along a
no-flux axis are the cosines that the Neumann condition allows, and the compact stencil's symbol is exact there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A uniform grid.

    Attributes:
        lengths: domain length along each coordinate (x, y) [model length unit, e.g. nm].
        points: number of grid points along each coordinate (x, y).
        periodic: whether each coordinate axis is periodic (default: all periodic).
    """

    lengths: tuple[float, ...]
    points: tuple[int, ...]
    periodic: tuple[bool, ...] = field(default=())

    def __post_init__(self) -> None:
        lengths = tuple(float(v) for v in self.lengths)
        points = tuple(int(v) for v in self.points)
        if len(lengths) != len(points) or len(lengths) not in (1, 2):
            raise ValueError(f"Grid needs 1 or 2 axes with matching lengths/points, got {lengths} and {points}")
        if any(v <= 0 for v in lengths) or any(n < 2 for n in points):
            raise ValueError(f"Grid lengths must be > 0 and points >= 2, got {lengths} and {points}")
        periodic = tuple(bool(p) for p in self.periodic) if self.periodic else (True,) * len(lengths)
        if len(periodic) != len(lengths):
            raise ValueError("Grid.periodic needs one flag per axis")
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "periodic", periodic)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (1 or 2)."""
        return len(self.points)

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape of a scalar field: ``(nx,)`` or ``(ny, nx)``."""
        return tuple(reversed(self.points))

    @property
    def spacing(self) -> tuple[float, ...]:
        """Grid spacing per coordinate (dx, dy) [length unit]."""
        return tuple(
            L / n if p else L / (n - 1) for L, n, p in zip(self.lengths, self.points, self.periodic, strict=True)
        )

    @property
    def dx(self) -> float:
        """Spacing along x [length unit]."""
        return self.spacing[0]

    def coordinates(self) -> tuple[np.ndarray, ...]:
        """1D coordinate arrays per coordinate axis (x, y), each of shape (n,)."""
        return tuple(np.arange(n) * d for n, d in zip(self.points, self.spacing, strict=True))

    @property
    def no_flux_array_axes(self) -> tuple[int, ...]:
        """Array axes (negative indices) of the no-flux coordinate axes, e.g. ``(-2,)`` for a no-flux y."""
        return tuple(-1 - c for c, p in enumerate(self.periodic) if not p)

    def spectral_grid(self) -> Grid:
        """The periodic grid on which spectral operators act: this grid if it is periodic, else the even extension
        of every no-flux axis (length 2L, ``2 (n - 1)`` points, the same spacing)."""
        if all(self.periodic):
            return self
        lengths = tuple(L if p else 2 * L for L, p in zip(self.lengths, self.periodic, strict=True))
        points = tuple(n if p else 2 * (n - 1) for n, p in zip(self.points, self.periodic, strict=True))
        return Grid(lengths, points)

    @cached_property
    def _rfft_wavenumbers(self) -> tuple[np.ndarray, ...]:
        if not all(self.periodic):
            return self.spectral_grid()._rfft_wavenumbers
        ks: list[np.ndarray] = []
        # array axes are reversed coordinate axes; rfft acts on the last array axis (x)
        for axis, (L, n) in enumerate(zip(reversed(self.lengths), reversed(self.points), strict=True)):
            last = axis == self.ndim - 1
            k = 2 * np.pi * (np.fft.rfftfreq(n, d=L / n) if last else np.fft.fftfreq(n, d=L / n))
            shape = [1] * self.ndim
            shape[axis] = k.size
            ks.append(k.reshape(shape))
        return tuple(ks)

    def rfft_wavenumbers(self) -> tuple[np.ndarray, ...]:
        """Angular wavenumbers [1/length] broadcastable to the ``rfftn`` layout of :meth:`spectral_grid`, one array
        per *array* axis."""
        return self._rfft_wavenumbers

    def rfft_abs_k(self) -> np.ndarray:
        """|k| [1/length] on the rfftn layout (the symbol of (-Laplacian)^(1/2))."""
        return np.sqrt(sum(k**2 for k in self._rfft_wavenumbers))

    def rfft_difference_symbol(self) -> np.ndarray:
        """Symbol of minus the 3-point (1D) / 5-point (2D) discrete Laplacian on the rfftn layout [1/length²].

        For one axis it is ``(2 sin(k d / 2) / d)²``; it tends to k² for k d → 0. A spectral implicit step that uses
        it is consistent with a real-space explicit step that uses the compact second difference.
        """
        sym: np.ndarray = np.zeros(1)
        for k, d in zip(self._rfft_wavenumbers, reversed(self.spectral_grid().spacing), strict=True):
            sym = sym + (2.0 * np.sin(0.5 * k * d) / d) ** 2
        return sym
