"""DNS-trajectory datasets for whole-model surrogates (hybrid.couplers.trajectories) on the tiny shipped spec."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hybrid.cases import load_case
from hybrid.core.config import ConfigError
from hybrid.core.io import read_output
from hybrid.core.simulation import SimulationBlowUp
from hybrid.couplers.trajectories import (
    generate_trajectories,
    is_trajectory_spec,
    pair_start_steps,
    read_trajectories,
    resolve_trajectory_spec,
    step_quantum,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "datasets" / "graingrowth_trajectories_tiny.toml"
FULL = ROOT / "datasets" / "graingrowth_trajectories.toml"
CASE = ROOT / "cases" / "graingrowth.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The tiny spec generated in-process (workers=1)."""
    out = tmp_path_factory.mktemp("trajectories") / "tiny.h5"
    generate_trajectories(TINY, out, workers=1)
    return out, read_trajectories(out)


# ------------------------------------------------------------------------------------------------ file layout


def test_file_layout_and_shapes(tiny: tuple[Path, dict[str, Any]]) -> None:
    path, d = tiny
    resolved, _ = resolve_trajectory_spec(TINY)
    tr = resolved["trajectories"]
    r, p = tr["count"], tr["pairs"]
    q = 8  # model.order_parameters set by the tiny spec
    with h5py.File(path, "r") as f:
        assert list(f["fields"]) == ["eta"]
        eta = f["fields/eta"]
        nf = eta.shape[1]
        assert eta.shape == (r, nf, q, 32, 32) and eta.dtype == np.float32
        assert p + 1 <= nf <= 2 * p
        assert f["step"].shape == (r, nf) and f["step"].dtype == np.int64
        assert f["time"].shape == (r, nf) and f["time"].dtype == np.float64
        assert f["seed"].shape == (r,) and f["seed"].dtype == np.int64
        assert f["pairs"].shape == (p, 2) and f["pairs"].dtype == np.int64
        for attr in ("spec", "case", "model", "created", "hybrid_version", "workers"):
            assert isinstance(f.attrs[attr], str) and f.attrs[attr], attr
        assert f.attrs["hybrid_kind"] == "trajectories" and f.attrs["format_version"] == 1
    a = d["attrs"]
    assert a["model"] == "graingrowth" and a["dt"] == 0.25 and a["jump"] == tr["jump"] and a["workers"] == "in-process"
    assert list(d["seed"]) == [resolved["dataset"]["seed"] + i for i in range(r)]
    # the stored spec is the resolved one; the stored case is trajectory 0's resolved case
    again, _ = resolve_trajectory_spec(tomllib.loads(a["spec"]))
    assert again == resolved
    case = tomllib.loads(a["case"])
    assert case["case"]["seed"] == resolved["dataset"]["seed"] and case["time"]["steps"] == tr["steps"]
    assert case["grid"]["shape"] == [32, 32] and case["model"]["order_parameters"] == q
    assert np.all(np.isfinite(d["fields"]["eta"]))


def test_pairs_are_jump_steps_apart(tiny: tuple[Path, dict[str, Any]]) -> None:
    _, d = tiny
    resolved, _ = resolve_trajectory_spec(TINY)
    jump, every = resolved["trajectories"]["jump"], 20  # the case's model.reassign_every
    step, pairs = d["step"], d["pairs"]
    assert np.all(step == step[0]) and np.all(np.diff(step[0]) > 0)  # same frames for every trajectory, increasing
    assert np.all(step[:, pairs[:, 1]] - step[:, pairs[:, 0]] == jump)
    assert np.all(np.diff(pairs[:, 0]) > 0) and np.all(step[0] % every == 0)
    assert sorted(set(pairs.ravel())) == list(range(step.shape[1]))  # every frame belongs to a pair
    np.testing.assert_allclose(d["time"], step * d["attrs"]["dt"], rtol=1e-12)
    eta = d["fields"]["eta"]
    assert not np.array_equal(eta[:, pairs[:, 0]], eta[:, pairs[:, 1]])  # the state moved over a jump
    assert not np.array_equal(eta[0], eta[1])  # different seeds: different trajectories


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_frames_equal_a_direct_run(tmp_path: Path, tiny: tuple[Path, dict[str, Any]], dtype: str) -> None:
    """The recorded frames are bitwise those of a plain `hybrid run` of the same case that saves eta."""
    if dtype == "float32":
        d = tiny[1]
    else:
        out = generate_trajectories(TINY, tmp_path / "f64.h5", workers=0, overrides={"trajectories.dtype": dtype})
        d = read_trajectories(out)
    assert d["fields"]["eta"].dtype == np.dtype(dtype)
    resolved, _ = resolve_trajectory_spec(TINY)
    tr = resolved["trajectories"]
    for i, seed in enumerate(d["seed"]):
        overrides = [*tr["set"], f"case.seed={seed}", f"time.steps={tr['steps']}", "output.every=20"]
        overrides.append("output.fields=['eta']")
        ref_path = tmp_path / f"ref{i}.h5"
        load_case(CASE, overrides, out=ref_path).run()
        ref = read_output(ref_path)
        at = np.searchsorted(ref["step"], d["step"][i])
        assert np.array_equal(ref["step"][at], d["step"][i])
        np.testing.assert_array_equal(ref["fields"]["eta"][at].astype(dtype), d["fields"]["eta"][i])
        np.testing.assert_array_equal(ref["time"][at], d["time"][i])


def test_workers_give_identical_arrays(tmp_path: Path, tiny: tuple[Path, dict[str, Any]]) -> None:
    """A 2-process LocalCluster writes the same arrays as the in-process run."""
    out = generate_trajectories(TINY, tmp_path / "w2.h5", workers=2)
    a, b = tiny[1], read_trajectories(out)
    assert b["attrs"]["workers"] == "2 local workers"
    for key in ("step", "time", "seed", "pairs"):
        assert np.array_equal(a[key], b[key]), key
    assert np.array_equal(a["fields"]["eta"], b["fields"]["eta"])
    assert a["attrs"]["spec"] == b["attrs"]["spec"] and a["attrs"]["case"] == b["attrs"]["case"]


def test_blow_up_names_the_trajectory(tmp_path: Path) -> None:
    sets = resolve_trajectory_spec(TINY)[0]["trajectories"]["set"]
    with pytest.raises(SimulationBlowUp, match=r"trajectory 0 \(case.seed = 5\).*NaN/inf"):
        generate_trajectories(
            TINY,
            tmp_path / "nan.h5",
            workers=1,
            overrides={"trajectories.set": [*sets, "time.dt=20.0", "time.allow_unstable=true"]},
        )
    assert not (tmp_path / "nan.h5").exists() and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ spec


@pytest.mark.parametrize(
    ("override", "key", "text"),
    [
        ({"trajectories.jumps": 40}, "trajectories.jumps", "did you mean 'jump'"),
        ({"trajectories.jump": 30}, "trajectories.jump", "multiple of the case's model.reassign_every = 20"),
        ({"trajectories.pairs": 20}, "trajectories.pairs", "only 19 distinct start steps"),
        ({"trajectories.steps": 30}, "trajectories.steps", "needs steps >= start + jump = 40"),
        ({"trajectories.count": 0}, "trajectories.count", "must be >= 1"),
        ({"trajectories.spacing": "geometric"}, "trajectories.spacing", "must be one of 'log', 'linear'"),
        ({"trajectories.case": "nope.toml"}, "trajectories.case", "not found"),
        ({"trajectories.set": ["grid.shape=[32,32]", "model.reasign_every=20"]}, "trajectories.set[1]", "reasign"),
        ({"trajectories.set": ["initial.grains=-1"]}, "trajectories.set[0]", "initial.grains"),
        ({"trajectories.set": ["novalue"]}, "trajectories.set[0]", "malformed override"),
    ],
)
def test_bad_spec_names_file_and_key(override: dict[str, Any], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_trajectory_spec(TINY, override)
    err = info.value
    assert err.key == key and err.file == str(TINY), str(err)
    assert text in str(err) and str(TINY) in str(err)


def test_missing_required_keys() -> None:
    with pytest.raises(ConfigError, match="missing required") as info:
        resolve_trajectory_spec({"trajectories": {"case": str(CASE), "count": 1, "pairs": 2}})
    assert info.value.key == "trajectories.jump"


def test_case_with_end_and_default_steps(tmp_path: Path) -> None:
    """steps defaults to the case's; a case that gives time.end instead of steps takes trajectories.steps too."""
    text = CASE.read_text().replace("steps = 24000", "end = 6000.0")
    case = tmp_path / "gg_end.toml"
    case.write_text(text)
    spec = {"trajectories": {"case": str(case), "count": 1, "jump": 100, "pairs": 5}}
    resolved, file = resolve_trajectory_spec(spec)
    assert file is None and resolved["trajectories"]["steps"] == 24000 and resolved["dataset"]["name"]
    spec["trajectories"]["steps"] = 400
    assert resolve_trajectory_spec(spec)[0]["trajectories"]["steps"] == 400


def test_pair_start_steps() -> None:
    def spec(**tr: Any) -> dict[str, Any]:
        return {"trajectories": {"steps": 1000, "jump": 100, "pairs": 4, "spacing": "linear", "start": 0, **tr}}

    assert list(pair_start_steps(spec())) == [0, 300, 600, 900]
    assert list(pair_start_steps(spec(start=50), quantum=20)) == [60, 340, 620, 900]
    log = pair_start_steps(spec(spacing="log", pairs=10), quantum=20)
    assert np.all(np.diff(log) > 0) and np.all(log % 20 == 0) and log[0] == 0 and log[-1] == 900
    assert np.all(np.diff(np.diff(log)) >= 0)  # geometric: gaps grow
    # crowded: every available start step is used, once
    assert list(pair_start_steps(spec(spacing="log", steps=200, pairs=6), quantum=20)) == [0, 20, 40, 60, 80, 100]
    with pytest.raises(ConfigError, match="only 6 distinct"):
        pair_start_steps(spec(steps=200, pairs=7), quantum=20)
    with pytest.raises(ConfigError, match=r"multiple of the case's model\.reassign_every = 20"):
        pair_start_steps(spec(jump=90), quantum=20, quantum_key="model.reassign_every")


def test_step_quantum_is_the_key_the_model_declares() -> None:
    from hybrid.cases import resolve_case

    gg = resolve_case(ROOT / "cases" / "graingrowth.toml", {"model.reassign_every": 25})
    assert step_quantum(gg) == (25, "model.reassign_every")
    assert step_quantum(resolve_case(ROOT / "cases" / "atg_film.toml")) == (1, "")


def test_is_trajectory_spec() -> None:
    assert is_trajectory_spec(TINY) and is_trajectory_spec(str(FULL))
    assert not is_trajectory_spec(ROOT / "datasets" / "atg_elastic_tiny.toml")
    assert is_trajectory_spec({"trajectories": {"case": "x.toml"}})
    assert not is_trajectory_spec({"dataset": {}, "family": {}})


def test_shipped_full_spec_resolves() -> None:
    resolved, _ = resolve_trajectory_spec(FULL)
    tr = resolved["trajectories"]
    assert tr["count"] == 6 and tr["steps"] == 24000 and tr["jump"] == 100 and tr["pairs"] == 40
    starts = pair_start_steps(resolved, 20)
    assert len(starts) == 40 and starts[0] == 0 and starts[-1] == 23900
