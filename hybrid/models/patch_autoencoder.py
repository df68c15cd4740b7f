"""The laser's patch surrogate: linear autoencoders of the patch temperature and an MLP ensemble between their codes.

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
training data. The correction is decoded onto the coarse field itself, so the fine detail the coarse field carries
beyond its code is kept. The members' spread is the monitor's uncertainty: u = mean over the patch of
std_k(T_k) / mean_k(T_k), the same units as the error ``mare`` = mean over the patch of |T − T_cfd| / T_cfd.

Inference runs in float32 by default (the provider's ``dtype``); the model is a torch module whose float64 copy is
the reference.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["PatchSurrogateNet", "mare", "pca_basis", "relative_spread"]


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
    """

    coarse_mean: torch.Tensor
    coarse_basis: torch.Tensor
    correction_mean: torch.Tensor
    correction_basis: torch.Tensor
    code_scale: torch.Tensor
    input_mean: torch.Tensor
    input_scale: torch.Tensor

    def __init__(
        self,
        shape: tuple[int, int] | list[int] = (30, 120),
        coarse_latent: int = 8,
        latent: int = 16,
        params: int = 2,
        members: int = 5,
        hidden: int = 64,
        layers: int = 2,
    ) -> None:
        super().__init__()
        if members < 2 or layers < 1 or min(coarse_latent, latent, hidden, params) < 1:
            raise ValueError(
                f"needs members >= 2, layers >= 1 and positive sizes, got members={members}, layers={layers}, "
                f"coarse_latent={coarse_latent}, latent={latent}, hidden={hidden}, params={params}"
            )
        self.shape = (int(shape[0]), int(shape[1]))
        self.coarse_latent, self.latent, self.params = int(coarse_latent), int(latent), int(params)
        self.members, self.hidden, self.layers = int(members), int(hidden), int(layers)
        n = self.shape[0] * self.shape[1]
        # the autoencoders and the standardisations: fixed after fitting, saved with the weights
        self.register_buffer("coarse_mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("coarse_basis", torch.zeros(self.coarse_latent, n, dtype=torch.float64))
        self.register_buffer("correction_mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("correction_basis", torch.zeros(self.latent, n, dtype=torch.float64))
        self.register_buffer("code_scale", torch.ones(self.latent, dtype=torch.float64))
        n_in = self.coarse_latent + self.params
        self.register_buffer("input_mean", torch.zeros(n_in, dtype=torch.float64))
        self.register_buffer("input_scale", torch.ones(n_in, dtype=torch.float64))
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
        }

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --------------------------------------------------------------------------------------------- pieces
    def encode(self, theta: torch.Tensor) -> torch.Tensor:
        """Code (B, coarse_latent) of coarse fields θ (B, pz·px)."""
        return (theta - self.coarse_mean) @ self.coarse_basis.T

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

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Corrections Δθ (..., pz·px) of standardised codes (..., latent)."""
        return self.correction_mean + (codes * self.code_scale) @ self.correction_basis

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
