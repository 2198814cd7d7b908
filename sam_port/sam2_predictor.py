"""`SAM2ImagePredictor`: the official SAM 2 image predictor's interface on the Flax port
(`sam2/sam2_image_predictor.py`, same method names, arguments, layouts and numbers).

`set_image` computes the image embedding and the two high-res feature maps once (one compiled
function per model config: every image is resized to the same square); `predict` decodes any
number of prompts against them. Results are numpy arrays, as officially.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from sam_port.compute import sam2_embed_images, sam2_predict_masks
from sam_port.loaded import LoadedSam2, require_sam2
from sam_port.modeling.sam2 import box_corner_points
from sam_port.transforms import sam2_coords, sam2_postprocess_masks, sam2_preprocess

# The low-res logits `predict` returns are clamped as the original clamps them.
LOW_RES_CLAMP = 32.0


def _image_array(image: Any, what: str) -> np.ndarray:
    """An HxWx3 array of a numpy image or a PIL image (as `ToTensor` reads them)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what}: expected an HxWx3 numpy array or a PIL image, got "
                        f"{type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what}: expected an HxWx3 RGB image, got shape {image.shape}")
    return image


def small_components(region: np.ndarray, max_area: float) -> np.ndarray:
    """The pixels of `region` (2-D bool) in 8-connected components of at most `max_area`
    pixels (the rule of the CUDA extension's `get_connected_components`)."""
    labels, _ = ndimage.label(region, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())
    return (labels > 0) & (sizes[labels] <= max_area)


def fill_small_regions(logits: np.ndarray, threshold: float, max_hole_area: float,
                        max_sprinkle_area: float) -> np.ndarray:
    """`SAM2Transforms.postprocess_masks`' clean-up of low-res logits (B, M, h, w): background
    components (8-connected) of at most `max_hole_area` pixels get `threshold + 10`, then
    foreground components of at most `max_sprinkle_area` get `threshold - 10`."""
    out = np.array(logits, np.float32)
    for index in np.ndindex(*out.shape[:2]):
        for area, region, value in ((max_hole_area, out[index] <= threshold, threshold + 10.0),
                                    (max_sprinkle_area, out[index] > threshold,
                                     threshold - 10.0)):
            if area > 0:
                small = small_components(region, area)
                out[index] = np.where(small, np.float32(value), out[index])
    return out


class SAM2ImagePredictor:
    """Embed an image once, then predict masks for any number of prompts."""

    def __init__(self, sam_model: LoadedSam2, mask_threshold: float = 0.0,
                 max_hole_area: float = 0.0, max_sprinkle_area: float = 0.0,
                 **kwargs: Any) -> None:
        self.model = require_sam2(sam_model, "SAM2ImagePredictor")
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self.reset_predictor()

    @property
    def device(self) -> jax.Device:
        return self.model.device

    def reset_predictor(self) -> None:
        self._is_image_set = False
        self._features = None
        self._orig_hw = None
        self._is_batch = False

    def set_image(self, image: Any) -> None:
        """Embed an HxWx3 RGB image (a uint8 numpy array, or a PIL image)."""
        self.reset_predictor()
        image = _image_array(image, "set_image")
        self._embed([image])

    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        """Embed a list of HxWx3 RGB numpy images (then `predict_batch`)."""
        self.reset_predictor()
        if not isinstance(image_list, list):
            raise TypeError("set_image_batch expects a list of HxWx3 numpy images")
        self._embed([_image_array(image, f"set_image_batch[{i}]")
                     for i, image in enumerate(image_list)])
        self._is_batch = True

    def _embed(self, images: list[np.ndarray]) -> None:
        config = self.model.config
        pixels = np.stack([sam2_preprocess(image, config) for image in images])
        embedding, high_res = sam2_embed_images(config, self.model.params, jnp.asarray(pixels))
        self._features = {"image_embed": embedding, "high_res_feats": list(high_res)}
        self._orig_hw = [tuple(int(v) for v in image.shape[:2]) for image in images]
        self._is_image_set = True

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts in original-image pixels (or in [0, 1] with `normalize_coords=False`):
        point_coords (N, 2) or (B, N, 2) xy with point_labels (N,) / (B, N) (1 foreground, 0
        background), box (4,) or (B, 4) xyxy, mask_input (1, 256, 256) or (B, 1, 256, 256)
        low-res logits. Returns masks (C, H, W) (bool, or logits with `return_logits`), IoU
        predictions (C,) and low-res logits (C, 256, 256); with B > 1 prompts, each has B
        first."""
        self._require_image("set_image")
        return self._predict_image(0, point_coords, point_labels, box, mask_input,
                                   multimask_output, return_logits, normalize_coords)

    def predict_batch(
        self,
        point_coords_batch: list[np.ndarray] | None = None,
        point_labels_batch: list[np.ndarray] | None = None,
        box_batch: list[np.ndarray] | None = None,
        mask_input_batch: list[np.ndarray] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """`predict` for each image of `set_image_batch`, its prompts the lists' entries."""
        if not self._is_batch:
            raise RuntimeError("predict_batch needs images set with .set_image_batch(...)")
        self._require_image("set_image_batch")
        results = [
            self._predict_image(
                i, *(None if prompts is None else prompts[i]
                     for prompts in (point_coords_batch, point_labels_batch, box_batch,
                                     mask_input_batch)),
                multimask_output, return_logits, normalize_coords)
            for i in range(len(self._orig_hw))
        ]
        masks, ious, low_res = zip(*results, strict=True) if results else ((), (), ())
        return list(masks), list(ious), list(low_res)

    def _predict_image(self, index, point_coords, point_labels, box, mask_input,
                       multimask_output, return_logits, normalize_coords):
        original_size = self._orig_hw[index]
        size = self.model.image_size
        coords = labels = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be supplied if point_coords is supplied.")
            coords = sam2_coords(point_coords, original_size, size, normalize_coords)
            labels = np.asarray(point_labels, np.int32)
            if coords.ndim == 2:
                coords, labels = coords[None], labels[None]
            if coords.ndim != 3 or coords.shape[2] != 2 or labels.shape != coords.shape[:2]:
                raise ValueError(f"point_coords must be (N, 2) or (B, N, 2) with point_labels "
                                 f"(N,) or (B, N), got {np.shape(point_coords)} and "
                                 f"{np.shape(point_labels)}")
        boxes = None
        if box is not None:
            boxes = sam2_coords(np.reshape(np.asarray(box, np.float32), (-1, 2, 2)),
                                original_size, size, normalize_coords).reshape(-1, 4)
        mask = None
        if mask_input is not None:
            mask = np.asarray(mask_input, np.float32)
            mask = mask[None] if mask.ndim == 3 else mask
            low = self.model.config.low_res_size
            if mask.ndim != 4 or mask.shape[1:] != (1, low, low):
                raise ValueError(f"mask_input must be (1, {low}, {low}) or (B, 1, {low}, {low})"
                                 f", got shape {np.shape(mask_input)}")
            mask = mask.transpose(0, 2, 3, 1)
        points = box_corner_points(None if coords is None else (coords, labels), boxes)
        embedding = self._features["image_embed"][index: index + 1]
        high_res = tuple(level[index: index + 1] for level in self._features["high_res_feats"])
        masks, iou, low_res = sam2_predict_masks(
            self.model.config, self.model.params, embedding, high_res, points, mask,
            multimask_output=multimask_output, original_size=original_size)
        if self.max_hole_area > 0 or self.max_sprinkle_area > 0:
            filled = fill_small_regions(np.asarray(low_res), self.mask_threshold,
                                         self.max_hole_area, self.max_sprinkle_area)
            masks = sam2_postprocess_masks(jnp.asarray(filled), original_size)
        masks = np.asarray(masks, np.float32)
        if not return_logits:
            masks = masks > self.mask_threshold
        low_res = np.clip(np.asarray(low_res, np.float32), -LOW_RES_CLAMP, LOW_RES_CLAMP)

        def squeeze(x):  # torch's squeeze(0): only a batch of one is dropped
            return x[0] if x.shape[0] == 1 else x

        return squeeze(masks), squeeze(np.asarray(iou, np.float32)), squeeze(low_res)

    def get_image_embedding(self) -> np.ndarray:
        """The image embedding of the set image(s), (B, C, 64, 64) as officially."""
        self._require_image("set_image", "to generate an embedding")
        return np.asarray(self._features["image_embed"]).transpose(0, 3, 1, 2)

    def _require_image(self, setter: str, purpose: str = "before mask prediction") -> None:
        if not self._is_image_set:
            raise RuntimeError(f"An image must be set with .{setter}(...) {purpose}.")
