"""Per-frame comparison of a field B against a reference field A (A/B runs of :mod:`hybrid.couplers.compare`).

Every function takes two arrays of the same shape, A (the reference, e.g. the DNS run) and B (the candidate, e.g.
the NN or monitor run), for one frame: 1D ``(N,)`` or 2D ``(ny, nx)`` periodic fields; arrays with more axes
(e.g. ``(Q, ny, nx)`` order parameters) are accepted, their leading axes being channels (see :func:`ssim`).
Values are in the field's own unit unless said otherwise. No function raises on degenerate input (a constant
reference, identical fields); each documents what it returns then. Inputs may hold integers or bools (cast to
float64); NaN in the inputs propagates to NaN.

Conventions:

- ``data range`` of a frame = max(A) − min(A), the range of the *reference frame* (not of a dtype and not of
  B), used by :func:`psnr` and :func:`ssim`.
- ``rmse_rel`` = RMSE(B, A) / std(A), the standard deviation of A over space at that frame (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["METRICS", "compare_frame", "data_range", "mare", "pearson", "psnr", "rmse", "rmse_rel", "ssim"]

ArrayLike = npt.ArrayLike

SSIM_SIGMA = 1.5
"""Standard deviation [grid points] of the Gaussian SSIM window (Wang et al. 2004)."""
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_SSIM_TRUNCATE = 3.5  # as in scikit-image: an 11-point window for sigma = 1.5


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"fields to compare have different shapes: A {x.shape}, B {y.shape}")
    if x.size == 0:
        raise ValueError("fields to compare are empty")
    return x, y


def rmse(a: ArrayLike, b: ArrayLike) -> float:
    """Root-mean-square difference sqrt(mean((B − A)²)) over all points [field unit]; 0 for identical fields."""
    x, y = _pair(a, b)
    return float(np.sqrt(np.mean((y - x) ** 2)))


def rmse_rel(a: ArrayLike, b: ArrayLike) -> float:
    """RMSE(B, A) / std(A) [-], std over space of the reference frame A (population std).

    Degenerate frames: identical fields give 0.0 (also when A is constant); a constant A (std = 0) with B ≠ A
    gives ``inf``. NaN inputs give NaN.
    """
    x, y = _pair(a, b)
    err = rmse(x, y)
    if err == 0.0:
        return 0.0
    sd = float(np.std(x))
    if sd == 0.0:
        return float("inf") if np.isfinite(err) else float("nan")
    return err / sd


def mare(a: ArrayLike, b: ArrayLike) -> float:
    """Mean absolute relative error mean(|B − A| / |A|) over all points [-] (e.g. a temperature in K against the
    reference A); NaN when A has a zero anywhere (the ratio is then undefined: a field with a sign change or an
    offset origin, such as a height measured from a reference level)."""
    x, y = _pair(a, b)
    ref = np.abs(x)
    if not np.all(ref > 0.0):
        return float("nan")
    return float(np.mean(np.abs(y - x) / ref))


def pearson(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation coefficient of A and B over all points [-], in [−1, 1].

    Undefined (NaN) when A or B is constant.
    """
    x, y = _pair(a, b)
    dx = x - x.mean()
    dy = y - y.mean()
    den = float(np.sqrt(np.sum(dx * dx) * np.sum(dy * dy)))
    if den == 0.0 or not np.isfinite(den):
        return float("nan")
    r = float(np.sum(dx * dy)) / den
    return float(np.clip(r, -1.0, 1.0))


def data_range(a: ArrayLike) -> float:
    """max(A) − min(A) [field unit]: the data range used by :func:`psnr` and :func:`ssim`."""
    x = np.asarray(a, dtype=np.float64)
    return float(np.max(x) - np.min(x))


def psnr(a: ArrayLike, b: ArrayLike) -> float:
    """Peak signal-to-noise ratio 20·log10(R / RMSE(B, A)) [dB], R = max(A) − min(A) of the reference frame.

    Identical fields give ``inf``; a constant A with B ≠ A gives ``-inf`` (R = 0).
    """
    x, y = _pair(a, b)
    err = rmse(x, y)
    if err == 0.0:
        return float("inf")
    r = data_range(x)
    if r == 0.0:
        return float("-inf") if np.isfinite(err) else float("nan")
    return float(20.0 * np.log10(r / err))


def ssim(a: ArrayLike, b: ArrayLike, *, spatial_ndim: int | None = None, data_range_: float | None = None) -> float:
    """Mean structural similarity of B to A [-] (Wang et al., IEEE TIP 13, 600 (2004)), periodic fields.

    Computed with :func:`skimage.metrics.structural_similarity` using the settings of Wang et al.: a Gaussian
    window of σ = 1.5 points (11 taps), population covariances, K1 = 0.01, K2 = 0.03 and the explicit data
    range R = max(A) − min(A) of the reference frame (``data_range_`` overrides it). The fields are periodic:
    each spatial axis is padded by wrapping by exactly the window radius, and scikit-image crops that same
    radius before averaging, so the mean runs over every original point with periodic windows (and any grid
    size works, even smaller than the window).

    Args:
        a: reference frame A, shape ``(N,)``, ``(ny, nx)`` or ``(..., *spatial)``.
        b: candidate frame B, same shape.
        spatial_ndim: number of trailing spatial axes (default: ``min(a.ndim, 2)``); leading axes are channels
            and the result is the mean SSIM over channels.
        data_range_: data range R [field unit] (default: max(A) − min(A)).

    Returns:
        Mean SSIM in [−1, 1]; 1 for identical fields. A constant A (R = 0) gives 1.0 if B equals A, else NaN
        (SSIM has no scale to measure the difference against).
    """
    from skimage.metrics import structural_similarity

    x, y = _pair(a, b)
    nd = min(x.ndim, 2) if spatial_ndim is None else int(spatial_ndim)
    if not 1 <= nd <= x.ndim:
        raise ValueError(f"spatial_ndim = {nd} does not fit fields of shape {x.shape}")
    r = data_range(x) if data_range_ is None else float(data_range_)
    if not np.isfinite(r) or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan")
    if r == 0.0:
        return 1.0 if np.array_equal(x, y) else float("nan")
    radius = int(_SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    win = 2 * radius + 1
    xs = x.reshape((-1, *x.shape[x.ndim - nd :]))
    ys = y.reshape((-1, *y.shape[y.ndim - nd :]))
    values = []
    for xi, yi in zip(xs, ys, strict=True):
        xp = np.pad(xi, radius, mode="wrap")
        yp = np.pad(yi, radius, mode="wrap")
        values.append(
            structural_similarity(
                xp,
                yp,
                win_size=win,
                gaussian_weights=True,
                sigma=SSIM_SIGMA,
                use_sample_covariance=False,
                data_range=r,
                K1=SSIM_K1,
                K2=SSIM_K2,
            )
        )
    return float(np.mean(values))


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "rmse": rmse,
    "rmse_rel": rmse_rel,
    "mare": mare,
    "pearson": pearson,
    "psnr": psnr,
    "ssim": ssim,
}
"""The per-frame metrics of a comparison report, by report key (each ``fn(A, B) -> float``)."""


def compare_frame(a: ArrayLike, b: ArrayLike, *, spatial_ndim: int | None = None) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one frame: ``{"rmse": ..., "rmse_rel": ..., ...}`` (B against A)."""
    out = {name: fn(a, b) for name, fn in METRICS.items() if name != "ssim"}
    out["ssim"] = ssim(a, b, spatial_ndim=spatial_ndim)
    return {name: out[name] for name in METRICS}
