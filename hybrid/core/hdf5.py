"""HDF5 plumbing shared by results files, checkpoints and ``hybrid info``: attribute conversion, tables as groups
of column datasets, opening with clear errors for damaged or truncated files, the writer's lock, temporary files
beside their target with the user's permissions, and the check that an output can be written."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import numpy.typing as npt

from hybrid.core.config import ConfigError

try:  # POSIX: results files are locked while a run writes them
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Array = npt.NDArray[Any]

FORMAT_VERSION = 1
"""Version of the on-disk layout written by this module (root attr ``format_version``)."""


STR_DTYPE = h5py.string_dtype(encoding="utf-8")
_CHUNK_BYTES = 4 * 1024 * 1024
TABLE_CHUNK_ROWS = 1024
ARRAY_TAG = "__ndarray__"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def numpy_of(value: Any) -> Array:
    """Convert an array-like (numpy array, sequence, CPU/CUDA torch tensor) to a numpy array."""
    detach = getattr(value, "detach", None)
    if callable(detach):  # torch tensor: duck-typed so that core does not import torch
        value = detach().cpu().numpy()
    return np.asarray(value)


def check_name(name: str, what: str) -> None:
    """Raise ValueError unless ``name`` is usable as a single HDF5 link name."""
    if not isinstance(name, str) or not name or "/" in name or name in {".", ".."}:
        raise ValueError(f"invalid {what} name {name!r}: must be a non-empty string without '/'")


def storage_dtype(arr: Array, what: str) -> np.dtype[Any]:
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


def chunks_for(frame_shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunk shape for a (F, *frame_shape) dataset: one frame per chunk, split if > 4 MiB."""
    chunk = [1, *(max(1, n) for n in frame_shape)]
    while int(np.prod(chunk)) * itemsize > _CHUNK_BYTES:
        axis = int(np.argmax(chunk[1:])) + 1
        if chunk[axis] == 1:
            break
        chunk[axis] = (chunk[axis] + 1) // 2
    return tuple(chunk)


def attr_value(value: Any) -> Any:
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
            return np.array([str(v) for v in arr], dtype=STR_DTYPE)
    return json.dumps(value, default=str)


def attr_to_python(value: Any) -> Any:
    """Convert an attribute read by h5py to plain Python / numpy values (str, int, float, array)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
    return value


def attrs_dict(obj: Any) -> dict[str, Any]:
    """All attributes of an h5py object as a plain dict."""
    return {str(k): attr_to_python(v) for k, v in obj.attrs.items()}


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


def damaged(path: Path, exc: OSError) -> OSError:
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


def open_read(path: Path) -> Any:
    """Open an HDF5 file read-only, tolerating a writer that holds the file lock (a live run).

    Raises:
        OSError: the file cannot be read; the message names the file and what is wrong (truncated, damaged).
    """
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "lock" not in str(exc).lower():
            raise damaged(path, exc) from exc
        logger.debug("%s is locked by a writer; reading without file locking", path)
        try:
            return h5py.File(path, "r", locking=False)
        except OSError as exc2:
            raise damaged(path, exc2) from exc2


def lock_for_writing(path: Path) -> int | None:
    """Take an exclusive lock on ``path`` (created empty if missing) before anything in it is truncated.

    The lock is ``flock`` on the results file itself, the lock HDF5 takes too, so a second writer (another run,
    or any HDF5 program opening it for writing) fails while the first holds it; readers fall back to unlocked
    reading (:func:`open_read`). Returns the descriptor holding the lock (None where the system has no flock).

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


def unlock(fd: int | None) -> None:
    """Release a lock taken by :func:`lock_for_writing`."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the descriptor releases its flock


def require_hdf5(path: PathLike) -> Path:
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


def read_column(ds: Any) -> Array:
    """Read a 1-D column dataset; string columns come back as numpy ``str`` arrays."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.array(ds.asstr()[()].tolist(), dtype=str).reshape(ds.shape)
    return np.asarray(ds[()])


def first_difference(old: str, new: str) -> str:
    """Describe the first differing line between two texts (for error messages)."""
    a, b = old.splitlines(), new.splitlines()
    for i in range(max(len(a), len(b))):
        la = a[i] if i < len(a) else "<end of text>"
        lb = b[i] if i < len(b) else "<end of text>"
        if la != lb:
            return f"line {i + 1}: file has {la!r}, given case has {lb!r}"
    return "the texts differ only in whitespace at line ends"


def is_table(obj: Any) -> bool:
    """Whether an h5py object is a table group written by :meth:`OutputFile.append_rows`."""
    return isinstance(obj, h5py.Group) and bool(obj.attrs.get("hybrid_table", 0))


def iter_tables(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, group)`` for every table group below ``group`` (recursively)."""
    for name, obj in group.items():
        if not isinstance(obj, h5py.Group):
            continue
        path = f"{prefix}{name}"
        if is_table(obj):
            yield path, obj
        else:
            yield from iter_tables(obj, path + "/")


def table_dict(group: Any) -> dict[str, Array]:
    """Read a table group into ``{column: array}`` in column order."""
    order = [str(c) for c in attr_to_python(group.attrs.get("columns", []))]
    names = [c for c in order if c in group] + sorted(c for c in group if c not in order)
    return {c: read_column(group[c]) for c in names}


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
