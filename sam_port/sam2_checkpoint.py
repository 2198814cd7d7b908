"""SAM 2 checkpoints: the official `sam2.1_hiera_*.pt` / `sam2_hiera_*.pt` files (read by the
project's reader: no pickled code runs) and our converted directories.

The official file is `{"model": SAM2Base.state_dict()}`, the image and the video model.
Keys map to our parameters by the mechanical rule of `sam_port.convert`, except the two-way
transformer's MLPs, which SAM 2 builds from its own `MLP` (`mlp.layers.0/1`) where SAM has
`MLPBlock` (`mlp.lin1/2`). Every tensor is read.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sam_port.config import SAM2_CONFIGS, get_sam2_config, sam2_model_type
from sam_port.convert import params_to_state_dict, state_dict_to_params
from sam_port.loaded import LoadedSam2
from sam_port.modeling.sam2 import abstract_sam2_params
from sam_port.params_dir import check_finite, read_meta, restore_params_dir, save_params_dir
from sam_port.torch_pickle import CheckpointError

FORMAT = "sam_port.sam2/1"
META = "sam.json"  # the same file name as SAM's directories: its `format` tells them apart
PATCH_KEY = "image_encoder.trunk.patch_embed.proj.weight"  # present in every SAM 2 file

# SAM 2.1's additions to SAM 2.0 (`no_obj_embed_spatial`, `proj_tpos_enc_in_obj_ptrs`)
_VERSION_2_1_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")

_OFFICIAL_MLP = re.compile(r"^(sam_mask_decoder\.transformer\.layers\.\d+\.mlp)\.layers\.([01])\.")
_OUR_MLP = re.compile(r"^(sam_mask_decoder\.transformer\.layers\.\d+\.mlp)\.lin([12])\.")


def is_sam2_state_dict(state_dict: dict[str, np.ndarray]) -> bool:
    return PATCH_KEY in state_dict


def _from_official_keys(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {_OFFICIAL_MLP.sub(lambda m: f"{m[1]}.lin{int(m[2]) + 1}.", k): v
            for k, v in state_dict.items()}


def to_official_state_dict(params: dict) -> dict[str, np.ndarray]:
    """Our parameters as the official image model's state dict (for tests and export)."""
    return {_OUR_MLP.sub(lambda m: f"{m[1]}.layers.{int(m[2]) - 1}.", k): v
            for k, v in params_to_state_dict(params).items()}


def infer_sam2_model_type(state_dict: dict[str, np.ndarray], source: str | Path) -> str:
    """The model type of an official SAM 2 state dict, from its trunk's width and depth and
    its release (2.1's keys)."""
    width = state_dict[PATCH_KEY].shape[0]
    blocks = "image_encoder.trunk.blocks."
    depth = len({k.split(".")[3] for k in state_dict if k.startswith(blocks)})
    version = "2.1" if any(k in state_dict for k in _VERSION_2_1_KEYS) else "2"
    for name, cfg in SAM2_CONFIGS.items():
        if (cfg.trunk.embed_dim, sum(cfg.trunk.stages), cfg.version) == (width, depth, version):
            return name
    raise CheckpointError(f"{source}: a SAM {version} Hiera trunk of width {width} and depth "
                          f"{depth} matches no known model type "
                          f"({', '.join(sorted(SAM2_CONFIGS))})")


def _check_asked(found: str, model_type: str | None, source: str | Path) -> None:
    if model_type is None:
        return
    try:
        asked = sam2_model_type(model_type)
    except ValueError:  # a SAM name, or no name at all
        asked = model_type
    if asked != found:
        raise CheckpointError(f"{source}: holds a {found} SAM 2, but model type {model_type} "
                              "was asked for")


def convert_sam2_state_dict(state_dict: dict[str, np.ndarray], model_type: str | None,
                            source: str | Path) -> LoadedSam2:
    """Official SAM 2 state dict -> LoadedSam2, checking the model type and every key."""
    found = infer_sam2_model_type(state_dict, source)
    _check_asked(found, model_type, source)
    config = get_sam2_config(found)
    params = state_dict_to_params(_from_official_keys(state_dict), abstract_sam2_params(config),
                                  source=source)
    check_finite(params, str(source))
    return LoadedSam2(found, config, params)


def save_sam2(sam: LoadedSam2, directory: str | Path) -> Path:
    """Write `directory/sam.json` (format, model type, architecture) and the params."""
    meta = {"format": FORMAT, "model_type": sam.model_type, "config": sam.config.to_dict()}
    return save_params_dir(directory, sam.params, META, meta)


def load_sam2_directory(directory: Path, model_type: str | None) -> LoadedSam2:
    meta = read_meta(directory, META, FORMAT, "SAM 2")
    try:
        stored = sam2_model_type(meta["model_type"])
        config = type(get_sam2_config(stored)).from_dict(meta["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{directory / META}: unreadable SAM 2 metadata ({e})") from e
    if config != get_sam2_config(stored):
        raise CheckpointError(f"{directory / META}: its architecture is not the {stored} "
                              "SAM 2's (the file was edited or damaged)")
    _check_asked(stored, model_type, directory)
    params = restore_params_dir(directory, abstract_sam2_params(config), "SAM 2")
    return LoadedSam2(stored, config, params)
