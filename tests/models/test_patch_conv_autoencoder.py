"""The patch surrogate's convolutional autoencoder (``[model] encoder = "conv"``) on tiny synthetic patches: shapes,
the round trip of smooth fields after a short fit, float32 against float64, training through the spec and the
spec key's ConfigError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid.core.config import ConfigError
from hybrid.models.card import load_ensemble
from hybrid.models.patch_autoencoder import ConvAutoencoder, PatchSurrogateNet
from hybrid.models.patch_training import _fit_autoencoder, evaluate, load_patch_data, train_patch_surrogate
from tests.models.test_patch_autoencoder import SPEC, _runs, write_synthetic

SHAPE = (6, 12)


def _blob(amplitude: float, width: float) -> np.ndarray:
    """A smooth centred hot spot (pz·px,) of the given height and width [cells]."""
    z, x = np.meshgrid(np.arange(SHAPE[0]) + 0.5, np.arange(SHAPE[1]) + 0.5 - SHAPE[1] / 2, indexing="ij")
    return (amplitude * np.exp(-(x**2) / (2 * width**2) - z**2 / (0.5 * width**2))).ravel()


def _conv_net(seed: int = 0) -> PatchSurrogateNet:
    torch.manual_seed(seed)
    return PatchSurrogateNet(shape=SHAPE, coarse_latent=3, latent=4, members=2, hidden=8, encoder="conv", channels=4)


def _fit(net: PatchSurrogateNet, fields: np.ndarray, epochs: int) -> float:
    """Standardise like the training does and fit the autoencoder; the codes are left unscaled (code_scale 1)."""
    mean = fields.mean(axis=0)
    with torch.no_grad():
        net.correction_mean.copy_(torch.from_numpy(mean))
        net.correction_scale.fill_(float((fields - mean).std()))
    return _fit_autoencoder(net, fields, {"seed": 0, "ae_lr": 1e-2, "ae_epochs": epochs}, progress=False)


@pytest.mark.parametrize("shape", [(6, 12), (30, 120), (7, 9)])
def test_conv_autoencoder_shapes(shape: tuple[int, int]) -> None:
    ae = ConvAutoencoder(shape, latent=5, channels=2)
    x = torch.rand(3, shape[0] * shape[1], dtype=torch.float64)
    z = ae.encode(x)
    assert z.shape == (3, 5)
    assert ae.decode(z).shape == x.shape  # the transposed convolutions restore odd and even sizes exactly


def test_conv_surrogate_shapes_config_and_bad_encoder() -> None:
    net = _conv_net()
    theta = torch.rand(7, SHAPE[0] * SHAPE[1], dtype=torch.float64)
    laser = torch.tensor([[1.5e5, 0.25]] * 7, dtype=torch.float64)
    assert net(theta, laser).shape == (2, 7, SHAPE[0] * SHAPE[1])
    assert net.encode_correction(theta).shape == (7, 4)
    assert net.config()["encoder"] == "conv"
    again = PatchSurrogateNet(**net.config())
    again.load_state_dict(net.state_dict())
    assert torch.equal(again(theta, laser), net(theta, laser))
    assert "encoder" not in PatchSurrogateNet(shape=SHAPE).config()  # linear cards keep their keys
    with pytest.raises(ValueError, match="encoder must be one of"):
        PatchSurrogateNet(shape=SHAPE, encoder="cnn")


def test_conv_round_trip_of_smooth_fields_after_a_short_fit() -> None:
    """A two-parameter family of smooth spots: after 300 full-batch steps a fresh member of the family comes back
    within 6 % of the largest value, and 5 times closer (RMS) than the training mean."""
    rng = np.random.default_rng(0)
    train = np.stack([_blob(a, w) for a, w in rng.uniform([0.5, 2.0], [1.5, 4.0], size=(30, 2))])
    fresh = np.stack([_blob(a, w) for a, w in rng.uniform([0.6, 2.2], [1.4, 3.8], size=(5, 2))])
    net = _conv_net()
    assert _fit(net, train, 300) < 1e-2  # standardised mean squared error of the training fields
    with torch.no_grad():
        back = net.decode(net.encode_correction(torch.from_numpy(fresh))).numpy()
    assert np.max(np.abs(back - fresh)) <= 0.06 * np.max(np.abs(fresh))
    mean = train.mean(axis=0)
    assert np.sqrt(np.mean((back - fresh) ** 2)) <= 0.2 * np.sqrt(np.mean((mean - fresh) ** 2))


def test_conv_float32_inference_matches_float64_to_rounding() -> None:
    rng = np.random.default_rng(1)
    train = np.stack([_blob(a, w) for a, w in rng.uniform([0.5, 2.0], [1.5, 4.0], size=(12, 2))])
    net64 = _conv_net()
    _fit(net64, train, 20)
    net32 = PatchSurrogateNet(**net64.config())
    net32.load_state_dict(net64.state_dict())
    net32 = net32.float()
    theta = torch.from_numpy(train[:4])
    laser = torch.tensor([[1.5e5, 0.25]] * 4, dtype=torch.float64)
    with torch.inference_mode():
        ref = net64(theta, laser)
        got = net32(theta.float(), laser.float()).double()
    # the float32 rounding of the inputs and of each layer's sums (a few tens of terms), relative to max |θ|
    eps = float(torch.finfo(torch.float32).eps)
    scale = float(ref.abs().max())
    assert float((got - ref).abs().max()) <= 64 * eps * scale
    assert float((got - ref).abs().max()) > 0.0  # it really ran in float32


def test_conv_training_through_the_spec(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "patch.h5", _runs())
    spec = {
        "model": {**SPEC["model"], "encoder": "conv", "channels": 4},
        "training": {**SPEC["training"], "ae_epochs": 150, "ae_lr": 1e-2},
        "calibration": SPEC["calibration"],
    }
    card = train_patch_surrogate(spec, [data], tmp_path / "model")
    m = card["metrics"]
    assert card["architecture"]["encoder"] == "conv" and card["laser_patch"]["encoder"] == "conv"
    assert m["test"]["reconstruction_mare"] < 0.25 * m["test"]["coarse_mare"]  # the autoencoder keeps the correction
    assert m["test"]["mare"] < 0.5 * m["test"]["coarse_mare"]  # and the members learn it
    model, _ = load_ensemble(tmp_path / "model", expect=PatchSurrogateNet)  # the saved weights give the card's MARE
    d = load_patch_data([data])
    _, e = evaluate(model, d, d["split"] == "test")
    assert np.isclose(float(e.mean()), m["test"]["mare"], rtol=1e-6)


def test_bad_encoder_is_a_config_error(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "patch.h5", _runs())
    with pytest.raises(ConfigError, match=r"model\.encoder.*linear.*conv|linear.*conv.*model\.encoder"):
        train_patch_surrogate({**SPEC, "model": {**SPEC["model"], "encoder": "cnn"}}, [data], tmp_path / "m",
                              spec_file="laser_patch.toml")  # fmt: skip
