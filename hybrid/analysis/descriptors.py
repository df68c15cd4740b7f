"""Global descriptors of one output frame, registered by model name (A/B comparisons, benchmarks).

A descriptor is ``fn(fields, grid_lengths) -> float``: ``fields`` are the numpy arrays saved in one frame
(``{"h": (N,)}`` for ``atg``; ``{"grain": (ny, nx)}`` for ``graingrowth``; ``{"T": ..., "patch/T": ...}`` for
``laser``, whose melt-pool descriptors also read the case: the liquidus and the patch spacing), ``grid_lengths``
the domain lengths per axis in the case's length unit. :data:`DESCRIPTORS` maps ``model -> {name -> fn}``; a
model's module (or a coupler) adds its own with :func:`register_descriptor`::

    @register_descriptor("graingrowth", "grain_count")
    def grain_count(fields, grid_lengths): ...

:func:`frame_descriptors` evaluates every descriptor of a model on one frame; a descriptor whose field is not in
the frame is left out (e.g. ``output.fields`` did not save it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.signal import find_peaks

from hybrid.analysis.melt_pool import MeltPool, melt_pool

__all__ = [
    "DESCRIPTORS",
    "ISLAND_PROMINENCE",
    "Descriptor",
    "dominant_wavelength",
    "frame_descriptors",
    "grain_count",
    "island_count",
    "max_height",
    "mean_grain_area",
    "register_descriptor",
    "roughness",
]

log = logging.getLogger(__name__)

Descriptor = Callable[[Mapping[str, np.ndarray], Sequence[float]], float]

DESCRIPTORS: dict[str, dict[str, Callable[..., float]]] = {}
"""model name -> descriptor name -> ``fn(fields, grid_lengths) -> float``."""

CASE_DESCRIPTORS: set[tuple[str, str]] = set()
"""(model, name) of the descriptors that also read the resolved case: ``fn(fields, grid_lengths, case)``."""

ISLAND_PROMINENCE = 1.0
"""Default minimum prominence [nm] of a peak of h counted as an island by :func:`island_count`."""


def register_descriptor(model: str, name: str, *, case: bool = False) -> Callable[[Any], Any]:
    """Decorator registering ``fn(fields, grid_lengths) -> float`` as descriptor ``name`` of ``model``; with
    ``case=True``, ``fn(fields, grid_lengths, case)`` also reads the resolved case (its ``[model]`` parameters and
    ``[terms]`` options, e.g. a melting point or a patch's spacing)."""

    def deco(fn: Any) -> Any:
        DESCRIPTORS.setdefault(model, {})[name] = fn
        if case:
            CASE_DESCRIPTORS.add((model, name))
        return fn

    return deco


def frame_descriptors(
    model: str,
    fields: Mapping[str, np.ndarray],
    grid_lengths: Sequence[float],
    case: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Every registered descriptor of ``model`` on one frame (missing fields: that descriptor is left out; so are
    the descriptors that read the case when no ``case`` is given). ``fields`` may hold a moving patch's fields as
    ``patch/<name>``."""
    out: dict[str, float] = {}
    for name, fn in DESCRIPTORS.get(model, {}).items():
        try:
            if (model, name) in CASE_DESCRIPTORS:
                if case is None:
                    continue
                out[name] = float(fn(fields, grid_lengths, case))
            else:
                out[name] = float(fn(fields, grid_lengths))
        except KeyError as err:
            log.debug("descriptor %s of %s skipped: field %s not saved", name, model, err)
    return out


# ----------------------------------------------------------------------------------- 1D profiles


def roughness(h: np.ndarray) -> float:
    """RMS roughness sqrt(mean((h − mean h)²)) of a profile h (N,) [unit of h]."""
    h = np.asarray(h, dtype=np.float64)
    return float(np.sqrt(np.mean((h - h.mean()) ** 2)))


def dominant_wavelength(h: np.ndarray, length: float) -> float:
    """L / m* [length unit] for the Fourier mode m* ≥ 1 of largest |FFT| amplitude of a periodic profile h (N,).

    Mode 0 (the mean) is excluded; ties go to the lowest mode. A flat profile (every mode below 1e-12 of the
    profile's magnitude) has no dominant wavelength: NaN.
    """
    h = np.asarray(h, dtype=np.float64)
    amp = np.abs(np.fft.rfft(h - h.mean()))[1:]
    scale = max(float(np.max(np.abs(h))), 1e-300) * h.size
    if amp.size == 0 or float(amp.max()) <= 1e-12 * scale:
        return float("nan")
    return float(length / (int(np.argmax(amp)) + 1))


def island_count(h: np.ndarray, prominence: float = ISLAND_PROMINENCE) -> int:
    """Number of islands: peaks of the periodic profile h (N,) with prominence ≥ ``prominence`` [unit of h].

    Periodicity: :func:`scipy.signal.find_peaks` runs on three copies of h side by side and only the peaks of
    the middle copy are counted. Each of them sees a full period on either side, so its prominence is the
    periodic one (for the highest peak: max − min), a peak or plateau straddling x = 0 / x = L is counted once,
    and no peak is lost at the array ends. A flat profile has no peak (0).
    """
    h = np.asarray(h, dtype=np.float64)
    n = h.size
    peaks, _ = find_peaks(np.concatenate([h, h, h]), prominence=prominence)
    return int(np.count_nonzero((peaks >= n) & (peaks < 2 * n)))


def max_height(h: np.ndarray) -> float:
    """Largest value of the profile h (N,) [unit of h]."""
    return float(np.max(h))


@register_descriptor("atg", "roughness")
def _atg_roughness(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """RMS of h − mean h [nm]."""
    return roughness(fields["h"])


@register_descriptor("atg", "dominant_wavelength")
def _atg_wavelength(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """L / (mode of largest amplitude, mode 0 excluded) [nm]."""
    return dominant_wavelength(fields["h"], grid_lengths[0])


@register_descriptor("atg", "island_count")
def _atg_islands(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """Peaks of h with prominence ≥ 1 nm (periodic)."""
    return float(island_count(fields["h"]))


@register_descriptor("atg", "max_height")
def _atg_max_height(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """max h [nm]."""
    return max_height(fields["h"])


@register_descriptor("front", "roughness")
def _front_roughness(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """RMS of the front height h − mean h [length unit]."""
    return roughness(fields["h"])


@register_descriptor("front", "mean_height")
def _front_mean(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """Mean front position [length unit] (its rate is the front speed)."""
    return float(np.mean(fields["h"]))


@register_descriptor("front", "dominant_wavelength")
def _front_wavelength(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """L / (mode of largest amplitude of h) [length unit]."""
    return dominant_wavelength(fields["h"], grid_lengths[0])


# ----------------------------------------------------------------------------------- grain maps


def grain_count(labels: np.ndarray) -> int:
    """Number of distinct grain labels ≥ 0 in a label map (ny, nx) (negative labels: unassigned, ignored)."""
    lab = np.asarray(labels)
    return int(np.unique(lab[lab >= 0]).size)


def mean_grain_area(labels: np.ndarray, grid_lengths: Sequence[float]) -> float:
    """Mean grain area [length unit²]: labelled area / :func:`grain_count` (NaN without grains)."""
    lab = np.asarray(labels)
    count = grain_count(lab)
    if count == 0:
        return float("nan")
    cell = float(np.prod(grid_lengths)) / lab.size
    return float(np.count_nonzero(lab >= 0) * cell / count)


@register_descriptor("graingrowth", "grain_count")
def _gg_count(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """Number of grains in ``fields/grain``."""
    return float(grain_count(fields["grain"]))


@register_descriptor("graingrowth", "mean_area")
def _gg_mean_area(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float]) -> float:
    """Mean grain area [length unit²]."""
    return mean_grain_area(fields["grain"], grid_lengths)


# ----------------------------------------------------------------------------------- laser melt pool


def _patch_pool(fields: Mapping[str, np.ndarray], case: Mapping[str, Any]) -> MeltPool:
    """The melt pool of the frame's patch ``patch/T`` (pz, px) [K] (cell centres at the patch term's ``spacing``,
    row 0 at the top), molten at or above ``[model] liquidus``."""
    spacing = float(case["terms"]["patch_temperature"]["spacing"])
    return melt_pool(fields["patch/T"], spacing, float(case["model"]["liquidus"]), cell_centred=True)


@register_descriptor("laser", "melt_depth", case=True)
def _laser_depth(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float], case: Mapping[str, Any]) -> float:
    """Depth [m] of the patch's melt pool (:func:`hybrid.analysis.melt_pool.melt_pool`)."""
    return _patch_pool(fields, case).depth


@register_descriptor("laser", "melt_width", case=True)
def _laser_width(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float], case: Mapping[str, Any]) -> float:
    """Length [m] along the scan of the patch's molten top surface."""
    return _patch_pool(fields, case).width


@register_descriptor("laser", "peak_temperature", case=True)
def _laser_peak(fields: Mapping[str, np.ndarray], grid_lengths: Sequence[float], case: Mapping[str, Any]) -> float:
    """Largest temperature [K] in the patch."""
    return _patch_pool(fields, case).peak
