"""Atomic checkpoints of a run: the exact state, step, time, case, RNG and provider state, with a checksum.

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
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py  # type: ignore[import-untyped, unused-ignore]
import numpy as np

from hybrid.core.hdf5 import (
    ARRAY_TAG,
    FORMAT_VERSION,
    STR_DTYPE,
    Array,
    PathLike,
    attr_to_python,
    check_name,
    numpy_of,
    open_read,
    require_hdf5,
    temp_beside,
)
from hybrid.core.provenance import hybrid_version, utc_now

logger = logging.getLogger(__name__)

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
        obj = numpy_of(obj)
    if isinstance(obj, np.ndarray):
        arrays.append(obj)
        return {ARRAY_TAG: len(arrays) - 1}
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
        if set(obj) == {ARRAY_TAG}:
            return arrays[int(obj[ARRAY_TAG])]
        return {k: _decode_tree(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_tree(v, arrays) for v in obj]
    return obj


def _write_arrays(group: Any, arrays: list[Array]) -> None:
    """Store arrays as datasets ``0, 1, ...`` of ``group`` (unicode arrays as UTF-8 strings)."""
    for i, arr in enumerate(arrays):
        if arr.dtype.kind == "U":
            ds = group.create_dataset(str(i), data=np.array(arr.tolist(), dtype=STR_DTYPE).reshape(arr.shape))
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
        _digest_array(h, numpy_of(fields[name]))
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
    fields = {name: numpy_of(value) for name, value in ckpt.fields.items()}
    for name in fields:
        check_name(name, "field")
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
    p = require_hdf5(path)
    try:
        h5 = open_read(p)
    except OSError as exc:
        raise OSError(f"checkpoint {exc}") from exc
    with h5:
        if attr_to_python(h5.attrs.get("hybrid_kind")) != "checkpoint":
            raise ValueError(f"{p} is not a hybrid checkpoint")
        try:
            extra_arrays = _read_arrays(h5["extra"]) if "extra" in h5 else []
            rng_arrays = _read_arrays(h5["rng"]) if "rng" in h5 else []
            extra_json = str(attr_to_python(h5.attrs["extra_json"]))
            rng_json = str(attr_to_python(h5.attrs["rng_json"]))
            extra = _decode_tree(json.loads(extra_json), extra_arrays)
            rng = _decode_tree(json.loads(rng_json), rng_arrays)
            fields = {name: np.asarray(ds[()]) for name, ds in h5["fields"].items()}
            raw_step = attr_to_python(h5.attrs["step"])
            time = float(h5.attrs["time"])
            case = str(attr_to_python(h5.attrs.get("case", "")))
            stored = attr_to_python(h5.attrs.get("checksum"))
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
