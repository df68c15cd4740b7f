"""Grain statistics of label maps and results files: areas, counts, mean radii, the growth-law fit ⟨R⟩ ∝ tⁿ.

Post-processing, not DNS: the grain-growth model writes these tables at every frame (:func:`frame_tables`), and
the fit reads them back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

GRAINS_TABLE = "grains"
"""Per-frame statistics table: step, time, count, mean_area ⟨A⟩ [length²], mean_radius ⟨sqrt(A/π)⟩ [length],
area_radius sqrt(⟨A⟩/π) [length]."""
AREAS_TABLE = "grain_areas"
"""Per-grain table, one row per grain and frame: step, time, label, area [length²]."""


# ----------------------------------------------------------------------------------------------- statistics


def grain_areas(labels: np.ndarray, cell_area: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels present in a frame and their areas.

    Args:
        labels: (ny, nx) integer grain labels (≥ 1).
        cell_area: area of one grid cell dx·dy [length²].

    Returns:
        (labels (G,) int64 sorted, areas (G,) float64 [length²]).
    """
    lab, counts = np.unique(np.asarray(labels), return_counts=True)
    keep = lab > 0
    return lab[keep].astype(np.int64), counts[keep] * float(cell_area)


def grain_statistics(labels: np.ndarray, cell_area: float) -> dict[str, Any]:
    """Count, mean area and mean equivalent radius of the grains of one frame.

    Args:
        labels: (ny, nx) integer grain labels.
        cell_area: dx·dy [length²].

    Returns:
        ``{"count": int, "mean_area": [length²], "mean_radius": ⟨sqrt(A/π)⟩ [length], "area_radius": sqrt(⟨A⟩/π)
        [length], "labels": (G,), "areas": (G,) [length²]}``.
    """
    lab, areas = grain_areas(labels, cell_area)
    return {
        "count": int(lab.size),
        "mean_area": float(areas.mean()) if areas.size else 0.0,
        "mean_radius": float(np.sqrt(areas / np.pi).mean()) if areas.size else 0.0,
        "area_radius": float(np.sqrt(areas.mean() / np.pi)) if areas.size else 0.0,
        "labels": lab,
        "areas": areas,
    }


def fit_growth_exponent(time: np.ndarray, radius: np.ndarray) -> dict[str, float]:
    """Growth exponent n of ⟨R⟩ ∝ t^n: least-squares line through (ln t, ln⟨R⟩).

    Fit it over the late-time frames only (:func:`late_time_window`). The plain power law from the simulation's
    t = 0 is biased low by the finite initial size: if ⟨A⟩ = A_0' + k t, the local slope is ½ (1 − A_0'/⟨A⟩), so
    the window must start once ⟨A⟩ ≫ A_0'. Also returned, for reference, the fit of ⟨R⟩ = c (t − t0)^n with a free
    time origin t0 (Burke–Turnbull form ⟨R⟩^{1/n} − ⟨R_0⟩^{1/n} ∝ t); it is unbiased in principle but, with the
    statistics of ~10³ grains, ill-conditioned (t0 and n trade off: over the default window two seeds of the
    shipped case gave 0.49 and 0.97 where the plain slope gave 0.493 and 0.502), so it is not the headline number.

    Args:
        time: (F,) times [time unit] of the fitted frames (t > 0, increasing).
        radius: (F,) mean radius ⟨R⟩ [length] at those times.

    Returns:
        ``{"n": log-log slope, "prefactor": c (⟨R⟩ = c t^n), "rms_log": rms residual of ln⟨R⟩, "n_free_origin",
        "t0": the free-origin fit}``.
    """
    from scipy.optimize import least_squares

    t = np.asarray(time, dtype=np.float64)
    r = np.asarray(radius, dtype=np.float64)
    if t.size < 4:
        raise ValueError(f"need at least 4 frames to fit a growth exponent, got {t.size}")
    if np.any(t <= 0) or np.any(r <= 0):
        raise ValueError("times and radii must be > 0 for a log-log fit")
    lt, lr = np.log(t), np.log(r)
    n, lc = np.polyfit(lt, lr, 1)
    rms = float(np.sqrt(np.mean((lc + n * lt - lr) ** 2)))

    def resid(p: np.ndarray) -> np.ndarray:
        t0, nn, c = p
        return c + nn * np.log(np.maximum(t - t0, 1e-300)) - lr

    best = None
    # scan the origin first (the problem is nearly degenerate in t0 and n), then refine all three
    for t0 in np.linspace(-t[-1], 0.99 * t[0], 60):
        ltt = np.log(t - t0)
        nn, c = np.polyfit(ltt, lr, 1)
        cost = float(np.sum((c + nn * ltt - lr) ** 2))
        if best is None or cost < best[0]:
            best = (cost, t0, nn, c)
    assert best is not None
    sol = least_squares(resid, x0=np.array(best[1:]), bounds=([-np.inf, 0.0, -np.inf], [0.999999 * t[0], 5.0, np.inf]))
    return {
        "n": float(n),
        "prefactor": math.exp(lc),
        "rms_log": rms,
        "n_free_origin": float(sol.x[1]),
        "t0": float(sol.x[0]),
    }


def late_time_window(count: np.ndarray, start_fraction: float = 0.25) -> np.ndarray:
    """Frames of the late-time (scaling) regime: the grain count has fallen to ``start_fraction`` of its initial value.

    The default ¼ means ⟨A⟩ ≥ 4 ⟨A⟩_0: the initial (Voronoi) structure is forgotten — the normalised size
    distribution no longer changes — and the bias of the plain log-log slope, ≈ −½ A_0'/⟨A⟩, is a few % of n.

    Args:
        count: (F,) grain count per frame.
        start_fraction: the window starts at the first frame with count ≤ start_fraction · count[0].

    Returns:
        (F,) bool mask of the frames in the window.
    """
    c = np.asarray(count)
    return c <= start_fraction * c[0]


def frame_tables(step: int, time: float, labels: np.ndarray, cell_area: float) -> dict[str, Mapping[str, Any]]:
    """The per-frame table rows of a label map (tables :data:`GRAINS_TABLE` and :data:`AREAS_TABLE`)."""
    st = grain_statistics(labels, cell_area)
    g = st["count"]
    return {
        GRAINS_TABLE: {
            "step": np.array([step], dtype=np.int64),
            "time": np.array([time]),
            "count": np.array([g], dtype=np.int64),
            "mean_area": np.array([st["mean_area"]]),
            "mean_radius": np.array([st["mean_radius"]]),
            "area_radius": np.array([st["area_radius"]]),
        },
        AREAS_TABLE: {
            "step": np.full(g, step, dtype=np.int64),
            "time": np.full(g, float(time)),
            "label": st["labels"],
            "area": st["areas"],
        },
    }
