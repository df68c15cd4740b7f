"""Whole-model NN surrogate steppers: jump ``jump`` DNS steps at once, with DNS fallback per window.

Selected in a case file by the ``[stepper]`` table (the DNS stepper is ``[time] integrator`` and ``dt``)::

    [stepper]
    provider = "monitor"      # "dns" (default): plain DNS | "nn": always the network | "monitor": below
    weights = "shipped"       # ensemble directory (weights.pt + model_card.json) or "shipped"
    tolerance = 0.1           # accepted error of a window (see below), confidence = 0.95, threshold = (calibrated)
    hysteresis = 0            # windows to stay on DNS after a fallback
    audit_every = 0           # run the DNS window anyway every this many windows and log the NN's true error

One call of a surrogate stepper advances one *window* of ``jump + relax`` DNS steps (``jump`` and ``dt`` come from
the model card: the network was trained on pairs of DNS frames ``jump`` steps of that ``dt`` apart; ``relax``,
``stepper.relax`` or the card's ``inference.relax``, is a few DNS steps after every NN jump):

1. the ensemble (:mod:`hybrid.models.jump_net`) predicts the evolved field after the window with every member (from
   the field and, for networks with the "rate" feature, the model's own right-hand side at the start of the window,
   one DNS-rate evaluation per window) and the uncertainty indicator u the card was calibrated for
   (``inference.indicator``): "spread", u = ‖std_k Δη‖ / ‖mean_k Δη‖, the ensemble spread relative to the predicted
   change, or "rate_residual", u = τ‖∂η/∂t(η_NN)‖ / ‖η_NN − η_start‖, the model's right-hand side at the answer in
   units of the predicted change (one more DNS-rate evaluation). The shipped grain-growth ensemble uses the rate
   residual: its heads share a backbone, and their spread does not track the window error (Spearman 0.03 on the
   card's test windows against 0.70 for the residual);
   Before the indicator, a topology check (``stepper.topology_check``, on by default; models with ``jump_events``,
   e.g. grain growth) sets u = inf for a jump that makes a grain vanish, or two grains merge, that are larger than
   twice the area an isolated circular grain loses over the jump (4πLκτ): no DNS window of that length can do it.
   The L2 indicators weigh such an event by its few points only (on the shipped 512² case one accepted jump merged
   a grain of 1120 points, audit error 0.88, under the threshold);
2. ``monitor``: if u <= τ (calibrated split-conformally on held-out DNS windows for the case's ``tolerance`` and
   ``confidence``, see :mod:`hybrid.models.calibration`) the NN answer is taken; otherwise the window is re-run
   with ``jump + relax`` DNS steps (with the model's ``after_step`` hooks between them, exactly as a DNS run does);
   ``nn``: the NN answer is always taken;
3. an accepted NN jump is followed by ``relax`` DNS steps. They cost ``relax``/``jump`` of a DNS window and are what
   keeps repeated jumps on the physical manifold: an NN jump leaves small high-wavenumber errors in the interface
   profiles (holes where every η_q dips), which the next jump, fed the DNS rate of that state, would amplify; the
   Allen–Cahn dynamics damp such errors within a few steps (profile relaxation rate ≈ L·f'' ≈ 2 per time unit,
   faster at high wavenumber). Measured on the held-out 128² trajectory: without relaxation min_x max_q η falls from
   0.43 (triple junctions) to 0 within two jumps and spurious grains appear by the thousand; with 6 DNS steps it
   stays ≥ 0.40 over 8 jumps and the grain count follows the DNS.

The error of a jump (audits, calibration) is e = ‖η_NN − η_DNS‖ / ‖η_DNS − η_start‖ (L2 over the grid and the
order parameters), the error relative to the change over the window: independent of the domain size and of Q, and
1 for a surrogate that changes nothing (:func:`hybrid.models.jump_net.window_error`). Training pairs are DNS
windows without the ``after_step`` hooks (no index reassignment inside a window, as in an NN jump). In a run both
windows have the hooks, which re-index grains at different steps in the two; an audit therefore first moves the DNS
window's grains to the indices the NN window gave them (``equation.align_indices``, for grain growth
:func:`hybrid.solvers.graingrowth.align_reassigned`), so that a re-indexed grain does not read as an error of twice
its η (before this, such audits on the shipped 512² case read 0.59–0.98 beside 0.01–0.10 for the others).

Calibration (in training) and audits (in a run) both measure the whole window: NN jump + relaxation against
``jump + relax`` DNS steps, i.e. what the run uses (training advances the stored DNS frame and the NN jump by the
``relax`` steps of the data's DNS before comparing them).

Every window is logged to ``/monitor/stepper`` (step = first step of the window, time, uncertainty, threshold,
source "nn"/"dns", audit_error), so the output records which windows were NN. Time advances by ``jump + relax``
additions of ``dt`` whichever way a window went, so frame times are identical to a DNS run's. The stepper's state (the
monitor's hysteresis and counters) is checkpointed; decisions depend only on the state, so restarts are exact.

``time.steps``, ``output.every`` and ``output.checkpoint_every`` must be multiples of ``jump`` (checked when the
case is loaded) so that frames and checkpoints fall on window boundaries.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hybrid.core.backend import resolve_device
from hybrid.core.config import ConfigError, Option, Table
from hybrid.core.equation import AfterStep
from hybrid.core.integrators import Stepper
from hybrid.core.registry import Context, register_provider
from hybrid.core.state import State
from hybrid.couplers.learned import resolve_model_dir
from hybrid.couplers.monitor import MONITOR_COLUMNS, MonitorPolicy
from hybrid.couplers.pipeline import TrainKind, calibration_lines, register_train_kind

log = logging.getLogger(__name__)

STEPPER = "stepper"
"""Pseudo-term under which stepper providers are registered (``PROVIDERS["stepper"]``)."""

SHIPPED_SURROGATES = Path(__file__).resolve().parents[1] / "models" / "weights"
"""Directory of the shipped ensembles; ``weights = "shipped"`` means ``<this>/<model>_surrogate``."""

StepperFactory = Callable[[Any, Stepper], Stepper]
"""What a stepper provider builds: (equation, DNS stepper) -> the stepper of the run."""


@runtime_checkable
class JumpEvents(Protocol):
    """A model that can tell a jump's topology changes no DNS window of its length makes (grain growth)."""

    def jump_events(self, start: Any, jumped: Any, horizon: float) -> tuple[int, int]:
        """(grains that vanished, grains that merged) between ``start`` and ``jumped`` that ``horizon`` cannot
        explain."""
        ...


@runtime_checkable
class AlignIndices(Protocol):
    """A model whose fields carry arbitrary indices (order parameters) that two windows may assign differently."""

    def align_indices(self, reference: Any, other: Any) -> Any:
        """``reference`` with its indices moved to match ``other``'s."""
        ...


class JumpEnsemble:
    """A trained jump ensemble bound to a case: predicts one window of the evolved field with its uncertainty.

    Args:
        ctx: the case context (grid, backend, model parameters).
        equation: the model (its ``rhs`` gives the "rate" input channel).
        weights: ensemble directory (``model_card.json`` + ``weights.pt``).
        dt: the case's DNS time step (must equal the card's).
        options: ``dtype`` (float32), ``device`` (default: the case's torch device, cpu for numpy), ``threads``,
            ``tile``, ``activity`` and ``relax`` (default: the card's inference settings).

    Raises:
        ConfigError: the card was trained for another model, field, time step, grid spacing or model parameters.
    """

    def __init__(self, ctx: Context, equation: Any, weights: Path, dt: float, options: Mapping[str, Any]) -> None:
        import torch

        from hybrid.models.card import load_ensemble
        from hybrid.models.jump_net import INDICATORS, EnsembleJumpNet2d

        device = options.get("device") or (ctx.backend.device if ctx.backend.is_torch else "cpu")
        self.device = resolve_device(device, "stepper.device")
        self.model, self.card = load_ensemble(weights, device=str(self.device), expect=EnsembleJumpNet2d)
        self.weights = weights
        if self.device.type == "cpu" and options.get("threads"):
            torch.set_num_threads(int(options["threads"]))  # process-wide torch setting
        dtypes = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
        dtype = dtypes[options.get("dtype", "float32")]
        # channels_last: the tiles' convolutions run ~1.45x faster on CPU (hybrid.models.jump_net.jump_members)
        self.model = self.model.to(dtype=dtype).eval()
        self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to takes it
        sur = self.card.get("surrogate") or {}
        self.field = str(sur.get("field", "eta"))
        self.jump = int(sur.get("jump", 0))
        inference = self.card.get("inference") or {}
        self.tile = int(options.get("tile") or inference.get("tile", 32))
        self.activity = float(options.get("activity") or inference.get("activity", 1e-3))
        relax = options.get("relax")
        self.relax = int(inference.get("relax", 0) if relax is None else relax)
        self.indicator = str(inference.get("indicator", "spread"))  # cards written before the option: the spread
        if self.indicator not in INDICATORS:
            raise ConfigError(
                f"the model card in {weights} has inference.indicator = {self.indicator!r};"
                f" allowed: {list(INDICATORS)}",
                key="stepper.weights",
            )
        self._check(ctx, sur, dt)
        self.equation = equation
        self.horizon = self.jump * dt  # time of one window
        self.calibration = self.card.get("calibration") or {}
        self.seconds = 0.0
        self.calls = 0
        self.topology_check = bool(options.get("topology_check", True))
        self.implausible = 0  # jumps refused by the topology check
        self.active_fractions: list[float] = []

    def _check(self, ctx: Context, sur: Mapping[str, Any], dt: float) -> None:
        where = f"the model card in {self.weights}"
        if self.jump < 1:
            raise ConfigError(f"{where} has no surrogate.jump: not a jump surrogate", key="stepper.weights")
        if sur.get("model") and sur["model"] != ctx.model:
            raise ConfigError(
                f"{where} is for model {sur['model']!r}, the case is {ctx.model!r}", key="stepper.weights"
            )
        if sur.get("dt") is not None and not math.isclose(float(sur["dt"]), dt, rel_tol=1e-12):
            raise ConfigError(
                f"{where} was trained on windows of {self.jump} steps of dt = {sur['dt']}; the case has dt = {dt}",
                key="time.dt",
            )
        spacing = sur.get("spacing")
        if spacing is not None and not np.allclose(spacing, ctx.grid.spacing, rtol=1e-9):
            raise ConfigError(
                f"{where} was trained at grid spacing {spacing}; the case has {list(ctx.grid.spacing)}",
                key="grid.lengths",
            )
        for name, value in (sur.get("params") or {}).items():
            have = ctx.params.get(name)
            if have is not None and not math.isclose(float(have), float(value), rel_tol=1e-12):
                raise ConfigError(
                    f"{where} was trained with model.{name} = {value}; the case has {have}", key=f"model.{name}"
                )
        ny, nx = ctx.grid.shape[::-1] if ctx.grid.ndim == 2 else (1, ctx.grid.shape[0])
        if ny % self.tile or nx % self.tile:
            raise ConfigError(
                f"the grid shape must be a multiple of the inference tile {self.tile} (stepper.tile)", key="grid.shape"
            )

    def predict(self, state: State) -> tuple[Any, float]:
        """(η after the jump on the state's backend, uncertainty indicator u of the card's ``inference.indicator``).

        "spread": u = ‖std_k Δη‖ / ‖mean_k Δη‖; "rate_residual": u = τ‖∂η/∂t(η_NN)‖ / ‖η_NN − η‖, one more
        right-hand side of the model (:mod:`hybrid.models.jump_net`).
        """
        import time

        import torch

        from hybrid.models.jump_net import jump_members, rate_residual, relative_spread

        t0 = time.perf_counter()

        def tensor(a: Any) -> Any:
            return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))

        field = state[self.field]
        eta = tensor(field)
        rate = None
        if self.model.needs_rate:
            rate = self.horizon * tensor(self.equation.rhs(state)[self.field])
        pred = jump_members(
            self.model, eta, rate=rate, tile=self.tile, activity=self.activity, spread=self.indicator == "spread"
        )
        out = state.backend.asarray(pred.mean if isinstance(field, torch.Tensor) else pred.mean.numpy())
        checks = self.topology_check and isinstance(self.equation, JumpEvents)
        vanished, merged = self.equation.jump_events(eta, pred.mean, self.horizon) if checks else (0, 0)
        if vanished or merged:
            # a topology change no DNS window of this length can make: not trusted whatever the indicator
            log.debug("step %d: the jump vanishes %d and merges %d large grains", state.step, vanished, merged)
            self.implausible += 1
            u = math.inf
        elif self.indicator == "rate_residual":
            jumped = State({**state.fields, self.field: out}, state.time, state.step, state.backend)
            u = rate_residual(tensor(self.equation.rhs(jumped)[self.field]), pred.mean, eta, self.horizon)
        else:
            assert pred.spread is not None  # asked for above
            u = relative_spread(pred.spread, pred.mean, eta)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.active_fractions.append(pred.active_fraction)
        return out, u

    error_measure = "‖η_NN − η_DNS‖ / ‖η_DNS − η_start‖"
    """What :meth:`error` and the monitor's tolerance measure (plot axes, reports)."""

    def error(self, nn_value: Any, dns_value: Any, start: Any) -> float:
        """Relative error of an NN window against the DNS window (:func:`hybrid.models.jump_net.window_error`).

        The DNS window is first aligned to the NN window's order-parameter indices when the model can
        (``equation.align_indices``, e.g. grain growth: the reassignment hook may have moved a grain to another
        index in one window and not in the other), so the error measures the field, not its labelling.
        """
        import torch

        from hybrid.core.backend import to_numpy
        from hybrid.models.jump_net import window_error

        def t(a: Any) -> Any:
            return torch.from_numpy(np.asarray(to_numpy(a), dtype=np.float64))

        if isinstance(self.equation, AlignIndices):
            dns_value = self.equation.align_indices(dns_value, nn_value)
        return window_error(t(nn_value), t(dns_value), t(start))

    def calibrated_threshold(self, tolerance: float, confidence: float) -> float:
        """Threshold of u for (tolerance, confidence) from the card's calibration pairs (-inf: always DNS)."""
        from hybrid.models.calibration import calibrate_threshold

        cal = self.calibration
        if "u" not in cal or "e" not in cal:
            raise ConfigError(
                f"the model card in {self.weights} has no calibration pairs; give stepper.threshold explicitly",
                key="stepper.tolerance",
            )
        return float(calibrate_threshold(np.asarray(cal["u"]), np.asarray(cal["e"]), tolerance, confidence))


class SurrogateStepper(Stepper):
    """Advances one window of ``jump`` DNS steps per call: the NN jump, or (fallback/audit) the DNS window.

    Args:
        equation: the model (its ``after_step`` hook runs between the DNS steps of a window).
        dns: the DNS stepper (one step of dt per call).
        nn: the jump ensemble.
        policy: the monitor's decision rule; None: always take the NN answer (provider ``nn``).
    """

    name = "surrogate"
    log_group = "monitor"
    """Its window log is ``/monitor/stepper`` (:class:`hybrid.core.terms.DecisionLog`)."""
    log_columns = MONITOR_COLUMNS

    def __init__(self, equation: Any, dns: Stepper, nn: JumpEnsemble, policy: MonitorPolicy | None = None) -> None:
        super().__init__(equation, dns.dt)
        self.dns = dns
        self.nn = nn
        self.policy = policy
        self.steps_per_call = nn.jump + nn.relax
        self.nn_windows = 0
        self.dns_windows = 0

    def advance(self, state: State) -> State:
        if self.policy is not None and not self.policy.can_accept(state.step, self.steps_per_call):
            # no threshold qualifies (−inf): every window is DNS; skip the network, log u = NaN
            self.policy.decide(state.step, math.nan, self.steps_per_call)
            self.policy.record(state.step, state.time, math.nan, True)
            self.dns_windows += 1
            return self.dns_window(state)
        new_field, u = self.nn.predict(state)
        if self.policy is None:
            use_dns, audit = False, False
        else:
            use_dns, audit = self.policy.decide(state.step, u, self.steps_per_call)
        audit_error = math.nan
        nn_state = self.nn_window(state, new_field) if (not use_dns or audit) else None
        if use_dns or audit:
            dns_state = self.dns_window(state)
            if audit and nn_state is not None:  # the whole NN window (jump + relax) against the DNS window
                audit_error = self.nn.error(nn_state[self.nn.field], dns_state[self.nn.field], state[self.nn.field])
        if self.policy is not None:
            self.policy.record(state.step, state.time, u, use_dns, audit_error)
        if use_dns:
            self.dns_windows += 1
            return dns_state
        self.nn_windows += 1
        assert nn_state is not None
        return nn_state

    def nn_window(self, state: State, jumped: Any) -> State:
        """The window from an NN jump: ``jumped`` (the field ``jump`` steps on), then ``relax`` DNS steps."""
        t = state.time
        for _ in range(self.nn.jump):  # the same floating-point sum as the DNS steps
            t += self.dt
        fields = dict(state.fields)
        fields[self.nn.field] = jumped
        return self.dns_window(State(fields, t, state.step + self.nn.jump, state.backend), self.nn.relax, first=False)

    def dns_window(self, state: State, steps: int | None = None, *, first: bool = True) -> State:
        """``steps`` (default: a whole window) DNS steps, with the model's after_step hook between them.

        The caller applies the hook after the last step; ``first = False`` also applies it before the first (the
        steps continue a window, as the relaxation after an NN jump does).
        """
        post = self.equation.after_step if isinstance(self.equation, AfterStep) else None
        n = self.steps_per_call if steps is None else steps
        for i in range(n):
            if post is not None and (i > 0 or not first):
                state = post(state)
            state = self.dns(state)
        return state

    # -- reporting (the Simulation writes take_log_rows() to /monitor/stepper and summary() as an attribute)
    @property
    def nn_fraction(self) -> float:
        """Fraction of windows answered by the NN."""
        n = self.nn_windows + self.dns_windows
        return self.nn_windows / n if n else 0.0

    def progress_note(self) -> str:
        """The share of windows the network answered, for the progress bar."""
        return f"nn {100 * self.nn_fraction:.0f}%"

    def take_log_rows(self) -> dict[str, np.ndarray]:
        return self.policy.take_log_rows() if self.policy is not None else {}

    def summary(self) -> dict[str, Any]:
        out = self.policy.summary() if self.policy is not None else {}
        out.update(
            {
                "jump": self.nn.jump,
                "relax": self.nn.relax,
                "nn_windows": self.nn_windows,
                "dns_windows": self.dns_windows,
                "nn_fraction": self.nn_fraction,
                "nn_seconds": self.nn.seconds,
                "dns_seconds": self.dns.seconds,
                "mean_active_fraction": float(np.mean(self.nn.active_fractions)) if self.nn.active_fractions else 0.0,
                "implausible_jumps": self.nn.implausible,
            }
        )
        return out

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), **self.summary()}

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nn_windows": self.nn_windows, "dns_windows": self.dns_windows}
        if self.policy is not None:
            out["policy"] = self.policy.policy_state()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.nn_windows = int(state["nn_windows"])
        self.dns_windows = int(state["dns_windows"])
        if self.policy is not None and "policy" in state:
            self.policy.load_policy_state(state["policy"])


# ------------------------------------------------------------------------------------------------ registration


def resolve_surrogate_weights(ctx: Context, weights: str) -> Path:
    """``"shipped"`` -> the ensemble shipped for the case's model; otherwise a directory relative to the case."""
    shipped = SHIPPED_SURROGATES / f"{ctx.model}_surrogate"
    missing = f"no surrogate ships for model {ctx.model!r}: train one, see docs/training.md"
    return resolve_model_dir(ctx, weights, shipped, "stepper.weights", missing)


NN_OPTIONS = Table(
    {
        "weights": Option("str", "shipped", "jump ensemble directory (weights.pt + model_card.json) or 'shipped'"),
        "dtype": Option(
            "str",
            "float32",
            "inference precision (the card's calibration: float32; bfloat16: the network only, its answers added to "
            "a float32 state, fast only with bfloat16 hardware)",
            choices=("float32", "float64", "bfloat16"),
        ),
        "device": Option("str", None, "torch device for inference (default: the case's device, cpu for numpy)"),
        "threads": Option("int", 0, "torch CPU threads (process-wide; 0: leave torch's setting)", min=0),
        "tile": Option("int", None, "inference tile edge [grid points] (default: the card's)", min=1),
        "activity": Option("float", None, "skip tiles where η varies by less than this (default: the card's)", min=0.0),
        "relax": Option("int", None, "DNS steps after each NN jump (default: the card's)", min=0),
        "topology_check": Option(
            "bool",
            True,
            "refuse (u = inf) a jump that vanishes or merges grains larger than 4πLκτ (models with jump_events)",
        ),
    }
)

MONITOR_OPTIONS = Table(
    {
        **NN_OPTIONS.entries,
        "tolerance": Option(
            "float",
            0.1,
            "accepted error of a window: ‖η_NN − η_DNS‖ / ‖η_DNS − η_start‖",
            min=0.0,
            min_exclusive=True,
        ),
        "confidence": Option(
            "float",
            0.95,
            "fraction of accepted NN windows within the tolerance",
            min=0.0,
            max=1.0,
            min_exclusive=True,
            max_exclusive=True,
        ),
        "threshold": Option(
            "float",
            None,
            "threshold of the card's uncertainty indicator (overrides the calibration; inf: every window from the NN)",
            min=0.0,
            finite=False,
        ),
        "hysteresis": Option("int", 0, "windows to stay on DNS after a fallback", min=0),
        "audit_every": Option(
            "int", 0, "run the DNS window too every this many windows; log the error (0: never)", min=0
        ),
        "tighten_on_audit": Option(
            "bool", False, "lower the threshold when an audit finds an accepted window beyond the tolerance"
        ),
    }
)


@register_provider(STEPPER, "dns", options=Table({}), doc="the DNS stepper of [time] (integrator, dt)")
def _build_dns(ctx: Context, options: Mapping[str, Any]) -> StepperFactory:
    return lambda equation, dns: dns


@register_provider(
    STEPPER,
    "nn",
    options=NN_OPTIONS,
    doc="jump ensemble mean for every window (float32 inference)",
    step_quantum=lambda ctx, options: window_of(options, ctx),
)
def _build_nn(ctx: Context, options: Mapping[str, Any]) -> StepperFactory:
    weights = resolve_surrogate_weights(ctx, options.get("weights", "shipped"))

    def build(equation: Any, dns: Stepper) -> Stepper:
        return SurrogateStepper(equation, dns, JumpEnsemble(ctx, equation, weights, dns.dt, options))

    return build


@register_provider(
    STEPPER,
    "monitor",
    options=MONITOR_OPTIONS,
    doc="jump ensemble; a window whose uncertainty (the card's indicator) exceeds the calibrated threshold is re-run"
    " with DNS",
    step_quantum=lambda ctx, options: window_of(options, ctx),
)
def _build_monitor(ctx: Context, options: Mapping[str, Any]) -> StepperFactory:
    weights = resolve_surrogate_weights(ctx, options.get("weights", "shipped"))

    def build(equation: Any, dns: Stepper) -> Stepper:
        nn = JumpEnsemble(ctx, equation, weights, dns.dt, options)
        tol, conf = float(options.get("tolerance", 0.1)), float(options.get("confidence", 0.95))
        threshold = options.get("threshold")
        if threshold is None:
            threshold = nn.calibrated_threshold(tol, conf)
        log.info("surrogate monitor: jump %d steps, threshold %.4g (tolerance %g, confidence %g)", nn.jump, threshold,
                 tol, conf)  # fmt: skip
        policy = MonitorPolicy(
            float(threshold),
            hysteresis=int(options.get("hysteresis", 0)),
            audit_every=int(options.get("audit_every", 0)),
            tolerance=tol,
            confidence=conf,
            tighten_on_audit=bool(options.get("tighten_on_audit", False)),
        )
        return SurrogateStepper(equation, dns, nn, policy)

    return build


def window_of(factory_options: Mapping[str, Any], ctx: Context) -> int:
    """Window length [steps] of a surrogate stepper's options (its step quantum): the card's jump + relax."""
    from hybrid.models.card import read_card

    card = read_card(resolve_surrogate_weights(ctx, factory_options.get("weights", "shipped")))
    relax = factory_options.get("relax")
    if relax is None:
        relax = (card.get("inference") or {}).get("relax", 0)
    return int((card.get("surrogate") or {}).get("jump", 1)) + int(relax)


# ---------------------------------------------------------------------------------------------------- training


def _is_jump_spec(spec: Mapping[str, Any]) -> bool:
    from hybrid.models.jump_training import is_jump_spec

    return is_jump_spec(spec)


def _train_jump(
    spec: Mapping[str, Any], data: list[Path], out: Path, *, progress: bool = False, spec_file: str | None = None
) -> Any:
    from hybrid.couplers.trajectories import rate_function
    from hybrid.models.jump_training import train_jump_ensemble

    if len(data) != 1:
        raise ConfigError("a jump surrogate trains on one trajectory file", key="--data", file=spec_file)
    return train_jump_ensemble(spec, data[0], out, progress=progress, spec_file=spec_file, rate=rate_function(data[0]))


def _describe_jump(directory: Path, card: Mapping[str, Any]) -> list[str]:
    """``hybrid info DIR`` of a jump surrogate."""
    sur, data, inf = card.get("surrogate", {}), card.get("data", {}), card.get("inference", {})
    lines = [
        f"{directory}: jump surrogate for model {sur.get('model')!r}, field {sur.get('field')!r} "
        f"({card.get('format')})",
        f"  architecture: {card.get('architecture', {})}",
        f"  window: NN jump of {sur.get('jump')} steps of dt = {sur.get('dt')} + {inf.get('relax', 0)} DNS "
        "steps; "
        f"tile {inf.get('tile')}, spacing {sur.get('spacing')}, params {sur.get('params')}",
        f"  data: {data.get('file')} ({data.get('trajectories')} trajectories, split {data.get('split')})",
    ]
    for split, m in card.get("metrics", {}).items():
        if isinstance(m, dict) and "error_rms" in m:
            lines.append(
                f"  {split}: {m.get('windows')} windows, window error RMS {m['error_rms']:.4g} "
                f"(max {m.get('error_max', 0):.4g}; unchanged state {m.get('unchanged_error_rms', 0):.4g})"
            )
    return lines + calibration_lines("window error", card.get("calibration", {}))


register_train_kind(
    TrainKind(
        "jump",
        detect_spec=lambda spec: _is_jump_spec(spec),
        detect_card=lambda card: "surrogate" in card,
        train=_train_jump,
        describe=_describe_jump,
        doc="a whole-model jump surrogate ([model] architecture = 'jump2d')",
    )
)
