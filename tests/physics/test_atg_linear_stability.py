"""ATG linear stability (docs/physics.md §1): growth rates from running the engine vs the analytic dispersion relation.

ω(k) = M (4 ρ0 |k|³ − γ(h0) k⁴) − M γ''(h0) k²   (γ(h0) = γ_f without wetting; γ'' the wetting curvature)

Each run starts from h0 + A cos(kx) with kA ~ 1e-5 (nonlinear corrections ~ (kA)² are negligible), on a domain of
4 wavelengths with λ/64 spacing. Expected errors, which the 3 % tolerance covers with margin:
- spatial: the compact differences replace k² by s² = (2 sin(k dx/2)/dx)² = k² (1 − (k dx)²/12 + …), i.e. 0.08 %
  in k² and 0.16 % in k⁴ at k dx = 2π/64; near k_c, where ω is the difference of two comparable terms, this
  relative error is amplified by |γ k⁴| / |ω| ≤ 5 for the wavenumbers below (≤ 1 %);
- temporal: the per-step growth factor of Euler, (1 + ω dt), and of IMEX, (1 + a dt)/(1 + b dt), give
  ln(G)/dt = ω (1 + O(dt (a + b))); dt is chosen so that this stays below 0.5 %.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybrid.cases import load_case
from hybrid.solvers.elasticity import misfit_energy_density

M, GAMMA, E, NU, EPS = 5.0, 6.0, 643.75, 0.26, 0.04
RHO0 = misfit_energy_density(E, NU, EPS)
K_C = 4 * RHO0 / GAMMA


def _omega(k: float, gamma: float = GAMMA, gamma2: float = 0.0) -> float:
    return M * (4 * RHO0 * k**3 - gamma * k**4) - M * gamma2 * k**2


def _measure_rate(k: float, integrator: str, mean: float = 5.0, gamma_s: float = GAMMA) -> float:
    lam = 2 * np.pi / k
    n_per = 64
    dx = lam / n_per
    b = M * max(GAMMA, gamma_s) * k**4 + M * 40 * k**2  # generous bound on the stiff rate at the mode
    if integrator == "euler":
        dt = 0.9 * dx**4 / (8 * M * max(GAMMA, gamma_s) * 1.5)  # below the compact-scheme stability limit
    else:
        dt = 0.005 / b
    omega_est = abs(_omega(k))
    steps = int(min(max(0.5 / (omega_est * dt), 200), 60000))
    case = {
        "case": {"model": "atg", "name": "disp"},
        "grid": {"length": 4 * lam, "points": 4 * n_per},
        "model": {
            "gamma_film": GAMMA,
            "gamma_substrate": gamma_s,
            "young": E,
            "poisson": NU,
            "misfit": EPS,
            "mobility": M,
        },
        "initial": {"kind": "sinusoid", "mean": mean, "amplitude": 1e-5 / k, "mode": 4},
        "terms": {"elastic": {"provider": "linear"}},
        "time": {"integrator": integrator, "dt": dt, "steps": steps},
    }
    sim = load_case(case)
    sim.output.path = None

    def amp(h: np.ndarray) -> float:
        return float(np.abs(np.fft.rfft(h)[4]))

    a0 = amp(sim.state.numpy_fields()["h"])
    for _ in range(steps):
        sim.step()
    a1 = amp(sim.state.numpy_fields()["h"])
    return float(np.log(a1 / a0) / sim.state.time)


@pytest.mark.parametrize("integrator", ["euler", "imex"])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.75, 1.25, 1.5, 2.0])
def test_growth_rate_matches_dispersion_relation(ratio: float, integrator: str) -> None:
    k = ratio * K_C
    expected = _omega(k)
    measured = _measure_rate(k, integrator)
    assert np.sign(measured) == np.sign(expected)  # unstable below k_c, stable above
    assert measured == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("integrator", ["euler", "imex"])
def test_wetting_adds_the_gamma_second_derivative_term(integrator: str) -> None:
    """With γ_s ≠ γ_f on a 1 nm film: γ → γ(h0), and ω gains −M γ''(h0) k² (stabilising)."""
    gs, delta, h0 = 8.7, 0.27, 1.0
    k = 0.5 * K_C
    e = np.exp(-h0 / delta)
    gamma_h0 = GAMMA + (gs - GAMMA) * e
    gamma2 = (gs - GAMMA) / delta**2 * e
    expected = _omega(k, gamma_h0, gamma2)
    measured = _measure_rate(k, integrator, mean=h0, gamma_s=gs)
    assert measured == pytest.approx(expected, rel=0.03)
    # and it differs from the no-wetting rate by far more than the tolerance (the check has teeth)
    assert abs(expected - _omega(k)) > 0.2 * abs(_omega(k))


def test_imex_amplification_factor_is_exact_to_round_off() -> None:
    """IMEX + linear provider, constant γ: each step multiplies mode k by (1 + dt M 4ρ0 s²|k|)/(1 + dt M γ s⁴)."""
    L, N, dt = 100.0, 100, 0.05
    case = {
        "case": {"model": "atg", "name": "imex"},
        "grid": {"length": L, "points": N},
        "model": {"gamma_film": GAMMA, "gamma_substrate": GAMMA},
        "initial": {"kind": "sinusoid", "mean": 5.0, "amplitude": 1e-5, "mode": 4},
        "terms": {"elastic": {"provider": "linear"}},
        "time": {"integrator": "imex", "dt": dt, "steps": 1},
    }
    sim = load_case(case)
    sim.output.path = None
    h0 = sim.state.numpy_fields()["h"].copy()
    sim.step()
    h1 = sim.state.numpy_fields()["h"]
    k = 2 * np.pi * 4 / L
    s2 = (2 * np.sin(k * (L / N) / 2) / (L / N)) ** 2
    G = (1 + dt * M * 4 * RHO0 * s2 * k) / (1 + dt * M * GAMMA * s2 * s2)
    ratio = np.fft.rfft(h1 - 5.0)[4] / np.fft.rfft(h0 - 5.0)[4]
    # nonlinear terms are O((kA)²) ~ 1e-11 relative; round-off of h (ulp(5) ~ 1e-15) against the 1e-5 mode
    # amplitude ~ 1e-10: a 1e-8 bound is round-off level, far below the O(dt) ~ 5e-2 of any splitting error
    assert abs(ratio - G) < 1e-8 * G
