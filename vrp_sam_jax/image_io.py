"""Reading images and writing masks, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vrp_sam_jax.errors import InputError


def require_files(paths: Sequence[str | Path], what: str = "image") -> None:
    """Each path is a file (checked before any long work starts)."""
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such {what} file")


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image as an HxWx3 uint8 array."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"{path}: not a readable image ({e})") from e


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """A boolean HxW mask as a black/white PNG (0/255)."""
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)


def overlay(image: np.ndarray, mask: np.ndarray, color=(255, 40, 40), alpha: float = 0.5,
            points: np.ndarray | None = None) -> np.ndarray:
    """The image with the mask tinted in `color` and optional points drawn as small squares."""
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    out = out.astype(np.uint8)
    h, w = mask.shape
    for x, y in [] if points is None else np.asarray(points, int):
        out[max(y - 3, 0) : min(y + 4, h), max(x - 3, 0) : min(x + 4, w)] = (40, 255, 40)
    return out


def read_mask(path: str | Path) -> np.ndarray:
    """A mask or scribble PNG as an HxW bool array: any non-zero pixel is foreground (for
    RGB/RGBA files, any non-zero channel; a fully transparent pixel is background)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mask file")
    try:
        with Image.open(path) as img:
            if img.mode in ("RGBA", "LA"):
                arr = np.asarray(img.convert("RGBA"))
                return np.any(arr[..., :3] > 0, axis=-1) & (arr[..., 3] > 0)
            if img.mode == "P":
                return np.asarray(img) > 0  # palette index 0 is background (VOC style)
            arr = np.asarray(img.convert("RGB") if img.mode not in ("1", "L", "I", "I;16")
                             else img)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"{path}: not a readable mask image ({e})") from e
    return np.any(arr > 0, axis=-1) if arr.ndim == 3 else arr > 0
