"""Plane-strain elasticity of a strained film on a substrate: surface elastic energy density (DNS).

This module is the ``fem`` provider of the ATG term ``elastic`` (docs/physics.md §1): for a periodic film profile
h(x) >= 0 [nm] it returns the elastic energy density rho [eV/nm^3] at the free-surface points (x_i, h(x_i)),
x_i = i L / N.

Model
    Isotropic linear elasticity in plane strain. Film (0 < y < h(x)) and substrate (-H < y < 0) share Young's
    modulus E [eV/nm^3] and Poisson ratio nu; the film carries the misfit eigenstrain
    eps* = eps_m (e_x e_x + e_y e_y) (no out-of-plane eigenstrain); periodic in x on [0, L); u = 0 at y = -H;
    traction-free surface y = h(x).

Formulation
    Because both layers share E and nu, the solution is the *flat-film state* plus a correction. The flat-film
    state has stress sigma0 e_x e_x in the film, sigma0 = -E eps_m / (1 - nu^2), no stress in the substrate,
    and the compatible displacement u_flat = (0, c y) for y > 0 (zero below), c = eps_m / (1 - nu) (from
    sigma_yy = 0). It satisfies equilibrium, the interface conditions and the clamped bottom for any h >= 0,
    but leaves the traction sigma0 n_x e_x on a sloped surface. The correction u_c solves the eigenstrain-free
    problem on the whole body -H < y < h(x): clamped bottom, periodic sides, surface traction -sigma0 n_x e_x,
    i.e. the load ``sigma0 * int v_x h'(x) dx``. The interface y = 0 never enters, so the mesh need not
    resolve it; rho depends on the surface shape and the total depth H + h only, not on the film thickness;
    a flat film gives rho0 = E eps_m^2 / (2 (1 - nu^2)) to round-off (no load, no correction). A surface point
    with h = 0 is taken as the limit h -> 0+ (film material), which keeps rho continuous in h.

Discretisation
    * Geometry: the surface is the trigonometric interpolant of the samples (x_i, h_i) (``interpolation=
      "fourier"``; consistent with the spectral small-slope law, so no aliasing of a sinusoid; a periodic
      cubic spline is an option). Mesh: structured isoparametric biquadratic quadrilaterals (scikit-fem
      ``ElementQuad2``, the 9-node geometry of ``MeshQuad2``), ``refine`` element columns per grid interval
      (columns at the grid points). Rows: ``surface_layers`` rows of the element width below the surface,
      then growing geometrically by ``growth`` to the clamped bottom (``refine`` refines rows alike). Node
      heights are y = y0 + phi h(x): the rows above depth H/2 follow the surface rigidly (phi = 1), the ones
      below stretch; the mesh therefore depends on H + h only and a thicker film just translates the fine
      rows. Node x-positions never change, so each element's x-Jacobian is a constant.
    * Assembly: topology, quadrature, reference gradients, element -> CSR scatter indices and the sparsity
      pattern are built once. Each call runs one fused element loop (numba; a vectorised numpy version, one
      GEMM with precomputed element-matrix bases, is kept as reference) that forms the element matrices,
      condenses the element-centre node statically (25% fewer unknowns) and sums into the fixed CSR data.
      Without condensation the matrix equals scikit-fem's ``asm(linear_elasticity(lam, mu), basis)`` on the
      same MeshQuad2; the tests solve that scikit-fem system with hand-tied periodic DOFs and compare. The
      surface load is integrated exactly (cubic in the edge parameter).
    * Surface value: at a traction-free surface the stress is uniaxial along the tangent t (plus
      sigma_zz = nu sigma_tt), so rho = E / (2 (1 - nu^2)) (eps_tt - eps_m)^2 with the total tangential strain
      eps_tt = [(u_c,x)' + h' (u_c,y)' + c h'^2] / (1 + h'^2), ' = d/dx along the surface. The derivative of
      the surface displacement is a ``derivative_order``-th order (default 8) central difference over the
      element *vertices* (spacing dx / refine), whose Q2 values are superconvergent (the mid-side values are
      not: mixing them in made the error 10x larger). ``recovery="gradient"`` (full plane-strain stress from
      the element gradients, averaged over the two surface elements at the node, rho = 1/2 sigma:C^-1:sigma)
      uses neither the traction-free identity nor the flat-state strain; it is second order only and kept as
      an independent cross-check (tested to converge to the same values).

Accuracy (default options; Ge/Si constants; L = 100 nm, N = 100, H = L; h = 5 + A cos kx, kA = 1e-2)
    First harmonic of rho against -4 A k rho0 g(kT) (docs/physics.md): relative error 1.7e-4 for mode 1 (mostly
    the third-order (kA)^2 term), 7e-5 for wavelength 20 nm (mode 5, ~ lambda_max), 1e-4 for 10 nm and
    1.0e-2 for 5 nm (5 points per wavelength); mean of rho = rho0 to 1e-6. Converges with ``refine`` (mode 20:
    1.0e-2, 2.6e-4, 1.0e-4 for refine = 1, 2, 4 at kA = 1e-3). Non-small slopes, max-norm difference to a 4x
    refined solution: 4.0e-3 rho0 (refine 1), 4.1e-4 rho0 (refine 2) for a 6 nm flat-topped island with slopes
    up to 1.2 (rho spans 0 .. 2.8 rho0 there); 1.4e-4 rho0 for a Gaussian mound with slopes up to 0.8.
    Grooves down to the wetting layer are the hard case: frames of the shipped ATG run (cases/atg_film.toml,
    FEM throughout), against refine = 8. At the groove bottoms (h ≈ 0.23-0.55 nm) rho peaks at 10-36 rho0.
    With refine = 1 (the default, and the labels of the shipped dataset) the RMSE over the profile is
    0.04 rho0 at t = 60 (grooves forming) and 0.63, 0.36, 0.21, 0.10 rho0 at t = 100, 200, 500, 1000; the
    error sits at the groove bottom (max 0.8-6.3 rho0 there), and the RMSE over the points more than 2 grid
    points from the deepest groove is 0.03-0.04 rho0. With refine = 2 (11x the cost per call) the figures
    are about 10x smaller: RMSE 0.21, 0.07, 0.03, 0.008 rho0.

Linear solver (``solver=``)
    ``"pcg"`` (default): the stiffness matrix is SPD and changes only slightly between calls (h evolves
    slowly in a simulation). The SuperLU factorisation (symmetric minimum-degree ordering) of the matrix of an
    earlier geometry preconditions conjugate gradients started from the linear extrapolation of the two
    previous solutions, stopped at a relative energy-norm error estimate ``rtol`` (default 1e-11; measured
    difference to a direct solve <= 3e-11 rho0). Typically one iteration per call. The factorisation is
    refreshed when a call costs more than the average cost per call since the last refresh (the rule that
    minimises the amortised cost as iterations creep up; costs counted in CG iterations, a factorisation as
    ``factor_cost`` = 20 of them, as measured, so the choice is deterministic and runs reproduce bit for bit),
    or at once when the observed convergence rate predicts more than ``max_iterations`` iterations (an
    unrelated geometry then costs ~15% more than a direct solve). ``state_dict``/``load_state_dict`` carry
    this state across a checkpoint restart. ``"direct"``: factorise and solve every call (best for unrelated
    profiles, e.g. data sets).
    pyamg smoothed aggregation (rigid-body near-null space, CG acceleration) needed 82 iterations at N = 100
    and 356 at N = 512 for 1e-12 (the tall, thin deep elements), 5x to 60x the direct solve: not offered.

Measured cost per call (CPU seconds, one thread, of a shared 2-core development VM; default options, H = L,
dx = 1 nm, a rough profile with slopes up to 0.6 changing by 1e-3 nm per call; ``pcg`` averages 50
consecutive calls including its refactorisations; ``direct`` factorises every call):

    ======  ========  ======  ========  ========  ============
    N       unknowns  setup   direct    pcg       pcg: it/call
    ======  ========  ======  ========  ========  ============
    100     9 000     0.03 s  33 ms     7 ms      1.8
    256     29 184    0.07 s  150 ms    24 ms     1.0
    512     64 512    0.16 s  365 ms    66 ms     1.0
    1024    147 456   1.1 s   910 ms    136 ms    1.0
    ======  ========  ======  ========  ========  ============

    At N = 100 a pcg call is ~1.6 ms assembly, 2 x 1.3 ms triangular solves, ~1 ms amortised factorisation.
    The first call in a fresh process also loads the compiled numba kernel (~2 s the very first time, when
    it is compiled and cached on disk).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.interpolate import CubicSpline
from skfem import ElementQuad2
from skfem.quadrature import get_quadrature
from skfem.refdom import RefLine, RefQuad

from hybrid.core.state import UnphysicalState
from hybrid.solvers.elastic_laws import (
    depth_factor,
    flat_film_stress,
    misfit_energy_density,
    plane_strain_energy_density,
)
from hybrid.solvers.elasticity_kernels import central_difference_weights, compiled_assembly_kernel

logger = logging.getLogger(__name__)

__all__ = [
    "FilmElasticitySolver",
    "depth_factor",
    "flat_film_stress",
    "misfit_energy_density",
    "plane_strain_energy_density",
]


class FilmElasticitySolver:
    """Surface elastic energy density of a strained film on a periodic substrate (scikit-fem Q2 DNS).

    Attributes:
        length: period L [nm].
        points: number of surface points N.
        substrate_depth: H [nm], the clamped bottom lies at y = -H.
        young: E [eV/nm^3]. poisson: nu. misfit: eps_m.
        rho0: flat-film energy density [eV/nm^3]. sigma0: flat-film stress [eV/nm^3].
        calls: number of ``__call__`` invocations.
        seconds: wall time spent in ``__call__`` [s].
        factorizations: number of sparse LU factorisations.
        iterations: total conjugate-gradient iterations.
        last_iterations: CG iterations of the latest call (0 after a direct solve).
        assembly_seconds, factor_seconds, solve_seconds: wall time of those phases [s] (solve includes its
            factorisations).
        ndofs: number of unknowns (free displacement components, element centres condensed out).
    """

    def __init__(
        self,
        length: float,
        points: int,
        substrate_depth: float | None,
        young: float,
        poisson: float,
        misfit: float,
        *,
        refine: int = 1,
        surface_layers: int = 3,
        growth: float = 1.3,
        solver: str = "pcg",
        rtol: float = 1e-11,
        max_iterations: int = 20,
        factor_cost: float = 20.0,
        extrapolate: bool = True,
        recovery: str = "tangential",
        derivative_order: int = 8,
        interpolation: str = "fourier",
        assembly: str = "numba",
    ) -> None:
        """Build the mesh topology, the sparsity pattern and every geometry-independent array.

        Args:
            length: period L [nm], > 0.
            points: number N of surface points x_i = i L / N, >= 4.
            substrate_depth: substrate depth H [nm] (> 0); None means H = L.
            young: Young's modulus E [eV/nm^3], > 0.
            poisson: Poisson ratio nu, in (-1, 0.5).
            misfit: misfit strain eps_m [-].
            refine: uniform mesh refinement factor (>= 1): element columns per grid interval dx = L/N
                (element width dx / refine), and the rows alike (see ``surface_layers``, ``growth``).
            surface_layers: rows of height dx / refine below the surface (times ``refine``) before the
                geometric grading starts (>= 1).
            growth: ratio of successive row heights in the graded part at refine = 1 (>= 1); the ratio is
                growth ** (1 / refine) in general.
            solver: ``"pcg"`` (CG preconditioned by a reused factorisation, warm start) or ``"direct"``
                (sparse LU every call).
            rtol: relative energy-norm error at which CG stops (``"pcg"`` only).
            max_iterations: CG iterations after which (or once the observed convergence rate predicts
                more) the factorisation is refreshed at once.
            factor_cost: cost of a factorisation in preconditioned CG iterations, for the refresh rule
                (measured 18-20 for N = 100 .. 1024).
            extrapolate: start CG from the linear extrapolation 2 x_{n-1} - x_{n-2} of the two previous
                solutions (a time-stepping caller changes h smoothly) instead of x_{n-1}.
            recovery: ``"tangential"`` (surface derivative of the displacement, default) or ``"gradient"``
                (node average of element stresses; less accurate, for cross-checks).
            derivative_order: even order (2..10) of the central difference over the surface element vertices
                used by ``"tangential"``.
            interpolation: surface between the grid points: ``"fourier"`` (trigonometric interpolant of the
                samples, default; consistent with the spectral small-slope law and alias-free) or
                ``"spline"`` (periodic cubic spline).
            assembly: ``"numba"`` (fused compiled element loop, default) or ``"numpy"`` (vectorised
                reference: one GEMM with precomputed element-matrix bases, then condensation and bincount).

        Raises:
            ValueError: for out-of-range parameters or options.
        """
        if not (np.isfinite(length) and length > 0):
            raise ValueError(f"length must be a positive finite number, got {length!r}")
        if int(points) != points or points < 4:
            raise ValueError(f"points must be an integer >= 4, got {points!r}")
        if substrate_depth is None:
            substrate_depth = length
        if not (np.isfinite(substrate_depth) and substrate_depth > 0):
            raise ValueError(f"substrate_depth must be a positive finite number, got {substrate_depth!r}")
        if not (np.isfinite(young) and young > 0):
            raise ValueError(f"young must be positive, got {young!r}")
        if not (-1.0 < poisson < 0.5):
            raise ValueError(f"poisson must lie in (-1, 0.5), got {poisson!r}")
        if not np.isfinite(misfit):
            raise ValueError(f"misfit must be finite, got {misfit!r}")
        if int(refine) != refine or refine < 1:
            raise ValueError(f"refine must be an integer >= 1, got {refine!r}")
        if int(surface_layers) != surface_layers or surface_layers < 1:
            raise ValueError(f"surface_layers must be an integer >= 1, got {surface_layers!r}")
        if not (np.isfinite(growth) and growth >= 1.0):
            raise ValueError(f"growth must be >= 1, got {growth!r}")
        if solver not in ("pcg", "direct"):
            raise ValueError(f"solver must be 'pcg' or 'direct', got {solver!r}")
        if not (0 < rtol < 1):
            raise ValueError(f"rtol must lie in (0, 1), got {rtol!r}")
        if not (np.isfinite(factor_cost) and factor_cost >= 0):
            raise ValueError(f"factor_cost must be >= 0, got {factor_cost!r}")
        if int(max_iterations) != max_iterations or max_iterations < 1:
            raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
        if recovery not in ("tangential", "gradient"):
            raise ValueError(f"recovery must be 'tangential' or 'gradient', got {recovery!r}")
        if derivative_order not in (2, 4, 6, 8, 10):
            raise ValueError(f"derivative_order must be one of 2, 4, 6, 8, 10, got {derivative_order!r}")
        if assembly not in ("numba", "numpy"):
            raise ValueError(f"assembly must be 'numba' or 'numpy', got {assembly!r}")
        if interpolation not in ("fourier", "spline"):
            raise ValueError(f"interpolation must be 'fourier' or 'spline', got {interpolation!r}")

        self.length = float(length)
        self.points = int(points)
        self.substrate_depth = float(substrate_depth)
        self.young = float(young)
        self.poisson = float(poisson)
        self.misfit = float(misfit)
        self.refine = int(refine)
        self.surface_layers = int(surface_layers)
        self.growth = float(growth)
        self.solver = solver
        self.rtol = float(rtol)
        self.max_iterations = int(max_iterations)
        self.extrapolate = bool(extrapolate)
        self.factor_cost = float(factor_cost)
        self.recovery = recovery
        self.derivative_order = int(derivative_order)
        self.interpolation = interpolation
        self.assembly = assembly

        nu = self.poisson
        self.rho0 = misfit_energy_density(young, poisson, misfit)
        self.sigma0 = flat_film_stress(young, poisson, misfit)
        # plane-strain Lamé constants (same as 3D ones; eps_zz = 0)
        self._lam = young * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
        self._mu = young / (2.0 * (1.0 + nu))
        # d(u_y)/dy of the flat-film state in the film: elastic eps_yy = nu eps_m / (1 - nu) (sigma_yy = 0) + eps_m
        self._c_flat = misfit / (1.0 - nu)

        self.calls = 0
        self.seconds = 0.0
        self.factorizations = 0
        self.iterations = 0
        self.last_iterations = 0
        self.assembly_seconds = 0.0
        self.factor_seconds = 0.0
        self.solve_seconds = 0.0
        self._last_solution: np.ndarray | None = None
        self._last_y: np.ndarray | None = None

        self._build_topology()
        self._lu: Any = None
        self._x_prev: np.ndarray | None = None
        self._x_prev2: np.ndarray | None = None
        self._h_current: np.ndarray | None = None
        self._h_factor: np.ndarray | None = None
        self._since_cost = 0.0
        self._since_calls = 0
        self._refresh_next = True
        logger.debug(
            "FilmElasticitySolver: N=%d, %d x %d Q2 elements, %d dofs, nnz=%d",
            self.points,
            self._ncol,
            self._nrow,
            self.ndofs,
            self._nnz,
        )

    # ------------------------------------------------------------------ setup
    def _row_layout(self) -> tuple[np.ndarray, np.ndarray]:
        """Heights of the element-row boundaries for a flat profile h = 0 and their surface weights.

        Row thicknesses: ``surface_layers * refine`` rows of the element width dz = dx / refine below the
        surface, then growing by ``growth ** (1 / refine)`` (so ``refine`` refines rows and columns alike).
        The rows that fit above depth H/2 form a rigid block with these exact thicknesses (they follow the
        surface: weight phi = 1); the rows below continue the sequence, stretched to end exactly at the
        bottom, with phi falling linearly to 0 there. Node heights are y = y0 + phi h(x), so the mesh depends
        on H + h(x) only: a thicker film on a thinner substrate gives a translated copy of the mesh.

        Returns:
            y0: (R + 1,) row-boundary heights for h = 0 [nm], -H (bottom) .. 0 (surface), increasing.
            phi: (R + 1,) surface weights, 0 (bottom) .. 1 (surface), non-decreasing.
        """
        depth = self.substrate_depth
        dz = self.length / (self.points * self.refine)

        growth = self.growth ** (1.0 / self.refine)  # refine splits every row about in two, like the columns
        uniform = self.surface_layers * self.refine

        def thickness(j: int) -> float:
            return dz * growth ** max(0, j - uniform + 1)

        d = [0.0]
        j = 0
        while d[-1] + thickness(j) <= 0.5 * depth:
            d.append(d[-1] + thickness(j))
            j += 1
        rigid = d[-1]
        rest = depth - rigid
        deep: list[float] = []
        while sum(deep) < rest:
            deep.append(thickness(j))
            j += 1
        if len(deep) > 1 and sum(deep) - rest > 0.5 * deep[-1]:
            deep.pop()  # rather stretch the others than keep a sliver
        deep_arr = np.asarray(deep) * (rest / sum(deep))
        depths = np.concatenate((d, rigid + np.cumsum(deep_arr)))
        depths[-1] = depth
        phi = np.where(depths <= rigid, 1.0, (depth - depths) / rest)
        return -depths[::-1].copy(), phi[::-1].copy()

    def _build_topology(self) -> None:
        """Lattice numbering, element connectivity, quadrature, scatter indices and sparsity pattern."""
        n = self.points
        ncol = n * self.refine
        y0_rows, phi_rows = self._row_layout()
        nrow = len(y0_rows) - 1
        self._ncol, self._nrow = ncol, nrow
        nx, ny = 2 * ncol, 2 * nrow + 1  # node lattice (periodic in x), J = 0 bottom .. 2R surface
        self._nx, self._ny = nx, ny
        # node heights y = y0 + phi h(x) (see _row_layout); mid-side rows halfway in both
        self._y_flat = np.empty(ny)
        self._y_flat[0::2] = y0_rows
        self._y_flat[1::2] = 0.5 * (y0_rows[:-1] + y0_rows[1:])
        self._phi = np.empty(ny)
        self._phi[0::2] = phi_rows
        self._phi[1::2] = 0.5 * (phi_rows[:-1] + phi_rows[1:])
        self._x_nodes = np.arange(nx) * (self.length / nx)
        self._dx_elem = self.length / ncol

        elem = ElementQuad2()
        self._element = elem
        locs = elem.doflocs  # (9, 2) reference [0, 1]^2
        off = np.rint(2 * locs).astype(int)  # lattice offsets of the local nodes
        ec_grid, er_grid = np.meshgrid(np.arange(ncol), np.arange(nrow), indexing="ij")
        ec, er = ec_grid.ravel(), er_grid.ravel()
        ii = (2 * ec[:, None] + off[None, :, 0]) % nx
        jj = 2 * er[:, None] + off[None, :, 1]
        self._elem_nodes = jj * nx + ii  # (nel, 9) lattice node ids

        # quadrature (3x3 Gauss, exact for the affine case) and reference gradients
        xq, wq = get_quadrature(RefQuad, 5)
        self._wq = wq
        dref = np.stack([elem.lbasis(xq, a)[1] for a in range(9)], axis=-1)  # (2, nq, 9)
        self._dxi, self._deta = dref[0], dref[1]
        self._build_element_basis()

        # unknowns: every node with J >= 1 except the element centres, which are condensed out element by
        # element (static condensation: 25% fewer unknowns, less fill); 2 components interleaved
        lattice_j, lattice_i = np.divmod(np.arange(nx * ny), nx)
        keep = (lattice_j >= 1) & ~((lattice_j % 2 == 1) & (lattice_i % 2 == 1))
        node_index = np.full(nx * ny, -1, dtype=np.int64)
        node_index[keep] = np.arange(int(keep.sum()))
        self._node_index = node_index
        self.ndofs = 2 * int(keep.sum())
        nel = self._elem_nodes.shape[0]
        node_free = node_index[self._elem_nodes[:, :8]]  # (nel, 8) retained local nodes 0..7
        # element dofs, local order d = 8 c + a (component c, retained local node a < 8), then the centre
        # node's x, y (d = 16, 17): ldof[e, d] = global unknown or -1 where clamped
        ldof = np.concatenate([2 * node_free, 2 * node_free + 1], axis=1)
        ldof[np.concatenate([node_free, node_free], axis=1) < 0] = -1
        rows = np.broadcast_to(ldof[:, :, None], (nel, 16, 16)).ravel()
        cols = np.broadcast_to(ldof[:, None, :], (nel, 16, 16)).ravel()
        valid = (rows >= 0) & (cols >= 0)
        key = rows * self.ndofs + cols
        ukeys, inverse = np.unique(key[valid], return_inverse=True)
        self._nnz = len(ukeys)
        scatter = np.full(key.shape, self._nnz, dtype=np.int64)  # clamped entries go to a spare bin
        scatter[valid] = inverse
        self._scatter = scatter
        self._ldof = ldof
        urow = ukeys // self.ndofs
        self._indices = (ukeys % self.ndofs).astype(np.int32)
        self._indptr = np.searchsorted(urow, np.arange(self.ndofs + 1)).astype(np.int32)
        self._condense: np.ndarray | None = None  # (nel, 2, 16): u_centre = -G @ u_element
        surface_nodes = node_index[(ny - 1) * nx + np.arange(nx)]
        self._surface_dofs = np.stack([2 * surface_nodes, 2 * surface_nodes + 1], axis=-1)  # (2C, 2)
        self._retained = np.flatnonzero(keep)

        # surface edges: local top nodes (0,1), (0.5,1), (1,1) -> surface lattice columns 2e, 2e+1, 2e+2
        xl, wl = get_quadrature(RefLine, 5)
        t = xl[0]
        phi = np.stack([2 * (t - 0.5) * (t - 1.0), -4 * t * (t - 1.0), 2 * t * (t - 0.5)])  # (3, nq)
        dphi = np.stack([4 * t - 3.0, -8 * t + 4.0, 4 * t - 1.0])
        self._edge_b = (phi * wl) @ dphi.T  # B_ab = int phi_a phi_b' dxi
        self._edge_cols = (2 * np.arange(ncol)[:, None] + np.arange(3)[None, :]) % nx  # (C, 3)

        offs, wts = central_difference_weights(self.derivative_order)
        # stencil over the element *vertices* on the surface (lattice stride 2, spacing dx / refine): the
        # Q2 vertex values are superconvergent, the mid-side values are not (measured: mixing them limits
        # the surface derivative to ~3rd order with a 10x larger constant)
        self._fd_offsets, self._fd_weights = 2 * offs, wts / self._dx_elem
        self._vertex_cols = np.arange(n) * (2 * self.refine)  # surface lattice columns of the x_i
        wavenumber = 2 * np.pi * np.fft.rfftfreq(n, d=self.length / n)
        shifts = np.arange(2 * self.refine) * (self.length / nx)  # offsets of the node columns from x_i
        self._phase = np.exp(1j * shifts[:, None] * wavenumber[None, :])  # (2 refine, N // 2 + 1)
        self._ik = 1j * wavenumber
        if n % 2 == 0:
            self._ik[-1] = 0.0  # the Nyquist cosine has zero slope at the grid points

        # gradient recovery: reference gradients at the top-left / top-right corners
        corners = np.array([[0.0, 1.0], [1.0, 1.0]])
        dcor = np.stack([elem.lbasis(corners, a)[1] for a in range(9)], axis=-1)  # (2, 2, 9)
        self._dxi_cor, self._deta_cor = dcor[0], dcor[1]

    def _build_element_basis(self) -> None:
        """Constant matrices that make every element stiffness matrix one product with 5 x nq geometry scalars.

        The x-positions of the nodes are affine in the reference coordinate xi (element width a), so the
        Jacobian is [[a, 0], [y_xi, y_eta]] and the physical gradients are g_x = (D_xi - t D_eta) / a,
        g_y = D_eta / y_eta with t = y_xi / y_eta. Expanding the quadrature sums of products of g_x, g_y
        (weight w_q a y_eta) gives, with P = D_xi D_xi^T, Q = D_xi D_eta^T + D_eta D_xi^T, R = D_eta D_eta^T,
        D = D_xi D_eta^T per quadrature point:
            XX = sum_q [s1 P - s2 Q + s3 R] / a,  YY = a sum_q s4 R,  XY = sum_q w_q D - s5 R,
            s1 = w y_eta, s2 = w y_xi, s3 = w y_xi^2 / y_eta, s4 = w / y_eta, s5 = w y_xi / y_eta,
        and K[x, x] = (lam + 2 mu) XX + mu YY, K[y, y] = (lam + 2 mu) YY + mu XX, K[x, y] = lam XY + mu XY^T.
        """
        lam, mu, a = self._lam, self._mu, self._dx_elem
        c1 = lam + 2 * mu
        dxi, deta, wq = self._dxi, self._deta, self._wq
        pp = np.einsum("qa,qb->qab", dxi, dxi)
        qq = np.einsum("qa,qb->qab", dxi, deta) + np.einsum("qa,qb->qab", deta, dxi)
        rr = np.einsum("qa,qb->qab", deta, deta)
        dd = np.einsum("q,qa,qb->ab", wq, dxi, deta)
        nq = len(wq)
        basis = np.zeros((5, nq, 2, 9, 2, 9))  # (scalar, q, row component, row node, col component, col node)
        basis[0, :, 0, :, 0, :] = c1 * pp / a
        basis[0, :, 1, :, 1, :] = mu * pp / a
        basis[1, :, 0, :, 0, :] = -c1 * qq / a
        basis[1, :, 1, :, 1, :] = -mu * qq / a
        basis[2, :, 0, :, 0, :] = c1 * rr / a
        basis[2, :, 1, :, 1, :] = mu * rr / a
        basis[3, :, 0, :, 0, :] = mu * rr * a
        basis[3, :, 1, :, 1, :] = c1 * rr * a
        basis[4, :, 0, :, 1, :] = -(lam + mu) * rr
        basis[4, :, 1, :, 0, :] = -(lam + mu) * rr
        const = np.zeros((2, 9, 2, 9))
        const[0, :, 1, :] = lam * dd + mu * dd.T
        const[1, :, 0, :] = lam * dd.T + mu * dd
        # local dof order: d = 9 c + a  ->  retained 8 c + a (a < 8) first, then the centre x, y
        order = np.concatenate([np.arange(8), 9 + np.arange(8), [8, 17]])
        basis = basis.reshape(5 * nq, 18, 18)[:, order][:, :, order]
        self._ke_basis = np.ascontiguousarray(basis.reshape(5 * nq, 324))
        self._ke_const = const.reshape(18, 18)[order][:, order].ravel()

    # --------------------------------------------------------------- per call
    def node_coordinates(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Geometry of the mesh for a profile.

        Args:
            h: (N,) film thickness at x_i [nm].

        Returns:
            x: (2C,) node x-positions [nm] (C = N * refine element columns, periodic),
            y: (2R + 1, 2C) node y-positions [nm] (row 0 = bottom y = -H, last row = surface),
            hp: (N,) surface slope h'(x_i) of the interpolated surface [-].
        """
        h = self._check(h)
        return self._geometry(h)

    def _geometry(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.points
        if self.interpolation == "fourier":
            hh = np.fft.rfft(h)
            hs = np.fft.irfft(hh[None, :] * self._phase, n=n, axis=-1).T.ravel()
            hp = np.fft.irfft(hh * self._ik, n=n)
        else:
            xg = np.arange(n + 1) * (self.length / n)
            spline = CubicSpline(xg, np.append(h, h[0]), bc_type="periodic")
            hs = spline(self._x_nodes)
            hp = spline(xg[:-1], 1)
        hs[self._vertex_cols] = h  # exact at the grid points
        y = self._y_flat[:, None] + hs[None, :] * self._phi[:, None]
        return self._x_nodes, y, hp

    def _check(self, h: np.ndarray) -> np.ndarray:
        h = np.asarray(h)
        if h.shape != (self.points,):
            raise ValueError(f"h must have shape ({self.points},), got {h.shape}")
        if not np.issubdtype(h.dtype, np.number) or np.iscomplexobj(h):
            raise ValueError(f"h must be a real array, got dtype {h.dtype}")
        h = h.astype(np.float64, copy=False)
        if not np.all(np.isfinite(h)):
            raise ValueError("h contains non-finite values (NaN or inf)")
        if np.any(h < 0):
            raise UnphysicalState(f"h must be >= 0 (film thickness), minimum is {h.min():.6g}")
        return h

    def _element_gradients(
        self, yel: np.ndarray, dxi: np.ndarray, deta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical shape-function gradients at reference points; x-mapping is affine (width dx_e)."""
        y_xi = yel @ dxi.T  # (nel, nq)
        y_eta = yel @ deta.T
        a = self._dx_elem
        gy = deta[None, :, :] / y_eta[:, :, None]
        gx = dxi[None, :, :] / a - gy * y_xi[:, :, None] / a
        return gx, gy, a * y_eta

    def _assemble(self, y: np.ndarray) -> sp.csr_matrix:
        """Stiffness matrix of the correction problem (centre nodes condensed) for node heights y (2R+1, 2C)."""
        if self.assembly == "numpy":
            return self._assemble_numpy(y)
        yel = y.ravel()[self._elem_nodes]
        data = np.empty(self._nnz + 1)
        cond = np.empty((yel.shape[0], 2, 16))
        ok = compiled_assembly_kernel()(
            yel, self._dxi, self._deta, self._wq, self._dx_elem, self._lam, self._mu, self._scatter, data, cond
        )
        if not ok:
            raise ValueError("degenerate mesh (non-positive Jacobian); is substrate_depth too small?")
        self._condense = cond
        return sp.csr_matrix((data[: self._nnz], self._indices, self._indptr), shape=(self.ndofs, self.ndofs))

    def _assemble_numpy(self, y: np.ndarray) -> sp.csr_matrix:
        """Vectorised numpy reference of ``_assemble``."""
        yel = y.ravel()[self._elem_nodes]  # (nel, 9)
        y_xi = yel @ self._dxi.T  # (nel, nq)
        y_eta = yel @ self._deta.T
        if np.any(y_eta <= 0):
            raise ValueError("degenerate mesh (non-positive Jacobian); is substrate_depth too small?")
        wq = self._wq
        t = y_xi / y_eta
        scal = np.concatenate([wq * y_eta, wq * y_xi, wq * y_xi * t, wq / y_eta, wq * t], axis=1)
        ke = (scal @ self._ke_basis + self._ke_const).reshape(-1, 18, 18)
        # static condensation of the centre node (local dofs 16, 17): S = Krr - Krc Kcc^-1 Kcr
        a, b, d = ke[:, 16, 16], ke[:, 16, 17], ke[:, 17, 17]
        det_c = a * d - b * b
        i00, i01, i11 = d / det_c, -b / det_c, a / det_c
        cond = np.empty((yel.shape[0], 2, 16))
        cond[:, 0] = i00[:, None] * ke[:, 16, :16] + i01[:, None] * ke[:, 17, :16]
        cond[:, 1] = i01[:, None] * ke[:, 16, :16] + i11[:, None] * ke[:, 17, :16]
        self._condense = cond
        schur = ke[:, :16, :16] - ke[:, :16, 16, None] * cond[:, 0, None, :]
        schur -= ke[:, :16, 17, None] * cond[:, 1, None, :]
        data = np.bincount(self._scatter, weights=schur.ravel(), minlength=self._nnz + 1)[: self._nnz]
        return sp.csr_matrix((data, self._indices, self._indptr), shape=(self.ndofs, self.ndofs))

    def _load(self, hs_surface: np.ndarray) -> np.ndarray:
        """Load vector sigma0 int v_x h' dx of the surface traction, exact for the quadratic edges."""
        ytop = hs_surface[self._edge_cols]  # (C, 3)
        fe = self.sigma0 * (ytop @ self._edge_b.T)
        fx = np.bincount(self._edge_cols.ravel(), weights=fe.ravel(), minlength=self._nx)
        b = np.zeros(self.ndofs)
        b[self._surface_dofs[:, 0]] = fx
        return b

    def _full_field(self, sol: np.ndarray) -> np.ndarray:
        """Nodal correction displacement on the whole lattice, (2R + 1, 2C, 2) [nm], centres recovered."""
        u = np.zeros((self._ny * self._nx, 2))
        if self._condense is None or not np.any(sol):
            return u.reshape(self._ny, self._nx, 2)
        u[self._retained] = sol.reshape(-1, 2)
        ue = np.where(self._ldof >= 0, sol[np.maximum(self._ldof, 0)], 0.0)  # (nel, 16)
        u[self._elem_nodes[:, 8]] = -np.einsum("end,ed->en", self._condense, ue)
        return u.reshape(self._ny, self._nx, 2)

    def _factorize(self, k: sp.csr_matrix) -> None:
        t0 = time.perf_counter()
        # K is symmetric, so its CSR arrays read as CSC describe K as well (no conversion)
        kc = sp.csc_matrix((k.data, k.indices, k.indptr), shape=k.shape)
        self._lu = spla.splu(kc, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        self._h_factor = self._h_current
        self.factorizations += 1
        self.factor_seconds += time.perf_counter() - t0
        self._refresh_next = False

    def _pcg(self, k: sp.csr_matrix, b: np.ndarray, x0: np.ndarray) -> tuple[np.ndarray, int, bool]:
        """Conjugate gradients preconditioned by the stored LU, started at x0.

        Stops when r.M r <= rtol^2 |b.x|: with M ~ K^-1 the left side is the squared energy norm of the error
        and b.x ~ x.K.x the squared energy norm of the solution, so rtol is a relative energy-norm error.
        Gives up (returns ok = False) as soon as the observed contraction rate predicts more than
        ``max_iterations`` iterations, so an unrelated geometry costs only a few wasted iterations.
        """
        lu = self._lu
        tol2 = self.rtol**2
        x = x0.copy()
        r = b - k @ x
        z = lu.solve(r)
        rz = float(r @ z)
        if rz <= tol2 * abs(float(b @ x)):
            return x, 0, True
        rz0 = rz
        p = z.copy()
        for it in range(1, self.max_iterations + 1):
            q = k @ p
            alpha = rz / float(p @ q)
            x += alpha * p
            r -= alpha * q
            z = lu.solve(r)
            rz_new = float(r @ z)
            target = tol2 * abs(float(b @ x))
            if rz_new <= target:
                return x, it, True
            rate = (rz_new / rz0) ** (1.0 / it)  # mean contraction of r.z per iteration
            if rate >= 1.0 or it + np.log(target / rz_new) / np.log(rate) > self.max_iterations:
                return x, it, False
            p = z + (rz_new / rz) * p
            rz = rz_new
        return x, self.max_iterations, False

    def _initial_guess(self) -> np.ndarray | None:
        if self._x_prev is None:
            return None
        if self._x_prev2 is None or not self.extrapolate:
            return self._x_prev
        return 2.0 * self._x_prev - self._x_prev2  # linear extrapolation from the two previous calls

    def _solve(self, k: sp.csr_matrix, b: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        self.last_iterations = 0
        x0 = self._initial_guess()
        x = None
        if not (self.solver == "direct" or self._lu is None or self._refresh_next or x0 is None):
            x, its, ok = self._pcg(k, b, x0)
            self.iterations += its
            self.last_iterations = its
            if ok:
                # refresh the factorisation once a call costs more than the average cost per call since the
                # last factorisation (that call included), which minimises the amortised cost as the
                # iterations creep up. Costs are counted in preconditioned iterations (deterministic, so
                # runs and restarts reproduce bit for bit); a factorisation counts ``factor_cost``.
                cost = its + 1.0
                self._since_cost += cost
                self._since_calls += 1
                if cost > self._since_cost / self._since_calls:
                    self._refresh_next = True
            else:
                logger.debug("PCG would need more than %d iterations; refactorising", self.max_iterations)
                x = None
        if x is None:
            self._factorize(k)
            x = self._lu.solve(b)
            self._since_cost = self.factor_cost + 1.0
            self._since_calls = 1
        self.solve_seconds += time.perf_counter() - t0
        self._x_prev2, self._x_prev = self._x_prev, x
        return x

    # ---------------------------------------------------------------- restart
    def state_dict(self) -> dict[str, Any]:
        """State of the warm-started solver path, for checkpoints (JSON-able values and float64 arrays).

        Restoring it with :meth:`load_state_dict` in a solver built with the same arguments makes the
        following calls reproduce an uninterrupted run bit for bit: the factorisation is rebuilt from the
        profile it was computed for.

        Returns:
            dict with ``h_factor`` ((N,) profile of the current factorisation or None), ``x_prev``,
            ``x_prev2`` (previous solutions or None), ``since_cost``, ``since_calls``, ``refresh_next``
            (refresh rule) and the counters ``calls``, ``factorizations``, ``iterations``.
        """

        def copy(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.array(a, dtype=np.float64, copy=True)

        return {
            "h_factor": copy(self._h_factor),
            "x_prev": copy(self._x_prev),
            "x_prev2": copy(self._x_prev2),
            "since_cost": float(self._since_cost),
            "since_calls": int(self._since_calls),
            "refresh_next": bool(self._refresh_next),
            "calls": int(self.calls),
            "factorizations": int(self.factorizations),
            "iterations": int(self.iterations),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (refactorises for the stored profile).

        Args:
            state: a dict from :meth:`state_dict` of a solver with the same arguments; empty means no-op.

        Raises:
            ValueError: arrays of the wrong size.
        """
        if not state:
            return

        def array(name: str, size: int) -> np.ndarray | None:
            value = state.get(name)
            if value is None:
                return None
            out = np.array(value, dtype=np.float64, copy=True).reshape(-1)
            if out.size != size:
                raise ValueError(f"state {name!r} has {out.size} values, expected {size}")
            return out

        h_factor = array("h_factor", self.points)
        self._x_prev = array("x_prev", self.ndofs)
        self._x_prev2 = array("x_prev2", self.ndofs)
        self._lu = None
        self._h_factor = None
        if h_factor is not None:
            self._h_current = h_factor
            _, y, _ = self._geometry(h_factor)
            self._factorize(self._assemble(y))
        self._since_cost = float(state.get("since_cost", 0.0))
        self._since_calls = int(state.get("since_calls", 0))
        self._refresh_next = bool(state.get("refresh_next", True))
        self.calls = int(state.get("calls", self.calls))
        self.factorizations = int(state.get("factorizations", self.factorizations))
        self.iterations = int(state.get("iterations", self.iterations))

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """Elastic energy density at the surface points.

        Args:
            h: (N,) float64 film thickness [nm] at x_i = i L / N, all >= 0.

        Returns:
            rho: (N,) float64 elastic energy density [eV/nm^3] at (x_i, h(x_i)).

        Raises:
            ValueError: wrong shape, non-finite or negative values.
        """
        t_start = time.perf_counter()
        h = self._check(h)
        _, y, hp = self._geometry(h)
        b = self._load(y[-1])
        if not np.any(b):
            sol = np.zeros(self.ndofs)  # flat film: no load, no correction
            self.last_iterations = 0
        else:
            t0 = time.perf_counter()
            k = self._assemble(y)
            self.assembly_seconds += time.perf_counter() - t0
            self._h_current = np.array(h, copy=True)  # the caller may update h in place
            sol = self._solve(k, b)
        self._last_solution = sol
        self._last_y = y
        if self.recovery == "tangential":
            rho = self._rho_tangential(sol[self._surface_dofs], hp)
        else:
            rho = self._rho_gradient(self._full_field(sol), y)
        self.calls += 1
        self.seconds += time.perf_counter() - t_start
        return rho

    def displacement(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mesh and correction displacement of the latest call (diagnostics, plots).

        Returns:
            x: (2C,) node x-positions [nm]; y: (2R + 1, 2C) node y-positions [nm] (row 0 = bottom);
            u: (2R + 1, 2C, 2) correction displacement u_c [nm] at the nodes (total displacement =
            u_c + (0, c y) for y > 0, c = eps_m / (1 - nu)).

        Raises:
            RuntimeError: before the first call.
        """
        if self._last_solution is None or self._last_y is None:
            raise RuntimeError("no solution yet: call the solver first")
        return self._x_nodes, self._last_y, self._full_field(self._last_solution)

    # --------------------------------------------------------------- recovery
    def _rho_tangential(self, us: np.ndarray, hp: np.ndarray) -> np.ndarray:
        cols = self._vertex_cols
        du = np.zeros((self.points, 2))
        for o, w in zip(self._fd_offsets, self._fd_weights, strict=True):
            du += w * us[(cols + o) % self._nx]
        g = 1.0 + hp**2
        eps_tt = (du[:, 0] + hp * du[:, 1] + self._c_flat * hp**2) / g
        return self.young / (2.0 * (1.0 - self.poisson**2)) * (eps_tt - self.misfit) ** 2

    def _rho_gradient(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        top = np.arange(self._ncol) * self._nrow + (self._nrow - 1)  # element index ec * R + er, er = R - 1
        nodes = self._elem_nodes[top]
        yel = y.ravel()[nodes]
        uel = u.reshape(-1, 2)[nodes]  # (C, 9, 2)
        gx, gy, _ = self._element_gradients(yel, self._dxi_cor, self._deta_cor)  # (C, 2 corners, 9)
        dux = np.einsum("cqa,cak->cqk", gx, uel)  # d u_k / dx
        duy = np.einsum("cqa,cak->cqk", gy, uel)
        # average the left element's right corner and the right element's left corner at each vertex
        exx = 0.5 * (dux[:, 0, 0] + np.roll(dux[:, 1, 0], 1))
        eyy = 0.5 * (duy[:, 0, 1] + np.roll(duy[:, 1, 1], 1))
        exy = 0.25 * (duy[:, 0, 0] + dux[:, 0, 1] + np.roll(duy[:, 1, 0] + dux[:, 1, 1], 1))
        lam, mu = self._lam, self._mu
        sxx = (lam + 2 * mu) * exx + lam * eyy + self.sigma0
        syy = lam * exx + (lam + 2 * mu) * eyy
        sxy = 2 * mu * exy
        pick = np.arange(self.points) * self.refine
        return plane_strain_energy_density(sxx[pick], syy[pick], sxy[pick], self.young, self.poisson)

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict[str, Any]:
        """Counters and timings.

        Returns:
            dict with calls, seconds [s], factorizations, iterations, last_iterations, assembly_seconds,
            factor_seconds, solve_seconds [s], ndofs, nnz, elements (columns, rows), solver.
        """
        return {
            "calls": self.calls,
            "seconds": self.seconds,
            "factorizations": self.factorizations,
            "iterations": self.iterations,
            "last_iterations": self.last_iterations,
            "assembly_seconds": self.assembly_seconds,
            "factor_seconds": self.factor_seconds,
            "solve_seconds": self.solve_seconds,
            "ndofs": self.ndofs,
            "nnz": self._nnz,
            "elements": (self._ncol, self._nrow),
            "solver": self.solver,
        }
