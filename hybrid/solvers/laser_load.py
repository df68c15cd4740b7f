"""The moving Gaussian laser load on the top surface (docs/laser.md).

The absorbed flux per unit out-of-plane length is the normalised 1D Gaussian

    q(x) = q′ √(2/π)/r · exp(−2 (x − x_L)²/r²)   [W/m²],   ∫ q dx = q′ [W/m]

and its consistent P1 load on the top nodes, f_i = ∫ q φ_i dx, is integrated exactly per boundary element with
erf differences (the element's total) and the Gaussian's first moment (its split between the two nodes). The sum
of the nodal loads telescopes to q′/2 [erf(√2 (x_N − x_L)/r) − erf(√2 (x_0 − x_L)/r)]: q′ to round-off whenever the
spot lies inside the top edge, on any mesh.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf


def gaussian_flux(x: np.ndarray, line_power: float, radius: float, centre: float) -> np.ndarray:
    """q(x) [W/m²] at positions ``x`` [m] for q′ = ``line_power`` [W/m], 1/e² radius r [m], spot centre x_L [m]."""
    return line_power * math.sqrt(2.0 / math.pi) / radius * np.exp(-2.0 * (x - centre) ** 2 / radius**2)


def nodal_load(nodes: np.ndarray, line_power: float, radius: float, centre: float) -> np.ndarray:
    """f_i = ∫ q φ_i dx [W/m] on sorted top-edge nodes ``nodes`` (n,) [m] (any spacing), P1 hat functions φ_i.

    Per element [a, b] of length ℓ: Q = ∫_a^b q dx = q′/2 (erf(β) − erf(α)) with α, β = √2 (a − x_L)/r, √2 (b − x_L)/r,
    and the first moment ∫_a^b (x − x_L) q dx = q′ r/(2√(2π)) (e^{−α²} − e^{−β²}); node b takes ∫ q (x − a)/ℓ dx, node a
    the rest, so each element's two shares sum to its Q exactly.
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    s = math.sqrt(2.0) / radius
    u = s * (nodes - centre)
    total = 0.5 * line_power * np.diff(erf(u))  # Q per element
    g = np.exp(-(u * u))
    moment = line_power * radius / (2.0 * math.sqrt(2.0 * math.pi)) * (g[:-1] - g[1:])  # ∫ (x − x_L) q dx per element
    length = np.diff(nodes)
    to_b = (moment + (centre - nodes[:-1]) * total) / length  # ∫ q (x − a)/ℓ dx
    f = np.zeros_like(nodes)
    np.add.at(f, np.arange(1, nodes.size), to_b)
    np.add.at(f, np.arange(nodes.size - 1), total - to_b)
    return f
