"""The shipped elastic ensemble through its providers: accuracy vs FEM, OOD fallback, API on bare arrays.

Tolerances: the ensemble's target is RMSE ≤ 2 % of ρ0 on held-out profiles (model card); the in-distribution
check below allows that figure. The OOD profile has slopes ~3 (training data stays below ~1.5 except few
trajectory snapshots) and a shape unlike any family: the monitor must hand it to the FEM.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hybrid
from hybrid.couplers.terms.elastic import SHIPPED_WEIGHTS

CASE = Path(__file__).resolve().parents[2] / "cases" / "atg_film.toml"
L = N = 100


def _island_profile() -> np.ndarray:
    """Three smooth islands of different widths on a 0.4 nm wetting layer (not a training family)."""
    x = np.arange(N) * (L / N)
    h = np.full(N, 0.4)
    for c, w, a in ((15.0, 7.0, 3.0), (50.0, 10.0, 4.0), (80.0, 6.0, 2.0)):
        h += a * np.exp(-0.5 * ((x - c) / w) ** 2)
    return h


def _ood_profile() -> np.ndarray:
    """A sawtooth of slope ±3: sharp corners and steep facets far outside the training slopes."""
    x = np.arange(N)
    return 5.0 + 3.0 * np.abs((x % 10) - 5.0)


def _ripple_profile() -> np.ndarray:
    """A ripple-stage film (modes 3-5, slopes ≲ 0.2) like the linear/early nonlinear stage of the ATG case."""
    x = np.arange(N) * (L / N)
    return (
        3.0
        + 0.5 * np.cos(2 * np.pi * 4 * x / L)
        + 0.3 * np.cos(2 * np.pi * 3 * x / L + 1.0)
        + 0.2 * np.sin(2 * np.pi * 5 * x / L)
    )


def test_nn_matches_fem_on_a_ripple_profile() -> None:
    h = _ripple_profile()
    fem = hybrid.load_provider("elastic", "fem", case=CASE)(h)
    nn = hybrid.load_provider("elastic", "nn", case=CASE)
    rho = nn(h)
    assert rho.shape == (N,) and rho.dtype == np.float64
    assert np.sqrt(np.mean((rho - fem) ** 2)) / nn.rho0 < 0.02


def test_monitored_answer_is_within_tolerance() -> None:
    """What the monitor returns on a ripple-stage film meets the tolerance."""
    h = _ripple_profile()
    mon = hybrid.load_provider("elastic", "monitor", case=CASE)
    fem = hybrid.load_provider("elastic", "fem", case=CASE)(h)
    rho = mon(h)
    assert np.sqrt(np.mean((rho - fem) ** 2)) / mon.nn.rho0 <= mon.tolerance


def _random_islands(count: int, seed: int) -> list[np.ndarray]:
    """1-4 Gaussian islands (width 5-12 nm, height 1.5-4 nm, periodic) on a 0.3-0.6 nm wetting layer: a shape
    family that is not in the training data (its islands come from ATG trajectories). ``_island_profile`` is
    one such draw."""
    rng = np.random.default_rng(seed)
    x = np.arange(N) * (L / N)
    out = []
    for _ in range(count):
        h = np.full(N, rng.uniform(0.3, 0.6))
        for _ in range(int(rng.integers(1, 5))):
            c, w, a = rng.uniform(0.0, L), rng.uniform(5.0, 12.0), rng.uniform(1.5, 4.0)
            d = (x - c + L / 2) % L - L / 2
            h += a * np.exp(-0.5 * (d / w) ** 2)
        out.append(h)
    return out


# The modulation metric (tolerance 0.05) is not checked here: with the shipped per-family calibration its monitor
# hands all 60 shapes to the FEM while the ensemble alone stays within the bound (2 of 60 beyond), so the check
# would be vacuous.
@pytest.mark.parametrize(("metric", "tolerance"), [("rho0", 0.02)])
def test_monitor_keeps_the_error_bound_on_unseen_island_shapes(metric: str, tolerance: float) -> None:
    """On 60 unseen island shapes the monitored answers (NN where confident, FEM elsewhere) exceed the tolerance
    in at most 1 - confidence of the profiles: the bound a run relies on, kept outside the training
    distribution. Non-vacuous: either the ensemble answers some of them (and its accepted answers are checked) or
    it alone would break the bound (and the fallback is what keeps it). Measured with the shipped ensemble:
    README, "Training data and the shipped ensemble"."""
    from hybrid.models.calibration import modulation_error

    mon = hybrid.load_provider("elastic", "monitor", case=CASE, metric=metric, tolerance=tolerance)
    nn = hybrid.load_provider("elastic", "nn", case=CASE)
    fem = hybrid.load_provider("elastic", "fem", case=CASE)

    def error(rho: np.ndarray, ref: np.ndarray) -> float:
        if metric == "rho0":
            return float(np.sqrt(np.mean((rho - ref) ** 2)) / mon.nn.rho0)
        return float(modulation_error(rho[None, :], ref))

    profiles = _random_islands(60, seed=0)
    allowed = (1 - mon.confidence) * len(profiles)
    violations = nn_violations = 0
    for h in profiles:
        ref = fem(h)
        violations += error(mon(h), ref) > tolerance
        nn_violations += error(nn(h), ref) > tolerance
    assert mon.summary()["nn_calls"] > 0 or nn_violations > allowed
    assert violations <= allowed


def test_monitor_falls_back_on_out_of_distribution_input() -> None:
    mon = hybrid.load_provider("elastic", "monitor", case=CASE, hysteresis=0)
    calm = _ripple_profile()
    rho_ood = mon(_ood_profile())
    rows = mon.take_log_rows()
    assert rows["source"][-1] == "dns" and rows["uncertainty"][-1] > rows["threshold"][-1]
    fem = hybrid.load_provider("elastic", "fem", case=CASE)
    np.testing.assert_allclose(rho_ood, fem(_ood_profile()), rtol=1e-9)  # the answer IS the DNS answer
    mon(calm)
    assert mon.take_log_rows()["source"][-1] == "nn"


def test_monitor_threshold_follows_the_stated_tolerance() -> None:
    loose = hybrid.load_provider("elastic", "monitor", case=CASE, tolerance=0.05)
    tight = hybrid.load_provider("elastic", "monitor", case=CASE, tolerance=0.01)
    assert all(a <= b for a, b in zip(tight.thresholds, loose.thresholds, strict=True))


def test_monitor_recalibrates_by_the_cards_rule() -> None:
    """From the card's calibration pairs (and, for a stratified card, their strata) the monitor recomputes exactly
    the thresholds that calibration wrote, for both metrics."""
    from hybrid.models.card import read_card

    cal = read_card(SHIPPED_WEIGHTS)["calibration"]
    for metric, entry in (("rho0", cal), ("modulation", cal["modulation"])):
        mon = hybrid.load_provider(
            "elastic", "monitor", case=CASE, metric=metric, tolerance=entry["tolerance"], confidence=entry["confidence"]
        )
        assert mon.thresholds == entry.get("thresholds", [entry["threshold"]]), metric


def test_each_profile_is_judged_by_the_threshold_of_its_slope_stratum(tmp_path: Path) -> None:
    """A card with Mondrian calibration (here the shipped pairs given strata 0, 1, 2 in turn and edges 0.065 and
    1 of max (dh/dx)^2): the monitor recomputes one threshold per stratum from the pairs, bins each profile by
    its max (dh/dx)^2 (the rule of calibration.slope_strata on the features training saw) and logs that
    stratum's threshold."""
    import json
    import shutil

    from hybrid.models.calibration import slope_strata, stratum_thresholds
    from hybrid.models.features import ELASTIC_CHANNELS, elastic_features

    weights = tmp_path / "mondrian"
    shutil.copytree(SHIPPED_WEIGHTS, weights)
    card = json.loads((weights / "model_card.json").read_text())
    cal, edges = card["calibration"], [0.065, 1.0]
    cal["input_strata"] = [i % 3 for i in range(len(cal["u"]))]
    cal["stratification"] = {"feature": "max_slope2", "edges": edges}
    (weights / "model_card.json").write_text(json.dumps(card))
    mon = hybrid.load_provider("elastic", "monitor", case=CASE, hysteresis=0, weights=str(weights))
    per = stratum_thresholds(np.asarray(cal["u"]), np.asarray(cal["e"]), cal["input_strata"], 0.02, 0.95)
    assert mon.thresholds == [per[0], per[1], per[2]] and len(set(mon.thresholds)) == 3
    profiles = [_ripple_profile(), _island_profile(), _ood_profile()]
    for h in profiles:
        mon(h)
    rows = mon.take_log_rows()
    slope2 = elastic_features(np.stack(profiles), L / N)[:, ELASTIC_CHANNELS.index("slope2")].amax(dim=-1)
    strata = slope_strata(slope2.numpy(), edges)
    assert strata.tolist() == [0, 1, 2]  # max slope^2 of the features: ripple 0.058, islands 0.075, sawtooth 16
    np.testing.assert_array_equal(rows["threshold"], np.asarray(mon.thresholds)[strata])


def test_nn_runs_on_a_longer_domain_than_training() -> None:
    nn = hybrid.load_provider("elastic", "nn", overrides={"grid.length": 256.0, "grid.points": 256})
    h = 3.0 + 0.05 * np.cos(2 * np.pi * 10 * np.arange(256) / 256)
    k = 2 * np.pi * 10 / 256
    rho = nn(h)
    first = 2 * np.mean(rho * np.cos(k * np.arange(256))) / nn.rho0
    # The small-slope law (docs/physics.md §1), which the ensemble's exact linear response reproduces to first order;
    # the law omits terms of relative size (kA)² = 1.5e-4 (the FEM's first harmonic here differs from it by 2.0e-4).
    assert first == pytest.approx(-4 * 0.05 * k, rel=1e-3)


def test_modulation_metric_threshold_error_and_audits() -> None:
    """metric = "modulation": the threshold comes from the card's modulation pairs, audits log e_mod."""
    from hybrid.models.calibration import calibrate_threshold, modulation_error, stratum_thresholds

    tight = hybrid.load_provider("elastic", "monitor", case=CASE, metric="modulation", tolerance=0.02)
    loose = hybrid.load_provider("elastic", "monitor", case=CASE, metric="modulation", tolerance=0.1, audit_every=1)
    pairs = loose.nn.card["calibration"]["modulation"]
    u = np.asarray([np.inf if v is None else v for v in pairs["u"]])
    e = np.asarray([np.inf if v is None else v for v in pairs["e"]])
    if "input_strata" in pairs:  # Mondrian: one threshold per slope stratum
        per = stratum_thresholds(u, e, pairs["input_strata"], 0.1, 0.95)
        assert loose.thresholds == [per[k] for k in range(len(per))]
    else:
        assert loose.threshold == calibrate_threshold(u, e, 0.1, 0.95, strata=pairs.get("strata"))
    assert all(a <= b for a, b in zip(tight.thresholds, loose.thresholds, strict=True))
    h = _ripple_profile()
    rho = loose(h)  # audited: the FEM is called and the NN's modulation error logged
    rows = loose.take_log_rows()
    fem = hybrid.load_provider("elastic", "fem", case=CASE)(h)
    mean = loose.nn(h)
    assert rows["audit_error"][-1] == pytest.approx(float(modulation_error(mean[None, :], fem)), rel=1e-9)
    if rows["source"][-1] == "nn":
        np.testing.assert_array_equal(rho, mean)
    # the spread indicator ignores a common offset of the members: it is relative to the modulation
    assert 0.0 < rows["uncertainty"][-1] < np.inf


def test_modulation_metric_needs_pairs_in_the_card(tmp_path: Path) -> None:
    import json
    import shutil

    from hybrid.core.config import ConfigError

    shutil.copytree(SHIPPED_WEIGHTS, tmp_path / "old")
    card = json.loads((tmp_path / "old" / "model_card.json").read_text())
    del card["calibration"]["modulation"]
    (tmp_path / "old" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match=r"terms\.elastic\.metric.*no calibration pairs for metric 'modulation'"):
        hybrid.load_provider("elastic", "monitor", case=CASE, metric="modulation", weights=str(tmp_path / "old"))


def test_capture_records_which_run_and_ensemble_produced_it(tmp_path: Path) -> None:
    """A capture file names its run (seed, grid, parameters) and the monitor's ensemble (weights sha256) in the
    ``spec`` attribute that ``hybrid train`` copies into the model card; an appending run adds its own block."""
    import h5py

    from hybrid.models.card import read_card
    from hybrid.models.data import load_dataset

    cap = tmp_path / "cap.h5"
    for seed in (3, 4):
        overrides = {
            "case.seed": seed,
            "time.end": 0.1,
            "output.path": str(tmp_path / f"run{seed}.h5"),
            "terms.elastic.threshold": 0.0,  # every call goes to the FEM and is captured
            "terms.elastic.capture": str(cap),
            "terms.elastic.capture_every": 2,  # 5 FEM calls per run: keeps calls 1, 3, 5
            "terms.elastic.capture_block": 0,  # one group per run
        }
        hybrid.load_case(CASE, overrides=overrides).run()
    sha = read_card(SHIPPED_WEIGHTS)["weights"]["sha256"]
    with h5py.File(cap) as f:
        spec = str(f.attrs["spec"])
        assert f["h"].shape == (6, N)
        np.testing.assert_array_equal(f["group"][:], [0, 0, 0, 1, 1, 1])
    assert spec.count("[capture]") == 2
    assert "seed = 3" in spec and "seed = 4" in spec
    assert spec.count(f'monitor_weights_sha256 = "{sha}"') == 2
    assert spec.count('monitor_weights = "hybrid/models/weights/atg_elastic"') == 2  # no path of this machine
    assert "misfit = 0.04" in spec
    assert load_dataset(cap).spec == spec
    import tomllib

    block = tomllib.loads(spec.split("\n# captured")[0])  # each run's block is valid TOML
    assert block["capture"]["seed"] == 3 and block["capture"]["threshold"] == 0.0
    assert block["capture"]["capture_every"] == 2 and block["capture"]["capture_block"] == 0


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_nn_and_monitor_on_cuda_agree_with_the_cpu() -> None:
    """The ensemble on a GPU (``device = "cuda"``) gives the CPU's answer and uncertainty up to float32 rounding.

    Tolerance 1e-4 ρ0: both run float32 (relative rounding ~1e-7 per operation, a few hundred accumulations per
    output point through five layers and the FFT of the linear part), different kernels summing in different orders;
    it is 200 times below the monitor's tolerance of 2e-2 ρ0, so the monitor's decisions cannot hinge on the device
    except for an uncertainty within 1e-4 of the threshold."""
    profiles = [_ripple_profile(), _island_profile(), *_random_islands(5, seed=3)]
    cpu = hybrid.load_provider("elastic", "nn", case=CASE, device="cpu")
    gpu = hybrid.load_provider("elastic", "nn", case=CASE, device="cuda")
    for h in profiles:
        a, b = cpu(h), gpu(h)
        assert b.dtype == np.float64 and isinstance(b, np.ndarray)
        assert np.max(np.abs(a - b)) / cpu.rho0 < 1e-4
    mon_cpu = hybrid.load_provider("elastic", "monitor", case=CASE, device="cpu", hysteresis=0)
    mon_gpu = hybrid.load_provider("elastic", "monitor", case=CASE, device="cuda", hysteresis=0)
    for h in profiles:
        mon_cpu(h), mon_gpu(h)
    u_cpu, u_gpu = mon_cpu.take_log_rows()["uncertainty"], mon_gpu.take_log_rows()["uncertainty"]
    np.testing.assert_allclose(u_gpu, u_cpu, rtol=0, atol=1e-4)


def test_cuda_graph_needs_a_cuda_device() -> None:
    from hybrid.core.config import ConfigError
    from hybrid.models.ensemble import CudaGraphCall

    with pytest.raises(ConfigError, match=r"terms\.elastic\.cuda_graph.*CUDA device"):
        hybrid.load_provider("elastic", "nn", case=CASE, device="cpu", cuda_graph=True)
    with pytest.raises(ValueError, match="CUDA tensor"):
        CudaGraphCall(lambda x: x * 2, __import__("torch").zeros(3))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replays_the_same_answers() -> None:
    """With ``cuda_graph = true`` every call replays one recorded graph on the graph's own buffers: each answer
    must be that call's (not the last recorded or the next one's) and equal the plain GPU call's. The same kernels
    run on the same inputs, so the answers agree to float32 rounding (1e-6 ρ0 allows a different reduction order
    should the libraries pick another algorithm under capture); the same holds for the monitor's uncertainty."""
    profiles = [_ripple_profile(), _island_profile(), *_random_islands(4, seed=5)]
    plain = hybrid.load_provider("elastic", "monitor", case=CASE, device="cuda", hysteresis=0)
    graph = hybrid.load_provider("elastic", "monitor", case=CASE, device="cuda", hysteresis=0, cuda_graph=True)
    nn_plain = hybrid.load_provider("elastic", "nn", case=CASE, device="cuda")
    nn_graph = hybrid.load_provider("elastic", "nn", case=CASE, device="cuda", cuda_graph=True)
    answers = [nn_graph(h) for h in profiles]  # kept across later replays
    for h, a in zip(profiles, answers, strict=True):
        assert np.max(np.abs(a - nn_plain(h))) / nn_plain.rho0 < 1e-6
    for h in profiles:
        plain(h), graph(h)
    a, b = plain.take_log_rows(), graph.take_log_rows()
    assert list(a["source"]) == list(b["source"])
    np.testing.assert_allclose(b["uncertainty"], a["uncertainty"], rtol=0, atol=1e-6)
    longer = np.tile(_ripple_profile(), 2)  # another length: a new graph (and plan), not the old one's answer
    assert np.max(np.abs(nn_graph(longer) - nn_plain(longer))) / nn_plain.rho0 < 1e-6
