"""Small builders shared by the tests (tiny ATG cases as dicts, so no file is needed)."""

from __future__ import annotations

from typing import Any


def atg_case(
    points: int = 64,
    length: float = 64.0,
    provider: str = "linear",
    integrator: str = "euler",
    dt: float = 1e-3,
    steps: int = 10,
    backend: str = "numpy",
    **extra: Any,
) -> dict[str, Any]:
    """A small ATG case dict; ``extra`` maps dotted keys to values (applied as overrides by the caller)."""
    return {
        "case": {"name": "tiny", "model": "atg", "seed": 3, "backend": backend},
        "grid": {"length": length, "points": points},
        "initial": {"kind": "random", "mean": 5.0, "amplitude": 0.3, "modes": 8},
        "terms": {"elastic": {"provider": provider}},
        "time": {"integrator": integrator, "dt": dt, "steps": steps},
        "output": {"every": 5},
    }
