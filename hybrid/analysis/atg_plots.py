"""Plots of a strained-film (ATG) results file: film profiles, roughness and dominant wavelength against time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybrid.analysis.descriptors import dominant_wavelength
from hybrid.analysis.plotting import axis_label
from hybrid.core.registry import get_model


def plot_atg(results_h5: Path, out_dir: Path) -> list[Path]:
    """PNGs of an ATG run: profiles h(x) at a few frames, and roughness and dominant wavelength vs time.

    Figures are drawn on detached :class:`matplotlib.figure.Figure` objects (no pyplot state, the caller's
    matplotlib backend is left alone); axes carry the units of the model's ``units``.

    Args:
        results_h5: a results file of an ATG run.
        out_dir: directory for ``<stem>_profiles.png`` and ``<stem>_wavelength.png``.
    """
    import h5py
    from matplotlib.figure import Figure

    with h5py.File(results_h5, "r", locking=False) as f:
        h = f["fields/h"][()]
        t = f["time"][()]
        L = float(f.attrs["grid_lengths"][-1]) if "grid_lengths" in f.attrs else float(h.shape[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    x = np.arange(h.shape[1]) * L / h.shape[1]
    spec = get_model("atg")
    unit_h, unit_x, unit_t = spec.unit("h"), spec.unit("x"), spec.unit("time")
    paths = []
    fig = Figure(figsize=(8, 3.5), layout="tight")
    ax = fig.subplots()
    for i in np.unique(np.linspace(0, len(t) - 1, 6).round().astype(int)):
        ax.plot(x, h[i], label=f"t = {t[i]:.4g} {unit_t}")
    ax.set(xlabel=axis_label("x", unit_x), ylabel=axis_label("h", unit_h), title="film profile")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    paths.append(out_dir / f"{results_h5.stem}_profiles.png")
    fig.savefig(paths[-1], dpi=100)
    dev = h - h.mean(axis=1, keepdims=True)
    lam = [dominant_wavelength(frame, L) for frame in h]  # NaN (not drawn) while the film is flat
    fig = Figure(figsize=(9, 3.2), layout="tight")
    ax = fig.subplots(1, 2)
    ax[0].semilogy(t, dev.std(axis=1))
    ax[0].set(xlabel=axis_label("time", unit_t), ylabel=axis_label("roughness std(h)", unit_h))
    ax[1].plot(t, lam, "o-", ms=3)
    ax[1].set(xlabel=axis_label("time", unit_t), ylabel=axis_label("dominant wavelength", unit_x))
    paths.append(out_dir / f"{results_h5.stem}_wavelength.png")
    fig.savefig(paths[-1], dpi=100)
    return paths
