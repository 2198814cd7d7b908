"""A person's reference annotation, as given on the command line or in an app (a mask or
scribble image, boxes, points in the reference's pixels), -> the prompt mask on the model grid.
Errors name the file and the problem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vrp_sam_jax.errors import InputError
from vrp_sam_jax.names import CONDITIONS
from vrp_sam_jax.storage.image_io import read_mask
from vrp_sam_jax.transforms import conditions
from vrp_sam_jax.transforms.preprocess import resize_mask_nearest


def prompt_mask(kind: str, annotation, image_shape: tuple[int, int], size: int,
                reference: str | Path = "reference") -> np.ndarray:
    """(size, size) float32 {0, 1} prompt mask of one reference from its annotation: `mask`
    and `scribble` take an image path (non-zero = object / drawn) or an (H, W) array (the
    app's painted pixels) of the reference's size, `box` a list of (x0, y0, x1, y1) and
    `point` a list of (x, y) in reference pixels."""
    if kind not in CONDITIONS:  # a person's annotation kinds are the training conditions
        raise InputError(f"unknown annotation kind {kind!r}; choose from "
                         f"{', '.join(CONDITIONS)}")
    if kind in ("mask", "scribble"):
        painted = isinstance(annotation, np.ndarray)
        drawn = annotation != 0 if painted else read_mask(annotation)
        label = f"{reference} ({kind})" if painted else str(annotation)
        if drawn.shape != tuple(image_shape):
            raise InputError(f"{label}: annotation is {drawn.shape[1]}x{drawn.shape[0]} "
                             f"but reference {reference} is {image_shape[1]}x{image_shape[0]}")
        out = (resize_mask_nearest(drawn, size).astype(np.float32) if kind == "mask"
               else conditions.rasterize_scribble(drawn, size))
    else:
        label = f"{reference} ({kind})"
        rasterize = conditions.rasterize_boxes if kind == "box" else conditions.rasterize_points
        try:
            out = rasterize(annotation, image_shape, size)
        except ValueError as e:
            raise InputError(f"{label}: {e}") from e
    if not out.any():
        raise InputError(f"{label}: empty reference annotation (no foreground pixel)")
    return out


def prompt_masks(kind: str, annotations: Sequence, references: Sequence[str | Path],
                 images: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """One prompt mask per reference image (H_i, W_i, 3), in order, each (size, size) on the
    model grid."""
    if len(annotations) != len(images):
        raise InputError(f"{len(images)} reference image(s) but {len(annotations)} {kind} "
                         "annotation(s): give one per reference, in the same order")
    return [prompt_mask(kind, a, image.shape[:2], size, path)
            for a, path, image in zip(annotations, references, images, strict=True)]
