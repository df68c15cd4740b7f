from __future__ import annotations

import numpy as np
import pytest

from hybrid.core.grid import Grid


def test_1d_grid_spacing_coordinates_and_wavenumbers() -> None:
    g = Grid((10.0,), (20,))
    assert g.shape == (20,) and g.dx == 0.5 and g.ndim == 1
    (x,) = g.coordinates()
    assert x[0] == 0.0 and x[-1] == pytest.approx(9.5)
    (k,) = g.rfft_wavenumbers()
    assert k.shape == (11,)
    np.testing.assert_allclose(k, 2 * np.pi * np.arange(11) / 10.0)
    np.testing.assert_allclose(g.rfft_abs_k(), np.abs(k))


def test_2d_grid_array_shape_is_reversed_coordinates() -> None:
    g = Grid((8.0, 4.0), (16, 8))
    assert g.shape == (8, 16)
    ky, kx = g.rfft_wavenumbers()
    assert ky.shape == (8, 1) and kx.shape == (1, 9)
    assert g.rfft_abs_k().shape == (8, 9)


def test_difference_symbol_matches_the_3_point_laplacian() -> None:
    g = Grid((7.0,), (32,))
    rng = np.random.default_rng(0)
    u = rng.standard_normal(32)
    lap = (np.roll(u, -1) - 2 * u + np.roll(u, 1)) / g.dx**2
    spectral = np.fft.irfft(-g.rfft_difference_symbol() * np.fft.rfft(u), n=32)
    np.testing.assert_allclose(spectral, lap, atol=1e-12 * np.abs(lap).max())


def test_difference_symbol_2d_matches_the_5_point_laplacian() -> None:
    g = Grid((6.0, 5.0), (12, 10))
    u = np.random.default_rng(1).standard_normal(g.shape)
    dx, dy = g.spacing
    lap = (np.roll(u, -1, 1) - 2 * u + np.roll(u, 1, 1)) / dx**2 + (
        np.roll(u, -1, 0) - 2 * u + np.roll(u, 1, 0)
    ) / dy**2
    spectral = np.fft.irfftn(-g.rfft_difference_symbol() * np.fft.rfftn(u), s=g.shape, axes=(0, 1))
    np.testing.assert_allclose(spectral, lap, atol=1e-12 * np.abs(lap).max())


@pytest.mark.parametrize("lengths,points", [((1.0,), (1,)), ((-1.0,), (8,)), ((1.0, 2.0), (8,))])
def test_bad_grids_are_rejected(lengths: tuple[float, ...], points: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        Grid(lengths, points)
