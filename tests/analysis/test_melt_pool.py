"""Melt-pool descriptors (hybrid/analysis/melt_pool.py) against analytic temperature fields with a known liquidus
contour: a cone (piecewise linear: the linear interpolation is exact), an ellipse (quadratic: the interpolation
error has a closed-form bound), a pool below the top, none at all, and one reaching the bottom."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid.analysis.melt_pool import melt_pool

TL = 1923.0  # liquidus [K]


def grid(nz: int, nx: int, h: float, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    c = 0.5 if centred else 0.0
    return (np.arange(nz) + c) * h, (np.arange(nx) + c) * h


@pytest.mark.parametrize("centred", [False, True])
def test_a_cone_is_measured_exactly(centred: bool) -> None:
    """T = T_l + A (1 − |x − xc|/a − d/b): piecewise linear in x and in the depth d, so
    the interpolated crossings are exact. Nodal samples: depth b and width 2a with xc on a sample column
    (1e-12 relative). Cell-centred: the top row lies at dz/2, where the section's width is 2a (1 − (h/2)/b)."""
    h, a, b, amp = 1e-5, 123.4e-6, 47.3e-6, 600.0
    d, x = grid(40, 80, h, centred)
    xc = x[37]
    temp = TL + amp * (1.0 - np.abs(x[None, :] - xc) / a - d[:, None] / b)
    pool = melt_pool(temp, h, TL, cell_centred=centred)
    assert pool.depth == pytest.approx(b, rel=1e-12)
    width = 2 * a * (1.0 - d[0] / b)
    assert pool.width == pytest.approx(width, rel=1e-12)
    assert pool.peak == pytest.approx(temp.max(), rel=0) and not pool.bottomed


@pytest.mark.parametrize("h", [2e-5, 1e-5, 3.7e-6])
def test_an_ellipse_is_measured_within_the_interpolation_bound(h: float) -> None:
    """T = T_l + A (1 − (x − xc)²/a² − d²/b²): the liquidus contour is the half ellipse of semi-axes a (along x) and
    b (depth). Linear interpolation of a concave quadratic between two samples bracketing the crossing is off by at
    most (h²/8) |T''|/|T'| at the crossing: h²/(8 b) in depth (T' = −2A/b, T'' = −2A/b²) and h²/(8 a) at each end of
    the width, and it falls short (the chord lies below the curve). The depth column nearest xc misses the apex by
    δ ≤ h/2, which lowers the depth by at most b (1 − √(1 − δ²/a²)) more."""
    a, b, amp = 161e-6, 53e-6, 700.0
    d, x = grid(int(3e-4 / h), int(1e-3 / h), h, False)
    xc = 0.4e-3 + 0.3 * h
    temp = TL + amp * (1.0 - (x[None, :] - xc) ** 2 / a**2 - d[:, None] ** 2 / b**2)
    pool = melt_pool(temp, h, TL)
    apex = b * (1.0 - np.sqrt(1.0 - (0.5 * h) ** 2 / a**2))
    assert b - h * h / (8 * b) - apex - 1e-15 <= pool.depth <= b + 1e-15
    assert 2 * a - h * h / (4 * a) - 1e-15 <= pool.width <= 2 * a + 1e-15
    assert pool.peak <= TL + amp and pool.peak == temp.max()


def test_nothing_molten_gives_zero_depth_and_width() -> None:
    temp = np.full((10, 20), 1500.0)
    temp[0, 7] = 1922.0
    pool = melt_pool(temp, (2e-5, 1e-5), TL)
    assert (pool.depth, pool.width, pool.peak, pool.bottomed) == (0.0, 0.0, 1922.0, False)


def test_anisotropic_spacing_origin_and_a_pool_to_the_bottom() -> None:
    """(dx, dz) = (20, 10) µm and a patch origin: a column molten down to the last row gives that row's depth and
    ``bottomed``; the width (top row linear in x: exact) ends at the crossings."""
    nz, nx, dx, dz = 6, 11, 2e-5, 1e-5
    temp = np.full((nz, nx), 1000.0)
    temp[:, 5] = 2000.0
    temp[0] = TL + 100.0 - 50.0 * np.abs(np.arange(nx) - 5)  # molten at |j − 5| ≤ 2, crossing at |j − 5| = 2
    pool = melt_pool(temp, (dx, dz), TL, cell_centred=True, origin=(1e-3, 0.0))
    assert pool.bottomed and pool.depth == pytest.approx((nz - 0.5) * dz, rel=1e-12)
    assert pool.width == pytest.approx(2 * 2.0 * dx, rel=1e-12)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="finite 2D"):
        melt_pool(np.zeros(5), 1e-5, TL)
    with pytest.raises(ValueError, match="spacing"):
        melt_pool(np.zeros((3, 3)), 0.0, TL)
