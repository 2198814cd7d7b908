"""Resizing with PyTorch's exact semantics.

`jax.image.resize` samples pixel centres differently from `torch.nn.functional.interpolate`
(its "nearest" picks 8i+4 where PyTorch picks 8i, and its "linear" anti-aliases when shrinking).
Parity with the PyTorch originals needs PyTorch's rules, so the resizes here are written as
small interpolation matrices (built in numpy from static shapes) applied with exact matmuls.
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np


@lru_cache(maxsize=64)
def linear_weights(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
    """(out_size, in_size) matrix of PyTorch's 1-D linear interpolation weights."""
    # Source coordinates in float32 arithmetic, as PyTorch's CPU/GPU kernels compute them.
    f32 = np.float32
    dst = np.arange(out_size, dtype=f32)
    if align_corners:
        scale = f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else f32(0)
        src = scale * dst
    else:
        scale = f32(in_size) / f32(out_size)
        src = np.maximum(scale * (dst + f32(0.5)) - f32(0.5), f32(0))
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo.astype(f32)
    weights = np.zeros((out_size, in_size), f32)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


@lru_cache(maxsize=64)
def antialiased_linear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) weights of `F.interpolate(mode="bilinear", antialias=True,
    align_corners=False)` (PIL's triangle filter, widened by the scale when shrinking)."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = np.maximum(0.0, 1.0 - np.abs((np.arange(lo, hi) - center + 0.5) * invscale))
        total = taps.sum()
        weights[i, lo:hi] = taps / total if total != 0.0 else taps
    return weights.astype(np.float32)


CUBIC_A = -0.75  # PyTorch's bicubic convolution coefficient


def _cubic_taps(t: np.ndarray) -> np.ndarray:
    """The four weights of PyTorch's cubic convolution at fractions `t` (n,) -> (n, 4), for
    source offsets -1, 0, 1, 2 (`upsample_bicubic2d`'s `get_cubic_upsample_coefficients`)."""
    a = np.float64(CUBIC_A)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


@lru_cache(maxsize=64)
def cubic_weights(in_size: int, out_size: int, scale_factor: float | None = None) -> np.ndarray:
    """(out_size, in_size) matrix of `F.interpolate(mode="bicubic", align_corners=False)`;
    `scale_factor` is the factor given to `F.interpolate` (PyTorch then maps coordinates with
    1 / scale_factor, not in / out). Taps beyond the edge read the edge pixel."""
    ratio = 1.0 / scale_factor if scale_factor else in_size / out_size
    f32 = np.float32
    src = f32(ratio) * (np.arange(out_size, dtype=f32) + f32(0.5)) - f32(0.5)  # no clamp
    lo = np.floor(src).astype(np.int64)
    taps = _cubic_taps((src - lo.astype(f32)).astype(np.float64))
    weights = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    for k in range(4):
        np.add.at(weights, (rows, np.clip(lo - 1 + k, 0, in_size - 1)), taps[:, k])
    return weights.astype(np.float32)


def resize_bicubic(x: jax.Array, size: tuple[int, int], *,
                   scale_factor: tuple[float, float] | None = None,
                   axes: tuple[int, int] = (-3, -2)) -> jax.Array:
    """`F.interpolate(mode="bicubic", align_corners=False)` of the two spatial `axes` to
    `size`, with the `scale_factor` PyTorch was given when it was given one."""
    h_axis, w_axis = (a % x.ndim for a in axes)
    sy, sx = scale_factor or (None, None)
    wy = jnp.asarray(cubic_weights(x.shape[h_axis], size[0], sy), x.dtype)
    wx = jnp.asarray(cubic_weights(x.shape[w_axis], size[1], sx), x.dtype)
    return apply_separable(x, wy, wx, axes)


def resize_bilinear(
    x: jax.Array, size: tuple[int, int], *, align_corners: bool, axes: tuple[int, int] = (-3, -2),
    antialias: bool = False,
) -> jax.Array:
    """Bilinear resize of the two spatial `axes` of `x` (default NHWC) to `size` = (H, W).

    Matches `F.interpolate(mode="bilinear", align_corners=..., antialias=...)`
    (`antialias=True` only with `align_corners=False`).
    """
    h_axis, w_axis = (a % x.ndim for a in axes)
    out_h, out_w = size
    if antialias:
        if align_corners:
            raise ValueError("antialias=True needs align_corners=False")
        wy = jnp.asarray(antialiased_linear_weights(x.shape[h_axis], out_h), x.dtype)
        wx = jnp.asarray(antialiased_linear_weights(x.shape[w_axis], out_w), x.dtype)
    else:
        wy = jnp.asarray(linear_weights(x.shape[h_axis], out_h, align_corners), x.dtype)
        wx = jnp.asarray(linear_weights(x.shape[w_axis], out_w, align_corners), x.dtype)
    return apply_separable(x, wy, wx, axes)


def apply_separable(x: jax.Array, wy: jax.Array, wx: jax.Array,
                    axes: tuple[int, int] = (-3, -2)) -> jax.Array:
    """`wy` (out_h, in_h) along the first of `axes` and `wx` (out_w, in_w) along the second,
    as exact (HIGHEST precision) matmuls."""
    h_axis, w_axis = (a % x.ndim for a in axes)
    hp = jax.lax.Precision.HIGHEST
    x = jnp.moveaxis(jnp.tensordot(wy, x, axes=((1,), (h_axis,)), precision=hp), 0, h_axis)
    x = jnp.moveaxis(jnp.tensordot(wx, x, axes=((1,), (w_axis,)), precision=hp), 0, w_axis)
    return x


def resize_linear_1d(x: jax.Array, size: int, *, axis: int = 0) -> jax.Array:
    """`F.interpolate(mode="linear", align_corners=False)` along one axis."""
    axis = axis % x.ndim
    w = jnp.asarray(linear_weights(x.shape[axis], size, False), x.dtype)
    out = jnp.tensordot(w, x, axes=((1,), (axis,)), precision=jax.lax.Precision.HIGHEST)
    return jnp.moveaxis(out, 0, axis)


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source indices of PyTorch's `nearest` mode: floor(i * in / out)."""
    return np.minimum(
        np.floor(np.arange(out_size) * (in_size / out_size)).astype(np.int64), in_size - 1
    )


def resize_nearest(
    x: jax.Array, size: tuple[int, int], *, axes: tuple[int, int] = (-3, -2)
) -> jax.Array:
    """`F.interpolate(mode="nearest")` (not `nearest-exact`) of the two spatial `axes`."""
    h_axis, w_axis = (a % x.ndim for a in axes)
    x = jnp.take(x, nearest_indices(x.shape[h_axis], size[0]), axis=h_axis)
    return jnp.take(x, nearest_indices(x.shape[w_axis], size[1]), axis=w_axis)
