"""Image, mask and logit resizing shared by inference, data pipelines and evaluation
(docs/COMPUTATION.md §1)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sam_port.interpolate import linear_weights, nearest_indices

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8 with PIL bilinear (torchvision's Resize on PIL)."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def normalize_image(image: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> float32 scaled to [0, 1] and normalised with ImageNet statistics
    (numpy arrays on the host, jax arrays inside a jitted step)."""
    return (image.astype(np.float32) / np.float32(255) - IMAGENET_MEAN) / IMAGENET_STD


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """What the backbone and SAM see: resized to size x size, normalised, float32 NHWC."""
    return normalize_image(resize_image(image, size))


def resize_mask_nearest(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) -> (size, size) with PyTorch `nearest` semantics (source floor(i * H / size))."""
    h, w = mask.shape
    return mask[nearest_indices(h, size)][:, nearest_indices(w, size)]


def logits_to_size(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """(S, S) logits -> (height, width), bilinear with align_corners=True (the release's
    original-size path), in numpy so targets of any size share one compiled model."""
    wy = linear_weights(logits.shape[0], height, True)
    wx = linear_weights(logits.shape[1], width, True)
    return (wy @ np.asarray(logits, np.float32) @ wx.T).astype(np.float32)
