"""SAM's ViT image encoder (ViTDet style: windowed + global attention, decomposed rel-pos)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam_port.config import ImageEncoderConfig
from sam_port.interpolate import resize_linear_1d
from sam_port.modeling.common import MLPBlock, layer_norm, layer_norm_2d


def window_partition(x: jax.Array, window_size: int) -> tuple[jax.Array, tuple[int, int]]:
    """(B, H, W, C) -> (B * nWindows, ws, ws, C), zero-padding H and W up to multiples of ws."""
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    hp, wp = h + pad_h, w + pad_w
    x = x.reshape(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: jax.Array, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> jax.Array:
    """Inverse of `window_partition`, dropping the padding."""
    hp, wp = pad_hw
    h, w = hw
    b = windows.shape[0] // (hp * wp // window_size // window_size)
    x = windows.reshape(b, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :]


def get_rel_pos(q_size: int, k_size: int, rel_pos: jax.Array) -> jax.Array:
    """Relative position embeddings (q_size, k_size, C) for query/key lengths along one axis."""
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        rel_pos = resize_linear_1d(rel_pos, max_rel_dist, axis=0)
    q_coords = np.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = np.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative.astype(np.int64)]


def decomposed_rel_pos(
    q: jax.Array,
    rel_pos_h: jax.Array,
    rel_pos_w: jax.Array,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> tuple[jax.Array, jax.Array]:
    """MViTv2 decomposed relative positions for head-major q (B, heads, Nq, C): the height and
    width terms (B, heads, Nq, k_h) and (B, heads, Nq, k_w) whose outer sum is added to the
    attention map. Computed in float32 whatever q's dtype."""
    q_h, q_w = q_size
    k_h, k_w = k_size
    rh = get_rel_pos(q_h, k_h, rel_pos_h)
    rw = get_rel_pos(q_w, k_w, rel_pos_w)
    b, heads, _, dim = q.shape
    r_q = q.reshape(b, heads, q_h, q_w, dim)
    f32 = jnp.float32
    rel_h = jnp.einsum("bnyxc,ykc->bnyxk", r_q, rh.astype(q.dtype), preferred_element_type=f32)
    rel_w = jnp.einsum("bnyxc,xkc->bnyxk", r_q, rw.astype(q.dtype), preferred_element_type=f32)
    return rel_h.reshape(b, heads, q_h * q_w, k_h), rel_w.reshape(b, heads, q_h * q_w, k_w)


def attend(q, k, v, rel_h, rel_w, k_size):
    """softmax(q k^T [+ rel_h (+) rel_w]) v on head-major (B, heads, N, C) arrays, q already
    scaled. Logits and softmax are float32; the weighted sum runs in v's dtype."""
    attn = jnp.einsum("bnqc,bnkc->bnqk", q, k, preferred_element_type=jnp.float32)
    if rel_h is not None:
        b, heads, nq, _ = attn.shape
        attn = attn.reshape(b, heads, nq, *k_size) + rel_h[..., :, None] + rel_w[..., None, :]
        attn = attn.reshape(b, heads, nq, -1)
    weights = jax.nn.softmax(attn, axis=-1).astype(v.dtype)
    return jnp.einsum("bnqk,bnkc->bnqc", weights, v)


# Global attention over 4096 tokens makes (heads, 4096, 4096) maps; computing them a block of
# queries at a time keeps each map cache-sized (same arithmetic, per query; faster on CPU:
# benchmarks/sam_global_attention.py, figures in docs/PERFORMANCE.md).
QUERY_CHUNK = 256

# "blocked": the einsum form above, global attention a block of queries at a time (CPU);
# "xla" / "cudnn": `jax.nn.dot_product_attention` with the rel-pos terms as its bias (cuDNN's
# fused kernel takes bf16/f16 only); "auto": blocked on CPU; on a GPU cudnn in bf16/f16
# (falling back to xla where cuDNN refuses the shapes when tracing) and xla in float32.
ATTENTION_IMPLEMENTATIONS = ("auto", "blocked", "xla", "cudnn")


def resolve_implementation(implementation: str, dtype) -> str:
    """The concrete attention path of `implementation` for inputs of `dtype`."""
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {implementation!r}; choose from "
                         f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")
    if implementation != "auto":
        return implementation
    if jax.default_backend() != "gpu":
        return "blocked"
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    return "cudnn" if half else "xla"


def _blocked_attention(q, k, v, rel_h, rel_w, k_size):
    nq = q.shape[2]
    if nq <= QUERY_CHUNK or nq % QUERY_CHUNK:
        return attend(q, k, v, rel_h, rel_w, k_size)
    b, heads, _, dim = q.shape
    blocks = nq // QUERY_CHUNK

    def split(x):  # (B, heads, Nq, ...) -> (blocks, B, heads, QUERY_CHUNK, ...)
        return jnp.moveaxis(x.reshape(b, heads, blocks, QUERY_CHUNK, -1), 2, 0)

    rel = None if rel_h is None else (split(rel_h), split(rel_w))

    def block(args):
        qc, rc = args
        return attend(qc, k, v, *(rc if rc is not None else (None, None)), k_size)

    out = jax.lax.map(block, (split(q), rel))  # (blocks, B, heads, QUERY_CHUNK, dim)
    return jnp.moveaxis(out, 0, 2).reshape(b, heads, nq, dim)


def _fused_attention(q, k, v, rel_h, rel_w, k_size, implementation):
    bias = None
    if rel_h is not None:
        b, heads, nq, _ = rel_h.shape
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, nq, -1)
        bias = bias.astype(q.dtype)
    out = jax.nn.dot_product_attention(q.swapaxes(1, 2), k.swapaxes(1, 2), v.swapaxes(1, 2),
                                       bias=bias, scale=1.0, implementation=implementation)
    return out.swapaxes(1, 2)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    rel_h: jax.Array | None,
    rel_w: jax.Array | None,
    k_size: tuple[int, int],
    implementation: str = "blocked",
) -> jax.Array:
    """Attention of head-major q (B, heads, Nq, C) (already scaled) over k, v (B, heads, Nk,
    C), with the decomposed rel-pos terms when given (see `ATTENTION_IMPLEMENTATIONS`)."""
    resolved = resolve_implementation(implementation, q.dtype)
    if resolved == "blocked":
        return _blocked_attention(q, k, v, rel_h, rel_w, k_size)
    if implementation == "auto" and resolved == "cudnn":
        try:  # cuDNN's support checks (version, head dim, shapes) run while tracing
            return _fused_attention(q, k, v, rel_h, rel_w, k_size, "cudnn")
        except (NotImplementedError, ValueError, RuntimeError):
            resolved = "xla"
    return _fused_attention(q, k, v, rel_h, rel_w, k_size, resolved)


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) grid, with optional rel-pos bias."""

    num_heads: int
    use_rel_pos: bool
    input_size: tuple[int, int]
    dtype: Any = None
    implementation: str = "blocked"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, dim = x.shape
        head_dim = dim // self.num_heads
        qkv = nn.Dense(dim * 3, dtype=self.dtype, name="qkv")(x)
        # head-major (3, B, heads, N, head_dim), as PyTorch's: each attention matmul is then a
        # plain batched matmul (faster on CPU than token-major: docs/PERFORMANCE.md)
        qkv = qkv.reshape(b, h * w, 3, self.num_heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        rel_h = rel_w = None
        if self.use_rel_pos:
            init = nn.initializers.zeros
            rel_pos_h = self.param("rel_pos_h", init, (2 * self.input_size[0] - 1, head_dim))
            rel_pos_w = self.param("rel_pos_w", init, (2 * self.input_size[1] - 1, head_dim))
            rel_h, rel_w = decomposed_rel_pos(q, rel_pos_h, rel_pos_w, (h, w), (h, w))
        out = attention(q * jnp.asarray(head_dim**-0.5, q.dtype), k, v, rel_h, rel_w, (h, w),
                        self.implementation)
        out = out.transpose(0, 2, 1, 3).reshape(b, h, w, dim)
        return nn.Dense(dim, dtype=self.dtype, name="proj")(out)


class Block(nn.Module):
    """Pre-norm transformer block; windowed attention when `window_size` > 0."""

    num_heads: int
    mlp_ratio: float
    use_rel_pos: bool
    window_size: int
    input_size: tuple[int, int]
    dtype: Any = None
    attention: str = "blocked"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dim = x.shape[-1]
        shortcut = x
        x = layer_norm(1e-6, name="norm1", dtype=self.dtype)(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        attn_size = self.input_size if self.window_size == 0 else (self.window_size,) * 2
        x = Attention(self.num_heads, self.use_rel_pos, attn_size, self.dtype, self.attention,
                      name="attn")(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (h, w))
        x = shortcut + x
        mlp = MLPBlock(int(dim * self.mlp_ratio), dtype=self.dtype, name="mlp")
        return x + mlp(layer_norm(1e-6, name="norm2", dtype=self.dtype)(x))


class PatchEmbed(nn.Module):
    """Patch projection: a stride-`patch_size` convolution, by default non-overlapping (SAM);
    Hiera's overlaps (kernel 7, padding 3, stride 4)."""

    embed_dim: int
    patch_size: int
    dtype: Any = None
    kernel_size: int | None = None  # default: patch_size
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p, k, pad = self.patch_size, self.kernel_size or self.patch_size, self.padding
        return nn.Conv(self.embed_dim, (k, k), strides=(p, p), padding=((pad, pad), (pad, pad)),
                       dtype=self.dtype, name="proj")(x)


class ImageEncoderViT(nn.Module):
    """(B, S, S, 3) normalised, padded images -> (B, S/16, S/16, out_chans) float32 embeddings.

    `dtype` is the compute dtype (e.g. bfloat16: parameters stay float32 and are cast per
    layer; LayerNorm statistics and attention softmax stay float32); `attention` is one of
    `ATTENTION_IMPLEMENTATIONS`."""

    config: ImageEncoderConfig
    dtype: Any = jnp.float32
    attention: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        p = cfg.patch_size
        x = PatchEmbed(cfg.embed_dim, p, self.dtype, name="patch_embed")(x.astype(self.dtype))
        grid = (cfg.grid_size, cfg.grid_size)
        if cfg.use_abs_pos:
            pos_embed = self.param(
                "pos_embed", nn.initializers.zeros, (1, *grid, cfg.embed_dim)
            )
            x = x + pos_embed.astype(x.dtype)
        for i in range(cfg.depth):
            window = 0 if i in cfg.global_attn_indexes else cfg.window_size
            x = Block(cfg.num_heads, cfg.mlp_ratio, cfg.use_rel_pos, window, grid, self.dtype,
                      self.attention, name=f"blocks_{i}")(x)
        x = nn.Conv(cfg.out_chans, (1, 1), use_bias=False, dtype=self.dtype, name="neck_0")(x)
        x = layer_norm_2d(name="neck_1", dtype=self.dtype)(x)
        x = nn.Conv(cfg.out_chans, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    dtype=self.dtype, name="neck_2")(x)
        return layer_norm_2d(name="neck_3", dtype=jnp.float32)(x)
