"""Runs meeting what real use throws at them: a second writer, a killed run, edited or damaged files, restarts
that extend the run or write elsewhere. Two-process tests run the other process with ``subprocess``, synchronised
through its standard streams and bounded by timeouts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from hybrid.cli import main
from hybrid.core.config import dumps_toml
from hybrid.core.io import Checkpoint, read_checkpoint, read_output, write_checkpoint
from tests.helpers import atg_case

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60  # seconds; each process here takes a few


def _case_file(tmp_path: Path) -> Path:
    """A tiny ATG case of 40 steps (time.end = 0.04, dt = 1e-3)."""
    case = atg_case(points=32, length=32.0, dt=1e-3)
    del case["time"]["steps"]
    case["time"]["end"] = 0.04
    case["output"] = {"every": 10, "checkpoint_every": 20}
    path = tmp_path / "tiny.toml"
    path.write_text(dumps_toml(case))
    return path


def _python(code: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _hybrid(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "hybrid.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


# a live run: steps 25 of 40 (frames at 0, 10, 20, checkpoint at 20), says so, waits for a line, then finishes
LIVE_RUN = """
    import sys
    from hybrid.cases import load_case
    sim = load_case("tiny.toml", out="x.h5")
    for _ in range(25):
        sim.step()
    print("ready", flush=True)
    sys.stdin.readline()
    sim.run()
    print("finished", flush=True)
"""


def test_overwrite_of_a_file_a_live_run_writes_is_refused_and_the_live_run_completes(tmp_path: Path) -> None:
    case = _case_file(tmp_path)
    live = _python(LIVE_RUN, tmp_path)
    try:
        assert live.stdout is not None and live.stdin is not None
        assert live.stdout.readline().strip() == "ready", live.stderr.read() if live.stderr else ""
        before = (tmp_path / "x.h5").read_bytes()

        second = _hybrid(["run", str(case), "--out", "x.h5", "--overwrite", "--no-progress", "--no-plots"], tmp_path)
        assert second.returncode == 2
        assert "x.h5 is held open by another process" in second.stderr and "left untouched" in second.stderr
        assert (tmp_path / "x.h5").read_bytes() == before  # not truncated, not a byte changed

        live.stdin.write("go\n")
        live.stdin.flush()
        out, err = live.communicate(timeout=TIMEOUT)
    finally:
        if live.poll() is None:
            live.kill()
            live.wait(timeout=TIMEOUT)
    assert live.returncode == 0 and "finished" in out, err
    data = read_output(tmp_path / "x.h5")
    np.testing.assert_array_equal(data["step"], [0, 10, 20, 30, 40])
    assert np.isfinite(data["fields"]["h"]).all()


def test_a_killed_run_keeps_its_frames_and_restarts_to_the_same_result(tmp_path: Path) -> None:
    """SIGKILL after step 25: frames to step 20 and the step-20 checkpoint stay; the lock dies with the process."""
    case = _case_file(tmp_path)
    assert main(["run", str(case), "--out", str(tmp_path / "ref.h5"), "--no-progress", "--no-plots"]) == 0
    killed = _python(LIVE_RUN.replace("sys.stdin.readline()", "import os, signal; os.kill(os.getpid(), 9)"), tmp_path)
    killed.communicate(timeout=TIMEOUT)
    assert killed.returncode == -9
    assert read_output(tmp_path / "x.h5")["step"].tolist() == [0, 10, 20]
    assert read_checkpoint(tmp_path / "x.ckpt.h5").step == 20

    rc = main(["run", str(case), "--out", str(tmp_path / "x.h5"), "--restart", str(tmp_path / "x.ckpt.h5")])
    assert rc == 0
    got, ref = read_output(tmp_path / "x.h5"), read_output(tmp_path / "ref.h5")
    np.testing.assert_array_equal(got["step"], ref["step"])
    np.testing.assert_array_equal(got["fields"]["h"], ref["fields"]["h"])  # bitwise


def test_restart_on_the_command_line_may_extend_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _case_file(tmp_path)
    common = ["--no-progress", "--no-plots"]
    assert main(["run", str(case), "--set", "time.end=0.06", "--out", str(tmp_path / "long.h5"), *common]) == 0
    assert main(["run", str(case), "--out", str(tmp_path / "x.h5"), *common]) == 0
    ckpt = str(tmp_path / "x.ckpt.h5")
    assert main(["run", str(case), "--set", "time.end=0.06", "--restart", ckpt, "--out", str(tmp_path / "x.h5")]) == 0
    got, ref = read_output(tmp_path / "x.h5"), read_output(tmp_path / "long.h5")
    np.testing.assert_array_equal(got["step"], ref["step"])
    np.testing.assert_array_equal(got["fields"]["h"], ref["fields"]["h"])  # bitwise
    capsys.readouterr()
    # physics may not change: the refusal names the key
    ckpt = str(tmp_path / "x.ckpt.h5")
    rc = main(["run", str(case), "--set", "time.end=0.08", "--set", "model.misfit=0.03", "--restart", ckpt])
    assert rc == 2 and "model.misfit = 0.04 there, 0.03 in this case" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"step": np.int64(-5)}, "step = -5 is not a step count"),
        ({"time": np.float64(np.nan)}, "time = nan is not a simulated time"),
        ({"step": np.int64(10**9)}, "does not match its checksum"),
    ],
    ids=["negative-step", "nan-time", "huge-step"],
)
def test_an_edited_checkpoint_does_not_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: dict, message: str
) -> None:
    case = _case_file(tmp_path)
    out = str(tmp_path / "x.h5")
    assert main(["run", str(case), "--out", out, "--no-progress", "--no-plots"]) == 0
    with h5py.File(tmp_path / "x.ckpt.h5", "r+") as h5:
        for key, value in edit.items():
            h5.attrs[key] = value
    capsys.readouterr()
    assert main(["run", str(case), "--out", out, "--restart", str(tmp_path / "x.ckpt.h5"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "x.ckpt.h5" in err and message in err


def test_a_checkpoint_with_a_step_beyond_the_case_does_not_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint whose checksum is right but whose step lies past the case's end (written by another tool)."""
    case = _case_file(tmp_path)
    assert main(["run", str(case), "--out", str(tmp_path / "x.h5"), "--no-progress", "--no-plots"]) == 0
    ck = read_checkpoint(tmp_path / "x.ckpt.h5")
    write_checkpoint(tmp_path / "far.ckpt.h5", Checkpoint(**{**ck.__dict__, "step": 10**9, "time": 1e6}))
    capsys.readouterr()
    assert main(["run", str(case), "--restart", str(tmp_path / "far.ckpt.h5"), "--out", str(tmp_path / "x.h5")]) == 2
    assert "beyond the 40 steps of this case" in capsys.readouterr().err


def test_a_damaged_results_file_is_named_and_a_restart_writes_a_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _case_file(tmp_path)
    assert main(["run", str(case), "--out", str(tmp_path / "ref.h5"), "--no-progress", "--no-plots"]) == 0
    first = _python(LIVE_RUN.replace("sys.stdin.readline()", "sim.close(); raise SystemExit(0)"), tmp_path)
    first.communicate(timeout=TIMEOUT)
    x = tmp_path / "x.h5"
    os.truncate(x, x.stat().st_size // 2)
    capsys.readouterr()
    assert main(["info", str(x)]) == 2
    err = capsys.readouterr().err
    assert f"{x}: the file is truncated" in err and "--restart" in err
    # continuing into the damaged file is refused, naming it; a new --out starts at the checkpoint's frame
    assert main(["run", str(case), "--out", str(x), "--restart", str(tmp_path / "x.ckpt.h5"), "--no-progress"]) == 2
    assert f"{x}: the file is truncated" in capsys.readouterr().err
    new = tmp_path / "y.h5"
    assert main(["run", str(case), "--out", str(new), "--restart", str(tmp_path / "x.ckpt.h5"), "--no-plots"]) == 0
    got, ref = read_output(new), read_output(tmp_path / "ref.h5")
    np.testing.assert_array_equal(got["step"], [20, 30, 40])
    np.testing.assert_array_equal(got["fields"]["h"], ref["fields"]["h"][2:])  # bitwise
