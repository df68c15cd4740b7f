"""Right-hand side of the ATG surface-diffusion equation on a periodic 1D grid, one kernel per backend.

    ∂h/∂t = M ∂x[(∂x μ) / sqrt(1 + h_x²)] + F,
    μ = γ(h) κ + γ'(h) / sqrt(1 + h_x²) + ρ,   κ = −h_xx / (1 + h_x²)^{3/2},   γ(h) = γ_f + (γ_s − γ_f) e^{−h/δ}

Discretisation (compact / staggered flux form of docs/physics.md §1): h_x and h_xx by second-order central
differences at the nodes give μ_j; the flux J_{j+½} = M (μ_{j+1} − μ_j)/dx / sqrt(1 + ((h_{j+1} − h_j)/dx)²) lives
on the half points, and ∂h/∂t_j = (J_{j+½} − J_{j−½})/dx + F. Explicit Euler is stable for roughly
dt < dx⁴ / (8 M γ_max).

``atg_rhs_numpy`` is the reference; ``make_atg_rhs(backend)`` returns the numba (numpy backend) or torch kernel
with the same signature ``(h, rho, dx, mobility, gamma_film, gamma_substrate, wetting_length, flux) -> dh/dt``:
h, rho of shape (N,) [nm], [eV/nm³]; result (N,) [nm / time unit].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

AtgRhs = Callable[..., Any]


def atg_rhs_numpy(
    h: np.ndarray,
    rho: np.ndarray,
    dx: float,
    mobility: float,
    gamma_film: float,
    gamma_substrate: float,
    wetting_length: float,
    flux: float,
) -> np.ndarray:
    """Plain numpy reference of the ATG tendency ∂h/∂t (shapes (N,), see module docstring)."""
    hp = np.roll(h, -1)
    hm = np.roll(h, 1)
    hx = (hp - hm) / (2.0 * dx)
    hxx = (hp - 2.0 * h + hm) / (dx * dx)
    g = 1.0 + hx * hx
    sq = np.sqrt(g)
    e = np.exp(-h / wetting_length)
    gam = gamma_film + (gamma_substrate - gamma_film) * e
    dgam = -(gamma_substrate - gamma_film) / wetting_length * e
    mu = -gam * hxx / (g * sq) + dgam / sq + rho
    s = (hp - h) / dx
    j = (np.roll(mu, -1) - mu) / (dx * np.sqrt(1.0 + s * s))
    return mobility * (j - np.roll(j, 1)) / dx + flux


@numba.njit(cache=True)
def _atg_rhs_numba(
    h: np.ndarray,
    rho: np.ndarray,
    dx: float,
    mobility: float,
    gamma_film: float,
    gamma_substrate: float,
    wetting_length: float,
    flux: float,
) -> np.ndarray:  # pragma: no cover
    n = h.shape[0]
    mu = np.empty(n)
    j = np.empty(n)
    out = np.empty(n)
    dg = gamma_substrate - gamma_film
    for i in range(n):
        hp = h[(i + 1) % n]
        hm = h[i - 1]
        hx = (hp - hm) / (2.0 * dx)
        hxx = (hp - 2.0 * h[i] + hm) / (dx * dx)
        g = 1.0 + hx * hx
        sq = np.sqrt(g)
        e = np.exp(-h[i] / wetting_length)
        mu[i] = -(gamma_film + dg * e) * hxx / (g * sq) + (-dg / wetting_length * e) / sq + rho[i]
    for i in range(n):
        ip = (i + 1) % n
        s = (h[ip] - h[i]) / dx
        j[i] = (mu[ip] - mu[i]) / (dx * np.sqrt(1.0 + s * s))
    for i in range(n):
        out[i] = mobility * (j[i] - j[i - 1]) / dx + flux
    return out


def atg_rhs_torch(
    h: Any,
    rho: Any,
    dx: float,
    mobility: float,
    gamma_film: float,
    gamma_substrate: float,
    wetting_length: float,
    flux: float,
) -> Any:
    """Torch version (CPU or CUDA tensors of shape (N,)); same arithmetic as the numpy reference."""
    import torch

    hp = torch.roll(h, -1)
    hm = torch.roll(h, 1)
    hx = (hp - hm) / (2.0 * dx)
    hxx = (hp - 2.0 * h + hm) / (dx * dx)
    g = 1.0 + hx * hx
    sq = torch.sqrt(g)
    e = torch.exp(-h / wetting_length)
    gam = gamma_film + (gamma_substrate - gamma_film) * e
    dgam = -(gamma_substrate - gamma_film) / wetting_length * e
    mu = -gam * hxx / (g * sq) + dgam / sq + rho
    s = (hp - h) / dx
    j = (torch.roll(mu, -1) - mu) / (dx * torch.sqrt(1.0 + s * s))
    return mobility * (j - torch.roll(j, 1)) / dx + flux


KERNELS: dict[str, AtgRhs] = {"reference": atg_rhs_numpy, "numba": _atg_rhs_numba, "torch": atg_rhs_torch}


def make_atg_rhs(backend: str) -> AtgRhs:
    """The fastest kernel for a backend name ("numpy" -> numba, "torch" -> torch, "reference" -> plain numpy)."""
    key = {"numpy": "numba", "torch": "torch", "reference": "reference", "numba": "numba"}.get(backend)
    if key is None:
        raise ValueError(f"no ATG kernel for backend {backend!r}; allowed: numpy, torch, reference")
    return KERNELS[key]
