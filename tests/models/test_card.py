"""Saving/loading ensembles: round trip, weights_only state dicts, clear errors naming the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from hybrid.models.card import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCardError,
    card_threshold,
    load_ensemble,
    read_card,
    save_ensemble,
)
from hybrid.models.ensemble import EnsembleCNN1d
from tests.models import one_torch_thread  # noqa: F401


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, EnsembleCNN1d]:
    model = EnsembleCNN1d(5, 3, channels=4, layers=2, kernel_size=3, dilations=[1, 2], readout_init=1.0)
    with torch.no_grad():
        model.input_scale.copy_(torch.tensor([0.5, 2.0, 3.0]))
    card = {"features": "elastic-v1", "calibration": {"threshold": -math.inf, "tolerance": 0.02}, "x": (1, 2)}
    save_ensemble(tmp_path / "m", model, card)
    return tmp_path / "m", model.eval()


def test_roundtrip_identical_outputs(saved: tuple[Path, EnsembleCNN1d]) -> None:
    path, model = saved
    x = torch.randn(2, 3, 24)
    for where in (path, path / CARD_FILE, str(path)):
        loaded, card = load_ensemble(where)
        assert not loaded.training
        with torch.inference_mode():
            assert torch.equal(loaded(x), model(x))
    assert card["architecture"]["class"] == "EnsembleCNN1d" and card["architecture"]["channels"] == 4
    assert card["weights"]["parameters"] == model.parameter_count() and card["weights"]["members"] == 5
    assert card["calibration"]["threshold"] is None and card_threshold(card) == -math.inf  # JSON has no inf
    assert card["x"] == [1, 2] and card["path"] == str((path / CARD_FILE).resolve())
    state = torch.load(path / WEIGHTS_FILE, weights_only=True)  # a plain state dict
    assert set(state) == set(model.state_dict())
    assert card_threshold({"calibration": {"threshold": 0.01}}) == 0.01


def test_a_card_of_another_architecture_is_refused_by_name(saved: tuple[Path, EnsembleCNN1d]) -> None:
    from hybrid.models.jump_net import EnsembleJumpNet2d

    path, _ = saved
    model, _ = load_ensemble(path, expect=EnsembleCNN1d)
    assert isinstance(model, EnsembleCNN1d)
    with pytest.raises(
        ModelCardError, match=r"architecture is EnsembleCNN1d, but this use needs the architecture EnsembleJumpNet2d"
    ):
        load_ensemble(path, expect=EnsembleJumpNet2d)


def test_missing_files_are_named(saved: tuple[Path, EnsembleCNN1d], tmp_path: Path) -> None:
    path, _ = saved
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_ensemble(tmp_path / "nowhere")
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"weights\.pt"):
        load_ensemble(path)


def test_incompatible_or_corrupt_files(saved: tuple[Path, EnsembleCNN1d]) -> None:
    path, _ = saved
    card_path = path / CARD_FILE
    card = json.loads(card_path.read_text())

    card["architecture"]["channels"] = 5  # weights no longer fit
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match=r"weights\.pt: weights do not match.*shape mismatches"):
        load_ensemble(path)

    card["architecture"] = {"class": "Transformer"}
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="unknown architecture class"):
        load_ensemble(path)

    card["architecture"] = {"class": "EnsembleCNN1d", "channels": 4, "kernel_size": 2}
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="cannot build"):
        load_ensemble(path)

    card_path.write_text("{not json")
    with pytest.raises(ModelCardError, match=r"model_card\.json: not a valid JSON"):
        read_card(path)
    card_path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelCardError, match="expected a card of format"):
        read_card(card_path)


def test_hash_check(saved: tuple[Path, EnsembleCNN1d]) -> None:
    path, model = saved
    torch.save({k: v + 1 for k, v in model.state_dict().items()}, path / WEIGHTS_FILE)
    with pytest.raises(ModelCardError, match="sha256"):
        load_ensemble(path)
    loaded, _ = load_ensemble(path, check_hash=False)
    assert torch.equal(loaded.readout_bias, model.readout_bias + 1)


ROOT = Path(__file__).resolve().parents[2]


def test_shipped_cards_come_from_the_shipped_training_specs() -> None:
    """The shipped ensembles were trained with the specs the README's reproduce commands use.

    Elastic: ``training/atg_elastic.toml`` with the overrides the active-learning recipe adds to its last round
    (``training/atg_elastic_active_learning.sh``: ``refine`` sets ``training.stratify=family``, the last round
    ``calibration.conditional=family``). Grain-growth surrogate: ``training/graingrowth_surrogate.toml`` as is. Editing
    a spec without retraining (or the reverse) fails here."""
    import tomllib

    from hybrid.core.config import apply_overrides, validate
    from hybrid.models.jump_training import JUMP_TRAIN_SPEC
    from hybrid.models.training import validate_spec

    weights = ROOT / "hybrid" / "models" / "weights"
    elastic = weights / "atg_elastic" / CARD_FILE
    surrogate = weights / "graingrowth_surrogate" / CARD_FILE
    assert elastic.is_file() and surrogate.is_file()  # both ensembles ship with the package
    spec = tomllib.loads((ROOT / "training" / "atg_elastic.toml").read_text())
    spec = apply_overrides(spec, ["training.stratify=family", "calibration.conditional=family"])
    from hybrid.couplers.terms.elastic import ELASTIC_LEARNABLE as EL

    shipped = read_card(elastic.parent)["spec"]
    assert validate_spec(spec, learnable=EL) == validate_spec(shipped, learnable=EL)  # keys added since: defaults
    spec = validate(tomllib.loads((ROOT / "training" / "graingrowth_surrogate.toml").read_text()), JUMP_TRAIN_SPEC)
    card = read_card(surrogate.parent)
    trained = {k: v for k, v in card["training"].items() if k in spec["training"]}
    assert trained == spec["training"]
    assert card["inference"] == {**spec["inference"], "dtype": "float32"}


def test_an_empty_or_unreadable_weights_file_says_why(saved: tuple[Path, EnsembleCNN1d]) -> None:
    path, _ = saved
    weights = path / WEIGHTS_FILE
    good = weights.read_bytes()
    weights.write_bytes(b"")
    for check_hash in (True, False):  # emptiness is named before the hash comparison
        with pytest.raises(ModelCardError, match=r"weights\.pt: cannot load weights: the file is empty \(0 bytes"):
            load_ensemble(path, check_hash=check_hash)
    weights.write_bytes(good[: len(good) // 2])  # a truncated copy
    with pytest.raises(ModelCardError, match=r"cannot load weights: its sha256 differs .* \(the file is corrupted"):
        load_ensemble(path)
    with pytest.raises(
        ModelCardError, match=rf"cannot load weights: not a torch state-dict file \({len(good) // 2} bytes; \w+"
    ):
        load_ensemble(path, check_hash=False)


def test_hybrid_info_exits_non_zero_with_the_reason_for_a_broken_weights_file(
    saved: tuple[Path, EnsembleCNN1d], capsys: pytest.CaptureFixture[str]
) -> None:
    from hybrid.cli import main

    path, _ = saved
    assert main(["info", str(path)]) == 0
    assert "NN ensemble" in capsys.readouterr().out
    weights = path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-40:-20] = bytes(20)  # flipped bytes inside the archive
    weights.write_bytes(bytes(data))
    assert main(["info", str(path)]) == 2
    assert "weights.pt: cannot load weights: its sha256 differs" in capsys.readouterr().err
    weights.write_bytes(b"")
    assert main(["info", str(path)]) == 2
    assert "cannot load weights: the file is empty (0 bytes" in capsys.readouterr().err


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("name", ["atg_elastic", "graingrowth_surrogate"])
def test_shipped_cards_hold_no_absolute_path_of_the_training_machine(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from hybrid.cli import main

    directory = Path("hybrid") / "models" / "weights" / name  # relative: so is the first line of `hybrid info`
    card = read_card(ROOT / directory)
    card.pop("path")  # where read_card found it on this machine, not part of the file
    texts = _strings(card)
    assert not [s for s in texts if s.startswith("/") or '"/' in s or ";/" in s]
    for entry in filter(None, str(card["data"].get("path", card["data"].get("file", ""))).split(";")):
        assert not Path(entry).is_absolute()
    import os

    cwd = Path.cwd()
    try:
        os.chdir(ROOT)
        assert main(["info", str(directory)]) == 0
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert str(ROOT) not in out and "/work/" not in out and "/home/" not in out


def test_written_cards_name_files_relative_to_the_repository_or_by_name(tmp_path: Path) -> None:
    from hybrid.models.card import REPOSITORY, portable_path, write_card

    inside = REPOSITORY / "data" / "set.h5"
    outside = tmp_path / "elsewhere" / "capture.h5"
    assert portable_path(inside) == "data/set.h5" and portable_path(outside) == "capture.h5"
    spec = f'[capture]\nmonitor_weights = "{REPOSITORY / "data" / "round0"}"\nother = "{outside}"\nratio = "eV/nm"\n'
    card = {"data": {"path": f"{inside};{outside}", "file": str(outside), "spec": spec, "n": 3, "x": 0.1}}
    written = json.loads(write_card(tmp_path, card).read_text())
    assert written["data"]["path"] == "data/set.h5;capture.h5" and written["data"]["file"] == "capture.h5"
    assert written["data"]["spec"] == (
        '[capture]\nmonitor_weights = "data/round0"\nother = "capture.h5"\nratio = "eV/nm"\n'
    )
    assert written["data"]["n"] == 3 and written["data"]["x"] == 0.1
