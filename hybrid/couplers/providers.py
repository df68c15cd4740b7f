"""NN-ensemble and monitored providers of the ATG term ``elastic``.

- ``nn``: the trained ensemble's mean, ρ = ρ0 · mean_k (ρ_k/ρ0) [eV/nm³]. Inference runs in float32 (stated in
  the model card) on the state's device under torch, or on the CPU for numpy states, where the profile is handed
  to torch without a copy (``torch.from_numpy``) and converted to float32 once. The output is float64 on the
  state's backend, like every DNS term (a bare-array call returns the dtype it was given:
  :class:`hybrid.core.terms.TermProvider`).
- ``monitor``: :class:`hybrid.couplers.monitor.Monitor` around ``nn`` with ``fem`` (or ``linear``) as fallback.

Both check their input as every provider of ``elastic`` does (:func:`hybrid.core.terms.check_input`): h of the
case grid's shape (N,), finite, >= 0 nm.

The ensemble sees only the shape of the profile (features in grid units: see :mod:`hybrid.models.features`) and
predicts ρ/ρ0, so changing E, ν or the misfit rescales ρ exactly and a case of any grid size can use it.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.core.backend import Array, resolve_device
from hybrid.core.config import ConfigError, Option, Table
from hybrid.core.registry import Context, get_provider, register_provider
from hybrid.core.state import State
from hybrid.core.terms import TermProvider
from hybrid.couplers.monitor import EnsemblePrediction, Monitor

log = logging.getLogger(__name__)

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights" / "atg_elastic"


def require_model_dir(path: Path, key: str, hint: str = "") -> Path:
    """``path`` if it holds a model card, else a ConfigError naming ``key`` and what the key accepts."""
    if not (path / "model_card.json").exists():
        where = f"no model_card.json in {path}" if path.is_dir() else f"{path} does not exist"
        raise ConfigError(
            f"{where}{hint}; allowed: 'shipped' or a folder with weights.pt and model_card.json (hybrid train --out)",
            key=key,
        )
    return path


def resolve_weights(ctx: Context, weights: str) -> Path:
    """``"shipped"`` -> the ensemble shipped in the package; otherwise a directory (relative to the case file)."""
    path = SHIPPED_WEIGHTS if weights == "shipped" else ctx.resolve_path(weights)
    hint = " (the shipped ensemble is missing: reinstall, or train one: see README)" if weights == "shipped" else ""
    return require_model_dir(path, "terms.elastic.weights", hint)


class NNElastic(TermProvider):
    """Ensemble-mean elastic energy density; ``predict`` also returns the uncertainty indicator.

    Input h (N,) [nm] on any backend; output ρ (N,) [eV/nm³] float64 on the state's backend/device. With
    ``metric = "rho0"`` (default) the uncertainty u is the RMS over x of the ensemble standard deviation of ρ/ρ0
    (ρ0 units) and :meth:`error` the RMSE of ρ in units of ρ0; with ``"modulation"`` both are measured on the
    mean-removed ρ relative to its spatial standard deviation (:mod:`hybrid.models.calibration`). The monitor's
    threshold is calibrated on the same pair.
    """

    name = "elastic"
    provider = "nn"
    inputs = ("h",)
    nn_fraction = 1.0

    def __init__(self, ctx: Context, options: Mapping[str, Any]) -> None:
        import torch

        from hybrid.models.card import load_ensemble
        from hybrid.models.ensemble import EnsembleCNN1d
        from hybrid.solvers.elasticity import misfit_energy_density

        super().__init__(ctx)
        p = ctx.params
        self.rho0 = misfit_energy_density(p["young"], p["poisson"], p["misfit"])
        self.dx = float(ctx.grid.dx)
        self.weights = resolve_weights(ctx, options.get("weights", "shipped"))
        device = options.get("device") or (ctx.backend.device if ctx.backend.is_torch else "cpu")
        self.device = resolve_device(device, "terms.elastic.device")
        self.model, self.card = load_ensemble(self.weights, device=str(self.device), expect=EnsembleCNN1d)
        if self.device.type == "cpu" and options.get("threads"):
            # batch-1 inference of a small network is dominated by per-op overhead: extra threads only add
            # synchronisation (and stall badly on a busy machine). This is torch's process-wide setting.
            torch.set_num_threads(int(options["threads"]))
        dtype = {"float32": torch.float32, "float64": torch.float64}[options.get("dtype", "float32")]
        self.model = self.model.to(dtype=dtype).eval()
        self.dtype = dtype
        self.metric = str(options.get("metric", "rho0"))
        cal = self.card.get("calibration", {})
        self._calibration = cal if self.metric == "rho0" else cal.get(self.metric, {})
        # Mondrian calibration: the input's stratum is its bin of max_x (dh/dx)^2 (hybrid.models.calibration)
        self.stratum_edges = [float(v) for v in self._calibration.get("stratification", {}).get("edges", [])]
        self._plan: Any = None  # InferencePlan for the grid size of the last call
        self._dx_t = torch.tensor(self.dx, dtype=dtype, device=self.device)  # on the device: no copy per call
        self.cuda_graph = bool(options.get("cuda_graph", False))
        if self.cuda_graph and self.device.type != "cuda":
            raise ConfigError(
                f"cuda_graph = true needs the ensemble on a CUDA device (device = 'cuda' or 'cuda:N'), "
                f"but it runs on {str(self.device)!r}",
                key="terms.elastic.cuda_graph",
            )
        self._graph: Any = None  # CudaGraphCall of _outputs for the grid size of the last call

    def _device_profile(self, h: Any) -> Any:
        """h (N,) as a torch tensor of the inference dtype on the model's device."""
        import torch

        t = h if isinstance(h, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(h))
        return t.to(device=self.device, dtype=self.dtype)

    def _outputs(self, t: Any) -> tuple[Any, Any, Any, Any]:
        """(members ρ_k/ρ0 (K, N), ensemble-mean ρ (N,) float64 [eV/nm³], uncertainty u (), max_x (dh/dx)² ()
        or None without strata) of the device profile t (N,), all torch on the model's device. Free of host-device
        synchronisation, so a CUDA graph can hold it; call with gradients off and the plan built for N."""
        from hybrid.models.calibration import INDICATORS
        from hybrid.models.features import ELASTIC_CHANNELS, elastic_features

        features = elastic_features(t[None, :], self._dx_t)
        members = self._plan(features)[0]
        # the stratum's feature only for a card calibrated by stratum (one op less per call otherwise)
        max_slope2 = features[0, ELASTIC_CHANNELS.index("slope2")].amax() if self.stratum_edges else None
        return members, members.mean(dim=0).double() * self.rho0, INDICATORS[self.metric](members), max_slope2

    def stratum(self, max_slope2: float) -> int:
        """Calibration stratum of a profile: the number of the card's bin edges <= max_x (dh/dx)² (0 without
        strata; the rule of :func:`hybrid.models.calibration.slope_strata`)."""
        return bisect.bisect_right(self.stratum_edges, max_slope2)

    def _ensure_plan(self, n: int) -> None:
        from hybrid.models.ensemble import InferencePlan

        if self._plan is None or self._plan.n != n:
            self._plan = InferencePlan(self.model, n)  # the weights never change in a run: freeze them once

    def predict(self, state: State) -> EnsemblePrediction:
        import torch

        t = self._device_profile(state["h"])
        self._ensure_plan(t.shape[-1])
        if self.cuda_graph:
            from hybrid.models.ensemble import CudaGraphCall

            if self._graph is None or self._graph.shape != tuple(t.shape):
                with torch.no_grad():
                    self._graph = CudaGraphCall(self._outputs, t)
            _, rho, u, slope2 = self._graph(t)
            if state.backend.is_torch:
                rho = rho.clone()  # the graph's output buffer is overwritten by the next call (numpy: copied below)
        else:
            with torch.inference_mode():
                _, rho, u, slope2 = self._outputs(t)
        stratum = 0 if slope2 is None else self.stratum(float(slope2))
        return EnsemblePrediction(state.backend.asarray(rho), float(u), stratum)

    def evaluate(self, state: State) -> Array:
        return self.predict(state).mean

    @property
    def error_measure(self) -> str:
        """What :meth:`error` and the monitor's tolerance measure, for plot axes and reports."""
        return "RMSE(ρ) / ρ0" if self.metric == "rho0" else "RMSE(ρ − ⟨ρ⟩) / std(ρ)"

    def error(self, state: State, nn_value: Array, dns_value: Array) -> float:
        """Error of ρ against DNS in the units of the tolerance: RMSE / ρ0 (``metric = "rho0"``) or the relative
        RMSE of the mean-removed ρ (``"modulation"``)."""
        from hybrid.models.calibration import ERRORS

        be = state.backend
        nn_np, dns_np = be.to_numpy(nn_value) / self.rho0, be.to_numpy(dns_value) / self.rho0
        return float(ERRORS[self.metric](nn_np[None, :], dns_np))  # the answer as a 1-member "ensemble"

    def calibrated_threshold(self, tolerance: float, confidence: float) -> float | list[float]:
        """Spread threshold for (tolerance, confidence), recomputed from the card's calibration pairs by the card's
        rule: one float, or with Mondrian calibration one per input stratum (index = :meth:`stratum`)."""
        from hybrid.models.calibration import calibrate_threshold, stratum_thresholds

        cal = self._calibration
        if "u" in cal and "e" in cal:
            u = np.asarray([math.inf if v is None else v for v in cal["u"]], dtype=np.float64)  # JSON null = +inf
            e = np.asarray([math.inf if v is None else v for v in cal["e"]], dtype=np.float64)
            if "input_strata" in cal:  # Mondrian: one threshold per bin of max (dh/dx)^2
                per = stratum_thresholds(u, e, cal["input_strata"], tolerance, confidence)
                return [per.get(k, -math.inf) for k in range(len(self.stratum_edges) + 1)]
            strata = cal.get("strata")  # group-conditional calibration: the same rule as in training
            return float(calibrate_threshold(u, e, tolerance, confidence, strata=strata))
        if (
            self.metric == "rho0"
            and math.isclose(cal.get("tolerance", math.nan), tolerance)
            and math.isclose(cal.get("confidence", math.nan), confidence)
        ):
            from hybrid.models.card import card_threshold

            return card_threshold(self.card)  # -inf (always DNS) when calibration found no safe threshold
        if self.metric != "rho0":
            raise ConfigError(
                f"the model card in {self.weights} has no calibration pairs for metric {self.metric!r} (retrain it "
                f"with this version of `hybrid train`); use metric = 'rho0' or give terms.elastic.threshold",
                key="terms.elastic.metric",
            )
        raise ConfigError(
            f"the model card in {self.weights} has no calibration pairs to recalibrate for tolerance={tolerance}, "
            f"confidence={confidence}; give terms.elastic.threshold explicitly",
            key="terms.elastic.tolerance",
        )


class CaptureFile:
    """Appends DNS evaluations (h, ρ) to an HDF5 file in the dataset format (active learning).

    Layout as written by ``hybrid dataset``: /h, /rho (S, N), /rho0, /dx (S,), /family (S,) = "captured",
    /group (S,), so ``hybrid train --data`` can consume it directly.

    Groups: consecutive captures of one run are strongly correlated (the profile barely moves between steps), and
    ``hybrid train`` splits by group, so one group is a block of ``block_steps`` steps of one run:
    group = base + step // block_steps, where ``base`` is one more than the largest group already in the file
    (each run, or restart, appending to a file starts new groups). Correlated neighbours then stay in one split
    instead of leaking between the training and the calibration/test splits. ``block_steps = 0`` makes the whole
    run one group: the unit that is exchangeable between runs of different seeds, which calibration needs.

    Thinning: ``every = m`` keeps the 1st, (m+1)th, ... DNS evaluation of the run (neighbours add little but
    training time), counted from the start of the run or of a restart (which starts new groups anyway);
    ``samples`` counts the kept ones, ``seen`` all of them.
    """

    def __init__(
        self, path: Path, rho0: float, dx: float, spec_text: str = "", block_steps: int = 1000, every: int = 1
    ) -> None:
        if block_steps < 0 or every < 1:
            raise ValueError(f"capture needs block_steps >= 0 and every >= 1, got {block_steps}, {every}")
        self.path = Path(path)
        self.rho0 = rho0
        self.dx = dx
        self.spec_text = spec_text
        self.block_steps = int(block_steps)
        self.every = int(every)
        self._file: Any = None
        self._base = 0
        self.samples = 0
        self.seen = 0

    def _open(self, n: int) -> Any:
        import h5py

        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = h5py.File(self.path, "a")
            if "h" not in f:
                f.create_dataset("h", (0, n), maxshape=(None, n), dtype="f8", chunks=(64, n))
                f.create_dataset("rho", (0, n), maxshape=(None, n), dtype="f8", chunks=(64, n))
                for name in ("rho0", "dx"):
                    f.create_dataset(name, (0,), maxshape=(None,), dtype="f8", chunks=(256,))
                f.create_dataset("group", (0,), maxshape=(None,), dtype="i8", chunks=(256,))
                f.create_dataset("family", (0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(256,))
                f.attrs["spec"] = ""
                f.attrs["created"] = _now()
            if self.spec_text:  # provenance of every run that appends (read into the model card by hybrid train)
                previous = str(f.attrs.get("spec", ""))
                f.attrs["spec"] = f"{previous}\n{self.spec_text}" if previous else self.spec_text
            groups = f["group"][:]
            self._base = int(groups.max()) + 1 if groups.size else 0
            self._file = f
        return self._file

    def add(self, state: State, dns_value: Array) -> None:
        self.seen += 1
        if (self.seen - 1) % self.every:
            return
        be = state.backend
        h = np.asarray(be.to_numpy(state["h"]), dtype=np.float64)
        f = self._open(h.shape[0])
        i = f["h"].shape[0]
        for name in ("h", "rho", "rho0", "dx", "group", "family"):
            f[name].resize(i + 1, axis=0)
        f["h"][i] = h
        f["rho"][i] = be.to_numpy(dns_value)
        f["rho0"][i] = self.rho0
        f["dx"][i] = self.dx
        f["group"][i] = self._base + (state.step // self.block_steps if self.block_steps else 0)
        f["family"][i] = "captured"
        self.samples += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _capture_provenance(ctx: Context, nn: NNElastic, **monitor: Any) -> str:
    """A TOML block saying which run produced a capture (one block per appending run): grid, seed, parameters,
    the monitor's ensemble (weights sha256) and settings, so the card of an ensemble refined on it names its data."""
    from hybrid.models.card import portable_path

    weights = nn.card.get("weights", {})
    lines = [
        f"# captured {_now()} by the elastic monitor of a run of model {ctx.model or 'atg'}",
        "[capture]",
        f"seed = {int(ctx.seed)}",
        f"length = {float(ctx.grid.lengths[0])!r}",
        f"points = {int(ctx.grid.points[0])}",
        f"monitor_weights = {json.dumps(portable_path(nn.weights))}",  # a JSON string is a valid TOML string
        f"monitor_weights_sha256 = {json.dumps(str(weights.get('sha256', '')))}",
        *(f"{k} = {json.dumps(v) if isinstance(v, str | int) else repr(float(v))}" for k, v in monitor.items()),
        "[capture.model]",
        *(f"{k} = {float(v)!r}" for k, v in ctx.params.items() if isinstance(v, int | float)),
    ]
    return "\n".join(lines)


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


NN_OPTIONS = Table(
    {
        "weights": Option("str", "shipped", "ensemble directory (weights.pt + model_card.json) or 'shipped'"),
        "dtype": Option("str", "float32", "inference precision", choices=("float32", "float64")),
        "device": Option("str", None, "torch device for inference (default: the case's device, cpu for numpy)"),
        "threads": Option("int", 1, "torch CPU threads (process-wide; 0: leave torch's setting)", min=0),
        "cuda_graph": Option(
            "bool", False, "replay each call as one CUDA graph (needs a CUDA device; cuts per-kernel launch cost)"
        ),
    }
)

MONITOR_OPTIONS = Table(
    {
        **NN_OPTIONS.entries,
        "fallback": Option("str", "fem", "DNS provider called when the ensemble is unsure", choices=("fem", "linear")),
        "metric": Option(
            "str",
            "rho0",
            "what tolerance measures: rho0 = RMSE of ρ / ρ0; modulation = RMSE of ρ − ⟨ρ⟩ / std(ρ)",
            choices=("rho0", "modulation"),
        ),
        "tolerance": Option(
            "float", 0.02, "accepted error, in the units of metric (0.02: 2 % of ρ0)", min=0.0, min_exclusive=True
        ),
        "confidence": Option(
            "float",
            0.95,
            "fraction of accepted NN answers within the tolerance",
            min=0.0,
            max=1.0,
            min_exclusive=True,
            max_exclusive=True,
        ),
        "threshold": Option("float", None, "spread threshold (overrides the calibration)", min=0.0),
        "hysteresis": Option("int", 0, "steps to stay on DNS after a fallback", min=0),
        "audit_every": Option("int", 0, "call DNS every this many steps and log the NN's true error (0: never)", min=0),
        "capture": Option("str", None, "HDF5 file collecting every DNS evaluation as a training sample"),
        "capture_every": Option("int", 1, "keep every this many DNS evaluations in the capture file", min=1),
        "capture_block": Option(
            "int", 1000, "steps per capture group (train splits by group; 0: the whole run is one group)", min=0
        ),
        "tighten_on_audit": Option(
            "bool", False, "lower the threshold when an audit finds an accepted answer beyond the tolerance"
        ),
    }
)


@register_provider("elastic", "nn", options=NN_OPTIONS, doc="trained CNN ensemble mean (float32 inference)")
def _build_nn(ctx: Context, options: Mapping[str, Any]) -> NNElastic:
    return NNElastic(ctx, options)


@register_provider(
    "elastic",
    "monitor",
    options=MONITOR_OPTIONS,
    doc="CNN ensemble, DNS fallback when its spread exceeds the calibrated threshold",
)
def _build_monitor(ctx: Context, options: Mapping[str, Any]) -> Monitor:
    nn = NNElastic(ctx, options)
    dns = get_provider("elastic", options.get("fallback", "fem")).build(ctx, {})
    tol, conf = float(options.get("tolerance", 0.02)), float(options.get("confidence", 0.95))
    threshold = options.get("threshold")
    if threshold is None:
        threshold = nn.calibrated_threshold(tol, conf)
    capture = None
    if options.get("capture"):
        every, block = int(options.get("capture_every", 1)), int(options.get("capture_block", 1000))
        provenance = _capture_provenance(
            ctx,
            nn,
            metric=nn.metric,
            tolerance=tol,
            confidence=conf,
            threshold=threshold,
            capture_every=every,
            capture_block=block,
        )
        # an output: relative to the cwd
        capture = CaptureFile(
            Path(options["capture"]), nn.rho0, nn.dx, spec_text=provenance, block_steps=block, every=every
        )
    log.info(
        "monitor on 'elastic': threshold %s (metric %s, tolerance %g, confidence %g)", threshold, nn.metric, tol, conf
    )
    return Monitor(
        nn,
        dns,
        threshold,
        hysteresis=int(options.get("hysteresis", 0)),
        audit_every=int(options.get("audit_every", 0)),
        capture=capture,
        tolerance=tol,
        confidence=conf,
        tighten_on_audit=bool(options.get("tighten_on_audit", False)),
    )
