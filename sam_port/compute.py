"""SAM's compiled computations, shared by the predictor, the end-to-end call and the automatic
mask generator: one jit-compiled function per stage."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam_port.config import Sam2Config, SamConfig
from sam_port.modeling.sam import Sam
from sam_port.modeling.sam2 import FrameOutput, Memory, Sam2
from sam_port.transforms import postprocess_masks, sam2_postprocess_masks


@partial(jax.jit, static_argnums=(0, 3, 4))
def embed_images(config: SamConfig, params: dict, images: jax.Array,
                 compute_dtype: str = "float32", attention: str = "auto") -> jax.Array:
    """(B, S, S, 3) normalised padded images -> (B, S/16, S/16, C) float32 image embeddings,
    the encoder computing in `compute_dtype` (float32 parameters either way)."""
    model = Sam(config, jnp.dtype(compute_dtype), attention)
    return model.apply({"params": params}, images, method=Sam.embed_images)


@partial(jax.jit, static_argnames=("config", "multimask_output", "input_size", "original_size"))
def predict_masks(
    config: SamConfig,
    params: dict,
    image_embeddings: jax.Array,
    points: tuple[jax.Array, jax.Array] | None,
    boxes: jax.Array | None,
    mask_input: jax.Array | None,
    *,
    multimask_output: bool,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Prompts in the input frame -> (logits at the original size, IoU, low-res logits)."""
    low_res, iou = Sam(config).apply(
        {"params": params}, image_embeddings, points, boxes, mask_input, multimask_output,
        method=Sam.predict_from_embeddings,
    )
    masks = postprocess_masks(low_res, input_size, original_size, config.img_size)
    return masks, iou, low_res


@partial(jax.jit, static_argnums=(0, 3, 4))
def sam2_embed_images(config: Sam2Config, params: dict, images: jax.Array,
                      compute_dtype: str = "float32", attention: str = "auto"
                      ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(B, S, S, 3) normalised images -> SAM 2's image embedding (B, S/16, S/16, C) and
    high-res features ((B, S/4, S/4, C/8), (B, S/8, S/8, C/4)), float32."""
    model = Sam2(config, jnp.dtype(compute_dtype), attention)
    return model.apply({"params": params}, images, method=Sam2.embed_images)


@partial(jax.jit, static_argnames=("config", "multimask_output", "original_size"))
def sam2_predict_masks(
    config: Sam2Config,
    params: dict,
    image_embeddings: jax.Array,
    high_res_features: tuple[jax.Array, jax.Array],
    points: tuple[jax.Array, jax.Array] | None,
    mask_input: jax.Array | None,
    *,
    multimask_output: bool,
    original_size: tuple[int, int],
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Points (box corners first, labelled 2 and 3) and mask prompts in the input frame ->
    (logits at the original size, IoU, low-res logits (B, M, 4h, 4w)): the decoder and the
    resize of `SAM2ImagePredictor._predict` (which then clamps the low-res logits to +-32);
    a single mask falls back to the best multimask one where unstable, as `build_sam2` sets
    the decoder up."""
    out = Sam2(config).apply({"params": params}, image_embeddings, high_res_features, points,
                             mask_input, multimask_output, True,
                             method=Sam2.predict_from_embeddings)
    return sam2_postprocess_masks(out.masks, original_size), out.iou, out.masks


def batched_prompts(
    point_coords: Any, point_labels: Any, boxes: Any, mask_input: Any, low_res_size: int
) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray | None, np.ndarray | None]:
    """The official batched prompt layout (points (B, N, 2) with labels (B, N), boxes (B, 4),
    mask_input (B, 1, 256, 256)), in the input frame, checked -> our model's arguments
    (mask input NHWC). Any array type np.asarray takes is accepted."""
    points = box_array = mask = None
    sizes = {}
    if point_coords is not None:
        if point_labels is None:
            raise ValueError("point_labels must be supplied if point_coords is supplied.")
        coords = np.asarray(point_coords, np.float32)
        labels = np.asarray(point_labels, np.int32)
        if coords.ndim != 3 or coords.shape[2] != 2 or labels.shape != coords.shape[:2]:
            raise ValueError(f"point_coords must be (B, N, 2) with point_labels (B, N), got "
                             f"{coords.shape} and {labels.shape}")
        points, sizes["point_coords"] = (coords, labels), coords.shape[0]
    if boxes is not None:
        box_array = np.asarray(boxes, np.float32)
        if box_array.ndim != 2 or box_array.shape[1] != 4:
            raise ValueError(f"boxes must be (B, 4) x0,y0,x1,y1, got shape {box_array.shape}")
        sizes["boxes"] = box_array.shape[0]
    if mask_input is not None:
        mask = np.asarray(mask_input, np.float32)
        if mask.ndim != 4 or mask.shape[1:] != (1, low_res_size, low_res_size):
            raise ValueError(f"mask_input must be (B, 1, {low_res_size}, {low_res_size}), got "
                             f"shape {mask.shape}")
        mask, sizes["mask_input"] = mask.transpose(0, 2, 3, 1), mask.shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"prompts of different batch sizes: {sizes}")
    return points, box_array, mask


# --- SAM 2's video tracking: one compiled step per kind of frame --------------------------
@partial(jax.jit, static_argnums=0)
def sam2_frame_features(config: Sam2Config, params: dict, images: jax.Array
                        ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(B, S, S, 3) normalised frames -> raw top-level features (B, S/16, S/16, C) and the
    projected high-res features (`Sam2.backbone`), what the tracking keeps of a frame."""
    return Sam2(config).apply({"params": params}, images, method=Sam2.backbone)


@partial(jax.jit, static_argnames=("config", "multimask_output", "encode_memory", "binarize"))
def sam2_track_frame(
    config: Sam2Config, params: dict, features: jax.Array,
    high_res: tuple[jax.Array, jax.Array], memory: Memory | None,
    points: tuple[jax.Array, jax.Array] | None, mask_inputs: jax.Array | None, *,
    multimask_output: bool, encode_memory: bool, binarize: bool = False,
) -> tuple[FrameOutput, jax.Array | None]:
    """One object's step on one frame (`Sam2.track_frame`), and with `encode_memory` its
    memory features (B, h, w, mem) in bfloat16, as the official predictor stores them."""
    model, variables = Sam2(config), {"params": params}
    out = model.apply(variables, features, high_res, memory, points, mask_inputs,
                      multimask_output, method=Sam2.track_frame)
    if not encode_memory:
        return out, None
    return out, model.apply(variables, features, out.low_res_masks, out.object_score_logits,
                            binarize, method=Sam2.encode_new_memory).astype(jnp.bfloat16)


@partial(jax.jit, static_argnums=0)
def sam2_mask_as_output(config: Sam2Config, params: dict, features: jax.Array,
                        high_res: tuple[jax.Array, jax.Array], masks: jax.Array
                        ) -> FrameOutput:
    """A {0, 1} mask prompt (B, S, S, 1) as the frame's output (`Sam2.use_mask_as_output`)."""
    return Sam2(config).apply({"params": params}, features, high_res, masks,
                              method=Sam2.use_mask_as_output)


@partial(jax.jit, static_argnames=("config", "binarize"))
def sam2_encode_new_memory(config: Sam2Config, params: dict, features: jax.Array,
                           low_res_masks: jax.Array, object_score_logits: jax.Array, *,
                           binarize: bool) -> jax.Array:
    """`Sam2.encode_new_memory` of a frame's stored output, in bfloat16."""
    return Sam2(config).apply({"params": params}, features, low_res_masks,
                              object_score_logits, binarize,
                              method=Sam2.encode_new_memory).astype(jnp.bfloat16)


# low-res logits (B, M, h, w) -> (B, M, H, W), bilinear: the video predictor's output resize
resize_logits = jax.jit(sam2_postprocess_masks, static_argnums=1)
