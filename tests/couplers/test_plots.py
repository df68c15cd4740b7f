"""Figures of runs and comparisons: detached from pyplot, axes in the model's units, tolerance beside the audits.

The figures are caught as they are saved (``Figure.savefig``), so the tests read their axes, not their pixels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

import hybrid.cases  # noqa: F401  (registers the models)
from hybrid.analysis.atg_plots import plot_atg
from hybrid.analysis.grain_plots import plot_grain_growth
from hybrid.analysis.grain_statistics import AREAS_TABLE, GRAINS_TABLE
from hybrid.core.io import OutputFile, read_output
from hybrid.core.registry import get_model
from hybrid.couplers.compare import plot_error, plot_profiles, plot_uncertainty

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure saved during the test, in order."""
    saved: list[Figure] = []
    original = Figure.savefig

    def capture(self: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    return saved


@pytest.fixture
def user_backend() -> Any:
    """A user's own matplotlib backend (svg here), restored after the test."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    yield "svg"
    matplotlib.use(before)


def _atg_results(path: Path) -> Path:
    with OutputFile(path, case_text="", attrs={}, grid_lengths=[50.0], grid_shape=[50]) as out:
        x = np.arange(50) * 1.0
        for k in range(4):
            out.append_frame(k * 10, 0.5 * k, {"h": 3.0 + 0.1 * (k + 1) * np.cos(2 * np.pi * 5 * x / 50.0)})
    return path


def _grain_results(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with OutputFile(path, case_text="", attrs={}, grid_lengths=[64.0, 64.0], grid_shape=[64, 64]) as out:
        out.append_frame(0, 0.0, {"grain": np.zeros((64, 64), dtype=np.int32)})
        for k, count in enumerate([40, 30, 20, 10, 8, 6, 5, 4]):
            areas = rng.uniform(0.5, 1.5, count) * 4096 / count
            t = 10.0 * (k + 1)
            out.append_rows(
                GRAINS_TABLE,
                {
                    "step": [k + 1],
                    "time": [t],
                    "count": [count],
                    "mean_area": [areas.mean()],
                    "mean_radius": [np.sqrt(areas / np.pi).mean()],
                    "area_radius": [np.sqrt(areas.mean() / np.pi)],
                },
            )
            out.append_rows(
                AREAS_TABLE, {"step": np.full(count, k + 1), "time": np.full(count, t), "label": np.arange(count),
                              "area": areas},
            )  # fmt: skip
    return path


def test_no_library_module_touches_pyplot_or_the_backend() -> None:
    for path in (ROOT / "hybrid").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "matplotlib.use(" not in text and "import matplotlib.pyplot" not in text, path
        assert "from matplotlib import pyplot" not in text and "plt." not in text, path


def test_run_plots_keep_the_users_backend_and_label_axes_in_the_models_units(
    tmp_path: Path, figures: list[Figure], user_backend: str
) -> None:
    written = plot_atg(_atg_results(tmp_path / "atg.h5"), tmp_path / "figs")
    written += plot_grain_growth(_grain_results(tmp_path / "gg.h5"), tmp_path / "figs")
    assert matplotlib.get_backend() == user_backend  # a notebook's backend stays what its user chose
    assert [p.name for p in written] == [
        "atg_profiles.png", "atg_wavelength.png", "grain_radius.png", "grain_size_distribution.png"
    ]  # fmt: skip
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    atg, gg = get_model("atg"), get_model("graingrowth")
    profiles, wavelength, radius, _ = figures
    ax = profiles.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == (f"x [{atg.unit('x')}]", f"h [{atg.unit('h')}]")
    assert ax.get_ylabel() == "h [nm]" and ax.get_legend_handles_labels()[1][0] == "t = 0 time unit"
    left, right = wavelength.axes
    assert left.get_xlabel() == right.get_xlabel() == f"time [{atg.unit('time')}]"
    assert left.get_ylabel() == "roughness std(h) [nm]" and right.get_ylabel() == "dominant wavelength [nm]"
    ax = radius.axes[0]
    assert ax.get_xlabel() == f"time t [{gg.unit('time')}]"
    assert ax.get_ylabel() == f"mean grain radius ⟨R⟩ [{gg.unit('x')}]"


def _report(**monitor: Any) -> dict[str, Any]:
    return {
        "term": "elastic",
        "model": "atg",
        "labels": ["fem", "monitor"],
        "time": [0.0, 0.5, 1.0],
        "metrics": {"h": {"rmse_rel": [0.0, 0.01, 0.02]}, "elastic": {"rmse_rel": [0.0, 0.03, 0.05]}},
        "grid": {"lengths": [50.0], "shape": [50]},
        "monitor": {"monitor": monitor},
    }


def _monitored(path: Path) -> dict[str, Any]:
    with OutputFile(path, case_text="", attrs={}, grid_lengths=[8.0], grid_shape=[8]) as out:
        out.append_frame(0, 0.0, {"h": np.ones(8)})
        t = np.linspace(0.0, 1.0, 21)
        out.append_rows(
            "monitor/elastic",
            {
                "step": np.arange(21),
                "time": t,
                "uncertainty": 0.01 + 0.01 * np.sin(6 * t) ** 2,
                "threshold": np.full(21, 0.015),
                "source": np.where(np.arange(21) % 5 == 4, "dns", "nn").tolist(),
                "audit_error": np.where(np.arange(21) % 7 == 0, 0.004, np.nan),
            },
        )
    return read_output(path)


def test_compare_plots_draw_the_tolerance_on_the_axis_of_the_audited_errors(
    tmp_path: Path, figures: list[Figure]
) -> None:
    res = _monitored(tmp_path / "mon.h5")
    report = _report(tolerance=0.02, error_measure="RMSE(ρ) / ρ0")
    assert plot_uncertainty(tmp_path / "u.png", report, [{"monitor": {}}, res])
    (fig,) = figures
    _, audits = fig.axes  # uncertainty axis, and its twin for the audits
    assert audits.get_ylabel() == "audited error, tolerance [RMSE(ρ) / ρ0]"
    lines = {line.get_label(): line for line in audits.get_lines()}
    np.testing.assert_array_equal(lines["audited error"].get_ydata(), [0.004, 0.004, 0.004])
    assert set(lines["tolerance 0.02"].get_ydata()) == {0.02}  # drawn on the same axis, in the same unit
    assert audits.get_ylim()[0] == 0.0 and audits.get_ylim()[1] > 0.02
    # without a stated tolerance the audits are still drawn, and the axis says so
    figures.clear()
    assert plot_uncertainty(tmp_path / "u2.png", _report(), [{"monitor": {}}, res])
    _, audits = figures[0].axes
    assert [line.get_label() for line in audits.get_lines()] == ["audited error"]
    assert audits.get_ylabel() == "audited error, tolerance [the tolerance's unit]"


def test_compare_plots_label_profiles_and_time_in_the_models_units(tmp_path: Path, figures: list[Figure]) -> None:
    rng = np.random.default_rng(0)
    h = 3.0 + 0.1 * rng.normal(size=(3, 50))
    rho = 1.0 + rng.normal(size=(3, 50))
    pairs = {"h": (h, h + 0.01), "elastic": (rho, rho * 1.01)}
    report = _report()
    assert plot_profiles(tmp_path / "p.png", report, (np.arange(3), np.arange(3)), pairs, spatial=1)
    assert plot_error(tmp_path / "e.png", report)
    profiles, error = figures
    assert [a.get_ylabel() for a in profiles.axes] == ["h [nm]", "elastic [eV/nm³]"]
    assert {a.get_xlabel() for a in profiles.axes} == {"x [nm]"}
    assert error.axes[0].get_xlabel() == "time [time unit]"


def test_compare_reports_the_tolerance_and_its_unit_of_the_shipped_monitor(tmp_path: Path) -> None:
    """The audit error the monitor logs and the tolerance it states are one quantity: RMSE(ρ) / ρ0."""
    from hybrid import load_provider
    from hybrid.core.state import State
    from hybrid.couplers.compare import _judged_by

    mon = load_provider("elastic", "monitor", case=ROOT / "cases" / "atg_film.toml")
    judged = _judged_by(mon)
    assert judged == {"tolerance": 0.02, "error_measure": "RMSE(ρ) / ρ0"}
    fem = load_provider("elastic", "fem", case=ROOT / "cases" / "atg_film.toml")
    h = 3.0 + 0.3 * np.cos(2 * np.pi * 4 * np.arange(100) / 100)
    state = State.from_arrays({"h": h})
    nn_value, dns_value = mon.nn(state), fem(state)
    err = mon.nn.error(state, nn_value, dns_value)
    assert math.isclose(err, float(np.sqrt(np.mean((nn_value - dns_value) ** 2))) / mon.nn.rho0, rel_tol=1e-12)
    assert _judged_by(fem) == {}
