"""`SamPredictor`: the official predictor's interface on the Flax port.

The image embedding is computed once per `set_image` (one jit-compiled function per model
config: every image is padded to the same square, so it never recompiles) and reused by every
`predict` call.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sam_port.checkpoint import LoadedSam
from sam_port.config import SamConfig
from sam_port.modeling.sam import Sam
from sam_port.transforms import ResizeLongestSide, normalize_and_pad, postprocess_masks


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


class SamPredictor:
    """Compute an image's embedding once, then predict masks for any number of prompts."""

    def __init__(self, sam_model: LoadedSam) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.config.img_size)
        self.reset_image()

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an HxWx3 uint8 image (RGB, or BGR with `image_format="BGR"`)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', is {image_format!r}")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"set_image expects an HxWx3 uint8 array, got shape {image.shape} {image.dtype}"
            )
        if image_format == "BGR":
            image = image[..., ::-1]
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        self.reset_image()
        self.original_size = tuple(image.shape[:2])
        self.input_size = tuple(resized.shape[:2])
        pixels = normalize_and_pad(resized, self.model.config)
        self.features = embed_images(self.model.config, self.model.params, jnp.asarray(pixels))
        self.is_image_set = True

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts in original-image pixels: point_coords (N, 2) xy with point_labels (N,)
        (1 foreground, 0 background), box (4,) xyxy, mask_input (1, 256, 256) low-res logits.
        Returns masks (C, H, W) (bool, or logits with `return_logits`), IoU predictions (C,)
        and low-res logits (C, 256, 256)."""
        self._require_image()
        points = boxes = mask = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be supplied if point_coords is supplied.")
            coords = self.transform.apply_coords(np.asarray(point_coords), self.original_size)
            coords = np.asarray(coords, np.float32).reshape(1, -1, 2)
            labels = np.asarray(point_labels, np.int32).reshape(1, -1)
            if labels.shape[1] != coords.shape[1]:
                raise ValueError(
                    f"{coords.shape[1]} points but {labels.shape[1]} labels were given"
                )
            points = (coords, labels)
        if box is not None:
            if np.size(box) != 4:
                raise ValueError(
                    f"box must be one x0,y0,x1,y1 box, got shape {np.shape(box)}; "
                    "use predict_batched for several boxes"
                )
            boxes = self.transform.apply_boxes(np.asarray(box), self.original_size)
            boxes = np.asarray(boxes, np.float32)
        if mask_input is not None:
            mask = np.asarray(mask_input, np.float32)
            size = self.model.config.low_res_size
            if mask.shape != (1, size, size):
                raise ValueError(
                    f"mask_input must have shape (1, {size}, {size}), got {mask.shape}"
                )
            mask = mask[None].transpose(0, 2, 3, 1)
        masks, iou, low_res = self.predict_batched(
            points, boxes, mask, multimask_output, return_logits
        )
        return np.asarray(masks[0]), np.asarray(iou[0]), np.asarray(low_res[0])

    def predict_batched(
        self,
        points: tuple[np.ndarray, np.ndarray] | None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """`predict_torch`'s counterpart: B prompts at once, already in the resized input frame
        (points (B, N, 2) + labels (B, N), boxes (B, 4), mask_input (B, 256, 256, 1)).
        Returns masks (B, C, H, W), IoU (B, C), low-res logits (B, C, 256, 256) as jax arrays."""
        self._require_image()
        masks, iou, low_res = predict_masks(
            self.model.config, self.model.params, self.features, points, boxes, mask_input,
            multimask_output=multimask_output, input_size=self.input_size,
            original_size=self.original_size,
        )
        if not return_logits:
            masks = masks > Sam.mask_threshold
        return masks, iou, low_res

    def get_image_embedding(self) -> jax.Array:
        """The current image's embedding, (1, 64, 64, 256) (NHWC)."""
        self._require_image()
        return self.features

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features = None
        self.original_size = None
        self.input_size = None

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
