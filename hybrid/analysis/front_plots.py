"""Plots of a front results file (``model = "front"`` or ``"front_pf"``): the front h(x) at a few frames, its mean
height and roughness against time, and for a phase-field run that saved φ, the last φ with its front."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybrid.analysis.descriptors import roughness
from hybrid.analysis.plotting import axis_label


def plot_front(results_h5: Path, out_dir: Path) -> list[Path]:
    """``<stem>_fronts.png``: h(x) at up to six frames, and mean height and RMS roughness of h against time; with
    ``fields/phi`` (F, ny, nx) in the file, ``<stem>_phi.png``: the last φ with the front h(x) drawn over it.

    Lengths come from the file's ``grid_lengths`` (the x axis is the last; the phase field's y axis the first);
    every quantity is nondimensional (docs/front.md). Figures are detached :class:`matplotlib.figure.Figure`
    objects (the caller's matplotlib backend is left alone).

    Args:
        results_h5: a results file of a front or phase-field run (``fields/h`` (F, nx) and ``time`` (F,)).
        out_dir: directory for the PNGs.
    """
    import h5py
    from matplotlib.figure import Figure

    with h5py.File(results_h5, "r", locking=False) as f:
        h = np.asarray(f["fields/h"][()], dtype=np.float64)
        t = np.asarray(f["time"][()], dtype=np.float64)
        lengths = np.atleast_1d(f.attrs.get("grid_lengths", [float(h.shape[1])]))
        phi = np.asarray(f["fields/phi"][-1], dtype=np.float64) if "fields/phi" in f else None
    out_dir.mkdir(parents=True, exist_ok=True)
    lx = float(lengths[-1])
    x = np.arange(h.shape[1]) * lx / h.shape[1]
    paths = []
    fig = Figure(figsize=(10, 3.4), layout="tight")
    ax = fig.subplots(1, 2)
    for i in np.unique(np.linspace(0, len(t) - 1, 6).round().astype(int)):
        ax[0].plot(x, h[i], label=f"t = {t[i]:.4g}")
    ax[0].set(xlabel=axis_label("x", "1"), ylabel=axis_label("h", "1"), title="front h(x)")
    ax[0].legend(fontsize=7)
    ax[1].plot(t, h.mean(axis=1), "o-", ms=3, color="C0", label="mean h")
    ax[1].set(xlabel=axis_label("time", "1"), ylabel="mean h")
    twin = ax[1].twinx()
    twin.plot(t, [roughness(frame) for frame in h], "s-", ms=3, color="C1", label="roughness")
    twin.set_ylabel("RMS roughness of h", color="C1")
    ax[1].set_title("mean height and roughness")
    paths.append(out_dir / f"{results_h5.stem}_fronts.png")
    fig.savefig(paths[-1], dpi=100)
    if phi is not None and phi.ndim == 2:
        ly = float(lengths[0]) if lengths.size > 1 else float(phi.shape[0])
        fig = Figure(figsize=(8, 3.6), layout="tight")
        ax1 = fig.subplots()
        im = ax1.imshow(phi, origin="lower", extent=(0.0, lx, 0.0, ly), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
        ax1.plot(x, h[-1], color="k", lw=1.2, label="front h(x)")
        fig.colorbar(im, ax=ax1, label="φ")
        ax1.set(xlabel=axis_label("x", "1"), ylabel=axis_label("y", "1"), title=f"φ at t = {t[-1]:.4g}")
        ax1.legend(fontsize=7, loc="upper right")
        paths.append(out_dir / f"{results_h5.stem}_phi.png")
        fig.savefig(paths[-1], dpi=100)
    return paths
