"""Saving and loading trained ensembles: ``weights.pt`` (a state dict) next to ``model_card.json``.

Layout of a model directory::

    DIR/weights.pt        torch.save(model.state_dict()), loaded with torch.load(..., weights_only=True)
    DIR/model_card.json   the model card (JSON)

Card keys written by :func:`save_ensemble` (others come from the caller, e.g. ``train_ensemble``)::

    format          "hybrid-nn-ensemble/1"
    architecture    {"class": "EnsembleCNN1d", **model.config()}   everything needed to rebuild the network
    weights         {"file": "weights.pt", "sha256": ..., "parameters": count, "members": K}
    features        feature-set name, e.g. "elastic-v1" (hybrid.models.features.FEATURES)
    target          what the network predicts, e.g. "rho/rho0"
    calibration     {"threshold": tau or null (null: no threshold qualified, always DNS), "tolerance", ...}

Non-finite floats are written as ``null`` (JSON has no inf/NaN); :func:`card_threshold` turns a null
threshold back into -inf. Paths are written portably (:func:`portable_path`): relative to the repository that holds
this package when they lie inside it, else the bare file name (the sha256 beside it identifies the file), so a card
never carries the directory layout of the machine that trained it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np
import torch
from torch import nn

from hybrid.models.ensemble import EnsembleCNN1d
from hybrid.models.jump_net import EnsembleJumpNet2d
from hybrid.models.patch_autoencoder import PatchSurrogateNet

__all__ = [
    "ARCHITECTURES",
    "CARD_FILE",
    "CARD_FORMAT",
    "WEIGHTS_FILE",
    "ModelCardError",
    "card_threshold",
    "file_sha256",
    "load_ensemble",
    "portable_path",
    "read_card",
    "save_ensemble",
    "write_card",
]

CARD_FORMAT = "hybrid-nn-ensemble/1"
CARD_FILE = "model_card.json"
WEIGHTS_FILE = "weights.pt"
ARCHITECTURES: dict[str, type[Any]] = {
    "EnsembleCNN1d": EnsembleCNN1d,
    "EnsembleJumpNet2d": EnsembleJumpNet2d,
    "PatchSurrogateNet": PatchSurrogateNet,
}
"""Architecture class name (card ``architecture.class``) -> class, built as ``cls(**config)``."""

REPOSITORY = Path(__file__).resolve().parents[2]
"""The directory holding the ``hybrid`` package (the repository checkout): card paths are relative to it."""


class ModelCardError(ValueError):
    """A model card or weights file is unreadable or does not match; the message names the file."""


def save_ensemble(out_dir: str | os.PathLike[str], model: EnsembleCNN1d, card: Mapping[str, Any]) -> Path:
    """Write ``out_dir/weights.pt`` and ``out_dir/model_card.json`` (each replaced atomically).

    Args:
        out_dir: model directory (created if needed).
        model: the ensemble.
        card: card entries (JSON-serialisable after converting numpy scalars/arrays and tuples); the keys
            ``format``, ``architecture`` and ``weights`` are set here.

    Returns:
        Path of the card file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / WEIGHTS_FILE
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = weights_path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, weights_path)
    full = dict(card)
    full["format"] = CARD_FORMAT
    full["architecture"] = {"class": type(model).__name__, **model.config()}
    full["weights"] = {
        "file": WEIGHTS_FILE,
        "sha256": file_sha256(weights_path),
        "parameters": model.parameter_count(),
        "members": model.members,
    }
    return write_card(out, full)


def write_card(out_dir: str | os.PathLike[str], card: Mapping[str, Any]) -> Path:
    """Write ``out_dir/model_card.json`` alone (atomically), e.g. after recalibrating unchanged weights.

    Args:
        out_dir: model directory (exists).
        card: the full card (``path``, which :func:`read_card` adds, is dropped).

    Returns:
        Path of the card file.
    """
    card_path = Path(out_dir) / CARD_FILE
    tmp = card_path.with_suffix(".json.tmp")
    body = _portable({k: v for k, v in card.items() if k != "path"})
    tmp.write_text(json.dumps(_jsonable(body), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, card_path)
    return card_path


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model card.

    Args:
        path: the model directory or its ``model_card.json``.

    Returns:
        The card, with ``card["path"]`` set to the card file (absolute).

    Raises:
        FileNotFoundError: no card there (the message names the file looked for).
        ModelCardError: not valid JSON, or not a hybrid ensemble card.
    """
    card_path = _card_path(path)
    if not card_path.is_file():
        raise FileNotFoundError(f"{card_path}: model card not found")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelCardError(f"{card_path}: not a valid JSON model card: {err}") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        got = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ModelCardError(f"{card_path}: expected a card of format {CARD_FORMAT!r}, got {got!r}")
    card["path"] = str(card_path.resolve())
    return card


ModelT = TypeVar("ModelT", bound=nn.Module)


@overload
def load_ensemble(
    path: str | os.PathLike[str], device: str | torch.device = ..., *, check_hash: bool = ..., expect: None = ...
) -> tuple[nn.Module, dict[str, Any]]: ...


@overload
def load_ensemble(
    path: str | os.PathLike[str], device: str | torch.device = ..., *, check_hash: bool = ..., expect: type[ModelT]
) -> tuple[ModelT, dict[str, Any]]: ...


def load_ensemble(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    check_hash: bool = True,
    expect: type[nn.Module] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild an ensemble from its card and weights (``torch.load(weights_only=True)``), in eval mode.

    Args:
        path: the model directory or its ``model_card.json``.
        device: where to put the network.
        check_hash: compare the weights file with the sha256 recorded in the card.
        expect: the architecture class the caller needs (e.g. :class:`EnsembleCNN1d` for the elastic term); a
            card of another class is refused with a :class:`ModelCardError` that names both.

    Returns:
        (model, card).

    Raises:
        FileNotFoundError: card or weights file missing (named).
        ModelCardError: unknown architecture, bad architecture parameters, hash mismatch, or weights that do
            not fit the architecture (the message names the file and the mismatching tensors).
    """
    card = read_card(path)
    card_path = Path(card["path"])
    arch = dict(card.get("architecture") or {})
    cls_name = arch.pop("class", None)
    if cls_name not in ARCHITECTURES:
        raise ModelCardError(f"{card_path}: unknown architecture class {cls_name!r} (known: {sorted(ARCHITECTURES)})")
    if expect is not None and not issubclass(ARCHITECTURES[cls_name], expect):
        raise ModelCardError(
            f"{card_path}: the card's architecture is {cls_name}, but this use needs the architecture "
            f"{expect.__name__} (is this the model directory of another term or stepper?)"
        )
    try:
        model = ARCHITECTURES[cls_name](**arch)
    except (TypeError, ValueError) as err:
        raise ModelCardError(f"{card_path}: cannot build {cls_name} from the card's architecture: {err}") from None
    weights = card.get("weights") or {}
    weights_path = card_path.parent / str(weights.get("file", WEIGHTS_FILE))
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: weights file named by {card_path} not found")
    if weights_path.stat().st_size == 0:
        raise ModelCardError(f"{weights_path}: cannot load weights: {_EMPTY}")
    if check_hash and weights.get("sha256") and file_sha256(weights_path) != weights["sha256"]:
        raise ModelCardError(
            f"{weights_path}: cannot load weights: its sha256 differs from the one recorded in {card_path} (the "
            f"file is corrupted or belongs to another ensemble; copy or train it again)"
        )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise ModelCardError(f"{weights_path}: cannot load weights: {_load_failure(weights_path, err)}") from None
    if not isinstance(state, dict):
        raise ModelCardError(f"{weights_path}: expected a state dict, got {type(state).__name__}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs card {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or extra or shapes:
        raise ModelCardError(
            f"{weights_path}: weights do not match the architecture in {card_path}: "
            f"missing {missing}, unexpected {extra}, shape mismatches {shapes}"
        )
    model.load_state_dict(state)
    model.to(device)
    model.eval()
    return model, card


def card_threshold(card: Mapping[str, Any]) -> float:
    """The calibrated monitor threshold tau of a card (-inf when none qualified or none is recorded)."""
    tau = (card.get("calibration") or {}).get("threshold")
    return -math.inf if tau is None else float(tau)


def _card_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p / CARD_FILE if p.is_dir() or p.suffix != ".json" else p


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (weights and dataset provenance in the model card)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_EMPTY = "the file is empty (0 bytes; an interrupted copy or save?); copy or train it again"


def _load_failure(path: Path, err: Exception) -> str:
    """Why ``torch.load`` failed on ``path``, in words (torch's own message is empty for some failures)."""
    size = path.stat().st_size
    if size == 0:
        return _EMPTY
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    what = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return f"not a torch state-dict file ({size} bytes; {what}); copy or train it again"


def portable_path(path: str | os.PathLike[str]) -> str:
    """How a card names a file: relative to :data:`REPOSITORY` (POSIX separators) when inside it, else its name.

    Args:
        path: absolute, or relative to the working directory.
    """
    p = Path(path).resolve()
    try:
        return p.relative_to(REPOSITORY).as_posix()
    except ValueError:
        return p.name


_QUOTED_ABSOLUTE = re.compile(r'"(/[^"\n]*)"')


def _portable(value: Any) -> Any:
    """``value`` with absolute paths made portable: a string that is a path (or ``;``-joined paths), and quoted
    absolute paths inside provenance text (TOML blocks of dataset and capture specs)."""
    if isinstance(value, Mapping):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v) for v in value]
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        if value.startswith("/") and "\n" not in value and '"' not in value:
            return ";".join(portable_path(v) if v.startswith("/") else v for v in value.split(";"))
        return _QUOTED_ABSOLUTE.sub(lambda m: json.dumps(portable_path(m.group(1))), value)
    return value


def _jsonable(value: Any) -> Any:
    """numpy/torch scalars and arrays -> Python; tuples -> lists; paths -> str; NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
