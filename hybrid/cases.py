"""Case files: the public entry points to assembling a run or a provider (docs/architecture.md).

``load_case`` builds a ready-to-run :class:`~hybrid.core.simulation.Simulation` from a case file (TOML) and
``--set``-style overrides, ``load_provider`` one term provider as a plain function of arrays, ``resolve_case``
the validated case with every default filled in, ``case_reference`` the generated case-file reference. The
assembly itself is :mod:`hybrid.couplers.assembly` (registry-driven, one layer down, so that couplers that build
simulations from a case use it without importing this top layer).
"""

from __future__ import annotations

from hybrid.couplers.assembly import (
    MAX_POINTS_1D,
    MAX_POINTS_2D,
    MAX_STEPS,
    STEPPER_TERM,
    ResolvedCase,
    build_provider,
    build_simulation,
    case_reference,
    case_schema,
    case_table,
    example_state,
    load_case,
    load_provider,
    override_case,
    resolve_case,
    term_schema,
)

__all__ = [
    "MAX_POINTS_1D",
    "MAX_POINTS_2D",
    "MAX_STEPS",
    "STEPPER_TERM",
    "ResolvedCase",
    "build_provider",
    "build_simulation",
    "case_reference",
    "case_schema",
    "case_table",
    "example_state",
    "load_case",
    "load_provider",
    "override_case",
    "resolve_case",
    "term_schema",
]
