"""Loading SAM and SAM 2: official `.pth` / `.pt` files and our converted orbax directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sam_port.config import SAM_CONFIGS, Sam2Config, SamConfig, get_config
from sam_port.convert import state_dict_to_params
from sam_port.files import parse_json
from sam_port.loaded import LoadedSam, LoadedSam2
from sam_port.modeling.sam import abstract_params
from sam_port.params_dir import check_finite, read_meta, restore_params_dir, save_params_dir
from sam_port.sam2_checkpoint import FORMAT as SAM2_FORMAT
from sam_port.sam2_checkpoint import (
    convert_sam2_state_dict,
    is_sam2_state_dict,
    load_sam2_directory,
    save_sam2,
)
from sam_port.torch_pickle import CheckpointError, load_state_dict

FORMAT = "sam_port.sam/1"
_META = "sam.json"
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"


def infer_model_type(state_dict: dict[str, np.ndarray], source: str | Path) -> str:
    """vit_b / vit_l / vit_h from the shapes of an official SAM state dict."""
    if _PATCH_KEY not in state_dict:
        raise CheckpointError(
            f"{source}: not a Segment Anything checkpoint (no '{_PATCH_KEY}'); "
            "is it a VRP-SAM or backbone file?"
        )
    embed_dim = state_dict[_PATCH_KEY].shape[0]
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for name, cfg in SAM_CONFIGS.items():
        enc = cfg.image_encoder
        if name != "default" and (enc.embed_dim, enc.depth) == (embed_dim, depth):
            return name
    raise CheckpointError(
        f"{source}: SAM image encoder of width {embed_dim} and depth {depth} matches no known "
        f"model type ({', '.join(k for k in SAM_CONFIGS if k != 'default')})"
    )


def _describe(model_type: str) -> str:
    config = get_config(model_type)
    if isinstance(config, Sam2Config):
        return f"{model_type} (a SAM 2)"
    enc = config.image_encoder
    return f"{model_type} (width {enc.embed_dim}, {enc.depth} blocks)"


def convert_sam_state_dict(
    state_dict: dict[str, np.ndarray], model_type: str | None, source: str | Path
) -> LoadedSam:
    """Official SAM state dict -> LoadedSam, checking the model type and every key."""
    found = infer_model_type(state_dict, source)
    if model_type is not None:
        get_config(model_type)  # validates the name
        if model_type == "default":
            model_type = "vit_h"
        if model_type != found:
            raise CheckpointError(
                f"{source}: this is a {_describe(found)} checkpoint, but model type "
                f"{_describe(model_type)} was asked for"
            )
    config = get_config(found)
    params = state_dict_to_params(state_dict, abstract_params(config), source=source)
    check_finite(params, str(source))
    return LoadedSam(found, config, params)


def save_sam(sam: LoadedSam | LoadedSam2, directory: str | Path) -> Path:
    """Write `directory/sam.json` (format, model type, architecture) and the orbax params."""
    if isinstance(sam, LoadedSam2):
        return save_sam2(sam, directory)
    meta = {"format": FORMAT, "model_type": sam.model_type, "config": sam.config.to_dict()}
    return save_params_dir(directory, sam.params, _META, meta)


def _load_directory(directory: Path, model_type: str | None) -> LoadedSam:
    meta = read_meta(directory, _META, FORMAT, "SAM")
    try:
        config = SamConfig.from_dict(meta["config"])
        stored = meta["model_type"]
        known = get_config(stored)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{directory / _META}: unreadable SAM metadata ({e})") from e
    if config != known:  # written by save_sam, always one of the known architectures
        raise CheckpointError(f"{directory / _META}: its architecture is not the {stored} "
                              "SAM's (the file was edited or damaged)")
    aliases = {stored, "default"} if stored == "vit_h" else {stored}
    if model_type is not None and model_type not in aliases:
        raise CheckpointError(
            f"{directory}: holds a {stored} SAM, but model type {model_type} was asked for"
        )
    return LoadedSam(stored, config, restore_params_dir(directory, abstract_params(config), "SAM"))


def load_sam(path: str | Path, model_type: str | None = None) -> LoadedSam | LoadedSam2:
    """Load SAM or SAM 2 from an official checkpoint (`sam_vit_*.pth`, `sam2.1_hiera_*.pt`,
    `sam2_hiera_*.pt`) or a directory written by `save_sam` / `vrp-sam convert-sam`.
    `model_type` (vit_b, vit_l, vit_h; sam2.1_hiera_tiny|small|base_plus|large, the short
    names sam2.1_hiera_t|s|b+|l, and sam2_hiera_* for SAM 2.0) is checked against the file
    when given and found from it when not."""
    path = Path(path)
    if path.is_dir():
        if _is_sam2_directory(path):
            return load_sam2_directory(path, model_type)
        return _load_directory(path, model_type)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    state_dict = load_state_dict(path)
    if is_sam2_state_dict(state_dict):
        return convert_sam2_state_dict(state_dict, model_type, path)
    return convert_sam_state_dict(state_dict, model_type, path)


def _is_sam2_directory(directory: Path) -> bool:
    meta_path = directory / _META
    if not meta_path.is_file():
        return False
    meta = parse_json(meta_path.read_bytes(), str(meta_path), "SAM metadata", CheckpointError)
    return isinstance(meta, dict) and meta.get("format") == SAM2_FORMAT
