"""Files of a run: the results file (+ XDMF sidecar), checkpoints and ``hybrid info``, in one namespace.

The layouts and their guarantees are described where they are written: :mod:`hybrid.core.results` (results file,
tables, units, the writer's lock), :mod:`hybrid.core.checkpoint` (atomic, checksummed checkpoints),
:mod:`hybrid.core.describe` (what ``hybrid info`` prints) and :mod:`hybrid.core.hdf5` (the HDF5 plumbing they
share, and :func:`check_writable`). This module re-exports their public names.
"""

from __future__ import annotations

from hybrid.core.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from hybrid.core.describe import describe_file
from hybrid.core.hdf5 import FileInUse, check_writable, temp_beside
from hybrid.core.results import OutputFile, read_output, read_table, verify_results

__all__ = [
    "Checkpoint",
    "FileInUse",
    "OutputFile",
    "check_writable",
    "describe_file",
    "read_checkpoint",
    "read_output",
    "read_table",
    "temp_beside",
    "verify_results",
    "write_checkpoint",
]
