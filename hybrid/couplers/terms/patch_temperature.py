"""The learned laser term ``patch_temperature``: providers ``nn`` and ``monitor`` (fallback ``cfd``).

The surrogate (:mod:`hybrid.models.patch_autoencoder`) reads the coarse temperature on the patch box (what provider
``coarse`` returns) and the laser (line power q′ = A P / W_eff [W/m], speed v [m/s]) and predicts the melt-pool patch
of provider ``cfd``: (pz, px) float64 [K] at the cell centres of the box, which moves with the spot (``origin``).
The network runs in float32 unless ``dtype = "float64"``. Its uncertainty u is the mean over the patch of the
members' relative spread std_k(T_k)/mean_k(T_k), in the units of the error ``mare`` (mean over the patch of
|T − T_cfd| / T_cfd), and the monitor's threshold on u is calibrated on held-out runs (docs/monitor.md).

A laser outside the training range (q′ or v beyond the card's ``laser_patch.range``) gets u = inf: the monitor
answers by its fallback, logs the decision (uncertainty inf, source "dns") and warns once; the plain ``nn`` provider
warns and extrapolates. A case whose material, spot radius, temperatures or box differ from the training data's is
refused (ConfigError naming the key).
"""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import hybrid.solvers.laser_cfd  # noqa: F401  (registers the DNS providers coarse and cfd, the fallbacks, first)
from hybrid.core.backend import Array
from hybrid.core.config import ConfigError, Option, Table
from hybrid.core.registry import PROVIDERS, Context, get_provider, register_provider
from hybrid.core.state import State
from hybrid.core.terms import TermProvider
from hybrid.couplers.learned import monitored, policy_options, resolve_model_dir
from hybrid.couplers.monitor import EnsemblePrediction, Monitor
from hybrid.couplers.pipeline import TrainKind, calibration_lines, register_train_kind
from hybrid.solvers.laser import PATCH_OPTIONS, TERM, CoarsePatch, line_power

log = logging.getLogger(__name__)

__all__ = ["SHIPPED_WEIGHTS", "PatchCapture", "PatchEnsemble", "PatchMonitor"]

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "laser_patch"
"""The shipped surrogate (``terms.patch_temperature.weights = "shipped"``)."""

VALIDATED_COUPLE_EVERY = 20
"""Hand-back intervals [steps] from this one up were checked against cfd for a surrogate trained on uncoupled
states (docs/laser.md: one cfd window r/v of the shipped case). Shorter intervals are checked only where the card's
data come from runs coupled at that interval (its ``laser_patch.couplings``): a surrogate that never saw its own
answers handed back drifts when they become its next inputs every step (patch MARE 13–18 % against cfd's run),
unseen by its spread. ``nn`` warns about an unchecked interval and ``monitor`` refuses it."""

FREE_PARAMS = frozenset({"power", "speed", "absorptivity", "laser_width", "laser_start"})
"""[model] keys the surrogate takes as inputs (through q′ and v) or does not see; every other must match the data's."""


class PatchEnsemble(TermProvider):
    """Ensemble-mean patch temperature (pz, px) float64 [K] of the coarse enthalpy E (nz, nx) [J/m³] at the state's
    time; :meth:`predict` also returns the uncertainty u (module docstring)."""

    name = TERM
    provider = "nn"
    inputs = ("E",)

    def __init__(self, ctx: Context, options: Mapping[str, Any]) -> None:
        import torch

        from hybrid.models.card import load_ensemble
        from hybrid.models.patch_autoencoder import PatchSurrogateNet
        from hybrid.models.patch_training import CARD_KEY

        super().__init__(ctx)
        key = f"terms.{TERM}"
        self.weights = resolve_model_dir(
            ctx,
            str(options.get("weights", "shipped")),
            SHIPPED_WEIGHTS,
            f"{key}.weights",
            "the shipped surrogate is missing: reinstall, or train one: see docs/laser.md",
        )
        model, self.card = load_ensemble(self.weights, expect=PatchSurrogateNet)
        if options.get("threads"):
            torch.set_num_threads(int(options["threads"]))  # torch's process-wide setting
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[str(options.get("dtype", "float32"))]
        self.model = model.to(dtype=self.dtype).eval()
        info = self.card[CARD_KEY]
        self.coarse = CoarsePatch(ctx, list(options.get("size", [1.2e-3, 3e-4])), float(options.get("spacing", 1e-5)))
        where = f"the surrogate in {self.weights}"
        if list(self.coarse.output_shape()) != list(info["shape"]) or not math.isclose(
            self.coarse.spacing, float(info["spacing"]), rel_tol=1e-9
        ):
            raise ConfigError(
                f"gives a patch of {list(self.coarse.output_shape())} cells of {self.coarse.spacing:g} m; {where} "
                f"was trained on {info['shape']} cells of {info['spacing']:g} m (size = "
                f"[{info['shape'][1] * info['spacing']:g}, {info['shape'][0] * info['spacing']:g}])",
                key=f"{key}.size",
            )
        self.spacing = self.coarse.spacing  # the box's cells [m], for the model's energy hand-back
        self.couple_every = int(options.get("couple_every", 0))  # steps between hand-backs (the model reads it)
        self.couplings = [int(c) for c in info.get("couplings", [0])]
        self.coupling_checked = self.couple_every in (0, *self.couplings) or self.couple_every >= VALIDATED_COUPLE_EVERY
        if not self.coupling_checked:
            log.warning(
                "%s: couple_every = %d hands the surrogate's patch back more often than it was checked for (every "
                "%d steps or more, or the intervals of its coupled data %s); its answers feed its next inputs and may "
                "drift unseen by its spread (docs/laser.md)",
                TERM, self.couple_every, VALIDATED_COUPLE_EVERY, [c for c in self.couplings if c > 0],
            )  # fmt: skip
        self._check_params(ctx.params, info, where)
        self.t_inf, self.t_l = float(info["ambient_temperature"]), float(info["liquidus"])
        self.laser = np.array([[line_power(ctx.params), float(ctx.params["speed"])]])
        rng = info["range"]
        self.in_range = all(
            lo * (1 - 1e-9) <= x <= hi * (1 + 1e-9)
            for x, (lo, hi) in zip(self.laser[0], (rng["line_power"], rng["speed"]), strict=True)
        )
        self.range_note = (
            f"q' = {self.laser[0, 0]:.4g} W/m, v = {self.laser[0, 1]:.4g} m/s; {where} was trained for "
            f"q' in {rng['line_power']} W/m (P in {rng['power']} W), v in {rng['speed']} m/s"
        )
        self._laser_t = torch.from_numpy(self.laser).to(self.dtype)
        self.novelty_limit = float(self.model.novelty_limit[0])  # inf for weights without novelty statistics
        self.novelty = 0.0  # of the last call's coarse input
        self.novel_calls = 0
        self._warned = False
        cal = self.card.get("calibration") or {}
        self._u_cal = np.asarray([math.inf if v is None else v for v in cal.get("u", [])], dtype=np.float64)
        self._e_cal = np.asarray([math.inf if v is None else v for v in cal.get("e", [])], dtype=np.float64)

    def _check_params(self, params: Mapping[str, Any], info: Mapping[str, Any], where: str) -> None:
        """ConfigError for a [model] key (other than FREE_PARAMS) that differs from the training case's."""
        from hybrid.solvers.laser_materials import material

        try:
            trained = tomllib.loads(str((self.card.get("data") or {}).get("case", "")))["model"]
        except (tomllib.TOMLDecodeError, KeyError):
            return  # a card without the case: only the temperatures below
        for name, value in trained.items():
            if name in FREE_PARAMS or name not in params:
                continue
            have = params[name]
            same = (
                math.isclose(float(have), float(value), rel_tol=1e-9, abs_tol=1e-300)
                if isinstance(value, int | float) and isinstance(have, int | float) and not isinstance(value, bool)
                else have == value
            )
            if not same:
                raise ConfigError(
                    f"= {have!r}, but {where} was trained with {value!r}; use provider 'cfd', or train a surrogate "
                    "for this material (docs/laser.md)",
                    key=f"model.{name}",
                )
        mat = material(params)
        for name, value in (("ambient_temperature", float(params["ambient_temperature"])), ("liquidus", mat.liquidus)):
            if not math.isclose(value, float(info[name]), rel_tol=1e-12):
                raise ConfigError(f"= {value}, but {where} was trained with {info[name]}", key=f"model.{name}")

    def output_shape(self) -> tuple[int, ...]:
        """(patch points in depth, along the scan)."""
        return self.coarse.output_shape()

    def origin(self, time: float) -> np.ndarray:
        """(x, depth) [m] of the box's corner at the top, behind the spot, at ``time``."""
        return self.coarse.origin(time)

    def members(self, state: State) -> np.ndarray:
        """The members' patch temperatures (K, pz, px) float64 [K] (the network in its ``dtype``)."""
        import torch

        temp = np.asarray(state.backend.to_numpy(self.coarse.evaluate(state)), dtype=np.float64)
        theta = torch.from_numpy(((temp - self.t_inf) / (self.t_l - self.t_inf)).reshape(1, -1)).to(self.dtype)
        with torch.inference_mode():
            out = self.model(theta, self._laser_t)[:, 0].double().numpy()
            self.novelty = float(self.model.novelty(theta)[0])
        return (self.t_inf + (self.t_l - self.t_inf) * out).reshape(out.shape[0], *temp.shape)

    def predict(self, state: State) -> EnsemblePrediction:
        """The members' mean (pz, px) [K] and u; u is inf for a laser outside the training range or a coarse input
        beyond the novelty limit (:meth:`PatchSurrogateNet.novelty`): the monitor then answers by its fallback."""
        members = self.members(state)
        mean = members.mean(axis=0)
        novel = self.novelty > self.novelty_limit
        self.novel_calls += int(novel)
        trusted = self.in_range and not novel
        u = float(np.mean(members.std(axis=0, ddof=1) / mean)) if trusted else math.inf
        if not self.in_range and not self._warned:
            log.warning("%s: laser outside the surrogate's training range (%s): uncertainty inf", TERM,
                        self.range_note)  # fmt: skip
            self._warned = True
        return EnsemblePrediction(state.backend.asarray(mean), u)

    def evaluate(self, state: State) -> Array:
        return self.predict(state).mean

    error_measure = "mean over the patch of |T − T_cfd| / T_cfd"
    """What :meth:`error` and the monitor's tolerance measure."""

    def error(self, state: State, nn_value: Array, dns_value: Array) -> float:
        """MARE of an answer against the cfd patch: mean over the patch of |T − T_cfd| / T_cfd."""
        from hybrid.models.patch_autoencoder import mare

        be = state.backend
        return float(mare(np.asarray(be.to_numpy(nn_value)), np.asarray(be.to_numpy(dns_value))))

    def calibrated_threshold(self, tolerance: float, confidence: float) -> float:
        """Threshold of u for (tolerance, confidence) from the card's calibration pairs (-inf: always DNS)."""
        from hybrid.models.calibration import calibrate_threshold

        if self._u_cal.size == 0:
            raise ConfigError(
                f"the model card in {self.weights} has no calibration pairs; give terms.{TERM}.threshold",
                key=f"terms.{TERM}.tolerance",
            )
        return float(calibrate_threshold(self._u_cal, self._e_cal, tolerance, confidence))


class PatchMonitor(Monitor):
    """The monitor of ``patch_temperature``: also tells the box (``output_shape``, ``origin``, ``spacing``) the model
    saves and hands back, and how often it hands it back (``couple_every``)."""

    nn: PatchEnsemble

    @property
    def spacing(self) -> float:
        return self.nn.spacing

    @property
    def couple_every(self) -> int:
        return self.nn.couple_every

    def output_shape(self) -> tuple[int, ...]:
        return self.nn.output_shape()

    def origin(self, time: float) -> np.ndarray:
        return self.nn.origin(time)


class PatchCapture:
    """The monitor's capture sink (``capture = FILE``): every ``every``-th cfd evaluation the monitor makes
    (fallbacks and audits), with the coarse patch of the same state, written when the run closes as a
    ``laser_patch`` dataset file (:mod:`hybrid.couplers.patch_dataset`; the run is one group of split "train"), so
    ``hybrid train --data`` takes it beside the generated data (active learning). Its ``case`` attribute records the
    parameters, the box and the hand-back (provider monitor, ``couple_every``), its ``spec`` the monitor's weights and
    settings. A run without cfd evaluations writes no file; an existing file is refused, not overwritten."""

    def __init__(self, path: Path, nn: PatchEnsemble, ctx: Context, settings: Mapping[str, Any], every: int) -> None:
        from hybrid.core.config import drop_none, dumps_toml
        from hybrid.core.io import check_writable
        from hybrid.models.card import portable_path

        check_writable(path, f"terms.{TERM}.capture")
        if path.exists():  # nothing already written is lost: one file per run, several files are several --data
            raise ConfigError(
                f"= {str(path)!r} exists; allowed: a new file (each run captures into its own file; train on several "
                "with one --data each)",
                key=f"terms.{TERM}.capture",
            )
        self.path, self.nn, self.every = path, nn, every
        pz, px = nn.output_shape()
        box = {"provider": "monitor", "couple_every": nn.couple_every, "size": [px * nn.spacing, pz * nn.spacing],
               "spacing": nn.spacing}  # fmt: skip
        self.case = dumps_toml(drop_none({"model": dict(ctx.params), "terms": {TERM: box}}))
        weights = {"monitor_weights": portable_path(nn.weights),
                   "monitor_weights_sha256": str(nn.card.get("weights", {}).get("sha256", ""))}  # fmt: skip
        self.spec = dumps_toml({"capture": {**weights, **{k: float(v) for k, v in settings.items()}, "every": every}})
        self.line_power, self.speed = float(nn.laser[0, 0]), float(nn.laser[0, 1])
        self.power = float(ctx.params["power"])
        self.rows: dict[str, list[Any]] = {k: [] for k in ("coarse", "cfd", "time", "step", "origin")}
        self.seen = 0

    def add(self, state: State, dns_value: Array) -> None:
        self.seen += 1
        if (self.seen - 1) % self.every:
            return
        be = state.backend
        self.rows["coarse"].append(np.asarray(be.to_numpy(self.nn.coarse.evaluate(state)), dtype=np.float32))
        self.rows["cfd"].append(np.asarray(be.to_numpy(dns_value), dtype=np.float32))
        self.rows["time"].append(float(state.time))
        self.rows["step"].append(int(state.step))
        self.rows["origin"].append(np.asarray(self.nn.origin(state.time), dtype=np.float64))

    def close(self) -> None:
        from hybrid.couplers.generate import stamp, write_atomic
        from hybrid.couplers.patch_dataset import FORMAT_VERSION, HYBRID_KIND

        n = len(self.rows["step"])
        if n == 0:
            log.info("%s: no cfd evaluation to capture; %s not written", TERM, self.path)
            return

        def write(f: Any) -> None:
            for name in ("coarse", "cfd"):
                f.create_dataset(name, data=np.stack(self.rows[name]), compression="gzip", shuffle=True)
            for name, value in (("power", self.power), ("speed", self.speed), ("line_power", self.line_power)):
                f.create_dataset(name, data=np.full(n, value))
            f.create_dataset("time", data=np.asarray(self.rows["time"], dtype=np.float64))
            f.create_dataset("step", data=np.asarray(self.rows["step"], dtype=np.int64))
            f.create_dataset("origin", data=np.stack(self.rows["origin"]))
            f.create_dataset("group", data=np.zeros(n, dtype=np.int64))
            f.create_dataset("split", data=np.full(n, "train").astype("S"))
            stamp(f, kind=HYBRID_KIND, format_version=FORMAT_VERSION, spec=self.spec, seconds=0.0, workers="capture")
            f.attrs["case"] = self.case
            f.attrs["spacing"] = self.nn.spacing
            f.attrs["ambient_temperature"], f.attrs["liquidus"] = self.nn.t_inf, self.nn.t_l

        write_atomic(self.path, write)
        log.info("%s: captured %d cfd evaluations in %s", TERM, n, self.path)


# ---------------------------------------------------------------------------------------------------- options

NN_OPTIONS = Table(
    {
        **PATCH_OPTIONS.entries,
        "weights": Option("str", "shipped", "surrogate directory (weights.pt + model_card.json) or 'shipped'"),
        "dtype": Option("str", "float32", "inference precision", choices=("float32", "float64")),
        "threads": Option("int", 1, "torch CPU threads (process-wide; 0: leave torch's setting)", min=0),
    }
)


def _monitor_options() -> Table:
    fallbacks = tuple(p for p in PROVIDERS.get(TERM, {}) if p not in ("nn", "monitor"))
    policy = policy_options("cfd", fallbacks, (0.02, "accepted MARE of the patch (0.02: 2 %)"))
    capture = {
        "capture": Option(
            "str", None, "HDF5 file collecting the cfd evaluations as training pairs (a laser_patch dataset)"
        ),
        "capture_every": Option("int", 1, "keep every this many cfd evaluations in the capture file", min=1),
    }
    return Table({**NN_OPTIONS.entries, **policy, **capture})


@register_provider(TERM, "nn", options=NN_OPTIONS, doc="trained surrogate ensemble mean (float32 inference)")
def _build_nn(ctx: Context, options: Mapping[str, Any]) -> PatchEnsemble:
    nn = PatchEnsemble(ctx, options)
    if not nn.in_range:
        log.warning("%s: provider nn extrapolates: %s", TERM, nn.range_note)
    return nn


@register_provider(
    TERM,
    "monitor",
    options=_monitor_options(),
    doc="surrogate ensemble, cfd fallback when its spread exceeds the calibrated threshold or the laser is outside "
    "the training range",
)
def _build_monitor(ctx: Context, options: Mapping[str, Any]) -> PatchMonitor:
    nn = PatchEnsemble(ctx, options)
    every = nn.couple_every
    if not nn.coupling_checked:  # the monitor's promise does not hold there (VALIDATED_COUPLE_EVERY)
        coupled = ", ".join(str(c) for c in nn.couplings if c > 0)
        also = f", and every {coupled} step(s) (its coupled data)" if coupled else ""
        raise ConfigError(
            f"= {every}: the monitored surrogate in {nn.weights} was checked for no hand-back, hand-backs every "
            f"{VALIDATED_COUPLE_EVERY} steps or more{also}; "
            "handed back at other intervals its answers feed its next inputs and may drift past the bound unseen "
            "(docs/laser.md); allowed: those intervals, or provider 'cfd'",
            key=f"terms.{TERM}.couple_every",
        )
    box = {k: options[k] for k in ("size", "spacing") if k in options}
    dns = get_provider(TERM, str(options.get("fallback", "cfd"))).build(ctx, box)
    tol, conf = float(options.get("tolerance", 0.02)), float(options.get("confidence", 0.95))
    threshold = options.get("threshold")
    if threshold is None:
        threshold = nn.calibrated_threshold(tol, conf)
    if not nn.in_range:
        log.warning("%s: every call goes to %s: %s", TERM, options.get("fallback", "cfd"), nn.range_note)
    log.info("monitor on %r: threshold %s (mare, tolerance %g, confidence %g)", TERM, threshold, tol, conf)
    capture = None
    if options.get("capture"):  # an output: relative to the cwd
        settings = {"tolerance": tol, "confidence": conf, "threshold": float(threshold)}
        capture = PatchCapture(Path(options["capture"]), nn, ctx, settings, int(options.get("capture_every", 1)))
    monitor = monitored(nn, dns, float(threshold), options, tol, conf, capture=capture, cls=PatchMonitor)
    assert isinstance(monitor, PatchMonitor)
    return monitor


# ---------------------------------------------------------------------------------------------------- training


def _train(
    spec: Mapping[str, Any], data: list[Path], out: Path, *, progress: bool = False, spec_file: str | None = None
) -> Any:
    from hybrid.models.patch_training import train_patch_surrogate

    return train_patch_surrogate(spec, data, out, progress=progress, spec_file=spec_file)


def _describe(directory: Path, card: Mapping[str, Any]) -> list[str]:
    """``hybrid info DIR`` of a patch surrogate."""
    info, metrics = card.get("laser_patch", {}), card.get("metrics", {})
    lines = [
        f"{directory}: laser patch surrogate for term {card.get('term')!r} ({card.get('format')})",
        f"  architecture: {card.get('architecture', {})}",
        f"  patch {info.get('shape')} cells of {info.get('spacing')} m; range {info.get('range')}",
        f"  data: {card.get('data', {}).get('samples')}",
    ]
    novelty = info.get("novelty")
    if novelty:
        lines.append(f"  novelty limit {novelty['limit']:.4g} (quantile {novelty['quantile']:g} of the training "
                     f"inputs' Mahalanobis distances); beyond it: {novelty['beyond']}")  # fmt: skip
    for split in ("train", "calibration", "test"):
        m = metrics.get(split) or {}
        if "mare" in m:
            floor = f"; autoencoder alone {m['reconstruction_mare']:.4g}" if "reconstruction_mare" in m else ""
            lines.append(f"  {split}: n = {m['n']}, MARE {m['mare']:.4g} (max {m['mare_max']:.4g}; coarse "
                         f"{m['coarse_mare']:.4g}{floor})")  # fmt: skip
    for r in metrics.get("test_by_pair", []):
        every = "every step" if r.get("couple_every") == 1 else f"every {r.get('couple_every')} steps"
        run = f"handed back by {r.get('coupled_by') or 'cfd'} {every}" if r.get("couple_every") else "uncoupled"
        lines.append(f"    test P = {r['power']:g} W, v = {r['speed']:g} m/s, {run}: MARE {r['mare']:.4g} (coarse "
                     f"{r['coarse_mare']:.4g})")  # fmt: skip
    return lines + calibration_lines("mare", card.get("calibration", {}))


def _recalibrate(model_dir: Path, data: list[Path], changes: Mapping[str, Any], out: Path | None) -> Any:
    from hybrid.models.patch_training import recalibrate_patch_surrogate

    return recalibrate_patch_surrogate(model_dir, data, changes, out)


def _is_patch_spec(spec: Mapping[str, Any]) -> bool:
    from hybrid.models.patch_training import is_patch_spec

    return is_patch_spec(spec)


register_train_kind(
    TrainKind(
        "laser_patch",
        detect_spec=_is_patch_spec,
        detect_card=lambda card: "laser_patch" in card,
        train=_train,
        describe=_describe,
        calibrate=_recalibrate,
        doc="the laser patch surrogate ([model] architecture = 'patch_autoencoder')",
    )
)
