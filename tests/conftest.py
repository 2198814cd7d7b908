"""Test set-up shared by every test module.

`segment_anything/__init__.py` imports torchvision, for two things only: the automatic mask
generator's NMS and `ResizeLongestSide.apply_image`, which calls
`torchvision.transforms.functional.resize(to_pil_image(image), (h, w))`. On a PIL image that
resize is `image.resize((w, h), PIL.Image.BILINEAR)` (torchvision's `_functional_pil.resize`).
PyPI's torchvision does not import beside the CPU torch wheel the test extra pins, so when
torchvision is missing we register a stand-in with exactly that PIL call, and `batched_nms` /
`box_area` written in plain torch with torchvision's rules (for the official automatic mask
generator). With a real torchvision installed, the real one is used.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _install_torchvision_stand_in() -> None:
    if importlib.util.find_spec("torchvision") is not None:
        return
    from PIL import Image

    def to_pil_image(pic):
        return Image.fromarray(pic)

    def resize(img, size, interpolation=None, max_size=None, antialias=True):
        if not isinstance(img, Image.Image) or len(size) != 2:
            raise NotImplementedError("stand-in covers resize(PIL image, (h, w)) only")
        return img.resize((int(size[1]), int(size[0])), Image.BILINEAR)

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def batched_nms(boxes, scores, idxs, iou_threshold):
        """torchvision's greedy NMS within each category (stable descending score order, IoU
        strictly above the threshold suppresses), in plain torch."""
        import torch

        keep = []
        for category in torch.unique(idxs):
            members = torch.nonzero(idxs == category).flatten()
            order = members[torch.sort(scores[members], descending=True, stable=True)[1]]
            b = boxes[order].float()
            lo = torch.maximum(b[:, None, :2], b[None, :, :2])
            hi = torch.minimum(b[:, None, 2:], b[None, :, 2:])
            inter = (hi - lo).clamp(min=0).prod(-1)
            area = box_area(b)
            over = inter / (area[:, None] + area[None, :] - inter) > iou_threshold
            suppressed = torch.zeros(len(b), dtype=torch.bool)
            for i in range(len(b)):
                if not suppressed[i]:
                    keep.append(order[i])
                    suppressed |= over[i]
        if not keep:
            return torch.zeros(0, dtype=torch.int64)
        keep = torch.stack(keep)
        return keep[torch.sort(scores[keep], descending=True, stable=True)[1]]

    tv = types.ModuleType("torchvision")
    ops, boxes = types.ModuleType("torchvision.ops"), types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    boxes.batched_nms, boxes.box_area = batched_nms, box_area
    functional.resize, functional.to_pil_image = resize, to_pil_image
    tv.ops, ops.boxes, tv.transforms, transforms.functional = ops, boxes, transforms, functional
    sys.modules.update({
        "torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes,
        "torchvision.transforms": transforms, "torchvision.transforms.functional": functional,
    })


_install_torchvision_stand_in()


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A toy work directory trained for a few steps (`vrp-sam train --config toy`), shared by
    the evaluation, model-source and notebook tests."""
    from vrp_sam_jax.cli import main

    workdir = tmp_path_factory.mktemp("toy_run")
    assert main(["train", "--config", "toy", "--workdir", str(workdir), "--quiet",
                 "--config.model.image_size=64", "--config.train.epochs=1",
                 "--config.train.steps_per_epoch=4", "--config.data.val_episodes=8"]) == 0
    return workdir
