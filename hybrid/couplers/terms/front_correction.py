"""The learned front term ``front_correction``: C [length/time], the phase field's front velocity minus KPZ's.

The ensemble is pointwise: at each point it sees the local, translation-invariant derivatives of the front h
(the squared slope h_x² and the curvature h_xx, compact central differences, so reflection x -> −x leaves them
unchanged as it leaves C), and predicts C / |v0| with v0 = −sqrt(2D)·a; the network carries the model's D and a
of its training data (the card's spec). The phase field's ``pf`` provider labels the data and backs the monitor.
Tolerances are stated as the RMSE of C in units of |v0|; Mondrian strata are bins of max h_x².

Sample maker ``fronts``: multi-mode random fronts on the case's x axis, the highest mode and the RMS amplitude
drawn per sample, the amplitude capped so that max |h_x| stays below ``max_slope``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hybrid.solvers.front  # noqa: F401  (registers the model and the DNS providers of the term first)
from hybrid.core.config import Option, Table
from hybrid.couplers.learned import LearnedTerm, register_learned_term
from hybrid.couplers.term_dataset import SampleMaker, register_sample_maker
from hybrid.models.calibration import ensemble_error, uncertainty
from hybrid.models.ensemble import EnsembleCNN1d
from hybrid.models.learnable import DataLayout, Learnable, Metric
from hybrid.solvers.front import derivatives, front_speed, slope_features

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "front_correction"
"""Where a shipped ensemble would live (``terms.front_correction.weights = "shipped"``); none ships yet."""

FRONT_CHANNELS = ("slope2", "curvature")


def front_features(h: Any, dx: Any) -> torch.Tensor:
    """(B, N) fronts [length] on a periodic axis of spacing dx -> (B, 2, N) float32: h_x² and h_xx.

    Computed in float64 when h is float64; dx a float or (B,) per-sample spacings.
    """
    h = torch.as_tensor(h)
    work = torch.float64 if h.dtype == torch.float64 else torch.float32
    h = h.to(work)
    d = torch.as_tensor(dx, dtype=work, device=h.device)
    if d.ndim > 0:
        d = d.reshape(-1, 1)
    hx, hxx = derivatives(h, d)  # the front law's own stencils
    return torch.stack((hx * hx, hxx), dim=1).to(torch.float32)


def front_features_numpy(h: np.ndarray, dx: float) -> np.ndarray:
    """:func:`front_features` with numpy (the fused CPU inference path): (B, N) -> (B, 2, N) float32."""
    return slope_features(np.asarray(h, dtype=np.float64), float(dx))


FRONT_LEARNABLE = Learnable(
    term="front_correction",
    layout=DataLayout(inputs=("h",), target="correction", scale="speed"),
    features=front_features,
    feature_set="front-local-v1",
    channels=FRONT_CHANNELS,
    metrics={
        "v0": Metric(
            uncertainty,
            ensemble_error,
            "RMSE(C) / |v0|",
            "u = sqrt(mean_x var_k(pred_k)) (ddof 0); accept the NN when u <= threshold",
        )
    },
    stratum_channel="slope2",
    cpu_features=front_features_numpy,
    target_doc="C/|v0|",
    units_doc="C/|v0| is dimensionless; v0 = -sqrt(2D) a; u, e, tolerance in units of |v0|",
    uncertainty_doc="u = sqrt(mean_x var_k(C_k/|v0|)), population variance over members",
)
"""What training needs to know about ``front_correction`` (``hybrid train`` with ``model.term``)."""


def _speed(params: Mapping[str, Any]) -> float:
    return abs(front_speed(params))


def random_fronts(rng: np.random.Generator, count: int, ctx: Any, options: Mapping[str, Any]) -> np.ndarray:
    """``count`` random fronts (count, nx) around ``mean`` (see the module docstring)."""
    (x,) = ctx.grid.coordinates()[:1]
    lx = ctx.grid.lengths[0]
    out = np.empty((count, x.size))
    lo_m, hi_m = options["modes"]
    lo_a, hi_a = options["amplitude"]
    for i in range(count):
        m = np.arange(1, int(rng.integers(lo_m, hi_m + 1)) + 1)
        coef = rng.standard_normal(m.size) / m
        phase = rng.uniform(0.0, 2 * np.pi, m.size)
        s = (coef[None, :] * np.cos(2 * np.pi * np.outer(x, m) / lx + phase)).sum(axis=1)
        s /= max(float(s.std()), 1e-300)
        slope = float(np.abs(np.gradient(s, x[1] - x[0])).max())
        amp = math.exp(rng.uniform(math.log(lo_a), math.log(hi_a)))
        out[i] = options["mean"] + min(amp, options["max_slope"] / max(slope, 1e-300)) * s
    return out


FRONT = register_learned_term(
    LearnedTerm(
        learnable=FRONT_LEARNABLE,
        scale=_speed,
        labeller="pf",
        weights=SHIPPED_WEIGHTS,
        architecture=EnsembleCNN1d,
        tolerance=(0.02, "accepted error, in the units of metric (0.02: 2 % of |v0|)"),
        nn_doc="pointwise network ensemble on local slopes and curvature (float32 inference)",
        monitor_doc="network ensemble, phase-field fallback when its spread exceeds the calibrated threshold",
    )
)

register_sample_maker(
    "front_correction",
    "fronts",
    SampleMaker(
        Table(
            {
                "mean": Option("float", 8.0, "mean height [length] (the pf label is translation invariant)"),
                "modes": Option("list[int]", [1, 8], "range of the highest mode", min=1, length=2),
                "amplitude": Option(
                    "list[float]", [0.05, 2.0], "RMS amplitude range [length], log-uniform", min=1e-6, length=2
                ),
                "max_slope": Option("float", 1.0, "cap on max |h_x|", min=1e-6, max=10.0),
            }
        ),
        random_fronts,
        "multi-mode random fronts with a slope cap",
    ),
)
