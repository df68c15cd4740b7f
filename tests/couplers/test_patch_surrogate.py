"""The learned laser term patch_temperature (providers nn and monitor, hybrid/couplers/terms/patch_temperature.py)
with the shipped surrogate, and its dataset kind (hybrid/couplers/patch_dataset.py) at a tiny size."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import hybrid
from hybrid.cli import main
from hybrid.core.config import ConfigError
from hybrid.core.io import read_output
from hybrid.core.simulation import OutputSpec
from hybrid.couplers.assembly import build_simulation, resolve_case
from hybrid.couplers.patch_dataset import generate_patch_dataset
from hybrid.couplers.terms.patch_temperature import SHIPPED_WEIGHTS
from hybrid.models.card import load_ensemble
from hybrid.models.patch_autoencoder import PatchSurrogateNet, mare

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "cases" / "laser_track.toml"
TERM = "patch_temperature"


def _state(steps: int, overrides: dict[str, Any] | None = None) -> Any:
    """The laser case's state after ``steps`` coarse steps."""
    rc = resolve_case(CASE, {"time.end": None, "time.steps": steps, **(overrides or {})})
    sim = build_simulation(rc)
    sim.output = OutputSpec(path=None, checkpoint_every=None)
    for _ in range(steps):
        sim.step()
    return sim.state


def test_shipped_card_metrics_are_what_its_test_data_give() -> None:
    """The shipped weights load, and their float32 ensemble mean on the shipped test samples (held-out lasers, from
    uncoupled runs, runs handed back by cfd at every step and runs handed back by the round-0 monitor at every step)
    gives the card's test MARE per (P, v) and run. On the uncoupled and the cfd-coupled runs it is within the
    monitor's tolerance; on the uncoupled runs and on the states of a surrogate-coupled loop it is below the coarse
    field's (in a cfd-coupled run the coarse box already holds the last cfd patch, so the coarse field is as close)."""
    model, card = load_ensemble(SHIPPED_WEIGHTS, expect=PatchSurrogateNet)
    info = card["laser_patch"]
    t_inf, t_l = info["ambient_temperature"], info["liquidus"]
    with h5py.File(SHIPPED_WEIGHTS / card["data"]["test_file"]) as f:
        coarse, cfd = f["coarse"][:].astype(np.float64), f["cfd"][:].astype(np.float64)
        laser, power, group = f["laser"][:], f["power"][:], f["group"][:]
    m32 = model.float()
    with torch.inference_mode():
        theta = torch.from_numpy(((coarse - t_inf) / (t_l - t_inf)).reshape(len(coarse), -1)).float()
        out = m32(theta, torch.from_numpy(laser).float()).double().numpy()
    temp = (t_inf + (t_l - t_inf) * out).mean(axis=0).reshape(coarse.shape)
    e = mare(temp, cfd)
    pairs = card["metrics"]["test_by_pair"]
    assert len(pairs) == len(np.unique(group)) >= 2
    for g, row in zip(np.unique(group), pairs, strict=True):
        sel = group == g
        assert row["power"] == power[sel][0] and row["speed"] == laser[sel][0, 1]
        assert np.isclose(e[sel].mean(), row["mare"], rtol=1e-5)  # float32 sums in another order: its rounding
        if row["coupled_by"] in ("", "cfd"):
            assert row["mare"] < 0.02  # the monitor's default tolerance
        if row["coupled_by"] != "cfd":  # the coarse field is far from the cfd patch; the surrogate is closer
            assert row["mare"] < row["coarse_mare"]
    assert np.isclose(e.mean(), card["metrics"]["test"]["mare"], rtol=1e-5)


def test_nn_answers_like_coarse_and_cfd_do_and_is_closer_to_cfd_than_coarse() -> None:
    """The nn provider's answer: (pz, px) float64 [K] on the box of coarse (same origin), float32 inference equal to
    the float64 evaluation to float32 rounding, and on a fresh state of the shipped case closer to cfd than coarse."""
    state = _state(25)
    coarse, cfd = (hybrid.load_provider(TERM, p, case=CASE) for p in ("coarse", "cfd"))
    nn = hybrid.load_provider(TERM, "nn", case=CASE)
    nn64 = hybrid.load_provider(TERM, "nn", case=CASE, dtype="float64")
    t_nn, t_c, t_dns = nn(state), coarse(state), cfd(state)
    assert t_nn.shape == t_c.shape == nn.output_shape() == (30, 120) and t_nn.dtype == np.float64
    np.testing.assert_array_equal(nn.origin(state.time), coarse.origin(state.time))
    t64 = nn64(state)
    assert np.max(np.abs(t_nn - t64)) <= 64 * np.finfo(np.float32).eps * np.max(t64)
    assert float(mare(t_nn, t_dns)) < float(mare(t_c, t_dns))
    # the monitor in range: a finite uncertainty, and the answer of the source its threshold picks
    monitor = hybrid.load_provider(TERM, "monitor", case=CASE)
    answer = monitor(state)
    row = monitor.take_log_rows()
    u, source = float(row["uncertainty"][0]), str(row["source"][0])
    assert np.isfinite(u) and (source == "nn") == (u <= monitor.threshold)
    np.testing.assert_array_equal(answer, t_nn if source == "nn" else t_dns)


def test_monitor_outside_the_training_range_answers_by_cfd_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """P = 400 W lies beyond the shipped surrogate's powers: every decision is cfd with uncertainty inf (the run's
    decision log), the saved patch is cfd's, and a warning names the range (the patch read at frames only, so the
    run's state is the uncoupled one)."""
    out = tmp_path / "run.h5"
    sets = {"model.power": 400.0, "time.end": None, "time.steps": 2, "output.every": 2,
            f"terms.{TERM}.provider": "monitor", f"terms.{TERM}.couple_every": 0, "output.path": str(out)}  # fmt: skip
    with caplog.at_level(logging.WARNING):
        sim = build_simulation(resolve_case(CASE, sets))
        sim.run()
    assert any("outside the surrogate's training range" in r.getMessage() for r in caplog.records)
    log = read_output(out)["monitor"][TERM]
    assert len(log["step"]) == 2 and set(np.unique(log["source"])) == {"dns"}
    assert np.all(np.isinf(log["uncertainty"]))
    res = read_output(out)
    cfd = hybrid.load_provider(TERM, "cfd", case=CASE, overrides={"model.power": 400.0})
    np.testing.assert_array_equal(res["patch"]["T"][-1], cfd(_state(2, {"model.power": 400.0})))
    np.testing.assert_array_equal(res["patch"]["origin"][-1], cfd.origin(2 * 2e-5))


def test_a_coarse_input_unlike_the_training_inputs_is_not_trusted() -> None:
    """The novelty gate: a coarse patch far from every training input (a plate at a uniform 1500 K) lies beyond the
    card's novelty limit, and the surrogate's uncertainty is inf (the monitor answers by cfd); a state of the shipped
    case after 25 steps lies inside, with a finite uncertainty. The limit is the card's quantile of the training
    inputs' distances, so 5 % of the training inputs lie beyond it."""
    from hybrid.solvers.laser_materials import material

    nn = hybrid.load_provider(TERM, "nn", case=CASE)
    card = nn.card["laser_patch"]["novelty"]
    n_train = nn.card["data"]["samples"]["train"]
    assert nn.novelty_limit == pytest.approx(card["limit"])
    assert abs(card["beyond"]["train"] - 0.05) <= 1.0 / n_train  # the 0.95 quantile of the training distances
    state = _state(25)
    assert np.isfinite(nn.predict(state).uncertainty) and nn.novelty < nn.novelty_limit
    hot = float(material(resolve_case(CASE).context.params).energy(1500.0))
    uniform = state.replace({"E": np.full_like(state["E"], hot)}, dt=0.0, steps=0)
    assert np.isinf(nn.predict(uniform).uncertainty) and nn.novelty > nn.novelty_limit


def test_a_hand_back_interval_that_was_not_checked_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """The shipped surrogate's data are uncoupled runs and runs handed back by cfd at every step (its card's
    couplings [0, 1]); intervals from 20 steps were checked too. Those intervals are accepted; another one (5) is
    warned about by nn and refused by monitor, naming the key (its answers would feed its inputs unchecked)."""
    assert hybrid.load_provider(TERM, "nn", case=CASE).card["laser_patch"]["couplings"] == [0, 1]
    for every in (1, 20):
        with caplog.at_level(logging.WARNING):
            hybrid.load_provider(TERM, "nn", case=CASE, couple_every=every)
        assert not any("more often than it was checked" in r.getMessage() for r in caplog.records)
    with caplog.at_level(logging.WARNING):
        hybrid.load_provider(TERM, "nn", case=CASE, couple_every=5)
    assert any("more often than it was checked" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="allowed: those intervals") as err:
        hybrid.load_provider(TERM, "monitor", case=CASE, couple_every=5)
    assert err.value.key == f"terms.{TERM}.couple_every"


@pytest.mark.parametrize("provider", ["nn", "monitor"])
def test_the_surrogate_is_handed_back_like_cfd(tmp_path: Path, provider: str) -> None:
    """With couple_every = 20 (once per cfd window) the model hands the surrogate's patch back every 20 steps, as it
    does cfd's: the run's /energy column handback moves at steps 20 and 40, and the frame at a hand-back step saves
    the value handed back (the provider is called once per hand-back, no extra call for the frame). (Not earlier:
    a plate heated for a few steps is outside what the surrogate learned; the monitor sends it to cfd.)"""
    out = tmp_path / "run.h5"
    sets = {"time.end": None, "time.steps": 40, "output.every": 20, f"terms.{TERM}.provider": provider,
            f"terms.{TERM}.couple_every": 20, f"terms.{TERM}.threshold": 1e9, "output.path": str(out)}  # fmt: skip
    if provider == "nn":
        del sets[f"terms.{TERM}.threshold"]
    sim = build_simulation(resolve_case(CASE, sets))
    term = sim.equation.terms[TERM]
    assert sim.equation.couple_every == 20 and term.couple_every == 20 and term.spacing == 1e-5
    sim.run()
    with h5py.File(out) as f:
        handback = f["energy/handback"][:]
    assert handback[0] == 0.0 and handback[1] != 0.0 and handback[2] != handback[1]  # frames at steps 0, 20, 40
    assert term.stats()["calls"] == 3  # the frame at step 0 and the two hand-backs


@pytest.mark.parametrize(
    ("options", "overrides", "key"),
    [
        ({"size": [1.0e-3, 3e-4]}, {}, "terms.patch_temperature.size"),
        ({}, {"model.radius": 8e-5}, "model.radius"),
        ({}, {"model.latent_heat": 2.0e5}, "model.latent_heat"),
        ({"weights": "no_such_folder"}, {}, "terms.patch_temperature.weights"),
        ({"dtype": "float16"}, {}, "terms.patch_temperature.dtype"),
        ({"fallback": "nn"}, {}, "terms.patch_temperature.fallback"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        hybrid.load_provider(TERM, "monitor", case=CASE, overrides=overrides, **options)
    assert err.value.key == key


def _spec(**patch: Any) -> dict[str, Any]:
    return {"patch": {"case": str(CASE), "powers": [150.0], "speeds": [0.25], "test": [[120.0, 0.3]],
                      "travel": 2e-5, "first": 2e-5, "captures": 1, "cfd": {"window": 2e-5}, **patch}}  # fmt: skip


def test_dataset_holds_the_providers_answers(tmp_path: Path) -> None:
    """`hybrid dataset` of a tiny [patch] spec: each sample is coarse's and cfd's answer on the run's state at its
    step (float32)."""
    path = tmp_path / "patch.h5"
    tiny = ["patch.powers=[150.0]", "patch.speeds=[0.25]", "patch.calibration=[]", "patch.test=[[120.0, 0.3]]",
            "patch.travel=2e-5", "patch.first=2e-5", "patch.captures=1", "patch.cfd={window = 2e-5}"]  # fmt: skip
    argv = ["dataset", str(ROOT / "datasets" / "laser_patch.toml"), "--out", str(path), "--workers", "0"]
    assert main([*argv, "--no-progress", *[x for s in tiny for x in ("--set", s)]]) == 0
    with h5py.File(path) as f:
        assert f["coarse"].shape == f["cfd"].shape == (2, 30, 120)
        assert [s.decode() for s in f["split"][:]] == ["train", "test"]
        assert list(f["power"][:]) == [150.0, 120.0] and list(f["speed"][:]) == [0.25, 0.3]
        step, coarse, cfd = int(f["step"][1]), f["coarse"][1], f["cfd"][1]
    assert step == round(2e-5 / (0.3 * 2e-5))
    ov = {"model.power": 120.0, "model.speed": 0.3}
    state = _state(step, ov)
    t_coarse = hybrid.load_provider(TERM, "coarse", case=CASE, overrides=ov)(state)
    np.testing.assert_array_equal(coarse, t_coarse.astype(np.float32))  # stored in float32
    dns = hybrid.load_provider(TERM, "cfd", case=CASE, overrides=ov, window=2e-5)(state)
    np.testing.assert_array_equal(cfd, dns.astype(np.float32))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"test": [[120.0]]}, "patch.test[0]"),
        ({"calibration": [[120.0, -0.3]]}, "patch.calibration[0]"),
        ({"first": 1e-3}, "patch.first"),
        ({"speeds": []}, "patch.speeds"),
        ({"case": str(ROOT / "cases" / "atg_film.toml")}, "patch.case"),
        ({"case": "missing.toml"}, "patch.case"),
    ],
)
def test_dataset_spec_errors_name_the_key(tmp_path: Path, change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        generate_patch_dataset(_spec(**change), tmp_path / "patch.h5", workers=0)
    assert err.value.key == key


def test_the_monitor_captures_its_cfd_evaluations_as_a_patch_dataset(tmp_path: Path) -> None:
    """``capture = FILE``: the cfd evaluations of a monitored run (here the cold plate at t = 0 and the first step,
    beyond the novelty limit, and an audit at step 2) are written as a laser_patch dataset file that the trainer
    reads: each pair is the coarse patch of the run's state (recomputed by the coarse provider) and the cfd patch the
    run kept (its saved patch/T at that step); the file says the run was handed back by the monitor at every
    step, and names the monitor's weights. A second run is refused the same file."""
    from hybrid.models.patch_training import load_patch_data

    out, cap = tmp_path / "run.h5", tmp_path / "capture.h5"
    sets = {"time.end": None, "time.steps": 2, "output.every": 1, f"terms.{TERM}.provider": "monitor",
            f"terms.{TERM}.audit_every": 2, f"terms.{TERM}.capture": str(cap), "output.path": str(out)}  # fmt: skip
    build_simulation(resolve_case(CASE, sets)).run()
    log = read_output(out)["monitor"][TERM]
    dns_steps = [int(s) for s, src, a in zip(log["step"], log["source"], log["audit_error"], strict=True)
                 if src == "dns" or np.isfinite(a)]  # fmt: skip
    assert dns_steps[:2] == [0, 1] and len(dns_steps) == 3
    d = load_patch_data([cap])
    assert list(d["split"]) == ["train"] * 3 and set(d["coupling"]) == {1} and set(d["coupled_by"]) == {"monitor"}
    with h5py.File(cap) as f:
        steps = list(f["step"][:])
        assert "monitor_weights_sha256" in f.attrs["spec"]
    assert steps == dns_steps
    saved = read_output(out)["patch"]["T"]
    coarse = hybrid.load_provider(TERM, "coarse", case=CASE)
    for i, step in enumerate(steps[:2]):  # before the first hand-back (after step 1) the state is the uncoupled one
        np.testing.assert_array_equal(d["coarse"][i], np.float32(coarse(_state(step))))
        np.testing.assert_array_equal(d["cfd"][i], np.float32(saved[step]))  # a fallback: cfd's value was kept
    assert not np.array_equal(d["cfd"][2], np.float32(saved[2]))  # the audit: nn's answer was kept, cfd captured
    with pytest.raises(ConfigError, match="exists; allowed: a new file") as err:  # never overwritten
        build_simulation(resolve_case(CASE, {**sets, "output.path": str(tmp_path / "again.h5")}))
    assert err.value.key == f"terms.{TERM}.capture"
