"""The simulation state: named fields on one backend, plus time and step."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from hybrid.core.backend import Array, Backend, to_numpy


class UnphysicalState(ValueError):
    """A state outside the model's domain (for example a negative film thickness).

    A provider raises it when its input cannot be physical; the run loop stops on it as on NaN/inf, keeping its
    last good checkpoint (:class:`hybrid.core.simulation.SimulationBlowUp`).
    """


@dataclass
class State:
    """Named fields on one backend/device, with the simulated time and the step index.

    Attributes:
        fields: field name -> array of the grid's array shape (or (Q, ...) for multi-component fields), float64 by
            default for DNS.
        time: simulated time [model time unit].
        step: number of steps taken since the start of the run.
        backend: where the arrays live.
    """

    fields: dict[str, Array]
    time: float = 0.0
    step: int = 0
    backend: Backend = field(default_factory=Backend)

    def __getitem__(self, name: str) -> Array:
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"state has no field {name!r}; it holds {sorted(self.fields)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def replace(self, fields: Mapping[str, Array], dt: float, steps: int = 1) -> State:
        """A new state with ``fields``, advanced by ``dt`` in time and ``steps`` in step count."""
        return State(dict(fields), self.time + dt, self.step + steps, self.backend)

    def copy(self) -> State:
        return State({k: self.backend.copy(v) for k, v in self.fields.items()}, self.time, self.step, self.backend)

    def numpy_fields(self) -> dict[str, np.ndarray]:
        """Fields as numpy arrays (zero-copy on CPU)."""
        return {k: to_numpy(v) for k, v in self.fields.items()}

    @classmethod
    def from_arrays(
        cls, fields: Mapping[str, Array], time: float = 0.0, step: int = 0, backend: Backend | None = None
    ) -> State:
        """Wrap plain arrays (numpy or torch) into a State on ``backend`` (default: numpy, or torch for tensors)."""
        if backend is None:
            any_tensor = any(type(v).__module__.startswith("torch") for v in fields.values())
            if any_tensor:
                dev = str(next(iter(fields.values())).device)
                backend = Backend("torch", dev)
            else:
                backend = Backend()
        return cls({k: backend.asarray(v) for k, v in fields.items()}, time, step, backend)
