"""Hostile values for every numeric key of the shipped cases: a valid case or a ConfigError naming the key, never
another exception (property-based, hypothesis; the case is resolved and, for [initial] keys, its initial state
built, but nothing runs)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid.cases import example_state, resolve_case
from hybrid.core.config import ConfigError

CASES = Path(__file__).resolve().parents[1] / "cases"
SHIPPED = sorted(p.name for p in CASES.glob("*.toml"))

# a small grid for building grain-growth initial states quickly (the shipped 512² one takes seconds)
SMALL_2D = {"grid.shape": [32, 32], "grid.lengths": [64.0, 64.0]}

EDGES = [0, -1, 1, 2**31, 2**63 - 1, -(2**63), 10**400, 1e-300, -1e-300, 5e-324, 1e300, -1e300, 1.7976931348623157e308]
EDGES += [math.inf, -math.inf, math.nan]

NUMBERS = st.one_of(
    st.sampled_from(EDGES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e3, max_value=1e3),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-4, max_value=2**24),
    st.builds(lambda m, e: m * 10.0**e, st.floats(0.1, 10.0), st.integers(-320, 308)),
)
VALUES = st.one_of(
    NUMBERS,
    NUMBERS,
    NUMBERS,  # mostly numbers; sometimes the wrong type altogether
    st.booleans(),
    st.text(max_size=4),
    st.lists(NUMBERS, max_size=3),
    st.just({"x": 1}),
)


def _numeric_keys(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every number, or list of numbers, in a resolved case."""
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            yield from _numeric_keys(value, dotted)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield dotted, value
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            yield dotted, value


KEYS = {name: sorted(dict(_numeric_keys(resolve_case(CASES / name).data))) for name in SHIPPED}


def _check(case: str, overrides: dict[str, Any], key: str) -> None:
    """Resolve (and for [initial] keys build the initial state); only a ConfigError naming ``key`` may come out."""
    try:
        rc = resolve_case(CASES / case, overrides)
        if key.startswith("initial."):
            example_state(rc)
    except ConfigError as err:
        text = str(err)
        assert key in text or err.key.split("[")[0] == key, f"{overrides}: the error does not name {key}: {text}"
        assert text.startswith(str(CASES / case)), f"{overrides}: the error does not name the file: {text}"


def test_every_shipped_case_has_numeric_keys() -> None:
    assert len(SHIPPED) >= 3
    for name, keys in KEYS.items():
        assert {"time.dt", "time.steps", "case.seed"} <= set(keys), name
    assert "model.flux" in KEYS["atg_film.toml"] and "initial.grains" in KEYS["graingrowth.toml"]


@pytest.mark.parametrize("case", SHIPPED)
@settings(
    max_examples=120, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_hostile_scalar_values(case: str, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(KEYS[case]), label="key")
    value = data.draw(VALUES, label="value")
    overrides = {key: value}
    if key.startswith("initial.") and "graingrowth" in case:
        overrides = {**SMALL_2D, key: value}
    _check(case, overrides, key)


@pytest.mark.parametrize("case", [n for n in SHIPPED if any(k.endswith((".lengths", ".shape")) for k in KEYS[n])])
@settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_list_elements(case: str, data: st.DataObject) -> None:
    """One element of a numeric list (grid lengths and shape) replaced."""
    base = resolve_case(CASES / case).data
    lists = [(k, v) for k, v in _numeric_keys(base) if isinstance(v, list)]
    key, value = data.draw(st.sampled_from(lists), label="key")
    index = data.draw(st.integers(0, len(value) - 1), label="index")
    new = list(value)
    new[index] = data.draw(NUMBERS, label="element")
    _check(case, {key: new}, key)


@settings(max_examples=80, deadline=None, database=None, derandomize=True)
@given(
    dt=st.floats(min_value=1e-320, max_value=1e300) | st.sampled_from([math.inf, math.nan]),
    end=st.floats(min_value=0.0, max_value=1e300) | st.sampled_from([math.inf, math.nan]),
)
def test_hostile_time_pairs(dt: float, end: float) -> None:
    """time.end / time.dt: a whole number of at most 10⁹ steps within the stability limit, or an error on time.*."""
    try:
        rc = resolve_case(CASES / "atg_film.toml", {"time.dt": dt, "time.end": end})
    except ConfigError as err:
        assert err.key in ("time.dt", "time.end"), str(err)
    else:
        steps = rc.data["time"]["steps"]
        assert 0 <= steps <= 10**9 and math.isclose(steps * dt, end, rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.parametrize(
    "case,base,key",
    [
        ("atg_film.toml", {"initial.kind": "sinusoid"}, "initial.mode"),
        ("atg_film.toml", {"initial.kind": "sinusoid"}, "initial.amplitude"),
        ("atg_film.toml", {"initial.kind": "flat"}, "initial.mean"),
        ("atg_film.toml", {}, "model.substrate_depth"),
        ("atg_film.toml", {}, "model.imex_wetting"),
        ("atg_film.toml", {"time.integrator": "euler", "time.dt": 1e-3}, "model.mobility"),
        ("graingrowth.toml", {**SMALL_2D, "initial.kind": "circle"}, "initial.radius"),
        ("graingrowth.toml", {}, "model.reassign_halo"),
    ],
)
@settings(max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_hostile_values_of_keys_the_shipped_cases_leave_out(
    case: str, base: dict[str, Any], key: str, value: Any
) -> None:
    _check(case, {**base, key: value}, key)


def test_any_failure_while_building_from_the_case_becomes_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model's hook failing on extreme values (ZeroDivisionError, IndexError, MemoryError) names file and key."""
    import dataclasses

    from hybrid.core.registry import MODELS

    def divide(grid: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "x": 1.0 / 0.0}

    def index(ctx: Any, init: Any) -> dict[str, Any]:
        return {"h": [][init["frame"] if "frame" in init else 0]}

    def allocate(ctx: Any, init: Any) -> dict[str, Any]:
        raise MemoryError

    spec = MODELS["atg"]
    film = CASES / "atg_film.toml"
    for replaced, key, says in (
        ({"finalize_params": divide}, "model", "division by zero (ZeroDivisionError)"),
        ({"initial_state": index}, "initial", "(IndexError)"),
        ({"initial_state": allocate}, "initial", "not enough memory"),
    ):
        monkeypatch.setitem(MODELS, "atg", dataclasses.replace(spec, **replaced))
        with pytest.raises(
            ConfigError, match=f"^{film}: key '{key}': .*{says}".replace("(", r"\(").replace(")", r"\)")
        ):
            example_state(resolve_case(film))
