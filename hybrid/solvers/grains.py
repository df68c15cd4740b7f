"""Grains of the multi-order-parameter grain-growth model: labels, tracking and geometry (what the DNS's order-parameter
reassignment needs).

A *grain* at one instant is a periodic 4-connected region of grid points that share the same dominant order
parameter ``argmax_q η_q`` (:func:`dominant_index`, :func:`label_components`). Grains get integer labels ≥ 1 that
are stable over time: :func:`track_labels` matches the regions of a new frame to the labels of the previous one by
pixel overlap (a greedy maximum-overlap matching, largest overlaps first), so a grain keeps its label while it
moves, shrinks or grows, and also when the model moves it to another order parameter (the label map does not see
order-parameter indices). A region that overlaps no unclaimed old label (a piece split off a grain) gets a fresh
label from a counter that only grows, so a label is never reused.

:class:`GrainGeometry` collects what order-parameter reassignment needs (area, periodic centroid, bounding radius,
boundary points) and :func:`min_distance` / :func:`nearest_by_index` measure periodic gaps between grains.

Statistics, the growth-law fit and plots are post-processing: :mod:`hybrid.analysis.grain_statistics`,
:mod:`hybrid.analysis.grain_plots`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- labelling


def dominant_index(eta: np.ndarray) -> np.ndarray:
    """The dominant order parameter ``argmax_q η_q`` at each point.

    Args:
        eta: order parameters, shape (Q, ny, nx) (numpy; move torch tensors to the CPU first).

    Returns:
        (ny, nx) int32 in 0..Q−1 (ties go to the lowest index).
    """
    eta = np.ascontiguousarray(eta, dtype=np.float64)
    out = np.empty(eta.shape[1:], dtype=np.int32)
    _argmax_q(eta, out)
    return out


@numba.njit(parallel=True, cache=True)
def _argmax_q(eta: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    nq, ny, nx = eta.shape
    for y in numba.prange(ny):
        best = eta[0, y].copy()
        o = out[y]
        o[:] = 0
        for q in range(1, nq):
            row = eta[q, y]
            for x in range(nx):
                if row[x] > best[x]:
                    best[x] = row[x]
                    o[x] = q


@numba.njit(cache=True)
def _find(parent: np.ndarray, i: int) -> int:  # pragma: no cover - compiled
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True)
def _label_periodic(values: np.ndarray) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    ny, nx = values.shape
    n = ny * nx
    parent = np.arange(n)
    flat = values.ravel()
    for y in range(ny):
        for x in range(nx):
            p = y * nx + x
            v = flat[p]
            for q in (y * nx + (x + 1) % nx, ((y + 1) % ny) * nx + x):
                if flat[q] == v:
                    a = _find(parent, p)
                    b = _find(parent, q)
                    if a < b:
                        parent[b] = a
                    elif b < a:
                        parent[a] = b
    out = np.empty(n, dtype=np.int32)
    ids = np.full(n, -1, dtype=np.int32)
    count = 0
    for p in range(n):
        r = _find(parent, p)
        if ids[r] < 0:
            ids[r] = count
            count += 1
        out[p] = ids[r]
    return out.reshape(ny, nx), count


def label_components(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Periodic 4-connected components of equal values.

    Args:
        values: integer map, shape (ny, nx); the grid is periodic in both directions.

    Returns:
        (components, n): components (ny, nx) int32 in 0..n−1, numbered in raster order of each component's first
        point (deterministic), and the number of components n.
    """
    values = np.ascontiguousarray(values)
    if values.dtype.kind not in "iu":
        values = values.astype(np.int64)
    comp, n = _label_periodic(values)
    return comp, int(n)


def track_labels(components: np.ndarray, count: int, previous: np.ndarray, next_label: int) -> tuple[np.ndarray, int]:
    """Give the components of a new frame the labels of the previous frame by maximum pixel overlap.

    Pairs (component, old label) are taken in decreasing overlap (ties: lower component, then lower label); a pair
    is accepted when neither side is taken yet. Components left over get fresh labels ``next_label, …`` in
    component order. Deterministic.

    Args:
        components: (ny, nx) int32 component ids 0..count−1 of the new frame (:func:`label_components`).
        count: number of components.
        previous: (ny, nx) integer labels of the previous frame (≥ 1; 0 = unlabelled, never matched).
        next_label: smallest label never used so far.

    Returns:
        (labels, next_label): (ny, nx) int32 labels ≥ 1 and the updated counter.
    """
    comp = np.ascontiguousarray(components).ravel()
    prev = np.ascontiguousarray(previous).ravel()
    nprev = int(prev.max(initial=0)) + 1
    c_of, p_of, overlap = _overlaps(comp, prev, nprev)
    order = np.lexsort((p_of, c_of, -overlap))
    new_of = _greedy_match(c_of[order], p_of[order], count, nprev)
    free = np.flatnonzero(new_of == 0)
    new_of[free] = np.arange(next_label, next_label + free.size)
    next_label = max(next_label + int(free.size), nprev)
    return new_of.astype(np.int32)[np.asarray(components)], int(next_label)


def component_overlaps(
    a: np.ndarray, n_a: int, b: np.ndarray, n_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel overlaps of two component maps and each side's largest-overlap partner.

    Args:
        a, b: (ny, nx) integer maps, components 0..n_a−1 and 0..n_b−1; points of ``b`` below 0 are left out.
        n_a, n_b: numbers of components.

    Returns:
        (a_of, b_of, overlap, best_b, best_a): the distinct overlapping pairs and their pixel counts (int64, sorted
        by pair), the component of ``b`` that overlaps each component of ``a`` most ((n_a,), −1: none) and the
        converse ((n_b,)); ties go to the higher partner id.
    """
    a_of, b1, overlap = _overlaps(
        np.ascontiguousarray(a, dtype=np.int64).ravel(), np.ascontiguousarray(b, dtype=np.int64).ravel() + 1, n_b + 1
    )
    b_of = b1 - 1

    def best(group: np.ndarray, partner: np.ndarray, n: int) -> np.ndarray:
        out = np.full(n, -1, np.int64)
        if group.size:
            order = np.lexsort((partner, overlap, group))  # per group, ascending overlap: its best is last
            g = group[order]
            last = np.r_[g[1:] != g[:-1], True]
            out[g[last]] = partner[order][last]
        return out

    return a_of, b_of, overlap, best(a_of, b_of, n_a), best(b_of, a_of, n_b)


@numba.njit(cache=True)
def _overlaps(comp: np.ndarray, prev: np.ndarray, nprev: int) -> tuple:  # pragma: no cover - compiled
    """Distinct (component, previous label ≥ 1) pairs of two flat label maps and their pixel counts."""
    n = comp.shape[0]
    keys = np.empty(n, dtype=np.int64)
    weight = np.empty(n, dtype=np.int64)
    m = 0
    last = np.int64(-1)
    for i in range(n):  # run-length encode: neighbours along a row mostly form the same pair
        key = np.int64(comp[i]) * nprev + np.int64(prev[i])
        if key == last:
            weight[m - 1] += 1
        else:
            keys[m] = key
            weight[m] = 1
            m += 1
            last = key
    order = np.argsort(keys[:m])
    c_out = np.empty(m, dtype=np.int64)
    p_out = np.empty(m, dtype=np.int64)
    w_out = np.empty(m, dtype=np.int64)
    u = -1
    last = np.int64(-1)
    for j in range(m):
        key = keys[order[j]]
        if key != last:
            u += 1
            c_out[u] = key // nprev
            p_out[u] = key % nprev
            w_out[u] = 0
            last = key
        w_out[u] += weight[order[j]]
    keep = p_out[: u + 1] > 0
    return c_out[: u + 1][keep], p_out[: u + 1][keep], w_out[: u + 1][keep]


@numba.njit(cache=True)
def _greedy_match(comps: np.ndarray, labels: np.ndarray, count: int, nlabels: int) -> np.ndarray:  # pragma: no cover
    out = np.zeros(count, dtype=np.int64)
    used = np.zeros(nlabels, dtype=np.bool_)
    for k in range(comps.shape[0]):
        c = comps[k]
        p = labels[k]
        if out[c] == 0 and not used[p]:
            out[c] = p
            used[p] = True
    return out


def relabel_from_eta(
    eta: np.ndarray, previous: np.ndarray | None = None, next_label: int = 1
) -> tuple[np.ndarray, int]:
    """Grain labels of a frame: components of :func:`dominant_index`, tracked from ``previous`` when given.

    Args:
        eta: (Q, ny, nx) order parameters (numpy).
        previous: (ny, nx) labels of the previous frame, or None for fresh labels 1..n in raster order.
        next_label: smallest label never used (ignored without ``previous``).

    Returns:
        (labels (ny, nx) int32, next_label).
    """
    comp, n = label_components(dominant_index(eta))
    if previous is None:
        return (comp + 1).astype(np.int32), n + 1
    return track_labels(comp, n, previous, next_label)


# ----------------------------------------------------------------------------------------------- geometry


@dataclass
class GrainGeometry:
    """Geometry of the grains (components) of one frame, for distance queries on the periodic grid.

    Attributes:
        components: (ny, nx) int32 component id of every point.
        count: number of grains n.
        index: (n,) int32 dominant order parameter of each grain.
        area: (n,) int64 number of grid points of each grain.
        centre: (n, 2) float64 periodic centroid (y, x) [grid points] (circular mean per axis).
        radius: (n,) float64 bounding radius [length]: every point of the grain lies within it of the centroid
            (inf when the grain spans more than a quarter of the domain, so that no distance test skips it).
        bstart: (n + 1,) int64 offsets into ``by``/``bx`` of each grain's boundary points.
        by, bx: int32 coordinates of the boundary points (points with a 4-neighbour in another grain).
        spacing: (dx, dy) [length].
    """

    components: np.ndarray
    count: int
    index: np.ndarray
    area: np.ndarray
    centre: np.ndarray
    radius: np.ndarray
    bstart: np.ndarray
    by: np.ndarray
    bx: np.ndarray
    spacing: tuple[float, float]

    @classmethod
    def from_components(
        cls, components: np.ndarray, count: int, index_map: np.ndarray, spacing: tuple[float, ...]
    ) -> GrainGeometry:
        """Build from a component map (:func:`label_components`) and the dominant-index map, both (ny, nx)."""
        comp = np.ascontiguousarray(components, dtype=np.int32)
        idx = np.ascontiguousarray(index_map, dtype=np.int32)
        if comp.ndim != 2 or idx.shape != comp.shape:
            raise ValueError(
                f"components and index_map must be (ny, nx) maps of one shape, got {comp.shape} and {idx.shape}"
            )
        dx, dy = float(spacing[0]), float(spacing[1])
        index, area, centre, radius, bstart, by, bx = _geometry(comp, int(count), idx, dx, dy)
        return cls(comp, int(count), index, area, centre, radius, bstart, by, bx, (dx, dy))

    def min_distance(self, g: int, h: int) -> float:
        """Smallest periodic distance between points of grains g and h [length] (dx for touching grains)."""
        return float(
            _pair_distance(
                g,
                h,
                self.bstart,
                self.by,
                self.bx,
                self.components.shape[0],
                self.components.shape[1],
                self.spacing[0],
                self.spacing[1],
            )
        )


@numba.njit(cache=True)
def _geometry(comp: np.ndarray, n: int, idx: np.ndarray, dx: float, dy: float) -> tuple:  # pragma: no cover
    ny, nx = comp.shape
    index = np.zeros(n, dtype=np.int32)
    area = np.zeros(n, dtype=np.int64)
    cyc = np.zeros(n)
    cys = np.zeros(n)
    cxc = np.zeros(n)
    cxs = np.zeros(n)
    nb = np.zeros(n, dtype=np.int64)
    isb = np.zeros((ny, nx), dtype=np.bool_)
    wy = 2.0 * np.pi / ny
    wx = 2.0 * np.pi / nx
    cos_y = np.cos(wy * np.arange(ny))
    sin_y = np.sin(wy * np.arange(ny))
    cos_x = np.cos(wx * np.arange(nx))
    sin_x = np.sin(wx * np.arange(nx))
    for y in range(ny):
        for x in range(nx):
            c = comp[y, x]
            index[c] = idx[y, x]
            area[c] += 1
            cyc[c] += cos_y[y]
            cys[c] += sin_y[y]
            cxc[c] += cos_x[x]
            cxs[c] += sin_x[x]
            if comp[(y + 1) % ny, x] != c or comp[y - 1, x] != c or comp[y, (x + 1) % nx] != c or comp[y, x - 1] != c:
                isb[y, x] = True
                nb[c] += 1
    bstart = np.zeros(n + 1, dtype=np.int64)
    for c in range(n):
        bstart[c + 1] = bstart[c] + nb[c]
    fill = bstart[:-1].copy()
    by = np.empty(bstart[n], dtype=np.int32)
    bx = np.empty(bstart[n], dtype=np.int32)
    for y in range(ny):
        for x in range(nx):
            if isb[y, x]:
                c = comp[y, x]
                by[fill[c]] = y
                bx[fill[c]] = x
                fill[c] += 1
    centre = np.empty((n, 2))
    radius = np.zeros(n)
    quarter = 0.25 * min(ny * dy, nx * dx)
    for c in range(n):
        ay = np.arctan2(cys[c], cyc[c]) / wy
        ax = np.arctan2(cxs[c], cxc[c]) / wx
        centre[c, 0] = ay % ny
        centre[c, 1] = ax % nx
        if bstart[c + 1] == bstart[c]:  # a grain without boundary fills the domain
            radius[c] = np.inf
            continue
        r2 = 0.0
        for k in range(bstart[c], bstart[c + 1]):
            ddy = (by[k] - centre[c, 0] + 0.5 * ny) % ny - 0.5 * ny
            ddx = (bx[k] - centre[c, 1] + 0.5 * nx) % nx - 0.5 * nx
            r2 = max(r2, (ddy * dy) ** 2 + (ddx * dx) ** 2)
        r = np.sqrt(r2) + 0.5 * np.sqrt(dx * dx + dy * dy)
        radius[c] = r if r < quarter else np.inf
    return index, area, centre, radius, bstart, by, bx


@numba.njit(cache=True)
def _pair_distance(
    g: int, h: int, bstart: np.ndarray, by: np.ndarray, bx: np.ndarray, ny: int, nx: int, dx: float, dy: float
) -> float:  # pragma: no cover - compiled
    best = np.inf
    for i in range(bstart[g], bstart[g + 1]):
        yi = by[i]
        xi = bx[i]
        for j in range(bstart[h], bstart[h + 1]):
            ddy = abs(by[j] - yi)
            ddx = abs(bx[j] - xi)
            ddy = min(ddy, ny - ddy)
            ddx = min(ddx, nx - ddx)
            d2 = (ddy * dy) ** 2 + (ddx * dx) ** 2
            if d2 < best:
                best = d2
    return np.sqrt(best)


@numba.njit(cache=True)
def _circle_gap(
    g: int, h: int, centre: np.ndarray, radius: np.ndarray, ny: int, nx: int, dx: float, dy: float
) -> float:  # pragma: no cover - compiled
    """Lower bound of the distance between grains g and h from their bounding circles [length]."""
    ddy = abs(centre[g, 0] - centre[h, 0])
    ddx = abs(centre[g, 1] - centre[h, 1])
    ddy = min(ddy, ny - ddy)
    ddx = min(ddx, nx - ddx)
    return np.sqrt((ddy * dy) ** 2 + (ddx * dx) ** 2) - radius[g] - radius[h]


@numba.njit(cache=True)
def _close_pairs(
    index: np.ndarray,
    centre: np.ndarray,
    radius: np.ndarray,
    bstart: np.ndarray,
    by: np.ndarray,
    bx: np.ndarray,
    ny: int,
    nx: int,
    dx: float,
    dy: float,
    buffer: float,
    same_only: bool,
) -> tuple:  # pragma: no cover - compiled
    """All pairs (g < h) of grains (on the same order parameter if ``same_only``) closer than ``buffer``."""
    n = index.shape[0]
    gs = []
    hs = []
    ds = []
    for g in range(n):
        for h in range(g + 1, n):
            if same_only and index[g] != index[h]:
                continue
            if _circle_gap(g, h, centre, radius, ny, nx, dx, dy) >= buffer:
                continue
            d = _pair_distance(g, h, bstart, by, bx, ny, nx, dx, dy)
            if d < buffer:
                gs.append(g)
                hs.append(h)
                ds.append(d)
    return np.array(gs, dtype=np.int64), np.array(hs, dtype=np.int64), np.array(ds, dtype=np.float64)


@numba.njit(cache=True)
def _nearest_by_index(
    g: int,
    nq: int,
    index: np.ndarray,
    centre: np.ndarray,
    radius: np.ndarray,
    bstart: np.ndarray,
    by: np.ndarray,
    bx: np.ndarray,
    ny: int,
    nx: int,
    dx: float,
    dy: float,
    reach: float,
    skip: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Distance from grain g to the nearest grain of each order parameter (capped at ``reach``) [length].

    Grains with ``skip[h]`` (e.g. not yet coloured) and g itself are ignored.
    """
    out = np.full(nq, reach)
    for h in range(index.shape[0]):
        if h == g or skip[h]:
            continue
        k = index[h]
        if _circle_gap(g, h, centre, radius, ny, nx, dx, dy) >= out[k]:
            continue
        d = _pair_distance(g, h, bstart, by, bx, ny, nx, dx, dy)
        if d < out[k]:
            out[k] = d
    return out


def _pairs(geo: GrainGeometry, distance: float, same_index: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ny, nx = geo.components.shape
    return _close_pairs(
        geo.index, geo.centre, geo.radius, geo.bstart, geo.by, geo.bx, ny, nx,
        geo.spacing[0], geo.spacing[1], float(distance), same_index,
    )  # fmt: skip


def same_index_conflicts(geo: GrainGeometry, buffer: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of grains (g, h), g < h, on the same order parameter that are closer than ``buffer`` [length].

    Returns:
        (g, h, distance): int64, int64, float64 arrays of equal length [length].
    """
    return _pairs(geo, buffer, True)


def close_pairs(geo: GrainGeometry, reach: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of grains (g, h), g < h, closer than ``reach`` [length], whatever their order parameters.

    Returns:
        (g, h, distance): int64, int64, float64 arrays of equal length [length].
    """
    return _pairs(geo, reach, False)


def nearest_by_index(
    geo: GrainGeometry, g: int, nq: int, reach: float, index: np.ndarray | None = None, skip: np.ndarray | None = None
) -> np.ndarray:
    """Distance [length] from grain g to the nearest other grain on each of the ``nq`` order parameters.

    Args:
        geo: grain geometry.
        g: grain id.
        nq: number of order parameters Q.
        reach: distances are capped at this value (grains farther away are not measured) [length].
        index: current order parameter of every grain (default ``geo.index``).
        skip: (n,) bool, grains to ignore (default none).

    Returns:
        (nq,) float64 distances, ``reach`` where no grain of that index is nearer.
    """
    ny, nx = geo.components.shape
    idx = geo.index if index is None else index
    sk = np.zeros(geo.count, dtype=np.bool_) if skip is None else skip
    return _nearest_by_index(
        int(g),
        int(nq),
        idx,
        geo.centre,
        geo.radius,
        geo.bstart,
        geo.by,
        geo.bx,
        ny,
        nx,
        geo.spacing[0],
        geo.spacing[1],
        float(reach),
        sk,
    )
