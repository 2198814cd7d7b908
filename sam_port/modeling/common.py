"""Layers shared by SAM's image encoder, prompt encoder and mask decoder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def gelu(x: jax.Array) -> jax.Array:
    """PyTorch's default `nn.GELU` (exact erf form; Flax's default is the tanh approximation)."""
    return nn.gelu(x, approximate=False)


def layer_norm(epsilon: float, name: str | None = None, dtype: Any = None) -> nn.LayerNorm:
    """A LayerNorm over the last axis computed as PyTorch does (two-pass variance); the
    statistics are float32 whatever the output `dtype`."""
    return nn.LayerNorm(epsilon=epsilon, use_fast_variance=False, dtype=dtype, name=name)


def layer_norm_2d(name: str | None = None, dtype: Any = None) -> nn.LayerNorm:
    """SAM's `LayerNorm2d` (channel-wise, eps 1e-6); channels are last in NHWC."""
    return layer_norm(1e-6, name=name, dtype=dtype)


class Embed(nn.Module):
    """A table of learned vectors, stored as PyTorch's `nn.Embedding.weight` (num, features)."""

    num_embeddings: int
    features: int

    def setup(self) -> None:
        self.weight = self.param(
            "weight", nn.initializers.normal(1.0), (self.num_embeddings, self.features)
        )

    def __call__(self) -> jax.Array:
        return self.weight


class MLPBlock(nn.Module):
    """lin1 -> act -> lin2 (the transformer MLP of SAM)."""

    mlp_dim: int
    act: Callable[[jax.Array], jax.Array] = gelu
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_dim = x.shape[-1]
        hidden = self.act(nn.Dense(self.mlp_dim, dtype=self.dtype, name="lin1")(x))
        return nn.Dense(out_dim, dtype=self.dtype, name="lin2")(hidden)


class MLP(nn.Module):
    """`num_layers` Dense layers with `act` (ReLU) between them: SAM's hypernetworks and IoU
    head, and every MLP of SAM 2 (`sam2.modeling.sam2_utils.MLP`, GELU in Hiera)."""

    hidden_dim: int
    output_dim: int
    num_layers: int
    sigmoid_output: bool = False
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dims = [self.hidden_dim] * (self.num_layers - 1) + [self.output_dim]
        for i, dim in enumerate(dims):
            x = nn.Dense(dim, dtype=self.dtype, name=f"layers_{i}")(x)
            if i < self.num_layers - 1:
                x = self.act(x)
        return nn.sigmoid(x) if self.sigmoid_output else x


class ConvTranspose2x2(nn.Module):
    """`nn.ConvTranspose2d(kernel_size=2, stride=2)` on NHWC input; the weight keeps PyTorch's
    (in, out, kh, kw) layout. Each input pixel writes one 2x2 output block, so it is one einsum."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        weight = self.param(
            "weight", nn.initializers.lecun_normal(in_axis=0, out_axis=1),
            (in_features, self.features, 2, 2),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        b, h, w, _ = x.shape
        y = jnp.einsum("bhwi,iopq->bhpwqo", x, weight.astype(x.dtype))
        return y.reshape(b, 2 * h, 2 * w, self.features) + bias.astype(x.dtype)
