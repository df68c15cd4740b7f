"""Run loop: output schedule, exact (and extending) restart, NaN/inf and bounds guard, step-by-step driving."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hybrid.cases import load_case
from hybrid.core.io import Checkpoint, OutputFile, read_checkpoint, read_output, write_checkpoint
from hybrid.core.simulation import IncompleteOutput, SimulationBlowUp
from hybrid.couplers.monitor import EnsemblePrediction, Monitor
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
    with pytest.raises(ValueError, match=r"different case \(time.dt = 0.001 there, 0.002 in this case\)"):
        other.restart_from(tmp_path / "one.ckpt.h5")
    physics = load_case(_case(tmp_path, "one"), {"model.mobility": 2.0})
    with pytest.raises(ValueError, match=r"model\.mobility"):
        physics.restart_from(tmp_path / "one.ckpt.h5")
    initial = load_case(_case(tmp_path, "one"), {"initial.amplitude": 0.2})
    with pytest.raises(ValueError, match=r"initial\.amplitude"):
        initial.restart_from(tmp_path / "one.ckpt.h5")


@pytest.mark.parametrize("short_steps", [20, 25], ids=["end-on-a-frame", "end-between-frames"])
def test_restart_may_extend_the_run_bit_identically(tmp_path: Path, short_steps: int) -> None:
    """A checkpoint of a 20- or 25-step run continues to 45 steps as if the run had been 45 steps from the start
    (the short run's final frame at step 25 is not one of the longer run's frames and is dropped)."""
    full = load_case(_case(tmp_path, "full", steps=45))
    final = full.run()
    ref = read_output(tmp_path / "full.h5")

    load_case(_case(tmp_path, "ext", steps=short_steps)).run()
    assert read_checkpoint(tmp_path / "ext.ckpt.h5").step == short_steps
    longer = load_case(_case(tmp_path, "ext", steps=45))
    longer.restart_from(tmp_path / "ext.ckpt.h5")
    state = longer.run()
    out = read_output(tmp_path / "ext.h5")
    np.testing.assert_array_equal(out["step"], ref["step"])
    np.testing.assert_array_equal(out["time"], ref["time"])
    np.testing.assert_array_equal(out["fields"]["h"], ref["fields"]["h"])  # bitwise
    np.testing.assert_array_equal(state.numpy_fields()["h"], final.numpy_fields()["h"])
    assert state.time == final.time
    with h5py.File(tmp_path / "ext.h5") as f:
        assert "steps = 45" in f.attrs["case"]  # the file now records the longer case


def test_restart_checks_the_checkpoint_step_and_time(tmp_path: Path) -> None:
    sim = load_case(_case(tmp_path, "c"))
    sim.run()
    ck = read_checkpoint(tmp_path / "c.ckpt.h5")
    # consistent checksums, inconsistent content: written through the writer, as a buggy tool could
    for name, changes, match in [
        ("late", {"step": 10**9}, "beyond the 40 steps"),
        ("time", {"time": 123.0}, "does not match step 40"),
    ]:
        path = tmp_path / f"{name}.ckpt.h5"
        write_checkpoint(path, Checkpoint(**{**ck.__dict__, **changes}))
        with pytest.raises(ValueError, match=match):
            load_case(_case(tmp_path, "c")).restart_from(path)


def test_restart_refuses_a_checkpoint_holding_a_bad_state(tmp_path: Path) -> None:
    sim = load_case(_case(tmp_path, "bad"))
    sim.run()
    ck = read_checkpoint(tmp_path / "bad.ckpt.h5")
    ck.fields["h"][3] = -1.0
    write_checkpoint(tmp_path / "neg.ckpt.h5", ck)
    with pytest.raises(ValueError, match=r"does not hold a good state.*fell below 0"):
        load_case(_case(tmp_path, "bad")).restart_from(tmp_path / "neg.ckpt.h5")


def test_restart_into_a_new_output_when_the_results_file_is_gone(tmp_path: Path) -> None:
    full = load_case(_case(tmp_path, "whole"))
    full.run()
    ref = read_output(tmp_path / "whole.h5")

    cut = load_case(_case(tmp_path, "lost"))
    for _ in range(25):
        cut.step()
    cut.close()
    (tmp_path / "lost.h5").unlink()
    again = load_case(_case(tmp_path, "lost"), {"output.path": str(tmp_path / "new.h5")})
    again.restart_from(tmp_path / "lost.ckpt.h5")
    again.run()
    out = read_output(tmp_path / "new.h5")
    np.testing.assert_array_equal(out["step"], [20, 30, 40])  # from the checkpoint's frame on
    np.testing.assert_array_equal(out["fields"]["h"], ref["fields"]["h"][2:])  # bitwise
    assert (tmp_path / "new.ckpt.h5").exists()


def test_a_run_whose_results_file_is_damaged_at_the_end_does_not_report_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program truncates the file as the run closes it: the run raises instead of returning."""
    close = OutputFile.close

    def close_then_truncate(self: OutputFile) -> None:
        close(self)
        os.truncate(self.path, 2000)

    monkeypatch.setattr(OutputFile, "close", close_then_truncate)
    sim = load_case(_case(tmp_path, "cut"))
    with pytest.raises(IncompleteOutput, match=r"reached step 40, but .*cut.h5.*truncated.*cut.ckpt.h5"):
        sim.run()


def test_units_attributes_come_from_the_model(tmp_path: Path) -> None:
    case = _case(tmp_path, "u", steps=10)
    case["output"]["terms"] = ["elastic"]
    load_case(case).run()
    with h5py.File(tmp_path / "u.h5") as f:
        assert f["time"].attrs["units"] == "time unit"
        assert f["fields/h"].attrs["units"] == "nm"
        assert f["terms/elastic"].attrs["units"] == "eV/nm³"


class _BiasedEnsemble:
    """ρ_nn = ρ_linear (1 + 0.01 (step mod 17)): audit errors rise to step 16, then start again; u = std of h."""

    name = "elastic"
    inputs = ("h",)

    def __init__(self, linear: Any) -> None:
        self.linear = linear

    def predict(self, state: Any) -> EnsemblePrediction:
        return EnsemblePrediction(self.linear(state) * (1.0 + 0.01 * (state.step % 17)), float(np.std(state["h"])))

    def error(self, state: Any, nn_value: Any, dns_value: Any) -> float:
        return float(np.sqrt(np.mean((np.asarray(nn_value) - np.asarray(dns_value)) ** 2)) / self.linear.rho0)


def _monitored(tmp_path: Path, name: str) -> Any:
    sim = load_case(_case(tmp_path, name))
    linear = sim.equation.terms["elastic"]
    mon = Monitor(_BiasedEnsemble(linear), linear, 1.0, audit_every=3, tolerance=0.02, confidence=0.95)
    sim.equation.terms["elastic"] = mon
    return sim


def test_restart_keeps_the_audits_that_feed_the_summary(tmp_path: Path) -> None:
    full = _monitored(tmp_path, "full")
    full.run()
    ref = full.equation.terms["elastic"].summary()
    cut = _monitored(tmp_path, "cut")
    for _ in range(25):
        cut.step()
    cut.close()
    # the worst audit comes before the step-20 checkpoint: the restarted process alone never sees it
    rows = read_output(tmp_path / "full.h5")["monitor"]["elastic"]
    audited = ~np.isnan(rows["audit_error"])
    before = rows["step"][audited] <= 20
    assert rows["audit_error"][audited][before].max() > rows["audit_error"][audited][~before].max()
    again = _monitored(tmp_path, "cut")
    again.restart_from(tmp_path / "cut.ckpt.h5")
    again.run()
    summary = again.equation.terms["elastic"].summary()
    assert summary["audits"] == ref["audits"] == 14
    assert summary["audit_error_max"] == ref["audit_error_max"]
    assert math.isclose(summary["audit_error_mean"], ref["audit_error_mean"], rel_tol=1e-12)
    with h5py.File(tmp_path / "cut.h5") as f, h5py.File(tmp_path / "full.h5") as g:
        assert f.attrs["summary/elastic"] == g.attrs["summary/elastic"]


def test_blow_up_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    # grain growth, explicit Euler at dt = 0.8, 1.6x the limit dx² / (4 L κ) = 0.5: grid-scale modes grow by
    # |1 - 8 L κ dt / dx²| = 2.2 per step and η leaves [-0.5, 1.5] at step 2, long before it overflows
    sets = {"grid.shape": [32, 32], "grid.lengths": [64.0, 64.0], "initial.grains": 6, "model.order_parameters": 8}
    sets |= {"time.integrator": "euler", "time.dt": 0.8, "time.steps": 2000, "time.allow_unstable": True}
    sets |= {"output.every": 50, "output.checkpoint_every": 1, "output.check_every": 1}
    sim = load_case(GRAIN_GROWTH, sets, out=tmp_path / "boom.h5", progress=False)
    with pytest.raises(SimulationBlowUp, match=r"field 'eta' left its bounds \[-0.5, 1.5\] at step") as err:
        sim.run()
    assert "boom.ckpt.h5" in str(err.value)
    ck = read_checkpoint(tmp_path / "boom.ckpt.h5")
    assert ck.step > 0 and -0.5 <= ck.fields["eta"].min() and ck.fields["eta"].max() <= 1.5
    assert f"step {ck.step})" in str(err.value)  # the message names the checkpoint that was kept
    out = read_output(tmp_path / "boom.h5")  # frames written before the blow-up are intact and finite
    assert len(out["step"]) >= 1 and np.isfinite(out["fields"]["grain"]).all()


def test_a_diverging_state_still_finite_stops_at_the_bounds(tmp_path: Path) -> None:
    """A state forced far out of bounds (|η| = 7e24, finite) stops the run; the kept checkpoint passed the bounds."""
    sets = {"grid.shape": [32, 32], "grid.lengths": [64.0, 64.0], "initial.grains": 6, "model.order_parameters": 8}
    sets |= {"time.dt": 0.25, "time.steps": 100, "output.every": 10, "output.checkpoint_every": 5}
    sets |= {"output.check_every": 5}
    sim = load_case(GRAIN_GROWTH, sets, out=tmp_path / "div.h5", progress=False)
    for _ in range(14):
        sim.step()
    sim.state.fields["eta"][0, 3, 3] = 7e24  # one step on: -8.6e73, finite (the step after overflows)
    with pytest.raises(SimulationBlowUp, match=r"'eta' left its bounds .* at step 15 .*last good checkpoint.*step 10"):
        sim.step()
    sim.close()
    ck = read_checkpoint(tmp_path / "div.ckpt.h5")
    assert ck.step == 10 and ck.fields["eta"].max() <= 1.5


def test_atg_declares_bounds_of_a_few_domain_heights(tmp_path: Path) -> None:
    sim = load_case(_case(tmp_path, "tall", steps=5))
    assert sim.equation.state_bounds == {"h": (0.0, 5.0 * 32.0)}  # H = L = 32 nm by default
    sim.output.path, sim.check_every = None, 1
    sim.state.fields["h"][5] = 500.0
    with pytest.raises(SimulationBlowUp, match=r"'h' left its bounds \[0, 160\]"):
        for _ in range(5):
            sim.step()


def test_a_negative_film_thickness_stops_the_run_like_a_blow_up(tmp_path: Path) -> None:
    """Explicit Euler past its limit: h oscillates below 0 long before it overflows; the run stops there."""
    sets = {"terms.elastic.provider": "linear", "time.integrator": "euler", "time.dt": 0.01, "time.end": 5.0}
    sets |= {"output.every": 5, "output.checkpoint_every": 5, "time.allow_unstable": True}
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
    sets |= {
        "output.every": 1000,
        "output.checkpoint_every": 2,
        "output.check_every": 1000,
        "time.allow_unstable": True,
    }
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


def test_extending_a_grain_growth_run_keeps_its_tables_exact(tmp_path: Path) -> None:
    """The short run's final frame (step 25) and its rows of the per-frame tables go; the rest matches bitwise."""
    sets = {"grid.shape": [32, 32], "grid.lengths": [64.0, 64.0], "initial.grains": 6, "model.order_parameters": 8}
    sets |= {"time.dt": 0.25, "output.every": 10, "output.checkpoint_every": 20, "model.reassign_every": 5}
    load_case(GRAIN_GROWTH, {**sets, "time.steps": 45}, out=tmp_path / "full.h5").run()
    load_case(GRAIN_GROWTH, {**sets, "time.steps": 25}, out=tmp_path / "ext.h5").run()
    with h5py.File(tmp_path / "ext.h5") as f:
        assert f["step"][-1] == 25 and f["grains/step"][-1] == 25  # the frame and rows the restart drops
    longer = load_case(GRAIN_GROWTH, {**sets, "time.steps": 45}, out=tmp_path / "ext.h5")
    longer.restart_from(tmp_path / "ext.ckpt.h5")
    longer.run()
    ref, got = read_output(tmp_path / "full.h5"), read_output(tmp_path / "ext.h5")
    np.testing.assert_array_equal(got["step"], [0, 10, 20, 30, 40, 45])
    np.testing.assert_array_equal(got["fields"]["grain"], ref["fields"]["grain"])
    for table in ("grains", "grain_areas"):
        with h5py.File(tmp_path / "ext.h5") as f, h5py.File(tmp_path / "full.h5") as g:
            for column in g[table]:
                np.testing.assert_array_equal(f[table][column][()], g[table][column][()])
