"""Registries of the data and training pipeline: what ``hybrid dataset``, ``train``, ``calibrate`` and ``info DIR``
dispatch on.

A *dataset kind* recognises its spec (a TOML file's tables) and generates the file; a *training kind* recognises
its training spec and its model cards, trains, recalibrates and describes its weights. Each kind registers itself
in its own module (the ATG profile data set in :mod:`hybrid.couplers.dataset`, DNS trajectories in
:mod:`hybrid.couplers.trajectories`, term samples of any learned term in :mod:`hybrid.couplers.term_dataset`, the
ensembles of learned terms in :mod:`hybrid.couplers.learned`, jump surrogates in :mod:`hybrid.couplers.surrogate`);
the commands look the kind up here and contain no list of kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid.core.config import ConfigError

__all__ = [
    "DATASET_KINDS",
    "TRAIN_KINDS",
    "DatasetKind",
    "TrainKind",
    "calibration_lines",
    "dataset_kind",
    "register_dataset_kind",
    "register_train_kind",
    "train_kind_of_card",
    "train_kind_of_spec",
]


@dataclass(frozen=True)
class DatasetKind:
    """A kind of data set ``hybrid dataset SPEC --out FILE`` can generate.

    Attributes:
        name: the kind's name (messages).
        detect: parsed spec tables -> whether the spec is of this kind.
        generate: ``(spec path or tables, out, *, workers, scheduler, progress, overrides) -> Path`` written.
        doc: one line: what the spec must contain.
    """

    name: str
    detect: Callable[[Mapping[str, Any]], bool]
    generate: Callable[..., Path]
    doc: str


@dataclass(frozen=True)
class TrainKind:
    """A kind of ensemble ``hybrid train`` builds, ``hybrid calibrate`` recalibrates and ``hybrid info`` describes.

    Attributes:
        name: the kind's name (messages).
        detect_spec: parsed training spec -> whether this kind trains it.
        detect_card: a model card -> whether this kind wrote it.
        train: ``(spec, data paths, out, *, progress, spec_file) -> card``.
        describe: ``(folder, card) -> lines`` of ``hybrid info DIR`` before the metrics.
        calibrate: ``(model dir, data paths, [calibration] changes, out or None) -> card``; None when the kind
            cannot recalibrate without retraining.
        doc: one line: how its spec is recognised.
        fallback: tried after every other kind (the generic ensemble, which takes what no specific kind claims),
            so a new kind needs no exception in it.
    """

    name: str
    detect_spec: Callable[[Mapping[str, Any]], bool]
    detect_card: Callable[[Mapping[str, Any]], bool]
    train: Callable[..., Any]
    describe: Callable[[Path, Mapping[str, Any]], list[str]]
    calibrate: Callable[..., Any] | None = None
    doc: str = ""
    fallback: bool = False


DATASET_KINDS: list[DatasetKind] = []
TRAIN_KINDS: list[TrainKind] = []


def register_dataset_kind(kind: DatasetKind) -> DatasetKind:
    """Add (or replace, by name) a dataset kind; kinds are tried in registration order."""
    DATASET_KINDS[:] = [k for k in DATASET_KINDS if k.name != kind.name] + [kind]
    return kind


def register_train_kind(kind: TrainKind) -> TrainKind:
    """Add (or replace, by name) a training kind; kinds are tried in registration order."""
    TRAIN_KINDS[:] = [k for k in TRAIN_KINDS if k.name != kind.name] + [kind]
    return kind


def _first(kinds: list[Any], test: Callable[[Any], bool], what: str, file: str | None) -> Any:
    """The first kind that ``test`` accepts, the fallback kinds (``fallback = True``) last."""
    for kind in sorted(kinds, key=lambda k: bool(getattr(k, "fallback", False))):
        if test(kind):
            return kind
    raise ConfigError(f"{what} of no known kind ({'; '.join(f'{k.name}: {k.doc}' for k in kinds)})", file=file)


def dataset_kind(spec: Mapping[str, Any], file: str | None = None) -> DatasetKind:
    """The kind of a dataset spec, or a ConfigError listing what each kind needs."""
    kind: DatasetKind = _first(DATASET_KINDS, lambda k: k.detect(spec), "a dataset spec", file)
    return kind


def train_kind_of_spec(spec: Mapping[str, Any], file: str | None = None) -> TrainKind:
    """The kind that trains a spec, or a ConfigError listing the kinds."""
    kind: TrainKind = _first(TRAIN_KINDS, lambda k: k.detect_spec(spec), "a training spec", file)
    return kind


def train_kind_of_card(card: Mapping[str, Any], path: str | None = None) -> TrainKind:
    """The kind that wrote a model card, or a ConfigError naming the card."""
    what = f"a model card (term {card.get('term')!r}, format {card.get('format')!r})"
    kind: TrainKind = _first(TRAIN_KINDS, lambda k: k.detect_card(card), what, path)
    return kind


def calibration_lines(metric: str, cal: Mapping[str, Any]) -> list[str]:
    """``hybrid info`` lines of one calibration section of a model card (threshold, coverage, strata)."""
    if not cal:
        return []
    t = cal.get("test", {})
    tau = cal.get("thresholds") or cal.get("threshold")
    tau_text = "-inf (none qualifies)" if tau is None else tau
    if "stratification" in cal:
        strat = cal["stratification"]
        tau_text = f"{tau} (one per bin of {strat.get('feature')}, edges {strat.get('edges')})"
    lines = [
        f"  monitor threshold {tau_text} for metric {metric}, tolerance {cal.get('tolerance')}, confidence "
        f"{cal.get('confidence')}: test coverage {t.get('coverage')}, accepted {t.get('accept_fraction')}, "
        f"spearman {t.get('spearman')}" + (" (calibrated in every family)" if "strata" in cal else "")
    ]
    for family, r in (cal.get("test_by_stratum") or {}).items():
        lines.append(
            f"    test {family}: n = {r.get('n')}, accepted {r.get('accept_fraction')}, coverage {r.get('coverage')}"
        )
    return lines
