"""SAM's two-way transformer: tokens attend to the image and the image attends to the tokens."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.modeling.common import MLPBlock, layer_norm


class Attention(nn.Module):
    """Multi-head attention that may shrink the projected width by `downsample_rate`."""

    embedding_dim: int
    num_heads: int
    downsample_rate: int = 1

    @nn.compact
    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        internal_dim = self.embedding_dim // self.downsample_rate
        if internal_dim % self.num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        q = nn.Dense(internal_dim, name="q_proj")(q)
        k = nn.Dense(internal_dim, name="k_proj")(k)
        v = nn.Dense(internal_dim, name="v_proj")(v)
        head_dim = internal_dim // self.num_heads
        q, k, v = (t.reshape(*t.shape[:2], self.num_heads, head_dim) for t in (q, k, v))
        attn = jnp.einsum("bqnc,bknc->bnqk", q, k) / math.sqrt(head_dim)
        attn = jax.nn.softmax(attn, axis=-1)
        out = jnp.einsum("bnqk,bknc->bqnc", attn, v).reshape(*q.shape[:2], internal_dim)
        return nn.Dense(self.embedding_dim, name="out_proj")(out)


class TwoWayAttentionBlock(nn.Module):
    """Self-attn of tokens, tokens->image cross-attn, MLP, image->tokens cross-attn (post-norm)."""

    embedding_dim: int
    num_heads: int
    mlp_dim: int
    attention_downsample_rate: int = 2
    skip_first_layer_pe: bool = False

    @nn.compact
    def __call__(
        self, queries: jax.Array, keys: jax.Array, query_pe: jax.Array, key_pe: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        c, heads, rate = self.embedding_dim, self.num_heads, self.attention_downsample_rate
        self_attn = Attention(c, heads, name="self_attn")
        if self.skip_first_layer_pe:
            queries = self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self_attn(q, q, queries)
        queries = layer_norm(1e-5, name="norm1")(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = queries + Attention(c, heads, rate, name="cross_attn_token_to_image")(q, k, keys)
        queries = layer_norm(1e-5, name="norm2")(queries)

        queries = queries + MLPBlock(self.mlp_dim, act=nn.relu, name="mlp")(queries)
        queries = layer_norm(1e-5, name="norm3")(queries)

        q, k = queries + query_pe, keys + key_pe
        keys = keys + Attention(c, heads, rate, name="cross_attn_image_to_token")(k, q, queries)
        keys = layer_norm(1e-5, name="norm4")(keys)
        return queries, keys


class TwoWayTransformer(nn.Module):
    depth: int
    embedding_dim: int
    num_heads: int
    mlp_dim: int
    attention_downsample_rate: int = 2

    @nn.compact
    def __call__(
        self, image_embedding: jax.Array, image_pe: jax.Array, point_embedding: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """image_embedding, image_pe: (B, h, w, C); point_embedding: (B, N, C).
        Returns the processed tokens (B, N, C) and image tokens (B, h*w, C)."""
        b, h, w, c = image_embedding.shape
        keys = image_embedding.reshape(b, h * w, c)
        key_pe = image_pe.reshape(b, h * w, c)
        queries = point_embedding
        for i in range(self.depth):
            queries, keys = TwoWayAttentionBlock(
                self.embedding_dim, self.num_heads, self.mlp_dim, self.attention_downsample_rate,
                skip_first_layer_pe=(i == 0), name=f"layers_{i}",
            )(queries, keys, point_embedding, key_pe)
        q, k = queries + point_embedding, keys + key_pe
        final = Attention(self.embedding_dim, self.num_heads, self.attention_downsample_rate,
                          name="final_attn_token_to_image")
        queries = layer_norm(1e-5, name="norm_final_attn")(queries + final(q, k, keys))
        return queries, keys
