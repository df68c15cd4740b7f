"""Data sets of any learned term: inputs drawn by the term's sample makers, labelled by its DNS provider.

A learned term registers one or more *sample makers* (:func:`register_sample_maker`): a family kind, its options
and a function drawing ``count`` input fields (count, N). A spec names the term, the grid, the ``[model]``
parameters (of the model that owns the term) and families; :func:`generate_term_dataset` draws the inputs task by
task, labels each sample with the term's labelling provider (``LearnedTerm.labeller``, through the provider
registry) and writes the term's data set layout (:mod:`hybrid.models.data`) through the one generation driver
(:mod:`hybrid.couplers.generate`: dask or in-process, progress, atomic write, the same file for any number of
workers)::

    [dataset]       name (default: the file's stem), seed = 0, description, term (required)
    [grid]          the owning model's [grid] table (e.g. length, points; or lengths, shape)
    [model]         the owning model's [model] table (its defaults fill the rest)
    [family.NAME]   kind (a sample maker of the term), count (required), batch = 100, and the maker's options

File: the layout's input (S, N), target (S, N) and scale (S,), ``dx`` (S,), ``family`` (the kind), ``family_name``,
``group`` (one per task), attrs as every generated file (``spec``, ``created``, ``hybrid_version``, ...).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.core.config import (
    REQUIRED,
    ConfigError,
    MapOf,
    Option,
    Table,
    Tagged,
    apply_overrides,
    drop_none,
    dumps_toml,
    read_document,
    validate,
)
from hybrid.core.io import check_writable
from hybrid.couplers.assembly import grid_table
from hybrid.couplers.generate import check_workers, run_tasks, stamp, write_atomic
from hybrid.couplers.pipeline import DatasetKind, register_dataset_kind

__all__ = ["SAMPLE_MAKERS", "SampleMaker", "generate_term_dataset", "register_sample_maker", "resolve_term_spec"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SampleMaker:
    """A family kind of a learned term's inputs.

    Attributes:
        options: schema of the family's options (besides kind, count, batch).
        make: (rng, count, context, options) -> (count, N) float64 input fields on ``context.grid``.
        doc: one line.
    """

    options: Table
    make: Callable[[np.random.Generator, int, Any, Mapping[str, Any]], np.ndarray]
    doc: str = ""


SAMPLE_MAKERS: dict[str, dict[str, SampleMaker]] = {}
"""term -> family kind -> sample maker."""


def register_sample_maker(term: str, kind: str, maker: SampleMaker) -> SampleMaker:
    """Make ``[family.NAME] kind = KIND`` available to data set specs of ``term``."""
    SAMPLE_MAKERS.setdefault(term, {})[kind] = maker
    return maker


_COMMON = {
    "count": Option("int", REQUIRED, "number of samples", min=0),
    "batch": Option("int", 100, "samples per task (also one group)", min=1),
}


def _owner(term: str, file: str | None) -> Any:
    from hybrid.core.registry import MODELS

    owner = next((m for m in MODELS.values() if term in m.terms), None)
    if owner is None:
        raise ConfigError(f"no registered model has the term {term!r}", "dataset.term", file)
    return owner


def _schema(term: str, owner: Any) -> Table:
    makers = SAMPLE_MAKERS[term]
    family = Tagged("kind", {k: Table({**_COMMON, **m.options.entries}) for k, m in makers.items()}, doc="a family")
    return Table(
        {
            "dataset": Table(
                {
                    "name": Option("str", None, "dataset name (default: the spec file's stem)"),
                    "seed": Option("int", 0, "seed of every random draw", min=0),
                    "description": Option("str", "", "free text"),
                    "term": Option("str", REQUIRED, "the learned term", choices=(term,)),
                }
            ),
            "grid": grid_table(owner.grid_ndim),
            "model": owner.params,
            "family": MapOf(family, doc="input families by name"),
        }
    )


def resolve_term_spec(
    spec: str | os.PathLike[str] | Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[str] | None = None
) -> tuple[dict[str, Any], str | None]:
    """Load, override and validate a term data set spec; returns (resolved tables, file name or None)."""
    from hybrid.couplers.learned import LEARNED

    doc = read_document(spec, "dataset")
    file, stem = doc.file, doc.stem
    raw = apply_overrides(doc.tables, overrides or {}, file=file)
    term = (raw.get("dataset") or {}).get("term")
    if term not in SAMPLE_MAKERS or term not in LEARNED:
        allowed = ", ".join(repr(t) for t in SAMPLE_MAKERS if t in LEARNED)
        raise ConfigError(f"a learned term with sample makers is needed; allowed: {allowed}", "dataset.term", file)
    owner = _owner(term, file)
    res = validate(raw, _schema(term, owner), file=file)
    if not res["dataset"].get("name"):
        res["dataset"]["name"] = stem
    if not res["family"]:
        raise ConfigError("at least one [family.NAME] table is needed", key="family", file=file)
    return drop_none(res), file


@dataclass(frozen=True)
class TermTask:
    """One chunk of samples of one family (picklable: it travels to a dask worker)."""

    index: int
    family: str
    kind: str
    count: int
    task_index: int
    seed: int
    spec: Mapping[str, Any]

    def rng(self) -> np.random.Generator:
        """The task's own generator: (seed, CRC-32 of the family name, task index)."""
        return np.random.default_rng([self.seed, zlib.crc32(self.family.encode()), self.task_index])


def _context(spec: Mapping[str, Any]) -> Any:
    from hybrid.core.backend import Backend
    from hybrid.core.registry import Context
    from hybrid.couplers.assembly import make_grid

    owner = _owner(spec["dataset"]["term"], None)
    grid = make_grid(spec["grid"], owner, None)
    params = dict(spec["model"])
    if owner.finalize_params is not None:
        params = owner.finalize_params(grid, params)
    return Context(grid, Backend(), params, int(spec["dataset"]["seed"]), model=owner.name)


def run_term_task(task: TermTask) -> dict[str, Any]:
    """Draw and label the samples of one task (runs on a worker)."""
    import hybrid.couplers  # noqa: F401  (a fresh worker registers the terms)
    from hybrid.core.registry import get_provider
    from hybrid.core.state import State
    from hybrid.couplers.learned import LEARNED

    term = LEARNED[task.spec["dataset"]["term"]]
    ctx = _context(task.spec)
    options = task.spec["family"][task.family]
    x = np.asarray(SAMPLE_MAKERS[term.term][task.kind].make(task.rng(), task.count, ctx, options), dtype=np.float64)
    dns = get_provider(term.term, term.labeller).build(ctx, {})
    name = term.inputs[0]
    labels = np.array([np.asarray(dns(State.from_arrays({name: xi})), dtype=np.float64) for xi in x])
    return {"index": task.index, "x": x, "label": labels.reshape(x.shape), "scale": float(term.scale(ctx.params))}


def generate_term_dataset(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Path:
    """Generate a labelled data set of a learned term (module docstring) and write it atomically."""
    from hybrid.couplers.learned import LEARNED

    check_workers(workers, scheduler)
    resolved, _file = resolve_term_spec(spec, overrides)
    check_writable(out, "--out")
    seed = int(resolved["dataset"]["seed"])
    tasks: list[TermTask] = []
    for name, fam in resolved["family"].items():
        count, batch = int(fam["count"]), int(fam["batch"])
        for i, start in enumerate(range(0, count, batch)):
            tasks.append(TermTask(len(tasks), name, fam["kind"], min(batch, count - start), i, seed, resolved))
    run = run_tasks(
        run_term_task,
        tasks,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        desc="dataset",
        unit="sample",
        weight=lambda t: t.count,
    )
    layout = LEARNED[resolved["dataset"]["term"]].learnable.layout
    ctx = _context(resolved)
    points, dx = int(ctx.grid.points[0]), float(ctx.grid.dx)
    counts = [t.count for t in tasks]
    x = np.concatenate([r["x"] for r in run.results]) if tasks else np.zeros((0, points))
    label = np.concatenate([r["label"] for r in run.results]) if tasks else np.zeros((0, points))
    scale = np.repeat([r["scale"] for r in run.results], counts) if tasks else np.zeros(0)

    def write(f: Any) -> None:
        import h5py

        text = h5py.string_dtype(encoding="utf-8")
        f.create_dataset(layout.inputs[0], data=x, dtype=np.float64)
        f.create_dataset(layout.target, data=label, dtype=np.float64)
        f.create_dataset(layout.scale, data=scale, dtype=np.float64)
        f.create_dataset("dx", data=np.full(len(x), dx), dtype=np.float64)
        f.create_dataset("family", data=np.repeat([t.kind for t in tasks], counts).astype(object), dtype=text)
        f.create_dataset("family_name", data=np.repeat([t.family for t in tasks], counts).astype(object), dtype=text)
        f.create_dataset("group", data=np.repeat(np.arange(len(tasks), dtype=np.int64), counts), dtype=np.int64)
        stamp(
            f,
            kind="dataset",
            format_version=FORMAT_VERSION,
            spec=dumps_toml(resolved),
            seconds=run.seconds,
            workers=run.workers,
        )
        f.attrs["samples"] = len(x)

    path = Path(out)
    write_atomic(path, write)
    return path


def _is_term_spec(spec: Mapping[str, Any]) -> bool:
    head = spec.get("dataset")
    return isinstance(head, Mapping) and head.get("term") in SAMPLE_MAKERS


register_dataset_kind(
    DatasetKind(
        "term-samples",
        _is_term_spec,
        generate_term_dataset,
        "[dataset] term = a learned term with sample makers, and [family.NAME] tables of its kinds",
    )
)
