"""End-of-run plots of the front cases (hybrid/analysis/front_plots.py) through ``hybrid run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hybrid.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _image_colours(path: Path) -> int:
    with Image.open(path) as im:
        return len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0))


@pytest.mark.parametrize(
    ("case", "sets", "pngs"),
    [
        ("front_kpz.toml", ["time.end=10", "output.every=2"], ["fronts"]),
        ("front_pf.toml", ["time.end=2", "output.every=25", 'output.fields=["h","phi"]'], ["fronts", "phi"]),
    ],
)
def test_hybrid_run_draws_the_fronts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, sets: list[str], pngs: list[str]
) -> None:
    """Both front cases end with their plots: h(x) at a few frames with the mean height and roughness, and for a
    phase-field run that saved φ, the last φ with its front; each a real image (many colours) named on stdout."""
    out = tmp_path / "run.h5"
    args = ["run", str(ROOT / "cases" / case), "--out", str(out), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in pngs:
        png = tmp_path / f"run_{name}.png"
        assert f"plot: {png}" in printed and png.exists() and _image_colours(png) > 50
