"""Every shipped case runs from the CLI at a tiny size; provider switches with --set work on the ATG case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybrid.cli import main
from hybrid.core.io import read_output

CASES = Path(__file__).resolve().parents[1] / "cases"


@pytest.mark.parametrize("provider", ["monitor", "fem", "linear", "nn"])
def test_atg_film_runs_with_each_provider(tmp_path: Path, provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"{provider}.h5"
    argv = [
        "run",
        str(CASES / "atg_film.toml"),
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "time.end=0.2",
        "--set",
        "output.every=5",
    ]
    if provider != "monitor":
        argv += ["--set", f"terms.elastic.provider={provider}"]
    assert main(argv) == 0
    res = read_output(out)
    assert res["fields"]["h"].shape == (3, 100) and np.isfinite(res["fields"]["h"]).all()
    assert f"[{provider}]" in capsys.readouterr().out
    if provider == "monitor":
        rows = res["monitor"]["elastic"]
        assert len(rows["step"]) == 10 and set(rows["source"]) <= {"nn", "dns"}
    assert (tmp_path / f"{provider}_profiles.png").exists()


def test_front_pf_runs_from_the_cli_and_writes_the_front(tmp_path: Path) -> None:
    out = tmp_path / "front.h5"
    sets = ["time.end=2.0", "output.every=25", "output.fields=['h','phi']"]
    assert main(["run", str(CASES / "front_pf.toml"), "--out", str(out), "--no-progress", *_sets(sets)]) == 0
    res = read_output(out)
    h, phi = res["fields"]["h"], res["fields"]["phi"]
    assert h.shape == (3, 128) and phi.shape == (3, 161, 128)
    assert np.all((h > 2.5) & (h < 7.5)) and np.abs(phi).max() <= 1.0 + 1e-9  # the maximum principle


def _sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


@pytest.mark.parametrize("provider", ["none", "eikonal"])
def test_front_kpz_runs_with_each_provider(tmp_path: Path, provider: str) -> None:
    out = tmp_path / f"{provider}.h5"
    sets = ["time.end=20.0", "output.every=5", f"terms.front_correction.provider={provider}"]
    assert main(["run", str(CASES / "front_kpz.toml"), "--out", str(out), "--no-progress", *_sets(sets)]) == 0
    h = read_output(out)["fields"]["h"]
    assert h.shape == (3, 128) and np.all(np.isfinite(h)) and np.all(h[-1].mean() > h[0].mean())  # it advances
