"""The run loop: steps, output schedule, checkpoints with exact restart, NaN/inf guard, progress, timers.

A :class:`Simulation` can run to the end (:meth:`Simulation.run`) or be driven one step at a time by a caller
(:meth:`Simulation.step`), which is how hybrid is embedded in other codes.

Schedule (steps counted from the start of the run, 0-based):
- a frame is written at step 0, every ``output.every`` steps, and at the last step;
- a checkpoint (``<output stem>.ckpt.h5``, replaced atomically) every ``checkpoint_every`` steps and at the end;
- the fields are checked for NaN/inf every ``check_every`` steps and always before a frame or checkpoint is
  written, so neither ever holds a non-finite value. A blow-up raises :class:`SimulationBlowUp`, naming the field,
  step and time, and the last good checkpoint (which stays untouched). So does a state outside the model's
  declared bounds (the equation's ``state_bounds``, ``{field: (low, high)}``: a diverging run is caught while its
  values are still finite), a state the model calls unphysical (the equation's ``check_state``, at the same
  checks), or a provider raising :class:`hybrid.core.state.UnphysicalState` (the FEM on a negative film
  thickness). Every checkpoint has passed these checks, so the "last good" one is good.

Model hooks (optional attributes of the equation):
- ``after_step(state) -> state``: applied after every step (e.g. re-indexing of order parameters); must be
  deterministic so that restarts stay exact;
- ``frame_output(state) -> (fields, tables)``: derived numpy fields written with each frame (e.g. grain labels) and
  table rows ``{table: {column: values}}`` appended to the output (e.g. per-frame statistics);
- ``default_output_fields``: the fields saved when ``output.fields`` is empty (default: every state field).

Monitor logs: a term provider or the stepper with ``take_log_rows()`` has its decision rows appended to
``/monitor/<term>`` (``/monitor/stepper`` for a surrogate stepper) at every frame and checkpoint, and its
``summary()`` stored as the attribute ``summary/<name>`` when the output is closed. A stepper may advance several
steps per call (``steps_per_call``); the output and checkpoint intervals must then be multiples of it.

Restart: a checkpoint holds the fields (float64, bitwise), the step, the time, the RNG state and the state of the
stepper and every term provider (warm starts, monitor history and audits), so a restarted run ends bit-identical
to an uninterrupted one and appends to the same output file. The checkpoint's checksum, its step and time (against
the case's ``time.dt`` and step count) and its state (finite, within bounds) are verified first. The case must be
the checkpoint's except for keys that do not change the computed states (:data:`RESTART_FREE_KEYS`) and a
longer (or shorter) ``time.steps``/``time.end``: a restart may extend the run. A restart whose results file does
not exist (gone, or a new ``--out`` beside a damaged one) starts a new file at the checkpoint's frame.

Results files are locked while the run writes them (:class:`hybrid.core.io.OutputFile`); at the end of
:meth:`Simulation.run` the file is read back (:func:`hybrid.core.io.verify_results`) and an incomplete one raises
:class:`IncompleteOutput`.
"""

from __future__ import annotations

import logging
import math
import time as _time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from hybrid.core.equation import AfterStep, CheckState, DefaultOutputFields, Equation, FrameOutput, StateBounds
from hybrid.core.integrators import Stepper
from hybrid.core.io import (
    Checkpoint,
    OutputFile,
    check_writable,
    read_checkpoint,
    verify_results,
    write_checkpoint,
)
from hybrid.core.progress import progress_bar
from hybrid.core.state import State, UnphysicalState
from hybrid.core.terms import DecisionLog

log = logging.getLogger(__name__)

RESTART_FREE_KEYS = frozenset({"output.path", "output.checkpoint_every", "output.check_every"})
"""Case keys a restart may change: where and how often to write checkpoints and checks, not what is computed."""

RESTART_EXTENSIBLE_KEYS = frozenset({"time.steps"})
"""Case keys a restart may change as long as the checkpoint's step is still within the run."""


class SimulationBlowUp(RuntimeError):
    """A field became NaN or infinite; the message names the field, step, time and the last good checkpoint."""


class IncompleteOutput(OSError):
    """The run finished but its results file, read back, is incomplete or unreadable (the message says why)."""


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def case_difference(
    old: str, new: str, *, ignore: frozenset[str] = RESTART_FREE_KEYS | RESTART_EXTENSIBLE_KEYS
) -> str | None:
    """The first key whose value differs between two resolved cases (TOML texts), or None.

    Keys in ``ignore`` are not compared (by default: output paths and intervals, and ``time.steps``, which a
    restart checks against the checkpoint's step itself). Texts that are not TOML must be equal.
    """
    try:
        a, b = _flatten(tomllib.loads(old)), _flatten(tomllib.loads(new))
    except tomllib.TOMLDecodeError:
        return None if old == new else "the case texts differ"
    missing = object()
    for key in sorted(set(a) | set(b)):
        if key in ignore:
            continue
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            shown_a = "(not set)" if va is missing else repr(va)
            shown_b = "(not set)" if vb is missing else repr(vb)
            return f"{key} = {shown_a} there, {shown_b} in this case"
    return None


@dataclass
class OutputSpec:
    """Where and when to write.

    Attributes:
        path: HDF5 results file (None: write nothing).
        every: steps between frames (>= 1).
        fields: state fields to save each frame (empty: all).
        terms: term names whose values to save each frame as /terms/<name> (costs one extra term call per frame).
        checkpoint_every: steps between checkpoints (0: only at the end of the run; None: never).
    """

    path: Path | None = None
    every: int = 100
    fields: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()
    checkpoint_every: int | None = 0

    @property
    def checkpoint_path(self) -> Path | None:
        if self.path is None or self.checkpoint_every is None:
            return None
        return self.path.with_name(self.path.stem + ".ckpt.h5")


@dataclass
class Simulation:
    """Owns a State, a stepper, the output schedule and checkpoints.

    Attributes:
        equation: the model (its ``terms`` are the bound providers).
        stepper: maps a state to the next one.
        state: current state.
        steps: total number of steps of the run (the run ends when ``state.step == steps``).
        output: output schedule.
        case_text: fully resolved case (TOML), stored in outputs and checkpoints.
        attrs: extra root attributes of the output (backend, device, ...).
        rng: the run's random generator (saved in checkpoints).
        check_every: steps between NaN/inf checks.
        progress: show a progress bar in :meth:`run`.
        units: unit of each field and term and of ``"time"``, written as ``units`` attributes of the results
            file's datasets (None: the registered model's ``ModelSpec.units``, found by ``attrs["model"]``).
    """

    equation: Equation
    stepper: Stepper
    state: State
    steps: int
    output: OutputSpec = field(default_factory=OutputSpec)
    case_text: str = ""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    check_every: int = 10
    progress: bool = False
    units: Mapping[str, str] | None = None
    _out: OutputFile | None = field(default=None, init=False, repr=False)
    _last_checkpoint: tuple[Path, int] | None = field(default=None, init=False, repr=False)
    _wall: float = field(default=0.0, init=False, repr=False)
    _hooks: dict[type, bool] = field(default_factory=dict, init=False, repr=False)

    def _has(self, hook: type) -> bool:
        """Whether the equation implements the hook Protocol ``hook`` (checked once: a runtime Protocol check costs
        tens of microseconds, a step of a 1D model about a hundred)."""
        known = self._hooks.get(hook)
        if known is None:
            known = self._hooks[hook] = isinstance(self.equation, hook)
        return known

    # ------------------------------------------------------------------ driving
    def step(self) -> State:
        """Advance by one stepper call, then write whatever the schedule asks for. Returns the new state."""
        self._ensure_output()
        t0 = _time.perf_counter()
        try:
            new = self.stepper(self.state)
        except UnphysicalState as err:
            raise self._blow_up(
                f"step {self.state.step + 1} (from t = {self.state.time:g}) met an unphysical state: {err}"
            ) from err
        if self._has(AfterStep):
            new = cast(AfterStep, self.equation).after_step(new)
        n = new.step
        if n % self.check_every == 0 or self._frame_due(n) or self._checkpoint_due(n):
            self._check_finite(new)
        self.state = new
        if self._frame_due(n):
            self._write_frame()
        if self._checkpoint_due(n):
            self.write_checkpoint()
        self._wall += _time.perf_counter() - t0
        return new

    def run(self) -> State:
        """Step until ``steps``; returns the final state. Closes the output file at the end."""
        bar = progress_bar(self.steps, unit="step", initial=self.state.step) if self.progress else None
        try:
            last_report = _time.perf_counter()
            while self.state.step < self.steps:
                self.step()
                if bar is not None:
                    bar.update(self.state.step - bar.n)
                    now = _time.perf_counter()
                    if now - last_report > 0.5:
                        bar.set_postfix_str(self._postfix(), refresh=False)
                        last_report = now
            if self.state.step == self.steps and self._out is not None:
                self._set_timing()
        finally:
            if bar is not None:
                bar.set_postfix_str(self._postfix(), refresh=False)
                bar.close()
            self.close()
        if self.output.path is not None and self.state.step == self.steps:
            self._verify_output()
        return self.state

    def _verify_output(self) -> None:
        """Read the closed results file back: a run reports success only with a complete file."""
        assert self.output.path is not None
        try:
            verify_results(self.output.path, self.state.step)
        except (OSError, ValueError) as err:
            kept = (
                f"; the final state is in the checkpoint {self._last_checkpoint[0]} (restart from it with --out NEW)"
                if self._last_checkpoint and self._last_checkpoint[1] == self.state.step
                else ""
            )
            raise IncompleteOutput(f"the run reached step {self.state.step}, but {err}{kept}") from err

    def close(self) -> None:
        """Flush timers and close the output file (the simulation can be stepped again: it reopens it)."""
        if self._out is not None:
            self._flush_tables()
            self._set_timing()
            summaries = {f"summary/{name}": log.summary() for name, log in self._monitored().items()}
            if summaries:
                self._out.set_attrs(summaries)  # stored as JSON text
            self._out.close()
            self._out = None
        for term in self.equation.terms.values():
            close = getattr(term, "close", None)
            if close is not None:
                close()

    # ------------------------------------------------------------------ restart
    def restart_from(self, path: str | Path) -> None:
        """Load a checkpoint written by this case: state, RNG, stepper and provider state; continue its output.

        Raises:
            ValueError: the checkpoint is damaged or edited (checksum), its step or time do not fit this case, its
                case differs in a key that changes the computation (named), or its state is not finite or out of
                the model's bounds.
        """
        ck = read_checkpoint(path)
        why = case_difference(ck.case_text, self.case_text)
        if why:
            raise ValueError(
                f"checkpoint {path} was written by a different case ({why}); a restart needs the same case (only "
                "time.end/time.steps and the output path may change)"
            )
        if ck.step > self.steps:
            raise ValueError(
                f"checkpoint {path} is at step {ck.step}, beyond the {self.steps} steps of this case (time.steps or "
                "time.end); give a later end to continue it"
            )
        dt = getattr(self.stepper, "dt", None)
        if not isinstance(dt, float) or dt <= 0:
            dt = None
        if dt is not None and not math.isclose(ck.time, ck.step * dt, rel_tol=1e-6, abs_tol=1e-6 * dt):
            raise ValueError(
                f"checkpoint {path}: time {ck.time!r} does not match step {ck.step} of time.dt = {dt:g} "
                f"(expected {ck.step * dt:g}); the file was altered"
            )
        expected = set(self.state.fields)
        if set(ck.fields) != expected:
            raise ValueError(f"checkpoint {path} holds fields {sorted(ck.fields)}; this case has {sorted(expected)}")
        for name, arr in ck.fields.items():
            shape = tuple(self.state.fields[name].shape)
            if tuple(arr.shape) != shape:
                raise ValueError(f"checkpoint {path}: field {name!r} has shape {arr.shape}, this case {shape}")
        be = self.state.backend
        state = State({k: be.asarray(v, dtype=v.dtype) for k, v in ck.fields.items()}, ck.time, ck.step, be)
        problem = self._state_problem(state)
        if problem:
            raise ValueError(f"checkpoint {path} does not hold a good state: {problem}")
        self.state = state
        if ck.rng_state is not None:
            self.rng.bit_generator.state = ck.rng_state
        self.stepper.load_state_dict(ck.extra.get("stepper", {}))
        if hasattr(self.equation, "load_state_dict"):  # e.g. the linearisation a model's own solver reuses
            self.equation.load_state_dict(ck.extra.get("equation", {}))
        for name, term in self.equation.terms.items():
            if hasattr(term, "load_state_dict"):
                term.load_state_dict(ck.extra.get("terms", {}).get(name, {}))
        self._last_checkpoint = (Path(path), ck.step)
        if self.output.path is not None:
            self._continue_output(Path(path), ck)
        log.info("restarted from %s at step %d, t=%g", path, ck.step, ck.time)

    def _continue_output(self, path: Path, ck: Checkpoint) -> None:
        """Open the results file to continue after the checkpoint (or start a new one at its frame)."""
        assert self.output.path is not None
        if self._out is not None:  # stepped before the restart: its handle (and lock) go first
            self._out.close()
            self._out = None
        if not self.output.path.exists():
            check_writable(self.output.path, "output.path (or --out)")
            log.warning(
                "restart: %s does not exist; a new results file starts at the checkpoint's step %d",
                self.output.path,
                ck.step,
            )
            self._out = self._open_output("w")
            self._write_frame()
            return
        self._out = self._open_output("a")
        self._out.truncate_after(ck.step, ck.extra.get("table_rows"))
        if not self._frame_due(ck.step):  # the frame at the old run's end: not one of this (longer) run's frames
            self._out.drop_frame(ck.step)

    def write_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the full restartable state (atomically). Default path: ``<output stem>.ckpt.h5``."""
        target = Path(path) if path is not None else self.output.checkpoint_path
        if target is None:
            raise ValueError("no checkpoint path: give one or set an output path")
        if self._out is not None:
            self._flush_tables()  # rows up to this step are on disk before the checkpoint that restarts after them
        terms = {n: t.state_dict() for n, t in self.equation.terms.items() if hasattr(t, "state_dict")}
        table_rows = self._out.table_rows() if self._out is not None else {}
        ck = Checkpoint(
            fields={k: np.array(v, copy=True) for k, v in self.state.numpy_fields().items()},
            step=self.state.step,
            time=self.state.time,
            rng_state=self.rng.bit_generator.state,
            extra={
                "stepper": self.stepper.state_dict(),
                "terms": terms,
                "table_rows": table_rows,
                "equation": self.equation.state_dict() if hasattr(self.equation, "state_dict") else {},
            },
            case_text=self.case_text,
        )
        write_checkpoint(target, ck)
        self._last_checkpoint = (target, self.state.step)
        return target

    # ------------------------------------------------------------------ internals
    def _frame_due(self, n: int) -> bool:
        return self.output.path is not None and (n % self.output.every == 0 or n == self.steps)

    def _checkpoint_due(self, n: int) -> bool:
        ce = self.output.checkpoint_every
        if self.output.path is None or ce is None:
            return False
        return n == self.steps or (ce > 0 and n % ce == 0)

    def _blow_up(self, what: str) -> SimulationBlowUp:
        """The error that stops a run: what happened, the last good checkpoint, and what to change."""
        if self._last_checkpoint:
            kept = f"last good checkpoint: {self._last_checkpoint[0]} (step {self._last_checkpoint[1]})"
        else:
            kept = "no checkpoint was written"
        return SimulationBlowUp(f"{what}; {kept}. Reduce time.dt or check the model parameters.")

    def _check_finite(self, state: State) -> None:
        """Stop on NaN/inf in any field, a field outside its bounds, or what ``check_state`` calls unphysical."""
        problem = self._state_problem(state)
        if problem:
            raise self._blow_up(problem)

    def _state_problem(self, state: State) -> str | None:
        """Why ``state`` is not a good state (NaN/inf, ``check_state``, out of the equation's ``state_bounds``).

        A bounded field costs one min and one max, which also find NaN/inf (both propagate NaN), in place of the
        finiteness pass: the check costs what the NaN guard alone did.
        """
        eq = self.equation
        bounds: Mapping[str, tuple[float, float]] = cast(StateBounds, eq).state_bounds if self._has(StateBounds) else {}
        ranges: dict[str, tuple[float, float]] = {}
        for name, arr in state.fields.items():
            if name in bounds:
                lo, hi = float(arr.min()), float(arr.max())
                finite = math.isfinite(lo) and math.isfinite(hi)
                ranges[name] = (lo, hi)
            else:
                finite = state.backend.all_finite(arr)
            if not finite:
                return f"field {name!r} became NaN/inf at step {state.step} (t = {state.time:g})"
        problem = cast(CheckState, eq).check_state(state) if self._has(CheckState) else None
        if problem:  # the model's own words first (ATG: a negative film thickness)
            return f"step {state.step} (t = {state.time:g}): {problem}"
        for name, (lo, hi) in ranges.items():
            low, high = bounds[name]
            if lo < low or hi > high:
                return (
                    f"field {name!r} left its bounds [{low:g}, {high:g}] at step {state.step} (t = {state.time:g}): "
                    f"values {lo:.4g} .. {hi:.4g}, the run diverges"
                )
        return None

    def _root_attrs(self) -> dict[str, Any]:
        be = self.state.backend
        return {"backend": be.name, "device": be.device, **self.attrs}

    def _open_output(self, mode: Literal["w", "a"]) -> OutputFile:
        assert self.output.path is not None
        return OutputFile(
            self.output.path,
            case_text=self.case_text,
            attrs=self._root_attrs(),
            grid_lengths=tuple(reversed(self.equation.grid.lengths)),  # the writer takes array-axis order
            grid_shape=self.equation.grid.shape,
            mode=mode,
            units=self._units(),
            same_case=lambda old: case_difference(old, self.case_text),
        )

    def _units(self) -> dict[str, str]:
        """Units of fields, terms and time (given, or the registered model's)."""
        if self.units is not None:
            return dict(self.units)
        from hybrid.core.registry import MODELS

        spec = MODELS.get(str(self.attrs.get("model", "")))
        return dict(spec.units) if spec is not None else {}

    def _ensure_output(self) -> None:
        if self._out is not None or self.output.path is None:
            return
        fresh = self.state.step == 0
        check_writable(self.output.path, "output.path (or --out)")
        self._out = self._open_output("w" if fresh else "a")
        if fresh:
            self._check_finite(self.state)
            self._write_frame()

    def _write_frame(self) -> None:
        assert self._out is not None
        fields = self.state.numpy_fields()
        tables: dict[str, dict[str, Any]] = {}
        eq = self.equation
        patch: dict[str, Any] = {}
        if isinstance(eq, FrameOutput):
            derived, tables = eq.frame_output(self.state)
            patch = {k.removeprefix("patch/"): v for k, v in derived.items() if k.startswith("patch/")}
            fields.update({k: v for k, v in derived.items() if not k.startswith("patch/")})
        default = tuple(eq.default_output_fields) if isinstance(eq, DefaultOutputFields) else ()
        selected = self.output.fields or default or tuple(fields)
        unknown = [k for k in selected if k not in fields]
        if unknown:
            raise ValueError(f"output.fields names {unknown}; this model outputs {sorted(fields)}")
        fields = {k: fields[k] for k in selected}
        terms = {name: np.asarray(_np(self.equation.terms[name](self.state))) for name in self.output.terms}
        self._out.append_frame(self.state.step, self.state.time, fields, terms, patch)
        for table, rows in tables.items():
            self._out.append_rows(table, rows, flush=False)
        self._flush_tables(flush=False)
        self._out.flush()  # once for the frame's tables and decision logs

    def _monitored(self) -> dict[str, DecisionLog]:
        """The term providers and the stepper (as ``"stepper"``) that log their decisions."""
        candidates = {**self.equation.terms, "stepper": self.stepper}
        return {name: obj for name, obj in candidates.items() if isinstance(obj, DecisionLog)}

    def _flush_tables(self, flush: bool = True) -> None:
        assert self._out is not None
        for name, log in self._monitored().items():
            rows = log.take_log_rows()
            if rows and len(next(iter(rows.values()))):
                self._out.append_rows(f"{log.log_group}/{name}", rows, log.log_columns, flush=flush)

    def _set_timing(self) -> None:
        if self._out is None:
            return
        timing = {"run": self._wall, f"stepper/{self.stepper.name}": self.stepper.seconds}
        for name, term in self.equation.terms.items():
            st = term.stats() if hasattr(term, "stats") else {}
            timing[f"term/{name}/{st.get('provider', '')}"] = float(st.get("seconds", 0.0))
            timing[f"term/{name}/{st.get('provider', '')}/calls"] = float(st.get("calls", 0))
        self._out.set_timing(timing)

    def _postfix(self) -> str:
        parts = [f"t={self.state.time:.4g}"]
        for name, log in self._monitored().items():
            parts.append(f"{name}: {log.progress_note()}")
        return ", ".join(parts)

    def timing(self) -> dict[str, Any]:
        """Wall seconds of the run, the stepper and each term provider (with call counts)."""
        return {
            "run_seconds": self._wall,
            "stepper": self.stepper.stats(),
            "terms": {n: t.stats() for n, t in self.equation.terms.items() if hasattr(t, "stats")},
        }


def _np(a: Any) -> np.ndarray:
    from hybrid.core.backend import to_numpy

    return to_numpy(a)
