"""The laser's patch surrogate: autoencoders of the patch temperature and an MLP ensemble between their codes.

The term ``patch_temperature`` (docs/laser.md) is a (pz, px) field [K] on the box that moves with the spot. The
surrogate predicts the melt-pool patch (provider ``cfd``) from the coarse field on the same box (provider
``coarse``) and the laser, in the normalised temperature θ = (T − T∞)/(T_l − T∞):

    z_c = E_c (θ_coarse − μ_c)                       encoder of the coarse field: its code, ``coarse_latent`` numbers
    x   = (z_c, q′, v)                               q′ = A P / W_eff [W/m], v [m/s] (standardised with the data's
                                                     mean and standard deviation)
    z_k = MLP_k(x),  k = 1..K                        the ensemble: each member's code of the correction
    θ_k = θ_coarse + μ_r + D_r (s ⊙ z_k)            decoder of the correction θ_cfd − θ_coarse, ``latent`` numbers

E_c and D_r are orthonormal principal-component bases (a linear autoencoder: encode = projection, decode = its
transpose) fitted by SVD on the training fields; s the standard deviation of each correction component in the
training data. With ``encoder = "conv"`` the correction's autoencoder is convolutional instead
(:class:`ConvAutoencoder`: three stride-2 3×3 convolutions with GELU to ``latent`` numbers, and transposed
convolutions back) of the correction standardised by one scale σ_r, and D_r(s ⊙ z) above is σ_r times its
decoder; the coarse field's code stays the linear one.
The correction is decoded onto the coarse field itself, so the fine detail the coarse field carries beyond its code
is kept. The members' spread is the monitor's uncertainty: u = mean over the patch of
std_k(T_k) / mean_k(T_k), the same units as the error ``mare`` = mean over the patch of |T − T_cfd| / T_cfd.
Novelty: the Mahalanobis distance of z_c from the training inputs' codes (their mean and inverse covariance); beyond
``novelty_limit`` (a quantile of the training inputs' own distances) an input is outside what the surrogate learned,
whatever the members' spread says.

Inference runs in float32 by default (the provider's ``dtype``); the model is a torch module whose float64 copy is
the reference.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ENCODERS", "ConvAutoencoder", "PatchSurrogateNet", "mare", "pca_basis", "relative_spread"]

ENCODERS = ("linear", "conv")
"""The correction's autoencoder: principal components (``linear``) or :class:`ConvAutoencoder` (``conv``)."""


def _halved(n: int, stages: int) -> list[int]:
    """Sizes of an axis of n cells after each of ``stages`` stride-2 convolutions (kernel 3, padding 1)."""
    sizes = [n]
    for _ in range(stages):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder of standardised fields x (B, pz·px) <-> codes (B, latent).

    Encoder: three stride-2 3×3 convolutions (1 -> c -> 2c -> 4c channels, GELU after each), flattened, one linear
    layer to ``latent``. Decoder: one linear layer back to (4c, pz/8, px/8), GELU, three stride-2 3×3 transposed
    convolutions (4c -> 2c -> c -> 1, GELU between), which restore (pz, px) exactly (output padding per axis).

    Args:
        shape: (pz, px) of the field.
        latent: size of the code.
        channels: c, the channels of the first stage.
    """

    stages = 3

    def __init__(self, shape: tuple[int, int], latent: int, channels: int = 8) -> None:
        super().__init__()
        self.shape = (int(shape[0]), int(shape[1]))
        c = [1] + [channels * 2**i for i in range(self.stages)]
        hz, hx = _halved(self.shape[0], self.stages), _halved(self.shape[1], self.stages)
        self.bottom = (c[-1], hz[-1], hx[-1])
        flat = c[-1] * hz[-1] * hx[-1]
        enc: list[nn.Module] = []
        for a, b in itertools.pairwise(c):
            enc += [nn.Conv2d(a, b, 3, stride=2, padding=1, dtype=torch.float64), nn.GELU()]
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, latent, dtype=torch.float64))
        self.expand = nn.Linear(latent, flat, dtype=torch.float64)
        dec: list[nn.Module] = [nn.GELU()]
        for i in range(self.stages, 0, -1):  # bottom -> top: stage i restores the sizes hz[i-1], hx[i-1]
            pad = (hz[i - 1] - 2 * hz[i] + 1, hx[i - 1] - 2 * hx[i] + 1)
            dec.append(nn.ConvTranspose2d(c[i], c[i - 1], 3, stride=2, padding=1, output_padding=pad,
                                          dtype=torch.float64))  # fmt: skip
            if i > 1:
                dec.append(nn.GELU())
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (B, latent) of standardised fields x (B, pz·px)."""
        return self.encoder(x.reshape(-1, 1, *self.shape))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised fields (B, pz·px) of codes z (B, latent)."""
        h = self.expand(z).reshape(-1, *self.bottom)
        return self.decoder(h).reshape(z.shape[0], -1)


class PatchSurrogateNet(nn.Module):
    """Coarse patch field + laser -> K members' patch fields (see the module docstring).

    Args:
        shape: (pz, px) of the patch.
        coarse_latent: size of the coarse field's code.
        latent: size of the correction's code.
        params: number of laser inputs (2: q′, v).
        members: ensemble size K (>= 2).
        hidden: width of each member's hidden layers.
        layers: hidden layers per member (>= 1).
        encoder: the correction's autoencoder, one of :data:`ENCODERS`.
        channels: channels of the first stage of the ``conv`` autoencoder.
    """

    coarse_mean: torch.Tensor
    coarse_basis: torch.Tensor
    correction_mean: torch.Tensor
    correction_basis: torch.Tensor
    correction_scale: torch.Tensor
    code_scale: torch.Tensor
    input_mean: torch.Tensor
    input_scale: torch.Tensor
    novelty_mean: torch.Tensor
    novelty_precision: torch.Tensor
    novelty_limit: torch.Tensor

    def __init__(
        self,
        shape: tuple[int, int] | list[int] = (30, 120),
        coarse_latent: int = 8,
        latent: int = 16,
        params: int = 2,
        members: int = 5,
        hidden: int = 64,
        layers: int = 2,
        encoder: str = "linear",
        channels: int = 8,
    ) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if members < 2 or layers < 1 or min(coarse_latent, latent, hidden, params, channels) < 1:
            raise ValueError(
                f"needs members >= 2, layers >= 1 and positive sizes, got members={members}, layers={layers}, "
                f"coarse_latent={coarse_latent}, latent={latent}, hidden={hidden}, params={params}"
            )
        self.shape = (int(shape[0]), int(shape[1]))
        self.coarse_latent, self.latent, self.params = int(coarse_latent), int(latent), int(params)
        self.members, self.hidden, self.layers = int(members), int(hidden), int(layers)
        self.encoder, self.channels = encoder, int(channels)
        n = self.shape[0] * self.shape[1]
        # the autoencoders and the standardisations: fixed after fitting, saved with the weights
        self.register_buffer("coarse_mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("coarse_basis", torch.zeros(self.coarse_latent, n, dtype=torch.float64))
        self.register_buffer("correction_mean", torch.zeros(n, dtype=torch.float64))
        self.autoencoder: ConvAutoencoder | None = None
        if encoder == "linear":
            self.register_buffer("correction_basis", torch.zeros(self.latent, n, dtype=torch.float64))
        else:  # the correction standardised by one scale, (Δθ − μ_r) / σ_r, is what the autoencoder sees
            self.register_buffer("correction_scale", torch.ones(1, dtype=torch.float64))
            self.autoencoder = ConvAutoencoder(self.shape, self.latent, self.channels)
        self.register_buffer("code_scale", torch.ones(self.latent, dtype=torch.float64))
        n_in = self.coarse_latent + self.params
        self.register_buffer("input_mean", torch.zeros(n_in, dtype=torch.float64))
        self.register_buffer("input_scale", torch.ones(n_in, dtype=torch.float64))
        # the training inputs' coarse codes: mean, inverse covariance and the novelty limit (module docstring)
        self.register_buffer("novelty_mean", torch.zeros(self.coarse_latent, dtype=torch.float64))
        self.register_buffer("novelty_precision", torch.eye(self.coarse_latent, dtype=torch.float64))
        self.register_buffer("novelty_limit", torch.full((1,), math.inf, dtype=torch.float64))
        sizes = [n_in] + [self.hidden] * self.layers + [self.latent]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(sizes):
            w = torch.empty(self.members, a, b, dtype=torch.float64)
            for k in range(self.members):
                nn.init.kaiming_uniform_(w[k].T, a=5**0.5)  # torch.nn.Linear's initialisation, per member
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(self.members, 1, b, dtype=torch.float64)))

    def config(self) -> dict[str, Any]:
        """The constructor's arguments (the card's ``architecture``)."""
        return {
            "shape": list(self.shape),
            "coarse_latent": self.coarse_latent,
            "latent": self.latent,
            "params": self.params,
            "members": self.members,
            "hidden": self.hidden,
            "layers": self.layers,
            **({"encoder": self.encoder, "channels": self.channels} if self.encoder != "linear" else {}),
        }

    def mlp_parameters(self) -> list[nn.Parameter]:
        """The members' weights and biases (what the ensemble's fit trains; the autoencoders stay frozen)."""
        return [*self.weights, *self.biases]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --------------------------------------------------------------------------------------------- pieces
    def encode(self, theta: torch.Tensor) -> torch.Tensor:
        """Code (B, coarse_latent) of coarse fields θ (B, pz·px)."""
        return (theta - self.coarse_mean) @ self.coarse_basis.T

    def novelty(self, theta: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance (B,) of the codes of coarse fields θ (B, pz·px) from the training inputs' codes;
        the monitor treats an input beyond ``novelty_limit`` as outside what the surrogate learned."""
        d = self.encode(theta) - self.novelty_mean
        return torch.sqrt(torch.clamp(((d @ self.novelty_precision) * d).sum(dim=1), min=0.0))

    def decode_coarse(self, code: torch.Tensor) -> torch.Tensor:
        """Fields θ (B, pz·px) of codes (B, coarse_latent): the coarse autoencoder's reconstruction."""
        return self.coarse_mean + code @ self.coarse_basis

    def codes(self, theta: torch.Tensor, laser: torch.Tensor) -> torch.Tensor:
        """The members' standardised correction codes (K, B, latent) of coarse fields θ (B, pz·px) and laser
        inputs (B, params)."""
        x = (torch.cat([self.encode(theta), laser], dim=1) - self.input_mean) / self.input_scale
        h = x.unsqueeze(0).expand(self.members, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.tanh(h)
        return h

    def encode_correction(self, corr: torch.Tensor) -> torch.Tensor:
        """Standardised codes (B, latent) of corrections Δθ (B, pz·px): the inverse of :meth:`decode` up to the
        autoencoder's reconstruction error."""
        if self.autoencoder is None:
            z = (corr - self.correction_mean) @ self.correction_basis.T
        else:
            z = self.autoencoder.encode((corr - self.correction_mean) / self.correction_scale)
        return z / self.code_scale

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Corrections Δθ (..., pz·px) of standardised codes (..., latent)."""
        if self.autoencoder is None:
            return self.correction_mean + (codes * self.code_scale) @ self.correction_basis
        flat = (codes * self.code_scale).reshape(-1, self.latent)
        out = self.correction_mean + self.correction_scale * self.autoencoder.decode(flat)
        return out.reshape(*codes.shape[:-1], out.shape[-1])

    def forward(self, theta: torch.Tensor, laser: torch.Tensor) -> torch.Tensor:
        """Members' patch fields θ_k (K, B, pz·px) of coarse fields θ (B, pz·px) and laser inputs (B, params)."""
        return theta.unsqueeze(0) + self.decode(self.codes(theta, laser))


def pca_basis(x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (n,), orthonormal basis (rank, n), singular values (min(S, n),)) of samples x (S, n), float64."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    if rank > vt.shape[0]:
        raise ValueError(f"a code of {rank} numbers needs at least {rank} samples, got {x.shape[0]}")
    return mean, vt[:rank], s


def mare(pred: Any, target: Any) -> Any:
    """Mean absolute relative error over the last two axes (the patch): mean |pred − target| / target."""
    return (abs(pred - target) / target).mean(axis=(-2, -1))


def relative_spread(members: torch.Tensor) -> torch.Tensor:
    """u (B,) of members' temperatures (K, B, pz, px) [K]: mean over the patch of std_k(T_k) / mean_k(T_k)."""
    return (members.std(dim=0) / members.mean(dim=0)).mean(dim=(-2, -1))
