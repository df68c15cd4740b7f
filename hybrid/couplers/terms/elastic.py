"""The learned ATG term ``elastic``: ρ(x) [eV/nm³], the elastic energy density at the film surface.

The CNN ensemble sees only the shape of the film profile h (features in grid units, :mod:`hybrid.models.features`)
and predicts ρ/ρ0, with ρ0 = E ε² / (2 (1 − ν²)) the flat film's value, so changing E, ν or the misfit rescales ρ
exactly and a case of any grid size can use it. Tolerances are stated in ``rho0`` (RMSE of ρ in units of ρ0, the
default) or ``modulation`` (the mean-removed ρ relative to its spatial standard deviation); Mondrian calibration strata
are bins of max_x (dh/dx)². The FEM (provider ``fem``) labels the training data and backs the monitor; ``linear``
(the small-slope law) is the other fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hybrid.solvers.atg  # noqa: F401  (registers the DNS providers of elastic, the monitor's fallbacks, first)
from hybrid.couplers.learned import LearnedTerm, register_learned_term
from hybrid.models.calibration import ensemble_error, modulation_error, modulation_uncertainty, uncertainty
from hybrid.models.ensemble import EnsembleCNN1d
from hybrid.models.features import ELASTIC_CHANNELS, ELASTIC_FEATURES, elastic_features, elastic_features_numpy
from hybrid.models.learnable import DataLayout, Learnable, Metric
from hybrid.solvers.elastic_laws import misfit_energy_density

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "atg_elastic"
"""The shipped ensemble (``terms.elastic.weights = "shipped"``)."""

ELASTIC_LEARNABLE = Learnable(
    term="elastic",
    layout=DataLayout(inputs=("h",), target="rho", scale="rho0"),
    features=elastic_features,
    feature_set=ELASTIC_FEATURES,
    channels=ELASTIC_CHANNELS,
    metrics={
        "rho0": Metric(
            uncertainty,
            ensemble_error,
            "RMSE(ρ) / ρ0",
            "u = sqrt(mean_x var_k(pred_k)) (ddof 0); accept the NN when u <= threshold",
        ),
        "modulation": Metric(
            modulation_uncertainty,
            modulation_error,
            "RMSE(ρ − ⟨ρ⟩) / std(ρ)",
            "u = sqrt(mean_x var_k(pred_k - <pred_k>_x)) / std_x(mean_k pred_k); accept the NN when u <= threshold",
        ),
    },
    baseline=("lambda_h", -4.0, 1.0),  # the small-slope law rho/rho0 = 1 - 4 Lambda h
    linear_channels=("h_dev", "lambda_h"),
    stratum_channel="slope2",
    cpu_features=elastic_features_numpy,
    target_doc="rho/rho0",
    units_doc="rho/rho0 is dimensionless; rho0 = E eps_m^2 / (2 (1 - nu^2)); u, e, tolerance in units of rho0",
    uncertainty_doc="u = sqrt(mean_x var_k(rho_k/rho0)), population variance over members",
)
"""What training needs to know about ``elastic`` (``hybrid train`` with ``model.term = "elastic"``)."""


def _rho0(params: Mapping[str, Any]) -> float:
    return misfit_energy_density(params["young"], params["poisson"], params["misfit"])


ELASTIC = register_learned_term(
    LearnedTerm(
        learnable=ELASTIC_LEARNABLE,
        scale=_rho0,
        labeller="fem",
        weights=SHIPPED_WEIGHTS,
        architecture=EnsembleCNN1d,
        tolerance=(0.02, "accepted error, in the units of metric (0.02: 2 % of ρ0)"),
        nn_doc="trained CNN ensemble mean (float32 inference)",
        monitor_doc="CNN ensemble, DNS fallback when its spread exceeds the calibrated threshold",
    )
)
