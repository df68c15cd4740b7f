"""The Term protocol: one named contribution to a model's right-hand side, from a pluggable provider.

A DNS provider and an NN provider of the same term take the same input and return the same shape and units, so
a case file can swap them. Every provider built on :class:`TermProvider` counts its calls and wall time, and
accepts either a :class:`State` or bare arrays (so code outside hybrid can call it).

Input check: every call of a :class:`TermProvider` first checks each input field with :func:`check_input`, the one
check shared by all providers of all terms: the shape of the provider's grid, a real dtype, finite values and the
physical range that the model declares for the fields its term reads (:func:`declare_inputs`, e.g. h >= 0 for the
ATG term ``elastic``). A wrong shape or dtype raises ValueError; NaN/inf or a value outside the range raises
:class:`hybrid.core.state.UnphysicalState` (a run stops on it as on a blow-up). The messages name the term and the
field, never the provider, so every provider of a term refuses a bad input with the same words.

Kind and dtype: a call with bare arrays returns what it was given: numpy in, numpy out; torch in, torch out on the
same device; float32 in, float32 out (integer input gives float64). The computation itself runs in float64 on the
inputs' backend (the DNS precision), converted without a copy where the input already is float64.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hybrid.core.backend import Array
from hybrid.core.state import State, UnphysicalState


@dataclass(frozen=True)
class FieldRange:
    """The physical range of a field that a term reads, as its model declares it.

    Attributes:
        min: smallest allowed value (inclusive) [unit].
        max: largest allowed value (inclusive) [unit].
        unit: unit of the field, for messages (e.g. "nm").
        what: what the field is, for messages (e.g. "a film thickness").
    """

    min: float = -math.inf
    max: float = math.inf
    unit: str = ""
    what: str = ""


TERM_INPUTS: dict[str, dict[str, FieldRange]] = {}
"""term name -> {field name -> physical range}, filled by the models that own the terms."""

TERM_GRID_AXES: dict[str, tuple[int, ...]] = {}
"""term name -> the array axes of the case's grid its input fields span (absent: all of them)."""


def declare_inputs(term: str, *, grid_axes: tuple[int, ...] | None = None, **fields: FieldRange) -> None:
    """Declare what ``term`` reads (called by the model that owns the term): the physical range of each field and,
    with ``grid_axes``, which array axes of the case's grid the fields span (e.g. ``(-1,)``: a front h(x) read on
    a 2D (y, x) grid)."""
    TERM_INPUTS.setdefault(term, {}).update(fields)
    if grid_axes is not None:
        TERM_GRID_AXES[term] = tuple(grid_axes)


def _describe(a: Any) -> str:
    return f"{type(a).__module__.split('.')[0]}.{type(a).__name__}"


def check_input(term: str, name: str, a: Array, shape: tuple[int, ...] | None, bounds: FieldRange | None) -> None:
    """The input check of every term provider: shape, real dtype, finite values, the declared physical range.

    Args:
        term: term name (for the message).
        name: field name (for the message).
        a: the field, numpy array or torch tensor (any device).
        shape: the required array shape (the case's grid), or None to accept any.
        bounds: the declared range, or None for finite values only.

    Raises:
        ValueError: not an array, wrong shape, complex/bool/non-numeric dtype.
        UnphysicalState: NaN/inf, or a value outside ``bounds``.
    """
    if isinstance(a, np.ndarray):
        if shape is not None and a.shape != shape:
            raise ValueError(_shape_message(term, name, a.shape, shape))
        if a.dtype.kind not in "fiu":
            raise ValueError(_dtype_message(term, name, str(a.dtype)))
        lo, hi = _min_max(a)
    elif _is_tensor(a):
        if shape is not None and a.shape != shape:
            raise ValueError(_shape_message(term, name, tuple(a.shape), shape))
        kind = _torch_kind(a.dtype)
        if kind not in "fiuF":
            raise ValueError(_dtype_message(term, name, str(a.dtype)))
        t = a.detach() if a.requires_grad else a
        if a.is_cpu and kind != "F":  # a numpy view: numpy's reductions cost less than torch's on small arrays
            lo, hi = _min_max(t.numpy())
        else:  # one reduction kernel, one device synchronisation
            lo, hi = _torch_min_max(t, kind)
    else:
        raise ValueError(f"term {term!r}: field {name!r} must be a numpy array or a torch tensor, got {_describe(a)}")
    b = bounds or _NO_BOUNDS
    if b.min <= lo and hi <= b.max and math.isfinite(lo) and math.isfinite(hi):
        return
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise UnphysicalState(f"term {term!r}: field {name!r} holds NaN/inf values")
    unit = f" {b.unit}" if b.unit else ""
    what = f", which {b.what} cannot" if b.what else ""
    if lo < b.min:
        raise UnphysicalState(f"term {term!r}: field {name!r} fell below {b.min:g} (minimum {lo:.4g}{unit}){what}")
    raise UnphysicalState(f"term {term!r}: field {name!r} rose above {b.max:g} (maximum {hi:.4g}{unit}){what}")


_NO_BOUNDS = FieldRange()
_MIN, _MAX = np.minimum.reduce, np.maximum.reduce


def _min_max(a: np.ndarray) -> tuple[float, float]:
    """(min, max) of ``a``; NaN when ``a`` holds a NaN (two reductions, no temporary array)."""
    return float(_MIN(a, axis=None)), float(_MAX(a, axis=None))


_TORCH_KINDS: dict[Any, str] = {}


def _torch_kind(dtype: Any) -> str:
    """numpy-style kind of a torch dtype: "f" float, "F" float without a numpy view (bfloat16), "i"/"u" integers,
    "b" bool, "c" complex."""
    kind = _TORCH_KINDS.get(dtype)
    if kind is None:
        import torch

        if dtype == torch.bool:
            kind = "b"
        elif dtype.is_complex:
            kind = "c"
        elif dtype.is_floating_point:
            kind = "f" if dtype in (torch.float64, torch.float32, torch.float16) else "F"
        else:
            kind = "u" if dtype == torch.uint8 else "i"
        _TORCH_KINDS[dtype] = kind
    return kind


def _torch_min_max(t: Any, kind: str) -> tuple[float, float]:
    """(min, max) of tensor ``t`` on its device, fetched in one synchronisation; NaN when ``t`` holds a NaN."""
    import torch

    pair = torch.aminmax(t) if kind in "fF" else (t.min(), t.max())
    lo, hi = torch.stack(pair).tolist()
    return float(lo), float(hi)


def _shape_message(term: str, name: str, got: tuple[int, ...], shape: tuple[int, ...]) -> str:
    return f"term {term!r}: field {name!r} must have shape {shape} (the case's grid), got {got}"


def _dtype_message(term: str, name: str, dtype: str) -> str:
    return f"term {term!r}: field {name!r} must hold real numbers (float32 or float64), got dtype {dtype}"


def _is_tensor(a: Any) -> bool:
    return type(a).__module__.startswith("torch")


def _like(out: Array, ref: Any) -> Array:
    """``out`` (float64, on the backend/device of ``ref``) in the floating dtype of ``ref`` (no copy if equal)."""
    if isinstance(ref, np.ndarray):
        return out.astype(ref.dtype, copy=False) if ref.dtype.kind == "f" and isinstance(out, np.ndarray) else out
    if _is_tensor(ref) and ref.dtype.is_floating_point and _is_tensor(out):
        return out.to(dtype=ref.dtype)
    return out


@runtime_checkable
class Term(Protocol):
    """A named term: ``term(state) -> array`` on the state's backend/device."""

    name: str

    def __call__(self, state: State) -> Array: ...


class TermProvider:
    """Base class for term providers: input check, call counting, timing, bare-array calls, checkpointable state.

    Subclasses set ``name`` (the term), ``provider`` (their registry name), ``inputs`` (the state fields they read,
    in the order positional bare arrays are given), pass the case context to ``__init__`` (its grid fixes the
    shape of every input: ``grid.shape``; override :meth:`input_shape` for other shapes) and implement
    :meth:`evaluate`. Every call checks its inputs (module docstring) before :meth:`evaluate` sees them.

    Args:
        ctx: the case context (:class:`hybrid.core.registry.Context`); None skips the shape check.
    """

    name: str = ""
    provider: str = ""
    inputs: tuple[str, ...] = ()

    def __init__(self, ctx: Any = None) -> None:
        self.calls = 0
        self.seconds = 0.0
        self.grid_shape: tuple[int, ...] | None = tuple(ctx.grid.shape) if ctx is not None else None
        self._checks: tuple[tuple[str, tuple[int, ...] | None, FieldRange | None], ...] | None = None

    def input_shape(self, field: str) -> tuple[int, ...] | None:
        """Required array shape of input ``field``: the grid's shape, or the axes the term's model declares for
        it (:func:`declare_inputs`); None: any."""
        if self.grid_shape is None:
            return None
        axes = TERM_GRID_AXES.get(self.name)
        return self.grid_shape if axes is None else tuple(self.grid_shape[a] for a in axes)

    def output_shape(self) -> tuple[int, ...] | None:
        """Array shape of the term's value: by default the shape of its first input (a term on the model's grid);
        a term sampled elsewhere (e.g. a patch around a laser spot) overrides this. None: not known."""
        return self.input_shape(self.inputs[0]) if self.inputs else None

    def check_inputs(self, fields: Mapping[str, Array]) -> None:
        """:func:`check_input` on each input field (ranges from :data:`TERM_INPUTS` of this term)."""
        checks = self._checks
        if checks is None:  # the term's ranges are declared by its model module, read at the first call
            ranges = TERM_INPUTS.get(self.name, {})
            checks = self._checks = tuple((f, self.input_shape(f), ranges.get(f)) for f in self.inputs)
        for field, shape, bounds in checks:
            check_input(self.name, field, fields[field], shape, bounds)

    def __call__(self, state: State | Array, *more: Array) -> Array:
        if isinstance(state, State):
            self.check_inputs(state.fields)
            ref = None
        else:
            # a library call with bare arrays: each call counts as the next step (for step-keyed schedules)
            arrays = (state, *more)
            if len(arrays) != len(self.inputs):
                raise ValueError(
                    f"term {self.name!r} takes {len(self.inputs)} field(s) {', '.join(self.inputs)}, "
                    f"got {len(arrays)} array(s)"
                )
            arrays = tuple(a if isinstance(a, np.ndarray) or _is_tensor(a) else np.asarray(a) for a in arrays)
            given = dict(zip(self.inputs, arrays, strict=True))
            self.check_inputs(given)
            ref = arrays[0]
            state = State.from_arrays(given, step=self.calls)
        t0 = time.perf_counter()
        out = self.evaluate(state)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out if ref is None else _like(out, ref)

    def evaluate(self, state: State) -> Array:
        """Compute the term for ``state``; same backend/device as the state."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters for logs and the output's /timing: calls, wall seconds, seconds per call."""
        return {
            "term": self.name,
            "provider": self.provider,
            "calls": self.calls,
            "seconds": self.seconds,
            "seconds_per_call": self.seconds / self.calls if self.calls else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold for an exact restart (providers with history override this)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@runtime_checkable
class DecisionLog(Protocol):
    """A term provider or stepper that logs its decisions (e.g. a monitor choosing between a network and the DNS).

    The Simulation appends the rows it takes to the results table ``<log_group>/<name>`` (``name``: the term, or
    ``stepper``) with the columns ``log_columns`` requires, stores its ``summary()`` with the output, and shows its
    ``progress_note()`` on the progress bar.
    """

    log_group: str
    log_columns: Mapping[str, str]

    def take_log_rows(self) -> dict[str, Any]:
        """The rows logged since the last call ({column: 1-D values})."""
        ...

    def summary(self) -> dict[str, Any]:
        """The run so far in a few numbers (JSON-serialisable)."""
        ...

    def progress_note(self) -> str:
        """A few words for the progress bar (e.g. the network's share of answers)."""
        ...
