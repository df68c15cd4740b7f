"""Training spec schema and end-to-end training on a tiny synthetic dataset with a known law."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hybrid.core.config import ConfigError, describe, dumps_toml, load_toml
from hybrid.couplers.terms.elastic import ELASTIC_LEARNABLE
from hybrid.models.calibration import calibrate_threshold
from hybrid.models.card import CARD_FILE, WEIGHTS_FILE, card_threshold, load_ensemble, read_card
from hybrid.models.data import write_dataset
from hybrid.models.features import elastic_features
from hybrid.models.training import TRAIN_SPEC, train_ensemble, validate_spec
from tests.models import one_torch_thread, synthetic_dataset  # noqa: F401

TINY: dict[str, Any] = {
    "model": {"channels": 8, "layers": 2, "kernel_size": 3, "dilations": [1, 2], "linear_response": "exact"},
    "training": {"epochs": 12, "batch_size": 16, "lr": 1e-2, "patience": 12, "seed": 7, "device": "cpu"},
    "calibration": {"tolerance": 0.02},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("train")
    data = root / "tiny.h5"
    write_dataset(data, synthetic_dataset(samples=160, points=32, group_size=4, seed=1), created="now")
    card = train_ensemble(TINY, data, root / "model", learnable=ELASTIC_LEARNABLE)
    return data, root / "model", card


def test_spec_defaults_and_errors() -> None:
    spec = validate_spec({})
    assert spec["training"]["members"] == 5 and spec["calibration"] == {
        "tolerance": 0.02, "modulation_tolerance": 0.05, "confidence": 0.95, "delta": None, "conditional": "none",
        "bins": 3,
    }  # fmt: skip
    assert spec["training"]["split"] == {"train": 0.7, "val": 0.1, "calib": 0.1, "test": 0.1}
    assert spec["model"]["linear_response"] == "learned"
    with pytest.raises(ConfigError, match=r"model\.linear_response.*'exact'"):
        validate_spec({"model": {"linear_response": "fixed"}})
    with pytest.raises(ConfigError, match=r"spec\.toml: key 'training\.split': fractions must sum to 1"):
        validate_spec({"training": {"split": {"train": 0.9}}}, file="spec.toml")
    with pytest.raises(ConfigError, match=r"training\.members"):
        validate_spec({"training": {"members": 3}})
    with pytest.raises(ConfigError, match=r"model\.kernel_size"):
        validate_spec({"model": {"kernel_size": 4}})
    with pytest.raises(ConfigError, match="unknown key"):
        validate_spec({"training": {"epoch": 3}})
    assert "training.patience" in describe(TRAIN_SPEC)


def test_spec_from_toml_file_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text("[model]\nchannels = 8\n\n[training]\nepochs = 3\n\n[training.split]\ntrain = 0.6\ntest = 0.2\n")
    spec = validate_spec(load_toml(path), file=str(path))
    assert spec["model"]["channels"] == 8 and spec["training"]["split"]["test"] == 0.2
    assert validate_spec(tomllib.loads(dumps_toml(spec))) == spec  # resolved spec survives TOML


def test_training_learns_and_writes_card(trained: tuple[Path, Path, dict[str, Any]]) -> None:
    data, out, card = trained
    assert (out / WEIGHTS_FILE).is_file() and (out / CARD_FILE).is_file()
    hist = card["training"]
    assert hist["val_mse"][-1] < 0.5 * hist["val_mse"][0]  # val loss went down
    assert min(hist["best_val_mse"]) < hist["val_mse"][0]
    val = card["metrics"]["val"]
    assert val["rmse"] < 0.5 * val["rmse_linear"]  # learned the slope^2 term beyond 1 - 4 Lambda h
    assert set(val["per_family"]) == {"random", "ripple"}
    assert card["architecture"]["linear_channels"] == [0, 1]  # h_dev, lambda_h: exact small-slope law
    splits = card["data"]["splits"]
    assert sum(s["samples"] for s in splits.values()) == 160 == card["data"]["samples"]
    assert card["data"]["path"] == data.name and card["data"]["spec"] == "# synthetic\n"  # no directory of this machine
    assert len(card["seeds"]["members"]) == 5 and card["seeds"]["seed"] == 7
    cal = card["calibration"]
    assert cal["tolerance"] == 0.02 and cal["confidence"] == 0.95 and "coverage" in cal["test"]
    assert cal["threshold"] is None or cal["threshold"] >= 0
    assert len(cal["u"]) == len(cal["e"]) == splits["calib"]["samples"] == cal["n_calibration"]
    assert card_threshold(card) == calibrate_threshold(cal["u"], cal["e"], 0.02, 0.95)  # recomputable
    assert "strata" not in cal and set(cal["test_by_stratum"]) <= {"random", "ripple"}  # pooled rule, per-family test
    mod = cal["modulation"]  # the same for the modulation metric (relative error of rho - <rho>)
    assert mod["tolerance"] == 0.05 and len(mod["u"]) == len(mod["e"]) == splits["calib"]["samples"]
    assert "coverage" in mod["test"] and "std_x" in mod["indicator"]
    tau_mod = -math.inf if mod["threshold"] is None else mod["threshold"]
    assert tau_mod == calibrate_threshold(mod["u"], mod["e"], 0.05, 0.95)
    assert {"torch", "numpy", "hybrid", "python"} <= set(card["versions"])
    assert card["features"] == "elastic-v1" and card["target"] == "rho/rho0"
    assert card["inference"]["points"] == 32 and card["inference"]["seconds"] > 0
    json.loads((out / CARD_FILE).read_text())  # strict JSON (no NaN/inf)


def test_reload_gives_identical_outputs_on_any_n(trained: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, _ = trained
    model, _ = load_ensemble(out)
    again, _ = load_ensemble(out / CARD_FILE)
    for n in (32, 50):  # trained on N = 32
        h = synthetic_dataset(samples=3, points=n, seed=9).h
        x = elastic_features(h, 1.0)
        with torch.inference_mode():
            a, b = model(x), again(x)
        assert a.shape == (3, 5, n) and torch.equal(a, b)
    assert model.input_scale.ne(1.0).all()  # normalisation from the training data was saved


def test_training_is_seeded(trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    data, _, _ = trained
    spec = {**TINY, "training": {**TINY["training"], "epochs": 2}}
    train_ensemble(spec, data, tmp_path / "a", learnable=ELASTIC_LEARNABLE)
    train_ensemble(spec, data, tmp_path / "b", learnable=ELASTIC_LEARNABLE)
    sa = torch.load(tmp_path / "a" / WEIGHTS_FILE, weights_only=True)
    sb = torch.load(tmp_path / "b" / WEIGHTS_FILE, weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    no_test = {"train": 0.8, "val": 0.1, "calib": 0.1, "test": 0.0}
    other = {**spec, "training": {**spec["training"], "seed": 8, "split": no_test}}
    card = train_ensemble(other, data, tmp_path / "c", learnable=ELASTIC_LEARNABLE)
    sc = torch.load(tmp_path / "c" / WEIGHTS_FILE, weights_only=True)
    assert not torch.equal(sa["readout_weight"], sc["readout_weight"])
    assert card["seeds"]["seed"] == 8 and np.isfinite(card["metrics"]["val"]["rmse"])
    assert card["data"]["splits"]["test"]["samples"] == 0 and card["calibration"]["test"]["n"] == 0


def test_recalibration_gives_what_training_with_that_calibration_gives(
    trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Calibration does not touch the weights, so training with calibration.conditional = max_slope and
    recalibrating the ensemble trained without it give the same weights and the same calibration (from the same
    seeded split); the Mondrian entry has one threshold per bin and the bin of every calibration pair."""
    from hybrid.models.training import recalibrate_ensemble

    data, model_dir, _ = trained
    change = {"conditional": "max_slope", "bins": 2}
    direct = train_ensemble(
        {**TINY, "calibration": {**TINY["calibration"], **change}},
        data,
        tmp_path / "direct",
        learnable=ELASTIC_LEARNABLE,
    )
    recal = recalibrate_ensemble(model_dir, data, change, tmp_path / "recal", learnable=ELASTIC_LEARNABLE)
    assert (tmp_path / "recal" / WEIGHTS_FILE).read_bytes() == (model_dir / WEIGHTS_FILE).read_bytes()
    sd, sm = (torch.load(d / WEIGHTS_FILE, weights_only=True) for d in (tmp_path / "direct", model_dir))
    assert all(torch.equal(sd[k], sm[k]) for k in sd)
    assert recal["calibration"] == direct["calibration"] and recal["spec"] == direct["spec"]
    cal = recal["calibration"]
    assert len(cal["thresholds"]) == 2 and len(cal["stratification"]["edges"]) == 1
    assert len(cal["input_strata"]) == len(cal["u"]) and set(cal["input_strata"]) <= {0, 1}
    assert len(cal["modulation"]["thresholds"]) == 2 and recal["recalibrated"]["changed"] == change
    assert read_card(model_dir)["spec"]["calibration"]["conditional"] == "none"  # the source is left alone


def test_recalibration_needs_the_training_data_and_valid_calibration_keys(
    trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from hybrid.cli import main
    from hybrid.models.training import recalibrate_ensemble

    data, model_dir, _ = trained
    other = tmp_path / "other.h5"
    write_dataset(other, synthetic_dataset(samples=40, points=32, group_size=4, seed=3), created="now")
    with pytest.raises(ValueError, match="do not match their SHA-256"):
        recalibrate_ensemble(model_dir, other, {}, learnable=ELASTIC_LEARNABLE)
    with pytest.raises(ConfigError, match=r"calibration\.conditional.*'max_slope'"):
        recalibrate_ensemble(model_dir, data, {"conditional": "slope"}, learnable=ELASTIC_LEARNABLE)
    assert main(["calibrate", str(model_dir), "--data", str(data), "--set", "training.epochs=3"]) == 2
    assert "only [calibration] keys" in capsys.readouterr().err
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    assert main(["calibrate", str(copy), "--data", str(data), "--set", "calibration.conditional=max_slope"]) == 0
    assert "one per bin of max_slope2, edges" in capsys.readouterr().out  # the card's stratum feature
    assert (copy / WEIGHTS_FILE).read_bytes() == (model_dir / WEIGHTS_FILE).read_bytes()
    assert len(read_card(copy)["calibration"]["thresholds"]) == 3  # the default bins
