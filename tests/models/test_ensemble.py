"""EnsembleCNN1d: batched pass == loop over members, frozen inference plan == forward, symmetries, any N, seeding,
member state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybrid.models.ensemble import EnsembleCNN1d, InferencePlan, circular_pad
from hybrid.models.features import elastic_features
from tests.models import one_torch_thread, random_profiles  # noqa: F401


def make(members: int = 5, **kw: object) -> EnsembleCNN1d:
    cfg: dict[str, object] = dict(channels=6, layers=3, kernel_size=5, dilations=[1, 3], readout_init=1.0)
    cfg["seeds"] = [11 * i + 3 for i in range(members)]
    cfg.update(kw)
    model = EnsembleCNN1d(members, 3, **cfg)  # type: ignore[arg-type]
    return model.eval()


@pytest.fixture
def features() -> torch.Tensor:
    h = random_profiles(np.random.default_rng(5), 3, 40, max_slope=0.6)
    return elastic_features(h, 1.0)


def test_batched_equals_loop_over_members(features: torch.Tensor) -> None:
    model = make()
    with torch.no_grad():
        batched = model(features)
        loop = model.forward_loop(features)
    assert batched.shape == (3, 5, 40) and batched.dtype == torch.float32
    torch.testing.assert_close(batched, loop, rtol=1e-6, atol=1e-6)
    # per-member inputs (training path): member k sees its own profile
    per_member = torch.stack([features.roll(i, dims=-1) for i in range(5)], dim=1)  # (B, K, C, N)
    with torch.no_grad():
        out = model(per_member)
        ref = torch.cat([model.member(i)(per_member[:, i]) for i in range(5)], dim=1)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel_size", [1, 3, 7])
def test_matmul_path_equals_grouped_convolution(features: torch.Tensor, kernel_size: int) -> None:
    model = make(kernel_size=kernel_size, dilations=[1, 2, 5])
    with torch.no_grad():
        model.input_scale.copy_(torch.tensor([0.3, 2.0, 5.0]))
        shared = model(features)  # im2col + batched matmul
        grouped = model(features.unsqueeze(1).expand(-1, 5, -1, -1))  # conv1d(groups=K)
        model.matmul_max_size = 0
        shared_grouped = model(features)  # shared input through conv1d(groups=K)
    torch.testing.assert_close(shared, grouped, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(shared_grouped, grouped, rtol=1e-6, atol=1e-6)
    model.matmul_max_size = 10**9
    x = features.clone().requires_grad_(True)
    model(x).sum().backward()  # the matmul path is differentiable too
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("linear_channels", [[], [0, 1]])
def test_inference_plan_equals_forward_and_is_a_snapshot(features: torch.Tensor, linear_channels: list[int]) -> None:
    model = make(linear_channels=linear_channels, dilations=[1, 2, 5])
    with torch.no_grad():
        model.input_scale.copy_(torch.tensor([0.3, 2.0, 5.0]))
        plan = InferencePlan(model, features.shape[-1])
        ref = model(features)
        assert torch.equal(plan(features), ref)  # bit for bit: the same operations in the same order
        assert torch.equal(plan(features[:1]), model(features[:1]))
        model.matmul_max_size = 0  # too large for the matmul path: the plan hands the input to forward
        assert torch.equal(InferencePlan(model, features.shape[-1])(features), model(features))
        model.readout_bias.add_(1.0)  # a later change of the weights does not reach a built plan
        assert torch.equal(plan(features), ref)
    with pytest.raises(ValueError, match=r"plan built for input \(B, 3, 40\)"):
        plan(features[..., :20])


def test_members_differ_and_baseline_is_linear_law(features: torch.Tensor) -> None:
    model = make()
    with torch.no_grad():
        out = model(features)
        assert out.std(dim=1).mean() > 1e-3  # members are different networks
        model.readout_weight.zero_()
        out0 = model(features)
    expected = (1.0 - 4.0 * features[:, 1]).unsqueeze(1).expand_as(out0)
    torch.testing.assert_close(out0, expected)  # zero correction: the small-slope law 1 - 4 Lambda h


def test_translation_equivariance(features: torch.Tensor) -> None:
    model = make()
    with torch.no_grad():
        out = model(features)
        for shift in (1, 13):
            torch.testing.assert_close(model(features.roll(shift, dims=-1)), out.roll(shift, dims=-1))


def test_mirror_equivariance_end_to_end() -> None:
    h = random_profiles(np.random.default_rng(6), 2, 50, max_slope=0.6)
    model = make(kernel_size=7, dilations=[1, 2, 5])
    with torch.no_grad():
        out = model(elastic_features(h, 1.0))
        mirrored = model(elastic_features(h[:, ::-1].copy(), 1.0))
    torch.testing.assert_close(mirrored, out.flip(-1), rtol=1e-5, atol=1e-5)
    # also on arbitrary (not mirror-even) input channels: every layer commutes with the flip
    x = torch.randn(2, 3, 29)
    with torch.no_grad():
        torch.testing.assert_close(model(x.flip(-1)), model(x).flip(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [5, 17, 64, 257])
def test_runs_on_any_n(n: int) -> None:
    model = make(dilations=[1, 4, 8])  # padding larger than N for the smallest grids
    h = random_profiles(np.random.default_rng(n), 2, n)
    with torch.no_grad():
        out = model(elastic_features(h, 1.0))
        flat = model(elastic_features(np.full((1, n), 3.0), 1.0))
    assert out.shape == (2, 5, n) and torch.isfinite(out).all()
    assert torch.allclose(flat, flat[..., :1].expand_as(flat))  # flat film: uniform prediction


def test_circular_pad_any_size() -> None:
    x = torch.arange(5.0).reshape(1, 1, 5)
    for pad in (0, 2, 5, 12):
        idx = (torch.arange(-pad, 5 + pad)) % 5
        torch.testing.assert_close(circular_pad(x, pad), x[..., idx])


def test_member_seeds_reproduce_single_networks(features: torch.Tensor) -> None:
    model = make()
    single = make(members=1, seeds=[11 * 2 + 3])  # member 2's seed
    with torch.no_grad():
        torch.testing.assert_close(model(features)[:, 2:3], single(features), rtol=1e-6, atol=1e-6)


def test_member_state_roundtrip_and_kernel_cache(features: torch.Tensor) -> None:
    a, b = make(), make(seeds=[100 + i for i in range(5)])
    with torch.inference_mode():
        before = a(features)  # fills the kernel cache
    a.load_member_state_dict(3, b.member_state_dict(3))
    with torch.inference_mode():
        after = a(features)
        torch.testing.assert_close(after[:, 3], b(features)[:, 3])
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3], before[:, 3])  # cache noticed the change


def test_training_mode_gradients_and_param_count() -> None:
    model = make().train()
    x = torch.randn(2, 3, 20)
    model(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # per member: 3 in * 6 out * 3 taps + 6 + 2 * (6 * 6 * 3 + 6) + 6 + 1 readout
    per_member = 3 * 6 * 3 + 6 + 2 * (6 * 6 * 3 + 6) + 6 + 1
    assert model.parameter_count() == 5 * per_member
    assert model.receptive_field == 1 + 2 * 2 * (1 + 3 + 1)
    rebuilt = EnsembleCNN1d(**model.config())
    assert rebuilt.config() == model.config()


def test_training_path_linear_part_by_fft_equals_jvp() -> None:
    """Per-member inputs (training): the exact linear part by impulse responses and FFT ("fft") gives the values
    and the parameter gradients of forward-mode AD on the batch ("jvp") to float64 rounding (1e-12: a few hundred
    roundings of O(1) terms), for distinct inputs per member and an odd length."""
    model = make(linear_channels=[0, 1]).double()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 5, 3, 51, generator=g, dtype=torch.float64)
    target = torch.randn(6, 5, 51, generator=g, dtype=torch.float64)
    outs, grads = {}, {}
    for method in ("jvp", "fft"):
        model.linear_method = method
        model.zero_grad()
        out = model(x)
        (out - target).square().mean().backward()
        outs[method] = out.detach()
        grads[method] = [p.grad.clone() for p in model.parameters()]
    torch.testing.assert_close(outs["fft"], outs["jvp"], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads["fft"], grads["jvp"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert any(float(b.abs().max()) > 0 for b in grads["jvp"])


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="odd"):
        EnsembleCNN1d(kernel_size=4)
    with pytest.raises(ValueError, match="activation"):
        EnsembleCNN1d(activation="relu6")
    with pytest.raises(ValueError, match="expected input"):
        make()(torch.zeros(1, 2, 10))


def test_exact_linear_response_makes_the_correction_second_order() -> None:
    """linear_channels: the correction vanishes with its gradient at the flat profile (so the output is the
    small-slope law to first order); the cached Fourier transfer function (inference) equals jvp (training)."""
    model = make(linear_channels=[0, 1]).double()
    x = np.arange(64)
    shape = np.cos(2 * np.pi * 3 * x / 64) + 0.5 * np.sin(2 * np.pi * 7 * x / 64 + 0.3)
    dev = []
    for amp in (1e-3, 1e-2):
        f = elastic_features(torch.from_numpy(3.0 + amp * shape)[None], 1.0).double()
        with torch.no_grad():
            dev.append(float((model(f) - (1.0 - 4.0 * f[:, 1:2])).abs().max()))
    assert dev[1] / dev[0] == pytest.approx(100.0, rel=0.02)  # O(amplitude^2)
    flat = elastic_features(torch.full((1, 64), 3.0, dtype=torch.float64), 1.0)
    with torch.no_grad():
        torch.testing.assert_close(model(flat), torch.ones(1, 5, 64, dtype=torch.float64), rtol=0, atol=1e-14)
    plain = make().double()  # the same weights without the subtraction: a first-order error of O(amplitude)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert float((plain(f) - (1.0 - 4.0 * f[:, 1:2])).abs().max()) > 100 * dev[1]
    rough = elastic_features(torch.from_numpy(3.0 + 0.7 * shape)[None], 1.0).double()
    with torch.no_grad():
        cached = model(rough)
    direct = model(rough)  # gradients on: torch.func.jvp
    torch.testing.assert_close(cached, direct.detach(), rtol=1e-12, atol=1e-12)
    per_member = rough[:, None].expand(-1, 5, -1, -1)  # training path (grouped convolutions + jvp)
    torch.testing.assert_close(model(per_member).detach(), cached, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.forward_loop(rough).detach(), cached, rtol=1e-12, atol=1e-12)
    direct.square().mean().backward()  # differentiable through the jvp
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert EnsembleCNN1d(**model.config()).linear_channels == [0, 1]
    with pytest.raises(ValueError, match="linear_channels"):
        make(linear_channels=[0, 0])
    with pytest.raises(ValueError, match="linear_channels"):
        make(linear_channels=[3])
