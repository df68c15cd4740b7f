"""Whole-model jump surrogate: network symmetries, tiled inference, the monitored stepper, cases and compare."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import hybrid
from hybrid.core.config import ConfigError
from hybrid.core.io import read_output
from hybrid.core.state import State
from hybrid.couplers.compare import compare
from hybrid.models import jump_net
from hybrid.models.jump_net import (
    EnsembleJumpNet2d,
    field_inputs,
    jump_members,
    rate_residual,
    relative_spread,
    window_error,
)

ROOT = Path(__file__).resolve().parents[2]
TINY_SPEC = ROOT / "datasets" / "graingrowth_trajectories_tiny.toml"

# the tiny trajectories' case: 32² grid, dx = 2, 8 order parameters, dt = 0.25, reassign every 20 steps
TINY_SETS = {
    "grid.shape": [32, 32],
    "grid.lengths": [64.0, 64.0],
    "initial.grains": 6,
    "model.order_parameters": 8,
}


def _eta(seed: int = 0, q: int = 6, n: int = 32) -> torch.Tensor:
    """Smooth random order parameters in [0, 1] (not physical; enough for symmetry checks)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(q, n, n, generator=g, dtype=torch.float64)
    for _ in range(3):  # periodic smoothing
        x = (x + x.roll(1, 1) + x.roll(-1, 1) + x.roll(1, 2) + x.roll(-1, 2)) / 5
    return (x - x.amin()) / (x.amax() - x.amin())


def _model(seed: int = 0) -> EnsembleJumpNet2d:
    torch.manual_seed(seed)
    m = EnsembleJumpNet2d(members=3, channels=4, dilations=(1, 2), head_channels=3).double().eval()
    with torch.no_grad():
        m.head_out.weight.mul_(10.0)  # a visible output
    return m


def test_permutation_equivariance() -> None:
    m, eta = _model(), _eta()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    a = jump_members(m, eta, tile=8, activity=-1.0)
    b = jump_members(m, eta[perm], tile=8, activity=-1.0)
    assert torch.allclose(a.mean[perm], b.mean, atol=1e-12)
    assert torch.allclose(a.spread[perm], b.spread, atol=1e-12)


def test_tiled_inference_equals_dense_periodic_evaluation() -> None:
    m, eta = _model(1), _eta(1)
    halo = m.halo
    x = torch.nn.functional.pad(field_inputs(eta), (halo,) * 4, mode="circular")
    with torch.no_grad():
        members = m(x)  # (Q, K, n, n): the whole periodic grid in one pass
    dense = (eta + members.mean(dim=1)).clamp(0.0, 1.0)
    for tile in (8, 16, 32):
        tiled = jump_members(m, eta, tile=tile, activity=-1.0)  # every tile evaluated
        assert tiled.active_fraction == 1.0
        assert torch.allclose(tiled.mean, dense, atol=1e-12)
        assert torch.allclose(tiled.spread, members.std(dim=1, unbiased=False), atol=1e-12)


def test_channels_last_model_and_skipped_spread_give_the_same_jump() -> None:
    """The stepper's inference settings change no answer: a model converted to channels_last gets the same mean and
    spread (float64: to 1e-12), ``spread=False`` returns the same mean without the spread, and any number of
    tiles per forward pass gives the same jump."""
    m, eta = _model(3), _eta(3)
    ref = jump_members(m, eta, tile=8, activity=1e-3)
    fast = copy.deepcopy(m).to(memory_format=torch.channels_last)
    assert next(iter(fast.backbone[0].parameters())).is_contiguous(memory_format=torch.channels_last)
    got = jump_members(fast, eta, tile=8, activity=1e-3)
    assert torch.allclose(got.mean, ref.mean, rtol=0, atol=1e-12) and torch.allclose(got.spread, ref.spread, atol=1e-12)
    lean = jump_members(fast, eta, tile=8, activity=1e-3, spread=False)
    assert lean.spread is None and torch.equal(lean.mean, got.mean) and lean.tiles == ref.tiles
    x = field_inputs(eta)[:, :, :12, :12]
    with_autograd = m(x)  # F.gelu (the parameters require grad)
    with torch.no_grad():  # in-place GELUs
        assert torch.equal(m(x), with_autograd.detach())
    for batch in (1, 5, 10_000):  # the cache-sized default (None) is only a grouping of the same tiles
        other = jump_members(m, eta, tile=8, activity=1e-3, batch=batch)
        assert torch.allclose(other.mean, ref.mean, rtol=0, atol=1e-12), batch


@pytest.mark.skipif(not jump_net._fusable(torch.zeros(1)), reason="this torch build has no oneDNN convolution fusion")
def test_fused_convolution_gelu_equals_the_unfused_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference on CPU in float32 or bfloat16 runs each convolution + GELU as one oneDNN op with a GELU post-op:
    float32 equals the unfused network (autograd on: F.gelu after each convolution) to float32 rounding (1e-6 of
    outputs of order 1, a few hundred products per output), bfloat16 stays within bfloat16 rounding of it (outputs
    of order 1, 8-bit mantissa: 2 %); float64 (no oneDNN fusion) is the unfused path bit for bit; and if oneDNN
    refuses the fused op, the unfused path answers."""
    torch.manual_seed(7)
    m = EnsembleJumpNet2d(members=3, channels=8, dilations=(1, 2, 1), head_channels=4).eval()
    with torch.no_grad():
        m.head_out.weight.mul_(100.0)  # outputs of order 1
    x = field_inputs(_eta(7).float())[:, :, :20, :20].contiguous()
    reference = m(x).detach()  # autograd on: the unfused F.gelu path
    assert 0.3 < reference.abs().max() < 3.0
    with torch.no_grad():
        assert jump_net._fusable(x)
        fused = m(x)
        assert torch.allclose(fused, reference, rtol=0, atol=1e-6) and not torch.equal(fused, torch.zeros_like(fused))
        last = copy.deepcopy(m).to(memory_format=torch.channels_last)
        assert torch.allclose(last(x.to(memory_format=torch.channels_last)), reference, rtol=0, atol=1e-6)
        low = copy.deepcopy(m).to(torch.bfloat16)(x.bfloat16()).float()
        assert (low - reference).abs().max() <= 0.02 * reference.abs().max()
        m64 = copy.deepcopy(m).double()
        assert not jump_net._fusable(x.double())
        assert torch.equal(m64(x.double()), m64.requires_grad_(True)(x.double()).detach())

        def refuse(*args: object) -> torch.Tensor:
            raise RuntimeError("no primitive")

        monkeypatch.setattr(jump_net, "_CONV_POINTWISE", refuse)
        monkeypatch.setattr(jump_net, "_fusion_failed", False)
        assert torch.allclose(m(x), reference, rtol=0, atol=1e-6)
        assert jump_net._fusion_failed


def test_a_bfloat16_network_updates_a_float32_state() -> None:
    """stepper.dtype = "bfloat16": the network runs in bfloat16 (8-bit mantissa), but its tiles' answers are added
    to the state in float32, so the jump stays within a few bfloat16 roundings of the float64 one (2 % of the
    predicted change) and the state is not rounded to bfloat16 (where the jump leaves it, it is kept to float32)."""
    m, eta = _model(4), _eta(4)
    eta[:2, :, 4:28] = torch.tensor([0.123456789, 0.987654321], dtype=torch.float64)[:, None, None]  # uniform bands
    ref = jump_members(m, eta, tile=8, activity=1e-3)
    low = jump_members(copy.deepcopy(m).to(torch.bfloat16), eta, tile=8, activity=1e-3)
    assert low.mean.dtype == torch.float64 and low.tiles == ref.tiles < low.total
    change = (ref.mean - eta).abs().max()
    assert 0 < (low.mean - ref.mean).abs().max() <= 0.02 * change
    kept = ~low.active
    assert torch.allclose(low.mean[kept], eta[kept], rtol=1e-7, atol=0)  # float32, not bfloat16 (4e-3)


def test_uniform_fields_are_skipped_and_kept_exactly() -> None:
    m = _model(2)
    eta = torch.zeros(4, 32, 32, dtype=torch.float64)
    eta[0] = 1.0  # bulk of one grain: nothing varies anywhere
    eta[1, 0:16, 0:16] = 0.5  # one field varies in the top-left region only
    pred = jump_members(m, eta, tile=8, activity=1e-3)
    assert 0 < pred.tiles < pred.total
    assert torch.equal(pred.mean[0], eta[0]) and torch.equal(pred.mean[2:], eta[2:])
    assert not bool(pred.active[0].any())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiled_inference_on_cuda_equals_the_cpu() -> None:
    """The jump ensemble on a GPU, in float64, gives the CPU's jump and spread (1e-10: float64 convolutions summed
    in another order, a few hundred terms per output), with the same tiles skipped."""
    m, eta = _model(3), _eta(3)
    eta[:2, :24, :24] = 0.0  # a region where some fields are uniform, so the activity test matters
    cpu = jump_members(m, eta, tile=8, activity=1e-3)
    gpu = jump_members(m.to("cuda"), eta.to("cuda"), tile=8, activity=1e-3)
    assert gpu.mean.device.type == "cuda" and gpu.tiles == cpu.tiles
    assert torch.equal(gpu.active.cpu(), cpu.active)
    assert torch.allclose(gpu.mean.cpu(), cpu.mean, rtol=0, atol=1e-10)
    assert torch.allclose(gpu.spread.cpu(), cpu.spread, rtol=0, atol=1e-10)


def test_rate_channel_is_the_supplied_rate_and_is_required() -> None:
    eta = _eta(5)
    rate = torch.sin(eta)  # any field: field_inputs passes it through unchanged
    x = field_inputs(eta, ("eta", "psi", "rate"), rate)
    assert x.shape == (6, 3, 32, 32) and torch.equal(x[:, 2], rate) and torch.equal(x[:, 0], eta)
    assert torch.allclose(x[:, 1], (eta**2).sum(0) - eta**2)
    with pytest.raises(ValueError, match="rate"):
        field_inputs(eta, ("eta", "psi", "rate"))
    with pytest.raises(ValueError, match="subsequence"):
        EnsembleJumpNet2d(features=("psi", "eta"))
    m = EnsembleJumpNet2d(members=2, channels=3, dilations=(1,), head_channels=2, features=("eta", "rate"))
    assert m.needs_rate and m.inputs == 2
    with pytest.raises(ValueError, match="rate"):
        jump_members(m, eta.float(), tile=8)


def test_rate_function_is_the_dns_right_hand_side(tmp_path: Path) -> None:
    """rate_function rebuilds the data's model: one explicit Euler step of the case is η + dt · rate(η)."""
    from hybrid.couplers.trajectories import generate_trajectories, rate_function

    data = generate_trajectories(TINY_SPEC, tmp_path / "traj.h5", workers=0)
    with h5py.File(data) as f:
        eta = torch.from_numpy(np.asarray(f["fields/eta"][0, 1], dtype=np.float64))
    rate = rate_function(data)(eta)
    sim = hybrid.load_case(_case(Path("unused"), "dns"))
    fields = dict(sim.state.fields)
    fields["eta"] = eta.numpy().copy()
    after = np.asarray(sim.stepper(State(fields, 0.0, 0, sim.state.backend))["eta"])  # the case's Euler step
    assert rate.dtype == torch.float32
    np.testing.assert_allclose(rate.numpy(), (after - eta.numpy()) / 0.25, rtol=1e-5, atol=1e-6)


def test_window_error_and_spread_are_relative() -> None:
    a, b = _eta(3), _eta(4)
    assert window_error(a, b, a) == pytest.approx(1.0)  # "no change" scores 1
    assert window_error(b, b, a) == 0.0
    assert window_error(a + 0.5 * (b - a), b, a) == pytest.approx(0.5)
    assert relative_spread(0.1 * (b - a), b, a) == pytest.approx(0.1)
    # the rate residual: a rate that would make the whole change in the window time scores 1
    assert rate_residual((b - a) / 10.0, b, a, horizon=10.0) == pytest.approx(1.0)
    assert rate_residual(0.3 * (b - a), b, a, horizon=1.0) == pytest.approx(0.3)
    assert rate_residual(torch.zeros_like(a), a, a, horizon=1.0) == 0.0 and rate_residual(b, a, a, 1.0) == math.inf


# ------------------------------------------------------------------------------------------- trained tiny ensemble


@pytest.fixture(scope="module")
def tiny_trajectories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hybrid.couplers.trajectories import generate_trajectories

    return generate_trajectories(TINY_SPEC, tmp_path_factory.mktemp("trajectories") / "traj.h5", workers=0)


def _train_tiny(data: Path, out: Path, **inference: object) -> Path:
    from hybrid.couplers.trajectories import rate_function
    from hybrid.models.jump_training import train_jump_ensemble

    spec = {
        "model": {"architecture": "jump2d", "members": 3, "channels": 4, "dilations": [1, 1], "head_channels": 4},
        "training": {
            "iterations": 30,
            "batch_size": 8,
            "pairs_per_batch": 2,
            "crop": 16,
            "seed": 3,
            "test_trajectories": 0,
        },
        "inference": {"tile": 16, **inference},
    }
    train_jump_ensemble(spec, data, out, rate=rate_function(data))
    return out


@pytest.fixture(scope="module")
def tiny_ensemble(tiny_trajectories: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibrated for the ensemble spread (the default indicator)."""
    return _train_tiny(tiny_trajectories, tmp_path_factory.mktemp("surrogate") / "ens")


def _case(weights: Path, provider: str = "monitor", **stepper: object) -> dict:
    table = {"provider": provider} if provider == "dns" else {"provider": provider, "weights": str(weights), **stepper}
    return {
        "case": {"name": "gg_tiny", "model": "graingrowth", "seed": 3},
        "grid": {"lengths": TINY_SETS["grid.lengths"], "shape": TINY_SETS["grid.shape"]},
        "model": {"order_parameters": 8, "reassign_every": 20},
        "initial": {"kind": "voronoi", "grains": 6},
        "time": {"integrator": "euler", "dt": 0.25, "steps": 200},
        "stepper": table,
        "output": {"every": 40, "fields": ["grain", "eta"]},
    }


def test_card_of_a_trained_jump_ensemble(tiny_ensemble: Path) -> None:
    card = json.loads((tiny_ensemble / "model_card.json").read_text())
    assert card["architecture"]["class"] == "EnsembleJumpNet2d"
    sur = card["surrogate"]
    assert sur["model"] == "graingrowth" and sur["field"] == "eta" and sur["jump"] == 40 and sur["dt"] == 0.25
    assert sur["spacing"] == [2.0, 2.0] and sur["params"]["kappa"] == 2.0
    cal = card["calibration"]
    assert len(cal["u"]) == len(cal["e"]) == 3  # one calibration trajectory of 3 pairs
    assert all(e >= 0 for e in cal["e"]) and card["data"]["split"] == {"train": [0], "calibration": [1], "test": []}


def test_dns_windows_reproduce_the_dns_run_bitwise(tiny_ensemble: Path, tmp_path: Path) -> None:
    dns = hybrid.load_case(_case(tiny_ensemble, "dns"), out=tmp_path / "dns.h5")
    dns.run()
    sur = hybrid.load_case(_case(tiny_ensemble, threshold=0.0, audit_every=2), out=tmp_path / "sur.h5")
    assert sur.stepper.steps_per_call == 40
    sur.run()
    a, b = read_output(tmp_path / "dns.h5"), read_output(tmp_path / "sur.h5")
    assert np.array_equal(a["time"], b["time"]) and np.array_equal(a["step"], b["step"])
    assert np.array_equal(a["fields"]["eta"], b["fields"]["eta"])  # every window fell back: exactly the DNS
    log = b["monitor"]["stepper"]
    assert log["step"].tolist() == [0, 40, 80, 120, 160]
    assert set(log["source"].tolist()) == {"dns"}
    audited = ~np.isnan(log["audit_error"])
    assert audited.tolist() == [True, False, True, False, True]
    assert np.all(log["audit_error"][audited] >= 0)
    with h5py.File(tmp_path / "sur.h5") as f:
        summary = json.loads(f.attrs["summary/stepper"])
    assert summary["dns_windows"] == 5 and summary["nn_fraction"] == 0.0 and summary["audits"] == 3


def test_nn_windows_and_restart(tiny_ensemble: Path, tmp_path: Path) -> None:
    import shutil

    case = _case(tiny_ensemble, threshold=math.inf)  # every window from the NN
    case["output"]["checkpoint_every"] = 80
    full = hybrid.load_case(case, out=tmp_path / "full.h5")
    while full.state.step < 80:
        full.step()
    shutil.copy(tmp_path / "full.ckpt.h5", tmp_path / "at80.ckpt.h5")
    full.run()
    res = read_output(tmp_path / "full.h5")
    assert set(res["monitor"]["stepper"]["source"].tolist()) == {"nn"}
    assert full.stepper.nn_fraction == 1.0
    assert np.all(np.isfinite(res["fields"]["eta"])) and res["fields"]["eta"].min() >= 0.0
    dns = hybrid.load_case(_case(tiny_ensemble, "dns"), out=tmp_path / "dns.h5")
    dns.run()
    assert np.array_equal(res["time"], read_output(tmp_path / "dns.h5")["time"])  # same frame times as DNS
    # restart from the checkpoint at step 80: the output is cut back to step 80 and ends bit-identical
    resumed = hybrid.load_case(case, out=tmp_path / "full.h5")  # same case text: same output path
    resumed.restart_from(tmp_path / "at80.ckpt.h5")
    assert resumed.stepper.nn_windows == 2
    resumed.run()
    again = read_output(tmp_path / "full.h5")
    assert np.array_equal(again["fields"]["eta"], res["fields"]["eta"])
    assert again["monitor"]["stepper"]["step"].tolist() == res["monitor"]["stepper"]["step"].tolist()


def test_no_qualifying_threshold_runs_the_dns_without_the_network(tiny_ensemble: Path, tmp_path: Path) -> None:
    """An unattainable tolerance calibrates to threshold −inf: every window is DNS and the NN is never evaluated."""
    sim = hybrid.load_case(_case(tiny_ensemble, tolerance=1e-9), out=tmp_path / "sur.h5")
    assert sim.stepper.policy.threshold == -math.inf
    sim.run()
    dns = hybrid.load_case(_case(tiny_ensemble, "dns"), out=tmp_path / "dns.h5")
    dns.run()
    res = read_output(tmp_path / "sur.h5")
    assert np.array_equal(res["fields"]["eta"], read_output(tmp_path / "dns.h5")["fields"]["eta"])
    assert sim.stepper.nn.calls == 0 and sim.stepper.dns_windows == 5
    log = res["monitor"]["stepper"]
    assert set(log["source"].tolist()) == {"dns"} and np.all(np.isnan(log["uncertainty"]))


def test_relaxation_steps_follow_each_nn_jump(tiny_ensemble: Path) -> None:
    """relax = 4: a window is the NN jump (40 steps) then 4 DNS steps with the hooks, 44 steps in all."""
    case = _case(tiny_ensemble, "nn", relax=4)
    case["time"]["steps"], case["output"]["every"] = 176, 44
    sim = hybrid.load_case(case)
    assert sim.stepper.steps_per_call == 44
    start = sim.state.copy()
    jumped, _ = sim.stepper.nn.predict(start)
    expected = State({**start.fields, "eta": jumped}, start.time + 40 * 0.25, 40, start.backend)
    for _ in range(4):
        expected = sim.stepper.dns(sim.equation.after_step(expected))
    got = sim.stepper(start)
    assert got.step == 44 and got.time == pytest.approx(11.0, abs=1e-12)
    assert np.array_equal(np.asarray(got["eta"]), np.asarray(expected["eta"]))
    # an audit compares this whole window (jump + relax) with 44 DNS steps
    audited = hybrid.load_case({**case, "stepper": {**case["stepper"], "provider": "monitor", "threshold": 1e9,
                                                    "audit_every": 1}})  # fmt: skip
    audited.stepper(start)
    dns_window = audited.stepper.dns_window(start)
    err = audited.stepper.policy.audit_errors[0]
    assert err == pytest.approx(window_error(torch.from_numpy(np.asarray(expected["eta"])),
                                             torch.from_numpy(np.asarray(dns_window["eta"])),
                                             torch.from_numpy(np.asarray(start["eta"]))), rel=1e-12)  # fmt: skip
    bad = _case(tiny_ensemble, "nn", relax=4)  # 200 steps, frames every 40: not windows of 44
    with pytest.raises(ConfigError, match="multiple of the surrogate's window of 44"):
        hybrid.load_case(bad)


def test_audit_error_ignores_a_grain_re_indexed_in_one_window_only(tiny_ensemble: Path) -> None:
    """The reassignment hook runs at different steps in the NN and the DNS window: a grain the DNS window moved to
    another order parameter must not count as an error (it would read as twice the grain's η)."""
    from hybrid.solvers.graingrowth import _apply_moves, _disk_offsets
    from hybrid.solvers.grains import GrainGeometry, dominant_index, label_components

    sim = hybrid.load_case(_case(tiny_ensemble, "monitor", threshold=1e9, audit_every=1))
    start = sim.state.copy()
    end = np.array(sim.stepper.dns_window(start)["eta"])
    idx = dominant_index(end)
    comp, n = label_components(idx)
    geo = GrainGeometry.from_components(comp, n, idx, (2.0, 2.0))
    free = [q for q in range(8) if not np.any(end[q])]  # 6 grains on 8 order parameters: one never held a grain
    assert free
    moved = end.copy()
    oy, ox = _disk_offsets(sim.equation.halo, 2.0, 2.0)
    targets, news = np.array([0]), np.array([free[0]])
    _apply_moves(moved, geo.components, geo.index, targets, news, geo.bstart, geo.by, geo.bx, oy, ox)
    as_tensor = torch.from_numpy
    # index by index the moved grain counts twice: of the order of the whole change over the window
    assert window_error(as_tensor(end), as_tensor(moved), as_tensor(np.asarray(start["eta"]))) > 0.5
    assert sim.stepper.nn.error(end, moved, start["eta"]) == pytest.approx(0.0, abs=1e-12)


def test_a_jump_with_an_impossible_topology_change_goes_to_the_dns(tiny_ensemble: Path) -> None:
    """Whatever the indicator says, a jump the model's jump_events flags (a large grain vanished or two merged)
    reads u = inf and the window is re-run with DNS; topology_check = false turns the check off."""
    sim = hybrid.load_case(_case(tiny_ensemble, "monitor", threshold=1e9))
    start = sim.state.copy()
    assert math.isfinite(sim.stepper.nn.predict(start)[1])
    sim.equation.jump_events = lambda start, jumped, horizon: (1, 0)  # type: ignore[method-assign]
    assert sim.stepper.nn.predict(start)[1] == math.inf
    got = sim.stepper(start)
    assert sim.stepper.dns_windows == 1 and sim.stepper.nn_windows == 0
    assert np.array_equal(np.asarray(got["eta"]), np.asarray(sim.stepper.dns_window(start)["eta"]))
    assert sim.stepper.summary()["implausible_jumps"] == 2
    off = hybrid.load_case(_case(tiny_ensemble, "monitor", threshold=1e9, topology_check=False))
    off.equation.jump_events = lambda start, jumped, horizon: (1, 0)  # type: ignore[method-assign]
    assert math.isfinite(off.stepper.nn.predict(start)[1])


def test_monitor_falls_back_when_the_spread_exceeds_the_threshold(tiny_ensemble: Path) -> None:
    from hybrid.core.state import State

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, size=(32, 32))  # one-pixel grains: nothing like a resolved microstructure
    noise = (labels[None] == np.arange(8)[:, None, None]).astype(np.float64)
    probe = hybrid.load_case(_case(tiny_ensemble, threshold=1.0))
    state = State.from_arrays({**probe.state.fields, "eta": noise})
    nn_eta, u = probe.stepper.nn.predict(state)
    assert u > 0
    for threshold, source in ((0.5 * u, "dns"), (2.0 * u, "nn")):
        sim = hybrid.load_case(_case(tiny_ensemble, threshold=threshold))
        new = sim.stepper(state)
        assert new.step == 40 and new.time == 10.0
        assert sim.stepper.policy.take_log_rows()["source"].tolist() == [source]
        if source == "nn":
            assert np.array_equal(new["eta"], nn_eta)
        else:
            assert np.array_equal(new["eta"], sim.stepper.dns_window(state)["eta"])


def test_rate_residual_indicator_is_the_model_rate_at_the_answer(
    tiny_trajectories: Path, tiny_ensemble: Path, tmp_path: Path
) -> None:
    """inference.indicator = "rate_residual": the card's pairs and the stepper's u are τ‖∂η/∂t(η_NN)‖ / ‖η_NN − η‖."""
    weights = _train_tiny(tiny_trajectories, tmp_path / "ens", indicator="rate_residual")
    card = json.loads((weights / "model_card.json").read_text())
    spread_card = json.loads((tiny_ensemble / "model_card.json").read_text())
    assert card["inference"]["indicator"] == "rate_residual" and spread_card["inference"]["indicator"] == "spread"
    assert "DNS rate at the answer" in card["calibration"]["indicator"]
    # same training (seed, data): the same windows and errors, only the indicator differs
    assert card["calibration"]["e"] == spread_card["calibration"]["e"]
    assert card["calibration"]["u"] != spread_card["calibration"]["u"]
    assert set(card["metrics"]["calibration"]["spearman"]) == {"spread", "rate_residual"}
    sim = hybrid.load_case(_case(weights, threshold=1.0))
    assert sim.stepper.nn.indicator == "rate_residual"
    start = sim.state.copy()
    jumped, u = sim.stepper.nn.predict(start)
    # independently: the case's explicit Euler step from the answer, (after − answer) / dt, is the model's rate there
    after = np.asarray(sim.stepper.dns(State({**start.fields, "eta": jumped}, 0.0, 40, start.backend))["eta"])
    rate = (after - np.asarray(jumped)) / 0.25
    expected = 40 * 0.25 * np.linalg.norm(rate) / np.linalg.norm(np.asarray(jumped) - np.asarray(start["eta"]))
    assert u == pytest.approx(expected, rel=1e-6)
    # a card naming an unknown indicator is refused with the allowed values
    card["inference"]["indicator"] = "vibes"
    (weights / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match=r"inference.indicator = 'vibes'; allowed: \['spread', 'rate_residual'\]"):
        hybrid.load_case(_case(weights, threshold=1.0))


def test_case_errors(tiny_ensemble: Path, tmp_path: Path) -> None:
    case = _case(tiny_ensemble)
    case["time"]["steps"] = 210
    with pytest.raises(ConfigError, match=r"multiple of the surrogate's window of 40") as err:
        hybrid.load_case(case)
    assert err.value.key == "time.steps"
    case = _case(tiny_ensemble)
    case["time"]["dt"] = 0.2
    case["time"]["steps"] = 200
    with pytest.raises(ConfigError, match=r"dt = 0\.25") as err:
        hybrid.load_case(case)
    assert err.value.key == "time.dt"
    case = _case(tiny_ensemble)
    case["model"]["kappa"] = 3.0
    with pytest.raises(ConfigError, match="kappa"):
        hybrid.load_case(case)
    with pytest.raises(ConfigError, match=r"nowhere does not exist; allowed: 'shipped' or a folder") as err:
        hybrid.load_case(_case(tmp_path / "nowhere"))
    assert err.value.key == "stepper.weights"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no model_card\.json in .*empty"):
        hybrid.load_case(_case(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="bogus"):
        hybrid.load_case(_case(tiny_ensemble, bogus=1))


def test_compare_stepper_dns_vs_monitor(tiny_ensemble: Path, tmp_path: Path) -> None:
    report = compare(
        _case(tiny_ensemble, threshold=math.inf), "stepper", ("dns", "monitor"), out_dir=tmp_path, progress=False
    )
    assert report["term"] == "stepper" and report["providers"] == ["dns", "monitor"]
    assert report["nn_fraction"] == {"dns": 0.0, "monitor": 1.0}
    assert len(report["time"]) == 6
    for name in ("grain_count", "mean_area"):
        assert len(report["descriptors"][name]["dns"]) == len(report["descriptors"][name]["monitor"]) == 6
    assert report["descriptors"]["grain_count"]["dns"][0] == report["descriptors"]["grain_count"]["monitor"][0]
    assert report["monitor"]["monitor"]["nn"] == 5
    assert (tmp_path / "report.json").exists()


def test_shipped_hybrid_case_loads_the_shipped_ensemble(tmp_path: Path) -> None:
    """cases/graingrowth_hybrid.toml with the shipped weights: windows of jump + relax, frames on window ends."""
    case = ROOT / "cases" / "graingrowth_hybrid.toml"
    sets = {"grid.shape": [64, 64], "grid.lengths": [128.0, 128.0], "initial.grains": 16, "time.steps": 212}
    sim = hybrid.load_case(case, overrides={**sets, "stepper.threshold": 1e9}, out=tmp_path / "nn.h5")  # accept all
    card = sim.stepper.nn.card
    assert sim.stepper.steps_per_call == card["surrogate"]["jump"] + card["inference"]["relax"] == 106
    assert sim.stepper.nn.model.needs_rate
    sim.run()
    res = read_output(tmp_path / "nn.h5")
    assert res["step"].tolist() == [0, 212] and set(res["monitor"]["stepper"]["source"].tolist()) == {"nn"}
    grain = res["fields"]["grain"]
    assert grain.shape == (2, 64, 64) and 1 < len(np.unique(grain[-1])) <= 16


def test_shipped_surrogate_keeps_its_accepted_windows_within_the_tolerance(tmp_path: Path) -> None:
    """The shipped ensemble on a fresh 128² Voronoi start (62 grains as in training, whose seeds are 0 to 5), every
    window audited against the DNS: at most the card's 1 - confidence share of the accepted windows exceed its
    tolerance (up to binomial chance), and the window the indicator rates worst, the sharp Voronoi start, is refused.
    """
    from scipy.stats import binom

    case = ROOT / "cases" / "graingrowth_hybrid.toml"
    sets = {"grid.shape": [128, 128], "grid.lengths": [256.0, 256.0], "initial.grains": 62, "case.seed": 7}
    sets |= {"time.steps": 106 * 20, "output.every": 106 * 20, "stepper.audit_every": 1}
    sim = hybrid.load_case(case, overrides=sets, out=tmp_path / "audit.h5")
    cal = sim.stepper.nn.card["calibration"]
    sim.run()
    log = read_output(tmp_path / "audit.h5")["monitor"]["stepper"]
    source, error = np.asarray(log["source"]).astype(str), np.asarray(log["audit_error"], dtype=float)
    assert len(error) == 20 and np.all(np.isfinite(error))
    accepted = error[source == "nn"]
    assert len(accepted) >= 10  # the shipped compare takes 74 % of its windows from the NN
    allowed = binom.ppf(0.999, len(accepted), 1 - cal["confidence"])  # a false alarm once in 1000 runs
    assert np.sum(accepted > cal["tolerance"]) <= allowed
    assert np.mean(accepted) < cal["tolerance"]
    assert source[0] == "dns" and error[0] == error.max()
