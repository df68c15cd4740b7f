"""Training an ensemble for a learned term, then calibrating its monitor threshold.

The term is described by a :class:`~hybrid.models.learnable.Learnable` (its data layout, features, baseline law
and metrics); the texts below name the quantities of the term ``elastic`` (profiles h, target rho/rho0).
:func:`train_ensemble` is what ``hybrid train SPEC.toml --data FILE.h5 --out DIR`` runs. The spec file's schema
is :data:`TRAIN_SPEC` (``[model]``, ``[training]``, ``[training.split]``, ``[calibration]``). Steps:

1. read the dataset (:mod:`hybrid.models.data`), split it by group into train / val / calib / test;
2. build the K-member network (:class:`~hybrid.models.ensemble.EnsembleCNN1d`), member k initialised from its
   own seed, ``input_scale`` = 1 / (RMS of each feature channel over the training split); with
   ``model.linear_response = "exact"`` the correction's value and first-order response at the flat film are
   subtracted (``linear_channels`` = h_dev, lambda_h), so the small-slope law holds exactly to first order;
   in training that part comes from the impulse responses of the linearisation applied by FFT
   (``training.linear_method = "fft"``) or from forward-mode AD on every batch (``"jvp"``), equal to rounding;
3. train all members together in the batched network: each member draws its own mini-batch from its own
   bootstrap resample of the training split (input of shape (B, K, C, N)); the loss is the sum over members
   of each member's MSE of rho/rho0; Adam (L2 ``weight_decay``), cosine or constant learning rate;
4. early stopping per member: after each epoch every member's MSE on the validation split is measured; each
   member keeps the weights of its own best epoch, and training stops once every member has gone
   ``patience`` epochs without improving (or after ``epochs``);
5. metrics per split and per family (RMSE of the ensemble mean, of the small-slope law and of the members);
6. split-conformal calibration of the uncertainty threshold on the calib split, evaluated on the test split
   (:mod:`hybrid.models.calibration`); the card keeps the calib split's (u, e) pairs (``calibration.u``,
   ``calibration.e``) so the threshold can be recomputed for another tolerance or confidence; the same again
   for the modulation metric (error of rho - <rho> relative to std(rho)) in ``calibration.modulation``;
   ``[calibration] conditional = "family"`` makes the rule hold in every data family of the calib split
   (group-conditional; the card then keeps each pair's family in ``calibration.strata``), and the test
   evaluation is always reported per family too (``calibration.test_by_stratum``); ``conditional =
   "max_slope"`` instead gives each of ``bins`` bins of max_x (dh/dx)^2 its own threshold (Mondrian; the
   monitor bins every input the same way: ``calibration.thresholds``, ``calibration.stratification``);
   :func:`recalibrate_ensemble` (``hybrid calibrate``) redoes this step for a trained ensemble;
7. the wall time of one provider-style call (features + all members, one profile of the dataset's N);
8. ``DIR/weights.pt`` + ``DIR/model_card.json`` (:mod:`hybrid.models.card`).

Randomness: ``training.seed`` seeds torch (``torch.manual_seed``), the group split (numpy Generator) and, via
``numpy.random.SeedSequence(seed).spawn(K)``, one seed per member (initial weights, bootstrap draw, batch
order). Same spec + same data + same device give the same weights.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hybrid.core.backend import resolve_device
from hybrid.core.config import ConfigError, Option, Table, validate
from hybrid.core.io import check_writable
from hybrid.core.progress import progress_bar
from hybrid.core.provenance import hybrid_version
from hybrid.models.calibration import calibrate, quantile_edges, slope_strata
from hybrid.models.card import file_sha256, load_ensemble, portable_path, read_card, save_ensemble, write_card
from hybrid.models.data import SPLITS, bootstrap_indices, load_datasets, split_by_group
from hybrid.models.ensemble import ACTIVATIONS, EnsembleCNN1d
from hybrid.models.learnable import Learnable

__all__ = [
    "TRAIN_SPEC",
    "evaluate_ensemble",
    "predict",
    "recalibrate_ensemble",
    "time_inference",
    "train_ensemble",
    "validate_spec",
]

logger = logging.getLogger(__name__)

_MODEL = Table(
    {
        "term": Option("str", "elastic", "the learned term the ensemble serves (a registered learned term)"),
        "architecture": Option("str", "cnn1d", "network family", choices=("cnn1d",)),
        "features": Option("str", None, "input feature set (default: the term's, e.g. elastic-v1)"),
        "channels": Option("int", 16, "hidden channels per member", min=1),
        "layers": Option("int", 5, "kernel convolutions per member (residual after the first)", min=1),
        "kernel_size": Option("int", 5, "odd kernel size (mirror-symmetric kernels)", min=1),
        "dilations": Option("list[int]", [1, 2, 4, 8, 16], "dilation per layer, cycled", min=1),
        "activation": Option("str", "gelu", "pointwise nonlinearity", choices=tuple(ACTIVATIONS)),
        "linear_response": Option(
            "str",
            "learned",
            "exact: subtract the correction's value and first-order response at the flat profile, so the small-slope "
            "law holds exactly to first order; learned: leave it to training",
            choices=("learned", "exact"),
        ),
    },
    doc="network architecture",
)

_SPLIT = Table(
    {
        "train": Option("float", 0.7, "fraction of samples (whole groups) for training", min=0.0, max=1.0),
        "val": Option("float", 0.1, "fraction for early stopping", min=0.0, max=1.0),
        "calib": Option("float", 0.1, "fraction for calibrating the monitor threshold", min=0.0, max=1.0),
        "test": Option("float", 0.1, "fraction for the final test metrics", min=0.0, max=1.0),
    },
    doc="split fractions by group (sum 1; every fraction > 0 except possibly test)",
)

_TRAINING = Table(
    {
        "members": Option("int", 5, "ensemble members K", min=5),
        "epochs": Option("int", 40, "maximum epochs (one epoch = n_train / batch_size steps)", min=1),
        "batch_size": Option("int", 32, "profiles per member per step", min=1),
        "lr": Option("float", 3e-3, "Adam learning rate", min=0.0, min_exclusive=True),
        "lr_schedule": Option("str", "cosine", "learning rate over epochs", choices=("cosine", "constant")),
        "weight_decay": Option("float", 0.0, "L2 penalty of Adam", min=0.0),
        "patience": Option("int", 10, "epochs without val improvement before a member stops", min=1),
        "seed": Option("int", 0, "seed of the split, the member seeds, torch", min=0),
        "bootstrap": Option("bool", True, "each member trains on its own bootstrap resample"),
        "device": Option("str", "auto", "'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ..."),
        "max_minutes": Option("float", None, "stop after this wall time [min] (optional)", min=0.0),
        "threads": Option("int", None, "torch CPU threads while training (unset: leave as is)", min=1),
        "linear_method": Option(
            "str",
            "fft",
            "how training evaluates the exact linear response (model.linear_response = 'exact'): fft = impulse "
            "responses applied by FFT (about 3x cheaper per step), jvp = forward-mode AD on every batch; equal to "
            "rounding",
            choices=("fft", "jvp"),
        ),
        "split": _SPLIT,
        "stratify": Option(
            "str",
            "none",
            "'family': split the groups of each data family separately, so every split has the same family mix",
            choices=("none", "family"),
        ),
    },
    doc="optimisation",
)

_CALIBRATION = Table(
    {
        "tolerance": Option("float", 0.02, "acceptable RMS error of rho/rho0 (0.02 = 2% of rho0)", min=0.0,
                            min_exclusive=True),
        "modulation_tolerance": Option("float", 0.05, "tolerance of the 'modulation' metric: RMS error of "
                                       "rho - <rho> relative to std(rho)", min=0.0, min_exclusive=True),
        "confidence": Option("float", 0.95, "fraction of accepted answers within tolerance", min=0.0, max=1.0,
                             min_exclusive=True, max_exclusive=True),
        "delta": Option("float", None, "unset: split-conformal rule (valid on average); set: Clopper-Pearson "
                        "bound, violated with probability <= delta", min=0.0, max=1.0, min_exclusive=True,
                        max_exclusive=True),
        "conditional": Option("str", "none", "'family': the coverage must hold within every data family of the "
                              "calib split (group-conditional conformal; the smallest per-family threshold); "
                              "'max_slope': one threshold per bin of max (dh/dx)^2, which the monitor computes "
                              "from each input (Mondrian conformal)",
                              choices=("none", "family", "max_slope")),
        "bins": Option("int", 3, "bins of max (dh/dx)^2 with equal shares of the calib split "
                       "(conditional = 'max_slope')", min=1),
    },
    doc="monitor threshold calibration",
)  # fmt: skip

TRAIN_SPEC = Table(
    {"model": _MODEL, "training": _TRAINING, "calibration": _CALIBRATION},
    doc="spec of `hybrid train SPEC.toml --data FILE.h5 --out DIR`",
)
"""Schema of a training spec (every key has a default, so ``{}`` is a valid spec)."""


def validate_spec(
    spec: Mapping[str, Any], *, file: str | None = None, learnable: Learnable | None = None
) -> dict[str, Any]:
    """Validate a training spec against :data:`TRAIN_SPEC` plus the cross-key rules (and the term's features).

    Raises:
        ConfigError: naming the file and key (split fractions not summing to 1, an empty train/val/calib
            split, an even kernel size, ...).
    """
    out = validate(spec, TRAIN_SPEC, file=file)
    split = out["training"]["split"]
    if not math.isclose(sum(split.values()), 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions must sum to 1, got {sum(split.values())!r}", "training.split", file)
    for name in ("train", "val", "calib"):
        if split[name] <= 0:
            raise ConfigError("must be > 0", f"training.split.{name}", file)
    if out["model"]["kernel_size"] % 2 == 0:
        raise ConfigError(f"must be odd, got {out['model']['kernel_size']}", "model.kernel_size", file)
    if not out["model"]["dilations"]:
        raise ConfigError("must not be empty", "model.dilations", file)
    if learnable is not None:
        if out["model"]["term"] != learnable.term:
            raise ConfigError(
                f"this trainer learns {learnable.term!r}, got {out['model']['term']!r}", "model.term", file
            )
        if out["model"]["features"] is None:
            out["model"]["features"] = learnable.feature_set
        elif out["model"]["features"] != learnable.feature_set:
            raise ConfigError(
                f"must be {learnable.feature_set!r} (the features of {learnable.term!r}), "
                f"got {out['model']['features']!r}",
                "model.features",
                file,
            )
    return out


@torch.no_grad()
def predict(model: EnsembleCNN1d, features: Tensor, chunk: int = 512) -> Tensor:
    """Member predictions for many inputs, in chunks.

    Args:
        model: the ensemble.
        features: (S, C, N) inputs on the model's device.
        chunk: samples per forward pass.

    Returns:
        (S, K, N) predictions, same device.
    """
    outs = [model(features[i : i + chunk]) for i in range(0, features.shape[0], chunk)]
    return torch.cat(outs) if outs else features.new_zeros(0, model.members, features.shape[-1])


def evaluate_ensemble(
    model: EnsembleCNN1d, features: Tensor, target: Tensor, learnable: Learnable, family: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy of the ensemble on a set of profiles (all values in units of rho0).

    Args:
        model: the ensemble.
        features: (S, C, N) the term's features.
        target: (S, N) true rho/rho0.
        learnable: the term (its baseline law and default metric).
        family: (S,) family names for the per-family breakdown.

    Returns:
        ``n``; ``rmse`` (ensemble mean, over all points of all profiles); ``rmse_linear`` (the term's baseline
        law, e.g. the small-slope law 1 - 4 Lambda h; NaN without one); ``rmse_members`` (each member);
        ``max_abs_error``; ``u_median``, ``e_median`` (per-profile indicator and error of the default metric);
        ``per_family`` (rmse,
        rmse_linear, n per family). NaN for an empty set.
    """
    pred = predict(model, features)
    return _metrics(pred, features, target, family, learnable)


def _baseline(features: Tensor, learnable: Learnable) -> Tensor | None:
    """The term's baseline law offset + coefficient · channel of each sample (S, N), or None."""
    if learnable.baseline is None:
        return None
    channel, coefficient, offset = learnable.baseline
    return offset + coefficient * features[:, learnable.channels.index(channel)]


def _metrics(
    pred: Tensor, features: Tensor, target: Tensor, family: np.ndarray | None, learnable: Learnable
) -> dict[str, Any]:
    if pred.shape[0] == 0:
        return {"n": 0, "rmse": math.nan, "rmse_linear": math.nan}
    mean = pred.mean(dim=1)
    sq = (mean - target).square()
    law = _baseline(features, learnable)
    lin_sq = torch.full_like(sq, math.nan) if law is None else (law - target).square()
    metric = learnable.metrics[learnable.default_metric]
    u = metric.indicator(pred)
    e = metric.error(pred, target)
    out: dict[str, Any] = {
        "n": int(pred.shape[0]),
        "rmse": float(sq.mean().sqrt()),
        "rmse_linear": float(lin_sq.mean().sqrt()),
        "rmse_members": [float(v) for v in (pred - target[:, None]).square().mean(dim=(0, 2)).sqrt()],
        "max_abs_error": float((mean - target).abs().max()),
        "u_median": float(u.median()),
        "e_median": float(e.median()),
    }
    if family is not None:
        per: dict[str, Any] = {}
        for name in np.unique(family):
            sel = torch.as_tensor(family == name, device=pred.device)
            per[str(name)] = {
                "n": int(sel.sum()),
                "rmse": float(sq[sel].mean().sqrt()),
                "rmse_linear": float(lin_sq[sel].mean().sqrt()),
            }
        out["per_family"] = per
    return out


def train_ensemble(
    spec: Mapping[str, Any],
    data_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    learnable: Learnable,
    progress: bool = False,
    spec_file: str | None = None,
) -> dict[str, Any]:
    """Train, evaluate and calibrate an ensemble; write ``out_dir/weights.pt`` and ``out_dir/model_card.json``.

    Args:
        spec: parsed training spec (validated here against :data:`TRAIN_SPEC`; ``{}`` means all defaults).
        data_path: dataset HDF5 file (:mod:`hybrid.models.data`), or several (concatenated).
        out_dir: model directory to write.
        learnable: the term to learn (``spec``'s ``model.term`` must name it).
        progress: show a progress bar over epochs (tqdm, on stderr).
        spec_file: file name of the spec, for error messages and the card.

    Returns:
        The model card (as written, plus ``path``).

    Raises:
        ConfigError: invalid spec.
        FileNotFoundError, DatasetError: unreadable dataset.
        ValueError: too few groups for the split.
    """
    t_start = time.perf_counter()
    spec = validate_spec(spec, file=spec_file, learnable=learnable)
    m_spec, t_spec, c_spec = spec["model"], spec["training"], spec["calibration"]
    device = resolve_device(t_spec["device"], "training.device", spec_file)
    channels = learnable.channels
    check_writable(out_dir, "--out", directory=True)  # before the training, not after it
    seed, k = t_spec["seed"], t_spec["members"]

    paths = [data_path] if isinstance(data_path, str | os.PathLike) else list(data_path)
    ds = load_datasets(paths, learnable.layout)
    strata = ds.family if t_spec["stratify"] == "family" else None
    splits = split_by_group(ds.group, t_spec["split"], seed, strata=strata)
    torch.manual_seed(seed)
    member_seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(k)]

    x_all, y_all = ds.tensors(device, features=learnable.features)
    x = {name: x_all[torch.as_tensor(idx, device=device)] for name, idx in splits.items()}
    y = {name: y_all[torch.as_tensor(idx, device=device)] for name, idx in splits.items()}
    del x_all, y_all

    model = EnsembleCNN1d(
        members=k,
        in_channels=len(channels),
        channels=m_spec["channels"],
        layers=m_spec["layers"],
        kernel_size=m_spec["kernel_size"],
        dilations=m_spec["dilations"],
        activation=m_spec["activation"],
        baseline_channel=channels.index(learnable.baseline[0]) if learnable.baseline else -1,
        baseline_coefficient=learnable.baseline[1] if learnable.baseline else 0.0,
        baseline_offset=learnable.baseline[2] if learnable.baseline else 0.0,
        linear_channels=[channels.index(c) for c in learnable.linear_channels]
        if m_spec["linear_response"] == "exact"
        else [],
        seeds=member_seeds,
    ).to(device)
    with torch.no_grad():
        rms = x["train"].square().mean(dim=(0, 2)).sqrt()
        model.input_scale.copy_(torch.where(rms > 0, 1.0 / rms, torch.ones_like(rms)))
    model.linear_method = t_spec["linear_method"]

    threads = torch.get_num_threads()
    if t_spec["threads"] is not None:
        torch.set_num_threads(t_spec["threads"])
    try:
        history = _fit(model, x, y, t_spec, member_seeds, progress)
    finally:
        torch.set_num_threads(threads)
    model.eval()

    preds = {name: predict(model, x[name]) for name in SPLITS}
    metrics = {name: _metrics(preds[name], x[name], y[name], ds.family[splits[name]], learnable) for name in SPLITS}
    calib = calibration_section(
        {n: preds[n] for n in ("calib", "test")}, {n: y[n] for n in ("calib", "test")},
        {n: x[n] for n in ("calib", "test")}, {n: ds.family[splits[n]] for n in ("calib", "test")}, c_spec,
        learnable,
    )  # fmt: skip
    logger.info(
        "trained %d members in %.1f s: val RMSE %.4g (linear law %.4g); threshold %.4g, test coverage %s",
        k, time.perf_counter() - t_start, metrics["val"]["rmse"], metrics["val"]["rmse_linear"],
        calib["threshold"], calib["test"]["coverage"],
    )  # fmt: skip

    card: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "term": learnable.term,
        "features": m_spec["features"],
        "feature_channels": list(channels),
        "target": learnable.target_doc,
        "units": learnable.units_doc,
        "uncertainty": learnable.uncertainty_doc,
        "spec": spec,
        "spec_file": spec_file,
        "data": {
            "path": ";".join(portable_path(p) for p in paths),  # no directory layout of this machine
            "sha256": ";".join(file_sha256(p) for p in paths),
            "spec": ds.spec,
            "created": str(ds.attrs.get("created", "")),
            "hybrid_version": str(ds.attrs.get("hybrid_version", "")),
            "points": ds.points,
            "samples": len(ds),
            "splits": {
                name: {
                    "samples": int(idx.size),
                    "groups": int(np.unique(ds.group[idx]).size),
                    "families": ds.subset(idx).family_counts(),
                }
                for name, idx in splits.items()
            },
        },
        "seeds": {"seed": seed, "split": seed, "members": member_seeds},
        "training": {**history, "device": str(device), "seconds": time.perf_counter() - t_start},
        "metrics": metrics,
        "calibration": calib,
        "inference": time_inference(model, ds.points, float(np.median(ds.dx)), features=learnable.features),
        "versions": _versions(),
    }
    save_ensemble(out_dir, model, card)
    return read_card(out_dir)  # the card as written (JSON types)


def calibration_section(
    preds: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    features: Mapping[str, Tensor],
    family: Mapping[str, np.ndarray],
    c_spec: Mapping[str, Any],
    learnable: Learnable,
) -> dict[str, Any]:
    """The card's ``calibration`` entry from the calib and test splits (step 6 of the module docstring).

    Args:
        preds: {"calib", "test"} -> (S, K, N) member predictions of rho/rho0.
        target: the same splits -> (S, N) true rho/rho0.
        features: the same splits -> (S, C, N) the term's features (for the input strata).
        family: the same splits -> (S,) data family of each sample.
        c_spec: the validated ``[calibration]`` table.
        learnable: the term (its metrics and stratum channel).

    Returns:
        :func:`~hybrid.models.calibration.calibrate` for the default metric (rho0) with the calib split's (u, e)
        pairs (``u``, ``e``), and the same for each other metric NAME whose ``NAME_tolerance`` the spec has, under
        NAME (``modulation``).
    """
    conditional: dict[str, Any] = {"strata_test": family["test"]}
    if c_spec["conditional"] == "family":
        conditional["strata_cal"] = family["calib"]
    elif c_spec["conditional"] == "max_slope":
        if learnable.stratum_channel is None:
            raise ConfigError(
                f"the term {learnable.term!r} has no input strata; allowed: 'none', 'family'", "calibration.conditional"
            )
        stratum = learnable.channels.index(learnable.stratum_channel)
        max_slope2 = {n: features[n][:, stratum].amax(dim=-1).cpu().numpy() for n in ("calib", "test")}
        edges = quantile_edges(max_slope2["calib"], c_spec["bins"])
        conditional["input_strata"] = (
            slope_strata(max_slope2["calib"], edges),
            slope_strata(max_slope2["test"], edges),
            edges,
        )
    out: dict[str, Any] = {}
    default = learnable.default_metric
    for metric, m in learnable.metrics.items():
        tol = c_spec["tolerance"] if metric == default else c_spec.get(f"{metric}_tolerance")
        if tol is None:
            continue
        u, e = {}, {}
        for name in ("calib", "test"):
            u[name] = m.indicator(preds[name]).cpu().numpy()
            e[name] = m.error(preds[name], target[name]).cpu().numpy()
        cal = calibrate(
            u["calib"], e["calib"], u["test"], e["test"], tol, c_spec["confidence"], delta=c_spec["delta"],
            **conditional,
        )  # fmt: skip
        # the calibration pairs, so that a user can recalibrate for another tolerance/confidence without data
        cal["u"] = [float(v) for v in u["calib"]]
        cal["e"] = [float(v) for v in e["calib"]]
        if metric == default:
            out = {**cal, **out}
        else:  # selected by a monitor's `metric = NAME`
            cal["indicator"] = m.indicator_doc
            out[metric] = cal
    return out


def recalibrate_ensemble(
    model_dir: str | os.PathLike[str],
    data_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    calibration: Mapping[str, Any],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    learnable: Learnable,
) -> dict[str, Any]:
    """Redo the calibration of a trained ensemble (step 6) with other ``[calibration]`` settings; the weights stay.

    The data must be the files the ensemble was trained on (checked by SHA-256 against the card), so that the
    seeded group split gives the same calib and test splits as in training.

    Args:
        model_dir: ensemble directory (weights.pt + model_card.json).
        data_path: its dataset file(s), in the card's order.
        calibration: ``[calibration]`` keys to change (the rest as in the card's spec).
        out_dir: where to write (None: rewrite the card in ``model_dir``; else weights.pt is copied there).
        learnable: the term of the card.

    Returns:
        The new card (as written, plus ``path``); ``recalibrated`` records when and what changed.

    Raises:
        ConfigError: an invalid ``[calibration]`` key or value.
        ValueError: data files that are not the card's.
    """
    import shutil

    model, card = load_ensemble(model_dir, device="cpu", expect=EnsembleCNN1d)
    spec = dict(card["spec"])
    spec["calibration"] = {**spec.get("calibration", {}), **calibration}
    spec = validate_spec(spec, file=str(Path(card["path"])), learnable=learnable)
    check_writable(model_dir if out_dir is None else out_dir, "--out", directory=True)
    paths = [data_path] if isinstance(data_path, str | os.PathLike) else list(data_path)
    expected = str(card.get("data", {}).get("sha256", "")).split(";")
    got = [file_sha256(p) for p in paths]
    if got != expected:
        raise ValueError(
            f"{card['path']}: the ensemble was trained on {len(expected)} data file(s) "
            f"({card.get('data', {}).get('path')}); the files given ({'; '.join(str(p) for p in paths)}) do not "
            f"match their SHA-256, so the calib/test splits cannot be rebuilt"
        )
    t_spec = spec["training"]
    ds = load_datasets(paths, learnable.layout)
    splits = split_by_group(ds.group, t_spec["split"], t_spec["seed"],
                            strata=ds.family if t_spec["stratify"] == "family" else None)  # fmt: skip
    x_all, y_all = ds.tensors("cpu", features=learnable.features)
    x = {n: x_all[torch.as_tensor(splits[n])] for n in ("calib", "test")}
    y = {n: y_all[torch.as_tensor(splits[n])] for n in ("calib", "test")}
    preds = {n: predict(model, x[n]) for n in ("calib", "test")}
    card["calibration"] = calibration_section(preds, y, x, {n: ds.family[splits[n]] for n in ("calib", "test")},
                                              spec["calibration"], learnable)  # fmt: skip
    card["spec"] = spec
    card["recalibrated"] = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "changed": dict(calibration),
        "hybrid": _versions()["hybrid"],
    }
    out = Path(model_dir) if out_dir is None else Path(out_dir)
    if out_dir is not None:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(model_dir) / card["weights"]["file"], out / card["weights"]["file"])
    write_card(out, card)
    return read_card(out)


def _fit(
    model: EnsembleCNN1d,
    x: dict[str, Tensor],
    y: dict[str, Tensor],
    t_spec: Mapping[str, Any],
    member_seeds: list[int],
    progress: bool,
) -> dict[str, Any]:
    """The training loop (per-member bootstrap batches, per-member early stopping). Returns the history."""
    device = x["train"].device
    k = model.members
    n_train = x["train"].shape[0]
    batch = min(t_spec["batch_size"], n_train)
    steps = max(1, n_train // batch)
    boot = torch.as_tensor(
        bootstrap_indices(n_train, k, member_seeds, bootstrap=t_spec["bootstrap"]), device=device
    )  # (K, n_train)
    gens = [torch.Generator().manual_seed(s + 1) for s in member_seeds]  # batch order of each member
    epochs = t_spec["epochs"]
    opt = torch.optim.Adam(model.parameters(), lr=t_spec["lr"], weight_decay=t_spec["weight_decay"])
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
        if t_spec["lr_schedule"] == "cosine"
        else None
    )
    best_loss = [math.inf] * k
    best_epoch = [-1] * k
    best_state: list[dict[str, Tensor]] = [model.member_state_dict(i) for i in range(k)]
    train_curve: list[float] = []
    val_curve: list[float] = []
    deadline = None if t_spec["max_minutes"] is None else time.perf_counter() + 60.0 * t_spec["max_minutes"]
    stop_reason = "epochs"
    bar = progress_bar(epochs, desc="training", unit="epoch") if progress else None
    epoch = 0
    for epoch in range(epochs):
        model.train()
        perms = torch.stack([torch.randperm(n_train, generator=g) for g in gens]).to(device)
        order = boot.gather(1, perms)  # (K, n_train): member k's samples of this epoch, shuffled
        total = torch.zeros((), device=device)
        for s in range(steps):
            idx = order[:, s * batch : (s + 1) * batch]  # (K, B)
            xb = x["train"][idx].transpose(0, 1)  # (B, K, C, N)
            yb = y["train"][idx].transpose(0, 1)  # (B, K, N)
            loss_k = (model(xb) - yb).square().mean(dim=(0, 2))  # (K,)
            loss = loss_k.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.detach()
        model.eval()
        val_k = (predict(model, x["val"]) - y["val"][:, None]).square().mean(dim=(0, 2)).cpu().tolist()
        train_curve.append(float(total) / (steps * k))
        val_curve.append(float(np.mean(val_k)))
        for i, v in enumerate(val_k):
            if v < best_loss[i]:
                best_loss[i], best_epoch[i] = v, epoch
                best_state[i] = model.member_state_dict(i)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(train=f"{train_curve[-1]:.3g}", val=f"{val_curve[-1]:.3g}")
        logger.debug("epoch %d: train MSE %.4g, val MSE %.4g", epoch, train_curve[-1], val_curve[-1])
        if all(epoch - b >= t_spec["patience"] for b in best_epoch):
            stop_reason = "early stopping (every member)"
            break
        if deadline is not None and time.perf_counter() > deadline:
            stop_reason = "max_minutes"
            break
    if bar is not None:
        bar.close()
    for i in range(k):
        model.load_member_state_dict(i, best_state[i])
    return {
        "early_stopping": "per member on its own val MSE (each member keeps its best epoch)",
        "stop_reason": stop_reason,
        "epochs_run": epoch + 1,
        "steps_per_epoch": steps,
        "batch_size": batch,
        "best_epoch": best_epoch,
        "best_val_mse": best_loss,
        "train_mse": train_curve,
        "val_mse": val_curve,
    }


def time_inference(
    model: EnsembleCNN1d, points: int, dx: float = 1.0, calls: int = 30, *, features: Any = None
) -> dict[str, Any]:
    """Wall time of one NN evaluation as a provider makes it: features + all members for one profile.

    Args:
        model: the ensemble (evaluated on its own device, in its dtype).
        points: N.
        dx: grid spacing [nm] (irrelevant to the cost).
        calls: timed calls (after 3 warm-up calls).
        features: the term's feature function (default: the elastic features).

    Returns:
        ``{"points", "batch": 1, "device", "threads", "seconds" (median wall time of one call), "what"}``.
    """
    if features is None:
        from hybrid.models.features import elastic_features as features
    device = model.readout_bias.device
    h = torch.rand(1, points, dtype=torch.float64, device=device) + 5.0
    times = []
    with torch.inference_mode():
        for i in range(calls + 3):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            model(features(h, dx))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= 3:
                times.append(time.perf_counter() - t0)
    return {
        "points": points,
        "batch": 1,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seconds": float(np.median(times)),
        "what": "features + forward of all members, float32, inference_mode, median wall time",
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {
        "hybrid": hybrid_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "h5py": version("h5py"),
        "python": platform.python_version(),
    }
