"""Closed forms of the linear elasticity of a strained film (docs/physics.md §1): the flat film's energy density ρ0
and stress σ0, the plane-strain energy density of a strain, the finite-depth factor g(kT) of the linear law.

Light (numpy only), so the models and the learned terms use them without loading the finite-element solver.
"""

from __future__ import annotations

import numpy as np

__all__ = ["depth_factor", "flat_film_stress", "misfit_energy_density", "plane_strain_energy_density"]


def misfit_energy_density(young: float, poisson: float, misfit: float) -> float:
    """Elastic energy density of a flat strained film.

    Args:
        young: Young's modulus E [eV/nm^3].
        poisson: Poisson ratio nu [-].
        misfit: misfit strain eps_m [-].

    Returns:
        rho0 = E eps_m^2 / (2 (1 - nu^2)) [eV/nm^3], the flat-film value.
    """
    return float(young * misfit**2 / (2.0 * (1.0 - poisson**2)))


def flat_film_stress(young: float, poisson: float, misfit: float) -> float:
    """In-plane stress of a flat film coherent with its substrate (plane strain).

    Args:
        young: Young's modulus E [eV/nm^3].
        poisson: Poisson ratio nu [-].
        misfit: misfit strain eps_m [-].

    Returns:
        sigma0 = -E eps_m / (1 - nu^2) [eV/nm^3] (the film stress is sigma0 e_x e_x).
    """
    return float(-young * misfit / (1.0 - poisson**2))


def plane_strain_energy_density(
    sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray, young: float, poisson: float
) -> np.ndarray:
    """Strain-energy density 1/2 sigma : C^-1 : sigma in plane strain, from the in-plane stresses.

    The out-of-plane stress sigma_zz = nu (sigma_xx + sigma_yy) (zero elastic eps_zz) is included.

    Args:
        sxx: sigma_xx, any shape [eV/nm^3].
        syy: sigma_yy, same shape [eV/nm^3].
        sxy: sigma_xy, same shape [eV/nm^3].
        young: Young's modulus E [eV/nm^3].
        poisson: Poisson ratio nu [-].

    Returns:
        Energy density, same shape [eV/nm^3].
    """
    nu = poisson
    return (1.0 + nu) / (2.0 * young) * ((1.0 - nu) * (sxx**2 + syy**2) - 2.0 * nu * sxx * syy + 2.0 * sxy**2)


def depth_factor(kt: float | np.ndarray, poisson: float) -> float | np.ndarray:
    """Finite-depth factor g(kT) of the linear ATG driving term (clamped bottom at depth T), docs/physics.md §1.

    Args:
        kt: wavenumber times total depth, k (h0 + H) [-].
        poisson: Poisson ratio nu [-].

    Returns:
        g(kT) = [2 kM sinh 2kT + 4kT] / [2 kM cosh 2kT + 1 + kM^2 + 4 (kT)^2], kM = 3 - 4 nu; -> 1 as kT -> inf.
    """
    km = 3.0 - 4.0 * poisson
    kt = np.asarray(kt, dtype=float)
    # divide numerator and denominator by exp(2kT) to avoid overflow for deep bodies
    e = np.exp(-2.0 * kt)
    num = km * (1.0 - e * e) + 4.0 * kt * e
    den = km * (1.0 + e * e) + (1.0 + km**2 + 4.0 * kt**2) * e
    out = num / den
    return float(out) if out.ndim == 0 else out
