"""Ensemble uncertainty indicator and its split-conformal calibration against an error tolerance.

For one input (one profile of N points) an ensemble of K members predicts p_k(x) (here rho/rho0, so every
quantity below is in units of rho0):

    uncertainty  u = sqrt( mean_x var_k p_k(x) )                     (RMS ensemble spread; var with ddof = 0)
    error        e = sqrt( mean_x (mean_k p_k(x) - t(x))^2 )          (RMS error of the ensemble mean)

Only the spatial variation of rho drives surface diffusion (the flux is -M d/ds of a chemical potential that
contains rho; a constant offset of rho moves nothing), and in the ripple stage that variation is ~0.1 rho0 while
in the island stage it is several rho0. The *modulation* metric therefore measures both quantities on the
mean-removed prediction, relative to the size of the modulation (``metric = "modulation"``; the default ``"rho0"``
is the pair above)::

    uncertainty  u_mod = sqrt( mean_x var_k (p_k(x) - <p_k>_x) ) / std_x(mean_k p_k)
    error        e_mod = sqrt( mean_x ((pbar - <pbar>) - (t - <t>))^2 ) / std_x(t)        (pbar = mean_k p_k)

so e_mod = 0.05 means the driving modulation of rho is wrong by 5% RMS. A ratio with a zero denominator is
+inf (a flat ensemble mean whose members vary, a flat target predicted with a modulation: never accepted),
and 0 when the numerator is 0 too (everything flat: a constant rho drives nothing, so that answer is exact).

The monitor accepts the NN answer when u <= tau. :func:`calibrate_threshold` picks tau on a held-out
calibration split so that accepted answers have e > tolerance in at most a fraction 1 - confidence of cases,
with a finite-sample correction; :func:`evaluate_threshold` reports what that tau achieves on a separate test
split.

Strata. One pooled tau promises the coverage for the pooled mix only; the rule can instead be made to hold in
every stratum of the calibration split. With strata that only exist in the data (the family of a profile) tau is
the smallest per-stratum threshold (:func:`calibrate_threshold` with ``strata``), which over-covers every stratum
but the hardest. With strata that the monitor can compute from the input itself, each stratum keeps its own
threshold (Mondrian conformal, :func:`stratum_thresholds`): :func:`slope_strata` bins a profile by its largest
squared slope max_x (dh/dx)^2 (steep island flanks vs. gentle ripples), with bin edges at quantiles of the
calibration split (:func:`quantile_edges`), and the monitor compares u with the threshold of the input's bin.

All functions take numpy arrays or torch tensors; :func:`uncertainty` and :func:`ensemble_error`
return the same kind they are given.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
import torch
from scipy.stats import beta, spearmanr

__all__ = [
    "ERRORS",
    "INDICATORS",
    "METRICS",
    "calibrate",
    "calibrate_threshold",
    "ensemble_error",
    "evaluate_threshold",
    "metric_pairs",
    "modulation_error",
    "modulation_uncertainty",
    "quantile_edges",
    "slope_strata",
    "stratum_thresholds",
    "uncertainty",
]

METRICS = ("rho0", "modulation")
"""Names of the (indicator, error) pairs: absolute in units of the target, or relative to the modulation."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def uncertainty(pred: ArrayT) -> ArrayT:
    """RMS ensemble spread of each sample.

    Args:
        pred: (..., K, N) member predictions (in units of rho0 for rho/rho0).

    Returns:
        (...) u = sqrt(mean_x var_k pred), population variance over the K members (same units as pred).
    """
    if isinstance(pred, torch.Tensor):
        return (pred - pred.mean(dim=-2, keepdim=True)).square().mean(dim=(-2, -1)).sqrt()
    return np.sqrt(np.square(pred - pred.mean(axis=-2, keepdims=True)).mean(axis=(-2, -1)))


def ensemble_error(pred: ArrayT, target: ArrayT) -> ArrayT:
    """RMS error of the ensemble mean of each sample.

    Args:
        pred: (..., K, N) member predictions.
        target: (..., N) true values (same units).

    Returns:
        (...) e = sqrt(mean_x (mean_k pred - target)^2).
    """
    if isinstance(pred, torch.Tensor):
        return (pred.mean(dim=-2) - target).square().mean(dim=-1).sqrt()
    return np.sqrt(np.square(np.mean(pred, axis=-2) - target).mean(axis=-1))


def _centred(a: Any) -> Any:
    """a minus its mean over the last axis (numpy or torch)."""
    if isinstance(a, torch.Tensor):
        return a - a.mean(dim=-1, keepdim=True)
    return a - np.mean(a, axis=-1, keepdims=True)


def _rms_ratio(num: Any, den: Any) -> Any:
    """sqrt(mean_x num^2) / sqrt(mean_x den^2) over the last axis; +inf where the denominator is 0 (0 when
    both are 0 for the error, where a flat target predicted flat is exact)."""
    if isinstance(num, torch.Tensor):
        n, d = num.square().mean(dim=-1).sqrt(), den.square().mean(dim=-1).sqrt()
        return torch.where(d > 0, n / d.clamp_min(torch.finfo(d.dtype).tiny), torch.where(n > 0, torch.inf, 0.0))
    n, d = np.sqrt(np.mean(np.square(num), axis=-1)), np.sqrt(np.mean(np.square(den), axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1.0), np.where(n > 0, np.inf, 0.0))


def modulation_uncertainty(pred: ArrayT) -> ArrayT:
    """Ensemble spread of the mean-removed members relative to the modulation of the ensemble mean.

    Args:
        pred: (..., K, N) member predictions.

    Returns:
        (...) u_mod = sqrt(mean_x var_k(p_k - <p_k>_x)) / std_x(mean_k p_k) (dimensionless; +inf for a flat
        ensemble mean of varying members, 0 when every member is flat).
    """
    c = _centred(pred)
    if isinstance(c, torch.Tensor):
        spread, mean = c - c.mean(dim=-2, keepdim=True), c.mean(dim=-2)
        # RMS over x of the per-point standard deviation = sqrt(mean over members and x of spread^2)
        return _rms_ratio(spread.square().mean(dim=-2).sqrt(), mean)
    spread, mean = c - np.mean(c, axis=-2, keepdims=True), np.mean(c, axis=-2)
    return _rms_ratio(np.sqrt(np.mean(np.square(spread), axis=-2)), mean)


def modulation_error(pred: ArrayT, target: ArrayT) -> ArrayT:
    """RMS error of the mean-removed ensemble mean relative to the modulation (spatial std) of the target.

    Args:
        pred: (..., K, N) member predictions.
        target: (..., N) true values.

    Returns:
        (...) e_mod = rms_x((pbar - <pbar>) - (t - <t>)) / std_x(t) (dimensionless; +inf for a flat target
        that is not predicted flat).
    """
    mean = pred.mean(dim=-2) if isinstance(pred, torch.Tensor) else np.mean(pred, axis=-2)
    return _rms_ratio(_centred(mean) - _centred(target), _centred(target))


INDICATORS = {"rho0": uncertainty, "modulation": modulation_uncertainty}
"""metric -> uncertainty indicator u(pred (..., K, N)) -> (...)."""
ERRORS = {"rho0": ensemble_error, "modulation": modulation_error}
"""metric -> error e(pred (..., K, N), target (..., N)) -> (...), in the units of that metric's tolerance."""


def metric_pairs(pred: ArrayT, target: ArrayT, metric: str) -> tuple[ArrayT, ArrayT]:
    """(u, e) of each sample for ``metric`` in :data:`METRICS` (:data:`INDICATORS`, :data:`ERRORS`)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return INDICATORS[metric](pred), ERRORS[metric](pred, target)


def _as_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64).reshape(-1)


def calibrate_threshold(
    u_cal: Any,
    e_cal: Any,
    tolerance: float,
    confidence: float,
    *,
    delta: float | None = None,
    strata: Any = None,
) -> float:
    """Largest uncertainty threshold whose accepted calibration samples meet the tolerance often enough.

    With ``strata`` (one label per calibration sample, e.g. its data family) the rule below must hold within
    every stratum separately and tau is the smallest of the per-stratum thresholds (Mondrian, or
    group-conditional, conformal calibration). A pooled threshold only promises the coverage for the pooled
    mix: when one stratum holds most samples with small errors (e.g. the captured profiles of a run) it can
    accept other kinds of profiles far beyond the tolerance. The per-stratum rule promises the coverage for
    each kind of profile seen in calibration, at the cost of a smaller tau.

    Accepting the samples with u <= tau, let n_acc be their number and v the number among them with
    e > tolerance (violations); alpha = 1 - confidence. tau qualifies when

    * ``delta=None`` (default, split-conformal "+1" rule): (v + 1) / (n_acc + 1) <= alpha. The violation
      rate among accepted answers is then <= alpha *on average over calibration sets* (exchangeable data);
      a single calibration set can land a binomial error above it (simulated with a smooth u-e relation:
      mean rate 0.048 for alpha = 0.05, above 0.05 in ~45% of draws; mean accept fraction ~27%).
    * ``delta`` given (high-probability version): the one-sided Clopper-Pearson upper bound at level
      1 - delta of the violation rate, from v violations in n_acc, is <= alpha; then the rate exceeds
      alpha in about delta of calibration sets at the cost of a smaller tau (same simulation, 2000
      samples, delta = 0.05: mean rate 0.034, above alpha in 4% of draws, accept fraction 24%).

    The result is the largest qualifying tau among the calibration values of u, hence at most max(u_cal):
    beyond the calibrated range nothing is known and the monitor sends such inputs to DNS. Ties in u are
    accepted or rejected together. The "+1" rule needs n_acc >= confidence/(1-confidence) accepted samples
    (19 for confidence 0.95) even without violations, so a small calibration set is conservative.

    Args:
        u_cal: (n,) uncertainty indicator of each calibration sample (:func:`uncertainty`).
        e_cal: (n,) error of each calibration sample (:func:`ensemble_error`), same units as ``tolerance``.
        tolerance: acceptable error (e.g. 0.02 = RMS error of 2% of rho0), > 0.
        confidence: required fraction of accepted samples within tolerance, in (0, 1).
        delta: None for the split-conformal rule, else the allowed probability (0, 1) that the calibrated
            threshold's violation rate exceeds 1 - confidence.
        strata: optional (n,) labels; None pools all samples.

    Returns:
        tau (accept when u <= tau), or -inf when no threshold qualifies ("always DNS"; with strata: in some
        stratum).

    Raises:
        ValueError: for mismatched shapes, NaN values, tolerance <= 0, confidence or delta outside
            (0, 1).
    """
    u, e = _as_numpy(u_cal), _as_numpy(e_cal)
    _check(u, e, tolerance)
    if strata is not None:
        labels = np.asarray(strata)
        if labels.shape != u.shape:
            raise ValueError(f"strata must have one label per sample, got {labels.shape} for {u.shape}")
        taus = [
            calibrate_threshold(u[labels == s], e[labels == s], tolerance, confidence, delta=delta)
            for s in np.unique(labels)
        ]
        return min(taus, default=-math.inf)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if delta is not None and not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie in (0, 1) or be None, got {delta}")
    if u.size == 0:
        return -math.inf
    order = np.argsort(u, kind="stable")
    u_sorted = u[order]
    violations = np.cumsum(e[order] > tolerance)
    n_acc = np.arange(1, u.size + 1)
    # a candidate tau = u_sorted[i] accepts every sample with u <= tau: only the last index of a run of ties
    last_of_tie = np.append(u_sorted[1:] != u_sorted[:-1], True)
    if delta is None:
        bound = (violations + 1) / (n_acc + 1)
    else:  # exact binomial upper confidence bound (Clopper-Pearson), 1.0 when every sample violates
        bound = np.where(violations < n_acc, beta.ppf(1.0 - delta, violations + 1, n_acc - violations), 1.0)
    ok = (bound <= 1.0 - confidence) & last_of_tie & np.isfinite(u_sorted)  # u = +inf is never accepted
    if not np.any(ok):
        return -math.inf
    return float(u_sorted[np.flatnonzero(ok)[-1]])


def stratum_thresholds(
    u_cal: Any, e_cal: Any, strata: Any, tolerance: float, confidence: float, *, delta: float | None = None
) -> dict[int, float]:
    """Mondrian calibration: one threshold per stratum, each by the rule of :func:`calibrate_threshold` on that
    stratum's calibration samples alone.

    Args:
        u_cal, e_cal: (n,) indicators and errors of the calibration samples.
        strata: (n,) integer stratum of each sample (:func:`slope_strata`).
        tolerance, confidence, delta: as for :func:`calibrate_threshold`.

    Returns:
        {stratum: tau} for every stratum present (-inf: that stratum always goes to DNS).
    """
    u, e, s = _as_numpy(u_cal), _as_numpy(e_cal), np.asarray(strata).reshape(-1)
    if s.shape != u.shape:
        raise ValueError(f"strata must have one label per sample, got {s.shape} for {u.shape}")
    return {int(k): calibrate_threshold(u[s == k], e[s == k], tolerance, confidence, delta=delta) for k in np.unique(s)}


def quantile_edges(values: Any, bins: int) -> list[float]:
    """Inner edges of ``bins`` bins holding equal shares of ``values`` (bins - 1 increasing floats)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    v = _as_numpy(values)
    if v.size == 0 or bins == 1:
        return []
    edges = np.quantile(v, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return [float(x) for x in np.unique(edges)]  # ties in the values can merge bins


def slope_strata(max_slope2: Any, edges: Any) -> np.ndarray:
    """Stratum of each profile from its largest squared slope: the number of edges <= max_x (dh/dx)^2.

    Args:
        max_slope2: (n,) max over the profile of (dh/dx)^2 (dimensionless).
        edges: increasing inner bin edges (:func:`quantile_edges`).

    Returns:
        (n,) int64 strata in 0..len(edges) (``np.digitize``; the monitor uses ``bisect_right``, the same rule).
    """
    return np.digitize(_as_numpy(max_slope2), np.asarray(edges, dtype=np.float64)).astype(np.int64)


def evaluate_threshold(u_test: Any, e_test: Any, tau: Any, tolerance: float) -> dict[str, Any]:
    """What the threshold achieves on a set of samples (normally the test split, never the calibration one).

    Args:
        u_test: (n,) uncertainty indicators.
        e_test: (n,) errors (units of ``tolerance``).
        tau: threshold (accept when u <= tau): a float, or (n,) per-sample thresholds (a stratum's each).
        tolerance: acceptable error.

    Returns:
        ``n``; ``n_accepted``; ``accept_fraction`` = n_accepted / n; ``coverage`` = fraction of accepted
        samples with e <= tolerance (NaN if none accepted); ``coverage_all`` = same over all samples (what the
        NN alone would achieve); ``spearman`` = Spearman rank correlation of u and e over all samples
        (scipy.stats.spearmanr; NaN when undefined); ``rmse_accepted`` = RMS of e over the accepted samples.
    """
    u, e = _as_numpy(u_test), _as_numpy(e_test)
    _check(u, e, tolerance)
    accepted = (u <= np.asarray(tau, dtype=np.float64)) & np.isfinite(u)
    n_acc = int(accepted.sum())
    ok = e <= tolerance
    if u.size >= 2 and np.ptp(u) > 0 and np.ptp(e) > 0:
        rho = float(spearmanr(u, e).statistic)
    else:
        rho = math.nan
    return {
        "n": int(u.size),
        "n_accepted": n_acc,
        "accept_fraction": n_acc / u.size if u.size else math.nan,
        "coverage": float(ok[accepted].mean()) if n_acc else math.nan,
        "coverage_all": float(ok.mean()) if u.size else math.nan,
        "spearman": rho,
        "rmse_accepted": float(np.sqrt(np.mean(e[accepted] ** 2))) if n_acc else math.nan,
    }


def calibrate(
    u_cal: Any,
    e_cal: Any,
    u_test: Any,
    e_test: Any,
    tolerance: float,
    confidence: float,
    *,
    delta: float | None = None,
    strata_cal: Any = None,
    strata_test: Any = None,
    input_strata: tuple[Any, Any, list[float]] | None = None,
) -> dict[str, Any]:
    """Calibrate tau on one split (:func:`calibrate_threshold`) and evaluate it on that and on a test split.

    With ``strata_cal`` the threshold is group-conditional (the rule holds in each stratum, e.g. data family);
    the labels are kept (``strata``) so that the monitor recalibrates by the same rule, and with ``strata_test``
    the test evaluation is also reported per stratum (``test_by_stratum``).

    With ``input_strata = (strata of the calib samples, strata of the test samples, edges)`` from
    :func:`slope_strata` the calibration is Mondrian instead: every input stratum gets its own threshold
    (:func:`stratum_thresholds`; ``strata_cal`` is then ignored), kept as ``thresholds`` (index = stratum,
    -inf for a stratum without calibration samples) with ``stratification`` (the feature and the edges) and
    each calibration pair's stratum (``input_strata``); ``threshold`` is the smallest of them, so a reader
    that ignores strata stays on the safe side; the test split is also reported per input stratum
    (``test_by_input_stratum``).

    Returns:
        ``{"threshold": tau (-inf: always DNS), "method", "tolerance", "confidence", "delta",
        "n_calibration", "indicator", "calibration": evaluate_threshold(cal), "test":
        evaluate_threshold(test)}`` (the card's ``calibration`` entry), plus ``strata`` and
        ``test_by_stratum`` when stratified, and the Mondrian keys above.
    """
    rule = (
        "split-conformal (v+1)/(n_acc+1) <= 1-confidence"
        if delta is None
        else "Clopper-Pearson upper bound at level 1-delta <= 1-confidence"
    )
    tau_cal: Any
    tau_test: Any
    if input_strata is not None:
        s_cal, s_test, edges = (np.asarray(input_strata[0]).reshape(-1), np.asarray(input_strata[1]).reshape(-1),
                                [float(x) for x in input_strata[2]])  # fmt: skip
        per = stratum_thresholds(u_cal, e_cal, s_cal, tolerance, confidence, delta=delta)
        thresholds = [per.get(k, -math.inf) for k in range(len(edges) + 1)]
        tau = min(thresholds)
        tau_cal, tau_test = np.asarray(thresholds)[s_cal], np.asarray(thresholds)[s_test]
        method = f"{rule}, in every stratum of max_x (dh/dx)^2 (Mondrian: one threshold per stratum)"
    else:
        tau = calibrate_threshold(u_cal, e_cal, tolerance, confidence, delta=delta, strata=strata_cal)
        tau_cal = tau_test = tau
        method = rule if strata_cal is None else f"{rule}, in every stratum (group-conditional)"
    out: dict[str, Any] = {
        "threshold": tau,
        "method": method,
        "indicator": "u = sqrt(mean_x var_k(pred_k)) (ddof 0); accept the NN when u <= threshold",
        "tolerance": float(tolerance),
        "confidence": float(confidence),
        "delta": delta,
        "n_calibration": int(_as_numpy(u_cal).size),
        "calibration": evaluate_threshold(u_cal, e_cal, tau_cal, tolerance),
        "test": evaluate_threshold(u_test, e_test, tau_test, tolerance),
    }
    u_t, e_t = _as_numpy(u_test), _as_numpy(e_test)
    if input_strata is not None:
        out["thresholds"] = thresholds
        out["stratification"] = {"feature": "max_slope2", "edges": edges}
        out["input_strata"] = [int(v) for v in s_cal]
        out["test_by_input_stratum"] = {
            str(k): evaluate_threshold(u_t[s_test == k], e_t[s_test == k], thresholds[k], tolerance)
            for k in range(len(thresholds))
        }
    elif strata_cal is not None:
        out["strata"] = [str(v) for v in np.asarray(strata_cal)]
    if strata_test is not None:
        s_t = np.asarray(strata_test)
        tau_t = np.broadcast_to(np.asarray(tau_test, dtype=np.float64), s_t.shape)
        out["test_by_stratum"] = {
            str(s): evaluate_threshold(u_t[s_t == s], e_t[s_t == s], tau_t[s_t == s], tolerance) for s in np.unique(s_t)
        }
    return out


def _check(u: np.ndarray, e: np.ndarray, tolerance: float) -> None:
    if u.shape != e.shape:
        raise ValueError(f"u and e must have the same length, got {u.size} and {e.size}")
    if np.any(np.isnan(u)) or np.any(np.isnan(e)) or np.any(u == -np.inf) or np.any(e < 0):
        raise ValueError("u must not be NaN or -inf (+inf: never accepted); e must be >= 0 (+inf allowed), not NaN")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
