"""GP-SAM, the geometric-prompt baseline of the paper's Table 3: SAM prompted with points and/or
a box read off the training-free pseudo mask of the target, instead of VRP prompts. It needs
a backbone and SAM, no trained encoder.

The pseudo mask is the prior the VRP encoder computes (`vrp_encoder.pseudo_mask`: for every
target position the largest cosine similarity of its layer4 feature to the masked reference
layer4 features; the mean over K references), then, as PFENet turns it into a [0, 1] map,
min-max normalised per target, resized to the model grid (bilinear, align_corners=True) and
thresholded at `threshold` (0.5 by default). A constant prior, with no information, gives the
whole image. From that mask, this module takes:
  - `point`: `NUM_POINTS` (5) pixels drawn uniformly without replacement (fewer when the mask
    is smaller; the rest are SAM's padding points, label -1), all positive;
  - `box`: the mask's tight box (inclusive pixel extremes, XYXY);
  - `box+point`: both.
Coordinates map to SAM's 1024 frame as the targets do (stretched, align_corners=True: pixel c
of an S grid is c * 1023 / (S - 1)). SAM decodes one mask (`multimask_output=False`, as for
VRP prompts).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from sam_port.interpolate import resize_bilinear
from vrp_sam_jax.models.vrp_sam import VRPSam, VRPSamConfig
from vrp_sam_jax.names import GP_PROMPTS

NUM_POINTS = 5
THRESHOLD = 0.5
_NORM_EPS = 1e-7  # PFENet's min-max normalisation


def normalised_prior(prior: jax.Array) -> jax.Array:
    """(B, h, w, 1) -> (B, h, w) in [0, 1] per target: (p - min) / (max - min + 1e-7)."""
    p = prior[..., 0]
    low = p.min(axis=(1, 2), keepdims=True)
    high = p.max(axis=(1, 2), keepdims=True)
    return (p - low) / (high - low + _NORM_EPS)


def pseudo_masks(prior: jax.Array, size: int, threshold: float = THRESHOLD) -> jax.Array:
    """(B, h, w, 1) prior -> (B, size, size) bool pseudo masks on the model grid (never
    empty: the threshold is relative to each map's own maximum, which is 1 or, for a constant
    map, 0)."""
    p = resize_bilinear(normalised_prior(prior)[..., None], (size, size),
                        align_corners=True)[..., 0]
    return p >= threshold * p.max(axis=(1, 2), keepdims=True)


def sample_points(mask: jax.Array, key: jax.Array, num: int = NUM_POINTS
                  ) -> tuple[jax.Array, jax.Array]:
    """`num` pixels of a (S, S) bool mask, uniformly without replacement (the top `num` of
    uniform scores inside the mask) -> (xy pixel coordinates (num, 2), valid (num,))."""
    s = mask.shape[1]
    scores = jnp.where(mask.reshape(-1), jax.random.uniform(key, (mask.size,)), -1.0)
    top, index = jax.lax.top_k(scores, num)
    xy = jnp.stack([index % s, index // s], axis=-1).astype(jnp.float32)
    return xy, top >= 0


def tight_box(mask: jax.Array) -> jax.Array:
    """(S, S) bool -> (4,) float32 XYXY: the first and last rows and columns it covers."""
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    idx = jnp.arange(mask.shape[0])
    x0, x1 = jnp.min(jnp.where(cols, idx, mask.shape[1])), jnp.max(jnp.where(cols, idx, -1))
    y0, y1 = jnp.min(jnp.where(rows, idx, mask.shape[0])), jnp.max(jnp.where(rows, idx, -1))
    return jnp.stack([x0, y0, x1, y1]).astype(jnp.float32)


def row_keys(index: jax.Array, seed: int) -> jax.Array:
    """A PRNG key per episode (or target) index (B,), so the draws depend on neither the
    batch size nor the device count."""
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(index)


def geometric_prompts(masks: jax.Array, keys: jax.Array, kind: str, sam_size: int
                      ) -> tuple[tuple[jax.Array, jax.Array] | None, jax.Array | None]:
    """(B, S, S) pseudo masks and a key per row -> (points (coords (B, N, 2), labels (B, N))
    or None, boxes (B, 4) or None), in SAM's input frame."""
    if kind not in GP_PROMPTS:
        raise ValueError(f"unknown GP-SAM prompts {kind!r}; choose from {', '.join(GP_PROMPTS)}")
    scale = (sam_size - 1) / (masks.shape[1] - 1)
    points = boxes = None
    if "point" in kind:
        xy, valid = jax.vmap(sample_points)(masks, keys)
        points = (xy * scale, jnp.where(valid, 1, -1).astype(jnp.int32))
    if "box" in kind:
        boxes = jax.vmap(tight_box)(masks) * scale
    return points, boxes


@partial(jax.jit, static_argnums=0)
def encode_reference(model_config: VRPSamConfig, params: dict, ref_images: jax.Array,
                     prompt_masks: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Normalised references (B, K, S, S, 3) and prompt masks (B, K, S, S) -> what the prior
    needs of them (`VRPSam.reference_prior`), computed once for any number of targets."""
    model = VRPSam(model_config)
    return model.apply({"params": params}, ref_images, prompt_masks,
                       method=model.reference_prior)


@partial(jax.jit, static_argnums=(0, 1, 2))
def gp_sam_logits(model_config: VRPSamConfig, kind: str, threshold: float, params: dict,
                  reference: tuple[jax.Array, jax.Array], target_images: jax.Array,
                  keys: jax.Array, embeddings: jax.Array | None = None) -> jax.Array:
    """`encode_reference`'s output, normalised targets (B, S, S, 3) and a PRNG key per target
    -> logits (B, S, S). `params` needs "backbone" and "sam" only; `embeddings` are cached
    SAM image embeddings of the targets."""
    model = VRPSam(model_config)
    variables = {"params": params}
    prior = model.apply(variables, *reference, target_images, method=model.target_prior)
    masks = pseudo_masks(prior, model_config.image_size, threshold)
    points, boxes = geometric_prompts(masks, keys, kind, model_config.sam.img_size)
    if embeddings is None:
        embeddings = model.apply(variables, target_images, method=model.embed_targets)
    no_vrp = jnp.zeros((target_images.shape[0], 0, model_config.hidden_dim), jnp.float32)
    return model.apply(variables, embeddings, no_vrp, points, boxes, method=model.decode)
