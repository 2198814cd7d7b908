"""VRP-SAM: frozen backbone + VRP encoder -> prompt embeddings -> frozen SAM mask decoder.

One Flax module with one method per stage (`model.apply(variables, ..., method=...)`), so a
reference can be encoded once and reused for many targets, and SAM image embeddings can be
computed once (or cached) and passed in. Parameters: {"backbone", "encoder", "sam"}.

Array conventions: images are normalised NHWC float (`preprocess.normalize_image`) at
`config.image_size`; prompt masks are {0, 1} floats (B, K, S, S) for K references (shots).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache, partial
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.config import Sam2Config, SamConfig, get_config, is_sam2_type, sam2_model_type
from sam_port.interpolate import resize_bilinear, resize_nearest
from sam_port.modeling.image_encoder import ATTENTION_IMPLEMENTATIONS
from sam_port.modeling.sam import INIT_COMPILER_OPTIONS, Sam
from sam_port.modeling.sam2 import (
    Sam2,
    box_corner_points,
    pack_image_features,
    unpack_image_features,
)
from vrp_sam_jax.models.backbones import get_backbone_spec, make_backbone
from vrp_sam_jax.models.vrp_encoder import VRPEncoder, pseudo_mask
from vrp_sam_jax.names import COMPUTE_DTYPES, QUERY_INITS


def architecture_problem(hidden_dim: int, num_queries: int, num_heads: int,
                         image_size: int) -> str | None:
    """What makes these sizes no model the library writes and reads back (None: nothing).
    Checked when a config is made (`train` refuses what `predict` would) and when a
    converted directory's metadata is read."""
    for field, value, high in (("hidden_dim", hidden_dim, 4096),
                               ("num_queries", num_queries, 4096),
                               ("num_heads", num_heads, 64), ("image_size", image_size, 4096)):
        if not 1 <= value <= high:
            return f"{field}={value} is outside 1..{high}"
    if hidden_dim % num_heads:
        return f"hidden_dim={hidden_dim} must divide by num_heads={num_heads}"
    if image_size % 8:  # the backbones' stride-8 features tile the image exactly
        return f"image_size={image_size} must divide by 8"
    return None


@dataclasses.dataclass(frozen=True)
class VRPSamConfig:
    """Architecture of a VRP-SAM model (hashable: usable as a static jit argument)."""

    backbone: str = "resnet50"
    sam_type: str = "vit_h"
    image_size: int = 512
    num_queries: int = 50
    num_heads: int = 4
    query_init: str = "random"  # QUERY_INITS: how the queries start (the paper's Table 6)
    # Compute dtype of the frozen parts (backbone, SAM image encoder); their parameters, the
    # VRP encoder, SAM's prompt encoder and mask decoder, the loss and the logits stay float32.
    compute_dtype: str = "float32"
    attention: str = "auto"  # SAM image-encoder attention path (ATTENTION_IMPLEMENTATIONS)

    def __post_init__(self) -> None:
        get_backbone_spec(self.backbone)  # validates the name
        if self.query_init not in QUERY_INITS:
            raise ValueError(f"unknown query_init {self.query_init!r}; choose from "
                             f"{', '.join(QUERY_INITS)}")
        get_config(self.sam_type)
        if is_sam2_type(self.sam_type):  # one name per model (`sam2.1_hiera_b+` -> base_plus)
            object.__setattr__(self, "sam_type", sam2_model_type(self.sam_type))
        problem = architecture_problem(self.hidden_dim, self.num_queries, self.num_heads,
                                       self.image_size)
        if problem:
            raise ValueError(problem)
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"unknown compute dtype {self.compute_dtype!r}; choose from "
                             f"{', '.join(COMPUTE_DTYPES)}")
        if self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"unknown attention implementation {self.attention!r}; choose "
                             f"from {', '.join(ATTENTION_IMPLEMENTATIONS)}")

    @property
    def dtype(self) -> jnp.dtype:
        return jnp.dtype(self.compute_dtype)

    @property
    def sam(self) -> SamConfig | Sam2Config:
        return get_config(self.sam_type)

    @property
    def sam2(self) -> bool:
        """Whether the segmenter is a SAM 2 (docs/COMPUTATION.md §12)."""
        return isinstance(self.sam, Sam2Config)

    @property
    def hidden_dim(self) -> int:
        """Prompt width: SAM's prompt embedding width (256 for every official SAM)."""
        return self.sam.prompt_embed_dim

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def architecture(self) -> dict:
        """The fields that decide what the parameters mean (not how they are computed:
        `compute_dtype` and `attention` are a run's or a command's choice)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in ("compute_dtype", "attention")}

    @classmethod
    def from_dict(cls, d: dict) -> VRPSamConfig:
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A VRP-SAM ready to run: its architecture, its parameters and where each part came from
    (what `vrp_sam_jax.model_io.load` returns for every kind of model source)."""

    config: VRPSamConfig
    params: dict  # {"backbone", "encoder", "sam"}
    origin: dict  # part ("backbone", "encoder", "sam") -> where its weights were read from
    info: dict = dataclasses.field(default_factory=dict)  # kind, step, metrics, trained_on
    sam_file: str | None = None  # the official SAM file its SAM is, unchanged, if any


class Reference(NamedTuple):
    """A reference set encoded once: (B, K, ...) for K shots per batch element."""

    merged: jax.Array  # (B, K, h, w, C) merged reference features
    prototype: jax.Array  # (B, K, C)
    layer4: jax.Array  # (B, K, h4, w4, C4) layer4 of the masked layer3
    mask: jax.Array  # (B, K, h, w, 1) prompt mask on the feature grid
    background: jax.Array  # (B, K, C) prototype outside the mask (query_init only)


class Target(NamedTuple):
    features: jax.Array  # (B, h, w, F) concat(layer2, layer3)
    layer4: jax.Array  # (B, h4, w4, C4)


def _per_shot(b: int):
    """(B_ref, K, ...) -> (b*K, ...), a reference batch of 1 broadcast to b targets."""
    def per_shot(x: jax.Array) -> jax.Array:
        return jnp.broadcast_to(x, (b, *x.shape[1:])).reshape(b * x.shape[1], *x.shape[2:])
    return per_shot


class VRPSam(nn.Module):
    config: VRPSamConfig

    def setup(self) -> None:
        cfg = self.config
        self.backbone = make_backbone(cfg.backbone, cfg.dtype)
        self.encoder = VRPEncoder(cfg.hidden_dim, cfg.num_queries, cfg.num_heads,
                                  query_init=cfg.query_init)
        self.sam = (Sam2 if cfg.sam2 else Sam)(cfg.sam, cfg.dtype, cfg.attention)

    def _backbone_features(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(float32 concat(layer2, layer3), layer3 in the compute dtype)."""
        features, layer3 = self.backbone.features(images.astype(self.config.dtype))
        return features.astype(jnp.float32), layer3

    # --- reference and target features -------------------------------------------------
    def _reference_backbone(self, images: jax.Array, prompt_masks: jax.Array
                            ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """images (B, K, S, S, 3), prompt masks (B, K, S, S) -> (features, prompt mask on the
        feature grid, layer4 of the masked layer3), with B*K rows."""
        b, k = images.shape[:2]
        flat = images.reshape(b * k, *images.shape[2:])
        masks = prompt_masks.reshape(b * k, *prompt_masks.shape[2:], 1).astype(flat.dtype)
        features, layer3 = self._backbone_features(flat)
        mask = resize_nearest(masks, features.shape[1:3])  # layer3's grid
        layer4 = self.backbone.masked_final_stage(layer3, mask).astype(jnp.float32)
        return features, mask, layer4

    def encode_reference(self, images: jax.Array, prompt_masks: jax.Array,
                         deterministic: bool = True) -> Reference:
        """images (B, K, S, S, 3), prompt masks (B, K, S, S) -> Reference."""
        b, k = images.shape[:2]
        features, mask, layer4 = self._reference_backbone(images, prompt_masks)
        merged, prototype, background = self.encoder.encode_reference(features, mask,
                                                                      deterministic)
        return Reference(*(x.reshape(b, k, *x.shape[1:])
                           for x in (merged, prototype, layer4, mask, background)))

    def encode_target(self, images: jax.Array) -> Target:
        """images (B, S, S, 3) -> Target (backbone features of the targets)."""
        features, layer3 = self._backbone_features(images)
        return Target(features, self.backbone.final_stage(layer3).astype(jnp.float32))

    def prompts(self, reference: Reference, target: Target,
                deterministic: bool = True) -> jax.Array:
        """Prompt embeddings (B, K * num_queries, C). A reference with batch 1 serves a batch
        of targets."""
        b, k = target.features.shape[0], reference.merged.shape[1]
        per_shot, repeat = _per_shot(b), partial(jnp.repeat, repeats=k, axis=0)
        prior = pseudo_mask(per_shot(reference.layer4), repeat(target.layer4),
                            per_shot(reference.mask))
        merged_target = self.encoder.encode_target(
            repeat(target.features), per_shot(reference.prototype), prior, deterministic
        )
        out = self.encoder.generate(per_shot(reference.merged), merged_target,
                                    per_shot(reference.prototype),
                                    per_shot(reference.background))
        return out.reshape(b, k * out.shape[1], out.shape[2])

    # --- the training-free prior alone (GP-SAM needs no VRP encoder) ----------------------
    def reference_prior(self, images: jax.Array, prompt_masks: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
        """images (B, K, S, S, 3), prompt masks (B, K, S, S) -> (layer4 of the masked
        layer3 (B, K, h4, w4, C4), prompt mask on the feature grid (B, K, h, w, 1))."""
        b, k = images.shape[:2]
        _, mask, layer4 = self._reference_backbone(images, prompt_masks)
        return layer4.reshape(b, k, *layer4.shape[1:]), mask.reshape(b, k, *mask.shape[1:])

    def target_prior(self, ref_layer4: jax.Array, ref_mask: jax.Array,
                     target_images: jax.Array) -> jax.Array:
        """`reference_prior`'s outputs and targets (B, S, S, 3) -> the pseudo mask of each
        target (B, h, w, 1), the mean over its K references (a reference with batch 1 serves
        a batch of targets)."""
        b, k = target_images.shape[0], ref_layer4.shape[1]
        target4 = jnp.repeat(self.encode_target(target_images).layer4, k, axis=0)
        prior = pseudo_mask(_per_shot(b)(ref_layer4), target4, _per_shot(b)(ref_mask))
        return prior.reshape(b, k, *prior.shape[1:]).mean(axis=1)

    # --- SAM -----------------------------------------------------------------------------
    def embed_targets(self, images: jax.Array) -> jax.Array:
        """SAM image embeddings of normalised targets (B, S, S, 3): the image is resized to
        SAM's input size (bilinear, align_corners=True), not SAM's own resize-and-pad.
        (B, h, w, C); for a SAM 2, its embedding and high-res features packed into one
        (B, h, w, 4C) array (`sam_port.modeling.sam2.pack_image_features`)."""
        size = self.config.sam.img_size
        images = resize_bilinear(images, (size, size), align_corners=True)
        if self.config.sam2:
            return pack_image_features(*self.sam.embed_images(images))
        return self.sam.embed_images(images)

    def decode(self, embeddings: jax.Array, prompt_embeddings: jax.Array,
               points: tuple[jax.Array, jax.Array] | None = None,
               boxes: jax.Array | None = None) -> jax.Array:
        """SAM embeddings (`embed_targets`) + VRP prompts (B, N, C) [+ optional points/boxes
        in SAM's input frame, before the VRP prompts] -> mask logits (B, S, S) at
        `config.image_size`."""
        b = prompt_embeddings.shape[0]
        if self.config.sam2:  # boxes enter as corner points (docs/COMPUTATION.md §11)
            sparse, dense = self.sam.encode_prompts(box_corner_points(points, boxes), None)
        else:
            sparse, dense = self.sam.encode_prompts(points, boxes, None)
        sparse = jnp.broadcast_to(sparse, (b, *sparse.shape[1:]))
        dense = jnp.broadcast_to(dense, (b, *dense.shape[1:]))
        sparse = jnp.concatenate([sparse.astype(prompt_embeddings.dtype), prompt_embeddings], 1)
        if self.config.sam2:
            embeddings, high_res = unpack_image_features(embeddings, self.config.hidden_dim)
            low_res = self.sam.decode_masks(embeddings, high_res, sparse, dense, False).masks
        else:
            low_res, _ = self.sam.decode_masks(embeddings, sparse, dense, multimask_output=False)
        size = self.config.image_size
        return resize_bilinear(low_res[:, 0], (size, size), align_corners=True, axes=(-2, -1))

    def __call__(self, ref_images: jax.Array, prompt_masks: jax.Array,
                 target_images: jax.Array, embeddings: jax.Array | None = None,
                 deterministic: bool = True) -> jax.Array:
        """One batch of episodes end to end -> mask logits (B, S, S)."""
        reference = self.encode_reference(ref_images, prompt_masks, deterministic)
        prompt_embeddings = self.prompts(reference, self.encode_target(target_images),
                                         deterministic)
        if embeddings is None:
            embeddings = self.embed_targets(target_images)
        return self.decode(embeddings, prompt_embeddings)


def _example_inputs(model_config: VRPSamConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    s = model_config.image_size
    return jnp.zeros((1, 1, s, s, 3)), jnp.ones((1, 1, s, s)), jnp.zeros((1, s, s, 3))


def _init(model_config: VRPSamConfig, key: jax.Array) -> dict:
    model = VRPSam(model_config)
    params = model.init(key, *_example_inputs(model_config))["params"]
    # SAM's prompt-encoder paths unused by VRP prompts (points, boxes, masks) still exist in
    # every official checkpoint: create them so the tree matches `sam_port`'s.
    sam = (Sam2 if model_config.sam2 else Sam)(model_config.sam)
    img = jnp.zeros((1, model_config.sam.img_size, model_config.sam.img_size, 3))
    params["sam"] = sam.init(key, img)["params"]
    return params


def abstract_params(model_config: VRPSamConfig) -> dict:
    """Shapes and dtypes of the parameter tree (no memory, no compute). A tree of its own for
    each caller (who may change it); traced once per config."""
    return jax.tree.map(lambda leaf: leaf, _abstract_params(model_config))


@lru_cache(maxsize=16)
def _abstract_params(model_config: VRPSamConfig) -> dict:
    # Tracing the initialisation takes over a second on CPU, and one command asks several
    # times (restoring, partitioning, summarising).
    return jax.eval_shape(lambda: _init(model_config, jax.random.key(0)))


def init_params(model_config: VRPSamConfig, seed: int = 0) -> dict:
    """Random parameters (tests, demos, training from scratch)."""
    return jax.jit(_init, static_argnums=0, compiler_options=INIT_COMPILER_OPTIONS)(
        model_config, jax.random.key(seed))


def init_encoder_params(model_config: VRPSamConfig, seed: int = 0) -> dict:
    """The VRP encoder's part of `init_params(config, seed)` alone (XLA drops the rest)."""
    return jax.jit(lambda key: _init(model_config, key)["encoder"],
                   compiler_options=INIT_COMPILER_OPTIONS)(jax.random.key(seed))


def count_params(tree) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))


def summary(model_config: VRPSamConfig) -> dict:
    """Parameter counts per part (the backbone's include its BatchNorm statistics); only the
    VRP encoder is trained (docs/COMPUTATION.md §6)."""
    params = abstract_params(model_config)
    counts = {part: count_params(tree) for part, tree in params.items()}
    return {"backbone": model_config.backbone, "sam_type": model_config.sam_type,
            "trainable": counts["encoder"], "frozen_backbone": counts["backbone"],
            "frozen_sam": counts["sam"], "total": sum(counts.values())}
