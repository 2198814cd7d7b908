"""DINOv2 ViT/14 (Oquab et al., 2023) as the VRP encoder's frozen image encoder.

A port of `dinov2.models.vision_transformer.DinoVisionTransformer` as the hub models build it
(`dinov2_vit{s,b,l}14`: patch 14, LayerScale, MLP feed-forward, exact GELU, LayerNorm eps 1e-6,
pre-trained at 518 = 37 x 37 patches). Module names follow the official state-dict keys
(`patch_embed.proj`, `blocks.N.{norm1,attn.qkv,attn.proj,ls1,norm2,mlp.fc1,mlp.fc2,ls2}`), so
`sam_port.convert` maps every parameter to its key. `norm` and `mask_token` are not used by
the stages below and are not kept (the converter ignores them).

Stages, as the release's author describes them for ViT-L (VRP-SAM issues #10 and #12):
`layer0 = patch_embed`, `layer1 = blocks[:8]`, `layer2 = blocks[8:12]`,
`layer3 = blocks[12:21]`, `layer4 = blocks[21:24]`; the 12-block models are cut at the same
fractions rounded down (4, 6, 10). Choices this port makes where the author's answer is
silent, so that the backbone interface is the ResNet's:
  - the image (512) is resized (bilinear, align_corners=True, as the release's other resizes)
    to the largest multiple of 14 it holds (504), since the official patch embedding refuses
    any other size: a 36 x 36 token grid;
  - layer0 is the official `prepare_tokens_with_masks`: patch embedding, the class token and
    the position embedding interpolated from 37 x 37 as `interpolate_pos_encoding` does
    (bicubic, scale factor (36 + 0.1) / 37);
  - features = concat(layer2, layer3) patch tokens (no final norm) as a (36, 36) map; the
    class token travels through the blocks but is not a feature;
  - the masked layer3 that feeds layer4 multiplies the patch tokens by the mask and leaves
    the class token as it is.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.interpolate import resize_bicubic, resize_bilinear
from sam_port.modeling.common import gelu, layer_norm

POS_INTERPOLATION_OFFSET = 0.1  # added to the target grid by `interpolate_pos_encoding`


@dataclasses.dataclass(frozen=True)
class DinoSpec:
    """A DINOv2 ViT: width, depth, heads, the pre-training grid and the stage boundaries
    (blocks[:s0] = layer1, [s0:s1] = layer2, [s1:s2] = layer3, [s2:] = layer4)."""

    embed_dim: int
    depth: int
    num_heads: int
    splits: tuple[int, int, int]
    patch_size: int = 14
    pretrain_grid: int = 37  # 518 / 14
    mlp_ratio: float = 4.0

    @property
    def feature_dim(self) -> int:
        return 2 * self.embed_dim

    def input_size(self, size: int) -> int:
        """The side the image is resized to: the largest multiple of the patch size."""
        return (size // self.patch_size) * self.patch_size


class LayerScale(nn.Module):
    """x * gamma (`ls1` / `ls2`)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gamma = self.param("gamma", nn.initializers.ones, (x.shape[-1],))
        return x * gamma.astype(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with a packed `qkv` Linear and `proj`."""

    num_heads: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, c = x.shape
        h = self.num_heads
        qkv = nn.Dense(3 * c, dtype=self.dtype, name="qkv")(x).reshape(b, n, 3, h, c // h)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        hp = jax.lax.Precision.HIGHEST
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * (c // h) ** -0.5, k, precision=hp)
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", attn, v, precision=hp).reshape(b, n, c)
        return nn.Dense(c, dtype=self.dtype, name="proj")(out)


class Mlp(nn.Module):
    hidden: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = gelu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x))
        return nn.Dense(x.shape[-1], dtype=self.dtype, name="fc2")(y)


class Block(nn.Module):
    """x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    spec: DinoSpec
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s, dt = self.spec, self.dtype
        y = Attention(s.num_heads, dt, name="attn")(layer_norm(1e-6, "norm1", dt)(x))
        x = x + LayerScale(name="ls1")(y)
        y = Mlp(int(s.embed_dim * s.mlp_ratio), dt, name="mlp")(layer_norm(1e-6, "norm2", dt)(x))
        return x + LayerScale(name="ls2")(y)


class PatchEmbed(nn.Module):
    spec: DinoSpec
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.spec.patch_size
        return nn.Conv(self.spec.embed_dim, (p, p), strides=(p, p), padding="VALID",
                       dtype=self.dtype, name="proj")(x)


def interpolate_pos_embed(pos_embed: jax.Array, grid: int, pretrain_grid: int) -> jax.Array:
    """(1, 1 + g0*g0, C) -> (1, 1 + grid*grid, C) as the official `interpolate_pos_encoding`
    (the class position is kept; the patch positions are resized bicubically with the
    official scale factor)."""
    if grid == pretrain_grid:
        return pos_embed
    c = pos_embed.shape[-1]
    patches = pos_embed[:, 1:].astype(jnp.float32).reshape(1, pretrain_grid, pretrain_grid, c)
    factor = (grid + POS_INTERPOLATION_OFFSET) / math.sqrt(pretrain_grid ** 2)
    patches = resize_bicubic(patches, (grid, grid), scale_factor=(factor, factor))
    out = jnp.concatenate([pos_embed[:, :1].astype(jnp.float32),
                           patches.reshape(1, grid * grid, c)], axis=1)
    return out.astype(pos_embed.dtype)


class DinoV2(nn.Module):
    """Frozen DINOv2 with the CNN backbones' interface: `features(x)` -> (concat(layer2,
    layer3) patch tokens as (B, g, g, 2C), layer3 tokens (B, 1 + g*g, C)) and
    `masked_final_stage(layer3, mask)` / `final_stage(layer3)` -> layer4 map (B, g, g, C)."""

    spec: DinoSpec
    dtype: Any = None  # compute dtype (parameters stay float32)

    def setup(self) -> None:
        s = self.spec
        self.patch_embed = PatchEmbed(s, self.dtype)
        self.cls_token = self.param("cls_token", nn.initializers.normal(1e-6),
                                    (1, 1, s.embed_dim))
        self.pos_embed = self.param("pos_embed", nn.initializers.truncated_normal(0.02),
                                    (1, 1 + s.pretrain_grid ** 2, s.embed_dim))
        self.blocks = [Block(s, self.dtype) for _ in range(s.depth)]

    def _tokens(self, x: jax.Array) -> jax.Array:
        """layer0: normalised NHWC images -> (B, 1 + g*g, C) tokens."""
        s = self.spec
        size = s.input_size(x.shape[1])
        if x.shape[1:3] != (size, size):
            x = resize_bilinear(x, (size, size), align_corners=True)
        patches = self.patch_embed(x)
        b, g = patches.shape[0], patches.shape[1]
        patches = patches.reshape(b, g * g, s.embed_dim)
        cls = jnp.broadcast_to(self.cls_token.astype(patches.dtype), (b, 1, s.embed_dim))
        pos = interpolate_pos_embed(self.pos_embed, g, s.pretrain_grid)
        return jnp.concatenate([cls, patches], axis=1) + pos.astype(patches.dtype)

    def _run(self, x: jax.Array, start: int, stop: int | None) -> jax.Array:
        for block in self.blocks[start:stop]:
            x = block(x)
        return x

    @staticmethod
    def _grid(tokens: jax.Array) -> jax.Array:
        b, n, c = tokens.shape
        g = math.isqrt(n - 1)
        return tokens[:, 1:].reshape(b, g, g, c)

    def features(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        s0, s1, s2 = self.spec.splits
        x2 = self._run(self._run(self._tokens(x), 0, s0), s0, s1)
        x3 = self._run(x2, s1, s2)
        return jnp.concatenate([self._grid(x2), self._grid(x3)], axis=-1), x3

    def final_stage(self, layer3: jax.Array) -> jax.Array:
        return self._grid(self._run(layer3, self.spec.splits[2], None))

    def masked_final_stage(self, layer3: jax.Array, mask: jax.Array) -> jax.Array:
        """layer4 of layer3 whose patch tokens are multiplied by `mask` (B, g, g, 1)."""
        b = mask.shape[0]
        weights = jnp.concatenate([jnp.ones((b, 1), layer3.dtype),
                                   mask.reshape(b, -1).astype(layer3.dtype)], axis=1)
        return self.final_stage(layer3 * weights[:, :, None])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.final_stage(self.features(x)[1])
