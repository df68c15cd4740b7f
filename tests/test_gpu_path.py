"""The torch path of a whole run: the shipped ATG case with its monitored ensemble on the torch backend keeps its
state in torch on the case's device and follows the numpy run (the CUDA variant skips without a GPU; on a GPU
benchmarks/device_checks.sh runs it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid.cases import load_case
from hybrid.core.io import read_output

ATG = Path(__file__).resolve().parents[1] / "cases" / "atg_film.toml"
SHORT = {"time.end": 2.0, "output.every": 25, "terms.elastic.audit_every": 20}  # 100 steps, 5 audits
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_the_monitored_atg_case_runs_on_the_torch_backend(device: str, tmp_path: Path) -> None:
    load_case(ATG, SHORT, out=tmp_path / "numpy.h5").run()
    sim = load_case(ATG, {**SHORT, "case.backend": "torch", "case.device": device}, out=tmp_path / "torch.h5")
    sim.run()
    h = sim.state["h"]
    assert isinstance(h, torch.Tensor) and h.device.type == device and h.dtype == torch.float64
    ref, run = read_output(tmp_path / "numpy.h5"), read_output(tmp_path / "torch.h5")
    # the same kernels' arithmetic in another library (and, on a GPU, float32 inference on another device)
    np.testing.assert_allclose(run["fields"]["h"], ref["fields"]["h"], rtol=0, atol=1e-9 if device == "cpu" else 1e-6)
    assert list(run["monitor"]["elastic"]["source"]) == list(ref["monitor"]["elastic"]["source"])
    assert np.count_nonzero(~np.isnan(run["monitor"]["elastic"]["audit_error"])) == 5
