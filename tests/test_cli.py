"""The `hybrid` command on tiny cases, and precise errors for bad case files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hybrid.cli import main

TINY = """
[case]
name = "tiny"
model = "atg"
seed = 1

[grid]
length = 32.0
points = 32

[initial]
kind = "random"
mean = 3.0
amplitude = 0.2
modes = 4

[terms.elastic]
provider = "linear"

[time]
integrator = "imex"
dt = 0.01
steps = 20

[output]
every = 10
"""


def _write(tmp_path: Path, text: str, name: str = "case.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_run_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY)
    out = tmp_path / "res.h5"
    assert main(["run", str(case), "--out", str(out), "--no-progress", "--set", "time.steps=30"]) == 0
    assert "30 steps" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fields/h" in text and "frames" in text


def test_a_failing_plot_is_a_warning_not_a_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's results are complete before the plots are drawn: a plot that raises is reported on stderr and the
    run still exits 0 with its results file."""
    import hybrid.cli

    def broken(results: Path, out_dir: Path) -> list[Path]:
        raise ValueError("no frames to draw")

    monkeypatch.setattr(hybrid.cli, "_model_plot", lambda sim: broken)
    case, out = _write(tmp_path, TINY), tmp_path / "run.h5"
    assert main(["run", str(case), "--out", str(out), "--no-progress", "--set", "time.steps=10"]) == 0
    err = capsys.readouterr().err
    assert "plots of" in err and "ValueError: no frames to draw" in err and out.exists()


def test_console_script_help() -> None:
    res = subprocess.run([sys.executable, "-m", "hybrid.cli", "run", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--restart" in res.stdout and "--set" in res.stdout


@pytest.mark.parametrize(
    "edit,key,allowed",
    [
        (("dt = 0.01", "dtt = 0.01"), "time.dtt", "dt"),  # unknown key, with the allowed keys
        (("dt = 0.01", 'dt = "fast"'), "time.dt", "float"),  # wrong type
        (("dt = 0.01", "dt = -0.01"), "time.dt", "> 0"),  # out of range
        (('integrator = "imex"', 'integrator = "rk4"'), "time.integrator", "euler"),  # not a choice
        (('provider = "linear"', 'provider = "magic"'), "terms.elastic.provider", "fem"),  # unknown provider
        (('model = "atg"', 'model = "nope"'), "case.model", "atg"),  # unknown model
        (('kind = "random"', 'kind = "noise"'), "initial.kind", "sinusoid"),  # unknown initial kind
        (("points = 32", "points = 2"), "grid.points", "in [4, 4194304]"),
        (("[output]", "[outputs]"), "outputs", "output"),  # unknown table
    ],
)
def test_bad_case_files_name_file_key_and_allowed_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], key: str, allowed: str
) -> None:
    case = _write(tmp_path, TINY.replace(*edit), "bad.toml")
    assert main(["run", str(case), "--out", str(tmp_path / "x.h5"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and key in err and allowed in err


def test_bad_override_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY)
    assert main(["run", str(case), "--set", "model.poisson=0.7", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model.poisson" in err and "0.5" in err


def test_malformed_toml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY + "\n[time\n", "broken.toml")
    assert main(["run", str(case), "--no-progress"]) == 2
    assert "broken.toml" in capsys.readouterr().err


def test_info_describes_the_shipped_weights(capsys: pytest.CaptureFixture[str]) -> None:
    from hybrid.couplers.terms.elastic import SHIPPED_WEIGHTS

    assert main(["info", str(SHIPPED_WEIGHTS)]) == 0
    out = capsys.readouterr().out
    assert "NN ensemble for term 'elastic'" in out and "monitor threshold" in out
    assert "for metric rho0, tolerance 0.02" in out and "for metric modulation, tolerance 0.05" in out
    assert "'linear_channels': [0, 1]" in out  # the exact-linear-response ensemble


def test_info_describes_the_shipped_jump_surrogate(capsys: pytest.CaptureFixture[str]) -> None:
    from hybrid.couplers.surrogate import SHIPPED_SURROGATES

    assert main(["info", str(SHIPPED_SURROGATES / "graingrowth_surrogate")]) == 0
    out = capsys.readouterr().out
    assert "jump surrogate for model 'graingrowth'" in out and "NN jump of 100 steps" in out
    assert "window error RMS" in out and "monitor threshold" in out


def test_train_writes_an_ensemble_and_prints_its_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hybrid.models.data import write_dataset
    from tests.models import synthetic_dataset

    data = tmp_path / "tiny.h5"
    write_dataset(data, synthetic_dataset(samples=80, points=16, group_size=4, seed=2), created="now")
    spec = _write(
        tmp_path,
        '[model]\nchannels = 4\nlayers = 1\nkernel_size = 3\ndilations = [1]\nlinear_response = "exact"\n\n'
        '[training]\nmembers = 5\nepochs = 2\nbatch_size = 16\ndevice = "cpu"\n',
        "train.toml",
    )
    assert main(["train", str(spec), "--data", str(data), "--out", str(tmp_path / "m"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"written: {tmp_path / 'm'}: NN ensemble for term 'elastic'")
    assert "for metric rho0, tolerance 0.02" in out and "for metric modulation, tolerance 0.05" in out
    assert (tmp_path / "m" / "weights.pt").is_file()


def test_compare_writes_the_report_and_prints_the_speedup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hybrid compare` on the tiny case: the report of the two runs, and the line a user reads."""
    import json

    case = _write(tmp_path, TINY)
    out = tmp_path / "ab"
    args = ["compare", str(case), "--term", "elastic", "--providers", "linear,fem", "--out", str(out)]
    assert main([*args, "--no-progress", "--set", "time.steps=10"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["providers"] == ["linear", "fem"] and report["time"][-1] == pytest.approx(0.1)
    assert f"speedup {report['speedup']:.2f}x" in printed and "h: max rmse_rel" in printed
    from hybrid.core.io import read_output

    a, b = (read_output(out / f"{x}.h5")["fields"]["h"][-1] for x in "AB")  # the two runs, kept in --out
    rel = report["metrics"]["h"]["rmse_rel"]
    assert rel[0] == 0.0 and rel[-1] > 0  # the same start, then the small-slope law and the FEM part
    assert rel[-1] == pytest.approx(
        np.sqrt(np.mean((b - a) ** 2)) / np.std(a), rel=1e-12
    )  # rmse_rel as defined in docs


@pytest.mark.parametrize("providers", ["linear", "linear,fem,nn", ","])
def test_compare_needs_exactly_two_providers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], providers: str
) -> None:
    case = _write(tmp_path, TINY)
    assert main(["compare", str(case), "--term", "elastic", "--providers", providers, "--no-progress"]) == 2
    assert "--providers needs two names" in capsys.readouterr().err


def test_dataset_writes_what_the_library_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hybrid dataset` picks the generator from the spec (profiles or trajectories) and passes --set through."""
    from hybrid.couplers.dataset import generate_dataset, read_dataset
    from hybrid.couplers.trajectories import generate_trajectories, read_trajectories

    root = Path(__file__).resolve().parents[1] / "datasets"
    small = {"family.random.count": 4, "family.perlin.count": 4, "family.islands.count": 1}
    small |= {"family.islands.snapshots": 3}
    sets = [x for k, v in small.items() for x in ("--set", f"{k}={v}")]
    cli = tmp_path / "cli.h5"
    assert main(["dataset", str(root / "atg_elastic_tiny.toml"), "--out", str(cli), "--workers", "1", *sets]) == 0
    assert f"dataset written: {cli}" in capsys.readouterr().out
    lib = generate_dataset(root / "atg_elastic_tiny.toml", tmp_path / "lib.h5", workers=1, overrides=small)
    a, b = read_dataset(cli), read_dataset(lib)
    assert len(a["h"]) == 4 + 4 + 3
    for key in ("h", "rho", "rho0", "family"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    spec, sets = root / "graingrowth_trajectories_tiny.toml", ["--set", "trajectories.count=1"]
    assert main(["dataset", str(spec), "--out", str(tmp_path / "traj.h5"), "--workers", "1", *sets]) == 0
    lib = generate_trajectories(spec, tmp_path / "traj_lib.h5", workers=1, overrides={"trajectories.count": 1})
    ta, tb = read_trajectories(tmp_path / "traj.h5"), read_trajectories(lib)
    assert ta["seed"].tolist() == [5] and ta["attrs"]["spec"] == tb["attrs"]["spec"]
    for key in ("step", "pairs"):
        np.testing.assert_array_equal(ta[key], tb[key], err_msg=key)
    np.testing.assert_array_equal(ta["fields"]["eta"], tb["fields"]["eta"])


def test_run_restart_continues_an_interrupted_run_bitwise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run cut after its step-10 checkpoint and continued with `hybrid run --restart` ends as the uncut run."""
    from hybrid.cases import load_case
    from hybrid.core.io import read_checkpoint, read_output

    case = _write(tmp_path, TINY.replace("every = 10", "every = 10\ncheckpoint_every = 10"))
    full = tmp_path / "full.h5"
    assert main(["run", str(case), "--out", str(full), "--no-progress", "--no-plots"]) == 0
    cut = tmp_path / "cut.h5"
    sim = load_case(case, out=cut, progress=False)
    for _ in range(13):
        sim.step()
    sim.close()
    ckpt = tmp_path / "cut.ckpt.h5"
    assert read_checkpoint(ckpt).step == 10
    assert main(["run", str(case), "--out", str(cut), "--restart", str(ckpt), "--no-progress", "--no-plots"]) == 0
    assert "done: 20 steps" in capsys.readouterr().out
    a, b = read_output(full), read_output(cut)
    np.testing.assert_array_equal(a["step"], b["step"])
    np.testing.assert_array_equal(a["fields"]["h"], b["fields"]["h"])


def test_a_run_that_blows_up_exits_3_and_keeps_its_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hybrid.core.io import read_checkpoint, read_output

    # evaporation at 1 nm per time unit eats the 3 nm film through to the substrate by t ≈ 3 (step ≈ 300)
    case = _write(tmp_path, TINY)
    sets = ["--set", "model.flux=-1.0", "--set", "time.steps=2000", "--set", "output.checkpoint_every=2"]
    out = tmp_path / "boom.h5"
    assert main(["run", str(case), "--out", str(out), "--no-progress", *sets]) == 3
    err = capsys.readouterr().err
    assert "hybrid: run stopped:" in err and "fell below 0" in err and "boom.ckpt.h5" in err
    ck = read_checkpoint(tmp_path / "boom.ckpt.h5")
    assert ck.step > 0 and np.isfinite(ck.fields["h"]).all()
    assert np.isfinite(read_output(out)["fields"]["h"]).all()


def test_an_earlier_result_is_replaced_only_with_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY)
    out = tmp_path / "res.h5"
    assert main(["run", str(case), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    before = out.read_bytes()
    assert main(["run", str(case), "--out", str(out), "--no-progress", "--no-plots", "--set", "time.dt=0.02"]) == 2
    assert "holds an earlier result; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before  # untouched
    assert main(["run", str(case), "--out", str(out), "--no-progress", "--no-plots", "--overwrite"]) == 0


def test_bad_devices_and_unreadable_paths_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY.replace('provider = "linear"', 'provider = "nn"\ndevice = "tpu"'))
    assert main(["run", str(case), "--out", str(tmp_path / "x.h5"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "case.toml" in err and "terms.elastic.device" in err and "'cpu', 'cuda', 'cuda:N'" in err
    assert main(["run", str(tmp_path), "--no-progress"]) == 2  # a folder as the case file
    assert "is a folder; give a TOML file" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["run", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "afile" / "r.h5"), "--no-progress"]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- overrides that replace file keys

CASES = Path(__file__).resolve().parents[1] / "cases"


def test_set_steps_replaces_end_and_end_replaces_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hybrid

    case = _write(tmp_path, TINY)  # has time.steps
    assert main(["run", str(case), "--out", str(tmp_path / "a.h5"), "--no-progress", "--set", "time.end=0.05"]) == 0
    assert "done: 5 steps, t = 0.05" in capsys.readouterr().out
    film = CASES / "atg_film.toml"  # has time.end
    sets = ["--set", "terms.elastic.provider=linear", "--set", "time.steps=3", "--set", "output.every=1"]
    assert main(["run", str(film), "--out", str(tmp_path / "b.h5"), "--no-progress", "--no-plots", *sets]) == 0
    assert "done: 3 steps, t = 0.06" in capsys.readouterr().out
    sim = hybrid.load_case(film, overrides={"terms.elastic.provider": "linear", "time.steps": 4})
    assert sim.steps == 4 and hybrid.resolve_case(film, {"time.steps": 4}).data["time"]["steps"] == 4


def test_set_initial_kind_drops_the_keys_the_new_kind_does_not_take(caplog: pytest.LogCaptureFixture) -> None:
    from hybrid.cases import resolve_case

    with caplog.at_level("INFO", logger="hybrid.core.config"):
        rc = resolve_case(CASES / "atg_film.toml", ["initial.kind=sinusoid", "initial.mode=4"])
    assert rc.data["initial"] == {"kind": "sinusoid", "mean": 3.0, "amplitude": 0.1, "mode": 4}
    assert "initial.kind = 'sinusoid' does not take 'initial.modes'; dropped" in caplog.text
    rc = resolve_case(CASES / "atg_film.toml", ["initial.kind=flat"])
    assert rc.data["initial"] == {"kind": "flat", "mean": 3.0}


# --------------------------------------------------------------------------- start-up cost


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_help_and_version_import_no_heavy_module(flag: str) -> None:
    """`hybrid --help`/`--version` load neither the solvers nor torch/numba/scikit-fem/h5py/matplotlib."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "hybrid.cli", flag], capture_output=True, text=True)
    assert res.returncode == 0 and ("hybrid 0." in res.stdout or "usage: hybrid" in res.stdout)
    imported = {line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "hybrid.core.config" in imported  # the command line itself was loaded
    heavy = {"torch", "numba", "skfem", "h5py", "matplotlib", "scipy", "hybrid.solvers", "hybrid.cases"}
    assert not imported & heavy, imported & heavy


def test_import_hybrid_is_light_and_its_public_names_load_on_use() -> None:
    code = (
        "import sys, hybrid; light = 'numba' not in sys.modules and 'torch' not in sys.modules; "
        "from hybrid import load_case, compare, Simulation; import hybrid.cases as c; "
        "print(light, load_case is c.load_case, callable(compare), Simulation.__name__, 'load_case' in dir(hybrid), "
        "hybrid.solvers.__name__)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.split() == ["True", "True", "True", "Simulation", "True", "hybrid.solvers"], res.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import hybrid

        hybrid.nope  # noqa: B018


# --------------------------------------------------------------------------- refusals before the run


def test_out_equal_to_the_case_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _write(tmp_path, TINY)
    for out in (str(case), str(tmp_path / "." / "case.toml")):
        assert main(["run", str(case), "--out", out, "--overwrite", "--no-progress", "--no-plots"]) == 2
        assert "is the case file" in capsys.readouterr().err
    assert case.read_text() == TINY
    spec = _write(tmp_path, "[dataset]\n", "spec.toml")
    assert main(["dataset", str(spec), "--out", str(spec), "--overwrite", "--workers", "0", "--no-progress"]) == 2
    assert "is the spec file" in capsys.readouterr().err and spec.read_text() == "[dataset]\n"


@pytest.mark.parametrize("name", ["''", "'.hidden'", "'a/b'"])
def test_a_name_that_is_no_file_stem_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    case = _write(tmp_path, TINY)
    assert main(["run", str(case), "--no-progress", "--set", f"case.name={name}"]) == 2
    err = capsys.readouterr().err
    assert "key 'case.name'" in err and "non-empty name" in err
    assert not list(tmp_path.glob("*.h5"))


def test_a_case_file_with_a_byte_order_mark_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "bom.toml"
    case.write_bytes(b"\xef\xbb\xbf" + TINY.encode())
    assert main(["run", str(case), "--out", str(tmp_path / "bom.h5"), "--no-progress", "--no-plots"]) == 0
    assert "done: 20 steps" in capsys.readouterr().out


def test_an_explicit_dt_beyond_the_stability_limit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from hybrid.cases import resolve_case
    from hybrid.core.config import ConfigError

    case = _write(tmp_path, TINY.replace('integrator = "imex"', 'integrator = "euler"'))  # dt = 0.01, dx = 1
    assert main(["run", str(case), "--out", str(tmp_path / "x.h5"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        "key 'time.dt'" in err
        and "stability limit 0.002874" in err
        and "(dx = 1 from grid.length and grid.points)" in err
    )
    assert not (tmp_path / "x.h5").exists()
    assert resolve_case(case, {"time.dt": 0.0028})  # below the limit dx⁴/(8 M γ_s) = 1/348
    gg = CASES / "graingrowth.toml"
    for sets, limit in (
        ({"time.dt": 0.5}, "0.3333"),  # dx = 2: 2/(L (2 + 16 κ/dx²)) = 1/3
        ({"grid.lengths": [512.0, 512.0]}, "0.1111"),  # dx = 1 at the case's dt = 0.25: 1/9
        ({"time.integrator": "imex", "time.dt": 1.5}, "1 "),  # IMEX: 2/(L f''_max)
    ):
        with pytest.raises(ConfigError, match=f"stability limit {limit}") as info:
            resolve_case(gg, sets)
        assert info.value.key == "time.dt" and info.value.file == str(gg)
    assert resolve_case(gg, {"time.dt": 0.5, "time.steps": 0}).data["time"]["dt"] == 0.5  # no step, nothing to blow
    with caplog.at_level("WARNING", logger="hybrid.cases"):
        assert resolve_case(gg, {"time.dt": 0.5, "time.allow_unstable": True})
    assert "running anyway" in caplog.text


def test_an_imex_dt_beyond_the_instabilitys_e_folding_time_is_refused() -> None:
    """IMEX is stable at any dt, but dt = 1e9 steps over the ATG instability (it used to run 5 steps, exit 0)."""
    from hybrid.cases import resolve_case
    from hybrid.core.config import ConfigError

    case = CASES / "atg_film.toml"
    rc = resolve_case(case)
    p = rc.data["model"]
    rho0 = p["young"] * p["misfit"] ** 2 / (2 * (1 - p["poisson"] ** 2))  # flat-film ρ0, docs/physics.md §1
    k = np.linspace(1e-4, 4 * rho0 / p["gamma_film"], 200001)  # up to the cut-off k_c = 4 ρ0 / γ
    omega_max = (p["mobility"] * (4 * rho0 * k**3 - p["gamma_film"] * k**4)).max()  # ω(k), maximised numerically
    with pytest.raises(ConfigError, match=r"stability limit 17\.19 .*e-folding time") as info:
        resolve_case(case, {"time.dt": 1e9, "time.end": 5e9})
    assert info.value.key == "time.dt"
    assert float(str(info.value).split("stability limit ")[1].split()[0]) == pytest.approx(1 / omega_max, rel=1e-3)
    assert resolve_case(case, {"time.dt": 17.0, "time.end": 1020.0})  # just inside: allowed


def test_hostile_values_end_in_a_config_error_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _write(tmp_path, TINY)
    res = tmp_path / "res.h5"
    assert main(["run", str(case), "--out", str(res), "--no-progress", "--no-plots"]) == 0  # 3 frames
    from_file = ["--set", "initial.kind=file", "--set", f"initial.path='{res}'"]
    for sets, key, says in (
        (["time.end=inf"], "time.end", "finite"),
        (["time.dt=nan"], "time.dt", "finite"),
        (["time.end=1.0", "time.dt=1e-300"], "time.end", "at most 1e+09 steps"),
        (["time.steps=10000000000"], "time.steps", "in [0, 1000000000]"),
        (["grid.length=1e-300"], "grid.length", "in [1e-06"),
        (["grid.points=100000000000"], "grid.points", "4194304"),
        (["model.wetting_length=1e-300"], "model.wetting_length", "[0.001, 1000.0]"),
        (["model.flux=1e300"], "model.flux", "[-1000.0, 1000.0]"),
        (["model.flux=-inf"], "model.flux", "finite"),
        (["initial.kind=sinusoid", "initial.mode=1000"], "initial.mode", "Nyquist"),
        (["initial.modes=17"], "initial.modes", "Nyquist"),
        ([*from_file[1::2], "initial.frame=3"], "initial.frame", "holds 3 frames"),
        ([*from_file[1::2], "initial.frame=-4"], "initial.frame", "holds 3 frames"),
    ):
        args = [a for s in sets for a in ("--set", s)]
        assert main(["run", str(case), "--out", str(tmp_path / "x.h5"), "--no-progress", *args]) == 2, sets
        err = capsys.readouterr().err
        assert f"case.toml: key '{key}'" in err and says in err, (sets, err)


def test_compare_overrides_replace_the_keys_they_contradict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hybrid compare --set time.steps=N` on a case with time.end (overrides go through the same schema)."""
    import json

    film = CASES / "atg_film.toml"
    sets = ["--set", "time.steps=2", "--set", "output.every=1"]
    args = ["compare", str(film), "--term", "elastic", "--providers", "linear,linear", "--out", str(tmp_path / "ab")]
    assert main([*args, "--no-progress", *sets]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "ab" / "report.json").read_text())
    assert report["step"][-1] == 2
