"""Fit the rational approximation of erf used by the fused GELU (hybrid/models/fused_inference.py).

erf(x) ~ x P(x²) / Q(x²) on |x| <= 4 with deg P = 6, deg Q = 4, Q(0) = 1, fitted for relative error by iterated
weighted linear least squares (Sanathanan–Koerner: minimise |P − f Q| / |Q_prev f|) on 4000 points clustered at both
ends of [0, 4], in float64. Prints the coefficients and the maximum error of the float32 evaluation on [-5, 5].

Run: ``python tools/fit_erf.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf


def fit(deg_p: int = 6, deg_q: int = 4, points: int = 4000, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (P ascending, Q ascending with Q[0] = 1) in s = x²."""
    x = 2.0 * (1.0 - np.cos(np.pi * (np.arange(points) + 0.5) / points))  # in (0, 4), clustered at the ends
    s = x * x
    f = erf(x) / x
    weights = np.ones(points)
    p = q = np.zeros(0)
    for _ in range(iterations):
        a = np.hstack([s[:, None] ** np.arange(deg_p + 1), -f[:, None] * s[:, None] ** np.arange(1, deg_q + 1)])
        coef, *_ = np.linalg.lstsq(a * weights[:, None], f * weights, rcond=None)
        p, q = coef[: deg_p + 1], np.concatenate([[1.0], coef[deg_p + 1 :]])
        weights = 1.0 / np.abs(np.polyval(q[::-1], s) * f)
    return p, q


def float32_error(p: np.ndarray, q: np.ndarray) -> float:
    """Max |x P(x²)/Q(x²) − erf(x)| on [-5, 5], evaluated in float32 with x clamped to [-4, 4]."""
    x = np.linspace(-5.0, 5.0, 200_001).astype(np.float32)
    xc = np.clip(x, np.float32(-4.0), np.float32(4.0))
    s = xc * xc
    num, den = np.float32(0.0), np.float32(0.0)
    for c in p[::-1]:
        num = num * s + np.float32(c)
    for c in q[::-1]:
        den = den * s + np.float32(c)
    return float(np.abs((xc * num / den).astype(np.float64) - erf(x.astype(np.float64))).max())


if __name__ == "__main__":
    p, q = fit()
    print("P:", ", ".join(f"{c:.8e}" for c in p))
    print("Q:", ", ".join(f"{c:.8e}" for c in q))
    print(f"max |error| in float32 on [-5, 5]: {float32_error(p, q):.2e}")
