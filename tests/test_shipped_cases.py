"""Every shipped ATG case runs from the CLI at a tiny size; provider switches with --set work on it."""

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
