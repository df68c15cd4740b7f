"""Ensemble-uncertainty monitor: NN answers where the ensemble is confident, DNS where it is not.

The monitor is itself a Term. Each call it asks the ensemble provider for its mean and its uncertainty indicator u
(normalised ensemble spread), compares u with a threshold τ and returns either the NN mean or the DNS value.

- τ comes from split-conformal calibration on held-out data (stored with the weights): among predictions with
  u ≤ τ, at most 1 − confidence exceed the error ``tolerance`` (see :mod:`hybrid.models.calibration`); the case
  states ``tolerance`` and ``confidence`` and τ is recomputed for them from the stored calibration pairs; an
  explicit ``threshold`` overrides it.
- strata: an ensemble calibrated per stratum of its input (Mondrian, e.g. bins of max (dh/dx)^2) reports each
  answer's stratum (:attr:`EnsemblePrediction.stratum`) and the monitor compares u with that stratum's τ
  (``threshold`` is then one value per stratum); audit feedback lowers only that stratum's τ.
- hysteresis: after a fallback, stay on DNS for ``hysteresis`` further steps.
- audits: every ``audit_every`` steps the DNS is called anyway and the true error of the NN answer is logged
  beside the predicted uncertainty (the data for checking the calibration in production).
- audit feedback (``tighten_on_audit``): the calibration promises coverage on average over the calibration data, not
  in every regime a run reaches. When an audit finds an answer the threshold accepts (u ≤ τ) with an error above
  the tolerance, τ is lowered to u · tolerance / e (the spread at which that answer, if its error scales with the
  spread, would have met the tolerance) and stays there for the rest of the run (checkpointed; logged per
  decision in the ``threshold`` column).
- active learning: with ``capture`` set, every DNS evaluation is appended as a training sample to an HDF5 file in
  the dataset format, which ``hybrid train --data`` consumes to refine the ensemble.

Every decision is logged as a row (step, time, uncertainty, threshold, source "nn"/"dns", audit_error (NaN if no
audit)) that the Simulation writes to ``/monitor/<term>``; ``summary()`` condenses them. Decisions depend only
on the state and the step index, and the hysteresis/row state is checkpointed, so restarts stay exact.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hybrid.core.backend import Array
from hybrid.core.state import State
from hybrid.core.terms import TermProvider

log = logging.getLogger(__name__)

MONITOR_COLUMNS: dict[str, str] = {
    "step": "int64",
    "time": "float64",
    "uncertainty": "float64",
    "threshold": "float64",
    "source": "str",
    "audit_error": "float64",
}
"""Columns of every decision log ``/monitor/<term>`` (and ``/monitor/stepper``) and their stored types."""


@dataclass
class EnsemblePrediction:
    """One ensemble evaluation.

    Attributes:
        mean: ensemble-mean term value, on the state's backend, in the term's units.
        uncertainty: scalar indicator u (normalised spread, same units as the tolerance).
        stratum: index of the calibration stratum of the input (0 when the ensemble has one threshold).
    """

    mean: Array
    uncertainty: float
    stratum: int = 0


class EnsembleTerm(Protocol):
    """What the monitor needs from an NN ensemble provider."""

    name: str

    def predict(self, state: State) -> EnsemblePrediction: ...

    def error(self, state: State, nn_value: Array, dns_value: Array) -> float:
        """Error of an NN answer against DNS, in the units of the tolerance (e.g. RMSE / ρ0); an ensemble may name
        that unit in an ``error_measure`` string attribute (plot axes, ``hybrid compare`` reports)."""
        ...

    def calibrated_threshold(self, tolerance: float, confidence: float) -> float | list[float]:
        """τ for (tolerance, confidence): one float, or one per input stratum."""
        ...


class Capture(Protocol):
    """Sink for DNS evaluations (active learning)."""

    def add(self, state: State, dns_value: Array) -> None: ...

    def close(self) -> None: ...


class MonitorPolicy:
    """The decision rule, its log and its counters, shared by the term :class:`Monitor` and surrogate steppers.

    A *decision* covers ``span`` steps (1 for a term call, the jump length for a surrogate stepper); hysteresis and
    audits count decisions.

    Args:
        threshold: τ in the units of the uncertainty indicator (accept the NN when u <= τ); a sequence gives one τ
            per input stratum (index = :attr:`EnsemblePrediction.stratum`).
        hysteresis: decisions to stay on DNS after a fallback (0: decide afresh every time).
        audit_every: call DNS every this many decisions to record the NN's true error (0: never).
        tolerance, confidence: what τ was calibrated for (reported in the summary).
        tighten_on_audit: lower τ when an audit finds an accepted answer beyond the tolerance (module docstring).
    """

    log_group = "monitor"
    """The results group of its decision log: ``/monitor/<term>`` (:class:`hybrid.core.terms.DecisionLog`)."""
    log_columns = MONITOR_COLUMNS

    def __init__(
        self,
        threshold: float | Sequence[float],
        *,
        hysteresis: int = 0,
        audit_every: int = 0,
        tolerance: float = math.nan,
        confidence: float = math.nan,
        tighten_on_audit: bool = False,
    ) -> None:
        values: list[Any] = [threshold] if np.ndim(threshold) == 0 else list(threshold)  # type: ignore[arg-type]
        if not values:
            raise ValueError("the monitor needs at least one threshold")
        self.thresholds = [-math.inf if v is None else float(v) for v in values]
        self.calibrated_thresholds = list(self.thresholds)
        self.tighten_on_audit = bool(tighten_on_audit)
        self.tightenings = 0
        self.tolerance = tolerance
        self.confidence = confidence
        self.hysteresis = int(hysteresis)
        self.audit_every = int(audit_every)
        self.hold_until = -1  # stay on DNS while step < hold_until
        self.decisions = 0
        self.nn_calls = 0
        self.dns_calls = 0
        self.audits = 0
        self.audit_errors: list[float] = []
        self.audit_uncertainties: list[float] = []
        self.audit_thresholds: list[float] = []
        self._rows: dict[str, list[Any]] = _empty_rows()

    @property
    def threshold(self) -> float:
        """τ of a single-stratum monitor; with strata the largest τ (accept the NN in some stratum iff > −inf)."""
        return max(self.thresholds)

    @property
    def calibrated_threshold(self) -> float:
        """:attr:`threshold` as calibrated, before any audit feedback."""
        return max(self.calibrated_thresholds)

    def _index(self, stratum: int) -> int:
        """Index into :attr:`thresholds` of an input stratum (a single threshold serves every stratum)."""
        if len(self.thresholds) == 1:
            return 0
        if not 0 <= stratum < len(self.thresholds):
            raise ValueError(f"input stratum {stratum} has no threshold (the monitor has {len(self.thresholds)})")
        return stratum

    def threshold_of(self, stratum: int) -> float:
        """τ of an input stratum (a single threshold, e.g. an explicit ``threshold`` option, serves every one)."""
        return self.thresholds[self._index(stratum)]

    def can_accept(self, step: int, span: int = 1) -> bool:
        """False when the decision at ``step`` is DNS whatever the NN says and no audit is due (threshold −inf:
        no calibrated threshold exists for the tolerance and confidence), so the NN need not be evaluated."""
        audit = self.audit_every > 0 and (step // span) % self.audit_every == 0
        return self.threshold > -math.inf or audit

    def decide(self, step: int, u: float, span: int = 1, stratum: int = 0) -> tuple[bool, bool]:
        """(use_dns, audit) for the decision starting at ``step`` with uncertainty ``u`` of an input in
        ``stratum``; updates the hysteresis."""
        confident = u <= self.threshold_of(stratum) and math.isfinite(u)
        use_dns = (not confident) or step < self.hold_until
        audit = self.audit_every > 0 and (step // span) % self.audit_every == 0
        if not confident:
            self.hold_until = step + span * (1 + self.hysteresis)
        return use_dns, audit

    def record(
        self, step: int, t: float, u: float, use_dns: bool, audit_error: float = math.nan, stratum: int = 0
    ) -> None:
        """Count and log one decision (``audit_error``: NaN when no audit; the logged τ is ``stratum``'s)."""
        tau = self.threshold_of(stratum)
        self.decisions += 1
        if use_dns:
            self.dns_calls += 1
        else:
            self.nn_calls += 1
        if not math.isnan(audit_error):
            self.audits += 1
            self.audit_errors.append(audit_error)
            self.audit_uncertainties.append(u)
            self.audit_thresholds.append(tau)
            self._feedback(u, audit_error, stratum)
        r = self._rows
        r["step"].append(step)
        r["time"].append(t)
        r["uncertainty"].append(u)
        r["threshold"].append(tau)
        r["source"].append("dns" if use_dns else "nn")
        r["audit_error"].append(audit_error)

    def _feedback(self, u: float, audit_error: float, stratum: int = 0) -> None:
        """Audit feedback: an accepted answer (u <= τ) beyond the tolerance lowers its stratum's τ to
        u · tolerance / e."""
        index = self._index(stratum)
        tau = self.thresholds[index]
        if not (self.tighten_on_audit and math.isfinite(self.tolerance) and u <= tau):
            return
        if audit_error > self.tolerance:
            new = u * self.tolerance / audit_error
            log.warning(
                "audit: accepted answer with error %.4g > tolerance %g at uncertainty %.4g; threshold %.4g -> %.4g"
                "%s", audit_error, self.tolerance, u, tau, new,
                f" (input stratum {stratum})" if len(self.thresholds) > 1 else "",
            )  # fmt: skip
            self.thresholds[index] = new
            self.tightenings += 1

    @property
    def nn_fraction(self) -> float:
        """Fraction of decisions answered by the NN."""
        return self.nn_calls / self.decisions if self.decisions else 0.0

    def progress_note(self) -> str:
        """The network's share of the decisions so far, for the progress bar."""
        return f"nn {100 * self.nn_fraction:.0f}%"

    def take_log_rows(self) -> dict[str, np.ndarray]:
        """Rows logged since the last call (the Simulation appends them to /monitor/<term>)."""
        rows = self._rows
        self._rows = _empty_rows()
        return {
            "step": np.asarray(rows["step"], dtype=np.int64),
            "time": np.asarray(rows["time"], dtype=np.float64),
            "uncertainty": np.asarray(rows["uncertainty"], dtype=np.float64),
            "threshold": np.asarray(rows["threshold"], dtype=np.float64),
            "source": np.asarray(rows["source"], dtype=str),
            "audit_error": np.asarray(rows["audit_error"], dtype=np.float64),
        }

    def summary(self) -> dict[str, Any]:
        """Counts and audit statistics of the run so far."""
        out: dict[str, Any] = {
            "calls": self.decisions,
            "nn_calls": self.nn_calls,
            "dns_calls": self.dns_calls,
            "nn_fraction": self.nn_fraction,
            "threshold": self.threshold,
            "tolerance": self.tolerance,
            "confidence": self.confidence,
            "audits": self.audits,
        }
        if len(self.thresholds) > 1:
            out["thresholds"] = list(self.thresholds)
        if self.tighten_on_audit:
            out["calibrated_threshold"] = self.calibrated_threshold
            if len(self.thresholds) > 1:
                out["calibrated_thresholds"] = list(self.calibrated_thresholds)
            out["tightenings"] = self.tightenings
        if self.audit_errors:
            errs = np.asarray(self.audit_errors)
            out["audit_error_max"] = float(errs.max())
            out["audit_error_mean"] = float(errs.mean())
            if math.isfinite(self.tolerance):
                accepted = np.asarray(self.audit_uncertainties) <= np.asarray(self.audit_thresholds)
                if accepted.any():
                    out["audit_coverage_of_accepted"] = float(np.mean(errs[accepted] <= self.tolerance))
        return out

    def policy_state(self) -> dict[str, Any]:
        return {
            "hold_until": self.hold_until,
            "decisions": self.decisions,
            "nn_calls": self.nn_calls,
            "dns_calls": self.dns_calls,
            "audits": self.audits,
            "threshold": self.threshold,
            "thresholds": list(self.thresholds),
            "tightenings": self.tightenings,
            # the audits so far: the summary's audit statistics of a restarted run cover the whole run
            "audit_errors": np.asarray(self.audit_errors, dtype=np.float64),
            "audit_uncertainties": np.asarray(self.audit_uncertainties, dtype=np.float64),
            "audit_thresholds": np.asarray(self.audit_thresholds, dtype=np.float64),
        }

    def load_policy_state(self, state: dict[str, Any]) -> None:
        self.hold_until = int(state["hold_until"])
        self.nn_calls = int(state["nn_calls"])
        self.dns_calls = int(state["dns_calls"])
        self.decisions = int(state.get("decisions", self.nn_calls + self.dns_calls))
        self.audits = int(state["audits"])
        if "audit_errors" in state:
            self.audit_errors = [float(v) for v in np.asarray(state["audit_errors"], dtype=np.float64)]
            self.audit_uncertainties = [float(v) for v in np.asarray(state["audit_uncertainties"], dtype=np.float64)]
            self.audit_thresholds = [float(v) for v in np.asarray(state["audit_thresholds"], dtype=np.float64)]
        if self.tighten_on_audit and "threshold" in state:  # thresholds lowered by audit feedback before the restart
            saved = state.get("thresholds", [state["threshold"]])
            if len(saved) != len(self.thresholds):
                raise ValueError(
                    f"the checkpoint's monitor has {len(saved)} threshold(s), this one {len(self.thresholds)}: "
                    f"restart with the ensemble the run started with"
                )
            self.thresholds = [min(a, float(b)) for a, b in zip(self.thresholds, saved, strict=True)]
            self.tightenings = int(state.get("tightenings", 0))
        self._rows = _empty_rows()


class Monitor(MonitorPolicy, TermProvider):
    """A Term that serves ``nn`` answers when their uncertainty is below threshold, else ``dns`` answers.

    Args:
        nn: the ensemble provider.
        dns: the DNS provider of the same term (called on fallback and audits).
        threshold: τ in the units of the uncertainty indicator (one per input stratum: see :class:`MonitorPolicy`).
        hysteresis: steps to stay on DNS after a fallback (0: decide afresh every step).
        audit_every: call DNS every this many steps to record the NN's true error (0: never).
        capture: optional sink receiving every DNS evaluation.
        tolerance, confidence, tighten_on_audit: see :class:`MonitorPolicy`.
    """

    provider = "monitor"

    def __init__(
        self,
        nn: EnsembleTerm,
        dns: Any,
        threshold: float | Sequence[float],
        *,
        hysteresis: int = 0,
        audit_every: int = 0,
        capture: Capture | None = None,
        tolerance: float = math.nan,
        confidence: float = math.nan,
        tighten_on_audit: bool = False,
    ) -> None:
        TermProvider.__init__(self)
        MonitorPolicy.__init__(
            self,
            threshold,
            hysteresis=hysteresis,
            audit_every=audit_every,
            tolerance=tolerance,
            confidence=confidence,
            tighten_on_audit=tighten_on_audit,
        )
        self.name = nn.name
        self.inputs = getattr(nn, "inputs", ())
        self.grid_shape = getattr(nn, "grid_shape", None) or getattr(dns, "grid_shape", None)  # the input check's
        self.nn = nn
        self.dns = dns
        self.capture = capture

    # ------------------------------------------------------------------ the decision
    def evaluate(self, state: State) -> Array:
        t0 = time.perf_counter()
        pred = self.nn.predict(state)
        if isinstance(self.nn, TermProvider):  # predict bypasses the provider's own call counter and timer
            self.nn.seconds += time.perf_counter() - t0
            self.nn.calls += 1
        u, stratum = float(pred.uncertainty), int(pred.stratum)
        use_dns, audit = self.decide(state.step, u, stratum=stratum)
        audit_error = math.nan
        if use_dns or audit:
            dns_value = self.dns(state)
            if self.capture is not None:
                self.capture.add(state, dns_value)
            if audit:
                audit_error = float(self.nn.error(state, pred.mean, dns_value))
        self.record(state.step, state.time, u, use_dns, audit_error, stratum)
        return dns_value if use_dns else pred.mean

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict[str, Any]:
        out = TermProvider.stats(self)
        out.update(self.summary())
        out["calls"] = self.calls
        out["nn_seconds"] = getattr(self.nn, "seconds", 0.0)
        out["dns_seconds"] = getattr(self.dns, "seconds", 0.0)
        return out

    # ------------------------------------------------------------------ restart
    def state_dict(self) -> dict[str, Any]:
        return {**self.policy_state(), "dns": self.dns.state_dict() if hasattr(self.dns, "state_dict") else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.load_policy_state(state)
        if hasattr(self.dns, "load_state_dict"):
            self.dns.load_state_dict(state.get("dns", {}))

    def close(self) -> None:
        if self.capture is not None:
            self.capture.close()


def _empty_rows() -> dict[str, list[Any]]:
    return {k: [] for k in ("step", "time", "uncertainty", "threshold", "source", "audit_error")}


MonitorFactory = Callable[..., Monitor]
