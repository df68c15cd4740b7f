"""The ``hybrid`` command line (docs/architecture.md "Command line")."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# numba's default OpenMP layer spins idle threads, which stalls parallel kernels on a loaded or shared machine;
# the workqueue layer does not (set NUMBA_THREADING_LAYER yourself to choose another)
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from hybrid.core.config import ConfigError  # light (tomllib, tomli_w): the heavy parts load in the commands


def _add_set_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable ``--set KEY=VALUE`` override of a command (collected in ``args.overrides``)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def _add_overwrite_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists (default: refuse)")


def _add_workers_options(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` or ``--scheduler ADDRESS``: where the dask tasks of a command run."""
    grp = parser.add_mutually_exclusive_group()
    grp.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: all cores; 0: in-process, no dask)"
    )
    grp.add_argument("--scheduler", default=None, metavar="ADDRESS", help="use an existing dask scheduler")


def _refuse_to_replace(path: Path | None, args: argparse.Namespace, what: str = "an earlier result") -> None:
    """Nothing already written is lost: an existing output is replaced only with --overwrite."""
    from hybrid.core.config import ConfigError

    if path is not None and path.is_file() and not args.overwrite:
        raise ConfigError(f"{path} holds {what}; pass --overwrite to replace it, or --out to write elsewhere")


def _refuse_case_as_output(case: Path, out: Path | None, what: str = "case") -> None:
    """The results file must not be the input file itself (--overwrite would destroy it)."""
    if out is not None and (out.resolve() == case.resolve() or (out.exists() and case.exists() and out.samefile(case))):
        raise ConfigError(f"--out {out} is the {what} file; give another results file", file=str(case))


def _parser() -> argparse.ArgumentParser:
    from hybrid import __version__

    p = argparse.ArgumentParser(prog="hybrid", description="DNS + neural-network engine for continuum models.")
    p.add_argument("--version", action="version", version=f"hybrid {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a case file", description="Run a case file and write an HDF5 result.")
    run.add_argument("case", type=Path, help="case file (TOML)")
    _add_set_option(
        run,
        "override a case key, e.g. --set time.dt=1e-3 --set terms.elastic.provider=linear "
        "(VALUE is a TOML value; bare words are strings); repeatable",
    )
    run.add_argument("--out", type=Path, default=None, help="results file (default: output.path of the case)")
    run.add_argument(
        "--restart",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint of the same case, appending to the same output",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-plots", action="store_true", help="do not write the model's PNG plots at the end")
    _add_overwrite_option(run, "the results file")

    cmp_ = sub.add_parser(
        "compare",
        help="A/B-compare two providers of a term on the same case",
        description="Run a case with provider A and with provider B of one term, from the same initial state, and "
        "write DIR/report.json (metrics per frame, descriptors, timings) and DIR/*.png.",
    )
    cmp_.add_argument("case", type=Path, help="case file (TOML)")
    cmp_.add_argument("--term", required=True, help="term name (e.g. elastic), or 'stepper' for surrogate steppers")
    cmp_.add_argument("--providers", required=True, metavar="A,B", help="reference provider A and candidate B")
    _add_set_option(cmp_, "override a case key for both runs; repeatable")
    cmp_.add_argument("--out", type=Path, default=None, metavar="DIR", help="output directory")
    cmp_.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_overwrite_option(cmp_, "an earlier comparison in DIR")

    ds = sub.add_parser(
        "dataset",
        help="generate a training dataset from the DNS (labelled profiles, or trajectories)",
        description="Generate a dataset from a spec (TOML) with the DNS, in parallel on dask.distributed (a "
        "LocalCluster by default): profiles labelled by a DNS term provider (e.g. datasets/atg_elastic.toml), or, "
        "for a spec with a [trajectories] table, frame pairs of DNS runs of a case for whole-model surrogates "
        "(e.g. datasets/graingrowth_trajectories.toml).",
    )
    ds.add_argument("spec", type=Path, help="dataset spec (TOML), e.g. datasets/atg_elastic.toml")
    ds.add_argument("--out", type=Path, required=True, help="HDF5 file to write")
    _add_workers_options(ds)
    _add_set_option(ds, "override a spec key; repeatable")
    ds.add_argument("--no-progress", action="store_true")
    _add_overwrite_option(ds, "the HDF5 file")

    tr = sub.add_parser(
        "train",
        help="train an NN ensemble on a dataset",
        description="Train, evaluate and calibrate an ensemble of a learned term ([model] term = NAME, default "
        "elastic); writes DIR/weights.pt and DIR/model_card.json. "
        "A spec with [model] architecture = 'jump2d' trains a whole-model jump surrogate on a trajectory file "
        "(e.g. training/graingrowth_surrogate.toml).",
    )
    tr.add_argument("spec", type=Path, help="training spec (TOML), e.g. training/atg_elastic.toml")
    tr.add_argument(
        "--data",
        type=Path,
        required=True,
        action="append",
        help="dataset HDF5 (repeatable: e.g. the original dataset and a monitor's capture file)",
    )
    tr.add_argument("--out", type=Path, required=True, metavar="DIR", help="model directory to write")
    _add_set_option(tr, "override a spec key; repeatable")
    tr.add_argument("--no-progress", action="store_true")
    _add_overwrite_option(tr, "an ensemble in DIR")

    cal = sub.add_parser(
        "calibrate",
        help="recalibrate a trained NN ensemble's monitor threshold",
        description="Redo the calibration of a trained learned-term ensemble with other [calibration] settings, on "
        "the data it was trained on (checked by SHA-256); the weights stay. Rewrites DIR/model_card.json unless "
        "--out is given.",
    )
    cal.add_argument(
        "model", type=Path, metavar="DIR", help="ensemble directory, e.g. hybrid/models/weights/atg_elastic"
    )
    cal.add_argument("--data", type=Path, required=True, action="append", help="its dataset HDF5 file(s), in order")
    cal.add_argument("--out", type=Path, metavar="DIR", help="write the recalibrated ensemble here instead")
    _add_set_option(cal, "a [calibration] key, e.g. calibration.conditional=max_slope; repeatable")

    sw = sub.add_parser(
        "sweep",
        help="run a case over a grid of parameter values (dask)",
        description="Run the cartesian product of --grid values of a case on dask.distributed (a LocalCluster by "
        "default, or --scheduler): one results file per point in DIR, DIR/sweep.json and DIR/sweep.csv with each "
        "point's overrides, status, error and wall time, and a plot of --scalar over the grid. A failing point does "
        "not stop the others; rerunning the same sweep skips the finished points and reruns the others.",
    )
    sw.add_argument("case", type=Path, help="case file (TOML)")
    sw.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="a case key and its values (TOML values, commas inside [...] kept); repeatable: the product is run",
    )
    _add_set_option(sw, "override a case key for every point; repeatable")
    sw.add_argument("--out", type=Path, default=None, metavar="DIR", help="sweep folder (default: sweep-<case stem>)")
    sw.add_argument(
        "--scalar",
        default=None,
        help="record and plot a scalar per point: wall_seconds, nn_fraction, dominant_wavelength[:FIELD], "
        "final:FIELD:STAT (mean/min/max/std), last:TABLE:COLUMN",
    )
    _add_workers_options(sw)
    sw.add_argument("--no-progress", action="store_true")

    info = sub.add_parser(
        "info", help="describe a result, checkpoint or weights file", description="Print what a hybrid HDF5 file holds."
    )
    info.add_argument("file", type=Path)
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from hybrid.cases import load_case

    _refuse_case_as_output(args.case, args.out)
    sim = load_case(args.case, args.overrides, out=args.out, progress=not args.no_progress)
    if args.restart is not None:
        sim.restart_from(args.restart)  # appends to its output
    else:
        _refuse_to_replace(sim.output.path, args)
    state = sim.run()
    timing = sim.timing()
    print(f"done: {state.step} steps, t = {state.time:g}, wall {timing['run_seconds']:.2f} s -> {sim.output.path}")
    for name, st in timing["terms"].items():
        print(
            f"  term {name} [{st['provider']}]: {st['calls']} calls, {st['seconds']:.2f} s "
            f"({1e3 * st['seconds_per_call']:.3f} ms/call)"
        )
    for name, term in sim.equation.terms.items():
        summary = getattr(term, "summary", None)
        if summary is not None:
            m = summary()
            line = (
                f"  monitor {name}: NN served {100 * m['nn_fraction']:.1f}% of {m['calls']} calls, "
                f"DNS {m['dns_calls']} calls (threshold {m['threshold']:.4g}, tolerance {m['tolerance']}, "
                f"confidence {m['confidence']})"
            )
            if m.get("audits"):
                line += f"; {m['audits']} audits, max audited error {m.get('audit_error_max', float('nan')):.3g}"
            print(line)
    plot = _model_plot(sim)
    if plot is not None and not args.no_plots and sim.output.path is not None:
        try:
            pngs = plot(sim.output.path, sim.output.path.parent)
        except Exception as err:  # the run and its results are complete: a plot that fails is only reported
            print(f"warning: the plots of {sim.output.path} failed ({type(err).__name__}: {err}); the results are "
                  "complete", file=sys.stderr)  # fmt: skip
            pngs = []
        for png in pngs:
            print(f"plot: {png}")
    return 0


def _model_plot(sim: object) -> Callable[[Path, Path], list[Path]] | None:
    from hybrid.core.registry import MODELS

    model = getattr(sim, "attrs", {}).get("model")
    spec = MODELS.get(model) if model else None
    return spec.plot if spec is not None else None


def _cmd_compare(args: argparse.Namespace) -> int:
    from hybrid.couplers.compare import compare

    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    if len(providers) != 2:
        raise ValueError(f"--providers needs two names separated by a comma, got {args.providers!r}")
    report = compare(
        args.case,
        args.term,
        tuple(providers),
        overrides=args.overrides,
        out_dir=args.out,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    a, b = report["labels"] if "labels" in report else report["providers"]
    print(
        f"{a}: {report['wall_seconds'][a]:.2f} s, {b}: {report['wall_seconds'][b]:.2f} s, "
        f"speedup {report['speedup']:.2f}x"
    )
    for name, frac in report.get("nn_fraction", {}).items():
        print(f"  nn fraction [{name}]: {frac:.3f}")
    for field, m in report["metrics"].items():
        rel = [v for v in m["rmse_rel"] if v is not None and v == v]
        if rel:
            print(f"  {field}: max rmse_rel {max(rel):.3g}, final {rel[-1]:.3g}")
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from hybrid.core.config import apply_overrides, read_document
    from hybrid.couplers.pipeline import dataset_kind

    _refuse_case_as_output(args.spec, args.out, "spec")
    spec = apply_overrides(read_document(args.spec, "dataset").tables, args.overrides, file=str(args.spec))
    kind = dataset_kind(spec, str(args.spec))
    _refuse_to_replace(args.out, args, "an earlier dataset")
    path = kind.generate(
        args.spec,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.no_progress,
        overrides=args.overrides,
    )
    print(f"dataset written: {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from hybrid.core.config import apply_overrides, read_document
    from hybrid.couplers.pipeline import train_kind_of_spec

    spec = apply_overrides(read_document(args.spec, "training").tables, args.overrides, file=str(args.spec))
    kind = train_kind_of_spec(spec, str(args.spec))
    _refuse_to_replace(args.out / "weights.pt", args, "a trained ensemble")
    kind.train(spec, list(args.data), args.out, progress=not args.no_progress, spec_file=str(args.spec))
    print(f"written: {_describe_weights(args.out)}")  # the summary `hybrid info DIR` prints
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from hybrid.core.config import ConfigError, apply_overrides
    from hybrid.couplers.pipeline import train_kind_of_card
    from hybrid.models.card import read_card

    changes = apply_overrides({}, args.overrides)
    if set(changes) - {"calibration"}:
        raise ConfigError(
            "only [calibration] keys can change without retraining (use `hybrid train` for the others)",
            key=next(iter(set(changes) - {"calibration"})),
        )
    card = read_card(args.model)
    kind = train_kind_of_card(card, str(card.get("path")))
    if kind.calibrate is None:
        raise ConfigError(f"a {kind.name} ensemble cannot be recalibrated without retraining", key="MODEL")
    data = args.data if isinstance(args.data, list) else [args.data]
    out = kind.calibrate(args.model, data, changes.get("calibration", {}), args.out)
    print(f"written: {_describe_weights(Path(out['path']).parent)}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from hybrid.core.io import describe_file

    path = args.file
    if path.is_dir() or path.suffix in (".json", ".pt"):
        print(_describe_weights(path if path.is_dir() else path.parent))
    else:
        print(describe_file(path))
    return 0


def _describe_weights(directory: Path) -> str:
    """Summary of an NN ensemble directory (weights.pt + model_card.json), by the kind that wrote it."""
    from hybrid.couplers.pipeline import train_kind_of_card
    from hybrid.models.card import load_ensemble

    _, card = load_ensemble(directory, device="cpu")  # refuses an unreadable or corrupted weights.pt, saying why
    return "\n".join(train_kind_of_card(card, str(card.get("path"))).describe(directory, card))


def _cmd_sweep(args: argparse.Namespace) -> int:
    from hybrid.core.config import parse_override
    from hybrid.sweep import parse_grid, sweep

    out = args.out if args.out is not None else Path(f"sweep-{args.case.stem}")
    index = sweep(
        args.case,
        parse_grid(args.grid),
        out,
        overrides=dict(parse_override(item) for item in args.overrides),
        scalar=args.scalar,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.no_progress,
    )
    points = index["points"]
    failed = [p for p in points if p["status"] != "done"]
    print(f"sweep: {len(points) - len(failed)} of {len(points)} points done -> {out / 'sweep.csv'}")
    for p in failed:
        print(f"  failed {p['output']} {p['overrides']}: {p['error']}")
    return 0 if not failed else 4


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # --help and --version end here, before any heavy import
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from hybrid.core.simulation import SimulationBlowUp

    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "dataset":
            return _cmd_dataset(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "calibrate":
            return _cmd_calibrate(args)
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
    except ConfigError as err:
        print(f"hybrid: error: {err}", file=sys.stderr)
        return 2
    except SimulationBlowUp as err:
        print(f"hybrid: run stopped: {err}", file=sys.stderr)
        return 3
    except (OSError, ValueError, KeyError) as err:  # OSError: a file the checks above could not foresee
        print(f"hybrid: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
