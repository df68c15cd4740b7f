"""The uncertainty monitor: decisions, hysteresis, audits, capture, logging, exact restart.

A synthetic ensemble stands in for the trained one: its answer is the linear elastic law times (1 + bias) and its
uncertainty is a known function of the profile's roughness, so every decision is predictable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hybrid.cases import load_case
from hybrid.core.io import read_output
from hybrid.core.registry import PROVIDERS, Context, register_provider
from hybrid.core.state import State
from hybrid.core.terms import TermProvider
from hybrid.couplers.learned import CaptureFile
from hybrid.couplers.monitor import EnsemblePrediction, Monitor
from hybrid.solvers.atg import LinearElastic
from tests.helpers import atg_case


class FakeEnsemble:
    """ρ_nn = ρ_linear (1 + bias); uncertainty u = roughness (std of h) in nm."""

    name = "elastic"
    inputs = ("h",)

    def __init__(self, ctx: Context, bias: float = 0.01) -> None:
        self.linear = LinearElastic(ctx)
        self.bias = bias
        self.rho0 = self.linear.rho0

    def predict(self, state: State) -> EnsemblePrediction:
        u = float(np.std(state.backend.to_numpy(state["h"])))
        return EnsemblePrediction(self.linear(state) * (1.0 + self.bias), u)

    def error(self, state: State, nn_value: Any, dns_value: Any) -> float:
        d = np.asarray(nn_value) - np.asarray(dns_value)
        return float(np.sqrt(np.mean(d * d)) / self.rho0)

    def calibrated_threshold(self, tolerance: float, confidence: float) -> float:
        return 0.3


class CountingDNS(LinearElastic):
    provider = "fake-dns"


def _monitor(ctx: Context, options: Mapping[str, Any]) -> Monitor:
    capture = CaptureFile(Path(options["capture"]), 1.0, ctx.grid.dx) if options.get("capture") else None
    return Monitor(
        FakeEnsemble(ctx),
        CountingDNS(ctx),
        options.get("threshold", 0.3),
        hysteresis=options.get("hysteresis", 0),
        audit_every=options.get("audit_every", 0),
        capture=capture,
        tolerance=0.02,
        confidence=0.95,
    )


@pytest.fixture(autouse=True)
def _fake_provider() -> Any:
    from hybrid.core.config import Option, Table

    opts = Table(
        {
            "threshold": Option("float", 0.3),
            "hysteresis": Option("int", 0),
            "audit_every": Option("int", 0),
            "capture": Option("str", None),
        }
    )
    register_provider("elastic", "fake-monitor", options=opts)(_monitor)
    yield
    PROVIDERS["elastic"].pop("fake-monitor", None)


def _sim(tmp_path: Path, name: str = "m", steps: int = 30, **opts: Any) -> Any:
    case = atg_case(points=32, length=32.0, steps=steps, dt=0.01, integrator="imex")
    case["initial"] = {"kind": "sinusoid", "mean": 3.0, "amplitude": 0.2, "mode": 2}
    case["terms"]["elastic"] = {"provider": "fake-monitor", **opts}
    case["output"] = {"path": str(tmp_path / f"{name}.h5"), "every": 10, "checkpoint_every": 10}
    return load_case(case)


def test_decisions_follow_the_threshold(tmp_path: Path) -> None:
    # sinusoid of amplitude 0.2: std = 0.2/sqrt(2) = 0.141 -> below 0.3: every call is NN
    sim = _sim(tmp_path, threshold=0.3)
    sim.run()
    mon = sim.equation.terms["elastic"]
    assert mon.nn_fraction == 1.0 and mon.dns.calls == 0
    # the same run with a threshold below the uncertainty: every call is DNS
    sim = _sim(tmp_path, "m2", threshold=0.1)
    sim.run()
    mon = sim.equation.terms["elastic"]
    assert mon.nn_fraction == 0.0 and mon.dns.calls == mon.calls == 30
    rows = read_output(tmp_path / "m2.h5")["monitor"]["elastic"]
    assert list(rows["source"]) == ["dns"] * 30
    np.testing.assert_array_equal(rows["step"], np.arange(30))
    assert np.all(rows["threshold"] == 0.1) and np.all(rows["uncertainty"] > 0.1)


def test_stats_split_the_time_between_the_ensemble_and_the_dns() -> None:
    from hybrid.cases import resolve_case

    ctx = resolve_case(atg_case(points=16, length=16.0)).context
    nn = NNProviderLike(ctx)
    mon = Monitor(nn, CountingDNS(ctx), threshold=0.3, audit_every=4)
    h = 3.0 + 0.01 * np.cos(2 * np.pi * np.arange(16) / 16)
    for step in range(8):
        mon(State.from_arrays({"h": h}, step=step))
    stats = mon.stats()
    # the ensemble is asked at every call (also before an audit), the DNS at the two audits (steps 0 and 4)
    assert nn.calls == 8 and mon.dns.calls == 2
    assert stats["nn_seconds"] > 0.0 and stats["dns_seconds"] > 0.0
    assert stats["nn_seconds"] + stats["dns_seconds"] <= stats["seconds"]


class NNProviderLike(TermProvider, FakeEnsemble):
    """FakeEnsemble as a TermProvider, like the shipped ``nn`` provider (which counts its own calls and time)."""

    provider = "fake-nn"

    def __init__(self, ctx: Context) -> None:
        TermProvider.__init__(self)
        FakeEnsemble.__init__(self, ctx)


def test_nn_answer_and_dns_answer_are_what_is_returned() -> None:
    case = atg_case(points=16, length=16.0)
    from hybrid.cases import resolve_case

    ctx = resolve_case(case).context
    h = 3.0 + 0.2 * np.cos(2 * np.pi * np.arange(16) / 16)
    state = State.from_arrays({"h": h})
    lin = LinearElastic(ctx)(state)
    accept = Monitor(FakeEnsemble(ctx, bias=0.5), CountingDNS(ctx), threshold=1.0)
    np.testing.assert_allclose(accept(state), 1.5 * lin)
    reject = Monitor(FakeEnsemble(ctx, bias=0.5), CountingDNS(ctx), threshold=0.01)
    np.testing.assert_allclose(reject(state), lin)
    # bare numpy arrays work too (embedding in other codes)
    np.testing.assert_allclose(accept(h), 1.5 * lin)


def test_hysteresis_holds_dns_after_a_fallback() -> None:
    from hybrid.cases import resolve_case

    ctx = resolve_case(atg_case(points=16, length=16.0)).context
    mon = Monitor(FakeEnsemble(ctx), CountingDNS(ctx), threshold=0.3, hysteresis=3)
    calm = 3.0 + 0.01 * np.cos(2 * np.pi * np.arange(16) / 16)
    rough = 3.0 + 1.0 * np.cos(2 * np.pi * np.arange(16) / 16)
    sources = []
    for step in range(8):
        h = rough if step == 2 else calm
        mon(State.from_arrays({"h": h}, step=step))
    sources = list(mon.take_log_rows()["source"])
    # step 2 falls back; steps 3, 4, 5 stay on DNS (hysteresis 3); step 6 is NN again
    assert sources == ["nn", "nn", "dns", "dns", "dns", "dns", "nn", "nn"]


def test_audits_log_the_true_error_beside_the_uncertainty(tmp_path: Path) -> None:
    sim = _sim(tmp_path, threshold=0.3, audit_every=5)
    sim.run()
    rows = read_output(tmp_path / "m.h5")["monitor"]["elastic"]
    audited = ~np.isnan(rows["audit_error"])
    np.testing.assert_array_equal(rows["step"][audited], np.arange(0, 30, 5))
    assert np.all(rows["source"][audited] == "nn")  # an audit does not change the answer
    # bias 1 % of ρ_linear: the audit error is ~1 % of ρ0 (ρ ≈ ρ0 for gentle slopes)
    assert np.all((rows["audit_error"][audited] > 0.008) & (rows["audit_error"][audited] < 0.012))
    s = sim.equation.terms["elastic"].summary()
    assert s["audits"] == 6 and s["audit_coverage_of_accepted"] == 1.0


def test_capture_writes_every_dns_evaluation_in_the_dataset_format(tmp_path: Path) -> None:
    cap = tmp_path / "captured.h5"
    sim = _sim(tmp_path, threshold=0.3, audit_every=10, capture=str(cap))
    sim.run()
    mon = sim.equation.terms["elastic"]
    with h5py.File(cap) as f:
        assert f["h"].shape == (mon.dns.calls, 32) and f["rho"].shape == (mon.dns.calls, 32)
        assert list(f["group"][:]) == [0, 0, 0]  # steps 0, 10, 20: one block of correlated profiles
        assert {s.decode() for s in f["family"][:]} == {"captured"}
        np.testing.assert_allclose(f["rho"][0], mon.dns(f["h"][0]))
    again = _sim(tmp_path, "again", threshold=0.3, audit_every=10, capture=str(cap))
    again.run()  # a second run appending to the same file starts a new group
    again.equation.terms["elastic"].close()
    with h5py.File(cap) as f:
        assert list(f["group"][:]) == [0, 0, 0, 1, 1, 1]


def test_capture_thins_and_makes_one_group_per_run_when_asked(tmp_path: Path) -> None:
    """every = 3 keeps DNS evaluations 1, 4, 7, ...; block_steps = 0 puts a whole run (any step) in one group,
    and the next run appending to the file gets the next group."""
    path = tmp_path / "thin.h5"
    for run in range(2):
        cap = CaptureFile(path, 2.0, 1.0, block_steps=0, every=3)
        for step in range(0, 7000, 1000):  # 7 evaluations, steps far apart (different 1000-step blocks)
            h = np.full(8, float(run * 100 + step // 1000))
            cap.add(State.from_arrays({"h": h}, step=step), 2.0 * h)
        cap.close()
        assert (cap.seen, cap.samples) == (7, 3)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["h"][:, 0], [0, 3, 6, 100, 103, 106])
        np.testing.assert_array_equal(f["rho"][:, 0], 2.0 * f["h"][:, 0])
        np.testing.assert_array_equal(f["group"][:], [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="every >= 1"):
        CaptureFile(path, 2.0, 1.0, every=0)


def test_restart_with_a_monitor_is_exact_and_keeps_the_log(tmp_path: Path) -> None:
    # threshold between the uncertainties met during the run so that both sources occur
    full = _sim(tmp_path, "full", steps=40, threshold=0.1414, hysteresis=2, audit_every=7)
    full.run()
    ref = read_output(tmp_path / "full.h5")
    assert set(ref["monitor"]["elastic"]["source"]) == {"nn", "dns"}

    cut = _sim(tmp_path, "cut", steps=40, threshold=0.1414, hysteresis=2, audit_every=7)
    for _ in range(25):
        cut.step()
    cut.close()
    again = _sim(tmp_path, "cut", steps=40, threshold=0.1414, hysteresis=2, audit_every=7)
    again.restart_from(tmp_path / "cut.ckpt.h5")
    again.run()
    out = read_output(tmp_path / "cut.h5")
    np.testing.assert_array_equal(out["fields"]["h"], ref["fields"]["h"])
    for col, values in ref["monitor"]["elastic"].items():
        np.testing.assert_array_equal(out["monitor"]["elastic"][col], values)


def test_audit_feedback_lowers_the_threshold_after_an_accepted_answer_beyond_the_tolerance() -> None:
    """Bias 4 % of ρ_linear: every audited answer is ~4 % off (tolerance 2 %) although u = std(h) is below τ.
    With audit feedback the first audit lowers τ to u · 0.02 / e ≈ u / 2, so the same state then falls back;
    without it nothing changes. A restored policy keeps the lowered τ."""
    from hybrid.cases import resolve_case

    ctx = resolve_case(atg_case(points=16, length=16.0)).context
    h = 3.0 + 0.2 * np.cos(2 * np.pi * np.arange(16) / 16)
    u = float(np.std(h))

    def monitor(tighten: bool, bias: float = 0.04) -> Monitor:
        return Monitor(
            FakeEnsemble(ctx, bias=bias),
            CountingDNS(ctx),
            threshold=0.3,
            audit_every=3,
            tolerance=0.02,
            confidence=0.95,
            tighten_on_audit=tighten,
        )

    def run(mon: Monitor, steps: range) -> list[str]:
        for step in steps:
            mon(State.from_arrays({"h": h}, step=step))
        return list(mon.take_log_rows()["source"])

    fixed = monitor(tighten=False)
    assert run(fixed, range(6)) == ["nn"] * 6 and fixed.threshold == 0.3

    tight = monitor(tighten=True)
    assert run(tight, range(6)) == ["nn"] + ["dns"] * 5  # the audit at step 0 answers with the NN, then τ drops
    e = tight.audit_errors[0]
    assert 0.035 < e < 0.045
    assert tight.threshold == pytest.approx(u * 0.02 / e) and tight.threshold < u
    assert tight.summary()["tightenings"] == 1 and tight.summary()["calibrated_threshold"] == 0.3

    restored = monitor(tighten=True)
    restored.load_state_dict(tight.state_dict())
    assert restored.threshold == tight.threshold and run(restored, range(6, 8)) == ["dns", "dns"]

    within = monitor(tighten=True, bias=0.01)  # audited errors ~1 %: within the tolerance, τ stays
    assert run(within, range(6)) == ["nn"] * 6 and within.threshold == 0.3


class StratifiedEnsemble(FakeEnsemble):
    """FakeEnsemble that puts every profile of mean thickness above 3 nm in input stratum 1, the rest in 0."""

    def predict(self, state: State) -> EnsemblePrediction:
        pred = super().predict(state)
        return EnsemblePrediction(pred.mean, pred.uncertainty, int(np.mean(state["h"]) > 3.0))


def test_each_input_stratum_has_its_own_threshold_and_its_own_feedback() -> None:
    """Thresholds (0.1, 0.3) and u = std(h) = 0.141 for both profiles: the thin one (stratum 0) falls back, the
    thick one (stratum 1) is answered by the NN, and each logged row carries its stratum's τ. An audit of an
    accepted answer beyond the tolerance (bias 4 %) lowers stratum 1's τ only, and a restart keeps both; a single
    threshold serves every stratum."""
    from hybrid.cases import resolve_case

    ctx = resolve_case(atg_case(points=16, length=16.0)).context
    wave = 0.2 * np.cos(2 * np.pi * np.arange(16) / 16)
    thin, thick = 2.9 + wave, 3.1 + wave
    u = float(np.std(wave))

    def monitor(threshold: Any, tighten: bool = False) -> Monitor:
        return Monitor(StratifiedEnsemble(ctx, bias=0.04), CountingDNS(ctx), threshold, audit_every=4,
                       tolerance=0.02, confidence=0.95, tighten_on_audit=tighten)  # fmt: skip

    mon = monitor([0.1, 0.3])
    for step, h in enumerate((thin, thick, thin, thick)):
        mon(State.from_arrays({"h": h}, step=step + 1))  # no audit before step 4
    rows = mon.take_log_rows()
    assert list(rows["source"]) == ["dns", "nn", "dns", "nn"]
    np.testing.assert_array_equal(rows["threshold"], [0.1, 0.3, 0.1, 0.3])
    assert mon.threshold == 0.3 and mon.summary()["thresholds"] == [0.1, 0.3]

    tight = monitor([0.1, 0.3], tighten=True)
    tight(State.from_arrays({"h": thick}, step=4))  # audited: accepted with a ~4 % error
    e = tight.audit_errors[0]
    assert tight.thresholds == [0.1, pytest.approx(u * 0.02 / e)] and tight.tightenings == 1
    assert tight.summary()["calibrated_thresholds"] == [0.1, 0.3]
    restored = monitor([0.1, 0.3], tighten=True)
    restored.load_state_dict(tight.state_dict())
    assert restored.thresholds == tight.thresholds
    with pytest.raises(ValueError, match="1 threshold"):
        monitor([0.1, 0.3, 0.5], tighten=True).load_state_dict(monitor(0.3, tighten=True).state_dict())

    single = monitor(0.3)
    for step, h in enumerate((thin, thick)):
        single(State.from_arrays({"h": h}, step=step + 1))
    assert list(single.take_log_rows()["source"]) == ["nn", "nn"]
    with pytest.raises(ValueError, match="input stratum 2 has no threshold"):
        monitor([0.1, 0.2]).decide(0, u, stratum=2)
