"""Per-frame metrics (hybrid.couplers.metrics) and global descriptors (hybrid.analysis.descriptors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from hybrid.analysis import descriptors as desc
from hybrid.couplers.metrics import compare_frame, data_range, mare, pearson, psnr, rmse, rmse_rel, ssim


def _field(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 3.0 + rng.normal(size=shape)


SHAPES = [(64,), (24, 40)]


# ------------------------------------------------------------------------------------------ metrics


@pytest.mark.parametrize("shape", SHAPES)
def test_identical_fields(shape: tuple[int, ...]) -> None:
    a = _field(shape)
    m = compare_frame(a, a.copy())
    expected = {"rmse": 0.0, "rmse_rel": 0.0, "mare": 0.0, "pearson": pytest.approx(1.0), "psnr": math.inf, "ssim": 1.0}
    if not np.all(a != 0.0):
        expected["mare"] = pytest.approx(math.nan, nan_ok=True)
    assert m == expected


@pytest.mark.parametrize("shape", SHAPES)
def test_offset(shape: tuple[int, ...]) -> None:
    a = _field(shape, 1)
    c = 0.25
    b = a + c
    assert rmse(a, b) == pytest.approx(c)
    assert rmse_rel(a, b) == pytest.approx(c / np.std(a))
    assert pearson(a, b) == pytest.approx(1.0)
    assert psnr(a, b) == pytest.approx(20 * np.log10((a.max() - a.min()) / c))
    assert ssim(a, b) < 1.0


@pytest.mark.parametrize("shape", SHAPES)
def test_scaling_and_sign(shape: tuple[int, ...]) -> None:
    a = _field(shape, 2)
    s = 1.5
    b = s * a
    assert rmse(a, b) == pytest.approx((s - 1) * np.sqrt(np.mean(a**2)))
    assert pearson(a, b) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert rmse_rel(a, a + np.std(a)) == pytest.approx(1.0)


def test_mare_by_hand() -> None:
    """mean(|B − A| / |A|): temperatures 300 K and 2000 K off by 3 K and −100 K give (0.01 + 0.05) / 2."""
    assert mare([300.0, 2000.0], [303.0, 1900.0]) == pytest.approx(0.03, rel=1e-14)
    assert mare([-2.0, 4.0], [-1.0, 4.0]) == pytest.approx(0.25, rel=1e-14)  # relative to |A|
    assert math.isnan(mare([0.0, 1.0], [0.0, 1.0]))  # undefined where the reference is zero


def test_hand_computed_values() -> None:
    a = np.array([0.0, 1.0, 2.0, 3.0])
    b = np.array([0.0, 1.0, 2.0, 5.0])
    assert rmse(a, b) == pytest.approx(1.0)  # sqrt(4 / 4)
    assert rmse_rel(a, b) == pytest.approx(1.0 / np.sqrt(1.25))  # std of 0..3 = sqrt(1.25)
    assert psnr(a, b) == pytest.approx(20 * np.log10(3.0))
    assert data_range(a) == 3.0
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("shape", [(32,), (16, 24)])
@pytest.mark.parametrize("s", [0.5, -1.0, 2.0])
def test_ssim_closed_form_on_checkerboard(shape: tuple[int, ...], s: float) -> None:
    """A = ±1 checkerboard (Nyquist mode), B = sA, in closed form (Wang et al. 2004).

    With the 11-tap Gaussian w_j ∝ exp(−j²/(2·1.5²)), |j| ≤ 5, the local mean of A is ±e (e = Σ w_j (−1)^j per
    axis, a product over axes), the local mean square is 1, so μ_B = sμ_A, σ_A² = 1 − e², σ_B² = s²σ_A²,
    σ_AB = sσ_A² and SSIM = (2se² + C1)(2sσ_A² + C2) / (((1 + s²)e² + C1)((1 + s²)σ_A² + C2)),
    C1 = (0.01 R)², C2 = (0.03 R)², R = 2.
    """
    idx = np.indices(shape).sum(axis=0)
    a = np.where(idx % 2 == 0, 1.0, -1.0)
    j = np.arange(-5, 6)
    w = np.exp(-(j**2) / (2 * 1.5**2))
    e = (np.sum(w * (-1.0) ** j) / w.sum()) ** len(shape)
    c1, c2 = (0.01 * 2.0) ** 2, (0.03 * 2.0) ** 2
    var = 1 - e * e
    expected = (2 * s * e * e + c1) * (2 * s * var + c2) / (((1 + s * s) * e * e + c1) * ((1 + s * s) * var + c2))
    assert ssim(a, s * a) == pytest.approx(expected, rel=1e-10)
    # the luminance factor is ≈ 1 here, so SSIM ≈ (2s + C2) / (1 + s² + C2)
    assert ssim(a, s * a) == pytest.approx((2 * s + c2) / (1 + s * s + c2), abs=1e-3)


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Periodic Gaussian-window SSIM written out with scipy.ndimage (σ = 1.5, 11 taps, K1 = 0.01, K2 = 0.03)."""

    def f(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, sigma=1.5, truncate=3.5, mode="wrap")

    r = a.max() - a.min()
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    ma, mb = f(a), f(b)
    va, vb, cab = f(a * a) - ma * ma, f(b * b) - mb * mb, f(a * b) - ma * mb
    s = (2 * ma * mb + c1) * (2 * cab + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return float(s.mean())


@pytest.mark.parametrize("shape", [(48,), (20, 30), (6,), (5, 7)])
def test_ssim_is_periodic_wang_ssim(shape: tuple[int, ...]) -> None:
    a = _field(shape, 3)
    b = a + 0.4 * _field(shape, 4) - 1.2
    assert ssim(a, b) == pytest.approx(_reference_ssim(a, b), abs=1e-10)
    # periodic: a circular shift of both fields changes nothing
    assert ssim(np.roll(a, 3, axis=-1), np.roll(b, 3, axis=-1)) == pytest.approx(ssim(a, b), abs=1e-12)


def test_ssim_channels() -> None:
    a = _field((3, 12, 16), 5)
    b = a * 0.9
    expected = np.mean([ssim(a[q], b[q], data_range_=data_range(a)) for q in range(3)])
    assert ssim(a, b) == pytest.approx(expected)


def test_degenerate_frames_do_not_crash() -> None:
    flat = np.full(16, 2.0)
    same = compare_frame(flat, flat.copy())
    assert same["rmse"] == 0.0 and same["rmse_rel"] == 0.0 and same["psnr"] == math.inf and same["ssim"] == 1.0
    assert math.isnan(same["pearson"])
    other = compare_frame(flat, flat + 1.0)
    assert other["rmse"] == 1.0
    assert other["rmse_rel"] == math.inf
    assert other["psnr"] == -math.inf
    assert math.isnan(other["pearson"]) and math.isnan(other["ssim"])
    nan = compare_frame(np.array([1.0, np.nan, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 3.0]))
    assert all(math.isnan(v) for k, v in nan.items() if k != "psnr")
    with pytest.raises(ValueError, match="shapes"):
        rmse(np.zeros(4), np.zeros(5))


# ------------------------------------------------------------------------------------------ descriptors

L, N = 128.0, 256
X = np.arange(N) * (L / N)


def test_roughness_and_max_height() -> None:
    h = 5.0 + 2.0 * np.cos(2 * np.pi * 3 * X / L)
    assert desc.roughness(h) == pytest.approx(2.0 / np.sqrt(2))
    assert desc.max_height(h) == pytest.approx(7.0)
    assert desc.roughness(np.full(N, 4.0)) == 0.0


def test_dominant_wavelength() -> None:
    h = 5.0 + 0.3 * np.cos(2 * np.pi * 2 * X / L) + 1.0 * np.sin(2 * np.pi * 6 * X / L + 0.4)
    assert desc.dominant_wavelength(h, L) == pytest.approx(L / 6)
    assert math.isnan(desc.dominant_wavelength(np.full(N, 5.0), L))


def _islands(centres: list[float], height: float = 3.0, width: float = 4.0) -> np.ndarray:
    """A film of 2 nm with Gaussian islands at ``centres`` [nm] (periodic distance)."""
    h = np.full(N, 2.0)
    for c in centres:
        d = (X - c + L / 2) % L - L / 2
        h += height * np.exp(-0.5 * (d / width) ** 2)
    return h


def test_island_count_known_profiles() -> None:
    assert desc.island_count(_islands([20.0, 60.0, 100.0])) == 3
    # an island straddling the periodic boundary counts once
    assert desc.island_count(_islands([0.0, 64.0])) == 2
    assert desc.island_count(_islands([L - 1.0, 40.0])) == 2
    assert desc.island_count(np.roll(_islands([10.0, 50.0, 90.0]), 17)) == 3
    # small ripples (prominence < 1 nm) are not islands; a flat film has none
    assert desc.island_count(5.0 + 0.2 * np.cos(2 * np.pi * 8 * X / L)) == 0
    assert desc.island_count(5.0 + 0.2 * np.cos(2 * np.pi * 8 * X / L), prominence=0.1) == 8
    assert desc.island_count(np.full(N, 3.0)) == 0
    # a plateau across x = 0 is one peak
    h = np.full(N, 1.0)
    h[-3:] = 4.0
    h[:3] = 4.0
    assert desc.island_count(h) == 1


def test_registry_and_frame_descriptors() -> None:
    assert {"roughness", "dominant_wavelength", "island_count", "max_height"} <= set(desc.DESCRIPTORS["atg"])
    h = _islands([20.0, 60.0, 100.0])
    out = desc.frame_descriptors("atg", {"h": h}, (L,))
    assert out["island_count"] == 3.0
    assert out["dominant_wavelength"] == pytest.approx(L / 3)
    assert out["max_height"] == pytest.approx(h.max())
    assert desc.frame_descriptors("atg", {}, (L,)) == {}  # field not saved: left out
    assert desc.frame_descriptors("no-such-model", {"h": h}, (L,)) == {}


def test_descriptors_that_read_the_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """A descriptor registered with case=True gets the resolved case, and is left out when no case is given."""
    monkeypatch.setattr(desc, "DESCRIPTORS", {})
    monkeypatch.setattr(desc, "CASE_DESCRIPTORS", set())

    @desc.register_descriptor("toy", "above_threshold", case=True)
    def above(fields, grid_lengths, case):  # type: ignore[no-untyped-def]
        return float(np.sum(fields["patch/T"] > case["model"]["threshold"]))

    frame = {"patch/T": np.array([[1.0, 5.0], [7.0, 2.0]])}
    assert desc.frame_descriptors("toy", frame, (1.0,), {"model": {"threshold": 3.0}}) == {"above_threshold": 2.0}
    assert desc.frame_descriptors("toy", frame, (1.0,)) == {}


def test_grain_descriptors() -> None:
    labels = np.zeros((10, 20), dtype=np.int64)
    labels[:, 10:] = 1
    labels[:5, :5] = 7
    out = desc.frame_descriptors("graingrowth", {"grain": labels}, (40.0, 20.0))
    assert out["grain_count"] == 3.0
    assert out["mean_area"] == pytest.approx(800.0 / 3)
