"""``hybrid info``: what a results file, checkpoint or other HDF5 file holds, in words."""

from __future__ import annotations

import json
from typing import Any

import h5py  # type: ignore[import-untyped, unused-ignore]
import numpy as np

from hybrid.core.checkpoint import read_checkpoint
from hybrid.core.hdf5 import (
    PathLike,
    attr_to_python,
    attrs_dict,
    iter_tables,
    open_read,
    read_column,
    require_hdf5,
)


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
    p = require_hdf5(path)
    lines: list[str] = []
    with open_read(p) as h5:
        kind = attr_to_python(h5.attrs.get("hybrid_kind"))
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
                rng = json.loads(str(attr_to_python(h5.attrs.get("rng_json", "null"))))
                extra = json.loads(str(attr_to_python(h5.attrs.get("extra_json", "{}"))))
            except json.JSONDecodeError:
                rng, extra = None, {}
            rng_name = rng.get("bit_generator", "?") if isinstance(rng, dict) else "none"
            lines.append(f"rng: {rng_name}")
            if isinstance(extra, dict) and extra:
                lines.append(f"extra: {', '.join(sorted(extra))}")

        attrs = attrs_dict(h5)
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
            tables = list(iter_tables(h5))
            if tables:
                lines.append("tables:")
            for tpath, group in tables:
                nrows = max((group[c].shape[0] for c in group), default=0)
                desc = f"  {tpath}: {nrows} rows"
                if "source" in group and nrows:
                    src = read_column(group["source"])
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
