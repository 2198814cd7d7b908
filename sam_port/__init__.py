"""A faithful Flax port of Segment Anything (Kirillov et al., 2023) and of SAM 2 (Ravi et al.,
2024): images and video.

The names below load on first use, so importing a light submodule (`sam_port.torch_pickle`,
`sam_port.config`) does not import JAX.
"""

import importlib

_EXPORTS = {
    "SAM_CONFIGS": "sam_port.config",
    "SamConfig": "sam_port.config",
    "SAM2_CONFIGS": "sam_port.config",
    "Sam2Config": "sam_port.config",
    "get_sam2_config": "sam_port.config",
    "LoadedSam2": "sam_port.loaded",
    "SAM2ImagePredictor": "sam_port.sam2_predictor",
    "SAM2AutomaticMaskGenerator": "sam_port.automatic_mask_generator",
    "SAM2VideoPredictor": "sam_port.sam2_video_predictor",
    "get_config": "sam_port.config",
    "CheckpointError": "sam_port.torch_pickle",
    "LoadedSam": "sam_port.loaded",
    "load_sam": "sam_port.checkpoint",
    "save_sam": "sam_port.checkpoint",
    "Sam": "sam_port.modeling",
    "init_params": "sam_port.modeling.sam",
    "SamPredictor": "sam_port.predictor",
    "SamAutomaticMaskGenerator": "sam_port.automatic_mask_generator",
    "HostArray": "sam_port.host_array",
    "sam_model_registry": "sam_port.build_sam",
    "build_sam": "sam_port.build_sam",
    "build_sam_vit_h": "sam_port.build_sam",
    "build_sam_vit_l": "sam_port.build_sam",
    "build_sam_vit_b": "sam_port.build_sam",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sam_port' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
