"""SAM 2 (`sam2.modeling.sam2_base.SAM2Base`): the Hiera image encoder, SAM's prompt encoder
and mask decoder with SAM 2's additions, the no-memory embedding that marks a frame without
memories (all an image has), and the video model's modules and parameters (memory encoder,
memory attention, object-pointer projections, temporal encodings) with the per-frame steps
of `SAM2Base`'s tracking (`track_frame`, `encode_new_memory`); which frames a step remembers
is the video predictor's bookkeeping (`sam_port.sam2_video_predictor`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.config import Sam2Config
from sam_port.interpolate import resize_bilinear
from sam_port.modeling.common import MLP
from sam_port.modeling.hiera import Sam2ImageEncoder, sine_position_encoding
from sam_port.modeling.mask_decoder import DecoderOutput, MaskDecoder
from sam_port.modeling.memory import MemoryAttention, MemoryEncoder
from sam_port.modeling.prompt_encoder import PromptEncoder
from sam_port.modeling.sam import INIT_COMPILER_OPTIONS

# `sam2_base.NO_OBJ_SCORE`: the logits of every pixel of a frame where no object is seen
NO_OBJ_SCORE = -1024.0
# `_use_mask_as_output` / `_encode_new_memory`: a {0, 1} mask as logits x * 20 - 10
MASK_LOGIT_SCALE, MASK_LOGIT_BIAS = 20.0, -10.0


class Memory(NamedTuple):
    """What a frame attends to (`_prepare_memory_conditioned_features`), in fixed-size slots
    so that one compiled step serves every frame: F memory frames (conditioning frames
    first, then the recent ones) and P object pointers, each slot with a valid flag.

    features: (B, F, h, w, mem) the memory encoder's outputs; frame_tpos: (F,) int32, the
    temporal position t_pos of each (0 for conditioning frames, 1-6 from the oldest recent
    frame); frame_valid: (F,) bool; pointers: (B, P, C); pointer_tpos: (P,) float32, each
    pointer's signed frame distance already divided by the largest one (`t_diff_max`);
    pointer_valid: (P,) bool."""

    features: jax.Array
    frame_tpos: jax.Array
    frame_valid: jax.Array
    pointers: jax.Array
    pointer_tpos: jax.Array
    pointer_valid: jax.Array


class FrameOutput(NamedTuple):
    """One object's result on one frame (`_forward_sam_heads`' used outputs): low_res_masks
    (B, 1, 4h, 4w) logits of the chosen mask (NO_OBJ_SCORE where no object is seen); obj_ptr
    (B, C); object_score_logits (B, 1)."""

    low_res_masks: jax.Array
    obj_ptr: jax.Array
    object_score_logits: jax.Array


def sine_pe_1d(positions: jax.Array, dim: int, temperature: float = 10000.0) -> jax.Array:
    """`sam2_utils.get_1d_sine_pe`: positions (N,) -> (N, dim), the sines then the cosines."""
    half = dim // 2
    dim_t = jnp.arange(half, dtype=jnp.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    angles = positions[:, None].astype(jnp.float32) / dim_t
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


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

    def backbone(self, images: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """(B, S, S, 3) normalised images -> the top level's features (B, S/16, S/16, C) and
        the projected high-res features (B, S/4, S/4, C/8), (B, S/8, S/8, C/4), float32
        (`forward_image`; what a video frame keeps)."""
        levels = self.image_encoder(images)
        return levels[-1], self.sam_mask_decoder.project_high_res(levels[0], levels[1])

    def embed_images(self, images: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """`backbone` with the no-memory embedding added to the image embedding, as
        `SAM2ImagePredictor.set_image` does (a frame without memories)."""
        embedding, high_res = self.backbone(images)
        return self.without_memory(embedding), high_res

    def without_memory(self, features: jax.Array) -> jax.Array:
        """Top-level features (B, h, w, C) of a frame that attends to no memory (an image, a
        video's first prompted frame): + `no_mem_embed` (`directly_add_no_mem_embed`)."""
        if self.config.directly_add_no_mem_embed:
            return features + self.no_mem_embed[0, 0]
        return features

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
        dynamic_multimask: bool = False,
    ) -> DecoderOutput:
        return self.sam_mask_decoder(image_embeddings, self.dense_pe(), sparse_embeddings,
                                     dense_embeddings, multimask_output, high_res_features,
                                     dynamic_multimask)

    def predict_from_embeddings(
        self,
        image_embeddings: jax.Array,
        high_res_features: tuple[jax.Array, jax.Array],
        points: tuple[jax.Array, jax.Array] | None = None,
        masks: jax.Array | None = None,
        multimask_output: bool = True,
        dynamic_multimask: bool = False,
    ) -> DecoderOutput:
        """Prompts in the model's input frame -> the decoder's output (`DecoderOutput`);
        `dynamic_multimask`: a single mask falls back to the best multimask one where
        unstable (`build_sam2`'s decoder)."""
        sparse, dense = self.encode_prompts(points, masks)
        return self.decode_masks(image_embeddings, high_res_features, sparse, dense,
                                 multimask_output, dynamic_multimask)

    def encode_memory(self, pix_feat: jax.Array, masks: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
        """`MemoryEncoder` on a frame's features (B, h, w, C) and its memory mask
        (B, 16h, 16w, 1), already through the sigmoid and scaled: features (B, h, w, mem) and
        their position encodings (h, w, mem)."""
        return self.memory_encoder(pix_feat, masks)

    def attend_memory(self, curr: jax.Array, memory: jax.Array, curr_pos: jax.Array,
                      memory_pos: jax.Array, num_obj_ptr_tokens: int = 0,
                      memory_valid: jax.Array | None = None) -> jax.Array:
        """`MemoryAttention`: the frame's tokens (B, hw, C) conditioned on memory tokens
        (B, M, mem), the last `num_obj_ptr_tokens` of them object pointers; tokens where
        `memory_valid` (M,) is False are not attended to."""
        return self.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens,
                                     memory_valid)

    # --- tracking: one object's step on one frame (`SAM2Base._track_step`) ----------------
    def condition_on_memory(self, features: jax.Array, memory: Memory) -> jax.Array:
        """The frame's top-level features (B, h, w, C) fused with its memory
        (`_prepare_memory_conditioned_features` past the frame selection): memory tokens with
        their spatial and temporal encodings, then the object pointers, split into C/mem
        tokens each, with their projected temporal sine encodings (2.1; zeros in 2.0)."""
        cfg = self.config
        b, h, w, c = features.shape
        mem, frames = cfg.mem_dim, memory.features.shape[1]
        spatial = jnp.asarray(sine_position_encoding(h, w, mem)).reshape(1, h * w, mem)
        temporal = self.maskmem_tpos_enc[cfg.num_maskmem - memory.frame_tpos - 1][:, 0]
        frame_pos = (spatial + temporal).reshape(frames * h * w, mem)
        pointers, count = memory.pointers, memory.pointers.shape[1]
        if cfg.version == "2.1":  # add_tpos_enc_to_obj_ptrs with proj_tpos_enc_in_obj_ptrs
            pointer_pos = self.obj_ptr_tpos_proj(sine_pe_1d(memory.pointer_tpos, c))
        else:
            pointer_pos = jnp.zeros((count, mem), jnp.float32)
        split = c // mem if mem < c else 1
        pointers = pointers.reshape(b, count * split, c // split)
        pointer_pos = jnp.repeat(pointer_pos, split, axis=0)
        tokens = jnp.concatenate([memory.features.reshape(b, frames * h * w, mem)
                                  .astype(jnp.float32), pointers], axis=1)
        pos = jnp.broadcast_to(jnp.concatenate([frame_pos, pointer_pos])[None],
                               (b, *tokens.shape[1:]))
        valid = jnp.concatenate([jnp.repeat(memory.frame_valid, h * w),
                                 jnp.repeat(memory.pointer_valid, split)])
        curr_pos = jnp.broadcast_to(jnp.asarray(sine_position_encoding(h, w, c))
                                    .reshape(1, h * w, c), (b, h * w, c))
        out = self.attend_memory(features.reshape(b, h * w, c), tokens, curr_pos, pos,
                                 count * split, valid)
        return out.reshape(b, h, w, c)

    def forward_sam_heads(self, features: jax.Array, high_res: tuple[jax.Array, jax.Array],
                          points: tuple[jax.Array, jax.Array] | None,
                          mask_inputs: jax.Array | None, multimask_output: bool
                          ) -> FrameOutput:
        """`_forward_sam_heads`: the decoder on (memory-conditioned) features (B, h, w, C)
        with points (B, N, 2) and labels (B, N) in the input frame (none: one padding point)
        and low-res mask logits (B, 4h, 4w, 1); the best mask by IoU with multimask output
        (its token the pointer's source), the object score gating masks and pointer."""
        b = features.shape[0]
        if points is None:
            points = (jnp.zeros((b, 1, 2), jnp.float32), -jnp.ones((b, 1), jnp.int32))
        out = self.predict_from_embeddings(features, high_res, points, mask_inputs,
                                           multimask_output, dynamic_multimask=True)
        appearing = out.object_score_logits > 0  # (B, 1)
        masks = jnp.where(appearing[:, :, None, None], out.masks.astype(jnp.float32),
                          NO_OBJ_SCORE)
        token = out.sam_tokens[:, 0]
        if multimask_output:
            best = jnp.argmax(out.iou, axis=-1)[:, None]
            masks = jnp.take_along_axis(masks, best[:, :, None, None], axis=1)
            if out.sam_tokens.shape[1] > 1:
                token = jnp.take_along_axis(out.sam_tokens, best[:, :, None], axis=1)[:, 0]
        obj_ptr = self.gate_pointer(self.obj_ptr_proj(token), appearing.astype(jnp.float32))
        return FrameOutput(masks, obj_ptr, out.object_score_logits)

    def gate_pointer(self, obj_ptr: jax.Array, appearing: jax.Array) -> jax.Array:
        """`fixed_no_obj_ptr`: where no object is seen (appearing (B, 1) = 0), the pointer
        is the learnt `no_obj_ptr`."""
        return appearing * obj_ptr + (1 - appearing) * self.no_obj_ptr

    def use_mask_as_output(self, features: jax.Array, high_res: tuple[jax.Array, jax.Array],
                           masks: jax.Array) -> FrameOutput:
        """`_use_mask_as_output`: a {0, 1} mask prompt (B, S, S, 1) is the frame's output, as
        logits x * 20 - 10 downsampled (antialiased) to the low-res grid; its pointer from
        the decoder prompted with the mask through `mask_downsample`; the object is seen
        where the mask has any pixel."""
        low = self.config.low_res_size
        logits = masks * MASK_LOGIT_SCALE + MASK_LOGIT_BIAS
        low_res = resize_bilinear(logits, (low, low), align_corners=False, antialias=True)
        decoded = self.forward_sam_heads(features, high_res, None,
                                         self.mask_downsample(masks), False)
        appearing = jnp.any(masks.reshape(masks.shape[0], -1) > 0, axis=1, keepdims=True)
        appearing = appearing.astype(jnp.float32)
        return FrameOutput(low_res.transpose(0, 3, 1, 2),
                           self.gate_pointer(decoded.obj_ptr, appearing),
                           MASK_LOGIT_SCALE * appearing + MASK_LOGIT_BIAS)

    def track_frame(self, features: jax.Array, high_res: tuple[jax.Array, jax.Array],
                    memory: Memory | None, points: tuple[jax.Array, jax.Array] | None,
                    mask_inputs: jax.Array | None, multimask_output: bool) -> FrameOutput:
        """One object's step on one frame (`_track_step` without a mask prompt): the frame's
        raw top-level features (B, h, w, C) conditioned on `memory` (None: an initial
        conditioning frame, which gets the no-memory embedding), then the SAM heads with
        points and/or previous low-res logits as the mask prompt."""
        if memory is None:
            conditioned = self.without_memory(features)
        else:
            conditioned = self.condition_on_memory(features, memory)
        return self.forward_sam_heads(conditioned, high_res, points, mask_inputs,
                                      multimask_output)

    def encode_new_memory(self, features: jax.Array, low_res_masks: jax.Array,
                          object_score_logits: jax.Array, binarize: bool
                          ) -> jax.Array:
        """`_encode_new_memory`: the frame's raw features (B, h, w, C) and its low-res mask
        logits (B, 1, 4h, 4w), resized to the input size (bilinear) -> memory features
        (B, h, w, mem). The mask enters as sigmoid (or, with `binarize`, as > 0 for prompted
        frames) x 20 - 10; 2.1 adds `no_obj_embed_spatial` where no object is seen."""
        size = self.config.image_size
        masks = resize_bilinear(low_res_masks, (size, size), align_corners=False,
                                axes=(-2, -1)).transpose(0, 2, 3, 1)
        masks = (masks > 0).astype(jnp.float32) if binarize else jax.nn.sigmoid(masks)
        memory, _ = self.encode_memory(features, masks * MASK_LOGIT_SCALE + MASK_LOGIT_BIAS)
        if self.config.version == "2.1":
            absent = 1.0 - (object_score_logits > 0).astype(jnp.float32)  # (B, 1)
            memory = memory + absent[:, :, None, None] * self.no_obj_embed_spatial[0]
        return memory

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
