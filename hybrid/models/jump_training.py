"""Training a jump-surrogate ensemble on DNS trajectories (``hybrid train SPEC.toml --data TRAJ.h5 --out DIR``).

Data: a trajectory file of ``hybrid dataset`` (:mod:`hybrid.couplers.trajectories`): ``/fields/<field>``
(R, F, Q, ny, nx) and ``/pairs`` (P, 2), frame pairs ``jump`` DNS steps apart. Trajectories are split whole into
training, calibration and test sets (the last ``calib_trajectories + test_trajectories`` of the file are held out).

Training (:func:`train_jump_ensemble`), on random crops: each iteration draws ``pairs_per_batch`` training pairs,
applies a random symmetry of the square (the model is isotropic up to the 5-point stencil), adds Gaussian noise
of standard deviation ``noise`` to the input η (the target stays the clean DNS frame, so the network also learns to
pull a perturbed state back: this keeps repeated jumps stable; the "rate" channel is computed from the noisy input,
as inference computes it from whatever state it is given) and cuts ``batch_size`` crops of ``crop``² output
points (plus the halo) from the (field, tile) pairs that inference would evaluate. Each member k weights each crop
by a Poisson(1) bootstrap count and minimises its weighted MSE of Δη; Adam with a cosine learning-rate decay.

Calibration: every held-out pair is jumped with the tiled inference of the provider
(:func:`hybrid.models.jump_net.jump_members`), giving the indicator u of ``inference.indicator`` ("spread": the
ensemble spread relative to the predicted change, :func:`hybrid.models.jump_net.relative_spread`; "rate_residual":
the DNS rate at the answer in units of the predicted change, :func:`hybrid.models.jump_net.rate_residual`; the card's
metrics give the Spearman correlation of both with e) and e (error against the DNS frame relative to the DNS change,
:func:`hybrid.models.jump_net.window_error`) of the whole window the stepper takes: with ``inference.relax`` = k,
the NN jump and the DNS frame are both advanced by k explicit Euler steps of the data's DNS (``rate``) before they
are compared (metrics ``error_rms``; ``jump_error_rms`` is the bare jump's); the monitor threshold is calibrated
split-conformally on the calibration trajectories and evaluated on the test ones
(:func:`hybrid.models.calibration.calibrate`). The pairs are stored in the card so that the monitor can recalibrate
for any tolerance and confidence.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.nn import functional as F  # noqa: N812 (the torch convention)

from hybrid.core.backend import resolve_device
from hybrid.core.config import ConfigError, Option, Table, validate
from hybrid.core.io import check_writable
from hybrid.core.progress import progress_bar
from hybrid.models.calibration import calibrate
from hybrid.models.card import save_ensemble
from hybrid.models.jump_net import (
    INDICATORS,
    EnsembleJumpNet2d,
    _active_tiles,
    field_inputs,
    jump_members,
    rate_residual,
    relative_spread,
    window_error,
)

__all__ = ["JUMP_TRAIN_SPEC", "is_jump_spec", "load_trajectories", "relax_steps", "train_jump_ensemble"]

log = logging.getLogger(__name__)

JUMP_TRAIN_SPEC = Table(
    {
        "model": Table(
            {
                "architecture": Option("str", "jump2d", "network family", choices=("jump2d",)),
                "members": Option("int", 5, "ensemble members K (heads on a shared backbone)", min=2),
                "channels": Option("int", 16, "backbone width", min=1),
                "dilations": Option("list[int]", [1, 2, 2, 1], "one 3x3 convolution per entry, its dilation", min=1),
                "head_channels": Option("int", 8, "hidden width of each member's 1x1 head", min=1),
                "features": Option(
                    "list[str]",
                    ["eta", "psi", "rate"],
                    "input channels, in this order, from 'eta', 'psi', 'rate' (jump_net.FEATURES)",
                ),
            }
        ),
        "training": Table(
            {
                "iterations": Option("int", 3000, "optimiser steps", min=1),
                "batch_size": Option("int", 32, "crops per step", min=1),
                "pairs_per_batch": Option("int", 4, "training pairs the crops of one step come from", min=1),
                "crop": Option("int", 32, "output crop edge [grid points]", min=4),
                "lr": Option("float", 2e-3, "Adam learning rate (cosine decay to 0)", min=0.0, min_exclusive=True),
                "noise": Option("float", 0.005, "std of the Gaussian noise added to the input η", min=0.0),
                "seed": Option("int", 0, "seed of torch and of the sampling", min=0),
                "calib_trajectories": Option("int", 1, "trajectories held out for calibration", min=1),
                "test_trajectories": Option("int", 1, "trajectories held out for the test metrics", min=0),
                "threads": Option("int", None, "torch CPU threads while training (unset: leave as is)", min=1),
                "device": Option("str", "cpu", "torch device"),
                "max_minutes": Option("float", None, "stop after this wall time [min]", min=0.0),
            }
        ),
        "calibration": Table(
            {
                "tolerance": Option(
                    "float", 0.1, "accepted relative window error (window_error)", min=0.0, min_exclusive=True
                ),
                "confidence": Option(
                    "float",
                    0.95,
                    "fraction of accepted windows within tolerance",
                    min=0.0,
                    max=1.0,
                    min_exclusive=True,
                    max_exclusive=True,
                ),
                "delta": Option(
                    "float",
                    None,
                    "Clopper-Pearson level (unset: split-conformal rule)",
                    min=0.0,
                    max=1.0,
                    min_exclusive=True,
                    max_exclusive=True,
                ),
            }
        ),
        "inference": Table(
            {
                "tile": Option("int", 32, "tile edge of the sparse inference [grid points]", min=1),
                "activity": Option("float", 1e-3, "skip tiles where η varies by less than this", min=0.0),
                "relax": Option("int", 0, "DNS steps the stepper takes after each NN jump (couplers/surrogate)", min=0),
                "indicator": Option(
                    "str",
                    "spread",
                    "uncertainty indicator the monitor thresholds (jump_net.INDICATORS): 'spread' (ensemble) or"
                    " 'rate_residual' (DNS rate at the answer)",
                    choices=INDICATORS,
                ),
            }
        ),
    },
    doc="spec of `hybrid train` for a jump surrogate (model.architecture = 'jump2d')",
)


INDICATOR_DOC = {
    "spread": "u = |std_k(d eta)| / |mean(d eta)| (L2 norms): ensemble spread relative to the predicted change",
    "rate_residual": "u = tau |d eta/dt (eta_NN)| / |eta_NN - eta_start| (L2 norms): DNS rate at the answer",
}
"""What the card's calibration says its indicator u is (``inference.indicator``)."""


def is_jump_spec(spec: Mapping[str, Any]) -> bool:
    """True for a training spec of a jump surrogate (``[model] architecture = "jump2d"``)."""
    model = spec.get("model")
    return isinstance(model, Mapping) and model.get("architecture") == "jump2d"


def relax_steps(eta: torch.Tensor, rate: Callable[[torch.Tensor], torch.Tensor], dt: float, steps: int) -> torch.Tensor:
    """``steps`` explicit Euler steps of dη/dt = rate(η) in float64: the stepper's relaxation after a jump.

    Args:
        eta: (Q, ny, nx) order parameters.
        rate: the data's DNS right-hand side (:func:`hybrid.couplers.trajectories.rate_function`).
        dt: the data's time step [time units].
        steps: number of steps (0 returns ``eta`` in float64).
    """
    x = eta.double()
    for _ in range(steps):
        x = x + dt * rate(x).double()
    return x


def _d4(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """One of the 8 symmetries of the square on the last two axes."""
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def _windows(inputs: torch.Tensor, tile: int, halo: int) -> torch.Tensor:
    """(Q, C, ny, nx) -> view (Q, C, ty, tx, tile + 2 halo, tile + 2 halo) of the periodically padded array."""
    padded = F.pad(inputs, (halo, halo, halo, halo), mode="circular")
    win = tile + 2 * halo
    return padded.unfold(2, win, tile).unfold(3, win, tile)


def load_trajectories(path: Path, field: str | None = None) -> dict[str, Any]:
    """A trajectory file of ``hybrid dataset`` (``hybrid_kind = "trajectories"``), frames as float32 tensors.

    Returns:
        ``{"field": name, "frames": (R, F, Q, ny, nx) float32 tensor, "pairs": (P, 2) int64 start and end frame of
        each pair (``jump`` DNS steps apart), "attrs": the file's attributes}``; ``field`` defaults to the first.

    Raises:
        ValueError: the file is not a trajectory file.
    """
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("hybrid_kind") != "trajectories":
            raise ValueError(f"{path}: not a trajectory file of `hybrid dataset` (hybrid_kind = 'trajectories')")
        names = list(f["fields"])
        name = field or names[0]
        return {
            "field": name,
            "frames": torch.from_numpy(np.asarray(f["fields"][name], dtype=np.float32)),  # (R, F, Q, ny, nx)
            "pairs": np.asarray(f["pairs"], dtype=np.int64),
            "attrs": dict(f.attrs),
        }


def train_jump_ensemble(
    spec: Mapping[str, Any],
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = False,
    spec_file: str | None = None,
    rate: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Train, calibrate and save a jump ensemble; returns the model card.

    Args:
        spec: training spec (:data:`JUMP_TRAIN_SPEC`).
        data: trajectory file (``hybrid dataset`` of a ``[trajectories]`` spec).
        out_dir: model directory (``weights.pt`` + ``model_card.json``).
        progress: tqdm bar over iterations.
        spec_file: for error messages and the card.
        rate: (Q, ny, nx) η -> dη/dt of the DNS that made the data (float32 tensor), needed for the "rate"
            feature (the CLI builds it from the file's case: :func:`hybrid.couplers.trajectories.rate_function`).
    """
    s = validate(dict(spec), JUMP_TRAIN_SPEC, file=spec_file)
    m, tr, cal, inf = s["model"], s["training"], s["calibration"], s["inference"]
    path = Path(data)
    d = load_trajectories(path)
    frames, pairs, attrs = d["frames"], d["pairs"], d["attrs"]
    n_traj = frames.shape[0]
    held = tr["calib_trajectories"] + tr["test_trajectories"]
    if held >= n_traj:
        raise ConfigError(
            f"{path} has {n_traj} trajectories; {held} held out leaves none for training",
            key="training.calib_trajectories",
            file=spec_file,
        )
    train_ids = list(range(n_traj - held))
    cal_ids = list(range(n_traj - held, n_traj - tr["test_trajectories"]))
    test_ids = list(range(n_traj - tr["test_trajectories"], n_traj))
    if tr["threads"]:
        torch.set_num_threads(int(tr["threads"]))
    torch.manual_seed(tr["seed"])
    rng = np.random.default_rng(tr["seed"])
    device = resolve_device(tr["device"], "training.device", spec_file)
    check_writable(out_dir, "--out", directory=True)  # before the training, not after it
    try:
        model = EnsembleJumpNet2d(m["members"], m["channels"], m["dilations"], m["head_channels"], m["features"])
    except ValueError as err:
        raise ConfigError(str(err), key="model.features", file=spec_file) from None
    model = model.to(device)
    if model.needs_rate and rate is None:
        raise ConfigError("the 'rate' feature needs the DNS right-hand side of the data", key="model.features")
    horizon = float(attrs["jump"]) * float(attrs["dt"])

    def rate_channel(eta: torch.Tensor) -> torch.Tensor | None:
        """τ · dη/dt of the data's DNS (None for a network without the rate feature)."""
        return horizon * rate(eta).to(eta.device) if model.needs_rate and rate is not None else None

    def inputs_of(eta: torch.Tensor) -> torch.Tensor:
        return field_inputs(eta, model.features, rate_channel(eta))

    def jump_of(eta: torch.Tensor) -> Any:
        return jump_members(model, eta, rate=rate_channel(eta), tile=inf["tile"], activity=inf["activity"])

    halo, crop, k_members = model.halo, tr["crop"], model.members
    _, _, q, ny, nx = frames.shape
    if ny % crop or nx % crop or ny % inf["tile"] or nx % inf["tile"]:
        raise ConfigError(f"crop and tile must divide the grid ({ny}, {nx})", key="training.crop", file=spec_file)
    opt = torch.optim.Adam(model.parameters(), lr=tr["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tr["iterations"])
    bar = progress_bar(tr["iterations"], desc="train", unit="it") if progress else None
    t0 = time.perf_counter()
    losses: list[float] = []
    per_pair = max(1, tr["batch_size"] // tr["pairs_per_batch"])
    done = 0
    for it in range(tr["iterations"]):
        xs, ys = [], []
        for _ in range(tr["pairs_per_batch"]):
            r = int(rng.choice(train_ids))
            i, j = pairs[rng.integers(len(pairs))]
            k_rot, flip = int(rng.integers(4)), bool(rng.integers(2))
            shift = (int(rng.integers(ny)), int(rng.integers(nx)))
            a = _d4(torch.roll(frames[r, i], shift, dims=(-2, -1)), k_rot, flip).to(device)
            b = _d4(torch.roll(frames[r, j], shift, dims=(-2, -1)), k_rot, flip).to(device)
            noisy = a + tr["noise"] * torch.randn_like(a) if tr["noise"] > 0 else a
            act = _active_tiles(a, crop, halo, inf["activity"]).nonzero()
            if len(act) == 0:
                continue
            sel = act[torch.from_numpy(rng.choice(len(act), size=min(per_pair, len(act)), replace=False))]
            win = _windows(inputs_of(noisy), crop, halo)
            xs.append(win[sel[:, 0], :, sel[:, 1], sel[:, 2]])
            delta = (b - noisy).view(q, ny // crop, crop, nx // crop, crop).permute(0, 1, 3, 2, 4)
            ys.append(delta[sel[:, 0], sel[:, 1], sel[:, 2]])
        if not xs:
            continue
        x, y = torch.cat(xs), torch.cat(ys)
        w = torch.from_numpy(rng.poisson(1.0, size=(len(x), k_members)).astype(np.float32)).to(device)
        out = model(x)  # (B, K, crop, crop)
        sq_err = (out - y[:, None]).square().mean(dim=(-2, -1))  # (B, K)
        loss = (sq_err * w).sum() / w.sum().clamp_min(1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        done = it + 1
        if bar is not None:
            bar.update(1)
            if it % 20 == 0:
                bar.set_postfix_str(f"loss {np.mean(losses[-20:]):.3g}", refresh=False)
        if tr["max_minutes"] and time.perf_counter() - t0 > 60 * tr["max_minutes"]:
            log.info("stopping after %d iterations (max_minutes)", done)
            break
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - t0
    model.eval()

    relax, dt = int(inf["relax"]), float(attrs["dt"])
    if relax and rate is None:
        raise ConfigError("inference.relax needs the DNS right-hand side of the data", key="inference.relax")
    if inf["indicator"] == "rate_residual" and rate is None:
        raise ConfigError("the 'rate_residual' indicator needs the DNS right-hand side", key="inference.indicator")

    def relaxed(eta: torch.Tensor) -> torch.Tensor:
        return relax_steps(eta, rate, dt, relax)  # type: ignore[arg-type]

    def evaluate(ids: list[int]) -> dict[str, Any]:
        e, e_jump, e0, frac = [], [], [], []
        indicators: dict[str, list[float]] = {name: [] for name in INDICATORS}
        for r in ids:
            for i, j in pairs:
                start, end = frames[r, i], frames[r, j]
                pred = jump_of(start)
                indicators["spread"].append(relative_spread(pred.spread, pred.mean, start))
                if rate is not None:
                    indicators["rate_residual"].append(rate_residual(rate(pred.mean), pred.mean, start, horizon))
                e_jump.append(window_error(pred.mean, end, start))
                # the window the stepper takes: jump + relax steps, against jump + relax DNS steps
                e.append(window_error(relaxed(pred.mean), relaxed(end), start) if relax else e_jump[-1])
                e0.append(window_error(start, relaxed(end) if relax else end, start))
                frac.append(pred.active_fraction)
        return {
            "u": np.asarray(indicators[inf["indicator"]]),  # the calibrated indicator
            "indicators": {k: np.asarray(v) for k, v in indicators.items() if v},
            "e": np.asarray(e),
            "e_jump": np.asarray(e_jump),
            "e_unchanged": np.asarray(e0),
            "active": np.asarray(frac),
        }

    res_cal, res_test = evaluate(cal_ids), evaluate(test_ids)
    calibration = calibrate(
        res_cal["u"],
        res_cal["e"],
        res_test["u"] if test_ids else res_cal["u"],
        res_test["e"] if test_ids else res_cal["e"],
        cal["tolerance"],
        cal["confidence"],
        delta=cal["delta"],
    )
    calibration["u"] = res_cal["u"].tolist()
    calibration["e"] = res_cal["e"].tolist()
    calibration["indicator"] = INDICATOR_DOC[inf["indicator"]] + "; accept the NN when u <= threshold"
    case = tomllib.loads(str(attrs.get("case", "")) or "")
    params = case.get("model", {})
    grid = case.get("grid", {})
    lengths, shape = grid.get("lengths"), grid.get("shape")
    spacing = [lengths[i] / shape[i] for i in range(len(lengths))] if lengths and shape else None
    metrics = {}
    for name, res in (("calibration", res_cal), ("test", res_test)):
        if len(res["e"]):
            metrics[name] = {
                "windows": len(res["e"]),
                "error_rms": float(np.sqrt(np.mean(res["e"] ** 2))),
                "error_max": float(res["e"].max()),
                "jump_error_rms": float(np.sqrt(np.mean(res["e_jump"] ** 2))),
                "unchanged_error_rms": float(np.sqrt(np.mean(res["e_unchanged"] ** 2))),
                "uncertainty_mean": float(res["u"].mean()),
                "active_fraction_mean": float(res["active"].mean()),
                "spearman": {  # of every indicator with the window error, whichever one is calibrated
                    k: float(spearmanr(v, res["e"]).statistic) if np.ptp(v) > 0 and np.ptp(res["e"]) > 0 else math.nan
                    for k, v in res["indicators"].items()
                },
            }
    card = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "description": "jump surrogate: per-order-parameter CNN ensemble with a shared backbone (jump_net)",
        "surrogate": {
            "model": str(attrs.get("model", "")),
            "field": d["field"],
            "jump": int(attrs["jump"]),
            "dt": float(attrs["dt"]),
            "spacing": spacing,
            "params": {k: v for k, v in params.items() if k in ("alpha", "beta", "gamma", "kappa", "mobility")},
        },
        "inference": {
            "tile": inf["tile"],
            "activity": inf["activity"],
            "relax": inf["relax"],
            "indicator": inf["indicator"],
            "dtype": "float32",
        },
        "data": {
            "file": path.name,
            "trajectories": n_traj,
            "pairs_per_trajectory": len(pairs),
            "split": {"train": train_ids, "calibration": cal_ids, "test": test_ids},
            "spec": str(attrs.get("spec", "")),
        },
        "training": {
            **tr,
            "spec_file": spec_file,
            "iterations_done": done,
            "seconds": train_seconds,
            "final_loss": float(np.mean(losses[-50:])) if losses else math.nan,
            "torch": torch.__version__,
        },
        "macs_per_point": model.macs_per_point(),
        "metrics": metrics,
        "calibration": calibration,
    }
    save_ensemble(out_dir, model.cpu(), card)  # type: ignore[arg-type]
    log.info("jump ensemble written to %s (%d iterations in %.0f s)", out_dir, done, train_seconds)
    return card
