"""Provenance stamps shared by every file hybrid writes: the package version and the creation time."""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata

__all__ = ["hybrid_version", "utc_now"]


@functools.cache
def hybrid_version() -> str:
    """The installed ``hybrid`` distribution's version, or ``"unknown"`` when run from an uninstalled tree (read
    once per process: the metadata lookup costs milliseconds)."""
    try:
        return importlib.metadata.version("hybrid")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (e.g. ``2026-12-07T15:04:37+00:00``)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
