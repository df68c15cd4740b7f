"""Run loop: output schedule, exact restart, NaN/inf guard, step-by-step driving."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from hybrid.cases import load_case
from hybrid.core.io import read_checkpoint, read_output
from hybrid.core.simulation import SimulationBlowUp
from tests.helpers import atg_case

ATG_FILM = Path(__file__).resolve().parents[2] / "cases" / "atg_film.toml"
GRAIN_GROWTH = ATG_FILM.parent / "graingrowth.toml"


def _base_case(tmp_path: Path, name: str, **time: object) -> dict:
    case = atg_case(points=32, length=32.0, steps=40, dt=1e-3)
    case["time"].update(time)
    case["output"] = {"path": str(tmp_path / f"{name}.h5"), "every": 10, "checkpoint_every": 20}
    return case


_case = _base_case


def test_output_follows_the_schedule_and_layout(tmp_path: Path) -> None:
    case = _case(tmp_path, "a", steps=45)
    case["output"]["terms"] = ["elastic"]
    sim = load_case(case)
    sim.run()
    out = read_output(tmp_path / "a.h5")
    np.testing.assert_array_equal(out["step"], [0, 10, 20, 30, 40, 45])
    np.testing.assert_allclose(out["time"], out["step"] * 1e-3, rtol=1e-12)
    assert out["fields"]["h"].shape == (6, 32)
    assert out["terms"]["elastic"].shape == (6, 32)
    with h5py.File(tmp_path / "a.h5") as f:
        case_text = f.attrs["case"]
        assert "[terms.elastic]" in case_text and 'provider = "linear"' in case_text
        assert f.attrs["backend"] == "numpy"
        assert "run" in f["timing"].attrs
    assert (tmp_path / "a.xdmf").exists()
    # the output reproduces its run: the stored case text is a complete case
    sim2 = load_case(__import__("tomllib").loads(case_text), {"output.path": str(tmp_path / "b.h5")})
    sim2.run()
    np.testing.assert_array_equal(read_output(tmp_path / "b.h5")["fields"]["h"], out["fields"]["h"])


@pytest.mark.parametrize("integrator,provider", [("euler", "linear"), ("imex", "linear"), ("imex", "fem")])
def test_restart_is_bit_identical(tmp_path: Path, integrator: str, provider: str) -> None:
    """With fem, the warm-started solver's history (previous solutions, factorised geometry) is checkpointed."""

    def _case(tmp_path: Path, name: str, **time: object) -> dict:
        case = _base_case(tmp_path, name, **time)
        case["terms"]["elastic"]["provider"] = provider
        return case

    full = load_case(_case(tmp_path, "full", integrator=integrator))
    full.run()
    ref = read_output(tmp_path / "full.h5")

    # interrupted run: stops at step 33 (after the step-20 checkpoint and the step-30 frame), without closing
    case = _case(tmp_path, "cut", integrator=integrator)
    sim = load_case(case)
    for _ in range(33):
        sim.step()
    sim.close()
    ckpt = tmp_path / "cut.ckpt.h5"
    assert read_checkpoint(ckpt).step == 20

    again = load_case(case)
    again.restart_from(ckpt)
    again.run()
    out = read_output(tmp_path / "cut.h5")
    np.testing.assert_array_equal(out["step"], ref["step"])
    np.testing.assert_array_equal(out["time"], ref["time"])
    np.testing.assert_array_equal(out["fields"]["h"], ref["fields"]["h"])  # bitwise


def test_restart_refuses_a_checkpoint_of_another_case(tmp_path: Path) -> None:
    sim = load_case(_case(tmp_path, "one"))
    sim.run()
    other = load_case(_case(tmp_path, "one", dt=2e-3))
    with pytest.raises(ValueError, match="different case"):
        other.restart_from(tmp_path / "one.ckpt.h5")


def test_blow_up_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    # grain growth, explicit Euler at dt = 0.8, 1.6x the limit dx² / (4 L κ) = 0.5: grid-scale modes grow by
    # |1 - 8 L κ dt / dx²| = 2.2 per step, the cubic term takes over and η overflows within about ten steps;
    # checkpoints every 2 steps come before that (a negative h of ATG is caught earlier, see below)
    sets = {"grid.shape": [32, 32], "grid.lengths": [64.0, 64.0], "initial.grains": 6, "model.order_parameters": 8}
    sets |= {"time.integrator": "euler", "time.dt": 0.8, "time.steps": 2000}
    sets |= {"output.every": 50, "output.checkpoint_every": 2, "output.check_every": 1}
    sim = load_case(GRAIN_GROWTH, sets, out=tmp_path / "boom.h5", progress=False)
    with pytest.raises(SimulationBlowUp, match="field 'eta' became NaN/inf at step") as err:
        sim.run()
    assert "boom.ckpt.h5" in str(err.value)
    ck = read_checkpoint(tmp_path / "boom.ckpt.h5")
    assert np.isfinite(ck.fields["eta"]).all() and ck.step > 0
    assert f"step {ck.step})" in str(err.value)  # the message names the checkpoint that was kept
    out = read_output(tmp_path / "boom.h5")  # frames written before the blow-up are intact and finite
    assert len(out["step"]) >= 1 and np.isfinite(out["fields"]["grain"]).all()


def test_a_negative_film_thickness_stops_the_run_like_a_blow_up(tmp_path: Path) -> None:
    """Explicit Euler past its limit: h oscillates below 0 long before it overflows; the run stops there."""
    sets = {"terms.elastic.provider": "linear", "time.integrator": "euler", "time.dt": 0.01, "time.end": 5.0}
    sets |= {"output.every": 5, "output.checkpoint_every": 5}
    sim = load_case(ATG_FILM, sets, out=tmp_path / "neg.h5", progress=False)
    with pytest.raises(SimulationBlowUp, match=r"field 'h' fell below 0 \(minimum -") as err:
        sim.run()
    assert sim.state.step < 500 and "neg.ckpt.h5" in str(err.value)
    ck = read_checkpoint(tmp_path / "neg.ckpt.h5")
    assert f"(step {ck.step})" in str(err.value) and ck.fields["h"].min() >= 0
    assert read_output(tmp_path / "neg.h5")["fields"]["h"].min() >= 0  # no frame holds the unphysical state


def test_a_provider_refusing_an_unphysical_state_stops_the_run_with_its_reason(tmp_path: Path) -> None:
    """The provider's input check raises UnphysicalState on h < 0 between two checks; the run reports a blow-up."""
    sets = {"terms.elastic.provider": "fem", "time.integrator": "euler", "time.dt": 0.05, "time.end": 20.0}
    sets |= {"output.every": 1000, "output.checkpoint_every": 2, "output.check_every": 1000}
    sim = load_case(ATG_FILM, sets, out=tmp_path / "fem.h5", progress=False)
    with pytest.raises(SimulationBlowUp, match=r"unphysical state: term 'elastic': field 'h' fell below 0 \(") as err:
        sim.run()
    ck = read_checkpoint(tmp_path / "fem.ckpt.h5")
    assert ck.step > 0 and ck.fields["h"].min() >= 0 and f"(step {ck.step})" in str(err.value)


def test_step_by_step_driving_without_output() -> None:
    case = atg_case(points=32, length=32.0, steps=5)
    sim = load_case(case)
    sim.output.path = None
    h0 = sim.state.numpy_fields()["h"].copy()
    for _ in range(5):
        state = sim.step()
    assert state.step == 5 and state.time == pytest.approx(5e-3)
    assert np.isclose(state.numpy_fields()["h"].mean(), h0.mean(), rtol=1e-13)  # mass is conserved (F = 0)
    assert sim.equation.terms["elastic"].calls == 5
