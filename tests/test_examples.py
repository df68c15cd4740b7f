"""The embedding examples under examples/ run, and what they compute is checked against independent references."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import hybrid

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_pypde_equation_with_a_hybrid_provider_grows_a_ripple_at_the_linear_rate() -> None:
    pytest.importorskip("pde")
    example = _example("pypde_surface_diffusion")
    h, rate = example.run("linear", t_end=10.0)
    p = hybrid.resolve_case(example.CASE).data["model"]
    rho0 = p["young"] * p["misfit"] ** 2 / (2 * (1 - p["poisson"] ** 2))
    k, dx = 2 * np.pi * 4 / 100.0, 1.0
    s = (2 * np.sin(k * dx / 2) / dx) ** 2  # py-pde's second-order Laplacian of the mode; the law's Λ is exact |k|
    omega = p["mobility"] * (4 * rho0 * k * s - p["gamma_film"] * s**2)  # ω(k) of docs/physics.md §1 on this grid
    assert rate == pytest.approx(omega, rel=1e-3)  # what is left: Euler's O(dt ω) and the O(A²) nonlinearity
    assert h.shape == (100,)


def test_a_numpy_loop_reads_the_monitors_decision_log() -> None:
    h, log, summary = _example("numpy_monitor_loop").run(steps=300, audit_every=100)
    assert np.all(np.isfinite(h)) and len(log["step"]) == 300 and set(np.unique(log["source"])) <= {"nn", "dns"}
    assert summary["nn_fraction"] == pytest.approx(np.mean(log["source"] == "nn"))
    assert np.count_nonzero(~np.isnan(log["audit_error"])) == 3 == summary["audits"]


def test_a_torch_loop_keeps_tensors_and_matches_the_same_loop_in_numpy() -> None:
    example = _example("torch_loop")
    h = example.run("cpu", steps=200)
    assert isinstance(h, torch.Tensor) and h.dtype == torch.float64 and h.device.type == "cpu"
    nn = hybrid.load_provider("elastic", "nn", case=example.CASE)
    x = np.arange(100) * 1.0
    ref = 3.0 + 0.05 * np.cos(2 * np.pi * 4 * x / 100.0)
    for _ in range(200):
        mu = -6.0 * (np.roll(ref, -1) - 2 * ref + np.roll(ref, 1)) + nn(ref)
        ref = ref + 2e-3 * 5.0 * (np.roll(mu, -1) - 2 * mu + np.roll(mu, 1))
    np.testing.assert_allclose(h.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_torch_loop_runs_on_the_gpu() -> None:
    example = _example("torch_loop")
    gpu, cpu = example.run("cuda", steps=200), example.run("cpu", steps=200)
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), rtol=0, atol=1e-5)  # float32 inference on each device
