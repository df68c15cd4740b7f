"""Elastic features: values against numpy references, symmetries, scale and thickness freedom."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybrid.models.features import ELASTIC_CHANNELS, FEATURES, elastic_features
from tests.models import lambda_h_reference, one_torch_thread, random_profiles, slope_reference  # noqa: F401

LAM, SLOPE2 = ELASTIC_CHANNELS.index("lambda_h"), ELASTIC_CHANNELS.index("slope2")


@pytest.fixture
def profiles() -> np.ndarray:
    return random_profiles(np.random.default_rng(1), 4, 48, max_slope=0.5)


@pytest.mark.parametrize("n", [16, 33, 100])
def test_values_match_numpy_reference(n: int) -> None:
    h = random_profiles(np.random.default_rng(n), 3, n) * 1.7
    dx = np.array([0.5, 1.0, 2.0])
    f = elastic_features(h, dx)
    assert f.shape == (3, len(ELASTIC_CHANNELS), n) and f.dtype == torch.float32
    np.testing.assert_allclose(f[:, 0], (h - h.mean(-1, keepdims=True)) / dx[:, None], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(f[:, LAM], lambda_h_reference(h, dx), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f[:, SLOPE2], slope_reference(h, dx) ** 2, rtol=1e-5, atol=1e-6)


def test_sinusoid_gives_small_slope_law() -> None:
    """h = h0 + A cos(kx): Lambda h = A k cos(kx) (docs/physics.md), slope^2 = (A k sin kx)^2."""
    n, length, mode, amp = 64, 100.0, 5, 0.3
    x = np.arange(n) * length / n
    k = 2 * np.pi * mode / length
    h = 7.0 + amp * np.cos(k * x)
    f = elastic_features(h[None], length / n)[0].double().numpy()
    np.testing.assert_allclose(f[LAM], amp * k * np.cos(k * x), atol=1e-6)
    np.testing.assert_allclose(f[SLOPE2], (amp * k * np.sin(k * x)) ** 2, atol=1e-6)


def test_scale_free_and_thickness_free(profiles: np.ndarray) -> None:
    f = elastic_features(profiles, 1.0)
    torch.testing.assert_close(elastic_features(profiles * 3.7, 3.7), f, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(elastic_features(profiles + 12.0, 1.0), f, rtol=1e-5, atol=1e-5)


def test_translation_and_mirror_equivariance(profiles: np.ndarray) -> None:
    f = elastic_features(profiles, 0.8)
    torch.testing.assert_close(elastic_features(np.roll(profiles, 7, axis=-1), 0.8), f.roll(7, dims=-1))
    torch.testing.assert_close(elastic_features(profiles[:, ::-1].copy(), 0.8), f.flip(-1), rtol=1e-5, atol=1e-6)


def test_inputs_dtypes_and_per_sample_dx(profiles: np.ndarray) -> None:
    dx = np.array([0.5, 1.0, 1.5, 2.0])
    batched = elastic_features(torch.from_numpy(profiles), torch.from_numpy(dx))
    single = torch.cat([elastic_features(profiles[i : i + 1], float(dx[i])) for i in range(4)])
    torch.testing.assert_close(batched, single)
    f32 = elastic_features(torch.from_numpy(profiles).float(), 1.0)
    torch.testing.assert_close(f32, elastic_features(profiles, 1.0), rtol=1e-4, atol=1e-4)
    assert FEATURES["elastic-v1"] is elastic_features


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        elastic_features(np.ones(8), 1.0)
    with pytest.raises(ValueError, match="dx"):
        elastic_features(np.ones((2, 8)), np.ones(3))
