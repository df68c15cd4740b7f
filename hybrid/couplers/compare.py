"""A/B comparison of two providers of one term on the same case (``hybrid compare``).

:func:`compare` runs a case twice, once with provider A and once with provider B of one term (A is the
reference, typically the DNS), from the same seed and therefore the same initial state, and writes into
``out_dir``:

- ``A.h5``, ``B.h5``: the two results files (``output.terms`` gains the compared term, so its values are saved
  at every frame as ``/terms/<term>``);
- ``report.json``: the fixed keys of docs/architecture.md ("Command line") plus extras (below);
- ``profiles.png``, ``error.png``, ``uncertainty.png``: plots; each is skipped when its data does not exist.

``report.json``::

    case          the case file (or the case name for a dict case)
    term          the compared term; providers: [A, B] as given
    wall_seconds  {label: wall seconds of Simulation.run()}    speedup: wall_A / wall_B
    nn_fraction   {label: fraction of term calls (or jumps) served by the NN; 0.0 for providers without an NN}
    time          [t of each compared frame] (the frame times both runs saved)
    metrics       {key: {"rmse", "rmse_rel", "mare", "pearson", "psnr", "ssim": [one value per frame]}} for every
                  saved field (key = field name), the term (key = term name) and the fields of a moving patch
                  (key = patch/<name>, e.g. patch/T of the laser), B against A (hybrid.couplers.metrics; mare is
                  null where the reference field has a zero)
    descriptors   {name: {label: [one value per frame]}} (hybrid.analysis.descriptors, by model)
    extras:       labels, step, model, case_name, overrides, outputs {label: file}, build_seconds {label: s},
                  timing {label: Simulation.timing()}, monitor {label: summary of /monitor/<term>: decisions,
                  nn, fallbacks, nn_fraction, audits, max/mean audit error, max uncertainty; and the monitor's
                  tolerance with error_measure, the unit of the tolerance and the audit errors}, grid, plots

Labels are the provider names; when A and B are the same provider they become ``"<name>:A"`` and
``"<name>:B"`` so that the keys of ``wall_seconds``, ``nn_fraction`` and ``descriptors`` stay distinct.
Non-finite numbers (NaN, ±inf) are written as ``null``, so the file is strict JSON.

Switching providers: the ``[terms.<term>]`` table of the case (after ``overrides``) keeps only the options that
the new provider accepts (``PROVIDERS[term][name].options``); the others are dropped (logged), so a case written
for one provider can be compared against any other.

The pseudo-term ``stepper`` compares whole-model surrogate steppers (:mod:`hybrid.couplers.surrogate`): it sets
``stepper.provider`` (``dns``, ``nn``, ``monitor``) instead of ``terms.<term>.provider``, keeping the ``[stepper]``
options the chosen provider accepts; the nn_fraction is then the fraction of windows served by the NN.

Notes on timing: ``wall_seconds`` is ``time.perf_counter`` around ``Simulation.run()`` only (building the
Simulation, e.g. loading weights, is ``build_seconds``). It includes writing the output and one extra term call
per frame for saving the term (also counted in call counts and, for a monitor, in its decision log), and for the
first run in a process any one-time JIT compilation of shared kernels (numba): negligible for production-length
runs, visible on tiny ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time as _time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.analysis.descriptors import frame_descriptors
from hybrid.analysis.plotting import axis_label
from hybrid.core.config import ConfigError, apply_overrides, parse_override, read_document
from hybrid.core.io import check_writable, read_output
from hybrid.couplers.metrics import METRICS, compare_frame

__all__ = ["STEPPER_TERM", "compare", "provider_document", "write_report"]

log = logging.getLogger(__name__)

STEPPER_TERM = "stepper"
"""Pseudo-term of whole-model surrogate steppers (selects ``stepper.provider``)."""

CaseLike = str | Path | Mapping[str, Any]


# ----------------------------------------------------------------------------------------- cases


def _load_document(
    case: CaseLike, overrides: Mapping[str, Any] | Sequence[str] | None
) -> tuple[dict[str, Any], str | None, Path, str]:
    """The case as a dict with ``overrides`` applied, its file name, directory and stem."""
    doc = read_document(case, "case")
    raw, file, case_dir, stem = doc.tables, doc.file, doc.folder, doc.stem
    if overrides:
        from hybrid.couplers.assembly import override_case  # an override replaces what it contradicts

        if isinstance(overrides, str):
            overrides = [overrides]
        items = overrides.items() if isinstance(overrides, Mapping) else [parse_override(s) for s in overrides]
        raw = override_case(raw, dict(items), file=file)
    else:
        raw = apply_overrides(raw, {}, file=file)  # deep copy
    return raw, file, case_dir, stem


def provider_document(doc: Mapping[str, Any], term: str, provider: str, *, file: str | None = None) -> dict[str, Any]:
    """A copy of case document ``doc`` that uses ``provider`` for ``term`` and saves the term at every frame.

    Options of ``[terms.<term>]`` that ``provider`` does not accept are dropped. For ``term == "stepper"`` the
    ``[stepper]`` table is treated the same way (and created when missing); the stepper has no values to save.
    """
    out = apply_overrides(doc, {}, file=file)
    _register_all()
    from hybrid.core.registry import split_options

    if term == STEPPER_TERM:
        table = out.setdefault("stepper", {})
        if not isinstance(table, dict):
            raise ConfigError("expected a table", key="stepper", file=file)
        kept, dropped = split_options(STEPPER_TERM, provider, table)
        if dropped:
            log.info("stepper %r does not take %s; dropped for this run", provider, ", ".join(dropped))
        out["stepper"] = kept
        return out

    terms = out.setdefault("terms", {})
    if not isinstance(terms, dict):
        raise ConfigError("expected a table", key="terms", file=file)
    table, dropped = split_options(term, provider, terms.get(term) or {})
    if dropped:
        log.info("provider %r of %r does not take %s; dropped for this run", provider, term, ", ".join(dropped))
    terms[term] = table
    output = out.setdefault("output", {})
    if isinstance(output, dict) and term not in _frame_terms(out):
        saved = list(output.get("terms") or [])
        if term not in saved:
            saved.append(term)
        output["terms"] = saved
    return out


def _register_all() -> None:
    """Import what a case can name (models, DNS and NN providers), as case loading does."""
    import hybrid.couplers.assembly  # noqa: F401  (imports every registering module)


def _build(doc: dict[str, Any], file: str | None, case_dir: Path, stem: str, out: Path, progress: bool) -> Any:
    """Resolve ``doc`` as the case file ``file`` would be, and build its Simulation writing to ``out``."""
    from hybrid.couplers.assembly import build_simulation, resolve_case

    if isinstance(doc.get("case"), dict):
        doc["case"].setdefault("name", stem)
    try:
        rc = resolve_case(doc)
        rc.file = file
        rc.context = dataclasses.replace(rc.context, case_dir=case_dir)
        sim = build_simulation(rc, out=out, progress=progress)
    except ConfigError as err:
        if err.file is None:
            err.file = file
        raise
    return rc, sim


# ----------------------------------------------------------------------------------------- compare


def compare(
    case: CaseLike,
    term: str,
    providers: Sequence[str],
    *,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Run ``case`` with provider A and with provider B of ``term`` and compare B against A.

    Args:
        case: case file (TOML) or a dict of its tables.
        term: the compared term (e.g. ``"elastic"``), or ``"stepper"`` for whole-model surrogates.
        providers: ``(A, B)``, A being the reference (e.g. ``("fem", "monitor")``).
        overrides: dotted-key overrides applied to both runs (``{"time.steps": 100}`` or ``["time.steps=100"]``).
        out_dir: directory for ``A.h5``, ``B.h5``, ``report.json`` and the plots (created; default
            ``compare-<case name>-<term>-<A>-vs-<B>`` in the working directory).
        progress: show a progress bar for each run.
        overwrite: replace an earlier comparison in ``out_dir`` (False: a ConfigError if it holds a report.json;
            the ``hybrid compare`` command passes False unless ``--overwrite``).

    Returns:
        The report (as written to ``out_dir/report.json``, but with NaN/inf kept as floats).

    Raises:
        ConfigError: invalid case, unknown term or provider (both runs are built before either runs).
        ValueError: ``providers`` is not two names, or the runs share no frame time.
    """
    providers = tuple(providers)
    if len(providers) != 2 or not all(isinstance(p, str) and p for p in providers):
        raise ValueError(f"providers must be two provider names (A, B), got {providers!r}")
    a_name, b_name = providers
    labels = (a_name, b_name) if a_name != b_name else (f"{a_name}:A", f"{b_name}:B")
    doc, file, case_dir, stem = _load_document(case, overrides)
    if out_dir is None:
        head = doc.get("case")
        name = head.get("name") if isinstance(head, Mapping) and head.get("name") else stem
        out_dir = f"compare-{name}-{term}-{a_name}-vs-{b_name}"
    out = Path(out_dir)
    if term != STEPPER_TERM:
        _check_term(doc, term, file)
    files = (out / "A.h5", out / "B.h5")
    built = []
    build_seconds = []
    for name, path in zip(providers, files, strict=True):
        t0 = _time.perf_counter()
        built.append(_build(provider_document(doc, term, name, file=file), file, case_dir, stem, path, progress))
        build_seconds.append(_time.perf_counter() - t0)
    rc = built[0][0]
    check_writable(out, "--out (the compare folder)", directory=True)  # before either run
    if not overwrite and (out / "report.json").exists():
        raise ConfigError(f"{out} holds an earlier comparison; pass --overwrite to replace it, or --out for another")

    wall: list[float] = []
    for label, (_, sim) in zip(labels, built, strict=True):
        log.info("compare: running %s (%d steps)", label, sim.steps)
        t0 = _time.perf_counter()
        sim.run()
        wall.append(_time.perf_counter() - t0)
        log.info("compare: %s took %.3f s", label, wall[-1])

    res = [read_output(p) for p in files]
    ia, ib = _common_frames(res[0]["time"], res[1]["time"])
    if ia.size == 0:
        raise ValueError(f"the two runs saved no frame at a common time ({files[0]}, {files[1]})")
    times = res[0]["time"][ia]

    grid = rc.context.grid
    spatial = len(grid.shape)
    metrics: dict[str, dict[str, list[float]]] = {}
    pairs = _compared_arrays(res, term)
    for key, (fa, fb) in pairs.items():
        if fa.shape[1:] != fb.shape[1:]:
            log.warning("compare: %s has shape %s in A and %s in B; skipped", key, fa.shape[1:], fb.shape[1:])
            continue
        per: dict[str, list[float]] = {m: [] for m in METRICS}
        for i, j in zip(ia, ib, strict=True):
            values = compare_frame(fa[i], fb[j], spatial_ndim=min(spatial, fa[i].ndim))
            for m, v in values.items():
                per[m].append(v)
        metrics[key] = per

    descriptors: dict[str, dict[str, list[float]]] = {}
    resolved = {**rc.data, "model": dict(rc.context.params)}  # the [model] parameters with their derived defaults
    for label, r, idx in zip(labels, res, (ia, ib), strict=True):
        for f in idx:
            frame = {k: v[f] for k, v in r["fields"].items()}
            frame.update({f"patch/{k}": v[f] for k, v in r.get("patch", {}).items()})
            for name, value in frame_descriptors(rc.spec.name, frame, grid.lengths, resolved).items():
                descriptors.setdefault(name, {}).setdefault(label, []).append(value)
    descriptors = {k: v for k, v in descriptors.items() if all(len(v.get(lab, [])) == len(ia) for lab in labels)}

    nn_fraction: dict[str, float] = {}
    timing: dict[str, Any] = {}
    monitor: dict[str, Any] = {}
    for label, (_, sim), r in zip(labels, built, res, strict=True):
        obj = sim.stepper if term == STEPPER_TERM else sim.equation.terms.get(term)
        frac = getattr(obj, "nn_fraction", None)
        nn_fraction[label] = float(frac) if frac is not None else 0.0
        timing[label] = sim.timing()
        table = r["monitor"].get(term)
        if table is not None:
            monitor[label] = {**_monitor_summary(table), **_judged_by(obj)}

    report: dict[str, Any] = {
        "case": str(case) if isinstance(case, str | Path) else rc.data["case"]["name"],
        "term": term,
        "providers": [a_name, b_name],
        "wall_seconds": {labels[0]: wall[0], labels[1]: wall[1]},
        "speedup": wall[0] / wall[1] if wall[1] > 0 else float("inf"),
        "nn_fraction": nn_fraction,
        "time": [float(t) for t in times],
        "metrics": metrics,
        "descriptors": descriptors,
        # extras
        "labels": list(labels),
        "step": [int(s) for s in res[0]["step"][ia]],
        "model": rc.spec.name,
        "case_name": rc.data["case"]["name"],
        "overrides": _plain_overrides(overrides),
        "outputs": {labels[0]: str(files[0]), labels[1]: str(files[1])},
        "build_seconds": {labels[0]: build_seconds[0], labels[1]: build_seconds[1]},
        "timing": timing,
        "monitor": monitor,
        "grid": {"lengths": list(grid.lengths), "shape": list(grid.shape)},
    }
    report["plots"] = _plots(out, report, res, (ia, ib), pairs, spatial)
    write_report(out / "report.json", report)
    return report


def _frame_terms(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The terms the case's model saves in its own frames (``ModelSpec.frame_terms``)."""
    from hybrid.core.registry import MODELS

    head = doc.get("case")
    spec = MODELS.get(str(head.get("model"))) if isinstance(head, Mapping) else None
    return spec.frame_terms if spec is not None else ()


def _check_term(doc: Mapping[str, Any], term: str, file: str | None) -> None:
    """A clear error when ``term`` is not a term of the case's model."""
    _register_all()
    from hybrid.core.registry import MODELS

    model = (doc.get("case") or {}).get("model") if isinstance(doc.get("case"), Mapping) else None
    spec = MODELS.get(model) if isinstance(model, str) else None
    if spec is not None and term not in spec.terms:
        allowed = ", ".join([*spec.terms, STEPPER_TERM])
        raise ConfigError(f"model {spec.name!r} has no term {term!r}; compare one of: {allowed}", key="term", file=file)


def _common_frames(ta: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into A and B) of the frames saved at the same time by both runs (relative tolerance 1e-9)."""
    ia: list[int] = []
    ib: list[int] = []
    tb = np.asarray(tb, dtype=np.float64)
    for i, t in enumerate(np.asarray(ta, dtype=np.float64)):
        tol = 1e-9 * max(1.0, abs(t))
        j = int(np.searchsorted(tb, t - tol))
        if j < tb.size and abs(tb[j] - t) <= tol and (not ib or j > ib[-1]):
            ia.append(i)
            ib.append(j)
    return np.asarray(ia, dtype=int), np.asarray(ib, dtype=int)


def _compared_arrays(res: Sequence[Mapping[str, Any]], term: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key: (A frames, B frames)} for every field saved by both runs and for the term."""
    a, b = res
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in a["fields"]:
        if name in b["fields"]:
            pairs[name] = (a["fields"][name], b["fields"][name])
    if term in a["terms"] and term in b["terms"]:
        key = term if term not in pairs else f"terms/{term}"
        pairs[key] = (a["terms"][term], b["terms"][term])
    for name, values in a.get("patch", {}).items():  # fields on a moving patch (not its corner's coordinates)
        if name in b.get("patch", {}) and np.asarray(values).ndim >= 3:
            pairs[f"patch/{name}"] = (values, b["patch"][name])
    return {k: v for k, v in pairs.items() if np.asarray(v[0]).dtype.kind in "biuf"}


def _monitor_summary(table: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Counts of a ``/monitor/<term>`` table: decisions, NN answers, DNS fallbacks, audits, max audit error.

    ``max_uncertainty`` is the largest finite u; ``refused`` counts the windows with u = inf (a model's check refused
    the answer outright, e.g. the surrogate's topology check)."""
    source = np.asarray(table.get("source", []), dtype=str)
    audit = np.asarray(table.get("audit_error", []), dtype=np.float64)
    done = audit[np.isfinite(audit)]
    unc = np.asarray(table.get("uncertainty", []), dtype=np.float64)
    n = int(source.size)
    n_nn = int(np.count_nonzero(source == "nn"))
    return {
        "decisions": n,
        "nn": n_nn,
        "fallbacks": int(np.count_nonzero(source == "dns")),
        "nn_fraction": n_nn / n if n else None,
        "audits": int(done.size),
        "max_audit_error": float(done.max()) if done.size else None,
        "mean_audit_error": float(done.mean()) if done.size else None,
        "max_uncertainty": float(unc[np.isfinite(unc)].max()) if np.any(np.isfinite(unc)) else None,
        "refused": int(np.count_nonzero(np.isposinf(unc))),
    }


def _judged_by(obj: Any) -> dict[str, Any]:
    """The monitor's ``tolerance`` and the unit its audited errors and tolerance are stated in (``error_measure``,
    from the ensemble), for a Monitor term or a surrogate stepper with a monitor policy; {} for others."""
    policy = getattr(obj, "policy", None) or obj
    tolerance = getattr(policy, "tolerance", None)
    if tolerance is None:
        return {}
    measure = getattr(getattr(obj, "nn", None), "error_measure", "")
    return {"tolerance": float(tolerance), "error_measure": str(measure)}


def _plain_overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> Any:
    if overrides is None:
        return {}
    if isinstance(overrides, str):
        return [overrides]
    return dict(overrides) if isinstance(overrides, Mapping) else list(overrides)


# ----------------------------------------------------------------------------------------- JSON


def _jsonable(obj: Any) -> Any:
    """Plain-JSON copy of ``obj``: NaN/±inf -> None, numpy scalars/arrays -> Python, tuples -> lists."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, bool) or obj is None or isinstance(obj, int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def write_report(path: str | Path, report: Mapping[str, Any]) -> Path:
    """Write ``report`` as strict JSON (NaN/inf as null) to ``path``; returns the path."""
    p = Path(path)
    p.write_text(json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return p


# ----------------------------------------------------------------------------------------- plots


def _plots(
    out: Path,
    report: Mapping[str, Any],
    res: Sequence[Mapping[str, Any]],
    idx: tuple[np.ndarray, np.ndarray],
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    spatial: int,
) -> list[str]:
    """Write the PNGs whose data exists; returns their file names."""
    written = []
    for name, fn in (
        ("profiles.png", lambda p: plot_profiles(p, report, idx, pairs, spatial)),
        ("error.png", lambda p: plot_error(p, report)),
        ("uncertainty.png", lambda p: plot_uncertainty(p, report, res)),
    ):
        try:
            if fn(out / name):
                written.append(name)
        except Exception:  # a plot must never lose the report
            log.exception("compare: could not draw %s", name)
    return written


def _unit(report: Mapping[str, Any], name: str) -> str:
    """Unit of field/term/"time"/"x" ``name`` as the compared model states it (``ModelSpec.units``); "" if none."""
    from hybrid.core.registry import MODELS

    spec = MODELS.get(str(report.get("model", "")))
    return spec.unit(name.removeprefix("terms/").removeprefix("patch/")) if spec is not None else ""


def _figure(nrows: int, ncols: int, size: tuple[float, float]) -> tuple[Any, np.ndarray]:
    """A figure detached from pyplot (no global backend state; PNGs are rendered by Agg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def plot_profiles(
    path: Path,
    report: Mapping[str, Any],
    idx: tuple[np.ndarray, np.ndarray],
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    spatial: int,
) -> bool:
    """Profiles of A (solid) and B (dashed) at ~4 frames for 1D fields (also a model's fields along the first axis of
    a 2D grid, when it has no 2D ones); A | B | B − A images (last frame) for 2D.

    Fields with more axes than the grid (e.g. order parameters (Q, ny, nx)) are not drawn. Returns False (and
    writes nothing) when no field can be drawn.
    """
    ia, ib = idx
    labels = report["labels"]
    times = report["time"]
    keys = [k for k, (fa, _) in pairs.items() if fa.ndim - 1 == spatial and spatial in (1, 2)]
    keys.sort(key=lambda k: k.startswith("patch/"))  # a moving patch after the model's fields
    if not keys:  # fields on one axis of a larger grid, e.g. a front's h(x) on the phase field's (x, y) grid
        keys, spatial = [k for k, (fa, _) in pairs.items() if fa.ndim == 2], 1
    if not keys or ia.size == 0:
        return False
    if spatial == 1:
        picks = sorted(set(np.linspace(0, ia.size - 1, min(4, ia.size)).round().astype(int).tolist()))
        fig, axes = _figure(len(keys), 1, (7.0, 2.6 * len(keys)))
        for ax, key in zip(axes[:, 0], keys, strict=True):
            fa, fb = pairs[key]
            n = fa.shape[1]
            length = float((report.get("grid") or {}).get("lengths", [n])[0])
            x = np.arange(n) * (length / n)
            for c, k in enumerate(picks):
                color = f"C{c}"
                ax.plot(x, fa[ia[k]], color=color, lw=1.5, label=f"{labels[0]}, t={times[k]:.4g}")
                ax.plot(x, fb[ib[k]], color=color, lw=1.2, ls="--", label=f"{labels[1]}, t={times[k]:.4g}")
            ax.set_ylabel(axis_label(key, _unit(report, key)))
            ax.set_xlabel(axis_label("x", _unit(report, "x")))
            ax.legend(fontsize=6, ncol=2)
        axes[0, 0].set_title(f"{report['term']}: {labels[0]} (solid) vs {labels[1]} (dashed)")
    else:
        from hybrid.core.registry import MODELS

        spec = MODELS.get(str(report.get("model", "")))
        origin = spec.image_origin if spec is not None else "lower"
        fig, axes = _figure(len(keys), 3, (10.0, 3.2 * len(keys)))
        for row, key in zip(axes, keys, strict=True):
            fa, fb = pairs[key]
            a, b = np.asarray(fa[ia[-1]], dtype=float), np.asarray(fb[ib[-1]], dtype=float)
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            for ax, img, title in ((row[0], a, labels[0]), (row[1], b, labels[1])):
                im = ax.imshow(img, origin=origin, vmin=lo, vmax=hi)
                ax.set_title(f"{key}: {title}, t={times[-1]:.4g}", fontsize=8)
                fig.colorbar(im, ax=ax, shrink=0.8, label=axis_label(key, _unit(report, key)))
            d = b - a
            m = float(np.nanmax(np.abs(d))) or 1.0
            im = row[2].imshow(d, origin=origin, cmap="RdBu_r", vmin=-m, vmax=m)
            row[2].set_title(f"{key}: B − A", fontsize=8)
            fig.colorbar(im, ax=row[2], shrink=0.8, label=axis_label(f"{key}: B − A", _unit(report, key)))
    fig.savefig(path, dpi=110)
    return True


def plot_error(path: Path, report: Mapping[str, Any]) -> bool:
    """rmse_rel of each field/term against time (log scale when every value is positive)."""
    metrics = report["metrics"]
    t = np.asarray(report["time"], dtype=float)
    series = {k: np.asarray(v["rmse_rel"], dtype=float) for k, v in metrics.items() if len(v.get("rmse_rel", []))}
    if not series or t.size == 0:
        return False
    fig, axes = _figure(1, 1, (7.0, 4.0))
    ax = axes[0, 0]
    for k, y in series.items():
        ax.plot(t, y, marker="o", ms=3, label=k)
    finite = np.concatenate([y[np.isfinite(y)] for y in series.values()])
    if finite.size and np.all(finite > 0):
        ax.set_yscale("log")
    ax.set_xlabel(axis_label("time", _unit(report, "time")))
    ax.set_ylabel("RMSE(B, A) / std(A) (dimensionless)")
    labels = report["labels"]
    ax.set_title(f"{report['term']}: {labels[1]} against {labels[0]}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return True


def plot_uncertainty(path: Path, report: Mapping[str, Any], res: Sequence[Mapping[str, Any]]) -> bool:
    """Monitor decisions of each run that has a ``/monitor/<term>`` table.

    Uncertainty against time with the threshold, DNS fallbacks marked (red crosses); on a second axis the audited
    errors with the tolerance that judges them, both in the unit the monitor states its tolerance in
    (``report["monitor"][label]["error_measure"]``, e.g. RMSE(ρ) / ρ0). Returns False when neither run has such a
    table.
    """
    term = report["term"]
    tables = [(lab, r["monitor"][term]) for lab, r in zip(report["labels"], res, strict=True) if term in r["monitor"]]
    tables = [(lab, tab) for lab, tab in tables if len(np.asarray(tab.get("time", [])))]
    if not tables:
        return False
    fig, axes = _figure(len(tables), 1, (7.0, 3.4 * len(tables)))
    for ax, (lab, tab) in zip(axes[:, 0], tables, strict=True):
        t = np.asarray(tab["time"], dtype=float)
        unc = np.asarray(tab.get("uncertainty", np.full(t.size, np.nan)), dtype=float)
        thr = np.asarray(tab.get("threshold", np.full(t.size, np.nan)), dtype=float)
        src = np.asarray(tab.get("source", np.full(t.size, "nn")), dtype=str)
        audit = np.asarray(tab.get("audit_error", np.full(t.size, np.nan)), dtype=float)
        ax.plot(t, unc, lw=1.0, color="C0", label="uncertainty")
        if np.any(np.isfinite(thr)):
            ax.step(t, thr, where="post", color="k", ls="--", lw=1.0, label="threshold")
        dns = src == "dns"
        if np.any(dns):
            ax.plot(t[dns], unc[dns], "x", color="C3", ms=5, label=f"DNS fallback ({int(dns.sum())})")
        ax.set_xlabel(axis_label("time", _unit(report, "time")))
        ax.set_ylabel("uncertainty u")
        ax.set_title(f"monitor of {term} ({lab}): {int((src == 'nn').sum())} NN / {int(dns.sum())} DNS", fontsize=9)
        handles, names = ax.get_legend_handles_labels()
        done = np.isfinite(audit)
        if np.any(done):
            judged = (report.get("monitor") or {}).get(lab) or {}
            measure = str(judged.get("error_measure") or "the tolerance's unit")
            tolerance = judged.get("tolerance")
            ax2 = ax.twinx()
            ax2.plot(t[done], audit[done], "s", color="C2", ms=4, mfc="none", label="audited error")
            top = float(audit[done].max())
            if tolerance is not None and math.isfinite(tolerance):
                ax2.axhline(tolerance, color="C2", ls=":", lw=1.2, label=f"tolerance {tolerance:g}")
                top = max(top, float(tolerance))
            ax2.set_ylim(0.0, 1.15 * top if top > 0 else 1.0)
            ax2.set_ylabel(f"audited error, tolerance [{measure}]", color="C2")
            h2, n2 = ax2.get_legend_handles_labels()
            handles, names = handles + h2, names + n2
        ax.legend(handles, names, fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return True
