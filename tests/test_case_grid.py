"""``grid.spacing`` instead of ``grid.shape`` (L/h points on a periodic axis, L/h + 1 on a bounded one) and
``output.spacing`` for a model that samples its fields itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.cases import resolve_case
from hybrid.core.config import ConfigError

CASES = Path(__file__).resolve().parents[1] / "cases"


def test_spacing_gives_the_grid_shape_would() -> None:
    laser = resolve_case(CASES / "laser_track.toml")  # bounded axes: nodes on both walls
    assert laser.context.grid.points == (151, 51) and laser.context.grid.spacing == pytest.approx((2e-5, 2e-5))
    same = resolve_case(CASES / "laser_track.toml", {"grid.shape": [151, 51]})  # the override replaces spacing
    assert "spacing" not in same.data["grid"] and same.context.grid.points == laser.context.grid.points
    front = resolve_case(CASES / "front_pf.toml", {"grid.spacing": 0.5, "grid.lengths": [64.0, 16.0]})
    assert front.context.grid.points == (128, 33)  # x periodic: 64/0.5; y no-flux: 16/0.5 + 1


def test_a_spacing_that_does_not_divide_the_lengths_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"grid\.spacing.*not a whole number"):
        resolve_case(CASES / "laser_track.toml", {"grid.spacing": 3e-5})
    with pytest.raises(ConfigError, match=r"grid\.spacing.*from grid\.lengths / grid\.spacing"):
        resolve_case(CASES / "laser_track.toml", {"grid.lengths": [1.0, 1.0]})  # 50001² nodes at 20 µm


def test_output_spacing_sets_the_laser_samples() -> None:
    from hybrid.cases import build_simulation

    sim = build_simulation(resolve_case(CASES / "laser_track.toml", {"output.spacing": 1e-4}))
    assert sim.equation.out_x.size == 30 and sim.equation.out_z.size == 10
    with pytest.raises(ConfigError, match=r"output\.spacing.*allowed: 1 to 32768"):
        build_simulation(resolve_case(CASES / "laser_track.toml", {"output.spacing": 1e-2}))
