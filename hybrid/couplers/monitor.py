"""Ensemble-uncertainty monitor: NN answers where the ensemble is confident, DNS where it is not.

The monitor is itself a Term. Each call it asks the ensemble provider for its mean and its uncertainty indicator u
(normalised ensemble spread), compares u with a threshold τ and returns either the NN mean or the DNS value.

- τ comes from split-conformal calibration on held-out data (stored with the weights): among predictions with
  u ≤ τ, at most 1 − confidence exceed the error ``tolerance`` (see :mod:`hybrid.models.calibration`); the case
  states ``tolerance`` and ``confidence`` and τ is recomputed for them from the stored calibration pairs; an
  explicit ``threshold`` overrides it.
- hysteresis: after a fallback, stay on DNS for ``hysteresis`` further steps.
- audits: every ``audit_every`` steps the DNS is called anyway and the true error of the NN answer is logged
  beside the predicted uncertainty (the data for checking the calibration in production).
- active learning: with ``capture`` set, every DNS evaluation is appended as a training sample to an HDF5 file in
  the dataset format, which ``hybrid train --data`` consumes to refine the ensemble.

Every decision is logged as a row (step, time, uncertainty, threshold, source "nn"/"dns", audit_error (NaN if no
audit)) that the Simulation writes to ``/monitor/<term>``; ``summary()`` condenses them. Decisions depend only
on the state and the step index, and the hysteresis/row state is checkpointed, so restarts stay exact.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hybrid.core.backend import Array
from hybrid.core.state import State
from hybrid.core.terms import TermProvider

log = logging.getLogger(__name__)


@dataclass
class EnsemblePrediction:
    """One ensemble evaluation.

    Attributes:
        mean: ensemble-mean term value, on the state's backend, in the term's units.
        uncertainty: scalar indicator u (normalised spread, same units as the tolerance).
    """

    mean: Array
    uncertainty: float


class EnsembleTerm(Protocol):
    """What the monitor needs from an NN ensemble provider."""

    name: str

    def predict(self, state: State) -> EnsemblePrediction: ...

    def error(self, state: State, nn_value: Array, dns_value: Array) -> float:
        """Error of an NN answer against DNS, in the units of the tolerance (e.g. RMSE / ρ0)."""
        ...

    def calibrated_threshold(self, tolerance: float, confidence: float) -> float: ...


class Capture(Protocol):
    """Sink for DNS evaluations (active learning)."""

    def add(self, state: State, dns_value: Array) -> None: ...

    def close(self) -> None: ...


class Monitor(TermProvider):
    """A Term that serves ``nn`` answers when their uncertainty is below threshold, else ``dns`` answers.

    Args:
        nn: the ensemble provider.
        dns: the DNS provider of the same term (called on fallback and audits).
        threshold: τ in the units of the uncertainty indicator.
        hysteresis: steps to stay on DNS after a fallback (0: decide afresh every step).
        audit_every: call DNS every this many steps to record the NN's true error (0: never).
        capture: optional sink receiving every DNS evaluation.
    """

    provider = "monitor"

    def __init__(
        self,
        nn: EnsembleTerm,
        dns: Any,
        threshold: float,
        *,
        hysteresis: int = 0,
        audit_every: int = 0,
        capture: Capture | None = None,
        tolerance: float = math.nan,
        confidence: float = math.nan,
    ) -> None:
        super().__init__()
        self.name = nn.name
        self.inputs = getattr(nn, "inputs", ())
        self.nn = nn
        self.dns = dns
        self.threshold = float(threshold)
        self.tolerance = tolerance
        self.confidence = confidence
        self.hysteresis = int(hysteresis)
        self.audit_every = int(audit_every)
        self.capture = capture
        self.hold_until = -1  # stay on DNS while state.step < hold_until
        self.nn_calls = 0
        self.dns_calls = 0
        self.audits = 0
        self.audit_errors: list[float] = []
        self.audit_uncertainties: list[float] = []
        self._rows: dict[str, list[Any]] = _empty_rows()
        self._total_rows = 0

    # ------------------------------------------------------------------ the decision
    def evaluate(self, state: State) -> Array:
        pred = self.nn.predict(state)
        u = float(pred.uncertainty)
        step = state.step
        confident = u <= self.threshold and math.isfinite(u)
        use_dns = (not confident) or step < self.hold_until
        audit = self.audit_every > 0 and step % self.audit_every == 0
        audit_error = math.nan
        if use_dns or audit:
            dns_value = self.dns(state)
            self.dns_calls += 1
            if self.capture is not None:
                self.capture.add(state, dns_value)
            if audit:
                audit_error = float(self.nn.error(state, pred.mean, dns_value))
                self.audits += 1
                self.audit_errors.append(audit_error)
                self.audit_uncertainties.append(u)
        if not confident:
            self.hold_until = step + 1 + self.hysteresis
        source = "dns" if use_dns else "nn"
        if not use_dns:
            self.nn_calls += 1
        self._log(step, state.time, u, source, audit_error)
        return dns_value if use_dns else pred.mean

    # ------------------------------------------------------------------ reporting
    @property
    def nn_fraction(self) -> float:
        """Fraction of calls answered by the NN."""
        return self.nn_calls / self.calls if self.calls else 0.0

    def _log(self, step: int, t: float, u: float, source: str, audit_error: float) -> None:
        r = self._rows
        r["step"].append(step)
        r["time"].append(t)
        r["uncertainty"].append(u)
        r["threshold"].append(self.threshold)
        r["source"].append(source)
        r["audit_error"].append(audit_error)
        self._total_rows += 1

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
            "calls": self.calls,
            "nn_calls": self.nn_calls,
            "dns_calls": self.dns_calls,
            "nn_fraction": self.nn_fraction,
            "threshold": self.threshold,
            "tolerance": self.tolerance,
            "confidence": self.confidence,
            "audits": self.audits,
        }
        if self.audit_errors:
            errs = np.asarray(self.audit_errors)
            out["audit_error_max"] = float(errs.max())
            out["audit_error_mean"] = float(errs.mean())
            if math.isfinite(self.tolerance):
                accepted = np.asarray(self.audit_uncertainties) <= self.threshold
                if accepted.any():
                    out["audit_coverage_of_accepted"] = float(np.mean(errs[accepted] <= self.tolerance))
        return out

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(self.summary())
        out["nn_seconds"] = getattr(self.nn, "seconds", 0.0)
        out["dns_seconds"] = getattr(self.dns, "seconds", 0.0)
        return out

    # ------------------------------------------------------------------ restart
    def state_dict(self) -> dict[str, Any]:
        return {
            "hold_until": self.hold_until,
            "nn_calls": self.nn_calls,
            "dns_calls": self.dns_calls,
            "audits": self.audits,
            "dns": self.dns.state_dict() if hasattr(self.dns, "state_dict") else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.hold_until = int(state["hold_until"])
        self.nn_calls = int(state["nn_calls"])
        self.dns_calls = int(state["dns_calls"])
        self.audits = int(state["audits"])
        if hasattr(self.dns, "load_state_dict"):
            self.dns.load_state_dict(state.get("dns", {}))
        self._rows = _empty_rows()

    def close(self) -> None:
        if self.capture is not None:
            self.capture.close()


def _empty_rows() -> dict[str, list[Any]]:
    return {k: [] for k in ("step", "time", "uncertainty", "threshold", "source", "audit_error")}


MonitorFactory = Callable[..., Monitor]
