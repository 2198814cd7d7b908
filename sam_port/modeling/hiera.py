"""SAM 2's image encoder: the Hiera trunk (Ryali et al., 2023, as `sam2/modeling/backbones/
hieradet.py` builds it), the FPN neck (`backbones/image_encoder.py`) and the sine position
encoding of its levels (`sam2/modeling/position_encoding.py`). Layouts are NHWC."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam_port.config import HieraConfig, Sam2Config
from sam_port.interpolate import resize_bicubic
from sam_port.modeling.common import MLP, gelu, layer_norm
from sam_port.modeling.image_encoder import (
    PatchEmbed,
    attention,
    window_partition,
    window_unpartition,
)


def max_pool(x: jax.Array, stride: tuple[int, int]) -> jax.Array:
    """`nn.MaxPool2d(kernel_size=stride, stride=stride)` on (B, H, W, C): trailing rows and
    columns that fill no whole window are dropped (ceil_mode=False)."""
    b, h, w, c = x.shape
    sy, sx = stride
    hh, ww = h // sy, w // sx
    return x[:, : hh * sy, : ww * sx].reshape(b, hh, sy, ww, sx, c).max(axis=(2, 4))


class MultiScaleAttention(nn.Module):
    """Self-attention over a (B, H, W, C) grid (a window or the whole map), the queries
    max-pooled by `q_stride` at a stage's first block, so the output is (B, H/s, W/s, dim_out)."""

    dim_out: int
    num_heads: int
    q_stride: tuple[int, int] | None = None
    dtype: Any = None
    implementation: str = "blocked"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, _ = x.shape
        head_dim = self.dim_out // self.num_heads
        qkv = nn.Dense(self.dim_out * 3, dtype=self.dtype, name="qkv")(x)
        qkv = qkv.reshape(b, h * w, 3, self.num_heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, N, heads, head_dim)
        if self.q_stride:
            q = max_pool(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, head_dim)
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # head-major, as SDPA takes
        out = attention(q * jnp.asarray(head_dim**-0.5, q.dtype), k, v, None, None,
                        (0, 0), self.implementation)
        out = out.transpose(0, 2, 1, 3).reshape(b, h, w, self.dim_out)
        return nn.Dense(self.dim_out, dtype=self.dtype, name="proj")(out)


class MultiScaleBlock(nn.Module):
    """Hiera's pre-norm block: windowed (or global, `window_size` 0) attention, then an MLP; a
    stage's first block widens to `dim_out` and halves the grid (`q_stride`)."""

    dim_out: int
    num_heads: int
    mlp_ratio: float
    q_stride: tuple[int, int] | None
    window_size: int
    dtype: Any = None
    attention: str = "blocked"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dim = x.shape[-1]
        shortcut = x
        x = layer_norm(1e-6, name="norm1", dtype=self.dtype)(x)
        if dim != self.dim_out:
            shortcut = nn.Dense(self.dim_out, dtype=self.dtype, name="proj")(x)
            if self.q_stride:
                shortcut = max_pool(shortcut, self.q_stride)
        window_size = self.window_size
        if window_size > 0:
            h, w = x.shape[1:3]
            x, pad_hw = window_partition(x, window_size)
        x = MultiScaleAttention(self.dim_out, self.num_heads, self.q_stride, self.dtype,
                                self.attention, name="attn")(x)
        if self.q_stride and window_size > 0:
            # the pooled windows are smaller, and tile the pooled map (padded anew)
            window_size = self.window_size // self.q_stride[0]
            h, w = shortcut.shape[1:3]
            pad_hw = (h + (-h) % window_size, w + (-w) % window_size)
        if window_size > 0:
            x = window_unpartition(x, window_size, pad_hw, (h, w))
        x = shortcut + x
        mlp = MLP(int(self.dim_out * self.mlp_ratio), self.dim_out, 2, act=gelu,
                  dtype=self.dtype, name="mlp")
        return x + mlp(layer_norm(1e-6, name="norm2", dtype=self.dtype)(x))


class Hiera(nn.Module):
    """(B, S, S, 3) normalised images -> each stage's last output, finest first:
    (B, S/4, S/4, C), (B, S/8, S/8, 2C), (B, S/16, S/16, 4C), (B, S/32, S/32, 8C)."""

    config: HieraConfig
    dtype: Any = jnp.float32
    attention: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        cfg = self.config
        x = PatchEmbed(cfg.embed_dim, cfg.patch_stride, self.dtype, kernel_size=7, padding=3,
                       name="patch_embed")(x.astype(self.dtype))
        # Windowed positional embedding (Bolya et al., 2023): a background table resized to
        # the grid (bicubic) plus a window-sized table tiled over it; stored NCHW as the
        # original's parameters are
        pos_embed = self.param("pos_embed", nn.initializers.zeros,
                               (1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        window = cfg.window_spec[0]
        pos_embed_window = self.param("pos_embed_window", nn.initializers.zeros,
                                      (1, cfg.embed_dim, window, window))
        h, w = x.shape[1:3]
        pos = resize_bicubic(pos_embed, (h, w), axes=(2, 3))
        pos = pos + jnp.tile(pos_embed_window, (1, 1, h // window, w // window))
        x = x + pos.transpose(0, 2, 3, 1).astype(x.dtype)

        stage_ends = cfg.stage_ends
        q_pool_blocks = [end + 1 for end in stage_ends[:-1]][: cfg.q_pool]
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 1
        outputs = []
        for i in range(sum(cfg.stages)):
            dim_out = dim
            # the window lags a block: a stage's first block keeps the previous stage's
            window_size = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage - 1]
            if i - 1 in stage_ends:
                dim_out, heads, stage = int(dim * cfg.dim_mul), int(heads * cfg.head_mul), stage + 1
            x = MultiScaleBlock(
                dim_out, heads, cfg.mlp_ratio, cfg.q_stride if i in q_pool_blocks else None,
                window_size, self.dtype, self.attention, name=f"blocks_{i}",
            )(x)
            dim = dim_out
            if i in stage_ends:
                outputs.append(x)
        return outputs


def sine_position_encoding(h: int, w: int, channels: int, temperature: float = 10000.0
                           ) -> np.ndarray:
    """`PositionEmbeddingSine(channels, normalize=True)` of an (h, w) grid: (h, w, channels),
    the y half first, each half sin/cos interleaved; float32 as the original computes it."""
    f32 = np.float32
    feats = channels // 2
    scale, eps = f32(2 * math.pi), f32(1e-6)
    y = np.arange(1, h + 1, dtype=f32) / (f32(h) + eps) * scale
    x = np.arange(1, w + 1, dtype=f32) / (f32(w) + eps) * scale
    dim_t = np.arange(feats, dtype=f32)
    dim_t = (f32(temperature) ** (2 * (dim_t // 2) / f32(feats))).astype(f32)

    def encode(p: np.ndarray) -> np.ndarray:  # (n,) -> (n, feats)
        p = p[:, None] / dim_t
        return np.stack([np.sin(p[:, 0::2]), np.cos(p[:, 1::2])], axis=2).reshape(len(p), -1)

    pos_y = np.broadcast_to(encode(y)[:, None, :], (h, w, feats))
    pos_x = np.broadcast_to(encode(x)[None, :, :], (h, w, feats))
    return np.concatenate([pos_y, pos_x], axis=-1).astype(f32)


class FpnLateral(nn.Module):
    """One lateral 1x1 convolution (`FpnNeck.convs[i]`, a Sequential holding `conv`)."""

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(self.features, (1, 1), dtype=self.dtype, name="conv")(x)


class FpnNeck(nn.Module):
    """SAM 2's FPN without output convolutions: each level's lateral projection, plus the
    coarser level's output upsampled 2x (nearest) on `top_down_levels` only. Levels finest
    first, in and out; every output (B, H_l, W_l, d_model), float32."""

    d_model: int
    top_down_levels: tuple[int, ...]
    dtype: Any = None

    @nn.compact
    def __call__(self, xs: list[jax.Array]) -> list[jax.Array]:
        n = len(xs) - 1
        out: list[jax.Array | None] = [None] * len(xs)
        previous = None
        for i in range(n, -1, -1):  # coarsest first; convs are numbered in that order
            lateral = FpnLateral(self.d_model, self.dtype, name=f"convs_{n - i}")(xs[i])
            lateral = lateral.astype(jnp.float32)
            if i in self.top_down_levels and previous is not None:
                top_down = jnp.repeat(jnp.repeat(previous, 2, axis=1), 2, axis=2)
                previous = lateral + top_down
            else:
                previous = lateral
            out[i] = previous
        return out


class Sam2ImageEncoder(nn.Module):
    """(B, S, S, 3) normalised images -> the FPN levels SAM 2 keeps (`scalp` coarsest dropped),
    finest first: (B, S/4, S/4, d), (B, S/8, S/8, d), (B, S/16, S/16, d) for the official
    configs; the last is the image embedding (`vision_features`)."""

    config: Sam2Config
    dtype: Any = jnp.float32
    attention: str = "auto"

    @nn.compact
    def __call__(self, images: jax.Array) -> list[jax.Array]:
        cfg = self.config
        features = Hiera(cfg.trunk, self.dtype, self.attention, name="trunk")(images)
        levels = FpnNeck(cfg.d_model, cfg.fpn_top_down_levels, self.dtype, name="neck")(features)
        return levels[: len(levels) - cfg.scalp]
