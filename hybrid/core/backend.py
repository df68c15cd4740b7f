"""Array backends: numpy (CPU, with numba kernels) and torch (CPU or CUDA).

A model writes its right-hand side once against the small set of operations of :class:`Backend` (array
conversion, real FFTs) plus kernels chosen per backend; arrays stay on the backend's device between steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor

BACKENDS = ("numpy", "torch")


def torch_device(name: str, *, auto: bool = False) -> Any:
    """The torch device called ``name``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (and ``"auto"`` if allowed: cuda when
    torch sees one, else cpu). hybrid is tested on these two device types only.

    Raises:
        ValueError: not such a name (the message lists the allowed ones), or a CUDA device torch cannot see.
    """
    import torch

    allowed = ("'auto', " if auto else "") + "'cpu', 'cuda', 'cuda:N'"
    if auto and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name!r} is not a device; allowed: {allowed}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: hybrid runs on {allowed}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch sees no CUDA device (use 'cpu')")
    return dev


def resolve_device(name: str, key: str, file: str | None = None) -> Any:
    """:func:`torch_device` with ``"auto"`` allowed, for a case or spec key: a bad name is a ConfigError naming it."""
    from hybrid.core.config import ConfigError

    try:
        return torch_device(name, auto=True)
    except ValueError as err:
        raise ConfigError(str(err), key=key, file=file) from None


@dataclass(frozen=True)
class Backend:
    """An array library and a device.

    Attributes:
        name: "numpy" or "torch".
        device: torch device string ("cpu", "cuda", "cuda:1"); always "cpu" for numpy.
    """

    name: str = "numpy"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"unknown backend {self.name!r}; allowed: {', '.join(BACKENDS)}")
        if self.name == "numpy" and self.device != "cpu":
            raise ValueError(f"the numpy backend runs on the cpu only, not {self.device!r}")
        if self.name == "torch":
            torch_device(self.device)

    @property
    def is_torch(self) -> bool:
        return self.name == "torch"

    def asarray(self, a: Any, dtype: Any = np.float64) -> Array:
        """Convert to this backend (no copy when already there; ``torch.from_numpy`` shares CPU memory)."""
        if self.is_torch:
            import torch

            tdtype = _torch_dtype(dtype)
            if isinstance(a, torch.Tensor):
                return a.to(device=self.device, dtype=tdtype)
            arr = np.asarray(a, dtype=np.dtype(dtype))
            return torch.from_numpy(arr).to(self.device)
        if _is_tensor(a):
            return a.detach().cpu().numpy().astype(dtype, copy=False)
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a: Array) -> np.ndarray:
        """A numpy view/copy of ``a`` (copy only when it lives on a GPU or needs a dtype change)."""
        return to_numpy(a)

    def copy(self, a: Array) -> Array:
        return a.clone() if self.is_torch else a.copy()

    def rfftn(self, a: Array, ndim: int) -> Array:
        """Real FFT over the last ``ndim`` (spatial) axes; leading axes (components) are batched."""
        axes = tuple(range(-ndim, 0))
        if self.is_torch:
            import torch

            return torch.fft.rfftn(a, dim=axes)
        if ndim == 1:  # the same transform; numpy's n-d entry point costs more than the transform at small sizes
            return np.fft.rfft(a, axis=-1)
        return np.fft.rfftn(a, axes=axes)

    def irfftn(self, a: Array, shape: tuple[int, ...]) -> Array:
        """Inverse of :meth:`rfftn`; ``shape`` is the spatial array shape."""
        axes = tuple(range(-len(shape), 0))
        if self.is_torch:
            import torch

            return torch.fft.irfftn(a, s=shape, dim=axes)
        if len(shape) == 1:
            return np.fft.irfft(a, n=shape[0], axis=-1)
        return np.fft.irfftn(a, s=shape, axes=axes)

    def extend_even(self, a: Array, axes: tuple[int, ...]) -> Array:
        """Even extension across both ends of each of ``axes``: (..., n, ...) -> (..., 2 (n - 1), ...).

        ``a[0], a[1], ..., a[n-1]`` becomes ``a[0], ..., a[n-1], a[n-2], ..., a[1]``: the periodic field whose
        restriction to the first n points is ``a`` (a no-flux axis, see :mod:`hybrid.core.grid`).
        """
        for ax in axes:
            n = a.shape[ax]
            if self.is_torch:
                import torch

                a = torch.cat([a, torch.flip(a.narrow(ax, 1, n - 2), dims=[ax])], dim=ax)
            else:
                inner = np.take(a, np.arange(n - 2, 0, -1), axis=ax)
                a = np.concatenate([a, inner], axis=ax)
        return a

    def all_finite(self, a: Array) -> bool:
        """True when every entry is finite (one reduction, no host copy of the array)."""
        if self.is_torch:
            import torch

            return bool(torch.isfinite(a).all())
        return bool(np.isfinite(a).all())

    def constant(self, a: np.ndarray) -> Array:
        """A precomputed numpy array (e.g. a Fourier symbol) moved to this backend once."""
        return self.asarray(a, dtype=a.dtype)


def _torch_dtype(dtype: Any) -> Any:
    import torch

    mapping = {
        np.dtype(np.float64): torch.float64,
        np.dtype(np.float32): torch.float32,
        np.dtype(np.int64): torch.int64,
        np.dtype(np.int32): torch.int32,
        np.dtype(np.complex128): torch.complex128,
        np.dtype(np.bool_): torch.bool,
    }
    if not isinstance(dtype, np.dtype | type):
        return dtype
    return mapping[np.dtype(dtype)]


def _is_tensor(a: Any) -> bool:
    return type(a).__module__.startswith("torch")


def to_numpy(a: Array) -> np.ndarray:
    """Any backend array as numpy (zero-copy for numpy and CPU tensors)."""
    if _is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)
