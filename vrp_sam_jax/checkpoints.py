"""VRP-SAM weights: the release's `best_model.pt`, backbone files, and our orbax directories.

Layouts read here (spec sections 2 and 7):
  - release: `module.layer0.0.weight` ... `module.layer4.*` (backbone) and
    `module.downsample_query.0.weight`, `module.merge_1.0.weight`,
    `module.transformer_decoder.*` (trained encoder); `module.` optional.
  - PSPNet/PFENet `resnet{50,101}_v2.pth`: `conv1`/`bn1`/`conv2`/`bn2`/`conv3`/`bn3` stem and
    `layerN.M.*` blocks (`fc.*` ignored).
  - torchvision `vgg16_bn`: `features.N.*` (`classifier.*` ignored).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import jax
import jax.numpy as jnp

from sam_port.convert import state_dict_to_params
from sam_port.params_dir import read_meta, restore_params_dir, save_params_dir
from sam_port.torch_pickle import CheckpointError, load_state_dict
from vrp_sam_jax.models.backbones import BACKBONES, VGGSpec, get_backbone_spec, make_backbone
from vrp_sam_jax.models.vrp_encoder import VRPEncoder

FORMAT = "vrp_sam_jax.vrp/1"
_META = "vrp.json"
BACKBONE_FORMAT = "vrp_sam_jax.backbone/1"
_BACKBONE_META = "backbone.json"
_ENCODER_KEY = "downsample_query.0.weight"
_QUERY_KEY = "transformer_decoder.supp_q_feat.weight"
_PSP_STEM = {"conv1": "layer0.0", "bn1": "layer0.1", "conv2": "layer0.3", "bn2": "layer0.4",
             "conv3": "layer0.6", "bn3": "layer0.7"}
_IGNORED = (r"num_batches_tracked$",)


@dataclasses.dataclass
class VRPWeights:
    """The backbone and VRP encoder of a VRP-SAM model (SAM's weights are separate)."""

    backbone: str
    hidden_dim: int
    num_queries: int
    params: dict  # {"backbone": ..., "encoder": ...}


def abstract_backbone(backbone: str) -> dict:
    module = make_backbone(backbone)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))[
        "params"]


def abstract_encoder(backbone: str, hidden_dim: int = 256, num_queries: int = 50,
                     num_heads: int = 4) -> dict:
    f = jnp.zeros((1, 8, 8, get_backbone_spec(backbone).feature_dim))
    m = jnp.zeros((1, 8, 8, 1))
    module = VRPEncoder(hidden_dim, num_queries, num_heads)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), f, m, f, m))["params"]


def _strip_prefix(state_dict: dict, prefix: str = "module.") -> dict:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def _layer3_blocks(state_dict: dict) -> int:
    return len({k.split(".")[1] for k in state_dict if k.startswith("layer3.")})


def infer_backbone(state_dict: dict, source: str | Path) -> str:
    """The backbone of a state dict in the release layout (`layer0.*`..`layer4.*`)."""
    if "layer0.0.weight" not in state_dict:
        raise CheckpointError(f"{source}: no backbone weights ('layer0.0.weight' missing)")
    if "layer0.0.bias" in state_dict:
        return "vgg16"
    stem = state_dict["layer0.0.weight"].shape[0]
    blocks = _layer3_blocks(state_dict)
    for name, spec in BACKBONES.items():
        if not isinstance(spec, VGGSpec) and (spec.stem[0], spec.blocks[2]) == (stem, blocks):
            return name
    raise CheckpointError(
        f"{source}: backbone with stem width {stem} and {blocks} layer3 blocks matches no "
        f"known backbone ({', '.join(BACKBONES)})"
    )


def _check_backbone(found: str, asked: str | None, source: str | Path) -> str:
    if asked is not None:
        get_backbone_spec(asked)
        if asked != found:
            raise CheckpointError(f"{source}: holds a {found} backbone, but --backbone "
                                  f"{asked} was asked for")
    return found


def backbone_to_release_layout(state_dict: dict, source: str | Path) -> dict:
    """A PSPNet ResNet, torchvision vgg16_bn or release state dict -> release backbone keys."""
    sd = _strip_prefix(state_dict)
    if "layer0.0.weight" in sd:
        return {k: v for k, v in sd.items() if re.match(r"layer[0-4]\.", k)}
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
                          "'features.0.weight' or 'layer0.0.weight')")


def convert_backbone(state_dict: dict, backbone: str | None,
                     source: str | Path) -> tuple[str, dict]:
    """(backbone name, parameters) from any supported backbone layout."""
    sd = backbone_to_release_layout(state_dict, source)
    name = _check_backbone(infer_backbone(sd, source), backbone, source)
    return name, state_dict_to_params(sd, abstract_backbone(name), source=source,
                                      ignore=_IGNORED)


def convert_release(state_dict: dict, backbone: str | None, source: str | Path) -> VRPWeights:
    """The release's `best_model.pt` state dict -> VRPWeights (backbone + encoder)."""
    sd = _strip_prefix(state_dict)
    if _ENCODER_KEY not in sd:
        kind = ("a SAM checkpoint" if any(k.startswith("image_encoder.") for k in sd)
                else "a backbone file (use convert-backbone)" if "layer0.0.weight" not in sd
                and ("conv1.weight" in sd or "features.0.weight" in sd) else "not VRP-SAM")
        raise CheckpointError(f"{source}: not a VRP-SAM checkpoint (no 'module.{_ENCODER_KEY}'"
                              f"); it looks like {kind}")
    name = _check_backbone(infer_backbone(sd, source), backbone, source)
    hidden_dim = sd[_ENCODER_KEY].shape[0]
    num_queries = sd[_QUERY_KEY].shape[0] if _QUERY_KEY in sd else 50
    backbone_sd = {k: v for k, v in sd.items() if re.match(r"layer[0-4]\.", k)}
    encoder_sd = {k: v for k, v in sd.items() if not re.match(r"layer[0-4]\.", k)}
    params = {
        "backbone": state_dict_to_params(backbone_sd, abstract_backbone(name), source=source,
                                         ignore=_IGNORED),
        "encoder": state_dict_to_params(encoder_sd, abstract_encoder(name, hidden_dim,
                                                                     num_queries),
                                        source=source, ignore=_IGNORED),
    }
    return VRPWeights(name, int(hidden_dim), int(num_queries), params)


def save_vrp(weights: VRPWeights, directory: str | Path) -> Path:
    """`directory/vrp.json` + orbax `directory/params`."""
    meta = {"format": FORMAT, "backbone": weights.backbone, "hidden_dim": weights.hidden_dim,
            "num_queries": weights.num_queries}
    return save_params_dir(directory, weights.params, _META, meta)


def _load_directory(directory: Path, backbone: str | None) -> VRPWeights:
    meta = read_meta(directory, _META, FORMAT, "VRP-SAM")
    try:
        name, hidden, queries = meta["backbone"], meta["hidden_dim"], meta["num_queries"]
        get_backbone_spec(name)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / _META}: unreadable VRP-SAM metadata ({e})") from e
    _check_backbone(name, backbone, directory)
    abstract = {"backbone": abstract_backbone(name),
                "encoder": abstract_encoder(name, hidden, queries)}
    return VRPWeights(name, hidden, queries, restore_params_dir(directory, abstract, "VRP-SAM"))


def load_vrp(path: str | Path, backbone: str | None = None) -> VRPWeights:
    """The release's `best_model.pt` or a directory written by `save_vrp`; `backbone` is
    checked against the file when given, inferred when not."""
    path = Path(path)
    if path.is_dir():
        return _load_directory(path, backbone)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    return convert_release(load_state_dict(path), backbone, path)


def save_backbone(name: str, params: dict, directory: str | Path) -> Path:
    """A converted backbone alone (to initialise training): `backbone.json` + orbax params."""
    return save_params_dir(directory, params, _BACKBONE_META,
                           {"format": BACKBONE_FORMAT, "backbone": name})


def load_backbone(path: str | Path, backbone: str | None = None) -> tuple[str, dict]:
    """A backbone from a weight file (PSPNet, torchvision vgg16_bn, or the release's
    `best_model.pt`) or a directory written by `save_backbone`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if not path.is_dir():
        return convert_backbone(load_state_dict(path), backbone, path)
    meta = read_meta(path, _BACKBONE_META, BACKBONE_FORMAT, "backbone")
    name = meta.get("backbone")
    if name not in BACKBONES:
        raise CheckpointError(f"{path / _BACKBONE_META}: unknown backbone {name!r}")
    _check_backbone(name, backbone, path)
    return name, restore_params_dir(path, abstract_backbone(name), "backbone")
