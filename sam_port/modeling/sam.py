"""The Segment Anything model: image encoder + prompt encoder + mask decoder."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.config import SamConfig
from sam_port.modeling.image_encoder import ImageEncoderViT
from sam_port.modeling.mask_decoder import MaskDecoder
from sam_port.modeling.prompt_encoder import PromptEncoder


class Sam(nn.Module):
    """SAM with one method per stage, so each stage can be jitted and reused on its own
    (`model.apply(variables, ..., method=Sam.embed_images)`), as `SamPredictor` does."""

    config: SamConfig
    # compute dtype and attention path of the image encoder (see `ImageEncoderViT`); the
    # prompt encoder and mask decoder always run in float32
    image_dtype: Any = jnp.float32
    attention: str = "auto"

    mask_threshold = 0.0

    def setup(self) -> None:
        cfg = self.config
        grid = (cfg.embedding_size, cfg.embedding_size)
        self.image_encoder = ImageEncoderViT(cfg.image_encoder, self.image_dtype, self.attention)
        self.prompt_encoder = PromptEncoder(
            cfg.prompt_embed_dim, grid, (cfg.img_size, cfg.img_size), cfg.mask_in_chans
        )
        self.mask_decoder = MaskDecoder(cfg.prompt_embed_dim, cfg.mask_decoder)

    def embed_images(self, images: jax.Array) -> jax.Array:
        """(B, S, S, 3) normalised, padded images -> (B, S/16, S/16, C) embeddings."""
        return self.image_encoder(images)

    def encode_prompts(
        self,
        points: tuple[jax.Array, jax.Array] | None = None,
        boxes: jax.Array | None = None,
        masks: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        return self.prompt_encoder(points, boxes, masks)

    def dense_pe(self) -> jax.Array:
        return self.prompt_encoder.get_dense_pe()

    def decode_masks(
        self,
        image_embeddings: jax.Array,
        sparse_embeddings: jax.Array,
        dense_embeddings: jax.Array,
        multimask_output: bool,
    ) -> tuple[jax.Array, jax.Array]:
        out = self.mask_decoder(
            image_embeddings, self.dense_pe(), sparse_embeddings, dense_embeddings,
            multimask_output,
        )
        return out.masks, out.iou

    def predict_from_embeddings(
        self,
        image_embeddings: jax.Array,
        points: tuple[jax.Array, jax.Array] | None = None,
        boxes: jax.Array | None = None,
        masks: jax.Array | None = None,
        multimask_output: bool = True,
    ) -> tuple[jax.Array, jax.Array]:
        """Prompts in the model's input frame -> low-res logits (B, M, 4h, 4w) and IoU (B, M)."""
        sparse, dense = self.encode_prompts(points, boxes, masks)
        return self.decode_masks(image_embeddings, sparse, dense, multimask_output)

    def __call__(self, images: jax.Array, multimask_output: bool = True):
        """End to end on one point, one box and a mask prompt per image (used by `init`; the
        no-mask path runs too, so that every parameter is created)."""
        cfg = self.config
        emb = self.embed_images(images)
        b = images.shape[0]
        points = (jnp.zeros((b, 1, 2)), jnp.ones((b, 1), jnp.int32))
        boxes = jnp.zeros((b, 4))
        masks = jnp.zeros((b, cfg.low_res_size, cfg.low_res_size, 1))
        self.encode_prompts(points, boxes, None)
        return self.predict_from_embeddings(emb, points, boxes, masks, multimask_output)


def abstract_params(config: SamConfig) -> dict:
    """The parameter tree's shapes and dtypes (no memory, no compute). A tree of its own for
    each caller (who may change it); traced once per config."""
    return jax.tree.map(lambda leaf: leaf, _abstract_params(config))


@lru_cache(maxsize=16)
def _abstract_params(config: SamConfig) -> dict:
    # tracing the initialisation of ViT-H takes seconds, and loading asks more than once
    model = Sam(config)
    shape = (1, config.img_size, config.img_size, 3)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros(shape, jnp.float32))
    )
    return variables["params"]


# Compiler options for random initialisation. Its program runs once, in milliseconds, but it is
# large (a threefry hash per parameter; the forward pass is dropped as dead code), and LLVM's
# optimisations took most of its compile time: 16.5 s -> 7.3 s for the toy VRP-SAM on CPU.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def init_params(config: SamConfig, seed: int = 0) -> dict:
    """Randomly initialised parameters (for tests and demos; real use loads a checkpoint)."""
    model = Sam(config)
    shape = (1, config.img_size, config.img_size, 3)
    return jax.jit(lambda k: model.init(k, jnp.zeros(shape, jnp.float32)),
                   compiler_options=INIT_COMPILER_OPTIONS)(jax.random.key(seed))["params"]
