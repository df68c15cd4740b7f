"""Whole-ensemble CPU inference in one compiled call: :class:`FusedEnsemblePlan`.

A batch-1 call of a small :class:`~hybrid.models.ensemble.EnsembleCNN1d` through torch is a few dozen short
operations; on a CPU at N ~ 100 their per-operation overhead, not their arithmetic, sets the time. This plan runs
the same network as one numba function: per layer an im2col copy of the circularly padded activations and one
float32 matrix product (BLAS sgemm through ``np.dot``) per member, the bias, activation and residual sum in the
same pass over the product, the activations kept in two small buffers reused by every call. The exact linear
part of the correction (``linear_channels``) is a short circular convolution: the impulse response of J(0) has
the network's receptive field as its support, so it is applied directly, not by FFT.

Float32 throughout (the weights are float32); the result equals the torch reference
(:class:`~hybrid.models.ensemble.InferencePlan`) to float32 rounding (tested). GELU uses a rational
approximation of erf (below) accurate to 3.4e-7, the size of float32 rounding near 1, so the activation
vectorises; the other activations call the scalar math functions.

One thread: the members are evaluated one after another (BLAS is called from inside the compiled function, so
its own threading stays as configured; at these sizes it runs single-threaded).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import torch

from hybrid.models.ensemble import EnsembleCNN1d, _symmetric_kernel

__all__ = ["FusedEnsemblePlan", "erf32", "mean_and_spread"]

_ACTIVATION_CODES = {"gelu": 0, "tanh": 1, "silu": 2, "softplus": 3}

# erf(x) ~ x P(x²) / Q(x²) on |x| <= 4 (|erf| rounds to 1 in float32 beyond): degrees 6 and 4, fitted by iterated
# weighted least squares (Sanathanan–Koerner) for relative error on 4000 Chebyshev-clustered points in float64
# (tools/fit_erf.py). Evaluated in float32: max |error| 3.4e-7 on [-5, 5].
_ERF_P = (
    1.12837914e00,
    2.03696751e-01,
    5.10573908e-02,
    3.84000632e-03,
    1.43369788e-04,
    -1.92197067e-06,
    1.90993515e-08,
)
_ERF_Q = (1.0, 5.13853598e-01, 1.16540850e-01, 1.46566106e-02, 9.83610163e-04)
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (np.float32(c) for c in _ERF_P)
_Q0, _Q1, _Q2, _Q3, _Q4 = (np.float32(c) for c in _ERF_Q)


@numba.njit(fastmath=True, error_model="numpy", inline="always", cache=True)
def erf32(x: Any) -> Any:
    """erf of a float32 by the rational approximation above (vectorisable; |error| <= 3.4e-7)."""
    x = min(max(x, np.float32(-4.0)), np.float32(4.0))
    s = x * x
    p = ((((((_P6 * s + _P5) * s + _P4) * s + _P3) * s + _P2) * s + _P1) * s + _P0) * x
    q = (((_Q4 * s + _Q3) * s + _Q2) * s + _Q1) * s + _Q0
    return p / q


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _activate(y: np.ndarray, bias: np.ndarray, act: int, out: np.ndarray, residual: bool) -> None:
    """out[p, o] (+)= act(y[p, o] + bias[o]) for all p, o (``+=`` when ``residual``); one branch-free loop per
    activation, so each vectorises."""
    n, w = y.shape
    if not residual:
        for p in range(n):
            for o in range(w):
                out[p, o] = 0.0
    half, one, root_half, zero = np.float32(0.5), np.float32(1.0), np.float32(0.7071067811865476), np.float32(0.0)
    if act == 0:
        for p in range(n):
            for o in range(w):
                a = y[p, o] + bias[o]
                out[p, o] = out[p, o] + half * a * (one + erf32(a * root_half))
    elif act == 1:
        for p in range(n):
            for o in range(w):
                out[p, o] = out[p, o] + math.tanh(y[p, o] + bias[o])
    elif act == 2:
        for p in range(n):
            for o in range(w):
                a = y[p, o] + bias[o]
                out[p, o] = out[p, o] + a / (one + math.exp(-a))
    else:
        for p in range(n):
            for o in range(w):
                a = y[p, o] + bias[o]
                out[p, o] = out[p, o] + max(a, zero) + math.log1p(math.exp(-abs(a)))


@numba.njit(error_model="numpy", cache=True)
def _wrap(z: np.ndarray, pad: int, n: int) -> None:
    """Fill the circular padding rows of z (n + 2 pad, W) from its interior rows pad .. pad + n - 1."""
    for i in range(pad):
        left, right = pad + (i - pad) % n, pad + i % n
        for o in range(z.shape[1]):
            z[i, o] = z[left, o]
            z[pad + n + i, o] = z[right, o]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _member(cols0: np.ndarray, weights: Any, k: int, radius: int, act: int, buffers: Any, out: np.ndarray) -> None:
    """Member k on one input's layer-0 columns cols0 (N, ks C) -> out (N,) correction + offset (see the module).

    ``weights`` = (w0, b0, ws, bs, readout, readout_bias, dilations) of :class:`FusedEnsemblePlan`, ``buffers`` =
    (z, cols, y) its scratch arrays."""
    w0, b0, ws, bs, readout, readout_bias, dilations = weights
    z, cols, y = buffers
    n = out.shape[0]
    pad = (z.shape[0] - n) // 2
    w = b0.shape[1]
    np.dot(cols0, w0[k], y)  # per member, so every later pass runs over contiguous rows
    _activate(y, b0[k], act, z[pad : pad + n], False)
    _wrap(z, pad, n)
    ks = 2 * radius + 1
    for layer in range(ws.shape[1]):
        if ks == 1:  # pointwise: the activations are the columns
            np.dot(z[pad : pad + n], ws[k, layer], y)
        else:
            d = dilations[layer + 1]
            for p in range(n):
                for t in range(ks):
                    q = pad + p + (t - radius) * d
                    for c in range(w):
                        cols[p, t * w + c] = z[q, c]
            np.dot(cols, ws[k, layer], y)
        _activate(y, bs[k, layer], act, z[pad : pad + n], True)
        _wrap(z, pad, n)
    for p in range(n):
        s = readout_bias[k]
        for o in range(w):
            s += readout[k, o] * z[pad + p, o]
        out[p] = s


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _layer0_columns(x: np.ndarray, radius: int, d: int, cols: np.ndarray) -> None:
    """Columns of layer 0 from one input x (C, N): cols[p, t C + c] = x[c, (p + (t - r) d) mod N]."""
    c_in, n = x.shape
    for p in range(n):
        for t in range(2 * radius + 1):
            q = (p + (t - radius) * d) % n
            for c in range(c_in):
                cols[p, t * c_in + c] = x[c, q]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _linear_part(x: np.ndarray, channels: np.ndarray, value0: np.ndarray, response: np.ndarray, first: int) -> Any:
    """(K, N) c(0) - offset + J(0) . x_lin: the circular convolution of each linear channel of x (C, N) with its
    impulse response stored reversed, response[l, k, j] = J's response at offset ``first - j``."""
    n = x.shape[1]
    n_lin, k_members, span = response.shape
    out = np.empty((k_members, n), np.float32)
    padded = np.empty((n_lin, n + span - 1), np.float32)
    for i in range(n_lin):
        for j in range(n + span - 1):
            padded[i, j] = x[channels[i], (j - first) % n]
    for k in range(k_members):
        for p in range(n):
            s = value0[k]
            for i in range(n_lin):
                for j in range(span):
                    s += response[i, k, j] * padded[i, p + j]
            out[k, p] = s
    return out


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _forward(
    x: np.ndarray, weights: Any, radius: int, act: int, linear: Any, baseline: Any, out: np.ndarray, buffers: Any
) -> None:
    """out (B, K, N) = the ensemble on x (B, C, N), members one after another (buffers reused); ``linear`` =
    (channels, value0, response, first) of the exact linear part, ``baseline`` = (channel, coefficient)."""
    cols0 = buffers[0]
    for b in range(x.shape[0]):
        _layer0_columns(x[b], radius, weights[6][0], cols0)
        for k in range(out.shape[1]):
            _member(cols0, weights, k, radius, act, buffers[1:], out[b, k])
        _finish(x[b], linear, baseline, out[b])


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _finish(x: np.ndarray, linear: Any, baseline: Any, out: np.ndarray) -> None:
    """Subtract the linear part and add the baseline law to one sample's members out (K, N) in place."""
    channels, value0, response, first = linear
    if channels.shape[0] > 0:
        out -= _linear_part(x, channels, value0, response, first)
    channel, coefficient = baseline
    if channel >= 0:
        for k in range(out.shape[0]):
            for p in range(out.shape[1]):
                out[k, p] += np.float32(coefficient) * x[channel, p]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def mean_and_spread(members: np.ndarray) -> tuple[np.ndarray, float]:
    """(ensemble mean (N,) float64, u = sqrt(mean_x var_k)) of members (K, N), in one pass in float64: the mean and
    :func:`hybrid.models.calibration.uncertainty` (population variance over the members) of the nn providers."""
    k, n = members.shape
    mean = np.zeros(n)
    for i in range(k):
        for p in range(n):
            mean[p] += members[i, p]
    mean /= k
    total = 0.0
    for i in range(k):
        for p in range(n):
            d = members[i, p] - mean[p]
            total += d * d
    return mean, math.sqrt(total / (k * n))


class FusedEnsemblePlan:
    """Frozen CPU float32 inference of an :class:`EnsembleCNN1d` on inputs shared by all members.

    A drop-in for :class:`~hybrid.models.ensemble.InferencePlan` on the CPU: same call, same result to float32
    rounding, 1.6-3 times faster (benchmarks/bench_elastic.py; most at small N). A snapshot of the weights at
    construction; build a new plan after changing them. Its scratch buffers are reused by every call, so a plan
    serves one thread at a time (build one per thread).

    Args:
        model: the ensemble on the CPU (any dtype: its weights are copied to float32 numpy arrays).
        n: profile length N the plan is built for.

    Shapes:
        ``plan(x)``: x (B, C_in, N) numpy or torch (CPU) -> (B, K, N) float32, numpy for a numpy input, torch
        otherwise.
    """

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether ``model`` is a network this plan evaluates (an :class:`EnsembleCNN1d` with a known activation)."""
        return isinstance(model, EnsembleCNN1d) and model.activation in _ACTIVATION_CODES

    def __init__(self, model: EnsembleCNN1d, n: int) -> None:
        if not self.supports(model):
            raise ValueError(f"no fused kernel for {type(model).__name__}; use InferencePlan")
        if model.readout_bias.device.type != "cpu":
            raise ValueError(f"the fused plan runs on the CPU; the model is on {model.readout_bias.device}")
        self.n = int(n)
        self.members, self.in_channels, self.channels = model.members, model.in_channels, model.channels
        k, w, c, ks = model.members, model.channels, model.in_channels, model.kernel_size
        self.radius = ks // 2
        with torch.no_grad():
            m = model
            kernels = [_symmetric_kernel(t).float() for t in m.taps]  # (K W, C_i, ks)
            scale = m.input_scale.float()
            # layer 0: (K, ks C, W), row t C + c, column o
            first = (kernels[0] * scale[:, None]).view(k, w, c, ks).permute(0, 3, 2, 1).reshape(k, ks * c, w)
            self.w0 = _f32(first)
            self.b0 = _f32(m.biases[0].view(k, w))
            # layers >= 1: (K, L - 1, ks W, W), row t W + c, column o
            rest = [kk.view(k, w, w, ks).permute(0, 3, 2, 1).reshape(k, ks * w, w) for kk in kernels[1:]]
            self.ws = _f32(torch.stack(rest, 1)) if rest else np.zeros((k, 0, ks * w, w), np.float32)
            self.bs = _f32(torch.stack([b.view(k, w) for b in m.biases[1:]], 1)) if rest else np.zeros((k, 0, w))
            self.bs = self.bs.astype(np.float32)
            self.readout = _f32(m.readout_weight.view(k, w))
            self.readout_bias = _f32(m.readout_bias.float() + m.baseline_offset)
            self.dilations = np.asarray(m._dilations_of_layers(), dtype=np.int64)
            self.act = _ACTIVATION_CODES[model.activation]
            self.lin_channels = np.asarray(model.linear_channels, dtype=np.int64)
            self.value0, self.response, self.first = self._linear_response(model)
        self.baseline_channel = model.baseline_channel
        self.baseline_coefficient = float(model.baseline_coefficient)
        pad = self.radius * int(self.dilations.max())
        self._cols0 = np.empty((self.n, ks * c), np.float32)
        self._z = np.empty((self.n + 2 * pad, w), np.float32)
        self._cols = np.empty((self.n, ks * w), np.float32)
        self._y = np.empty((self.n, w), np.float32)

    def _linear_response(self, model: EnsembleCNN1d) -> tuple[np.ndarray, np.ndarray, int]:
        """(c(0) - offset (K,), reversed impulse responses (L, K, S), first offset) of J(0) on N points; the
        response vanishes beyond the receptive field, so S = min(N, 2 R + 1) offsets hold all of it."""
        if not model.linear_channels:
            return np.zeros(model.members, np.float32), np.zeros((0, model.members, 1), np.float32), 0
        value0, response = model._impulse_response(self.n, torch.float32, torch.device("cpu"))
        reach = (model.receptive_field - 1) // 2
        span, first = (2 * reach + 1, reach) if 2 * reach + 1 < self.n else (self.n, self.n // 2)
        offsets = (first - np.arange(span)) % self.n  # response[..., offset] read at j = 0 .. span - 1
        return _f32(value0[:, 0]), np.ascontiguousarray(_f32(response)[:, :, offsets]), first

    def __call__(self, x: Any) -> Any:
        is_torch = isinstance(x, torch.Tensor)
        xn = x.detach().to("cpu", torch.float32).numpy() if is_torch else np.asarray(x, dtype=np.float32)
        if xn.ndim != 3 or xn.shape[1:] != (self.in_channels, self.n):
            raise ValueError(f"plan built for input (B, {self.in_channels}, {self.n}), got {tuple(xn.shape)}")
        xn = np.ascontiguousarray(xn)
        out = np.empty((xn.shape[0], self.members, self.n), np.float32)
        weights = (self.w0, self.b0, self.ws, self.bs, self.readout, self.readout_bias, self.dilations)
        linear = (self.lin_channels, self.value0, self.response, self.first)
        buffers = (self._cols0, self._z, self._cols, self._y)
        _forward(
            xn, weights, self.radius, self.act, linear, (self.baseline_channel, self.baseline_coefficient), out, buffers
        )
        return torch.from_numpy(out) if is_torch else out


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())
