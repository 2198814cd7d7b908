"""Test set-up shared by every test module.

`segment_anything/__init__.py` imports torchvision, for two things only: the automatic mask
generator's NMS (not used here) and `ResizeLongestSide.apply_image`, which calls
`torchvision.transforms.functional.resize(to_pil_image(image), (h, w))`. On a PIL image that
resize is `image.resize((w, h), PIL.Image.BILINEAR)` (torchvision's `_functional_pil.resize`).
PyPI's torchvision does not import beside the CPU torch wheel the test extra pins, so when
torchvision is missing we register a stand-in with exactly that PIL call and an NMS that
refuses to run. With a real torchvision installed, the real one is used.
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

    def unavailable(*args, **kwargs):
        raise NotImplementedError("torchvision is not installed; NMS is unavailable in tests")

    tv = types.ModuleType("torchvision")
    ops, boxes = types.ModuleType("torchvision.ops"), types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    boxes.batched_nms = boxes.box_area = unavailable
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
