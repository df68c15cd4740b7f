"""Tests of hybrid.core.io: results files, XDMF sidecar, checkpoints, describe_file."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hybrid.core import io
from hybrid.core.io import (
    Checkpoint,
    OutputFile,
    describe_file,
    read_checkpoint,
    read_output,
    read_table,
    write_checkpoint,
)

LOG_COLUMNS = {  # a decision log's columns and types, as a monitor declares them
    "audit_error": "float64",
    "step": "int64",
    "time": "float64",
    "uncertainty": "float64",
    "threshold": "float64",
    "source": "str",
}
CASE = '[case]\nname = "test"\nmodel = "atg"\nseed = 1\n\n[grid]\nlength = 6.4\npoints = 16\n'
ATTRS = {"backend": "numpy", "device": "cpu"}


def _open(path: Path, shape: tuple[int, ...], mode: str = "w", case: str = CASE) -> OutputFile:
    lengths = [0.4 * n for n in shape]
    return OutputFile(
        path,
        case_text=case,
        attrs=ATTRS,
        grid_lengths=lengths,
        grid_shape=shape,
        mode=mode,  # type: ignore[arg-type]
    )


def _monitor_rows(steps: list[int], sources: list[str]) -> dict[str, Any]:
    n = len(steps)
    return {
        "step": np.asarray(steps),
        "time": 0.1 * np.asarray(steps, dtype=float),
        "uncertainty": np.linspace(0.0, 1.0, n),
        "threshold": np.full(n, 0.5),
        "source": sources,
        "audit_error": [np.nan if i % 2 else 0.01 * i for i in range(n)],
    }


@pytest.mark.parametrize("shape", [(16,), (8, 12)], ids=["1d", "2d"])
def test_frames_round_trip(tmp_path: Path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal(shape) for _ in range(3)]
    labels = [rng.integers(0, 5, size=shape, dtype=np.int32) for _ in range(3)]
    terms = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    path = tmp_path / "run.h5"
    with _open(path, shape) as out:
        for k in range(3):
            out.append_frame(10 * k, 0.5 * k, {"h": frames[k], "eta": labels[k]}, {"elastic": terms[k]})
            assert out.frames == k + 1
    data = read_output(path)
    np.testing.assert_array_equal(data["step"], [0, 10, 20])
    np.testing.assert_array_equal(data["time"], [0.0, 0.5, 1.0])
    assert data["step"].dtype == np.int64 and data["time"].dtype == np.float64
    assert data["fields"]["h"].dtype == np.float64
    np.testing.assert_array_equal(data["fields"]["h"], np.stack(frames))
    assert data["fields"]["eta"].dtype == np.int32
    np.testing.assert_array_equal(data["fields"]["eta"], np.stack(labels))
    assert data["terms"]["elastic"].dtype == np.float64
    np.testing.assert_array_equal(data["terms"]["elastic"], np.stack(terms).astype(np.float64))
    attrs = data["attrs"]
    assert attrs["case"] == CASE
    assert attrs["backend"] == "numpy" and attrs["device"] == "cpu"
    assert {"hybrid_version", "created"} <= set(attrs)
    with h5py.File(path, "r") as h5:
        ds = h5["fields/h"]
        assert ds.maxshape == (None, *shape) and ds.chunks is not None


def test_shape_and_dtype_mismatch(tmp_path: Path) -> None:
    with _open(tmp_path / "run.h5", (16,)) as out:
        out.append_frame(0, 0.0, {"h": np.zeros(16), "eta": np.zeros(16, dtype=np.int64)})
        with pytest.raises(ValueError, match="shape"):
            out.append_frame(1, 0.1, {"h": np.zeros(17), "eta": np.zeros(16, dtype=np.int64)})
        with pytest.raises(ValueError, match="dtype"):
            out.append_frame(1, 0.1, {"h": np.zeros(16), "eta": np.zeros(16)})
        with pytest.raises(ValueError, match="fields"):
            out.append_frame(1, 0.1, {"h": np.zeros(16)})
        with pytest.raises(ValueError, match="step"):
            out.append_frame(0, 0.1, {"h": np.zeros(16), "eta": np.zeros(16, dtype=np.int64)})
        assert out.frames == 1  # failed frames left nothing behind
    assert read_output(tmp_path / "run.h5")["fields"]["h"].shape == (1, 16)


def test_append_mode_continues(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with _open(path, (16,)) as out:
        out.append_frame(0, 0.0, {"h": np.zeros(16)})
        out.append_frame(5, 0.5, {"h": np.ones(16)})
        out.append_rows("monitor/elastic", _monitor_rows([1, 2], ["nn", "dns"]))
    with _open(path, (16,), mode="a") as out:
        assert out.frames == 2
        out.append_frame(10, 1.0, {"h": np.full(16, 2.0)})
        out.append_rows("monitor/elastic", _monitor_rows([6], ["nn"]))
        assert out.frames == 3
    data = read_output(path)
    np.testing.assert_array_equal(data["step"], [0, 5, 10])
    np.testing.assert_array_equal(data["fields"]["h"][:, 0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(data["monitor"]["elastic"]["step"], [1, 2, 6])


def test_append_mode_case_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with _open(path, (16,)) as out:
        out.append_frame(0, 0.0, {"h": np.zeros(16)})
    other = CASE.replace("seed = 1", "seed = 2")
    with pytest.raises(ValueError, match=r"different case.*seed = 1.*seed = 2"):
        _open(path, (16,), mode="a", case=other)
    with pytest.raises(ValueError, match="grid"):
        _open(path, (32,), mode="a")
    with pytest.raises(FileNotFoundError):
        _open(tmp_path / "missing.h5", (16,), mode="a")


def test_append_mode_trims_partial_frame(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with _open(path, (16,)) as out:
        out.append_frame(0, 0.0, {"h": np.zeros(16)})
    with h5py.File(path, "r+") as h5:  # a run killed after writing the field of frame 1
        h5["fields/h"].resize(2, axis=0)
        h5["time"].resize(2, axis=0)
    with _open(path, (16,), mode="a") as out:
        assert out.frames == 1
        out.append_frame(1, 0.1, {"h": np.ones(16)})
    data = read_output(path)
    assert data["fields"]["h"].shape == (2, 16) and data["time"].shape == (2,)


def test_truncate_after(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with _open(path, (4, 4)) as out:
        for k in range(5):
            out.append_frame(10 * k, float(k), {"c": np.full((4, 4), float(k))})
        out.append_rows("monitor/elastic", _monitor_rows(list(range(1, 41, 3)), ["nn", "dns"] * 7))
        out.append_rows("log/events", {"step": [5, 35], "what": ["a", "b"]})
        out.set_timing({"elastic/nn": 1.5})
        out.truncate_after(20)
        assert out.frames == 3
        out.append_frame(30, 3.0, {"c": np.full((4, 4), 30.0)})
    data = read_output(path)
    np.testing.assert_array_equal(data["step"], [0, 10, 20, 30])
    np.testing.assert_array_equal(data["fields"]["c"][:, 0, 0], [0.0, 1.0, 2.0, 30.0])
    mon = data["monitor"]["elastic"]
    assert mon["step"].max() <= 20
    np.testing.assert_array_equal(mon["step"], [1, 4, 7, 10, 13, 16, 19])
    assert all(len(col) == 7 for col in mon.values())
    events = read_table(path, "log/events")
    np.testing.assert_array_equal(events["what"], ["a"])
    ET.parse(path.with_suffix(".xdmf"))
    assert len(ET.parse(path.with_suffix(".xdmf")).getroot().findall(".//Grid/Grid")) == 4


def test_truncate_after_non_prefix_rows(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with _open(path, (16,)) as out:
        out.append_rows("log/events", {"step": [5, 30, 7], "what": ["a", "b", "c"]})
        out.truncate_after(10)
    events = read_table(path, "log/events")
    np.testing.assert_array_equal(events["step"], [5, 7])
    np.testing.assert_array_equal(events["what"], ["a", "c"])


def test_monitor_table_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with _open(path, (16,)) as out:
        out.append_rows("monitor/elastic", _monitor_rows([1, 2, 3], ["nn", "dns", "nn"]), LOG_COLUMNS)
        out.append_rows("monitor/elastic", _monitor_rows([4], ["nn"]), LOG_COLUMNS)
        out.append_rows("monitor/front_correction", _monitor_rows([1], ["dns"]), LOG_COLUMNS)
        with pytest.raises(ValueError, match="missing columns"):
            out.append_rows("monitor/elastic", {"step": [5], "time": [0.5]}, LOG_COLUMNS)
        with pytest.raises(ValueError, match="different lengths"):
            bad = _monitor_rows([5, 6], ["nn", "nn"])
            bad["source"] = ["nn"]
            out.append_rows("monitor/elastic", bad, LOG_COLUMNS)
        with pytest.raises(ValueError, match="does not fit"):
            bad = _monitor_rows([5], ["nn"])
            bad["step"] = [5.5]
            out.append_rows("monitor/elastic", bad, LOG_COLUMNS)
    mon = read_output(path)["monitor"]
    assert set(mon) == {"elastic", "front_correction"}
    el = mon["elastic"]
    assert list(el) == list(LOG_COLUMNS)  # the required columns first, in their order
    np.testing.assert_array_equal(el["step"], [1, 2, 3, 4])
    assert el["step"].dtype == np.int64
    for col in ("time", "uncertainty", "threshold", "audit_error"):
        assert el[col].dtype == np.float64
    assert el["source"].tolist() == ["nn", "dns", "nn", "nn"]
    assert el["source"].dtype.kind == "U"
    np.testing.assert_array_equal(np.isnan(el["audit_error"]), [False, True, False, False])
    np.testing.assert_array_equal(el["uncertainty"][:3], np.linspace(0.0, 1.0, 3))
    np.testing.assert_array_equal(read_table(path, "monitor/elastic")["step"], el["step"])


def test_timing_and_attrs(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with _open(path, (16,)) as out:
        out.set_timing({"elastic/fem": 2.5, "stepper": 4.0})
        out.set_timing({"stepper": 5.0})
        out.set_attrs({"summary": {"nn_fraction": 0.9}, "final_rmse": 0.25, "tags": ["a", "b"]})
        with pytest.raises(ValueError, match="case"):
            out.set_attrs({"case": "x"})
    data = read_output(path)
    assert data["timing"] == {"elastic/fem": 2.5, "stepper": 5.0}
    assert data["attrs"]["final_rmse"] == 0.25
    assert data["attrs"]["summary"] == '{"nn_fraction": 0.9}'
    assert data["attrs"]["tags"] == ["a", "b"]


@pytest.mark.parametrize(
    ("shape", "fields", "n_attributes"),
    [
        ((16,), {"h": (16,)}, 1),
        ((6, 8), {"c": (6, 8), "eta": (3, 6, 8), "patch": (4, 4)}, 4),
    ],
    ids=["1d", "2d-components"],
)
def test_xdmf_sidecar(
    tmp_path: Path,
    shape: tuple[int, ...],
    fields: dict[str, tuple[int, ...]],
    n_attributes: int,
) -> None:
    path = tmp_path / "run.h5"
    n_frames = 3
    with _open(path, shape) as out:
        for k in range(n_frames):
            out.append_frame(k, 0.25 * k, {n: np.zeros(s) for n, s in fields.items()})
    xdmf = path.with_suffix(".xdmf")
    assert xdmf.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    root = ET.parse(xdmf).getroot()
    series = root.find("Domain/Grid")
    assert series is not None and series.get("CollectionType") == "Temporal"
    grids = series.findall("Grid")
    assert len(grids) == n_frames
    mesh = shape if len(shape) == 2 else (1, shape[0])
    with h5py.File(path, "r") as h5:
        for f, grid in enumerate(grids):
            time = grid.find("Time")
            assert time is not None and float(time.get("Value", "nan")) == 0.25 * f
            topo = grid.find("Topology")
            assert topo is not None
            assert topo.get("TopologyType") == "2DCoRectMesh"
            assert tuple(map(int, topo.get("Dimensions", "").split())) == mesh
            attributes = grid.findall("Attribute")
            assert len(attributes) == n_attributes
            for attr in attributes:
                slab = attr.find("DataItem")
                assert slab is not None and slab.get("ItemType") == "HyperSlab"
                sel, src = slab.findall("DataItem")
                assert src.text is not None
                fname, dpath = src.text.split(":")
                assert fname == path.name
                ds = h5[dpath]
                assert tuple(map(int, src.get("Dimensions", "").split())) == ds.shape
                rank = ds.ndim
                assert sel.get("Dimensions") == f"3 {rank}"
                assert sel.text is not None
                start, stride, count = np.asarray(sel.text.split(), dtype=int).reshape(3, rank)
                assert start[0] == f and (stride == 1).all()
                assert tuple(count) == (1, *([1] * (rank - 1 - len(shape))), *shape)
                slab_dims = tuple(map(int, slab.get("Dimensions", "").split()))
                assert slab_dims == tuple(count)
                assert int(np.prod(slab_dims)) == int(np.prod(mesh))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1234)
    rng.standard_normal(7)  # advance so that the state is not the seed's
    h = rng.standard_normal((8, 8)) * 1e-3 + np.pi
    labels = rng.integers(0, 10, size=(8, 8))
    extra = {
        "monitor": {"hold": 3, "history": np.array([0.1, np.nan, 1e-300]), "names": ("a", "b")},
        "provider": {"calls": np.int64(12), "weights": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "tags": np.array(["nn", "dns"]),
        "note": None,
    }
    ckpt = Checkpoint(
        fields={"h": h, "eta": labels},
        step=123,
        time=0.1 + 0.2,
        rng_state=rng.bit_generator.state,
        extra=extra,
        case_text=CASE,
    )
    path = tmp_path / "run.ckpt.h5"
    write_checkpoint(path, ckpt)
    got = read_checkpoint(path)
    assert got.step == 123 and isinstance(got.step, int)
    assert got.time == 0.1 + 0.2
    assert got.case_text == CASE
    assert got.fields["h"].dtype == np.float64
    assert got.fields["h"].tobytes() == h.tobytes()  # bitwise
    assert got.fields["eta"].dtype == labels.dtype
    np.testing.assert_array_equal(got.fields["eta"], labels)
    restored = np.random.default_rng()
    assert got.rng_state is not None
    restored.bit_generator.state = got.rng_state
    np.testing.assert_array_equal(restored.standard_normal(5), rng.standard_normal(5))
    mon = got.extra["monitor"]
    assert mon["hold"] == 3 and mon["names"] == ["a", "b"]
    assert mon["history"].tobytes() == extra["monitor"]["history"].tobytes()  # type: ignore[index]
    assert got.extra["provider"]["calls"] == 12
    assert got.extra["provider"]["weights"].dtype == np.float32
    np.testing.assert_array_equal(got.extra["provider"]["weights"], np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(got.extra["tags"], ["nn", "dns"])
    assert got.extra["note"] is None


def test_checkpoint_mt19937_state(tmp_path: Path) -> None:
    gen = np.random.Generator(np.random.MT19937(5))
    path = tmp_path / "c.ckpt.h5"
    write_checkpoint(path, Checkpoint(fields={}, step=0, time=0.0, rng_state=gen.bit_generator.state))
    other = np.random.Generator(np.random.MT19937(0))
    state = read_checkpoint(path).rng_state
    assert state is not None
    other.bit_generator.state = state
    assert other.random() == gen.random()


def test_checkpoint_atomic_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.ckpt.h5"
    write_checkpoint(path, Checkpoint(fields={"h": np.ones(4)}, step=1, time=0.1, case_text=CASE))
    original = h5py.Group.create_dataset
    calls = {"n": 0}

    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    new = Checkpoint(fields={"h": np.zeros(4), "c": np.zeros(4)}, step=2, time=0.2, case_text=CASE)
    with pytest.raises(OSError, match="simulated"):
        write_checkpoint(path, new)
    monkeypatch.undo()
    assert calls["n"] == 2
    got = read_checkpoint(path)
    assert got.step == 1
    np.testing.assert_array_equal(got.fields["h"], np.ones(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt.h5"]  # no temp files left


def test_checkpoint_rejects_results_file(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    _open(path, (16,)).close()
    with pytest.raises(ValueError, match=r"run\.h5"):
        read_checkpoint(path)
    with pytest.raises(TypeError, match="extra"):
        write_checkpoint(tmp_path / "c.h5", Checkpoint(fields={}, step=0, time=0.0, extra={"f": object()}))


def test_describe_results(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    long_case = CASE + "".join(f"# line {i}\n" for i in range(40))
    with _open(path, (16,), case=long_case) as out:
        for k in range(4):
            out.append_frame(k, 0.5 * k, {"h": np.zeros(16)}, {"elastic": np.zeros(16)})
        out.append_rows("monitor/elastic", _monitor_rows([1, 2, 3, 4], ["nn", "nn", "nn", "dns"]))
        out.set_timing({"elastic/nn": 1.25})
    text = describe_file(path)
    assert "results" in text
    assert "frames: 4" in text
    assert "/fields/h" in text and "(4, 16)" in text and "float64" in text
    assert "/terms/elastic" in text and "/monitor/elastic/source  (4,)  str" in text
    assert "0.75" in text  # nn fraction
    assert "elastic/nn" in text
    assert "1.5" in text  # end time
    assert 'name = "test"' in text and "# line 39" not in text and "more lines" in text


def test_describe_checkpoint_and_other(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt.h5"
    gen = np.random.default_rng(0)
    write_checkpoint(ckpt, Checkpoint({"h": np.ones(8)}, 42, 4.2, gen.bit_generator.state, {"m": 1}, CASE))
    text = describe_file(ckpt)
    assert "checkpoint" in text and "step: 42" in text and "PCG64" in text and "/fields/h" in text
    other = tmp_path / "data.h5"
    with h5py.File(other, "w") as h5:
        h5.create_dataset("inputs", data=np.zeros((3, 2), dtype=np.float32))
    text = describe_file(other)
    assert "/inputs" in text and "(3, 2)" in text and "float32" in text


def test_not_hdf5(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.pt"
    bogus.write_bytes(b"not an hdf5 file at all")
    for fn in (describe_file, read_output, read_checkpoint):
        with pytest.raises(ValueError, match=r"weights\.pt"):
            fn(bogus)


def test_check_writable_names_what_cannot_be_written(tmp_path: Path) -> None:
    from hybrid.core.config import ConfigError

    assert io.check_writable(tmp_path / "new" / "r.h5", "--out") == tmp_path / "new" / "r.h5"
    assert (tmp_path / "new").is_dir()  # the folder is made, the file is not
    with pytest.raises(ConfigError, match=r"--out = .* is a folder; give a file name"):
        io.check_writable(tmp_path / "new", "--out")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r"afile is a file, not a folder"):
        io.check_writable(tmp_path / "afile" / "r.h5", "output.path (or --out)")
    with pytest.raises(ConfigError, match=r"is a file; give a folder"):
        io.check_writable(tmp_path / "afile", "--out", directory=True)


def test_datasets_carry_units(tmp_path: Path) -> None:
    path = tmp_path / "u.h5"
    units = {"h": "nm", "elastic": "eV/nm³", "time": "time unit"}
    with OutputFile(path, case_text=CASE, attrs=ATTRS, grid_lengths=[6.4], grid_shape=[16], units=units) as out:
        out.append_frame(0, 0.0, {"h": np.zeros(16), "label": np.zeros(16, dtype=np.int32)}, {"elastic": np.ones(16)})
    with h5py.File(path) as h5:
        assert h5["time"].attrs["units"] == "time unit"
        assert h5["fields/h"].attrs["units"] == "nm"
        assert h5["terms/elastic"].attrs["units"] == "eV/nm³"
        assert h5["fields/label"].attrs["units"] == ""  # a name the mapping does not state


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_files_get_the_permissions_of_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        with _open(tmp_path / "run.h5", (16,)) as out:
            out.append_frame(0, 0.0, {"h": np.zeros(16)})
        write_checkpoint(tmp_path / "run.ckpt.h5", Checkpoint(fields={"h": np.ones(4)}, step=1, time=0.1))
    finally:
        os.umask(old)
    for name in ("run.h5", "run.xdmf", "run.ckpt.h5"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


def _edit_attr(path: Path, key: str, value: Any) -> None:
    with h5py.File(path, "r+") as h5:
        h5.attrs[key] = value


def test_an_edited_or_damaged_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt.h5"
    ck = Checkpoint(fields={"h": np.linspace(1.0, 2.0, 8)}, step=40, time=0.04, extra={"n": 1}, case_text=CASE)
    for key, value, match in [
        ("step", np.int64(-5), r"step = -5 is not a step count"),
        ("time", np.float64(np.nan), r"time = nan is not a simulated time"),
        ("step", np.int64(10**9), r"does not match its checksum"),
        ("time", np.float64(0.05), r"does not match its checksum"),
        ("case", CASE + "# edited\n", r"does not match its checksum"),
    ]:
        write_checkpoint(path, ck)
        _edit_attr(path, key, value)
        with pytest.raises(ValueError, match=r"c\.ckpt\.h5.*" + match):
            read_checkpoint(path)
    write_checkpoint(path, ck)
    with h5py.File(path, "r+") as h5:
        h5["fields/h"][3] = 7e24
    with pytest.raises(ValueError, match="checksum"):
        read_checkpoint(path)
    assert "NOT RESTARTABLE" in describe_file(path) and "checksum" in describe_file(path)  # hybrid info says so
    write_checkpoint(path, ck)
    assert read_checkpoint(path).step == 40  # an untouched one reads
    assert "checksum: verified" in describe_file(path)


def _truncated_results(tmp_path: Path) -> Path:
    path = tmp_path / "cut.h5"
    with _open(path, (64,)) as out:
        for k in range(5):
            out.append_frame(k, 0.1 * k, {"h": np.full(64, float(k))})
    os.truncate(path, path.stat().st_size // 2)
    return path


def test_a_truncated_results_file_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    path = _truncated_results(tmp_path)
    for fn in (describe_file, read_output, lambda p: read_table(p, "monitor/x"), read_checkpoint):
        with pytest.raises(OSError, match=r"cut\.h5: the file is truncated: it holds \d+ of its \d+ bytes"):
            fn(path)
    with pytest.raises(OSError, match=r"cut\.h5: the file is truncated"):
        _open(path, (64,), mode="a")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.h5 is not an HDF5 file \(it is empty\)"):
        describe_file(empty)


def test_a_second_writer_fails_before_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    first = _open(path, (16,))
    first.append_frame(0, 0.0, {"h": np.ones(16)})
    size = path.stat().st_size
    for mode in ("w", "a"):
        with pytest.raises(io.FileInUse, match=r"run\.h5 is held open by another process .* left untouched"):
            _open(path, (16,), mode=mode)
        assert path.stat().st_size == size
    assert read_output(path)["step"].tolist() == [0]  # a reader still can
    first.append_frame(1, 0.1, {"h": np.ones(16)})
    first.close()
    assert read_output(path)["step"].tolist() == [0, 1]
    with _open(path, (16,), mode="a") as again:  # the lock went with the writer
        assert again.frames == 2


def test_verify_results_and_drop_frame(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with _open(path, (16,)) as out:
        for k in (0, 10, 15):
            out.append_frame(k, 0.1 * k, {"h": np.full(16, float(k))})
            out.append_rows("grains", {"step": [k, k], "count": [3, 4]})
            out.append_rows("monitor/e", _monitor_rows([k], ["nn"]))
    assert io.verify_results(path, 15) == 3
    with pytest.raises(ValueError, match=r"run\.h5 is incomplete: its last frame is at step 15, the run ended at step"):
        io.verify_results(path, 20)
    with _open(path, (16,), mode="a") as out:
        assert not out.drop_frame(10)  # not the last frame
        assert out.drop_frame(15)
    data = read_output(path)
    assert data["step"].tolist() == [0, 10]
    assert read_table(path, "grains")["step"].tolist() == [0, 0, 10, 10]
    assert read_table(path, "monitor/e")["step"].tolist() == [0, 10, 15]  # monitor rows are the steps' decisions
