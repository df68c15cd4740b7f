"""The Term protocol: one named contribution to a model's right-hand side, from a pluggable provider.

A DNS provider and an NN provider of the same term take the same input and return the same shape and units, so
a case file can swap them. Every provider built on :class:`TermProvider` counts its calls and wall time, and
accepts either a :class:`State` or bare arrays (so code outside hybrid can call it).
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from hybrid.core.backend import Array
from hybrid.core.state import State


@runtime_checkable
class Term(Protocol):
    """A named term: ``term(state) -> array`` on the state's backend/device."""

    name: str

    def __call__(self, state: State) -> Array: ...


class TermProvider:
    """Base class for term providers: call counting, timing, bare-array calls, checkpointable state.

    Subclasses set ``name`` (the term), ``provider`` (their registry name), ``inputs`` (the state fields they read,
    in the order positional bare arrays are given) and implement :meth:`evaluate`.
    """

    name: str = ""
    provider: str = ""
    inputs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, state: State | Array, *more: Array) -> Array:
        if not isinstance(state, State):
            # a library call with bare arrays: each call counts as the next step (for step-keyed schedules)
            state = State.from_arrays(dict(zip(self.inputs, (state, *more), strict=True)), step=self.calls)
        t0 = time.perf_counter()
        out = self.evaluate(state)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out

    def evaluate(self, state: State) -> Array:
        """Compute the term for ``state``; same backend/device as the state."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters for logs and the output's /timing: calls, wall seconds, seconds per call."""
        return {
            "term": self.name,
            "provider": self.provider,
            "calls": self.calls,
            "seconds": self.seconds,
            "seconds_per_call": self.seconds / self.calls if self.calls else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold for an exact restart (providers with history override this)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
