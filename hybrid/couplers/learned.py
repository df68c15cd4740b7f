"""The learned-term seam: one spec per learnable term, and the NN-ensemble provider and monitor built from it.

A :class:`LearnedTerm` says everything generic code needs to know about a term a network can supply: which state
fields it reads, the features the network sees, the physical scale of its target (the network predicts
value / scale, so physical parameters rescale the answer exactly where the physics allows), the error metrics a
monitor tolerance is stated in (each an uncertainty indicator and its error), the statistic calibration strata
are built from, the DNS provider that labels its training data and backs the monitor, the layout of a captured
sample, and where its shipped weights live. :func:`register_learned_term` registers the providers ``nn`` (the
ensemble mean) and ``monitor`` (ensemble with a DNS fallback chosen among the term's registered providers) for
it; a new learned term is one module that declares its spec (see :mod:`hybrid.couplers.terms.elastic`).

Inference runs in float32 unless ``dtype = "float64"`` (stated in the model card); a numpy state is handed to
torch without a copy (``torch.from_numpy``). The answer is float64 on the state's backend, like every DNS term (a
bare-array call returns the dtype it was given: :class:`hybrid.core.terms.TermProvider`). Both providers check
their input as every provider of the term does (:func:`hybrid.core.terms.check_input`: the case grid's shape,
finite, within the range the model declares).
"""

from __future__ import annotations

import bisect
import datetime
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.core.backend import Array, resolve_device
from hybrid.core.config import ConfigError, Option, Table
from hybrid.core.registry import PROVIDERS, Context, get_provider, register_provider
from hybrid.core.state import State
from hybrid.core.terms import TermProvider
from hybrid.couplers.monitor import EnsemblePrediction, EnsembleTerm, Monitor
from hybrid.couplers.pipeline import TrainKind, calibration_lines, register_train_kind
from hybrid.models.learnable import Learnable, Metric

log = logging.getLogger(__name__)

__all__ = [
    "LEARNED",
    "CaptureFile",
    "EnsembleProvider",
    "LearnedTerm",
    "build_monitor",
    "monitored",
    "policy_options",
    "register_learned_term",
    "require_model_dir",
]


@dataclass(frozen=True)
class LearnedTerm:
    """What the project needs to know to learn, serve and monitor a term.

    Attributes:
        learnable: the training half (data layout, features, baseline law, metrics, strata channel).
        scale: resolved ``[model]`` parameters -> the target's physical scale (the network predicts value/scale).
        labeller: the DNS provider that labels training data and is the monitor's default fallback.
        weights: the folder of the shipped ensemble (weights.pt + model_card.json).
        architecture: the network class the weights must be (``load_ensemble(expect=...)``).
        tolerance: default tolerance (in the default metric's units) and its documentation.
        nn_doc, monitor_doc: one-line documentation of the two providers.
        fallbacks: the monitor's allowed fallbacks (empty: every other registered provider of the term).
    """

    learnable: Learnable
    scale: Callable[[Mapping[str, Any]], float]
    labeller: str
    weights: Path
    architecture: type[Any]
    tolerance: tuple[float, str] = (0.05, "accepted error, in the units of metric")
    nn_doc: str = "trained NN ensemble mean (float32 inference)"
    monitor_doc: str = "NN ensemble, DNS fallback when its spread exceeds the calibrated threshold"
    fallbacks: tuple[str, ...] = field(default=())

    @property
    def term(self) -> str:
        return self.learnable.term

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.learnable.layout.inputs

    @property
    def metrics(self) -> Mapping[str, Metric]:
        return self.learnable.metrics

    @property
    def default_metric(self) -> str:
        return self.learnable.default_metric


LEARNED: dict[str, LearnedTerm] = {}
"""Registered learned terms by term name."""


def resolve_model_dir(ctx: Context, weights: str, shipped: Path, key: str, missing: str) -> Path:
    """The ensemble folder a ``weights`` option names: ``"shipped"`` -> ``shipped``, otherwise a folder relative to
    the case file; a ConfigError naming ``key`` (with the ``missing`` hint for a shipped one) if it holds no card."""
    path = shipped if weights == "shipped" else ctx.resolve_path(weights)
    return require_model_dir(path, key, f" ({missing})" if weights == "shipped" else "")


def require_model_dir(path: Path, key: str, hint: str = "") -> Path:
    """``path`` if it holds a model card, else a ConfigError naming ``key`` and what the key accepts."""
    if not (path / "model_card.json").exists():
        where = f"no model_card.json in {path}" if path.is_dir() else f"{path} does not exist"
        raise ConfigError(
            f"{where}{hint}; allowed: 'shipped' or a folder with weights.pt and model_card.json (hybrid train --out)",
            key=key,
        )
    return path


class EnsembleProvider(TermProvider):
    """Ensemble-mean term value of a :class:`LearnedTerm`; ``predict`` also returns the uncertainty indicator.

    Input: the spec's ``inputs`` fields, shape (N,), on any backend. Output: the term (N,) in its physical units,
    float64 on the state's backend/device. The uncertainty u of the chosen ``metric`` and :meth:`error` are in the
    units of the monitor's tolerance; the monitor's threshold is calibrated on the same pair.
    """

    provider = "nn"
    nn_fraction = 1.0

    def __init__(self, spec: LearnedTerm, ctx: Context, options: Mapping[str, Any]) -> None:
        import torch

        from hybrid.models.card import load_ensemble

        super().__init__(ctx)
        self.spec = spec
        self.name = spec.term
        self.inputs = spec.inputs
        self.scale = float(spec.scale(ctx.params))
        self.dx = float(ctx.grid.dx)
        self.weights = resolve_model_dir(
            ctx,
            str(options.get("weights", "shipped")),
            spec.weights,
            self._key("weights"),
            "the shipped ensemble is missing: reinstall, or train one: see docs/training.md",
        )
        device = options.get("device") or (ctx.backend.device if ctx.backend.is_torch else "cpu")
        self.device = resolve_device(device, self._key("device"))
        self.model, self.card = load_ensemble(self.weights, device=str(self.device), expect=spec.architecture)
        self.threads = int(options.get("threads", 1))
        if self.device.type == "cpu" and self.threads:
            # batch-1 inference of a small network is dominated by per-op overhead: extra threads only add
            # synchronisation (and stall badly on a busy machine). This is torch's process-wide setting.
            torch.set_num_threads(self.threads)
        dtype = {"float32": torch.float32, "float64": torch.float64}[options.get("dtype", "float32")]
        self.model = self.model.to(dtype=dtype).eval()
        self.dtype = dtype
        self.metric = str(options.get("metric", spec.default_metric))
        cal = self.card.get("calibration", {})
        self._calibration = cal if self.metric == spec.default_metric else cal.get(self.metric, {})
        # Mondrian calibration: the input's stratum is its bin of the spec's stratum statistic
        self.stratum_edges = [float(v) for v in self._calibration.get("stratification", {}).get("edges", [])]
        learnable = spec.learnable
        if self.stratum_edges and learnable.stratum_channel is None:
            raise ConfigError(
                f"{self.weights}: the card has input strata, but {spec.term!r} has none", self._key("weights")
            )
        self._stratum_channel = learnable.channels.index(learnable.stratum_channel) if self.stratum_edges else 0
        self._plan: Any = None  # InferencePlan for the grid size of the last call
        self._dx_t = torch.tensor(self.dx, dtype=dtype, device=self.device)  # on the device: no copy per call
        self.cuda_graph = bool(options.get("cuda_graph", False))
        if self.cuda_graph and self.device.type != "cuda":
            raise ConfigError(
                f"cuda_graph = true needs the ensemble on a CUDA device (device = 'cuda' or 'cuda:N'), "
                f"but it runs on {str(self.device)!r}",
                key=self._key("cuda_graph"),
            )
        self._graph: Any = None  # CudaGraphCall of _outputs for the grid size of the last call
        self.inference = self._inference_path(str(options.get("inference", "auto")))

    def __getattr__(self, name: str) -> Any:
        """The scale also under its physical name (e.g. ``provider.rho0`` for ``elastic``)."""
        spec = self.__dict__.get("spec")
        if spec is not None and name == spec.learnable.layout.scale:
            return self.__dict__["scale"]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _key(self, option: str) -> str:
        return f"terms.{self.spec.term}.{option}"

    def _inference_path(self, choice: str) -> str:
        """'fused' or 'torch' for the ``inference`` option (see :data:`NN_OPTIONS`)."""
        import torch

        from hybrid.models.fused_inference import FusedEnsemblePlan

        fits = self.device.type == "cpu" and self.dtype == torch.float32 and not self.cuda_graph
        fits = fits and FusedEnsemblePlan.supports(self.model)
        if choice == "fused" and not fits:
            raise ConfigError(
                "inference = 'fused' runs a float32 CNN ensemble on the CPU; this one runs on "
                f"{str(self.device)!r} in {str(self.dtype).removeprefix('torch.')}; use 'torch' or 'auto'",
                key=self._key("inference"),
            )
        return "fused" if fits and choice != "torch" else "torch"

    def _device_input(self, x: Any) -> Any:
        """An input field (N,) as a torch tensor of the inference dtype on the model's device."""
        import torch

        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        return t.to(device=self.device, dtype=self.dtype)

    def _outputs(self, t: Any) -> tuple[Any, Any, Any, Any]:
        """(members value/scale (K, N), ensemble mean (N,) float64 in physical units, uncertainty u (), stratum
        statistic () or None without strata) of the device input t (N,), all torch on the model's device. Free
        of host-device synchronisation, so a CUDA graph can hold it; call with gradients off and the plan built
        for N."""
        features = self.spec.learnable.features(t[None, :], self._dx_t)
        members = self._plan(features)[0]
        # the stratum's statistic only for a card calibrated by stratum (one op less per call otherwise)
        stat = features[0, self._stratum_channel].amax() if self.stratum_edges else None
        indicator = self.spec.metrics[self.metric].indicator
        return members, members.mean(dim=0).double() * self.scale, indicator(members), stat

    def stratum(self, statistic: float) -> int:
        """Calibration stratum of an input: the number of the card's bin edges <= its stratum statistic (0 without
        strata; the rule of :func:`hybrid.models.calibration.slope_strata`)."""
        return bisect.bisect_right(self.stratum_edges, statistic)

    def _ensure_plan(self, n: int) -> None:
        from hybrid.models.ensemble import InferencePlan

        if self._plan is None or self._plan.n != n:  # the weights never change in a run: freeze them once
            if self.inference == "fused":
                from hybrid.models.fused_inference import FusedEnsemblePlan

                self._plan = FusedEnsemblePlan(self.model, n, threads=max(1, self.threads))
            else:
                self._plan = InferencePlan(self.model, n)

    def _outputs_fused(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float | None]:
        """:meth:`_outputs` for the fused CPU plan, in numpy: (members (K, N) float32, mean (N,) float64 in
        physical units, u, stratum statistic or None) of one input h (N,)."""
        import torch

        learnable = self.spec.learnable
        if learnable.cpu_features is not None:
            features = learnable.cpu_features(h[None, :], self.dx)
        else:
            features = learnable.features(torch.from_numpy(h)[None, :], self.dx).numpy()
        from hybrid.models.calibration import uncertainty
        from hybrid.models.fused_inference import mean_and_spread

        members = self._plan(features)[0]
        stat = float(features[0, self._stratum_channel].max()) if self.stratum_edges else None
        indicator = self.spec.metrics[self.metric].indicator
        if indicator is uncertainty:  # the usual indicator, with the mean in the same compiled pass
            mean, u = mean_and_spread(members)
        else:
            mean, u = members.mean(axis=0, dtype=np.float64), float(indicator(members))
        return members, mean * self.scale, u, stat

    def predict(self, state: State) -> EnsemblePrediction:
        import torch

        if self.inference == "fused":
            h = state.backend.to_numpy(state[self.inputs[0]])
            self._ensure_plan(h.shape[-1])
            _, mean, u_fused, statistic = self._outputs_fused(h)
            stratum = 0 if statistic is None else self.stratum(statistic)
            return EnsemblePrediction(state.backend.asarray(mean), u_fused, stratum)
        t = self._device_input(state[self.inputs[0]])
        self._ensure_plan(t.shape[-1])
        if self.cuda_graph:
            from hybrid.models.ensemble import CudaGraphCall

            if self._graph is None or self._graph.shape != tuple(t.shape):
                with torch.no_grad():
                    self._graph = CudaGraphCall(self._outputs, t)
            _, value, u, stat = self._graph(t)
            if state.backend.is_torch:
                value = value.clone()  # the graph's output buffer is overwritten by the next call (numpy: copied)
        else:
            with torch.inference_mode():
                _, value, u, stat = self._outputs(t)
        stratum = 0 if stat is None else self.stratum(float(stat))
        return EnsemblePrediction(state.backend.asarray(value), float(u), stratum)

    def evaluate(self, state: State) -> Array:
        return self.predict(state).mean

    @property
    def error_measure(self) -> str:
        """What :meth:`error` and the monitor's tolerance measure (the metric's doc), for plot axes and reports."""
        return self.spec.metrics[self.metric].doc

    def error(self, state: State, nn_value: Array, dns_value: Array) -> float:
        """Error of an answer against the DNS in the units of the tolerance (the chosen metric, on value/scale)."""
        be = state.backend
        nn_np, dns_np = be.to_numpy(nn_value) / self.scale, be.to_numpy(dns_value) / self.scale
        return float(self.spec.metrics[self.metric].error(nn_np[None, :], dns_np))  # the answer as a 1-member set

    def calibrated_threshold(self, tolerance: float, confidence: float) -> float | list[float]:
        """Spread threshold for (tolerance, confidence), recomputed from the card's calibration pairs by the card's
        rule: one float, or with Mondrian calibration one per input stratum (index = :meth:`stratum`)."""
        from hybrid.models.calibration import calibrate_threshold, stratum_thresholds

        cal = self._calibration
        default = self.spec.default_metric
        if "u" in cal and "e" in cal:
            u = np.asarray([math.inf if v is None else v for v in cal["u"]], dtype=np.float64)  # JSON null = +inf
            e = np.asarray([math.inf if v is None else v for v in cal["e"]], dtype=np.float64)
            if "input_strata" in cal:  # Mondrian: one threshold per bin of the stratum statistic
                per = stratum_thresholds(u, e, cal["input_strata"], tolerance, confidence)
                return [per.get(k, -math.inf) for k in range(len(self.stratum_edges) + 1)]
            strata = cal.get("strata")  # group-conditional calibration: the same rule as in training
            return float(calibrate_threshold(u, e, tolerance, confidence, strata=strata))
        if (
            self.metric == default
            and math.isclose(cal.get("tolerance", math.nan), tolerance)
            and math.isclose(cal.get("confidence", math.nan), confidence)
        ):
            from hybrid.models.card import card_threshold

            return card_threshold(self.card)  # -inf (always DNS) when calibration found no safe threshold
        if self.metric != default:
            raise ConfigError(
                f"the model card in {self.weights} has no calibration pairs for metric {self.metric!r} (retrain it "
                f"with this version of `hybrid train`); use metric = {default!r} or give {self._key('threshold')}",
                key=self._key("metric"),
            )
        raise ConfigError(
            f"the model card in {self.weights} has no calibration pairs to recalibrate for tolerance={tolerance}, "
            f"confidence={confidence}; give {self._key('threshold')} explicitly",
            key=self._key("tolerance"),
        )


class CaptureFile:
    """Appends DNS evaluations to an HDF5 file in the data-set layout of a learned term (active learning).

    Layout as written by ``hybrid dataset``: one (S, N) dataset per input field (e.g. /h), the label ``target``
    (S, N) (e.g. /rho), the scale ``scale_name`` (S,) (e.g. /rho0), /dx (S,), /family (S,) = "captured",
    /group (S,), so ``hybrid train --data`` can consume it directly.

    Groups: consecutive captures of one run are strongly correlated (the state barely moves between steps), and
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
        self,
        path: Path,
        scale: float,
        dx: float,
        spec_text: str = "",
        block_steps: int = 1000,
        every: int = 1,
        *,
        inputs: tuple[str, ...] = ("h",),
        target: str = "rho",
        scale_name: str = "rho0",
    ) -> None:
        if block_steps < 0 or every < 1:
            raise ValueError(f"capture needs block_steps >= 0 and every >= 1, got {block_steps}, {every}")
        self.path = Path(path)
        self.scale = scale
        self.dx = dx
        self.spec_text = spec_text
        self.block_steps = int(block_steps)
        self.every = int(every)
        self.inputs, self.target, self.scale_name = inputs, target, scale_name
        self._file: Any = None
        self._base = 0
        self.samples = 0
        self.seen = 0

    def _open(self, n: int) -> Any:
        import h5py

        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = h5py.File(self.path, "a")
            if self.target not in f:
                for name in (*self.inputs, self.target):
                    f.create_dataset(name, (0, n), maxshape=(None, n), dtype="f8", chunks=(64, n))
                for name in (self.scale_name, "dx"):
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
        values = {name: np.asarray(be.to_numpy(state[name]), dtype=np.float64) for name in self.inputs}
        f = self._open(next(iter(values.values())).shape[0])
        i = f[self.target].shape[0]
        for name in (*self.inputs, self.target, self.scale_name, "dx", "group", "family"):
            f[name].resize(i + 1, axis=0)
        for name, v in values.items():
            f[name][i] = v
        f[self.target][i] = be.to_numpy(dns_value)
        f[self.scale_name][i] = self.scale
        f["dx"][i] = self.dx
        f["group"][i] = self._base + (state.step // self.block_steps if self.block_steps else 0)
        f["family"][i] = "captured"
        self.samples += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _capture_provenance(ctx: Context, nn: EnsembleProvider, **monitor: Any) -> str:
    """A TOML block saying which run produced a capture (one block per appending run): grid, seed, parameters,
    the monitor's ensemble (weights sha256) and settings, so the card of an ensemble refined on it names its data."""
    from hybrid.models.card import portable_path

    weights = nn.card.get("weights", {})
    lines = [
        f"# captured {_now()} by the {nn.spec.term} monitor of a run of model {ctx.model or '?'}",
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
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------- options

NN_OPTIONS = Table(
    {
        "weights": Option("str", "shipped", "ensemble directory (weights.pt + model_card.json) or 'shipped'"),
        "dtype": Option("str", "float32", "inference precision", choices=("float32", "float64")),
        "device": Option("str", None, "torch device for inference (default: the case's device, cpu for numpy)"),
        "threads": Option(
            "int",
            1,
            "CPU threads for inference: torch's (process-wide; 0: leave torch's setting) and, on the fused path, "
            "the members shared out over numba threads (0 or 1: one after another)",
            min=0,
        ),
        "cuda_graph": Option(
            "bool", False, "replay each call as one CUDA graph (needs a CUDA device; cuts per-kernel launch cost)"
        ),
        "inference": Option(
            "str",
            "auto",
            "network evaluation: 'fused' (one compiled CPU float32 call), 'torch' (the reference), 'auto' (fused "
            "where it applies: CPU, float32, a CNN ensemble)",
            choices=("auto", "fused", "torch"),
        ),
    }
)


def policy_options(labeller: str, fallbacks: tuple[str, ...], tolerance: tuple[float, str]) -> dict[str, Option]:
    """The monitor's policy options every monitored term shares: the DNS ``fallback`` (default ``labeller``, one of
    ``fallbacks``), ``tolerance`` (default and doc), ``confidence``, ``threshold``, ``hysteresis``, ``audit_every``
    and ``tighten_on_audit``."""
    return {
        "fallback": Option("str", labeller, "DNS provider called when the ensemble is unsure", choices=fallbacks),
        "tolerance": Option("float", tolerance[0], tolerance[1], min=0.0, min_exclusive=True),
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
        "tighten_on_audit": Option(
            "bool", False, "lower the threshold when an audit finds an accepted answer beyond the tolerance"
        ),
    }


def monitor_options(spec: LearnedTerm) -> Table:
    """Options of ``[terms.<term>] provider = "monitor"``: the ensemble's, the fallback among the term's DNS
    providers registered so far, the metric among the spec's, and the monitor's policy."""
    fallbacks = spec.fallbacks or tuple(p for p in PROVIDERS.get(spec.term, {}) if p not in ("nn", "monitor"))
    policy = policy_options(spec.labeller, fallbacks, spec.tolerance)
    metric_doc = "what tolerance measures: " + "; ".join(f"{k} = {m.doc}" for k, m in spec.metrics.items())
    return Table(
        {
            **NN_OPTIONS.entries,
            "fallback": policy["fallback"],
            "metric": Option("str", spec.default_metric, metric_doc, choices=tuple(spec.metrics)),
            **{k: policy[k] for k in ("tolerance", "confidence", "threshold", "hysteresis", "audit_every")},
            "capture": Option("str", None, "HDF5 file collecting every DNS evaluation as a training sample"),
            "capture_every": Option("int", 1, "keep every this many DNS evaluations in the capture file", min=1),
            "capture_block": Option(
                "int", 1000, "steps per capture group (train splits by group; 0: the whole run is one group)", min=0
            ),
            "tighten_on_audit": policy["tighten_on_audit"],
        }
    )


def build_monitor(spec: LearnedTerm, ctx: Context, options: Mapping[str, Any]) -> Monitor:
    """The monitored provider of a learned term: its ensemble, its fallback DNS provider and the policy."""
    nn = EnsembleProvider(spec, ctx, options)
    dns = get_provider(spec.term, options.get("fallback", spec.labeller)).build(ctx, {})
    tol, conf = float(options.get("tolerance", spec.tolerance[0])), float(options.get("confidence", 0.95))
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
        capture = CaptureFile(  # an output: relative to the cwd
            Path(options["capture"]),
            nn.scale,
            nn.dx,
            spec_text=provenance,
            block_steps=block,
            every=every,
            inputs=spec.inputs,
            target=spec.learnable.layout.target,
            scale_name=spec.learnable.layout.scale,
        )
    log.info(
        "monitor on %r: threshold %s (metric %s, tolerance %g, confidence %g)",
        spec.term,
        threshold,
        nn.metric,
        tol,
        conf,
    )
    return monitored(nn, dns, threshold, options, tol, conf, capture=capture)


def monitored(
    nn: EnsembleTerm,
    dns: Any,
    threshold: float | list[float],
    options: Mapping[str, Any],
    tolerance: float,
    confidence: float,
    *,
    capture: Any = None,
    cls: type[Monitor] = Monitor,
) -> Monitor:
    """A :class:`Monitor` (or subclass ``cls``) of an ensemble ``nn`` (any :class:`EnsembleTerm`) and its DNS
    fallback with the policy options of :func:`policy_options` (hysteresis, audit_every, tighten_on_audit)."""
    return cls(
        nn,
        dns,
        threshold,
        hysteresis=int(options.get("hysteresis", 0)),
        audit_every=int(options.get("audit_every", 0)),
        capture=capture,
        tolerance=tolerance,
        confidence=confidence,
        tighten_on_audit=bool(options.get("tighten_on_audit", False)),
    )


def register_learned_term(spec: LearnedTerm) -> LearnedTerm:
    """Register ``spec`` and its providers ``nn`` and ``monitor`` (call after the term's DNS providers)."""
    LEARNED[spec.term] = spec

    @register_provider(spec.term, "nn", options=NN_OPTIONS, doc=spec.nn_doc)
    def _build_nn(ctx: Context, options: Mapping[str, Any]) -> EnsembleProvider:
        return EnsembleProvider(spec, ctx, options)

    @register_provider(spec.term, "monitor", options=monitor_options(spec), doc=spec.monitor_doc)
    def _build_monitor(ctx: Context, options: Mapping[str, Any]) -> Monitor:
        return build_monitor(spec, ctx, options)

    return spec


# ---------------------------------------------------------------------------------------------------- training


def _learnable_of(term: Any, key: str, file: str | None) -> Learnable:
    if term not in LEARNED:
        raise ConfigError(f"unknown learned term {term!r}; allowed: {', '.join(map(repr, LEARNED))}", key, file)
    return LEARNED[term].learnable


def _train(
    spec: Mapping[str, Any], data: list[Path], out: Path, *, progress: bool = False, spec_file: str | None = None
) -> Any:
    from hybrid.models.training import train_ensemble

    model = spec.get("model")
    term = model.get("term", "elastic") if isinstance(model, Mapping) else "elastic"
    learnable = _learnable_of(term, "model.term", spec_file)
    return train_ensemble(spec, data, out, learnable=learnable, progress=progress, spec_file=spec_file)


def _recalibrate(model_dir: Path, data: list[Path], changes: Mapping[str, Any], out: Path | None) -> Any:
    from hybrid.models.card import read_card
    from hybrid.models.training import recalibrate_ensemble

    card = read_card(model_dir)
    learnable = _learnable_of(card.get("term"), "term", str(card.get("path")))
    return recalibrate_ensemble(model_dir, data, changes, out, learnable=learnable)


def _describe(directory: Path, card: Mapping[str, Any]) -> list[str]:
    """``hybrid info DIR`` of a learned term's ensemble."""
    cal = card.get("calibration", {})
    lines = [
        f"{directory}: NN ensemble for term {card.get('term')!r} ({card.get('format')})",
        f"  architecture: {card.get('architecture', {})}",
        f"  features: {card.get('features')} {card.get('feature_channels')}; target: {card.get('target')}",
        f"  data: {card.get('data', {}).get('path')}",
    ]
    for split, m in card.get("metrics", {}).items():
        if isinstance(m, dict) and isinstance(m.get("rmse"), int | float):
            law = m.get("rmse_linear")
            base = f" (baseline law {law:.4g})" if isinstance(law, int | float) else ""
            lines.append(f"  {split}: n = {m.get('n')}, RMSE {m['rmse']:.4g}{base}")
    term = LEARNED.get(str(card.get("term")))
    metrics = list(term.metrics) if term is not None else [next(iter(cal), "default")]
    for i, metric in enumerate(metrics):
        lines += calibration_lines(metric, cal if i == 0 else cal.get(metric) or {})
    for family, r in (cal.get("test_by_input_stratum") or {}).items():
        lines.append(f"    test input stratum {family}: n = {r.get('n')}, coverage {r.get('coverage')}")
    return lines


register_train_kind(
    TrainKind(
        "ensemble",
        detect_spec=lambda spec: True,  # the fallback: every spec no other kind claims
        detect_card=lambda card: True,
        fallback=True,
        train=_train,
        describe=_describe,
        calibrate=_recalibrate,
        doc="an ensemble of a learned term ([model] term = NAME, default 'elastic')",
    )
)
