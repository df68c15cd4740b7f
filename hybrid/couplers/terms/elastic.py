"""The learned ATG term ``elastic``: ρ(x) [eV/nm³], the elastic energy density at the film surface.

The CNN ensemble sees only the shape of the film profile h (features in grid units, :mod:`hybrid.models.features`)
and predicts ρ/ρ0, with ρ0 = E ε² / (2 (1 − ν²)) the flat film's value, so changing E, ν or the misfit rescales ρ
exactly and any profile length runs. Tolerances are stated in ``rho0`` (RMSE of ρ in units of ρ0, the default)
or ``modulation`` (the mean-removed ρ relative to its spatial standard deviation); Mondrian calibration strata
are bins of max_x (dh/dx)². The FEM (provider ``fem``) labels the training data and backs the monitor; ``linear``
(the small-slope law) is the other fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hybrid.solvers.atg  # noqa: F401  (registers the DNS providers of elastic, the monitor's fallbacks, first)
from hybrid.couplers.learned import LearnedTerm, Metric, register_learned_term
from hybrid.models.calibration import ensemble_error, modulation_error, modulation_uncertainty, uncertainty
from hybrid.models.ensemble import EnsembleCNN1d
from hybrid.models.features import ELASTIC_CHANNELS, elastic_features
from hybrid.solvers.elasticity import misfit_energy_density

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "atg_elastic"
"""The shipped ensemble (``terms.elastic.weights = "shipped"``)."""

_SLOPE2 = ELASTIC_CHANNELS.index("slope2")


def _rho0(params: Mapping[str, Any]) -> float:
    return misfit_energy_density(params["young"], params["poisson"], params["misfit"])


def _max_slope2(features: Any) -> Any:
    """max_x (dh/dx)² of one profile's features (1, C, N): the Mondrian stratum statistic."""
    return features[0, _SLOPE2].amax()


ELASTIC = register_learned_term(
    LearnedTerm(
        term="elastic",
        inputs=("h",),
        features=elastic_features,
        scale=_rho0,
        metrics={
            "rho0": Metric(uncertainty, ensemble_error, "RMSE of ρ / ρ0"),
            "modulation": Metric(modulation_uncertainty, modulation_error, "RMSE of ρ − ⟨ρ⟩ / std(ρ)"),
        },
        labeller="fem",
        weights=SHIPPED_WEIGHTS,
        architecture=EnsembleCNN1d,
        target="rho",
        scale_name="rho0",
        stratum_statistic=_max_slope2,
        tolerance=(0.02, "accepted error, in the units of metric (0.02: 2 % of ρ0)"),
        nn_doc="trained CNN ensemble mean (float32 inference)",
        monitor_doc="CNN ensemble, DNS fallback when its spread exceeds the calibrated threshold",
    )
)
