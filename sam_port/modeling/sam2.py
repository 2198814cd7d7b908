"""SAM 2 (`sam2.modeling.sam2_base.SAM2Base`): the Hiera image encoder, SAM's prompt encoder
and mask decoder with SAM 2's additions, the no-memory embedding that marks a frame without
memories (all an image has), and the video model's modules and parameters (memory encoder,
memory attention, object-pointer projections, temporal encodings). The video predictor's
frame-by-frame logic that uses them is not ported yet."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.config import Sam2Config
from sam_port.modeling.common import MLP
from sam_port.modeling.hiera import Sam2ImageEncoder
from sam_port.modeling.mask_decoder import DecoderOutput, MaskDecoder
from sam_port.modeling.memory import MemoryAttention, MemoryEncoder
from sam_port.modeling.prompt_encoder import PromptEncoder
from sam_port.modeling.sam import INIT_COMPILER_OPTIONS


class Sam2(nn.Module):
    """One method per stage, as `Sam`: `embed_images` once per image, `predict_from_embeddings`
    per prompt. Submodules carry the official attribute names (`sam_prompt_encoder`, ...), so
    the converter maps keys mechanically."""

    config: Sam2Config
    image_dtype: Any = jnp.float32  # the image encoder's compute dtype
    attention: str = "auto"

    mask_threshold = 0.0

    def setup(self) -> None:
        cfg = self.config
        grid = (cfg.embedding_size, cfg.embedding_size)
        self.image_encoder = Sam2ImageEncoder(cfg, self.image_dtype, self.attention)
        self.sam_prompt_encoder = PromptEncoder(
            cfg.d_model, grid, (cfg.image_size, cfg.image_size), cfg.mask_in_chans,
            corner_labels=True,
        )
        self.sam_mask_decoder = MaskDecoder(cfg.d_model, cfg.mask_decoder,
                                            cfg.use_multimask_token_for_obj_ptr)
        init, c, mem = nn.initializers.truncated_normal(0.02), cfg.d_model, cfg.mem_dim
        self.no_mem_embed = self.param("no_mem_embed", init, (1, 1, c))
        # the video model
        self.memory_encoder = MemoryEncoder(mem)
        self.memory_attention = MemoryAttention(c, cfg.memory_attention_layers,
                                                cfg.memory_attention_feedforward, mem)
        self.maskmem_tpos_enc = self.param("maskmem_tpos_enc", init, (cfg.num_maskmem, 1, 1, mem))
        self.no_mem_pos_enc = self.param("no_mem_pos_enc", init, (1, 1, c))
        self.no_obj_ptr = self.param("no_obj_ptr", init, (1, c))
        self.obj_ptr_proj = MLP(c, c, 3)
        self.mask_downsample = nn.Conv(1, (4, 4), strides=(4, 4), padding="VALID")
        if cfg.version == "2.1":
            self.no_obj_embed_spatial = self.param("no_obj_embed_spatial", init, (1, mem))
            self.obj_ptr_tpos_proj = nn.Dense(mem)

    def embed_images(self, images: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """(B, S, S, 3) normalised images -> the image embedding (B, S/16, S/16, C) (with the
        no-memory embedding added, as `SAM2ImagePredictor.set_image` does) and the projected
        high-res features (B, S/4, S/4, C/8), (B, S/8, S/8, C/4), all float32."""
        levels = self.image_encoder(images)
        high_res = self.sam_mask_decoder.project_high_res(levels[0], levels[1])
        embedding = levels[-1]
        if self.config.directly_add_no_mem_embed:
            embedding = embedding + self.no_mem_embed[0, 0]
        return embedding, high_res

    def encode_prompts(
        self,
        points: tuple[jax.Array, jax.Array] | None = None,
        masks: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Points (B, N, 2) in the input frame with labels (B, N) (a box is two points
        labelled 2 and 3), masks (B, 4h, 4w, 1) -> sparse (B, N', C), dense (B, h, w, C)."""
        return self.sam_prompt_encoder(points, None, masks)

    def dense_pe(self) -> jax.Array:
        return self.sam_prompt_encoder.get_dense_pe()

    def decode_masks(
        self,
        image_embeddings: jax.Array,
        high_res_features: tuple[jax.Array, jax.Array],
        sparse_embeddings: jax.Array,
        dense_embeddings: jax.Array,
        multimask_output: bool,
    ) -> DecoderOutput:
        return self.sam_mask_decoder(image_embeddings, self.dense_pe(), sparse_embeddings,
                                     dense_embeddings, multimask_output, high_res_features)

    def predict_from_embeddings(
        self,
        image_embeddings: jax.Array,
        high_res_features: tuple[jax.Array, jax.Array],
        points: tuple[jax.Array, jax.Array] | None = None,
        masks: jax.Array | None = None,
        multimask_output: bool = True,
    ) -> DecoderOutput:
        """Prompts in the model's input frame -> the decoder's output (`DecoderOutput`)."""
        sparse, dense = self.encode_prompts(points, masks)
        return self.decode_masks(image_embeddings, high_res_features, sparse, dense,
                                 multimask_output)

    def encode_memory(self, pix_feat: jax.Array, masks: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
        """`MemoryEncoder` on a frame's features (B, h, w, C) and its memory mask
        (B, 16h, 16w, 1), already through the sigmoid and scaled: features (B, h, w, mem) and
        their position encodings (h, w, mem)."""
        return self.memory_encoder(pix_feat, masks)

    def attend_memory(self, curr: jax.Array, memory: jax.Array, curr_pos: jax.Array,
                      memory_pos: jax.Array, num_obj_ptr_tokens: int = 0) -> jax.Array:
        """`MemoryAttention`: the frame's tokens (B, hw, C) conditioned on memory tokens
        (B, M, mem), the last `num_obj_ptr_tokens` of them object pointers."""
        return self.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens)

    def __call__(self, images: jax.Array, multimask_output: bool = True) -> DecoderOutput:
        """End to end on one point and a mask prompt per image (used by `init`; the no-mask
        path and the video modules run too, so that every parameter is created)."""
        cfg = self.config
        embedding, high_res = self.embed_images(images)
        b, s = images.shape[0], cfg.embedding_size
        points = (jnp.zeros((b, 1, 2)), jnp.ones((b, 1), jnp.int32))
        masks = jnp.zeros((b, cfg.low_res_size, cfg.low_res_size, 1))
        self.encode_prompts(points, None)
        memory, memory_pos = self.encode_memory(embedding, jnp.zeros((b, 16 * s, 16 * s, 1)))
        tokens = embedding.reshape(b, s * s, -1)
        self.attend_memory(tokens, memory.reshape(b, s * s, -1), tokens,
                           jnp.broadcast_to(memory_pos.reshape(1, s * s, -1), (b, s * s,
                                                                             cfg.mem_dim)))
        # the object-pointer and mask-prompt projections serve the tracking alone: run once
        # here so that `init` creates their parameters
        self.obj_ptr_proj(jnp.zeros((1, cfg.d_model)))
        self.mask_downsample(jnp.zeros((1, 4, 4, 1)))
        if cfg.version == "2.1":
            self.obj_ptr_tpos_proj(jnp.zeros((1, cfg.d_model)))
        return self.predict_from_embeddings(embedding, high_res, points, masks, multimask_output)


def box_corner_points(points: tuple[jax.Array, jax.Array] | None, boxes: jax.Array | None
                      ) -> tuple[jax.Array, jax.Array] | None:
    """SAM 2's prompt layout (`SAM2ImagePredictor._predict`): boxes (B, 4) become two points
    labelled 2 and 3, placed before the points ((B, N, 2) with labels (B, N))."""
    if boxes is None:
        return points
    corners = jnp.reshape(boxes, (-1, 2, 2))
    labels = jnp.broadcast_to(jnp.asarray([[2, 3]], jnp.int32), corners.shape[:2])
    if points is None:
        return corners, labels
    return (jnp.concatenate([corners.astype(points[0].dtype), points[0]], axis=1),
            jnp.concatenate([labels.astype(points[1].dtype), points[1]], axis=1))


def pack_image_features(embedding: jax.Array, high_res: tuple[jax.Array, jax.Array]
                        ) -> jax.Array:
    """SAM 2's per-image features as one array on the embedding's grid: the embedding
    (B, s, s, C), the stride-8 map (B, 2s, 2s, C/4) and the stride-4 map (B, 4s, 4s, C/8),
    each 2x or 4x cell block folded into channels -> (B, s, s, 4C). One array per image, so
    code that stores or passes SAM's embeddings (caches, steps) carries SAM 2's unchanged."""
    s0, s1 = high_res

    def fold(x: jax.Array, factor: int) -> jax.Array:
        b, h, w, c = x.shape
        x = x.reshape(b, h // factor, factor, w // factor, factor, c)
        return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // factor, w // factor, -1)

    return jnp.concatenate([embedding, fold(s1, 2), fold(s0, 4)], axis=-1)


def unpack_image_features(packed: jax.Array, d_model: int
                          ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Inverse of `pack_image_features`: (B, s, s, 4C) -> (embedding, (s0, s1))."""
    def unfold(x: jax.Array, factor: int) -> jax.Array:
        b, h, w, _ = x.shape
        x = x.reshape(b, h, w, factor, factor, -1).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, h * factor, w * factor, -1)

    embedding = packed[..., :d_model]
    s1 = unfold(packed[..., d_model: 2 * d_model], 2)
    s0 = unfold(packed[..., 2 * d_model:], 4)
    return embedding, (s0, s1)


def abstract_sam2_params(config: Sam2Config) -> dict:
    """The parameter tree's shapes and dtypes (no memory, no compute); a fresh tree per call."""
    return jax.tree.map(lambda leaf: leaf, _abstract_params(config))


@lru_cache(maxsize=16)
def _abstract_params(config: Sam2Config) -> dict:
    shape = (1, config.image_size, config.image_size, 3)
    variables = jax.eval_shape(
        lambda: Sam2(config).init(jax.random.key(0), jnp.zeros(shape, jnp.float32)))
    return variables["params"]


def init_sam2_params(config: Sam2Config, seed: int = 0) -> dict:
    """Randomly initialised parameters (for tests and demos; real use loads a checkpoint)."""
    shape = (1, config.image_size, config.image_size, 3)
    return jax.jit(lambda k: Sam2(config).init(k, jnp.zeros(shape, jnp.float32)),
                   compiler_options=INIT_COMPILER_OPTIONS)(jax.random.key(seed))["params"]
