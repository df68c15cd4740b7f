"""What training needs to know about a learned term: its data layout, features, baseline law and metrics.

A :class:`Learnable` is the training half of a learned term (the serving half, with the physical scale, the
labelling DNS provider and the shipped weights, is :class:`hybrid.couplers.learned.LearnedTerm`, which holds
one). The network maps the features of one input field (B, C, N) to the target value / scale (B, N); the data
set stores the input field, the DNS label and the per-sample scale under the names the layout gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DataLayout", "Learnable", "Metric"]


@dataclass(frozen=True)
class DataLayout:
    """Names of a learned term's arrays in a data set or capture file.

    Attributes:
        inputs: the input field(s) (S, N) (the network sees the first; e.g. ``("h",)``).
        target: the DNS label (S, N) in physical units (e.g. ``"rho"``).
        scale: the per-sample physical scale (S,) of the label (e.g. ``"rho0"``); the network learns
            target / scale.
    """

    inputs: tuple[str, ...] = ("h",)
    target: str = "rho"
    scale: str = "rho0"


@dataclass(frozen=True)
class Metric:
    """An error metric a monitor tolerance is stated in, with the uncertainty indicator calibrated against it.

    Attributes:
        indicator: members (..., K, N) of target/scale (numpy or torch) -> (...) uncertainty u.
        error: (predictions (..., K, N), target (..., N)) of target/scale -> (...) error of the ensemble mean;
            called with a one-member "ensemble" to measure one answer.
        doc: what the tolerance measures (case-file reference).
        indicator_doc: the indicator's formula, recorded in the model card.
    """

    indicator: Callable[[Any], Any]
    error: Callable[[Any, Any], Any]
    doc: str
    indicator_doc: str = ""


@dataclass(frozen=True)
class Learnable:
    """The training half of a learned term.

    Attributes:
        term: the term name.
        layout: names of its arrays in data sets.
        features: (inputs (B, N), dx (scalar or (B,))) -> (B, C, N) float32 torch features (numpy or torch in).
        cpu_features: the same features computed with numpy (numpy in, (B, C, N) float32 numpy out), equal to
            ``features`` to float32 rounding; the fused CPU inference path uses it (None: it calls ``features``).
        feature_set: name of the feature set, recorded in the model card (``[model] features`` of a spec).
        channels: the C feature channel names.
        metrics: tolerance metrics by name; the first is the default (``[calibration] tolerance``), each other
            one ``NAME`` is calibrated when the spec's ``[calibration]`` has ``NAME_tolerance``.
        baseline: (channel, coefficient, offset): the known law target/scale ≈ offset + coefficient · channel the
            network corrects (its metrics report the law's RMSE beside the network's), or None.
        linear_channels: channels whose first-order response ``model.linear_response = "exact"`` pins.
        stratum_channel: channel whose maximum over x bins Mondrian calibration strata
            (``[calibration] conditional = "max_slope"``), or None.
        target_doc, units_doc, uncertainty_doc: texts recorded in the model card.
    """

    term: str
    layout: DataLayout
    features: Callable[[Any, Any], Any]
    feature_set: str
    channels: tuple[str, ...]
    metrics: Mapping[str, Metric]
    baseline: tuple[str, float, float] | None = None
    linear_channels: tuple[str, ...] = ()
    stratum_channel: str | None = None
    cpu_features: Callable[[Any, Any], Any] | None = None
    target_doc: str = ""
    units_doc: str = ""
    uncertainty_doc: str = ""

    @property
    def default_metric(self) -> str:
        return next(iter(self.metrics))
