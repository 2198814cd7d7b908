"""Reading images and writing masks, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vrp_sam_jax.errors import InputError


def require_files(paths: Sequence[str | Path], what: str = "image") -> None:
    """Each path is a file (checked before any long work starts)."""
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such {what} file")


_UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
               Image.DecompressionBombError)


def _displayed(img: Image.Image) -> Image.Image:
    """The image as people see it: EXIF orientation applied (phone photos)."""
    return ImageOps.exif_transpose(img)


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the high byte
        high = np.clip(np.asarray(img, np.int64) >> 8, 0, 255).astype(np.uint8)
        return np.repeat(high[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image as an HxWx3 uint8 array, in its displayed orientation (EXIF applied;
    16-bit images scaled, not clipped). Images larger than PIL's decompression-bomb limit are
    refused. (Dataset readers, `data/sources.py`, read pixels as stored, as the benchmarks'
    masks are aligned to them.)"""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            return _to_rgb(_displayed(img))
    except _UNREADABLE as e:
        raise InputError(f"{path}: not a readable image ({e})") from e


def require_images(paths: Sequence[str | Path]) -> None:
    """Each path is a readable image (decoded once, before any long work starts)."""
    for p in paths:
        read_image(p)


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """A boolean HxW mask as a black/white PNG (0/255)."""
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)


# Overlay colours, one of which is far from any object's own colour: a red object tinted red
# (the toy's red disk) would hide the correct part and leave only the mistakes visible.
OVERLAY_COLOURS = ((0, 230, 255), (255, 225, 0), (255, 0, 200), (40, 255, 40))


def contrasting_colour(image: np.ndarray, mask: np.ndarray) -> tuple[int, int, int]:
    """The `OVERLAY_COLOURS` entry farthest from the mean colour under the mask."""
    mean = image[mask].reshape(-1, 3).mean(0) if mask.any() else np.zeros(3)
    return max(OVERLAY_COLOURS, key=lambda c: float(np.sum((np.asarray(c) - mean) ** 2)))


def outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The mask's pixels within `width` of its border (its edge, drawn opaque)."""
    inner = mask.copy()
    for _ in range(width):  # erode by one pixel (4-neighbourhood), `width` times
        padded = np.pad(inner, 1)
        inner = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                 & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def overlay(image: np.ndarray, mask: np.ndarray, color=None, alpha: float = 0.45,
            points: np.ndarray | None = None) -> np.ndarray:
    """The image with the mask tinted in `color` (default: one that contrasts with the
    object, `contrasting_colour`) inside an opaque outline of it, and optional points drawn
    as small squares."""
    color = contrasting_colour(image, mask) if color is None else color
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    out[outline(mask)] = np.asarray(color, np.float32)
    out = out.astype(np.uint8)
    h, w = mask.shape
    for x, y in [] if points is None else np.asarray(points, int):
        out[max(y - 3, 0) : min(y + 4, h), max(x - 3, 0) : min(x + 4, w)] = (40, 255, 40)
    return out


def read_mask(path: str | Path) -> np.ndarray:
    """A mask or scribble PNG as an HxW bool array, in its displayed orientation: any non-zero
    pixel is foreground (for RGB/RGBA files, any non-zero channel; a fully transparent pixel
    is background)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mask file")
    try:
        with Image.open(path) as raw:
            img = _displayed(raw)
            if img.mode in ("RGBA", "LA"):
                arr = np.asarray(img.convert("RGBA"))
                return np.any(arr[..., :3] > 0, axis=-1) & (arr[..., 3] > 0)
            if img.mode == "P":
                return np.asarray(img) > 0  # palette index 0 is background (VOC style)
            arr = np.asarray(img.convert("RGB") if img.mode not in ("1", "L", "I", "I;16")
                             else img)
    except _UNREADABLE as e:
        raise InputError(f"{path}: not a readable mask image ({e})") from e
    return np.any(arr > 0, axis=-1) if arr.ndim == 3 else arr > 0
