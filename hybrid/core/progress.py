"""The one progress bar of long commands (runs, dataset generation, training): tqdm on stderr."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int, *, desc: str | None = None, unit: str = "it", initial: int = 0) -> Any:
    """A tqdm bar over ``total`` units (``unit``: "step", "sample", ...), starting at ``initial``.

    Redrawn at most twice a second, sized to the terminal; ``tqdm.auto`` picks the notebook widget in Jupyter.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, mininterval=0.5)
