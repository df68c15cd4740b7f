"""Plots of a laser-track results file (``model = "laser"``, docs/laser.md): the last frame's temperature with the
melt pool and the patch box, the patch temperature, and the /energy table's power and energy balance."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.analysis.melt_pool import melt_pool
from hybrid.analysis.plotting import axis_label

log = logging.getLogger(__name__)

MM = 1e3  # m → mm
MS = 1e3  # s → ms


@dataclass(frozen=True)
class LaserRun:
    """What the plots read from a results file: the last frame's ``temperature`` (nz, nx) [K] (``fields/T``) and
    its sample ``spacing`` [m], the last ``patch_temperature`` (pz, px) [K] (``patch/T``, None when the file has
    no patch) with its ``patch_origin`` (x, depth) [m] and ``patch_spacing`` [m], the ``liquidus`` [K], the frame
    ``time`` [s], and the /energy table (None if absent)."""

    temperature: np.ndarray
    spacing: float
    time: float
    liquidus: float
    patch_temperature: np.ndarray | None
    patch_origin: np.ndarray | None
    patch_spacing: float
    energy: dict[str, np.ndarray] | None


def _case(attrs: Any) -> dict[str, Any]:
    """The resolved case TOML at the file's root attribute ``case`` ({} when absent or unreadable)."""
    text = attrs.get("case")
    if text is None:
        return {}
    try:
        return tomllib.loads(text.decode() if isinstance(text, bytes) else str(text))
    except tomllib.TOMLDecodeError:
        log.warning("the results file's case attribute is not TOML; the plots use default spacings")
        return {}


def output_spacing(case: dict[str, Any], nx: int, length: float | None) -> float:
    """Spacing [m] of the cell-centred samples of ``fields/T``: ``output.spacing``, else the mesh's dx
    (``grid.spacing``, or Lx/(nx_nodes − 1) for ``grid.shape``); without them, ``length``/``nx`` (the plate's Lx
    [m] over the samples along x), or 1e-3 (one sample drawn as 1 mm) when the length is unknown too."""
    given = (case.get("output") or {}).get("spacing")
    if given is not None:
        return float(given)
    grid = case.get("grid") or {}
    if grid.get("spacing") is not None:
        spacing = grid["spacing"]
        return float(spacing[0] if isinstance(spacing, list) else spacing)
    if grid.get("shape") is not None and grid.get("lengths") is not None:
        return float(grid["lengths"][0]) / (int(grid["shape"][0]) - 1)
    return length / nx if length else 1.0 / MM


def read_laser_run(results_h5: Path) -> LaserRun:
    """The last frame of a laser results file (:class:`LaserRun`)."""
    import h5py

    from hybrid.core.io import read_table

    with h5py.File(results_h5, "r", locking=False) as f:
        case = _case(f.attrs)
        temp = np.asarray(f["fields/T"][-1], dtype=np.float64)
        time = float(f["time"][-1]) if "time" in f else float("nan")
        patch_t = np.asarray(f["patch/T"][-1], dtype=np.float64) if "patch/T" in f else None
        origin = np.asarray(f["patch/origin"][-1], dtype=np.float64) if "patch/origin" in f else None
        has_energy = "energy" in f
        lengths = f.attrs.get("grid_lengths")
    energy = read_table(results_h5, "energy") if has_energy else None
    # a run's file holds its resolved case, every default filled in: liquidus and patch spacing are there
    patch_opts = (case.get("terms") or {}).get("patch_temperature") or {}
    liquidus = (case.get("model") or {}).get("liquidus")
    patch_spacing = patch_opts.get("spacing")
    has_patch = origin is not None and patch_spacing is not None
    return LaserRun(
        temperature=temp,
        spacing=output_spacing(case, temp.shape[1], float(lengths[0]) if lengths is not None else None),
        time=time,
        liquidus=float(liquidus) if liquidus is not None else float("inf"),  # inf: no contour
        patch_temperature=patch_t if has_patch else None,
        patch_origin=origin if has_patch else None,
        patch_spacing=float(patch_spacing) if patch_spacing is not None else float("nan"),
        energy=None if energy is None else {k: np.asarray(v) for k, v in energy.items()},
    )


def energy_balance(energy: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(enthalpy(t) − enthalpy(0), ∫₀ᵗ (absorbed − losses) dt + handback(t)) [J/m] per frame of the /energy table;
    the integral by the trapezoid rule over the frames, ``handback`` 0 when the column is absent."""
    t = np.asarray(energy["time"], dtype=np.float64)
    rate = np.asarray(energy["absorbed"], dtype=np.float64) - np.asarray(energy["losses"], dtype=np.float64)
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(t))])
    handback = np.asarray(energy["handback"], dtype=np.float64) if "handback" in energy else np.zeros_like(t)
    enthalpy = np.asarray(energy["enthalpy"], dtype=np.float64)
    return enthalpy - enthalpy[0], integral + handback


def _field(ax: Any, fig: Any, temp: np.ndarray, x0: float, d0: float, h: float, liquidus: float) -> None:
    """``temp`` (nz, nx) [K] of cells of size ``h`` [m] from the corner (x0, d0) [m]: image (row 0 at the top, axes
    in mm), its colour bar and the liquidus contour (when something melts)."""
    nz, nx = temp.shape
    extent = (x0 * MM, (x0 + nx * h) * MM, (d0 + nz * h) * MM, d0 * MM)
    im = ax.imshow(temp, origin="upper", extent=extent, cmap="inferno", interpolation="nearest", aspect="equal")
    fig.colorbar(im, ax=ax, label="T [K]", shrink=0.9)
    if temp.max() >= liquidus and min(nz, nx) >= 2:
        xs = (x0 + (np.arange(nx) + 0.5) * h) * MM
        ds = (d0 + (np.arange(nz) + 0.5) * h) * MM
        ax.contour(xs, ds, temp, levels=[liquidus], colors="cyan", linewidths=1.0)
    ax.set(xlabel=axis_label("x", "mm"), ylabel=axis_label("depth", "mm"))


def plot_laser(results_h5: Path, out_dir: Path) -> list[Path]:
    """PNGs of a laser-track run (docs/laser.md).

    Figures are drawn on detached :class:`matplotlib.figure.Figure` objects rendered by Agg (no pyplot state, the
    caller's matplotlib backend is left alone).

    - ``<stem>_temperature.png``: the last frame's ``fields/T`` (x along the scan, depth down, mm) with the liquidus
      contour (cyan) and the patch box (white, from ``patch/origin`` and the patch's shape × its spacing), and below
      it ``patch/T`` on its box with the liquidus contour, the melt pool's depth and surface length
      (:func:`hybrid.analysis.melt_pool.melt_pool`) in its title; without a patch in the file, the field alone;
    - ``<stem>_energy.png``: the /energy table against time: absorbed power and losses [W/m]; and the balance,
      enthalpy(t) − enthalpy(0) against ∫(absorbed − losses) dt (trapezoid rule over the frames) + handback [J/m]
      (:func:`energy_balance`); not written when the file has no /energy table.

    Args:
        results_h5: a results file of a ``laser`` run.
        out_dir: directory for the PNGs (created).

    Returns:
        Paths of the written files.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    results_h5, out_dir = Path(results_h5), Path(out_dir)
    run = read_laser_run(results_h5)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    rows = 1 if run.patch_temperature is None else 2
    fig = Figure(figsize=(9.0, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, 1, squeeze=False)[:, 0])
    _field(axes[0], fig, run.temperature, 0.0, 0.0, run.spacing, run.liquidus)
    liquidus = f", liquidus {run.liquidus:g} K (cyan)" if np.isfinite(run.liquidus) else ""
    axes[0].set_title(f"fields/T at t = {run.time * MS:.4g} ms{liquidus}")
    if run.patch_temperature is not None and run.patch_origin is not None:
        pz, px = run.patch_temperature.shape
        h = run.patch_spacing
        ox, od = float(run.patch_origin[0]), float(run.patch_origin[1])
        box = Rectangle((ox * MM, od * MM), px * h * MM, pz * h * MM, fill=False, edgecolor="white", lw=1.2, ls="--")
        axes[0].add_patch(box)
        _field(axes[1], fig, run.patch_temperature, ox, od, h, run.liquidus)
        pool = melt_pool(run.patch_temperature, h, run.liquidus, cell_centred=True, origin=(ox, od))
        axes[1].set_title(
            f"patch/T (box dashed above): melt depth {pool.depth * 1e6:.1f} µm"
            f"{' (reaches the box bottom)' if pool.bottomed else ''}, surface length {pool.width * 1e6:.1f} µm, "
            f"peak {pool.peak:.0f} K"
        )
    paths.append(out_dir / f"{results_h5.stem}_temperature.png")
    fig.savefig(paths[-1], dpi=100)

    if run.energy is not None:
        e = run.energy
        t = np.asarray(e["time"], dtype=np.float64) * MS
        change, supplied = energy_balance(e)
        fig = Figure(figsize=(9.0, 3.4), layout="constrained")
        ax = fig.subplots(1, 2)
        ax[0].plot(t, e["absorbed"], "o-", ms=3, color="C0", label="absorbed")
        ax[0].set(xlabel=axis_label("time", "ms"), ylabel=axis_label("absorbed", "W/m"), title="laser power, losses")
        twin = ax[0].twinx()  # the losses are ~0.1 % of the absorbed power: their own scale
        twin.plot(t, e["losses"], "s-", ms=3, color="C1", label="losses")
        twin.set_ylabel(axis_label("losses", "W/m"), color="C1")
        ax[0].set_ylim(bottom=min(0.0, float(np.min(e["absorbed"]))))
        twin.set_ylim(bottom=min(0.0, float(np.min(e["losses"]))))
        ax[0].legend(handles=[*ax[0].get_lines(), *twin.get_lines()], fontsize=8)
        ax[1].plot(t, change, "o-", ms=3, label="enthalpy(t) − enthalpy(0)")
        label = "∫(absorbed − losses) dt + handback" if "handback" in e else "∫(absorbed − losses) dt"
        ax[1].plot(t, supplied, "x--", ms=5, label=label)
        gap = float(np.abs(change - supplied).max()) if change.size else 0.0
        ax[1].set(
            xlabel=axis_label("time", "ms"),
            ylabel=axis_label("energy", "J/m"),
            title=f"energy balance: largest gap {gap:.3g} J/m",
        )
        ax[1].legend(fontsize=8)
        paths.append(out_dir / f"{results_h5.stem}_energy.png")
        fig.savefig(paths[-1], dpi=100)
    return paths
