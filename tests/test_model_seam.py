"""A model registered from outside the package (no edit of hybrid/) runs through the public API on a grid with a
no-flux axis, IMEX-stepped through the equation seam, and matches the closed-form decay of a Neumann mode."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hybrid
from hybrid.core.config import Option, Table, Tagged
from hybrid.core.io import read_output
from hybrid.core.registry import MODELS, Context, ModelSpec, register_model
from tests.core.test_integrators import Diffusion

NAME = "toy_neumann_diffusion"
KX, M = 2, 1  # the initial mode cos(2π KX x / Lx) cos(M π y / Ly)


def _initial(ctx: Context, init: Mapping[str, Any]) -> dict[str, np.ndarray]:
    x, y = ctx.grid.coordinates()
    lx, ly = ctx.grid.lengths
    return {"phi": np.cos(M * np.pi * y / ly)[:, None] * np.cos(2 * np.pi * KX * x / lx)[None, :]}


class _Equation(Diffusion):
    def __init__(self, ctx: Context, terms: Mapping[str, Any]) -> None:
        super().__init__(ctx.grid, ctx.backend, float(ctx.params["diffusivity"]))


@pytest.fixture
def toy_model() -> Iterator[str]:
    register_model(
        ModelSpec(
            name=NAME,
            build=_Equation,
            params=Table({"diffusivity": Option("float", 1.0, "D [length²/time]", min=0.0)}),
            initial=Tagged("kind", {"mode": Table({})}, default="mode"),
            initial_state=_initial,
            terms={},
            grid_ndim=2,
            periodic=(True, False),
            units={"phi": "1", "time": "s", "x": "m", "y": "m"},
        )
    )
    yield NAME
    MODELS.pop(NAME)


def test_a_registered_no_flux_model_runs_imex_from_a_case_file(toy_model: str, tmp_path: Path) -> None:
    lx, ly, nx, ny, d, dt, steps = 6.0, 2.0, 24, 9, 0.5, 0.2, 10
    case = tmp_path / "toy.toml"
    case.write_text(
        f'[case]\nname = "toy"\nmodel = "{toy_model}"\n[grid]\nlengths = [{lx}, {ly}]\nshape = [{nx}, {ny}]\n'
        f'[model]\ndiffusivity = {d}\n[time]\nintegrator = "imex"\ndt = {dt}\nsteps = {steps}\n'
        f'[output]\npath = "{tmp_path / "toy.h5"}"\nevery = 5\n'
    )
    sim = hybrid.load_case(case)
    assert sim.equation.grid.periodic == (True, False)
    sim.run()
    out = read_output(tmp_path / "toy.h5")
    dx, dy = lx / nx, ly / (ny - 1)  # no-flux axis: points on both walls
    lam = (2 * np.sin(np.pi * KX * dx / lx) / dx) ** 2 + (2 * np.sin(M * np.pi * dy / (2 * ly)) / dy) ** 2
    phi = out["fields"]["phi"]
    for frame, step in enumerate(out["step"]):
        np.testing.assert_allclose(phi[frame], phi[0] / (1 + dt * d * lam) ** step, atol=1e-12)
    assert out["step"][-1] == steps
