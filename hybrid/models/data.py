"""Training data of a learned term: reading data set files, group splits, bootstrap resampling.

Data set file (HDF5, written by ``hybrid dataset`` or a monitor's capture), with the names of the term's
:class:`~hybrid.models.learnable.DataLayout` (those of ``elastic`` shown)::

    /h        (S, N) float64   the input field, e.g. film profiles [nm] on x_i = i dx
    /rho      (S, N) float64   the DNS label, e.g. the elastic energy density from the FEM [eV/nm^3]
    /rho0     (S,)   float64   the label's physical scale per sample, e.g. E eps_m^2 / (2 (1 - nu^2)) [eV/nm^3]
    /dx       (S,)   float64   grid spacing
    /family   (S,)   str       e.g. "random", "perlin", "trajectory", "captured"
    /group    (S,)   int64     samples of one group (e.g. one ATG trajectory) stay in one split
    attrs: spec (TOML text of the dataset spec), created, hybrid_version

The learning target is the dimensionless ratio label / scale (rho/rho0).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from hybrid.models.features import elastic_features
from hybrid.models.learnable import DataLayout

__all__ = [
    "SPLITS",
    "DataLayout",
    "DatasetError",
    "TermDataset",
    "bootstrap_indices",
    "load_dataset",
    "split_by_group",
    "write_dataset",
]

SPLITS = ("train", "val", "calib", "test")
"""Split names, in the order used everywhere (training, early stopping, calibration, final test)."""


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file and the entry."""


@dataclass
class TermDataset:
    """Inputs, DNS labels and scales of one data set file (numpy, float64).

    Attributes:
        x: (S, N) the input field (``layout.inputs[0]``, e.g. film profiles h [nm]).
        label: (S, N) the DNS value of the term (``layout.target``, e.g. rho [eV/nm^3]).
        scale: (S,) its physical scale (``layout.scale``, e.g. rho0 [eV/nm^3]).
        dx: (S,) grid spacing.
        family: (S,) family names (numpy unicode array).
        group: (S,) int64 group ids.
        spec: TOML text of the dataset spec ("" if absent).
        attrs: all file attributes (str values).
        path: the file read ("" for an in-memory dataset).
        layout: the names of the arrays; they also work as attributes (``ds.h``, ``ds.rho``, ``ds.rho0``).
    """

    x: np.ndarray
    label: np.ndarray
    scale: np.ndarray
    dx: np.ndarray
    family: np.ndarray
    group: np.ndarray
    spec: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    layout: DataLayout = field(default_factory=DataLayout)

    def __getattr__(self, name: str) -> Any:
        layout = self.__dict__.get("layout")
        if layout is not None:
            if name == layout.inputs[0]:
                return self.__dict__["x"]
            if name == layout.target:
                return self.__dict__["label"]
            if name == layout.scale:
                return self.__dict__["scale"]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def points(self) -> int:
        """Grid points N per sample."""
        return int(self.x.shape[1])

    @property
    def target(self) -> np.ndarray:
        """(S, N) label / scale [-], the learning target (rho/rho0)."""
        return self.label / self.scale[:, None]

    def subset(self, index: np.ndarray | Sequence[int]) -> TermDataset:
        """The samples at ``index`` (copies), keeping spec, attrs, path and layout."""
        idx = np.asarray(index, dtype=np.int64)
        return TermDataset(
            self.x[idx], self.label[idx], self.scale[idx], self.dx[idx], self.family[idx], self.group[idx],
            self.spec, dict(self.attrs), self.path, self.layout,
        )  # fmt: skip

    def tensors(
        self, device: str | torch.device = "cpu", chunk: int = 4096, features: Callable[..., Tensor] = elastic_features
    ) -> tuple[Tensor, Tensor]:
        """Network inputs and targets.

        Args:
            device: where to put the tensors.
            chunk: samples per feature evaluation (bounds the temporary memory).
            features: the term's feature function (inputs (B, N) float64, dx (B,)) -> (B, C, N) float32.

        Returns:
            features (S, C, N) float32 (computed in float64) and target label/scale (S, N) float32, on ``device``.
        """
        feats = [
            features(torch.from_numpy(self.x[i : i + chunk]), torch.from_numpy(self.dx[i : i + chunk]))
            for i in range(0, len(self), chunk)
        ]
        x = torch.cat(feats) if feats else torch.zeros(0, 3, self.points)
        y = torch.from_numpy(self.target).to(torch.float32)
        return x.to(device), y.to(device)

    def family_counts(self) -> dict[str, int]:
        """Number of samples per family."""
        names, counts = np.unique(self.family, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}


def _required(layout: DataLayout) -> dict[str, int]:
    return {layout.inputs[0]: 2, layout.target: 2, layout.scale: 1, "dx": 1, "family": 1, "group": 1}


def load_dataset(path: str | os.PathLike[str], layout: DataLayout | None = None) -> TermDataset:
    """Read a data set file (format in the module docstring).

    Args:
        path: HDF5 file.
        layout: names of the term's arrays (default: those of ``elastic``).

    Returns:
        The data set, float64 arrays.

    Raises:
        FileNotFoundError: if the file does not exist.
        DatasetError: for an unreadable file, a missing entry, inconsistent shapes, non-finite values,
            a scale <= 0 or dx <= 0; the message names the file and the entry.
    """
    layout = layout or DataLayout()
    required = _required(layout)
    xname, tname, sname = layout.inputs[0], layout.target, layout.scale
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"{name}: dataset file not found")
    try:
        with h5py.File(name, "r") as fh:
            missing = [key for key in required if key not in fh]
            if missing:
                raise DatasetError(f"{name}: missing dataset entries {missing} (need {sorted(required)})")
            raw = {key: fh[key][()] for key in required}
            attrs = {key: _decode(value) for key, value in fh.attrs.items()}
    except OSError as err:
        raise DatasetError(f"{name}: cannot read as HDF5: {err}") from None
    for key, ndim in required.items():
        if np.ndim(raw[key]) != ndim:
            raise DatasetError(f"{name}: /{key} must be {ndim}-D, got shape {np.shape(raw[key])}")
    s, n = raw[xname].shape
    if raw[tname].shape != (s, n):
        raise DatasetError(f"{name}: /{tname} has shape {raw[tname].shape}, /{xname} has {(s, n)}")
    for key in (sname, "dx", "family", "group"):
        if raw[key].shape != (s,):
            raise DatasetError(f"{name}: /{key} has shape {raw[key].shape}, expected ({s},)")
    data = {key: np.asarray(raw[key], dtype=np.float64) for key in (xname, tname, sname, "dx")}
    for key, value in data.items():
        if not np.all(np.isfinite(value)):
            raise DatasetError(f"{name}: /{key} has non-finite values")
    if np.any(data[sname] <= 0) or np.any(data["dx"] <= 0):
        raise DatasetError(f"{name}: /{sname} and /dx must be > 0")
    family = np.array([_decode(f) for f in raw["family"]], dtype=str)
    group = np.asarray(raw["group"]).astype(np.int64)
    spec = attrs.get("spec", "")
    return TermDataset(data[xname], data[tname], data[sname], data["dx"], family, group, str(spec), attrs, name, layout)


def load_datasets(paths: Sequence[str | os.PathLike[str]], layout: DataLayout | None = None) -> TermDataset:
    """Concatenate several data set files (e.g. a generated data set and a monitor's capture file).

    Group ids are offset per file so that groups of different files never merge; all files must share N.
    """
    parts = [load_dataset(p, layout) for p in paths]
    if len(parts) == 1:
        return parts[0]
    n = {part.x.shape[1] for part in parts}
    if len(n) != 1:
        raise DatasetError(f"datasets {[str(p) for p in paths]} have different profile lengths {sorted(n)}")
    groups, offset = [], 0
    for part in parts:
        groups.append(part.group + offset)
        offset = int(groups[-1].max()) + 1 if part.group.size else offset
    return TermDataset(
        x=np.concatenate([p.x for p in parts]),
        label=np.concatenate([p.label for p in parts]),
        scale=np.concatenate([p.scale for p in parts]),
        dx=np.concatenate([p.dx for p in parts]),
        family=np.concatenate([p.family for p in parts]),
        group=np.concatenate(groups),
        spec="\n".join(p.spec for p in parts),
        attrs=dict(parts[0].attrs),
        path=";".join(p.path for p in parts),
        layout=parts[0].layout,
    )


def write_dataset(path: str | os.PathLike[str], ds: TermDataset, **attrs: Any) -> None:
    """Write a dataset in the file format above (tests, scripts; ``hybrid dataset`` has its own writer).

    Args:
        path: HDF5 file to create (overwritten).
        ds: the data; ``ds.spec`` goes to the ``spec`` attribute.
        attrs: further file attributes (e.g. created, hybrid_version).
    """
    with h5py.File(os.fspath(path), "w") as fh:
        fh[ds.layout.inputs[0]] = np.asarray(ds.x, dtype=np.float64)
        fh[ds.layout.target] = np.asarray(ds.label, dtype=np.float64)
        fh[ds.layout.scale] = np.asarray(ds.scale, dtype=np.float64)
        fh["dx"] = np.asarray(ds.dx, dtype=np.float64)
        fh["family"] = np.asarray([str(f) for f in ds.family], dtype=h5py.string_dtype())
        fh["group"] = np.asarray(ds.group, dtype=np.int64)
        fh.attrs["spec"] = ds.spec
        for key, value in attrs.items():
            fh.attrs[key] = value


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def split_by_group(
    group: np.ndarray | Sequence[int],
    fractions: Mapping[str, float],
    seed: int,
    strata: np.ndarray | Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Split samples into named sets so that every group lies entirely in one set.

    Groups are taken in a seeded random order; each goes to the set with the largest *relative* deficit
    (target count - current count) / target count, where target count = fraction * S. So every set with a
    positive fraction gets a group as long as there are enough groups, and the sample fractions come out
    close to the requested ones when groups are small.

    Args:
        group: (S,) group id of each sample.
        fractions: set name -> fraction of the samples (>= 0, summing to 1), e.g.
            ``{"train": 0.7, "val": 0.1, "calib": 0.1, "test": 0.1}``; the order of the mapping breaks ties.
        seed: seed of the numpy Generator that orders the groups.
        strata: optional (S,) label of each sample (e.g. its family; a group's label is that of its first
            sample). The groups of each stratum are then split separately, with the same fractions and seeds
            drawn from ``seed`` in the sorted order of the labels, so every set gets the same mix of strata.
            This keeps the calibration and test sets exchangeable when strata differ in group size and error
            (e.g. a few large blocks of captured run profiles beside many small batches of random profiles).
            A stratum with fewer groups than non-empty sets puts them one each into the sets with the largest
            fractions.

    Returns:
        set name -> sorted int64 sample indices (the same keys as ``fractions``).

    Raises:
        ValueError: for negative fractions or a sum other than 1, or if there are fewer groups than sets
            with a positive fraction.
    """
    group = np.asarray(group)
    names = list(fractions)
    frac = np.array([float(fractions[k]) for k in names])
    if np.any(frac < 0) or not np.isclose(frac.sum(), 1.0, atol=1e-6):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    if strata is not None:
        return _split_stratified(group, np.asarray(strata), fractions, seed)
    uniq, inverse, sizes = np.unique(group, return_inverse=True, return_counts=True)
    positive = [i for i, f in enumerate(frac) if f > 0]
    if len(uniq) < len(positive):
        raise ValueError(
            f"cannot split {len(uniq)} group(s) into {len(positive)} non-empty sets "
            f"{[names[i] for i in positive]}: the dataset needs more groups"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    target = frac * len(group)
    count = np.zeros(len(names))
    assign = np.empty(len(uniq), dtype=np.int64)
    for g in order:
        deficit = np.full(len(names), -np.inf)
        deficit[positive] = (target[positive] - count[positive]) / target[positive]
        j = int(np.argmax(deficit))
        assign[g] = j
        count[j] += sizes[g]
    sample_set = assign[inverse]
    return {name: np.flatnonzero(sample_set == j).astype(np.int64) for j, name in enumerate(names)}


def _split_stratified(
    group: np.ndarray, strata: np.ndarray, fractions: Mapping[str, float], seed: int
) -> dict[str, np.ndarray]:
    """:func:`split_by_group` within each stratum (a group belongs to the stratum of its first sample)."""
    if strata.shape != group.shape:
        raise ValueError(f"strata must have one label per sample, got {strata.shape} for {group.shape}")
    uniq, first = np.unique(group, return_index=True)
    group_stratum = dict(zip(uniq.tolist(), strata[first].tolist(), strict=True))
    sample_stratum = np.array([group_stratum[g] for g in group.tolist()], dtype=object)
    labels = sorted(set(group_stratum.values()))
    seeds = np.random.SeedSequence(seed).generate_state(len(labels))
    out: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    positive = sum(1 for f in fractions.values() if float(f) > 0)
    for label, sub_seed in zip(labels, seeds, strict=True):
        members = np.flatnonzero(sample_stratum == label)
        sub_group = group[members]
        if np.unique(sub_group).size < positive:  # too few groups to fill every set: fill the largest first
            order = sorted(fractions, key=lambda k: -float(fractions[k]))
            for name, g in zip(order, np.unique(sub_group), strict=False):
                out[name].append(members[sub_group == g])
            continue
        for name, idx in split_by_group(sub_group, fractions, int(sub_seed)).items():
            out[name].append(members[idx])
    return {name: np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
            for name, parts in out.items()}  # fmt: skip


def bootstrap_indices(n: int, members: int, seeds: Sequence[int], *, bootstrap: bool = True) -> np.ndarray:
    """Per-member resample of a training set.

    Args:
        n: size of the training set.
        members: number of members K.
        seeds: one seed per member (numpy Generator).
        bootstrap: if false every member gets all n samples (``arange(n)``; members then differ only by
            initialisation and batch order).

    Returns:
        (K, n) int64: row k holds member k's n draws with replacement from range(n).
    """
    if len(seeds) != members:
        raise ValueError(f"need one seed per member ({members}), got {len(seeds)}")
    if not bootstrap:
        return np.tile(np.arange(n, dtype=np.int64), (members, 1))
    return np.stack([np.random.default_rng(int(s)).integers(0, n, size=n) for s in seeds]).astype(np.int64)
