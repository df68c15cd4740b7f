"""The torch path of whole runs: the shipped ATG case with its monitored ensemble and the grain-growth jump surrogate
on the torch backend keep their state in torch on the case's device and follow the numpy runs (the CUDA variants
skip without a GPU; on a GPU benchmarks/device_checks.sh runs them)."""

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


GG = Path(__file__).resolve().parents[1] / "cases" / "graingrowth_hybrid.toml"
GG_SMALL = {  # two windows of the shipped jump surrogate (106 steps each) on a 64² grid, every window audited
    "grid.shape": [64, 64],
    "grid.lengths": [128.0, 128.0],
    "initial.grains": 16,
    "time.steps": 212,
    "output.every": 106,
    "stepper.audit_every": 1,
}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_the_grain_growth_surrogate_runs_on_the_torch_backend(device: str, tmp_path: Path) -> None:
    load_case(GG, GG_SMALL, out=tmp_path / "numpy.h5").run()
    sim = load_case(GG, {**GG_SMALL, "case.backend": "torch", "case.device": device}, out=tmp_path / "torch.h5")
    sim.run()
    eta = sim.state["eta"]
    assert isinstance(eta, torch.Tensor) and eta.device.type == device
    ref, run = read_output(tmp_path / "numpy.h5"), read_output(tmp_path / "torch.h5")
    a, b = ref["monitor"]["stepper"], run["monitor"]["stepper"]
    assert list(b["source"]) == list(a["source"]) and len(a["source"]) == 2
    np.testing.assert_allclose(b["uncertainty"], a["uncertainty"], rtol=1e-4)  # float32 network, same inputs
    np.testing.assert_array_equal(run["fields"]["grain"], ref["fields"]["grain"])
