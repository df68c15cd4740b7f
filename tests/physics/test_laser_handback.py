"""The hand-back of the patch temperature's energy to the coarse laser model (docs/laser.md,
``terms.patch_temperature.couple_every``): the mapping's conservation on aligned and non-aligned grids (against an
independent overlap computation), exact reproduction of linear fields, the energy balance with the cfd patch, the
restart, and the refusal of bad values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybrid.cases import resolve_case
from hybrid.core.config import ConfigError
from hybrid.core.state import State
from hybrid.solvers.laser import LaserCoarse

from .test_laser import CASE, CONSTANT, simulation

CFD_SMALL_PATCH = [  # 40 × 12 cells of 10 µm, 0.1 ms per call
    "terms.patch_temperature.provider=cfd",
    "terms.patch_temperature.size=[4e-4, 1.2e-4]",
    "terms.patch_temperature.window=1e-4",
]
SMALL = {"grid.lengths": [1.5e-3, 0.5e-3], "grid.shape": [76, 26]}  # 20 µm mesh, 76 × 26 nodes


def model(overrides: dict[str, Any], tmp_path: Path) -> LaserCoarse:
    eq = simulation({**SMALL, **overrides}, tmp_path).equation
    assert isinstance(eq, LaserCoarse)
    return eq


def dual_rectangles(eq: LaserCoarse) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each node's control volume [x0, x1] × [z0, z1] (nz, nx) [m], clipped to the plate."""
    nz, nx = eq.shape
    x = np.arange(nx) * eq.dx
    z = np.arange(nz) * eq.dz
    x0, x1 = np.maximum(x - eq.dx / 2, 0.0), np.minimum(x + eq.dx / 2, x[-1])
    z0, z1 = np.maximum(z - eq.dz / 2, 0.0), np.minimum(z + eq.dz / 2, z[-1])
    return tuple(np.broadcast_to(a, (nz, nx)) for a in (x0[None], x1[None], z0[:, None], z1[:, None]))  # type: ignore[return-value]


def integral_over(rect: tuple[float, float, float, float], values: np.ndarray, origin: np.ndarray, h: float) -> float:
    """∫ of the piecewise-constant patch ``values`` (pz, px) over the rectangle (x0, x1, z0, z1), cell by cell."""
    pz, px = values.shape
    cx0 = origin[0] + np.arange(px) * h
    cz0 = origin[1] + np.arange(pz) * h
    ox = np.clip(np.minimum(rect[1], cx0 + h) - np.maximum(rect[0], cx0), 0.0, None)
    oz = np.clip(np.minimum(rect[3], cz0 + h) - np.maximum(rect[2], cz0), 0.0, None)
    return float((oz[:, None] * ox[None, :] * values).sum())


@pytest.mark.parametrize(
    "h,origin",
    [(1e-5, (0.3e-3, 0.0)), (7.3e-6, (0.3123e-3, 0.0)), (2.7e-5, (0.2e-3 + 3.3e-6, 0.0))],
    ids=["aligned-10um", "non-aligned-7.3um", "non-aligned-27um"],
)
def test_the_hand_back_conserves_the_patch_energy_node_by_node(tmp_path: Path, h: float, origin: tuple) -> None:
    """Ti-6Al-4V (nonlinear E(T)), a random coarse field and a random patch: every node whose control volume lies
    in the box gets m_i E_i = ∫E_patch over that control volume (independent cell-by-cell overlaps; to 1e-13 of
    the node's energy: round-off of a sum of a few hundred terms), every other node keeps its E bit for bit, and
    the returned energy is Σ m_i ΔE_i (to 1e-12 of the box's energy)."""
    eq = model({}, tmp_path)
    rng = np.random.default_rng(3)
    energy = eq.mat.energy(rng.uniform(300.0, 2600.0, eq.shape))
    before = energy.copy()
    patch = rng.uniform(300.0, 2600.0, (int(2.1e-4 / h), int(6.1e-4 / h)))
    o = np.array(origin)
    added = eq.hand_back(energy, patch, o, h)
    x0, x1, z0, z1 = dual_rectangles(eq)
    inside = (x0 >= o[0]) & (x1 <= o[0] + patch.shape[1] * h) & (z0 >= o[1]) & (z1 <= o[1] + patch.shape[0] * h)
    assert inside.sum() > 50
    np.testing.assert_array_equal(energy[~inside], before[~inside])
    mass = eq.mass.reshape(eq.shape)
    e_patch = eq.mat.energy(patch)
    for iz, ix in zip(*np.nonzero(inside), strict=True):
        ref = integral_over((x0[iz, ix], x1[iz, ix], z0[iz, ix], z1[iz, ix]), e_patch, o, h)
        assert abs(mass[iz, ix] * energy[iz, ix] - ref) <= 1e-13 * ref
    change = float((mass * (energy - before)).sum())
    box = float((mass * energy)[inside].sum())
    assert abs(added - change) <= 1e-12 * box


def test_the_coarse_patch_handed_back_reproduces_a_linear_field(tmp_path: Path) -> None:
    """Constant properties (E linear in T): the coarse patch samples the Q1 field at 10 µm cell centres (exact for a
    linear field, and each cell's value is its mean), so :meth:`LaserCoarse.hand_back` (called directly: the model
    skips the hand-back of its own ``coarse`` field, next test) gives each node the mean of the linear field over
    its control volume: the node's own value for T linear in x and, for T linear in z, away from the top; the top
    nodes' half control volumes [0, dz/2] give T(dz/4). Both exactly (to 1e-12 of 2000 K)."""
    eq = model(CONSTANT, tmp_path)
    term = eq.terms["patch_temperature"]
    nz, nx = eq.shape
    x = np.arange(nx) * eq.dx
    z = np.arange(nz) * eq.dz

    for temp, top_expected in (
        (np.broadcast_to(400.0 + 1e6 * x[None, :], (nz, nx)), None),
        (np.broadcast_to(2000.0 - 3e6 * z[:, None], (nz, nx)), 2000.0 - 3e6 * eq.dz / 4),
    ):
        state = State({"E": eq.mat.energy(np.array(temp))}, 1e-3, 50, eq.backend)
        energy = np.array(state["E"])
        eq.hand_back(energy, term(state), term.origin(state.time), term.spacing)
        t_new = eq.temperature(energy)
        changed = np.nonzero(energy != np.asarray(state["E"]))
        assert changed[0].size > 0
        rows = np.unique(changed[0])
        interior = rows[rows > 0]
        np.testing.assert_allclose(t_new[interior], temp[interior], rtol=0, atol=1e-12 * 2000)
        cols = np.unique(changed[1])
        if top_expected is None:
            np.testing.assert_allclose(t_new[0], temp[0], rtol=0, atol=1e-12 * 2000)
        else:
            np.testing.assert_allclose(t_new[0, cols], top_expected, rtol=0, atol=1e-12 * 2000)


def test_the_coarse_provider_is_not_handed_back(tmp_path: Path) -> None:
    """``coarse`` is the coarse field itself: with couple_every = 1 the run is bit for bit the uncoupled one."""
    ends = []
    for k in (0, 1):
        (tmp_path / str(k)).mkdir()
        sim = simulation({**SMALL, "terms.patch_temperature.couple_every": k, "time.steps": 10}, tmp_path / str(k))
        sim.run()
        assert isinstance(sim.equation, LaserCoarse) and sim.equation.handback == 0.0
        ends.append(np.asarray(sim.state["E"]))
    np.testing.assert_array_equal(ends[0], ends[1])


def test_the_energy_balance_closes_with_the_cfd_hand_back(tmp_path: Path) -> None:
    """Ti-6Al-4V with melting and losses, the cfd patch (40 × 12 cells of 10 µm, window 0.1 ms) handed back every
    5 steps, stepped as the run loop does (stepper, then the model's after_step): each backward-Euler step changes
    ∫E dA by dt (absorbed − losses) (bound 1e-5 of q′ dt, the Newton tolerance as in test_laser) and each hand-back
    by exactly what it adds to ``handback`` (1e-12 of ∫E dA: round-off), at the coupling steps only."""
    sim = simulation(
        {
            **SMALL,
            "terms.patch_temperature.provider": "cfd",
            "terms.patch_temperature.size": [4e-4, 1.2e-4],
            "terms.patch_temperature.window": 1e-4,
            "terms.patch_temperature.couple_every": 5,
        },
        tmp_path,
    )
    eq = sim.equation
    assert isinstance(eq, LaserCoarse) and eq.couple_every == 5
    dt = sim.stepper.dt
    state, coupled = sim.state, []
    for _ in range(40):
        before = eq.energy_content(np.asarray(state["E"]))
        stepped = sim.stepper(state)
        after = eq.energy_content(np.asarray(stepped["E"]))
        step_in = dt * eq.laser_load(state.time + 0.5 * dt).sum()
        step_out = dt * eq.power_balance(stepped)[1]
        assert abs((after - before) - (step_in - step_out)) <= 1e-5 * eq.q_line * dt
        handed = eq.handback
        state = eq.after_step(stepped)
        final = eq.energy_content(np.asarray(state["E"]))
        assert abs((final - after) - (eq.handback - handed)) <= 1e-12 * final
        if eq.handback != handed:
            coupled.append(state.step)
    assert coupled == [5, 10, 15, 20, 25, 30, 35, 40]
    assert eq.terms["patch_temperature"].calls == 8
    assert eq.temperature(np.asarray(state["E"])).max() > eq.mat.liquidus


def test_a_restart_with_hand_backs_continues_bit_for_bit(tmp_path: Path) -> None:
    """The cfd patch (small, as above) handed back every 3 steps, checkpoint at step 10 (between two hand-backs):
    the restarted run ends bit for bit where the uninterrupted one does (fields, patch, energy table with its
    handback column)."""
    from hybrid.cli import main
    from hybrid.core.io import read_output, read_table

    def run(out: Path, steps: int, *extra: str) -> None:
        sets = [f"time.steps={steps}", "output.every=10", "output.checkpoint_every=10", *CFD_SMALL_PATCH,
                "terms.patch_temperature.couple_every=3"]  # fmt: skip
        argv = ["run", str(CASE), "--out", str(out), "--no-progress", "--no-plots", *extra]
        assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0

    run(tmp_path / "full.h5", 30)
    run(tmp_path / "part.h5", 10)
    run(tmp_path / "part.h5", 30, "--restart", str(tmp_path / "part.ckpt.h5"))
    a, b = read_output(tmp_path / "full.h5"), read_output(tmp_path / "part.h5")
    for group in ("fields", "patch"):
        for name in a[group]:
            np.testing.assert_array_equal(b[group][name], a[group][name])
    ea, eb = read_table(tmp_path / "full.h5", "energy"), read_table(tmp_path / "part.h5", "energy")
    assert ea["handback"][-1] != 0.0
    for column in ea:
        np.testing.assert_array_equal(eb[column], ea[column])


@pytest.mark.parametrize("value", [-1, 1.5, "often"])
def test_a_bad_couple_every_names_the_key(value: Any) -> None:
    key = "terms.patch_temperature.couple_every"
    with pytest.raises(ConfigError) as err:
        resolve_case(CASE, {key: value})
    assert key in str(err.value), str(err.value)


def test_a_provider_that_does_not_place_its_patch_cannot_hand_back() -> None:
    """A provider without origin(time) and spacing (e.g. a future one that forgot them) is refused at build time."""

    class Bare:
        provider = "bare"
        couple_every = 5

    rc = resolve_case(CASE, {**SMALL})
    with pytest.raises(ConfigError, match=r"terms\.patch_temperature\.couple_every.*'bare'"):
        LaserCoarse(rc.context, {"patch_temperature": Bare()})
