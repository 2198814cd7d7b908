"""SAM's image and prompt transforms (`segment_anything.utils.transforms` and the pre/post
processing of `Sam`), with the same numbers."""

from __future__ import annotations

import jax
import numpy as np
from PIL import Image

from sam_port.config import SamConfig
from sam_port.interpolate import resize_bilinear


def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
    """(h, w) after scaling the long side to `long_side_length` (rounded half up)."""
    scale = long_side_length * 1.0 / max(oldh, oldw)
    return int(oldh * scale + 0.5), int(oldw * scale + 0.5)


class ResizeLongestSide:
    """Resizes images so the long side is `target_length`, and moves prompts with them."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> resized uint8, with PIL's bilinear filter (as torchvision does on a
        PIL image, which is what the original predictor resizes)."""
        h, w = get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """(..., 2) xy pixel coordinates of the original image -> the resized frame."""
        old_h, old_w = original_size
        new_h, new_w = get_preprocess_shape(old_h, old_w, self.target_length)
        coords = np.array(coords, dtype=float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """(B, 4) xyxy boxes of the original image -> the resized frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)


def normalize_and_pad(image: np.ndarray, config: SamConfig) -> np.ndarray:
    """Resized uint8 HxWx3 -> (1, S, S, 3) float32: (x - mean) / std, zero-padded bottom/right."""
    mean = np.asarray(config.pixel_mean, np.float32)
    std = np.asarray(config.pixel_std, np.float32)
    x = (image.astype(np.float32) - mean) / std
    size = config.img_size
    out = np.zeros((1, size, size, 3), np.float32)
    out[0, : x.shape[0], : x.shape[1]] = x
    return out


def postprocess_masks(
    masks: jax.Array, input_size: tuple[int, int], original_size: tuple[int, int], img_size: int
) -> jax.Array:
    """Low-res logits (B, M, h, w) -> (B, M, H, W) at the original size: upscale to the padded
    input, crop the padding, resize to the original (bilinear, align_corners=False)."""
    masks = resize_bilinear(masks, (img_size, img_size), align_corners=False, axes=(-2, -1))
    masks = masks[..., : input_size[0], : input_size[1]]
    return resize_bilinear(masks, original_size, align_corners=False, axes=(-2, -1))
