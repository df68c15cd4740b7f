"""Tests for hybrid.core.config: schemas, validation errors, overrides, TOML I/O, docs."""

from __future__ import annotations

import math
import pickle
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybrid.core.config import (
    REQUIRED,
    ConfigError,
    MapOf,
    Option,
    Table,
    Tagged,
    apply_overrides,
    describe,
    dumps_toml,
    get_path,
    load_toml,
    parse_override,
    validate,
)

FILE = "cases/atg.toml"

SCHEMA = Table(
    {
        "case": Table(
            {
                "name": Option("str", doc="run name"),
                "model": Option("str", choices=("atg", "graingrowth", "front", "laser")),
                "seed": Option("int", 0, min=0),
                "backend": Option("str", "numpy", choices=("numpy", "torch")),
                "device": Option("str", None, doc="torch device"),
            }
        ),
        "grid": Table(
            {
                "length": Option("float", None, min=0, min_exclusive=True, doc="side [m]"),
                "lengths": Option("list[float]", None, length=2, min=0, min_exclusive=True),
                "points": Option("list[int]", [64, 64], length=2, min=2),
            },
            exclusive=(("length", "lengths"),),
        ),
        "model": Table({"mobility": Option("float", 1.0, min=0)}, open=True),
        "initial": Tagged(
            "kind",
            {
                "circle": Table({"radius": Option("float", 0.25, min=0, max=0.5, max_exclusive=True)}),
                "file": Table({"path": Option("str", doc="HDF5 file")}),
            },
            default="circle",
        ),
        "terms": MapOf(
            Tagged(
                "provider",
                {
                    "fem": Table({"order": Option("int", 1, choices=(1, 2))}),
                    "linear": Table({}),
                    "nn": Table(
                        {
                            "weights": Option("str"),
                            "threshold": Option("float", 0.1, min=0, max=1),
                        }
                    ),
                },
            ),
            keys=("elastic", "diffusion"),
        ),
        "time": Table(
            {
                "integrator": Option("str", "euler", choices=("euler", "imex")),
                "dt": Option("float", min=0, min_exclusive=True, doc="time step [s]"),
                "steps": Option("int", None, min=1),
                "end": Option("float", None, min=0, min_exclusive=True),
            },
            require_one=(("steps", "end"),),
        ),
        "output": Table(
            {
                "every": Option("int", 10, min=1),
                "fields": Option("list[str]", ["phi"], choices=("phi", "u", "T")),
                "compress": Option("bool", True),
                "extra": Option("any", None),
            }
        ),
    }
)


def good() -> dict[str, Any]:
    """A minimal valid case."""
    return {
        "case": {"name": "demo", "model": "atg"},
        "time": {"dt": 0.001, "steps": 100},
    }


def error_of(data: dict[str, Any], schema: Table = SCHEMA) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate(data, schema, file=FILE)
    return info.value


def with_(key: str, value: Any) -> dict[str, Any]:
    return apply_overrides(good(), {key: value})


# --------------------------------------------------------------------------- valid input


def test_defaults_filled_in() -> None:
    out = validate(good(), SCHEMA, file=FILE)
    assert out["case"] == {
        "name": "demo",
        "model": "atg",
        "seed": 0,
        "backend": "numpy",
        "device": None,
    }
    assert out["grid"] == {"length": None, "lengths": None, "points": [64, 64]}
    assert out["model"] == {"mobility": 1.0}
    assert out["initial"] == {"kind": "circle", "radius": 0.25}
    assert out["terms"] == {}
    assert out["time"] == {
        "integrator": "euler",
        "dt": 0.001,
        "steps": 100,
        "end": None,
    }
    assert out["output"] == {
        "every": 10,
        "fields": ["phi"],
        "compress": True,
        "extra": None,
    }


def test_validate_returns_new_dict_and_keeps_input() -> None:
    data = good()
    out = validate(data, SCHEMA)
    out["case"]["name"] = "changed"
    assert data == good()
    assert list(out) == list(SCHEMA.entries)


def test_int_normalised_to_float() -> None:
    out = validate(apply_overrides(good(), {"time.dt": 1, "grid.lengths": (1, 2.5)}), SCHEMA)
    assert out["time"]["dt"] == 1.0 and isinstance(out["time"]["dt"], float)
    assert out["grid"]["lengths"] == [1.0, 2.5]
    assert all(isinstance(x, float) for x in out["grid"]["lengths"])
    assert isinstance(out["model"]["mobility"], float)
    out = validate({"x": 2}, Table({"x": Option("float")}))
    assert out == {"x": 2.0} and isinstance(out["x"], float)


def test_default_normalised_to_float() -> None:
    out = validate({}, Table({"x": Option("float", 3)}))
    assert isinstance(out["x"], float)


def test_open_table_keeps_unknown_keys() -> None:
    out = validate(with_("model.custom", {"a": [1, 2]}), SCHEMA)
    assert out["model"] == {"mobility": 1.0, "custom": {"a": [1, 2]}}


def test_tagged_variant_selected() -> None:
    out = validate(with_("initial", {"kind": "file", "path": "ic.h5"}), SCHEMA)
    assert out["initial"] == {"kind": "file", "path": "ic.h5"}


def test_nested_tagged_inside_mapof() -> None:
    data = good()
    data["terms"] = {
        "elastic": {"provider": "nn", "weights": "w.h5"},
        "diffusion": {"provider": "fem", "order": 2},
    }
    out = validate(data, SCHEMA)
    assert out["terms"] == {
        "elastic": {"provider": "nn", "weights": "w.h5", "threshold": 0.1},
        "diffusion": {"provider": "fem", "order": 2},
    }


def test_none_allowed_only_when_default_is_none() -> None:
    assert validate(with_("case.device", None), SCHEMA)["case"]["device"] is None
    err = error_of(with_("case.name", None))
    assert "case.name" in str(err) and "expected str" in str(err)


def test_any_option_accepts_anything() -> None:
    out = validate(with_("output.extra", {"nested": [1, "a"]}), SCHEMA)
    assert out["output"]["extra"] == {"nested": [1, "a"]}


def test_prefix_used_in_keys() -> None:
    time = SCHEMA.entries["time"]
    assert isinstance(time, Table)
    with pytest.raises(ConfigError) as info:
        validate({"dt": -1.0, "steps": 1}, time, prefix="time", file=FILE)
    assert info.value.key == "time.dt" and str(info.value).startswith(FILE)


# --------------------------------------------------------------------------- error kinds


def test_error_str_format() -> None:
    err = error_of(with_("time.dt", -0.001))
    assert str(err) == "cases/atg.toml: key 'time.dt': must be > 0, got -0.001"
    assert (err.file, err.key, err.message) == (
        FILE,
        "time.dt",
        "must be > 0, got -0.001",
    )
    assert isinstance(err, ValueError)


def test_error_without_file_or_key() -> None:
    assert str(ConfigError("bad", key="a.b")) == "key 'a.b': bad"
    assert str(ConfigError("bad", file="f.toml")) == "f.toml: bad"


def test_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(ConfigError("bad", "a.b", "f.toml")))
    assert (err.message, err.key, err.file) == ("bad", "a.b", "f.toml")
    assert pickle.loads(pickle.dumps(REQUIRED)) is REQUIRED


def test_unknown_key_lists_allowed_and_suggests() -> None:
    err = error_of(with_("time.dtt", 0.1))
    msg = str(err)
    assert FILE in msg and "'time.dtt'" in msg and "unknown key" in msg
    assert "did you mean 'dt'" in msg
    for key in ("integrator", "dt", "steps", "end"):
        assert f"'{key}'" in msg


def test_unknown_key_without_close_match() -> None:
    msg = str(error_of(with_("time.zzzzzz", 1)))
    assert "did you mean" not in msg and "'integrator'" in msg


def test_unknown_top_level_table() -> None:
    err = error_of({**good(), "tme": {}})
    assert err.key == "tme" and "did you mean 'time'" in str(err)


def test_unknown_name_in_mapof_with_keys() -> None:
    err = error_of(with_("terms.elastc", {"provider": "linear"}))
    assert err.key == "terms.elastc"
    assert "did you mean 'elastic'" in str(err) and "'diffusion'" in str(err)


def test_missing_required_key() -> None:
    data = good()
    del data["time"]["dt"]
    err = error_of(data)
    assert err.key == "time.dt" and "missing required key" in str(err) and FILE in str(err)


def test_missing_required_table_names_needed_keys() -> None:
    data = good()
    del data["case"]
    err = error_of(data)
    assert err.key == "case" and "missing required table" in str(err)
    assert "'name'" in str(err) and "'model'" in str(err)


def test_wrong_type_scalar() -> None:
    err = error_of(with_("time.dt", "fast"))
    assert err.key == "time.dt" and "expected float" in str(err) and "str 'fast'" in str(err)
    err = error_of(with_("time.steps", 2.5))
    assert err.key == "time.steps" and "expected int" in str(err) and "2.5" in str(err)
    err = error_of(with_("output.compress", 1))
    assert "expected bool" in str(err)


def test_bool_is_not_a_number() -> None:
    err = error_of(with_("time.dt", True))
    assert err.key == "time.dt" and "expected float" in str(err) and "bool True" in str(err)
    err = error_of(with_("time.steps", False))
    assert err.key == "time.steps" and "expected int" in str(err)
    err = error_of(with_("grid.points", [True, 4]))
    assert err.key == "grid.points[0]" and "expected int" in str(err)


def test_wrong_type_table_and_list() -> None:
    err = error_of(with_("time", 3))
    assert err.key == "time" and "expected a table" in str(err)
    err = error_of(with_("grid.points", 64))
    assert err.key == "grid.points" and "expected list[int]" in str(err)


def test_out_of_range_messages() -> None:
    err = error_of(with_("case.seed", -1))
    assert err.key == "case.seed" and "must be >= 0, got -1" in str(err)
    err = error_of(with_("initial.radius", 0.5))
    assert err.key == "initial.radius" and "must be in [0, 0.5), got 0.5" in str(err)
    err = error_of(with_("time.dt", float("nan")))
    assert err.key == "time.dt" and "must be a finite number > 0, got nan" in str(err)


def test_range_checked_per_list_element() -> None:
    err = error_of(with_("grid.points", [64, 1]))
    assert err.key == "grid.points[1]" and "must be >= 2, got 1" in str(err)


def test_list_length() -> None:
    err = error_of(with_("grid.points", [64, 64, 64]))
    assert err.key == "grid.points" and "exactly 2 elements" in str(err)


def test_not_in_choices() -> None:
    err = error_of(with_("time.integrator", "imx"))
    msg = str(err)
    assert FILE in msg and err.key == "time.integrator"
    assert "'euler', 'imex'" in msg and "did you mean 'imex'" in msg
    err = error_of(with_("output.fields", ["phi", "v"]))
    assert err.key == "output.fields[1]" and "'phi', 'u', 'T'" in str(err)


def test_tagged_errors() -> None:
    err = error_of(with_("initial", {"kind": "square"}))
    assert err.key == "initial.kind" and "'circle', 'file'" in str(err)
    err = error_of(with_("initial", {"kind": "file"}))
    assert err.key == "initial.path" and "missing required key (for kind = 'file')" in str(err)
    err = error_of(with_("initial", {"kind": "file", "path": "a.h5", "radius": 0.1}))
    assert err.key == "initial.radius" and "for kind = 'file'" in str(err) and "'path'" in str(err)
    err = error_of(with_("initial.kind", 3))
    assert err.key == "initial.kind" and "expected str" in str(err)


def test_nested_tagged_in_mapof_errors() -> None:
    err = error_of(with_("terms.elastic", {"provider": "nn"}))
    assert err.key == "terms.elastic.weights" and "provider = 'nn'" in str(err)
    err = error_of(with_("terms.elastic", {"provider": "fem", "threshold": 0.5}))
    assert err.key == "terms.elastic.threshold" and "unknown key" in str(err) and "'order'" in str(err)
    err = error_of(with_("terms.elastic", {"provider": "nn", "weights": "w", "threshold": 2}))
    assert err.key == "terms.elastic.threshold" and "in [0, 1]" in str(err)
    err = error_of(with_("terms.elastic", {"weights": "w"}))
    assert err.key == "terms.elastic.provider" and "missing required key" in str(err)
    assert "'fem', 'linear', 'nn'" in str(err)
    err = error_of(with_("terms.diffusion", {"provider": "fem", "order": 3}))
    assert err.key == "terms.diffusion.order" and "one of 1, 2" in str(err)


def test_exclusive_group() -> None:
    data = apply_overrides(good(), {"grid.length": 1.0, "grid.lengths": [1.0, 2.0]})
    err = error_of(data)
    assert err.key == "grid" and FILE in str(err)
    assert "at most one of 'grid.length', 'grid.lengths'" in str(err)
    assert validate(with_("grid.length", 2), SCHEMA)["grid"]["length"] == 2.0


def test_require_one_group() -> None:
    data = good()
    del data["time"]["steps"]
    err = error_of(data)
    assert err.key == "time" and "exactly one of 'time.steps', 'time.end'" in str(err)
    assert "got none" in str(err)
    err = error_of(with_("time.end", 1.0))
    assert "exactly one of" in str(err) and "got 'time.steps', 'time.end'" in str(err)
    data["time"]["end"] = 2
    assert validate(data, SCHEMA)["time"]["end"] == 2.0


def test_top_level_not_a_table() -> None:
    with pytest.raises(ConfigError, match="expected a table"):
        validate([1, 2], SCHEMA)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- schema checks


def test_invalid_schemas_rejected() -> None:
    with pytest.raises(ValueError):
        Option("double")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default"):
        Option("float", -1.0, min=0)
    with pytest.raises(ValueError, match="default"):
        Option("str", "x", choices=("a", "b"))
    with pytest.raises(ValueError):
        Option("str", min=0)
    with pytest.raises(ValueError):
        Table({"a": Option("int")}, exclusive=(("a", "b"),))
    with pytest.raises(ValueError):
        Tagged("kind", {"a": Table({})}, default="b")
    with pytest.raises(ValueError):
        Tagged("kind", {"a": Table({"kind": Option("str")})})


def test_missing_subtable_without_defaults_is_required() -> None:
    schema = Table({"sub": Table({"a": Option("int")}), "opt": Table({"b": Option("int", 1)})})
    assert validate({"sub": {"a": 1}}, schema) == {"sub": {"a": 1}, "opt": {"b": 1}}
    err = error_of({}, schema)
    assert err.key == "sub" and "'a'" in str(err)


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("time.dt=1e-3", ("time.dt", 0.001)),
        ("time.steps=100", ("time.steps", 100)),
        ("case.seed = -3", ("case.seed", -3)),
        ("output.compress=false", ("output.compress", False)),
        ("output.compress=true", ("output.compress", True)),
        ('case.name="my run"', ("case.name", "my run")),
        ("case.name='single'", ("case.name", "single")),
        ("terms.elastic.provider=linear", ("terms.elastic.provider", "linear")),
        ("case.name=two words", ("case.name", "two words")),
        ("grid.points=[32, 16]", ("grid.points", [32, 16])),
        ('output.fields=["phi","u"]', ("output.fields", ["phi", "u"])),
        ("model.x={a = 1}", ("model.x", {"a": 1})),
        ("case.name=", ("case.name", "")),
        ("case.name=a=b", ("case.name", "a=b")),
        ("time.dt=inf", ("time.dt", float("inf"))),
    ],
)
def test_parse_override(text: str, expected: tuple[str, Any]) -> None:
    key, value = parse_override(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["time.dt", "=1", " =1", "time..dt=1", ".dt=1"])
def test_parse_override_malformed(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert info.value.key == text and "KEY=VALUE" in str(info.value)


def test_parse_override_does_not_inject_keys() -> None:
    assert parse_override("a=1\nb = 2") == ("a", "1\nb = 2")


def test_apply_overrides_strings_and_nested_creation() -> None:
    data = good()
    out = apply_overrides(
        data,
        ["time.dt=2e-3", "terms.elastic.provider=nn", 'terms.elastic.weights="w.h5"'],
    )
    assert out["time"]["dt"] == 0.002
    assert out["terms"] == {"elastic": {"provider": "nn", "weights": "w.h5"}}
    assert data == good()  # input untouched
    assert validate(out, SCHEMA)["terms"]["elastic"]["threshold"] == 0.1


def test_apply_overrides_mapping_and_single_string() -> None:
    out = apply_overrides(good(), {"a.b.c": [1, 2]})
    assert out["a"] == {"b": {"c": [1, 2]}}
    assert apply_overrides(good(), "case.seed=5")["case"]["seed"] == 5


def test_apply_overrides_deep_copies_values() -> None:
    value = [1, 2]
    out = apply_overrides({}, {"a": value})
    out["a"].append(3)
    assert value == [1, 2]


def test_apply_overrides_into_non_table_is_error() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(good(), ["time.dt.x=1"], file=FILE)
    err = info.value
    assert err.file == FILE and err.key == "time.dt.x"
    assert "'time.dt' is float" in str(err) and "not a table" in str(err)


def test_apply_overrides_malformed_names_file() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(good(), ["oops"], file=FILE)
    assert info.value.file == FILE and info.value.key == "oops"


def test_bad_override_caught_by_validation_with_dotted_key() -> None:
    data = apply_overrides(good(), ["time.dt=-1"])
    err = error_of(data)
    assert err.key == "time.dt" and "must be > 0, got -1.0" in str(err)
    data = apply_overrides(good(), ["terms.elastic.provider=nnn"])
    err = error_of(data)
    assert err.key == "terms.elastic.provider" and "did you mean 'nn'" in str(err)
    data = apply_overrides(good(), ["time.integraotr=imex"])
    assert "did you mean 'integrator'" in str(error_of(data))


def test_get_path() -> None:
    data = {"a": {"b": {"c": 1}}, "x": 2}
    assert get_path(data, "a.b.c") == 1
    assert get_path(data, "a.b") == {"c": 1}
    assert get_path(data, "a.z", None) is None
    assert get_path(data, "x.y", 5) == 5
    with pytest.raises(KeyError):
        get_path(data, "a.q")


# --------------------------------------------------------------------------- files


def test_load_toml(tmp_path: Path) -> None:
    path = tmp_path / "case.toml"
    path.write_text('[case]\nname = "demo"\nmodel = "atg"\n[time]\ndt = 1e-3\nsteps = 10\n')
    assert validate(load_toml(path), SCHEMA, file=str(path))["time"]["dt"] == 0.001


def test_load_toml_malformed_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[case]\nname = "demo"\nseed = = 3\n')
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    msg = str(info.value)
    assert info.value.file == str(path) and str(path) in msg
    assert "invalid TOML" in msg and "line 3" in msg


def test_load_toml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "nope.toml")


def test_dumps_toml_round_trip() -> None:
    data = {
        "case": {"name": "demo", "seed": 3, "flag": True},
        "grid": {"points": [64, 32], "length": 1.5e-6},
        "terms": {"elastic": {"provider": "nn", "weights": "w.h5", "threshold": 0.1}},
        "output": {"fields": ["phi", "u"], "nested": {"deep": {"x": -1}}},
    }
    assert tomllib.loads(dumps_toml(data)) == data


def test_dumps_toml_resolved_case_round_trip() -> None:
    resolved = validate(good(), SCHEMA)
    text = dumps_toml(resolved)
    assert validate(tomllib.loads(text), SCHEMA) == resolved


def test_dumps_toml_converts_numpy_and_tuples() -> None:
    data = {
        "a": np.float64(0.5),
        "b": np.int64(3),
        "c": np.arange(3),
        "d": (1, 2),
        "e": np.bool_(True),
    }
    back = tomllib.loads(dumps_toml(data))
    assert back == {"a": 0.5, "b": 3, "c": [0, 1, 2], "d": [1, 2], "e": True}
    assert type(back["a"]) is float and type(back["b"]) is int


def test_validate_accepts_numpy_values() -> None:
    out = validate(
        apply_overrides(good(), {"time.dt": np.float32(0.5), "grid.points": np.array([8, 8])}),
        SCHEMA,
    )
    assert out["time"]["dt"] == 0.5 and type(out["time"]["dt"]) is float
    assert out["grid"]["points"] == [8, 8] and all(type(x) is int for x in out["grid"]["points"])


# --------------------------------------------------------------------------- docs


def test_describe() -> None:
    text = describe(SCHEMA)
    lines = text.splitlines()
    assert lines[0].startswith("| Key | Type | Default |")
    row = next(line for line in lines if line.startswith("| `time.dt` |"))
    assert "float" in row and "*required*" in row and "> 0" in row and "time step [s]" in row
    assert any("`time.integrator`" in x and '"euler"' in x and '"imex"' in x for x in lines)
    assert any("`grid.points`" in x and "[64, 64]" in x and "2 elements" in x for x in lines)
    assert any('`initial.radius` (kind = "circle")' in x and "[0, 0.5)" in x for x in lines)
    assert any('`initial.path` (kind = "file")' in x for x in lines)
    assert any('`terms.<name>.weights` (provider = "nn")' in x for x in lines)
    assert any("`terms`" in x and "elastic, diffusion" in x for x in lines)
    assert any("exactly one of `steps`, `end`" in x for x in lines)
    assert any("at most one of `length`, `lengths`" in x for x in lines)
    assert any("`model`" in x and "other keys" in x for x in lines)
    assert all(line.count("|") == 6 for line in lines if line.startswith("|"))


def test_describe_prefix() -> None:
    text = describe(Table({"dt": Option("float", 1)}), prefix="time")
    assert "| `time.dt` | float | 1.0 |" in text


# --------------------------------------------------------------------------- overrides that replace file keys


def test_override_of_one_group_key_replaces_the_others(caplog: pytest.LogCaptureFixture) -> None:
    doc = {"case": {"name": "demo", "model": "atg"}, "time": {"dt": 0.1, "end": 5.0}, "grid": {"lengths": [1.0, 2.0]}}
    with caplog.at_level("INFO", logger="hybrid.core.config"):
        out = apply_overrides(doc, ["time.steps=7", "grid.length=3.0"], schema=SCHEMA)
    assert out["time"] == {"dt": 0.1, "steps": 7} and out["grid"] == {"length": 3.0}
    assert "time.steps replaces time.end = 5.0" in caplog.text and "grid.length replaces grid.lengths" in caplog.text
    assert validate(out, SCHEMA)["time"]["steps"] == 7
    back = apply_overrides(out, {"time.end": 2.0}, schema=SCHEMA)  # and the reverse
    assert back["time"] == {"dt": 0.1, "end": 2.0}
    assert doc["time"] == {"dt": 0.1, "end": 5.0}  # the input is untouched


def test_override_without_schema_and_contradictory_overrides_still_fail() -> None:
    doc = {"case": {"name": "demo", "model": "atg"}, "time": {"dt": 0.1, "end": 5.0}}
    err = error_of(apply_overrides(doc, {"time.steps": 7}))  # no schema: the file's end stays
    assert err.key == "time" and "exactly one of 'time.steps', 'time.end'" in str(err)
    both = apply_overrides(doc, {"time.steps": 7, "time.end": 1.0}, schema=SCHEMA)  # both from the overrides
    assert both["time"] == {"dt": 0.1, "steps": 7, "end": 1.0}
    assert "got 'time.steps', 'time.end'" in str(error_of(both))


def test_switching_a_tag_drops_the_keys_the_new_variant_does_not_take(caplog: pytest.LogCaptureFixture) -> None:
    doc = {"initial": {"kind": "circle", "radius": 0.2}, "terms": {"elastic": {"provider": "nn", "weights": "w"}}}
    with caplog.at_level("INFO", logger="hybrid.core.config"):
        out = apply_overrides(doc, {"initial.kind": "file", "terms.elastic.provider": "fem"}, schema=SCHEMA)
    assert out["initial"] == {"kind": "file"} and out["terms"]["elastic"] == {"provider": "fem"}
    assert "initial.kind = 'file' does not take 'initial.radius'; dropped" in caplog.text
    assert "terms.elastic.provider = 'fem' does not take 'terms.elastic.weights'; dropped" in caplog.text
    # keys given by the overrides themselves are kept (and validation names them)
    kept = apply_overrides(doc, ["initial.radius=0.3", "initial.kind=file"], schema=SCHEMA)
    assert kept["initial"] == {"kind": "file", "radius": 0.3}
    # the same tag again, or an unknown one, keeps the file's keys
    assert apply_overrides(doc, {"initial.kind": "circle"}, schema=SCHEMA)["initial"]["radius"] == 0.2
    assert apply_overrides(doc, {"initial.kind": "cone"}, schema=SCHEMA)["initial"]["radius"] == 0.2
    # the default variant counts as the file's when the tag is absent
    assert apply_overrides({"initial": {"radius": 0.2}}, {"initial.kind": "file"}, schema=SCHEMA)["initial"] == {
        "kind": "file"
    }


# --------------------------------------------------------------------------- numbers, strings, files


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_floats_must_be_finite_even_when_unbounded(value: float) -> None:
    schema = Table({"x": Option("float", 0.0), "y": Option("list[float]", None), "z": Option("float", 0.0, min=0)})
    for key, bad in (("x", value), ("y", [1.0, value]), ("z", value)):
        with pytest.raises(ConfigError, match="must be a finite number") as err:
            validate({key: bad}, schema, file=FILE)
        assert err.value.key == (f"{key}[1]" if key == "y" else key) and err.value.file == FILE
    infinite = Table({"x": Option("float", 0.0, min=0.0, finite=False)})
    if value == math.inf:
        assert validate({"x": value}, infinite)["x"] == math.inf  # allowed where declared
    else:  # nan never, -inf not within the bounds
        with pytest.raises(ConfigError, match="must be"):
            validate({"x": value}, infinite)


def test_an_int_too_large_for_a_float_is_a_config_error() -> None:
    err = error_of(with_("time.dt", 10**400))
    assert err.key == "time.dt" and "too large for a float" in str(err)


def test_string_pattern() -> None:
    opt = Option("str", None, pattern=r"[a-z]+", pattern_doc="lower-case letters")
    schema = Table({"name": opt})
    assert validate({"name": "abc"}, schema)["name"] == "abc"
    with pytest.raises(ConfigError, match="must be lower-case letters, got 'a/b'") as err:
        validate({"name": "a/b"}, schema)
    assert err.value.key == "name"
    assert "lower-case letters" in describe(schema)
    with pytest.raises(ValueError, match="pattern needs a str type"):
        Option("int", 0, pattern="[0-9]")


def test_load_toml_accepts_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + '[case]\nname = "é"\n'.encode())
    assert load_toml(path) == {"case": {"name": "é"}}
    path.write_bytes(b"\xff\xfe[case]\n")
    with pytest.raises(ConfigError, match="not a text TOML file"):
        load_toml(path)
