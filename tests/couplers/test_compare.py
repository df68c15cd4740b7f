"""A/B comparison runner (hybrid.couplers.compare) on tiny ATG cases."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import tomli_w

from hybrid.core.config import ConfigError, Option, Table
from hybrid.core.io import OutputFile, read_output
from hybrid.core.registry import PROVIDERS, ProviderSpec
from hybrid.couplers.compare import (
    _common_frames,
    _monitor_summary,
    compare,
    plot_error,
    plot_profiles,
    plot_uncertainty,
    provider_document,
    write_report,
)
from hybrid.couplers.monitor import MONITOR_COLUMNS
from hybrid.solvers.atg import LinearElastic

FIXED_KEYS = ("case", "term", "providers", "wall_seconds", "speedup", "nn_fraction", "time", "metrics", "descriptors")
METRIC_KEYS = ("rmse", "rmse_rel", "mare", "pearson", "psnr", "ssim")
FRAMES = 5  # steps 0, 10, 20, 30, 40


def tiny_case() -> dict[str, Any]:
    return {
        "case": {"model": "atg", "seed": 1},
        "grid": {"length": 32.0, "points": 32},
        "initial": {"kind": "random", "mean": 3.0, "amplitude": 0.3, "modes": 4},
        "terms": {"elastic": {"provider": "linear"}},
        "time": {"integrator": "imex", "dt": 0.01, "steps": 40},
        "output": {"every": 10},
    }


def _strict_json(path: Path) -> dict[str, Any]:
    def reject(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.fixture(scope="module")
def linear_vs_fem(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("linear_fem")
    return compare(tiny_case(), "elastic", ("linear", "fem"), out_dir=out), out


def test_report_fixed_keys(linear_vs_fem: tuple[dict[str, Any], Path]) -> None:
    _, out = linear_vs_fem
    on_disk = _strict_json(out / "report.json")
    for key in FIXED_KEYS:
        assert key in on_disk, key
    assert on_disk["term"] == "elastic"
    assert on_disk["providers"] == ["linear", "fem"]
    assert set(on_disk["wall_seconds"]) == {"linear", "fem"}
    wall = on_disk["wall_seconds"]
    assert all(v > 0 for v in wall.values())
    assert on_disk["speedup"] == pytest.approx(wall["linear"] / wall["fem"])
    assert on_disk["nn_fraction"] == {"linear": 0.0, "fem": 0.0}
    assert on_disk["time"] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert on_disk["step"] == [0, 10, 20, 30, 40]
    assert set(on_disk["metrics"]) == {"h", "elastic"}
    for key, per in on_disk["metrics"].items():
        assert set(per) == set(METRIC_KEYS), key
        assert all(len(v) == FRAMES for v in per.values()), key
    assert {"roughness", "dominant_wavelength", "island_count", "max_height"} <= set(on_disk["descriptors"])
    for name, per in on_disk["descriptors"].items():
        assert set(per) == {"linear", "fem"}, name
        assert all(len(v) == FRAMES for v in per.values()), name
    timing = on_disk["timing"]["fem"]["terms"]["elastic"]
    assert timing["provider"] == "fem" and timing["calls"] == 40 + FRAMES  # one extra call per saved frame


def test_report_metrics_and_outputs(linear_vs_fem: tuple[dict[str, Any], Path]) -> None:
    report, out = linear_vs_fem
    for key, per in report["metrics"].items():
        for name in ("rmse", "rmse_rel", "pearson", "ssim"):
            assert np.all(np.isfinite(per[name])), (key, name)
        rmse = np.asarray(per["rmse"])
        psnr = np.asarray(per["psnr"])
        assert np.all(np.isfinite(psnr[rmse > 0])), key
    h = report["metrics"]["h"]
    # same seed -> same initial state; the providers then drive different evolutions
    assert h["rmse"][0] == 0.0 and h["psnr"][0] == math.inf
    assert all(r > 0 for r in h["rmse"][1:])
    assert report["metrics"]["elastic"]["rmse"][0] > 0  # linear law vs FEM on the same profile
    assert report["descriptors"]["roughness"]["linear"][0] == report["descriptors"]["roughness"]["fem"][0]
    for name in ("profiles.png", "error.png"):
        assert (out / name).stat().st_size > 1000
    assert not (out / "uncertainty.png").exists()  # no monitor table: skipped
    assert report["plots"] == ["profiles.png", "error.png"]
    a, b = read_output(out / "A.h5"), read_output(out / "B.h5")
    assert a["terms"]["elastic"].shape == (FRAMES, 32) and b["terms"]["elastic"].shape == (FRAMES, 32)
    np.testing.assert_array_equal(a["fields"]["h"][0], b["fields"]["h"][0])
    assert 'provider = "fem"' in b["attrs"]["case"]


def test_same_provider_is_exact(tmp_path: Path) -> None:
    report = compare(tiny_case(), "elastic", ("linear", "linear"), out_dir=tmp_path)
    assert report["labels"] == ["linear:A", "linear:B"]
    assert set(report["wall_seconds"]) == {"linear:A", "linear:B"}
    for key, per in report["metrics"].items():
        assert per["rmse"] == [0.0] * FRAMES, key
        assert per["ssim"] == [1.0] * FRAMES, key
    on_disk = _strict_json(tmp_path / "report.json")
    assert on_disk["metrics"]["h"]["psnr"] == [None] * FRAMES  # inf -> null
    assert on_disk["descriptors"]["roughness"]["linear:A"] == on_disk["descriptors"]["roughness"]["linear:B"]


def test_case_file_with_relative_paths_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    x = np.arange(32) * 1.0
    np.save(cases / "h0.npy", 3.0 + 0.2 * np.cos(2 * np.pi * 2 * x / 32.0))
    doc = tiny_case()
    doc["initial"] = {"kind": "file", "path": "h0.npy"}
    (cases / "film.toml").write_text(tomli_w.dumps(doc))
    monkeypatch.chdir(tmp_path)  # the initial profile resolves against the case file, not the cwd
    report = compare(
        cases / "film.toml", "elastic", ("linear", "linear"), overrides=["time.steps=20"], out_dir=tmp_path / "cmp"
    )
    assert report["time"] == pytest.approx([0.0, 0.1, 0.2])
    assert report["case_name"] == "film" and report["case"].endswith("film.toml")
    assert report["descriptors"]["dominant_wavelength"]["linear:A"][0] == pytest.approx(16.0)


def _fake_provider(monkeypatch: pytest.MonkeyPatch, name: str, options: Table, build: Any) -> None:
    monkeypatch.setitem(PROVIDERS["elastic"], name, ProviderSpec("elastic", name, build, options))


def test_provider_switch_drops_foreign_options(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = Table({"threshold": Option("float", 1.0, "x"), "shared": Option("int", 1, "y")})
    _fake_provider(monkeypatch, "fake", opts, lambda ctx, o: LinearElastic(ctx))
    _fake_provider(monkeypatch, "other", Table({"shared": Option("int", 1, "y")}), lambda ctx, o: LinearElastic(ctx))
    doc = tiny_case()
    doc["terms"]["elastic"] = {"provider": "fake", "threshold": 0.5, "shared": 3}
    doc["output"]["terms"] = ["elastic"]
    keep = provider_document(doc, "elastic", "fake")
    assert keep["terms"]["elastic"] == {"provider": "fake", "threshold": 0.5, "shared": 3}
    assert keep["output"]["terms"] == ["elastic"]
    assert provider_document(doc, "elastic", "other")["terms"]["elastic"] == {"provider": "other", "shared": 3}
    assert provider_document(doc, "elastic", "linear")["terms"]["elastic"] == {"provider": "linear"}
    assert doc["terms"]["elastic"]["threshold"] == 0.5  # the input is not modified
    assert provider_document(tiny_case(), "elastic", "fem")["output"]["terms"] == ["elastic"]


class _FakeMonitor(LinearElastic):
    """Linear law posing as a monitor (a DecisionLog): every third call "falls back to DNS", every fourth is
    audited."""

    provider = "fakemon"
    log_group = "monitor"
    log_columns = MONITOR_COLUMNS

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._rows: list[tuple[int, float, float, str, float]] = []
        self.nn_calls = 0

    def evaluate(self, state: Any) -> Any:
        n = self.calls
        source = "dns" if n % 3 == 2 else "nn"
        self.nn_calls += source == "nn"
        audit = 0.01 * (n + 1) if n % 4 == 0 else math.nan
        self._rows.append((state.step, state.time, 0.1 + 0.05 * (n % 3), source, audit))
        return super().evaluate(state)

    @property
    def nn_fraction(self) -> float:
        return self.nn_calls / max(self.calls, 1)

    def summary(self) -> dict[str, Any]:
        return {"nn_fraction": self.nn_fraction}

    def progress_note(self) -> str:
        return f"nn {100 * self.nn_fraction:.0f}%"

    def take_log_rows(self) -> dict[str, Any]:
        rows, self._rows = self._rows, []
        cols = list(zip(*rows, strict=True)) if rows else [[]] * 5
        return {
            "step": np.asarray(cols[0], dtype=np.int64),
            "time": np.asarray(cols[1], dtype=float),
            "uncertainty": np.asarray(cols[2], dtype=float),
            "threshold": np.full(len(rows), 0.18),
            "source": list(cols[3]),
            "audit_error": np.asarray(cols[4], dtype=float),
        }


def test_monitor_provider_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_provider(monkeypatch, "fakemon", Table({}), lambda ctx, o: _FakeMonitor(ctx))
    report = compare(tiny_case(), "elastic", ("linear", "fakemon"), out_dir=tmp_path)
    calls = 40 + FRAMES
    n_dns = len([n for n in range(calls) if n % 3 == 2])
    assert report["nn_fraction"]["fakemon"] == pytest.approx((calls - n_dns) / calls)
    assert report["nn_fraction"]["linear"] == 0.0
    mon = report["monitor"]["fakemon"]
    assert mon["decisions"] == calls and mon["fallbacks"] == n_dns and mon["nn"] == calls - n_dns
    assert mon["audits"] == len(range(0, calls, 4))
    assert mon["max_audit_error"] == pytest.approx(0.01 * (max(range(0, calls, 4)) + 1))
    assert "linear" not in report["monitor"]
    assert (tmp_path / "uncertainty.png").stat().st_size > 1000
    assert "uncertainty.png" in report["plots"]
    assert report["metrics"]["h"]["rmse"] == [0.0] * FRAMES  # the fake serves the linear law


def test_uncertainty_plot_from_synthetic_table(tmp_path: Path) -> None:
    path = tmp_path / "mon.h5"
    with OutputFile(path, case_text="", attrs={}, grid_lengths=[8.0], grid_shape=[8]) as out:
        out.append_frame(0, 0.0, {"h": np.ones(8)})
        t = np.linspace(0.0, 1.0, 21)
        source = np.where(np.arange(21) % 5 == 4, "dns", "nn")
        out.append_rows(
            "monitor/elastic",
            {
                "step": np.arange(21),
                "time": t,
                "uncertainty": 0.1 + 0.1 * np.sin(6 * t) ** 2,
                "threshold": np.full(21, 0.15),
                "source": source.tolist(),
                "audit_error": np.where(np.arange(21) % 7 == 0, 0.02, np.nan),
            },
        )
    res = read_output(path)
    summary = _monitor_summary(res["monitor"]["elastic"])
    assert summary == {
        "decisions": 21,
        "nn": 17,
        "fallbacks": 4,
        "nn_fraction": pytest.approx(17 / 21),
        "audits": 3,
        "max_audit_error": pytest.approx(0.02),
        "mean_audit_error": pytest.approx(0.02),
        "max_uncertainty": pytest.approx(0.2, abs=1e-3),
        "refused": 0,
    }
    refused = {"source": ["nn", "dns"], "uncertainty": [0.1, math.inf], "audit_error": [math.nan, math.nan]}
    assert _monitor_summary(refused)["max_uncertainty"] == 0.1 and _monitor_summary(refused)["refused"] == 1
    report = {"term": "elastic", "labels": ["fem", "monitor"]}
    empty = {"monitor": {}}
    assert plot_uncertainty(tmp_path / "u.png", report, [empty, res])
    assert (tmp_path / "u.png").stat().st_size > 1000
    assert not plot_uncertainty(tmp_path / "none.png", report, [empty, empty])
    assert not (tmp_path / "none.png").exists()


def test_errors(tmp_path: Path) -> None:
    no_surrogate = r"atg_surrogate does not exist \(no surrogate ships for model 'atg'.*allowed: 'shipped'"
    with pytest.raises(ConfigError, match=no_surrogate):
        compare(tiny_case(), "stepper", ("dns", "monitor"), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="no term 'bogus'"):
        compare(tiny_case(), "bogus", ("a", "b"), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="no-such-provider"):
        compare(tiny_case(), "elastic", ("linear", "no-such-provider"), out_dir=tmp_path)
    assert not (tmp_path / "A.h5").exists()  # both runs are built before either runs
    with pytest.raises(ValueError, match="two provider names"):
        compare(tiny_case(), "elastic", ("linear",), out_dir=tmp_path)


def test_stepper_hook_sets_stepper_provider() -> None:
    doc = tiny_case()
    doc["stepper"] = {"provider": "monitor", "weights": "w", "tolerance": 0.1, "bogus": 1}
    out = provider_document(doc, "stepper", "nn")  # keeps only what `nn` accepts (the rest is logged)
    assert out["stepper"] == {"provider": "nn", "weights": "w"}
    assert provider_document(doc, "stepper", "dns")["stepper"] == {"provider": "dns"}
    assert provider_document(tiny_case(), "stepper", "dns")["stepper"] == {"provider": "dns"}  # created if missing
    assert out["terms"] == doc["terms"] and "terms" not in out["output"]


def test_common_frames_and_strict_json(tmp_path: Path) -> None:
    ia, ib = _common_frames(np.array([0.0, 0.1, 0.2, 0.3]), np.array([0.0, 0.2 + 1e-15, 0.4]))
    assert ia.tolist() == [0, 2] and ib.tolist() == [0, 1]
    path = write_report(
        tmp_path / "r.json", {"a": [math.nan, math.inf, -math.inf, 1.5], "b": np.float64(2.0), "c": np.arange(2)}
    )
    assert _strict_json(path) == {"a": [None, None, None, 1.5], "b": 2.0, "c": [0, 1]}


def test_plots_of_2d_fields(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 12, 16))
    pairs = {"eta0": (a, a + 0.1), "grain": (a > 0, a > 0.1), "eta": (a[:, None], a[:, None])}
    report = {
        "term": "patch",
        "labels": ["dns", "nn"],
        "time": [0.0, 1.0, 2.0],
        "metrics": {"eta0": {"rmse_rel": [0.0, 0.1, 0.2]}},
        "grid": {"lengths": [12.0, 16.0], "shape": [12, 16]},
    }
    idx = (np.arange(3), np.arange(3))
    assert plot_profiles(tmp_path / "p.png", report, idx, pairs, spatial=2)
    assert plot_error(tmp_path / "e.png", report)
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "e.png").stat().st_size > 1000
    assert not plot_profiles(tmp_path / "none.png", report, idx, {"eta": pairs["eta"]}, spatial=2)


def test_front_law_compare_overlays_the_fronts(tmp_path: Path) -> None:
    """The front law's h(x) lives on the x axis of the phase field's 2D grid: the report compares it per frame and
    the profiles plot overlays the fronts of both runs (issue #24's compare)."""
    case = Path(__file__).resolve().parents[2] / "cases" / "front_kpz.toml"
    report = compare(case, "front_correction", ("eikonal", "none"), overrides={"time.end": 20.0}, out_dir=tmp_path)
    assert "profiles.png" in report["plots"] and (tmp_path / "profiles.png").stat().st_size > 0
    rel = report["metrics"]["h"]["rmse_rel"]
    assert len(rel) == 3 and rel[0] == 0.0 and 0.0 < rel[-1] < 0.1  # same start; KPZ drifts from the eikonal law


def test_laser_patch_compare_has_mare_descriptors_and_pictures(tmp_path: Path) -> None:
    """hybrid compare cfd against the monitor on the laser's patch term, both handing the patch back every 20 steps:
    the moving patch patch/T is compared per frame (mare 0 at the start, where the monitor answers the cold plate by
    cfd, below the issue's 10 % after, and not 0 where nn answered), the melt-pool descriptors are reported for both
    runs, the term is not saved a second time under /terms (the model saves it as /patch/T), and the side-by-side
    images are drawn."""
    case = Path(__file__).resolve().parents[2] / "cases" / "laser_track.toml"
    sets = {"time.end": None, "time.steps": 40, "output.every": 20, "terms.patch_temperature.couple_every": 20}
    report = compare(case, "patch_temperature", ("cfd", "monitor"), overrides=sets, out_dir=tmp_path / "cmp")
    with h5py.File(tmp_path / "cmp" / "B.h5") as f:
        log = f["monitor/patch_temperature"]
        source = [s.decode() for s in log["source"][:]]
        assert list(log["step"][:]) == [0, 20, 40] and source[0] == "dns" and source[-1] == "nn"  # t = 0: cold plate
    mare = report["metrics"]["patch/T"]["mare"]
    assert len(mare) == 3 and mare[0] == 0.0 and all(m < 0.1 for m in mare) and mare[-1] > 0.0
    pool = report["descriptors"]
    assert set(pool) >= {"melt_depth", "melt_width", "peak_temperature"} and set(pool["melt_depth"]) == {
        "cfd",
        "monitor",
    }
    depth = pool["melt_depth"]
    assert depth["cfd"][-1] > 1e-5 and abs(depth["monitor"][-1] / depth["cfd"][-1] - 1.0) < 0.2
    assert "patch_temperature" not in read_output(tmp_path / "cmp" / "A.h5")["terms"]
    assert "profiles.png" in report["plots"]
