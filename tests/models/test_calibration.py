"""Uncertainty indicator, error, split-conformal threshold: coverage, finite-sample rule, degenerate cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid.models.calibration import (
    calibrate,
    calibrate_threshold,
    ensemble_error,
    evaluate_threshold,
    metric_pairs,
    modulation_error,
    modulation_uncertainty,
    quantile_edges,
    slope_strata,
    stratum_thresholds,
    uncertainty,
)
from tests.models import one_torch_thread  # noqa: F401

TOL, CONF = 0.02, 0.95


def synthetic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Known relation: e = u * Exp(1) * 2, u ~ U(0, 0.02), so P(e > tol | u) = exp(-tol / (2u)) grows with u."""
    u = rng.uniform(0.0, 0.02, size=n)
    return u, 2.0 * u * rng.exponential(size=n)


def test_indicator_and_error_formulas() -> None:
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(4, 5, 30))
    target = rng.normal(size=(4, 30))
    u_ref = np.sqrt(np.mean(np.var(pred, axis=1), axis=-1))
    e_ref = np.sqrt(np.mean((pred.mean(axis=1) - target) ** 2, axis=-1))
    np.testing.assert_allclose(uncertainty(pred), u_ref)
    np.testing.assert_allclose(ensemble_error(pred, target), e_ref)
    np.testing.assert_allclose(uncertainty(torch.from_numpy(pred)).numpy(), u_ref)
    np.testing.assert_allclose(ensemble_error(torch.from_numpy(pred), torch.from_numpy(target)).numpy(), e_ref)
    assert uncertainty(np.ones((2, 5, 7))).tolist() == [0.0, 0.0]


def test_modulation_metric_formulas_and_invariances() -> None:
    rng = np.random.default_rng(3)
    pred = rng.normal(size=(4, 5, 30))
    target = rng.normal(size=(4, 30))
    c = pred - pred.mean(axis=-1, keepdims=True)
    mean = pred.mean(axis=1)
    u_ref = np.sqrt(np.mean(np.var(c, axis=1), axis=-1)) / mean.std(axis=-1)
    tc = target - target.mean(axis=-1, keepdims=True)
    e_ref = np.sqrt(np.mean((mean - mean.mean(axis=-1, keepdims=True) - tc) ** 2, axis=-1)) / target.std(axis=-1)
    np.testing.assert_allclose(modulation_uncertainty(pred), u_ref)
    np.testing.assert_allclose(modulation_error(pred, target), e_ref)
    np.testing.assert_allclose(modulation_uncertainty(torch.from_numpy(pred)).numpy(), u_ref)
    np.testing.assert_allclose(modulation_error(torch.from_numpy(pred), torch.from_numpy(target)).numpy(), e_ref)
    np.testing.assert_allclose(metric_pairs(pred, target, "modulation"), (u_ref, e_ref))
    np.testing.assert_allclose(metric_pairs(pred, target, "rho0"), (uncertainty(pred), ensemble_error(pred, target)))
    # constant offsets (per member, per sample) change nothing; a common scale factor cancels
    offset = rng.normal(size=(4, 5, 1))
    np.testing.assert_allclose(modulation_uncertainty(pred + offset), u_ref)
    np.testing.assert_allclose(modulation_error(pred + offset, target - 3.0), e_ref, rtol=1e-12)
    np.testing.assert_allclose(modulation_error(7.0 * pred, 7.0 * target), e_ref, rtol=1e-12)
    assert uncertainty(pred + offset)[0] > uncertainty(pred)[0]  # while the rho0 spread counts the offsets
    # members equal up to offsets: no spread; a flat mean with spread or a flat target predicted with a
    # modulation: +inf (never trusted); flat everywhere: 0 (a constant rho drives nothing, so it is exact)
    same = np.broadcast_to(pred[:, :1], pred.shape) + offset
    np.testing.assert_allclose(modulation_uncertainty(same), 0.0, atol=1e-12)
    flat = np.ones((2, 5, 7))
    assert modulation_uncertainty(flat).tolist() == [0.0, 0.0]
    opposite = np.stack([np.cos(np.arange(7.0)), -np.cos(np.arange(7.0))])[None]  # members cancel in the mean
    assert modulation_uncertainty(opposite).tolist() == [math.inf]
    assert modulation_error(flat, np.ones((2, 7))).tolist() == [0.0, 0.0]
    assert modulation_error(pred[:1], np.ones((1, 30))).tolist() == [math.inf]
    assert torch.isinf(modulation_uncertainty(torch.from_numpy(opposite)))
    with pytest.raises(ValueError, match="metric must be one of"):
        metric_pairs(pred, target, "relative")


def test_infinite_indicators_are_never_accepted() -> None:
    u, e = synthetic(np.random.default_rng(4), 400)
    u_inf = np.append(u, [math.inf] * 50)
    e_inf = np.append(e, np.zeros(50))  # even with zero error: nothing is known about an infinite spread
    tau = calibrate_threshold(u_inf, e_inf, TOL, CONF)
    assert tau == calibrate_threshold(u, e, TOL, CONF) and math.isfinite(tau)
    assert calibrate_threshold(np.full(30, math.inf), np.zeros(30), TOL, CONF) == -math.inf
    res = evaluate_threshold(u_inf, e_inf, math.inf, TOL)
    assert res["n_accepted"] == 400
    with pytest.raises(ValueError, match="NaN"):
        calibrate_threshold(np.array([0.1, math.nan]), np.array([0.0, 0.0]), TOL, CONF)


def violations_rule(u: np.ndarray, e: np.ndarray, tau: float) -> float:
    acc = u <= tau
    return (np.sum(e[acc] > TOL) + 1) / (acc.sum() + 1)


def test_finite_sample_rule_and_maximality() -> None:
    u, e = synthetic(np.random.default_rng(1), 500)
    tau = calibrate_threshold(u, e, TOL, CONF)
    assert np.isfinite(tau) and tau in u
    assert violations_rule(u, e, tau) <= 1 - CONF
    larger = np.unique(u[u > tau])
    assert all(violations_rule(u, e, t) > 1 - CONF for t in larger)  # tau is the largest qualifying value


def test_held_out_coverage_within_binomial_error() -> None:
    rng = np.random.default_rng(2)
    u_cal, e_cal = synthetic(rng, 2000)
    u_test, e_test = synthetic(rng, 20000)
    tau = calibrate_threshold(u_cal, e_cal, TOL, CONF)
    res = evaluate_threshold(u_test, e_test, tau, TOL)
    n_cal_acc = int(np.sum(u_cal <= tau))
    # binomial error of both draws: the calibration estimate and the held-out one
    sigma = math.sqrt(CONF * (1 - CONF) * (1 / res["n_accepted"] + 1 / n_cal_acc))
    assert res["coverage"] >= CONF - 3 * sigma
    assert 0.2 < res["accept_fraction"] < 1.0  # neither trivial nor everything
    assert res["coverage_all"] < CONF  # the NN alone would not meet the target here
    assert res["spearman"] > 0.3
    # oracle check with the known relation: among u <= tau, P(e > tol) = mean of exp(-tol / (2u)); tau rests on the
    # n_cal_acc accepted calibration samples, so the true rate may exceed 1 - CONF by their binomial error
    u_fine = np.linspace(1e-9, tau, 200001)
    assert np.mean(np.exp(-TOL / (2 * u_fine))) <= (1 - CONF) + 3 * math.sqrt(CONF * (1 - CONF) / n_cal_acc)


def test_conformal_rule_valid_on_average_and_binomial_rule_with_high_probability() -> None:
    """Over many calibration draws: the "+1" rule's true violation rate is <= alpha on average; with delta the
    rate exceeds alpha in at most ~delta of the draws (true rate from the known relation)."""
    rng = np.random.default_rng(4)

    def true_rate(tau: float) -> float:
        grid = np.linspace(1e-9, tau, 2001)
        return float(np.mean(np.exp(-TOL / (2 * grid)))) if np.isfinite(tau) else 0.0

    plain, strict = [], []
    for _ in range(100):
        u, e = synthetic(rng, 600)
        plain.append(true_rate(calibrate_threshold(u, e, TOL, CONF)))
        strict.append(true_rate(calibrate_threshold(u, e, TOL, CONF, delta=0.1)))
    assert np.mean(plain) <= (1 - CONF) + 3 * np.std(plain) / 10
    assert np.mean(np.array(strict) > 1 - CONF) <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 100)
    assert np.mean(strict) < np.mean(plain)


def test_degenerate_cases() -> None:
    u = np.linspace(0.0, 1.0, 100)
    assert calibrate_threshold(u, np.full(100, 1.0), TOL, CONF) == -math.inf  # always violates
    assert calibrate_threshold(u, np.zeros(100), TOL, CONF) == 1.0  # never violates: max(u), not +inf
    assert calibrate_threshold(u[:10], np.zeros(10), TOL, CONF) == -math.inf  # (0+1)/(10+1) > 0.05
    assert calibrate_threshold(u[:19], np.zeros(19), TOL, CONF) == u[18]  # (0+1)/(19+1) = 0.05
    assert calibrate_threshold([], [], TOL, CONF) == -math.inf
    ties = np.full(40, 0.3)
    e_ties = np.zeros(40)
    e_ties[0] = 1.0  # 1 violation in 40: (1+1)/41 < 0.05, ties accepted together
    assert calibrate_threshold(ties, e_ties, TOL, CONF) == 0.3
    e_ties[:2] = 1.0  # (2+1)/41 > 0.05
    assert calibrate_threshold(ties, e_ties, TOL, CONF) == -math.inf
    res = evaluate_threshold(u, np.zeros(100), -math.inf, TOL)
    assert res["n_accepted"] == 0 and math.isnan(res["coverage"]) and res["accept_fraction"] == 0.0
    assert math.isnan(evaluate_threshold(np.ones(5), np.arange(5.0), 1.0, TOL)["spearman"])  # constant u
    for bad in (dict(tolerance=0.0, confidence=0.9), dict(tolerance=0.1, confidence=1.0)):
        with pytest.raises(ValueError):
            calibrate_threshold(u, u, **bad)
    with pytest.raises(ValueError, match="same length"):
        calibrate_threshold(u, u[:5], TOL, CONF)


def test_calibrate_summary_accepts_tensors() -> None:
    rng = np.random.default_rng(3)
    u_cal, e_cal = synthetic(rng, 400)
    u_test, e_test = synthetic(rng, 400)
    out = calibrate(torch.from_numpy(u_cal), torch.from_numpy(e_cal), u_test, e_test, TOL, CONF)
    assert out["threshold"] == calibrate_threshold(u_cal, e_cal, TOL, CONF)
    assert out["n_calibration"] == 400 and out["test"]["n"] == 400
    assert out["calibration"]["coverage"] >= CONF and out["delta"] is None
    strict = calibrate(u_cal, e_cal, u_test, e_test, TOL, CONF, delta=0.05)
    assert strict["threshold"] <= out["threshold"]


def test_group_conditional_threshold_keeps_the_coverage_in_every_stratum() -> None:
    """A calibration mix dominated by an easy stratum (errors half those of ``synthetic``) beside a hard one
    (twice): the pooled threshold meets the target on the mix but not on the hard stratum (held out, 20 000
    draws each); the group-conditional one is the smaller per-stratum threshold and meets it in both, within
    the binomial error of the draws."""
    rng = np.random.default_rng(5)

    def draw(n_easy: int, n_hard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        (ua, ea), (ub, eb) = synthetic(rng, n_easy), synthetic(rng, n_hard)
        labels = np.array(["easy"] * n_easy + ["hard"] * n_hard)
        return np.concatenate([ua, ub]), np.concatenate([0.5 * ea, 2.0 * eb]), labels

    u, e, s = draw(4000, 400)
    u_t, e_t, s_t = draw(20000, 20000)
    pooled = calibrate_threshold(u, e, TOL, CONF)
    per = {k: calibrate_threshold(u[s == k], e[s == k], TOL, CONF) for k in ("easy", "hard")}
    tau = calibrate_threshold(u, e, TOL, CONF, strata=s)
    assert tau == min(per.values()) == per["hard"] < pooled
    hard = s_t == "hard"
    assert evaluate_threshold(u_t[hard], e_t[hard], pooled, TOL)["coverage"] < CONF - 0.02
    res = calibrate(u, e, u_t, e_t, TOL, CONF, strata_cal=s, strata_test=s_t)
    assert res["threshold"] == tau and res["strata"] == list(s) and "group-conditional" in res["method"]
    for k, r in res["test_by_stratum"].items():
        n_cal_acc = int(np.sum((u <= tau) & (s == k)))
        sigma = math.sqrt(CONF * (1 - CONF) * (1 / r["n_accepted"] + 1 / n_cal_acc))
        assert r["coverage"] >= CONF - 3 * sigma, k
    with pytest.raises(ValueError, match="one label per sample"):
        calibrate_threshold(u, e, TOL, CONF, strata=s[:10])


def test_mondrian_thresholds_hold_the_rule_in_each_input_stratum_and_cover_near_the_confidence() -> None:
    """The same easy/hard mix, the stratum now known at inference: each stratum gets the largest threshold that
    meets the rule on its own calibration samples. On held-out draws both strata then cover within the binomial
    error of the confidence, and the easy one accepts more than under the smallest-threshold rule, which
    over-covers it."""
    rng = np.random.default_rng(6)

    def draw(n_easy: int, n_hard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        (ua, ea), (ub, eb) = synthetic(rng, n_easy), synthetic(rng, n_hard)
        return np.concatenate([ua, ub]), np.concatenate([0.5 * ea, 2.0 * eb]), np.repeat([0, 1], [n_easy, n_hard])

    u, e, s = draw(4000, 400)
    u_t, e_t, s_t = draw(20000, 20000)
    per = stratum_thresholds(u, e, s, TOL, CONF)
    assert per == {k: calibrate_threshold(u[s == k], e[s == k], TOL, CONF) for k in (0, 1)}
    assert per[0] > per[1] == calibrate_threshold(u, e, TOL, CONF, strata=s)
    res = calibrate(u, e, u_t, e_t, TOL, CONF, strata_test=s_t, input_strata=(s, s_t, [0.5]))
    assert res["thresholds"] == [per[0], per[1]] and res["threshold"] == per[1] and res["input_strata"] == list(s)
    assert res["stratification"] == {"feature": "max_slope2", "edges": [0.5]} and "Mondrian" in res["method"]
    smallest = calibrate(u, e, u_t, e_t, TOL, CONF, strata_cal=s, strata_test=s_t)
    for k in (0, 1):
        r = res["test_by_input_stratum"][str(k)]
        assert r == res["test_by_stratum"][str(k)]  # here the test families are the input strata
        n_cal_acc = int(np.sum((u <= per[k]) & (s == k)))
        sigma = math.sqrt(CONF * (1 - CONF) * (1 / r["n_accepted"] + 1 / n_cal_acc))
        assert abs(r["coverage"] - CONF) <= 3 * sigma, k
    easy, easy_min = res["test_by_input_stratum"]["0"], smallest["test_by_stratum"]["0"]
    assert easy["accept_fraction"] > easy_min["accept_fraction"] and easy_min["coverage"] > CONF + 0.02


def test_slope_strata_bins_by_quantile_edges_like_the_monitor() -> None:
    """Quantile edges split the calibration values into equal shares; a value on an edge goes to the upper bin,
    as ``bisect.bisect_right`` (what the monitor uses) puts it."""
    import bisect

    values = np.arange(12, dtype=float)
    edges = quantile_edges(values, 3)
    strata = slope_strata(values, edges)
    assert np.bincount(strata).tolist() == [4, 4, 4] and strata.dtype == np.int64
    probe = np.array([-1.0, edges[0], edges[1], 100.0, *values])
    assert slope_strata(probe, edges).tolist() == [bisect.bisect_right(edges, v) for v in probe]
    assert quantile_edges(values, 1) == [] and quantile_edges(np.ones(10), 3) == [1.0]  # ties merge bins
    with pytest.raises(ValueError, match="bins must be >= 1"):
        quantile_edges(values, 0)
