"""Plots of a grain-growth results file: mean radius against time with the fitted growth law, size distribution."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.analysis.grain_statistics import AREAS_TABLE, GRAINS_TABLE, fit_growth_exponent, late_time_window
from hybrid.analysis.plotting import axis_label

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------- plots


def _read_tables(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, dict[str, Any]]:
    import h5py

    from hybrid.core.io import read_table

    stats = read_table(path, GRAINS_TABLE)
    with h5py.File(path, "r") as f:
        areas = read_table(path, AREAS_TABLE) if AREAS_TABLE in f else None
        attrs = dict(f.attrs)
    return stats, areas, attrs


def plot_grain_growth(results_h5: Path, out_dir: Path) -> list[Path]:
    """Write the grain-growth figures of a results file (PNG).

    Figures are drawn on detached :class:`matplotlib.figure.Figure` objects (no pyplot state, the caller's
    matplotlib backend is left alone); axes carry the units of the model's ``units`` (model ``graingrowth``).

    - ``grain_radius.png``: ⟨R⟩(t) on log-log axes with the power-law fit ⟨R⟩ = c t^n over the late-time window
      (:func:`late_time_window`: grain count ≤ ¼ of the initial count), n in the legend, and the grain count on a
      second axis;
    - ``grain_size_distribution.png``: histograms of the normalised grain size R/⟨R⟩ (R = sqrt(A/π)), each
      pooling the frames of one third of the late-time window (a self-similar structure gives collapsing curves).

    Args:
        results_h5: output of a graingrowth run (tables ``grains`` and ``grain_areas``).
        out_dir: directory for the PNGs (created).

    Returns:
        Paths of the written files.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    from hybrid.core.registry import get_model

    spec = get_model("graingrowth")
    unit_x, unit_t = spec.unit("x"), spec.unit("time")

    results_h5 = Path(results_h5)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats, areas, _ = _read_tables(results_h5)
    t = np.asarray(stats["time"], dtype=np.float64)
    r = np.asarray(stats["mean_radius"], dtype=np.float64)
    count = np.asarray(stats["count"])
    steps = np.asarray(stats["step"])
    written: list[Path] = []

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    pos = t > 0
    ax.loglog(t[pos], r[pos], "o", ms=3, label="⟨R⟩ = ⟨√(A/π)⟩ (DNS)")
    window = late_time_window(count) & pos
    if window.sum() >= 4:
        fit = fit_growth_exponent(t[window], r[window])
        tw = t[window]
        ax.loglog(
            tw,
            fit["prefactor"] * tw ** fit["n"],
            "-",
            lw=2,
            label=f"fit c t^n over count ≤ ¼ initial: n = {fit['n']:.3f}",
        )
    ax.set_xlabel(axis_label("time t", unit_t))
    ax.set_ylabel(axis_label("mean grain radius ⟨R⟩", unit_x))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="both", which="minor", labelsize=7)
    ax2 = ax.twinx()
    ax2.loglog(t[pos], count[pos], "s", ms=2, color="0.6", label="grain count (right axis)")
    ax2.set_ylabel("grain count", color="0.4")
    ax2.yaxis.set_major_formatter(ScalarFormatter())
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    ax.set_title("grain growth: mean grain radius ⟨R⟩(t)")
    p = out_dir / "grain_radius.png"
    fig.savefig(p, dpi=120)
    written.append(p)

    if areas is not None and len(areas["step"]):
        late = steps[window] if window.sum() >= 3 else steps[-3:]
        groups = [g for g in np.array_split(late, 3) if g.size]
        a_step = np.asarray(areas["step"])
        a_area = np.asarray(areas["area"], dtype=np.float64)
        fig = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = fig.subplots()
        bins = np.linspace(0.0, 3.0, 31).tolist()
        for g in groups:
            xs = []
            for s_ in g:
                rr = np.sqrt(a_area[a_step == s_] / np.pi)
                if rr.size:
                    xs.append(rr / rr.mean())
            if not xs:
                continue
            x = np.concatenate(xs)
            k0 = int(np.flatnonzero(steps == g[0])[0])
            k1 = int(np.flatnonzero(steps == g[-1])[0])
            ax.hist(
                x,
                bins=bins,
                density=True,
                histtype="step",
                lw=1.6,
                label=f"t = {t[k0]:.4g}–{t[k1]:.4g} {unit_t} ({count[k0]}–{count[k1]} grains, {len(xs)} frames)",
            )
        ax.set_xlabel("R / ⟨R⟩  (R = √(A/π))")
        ax.set_ylabel("probability density")
        ax.set_title("normalised grain-size distribution (late-time frames pooled)")
        ax.legend(fontsize=8)
        p = out_dir / "grain_size_distribution.png"
        fig.savefig(p, dpi=120)
        written.append(p)
    log.info("wrote %s", ", ".join(str(w) for w in written))
    return written
