"""The automatic mask generator's helpers (`segment_anything.utils.amg`), in numpy and JAX.

Same names and numbers as the official module. Two of its dependencies are replaced: box NMS
(torchvision's C op there) is `batched_nms` below, and the small-region clean-up (OpenCV's
connected components there) uses `scipy.ndimage.label` with the same 8-connectivity.
Masks are (N, H, W) bool, boxes XYXY; RLEs are pycocotools' uncompressed form (column-major
run lengths starting with a run of zeros).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import product
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class MaskData:
    """Masks and their statistics in batched form (numpy arrays or lists, one row a mask),
    filtered and concatenated together."""

    def __init__(self, **kwargs: np.ndarray | list) -> None:
        self._stats: dict[str, np.ndarray | list] = {}
        for key, value in kwargs.items():
            self[key] = value

    def __setitem__(self, key: str, item: np.ndarray | list) -> None:
        if not isinstance(item, np.ndarray | list):
            raise TypeError(f"MaskData holds numpy arrays and lists, not {type(item)}")
        self._stats[key] = item

    def __delitem__(self, key: str) -> None:
        del self._stats[key]

    def __getitem__(self, key: str) -> np.ndarray | list:
        return self._stats[key]

    def __contains__(self, key: str) -> bool:
        return key in self._stats

    def items(self):
        return self._stats.items()

    def filter(self, keep: np.ndarray) -> None:
        """Keep the rows `keep` selects: a bool mask, or indices (in their order)."""
        keep = np.asarray(keep)
        rows = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64)
        for key, value in self._stats.items():
            self._stats[key] = value[rows] if isinstance(value, np.ndarray) else [
                value[i] for i in rows]

    def cat(self, new_stats: MaskData) -> None:
        for key, value in new_stats.items():
            if key not in self._stats:
                self._stats[key] = value
            elif isinstance(value, np.ndarray):
                self._stats[key] = np.concatenate([self._stats[key], value], axis=0)
            else:
                self._stats[key] = self._stats[key] + value


# ---------------------------------------------------------------------------- point grids, crops


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) xy points evenly spaced in [0, 1]^2, cell centres."""
    offset = 1 / (2 * n_per_side)
    one_side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(one_side[None, :], (n_per_side, 1))
    ys = np.tile(one_side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int,
                                scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer, `n_per_side / scale_per_layer**i` points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i)))
            for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: tuple[int, int], n_layers: int,
                        overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """XYXY crop boxes and their layer: the whole image, then (2**i)**2 overlapping crops in
    layer i."""
    crop_boxes, layer_idxs = [[0, 0, im_size[1], im_size[0]]], [0]
    im_h, im_w = im_size
    short_side = min(im_h, im_w)

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        n_crops_per_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops_per_side))
        crop_w = crop_len(im_w, n_crops_per_side, overlap)
        crop_h = crop_len(im_h, n_crops_per_side, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_crops_per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_crops_per_side)]
        for x0, y0 in product(x0s, y0s):
            crop_boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(i_layer + 1)
    return crop_boxes, layer_idxs


def batch_iterator(batch_size: int, *args: Sequence) -> Iterator[list]:
    """Consecutive slices of `batch_size` rows of every argument (the last may be shorter)."""
    if not args or any(len(a) != len(args[0]) for a in args):
        raise ValueError("batched iteration needs inputs of the same length")
    n_batches = len(args[0]) // batch_size + int(len(args[0]) % batch_size != 0)
    for b in range(n_batches):
        yield [arg[b * batch_size: (b + 1) * batch_size] for arg in args]


# ------------------------------------------------------------------------------ mask statistics


def calculate_stability_score(masks: jax.Array, mask_threshold: float,
                              threshold_offset: float) -> jax.Array:
    """IoU of the masks thresholded at `mask_threshold +/- threshold_offset`, (..., H, W) ->
    (...); the high mask lies inside the low one, so the IoU is a ratio of areas."""
    high = (masks > (mask_threshold + threshold_offset)).sum((-1, -2), dtype=jnp.int32)
    low = (masks > (mask_threshold - threshold_offset)).sum((-1, -2), dtype=jnp.int32)
    return high / low


def batched_mask_to_box(masks: jax.Array) -> jax.Array:
    """(..., H, W) bool -> (..., 4) XYXY boxes (inclusive pixel indices), [0, 0, 0, 0] for an
    empty mask."""
    h, w = masks.shape[-2:]
    in_height = masks.any(-1)
    in_width = masks.any(-2)
    rows, cols = jnp.arange(h), jnp.arange(w)
    bottom = jnp.max(in_height * rows, -1)
    top = jnp.min(jnp.where(in_height, rows, h), -1)
    right = jnp.max(in_width * cols, -1)
    left = jnp.min(jnp.where(in_width, cols, w), -1)
    empty = (right < left) | (bottom < top)
    out = jnp.stack([left, top, right, bottom], -1)
    return out * ~empty[..., None]


def is_box_near_crop_edge(boxes: np.ndarray, crop_box: Sequence[int],
                          orig_box: Sequence[int], atol: float = 20.0) -> np.ndarray:
    """Boxes (in crop coordinates) touching a crop edge that is not an edge of the image."""
    crop = np.asarray(crop_box, np.float32)
    orig = np.asarray(orig_box, np.float32)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).astype(np.float32)
    near_crop = np.abs(boxes - crop[None]) <= atol
    near_image = np.abs(boxes - orig[None]) <= atol
    return np.any(near_crop & ~near_image, axis=1)


def box_xyxy_to_xywh(box_xyxy: np.ndarray) -> np.ndarray:
    box = np.array(box_xyxy)
    box[2] = box[2] - box[0]
    box[3] = box[3] - box[1]
    return box


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) XYXY -> (N,) areas, (x1 - x0) * (y1 - y0)."""
    boxes = np.asarray(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


# ----------------------------------------------------------------------------------- uncropping


def uncrop_boxes_xyxy(boxes: np.ndarray, crop_box: Sequence[int]) -> np.ndarray:
    x0, y0, _, _ = crop_box
    return np.asarray(boxes) + np.array([x0, y0, x0, y0])


def uncrop_points(points: np.ndarray, crop_box: Sequence[int]) -> np.ndarray:
    x0, y0, _, _ = crop_box
    return np.asarray(points) + np.array([x0, y0])


def uncrop_masks(masks: np.ndarray, crop_box: Sequence[int], orig_h: int,
                 orig_w: int) -> np.ndarray:
    """(N, h, w) masks of a crop -> (N, orig_h, orig_w), zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    return np.pad(masks, ((0, 0), (y0, pad_y - y0), (x0, pad_x - x0)))


# ------------------------------------------------------------------------------------------ RLE


def mask_to_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """(N, H, W) bool -> uncompressed RLEs (`mask_to_rle_pytorch`'s output)."""
    b, h, w = masks.shape
    if b == 0:
        return []
    flat = np.ascontiguousarray(np.asarray(masks, bool).transpose(0, 2, 1)).reshape(b, h * w)
    rows, cols = np.nonzero(flat[:, 1:] != flat[:, :-1])
    splits = np.searchsorted(rows, np.arange(1, b))
    out = []
    for i, changes in enumerate(np.split(cols, splits)):
        edges = np.concatenate([[0], changes + 1, [h * w]])
        counts = [] if not flat[i, 0] else [0]
        counts.extend(np.diff(edges).tolist())
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE -> (H, W) bool."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(w, h).transpose()


def area_from_rle(rle: dict[str, Any]) -> int:
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(uncompressed_rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> pycocotools' compressed RLE, with `counts` as str (JSON-ready)."""
    from pycocotools import mask as mask_utils

    h, w = uncompressed_rle["size"]
    rle = mask_utils.frPyObjects(uncompressed_rle, h, w)
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


# ----------------------------------------------------------------------------------------- NMS


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression, `torchvision.ops.nms`: boxes in descending score order
    (ties in input order) suppress later boxes whose IoU with them exceeds the threshold.
    Returns the kept indices, highest score first."""
    boxes = np.asarray(boxes, np.float32)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    x0, y0, x1, y1 = boxes[order].T
    area = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = slice(i + 1, None)  # IoU with the boxes after it, one row at a time
        w = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        h = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            suppressed[rest] |= inter / (area[i] + area[rest] - inter) > iou_threshold
    return order[np.asarray(keep, np.int64)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, categories: np.ndarray,
                iou_threshold: float) -> np.ndarray:
    """`torchvision.ops.batched_nms`: NMS within each category, kept indices by descending
    score."""
    categories = np.asarray(categories)
    keep = [idx[nms(np.asarray(boxes)[idx], np.asarray(scores)[idx], iou_threshold)]
            for idx in (np.flatnonzero(categories == c) for c in np.unique(categories))]
    if not keep:
        return np.zeros(0, np.int64)
    keep = np.concatenate(keep)
    return keep[np.argsort(-np.asarray(scores, np.float32)[keep], kind="stable")]


# --------------------------------------------------------------------------- small-region removal


def remove_small_regions(mask: np.ndarray, area_thresh: float,
                         mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (`mode="holes"`) or drop islands (`"islands"`) smaller than `area_thresh`
    (8-connected regions). Returns the mask and whether it changed."""
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', is {mode!r}")
    correct_holes = mode == "holes"
    working = correct_holes ^ np.asarray(mask, bool)
    regions, n_regions = ndimage.label(working, structure=np.ones((3, 3), int))
    sizes = np.bincount(regions.ravel(), minlength=n_regions + 1)[1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not correct_holes:
        fill = [i for i in range(n_regions + 1) if i not in fill]
        if not fill:
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True
