"""`SamPredictor`: the official predictor's interface on the Flax port.

The image embedding is computed once per `set_image` (one jit-compiled function per model
config: every image is padded to the same square, so it never recompiles) and reused by every
`predict` call. The official names keep the official layouts: `predict_torch` takes (B, N, 2)
points and (B, 1, 256, 256) mask inputs, `features` and `get_image_embedding()` are
(1, C, 64, 64); `predict_batched` and `embedding_nhwc` are ours (jax arrays, NHWC).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam_port.compute import batched_prompts, embed_images, predict_masks
from sam_port.host_array import HostArray, host
from sam_port.loaded import LoadedSam
from sam_port.transforms import ResizeLongestSide, normalize_and_pad, preprocess_nchw


class SamPredictor:
    """Compute an image's embedding once, then predict masks for any number of prompts."""

    def __init__(self, sam_model: LoadedSam) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.config.img_size)
        self.reset_image()

    @property
    def device(self) -> jax.Device:
        return self.model.device

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an HxWx3 uint8 image (RGB, or BGR with `image_format="BGR"`)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', is {image_format!r}")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"set_image expects an HxWx3 uint8 array, got shape {image.shape} {image.dtype}"
            )
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        self._embed(normalize_and_pad(resized, self.model.config), resized.shape[:2],
                    image.shape[:2])

    def set_torch_image(self, transformed_image: Any, original_image_size: tuple[int, ...]) -> None:
        """Embed an image already resized by `ResizeLongestSide`, (1, 3, h, w) with the long side
        the model's input size; `original_image_size` is (H, W) before resizing."""
        image = np.asarray(transformed_image)
        size = self.model.config.img_size
        if image.ndim != 4 or image.shape[:2] != (1, 3) or max(image.shape[2:]) != size:
            raise ValueError(f"set_torch_image expects (1, 3, H, W) with long side {size}, got "
                             f"shape {image.shape}")
        self._embed(preprocess_nchw(image, self.model.config), image.shape[2:],
                    original_image_size)

    def _embed(self, pixels: np.ndarray, input_size: tuple[int, ...],
               original_size: tuple[int, ...]) -> None:
        self.reset_image()
        self.original_size = tuple(int(v) for v in original_size)
        self.input_size = tuple(int(v) for v in input_size)
        self.embedding_nhwc = embed_images(self.model.config, self.model.params,
                                           jnp.asarray(pixels))
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
        coords = labels = boxes = mask = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be supplied if point_coords is supplied.")
            coords = self.transform.apply_coords(np.asarray(point_coords), self.original_size)
            coords, labels = coords.reshape(1, -1, 2), np.asarray(point_labels).reshape(1, -1)
            if labels.shape[1] != coords.shape[1]:
                raise ValueError(
                    f"{coords.shape[1]} points but {labels.shape[1]} labels were given"
                )
        if box is not None:
            if np.size(box) != 4:
                raise ValueError(
                    f"box must be one x0,y0,x1,y1 box, got shape {np.shape(box)}; "
                    "use predict_torch for several boxes"
                )
            boxes = self.transform.apply_boxes(np.asarray(box), self.original_size)
        if mask_input is not None:
            mask = np.asarray(mask_input, np.float32)
            size = self.model.config.low_res_size
            if mask.shape != (1, size, size):
                raise ValueError(
                    f"mask_input must have shape (1, {size}, {size}), got {mask.shape}"
                )
            mask = mask[None]
        masks, iou, low_res = self.predict_batched(
            *batched_prompts(coords, labels, boxes, mask, self.model.config.low_res_size),
            multimask_output, return_logits,
        )
        return np.asarray(masks[0]), np.asarray(iou[0]), np.asarray(low_res[0])

    def predict_torch(
        self,
        point_coords: Any | None,
        point_labels: Any | None,
        boxes: Any | None = None,
        mask_input: Any | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[HostArray, HostArray, HostArray]:
        """The official batched call, prompts in the resized input frame (use
        `transform.apply_coords_torch` / `apply_boxes_torch`): point_coords (B, N, 2) with
        point_labels (B, N), boxes (B, 4), mask_input (B, 1, 256, 256). Returns masks
        (B, C, H, W), IoU (B, C) and low-res logits (B, C, 256, 256) as `HostArray`s."""
        self._require_image()
        prompts = batched_prompts(point_coords, point_labels, boxes, mask_input,
                                  self.model.config.low_res_size)
        masks, iou, low_res = self.predict_batched(*prompts, multimask_output, return_logits)
        return host(masks), host(iou), host(low_res)

    def predict_batched(
        self,
        points: tuple[np.ndarray, np.ndarray] | None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Ours: B prompts at once in the resized input frame (points (B, N, 2) + labels (B, N),
        boxes (B, 4), mask_input NHWC (B, 256, 256, 1)). Returns masks (B, C, H, W),
        IoU (B, C), low-res logits (B, C, 256, 256) as jax arrays, left on the device."""
        self._require_image()
        masks, iou, low_res = predict_masks(
            self.model.config, self.model.params, self.embedding_nhwc, points, boxes,
            mask_input, multimask_output=multimask_output, input_size=self.input_size,
            original_size=self.original_size,
        )
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    @property
    def features(self) -> jax.Array | None:
        """The current image's embedding in the official layout, (1, C, 64, 64)."""
        if self.embedding_nhwc is None:
            return None
        if self._features_nchw is None:
            self._features_nchw = jnp.transpose(self.embedding_nhwc, (0, 3, 1, 2))
        return self._features_nchw

    @features.setter
    def features(self, value: Any) -> None:
        """Set a precomputed (1, C, 64, 64) embedding (then set `original_size`,
        `input_size` and `is_image_set` as with the official predictor)."""
        self._features_nchw = None
        if value is not None and not isinstance(value, jax.Array):
            value = np.asarray(value)
        self.embedding_nhwc = None if value is None else jnp.transpose(value, (0, 2, 3, 1))

    def get_image_embedding(self) -> HostArray:
        """The current image's embedding, (1, C, 64, 64) on the host as officially
        (`embedding_nhwc` is ours, (1, 64, 64, C), left on the device)."""
        if not self.is_image_set:
            raise RuntimeError(
                "An image must be set with .set_image(...) to generate an embedding."
            )
        return host(self.features)

    def reset_image(self) -> None:
        self.is_image_set = False
        self.embedding_nhwc = None
        self._features_nchw = None
        self.original_size = None
        self.input_size = None

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
