"""Whole-ensemble CPU inference in one compiled call: :class:`FusedEnsemblePlan`.

A batch-1 call of a small :class:`~hybrid.models.ensemble.EnsembleCNN1d` through torch is a few dozen short
operations; on a CPU at N ~ 100 their per-operation overhead, not their arithmetic, sets the time. This plan runs
the same network as one numba function, channel-major (every activation a (W, N) array, each channel a contiguous
row with its circular padding): layer 0 of all members is one float32 matrix product, as they share its input;
every later layer of a member is an im2col copy (ks W rows, each a shifted row of the activations) and one product
(W, ks W) x (ks W, N) (BLAS sgemm through ``np.dot``), then the bias, activation and residual sum in one pass over
the product. The exact linear part of the correction (``linear_channels``) is a circular convolution whose support
is the network's receptive field (the impulse response of J(0)); it is one more product, of the members' reversed
responses with the shifted copies of the linear channels. Every product runs in column chunks of at most 128
points (the plan's ``chunk``), so its columns stay in cache and it stays below the size at which OpenBLAS starts
threads of its own.

Every elementwise loop runs over a 1D row view with a ``range`` index (see :func:`_copy`), which is what lets
numba vectorise it.

Float32 throughout (the weights are float32); the result equals the torch reference
(:class:`~hybrid.models.ensemble.InferencePlan`) to float32 rounding (tested). GELU uses a rational
approximation of erf (below) accurate to 3.4e-7, the size of float32 rounding near 1, so the activation
vectorises; the other activations call the scalar math functions.

Threads: by default the members are evaluated one after another on the calling thread. With ``threads`` > 1 they
are shared out over that many numba threads (members in parallel, each with its own scratch buffers; the results
are the same); the layer-0 product and the linear part stay on the calling thread. BLAS is called from inside the
compiled functions; the chunks keep it single-threaded.
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


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[p] = src[p] over two 1D views of equal length. An explicit loop over views: it vectorises, where numba's
    slice assignment and offset indices (``src[start + p]``, checked for wrap-around) cost 5-10x more at N ~ 100."""
    for p in range(dst.shape[0]):
        dst[p] = src[p]


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _fill(dst: np.ndarray, value: Any) -> None:
    """dst[p] = value over a 1D view (see :func:`_copy`)."""
    for p in range(dst.shape[0]):
        dst[p] = value


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _subtract(dst: np.ndarray, src: np.ndarray, value: Any) -> None:
    """dst[p] -= src[p] + value over 1D views (see :func:`_copy`)."""
    for p in range(dst.shape[0]):
        dst[p] -= src[p] + value


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _add_scaled(dst: np.ndarray, src: np.ndarray, factor: Any) -> None:
    """dst[p] += factor src[p] over 1D views (see :func:`_copy`)."""
    for p in range(dst.shape[0]):
        dst[p] += factor * src[p]


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _activate_row(y: np.ndarray, b: Any, act: int, out: np.ndarray) -> None:
    """out[p] += act(y[p] + b) over one channel's contiguous row; one branch-free loop per activation."""
    half, one, root_half, zero = np.float32(0.5), np.float32(1.0), np.float32(0.7071067811865476), np.float32(0.0)
    if act == 0:
        for p in range(y.shape[0]):
            a = y[p] + b
            out[p] += half * a * (one + erf32(a * root_half))
    elif act == 1:
        for p in range(y.shape[0]):
            out[p] += math.tanh(y[p] + b)
    elif act == 2:
        for p in range(y.shape[0]):
            a = y[p] + b
            out[p] += a / (one + math.exp(-a))
    else:
        for p in range(y.shape[0]):
            a = y[p] + b
            out[p] += max(a, zero) + math.log1p(math.exp(-abs(a)))


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _activate(y: np.ndarray, bias: np.ndarray, act: int, z: np.ndarray, pad: int, residual: bool) -> None:
    """z[o, pad + p] (+)= act(y[o, p] + bias[o]) for all o, p (``+=`` when ``residual``), then the circular
    padding of z (W, N + 2 pad) refilled. Channel-major: each loop runs over one contiguous row (1D views, whose
    loop indices are provably non-negative, so the loops vectorise)."""
    w, n = y.shape
    for o in range(w):
        row = z[o]
        inner = row[pad : pad + n]
        if not residual:
            _fill(inner, np.float32(0.0))
        _activate_row(y[o], bias[o], act, inner)
        if pad <= n:
            _copy(row[:pad], row[n : n + pad])
            _copy(row[pad + n :], row[pad : 2 * pad])
        else:  # a profile shorter than the padding wraps around more than once
            for i in range(pad):
                row[i] = row[pad + (i - pad) % n]
                row[pad + n + i] = row[pad + i % n]


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _member(y0: np.ndarray, weights: Any, k: int, radius: int, act: int, buffers: Any, out: np.ndarray) -> None:
    """Member k from its layer-0 products y0 (W, N) -> out (N,) correction + offset (see the module).

    ``weights`` = (w0, b0, ws, bs, readout, readout_bias, dilations) of :class:`FusedEnsemblePlan`, ``buffers`` =
    (z, cols, y, chunk_y) scratch arrays of shapes (W, N + 2 pad), (ks W C,), (W, N), (W C,) for a column chunk
    of C points: a layer's im2col and product run C points at a time, so the columns stay in cache at large N."""
    _, b0, ws, bs, readout, readout_bias, dilations = weights
    z, cols, y, chunk_y = buffers
    n = out.shape[0]
    w = b0.shape[1]
    pad = (z.shape[1] - n) // 2
    ks = 2 * radius + 1
    chunk = chunk_y.shape[0] // w
    _activate(y0, b0[k], act, z, pad, False)
    for layer in range(ws.shape[1]):
        d = dilations[layer + 1]
        for p0 in range(0, n, chunk):
            m = min(chunk, n - p0)
            cm = cols[: ks * w * m].reshape((ks * w, m))
            for t in range(ks):
                start = pad + p0 + (t - radius) * d
                for c in range(w):  # im2col, channel-major: each row a shifted copy of one channel
                    _copy(cm[t * w + c], z[c, start : start + m])
            _chunk_product(ws[k, layer], cm, y, chunk_y, p0)
        _activate(y, bs[k, layer], act, z, pad, True)
    _fill(out, readout_bias[k])
    for o in range(w):
        r = readout[k, o]
        row = z[o, pad : pad + n]
        for p in range(n):
            out[p] += r * row[p]


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _circular_copy(dst: np.ndarray, src: np.ndarray, start: int) -> None:
    """dst[j] = src[(start + j) mod N] for a 1D view dst no longer than src (N,), 0 <= start < N: two copies."""
    first = min(dst.shape[0], src.shape[0] - start)
    _copy(dst[:first], src[start : start + first])
    _copy(dst[first:], src[: dst.shape[0] - first])


@numba.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def _chunk_product(a: np.ndarray, cols: np.ndarray, out: np.ndarray, scratch: np.ndarray, p0: int) -> None:
    """out[:, p0 : p0 + m] = a @ cols for columns cols (R, m) of a chunk; through ``scratch`` (>= rows(a) m,) unless
    the chunk is the whole of out (rows(a), N)."""
    rows, m = a.shape[0], cols.shape[1]
    if m == out.shape[1]:
        np.dot(a, cols, out)
        return
    part = scratch[: rows * m].reshape((rows, m))
    np.dot(a, cols, part)
    for o in range(rows):
        _copy(out[o, p0 : p0 + m], part[o])


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _layer0(
    x: np.ndarray, radius: int, d: int, w0: np.ndarray, cols: np.ndarray, scratch: np.ndarray, y0: np.ndarray
) -> None:
    """y0 (K W, N) = layer 0 of all members on one input x (C, N), one product per column chunk (of
    ``len(scratch) // (K W)`` points) whose columns cols[t C + c, j] = x[c, (p0 + j + (t - r) d) mod N] are built
    in the flat buffer ``cols``."""
    c_in, n = x.shape
    ks = 2 * radius + 1
    chunk = scratch.shape[0] // w0.shape[0]
    for p0 in range(0, n, chunk):
        m = min(chunk, n - p0)
        cm = cols[: ks * c_in * m].reshape((ks * c_in, m))
        for t in range(ks):
            start = (p0 + (t - radius) * d) % n
            for c in range(c_in):
                _circular_copy(cm[t * c_in + c], x[c], start)
        _chunk_product(w0, cm, y0, scratch, p0)


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _linear_part(x: np.ndarray, linear: Any) -> np.ndarray:
    """(K, N) J(0) . x_lin without c(0): the circular convolution of each linear channel of x (C, N) with its
    impulse response, as one product per column chunk: ``linear`` = (channels (L,), value0 (K,), response (K, L S)
    with response[k, l S + j] = J's response at offset ``first - j``, first, flat columns (L S C,), result (K, N),
    flat chunk products (K C,)), C the chunk."""
    channels, _, response, first, cols, result, scratch = linear
    n = x.shape[1]
    rows = response.shape[1]
    span = rows // channels.shape[0]
    chunk = scratch.shape[0] // response.shape[0]
    for p0 in range(0, n, chunk):
        m = min(chunk, n - p0)
        cm = cols[: rows * m].reshape((rows, m))
        for i in range(channels.shape[0]):
            for j in range(span):  # cm[i S + j, q] = x_i[(p0 + q + j - first) mod N]
                _circular_copy(cm[i * span + j], x[channels[i]], (p0 + j - first) % n)
        _chunk_product(response, cm, result, scratch, p0)
    return result


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _forward(
    x: np.ndarray, weights: Any, radius: int, act: int, linear: Any, baseline: Any, out: np.ndarray, buffers: Any
) -> None:
    """out (B, K, N) = the ensemble on x (B, C, N), members one after another (buffers reused); ``linear`` =
    ``FusedEnsemblePlan._linear`` (see :func:`_linear_part`), ``baseline`` = (channel, coefficient), ``buffers`` =
    (layer-0 columns, layer-0 products, their chunk scratch, z, cols, y, chunk scratch)."""
    cols0, y0, scratch0 = buffers[0], buffers[1], buffers[2]
    w = weights[1].shape[1]
    for b in range(x.shape[0]):
        _layer0(x[b], radius, weights[6][0], weights[0], cols0, scratch0, y0)  # all members: they share its input
        for k in range(out.shape[1]):
            _member(y0[k * w : (k + 1) * w], weights, k, radius, act, buffers[3:], out[b, k])
        _finish(x[b], linear, baseline, out[b])


@numba.njit(fastmath=True, error_model="numpy", cache=True, parallel=True)
def _forward_parallel(
    x: np.ndarray,
    weights: Any,
    radius: int,
    act: int,
    linear: Any,
    baseline: Any,
    out: np.ndarray,
    buffers: Any,
) -> None:
    """:func:`_forward` with the members on numba's threads (as many as the caller set); z, cols, y and the chunk
    scratch of ``buffers`` carry a leading member axis (K, ...)."""
    cols0, y0, scratch0, zs, colss, ys, chunk_ys = buffers
    w = weights[1].shape[1]
    for b in range(x.shape[0]):
        _layer0(x[b], radius, weights[6][0], weights[0], cols0, scratch0, y0)
        for k in numba.prange(out.shape[1]):
            scratch = (zs[k], colss[k], ys[k], chunk_ys[k])
            _member(y0[k * w : (k + 1) * w], weights, k, radius, act, scratch, out[b, k])
        _finish(x[b], linear, baseline, out[b])


@numba.njit(fastmath=True, error_model="numpy", cache=True)
def _finish(x: np.ndarray, linear: Any, baseline: Any, out: np.ndarray) -> None:
    """Subtract the linear part and add the baseline law to one sample's members out (K, N) in place."""
    value0 = linear[1]
    if linear[0].shape[0] > 0:
        lin = _linear_part(x, linear)
        for k in range(out.shape[0]):
            _subtract(out[k], lin[k], value0[k])
    channel, coefficient = baseline
    if channel >= 0:
        for k in range(out.shape[0]):
            _add_scaled(out[k], x[channel], np.float32(coefficient))


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
    rounding, several times faster at small N (benchmarks/bench_elastic.py). A snapshot of the weights at
    construction; build a new plan after changing them. Its scratch buffers are reused by every call, so a plan
    serves one calling thread at a time (build one per thread).

    Args:
        model: the ensemble on the CPU (any dtype: its weights are copied to float32 numpy arrays).
        n: profile length N the plan is built for.
        threads: numba threads the members are shared out over (1: one after another on the calling thread;
            capped at the members and at numba's thread count). The result does not depend on it.
        chunk: points per column chunk of a layer's im2col and product (see :func:`_member`); 128 points keep a
            chunk's columns (40 KiB for the shipped 16 channels) in cache and each product below the size at which
            OpenBLAS starts threads of its own (which, nested in the members' threads, only contend); at N <= 128
            the whole profile is one chunk. The result does not depend on it beyond float32 rounding.

    Shapes:
        ``plan(x)``: x (B, C_in, N) numpy or torch (CPU) -> (B, K, N) float32, numpy for a numpy input, torch
        otherwise.
    """

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether ``model`` is a network this plan evaluates (an :class:`EnsembleCNN1d` with a known activation)."""
        return isinstance(model, EnsembleCNN1d) and model.activation in _ACTIVATION_CODES

    def __init__(self, model: EnsembleCNN1d, n: int, threads: int = 1, chunk: int = 128) -> None:
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
            # layer 0 of all members: (K W, ks C), row k W + o, column t C + c
            first = (kernels[0] * scale[:, None]).view(k, w, c, ks).permute(0, 1, 3, 2).reshape(k * w, ks * c)
            self.w0 = _f32(first)
            self.b0 = _f32(m.biases[0].view(k, w))
            # layers >= 1: (K, L - 1, W, ks W), row o, column t W + c
            rest = [kk.view(k, w, w, ks).permute(0, 1, 3, 2).reshape(k, w, ks * w) for kk in kernels[1:]]
            self.ws = _f32(torch.stack(rest, 1)) if rest else np.zeros((k, 0, w, ks * w), np.float32)
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
        self.threads = max(1, min(int(threads), k, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        self.chunk = chunk = max(1, min(int(chunk), self.n))
        self._cols0 = np.empty(ks * c * chunk, np.float32)
        self._y0 = np.empty((k * w, self.n), np.float32)
        self._scratch0 = np.empty(k * w * chunk, np.float32)
        sets = (k,) if self.threads > 1 else ()  # one set of scratch arrays per member when they run in parallel
        self._z = np.empty((*sets, w, self.n + 2 * pad), np.float32)
        self._cols = np.empty((*sets, ks * w * chunk), np.float32)
        self._y = np.empty((*sets, w, self.n), np.float32)
        self._chunk_y = np.empty((*sets, w * chunk), np.float32)
        self._lin_cols = np.empty(self.response.shape[1] * chunk, np.float32)
        self._lin_out = np.empty((k, self.n), np.float32)
        self._lin_scratch = np.empty(k * chunk, np.float32)
        # the compiled call's arguments, built once
        self._weights = (self.w0, self.b0, self.ws, self.bs, self.readout, self.readout_bias, self.dilations)
        self._linear = (
            self.lin_channels,
            self.value0,
            self.response,
            self.first,
            self._lin_cols,
            self._lin_out,
            self._lin_scratch,
        )
        self._baseline = (self.baseline_channel, self.baseline_coefficient)
        self._buffers = (self._cols0, self._y0, self._scratch0, self._z, self._cols, self._y, self._chunk_y)

    def _linear_response(self, model: EnsembleCNN1d) -> tuple[np.ndarray, np.ndarray, int]:
        """(c(0) - offset (K,), reversed impulse responses (K, L S), first offset) of J(0) on N points; the
        response vanishes beyond the receptive field, so S = min(N, 2 R + 1) offsets hold all of it."""
        if not model.linear_channels:
            return np.zeros(model.members, np.float32), np.zeros((model.members, 0), np.float32), 0
        value0, response = model._impulse_response(self.n, torch.float32, torch.device("cpu"))
        reach = (model.receptive_field - 1) // 2
        span, first = (2 * reach + 1, reach) if 2 * reach + 1 < self.n else (self.n, self.n // 2)
        offsets = (first - np.arange(span)) % self.n  # response[..., offset] read at j = 0 .. span - 1
        reversed_response = _f32(response)[:, :, offsets].transpose(1, 0, 2).reshape(model.members, -1)
        return _f32(value0[:, 0]), np.ascontiguousarray(reversed_response), first

    def __call__(self, x: Any) -> Any:
        is_torch = isinstance(x, torch.Tensor)
        xn = x.detach().to("cpu", torch.float32).numpy() if is_torch else np.asarray(x, dtype=np.float32)
        if xn.ndim != 3 or xn.shape[1:] != (self.in_channels, self.n):
            raise ValueError(f"plan built for input (B, {self.in_channels}, {self.n}), got {tuple(xn.shape)}")
        xn = np.ascontiguousarray(xn)
        out = np.empty((xn.shape[0], self.members, self.n), np.float32)
        args = (xn, self._weights, self.radius, self.act, self._linear, self._baseline, out, self._buffers)
        if self.threads > 1:
            before = numba.get_num_threads()  # numba's count is per calling thread: set it for this call only
            numba.set_num_threads(self.threads)
            try:
                _forward_parallel(*args)
            finally:
                numba.set_num_threads(before)
        else:
            _forward(*args)
        return torch.from_numpy(out) if is_torch else out


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())
