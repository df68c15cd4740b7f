"""The `hybrid` command on tiny cases, and precise errors for bad case files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.cli import main

TINY = """
[case]
name = "tiny"
model = "atg"
seed = 1

[grid]
length = 32.0
points = 32

[initial]
kind = "random"
mean = 3.0
amplitude = 0.2
modes = 4

[terms.elastic]
provider = "linear"

[time]
integrator = "imex"
dt = 0.01
steps = 20

[output]
every = 10
"""


def _write(tmp_path: Path, text: str, name: str = "case.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_run_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY)
    out = tmp_path / "res.h5"
    assert main(["run", str(case), "--out", str(out), "--no-progress", "--set", "time.steps=30"]) == 0
    assert "30 steps" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fields/h" in text and "frames" in text


def test_console_script_help() -> None:
    res = subprocess.run([sys.executable, "-m", "hybrid.cli", "run", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--restart" in res.stdout and "--set" in res.stdout


@pytest.mark.parametrize(
    "edit,key,allowed",
    [
        (("dt = 0.01", "dtt = 0.01"), "time.dtt", "dt"),  # unknown key, with the allowed keys
        (("dt = 0.01", 'dt = "fast"'), "time.dt", "float"),  # wrong type
        (("dt = 0.01", "dt = -0.01"), "time.dt", "> 0"),  # out of range
        (('integrator = "imex"', 'integrator = "rk4"'), "time.integrator", "euler"),  # not a choice
        (('provider = "linear"', 'provider = "magic"'), "terms.elastic.provider", "fem"),  # unknown provider
        (('model = "atg"', 'model = "nope"'), "case.model", "atg"),  # unknown model
        (('kind = "random"', 'kind = "noise"'), "initial.kind", "sinusoid"),  # unknown initial kind
        (("points = 32", "points = 2"), "grid.points", ">= 4"),
        (("[output]", "[outputs]"), "outputs", "output"),  # unknown table
    ],
)
def test_bad_case_files_name_file_key_and_allowed_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], key: str, allowed: str
) -> None:
    case = _write(tmp_path, TINY.replace(*edit), "bad.toml")
    assert main(["run", str(case), "--out", str(tmp_path / "x.h5"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and key in err and allowed in err


def test_bad_override_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY)
    assert main(["run", str(case), "--set", "model.poisson=0.7", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model.poisson" in err and "0.5" in err


def test_malformed_toml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY + "\n[time\n", "broken.toml")
    assert main(["run", str(case), "--no-progress"]) == 2
    assert "broken.toml" in capsys.readouterr().err


def test_info_describes_the_shipped_weights(capsys: pytest.CaptureFixture[str]) -> None:
    from hybrid.couplers.providers import SHIPPED_WEIGHTS

    assert main(["info", str(SHIPPED_WEIGHTS)]) == 0
    out = capsys.readouterr().out
    assert "NN ensemble for term 'elastic'" in out and "monitor threshold" in out
    assert "for metric rho0, tolerance 0.02" in out and "for metric modulation, tolerance 0.05" in out
    assert "'linear_channels': [0, 1]" in out  # the exact-linear-response ensemble


def test_info_describes_the_shipped_jump_surrogate(capsys: pytest.CaptureFixture[str]) -> None:
    from hybrid.couplers.surrogate import SHIPPED_SURROGATES

    assert main(["info", str(SHIPPED_SURROGATES / "graingrowth_surrogate")]) == 0
    out = capsys.readouterr().out
    assert "jump surrogate for model 'graingrowth'" in out and "NN jump of 100 steps" in out
    assert "window error RMS" in out and "monitor threshold" in out


def test_train_writes_an_ensemble_and_prints_its_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hybrid.models.data import write_dataset
    from tests.models import synthetic_dataset

    data = tmp_path / "tiny.h5"
    write_dataset(data, synthetic_dataset(samples=80, points=16, group_size=4, seed=2), created="now")
    spec = _write(
        tmp_path,
        '[model]\nchannels = 4\nlayers = 1\nkernel_size = 3\ndilations = [1]\nlinear_response = "exact"\n\n'
        '[training]\nmembers = 5\nepochs = 2\nbatch_size = 16\ndevice = "cpu"\n',
        "train.toml",
    )
    assert main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / "m"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"written: {tmp_path / 'm'}: NN ensemble for term 'elastic'")
    assert "for metric rho0, tolerance 0.02" in out and "for metric modulation, tolerance 0.05" in out
    assert (tmp_path / "m" / "weights.pt").is_file()
