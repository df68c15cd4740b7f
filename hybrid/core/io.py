"""HDF5 results files (+ XDMF sidecar for ParaView) and atomic checkpoints.

Results file layout (the names are fixed public interface, see docs/architecture.md "Output files")::

    /time                 (F,)      float64   simulated time of each saved frame; attr units
    /step                 (F,)      int64     step index of each frame (strictly increasing)
    /fields/<name>        (F, ...)  float64 (or the array's integer/bool dtype); attr units
    /terms/<name>         (F, ...)  saved term values, same rules as fields; attr units
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

Checkpoint layout (``hybrid_kind="checkpoint"``)::

    /fields/<name>        exact dtype and shape of the state's arrays
    /extra/<i>, /rng/<i>  numpy arrays referenced from the JSON trees below
    root attrs            step, time, case, extra_json, rng_json, hybrid_version, created,
                          hybrid_kind="checkpoint", format_version, checksum ("sha256:<hex>" of
                          the fields, step, time, case, extra and RNG state; verified on reading)
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import numpy.typing as npt

from hybrid.core.config import ConfigError
from hybrid.core.provenance import hybrid_version, utc_now

try:  # POSIX: results files are locked while a run writes them
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MONITOR_COLUMNS",
    "Checkpoint",
    "FileInUse",
    "OutputFile",
    "check_writable",
    "describe_file",
    "read_checkpoint",
    "read_output",
    "read_table",
    "verify_results",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Array = npt.NDArray[Any]

FORMAT_VERSION = 1
"""Version of the on-disk layout written by this module (root attr ``format_version``)."""

MONITOR_COLUMNS: dict[str, str] = {
    "step": "int64",
    "time": "float64",
    "uncertainty": "float64",
    "threshold": "float64",
    "source": "str",
    "audit_error": "float64",
}
"""Required columns of every ``monitor/<term>`` table and their stored types."""

_FRAME_GROUPS = ("fields", "terms")
_RESERVED_ROOT = {"time", "step", "fields", "terms", "timing", "extra", "rng"}
_STR_DTYPE = h5py.string_dtype(encoding="utf-8")
_CHUNK_BYTES = 4 * 1024 * 1024
_TABLE_CHUNK_ROWS = 1024
_ARRAY_TAG = "__ndarray__"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _to_numpy(value: Any) -> Array:
    """Convert an array-like (numpy array, sequence, CPU/CUDA torch tensor) to a numpy array."""
    detach = getattr(value, "detach", None)
    if callable(detach):  # torch tensor: duck-typed so that core does not import torch
        value = detach().cpu().numpy()
    return np.asarray(value)


def _check_name(name: str, what: str) -> None:
    """Raise ValueError unless ``name`` is usable as a single HDF5 link name."""
    if not isinstance(name, str) or not name or "/" in name or name in {".", ".."}:
        raise ValueError(f"invalid {what} name {name!r}: must be a non-empty string without '/'")


def _storage_dtype(arr: Array, what: str) -> np.dtype[Any]:
    """Dtype a frame array is stored with: float64 for real floats, else the array's own dtype.

    Raises:
        ValueError: for dtypes that cannot be stored (strings, objects, ...).
    """
    kind = arr.dtype.kind
    if kind == "f":
        return np.dtype(np.float64)
    if kind == "c":
        return np.dtype(np.complex128)
    if kind in "iub":
        return arr.dtype
    raise ValueError(f"{what}: cannot store arrays of dtype {arr.dtype} (numeric or bool only)")


def _chunks_for(frame_shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunk shape for a (F, *frame_shape) dataset: one frame per chunk, split if > 4 MiB."""
    chunk = [1, *(max(1, n) for n in frame_shape)]
    while int(np.prod(chunk)) * itemsize > _CHUNK_BYTES:
        axis = int(np.argmax(chunk[1:])) + 1
        if chunk[axis] == 1:
            break
        chunk[axis] = (chunk[axis] + 1) // 2
    return tuple(chunk)


def _attr_value(value: Any) -> Any:
    """Convert a Python value to something HDF5 can store as an attribute.

    Strings, numbers, bools, numpy scalars and numeric arrays/sequences are stored as they are;
    sequences of strings as string arrays; anything else (dicts, None, mixed lists) as JSON text.
    """
    if isinstance(value, (str, bool, int, float, np.generic)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (np.ndarray, list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:
            arr = np.asarray([], dtype=object)  # ragged: falls through to JSON
        if arr.dtype.kind in "biuf" and arr.size:
            return arr
        if arr.dtype.kind == "U" and arr.ndim == 1:
            return np.array([str(v) for v in arr], dtype=_STR_DTYPE)
    return json.dumps(value, default=str)


def _attr_to_python(value: Any) -> Any:
    """Convert an attribute read by h5py to plain Python / numpy values (str, int, float, array)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
    return value


def _attrs_dict(obj: Any) -> dict[str, Any]:
    """All attributes of an h5py object as a plain dict."""
    return {str(k): _attr_to_python(v) for k, v in obj.attrs.items()}


class FileInUse(OSError):
    """A results file another live process holds open (a run writing it): it is left untouched."""


def _umask() -> int:
    """The process's umask (read without changing it where the system tells it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(target: Path) -> tuple[int, Path]:
    """A new temporary file next to ``target`` (same file system, so ``os.replace`` is atomic), with the
    permissions an ordinary new file gets under the user's umask (``0666 & ~umask``), not mkstemp's 0600."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:  # pragma: no cover - a file system without modes
        pass
    return fd, Path(name)


def _damaged(path: Path, exc: OSError) -> OSError:
    """An error naming ``path`` and, in words, what HDF5 found wrong with it."""
    text = str(exc)
    m = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if m:
        why = (
            f"the file is truncated: it holds {int(m.group(1))} of its {int(m.group(2))} bytes (a copy cut short, a "
            "full disk, or a file truncated by another program); its frames cannot be read. A run's checkpoint "
            "(<stem>.ckpt.h5) restarts it into a new file: hybrid run CASE --restart CKPT --out NEW.h5"
        )
    elif "signature" in text.lower():
        why = "the file is not a readable HDF5 file (damaged or overwritten)"
    else:
        why = f"HDF5 cannot open it ({text})"
    return OSError(f"{path}: {why}")


def _open_read(path: Path) -> Any:
    """Open an HDF5 file read-only, tolerating a writer that holds the file lock (a live run).

    Raises:
        OSError: the file cannot be read; the message names the file and what is wrong (truncated, damaged).
    """
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "lock" not in str(exc).lower():
            raise _damaged(path, exc) from exc
        logger.debug("%s is locked by a writer; reading without file locking", path)
        try:
            return h5py.File(path, "r", locking=False)
        except OSError as exc2:
            raise _damaged(path, exc2) from exc2


def _lock_for_writing(path: Path) -> int | None:
    """Take an exclusive lock on ``path`` (created empty if missing) before anything in it is truncated.

    The lock is ``flock`` on the results file itself, the lock HDF5 takes too, so a second writer (another run,
    or any HDF5 program opening it for writing) fails while the first holds it; readers fall back to unlocked
    reading (:func:`_open_read`). Returns the descriptor holding the lock (None where the system has no flock).

    Raises:
        FileInUse: another process holds the file open (its message says so; the file is not touched).
    """
    if fcntl is None:  # pragma: no cover - not POSIX: HDF5's own locking applies
        return None
    if os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE":  # the user turned HDF5 file locks off
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FileInUse(
                f"{path} is held open by another process (a run still writing it, or a program reading it); it was "
                "left untouched. Wait for that run to finish, or write to another file (--out)"
            ) from None
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without locks (some NFS)
            logger.warning("%s: the file system does not support locks; a second writer would not be stopped", path)
            return None
        raise
    return fd


def _unlock(fd: int | None) -> None:
    """Release a lock taken by :func:`_lock_for_writing`."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the descriptor releases its flock


def _require_hdf5(path: PathLike) -> Path:
    """Return ``path`` as a Path, raising if it is missing or not an HDF5 file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not HDF5 (message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    if not h5py.is_hdf5(p):
        size = p.stat().st_size
        what = "it is empty" if size == 0 else f"{size} bytes without an HDF5 signature: damaged, or another format"
        raise ValueError(f"{p} is not an HDF5 file ({what})")
    return p


def _read_column(ds: Any) -> Array:
    """Read a 1-D column dataset; string columns come back as numpy ``str`` arrays."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.array(ds.asstr()[()].tolist(), dtype=str).reshape(ds.shape)
    return np.asarray(ds[()])


def _first_difference(old: str, new: str) -> str:
    """Describe the first differing line between two texts (for error messages)."""
    a, b = old.splitlines(), new.splitlines()
    for i in range(max(len(a), len(b))):
        la = a[i] if i < len(a) else "<end of text>"
        lb = b[i] if i < len(b) else "<end of text>"
        if la != lb:
            return f"line {i + 1}: file has {la!r}, given case has {lb!r}"
    return "the texts differ only in whitespace at line ends"


def _is_table(obj: Any) -> bool:
    """Whether an h5py object is a table group written by :meth:`OutputFile.append_rows`."""
    return isinstance(obj, h5py.Group) and bool(obj.attrs.get("hybrid_table", 0))


def _iter_tables(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, group)`` for every table group below ``group`` (recursively)."""
    for name, obj in group.items():
        if not isinstance(obj, h5py.Group):
            continue
        path = f"{prefix}{name}"
        if _is_table(obj):
            yield path, obj
        else:
            yield from _iter_tables(obj, path + "/")


def _table_dict(group: Any) -> dict[str, Array]:
    """Read a table group into ``{column: array}`` in column order."""
    order = [str(c) for c in _attr_to_python(group.attrs.get("columns", []))]
    names = [c for c in order if c in group] + sorted(c for c in group if c not in order)
    return {c: _read_column(group[c]) for c in names}


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

    XDMF sidecar: ``<path stem>.xdmf`` next to the ``.h5`` (rewritten atomically after every
    frame, truncation and reopen) describes a temporal collection with one uniform grid per frame.
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
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', not {mode!r}")

        if mode == "w":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_for_writing(self.path)  # before "w" truncates anything
            try:
                self._h5 = h5py.File(self.path, "w", locking=False)
            except OSError as exc:
                _unlock(self._lock)
                raise _damaged(self.path, exc) from exc
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
        _require_hdf5(self.path)
        self._lock = _lock_for_writing(self.path)
        try:
            h5 = h5py.File(self.path, "r+", locking=False)
        except OSError as exc:
            _unlock(self._lock)
            raise _damaged(self.path, exc) from exc
        try:
            if _attr_to_python(h5.attrs.get("hybrid_kind")) != "results" or "step" not in h5:
                raise ValueError(f"{self.path} is not a results file written by hybrid")
            old_case = str(_attr_to_python(h5.attrs.get("case", "")))
            if same_case is not None:
                why = same_case(old_case)
            else:
                why = _first_difference(old_case, self.case_text) if old_case != self.case_text else None
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
            _unlock(self._lock)
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
        n = self.frames
        for ds in [self._h5["time"], *self._frame_datasets()]:
            if ds.shape[0] > n:
                logger.warning("trimming partial frame of %s in %s", ds.name, self.path)
                ds.resize(n, axis=0)
            elif ds.shape[0] < n:
                raise ValueError(f"{self.path} is inconsistent: {ds.name} has {ds.shape[0]} frames, /step has {n}")
        for _, group in _iter_tables(self._h5):
            lengths = [group[c].shape[0] for c in group]
            if lengths and min(lengths) != max(lengths):
                logger.warning("trimming partial rows of table %s in %s", group.name, self.path)
                for c in group:
                    group[c].resize(min(lengths), axis=0)

    # -- properties --------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        """Number of complete frames in the file (``len(/step)``)."""
        return int(self._file["step"].shape[0])

    @property
    def _file(self) -> Any:
        """The open h5py file; raises if closed."""
        if self._h5 is None:
            raise ValueError(f"results file {self.path} is closed")
        return self._h5

    def _frame_datasets(self) -> list[Any]:
        """All per-frame datasets under /fields and /terms."""
        h5 = self._file
        return [h5[g][n] for g in _FRAME_GROUPS if g in h5 for n in h5[g]]

    # -- writing -----------------------------------------------------------------------------

    def append_frame(
        self,
        step: int,
        time: float,
        fields: Mapping[str, Any],
        terms: Mapping[str, Any] | None = None,
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

        Raises:
            ValueError: non-increasing step, missing/extra names, shape changes, or a dtype
                that cannot be cast safely to the stored dtype (e.g. floats into an int field).
        """
        h5 = self._file
        step_i = int(step)
        n = self.frames
        if n and step_i <= int(h5["step"][n - 1]):
            raise ValueError(
                f"frame step {step_i} is not after the last saved step {int(h5['step'][n - 1])} "
                f"in {self.path} (restarting? call truncate_after(checkpoint_step) first)"
            )
        plan: list[tuple[str, str, Array]] = []
        for group, data in (("fields", fields), ("terms", terms or {})):
            existing = set(h5[group].keys())
            given = set(data.keys())
            if not n:
                # drop empty datasets that truncate_after() left behind
                for stale in existing - given:
                    del h5[group][stale]
            elif given != existing:
                raise ValueError(
                    f"frame {n} of {self.path}: {group} must be {sorted(existing)} as in earlier "
                    f"frames, got {sorted(given)}"
                )
            for name, value in data.items():
                _check_name(name, group[:-1])
                arr = _to_numpy(value)
                where = f"{group}/{name}"
                if name in h5[group]:
                    ds = h5[group][name]
                    if arr.shape != ds.shape[1:]:
                        raise ValueError(f"{where}: frame shape {arr.shape} differs from the stored {ds.shape[1:]}")
                    if not np.can_cast(arr.dtype, ds.dtype, casting="safe"):
                        raise ValueError(
                            f"{where}: dtype {arr.dtype} cannot be stored safely in the {ds.dtype} dataset"
                        )
                else:
                    _storage_dtype(arr, where)
                plan.append((group, name, arr))
        for group, name, arr in plan:
            if name not in h5[group]:
                dtype = _storage_dtype(arr, f"{group}/{name}")
                h5[group].create_dataset(
                    name,
                    shape=(n, *arr.shape),
                    maxshape=(None, *arr.shape),
                    dtype=dtype,
                    chunks=_chunks_for(arr.shape, dtype.itemsize),
                )
                self._set_units(h5[group][name], name)
            ds = h5[group][name]
            ds.resize(n + 1, axis=0)
            ds[n] = arr.astype(ds.dtype, copy=False)
        # /time before /step: /step defines the frame count, so it is the commit point.
        h5["time"].resize(n + 1, axis=0)
        h5["time"][n] = float(time)
        h5["step"].resize(n + 1, axis=0)
        h5["step"][n] = step_i
        h5.flush()
        self._write_xdmf()
        logger.debug("frame %d (step %d, t=%g) written to %s", n, step_i, time, self.path)

    def append_rows(self, table: str, rows: Mapping[str, Any]) -> None:
        """Append rows to a table (a group of column datasets) and flush.

        Column types are fixed by the first append: integers -> int64, floats -> float64,
        bools -> bool, strings -> variable-length UTF-8. Tables under ``monitor/`` must hold
        the columns of :data:`MONITOR_COLUMNS` (extra columns are allowed) and store them with
        those types. Later appends must give the same columns.

        Args:
            table: table path, e.g. ``"monitor/elastic"``.
            rows: ``{column: 1-D values}``, all of the same length. A ``step`` column should
                hold the index of the state each row belongs to, i.e. the same index
                :meth:`append_frame` would use for that state, so that :meth:`truncate_after`
                drops exactly the rows produced after a checkpoint.

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
        is_monitor = parts[0] == "monitor"
        cols: dict[str, Array] = {}
        for name, values in rows.items():
            _check_name(name, "column")
            arr = _to_numpy(values)
            if arr.ndim == 0:  # a scalar is one row
                arr = arr.reshape(1)
            if arr.ndim != 1:
                raise ValueError(f"table {table}: column {name!r} must be 1-D, got {arr.shape}")
            cols[name] = arr
        lengths = {name: a.shape[0] for name, a in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"table {table}: columns have different lengths {lengths}")
        if is_monitor:
            missing = sorted(set(MONITOR_COLUMNS) - set(cols))
            if missing:
                raise ValueError(f"monitor table {table} is missing columns {missing}")
        nrows = next(iter(lengths.values()), 0)

        exists = table in h5
        if exists:
            group = h5[table]
            if not _is_table(group):
                raise ValueError(f"{table} in {self.path} exists and is not a table")
            if set(group.keys()) != set(cols):
                raise ValueError(f"table {table}: columns must be {sorted(group.keys())}, got {sorted(cols)}")
        if nrows == 0:
            return
        prepared: dict[str, Array] = {}
        for name, arr in cols.items():
            where = f"table {table}, column {name!r}"
            if exists:
                target = h5[table][name].dtype
                is_str = h5py.check_string_dtype(target) is not None
            else:
                fixed = MONITOR_COLUMNS.get(name) if is_monitor else None
                is_str = fixed == "str" or (fixed is None and arr.dtype.kind in "US")
                if is_str:
                    target = _STR_DTYPE
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
            ordered = [c for c in MONITOR_COLUMNS if c in cols] if is_monitor else []
            ordered += [c for c in cols if c not in ordered]
            group.attrs["columns"] = np.array(ordered, dtype=_STR_DTYPE)
            for name, arr in prepared.items():
                dtype = _STR_DTYPE if arr.dtype == object else arr.dtype
                group.create_dataset(
                    name,
                    shape=(0,),
                    maxshape=(None,),
                    dtype=dtype,
                    chunks=(_TABLE_CHUNK_ROWS,),
                )
        group = h5[table]
        start = group[next(iter(prepared))].shape[0]
        for name, arr in prepared.items():
            ds = group[name]
            ds.resize(start + nrows, axis=0)
            ds[start : start + nrows] = arr
        h5.flush()

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
        """Store ``attrs`` as root attributes (values converted by :func:`_attr_value`)."""
        for key, value in attrs.items():
            self._file.attrs[str(key)] = _attr_value(value)

    def table_rows(self) -> dict[str, int]:
        """Number of rows of every table (e.g. ``{"monitor/elastic": 1200}``); a checkpoint records it."""
        out = {}
        for path, group in _iter_tables(self._file):
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
        for path, group in _iter_tables(h5):
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
                    data = _read_column(ds)[mask]
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
        h5 = self._file
        n = self.frames
        if not n or int(h5["step"][n - 1]) != int(step):
            return False
        for ds in [h5["time"], h5["step"], *self._frame_datasets()]:
            ds.resize(n - 1, axis=0)
        for path, group in _iter_tables(h5):
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
        """Flush and close the file (idempotent)."""
        if self._h5 is not None:
            self._h5.flush()
            self._h5.close()
            self._h5 = None
            logger.debug("closed %s", self.path)
        _unlock(self._lock)
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
    p = _require_hdf5(path)
    with _open_read(p) as h5:
        key = table.strip("/")
        if key not in h5 or not _is_table(h5[key]):
            raise KeyError(f"{p} has no table {table!r}")
        return _table_dict(h5[key])


def read_output(path: PathLike) -> dict[str, Any]:
    """Read a whole results file into memory.

    Args:
        path: results file written by :class:`OutputFile`.

    Returns:
        ``{"time": (F,) float64, "step": (F,) int64, "fields": {name: (F, ...)},
        "terms": {name: (F, ...)}, "monitor": {term: {column: (R,)}}, "attrs": {...},
        "timing": {name: seconds}}``. Only the first ``len(/step)`` frames are returned (a
        frame being written by a live run is left out).

    Raises:
        ValueError: the file is not HDF5 or has no ``/time`` and ``/step``.
    """
    p = _require_hdf5(path)
    with _open_read(p) as h5:
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
            for tpath, group in _iter_tables(h5["monitor"]):
                monitor[tpath] = _table_dict(group)
        out["monitor"] = monitor
        out["attrs"] = _attrs_dict(h5)
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
    p = _require_hdf5(path)
    with _open_read(p) as h5:
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


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Checkpoint:
    """Everything needed to continue a run bit-identically.

    Attributes:
        fields: the state's arrays ``{name: array}`` (exact dtype and shape are kept).
        step: step index of the state.
        time: simulated time of the state (time units of the case).
        rng_state: ``numpy.random.Generator.bit_generator.state`` (a dict, may hold big ints
            and numpy arrays), or None.
        extra: metadata: JSON-able values (dict keys must be strings; tuples come back as
            lists, numpy scalars as Python numbers) and numpy arrays at any depth (torch
            tensors are accepted and come back as numpy arrays), e.g. the monitor's and
            providers' state.
        case_text: resolved case text of the run.
    """

    fields: dict[str, Array]
    step: int
    time: float
    rng_state: Mapping[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    case_text: str = ""


def _encode_tree(obj: Any, arrays: list[Array], where: str) -> Any:
    """Replace numpy arrays in a JSON-like tree by ``{"__ndarray__": index}`` references."""
    if callable(getattr(obj, "detach", None)):  # torch tensor: stored (and read back) as numpy
        obj = _to_numpy(obj)
    if isinstance(obj, np.ndarray):
        arrays.append(obj)
        return {_ARRAY_TAG: len(arrays) - 1}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: dict keys must be strings, got {key!r}")
            out[key] = _encode_tree(value, arrays, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_encode_tree(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} in a checkpoint")


def _decode_tree(obj: Any, arrays: list[Array]) -> Any:
    """Inverse of :func:`_encode_tree`."""
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY_TAG}:
            return arrays[int(obj[_ARRAY_TAG])]
        return {k: _decode_tree(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_tree(v, arrays) for v in obj]
    return obj


def _write_arrays(group: Any, arrays: list[Array]) -> None:
    """Store arrays as datasets ``0, 1, ...`` of ``group`` (unicode arrays as UTF-8 strings)."""
    for i, arr in enumerate(arrays):
        if arr.dtype.kind == "U":
            ds = group.create_dataset(str(i), data=np.array(arr.tolist(), dtype=_STR_DTYPE).reshape(arr.shape))
            ds.attrs["unicode"] = 1
        elif arr.dtype.kind in "biufc":
            group.create_dataset(str(i), data=arr)
        else:
            raise ValueError(f"cannot store an array of dtype {arr.dtype} in a checkpoint")


def _read_arrays(group: Any) -> list[Array]:
    """Inverse of :func:`_write_arrays`."""
    out: list[Array] = []
    for i in range(len(group)):
        ds = group[str(i)]
        if ds.attrs.get("unicode", 0):
            out.append(np.array(ds.asstr()[()], dtype=str).reshape(ds.shape))
        else:
            out.append(np.asarray(ds[()]))
    return out


def _digest_array(h: Any, arr: Array) -> None:
    """Feed an array's dtype, shape and values into a hash (unicode arrays by their text)."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "U":
        h.update(b"U" + repr(arr.shape).encode() + json.dumps(arr.tolist()).encode())
        return
    h.update(arr.dtype.str.encode() + repr(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())


def _checksum(
    fields: Mapping[str, Array],
    step: int,
    time: float,
    case: str,
    extra_json: str,
    rng_json: str,
    extra_arrays: Sequence[Array],
    rng_arrays: Sequence[Array],
) -> str:
    """SHA-256 of everything a checkpoint restarts from (fields, step, time, case, extra and RNG state)."""
    h = hashlib.sha256()
    h.update(f"step={int(step)}\ntime={float(time)!r}\n".encode())
    for text in (case, extra_json, rng_json):
        h.update(len(text).to_bytes(8, "little") + text.encode("utf-8"))
    for name in sorted(fields):
        h.update(b"field:" + name.encode("utf-8"))
        _digest_array(h, _to_numpy(fields[name]))
    for tag, arrays in ((b"extra", extra_arrays), (b"rng", rng_arrays)):
        for arr in arrays:
            h.update(tag)
            _digest_array(h, arr)
    return "sha256:" + h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    """Best-effort fsync of a directory so that a rename survives a crash."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_checkpoint(path: PathLike, ckpt: Checkpoint) -> None:
    """Write a checkpoint atomically.

    The data goes to a temporary file in the same directory, which is flushed, fsynced and
    then renamed over ``path`` with ``os.replace``: a reader sees either the old or the new
    checkpoint, never a half-written one. The root attr ``checksum`` (``sha256:<hex>``) covers the
    fields, step, time, case, extra and RNG state; :func:`read_checkpoint` verifies it. Float64
    values round-trip exactly (arrays are stored
    in their own dtype, ``time`` as a float64 attr, JSON floats with ``repr`` precision).

    Args:
        path: checkpoint file, by convention ``<output stem>.ckpt.h5``.
        ckpt: the checkpoint.

    Raises:
        TypeError: ``extra`` or ``rng_state`` hold values that cannot be stored.
        ValueError: an array of ``extra``/``rng_state`` has an unstorable dtype, or a field
            name contains ``/``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    extra_arrays: list[Array] = []
    rng_arrays: list[Array] = []
    extra_json = json.dumps(_encode_tree(ckpt.extra, extra_arrays, "extra"))
    rng_json = json.dumps(_encode_tree(ckpt.rng_state, rng_arrays, "rng_state"))
    fields = {name: _to_numpy(value) for name, value in ckpt.fields.items()}
    for name in fields:
        _check_name(name, "field")
    checksum = _checksum(fields, ckpt.step, ckpt.time, ckpt.case_text, extra_json, rng_json, extra_arrays, rng_arrays)
    fd, tmp = temp_beside(target)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["hybrid_kind"] = "checkpoint"
            h5.attrs["format_version"] = FORMAT_VERSION
            h5.attrs["hybrid_version"] = hybrid_version()
            h5.attrs["created"] = utc_now()
            h5.attrs["case"] = ckpt.case_text
            h5.attrs["step"] = np.int64(ckpt.step)
            h5.attrs["time"] = np.float64(ckpt.time)
            h5.attrs["extra_json"] = extra_json
            h5.attrs["rng_json"] = rng_json
            h5.attrs["checksum"] = checksum
            group = h5.create_group("fields")
            for name, value in fields.items():
                group.create_dataset(name, data=value)
            _write_arrays(h5.create_group("extra"), extra_arrays)
            _write_arrays(h5.create_group("rng"), rng_arrays)
            h5.flush()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    logger.info("checkpoint at step %d written to %s", ckpt.step, target)


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`write_checkpoint`.

    Args:
        path: checkpoint file.

    Returns:
        The checkpoint, with arrays in their stored dtype.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a checkpoint, its content does not match its checksum (edited or damaged),
            or its step or time cannot be a run's (negative or fractional step, non-finite time); the message
            names the file.
        OSError: the file cannot be read (truncated, damaged); the message names the file.
    """
    p = _require_hdf5(path)
    try:
        h5 = _open_read(p)
    except OSError as exc:
        raise OSError(f"checkpoint {exc}") from exc
    with h5:
        if _attr_to_python(h5.attrs.get("hybrid_kind")) != "checkpoint":
            raise ValueError(f"{p} is not a hybrid checkpoint")
        try:
            extra_arrays = _read_arrays(h5["extra"]) if "extra" in h5 else []
            rng_arrays = _read_arrays(h5["rng"]) if "rng" in h5 else []
            extra_json = str(_attr_to_python(h5.attrs["extra_json"]))
            rng_json = str(_attr_to_python(h5.attrs["rng_json"]))
            extra = _decode_tree(json.loads(extra_json), extra_arrays)
            rng = _decode_tree(json.loads(rng_json), rng_arrays)
            fields = {name: np.asarray(ds[()]) for name, ds in h5["fields"].items()}
            raw_step = _attr_to_python(h5.attrs["step"])
            time = float(h5.attrs["time"])
            case = str(_attr_to_python(h5.attrs.get("case", "")))
            stored = _attr_to_python(h5.attrs.get("checksum"))
        except (KeyError, json.JSONDecodeError, OSError) as exc:
            raise ValueError(f"{p} is a damaged hybrid checkpoint: {exc}") from exc
    if not isinstance(raw_step, int | float) or not float(raw_step).is_integer() or raw_step < 0:
        raise ValueError(f"{p}: step = {raw_step!r} is not a step count (a whole number >= 0)")
    step = int(raw_step)
    if not math.isfinite(time) or time < 0:
        raise ValueError(f"{p}: time = {time!r} is not a simulated time (finite and >= 0)")
    if stored is None:
        logger.warning("%s has no checksum (written by an older hybrid); its content is not verified", p)
    elif stored != _checksum(fields, step, time, case, extra_json, rng_json, extra_arrays, rng_arrays):
        raise ValueError(
            f"{p}: its content does not match its checksum (the file was edited or damaged after it was "
            "written); restart from another checkpoint or start the run afresh"
        )
    return Checkpoint(fields=fields, step=step, time=time, rng_state=rng, extra=extra, case_text=case)


# --------------------------------------------------------------------------------------------
# hybrid info
# --------------------------------------------------------------------------------------------


def check_writable(path: PathLike, what: str, *, directory: bool = False) -> Path:
    """Check, before any work is done, that ``path`` can be written; create its folder.

    Args:
        path: the file (or, with ``directory``, the folder) a command will write.
        what: how the user named it, for the message (``"--out"``, ``"output.path (or --out)"``).
        directory: ``path`` is a folder to write files into, not a file.

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: names ``what`` and the path: a file path that is a folder, a folder path that is a file, a folder
            that cannot be created, or one this process cannot write in.
    """
    p = Path(path)
    if not directory and p.is_dir():
        raise ConfigError(f"{what} = {p} is a folder; give a file name (for example {p / 'result.h5'})")
    if directory and p.exists() and not p.is_dir():
        raise ConfigError(f"{what} = {p} is a file; give a folder")
    folder = p if directory else p.parent
    existing = next((a for a in (folder, *folder.parents) if a.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{what} = {p}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hybrid-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what} = {p}: cannot write in {folder} ({err.strerror or err})") from err
    return p


def _format_attr(value: Any, max_lines: int = 6) -> str:
    """Short text for an attribute value (long texts cut to their first lines)."""
    if isinstance(value, str):
        lines = value.splitlines() or [""]
        shown = lines[:max_lines]
        text = "\n      ".join(shown)
        if len(lines) > max_lines:
            text += f"\n      ... ({len(lines) - max_lines} more lines)"
        return text
    if isinstance(value, np.ndarray) and value.size > 8:
        return f"array{value.shape} {value.dtype}"
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    return repr(value)


def describe_file(path: PathLike) -> str:
    """Human-readable summary of an HDF5 file for ``hybrid info FILE``.

    Lists the kind of file (results / checkpoint / other HDF5), every dataset with shape and
    dtype, the root attrs (``case`` cut to its first lines), and for results files the number
    of frames, the time range, the monitor tables (rows, fraction of ``source == "nn"``,
    audits) and the timing.

    Args:
        path: any file.

    Returns:
        Multi-line text.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not HDF5 (message names the file).
    """
    p = _require_hdf5(path)
    lines: list[str] = []
    with _open_read(p) as h5:
        kind = _attr_to_python(h5.attrs.get("hybrid_kind"))
        if kind not in ("results", "checkpoint"):
            kind = "results" if "step" in h5 and "time" in h5 and "case" in h5.attrs else "other"
        label = {
            "results": "hybrid results file",
            "checkpoint": "hybrid checkpoint",
        }.get(kind, "HDF5 file (not written by hybrid's OutputFile)")
        lines.append(f"{p}: {label}, {p.stat().st_size / 1e6:.3g} MB")

        if kind == "results":
            n = int(h5["step"].shape[0])
            lines.append(f"frames: {n}")
            if n:
                t = np.asarray(h5["time"][:n])
                s = np.asarray(h5["step"][:n])
                lines.append(f"time: {t[0]:.6g} .. {t[-1]:.6g}   steps: {int(s[0])} .. {int(s[-1])}")
        elif kind == "checkpoint":
            step = int(h5.attrs.get("step", -1))
            time = float(h5.attrs.get("time", np.nan))
            lines.append(f"step: {step}   time: {time:.6g}")
            try:
                rng = json.loads(str(_attr_to_python(h5.attrs.get("rng_json", "null"))))
                extra = json.loads(str(_attr_to_python(h5.attrs.get("extra_json", "{}"))))
            except json.JSONDecodeError:
                rng, extra = None, {}
            rng_name = rng.get("bit_generator", "?") if isinstance(rng, dict) else "none"
            lines.append(f"rng: {rng_name}")
            if isinstance(extra, dict) and extra:
                lines.append(f"extra: {', '.join(sorted(extra))}")

        attrs = _attrs_dict(h5)
        if attrs:
            lines.append("attrs:")
            for key in sorted(attrs):
                if key in ("extra_json", "rng_json"):
                    continue
                lines.append(f"  {key}: {_format_attr(attrs[key])}")

        datasets: list[str] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                is_str = h5py.check_string_dtype(obj.dtype) is not None
                dtype = "str (utf-8)" if is_str else str(obj.dtype)
                datasets.append(f"  /{name}  {tuple(obj.shape)}  {dtype}")

        h5.visititems(visit)
        lines.append(f"datasets ({len(datasets)}):")
        lines.extend(datasets)

        if kind == "results":
            tables = list(_iter_tables(h5))
            if tables:
                lines.append("tables:")
            for tpath, group in tables:
                nrows = max((group[c].shape[0] for c in group), default=0)
                desc = f"  {tpath}: {nrows} rows"
                if "source" in group and nrows:
                    src = _read_column(group["source"])
                    n_nn = int(np.count_nonzero(src == "nn"))
                    desc += f", nn fraction {n_nn / nrows:.3f} ({n_nn} nn / {nrows - n_nn} dns)"
                if "audit_error" in group and nrows:
                    audit = np.asarray(group["audit_error"][()], dtype=np.float64)
                    done = audit[np.isfinite(audit)]
                    if done.size:
                        desc += f", {done.size} audits (max error {done.max():.3g})"
                lines.append(desc)
            if "timing" in h5 and len(h5["timing"].attrs):
                lines.append("timing (wall s):")
                for key in sorted(h5["timing"].attrs):
                    lines.append(f"  {key}: {float(h5['timing'].attrs[key]):.4g}")
    if kind == "checkpoint":
        try:
            read_checkpoint(p)
            lines.insert(2, "checksum: verified" if "checksum" in attrs else "checksum: none (not verified)")
        except (OSError, ValueError) as err:
            lines.insert(2, f"NOT RESTARTABLE: {err}")
    return "\n".join(lines)
