"""What every plot of hybrid shares: axis labels with units."""

from __future__ import annotations


def axis_label(text: str, unit: str) -> str:
    """``"text [unit]"``; just ``text`` for a dimensionless ("1") or unstated ("") unit."""
    return f"{text} [{unit}]" if unit not in ("", "1") else text
