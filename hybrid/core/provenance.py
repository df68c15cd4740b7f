"""Provenance stamps shared by every file hybrid writes: the package version and the creation time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata

__all__ = ["hybrid_version", "utc_now"]


def hybrid_version() -> str:
    """The installed ``hybrid`` distribution's version, or ``"unknown"`` when run from an uninstalled tree."""
    try:
        return importlib.metadata.version("hybrid")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (e.g. ``2026-12-07T15:04:37+00:00``)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
