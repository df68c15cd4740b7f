"""Grain growth: the multi-order-parameter phase-field model of Fan & Chen (1997), docs/physics.md §2.

State: order parameters η_q, q = 0..Q−1 (``model.order_parameters`` = Q), field ``eta`` of shape (Q, ny, nx) on a
periodic grid (``grid.lengths = [Lx, Ly]``, ``grid.shape = [nx, ny]``), nondimensional units. A grain is a region
where one η_q ≈ 1 and the others ≈ 0.

    ∂η_q/∂t = −L ( −α η_q + β η_q³ + 2γ η_q Σ_{p≠q} η_p² − κ ∇²η_q )

Time integration (``time.integrator``): ``euler`` is explicit Euler with the periodic 5-point Laplacian, stable for
dt·L·(f''_max + 4κ(1/dx² + 1/dy²)) ≤ 2 (f''_max = 2 for α = β = γ = 1; dx = 2, κ = 2: dt ≤ 1/3); the equation
offers a fused one-pass step kernel (:meth:`GrainGrowthEquation.explicit_step`). ``imex`` is the semi-implicit
Fourier scheme of Chen & Shen (1998): (1 + dt L κ s²) η̂^{n+1} = η̂^n − dt L [∂f0/∂η]^n_k, where s² is the symbol of
minus the same 5-point Laplacian (so IMEX and Euler discretise the same spatial operator); stable for
dt·L·f''_max ≤ 2, accurate for dt ≲ 0.05.

**Many grains, few order parameters: grain tracking with order-parameter reassignment.** With one order parameter
per grain, memory and work grow with the number of grains. Here Q (≈ 10–20) order parameters carry any number of
grains, because an index is shared only by grains that are far apart; two grains on the same index that touched
would coalesce into one (an artefact). Every ``model.reassign_every`` steps (``after_step`` hook) the engine:

1. labels the grains: the periodic 4-connected regions of equal dominant index argmax_q η_q;
2. tracks them: each region takes the label of the previous check's region that it overlaps most (greedy maximum
   overlap), so labels are stable in time (``fields/grain``) and independent of the order-parameter index;
3. finds pairs of grains on the same index closer than the buffer b (``model.reassign_buffer``; bounding circles
   prune the pairs, then the exact periodic distance between boundary points decides);
4. for each such pair (closest first) moves the smaller grain to the index whose nearest grain is farthest away
   (≥ b when one is free; else the larger grain if that frees it): the values of η_old within the halo h
   (``model.reassign_halo``) of the grain, except points of other grains on η_old, are added to η_new and cleared
   from η_old.

The free energy is symmetric under a permutation of the order parameters, so moving a grain whose surroundings
(within h) hold no grain of the target index leaves the dynamics unchanged up to the truncated tail of η beyond h:
the tail decays as exp(−d/ℓ), ℓ = sqrt(κ/(2γ − α)) (1.41 for the defaults), and the defaults b = 10 ℓ, h = b/2
keep it at a few 1e-3, which relaxes away within a few time units (tests/solvers/test_grains.py checks it). Two
grains approach each other only as a grain between them shrinks away, far slower than the check rate (default every
20 steps, 5 time units at dt = 0.25, in which boundaries move ≲ 1 length unit). This is the order-parameter
remapping approach of grain trackers (e.g. Permann et al., Comput. Mater. Sci. 115, 18 (2016), MOOSE's GrainTracker),
chosen over sparse storage of the locally active order parameters (Vedantam & Patnaik, Phys. Rev. E 73, 016703
(2006)) because the state stays a dense (Q, ny, nx) array: the fused stencil kernel, the IMEX FFTs and the
torch/CUDA path stay plain vectorised array code, and the bookkeeping (≈ 10–15 ms per check at 512², Q = 12, 1000
grains) costs a small fraction of the steps between checks. Everything the hooks need is in the state
(``grain_track``: the last tracked label map, ``grain_next``: the next unused label), so checkpoints and restarts
stay exact and the hooks are deterministic.

The initial Voronoi structure is coloured greedily in smallest-last order of the grain adjacency graph: each grain
takes the index whose nearest already-coloured grain is farthest away (balance of index use breaks ties), so touching
grains never share an index (guaranteed for Q ≥ 7) and same-index grains start as far apart as Q allows.

Outputs: ``fields/grain`` (F, ny, nx) int32 stable labels (default output), ``fields/eta`` when asked
(``output.fields = ["grain", "eta"]``), table ``grains`` (step, time, count, mean_area, mean_radius, area_radius)
and table ``grain_areas`` (step, time, label, area) per frame; :func:`hybrid.analysis.grain_plots.plot_grain_growth`
plots them.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numba
import numpy as np

from hybrid.analysis.grain_plots import plot_grain_growth
from hybrid.analysis.grain_statistics import frame_tables
from hybrid.core.backend import Array, to_numpy
from hybrid.core.config import ConfigError, Option, Table, Tagged
from hybrid.core.grid import Grid
from hybrid.core.registry import Context, ModelSpec, register_model
from hybrid.core.state import State
from hybrid.solvers.graingrowth_kernels import make_graingrowth_rhs, make_graingrowth_step
from hybrid.solvers.grains import (
    GrainGeometry,
    close_pairs,
    component_overlaps,
    dominant_index,
    label_components,
    nearest_by_index,
    same_index_conflicts,
    track_labels,
)

log = logging.getLogger(__name__)

_CMIN, _CMAX = 1e-6, 1e6  # nondimensional coefficients are of order 1; far outside that, a slip


PARAMS = Table(
    {
        "alpha": Option(
            "float", 1.0, "α, coefficient of −α/2 η² in the bulk free energy [energy density]", min=_CMIN, max=_CMAX
        ),
        "beta": Option("float", 1.0, "β, coefficient of β/4 η⁴ [energy density]", min=_CMIN, max=_CMAX),
        "gamma": Option(
            "float",
            1.0,
            "γ, pair coupling γ η_i² η_j² (j > i) [energy density]; 1.5: symmetric Moelans boundary",
            min=_CMIN,
            max=_CMAX,
        ),
        "kappa": Option(
            "float", 2.0, "κ, gradient energy coefficient [energy density · length²]", min=_CMIN, max=_CMAX
        ),
        "mobility": Option("float", 1.0, "L, Allen–Cahn mobility [1/(energy density · time)]", min=_CMIN, max=_CMAX),
        "order_parameters": Option(
            "int", 16, "Q, number of order parameters (fields of eta); grains share them", min=2, max=1024
        ),
        "reassign": Option(
            "bool",
            True,
            "move grains to other order parameters so that same-index grains never "
            "meet (false: fixed indices, labels are still tracked)",
        ),
        "reassign_every": Option("int", 20, "steps between grain tracking / reassignment checks", min=1),
        "reassign_buffer": Option(
            "float",
            None,
            "b, same-index grains closer than b are separated [length] "
            "(default 10 ℓ, ℓ = sqrt(κ/(2γ − α)) the decay length of an η tail)",
            min=0.0,
            min_exclusive=True,
            max=1e9,
        ),
        "reassign_halo": Option(
            "float",
            None,
            "h, η within h of a moved grain moves with it [length] (default b/2)",
            min=0.0,
            min_exclusive=True,
            max=1e9,
        ),
    },
    doc="Fan–Chen multi-order-parameter grain growth (docs/physics.md §2), nondimensional units",
)

INITIAL = Tagged(
    "kind",
    {
        "voronoi": Table(
            {
                "grains": Option(
                    "int", 1000, "number of grains (Voronoi cells of random seeds; at most nx·ny / 4)", min=1, max=2**26
                )
            },
            doc="periodic Voronoi tessellation of seeds drawn from the case seed",
        ),
        "circle": Table(
            {
                "radius": Option(
                    "float", doc="radius of the circular grain [length]", min=0.0, min_exclusive=True, max=1e9
                )
            },
            doc="one circular grain (η_0) centred in the domain inside another grain (η_1)",
        ),
        "file": Table(
            {
                "path": Option(
                    "str",
                    doc=".npy of eta, shape (Q, ny, nx), or a hybrid output .h5 with fields/eta "
                    "(its fields/grain, when present, continues the labels)",
                ),
                "frame": Option("int", -1, "frame of an .h5 output (negative counts from the end)"),
            }
        ),
    },
    default="voronoi",
    doc="initial grain structure",
)


def bulk_curvature(params: Mapping[str, Any]) -> float:
    """f''_max = max(2α, α(2γ/β − 1)): the curvature of the bulk free energy at a grain's equilibrium.

    (Inside grain q, η_q = sqrt(α/β): ∂²f0/∂η_q² = 2α, and ∂²f0/∂η_p² = −α + 2γ α/β for the others; 2 for
    α = β = γ = 1, the value of docs/physics.md §2.)
    """
    a, b, g = float(params["alpha"]), float(params["beta"]), float(params["gamma"])
    return max(2.0 * a, a * (2.0 * g / b - 1.0))


def stability_limit(integrator: str, grid: Grid, params: Mapping[str, Any]) -> tuple[float, str] | None:
    """Largest stable dt of ``euler`` (dt·L·(f''_max + 4κ(1/dx² + 1/dy²)) ≤ 2) and ``imex`` (dt·L·f''_max ≤ 2).

    docs/physics.md §2; ``None`` for other integrators.
    """
    dx, dy = grid.spacing
    m, k, f2 = float(params["mobility"]), float(params["kappa"]), bulk_curvature(params)
    terms = "L = model.mobility, f''_max = max(2α, α(2γ/β − 1)) from model.alpha, model.beta, model.gamma"
    values = f"L = {m:g}, f''_max = {f2:g}"
    if integrator == "euler":
        stiff = f2 + 4.0 * k * (1.0 / dx**2 + 1.0 / dy**2)
        limit = 2.0 / (m * stiff)
        return limit, (
            f"explicit Euler needs dt · L · (f''_max + 4κ(1/dx² + 1/dy²)) ≤ 2, dt ≤ {limit:.4g} with {values}, "
            f"κ = {k:g} ({terms}, κ = model.kappa; docs/physics.md §2); "
            f"time.integrator = 'imex' allows dt ≤ {2.0 / (m * f2):.4g}"
        )
    if integrator == "imex":
        limit = 2.0 / (m * f2)
        return limit, f"IMEX needs dt · L · f''_max ≤ 2, dt ≤ {limit:.4g} with {values} ({terms}; docs/physics.md §2)"
    return None


def tail_length(params: Mapping[str, Any]) -> float:
    """ℓ = sqrt(κ/(2γ − α)) [length]: η of a grain decays as exp(−d/ℓ) inside a neighbouring grain.

    (Linearising the evolution of η_i ≈ 0 where η_j = 1 gives ∂η_i/∂t = −L(2γ − α)η_i + Lκ∇²η_i.) Falls back to
    sqrt(κ/α) when 2γ ≤ α.
    """
    a, g, k = float(params["alpha"]), float(params["gamma"]), float(params["kappa"])
    return math.sqrt(k / (2.0 * g - a)) if 2.0 * g > a else math.sqrt(k / a)


def finalize_params(grid: Grid, params: dict[str, Any]) -> dict[str, Any]:
    """Fill the reassignment defaults b = 10 ℓ and h = b/2 (ℓ from :func:`tail_length`)."""
    out = dict(params)
    if out.get("reassign_buffer") is None:
        out["reassign_buffer"] = round(10.0 * tail_length(out), 6)
    if out.get("reassign_halo") is None:
        out["reassign_halo"] = round(0.5 * out["reassign_buffer"], 6)
    if out["reassign_halo"] > out["reassign_buffer"]:
        raise ConfigError(
            f"reassign_halo = {out['reassign_halo']} must not exceed reassign_buffer = {out['reassign_buffer']}",
            key="model.reassign_halo",
        )
    return out


# ----------------------------------------------------------------------------------------------- initial states


def voronoi_cells(grid: Grid, grains: int, rng: np.random.Generator) -> np.ndarray:
    """A periodic Voronoi tessellation: cell id 0..grains−1 of every grid point, shape (ny, nx) int32.

    Seeds sit on distinct grid points drawn from ``rng``, so every cell holds at least its seed; distances are
    periodic (minimum image). Cells are made 4-connected: a stray piece cut off its cell by the discretisation joins
    the cell it shares the longest border with.
    """
    from scipy.spatial import cKDTree

    ny, nx = grid.shape
    if grains > ny * nx:
        raise ConfigError(f"cannot place {grains} grains on {ny * nx} grid points", key="initial.grains")
    dx, dy = grid.spacing
    pick = rng.choice(ny * nx, size=grains, replace=False)
    seeds = np.column_stack([(pick % nx) * dx, (pick // nx) * dy])
    xs, ys = np.meshgrid(np.arange(nx) * dx, np.arange(ny) * dy)
    tree = cKDTree(seeds, boxsize=[grid.lengths[0], grid.lengths[1]])
    _, cell = tree.query(np.column_stack([xs.ravel(), ys.ravel()]))
    cells = np.asarray(cell, dtype=np.int32).reshape(ny, nx)
    return _merge_strays(cells, grains, pick)


def _merge_strays(cells: np.ndarray, grains: int, seeds: np.ndarray) -> np.ndarray:
    ny, nx = cells.shape
    for _ in range(10):
        comp, n = label_components(cells)
        if n == grains:
            return cells
        seed_comp = comp.ravel()[seeds]
        keep = np.zeros(n, dtype=bool)
        keep[seed_comp] = True
        for c in np.flatnonzero(~keep):
            ys, xs = np.nonzero(comp == c)
            neigh = np.concatenate(
                [cells[(ys + 1) % ny, xs], cells[ys - 1, xs], cells[ys, (xs + 1) % nx], cells[ys, xs - 1]]
            )
            neigh = neigh[neigh != cells[ys[0], xs[0]]]
            cells[ys, xs] = np.bincount(neigh).argmax()
    return cells  # pragma: no cover - stray pieces of stray pieces; never seen


def smallest_last_order(n: int, g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Smallest-last (degeneracy) ordering of a graph with n vertices and edges (g[i], h[i]).

    Colouring greedily in this order gives every vertex at most ``degeneracy`` already-coloured neighbours, so
    degeneracy + 1 colours always suffice (≤ 6 for a periodic planar map of grains, ≤ 5 without periodicity).
    Ties go to the lowest vertex id (deterministic).
    """
    import heapq

    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(g.tolist(), h.tolist(), strict=True):
        adj[a].append(b)
        adj[b].append(a)
    deg = [len(a) for a in adj]
    heap = [(d, v) for v, d in enumerate(deg)]
    heapq.heapify(heap)
    removed = np.zeros(n, dtype=bool)
    order: list[int] = []
    while heap:
        d, v = heapq.heappop(heap)
        if removed[v] or d != deg[v]:
            continue
        removed[v] = True
        order.append(v)
        for w in adj[v]:
            if not removed[w]:
                deg[w] -= 1
                heapq.heappush(heap, (deg[w], w))
    return np.array(order[::-1], dtype=np.int64)


def colour_grains(geo: GrainGeometry, nq: int, buffer: float) -> np.ndarray:
    """Assign order parameters to the grains of a tessellation so that same-index grains are far apart.

    Greedy in smallest-last order of the graph of grains within ``buffer`` of each other: each grain takes the index
    whose nearest already-coloured grain is farthest away (distances capped at 2·buffer; ties go to the least-used
    index, then the lowest). Touching grains always get different indices when Q exceeds the degeneracy of the
    touching graph (Q ≥ 7 suffices for any periodic 2D grain map).

    Args:
        geo: geometry of the grains (the index map inside it is ignored).
        nq: number of order parameters Q.
        buffer: the reassignment buffer b [length].

    Returns:
        (n,) int32 order parameter of each grain.

    Raises:
        ConfigError: Q is too small for touching grains to get different indices.
    """
    n = geo.count
    touch = 1.01 * max(geo.spacing)
    g_arr, h_arr, d_arr = close_pairs(geo, buffer)
    near = d_arr <= touch
    # order by the touching graph (the hard constraint), then by the buffer graph as a tie-break
    order = smallest_last_order(n, g_arr[near], h_arr[near])
    index = np.zeros(n, dtype=np.int32)
    skip = np.ones(n, dtype=np.bool_)
    used = np.zeros(nq, dtype=np.int64)
    tight = 0
    for g in order:
        d = nearest_by_index(geo, int(g), nq, 2.0 * buffer, index=index, skip=skip)
        k = int(np.lexsort((np.arange(nq), used, -d))[0])
        if d[k] <= touch:
            raise ConfigError(
                f"order_parameters = {nq} is too small: grain {g} touches grains of every index; raise it",
                key="model.order_parameters",
            )
        tight += int(d[k] < buffer)
        index[g] = k
        used[k] += 1
        skip[g] = False
    if tight:
        log.warning(
            "initial colouring: %d of %d grains have a same-index grain closer than the buffer %g "
            "(raise order_parameters for more room)",
            tight,
            n,
            buffer,
        )
    return index


def eta_from_cells(cells: np.ndarray, index: np.ndarray, nq: int) -> np.ndarray:
    """Sharp order parameters: η_{index[c]} = 1 on cell c, 0 elsewhere; (Q, ny, nx) float64."""
    ny, nx = cells.shape
    eta = np.zeros((nq, ny, nx))
    idx = index[cells]
    eta[idx, np.arange(ny)[:, None], np.arange(nx)[None, :]] = 1.0
    return eta


def initial_state(ctx: Context, init: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Initial fields from a resolved ``[initial]`` table.

    Returns:
        ``{"eta": (Q, ny, nx) float64, "grain_track": (ny, nx) float64 labels ≥ 1 (integers), "grain_next": (1,)}``.
    """
    grid = ctx.grid
    p = ctx.params
    nq = int(p["order_parameters"])
    ny, nx = grid.shape
    kind = init["kind"]
    labels: np.ndarray | None = None
    if kind == "voronoi":
        if init["grains"] > nx * ny // 4:
            raise ConfigError(
                f"must be at most nx·ny / 4 = {nx * ny // 4} (grains of a few grid points at least)",
                key="initial.grains",
            )
        cells = voronoi_cells(grid, int(init["grains"]), ctx.rng(0))
        geo = GrainGeometry.from_components(cells, int(init["grains"]), np.zeros_like(cells), grid.spacing)
        index = colour_grains(geo, nq, float(p["reassign_buffer"]))
        eta = eta_from_cells(cells, index, nq)
        labels = cells + 1
    elif kind == "circle":
        radius = float(init["radius"])
        if 2 * radius >= min(grid.lengths):
            raise ConfigError(f"radius {radius} does not fit the domain {grid.lengths}", key="initial.radius")
        x, y = grid.coordinates()
        r = np.hypot(x[None, :] - 0.5 * grid.lengths[0], y[:, None] - 0.5 * grid.lengths[1])
        width = math.sqrt(2.0 * p["kappa"] / p["alpha"])
        inside = 0.5 * (1.0 - np.tanh((r - radius) / width))
        eta = np.zeros((nq, ny, nx))
        eta[0] = inside
        eta[1] = 1.0 - inside
    elif kind == "file":
        eta, labels = _load_eta(ctx.resolve_path(init["path"]), int(init["frame"]))
        if eta.shape != (nq, ny, nx):
            raise ConfigError(
                f"eta in {init['path']} has shape {eta.shape}; the case needs (Q, ny, nx) = "
                f"{(nq, ny, nx)} (model.order_parameters, grid.shape reversed)",
                key="initial.path",
            )
    else:  # pragma: no cover - the schema rejects other kinds
        raise ConfigError(f"unknown kind {kind!r}", key="initial.kind")
    comp, n = label_components(dominant_index(eta))
    if labels is None:
        labels, nxt = comp + 1, n + 1
    else:
        labels, nxt = track_labels(comp, n, labels, int(labels.max(initial=0)) + 1)
    return {
        "eta": np.ascontiguousarray(eta, dtype=np.float64),
        "grain_track": labels.astype(np.float64),
        "grain_next": np.array([float(nxt)]),
    }


def _load_eta(path: Path, frame: int) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.exists():
        raise ConfigError(f"file {path} does not exist", key="initial.path")
    if path.suffix == ".npy":
        return np.asarray(np.load(path), dtype=np.float64), None
    import h5py

    with h5py.File(path, "r") as f:
        if "fields/eta" not in f:
            raise ConfigError(
                f'{path} has no dataset fields/eta (save it with output.fields = ["grain", "eta"])', key="initial.path"
            )
        frames = len(f["fields/eta"])
        if not -frames <= frame < frames:
            raise ConfigError(
                f"{path} holds {frames} frames (0..{frames - 1}, or -{frames}..-1), got {frame}", key="initial.frame"
            )
        eta = np.asarray(f["fields/eta"][frame], dtype=np.float64)
        labels = np.asarray(f["fields/grain"][frame]) if "fields/grain" in f else None
    return eta, labels


# ----------------------------------------------------------------------------------------------- reassignment


def _disk_offsets(radius: float, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid offsets (oy, ox) with (oy·dy)² + (ox·dx)² ≤ radius² (int64 arrays)."""
    ry, rx = int(radius / dy), int(radius / dx)
    oy, ox = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    keep = (oy * dy) ** 2 + (ox * dx) ** 2 <= radius**2 + 1e-12
    return oy[keep].astype(np.int64), ox[keep].astype(np.int64)


@numba.njit(cache=True)
def _apply_moves(
    eta: np.ndarray,
    comp: np.ndarray,
    index: np.ndarray,
    targets: np.ndarray,
    news: np.ndarray,
    bstart: np.ndarray,
    by: np.ndarray,
    bx: np.ndarray,
    oy: np.ndarray,
    ox: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Move grain targets[m] from its index to news[m] (in order), in place on eta (Q, ny, nx)."""
    _, ny, nx = eta.shape
    stamp = np.full((ny, nx), -1, dtype=np.int64)
    idx = index.copy()
    for m in range(targets.shape[0]):
        g = targets[m]
        i = idx[g]
        k = news[m]
        for y in range(ny):  # the grain itself
            for x in range(nx):
                if comp[y, x] == g:
                    stamp[y, x] = m
                    eta[k, y, x] += eta[i, y, x]
                    eta[i, y, x] = 0.0
        for b in range(bstart[g], bstart[g + 1]):  # its surroundings within the halo
            for j in range(oy.shape[0]):
                y = (by[b] + oy[j]) % ny
                x = (bx[b] + ox[j]) % nx
                if stamp[y, x] == m:
                    continue
                stamp[y, x] = m
                if idx[comp[y, x]] == i:  # a point of another grain on the same index keeps its η_i
                    continue
                eta[k, y, x] += eta[i, y, x]
                eta[i, y, x] = 0.0
        idx[g] = k


def plan_reassignment(geo: GrainGeometry, nq: int, buffer: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Which grains to move to which order parameter so that no two same-index grains are closer than ``buffer``.

    Conflicting pairs are handled closest first. The smaller grain of a pair (ties: the higher id) moves to the
    index whose nearest grain is farthest (capped at 2·buffer; ties: the least-used index, then the lowest); if no
    index is free within ``buffer`` for it but one is for the larger grain, the larger one moves instead; if neither
    has a free index, the one that gains more distance moves (if any gains). A pair already separated by an earlier
    move is skipped.

    Returns:
        (targets, new_index, unresolved): int64 grain ids and their new indices, in the order to apply them, and
        the number of pairs left closer than ``buffer``.
    """
    g_arr, h_arr, d_arr = same_index_conflicts(geo, buffer)
    if g_arr.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    index = geo.index.copy()
    used = np.bincount(index, minlength=nq).astype(np.int64)
    targets: list[int] = []
    news: list[int] = []
    unresolved = 0
    order_q = np.arange(nq)
    for j in np.argsort(d_arr, kind="stable"):
        g, h = int(g_arr[j]), int(h_arr[j])
        if index[g] != index[h]:
            continue
        a_g, a_h = int(geo.area[g]), int(geo.area[h])
        first, second = (g, h) if (a_g < a_h or (a_g == a_h and g > h)) else (h, g)
        options = []
        for t in (first, second):
            d = nearest_by_index(geo, t, nq, 2.0 * buffer, index=index)
            k = int(np.lexsort((order_q, used, -d))[0])
            options.append((t, k, float(d[k]), float(d[k] - d[index[t]])))
        free = [o for o in options if o[2] >= buffer and o[3] > 0]
        pick = free[0] if free else max(options, key=lambda o: o[3])
        if pick[3] <= 0:
            unresolved += 1
            continue
        t, k = pick[0], pick[1]
        unresolved += int(pick[2] < buffer)
        targets.append(t)
        news.append(k)
        used[index[t]] -= 1
        used[k] += 1
        index[t] = k
    return np.array(targets, dtype=np.int64), np.array(news, dtype=np.int64), unresolved


def reassign(eta: np.ndarray, geo: GrainGeometry, nq: int, buffer: float, halo: float) -> tuple[np.ndarray, int, int]:
    """Separate same-index grains closer than ``buffer``.

    Args:
        eta: (Q, ny, nx) order parameters (numpy; not modified).
        geo: grain geometry of ``eta`` (components of its dominant index).
        nq: Q.
        buffer: b [length].
        halo: h [length], η within h of a moved grain moves with it.

    Returns:
        (eta after the moves — the same array if nothing moved —, number of grains moved, number of pairs left
        closer than ``buffer`` because no order parameter was free).
    """
    targets, news, unresolved = plan_reassignment(geo, nq, buffer)
    if targets.size == 0:
        return eta, 0, unresolved
    out = np.array(eta, dtype=np.float64, copy=True, order="C")
    oy, ox = _disk_offsets(halo, *geo.spacing)
    _apply_moves(out, geo.components, geo.index, targets, news, geo.bstart, geo.by, geo.bx, oy, ox)
    log.debug("moved %d grain(s) to other order parameters", targets.size)
    return out, int(targets.size), unresolved


def align_reassigned(
    reference: np.ndarray, other: np.ndarray, spacing: tuple[float, ...], halo: float
) -> tuple[np.ndarray, int]:
    """``reference`` with its grains moved to the order parameters they occupy in ``other`` (undoes reassignment).

    Two states that evolved from one start through different windows (an NN jump and the DNS steps it replaces)
    hold the same microstructure on possibly different indices: the reassignment hook moves a grain to another
    order parameter whenever it runs, and it runs at different steps in the two windows. Compared index by index,
    one moved grain reads as an error of twice its η, however well its boundaries agree. This moves every grain of
    ``reference`` that is matched in ``other`` but sits on another index there, with the same halo rule as
    :func:`reassign`, so that an index-by-index difference measures the microstructure only.

    A grain of ``reference`` (a component of its dominant index) moves only when it and a grain of ``other`` are
    each other's largest overlap and cover at least half of each other, and when no grain touching it in
    ``reference`` already holds the target index (such a move could never come from the hook, whose buffer keeps
    same-index grains apart). A grain that vanished, merged or split in ``other`` therefore stays where it is and
    its error counts in full.

    Args:
        reference: (Q, ny, nx) order parameters to align (not modified).
        other: (Q, ny, nx) order parameters whose index assignment is taken.
        spacing: (dx, dy) [length].
        halo: h [length] of :func:`reassign` (``model.reassign_halo``).

    Returns:
        (aligned copy of ``reference`` — ``reference`` itself when nothing moves —, number of grains moved).
    """
    ref = np.asarray(reference, dtype=np.float64)
    idx_r = dominant_index(ref)
    comp_r, n_r = label_components(idx_r)
    idx_o = dominant_index(np.asarray(other, dtype=np.float64))
    comp_o, n_o = label_components(idx_o)
    r_of, o_of, overlap, best_o, best_r = component_overlaps(comp_r, n_r, comp_o, n_o)
    area_r = np.bincount(comp_r.ravel(), minlength=n_r)
    area_o = np.bincount(comp_o.ravel(), minlength=n_o)
    grain_index_r = np.zeros(n_r, np.int64)
    grain_index_r[comp_r.ravel()] = idx_r.ravel()
    grain_index_o = np.zeros(n_o, np.int64)
    grain_index_o[comp_o.ravel()] = idx_o.ravel()
    # indices held by the touching neighbours of each reference grain (4-neighbours, periodic)
    touching: dict[int, set[int]] = {}
    for axis in (0, 1):
        a, b = comp_r.ravel(), np.roll(comp_r, -1, axis=axis).ravel()
        diff = a != b
        for g, h in {(int(x), int(y)) for x, y in zip(a[diff], b[diff], strict=True)}:
            touching.setdefault(g, set()).add(int(grain_index_r[h]))
            touching.setdefault(h, set()).add(int(grain_index_r[g]))
    overlap_of = dict(zip(zip(r_of.tolist(), o_of.tolist(), strict=True), overlap.tolist(), strict=True))
    targets: list[int] = []
    news: list[int] = []
    for g in range(n_r):
        o = int(best_o[g])
        if o < 0 or best_r[o] != g:
            continue
        k = int(grain_index_o[o])
        if k == grain_index_r[g] or k in touching.get(g, set()):
            continue
        shared = overlap_of[(g, o)]
        if 2 * shared < area_r[g] or 2 * shared < area_o[o]:
            continue
        targets.append(g)
        news.append(k)
    if not targets:
        return reference, 0
    out = np.array(ref, dtype=np.float64, copy=True, order="C")
    geo = GrainGeometry.from_components(comp_r, n_r, idx_r, spacing)
    oy, ox = _disk_offsets(halo, *geo.spacing)
    _apply_moves(out, geo.components, geo.index, np.array(targets), np.array(news), geo.bstart, geo.by, geo.bx, oy, ox)
    return out, len(targets)


def implausible_jump_events(
    start: np.ndarray, jumped: np.ndarray, cell_area: float, min_area: float
) -> tuple[int, int]:
    """Topology changes of a jump that no Allen–Cahn window of its length can make: (vanished, merged) grains.

    A grain shrinks at most at the rate of an isolated circular grain, dA/dt = −2πLκ (von Neumann–Mullins: an
    n-sided grain at (6 − n)/6 of it), so in a window of time τ no grain larger than 2πLκτ can vanish; and two
    grains on one order parameter never meet in the DNS, whose reassignment hook keeps them a buffer apart, but
    can in an NN jump (no hook inside it) once a grain between them is gone. Counted over the grains of ``start``
    larger than ``min_area``:

    - vanished: no point of the grain's region holds its index in ``jumped``;
    - merged: two such grains whose largest same-index overlap in ``jumped`` is one and the same grain.

    Args:
        start, jumped: (Q, ny, nx) order parameters before and after the jump.
        cell_area: dx·dy [length²].
        min_area: the smallest grain area checked [length²] (a multiple of 2πLκτ).
    """
    idx_s = dominant_index(start)
    comp_s, n_s = label_components(idx_s)
    idx_j = dominant_index(jumped)
    comp_j, n_j = label_components(idx_j)
    area_s = np.bincount(comp_s.ravel(), minlength=n_s) * cell_area
    big = area_s > min_area
    same = (idx_s == idx_j) & big[comp_s]  # points of a large grain that keep its index
    best = component_overlaps(comp_s, n_s, np.where(same, comp_j, -1), n_j)[3]
    vanished = int(np.count_nonzero(big & (best < 0)))
    kept = best[big & (best >= 0)]
    merged = int(kept.size - np.unique(kept).size)
    return vanished, merged


# ----------------------------------------------------------------------------------------------- the equation


TAIL_FLUSH = 1e-100
"""|η| below this is set to 0 at every tracking check (see :func:`_flush_tails`)."""


def _flush_tails(eta: Array) -> Array:
    """η with |η| < TAIL_FLUSH set to exactly 0 (in place).

    Far from its grains an order parameter decays exponentially; over thousands of steps the far tails sink into
    subnormal floats, on which every arithmetic operation is ~100× slower (a 128² step went from 0.21 to 1.4 ms by
    step 12000). Values below 1e-100 carry nothing physical; zeroed every ``reassign_every`` steps, the tails that
    spread back from 1e-100 in between stay far above the subnormal range (~1e-308).
    """
    if isinstance(eta, np.ndarray):
        if not eta.flags.c_contiguous:
            eta = np.ascontiguousarray(eta)
        _flush_numba(eta.reshape(-1), TAIL_FLUSH)
        return eta
    return eta.masked_fill_(eta.abs() < TAIL_FLUSH, 0.0)


@numba.njit(parallel=True, cache=True)
def _flush_numba(flat: np.ndarray, tiny: float) -> None:  # pragma: no cover - compiled
    for i in numba.prange(flat.size):
        if abs(flat[i]) < tiny:
            flat[i] = 0.0


def _free_refcount() -> int:
    """sys.getrefcount of an array referenced by one local variable only (interpreter-dependent, so measured)."""
    spare = np.empty(0)
    return sys.getrefcount(spare)


_FREE_REFS = _free_refcount()


class GrainGrowthEquation:
    """The Fan–Chen model as an :class:`hybrid.core.equation.Equation` (field ``eta``, no terms).

    Extra state fields carried (not evolved): ``grain_track`` (ny, nx) float64 — the labels of the last tracking
    step, integers ≥ 1 — and ``grain_next`` (1,) — the next unused label.

    Attributes:
        reassignments: number of grains moved to another order parameter so far (this process).
        unresolved: number of (check, pair) cases so far where two same-index grains stayed closer than the buffer
            because no order parameter was free (this process; a warning is logged the first time).
    """

    evolved_fields = ("eta",)
    default_output_fields = ("grain",)

    def __init__(self, ctx: Context, terms: Mapping[str, Any]) -> None:
        self.grid = ctx.grid
        self.backend = ctx.backend
        self.terms = dict(terms)
        p = self.params = dict(ctx.params)
        if self.grid.ndim != 2:
            raise ValueError("graingrowth needs a 2D grid")
        self.nq = int(p["order_parameters"])
        dx, dy = self.grid.spacing
        self._args = (
            float(dx),
            float(dy),
            float(p["mobility"]),
            float(p["alpha"]),
            float(p["beta"]),
            float(p["gamma"]),
            float(p["kappa"]),
        )
        self._rhs = make_graingrowth_rhs(ctx.backend.name)
        self._step = make_graingrowth_step(ctx.backend.name)
        s2 = self.grid.rfft_difference_symbol()
        self._symbol = ctx.backend.constant(-p["mobility"] * p["kappa"] * s2)
        self.every = int(p["reassign_every"])
        self.do_reassign = bool(p["reassign"])
        self.buffer = float(p["reassign_buffer"])
        self.halo = float(p["reassign_halo"])
        self.cell_area = float(dx * dy)
        self.reassignments = 0
        self.unresolved = 0
        self._spare: dict[str, np.ndarray | None] = {"step": None, "rhs": None}
        # bounds of a sound state, checked by the run loop with its NaN/inf guard: the order parameters relax to
        # the minima 0 and η* = sqrt(α/β) of f0 (η* = 1 by default) and overshoot them by a few 1e-3 at triple
        # junctions; η below −η*/2 or above 1.5 η* is only reached by an unstable step, whose grid-scale modes
        # then grow geometrically (to 1e224 and overflow), so the run stops there, while the values are finite
        eta_star = math.sqrt(float(p["alpha"]) / float(p["beta"]))
        self.state_bounds: dict[str, tuple[float, float]] = {"eta": (-0.5 * eta_star, 1.5 * eta_star)}

    # -- buffers: reuse an output array of an earlier call when nothing else references it any more (saves the
    #    page faults of a fresh 2·Q·ny·nx·8-byte allocation per step; the numbers are unchanged)
    def _buffer(self, slot: str, like: np.ndarray) -> np.ndarray:
        spare = self._spare[slot]
        self._spare[slot] = None
        # as many references as an array held by one local variable only: nobody else can see it any more
        if spare is not None and spare.shape == like.shape and sys.getrefcount(spare) <= _FREE_REFS:
            return spare
        return np.empty_like(like)

    def rhs(self, state: State) -> dict[str, Array]:
        """dη/dt [1/time], shape (Q, ny, nx), on the state's backend."""
        eta = state["eta"]
        if self.backend.is_torch:
            return {"eta": self._rhs(eta, *self._args)}
        out = self._rhs(eta, *self._args, out=self._buffer("rhs", eta))
        self._spare["rhs"] = out
        return {"eta": out}

    def explicit_step(self, state: State, dt: float) -> dict[str, Array]:
        """One fused explicit Euler step: every field of the state, ``eta`` advanced to η + dt·dη/dt.

        Same result as ``eta + dt * rhs(state)["eta"]`` (to round-off) with one pass over memory.
        """
        eta = state["eta"]
        fields = dict(state.fields)
        if self.backend.is_torch:
            fields["eta"] = self._step(eta, dt, *self._args)
            return fields
        fields["eta"] = self._step(eta, dt, *self._args, out=self._buffer("step", eta))
        self._spare["step"] = eta  # free for reuse once the caller drops the old state
        return fields

    def linear_symbol(self, field: str) -> Array | None:
        """−L κ s² on the rfft layout (ny, nx//2 + 1), broadcast over the Q order parameters."""
        return self._symbol if field == "eta" else None

    # -- hooks called by the Simulation
    def _track(self, state: State) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, int]:
        eta = to_numpy(state["eta"])
        idx = dominant_index(eta)
        comp, n = label_components(idx)
        prev = to_numpy(state["grain_track"])
        nxt = int(to_numpy(state["grain_next"])[0])
        labels, nxt = track_labels(comp, n, prev, nxt)
        return labels, nxt, comp, idx, n

    def after_step(self, state: State) -> State:
        """Every ``reassign_every`` steps: track the grain labels and separate same-index grains (deterministic)."""
        if state.step % self.every:
            return state
        be = state.backend
        fields = dict(state.fields)
        fields["eta"] = _flush_tails(state["eta"])
        state = State(fields, state.time, state.step, be)
        labels, nxt, comp, idx, n = self._track(state)
        if self.do_reassign:
            geo = GrainGeometry.from_components(comp, n, idx, self.grid.spacing)
            eta = to_numpy(state["eta"])
            new, moved, unresolved = reassign(eta, geo, self.nq, self.buffer, self.halo)
            if moved:
                self.reassignments += moved
                fields["eta"] = be.asarray(new)
            if unresolved:
                if not self.unresolved:
                    log.warning(
                        "step %d: %d pair(s) of grains on one order parameter are closer than the buffer "
                        "%g and no order parameter is free for them (they may coalesce if they meet); "
                        "raise model.order_parameters (reported once)",
                        state.step,
                        unresolved,
                        self.buffer,
                    )
                self.unresolved += unresolved
        fields["grain_track"] = be.asarray(labels.astype(np.float64))
        fields["grain_next"] = be.asarray(np.array([float(nxt)]))
        return State(fields, state.time, state.step, be)

    def jump_events(self, start: Array, jumped: Array, horizon: float) -> tuple[int, int]:
        """(vanished, merged) grains of a jump over ``horizon`` [time] that the dynamics cannot produce: grains
        larger than twice the area an isolated circle loses in that time, 2·2πLκτ (:func:`implausible_jump_events`)."""
        bound = 2.0 * 2.0 * math.pi * float(self.params["mobility"]) * float(self.params["kappa"]) * horizon
        return implausible_jump_events(to_numpy(start), to_numpy(jumped), self.cell_area, bound)

    def align_indices(self, reference: Array, other: Array) -> np.ndarray:
        """``reference`` η (Q, ny, nx) with its grains on the indices they hold in ``other`` (numpy; see
        :func:`align_reassigned`): what a surrogate audit compares, so that a grain the reassignment hook moved in
        one window and not in the other does not read as an error."""
        aligned, _ = align_reassigned(to_numpy(reference), to_numpy(other), self.grid.spacing, self.halo)
        return np.asarray(aligned)

    def frame_output(self, state: State) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """``{"grain": (ny, nx) int32 labels}`` and the rows of tables ``grains`` and ``grain_areas``."""
        if state.step % self.every == 0:  # after_step has just tracked this state
            labels = to_numpy(state["grain_track"]).astype(np.int32)
        else:
            labels = self._track(state)[0]
        tables = frame_tables(state.step, state.time, labels, self.cell_area)
        return {"grain": labels}, {k: dict(v) for k, v in tables.items()}


register_model(
    ModelSpec(
        name="graingrowth",
        build=GrainGrowthEquation,
        params=PARAMS,
        initial=INITIAL,
        initial_state=initial_state,
        terms={},
        units={"eta": "1", "grain": "1", "x": "grid unit", "y": "grid unit", "time": "time unit"},
        step_quantum="reassign_every",
        finalize_params=finalize_params,
        stability_limit=stability_limit,
        grid_ndim=2,
        plot=plot_grain_growth,
        doc="multi-order-parameter (Fan–Chen) grain growth, grain tracking, index reassignment (docs/physics.md §2)",
    )
)
