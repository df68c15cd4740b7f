"""Elastic ensembles side by side on FEM-labelled profiles of held-out runs of the shipped case (issue #3).

Run: ``python benchmarks/study_elastic_heldout.py CAPTURE.h5 [CAPTURE.h5 ...] --weights shipped DIR ...``
(never in CI). Each CAPTURE.h5 is a capture file of one run of ``cases/atg_film.toml`` with a seed that no ensemble
compared was trained on, audited every 10 steps and never falling back, so its FEM labels sample the whole run
(t = 0-1000) uniformly in time::

    hybrid run cases/atg_film.toml --no-plots --out run_s31.h5 --set case.seed=31 \\
        --set terms.elastic.threshold=1.0 --set terms.elastic.audit_every=10 \\
        --set terms.elastic.capture=cap_s31.h5 --set terms.elastic.capture_every=1 --set terms.elastic.capture_block=0

(about 100 s each; 5000 profiles). Prints, per file and ensemble, the RMSE of ρ/ρ0 pooled over the run, its
median per profile, the share of profiles beyond 2 %, and the pooled RMSE in each quarter of the run (ripples,
island formation, coarsening).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import hybrid
from hybrid.models.data import load_dataset

CASE = Path(__file__).resolve().parents[1] / "cases" / "atg_film.toml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("captures", type=Path, nargs="+", help="capture files of held-out runs")
    p.add_argument("--weights", nargs="+", default=["shipped"], help='ensemble directories or "shipped"')
    p.add_argument("--tolerance", type=float, default=0.02, help="RMSE of rho/rho0 counted as beyond (default 0.02)")
    args = p.parse_args()
    for f in args.captures:
        ds = load_dataset(f)
        for w in args.weights:
            opts = {} if w == "shipped" else {"weights": str(Path(w).resolve())}
            nn = hybrid.load_provider("elastic", "nn", case=CASE, **opts)
            err = np.array(
                [np.sqrt(np.mean((nn(h) - rho) ** 2)) / r0 for h, rho, r0 in zip(ds.h, ds.rho, ds.rho0, strict=True)]
            )
            quarters = [np.sqrt(np.mean(part**2)) * 100 for part in np.array_split(err, 4)]
            print(
                f"{f.name} {w}: n {err.size}, RMSE {np.sqrt(np.mean(err**2)) * 100:.2f} %, "
                f"median {np.median(err) * 100:.2f} %, "
                f"beyond {args.tolerance:g}: {np.mean(err > args.tolerance) * 100:.1f} %, "
                f"by quarter of the run: {', '.join(f'{q:.2f}' for q in quarters)} %",
                flush=True,
            )


if __name__ == "__main__":
    main()
