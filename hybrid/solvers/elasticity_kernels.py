"""The compiled assembly kernel of the film/substrate FEM (:class:`hybrid.solvers.elasticity.FilmElasticitySolver`):
the condensed element stiffness of the surface layer, written for numba, which compiles it once (cached on disk);
and the central-difference weights of the surface derivative."""

from __future__ import annotations

from typing import Any

import numpy as np


def central_difference_weights(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and weights of the central first-derivative stencil of the given (even) order, unit spacing."""
    half = order // 2
    offsets = np.arange(-half, half + 1)
    # solve the Vandermonde system sum_j w_j o_j^m = delta_{m1}, m = 0..order
    vander = np.vander(offsets.astype(float), order + 1, increasing=True).T
    rhs = np.zeros(order + 1)
    rhs[1] = 1.0
    weights = np.linalg.solve(vander, rhs)
    keep = np.abs(weights) > 1e-14
    return offsets[keep], weights[keep]


def _assemble_condensed_kernel(
    yel: np.ndarray,
    dxi: np.ndarray,
    deta: np.ndarray,
    wq: np.ndarray,
    width: float,
    lam: float,
    mu: float,
    scatter: np.ndarray,
    data: np.ndarray,
    cond: np.ndarray,
) -> bool:
    """Fused element loop: Q2 plane-strain stiffness, centre condensation, scatter into CSR data (numba target).

    Same result as the vectorised numpy path of ``FilmElasticitySolver._assemble_numpy`` (tested); compiled
    with ``numba.njit`` on first use. Local dof order 8 c + a (component c, retained node a < 8), centre 16, 17.

    Args:
        yel: (nel, 9) node y [nm] per element; x is affine in xi with element width ``width`` [nm].
        dxi, deta: (nq, 9) reference gradients at the quadrature points; wq: (nq,) weights.
        width: element width [nm]. lam, mu: Lamé constants [eV/nm^3].
        scatter: (nel * 256,) position of each condensed element entry in ``data`` (spare last bin).
        data: (nnz + 1,) output CSR data, overwritten. cond: (nel, 2, 16) output, centre dofs = -cond @ u_e.

    Returns:
        False if a non-positive Jacobian was met.
    """
    nel = yel.shape[0]
    nq = wq.shape[0]
    c1 = lam + 2.0 * mu
    xx = np.empty((9, 9))
    yy = np.empty((9, 9))
    xy = np.empty((9, 9))
    gx = np.empty(9)
    gy = np.empty(9)
    ke = np.empty((18, 18))
    loc = np.empty((2, 9), dtype=np.int64)
    for i in range(8):
        loc[0, i] = i
        loc[1, i] = 8 + i
    loc[0, 8] = 16
    loc[1, 8] = 17
    data[:] = 0.0
    ok = True
    for e in range(nel):
        xx[:] = 0.0
        yy[:] = 0.0
        xy[:] = 0.0
        for q in range(nq):
            yx = 0.0
            ye = 0.0
            for k in range(9):
                yx += yel[e, k] * dxi[q, k]
                ye += yel[e, k] * deta[q, k]
            if ye <= 0.0:
                ok = False
            w = wq[q] * width * ye
            t = yx / ye
            for k in range(9):
                gx[k] = (dxi[q, k] - t * deta[q, k]) / width
                gy[k] = deta[q, k] / ye
            for i in range(9):
                wxi = w * gx[i]
                wyi = w * gy[i]
                for j in range(i, 9):  # xx, yy are symmetric
                    xx[i, j] += wxi * gx[j]
                    yy[i, j] += wyi * gy[j]
                for j in range(9):
                    xy[i, j] += wxi * gy[j]
        for i in range(9):
            for j in range(i):
                xx[i, j] = xx[j, i]
                yy[i, j] = yy[j, i]
        for i in range(9):
            ix = loc[0, i]
            iy = loc[1, i]
            for j in range(9):
                jx = loc[0, j]
                jy = loc[1, j]
                ke[ix, jx] = c1 * xx[i, j] + mu * yy[i, j]
                ke[iy, jy] = c1 * yy[i, j] + mu * xx[i, j]
                ke[ix, jy] = lam * xy[i, j] + mu * xy[j, i]
                ke[iy, jx] = lam * xy[j, i] + mu * xy[i, j]
        p = ke[16, 16]
        b = ke[16, 17]
        d = ke[17, 17]
        det = p * d - b * b
        i00 = d / det
        i01 = -b / det
        i11 = p / det
        for j in range(16):
            cond[e, 0, j] = i00 * ke[16, j] + i01 * ke[17, j]
            cond[e, 1, j] = i01 * ke[16, j] + i11 * ke[17, j]
        base = e * 256
        for i in range(16):
            k0 = ke[i, 16]
            k1 = ke[i, 17]
            for j in range(16):
                data[scatter[base + i * 16 + j]] += ke[i, j] - k0 * cond[e, 0, j] - k1 * cond[e, 1, j]
    return ok


_COMPILED: dict[str, Any] = {}


def compiled_assembly_kernel() -> Any:
    """``_assemble_condensed_kernel`` compiled by numba (cached on disk), built on first use."""
    if "assemble" not in _COMPILED:
        import numba

        _COMPILED["assemble"] = numba.njit(cache=True, nogil=True)(_assemble_condensed_kernel)
    return _COMPILED["assemble"]
