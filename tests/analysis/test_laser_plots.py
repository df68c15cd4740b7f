"""End-of-run plots of the laser track (hybrid/analysis/laser_plots.py): ``hybrid run`` of the shipped case writes
the temperature and energy PNGs, drawn on detached figures in the run's frame (box, liquidus, melt pool), and the
energy balance they draw closes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Rectangle

import hybrid.cases  # noqa: F401  (registers the models)
from hybrid.analysis.laser_plots import energy_balance, plot_laser
from hybrid.analysis.melt_pool import melt_pool
from hybrid.cli import main
from hybrid.core.registry import get_model

CASE = Path(__file__).resolve().parents[2] / "cases" / "laser_track.toml"


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure saved during the test, in order."""
    saved: list[Figure] = []
    original = Figure.savefig

    def capture(self: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    return saved


def test_hybrid_run_of_the_shipped_case_writes_the_laser_plots(
    tmp_path: Path, figures: list[Figure], capsys: pytest.CaptureFixture[str]
) -> None:
    """40 steps (0.8 ms, a melt pool), 2 frames: both PNGs are printed, are images of the figure's size with more
    than a few colours; the box drawn is the patch's (``patch/origin``, shape × spacing), the patch panel's title
    holds the melt pool of ``patch/T``; pyplot and the user's backend (svg here) are left alone."""
    assert get_model("laser").plot is plot_laser
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        out = tmp_path / "track.h5"
        sets = ["--set", "time.end=8e-4", "--set", "output.every=40"]
        assert main(["run", str(CASE), "--out", str(out), "--no-progress", *sets]) == 0
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    printed = capsys.readouterr().out
    pngs = [tmp_path / "track_temperature.png", tmp_path / "track_energy.png"]
    for png in pngs:
        assert f"plot: {png}" in printed
        image = imread(png)
        assert image.ndim == 3 and min(image.shape[:2]) > 200
        colours = np.unique(image[..., :3].reshape(-1, 3), axis=0)
        assert len(colours) > 50, f"{png.name}: {len(colours)} colours"

    with h5py.File(out) as f:
        assert f["fields/T"].shape[0] == 2
        patch_t, origin = f["patch/T"][-1], f["patch/origin"][-1]
    temperature, energy = figures
    boxes = [p for p in temperature.axes[0].patches if isinstance(p, Rectangle)]
    assert len(boxes) == 1
    (x, d), w, h = boxes[0].get_xy(), boxes[0].get_width(), boxes[0].get_height()
    np.testing.assert_allclose([x, d, w, h], [origin[0] * 1e3, origin[1] * 1e3, 1.2, 0.3], rtol=1e-12)  # mm
    pool = melt_pool(patch_t, 1e-5, 1923.0, cell_centred=True)
    assert pool.depth > 0.0
    (panel,) = [ax for ax in temperature.axes if ax.get_title().startswith("patch/T")]
    assert f"melt depth {pool.depth * 1e6:.1f} µm" in panel.get_title()
    assert len(panel.collections) >= 1  # the liquidus contour
    assert "energy balance" in energy.axes[1].get_title()


def test_the_energy_balance_is_the_trapezoid_rule_plus_the_handback() -> None:
    """A rate a − l = 2 t + 1 W/m at t = 0, 1, 3 s: the trapezoid rule is exact for linear rates (∫ = t² + t); the
    hand-back's running total is added as it stands."""
    t = np.array([0.0, 1.0, 3.0])
    table = {
        "time": t,
        "absorbed": 2.0 * t + 5.0,
        "losses": np.full(3, 4.0),
        "enthalpy": 10.0 + t**2 + t + np.array([0.0, 0.5, 1.5]),
        "handback": np.array([0.0, 0.5, 1.5]),
    }
    change, supplied = energy_balance(table)
    np.testing.assert_allclose(change, t**2 + t + [0.0, 0.5, 1.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(supplied, change, rtol=0, atol=1e-12)
    del table["handback"]
    np.testing.assert_allclose(energy_balance(table)[1], t**2 + t, rtol=0, atol=1e-12)


def test_a_file_without_patch_energy_or_case_still_gives_the_field(tmp_path: Path, figures: list[Figure]) -> None:
    """Only ``fields/T`` and ``time`` (no patch, no /energy table, no case attribute): the temperature PNG with the
    field alone (no case: no liquidus contour), its axes from ``grid_lengths`` (Lx over the samples), and no energy
    PNG."""
    path = tmp_path / "bare.h5"
    x = (np.arange(40) + 0.5) * 2.5e-5
    d = (np.arange(10) + 0.5) * 2.5e-5
    field = 300.0 + 2000.0 * np.exp(-(((x[None, :] - 5e-4) / 1e-4) ** 2) - (d[:, None] / 5e-5) ** 2)
    with h5py.File(path, "w") as f:
        f["fields/T"] = np.stack([np.full_like(field, 300.0), field])
        f["time"] = np.array([0.0, 1e-3])
        f.attrs["grid_lengths"] = np.array([1e-3, 2.5e-4])
    assert plot_laser(path, tmp_path / "plots") == [tmp_path / "plots" / "bare_temperature.png"]
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((0.0, 1.0)) and ax.get_ylim() == pytest.approx((0.25, 0.0))  # mm, down
    assert len(ax.collections) == 0  # no case, so no liquidus to contour
