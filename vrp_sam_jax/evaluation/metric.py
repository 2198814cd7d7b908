"""The field's metric (docs/COMPUTATION.md §8; HSNet's `Evaluator` and `AverageMeter`).

Per episode, on the evaluation grid and with ignore pixels (PASCAL borders) removed from both
prediction and ground truth: intersection and union of the background and of the foreground.
mIoU = mean over the fold's classes of (summed foreground intersections / summed foreground
unions) over that class's episodes; FB-IoU = mean of the pooled background and foreground IoU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def episode_areas(pred, truth, ignore=None, xp=np):
    """Binary (B, H, W) prediction and truth -> (B, 2, 2) areas:
    [:, 0] background, [:, 1] foreground; [..., 0] intersection, [..., 1] union.
    `xp` is the array module: numpy on the host (int64), `jax.numpy` inside a jitted step
    (int32, enough for any image)."""
    pred, truth = xp.asarray(pred) > 0, xp.asarray(truth) > 0
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    valid = xp.ones_like(pred) if ignore is None else ~(xp.asarray(ignore) > 0)
    axes = tuple(range(1, pred.ndim))
    dtype = np.int64 if xp is np else np.int32
    out = []
    for p, t in ((~pred, ~truth), (pred, truth)):
        inter = (p & t & valid).sum(axes, dtype=dtype)
        union = ((p | t) & valid).sum(axes, dtype=dtype)
        out.append(xp.stack([inter, union], -1))
    return xp.stack(out, 1)


class IoUMeter:
    """Accumulates episode areas per class: mIoU, FB-IoU and per-class IoU (in percent)."""

    def __init__(self, class_ids: Sequence[int]):
        self.class_ids = list(class_ids)
        self.column = {c: i for i, c in enumerate(self.class_ids)}
        self.areas = np.zeros((2, len(self.class_ids), 2), np.int64)  # bg/fg, class, i/u
        self.episodes = 0

    def update(self, areas: np.ndarray, classes: Sequence[int]) -> None:
        for a, c in zip(np.asarray(areas), np.asarray(classes).tolist(), strict=True):
            if c not in self.column:
                raise ValueError(f"class {c} is not one of the evaluated classes "
                                 f"{self.class_ids}")
            self.areas[:, self.column[c]] += a
            self.episodes += 1

    def class_iou(self) -> dict[int, float]:
        inter, union = self.areas[1, :, 0], self.areas[1, :, 1]
        return {c: float(100 * inter[i] / max(union[i], 1)) for i, c in enumerate(self.class_ids)}

    def miou(self) -> float:
        return float(np.mean(list(self.class_iou().values())))

    def fb_iou(self) -> float:
        pooled = self.areas.sum(1)  # (2, 2)
        return float(100 * np.mean(pooled[:, 0] / np.maximum(pooled[:, 1], 1)))

    def class_areas(self) -> dict[int, dict[str, list[int]]]:
        """Per class, the summed {"background", "foreground"} [intersection, union] in
        pixels: what mIoU and FB-IoU are computed from (runs and folds can be pooled)."""
        return {c: {"background": self.areas[0, i].tolist(),
                    "foreground": self.areas[1, i].tolist()}
                for i, c in enumerate(self.class_ids)}

    def summary(self) -> dict:
        return {"miou": self.miou(), "fb_iou": self.fb_iou(), "episodes": self.episodes,
                "class_iou": self.class_iou(), "class_areas": self.class_areas()}
