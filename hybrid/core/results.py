"""HDF5 results files of runs (+ XDMF sidecar for ParaView): writing, reading, verifying.

Results file layout (the names are fixed public interface, see docs/architecture.md "Output files")::

    /time                 (F,)      float64   simulated time of each saved frame; attr units
    /step                 (F,)      int64     step index of each frame (strictly increasing)
    /fields/<name>        (F, ...)  float64 (or the array's integer/bool dtype); attr units
    /terms/<name>         (F, ...)  saved term values, same rules as fields; attr units
    /patch/<name>         (F, ...)  fields on a sub-domain that moves with the model (the laser's melt-pool
                                    patch: T (F, pz, px), origin (F, 2)); same rules as fields
    /monitor/<term>/      table: a *group of equal-length 1-D column datasets*
        step (int64), time (float64), uncertainty (float64), threshold (float64),
        source (variable-length UTF-8 string, "nn" or "dns"), audit_error (float64, NaN = no audit)
    /timing               attrs: wall seconds per term provider and per stepper
    root attrs            case (resolved TOML text), hybrid_version, created (ISO 8601, UTC),
                          backend, device, grid_lengths, grid_shape, hybrid_kind="results",
                          format_version, plus any extra attrs given

Tables are stored as groups of column datasets (not one compound dataset) because that keeps
string columns simple, lets tools such as ``h5ls`` show each column, and lets a table gain a
column type without a new compound type. A table group carries the attrs ``hybrid_table=1`` and
``columns`` (column order). :func:`read_table` returns a ``dict`` of numpy columns.

Every dataset of ``/time``, ``/fields`` and ``/terms`` has a ``units`` attribute when the writer
is given the model's units (the Simulation gives ``ModelSpec.units``).

Crash safety: frame data is written before ``/time`` and ``/step``; the number of frames is
``len(/step)``. Everything is flushed at the end of each frame / table append, so a killed run
loses at most the frame in progress; reopening with ``mode="a"`` trims any partial frame.

One writer at a time: the results file is written in place (so that a live run's frames can be
read while it goes on, and a killed run leaves them where ``--restart`` finds them) under an
exclusive ``flock`` taken before anything is truncated; a second writer fails with
:class:`FileInUse` and leaves the file as it was. The lock goes with the writer's process.
New files (results, XDMF sidecar, checkpoints) get the permissions of the user's umask.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time as _time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py  # type: ignore[import-untyped, unused-ignore]
import numpy as np

from hybrid.core.hdf5 import (
    FORMAT_VERSION,
    STR_DTYPE,
    TABLE_CHUNK_ROWS,
    Array,
    PathLike,
    attr_to_python,
    attr_value,
    attrs_dict,
    check_name,
    chunks_for,
    damaged,
    first_difference,
    is_table,
    iter_tables,
    lock_for_writing,
    numpy_of,
    open_read,
    read_column,
    require_hdf5,
    storage_dtype,
    table_dict,
    temp_beside,
    unlock,
)
from hybrid.core.provenance import hybrid_version, utc_now

logger = logging.getLogger(__name__)

_FRAME_GROUPS = ("fields", "terms", "patch")
XDMF_EVERY_SECONDS = 2.0
"""The XDMF sidecar is rewritten with a new frame at most this often (wall seconds; always when the file closes), so
that ParaView can follow a running case without the sidecar's rewrite costing more than a small model's steps."""
_RESERVED_ROOT = {"time", "step", "fields", "terms", "patch", "timing", "extra", "rng"}


def _append_rows_along_0(ds: Any, rows: np.ndarray) -> None:
    """Append ``rows`` (k, *frame shape) to the resizable dataset ``ds`` along axis 0.

    Goes through HDF5's low-level calls (set the extent, select the new rows, write): the same bytes as
    ``ds.resize(...); ds[n:n + k] = rows``, at a third of h5py's high-level cost (about 60 µs against 190 µs per
    column), which a run writing a monitor's decision log at every frame pays once per column.
    """
    rows = np.ascontiguousarray(rows)
    n = int(ds.id.shape[0])
    k = rows.shape[0]
    ds.id.set_extent((n + k, *rows.shape[1:]))
    file_space = ds.id.get_space()
    file_space.select_hyperslab((n,) + (0,) * (rows.ndim - 1), rows.shape)
    ds.id.write(h5py.h5s.create_simple(rows.shape), file_space, rows)


# --------------------------------------------------------------------------------------------
# results file
# --------------------------------------------------------------------------------------------


class OutputFile:
    """HDF5 results file of a run, in the layout of docs/architecture.md, with an XDMF sidecar.

    Layout (see the module docstring): ``/time`` (F,) float64, ``/step`` (F,) int64,
    ``/fields/<name>`` and ``/terms/<name>`` (F, ...), tables such as ``/monitor/<term>``
    (a group of equal-length column datasets), ``/timing`` attrs, root attrs ``case``,
    ``hybrid_version``, ``created``, ``backend``, ``device``, ``grid_lengths``, ``grid_shape``
    and any extra attrs given.

    XDMF sidecar: ``<path stem>.xdmf`` next to the ``.h5`` (written atomically with the first frame, then at most
    every ``XDMF_EVERY_SECONDS`` while frames come, after a truncation or reopen, and at close) describes a temporal
    collection with one uniform grid per frame.
    Lengths and shape are given in array-axis order (axis 0 first), e.g. ``(Ly, Lx)`` and
    ``(ny, nx)``.

    * 2D grids: fields of shape ``(ny, nx)`` become node attributes of a ``2DCoRectMesh`` with
      dimensions ``ny nx``, origin 0 and spacing ``(Ly/ny, Lx/nx)``; fields of shape
      ``(Q, ny, nx)`` become Q attributes ``<name>_<q>``.
    * 1D grids: fields of shape ``(N,)`` (or ``(Q, N)``) live on a ``2DCoRectMesh`` of one row of
      N points (dimensions ``1 N``, spacing ``(L/N, L/N)``). ParaView shows it as a line along X;
      its "Plot Data" / "Plot Over Line" filters plot the field against x. This keeps the sidecar
      free of coordinate arrays (a Polyline would need N inline coordinates per frame).
    * Term datasets appear as ``term_<name>``. Datasets whose frame shape does not match the
      grid (e.g. a patch on another resolution) are left out of the sidecar.

    Every attribute is a ``HyperSlab`` DataItem selecting frame f from the whole dataset
    ``<file>.h5:/fields/<name>`` (file name relative, so the pair can be moved together).

    Example:
        >>> with OutputFile("run.h5", case_text=text, attrs={"backend": "numpy", "device": "cpu"},
        ...                 grid_lengths=[64.0], grid_shape=[128]) as out:
        ...     out.append_frame(0, 0.0, {"h": h})
    """

    def __init__(
        self,
        path: PathLike,
        *,
        case_text: str,
        attrs: Mapping[str, Any],
        grid_lengths: Sequence[float],
        grid_shape: Sequence[int],
        mode: Literal["w", "a"] = "w",
        units: Mapping[str, str] | None = None,
        same_case: Callable[[str], str | None] | None = None,
    ) -> None:
        """Create (``"w"``) or reopen for continuation (``"a"``) a results file.

        The file is locked (``flock``) before anything in it is truncated and stays locked until :meth:`close`: a
        second writer of the same path fails with :class:`FileInUse` and leaves the first one's file as it is.

        Args:
            path: the ``.h5`` file; the sidecar is ``path.with_suffix(".xdmf")``.
            case_text: the resolved case file (TOML text), stored as root attr ``case``.
            attrs: root attrs; should hold ``backend`` and ``device`` (``"unknown"`` otherwise);
                may override ``hybrid_version``; any other key is stored too (non-HDF5-able
                values such as dicts are stored as JSON text).
            grid_lengths: domain lengths per axis, array-axis order (length units of the case).
            grid_shape: grid points per axis, array-axis order; 1 or 2 axes.
            mode: ``"w"`` creates/overwrites; ``"a"`` opens an existing file written by this
                class to continue it (restart), trimming any partially written frame.
            units: unit of each field and term (by name) and of ``"time"``, stored as the ``units``
                attribute of ``/time``, ``/fields/<name>`` and ``/terms/<name>`` ("" where not given;
                None: no ``units`` attributes).
            same_case: ``"a"`` mode: given the file's ``case`` text, returns why the run's case may not continue
                it (None: it may; the file's ``case`` then becomes ``case_text``). Default: the texts must be
                equal.

        Raises:
            ValueError: bad grid, bad mode, ``attrs`` containing ``case`` or ``created``, or in
                ``"a"`` mode a file that is not a results file or whose ``case`` attr (or grid)
                differs from the given one.
            FileNotFoundError: ``"a"`` mode and the file does not exist.
            FileInUse: another process holds the file (a live run writing it); nothing was changed.
            OSError: the file cannot be opened (the message names it and says what is wrong).
        """
        self.path = Path(path)
        self.units = dict(units) if units is not None else None
        self.xdmf_path = self.path.with_suffix(".xdmf")
        self.case_text = case_text
        lengths = tuple(float(v) for v in grid_lengths)
        shape = tuple(int(v) for v in grid_shape)
        if len(lengths) != len(shape) or len(shape) not in (1, 2):
            raise ValueError(f"grid_lengths {lengths} and grid_shape {shape} must both have 1 or 2 entries")
        if any(n <= 0 for n in shape) or any(not np.isfinite(v) or v <= 0 for v in lengths):
            raise ValueError(f"grid lengths {lengths} and shape {shape} must be positive")
        for key in ("case", "created"):
            if key in attrs:
                raise ValueError(f"attrs must not contain {key!r}; it is set by OutputFile")
        self.grid_lengths = lengths
        self.grid_shape = shape
        self._h5: Any = None
        self._lock: int | None = None
        self._handles: dict[str, Any] = {}  # datasets by path, looked up once (an h5py lookup costs ~0.1 ms)
        self._members: dict[str, set[str]] = {}  # dataset names of the frame groups
        self._last_step: int | None = None  # /step's last value
        self._xdmf_written, self._xdmf_stale = -math.inf, False
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', not {mode!r}")

        if mode == "w":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = lock_for_writing(self.path)  # before "w" truncates anything
            try:
                self._h5 = h5py.File(self.path, "w", locking=False)
            except OSError as exc:
                unlock(self._lock)
                raise damaged(self.path, exc) from exc
            root = self._h5.attrs
            root["case"] = case_text
            root["hybrid_version"] = hybrid_version()
            root["created"] = utc_now()
            root["backend"] = "unknown"
            root["device"] = "unknown"
            root["hybrid_kind"] = "results"
            root["format_version"] = FORMAT_VERSION
            root["grid_lengths"] = np.asarray(lengths, dtype=np.float64)
            root["grid_shape"] = np.asarray(shape, dtype=np.int64)
            self._set_root_attrs(attrs)
            self._h5.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
            self._set_units(self._h5["time"], "time")
            self._h5.create_dataset("step", shape=(0,), maxshape=(None,), dtype="i8", chunks=(1024,))
            self._h5.create_group("fields")
            self._h5.create_group("terms")
            self._h5.create_group("timing")
            self._h5.flush()
            logger.info("created results file %s", self.path)
            # the sidecar of an earlier file at this path is wrong now; the first frame (or close) writes the new one
            with contextlib.suppress(FileNotFoundError):
                self.xdmf_path.unlink()
            self._xdmf_stale = True
        else:
            self._open_append(attrs, same_case)
            self._write_xdmf()

    def _set_units(self, ds: Any, name: str) -> None:
        """Store the ``units`` attribute of a dataset from :attr:`units` (nothing when no units were given)."""
        if self.units is not None:
            ds.attrs["units"] = str(self.units.get(name, ""))

    # -- opening -----------------------------------------------------------------------------

    def _open_append(self, attrs: Mapping[str, Any], same_case: Callable[[str], str | None] | None) -> None:
        """Open an existing results file for continuation, checking case and grid."""
        require_hdf5(self.path)
        self._lock = lock_for_writing(self.path)
        try:
            h5 = h5py.File(self.path, "r+", locking=False)
        except OSError as exc:
            unlock(self._lock)
            raise damaged(self.path, exc) from exc
        try:
            if attr_to_python(h5.attrs.get("hybrid_kind")) != "results" or "step" not in h5:
                raise ValueError(f"{self.path} is not a results file written by hybrid")
            old_case = str(attr_to_python(h5.attrs.get("case", "")))
            if same_case is not None:
                why = same_case(old_case)
            else:
                why = first_difference(old_case, self.case_text) if old_case != self.case_text else None
            if why:
                raise ValueError(
                    f"cannot continue {self.path}: it was written for a different case ({why}); "
                    "restart with the same case file or write to a new output"
                )
            old_lengths = tuple(float(v) for v in np.atleast_1d(h5.attrs.get("grid_lengths", [])))
            old_shape = tuple(int(v) for v in np.atleast_1d(h5.attrs.get("grid_shape", [])))
            if old_shape != self.grid_shape or not np.allclose(old_lengths, self.grid_lengths, rtol=1e-12, atol=0.0):
                raise ValueError(
                    f"cannot continue {self.path}: its grid is lengths={old_lengths} "
                    f"shape={old_shape}, the run's grid is lengths={self.grid_lengths} "
                    f"shape={self.grid_shape}"
                )
        except BaseException:
            h5.close()
            unlock(self._lock)
            raise
        self._h5 = h5
        if h5.attrs.get("case") != self.case_text:
            h5.attrs["case"] = self.case_text  # a continuation that runs further (a later time.end)
        for name in ("fields", "terms", "timing"):
            h5.require_group(name)
        if "units" not in h5["time"].attrs:
            self._set_units(h5["time"], "time")
        self._set_root_attrs(attrs)
        self._repair()
        h5.flush()
        logger.info("reopened results file %s with %d frames", self.path, self.frames)

    def _repair(self) -> None:
        """Trim datasets left longer than ``/step`` and uneven table columns by a killed run."""
        self._forget_handles()
        n = self.frames
        for ds in [self._h5["time"], *self._frame_datasets()]:
            if ds.shape[0] > n:
                logger.warning("trimming partial frame of %s in %s", ds.name, self.path)
                ds.resize(n, axis=0)
            elif ds.shape[0] < n:
                raise ValueError(f"{self.path} is inconsistent: {ds.name} has {ds.shape[0]} frames, /step has {n}")
        for _, group in iter_tables(self._h5):
            lengths = [group[c].shape[0] for c in group]
            if lengths and min(lengths) != max(lengths):
                logger.warning("trimming partial rows of table %s in %s", group.name, self.path)
                for c in group:
                    group[c].resize(min(lengths), axis=0)

    # -- properties --------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        """Number of complete frames in the file (``len(/step)``)."""
        return int(self._dataset("step").shape[0])

    @property
    def _file(self) -> Any:
        """The open h5py file; raises if closed."""
        if self._h5 is None:
            raise ValueError(f"results file {self.path} is closed")
        return self._h5

    def _dataset(self, path: str) -> Any:
        """The dataset at ``path``, looked up once while the file is open (cleared when anything is deleted)."""
        ds = self._handles.get(path)
        if ds is None:
            ds = self._handles[path] = self._file[path]
        return ds

    def _forget_handles(self) -> None:
        """Drop the cached datasets, names and last step (after anything was deleted or truncated)."""
        self._handles.clear()
        self._members.clear()
        self._last_step = None

    def _frame_datasets(self) -> list[Any]:
        """All per-frame datasets under /fields, /terms and /patch."""
        h5 = self._file
        return [h5[g][n] for g in _FRAME_GROUPS if g in h5 for n in h5[g]]

    # -- writing -----------------------------------------------------------------------------

    def append_frame(
        self,
        step: int,
        time: float,
        fields: Mapping[str, Any],
        terms: Mapping[str, Any] | None = None,
        patch: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one output frame and flush.

        Datasets are created on the first frame: chunked, resizable along axis 0, float64 for
        real floating arrays (complex128 for complex), the array's own dtype for integer and
        bool arrays (e.g. grain labels). Every frame must provide the same field and term names
        with the same shapes as the first one.

        Args:
            step: step index of the state (strictly larger than the last frame's step).
            time: simulated time of the state (time units of the case).
            fields: ``{name: array}``; each array has the frame shape, e.g. (N,) or (ny, nx).
                Numpy arrays or anything ``np.asarray`` accepts (torch tensors are moved to CPU).
            terms: optional ``{name: array}`` of term values, stored under ``/terms``.
            patch: optional ``{name: array}`` on a moving sub-domain, stored under ``/patch`` (once a file has
                patch data, every frame must give the same names).

        Raises:
            ValueError: non-increasing step, missing/extra names, shape changes, or a dtype
                that cannot be cast safely to the stored dtype (e.g. floats into an int field).
        """
        h5 = self._file
        step_i = int(step)
        n = self.frames
        if n and self._last_step is None:
            self._last_step = int(h5["step"][n - 1])
        if n and step_i <= int(self._last_step or 0):
            raise ValueError(
                f"frame step {step_i} is not after the last saved step {self._last_step} "
                f"in {self.path} (restarting? call truncate_after(checkpoint_step) first)"
            )
        plan: list[tuple[str, str, Array]] = []
        stored: dict[tuple[str, str], Any] = {}
        for group, data in (("fields", fields), ("terms", terms or {}), ("patch", patch or {})):
            if group not in self._members:
                if group not in h5:
                    if not data:
                        continue
                    h5.create_group(group)
                self._members[group] = set(h5[group].keys())
            existing = set(self._members[group])
            given = set(data.keys())
            if not n:
                # drop empty datasets that truncate_after() left behind
                for stale in existing - given:
                    del h5[group][stale]
                    self._forget_handles()
                    self._members[group] = set(h5[group].keys())
            elif given != existing:
                raise ValueError(
                    f"frame {n} of {self.path}: {group} must be {sorted(existing)} as in earlier "
                    f"frames, got {sorted(given)}"
                )
            for name, value in data.items():
                check_name(name, group[:-1])
                arr = numpy_of(value)
                where = f"{group}/{name}"
                if name in existing:
                    ds = stored[group, name] = self._dataset(f"{group}/{name}")
                    if arr.shape != ds.shape[1:]:
                        raise ValueError(f"{where}: frame shape {arr.shape} differs from the stored {ds.shape[1:]}")
                    if not np.can_cast(arr.dtype, ds.dtype, casting="safe"):
                        raise ValueError(
                            f"{where}: dtype {arr.dtype} cannot be stored safely in the {ds.dtype} dataset"
                        )
                else:
                    storage_dtype(arr, where)
                plan.append((group, name, arr))
        for group, name, arr in plan:
            if (group, name) not in stored:
                dtype = storage_dtype(arr, f"{group}/{name}")
                self._members.setdefault(group, set()).add(name)
                stored[group, name] = h5[group].create_dataset(
                    name,
                    shape=(n, *arr.shape),
                    maxshape=(None, *arr.shape),
                    dtype=dtype,
                    chunks=chunks_for(arr.shape, dtype.itemsize),
                )
                self._set_units(stored[group, name], name)
            ds = stored[group, name]
            _append_rows_along_0(ds, arr.astype(ds.dtype, copy=False)[None])
        # /time before /step: /step defines the frame count, so it is the commit point.
        _append_rows_along_0(self._dataset("time"), np.array([time], dtype=np.float64))
        _append_rows_along_0(self._dataset("step"), np.array([step_i], dtype=np.int64))
        self._last_step = step_i
        h5.flush()
        self._xdmf_stale = True
        if _time.monotonic() - self._xdmf_written >= XDMF_EVERY_SECONDS:
            self._write_xdmf()
        logger.debug("frame %d (step %d, t=%g) written to %s", n, step_i, time, self.path)

    def append_rows(
        self, table: str, rows: Mapping[str, Any], required: Mapping[str, str] | None = None, *, flush: bool = True
    ) -> None:
        """Append rows to a table (a group of column datasets) and flush (``flush=False``: leave it to the caller's
        next :meth:`flush`, e.g. once per frame after all its tables).

        Column types are fixed by the first append: integers -> int64, floats -> float64,
        bools -> bool, strings -> variable-length UTF-8; ``required`` columns must be present
        (extra columns are allowed) and are stored with the types it names, first and in its
        order. Later appends must give the same columns.

        Args:
            table: table path, e.g. ``"monitor/elastic"``.
            rows: ``{column: 1-D values}``, all of the same length. A ``step`` column should
                hold the index of the state each row belongs to, i.e. the same index
                :meth:`append_frame` would use for that state, so that :meth:`truncate_after`
                drops exactly the rows produced after a checkpoint.
            required: column -> stored type ("int64", "float64", "str", ...) the writer of the
                table promises (e.g. a monitor's decision log).

        Raises:
            ValueError: bad table path, unequal lengths, missing/extra columns, or values
                that do not fit the column's type.
        """
        h5 = self._file
        parts = table.strip("/").split("/")
        if not table.strip("/") or any(not p for p in parts) or parts[0] in _RESERVED_ROOT:
            raise ValueError(
                f"invalid table path {table!r}: use e.g. 'monitor/<term>' (not under {sorted(_RESERVED_ROOT)})"
            )
        table = "/".join(parts)
        required = dict(required or {})
        cols: dict[str, Array] = {}
        for name, values in rows.items():
            check_name(name, "column")
            arr = numpy_of(values)
            if arr.ndim == 0:  # a scalar is one row
                arr = arr.reshape(1)
            if arr.ndim != 1:
                raise ValueError(f"table {table}: column {name!r} must be 1-D, got {arr.shape}")
            cols[name] = arr
        lengths = {name: a.shape[0] for name, a in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"table {table}: columns have different lengths {lengths}")
        missing = sorted(set(required) - set(cols))
        if missing:
            raise ValueError(f"table {table} is missing columns {missing}")
        nrows = next(iter(lengths.values()), 0)

        columns: dict[str, Any] = self._handles.get(table) or {}  # the table's datasets, looked up once per open
        exists = bool(columns) or table in h5
        if exists:
            if not columns:
                group = h5[table]
                if not is_table(group):
                    raise ValueError(f"{table} in {self.path} exists and is not a table")
                columns = self._handles[table] = {name: group[name] for name in group}
            if set(columns) != set(cols):
                raise ValueError(f"table {table}: columns must be {sorted(columns)}, got {sorted(cols)}")
        if nrows == 0:
            return
        prepared: dict[str, Array] = {}
        for name, arr in cols.items():
            where = f"table {table}, column {name!r}"
            if exists:
                target = columns[name].dtype
                is_str = h5py.check_string_dtype(target) is not None
            else:
                fixed = required.get(name)
                is_str = fixed == "str" or (fixed is None and arr.dtype.kind in "US")
                if is_str:
                    target = STR_DTYPE
                elif fixed is not None:
                    target = np.dtype(fixed)
                elif arr.dtype.kind == "b":
                    target = np.dtype(bool)
                elif arr.dtype.kind in "iu":
                    target = np.dtype(np.int64)
                elif arr.dtype.kind == "f":
                    target = np.dtype(np.float64)
                else:
                    raise ValueError(f"{where}: unsupported values of dtype {arr.dtype}")
            if is_str:
                if arr.dtype.kind not in "USO":
                    raise ValueError(f"{where}: expected strings, got dtype {arr.dtype}")
                prepared[name] = np.array(
                    [v.decode() if isinstance(v, bytes) else str(v) for v in arr],
                    dtype=object,
                )
            else:
                if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, target, "safe"):
                    raise ValueError(f"{where}: dtype {arr.dtype} does not fit column {target}")
                prepared[name] = arr.astype(target)
        if not exists:
            group = h5.require_group(table)
            group.attrs["hybrid_table"] = 1
            ordered = [c for c in required if c in cols]
            ordered += [c for c in cols if c not in ordered]
            group.attrs["columns"] = np.array(ordered, dtype=STR_DTYPE)
            for name, arr in prepared.items():
                dtype = STR_DTYPE if arr.dtype == object else arr.dtype
                columns[name] = group.create_dataset(
                    name,
                    shape=(0,),
                    maxshape=(None,),
                    dtype=dtype,
                    chunks=(TABLE_CHUNK_ROWS,),
                )
            self._handles[table] = columns
        for name, arr in prepared.items():
            _append_rows_along_0(columns[name], arr)
        if flush:
            h5.flush()

    def flush(self) -> None:
        """Write everything appended so far to the file."""
        self._file.flush()

    def set_timing(self, seconds: Mapping[str, float]) -> None:
        """Record wall-clock seconds per term provider / stepper as attrs of ``/timing``.

        Keys given overwrite earlier values; other keys are kept.

        Args:
            seconds: ``{name: wall seconds}``, e.g. ``{"elastic/fem": 12.5, "stepper": 30.1}``.
        """
        group = self._file.require_group("timing")
        for name, value in seconds.items():
            group.attrs[str(name)] = float(value)
        self._file.flush()

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Set root attrs (e.g. final summaries); ``case`` and ``created`` cannot be changed.

        Args:
            attrs: ``{name: value}``; dicts and other non-HDF5 values are stored as JSON text.

        Raises:
            ValueError: ``attrs`` contains ``case`` or ``created``.
        """
        for key in ("case", "created"):
            if key in attrs:
                raise ValueError(f"the root attr {key!r} of {self.path} cannot be changed")
        self._set_root_attrs(attrs)
        self._file.flush()

    def _set_root_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Store ``attrs`` as root attributes (values converted by :func:`attr_value`)."""
        for key, value in attrs.items():
            self._file.attrs[str(key)] = attr_value(value)

    def table_rows(self) -> dict[str, int]:
        """Number of rows of every table (e.g. ``{"monitor/elastic": 1200}``); a checkpoint records it."""
        out = {}
        for path, group in iter_tables(self._file):
            cols = list(group)
            out[path] = int(group[cols[0]].shape[0]) if cols else 0
        return out

    def truncate_after(self, step: int, table_rows: Mapping[str, int] | None = None) -> None:
        """Drop frames with ``/step > step``, and table rows written after the checkpoint.

        Used when a run restarts from a checkpoint taken at ``step``, so that the continued run
        appends exactly what an uninterrupted run would have written. With ``table_rows`` (the row
        counts recorded in the checkpoint) every table is cut to exactly that many rows; without it,
        rows with ``step > step`` are dropped (tables without a ``step`` column are left as they are).

        Args:
            step: step index of the checkpoint the run continues from.
            table_rows: rows per table when the checkpoint was written.
        """
        self._forget_handles()
        h5 = self._file
        steps = np.asarray(h5["step"][()])
        # steps are strictly increasing, so the frames to keep are a prefix
        keep = int(np.searchsorted(steps, step, side="right"))
        if keep < steps.shape[0]:
            for ds in [h5["time"], h5["step"], *self._frame_datasets()]:
                ds.resize(keep, axis=0)
            logger.info(
                "truncated %s after step %d: %d -> %d frames",
                self.path,
                step,
                steps.size,
                keep,
            )
        for path, group in iter_tables(h5):
            if table_rows is not None:
                n = int(table_rows.get(path, 0))
                for name in group:
                    if group[name].shape[0] > n:
                        group[name].resize(n, axis=0)
                continue
            if "step" not in group:
                continue
            mask = np.asarray(group["step"][()]) <= step
            n_keep = int(mask.sum())
            if n_keep == mask.size:
                continue
            prefix = bool(mask[:n_keep].all())
            for name in group:
                ds = group[name]
                if not prefix:
                    data = read_column(ds)[mask]
                    if data.dtype.kind == "U":
                        data = data.astype(object)
                    ds[:n_keep] = data
                ds.resize(n_keep, axis=0)
            logger.info("truncated table %s after step %d: %d rows", path, step, n_keep)
        h5.flush()
        self._write_xdmf()

    def drop_frame(self, step: int) -> bool:
        """Remove the last frame if it is at ``step``, with the rows at ``step`` of tables outside ``monitor/``.

        A restart that runs further than the run that wrote its checkpoint drops the old run's final frame this
        way when the longer schedule has no frame there.

        Returns:
            Whether a frame was removed.
        """
        self._forget_handles()
        h5 = self._file
        n = self.frames
        if not n or int(h5["step"][n - 1]) != int(step):
            return False
        for ds in [h5["time"], h5["step"], *self._frame_datasets()]:
            ds.resize(n - 1, axis=0)
        for path, group in iter_tables(h5):
            if path.startswith("monitor/") or "step" not in group:
                continue
            steps = np.asarray(group["step"][()])
            keep = steps.size
            while keep and int(steps[keep - 1]) == int(step):  # the trailing rows of that frame
                keep -= 1
            for name in group:
                group[name].resize(keep, axis=0)
        h5.flush()
        self._write_xdmf()
        logger.info("dropped the frame at step %d of %s", step, self.path)
        return True

    # -- XDMF --------------------------------------------------------------------------------

    def _xdmf_attributes(
        self,
    ) -> list[tuple[str, str, int | None, tuple[int, ...], str, int]]:
        """Datasets shown in the sidecar.

        Returns:
            ``(attr name, h5 path, component or None, dataset shape, NumberType, Precision)``
            per XDMF attribute.
        """
        out: list[tuple[str, str, int | None, tuple[int, ...], str, int]] = []
        grid = self.grid_shape
        for group in _FRAME_GROUPS:
            if group not in self._file:
                continue
            for name in sorted(self._file[group]):
                ds = self._file[group][name]
                dt = ds.dtype
                number = {"f": "Float", "i": "Int", "u": "UInt", "b": "UChar"}.get(dt.kind)
                if number is None:
                    continue
                if number == "UInt" and dt.itemsize == 1:
                    number = "UChar"
                if number == "Int" and dt.itemsize == 1:
                    number = "Char"
                label = name if group == "fields" else f"term_{name}"
                frame_shape = tuple(ds.shape[1:])
                shape = tuple(ds.shape)
                if frame_shape == grid:
                    out.append((label, ds.name, None, shape, number, dt.itemsize))
                elif len(frame_shape) == len(grid) + 1 and frame_shape[1:] == grid:
                    for q in range(frame_shape[0]):
                        out.append((f"{label}_{q}", ds.name, q, shape, number, dt.itemsize))
                else:
                    logger.debug(
                        "%s %s does not match grid %s: not in XDMF",
                        ds.name,
                        shape,
                        grid,
                    )
        return out

    def _xdmf_text(self) -> str:
        """Build the XDMF document for the frames currently in the file."""
        h5 = self._file
        times = np.asarray(h5["time"][: self.frames], dtype=np.float64)
        steps = np.asarray(h5["step"][: self.frames], dtype=np.int64)
        if len(self.grid_shape) == 2:
            mesh_dims = self.grid_shape
            spacing = tuple(length / n for length, n in zip(self.grid_lengths, self.grid_shape, strict=True))
        else:
            dx = self.grid_lengths[0] / self.grid_shape[0]
            mesh_dims = (1, self.grid_shape[0])
            spacing = (dx, dx)
        attributes = self._xdmf_attributes()
        h5name = self.path.name

        root = ET.Element("Xdmf", {"Version": "3.0"})
        domain = ET.SubElement(root, "Domain")
        series = ET.SubElement(
            domain,
            "Grid",
            {"Name": "frames", "GridType": "Collection", "CollectionType": "Temporal"},
        )
        for f, (t, s) in enumerate(zip(times, steps, strict=True)):
            grid = ET.SubElement(series, "Grid", {"Name": f"step_{int(s)}", "GridType": "Uniform"})
            ET.SubElement(grid, "Time", {"Value": repr(float(t))})
            ET.SubElement(
                grid,
                "Topology",
                {
                    "TopologyType": "2DCoRectMesh",
                    "Dimensions": " ".join(map(str, mesh_dims)),
                },
            )
            geometry = ET.SubElement(grid, "Geometry", {"GeometryType": "ORIGIN_DXDY"})
            for values in ((0.0, 0.0), spacing):
                item = ET.SubElement(
                    geometry,
                    "DataItem",
                    {
                        "Format": "XML",
                        "NumberType": "Float",
                        "Precision": "8",
                        "Dimensions": "2",
                    },
                )
                item.text = " ".join(repr(float(v)) for v in values)
            for label, h5path, comp, shape, number, precision in attributes:
                attr = ET.SubElement(
                    grid,
                    "Attribute",
                    {"Name": label, "AttributeType": "Scalar", "Center": "Node"},
                )
                rank = len(shape)
                start = [f] + ([comp] if comp is not None else []) + [0] * len(self.grid_shape)
                count = [1] + ([1] if comp is not None else []) + list(self.grid_shape)
                slab = ET.SubElement(
                    attr,
                    "DataItem",
                    {
                        "ItemType": "HyperSlab",
                        "Dimensions": " ".join(map(str, count)),
                        "Type": "HyperSlab",
                    },
                )
                sel = ET.SubElement(
                    slab,
                    "DataItem",
                    {"Dimensions": f"3 {rank}", "Format": "XML", "NumberType": "Int"},
                )
                sel.text = " ".join(map(str, [*start, *([1] * rank), *count]))
                src = ET.SubElement(
                    slab,
                    "DataItem",
                    {
                        "Dimensions": " ".join(map(str, shape)),
                        "Format": "HDF",
                        "NumberType": number,
                        "Precision": str(precision),
                    },
                )
                src.text = f"{h5name}:{h5path}"
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")

    def _write_xdmf(self) -> None:
        """Rewrite the XDMF sidecar atomically (temp file + ``os.replace``)."""
        self._xdmf_written, self._xdmf_stale = _time.monotonic(), False
        text = self._xdmf_text()
        fd, tmp = temp_beside(self.xdmf_path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, self.xdmf_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and close the file (idempotent); the XDMF sidecar then lists every frame."""
        if self._h5 is not None:
            if self._xdmf_stale:
                self._write_xdmf()
            self._h5.flush()
            self._h5.close()
            self._h5 = None
            self._forget_handles()
            logger.debug("closed %s", self.path)
        unlock(self._lock)
        self._lock = None

    def __enter__(self) -> OutputFile:
        """Return self."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the file."""
        self.close()

    def __repr__(self) -> str:
        """Short description with path and frame count."""
        state = "closed" if self._h5 is None else f"{self.frames} frames"
        return f"OutputFile({str(self.path)!r}, {state})"


def read_table(path: PathLike, table: str) -> dict[str, Array]:
    """Read one table of a results file.

    Args:
        path: results file.
        table: table path, e.g. ``"monitor/elastic"``.

    Returns:
        ``{column: 1-D array}``; string columns are numpy ``str`` arrays.

    Raises:
        KeyError: no such table.
        ValueError: the file is not HDF5.
    """
    p = require_hdf5(path)
    with open_read(p) as h5:
        key = table.strip("/")
        if key not in h5 or not is_table(h5[key]):
            raise KeyError(f"{p} has no table {table!r}")
        return table_dict(h5[key])


def read_output(path: PathLike) -> dict[str, Any]:
    """Read a whole results file into memory.

    Args:
        path: results file written by :class:`OutputFile`.

    Returns:
        ``{"time": (F,) float64, "step": (F,) int64, "fields": {name: (F, ...)},
        "terms": {name: (F, ...)}, "patch": {name: (F, ...)}, "monitor": {term: {column: (R,)}}, "attrs": {...},
        "timing": {name: seconds}}``. Only the first ``len(/step)`` frames are returned (a
        frame being written by a live run is left out).

    Raises:
        ValueError: the file is not HDF5 or has no ``/time`` and ``/step``.
    """
    p = require_hdf5(path)
    with open_read(p) as h5:
        if "step" not in h5 or "time" not in h5:
            raise ValueError(f"{p} is not a results file (no /time and /step)")
        n = int(h5["step"].shape[0])
        out: dict[str, Any] = {
            "time": np.asarray(h5["time"][:n], dtype=np.float64),
            "step": np.asarray(h5["step"][:n], dtype=np.int64),
        }
        for group in _FRAME_GROUPS:
            out[group] = {name: np.asarray(ds[:n]) for name, ds in h5.get(group, {}).items()}
        monitor: dict[str, dict[str, Array]] = {}
        if "monitor" in h5:
            for tpath, group in iter_tables(h5["monitor"]):
                monitor[tpath] = table_dict(group)
        out["monitor"] = monitor
        out["attrs"] = attrs_dict(h5)
        out["timing"] = {k: float(v) for k, v in h5["timing"].attrs.items()} if "timing" in h5 else {}
    return out


def verify_results(path: PathLike, last_step: int) -> int:
    """Check that a results file a run has just closed is complete: it opens, every frame dataset has
    ``len(/step)`` frames, the last frame (read back) is at ``last_step``.

    Args:
        path: results file.
        last_step: step index of the run's final state.

    Returns:
        The number of frames.

    Raises:
        OSError, ValueError: the file is unreadable or incomplete (the message names the file and what is wrong).
    """
    p = require_hdf5(path)
    with open_read(p) as h5:
        if "step" not in h5 or "time" not in h5:
            raise ValueError(f"{p} is not a complete results file: it has no /time and /step")
        n = int(h5["step"].shape[0])
        datasets = [h5["time"], *(h5[g][k] for g in _FRAME_GROUPS if g in h5 for k in h5[g])]
        for ds in datasets:
            if ds.shape[0] < n:
                raise ValueError(f"{p} is incomplete: {ds.name} has {ds.shape[0]} frames, /step has {n}")
        last = int(h5["step"][n - 1]) if n else None
        if last != int(last_step):
            raise ValueError(
                f"{p} is incomplete: its last frame is at step {last}, the run ended at step {int(last_step)}"
            )
        try:
            for ds in datasets:
                np.asarray(ds[n - 1])
        except OSError as exc:
            raise OSError(f"{p}: the last frame cannot be read back ({exc})") from exc
    return n
