"""`sam_model_registry` and `build_sam_vit_{h,l,b}`, as in `segment_anything.build_sam`.

`sam_model_registry[model_type](checkpoint=path)` loads the official `.pth` (or one of our
converted directories) and checks its type; with `checkpoint=None` it builds the architecture
with random weights, as the official builders do.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from sam_port.checkpoint import load_sam
from sam_port.config import get_config
from sam_port.loaded import LoadedSam
from sam_port.modeling.sam import init_params


def build_sam_type(model_type: str, checkpoint: str | Path | None = None) -> LoadedSam:
    """A `model_type` SAM from `checkpoint`, or randomly initialised when it is None."""
    if checkpoint is not None:
        return load_sam(checkpoint, model_type)
    name = "vit_h" if model_type == "default" else model_type
    config = get_config(name)
    return LoadedSam(name, config, init_params(config))


build_sam_vit_h = partial(build_sam_type, "vit_h")
build_sam_vit_l = partial(build_sam_type, "vit_l")
build_sam_vit_b = partial(build_sam_type, "vit_b")
build_sam = build_sam_vit_h

sam_model_registry: dict[str, Callable[..., LoadedSam]] = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
}
