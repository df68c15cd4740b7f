"""Ensembles of small periodic 1D CNNs evaluated in one batched forward pass.

:class:`EnsembleCNN1d` holds K independent members with stacked weights. All K are evaluated together, never
by a Python loop over members: per-member inputs (training) go through grouped convolutions (``groups = K``,
the input channels of member k in group k); an input shared by all members (inference) goes through the same
grouped convolution written as im2col + one batched matmul over the members per layer, which is several
times faster on a CPU at small N. Every convolution is

* periodic: circular padding, so the network is equivariant under rolls of the grid and runs on any N;
* reflection-symmetric: only the centre tap and one side of each kernel are parameters, the other side is
  their mirror image, so each convolution commutes with x -> -x; the pointwise nonlinearities and the
  residual sums keep that, hence the whole network is mirror-equivariant when its inputs are mirror-even
  scalars (:func:`hybrid.models.features.elastic_features`).

Output of member k at point x (in units of the target, e.g. rho/rho0)::

    y_k(x) = baseline_offset + baseline_coefficient * input[baseline_channel](x) + correction_k(x)

With the elastic features (channel 1 = Lambda h) and the defaults 1 and -4 the baseline is the small-slope law
rho/rho0 = 1 - 4 Lambda h (docs/physics.md §1), and the network learns only the nonlinear correction.

With ``linear_channels`` (the input channels that are first order in the profile, e.g. h_dev and Lambda h) the
correction's value and first-order response at the flat profile (all inputs 0) are subtracted::

    correction_k(x) = c_k(x) - c_k(0) - J_k(0) . x_lin          (J_k(0): forward-mode derivative, torch.func.jvp)

so a flat film gets exactly the baseline and the first-order response is exactly the baseline's (the small-slope
law), while any function with zero value and gradient at 0 stays representable (c_k = that function). At the
flat profile the activations are uniform in x, so J_k(0) is a translation-invariant linear map: in inference it
is applied as a cached transfer function in Fourier space (one rfft per linear channel), in training by jvp.

Architecture of one member (W = ``channels``, r = ``kernel_size // 2``, d_i = dilations cycled)::

    z_0 = act(conv_0(s * x))                   C_in -> W, kernel 2r+1, dilation d_0
    z_i = z_{i-1} + act(conv_i(z_{i-1}))       W -> W, i = 1 .. layers-1 (residual)
    c = readout(z_{layers-1})                   W -> 1, pointwise (the correction, or c_k above)

``s`` is a fixed per-input-channel scale (buffer ``input_scale``, set from training-data statistics).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

__all__ = ["ACTIVATIONS", "CudaGraphCall", "EnsembleCNN1d", "InferencePlan", "circular_pad"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": functional.gelu,
    "silu": functional.silu,
    "tanh": torch.tanh,
    "softplus": functional.softplus,
}
"""Pointwise nonlinearities by name (all smooth, so the prediction is smooth in h)."""


def circular_pad(x: Tensor, pad: int) -> Tensor:
    """Pad the last axis periodically by ``pad`` points on each side (works for any pad, even > N).

    Args:
        x: (..., N) tensor.
        pad: number of points added on each side, >= 0.

    Returns:
        (..., N + 2 pad) tensor with out[..., j] = x[..., (j - pad) mod N].
    """
    n = x.shape[-1]
    if pad == 0:
        return x
    if pad <= n:
        return torch.cat((x[..., n - pad :], x, x[..., :pad]), dim=-1)
    idx = torch.arange(-pad, n + pad, device=x.device) % n
    return x.index_select(-1, idx)


def _symmetric_kernel(taps: Tensor) -> Tensor:
    """(out, in, r+1) taps [centre, offset 1, ..., offset r] -> (out, in, 2r+1) mirror-symmetric kernel."""
    return torch.cat((taps.flip(-1), taps[..., 1:]), dim=-1)


class EnsembleCNN1d(nn.Module):
    """K-member ensemble of periodic, reflection-symmetric, residual 1D CNNs (one batched forward pass).

    Args:
        members: number of members K (>= 1).
        in_channels: input channels C_in (3 for the elastic features).
        channels: hidden channels W per member.
        layers: number of kernel convolutions per member (>= 1); a pointwise readout follows.
        kernel_size: odd kernel size 2r+1 (r+1 free taps per input/output pair).
        dilations: dilation of each kernel convolution, cycled if shorter than ``layers``.
        activation: a key of :data:`ACTIVATIONS`.
        baseline_channel: input channel added (times ``baseline_coefficient``) to the output, or -1 for none.
        baseline_coefficient: weight of the baseline channel (-4 for rho/rho0 = 1 - 4 Lambda h).
        baseline_offset: constant added to the output (1 for rho/rho0).
        readout_init: scale of the random initial readout weights (small: the untrained ensemble predicts
            close to the baseline, with a small member spread).
        linear_channels: input channels of first order in the profile whose first-order contribution to the
            correction is removed, together with its value at 0 (empty: off).
        seeds: one integer seed per member for the initial weights (default 0..K-1). Member k of a K-member
            ensemble built with seeds S starts with the same weights as a 1-member ensemble built with
            seeds [S[k]].

    Shapes:
        ``forward(x)``: x (B, C_in, N) -> (B, K, N) (the same input for every member), or
        x (B, K, C_in, N) -> (B, K, N) (member k sees x[:, k]; used in training with bootstrap batches).
    """

    input_scale: Tensor
    matmul_max_size: int = 12288
    """Largest B * N * channels evaluated by the batched-matmul path (see :meth:`forward`); 0 disables it. Set
    from benchmarks/bench_elastic.py (torch 2.13 CPU, 16 channels): the matmul path is 1.7x faster at N = 512
    (1.0 vs 1.8 ms), on a par at N = 1024."""
    linear_method: str = "fft"
    """How per-member inputs (B, K, C_in, N), the training path, get the exact linear part (``linear_channels``):
    ``"fft"`` applies the impulse responses of J(0) (one jvp on L impulses) by FFT, ``"jvp"`` runs forward-mode
    AD on the whole batch. Both are differentiable and equal up to rounding (tested); "fft" makes a training step
    about 3x cheaper (J(0) is a circular convolution: the network is periodic with uniform activations at the
    flat profile). Not saved with the model: it changes no prediction."""

    def __init__(
        self,
        members: int = 5,
        in_channels: int = 3,
        channels: int = 16,
        layers: int = 5,
        kernel_size: int = 5,
        dilations: Sequence[int] = (1, 2, 4, 8, 16),
        activation: str = "gelu",
        baseline_channel: int = 1,
        baseline_coefficient: float = -4.0,
        baseline_offset: float = 1.0,
        readout_init: float = 0.1,
        linear_channels: Sequence[int] = (),
        seeds: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if members < 1 or in_channels < 1 or channels < 1 or layers < 1:
            raise ValueError("members, in_channels, channels and layers must all be >= 1")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"dilations must be a non-empty list of integers >= 1, got {list(dilations)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not -1 <= baseline_channel < in_channels:
            raise ValueError(f"baseline_channel must be -1 or in [0, {in_channels}), got {baseline_channel}")
        self.members = int(members)
        self.in_channels = int(in_channels)
        self.channels = int(channels)
        self.layers = int(layers)
        self.kernel_size = int(kernel_size)
        self.dilations = [int(d) for d in dilations]
        self.activation = activation
        self.baseline_channel = int(baseline_channel)
        self.baseline_coefficient = float(baseline_coefficient)
        self.baseline_offset = float(baseline_offset)
        self.readout_init = float(readout_init)
        self.linear_channels = [int(c) for c in linear_channels]
        if any(not 0 <= c < in_channels for c in self.linear_channels) or len(set(self.linear_channels)) != len(
            self.linear_channels
        ):
            raise ValueError(f"linear_channels must be distinct channels in [0, {in_channels}), got {linear_channels}")
        self._linear_cache: dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[Tensor, Tensor]]] = {}
        self._act = ACTIVATIONS[activation]

        k, w, r = self.members, self.channels, self.kernel_size // 2
        self.taps = nn.ParameterList(
            [nn.Parameter(torch.empty(k * w, in_channels if i == 0 else w, r + 1)) for i in range(self.layers)]
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.empty(k * w)) for _ in range(self.layers)])
        self.readout_weight = nn.Parameter(torch.empty(k, w, 1))
        self.readout_bias = nn.Parameter(torch.empty(k))
        self.register_buffer("input_scale", torch.ones(in_channels))
        self._kernel_cache: dict[str, tuple[tuple[Any, ...], list[Tensor]]] = {}
        self.reset_parameters(seeds)

    # ------------------------------------------------------------------ construction and bookkeeping

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable, without ``seeds``): ``EnsembleCNN1d(**config())``."""
        return {
            "members": self.members,
            "in_channels": self.in_channels,
            "channels": self.channels,
            "layers": self.layers,
            "kernel_size": self.kernel_size,
            "dilations": list(self.dilations),
            "activation": self.activation,
            "baseline_channel": self.baseline_channel,
            "baseline_coefficient": self.baseline_coefficient,
            "baseline_offset": self.baseline_offset,
            "readout_init": self.readout_init,
            "linear_channels": list(self.linear_channels),
        }

    @property
    def receptive_field(self) -> int:
        """Number of grid points that influence one output point through the convolutions (before the FFT
        features, which are global)."""
        r = self.kernel_size // 2
        return 1 + 2 * r * sum(self._dilation(i) for i in range(self.layers))

    def parameter_count(self) -> int:
        """Trainable parameters of the whole ensemble (divide by ``members`` for one member)."""
        return sum(p.numel() for p in self.parameters())

    def _dilation(self, i: int) -> int:
        return self.dilations[i % len(self.dilations)]

    @torch.no_grad()
    def reset_parameters(self, seeds: Sequence[int] | None = None) -> None:
        """Initialise every member from its own seed (see the class docstring).

        Kernel taps and biases ~ U(-b, b), b = 1/sqrt(fan_in) with fan_in = in-channels * kernel size (the
        PyTorch default for convolutions); readout weights ~ U(-b, b) * ``readout_init``, readout bias 0.
        """
        k, w = self.members, self.channels
        seeds = list(range(k)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != k:
            raise ValueError(f"need one seed per member ({k}), got {len(seeds)}")
        for m, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(seed)
            block = slice(m * w, (m + 1) * w)
            for taps, bias in zip(self.taps, self.biases, strict=True):
                bound = 1.0 / math.sqrt(taps.shape[1] * self.kernel_size)
                taps[block] = _uniform(taps[block].shape, bound, gen).to(taps)
                bias[block] = _uniform(bias[block].shape, bound, gen).to(bias)
            bound = self.readout_init / math.sqrt(w)
            self.readout_weight[m] = _uniform(self.readout_weight[m].shape, bound, gen).to(self.readout_weight)
            self.readout_bias[m] = 0.0
        self._kernel_cache = {}

    def member(self, i: int) -> EnsembleCNN1d:
        """A separate 1-member network with member i's weights (same device and dtype)."""
        if not 0 <= i < self.members:
            raise IndexError(f"member index {i} out of range for {self.members} members")
        single = EnsembleCNN1d(**{**self.config(), "members": 1})
        single.to(device=self.readout_bias.device, dtype=self.readout_bias.dtype)
        single.load_state_dict(self.member_state_dict(i))
        return single

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """State dict of member i alone, loadable into a 1-member network of the same config (copies)."""
        out: dict[str, Tensor] = {}
        for name, tensor in self.state_dict().items():
            out[name] = tensor.clone() if name == "input_scale" else tensor.chunk(self.members, 0)[i].clone()
        return out

    @torch.no_grad()
    def load_member_state_dict(self, i: int, state: dict[str, Tensor]) -> None:
        """Overwrite member i's parameters with ``state`` (from :meth:`member_state_dict`); buffers shared by
        all members (``input_scale``) are left as they are."""
        own = dict(self.named_parameters())
        for name, value in state.items():
            if name in own:
                own[name].chunk(self.members, 0)[i].copy_(value)

    def forward_loop(self, x: Tensor) -> Tensor:
        """Reference evaluation: a Python loop over separately built 1-member networks (for tests only).

        Args:
            x: (B, C_in, N).

        Returns:
            (B, K, N), equal to ``forward(x)`` up to float rounding.
        """
        return torch.cat([self.member(i)(x) for i in range(self.members)], dim=1)

    # ------------------------------------------------------------------ evaluation

    def _prepared(self, kind: str) -> list[Tensor]:
        """Weights rearranged for one evaluation path; cached while gradients are off and nothing changed.

        ``"grouped"``: [full symmetric kernel (K W, C_i, 2r+1) of each layer..., readout bias + offset (K,)].
        ``"bmm"``: [layer-0 matrix (K W, C_in (2r+1)) with ``input_scale`` folded in, layer-0 bias (K W, 1),
        then per further layer its (K, W, W (2r+1)) matrix and (K, W, 1) bias, readout (K, 1, W), readout
        bias + offset (K, 1, 1)].
        """
        if torch.is_grad_enabled():
            self._kernel_cache = {}
            return self._build(kind)
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in (*self.parameters(), self.input_scale))
        hit = self._kernel_cache.get(kind)
        if hit is None or hit[0] != key:
            hit = (key, self._build(kind))
            self._kernel_cache[kind] = hit
        return hit[1]

    def _build(self, kind: str) -> list[Tensor]:
        kernels = [_symmetric_kernel(t) for t in self.taps]
        if kind == "grouped":
            return [*kernels, self.readout_bias + self.baseline_offset]
        k, w = self.members, self.channels
        first = (kernels[0] * self.input_scale[:, None]).flatten(1)
        out = [first, self.biases[0][:, None]]
        for kernel, bias in zip(kernels[1:], self.biases[1:], strict=True):
            out += [kernel.reshape(k, w, -1), bias.view(k, w, 1)]
        out += [self.readout_weight.view(k, 1, w), (self.readout_bias + self.baseline_offset).view(k, 1, 1)]
        return out

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> EnsembleCNN1d:
        self._kernel_cache = {}  # .to(), .cuda(), .double() ...
        self._linear_cache = {}
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate all members at once.

        A shared input (B, C_in, N) with B N W <= :attr:`matmul_max_size` goes through the batched-matmul
        path: each layer is one im2col (a strided view of the circularly padded activations, copied once) and
        one ``baddbmm`` over the K members with stacked weights; the first layer, whose input is common to
        all members, is a single matmul. This is the grouped convolution written out, 2-3x faster than
        ``conv1d(groups=K)`` on a CPU for small inputs (per-call overhead), slower for large ones (the im2col
        copy). Larger shared inputs and per-member inputs (B, K, C_in, N) (training with bootstrap batches)
        use ``conv1d(groups=K)``. Both paths give the same result to float rounding (tested).

        Args:
            x: (B, C_in, N) features shared by all members, or (B, K, C_in, N) one input per member; any N.

        Returns:
            (B, K, N) prediction of each member (e.g. rho/rho0), dtype of the parameters.
        """
        k, c = self.members, self.in_channels
        x = x.to(self.readout_bias.dtype)
        if x.ndim == 3 and x.shape[1] == c:
            out = self._raw(x)
            if self.linear_channels:
                out = out - self._linear_part_shared(x)
            base = x[:, self.baseline_channel].unsqueeze(1) if self.baseline_channel >= 0 else None
        elif x.ndim == 4 and x.shape[1] == k and x.shape[2] == c:
            out = self._forward_grouped(x)
            if self.linear_channels:
                if self.linear_method == "jvp":
                    out = out - self._linear_part_jvp(self._forward_grouped, x)
                else:
                    out = out - self._linear_part_fft(x)
            base = x[:, :, self.baseline_channel] if self.baseline_channel >= 0 else None
        else:
            raise ValueError(f"expected input (B, {c}, N) or (B, {k}, {c}, N), got {tuple(x.shape)}")
        if base is not None:
            out = torch.add(out, base, alpha=self.baseline_coefficient)
        return out

    def _raw(self, x: Tensor) -> Tensor:
        """(B, C_in, N) shared input -> (B, K, N) correction + offset by the faster path for its size."""
        if x.shape[0] * x.shape[2] * self.channels <= self.matmul_max_size:
            return self._forward_shared(x)
        return self._forward_grouped(x.unsqueeze(1).expand(-1, self.members, -1, -1))

    def _linear_tangent(self, x: Tensor) -> Tensor:
        """x with every channel that is not in ``linear_channels`` set to 0 (the first-order direction)."""
        mask = torch.zeros(self.in_channels, dtype=x.dtype, device=x.device)
        mask[self.linear_channels] = 1.0
        return x * mask[:, None]

    def _linear_part_jvp(self, path: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """c(0) - offset + J(0) . x_lin by forward-mode AD (differentiable: used in training)."""
        value, jvp = torch.func.jvp(path, (torch.zeros_like(x),), (self._linear_tangent(x),))[:2]
        return value - self.baseline_offset + jvp

    def _linear_part_shared(self, x: Tensor) -> Tensor:
        """(B, C_in, N) -> (B, K, N) c(0) - offset + J(0) . x_lin; by jvp while gradients are on, otherwise from
        a cached transfer function (the impulse response of J(0) on this N, in Fourier space)."""
        if torch.is_grad_enabled():
            return self._linear_part_jvp(self._raw, x)
        n = x.shape[-1]
        key = (n, x.dtype, x.device, *((t.data_ptr(), t._version) for t in (*self.parameters(), self.input_scale)))
        hit = self._linear_cache.get(key[:3])
        if hit is None or hit[0] != key:
            hit = (key, self._linear_transfer(n, x.dtype, x.device))
            if len(self._linear_cache) > 16:
                self._linear_cache.clear()
            self._linear_cache[key[:3]] = hit
        value0, transfer = hit[1]  # (K, 1), (L, K, N//2+1)
        spectra = torch.fft.rfft(x[:, self.linear_channels], dim=-1)  # (B, L, N//2+1)
        linear = torch.fft.irfft(torch.einsum("blm,lkm->bkm", spectra, transfer), n=n, dim=-1)
        return value0 + linear

    @torch.no_grad()
    def _linear_transfer(self, n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """(c(0) - offset (K, 1), rfft of J(0)'s impulse response to each linear channel (L, K, N//2+1)) on N points."""
        return self._impulse_transfer(self._raw, n, dtype, device)

    def _impulse_transfer(
        self, path: Callable[[Tensor], Tensor], n: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """:meth:`_linear_transfer` through ``path``, a map of shared inputs (B, C_in, N) -> (B, K, N)."""
        value0, response = self._impulse_response(n, dtype, device, path)
        return value0, torch.fft.rfft(response, dim=-1)

    def _impulse_response(
        self, n: int, dtype: torch.dtype, device: torch.device, path: Callable[[Tensor], Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """(c(0) - offset (K, 1), impulse response of J(0) to each linear channel (L, K, N)) on N points, in
        direct space: response[l, k, m] is member k's output at x = m for a unit impulse of channel l at x = 0
        (zero beyond the receptive field, wrapped periodically on small N). ``path`` maps shared inputs
        (B, C_in, N) -> (B, K, N) (default: the shared-input path)."""
        impulses = torch.zeros(len(self.linear_channels), self.in_channels, n, dtype=dtype, device=device)
        for i, ch in enumerate(self.linear_channels):
            impulses[i, ch, 0] = 1.0
        with torch.no_grad() if path is None else contextlib.nullcontext():
            value, response = torch.func.jvp(path or self._raw, (torch.zeros_like(impulses),), (impulses,))[:2]
        # value (L, K, N): c(0), uniform in x; response[i] (K, N): impulse response to channel i
        return value[0, :, :1] - self.baseline_offset, response

    def _linear_part_fft(self, x: Tensor) -> Tensor:
        """(B, K, C_in, N) per-member inputs -> (B, K, N) c(0) - offset + J(0) . x_lin, differentiable: the impulse
        responses of J(0) (a jvp through the grouped path on L impulses instead of the B samples) applied by FFT."""
        n = x.shape[-1]
        grouped = lambda z: self._forward_grouped(z.unsqueeze(1).expand(-1, self.members, -1, -1))  # noqa: E731
        value0, transfer = self._impulse_transfer(grouped, n, x.dtype, x.device)
        spectra = torch.fft.rfft(x[:, :, self.linear_channels], dim=-1)  # (B, K, L, N//2+1)
        linear = torch.fft.irfft(torch.einsum("bklm,lkm->bkm", spectra, transfer), n=n, dim=-1)
        return value0 + linear

    def _forward_shared(self, x: Tensor) -> Tensor:
        """(B, C_in, N) -> (B, K, N) correction + offset, batched matmuls (see :meth:`forward`)."""
        return _shared_matmul_forward(
            x, self._prepared("bmm"), self.members, self.kernel_size, self._dilations_of_layers(), self._act
        )

    def _dilations_of_layers(self) -> list[int]:
        return [self._dilation(i) for i in range(self.layers)]

    def _forward_grouped(self, x: Tensor) -> Tensor:
        """(B, K, C_in, N) -> (B, K, N) correction + offset, grouped convolutions (groups = K)."""
        k, r = self.members, self.kernel_size // 2
        z = (x * self.input_scale[:, None]).flatten(1, 2)
        *kernels, readout_bias = self._prepared("grouped")
        for i, (kernel, bias) in enumerate(zip(kernels, self.biases, strict=True)):
            d = self._dilation(i)
            y = self._act(functional.conv1d(circular_pad(z, r * d), kernel, bias, dilation=d, groups=k))
            z = y if i == 0 else z + y
        return functional.conv1d(z, self.readout_weight, readout_bias, groups=k)


class InferencePlan:
    """Inference of an :class:`EnsembleCNN1d` on inputs shared by all members, with the weights frozen.

    The elastic monitor calls the ensemble once per time step on one profile of fixed length N. At N ~ 100
    such a call is a few hundred microseconds, most of it per-operation overhead, so this plan does once what
    :meth:`EnsembleCNN1d.forward` checks or builds on every call: the batched-matmul weights, the linear
    part's transfer function and the dispatch on input shape and size. It evaluates the same operations in the
    same order as ``forward`` on a shared input, so the result equals ``model(x)`` bit for bit (tested: a run
    and its captures do not depend on which of the two served it); inputs too large for the matmul path
    (``B N W > model.matmul_max_size``) go to ``model(x)``.

    The plan is a snapshot: later changes to the model's weights do not reach it (except through the inputs
    handed to ``model(x)``); build a new plan.

    Args:
        model: the ensemble (its dtype and device are the plan's).
        n: profile length N the plan is built for.

    Shapes:
        ``plan(x)``: x (B, C_in, N) -> (B, K, N), like ``model(x)``; call it with gradients off.
    """

    def __init__(self, model: EnsembleCNN1d, n: int) -> None:
        with torch.no_grad():
            dtype, device = model.readout_bias.dtype, model.readout_bias.device
            self.model = model
            self.n = int(n)
            self.weights = [t.detach() for t in model._build("bmm")]
            self.members, self.kernel_size = model.members, model.kernel_size
            self.dilations = model._dilations_of_layers()
            self.act = model._act
            self.dtype = dtype
            self.linear_channels = list(model.linear_channels)
            self.value0: Tensor | None = None
            self.transfer: Tensor | None = None
            if self.linear_channels:
                value0, transfer = model._linear_transfer(self.n, dtype, device)
                self.value0, self.transfer = value0, transfer  # (K, 1), (L, K, N//2+1)
            self.baseline_channel = model.baseline_channel
            self.baseline_coefficient = model.baseline_coefficient
            self.max_size = model.matmul_max_size

    def __call__(self, x: Tensor) -> Tensor:
        b, c, n = x.shape
        if n != self.n or c != self.model.in_channels:
            raise ValueError(f"plan built for input (B, {self.model.in_channels}, {self.n}), got {tuple(x.shape)}")
        x = x.to(self.dtype)
        if b * n * self.model.channels > self.max_size:
            return self.model(x)
        out = _shared_matmul_forward(x, self.weights, self.members, self.kernel_size, self.dilations, self.act)
        if self.value0 is not None and self.transfer is not None:
            spectra = torch.fft.rfft(x[:, self.linear_channels], dim=-1)  # (B, L, N//2+1)
            linear = torch.fft.irfft(torch.einsum("blm,lkm->bkm", spectra, self.transfer), n=n, dim=-1)
            out = out - (self.value0 + linear)
        if self.baseline_channel >= 0:
            out = torch.add(out, x[:, self.baseline_channel].unsqueeze(1), alpha=self.baseline_coefficient)
        return out


class CudaGraphCall:
    """``fn`` on one CUDA device, recorded once as a CUDA graph and replayed on every call.

    A batch-1 call of a small network is a few dozen short kernels; on a GPU their launch overhead, not their
    work, sets the time. A graph launches them all at once. ``fn`` must take one tensor and return tensors (or a
    tuple of them) without host-device synchronisation (no ``.item()``, no tensors made from host data, no
    data-dependent shapes); it is run three times on a side stream first, so that caches (FFT plans, the
    inference plan's buffers) exist before the recording. Call with gradients off.

    Args:
        fn: the function to record.
        example: an input of the shape, dtype and device every later call has.

    Shapes:
        ``call(x)``: x like ``example`` (any device or dtype: it is copied into the graph's input buffer) ->
        ``fn``'s outputs. They are the graph's own buffers, overwritten by the next call: copy what you keep.
    """

    def __init__(self, fn: Callable[[Tensor], Any], example: Tensor) -> None:
        if example.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA tensor, got one on {example.device}")
        self.shape = tuple(example.shape)
        self.input = example.detach().clone()
        side = torch.cuda.Stream(device=example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                fn(self.input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = fn(self.input)

    def __call__(self, x: Tensor) -> Any:
        if tuple(x.shape) != self.shape:
            raise ValueError(f"graph recorded for input shape {self.shape}, got {tuple(x.shape)}")
        self.input.copy_(x)
        self.graph.replay()
        return self.output


def _shared_matmul_forward(
    x: Tensor,
    p: Sequence[Tensor],
    members: int,
    kernel_size: int,
    dilations: Sequence[int],
    act: Callable[[Tensor], Tensor],
) -> Tensor:
    """(B, C_in, N) shared input -> (B, K, N) correction + offset with the ``"bmm"`` weights ``p`` of
    :meth:`EnsembleCNN1d._prepared`: per layer one im2col and one (batched) matmul over the K members."""
    b, _, n = x.shape
    k, r = members, kernel_size // 2
    w = p[1].shape[0] // k
    d = dilations[0]
    cols = _im2col(circular_pad(x.transpose(0, 1), r * d), kernel_size, d, n)  # (C_in ks, B N)
    z = act(torch.addmm(p[1], p[0], cols)).view(k, w, b, n)
    for i in range(1, len(dilations)):
        d = dilations[i]
        cols = _im2col(circular_pad(z, r * d), kernel_size, d, n)  # (K, W ks, B N)
        z = z + act(torch.baddbmm(p[2 * i + 1], p[2 * i], cols)).view(k, w, b, n)
    out = torch.baddbmm(p[-1], p[-2], z.view(k, w, b * n))  # (K, 1, B N)
    return out.view(k, b, n).transpose(0, 1)


def _im2col(zp: Tensor, kernel_size: int, dilation: int, n: int) -> Tensor:
    """Columns of a dilated convolution from circularly padded activations.

    Args:
        zp: (..., C, B, N + 2 r dilation) padded activations.
        kernel_size: 2r + 1.
        dilation: tap spacing.
        n: output length N.

    Returns:
        (..., C kernel_size, B N): entry [(c, j), (b, x)] = zp[c, b, x + j dilation].
    """
    zp = zp.contiguous()
    *lead, c, b, _ = zp.shape
    st = zp.stride()
    view = zp.as_strided((*lead, c, kernel_size, b, n), (*st[:-3], st[-3], dilation, st[-2], 1), zp.storage_offset())
    return view.reshape(*lead, c * kernel_size, b * n)


def _uniform(shape: torch.Size, bound: float, gen: torch.Generator) -> Tensor:
    """U(-bound, bound) samples drawn on the CPU from ``gen`` (reproducible on any device)."""
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2.0 - 1.0) * bound
