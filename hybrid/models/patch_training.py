"""Training the laser's patch surrogate (``hybrid train training/laser_patch.toml --data PATCH.h5 --out DIR``).

Data: files of ``hybrid dataset`` of a ``[patch]`` spec (:mod:`hybrid.couplers.patch_dataset`): coarse and cfd
patch fields (S, pz, px) [K], the laser (q′, v) and the split of each sample's run ("train", "calibration",
"test"). Whole runs are split, so no (P, v) of the calibration or test runs is seen in training.

Fitting (:func:`train_patch_surrogate`): the two autoencoders (:mod:`hybrid.models.patch_autoencoder`) are the
leading principal components of the training runs' coarse fields θ_coarse and corrections θ_cfd − θ_coarse
(SVD, float64); the inputs are standardised by their training mean and standard deviation and each correction code
by its standard deviation. With ``[model] encoder = "conv"`` the correction's autoencoder is
:class:`hybrid.models.patch_autoencoder.ConvAutoencoder` instead, fitted first (float64, full batch, Adam with a
cosine decay, ``training.ae_epochs`` steps) to the standardised training corrections and then frozen; its codes
are the members' targets. Each member k then minimises the bootstrap-weighted (Poisson(1) per sample, seed + k)
mean squared error of its standardised code, weighted by the code's variance (linear: so the loss is the squared
error of the decoded correction; conv: weighted alike), full batch, with Adam, weight decay and a cosine
learning-rate decay, in float64. The card's ``reconstruction_mare`` per split is the autoencoder's floor: the MARE
of the coarse field plus the decoded code of the true correction.

Evaluation runs the float32 model, as the provider serves it: the calibration runs give the pairs (u, e) of the
uncertainty u (:func:`hybrid.models.patch_autoencoder.relative_spread`) and the error e = MARE of the ensemble
mean against the cfd patch, from which the monitor's threshold is calibrated split-conformally (kept in the card,
so the monitor recalibrates for any tolerance and confidence); the test runs give the MARE per (P, v) and the
threshold's coverage. The training ranges of q′, v and P are kept in the card: outside them the monitor falls back.
The test samples are written next to the weights (``test_data.h5``) so that the card's test metrics can be
re-evaluated. The weights are stored in float32 (card ``inference.stored``): the float32 model they rebuild is the
float64 fit's float32 copy bit for bit, so every float32 answer and metric is unchanged; a ``dtype = "float64"``
evaluation sees the weights rounded to float32.
"""

from __future__ import annotations

import logging
import math
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybrid.core.config import ConfigError, Option, Table, dumps_toml, validate
from hybrid.core.io import check_writable
from hybrid.core.progress import progress_bar
from hybrid.models.calibration import calibrate
from hybrid.models.card import file_sha256, load_ensemble, portable_path, read_card, save_ensemble, write_card
from hybrid.models.patch_autoencoder import ENCODERS, PatchSurrogateNet, mare, pca_basis, relative_spread

log = logging.getLogger(__name__)

__all__ = ["ARCHITECTURE", "PATCH_TRAIN_SPEC", "evaluate", "is_patch_spec", "load_patch_data", "train_patch_surrogate"]

ARCHITECTURE = "patch_autoencoder"
TEST_DATA = "test_data.h5"
CARD_KEY = "laser_patch"
"""The card entry that marks a patch surrogate (and holds its ranges and the data's temperatures)."""

PATCH_TRAIN_SPEC = Table(
    {
        "model": Table(
            {
                "architecture": Option("str", ARCHITECTURE, "the patch surrogate", choices=(ARCHITECTURE,)),
                "term": Option("str", "patch_temperature", "the learned term", choices=("patch_temperature",)),
                "coarse_latent": Option("int", 8, "size of the coarse field's code", min=1, max=256),
                "latent": Option("int", 16, "size of the correction's code", min=1, max=256),
                "hidden": Option("int", 64, "width of the members' hidden layers", min=1, max=4096),
                "layers": Option("int", 2, "hidden layers per member", min=1, max=16),
                "encoder": Option(
                    "str", "linear", "the correction's autoencoder: principal components or convolutional",
                    choices=ENCODERS,
                ),
                "channels": Option("int", 8, "channels of the conv autoencoder's first stage", min=1, max=256),
            }
        ),
        "training": Table(
            {
                "members": Option("int", 5, "ensemble size K", min=2, max=64),
                "epochs": Option("int", 3000, "full-batch Adam steps per member", min=1),
                "lr": Option("float", 3e-3, "initial learning rate (cosine decay to 0)", min=0.0, min_exclusive=True),
                "weight_decay": Option("float", 1e-4, "AdamW weight decay", min=0.0),
                "bootstrap": Option("bool", True, "Poisson(1) bootstrap weights per member"),
                "seed": Option("int", 0, "seed of member k: seed + k", min=0),
                "ae_epochs": Option("int", 3000, "full-batch Adam steps of the conv autoencoder", min=1),
                "ae_lr": Option(
                    "float", 2e-3, "the conv autoencoder's initial learning rate (cosine decay to 0)", min=0.0,
                    min_exclusive=True,
                ),
            }
        ),
        "calibration": Table(
            {
                "tolerance": Option("float", 0.02, "accepted MARE of the patch", min=0.0, min_exclusive=True),
                "confidence": Option(
                    "float", 0.95, "fraction of accepted answers within the tolerance", min=0.0, max=1.0,
                    min_exclusive=True, max_exclusive=True,
                ),
                "novelty_quantile": Option(
                    "float", 0.95, "quantile of the training inputs' Mahalanobis distances beyond which an input "
                    "counts as novel (the monitor then answers by cfd)", min=0.0, max=1.0, min_exclusive=True,
                ),
            }
        ),
    },
    doc="training spec of the laser patch surrogate",
)  # fmt: skip


def is_patch_spec(spec: Mapping[str, Any]) -> bool:
    """Whether a training spec trains a patch surrogate (``[model] architecture = "patch_autoencoder"``)."""
    model = spec.get("model")
    return isinstance(model, Mapping) and model.get("architecture") == ARCHITECTURE


def _coupling(case_text: str) -> tuple[int, str]:
    """How the runs a data file comes from were coupled: (the case's ``couple_every`` [steps], its patch provider)
    when that provider hands its patch back into the coarse states that were captured (``cfd``, ``nn``,
    ``monitor``), else (0, "") (``coarse`` is never handed back)."""
    try:
        table = tomllib.loads(case_text).get("terms", {}).get("patch_temperature", {})
    except tomllib.TOMLDecodeError:
        return 0, ""
    provider = str(table.get("provider", "coarse"))
    every = int(table.get("couple_every", 0)) if provider != "coarse" else 0
    return every, provider if every else ""


def load_patch_data(paths: Sequence[str | Path], spec_file: str | None = None) -> dict[str, Any]:
    """The samples of patch dataset files, concatenated: ``coarse``, ``cfd`` (S, pz, px) float64 [K], ``laser``
    (S, 2) (q′ [W/m], v [m/s]), ``power`` (S,), ``split`` (S,) str, ``group`` (S,) (unique over files), ``coupling``
    (S,) (the hand-back interval of the sample's run, 0: none), ``coupled_by`` (S,) str (the provider handed back,
    "" for none), and the files' ``ambient_temperature``, ``liquidus``
    [K], ``spacing`` [m], ``case`` (the first file's), ``couplings`` and ``files`` (path, sha256)."""
    import h5py

    parts: list[dict[str, Any]] = []
    attrs: dict[str, Any] = {}
    offset = 0
    for path in map(Path, paths):
        if not path.is_file():
            raise ConfigError(f"{path} does not exist", key="--data", file=spec_file)
        with h5py.File(path, "r") as f:
            if f.attrs.get("hybrid_kind") != "laser_patch":
                raise ConfigError(
                    f"{path} is a {f.attrs.get('hybrid_kind')!r} file; allowed: a laser_patch dataset (hybrid dataset "
                    "of a [patch] spec, e.g. datasets/laser_patch.toml)",
                    key="--data",
                    file=spec_file,
                )
            these = {k: float(f.attrs[k]) for k in ("ambient_temperature", "liquidus", "spacing")}
            for k, v in these.items():
                if k in attrs and not math.isclose(attrs[k], v):
                    raise ConfigError(f"{path} has {k} = {v}, an earlier file {attrs[k]}", key="--data", file=spec_file)
            attrs.update(these)
            attrs.setdefault("case", str(f.attrs.get("case", "")))
            every, coupled_by = _coupling(str(f.attrs.get("case", "")))
            attrs.setdefault("couplings", set()).add(every)
            group = f["group"][:].astype(np.int64)
            parts.append(
                {
                    "coarse": f["coarse"][:].astype(np.float64),
                    "cfd": f["cfd"][:].astype(np.float64),
                    "laser": np.stack([f["line_power"][:], f["speed"][:]], axis=1).astype(np.float64),
                    "power": f["power"][:].astype(np.float64),
                    "split": np.asarray([s.decode() if isinstance(s, bytes) else str(s) for s in f["split"][:]]),
                    "group": group + offset,
                    "coupling": np.full(group.size, every, dtype=np.int64),
                    "coupled_by": np.full(group.size, coupled_by),
                }
            )
            offset += int(group.max()) + 1 if group.size else 0
        attrs.setdefault("files", []).append({"file": portable_path(path), "sha256": file_sha256(path)})
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {**data, **attrs}


def theta(temp: np.ndarray, t_inf: float, t_l: float) -> np.ndarray:
    """θ = (T − T∞)/(T_l − T∞) of fields (S, pz, px), flattened to (S, pz·px)."""
    return ((temp - t_inf) / (t_l - t_inf)).reshape(temp.shape[0], -1)


def predict_members(
    model: PatchSurrogateNet, coarse: np.ndarray, laser: np.ndarray, t_inf: float, t_l: float, dtype: Any
) -> torch.Tensor:
    """Members' patch temperatures (K, S, pz, px) [K] (float64 tensor) of coarse fields (S, pz, px) [K] and laser
    (S, 2), with the model evaluated in ``dtype``."""
    m = model.to(dtype=dtype)
    with torch.inference_mode():
        th = torch.from_numpy(theta(coarse, t_inf, t_l)).to(dtype)
        out = m(th, torch.from_numpy(laser).to(dtype)).double()
    model.to(dtype=torch.float64)
    return (t_inf + (t_l - t_inf) * out).reshape(out.shape[0], out.shape[1], *coarse.shape[1:])


def evaluate(
    model: PatchSurrogateNet, data: Mapping[str, Any], mask: np.ndarray, dtype: Any = torch.float32
) -> tuple[np.ndarray, np.ndarray]:
    """(u, e) (n,) of the samples in ``mask``: the ensemble's spread and the MARE of its mean against cfd."""
    t_inf, t_l = float(data["ambient_temperature"]), float(data["liquidus"])
    members = predict_members(model, data["coarse"][mask], data["laser"][mask], t_inf, t_l, dtype)
    u = relative_spread(members).numpy()
    e = np.asarray(mare(members.mean(dim=0).numpy(), data["cfd"][mask]))
    return u, e


def _fit(model: PatchSurrogateNet, x_theta: torch.Tensor, laser: torch.Tensor, target: torch.Tensor,
         tr: Mapping[str, Any], progress: bool) -> list[float]:  # fmt: skip
    """Adam on the members' bootstrap-weighted code errors; returns each member's final unweighted loss."""
    k, n = model.members, x_theta.shape[0]
    weights = torch.ones(k, n, dtype=torch.float64)
    if tr["bootstrap"]:
        for m in range(k):
            g = torch.Generator().manual_seed(int(tr["seed"]) + 1000 + m)
            weights[m] = torch.poisson(torch.ones(n, dtype=torch.float64), generator=g)
    if model.autoencoder is None:  # orthonormal basis: the code's squared error is the decoded field's
        var = model.code_scale**2 / (model.code_scale**2).sum()
    else:  # the standardised codes of the conv autoencoder, weighted alike
        var = torch.full((model.latent,), 1.0 / model.latent, dtype=torch.float64)
    opt = torch.optim.AdamW(model.mlp_parameters(), lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]))
    epochs = int(tr["epochs"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    bar = progress_bar(epochs, desc="patch surrogate", unit="epoch") if progress else None
    per = torch.zeros(k)
    for _ in range(epochs):
        opt.zero_grad()
        err = ((model.codes(x_theta, laser) - target) ** 2 * var).sum(dim=-1)  # (K, n)
        per = err.detach().mean(dim=1)
        loss = ((err * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)).sum()
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return [float(v) for v in per]


def _fit_autoencoder(model: PatchSurrogateNet, corr: np.ndarray, tr: Mapping[str, Any], progress: bool) -> float:
    """Fit the conv autoencoder (float64, full batch, Adam with cosine decay, seed ``training.seed``) to the
    standardised corrections (S, pz·px); returns the final mean squared error of the standardised field."""
    ae = model.autoencoder
    assert ae is not None
    torch.manual_seed(int(tr["seed"]))
    for m in ae.modules():  # a fresh, seeded initialisation
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            m.reset_parameters()
    x = (torch.from_numpy(corr) - model.correction_mean) / model.correction_scale
    opt = torch.optim.Adam(ae.parameters(), lr=float(tr["ae_lr"]))
    epochs = int(tr["ae_epochs"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    bar = progress_bar(epochs, desc="conv autoencoder", unit="epoch") if progress else None
    loss = torch.zeros(())
    for _ in range(epochs):
        opt.zero_grad()
        loss = ((ae.decode(ae.encode(x)) - x) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ae.requires_grad_(False)
    return float(loss.detach())


def reconstruction_mare(model: PatchSurrogateNet, data: Mapping[str, Any], mask: np.ndarray,
                        dtype: Any = torch.float32) -> np.ndarray:  # fmt: skip
    """MARE (n,) against cfd of the correction's autoencoder alone (encode the true correction, decode, add the
    coarse field), evaluated in ``dtype``: the floor of the surrogate's error."""
    t_inf, t_l = float(data["ambient_temperature"]), float(data["liquidus"])
    th_c = theta(data["coarse"][mask], t_inf, t_l)
    corr = theta(data["cfd"][mask], t_inf, t_l) - th_c
    m = model.to(dtype=dtype)
    with torch.inference_mode():
        back = m.decode(m.encode_correction(torch.from_numpy(corr).to(dtype))).double().numpy()
    model.to(dtype=torch.float64)
    temp = (t_inf + (t_l - t_inf) * (th_c + back)).reshape(data["cfd"][mask].shape)
    return np.asarray(mare(temp, data["cfd"][mask]))


def _beyond(model: PatchSurrogateNet, d: Mapping[str, Any], mask: np.ndarray, t_inf: float, t_l: float) -> float:
    """Fraction of the samples under ``mask`` whose coarse input lies beyond the novelty limit."""
    th = torch.from_numpy(theta(d["coarse"][mask], t_inf, t_l))
    with torch.no_grad():
        return float((model.novelty(th) > model.novelty_limit).double().mean())


def _fit_novelty(model: PatchSurrogateNet, codes: np.ndarray, quantile: float) -> float:
    """Set the model's novelty statistics from the training inputs' coarse codes (S, coarse_latent): their mean, the
    inverse of their covariance (a 1e-9 relative ridge keeps it finite) and the limit, the ``quantile`` of the
    training inputs' own distances; returns the limit."""
    mean = codes.mean(axis=0)
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    cov += 1e-9 * max(float(np.trace(cov)) / cov.shape[0], 1e-300) * np.eye(cov.shape[0])
    precision = np.linalg.inv(cov)
    d = codes - mean
    limit = float(np.quantile(np.sqrt(np.einsum("ij,jk,ik->i", d, precision, d)), quantile))
    model.novelty_mean.copy_(torch.from_numpy(mean))
    model.novelty_precision.copy_(torch.from_numpy(precision))
    model.novelty_limit.fill_(limit)
    return limit


def train_patch_surrogate(
    spec: Mapping[str, Any],
    data: Sequence[str | Path],
    out_dir: str | Path,
    *,
    progress: bool = False,
    spec_file: str | None = None,
) -> dict[str, Any]:
    """Fit, calibrate and save a patch surrogate (module docstring); returns the model card."""
    import h5py

    t0 = time.perf_counter()
    s = validate(dict(spec), PATCH_TRAIN_SPEC, file=spec_file)
    out = Path(out_dir)
    check_writable(out / "weights.pt", "--out")
    d = load_patch_data(data, spec_file)
    split = d["split"]
    masks = {name: split == name for name in ("train", "calibration", "test")}
    for name, mask in masks.items():
        if not mask.any():
            raise ConfigError(f"the data has no {name!r} runs (give patch.{name} in the dataset spec)", key="--data",
                              file=spec_file)  # fmt: skip
    mo, tr = s["model"], s["training"]
    t_inf, t_l = float(d["ambient_temperature"]), float(d["liquidus"])
    torch.manual_seed(int(tr["seed"]))
    model = PatchSurrogateNet(
        shape=d["coarse"].shape[1:], coarse_latent=mo["coarse_latent"], latent=mo["latent"], params=2,
        members=tr["members"], hidden=mo["hidden"], layers=mo["layers"], encoder=mo["encoder"],
        channels=mo["channels"],
    )  # fmt: skip
    train = masks["train"]
    th_c = theta(d["coarse"][train], t_inf, t_l)
    corr = theta(d["cfd"][train], t_inf, t_l) - th_c
    try:
        c_mean, c_basis, c_sv = pca_basis(th_c, mo["coarse_latent"])
        r_mean, r_basis, r_sv = pca_basis(corr, mo["latent"])
    except ValueError as err:
        raise ConfigError(str(err), key="model.latent", file=spec_file) from None
    ae_loss = None
    with torch.no_grad():
        model.coarse_mean.copy_(torch.from_numpy(c_mean))
        model.coarse_basis.copy_(torch.from_numpy(c_basis))
        model.correction_mean.copy_(torch.from_numpy(r_mean))
        if model.autoencoder is None:
            model.correction_basis.copy_(torch.from_numpy(r_basis))
            codes = (corr - r_mean) @ r_basis.T
        else:
            model.correction_scale.fill_(max(float((corr - r_mean).std()), 1e-12))
            with torch.enable_grad():
                ae_loss = _fit_autoencoder(model, corr, tr, progress)
            codes = model.autoencoder.encode((torch.from_numpy(corr) - model.correction_mean) / model.correction_scale)
            codes = codes.numpy()
        model.code_scale.copy_(torch.from_numpy(np.maximum(codes.std(axis=0), 1e-12)))
        x = np.concatenate([(th_c - c_mean) @ c_basis.T, d["laser"][train]], axis=1)
        model.input_mean.copy_(torch.from_numpy(x.mean(axis=0)))
        model.input_scale.copy_(torch.from_numpy(np.maximum(x.std(axis=0), 1e-12)))
        novelty_limit = _fit_novelty(model, x[:, : mo["coarse_latent"]], float(s["calibration"]["novelty_quantile"]))
    target = torch.from_numpy(codes) / model.code_scale
    if model.autoencoder is None:
        correction_explained = float((r_sv[: mo["latent"]] ** 2).sum() / (r_sv**2).sum())
    else:  # 1 − residual / total sum of squares of the training corrections about their mean
        with torch.no_grad():
            back = model.decode(target).numpy()
        correction_explained = float(1.0 - ((back - corr) ** 2).sum() / ((corr - r_mean) ** 2).sum())
    losses = _fit(model, torch.from_numpy(th_c), torch.from_numpy(d["laser"][train]), target, tr, progress)
    model.eval()
    fit_seconds = time.perf_counter() - t0

    # evaluation, as served: float32
    u_cal, e_cal = evaluate(model, d, masks["calibration"])
    u_test, e_test = evaluate(model, d, masks["test"])
    calibration = _calibration(u_cal, e_cal, u_test, e_test, s["calibration"])
    coarse_mare = np.asarray(mare(d["coarse"], d["cfd"]))
    per_pair = []
    test = masks["test"]
    for g in np.unique(d["group"][test]):
        sel = d["group"][test] == g
        i = np.flatnonzero(test)[sel][0]
        per_pair.append(
            {
                "power": float(d["power"][i]), "line_power": float(d["laser"][i, 0]), "speed": float(d["laser"][i, 1]),
                "couple_every": int(d["coupling"][i]), "coupled_by": str(d["coupled_by"][i]),
                "n": int(sel.sum()), "mare": float(e_test[sel].mean()), "mare_max": float(e_test[sel].max()),
                "coarse_mare": float(coarse_mare[test][sel].mean()), "uncertainty": float(u_test[sel].mean()),
            }
        )  # fmt: skip
    u_train, e_train = evaluate(model, d, train)
    metrics: dict[str, Any] = {
        split_name: {
            "n": int(e.size), "mare": float(e.mean()), "mare_max": float(e.max()),
            "coarse_mare": float(coarse_mare[masks[split_name]].mean()), "uncertainty": float(u.mean()),
        }
        for split_name, (u, e) in (("train", (u_train, e_train)), ("calibration", (u_cal, e_cal)),
                                   ("test", (u_test, e_test)))
    }  # fmt: skip
    for split_name in ("train", "calibration", "test"):
        metrics[split_name]["reconstruction_mare"] = float(reconstruction_mare(model, d, masks[split_name]).mean())
    rec_test = reconstruction_mare(model, d, test)
    for row, g in zip(per_pair, np.unique(d["group"][test]), strict=True):
        row["reconstruction_mare"] = float(rec_test[d["group"][test] == g].mean())
    metrics["test_by_pair"] = per_pair
    metrics["dtype"] = "float32"
    laser = d["laser"][train]
    card = {
        "term": mo["term"],
        CARD_KEY: {
            "shape": list(d["coarse"].shape[1:]),
            "spacing": d["spacing"],
            "ambient_temperature": t_inf,
            "liquidus": t_l,
            "range": {
                "line_power": [float(laser[:, 0].min()), float(laser[:, 0].max())],
                "speed": [float(laser[:, 1].min()), float(laser[:, 1].max())],
                "power": [float(d["power"][train].min()), float(d["power"][train].max())],
            },
            "inputs": ["code of the coarse patch field", "line power q' = A P / W_eff [W/m]", "speed v [m/s]"],
            "explained_variance": {
                "coarse": float((c_sv[: mo["coarse_latent"]] ** 2).sum() / (c_sv**2).sum()),
                "correction": correction_explained,
            },
            "encoder": mo["encoder"],
            "couplings": sorted(d["couplings"]),
            "novelty": {
                "quantile": float(s["calibration"]["novelty_quantile"]),
                "limit": novelty_limit,
                "beyond": {name: _beyond(model, d, mask, t_inf, t_l) for name, mask in masks.items()},
            },
        },
        "target": "patch_temperature [K] of the cfd provider",
        "features": "theta = (T - T_ambient)/(T_liquidus - T_ambient) of the coarse patch; line power, speed",
        "spec": dumps_toml(s),
        "data": {
            "files": d["files"],
            "samples": {k: int(v.sum()) for k, v in masks.items()},
            "case": d["case"],
            "test_file": TEST_DATA,
        },
        "training": {
            "member_losses": losses,
            "seconds": fit_seconds,
            **({"autoencoder_loss": ae_loss} if ae_loss is not None else {}),
        },
        "metrics": metrics,
        "calibration": calibration,
        "inference": {"dtype": "float32"},
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (TEST_DATA + ".tmp")
    with h5py.File(tmp, "w") as f:  # the test split, for re-evaluating the card's test metrics
        comp = {"compression": "gzip", "compression_opts": 9, "shuffle": True}
        for name in ("coarse", "cfd"):
            f.create_dataset(name, data=d[name][test].astype(np.float32), **comp)
        f.create_dataset("laser", data=d["laser"][test])
        f.create_dataset("power", data=d["power"][test])
        f.create_dataset("group", data=d["group"][test])
        for key in ("ambient_temperature", "liquidus", "spacing"):
            f.attrs[key] = d[key]
    tmp.replace(out / TEST_DATA)
    card["data"]["test_sha256"] = file_sha256(out / TEST_DATA)
    card["training"]["seconds_total"] = time.perf_counter() - t0
    # stored in float32, the served precision: the float32 answers (and the metrics above) are those of the float64
    # fit bit for bit; a float64 evaluation of the stored weights differs from the fit by their float32 rounding
    card["inference"]["stored"] = "float32"
    save_ensemble(out, model.float(), card)  # type: ignore[arg-type]  # it has config, parameter_count, members
    model.double()
    log.info("patch surrogate: test MARE %.4g (coarse %.4g), threshold %s", metrics["test"]["mare"],
             metrics["test"]["coarse_mare"], calibration["threshold"])  # fmt: skip
    return read_card(out)


def _calibration(u_cal: np.ndarray, e_cal: np.ndarray, u_test: np.ndarray, e_test: np.ndarray,
                 cal: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The card's ``calibration`` entry: the threshold for ``cal``'s tolerance and confidence, and its pairs."""
    out = calibrate(u_cal, e_cal, u_test, e_test, float(cal["tolerance"]), float(cal["confidence"]))
    out["indicator"] = "u = mean over the patch of std_k(T_k) / mean_k(T_k); accept the NN when u <= threshold"
    out["u"], out["e"] = [float(v) for v in u_cal], [float(v) for v in e_cal]
    return out


def recalibrate_patch_surrogate(
    model_dir: str | Path, data: Sequence[str | Path], changes: Mapping[str, Any], out_dir: str | Path | None = None
) -> dict[str, Any]:
    """Redo the monitor calibration of a trained patch surrogate with another ``[calibration]`` tolerance or
    confidence; the weights stay (``hybrid calibrate``).

    The data must be the files it was trained on, in the card's order (checked by SHA-256): their calibration and
    test runs are evaluated again, in float32 as served, so the same settings give the card's threshold again (bit for
    bit with torch on as many threads as in training; otherwise to the rounding of float32 sums). The novelty
    quantile is fitted with the weights: changing it needs ``hybrid train``.

    Returns:
        The new card (as written, plus ``path``); ``recalibrated`` records when and what changed.

    Raises:
        ConfigError: a key other than tolerance and confidence, or a bad value.
        ValueError: data files that are not the card's.
    """
    import datetime
    import shutil

    model, card = load_ensemble(model_dir, expect=PatchSurrogateNet)
    extra = set(changes) - {"tolerance", "confidence"}
    if extra:
        raise ConfigError(
            "is fitted with the weights (retrain with hybrid train); allowed: tolerance, confidence",
            key=f"calibration.{sorted(extra)[0]}",
        )
    spec = tomllib.loads(str(card["spec"]))
    spec["calibration"] = {**spec.get("calibration", {}), **changes}
    s = validate(spec, PATCH_TRAIN_SPEC, file=str(card.get("path")))
    out = Path(model_dir) if out_dir is None else Path(out_dir)
    check_writable(out, "--out", directory=True)
    expected = [f["sha256"] for f in card["data"]["files"]]
    if [file_sha256(p) for p in data] != expected:
        names = ", ".join(f["file"] for f in card["data"]["files"])
        raise ValueError(
            f"{card.get('path')}: the surrogate was trained on {len(expected)} data file(s) ({names}); the files given "
            f"({', '.join(str(p) for p in data)}) do not match their SHA-256, so its calibration and test runs "
            "cannot be evaluated again"
        )
    d = load_patch_data(data)
    u_cal, e_cal = evaluate(model, d, d["split"] == "calibration")
    u_test, e_test = evaluate(model, d, d["split"] == "test")
    card["calibration"] = _calibration(u_cal, e_cal, u_test, e_test, s["calibration"])
    card["spec"] = dumps_toml(s)
    card["recalibrated"] = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "changed": dict(changes),
    }
    if out_dir is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name in (card["weights"]["file"], TEST_DATA):
            shutil.copyfile(Path(model_dir) / name, out / name)
    card.pop("path", None)
    write_card(out, card)
    return read_card(out)
