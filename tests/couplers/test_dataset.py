"""Dataset generation for the ATG ``elastic`` term (hybrid.couplers.dataset) on the tiny shipped spec."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hybrid.core.config import ConfigError
from hybrid.couplers.dataset import PARAM_NAMES, generate_dataset, plan_tasks, read_dataset, resolve_spec, run_task
from hybrid.couplers.profiles import enforce_floor, max_slope, perlin_profiles, random_profiles, select_frames
from hybrid.solvers.elasticity import FilmElasticitySolver, misfit_energy_density

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "datasets" / "atg_elastic_tiny.toml"
SHIPPED = ROOT / "datasets" / "atg_elastic.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The tiny spec generated in-process (workers=1)."""
    out = tmp_path_factory.mktemp("dataset") / "tiny.h5"
    generate_dataset(TINY, out, workers=1)
    return out, read_dataset(out)


def _spec_counts(resolved: dict[str, Any]) -> dict[str, int]:
    return {
        name: fam["count"] * (fam["snapshots"] if fam["kind"] == "trajectory" else 1)
        for name, fam in resolved["family"].items()
    }


# ------------------------------------------------------------------------------------------------ file layout


def test_file_layout_and_shapes(tiny: tuple[Path, dict[str, Any]]) -> None:
    path, d = tiny
    resolved, _ = resolve_spec(TINY)
    n, s = resolved["grid"]["points"], sum(_spec_counts(resolved).values())
    with h5py.File(path, "r") as f:
        for key, shape in {"h": (s, n), "rho": (s, n), "rho0": (s,), "dx": (s,), "time": (s,)}.items():
            assert f[key].shape == shape and f[key].dtype == np.float64, key
        assert f["group"].shape == (s,) and f["group"].dtype == np.int64
        assert f["family"].shape == (s,) and h5py.check_string_dtype(f["family"].dtype) is not None
        assert sorted(f["params"]) == sorted(PARAM_NAMES)
        for name in PARAM_NAMES:
            assert f["params"][name].shape == (s,) and f["params"][name].dtype == np.float64
        for attr in ("spec", "created", "hybrid_version"):
            assert isinstance(f.attrs[attr], str) and f.attrs[attr]
    # the stored spec is the resolved one and reproduces the same plan
    again, _ = resolve_spec(tomllib.loads(d["attrs"]["spec"]))
    assert again == resolved
    # per-sample values
    m = resolved["model"]
    np.testing.assert_allclose(d["rho0"], misfit_energy_density(m["young"], m["poisson"], m["misfit"]), rtol=1e-15)
    np.testing.assert_allclose(d["dx"], resolved["grid"]["length"] / n, rtol=1e-15)
    np.testing.assert_allclose(d["params"]["substrate_depth"], resolved["grid"]["length"])  # default H = L
    np.testing.assert_allclose(d["params"]["mean_thickness"], d["h"].mean(axis=1))
    assert np.all(np.isfinite(d["h"])) and np.all(np.isfinite(d["rho"])) and np.all(d["rho"] >= 0)
    # families in spec order, with the spec's counts; groups never straddle families
    counts = _spec_counts(resolved)
    names = list(d["family_name"])
    assert [k for i, k in enumerate(names) if i == 0 or names[i - 1] != k] == list(counts)
    assert {k: names.count(k) for k in counts} == counts
    kinds = {name: fam["kind"] for name, fam in resolved["family"].items()}
    assert all(d["family"][i] == kinds[names[i]] for i in range(s))
    for g in np.unique(d["group"]):
        assert len(set(d["family_name"][d["group"] == g])) == 1
    assert np.all(np.diff(d["group"]) >= 0)
    traj = d["family"] == "trajectory"
    assert np.all(np.isnan(d["time"][~traj])) and np.all(np.isfinite(d["time"][traj]))
    fam = resolved["family"]["islands"]
    assert len(np.unique(d["group"][traj])) == fam["count"]  # one group per trajectory


def test_readable_by_training_code(tiny: tuple[Path, dict[str, Any]]) -> None:
    from hybrid.models.data import load_dataset

    ds = load_dataset(tiny[0])
    np.testing.assert_array_equal(ds.h, tiny[1]["h"])
    assert set(ds.family) == {"random", "perlin", "trajectory"}


def test_labels_match_direct_fem(tiny: tuple[Path, dict[str, Any]]) -> None:
    _, d = tiny
    resolved, _ = resolve_spec(TINY)
    m, g = resolved["model"], resolved["grid"]
    solver = FilmElasticitySolver(
        g["length"], g["points"], m["substrate_depth"], m["young"], m["poisson"], m["misfit"], solver="direct"
    )
    for fam in ("random", "perlin", "trajectory"):
        idx = np.flatnonzero(d["family"] == fam)
        for i in (idx[0], idx[len(idx) // 2], idx[-1]):
            rho = solver(d["h"][i])
            np.testing.assert_allclose(d["rho"][i], rho, rtol=1e-8, atol=1e-10 * rho.max(), err_msg=f"{fam} #{i}")


def test_label_solvers_agree() -> None:
    """solver = "direct" and "auto" (direct for random profiles) are identical; "pcg" agrees to ~1e-11."""
    labels = {}
    for solver in ("direct", "auto", "pcg"):
        resolved, _ = resolve_spec(TINY, {"labels.solver": solver, "family.random.batch": 8})
        labels[solver] = run_task(plan_tasks(resolved)[0])["rho"]
    np.testing.assert_array_equal(labels["auto"], labels["direct"])
    np.testing.assert_allclose(labels["pcg"], labels["direct"], rtol=1e-9)


def test_nonnegative_thickness(tiny: tuple[Path, dict[str, Any]]) -> None:
    assert tiny[1]["h"].min() >= 0.0


def test_floor_shift_and_clip() -> None:
    h = np.array([1.0, -0.5, 0.25, 2.0])
    shifted = enforce_floor(h, 0.1, "shift")
    np.testing.assert_allclose(shifted, h + 0.6)  # rigid shift: min = floor, shape kept
    np.testing.assert_allclose(enforce_floor(h, 0.0, "clip"), [1.0, 0.0, 0.25, 2.0])
    np.testing.assert_array_equal(enforce_floor(h + 1.0, 0.0, "shift"), h + 1.0)  # untouched when above


# ------------------------------------------------------------------------------------------------ determinism


def test_identical_for_any_number_of_workers(tiny: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """workers=1 (in-process) and workers=2 (a LocalCluster) write bitwise identical arrays."""
    out = tmp_path / "tiny2.h5"
    generate_dataset(TINY, out, workers=2)
    a, b = tiny[1], read_dataset(out)
    for key in ("h", "rho", "rho0", "dx", "group", "time", "family", "family_name"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(a["params"][name], b["params"][name], err_msg=name)
    assert a["attrs"]["spec"] == b["attrs"]["spec"]


def test_task_seeding_is_per_task() -> None:
    """A task's samples depend on (seed, family name, task index) only: not on the other families or tasks."""
    resolved, _ = resolve_spec(TINY, {"family.perlin.count": 0, "family.islands.count": 0})
    alone = plan_tasks(resolved)
    full = plan_tasks(resolve_spec(TINY)[0])
    assert alone[1].seed == full[1].seed
    np.testing.assert_array_equal(run_task(alone[1])["h"], run_task(full[1])["h"])
    reseeded = plan_tasks(resolve_spec(TINY, {"dataset.seed": 12})[0])
    assert not np.array_equal(run_task(reseeded[0])["h"], run_task(full[0])["h"])


def test_progress_bar_small_and_empty_families(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ov = {"family.random.count": 3, "family.random.batch": 2, "family.perlin.count": 0, "family.islands.count": 0}
    d = read_dataset(generate_dataset(TINY, tmp_path / "small.h5", workers=0, progress=True, overrides=ov))
    assert d["h"].shape == (3, 50) and list(d["group"]) == [0, 0, 1] and list(d["family"]) == ["random"] * 3
    assert "3/3" in capsys.readouterr().err  # the tqdm bar counts samples
    ov["family.random.count"] = 0
    d = read_dataset(generate_dataset(TINY, tmp_path / "empty.h5", workers=0, overrides=ov))
    assert d["h"].shape == (0, 50) and d["family"].shape == (0,)


# ------------------------------------------------------------------------------------------------ families


RANDOM_OPTS: dict[str, Any] = {
    "mean": [2.0, 6.0],
    "amplitude": [0.05, 3.0],
    "modes": [1, 16],
    "exponent": [0.0, 2.0],
    "max_slope": 1.5,
    "floor": 0.0,
    "negative": "shift",
}


def test_random_profiles_claims() -> None:
    length, points = 64.0, 64
    h = random_profiles(np.random.default_rng(5), 400, length, points, RANDOM_OPTS)
    assert h.shape == (400, 64) and h.min() >= 0
    rms = h.std(axis=1)
    slope = np.array([max_slope(p, length) for p in h])
    capped = np.isclose(slope, RANDOM_OPTS["max_slope"], rtol=1e-9)
    lo, hi = RANDOM_OPTS["amplitude"]
    assert np.all(slope <= RANDOM_OPTS["max_slope"] * (1 + 1e-9))
    assert np.all((rms >= lo * (1 - 1e-9)) | capped) and np.all(rms <= hi * (1 + 1e-9))
    assert capped.mean() < 0.1  # the amplitude is drawn below the cap: no pile-up at it
    # log-uniform: about as many samples below the geometric mean as above
    assert 0.35 < np.mean(rms < np.sqrt(lo * hi)) < 0.65
    # band limit: no Fourier content above the highest mode range
    spec = np.abs(np.fft.rfft(h - h.mean(axis=1, keepdims=True), axis=1))
    assert spec[:, RANDOM_OPTS["modes"][1] + 1 :].max() < 1e-9 * spec.max()
    # the slopes cover small to island-like values
    assert slope.min() < 0.05 and np.quantile(slope, 0.9) > 0.7 and slope.max() > 1.2
    # a flat spectrum has equal expected power in every mode, a steep one mostly in the first
    flat = random_profiles(
        np.random.default_rng(1), 200, length, points, {**RANDOM_OPTS, "exponent": [0.0, 0.0], "modes": [16, 16]}
    )
    steep = random_profiles(
        np.random.default_rng(1), 200, length, points, {**RANDOM_OPTS, "exponent": [2.0, 2.0], "modes": [16, 16]}
    )
    p_flat = (np.abs(np.fft.rfft(flat, axis=1)) ** 2).mean(axis=0)
    p_steep = (np.abs(np.fft.rfft(steep, axis=1)) ** 2).mean(axis=0)
    assert 0.3 < p_flat[1:5].mean() / p_flat[12:17].mean() < 3.0
    assert p_steep[1:5].mean() / p_steep[12:17].mean() > 100.0


def test_perlin_profiles_are_smooth() -> None:
    length, points = 64.0, 64
    opts = {**RANDOM_OPTS, "wavelength": [8.0, 64.0], "octaves": 4, "persistence": [0.3, 0.7], "min_wavelength": 4.0}
    h = perlin_profiles(np.random.default_rng(2), 300, length, points, opts)
    assert h.shape == (300, 64) and h.min() >= 0
    dev = h - h.mean(axis=1, keepdims=True)
    # periodic and smooth: the second difference (wrapping around) is small against the amplitude; white noise
    # of the same RMS would give sqrt(6) ~ 2.45
    d2 = np.roll(dev, 1, axis=1) - 2 * dev + np.roll(dev, -1, axis=1)
    ratio = d2.std(axis=1) / dev.std(axis=1)
    assert np.median(ratio) < 0.3 and ratio.max() < 1.2
    white = np.random.default_rng(0).standard_normal((100, 64))
    w2 = np.roll(white, 1, axis=1) - 2 * white + np.roll(white, -1, axis=1)
    assert np.median(w2.std(axis=1) / white.std(axis=1)) > 2.0
    # no lattice cell finer than min_wavelength: little power above mode L / min_wavelength
    power = np.abs(np.fft.rfft(dev, axis=1)) ** 2
    assert power[:, 17:].sum() < 0.02 * power.sum()
    rms = h.std(axis=1)
    slope = np.array([max_slope(p, length) for p in h])
    assert np.all((rms <= 3.0 + 1e-9) & ((rms >= 0.05 - 1e-9) | np.isclose(slope, 1.5)))
    assert np.all(slope <= 1.5 * (1 + 1e-9))


def test_trajectories_in_order_and_roughening(tiny: tuple[Path, dict[str, Any]]) -> None:
    _, d = tiny
    resolved, _ = resolve_spec(TINY)
    fam = resolved["family"]["islands"]
    traj = np.flatnonzero(d["family"] == "trajectory")
    groups = np.unique(d["group"][traj])
    for g in groups:
        idx = np.flatnonzero(d["group"] == g)
        assert len(idx) == fam["snapshots"] and np.all(np.diff(idx) == 1)  # consecutive
        t, h = d["time"][idx], d["h"][idx]
        assert t[0] == 0.0 and np.all(np.diff(t) > 0) and t[-1] <= fam["end"] + 1e-9
        rms = h.std(axis=1)
        assert rms[-1] > 5 * rms[0]  # ripples grew into islands
        assert np.mean(np.diff(rms) > 0) >= 0.7  # roughness increases along the trajectory (mostly)
        assert np.corrcoef(np.arange(len(rms)), rms)[0, 1] > 0.8
        # islands on a thin wetting layer, with island-like slopes
        assert h[-1].min() < 0.25 * h[-1].mean()
        assert max_slope(h[-1], resolved["grid"]["length"]) > 0.7
        assert np.ptp(h.mean(axis=1)) < 1e-6 * h.mean()  # surface diffusion conserves mass (no shift needed)


def test_select_frames() -> None:
    t = np.arange(101) * 0.5
    growth = np.exp(np.minimum(t, 30.0) / 5.0)[:, None] * np.cos(np.arange(16) * 2 * np.pi / 16)[None, :]
    idx = select_frames(growth, t, 20, "time")
    assert idx[0] == 0 and idx[-1] == 100 and np.all(np.diff(idx) > 0)
    np.testing.assert_allclose(np.diff(t[idx]), 50.0 / 19, atol=0.5)
    # the progress spacing puts the frames where the profile changes (t <= 30), not in the stationary phase
    idx = select_frames(growth, t, 20, "progress")
    assert idx[0] == 0 and np.all(np.diff(idx) > 0) and np.sum(t[idx] <= 30.5) >= 19
    # a stationary evolution still gives distinct, ordered frames; all frames when count == F
    still = np.ones((10, 8))
    assert list(select_frames(still, np.arange(10.0), 10)) == list(range(10))
    idx = select_frames(still, np.arange(10.0), 4)
    assert idx[0] == 0 and idx[-1] == 9 and np.all(np.diff(idx) > 0)
    with pytest.raises(ValueError):
        select_frames(still, np.arange(10.0), 11)


# ------------------------------------------------------------------------------------------------ spec


def test_list_form_and_overrides() -> None:
    raw = tomllib.loads(TINY.read_text())
    listed = {**raw, "family": [{"name": k, **v} for k, v in raw["family"].items()]}
    assert resolve_spec(listed)[0]["family"] == resolve_spec(TINY)[0]["family"]
    anonymous = {**raw, "family": [dict(v) for v in raw["family"].values()]}
    assert list(resolve_spec(anonymous)[0]["family"]) == ["random0", "perlin1", "trajectory2"]
    res, _ = resolve_spec(TINY, ["family.random.count=7", "dataset.seed=3"])
    assert res["family"]["random"]["count"] == 7 and res["dataset"]["seed"] == 3
    assert res["dataset"]["name"] == "atg_elastic_tiny"
    assert resolve_spec(raw)[0]["model"]["substrate_depth"] == raw["grid"]["length"]


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ({"family.random.kind": "gaussian"}, "family.random.kind", ["'random'", "'perlin'", "'trajectory'"]),
        ({"family.random.count": -1}, "family.random.count", [">= 0"]),
        ({"family.random.amplitude": [2.0, 1.0]}, "family.random.amplitude", ["lo <= hi"]),
        ({"family.random.amplitude": [0.0, 1.0]}, "family.random.amplitude[0]", ["> 0"]),
        ({"family.random.modes": [1, 40]}, "family.random.modes", ["points/2 = 25"]),
        ({"family.random.colour": "red"}, "family.random.colour", ["unknown key", "'amplitude'"]),
        ({"family.islands.provider": "nn"}, "family.islands.provider", ["'fem'", "'linear'"]),
        ({"family.islands.snapshots": 500}, "family.islands.snapshots", ["candidate frames"]),
        ({"grid.points": "many"}, "grid.points", ["expected int"]),
        ({"model.poisson": 0.7}, "model.poisson", ["(-1.0, 0.5)"]),
        ({"labels.solver": "amg"}, "labels.solver", ["'direct'"]),
        ({"output.path": "x.h5"}, "output", ["unknown key", "'family'"]),
    ],
)
def test_bad_spec_names_key(tmp_path: Path, override: dict[str, Any], key: str, words: list[str]) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.read_text())
    with pytest.raises(ConfigError) as info:
        generate_dataset(spec, tmp_path / "never.h5", workers=1, overrides=override)
    err = info.value
    assert err.key == key and err.file == str(spec)
    text = str(err)
    assert str(spec) in text and f"'{key}'" in text
    for word in words:
        assert word in text
    assert not (tmp_path / "never.h5").exists()


def test_missing_tables_are_errors() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_spec({"grid": {"length": 10.0, "points": 16}})
    assert info.value.key == "family"
    with pytest.raises(ConfigError) as info:
        resolve_spec({"grid": {"points": 16}, "family": {"a": {"kind": "random", "count": 1}}})
    assert info.value.key == "grid.length"
    with pytest.raises(ConfigError) as info:
        resolve_spec({"grid": {"length": 10.0, "points": 16}, "family": {"a": {"kind": "random"}}})
    assert info.value.key == "family.a.count"
    with pytest.raises(ValueError, match="not both"):
        generate_dataset(TINY, "x.h5", workers=2, scheduler="tcp://127.0.0.1:1")


def test_shipped_spec_plan() -> None:
    """The shipped spec resolves to ~5-10k samples at N = 100, about a third from ATG trajectories."""
    resolved, _ = resolve_spec(SHIPPED)
    assert resolved["grid"] == {"length": 100.0, "points": 100}
    counts = _spec_counts(resolved)
    total = sum(counts.values())
    traj = sum(c for n, c in counts.items() if resolved["family"][n]["kind"] == "trajectory")
    assert 5000 <= total <= 10000 and 0.25 <= traj / total <= 0.4
    assert {f["kind"] for f in resolved["family"].values()} == {"random", "perlin", "trajectory"}


def test_an_evolution_whose_groove_dips_below_zero_still_gives_floored_frames() -> None:
    """The first islands trajectory of the shipped spec dips below h = 0 near t = 41.7 (the FEM sees the groove
    clipped, the frames are floored): a data set evolution goes on where a run would stop as unphysical."""
    spec = ROOT / "datasets" / "atg_elastic.toml"
    small = {"family.islands.count": 1, "family.islands.end": 45.0, "family.islands.snapshots": 5}
    resolved, _ = resolve_spec(spec, {**small, "family.random.count": 0, "family.perlin.count": 0})
    (task,) = [t for t in plan_tasks(resolved) if t.kind == "trajectory"]
    out = run_task(task)
    assert out["h"].shape == (5, resolved["grid"]["points"]) and out["h"].min() >= 0.0
    assert np.isclose(out["h"].min(), 0.0)  # a frame whose groove went below 0, lifted to the floor (shift)
