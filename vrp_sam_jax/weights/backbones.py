"""Backbone weights: PSPNet/PFENet `resnet{50,101}_v2.pth`, torchvision `vgg16_bn`, the
official DINOv2 `dinov2_vit{s,b,l}14_pretrain.pth`, the backbone inside the release's
`best_model.pt`, and converted backbone directories.

Layouts (docs/COMPUTATION.md §2 and §7):
  - release: `layer0.0.weight` ... `layer4.*` (`module.` optional).
  - PSPNet/PFENet: `conv1`/`bn1`/`conv2`/`bn2`/`conv3`/`bn3` stem and `layerN.M.*` blocks
    (`fc.*` ignored).
  - torchvision `vgg16_bn`: `features.N.*` (`classifier.*` ignored).
  - DINOv2 (hub checkpoints, `module.` or `backbone.` prefixes stripped): `cls_token`,
    `pos_embed`, `patch_embed.proj.*`, `blocks.N.*` (`mask_token` and the final `norm.*`,
    unused by VRP-SAM's stages, ignored).
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import traverse_util

from sam_port.convert import state_dict_to_params
from sam_port.params_dir import read_meta, restore_params_dir, save_params_dir
from sam_port.torch_pickle import load_state_dict
from vrp_sam_jax.errors import CheckpointError
from vrp_sam_jax.models.backbones import (
    BACKBONES,
    ResNetSpec,
    get_backbone_spec,
    make_backbone,
)
from vrp_sam_jax.models.dinov2 import DinoSpec
from vrp_sam_jax.storage.paths import AnyPath, as_path

FORMAT = "vrp_sam_jax.backbone/1"
META = "backbone.json"
IGNORED = (r"num_batches_tracked$",)  # BatchNorm's step counter: no part of inference
DINO_IGNORED = (r"^mask_token$", r"^norm\.")  # DINOv2 parts the VRP stages do not use
_PSP_STEM = {"conv1": "layer0.0", "bn1": "layer0.1", "conv2": "layer0.3", "bn2": "layer0.4",
             "conv3": "layer0.6", "bn3": "layer0.7"}


def init_order(module, *inputs: jax.Array) -> tuple[dict, list[tuple[str, ...]]]:
    """(abstract parameters, every parameter path in creation order) of `module`, without
    compute: the order is read while tracing, before `jax.eval_shape` sorts the dict keys."""
    order: list[tuple[str, ...]] = []

    def init():
        params = module.init(jax.random.key(0), *inputs)["params"]
        order.extend(traverse_util.flatten_dict(params))
        return params

    return jax.eval_shape(init), order


def abstract_backbone(backbone: str) -> dict:
    return backbone_init_order(backbone)[0]


def backbone_init_order(backbone: str) -> tuple[dict, list[tuple[str, ...]]]:
    return init_order(make_backbone(backbone), jnp.zeros((1, 64, 64, 3)))


def strip_prefix(state_dict: dict, prefix: str = "module.") -> dict:
    """Keys without the DistributedDataParallel prefix, when every key has it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def _layer3_blocks(state_dict: dict) -> int:
    return len({k.split(".")[1] for k in state_dict if k.startswith("layer3.")})


def is_dinov2(state_dict: dict) -> bool:
    return "cls_token" in state_dict and "blocks.0.attn.qkv.weight" in state_dict


def _infer_dinov2(state_dict: dict, source: str | Path) -> str:
    width = state_dict["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
    for name, spec in BACKBONES.items():
        if isinstance(spec, DinoSpec) and (spec.embed_dim, spec.depth) == (width, depth):
            return name
    raise CheckpointError(
        f"{source}: DINOv2 with width {width} and {depth} blocks matches no known backbone "
        f"({', '.join(n for n, s in BACKBONES.items() if isinstance(s, DinoSpec))})")


def infer_backbone(state_dict: dict, source: str | Path) -> str:
    """The backbone of a state dict in the release layout (`layer0.*`..`layer4.*`) or the
    official DINOv2 layout."""
    if is_dinov2(state_dict):
        return _infer_dinov2(state_dict, source)
    if "layer0.0.weight" not in state_dict:
        raise CheckpointError(f"{source}: no backbone weights ('layer0.0.weight' missing)")
    if "layer0.0.bias" in state_dict:
        return "vgg16"
    stem = state_dict["layer0.0.weight"].shape[0]
    blocks = _layer3_blocks(state_dict)
    for name, spec in BACKBONES.items():
        if isinstance(spec, ResNetSpec) and (spec.stem[0], spec.blocks[2]) == (stem, blocks):
            return name
    raise CheckpointError(
        f"{source}: backbone with stem width {stem} and {blocks} layer3 blocks matches no "
        f"known backbone ({', '.join(BACKBONES)})"
    )


def check_backbone(found: str, asked: str | None, source: str | Path) -> str:
    """`found`, after checking it is what the user asked for (when they asked)."""
    if asked is not None:
        if asked not in BACKBONES:
            raise CheckpointError(f"{source}: unknown backbone {asked!r}; choose from "
                                  f"{', '.join(BACKBONES)}")
        if asked != found:
            raise CheckpointError(f"{source}: holds a {found} backbone, but --backbone "
                                  f"{asked} was asked for")
    return found


def is_release_backbone_key(key: str) -> bool:
    return re.match(r"layer[0-4]\.", key) is not None


def backbone_to_release_layout(state_dict: dict, source: str | Path) -> dict:
    """A PSPNet ResNet, torchvision vgg16_bn or release state dict -> release backbone keys."""
    sd = strip_prefix(strip_prefix(state_dict), "backbone.")
    if is_dinov2(sd):
        if any(k.startswith("register_tokens") for k in sd):
            raise CheckpointError(f"{source}: DINOv2 with registers (`*_reg4_pretrain.pth`) "
                                  "is not supported; use the plain `dinov2_vit*14_pretrain.pth`")
        return sd
    if "layer0.0.weight" in sd:
        return {k: v for k, v in sd.items() if is_release_backbone_key(k)}
    if "features.0.weight" in sd:  # torchvision vgg16_bn
        splits = get_backbone_spec("vgg16").splits
        out = {}
        for k, v in sd.items():
            m = re.match(r"features\.(\d+)\.(.+)", k)
            if m is None:
                continue
            index = int(m.group(1))
            for layer, (lo, hi) in enumerate(zip(splits[:-1], splits[1:], strict=True)):
                if lo <= index < hi:
                    out[f"layer{layer}.{index - lo}.{m.group(2)}"] = v
        return out
    if "conv1.weight" in sd and "conv2.weight" in sd:  # PSPNet deep stem
        out = {}
        for k, v in sd.items():
            head, _, rest = k.partition(".")
            if head in _PSP_STEM:
                out[f"{_PSP_STEM[head]}.{rest}"] = v
            elif re.match(r"layer[1-4]$", head):
                out[k] = v
        return out
    if "conv1.weight" in sd and sd["conv1.weight"].shape[-1] == 7:
        raise CheckpointError(
            f"{source}: a torchvision-style ResNet (single 7x7 stem conv); VRP-SAM uses the "
            "PSPNet deep-stem ResNet (resnet50_v2.pth / resnet101_v2.pth from PSPNet/PFENet)")
    raise CheckpointError(f"{source}: not a backbone checkpoint (no 'conv1.weight', "
                          "'features.0.weight', 'layer0.0.weight' or DINOv2's 'cls_token')")


def convert_backbone(state_dict: dict, backbone: str | None,
                     source: str | Path) -> tuple[str, dict]:
    """(backbone name, parameters) from any supported backbone layout."""
    sd = backbone_to_release_layout(state_dict, source)
    name = check_backbone(infer_backbone(sd, source), backbone, source)
    ignore = IGNORED + DINO_IGNORED if is_dinov2(sd) else IGNORED
    return name, state_dict_to_params(sd, abstract_backbone(name), source=source,
                                      ignore=ignore)


def save_backbone(name: str, params: dict, directory: str | AnyPath) -> AnyPath:
    """A converted backbone alone (to initialise training): `backbone.json` + orbax params."""
    return save_params_dir(directory, params, META, {"format": FORMAT, "backbone": name})


def load_backbone(path: str | AnyPath, backbone: str | None = None) -> tuple[str, dict]:
    """A backbone from a weight file (PSPNet, torchvision vgg16_bn, or the release's
    `best_model.pt`) or a directory written by `save_backbone`."""
    path = as_path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if not path.is_dir() and not isinstance(path, Path):
        raise CheckpointError(f"{path}: a backbone checkpoint file is read from a local path; "
                              "copy it here first (a converted backbone directory may be a URL)")
    if not path.is_dir():
        return convert_backbone(load_state_dict(path), backbone, path)
    meta = read_meta(path, META, FORMAT, "backbone")
    name = meta.get("backbone")
    if name not in BACKBONES:
        raise CheckpointError(f"{path / META}: unknown backbone {name!r}")
    check_backbone(name, backbone, path)
    return name, restore_params_dir(path, abstract_backbone(name), "backbone")
