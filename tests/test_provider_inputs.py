"""Every registered provider of every term checks its input the same way and returns what it was given.

The providers are taken from the registry (``PROVIDERS``), so a provider added later is covered without editing
this file. A term is tested with a shipped case of the model that owns it (its grid and its initial fields give a
valid input); pseudo-terms that no model owns (``stepper``: whole-model steppers, not term providers) are left to
their own tests.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import hybrid.cases  # noqa: F401  (registers every model and provider)
from hybrid import load_provider
from hybrid.cases import example_state, resolve_case
from hybrid.core.registry import MODELS, PROVIDERS
from hybrid.core.state import State, UnphysicalState
from hybrid.core.terms import TERM_INPUTS, FieldRange, check_input

CASES = Path(__file__).resolve().parents[1] / "cases"


def _owner(term: str) -> str | None:
    return next((m.name for m in MODELS.values() if term in m.terms), None)


def _case_of(model: str) -> Path:
    for path in sorted(CASES.glob("*.toml")):
        if tomllib.loads(path.read_text(encoding="utf-8")).get("case", {}).get("model") == model:
            return path
    raise AssertionError(f"no shipped case in {CASES} uses model {model!r}: add one to test its term providers")


TERMS = sorted(t for t in PROVIDERS if _owner(t) is not None)
PAIRS = [(t, p) for t in TERMS for p in sorted(PROVIDERS[t])]
_BUILT: dict[tuple[str, str], Any] = {}


def _provider(term: str, name: str) -> Any:
    """The provider built from the owning model's shipped case (built once per test module)."""
    if (term, name) not in _BUILT:
        _BUILT[term, name] = load_provider(term, name, case=_case_of(_owner(term) or ""))
    return _BUILT[term, name]


def _inputs(term: str, provider: Any) -> list[np.ndarray]:
    """A valid input: the initial fields of the shipped case, in the provider's argument order."""
    fields = example_state(resolve_case(_case_of(_owner(term) or "")))
    return [np.ascontiguousarray(fields[f], dtype=np.float64) for f in provider.inputs]


def _refusal(provider: Any, args: list[Any]) -> BaseException:
    with pytest.raises(ValueError) as err:
        provider(*args)
    return err.value


def test_the_registry_has_term_providers_to_check() -> None:
    assert ("elastic", "fem") in PAIRS and ("elastic", "nn") in PAIRS and ("elastic", "monitor") in PAIRS


@pytest.mark.parametrize(("term", "name"), PAIRS)
def test_a_provider_refuses_a_field_of_the_wrong_length_or_ndim(term: str, name: str) -> None:
    p = _provider(term, name)
    args = _inputs(term, p)
    shape = args[0].shape
    short = [args[0][..., : shape[-1] // 2], *args[1:]]
    err = _refusal(p, short)
    assert not isinstance(err, UnphysicalState)
    assert f"field {p.inputs[0]!r} must have shape {shape}" in str(err) and f"got {short[0].shape}" in str(err)
    column = [args[0][..., None], *args[1:]]  # e.g. (100, 1) for (100,)
    assert f"got {column[0].shape}" in str(_refusal(p, column))


@pytest.mark.parametrize(("term", "name"), PAIRS)
def test_a_provider_refuses_nan_and_inf_on_arrays_and_states(term: str, name: str) -> None:
    p = _provider(term, name)
    args = _inputs(term, p)
    for bad in (math.nan, math.inf):
        a = args[0].copy()
        a.flat[3] = bad
        err = _refusal(p, [a, *args[1:]])
        assert isinstance(err, UnphysicalState) and f"field {p.inputs[0]!r} holds NaN/inf" in str(err)
    with pytest.raises(UnphysicalState, match="holds NaN/inf"):  # the same check inside a run (a State)
        p(State.from_arrays(dict(zip(p.inputs, [a, *args[1:]], strict=True))))


@pytest.mark.parametrize(("term", "name"), PAIRS)
def test_a_provider_refuses_values_outside_the_declared_physical_range(term: str, name: str) -> None:
    p = _provider(term, name)
    args = _inputs(term, p)
    declared = TERM_INPUTS.get(term, {})
    bounded = [(i, f, declared[f]) for i, f in enumerate(p.inputs) if f in declared and math.isfinite(declared[f].min)]
    if not bounded:
        pytest.skip(f"the model declares no lower bound for the inputs of {term!r}")
    for i, field, rng in bounded:
        bad = list(args)
        bad[i] = args[i].copy()
        bad[i].flat[0] = rng.min - 0.5
        err = _refusal(p, bad)
        assert isinstance(err, UnphysicalState)
        assert f"field {field!r} fell below {rng.min:g} (minimum {rng.min - 0.5:.4g}" in str(err)


@pytest.mark.parametrize("term", TERMS)
def test_every_provider_of_a_term_refuses_with_the_same_words(term: str) -> None:
    messages: dict[str, set[str]] = {}
    for name in sorted(PROVIDERS[term]):
        p = _provider(term, name)
        args = _inputs(term, p)
        nan = args[0].copy()
        nan.flat[1] = math.nan
        for case, bad in (("short", [args[0][..., :-1], *args[1:]]), ("nan", [nan, *args[1:]])):
            messages.setdefault(case, set()).add(str(_refusal(p, bad)))
    assert all(len(m) == 1 for m in messages.values()), messages


@pytest.mark.parametrize(("term", "name"), PAIRS)
def test_a_provider_returns_the_kind_and_dtype_it_was_given(term: str, name: str) -> None:
    p = _provider(term, name)
    args = _inputs(term, p)
    ref = p(*args)
    shape = p.output_shape() or args[0].shape  # a term on the grid: its input's shape; a patch: its own
    assert isinstance(ref, np.ndarray) and ref.dtype == np.float64 and ref.shape == shape
    # float32 in: float32 out, the float64 answer for the same (rounded) input, rounded once
    a32 = [a.astype(np.float32) for a in args]
    out32 = p(*a32)
    expected = np.asarray(p(*[a.astype(np.float64) for a in a32]))
    assert isinstance(out32, np.ndarray) and out32.dtype == np.float32 and out32.shape == shape
    np.testing.assert_array_max_ulp(out32, expected.astype(np.float32), maxulp=1)
    # torch in: torch out, on the input's device, in the input's dtype
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in (torch.float64, torch.float32):
            t_args = [torch.from_numpy(a).to(device=device, dtype=dtype) for a in args]
            out = p(*t_args)
            assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device == t_args[0].device
            assert tuple(out.shape) == shape and bool(torch.isfinite(out).all())


def test_check_input_accepts_real_numbers_and_refuses_the_rest() -> None:
    thick = FieldRange(min=0.0, unit="nm", what="a film thickness")
    check_input("t", "h", np.arange(4), (4,), thick)  # integers are numbers
    check_input("t", "h", torch.ones(4, dtype=torch.float64), (4,), thick)
    with pytest.raises(ValueError, match=r"field 'h' must hold real numbers .* got dtype complex128"):
        check_input("t", "h", np.ones(4, dtype=complex), (4,), thick)
    with pytest.raises(ValueError, match=r"got dtype torch\.bool"):
        check_input("t", "h", torch.ones(4, dtype=torch.bool), (4,), thick)
    with pytest.raises(ValueError, match=r"must be a numpy array or a torch tensor, got builtins\.str"):
        check_input("t", "h", "1 2 3 4", (4,), thick)
    with pytest.raises(UnphysicalState, match=r"fell below 0 \(minimum -1 nm\), which a film thickness cannot"):
        check_input("t", "h", torch.tensor([1.0, -1.0, 2.0, 0.0]), (4,), thick)
    with pytest.raises(UnphysicalState, match=r"rose above 1 \(maximum 2\)$"):
        check_input("t", "phi", np.array([0.0, 2.0]), None, FieldRange(max=1.0))


def test_integer_and_list_input_give_float64() -> None:
    p = _provider("elastic", "linear")
    h = _inputs("elastic", p)[0]
    expected = p(np.round(h))
    for given in (np.round(h).astype(np.int64), np.round(h).tolist()):
        out = p(given)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
        np.testing.assert_array_equal(out, expected)


def test_a_call_with_the_wrong_number_of_fields_names_the_fields() -> None:
    p = _provider("elastic", "linear")
    h = _inputs("elastic", p)[0]
    with pytest.raises(ValueError, match=r"term 'elastic' takes 1 field\(s\) h, got 2 array\(s\)"):
        p(h, h)


def test_bare_float64_arrays_reach_the_provider_without_a_copy() -> None:
    """numpy float64 and CPU float64 tensors are wrapped, not copied, on their way to ``evaluate``."""
    from hybrid.core.terms import TermProvider

    seen: list[Any] = []

    class Probe(TermProvider):
        name = "probe"
        inputs = ("h",)

        def evaluate(self, state: State) -> Any:
            seen.append(state["h"])
            return state["h"] * 2.0

    h = np.linspace(1.0, 2.0, 8)
    probe = Probe()
    out64 = probe(h)
    assert np.shares_memory(seen[0], h) and out64.dtype == np.float64
    t = torch.from_numpy(h)
    out = probe(t)
    assert seen[1].data_ptr() == t.data_ptr() and out.dtype == torch.float64
    out32 = probe(h.astype(np.float32))
    assert out32.dtype == np.float32 and seen[2].dtype == np.float64  # computed in float64, returned as given


def test_check_input_on_a_device_style_tensor_reduces_on_the_tensor() -> None:
    """bfloat16 (like a CUDA tensor) is checked by torch's own reduction instead of a numpy view."""
    a = torch.tensor([1.0, 2.0, -1.0], dtype=torch.bfloat16)
    with pytest.raises(UnphysicalState, match=r"fell below 0 \(minimum -1\)"):
        check_input("t", "h", a, (3,), FieldRange(min=0.0))
    a[2] = math.nan
    with pytest.raises(UnphysicalState, match="holds NaN/inf"):
        check_input("t", "h", a, (3,), FieldRange(min=0.0))
    check_input("t", "h", torch.arange(3), (3,), FieldRange(min=0.0))  # integer tensors: min/max, not aminmax
