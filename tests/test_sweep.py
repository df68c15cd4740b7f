"""hybrid.sweep: the cartesian grid of a case on dask (2 local workers), a failing point that does not stop the
others, a rerun that skips finished points, a killed sweep that resumes, and what the index records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid.core.config import ConfigError
from hybrid.core.io import read_output
from hybrid.sweep import parse_grid, scalar_value, sweep

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "atg_film.toml"
TINY = {"terms.elastic.provider": "linear", "time.end": 1.0, "output.every": 25, "output.checkpoint_every": 0}


def test_parse_grid_reads_toml_values_and_keeps_bracketed_commas() -> None:
    grid = parse_grid(["model.misfit=0.03,0.04", "initial.kind=random,sinusoid", "x.y=[1,2],[3,4]"])
    assert grid == {"model.misfit": [0.03, 0.04], "initial.kind": ["random", "sinusoid"], "x.y": [[1, 2], [3, 4]]}
    for bad in (["model.misfit"], ["model.misfit="], ["a=1,,2"], ["a=1", "a=2"]):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)


def test_a_two_worker_sweep_reports_a_failing_point_and_resumes(tmp_path: Path) -> None:
    grid = {"model.misfit": [0.03, 0.04, "oops"]}
    out = tmp_path / "sw"
    index = sweep(CASE, grid, out, overrides=TINY, scalar="dominant_wavelength", workers=2)
    status = [p["status"] for p in index["points"]]
    assert status == ["done", "done", "failed"]
    assert "model.misfit" in index["points"][2]["error"] and "oops" in index["points"][2]["error"]
    for p in index["points"][:2]:
        res = read_output(out / p["output"])
        assert res["step"][-1] == 50 and p["wall_seconds"] > 0
        assert json.loads(json.dumps(p["overrides"])) == p["overrides"]
        h = res["fields"]["h"][-1]
        strongest = 1 + np.argmax(np.abs(np.fft.rfft(h - h.mean()))[1:])  # independent of the code under test
        assert p["scalar"] == pytest.approx(100.0 / strongest)
    assert json.loads((out / "sweep.json").read_text()) == index
    rows = (out / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("point,model.misfit,status,wall_seconds,dominant_wavelength") and len(rows) == 4
    assert rows[3].split(",")[2] == "failed"
    assert (out / "sweep_dominant_wavelength.png").stat().st_size > 0

    # a rerun skips the finished points (their files untouched) and retries the failed one
    before = [(out / p["output"]).stat().st_mtime_ns for p in index["points"][:2]]
    again = sweep(CASE, grid, out, overrides=TINY, scalar="dominant_wavelength", workers=0)
    assert [p["status"] for p in again["points"]] == status
    assert [(out / p["output"]).stat().st_mtime_ns for p in again["points"][:2]] == before

    # a sweep killed while point 1 ran: its entry still pending and its file cut short
    killed = json.loads((out / "sweep.json").read_text())
    killed["points"][1].update(status="pending", wall_seconds=None, scalar=None)
    (out / "sweep.json").write_text(json.dumps(killed))
    (out / killed["points"][1]["output"]).write_bytes(b"\x89HDF\r\n\x1a\n cut")
    resumed = sweep(CASE, grid, out, overrides=TINY, scalar="dominant_wavelength", workers=0)
    assert [p["status"] for p in resumed["points"]] == status
    assert (out / resumed["points"][0]["output"]).stat().st_mtime_ns == before[0]
    assert resumed["points"][1]["scalar"] == pytest.approx(index["points"][1]["scalar"])  # the same run again
    assert read_output(out / resumed["points"][1]["output"])["step"][-1] == 50


def test_a_folder_of_another_sweep_or_a_bad_scalar_is_refused_before_any_run(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    sweep(CASE, {"model.misfit": [0.04]}, out, overrides=TINY, workers=0)
    with pytest.raises(ConfigError, match=r"holds a different sweep .*grid"):
        sweep(CASE, {"model.misfit": [0.03]}, out, overrides=TINY, workers=0)
    with pytest.raises(ConfigError, match=r"unknown scalar 'speed'"):
        sweep(CASE, {"model.misfit": [0.04]}, tmp_path / "other", overrides=TINY, scalar="speed", workers=0)
    with pytest.raises(ConfigError, match=r"model\.misfitt"):
        sweep(CASE, {"model.misfitt": [0.04]}, tmp_path / "typo", overrides=TINY, workers=0)
    assert not (tmp_path / "other").exists() and not (tmp_path / "typo").exists()


def test_scalars_read_the_results_file(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    sweep(CASE, {"model.misfit": [0.04]}, out, overrides=TINY, workers=0)
    path = out / "point-0000.h5"
    h = read_output(path)["fields"]["h"][-1]
    assert scalar_value("final:h:max", path) == pytest.approx(h.max())
    assert scalar_value("final:h:mean", path) == pytest.approx(h.mean())
    assert scalar_value("wall_seconds", path) > 0
    assert np.isnan(scalar_value("nn_fraction", path))  # no monitor in this run


def test_the_sweep_command_reports_failed_points_in_its_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hybrid.cli import main

    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    args = ["sweep", str(CASE), "--grid", "model.misfit=0.04,oops", *sets, "--out", str(tmp_path / "s")]
    assert main([*args, "--workers", "0", "--scalar", "final:h:max", "--no-progress"]) == 4
    out = capsys.readouterr().out
    assert "1 of 2 points done" in out and "failed point-0001.h5" in out
    assert (tmp_path / "s" / "sweep_final_h_max.png").is_file()
    assert main(["sweep", str(CASE), "--grid", "model.misfit", "--out", str(tmp_path / "t")]) == 2  # no values
