"""SAM's image and prompt transforms (`segment_anything.utils.transforms` and the pre/post
processing of `Sam`) and SAM 2's (`sam2/utils/transforms.py`), with the same numbers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from sam_port.config import Sam2Config, SamConfig
from sam_port.interpolate import (
    antialiased_linear_weights,
    apply_separable,
    linear_weights,
    resize_bilinear,
)

ArrayLike = Any  # numpy or jax arrays, or anything np.asarray takes (a CPU torch tensor)


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

    # The official names for tensors, on any array (numpy, jax, a CPU torch tensor).

    def apply_image_torch(self, image: ArrayLike) -> jax.Array:
        """(B, 3, H, W) -> resized (B, 3, h, w) float32, bilinear with antialiasing
        (`F.interpolate(..., antialias=True)`; may differ slightly from `apply_image`). The
        official sizes its output from the input's B and C by mistake; this uses H and W."""
        image = jnp.asarray(np.asarray(image), jnp.float32)
        if image.ndim != 4:
            raise ValueError(f"apply_image_torch expects (B, C, H, W), got shape {image.shape}")
        size = get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return resize_bilinear(image, size, align_corners=False, axes=(-2, -1), antialias=True)

    def apply_coords_torch(self, coords: ArrayLike, original_size: tuple[int, int]) -> np.ndarray:
        """`apply_coords` returning float32, as the official tensor version does."""
        return self.apply_coords(np.asarray(coords), original_size).astype(np.float32)

    def apply_boxes_torch(self, boxes: ArrayLike, original_size: tuple[int, int]) -> np.ndarray:
        """`apply_boxes` returning float32 (B, 4)."""
        return self.apply_boxes(np.asarray(boxes), original_size).astype(np.float32)

    get_preprocess_shape = staticmethod(get_preprocess_shape)


def preprocess_nchw(images: np.ndarray, config: SamConfig) -> np.ndarray:
    """`Sam.preprocess` on (B, 3, h, w) resized images (any real dtype): (x - mean) / std,
    zero-padded bottom/right to the model's square, returned NHWC float32 (B, S, S, 3)."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got shape {images.shape}")
    size = config.img_size
    if max(images.shape[2:]) > size:
        raise ValueError(f"images of size {images.shape[2:]} exceed the model's {size}x{size} "
                         "input; resize them with ResizeLongestSide first")
    mean = np.asarray(config.pixel_mean, np.float32)
    std = np.asarray(config.pixel_std, np.float32)
    x = (images.transpose(0, 2, 3, 1) - mean) / std
    out = np.zeros((images.shape[0], size, size, 3), np.float32)
    out[:, : x.shape[1], : x.shape[2]] = x
    return out


def normalize_and_pad(image: np.ndarray, config: SamConfig) -> np.ndarray:
    """Resized uint8 HxWx3 -> (1, S, S, 3) float32: (x - mean) / std, zero-padded bottom/right."""
    return preprocess_nchw(np.asarray(image).transpose(2, 0, 1)[None], config)


@lru_cache(maxsize=64)
def postprocess_weights(low_res: int, img_size: int, crop: int, out: int) -> np.ndarray:
    """(out, low_res): upscaling to the padded input, cropping to `crop` and resizing to `out`
    (bilinear, align_corners=False, PyTorch's weights) composed into one linear map, in
    float64 before the cast."""
    up = linear_weights(low_res, img_size, False).astype(np.float64)[:crop]
    down = linear_weights(crop, out, False).astype(np.float64)
    return (down @ up).astype(np.float32)


def postprocess_masks(
    masks: jax.Array, input_size: tuple[int, int], original_size: tuple[int, int], img_size: int
) -> jax.Array:
    """Low-res logits (B, M, h, w) -> (B, M, H, W) at the original size: `Sam.postprocess_masks`
    (upscale to the padded input, crop the padding, resize to the original; bilinear,
    align_corners=False). The three steps are linear per axis, so they run as one composed
    matrix per axis: H x h and W x w multiply-adds per mask instead of passing through the
    1024 x 1024 padded frame (equal to the sequential form within float32 rounding)."""
    h, w = masks.shape[-2:]
    wy = postprocess_weights(h, img_size, input_size[0], original_size[0])
    wx = postprocess_weights(w, img_size, input_size[1], original_size[1])
    return apply_separable(masks, jnp.asarray(wy, masks.dtype), jnp.asarray(wx, masks.dtype),
                           axes=(-2, -1))


def sam2_preprocess(image: np.ndarray, config: Sam2Config) -> np.ndarray:
    """`SAM2Transforms` on one HxWx3 image: `ToTensor` (uint8 scaled to [0, 1], other dtypes
    as they are), `Resize((S, S))` (the aspect ratio is not kept; bilinear, antialiased, as
    torchvision resizes tensors) and `Normalize(mean, std)`. Returns (S, S, 3) float32, NHWC."""
    image = np.asarray(image)
    x = image.astype(np.float32) / np.float32(255) if image.dtype == np.uint8 else \
        image.astype(np.float32)
    size = config.image_size
    wy = antialiased_linear_weights(x.shape[0], size)
    wx = antialiased_linear_weights(x.shape[1], size)
    x = np.einsum("yh,hwc->ywc", wy, x, optimize=True)
    x = np.einsum("xw,ywc->yxc", wx, x, optimize=True)
    mean = np.asarray(config.pixel_mean, np.float32)
    std = np.asarray(config.pixel_std, np.float32)
    return ((x - mean) / std).astype(np.float32)


def sam2_coords(coords: np.ndarray, original_size: tuple[int, int], image_size: int,
                normalize: bool = True) -> np.ndarray:
    """`SAM2Transforms.transform_coords`: (..., 2) xy in original pixels (or in [0, 1] with
    `normalize=False`) -> the model's S x S input frame."""
    coords = np.array(coords, np.float32)
    if normalize:
        h, w = original_size
        coords[..., 0] = coords[..., 0] / np.float32(w)
        coords[..., 1] = coords[..., 1] / np.float32(h)
    return coords * np.float32(image_size)


def sam2_postprocess_masks(masks: jax.Array, original_size: tuple[int, int]) -> jax.Array:
    """`SAM2Transforms.postprocess_masks` without hole filling: low-res logits (B, M, h, w)
    resized straight to (B, M, H, W) (bilinear, align_corners=False; no padding to crop)."""
    return resize_bilinear(masks, original_size, align_corners=False, axes=(-2, -1))
