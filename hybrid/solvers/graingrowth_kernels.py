"""Allen–Cahn right-hand side of the multi-order-parameter grain-growth model, one kernel per backend.

For order parameters η_q, q = 0..Q−1, on a periodic 2D grid (docs/physics.md §2, Fan & Chen 1997):

    ∂η_q/∂t = −L ( −α η_q + β η_q³ + 2γ η_q Σ_{p≠q} η_p² − κ ∇²η_q )

with the periodic 5-point Laplacian ∇²η ≈ (η_{x−1} − 2η + η_{x+1})/dx² + (η_{y−1} − 2η + η_{y+1})/dy². The pair sum
is evaluated as Σ_{p≠q} η_p² = S − η_q², S = Σ_p η_p², so one pass over the Q values of a grid point gives every
coupling term.

Array layout: ``eta`` has shape (Q, ny, nx) (order parameter, y, x), C-contiguous float64; the result has the same
shape, in [1/time unit] for the tendency or [-] for a step.

Kernels (same signature per kind; ``make_graingrowth_rhs(backend)`` / ``make_graingrowth_step(backend)`` pick one):

- ``rhs(eta, dx, dy, mobility, alpha, beta, gamma, kappa) -> dη/dt``;
- ``step(eta, dt, dx, dy, mobility, alpha, beta, gamma, kappa) -> η + dt dη/dt`` (explicit Euler, fused).

``*_numpy`` are the plain numpy references. The numba kernels are fused: the grid's rows are split into a few
blocks per thread (``prange`` over blocks); for each row S is accumulated over the Q order parameters (skipped for
Q = 1, where the coupling vanishes), then every order parameter of the row is updated in one sweep over x whose
interior is branch-free (so LLVM vectorises it) and the two periodic end points are done apart. The three rows each
sweep touches stay in cache, so a step reads η once and writes the result once: 2·Q·ny·nx·8 bytes of memory
traffic, the model used in ``benchmarks/bench_graingrowth.py``. Small arrays (< :func:`parallel_min_size` values,
which depends on numba's threading layer) use a serial build of the same kernel. The torch kernels use a circular
pad and in-place elementwise ops and run on CPU or CUDA tensors.

Threads: numba's default OpenMP layer lets idle workers spin; on a machine whose cores are shared with other jobs
that makes each parallel step wait for a descheduled thread (a 2-core machine showed 8–12 ms instead of 3 ms per
512² × 12 step). ``NUMBA_THREADING_LAYER=workqueue`` or ``OMP_WAIT_POLICY=passive`` in the environment avoids it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import prange

GrainGrowthKernel = Callable[..., Any]


# ----------------------------------------------------------------------------------------------- numpy reference


def _laplacian_numpy(eta: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Periodic 5-point Laplacian over the last two axes (y, x) [1/length²], any leading shape."""
    lx = (np.roll(eta, 1, axis=-1) - 2.0 * eta + np.roll(eta, -1, axis=-1)) / (dx * dx)
    ly = (np.roll(eta, 1, axis=-2) - 2.0 * eta + np.roll(eta, -1, axis=-2)) / (dy * dy)
    return lx + ly


def graingrowth_rhs_numpy(
    eta: np.ndarray,
    dx: float,
    dy: float,
    mobility: float,
    alpha: float,
    beta: float,
    gamma: float,
    kappa: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Plain numpy reference of dη/dt.

    Args:
        eta: order parameters, shape (Q, ny, nx) [-].
        dx, dy: grid spacing along x and y [length].
        mobility: L [1/(energy density · time)].
        alpha, beta, gamma: bulk free-energy coefficients [energy density].
        kappa: gradient coefficient [energy density · length²].
        out: optional array receiving the result (as the compiled kernels accept).

    Returns:
        dη/dt, shape (Q, ny, nx) [1/time].
    """
    s = np.sum(eta * eta, axis=0)
    dfdeta = -alpha * eta + beta * eta**3 + 2.0 * gamma * eta * (s - eta * eta)
    res = -mobility * (dfdeta - kappa * _laplacian_numpy(eta, dx, dy))
    if out is None:
        return res
    out[...] = res
    return out


def graingrowth_step_numpy(
    eta: np.ndarray,
    dt: float,
    dx: float,
    dy: float,
    mobility: float,
    alpha: float,
    beta: float,
    gamma: float,
    kappa: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Plain numpy reference of one explicit Euler step η + dt·dη/dt, shape (Q, ny, nx) [-] (``out`` optional)."""
    res = eta + dt * graingrowth_rhs_numpy(eta, dx, dy, mobility, alpha, beta, gamma, kappa)
    if out is None:
        return res
    out[...] = res
    return out


# ----------------------------------------------------------------------------------------------- numba (fused)


@numba.njit(inline="always")
def _fused_row(
    eta: np.ndarray,
    out: np.ndarray,
    y: int,
    s: np.ndarray,
    c_self: float,
    c_cube: float,
    c_pair: float,
    c_x: float,
    c_y: float,
) -> None:  # pragma: no cover - compiled
    """One grid row y of out = η·(c_self + c_cube·η² + c_pair·S) + c_x·(η_{x−1} + η_{x+1}) + c_y·(η_{y−1} + η_{y+1}),
    all Q order parameters (coefficients from :func:`_coefficients`); ``s`` (nx,) is scratch for S = Σ_p η_p².

    With one order parameter S = η² and the coupling 2γη(S − η²) vanishes: the pass that sums S is skipped and
    c_pair·S = c_pair·η² is folded into the cubic coefficient (c_cube + c_pair).
    """
    nq, ny, nx = eta.shape
    ym = y - 1 if y > 0 else ny - 1
    yp = y + 1 if y < ny - 1 else 0
    c_one = c_cube + c_pair  # the cubic coefficient when Q = 1
    if nq > 1:
        first = eta[0, y]
        for x in range(nx):
            s[x] = first[x] * first[x]
        for q in range(1, nq):
            row = eta[q, y]
            for x in range(nx):
                s[x] += row[x] * row[x]
    for q in range(nq):
        row = eta[q, y]
        up = eta[q, yp]
        dn = eta[q, ym]
        o = out[q, y]
        # periodic end points
        for x in (0, nx - 1):
            xm = x - 1 if x > 0 else nx - 1
            xp = x + 1 if x < nx - 1 else 0
            e = row[x]
            pair = c_pair * (s[x] if nq > 1 else e * e)
            o[x] = e * (c_self + c_cube * e * e + pair) + c_x * (row[xm] + row[xp]) + c_y * (up[x] + dn[x])
        # branch-free interiors (vectorised)
        if nq > 1:
            for x in range(1, nx - 1):
                e = row[x]
                o[x] = (
                    e * (c_self + c_cube * e * e + c_pair * s[x])
                    + c_x * (row[x - 1] + row[x + 1])
                    + c_y * (up[x] + dn[x])
                )
        else:
            for x in range(1, nx - 1):
                e = row[x]
                o[x] = e * (c_self + c_one * e * e) + c_x * (row[x - 1] + row[x + 1]) + c_y * (up[x] + dn[x])


# fastmath "contract" only: lets LLVM fuse a*b + c into FMA instructions (≈ 15 % faster, results differ from the
# reference by ~1 ulp); NaN/inf semantics stay IEEE so a blow-up still shows as NaN.
_FASTMATH = {"contract"}

CHUNKS_PER_THREAD = 4
"""Row blocks per numba thread in the parallel kernel (each block allocates its scratch row once)."""


@numba.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _fused_parallel(
    eta: np.ndarray,
    out: np.ndarray,
    c_self: float,
    c_cube: float,
    c_pair: float,
    c_x: float,
    c_y: float,
    blocks: int,
) -> None:  # pragma: no cover - compiled
    ny, nx = eta.shape[1], eta.shape[2]
    for b in prange(blocks):
        s = np.empty(nx)
        for y in range(b * ny // blocks, (b + 1) * ny // blocks):
            _fused_row(eta, out, y, s, c_self, c_cube, c_pair, c_x, c_y)


@numba.njit(cache=True, fastmath=_FASTMATH)
def _fused_serial(
    eta: np.ndarray,
    out: np.ndarray,
    c_self: float,
    c_cube: float,
    c_pair: float,
    c_x: float,
    c_y: float,
) -> None:  # pragma: no cover - compiled
    s = np.empty(eta.shape[2])
    for y in range(eta.shape[1]):
        _fused_row(eta, out, y, s, c_self, c_cube, c_pair, c_x, c_y)


PARALLEL_MIN_SIZE = 1 << 16
"""Arrays with fewer values than this run the serial kernel (thread start-up would cost more than it saves)."""

PARALLEL_MIN_SIZE_WORKQUEUE = 1 << 20
"""The same under numba's workqueue threading layer, whose parallel regions cost far more than OpenMP's (an empty
one 58 µs against 7 µs). Measured on a 2-core AMD EPYC, 2 threads, back-to-back steps of 512-wide grids, serial
against parallel: 174 against 470 µs at 2.6·10⁵ values, 2457 against 2033 µs at 1.05·10⁶."""


def parallel_min_size() -> int:
    """The smallest array (values) that the parallel kernel serves under the configured threading layer."""
    if str(getattr(numba.config, "THREADING_LAYER", "")) == "workqueue":
        return PARALLEL_MIN_SIZE_WORKQUEUE
    return PARALLEL_MIN_SIZE


def _coefficients(
    dt: float, euler: bool, dx: float, dy: float, mobility: float, alpha: float, beta: float, gamma: float, kappa: float
) -> tuple[float, float, float, float, float]:
    """(c_self, c_cube, c_pair, c_x, c_y) of :func:`_fused_row` for dη/dt (euler False) or η + dt·dη/dt (True).

    With r = −L (or −L·dt for a step), b = 1 for a step and 0 for the tendency, and the pair sum written as
    Σ_{p≠q} η_p² = S − η_q²: b·η + r·(−αη + βη³ + 2γη(S − η²) − κ∇²η) regrouped by powers of η and neighbour sums,
    so a point costs five multiply-adds instead of about a dozen operations.
    """
    r = -float(mobility) * (float(dt) if euler else 1.0)
    cx = 1.0 / (float(dx) * float(dx))
    cy = 1.0 / (float(dy) * float(dy))
    k = float(kappa)
    g2 = 2.0 * float(gamma)
    c_self = (1.0 if euler else 0.0) + r * (-float(alpha) + 2.0 * k * (cx + cy))
    return c_self, r * (float(beta) - g2), r * g2, -r * k * cx, -r * k * cy


def _fused(
    eta: np.ndarray,
    out: np.ndarray,
    dt: float,
    euler: bool,
    dx: float,
    dy: float,
    mobility: float,
    alpha: float,
    beta: float,
    gamma: float,
    kappa: float,
) -> None:
    """out = dη/dt (euler False) or η + dt·dη/dt (euler True), one pass (serial or parallel by size)."""
    coefficients = _coefficients(dt, euler, dx, dy, mobility, alpha, beta, gamma, kappa)
    if eta.size >= parallel_min_size():
        _fused_parallel(eta, out, *coefficients, min(eta.shape[1], CHUNKS_PER_THREAD * numba.get_num_threads()))
    else:
        _fused_serial(eta, out, *coefficients)


def _prepare(eta: np.ndarray, out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    eta = np.ascontiguousarray(eta, dtype=np.float64)
    if eta.ndim != 3:
        raise ValueError(f"eta must have shape (Q, ny, nx), got {eta.shape}")
    if out is None:
        out = np.empty_like(eta)
    elif out.shape != eta.shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float64 array of shape {eta.shape}")
    elif np.may_share_memory(out, eta):
        raise ValueError("out must not overlap eta (the stencil reads neighbours of updated points)")
    return eta, out


def graingrowth_rhs_numba(
    eta: np.ndarray,
    dx: float,
    dy: float,
    mobility: float,
    alpha: float,
    beta: float,
    gamma: float,
    kappa: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Fused numba dη/dt, parallel over rows (same arguments as :func:`graingrowth_rhs_numpy`).

    ``out`` (optional, (Q, ny, nx) float64, not overlapping ``eta``) receives the result.
    """
    eta, out = _prepare(eta, out)
    _fused(eta, out, 0.0, False, dx, dy, mobility, alpha, beta, gamma, kappa)
    return out


def graingrowth_step_numba(
    eta: np.ndarray,
    dt: float,
    dx: float,
    dy: float,
    mobility: float,
    alpha: float,
    beta: float,
    gamma: float,
    kappa: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Fused numba explicit Euler step η + dt·dη/dt in one pass over memory (reads η, writes ``out``).

    ``out`` (optional, (Q, ny, nx) float64, not overlapping ``eta``) receives η^{n+1}.
    """
    eta, out = _prepare(eta, out)
    _fused(eta, out, dt, True, dx, dy, mobility, alpha, beta, gamma, kappa)
    return out


# ----------------------------------------------------------------------------------------------- torch (CPU/CUDA)


def graingrowth_rhs_torch(
    eta: Any, dx: float, dy: float, mobility: float, alpha: float, beta: float, gamma: float, kappa: float
) -> Any:
    """Torch dη/dt for a (Q, ny, nx) float64 tensor on any device (CPU or CUDA).

    The periodic neighbours come from one circularly padded copy; the rest is done in place on two temporaries, so
    a call allocates four arrays of the size of η (each fresh allocation costs page faults on the CPU).
    """
    from torch.nn import functional

    cx = 1.0 / (dx * dx)
    cy = 1.0 / (dy * dy)
    pad = functional.pad(eta.unsqueeze(0), (1, 1, 1, 1), mode="circular")[0]
    lap = pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:]
    lap.mul_(cx)
    lap.add_(pad[:, :-2, 1:-1] + pad[:, 2:, 1:-1], alpha=cy)
    lap.sub_(eta, alpha=2.0 * (cx + cy))
    e2 = eta * eta
    s = e2.sum(dim=0, keepdim=True)
    dfdeta = (s - e2).mul_(2.0 * gamma).add_(e2, alpha=beta).sub_(alpha).mul_(eta)
    return dfdeta.sub_(lap, alpha=kappa).mul_(-mobility)


def graingrowth_step_torch(
    eta: Any, dt: float, dx: float, dy: float, mobility: float, alpha: float, beta: float, gamma: float, kappa: float
) -> Any:
    """Torch explicit Euler step η + dt·dη/dt, (Q, ny, nx) tensor on any device."""
    return graingrowth_rhs_torch(eta, dx, dy, mobility, alpha, beta, gamma, kappa).mul_(dt).add_(eta)


KERNELS: dict[str, GrainGrowthKernel] = {
    "reference": graingrowth_rhs_numpy,
    "numba": graingrowth_rhs_numba,
    "torch": graingrowth_rhs_torch,
}
STEP_KERNELS: dict[str, GrainGrowthKernel] = {
    "reference": graingrowth_step_numpy,
    "numba": graingrowth_step_numba,
    "torch": graingrowth_step_torch,
}
_BY_BACKEND = {"numpy": "numba", "numba": "numba", "torch": "torch", "reference": "reference"}


def _key(backend: str) -> str:
    key = _BY_BACKEND.get(backend)
    if key is None:
        raise ValueError(f"no grain-growth kernel for backend {backend!r}; allowed: numpy, torch, reference")
    return key


def make_graingrowth_rhs(backend: str) -> GrainGrowthKernel:
    """The fastest dη/dt kernel for a backend name ("numpy" -> numba, "torch" -> torch, "reference" -> numpy)."""
    return KERNELS[_key(backend)]


def make_graingrowth_step(backend: str) -> GrainGrowthKernel:
    """The fastest explicit Euler step kernel for a backend name (as :func:`make_graingrowth_rhs`)."""
    return STEP_KERNELS[_key(backend)]
