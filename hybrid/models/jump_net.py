"""Whole-model jump surrogate for multi-order-parameter fields: one shared-backbone CNN ensemble per field.

The network advances order parameters η_q (Q, ny, nx), q = 0..Q−1, by a fixed time jump (``jump`` DNS steps)
at once. It is applied to every order parameter with the same weights, each seeing

    input channels   ``features``, a subset in this order of
                     "eta":  η_q
                     "psi":  ψ_q = Σ_{p≠q} η_p²   (the coupling field of the Fan–Chen free energy)
                     "rate": τ · ∂η_q/∂t, the DNS right-hand side at the start of the window times the window's
                             time τ = jump·dt (its linear extrapolation; supplied by the caller, who owns the model)
    output           Δη_q^(k) = η_q(t + jump·dt) − η_q(t),  one map per ensemble member k = 1..K

so the prediction is *equivariant under any permutation of the order parameters* (ψ_q is symmetric in the
others, and the rate of η_q depends on the others only through ψ_q) and, with periodic input, under translations.
It also runs on any grid size. The rate channel carries the local physics (curvature, junction forces) that a
small receptive field cannot infer from η alone: on the grain-growth trajectories it lowers the held-out window
error of the same network from 0.42 to 0.25 at equal training (see training/graingrowth_surrogate.toml).

Architecture (:class:`EnsembleJumpNet2d`): a backbone of ``len(dilations)`` 3×3 valid (unpadded) convolutions
with the given dilations and a GELU after each, shared by all members, then per member a 1×1 head (hidden
``head_channels``, GELU, 1 output). Members differ only in their heads, trained on different bootstrap
resamples; their spread is one uncertainty indicator (cheap: the backbone, most of the cost, runs once), the
rate residual (:func:`rate_residual`) the other; the shipped grain-growth card uses the residual, which tracks the
window error where the heads' spread does not (:data:`INDICATORS`).
The receptive-field radius is ``halo = sum(dilations)`` grid points: an input tile of (T + 2·halo)² points
gives the T² output points in its interior.

Sparse (tiled) inference, :func:`jump_members`: η_q changes during a jump only near the interfaces of the
grains carried by q; far from them η_q sits at a fixed point (0 or 1). The grid is cut into ``tile`` × ``tile``
tiles; a (field, tile) pair is evaluated only when η_q varies by more than ``activity`` (max − min) over the tile
and its halo (an interface, its exponential tails or a sharp initial boundary is near); elsewhere η_q is uniform
(bulk of a grain, or absent) and is left unchanged exactly. Tiles are gathered with their halo
from the periodically padded fields into one batch, so the work scales with the interface area rather than
with Q × grid size. Inference runs in the network's dtype (float32 by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (the torch convention)

__all__ = [
    "FEATURES",
    "INDICATORS",
    "EnsembleJumpNet2d",
    "JumpPrediction",
    "field_inputs",
    "jump_members",
    "rate_residual",
    "relative_spread",
    "window_error",
]


FEATURES = ("eta", "psi", "rate")
"""Input channels a jump network may take (:func:`field_inputs`), in this order."""

CPU_BATCH_BYTES = 8 * 2**20
"""Bytes of one backbone activation (tiles × channels × window² × itemsize) per CPU forward pass. Activations that
stay in the last-level cache run the convolutions about 2x faster than the 256 tiles of 32² per pass used before
(shipped network, 2 cores: 509 ns against 1043 ns per output point; 128 tiles 654 ns, 8 tiles 542 ns)."""
GPU_BATCH = 256
"""Tiles per forward pass on an accelerator, where large batches keep the device busy."""


class EnsembleJumpNet2d(nn.Module):
    """K-member ensemble with a shared backbone; valid convolutions (output is 2·halo smaller per axis).

    Args:
        members: ensemble size K (>= 2).
        channels: backbone width C.
        dilations: one 3×3 convolution per entry, with that dilation.
        head_channels: hidden width of each member's 1×1 head.
        features: input channels, a subsequence of :data:`FEATURES`.
    """

    def __init__(
        self,
        members: int = 5,
        channels: int = 16,
        dilations: Sequence[int] = (1, 2, 2, 1),
        head_channels: int = 8,
        features: Sequence[str] = ("eta", "psi"),
    ) -> None:
        super().__init__()
        if members < 2:
            raise ValueError(f"members must be >= 2, got {members}")
        if not dilations or min(dilations) < 1:
            raise ValueError(f"dilations must be a non-empty list of integers >= 1, got {list(dilations)}")
        self.members = int(members)
        self.channels = int(channels)
        self.dilations = tuple(int(d) for d in dilations)
        self.head_channels = int(head_channels)
        self.features = tuple(str(f) for f in features)
        if not self.features or [f for f in FEATURES if f in self.features] != list(self.features):
            raise ValueError(f"features must be a non-empty subsequence of {list(FEATURES)}, got {list(features)}")
        self.inputs = len(self.features)
        convs = []
        c_in = self.inputs
        for d in self.dilations:
            convs.append(nn.Conv2d(c_in, self.channels, 3, dilation=d))
            c_in = self.channels
        self.backbone = nn.ModuleList(convs)
        self.head_hidden = nn.Conv2d(self.channels, self.members * self.head_channels, 1)
        self.head_out = nn.Conv2d(self.members * self.head_channels, self.members, 1, groups=self.members)
        assert self.head_out.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(self.head_out.bias)
        with torch.no_grad():  # start near "no change": small output weights
            self.head_out.weight.mul_(0.1)

    @property
    def halo(self) -> int:
        """Receptive-field radius [grid points]: the output is ``halo`` points smaller on each side."""
        return sum(self.dilations)

    @property
    def needs_rate(self) -> bool:
        """True when the network takes the DNS rate channel (the caller must supply it)."""
        return "rate" in self.features

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) inputs -> (B, K, H − 2·halo, W − 2·halo) predicted changes Δη, one per member.

        Without autograd, on a CPU, in float32 or bfloat16, every convolution followed by a GELU is one oneDNN
        convolution with the (exact, erf) GELU applied to its accumulator (:func:`_fused_conv_gelu`): float32 gives
        the unfused values to float32 rounding, 1.2-1.3x faster (shipped network, 24-96 tiles); bfloat16 1.6x
        faster, and a little closer to the float32 answer than rounding each convolution's output to bfloat16
        before its GELU. Otherwise (autograd, float64, other devices) the GELUs run in place on the convolutions'
        outputs without autograd (the same values; on CPU about half the time of a new tensor per GELU)."""
        if not torch.is_grad_enabled() and _fusable(x):
            for conv in self.backbone:
                x = _fused_conv_gelu(x, cast(nn.Conv2d, conv))
            return self.head_out(_fused_conv_gelu(x, self.head_hidden))
        act = F.gelu if torch.is_grad_enabled() else torch.ops.aten.gelu_
        for conv in self.backbone:
            x = act(conv(x))
        return self.head_out(act(self.head_hidden(x)))

    def config(self) -> dict[str, Any]:
        """Constructor arguments (the model card's ``architecture``)."""
        return {
            "members": self.members,
            "channels": self.channels,
            "dilations": list(self.dilations),
            "head_channels": self.head_channels,
            "features": list(self.features),
        }

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs_per_point(self) -> int:
        """Multiply-adds per output point and order parameter (all members)."""
        c, k, h = self.channels, self.members, self.head_channels
        first = 9 * self.inputs * c
        rest = 9 * c * c * (len(self.dilations) - 1)
        return first + rest + c * k * h + k * h


_CONV_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
"""oneDNN's convolution with a fused elementwise post-op (the op torch's inductor emits on CPU); None where this
torch build lacks it, and the unfused path serves."""
_fusion_failed = False


def _fusable(x: Tensor) -> bool:
    """True when :func:`_fused_conv_gelu` serves ``x``: a CPU tensor in float32 or bfloat16, oneDNN present."""
    return (
        _CONV_POINTWISE is not None
        and not _fusion_failed
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
    )


def _fused_conv_gelu(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """GELU(conv(x)) (exact erf GELU) as one oneDNN convolution with a GELU post-op; the unfused F.gelu(conv(x))
    if oneDNN refuses it (then for the rest of the process)."""
    global _fusion_failed
    if not _fusion_failed:
        try:
            assert _CONV_POINTWISE is not None
            geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
            return _CONV_POINTWISE(x, conv.weight, conv.bias, *geometry, "gelu", [], "none")
        except RuntimeError:
            _fusion_failed = True
    return F.gelu(conv(x))


def field_inputs(eta: Tensor, features: Sequence[str] = ("eta", "psi"), rate: Tensor | None = None) -> Tensor:
    """Per-order-parameter inputs: (Q, ny, nx) η -> (Q, C, ny, nx), the channels ``features`` (:data:`FEATURES`).

    Args:
        eta: (Q, ny, nx) order parameters.
        features: the network's input channels.
        rate: (Q, ny, nx) τ · ∂η/∂t of the DNS (required when "rate" is a feature), in η's dtype and device.
    """
    channels = []
    for name in features:
        if name == "eta":
            channels.append(eta)
        elif name == "psi":
            sq = eta * eta
            channels.append(sq.sum(dim=0, keepdim=True) - sq)
        elif name == "rate":
            if rate is None:
                raise ValueError("this jump network takes the DNS rate channel: pass rate = τ · dη/dt")
            channels.append(rate.to(dtype=eta.dtype, device=eta.device))
        else:
            raise ValueError(f"unknown feature {name!r}; allowed: {list(FEATURES)}")
    return torch.stack(channels, dim=1)


class JumpPrediction:
    """Result of one tiled ensemble evaluation.

    Attributes:
        mean: (Q, ny, nx) ensemble-mean η after the jump (input dtype/device), clipped to [0, 1].
        spread: (Q, ny, nx) ensemble standard deviation of Δη (ddof 0), zero on skipped tiles; None when not asked
            for (``jump_members(..., spread=False)``).
        active: (Q, ny, nx) bool, the points that were evaluated (the union of the active tiles).
        tiles: number of (field, tile) pairs evaluated; total: Q × number of tiles.
    """

    def __init__(self, mean: Tensor, spread: Tensor | None, active: Tensor, tiles: int, total: int) -> None:
        self.mean = mean
        self.spread = spread
        self.active = active
        self.tiles = tiles
        self.total = total

    @property
    def active_fraction(self) -> float:
        return self.tiles / self.total if self.total else 0.0


def _active_tiles(eta: Tensor, tile: int, halo: int, activity: float) -> Tensor:
    """(Q, ty, tx) bool: tiles over whose (tile + halo) window η_q varies by more than ``activity``."""
    x = eta[:, None]
    padded = F.pad(x, (halo, halo, halo, halo), mode="circular") if halo else x
    k = tile + 2 * halo
    hi = F.max_pool2d(padded, kernel_size=k, stride=tile)
    lo = -F.max_pool2d(-padded, kernel_size=k, stride=tile)
    return (hi - lo)[:, 0] > activity


def jump_members(
    model: EnsembleJumpNet2d,
    eta: Tensor,
    *,
    rate: Tensor | None = None,
    tile: int = 32,
    activity: float = 1e-3,
    batch: int | None = None,
    spread: bool = True,
) -> JumpPrediction:
    """Advance periodic order parameters by one jump with every member, evaluating only active tiles.

    Args:
        model: the ensemble (its dtype and device are used for inference).
        eta: (Q, ny, nx) order parameters (any float dtype, on any device; converted to the model's).
        rate: (Q, ny, nx) τ · dη/dt at ``eta`` (τ = jump·dt), for a network with the "rate" feature.
        tile: tile edge [grid points]; ny and nx must be multiples of it.
        activity: a (field, tile) pair is evaluated when max − min of η_q over the tile and its halo exceeds it.
        batch: tiles per forward pass; None: on CPU as many as keep one backbone activation within
            :data:`CPU_BATCH_BYTES` (at least 1), elsewhere :data:`GPU_BATCH`.
        spread: also return the members' spread (skip it when the indicator does not use it: ~13 % of a CPU
            window).

    A model converted to ``torch.channels_last`` (the surrogate stepper does) gets its tiles in that layout too:
    on CPU its convolutions run about 1.45x faster than in the default layout, equal to float32 rounding.

    Returns:
        :class:`JumpPrediction` (mean in ``eta``'s dtype and device).
    """
    q, ny, nx = eta.shape
    if ny % tile or nx % tile:
        raise ValueError(f"grid shape ({ny}, {nx}) must be a multiple of the tile size {tile}")
    p = next(model.parameters())
    halo = model.halo
    # the state and the update in the network's precision, but at least float32 (a bfloat16 network gets float32
    # tiles' results added to a float32 state)
    work = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32
    x_eta = eta.to(device=p.device, dtype=work)
    inputs = field_inputs(x_eta, model.features, rate)  # (Q, C, ny, nx)
    active = _active_tiles(x_eta, tile, halo, activity)  # (Q, ty, tx)
    idx = active.nonzero()  # (A, 3): q, ty, tx
    mean_delta = torch.zeros_like(x_eta)
    var = torch.zeros_like(x_eta) if spread else None
    first = next(iter(model.backbone[0].parameters()))  # the first convolution's weight
    channels_last = first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last)
    win = tile + 2 * halo
    if batch is None:
        per_tile = model.channels * win * win * p.element_size()
        batch = max(1, CPU_BATCH_BYTES // per_tile) if p.device.type == "cpu" else GPU_BATCH
    if len(idx):
        padded = F.pad(inputs, (halo, halo, halo, halo), mode="circular")
        windows = padded.unfold(2, win, tile).unfold(3, win, tile)  # (Q, 2, ty, tx, win, win), a view
        with torch.inference_mode():
            for start in range(0, len(idx), batch):
                sel = idx[start : start + batch]
                xb = windows[sel[:, 0], :, sel[:, 1], sel[:, 2]]  # (B, C, win, win)
                xb = xb.to(p.dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                out = model(xb).to(work)  # (B, K, tile, tile)
                view_m = mean_delta.view(q, ny // tile, tile, nx // tile, tile).permute(0, 1, 3, 2, 4)
                view_m[sel[:, 0], sel[:, 1], sel[:, 2]] = out.mean(dim=1)
                if var is not None:
                    view_v = var.view(q, ny // tile, tile, nx // tile, tile).permute(0, 1, 3, 2, 4)
                    view_v[sel[:, 0], sel[:, 1], sel[:, 2]] = out.var(dim=1, unbiased=False)
    active_points = active.repeat_interleave(tile, dim=1).repeat_interleave(tile, dim=2)
    new = (x_eta + mean_delta).clamp_(0.0, 1.0)
    new = torch.where(active_points, new, x_eta)
    return JumpPrediction(
        new.to(dtype=eta.dtype, device=eta.device),
        None if var is None else var.sqrt().to(device=eta.device),
        active_points.to(device=eta.device),
        len(idx),
        int(active.numel()),
    )


def window_error(predicted: Tensor, reference: Tensor, start: Tensor) -> float:
    """Relative error of a jump: ‖η_pred − η_ref‖ / ‖η_ref − η_start‖ (L2 over all points and order parameters).

    Normalised by the change of the reference over the window, it is independent of domain size and Q, and leaving
    the state unchanged scores 1. The order parameters are compared index by index: align them first where the two
    windows may have re-indexed grains differently (the surrogate stepper's audits do, see
    :meth:`hybrid.couplers.surrogate.JumpEnsemble.error`); calibration pairs are windows without re-indexing.

    Args:
        predicted, reference, start: (Q, ny, nx) order parameters after the window (NN, DNS) and before it.
    """
    ref = reference.double()
    diff = torch.linalg.vector_norm(predicted.to(ref.device).double() - ref)
    change = torch.linalg.vector_norm(ref - start.to(ref.device).double())
    return float(diff / change) if float(change) > 0 else (0.0 if float(diff) == 0 else math.inf)


def relative_spread(spread: Tensor, mean: Tensor, start: Tensor) -> float:
    """Uncertainty of a jump: ‖std_k Δη‖ / ‖mean − start‖, the ensemble spread relative to the predicted change."""
    change = torch.linalg.vector_norm((mean - start.to(mean.device)).double())
    norm = torch.linalg.vector_norm(spread.double())
    return float(norm / change) if float(change) > 0 else (0.0 if float(norm) == 0 else math.inf)


INDICATORS = ("spread", "rate_residual")
"""Uncertainty indicators of a jump a card can be calibrated for (``inference.indicator`` of the training spec):
"spread" (:func:`relative_spread`) or "rate_residual" (:func:`rate_residual`)."""


def rate_residual(rate_end: Tensor, mean: Tensor, start: Tensor, horizon: float) -> float:
    """Physics-residual indicator of a jump: τ‖∂η/∂t(η_NN)‖ / ‖η_NN − η_start‖ (L2 over points and fields).

    The DNS right-hand side at the network's answer, over the window time τ, in units of the predicted change. A
    jump that lands on the slow manifold of the dynamics (relaxed interface profiles) has a rate of the order of
    the coarsening itself; a jump that leaves profile defects (dips at junctions, wrong interface widths) has the
    fast relaxation rate of those defects on top, so the indicator grows with the error the relaxation steps and
    the next window would inherit. It costs one DNS right-hand side per window and no extra network evaluation.

    Args:
        rate_end: (Q, ny, nx) ∂η/∂t of the model at the ensemble mean ``mean``.
        mean: (Q, ny, nx) ensemble-mean answer of the jump; start: the state before the window.
        horizon: τ = jump · dt, the window's time (jump steps; the relaxation steps are not included).
    """
    change = torch.linalg.vector_norm((mean - start.to(mean.device)).double())
    norm = horizon * torch.linalg.vector_norm(rate_end.to(mean.device).double())
    return float(norm / change) if float(change) > 0 else (0.0 if float(norm) == 0 else math.inf)
