"""The laser patch surrogate's network and training (hybrid.models.patch_autoencoder, patch_training) on tiny
synthetic patches: shapes, float32 against float64, the linear autoencoders' round trip, and a training run whose
card metrics a re-evaluation of its test file reproduces."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hybrid.core.config import ConfigError
from hybrid.models.card import card_threshold, load_ensemble, read_card
from hybrid.models.patch_autoencoder import PatchSurrogateNet, mare, pca_basis, relative_spread
from hybrid.models.patch_training import train_patch_surrogate

SHAPE = (6, 12)
T_INF, T_L = 300.0, 1923.0


def _bump(q: float, v: float, width: float) -> np.ndarray:
    """A smooth hot spot (pz, px) [K] whose height grows with q and falls with v."""
    z, x = np.meshgrid(np.arange(SHAPE[0]) + 0.5, np.arange(SHAPE[1]) + 0.5 - SHAPE[1] / 2, indexing="ij")
    return T_INF + 1.5e-2 * q / np.sqrt(v) * np.exp(-(x**2) / (2 * width**2) - z**2 / (0.5 * width**2))


def write_synthetic(path: Path, runs: list[tuple[float, float, str]], per_run: int = 4) -> Path:
    """A laser_patch dataset file whose cfd field is the coarse one sharpened: a narrower, hotter bump."""
    coarse, cfd, laser, power, split, group = [], [], [], [], [], []
    for g, (q, v, name) in enumerate(runs):
        for i in range(per_run):
            grow = 0.6 + 0.4 * (i + 1) / per_run  # the track heating up
            coarse.append(T_INF + grow * (_bump(q, v, 3.0) - T_INF))
            cfd.append(T_INF + grow * 1.1 * (_bump(q, v, 2.6) - T_INF))
            laser.append((q, v))
            power.append(q / 1000.0)
            split.append(name)
            group.append(g)
    with h5py.File(path, "w") as f:
        f["coarse"] = np.asarray(coarse, dtype=np.float32)
        f["cfd"] = np.asarray(cfd, dtype=np.float32)
        laser_a = np.asarray(laser)
        f["line_power"], f["speed"] = laser_a[:, 0], laser_a[:, 1]
        f["power"] = np.asarray(power)
        f["split"] = np.asarray(split).astype("S")
        f["group"] = np.asarray(group, dtype=np.int64)
        f.attrs.update(hybrid_kind="laser_patch", ambient_temperature=T_INF, liquidus=T_L, spacing=1e-5, case="")
    return path


def _fitted_net(seed: int = 0) -> PatchSurrogateNet:
    """A network with random weights and fitted autoencoders of the synthetic fields."""
    torch.manual_seed(seed)
    net = PatchSurrogateNet(shape=SHAPE, coarse_latent=3, latent=4, members=3, hidden=8)
    fields = np.stack([_bump(q, v, w) for q in (1e5, 2e5) for v in (0.2, 0.4) for w in (2.5, 3.0)])
    th = ((fields - T_INF) / (T_L - T_INF)).reshape(len(fields), -1)
    with torch.no_grad():
        for mean, basis, data, rank in (
            (net.coarse_mean, net.coarse_basis, th, 3),
            (net.correction_mean, net.correction_basis, 0.1 * th[::-1], 4),
        ):
            m, b, _ = pca_basis(data, rank)
            mean.copy_(torch.from_numpy(m))
            basis.copy_(torch.from_numpy(b))
        net.input_mean.copy_(torch.tensor([0.0, 0.0, 0.0, 1.5e5, 0.3], dtype=torch.float64))
        net.input_scale.copy_(torch.tensor([1.0, 1.0, 1.0, 5e4, 0.1], dtype=torch.float64))
    return net.eval()


def test_shapes_and_config_round_trip() -> None:
    net = _fitted_net()
    theta = torch.rand(7, SHAPE[0] * SHAPE[1], dtype=torch.float64)
    laser = torch.tensor([[1.5e5, 0.25]] * 7, dtype=torch.float64)
    assert net(theta, laser).shape == (3, 7, SHAPE[0] * SHAPE[1])
    assert net.codes(theta, laser).shape == (3, 7, 4)
    assert net.encode(theta).shape == (7, 3)
    again = PatchSurrogateNet(**net.config())
    again.load_state_dict(net.state_dict())
    assert torch.equal(again(theta, laser), net(theta, laser))
    with pytest.raises(ValueError, match="members >= 2"):
        PatchSurrogateNet(members=1)


def test_float32_inference_matches_float64_to_rounding() -> None:
    net64 = _fitted_net()
    net32 = _fitted_net().to(torch.float32)
    fields = np.stack([_bump(q, v, 2.8) for q, v in ((1.2e5, 0.22), (1.9e5, 0.37))])
    theta = torch.from_numpy(((fields - T_INF) / (T_L - T_INF)).reshape(2, -1))
    laser = torch.tensor([[1.2e5, 0.22], [1.9e5, 0.37]], dtype=torch.float64)
    with torch.inference_mode():
        ref = net64(theta, laser)
        got = net32(theta.float(), laser.float()).double()
    # temperatures: the float32 rounding of θ, of the few matrix products and of the sum, relative to max |θ|
    eps = float(torch.finfo(torch.float32).eps)
    scale = float(ref.abs().max())
    assert float((got - ref).abs().max()) <= 64 * eps * scale
    assert float((got - ref).abs().max()) > 0.0  # it really ran in float32


def test_linear_autoencoder_round_trip_of_smooth_fields() -> None:
    """Fields that are combinations of three smooth shapes: a rank-3 code reproduces a fresh combination to
    round-off, and a rank-2 code does not."""
    rng = np.random.default_rng(1)
    shapes = np.stack([_bump(1e5, 0.3, w) - T_INF for w in (2.0, 3.0, 4.5)]).reshape(3, -1)
    train = rng.normal(size=(10, 3)) @ shapes
    fresh = rng.normal(size=(1, 3)) @ shapes
    mean, basis, sv = pca_basis(train, 3)
    assert np.allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    back = mean + ((fresh - mean) @ basis.T) @ basis
    assert np.max(np.abs(back - fresh)) <= 1e-10 * np.max(np.abs(fresh))
    assert sv[3] <= 1e-10 * sv[0]  # the data has rank 3
    mean2, basis2, _ = pca_basis(train, 2)
    back2 = mean2 + ((fresh - mean2) @ basis2.T) @ basis2
    assert np.max(np.abs(back2 - fresh)) > 1e-3 * np.max(np.abs(fresh))
    with pytest.raises(ValueError, match="at least 12 samples"):
        pca_basis(train, 12)


def test_metrics() -> None:
    t = np.full((2, 3, 4), 1000.0)
    assert np.allclose(mare(t * 1.01, t), 0.01)
    members = torch.stack([torch.full((1, 3, 4), 1000.0), torch.full((1, 3, 4), 1020.0)])
    assert torch.allclose(relative_spread(members), torch.tensor([(20 / 2**0.5) / 1010.0], dtype=torch.float32))


SPEC = {
    "model": {"architecture": "patch_autoencoder", "coarse_latent": 3, "latent": 3, "hidden": 16},
    "training": {"members": 3, "epochs": 400, "lr": 1e-2},
    "calibration": {"tolerance": 0.05},
}


def _runs() -> list[tuple[float, float, str]]:
    grid = [(q, v, "train") for q in (1.0e5, 1.5e5, 2.0e5) for v in (0.2, 0.3, 0.4)]
    return [*grid, (1.25e5, 0.35, "calibration"), (1.75e5, 0.25, "calibration"), (1.6e5, 0.28, "test")]


def test_training_learns_the_correction_and_card_metrics_reproduce(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "patch.h5", _runs())
    card = train_patch_surrogate(SPEC, [data], tmp_path / "model")
    m = card["metrics"]
    assert m["test"]["mare"] < 0.25 * m["test"]["coarse_mare"]  # the correction is learnt
    assert card["laser_patch"]["range"]["speed"] == [0.2, 0.4]
    assert len(card["calibration"]["u"]) == m["calibration"]["n"] == 8
    # re-evaluating the shipped-style test file with the saved weights gives the card's test metrics
    model, card2 = load_ensemble(tmp_path / "model", expect=PatchSurrogateNet)
    with h5py.File(tmp_path / "model" / "test_data.h5") as f:
        coarse, cfd, laser = f["coarse"][:].astype(np.float64), f["cfd"][:].astype(np.float64), f["laser"][:]
    m32 = model.float()
    with torch.inference_mode():
        th = torch.from_numpy(((coarse - T_INF) / (T_L - T_INF)).reshape(len(coarse), -1)).float()
        out = m32(th, torch.from_numpy(laser).float()).double().numpy()
    mean = (T_INF + (T_L - T_INF) * out).mean(axis=0).reshape(coarse.shape)
    assert np.isclose(float(np.mean(mare(mean, cfd))), m["test"]["mare"], rtol=1e-6)
    assert read_card(tmp_path / "model")["data"]["test_sha256"] == card2["data"]["test_sha256"]


def test_training_refuses_data_without_a_split(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "patch.h5", [r for r in _runs() if r[2] != "test"])
    with pytest.raises(ConfigError, match="no 'test' runs"):
        train_patch_surrogate(SPEC, [data], tmp_path / "model")
    full = write_synthetic(tmp_path / "full.h5", _runs())
    with pytest.raises(ConfigError, match="at least 200 samples"):
        train_patch_surrogate({**SPEC, "model": {**SPEC["model"], "latent": 200}}, [full], tmp_path / "m2")


def test_hybrid_train_dispatches_a_patch_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hybrid train training/laser_patch.toml` trains a patch surrogate (not an elastic ensemble) and `hybrid info`
    describes it."""
    from hybrid.cli import main

    data = write_synthetic(tmp_path / "patch.h5", _runs())
    sets = ["model.coarse_latent=3", "model.latent=3", "model.hidden=8", "training.epochs=20"]
    spec = str(Path(__file__).resolve().parents[2] / "training" / "laser_patch.toml")
    argv = ["train", spec, "--data", str(data), "--out", str(tmp_path / "m"), "--no-progress"]
    assert main([*argv, *[x for s in sets for x in ("--set", s)]]) == 0
    assert "laser patch surrogate for term 'patch_temperature'" in capsys.readouterr().out
    assert read_card(tmp_path / "m")["architecture"]["class"] == "PatchSurrogateNet"


def test_hybrid_calibrate_recalibrates_a_patch_surrogate(tmp_path: Path) -> None:
    """`hybrid calibrate MODEL --data FILES --set calibration.tolerance=...` keeps the weights and redoes the
    threshold on the calibration runs: the training settings give the card's threshold again (the same float32
    evaluation), a looser tolerance a threshold at least as high, conformal on the same pairs (recomputed here); the
    novelty quantile and data that are not the card's are refused."""
    from hybrid.cli import main
    from hybrid.models.calibration import calibrate

    data = write_synthetic(tmp_path / "patch.h5", _runs())
    spec = {**SPEC, "calibration": {"tolerance": 0.008, "confidence": 0.8}}  # 8 calibration pairs: conformal at 0.8
    card = train_patch_surrogate(spec, [data], tmp_path / "model")

    def run(out: str, *sets: str, files: tuple[Path, ...] = (data,)) -> dict:
        argv = ["calibrate", str(tmp_path / "model"), "--out", str(tmp_path / out)]
        argv += [x for f in files for x in ("--data", str(f))] + [x for s in sets for x in ("--set", s)]
        assert main(argv) == 0
        return read_card(tmp_path / out)

    same = run("same")
    assert same["calibration"]["threshold"] == card["calibration"]["threshold"]
    assert same["calibration"]["u"] == card["calibration"]["u"]
    loose = run("loose", "calibration.tolerance=0.02")  # every calibration error is below it (largest ~0.01)
    assert loose["calibration"]["tolerance"] == 0.02 and loose["recalibrated"]["changed"] == {"tolerance": 0.02}
    assert np.isfinite(card_threshold(loose)) and card_threshold(loose) >= card_threshold(card)
    u, e = np.asarray(card["calibration"]["u"]), np.asarray(card["calibration"]["e"])
    assert card_threshold(loose) == calibrate(u, e, u, e, 0.02, 0.8)["threshold"]
    for name in ("weights.pt", "test_data.h5"):  # the weights and the test file travel unchanged
        assert (tmp_path / "loose" / name).read_bytes() == (tmp_path / "model" / name).read_bytes()
    assert main(["calibrate", str(tmp_path / "model"), "--data", str(data), "--out", str(tmp_path / "bad"),
                 "--set", "calibration.novelty_quantile=0.9"]) != 0  # fmt: skip
    other = write_synthetic(tmp_path / "other.h5", _runs(), per_run=3)
    with pytest.raises(ValueError, match="do not match their SHA-256"):
        from hybrid.models.patch_training import recalibrate_patch_surrogate

        recalibrate_patch_surrogate(tmp_path / "model", [other], {"tolerance": 0.1}, tmp_path / "bad2")
