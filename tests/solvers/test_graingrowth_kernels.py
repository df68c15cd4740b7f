"""Every grain-growth backend reproduces the plain numpy reference (1e-10 relative over 100 steps, float64)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import hybrid.solvers.graingrowth_kernels as kernels
from hybrid.cases import load_case
from hybrid.solvers.graingrowth_kernels import (
    KERNELS,
    STEP_KERNELS,
    graingrowth_rhs_numba,
    graingrowth_rhs_numpy,
    graingrowth_step_numba,
    make_graingrowth_rhs,
    make_graingrowth_step,
)

# dx, dy differ so that a swapped axis shows; mobility, alpha, beta, gamma, kappa
PARAMS = (1.5, 1.25, 0.8, 1.0, 1.1, 1.3, 2.0)


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _eta(q: int = 5, ny: int = 24, nx: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((q, ny, nx))


def _call(kind: str, name: str, eta: np.ndarray, device: str = "cpu", dt: float = 0.05) -> np.ndarray:
    fn = (KERNELS if kind == "rhs" else STEP_KERNELS)[name]
    args = PARAMS if kind == "rhs" else (dt, *PARAMS)
    if name == "torch":
        return fn(torch.from_numpy(eta).to(device), *args).cpu().numpy()
    return fn(eta, *args)


@pytest.mark.parametrize("kind", ["rhs", "step"])
@pytest.mark.parametrize(
    "name,device,parallel",
    [("numba", "cpu", False), ("numba", "cpu", True)] + [("torch", d, False) for d in _devices()],
)
@pytest.mark.parametrize("shape", [(5, 24, 40), (3, 160, 144), (1, 24, 40), (1, 7, 5)])
def test_kernel_equals_reference_on_one_call(
    kind: str, name: str, device: str, shape: tuple[int, int, int], parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both numba builds (serial, parallel over row blocks, including fewer rows than blocks) and Q = 1."""
    monkeypatch.setattr(kernels, "parallel_min_size", lambda: 0 if parallel else 1 << 62)
    eta = _eta(*shape)
    ref = _call(kind, "reference", eta)
    out = _call(kind, name, eta, device)
    assert out.shape == eta.shape and out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_parallel_threshold_follows_the_threading_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels.numba.config, "THREADING_LAYER", "workqueue")
    assert kernels.parallel_min_size() == kernels.PARALLEL_MIN_SIZE_WORKQUEUE
    monkeypatch.setattr(kernels.numba.config, "THREADING_LAYER", "omp")
    assert kernels.parallel_min_size() == kernels.PARALLEL_MIN_SIZE < kernels.PARALLEL_MIN_SIZE_WORKQUEUE


def test_reference_is_the_fan_chen_equation_at_one_point() -> None:
    """Hand-evaluate −L(−αη + βη³ + 2γη Σ_{p≠q} η_p² − κ∇²η) at one point of a small array."""
    eta = _eta(3, 6, 7, seed=4)
    dx, dy, L, a, b, g, k = PARAMS
    q, y, x = 1, 2, 6  # x = 6 is the last column: its right neighbour is column 0
    e = eta[q, y, x]
    lap = (eta[q, y, 5] - 2 * e + eta[q, y, 0]) / dx**2 + (eta[q, 1, x] - 2 * e + eta[q, 3, x]) / dy**2
    others = eta[0, y, x] ** 2 + eta[2, y, x] ** 2
    expected = -L * (-a * e + b * e**3 + 2 * g * e * others - k * lap)
    assert graingrowth_rhs_numpy(eta, *PARAMS)[q, y, x] == pytest.approx(expected, rel=1e-14)


def test_numba_out_buffer_is_used_and_checked() -> None:
    eta = _eta()
    out = np.empty_like(eta)
    assert graingrowth_rhs_numba(eta, *PARAMS, out=out) is out
    assert graingrowth_step_numba(eta, 0.1, *PARAMS, out=out) is out
    with pytest.raises(ValueError, match="overlap"):
        graingrowth_step_numba(eta, 0.1, *PARAMS, out=eta)
    with pytest.raises(ValueError, match="shape"):
        graingrowth_rhs_numba(eta, *PARAMS, out=np.empty((1, 2, 3)))
    with pytest.raises(ValueError, match=r"\(Q, ny, nx\)"):
        graingrowth_rhs_numba(eta[0], *PARAMS)


def test_factories() -> None:
    assert make_graingrowth_rhs("numpy") is KERNELS["numba"]
    assert make_graingrowth_step("torch") is STEP_KERNELS["torch"]
    assert make_graingrowth_rhs("reference") is graingrowth_rhs_numpy
    with pytest.raises(ValueError, match="allowed"):
        make_graingrowth_rhs("jax")


# --------------------------------------------------------------------------------------------- 100 steps, engine


def _case(backend: str, device: str, integrator: str) -> dict[str, Any]:
    return {
        "case": {"name": "eq", "model": "graingrowth", "seed": 7, "backend": backend, "device": device},
        "grid": {"lengths": [96.0, 72.0], "shape": [64, 48]},  # dx = 1.5, dy = 1.5, nx ≠ ny
        # reassignment off: its decisions are discrete, so they are tested on their own (test_grains.py)
        "model": {"order_parameters": 8, "reassign": False},
        "initial": {"kind": "voronoi", "grains": 24},
        "time": {"integrator": integrator, "dt": 0.1, "steps": 100},
    }


def _run(
    backend: str, integrator: str, device: str = "cpu", reference: bool = False, fused: bool = False
) -> np.ndarray:
    sim = load_case(_case(backend, device, integrator))
    sim.output.path = None
    eq: Any = sim.equation
    if reference:
        eq._rhs = KERNELS["reference"]
        eq._step = STEP_KERNELS["reference"]
    state = sim.state
    for _ in range(100):
        if fused:
            state = state.replace(eq.explicit_step(state, 0.1), 0.1)
        else:
            sim.step()
    state = state if fused else sim.state
    return np.array(state.numpy_fields()["eta"], copy=True)


@pytest.fixture(scope="module")
def references() -> dict[str, np.ndarray]:
    return {i: _run("numpy", i, reference=True) for i in ("euler", "imex")}


@pytest.mark.parametrize("integrator", ["euler", "imex"])
@pytest.mark.parametrize("backend,device", [("numpy", "cpu")] + [("torch", d) for d in _devices()])
def test_backend_matches_reference_over_100_steps(
    references: dict[str, np.ndarray], backend: str, device: str, integrator: str
) -> None:
    ref = references[integrator]
    out = _run(backend, integrator, device)
    assert np.max(np.abs(out - ref)) <= 1e-10 * np.max(np.abs(ref))
    # the run did evolve: the sharp Voronoi start has become diffuse
    assert 0.05 < np.mean((ref > 0.02) & (ref < 0.98)) < 0.9


@pytest.mark.parametrize("backend,device", [("numpy", "cpu")] + [("torch", d) for d in _devices()])
def test_fused_explicit_step_matches_reference_over_100_steps(
    references: dict[str, np.ndarray], backend: str, device: str
) -> None:
    out = _run(backend, "euler", device, fused=True)
    ref = references["euler"]
    assert np.max(np.abs(out - ref)) <= 1e-10 * np.max(np.abs(ref))


def test_explicit_step_does_not_overwrite_arrays_still_in_use() -> None:
    """The fused step recycles an old output buffer only when nothing references it any more."""
    sim = load_case(_case("numpy", "cpu", "euler"))
    sim.output.path = None
    eq: Any = sim.equation
    s0 = sim.state
    kept = [s0]
    for _ in range(4):
        kept.append(kept[-1].replace(eq.explicit_step(kept[-1], 0.1), 0.1))
    snapshot = [np.array(s["eta"], copy=True) for s in kept]
    for _ in range(4):  # more steps from the last state; the kept states must stay intact
        s = kept[-1].replace(eq.explicit_step(kept[-1], 0.1), 0.1)
        s = s.replace(eq.explicit_step(s, 0.1), 0.1)
    for s, snap in zip(kept, snapshot, strict=True):
        np.testing.assert_array_equal(s["eta"], snap)
    ids = {id(s["eta"]) for s in kept}
    assert len(ids) == len(kept)
