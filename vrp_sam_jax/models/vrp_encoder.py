"""The visual reference prompt encoder: feature augmenter + prompt generator
(docs/COMPUTATION.md §4).

The encoder is split so that a reference is encoded once and reused for many targets:
`encode_reference` (reference-only work), `encode_target` (per target) and `generate`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.interpolate import resize_bilinear
from vrp_sam_jax.models.prompt_generator import PromptGenerator
from vrp_sam_jax.names import QUERY_INITS

MASK_CHANNEL_SCALE = 10.0
PROTOTYPE_EPS = 0.0005
COSINE_EPS = 1e-7


def masked_average_pooling(features: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, h, w, C), (B, h, w, 1) -> (B, C) = sum(f * m) / (sum(m) + 0.0005)."""
    total = jnp.sum(features * mask, axis=(1, 2))
    return total / (jnp.sum(mask, axis=(1, 2)) + PROTOTYPE_EPS)


def pseudo_mask(ref_layer4: jax.Array, target_layer4: jax.Array, mask: jax.Array) -> jax.Array:
    """Training-free prior: for every target position, the max cosine similarity to the masked
    reference layer4 features. (B, h, w, C4) x2, mask (B, h', w', 1) -> (B, h, w, 1).
    No gradient flows through it (the release computes it from frozen features, without
    gradients; the norm of a masked-out zero vector has no derivative)."""
    ref_layer4, target_layer4, mask = jax.lax.stop_gradient((ref_layer4, target_layer4, mask))
    b, h, w, c = target_layer4.shape
    if mask.shape[1:3] != ref_layer4.shape[1:3]:
        mask = resize_bilinear(mask, ref_layer4.shape[1:3], align_corners=True)
    s = (ref_layer4 * mask).reshape(b, -1, c)
    q = target_layer4.reshape(b, -1, c)
    hp = jax.lax.Precision.HIGHEST
    dots = jnp.einsum("bic,bjc->bij", s, q, precision=hp)
    norms = jnp.linalg.norm(s, axis=-1)[:, :, None] * jnp.linalg.norm(q, axis=-1)[:, None, :]
    similarity = jnp.max(dots / (norms + COSINE_EPS), axis=1)
    return similarity.reshape(b, h, w, 1)


def query_offset(query_init: str, num_queries: int, foreground: jax.Array,
                 background: jax.Array) -> jax.Array | None:
    """How the queries start (`names.QUERY_INITS`, the paper's Table 6): (B, C) prototypes ->
    (B, num_queries, C) added to the learned table, or None for the table alone (`random`,
    the release). `foreground` / `background` add that prototype to every query, `half` the
    foreground to the first half and the background to the rest. The table stays in every
    variant: a prototype alone would start every query equal."""
    if query_init == "random":
        return None
    if query_init not in QUERY_INITS:
        raise ValueError(f"unknown query_init {query_init!r}; choose from "
                         f"{', '.join(QUERY_INITS)}")
    b, c = foreground.shape
    if query_init == "half":
        first = num_queries // 2 + num_queries % 2
        return jnp.concatenate([
            jnp.broadcast_to(foreground[:, None], (b, first, c)),
            jnp.broadcast_to(background[:, None], (b, num_queries - first, c))], axis=1)
    proto = foreground if query_init == "foreground" else background
    return jnp.broadcast_to(proto[:, None], (b, num_queries, c))


def _conv1x1(features: int) -> nn.Conv:
    # PyTorch's default Conv2d init: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
    init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
    return nn.Conv(features, (1, 1), use_bias=False, kernel_init=init)


class VRPEncoder(nn.Module):
    """Trained part of VRP-SAM: `downsample_query`, `merge_1` and the prompt generator
    (`transformer_decoder`); 1,592,064 parameters with ResNet-50 features."""

    hidden_dim: int = 256
    num_queries: int = 50
    num_heads: int = 4
    dropout_rate: float = 0.5
    query_init: str = "random"  # QUERY_INITS

    def setup(self) -> None:
        self.downsample_query_0 = _conv1x1(self.hidden_dim)
        self.downsample_query_2 = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2))
        self.merge_1_0 = _conv1x1(self.hidden_dim)
        self.transformer_decoder = PromptGenerator(self.hidden_dim, self.num_queries,
                                                   self.num_heads)

    def _reduce(self, features: jax.Array, deterministic: bool) -> jax.Array:
        """1x1 conv, ReLU, Dropout2d (whole channels; training only)."""
        x = nn.relu(self.downsample_query_0(features))
        return self.downsample_query_2(x, deterministic=deterministic)

    def _merge(self, features: jax.Array, prototype: jax.Array, mask: jax.Array) -> jax.Array:
        proto = jnp.broadcast_to(prototype[:, None, None, :], features.shape)
        x = jnp.concatenate([features, proto, MASK_CHANNEL_SCALE * mask], axis=-1)
        return nn.relu(self.merge_1_0(x))

    def encode_reference(self, features: jax.Array, mask: jax.Array,
                         deterministic: bool = True) -> tuple[jax.Array, jax.Array, jax.Array]:
        """concat(layer2, layer3) of the reference and its prompt mask on that grid ->
        (merged reference features (B, h, w, C), prototype (B, C), background prototype
        (B, C): the masked average outside the mask, used by `query_init` only)."""
        reduced = self._reduce(features, deterministic)
        prototype = masked_average_pooling(reduced, mask)
        background = masked_average_pooling(reduced, 1 - mask)
        return self._merge(reduced, prototype, mask), prototype, background

    def encode_target(self, features: jax.Array, prototype: jax.Array, prior: jax.Array,
                      deterministic: bool = True) -> jax.Array:
        """concat(layer2, layer3) of the target, the reference prototype and the pseudo mask ->
        merged target features (B, h, w, C)."""
        return self._merge(self._reduce(features, deterministic), prototype, prior)

    def generate(self, reference: jax.Array, target: jax.Array, prototype: jax.Array,
                 background: jax.Array) -> jax.Array:
        """Merged reference and target features (B, h, w, C), prototype and background
        prototype (B, C) -> the prompt embeddings (B, num_queries, C), one shot per row, which
        SAM's mask decoder takes as sparse prompts."""
        offset = query_offset(self.query_init, self.num_queries, prototype, background)
        return self.transformer_decoder(reference, target, offset)

    def __call__(self, ref_features: jax.Array, mask: jax.Array, target_features: jax.Array,
                 prior: jax.Array, deterministic: bool = True) -> jax.Array:
        reference, prototype, background = self.encode_reference(ref_features, mask,
                                                                 deterministic)
        target = self.encode_target(target_features, prototype, prior, deterministic)
        return self.generate(reference, target, prototype, background)
