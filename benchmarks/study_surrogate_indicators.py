"""Grain-growth surrogate: which uncertainty indicator tracks the window error (issue #4)?

Run: ``python benchmarks/study_surrogate_indicators.py DATA.h5 [--weights DIR]`` (never in CI), with DATA.h5 the
trajectory file the ensemble was trained on (``hybrid dataset datasets/graingrowth_trajectories.toml --out
DATA.h5``, 40 s): the held-out windows are the card's calibration and test trajectories of that file.

For every held-out window (start frame η_0, DNS frame η_DNS one jump later) it evaluates the ensemble as the
stepper does (jump, then ``relax`` DNS steps) and prints the Spearman correlation with the window error
e = ‖relaxed(η_NN) − relaxed(η_DNS)‖ / ‖relaxed(η_DNS) − η_0‖ (:func:`hybrid.models.jump_net.window_error`) of:

- ``spread``: u = ‖std_k Δη‖ / ‖mean_k Δη‖, the shipped indicator (ensemble spread, heads on a shared backbone);
- ``relax``: ‖relaxed(η_NN) − η_NN‖ / ‖η_NN − η_0‖, how far the relaxation steps move the jump's answer;
- ``rate_ratio``: ‖∂η/∂t(η_NN)‖ / ‖∂η/∂t(η_0)‖ (coarsening slows down, so a physical answer has a smaller rate);
- ``rate_residual``: τ‖∂η/∂t(η_NN)‖ / ‖η_NN − η_0‖, the DNS rate at the answer in units of the predicted change
  (:func:`hybrid.models.jump_net.rate_residual`, the indicator the shipped card is calibrated for);
- ``linear``: ‖(η_NN − η_0) − τ ∂η/∂t(η_0)‖ / ‖η_NN − η_0‖, departure from a linear extrapolation.

The three physics residuals need one or two DNS right-hand sides per window (cheap next to the jump), no extra
network. It also prints the fraction of windows within the case's tolerance, which bounds what any indicator can
accept, and for every indicator the split-conformal threshold calibrated on the calibration windows for the card's
tolerance and confidence (:func:`hybrid.models.calibration.calibrate`) with what it achieves on the test windows
(accepted fraction, coverage). Single-threaded (torch and numba), so it can run beside other work.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import torch
from scipy.stats import spearmanr

from hybrid.couplers.surrogate import SHIPPED_SURROGATES
from hybrid.couplers.trajectories import rate_function
from hybrid.models.calibration import calibrate
from hybrid.models.card import load_ensemble
from hybrid.models.jump_net import EnsembleJumpNet2d, jump_members, rate_residual, relative_spread, window_error
from hybrid.models.jump_training import load_trajectories, relax_steps

INDICATORS = ("spread", "relax", "rate_ratio", "rate_residual", "linear")


def _norm(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x.double()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path, help="trajectory file the ensemble was trained on")
    p.add_argument("--weights", type=Path, default=SHIPPED_SURROGATES / "graingrowth_surrogate")
    args = p.parse_args()
    torch.set_num_threads(1)
    model, card = load_ensemble(args.weights, device="cpu", expect=EnsembleJumpNet2d)
    d = load_trajectories(args.data)
    frames, pairs, attrs = d["frames"], d["pairs"], d["attrs"]
    rate = rate_function(args.data)
    dt, relax = float(attrs["dt"]), int(card["inference"]["relax"])
    tau = int(attrs["jump"]) * dt
    tile, activity = int(card["inference"]["tile"]), float(card["inference"]["activity"])
    tolerance = float(card["calibration"]["tolerance"])
    confidence = float(card["calibration"]["confidence"])

    print(f"weights {args.weights}, data {args.data}, relax {relax}, tolerance {tolerance}, confidence {confidence}")
    results: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for split in ("calibration", "test"):
        e, ind = [], {k: [] for k in INDICATORS}
        for r in card["data"]["split"][split]:
            for i, j in pairs:
                start, end = frames[r, i], frames[r, j]
                rate0 = rate(start)
                pred = jump_members(model, start, rate=tau * rate0, tile=tile, activity=activity)
                nn_end = relax_steps(pred.mean, rate, dt, relax)
                e.append(window_error(nn_end, relax_steps(end, rate, dt, relax), start))
                change = _norm(pred.mean - start)
                rate_end = rate(pred.mean)
                ind["spread"].append(relative_spread(pred.spread, pred.mean, start))
                ind["relax"].append(_norm(nn_end - pred.mean.double()) / change)
                ind["rate_ratio"].append(_norm(rate_end) / _norm(rate0))
                ind["rate_residual"].append(rate_residual(rate_end, pred.mean, start, tau))
                ind["linear"].append(_norm((pred.mean - start).double() - tau * rate0.double()) / change)
        err = np.asarray(e)
        print(
            f"{split}: {err.size} windows, error RMS {np.sqrt(np.mean(err**2)):.3f}, "
            f"within tolerance {np.mean(err <= tolerance) * 100:.0f} %"
        )
        for k in INDICATORS:
            rho = spearmanr(np.asarray(ind[k]), err).statistic
            print(f"  {k:>13}: Spearman {rho:+.2f}")
        results[split] = (err, {k: np.asarray(v) for k, v in ind.items()})
    (e_cal, i_cal), (e_test, i_test) = results["calibration"], results["test"]
    print("split-conformal threshold on the calibration windows, evaluated on the test windows:")
    for k in INDICATORS:
        c = calibrate(i_cal[k], e_cal, i_test[k], e_test, tolerance, confidence)
        t = c["test"]
        print(
            f"  {k:>13}: threshold {c['threshold']:.4g}, calibration accepts {c['calibration']['n_accepted']}, "
            f"test accepts {t['n_accepted']} of {t['n']}, test coverage {t['coverage']:.3f}"
        )


if __name__ == "__main__":
    main()
