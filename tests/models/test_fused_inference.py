"""The fused CPU inference plan gives the torch reference's answers to float32 rounding.

Tolerance: both paths run float32 (relative rounding 6e-8 per operation) and sum in different orders (BLAS blocks
against torch's batched matmul, a direct circular convolution against an FFT for the linear part) over a few
hundred products per output point through up to five layers; the erf of the fused GELU differs from torch's by at
most 3.4e-7. 1e-5 of the output's magnitude is 100x that rounding and 2000x below the monitor's tolerance (2e-2).
"""

from __future__ import annotations

import math
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

import hybrid
from hybrid.core.state import State
from hybrid.models.card import load_ensemble
from hybrid.models.ensemble import EnsembleCNN1d, InferencePlan
from hybrid.models.features import elastic_features, elastic_features_numpy
from hybrid.models.fused_inference import FusedEnsemblePlan, erf32
from tests.models import one_torch_thread, random_profiles  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def _close(got: np.ndarray | torch.Tensor, ref: torch.Tensor) -> None:
    got_t = got if isinstance(got, torch.Tensor) else torch.from_numpy(got)
    scale = max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(got_t, ref, rtol=0.0, atol=1e-5 * scale)


def test_erf_approximation_is_float32_accurate() -> None:
    x = np.linspace(-6.0, 6.0, 120_001)
    got = np.array([erf32(np.float32(v)) for v in x[::7]], dtype=np.float64)
    ref = np.array([math.erf(v) for v in x[::7]])
    assert np.max(np.abs(got - ref)) < 4e-7


@pytest.mark.parametrize(
    "config",
    [
        dict(channels=6, layers=3, kernel_size=5, dilations=[1, 3], linear_channels=[0, 1]),
        dict(channels=8, layers=2, kernel_size=3, dilations=[2], activation="tanh", baseline_channel=-1),
        dict(channels=4, layers=4, kernel_size=1, dilations=[1], activation="silu"),
        dict(channels=5, layers=2, kernel_size=7, dilations=[1, 4], activation="softplus", linear_channels=[1]),
    ],
)
@pytest.mark.parametrize("n", [9, 40, 130])
def test_fused_plan_equals_the_torch_plan(config: dict, n: int) -> None:
    """Any size, including N below the receptive field (the circular padding and the linear part's response
    wrap around), any activation, with and without the exact linear part and the baseline, batches of 3, the
    layers in one column chunk or in several."""
    model = EnsembleCNN1d(4, 3, readout_init=1.0, seeds=[3, 14, 15, 92], **config).eval()
    with torch.no_grad():
        model.input_scale.copy_(torch.tensor([0.7, 1.3, 2.0]))
    x = elastic_features(random_profiles(np.random.default_rng(n), 3, n, max_slope=0.8), 1.0)
    with torch.no_grad():
        ref = InferencePlan(model, n)(x)
    got = FusedEnsemblePlan(model, n)(x.numpy())
    assert got.shape == (3, 4, n) and got.dtype == np.float32
    _close(got, ref)
    _close(FusedEnsemblePlan(model, n)(x), ref)  # torch in, torch out
    _close(FusedEnsemblePlan(model, n, chunk=16)(x.numpy()), ref)  # layers in column chunks, with a shorter tail


@pytest.mark.parametrize("weights", ["atg_elastic", "front_correction"])
def test_fused_plan_on_the_shipped_ensembles(weights: str) -> None:
    model, _ = load_ensemble(ROOT / "hybrid" / "models" / "weights" / weights, device="cpu")
    c = model.in_channels
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, c, 100)).astype(np.float32))
    with torch.no_grad():
        _close(FusedEnsemblePlan(model, 100)(x), InferencePlan(model, 100)(x))


@pytest.mark.parametrize("weights", ["atg_elastic", None])
def test_fused_plan_on_two_threads_gives_the_same_answers(weights: str | None) -> None:
    """Members shared out over two numba threads, in one column chunk or several: bit for bit the serial plan's
    result (each member's arithmetic is the same), and the calling thread's numba thread count is restored."""
    if weights is None:
        model = EnsembleCNN1d(3, 3, channels=6, layers=3, kernel_size=5, dilations=[1, 3], seeds=[1, 2, 3]).eval()
        n = 40
    else:
        model, _ = load_ensemble(ROOT / "hybrid" / "models" / "weights" / weights, device="cpu")
        n = 100
    x = np.random.default_rng(4).normal(size=(2, model.in_channels, n)).astype(np.float32)
    before = numba.get_num_threads()
    parallel = FusedEnsemblePlan(model, n, threads=2)
    assert parallel.threads == min(2, numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(parallel(x), FusedEnsemblePlan(model, n)(x))
    chunked = FusedEnsemblePlan(model, n, threads=2, chunk=16)  # each member's own chunk scratch, with a tail
    np.testing.assert_array_equal(chunked(x), FusedEnsemblePlan(model, n, chunk=16)(x))
    assert numba.get_num_threads() == before


@pytest.mark.parametrize("n", [64, 300])  # the dense operators (N <= 256) and the FFT path
def test_numpy_features_equal_the_torch_features(n: int) -> None:
    from hybrid.couplers.terms.front_correction import front_features, front_features_numpy

    h = random_profiles(np.random.default_rng(2), 4, n, max_slope=0.9) * 1.7
    np.testing.assert_allclose(elastic_features_numpy(h, 0.8), elastic_features(h, 0.8).numpy(), rtol=0, atol=2e-6)
    np.testing.assert_allclose(front_features_numpy(h, 0.5), front_features(h, 0.5).numpy(), rtol=0, atol=2e-6)


def test_provider_answers_the_same_on_both_paths() -> None:
    """The nn provider's fused path (the CPU default) and its torch path give the same term and uncertainty."""
    case = ROOT / "cases" / "atg_film.toml"
    fused = hybrid.load_provider("elastic", "nn", case=case)
    reference = hybrid.load_provider("elastic", "nn", case=case, inference="torch")
    assert fused.inference == "fused" and reference.inference == "torch"
    for seed in range(3):
        h = 3.0 + random_profiles(np.random.default_rng(seed), 1, 100, max_slope=0.7)[0]
        state = State.from_arrays({"h": h})
        a, b = fused.predict(state), reference.predict(state)
        assert np.max(np.abs(a.mean - b.mean)) / fused.rho0 < 1e-5
        assert abs(a.uncertainty - b.uncertainty) < 1e-6


def test_provider_threads_option_reaches_the_fused_plan() -> None:
    """``threads = 2`` shares the members out over two threads and answers as ``threads = 1`` does."""
    case = ROOT / "cases" / "atg_film.toml"
    one = hybrid.load_provider("elastic", "nn", case=case)
    two = hybrid.load_provider("elastic", "nn", case=case, threads=2)
    h = 3.0 + random_profiles(np.random.default_rng(5), 1, 100, max_slope=0.7)[0]
    state = State.from_arrays({"h": h})
    a, b = one.predict(state), two.predict(state)
    assert two._plan.threads == min(2, numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(a.mean, b.mean)
    assert a.uncertainty == b.uncertainty


def test_fused_inference_refuses_float64() -> None:
    from hybrid.core.config import ConfigError

    case = ROOT / "cases" / "atg_film.toml"
    with pytest.raises(ConfigError, match=r"terms\.elastic\.inference.*float32"):
        hybrid.load_provider("elastic", "nn", case=case, inference="fused", dtype="float64")
    assert hybrid.load_provider("elastic", "nn", case=case, dtype="float64").inference == "torch"


def test_erf_coefficients_come_from_the_fit_tool() -> None:
    """The module's coefficients are what tools/fit_erf.py computes (to the 9 digits written)."""
    import importlib.util

    from hybrid.models import fused_inference

    spec = importlib.util.spec_from_file_location("fit_erf", ROOT / "tools" / "fit_erf.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    p, q = tool.fit()
    np.testing.assert_allclose(p, fused_inference._ERF_P, rtol=1e-7, atol=1e-16)
    np.testing.assert_allclose(q, fused_inference._ERF_Q, rtol=1e-7, atol=1e-16)


def test_mean_and_spread_is_the_mean_and_the_uncertainty_indicator() -> None:
    from hybrid.models.calibration import uncertainty
    from hybrid.models.fused_inference import mean_and_spread

    members = np.random.default_rng(4).normal(1.0, 0.02, size=(5, 97)).astype(np.float32)
    mean, u = mean_and_spread(members)
    np.testing.assert_allclose(mean, members.astype(np.float64).mean(axis=0), rtol=1e-12)
    assert abs(u - float(uncertainty(members.astype(np.float64)))) < 1e-12
    assert abs(u - float(uncertainty(members))) < 1e-7  # numpy's float32 arithmetic on the float32 members
