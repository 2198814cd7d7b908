"""SAM 2's memory: the memory encoder (a frame's features fused with its predicted mask,
`sam2/modeling/memory_encoder.py`) and the memory attention (the current frame's features
attending to the memories and object pointers of other frames, with axial rotary position
encodings, `memory_attention.py` and `sam/transformer.py`'s `RoPEAttention`). Layouts are
NHWC for maps and batch-first (B, N, C) for token sequences; inference only (no dropout)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam_port.modeling.common import gelu, layer_norm, layer_norm_2d
from sam_port.modeling.hiera import sine_position_encoding
from sam_port.modeling.image_encoder import QUERY_CHUNK


def axial_rope_angles(dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> np.ndarray:
    """`compute_axial_cis`' angles: (end_x * end_y, dim / 2), row-major tokens; the first
    dim/4 rotate with the token's x, the rest with its y (float32, as the original)."""
    f32 = np.float32
    freqs = (f32(1.0) / (f32(theta) ** (np.arange(0, dim, 4)[: dim // 4].astype(f32)
                                         / f32(dim)))).astype(f32)
    t = np.arange(end_x * end_y, dtype=f32)
    t_x, t_y = t % f32(end_x), np.floor(t / f32(end_x))
    return np.concatenate([np.outer(t_x, freqs), np.outer(t_y, freqs)], -1).astype(f32)


def apply_rotary(x: jax.Array, angles: jax.Array) -> jax.Array:
    """Rotate consecutive channel pairs of x (B, heads, N, C) by `angles` (N, C/2): the
    complex product of `apply_rotary_enc`, in float32."""
    b, h, n, c = x.shape
    pairs = x.astype(jnp.float32).reshape(b, h, n, c // 2, 2)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    real = pairs[..., 0] * cos - pairs[..., 1] * sin
    imag = pairs[..., 0] * sin + pairs[..., 1] * cos
    return jnp.stack([real, imag], -1).reshape(b, h, n, c).astype(x.dtype)


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, k_valid: jax.Array | None
            ) -> jax.Array:
    attn = jnp.einsum("bhqc,bhkc->bhqk", q, k) / np.sqrt(q.shape[-1]).astype(np.float32)
    if k_valid is not None:
        attn = jnp.where(k_valid, attn, -jnp.inf)
    return jnp.einsum("bhqk,bhkc->bhqc", jax.nn.softmax(attn, axis=-1), v)


def blocked_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                      k_valid: jax.Array | None = None) -> jax.Array:
    """Softmax attention of q (B, heads, Nq, C) over k, v (B, heads, Nk, C), keys where
    `k_valid` (Nk,) is False left out, a block of queries at a time: a frame's 4096 queries
    over seven memory frames' 28672 keys would otherwise make a 470 MB map per head (same
    arithmetic per query)."""
    b, heads, nq, dim = q.shape
    if nq <= QUERY_CHUNK or nq % QUERY_CHUNK:
        return _attend(q, k, v, k_valid)
    blocks = q.reshape(b, heads, nq // QUERY_CHUNK, QUERY_CHUNK, dim)
    out = jax.lax.map(lambda qc: _attend(qc, k, v, k_valid), jnp.moveaxis(blocks, 2, 0))
    return jnp.moveaxis(out, 0, 2).reshape(b, heads, nq, dim)


class RoPEAttention(nn.Module):
    """Multi-head attention with axial rotary encodings on the queries and on the first
    keys (all but the last `num_k_exclude_rope`: the object pointers); the keys' encodings
    repeat the queries' grid once per memory frame (`rope_k_repeat`)."""

    embedding_dim: int
    num_heads: int = 1
    kv_in_dim: int | None = None
    rope_theta: float = 10000.0
    rope_k_repeat: bool = False

    @nn.compact
    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array,
                 num_k_exclude_rope: int = 0, k_valid: jax.Array | None = None) -> jax.Array:
        """q (B, Nq, C) with Nq a square grid; k, v (B, Nk, C_kv); keys where `k_valid`
        (Nk,) is False get no weight (padding slots)."""
        c, heads = self.embedding_dim, self.num_heads
        q = nn.Dense(c, name="q_proj")(q)
        k = nn.Dense(c, name="k_proj")(k)
        v = nn.Dense(c, name="v_proj")(v)

        def split(x):  # (B, N, C) -> (B, heads, N, C / heads)
            return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(0, 2, 1, 3)

        q, k, v = split(q), split(k), split(v)
        side = int(round(np.sqrt(q.shape[2])))
        angles = jnp.asarray(axial_rope_angles(c // heads, side, side, self.rope_theta))
        num_k_rope = k.shape[2] - num_k_exclude_rope
        if num_k_rope != q.shape[2] and not self.rope_k_repeat:
            raise ValueError("keys of another length than the queries need rope_k_repeat")
        k_angles = jnp.tile(angles, (num_k_rope // q.shape[2], 1))
        q = apply_rotary(q, angles)
        k = jnp.concatenate([apply_rotary(k[:, :, :num_k_rope], k_angles),
                             k[:, :, num_k_rope:]], axis=2)
        out = blocked_attention(q, k, v, k_valid)
        out = out.transpose(0, 2, 1, 3).reshape(out.shape[0], out.shape[2], c)
        return nn.Dense(c, name="out_proj")(out)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm: self-attention (RoPE), cross-attention to the memories (keys with their
    position encodings, RoPE except on the object pointers), a ReLU feed-forward."""

    d_model: int
    dim_feedforward: int
    kv_in_dim: int

    @nn.compact
    def __call__(self, tgt: jax.Array, memory: jax.Array, pos: jax.Array,
                 num_k_exclude_rope: int, memory_valid: jax.Array | None = None) -> jax.Array:
        x = layer_norm(1e-5, name="norm1")(tgt)
        tgt = tgt + RoPEAttention(self.d_model, name="self_attn")(x, x, x)
        x = layer_norm(1e-5, name="norm2")(tgt)
        tgt = tgt + RoPEAttention(self.d_model, kv_in_dim=self.kv_in_dim, rope_k_repeat=True,
                                  name="cross_attn_image")(x, memory + pos, memory,
                                                           num_k_exclude_rope,
                                                           memory_valid)
        x = layer_norm(1e-5, name="norm3")(tgt)
        x = nn.Dense(self.dim_feedforward, name="linear1")(x)
        return tgt + nn.Dense(self.d_model, name="linear2")(nn.relu(x))


class MemoryAttention(nn.Module):
    """The current frame's tokens (B, HW, C) with their position encodings, conditioned on
    memory tokens (B, M, C_mem) and theirs (those where `memory_valid` (M,) is False left out)
    -> (B, HW, C)."""

    d_model: int
    num_layers: int = 4
    dim_feedforward: int = 2048
    kv_in_dim: int = 64

    @nn.compact
    def __call__(self, curr: jax.Array, memory: jax.Array, curr_pos: jax.Array,
                 memory_pos: jax.Array, num_obj_ptr_tokens: int = 0,
                 memory_valid: jax.Array | None = None) -> jax.Array:
        output = curr + 0.1 * curr_pos  # pos_enc_at_input
        for i in range(self.num_layers):
            output = MemoryAttentionLayer(self.d_model, self.dim_feedforward, self.kv_in_dim,
                                          name=f"layers_{i}")(output, memory, memory_pos,
                                                              num_obj_ptr_tokens,
                                                              memory_valid)
        return layer_norm(1e-5, name="norm")(output)


class MaskDownSampler(nn.Module):
    """A mask (B, H, W, 1) -> (B, H/16, W/16, embed_dim): four 3x3 stride-2 convolutions, each
    widening 4x, with LayerNorm2d and GELU, then a 1x1 projection."""

    embed_dim: int
    stages: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = 1
        for i in range(self.stages):
            channels *= 4
            x = nn.Conv(channels, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                        name=f"encoder_{3 * i}")(x)
            x = gelu(layer_norm_2d(name=f"encoder_{3 * i + 1}")(x))
        return nn.Conv(self.embed_dim, (1, 1), name=f"encoder_{3 * self.stages}")(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, 4x MLP with GELU, layer scale, residual."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dim = x.shape[-1]
        y = nn.Conv(dim, (7, 7), padding=((3, 3), (3, 3)), feature_group_count=dim,
                    name="dwconv")(x)
        y = layer_norm_2d(name="norm")(y)
        y = nn.Dense(dim, name="pwconv2")(gelu(nn.Dense(4 * dim, name="pwconv1")(y)))
        gamma = self.param("gamma", nn.initializers.constant(1e-6), (dim,))
        return x + gamma * y


class Fuser(nn.Module):
    num_layers: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.num_layers):
            x = CXBlock(name=f"layers_{i}")(x)
        return x


class MemoryEncoder(nn.Module):
    """A frame's pixel features (B, h, w, C) and its mask for the memory (B, 16h, 16w, 1),
    already through the sigmoid and scaled -> the memory features (B, h, w, out_dim) and their
    sine position encodings (h, w, out_dim)."""

    out_dim: int = 64

    @nn.compact
    def __call__(self, pix_feat: jax.Array, masks: jax.Array) -> tuple[jax.Array, np.ndarray]:
        c = pix_feat.shape[-1]
        masks = MaskDownSampler(c, name="mask_downsampler")(masks)
        x = nn.Conv(c, (1, 1), name="pix_feat_proj")(pix_feat) + masks
        x = Fuser(name="fuser")(x)
        if self.out_dim != c:
            x = nn.Conv(self.out_dim, (1, 1), name="out_proj")(x)
        return x, sine_position_encoding(x.shape[1], x.shape[2], self.out_dim)
