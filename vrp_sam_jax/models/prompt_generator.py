"""The VRP prompt generator: learnable queries attending to the reference, then to the target.

Names follow the release's `transformer_decoder` (attention blocks in ModuleLists, PyTorch's
packed `nn.MultiheadAttention` parameters), so the release's keys map one to one.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam_port.modeling.common import Embed, layer_norm

_HIGHEST = jax.lax.Precision.HIGHEST


def sine_position_embedding(height: int, width: int, num_pos_feats: int,
                            temperature: float = 10000.0) -> np.ndarray:
    """DETR's `PositionEmbeddingSine(normalize=True, scale=2*pi)` without a padding mask, as an
    (H, W, 2 * num_pos_feats) float32 array: y features then x features, sin/cos interleaved."""
    f32, eps, scale = np.float32, np.float32(1e-6), np.float32(2 * np.pi)
    y = np.arange(1, height + 1, dtype=f32)
    x = np.arange(1, width + 1, dtype=f32)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    dim_t = np.arange(num_pos_feats, dtype=f32)
    dim_t = f32(temperature) ** (f32(2) * np.floor(dim_t / 2) / f32(num_pos_feats))

    def encode(v: np.ndarray) -> np.ndarray:
        p = v[:, None] / dim_t
        return np.stack([np.sin(p[:, 0::2]), np.cos(p[:, 1::2])], axis=-1).reshape(len(v), -1)

    pos_y = np.broadcast_to(encode(y)[:, None, :], (height, width, num_pos_feats))
    pos_x = np.broadcast_to(encode(x)[None, :, :], (height, width, num_pos_feats))
    return np.concatenate([pos_y, pos_x], axis=-1).astype(f32)


class MultiheadAttention(nn.Module):
    """`torch.nn.MultiheadAttention` (batch-first here): packed `in_proj_weight` (3C, C) and
    `in_proj_bias`, `out_proj` Linear, no dropout."""

    embed_dim: int
    num_heads: int

    @nn.compact
    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        c, h = self.embed_dim, self.num_heads
        w = self.param("in_proj_weight", nn.initializers.xavier_uniform(), (3 * c, c))
        b = self.param("in_proj_bias", nn.initializers.zeros, (3 * c,))
        dt = q.dtype
        wq, wk, wv = (t.astype(dt) for t in jnp.split(w, 3))
        bq, bk, bv = (t.astype(dt) for t in jnp.split(b, 3))

        def project(x, wt, bias):
            y = jnp.einsum("bnc,dc->bnd", x, wt, precision=_HIGHEST) + bias
            return y.reshape(*x.shape[:2], h, c // h)

        qh, kh, vh = project(q, wq, bq), project(k, wk, bk), project(v, wv, bv)
        qh = qh * jnp.asarray((c // h) ** -0.5, dt)
        logits = jnp.einsum("bqhd,bkhd->bhqk", qh, kh, precision=_HIGHEST)
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(dt)
        out = jnp.einsum("bhqk,bkhd->bqhd", attn, vh, precision=_HIGHEST)
        out = out.reshape(*out.shape[:2], c)
        return nn.Dense(c, kernel_init=nn.initializers.xavier_uniform(), name="out_proj")(out)


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention: x = LN(x + MHA(x, memory + pos, memory))."""

    embed_dim: int
    num_heads: int

    @nn.compact
    def __call__(self, x: jax.Array, memory: jax.Array, pos: jax.Array) -> jax.Array:
        attn = MultiheadAttention(self.embed_dim, self.num_heads, name="multihead_attn")
        return layer_norm(1e-5, name="norm")(x + attn(x, memory + pos, memory))


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention: x = LN(x + MHA(x, x, x))."""

    embed_dim: int
    num_heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        attn = MultiheadAttention(self.embed_dim, self.num_heads, name="self_attn")
        return layer_norm(1e-5, name="norm")(x + attn(x, x, x))


class PromptGenerator(nn.Module):
    """50 learnable queries -> cross-attn(reference) -> self-attn -> cross-attn(target) ->
    self-attn; sine positions are added to the keys of the cross-attentions only."""

    hidden_dim: int
    num_queries: int
    num_heads: int

    def setup(self) -> None:
        c, h = self.hidden_dim, self.num_heads
        self.supp_q_feat = Embed(self.num_queries, c)
        self.transformer_cross_attention_layers_0 = [CrossAttentionLayer(c, h)]
        self.transformer_self_attention_layers_0 = [SelfAttentionLayer(c, h)]
        self.transformer_cross_attention_layers = [CrossAttentionLayer(c, h)]
        self.transformer_self_attention_layers = [SelfAttentionLayer(c, h)]

    def __call__(self, reference: jax.Array, target: jax.Array,
                 query_offset: jax.Array | None = None) -> jax.Array:
        """reference, target: (B, h, w, C) merged features -> (B, num_queries, C) prompts.
        `query_offset` (B, num_queries, C), when given, is added to the learned queries (the
        prototype initialisations of the paper's Table 6)."""
        b = reference.shape[0]

        def tokens(x):
            pos = sine_position_embedding(x.shape[1], x.shape[2], self.hidden_dim // 2)
            return x.reshape(b, -1, x.shape[-1]), jnp.asarray(pos.reshape(1, -1, pos.shape[-1]),
                                                              x.dtype)

        mem_s, pos_s = tokens(reference)
        mem_q, pos_q = tokens(target)
        queries = self.supp_q_feat().astype(reference.dtype)
        out = jnp.broadcast_to(queries, (b, *queries.shape))
        if query_offset is not None:
            out = out + query_offset.astype(out.dtype)
        out = self.transformer_cross_attention_layers_0[0](out, mem_s, pos_s)
        out = self.transformer_self_attention_layers_0[0](out)
        out = self.transformer_cross_attention_layers[0](out, mem_q, pos_q)
        return self.transformer_self_attention_layers[0](out)
