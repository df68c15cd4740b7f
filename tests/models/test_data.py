"""Dataset files, group splits and bootstrap resampling."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from hybrid.models.data import DatasetError, bootstrap_indices, load_dataset, split_by_group, write_dataset
from tests.models import one_torch_thread, synthetic_dataset  # noqa: F401

FRACTIONS = {"train": 0.7, "val": 0.1, "calib": 0.1, "test": 0.1}


def test_write_load_roundtrip(tmp_path: Path) -> None:
    ds = synthetic_dataset(samples=12, points=16)
    path = tmp_path / "d.h5"
    write_dataset(path, ds, created="today", hybrid_version="0.1.0")
    back = load_dataset(path)
    np.testing.assert_array_equal(back.h, ds.h)
    np.testing.assert_array_equal(back.rho, ds.rho)
    np.testing.assert_array_equal(back.group, ds.group)
    assert list(back.family) == list(ds.family) and back.spec == ds.spec
    assert back.attrs["created"] == "today" and back.path == str(path) and back.points == 16
    np.testing.assert_allclose(back.target, ds.rho / ds.rho0[:, None])
    x, y = back.tensors()
    assert x.shape == (12, 3, 16) and y.shape == (12, 16)
    assert back.subset([0, 3]).family_counts() == {"random": 1, "ripple": 1}


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        load_dataset(tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as fh:
        fh["h"] = np.zeros((2, 4))
    with pytest.raises(DatasetError, match=r"bad\.h5.*missing.*rho"):
        load_dataset(bad)
    ds = synthetic_dataset(samples=4, points=8)
    ds.scale = ds.scale[:3]
    write_dataset(bad, ds)
    with pytest.raises(DatasetError, match=r"bad\.h5: /rho0 has shape"):
        load_dataset(bad)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DatasetError, match=r"text\.h5"):
        load_dataset(tmp_path / "text.h5")


def test_split_keeps_groups_intact_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(60), rng.integers(1, 8, size=60))
    splits = split_by_group(group, FRACTIONS, seed=3)
    all_idx = np.concatenate(list(splits.values()))
    assert np.array_equal(np.sort(all_idx), np.arange(group.size))  # a partition
    owner = {}
    for name, idx in splits.items():
        for g in np.unique(group[idx]):
            assert owner.setdefault(g, name) == name  # each group in exactly one split
    for name, frac in FRACTIONS.items():
        assert abs(splits[name].size / group.size - frac) < 0.05
    again = split_by_group(group, FRACTIONS, seed=3)
    assert all(np.array_equal(again[k], splits[k]) for k in FRACTIONS)
    other = split_by_group(group, FRACTIONS, seed=4)
    assert not np.array_equal(other["test"], splits["test"])


def test_split_edge_cases() -> None:
    few = split_by_group(np.array([0, 0, 1, 2, 3, 3]), FRACTIONS, seed=0)
    assert all(v.size > 0 for v in few.values())  # one group each when there are just enough
    with pytest.raises(ValueError, match="more groups"):
        split_by_group(np.array([0, 0, 1, 2]), FRACTIONS, seed=0)
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_group(np.arange(10), {"train": 0.5, "val": 0.1}, seed=0)
    no_test = split_by_group(np.arange(10), {"train": 0.8, "val": 0.1, "calib": 0.1, "test": 0.0}, seed=0)
    assert no_test["test"].size == 0


def test_stratified_split_gives_every_set_the_same_family_mix() -> None:
    """Eight large 'captured' blocks beside 200 small 'random' batches: an unstratified group split leaves
    some set with a very different captured share; the stratified one splits each family by itself."""
    group = np.concatenate([np.repeat(np.arange(8), 250), np.repeat(np.arange(8, 208), 10)])
    family = np.array(["captured"] * 2000 + ["random"] * 2000)
    splits = split_by_group(group, FRACTIONS, seed=0, strata=family)
    assert np.array_equal(np.sort(np.concatenate(list(splits.values()))), np.arange(group.size))
    for idx in splits.values():
        assert np.unique(family[idx]).tolist() == ["captured", "random"]  # both families in every set
        assert all(np.unique(family[group == g]).size == 1 for g in np.unique(group[idx]))
    random_share = {k: np.mean(family[v] == "random") for k, v in splits.items()}
    n_random = {k: int(np.sum(family[v] == "random")) for k, v in splits.items()}
    assert n_random == {"train": 1400, "val": 200, "calib": 200, "test": 200}  # 70/10/10/10 of the batches
    assert min(random_share.values()) > 0.3  # captured blocks are coarse (250), but no set is all one family
    again = split_by_group(group, FRACTIONS, seed=0, strata=family)
    assert all(np.array_equal(again[k], splits[k]) for k in FRACTIONS)
    # a stratum with fewer groups than sets fills the largest sets first
    tiny = split_by_group(np.array([0, 1, 2, 3, 4, 4]), FRACTIONS, seed=0, strata=np.array(["a"] * 4 + ["b"] * 2))
    assert {4, 5} <= set(tiny["train"].tolist())  # stratum b: one group, in train
    assert all(np.sum(v < 4) == 1 for v in tiny.values())  # stratum a: four groups, one per set


def test_bootstrap_indices_seeded() -> None:
    seeds = [5, 6, 7]
    boot = bootstrap_indices(50, 3, seeds)
    assert boot.shape == (3, 50) and boot.min() >= 0 and boot.max() < 50
    assert np.array_equal(boot, bootstrap_indices(50, 3, seeds))
    assert not np.array_equal(boot[0], boot[1])
    assert len(np.unique(boot[0])) < 50  # with replacement
    plain = bootstrap_indices(50, 3, seeds, bootstrap=False)
    assert np.array_equal(plain, np.tile(np.arange(50), (3, 1)))
    with pytest.raises(ValueError):
        bootstrap_indices(50, 3, [1])


def test_load_datasets_concatenates_and_keeps_groups_apart(tmp_path: Path) -> None:
    from hybrid.models.data import TermDataset, load_datasets, write_dataset

    def make(seed: int) -> TermDataset:
        rng = np.random.default_rng(seed)
        return TermDataset(
            x=rng.random((4, 8)),
            label=rng.random((4, 8)),
            scale=np.ones(4),
            dx=np.ones(4),
            family=np.array(["a"] * 4),
            group=np.array([0, 0, 1, 1]),
        )

    write_dataset(tmp_path / "a.h5", make(0))
    write_dataset(tmp_path / "b.h5", make(1))
    ds = load_datasets([tmp_path / "a.h5", tmp_path / "b.h5"])
    assert ds.h.shape == (8, 8)
    assert list(ds.group) == [0, 0, 1, 1, 2, 2, 3, 3]
